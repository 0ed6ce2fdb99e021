// The connection side of a kernel (as xeus's xserver_zmq): its five ZeroMQ
// sockets, sending signed messages and receiving frames. ZeroMQ itself stays
// in connection.cpp and manager.cpp (the poll loop); sockets are opaque here.
#pragma once

#include <string>
#include <vector>

#include "kernel/wire.hpp"

namespace skylab::kernel {

//! The sockets of one kernel (null when closed). Used on one thread only
//! (the manager's I/O thread), as ZeroMQ sockets must be.
struct Sockets {
  void* shell = nullptr;
  void* control = nullptr;
  void* stdin_ = nullptr;
  void* iopub = nullptr;
  void* hb = nullptr;
};

//! Where a kernel listens: ipc endpoints "<ipc_base>-<port>" when ipc_base
//! is set, else tcp://ip:port. ports: shell, iopub, stdin, control, hb.
struct Endpoints {
  std::string ip;
  std::string ipc_base;
  int ports[5] = {0, 0, 0, 0, 0};
};

//! Creates and connects the five sockets in ZeroMQ context `zctx`: shell and
//! stdin DEALERs with routing id `identity` (so stdin requests of a kernel
//! come back to us), control DEALER, iopub SUB to everything (no HWM), and a
//! relaxed, correlating REQ for heartbeats. No linger on any.
Sockets open_sockets(void* zctx, const std::string& identity, const Endpoints& at);

//! Closes whichever sockets are open and nulls them.
void close_sockets(Sockets& s);

//! Sends `m` with `signature` on `sock` without blocking; false when the
//! queue is full or the socket closed. Null `sock`: nothing, true.
bool send_message(void* sock, const Message& m, const std::string& signature);

//! Receives one multipart message into `frames`; false when none waits.
bool recv_frames(void* sock, std::vector<std::string>& frames);

//! Sends one heartbeat ping on `hb` without blocking.
void send_ping(void* hb);

}  // namespace skylab::kernel
