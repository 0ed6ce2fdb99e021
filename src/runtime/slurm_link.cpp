#include "runtime/slurm_link.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <sodium.h>

#include "common/safe_fs.hpp"

namespace skylab::runtime {

namespace {

constexpr char kKdfContext[crypto_kdf_CONTEXTBYTES] = {'s', 'k', 'y', 'a', 'g', 'e', 'n', 't'};

// 1: ok, 0: EOF before anything, -1: error or EOF midway.
int read_all(int fd, void* p, std::size_t n) {
  auto* b = static_cast<char*>(p);
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd, b + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) return got == 0 ? 0 : -1;
    if (r < 0) return -1;
    got += static_cast<std::size_t>(r);
  }
  return 1;
}

void put_u32(std::string& s, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s += static_cast<char>((v >> (8 * i)) & 0xff);
}
std::uint32_t get_u32(const unsigned char* p) {
  return std::uint32_t(p[0]) | std::uint32_t(p[1]) << 8 | std::uint32_t(p[2]) << 16 |
         std::uint32_t(p[3]) << 24;
}

}  // namespace

SecureChannel::SecureChannel(int fd, const std::string& secret, bool agent_side) : fd_(fd) {
  // Idempotent; fails only without a usable random source, and then no key is safe.
  if (sodium_init() < 0) throw std::runtime_error("libsodium failed to initialize");
  unsigned char master[crypto_kdf_KEYBYTES] = {};
  // NOLINTNEXTLINE(bugprone-not-null-terminated-result): a binary key, not a string
  std::memcpy(master, secret.data(), std::min(secret.size(), sizeof master));
  unsigned char a2l[32], l2a[32];
  crypto_kdf_derive_from_key(a2l, sizeof a2l, 1, kKdfContext, master);
  crypto_kdf_derive_from_key(l2a, sizeof l2a, 2, kKdfContext, master);
  std::memcpy(tx_key_, agent_side ? a2l : l2a, 32);
  std::memcpy(rx_key_, agent_side ? l2a : a2l, 32);
  sodium_memzero(master, sizeof master);
  sodium_memzero(a2l, sizeof a2l);
  sodium_memzero(l2a, sizeof l2a);
}

Status SecureChannel::send(const std::string& plaintext) {
  if (plaintext.size() > kMaxFrame) return Error::too_large("frame too large");
  std::string msg;
  msg.reserve(8 + plaintext.size());
  std::uint64_t c = tx_ctr_++;
  for (int i = 0; i < 8; ++i) msg += static_cast<char>((c >> (8 * i)) & 0xff);
  msg += plaintext;
  std::string out;
  put_u32(out, static_cast<std::uint32_t>(crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES +
                                          msg.size()));
  std::string nonce(crypto_secretbox_NONCEBYTES, '\0');
  randombytes_buf(nonce.data(), nonce.size());
  out += nonce;
  std::string box(crypto_secretbox_MACBYTES + msg.size(), '\0');
  crypto_secretbox_easy(reinterpret_cast<unsigned char*>(box.data()),
                        reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                        reinterpret_cast<const unsigned char*>(nonce.data()), tx_key_);
  out += box;
  if (!safe_fs::write_all(fd_, out)) return Error::unavailable("connection lost");
  return ok_status();
}

Result<std::string> SecureChannel::recv(std::size_t max) {
  unsigned char hdr[4];
  int r = read_all(fd_, hdr, 4);
  if (r <= 0) return Error::unavailable("connection closed");
  std::uint32_t len = get_u32(hdr);
  if (len < crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES + 8 ||
      len > std::min(max, kMaxFrame) + 8 + crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES)
    return Error::forbidden("bad frame length");
  std::string buf(len, '\0');
  if (read_all(fd_, buf.data(), len) != 1) return Error::unavailable("connection closed");
  std::size_t mlen = len - crypto_secretbox_NONCEBYTES - crypto_secretbox_MACBYTES;
  std::string msg(mlen, '\0');
  auto* b = reinterpret_cast<const unsigned char*>(buf.data());
  if (crypto_secretbox_open_easy(reinterpret_cast<unsigned char*>(msg.data()),
                                 b + crypto_secretbox_NONCEBYTES, len - crypto_secretbox_NONCEBYTES,
                                 b, rx_key_) != 0)
    return Error::forbidden("frame failed authentication");
  std::uint64_t c = 0;
  for (int i = 0; i < 8; ++i) c |= std::uint64_t(static_cast<unsigned char>(msg[i])) << (8 * i);
  if (c != rx_ctr_) return Error::forbidden("frame out of order (replayed?)");
  ++rx_ctr_;
  return msg.substr(8);
}

std::string encode_zmq(int ch, const std::vector<std::string>& parts) {
  std::string s;
  s += static_cast<char>(FrameKind::kZmq);
  s += static_cast<char>(ch);
  put_u32(s, static_cast<std::uint32_t>(parts.size()));
  for (auto& p : parts) {
    put_u32(s, static_cast<std::uint32_t>(p.size()));
    s += p;
  }
  return s;
}

Result<std::pair<int, std::vector<std::string>>> decode_zmq(const std::string& body) {
  if (body.size() < 6 || body[0] != static_cast<char>(FrameKind::kZmq))
    return Error::bad_request("not a zmq frame");
  int ch = static_cast<unsigned char>(body[1]);
  if (ch < 0 || ch > 3) return Error::bad_request("bad channel");
  auto* b = reinterpret_cast<const unsigned char*>(body.data());
  std::uint32_t n = get_u32(b + 2);
  if (n > 4096) return Error::bad_request("too many parts");
  std::size_t off = 6;
  std::vector<std::string> parts;
  for (std::uint32_t i = 0; i < n; ++i) {
    if (off + 4 > body.size()) return Error::bad_request("truncated");
    std::uint32_t len = get_u32(b + off);
    off += 4;
    if (len > body.size() - off) return Error::bad_request("truncated");
    parts.emplace_back(body.substr(off, len));
    off += len;
  }
  if (off != body.size()) return Error::bad_request("trailing bytes");
  return std::make_pair(ch, std::move(parts));
}

}  // namespace skylab::runtime
