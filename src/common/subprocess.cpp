#include "common/subprocess.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace skylab::subprocess {

namespace {

struct Pipe {
  int r = -1, w = -1;
  ~Pipe() { close_both(); }
  void close_both() {
    if (r >= 0) ::close(r);
    if (w >= 0) ::close(w);
    r = w = -1;
  }
};

//! posix_spawn's two attribute objects, destroyed on every path.
struct Attrs {
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  Attrs() {
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
  }
  ~Attrs() {
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
  }
  Attrs(const Attrs&) = delete;
  Attrs& operator=(const Attrs&) = delete;
};

int add_stream(Attrs& a, Stdio how, int fd, Pipe& p) {
  switch (how) {
    case Stdio::kNull:
      return posix_spawn_file_actions_addopen(&a.fa, fd, "/dev/null", fd == 0 ? O_RDONLY : O_WRONLY,
                                              0);
    case Stdio::kInherit:
      return 0;
    case Stdio::kPipe: {
      int fds[2];
      if (::pipe2(fds, O_CLOEXEC) != 0) return errno;
      p.r = fds[0], p.w = fds[1];
    }
      return posix_spawn_file_actions_adddup2(&a.fa, p.w, fd);
  }
  return EINVAL;
}

}  // namespace

Child::Child(Child&& o) noexcept : pid_(o.pid_), out_(o.out_), err_(o.err_) {
  o.pid_ = o.out_ = o.err_ = -1;
}

Child& Child::operator=(Child&& o) noexcept {
  if (this != &o) {
    Child dead(std::move(*this));  // this one's child is killed and reaped with `dead`
    pid_ = o.pid_, out_ = o.out_, err_ = o.err_;
    o.pid_ = o.out_ = o.err_ = -1;
  }
  return *this;
}

Child::~Child() {
  close_pipes();
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    (void)wait();
  }
}

void Child::close_pipes() {
  if (out_ >= 0) ::close(out_);
  if (err_ >= 0) ::close(err_);
  out_ = err_ = -1;
}

int Child::wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0) {
    if (errno != EINTR) {
      pid_ = -1;
      return -1;
    }
  }
  pid_ = -1;
  return status;
}

std::optional<int> Child::try_wait() {
  if (pid_ <= 0) return -1;
  int status = 0;
  pid_t r = ::waitpid(pid_, &status, WNOHANG);
  if (r == 0) return std::nullopt;
  pid_ = -1;
  return r < 0 ? -1 : status;
}

pid_t Child::release() {
  pid_t p = pid_;
  pid_ = -1;
  return p;
}

Result<Child> spawn(const Spec& spec) {
  if (spec.argv.empty() || spec.argv[0].empty())
    return Error::bad_request("subprocess: no program to run");
  if (spec.in == Stdio::kPipe) return Error::bad_request("subprocess: stdin cannot be a pipe");
  // Everything the child sees is built here, before the spawn.
  std::vector<char*> av;
  av.reserve(spec.argv.size() + 1);
  for (auto& a : spec.argv) av.push_back(const_cast<char*>(a.c_str()));
  av.push_back(nullptr);
  std::vector<char*> ev;
  if (spec.env) {
    ev.reserve(spec.env->size() + 1);
    for (auto& e : *spec.env) ev.push_back(const_cast<char*>(e.c_str()));
    ev.push_back(nullptr);
  }
  Attrs a;
  Pipe out, err;
  int rc = add_stream(a, spec.in, 0, out);  // kPipe refused above: `out` stays unused
  if (rc == 0) rc = add_stream(a, spec.out, 1, out);
  if (rc == 0) {
    rc = spec.err_to_out ? posix_spawn_file_actions_adddup2(&a.fa, 1, 2)
                         : add_stream(a, spec.err, 2, err);
  }
  for (auto& [from, to] : spec.fds)
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&a.fa, from, to);
  if (rc == 0 && spec.close_from >= 0)
    rc = posix_spawn_file_actions_addclosefrom_np(&a.fa, spec.close_from);
  if (rc == 0 && !spec.cwd.empty()) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
    rc = posix_spawn_file_actions_addchdir_np(&a.fa, spec.cwd.c_str());
#else
    return Error::unavailable("subprocess: this C library cannot set a child's directory");
#endif
  }
  short flags = 0;
  sigset_t mask, defaults;
  sigemptyset(&mask);
  sigemptyset(&defaults);
  if (spec.reset_signals) {
    sigfillset(&defaults);
    flags |= POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  }
  for (int s : spec.default_signals) sigaddset(&defaults, s);
  if (!spec.default_signals.empty()) flags |= POSIX_SPAWN_SETSIGDEF;
  if (spec.new_session) flags |= POSIX_SPAWN_SETSID;
  if (rc == 0 && (flags & POSIX_SPAWN_SETSIGMASK)) rc = posix_spawnattr_setsigmask(&a.attr, &mask);
  if (rc == 0 && (flags & POSIX_SPAWN_SETSIGDEF))
    rc = posix_spawnattr_setsigdefault(&a.attr, &defaults);
  if (rc == 0) rc = posix_spawnattr_setflags(&a.attr, flags);
  if (rc != 0)
    return Error::internal("subprocess: cannot prepare " + spec.argv[0] + ": " + std::strerror(rc));

  pid_t pid = -1;
  char** envp = spec.env ? ev.data() : environ;
  rc = spec.search_path ? ::posix_spawnp(&pid, av[0], &a.fa, &a.attr, av.data(), envp)
                        : ::posix_spawn(&pid, av[0], &a.fa, &a.attr, av.data(), envp);
  if (rc != 0) {
    std::string why = "cannot run " + spec.argv[0] + ": " + std::strerror(rc);
    return rc == ENOENT ? Error::not_found(why) : Error::unavailable(why);
  }
  Child c;
  c.pid_ = pid;
  if (out.w >= 0) ::close(out.w), out.w = -1;
  if (err.w >= 0) ::close(err.w), err.w = -1;
  c.out_ = out.r, out.r = -1;
  c.err_ = err.r, err.r = -1;
  return c;
}

Result<Output> run(Spec spec, std::chrono::milliseconds timeout, std::size_t max_bytes) {
  spec.out = Stdio::kPipe;
  if (!spec.err_to_out) spec.err = Stdio::kPipe;
  auto child = spawn(spec);
  if (!child.ok()) return child.error();
  Output o;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  int fds[2] = {child->out_fd(), child->err_fd()};
  std::string* into[2] = {&o.out, &o.err};
  for (;;) {
    if (fds[0] < 0 && fds[1] < 0) break;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      o.timed_out = true;
      break;
    }
    pollfd p[2] = {{fds[0], POLLIN, 0}, {fds[1], POLLIN, 0}};  // a negative fd is skipped
    int n = ::poll(p, 2, static_cast<int>(std::min<long long>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) break;
    char buf[4096];
    for (int i = 0; i < 2; ++i) {
      if (fds[i] < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t r = ::read(fds[i], buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        fds[i] = -1;
        continue;
      }
      std::size_t room = max_bytes - std::min(max_bytes, into[i]->size());
      into[i]->append(buf, std::min(room, static_cast<std::size_t>(r)));
    }
  }
  if (o.timed_out || fds[0] >= 0 || fds[1] >= 0) ::kill(child->pid(), SIGKILL);
  o.status = child->wait();
  return o;
}

int run_quiet(const std::vector<std::string>& argv) {
  Spec s;
  s.argv = argv;
  s.err_to_out = true;
  auto child = spawn(s);
  if (!child.ok()) return child.error().code == Error::Code::kNotFound ? 127 : -1;
  int status = child->wait();
  return status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

int exit_code(int status) {
  if (status < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace skylab::subprocess
