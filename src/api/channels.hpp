// Kernel WebSocket bridging: many client connections per kernel, routing of
// replies and stdin to the requesting client, iopub to all, and a bounded
// replay buffer while no client is connected.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/mutex.hpp"
#include "http/websocket.hpp"
#include "kernel/manager.hpp"
#include "kernel/ws_framing.hpp"

namespace skylab::api {

class ChannelsHub;

//! One client WebSocket on a kernel's channels.
class ChannelsConnection : public http::WebSocketHandler,
                           public std::enable_shared_from_this<ChannelsConnection> {
 public:
  ChannelsConnection(std::shared_ptr<ChannelsHub> hub,
                     std::shared_ptr<kernel::KernelService> kernels, std::string kernel_id,
                     std::string session_id, kernel::WsProtocol protocol);
  void on_open(std::shared_ptr<http::WebSocket> ws) override;
  void on_message(std::string data, bool binary) override;
  void on_close() override;

  const std::string& session_id() const { return session_id_; }
  kernel::WsProtocol protocol() const { return protocol_; }
  void send(std::shared_ptr<const std::string> frame, bool binary);
  void close(std::uint16_t code, const std::string& reason);

 private:
  std::shared_ptr<ChannelsHub> hub_;
  std::shared_ptr<kernel::KernelService> kernels_;
  std::string kernel_id_, session_id_;
  kernel::WsProtocol protocol_;
  // Weak: the WebSocket owns this handler; set once in on_open, before the
  // hub can see this connection.
  std::weak_ptr<http::WebSocket> ws_;
};

//! Sees every message a client sends to a kernel, before it is sent (the
//! live notebook recorder). Called on the connection's thread; must be quick.
using ClientMessageHook = std::function<void(const std::string& kernel_id, kernel::Channel ch,
                                             const kernel::Message& msg)>;

//! All connections of one kernel; the kernel manager's observer for it.
class ChannelsHub : public kernel::KernelObserver,
                    public std::enable_shared_from_this<ChannelsHub> {
 public:
  static constexpr std::size_t kMaxPending = 10000;
  static constexpr std::size_t kMaxBufferedMessages = 10000;
  static constexpr std::size_t kMaxBufferedBytes = 64u << 20;

  //! `on_removed` runs once when the kernel is removed (unregisters the hub).
  ChannelsHub(std::string kernel_id, std::function<void()> on_removed,
              ClientMessageHook client_hook = {})
      : kernel_id_(std::move(kernel_id)),
        on_removed_(std::move(on_removed)),
        client_hook_(std::move(client_hook)) {}

  //! A client is about to send `msg` on `ch` (passes it to the hook, if any).
  void client_sent(kernel::Channel ch, const kernel::Message& msg) {
    if (client_hook_) client_hook_(kernel_id_, ch, msg);
  }

  void attach(const std::shared_ptr<ChannelsConnection>& c);
  void detach(const ChannelsConnection* c);
  //! Remembers that `c` sent request `msg_id`, so replies go back to it.
  void track_request(const std::string& msg_id, const std::shared_ptr<ChannelsConnection>& c);
  void close_all(std::uint16_t code, const std::string& reason);

  void on_kernel_message(kernel::Channel ch, const std::shared_ptr<const kernel::Message>& msg,
                         const kernel::MessageInfo& info) override;
  void on_kernel_removed() override;

 private:
  struct Pending {
    std::weak_ptr<ChannelsConnection> conn;
    std::string session;
  };
  struct Buffered {
    kernel::Channel ch;
    std::shared_ptr<const kernel::Message> msg;
    kernel::MessageInfo info;
  };
  static void deliver(const std::vector<std::shared_ptr<ChannelsConnection>>& to,
                      kernel::Channel ch, const kernel::Message& msg,
                      const kernel::MessageInfo& info);

  std::string kernel_id_;
  std::function<void()> on_removed_;
  ClientMessageHook client_hook_;
  Mutex mutex_;
  std::vector<std::shared_ptr<ChannelsConnection>> conns_ GUARDED_BY(mutex_);
  std::unordered_map<std::string, Pending> pending_ GUARDED_BY(mutex_);
  std::deque<std::string> pending_order_ GUARDED_BY(mutex_);
  bool buffering_ GUARDED_BY(mutex_) = false;
  std::string buffer_session_ GUARDED_BY(mutex_);
  std::deque<Buffered> buffer_ GUARDED_BY(mutex_);
  std::size_t buffer_bytes_ GUARDED_BY(mutex_) = 0;
  bool removed_ GUARDED_BY(mutex_) = false;
};

//! kernel id -> hub. Thread-safe.
class ChannelsRegistry : public std::enable_shared_from_this<ChannelsRegistry> {
 public:
  explicit ChannelsRegistry(std::shared_ptr<kernel::KernelService> kernels,
                            ClientMessageHook client_hook = {})
      : kernels_(std::move(kernels)), client_hook_(std::move(client_hook)) {}
  //! The hub for a kernel, created and registered as its observer on first use.
  Result<std::shared_ptr<ChannelsHub>> hub(const std::string& kernel_id);
  void forget(const std::string& kernel_id);
  void close_all();

 private:
  std::shared_ptr<kernel::KernelService> kernels_;
  ClientMessageHook client_hook_;
  Mutex mutex_;
  std::map<std::string, std::shared_ptr<ChannelsHub>> hubs_ GUARDED_BY(mutex_);
};

}  // namespace skylab::api
