// One open notebook as the server holds it: the nbformat document, a
// version that grows with every change, and the state of the executions
// being recorded into its cells. Pure logic (no kernel, no I/O, no clock of
// its own): the service feeds it parsed kernel messages and asks it when to
// save, so it is tested with recorded messages and a fake clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "exec/outputs.hpp"

namespace skylab::live {

using Clock = std::chrono::steady_clock;

struct DocumentLimits {
  //! Output bytes (message content) recorded per execution; beyond it the
  //! cell gets one final stream "[output truncated by Skylab: N MB]" and
  //! later outputs are dropped (status, count and reply still recorded).
  std::size_t max_cell_output_bytes = 8u << 20;
  //! A save follows this long after the last change...
  std::chrono::milliseconds debounce{1000};
  //! ...but while changes keep coming (streaming output), at most this long
  //! after the first unsaved one.
  std::chrono::milliseconds max_delay{5000};
};

//! Not thread-safe: the service holds one lock per document around it.
class Document {
 public:
  //! `nb` is a notebook as Drive::read_notebook returns it (multi-line
  //! strings joined). Cells without an id get one (nbformat 4.5).
  Document(nlohmann::json nb, DocumentLimits limits);

  const nlohmann::json& notebook() const { return nb_; }
  //! Grows by one with every change applied (never goes back).
  std::uint64_t version() const { return version_; }

  //! An execute_request `msg_id` for cell `cell_id` with `code` begins (as
  //! the browser does: outputs cleared, execution_count null). A cell that
  //! is not in the document is appended as a code cell with `code`, so its
  //! outputs are not lost. `resume`: the execution began before (a server
  //! restart); the cell keeps what it has.
  void begin(const std::string& msg_id, const std::string& cell_id, const std::string& code,
             bool resume = false);
  //! Whether `msg_id` is an execution this document records.
  bool tracks(const std::string& msg_id) const { return execs_.count(msg_id) > 0; }
  //! One iopub message whose parent is `msg_id`. `content_bytes` is the
  //! size of the raw content (counted against the output limit). Returns
  //! true when it was the `status: idle` that ends the execution's output.
  bool on_iopub(const std::string& msg_id, std::string_view msg_type, const nlohmann::json& content,
                std::string_view date, std::size_t content_bytes);
  //! The execute_reply of `msg_id` (its status goes into the cell's
  //! metadata.execution["shell.execute_reply.status"]).
  void on_execute_reply(const std::string& msg_id, const nlohmann::json& content,
                        std::string_view date);
  //! Ends `msg_id` (idle and reply seen, or its kernel is gone).
  void end(const std::string& msg_id);
  //! Executions still running, by msg_id -> cell id.
  std::map<std::string, std::string> running() const;
  bool is_running(const std::string& cell_id) const;

  //! A whole new notebook from outside (a Contents PUT, a file changed on
  //! disk, a restored revision). The incoming cell set, order, sources and
  //! metadata win. A cell (matched by id) keeps the outputs and
  //! execution_count the server recorded when it is still running, or when
  //! the incoming copy has the same execution_count as the recorded one
  //! (the writer saw that run, so the server's copy is at least as
  //! complete). Executions of cells that are gone stop being recorded.
  //! Returns the merged notebook (also now this document's).
  const nlohmann::json& merge_outside(nlohmann::json incoming);

  // Co-editing (live/collab.hpp sequences these). Each returns false and
  // changes nothing when a cell it names is not there. Structural changes
  // keep the executions being recorded (they follow their cell by id).

  //! The source of cell `cell_id` (a string) or nullptr.
  const std::string* source(const std::string& cell_id) const;
  bool set_source(const std::string& cell_id, std::string source);
  //! Inserts `cell` (an object whose "id" is not in the document) after the
  //! cell `after`; "" or a cell that is gone: first / at the end.
  bool insert_cell(nlohmann::json cell, const std::string& after);
  bool delete_cell(const std::string& cell_id);
  //! Moves the cell after `after` ("": first). False when either is gone.
  bool move_cell(const std::string& cell_id, const std::string& after);
  //! "code", "markdown" or "raw"; a code cell loses its outputs.
  bool set_cell_type(const std::string& cell_id, const std::string& type);
  //! Replaces the cell's metadata as a whole (`metadata`: an object).
  bool set_cell_metadata(const std::string& cell_id, nlohmann::json metadata);
  //! Replaces the notebook's metadata as a whole (`metadata`: an object).
  void set_metadata(nlohmann::json metadata);
  //! Cells (by id) whose outputs or execution count changed since the last
  //! call, and forgets them.
  std::vector<std::string> take_output_changes();
  //! The execute_request msg_id of the last execution recorded into cell
  //! `cell_id` ("" none): a client knows the outputs of its own runs.
  std::string last_execution(const std::string& cell_id) const;

  //! Whether there are changes not yet saved.
  bool dirty() const { return dirty_since_.has_value(); }
  //! When the next save is due (nullopt: nothing to save).
  std::optional<Clock::time_point> save_due() const;
  //! A save of version `v` finished: changes up to it are on disk.
  void saved(std::uint64_t v);
  //! Marks a change at `now` (also done by every mutating call, with the
  //! time set by set_now).
  void set_now(Clock::time_point now) { now_ = now; }

 private:
  struct Exec {
    std::string cell_id;
    std::size_t bytes = 0;
    bool truncated = false;
    bool clear_pending = false;
  };
  std::optional<std::size_t> index_of(const std::string& cell_id) const;
  void changed();
  void output_changed(const std::string& cell_id);
  void collapse_last_stream(std::size_t cell_index, std::size_t old_len);

  nlohmann::json nb_;
  DocumentLimits limits_;
  std::uint64_t version_ = 1;
  std::uint64_t saved_version_ = 1;
  exec::OutputCollector collector_;
  std::map<std::string, Exec> execs_;                      //!< by execute_request msg_id
  std::map<std::string, nlohmann::json> recorded_counts_;  //!< cell id -> execution_count recorded
  std::optional<Clock::time_point> dirty_since_, last_change_;
  std::vector<std::string> output_changes_;       //!< bounded by the number of cells
  std::map<std::string, std::string> last_exec_;  //!< cell id -> msg_id; erased with the cell
  Clock::time_point now_{};
};

}  // namespace skylab::live
