// The live notebook service: while a kernel works on a notebook (a session
// binds the kernel to the notebook's path), the server holds the notebook's
// document, records the outputs of every execute_request that names its cell
// (`metadata.cellId`) into it, serves it to Contents API readers, merges
// writes from outside into it and saves it to the Drive itself: debounced,
// atomically, with a revision, on a thread of its own.
//
// Designed for co-editing later: every change to a document is applied in
// one place (the service's worker, or save_from_client) under one lock and
// bumps the document's version.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "drive/drive.hpp"
#include "kernel/manager.hpp"
#include "live/collab.hpp"
#include "live/document.hpp"
#include "live/journal.hpp"

namespace skylab::live {

//! Which notebook a kernel works on: the owner's Drive path of its session.
struct Binding {
  std::string owner;
  std::string path;
};

//! Where a co-editing client's frames go (a WebSocket). Thread-safe, never
//! blocks and never calls back into LiveNotebooks: frames are queued, and
//! they are handed over under the lock that sequenced them, so each client
//! gets a document's frames in that order.
class CollabSink {
 public:
  virtual ~CollabSink() = default;
  virtual void deliver(std::shared_ptr<const std::string> frame) = 0;
  virtual void close(std::uint16_t code, std::string reason) = 0;
};

struct LiveOptions {
  DocumentLimits limits;
  CollabLimits collab;
  //! Executions being recorded, kept here (root-owned, atomically written)
  //! so that a restarted server continues recording them. "" none.
  std::string state_file;
  //! The write-ahead journal of co-editing changes (live/journal.hpp) lives
  //! in `<journal_base>/live/journal` (the data directory; root's). ""
  //! none: a server killed between a confirmation and the save loses it.
  std::string journal_base;
  JournalLimits journal;
  //! Kernel messages waiting for the worker, in bytes; beyond it the
  //! execution's output is marked truncated (the kernel never waits).
  std::size_t max_queued_bytes = 64u << 20;
  //! Documents held at once; executions on further notebooks are not recorded.
  std::size_t max_documents = 512;
  //! A document with nothing running and nothing to save leaves memory
  //! after this long.
  std::chrono::milliseconds idle_close{60000};
  //! Executions tracked at once (bounds the state file and the maps).
  std::size_t max_executions = 10000;
  //! Clock (its now()) for debouncing; outlives the LiveNotebooks.
  const skylab::Clock* clock = &real_clock();
};

//! Thread-safe.
class LiveNotebooks {
 public:
  //! `find_binding` says which notebook a kernel's session is bound to
  //! (nullopt: none; its executions are not recorded); any thread, quick.
  LiveNotebooks(std::shared_ptr<drive::Drive> drive, std::shared_ptr<kernel::KernelService> kernels,
                std::function<std::optional<Binding>(const std::string& kernel_id)> find_binding,
                LiveOptions options);
  //! Stops (as stop()).
  ~LiveNotebooks();

  //! Replays the journals a killed server left behind onto their notebooks
  //! (blocking, Drive I/O), then starts the worker and resumes the
  //! recordings in the state file whose kernels are alive (call after the
  //! kernels were reattached).
  void start();
  //! Saves every document with changes and stops the worker; the state file
  //! keeps running executions for the next server. Later calls do nothing.
  void stop();

  //! A client sent `msg` on `ch` to kernel `kernel_id`. An execute_request
  //! on shell with a string `metadata.cellId` on a kernel with a binding
  //! starts recording. Any thread; quick (no I/O).
  void on_client_message(const std::string& kernel_id, kernel::Channel ch,
                         const kernel::Message& msg);

  //! The live document of `owner`'s notebook `path` (a copy), or nullopt
  //! when it is not open. A write from outside since the document last read
  //! or wrote the file is merged first (as a client save is). Blocking
  //! (a stat, maybe a read): never on the Asio thread.
  std::optional<nlohmann::json> content(const std::string& owner, std::string_view path) const;

  //! What clients see as last_modified of `owner`'s notebook `entry` (as
  //! the Drive just stat'ed it): when a writer other than the recorder last
  //! changed the file (loaded, saved by a client, written from outside).
  //! The recorder's own saves never look like a conflicting edit to an
  //! editor (the app's and JupyterLab's "changed elsewhere" checks), also
  //! after its document left memory. `entry.modified` for files the
  //! recorder never wrote. Blocking (a stat): never on the Asio thread.
  drive::TimePoint last_edit(const std::string& owner, const drive::Entry& entry) const;

  //! A notebook save from a client (Contents API PUT, also through an editor
  //! share). When the notebook is live the incoming notebook is merged into
  //! it (Document::merge_outside) and the result is saved; else it is
  //! saved as is. Blocking (Drive I/O): never on the Asio thread.
  Result<drive::Drive::Saved> save_from_client(const auth::Identity& user, std::string_view path,
                                               nlohmann::json nb);

  //! Drive::rename for a client, with no save of the live documents in
  //! between: open documents at or below `from` follow to the new path, and
  //! so do their recordings. Blocking (Drive I/O): never on the Asio thread.
  Result<drive::Entry> rename(const auth::Identity& user, std::string_view from,
                              std::string_view to);

  //! The executions being recorded into `owner`'s notebook `path` now, as
  //! execute_request msg_id -> cell id (empty when none or not open). Any
  //! thread; no I/O.
  std::map<std::string, std::string> running(const std::string& owner, std::string_view path) const;

  // ---- Co-editing (live/collab.hpp). The caller checked who may read and
  // who may write; a document stays open while clients are joined.

  //! Joins `user` (writer or viewer) to `owner`'s notebook `path`, loading
  //! it when needed, and sends the client its init frame through `sink`;
  //! the others learn that it joined. Returns the client's id. Conflict
  //! when the document has max_clients already. Blocking (Drive I/O): never
  //! on the Asio thread.
  Result<std::uint64_t> collab_join(const std::string& owner, std::string_view path,
                                    std::shared_ptr<CollabSink> sink, std::string user,
                                    bool writable);
  //! A frame from client `id` (at most CollabLimits::max_message_bytes;
  //! the caller closes bigger ones). Applied in order under the document's
  //! lock; replies and broadcasts are queued to the sinks. Quick, no I/O.
  void collab_message(std::uint64_t id, std::string_view frame);
  //! Client `id` is gone (any reason). Idempotent.
  void collab_leave(std::uint64_t id);
  const CollabLimits& collab_limits() const;

  //! Documents held now (for tests and the bench).
  std::size_t open_documents() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace skylab::live
