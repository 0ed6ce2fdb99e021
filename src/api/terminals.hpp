// The Jupyter Server terminals API (terminado's protocol): a shell inside the
// user's runtime sandbox, on a pty the server holds.
//   POST   /api/terminals            {"name"?, "kernel_id"?} -> {"name", "last_activity"}
//   GET    /api/terminals            the caller's terminals
//   GET    /api/terminals/{name}
//   DELETE /api/terminals/{name}     204
//   WS     /terminals/websocket/{name}  ["stdin", s] ["set_size", rows, cols, ...] -> ["setup", {}]
//                                      ["stdout", s] ["disconnect", 1]
// Terminals belong to their creator only (another user's name is 404, also
// for admins) and end with their runtime (deleted, restarted, expired).
#pragma once

#include <memory>

#include "api/api.hpp"

namespace skylab::api {

//! Terminals one user may have open at once (409 beyond).
inline constexpr std::size_t kMaxTerminalsPerUser = 8;
//! Largest client frame; larger ones close the WebSocket with 1009.
inline constexpr std::size_t kMaxTerminalFrame = std::size_t{64} * 1024;
//! Input waiting for the shell to read it; more is dropped.
inline constexpr std::size_t kMaxTerminalPendingInput = std::size_t{64} * 1024;
//! Flow control: while every client has more than this unsent, the pty is
//! not read (the shell waits, as on a real terminal).
inline constexpr std::size_t kTerminalPauseBacklog = 1 << 20;
//! A client that far behind the others gets no output (it is told once);
//! the shell and the other clients go on without it.
inline constexpr std::size_t kMaxTerminalBacklog = 8 << 20;
//! Output kept for clients that (re)connect.
inline constexpr std::size_t kTerminalHistory = std::size_t{64} * 1024;

//! Adds the routes above. Without `ctx->terminal_command` (no sandboxes)
//! POST answers 404, as Jupyter Server without terminals.
void add_terminal_routes(http::Router& r, std::shared_ptr<const Context> ctx);

}  // namespace skylab::api
