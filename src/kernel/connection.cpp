#include "kernel/connection.hpp"

#include <zmq.h>

#include <string_view>
#include <utility>

namespace skylab::kernel {

namespace {
void close_socket(void*& s) {
  if (s) zmq_close(s);
  s = nullptr;
}

bool send_frames(void* sock, const std::vector<std::string_view>& frames) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    int flags = ZMQ_DONTWAIT | (i + 1 < frames.size() ? ZMQ_SNDMORE : 0);
    if (zmq_send(sock, frames[i].data(), frames[i].size(), flags) < 0) return false;
  }
  return true;
}
}  // namespace

Sockets open_sockets(void* zctx, const std::string& identity, const Endpoints& at) {
  auto endpoint = [&](int port) {
    if (!at.ipc_base.empty()) return "ipc://" + at.ipc_base + "-" + std::to_string(port);
    return "tcp://" + at.ip + ":" + std::to_string(port);
  };
  auto make = [&](int type, int port) {
    void* s = zmq_socket(zctx, type);
    int zero = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &zero, sizeof zero);
    return std::make_pair(s, endpoint(port));
  };
  auto [shell, e_shell] = make(ZMQ_DEALER, at.ports[0]);
  auto [iopub, e_iopub] = make(ZMQ_SUB, at.ports[1]);
  auto [stdin_, e_stdin] = make(ZMQ_DEALER, at.ports[2]);
  auto [control, e_control] = make(ZMQ_DEALER, at.ports[3]);
  auto [hb, e_hb] = make(ZMQ_REQ, at.ports[4]);
  zmq_setsockopt(shell, ZMQ_ROUTING_ID, identity.data(), identity.size());
  zmq_setsockopt(stdin_, ZMQ_ROUTING_ID, identity.data(), identity.size());
  zmq_setsockopt(iopub, ZMQ_SUBSCRIBE, "", 0);
  int unlimited = 0;
  zmq_setsockopt(iopub, ZMQ_RCVHWM, &unlimited, sizeof unlimited);
  int one = 1;
  zmq_setsockopt(hb, ZMQ_REQ_RELAXED, &one, sizeof one);
  zmq_setsockopt(hb, ZMQ_REQ_CORRELATE, &one, sizeof one);
  zmq_connect(shell, e_shell.c_str());
  zmq_connect(iopub, e_iopub.c_str());
  zmq_connect(stdin_, e_stdin.c_str());
  zmq_connect(control, e_control.c_str());
  zmq_connect(hb, e_hb.c_str());
  return Sockets{shell, control, stdin_, iopub, hb};
}

void close_sockets(Sockets& s) {
  close_socket(s.shell);
  close_socket(s.control);
  close_socket(s.stdin_);
  close_socket(s.iopub);
  close_socket(s.hb);
}

bool send_message(void* sock, const Message& m, const std::string& signature) {
  if (!sock) return true;
  std::vector<std::string_view> frames = {kDelimiter,      signature,  m.header,
                                          m.parent_header, m.metadata, m.content};
  for (const auto& b : m.buffers) frames.push_back(b);
  return send_frames(sock, frames);
}

bool recv_frames(void* sock, std::vector<std::string>& frames) {
  frames.clear();
  while (true) {
    zmq_msg_t part;
    zmq_msg_init(&part);
    int flags = frames.empty() ? ZMQ_DONTWAIT : 0;
    if (zmq_msg_recv(&part, sock, flags) < 0) {
      zmq_msg_close(&part);
      return !frames.empty();
    }
    frames.emplace_back(static_cast<const char*>(zmq_msg_data(&part)), zmq_msg_size(&part));
    bool more = zmq_msg_more(&part);
    zmq_msg_close(&part);
    if (!more) return true;
  }
}

void send_ping(void* hb) {
  zmq_send(hb, "ping", 4, ZMQ_DONTWAIT);
}

}  // namespace skylab::kernel
