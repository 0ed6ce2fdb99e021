#include "runtime/sandbox.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "common/util.hpp"
#include "kernel/process.hpp"
#include "runtime/cgroup_fs.hpp"
#include "runtime/cgroup_v2.hpp"
#include "runtime/enter.hpp"
#include "runtime/gpu.hpp"
#include "runtime/launch.hpp"
#include "runtime/netns.hpp"
#include "runtime/seccomp.hpp"
#include "runtime/template.hpp"

namespace skylab::runtime {

namespace fs = std::filesystem;

namespace {

std::uint64_t counter(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string k;
  std::uint64_t v;
  while (in >> k >> v)
    if (k == key) return v;
  return 0;
}

// Runs a program to completion; its stdout and stderr (first 4 KiB) in `out`.
// Returns the exit status, or -1 when it could not run.
int run_program(const std::vector<std::string>& args, std::string& out) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return -1;
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(fds[0]);
    ::close(fds[1]);
    return -1;
  }
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, 0);
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0)
    if (out.size() < 4096) out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  auto nl = s.rfind('\n');
  return nl == std::string::npos ? s : s.substr(nl + 1);
}

// Bytes of the files under `root` (allocated blocks), at most `max_entries` entries walked.
std::uint64_t tree_bytes(const std::string& root, std::size_t max_entries) {
  std::uint64_t total = 0;
  std::size_t n = 0;
  std::error_code ec;
  struct stat st {};
  for (auto it = fs::recursive_directory_iterator(
           root, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator() && n < max_entries; it.increment(ec), ++n) {
    if (::lstat(it->path().c_str(), &st) == 0)
      total += static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
  return total;
}

}  // namespace

bool is_mount_point(const std::string& path) {
  struct stat a {
  }, b{};
  if (::stat(path.c_str(), &a) != 0 || ::stat((path + "/..").c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev || a.st_ino == b.st_ino;
}

Status mount_disk_image(const std::string& root, const std::string& image, std::uint64_t bytes,
                        uid_t uid, gid_t gid) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec) return Error::internal("cannot create " + root + ": " + ec.message());
  if (is_mount_point(root)) return ok_status();
  if (::geteuid() != 0) return Error::unavailable("the server does not run as root");
  {
    int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return Error::internal("cannot create " + image + ": " + std::strerror(errno));
    bool sized = ::ftruncate(fd, static_cast<off_t>(bytes)) == 0;
    int err = errno;
    ::close(fd);
    if (!sized) return Error::internal("cannot size " + image + ": " + std::strerror(err));
  }
  std::string out;
  // No journal (/content is scratch that goes with the runtime), no blocks
  // reserved for root: the limit is what the user can write.
  int rc = run_program(
      {"mkfs.ext4", "-q", "-F", "-T", "default", "-m", "0", "-O", "^has_journal", "-E",
       "root_owner=" + std::to_string(uid) + ":" + std::to_string(gid) + ",nodiscard", image},
      out);
  if (rc != 0) {
    ::unlink(image.c_str());
    return Error::unavailable(rc == 127 ? "mkfs.ext4 is not installed (e2fsprogs)"
                                        : "mkfs.ext4 failed: " + trim(out));
  }
  out.clear();
  // noinit_itable: the sparse image reads as zeros; no background zeroing that would fill it.
  rc = run_program({"mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noinit_itable", image, root},
                   out);
  if (rc != 0) {
    ::unlink(image.c_str());
    return Error::unavailable("cannot loop-mount the /content image: " + trim(out));
  }
  return ok_status();
}

void unmount_disk_image(const std::string& root, const std::string& image) {
  for (int i = 0; i < 50 && is_mount_point(root); ++i) {
    if (::umount2(root.c_str(), 0) == 0) break;
    if (errno != EBUSY || i == 49) {
      // Still busy (a process we cannot see holds it): detach; the loop device goes when it lets
      // go.
      ::umount2(root.c_str(), MNT_DETACH);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::unlink(image.c_str());
}

// ---------------------------------------------------------------- cgroups

CgroupMode Cgroup::detect() {
  std::error_code ec;
  if (fs::exists("/sys/fs/cgroup/cgroup.controllers", ec)) return CgroupMode::kV2;
  if (fs::is_directory("/sys/fs/cgroup/memory", ec) || fs::is_directory("/sys/fs/cgroup/pids", ec))
    return CgroupMode::kV1;
  return CgroupMode::kNone;
}

namespace {
// Where runtimes' v2 cgroups go: /sys/fs/cgroup + (cgroup_parent or the server's own) + /skylab.
std::string v2_runtimes_dir(const std::string& v2_parent) {
  return "/sys/fs/cgroup" + (v2_parent.empty() ? own_cgroup("") : v2_parent) + "/skylab";
}
}  // namespace

Cgroup Cgroup::open(CgroupMode mode, const std::string& name, const std::string& v2_parent) {
  Cgroup c;
  c.mode_ = mode;
  std::error_code ec;
  if (mode == CgroupMode::kV1) {
    for (const char* ctrl : {"memory", "pids", "cpu", "cpuacct"}) {
      std::string dir = "/sys/fs/cgroup/" + std::string(ctrl) + own_cgroup(ctrl) + "/" + name;
      if (!fs::is_directory(dir, ec)) continue;
      if (std::string(ctrl) == "cpuacct") c.cpuacct_dir_ = dir;
      if (std::find(c.dirs_.begin(), c.dirs_.end(), fs::canonical(dir, ec).string()) !=
          c.dirs_.end())
        continue;
      c.dirs_.push_back(fs::canonical(dir, ec).string());
      if (std::string(ctrl) == "memory") c.memory_dir_ = dir;
      if (std::string(ctrl) == "pids") c.pids_dir_ = dir;
    }
  } else if (mode == CgroupMode::kV2) {
    std::string dir = v2_runtimes_dir(v2_parent) + "/" + name;
    // A runtime started before cgroup_parent was set lives below the server's own cgroup.
    if (!v2_parent.empty() && !fs::is_directory(dir, ec)) dir = v2_runtimes_dir("") + "/" + name;
    if (fs::is_directory(dir, ec)) {
      c.dirs_.push_back(dir);
      c.memory_dir_ = c.pids_dir_ = dir;
    }
  }
  return c;
}

Result<Cgroup> Cgroup::create(CgroupMode mode, const std::string& name, const RuntimeType& type,
                              const std::string& v2_parent) {
  Cgroup c;
  c.mode_ = mode;
  if (mode == CgroupMode::kV1) {
    for (const char* ctrl : {"memory", "pids", "cpu", "cpuacct"}) {
      std::string base = "/sys/fs/cgroup/" + std::string(ctrl) + own_cgroup(ctrl);
      std::string dir = base + "/" + name;
      std::error_code ec;
      if (!fs::is_directory(base, ec)) continue;
      if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
        log::warn("runtime: cannot create cgroup " + dir + ": " + std::strerror(errno));
        continue;
      }
      std::string c_name(ctrl);
      if (c_name == "cpuacct") c.cpuacct_dir_ = dir;
      // cpu and cpuacct are often one hierarchy (cpu,cpuacct): join it once.
      std::string real = fs::canonical(dir, ec).string();
      if (ec) real = dir;
      if (std::find(c.dirs_.begin(), c.dirs_.end(), real) != c.dirs_.end()) continue;
      if (c_name == "memory") {
        c.memory_dir_ = dir;
        if (type.memory_bytes) {
          write_value(dir + "/memory.limit_in_bytes", std::to_string(type.memory_bytes));
          write_value(dir + "/memory.memsw.limit_in_bytes", std::to_string(type.memory_bytes));
        }
      } else if (c_name == "pids") {
        c.pids_dir_ = dir;
        if (type.pids) write_value(dir + "/pids.max", std::to_string(type.pids));
      } else if (c_name == "cpu" && type.cpus > 0) {
        write_value(dir + "/cpu.cfs_period_us", "100000");
        write_value(dir + "/cpu.cfs_quota_us",
                    std::to_string(static_cast<long>(type.cpus * 100000)));
      }
      c.dirs_.push_back(real);
    }
  } else if (mode == CgroupMode::kV2) {
    std::string parent = v2_runtimes_dir(v2_parent);
    std::string base = parent.substr(0, parent.size() - std::string("/skylab").size());
    std::error_code ec;
    if (!v2_parent.empty() && !fs::is_directory(base, ec))
      return Error::unavailable("the runtimes' cgroup " + v2_parent +
                                " ([runtimes] cgroup_parent) does not exist; is "
                                "skylab-runtimes.service running?");
    ::mkdir(parent.c_str(), 0755);
    // Delegation needs the controllers enabled on the way down. The kernel
    // refuses that below a cgroup that holds processes: the server's own one
    // under systemd (hence cgroup_parent and `skylab cgroup-hold`).
    enable_controllers(base);
    enable_controllers(parent);
    std::string dir = parent + "/" + name;
    if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
      log::warn("runtime: cannot create cgroup " + dir + ": " + std::strerror(errno));
    } else {
      if (type.memory_bytes) {
        write_value(dir + "/memory.max", std::to_string(type.memory_bytes));
        write_value(dir + "/memory.swap.max", "0");
      }
      if (type.pids) write_value(dir + "/pids.max", std::to_string(type.pids));
      if (type.cpus > 0)
        write_value(dir + "/cpu.max",
                    std::to_string(static_cast<long>(type.cpus * 100000)) + " 100000");
      c.dirs_.push_back(dir);
      c.memory_dir_ = c.pids_dir_ = dir;
    }
  }
  return c;
}

std::vector<pid_t> Cgroup::pids() const {
  std::vector<pid_t> out;
  std::string dir = !pids_dir_.empty()     ? pids_dir_
                    : !memory_dir_.empty() ? memory_dir_
                    : dirs_.empty()        ? ""
                                           : dirs_[0];
  if (dir.empty()) return out;
  return cgroup_pids(dir);
}

void Cgroup::kill_all() const {
  for (int round = 0; round < 100; ++round) {
    auto ps = pids();
    if (ps.empty()) return;
    for (pid_t p : ps) ::kill(p, SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  log::warn("runtime: processes survive SIGKILL in a cgroup");
}

bool Cgroup::oom_killed() const {
  if (memory_dir_.empty()) return false;
  if (mode_ == CgroupMode::kV2)
    return counter(read_text(memory_dir_ + "/memory.events"), "oom_kill") > 0;
  return counter(read_text(memory_dir_ + "/memory.oom_control"), "oom_kill") > 0 ||
         std::strtoull(read_text(memory_dir_ + "/memory.failcnt").c_str(), nullptr, 10) > 0;
}

std::uint64_t Cgroup::memory_current() const {
  if (memory_dir_.empty()) return 0;
  auto f = mode_ == CgroupMode::kV2 ? "/memory.current" : "/memory.usage_in_bytes";
  return std::strtoull(read_text(memory_dir_ + f).c_str(), nullptr, 10);
}

std::uint64_t Cgroup::memory_limit() const {
  if (memory_dir_.empty()) return 0;
  std::string v = read_text(memory_dir_ +
                            (mode_ == CgroupMode::kV2 ? "/memory.max" : "/memory.limit_in_bytes"));
  if (v.empty() || v.rfind("max", 0) == 0) return 0;
  auto n = std::strtoull(v.c_str(), nullptr, 10);
  return n >= (1ULL << 62) ? 0 : n;  // v1 says "no limit" with a huge number
}

double Cgroup::cpu_seconds() const {
  if (mode_ == CgroupMode::kV2 && !dirs_.empty()) {
    std::string st = read_text(dirs_[0] + "/cpu.stat");
    if (st.empty()) return -1;
    return counter(st, "usage_usec") / 1e6;
  }
  if (mode_ == CgroupMode::kV1 && !cpuacct_dir_.empty()) {
    std::string v = read_text(cpuacct_dir_ + "/cpuacct.usage");
    if (v.empty()) return -1;
    return std::strtoull(v.c_str(), nullptr, 10) / 1e9;
  }
  return -1;
}

void Cgroup::destroy() const {
  for (auto& d : dirs_) ::rmdir(d.c_str());
}

// ---------------------------------------------------------------- bwrap

AccountFiles runtime_account_files(std::string_view host_passwd, std::string_view host_group,
                                   const std::string& owner, uid_t uid, gid_t gid) {
  // name:x:id:... : keeps every line but those naming our id (field 3).
  auto keep = [](std::string_view text, const std::string& id, std::vector<std::string>& names) {
    std::string out;
    std::size_t pos = 0;
    while (pos < text.size()) {
      std::size_t end = text.find('\n', pos);
      if (end == std::string_view::npos) end = text.size();
      std::string_view line = text.substr(pos, end - pos);
      pos = end + 1;
      std::size_t a = line.find(':'), b = line.find(':', a + 1), c = line.find(':', b + 1);
      if (line.empty() || a == std::string_view::npos || b == std::string_view::npos) continue;
      if (c != std::string_view::npos && line.substr(b + 1, c - b - 1) == id) continue;
      names.emplace_back(line.substr(0, a));
      out.append(line).push_back('\n');
    }
    return out;
  };
  std::vector<std::string> user_names, group_names;
  AccountFiles f;
  f.passwd = keep(host_passwd, std::to_string(uid), user_names);
  f.group = keep(host_group, std::to_string(gid), group_names);
  auto taken = [&](const std::string& n) {
    return std::find(user_names.begin(), user_names.end(), n) != user_names.end() ||
           std::find(group_names.begin(), group_names.end(), n) != group_names.end();
  };
  f.user_name = taken(owner) ? "skylab-" + owner : owner;
  f.passwd += f.user_name + ":x:" + std::to_string(uid) + ":" + std::to_string(gid) +
              ":Skylab user " + owner + ":/root:/bin/bash\n";
  f.group += f.user_name + ":x:" + std::to_string(gid) + ":\n";
  return f;
}

std::string cgroup_name(const std::string& kernel_id) {
  return "skylab-" + kernel_id;
}

bool valid_owner(const std::string& owner) {
  return !owner.empty() && owner.find('/') == std::string::npos && owner[0] != '.' &&
         owner != kAnyone;
}

std::map<std::string, std::string> runtime_env(const kernel::LaunchSpec& spec,
                                               const std::string& type_name) {
  // CUDA_VISIBLE_DEVICES is among them: empty, no GPU, for CPU runtimes.
  auto env = sandbox_base_env(spec.kernel_id, spec.owner == kAnyone ? "" : spec.owner, type_name,
                              spec.devices);
  env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1";  // the kernel's debugger only
  for (auto& [k, v] : spec.env)
    if (k.rfind("SKYLAB_", 0) == 0 && !kernel::server_only_env(k)) env[k] = v;
  // A Slurm runtime's job (set by `skylab agent` only; never secrets).
  for (const char* k : {"SLURM_JOB_ID", "SLURM_JOB_NODELIST", "SLURM_JOB_PARTITION",
                        "SLURM_CLUSTER_NAME", "SLURM_JOB_GPUS", "SLURM_CPUS_PER_TASK"})
    if (auto it = spec.env.find(k); it != spec.env.end()) env[k] = it->second;
  if (!spec.state_dir.empty())
    env["SKYLAB_RUNTIME_STATE"] = std::string(kSandboxStateDir) + "/state.json";
  return env;
}

std::vector<std::pair<std::string, std::string>> user_binds(const SandboxPlan& p) {
  if (p.drive_dir.empty()) return {};
  return {{p.drive_dir, "/content/drive"},
          {p.cache_dir + "/cache", "/root/.cache"},
          {p.cache_dir + "/keras", "/root/.keras"},
          {p.cache_dir + "/local", "/root/.local"}};
}

std::vector<std::string> bwrap_args(const SandboxOptions& o, const SandboxPlan& p,
                                    const std::vector<std::string>& command) {
  std::vector<std::string> a = {o.bwrap, "--unshare-pid", "--unshare-ipc", "--unshare-uts",
                                "--unshare-cgroup-try"};
  if (!p.network) a.emplace_back("--unshare-net");
  if (p.seccomp) a.insert(a.end(), {"--seccomp", std::to_string(kSeccompFd)});
  for (const char* x : {"--new-session", "--hostname", "skylab", "--clearenv"}) a.emplace_back(x);
  for (auto& [k, v] : p.env) {
    a.insert(a.end(), {"--setenv", k, v});
  }
  // A read-only system: /usr and /etc, and the merged-/usr links beside them.
  a.insert(a.end(), {"--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"});
  if (p.account_files && !p.state_dir.empty())
    a.insert(a.end(), {"--ro-bind", p.state_dir + "/passwd", "/etc/passwd", "--ro-bind",
                       p.state_dir + "/group", "/etc/group"});
  if (!p.dns_forward.empty())
    a.insert(a.end(), {"--ro-bind-data", std::to_string(kResolvConfFd), "/etc/resolv.conf"});
  for (const char* top : {"bin", "sbin", "lib", "lib32", "lib64", "libx32"}) {
    std::string host = std::string("/") + top;
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[256];
      ssize_t n = ::readlink(host.c_str(), target, sizeof target - 1);
      if (n > 0) a.insert(a.end(), {"--symlink", std::string(target, n), host});
    } else if (S_ISDIR(st.st_mode)) {
      a.insert(a.end(), {"--ro-bind", host, host});
    }
  }
  // /tmp, /var/tmp and /dev/shm (POSIX semaphores: multiprocessing) are the user's scratch space
  // (the runtime drops to the user's uid after bwrap made them): sticky and world-writable.
  a.insert(a.end(), {"--proc",   "/proc",   "--dev",   "/dev",     "--perms", "1777",  "--tmpfs",
                     "/dev/shm", "--perms", "1777",    "--tmpfs",  "/tmp",    "--dir", "/var",
                     "--perms",  "1777",    "--tmpfs", "/var/tmp", "--tmpfs", "/run"});
  for (auto& d : p.gpu_devices) a.insert(a.end(), {"--dev-bind", d, d});
  // bwrap creates missing parents of mount points as 0700 root: make the
  // ones the user must traverse explicitly.
  for (const char* d : {"/opt", "/opt/skylab", "/opt/skylab/bin"})
    a.insert(a.end(), {"--perms", "0755", "--dir", d});
  if (!p.conn_dir.empty()) {
    std::string parent = fs::path(p.conn_dir).parent_path().string();
    std::string walk;
    std::istringstream parts(parent);
    std::string part;
    while (std::getline(parts, part, '/')) {
      if (part.empty()) continue;
      walk += "/" + part;
      if (walk != "/run") a.insert(a.end(), {"--perms", "0755", "--dir", walk});
    }
    a.insert(a.end(), {"--bind", p.conn_dir, p.conn_dir});
  }
  a.insert(a.end(), {"--bind", p.content_dir, "/content"});
  std::string home = p.content_dir + "/../home";
  a.insert(a.end(), {"--bind", home, "/root"});
  // (A runtime started for anyone gets them when a user claims it: user_binds.)
  for (auto& [host, inside] : user_binds(p)) a.insert(a.end(), {"--bind", host, inside});
  std::error_code ec;
  if (!o.python_dir.empty() && fs::is_directory(o.python_dir, ec))
    a.insert(a.end(), {"--ro-bind", o.python_dir, "/opt/skylab/python"});
  if (!o.datasets_dir.empty() && fs::is_directory(o.datasets_dir, ec))
    a.insert(a.end(), {"--ro-bind", o.datasets_dir, "/datasets"});
  if (!p.state_dir.empty()) a.insert(a.end(), {"--ro-bind", p.state_dir, kSandboxStateDir});
  if (::geteuid() == 0) a.insert(a.end(), {"--ro-bind", o.skylab_binary, "/opt/skylab/bin/skylab"});
  // Its parent is the `skylab sandbox-exec` supervisor: when that goes, so does the sandbox.
  a.emplace_back("--die-with-parent");
  a.insert(a.end(), {"--chdir", "/content", "--"});
  if (::geteuid() == 0) {
    // bwrap runs privileged; our helper drops to the user's uid inside.
    a.insert(a.end(), {"/opt/skylab/bin/skylab", "sandbox-exec", "--uid", std::to_string(p.uid),
                       "--gid", std::to_string(p.gid)});
    if (p.hold) a.emplace_back("--hold");
    a.emplace_back("--");
  }
  a.insert(a.end(), command.begin(), command.end());
  return a;
}

bool SandboxLauncher::available(const std::string& bwrap) {
  if (::access(bwrap.c_str(), X_OK) != 0) return false;
  pid_t pid = ::fork();
  if (pid == 0) {
    int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execl(bwrap.c_str(), bwrap.c_str(), "--ro-bind", "/", "/", "--unshare-pid", "--proc", "/proc",
            "--dev", "/dev", "/bin/true", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

SandboxLauncher::SandboxLauncher(SandboxOptions options)
    : opts_(std::move(options)), cgroup_mode_(Cgroup::detect()) {
  volumes_ = std::make_unique<UserVolumes>(opts_.data_dir, opts_.config.drive.quota_bytes);
  bool template_on = opts_.template_on;
  if (const char* e = std::getenv("SKYLAB_RUNTIME_TEMPLATE"); e && *e && !opts_.die_with_parent)
    template_on = std::string(e) != "0";  // operators and tests: overrides [runtimes] template
  std::string script = opts_.python_dir + "/skylab/template.py";
  if (template_on && ::geteuid() == 0 && cgroup_mode_ != CgroupMode::kNone &&
      ::access(script.c_str(), R_OK) == 0) {
    RuntimeTemplates::Options to;
    to.python = opts_.template_python;
    to.script = script;
    to.run_dir = opts_.data_dir + "/run";
    for (auto& [name, type] : opts_.config.types)
      if (type.backend == Backend::kLocal) to.preload[name] = type.preload;
    templates_ = std::make_unique<RuntimeTemplates>(std::move(to));
    templates_->start();
  } else {
    log::info(std::string("runtime template: off") +
              (template_on ? " (needs root, cgroups and python/skylab/template.py)" : ""));
  }
  log::info(std::string("runtime: bubblewrap sandboxes, cgroups ") +
            (cgroup_mode_ == CgroupMode::kV2   ? "v2"
             : cgroup_mode_ == CgroupMode::kV1 ? "v1"
                                               : "unavailable"));
  if (cgroup_mode_ == CgroupMode::kV2) {
    // Say at start whether runtimes' memory limits can apply (they cannot below
    // a cgroup that holds the server itself: systemd without cgroup_parent).
    const std::string& parent = opts_.config.runtimes.cgroup_parent;
    std::string base = parent.empty() ? own_cgroup("") : parent;
    auto offered = offered_controllers("/sys/fs/cgroup" + base);
    auto enabled = enable_controllers("/sys/fs/cgroup" + base);
    std::string where = base.empty() ? "/" : base;
    if (enabled.size() < offered.size())
      log::warn("runtime: cgroup v2 controllers cannot be enabled below " + where +
                " (it holds processes): runtimes' memory, cpus and pids limits will not apply; "
                "under systemd set [runtimes] cgroup_parent (docs/operations.md)");
    else if (std::find(enabled.begin(), enabled.end(), "memory") == enabled.end())
      log::warn("runtime: the memory controller is not delegated to " + where +
                ": runtimes' memory limits will not apply");
  }
}

SandboxLauncher::~SandboxLauncher() = default;

void SandboxLauncher::stop_templates() {
  if (templates_) templates_->stop();
}

std::string SandboxLauncher::instant_source(const std::string& type) const {
  if (!templates_ || ::geteuid() != 0 || cgroup_mode_ == CgroupMode::kNone ||
      templates_->socket_for(type).empty())
    return "";
  pid_t pid = templates_->pid_for(type);
  return pid > 0 ? "template pid " + std::to_string(pid) : "";
}

Result<uid_t> SandboxLauncher::uid_for(const std::string& username) {
  if (::geteuid() != 0) return ::geteuid();
  MutexLock lock(mutex_);
  std::string path = opts_.data_dir + "/runtime/uids.json";
  auto j = json_limits::parse_or_discarded(read_text(path), json_limits::kStoredLimits);
  if (!j.is_object()) j = nlohmann::json::object();
  if (auto it = j.find(username); it != j.end() && it->is_number_unsigned())
    return it->get<uid_t>();
  uid_t next = opts_.uid_base;
  for (auto& [_, v] : j.items())
    if (v.is_number_unsigned()) next = std::max<uid_t>(next, v.get<uid_t>() + 1);
  j[username] = next;
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  if (!safe_fs::write_file(path, j.dump(1), 0600, true).ok())
    return Error::internal("cannot record runtime uid allocation");
  return next;
}

Status SandboxLauncher::prepare_dirs(const kernel::LaunchSpec& spec, const SandboxPlan& plan) {
  // Everything below is fd-relative and never follows a symlink: the
  // runtime (this one, or an earlier one of the same user) can write the
  // Drive, caches, /content and its socket folder. Directories get their
  // owner when created (or when still root's); nothing is walked except
  // once per user, to migrate trees written by older versions.
  bool root = ::geteuid() == 0;
  // Started for anyone (no user's folders in the plan): root's until assign().
  bool anyone = plan.drive_dir.empty();
  uid_t uid = root ? (anyone ? 0 : plan.uid) : static_cast<uid_t>(-1);
  gid_t gid = root ? (anyone ? 0 : plan.gid) : static_cast<gid_t>(-1);
  auto data = safe_fs::open_dir(opts_.data_dir);
  if (!data.ok()) return data.error();
  auto runtimes = safe_fs::ensure_dir_at(data->get(), "runtimes", 0755);
  if (!runtimes.ok()) return runtimes.error();
  auto rt = safe_fs::ensure_dir_at(runtimes->get(), spec.kernel_id, 0755);
  if (!rt.ok()) return rt.error();
  for (const char* rel : {"content/drive", "home/.cache", "home/.keras", "home/.local"}) {
    auto d = safe_fs::ensure_path_at(rt->get(), rel, 0755, uid, gid);
    if (!d.ok()) return d.error();
  }
  if (anyone) return ok_status();  // no user's folders yet
  if (auto st = prepare_user_dirs(data->get(), spec.owner, uid, gid); !st.ok()) return st;
  if (root && !plan.conn_dir.empty())
    if (auto st = give_socket_folder(plan.conn_dir, uid, gid); !st.ok()) return st;
  return ok_status();
}

Status SandboxLauncher::prepare_user_dirs(int data_fd, const std::string& owner, uid_t uid,
                                          gid_t gid) {
  auto drive_parent = safe_fs::ensure_dir_at(data_fd, "drive", 0755);
  if (!drive_parent.ok()) return drive_parent.error();
  auto drive = safe_fs::ensure_dir_at(drive_parent->get(), owner, 0700, uid, gid);
  if (!drive.ok()) return drive.error();
  auto cache_parent = safe_fs::ensure_dir_at(data_fd, "cache", 0755);
  if (!cache_parent.ok()) return cache_parent.error();
  auto cache = safe_fs::ensure_dir_at(cache_parent->get(), owner, 0700, uid, gid);
  if (!cache.ok()) return cache.error();
  for (const char* sub : {"cache", "keras", "local"}) {
    auto d = safe_fs::ensure_dir_at(cache->get(), sub, 0755, uid, gid);
    if (!d.ok()) return d.error();
  }
  if (::geteuid() == 0) migrate_once(data_fd, owner, drive->get(), cache->get(), uid, gid);
  return ok_status();
}

Status SandboxLauncher::give_socket_folder(const std::string& conn_dir, uid_t uid, gid_t gid) {
  // The manager made the socket folder and connection file (root's, fresh
  // for every start); the kernel must create sockets there and read the file.
  auto conn = safe_fs::open_dir(conn_dir);
  if (!conn.ok()) return conn.error();
  if (::fchown(conn->get(), uid, gid) != 0)
    return Error::internal("cannot give the socket folder to the runtime: " +
                           std::string(std::strerror(errno)));
  safe_fs::UniqueFd cf(
      ::openat(conn->get(), "connection.json", O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (cf.get() < 0 || ::fstat(cf.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      ::fchown(cf.get(), uid, gid) != 0)
    return Error::internal("cannot give the connection file to the runtime");
  return ok_status();
}

void SandboxLauncher::migrate_once(int data_fd, const std::string& owner, int drive_fd,
                                   int cache_fd, uid_t uid, gid_t gid) {
  // Older versions left root-owned files in Drives (API writes) and chowned
  // the whole tree at every start. One fd-relative walk per user, recorded
  // in a root-owned marker; later starts do work independent of Drive size.
  auto rdir = safe_fs::ensure_dir_at(data_fd, "runtime", 0755);
  if (!rdir.ok()) return;
  auto marks = safe_fs::ensure_dir_at(rdir->get(), "ownership-migrated", 0700);
  if (!marks.ok()) return;
  MutexLock lock(migrate_mutex_);
  if (safe_fs::exists_at(marks->get(), owner)) return;
  auto a = safe_fs::chown_root_owned_tree(drive_fd, uid, gid);
  auto b = safe_fs::chown_root_owned_tree(cache_fd, uid, gid);
  log::info("runtime: gave " + std::to_string(a.changed + b.changed) + " root-owned entries in " +
            owner + "'s Drive and caches to uid " + std::to_string(uid) + " (once; " +
            std::to_string(a.skipped + b.skipped) + " left as they were)");
  auto st = safe_fs::write_file_at(marks->get(), owner, "1\n", 0600, true);
  if (!st.ok()) log::warn("runtime: cannot record the ownership migration: " + st.error().message);
}

Status SandboxLauncher::prepare(kernel::LaunchSpec& spec) {
  std::string type_name = opts_.config.type_name(spec.runtime_type);
  auto t = opts_.config.types.find(type_name);
  if (t == opts_.config.types.end())
    return Error::bad_request("unknown runtime type '" + type_name + "'");
  const RuntimeType& type = t->second;
  // Started for anyone (the instant pool): nobody's data, the holder as
  // `nobody`, the kernel forked from the template and held until assign().
  const bool anyone = spec.owner == kAnyone;
  std::string template_socket;
  if (templates_ && ::geteuid() == 0 && template_can_serve(spec.argv, templates_->python()))
    template_socket = templates_->socket_for(type_name);
  if (anyone && (template_socket.empty() || !spec.devices.empty() || spec.state_dir.empty()))
    return Error::unavailable(
        "runtimes for anyone need a ready template, no GPU and a state folder");
  if (!anyone && !valid_owner(spec.owner)) return Error::bad_request("invalid runtime owner");

  SandboxPlan plan;
  if (anyone) {
    plan.uid = kNobodyId;
    plan.gid = kNobodyId;
  } else {
    auto uid = uid_for(spec.owner);
    if (!uid.ok()) return uid.error();
    plan.uid = uid.value();
    plan.gid = static_cast<gid_t>(uid.value());
  }
  plan.network = type.network != NetworkMode::kNone;
  // Only root can give a runtime its own namespace with NAT; a server run
  // by an ordinary user (development) shares its network.
  bool isolated_net = type.network == NetworkMode::kIsolated && ::geteuid() == 0;
  if (isolated_net)
    plan.dns_forward = dns_forward_address(read_text("/etc/resolv.conf"), host_ipv4_gateway());
  plan.seccomp = type.seccomp == SeccompMode::kDefault;
  fs::path data(opts_.data_dir);
  fs::path runtime_root = data / "runtimes" / spec.kernel_id;
  plan.content_dir = (runtime_root / "content").string();
  plan.conn_dir = spec.connection_dir;
  if (!anyone) plan_user_folders(spec, plan);
  // Root's until assign() when started for anyone.
  uid_t dir_uid = anyone ? 0 : plan.uid;
  gid_t dir_gid = anyone ? 0 : plan.gid;
  if (type.disk_bytes > 0) {
    // /content and the runtime's home live in an image of the type's size.
    auto st = mount_disk_image(runtime_root.string(), runtime_root.string() + ".img",
                               type.disk_bytes, dir_uid, dir_gid);
    if (!st.ok()) {
      MutexLock lock(mutex_);
      if (!disk_warned_[type_name]) {
        disk_warned_[type_name] = true;
        log::warn("runtime type " + type_name +
                  ": /content size limit (disk = " + std::to_string(type.disk_bytes >> 20) +
                  " MiB) not enforced: " + st.error().message);
      }
    }
  }
  auto dirs = prepare_dirs(spec, plan);
  if (!dirs.ok()) return dirs;
  plan.state_dir = spec.state_dir;
  if (!plan.state_dir.empty()) {
    // Root-owned and read-only inside, like state.json beside them.
    // (For anyone: the host's as they are, rewritten in place by assign().)
    auto acc = anyone ? AccountFiles{"", read_text("/etc/passwd"), read_text("/etc/group")}
                      : runtime_account_files(read_text("/etc/passwd"), read_text("/etc/group"),
                                              spec.owner, plan.uid, plan.gid);
    auto a = safe_fs::write_file(plan.state_dir + "/passwd", acc.passwd, 0644, false);
    auto g = a.ok() ? safe_fs::write_file(plan.state_dir + "/group", acc.group, 0644, false) : a;
    if (g.ok())
      plan.account_files = true;
    else
      log::warn("runtime " + spec.kernel_id + ": its uid will have no name: " + g.error().message);
  }
  if (anyone)
    if (auto st = make_claim_fifos(plan.state_dir); !st.ok()) return st;

  plan.env = runtime_env(spec, type_name);
  plan.gpu_devices = gpu_device_nodes(spec.devices);
  // The template serves the default python3 kernelspec only; anything else
  // (another kernelspec, no template ready yet) starts as it always did.
  plan.hold = !template_socket.empty();

  auto cg = Cgroup::create(cgroup_mode_, cgroup_name(spec.kernel_id), type,
                           opts_.config.runtimes.cgroup_parent);
  if (!cg.ok()) return cg.error();
  {
    MutexLock lock(mutex_);
    types_[spec.kernel_id] = type_name;
  }

  std::vector<std::string> argv = {opts_.skylab_binary, "sandbox-exec"};
  for (auto& d : cg->dirs()) argv.insert(argv.end(), {"--cgroup", d});
  auto grace =
      std::chrono::duration_cast<std::chrono::seconds>(opts_.config.runtimes.grace).count();
  auto lifetime =
      std::chrono::duration_cast<std::chrono::seconds>(opts_.config.max_lifetime(type)).count();
  std::int64_t started =
      spec.started > 0 ? spec.started : static_cast<std::int64_t>(::time(nullptr));
  argv.insert(argv.end(), {"--deadline", std::to_string(started + lifetime + grace), "--grace",
                           std::to_string(grace)});
  if (!spec.state_dir.empty()) argv.insert(argv.end(), {"--state", spec.state_dir + "/state.json"});
  if (opts_.die_with_parent) argv.emplace_back("--die-with-parent");
  if (isolated_net) argv.insert(argv.end(), {"--net", "isolated"});
  if (!plan.dns_forward.empty()) argv.insert(argv.end(), {"--dns-forward", plan.dns_forward});
  if (plan.seccomp) argv.insert(argv.end(), {"--seccomp", "default"});
  if (plan.hold) argv.insert(argv.end(), {"--template", template_socket});
  if (anyone) argv.emplace_back("--for-anyone");
  auto inner = bwrap_args(opts_, plan, spec.argv);
  // bwrap's options (host paths) go through a memfd; its command stays in argv.
  for (std::size_t i = 2; i < inner.size(); ++i) {
    if (inner[i] == "--" && inner[i - 1] == "/content" && inner[i - 2] == "--chdir") {
      argv.insert(argv.end(), {"--args-count", std::to_string(i - 1)});
      break;
    }
  }
  argv.emplace_back("--");
  argv.insert(argv.end(), inner.begin(), inner.end());
  spec.argv = std::move(argv);
  spec.env = {{"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}, {"LANG", "C.UTF-8"}};
  if (const char* t = std::getenv("SKYLAB_TEMPLATE_TRACE"); plan.hold && t && *t)
    spec.env["SKYLAB_TEMPLATE_TRACE"] = t;  // the supervisor's steps in the kernel log too
  spec.cwd = "/";
  return ok_status();
}

void SandboxLauncher::kill_all(const std::string& kernel_id, pid_t pid) {
  Cgroup::open(cgroup_mode_, cgroup_name(kernel_id), opts_.config.runtimes.cgroup_parent)
      .kill_all();
}

std::string SandboxLauncher::death_reason(const std::string& kernel_id) {
  auto cg = Cgroup::open(cgroup_mode_, cgroup_name(kernel_id), opts_.config.runtimes.cgroup_parent);
  if (!cg.oom_killed()) return {};
  std::string type_name;
  {
    MutexLock lock(mutex_);
    type_name = types_.count(kernel_id) ? types_[kernel_id] : "";
  }
  auto t = opts_.config.types.find(type_name);
  std::string limit = t != opts_.config.types.end() && t->second.memory_bytes
                          ? " of " + std::to_string(t->second.memory_bytes >> 20) + " MiB"
                          : "";
  return "the runtime ran out of memory (limit" + limit + "); it was stopped";
}

void SandboxLauncher::cleanup(const std::string& kernel_id) {
  auto cg = Cgroup::open(cgroup_mode_, cgroup_name(kernel_id), opts_.config.runtimes.cgroup_parent);
  cg.kill_all();
  cg.destroy();
  std::error_code ec;
  fs::path root = fs::path(opts_.data_dir) / "runtimes" / kernel_id;
  unmount_disk_image(root.string(), root.string() + ".img");
  if (is_mount_point(root.string())) {
    log::warn("runtime " + kernel_id + ": /content is still mounted; left in place");
  } else {
    safe_fs::remove_tree(root.string());  // the runtime wrote in there: fd-relative, no symlinks
  }
  MutexLock lock(mutex_);
  types_.erase(kernel_id);
}

std::vector<std::string> SandboxLauncher::prepared_ids() {
  std::vector<std::string> ids;
  std::error_code ec;
  for (auto it = fs::directory_iterator(fs::path(opts_.data_dir) / "runtimes", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (it->path().extension() == ".img") name = it->path().stem().string();
    if (std::find(ids.begin(), ids.end(), name) == ids.end()) ids.push_back(name);
  }
  // (Not the cgroup tree: other servers on this machine keep theirs there.)
  return ids;
}

kernel::Usage SandboxLauncher::usage(const std::string& kernel_id) {
  kernel::Usage u;
  std::string type_name;
  {
    MutexLock lock(mutex_);
    if (auto it = types_.find(kernel_id); it != types_.end()) type_name = it->second;
  }
  const RuntimeType* t = opts_.config.find_type(type_name);
  auto cg = Cgroup::open(cgroup_mode_, cgroup_name(kernel_id), opts_.config.runtimes.cgroup_parent);
  u.known = true;
  u.memory_used = cg.memory_current();
  u.cpu_seconds = cg.cpu_seconds();
  u.memory_limit = cg.memory_limit();
  if (t) {
    if (!u.memory_limit) u.memory_limit = t->memory_bytes;
    u.cpu_limit = t->cpus;
  }
  std::string root = (fs::path(opts_.data_dir) / "runtimes" / kernel_id).string();
  struct statvfs vfs {};
  if (is_mount_point(root) && ::statvfs(root.c_str(), &vfs) == 0) {
    u.disk_limit = static_cast<std::uint64_t>(vfs.f_blocks) * vfs.f_frsize;
    u.disk_used = u.disk_limit - static_cast<std::uint64_t>(vfs.f_bfree) * vfs.f_frsize;
  } else {
    u.disk_used =
        tree_bytes(root, 20000);  // bounded: a runtime with millions of files is not walked whole
  }
  return u;
}

// ---------------------------------------------------------------- sandbox-exec

namespace {

// Execs `command`; its first `args_count` arguments after the program go
// through a memfd (bwrap --args FD: options only, the command stays in argv),
// so they do not show in the sandbox's /proc/1/cmdline.
void exec_command(const std::vector<std::string>& command, std::size_t args_count) {
  std::vector<std::string> cmd = command;
  if (args_count > 0 && args_count < cmd.size()) {
    int fd =
        ::memfd_create("skylab-bwrap-args", 0);  // inherited by bwrap, which reads and closes it
    if (fd >= 0) {
      std::string blob;
      for (std::size_t i = 1; i <= args_count; ++i) blob.append(cmd[i]).push_back('\0');
      bool ok = ::write(fd, blob.data(), blob.size()) == static_cast<ssize_t>(blob.size()) &&
                ::lseek(fd, 0, SEEK_SET) == 0;
      if (ok) {
        std::vector<std::string> short_cmd = {cmd[0], "--args", std::to_string(fd)};
        short_cmd.insert(short_cmd.end(), cmd.begin() + 1 + static_cast<std::ptrdiff_t>(args_count),
                         cmd.end());
        cmd = std::move(short_cmd);
      } else {
        ::close(fd);
      }
    }
  }
  std::vector<char*> argv;
  argv.reserve(cmd.size() + 1);
  for (auto& c : cmd) argv.push_back(c.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  std::fprintf(stderr, "skylab sandbox-exec: cannot run %s: %s\n", argv[0], std::strerror(errno));
}

// The lifetime_deadline (Unix seconds) in the root-owned state file; 0 when
// unreadable. Opened O_NOFOLLOW|O_NONBLOCK, fstat'ed, at most 64 KiB read.
double state_deadline(const std::string& path) {
  if (path.empty()) return 0;
  safe_fs::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  struct stat st {};
  if (fd.get() < 0 || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
      st.st_uid != ::geteuid())
    return 0;
  char buf[65536];
  ssize_t n = ::read(fd.get(), buf, sizeof buf);
  if (n <= 0) return 0;
  auto j = json_limits::parse_or_discarded(std::string_view(buf, static_cast<std::size_t>(n)));
  if (!j.is_object() || !j.contains("lifetime_deadline") || !j["lifetime_deadline"].is_number())
    return 0;
  return j["lifetime_deadline"].get<double>();
}

// SIGKILLs every process in `cgroups` but the caller, again until none is
// left (a process may fork between the read and the kill), for up to a second.
void kill_cgroups(const std::vector<std::string>& cgroups) {
  for (int round = 0; round < 50; ++round) {
    bool any = false;
    for (auto& d : cgroups) {
      for (pid_t p : cgroup_pids(d))
        if (p != ::getpid()) {
          any = true;
          ::kill(p, SIGKILL);
        }
    }
    if (!any) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

struct SuperviseOptions {
  pid_t parent = 0;           // --die-with-parent: the runtime ends when this process is gone
  std::int64_t deadline = 0;  // Unix seconds; 0: none
  std::string state_file;     // root-owned; its lifetime_deadline wins when readable
  std::int64_t grace = 0;
  std::vector<std::string> cgroups;
  std::string template_socket;  // --template: fork the kernel from this template
  bool for_anyone = false;      // --for-anyone: a pre-started runtime; no fallback
  PendingNetwork network;       // --template: pasta still starting (finished before the kernel)
};

// SKYLAB_TEMPLATE_TRACE=1 (passed on by the server for templated starts):
// the supervisor's steps with times in the kernel's log, next to the
// template's (same "at" clock: wall seconds), to see where a start goes.
// Only the outer, root supervisor traces (sandbox_exec_main sets it).
bool g_trace = false;

void trace(const char* step) {
  if (!g_trace) return;
  static const auto t0 = std::chrono::steady_clock::now();
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  auto wall = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch());
  std::fprintf(stderr, "skylab sandbox-exec: %+.1f ms %s (at %.3f)\n", ms, step, wall.count());
}

// The supervisor's side of a held sandbox: waits for the holder ('r'),
// opens the sandbox, asks the template to fork the kernel into it, and
// tells the holder 'k' (then keeps `hold` open until the kernel exits) or
// 'f' (fall back: the holder runs Python itself). Never fails the runtime.
void start_from_template(const std::vector<std::string>& command, SuperviseOptions& o, int hold) {
  auto fallback = [hold, &o](const std::string& why) {
    if (o.for_anyone) {
      // Nobody's runtime runs Python the old way (as which user?): it ends.
      std::fprintf(stderr, "skylab sandbox-exec: cannot pre-start the kernel: %s\n", why.c_str());
      ::close(hold);
      return;
    }
    std::fprintf(stderr, "skylab sandbox-exec: starting the kernel without the template: %s\n",
                 why.c_str());
    (void)!::write(hold, "f", 1);
    ::close(hold);
  };
  pollfd pf{hold, POLLIN, 0};
  char c = 0;
  if (::poll(&pf, 1, 30000) != 1 || ::read(hold, &c, 1) != 1 || c != 'r') {
    ::close(hold);  // the holder is gone (or stuck): nothing to start
    return;
  }
  trace("the holder is ready (bubblewrap built the sandbox)");
  // pasta configured the namespace while bubblewrap built the sandbox; no
  // kernel (forked or fallen back to) runs before its routes are in place.
  if (o.network.pasta > 0) {
    if (auto st = finish_isolated_network(o.network); !st.ok()) {
      std::fprintf(stderr, "skylab sandbox-exec: %s\n", st.error().message.c_str());
      ::close(hold);  // the holder exits: no runtime with another network than asked for
      return;
    }
    trace("the network is ready (pasta, prohibit routes)");
  }
  auto req = parse_bwrap_command(command);
  if (!req.ok()) return fallback(req.error().message);
  req->cgroups = o.cgroups;
  req->for_anyone = o.for_anyone;
  auto sandbox = open_sandbox(o.cgroups, command[0], 5, 1);
  if (!sandbox.ok()) return fallback(sandbox.error().message);
  trace("opened the sandbox");
  auto pidfd = fork_from_template(o.template_socket, req.value(), sandbox.value(), kSeccompFd, 30);
  if (!pidfd.ok()) return fallback(pidfd.error().message);
  trace("the template forked the kernel");
  if (::write(hold, "k", 1) != 1) {
    ::close(pidfd.value());
    ::close(hold);
    return;
  }
  // The holder (the sandbox's program, as bubblewrap and the server see it)
  // lives as long as the forked kernel.
  std::thread([fd = pidfd.value(), hold] {
    pollfd p{fd, POLLIN, 0};
    while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
    }
    ::close(fd);
    ::close(hold);
  }).detach();
}

// Runs `command` as a child and waits for it: the runtime's lifetime enforced
// by the machine, not by the server. Returns the exit status to pass on.
int supervise(const std::vector<std::string>& command, std::size_t args_fd, SuperviseOptions& o) {
  sigset_t set, old;
  sigemptyset(&set);
  for (int s : {SIGCHLD, SIGTERM, SIGINT, SIGHUP}) sigaddset(&set, s);
  ::sigprocmask(SIG_BLOCK, &set, &old);
  int pair[2] = {-1, -1};
  if (!o.template_socket.empty() &&
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    std::perror("skylab sandbox-exec: socketpair");
    return 126;
  }
  pid_t child = ::fork();
  if (child < 0) {
    std::perror("skylab sandbox-exec: fork");
    return 126;
  }
  if (child == 0) {
    ::sigprocmask(SIG_SETMASK, &old, nullptr);
    // The holder's end, inherited through bubblewrap (dup2 clears O_CLOEXEC).
    if (pair[1] >= 0 && ::dup2(pair[1], kHoldFd) != kHoldFd) ::_exit(126);
    exec_command(command, args_fd);
    ::_exit(127);
  }
  trace("started bubblewrap");
  if (pair[0] >= 0) {
    ::close(pair[1]);
    start_from_template(command, o, pair[0]);
  }
  bool expired = false;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(child, &status, WNOHANG);
    if (r == child) {
      // The runtime is over however it ended: what is left in its cgroups
      // (its pasta, processes a cell left behind) goes with it, also when no
      // server is there to clean up.
      kill_cgroups(o.cgroups);
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    double deadline = state_deadline(o.state_file);
    deadline =
        deadline > 0 ? deadline + static_cast<double>(o.grace) : static_cast<double>(o.deadline);
    if (deadline > 0 && static_cast<double>(::time(nullptr)) >= deadline + 5) {
      if (!expired)
        std::fputs("skylab sandbox-exec: the runtime's maximum lifetime is over; stopping it\n",
                   stderr);
      expired = true;
      ::kill(child, SIGKILL);
      kill_cgroups(o.cgroups);
    }
    struct timespec ts {
      expired ? 0 : 1, expired ? 100000000 : 0
    };
    siginfo_t info{};
    int sig = ::sigtimedwait(&set, &info, &ts);
    if (o.parent > 0 && ::getppid() != o.parent) {
      // `skylab run` is gone (PR_SET_PDEATHSIG): so is its runtime, all of it.
      ::kill(child, SIGKILL);
      kill_cgroups(o.cgroups);
      continue;  // reap the child, then return
    }
    if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) ::kill(child, sig);
  }
}

}  // namespace

// Colab's layout: after drive.mount('/content/drive') notebooks read
// /content/drive/MyDrive/...; Skylab's Drive is /content/drive itself. A
// symlink `MyDrive -> .` at the Drive's top makes both paths name the same
// files. Made here, as the user (after the uid drop), never by root; the
// Drive's listings skip symlinks, and a real `MyDrive` of the user's stays.
static void colab_drive_alias() {
  int drive = ::open("/content/drive", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (drive < 0) return;
  if (::symlinkat(".", drive, "MyDrive") != 0 && errno != EEXIST)
    std::fprintf(stderr, "skylab sandbox-exec: cannot link /content/drive/MyDrive: %s\n",
                 std::strerror(errno));
  ::close(drive);
}

int sandbox_exec_main(const std::vector<std::string>& args) {
  long uid = -1, gid = -1;
  std::string net, dns_forward, seccomp;
  std::vector<std::string> cgroups, command;
  SuperviseOptions sup;
  bool supervised = false, die_with_parent = false, hold = false;
  std::size_t args_fd = 0;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--") {
      command.assign(args.begin() + i + 1, args.end());
      break;
    }
    if (args[i] == "--die-with-parent") {
      die_with_parent = true;
      continue;
    }
    if (args[i] == "--hold") {
      hold = true;
      continue;
    }
    if (args[i] == "--for-anyone") {
      sup.for_anyone = true;
      continue;
    }
    if (i + 1 >= args.size()) break;
    if (args[i] == "--args-count") {
      args_fd = std::strtoul(args[++i].c_str(), nullptr, 10);
      continue;
    }
    if (args[i] == "--deadline" || args[i] == "--grace" || args[i] == "--state") {
      supervised = true;
      const std::string& v = args[++i];
      if (args[i - 1] == "--state")
        sup.state_file = v;
      else
        (args[i - 1] == "--deadline" ? sup.deadline : sup.grace) =
            std::strtoll(v.c_str(), nullptr, 10);
      continue;
    }
    if (args[i] == "--template") {
      sup.template_socket = args[++i];
      continue;
    }
    if (args[i] == "--uid")
      uid = std::stol(args[++i]);
    else if (args[i] == "--gid")
      gid = std::stol(args[++i]);
    else if (args[i] == "--cgroup")
      cgroups.push_back(args[++i]);
    else if (args[i] == "--net" && args[i + 1] == "isolated")
      net = args[++i];
    else if (args[i] == "--dns-forward")
      dns_forward = args[++i];
    else if (args[i] == "--seccomp" && args[i + 1] == "default")
      seccomp = args[++i];
    else {
      std::fprintf(stderr, "skylab sandbox-exec: unknown option %s\n", args[i].c_str());
      return 2;
    }
  }
  if (command.empty()) {
    std::fputs(
        "usage: skylab sandbox-exec [--uid U --gid G] [--cgroup DIR]... [--deadline EPOCH] "
        "[--state FILE]\n"
        "       [--grace S] [--die-with-parent] [--args-count N] -- PROGRAM ARGS...\n",
        stderr);
    return 2;
  }
  if (die_with_parent) {
    pid_t parent = ::getppid();
    // A supervisor must outlive its runtime by a moment to end it (pasta is
    // no child of bwrap): SIGTERM, which supervise() answers by killing the
    // cgroups once the parent is gone. Unsupervised: SIGKILL, nothing to do.
    ::prctl(PR_SET_PDEATHSIG, supervised ? SIGTERM : SIGKILL, 0, 0, 0);
    if (::getppid() != parent) return 137;  // the parent is already gone
    sup.parent = parent;
  }
  if (sup.for_anyone && sup.template_socket.empty()) {
    std::fputs("skylab sandbox-exec: --for-anyone needs --template\n", stderr);
    return 2;
  }
  if (!sup.template_socket.empty() && !supervised) {
    std::fputs("skylab sandbox-exec: --template needs --deadline or --state\n", stderr);
    return 2;
  }
  if (const char* t = std::getenv("SKYLAB_TEMPLATE_TRACE"); t && *t && std::string(t) != "0")
    g_trace = uid < 0;  // not the holder inside (it has the kernel's environment)
  trace("supervisor started");
  for (auto& d : cgroups) {
    if (!write_value(d + "/cgroup.procs", std::to_string(::getpid()))) {
      std::fprintf(stderr, "skylab sandbox-exec: cannot join cgroup %s: %s\n", d.c_str(),
                   std::strerror(errno));
      return 126;
    }
  }
  trace("joined the cgroups");
  // A held start (--template) finishes the network in start_from_template,
  // before any kernel runs: pasta starts while bubblewrap builds the sandbox.
  PendingNetwork* pending = sup.template_socket.empty() ? nullptr : &sup.network;
  if (auto st = isolate_runtime(!net.empty(), dns_forward, !seccomp.empty(), pending); !st.ok()) {
    std::fprintf(stderr, "skylab sandbox-exec: %s\n", st.error().message.c_str());
    return 126;
  }
  trace(sup.network.pasta > 0 ? "started pasta, seccomp filter" : "network and seccomp filter");
  if (gid >= 0 && (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0)) {
    std::perror("skylab sandbox-exec: setgid");
    return 126;
  }
  if (uid >= 0 && ::setresuid(uid, uid, uid) != 0) {
    std::perror("skylab sandbox-exec: setuid");
    return 126;
  }
  if (uid >= 0) ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  if (uid >= 0) colab_drive_alias();
  sup.cgroups = cgroups;
  if (hold) {
    // Never root inside: the holder has dropped to the user's uid above.
    if (uid <= 0 || ::getuid() == 0 || ::geteuid() == 0) return 126;
    if (::write(kHoldFd, "r", 1) != 1) return 125;
    char c = 0;
    ssize_t n;
    while ((n = ::read(kHoldFd, &c, 1)) < 0 && errno == EINTR) {
    }
    if (n == 1 && c == 'k') {
      // A forked kernel runs in this sandbox: live until the supervisor says it exited.
      ::signal(SIGTERM, SIG_DFL);
      while ((n = ::read(kHoldFd, &c, 1)) != 0 && (n > 0 || errno == EINTR)) {
      }
      return 0;
    }
    if (n != 1 || c != 'f') return 125;
    ::close(kHoldFd);
  }
  if (supervised) return supervise(command, args_fd, sup);
  exec_command(command, args_fd);
  return 127;
}

void SandboxLauncher::set_drive_lock(DriveLock lock) {
  MutexLock l(mutex_);
  drive_lock_ = std::move(lock);
}

void SandboxLauncher::set_runtimes_running(RuntimesRunning f) {
  MutexLock l(mutex_);
  runtimes_running_ = std::move(f);
}

void SandboxLauncher::plan_user_folders(const kernel::LaunchSpec& spec, SandboxPlan& plan) {
  fs::path data(opts_.data_dir);
  plan.drive_dir = (data / "drive" / spec.owner).string();
  plan.cache_dir = (data / "cache" / spec.owner).string();
  (void)ensure_volume(spec.owner, spec.kernel_id, plan.uid, plan.gid);
}

Status SandboxLauncher::ensure_volume(const std::string& owner, const std::string& kernel_id,
                                      uid_t uid, gid_t gid) {
  DriveLock lock;
  RuntimesRunning running;
  {
    MutexLock l(mutex_);
    lock = drive_lock_;
    running = runtimes_running_;
  }
  // Only the server makes volumes (it coordinates them with its Drive and
  // unmounts them); one-shot commands (`skylab run`, `runtime exec`) use
  // whatever is mounted.
  if (!lock) return ok_status();
  bool busy = !running || running(owner, kernel_id);
  return lock(owner, [&]() -> Status { return volumes_->ensure(owner, uid, gid, busy); });
}

}  // namespace skylab::runtime
