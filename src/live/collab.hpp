// Real-time co-editing of a live notebook: the server is the central
// authority of @codemirror/collab. Every cell (addressed by its nbformat
// id) has its own version and update log; an update is accepted only on
// top of the cell's current version (else the client pulls, rebases with
// receiveUpdates and pushes again) and its ChangeSet is applied to the
// cell's source here (live/changeset.hpp). Structural operations (insert,
// delete, move, cell type, cell and notebook metadata) are sequenced in arrival order with one
// structure version per document; they name cells by id, so a client never
// needs to rebase them. A document always has a cell: deleting the last one
// sequences a blank code cell's insert (client 0, the server) right after. Presence (names,
// cursors) is relayed, never stored.
//
// Pure protocol logic over a Document: no sockets, no locks, no I/O. The
// service (live.cpp) holds the document lock around every call and sends
// the frames it returns. The wire protocol is in docs/architecture.md.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "live/document.hpp"

namespace skylab::live {

struct CollabLimits {
  //! A client frame, in bytes (bigger: the connection closes with 1009).
  std::size_t max_message_bytes = 1u << 20;
  //! Updates in one push.
  std::size_t max_updates_per_push = 200;
  //! Sections of one change set (and lines of one insertion).
  std::size_t max_sections = 20000;
  //! Bytes of one cell's source.
  std::size_t max_source_bytes = 1u << 20;
  //! Updates kept per cell, and their bytes: older ones are compacted (their
  //! effect is in the document; a client that is further behind gets the
  //! cell's whole text and rebases what it has not sent by a diff).
  std::size_t max_log_updates = 2000;
  std::size_t max_log_bytes = 4u << 20;
  //! Co-editing connections per document.
  std::size_t max_clients = 32;
  //! Cells per document (inserts beyond are refused).
  std::size_t max_cells = 5000;
  //! A cell's or the notebook's metadata (an op replaces it whole): its
  //! serialized bytes and its nesting.
  std::size_t max_metadata_bytes = 256u << 10;
  std::size_t max_metadata_depth = 32;
};

//! One connected client as the protocol sees it.
struct CollabPeer {
  std::uint64_t id = 0;   //!< unique in this server
  std::string user;       //!< shown to the others
  bool writable = false;  //!< owner or editor; viewers only read
};

//! A frame to send: to the sender only, to every peer, or to the others.
struct CollabFrame {
  enum class To { kSender, kAll, kOthers } to;
  std::string data;
};

//! Not thread-safe: one per document, under the document's lock.
class CollabState {
 public:
  //! `epoch`: names this incarnation of the logs (a reloaded document's
  //! versions start again at 0; a client with another epoch resets).
  CollabState(CollabLimits limits, std::string epoch);

  //! Makes `doc` fit for co-editing: sources as strings with "\n" only.
  void prepare(Document& doc);

  //! The first frame a client gets: the notebook, every cell's version,
  //! the structure version, who it is, whether it may write, who else is here.
  std::string init(const Document& doc, const CollabPeer& me,
                   const std::vector<CollabPeer>& others) const;

  //! A client's frame (already parsed). Refusals are error frames to the
  //! sender; nothing else changes then.
  std::vector<CollabFrame> handle(Document& doc, const CollabPeer& from, const nlohmann::json& msg);

  //! After doc.merge_outside replaced the notebook (`before` is the old
  //! one): changed sources go out as updates of a server client, the cell
  //! list as a "sync" frame.
  std::vector<CollabFrame> after_outside(const nlohmann::json& before, Document& doc);

  //! Frames for the cells whose outputs changed (recorded by part 1).
  std::vector<CollabFrame> outputs(Document& doc);

  //! A peer left: the others drop its cursor.
  std::vector<CollabFrame> left(const CollabPeer& who);

  std::uint64_t version(const std::string& cell_id) const;

  // ---- The write-ahead journal (live/journal.hpp). Every accepted change
  // is also kept as a record, which the service appends to the document's
  // journal before it sends the confirmation.

  //! The records of the changes accepted since the last call, in order:
  //! {"t":"text","cell","len","h","updates"} (len and h: bytes and FNV-1a of
  //! the cell's text before) and {"t":"op","op": the op as applied}.
  std::vector<nlohmann::json> take_journal();
  //! Applies one journal record to `doc` through the same checks and code
  //! as a client's push or op (a server peer), as a crashed server's
  //! journal is replayed onto its saved file. A text record applies only
  //! onto the very text it was made on (len and h). `additive`: the file
  //! changed from outside since the journal began, so only inserts of
  //! cells that are not there and text records apply (never a delete, move,
  //! type or metadata change over what the outside writer put there).
  //! Returns whether it applied; nothing changes when it did not. The
  //! record is untrusted input (a damaged file): anything malformed is
  //! refused as a client's frame would be.
  bool replay(Document& doc, const nlohmann::json& record, bool additive);

 private:
  struct Log {
    std::uint64_t base = 0;           //!< version of the oldest update kept
    std::deque<std::string> updates;  //!< serialized {"clientID","changes"}
    std::size_t bytes = 0;
    std::uint64_t version() const { return base + updates.size(); }
  };
  CollabFrame error(const nlohmann::json& msg, std::string code, std::string message) const;
  std::vector<CollabFrame> push(Document& doc, const CollabPeer& from, const nlohmann::json& msg);
  std::vector<CollabFrame> pull(const Document& doc, const nlohmann::json& msg) const;
  std::vector<CollabFrame> op(Document& doc, const CollabPeer& from, const nlohmann::json& msg);
  //! The broadcast of an applied op (the next structure version, the sender's rid).
  CollabFrame sequenced(const nlohmann::json& msg, const CollabPeer& from, nlohmann::json applied);
  void append(Log& log, std::string update);

  CollabLimits limits_;
  std::string epoch_;
  std::map<std::string, Log> logs_;  //!< by cell id; absent: version 0, empty
  std::uint64_t structure_ = 0;
  std::vector<nlohmann::json> journal_;  //!< accepted since take_journal
  bool replaying_ = false;  //!< a deleted last cell's blank insert is a record of its own
};

}  // namespace skylab::live
