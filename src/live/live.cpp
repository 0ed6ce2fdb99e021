#include "live/live.hpp"

#include <deque>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/safe_fs.hpp"
#include "common/util.hpp"
#include "drive/notebook.hpp"

namespace skylab::live {

using nlohmann::json;

namespace {

constexpr std::size_t kMaxCellIdBytes = 256;
//! An execute_request's metadata is parsed on the caller's thread (the
//! Asio thread): larger metadata is not recorded. Its content (the code,
//! any size the WebSocket allowed) is parsed on the worker.
constexpr std::size_t kMaxMetadataBytes = 64u << 10;
constexpr std::size_t kMaxPathBytes = 4096;

std::string norm(std::string_view p) {
  while (!p.empty() && p.front() == '/') p.remove_prefix(1);
  while (!p.empty() && p.back() == '/') p.remove_suffix(1);
  return std::string(p);
}

auth::Identity as_owner(const std::string& owner) {
  auth::Identity id;
  id.username = owner;
  return id;
}

struct Stamp {
  drive::TimePoint modified{};
  std::uint64_t size = 0;
  bool operator==(const Stamp& o) const { return modified == o.modified && size == o.size; }
};

}  // namespace

struct LiveNotebooks::Impl : std::enable_shared_from_this<LiveNotebooks::Impl> {
  using Key = std::pair<std::string, std::string>;  // owner, normalized path

  struct Doc {
    explicit Doc(json nb, DocumentLimits l) : doc(std::move(nb), l) {}
    Document doc;
    Stamp stamp;  //!< the file as this document last read or wrote it
    //! When a writer other than the recorder last changed the file (load,
    //! client save, outside write): what clients see as last_modified.
    drive::TimePoint edited{};
    Clock::time_point last_used{};
    // Co-editing: the protocol state (made at the first join) and the
    // clients joined now.
    struct Client {
      CollabPeer peer;
      std::shared_ptr<CollabSink> sink;
    };
    std::unique_ptr<CollabState> collab;
    std::map<std::uint64_t, Client> clients;
    //! The write-ahead journal of the co-editing changes not yet saved
    //! (made at the first one; none without a journal folder).
    std::unique_ptr<JournalWriter> journal;
    bool journal_warned = false;
  };
  struct Tracked {
    std::string kernel_id;
    Key key;
    std::string cell_id;
    bool idle = false, reply = false, overflowed = false;
    bool started = false;  //!< the kernel began it (busy or execute_input seen)
    //! Began before a server restart: its execute_reply went to the old
    //! server's socket, so its iopub idle alone ends it.
    bool resumed = false;
  };
  enum class Kind { kBegin, kMessage, kKernelGone };
  struct Event {
    explicit Event(Kind k) : kind(k) {}
    Kind kind;
    std::string kernel_id, msg_id, cell_id;
    std::string raw;  //!< kBegin: the execute_request's raw content (JSON)
    Key key;
    bool resume = false;
    kernel::Channel ch{};
    std::shared_ptr<const kernel::Message> msg;
    std::string msg_type;
    std::size_t bytes = 0;
    // Filled by parse() on the worker without the lock held.
    json content;      //!< kMessage: the parsed content; discarded when too deep or too big
    std::string date;  //!< kMessage: the header's date
    std::string code;  //!< kBegin: the code of the request
  };

  class Observer : public kernel::KernelObserver {
   public:
    Observer(std::weak_ptr<Impl> impl, std::string kernel_id)
        : impl_(std::move(impl)), kernel_id_(std::move(kernel_id)) {}
    void on_kernel_message(kernel::Channel ch, const std::shared_ptr<const kernel::Message>& msg,
                           const kernel::MessageInfo& info) override {
      if (auto i = impl_.lock()) i->on_kernel_message(kernel_id_, ch, msg, info);
    }
    void on_kernel_removed() override {
      if (auto i = impl_.lock()) i->on_kernel_gone(kernel_id_);
    }

   private:
    std::weak_ptr<Impl> impl_;
    std::string kernel_id_;
  };

  std::shared_ptr<drive::Drive> drive;
  std::shared_ptr<kernel::KernelService> kernels;
  std::function<std::optional<Binding>(const std::string&)> find_binding;
  LiveOptions opt;

  mutable Mutex mu;
  CondVar cv;
  std::map<Key, std::unique_ptr<Doc>> docs GUARDED_BY(mu);
  std::map<std::string, Tracked> tracked GUARDED_BY(mu);                      // by msg_id
  std::map<std::string, std::shared_ptr<Observer>> observers GUARDED_BY(mu);  // by kernel id
  std::deque<Event> queue GUARDED_BY(mu);
  std::size_t queued_bytes GUARDED_BY(mu) = 0;
  bool stopping GUARDED_BY(mu) = false;
  bool started GUARDED_BY(mu) = false;
  bool stopped GUARDED_BY(mu) = false;
  bool state_dirty GUARDED_BY(mu) = false;
  //! The file as the recorder last wrote it, and the edit time clients saw
  //! then, for documents no longer held (see last_edit). Bounded.
  std::map<Key, std::pair<Stamp, drive::TimePoint>> recorder_wrote GUARDED_BY(mu);
  static constexpr std::size_t kMaxRecorderWrote = 20000;
  std::map<std::uint64_t, Key> collab_clients GUARDED_BY(mu);  // which document a client edits
  std::uint64_t next_client GUARDED_BY(mu) = 1;
  std::thread worker;
  std::shared_ptr<JournalDir> jdir;  //!< set in start(), then constant; null: no journal
  Mutex recover_mu;                  //!< one journal replay at a time
  Mutex save_mu;  //!< one save at a time (worker, client saves): a save never overwrites a
                  //!< newer one unmerged

  Clock::time_point now() const { return opt.clock->now(); }

  //! Hands `frames` from client `from` (0: the server) of document `d` to
  //! its clients' sockets, under the lock that sequenced them. Frames are
  //! sequenced on several threads (a push on the I/O thread, a join or a
  //! merge from disk on the work queue, recorded outputs on the worker);
  //! handed over after the lock, a client could get version v+1 before v.
  //! A socket only queues a frame (it never blocks or calls back).
  void route(Doc& d, std::uint64_t from, std::vector<CollabFrame> frames) REQUIRES(mu) {
    for (auto& f : frames) {
      auto data = std::make_shared<const std::string>(std::move(f.data));
      for (auto& [id, c] : d.clients) {
        if (f.to == CollabFrame::To::kSender && id != from) continue;
        if (f.to == CollabFrame::To::kOthers && id == from) continue;
        c.sink->deliver(data);
      }
    }
  }
  //! The document is gone (deleted, renamed away behind the server's back):
  //! its clients are told and closed. Call with mu held.
  void drop_clients_locked(Doc& d) REQUIRES(mu) {
    for (auto& [id, c] : d.clients) {
      c.sink->close(4404, "the notebook was deleted or moved");
      collab_clients.erase(id);
    }
    d.clients.clear();
  }
  //! After d.doc.merge_outside: co-editing clients get what changed.
  void merged_locked(Doc& d, const json& before) REQUIRES(mu) {
    if (!d.collab) return;
    route(d, 0, d.collab->after_outside(before, d.doc));
  }

  static std::int64_t ns(drive::TimePoint t) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  }
  //! The first record of a journal: which notebook, and the file (as
  //! stat'ed) its records apply on top of.
  static json journal_header(const Key& key, const Stamp& stamp) {
    return {{"t", "head"},
            {"owner", key.first},
            {"path", key.second},
            {"mtime_ns", ns(stamp.modified)},
            {"size", stamp.size}};
  }
  //! Appends the changes `d`'s collab state accepted to its journal, before
  //! their frames are sent. Call with mu held. A journal that cannot be
  //! written is logged (the change is still applied and saved as before).
  void journal_locked(const Key& key, Doc& d) REQUIRES(mu) {
    if (!d.collab) return;
    auto records = d.collab->take_journal();
    if (!jdir || records.empty()) return;
    if (!d.journal)
      d.journal =
          std::make_unique<JournalWriter>(jdir, JournalDir::name_for(key.first, key.second));
    json head = journal_header(key, d.stamp);
    for (auto& r : records) {
      auto st = d.journal->append(head, r, d.doc.version());
      if (!st.ok() && !d.journal_warned) {
        d.journal_warned = true;
        log::warn("live: cannot journal a change of " + key.first + ":" + key.second + ": " +
                  st.error().message + " (it is saved within 5 s, but not kept across a crash)");
      }
    }
    if (d.journal->bytes() > jdir->limits().max_bytes) cv.notify_one();  // a save is forced
  }
  //! A save (or a merge from disk) put version `v` of `d` on disk as `d.stamp`.
  void journal_covered_locked(const Key& key, Doc& d, std::uint64_t v) REQUIRES(mu) {
    if (!d.journal) return;
    auto st = d.journal->covered(v, journal_header(key, d.stamp));
    if (!st.ok())
      log::warn("live: cannot rotate the journal of " + key.first + ":" + key.second + ": " +
                st.error().message);
  }

  //! Replays the journal `name` that a server left behind (killed before
  //! its save) onto the notebook its header names, through the co-editing
  //! code, saves the result and removes the journal. A journal that does not
  //! apply entirely (the file was changed from outside in between, a
  //! damaged line, the notebook is gone, the save fails) is kept aside
  //! (`<name>.kept-...`) and logged, never lost; what applies is applied.
  //! `expect`: the notebook the caller is about to load (another one named
  //! in the header: kept aside). Blocking (Drive I/O); takes recover_mu only.
  void recover(const std::string& name, const Key* expect) {
    MutexLock rl(recover_mu);
    auto bytes = jdir->read(name);
    if (!bytes.ok() && bytes.error().code == Error::Code::kNotFound) return;
    std::string what = name;
    auto keep = [&](const std::string& why) {
      auto k = jdir->set_aside(name);
      log::warn("live: the journal of " + what + " " + why + "; " +
                (k.ok() ? "kept as " + jdir->path() + "/" + k.value()
                        : "cannot keep it aside: " + k.error().message));
    };
    if (!bytes.ok()) return keep("cannot be read: " + bytes.error().message);
    if (bytes->empty()) return jdir->remove(name);
    auto dec = decode_journal(bytes.value(), jdir->limits());
    if (dec.records.empty() || str_of(dec.records[0], "t") != "head")
      return keep("has no valid header");
    const json& head = dec.records[0];
    Key key{str_of(head, "owner"), norm(str_of(head, "path"))};
    what = key.first + ":" + key.second + " (" + name + ")";
    if (key.first.empty() || key.second.size() < 6 || key.second.size() > kMaxPathBytes ||
        key.second.compare(key.second.size() - 6, 6, ".ipynb") != 0 ||
        JournalDir::name_for(key.first, key.second) != name)
      return keep("names no notebook of its own");
    if (expect && *expect != key) return keep("names another notebook");
    auto who = as_owner(key.first);
    // A notebook that is gone: kept aside. The Drive unavailable now (a
    // volume, a disk error): left in place for the next open to retry.
    auto later = [&](const Error& err) {
      log::warn("live: the journal of " + what + " was not replayed yet: " + err.message);
    };
    auto e = drive->get(who, key.second, drive::EntryType::kNotebook);
    if (!e.ok() && e.error().code != Error::Code::kNotFound) return later(e.error());
    if (!e.ok()) return keep("was not replayed: " + e.error().message);
    std::string message;
    auto nb = drive->read_notebook(who, key.second, &message);
    if (!nb.ok() && nb.error().code != Error::Code::kNotFound &&
        nb.error().code != Error::Code::kBadRequest && nb.error().code != Error::Code::kTooLarge)
      return later(nb.error());
    if (!nb.ok()) return keep("was not replayed: " + nb.error().message);
    auto m = head.find("mtime_ns");
    auto sz = head.find("size");
    bool base = m != head.end() && m->is_number_integer() &&
                m->get<std::int64_t>() == ns(e->modified) && sz != head.end() &&
                sz->is_number_unsigned() && sz->get<std::uint64_t>() == e->size.value_or(0);
    std::size_t applied = 0, skipped = 0;
    try {
      Document doc(std::move(nb.value()), opt.limits);
      CollabState cs(opt.collab, "replay");
      cs.prepare(doc);
      for (std::size_t r = 1; r < dec.records.size(); ++r)
        (cs.replay(doc, dec.records[r], !base) ? applied : skipped) += 1;
      if (applied) {
        auto saved = drive->save_notebook(who, key.second, doc.notebook());
        if (!saved.ok()) return keep("was replayed but cannot be saved: " + saved.error().message);
      }
    } catch (const std::exception& ex) {
      return keep(std::string("was not replayed: ") + ex.what());
    }
    log::info("live: replayed " + std::to_string(applied) + " change(s) of " + what +
              " from its journal" + (dec.torn_tail ? " (a torn last line ignored)" : ""));
    if (skipped || !base || dec.corrupt)
      return keep(std::string(!base ? "applies to a file changed since (only additions applied)"
                              : dec.corrupt ? "has a damaged line (the records before it applied)"
                                            : "") +
                  (skipped ? "; " + std::to_string(skipped) + " change(s) did not apply" : ""));
    jdir->remove(name);
  }
  static std::string str_of(const json& j, const char* k) {
    auto it = j.find(k);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  }

  void watch_locked(const std::string& kernel_id) REQUIRES(mu) {
    if (observers.count(kernel_id)) return;
    auto o = std::make_shared<Observer>(weak_from_this(), kernel_id);
    if (!kernels->add_observer(kernel_id, o).ok()) return;
    observers[kernel_id] = std::move(o);
  }

  void on_kernel_message(const std::string& kernel_id, kernel::Channel ch,
                         const std::shared_ptr<const kernel::Message>& msg,
                         const kernel::MessageInfo& info) {
    if (ch != kernel::Channel::kIopub && ch != kernel::Channel::kShell) return;
    if (info.parent_msg_id.empty()) return;
    MutexLock lock(mu);
    if (stopping) return;
    auto it = tracked.find(info.parent_msg_id);
    if (it == tracked.end() || it->second.kernel_id != kernel_id) return;
    std::size_t bytes = msg->content.size() + msg->header.size() + 256;
    bool essential = info.msg_type == "status" || info.msg_type == "execute_input" ||
                     info.msg_type == "execute_reply" || info.msg_type == "clear_output";
    if (!essential && queued_bytes + bytes > opt.max_queued_bytes) {
      // The worker is behind: this output is dropped and the cell says so.
      if (it->second.overflowed) return;
      it->second.overflowed = true;
      Event e{Kind::kMessage};
      e.kernel_id = kernel_id;
      e.msg_id = info.parent_msg_id;
      e.msg_type = "skylab_overflow";
      queue.push_back(std::move(e));
      cv.notify_one();
      return;
    }
    Event e{Kind::kMessage};
    e.kernel_id = kernel_id;
    e.msg_id = info.parent_msg_id;
    e.ch = ch;
    e.msg = msg;
    e.msg_type = info.msg_type;
    e.bytes = bytes;
    queued_bytes += bytes;
    queue.push_back(std::move(e));
    cv.notify_one();
  }

  void on_kernel_gone(const std::string& kernel_id) {
    MutexLock lock(mu);
    if (stopping) return;
    Event e{Kind::kKernelGone};
    e.kernel_id = kernel_id;
    queue.push_back(std::move(e));
    cv.notify_one();
  }

  // ------------------------------------------------------------ worker

  Result<std::unique_ptr<Doc>> load(const Key& key) {
    if (jdir) {
      // A server killed before its save left the confirmed changes here.
      std::string name = JournalDir::name_for(key.first, key.second);
      if (jdir->exists(name)) recover(name, &key);
    }
    auto who = as_owner(key.first);
    auto e = drive->get(who, key.second, drive::EntryType::kNotebook);
    if (!e.ok()) return e.error();
    std::string message;
    auto nb = drive->read_notebook(who, key.second, &message);
    if (!nb.ok()) return nb.error();
    auto d = std::make_unique<Doc>(std::move(nb.value()), opt.limits);
    d->stamp = Stamp{e->modified, e->size.value_or(0)};
    d->edited = e->modified;
    d->last_used = now();
    return d;
  }

  //! Parses what an event carries; called without the lock, so the kernels'
  //! I/O thread (which queues under it) never waits for a parse.
  static void parse(Event& ev) {
    if (ev.kind == Kind::kBegin && !ev.resume) {
      if (auto content = json_limits::parse_or_discarded(ev.raw); content.is_object())
        if (auto c = content.find("code"); c != content.end() && c->is_string())
          ev.code = c->get<std::string>();
      std::string().swap(ev.raw);
    } else if (ev.kind == Kind::kMessage && ev.msg) {
      ev.content = json_limits::parse_or_discarded(ev.msg->content);
      if (auto h = json_limits::parse_or_discarded(ev.msg->header); h.is_object())
        if (auto it = h.find("date"); it != h.end() && it->is_string())
          ev.date = it->get<std::string>();
    }
  }

  //! Applies one event; `mu` is released while loading.
  void apply(Event& ev) REQUIRES(mu) {
    if (ev.kind == Kind::kBegin) {
      queued_bytes -= std::min(queued_bytes, ev.bytes);
      if (!docs.count(ev.key)) {
        if (docs.size() >= opt.max_documents) {
          log::warn("live: too many open notebooks; not recording " + ev.key.second);
          tracked.erase(ev.msg_id);
          return;
        }
        auto d = [&]() REQUIRES(mu) {
          MutexUnlock unlocked(mu);
          return load(ev.key);
        }();
        if (!d.ok()) {
          log::info("live: not recording into " + ev.key.first + ":" + ev.key.second + ": " +
                    d.error().message);
          tracked.erase(ev.msg_id);
          state_dirty = true;
          return;
        }
        if (!docs.count(ev.key)) docs[ev.key] = std::move(d.value());
      }
      Doc& d = *docs[ev.key];
      d.doc.set_now(now());
      d.doc.begin(ev.msg_id, ev.cell_id, ev.code, ev.resume);
      d.last_used = now();
      if (!d.doc.tracks(ev.msg_id)) tracked.erase(ev.msg_id);
      state_dirty = true;
      return;
    }
    if (ev.kind == Kind::kKernelGone) {
      observers.erase(ev.kernel_id);
      end_executions(ev.kernel_id, [](const std::string&, const auto&) { return true; });
      return;
    }
    // A kernel message.
    queued_bytes -= std::min(queued_bytes, ev.bytes);
    auto t = tracked.find(ev.msg_id);
    if (t == tracked.end()) return;
    auto d = docs.find(t->second.key);
    if (d == docs.end()) return;
    Document& doc = d->second->doc;
    doc.set_now(now());
    d->second->last_used = now();
    if (ev.msg_type == "skylab_overflow") {
      doc.on_iopub(ev.msg_id, "stream", json{{"name", "stderr"}, {"text", ""}}, "",
                   opt.limits.max_cell_output_bytes + 1);
      return;
    }
    // Too deep or too big: not recorded (the clients still get it).
    if (ev.content.is_discarded()) return;
    const json* content = &ev.content;
    const std::string& date = ev.date;
    bool ended = false;
    if (ev.ch == kernel::Channel::kShell) {
      if (ev.msg_type != "execute_reply") return;
      doc.on_execute_reply(ev.msg_id, *content, date);
      t->second.reply = true;
      ended = t->second.idle;
    } else {
      if (!t->second.started && (ev.msg_type == "execute_input" || ev.msg_type == "status")) {
        t->second.started = true;
        end_abandoned(t->second.kernel_id, ev.msg_id);
      }
      if (doc.on_iopub(ev.msg_id, ev.msg_type, *content, date, ev.msg->content.size())) {
        t->second.idle = true;
        ended = t->second.reply || t->second.resumed;
      }
    }
    if (ended) {
      doc.end(ev.msg_id);
      tracked.erase(t);
      state_dirty = true;
    }
  }

  //! A kernel runs one execution at a time: when `current` starts, any
  //! other execution of `kernel_id` that started and never ended (the kernel
  //! was restarted or died mid-cell) is over. Keeps `current`'s entry.
  void end_abandoned(const std::string& kernel_id, const std::string& current) REQUIRES(mu) {
    end_executions(kernel_id, [&](const std::string& msg_id, const auto& t) {
      return msg_id != current && t.started;
    });
  }

  //! Ends (in their documents) and forgets the tracked executions of
  //! `kernel_id` for which `which(msg_id, entry)` is true.
  template <typename Pred>
  void end_executions(const std::string& kernel_id, Pred which) REQUIRES(mu) {
    for (auto it = tracked.begin(); it != tracked.end();) {
      if (it->second.kernel_id != kernel_id || !which(it->first, it->second)) {
        ++it;
        continue;
      }
      if (auto d = docs.find(it->second.key); d != docs.end()) {
        d->second->doc.set_now(now());
        d->second->doc.end(it->first);
      }
      it = tracked.erase(it);
      state_dirty = true;
    }
  }

  json state_locked() const REQUIRES(mu) {
    json out = json::array();
    for (auto& [msg_id, t] : tracked)
      out.push_back({{"msg_id", msg_id},
                     {"kernel_id", t.kernel_id},
                     {"owner", t.key.first},
                     {"path", t.key.second},
                     {"cell_id", t.cell_id}});
    return out;
  }

  //! Merges a write from outside (skylab run, a restored revision, a
  //! runtime writing into /content/drive) made since the document last read
  //! or wrote its file. Call with save_mu held and mu not held. False when
  //! the file is gone (the document is closed then).
  bool sync_with_disk(const Key& key) {
    Stamp stamp;
    {
      MutexLock lock(mu);
      auto d = docs.find(key);
      if (d == docs.end()) return false;
      stamp = d->second->stamp;
    }
    auto who = as_owner(key.first);
    auto e = drive->get(who, key.second, drive::EntryType::kNotebook);
    if (!e.ok()) {
      if (e.error().code == Error::Code::kNotFound) {  // deleted or renamed: the document closes
        MutexLock lock(mu);
        if (auto d = docs.find(key); d != docs.end()) {
          drop_clients_locked(*d->second);
          if (d->second->journal) d->second->journal->drop();
        }
        docs.erase(key);
        for (auto it = tracked.begin(); it != tracked.end();)
          it = it->second.key == key ? tracked.erase(it) : std::next(it);
        state_dirty = true;
        cv.notify_one();
        return false;
      }
      return true;
    }
    Stamp now_stamp{e->modified, e->size.value_or(0)};
    if (now_stamp == stamp) return true;
    std::string message;
    auto disk = drive->read_notebook(who, key.second, &message);
    if (!disk.ok()) return true;
    {
      MutexLock lock(mu);
      auto d = docs.find(key);
      if (d == docs.end()) return false;
      d->second->doc.set_now(now());
      json before = d->second->clients.empty() ? json() : d->second->doc.notebook();
      d->second->doc.merge_outside(std::move(disk.value()));
      if (!d->second->clients.empty()) merged_locked(*d->second, before);
      d->second->stamp = now_stamp;
      d->second->edited = now_stamp.modified;
      // The outside write won for sources and cells: the journal starts over on it.
      journal_covered_locked(key, *d->second, d->second->doc.version());
      log::info("live: merged an outside change of " + key.first + ":" + key.second);
      cv.notify_one();
    }
    return true;
  }

  //! Saves `key`'s document when due (or `force`). Takes the locks itself.
  void save(const Key& key, bool force) {
    MutexLock save_lock(save_mu);
    {
      MutexLock lock(mu);
      auto d = docs.find(key);
      if (d == docs.end() || !d->second->doc.dirty()) return;
      auto due = d->second->doc.save_due();
      if (!force && (!due || *due > now())) return;
    }
    if (!sync_with_disk(key)) return;
    json snapshot;
    std::uint64_t version = 0;
    {
      MutexLock lock(mu);
      auto d = docs.find(key);
      if (d == docs.end()) return;
      version = d->second->doc.version();
      snapshot = d->second->doc.notebook();
    }
    auto saved = drive->save_notebook(as_owner(key.first), key.second, std::move(snapshot));
    MutexLock lock(mu);
    auto d = docs.find(key);
    if (d == docs.end()) return;
    if (!saved.ok()) {
      log::warn("live: cannot save " + key.first + ":" + key.second + ": " + saved.error().message);
      d->second->doc.saved(version);  // not retried in a loop; the next change saves again
      return;
    }
    d->second->stamp = Stamp{saved->entry.modified, saved->entry.size.value_or(0)};
    d->second->doc.saved(version);
    journal_covered_locked(key, *d->second, version);
    if (recorder_wrote.size() >= kMaxRecorderWrote) recorder_wrote.erase(recorder_wrote.begin());
    recorder_wrote[key] = {d->second->stamp, d->second->edited};
  }

  void write_state(const json& state) {
    if (opt.state_file.empty()) return;
    if (!safe_fs::write_file(opt.state_file, state.dump(), 0600, false).ok())
      log::warn("live: cannot write " + opt.state_file + "; recordings will not survive a restart");
  }

  void run() {
    MutexLock lock(mu);
    for (;;) {
      while (!queue.empty()) {
        Event ev = std::move(queue.front());
        queue.pop_front();
        try {
          lock.unlock();
          try {
            parse(ev);
          } catch (...) {
            lock.lock();
            throw;
          }
          lock.lock();
          apply(ev);
        } catch (const std::exception& e) {
          log::warn(std::string("live: a kernel message was not recorded: ") + e.what());
        }
      }
      // Recorded outputs go to the co-editing clients, batched per drain.
      for (auto& [_, d] : docs) {
        if (d->clients.empty() || !d->collab)
          (void)d->doc.take_output_changes();
        else
          route(*d, 0, d->collab->outputs(d->doc));
      }
      if (state_dirty) {
        state_dirty = false;
        json st = state_locked();
        lock.unlock();
        write_state(st);
        lock.lock();
        continue;
      }
      // Saves due, and documents that can leave memory.
      std::optional<Clock::time_point> next;
      std::vector<std::pair<Key, bool>> due;  // and whether forced
      auto t = now();
      for (auto it = docs.begin(); it != docs.end();) {
        Doc& d = *it->second;
        auto s = d.doc.save_due();
        bool big = d.journal && jdir && d.journal->bytes() > jdir->limits().max_bytes;
        if (s && (*s <= t || big))
          due.emplace_back(it->first, big);
        else if (s)
          next = next ? std::min(*next, *s) : *s;
        if (!s && d.doc.running().empty() && d.clients.empty() &&
            t - d.last_used >= opt.idle_close) {
          it = docs.erase(it);
          continue;
        }
        ++it;
      }
      if (!due.empty()) {
        lock.unlock();
        for (auto& [k, force] : due) save(k, force);
        lock.lock();
        continue;
      }
      if (stopping) break;
      if (!queue.empty()) continue;
      auto wait = next ? std::min<Clock::duration>(*next - t, std::chrono::seconds(1))
                       : std::chrono::seconds(1);
      cv.wait_for(lock, wait);
    }
  }
};

LiveNotebooks::LiveNotebooks(std::shared_ptr<drive::Drive> drive,
                             std::shared_ptr<kernel::KernelService> kernels,
                             std::function<std::optional<Binding>(const std::string&)> find_binding,
                             LiveOptions options)
    : impl_(std::make_shared<Impl>()) {
  impl_->drive = std::move(drive);
  impl_->kernels = std::move(kernels);
  impl_->find_binding = std::move(find_binding);
  impl_->opt = std::move(options);
}

LiveNotebooks::~LiveNotebooks() {
  stop();
}

void LiveNotebooks::start() {
  auto& i = *impl_;
  {
    MutexLock lock(i.mu);
    if (i.started) return;
  }
  if (!i.opt.journal_base.empty()) {
    auto d = JournalDir::open(i.opt.journal_base, "live/journal", i.opt.journal);
    if (!d.ok()) {
      log::warn("live: no journal (" + d.error().message +
                "): co-editing changes confirmed less than 5 s before a crash can be lost");
    } else {
      i.jdir = d.value();
      // Journals a killed server left behind: replayed before anyone joins.
      for (auto& name : i.jdir->list()) i.recover(name, nullptr);
    }
  }
  {
    MutexLock lock(i.mu);
    if (i.started) return;
    i.started = true;
  }
  if (!i.opt.state_file.empty()) {
    std::ifstream in(i.opt.state_file);
    std::stringstream ss;
    if (in) ss << in.rdbuf();
    auto v = json_limits::parse_or_discarded(ss.str(), json_limits::kStoredLimits);
    MutexLock lock(i.mu);
    if (v.is_array()) {
      for (auto& e : v) {
        if (!e.is_object() || i.tracked.size() >= i.opt.max_executions) continue;
        auto s = [&](const char* k) {
          return e.contains(k) && e[k].is_string() ? e[k].get<std::string>() : std::string();
        };
        Impl::Event ev{Impl::Kind::kBegin};
        ev.msg_id = s("msg_id");
        ev.kernel_id = s("kernel_id");
        ev.key = {s("owner"), norm(s("path"))};
        ev.cell_id = s("cell_id");
        ev.resume = true;
        if (ev.msg_id.empty() || ev.cell_id.empty() || ev.key.first.empty() ||
            !i.kernels->get(ev.kernel_id).ok())
          continue;
        i.tracked[ev.msg_id] = Impl::Tracked{ev.kernel_id, ev.key, ev.cell_id};
        i.tracked[ev.msg_id].resumed = true;
        i.tracked[ev.msg_id].started = true;
        i.watch_locked(ev.kernel_id);
        log::info("live: resuming the recording of cell " + ev.cell_id + " of " + ev.key.first +
                  ":" + ev.key.second);
        i.queue.push_back(std::move(ev));
      }
    }
    i.state_dirty = true;
  }
  i.worker = std::thread([impl = impl_] { impl->run(); });
}

void LiveNotebooks::stop() {
  auto& i = *impl_;
  {
    MutexLock lock(i.mu);
    if (i.stopped) return;
    i.stopped = true;
    i.stopping = true;
  }
  i.cv.notify_all();
  if (i.worker.joinable()) i.worker.join();
  std::vector<Impl::Key> keys;
  json state;
  bool started = false;
  {
    MutexLock lock(i.mu);
    started = i.started;
    for (auto& [k, _] : i.docs) keys.push_back(k);
    state = i.state_locked();
    for (auto& [id, o] : i.observers) i.kernels->remove_observer(id, o.get());
  }
  for (auto& k : keys) i.save(k, true);
  if (started) i.write_state(state);
}

void LiveNotebooks::on_client_message(const std::string& kernel_id, kernel::Channel ch,
                                      const kernel::Message& msg) {
  if (ch != kernel::Channel::kShell) return;
  if (msg.header.find("execute_request") == std::string::npos) return;
  auto info = kernel::inspect(msg);
  if (!info.ok() || info->msg_type != "execute_request") return;
  if (msg.metadata.size() > kMaxMetadataBytes) return;
  auto meta = json_limits::parse_or_discarded(msg.metadata);
  if (!meta.is_object()) return;
  auto cid = meta.find("cellId");
  if (cid == meta.end() || !cid->is_string()) return;
  std::string cell_id = cid->get<std::string>();
  if (cell_id.empty() || cell_id.size() > kMaxCellIdBytes) return;
  auto binding = impl_->find_binding(kernel_id);
  if (!binding || binding->path.size() > kMaxPathBytes || binding->owner.empty()) return;
  std::string path = norm(binding->path);
  if (path.size() < 6 || path.compare(path.size() - 6, 6, ".ipynb") != 0) return;
  auto& i = *impl_;
  MutexLock lock(i.mu);
  if (i.stopping || !i.started) return;
  if (i.tracked.size() >= i.opt.max_executions ||
      i.queued_bytes + msg.content.size() > i.opt.max_queued_bytes) {
    log::warn("live: too many executions or queued messages; not recording " + info->msg_id);
    return;
  }
  Impl::Key key{binding->owner, path};
  i.tracked[info->msg_id] = Impl::Tracked{kernel_id, key, cell_id};
  i.watch_locked(kernel_id);
  Impl::Event ev{Impl::Kind::kBegin};
  ev.kernel_id = kernel_id;
  ev.msg_id = info->msg_id;
  ev.cell_id = cell_id;
  ev.raw = msg.content;  // parsed by the worker (only needed for a cell not in the document)
  ev.bytes = ev.raw.size();
  i.queued_bytes += ev.bytes;
  ev.key = std::move(key);
  i.queue.push_back(std::move(ev));
  i.cv.notify_one();
}

std::optional<json> LiveNotebooks::content(const std::string& owner, std::string_view path) const {
  auto& i = *impl_;
  Impl::Key key{owner, norm(path)};
  {
    MutexLock lock(i.mu);
    if (!i.docs.count(key)) return std::nullopt;
  }
  MutexLock save_lock(i.save_mu);
  if (!i.sync_with_disk(key)) return std::nullopt;
  MutexLock lock(i.mu);
  auto it = i.docs.find(key);
  if (it == i.docs.end()) return std::nullopt;
  return it->second->doc.notebook();
}

Result<drive::Drive::Saved> LiveNotebooks::save_from_client(const auth::Identity& user,
                                                            std::string_view path, json nb) {
  auto& i = *impl_;
  Impl::Key key{user.username, norm(path)};
  MutexLock save_lock(i.save_mu);
  std::uint64_t version = 0;
  {
    MutexLock lock(i.mu);
    auto d = i.docs.find(key);
    if (d != i.docs.end()) {
      if (auto st = drive::prepare_for_save(nb); !st.ok()) return st.error();
      d->second->doc.set_now(i.now());
      json before = d->second->clients.empty() ? json() : d->second->doc.notebook();
      nb = d->second->doc.merge_outside(std::move(nb));
      if (!d->second->clients.empty()) {
        i.merged_locked(*d->second, before);
        nb = d->second->doc.notebook();
      }
      version = d->second->doc.version();
    }
  }
  auto saved = i.drive->save_notebook(user, path, std::move(nb));
  if (version == 0 || !saved.ok()) return saved;
  MutexLock lock(i.mu);
  if (auto d = i.docs.find(key); d != i.docs.end()) {
    d->second->stamp = Stamp{saved->entry.modified, saved->entry.size.value_or(0)};
    d->second->edited = saved->entry.modified;
    d->second->doc.saved(version);
    i.journal_covered_locked(key, *d->second, version);
  }
  return saved;
}

drive::TimePoint LiveNotebooks::last_edit(const std::string& owner,
                                          const drive::Entry& entry) const {
  auto& i = *impl_;
  Impl::Key key{owner, norm(entry.path)};
  bool open = false;
  {
    MutexLock lock(i.mu);
    open = i.docs.count(key) > 0;
    if (!open) {
      // Closed since: the recorder's last write is still not an edit.
      auto it = i.recorder_wrote.find(key);
      if (it != i.recorder_wrote.end() &&
          it->second.first == Stamp{entry.modified, entry.size.value_or(0)})
        return it->second.second;
      return entry.modified;
    }
  }
  MutexLock save_lock(i.save_mu);
  if (!i.sync_with_disk(key)) return entry.modified;
  MutexLock lock(i.mu);
  auto it = i.docs.find(key);
  if (it == i.docs.end()) return entry.modified;
  return it->second->edited;
}

Result<drive::Entry> LiveNotebooks::rename(const auth::Identity& user, std::string_view from,
                                           std::string_view to) {
  auto& i = *impl_;
  MutexLock save_lock(i.save_mu);  // no save of the old path in flight
  auto from_path = drive::DrivePath::parse(from);
  auto e = i.drive->rename(user, from, to);
  if (!e.ok() || !from_path.ok()) return e;
  const std::string& owner = user.username;
  std::string f = norm(from_path->str()), t = norm(e->path);
  if (f.empty() || f == t) return e;
  auto moved = [&](const std::string& p) -> std::optional<std::string> {
    if (p == f) return t;
    if (p.size() > f.size() && p.compare(0, f.size(), f) == 0 && p[f.size()] == '/')
      return t + p.substr(f.size());
    return std::nullopt;
  };
  MutexLock lock(i.mu);
  std::vector<std::pair<Impl::Key, Impl::Key>> keys;
  for (auto& [k, _] : i.docs)
    if (k.first == owner)
      if (auto np = moved(k.second)) keys.push_back({k, {owner, *np}});
  for (auto& [old_key, new_key] : keys) {
    auto node = i.docs.extract(old_key);
    if (auto& j = node.mapped()->journal) {
      auto st = j->moved(JournalDir::name_for(new_key.first, new_key.second),
                         Impl::journal_header(new_key, node.mapped()->stamp));
      if (!st.ok())
        log::warn("live: cannot move the journal of " + new_key.second + ": " + st.error().message);
    }
    node.key() = new_key;
    i.docs.insert(std::move(node));
    i.recorder_wrote.erase(old_key);
  }
  for (auto& [_, k] : i.collab_clients)
    if (k.first == owner)
      if (auto np = moved(k.second)) k.second = *np;
  for (auto& [_, tr] : i.tracked)
    if (tr.key.first == owner)
      if (auto np = moved(tr.key.second)) {
        tr.key.second = *np;
        i.state_dirty = true;
      }
  for (auto& ev : i.queue)
    if (ev.key.first == owner)
      if (auto np = moved(ev.key.second)) ev.key.second = *np;
  i.cv.notify_one();
  return e;
}

std::map<std::string, std::string> LiveNotebooks::running(const std::string& owner,
                                                          std::string_view path) const {
  MutexLock lock(impl_->mu);
  auto it = impl_->docs.find({owner, norm(path)});
  if (it == impl_->docs.end()) return {};
  return it->second->doc.running();
}

std::size_t LiveNotebooks::open_documents() const {
  MutexLock lock(impl_->mu);
  return impl_->docs.size();
}

}  // namespace skylab::live

namespace skylab::live {

Result<std::uint64_t> LiveNotebooks::collab_join(const std::string& owner, std::string_view path,
                                                 std::shared_ptr<CollabSink> sink, std::string user,
                                                 bool writable) {
  auto& i = *impl_;
  Impl::Key key{owner, norm(path)};
  if (key.second.size() > kMaxPathBytes || key.second.size() < 6 ||
      key.second.compare(key.second.size() - 6, 6, ".ipynb") != 0)
    return Error::bad_request("Only notebooks (.ipynb) are co-edited");
  MutexLock save_lock(i.save_mu);  // no save or merge in between
  bool open = false;
  {
    MutexLock lock(i.mu);
    if (i.stopping || !i.started) return Error::unavailable("The server is stopping");
    open = i.docs.count(key) > 0;
    if (!open && i.docs.size() >= i.opt.max_documents)
      return Error::unavailable("Too many open notebooks; try again later");
  }
  if (open) {
    if (!i.sync_with_disk(key)) open = false;  // gone from disk: load says why
  }
  if (!open) {
    auto d = i.load(key);
    if (!d.ok()) return d.error();
    MutexLock lock(i.mu);
    if (!i.docs.count(key)) i.docs[key] = std::move(d.value());
  }
  std::uint64_t id = 0;
  {
    MutexLock lock(i.mu);
    auto it = i.docs.find(key);
    if (it == i.docs.end()) return Error::not_found("No such notebook");
    auto& d = *it->second;
    if (d.clients.size() >= i.opt.collab.max_clients)
      return Error::conflict("Too many people have this notebook open");
    d.doc.set_now(i.now());
    if (!d.collab) {
      d.collab = std::make_unique<CollabState>(i.opt.collab, util::random_hex(8));
      d.collab->prepare(d.doc);
    }
    id = i.next_client++;
    CollabPeer me{id, std::move(user), writable};
    std::vector<CollabPeer> others;
    for (auto& [_, c] : d.clients) others.push_back(c.peer);
    // Under the lock, as every frame (Impl::route): what is sequenced after
    // this init reaches the new client after it.
    sink->deliver(std::make_shared<const std::string>(d.collab->init(d.doc, me, others)));
    json joined = {{"t", "join"}, {"client", id}, {"user", me.user}};
    auto frame = std::make_shared<const std::string>(
        joined.dump(-1, ' ', false, json::error_handler_t::replace));
    for (auto& [_, c] : d.clients) c.sink->deliver(frame);
    d.clients[id] = Impl::Doc::Client{std::move(me), std::move(sink)};
    d.last_used = i.now();
    i.collab_clients[id] = key;
    i.cv.notify_one();
  }
  return id;
}

void LiveNotebooks::collab_message(std::uint64_t id, std::string_view frame) {
  auto& i = *impl_;
  json msg = json_limits::parse_or_discarded(frame);
  {
    MutexLock lock(i.mu);
    auto k = i.collab_clients.find(id);
    if (k == i.collab_clients.end()) return;
    auto d = i.docs.find(k->second);
    if (d == i.docs.end() || !d->second->collab) return;
    auto c = d->second->clients.find(id);
    if (c == d->second->clients.end()) return;
    Document& doc = d->second->doc;
    doc.set_now(i.now());
    auto v = doc.version();
    auto frames = d->second->collab->handle(doc, c->second.peer, msg);
    // On disk (the page cache) before anyone hears of it.
    i.journal_locked(k->second, *d->second);
    i.route(*d->second, id, std::move(frames));
    d->second->last_used = i.now();
    if (doc.version() != v) i.cv.notify_one();  // a save becomes due
  }
}

const CollabLimits& LiveNotebooks::collab_limits() const {
  return impl_->opt.collab;
}

void LiveNotebooks::collab_leave(std::uint64_t id) {
  auto& i = *impl_;
  {
    MutexLock lock(i.mu);
    auto k = i.collab_clients.find(id);
    if (k == i.collab_clients.end()) return;
    auto key = k->second;
    i.collab_clients.erase(k);
    auto d = i.docs.find(key);
    if (d == i.docs.end()) return;
    auto c = d->second->clients.find(id);
    if (c == d->second->clients.end()) return;
    CollabPeer who = c->second.peer;
    d->second->clients.erase(c);
    d->second->last_used = i.now();
    if (d->second->collab) i.route(*d->second, id, d->second->collab->left(who));
  }
}

}  // namespace skylab::live
