// `skylab serve`: the platform server.
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/stat.h>
#include "api/api.hpp"
#include "api/channels.hpp"
#include "api/collab.hpp"
#include "api/ops.hpp"
#include "api/secrets.hpp"
#include "api/sessions.hpp"
#include "api/work_queue.hpp"
#include "auth/account_store.hpp"
#include "auth/account_watcher.hpp"
#include "auth/auth.hpp"
#include "auth/secret_store.hpp"
#include "auth/share_store.hpp"
#include "cli/args.hpp"
#include "common/ip_net.hpp"
#include "live/live.hpp"

#include <fstream>
#include <sstream>

#include "cli/runtime_setup.hpp"
#include "cli/usage_setup.hpp"
#include "common/log.hpp"
#include "common/util.hpp"
#include "drive/drive.hpp"
#include "http/host_policy.hpp"
#include "http/server.hpp"
#include "kernel/kernelspec.hpp"
#include "kernel/manager.hpp"
#include "runtime/config.hpp"
#include "runtime/gpu.hpp"
#include "runtime/launch.hpp"
#include "runtime/lifecycle.hpp"
#include "runtime/pool.hpp"
#include "runtime/sandbox.hpp"
#include "runtime/service.hpp"
#include "runtime/slurm.hpp"
#include "runtime/usage_ledger.hpp"

namespace skylab::cli {

namespace fs = std::filesystem;

namespace {

const char* kServeHelp =
    "usage: skylab serve [--host H] [--port P] [--data-dir D] [--python PATH]\n"
    "\n"
    "  --host H        address to listen on (default 127.0.0.1)\n"
    "  --port P        port (default 8888; 0 picks a free one)\n"
    "  --data-dir D    where Skylab keeps its state (default ./skylab-data)\n"
    "  --python PATH   interpreter for the built-in python3 kernel (default /usr/bin/python3)\n"
    "  --log-level L   debug, info, warn or error (default info)\n"
    "  --config FILE   runtime configuration (TOML): deadlines, runtime types, GPUs\n"
    "  --secure-cookies       clients reach the server over TLS (a proxy in front): Secure,\n"
    "                         __Host- cookies\n"
    "  --trusted-proxy IP     believe X-Forwarded-For/-Proto/-Host from this peer or network\n"
    "                         (repeatable; also [server] trusted_proxies)\n"
    "  --output-origin URL    origin (scheme://host[:port]) where the UI renders untrusted "
    "outputs\n"
    "  --web-dir DIR          the built browser app (default: web/ beside the binary, as make "
    "builds it)\n"
    "  --examples-dir DIR     the example notebooks of the gallery (default: the examples/\n"
    "                         folder installed beside the binary)\n"
    "  --keep-runtimes        on SIGTERM leave the runtimes running for the next server to\n"
    "                         reattach (systemctl restart); SIGINT still stops them\n"
    "\n"
    "environment:\n"
    "  SKYLAB_ADMIN_TOKEN  the admin API token; without it one is generated and printed\n";

struct ServeArgs {
  std::string host = "127.0.0.1";
  int port = 8888;
  std::string data_dir = "./skylab-data";
  std::string python = "/usr/bin/python3";
  std::string log_level = "info";
  std::string config;
  bool secure_cookies = false;
  bool keep_runtimes = false;
  std::vector<std::string> trusted_proxies;
  std::string output_origin;
  std::string web_dir;
  std::string examples_dir;
};

// "scheme://host[:port]" with scheme http or https and nothing after.
bool valid_origin(const std::string& o) {
  auto sep = o.find("://");
  if (sep == std::string::npos) return false;
  auto scheme = o.substr(0, sep);
  if (scheme != "http" && scheme != "https") return false;
  auto rest = o.substr(sep + 3);
  if (rest.empty()) return false;
  for (char c : rest)
    if (c == '/' || c == '?' || c == '#' || c == '@' || c == '\\' ||
        static_cast<unsigned char>(c) <= 0x20)
      return false;
  return true;
}

// The built browser app: build/web when the binary is build/skylab, or an
// installed share/skylab/web.
std::string find_web_dir() {
  std::error_code ec;
  fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  for (const auto& candidate : {exe_dir / "web", exe_dir / ".." / "share" / "skylab" / "web"})
    if (fs::is_regular_file(candidate / "index.html", ec))
      return fs::canonical(candidate, ec).string();
  return "";
}

ArgParser::Outcome parse(const std::vector<std::string>& args, ServeArgs& out) {
  ArgParser p("skylab serve", kServeHelp);
  p.option({"--host"}, &out.host)
      .option({"--port"},
              [&](const std::string& v) -> std::string {
                char* end = nullptr;
                long port = std::strtol(v.c_str(), &end, 10);
                if (v.empty() || *end || port < 0 || port > 65535)
                  return "--port must be a number from 0 to 65535";
                out.port = static_cast<int>(port);
                return "";
              })
      .option({"--data-dir"}, &out.data_dir)
      .option({"--python"}, &out.python)
      .option({"--log-level"}, &out.log_level)
      .option({"--config"}, &out.config)
      .option({"--examples-dir"}, &out.examples_dir)
      .flag({"--secure-cookies"}, &out.secure_cookies)
      .flag({"--keep-runtimes"}, &out.keep_runtimes)
      .option({"--trusted-proxy"},
              [&](const std::string& v) -> std::string {
                if (!net::valid_proxy_entry(v))
                  return "--trusted-proxy needs an IP address or a CIDR network";
                out.trusted_proxies.push_back(v);
                return "";
              })
      .option({"--web-dir"}, &out.web_dir)
      .option({"--output-origin"}, [&](const std::string& v) -> std::string {
        if (!valid_origin(v))
          return "--output-origin must be an origin such as https://outputs.example.org";
        out.output_origin = v;
        return "";
      });
  return p.parse(args);
}

}  // namespace

int serve_main(const std::vector<std::string>& args) {
  ServeArgs sa;
  if (auto o = parse(args, sa); o != ArgParser::Outcome::kRun) return ArgParser::exit_code(o);
  if (sa.log_level == "debug")
    log::set_level(log::Level::kDebug);
  else if (sa.log_level == "warn")
    log::set_level(log::Level::kWarn);
  else if (sa.log_level == "error")
    log::set_level(log::Level::kError);

  ::signal(SIGPIPE, SIG_IGN);
  std::error_code ec;
  fs::create_directories(sa.data_dir, ec);
  if (ec) {
    std::fprintf(stderr, "skylab serve: cannot create data directory %s: %s\n", sa.data_dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  fs::path data = fs::absolute(sa.data_dir);

  std::string token;
  bool generated = false;
  if (const char* t = std::getenv("SKYLAB_ADMIN_TOKEN"); t && *t) {
    token = t;
  } else {
    token = util::random_hex(24);
    generated = true;
  }

  auto specs =
      std::make_shared<kernel::KernelSpecStore>(kernel::KernelSpecStore::default_dirs(), sa.python);
  kernel::ManagerOptions mo;
  mo.runtime_dir = (data / "runtime").string();
  mo.working_dir = fs::current_path(ec).string();
  auto runtime_config =
      sa.config.empty() ? runtime::default_config() : runtime::load_config(sa.config);
  if (!runtime_config.ok()) {
    std::fprintf(stderr, "skylab serve: %s\n", runtime_config.error().message.c_str());
    return 2;
  }
  if (runtime_config->ops.log_json) log::set_format(log::Format::kJson);
  if (auto launcher = make_launcher(runtime_config.value(), data); !launcher.ok()) {
    std::fprintf(stderr, "skylab serve: %s\n", launcher.error().message.c_str());
    return 2;
  } else {
    mo.launcher = launcher.value();
  }
  // Runtime types with backend = "slurm": their kernels are links to agents in Slurm jobs.
  auto sandbox_launcher = mo.launcher;
  std::shared_ptr<runtime::SlurmLauncher> slurm_launcher;
  std::shared_ptr<runtime::SlurmContext> slurm_ctx;
  if (runtime::uses_slurm(runtime_config.value())) {
    slurm_ctx = std::make_shared<runtime::SlurmContext>();
    slurm_ctx->config = std::make_shared<const runtime::Config>(runtime_config.value());
    slurm_ctx->jobs_dir = data / "slurm" / "jobs";
    if (!sa.config.empty()) {
      std::ifstream in(sa.config);
      std::stringstream text;
      text << in.rdbuf();
      slurm_ctx->config_text = text.str();
    }
    slurm_ctx->data_dir = fs::absolute(data, ec).string();
    slurm_ctx->self_exe = fs::read_symlink("/proc/self/exe", ec).string();
    std::error_code ec2;
    fs::create_directories(data / "slurm", ec2);
    ::chmod((data / "slurm").c_str(), 0700);
    slurm_launcher = std::make_shared<runtime::SlurmLauncher>(mo.launcher, slurm_ctx);
    mo.launcher = slurm_launcher;
  }
  mo.python_path = find_installed_dir("python");
  auto gpus =
      std::make_shared<runtime::GpuAllocator>(runtime::detect_gpus(runtime_config->fake_gpus));
  if (!gpus->gpus().empty())
    log::info(std::to_string(gpus->gpus().size()) + " GPU(s) available for runtimes");
  mo.on_removed = [gpus](const std::string& id) { gpus->release(id); };
  // The runtime state file exists before the kernel can read it.
  mo.on_started = [cfg = runtime_config.value()](const kernel::KernelModel& k) {
    runtime::write_initial_state(cfg, k, std::chrono::system_clock::now());
  };
  auto kernels = std::make_shared<kernel::KernelManager>(mo, specs);
  {
    std::set<std::string> adopted;
    for (auto& k : kernels->reattach()) {
      gpus->claim(k.id, runtime::gpus_of(k));
      adopted.insert(k.id);
    }
    // Leftovers without a usable record (a crash between start and record):
    // directories, /content mounts, cgroups.
    if (mo.launcher)
      for (auto& id : mo.launcher->prepared_ids())
        if (!adopted.count(id)) {
          log::info("runtime " + id + ": left over from a previous server; cleaning up");
          mo.launcher->cleanup(id);
        }
    // Jobs of runtimes this server has no record of (a crash between sbatch and the record).
    if (slurm_launcher) slurm_launcher->cancel_orphans(adopted);
  }
  runtime::LifecycleMonitor lifecycle(kernels, runtime_config.value());

  drive::DriveOptions drive_options;
  drive_options.files_dir = (data / "drive").string();
  drive_options.database = (data / "drive.db").string();
  drive_options.cache_dir = (data / "cache").string();
  drive_options.quota_bytes = runtime_config.value().drive.quota_bytes;
  if (drive_options.quota_bytes > 0 && (::geteuid() != 0 || !mo.launcher))
    log::warn("drive quota (" + std::to_string(drive_options.quota_bytes >> 20) +
              " MiB per user) is enforced on the server's writes only: runtimes can write past it "
              "(per-user volumes need root and the bubblewrap sandbox)");
  auto user_drive = drive::Drive::open(drive_options);
  if (!user_drive.ok()) {
    std::fprintf(stderr, "skylab serve: %s\n", user_drive.error().message.c_str());
    return 1;
  }
  // After the Drive: a data directory of a newer Skylab is refused before
  // anything here migrates skylab.db.
  // Runtime and GPU hours per user (survive restarts), GPU quotas: admission
  // refuses past them, the lifecycle warns and ends GPU runtimes at them.
  auto ledger = runtime::UsageLedger::open((data / "skylab.db").string(), runtime_config->quotas);
  if (!ledger.ok()) {
    std::fprintf(stderr, "skylab serve: %s\n", ledger.error().message.c_str());
    return 1;
  }
  lifecycle.set_deadline_cap(usage_deadline_cap(ledger.value(), runtime_config.value()));
  lifecycle.start();
  user_drive.value()->start_maintenance();

  auth::AccountStoreOptions account_options;
  account_options.path = (data / "skylab.db").string();
  auto accounts = auth::AccountStore::open(account_options);
  if (!accounts.ok()) {
    std::fprintf(stderr, "skylab serve: %s\n", accounts.error().message.c_str());
    return 1;
  }

  auto ctx = std::make_shared<api::Context>();
  auto shares = auth::ShareStore::open(account_options.path);
  if (!shares.ok()) {
    std::fprintf(stderr, "skylab serve: %s\n", shares.error().message.c_str());
    return 1;
  }
  // Users' secrets: sealed in skylab.db under a key only root reads.
  auto secrets = auth::SecretStore::open(account_options.path, (data / "secrets.key").string());
  if (!secrets.ok()) {
    std::fprintf(stderr, "skylab serve: %s\n", secrets.error().message.c_str());
    return 1;
  }
  ctx->secrets = secrets.value();

  // Shares from before item ids: bound to the item at their path now, or
  // dropped when nothing is there (once; later starts find none).
  {
    auto dropped = shares.value()->migrate_items(
        [&](const std::string& owner, const std::string& path) -> std::optional<std::string> {
          auth::Identity who;
          who.username = owner;
          auto id = user_drive.value()->item_id(who, path, true);
          if (!id.ok()) return std::nullopt;
          return id.value();
        });
    if (!dropped.ok())
      log::warn("shares: migration to item ids failed: " + dropped.error().message);
    else if (dropped.value() > 0)
      log::info("shares: dropped " + std::to_string(dropped.value()) +
                " share(s) of items that no longer exist");
  }
  ctx->accounts = accounts.value();
  ctx->is_admin_token = [admin = auth::AdminTokenAuthenticator(token)](std::string_view t) {
    return admin.matches(t);
  };
  ctx->shares = shares.value();
  ctx->output_origin = sa.output_origin;
  ctx->web_dir = sa.web_dir.empty() ? find_web_dir() : sa.web_dir;
  if (ctx->web_dir.empty())
    log::warn("the browser app is not built (no web/index.html beside the binary); run make");
  ctx->examples_dir = sa.examples_dir.empty() ? find_installed_dir("examples")
                                              : fs::absolute(sa.examples_dir).string();
  ctx->kernels = kernels;
  ctx->runtime_config = std::make_shared<runtime::Config>(runtime_config.value());
  ctx->runtimes_dir = (data / "runtimes").string();
  auto pool = std::make_shared<runtime::WarmPool>(
      kernels, runtime_config.value(), [accounts = accounts.value()](const std::string& user) {
        auto u = accounts->find_user(user);
        return !(u.ok() && u->disabled);  // the admin token's "admin" has no account
      });
  std::shared_ptr<runtime::WarmPool> active_pool;
  auto sandbox = std::dynamic_pointer_cast<runtime::SandboxLauncher>(sandbox_launcher);
  if (pool->instant() > 0 && sandbox && sandbox->templates()) {
    pool->set_instant_source(
        [sandbox](const std::string& type) { return sandbox->instant_source(type); });
    log::info("instant pool: " + std::to_string(pool->instant()) +
              " runtime(s) per CPU type started for anyone");
  } else if (pool->instant() > 0) {
    log::warn(
        "instant pool: off (runtimes for anyone need [runtimes] template = true, root, "
        "bubblewrap and cgroups)");
  }
  if (pool->size() > 0 || pool->instant() > 0) {
    active_pool = pool;
    pool->start();
    if (pool->size() > 0)
      log::info("warm pool: " + std::to_string(pool->size()) +
                " spare runtime(s) per user and type");
  }
  // The one way to a kernel: every API route and the jobs go through it.
  auto backend = runtime::make_local_backend(kernels, specs, active_pool, mo.launcher);
  runtime::ServiceOptions service_options;
  if (slurm_ctx) {
    backend = runtime::make_slurm_backend(backend, kernels, slurm_ctx);
    // A queued Slurm job holds a worker while it waits for a machine.
    service_options.threads = 128;
    service_options.max_starting = 256;
  }
  ctx->runtimes = std::make_shared<runtime::RuntimeService>(backend, ctx->runtime_config, gpus,
                                                            active_pool, service_options);
  start_usage(*ctx, ledger.value(), account_options.path);
  ctx->specs = specs;
  ctx->drive = user_drive.value();
  // Moving a Drive onto its quota volume waits for the Drive's writes to it.
  if (sandbox)  // terminals: a shell inside a runtime's sandbox (api/terminals.hpp)
    ctx->terminal_command = [sandbox](const kernel::KernelModel& k) {
      return sandbox->enter_command(
          k.id, k.owner, k.runtime_type, runtime::gpus_of(k),
          {"/bin/bash", "--rcfile", "/opt/skylab/python/skylab/bashrc", "-i"});
    };
  if (sandbox) {
    sandbox->set_drive_lock(
        [d = user_drive.value()](const std::string& user, const std::function<Status()>& work) {
          return d->exclusive(user, work);
        });
    sandbox->set_runtimes_running([kernels](const std::string& user, const std::string& except) {
      for (auto& k : kernels->list(true))
        if (k.owner == user && k.id != except) return true;
      return false;
    });
  }
  // The API's shared objects, all built here and stopped below in this order.
  ctx->work = std::make_shared<WorkQueue>(4, 1024);
  ctx->logins = std::make_shared<WorkQueue>(2, 64);
  ctx->sessions = std::make_shared<api::SessionStore>((data / "sessions.json").string());
  if (ctx->secrets) {
    ctx->secret_broker =
        std::make_shared<api::SecretsBroker>(kernels, ctx->secrets, ctx->sessions, ctx->work);
    // Kernels reattached after a restart may be running a cell that asks
    // before any client speaks to them again.
    for (auto& s : ctx->sessions->list()) ctx->secret_broker->watch(s.kernel_id);
  }
  {
    // Notebooks a kernel works on are held by the server: outputs recorded
    // into them, saved to the Drive (state of running cells in the data dir).
    live::LiveOptions lo;
    lo.state_file = (data / "live.json").string();
    lo.journal_base = data.string();  // live/journal: the co-editing write-ahead journal
    std::weak_ptr<api::SessionStore> sessions = ctx->sessions;
    ctx->live = std::make_shared<live::LiveNotebooks>(
        ctx->drive, kernels,
        [sessions](const std::string& kernel_id) -> std::optional<live::Binding> {
          auto store = sessions.lock();
          if (!store) return std::nullopt;
          for (auto& s : store->list())
            if (s.kernel_id == kernel_id && s.type == "notebook")
              return live::Binding{s.owner, s.path};
          return std::nullopt;
        },
        lo);
  }
  ctx->channels = api::make_channels(kernels, ctx->live, ctx->secret_broker);
  // After the secret broker: jobs reloaded here hand it their kernels' notebooks.
  ctx->jobs = api::make_job_runner(*ctx, (data / "jobs").string());

  http::ServerOptions so;
  so.host = sa.host;
  so.port = static_cast<std::uint16_t>(sa.port);
  so.secure_cookies = sa.secure_cookies;
  so.trusted_proxies = sa.trusted_proxies;
  for (const auto& p : runtime_config->server.trusted_proxies) so.trusted_proxies.push_back(p);
  so.tls_cert = runtime_config->server.tls_cert;
  so.tls_key = runtime_config->server.tls_key;
  so.allowed_hosts = http::default_allowed_hosts(sa.host, runtime_config->server.allowed_hosts);
  {
    std::string names;
    for (const auto& h : so.allowed_hosts) names += (names.empty() ? "" : ", ") + h;
    log::info("answering requests for Host: " + names + " (add names with [server] allowed_hosts)");
  }
  auto authenticator = std::make_shared<auth::AccountAuthenticator>(accounts.value(), token);
  auto router = std::make_shared<http::Router>();  // filled below, before the server listens
  http::Server server(so, router, authenticator);
  // Sessions and tokens that go away (sign-out, password change, disable,
  // revoke; also from `skylab user` in another process) take their open
  // WebSockets with them.
  auth::AccountWatcher watcher(accounts.value(), [&server, authenticator] {
    auto n = server.close_websockets_if(
        [&](const auth::Identity& who) { return !authenticator->still_valid(who); },
        "credentials revoked");
    if (n > 0)
      log::info("closed " + std::to_string(n) + " WebSocket(s) whose credentials were revoked");
    api::recheck_collab_access();  // an owner disabled ends the shares of their notebooks
  });
  // The handlers that call it have all returned before `watcher` goes (the
  // server and the work queues are stopped first).
  ctx->accounts_changed = [&watcher] { watcher.poke(); };

  api::add_routes(*router, ctx);
  api::add_ops_routes(*router, ctx,
                      {token, runtime_config->ops.metrics_token, account_options.path,
                       std::chrono::milliseconds(3000), gpus});
  ctx->live->start();  // after reattach: recordings of running cells continue

  auto port = server.listen();
  if (!port.ok()) {
    std::fprintf(stderr, "skylab serve: %s\n", port.error().message.c_str());
    return 1;
  }
  std::string shown_host = sa.host == "0.0.0.0" ? "127.0.0.1" : sa.host;
  if (shown_host.find(':') != std::string::npos) shown_host = "[" + shown_host + "]";
  std::string url = std::string(server.tls() ? "https://" : "http://") + shown_host + ":" +
                    std::to_string(port.value()) + "/";
  log::info("data directory " + data.string());
  std::cout << "Skylab is listening on " << url << std::endl;
  if (generated) std::cout << "Log in with this URL: " << url << "?token=" << token << std::endl;
  if (auto users = accounts.value()->list_users(); users.ok() && users->empty())
    log::info(
        "no user accounts yet; create one with: skylab user add NAME --admin --password-stdin "
        "--data-dir " +
        data.string());

  std::thread stopper;
  std::set<std::string> busy_owners;
  server.run([&](int signo) {
    log::info(std::string("received ") + (signo == SIGTERM ? "SIGTERM" : "SIGINT") +
              ", shutting down");
    stopper = std::thread([&, signo] {
      ledger.value()->stop();  // before the runtimes are let go: they run on
      lifecycle.stop();
      pool->stop();
      ctx->channels->close_all();
      // Background work: sign-ins nobody waits for any more are dropped, jobs
      // cancelled, open notebooks saved a last time, runtime starts ended,
      // then the disk work the clients were promised runs out.
      ctx->logins->stop(WorkQueue::Pending::kDrop);
      api::stop_job_runner(*ctx->jobs);
      ctx->live->stop();
      ctx->runtimes->stop();
      ctx->work->stop();
      // Their owners' volumes stay mounted: runtimes may run on, and the live
      // documents are saved into them on the way down.
      auto running = kernels->list();
      for (auto& k : running) busy_owners.insert(k.owner);
      if (sa.keep_runtimes && signo == SIGTERM) {
        // A restart (systemctl restart, an upgrade): runtimes run on and the
        // next server reattaches them.
        log::info("leaving " + std::to_string(running.size()) +
                  " runtime(s) running for the next server");
        kernels->detach_all();
      } else {
        kernels->shutdown_all();
      }
      // After the runtimes: a template reaps the forked kernels that ended.
      if (sandbox) sandbox->stop_templates();
      server.stop();
    });
  });
  if (stopper.joinable()) stopper.join();
  // Volumes no runtime holds are unmounted; the next server mounts them again.
  if (sandbox)
    sandbox->volumes().release([&](const std::string& u) { return busy_owners.count(u) > 0; });
  watcher.stop();
  pool->stop();
  kernels->shutdown_all();
  log::info("stopped");
  return 0;
}

}  // namespace skylab::cli
