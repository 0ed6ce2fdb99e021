#include "kernel/ws_framing.hpp"

#include <cstdint>
#include <cstring>

#include <nlohmann/json.hpp>

#include "common/json_limits.hpp"

namespace skylab::kernel {

namespace {

void put_le64(std::string& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint64_t get_le64(std::string_view s, std::size_t at) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}
void put_be32(std::string& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
std::uint32_t get_be32(std::string_view s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

std::string json_string(std::string_view s) {
  return nlohmann::json(std::string(s))
      .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// The legacy JSON envelope, assembled from the raw parts without re-encoding.
std::string legacy_json(Channel ch, const Message& m, const MessageInfo& info,
                        bool with_buffers_key) {
  std::string out;
  out.reserve(m.byte_size() + 256);
  out += "{\"header\":";
  out += m.header;
  out += ",\"msg_id\":";
  out += json_string(info.msg_id);
  out += ",\"msg_type\":";
  out += json_string(info.msg_type);
  out += ",\"parent_header\":";
  out += m.parent_header.empty() ? "{}" : m.parent_header;
  out += ",\"metadata\":";
  out += m.metadata.empty() ? "{}" : m.metadata;
  out += ",\"content\":";
  out += m.content.empty() ? "{}" : m.content;
  if (with_buffers_key) out += ",\"buffers\":[]";
  out += ",\"channel\":\"";
  out += channel_name(ch);
  out += "\"}";
  return out;
}

// Sets *close_code when `text` breaks a JSON limit (1009 size, 1007 depth).
bool within_limits(std::string_view text, std::uint16_t* close_code) {
  auto shape = json_limits::check_shape(text);
  if (shape == json_limits::Shape::kOk) return true;
  if (close_code) *close_code = shape == json_limits::Shape::kTooLarge ? 1009 : 1007;
  return false;
}

Result<std::pair<Channel, Message>> from_legacy_json(std::string_view text,
                                                     std::uint16_t* close_code) {
  if (!within_limits(text, close_code))
    return Error::bad_request("frame nested deeper than " +
                              std::to_string(json_limits::kDefaultMaxDepth) +
                              " levels or too large");
  auto j = json_limits::parse_or_discarded(text);
  if (!j.is_object()) return Error::bad_request("frame is not a JSON object");
  auto ch_it = j.find("channel");
  if (ch_it == j.end() || !ch_it->is_string()) return Error::bad_request("frame lacks a channel");
  auto ch = channel_from_name(ch_it->get<std::string>());
  if (!ch) return Error::bad_request("unknown channel");
  Message m;
  auto part = [&](const char* key, std::string& out, bool required) -> bool {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
      if (required) return false;
      out = "{}";
      return true;
    }
    if (!it->is_object()) return false;
    out = it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return true;
  };
  if (!part("header", m.header, true)) return Error::bad_request("frame lacks a header object");
  if (!part("parent_header", m.parent_header, false) || !part("metadata", m.metadata, false) ||
      !part("content", m.content, false))
    return Error::bad_request("parent_header, metadata and content must be objects");
  return std::make_pair(*ch, std::move(m));
}

}  // namespace

WsFrame encode_for_client(WsProtocol p, Channel ch, const Message& m, const MessageInfo& info) {
  WsFrame f;
  if (p == WsProtocol::kV1) {
    f.binary = true;
    auto name = channel_name(ch);
    std::size_t nparts = 4 + m.buffers.size();
    std::size_t noffsets = nparts + 2;
    std::size_t total = 8 * (noffsets + 1) + name.size() + m.byte_size();
    f.data.reserve(total);
    put_le64(f.data, noffsets);
    std::uint64_t off = 8 * (noffsets + 1);
    put_le64(f.data, off);
    off += name.size();
    put_le64(f.data, off);
    for (const std::string* s : {&m.header, &m.parent_header, &m.metadata, &m.content}) {
      off += s->size();
      put_le64(f.data, off);
    }
    for (const auto& b : m.buffers) {
      off += b.size();
      put_le64(f.data, off);
    }
    f.data += name;
    f.data += m.header;
    f.data += m.parent_header;
    f.data += m.metadata;
    f.data += m.content;
    for (const auto& b : m.buffers) f.data += b;
    return f;
  }
  if (m.buffers.empty()) {
    f.data = legacy_json(ch, m, info, true);
    return f;
  }
  // Legacy binary: u32 count, u32 offsets (big-endian), JSON, buffers.
  f.binary = true;
  std::string json = legacy_json(ch, m, info, false);
  std::uint32_t nbufs = static_cast<std::uint32_t>(1 + m.buffers.size());
  put_be32(f.data, nbufs);
  std::uint32_t off = 4 * (nbufs + 1);
  put_be32(f.data, off);
  off += static_cast<std::uint32_t>(json.size());
  for (std::size_t i = 0; i + 1 < m.buffers.size() + 1; ++i) {
    put_be32(f.data, off);
    off += static_cast<std::uint32_t>(m.buffers[i].size());
  }
  f.data += json;
  for (const auto& b : m.buffers) f.data += b;
  return f;
}

Result<std::pair<Channel, Message>> decode_from_client(WsProtocol p, std::string_view data,
                                                       bool binary, std::uint16_t* close_code) {
  if (close_code) *close_code = 0;
  if (p == WsProtocol::kV1) {
    if (!binary)
      return from_legacy_json(data,
                              close_code);  // tolerate JSON text on v1, as Jupyter Server does
    if (data.size() < 8) return Error::bad_request("v1 frame too short");
    std::uint64_t n = get_le64(data, 0);
    if (n < 6 || n > 4096 || data.size() < 8 * (n + 1))
      return Error::bad_request("v1 frame: bad offset count");
    std::vector<std::uint64_t> offs(n);
    for (std::uint64_t i = 0; i < n; ++i) {
      offs[i] = get_le64(data, 8 * (i + 1));
      if (offs[i] > data.size() || (i > 0 && offs[i] < offs[i - 1]) || offs[i] < 8 * (n + 1))
        return Error::bad_request("v1 frame: offsets out of range");
    }
    auto part = [&](std::size_t i) {
      return std::string(data.substr(offs[i], offs[i + 1] - offs[i]));
    };
    auto ch = channel_from_name(part(0));
    if (!ch) return Error::bad_request("v1 frame: unknown channel");
    Message m;
    m.header = part(1);
    m.parent_header = part(2);
    m.metadata = part(3);
    m.content = part(4);
    // The parts pass through unparsed, but the kernel, other clients and
    // the outputs recorded from the reply will parse them.
    for (const std::string* s : {&m.header, &m.parent_header, &m.metadata, &m.content})
      if (!within_limits(*s, close_code))
        return Error::bad_request("v1 frame: a part is nested deeper than " +
                                  std::to_string(json_limits::kDefaultMaxDepth) +
                                  " levels or too large");
    for (std::size_t i = 5; i + 1 < n; ++i) m.buffers.push_back(part(i));
    return std::make_pair(*ch, std::move(m));
  }
  if (!binary) return from_legacy_json(data, close_code);
  if (data.size() < 8) return Error::bad_request("binary frame too short");
  std::uint32_t nbufs = get_be32(data, 0);
  if (nbufs < 1 || nbufs > 4096 || data.size() < 4ull * (nbufs + 1))
    return Error::bad_request("binary frame: bad count");
  std::vector<std::size_t> offs(nbufs);
  for (std::uint32_t i = 0; i < nbufs; ++i) {
    offs[i] = get_be32(data, 4 * (std::size_t{i} + 1));
    if (offs[i] > data.size() || (i > 0 && offs[i] < offs[i - 1]) || offs[i] < 4ull * (nbufs + 1))
      return Error::bad_request("binary frame: offsets out of range");
  }
  offs.push_back(data.size());
  auto decoded = from_legacy_json(data.substr(offs[0], offs[1] - offs[0]), close_code);
  if (!decoded.ok()) return decoded;
  for (std::uint32_t i = 1; i < nbufs; ++i)
    decoded->second.buffers.emplace_back(data.substr(offs[i], offs[i + 1] - offs[i]));
  return decoded;
}

}  // namespace skylab::kernel
