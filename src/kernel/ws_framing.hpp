// How kernel messages travel over Jupyter Server's kernel WebSocket:
// the legacy JSON framing (with its binary variant for buffers) and the
// `v1.kernel.websocket.jupyter.org` subprotocol. Pure functions; no I/O.
#pragma once

#include <cstdint>
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
//! When a JSON part breaks a limit (nesting deeper than
//! json_limits::kDefaultMaxDepth, or larger than its size limit) it also sets
//! *close_code to 1007 (depth) or 1009 (size): the connection should close.
//! Otherwise *close_code is 0 and a failed frame may simply be ignored.
Result<std::pair<Channel, Message>> decode_from_client(WsProtocol p, std::string_view data,
                                                       bool binary,
                                                       std::uint16_t* close_code = nullptr);

}  // namespace skylab::kernel
