// The asynchronous HTTP/1.1 + WebSocket server (Boost.Beast on Asio).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "auth/auth.hpp"
#include "common/result.hpp"
#include "http/router.hpp"

namespace skylab::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8888;
  int threads = 1;                               //!< Asio worker threads
  std::size_t ws_message_limit = 32u << 20;      //!< bytes per incoming WS message
  std::size_t ws_send_queue_limit = 256u << 20;  //!< bytes queued per WS before 1008
  int header_timeout_seconds = 30;
  int idle_timeout_seconds = 300;
  //! Every request arrives over TLS (a TLS-terminating proxy in front):
  //! cookies get `Secure` and the session cookie the `__Host-` prefix.
  bool secure_cookies = false;
  //! Peers (IP addresses or CIDR networks) whose X-Forwarded-For, -Proto and -Host
  //! headers are believed: the client address for throttling, TLS for
  //! cookies, the host for Origin checks. Empty: believe no one.
  std::vector<std::string> trusted_proxies;
  //! PEM certificate chain and key: serve HTTPS and WSS (cookies Secure,
  //! Strict-Transport-Security). Reloaded on SIGHUP and when either file
  //! changes (checked every `tls_poll_seconds`); open connections keep the
  //! certificate they were accepted with. Both empty: plain HTTP.
  std::string tls_cert, tls_key;
  int tls_poll_seconds = 3;
  //! Host header values (host names or addresses, any port) the server
  //! answers; anything else gets 403 before routing, WebSocket upgrades
  //! included (DNS rebinding). Empty or containing "*": any host. See
  //! host_policy.hpp; `skylab serve` fills it from default_allowed_hosts().
  std::vector<std::string> allowed_hosts;
  //! Sent with every response that does not set its own
  //! Content-Security-Policy: nothing may load, frame or run.
  std::string default_csp = "default-src 'none'; frame-ancestors 'none'; sandbox";
};

//! Owns the io_context and the listening socket. Thread-safe: stop() may be
//! called from any thread (including signal handlers installed via on_signal).
class Server {
 public:
  Server(ServerOptions options, std::shared_ptr<const Router> router,
         std::shared_ptr<const auth::Authenticator> authenticator);
  ~Server();

  //! Loads the TLS certificate (if any), binds and listens. Returns the bound
  //! port (useful with port 0).
  Result<std::uint16_t> listen();
  //! Runs until stop(); `on_signal` is called (on an Asio thread) for
  //! SIGINT/SIGTERM and should arrange an orderly stop. SIGHUP reloads the
  //! TLS certificate (without TLS it is logged and ignored).
  void run(const std::function<void(int)>& on_signal);
  //! Whether connections are TLS (after a successful listen()).
  bool tls() const;
  //! Stops accepting, closes connections and returns from run().
  void stop();
  //! Closes (1008, `reason`) every open WebSocket whose identity (as
  //! authenticated at the upgrade) `should_close` accepts. Thread-safe;
  //! `should_close` runs on the calling thread, outside the server's locks.
  //! Returns how many were closed.
  std::size_t close_websockets_if(const std::function<bool(const auth::Identity&)>& should_close,
                                  const std::string& reason);

  struct Impl;  // public so that session classes in server.cpp can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace skylab::http
