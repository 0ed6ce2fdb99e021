#include "drive/drive.hpp"

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <filesystem>

#include <regex>

#include "common/json_io.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "drive/codec.hpp"
#include "drive/notebook.hpp"

namespace skylab::drive {

using nlohmann::json;

std::string_view entry_type_name(EntryType t) {
  switch (t) {
    case EntryType::kDirectory:
      return "directory";
    case EntryType::kNotebook:
      return "notebook";
    case EntryType::kFile:
      return "file";
  }
  return "file";
}

std::optional<EntryType> parse_entry_type(std::string_view s) {
  if (s == "directory") return EntryType::kDirectory;
  if (s == "notebook") return EntryType::kNotebook;
  if (s == "file") return EntryType::kFile;
  return std::nullopt;
}

namespace {

bool is_notebook_name(std::string_view name) {
  return name.size() >= 6 && name.compare(name.size() - 6, 6, ".ipynb") == 0;
}

std::string q(const DrivePath& p) {
  return "'" + p.str() + "'";
}

}  // namespace

namespace {
//! Revision bytes queued beyond this are stored by the saving thread itself.
constexpr std::size_t kMaxQueuedRevisionBytes = 256u << 20;
}  // namespace

Drive::Drive(std::unique_ptr<FileStore> files, std::unique_ptr<MetadataStore> meta,
             DriveOptions options)
    : files_(std::move(files)), meta_(std::move(meta)), options_(std::move(options)) {
  rev_writer_ = std::thread([this] { revision_writer_loop(); });
}

Drive::~Drive() {
  if (maint_) maint_->stop();
  {
    MutexLock lock(rev_mu_);
    rev_stopping_ = true;  // the writer stores what is queued, then stops
  }
  rev_cv_.notify_all();
  if (rev_writer_.joinable()) rev_writer_.join();
}

void Drive::revision_writer_loop() {
  MutexLock lock(rev_mu_);
  while (true) {
    rev_cv_.wait(lock, [this]() REQUIRES(rev_mu_) { return rev_stopping_ || !rev_queue_.empty(); });
    if (rev_queue_.empty()) return;
    PendingRevision r = std::move(rev_queue_.front());
    rev_queue_.pop_front();
    rev_busy_ = true;
    lock.unlock();
    store_revision(r.user, r.author, r.path, r.bytes, r.kind, r.at);
    lock.lock();
    rev_queued_bytes_ -= r.bytes.size();
    rev_busy_ = false;
    rev_cv_.notify_all();
  }
}

void Drive::flush_revisions() {
  MutexLock lock(rev_mu_);
  rev_cv_.wait(lock, [this]() REQUIRES(rev_mu_) { return rev_queue_.empty() && !rev_busy_; });
}

Result<std::shared_ptr<Drive>> Drive::open(DriveOptions options) {
  auto files = open_local_file_store(options.files_dir);
  if (!files.ok()) return files.error();
  auto meta = open_sqlite_metadata_store(options.database);
  if (!meta.ok()) return meta.error();
  return std::make_shared<Drive>(std::move(files.value()), std::move(meta.value()),
                                 std::move(options));
}

void Drive::start_maintenance() {
  if (maint_) return;
  maint_ = std::make_unique<Periodic>("drive maintenance", std::chrono::hours(1),
                                      [this] { maintenance_pass(); });
}

void Drive::maintenance_pass() {
  std::size_t swept = files_->sweep_temporaries(std::chrono::hours(24));
  if (swept)
    log::info("drive: removed " + std::to_string(swept) + " interrupted save/upload files");
  auto pruned = prune_all();
  if (!pruned.ok()) log::warn("drive: pruning revisions failed: " + pruned.error().message);
}

TimePoint Drive::now() const {
  return options_.clock->wall();
}

Mutex& Drive::user_lock(const std::string& user) {
  MutexLock lock(locks_mu_);
  auto& m = locks_[user];
  if (!m) m = std::make_unique<Mutex>();
  return *m;
}

Result<Drive::Target> Drive::resolve(const auth::Identity& user, std::string_view path,
                                     bool for_write) {
  if (!valid_username(user.username))
    return Error::forbidden("No Drive for user '" + user.username + "'");
  auto p = DrivePath::parse(path);
  if (!p.ok()) return p.error();
  if (p->is_hidden()) {
    if (for_write)
      return Error::bad_request("Cannot create, change or delete hidden file or directory " +
                                q(*p));
    return Error::not_found("file or directory does not exist: " + q(*p));
  }
  return Target{user.username, std::move(p.value()),
                user.acting_user.empty() ? user.username : user.acting_user};
}

Result<Entry> Drive::entry_for(const std::string& user, const DrivePath& path,
                               std::optional<EntryType> as) {
  auto st = files_->stat(user, path);
  if (!st.ok()) {
    if (st.error().code == Error::Code::kNotFound)
      return Error::not_found("file or directory does not exist: " + q(path));
    return st.error();
  }
  Entry e;
  e.path = path.str();
  e.name = std::string(path.name());
  e.writable = st->writable;
  e.created = st->created;
  e.modified = st->modified;
  if (st->directory) {
    if (as && *as != EntryType::kDirectory)
      return Error::bad_request(path.str() + " is a directory, not a " +
                                std::string(entry_type_name(*as)));
    e.type = EntryType::kDirectory;
  } else {
    if (as && *as == EntryType::kDirectory)
      return Error::bad_request(path.str() + " is not a directory");
    e.type = (as == EntryType::kNotebook || (!as && is_notebook_name(path.name())))
                 ? EntryType::kNotebook
                 : EntryType::kFile;
    e.size = st->size;
  }
  return e;
}

Result<bool> Drive::exists(const std::string& user, const DrivePath& path) {
  return files_->exists(user, path);
}

// ------------------------------------------------------------------ reading

Result<Entry> Drive::get(const auth::Identity& user, std::string_view path,
                         std::optional<EntryType> as) {
  auto t = resolve(user, path, false);
  if (!t.ok()) return t.error();
  return entry_for(t->user, t->path, as);
}

Result<std::vector<Entry>> Drive::list(const auth::Identity& user, std::string_view dir) {
  auto t = resolve(user, dir, false);
  if (!t.ok()) return t.error();
  auto nodes = files_->list(t->user, t->path);
  if (!nodes.ok()) {
    if (nodes.error().code == Error::Code::kNotFound)
      return Error::not_found("directory does not exist: " + q(t->path));
    return nodes.error();
  }
  std::vector<Entry> out;
  out.reserve(nodes->size());
  std::string prefix = t->path.is_root() ? "" : t->path.str() + "/";
  for (auto& n : *nodes) {
    Entry e;
    e.path = prefix + n.name;
    e.type = n.directory                ? EntryType::kDirectory
             : is_notebook_name(n.name) ? EntryType::kNotebook
                                        : EntryType::kFile;
    e.name = std::move(n.name);
    e.writable = n.writable;
    e.created = n.created;
    e.modified = n.modified;
    if (!n.directory) e.size = n.size;
    out.push_back(std::move(e));
  }
  return out;
}

Result<std::string> Drive::read_file(const auth::Identity& user, std::string_view path) {
  auto t = resolve(user, path, false);
  if (!t.ok()) return t.error();
  return files_->read(t->user, t->path, options_.max_read_bytes);
}

Result<json> Drive::read_notebook(const auth::Identity& user, std::string_view path,
                                  std::string* message) {
  auto bytes = read_file(user, path);
  if (!bytes.ok()) return bytes.error();
  return parse_stored_notebook(bytes.value(), message);
}

Result<OpenFile> Drive::open_file(const auth::Identity& user, std::string_view path) {
  auto t = resolve(user, path, false);
  if (!t.ok()) return t.error();
  return files_->open_read(t->user, t->path);
}

Result<std::string> Drive::file_hash(const auth::Identity& user, std::string_view path) {
  auto f = open_file(user, path);
  if (!f.ok()) return f.error();
  Sha256 h;
  std::string buf(1 << 20, '\0');
  while (true) {
    ssize_t n = ::read(f->fd(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::internal("Cannot read " + std::string(path));
    }
    if (n == 0) break;
    h.update(std::string_view(buf.data(), static_cast<std::size_t>(n)));
  }
  return h.hex();
}

// ------------------------------------------------------------------ writing

void Drive::keep_revision(const std::string& user, const std::string& author, const DrivePath& path,
                          std::string bytes, RevisionKind kind) {
  if (bytes.size() > options_.max_read_bytes) return;
  TimePoint at = now();
  {
    MutexLock lock(rev_mu_);
    if (!rev_stopping_ && rev_queued_bytes_ + bytes.size() <= kMaxQueuedRevisionBytes) {
      rev_queued_bytes_ += bytes.size();
      rev_queue_.push_back(PendingRevision{user, author, path.str(), std::move(bytes), kind, at});
      rev_cv_.notify_all();
      return;
    }
  }
  flush_revisions();  // keep the order: what is queued goes first
  store_revision(user, author, path.str(), bytes, kind, at);
}

void Drive::store_revision(const std::string& user, const std::string& author,
                           const std::string& path, std::string_view bytes, RevisionKind kind,
                           TimePoint at) {
  auto r = meta_->add_revision(user, author, path, at, kind, bytes);
  if (!r.ok()) {
    log::warn("drive: could not keep a revision of a saved file: " + r.error().message);
    return;
  }
  auto all = meta_->list_revisions(user, path);
  if (!all.ok()) return;
  auto drop = revisions_to_prune(all.value(), now(), options_.revisions);
  if (!drop.empty()) {
    auto st = meta_->delete_revisions(user, drop);
    if (!st.ok()) log::warn("drive: pruning revisions failed: " + st.error().message);
  }
}

// ------------------------------------------------------------------ storage

namespace {

//! Allocated bytes under `root` (never following symlinks), at most `max` entries.
std::uint64_t tree_bytes(const std::string& root, std::size_t max) {
  namespace fs = std::filesystem;
  std::uint64_t total = 0;
  std::size_t n = 0;
  std::error_code ec;
  struct stat st {};
  if (::lstat(root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return 0;
  for (auto it = fs::recursive_directory_iterator(
           root, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator() && n < max; it.increment(ec), ++n)
    if (::lstat(it->path().c_str(), &st) == 0)
      total += static_cast<std::uint64_t>(st.st_blocks) * 512;
  return total;
}

//! Whether `path` is the root of a filesystem of its own (a user volume).
bool own_volume(const std::string& path) {
  struct stat a {
  }, b{};
  if (::lstat(path.c_str(), &a) != 0 || ::lstat((path + "/..").c_str(), &b) != 0) return false;
  return a.st_dev != b.st_dev;
}

}  // namespace

std::uint64_t Drive::used_bytes(const std::string& user) {
  std::string root = options_.files_dir + "/" + user;
  if (own_volume(root)) {  // the Drive and caches share the user's volume
    struct statvfs v {};
    if (::statvfs(root.c_str(), &v) == 0)
      return static_cast<std::uint64_t>(v.f_blocks - v.f_bfree) * v.f_frsize;
  }
  auto fresh = std::chrono::steady_clock::now();
  {
    MutexLock lock(usage_mu_);
    auto it = usage_.find(user);
    if (it != usage_.end() && fresh - it->second.at < std::chrono::seconds(5))
      return it->second.bytes;
  }
  std::uint64_t used = tree_bytes(root, kMaxCountedEntries);
  if (!options_.cache_dir.empty())
    used += tree_bytes(options_.cache_dir + "/" + user, kMaxCountedEntries);
  MutexLock lock(usage_mu_);
  if (usage_.size() > 10000) usage_.clear();
  usage_[user] = UsageCount{used, fresh};
  return used;
}

void Drive::count_written(const std::string& user, std::int64_t bytes) {
  MutexLock lock(usage_mu_);
  auto it = usage_.find(user);
  if (it == usage_.end()) return;
  auto& b = it->second.bytes;
  b = bytes < 0 && static_cast<std::uint64_t>(-bytes) > b ? 0
                                                          : b + static_cast<std::uint64_t>(bytes);
}

Status Drive::within_quota(const std::string& user, const DrivePath& path, std::uint64_t incoming) {
  if (options_.quota_bytes == 0) return ok_status();
  std::uint64_t replaced = 0;
  if (auto st = files_->stat(user, path); st.ok() && !st->directory) replaced = st->size;
  std::uint64_t used = used_bytes(user);
  std::uint64_t after = used - std::min(used, replaced) + incoming;
  if (after <= options_.quota_bytes) return ok_status();
  return quota_error(used, incoming);
}

Error Drive::quota_error(std::uint64_t used, std::uint64_t incoming) const {
  auto mib = [](std::uint64_t b) { return std::to_string((b + (1 << 20) - 1) >> 20); };
  return Error::insufficient_storage(
      "Storage quota exceeded: " + mib(used) + " MiB used of " + mib(options_.quota_bytes) +
      " MiB; this write needs " + mib(incoming) +
      " MiB. Delete files (or clear ~/.cache) and try again; nothing was changed");
}

Result<Drive::Storage> Drive::storage(const auth::Identity& user) {
  auto t = resolve(user, "", false);
  if (!t.ok()) return t.error();
  return Storage{used_bytes(t->user), options_.quota_bytes};
}

Result<Drive::Saved> Drive::write_file_locked(const std::string& user, const std::string& author,
                                              const DrivePath& path, std::string_view bytes) {
  auto existed = exists(user, path);
  if (!existed.ok()) return existed.error();
  if (auto st = within_quota(user, path, bytes.size()); !st.ok()) return st.error();
  if (auto st = files_->write_atomic(user, path, bytes); !st.ok()) return st.error();
  count_written(user, static_cast<std::int64_t>(bytes.size()));
  if (is_notebook_name(path.name()))
    keep_revision(user, author, path, std::string(bytes), RevisionKind::kSave);
  auto e = entry_for(user, path, std::nullopt);
  if (!e.ok()) return e.error();
  return Saved{std::move(e.value()), !existed.value()};
}

Result<Drive::Saved> Drive::save_notebook(const auth::Identity& user, std::string_view path,
                                          json nb) {
  auto t = resolve(user, path, true);
  if (!t.ok()) return t.error();
  if (t->path.is_root()) return Error::bad_request("Cannot save a notebook as the root directory");
  if (auto st = prepare_for_save(nb); !st.ok()) return st.error();
  std::string bytes = serialize_notebook(std::move(nb));
  MutexLock lock(user_lock(t->user));
  auto existed = exists(t->user, t->path);
  if (!existed.ok()) return existed.error();
  if (auto st = within_quota(t->user, t->path, bytes.size()); !st.ok()) return st.error();
  if (auto st = files_->write_atomic(t->user, t->path, bytes); !st.ok()) return st.error();
  count_written(t->user, static_cast<std::int64_t>(bytes.size()));
  keep_revision(t->user, t->author, t->path, std::move(bytes), RevisionKind::kSave);
  auto e = entry_for(t->user, t->path, EntryType::kNotebook);
  if (!e.ok()) return e.error();
  return Saved{std::move(e.value()), !existed.value()};
}

Result<Drive::Saved> Drive::save_file(const auth::Identity& user, std::string_view path,
                                      std::string_view bytes) {
  auto t = resolve(user, path, true);
  if (!t.ok()) return t.error();
  if (t->path.is_root()) return Error::bad_request("Cannot save a file as the root directory");
  MutexLock lock(user_lock(t->user));
  return write_file_locked(t->user, t->author, t->path, bytes);
}

Result<Drive::Saved> Drive::save_directory(const auth::Identity& user, std::string_view path) {
  auto t = resolve(user, path, true);
  if (!t.ok()) return t.error();
  MutexLock lock(user_lock(t->user));
  auto st = files_->stat(t->user, t->path);
  bool created = false;
  if (st.ok()) {
    if (!st->directory) return Error::bad_request("Not a directory: " + q(t->path));
  } else if (st.error().code == Error::Code::kNotFound) {
    auto ex = exists(t->user, t->path);
    if (ex.ok() && ex.value()) return Error::bad_request("Not a directory: " + q(t->path));
    if (auto mk = files_->make_directory(t->user, t->path); !mk.ok()) {
      if (mk.error().code == Error::Code::kNotFound)
        return Error::not_found("No such parent directory: " + q(t->path.parent()));
      return mk.error();
    }
    created = true;
  } else {
    return st.error();
  }
  auto e = entry_for(t->user, t->path, EntryType::kDirectory);
  if (!e.ok()) return e.error();
  return Saved{std::move(e.value()), created};
}

Result<Drive::Chunk> Drive::save_chunk(const auth::Identity& user, std::string_view path, int chunk,
                                       std::string_view bytes) {
  auto t = resolve(user, path, true);
  if (!t.ok()) return t.error();
  if (t->path.is_root()) return Error::bad_request("Cannot upload to the root directory");
  MutexLock lock(user_lock(t->user));
  auto existed = exists(t->user, t->path);
  if (!existed.ok()) return existed.error();
  // The staged chunks so far are in the count already (a hidden file in the
  // Drive); the file being replaced is not subtracted until the end.
  if (options_.quota_bytes > 0) {
    std::uint64_t used = used_bytes(t->user);
    if (used + bytes.size() > options_.quota_bytes) {
      (void)files_->write_chunk(t->user, t->path, 1,
                                {});  // drops what was staged (an empty restart)
      return quota_error(used, bytes.size());
    }
  }
  auto r = files_->write_chunk(t->user, t->path, chunk, bytes);
  if (!r.ok()) return r.error();
  count_written(t->user, static_cast<std::int64_t>(bytes.size()));
  Chunk out;
  out.created = !existed.value();
  out.committed = r->committed;
  if (r->committed) {
    if (is_notebook_name(t->path.name())) {
      auto content = files_->read(t->user, t->path, options_.max_read_bytes);
      if (content.ok())
        keep_revision(t->user, t->author, t->path, std::move(content.value()), RevisionKind::kSave);
    }
    auto e = entry_for(t->user, t->path, EntryType::kFile);
    if (!e.ok()) return e.error();
    out.entry = std::move(e.value());
  } else {
    // The upload in progress: the target itself is unchanged until the last chunk.
    out.entry.path = t->path.str();
    out.entry.name = std::string(t->path.name());
    out.entry.type = EntryType::kFile;
    out.entry.created = out.entry.modified = std::chrono::system_clock::now();
    out.entry.size = r->bytes_so_far;
  }
  return out;
}

Result<std::string> Drive::unique_name(const std::string& user, const DrivePath& dir,
                                       std::string_view filename, std::string_view insert) {
  // Jupyter's increment_filename: the number goes before the extension
  // (".ipynb", else everything from the first dot: "a.tar.gz" -> "a1.tar.gz").
  std::string name(filename);
  std::string base, suffix;
  auto last = name.rfind('.');
  if (last != std::string::npos && name.substr(last) == ".ipynb") {
    base = name.substr(0, last);
    suffix = name.substr(last);
  } else {
    auto first = name.find('.');
    base = first == std::string::npos ? name : name.substr(0, first);
    suffix = first == std::string::npos ? "" : name.substr(first);
  }
  for (int i = 0; i < 100000; ++i) {
    std::string candidate = base + (i ? std::string(insert) + std::to_string(i) : "") + suffix;
    auto child = dir.child(candidate);
    if (!child.ok()) return child.error();
    auto ex = exists(user, child.value());
    if (!ex.ok()) return ex.error();
    if (!ex.value()) return candidate;
  }
  return Error::conflict("No free name for " + name);
}

Result<Entry> Drive::new_untitled(const auth::Identity& user, std::string_view dir,
                                  std::optional<EntryType> type, std::string_view ext) {
  auto t = resolve(user, dir, true);
  if (!t.ok()) return t.error();
  auto d = files_->stat(t->user, t->path);
  if (!d.ok() || !d->directory) return Error::not_found("No such directory: " + q(t->path));
  EntryType kind = type ? *type : (ext == ".ipynb" ? EntryType::kNotebook : EntryType::kFile);
  std::string filename, insert;
  switch (kind) {
    case EntryType::kDirectory:
      filename = "Untitled Folder";
      insert = " ";
      break;
    case EntryType::kNotebook:
      filename = "Untitled.ipynb";
      break;
    case EntryType::kFile:
      filename = "untitled" + std::string(ext);
      break;
  }
  if (auto st = DrivePath::check_name(filename); !st.ok())
    return Error::bad_request("Invalid extension: " + st.error().message);
  MutexLock lock(user_lock(t->user));
  auto name = unique_name(t->user, t->path, filename, insert);
  if (!name.ok()) return name.error();
  auto path = t->path.child(name.value());
  if (!path.ok()) return path.error();
  if (kind == EntryType::kDirectory) {
    if (auto st = files_->make_directory(t->user, path.value()); !st.ok()) return st.error();
    return entry_for(t->user, path.value(), EntryType::kDirectory);
  }
  std::string bytes =
      kind == EntryType::kNotebook ? serialize_notebook(new_notebook()) : std::string();
  if (auto st = files_->write_atomic(t->user, path.value(), bytes); !st.ok()) return st.error();
  if (kind == EntryType::kNotebook)
    keep_revision(t->user, t->author, path.value(), std::move(bytes), RevisionKind::kSave);
  return entry_for(t->user, path.value(),
                   kind == EntryType::kNotebook ? EntryType::kNotebook : EntryType::kFile);
}

Result<Entry> Drive::copy(const auth::Identity& user, std::string_view from, std::string_view to) {
  auto src = resolve(user, from, true);
  if (!src.ok()) return src.error();
  auto dst = resolve(user, to, true);
  if (!dst.ok()) return dst.error();
  auto s = files_->stat(src->user, src->path);
  if (!s.ok()) return Error::not_found("file or directory does not exist: " + q(src->path));
  if (s->directory) return Error::bad_request("Can't copy directories");

  MutexLock lock(user_lock(src->user));
  DrivePath target;
  auto d = files_->stat(dst->user, dst->path);
  if (d.ok() && d->directory) {
    // "name-Copy1.ext" (an existing "-CopyN" is dropped first, as Jupyter does).
    static const std::regex copy_pat(R"(\-Copy\d*\.)");
    std::string name = std::regex_replace(std::string(src->path.name()), copy_pat, ".",
                                          std::regex_constants::format_first_only);
    auto unique = unique_name(dst->user, dst->path, name, "-Copy");
    if (!unique.ok()) return unique.error();
    auto child = dst->path.child(unique.value());
    if (!child.ok()) return child.error();
    target = child.value();
  } else {
    auto parent = files_->stat(dst->user, dst->path.parent());
    if (!parent.ok() || !parent->directory)
      return Error::not_found("No such parent directory: " + q(dst->path.parent()) +
                              " to copy file in");
    auto ex = exists(dst->user, dst->path);
    if (!ex.ok()) return ex.error();
    if (ex.value()) return Error::conflict("File already exists: " + q(dst->path));
    target = dst->path;
  }
  if (is_notebook_name(target.name()) && is_notebook_name(src->path.name())) {
    // Through the notebook save path, so that every stored notebook is valid.
    auto bytes = files_->read(src->user, src->path, options_.max_read_bytes);
    if (!bytes.ok()) return bytes.error();
    auto parsed = json_io::parse_json(bytes.value());
    if (!parsed.ok())
      return Error::bad_request("Cannot copy " + q(src->path) + ": not a readable notebook");
    json nb = std::move(parsed.value());
    if (auto st = prepare_for_save(nb); !st.ok())
      return Error::bad_request("Cannot copy: " + st.error().message);
    std::string out = serialize_notebook(std::move(nb));
    if (auto st = within_quota(dst->user, target, out.size()); !st.ok()) return st.error();
    if (auto st = files_->write_atomic(dst->user, target, out); !st.ok()) return st.error();
    count_written(dst->user, static_cast<std::int64_t>(out.size()));
    keep_revision(dst->user, dst->author, target, std::move(out), RevisionKind::kSave);
  } else {
    if (auto st = within_quota(dst->user, target, s->size); !st.ok()) return st.error();
    if (auto st = files_->copy_file(src->user, src->path, target); !st.ok()) return st.error();
    count_written(dst->user, static_cast<std::int64_t>(s->size));
  }
  return entry_for(dst->user, target, std::nullopt);
}

Result<std::string> Drive::find_item(const auth::Identity& user, const std::string& id) {
  auto t = resolve(user, "", false);
  if (!t.ok()) return t.error();
  return files_->find_item(t->user, id, kMaxSearchedEntries);
}

Status Drive::exclusive(const std::string& user, const std::function<Status()>& work) {
  if (!valid_username(user)) return Error::bad_request("invalid user name");
  MutexLock lock(user_lock(user));
  flush_revisions();
  return work();
}

Result<std::string> Drive::item_id(const auth::Identity& user, std::string_view path, bool assign) {
  auto t = resolve(user, path, false);
  if (!t.ok()) return t.error();
  if (!assign) return files_->item_id(t->user, t->path, false);
  MutexLock lock(user_lock(t->user));
  return files_->item_id(t->user, t->path, true);
}

Result<Entry> Drive::rename(const auth::Identity& user, std::string_view from,
                            std::string_view to) {
  auto src = resolve(user, from, true);
  if (!src.ok()) return src.error();
  auto dst = resolve(user, to, true);
  if (!dst.ok()) return dst.error();
  if (src->path == dst->path) return entry_for(src->user, src->path, std::nullopt);
  MutexLock lock(user_lock(src->user));
  if (auto st = files_->rename(src->user, src->path, dst->path); !st.ok()) {
    if (st.error().code == Error::Code::kNotFound) {
      auto s = files_->stat(src->user, src->path);
      if (!s.ok()) return Error::not_found("file or directory does not exist: " + q(src->path));
      return Error::not_found("No such directory: " + q(dst->path.parent()));
    }
    return st.error();
  }
  flush_revisions();  // revisions queued under the old name move too
  if (auto st = meta_->rename_path(src->user, src->path.str(), dst->path.str()); !st.ok())
    log::warn("drive: revisions did not follow a rename: " + st.error().message);
  return entry_for(dst->user, dst->path, std::nullopt);
}

Status Drive::remove(const auth::Identity& user, std::string_view path) {
  auto t = resolve(user, path, true);
  if (!t.ok()) return t.error();
  if (t->path.is_root()) return Error::bad_request("Can't delete root");
  MutexLock lock(user_lock(t->user));
  if (auto st = files_->remove(t->user, t->path); !st.ok()) {
    if (st.error().code == Error::Code::kNotFound)
      return Error::not_found("file or directory does not exist: " + q(t->path));
    return st;
  }
  flush_revisions();
  if (auto st = meta_->delete_path(t->user, t->path.str()); !st.ok())
    log::warn("drive: revisions of a deleted file were kept: " + st.error().message);
  return ok_status();
}

// ------------------------------------------------------------------ revisions

Result<std::vector<RevisionInfo>> Drive::revisions(const auth::Identity& user,
                                                   std::string_view path) {
  auto t = resolve(user, path, false);
  if (!t.ok()) return t.error();
  flush_revisions();
  return meta_->list_revisions(t->user, t->path.str());
}

Result<RevisionInfo> Drive::create_checkpoint(const auth::Identity& user, std::string_view path) {
  auto t = resolve(user, path, true);
  if (!t.ok()) return t.error();
  MutexLock lock(user_lock(t->user));
  auto bytes = files_->read(t->user, t->path, options_.max_read_bytes);
  if (!bytes.ok()) {
    if (bytes.error().code == Error::Code::kNotFound)
      return Error::not_found("file or directory does not exist: " + q(t->path));
    return bytes.error();
  }
  flush_revisions();
  auto r = meta_->add_revision(t->user, t->author, t->path.str(), now(), RevisionKind::kCheckpoint,
                               bytes.value());
  if (!r.ok()) return r.error();
  auto all = meta_->list_revisions(t->user, t->path.str());
  if (all.ok()) {
    auto drop = revisions_to_prune(all.value(), now(), options_.revisions);
    if (!drop.empty()) (void)meta_->delete_revisions(t->user, drop);  // pruning is best effort
  }
  return r;
}

Status Drive::restore_revision(const auth::Identity& user, std::string_view path, std::int64_t id) {
  auto t = resolve(user, path, true);
  if (!t.ok()) return t.error();
  MutexLock lock(user_lock(t->user));
  flush_revisions();
  auto bytes = meta_->revision_bytes(t->user, t->path.str(), id);
  if (!bytes.ok()) return bytes.error();
  // Keep what is about to be replaced (a no-op when it is the newest revision already).
  auto current = files_->read(t->user, t->path, options_.max_read_bytes);
  if (current.ok())
    store_revision(t->user, t->author, t->path.str(), current.value(), RevisionKind::kSave, now());
  if (auto st = within_quota(t->user, t->path, bytes.value().size()); !st.ok()) return st;
  if (auto st = files_->write_atomic(t->user, t->path, bytes.value()); !st.ok()) return st;
  store_revision(t->user, t->author, t->path.str(), bytes.value(), RevisionKind::kSave, now());
  return ok_status();
}

Status Drive::delete_revision(const auth::Identity& user, std::string_view path, std::int64_t id) {
  auto t = resolve(user, path, true);
  if (!t.ok()) return t.error();
  flush_revisions();
  auto r = meta_->get_revision(t->user, t->path.str(), id);
  if (!r.ok()) return r.error();
  return meta_->delete_revisions(t->user, {id});
}

Result<RevisionInfo> Drive::revision(const auth::Identity& user, std::string_view path,
                                     std::int64_t id) {
  auto t = resolve(user, path, false);
  if (!t.ok()) return t.error();
  flush_revisions();
  return meta_->get_revision(t->user, t->path.str(), id);
}

Result<std::string> Drive::revision_bytes(const auth::Identity& user, std::string_view path,
                                          std::int64_t id) {
  auto t = resolve(user, path, false);
  if (!t.ok()) return t.error();
  flush_revisions();
  return meta_->revision_bytes(t->user, t->path.str(), id);
}

Result<std::size_t> Drive::prune_all() {
  flush_revisions();
  auto paths = meta_->revised_paths();
  if (!paths.ok()) return paths.error();
  std::size_t dropped = 0;
  for (auto& [owner, path] : paths.value()) {
    auto all = meta_->list_revisions(owner, path);
    if (!all.ok()) return all.error();
    auto drop = revisions_to_prune(all.value(), now(), options_.revisions);
    if (drop.empty()) continue;
    if (auto st = meta_->delete_revisions(owner, drop); !st.ok()) return st.error();
    dropped += drop.size();
  }
  return dropped;
}

}  // namespace skylab::drive
