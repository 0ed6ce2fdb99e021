// Runtimes started for anyone (the instant pool, [runtimes] instant): what
// happens when a user claims one. The sandbox and the kernel (forked from
// the template, initialised, waiting as root inside: template.py, "pre-started
// kernels") already run; this gives them to the user before anything of the
// user's runs. The start side is SandboxLauncher::prepare (owner kAnyone).
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/log.hpp"
#include "common/safe_fs.hpp"
#include "runtime/cgroup_fs.hpp"
#include "runtime/enter.hpp"
#include "runtime/sandbox.hpp"

namespace skylab::runtime {

namespace fs = std::filesystem;

Status make_claim_fifos(const std::string& state_dir) {
  auto dir = safe_fs::open_dir(state_dir);
  if (!dir.ok()) return dir.error();
  for (const char* name : {"claim", "claimed"}) {
    ::unlinkat(dir->get(), name, 0);
    if (::mkfifoat(dir->get(), name, 0600) != 0)
      return Error::internal(std::string("cannot make the claim FIFO: ") + std::strerror(errno));
  }
  return ok_status();
}

Status send_claim(const std::string& state_dir, const std::string& claim, double timeout_s) {
  auto dir = safe_fs::open_dir(state_dir);
  if (!dir.ok()) return dir.error();
  // Both FIFOs are held open by the waiting kernel (O_RDWR): the writer's
  // open does not block, and EOF on `claimed` means the kernel is gone.
  safe_fs::UniqueFd answer(
      ::openat(dir->get(), "claimed", O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  safe_fs::UniqueFd out(
      ::openat(dir->get(), "claim", O_WRONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (answer.get() < 0 || out.get() < 0 || ::fstat(out.get(), &st) != 0 || !S_ISFIFO(st.st_mode))
    return Error::unavailable("the pre-started kernel is not waiting for a claim");
  std::string line = claim + "\n";
  if (line.size() > 60000) return Error::bad_request("claim too large");
  if (::write(out.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    return Error::unavailable(std::string("cannot send the claim: ") + std::strerror(errno));
  out = safe_fs::UniqueFd();
  std::string got;
  auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (got.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    until - std::chrono::steady_clock::now())
                    .count();
    if (left <= 0) return Error::unavailable("the pre-started kernel did not answer its claim");
    pollfd p{answer.get(), POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    char buf[256];
    ssize_t n = ::read(answer.get(), buf, sizeof buf);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return Error::unavailable("the pre-started kernel ended before its claim");
    got.append(buf, static_cast<std::size_t>(n));
    if (got.size() > 4096) return Error::unavailable("the pre-started kernel's answer is too long");
  }
  got.resize(got.find('\n'));
  if (got != "ok") return Error::unavailable(got);
  return ok_status();
}

Status bind_into_sandbox(const SandboxHandle& sandbox,
                         const std::vector<std::pair<std::string, std::string>>& binds) {
  if (sandbox.ns.size() != std::size(kSandboxNamespaces) || sandbox.root.get() < 0)
    return Error::internal("incomplete sandbox handle");
  // Copies of the host trees, made here (in the host's mount namespace):
  // recursive like bubblewrap's --bind, nosuid and nodev like its binds.
  std::vector<safe_fs::UniqueFd> trees;
  for (auto& [host, inside] : binds) {
    if (inside.empty() || inside[0] != '/')
      return Error::bad_request("bind target must be absolute: " + inside);
    safe_fs::UniqueFd t(
        ::open_tree(AT_FDCWD, host.c_str(),
                    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW));
    if (t.get() < 0)
      return Error::internal("open_tree " + host + ": " + std::string(std::strerror(errno)));
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    attr.propagation = MS_SLAVE;
    if (::mount_setattr(t.get(), "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
      return Error::internal("mount_setattr " + host + ": " + std::string(std::strerror(errno)));
    trees.push_back(std::move(t));
  }
  std::vector<const char*> targets;
  std::vector<int> fds;
  for (std::size_t i = 0; i < binds.size(); ++i) {
    targets.push_back(binds[i].second.c_str());
    fds.push_back(trees[i].get());
  }
  int mnt = sandbox.ns.back().get();  // "mnt" is last in kSandboxNamespaces
  int root = sandbox.root.get();
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0) return Error::internal("pipe2");
  // The child joins only the mount namespace and root: nothing async-signal-unsafe after fork.
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(err[0]);
    ::close(err[1]);
    return Error::internal("fork");
  }
  if (pid == 0) {
    ::close(err[0]);
    int code[2] = {0, -1};
    if (::setns(mnt, CLONE_NEWNS) != 0 || ::fchdir(root) != 0 || ::chroot(".") != 0 ||
        ::chdir("/") != 0) {
      code[0] = errno;
    } else {
      for (std::size_t i = 0; i < fds.size(); ++i) {
        // Without MOVE_MOUNT_T_SYMLINKS a symlink at the target is not followed.
        if (::move_mount(fds[i], "", AT_FDCWD, targets[i], MOVE_MOUNT_F_EMPTY_PATH) != 0) {
          code[0] = errno;
          code[1] = static_cast<int>(i);
          break;
        }
      }
    }
    (void)!::write(err[1], code, sizeof code);
    ::_exit(code[0] == 0 ? 0 : 1);
  }
  ::close(err[1]);
  int code[2] = {0, -1};
  ssize_t n = ::read(err[0], code, sizeof code);
  ::close(err[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof code) || !WIFEXITED(status))
    return Error::internal("binding into the sandbox: the helper died");
  if (code[0] != 0)
    return Error::internal(std::string("binding into the sandbox") +
                           (code[1] >= 0 ? " at " + binds[static_cast<std::size_t>(code[1])].second
                                         : std::string(" (joining it)")) +
                           ": " + std::strerror(code[0]));
  return ok_status();
}

namespace {

// Writes `text` over the file `name` in `dir` in place (same inode: it is
// bound into the sandbox by itself, a rename would not show there).
Status overwrite_at(int dir, const char* name, const std::string& text) {
  safe_fs::UniqueFd f(::openat(dir, name, O_WRONLY | O_TRUNC | O_NOFOLLOW | O_CLOEXEC));
  struct stat st {};
  if (f.get() < 0 || ::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != 0)
    return Error::internal(std::string("cannot rewrite ") + name);
  if (!safe_fs::write_all(f.get(), text))
    return Error::internal(std::string("cannot rewrite ") + name);
  return ok_status();
}

}  // namespace

Status SandboxLauncher::assign(kernel::LaunchSpec& spec) {
  if (::geteuid() != 0 || cgroup_mode_ == CgroupMode::kNone)
    return Error::unavailable("runtimes for anyone need root and cgroups");
  if (!valid_owner(spec.owner)) return Error::bad_request("invalid runtime owner");
  if (spec.state_dir.empty()) return Error::unavailable("the runtime has no state folder");
  std::string type_name = opts_.config.type_name(spec.runtime_type);
  auto uid = uid_for(spec.owner);
  if (!uid.ok()) return uid.error();
  uid_t u = uid.value();
  gid_t g = static_cast<gid_t>(u);
  fs::path data(opts_.data_dir);
  SandboxPlan plan;
  plan.uid = u;
  plan.gid = g;
  // The user's Drive and caches, as prepare() makes them for a start of theirs.
  plan_user_folders(spec, plan);
  auto data_fd = safe_fs::open_dir(opts_.data_dir);
  if (!data_fd.ok()) return data_fd.error();
  if (auto st = prepare_user_dirs(data_fd->get(), spec.owner, u, g); !st.ok()) return st;

  // /content, the home and the socket folder were root's, written only by
  // the pre-started kernel (no one's code has run there): now the user's.
  auto rt = safe_fs::open_dir((data / "runtimes" / spec.kernel_id).string());
  if (!rt.ok()) return rt.error();
  for (const char* rel : {"content", "home"}) {
    safe_fs::UniqueFd d(::openat(rt->get(), rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (d.get() < 0) return Error::internal(std::string("the runtime has no ") + rel);
    safe_fs::chown_root_owned_tree(d.get(), u, g);
  }
  if (!spec.connection_dir.empty())
    if (auto st = give_socket_folder(spec.connection_dir, u, g); !st.ok()) return st;

  // Their name for their uid.
  auto state = safe_fs::open_dir(spec.state_dir);
  if (!state.ok()) return state.error();
  auto acc =
      runtime_account_files(read_text("/etc/passwd"), read_text("/etc/group"), spec.owner, u, g);
  if (auto st = overwrite_at(state->get(), "passwd", acc.passwd); !st.ok()) return st;
  if (auto st = overwrite_at(state->get(), "group", acc.group); !st.ok()) return st;

  // Their Drive and caches into the running sandbox.
  auto cg =
      Cgroup::open(cgroup_mode_, cgroup_name(spec.kernel_id), opts_.config.runtimes.cgroup_parent);
  if (cg.dirs().empty()) return Error::unavailable("the runtime has no cgroup");
  auto sandbox = open_sandbox(cg.dirs(), opts_.bwrap, 2, 1);
  if (!sandbox.ok()) return sandbox.error();
  if (auto st = bind_into_sandbox(sandbox.value(), user_binds(plan)); !st.ok()) return st;

  // The kernel drops to the uid and checks, as the user, that it may run.
  nlohmann::json claim = {
      {"uid", u}, {"gid", g}, {"env", runtime_env(spec, type_name)}, {"argv", spec.argv}};
  auto st = send_claim(spec.state_dir, claim.dump(), 10);
  for (const char* name : {"claim", "claimed"}) ::unlinkat(state->get(), name, 0);
  if (!st.ok()) return st;
  {
    MutexLock lock(mutex_);
    types_[spec.kernel_id] = type_name;
  }
  return ok_status();
}

}  // namespace skylab::runtime
