#include "runtime/user_volume.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/log.hpp"
#include "runtime/sandbox.hpp"

extern char** environ;

namespace skylab::runtime {

namespace fs = std::filesystem;

namespace {

//! Runs a program (stdout/stderr to /dev/null); its exit status, or -1.
int run(const std::vector<std::string>& args) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = ::posix_spawnp(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return rc == ENOENT ? 127 : -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

bool empty_or_missing(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(fs::symlink_status(dir, ec))) return true;
  return fs::is_empty(dir, ec) && !ec;
}

//! Bind-mounts `from` at `to`, nosuid,nodev.
Status bind_mount(const std::string& from, const std::string& to) {
  if (::mount(from.c_str(), to.c_str(), nullptr, MS_BIND, nullptr) != 0)
    return Error::unavailable("cannot bind " + from + " at " + to + ": " + std::strerror(errno));
  ::mount(nullptr, to.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, nullptr);
  return ok_status();
}

}  // namespace

UserVolumes::UserVolumes(std::string data_dir, std::uint64_t quota_bytes)
    : data_dir_(std::move(data_dir)), quota_(quota_bytes) {}

Status UserVolumes::ensure(const std::string& user, uid_t uid, gid_t gid) {
  if (quota_ == 0) return ok_status();
  std::lock_guard lock(mutex_);
  if (ready_.count(user)) return ok_status();
  auto st = mount_volume(user, uid, gid);
  if (st.ok()) ready_.insert(user);
  else if (warned_.insert(user).second)
    log::warn("drive quota for '" + user + "' is enforced by the server only (not inside runtimes): " +
              st.error().message);
  return st;
}

Status UserVolumes::mount_volume(const std::string& user, uid_t uid, gid_t gid) {
  fs::path data(data_dir_);
  fs::path drive = data / "drive" / user, cache = data / "cache" / user;
  fs::path vol = data / "volumes" / user, image = data / "volumes" / (user + ".img");
  std::error_code ec;
  if (is_mount_point(drive.string()) && is_mount_point(cache.string())) return ok_status();  // an earlier server's
  if (::geteuid() != 0) return Error::unavailable("the server does not run as root");
  // A Drive or cache a runtime has seen may hold anything (symbolic links
  // included): not copied by root. Those stay unlimited inside runtimes.
  bool seen_by_runtime = !empty_or_missing(cache);
  if (seen_by_runtime && !empty_or_missing(drive))
    return Error::unavailable("the Drive predates quotas (a runtime has used it); not moved to a volume");
  fs::create_directories(vol, ec);
  if (ec) return Error::internal("cannot create " + vol.string() + ": " + ec.message());
  ::chmod((data / "volumes").c_str(), 0700);
  if (!is_mount_point(vol.string())) {
    if (!fs::exists(image, ec)) {
      int fd = ::open(image.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) return Error::internal("cannot create " + image.string() + ": " + std::strerror(errno));
      bool sized = ::ftruncate(fd, static_cast<off_t>(quota_)) == 0;
      ::close(fd);
      if (!sized) {
        ::unlink(image.c_str());
        return Error::internal("cannot size " + image.string());
      }
      // A journal for quotas of 1 GiB and more (it costs 4 MiB or more); no
      // blocks reserved for root: the quota is what the user can write.
      std::vector<std::string> mkfs = {"mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                                       "root_owner=" + std::to_string(uid) + ":" + std::to_string(gid) + ",nodiscard"};
      if (quota_ < (1ull << 30)) mkfs.insert(mkfs.end(), {"-O", "^has_journal"});
      mkfs.push_back(image.string());
      int rc = run(mkfs);
      if (rc != 0) {
        ::unlink(image.c_str());
        return Error::unavailable(rc == 127 ? "mkfs.ext4 is not installed (e2fsprogs)" : "mkfs.ext4 failed");
      }
    }
    if (run({"mount", "-t", "ext4", "-o", "loop,nosuid,nodev,noinit_itable", image.string(), vol.string()}) != 0)
      return Error::unavailable("cannot loop-mount " + image.string() + " (no loop devices?)");
    mounted_.insert(user);
  }
  for (auto sub : {"drive", "cache"}) {
    fs::path d = vol / sub;
    fs::create_directory(d, ec);
    if (::lchown(d.c_str(), uid, gid) != 0 || ::chmod(d.c_str(), 0700) != 0)
      return Error::internal("cannot prepare " + d.string() + ": " + std::strerror(errno));
  }
  // Data the server wrote before the volume existed (no runtime has seen
  // it): copied in once, symbolic links copied as links, never followed.
  if (!is_mount_point(drive.string()) && !empty_or_missing(drive)) {
    if (run({"cp", "-a", "--no-dereference", "--", drive.string() + "/.", (vol / "drive").string()}) != 0)
      return Error::unavailable("the Drive does not fit in its quota (or could not be copied); not moved");
    fs::path aside = data / "drive" / ("." + user + ".pre-quota");
    fs::remove_all(aside, ec);
    if (::rename(drive.c_str(), aside.c_str()) != 0)
      return Error::internal("cannot move the old Drive aside: " + std::string(std::strerror(errno)));
    fs::remove_all(aside, ec);  // never follows symbolic links
  }
  for (auto [sub, at] : {std::pair<const char*, fs::path>{"drive", drive}, {"cache", cache}}) {
    if (is_mount_point(at.string())) continue;
    fs::create_directories(at, ec);
    if (auto st = bind_mount((vol / sub).string(), at.string()); !st.ok()) return st;
  }
  return ok_status();
}

void UserVolumes::release(const std::function<bool(const std::string&)>& busy) {
  std::lock_guard lock(mutex_);
  fs::path data(data_dir_);
  // Every volume there is (also those an earlier, killed server mounted).
  std::set<std::string> users = mounted_;
  std::error_code ec;
  for (auto it = fs::directory_iterator(data / "volumes", ec); !ec && it != fs::directory_iterator();
       it.increment(ec))
    if (it->is_directory(ec) && !it->is_symlink(ec)) users.insert(it->path().filename().string());
  for (const auto& user : users) {
    if (busy(user)) continue;
    for (auto p : {data / "drive" / user, data / "cache" / user, data / "volumes" / user})
      if (is_mount_point(p.string())) ::umount2(p.c_str(), 0);  // busy: stays mounted, reused later
    ready_.erase(user);
    mounted_.erase(user);
  }
}

}  // namespace skylab::runtime
