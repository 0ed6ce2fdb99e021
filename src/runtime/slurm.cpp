#include "runtime/slurm.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include <sodium.h>
#include <nlohmann/json.hpp>

#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "common/subprocess.hpp"
#include "common/util.hpp"
#include "runtime/launch.hpp"
#include "runtime/sandbox.hpp"

extern char** environ;

namespace skylab::runtime {

namespace fs = std::filesystem;

namespace {

std::string read_small(const fs::path& p, std::size_t cap) {
  return util::read_file_prefix(p.string(), cap);
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// Root-only file, written whole (tmp + rename).
//! Job files are the server's own (root, 0600) in its jobs directory.
Status write_private(const fs::path& p, const std::string& data) {
  return safe_fs::write_file(p.string(), data, 0600, false);
}

bool valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (unsigned char c : id)
    if (!std::isalnum(c) && c != '-' && c != '_') return false;
  return true;
}

}  // namespace

bool uses_slurm(const Config& config) {
  for (auto& [n, t] : config.types)
    if (t.backend == Backend::kSlurm) return true;
  return false;
}

Result<std::string> run_slurm(const SlurmContext& ctx, std::vector<std::string> argv,
                              int timeout_s) {
  subprocess::Spec spec;
  spec.env.emplace();
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    if (kv.rfind("SLURM_CONF=", 0) == 0 && !ctx.config->slurm.conf.empty()) continue;
    spec.env->push_back(kv);
  }
  if (!ctx.config->slurm.conf.empty()) spec.env->push_back("SLURM_CONF=" + ctx.config->slurm.conf);
  spec.argv = std::move(argv);
  auto r = subprocess::run(spec, std::chrono::seconds(timeout_s));
  if (!r.ok()) return Error::unavailable(r.error().message);
  if (r->timed_out) return Error::unavailable(spec.argv[0] + " timed out");
  if (!WIFEXITED(r->status) || WEXITSTATUS(r->status) != 0)
    return Error::unavailable(spec.argv[0] + " failed: " + trim(r->err.substr(0, 1000)));
  return std::move(r->out);
}

// ---- launcher ----

SlurmLauncher::SlurmLauncher(std::shared_ptr<kernel::Launcher> inner,
                             std::shared_ptr<const SlurmContext> ctx)
    : inner_(std::move(inner)), ctx_(std::move(ctx)) {
  std::error_code ec;
  fs::create_directories(ctx_->jobs_dir, ec);
  ::chmod(ctx_->jobs_dir.c_str(), 0700);
}

fs::path SlurmLauncher::dir(const std::string& id) const {
  return ctx_->jobs_dir / id;
}

bool SlurmLauncher::is_slurm(const std::string& id) const {
  struct stat st {};
  return valid_id(id) && ::lstat(dir(id).c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool SlurmLauncher::use_ipc() const {
  return inner_ ? inner_->use_ipc() : false;
}
bool SlurmLauncher::interrupt_by_message() const {
  return inner_ ? inner_->interrupt_by_message() : false;
}

Status SlurmLauncher::assign(kernel::LaunchSpec& spec) {
  const RuntimeType* t = ctx_->config->find_type(spec.runtime_type);
  if (t && t->backend == Backend::kSlurm)
    return Error::unavailable("Slurm runtimes are not started for anyone");
  return inner_ ? inner_->assign(spec) : kernel::Launcher::assign(spec);
}

Status SlurmLauncher::prepare(kernel::LaunchSpec& spec) {
  const RuntimeType* t = ctx_->config->find_type(spec.runtime_type);
  if (!t || t->backend != Backend::kSlurm) return inner_ ? inner_->prepare(spec) : ok_status();
  if (!is_slurm(spec.kernel_id))
    return Error::internal("no job directory for runtime " + spec.kernel_id);
  // The connection file the manager wrote: the link binds what it names.
  std::string cf;
  for (auto& a : spec.argv)
    if (a.size() > 5 && a.compare(a.size() - 5, 5, ".json") == 0 &&
        a.find(spec.kernel_id) != std::string::npos)
      cf = a;
  if (cf.empty())
    return Error::internal("runtime " + spec.kernel_id +
                           ": no connection file in the kernel command");
  // The user's runtime uid is allocated here, by the server, never by an
  // agent: two agents (or an agent and the server) allocating at once could
  // give two users one uid. The agent refuses a different one.
  long long uid = -1;
  if (auto sandbox = std::dynamic_pointer_cast<SandboxLauncher>(inner_)) {
    auto u = sandbox->uid_for(spec.owner);
    if (!u.ok()) return u.error();
    uid = u.value();
  }
  nlohmann::json launch = {{"id", spec.kernel_id},
                           {"owner", spec.owner},
                           {"type", t->name},
                           {"argv", spec.argv},
                           {"env", spec.env},
                           {"cwd", spec.cwd},
                           {"started", spec.started},
                           {"state_dir", spec.state_dir},
                           {"connection_file", cf},
                           {"config", ctx_->config_text},
                           {"data_dir", ctx_->data_dir},
                           {"listen_host", ctx_->config->slurm.listen_host},
                           {"uid", uid}};
  if (auto st = write_private(dir(spec.kernel_id) / "launch.json", launch.dump()); !st.ok())
    return st;
  // What a previous incarnation (a restart) left: the new link writes them afresh.
  for (const char* f : {"endpoint", "connected", "exit_reason", "jobid", "usage.json"})
    ::unlink((dir(spec.kernel_id) / f).c_str());
  spec.argv = {ctx_->self_exe,      "slurm-link",
               "--job-dir",         dir(spec.kernel_id).string(),
               "--connection-file", cf};
  std::map<std::string, std::string> env;
  for (const char* k : {"PATH", "LANG", "SLURM_CONF"})
    if (auto it = spec.env.find(k); it != spec.env.end()) env[k] = it->second;
  if (!ctx_->config->slurm.conf.empty()) env["SLURM_CONF"] = ctx_->config->slurm.conf;
  spec.env = std::move(env);
  spec.cwd = dir(spec.kernel_id).string();
  return ok_status();
}

void SlurmLauncher::kill_all(const std::string& id, pid_t pid) {
  if (!is_slurm(id)) {
    if (inner_) inner_->kill_all(id, pid);
    return;
  }
  auto job = trim(read_small(dir(id) / "jobid", 64));
  if (!job.empty()) (void)run_slurm(*ctx_, {"scancel", job});
}

std::string SlurmLauncher::death_reason(const std::string& id) {
  if (!is_slurm(id)) return inner_ ? inner_->death_reason(id) : "";
  auto reason = trim(read_small(dir(id) / "exit_reason", 4096));
  auto job = trim(read_small(dir(id) / "jobid", 64));
  std::string state;
  if (!job.empty()) {
    auto q = run_slurm(*ctx_, {"squeue", "-h", "-t", "all", "-j", job, "-o", "%T %r"});
    if (q.ok()) state = trim(q.value());
  }
  if (reason.empty() && state.empty()) return "the Slurm job " + job + " ended";
  if (reason.empty()) return "the Slurm job " + job + " ended: " + state;
  return state.empty() ? reason : reason + " (Slurm job " + job + ": " + state + ")";
}

void SlurmLauncher::cleanup(const std::string& id) {
  if (!is_slurm(id)) {
    if (inner_) inner_->cleanup(id);
    return;
  }
  auto job = trim(read_small(dir(id) / "jobid", 64));
  if (!job.empty()) (void)run_slurm(*ctx_, {"scancel", job});
  std::error_code ec;
  fs::remove_all(dir(id), ec);
}

std::vector<std::string> SlurmLauncher::prepared_ids() {
  auto ids = inner_ ? inner_->prepared_ids() : std::vector<std::string>{};
  std::error_code ec;
  for (auto& e : fs::directory_iterator(ctx_->jobs_dir, ec))
    if (valid_id(e.path().filename().string())) ids.push_back(e.path().filename().string());
  return ids;
}

kernel::Usage SlurmLauncher::usage(const std::string& id) {
  if (is_slurm(id)) {
    // As the agent last reported it (every 5 s).
    auto j = json_limits::parse_or_discarded(read_small(dir(id) / "usage.json", 4096));
    kernel::Usage u;
    if (!j.is_object()) return u;
    auto num = [&](const char* k) {
      return j.contains(k) && j[k].is_number() ? j[k].get<double>() : 0.0;
    };
    u.known = true;
    u.memory_used = static_cast<std::uint64_t>(std::max(0.0, num("memory_used")));
    u.memory_limit = static_cast<std::uint64_t>(std::max(0.0, num("memory_limit")));
    u.cpu_seconds =
        j.contains("cpu_seconds") && j["cpu_seconds"].is_number() ? num("cpu_seconds") : -1;
    u.cpu_limit = num("cpu_limit");
    u.disk_used = static_cast<std::uint64_t>(std::max(0.0, num("disk_used")));
    u.disk_limit = static_cast<std::uint64_t>(std::max(0.0, num("disk_limit")));
    return u;
  }
  return inner_ ? inner_->usage(id) : kernel::Usage{};
}

void SlurmLauncher::cancel_orphans(const std::set<std::string>& adopted) {
  auto q = run_slurm(*ctx_, {"squeue", "-h", "-o", "%i %j"});
  if (!q.ok()) {
    log::warn("slurm: cannot list jobs: " + q.error().message);
    return;
  }
  std::istringstream in(q.value());
  std::string job, name;
  while (in >> job >> name) {
    if (name.rfind("skylab-", 0) != 0) continue;
    auto id = name.substr(7);
    if (adopted.count(id)) continue;
    log::info("slurm: cancelling job " + job + " of runtime " + id + " (no record of it)");
    (void)run_slurm(*ctx_, {"scancel", job});
  }
}

// ---- backend ----

namespace {

class SlurmBackend : public RuntimeBackend {
 public:
  SlurmBackend(std::shared_ptr<RuntimeBackend> local,
               std::shared_ptr<kernel::KernelService> kernels,
               std::shared_ptr<const SlurmContext> ctx)
      : local_(std::move(local)), kernels_(std::move(kernels)), ctx_(std::move(ctx)) {
    watcher_ = std::thread([this] { watch(); });
  }
  ~SlurmBackend() override {
    {
      MutexLock lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    watcher_.join();
  }

  Result<kernel::KernelModel> start(const StartSpec& s,
                                    const std::function<void(std::string)>& progress) override {
    const RuntimeType* t = ctx_->config->find_type(s.type);
    if (!t || t->backend != Backend::kSlurm) return local_->start(s, progress);
    if (!valid_id(s.id)) return Error::bad_request("invalid runtime id");
    {
      MutexLock lock(mu_);
      starting_.insert(s.id);
    }
    auto d = ctx_->jobs_dir / s.id;
    if (::mkdir(d.c_str(), 0700) != 0) {
      forget(s.id);
      return Error::internal("cannot create " + d.string() + ": " + std::strerror(errno));
    }
    unsigned char key[32];
    randombytes_buf(key, sizeof key);
    std::string secret(reinterpret_cast<char*>(key), sizeof key);
    sodium_memzero(key, sizeof key);
    if (auto st = write_private(d / "secret", secret); !st.ok()) return fail(s.id, st.error());
    if (auto st = write_job(s, *t, d); !st.ok()) return fail(s.id, st.error());
    progress("Submitting to the cluster");
    kernel::StartOptions so;
    so.runtime_type = t->name;
    so.kernel_id = s.id;
    so.launch = launch_settings(t->name, {});
    auto k = kernels_->start(s.spec, s.owner, so);
    if (!k.ok()) return fail(s.id, k.error());
    // The link listens, then submits the job (sbatch.json) and writes its id;
    // it submits again on every restart of the kernel.
    for (int i = 0; i < 1200 && !fs::exists(d / "jobid"); ++i) {
      if (cancelled(s.id))
        return stop_and_fail(s.id, Error::unavailable("released before it started"));
      auto m = kernels_->get(s.id);
      if (!m.ok() || m->execution_state == kernel::KernelState::kDead)
        return stop_and_fail(s.id, Error::unavailable(m.ok() ? "the runtime ended: " + m->reason
                                                             : "the runtime ended"));
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    std::string job = trim(read_small(d / "jobid", 64));
    if (job.empty())
      return stop_and_fail(s.id, Error::unavailable("the runtime's link did not submit its job"));
    log::info("runtime " + s.id + ": Slurm job " + job + " submitted for " + s.owner);
    std::string last;
    bool seen = false;
    for (int tick = 0;; ++tick) {
      if (fs::exists(d / "connected")) break;
      if (cancelled(s.id))
        return stop_and_fail(s.id, Error::unavailable("released before it started"));
      auto m = kernels_->get(s.id);
      if (!m.ok() || m->execution_state == kernel::KernelState::kDead)
        return stop_and_fail(s.id, Error::unavailable(m.ok() ? "the runtime ended: " + m->reason
                                                             : "the runtime ended"));
      // The watcher's one squeue per second for all jobs (never one per runtime).
      auto info = job_info(job, tick);
      if (!info && seen)
        return stop_and_fail(
            s.id, Error::unavailable("the Slurm job " + job + " is no longer known to Slurm"));
      if (info) {
        seen = true;
        std::string msg;
        if (info->state == "PENDING") {
          msg = waiting_message(*info);
        } else if (info->state == "RUNNING" || info->state == "CONFIGURING") {
          msg = "Starting on the cluster";
        } else if (!info->state.empty()) {
          return stop_and_fail(s.id, Error::unavailable("the Slurm job " + job + " ended: " +
                                                        info->state + " " + info->reason));
        }
        if (!msg.empty() && msg != last) progress(last = msg);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    // The agent runs the kernel: return once it answered kernel_info (the
    // manager's own ready timeout counts from the link's start, long past
    // for a job that waited in the queue).
    auto where = json_limits::parse_or_discarded(read_small(d / "connected", 512));
    std::string node = where.is_object() && where.contains("node") && where["node"].is_string()
                           ? where["node"].get<std::string>().substr(0, 64)
                           : "a compute node";
    progress("Starting the kernel on " + node);
    for (int i = 0; i < 2400; ++i) {
      auto m = kernels_->get(s.id);
      if (!m.ok() || m->execution_state == kernel::KernelState::kDead)
        return stop_and_fail(s.id, Error::unavailable(m.ok() ? "the runtime ended: " + m->reason
                                                             : "the runtime ended"));
      if (m->execution_state != kernel::KernelState::kStarting) break;
      if (cancelled(s.id))
        return stop_and_fail(s.id, Error::unavailable("released before it started"));
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    forget(s.id);
    return kernels_->get(s.id);
  }

  void cancel(const std::string& id) override {
    MutexLock lock(mu_);
    cancelled_.insert(id);
  }

  std::optional<kernel::KernelModel> claim_spare(const std::string& owner, const std::string& type,
                                                 const std::string& spec) override {
    const RuntimeType* t = ctx_->config->find_type(type);
    if (t && t->backend == Backend::kSlurm) return std::nullopt;
    return local_->claim_spare(owner, type, spec);
  }
  void stop(const std::string& id, std::function<void(Status)> done) override {
    local_->stop(id, std::move(done));
  }
  std::vector<kernel::KernelModel> list() const override { return local_->list(); }
  // For runtimes no start() watches (adopted after a server restart): the
  // watcher's last squeue pass.
  std::string waiting_reason(const std::string& id) const override {
    MutexLock lock(mu_);  // memory only: called on the network thread
    auto j = job_of_.find(id);
    if (j == job_of_.end()) return {};
    auto it = jobs_.find(j->second);
    if (it == jobs_.end() || it->second.state != "PENDING") return {};
    return waiting_message(it->second);
  }
  Result<kernel::KernelModel> get(const std::string& id) const override { return local_->get(id); }
  kernel::Usage usage(const std::string& id) override { return local_->usage(id); }

 private:
  static std::vector<std::string> split(const std::string& s, char sep) {
    std::vector<std::string> out;
    std::string cur;
    for (char c : s) {
      if (c == sep)
        out.push_back(std::move(cur)), cur.clear();
      else
        cur += c;
    }
    out.push_back(cur);
    return out;
  }

  struct JobInfo {
    std::string state, reason;
    int position = 0;  // among PENDING jobs of its partition, in priority order
  };

  static std::string waiting_message(const JobInfo& info) {
    return "Waiting for a machine (" +
           (info.reason.empty() || info.reason == "None" ? "" : info.reason + ", ") + "position " +
           std::to_string(info.position) + " in the queue)";
  }

  // The job's state as the last squeue pass saw it; nullopt until a pass
  // after the job's submission saw it (`tick`s of 250 ms waited so far).
  std::optional<JobInfo> job_info(const std::string& job, int tick) {
    MutexLock lock(mu_);
    if (tick == 0) cv_.notify_all();  // a new job: look now
    auto it = jobs_.find(job);
    if (it == jobs_.end()) return std::nullopt;
    return it->second;
  }

  Status write_job(const StartSpec& s, const RuntimeType& t, const fs::path& d) {
    const auto& sl = ctx_->config->slurm;
    std::string bin = sl.bin.empty() ? ctx_->self_exe : sl.bin;
    std::string account_user;  // cluster account to run the job as ("" = root)
    if (sl.users == "same") account_user = s.owner;
    if (sl.users == "table") {
      auto it = sl.accounts.find(s.owner);
      if (it == sl.accounts.end())
        return Error::forbidden("no cluster account for user " + s.owner + " in [slurm] users");
      account_user = it->second;
    }
    // As the user the job cannot read the root-only job directory: the agent
    // is started through sudo (a rule on the compute nodes, docs/scale-out.md).
    std::string script = "#!/bin/sh\n# Skylab runtime " + s.id + " of " + s.owner + "\nexec " +
                         (account_user.empty() ? "" : "sudo -n ") + bin + " agent --job-dir " +
                         d.string() + "\n";
    if (auto st = write_private(d / "job.sh", script); !st.ok()) return st;
    auto life = ctx_->config->max_lifetime(t) + sl.grace;
    long minutes = std::max<long>(1, static_cast<long>((life.count() + 59) / 60));
    std::vector<std::string> argv = {"sbatch",
                                     "--parsable",
                                     "--job-name=skylab-" + s.id,
                                     "--comment=skylab runtime " + s.id + " of " + s.owner,
                                     "--time=" + std::to_string(minutes),
                                     "--output=" + (d / "job.log").string(),
                                     "--chdir=/",
                                     "--nodes=1",
                                     "--ntasks=1"};
    if (!account_user.empty()) argv.push_back("--uid=" + account_user);
    if (!t.slurm.partition.empty()) argv.push_back("--partition=" + t.slurm.partition);
    if (t.cpus > 0)
      argv.push_back("--cpus-per-task=" + std::to_string(static_cast<int>(std::ceil(t.cpus))));
    if (t.memory_bytes > 0)
      argv.push_back("--mem=" + std::to_string(std::max<std::uint64_t>(1, t.memory_bytes >> 20)) +
                     "M");
    if (t.slurm.gpus > 0) argv.push_back("--gres=gpu:" + std::to_string(t.slurm.gpus));
    if (!t.slurm.account.empty()) argv.push_back("--account=" + t.slurm.account);
    if (!t.slurm.qos.empty()) argv.push_back("--qos=" + t.slurm.qos);
    if (!t.slurm.constraint.empty()) argv.push_back("--constraint=" + t.slurm.constraint);
    for (auto& o : t.slurm.sbatch_options) argv.push_back(o);
    argv.push_back((d / "job.sh").string());
    return write_private(d / "sbatch.json", nlohmann::json(argv).dump());
  }

  bool cancelled(const std::string& id) {
    MutexLock lock(mu_);
    return cancelled_.count(id) > 0;
  }
  void forget(const std::string& id) {
    MutexLock lock(mu_);
    cancelled_.erase(id);
    starting_.erase(id);
  }

  // Jobs that Slurm ended while their link still waits or believes the agent
  // alive (a job cancelled while pending after a server restart, a node that
  // failed without closing the connection): the link is ended with Slurm's
  // reason, so the kernel shows `dead` within seconds. One squeue per pass.
  void watch() {
    MutexLock lock(mu_);
    for (int pass = 0; !stopping_; ++pass) {
      cv_.wait_for(lock, std::chrono::seconds(1));
      if (stopping_) break;
      std::set<std::string> skip = starting_;
      // Starting runtimes want their queue state every second; the others
      // are checked for an ended job every third second.
      if (skip.empty() && pass % 3 != 0) continue;
      lock.unlock();
      watch_once(skip, pass % 3 == 0);
      lock.lock();
    }
  }

  void watch_once(const std::set<std::string>& skip, bool check_ended) {
    std::map<std::string, std::pair<std::string, std::string>> jobs;  // runtime id -> (job, dir)
    std::error_code ec;
    if (check_ended)
      for (auto& e : fs::directory_iterator(ctx_->jobs_dir, ec)) {
        auto id = e.path().filename().string();
        if (!valid_id(id) || skip.count(id)) continue;
        auto job = trim(read_small(e.path() / "jobid", 64));
        if (!job.empty()) jobs[id] = {job, e.path().string()};
      }
    if (jobs.empty() && skip.empty()) return;
    auto q = run_slurm(*ctx_, {"squeue", "-h", "-t", "all", "--sort=-p,i", "-o", "%i|%T|%P|%r"});
    if (!q.ok()) return;  // the controller may be down for a moment: no verdicts on no data
    std::map<std::string, std::string> state;  // job -> "STATE reason"
    std::map<std::string, JobInfo> infos;
    std::map<std::string, int> pending_in;  // partition -> pending jobs seen so far
    std::istringstream in(q.value());
    for (std::string line; std::getline(in, line);) {
      auto f = split(line, '|');
      if (f.size() < 4) continue;
      JobInfo ji{f[1], f[3], 0};
      if (ji.state == "PENDING") ji.position = ++pending_in[f[2]];
      state[f[0]] = f[1] + " " + f[3];
      infos[f[0]] = std::move(ji);
    }
    {
      MutexLock lock(mu_);
      jobs_ = std::move(infos);
      if (check_ended) {
        job_of_.clear();
        for (auto& [id, jd] : jobs) job_of_[id] = jd.first;
      }
    }
    for (auto& [id, jd] : jobs) {
      auto it = state.find(jd.first);
      std::string st = it == state.end() ? "" : it->second;
      bool alive = st.rfind("PENDING", 0) == 0 || st.rfind("RUNNING", 0) == 0 ||
                   st.rfind("CONFIGURING", 0) == 0 || st.rfind("COMPLETING", 0) == 0 ||
                   st.rfind("SUSPENDED", 0) == 0 || st.rfind("REQUEUED", 0) == 0;
      if (alive) continue;
      auto k = kernels_->get(id);
      if (!k.ok() || k->execution_state == kernel::KernelState::kDead || k->pid <= 0) continue;
      if (trim(read_small(fs::path(jd.second) / "jobid", 64)) != jd.first)
        continue;  // resubmitted meanwhile
      auto reason_file = fs::path(jd.second) / "exit_reason";
      if (!fs::exists(reason_file))
        (void)write_private(reason_file, "the Slurm job " + jd.first + " ended: " +
                                             (st.empty() ? "no longer known to Slurm" : st));
      log::warn("runtime " + id + ": Slurm job " + jd.first + " ended (" +
                (st.empty() ? "unknown" : st) + "); ending its link");
      ::kill(k->pid, SIGTERM);
    }
  }

  Error fail(const std::string& id, Error e) {
    std::error_code ec;
    fs::remove_all(ctx_->jobs_dir / id, ec);
    forget(id);
    return e;
  }

  // Stops the kernel (the launcher scancels the job and removes its directory); waits for it.
  Error stop_and_fail(const std::string& id, Error e) {
    forget(id);
    auto p = std::make_shared<std::promise<void>>();
    auto f = p->get_future();
    kernels_->shutdown(id, [p](const Status&) { p->set_value(); });
    f.wait_for(std::chrono::seconds(30));
    return e;
  }

  std::shared_ptr<RuntimeBackend> local_;
  std::shared_ptr<kernel::KernelService> kernels_;
  std::shared_ptr<const SlurmContext> ctx_;
  mutable Mutex mu_;
  CondVar cv_;
  std::set<std::string> cancelled_ GUARDED_BY(mu_);
  std::set<std::string> starting_ GUARDED_BY(mu_);       // start() watches these itself
  std::map<std::string, JobInfo> jobs_ GUARDED_BY(mu_);  // job id -> the last squeue pass
  std::map<std::string, std::string> job_of_
      GUARDED_BY(mu_);  // runtime id -> job id (not starting ones)
  bool stopping_ GUARDED_BY(mu_) = false;
  std::thread watcher_;
};

}  // namespace

std::shared_ptr<RuntimeBackend> make_slurm_backend(std::shared_ptr<RuntimeBackend> local,
                                                   std::shared_ptr<kernel::KernelService> kernels,
                                                   std::shared_ptr<const SlurmContext> ctx) {
  return std::make_shared<SlurmBackend>(std::move(local), std::move(kernels), std::move(ctx));
}

}  // namespace skylab::runtime
