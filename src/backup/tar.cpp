#include "backup/tar.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "common/safe_fs.hpp"

namespace skylab::backup {

namespace {

constexpr std::size_t kBlock = 512;

std::string pax_record(const std::string& key, const std::string& value) {
  // "LEN KEY=VALUE\n" where LEN counts the whole record, itself included.
  std::size_t body = key.size() + value.size() + 3;
  std::size_t len = body + 1;
  while (std::to_string(len).size() + body != len) len = std::to_string(len).size() + body;
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

void octal(char* field, std::size_t width, std::uint64_t v) {
  // width-1 octal digits and a NUL; values that do not fit are carried by pax records.
  std::uint64_t max = (width - 1) >= 22 ? ~0ull : ((1ull << (3 * (width - 1))) - 1);
  std::snprintf(field, width, "%0*llo", static_cast<int>(width - 1),
                static_cast<unsigned long long>(std::min(v, max)));
}

std::uint64_t parse_octal(const char* field, std::size_t width, bool& ok) {
  std::uint64_t v = 0;
  std::size_t i = 0;
  while (i < width && (field[i] == ' ' || field[i] == '\0')) {
    if (field[i] == '\0') return 0;
    ++i;
  }
  for (; i < width && field[i] >= '0' && field[i] <= '7'; ++i) {
    if (v >> 60) {
      ok = false;
      return 0;
    }
    v = v * 8 + static_cast<std::uint64_t>(field[i] - '0');
  }
  for (; i < width; ++i)
    if (field[i] != ' ' && field[i] != '\0') ok = false;
  return v;
}

unsigned header_checksum(const unsigned char* h) {
  unsigned sum = 0;
  for (std::size_t i = 0; i < kBlock; ++i) sum += (i >= 148 && i < 156) ? ' ' : h[i];
  return sum;
}

Error io_error(const char* what) {
  return Error::internal(std::string(what) + ": " + std::strerror(errno));
}

}  // namespace

Status TarWriter::write_all(const void* data, std::size_t n) {
  if (!safe_fs::write_all(fd_, {static_cast<const char*>(data), n}))
    return io_error("write the archive");
  written_ += n;
  return ok_status();
}

Status TarWriter::header(const TarEntry& e) {
  std::string pax = pax_record("path", e.path) + pax_record("size", std::to_string(e.size)) +
                    pax_record("uid", std::to_string(e.uid)) +
                    pax_record("gid", std::to_string(e.gid)) +
                    pax_record("mtime", std::to_string(e.mtime));
  for (auto& [k, v] : e.xattrs) pax += pax_record("SCHILY.xattr." + k, v);
  auto block = [&](char type, const std::string& name, std::uint64_t size) -> Status {
    unsigned char h[kBlock] = {};
    auto* c = reinterpret_cast<char*>(h);
    std::memcpy(c, name.data(), std::min<std::size_t>(name.size(), 99));
    octal(c + 100, 8, e.mode & 07777);
    octal(c + 108, 8, e.uid);
    octal(c + 116, 8, e.gid);
    octal(c + 124, 12, size);
    octal(c + 136, 12, static_cast<std::uint64_t>(std::max<std::int64_t>(e.mtime, 0)));
    c[156] = type;
    std::memcpy(c + 257, "ustar", 6);
    std::memcpy(c + 263, "00", 2);  // NOLINT(bugprone-not-null-terminated-result): the ustar
                                    // version field is two bytes, no NUL
    std::snprintf(c + 148, 8, "%06o", header_checksum(h));
    c[155] = ' ';
    return write_all(h, kBlock);
  };
  if (auto st = block('x', "PaxHeaders/" + e.path.substr(0, 80), pax.size()); !st.ok()) return st;
  pax.resize((pax.size() + kBlock - 1) / kBlock * kBlock, '\0');
  if (auto st = write_all(pax.data(), pax.size()); !st.ok()) return st;
  return block(e.kind == EntryKind::kDirectory ? '5' : '0', e.path,
               e.kind == EntryKind::kDirectory ? 0 : e.size);
}

Status TarWriter::add(const TarEntry& e, int content_fd) {
  if (auto st = header(e); !st.ok()) return st;
  if (e.kind == EntryKind::kDirectory) return ok_status();
  std::vector<char> buf(1 << 20);
  std::uint64_t left = e.size;
  while (left > 0) {
    ssize_t r = ::read(content_fd, buf.data(),
                       static_cast<std::size_t>(std::min<std::uint64_t>(left, buf.size())));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return io_error("read a file");
    if (r == 0) return Error::internal("read " + e.path + ": shorter than announced");
    if (auto st = write_all(buf.data(), static_cast<std::size_t>(r)); !st.ok()) return st;
    left -= static_cast<std::uint64_t>(r);
  }
  static const char zeros[kBlock] = {};
  std::size_t pad = (kBlock - e.size % kBlock) % kBlock;
  return write_all(zeros, pad);
}

Status TarWriter::add_bytes(const TarEntry& e, std::string_view bytes) {
  TarEntry copy = e;
  copy.size = bytes.size();
  if (auto st = header(copy); !st.ok()) return st;
  if (auto st = write_all(bytes.data(), bytes.size()); !st.ok()) return st;
  static const char zeros[kBlock] = {};
  return write_all(zeros, (kBlock - bytes.size() % kBlock) % kBlock);
}

Status TarWriter::finish() {
  static const char zeros[2 * kBlock] = {};
  return write_all(zeros, sizeof zeros);
}

// ---------------------------------------------------------------- reader

Status TarReader::read_exact(void* buf, std::size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    ssize_t r = ::read(fd_, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return io_error("read the archive");
    if (r == 0) return Error::bad_request("the archive ends in the middle of an entry");
    p += r;
    n -= static_cast<std::size_t>(r);
    read_ += static_cast<std::uint64_t>(r);
  }
  return ok_status();
}

Status TarReader::skip(std::uint64_t n) {
  char buf[1 << 16];
  while (n > 0) {
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(n, sizeof buf));
    if (auto st = read_exact(buf, k); !st.ok()) return st;
    n -= k;
  }
  return ok_status();
}

Result<bool> TarReader::next(TarEntry& out) {
  if (done_) return false;
  if (auto st = skip(remaining_ + padding_); !st.ok()) return st.error();
  remaining_ = padding_ = 0;
  std::map<std::string, std::string> pax;
  bool have_pax = false;
  for (;;) {
    unsigned char h[kBlock];
    if (auto st = read_exact(h, kBlock); !st.ok()) return st.error();
    if (std::all_of(h, h + kBlock, [](unsigned char c) { return c == 0; })) {
      if (have_pax) return Error::bad_request("the archive ends after an extended header");
      done_ = true;
      return false;
    }
    auto* c = reinterpret_cast<const char*>(h);
    bool ok = true;
    unsigned sum = static_cast<unsigned>(parse_octal(c + 148, 8, ok));
    if (!ok || sum != header_checksum(h))
      return Error::bad_request("the archive has a damaged header (checksum)");
    std::uint64_t size = parse_octal(c + 124, 12, ok);
    if (!ok) return Error::bad_request("the archive has a damaged header (size)");
    char type = c[156];
    if (type == 'x') {
      if (have_pax) return Error::bad_request("two extended headers in a row");
      if (size > max_header_) return Error::bad_request("an extended header is too large");
      std::string text(size, '\0');
      if (auto st = read_exact(text.data(), size); !st.ok()) return st.error();
      if (auto st = skip((kBlock - size % kBlock) % kBlock); !st.ok()) return st.error();
      std::size_t pos = 0;
      while (pos < text.size()) {
        std::size_t sp = text.find(' ', pos);
        if (sp == std::string::npos || sp == pos || sp - pos > 12)
          return Error::bad_request("a malformed extended header");
        std::size_t len = 0;
        for (std::size_t i = pos; i < sp; ++i) {
          if (text[i] < '0' || text[i] > '9')
            return Error::bad_request("a malformed extended header");
          len = len * 10 + static_cast<std::size_t>(text[i] - '0');
        }
        if (len < sp - pos + 3 || pos + len > text.size() || text[pos + len - 1] != '\n')
          return Error::bad_request("a malformed extended header");
        std::string rec = text.substr(sp + 1, pos + len - sp - 2);
        std::size_t eq = rec.find('=');
        if (eq == std::string::npos || eq == 0)
          return Error::bad_request("a malformed extended header");
        pax[rec.substr(0, eq)] = rec.substr(eq + 1);
        pos += len;
      }
      have_pax = true;
      continue;
    }
    if (type != '0' && type != '\0' && type != '5')
      return Error::bad_request(
          std::string("the archive holds an entry that is not a file or a directory (type '") +
          (std::isprint(static_cast<unsigned char>(type)) ? std::string(1, type) : "?") + "')");
    out = TarEntry{};
    out.kind = type == '5' ? EntryKind::kDirectory : EntryKind::kFile;
    std::string name(c, strnlen(c, 100));
    std::string prefix(c + 345, strnlen(c + 345, 155));
    out.path = prefix.empty() ? name : prefix + "/" + name;
    out.mode = static_cast<unsigned>(parse_octal(c + 100, 8, ok)) & 07777;
    out.uid = static_cast<std::uint32_t>(parse_octal(c + 108, 8, ok));
    out.gid = static_cast<std::uint32_t>(parse_octal(c + 116, 8, ok));
    out.mtime = static_cast<std::int64_t>(parse_octal(c + 136, 12, ok));
    out.size = size;
    if (!ok) return Error::bad_request("the archive has a damaged header");
    auto number = [&](const std::string& key, std::uint64_t& dst, std::uint64_t max) -> bool {
      auto it = pax.find(key);
      if (it == pax.end()) return true;
      const std::string& v = it->second;
      std::size_t dot = v.find('.');  // mtime may carry a fraction
      std::string whole = key == "mtime" && dot != std::string::npos ? v.substr(0, dot) : v;
      if (whole.empty() || whole.size() > 19 ||
          whole.find_first_not_of("0123456789") != std::string::npos)
        return false;
      dst = std::stoull(whole);
      return dst <= max;
    };
    std::uint64_t uid = out.uid, gid = out.gid, mt = static_cast<std::uint64_t>(out.mtime);
    if (!number("size", out.size, 1ull << 50) || !number("uid", uid, 0xfffffffe) ||
        !number("gid", gid, 0xfffffffe) || !number("mtime", mt, 1ull << 40))
      return Error::bad_request("a malformed extended header value");
    out.uid = static_cast<std::uint32_t>(uid);
    out.gid = static_cast<std::uint32_t>(gid);
    out.mtime = static_cast<std::int64_t>(mt);
    if (auto it = pax.find("path"); it != pax.end()) out.path = it->second;
    for (auto& [k, v] : pax)
      if (k.rfind("SCHILY.xattr.", 0) == 0) out.xattrs[k.substr(13)] = v;
    if (out.kind == EntryKind::kDirectory && out.size != 0)
      return Error::bad_request("a directory entry with content");
    remaining_ = out.size;
    padding_ = (kBlock - out.size % kBlock) % kBlock;
    return true;
  }
}

Status TarReader::read_content(const std::function<Status(const char*, std::size_t)>& sink) {
  std::vector<char> buf(1 << 20);
  while (remaining_ > 0) {
    std::size_t k = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, buf.size()));
    if (auto st = read_exact(buf.data(), k); !st.ok()) return st;
    remaining_ -= k;
    if (auto st = sink(buf.data(), k); !st.ok()) return st;
  }
  return ok_status();
}

}  // namespace skylab::backup
