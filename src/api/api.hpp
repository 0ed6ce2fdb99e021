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
class JobRunner;
class SecretsBroker;
class SessionStore;

//! The server's shared objects, every one built by `skylab serve`
//! (src/cli/serve.cpp), which owns them and stops them in an order it spells
//! out. Route groups get it const, once it is complete: nothing in it is set
//! later, and a route group creates no object that another needs. Members
//! are thread-safe.
struct Context {
  std::shared_ptr<kernel::KernelService> kernels;
  std::shared_ptr<const kernel::KernelSpecStore> specs;
  //! Open kernel WebSockets (make_channels). Required.
  std::shared_ptr<ChannelsRegistry> channels;
  std::shared_ptr<drive::Drive> drive;     //!< users' files; null: no Contents API
  std::shared_ptr<SessionStore> sessions;  //!< Jupyter sessions. Required.
  std::shared_ptr<WorkQueue> work;         //!< blocking work (disk, SQLite). Required.
  //! Accounts, sessions and API tokens; null: only the admin token (no sign-in).
  std::shared_ptr<auth::AccountStore> accounts;
  //! Password checks: a queue of their own (two threads; a sign-in never
  //! waits behind disk work, nor disk work behind 64 MiB hashes). Required
  //! with `accounts`.
  std::shared_ptr<WorkQueue> logins;
  //! Called after this process changed accounts, sessions or tokens, so that
  //! open WebSockets are checked against the change. Null: nobody listens.
  std::function<void()> accounts_changed;
  //! True for the admin token (constant time); the login URL (`/?token=`)
  //! asks it. Null: no login URL.
  std::function<bool(std::string_view)> is_admin_token;
  //! Sharing grants; null: no sharing routes.
  std::shared_ptr<auth::ShareStore> shares;
  //! Users' secrets (google.colab.userdata); null: no secrets routes.
  std::shared_ptr<auth::SecretStore> secrets;
  //! Answers kernels' secret requests; set exactly when `secrets` is.
  std::shared_ptr<SecretsBroker> secret_broker;
  //! Where the UI will render untrusted outputs (an origin of its own); "" none.
  std::string output_origin;
  //! The built web app (index.html, frame.html, static/); "" none.
  std::string web_dir;
  //! Runtime types and deadlines. Required.
  std::shared_ptr<const runtime::Config> runtime_config;
  //! THE way to obtain, lease and release a runtime (limits, GPUs and their
  //! queue, warm pool, job leases). Required.
  std::shared_ptr<runtime::RuntimeService> runtimes;
  //! Open notebooks held by the server (outputs recorded, saves merged);
  //! null: none (the Contents API reads and writes files as they are).
  std::shared_ptr<live::LiveNotebooks> live;
  //! Runs /api/skylab/jobs (make_job_runner); null: no jobs routes.
  std::shared_ptr<JobRunner> jobs;
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

//! The registry of open kernel WebSockets. What clients send is shown to
//! `live` (outputs recorded; may be null) and, for shell requests, makes
//! `secret_broker` (may be null) listen to that kernel's stdin.
std::shared_ptr<ChannelsRegistry> make_channels(std::shared_ptr<kernel::KernelService> kernels,
                                                std::shared_ptr<live::LiveNotebooks> live,
                                                std::shared_ptr<SecretsBroker> secret_broker);

//! Loads the job records in `dir` and starts `threads` job threads, which run
//! notebooks in their owners' runtimes through `ctx.runtimes` (and answer
//! their secret requests through `ctx.secret_broker`). Uses `ctx`'s kernels,
//! drive, runtimes, runtime_config and secret_broker, which must be set.
std::shared_ptr<JobRunner> make_job_runner(const Context& ctx, std::string dir,
                                           std::size_t threads = 2);
//! Cancels running jobs, drops waiting ones, joins the job threads. Idempotent.
void stop_job_runner(JobRunner& jobs);

//! Adds the full route table to `r`. `ctx` must be complete (see Context).
void add_routes(http::Router& r, std::shared_ptr<const Context> ctx);

// Route groups, defined in their own files.
void add_kernel_routes(http::Router& r, std::shared_ptr<const Context> ctx);
void add_runtime_routes(http::Router& r, std::shared_ptr<const Context> ctx);
void add_channel_routes(http::Router& r, std::shared_ptr<const Context> ctx);
//! /login, /logout, /api/skylab/tokens, /api/skylab/users, /api/skylab/routes.
void add_account_routes(http::Router& r, std::shared_ptr<const Context> ctx);
//! /api/skylab/shares (mine), /api/skylab/shared (with me, and access to it).
void add_share_routes(http::Router& r, std::shared_ptr<const Context> ctx);
void add_contents_routes(http::Router& r, std::shared_ptr<const Context> ctx);
void add_session_routes(http::Router& r, std::shared_ptr<const Context> ctx);
//! /api/skylab/jobs: notebooks run headless in the user's runtimes.
void add_job_routes(http::Router& r, std::shared_ptr<const Context> ctx);
//! /api/skylab/runtimes/{id}/files: a runtime's /content (runtime_files.cpp).
void add_runtime_file_routes(http::Router& r, std::shared_ptr<const Context> ctx);
//! /api/skylab/secrets: names, values in, notebook grants (secrets.cpp).
void add_secret_routes(http::Router& r, std::shared_ptr<const Context> ctx);
//! The browser app: /, /drive, /notebooks/..., /static/..., /output-frame.
void add_web_routes(http::Router& r, std::shared_ptr<const Context> ctx);

//! The Content-Security-Policy of the app's pages: scripts only from the
//! server, frames only from itself (the output frame) and `output_origin`.
std::string app_csp(const std::string& output_origin);

//! Appends to the audit log when there is one (blocks on SQLite: call on the
//! work queue). No secrets in any field. (usage.cpp)
void audit(const Context& ctx, const std::string& actor, const std::string& action,
           const std::string& target, const std::string& detail = "");

//! /api/skylab/usage and /api/skylab/admin/... (usage.cpp).
void add_usage_routes(http::Router& r, std::shared_ptr<const Context> ctx);

//! /api/skylab/examples: the gallery of example notebooks, copied into Drives.
void add_example_routes(http::Router& r, std::shared_ptr<const Context> ctx);

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
