#include "kernel/manager.hpp"

#include "kernel/connection.hpp"
#include "kernel/log_cap.hpp"
#include "kernel/process.hpp"
#include "kernel/state_machine.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/clock.hpp"
#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "common/util.hpp"
#include "metrics/metrics.hpp"

extern char** environ;

namespace skylab::kernel {

namespace fs = std::filesystem;
using SteadyPoint = std::chrono::steady_clock::time_point;
using SysClock = std::chrono::system_clock;

namespace {
//! The routing id of the server's shell and stdin sockets to kernel `id`:
//! the same in every server process, so that a kernel's stdin messages
//! (input_request, secret requests) of a cell that was running when the
//! server restarted still reach the new one.
std::string routing_id(const std::string& id) {
  return "skylab-" + id;
}
}  // namespace

namespace {

constexpr std::size_t kMaxHeld = 1000;

struct Kernel {
  explicit Kernel(Mutex& manager_mutex) : mutex(manager_mutex) {}

  //! The manager's mutex (Impl::mutex), which guards the fields marked so
  //! below. Code that holds it under that name says so with a KernelLock or
  //! Impl::same_mutex, which the analysis checks.
  Mutex& mutex;

  // Immutable once the kernel is in the manager's map.
  std::string id;
  KernelSpec spec;
  std::string key;
  std::unique_ptr<Signer> signer;
  std::string session;   // our session id for messages the server creates
  std::string identity;  // routing id of shell and stdin sockets
  std::string runtime_type;
  std::string state_file;
  std::string ack_file;
  LaunchSettings launch;  // {state_file} and {ack_file} replaced

  KernelState state GUARDED_BY(mutex) = KernelState::kStarting;
  SysClock::time_point last_activity GUARDED_BY(mutex);  // set on creation from the clock
  int connections GUARDED_BY(mutex) = 0;
  std::string reason GUARDED_BY(mutex);
  SysClock::time_point started GUARDED_BY(mutex);
  bool reserved GUARDED_BY(mutex) = false;
  bool claimed GUARDED_BY(mutex) = false;
  // Who it runs for: set at start, changed only when claim() hands a
  // kernel started for anyone (StartOptions::for_anyone) to its user.
  std::string owner GUARDED_BY(mutex);
  bool for_anyone GUARDED_BY(mutex) = false;
  bool assigning GUARDED_BY(mutex) = false;  // claim() is handing it to a user
  std::vector<std::shared_ptr<KernelObserver>> observers GUARDED_BY(mutex);
  bool ready GUARDED_BY(mutex) = false;
  std::vector<std::function<void(Result<KernelModel>)>> ready_waiters GUARDED_BY(mutex);
  pid_t pid GUARDED_BY(mutex) = -1;

  // I/O thread only.
  KernelStateMachine fsm{LifecycleTiming{}};  // replaced with the manager's timing on creation
  pid_t pid_io = -1;
  bool adopted = false;            // reattached after a server restart: not our child
  int ports[5] = {0, 0, 0, 0, 0};  // shell, iopub, stdin, control, hb
  std::string connection_file;
  std::string conn_dir;  // ipc: per-kernel socket directory
  std::string ipc_base;  // ipc: endpoint prefix, "<conn_dir>/k"

  Sockets sock;
  std::set<std::string> nudges;
  std::vector<std::function<void(Status)>> shutdown_done;
  // Client messages that arrived before the kernel was ready: the iopub
  // subscription may not be live yet, so their output would be lost.
  struct Held {
    Channel ch;
    Message msg;
    std::string signature;
  };
  std::deque<Held> held;
};

//! Holds the manager's mutex, by both its names: `manager` (Impl::mutex, which
//! guards the kernel map) and `k.mutex` (the same mutex, which guards k).
class SCOPED_CAPABILITY KernelLock {
 public:
  KernelLock(Mutex& manager, Kernel& k) ACQUIRE(manager, k.mutex) : mu_(manager) {
    assert(&manager == &k.mutex);
    mu_.lock();
  }
  ~KernelLock() RELEASE() { mu_.unlock(); }
  KernelLock(const KernelLock&) = delete;
  KernelLock& operator=(const KernelLock&) = delete;

 private:
  Mutex& mu_;
};

KernelModel model_of(const Kernel& k) REQUIRES(k.mutex) {
  KernelModel m;
  m.id = k.id;
  m.name = k.spec.name;
  m.owner = k.owner;
  m.execution_state = k.state;
  m.last_activity = k.last_activity;
  m.connections = k.connections;
  m.pid = k.pid;
  m.runtime_type = k.runtime_type;
  m.reason = k.reason;
  m.started = k.started;
  m.launch = k.launch;
  m.reserved = k.reserved;
  m.claimed = k.claimed;
  return m;
}

std::string owner_of(const Kernel& k) EXCLUDES(k.mutex) {
  MutexLock lock(k.mutex);
  return k.owner;
}

//! The launch settings of a runtime record written before records kept them:
//! the state and ack files that server put into every kernel's environment,
//! so that a restart of a kernel adopted across the upgrade still finds them.
//! (CUDA_VISIBLE_DEVICES of an unsandboxed one is not restored; a sandbox
//! sets it from the devices.)
void legacy_launch(const nlohmann::json& r, Kernel& k) {
  k.launch.devices = r.value("gpus", std::vector<int>{});
  k.launch.env = {{"SKYLAB_RUNTIME_STATE", k.state_file}, {"SKYLAB_RUNTIME_ACK", k.ack_file}};
}

}  // namespace

struct KernelManager::Impl {
  ManagerOptions opts;
  std::shared_ptr<const KernelSpecStore> specs;
  void* zctx = nullptr;
  int wake_fd = -1;
  std::thread io;
  std::atomic<bool> stopping{false};
  std::atomic<bool> detached{false};  // detach_all(): kernels outlive this manager

  mutable Mutex mutex;
  std::map<std::string, std::shared_ptr<Kernel>> kernels GUARDED_BY(mutex);
  SysClock::time_point last_activity GUARDED_BY(mutex);

  Mutex cmd_mutex;
  std::vector<std::function<void()>> commands GUARDED_BY(cmd_mutex);

  // I/O thread only.
  std::vector<std::shared_ptr<Kernel>> live;  // kernels with open sockets
  std::vector<zmq_pollitem_t> items;
  bool items_dirty = true;
  bool settling =
      false;  // some kernel answered kernel_info, its iopub is not live yet (I/O thread)
  SteadyPoint next_reap{};
  SteadyPoint next_log_check{};
  int runtime_dir_fd = -1;  // opened on first use, I/O thread only

  Impl(ManagerOptions o, std::shared_ptr<const KernelSpecStore> s)
      : opts(std::move(o)), specs(std::move(s)) {
    last_activity = clock().wall();
    zctx = zmq_ctx_new();
    zmq_ctx_set(zctx, ZMQ_BLOCKY, 0);
    wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    std::error_code ec;
    fs::create_directories(opts.runtime_dir, ec);
    ::chmod(opts.runtime_dir.c_str(), 0700);
    if (opts.socket_dir.empty()) {
      // Short: ipc socket paths must fit in sockaddr_un (108 bytes).
      opts.socket_dir =
          ::geteuid() == 0 ? "/run/skylab" : "/tmp/skylab-" + std::to_string(::geteuid());
    }
    if (opts.launcher && opts.launcher->use_ipc()) {
      fs::create_directories(opts.socket_dir, ec);
      ::chmod(opts.socket_dir.c_str(), 0711);  // sandboxed kernels reach only their own directory
    }
    io = std::thread([this] { loop(); });
  }

  ~Impl() {
    stopping = true;
    wake();
    if (io.joinable()) io.join();
    for (auto& k : live) close_sockets(*k);
    zmq_ctx_term(zctx);
    ::close(wake_fd);
    if (runtime_dir_fd >= 0) ::close(runtime_dir_fd);
  }

  void post(std::function<void()> fn) {
    {
      MutexLock lock(cmd_mutex);
      commands.push_back(std::move(fn));
    }
    wake();
  }

  void wake() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto r = ::write(wake_fd, &one, sizeof one);
  }

  const Clock& clock() const { return opts.clock ? *opts.clock : real_clock(); }

  LifecycleTiming timing() const {
    LifecycleTiming t;
    t.ready_timeout = opts.ready_timeout;
    t.shutdown_wait = opts.shutdown_wait;
    t.heartbeat_interval = opts.heartbeat_interval;
    return t;
  }

  //! Tells the analysis that the caller, holding `mutex`, holds k.mutex: the
  //! same mutex (checked in debug builds). For loops over the map; a block
  //! that touches one kernel takes a KernelLock instead.
  void same_mutex(const Kernel& k) const REQUIRES(mutex) ASSERT_CAPABILITY(k.mutex) {
    assert(&k.mutex == &mutex);
  }

  std::shared_ptr<Kernel> find(const std::string& id) const {
    MutexLock lock(mutex);
    auto it = kernels.find(id);
    return it == kernels.end() ? nullptr : it->second;
  }

  // ---- process management (I/O thread, except spawn during start) ----

  bool ipc() const { return opts.launcher && opts.launcher->use_ipc(); }

  // The root-owned directory that holds a sandboxed kernel's state file
  // (bound read-only into its sandbox): the kernel can read it, not write it.
  std::string state_dir(const std::string& id) const {
    return (fs::path(opts.runtime_dir) / "state" / id).string();
  }

  Status write_connection_file(Kernel& k) {
    nlohmann::json c;
    safe_fs::UniqueFd dir;
    std::string name;
    if (ipc()) {
      // Sockets live in a per-kernel directory that the sandbox sees at the
      // same path. The launcher gives it to the kernel's uid, so everything
      // below is written fd-relative and never through a symlink.
      k.conn_dir = (fs::path(opts.socket_dir) / k.id).string();
      std::error_code ec;
      fs::create_directories(opts.socket_dir, ec);
      if (::mkdir(k.conn_dir.c_str(), 0700) != 0 && errno != EEXIST)
        return Error::internal("cannot create " + k.conn_dir + ": " + std::strerror(errno));
      auto d = safe_fs::open_dir(k.conn_dir);
      if (!d.ok()) return d.error();
      dir = std::move(d.value());
      fs::create_directories(state_dir(k.id), ec);
      if (ec) return Error::internal("cannot create " + state_dir(k.id) + ": " + ec.message());
      ::chmod(state_dir(k.id).c_str(), 0755);
      k.ipc_base = k.conn_dir + "/k";
      for (int i = 0; i < 5; ++i) k.ports[i] = i + 1;
      c = {{"ip", k.ipc_base}, {"transport", "ipc"}};
      k.connection_file = (fs::path(k.conn_dir) / "connection.json").string();
      name = "connection.json";
    } else {
      if (!pick_ports(opts.ip, k.ports, 5))
        return Error::unavailable("no free ports for the kernel");
      c = {{"ip", opts.ip}, {"transport", "tcp"}};
      k.connection_file = (fs::path(opts.runtime_dir) / ("kernel-" + k.id + ".json")).string();
      auto d = safe_fs::open_dir(opts.runtime_dir);
      if (!d.ok()) return d.error();
      dir = std::move(d.value());
      name = "kernel-" + k.id + ".json";
    }
    c["shell_port"] = k.ports[0];
    c["iopub_port"] = k.ports[1];
    c["stdin_port"] = k.ports[2];
    c["control_port"] = k.ports[3];
    c["hb_port"] = k.ports[4];
    c["key"] = k.key;
    c["signature_scheme"] = "hmac-sha256";
    c["kernel_name"] = k.spec.name;
    auto st = safe_fs::write_file_at(dir.get(), name, c.dump(2), 0600, false);
    if (!st.ok()) return Error::internal("cannot write connection file: " + st.error().message);
    return ok_status();
  }

  void remove_connection_files(Kernel& k) {
    if (k.conn_dir.empty()) {
      if (!k.connection_file.empty()) ::unlink(k.connection_file.c_str());
      if (!k.state_file.empty()) ::unlink(k.state_file.c_str());
      if (!k.ack_file.empty()) ::unlink(k.ack_file.c_str());
      return;
    }
    // The kernel's uid owns conn_dir: removed fd-relative, no symlink followed.
    safe_fs::remove_tree(k.conn_dir);
    if (!k.state_file.empty()) {
      safe_fs::remove_tree(fs::path(k.state_file).parent_path().string());
    }
  }

  // Whether the kernel's process has exited (reaping it when it is our child).
  // `block`: wait for it (after SIGKILL).
  bool reap(Kernel& k, bool block, int& status) {
    return process_exited(k.pid_io, k.adopted, block, status);
  }

  // Runtime records: what a restarted server needs to reattach to a kernel.
  std::string record_path(const std::string& id) const {
    return (fs::path(opts.runtime_dir) / "records" / (id + ".json")).string();
  }

  void save_record(Kernel& k) {
    bool reserved;
    SysClock::time_point started;
    std::string owner;
    {
      MutexLock lock(k.mutex);
      reserved = k.reserved;
      started = k.started;
      owner = k.owner;
    }
    nlohmann::json r = {
        {"id", k.id},
        {"owner", owner},
        {"spec", k.spec.name},
        {"runtime_type", k.runtime_type},
        {"pid", k.pid_io},
        {"key", k.key},
        {"ports", {k.ports[0], k.ports[1], k.ports[2], k.ports[3], k.ports[4]}},
        {"ipc_base", k.ipc_base},
        {"conn_dir", k.conn_dir},
        {"connection_file", k.connection_file},
        {"state_file", k.state_file},
        {"ack_file", k.ack_file},
        {"started_us",
         std::chrono::duration_cast<std::chrono::microseconds>(started.time_since_epoch()).count()},
        {"env", k.launch.env},
        {"devices", k.launch.devices},
        {"reserved", reserved}};
    std::error_code ec;
    fs::create_directories(fs::path(opts.runtime_dir) / "records", ec);
    if (!safe_fs::write_file(record_path(k.id), r.dump(), 0600, true).ok())
      log::warn("kernel " + k.id + ": cannot save its runtime record");
  }

  // Kills the kernel's processes: its process group, and whatever the launcher knows of.
  void kill_processes(Kernel& k, pid_t pid) {
    if (pid > 0) ::killpg(pid, SIGKILL);
    if (opts.launcher) opts.launcher->kill_all(k.id, pid);
  }

  // What the launcher is told about the kernel (prepare, assign).
  LaunchSpec launch_spec(const Kernel& k) {
    LaunchSpec ls;
    ls.kernel_id = k.id;
    ls.owner = owner_of(k);
    ls.runtime_type = k.runtime_type;
    ls.argv = kernel_argv(k.spec, k.connection_file);
    ls.env =
        kernel_environment(environ, KernelEnvInput{k.launch.env, opts.python_path, k.spec.env});
    ls.cwd = opts.working_dir;
    ls.connection_dir = k.conn_dir;
    ls.devices = k.launch.devices;
    if (!k.conn_dir.empty()) ls.state_dir = fs::path(k.state_file).parent_path().string();
    MutexLock lock(k.mutex);
    ls.started =
        std::chrono::duration_cast<std::chrono::seconds>(k.started.time_since_epoch()).count();
    return ls;
  }

  Result<pid_t> spawn(Kernel& k) {
    LaunchSpec ls = launch_spec(k);
    if (opts.launcher) {
      auto st = opts.launcher->prepare(ls);
      if (!st.ok()) return st.error();
    } else if (!opts.command_prefix.empty()) {
      ls.argv.insert(ls.argv.begin(), opts.command_prefix.begin(), opts.command_prefix.end());
    }
    // The kernel's own stdout/stderr (not its cells' output, which goes over
    // iopub) is kept per kernel for operators.
    std::string log_path = (fs::path(opts.runtime_dir) / ("kernel-" + k.id + ".log")).string();
    return spawn_process(std::move(ls.argv), ls.env, ls.cwd, log_path);
  }

  // Opens and connects the five sockets (I/O thread).
  void open_sockets(Kernel& k) {
    Endpoints at;
    at.ip = opts.ip;
    at.ipc_base = k.ipc_base;
    for (int i = 0; i < 5; ++i) at.ports[i] = k.ports[i];
    k.sock = kernel::open_sockets(zctx, k.identity, at);
    k.nudges.clear();
    k.fsm.connected(clock().now());
    bool present = false;
    for (auto& p : live) present = present || p.get() == &k;
    if (!present) {
      MutexLock lock(mutex);
      auto it = kernels.find(k.id);
      if (it != kernels.end()) live.push_back(it->second);
    }
    items_dirty = true;
  }

  void close_sockets(Kernel& k) {
    kernel::close_sockets(k.sock);
    items_dirty = true;
  }

  void drop_live(Kernel& k) {
    close_sockets(k);
    live.erase(std::remove_if(live.begin(), live.end(), [&](auto& p) { return p.get() == &k; }),
               live.end());
    items_dirty = true;
  }

  void send_on(Kernel& k, void* sock, const Message& m, const std::string& signature) {
    if (!send_message(sock, m, signature))
      log::warn("kernel " + k.id + ": send failed (queue full or closed)");
  }

  void send_own(Kernel& k, void* sock, std::string_view type, const nlohmann::json& content) {
    Message m = make_message(type, content, k.session);
    send_on(k, sock, m, k.signer->sign(m));
  }

  // Delivers a message to every observer (I/O thread, no lock held while
  // calling); one that throws is logged and does not stop the others.
  void deliver(Kernel& k, Channel ch, const std::shared_ptr<const Message>& m,
               const MessageInfo& info) {
    std::vector<std::shared_ptr<KernelObserver>> obs;
    {
      MutexLock lock(k.mutex);
      obs = k.observers;
    }
    for (auto& o : obs) {
      try {
        o->on_kernel_message(ch, m, info);
      } catch (const std::exception& e) {
        log::warn("kernel " + k.id + ": an observer failed: " + e.what());
      } catch (...) {
        log::warn("kernel " + k.id + ": an observer failed");
      }
    }
  }

  void emit_status(Kernel& k, KernelState state, const std::string& reason = "") {
    nlohmann::json content = {{"execution_state", to_string(state)}};
    if (!reason.empty()) content["reason"] = reason;
    auto m = std::make_shared<Message>(make_message("status", content, k.session));
    auto info = inspect(*m);
    if (info.ok()) deliver(k, Channel::kIopub, m, info.value());
  }

  void set_state(Kernel& k, KernelState state) {
    MutexLock lock(k.mutex);
    k.state = state;
  }

  void finish_ready(Kernel& k, const Result<KernelModel>& result_if_error, bool success) {
    std::vector<std::function<void(Result<KernelModel>)>> waiters;
    KernelModel model;
    {
      MutexLock lock(k.mutex);
      if (success) {
        k.ready = true;
        if (k.state == KernelState::kStarting || k.state == KernelState::kRestarting)
          k.state = KernelState::kIdle;
      }
      waiters.swap(k.ready_waiters);
      model = model_of(k);
    }
    for (auto& w : waiters) {
      if (success)
        w(model);
      else
        w(result_if_error);
    }
    if (success) flush_held(k);
  }

  void flush_held(Kernel& k) {
    auto held = std::move(k.held);
    k.held.clear();
    for (auto& h : held) send_to(k, h.ch, h.msg, h.signature);
  }

  static metrics::KernelChannel metric_channel(Channel ch) {
    switch (ch) {
      case Channel::kShell:
        return metrics::KernelChannel::kShell;
      case Channel::kControl:
        return metrics::KernelChannel::kControl;
      case Channel::kStdin:
        return metrics::KernelChannel::kStdin;
      case Channel::kIopub:
        return metrics::KernelChannel::kIopub;
    }
    return metrics::KernelChannel::kShell;
  }

  void send_to(Kernel& k, Channel ch, const Message& m, const std::string& sig) {
    metrics::kernel_message(metric_channel(ch), metrics::Direction::kToKernel);
    void* s = ch == Channel::kShell     ? k.sock.shell
              : ch == Channel::kControl ? k.sock.control
                                        : k.sock.stdin_;
    send_on(k, s, m, sig);
  }

  void on_message(Kernel& k, Channel ch, std::vector<std::string>& frames) {
    metrics::kernel_message(metric_channel(ch), metrics::Direction::kFromKernel);
    auto parsed = from_frames(frames, *k.signer);
    if (!parsed.ok()) {
      log::warn("kernel " + k.id + ": dropped message: " + parsed.error().message);
      return;
    }
    auto msg = std::make_shared<Message>(std::move(parsed.value()));
    auto info = inspect(*msg);
    if (!info.ok()) {
      log::warn("kernel " + k.id + ": dropped message: " + info.error().message);
      return;
    }
    // Replies and iopub traffic caused by our own kernel_info nudges are not for clients.
    bool own = !info->parent_msg_id.empty() && k.nudges.count(info->parent_msg_id);
    {
      KernelLock lock(mutex, k);
      k.last_activity = clock().wall();
      if (!k.reserved)
        last_activity = k.last_activity;  // a reserved one booting is no user activity
      if (!own && k.ready && ch == Channel::kIopub && info->msg_type == "status" &&
          k.fsm.phase() == Phase::kRunning) {
        auto c = json_limits::parse_or_discarded(msg->content);
        if (c.is_object() && c.contains("execution_state") && c["execution_state"].is_string()) {
          if (auto st = kernel_state_from_string(c["execution_state"].get<std::string>()))
            k.state = *st;
        }
      }
    }
    if (k.fsm.on_message(ch == Channel::kIopub, own && ch == Channel::kShell) && !is_ready(k))
      finish_ready(k, Error::internal(""), true);
    if (own) return;
    deliver(k, ch, std::move(msg), info.value());
  }

  void started_hook(Kernel& k) {
    if (!opts.on_started) return;
    KernelModel m;
    {
      MutexLock lock(k.mutex);
      m = model_of(k);
    }
    opts.on_started(m);
  }

  bool is_ready(Kernel& k) {
    MutexLock lock(k.mutex);
    return k.ready;
  }

  // The kernel process is gone (reaped). Decides what that means.
  void on_exit(Kernel& k, int status) {
    std::string how = WIFEXITED(status)
                          ? "exited with status " + std::to_string(WEXITSTATUS(status))
                          : "killed by signal " + std::to_string(WTERMSIG(status));
    kill_processes(k, k.pid_io);  // stray children of the kernel
    std::string reason = opts.launcher ? opts.launcher->death_reason(k.id) : "";
    {
      MutexLock lock(k.mutex);
      k.pid = -1;
    }
    k.pid_io = -1;
    switch (k.fsm.on_exit()) {
      case KernelStateMachine::AfterExit::kRemove:
        return remove(k);
      case KernelStateMachine::AfterExit::kRelaunch:
        return relaunch(k);
      case KernelStateMachine::AfterExit::kDead:
        break;
    }
    if (reason.empty()) reason = "the kernel process " + how;
    log::warn("kernel " + k.id + " died: " + reason);
    log::record(log::Level::kInfo, "runtime",
                {{"event", "dead"},
                 {"id", k.id},
                 {"user", owner_of(k)},
                 {"type", k.runtime_type},
                 {"reason", reason}});
    k.held.clear();
    close_sockets(k);
    {
      MutexLock lock(k.mutex);
      k.state = KernelState::kDead;
      k.ready = false;
      k.reason = reason;
    }
    finish_ready(k, Error::unavailable("kernel died: " + reason), false);
    emit_status(k, KernelState::kDead, reason);
  }

  void relaunch(Kernel& k) {
    close_sockets(k);
    remove_connection_files(k);
    {
      MutexLock lock(k.mutex);
      k.reason.clear();
    }
    auto st = write_connection_file(k);
    if (st.ok()) started_hook(k);
    Result<pid_t> pid = st.ok() ? spawn(k) : Result<pid_t>(st.error());
    if (!pid.ok()) {
      log::error("kernel " + k.id + ": restart failed: " + pid.error().message);
      k.fsm.failed();
      set_state(k, KernelState::kDead);
      finish_ready(k, pid.error(), false);
      emit_status(k, KernelState::kDead);
      return;
    }
    {
      MutexLock lock(k.mutex);
      k.pid = pid.value();
      k.ready = false;
      k.state = KernelState::kStarting;
    }
    k.pid_io = pid.value();
    k.adopted = false;
    k.fsm.relaunched();
    open_sockets(k);
    save_record(k);
    emit_status(k, KernelState::kStarting);
  }

  void remove(Kernel& k) {
    log::record(
        log::Level::kInfo, "runtime",
        {{"event", "stop"},
         {"id", k.id},
         {"user", owner_of(k)},
         {"type", k.runtime_type},
         {"reason", k.fsm.phase() == Phase::kDead ? "removed after its death" : "shut down"}});
    if (k.pid_io > 0) {
      kill_processes(k, k.pid_io);
      int status = 0;
      reap(k, true, status);
      k.pid_io = -1;
    }
    if (opts.launcher) opts.launcher->kill_all(k.id, -1);
    ::unlink(record_path(k.id).c_str());
    drop_live(k);
    remove_connection_files(k);
    if (opts.launcher) opts.launcher->cleanup(k.id);
    ::unlink((fs::path(opts.runtime_dir) / ("kernel-" + k.id + ".log")).c_str());
    ::unlink((fs::path(opts.runtime_dir) / ("kernel-" + k.id + ".log.1")).c_str());
    std::vector<std::shared_ptr<KernelObserver>> obs;
    std::shared_ptr<Kernel> keep;
    {
      KernelLock lock(mutex, k);
      auto it = kernels.find(k.id);
      if (it != kernels.end()) {
        keep = it->second;
        kernels.erase(it);
      }
      obs = std::move(k.observers);
      k.observers.clear();
      k.state = KernelState::kDead;
    }
    finish_ready(k, Error::not_found("kernel was shut down"), false);
    for (auto& o : obs) {
      try {
        o->on_kernel_removed();
      } catch (...) {
        log::warn("kernel " + k.id + ": an observer failed on removal");
      }
    }
    if (opts.on_removed) opts.on_removed(k.id);
    auto done = std::move(k.shutdown_done);
    for (auto& d : done) d(ok_status());
  }

  // Starts an orderly stop of the process: shutdown_request, then SIGKILL at
  // the deadline. A runtime still waiting for its user (started for anyone,
  // not being handed over) has nothing to save and reads no control
  // messages: it is killed at once.
  void begin_stop(Kernel& k, bool restart) {
    bool waiting;
    {
      KernelLock lock(mutex, k);
      waiting = k.for_anyone && !k.assigning;
    }
    k.fsm.begin_stop(restart, clock().now(), waiting);
    if (waiting && k.pid_io > 0)
      log::info("kernel " + k.id + ": stopped at once (started for anyone, never claimed)");
    if (k.pid_io <= 0) {
      if (restart)
        relaunch(k);
      else
        remove(k);
      return;
    }
    if (k.sock.control && !waiting)
      send_own(k, k.sock.control, "shutdown_request", {{"restart", restart}});
  }

  //! Rotates every live kernel's log that grew past the cap (I/O thread).
  void cap_kernel_logs() {
    if (opts.kernel_log_cap == 0) return;
    if (runtime_dir_fd < 0)
      runtime_dir_fd =
          ::open(opts.runtime_dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (runtime_dir_fd < 0) return;
    for (auto& kp : live)
      if (rotate_log_if_over(runtime_dir_fd, "kernel-" + kp->id + ".log", opts.kernel_log_cap))
        log::info("kernel " + kp->id + ": its log passed " +
                  std::to_string(opts.kernel_log_cap >> 20) + " MiB and was rotated");
  }

  void timers() {
    auto now = clock().now();
    settling = false;
    bool reap = now >= next_reap;
    if (reap) next_reap = now + std::chrono::milliseconds(50);
    if (now >= next_log_check) {
      // Kernel logs: a size check each, a copy of at most the cap when over.
      next_log_check = now + std::chrono::milliseconds(200);
      cap_kernel_logs();
    }
    auto snapshot = live;
    for (auto& kp : snapshot) {
      Kernel& k = *kp;
      if (reap && k.pid_io > 0) {
        int status = 0;
        if (this->reap(k, false, status)) {
          on_exit(k, status);
          continue;
        }
      }
      bool ready = is_ready(k);
      // A kernel that answered but whose iopub is not live yet is ready
      // within milliseconds: poll briefly until it is (connect latency).
      if (!ready && k.fsm.got_info()) settling = true;
      LifecycleDue due = k.fsm.tick(now, k.pid_io > 0, k.sock.shell != nullptr, ready);
      if (due.kill) {
        kill_processes(k, k.pid_io);
        int status = 0;
        this->reap(k, true, status);
        on_exit(k, status);
        continue;
      }
      if (due.nudge) {
        Message m = make_message("kernel_info_request", nlohmann::json::object(), k.session);
        auto info = inspect(m);
        if (info.ok() && k.nudges.size() < 1000) k.nudges.insert(info->msg_id);
        send_on(k, k.sock.shell, m, k.signer->sign(m));
      }
      if (due.ready_timeout) {
        finish_ready(k, Error::unavailable("kernel did not become ready in time"), false);
        flush_held(k);  // best effort: the kernel may still answer
      }
      if (due.ping) {
        if (due.silent)
          log::warn("kernel " + k.id + ": no heartbeat for " +
                    std::to_string(
                        std::chrono::duration_cast<std::chrono::seconds>(*due.silent).count()) +
                    " s");
        send_ping(k.sock.hb);
      }
    }
  }

  void rebuild_items() {
    items.clear();
    items.push_back({nullptr, wake_fd, ZMQ_POLLIN, 0});
    for (auto& k : live) {
      for (void* s : {k->sock.shell, k->sock.control, k->sock.stdin_, k->sock.iopub, k->sock.hb})
        if (s) items.push_back({s, 0, ZMQ_POLLIN, 0});
    }
    items_dirty = false;
  }

  void loop() {
    std::vector<std::string> frames;
    while (true) {
      std::vector<std::function<void()>> todo;
      {
        MutexLock lock(cmd_mutex);
        todo.swap(commands);
      }
      for (auto& fn : todo) {
        try {
          fn();
        } catch (const std::exception& e) {
          log::error(std::string("kernel manager command failed: ") + e.what());
        }
      }
      if (stopping && todo.empty()) break;
      if (items_dirty) rebuild_items();
      int n = zmq_poll(items.data(), static_cast<int>(items.size()), settling ? 5 : 50);
      if (n < 0 && zmq_errno() != EINTR) log::warn("zmq_poll failed");
      if (n > 0) {
        if (items[0].revents & ZMQ_POLLIN) {
          std::uint64_t v;
          [[maybe_unused]] auto r = ::read(wake_fd, &v, sizeof v);
        }
        // Map poll items back to kernels; items may be rebuilt while handling.
        std::size_t idx = 1;
        auto snapshot = live;
        std::vector<std::pair<Kernel*, std::pair<Channel, void*>>> ready_socks;
        for (auto& kp : snapshot) {
          Kernel& k = *kp;
          std::pair<Channel, void*> socks[] = {{Channel::kShell, k.sock.shell},
                                               {Channel::kControl, k.sock.control},
                                               {Channel::kStdin, k.sock.stdin_},
                                               {Channel::kIopub, k.sock.iopub},
                                               {Channel::kIopub, k.sock.hb}};
          for (auto& [ch, s] : socks) {
            if (!s) continue;
            if (idx < items.size() && items[idx].socket == s && (items[idx].revents & ZMQ_POLLIN))
              ready_socks.push_back({&k, {ch, s}});
            ++idx;
          }
        }
        for (auto& [kptr, cs] : ready_socks) {
          Kernel& k = *kptr;
          void* s = cs.second;
          bool still = s == k.sock.shell || s == k.sock.control || s == k.sock.stdin_ ||
                       s == k.sock.iopub || s == k.sock.hb;
          if (!still) continue;
          if (s == k.sock.hb) {
            while (recv_frames(s, frames)) k.fsm.on_heartbeat_reply(clock().now());
            continue;
          }
          for (int i = 0; i < 256 && s && recv_frames(s, frames); ++i) {
            on_message(k, cs.first, frames);
            // on_message may close sockets (death handling happens in timers only).
          }
        }
      }
      timers();
    }
  }
};

KernelManager::KernelManager(ManagerOptions options, std::shared_ptr<const KernelSpecStore> specs)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(specs))) {}

KernelManager::~KernelManager() {
  shutdown_all();
  impl_.reset();
}

Result<KernelModel> KernelManager::start(const std::string& spec_name, const std::string& owner,
                                         const StartOptions& options) {
  auto spec = impl_->specs->find(spec_name);
  if (!spec.ok()) return spec.error();
  auto k = std::make_shared<Kernel>(impl_->mutex);
  k->id = options.kernel_id.empty() ? util::uuid4() : options.kernel_id;
  if (impl_->find(k->id)) return Error::conflict("kernel id in use: " + k->id);
  k->spec = std::move(spec.value());
  k->key = util::uuid4();
  k->signer = std::make_unique<Signer>(k->key);
  k->session = util::uuid4();
  k->identity = routing_id(k->id);
  k->runtime_type = options.runtime_type;
  k->launch = options.launch;
  k->fsm = KernelStateMachine(impl_->timing());
  {
    MutexLock lock(k->mutex);  // nobody else sees k yet; the analysis wants it all the same
    k->reserved = options.reserved;
    k->for_anyone = options.reserved && options.for_anyone;
    k->owner = owner;
    k->started = k->last_activity = impl_->clock().wall();
  }
  auto st = impl_->write_connection_file(*k);
  if (!st.ok()) return st.error();
  if (k->conn_dir.empty()) {
    k->state_file =
        (fs::path(impl_->opts.runtime_dir) / ("kernel-" + k->id + ".state.json")).string();
    k->ack_file = k->state_file + ".done";
  } else {
    // Sandboxed: the state file in a root-owned directory the sandbox sees
    // read-only; the acknowledgement in the kernel's own (writable) folder.
    k->state_file = (fs::path(impl_->state_dir(k->id)) / "state.json").string();
    k->ack_file = (fs::path(k->conn_dir) / "state.json.done").string();
  }
  for (auto& [_, v] : k->launch.env)
    v = substitute(v, {{"{state_file}", k->state_file}, {"{ack_file}", k->ack_file}});
  // Before the process exists, so that it never sees a missing state file.
  if (!options.reserved) impl_->started_hook(*k);
  auto pid = impl_->spawn(*k);
  if (!pid.ok()) {
    impl_->remove_connection_files(*k);
    if (impl_->opts.launcher) impl_->opts.launcher->cleanup(k->id);
    return pid.error();
  }
  KernelModel model;
  {
    KernelLock lock(impl_->mutex, *k);
    k->pid = pid.value();
    impl_->kernels[k->id] = k;
    impl_->last_activity = impl_->clock().wall();
    model = model_of(*k);
  }
  log::info("kernel " + k->id + (options.reserved ? " started reserved (" : " started (") +
            k->spec.name + ", pid " + std::to_string(pid.value()) + ")");
  log::record(log::Level::kInfo, "runtime",
              {{"event", "start"},
               {"id", k->id},
               {"user", owner},
               {"type", k->runtime_type},
               {"kernel", k->spec.name}});
  impl_->post([this, k, p = pid.value()] {
    k->pid_io = p;
    impl_->open_sockets(*k);
    impl_->save_record(*k);
  });
  return model;
}

std::vector<KernelModel> KernelManager::list(bool include_reserved) const {
  MutexLock lock(impl_->mutex);
  std::vector<KernelModel> out;
  for (auto& [_, k] : impl_->kernels) {
    impl_->same_mutex(*k);
    if (include_reserved || !k->reserved) out.push_back(model_of(*k));
  }
  return out;
}

Result<KernelModel> KernelManager::get(const std::string& id) const {
  MutexLock lock(impl_->mutex);
  auto it = impl_->kernels.find(id);
  if (it == impl_->kernels.end()) return Error::not_found("Kernel does not exist: " + id);
  impl_->same_mutex(*it->second);
  if (it->second->reserved) return Error::not_found("Kernel does not exist: " + id);
  return model_of(*it->second);
}

Result<KernelModel> KernelManager::claim(const std::string& id, const std::string& owner) {
  auto k = impl_->find(id);
  if (!k) return Error::not_found("no such spare: " + id);
  bool hand_over = false;
  {
    KernelLock lock(impl_->mutex, *k);
    if (!k->reserved || k->assigning || (k->owner != owner && !k->for_anyone))
      return Error::not_found("no such spare: " + id);
    if (k->state == KernelState::kDead || k->state == KernelState::kRestarting ||
        (k->owner != owner && k->state != KernelState::kIdle))
      return Error::unavailable("spare is not usable: " + id);
    hand_over = k->owner != owner;
    k->assigning = hand_over;  // a second claim finds it taken
  }
  if (hand_over) {
    // Started for anyone: the launcher gives it to `owner` (their data, their
    // uid) before anything of theirs runs; a kernel it cannot give goes.
    LaunchSpec ls = impl_->launch_spec(*k);
    ls.owner = owner;
    Status st = impl_->opts.launcher ? impl_->opts.launcher->assign(ls)
                                     : Status(Error::unavailable("no launcher"));
    if (!st.ok()) {
      log::warn("kernel " + id + " could not be handed to " + owner + ": " + st.error().message);
      shutdown(id, [](const Status&) {});
      return Error::unavailable("spare could not be handed over: " + st.error().message);
    }
  }
  KernelModel model;
  {
    KernelLock lock(impl_->mutex, *k);
    k->owner = owner;
    k->for_anyone = k->assigning = false;
    k->reserved = false;
    k->claimed = true;
    k->started = k->last_activity = impl_->clock().wall();
    impl_->last_activity = k->started;
    model = model_of(*k);
  }
  if (impl_->opts.on_started) impl_->opts.on_started(model);
  impl_->post([this, k] {
    if (k->fsm.phase() == Phase::kRunning) impl_->save_record(*k);
  });
  log::info("kernel " + id + " claimed by " + owner +
            (hand_over ? " (started for anyone)" : " (started reserved)"));
  if (hand_over)
    log::record(log::Level::kInfo, "runtime",
                {{"event", "claim"}, {"id", id}, {"user", owner}, {"type", k->runtime_type}});
  return model;
}

Status KernelManager::interrupt(const std::string& id) {
  auto k = impl_->find(id);
  if (!k) return Error::not_found("Kernel does not exist: " + id);
  if (k->spec.interrupt_mode == "message" ||
      (impl_->opts.launcher && impl_->opts.launcher->interrupt_by_message())) {
    impl_->post([this, k] {
      if (k->sock.control)
        impl_->send_own(*k, k->sock.control, "interrupt_request", nlohmann::json::object());
    });
    return ok_status();
  }
  pid_t pid;
  {
    MutexLock lock(k->mutex);
    pid = k->pid;
  }
  if (pid > 0) ::killpg(pid, SIGINT);
  return ok_status();
}

void KernelManager::restart(const std::string& id, std::function<void(Result<KernelModel>)> done) {
  auto k = impl_->find(id);
  if (!k) return done(Error::not_found("Kernel does not exist: " + id));
  impl_->post([this, k, done = std::move(done)]() mutable {
    if (k->fsm.phase() == Phase::kShuttingDown)
      return done(Error::conflict("kernel is shutting down"));
    {
      KernelLock lock(impl_->mutex, *k);
      if (!impl_->kernels.count(k->id))
        return done(Error::not_found("Kernel does not exist: " + k->id));
      k->ready = false;
      k->state = KernelState::kRestarting;
      k->ready_waiters.push_back(std::move(done));
    }
    if (k->fsm.phase() == Phase::kRestarting) return;  // joins the restart in progress
    impl_->emit_status(*k, KernelState::kRestarting);
    impl_->begin_stop(*k, true);
  });
}

void KernelManager::shutdown(const std::string& id, std::function<void(Status)> done) {
  auto k = impl_->find(id);
  if (!k) return done(Error::not_found("Kernel does not exist: " + id));
  impl_->post([this, k, done = std::move(done)]() mutable {
    {
      MutexLock lock(impl_->mutex);
      if (!impl_->kernels.count(k->id))
        return done(Error::not_found("Kernel does not exist: " + k->id));
    }
    k->shutdown_done.push_back(std::move(done));
    if (k->fsm.phase() == Phase::kShuttingDown) return;
    if (k->fsm.phase() == Phase::kDead) {
      k->fsm.removing();
      return impl_->remove(*k);
    }
    impl_->begin_stop(*k, false);
  });
}

void KernelManager::detach_all() {
  if (!impl_) return;
  std::vector<std::string> reserved;
  {
    MutexLock lock(impl_->mutex);
    for (auto& [id, k] : impl_->kernels) {
      impl_->same_mutex(*k);
      if (k->reserved) reserved.push_back(id);
    }
  }
  shutdown_and_wait(reserved);
  impl_->detached = true;
}

void KernelManager::shutdown_and_wait(const std::vector<std::string>& ids) {
  if (ids.empty()) return;
  auto m = std::make_shared<Mutex>();
  auto cv = std::make_shared<CondVar>();
  auto left = std::make_shared<std::size_t>(ids.size());
  for (auto& id : ids) {
    shutdown(id, [m, cv, left](const Status&) {
      MutexLock lock(*m);
      if (--*left == 0) cv->notify_all();
    });
  }
  MutexLock lock(*m);
  cv->wait_for(lock, impl_->opts.shutdown_wait + std::chrono::seconds(5),
               [&] { return *left == 0; });
}

void KernelManager::shutdown_all() {
  if (!impl_ || impl_->detached) return;
  std::vector<std::string> ids;
  {
    MutexLock lock(impl_->mutex);
    for (auto& [id, _] : impl_->kernels) ids.push_back(id);
  }
  shutdown_and_wait(ids);
}

void KernelManager::when_ready(const std::string& id,
                               std::function<void(Result<KernelModel>)> done) {
  auto k = impl_->find(id);
  if (!k) return done(Error::not_found("Kernel does not exist: " + id));
  KernelModel model;
  {
    MutexLock lock(k->mutex);
    if (!k->ready && k->state != KernelState::kDead) {
      k->ready_waiters.push_back(std::move(done));
      return;
    }
    model = model_of(*k);
  }
  if (model.execution_state == KernelState::kDead)
    return done(Error::unavailable("kernel is dead"));
  done(model);
}

Status KernelManager::send(const std::string& id, Channel ch, Message msg) {
  if (ch == Channel::kIopub) return Error::bad_request("clients cannot send on iopub");
  auto k = impl_->find(id);
  if (!k) return Error::not_found("Kernel does not exist: " + id);
  touch(id);
  std::string sig = k->signer->sign(msg);
  impl_->post([this, k, ch, msg = std::move(msg), sig = std::move(sig)]() mutable {
    // Replies on stdin answer the kernel's own requests: it is up, even if a
    // reattached kernel busy with a cell has not answered kernel_info yet.
    if (ch != Channel::kStdin && k->fsm.phase() != Phase::kDead && !impl_->is_ready(*k)) {
      if (k->held.size() >= kMaxHeld)
        return log::warn("kernel " + k->id + ": dropped a message sent while starting");
      k->held.push_back({ch, std::move(msg), std::move(sig)});
      return;
    }
    impl_->send_to(*k, ch, msg, sig);
  });
  return ok_status();
}

std::vector<KernelModel> KernelManager::reattach() {
  std::vector<KernelModel> adopted;
  std::error_code ec;
  fs::path dir = fs::path(impl_->opts.runtime_dir) / "records";
  for (auto it = fs::directory_iterator(dir, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    if (it->path().extension() != ".json") continue;
    std::ifstream in(it->path());
    std::stringstream ss;
    ss << in.rdbuf();
    auto r = json_limits::parse_or_discarded(ss.str(), json_limits::kStoredLimits);
    auto k = std::make_shared<Kernel>(impl_->mutex);
    k->fsm = KernelStateMachine(impl_->timing());
    SysClock::time_point started;
    bool reserved = false;
    try {
      k->id = r.at("id").get<std::string>();
      auto owner = r.at("owner").get<std::string>();
      {
        MutexLock lock(k->mutex);  // nobody else sees k yet
        k->owner = std::move(owner);
      }
      k->runtime_type = r.at("runtime_type").get<std::string>();
      k->pid_io = r.at("pid").get<pid_t>();
      k->key = r.at("key").get<std::string>();
      for (int i = 0; i < 5; ++i) k->ports[i] = r.at("ports").at(i).get<int>();
      k->ipc_base = r.at("ipc_base").get<std::string>();
      k->conn_dir = r.at("conn_dir").get<std::string>();
      k->connection_file = r.at("connection_file").get<std::string>();
      k->state_file = r.at("state_file").get<std::string>();
      k->ack_file = r.value("ack_file", k->state_file + ".done");
      started =
          SysClock::time_point(std::chrono::microseconds(r.at("started_us").get<long long>()));
      if (r.contains("env")) {
        k->launch.env = r.at("env").get<std::map<std::string, std::string>>();
        k->launch.devices = r.at("devices").get<std::vector<int>>();
        reserved = r.value("reserved", false);
      } else {
        legacy_launch(r, *k);
        reserved = r.value("spare", false);
      }
      auto spec = impl_->specs->find(r.at("spec").get<std::string>());
      if (!spec.ok()) throw std::runtime_error("kernelspec is gone");
      k->spec = std::move(spec.value());
    } catch (const std::exception& e) {
      log::warn("runtime record " + it->path().filename().string() + " unusable (" + e.what() +
                "); removed");
      fs::remove(it->path(), ec);
      continue;
    }
    k->signer = std::make_unique<Signer>(k->key);
    k->session = util::uuid4();
    k->identity = routing_id(k->id);  // what a cell running across the restart sends stdin to
    k->adopted = true;
    int status = 0;
    bool dead = k->pid_io <= 0 || impl_->reap(*k, false, status) || ::kill(k->pid_io, 0) != 0;
    if (dead || reserved) {
      // Reap the dead, and reserved kernels (the new server fills its own pool): nothing of it
      // may stay behind.
      log::info("kernel " + k->id +
                (dead ? " died while the server was away" : " was reserved, never claimed") +
                "; cleaning up");
      if (!dead) impl_->kill_processes(*k, k->pid_io);
      if (impl_->opts.launcher) {
        impl_->opts.launcher->kill_all(k->id, -1);
        impl_->opts.launcher->cleanup(k->id);
      }
      impl_->remove_connection_files(*k);
      fs::remove(it->path(), ec);
      continue;
    }
    {
      KernelLock lock(impl_->mutex, *k);
      k->started = started;
      k->last_activity = impl_->clock().wall();
      k->pid = k->pid_io;
      k->state = KernelState::kStarting;
      impl_->kernels[k->id] = k;
      adopted.push_back(model_of(*k));
    }
    log::info("kernel " + k->id + " reattached (pid " + std::to_string(k->pid_io) + ")");
    impl_->post([this, k] { impl_->open_sockets(*k); });
  }
  return adopted;
}

Status KernelManager::notify(const std::string& id, const std::string& msg_type,
                             const nlohmann::json& content) {
  auto k = impl_->find(id);
  if (!k) return Error::not_found("Kernel does not exist: " + id);
  auto m = std::make_shared<Message>(make_message(msg_type, content, k->session));
  auto info = inspect(*m);
  if (!info.ok()) return info.error();
  impl_->post([this, k, m, info = std::move(info.value())] {
    impl_->deliver(*k, Channel::kIopub, m, info);
  });
  return ok_status();
}

Status KernelManager::add_observer(const std::string& id,
                                   std::shared_ptr<KernelObserver> observer) {
  if (!observer) return Error::bad_request("no observer");
  MutexLock lock(impl_->mutex);
  auto it = impl_->kernels.find(id);
  if (it == impl_->kernels.end()) return Error::not_found("Kernel does not exist: " + id);
  impl_->same_mutex(*it->second);
  auto& obs = it->second->observers;
  if (std::find(obs.begin(), obs.end(), observer) == obs.end()) obs.push_back(std::move(observer));
  return ok_status();
}

void KernelManager::remove_observer(const std::string& id, const KernelObserver* observer) {
  MutexLock lock(impl_->mutex);
  auto it = impl_->kernels.find(id);
  if (it == impl_->kernels.end()) return;
  impl_->same_mutex(*it->second);
  auto& obs = it->second->observers;
  obs.erase(std::remove_if(obs.begin(), obs.end(), [&](auto& o) { return o.get() == observer; }),
            obs.end());
}

void KernelManager::add_connections(const std::string& id, int delta) {
  MutexLock lock(impl_->mutex);
  auto it = impl_->kernels.find(id);
  if (it == impl_->kernels.end()) return;
  impl_->same_mutex(*it->second);
  it->second->connections = std::max(0, it->second->connections + delta);
}

void KernelManager::touch(const std::string& id) {
  MutexLock lock(impl_->mutex);
  auto it = impl_->kernels.find(id);
  if (it == impl_->kernels.end()) return;
  impl_->same_mutex(*it->second);
  it->second->last_activity = impl_->clock().wall();
  impl_->last_activity = it->second->last_activity;
}

SysClock::time_point KernelManager::last_activity() const {
  MutexLock lock(impl_->mutex);
  return impl_->last_activity;
}

}  // namespace skylab::kernel
