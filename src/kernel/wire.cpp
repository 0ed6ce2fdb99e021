#include "kernel/wire.hpp"

#include <limits>

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include "common/json_limits.hpp"
#include "common/util.hpp"

namespace skylab::kernel {

std::string_view channel_name(Channel c) {
  switch (c) {
    case Channel::kShell:
      return "shell";
    case Channel::kControl:
      return "control";
    case Channel::kStdin:
      return "stdin";
    case Channel::kIopub:
      return "iopub";
  }
  return "shell";
}

std::optional<Channel> channel_from_name(std::string_view n) {
  if (n == "shell") return Channel::kShell;
  if (n == "control") return Channel::kControl;
  if (n == "stdin") return Channel::kStdin;
  if (n == "iopub") return Channel::kIopub;
  return std::nullopt;
}

std::size_t Message::byte_size() const {
  std::size_t n = header.size() + parent_header.size() + metadata.size() + content.size();
  for (const auto& b : buffers) n += b.size();
  return n;
}

Result<MessageInfo> inspect(const Message& m) {
  auto h = json_limits::parse_or_discarded(m.header);
  if (!h.is_object()) return Error::bad_request("message header is not a JSON object");
  auto id = h.find("msg_id");
  auto type = h.find("msg_type");
  if (id == h.end() || !id->is_string() || type == h.end() || !type->is_string())
    return Error::bad_request("message header lacks msg_id or msg_type");
  MessageInfo info;
  info.msg_id = id->get<std::string>();
  info.msg_type = type->get<std::string>();
  if (auto s = h.find("session"); s != h.end() && s->is_string())
    info.session = s->get<std::string>();
  if (m.parent_header.size() > 2) {
    auto p = json_limits::parse_or_discarded(m.parent_header);
    if (!p.is_object()) return Error::bad_request("parent_header is not a JSON object");
    if (auto pid = p.find("msg_id"); pid != p.end() && pid->is_string())
      info.parent_msg_id = pid->get<std::string>();
    if (auto ps = p.find("session"); ps != p.end() && ps->is_string())
      info.parent_session = ps->get<std::string>();
  } else if (m.parent_header != "{}" && !m.parent_header.empty()) {
    return Error::bad_request("parent_header is not a JSON object");
  }
  return info;
}

namespace {
EVP_MAC* hmac_algorithm() {
  static EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  return mac;
}
}  // namespace

std::string Signer::sign(const Message& m) const {
  if (key_.empty()) return {};
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(hmac_algorithm());
  if (!ctx) return {};
  char digest_name[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest_name, 0),
                         OSSL_PARAM_construct_end()};
  unsigned char out[EVP_MAX_MD_SIZE];
  size_t out_len = 0;
  bool ok = EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key_.data()), key_.size(),
                         params) == 1;
  for (const std::string* part : {&m.header, &m.parent_header, &m.metadata, &m.content}) {
    ok = ok && EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(part->data()),
                              part->size()) == 1;
  }
  ok = ok && EVP_MAC_final(ctx, out, &out_len, sizeof out) == 1;
  EVP_MAC_CTX_free(ctx);
  if (!ok) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  hex.reserve(out_len * 2);
  for (size_t i = 0; i < out_len; ++i) {
    hex.push_back(kHex[out[i] >> 4]);
    hex.push_back(kHex[out[i] & 15]);
  }
  return hex;
}

bool Signer::verify(const Message& m, std::string_view signature) const {
  if (key_.empty()) return true;
  std::string expected = sign(m);
  return !expected.empty() && util::secure_equals(expected, signature);
}

Result<Message> from_frames(std::vector<std::string>& frames, const Signer& signer) {
  std::size_t i = 0;
  while (i < frames.size() && frames[i] != kDelimiter) ++i;
  if (i == frames.size()) return Error::bad_request("no <IDS|MSG> delimiter");
  if (frames.size() < i + 6) return Error::bad_request("too few message parts");
  Message m;
  m.identities.assign(std::make_move_iterator(frames.begin()),
                      std::make_move_iterator(frames.begin() + i));
  const std::string& signature = frames[i + 1];
  m.header = std::move(frames[i + 2]);
  m.parent_header = std::move(frames[i + 3]);
  m.metadata = std::move(frames[i + 4]);
  m.content = std::move(frames[i + 5]);
  for (std::size_t k = i + 6; k < frames.size(); ++k) m.buffers.push_back(std::move(frames[k]));
  if (!signer.verify(m, signature)) return Error::forbidden("invalid message signature");
  // A kernel runs untrusted code: whatever parses these parts later (output
  // recording, jobs, clients) must never see unbounded nesting. Size is not
  // limited here: outputs may legitimately be large.
  json_limits::Limits depth_only;
  depth_only.max_bytes = std::numeric_limits<std::size_t>::max();
  for (const std::string* part : {&m.header, &m.parent_header, &m.metadata, &m.content})
    if (json_limits::check_shape(*part, depth_only) != json_limits::Shape::kOk)
      return Error::bad_request("a message part is nested deeper than " +
                                std::to_string(json_limits::kDefaultMaxDepth) + " levels");
  return m;
}

Message make_message(std::string_view msg_type, const nlohmann::json& content,
                     std::string_view session, std::string_view username,
                     std::string_view parent_header) {
  Message m;
  nlohmann::json h = {{"msg_id", util::uuid4()},         {"msg_type", std::string(msg_type)},
                      {"session", std::string(session)}, {"username", std::string(username)},
                      {"date", util::iso_now()},         {"version", "5.3"}};
  m.header = h.dump();
  m.parent_header = std::string(parent_header);
  m.metadata = "{}";
  m.content = content.dump();
  return m;
}

}  // namespace skylab::kernel
