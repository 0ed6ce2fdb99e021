// Turns a kernel's iopub and shell messages for one execute_request into a
// notebook cell's outputs, exactly as nbclient (ExecutePreprocessor) and
// nbconvert's coalesce_streams do. Pure logic: no kernel, no I/O (the clock
// only when a message has no date), so it is tested by feeding recorded
// messages.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace skylab::exec {

//! nbclient's timestamp(): the message header's `date` as
//! `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds always present). Returns ""
//! when `date` is not an ISO 8601 date-time.
std::string normalize_timestamp(std::string_view date);

//! nbconvert's coalesce_streams carriage-return rule: in each line, the text
//! up to and including the last '\r' that is followed by another character
//! of that line is removed (progress bars keep their final state).
std::string apply_carriage_returns(std::string_view text);

//! Collects the outputs of the cells of one notebook run. Holds a pointer
//! to the notebook's `cells` array, which must outlive it and must not be
//! resized while it is in use. Not thread-safe: one run, one thread.
class OutputCollector {
 public:
  //! `cells` is the notebook's "cells" array. With `record_timing`, each
  //! executed cell gets metadata.execution with nbclient's four timestamps.
  explicit OutputCollector(nlohmann::json* cells, bool record_timing = true);

  //! Starts cell `index` (a code cell): empties its outputs and its
  //! metadata.execution, and drops a pending clear_output(wait=True).
  void begin_cell(std::size_t index);

  //! Makes cell `index` current again without clearing it (a recorder that
  //! follows several cells, or one that resumes after a restart).
  //! `clear_pending`: a clear_output(wait=True) of that cell still waits for
  //! its next output.
  void resume_cell(std::size_t index, bool clear_pending);
  //! Whether the current cell has a clear_output(wait=True) pending.
  bool clear_pending() const { return clear_before_next_output_; }
  //! Forgets every display id (the cells array was replaced: indexes changed).
  void forget_display_ids() { display_ids_.clear(); }

  //! One iopub message whose parent is the cell's execute_request.
  //! `content` is the parsed content, `date` the header's date. Returns true
  //! when it was the `status: idle` that ends the cell's output.
  bool on_iopub(std::string_view msg_type, const nlohmann::json& content, std::string_view date);

  //! The cell's execute_reply (records shell.execute_reply).
  void on_execute_reply(std::string_view date);

  //! Ends the current cell: applies the carriage-return rule to its streams.
  void end_cell();

 private:
  nlohmann::json& cell() { return (*cells_)[current_]; }
  void record(const char* key, std::string_view date);
  void append(nlohmann::json out, const std::string& display_id);
  void update_display(const std::string& display_id, const nlohmann::json& content);
  void clear_display_ids_of_current();

  nlohmann::json* cells_;
  bool record_timing_;
  std::size_t current_ = 0;
  bool clear_before_next_output_ = false;
  //! display_id -> cell index -> indexes into that cell's outputs.
  std::map<std::string, std::map<std::size_t, std::vector<std::size_t>>> display_ids_;
};

}  // namespace skylab::exec
