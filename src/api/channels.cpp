#include "api/channels.hpp"

#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/secrets.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "runtime/service.hpp"

namespace skylab::api {

using kernel::Channel;
using kernel::WsProtocol;

// ---- connection ----

ChannelsConnection::ChannelsConnection(std::shared_ptr<ChannelsHub> hub,
                                       std::shared_ptr<kernel::KernelService> kernels,
                                       std::string kernel_id, std::string session_id,
                                       WsProtocol protocol)
    : hub_(std::move(hub)),
      kernels_(std::move(kernels)),
      kernel_id_(std::move(kernel_id)),
      session_id_(std::move(session_id)),
      protocol_(protocol) {}

void ChannelsConnection::on_open(std::shared_ptr<http::WebSocket> ws) {
  ws_ = ws;
  kernels_->add_connections(kernel_id_, 1);
  hub_->attach(shared_from_this());
}

void ChannelsConnection::on_message(std::string data, bool binary) {
  std::uint16_t close_code = 0;
  auto decoded = kernel::decode_from_client(protocol_, data, binary, &close_code);
  if (!decoded.ok()) {
    if (close_code != 0) {  // a limit: nothing reaches the kernel, the client is told why
      log::info("kernel " + kernel_id_ + ": refused client frame: " + decoded.error().message);
      close(close_code, close_code == 1009 ? "message too big" : "JSON nested too deeply");
      return;
    }
    log::info("kernel " + kernel_id_ + ": ignored client frame: " + decoded.error().message);
    return;
  }
  auto& [ch, msg] = decoded.value();
  if (ch == Channel::kIopub) return;
  auto info = kernel::inspect(msg);
  if (!info.ok()) {
    log::info("kernel " + kernel_id_ + ": ignored client message: " + info.error().message);
    return;
  }
  if (ch != Channel::kStdin) hub_->track_request(info->msg_id, shared_from_this());
  hub_->client_sent(ch, msg);
  auto st = kernels_->send(kernel_id_, ch, std::move(msg));
  if (!st.ok()) close(1011, st.error().message);
}

void ChannelsConnection::on_close() {
  hub_->detach(this);
  kernels_->add_connections(kernel_id_, -1);
}

void ChannelsConnection::send(std::shared_ptr<const std::string> frame, bool binary) {
  if (auto ws = ws_.lock()) ws->send(std::move(frame), binary);
}

void ChannelsConnection::close(std::uint16_t code, const std::string& reason) {
  if (auto ws = ws_.lock()) ws->close(code, reason);
}

// ---- hub ----

namespace {
// A shell or control *_reply is the last message a request gets.
bool ends_request(Channel ch, const kernel::MessageInfo& info) {
  const std::string& t = info.msg_type;
  return (ch == Channel::kShell || ch == Channel::kControl) && t.size() > 6 &&
         t.compare(t.size() - 6, 6, "_reply") == 0;
}
}  // namespace

void ChannelsHub::attach(const std::shared_ptr<ChannelsConnection>& c) {
  std::deque<Buffered> replay;
  {
    MutexLock lock(mutex_);
    if (removed_) {
      c->close(1000, "kernel shut down");
      return;
    }
    conns_.push_back(c);
    if (buffering_) {
      if (!c->session_id().empty() && c->session_id() == buffer_session_) replay.swap(buffer_);
      buffer_.clear();
      buffer_bytes_ = 0;
      buffering_ = false;
    }
  }
  for (auto& b : replay) deliver({c}, b.ch, *b.msg, b.info);
}

void ChannelsHub::detach(const ChannelsConnection* c) {
  MutexLock lock(mutex_);
  auto it = std::find_if(conns_.begin(), conns_.end(), [&](auto& p) { return p.get() == c; });
  if (it == conns_.end()) return;
  std::string session = (*it)->session_id();
  conns_.erase(it);
  if (conns_.empty() && !removed_) {
    buffering_ = true;
    buffer_session_ = session;
    buffer_.clear();
    buffer_bytes_ = 0;
  }
}

void ChannelsHub::track_request(const std::string& msg_id,
                                const std::shared_ptr<ChannelsConnection>& c) {
  MutexLock lock(mutex_);
  if (pending_.size() >= kMaxPending) {
    while (!pending_order_.empty() && pending_.size() >= kMaxPending) {
      pending_.erase(pending_order_.front());
      pending_order_.pop_front();
    }
  }
  pending_[msg_id] = Pending{c, c->session_id()};
  pending_order_.push_back(msg_id);
  if (pending_order_.size() > 4 * kMaxPending) {
    std::deque<std::string> live;
    for (auto& id : pending_order_)
      if (pending_.count(id)) live.push_back(id);
    pending_order_.swap(live);
  }
}

void ChannelsHub::deliver(const std::vector<std::shared_ptr<ChannelsConnection>>& to, Channel ch,
                          const kernel::Message& msg, const kernel::MessageInfo& info) {
  std::shared_ptr<const std::string> frames[2];
  bool binary[2] = {false, false};
  for (auto& c : to) {
    int p = c->protocol() == WsProtocol::kV1 ? 1 : 0;
    if (!frames[p]) {
      auto f = kernel::encode_for_client(c->protocol(), ch, msg, info);
      binary[p] = f.binary;
      frames[p] = std::make_shared<const std::string>(std::move(f.data));
    }
    c->send(frames[p], binary[p]);
  }
}

void ChannelsHub::on_kernel_message(Channel ch, const std::shared_ptr<const kernel::Message>& msg,
                                    const kernel::MessageInfo& info) {
  // The kernel→server secret protocol is the server's alone (api/secrets.hpp).
  if (ch == Channel::kStdin && info.msg_type == kSecretRequest) return;
  std::vector<std::shared_ptr<ChannelsConnection>> to;
  {
    MutexLock lock(mutex_);
    if (conns_.empty()) {
      if (!buffering_) return;
      buffer_.push_back({ch, msg, info});
      buffer_bytes_ += msg->byte_size();
      while (!buffer_.empty() &&
             (buffer_.size() > kMaxBufferedMessages || buffer_bytes_ > kMaxBufferedBytes)) {
        buffer_bytes_ -= buffer_.front().msg->byte_size();
        buffer_.pop_front();
      }
      if (ends_request(ch, info)) pending_.erase(info.parent_msg_id);
      return;
    }
    if (ch == Channel::kIopub) {
      to = conns_;
    } else {
      auto it = pending_.find(info.parent_msg_id);
      if (it != pending_.end()) {
        auto c = it->second.conn.lock();
        bool attached = c && std::find(conns_.begin(), conns_.end(), c) != conns_.end();
        if (!attached) {
          c.reset();
          // The requester reconnected: same WebSocket session id.
          for (auto& other : conns_)
            if (!it->second.session.empty() && other->session_id() == it->second.session) c = other;
        }
        if (c) to.push_back(std::move(c));
        if (ends_request(ch, info)) pending_.erase(it);
      }
    }
  }
  if (!to.empty()) deliver(to, ch, *msg, info);
}

void ChannelsHub::close_all(std::uint16_t code, const std::string& reason) {
  std::vector<std::shared_ptr<ChannelsConnection>> conns;
  {
    MutexLock lock(mutex_);
    conns = conns_;
  }
  for (auto& c : conns) c->close(code, reason);
}

void ChannelsHub::on_kernel_removed() {
  {
    MutexLock lock(mutex_);
    removed_ = true;
    buffer_.clear();
    pending_.clear();
  }
  close_all(1000, "kernel shut down");
  if (on_removed_) on_removed_();
}

// ---- registry ----

Result<std::shared_ptr<ChannelsHub>> ChannelsRegistry::hub(const std::string& kernel_id) {
  MutexLock lock(mutex_);
  auto it = hubs_.find(kernel_id);
  if (it != hubs_.end()) return it->second;
  std::weak_ptr<ChannelsRegistry> self = weak_from_this();
  auto h = std::make_shared<ChannelsHub>(
      kernel_id,
      [self, kernel_id] {
        if (auto reg = self.lock()) reg->forget(kernel_id);
      },
      client_hook_);
  auto st = kernels_->add_observer(kernel_id, h);
  if (!st.ok()) return st.error();
  hubs_[kernel_id] = h;
  return h;
}

void ChannelsRegistry::forget(const std::string& kernel_id) {
  MutexLock lock(mutex_);
  hubs_.erase(kernel_id);
}

void ChannelsRegistry::close_all() {
  std::vector<std::shared_ptr<ChannelsHub>> hubs;
  {
    MutexLock lock(mutex_);
    for (auto& [_, h] : hubs_) hubs.push_back(h);
  }
  for (auto& h : hubs) h->close_all(1001, "server shutting down");
}

// ---- route ----

void add_channel_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  r.add_websocket("/api/kernels/([0-9a-fA-F-]{1,64})/channels/?", [ctx](http::Request& req) {
    http::Upgrade up;
    auto k = ctx->kernels->get(req.params[0]);
    if (!k.ok() || !may_access(req.user, k->owner)) {
      up.refuse = http::Response::error(404, "Kernel does not exist: " + req.params[0]);
      return up;
    }
    if (!ctx->runtimes->lease_of(k->id).empty()) {
      up.refuse = http::Response::error(409, "This kernel runs a job; see /api/skylab/jobs");
      return up;
    }
    auto hub = ctx->channels->hub(k->id);
    if (!hub.ok()) {
      up.refuse = http::Response::from_error(hub.error());
      return up;
    }
    WsProtocol protocol = WsProtocol::kLegacy;
    std::string offered(req.header("sec-websocket-protocol"));
    std::size_t pos = 0;
    while (pos <= offered.size()) {
      auto comma = offered.find(',', pos);
      std::string item =
          offered.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      while (!item.empty() && item.front() == ' ') item.erase(0, 1);
      while (!item.empty() && item.back() == ' ') item.pop_back();
      if (item == kernel::kV1Subprotocol) protocol = WsProtocol::kV1;
      if (comma == std::string::npos) break;
      pos = comma + 1;
    }
    if (protocol == WsProtocol::kV1) up.subprotocol = std::string(kernel::kV1Subprotocol);
    std::string session = req.query_param("session_id").value_or("");
    if (session.size() > 256) session.resize(256);
    up.handler =
        std::make_shared<ChannelsConnection>(hub.value(), ctx->kernels, k->id, session, protocol);
    return up;
  });
}

}  // namespace skylab::api
