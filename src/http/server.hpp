// The asynchronous HTTP/1.1 + WebSocket server (Boost.Beast on Asio).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "auth/auth.hpp"
#include "common/result.hpp"
#include "http/router.hpp"

namespace skylab::http {

struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8888;
  int threads = 1;                                 //!< Asio worker threads
  std::size_t ws_message_limit = 32u << 20;        //!< bytes per incoming WS message
  std::size_t ws_send_queue_limit = 256u << 20;    //!< bytes queued per WS before 1008
  int header_timeout_seconds = 30;
  int idle_timeout_seconds = 300;
};

//! Owns the io_context and the listening socket. Thread-safe: stop() may be
//! called from any thread (including signal handlers installed via on_signal).
class Server {
 public:
  Server(ServerOptions options, std::shared_ptr<const Router> router,
         std::shared_ptr<const auth::Authenticator> authenticator);
  ~Server();

  //! Binds and listens. Returns the bound port (useful with port 0).
  Result<std::uint16_t> listen();
  //! Runs until stop(); `on_signal` is called (on an Asio thread) for
  //! SIGINT/SIGTERM and should arrange an orderly stop.
  void run(std::function<void(int)> on_signal);
  //! Stops accepting, closes connections and returns from run().
  void stop();

  struct Impl;  // public so that session classes in server.cpp can name it

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace skylab::http
