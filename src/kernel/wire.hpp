// The Jupyter wire protocol, independent of ZeroMQ and HTTP: message parts,
// HMAC-SHA256 signing and verification, header inspection, construction.
// See https://jupyter-client.readthedocs.io/en/stable/messaging.html
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/result.hpp"

namespace skylab::kernel {

enum class Channel { kShell, kControl, kStdin, kIopub };

std::string_view channel_name(Channel c);
std::optional<Channel> channel_from_name(std::string_view name);

//! One Jupyter message with its four JSON parts kept as serialized text, so
//! that messages pass through the server without being re-encoded.
struct Message {
  std::vector<std::string> identities;  //!< ZeroMQ routing prefix
  std::string header;
  std::string parent_header;
  std::string metadata;
  std::string content;
  std::vector<std::string> buffers;

  std::size_t byte_size() const;
};

//! The fields of header and parent_header that routing needs.
struct MessageInfo {
  std::string msg_id;
  std::string msg_type;
  std::string session;
  std::string parent_msg_id;
  std::string parent_session;
};

//! Parses header and parent_header; fails unless header is an object with
//! string `msg_id` and `msg_type`, and parent_header is an object.
Result<MessageInfo> inspect(const Message& m);

//! HMAC-SHA256 over header, parent_header, metadata and content, hex encoded.
//! An empty key disables signing (signature ""). Thread-safe.
class Signer {
 public:
  explicit Signer(std::string key) : key_(std::move(key)) {}
  std::string sign(const Message& m) const;
  //! Constant-time check of `signature` against sign(m).
  bool verify(const Message& m, std::string_view signature) const;
  const std::string& key() const { return key_; }

 private:
  std::string key_;
};

inline constexpr std::string_view kDelimiter = "<IDS|MSG>";

//! Splits ZeroMQ frames (identities, delimiter, signature, 4 parts, buffers)
//! into a Message, verifying the signature. Frames are moved from. Fails
//! when header, parent_header, metadata or content nests deeper than
//! json_limits::kDefaultMaxDepth (the message is to be dropped).
Result<Message> from_frames(std::vector<std::string>& frames, const Signer& signer);

//! Builds a new message with a fresh header (msg_id, date, version 5.3).
Message make_message(std::string_view msg_type, const nlohmann::json& content,
                     std::string_view session, std::string_view username = "skylab",
                     std::string_view parent_header = "{}");

}  // namespace skylab::kernel
