// The HTTP API: Jupyter Server-compatible routes and Skylab's own.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "http/router.hpp"
#include "kernel/kernelspec.hpp"
#include "kernel/manager.hpp"

namespace skylab::drive {
class Drive;
struct Entry;
}  // namespace skylab::drive

namespace skylab::auth {
class AccountStore;
class AuditLog;
class SecretStore;
class ShareStore;
}  // namespace skylab::auth

namespace skylab::runtime {
struct Config;
class RuntimeService;
class UsageLedger;
}  // namespace skylab::runtime

namespace skylab::live {
class LiveNotebooks;
}

namespace skylab {
class WorkQueue;  // common/work_queue.hpp
}

namespace skylab::api {

class ChannelsRegistry;
class SecretsBroker;
class SessionStore;

//! Everything handlers need. Shared by all requests; members are thread-safe.
struct Context {
  std::shared_ptr<kernel::KernelService> kernels;
  std::shared_ptr<const kernel::KernelSpecStore> specs;
  std::shared_ptr<ChannelsRegistry> channels;
  std::shared_ptr<drive::Drive> drive;     //!< users' files; null: no Contents API
  std::shared_ptr<SessionStore> sessions;  //!< created by build_router
  std::shared_ptr<WorkQueue> work;         //!< blocking work (disk); created by build_router
  //! Accounts, sessions and API tokens; null: only the admin token (no sign-in).
  std::shared_ptr<auth::AccountStore> accounts;
  //! Called after this process changed accounts, sessions or tokens, so that
  //! open WebSockets are checked against the change. Set before serving.
  std::function<void()> accounts_changed;
  //! Stops the sign-in threads (pending sign-ins are dropped); set by
  //! add_account_routes, called by stop_work.
  std::function<void()> stop_logins;
  //! True for the admin token (constant time); the login URL (`/?token=`)
  //! asks it. Null: no login URL.
  std::function<bool(std::string_view)> is_admin_token;
  //! Sharing grants; null: no sharing routes.
  std::shared_ptr<auth::ShareStore> shares;
  //! Users' secrets (google.colab.userdata); null: no secrets routes.
  std::shared_ptr<auth::SecretStore> secrets;
  //! Answers kernels' secret requests; set by add_secret_routes.
  std::shared_ptr<SecretsBroker> secret_broker;
  //! Where the UI will render untrusted outputs (an origin of its own); "" none.
  std::string output_origin;
  //! The built web app (index.html, frame.html, static/); "" none.
  std::string web_dir;
  //! Runtime types and deadlines. Defaults when null.
  std::shared_ptr<const runtime::Config> runtime_config;
  //! THE way to obtain, lease and release a runtime (limits, GPUs and their
  //! queue, warm pool, job leases). build_router makes a local one (no GPUs,
  //! no pool) when null.
  std::shared_ptr<runtime::RuntimeService> runtimes;
  //! Open notebooks held by the server (outputs recorded, saves merged);
  //! null: none (the Contents API reads and writes files as they are).
  std::shared_ptr<live::LiveNotebooks> live;
  //! Where /api/skylab/jobs keeps its records; "" no jobs routes.
  std::string jobs_dir;
  //! Set by add_job_routes: stops the job threads (called by stop_work).
  std::function<void()> stop_jobs;
  //! <data-dir>/runtimes: sandboxed runtimes' /content lives in <id>/content
  //! there; "" turns the runtime files API off.
  std::string runtimes_dir;
  //! The example notebooks of the gallery (examples/*.ipynb); "" none.
  std::string examples_dir;
  //! The argv that starts a shell inside kernel `k`'s sandbox (run as root
  //! with a pty on fds 0-2; see runtime/enter.hpp); null: no terminals.
  std::function<Result<std::vector<std::string>>(const kernel::KernelModel& k)> terminal_command;
  //! Runtime and GPU hours per user and the GPU quotas; null: usage reads zero.
  std::shared_ptr<runtime::UsageLedger> ledger;
  //! Administrators' actions and shares; null: not recorded.
  std::shared_ptr<auth::AuditLog> audit;
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  std::string version = "0.1.0";
};

//! Creates the context's channel registry and the full route table.
std::shared_ptr<http::Router> build_router(std::shared_ptr<Context> ctx);

//! Closes every open kernel WebSocket (server shutdown).
void close_all_channels(Context& ctx);

//! Finishes queued background work (saves in progress) and stops its
//! threads; call before the HTTP server stops.
void stop_work(Context& ctx);

// Route groups, defined in their own files.
void add_kernel_routes(http::Router& r, std::shared_ptr<Context> ctx);
void add_runtime_routes(http::Router& r, std::shared_ptr<Context> ctx);
void add_channel_routes(http::Router& r, std::shared_ptr<Context> ctx);
//! /login, /logout, /api/skylab/tokens, /api/skylab/users, /api/skylab/routes.
void add_account_routes(http::Router& r, std::shared_ptr<Context> ctx);
//! /api/skylab/shares (mine), /api/skylab/shared (with me, and access to it).
void add_share_routes(http::Router& r, std::shared_ptr<Context> ctx);
void add_contents_routes(http::Router& r, std::shared_ptr<Context> ctx);
void add_session_routes(http::Router& r, std::shared_ptr<Context> ctx);
//! /api/skylab/jobs: notebooks run headless in the user's runtimes.
void add_job_routes(http::Router& r, std::shared_ptr<Context> ctx);
//! /api/skylab/runtimes/{id}/files: a runtime's /content (runtime_files.cpp).
void add_runtime_file_routes(http::Router& r, std::shared_ptr<Context> ctx);
//! /api/skylab/secrets: names, values in, notebook grants (secrets.cpp).
void add_secret_routes(http::Router& r, std::shared_ptr<Context> ctx);
//! The browser app: /, /drive, /notebooks/..., /static/..., /output-frame.
void add_web_routes(http::Router& r, std::shared_ptr<Context> ctx);

//! The Content-Security-Policy of the app's pages: scripts only from the
//! server, frames only from itself (the output frame) and `output_origin`.
std::string app_csp(const std::string& output_origin);

//! Appends to the audit log when there is one (blocks on SQLite: call on the
//! work queue). No secrets in any field. (usage.cpp)
void audit(Context& ctx, const std::string& actor, const std::string& action,
           const std::string& target, const std::string& detail = "");

//! /api/skylab/usage and /api/skylab/admin/... (usage.cpp).
void add_usage_routes(http::Router& r, std::shared_ptr<Context> ctx);

//! /api/skylab/examples: the gallery of example notebooks, copied into Drives.
void add_example_routes(http::Router& r, std::shared_ptr<Context> ctx);

//! The Contents API model of a Drive entry (no content).
nlohmann::json contents_model(const drive::Entry& e);

//! Jupyter Server's kernel model: id, name, last_activity, execution_state, connections.
nlohmann::json kernel_json(const kernel::KernelModel& k);

//! Parses a JSON object body; an empty body is an empty object.
Result<nlohmann::json> parse_json_body(const std::string& body);

//! `attachment; filename="…"; filename*=UTF-8''…` for a download named `name`.
std::string content_disposition(std::string_view name);

//! Whether `user` may see a resource owned by `owner` (owners and admins).
bool may_access(const auth::Identity& user, const std::string& owner);

}  // namespace skylab::api
