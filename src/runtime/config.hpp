// Runtime configuration (`skylab serve --config FILE`, TOML): deadlines,
// runtime types and their limits, GPUs. Unknown keys are errors that name
// the key, so a typo never silently falls back to a default.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace skylab::runtime {

using Duration = std::chrono::seconds;

//! "90m", "12h", "30s", "1h30m", "45" (seconds). Error for anything else.
Result<Duration> parse_duration(std::string_view text);
//! "8G", "512M", "100K", "1T", "1024" (bytes); binary units (G = 2^30).
Result<std::uint64_t> parse_size(std::string_view text);

//! A runtime's network (`network` of a runtime type).
enum class NetworkMode {
  kIsolated,  //!< own netns, outbound NAT through pasta; no host loopback, host addresses,
              //!< link-local (true, "isolated")
  kHost,      //!< the host's network namespace, explicit opt-in for trusted set-ups ("host")
  kNone,      //!< own empty netns: loopback only (false, "none")
};
//! The syscall filter of a runtime type (`seccomp`).
enum class SeccompMode {
  kDefault,     //!< the default filter (src/runtime/seccomp.hpp) ("default")
  kUnconfined,  //!< no filter ("unconfined")
};

//! Where a runtime type's kernels run (`backend`).
enum class Backend {
  kLocal,  //!< on the server's machine ("local", the default)
  kSlurm,  //!< as a Slurm job on a compute node, through `skylab agent` ("slurm")
};

//! The Slurm job of a `backend = "slurm"` runtime type. Strings are passed to
//! sbatch as they are (one argument each; never through a shell).
struct SlurmJobOptions {
  std::string partition;  //!< --partition ("" = the cluster's default)
  int gpus = 0;           //!< --gres=gpu:N (Slurm allocates them, not the server)
  std::string account, qos, constraint;
  std::vector<std::string> sbatch_options;  //!< extra arguments, e.g. "--exclusive"
};

//! One entry of [runtime_types.NAME]. Zero means "no limit" for limits.
struct RuntimeType {
  std::string name;
  std::string display_name;
  std::uint64_t memory_bytes = 0;
  double cpus = 0;
  int gpus = 0;
  int pids = 4096;
  std::uint64_t disk_bytes = 0;          //!< size limit of /content
  std::optional<Duration> idle_timeout;  //!< overrides [runtimes]
  std::optional<Duration> max_lifetime;  //!< overrides [runtimes]
  NetworkMode network = NetworkMode::kIsolated;
  SeccompMode seccomp = SeccompMode::kDefault;
  Backend backend = Backend::kLocal;
  SlurmJobOptions slurm;  //!< backend == kSlurm only (`gpus` then stays 0: Slurm allocates GPUs)
  //! Modules the runtime template imports before forking this type's kernels
  //! (`preload`; ipykernel's own stack is always imported). Local backend only.
  std::vector<std::string> preload = {"numpy", "pandas", "matplotlib", "torch"};
};

//! [slurm]: the cluster that `backend = "slurm"` runtime types run on.
struct SlurmSection {
  std::string
      conf;  //!< path of slurm.conf for Slurm's clients ("" = SLURM_CONF / the system default)
  //! The address this server's agent links listen on; compute nodes must reach
  //! it ("" = the server's host name). Ports are chosen per runtime.
  std::string listen_host;
  //! Whose cluster account a job is submitted for: "root" (the server's own;
  //! the Skylab user is named in the job's comment), "same" (sbatch --uid=<the
  //! Skylab user name>) or, with `accounts`, a table Skylab user -> account.
  std::string users = "root";
  std::map<std::string, std::string> accounts;
  std::string bin;  //!< the skylab binary on the compute nodes ("" = this server's path)
  Duration grace = std::chrono::minutes(5);  //!< added to the lifetime for the job's --time
};

struct RuntimesSection {
  Duration idle_timeout = std::chrono::minutes(90);
  Duration max_lifetime = std::chrono::hours(12);
  Duration warning = std::chrono::minutes(10);  //!< before either deadline
  Duration grace = std::chrono::seconds(10);    //!< SIGTERM to SIGKILL
  std::string sandbox = "auto";                 //!< "bwrap", "none" or "auto"
  std::string default_type = "cpu";
  int warm_pool = 0;     //!< ready spare runtimes per user and type
  int max_per_user = 0;  //!< 0: unlimited
  int max_gpu_per_user = 1;
  //! cgroup v2: the cgroup (path from the hierarchy's root, e.g.
  //! "/system.slice/skylab-runtimes.service") under which runtimes' cgroups
  //! are made, instead of below the server's own; its controllers must be
  //! enabled for children (`skylab cgroup-hold`, docs/operations.md). "": own.
  std::string cgroup_parent;
  //! `template`: start kernels of the default python3 kernelspec by forking a
  //! pre-imported template into their sandbox (runtime/template.hpp).
  bool template_on = false;
  //! `instant`: runtimes of each local CPU type kept pre-started for nobody
  //! (template = true only): a kernel forked from the template and
  //! initialised in a sandbox without any user's data, handed to the first
  //! user who connects (their Drive, caches and uid are put in then).
  int instant = 0;
};

//! [accounts]: optional self sign-up, off by default.
struct AccountsSection {
  bool signup = false;                    //!< offer /signup
  std::vector<std::string> invite_codes;  //!< non-empty: sign-up needs one of these
  std::vector<std::string>
      email_domains;  //!< non-empty: sign-up needs an e-mail address here (lower case)
};

//! [server]: what the HTTP server answers to.
struct ServerSection {
  //! Host names or addresses added to the built-in Host allow-list (the
  //! listen address and loopback names); ["*"] turns the check off.
  std::vector<std::string> allowed_hosts;
  //! PEM certificate chain and private key: HTTPS/WSS on the port ("" both: HTTP).
  std::string tls_cert, tls_key;
  //! Addresses or CIDR networks whose X-Forwarded-For/-Proto/-Host are believed.
  std::vector<std::string> trusted_proxies;
};

//! [metrics] and [log]: what operators watch (config_ops.cpp).
struct OpsSection {
  std::string metrics_token;  //!< bearer token for GET /metrics besides the admin token ("" none)
  bool log_json = false;      //!< [log] format = "json": one JSON object per line
};

//! [quotas]: weekly GPU-hour limits (calendar weeks from Monday 00:00 UTC;
//! GPU hours = hours x GPUs held). Absent everywhere: unlimited.
struct QuotasSection {
  std::optional<double> gpu_hours_per_week;  //!< the default
  std::map<std::string, double> users;       //!< [quotas.users.NAME] gpu_hours_per_week
  //! [quotas.groups.NAME]: "admins" (administrators) or "users" (everyone else).
  std::map<std::string, double> groups;
};

struct Config {
  RuntimesSection runtimes;
  QuotasSection quotas;
  AccountsSection accounts;
  ServerSection server;
  OpsSection ops;
  //! [drive]: quota = per-user bytes of Drive + caches (0: unlimited).
  struct DriveSection {
    std::uint64_t quota_bytes = 10ull << 30;
  } drive;
  std::map<std::string, RuntimeType> types;  //!< always contains runtimes.default_type
  int fake_gpus = 0;                         //!< >0: pretend this many GPUs exist
  SlurmSection slurm;

  //! A runtime type's name as asked for: `name`, or the default type's when empty.
  const std::string& type_name(const std::string& name) const {
    return name.empty() ? runtimes.default_type : name;
  }
  //! The type so named (empty: the default), or null when there is none.
  const RuntimeType* find_type(const std::string& name) const {
    auto it = types.find(type_name(name));
    return it == types.end() ? nullptr : &it->second;
  }

  //! The type's effective idle timeout and lifetime.
  Duration idle_timeout(const RuntimeType& t) const {
    return t.idle_timeout.value_or(runtimes.idle_timeout);
  }
  Duration max_lifetime(const RuntimeType& t) const {
    return t.max_lifetime.value_or(runtimes.max_lifetime);
  }
};

//! The embedded defaults: one `cpu` type, 90 min idle, 12 h lifetime.
Config default_config();
//! Parses TOML text; errors name the offending key.
Result<Config> parse_config(std::string_view text);
//! Reads and parses a file.
Result<Config> load_config(const std::string& path);

}  // namespace skylab::runtime
