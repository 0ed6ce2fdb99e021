// `skylab run`: executes a notebook headless and writes the executed copy.
//
// Exit status: 0 every cell ran; 1 a cell raised, timed out, the kernel died
// or did not start, or the output could not be written; 2 bad usage, an
// unreadable notebook, an unknown kernel; 130 interrupted by SIGINT (Ctrl+C),
// 143 by SIGTERM. From status 1 on, the partial notebook is written.
#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cli/args.hpp"
#include "cli/runtime_setup.hpp"
#include "cli/usage_setup.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "exec/executor.hpp"
#include "exec/notebook.hpp"
#include "exec/parameters.hpp"
#include "kernel/kernelspec.hpp"
#include "kernel/manager.hpp"
#include "runtime/config.hpp"
#include "runtime/gpu.hpp"
#include "runtime/launch.hpp"
#include "runtime/lifecycle.hpp"
#include "runtime/service.hpp"
#include "runtime/usage_ledger.hpp"

namespace skylab::cli {

namespace fs = std::filesystem;

using nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

const char* kRunHelp =
    "usage: skylab run NOTEBOOK.ipynb [-o OUT.ipynb] [--kernel NAME] [--timeout SECONDS]\n"
    "                  [--allow-errors] [-p NAME VALUE]... [--quiet]\n"
    "\n"
    "Executes every code cell of NOTEBOOK in order, as `jupyter nbconvert --execute`\n"
    "does, and writes the executed notebook (outputs, execution counts, timings).\n"
    "\n"
    "  -o, --output OUT       where to write (default NOTEBOOK.out.ipynb; '-' = stdout)\n"
    "  --kernel NAME          kernelspec to use (default: the notebook's, else python3)\n"
    "  --timeout SECONDS      per-cell limit; the kernel is interrupted and the run fails\n"
    "                         (0 or less: no limit, the default)\n"
    "  --allow-errors         run on after a cell raises; exit 0\n"
    "  -p, --parameter NAME VALUE\n"
    "                         papermill-style parameter, injected in a cell tagged\n"
    "                         'injected-parameters' after the cell tagged 'parameters'\n"
    "                         (or at the top). VALUE is typed: True/False, None, int,\n"
    "                         float, a JSON list or object, else a string\n"
    "  -q, --quiet            no progress output (errors are still reported)\n"
    "  --python PATH          interpreter of the built-in python3 kernel (default "
    "/usr/bin/python3)\n"
    "  --runtime TYPE         run in a Skylab runtime of this type (e.g. cpu, gpu): the\n"
    "                         sandbox, limits, deadlines and expiry hooks of `skylab serve`,\n"
    "                         with the user's Drive at /content/drive, their ~/.cache and\n"
    "                         /datasets; the kernel works in /content. Its time counts\n"
    "                         in the user's weekly usage, and a GPU type needs GPU hours\n"
    "                         left in their quota ([quotas])\n"
    "  --data-dir D           (with --runtime) the Skylab data directory (default ./skylab-data)\n"
    "  --user NAME            (with --runtime) whose Drive and caches (default $SKYLAB_USER,\n"
    "                         else your login name)\n"
    "  --config FILE          (with --runtime) runtime configuration, as `skylab serve --config`\n"
    "\n"
    "Without --runtime the kernel runs in the notebook's directory as a plain process.\n"
    "Progress goes to stderr: a bar on a terminal, one line per cell otherwise.\n"
    "\n"
    "exit status: 0 success; 1 a cell raised or timed out, or the kernel died (the\n"
    "partial notebook is written); 2 bad usage, unreadable notebook or unknown kernel;\n"
    "130 interrupted (Ctrl+C: the kernel is interrupted, the partial notebook written);\n"
    "143 terminated (SIGTERM, likewise)\n";

constexpr std::string_view kRunDirPrefix = "skylab-run-";
//! A run locks its directory within microseconds of making it; one unlocked
//! and untouched for this long belongs to a run that is gone.
constexpr std::chrono::seconds kDeadRunAge{10};

//! Removes the temporary directories of this user's runs that were killed
//! (SIGKILL leaves no chance to clean up): `skylab-run-*` in `tmp` that are
//! real directories (not symlinks) owned by this uid, whose lock can be
//! taken and that are older than kDeadRunAge. Others' directories, a live
//! run's and anything else are left alone. Best effort.
void remove_dead_run_dirs(const std::string& tmp) {
  safe_fs::UniqueFd dir(::open(tmp.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.get() < 0) return;
  auto now = std::chrono::system_clock::now();
  for (const auto& name : safe_fs::entry_names(dir.get())) {
    if (!name.starts_with(kRunDirPrefix)) continue;
    safe_fs::UniqueFd sub(::openat(dir.get(), name.c_str(),
                                   O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    struct stat st {};
    if (sub.get() < 0 || ::fstat(sub.get(), &st) != 0 || st.st_uid != ::geteuid()) continue;
    auto modified = std::chrono::system_clock::time_point(std::chrono::seconds(st.st_mtim.tv_sec));
    if (now - modified < kDeadRunAge) continue;                // a run that is starting
    if (::flock(sub.get(), LOCK_EX | LOCK_NB) != 0) continue;  // its run lives
    // Emptied through the descriptor that was checked, then removed by name
    // only if the name still is that directory: a name swapped in between
    // (a TMPDIR others can write) costs nothing but an rmdir that fails.
    for (const auto& entry : safe_fs::entry_names(sub.get()))
      safe_fs::remove_tree_at(sub.get(), entry);
    struct stat again {};
    if (::fstatat(dir.get(), name.c_str(), &again, AT_SYMLINK_NOFOLLOW) == 0 &&
        again.st_ino == st.st_ino && again.st_dev == st.st_dev)
      ::unlinkat(dir.get(), name.c_str(), AT_REMOVEDIR);
  }
}

struct RunArgs {
  std::string input;
  std::string output;
  std::string kernel;
  std::string runtime;
  std::string data_dir;
  std::string user;
  std::string config;
  std::string python = "/usr/bin/python3";
  std::optional<double> timeout_s;
  bool allow_errors = false;
  bool quiet = false;
  exec::Parameters params;
};

//! Fills `out`; kError and kHelp are printed already.
ArgParser::Outcome parse(const std::vector<std::string>& args, RunArgs& out) {
  ArgParser p("skylab run", kRunHelp);
  p.option({"-o", "--output"}, &out.output)
      .option({"--kernel"}, &out.kernel)
      .option({"--runtime"}, &out.runtime)
      .option({"--data-dir"}, &out.data_dir)
      .option({"--user"}, &out.user)
      .option({"--config"}, &out.config)
      .option({"--python"}, &out.python)
      .option({"--timeout"},
              [&](const std::string& v) -> std::string {
                char* end = nullptr;
                double t = std::strtod(v.c_str(), &end);
                if (v.empty() || *end || t != t) return "--timeout must be a number of seconds";
                if (t > 0) out.timeout_s = t;
                return "";
              })
      .flag({"--allow-errors"}, &out.allow_errors)
      .flag({"-q", "--quiet"}, &out.quiet)
      .option_n({"-p", "--parameter", "--parameters"}, 2, "a NAME and a VALUE",
                [&](const std::vector<std::string>& nv) -> std::string {
                  if (!exec::valid_parameter_name(nv[0]))
                    return "parameter name '" + nv[0] + "' is not a Python identifier";
                  exec::set_parameter(out.params, nv[0], exec::type_parameter(nv[1]));
                  return "";
                })
      .positional([&](const std::string& a) -> std::string {
        if (!out.input.empty())
          return "only one notebook can be run at a time (got '" + out.input + "' and '" + a + "')";
        out.input = a;
        return "";
      });
  auto outcome = p.parse(args);
  if (outcome != ArgParser::Outcome::kRun) return outcome;
  std::string err;
  if (out.input.empty())
    err = "no notebook given";
  else if (out.runtime.empty() &&
           (!out.data_dir.empty() || !out.user.empty() || !out.config.empty()))
    err = "--data-dir, --user and --config go with --runtime TYPE";
  if (err.empty()) return outcome;
  p.usage_error(err);
  return ArgParser::Outcome::kError;
}

// A Skylab user name as accounts allow it (1 to 32 of a-z, 0-9, _ and -,
// starting with a letter or _).
bool valid_user_name(const std::string& u) {
  if (u.empty() || u.size() > 32 || !((u[0] >= 'a' && u[0] <= 'z') || u[0] == '_')) return false;
  for (char c : u)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

// The runtime of `--runtime TYPE`: configuration, launcher, GPUs.
struct RuntimeSetup {
  runtime::Config config;
  std::shared_ptr<kernel::Launcher> launcher;
  std::string user;
  std::string type;
  std::string data;  //!< the data directory (uids, Drive, the usage ledger)
};

// `--runtime`: the kernel comes from a runtime service, as the server's do
// (the type's GPUs from this machine's inventory, the sandbox launcher);
// then waits until it is ready. `service` must outlive the kernel: its
// worker thread forked the sandbox's supervisor, which has
// PR_SET_PDEATHSIG, and that signal fires when the forking *thread* ends.
Result<std::string> acquire_runtime(const std::shared_ptr<kernel::KernelService>& kernels,
                                    const std::shared_ptr<const kernel::KernelSpecStore>& specs,
                                    const RuntimeSetup& rt, const std::string& spec,
                                    std::chrono::milliseconds timeout,
                                    const std::atomic<bool>* cancelled,
                                    const std::shared_ptr<runtime::UsageLedger>& ledger, bool admin,
                                    std::unique_ptr<runtime::RuntimeService>& service_out) {
  runtime::ServiceOptions so;
  so.threads = 1;
  service_out = std::make_unique<runtime::RuntimeService>(
      runtime::make_local_backend(kernels, specs, nullptr),
      std::make_shared<const runtime::Config>(rt.config),
      std::make_shared<runtime::GpuAllocator>(runtime::detect_gpus(rt.config.fake_gpus)), nullptr,
      so);
  runtime::RuntimeService& service = *service_out;
  if (ledger) service.set_ledger(ledger);  // the weekly GPU hours, as the server counts them
  runtime::RuntimeRequest r;
  r.user = rt.user;
  r.admin = admin;
  r.spec = spec;
  r.type = rt.type;
  r.purpose = runtime::Purpose::kJob;
  std::promise<Result<kernel::KernelModel>> started;
  auto got = started.get_future();
  auto ticket = service.acquire(
      std::move(r), [&started](Result<kernel::KernelModel> k) { started.set_value(std::move(k)); });
  if (!ticket.ok()) return ticket.error();
  auto k = got.get();
  if (!k.ok()) return k.error();
  if (auto st = exec::wait_ready(*kernels, k->id, timeout, cancelled); !st.ok()) return st.error();
  return k->id;
}

// Fills `out` from the arguments; on failure returns the message for exit status 2.
std::string setup_runtime(const RunArgs& ra, RuntimeSetup& out) {
  auto config = ra.config.empty() ? runtime::default_config() : runtime::load_config(ra.config);
  if (!config.ok()) return config.error().message;
  out.config = config.value();
  out.type = ra.runtime;
  auto t = out.config.types.find(out.type);
  if (t == out.config.types.end()) {
    std::string names;
    for (auto& [n, _] : out.config.types) names += (names.empty() ? "" : ", ") + n;
    return "no runtime type '" + out.type + "'; configured: " + names;
  }
  out.user = ra.user;
  if (out.user.empty())
    if (const char* u = std::getenv("SKYLAB_USER"); u && *u) out.user = u;
  if (out.user.empty())
    if (passwd* pw = ::getpwuid(::geteuid())) out.user = pw->pw_name;
  if (!valid_user_name(out.user))
    return "'" + out.user +
           "' is not a Skylab user name (lower-case letters, digits, _ and -); choose one with "
           "--user";
  if (t->second.gpus > 0) {
    // Whole GPUs from this machine's inventory (the runtime service picks
    // them); a server on the same machine does not know about them (run GPU
    // batch work through the server's queue when both share GPUs).
    auto n = runtime::detect_gpus(out.config.fake_gpus).size();
    if (static_cast<std::size_t>(t->second.gpus) > n)
      return "runtime type '" + out.type + "' needs " + std::to_string(t->second.gpus) +
             " GPU(s); this machine has " + std::to_string(n);
  }
  std::string data = ra.data_dir.empty() ? "./skylab-data" : ra.data_dir;
  out.data = data;
  std::error_code ec;
  fs::create_directories(fs::path(data) / "runtime", ec);  // uids.json, shared with `skylab serve`
  if (ec) return "cannot create data directory " + data + ": " + ec.message();
  auto launcher = make_launcher(out.config, fs::absolute(data), /*die_with_parent=*/true);
  if (!launcher.ok()) return launcher.error().message;
  out.launcher = launcher.value();
  return {};
}

// Removes ANSI escape sequences (tracebacks are coloured by IPython).
std::string strip_ansi(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\x1b' && i + 1 < s.size() && s[i + 1] == '[') {
      i += 2;
      while (i < s.size() && !(s[i] >= '@' && s[i] <= '~')) ++i;
      continue;
    }
    out += s[i];
  }
  return out;
}

std::string fmt_duration(double secs) {
  long t = static_cast<long>(secs);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string fmt_secs(double secs) {
  char buf[32];
  std::snprintf(buf, sizeof buf, secs < 10 ? "%.2f s" : "%.1f s", secs);
  return buf;
}

// Printable prefix of `s` at most `width` characters (UTF-8 aware, control characters dropped).
std::string clip(const std::string& s, std::size_t width) {
  std::string out;
  std::size_t cols = 0;
  for (std::size_t i = 0; i < s.size() && cols < width; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) continue;
    if ((c & 0xc0) != 0x80) ++cols;
    out += s[i];
  }
  while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xc0) == 0xc0) out.pop_back();
  return out;
}

// Progress on stderr: a redrawn bar on a terminal, one line per cell otherwise.
class Progress : public exec::ExecutionListener {
 public:
  enum class Mode { kQuiet, kLines, kBar };
  explicit Progress(Mode mode) : mode_(mode), run_start_(Clock::now()) {}

  void on_run_start(std::size_t total) override {
    total_ = total;
    run_start_ = Clock::now();
  }
  void on_cell_start(const exec::CellInfo& cell) override {
    cell_ = cell;
    done_ = cell.ordinal - 1;
    draw();
  }
  void on_tick() override { draw(); }
  void on_cell_end(const exec::CellInfo& cell, bool ok, std::chrono::milliseconds took) override {
    done_ = cell.ordinal;
    if (mode_ == Mode::kLines) {
      std::fprintf(stderr, "[%zu/%zu] %s %s  %s\n", cell.ordinal, cell.total,
                   ok ? "ok    " : "FAILED", fmt_secs(took.count() / 1000.0).c_str(),
                   clip(cell.first_line, 60).c_str());
      std::fflush(stderr);
    } else {
      draw();
    }
  }
  //! Removes the bar (before other messages are printed).
  void clear() {
    if (mode_ == Mode::kBar && drawn_) {
      std::fputs("\r\x1b[K", stderr);
      std::fflush(stderr);
      drawn_ = false;
    }
  }
  double elapsed() const {
    return std::chrono::duration<double>(Clock::now() - run_start_).count();
  }

 private:
  void draw() {
    if (mode_ != Mode::kBar) return;
    winsize ws{};
    std::size_t width = 80;
    if (::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 20) width = ws.ws_col;
    constexpr std::size_t kBar = 20;
    std::size_t filled = total_ ? done_ * kBar / total_ : kBar;
    std::string line = "[" + std::string(filled, '#') + std::string(kBar - filled, '-') + "] ";
    line += std::to_string(cell_.ordinal) + "/" + std::to_string(total_) + "  " +
            fmt_duration(elapsed()) + "  ";
    std::string text = done_ < cell_.ordinal ? cell_.first_line : "";
    if (line.size() + 1 < width) line += clip(text, width - line.size() - 1);
    std::fprintf(stderr, "\r\x1b[K%s", line.c_str());
    std::fflush(stderr);
    drawn_ = true;
  }

  Mode mode_;
  Clock::time_point run_start_;
  std::size_t total_ = 0, done_ = 0;
  exec::CellInfo cell_;
  bool drawn_ = false;
};

// Waits for SIGINT/SIGTERM on its own thread (the signals are blocked in
// every other thread and read from a signalfd) and turns them into
// cancellation.
class SignalWatcher {
 public:
  SignalWatcher() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGINT);
    sigaddset(&set_, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set_, nullptr);  // inherited by threads started later
    sig_fd_ = ::signalfd(-1, &set_, SFD_CLOEXEC);
    stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
    thread_ = std::thread([this] { loop(); });
  }
  ~SignalWatcher() {
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(stop_fd_, &one, sizeof one);
    thread_.join();
    ::close(sig_fd_);
    ::close(stop_fd_);
  }
  void attach(exec::NotebookExecutor* ex) {
    MutexLock lock(mutex_);
    executor_ = ex;
    if (ex && count_ > 0) ex->cancel(count_ > 1);
  }
  int signal() const { return signo_; }
  const std::atomic<bool>& cancelled() const { return cancelled_; }

 private:
  void loop() {
    while (true) {
      pollfd fds[2] = {{sig_fd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
      if (::poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[1].revents) return;
      signalfd_siginfo info{};
      if (::read(sig_fd_, &info, sizeof info) != sizeof info) continue;
      int s = static_cast<int>(info.ssi_signo);
      MutexLock lock(mutex_);
      if (signo_ == 0) signo_ = s;
      ++count_;
      cancelled_ = true;
      if (count_ == 1)
        std::fputs("\nskylab run: interrupting the kernel (press Ctrl+C again to stop at once)\n",
                   stderr);
      if (executor_) executor_->cancel(count_ > 1);
    }
  }

  sigset_t set_;
  int sig_fd_ = -1;
  int stop_fd_ = -1;
  std::thread thread_;
  std::atomic<bool> cancelled_{false};
  Mutex mutex_;
  exec::NotebookExecutor* executor_ GUARDED_BY(mutex_) = nullptr;
  int count_ GUARDED_BY(mutex_) = 0;
  std::atomic<int> signo_{0};
};

std::string kernel_language(const json& nb, const kernel::KernelSpec& spec) {
  auto str = [](const json& j, const char* a, const char* b) -> std::string {
    if (j.is_object() && j.contains(a) && j[a].is_object() && j[a].contains(b) &&
        j[a][b].is_string())
      return j[a][b].get<std::string>();
    return {};
  };
  if (spec.spec.is_object() && spec.spec.contains("language") && spec.spec["language"].is_string())
    return spec.spec["language"].get<std::string>();
  std::string l = str(nb["metadata"], "kernelspec", "language");
  if (l.empty()) l = str(nb["metadata"], "language_info", "name");
  return l;
}

// The file from byte `from` on, at most its last `max_bytes`.
std::string tail_of_file(const std::string& path, std::uintmax_t from, std::size_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(from));
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.size() > max_bytes) s = "..." + s.substr(s.size() - max_bytes);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

int fail_usage(const std::string& msg) {
  std::fprintf(stderr, "skylab run: %s\n", msg.c_str());
  return 2;
}

}  // namespace

int run_main(const std::vector<std::string>& args) {
  RunArgs ra;
  if (auto o = parse(args, ra); o != ArgParser::Outcome::kRun) return ArgParser::exit_code(o);
  log::set_level(log::Level::kError);
  std::optional<RuntimeSetup> rt;
  if (!ra.runtime.empty()) {
    rt.emplace();
    if (auto e = setup_runtime(ra, *rt); !e.empty()) return fail_usage(e);
  }
  ::signal(SIGPIPE, SIG_IGN);

  auto nb_r = exec::read_notebook(ra.input);
  if (!nb_r.ok()) return fail_usage(nb_r.error().message);
  json nb = std::move(nb_r.value());

  bool to_stdout = ra.output == "-";
  std::string output = ra.output.empty() ? exec::default_output_path(ra.input) : ra.output;
  std::error_code ec;
  if (!to_stdout) {
    fs::path parent = fs::absolute(output, ec).parent_path();
    if (!fs::is_directory(parent, ec))
      return fail_usage("cannot write " + output + ": directory " + parent.string() +
                        " does not exist");
    if (fs::is_directory(output, ec))
      return fail_usage("cannot write " + output + ": is a directory");
  }

  auto specs =
      std::make_shared<kernel::KernelSpecStore>(kernel::KernelSpecStore::default_dirs(), ra.python);
  std::string kernel_name = ra.kernel;
  if (kernel_name.empty()) {
    const json& ks = nb["metadata"].contains("kernelspec") ? nb["metadata"]["kernelspec"] : json();
    if (ks.is_object() && ks.contains("name") && ks["name"].is_string())
      kernel_name = ks["name"].get<std::string>();
    if (kernel_name.empty()) kernel_name = specs->default_name();
  }
  auto spec = specs->find(kernel_name);
  if (!spec.ok()) {
    std::string names;
    for (const auto& s : specs->list()) names += (names.empty() ? "" : ", ") + s.name;
    return fail_usage("no kernel named '" + kernel_name + "'" +
                      (ra.kernel.empty() ? " (from the notebook's metadata)" : "") +
                      "; available: " + names + ". Choose one with --kernel NAME");
  }
  if (!ra.params.empty()) {
    std::string lang = kernel_language(nb, spec.value());
    if (!lang.empty() && lang != "python")
      return fail_usage("parameters (-p) need a Python kernel; '" + kernel_name + "' runs " + lang);
    exec::inject_parameters(nb, ra.params);
  }

  Progress::Mode mode = ra.quiet                  ? Progress::Mode::kQuiet
                        : ::isatty(STDERR_FILENO) ? Progress::Mode::kBar
                                                  : Progress::Mode::kLines;
  Progress progress(mode);
  SignalWatcher signals;

  // Connection files and the kernel's log live in a private temporary
  // directory, locked while this run lives; those of this user's runs that
  // were killed (their lock free) go first.
  const char* tmp_env = std::getenv("TMPDIR");
  std::string tmp_base = tmp_env && *tmp_env ? tmp_env : "/tmp";
  remove_dead_run_dirs(tmp_base);
  std::string tmpl = tmp_base + "/" + std::string(kRunDirPrefix) + "XXXXXX";
  std::vector<char> tmpl_buf(tmpl.begin(), tmpl.end());
  tmpl_buf.push_back('\0');
  if (!::mkdtemp(tmpl_buf.data())) {
    std::fprintf(stderr, "skylab run: cannot create a temporary directory: %s\n",
                 std::strerror(errno));
    return 1;
  }
  std::string runtime_dir = tmpl_buf.data();
  safe_fs::UniqueFd run_lock(::open(runtime_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (run_lock.get() >= 0) (void)::flock(run_lock.get(), LOCK_EX | LOCK_NB);
  struct RemoveDir {
    std::string path;
    ~RemoveDir() {
      std::error_code e;
      fs::remove_all(path, e);
    }
  } remove_dir{runtime_dir};

  kernel::ManagerOptions mo;
  mo.runtime_dir = runtime_dir;
  mo.working_dir = fs::absolute(ra.input, ec).parent_path().string();
  kernel::StartOptions start_options;
  start_options.launch = runtime::launch_settings("", {});  // the state file skylab.runtime reads
  std::string owner = "skylab-run";
  mo.python_path = find_installed_dir("python");  // skylab.* helpers, also outside a runtime
  // A kernel never outlives `skylab run`, even when it is SIGKILLed: a
  // sandbox's supervisor gets PR_SET_PDEATHSIG (the launcher), a plain
  // kernel gets it from this small wrapper.
  mo.command_prefix = {fs::read_symlink("/proc/self/exe", ec).string(), "sandbox-exec",
                       "--die-with-parent", "--"};
  if (rt) {
    mo.launcher = rt->launcher;
    owner = rt->user;
  }
  auto kernels = std::make_shared<kernel::KernelManager>(mo, specs);
  auto cancel_exit = [&] { return signals.signal() == SIGTERM ? 143 : 130; };

  auto kernel_started = std::chrono::system_clock::now();
  // Declared after `kernels`: destroyed (its worker joined) before the kernel manager.
  std::unique_ptr<runtime::RuntimeService> service;
  // A runtime's time is recorded in the usage ledger, as the server records
  // its own, and its GPU hours count against the user's weekly quota.
  std::shared_ptr<runtime::UsageLedger> ledger;
  bool admin = false;
  if (rt) {
    std::string why;
    ledger = open_run_ledger(rt->data, rt->config, rt->user, &admin, &why);
    if (!ledger)
      std::fprintf(stderr, "skylab run: warning: this run's use is not recorded: %s\n",
                   why.c_str());
  }
  // Declared after `service`: the ledger's last look (stop: the run's row is
  // closed) comes while the service it looks at is still there.
  struct StopLedger {
    std::shared_ptr<runtime::UsageLedger> ledger;
    ~StopLedger() {
      if (ledger) ledger->stop();
    }
  } stop_ledger{ledger};
  auto kid = rt ? acquire_runtime(kernels, specs, *rt, kernel_name, std::chrono::seconds(60),
                                  &signals.cancelled(), ledger, admin, service)
                : exec::start_kernel(*kernels, kernel_name, std::chrono::seconds(60),
                                     &signals.cancelled(), owner, start_options);
  if (!kid.ok()) {
    if (signals.cancelled()) {
      std::fputs("skylab run: interrupted while the kernel was starting; no notebook written\n",
                 stderr);
      return cancel_exit();
    }
    std::fprintf(stderr, "skylab run: kernel '%s': %s\n", kernel_name.c_str(),
                 kid.error().message.c_str());
    return 1;
  }

  // What the kernel process prints after start-up (its banner is not news).
  std::string kernel_log_path = runtime_dir + "/kernel-" + kid.value() + ".log";
  std::uintmax_t kernel_log_start = fs::file_size(kernel_log_path, ec);
  if (ec) kernel_log_start = 0;

  exec::ExecuteOptions eo;
  eo.allow_errors = ra.allow_errors;
  if (ra.timeout_s)
    eo.cell_timeout = std::chrono::milliseconds(std::llround(*ra.timeout_s * 1000.0));
  // A runtime's deadlines: the idle timeout never hits a running cell, the
  // maximum lifetime does (expiry hooks run, then the kernel is stopped).
  std::optional<runtime::LifecycleMonitor> lifecycle;
  if (rt) {
    lifecycle.emplace(kernels, rt->config);
    if (ledger) {
      runtime::RuntimeService* svc = service.get();
      auto config = rt->config;
      ledger->start([svc] { return svc->backend().list(); },
                    [config](const kernel::KernelModel& k) { return runtime_gpus(config, k); });
      lifecycle->set_deadline_cap(usage_deadline_cap(ledger, rt->config));
    }
    lifecycle->start();
  }
  exec::NotebookExecutor executor(kernels, kid.value(), eo);
  signals.attach(&executor);
  exec::RunResult result = executor.run(nb, &progress);
  signals.attach(nullptr);
  if (lifecycle) lifecycle->stop();
  progress.clear();

  std::string kernel_log;
  if (result.status == exec::RunStatus::kKernelDied)
    kernel_log = tail_of_file(kernel_log_path, kernel_log_start, 2000);

  // Cancelled (SIGINT/SIGTERM): the kernel goes first (shutdown_request,
  // then SIGKILL of it and its cgroup), so that whatever ends us next finds
  // nothing left running. Otherwise write first: the notebook is what the
  // user came for.
  bool cancelled = result.status == exec::RunStatus::kCancelled;
  if (cancelled) exec::stop_kernel(*kernels, kid.value());
  int code = 0;
  std::string write_error;
  if (to_stdout) {
    std::string text = exec::serialize_notebook(nb);
    if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() || std::fflush(stdout) != 0)
      write_error = "cannot write the notebook to stdout";
  } else if (auto st = exec::write_notebook(output, nb); !st.ok()) {
    write_error = st.error().message;
  }
  if (!cancelled) exec::stop_kernel(*kernels, kid.value());

  bool tty = ::isatty(STDERR_FILENO);
  switch (result.status) {
    case exec::RunStatus::kOk:
      break;
    case exec::RunStatus::kCellError: {
      std::fprintf(stderr, "skylab run: %s\n", result.message.c_str());
      if (result.error.is_object() && result.error["traceback"].is_array()) {
        for (const auto& line : result.error["traceback"]) {
          if (!line.is_string()) continue;
          std::string l = line.get<std::string>();
          std::fprintf(stderr, "%s\n", (tty ? l : strip_ansi(l)).c_str());
        }
      }
      code = 1;
      break;
    }
    case exec::RunStatus::kTimeout:
      std::fprintf(stderr, "skylab run: %s\n", result.message.c_str());
      code = 1;
      break;
    case exec::RunStatus::kKernelDied:
      std::fprintf(stderr, "skylab run: %s\n", result.message.c_str());
      if (rt) {
        auto lifetime = rt->config.max_lifetime(rt->config.types.at(rt->type));
        if (std::chrono::system_clock::now() >= kernel_started + lifetime)
          std::fprintf(
              stderr,
              "skylab run: the runtime reached its maximum lifetime (%llds); its expiry hooks ran "
              "before it was stopped (run the notebook again to resume from a checkpoint)\n",
              static_cast<long long>(lifetime.count()));
      }
      if (!kernel_log.empty()) std::fprintf(stderr, "kernel output:\n%s\n", kernel_log.c_str());
      code = 1;
      break;
    case exec::RunStatus::kCancelled:
      std::fprintf(stderr, "skylab run: %s\n", result.message.c_str());
      code = cancel_exit();
      break;
  }
  if (!write_error.empty()) {
    std::fprintf(stderr, "skylab run: %s\n", write_error.c_str());
    return code ? code : 1;
  }
  if (mode != Progress::Mode::kQuiet || code != 0) {
    std::fprintf(stderr, "skylab run: %zu cell%s run in %s; %s %s\n", result.cells_run,
                 result.cells_run == 1 ? "" : "s", fmt_secs(progress.elapsed()).c_str(),
                 code == 0 ? "wrote" : "partial notebook written to",
                 to_stdout ? "stdout" : output.c_str());
  }
  return code;
}

}  // namespace skylab::cli
