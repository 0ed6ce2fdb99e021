#include "api/terminals.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "api/work_queue.hpp"
#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "common/subprocess.hpp"
#include "common/util.hpp"
#include "runtime/service.hpp"

namespace skylab::api {

using http::Request;
using http::Responder;
using http::Response;
using nlohmann::json;

namespace {

// Bytes of `s` that end on a whole UTF-8 sequence: a character cut by a
// read() is kept for the next one.
std::size_t utf8_complete(const std::string& s) {
  std::size_t n = s.size();
  for (std::size_t back = 1; back <= 3 && back <= n; ++back) {
    unsigned char c = static_cast<unsigned char>(s[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back
    std::size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

std::shared_ptr<const std::string> frame(const json& j) {
  return std::make_shared<const std::string>(
      j.dump(-1, ' ', false, json::error_handler_t::replace));
}

class Registry;

//! One pty and the shell on it. Its reader thread owns the pty's end.
class Terminal : public std::enable_shared_from_this<Terminal> {
 public:
  Terminal(std::string owner, std::string name, std::string kernel_id, int master, pid_t helper,
           int wake)
      : owner_(std::move(owner)),
        name_(std::move(name)),
        kernel_id_(std::move(kernel_id)),
        master_(master),
        wake_(wake),
        helper_(helper),
        last_activity_(std::chrono::system_clock::now()) {}
  ~Terminal() {
    if (master_ >= 0) ::close(master_);
    if (wake_ >= 0) ::close(wake_);
  }

  const std::string& owner() const { return owner_; }
  const std::string& name() const { return name_; }
  const std::string& kernel_id() const { return kernel_id_; }
  json model() const {
    MutexLock lock(mu_);
    return {{"name", name_}, {"last_activity", util::iso_time(last_activity_)}};
  }

  //! Starts the reader thread; `ended` runs on it once the terminal is over.
  void start(std::function<void()> ended) {
    ended_ = std::move(ended);
    std::thread([self = shared_from_this()] { self->run(); }).detach();
  }
  //! Ends the terminal (idempotent, never blocks).
  void stop() {
    stopping_ = true;
    std::uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);
  }
  //! Adds a client: it gets ["setup", {}] and the recent output.
  bool attach(const std::shared_ptr<http::WebSocket>& ws) {
    MutexLock lock(mu_);
    if (over_) return false;
    clients_.push_back(ws);
    ws->send(frame(json::array({"setup", json::object()})), false);
    if (!history_.empty()) ws->send(frame(json::array({"stdout", history_})), false);
    return true;
  }
  void detach(const http::WebSocket* ws) {
    MutexLock lock(mu_);
    std::erase_if(clients_, [&](auto& w) { return w.get() == ws; });
    lagging_.erase(ws);
  }
  //! Queues input for the shell; false (dropped) beyond kMaxTerminalPendingInput.
  bool input(const std::string& data) {
    MutexLock lock(mu_);
    if (over_) return false;
    last_activity_ = std::chrono::system_clock::now();
    if (pending_.size() + data.size() > kMaxTerminalPendingInput) return false;
    if (pending_.empty()) {
      ssize_t n = ::write(master_, data.data(), data.size());
      std::size_t done = n > 0 ? static_cast<std::size_t>(n) : 0;
      if (done == data.size()) return true;
      pending_.assign(data, done);
    } else {
      pending_ += data;
    }
    std::uint64_t one = 1;
    (void)!::write(wake_, &one, sizeof one);  // the reader writes the rest when the pty has room
    return true;
  }
  void resize(int rows, int cols) {
    struct winsize ws {};
    ws.ws_row = static_cast<unsigned short>(rows);
    ws.ws_col = static_cast<unsigned short>(cols);
    ::ioctl(master_, TIOCSWINSZ, &ws);  // the kernel sends SIGWINCH to the shell
  }

 private:
  void broadcast(const std::string& data) {
    auto f = frame(json::array({"stdout", data}));
    MutexLock lock(mu_);
    last_activity_ = std::chrono::system_clock::now();
    history_ += data;
    if (history_.size() > kTerminalHistory) {
      std::size_t cut = history_.size() - kTerminalHistory;
      while (cut < history_.size() && (static_cast<unsigned char>(history_[cut]) & 0xC0) == 0x80)
        ++cut;
      history_.erase(0, cut);
    }
    // The shell and the other clients never wait for the slowest client:
    // beyond kMaxTerminalBacklog unsent bytes its output is dropped (it is told once).
    for (auto& c : clients_) {
      bool& lagging = lagging_[c.get()];
      if (c->queued_bytes() > kMaxTerminalBacklog) {
        if (!lagging)
          c->send(frame(json::array(
                      {"stdout", "\r\n[skylab: output dropped: the connection is too slow]\r\n"})),
                  false);
        lagging = true;
        continue;
      }
      lagging = false;
      c->send(f, false);
    }
  }

  // Whether every client is behind (the pty is then not read for a while).
  bool all_behind() {
    MutexLock lock(mu_);
    if (clients_.empty()) return false;
    for (auto& c : clients_)
      if (c->queued_bytes() <= kTerminalPauseBacklog) return false;
    return true;
  }

  bool helper_exited() {
    int status = 0;
    pid_t r = ::waitpid(helper_, &status, WNOHANG);
    if (r == helper_ || (r < 0 && errno == ECHILD)) {
      helper_ = -1;
      return true;
    }
    return false;
  }

  void run() {
    std::string carry;
    char buf[65536];
    while (!stopping_) {
      bool want_out;
      {
        MutexLock lock(mu_);
        want_out = !pending_.empty();
      }
      bool paused = all_behind();
      short events = static_cast<short>((paused ? 0 : POLLIN) | (want_out ? POLLOUT : 0));
      // Paused: the pty is left out of the poll (a hung-up pty would wake it at once).
      pollfd fds[2] = {{paused ? -1 : master_, events, 0}, {wake_, POLLIN, 0}};
      int r = ::poll(fds, 2, paused ? 5 : 1000);
      if (r < 0 && errno != EINTR) break;
      if (fds[1].revents & POLLIN) {
        std::uint64_t v;
        (void)!::read(wake_, &v, sizeof v);
      }
      if (fds[0].revents & POLLOUT) {
        MutexLock lock(mu_);
        ssize_t n = ::write(master_, pending_.data(), pending_.size());
        if (n > 0) pending_.erase(0, static_cast<std::size_t>(n));
      }
      if (!paused && (fds[0].revents & (POLLIN | POLLHUP | POLLERR))) {
        // A pty hands out a few KiB per read: what is there now goes out as
        // one frame of up to 64 KiB (fewer, larger frames for fast output).
        ssize_t n = 0;
        bool over = false;
        while (carry.size() < sizeof buf) {
          n = ::read(master_, buf, sizeof buf - carry.size());
          if (n <= 0) break;
          carry.append(buf, static_cast<std::size_t>(n));
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
          over = true;  // EIO: every slave end is closed
        if (n == 0) over = true;
        std::size_t whole = utf8_complete(carry);
        if (whole > 0) broadcast(carry.substr(0, whole));
        carry.erase(0, whole);
        if (over) break;
        continue;
      }
      if (r == 0 && !paused && helper_exited())
        break;  // the shell is gone (children may still hold the pty)
    }
    finish();
  }

  void finish() {
    if (helper_ > 0) {
      ::kill(helper_, SIGKILL);  // its shell has PR_SET_PDEATHSIG
      int status = 0;
      while (::waitpid(helper_, &status, 0) < 0 && errno == EINTR) {
      }
      helper_ = -1;
    }
    std::vector<std::shared_ptr<http::WebSocket>> clients;
    {
      MutexLock lock(mu_);
      over_ = true;
      clients.swap(clients_);
    }
    auto bye = frame(json::array({"disconnect", 1}));
    for (auto& c : clients) {
      c->send(bye, false);
      c->close(1000, "terminal ended");
    }
    if (ended_) ended_();
  }

  const std::string owner_, name_, kernel_id_;
  const int master_, wake_;
  pid_t helper_;  // only the reader thread touches it
  std::function<void()> ended_;
  std::atomic<bool> stopping_{false};
  mutable Mutex mu_;
  std::chrono::system_clock::time_point last_activity_ GUARDED_BY(mu_);
  std::vector<std::shared_ptr<http::WebSocket>> clients_ GUARDED_BY(mu_);
  std::map<const http::WebSocket*, bool> lagging_ GUARDED_BY(mu_);  // output dropped for it
  std::string history_ GUARDED_BY(mu_);
  std::string pending_ GUARDED_BY(mu_);
  bool over_ GUARDED_BY(mu_) = false;
};

//! Ends a kernel's terminals when the kernel is removed.
class KernelGone : public kernel::KernelObserver {
 public:
  explicit KernelGone(std::weak_ptr<Terminal> t) : t_(std::move(t)) {}
  void on_kernel_message(kernel::Channel, const std::shared_ptr<const kernel::Message>&,
                         const kernel::MessageInfo&) override {}
  void on_kernel_removed() override {
    if (auto t = t_.lock()) t->stop();
  }

 private:
  std::weak_ptr<Terminal> t_;
};

//! (owner, name) -> terminal. Thread-safe.
class Registry : public std::enable_shared_from_this<Registry> {
 public:
  explicit Registry(std::shared_ptr<kernel::KernelService> kernels)
      : kernels_(std::move(kernels)) {}
  ~Registry() {
    for (auto& [_, t] : terms_) t.term->stop();
  }

  std::shared_ptr<Terminal> find(const std::string& owner, const std::string& name) {
    MutexLock lock(mu_);
    auto it = terms_.find(key(owner, name));
    return it == terms_.end() ? nullptr : it->second.term;
  }
  std::vector<std::shared_ptr<Terminal>> of(const std::string& owner) {
    MutexLock lock(mu_);
    std::vector<std::shared_ptr<Terminal>> out;
    for (auto& [_, e] : terms_)
      if (e.term->owner() == owner) out.push_back(e.term);
    return out;
  }
  //! Reserves a name for `owner`: `wanted` or the next number. Conflict when
  //! taken or when the user has kMaxTerminalsPerUser.
  Result<std::string> reserve(const std::string& owner, const std::string& wanted) {
    MutexLock lock(mu_);
    std::size_t mine = 0;
    for (auto& [_, e] : terms_) mine += e.term->owner() == owner;
    for (auto& r : reserved_) mine += r.rfind(owner + '\n', 0) == 0;
    if (mine >= kMaxTerminalsPerUser)
      return Error::conflict("You have " + std::to_string(mine) +
                             " terminals open; close one first");
    std::string name = wanted;
    if (name.empty()) {
      do name = std::to_string(++counter_);
      while (terms_.count(key(owner, name)) || reserved_.count(key(owner, name)));
    } else if (terms_.count(key(owner, name)) || reserved_.count(key(owner, name))) {
      return Error::conflict("A terminal named '" + name + "' exists");
    }
    reserved_.insert(key(owner, name));
    return name;
  }
  void unreserve(const std::string& owner, const std::string& name) {
    MutexLock lock(mu_);
    reserved_.erase(key(owner, name));
  }
  //! Registers a started terminal (its name was reserved) and starts its reader.
  Status add(const std::shared_ptr<Terminal>& t) {
    auto obs = std::make_shared<KernelGone>(t);
    {
      MutexLock lock(mu_);
      reserved_.erase(key(t->owner(), t->name()));
      terms_[key(t->owner(), t->name())] = Entry{t, obs};
    }
    std::weak_ptr<Registry> self = weak_from_this();
    t->start([self, owner = t->owner(), name = t->name()] {
      if (auto reg = self.lock()) reg->remove(owner, name);
    });
    auto st = kernels_->add_observer(t->kernel_id(), obs);
    if (!st.ok()) t->stop();  // the runtime went away meanwhile
    return st;
  }

 private:
  struct Entry {
    std::shared_ptr<Terminal> term;
    std::shared_ptr<KernelGone> observer;
  };
  static std::string key(const std::string& owner, const std::string& name) {
    return owner + '\n' + name;
  }
  void remove(const std::string& owner, const std::string& name) {
    Entry e;
    {
      MutexLock lock(mu_);
      auto it = terms_.find(key(owner, name));
      if (it == terms_.end()) return;
      e = std::move(it->second);
      terms_.erase(it);
    }
    kernels_->remove_observer(e.term->kernel_id(), e.observer.get());
  }

  std::shared_ptr<kernel::KernelService> kernels_;
  Mutex mu_;
  std::map<std::string, Entry> terms_ GUARDED_BY(mu_);
  std::set<std::string> reserved_ GUARDED_BY(mu_);  // names of terminals being started
  std::uint64_t counter_ GUARDED_BY(mu_) = 0;
};

//! Opens a pty and runs `argv` on its slave end (a new session); the master
//! end (non-blocking) and the process. Blocking: work queue only.
Result<std::pair<int, pid_t>> spawn_on_pty(const std::vector<std::string>& argv) {
  int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return Error::internal(std::string("posix_openpt: ") + std::strerror(errno));
  safe_fs::UniqueFd m(master);
  char name[128];
  if (::grantpt(master) != 0 || ::unlockpt(master) != 0 ||
      ::ptsname_r(master, name, sizeof name) != 0)
    return Error::internal("cannot set up a pty");
  safe_fs::UniqueFd slave(::open(name, O_RDWR | O_NOCTTY | O_CLOEXEC));
  if (slave.get() < 0)
    return Error::internal(std::string("cannot open the pty: ") + std::strerror(errno));
  struct winsize ws {};
  ws.ws_row = 24;
  ws.ws_col = 80;
  ::ioctl(master, TIOCSWINSZ, &ws);
  subprocess::Spec spec;
  spec.argv = argv;
  spec.search_path = false;
  spec.env = std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  spec.in = spec.out = spec.err = subprocess::Stdio::kInherit;  // replaced by the pty below
  spec.fds = {{slave.get(), 0}, {slave.get(), 1}, {slave.get(), 2}};
  spec.close_from = 3;  // nothing of the server's reaches the shell
  spec.new_session = true;
  spec.reset_signals = true;
  auto child = subprocess::spawn(spec);
  if (!child.ok()) return Error::internal("cannot start the terminal: " + child.error().message);
  pid_t pid = child->release();  // the Terminal reaps it
  int flags = ::fcntl(master, F_GETFL);
  ::fcntl(master, F_SETFL, flags | O_NONBLOCK);
  return std::make_pair(m.release(), pid);
}

//! One client WebSocket of a terminal.
class TerminalClient : public http::WebSocketHandler {
 public:
  TerminalClient(std::shared_ptr<Terminal> t, std::shared_ptr<kernel::KernelService> kernels)
      : term_(std::move(t)), kernels_(std::move(kernels)) {}
  void on_open(std::shared_ptr<http::WebSocket> ws) override {
    ws_ = ws;
    if (!term_->attach(ws)) {
      ws->send(frame(json::array({"disconnect", 1})), false);
      ws->close(1000, "terminal ended");
    }
  }
  void on_message(std::string data, bool binary) override {
    auto ws = ws_.lock();
    if (!ws) return;
    if (data.size() > kMaxTerminalFrame) return ws->close(1009, "message too big");
    auto j = json_limits::parse_or_discarded(data, json_limits::Limits{8, kMaxTerminalFrame});
    if (!j.is_array() || j.empty() || !j[0].is_string())
      return;  // terminado ignores what it does not know
    const std::string& type = j[0].get_ref<const std::string&>();
    if (type == "stdin" && j.size() >= 2 && j[1].is_string()) {
      term_->input(j[1].get<std::string>());
      kernels_->touch(term_->kernel_id());  // typing in a terminal is activity: no idle disconnect
    } else if (type == "set_size" && j.size() >= 3 && j[1].is_number_integer() &&
               j[2].is_number_integer()) {
      auto rows = j[1].get<long long>(), cols = j[2].get<long long>();
      if (rows >= 1 && rows <= 1000 && cols >= 1 && cols <= 1000)
        term_->resize(static_cast<int>(rows), static_cast<int>(cols));
    }
  }
  void on_close() override {
    if (auto ws = ws_.lock()) term_->detach(ws.get());
  }

 private:
  std::shared_ptr<Terminal> term_;
  std::shared_ptr<kernel::KernelService> kernels_;
  std::weak_ptr<http::WebSocket> ws_;
};

const std::regex& name_re() {
  static const std::regex re("[A-Za-z0-9_.-]{1,64}");
  return re;
}

}  // namespace

void add_terminal_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  auto reg = std::make_shared<Registry>(ctx->kernels);
  const std::string one = "/api/terminals/([A-Za-z0-9_.-]{1,64})/?";

  r.add("GET", "/api/terminals/?", [reg](Request& req, Responder done) {
    json out = json::array();
    for (auto& t : reg->of(req.user.username)) out.push_back(t->model());
    done(Response::json(200, out));
  });

  r.add("GET", one, [reg](Request& req, Responder done) {
    auto t = reg->find(req.user.username, req.params[0]);
    if (!t) return done(Response::error(404, "Terminal not found: " + req.params[0]));
    done(Response::json(200, t->model()));
  });

  r.add("DELETE", one, [reg](Request& req, Responder done) {
    auto t = reg->find(req.user.username, req.params[0]);
    if (!t) return done(Response::error(404, "Terminal not found: " + req.params[0]));
    t->stop();
    done(Response::empty(204));
  });

  r.add("POST", "/api/terminals/?", [ctx, reg](Request& req, Responder done) {
    if (!ctx->terminal_command)
      return done(Response::error(404, "Terminals are not available on this server"));
    auto body = parse_json_body(req.body);
    if (!body.ok()) return done(Response::from_error(body.error()));
    std::string wanted, kernel_id;
    if (auto n = body->find("name"); n != body->end() && !n->is_null()) {
      if (!n->is_string() || !std::regex_match(n->get<std::string>(), name_re()))
        return done(Response::error(400, "'name' must be 1-64 letters, digits, '_', '.' or '-'"));
      wanted = n->get<std::string>();
    }
    if (auto k = body->find("kernel_id"); k != body->end() && !k->is_null()) {
      if (!k->is_string() || k->get<std::string>().size() > 64)
        return done(Response::error(400, "'kernel_id' must be a kernel id"));
      kernel_id = k->get<std::string>();
    }
    const std::string user = req.user.username;
    auto name = reg->reserve(user, wanted);
    if (!name.ok()) return done(Response::from_error(name.error()));

    // Runs once the runtime is known: the shell starts on the work queue.
    auto open_on = [ctx, reg, user, name = name.value(), done](const kernel::KernelModel& k) {
      auto argv = ctx->terminal_command(k);
      if (!argv.ok()) {
        reg->unreserve(user, name);
        return done(Response::error(409, "No terminal for this runtime: " + argv.error().message));
      }
      Responder refused = [reg, user, name, done](Response res) {
        reg->unreserve(user, name);
        done(std::move(res));
      };
      post_or_busy(
          ctx->work.get(),
          [ctx, reg, user, name, done, argv = argv.value(), kid = k.id] {
            auto spawned = spawn_on_pty(argv);
            if (!spawned.ok()) {
              reg->unreserve(user, name);
              return done(Response::from_error(spawned.error()));
            }
            int wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            auto t =
                std::make_shared<Terminal>(user, name, kid, spawned->first, spawned->second, wake);
            if (wake < 0) {
              reg->unreserve(user, name);
              ::kill(spawned->second, SIGKILL);
              ::waitpid(spawned->second, nullptr, 0);
              return done(Response::error(500, "cannot make an eventfd"));
            }
            auto st = reg->add(t);
            if (!st.ok()) return done(Response::error(404, "The runtime is gone"));
            log::info("terminal " + name + " of " + user + " opened in runtime " + kid);
            done(Response::json(200, t->model()));
          },
          refused);
    };

    auto usable = [&](const kernel::KernelModel& k) {
      return k.owner == user && k.execution_state != kernel::KernelState::kDead &&
             ctx->runtimes->lease_of(k.id).empty();
    };
    if (!kernel_id.empty()) {
      auto k = ctx->kernels->get(kernel_id);
      if (!k.ok() || k->owner != user) {
        reg->unreserve(user, name.value());
        return done(Response::error(404, "Kernel does not exist: " + kernel_id));
      }
      if (!usable(k.value())) {
        reg->unreserve(user, name.value());
        return done(Response::error(409, "This kernel runs a job or is dead"));
      }
      return open_on(k.value());
    }
    // The most recently used runtime of the caller, or a new one of the default type.
    std::optional<kernel::KernelModel> best;
    for (auto& k : ctx->kernels->list())
      if (usable(k) && (!best || k.last_activity > best->last_activity)) best = k;
    if (best) return open_on(*best);
    runtime::RuntimeRequest rr;
    rr.user = user;
    rr.spec = ctx->specs->default_name();
    auto ticket = ctx->runtimes->acquire(
        std::move(rr), [open_on, reg, user, n = name.value(), done](Result<kernel::KernelModel> k) {
          if (!k.ok()) {
            reg->unreserve(user, n);
            return done(Response::from_error(k.error()));
          }
          open_on(k.value());
        });
    if (!ticket.ok()) {
      reg->unreserve(user, name.value());
      done(Response::from_error(ticket.error()));
    }
  });

  r.add_websocket("/terminals/websocket/([A-Za-z0-9_.-]{1,64})/?", [reg, ctx](Request& req) {
    http::Upgrade up;
    auto t = reg->find(req.user.username, req.params[0]);
    if (!t) {
      up.refuse = Response::error(404, "Terminal not found: " + req.params[0]);
      return up;
    }
    up.handler = std::make_shared<TerminalClient>(t, ctx->kernels);
    return up;
  });
}

}  // namespace skylab::api
