#include "http/server.hpp"
#include "common/ip_net.hpp"
#include "http/host_policy.hpp"
#include "http/tls.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <limits>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <nlohmann/json.hpp>

#include "auth/web_policy.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/util.hpp"
#include "metrics/metrics.hpp"

namespace skylab::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
namespace bws = beast::websocket;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;
using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

namespace {

constexpr std::size_t kHeaderLimit = std::size_t{16} * 1024;

// Splits `target` into a decoded path and decoded query parameters.
// Returns false when either part is malformed.
bool parse_target(std::string_view target, Request& req) {
  auto q = target.find('?');
  auto raw_path = target.substr(0, q);
  auto path = util::url_decode(raw_path);
  if (!path || path->empty() || (*path)[0] != '/') return false;
  req.path = std::move(*path);
  if (q == std::string_view::npos) return true;
  auto query = target.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    auto k = util::url_decode(pair.substr(0, eq), true);
    auto v = util::url_decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true);
    if (!k || !v) return false;
    req.query.emplace(std::move(*k), std::move(*v));
  }
  return true;
}

}  // namespace

// What the server keeps of every open WebSocket, whatever its transport.
class WsBase : public WebSocket {
 public:
  //! Who opened the connection, as authenticated at the upgrade. Immutable.
  virtual const auth::Identity& user() const = 0;
};

struct Server::Impl {
  ServerOptions opts;
  std::shared_ptr<const Router> router;
  std::shared_ptr<const auth::Authenticator> authenticator;
  asio::io_context ioc;
  tcp::acceptor acceptor{ioc};
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  asio::steady_timer stop_timer{ioc};
  std::atomic<bool> stopping{false};

  Mutex ws_mutex;
  std::unordered_map<WsBase*, std::weak_ptr<WsBase>> ws_sessions GUARDED_BY(ws_mutex);

  std::unique_ptr<TlsCertificate> tls;  // null: plain HTTP
  asio::signal_set hup{ioc};            // SIGHUP: reload the certificate
  asio::steady_timer tls_timer{ioc};    // polls the certificate files (TLS only)
  void reload_tls(const char* why);
  void watch_tls();
  void watch_hup();

  Impl(ServerOptions o, std::shared_ptr<const Router> r,
       std::shared_ptr<const auth::Authenticator> a)
      : opts(std::move(o)), router(std::move(r)), authenticator(std::move(a)) {}

  void do_accept();
  void close_all_websockets();
  std::size_t close_websockets_if(const std::function<bool(const auth::Identity&)>& pred,
                                  const std::string& reason);
};

// ---------------------------------------------------------------------------
// WebSocket session: one per connection, its own strand, a bounded send queue.

template <class Stream>
class WsSession : public WsBase, public std::enable_shared_from_this<WsSession<Stream>> {
 public:
  WsSession(Server::Impl& srv, Stream&& stream, std::shared_ptr<WebSocketHandler> h,
            std::string subprotocol, auth::Identity user)
      : srv_(srv),
        ws_(std::move(stream)),
        handler_(std::move(h)),
        subprotocol_(std::move(subprotocol)),
        user_(std::move(user)) {}

  const auth::Identity& user() const override { return user_; }

  ~WsSession() override {
    MutexLock lock(srv_.ws_mutex);
    srv_.ws_sessions.erase(this);
  }

  void accept(bhttp::request<bhttp::string_body> req) {
    {
      MutexLock lock(srv_.ws_mutex);
      srv_.ws_sessions[this] = std::weak_ptr<WsBase>(this->shared_from_this());
    }
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(bws::stream_base::timeout::suggested(beast::role_type::server));
    std::string sub = subprotocol_;
    ws_.set_option(bws::stream_base::decorator([sub](bws::response_type& res) {
      res.set(bhttp::field::server, "skylab");
      if (!sub.empty()) res.set(bhttp::field::sec_websocket_protocol, sub);
    }));
    ws_.read_message_max(srv_.opts.ws_message_limit);
    ws_.auto_fragment(false);
    ws_.async_accept(req, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) {
        log::debug("websocket handshake failed: " + ec.message());
        return;
      }
      self->opened_ = true;
      metrics::websocket_opened();
      self->handler_->on_open(self);
      self->do_read();
    });
  }

  bool send(std::shared_ptr<const std::string> data, bool binary) override {
    if (closed_.load()) return false;
    std::size_t size = data->size();
    if (queued_bytes_.fetch_add(size) + size > srv_.opts.ws_send_queue_limit) {
      queued_bytes_.fetch_sub(size);
      log::warn("websocket send queue full; closing slow client");
      close(static_cast<std::uint16_t>(bws::close_code::policy_error), "send queue full");
      return false;
    }
    asio::post(ws_.get_executor(),
               [self = this->shared_from_this(), data = std::move(data), binary]() mutable {
                 self->queue_.emplace_back(std::move(data), binary);
                 if (self->queue_.size() == 1 && !self->writing_) self->do_write();
               });
    return true;
  }

  void close(std::uint16_t code, std::string reason) override {
    asio::post(
        ws_.get_executor(), [self = this->shared_from_this(), code, reason = std::move(reason)]() {
          if (self->close_requested_ || self->finished_) return;
          self->close_requested_ = true;
          self->close_reason_ = bws::close_reason(static_cast<bws::close_code>(code), reason);
          if (!self->writing_) self->do_close();
        });
  }

  const std::string& subprotocol() const override { return subprotocol_; }
  std::size_t queued_bytes() const override { return queued_bytes_.load(); }

 private:
  void do_read() {
    ws_.async_read(buf_, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(beast::error_code ec) {
    if (ec) {
      if (ec != bws::error::closed && ec != asio::error::operation_aborted)
        log::debug("websocket read ended: " + ec.message());
      finish();
      return;
    }
    std::string data = beast::buffers_to_string(buf_.data());
    buf_.consume(buf_.size());
    bool binary = ws_.got_binary();
    try {
      handler_->on_message(std::move(data), binary);
    } catch (const std::exception& e) {
      log::error(std::string("websocket handler failed: ") + e.what());
    }
    do_read();
  }

  void do_write() {
    if (queue_.empty()) {
      writing_ = false;
      if (close_requested_) do_close();
      return;
    }
    writing_ = true;
    auto& [data, binary] = queue_.front();
    ws_.binary(binary);
    ws_.async_write(asio::buffer(*data),
                    [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                      auto size = self->queue_.front().first->size();
                      self->queued_bytes_.fetch_sub(size);
                      self->queue_.pop_front();
                      if (ec) {
                        self->writing_ = false;
                        self->queue_.clear();
                        self->finish();
                        return;
                      }
                      self->do_write();
                    });
  }

  void do_close() {
    if (close_started_ || finished_) return;
    close_started_ = true;
    ws_.async_close(close_reason_,
                    [self = this->shared_from_this()](beast::error_code) { self->finish(); });
  }

  void finish() {
    if (finished_) return;
    finished_ = true;
    closed_ = true;
    if (opened_) {
      metrics::websocket_closed();
      try {
        handler_->on_close();
      } catch (const std::exception& e) {
        log::error(std::string("websocket close handler failed: ") + e.what());
      }
    }
    beast::error_code ec;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ec);
  }

  Server::Impl& srv_;
  bws::stream<Stream> ws_;
  beast::flat_buffer buf_;
  std::shared_ptr<WebSocketHandler> handler_;
  std::string subprotocol_;
  const auth::Identity user_;
  std::deque<std::pair<std::shared_ptr<const std::string>, bool>> queue_;
  std::atomic<std::size_t> queued_bytes_{0};
  std::atomic<bool> closed_{false};
  bool opened_ = false, writing_ = false, close_requested_ = false, close_started_ = false,
       finished_ = false;
  bws::close_reason close_reason_;
};

// ---------------------------------------------------------------------------
// HTTP session: reads the header first, so that the route decides the body limit.

template <class Stream>
class HttpSession : public std::enable_shared_from_this<HttpSession<Stream>> {
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

 public:
  HttpSession(Server::Impl& srv, tcp::socket&& socket) : srv_(srv), stream_(std::move(socket)) {}
  //! TLS: `ctx` is the certificate current at accept; the session keeps it.
  HttpSession(Server::Impl& srv, tcp::socket&& socket, std::shared_ptr<ssl::context> ctx)
      : srv_(srv), stream_(std::move(socket), *ctx), tls_ctx_(std::move(ctx)) {}

  void run() {
    asio::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if constexpr (kTls) {
        beast::get_lowest_layer(self->stream_)
            .expires_after(std::chrono::seconds(self->srv_.opts.header_timeout_seconds));
        self->stream_.async_handshake(ssl::stream_base::server, [self](beast::error_code ec) {
          if (ec) {
            log::debug("TLS handshake failed: " + ec.message());
            beast::error_code ignored;
            beast::get_lowest_layer(self->stream_).socket().close(ignored);
            return;
          }
          self->handshaken_ = true;
          self->do_read();
        });
      } else {
        self->do_read();
      }
    });
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(kHeaderLimit);
    parser_->body_limit(
        std::numeric_limits<std::uint64_t>::max());  // the route sets the real limit
    req_ = Request{};
    route_ = nullptr;
    xsrf_from_form_ = false;
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(srv_.opts.idle_timeout_seconds));
    bhttp::async_read_header(stream_, buffer_, *parser_,
                             [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                               self->on_header(ec);
                             });
  }

  void on_header(beast::error_code ec) {
    started_ = std::chrono::steady_clock::now();
    if (ec == bhttp::error::end_of_stream || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout || ec == asio::error::connection_reset ||
        ec == asio::error::eof) {
      return close();
    }
    if (ec == bhttp::error::header_limit)
      return reply_and_close(Response::error(431, "Request header too large"));
    if (ec) {
      log::debug("bad request header: " + ec.message());
      return reply_and_close(Response::error(400, "Malformed HTTP request"));
    }

    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(srv_.opts.header_timeout_seconds));
    auto& h = parser_->get();
    req_.method = std::string(h.method_string());
    req_.target = std::string(h.target());
    for (const auto& f : h) {
      std::string name(f.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      req_.headers.emplace_back(std::move(name), std::string(f.value()));
    }
    if (!parse_target(req_.target, req_))
      return reply_and_close(Response::error(400, "Malformed request target"));
    fill_peer_facts();
    // Before routing, so that a rebound name reaches neither /login nor a
    // WebSocket. req_.host is the X-Forwarded-Host of a trusted proxy.
    if (!host_allowed(req_.host, srv_.opts.allowed_hosts))
      return reply_and_close(
          Response::error(403,
                          "Forbidden: this server does not answer to that Host name "
                          "(an administrator can add it to [server] allowed_hosts)"));

    bool upgrade = bws::is_upgrade(h);
    bool path_exists = false;
    route_ = srv_.router->match(upgrade ? "WS" : req_.method, req_.path, req_.params, path_exists);
    if (!route_ && upgrade) {
      // Not a WebSocket route: treat as a plain request to the same path.
      route_ = srv_.router->match(req_.method, req_.path, req_.params, path_exists);
      upgrade = false;
    }
    if (!route_) {
      if (path_exists) return reply_and_close(Response::error(405, "Method not allowed"));
      return reply_and_close(Response::error(404, "Not found"));
    }
    if (!route_->options.public_route) {
      auth::Credentials creds;
      creds.authorization_header = req_.header("authorization");
      auto it = req_.query.find("token");
      if (it != req_.query.end()) creds.query_token = it->second;
      std::string cookies = joined_header("cookie", "; ");
      creds.cookie_header = cookies;
      creds.secure = req_.secure;
      auto who = srv_.authenticator->authenticate(creds);
      if (!who)
        return reply_and_close(Response::error(403, "Forbidden: missing or invalid credentials"));
      req_.user = *who;
      // XSRF and Origin rules for cookie-authenticated requests. A form
      // post may carry its token in the body: decided once it is read.
      auto presented = presented_xsrf();
      if (req_.user.by_cookie() && presented.empty() && !upgrade &&
          !auth::is_safe_method(req_.method) && is_form_body()) {
        xsrf_from_form_ = true;
      } else if (auto v = cross_site(upgrade, presented); v != auth::CrossSite::kAllowed) {
        return reply_and_close(Response::error(403, auth::describe(v)));
      }
    }

    if (upgrade) return do_upgrade();

    auto cl = parser_->content_length();
    if (cl && *cl > route_->options.body_limit)
      return reply_and_close(Response::error(413, "Request body too large"));
    parser_->body_limit(route_->options.body_limit);
    if (beast::iequals(h[bhttp::field::expect], "100-continue")) {
      bhttp::response<bhttp::empty_body> cont{bhttp::status::continue_, 11};
      beast::error_code wec;
      bhttp::write(stream_, cont, wec);
    }
    // Beast reads at most the buffer's free capacity per call: without room,
    // a large body arrives in ~512-byte reads (thousands of syscalls per MB).
    if (cl && *cl > std::uint64_t{16} * 1024)
      buffer_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(*cl, 1 << 20)));
    bhttp::async_read(stream_, buffer_, *parser_,
                      [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                        self->on_body(ec);
                      });
  }

  void on_body(beast::error_code ec) {
    if (ec == bhttp::error::body_limit)
      return reply_and_close(Response::error(413, "Request body too large"));
    if (ec == beast::error::timeout || ec == asio::error::eof ||
        ec == bhttp::error::end_of_stream || ec == asio::error::connection_reset ||
        ec == bhttp::error::partial_message)
      return close();
    if (ec) {
      log::debug("bad request body: " + ec.message());
      return reply_and_close(Response::error(400, "Malformed HTTP request"));
    }
    req_.body = std::move(parser_->get().body());
    keep_alive_ = parser_->get().keep_alive();
    if (buffer_.capacity() > std::size_t{64} * 1024)
      buffer_.shrink_to_fit();  // idle connections stay small
    if (xsrf_from_form_) {
      auto form = parse_form(req_.body);
      std::string presented;
      if (form)
        if (auto f = form->find("_xsrf"); f != form->end()) presented = f->second;
      if (auto v = cross_site(false, presented); v != auth::CrossSite::kAllowed)
        return reply_and_close(Response::error(403, auth::describe(v)));
    }
    beast::get_lowest_layer(stream_).expires_never();
    auto self = this->shared_from_this();
    auto responded = std::make_shared<std::atomic<bool>>(false);
    Responder respond = [self, responded](Response r) {
      if (responded->exchange(true)) return;
      asio::post(self->stream_.get_executor(), [self, r = std::move(r)]() mutable {
        self->write(std::move(r), self->keep_alive_);
      });
    };
    try {
      route_->handler(req_, respond);
    } catch (const std::exception& e) {
      log::error(std::string("handler failed on ") + req_.method + " " + req_.path + ": " +
                 e.what());
      respond(Response::error(500, "Internal server error"));
    }
  }

  void do_upgrade() {
    Upgrade up;
    try {
      up = route_->upgrade(req_);
    } catch (const std::exception& e) {
      log::error(std::string("upgrade handler failed: ") + e.what());
      return reply_and_close(Response::error(500, "Internal server error"));
    }
    if (up.refuse || !up.handler)
      return reply_and_close(up.refuse ? *up.refuse : Response::error(500, "refused"));
    log_request(101, 0);
    auto session = std::make_shared<WsSession<Stream>>(
        srv_, std::move(stream_), std::move(up.handler), std::move(up.subprotocol), req_.user);
    session->accept(parser_->release());
  }

  void reply_and_close(Response r) { write(std::move(r), false); }

  // Every value of a header, joined (a client may split Cookie in several).
  std::string joined_header(std::string_view name, std::string_view sep) const {
    std::string out;
    for (const auto& [k, v] : req_.headers) {
      if (k != name) continue;
      if (!out.empty()) out.append(sep);
      out.append(v);
    }
    return out;
  }

  // Client address, TLS and host: from the socket and Host, or from the
  // X-Forwarded-* headers when the peer is a trusted proxy.
  void fill_peer_facts() {
    beast::error_code ec;
    auto ep = beast::get_lowest_layer(stream_).socket().remote_endpoint(ec);
    req_.client_address = ec ? std::string() : ep.address().to_string();
    req_.host = std::string(req_.header("host"));
    req_.secure = srv_.opts.secure_cookies || kTls;
    if (req_.client_address.empty() ||
        !net::address_trusted(req_.client_address, srv_.opts.trusted_proxies))
      return;
    std::string fwd = joined_header("x-forwarded-for", ",");
    if (!fwd.empty()) {
      auto last = fwd.substr(fwd.rfind(',') == std::string::npos ? 0 : fwd.rfind(',') + 1);
      while (!last.empty() && last.front() == ' ') last.erase(0, 1);
      while (!last.empty() && last.back() == ' ') last.pop_back();
      if (!last.empty()) req_.client_address = last;
    }
    if (beast::iequals(req_.header("x-forwarded-proto"), "https")) req_.secure = true;
    if (auto h = req_.header("x-forwarded-host"); !h.empty()) req_.host = std::string(h);
  }

  std::string presented_xsrf() const {
    if (auto h = req_.header("x-xsrftoken"); !h.empty()) return std::string(h);
    if (auto h = req_.header("x-csrftoken"); !h.empty()) return std::string(h);
    if (auto q = req_.query.find("_xsrf"); q != req_.query.end()) return q->second;
    return {};
  }

  bool is_form_body() const {
    auto ct = req_.header("content-type");
    auto semi = ct.find(';');
    return beast::iequals(ct.substr(0, semi), "application/x-www-form-urlencoded");
  }

  auth::CrossSite cross_site(bool websocket, std::string_view presented) const {
    auth::RequestFacts f;
    f.method = req_.method;
    f.websocket = websocket;
    f.origin = req_.header("origin");
    f.host = req_.host;
    f.presented_xsrf = presented;
    return auth::check_cross_site(req_.user, f);
  }

  // Security headers every response carries unless its handler chose its own.
  void add_default_headers(Response& r) const {
    auto has = [&](std::string_view n) {
      for (const auto& [k, v] : r.headers)
        if (beast::iequals(k, n)) return true;
      return false;
    };
    if (!srv_.opts.default_csp.empty() && !has("Content-Security-Policy"))
      r.headers.emplace_back("Content-Security-Policy", srv_.opts.default_csp);
    if (!has("X-Frame-Options")) r.headers.emplace_back("X-Frame-Options", "DENY");
    if (!has("Referrer-Policy")) r.headers.emplace_back("Referrer-Policy", "same-origin");
    // Clients reach us over TLS (ours or a trusted proxy's): only ever over TLS.
    if ((kTls || req_.secure) && !has("Strict-Transport-Security"))
      r.headers.emplace_back("Strict-Transport-Security", "max-age=31536000");
  }

  // Streams an open file (Response::file): the header, then the file in
  // 256 KiB pieces (Beast's file_body reads 4 KiB per write, which halves the
  // throughput of a big download). Reads are pread()s on the I/O thread, as
  // file_body's are.
  struct FileStream {
    int fd = -1;
    std::uint64_t offset = 0, left = 0;
    std::vector<char> buf;
    bhttp::response<bhttp::empty_body> res;
    std::optional<bhttp::response_serializer<bhttp::empty_body>> sr;
    ~FileStream() {
      if (fd >= 0) ::close(fd);
    }
  };

  void write_file(Response r, bool keep_alive) {
    auto fs = std::make_shared<FileStream>();
    fs->fd = ::dup(r.file->fd);
    struct stat st {};
    off_t at = fs->fd >= 0 ? ::lseek(fs->fd, 0, SEEK_CUR) : -1;
    if (fs->fd < 0 || at < 0 || ::fstat(fs->fd, &st) != 0 || st.st_size < at) {
      log::warn(std::string("cannot stream a file response: ") + std::strerror(errno));
      return write(Response::error(500, "Cannot read the file"), false);
    }
    fs->offset = static_cast<std::uint64_t>(at);
    fs->left = static_cast<std::uint64_t>(st.st_size - at);
    log_request(r.status, fs->left);
    fs->buf.resize(static_cast<std::size_t>(std::min<std::uint64_t>(fs->left, 256 * 1024)));
    auto& res = fs->res;
    res.version(11);
    res.result(static_cast<unsigned>(r.status));
    res.set(bhttp::field::server, "skylab");
    res.set("X-Content-Type-Options", "nosniff");
    for (auto& [k, v] : r.headers) res.set(k, v);
    res.keep_alive(keep_alive && !srv_.stopping.load());
    res.content_length(fs->left);
    fs->sr.emplace(res);
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::hours(6));  // whole download, however slow the client
    bhttp::async_write_header(
        stream_, *fs->sr, [self = this->shared_from_this(), fs](beast::error_code ec, std::size_t) {
          if (ec) return self->close();
          self->write_file_piece(fs);
        });
  }

  void write_file_piece(std::shared_ptr<FileStream> fs) {
    if (fs->left == 0) {
      if (!fs->res.keep_alive()) return close();
      return do_read();
    }
    auto want = static_cast<std::size_t>(std::min<std::uint64_t>(fs->left, fs->buf.size()));
    ssize_t n = ::pread(fs->fd, fs->buf.data(), want, static_cast<off_t>(fs->offset));
    if (n <=
        0) {  // the file shrank or failed: the length sent cannot be kept, so the connection ends
      log::warn("a file response ended early: " +
                std::string(n < 0 ? std::strerror(errno) : "file shrank"));
      return close();
    }
    fs->offset += static_cast<std::uint64_t>(n);
    fs->left -= static_cast<std::uint64_t>(n);
    asio::async_write(stream_, asio::buffer(fs->buf.data(), static_cast<std::size_t>(n)),
                      [self = this->shared_from_this(), fs](beast::error_code ec, std::size_t) {
                        if (ec) return self->close();
                        self->write_file_piece(fs);
                      });
  }

  void write(Response r, bool keep_alive) {
    add_default_headers(r);
    if (r.file) return write_file(std::move(r), keep_alive);
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>();
    res->version(11);
    res->result(static_cast<unsigned>(r.status));
    res->set(bhttp::field::server, "skylab");
    res->set("X-Content-Type-Options", "nosniff");
    for (auto& [k, v] : r.headers) {
      if (beast::iequals(k, "set-cookie"))
        res->insert(k, v);
      else
        res->set(k, v);
    }
    res->body() = std::move(r.body);
    log_request(r.status, res->body().size());
    res->keep_alive(keep_alive && !srv_.stopping.load());
    res->prepare_payload();
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::seconds(srv_.opts.header_timeout_seconds));
    bhttp::async_write(stream_, *res,
                       [self = this->shared_from_this(), res](beast::error_code ec, std::size_t) {
                         if (ec || !res->keep_alive()) return self->close();
                         self->do_read();
                       });
  }

  void close() {
    if constexpr (kTls) {
      if (handshaken_ && !shutting_down_) {  // close_notify, then the socket
        shutting_down_ = true;
        beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(5));
        stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
          beast::error_code ec;
          beast::get_lowest_layer(self->stream_).socket().shutdown(tcp::socket::shutdown_both, ec);
        });
        return;
      }
    }
    beast::error_code ec;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_send, ec);
  }

  // The access log line and the request metrics of one response. Never the
  // query string (tokens), headers or cookies.
  void log_request(int status, std::uint64_t bytes) {
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
    metrics::http_request(req_.method, status, seconds);
    log::record(
        log::Level::kInfo, "request",
        {{"method", req_.method.empty() ? "-" : std::string_view(req_.method)},
         {"path", req_.path.empty() ? "-" : std::string_view(req_.path)},
         {"status", static_cast<long long>(status)},
         {"bytes", static_cast<long long>(bytes)},
         {"duration", seconds},
         {"user", req_.user.username.empty() ? "-" : std::string_view(req_.user.username)},
         {"client", req_.client_address.empty() ? "-" : std::string_view(req_.client_address)}});
  }

  Server::Impl& srv_;
  Stream stream_;
  std::shared_ptr<ssl::context> tls_ctx_;  // TLS: the certificate this connection was accepted with
  bool handshaken_ = false, shutting_down_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Request req_;
  const Route* route_ = nullptr;
  bool keep_alive_ = true;
  bool xsrf_from_form_ = false;  // the XSRF check waits for the form body
};

void Server::Impl::do_accept() {
  acceptor.async_accept(asio::make_strand(ioc), [this](beast::error_code ec, tcp::socket socket) {
    if (ec) {
      if (!acceptor.is_open()) return;
      log::warn("accept failed: " + ec.message());
    } else {
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (tls) {
        if (auto ctx = tls->current())
          std::make_shared<HttpSession<TlsStream>>(*this, std::move(socket), ctx)->run();
      } else {
        std::make_shared<HttpSession<PlainStream>>(*this, std::move(socket))->run();
      }
    }
    do_accept();
  });
}

void Server::Impl::close_all_websockets() {
  std::vector<std::shared_ptr<WsBase>> live;
  {
    MutexLock lock(ws_mutex);
    for (auto& [_, w] : ws_sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  for (auto& s : live)
    s->close(static_cast<std::uint16_t>(bws::close_code::going_away), "server shutting down");
}

std::size_t Server::Impl::close_websockets_if(
    const std::function<bool(const auth::Identity&)>& pred, const std::string& reason) {
  std::vector<std::shared_ptr<WsBase>> live;
  {
    MutexLock lock(ws_mutex);
    for (auto& [_, w] : ws_sessions)
      if (auto s = w.lock()) live.push_back(std::move(s));
  }
  std::size_t closed = 0;
  for (auto& s : live) {
    if (!pred(s->user())) continue;
    s->close(static_cast<std::uint16_t>(bws::close_code::policy_error), reason);
    ++closed;
  }
  return closed;
}

std::size_t Server::close_websockets_if(
    const std::function<bool(const auth::Identity&)>& should_close, const std::string& reason) {
  return impl_->close_websockets_if(should_close, reason);
}

Server::Server(ServerOptions options, std::shared_ptr<const Router> router,
               std::shared_ptr<const auth::Authenticator> authenticator)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(router),
                                   std::move(authenticator))) {}

Server::~Server() = default;

void Server::Impl::reload_tls(const char* why) {
  auto st = tls->reload();
  if (st.ok())
    log::info(std::string("TLS certificate reloaded (") + why + ")");
  else
    log::warn(std::string("TLS certificate not reloaded (") + why +
              "); keeping the previous one: " + st.error().message);
}

void Server::Impl::watch_tls() {
  tls_timer.expires_after(std::chrono::seconds(std::max(1, opts.tls_poll_seconds)));
  tls_timer.async_wait([this](beast::error_code ec) {
    if (ec || stopping.load()) return;
    // A stat() of two files: cheap enough for the I/O thread; the reload
    // itself (two regular files of at most 1 MiB, never a FIFO: tls.cpp)
    // is rare.
    bool changed = false;
    auto st = tls->reload_if_changed(changed);
    if (changed) {
      if (st.ok())
        log::info("TLS certificate reloaded (the files changed)");
      else
        log::warn("TLS certificate not reloaded (the files changed); keeping the previous one: " +
                  st.error().message);
    }
    watch_tls();
  });
}

void Server::Impl::watch_hup() {
  hup.async_wait([this](beast::error_code ec, int) {
    if (ec || stopping.load()) return;
    if (tls)
      reload_tls("SIGHUP");
    else
      log::info("SIGHUP: nothing to reload (no TLS certificate configured)");
    watch_hup();
  });
}

bool Server::tls() const {
  return impl_->tls != nullptr;
}

Result<std::uint16_t> Server::listen() {
  if (!impl_->opts.tls_cert.empty() || !impl_->opts.tls_key.empty()) {
    if (impl_->opts.tls_cert.empty() || impl_->opts.tls_key.empty())
      return Error::bad_request("TLS needs both [server] tls_cert and tls_key");
    impl_->tls = std::make_unique<TlsCertificate>(impl_->opts.tls_cert, impl_->opts.tls_key);
    if (auto st = impl_->tls->reload(); !st.ok()) return st.error();
  }
  beast::error_code ec;
  auto addr = asio::ip::make_address(impl_->opts.host, ec);
  if (ec) return Error::bad_request("invalid --host '" + impl_->opts.host + "': " + ec.message());
  tcp::endpoint ep(addr, impl_->opts.port);
  auto& a = impl_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec)
    return Error::unavailable("cannot listen on " + impl_->opts.host + ":" +
                              std::to_string(impl_->opts.port) + ": " + ec.message());
  ::fcntl(a.native_handle(), F_SETFD, FD_CLOEXEC);
  return a.local_endpoint().port();
}

void Server::run(const std::function<void(int)>& on_signal) {
  impl_->do_accept();
  {
    // SIGHUP (systemctl reload) reloads the certificate; it never stops the server.
    beast::error_code ec;
    impl_->hup.add(SIGHUP, ec);
    if (ec)
      log::warn("cannot watch SIGHUP: " + ec.message());
    else
      impl_->watch_hup();
  }
  if (impl_->tls) impl_->watch_tls();
  impl_->signals.async_wait([this, on_signal](beast::error_code ec, int signo) {
    if (!ec && on_signal) on_signal(signo);
  });
  std::vector<std::thread> extra;
  for (int i = 1; i < impl_->opts.threads; ++i) extra.emplace_back([this] { impl_->ioc.run(); });
  impl_->ioc.run();
  for (auto& t : extra) t.join();
}

void Server::stop() {
  impl_->stopping = true;
  asio::post(impl_->ioc, [this] {
    beast::error_code ec;
    impl_->acceptor.close(ec);
    impl_->signals.cancel(ec);
    impl_->hup.cancel(ec);
    impl_->tls_timer.cancel();
    impl_->close_all_websockets();
    impl_->stop_timer.expires_after(std::chrono::milliseconds(300));
    impl_->stop_timer.async_wait([this](beast::error_code) { impl_->ioc.stop(); });
  });
}

}  // namespace skylab::http
