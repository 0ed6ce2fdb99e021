// /api/skylab/jobs: runs a Drive notebook headless, the way `skylab run`
// does, in a runtime of the requesting user (their sandbox, uid, limits and
// GPUs), and saves the executed notebook next to the source. Job records
// live in <data-dir>/jobs/<id>.json, so their status survives a restart (a
// job that was running when the server stopped is reported failed).
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/secrets.hpp"
#include "api/work_queue.hpp"
#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "common/util.hpp"
#include "drive/drive.hpp"
#include "exec/executor.hpp"
#include "exec/notebook.hpp"
#include "exec/parameters.hpp"
#include "runtime/config.hpp"
#include "runtime/gpu.hpp"
#include "runtime/pool.hpp"
#include "runtime/service.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr std::size_t kMaxJobsPerUser = 200;   // records kept; the oldest finished ones go
constexpr std::size_t kMaxActivePerUser = 20;  // queued or running
constexpr auto kStartTimeout = std::chrono::seconds(120);

enum class State { kQueued, kWaitingGpu, kStarting, kRunning, kSucceeded, kFailed, kCancelled };

const char* state_name(State s) {
  switch (s) {
    case State::kQueued:
      return "queued";
    case State::kWaitingGpu:
      return "waiting_gpu";
    case State::kStarting:
      return "starting";
    case State::kRunning:
      return "running";
    case State::kSucceeded:
      return "succeeded";
    case State::kFailed:
      return "failed";
    case State::kCancelled:
      return "cancelled";
  }
  return "failed";
}

std::optional<State> state_from(const std::string& s) {
  for (auto st : {State::kQueued, State::kWaitingGpu, State::kStarting, State::kRunning,
                  State::kSucceeded, State::kFailed, State::kCancelled})
    if (s == state_name(st)) return st;
  return std::nullopt;
}

bool finished(State s) {
  return s == State::kSucceeded || s == State::kFailed || s == State::kCancelled;
}

struct Job {
  std::string id, owner, path, output_path, runtime_type, kernel_name, kernel_id, message;
  //! The kernel's working directory for the run, a path inside the runtime
  //! (papermill's --cwd); the notebook's folder in the Drive by default.
  std::string cwd;
  bool owner_admin = false;
  State state = State::kQueued;
  json parameters = json::object();
  bool allow_errors = false;
  std::optional<double> cell_timeout;  // seconds
  std::string created, started, finished_at;
  std::size_t cells_total = 0, cells_done = 0;
  long current_cell = -1;
  json error;  // ename, evalue of the failed cell
  // Not persisted: how to stop it.
  bool cancel_requested = false;
  exec::NotebookExecutor* executor = nullptr;
};

json to_json(const Job& j, int gpu_position) {
  json out = {{"id", j.id},
              {"path", j.path},
              {"output_path", j.output_path},
              {"cwd", j.cwd},
              {"owner", j.owner},
              {"state", state_name(j.state)},
              {"runtime_type", j.runtime_type},
              {"kernel_name", j.kernel_name},
              {"kernel_id", j.kernel_id.empty() ? json(nullptr) : json(j.kernel_id)},
              {"parameters", j.parameters},
              {"allow_errors", j.allow_errors},
              {"cell_timeout", j.cell_timeout ? json(*j.cell_timeout) : json(nullptr)},
              {"created", j.created},
              {"started", j.started.empty() ? json(nullptr) : json(j.started)},
              {"finished", j.finished_at.empty() ? json(nullptr) : json(j.finished_at)},
              {"cells_total", j.cells_total},
              {"cells_done", j.cells_done},
              {"current_cell", j.current_cell < 0 ? json(nullptr) : json(j.current_cell)},
              {"message", j.message},
              {"error", j.error}};
  if (j.state == State::kWaitingGpu) out["queue_position"] = gpu_position;
  return out;
}

std::optional<Job> from_json(const json& v) {
  try {
    Job j;
    j.id = v.at("id").get<std::string>();
    j.owner = v.at("owner").get<std::string>();
    j.owner_admin = v.value("owner_admin", false);
    j.path = v.at("path").get<std::string>();
    j.output_path = v.at("output_path").get<std::string>();
    j.cwd = v.value("cwd", std::string());  // records of older versions ran in /content
    if (j.cwd.empty()) j.cwd = "/content";
    j.runtime_type = v.at("runtime_type").get<std::string>();
    j.kernel_name = v.at("kernel_name").get<std::string>();
    if (v.at("kernel_id").is_string()) j.kernel_id = v["kernel_id"].get<std::string>();
    auto st = state_from(v.at("state").get<std::string>());
    if (!st) return std::nullopt;
    j.state = *st;
    j.parameters = v.at("parameters");
    j.allow_errors = v.at("allow_errors").get<bool>();
    if (v.at("cell_timeout").is_number()) j.cell_timeout = v["cell_timeout"].get<double>();
    j.created = v.at("created").get<std::string>();
    if (v.at("started").is_string()) j.started = v["started"].get<std::string>();
    if (v.at("finished").is_string()) j.finished_at = v["finished"].get<std::string>();
    j.cells_total = v.at("cells_total").get<std::size_t>();
    j.cells_done = v.at("cells_done").get<std::size_t>();
    if (v.at("current_cell").is_number()) j.current_cell = v["current_cell"].get<long>();
    j.message = v.at("message").get<std::string>();
    j.error = v.at("error");
    return j;
  } catch (const json::exception&) {
    return std::nullopt;
  }
}

}  // namespace

// Runs jobs on a few threads of its own (a job blocks a thread for its
// whole run). Thread-safe.
class JobRunner : public std::enable_shared_from_this<JobRunner> {
 public:
  //! Keeps the parts of `ctx` it uses, not the context (which owns it).
  JobRunner(const Context& ctx, std::string dir, std::size_t threads)
      : kernels_(ctx.kernels),
        drive_(ctx.drive),
        service_(ctx.runtimes),
        config_(ctx.runtime_config),
        secrets_(ctx.secret_broker),
        dir_(std::move(dir)),
        threads_(threads) {}

  ~JobRunner() { stop(); }

  void start() {
    load();
    // Unbounded: submit() bounds the jobs per user.
    work_ = std::make_unique<WorkQueue>(threads_, std::numeric_limits<std::size_t>::max());
  }

  //! Cancels what runs, drops what waits, joins the threads. Idempotent.
  void stop() {
    {
      MutexLock lock(mu_);
      if (stopping_) return;
      stopping_ = true;
      for (auto& [id, j] : jobs_)
        if (!finished(j.state)) {
          j.cancel_requested = true;
          if (j.executor) j.executor->cancel(true);
        }
    }
    cv_.notify_all();
    if (work_) work_->stop(WorkQueue::Pending::kDrop);  // queued jobs were cancelled above
  }

  Result<json> submit(Job job) {
    MutexLock lock(mu_);
    if (stopping_) return Error::unavailable("The server is stopping");
    std::size_t active = 0, mine = 0;
    for (auto& [id, j] : jobs_)
      if (j.owner == job.owner) {
        ++mine;
        active += !finished(j.state);
      }
    if (active >= kMaxActivePerUser)
      return Error::conflict("You have " + std::to_string(active) +
                             " jobs queued or running, the most allowed");
    if (mine >= kMaxJobsPerUser) forget_oldest_locked(job.owner);
    job.created = util::iso_now();
    jobs_[job.id] = job;
    persist_locked(jobs_[job.id]);
    // Never refused: stop() stops the queue only after stopping_ is set.
    work_->post([this, id = job.id] { run_if_queued(id); });
    return to_json(job, 0);
  }

  std::vector<json> list(const auth::Identity& user) {
    MutexLock lock(mu_);
    std::vector<std::pair<std::string, json>> out;
    for (auto& [id, j] : jobs_)
      if (may_access(user, j.owner)) out.emplace_back(j.created + j.id, model_locked(j));
    std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.first > b.first; });
    std::vector<json> models;
    models.reserve(out.size());
    for (auto& [k, m] : out) models.push_back(std::move(m));
    return models;
  }

  std::optional<json> get(const auth::Identity& user, const std::string& id) {
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || !may_access(user, it->second.owner)) return std::nullopt;
    return model_locked(it->second);
  }

  //! Cancels an active job (true) or forgets a finished one (false);
  //! nullopt when the user has no such job.
  std::optional<bool> cancel_or_forget(const auth::Identity& user, const std::string& id) {
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end() || !may_access(user, it->second.owner)) return std::nullopt;
    Job& j = it->second;
    if (finished(j.state)) {
      std::error_code ec;
      fs::remove(record_path(id), ec);
      jobs_.erase(it);
      return false;
    }
    j.cancel_requested = true;
    if (j.executor) j.executor->cancel();
    if (j.state == State::kQueued)
      finish_locked(j, State::kCancelled, "Cancelled before it started");
    cv_.notify_all();
    return true;
  }

 private:
  std::string record_path(const std::string& id) const { return dir_ + "/" + id + ".json"; }

  json model_locked(const Job& j) const REQUIRES(mu_) {
    int pos = j.state == State::kWaitingGpu ? service_->gpus()->position(j.kernel_id) : 0;
    return to_json(j, pos);
  }

  void persist_locked(const Job& j) REQUIRES(mu_) {
    json v = to_json(j, 0);
    v["owner_admin"] = j.owner_admin;
    if (!safe_fs::write_file(record_path(j.id), v.dump(), 0600, false).ok())
      log::warn("job " + j.id + ": cannot write its record in " + dir_);
  }

  void finish_locked(Job& j, State s, const std::string& message) REQUIRES(mu_) {
    j.state = s;
    j.message = message;
    j.finished_at = util::iso_now();
    j.current_cell = -1;
    j.executor = nullptr;
    persist_locked(j);
  }

  void forget_oldest_locked(const std::string& owner) REQUIRES(mu_) {
    const Job* oldest = nullptr;
    for (auto& [id, j] : jobs_)
      if (j.owner == owner && finished(j.state) && (!oldest || j.created < oldest->created))
        oldest = &j;
    if (!oldest) return;
    std::error_code ec;
    fs::remove(record_path(oldest->id), ec);
    jobs_.erase(oldest->id);
  }

  void load() {
    std::error_code ec;
    fs::create_directories(dir_, ec);
    fs::permissions(dir_, fs::perms::owner_all, ec);
    MutexLock lock(mu_);
    for (auto& e : fs::directory_iterator(dir_, ec)) {
      if (e.path().extension() != ".json") continue;
      std::ifstream in(e.path());
      std::stringstream ss;
      ss << in.rdbuf();
      auto v = json_limits::parse_or_discarded(ss.str(), json_limits::kStoredLimits);
      auto j = v.is_discarded() ? std::nullopt : from_json(v);
      if (!j || j->id + ".json" != e.path().filename().string()) {
        log::warn("jobs: ignoring unreadable record " + e.path().string());
        continue;
      }
      if (!finished(j->state)) {
        finish_locked(*j, State::kFailed, "The server restarted while the job ran");
        // Its runtime was reattached as the user's: nobody drives it any more.
        if (!j->kernel_id.empty() && kernels_->get(j->kernel_id).ok()) {
          log::info("job " + j->id + ": shutting down its runtime " + j->kernel_id);
          service_->release(j->kernel_id, [](const Status&) {});
        }
      }
      jobs_[j->id] = *j;
    }
  }

  // A work-queue task: runs job `id` unless it was cancelled (or forgotten)
  // while it waited.
  void run_if_queued(const std::string& id) {
    {
      MutexLock lock(mu_);
      auto it = jobs_.find(id);
      if (stopping_ || it == jobs_.end() || it->second.state != State::kQueued) return;
    }
    run(id);
  }

  // Updates the job under the lock; false when it was cancelled meanwhile.
  template <typename F>
  bool update(const std::string& id, F f) {
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return false;
    f(it->second);
    return !it->second.cancel_requested;
  }

  void fail(const std::string& id, State s, const std::string& message) {
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it != jobs_.end()) finish_locked(it->second, s, message);
  }

  class Progress : public exec::ExecutionListener {
   public:
    Progress(JobRunner* r, std::string id) : r_(r), id_(std::move(id)) {}
    void on_run_start(std::size_t total) override {
      r_->update(id_, [&](Job& j) { j.cells_total = total; });
    }
    void on_cell_start(const exec::CellInfo& c) override {
      r_->update(id_, [&](Job& j) { j.current_cell = static_cast<long>(c.index); });
    }
    void on_cell_end(const exec::CellInfo& c, bool, std::chrono::milliseconds) override {
      r_->update(id_, [&](Job& j) { j.cells_done = c.ordinal; });
    }

   private:
    JobRunner* r_;
    std::string id_;
  };

  void run(const std::string& id) {
    Job job;
    {
      MutexLock lock(mu_);
      job = jobs_.at(id);
    }
    auth::Identity user;
    user.username = job.owner;
    user.admin = job.owner_admin;
    const auto& config = *config_;

    // The notebook as it is now (it may have changed since the request).
    std::string why;
    auto nb = drive_->read_notebook(user, job.path, &why);
    if (!nb.ok())
      return fail(id, State::kFailed, "Cannot read " + job.path + ": " + nb.error().message);
    if (!job.parameters.empty()) {
      exec::Parameters params;
      for (auto& [k, v] : job.parameters.items()) {
        nlohmann::ordered_json value = nlohmann::ordered_json::parse(v.dump());
        exec::set_parameter(params, k, exec::TypedValue{value, exec::python_literal(value)});
      }
      exec::inject_parameters(nb.value(), params);
    }

    auto type = config.types.find(job.runtime_type);
    if (type == config.types.end())
      return fail(id, State::kFailed,
                  "The runtime type '" + job.runtime_type + "' no longer exists");
    (void)type;
    // The runtime service admits it (max_per_user, GPU limits), queues it for
    // GPUs, claims a warm spare or starts a kernel, and leases the kernel to
    // this job from its first moment (no client may attach to it).
    runtime::RuntimeRequest rr;
    rr.user = job.owner;
    rr.spec = job.kernel_name;
    rr.type = job.runtime_type;
    rr.purpose = runtime::Purpose::kJob;
    rr.may_queue = true;
    rr.lease_holder = "job " + id;
    auto got = std::make_shared<std::optional<Result<kernel::KernelModel>>>();
    auto ticket = service_->acquire(std::move(rr), [this, got](Result<kernel::KernelModel> k) {
      {
        MutexLock lock(mu_);
        *got = std::move(k);
      }
      cv_.notify_all();
    });
    if (!ticket.ok())
      return fail(id, State::kFailed, "The runtime did not start: " + ticket.error().message);
    const std::string ticket_id = ticket->id;
    const bool waits_for_gpu = ticket->position > 0;
    if (!update(id, [&](Job& j) REQUIRES(mu_) {
          j.state = waits_for_gpu ? State::kWaitingGpu : State::kStarting;
          j.kernel_id = ticket_id;
          if (!waits_for_gpu) j.started = util::iso_now();
          persist_locked(j);
        })) {
      service_->release(ticket_id, nullptr);
      return fail(id, State::kCancelled, "Cancelled");
    }
    {
      MutexLock lock(mu_);
      cv_.wait(lock, [&]() REQUIRES(mu_) {
        return got->has_value() || jobs_.at(id).cancel_requested || stopping_;
      });
      if (!got->has_value()) {
        lock.unlock();
        service_->release(ticket_id, nullptr);
        lock.lock();
        // Started just now under another id (a warm spare): stop that one too.
        if (got->has_value() && (*got)->ok() && (**got)->id != ticket_id)
          service_->release((**got)->id, nullptr);
        lock.unlock();
        return fail(id, State::kCancelled,
                    waits_for_gpu ? "Cancelled while waiting for a GPU"
                                  : "Cancelled while the runtime started");
      }
    }
    auto k = std::move(**got);
    if (!k.ok()) return fail(id, State::kFailed, "The runtime did not start: " + k.error().message);
    const std::string kid = k->id;
    if (secrets_) secrets_->bind_job(kid, job.path);  // userdata: the notebook's secret access
    if (!update(id, [&](Job& j) REQUIRES(mu_) {
          j.state = State::kStarting;
          j.kernel_id = kid;
          if (j.started.empty()) j.started = util::iso_now();
          persist_locked(j);
        })) {
      service_->unlease(kid);
      exec::stop_kernel(*kernels_, kid);
      return fail(id, State::kCancelled, "Cancelled");
    }
    struct Stop {
      std::shared_ptr<kernel::KernelService> kernels;
      std::shared_ptr<runtime::RuntimeService> service;
      std::string kid;
      bool stopped = false;
      void now() {
        if (!stopped) {
          exec::stop_kernel(*kernels, kid);
          service->unlease(kid);
        }
        stopped = true;
      }
      ~Stop() { now(); }
    } stop_kernel{kernels_, service_, kid};

    auto ready = std::make_shared<std::optional<Result<kernel::KernelModel>>>();
    kernels_->when_ready(kid, [this, ready](Result<kernel::KernelModel> r) {
      {
        MutexLock lock(mu_);
        *ready = std::move(r);
      }
      cv_.notify_all();
    });
    {
      MutexLock lock(mu_);
      cv_.wait_for(lock, kStartTimeout, [&]() REQUIRES(mu_) {
        return ready->has_value() || jobs_.at(id).cancel_requested || stopping_;
      });
      if (jobs_.at(id).cancel_requested || stopping_) {
        lock.unlock();
        stop_kernel.now();
        return fail(id, State::kCancelled, "Cancelled while the runtime started");
      }
      if (!ready->has_value() || !(*ready)->ok()) {
        std::string m =
            ready->has_value() ? (*ready)->error().message : "it did not answer in time";
        lock.unlock();
        stop_kernel.now();
        return fail(id, State::kFailed, "The runtime did not start: " + m);
      }
    }

    exec::ExecuteOptions eo;
    eo.allow_errors = job.allow_errors;
    if (job.cell_timeout)
      eo.cell_timeout = std::chrono::milliseconds(static_cast<long long>(*job.cell_timeout * 1000));
    eo.setup_code = "import os as _skylab_os\n_skylab_os.chdir(" +
                    exec::python_literal(nlohmann::ordered_json(job.cwd)) + ")\ndel _skylab_os\n";
    eo.setup_what = "change to the working directory " + job.cwd;
    exec::NotebookExecutor executor(kernels_, kid, eo);
    if (!update(id, [&](Job& j) REQUIRES(mu_) {
          j.state = State::kRunning;
          j.executor = &executor;
          persist_locked(j);
        })) {
      stop_kernel.now();
      return fail(id, State::kCancelled, "Cancelled");
    }
    Progress progress(this, id);
    exec::RunResult result = executor.run(nb.value(), &progress);
    update(id, [](Job& j) { j.executor = nullptr; });

    // Save first: the executed notebook is what the user came for.
    std::string saved_note;
    auto saved = drive_->save_notebook(user, job.output_path, nb.value());
    if (!saved.ok()) saved_note = "; the result could not be saved: " + saved.error().message;

    State end = State::kSucceeded;
    std::string message = "Ran " + std::to_string(result.cells_run) + " cells";
    switch (result.status) {
      case exec::RunStatus::kOk:
        break;
      case exec::RunStatus::kCancelled:
        end = State::kCancelled;
        message = "Cancelled";
        break;
      default:
        end = State::kFailed;
        message = result.message;
        break;
    }
    if (!saved.ok()) end = end == State::kCancelled ? end : State::kFailed;
    stop_kernel.now();  // a finished job holds no runtime
    MutexLock lock(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return;
    if (result.error.is_object())
      it->second.error = {{"ename", result.error.value("ename", "")},
                          {"evalue", result.error.value("evalue", "")}};
    finish_locked(it->second, end, message + saved_note);
    log::info("job " + id + " of '" + job.owner + "' " + state_name(end) + ": " + job.path);
  }

  std::shared_ptr<kernel::KernelService> kernels_;
  std::shared_ptr<drive::Drive> drive_;
  std::shared_ptr<runtime::RuntimeService> service_;
  std::shared_ptr<const runtime::Config> config_;
  std::shared_ptr<SecretsBroker> secrets_;  //!< null: no secrets
  std::string dir_;
  std::size_t threads_;
  Mutex mu_;
  CondVar cv_;
  std::map<std::string, Job> jobs_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  std::unique_ptr<WorkQueue> work_;  // runs the jobs in turn; set by start()
};

std::shared_ptr<JobRunner> make_job_runner(const Context& ctx, std::string dir,
                                           std::size_t threads) {
  auto runner = std::make_shared<JobRunner>(ctx, std::move(dir), threads);
  runner->start();
  return runner;
}

void stop_job_runner(JobRunner& jobs) {
  jobs.stop();
}

namespace {

//! A job's working directory: the notebook's folder in the Drive when none
//! is asked; a relative `requested` is a Drive folder, an absolute one a path
//! in the runtime as it is ("/content"). The kernel changes to it as the
//! user, inside the sandbox: a folder that is not there fails the run.
Result<std::string> job_cwd(const std::string& notebook_path,
                            const std::optional<std::string>& requested) {
  constexpr const char* kDrive = "/content/drive";
  if (!requested) {
    auto slash = notebook_path.rfind('/');
    return slash == std::string::npos ? std::string(kDrive)
                                      : std::string(kDrive) + "/" + notebook_path.substr(0, slash);
  }
  const std::string& d = *requested;
  if (d.empty() || d.size() > 1024 || !util::valid_utf8(d))
    return Error::bad_request("'cwd' must be a folder path of 1 to 1024 characters");
  for (unsigned char ch : d)
    if (ch < 0x20 || ch == 0x7f)
      return Error::bad_request("'cwd' must not contain control characters");
  if (d.front() == '/') return d;
  std::string rel = d;
  while (rel.size() > 1 && rel.back() == '/') rel.pop_back();
  return rel == "." ? std::string(kDrive) : std::string(kDrive) + "/" + rel;
}

Result<Job> parse_request(const Context& ctx, const Request& req) {
  auto body = parse_json_body(req.body);
  if (!body.ok()) return body.error();
  static const std::set<std::string> known = {"path",         "output_path", "parameters",
                                              "runtime_type", "kernel_name", "allow_errors",
                                              "cell_timeout", "cwd"};
  for (auto& [k, _] : body->items())
    if (!known.count(k)) return Error::bad_request("Unknown field '" + k.substr(0, 64) + "'");
  auto str = [&](const char* key) -> Result<std::optional<std::string>> {
    auto it = body->find(key);
    if (it == body->end() || it->is_null()) return std::optional<std::string>();
    if (!it->is_string()) return Error::bad_request(std::string("'") + key + "' must be a string");
    return std::optional<std::string>(it->get<std::string>());
  };
  Job j;
  j.id = util::uuid4();
  j.owner = req.user.username;
  j.owner_admin = req.user.admin;
  auto path = str("path");
  if (!path.ok()) return path.error();
  if (!path.value() || path.value()->empty())
    return Error::bad_request("'path' names the notebook to run");
  j.path = **path;
  while (!j.path.empty() && j.path.front() == '/') j.path.erase(0, 1);
  auto ends_ipynb = [](const std::string& p) {
    return p.size() > 6 && p.compare(p.size() - 6, 6, ".ipynb") == 0;
  };
  if (!ends_ipynb(j.path)) return Error::bad_request("'path' must name a .ipynb notebook");
  auto out = str("output_path");
  if (!out.ok()) return out.error();
  j.output_path = out.value() ? **out : exec::default_output_path(j.path);
  while (!j.output_path.empty() && j.output_path.front() == '/') j.output_path.erase(0, 1);
  if (!ends_ipynb(j.output_path)) return Error::bad_request("'output_path' must end in .ipynb");
  if (j.output_path == j.path) return Error::bad_request("'output_path' must differ from 'path'");
  auto cwd = str("cwd");
  if (!cwd.ok()) return cwd.error();
  auto dir = job_cwd(j.path, cwd.value());
  if (!dir.ok()) return dir.error();
  j.cwd = std::move(dir).value();
  const auto& c = *ctx.runtime_config;
  auto type = str("runtime_type");
  if (!type.ok()) return type.error();
  j.runtime_type = type.value().value_or(c.runtimes.default_type);
  if (!c.types.count(j.runtime_type))
    return Error::bad_request("Unknown runtime type '" + j.runtime_type + "'");
  auto kname = str("kernel_name");
  if (!kname.ok()) return kname.error();
  j.kernel_name = kname.value().value_or(ctx.specs->default_name());
  if (!ctx.specs->find(j.kernel_name).ok())
    return Error::not_found("No such kernel spec: " + j.kernel_name);
  if (auto p = body->find("parameters"); p != body->end() && !p->is_null()) {
    if (!p->is_object()) return Error::bad_request("'parameters' must be an object of name: value");
    for (auto& [k, _] : p->items())
      if (!exec::valid_parameter_name(k))
        return Error::bad_request("Invalid parameter name '" + k.substr(0, 64) + "'");
    j.parameters = *p;
  }
  if (auto a = body->find("allow_errors"); a != body->end() && !a->is_null()) {
    if (!a->is_boolean()) return Error::bad_request("'allow_errors' must be true or false");
    j.allow_errors = a->get<bool>();
  }
  if (auto t = body->find("cell_timeout"); t != body->end() && !t->is_null()) {
    if (!t->is_number() || t->get<double>() <= 0 || t->get<double>() > 7 * 24 * 3600.0)
      return Error::bad_request("'cell_timeout' must be a number of seconds (at most a week)");
    j.cell_timeout = t->get<double>();
  }
  return j;
}

}  // namespace

void add_job_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  if (!ctx->jobs || !ctx->drive) return;
  std::weak_ptr<JobRunner> weak = ctx->jobs;
  const std::string id_re = "/api/skylab/jobs/([0-9a-f-]{36})/?";

  r.add("POST", "/api/skylab/jobs/?", [ctx, weak](Request& req, Responder done) {
    auto runner = weak.lock();
    if (!runner) return done(Response::error(503, "The server is stopping"));
    auto job = parse_request(*ctx, req);
    if (!job.ok()) return done(Response::from_error(job.error()));
    // Disk work (reading the notebook, writing the record) on the work
    // queue, never on the Asio thread.
    respond_on_queue(
        ctx->work.get(), done,
        [ctx, runner, user = req.user, job = std::move(job.value())]() mutable {
          // The notebook must exist, be the user's and be a notebook now (it is
          // read again when the job starts).
          std::string why;
          auto nb = ctx->drive->read_notebook(user, job.path, &why);
          if (!nb.ok()) return Response::from_error(nb.error());
          auto model = runner->submit(std::move(job));
          if (!model.ok()) return Response::from_error(model.error());
          auto res = Response::json(201, model.value());
          res.set_header("Location", "/api/skylab/jobs/" + model.value()["id"].get<std::string>());
          return res;
        },
        "job submit");
  });

  r.add("GET", "/api/skylab/jobs/?", [weak](Request& req, Responder done) {
    auto runner = weak.lock();
    if (!runner) return done(Response::error(503, "The server is stopping"));
    done(Response::json(200, runner->list(req.user)));
  });

  r.add("GET", id_re, [weak](Request& req, Responder done) {
    auto runner = weak.lock();
    if (!runner) return done(Response::error(503, "The server is stopping"));
    auto m = runner->get(req.user, req.params[0]);
    if (!m) return done(Response::error(404, "No such job: " + req.params[0]));
    done(Response::json(200, *m));
  });

  r.add("DELETE", id_re, [weak](Request& req, Responder done) {
    auto runner = weak.lock();
    if (!runner) return done(Response::error(503, "The server is stopping"));
    auto r = runner->cancel_or_forget(req.user, req.params[0]);
    if (!r) return done(Response::error(404, "No such job: " + req.params[0]));
    if (!*r) return done(Response::empty(204));
    auto m = runner->get(req.user, req.params[0]);
    done(Response::json(202, m ? *m : json::object()));
  });
}

}  // namespace skylab::api
