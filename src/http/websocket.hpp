// The WebSocket seam between the server (Beast) and protocol handlers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace skylab::http {

//! A live WebSocket connection. All methods are thread-safe and never block:
//! frames are queued and written in order on the connection's strand.
class WebSocket {
 public:
  virtual ~WebSocket() = default;
  //! Queues a text or binary message. Returns false when the connection is
  //! closing or its send queue exceeds the configured bound (the connection
  //! is then closed with 1008, as a slow consumer).
  virtual bool send(std::shared_ptr<const std::string> data, bool binary) = 0;
  //! Starts a close handshake with this code and reason.
  virtual void close(std::uint16_t code, std::string reason) = 0;
  //! The negotiated subprotocol ("" when none).
  virtual const std::string& subprotocol() const = 0;
  //! Bytes queued by send() and not yet written to the socket (a slow
  //! reader's backlog); 0 when the implementation does not tell.
  virtual std::size_t queued_bytes() const { return 0; }
};

//! Receives a connection's events. Calls for one connection are serialized.
class WebSocketHandler {
 public:
  virtual ~WebSocketHandler() = default;
  //! Called once, after the handshake, before any on_message.
  virtual void on_open(std::shared_ptr<WebSocket> ws) = 0;
  virtual void on_message(std::string data, bool binary) = 0;
  //! Called once when the connection ends for any reason.
  virtual void on_close() = 0;
};

}  // namespace skylab::http
