// How kernel messages travel over Jupyter Server's kernel WebSocket:
// the legacy JSON framing (with its binary variant for buffers) and the
// `v1.kernel.websocket.jupyter.org` subprotocol. Pure functions; no I/O.
#pragma once

#include <string>
#include <string_view>
#include <utility>

#include "common/result.hpp"
#include "kernel/wire.hpp"

namespace skylab::kernel {

enum class WsProtocol { kLegacy, kV1 };
inline constexpr std::string_view kV1Subprotocol = "v1.kernel.websocket.jupyter.org";

struct WsFrame {
  std::string data;
  bool binary = false;
};

//! Encodes a kernel message for a client. `info` must come from inspect(msg).
WsFrame encode_for_client(WsProtocol p, Channel ch, const Message& msg, const MessageInfo& info);

//! Decodes one client frame. Fails (with a message for the log) on any
//! malformed input; never throws.
Result<std::pair<Channel, Message>> decode_from_client(WsProtocol p, std::string_view data, bool binary);

}  // namespace skylab::kernel
