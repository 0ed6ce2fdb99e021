#include "runtime/template.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/subprocess.hpp"

namespace skylab::runtime {

namespace fs = std::filesystem;

namespace {

// Arity of the bubblewrap options bwrap_args() writes (unknown ones: flags).
int bwrap_arity(const std::string& opt) {
  static const std::map<std::string, int> arity = {
      {"--setenv", 2},     {"--ro-bind", 2},      {"--bind", 2},  {"--dev-bind", 2},
      {"--symlink", 2},    {"--ro-bind-data", 2}, {"--perms", 1}, {"--dir", 1},
      {"--tmpfs", 1},      {"--proc", 1},         {"--dev", 1},   {"--chdir", 1},
      {"--hostname", 1},   {"--seccomp", 1},      {"--args", 1},  {"--bind-try", 2},
      {"--ro-bind-try", 2}};
  auto it = arity.find(opt);
  return it == arity.end() ? 0 : it->second;
}

}  // namespace

Result<TemplateRequest> parse_bwrap_command(const std::vector<std::string>& command) {
  TemplateRequest r;
  std::size_t i = 1;
  for (; i < command.size(); ++i) {
    const std::string& a = command[i];
    if (a == "--") break;
    int n = bwrap_arity(a);
    if (i + static_cast<std::size_t>(n) >= command.size())
      return Error::bad_request("truncated bubblewrap option " + a);
    if (a == "--setenv") r.env[command[i + 1]] = command[i + 2];
    if (a == "--seccomp") r.seccomp = true;
    i += static_cast<std::size_t>(n);
  }
  if (i + 2 >= command.size() || command[i + 1] != "/opt/skylab/bin/skylab" ||
      command[i + 2] != "sandbox-exec")
    return Error::bad_request("not a sandbox-exec command");
  for (i += 3; i < command.size(); ++i) {
    const std::string& a = command[i];
    if (a == "--") {
      r.argv.assign(command.begin() + static_cast<std::ptrdiff_t>(i) + 1, command.end());
      break;
    }
    if (a == "--hold") continue;
    if (i + 1 >= command.size()) break;
    if (a == "--uid")
      r.uid = std::strtol(command[++i].c_str(), nullptr, 10);
    else if (a == "--gid")
      r.gid = std::strtol(command[++i].c_str(), nullptr, 10);
    else
      return Error::bad_request("unknown sandbox-exec option " + a);
  }
  if (r.uid <= 0 || r.gid <= 0 || r.argv.empty())
    return Error::bad_request("the inner command has no uid, gid or program");
  return r;
}

bool template_can_serve(const std::vector<std::string>& argv, const std::string& python) {
  return argv.size() == 5 &&
         (argv[0] == "python3" || argv[0] == "/usr/bin/python3" || argv[0] == python) &&
         argv[1] == "-m" && argv[2] == "ipykernel_launcher" && argv[3] == "-f" && !argv[4].empty();
}

Result<int> fork_from_template(const std::string& socket_path, const TemplateRequest& req,
                               const SandboxHandle& sandbox, int seccomp_fd, double timeout_s) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path)
    return Error::bad_request("template socket path too long");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  safe_fs::UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (s.get() < 0) return Error::internal("socket: " + std::string(std::strerror(errno)));
  timeval tv{static_cast<time_t>(timeout_s),
             static_cast<suseconds_t>((timeout_s - static_cast<long>(timeout_s)) * 1e6)};
  ::setsockopt(s.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return Error::unavailable("template: connect: " + std::string(std::strerror(errno)));
  nlohmann::json j = {{"uid", req.uid},         {"gid", req.gid}, {"seccomp", req.seccomp},
                      {"cgroups", req.cgroups}, {"env", req.env}, {"argv", req.argv},
                      {"pool", req.for_anyone}};
  std::string body = j.dump();
  std::vector<int> fds = {0, 1, 2};
  for (auto& f : sandbox.ns) fds.push_back(f.get());
  fds.push_back(sandbox.root.get());
  if (req.seccomp) {
    if (seccomp_fd < 0) return Error::internal("template: no seccomp filter to send");
    fds.push_back(seccomp_fd);
  }
  std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
  iovec iov{body.data(), body.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
  std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  if (::sendmsg(s.get(), &msg, MSG_NOSIGNAL) != static_cast<ssize_t>(body.size()))
    return Error::unavailable("template: send: " + std::string(std::strerror(errno)));
  ::shutdown(s.get(), SHUT_WR);
  // The answer: one JSON object (≤ 64 KiB), with a pidfd when it says ok.
  std::string reply;
  int pidfd = -1;
  char buf[4096];
  alignas(cmsghdr) char rcontrol[CMSG_SPACE(sizeof(int) * 4)];
  for (;;) {
    iovec riov{buf, sizeof buf};
    msghdr r{};
    r.msg_iov = &riov;
    r.msg_iovlen = 1;
    r.msg_control = rcontrol;
    r.msg_controllen = sizeof rcontrol;
    ssize_t n = ::recvmsg(s.get(), &r, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (pidfd >= 0) ::close(pidfd);
      return Error::unavailable("template: no answer: " + std::string(std::strerror(errno)));
    }
    for (cmsghdr* h = CMSG_FIRSTHDR(&r); h; h = CMSG_NXTHDR(&r, h)) {
      if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) continue;
      std::size_t count = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (std::size_t k = 0; k < count; ++k) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(h) + k * sizeof(int), sizeof fd);
        if (pidfd < 0)
          pidfd = fd;
        else
          ::close(fd);
      }
    }
    if (n == 0) break;
    reply.append(buf, static_cast<std::size_t>(n));
    if (reply.size() > 65536) break;
  }
  auto a = json_limits::parse_or_discarded(reply);
  if (a.is_object() && a.value("ok", false) && pidfd >= 0) return pidfd;
  if (pidfd >= 0) ::close(pidfd);
  return Error::unavailable("template: " +
                            (a.is_object() && a.contains("error") && a["error"].is_string()
                                 ? a["error"].get<std::string>()
                                 : std::string("no answer")));
}

// ---------------------------------------------------------------- the templates

struct RuntimeTemplates::Slot {
  std::string key;  // the preload list, comma-separated
  std::vector<std::string> preload;
  std::string socket, log;
  std::atomic<bool> ready{false};
  std::atomic<pid_t> pid{0};
  std::thread thread;
};

namespace {

// The modification times of where Python packages live: a change means the
// template's preloaded modules may no longer be what a new Python imports.
std::string packages_signature() {
  std::string sig;
  std::vector<std::string> dirs = {"/var/lib/dpkg/status", "/usr/lib/python3/dist-packages",
                                   "/usr/local/lib/python3/dist-packages"};
  std::error_code ec;
  for (const char* base : {"/usr/lib", "/usr/local/lib"})
    for (auto it = fs::directory_iterator(base, ec); !ec && it != fs::directory_iterator();
         it.increment(ec))
      if (it->path().filename().string().rfind("python3.", 0) == 0)
        for (const char* sub : {"dist-packages", "site-packages"})
          dirs.push_back((it->path() / sub).string());
  for (auto& d : dirs) {
    struct stat st {};
    if (::stat(d.c_str(), &st) == 0)
      sig += d + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
             std::to_string(st.st_mtim.tv_nsec) + ";";
  }
  return sig;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

RuntimeTemplates::RuntimeTemplates(Options o) : opts_(std::move(o)) {
  for (auto& [type, list] : opts_.preload) {
    std::string key = join(list);
    type_key_[type] = key;
    if (slots_.count(key)) continue;
    auto slot = std::make_unique<Slot>();
    slot->key = key;
    slot->preload = list;
    std::size_t n = slots_.size();
    slot->socket = opts_.run_dir + "/template-" + std::to_string(n) + ".sock";
    slot->log = opts_.run_dir + "/template-" + std::to_string(n) + ".log";
    slots_[key] = std::move(slot);
  }
}

RuntimeTemplates::~RuntimeTemplates() {
  stop();
}

void RuntimeTemplates::stop() {
  {
    // Under the lock: a thread between its check of stop_ and its wait
    // cannot miss the wake-up (and sleep through its backoff).
    MutexLock lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& [_, s] : slots_)
    if (s->thread.joinable()) s->thread.join();
}

void RuntimeTemplates::start() {
  ::mkdir(opts_.run_dir.c_str(), 0700);
  struct stat st {};
  if (::lstat(opts_.run_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0 ||
      ::chmod(opts_.run_dir.c_str(), 0700) != 0) {
    log::warn("runtime template: failed: " + opts_.run_dir + " is not root's own folder");
    return;
  }
  for (auto& [_, s] : slots_) {
    Slot* p = s.get();
    log::info("runtime template: starting [" + s->key + "] (" + s->socket + ")");
    s->thread = std::thread([this, p] { run(p); });
  }
}

std::string RuntimeTemplates::socket_for(const std::string& type) const {
  auto k = type_key_.find(type);
  if (k == type_key_.end()) return "";
  auto& s = slots_.at(k->second);
  return s->ready ? s->socket : "";
}

pid_t RuntimeTemplates::pid_for(const std::string& type) const {
  auto k = type_key_.find(type);
  if (k == type_key_.end()) return 0;
  return slots_.at(k->second)->ready ? slots_.at(k->second)->pid.load() : 0;
}

void RuntimeTemplates::run(Slot* slot) {
  int backoff = 1;
  auto sleep_for = [this](std::chrono::milliseconds d) {
    MutexLock lock(mutex_);
    cv_.wait_for(lock, d, [this] { return stop_.load(); });
  };
  while (!stop_) {
    std::string sig = packages_signature();
    // A clean environment: no secrets of the server's, no user site of root's,
    // no host paths (the template sets its MPLCONFIGDIR itself).
    std::vector<std::string> env = {
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
        "HOME=/nonexistent", "PYTHONUSERBASE=/nonexistent", "PYDEVD_DISABLE_FILE_VALIDATION=1",
        // Room for a kernel's environment and command line, which a forked
        // kernel writes over the template's (/proc/self/environ, cmdline).
        "SKYLAB_TEMPLATE_PAD=" + std::string(32768, 'x')};
    std::vector<std::string> args = {opts_.python, opts_.script,          "--socket",
                                     slot->socket, "--preload",           slot->key,
                                     "--pad",      std::string(4096, 'x')};
    if (const char* t = std::getenv("SKYLAB_TEMPLATE_TRACE"); t && *t && std::string(t) != "0")
      args.emplace_back("--trace");  // each start's steps with times, in the kernel's log
    int log_fd =
        ::open(slot->log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0600);
    subprocess::Spec spec;
    spec.argv = args;
    spec.search_path = false;
    spec.env = env;
    spec.cwd = opts_.run_dir;
    spec.out = subprocess::Stdio::kPipe;  // "ready …" once the imports are done
    if (log_fd >= 0) spec.fds = {{log_fd, 2}};
    spec.close_from = 3;
    spec.new_session = true;
    spec.reset_signals = true;
    auto spawned = subprocess::spawn(spec);
    if (log_fd >= 0) ::close(log_fd);
    auto started = std::chrono::steady_clock::now();
    if (!spawned.ok()) {
      log::warn("runtime template: failed: " + spawned.error().message);
      sleep_for(std::chrono::seconds(backoff));
      backoff = std::min(backoff * 2, 60);
      continue;
    }
    subprocess::Child proc = std::move(*spawned);
    int out0 = proc.out_fd();
    pid_t pid = proc.release();  // reaped below (waitpid), killed at stop
    slot->pid = pid;
    // Up to 10 minutes for the imports (a cold disk, a busy machine).
    std::string line;
    while (!stop_ && line.find('\n') == std::string::npos &&
           std::chrono::steady_clock::now() - started < std::chrono::minutes(10)) {
      pollfd pf{out0, POLLIN, 0};
      if (::poll(&pf, 1, 200) <= 0) continue;
      char buf[512];
      ssize_t n = ::read(out0, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<std::size_t>(n));
      if (line.size() > 4096) break;
    }
    proc = subprocess::Child();  // closes the pipe (the pid was released above)
    if (!stop_ && line.rfind("ready", 0) == 0) {
      slot->ready = true;
      log::info("runtime template: ready [" + slot->key + "] pid " + std::to_string(pid) + ", " +
                line.substr(6, line.find('\n') - 6));
    } else if (!stop_) {
      log::warn("runtime template: failed [" + slot->key + "]; kernels start without it (see " +
                slot->log + ")");
    }
    auto last_check = std::chrono::steady_clock::now();
    bool changed = false;
    int status = 0;
    while (!stop_ && slot->ready) {
      if (::waitpid(pid, &status, WNOHANG) == pid) {
        pid = -1;
        break;
      }
      if (std::chrono::steady_clock::now() - last_check >= opts_.check_every) {
        last_check = std::chrono::steady_clock::now();
        if (packages_signature() != sig) {
          changed = true;
          break;
        }
      }
      sleep_for(std::chrono::milliseconds(200));
    }
    slot->ready = false;
    if (pid > 0) {
      // SIGTERM first: the template reaps the kernels that died (the server
      // stopping ends them just before) instead of leaving them as zombies
      // to whoever inherits them; SIGKILL after a second.
      ::kill(pid, SIGTERM);
      auto until = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      bool reaped = false;
      while (!reaped && std::chrono::steady_clock::now() < until) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid || (r < 0 && errno != EINTR))
          reaped = true;
        else
          std::this_thread::sleep_for(std::chrono::milliseconds(10));  // (stop_ may be set)
      }
      if (!reaped) {
        ::kill(pid, SIGKILL);
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
      }
    }
    slot->pid = 0;
    ::unlink(slot->socket.c_str());
    if (stop_) break;
    if (changed) {
      log::info("runtime template: the Python packages changed; restarting [" + slot->key + "]");
      backoff = 1;
      continue;
    }
    log::warn("runtime template: exited; restarting in " + std::to_string(backoff) + " s [" +
              slot->key + "]");
    if (std::chrono::steady_clock::now() - started > std::chrono::minutes(2)) backoff = 1;
    sleep_for(std::chrono::seconds(backoff));
    backoff = std::min(backoff * 2, 60);
  }
}

}  // namespace skylab::runtime
