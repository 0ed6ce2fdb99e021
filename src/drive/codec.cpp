#include "drive/codec.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <stdexcept>
#include <utility>

namespace skylab::drive {

namespace {
constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<signed char, 256> make_table() {
  std::array<signed char, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 64; ++i)
    t[static_cast<unsigned char>(kAlphabet[i])] = static_cast<signed char>(i);
  t[static_cast<unsigned char>('=')] = -2;
  for (char c : {' ', '\n', '\r', '\t', '\f', '\v'}) t[static_cast<unsigned char>(c)] = -3;
  return t;
}
constexpr auto kTable = make_table();
}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.resize((in.size() + 2) / 3 * 4);
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t n = in.size(), i = 0, o = 0;
  for (; i + 3 <= n; i += 3) {
    std::uint32_t v = (s[i] << 16) | (s[i + 1] << 8) | s[i + 2];
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = kAlphabet[(v >> 6) & 63];
    out[o++] = kAlphabet[v & 63];
  }
  if (i < n) {
    std::uint32_t v = s[i] << 16;
    if (i + 1 < n) v |= s[i + 1] << 8;
    out[o++] = kAlphabet[(v >> 18) & 63];
    out[o++] = kAlphabet[(v >> 12) & 63];
    out[o++] = i + 1 < n ? kAlphabet[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in) {
  std::string out;
  out.resize(in.size() / 4 * 3 + 3);
  // Fast path: whole groups of four alphabet characters.
  const auto* s = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t n = in.size(), i = 0;
  char* o = out.data();
  for (; i + 4 <= n; i += 4) {
    // NOLINTNEXTLINE(bugprone-signed-char-misuse): kTable holds small signed numbers
    int a = kTable[s[i]], b = kTable[s[i + 1]], c = kTable[s[i + 2]], d = kTable[s[i + 3]];
    if ((a | b | c | d) < 0) break;  // padding, whitespace or garbage: the general loop decides
    *o++ = static_cast<char>((a << 2) | (b >> 4));
    *o++ = static_cast<char>(((b & 15) << 4) | (c >> 2));
    *o++ = static_cast<char>(((c & 3) << 6) | d);
  }
  out.resize(static_cast<std::size_t>(o - out.data()));
  std::uint32_t acc = 0;
  int bits = 0, group = 0;
  bool padding = false;
  for (char ch : in.substr(i)) {
    // NOLINTNEXTLINE(bugprone-signed-char-misuse): as above
    int v = kTable[static_cast<unsigned char>(ch)];
    if (v == -3) continue;
    if (v == -1) return std::nullopt;
    if (v == -2) {
      padding = true;
      continue;
    }
    if (padding) return std::nullopt;  // data after '='
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    group = (group + 1) & 3;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (group == 1) return std::nullopt;  // 6 bits cannot make a byte
  return out;
}

struct Sha256::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  impl_->ctx = EVP_MD_CTX_new();
  if (!impl_->ctx || EVP_DigestInit_ex(impl_->ctx, EVP_sha256(), nullptr) != 1)
    throw std::runtime_error("SHA-256 initialisation failed");
}

Sha256::~Sha256() {
  if (impl_->ctx) EVP_MD_CTX_free(impl_->ctx);
}

void Sha256::update(std::string_view bytes) {
  EVP_DigestUpdate(impl_->ctx, bytes.data(), bytes.size());
}

std::string Sha256::hex() {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(impl_->ctx, md, &len);
  static const char* h = "0123456789abcdef";
  std::string out;
  out.reserve(std::size_t{len} * 2);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(h[md[i] >> 4]);
    out.push_back(h[md[i] & 15]);
  }
  return out;
}

std::string sha256_hex(std::string_view bytes) {
  Sha256 s;
  s.update(bytes);
  return s.hex();
}

std::optional<std::string> guess_mimetype(std::string_view name) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {"txt", "text/plain"},
      {"py", "text/x-python"},
      {"md", "text/markdown"},
      {"json", "application/json"},
      {"csv", "text/csv"},
      {"tsv", "text/tab-separated-values"},
      {"html", "text/html"},
      {"htm", "text/html"},
      {"css", "text/css"},
      {"js", "text/javascript"},
      {"mjs", "text/javascript"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"svg", "image/svg+xml"},
      {"webp", "image/webp"},
      {"bmp", "image/bmp"},
      {"tif", "image/tiff"},
      {"tiff", "image/tiff"},
      {"ico", "image/vnd.microsoft.icon"},
      {"pdf", "application/pdf"},
      {"zip", "application/zip"},
      {"tar", "application/x-tar"},
      {"7z", "application/x-7z-compressed"},
      {"xml", "application/xml"},
      {"sh", "text/x-sh"},
      {"c", "text/x-csrc"},
      {"cpp", "text/x-c++src"},
      {"h", "text/x-chdr"},
      {"java", "text/x-java"},
      {"tex", "text/x-tex"},
      {"mp3", "audio/mpeg"},
      {"wav", "audio/x-wav"},
      {"ogg", "audio/ogg"},
      {"mp4", "video/mp4"},
      {"webm", "video/webm"},
      {"sql", "application/sql"},
      {"wasm", "application/wasm"},
      {"h5", "application/x-hdf5"},
      {"bin", "application/octet-stream"},
      {"doc", "application/msword"},
      {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
      {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
      {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
  };
  auto dot = name.rfind('.');
  if (dot == std::string_view::npos || dot + 1 >= name.size()) return std::nullopt;
  std::string ext(name.substr(dot + 1));
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (auto& [e, t] : kTypes)
    if (ext == e) return std::string(t);
  return std::nullopt;
}

}  // namespace skylab::drive
