// Real-time co-editing over a WebSocket (the protocol: live/collab.hpp and
// docs/architecture.md): /api/skylab/collab/{path} for my own notebooks,
// /api/skylab/shared/{share}/collab[/{sub}] for notebooks shared with me
// (editors write, viewers only read; refused server-side).
#pragma once

#include <memory>
#include <string>

#include "api/api.hpp"
#include "common/result.hpp"

namespace skylab::api {

//! What a share gives `user` access to: the owner's notebook path and
//! whether they may write.
struct SharedTarget {
  std::string owner;
  std::string path;
  bool editor = false;
};

//! Checks share `id` for `user` (as the shared Contents routes do: the
//! grant, the owner enabled, the item still there, followed when moved)
//! and resolves `sub` ("" or "/a/b") below it. NotFound exactly as for a
//! missing share. Blocking (SQLite, disk): work queue only. (shares.cpp)
Result<SharedTarget> resolve_shared(const Context& ctx, const auth::Identity& user,
                                    const std::string& id, const std::string& sub);

void add_collab_routes(http::Router& r, std::shared_ptr<const Context> ctx);

//! Access may have changed: share `share_id` revoked or its role changed, or
//! ("" all shares) an account disabled. Every open co-editing connection
//! joined through that share checks its grant again at once on the work
//! queue, also one that never sends, and closes with 4403 when the grant
//! ended (4001 when the role changed: the client reconnects with its new
//! rights). Checks already under way coalesce. Any thread; never blocks.
void recheck_collab_access(const std::string& share_id = {});

}  // namespace skylab::api
