// `skylab slurm-link` (server side) and `skylab agent` (inside the Slurm job):
// the two ends of a Slurm runtime's channel (src/runtime/slurm_link.hpp).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <sodium.h>
#include <nlohmann/json.hpp>

#include "cli/runtime_setup.hpp"
#include "common/json_limits.hpp"
#include "common/safe_fs.hpp"
#include "common/subprocess.hpp"
#include "common/util.hpp"
#include "runtime/config.hpp"
#include "runtime/sandbox.hpp"
#include "runtime/slurm.hpp"
#include "runtime/slurm_link.hpp"

extern char** environ;

namespace skylab::cli {

namespace fs = std::filesystem;
using runtime::FrameKind;
using runtime::SecureChannel;

namespace {

std::string read_file(const fs::path& p, std::size_t cap = 1 << 20) {
  return util::read_file_prefix(p.string(), cap);
}

// Best effort: the server notices a missing file (and times out).
void write_file(const fs::path& p, const std::string& data) {
  (void)safe_fs::write_file(p.string(), data, 0600, false);
}

std::string arg(const std::vector<std::string>& args, const std::string& name) {
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == name) return args[i + 1];
  return {};
}

std::vector<std::string> zrecv_multipart(void* sock) {
  std::vector<std::string> parts;
  int more = 0;
  do {
    zmq_msg_t m;
    zmq_msg_init(&m);
    if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
      zmq_msg_close(&m);
      return parts;
    }
    parts.emplace_back(static_cast<const char*>(zmq_msg_data(&m)), zmq_msg_size(&m));
    more = zmq_msg_more(&m);
    zmq_msg_close(&m);
  } while (more);
  return parts;
}

void zsend_multipart(void* sock, const std::vector<std::string>& parts) {
  for (std::size_t i = 0; i < parts.size(); ++i)
    zmq_send(sock, parts[i].data(), parts[i].size(),
             (i + 1 < parts.size() ? ZMQ_SNDMORE : 0) | ZMQ_DONTWAIT);
}

std::string endpoint(const nlohmann::json& c, const char* port_key) {
  std::string transport = c.value("transport", "tcp"), ip = c.value("ip", "127.0.0.1");
  int port = c.value(port_key, 0);
  if (transport == "ipc") return "ipc://" + ip + "-" + std::to_string(port);
  return "tcp://" + ip + ":" + std::to_string(port);
}

// A peer that vanished without closing (a failed node, a cut network) is
// noticed within about half a minute.
void keepalive(int fd) {
  int on = 1, idle = 10, intvl = 5, cnt = 3;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

constexpr const char* kPortKeys[4] = {"shell_port", "iopub_port", "stdin_port", "control_port"};

std::atomic<int> g_signal{0};
void on_signal(int sig) {
  g_signal = sig;
}

}  // namespace

// ---- the server's end ----

int slurm_link_main(const std::vector<std::string>& args) {
  fs::path dir = arg(args, "--job-dir");
  std::string cf = arg(args, "--connection-file");
  if (dir.empty() || cf.empty()) {
    std::fprintf(stderr, "usage: skylab slurm-link --job-dir DIR --connection-file FILE\n");
    return 2;
  }
  if (sodium_init() < 0) return 1;
  std::string secret = read_file(dir / "secret", 64);
  auto conn = json_limits::parse_or_discarded(read_file(cf));
  auto launch = json_limits::parse_or_discarded(read_file(dir / "launch.json"));
  if (secret.size() != 32 || conn.is_discarded() || launch.is_discarded()) {
    std::fprintf(stderr, "slurm-link: unreadable job directory or connection file\n");
    return 1;
  }
  void* ctx = zmq_ctx_new();
  void* socks[5];
  int types[5] = {ZMQ_ROUTER, ZMQ_PUB, ZMQ_ROUTER, ZMQ_ROUTER, ZMQ_REP};
  const char* keys[5] = {"shell_port", "iopub_port", "stdin_port", "control_port", "hb_port"};
  for (int i = 0; i < 5; ++i) {
    socks[i] = zmq_socket(ctx, types[i]);
    int linger = 0;
    zmq_setsockopt(socks[i], ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(socks[i], endpoint(conn, keys[i]).c_str()) != 0) {
      std::fprintf(stderr, "slurm-link: cannot bind %s: %s\n", endpoint(conn, keys[i]).c_str(),
                   zmq_strerror(zmq_errno()));
      return 1;
    }
  }
  // The one port the agent connects to.
  std::string host = launch.value("listen_host", "");
  if (host.empty()) {
    char name[256] = {};
    ::gethostname(name, sizeof name - 1);
    host = name;
  }
  addrinfo hints{}, *ai = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  if (::getaddrinfo(host.c_str(), "0", &hints, &ai) != 0 || !ai) {
    std::fprintf(stderr, "slurm-link: cannot resolve %s\n", host.c_str());
    return 1;
  }
  int lfd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0 || ::bind(lfd, ai->ai_addr, ai->ai_addrlen) != 0 || ::listen(lfd, 4) != 0) {
    std::fprintf(stderr, "slurm-link: cannot listen on %s: %s\n", host.c_str(),
                 std::strerror(errno));
    return 1;
  }
  ::freeaddrinfo(ai);
  sockaddr_storage sa{};
  socklen_t sl = sizeof sa;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &sl);
  int port = sa.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&sa)->sin_port)
                                     : ntohs(reinterpret_cast<sockaddr_in6*>(&sa)->sin6_port);
  write_file(dir / "endpoint", host + " " + std::to_string(port) + "\n");

  std::unique_ptr<SecureChannel> chan;
  int cfd = -1;
  std::string ident[4];
  auto finish = [&](const std::string& reason, int rc) {
    if (!fs::exists(dir / "exit_reason")) write_file(dir / "exit_reason", reason);
    std::fprintf(stderr, "slurm-link: %s\n", reason.c_str());
    return rc;
  };
  // Submit the job (again on every restart: a new link is a new job). The
  // environment carries SLURM_CONF.
  {
    auto argv = json_limits::parse_or_discarded(read_file(dir / "sbatch.json"));
    if (!argv.is_array() || argv.empty()) return finish("no job description in " + dir.string(), 1);
    runtime::SlurmContext sc;
    sc.config = std::make_shared<const runtime::Config>(runtime::default_config());
    auto out = runtime::run_slurm(sc, argv.get<std::vector<std::string>>());
    if (!out.ok()) return finish("the cluster refused the job: " + out.error().message, 1);
    std::string job = out.value();
    job = job.substr(0, job.find_first_of(";\n"));
    if (job.empty() || job.find_first_not_of("0123456789") != std::string::npos)
      return finish("sbatch printed no job id", 1);
    write_file(dir / "jobid", job);
    std::fprintf(stderr, "slurm-link: job %s submitted; waiting for its agent on %s:%d\n",
                 job.c_str(), host.c_str(), port);
  }
  for (;;) {
    zmq_pollitem_t items[6];
    for (int i = 0; i < 5; ++i) items[i] = {socks[i], 0, ZMQ_POLLIN, 0};
    items[1].events = 0;  // PUB: nothing to read
    items[5] = {nullptr, chan ? cfd : lfd, ZMQ_POLLIN, 0};
    if (zmq_poll(items, 6, 1000) < 0 && zmq_errno() != EINTR) return 1;
    if (items[4].revents & ZMQ_POLLIN) {  // heartbeat: the link answers while it lives
      auto p = zrecv_multipart(socks[4]);
      zsend_multipart(socks[4], p.empty() ? std::vector<std::string>{""} : p);
    }
    for (int ch : {0, 2, 3}) {
      if (!(items[ch].revents & ZMQ_POLLIN)) continue;
      auto parts = zrecv_multipart(socks[ch]);
      if (parts.size() < 2) continue;
      ident[ch] = parts[0];
      parts.erase(parts.begin());
      if (chan && !chan->send(runtime::encode_zmq(ch, parts)).ok())
        return finish("lost the connection to the runtime's agent", 3);
    }
    if (!(items[5].revents & ZMQ_POLLIN)) continue;
    if (!chan) {
      int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      timeval tv{10, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      unsigned char challenge[32];
      randombytes_buf(challenge, sizeof challenge);
      auto c = std::make_unique<SecureChannel>(fd, secret, false);
      bool ok = ::write(fd, challenge, sizeof challenge) == static_cast<ssize_t>(sizeof challenge);
      // Before authentication, nothing larger than the hello is read.
      auto hello = ok ? c->recv(64) : Result<std::string>(Error::unavailable("write failed"));
      ok = hello.ok() && hello->size() == 33 &&
           hello.value()[0] == static_cast<char>(FrameKind::kHello) &&
           sodium_memcmp(hello->data() + 1, challenge, 32) == 0;
      if (!ok) {
        std::fprintf(stderr, "slurm-link: refused a connection that failed authentication\n");
        ::close(fd);
        continue;
      }
      nlohmann::json l = launch;
      l["key"] = conn.value("key", "");
      l["signature_scheme"] = conn.value("signature_scheme", "hmac-sha256");
      l["kernel_name"] = conn.value("kernel_name", "");
      if (!c->send(std::string(1, static_cast<char>(FrameKind::kLaunch)) + l.dump()).ok()) {
        ::close(fd);
        continue;
      }
      timeval none{0, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      keepalive(fd);
      ::close(lfd);  // one agent per runtime
      lfd = -1;
      cfd = fd;
      chan = std::move(c);
      continue;
    }
    auto f = chan->recv();
    if (!f.ok())
      return finish("lost the connection to the runtime's agent (" + f.error().message + ")", 3);
    const std::string& body = f.value();
    if (body.empty()) continue;
    switch (static_cast<FrameKind>(body[0])) {
      case FrameKind::kStarted:
        write_file(dir / "connected", body.substr(1));
        break;
      case FrameKind::kZmq: {
        auto m = runtime::decode_zmq(body);
        if (!m.ok()) return finish("bad frame from the agent", 3);
        auto [ch, parts] = std::move(m.value());
        // The kernel may speak first on stdin (input_request, a secret
        // request): the server's stdin socket has its shell socket's routing
        // id (KernelManager sets both), so that one routes it.
        const std::string& to = ch == 2 && ident[2].empty() ? ident[0] : ident[ch];
        if (ch == 1) {
          zsend_multipart(socks[1], parts);
        } else if (!to.empty()) {
          parts.insert(parts.begin(), to);
          zsend_multipart(socks[ch], parts);
        }
        break;
      }
      case FrameKind::kUsage:
        if (body.size() < 4096) write_file(dir / "usage.json", body.substr(1));
        break;
      case FrameKind::kExit:
        return finish(body.substr(1, 2000), 0);
      default:
        break;
    }
  }
}

// ---- the compute node's end ----

int agent_main(const std::vector<std::string>& args) {
  fs::path dir = arg(args, "--job-dir");
  if (dir.empty()) {
    std::fprintf(stderr, "usage: skylab agent --job-dir DIR\n");
    return 2;
  }
  if (sodium_init() < 0) return 1;
  // Run as root (directly, or through the documented sudo rule): only root
  // reads the secret; the kernel, under the user's uid in its sandbox, never can.
  std::string job_id = read_file(dir / "jobid", 64);
  job_id = job_id.substr(0, job_id.find_first_of(" \n"));
  if (const char* sudo_uid = std::getenv("SUDO_UID")) {
    // Through sudo: only for the job of this runtime, running as the invoking
    // account on this node (sudo's SUDO_UID is trustworthy; SLURM_* are not).
    runtime::SlurmContext sc;
    sc.config = std::make_shared<const runtime::Config>(runtime::default_config());
    auto q = job_id.empty()
                 ? Result<std::string>(Error::not_found("no job id"))
                 : runtime::run_slurm(sc, {"squeue", "-h", "-j", job_id, "-o", "%U %T %N"});
    char node[256] = {};
    ::gethostname(node, sizeof node - 1);
    std::string host(node);
    host = host.substr(0, host.find('.'));
    std::string expect = std::string(sudo_uid) + " RUNNING ";
    if (!q.ok() || q->rfind(expect, 0) != 0 || q->find(host) == std::string::npos) {
      std::fprintf(stderr, "skylab agent: %s is not a running job of uid %s on %s\n", dir.c_str(),
                   sudo_uid, node);
      return 1;
    }
  }
  std::string secret = read_file(dir / "secret", 64);
  std::string ep = read_file(dir / "endpoint", 512);
  auto sp = ep.find(' ');
  if (secret.size() != 32 || sp == std::string::npos) {
    std::fprintf(stderr, "skylab agent: cannot read the runtime's secret or endpoint in %s\n",
                 dir.c_str());
    return 1;
  }
  std::string host = ep.substr(0, sp), port = ep.substr(sp + 1);
  while (!port.empty() && (port.back() == '\n' || port.back() == ' ')) port.pop_back();
  addrinfo hints{}, *ai = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (::getaddrinfo(host.c_str(), port.c_str(), &hints, &ai) != 0 || !ai) {
    std::fprintf(stderr, "skylab agent: cannot resolve %s\n", host.c_str());
    return 1;
  }
  int fd = ::socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || ::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    std::fprintf(stderr, "skylab agent: cannot connect to %s:%s: %s\n", host.c_str(), port.c_str(),
                 std::strerror(errno));
    return 1;
  }
  ::freeaddrinfo(ai);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  keepalive(fd);
  SecureChannel chan(fd, secret, true);
  sodium_memzero(secret.data(), secret.size());
  unsigned char challenge[32];
  std::size_t got = 0;
  while (got < sizeof challenge) {
    ssize_t r = ::read(fd, challenge + got, sizeof challenge - got);
    if (r <= 0) return 1;
    got += static_cast<std::size_t>(r);
  }
  if (!chan.send(std::string(1, static_cast<char>(FrameKind::kHello)) +
                 std::string(reinterpret_cast<char*>(challenge), sizeof challenge))
           .ok())
    return 1;
  auto lf = chan.recv();
  if (!lf.ok() || lf->empty() || lf.value()[0] != static_cast<char>(FrameKind::kLaunch)) {
    std::fprintf(stderr, "skylab agent: the server refused this agent\n");
    return 1;
  }
  auto launch = json_limits::parse_or_discarded(lf->substr(1));
  if (launch.is_discarded()) return 1;
  auto exit_with = [&](const std::string& reason, int rc) {
    (void)chan.send(std::string(1, static_cast<char>(FrameKind::kExit)) + reason);
    std::fprintf(stderr, "skylab agent: %s\n", reason.c_str());
    return rc;
  };
  std::string id = launch.value("id", "");
  std::string config_text = launch.value("config", "");
  auto config =
      config_text.empty() ? runtime::default_config() : runtime::parse_config(config_text);
  if (!config.ok())
    return exit_with("the agent cannot read the server's config: " + config.error().message, 1);
  // die_with_parent: an agent that dies (SIGKILL, a crashed node daemon) takes its kernel along.
  auto launcher = make_launcher(config.value(), launch.value("data_dir", ""), true);
  if (!launcher.ok())
    return exit_with("the agent cannot sandbox the runtime: " + launcher.error().message, 1);
  auto sandbox = launcher.value();
  // "auto" falls back to plain processes where bubblewrap cannot run: on a
  // compute node that would be a kernel running as root. Only an explicit
  // sandbox = "none" (the operator's choice) runs without one.
  if (!sandbox && config->runtimes.sandbox != "none")
    return exit_with(
        "this compute node cannot sandbox runtimes (bubblewrap unusable); refusing to run the "
        "kernel",
        1);
  if (auto sb = std::dynamic_pointer_cast<runtime::SandboxLauncher>(sandbox)) {
    long long want = launch.value("uid", -1LL);
    auto uid = sb->uid_for(launch.value("owner", ""));
    if (want < 0 || !uid.ok() || static_cast<long long>(uid.value()) != want)
      return exit_with(
          "the compute node's runtime uid for " + launch.value("owner", std::string()) +
              " differs from the server's (is the data directory's runtime/uids.json shared?)",
          1);
  }

  // The kernel's connection, local to this node: ipc in a per-runtime directory.
  fs::path local = fs::path("/run/skylab-agent") / id;
  std::error_code ec;
  fs::create_directories(local.parent_path(), ec);
  ::chmod(local.parent_path().c_str(), 0711);
  fs::remove_all(local, ec);
  if (::mkdir(local.c_str(), 0700) != 0)
    return exit_with("the agent cannot create " + local.string(), 1);
  nlohmann::json conn = {{"transport", "ipc"},
                         {"ip", (local / "k").string()},
                         {"shell_port", 1},
                         {"iopub_port", 2},
                         {"stdin_port", 3},
                         {"control_port", 4},
                         {"hb_port", 5},
                         {"key", launch.value("key", "")},
                         {"signature_scheme", launch.value("signature_scheme", "hmac-sha256")},
                         {"kernel_name", launch.value("kernel_name", "")}};
  fs::path cf = local / "connection.json";
  write_file(cf, conn.dump());
  std::string server_cf = launch.value("connection_file", "");
  kernel::LaunchSpec ls;
  ls.kernel_id = id;
  ls.owner = launch.value("owner", "");
  ls.runtime_type = launch.value("type", "");
  for (auto a : launch.value("argv", std::vector<std::string>{})) {
    if (!server_cf.empty())
      for (std::size_t pos; (pos = a.find(server_cf)) != std::string::npos;)
        a.replace(pos, server_cf.size(), cf.string());
    ls.argv.push_back(std::move(a));
  }
  ls.env = launch.value("env", std::map<std::string, std::string>{});
  for (char** e = environ; *e; ++e) {
    std::string kv(*e);
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    std::string k = kv.substr(0, eq);
    if (k == "SLURM_JOB_ID" || k == "SLURM_JOB_NODELIST" || k == "SLURM_JOB_PARTITION" ||
        k == "SLURM_CLUSTER_NAME" || k == "SLURM_JOB_GPUS" || k == "SLURM_CPUS_PER_TASK")
      ls.env[k] = kv.substr(eq + 1);
  }
  if (!ls.env.count("SLURM_JOB_ID") && !job_id.empty())
    ls.env["SLURM_JOB_ID"] = job_id;  // sudo dropped it
  // The GPUs Slurm allocated to the job (host indices): the sandbox shows exactly these.
  if (auto g = ls.env.find("SLURM_JOB_GPUS"); g != ls.env.end()) {
    std::string cur;
    for (char ch : g->second + ",") {
      if (ch == ',') {
        if (!cur.empty() && cur.size() < 4 &&
            cur.find_first_not_of("0123456789") == std::string::npos)
          ls.devices.push_back(std::stoi(cur));
        cur.clear();
      } else {
        cur += ch;
      }
    }
  }
  ls.cwd = launch.value("cwd", "");
  ls.connection_dir = local.string();
  ls.state_dir = launch.value("state_dir", "");
  ls.started = launch.value("started", std::int64_t{0});
  if (sandbox) {
    if (auto st = sandbox->prepare(ls); !st.ok())
      return exit_with("cannot start the sandbox: " + st.error().message, 1);
  }
  subprocess::Spec kernel;
  kernel.argv = ls.argv;
  kernel.env.emplace();
  for (auto& [k, v] : ls.env) kernel.env->push_back(k + "=" + v);
  kernel.cwd = ls.cwd;
  kernel.out = kernel.err = subprocess::Stdio::kInherit;
  kernel.close_from = 3;
  kernel.new_session = true;
  auto spawned = subprocess::spawn(kernel);
  if (!spawned.ok()) return exit_with("cannot start the kernel: " + spawned.error().message, 1);
  pid_t pid = spawned->release();  // reaped below (end_kernel, the exit check)

  struct sigaction sa {};
  sa.sa_handler = on_signal;
  ::sigaction(SIGTERM, &sa, nullptr);
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGHUP, &sa, nullptr);
  auto end_kernel = [&]() {
    ::killpg(pid, SIGKILL);
    if (sandbox) sandbox->kill_all(id, pid);
    int st;
    ::waitpid(pid, &st, 0);
    if (sandbox) sandbox->cleanup(id);
    fs::remove_all(local, ec);
  };

  void* zctx = zmq_ctx_new();
  void* socks[4];
  int types[4] = {ZMQ_DEALER, ZMQ_SUB, ZMQ_DEALER, ZMQ_DEALER};
  // Shell and stdin share a routing id, as Jupyter clients' do: the kernel
  // sends stdin messages to the identity of the shell request's sender.
  unsigned char rid[16];
  randombytes_buf(rid, sizeof rid);
  rid[0] |= 1;  // ids starting with a zero byte are ZeroMQ's own
  for (int i = 0; i < 4; ++i) {
    socks[i] = zmq_socket(zctx, types[i]);
    int linger = 0;
    zmq_setsockopt(socks[i], ZMQ_LINGER, &linger, sizeof linger);
    if (i == 1) zmq_setsockopt(socks[i], ZMQ_SUBSCRIBE, "", 0);
    if (i == 0 || i == 2) zmq_setsockopt(socks[i], ZMQ_ROUTING_ID, rid, sizeof rid);
    zmq_connect(socks[i], endpoint(conn, kPortKeys[i]).c_str());
  }
  char node[256] = {};
  ::gethostname(node, sizeof node - 1);
  const char* job = std::getenv("SLURM_JOB_ID");
  nlohmann::json started = {{"node", node}, {"job", job ? job : ""}};
  if (!chan.send(std::string(1, static_cast<char>(FrameKind::kStarted)) + started.dump()).ok()) {
    end_kernel();
    return 1;
  }
  std::fprintf(stderr, "skylab agent: runtime %s runs on %s (job %s)\n", id.c_str(), node,
               job ? job : "?");
  auto next_usage = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  for (;;) {
    // What the sandbox uses, for /api/skylab/resources (the server cannot read the node's cgroups).
    if (sandbox && std::chrono::steady_clock::now() >= next_usage) {
      next_usage = std::chrono::steady_clock::now() + std::chrono::seconds(5);
      auto u = sandbox->usage(id);
      if (u.known) {
        nlohmann::json uj = {{"memory_used", u.memory_used}, {"memory_limit", u.memory_limit},
                             {"cpu_seconds", u.cpu_seconds}, {"cpu_limit", u.cpu_limit},
                             {"disk_used", u.disk_used},     {"disk_limit", u.disk_limit}};
        if (!chan.send(std::string(1, static_cast<char>(FrameKind::kUsage)) + uj.dump()).ok()) {
          end_kernel();
          return 1;
        }
      }
    }
    if (g_signal) {
      int sig = g_signal;
      end_kernel();
      return exit_with("the Slurm job was ended (signal " + std::to_string(sig) +
                           ": scancel, preemption, node shutdown or its time limit)",
                       0);
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      std::string how = WIFEXITED(status)
                            ? "exited with status " + std::to_string(WEXITSTATUS(status))
                            : "killed by signal " + std::to_string(WTERMSIG(status));
      std::string reason = sandbox ? sandbox->death_reason(id) : "";
      if (g_signal) reason = "the Slurm job was ended (scancel, preemption or its time limit)";
      ::killpg(pid, SIGKILL);
      if (sandbox) sandbox->kill_all(id, pid);
      if (sandbox) sandbox->cleanup(id);
      fs::remove_all(local, ec);
      return exit_with(reason.empty() ? "the kernel process " + how : reason, 0);
    }
    zmq_pollitem_t items[5];
    for (int i = 0; i < 4; ++i) items[i] = {socks[i], 0, ZMQ_POLLIN, 0};
    items[4] = {nullptr, fd, ZMQ_POLLIN, 0};
    if (zmq_poll(items, 5, 500) < 0 && zmq_errno() != EINTR) break;
    bool lost = false;
    for (int ch = 0; ch < 4; ++ch) {
      if (!(items[ch].revents & ZMQ_POLLIN)) continue;
      for (int n = 0; n < 64; ++n) {  // drain, bounded
        auto parts = zrecv_multipart(socks[ch]);
        if (parts.empty()) break;
        if (!chan.send(runtime::encode_zmq(ch, parts)).ok()) {
          lost = true;
          break;
        }
      }
    }
    if (!lost && (items[4].revents & ZMQ_POLLIN)) {
      auto f = chan.recv();
      if (!f.ok()) {
        lost = true;
      } else if (!f->empty() && f.value()[0] == static_cast<char>(FrameKind::kZmq)) {
        auto m = runtime::decode_zmq(f.value());
        if (m.ok() && m->first != 1) zsend_multipart(socks[m->first], m->second);
      }
    }
    if (lost) {
      std::fprintf(stderr, "skylab agent: lost the connection to the server; ending the runtime\n");
      end_kernel();
      return 1;
    }
  }
  end_kernel();
  return 1;
}

}  // namespace skylab::cli
