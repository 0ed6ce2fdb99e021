#include "live/journal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/util.hpp"
#include "drive/codec.hpp"

namespace skylab::live {

using nlohmann::json;

namespace {

constexpr char kSuffix[] = ".jsonl";
constexpr std::size_t kSuffixLen = sizeof(kSuffix) - 1;

bool ends_with(const std::string& s, std::string_view suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string errno_text(const char* what) {
  return std::string(what) + ": " + std::strerror(errno);
}

}  // namespace

std::uint64_t fnv1a64(std::string_view bytes) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

std::string fnv1a64_hex(std::string_view bytes) {
  static const char* digits = "0123456789abcdef";
  std::uint64_t h = fnv1a64(bytes);
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, h >>= 4) out[static_cast<std::size_t>(i)] = digits[h & 15];
  return out;
}

std::string encode_journal_line(const json& record) {
  std::string payload = record.dump(-1, ' ', false, json::error_handler_t::replace);
  return std::to_string(payload.size()) + ' ' + fnv1a64_hex(payload) + ' ' + payload + '\n';
}

DecodedJournal decode_journal(std::string_view bytes, const JournalLimits& limits) {
  DecodedJournal out;
  json_limits::Limits jl{json_limits::kStoredMaxDepth, limits.max_record_bytes};
  while (!bytes.empty()) {
    auto nl = bytes.find('\n');
    bool last = nl == std::string_view::npos || nl + 1 == bytes.size();
    std::string_view line = bytes.substr(0, nl == std::string_view::npos ? bytes.size() : nl);
    bytes.remove_prefix(nl == std::string_view::npos ? bytes.size() : nl + 1);
    bool good = nl != std::string_view::npos;
    // "<len> <16 hex> <payload>"
    std::size_t sp1 = line.find(' ');
    std::size_t len = 0;
    if (good && (sp1 == std::string_view::npos || sp1 == 0 || sp1 > 10)) good = false;
    if (good) {
      for (std::size_t i = 0; i < sp1; ++i) {
        char c = line[i];
        if (c < '0' || c > '9') {
          good = false;
          break;
        }
        len = len * 10 + static_cast<std::size_t>(c - '0');
      }
    }
    if (good && (len > limits.max_record_bytes || line.size() != sp1 + 1 + 16 + 1 + len ||
                 line[sp1 + 17] != ' '))
      good = false;
    json rec;
    if (good) {
      std::string_view sum = line.substr(sp1 + 1, 16);
      std::string_view payload = line.substr(sp1 + 18);
      if (fnv1a64_hex(payload) != sum) good = false;
      if (good) {
        rec = json_limits::parse_or_discarded(payload, jl);
        if (!rec.is_object()) good = false;
      }
    }
    if (!good) {
      if (last)
        out.torn_tail = true;
      else
        out.corrupt = true;
      return out;
    }
    out.records.push_back(std::move(rec));
  }
  return out;
}

// ---------------------------------------------------------------- JournalDir

Result<std::shared_ptr<JournalDir>> JournalDir::open(const std::string& base,
                                                     const std::string& rel, JournalLimits limits) {
  auto b = safe_fs::open_dir(base);
  if (!b.ok()) return b.error();
  auto d = safe_fs::ensure_path_at(b->get(), rel, 0700);
  if (!d.ok()) return d.error();
  ::fchmod(d->get(), 0700);
  return std::shared_ptr<JournalDir>(
      new JournalDir(std::move(d.value()), base + "/" + rel, limits));
}

std::string JournalDir::name_for(const std::string& owner, const std::string& path) {
  std::string key = owner;
  key.push_back('\0');
  key += path;
  return drive::sha256_hex(key).substr(0, 32) + kSuffix;
}

std::vector<std::string> JournalDir::list() const {
  std::vector<std::string> out;
  for (auto& n : safe_fs::entry_names(fd_.get()))
    if (ends_with(n, kSuffix) && n.size() == 32 + kSuffixLen) out.push_back(n);
  return out;
}

bool JournalDir::exists(const std::string& name) const {
  return safe_fs::exists_at(fd_.get(), name);
}

Result<std::string> JournalDir::read(const std::string& name) const {
  safe_fs::UniqueFd f(
      ::openat(fd_.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
  if (f.get() < 0) {
    if (errno == ENOENT) return Error::not_found("no journal " + name);
    return Error::internal(errno_text(("open journal " + name).c_str()));
  }
  auto data = safe_fs::read_regular(f.get(), limits_.max_read_bytes);
  if (!data.ok()) return Error{data.error().code, "journal " + name + ": " + data.error().message};
  return data;
}

void JournalDir::remove(const std::string& name) const {
  ::unlinkat(fd_.get(), name.c_str(), 0);
}

Result<std::string> JournalDir::set_aside(const std::string& name) const {
  std::string to = name + ".kept-" + std::to_string(std::time(nullptr)) + "-" + util::random_hex(4);
  if (::renameat(fd_.get(), name.c_str(), fd_.get(), to.c_str()) != 0)
    return Error::internal(errno_text(("keep journal " + name).c_str()));
  return to;
}

// ------------------------------------------------------------- JournalWriter

JournalWriter::JournalWriter(std::shared_ptr<JournalDir> dir, std::string name)
    : dir_(std::move(dir)), name_(std::move(name)) {}

Status JournalWriter::append(const json& header, const json& record, std::uint64_t version) {
  std::string line = encode_journal_line(record);
  if (bytes_ + line.size() > dir_->limits().max_hard_bytes)
    return Error::too_large("journal " + name_ + " is full (saves keep failing)");
  if (fd_.get() < 0) {
    // A new journal. A file left under this name was replayed when the
    // document was loaded, unless that could not be done (the Drive was
    // unavailable): it is kept aside then, never overwritten.
    std::string head = encode_journal_line(header);
    int flags = O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_NOFOLLOW | O_CLOEXEC;
    safe_fs::UniqueFd f(::openat(dir_->fd(), name_.c_str(), flags, 0600));
    if (f.get() < 0 && errno == EEXIST) {
      auto kept = dir_->set_aside(name_);
      if (kept.ok())
        log::warn("live: a journal that was not replayed is kept as " + dir_->path() + "/" +
                  kept.value());
      f = safe_fs::UniqueFd(::openat(dir_->fd(), name_.c_str(), flags, 0600));
    }
    if (f.get() < 0) return Error::internal(errno_text(("create journal " + name_).c_str()));
    if (!safe_fs::write_all(f.get(), head)) {
      ::unlinkat(dir_->fd(), name_.c_str(), 0);
      return Error::internal(errno_text(("write journal " + name_).c_str()));
    }
    fd_ = std::move(f);
    header_end_ = bytes_ = head.size();
    index_.clear();
  }
  if (!safe_fs::write_all(fd_.get(), line)) {
    // A partial line may be on disk: later lines would follow a torn one,
    // so the file is resized back to its last good record.
    int err = errno;
    if (::ftruncate(fd_.get(), static_cast<off_t>(bytes_)) != 0) {
      fd_ = safe_fs::UniqueFd();  // the next append starts a new file
      index_.clear();
      bytes_ = 0;
    }
    errno = err;
    return Error::internal(errno_text(("write journal " + name_).c_str()));
  }
  bytes_ += line.size();
  index_.emplace_back(version, bytes_);
  return ok_status();
}

Status JournalWriter::rewrite(std::size_t first, const std::string& name, const json& header) {
  std::string text = encode_journal_line(header);
  std::uint64_t from = first == 0 ? header_end_ : index_[first - 1].second;
  std::size_t head_len = text.size();
  std::size_t n = static_cast<std::size_t>(bytes_ - from);
  text.resize(head_len + n);
  std::size_t got = 0;
  while (got < n) {
    ssize_t r =
        ::pread(fd_.get(), text.data() + head_len + got, n - got, static_cast<off_t>(from + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return Error::internal(errno_text(("read journal " + name_).c_str()));
    got += static_cast<std::size_t>(r);
  }
  auto st = safe_fs::write_file_at(dir_->fd(), name, text, 0600, false);
  if (!st.ok()) return st;
  safe_fs::UniqueFd f(
      ::openat(dir_->fd(), name.c_str(), O_RDWR | O_APPEND | O_NOFOLLOW | O_CLOEXEC));
  if (name != name_) ::unlinkat(dir_->fd(), name_.c_str(), 0);
  name_ = name;
  if (f.get() < 0) {
    fd_ = safe_fs::UniqueFd();
    index_.clear();
    bytes_ = 0;
    return Error::internal(errno_text(("reopen journal " + name_).c_str()));
  }
  fd_ = std::move(f);
  std::vector<std::pair<std::uint64_t, std::uint64_t>> kept;
  for (std::size_t i = first; i < index_.size(); ++i)
    kept.emplace_back(index_[i].first, index_[i].second - from + head_len);
  index_ = std::move(kept);
  header_end_ = head_len;
  bytes_ = text.size();
  return ok_status();
}

Status JournalWriter::covered(std::uint64_t v, const json& header) {
  if (fd_.get() < 0) return ok_status();
  std::size_t first = 0;
  while (first < index_.size() && index_[first].first <= v) ++first;
  if (first == index_.size()) {
    drop();
    return ok_status();
  }
  return rewrite(first, name_, header);
}

Status JournalWriter::moved(std::string name, const json& header) {
  if (fd_.get() < 0) {
    name_ = std::move(name);
    return ok_status();
  }
  return rewrite(0, name, header);
}

void JournalWriter::drop() {
  if (fd_.get() >= 0) dir_->remove(name_);
  fd_ = safe_fs::UniqueFd();
  index_.clear();
  bytes_ = 0;
  header_end_ = 0;
}

}  // namespace skylab::live
