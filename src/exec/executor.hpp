// Executes a notebook's code cells, in order, on a kernel of a
// KernelManager, as nbclient does (same outputs, execution counts and
// per-cell timing metadata). Used by `skylab run`; meant for the server's
// jobs and the runtimes as well: it takes a kernel that is already running
// and knows nothing of terminals, files or signals.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "kernel/manager.hpp"

namespace skylab::exec {

struct ExecuteOptions {
  //! Per-cell limit from execute_request to execute_reply; none = unlimited.
  //! On expiry the kernel is interrupted and the run ends with kTimeout.
  std::optional<std::chrono::milliseconds> cell_timeout;
  //! Run on after a cell error (as nbclient's allow_errors). Cells tagged
  //! `raises-exception` may always fail.
  bool allow_errors = false;
  //! Record metadata.execution timestamps (nbclient's record_timing).
  bool record_timing = true;
  //! Cells tagged with this are not executed (nbclient's skip_cells_with_tag).
  std::string skip_tag = "skip-execution";
  //! After the execute_reply, how long to wait for iopub `idle` (nbclient's
  //! iopub_timeout).
  std::chrono::milliseconds iopub_grace{4000};
  //! After an interrupt (timeout or cancel), how long to wait for the cell to end.
  std::chrono::milliseconds interrupt_grace{5000};
  //! Limit for the kernel_info reply at the start of the run.
  std::chrono::milliseconds kernel_info_timeout{60000};
  //! How often ExecutionListener::on_tick is called while waiting.
  std::chrono::milliseconds tick_interval{200};
  //! Code run once before the first cell, silently (no outputs, no history,
  //! no execution count), e.g. to change the working directory. When it
  //! raises, the run ends with kCellError (failed_cell -1) and a message
  //! naming its error; empty: nothing runs.
  std::string setup_code;
  //! Says what setup_code does, for that message ("cannot <setup_what>: ...").
  std::string setup_what = "prepare the kernel";
};

//! How a run ended.
enum class RunStatus {
  kOk,          //!< every cell ran (errors allowed by options count as ok)
  kCellError,   //!< a cell raised; later cells were not run
  kTimeout,     //!< a cell ran past cell_timeout; the kernel was interrupted
  kKernelDied,  //!< the kernel process ended during the run
  kCancelled,   //!< cancel() was called
};

struct RunResult {
  RunStatus status = RunStatus::kOk;
  std::string message;    //!< one line for a user when status != kOk
  long failed_cell = -1;  //!< notebook index of the cell that ended the run
  std::size_t cells_run = 0;
  nlohmann::json error;  //!< ename, evalue, traceback of a failed cell (or null)
};

//! A cell as the listener sees it.
struct CellInfo {
  std::size_t index = 0;    //!< position in the notebook's cells
  std::size_t ordinal = 0;  //!< 1-based among the cells this run executes
  std::size_t total = 0;    //!< how many cells this run executes
  std::string first_line;   //!< first non-blank line of the source
};

//! Progress callbacks, all on the thread that called run().
class ExecutionListener {
 public:
  virtual ~ExecutionListener() = default;
  virtual void on_run_start(std::size_t total) {}
  virtual void on_cell_start(const CellInfo& cell) {}
  //! `ok` false when the cell failed, timed out, was cancelled or its kernel died.
  virtual void on_cell_end(const CellInfo& cell, bool ok, std::chrono::milliseconds took) {}
  //! Called about every tick_interval while a cell runs.
  virtual void on_tick() {}
};

//! Drives one kernel through one notebook. Thread-safety: run() on one
//! thread; cancel() from any thread (e.g. a signal-handling thread).
class NotebookExecutor {
 public:
  //! `kernel_id` must name a ready kernel of `kernels`. run() makes the
  //! executor the kernel's observer (replacing any other) and leaves it with
  //! none when it returns; the executor never shuts the kernel down.
  NotebookExecutor(std::shared_ptr<kernel::KernelService> kernels, std::string kernel_id,
                   ExecuteOptions options = {});
  ~NotebookExecutor();
  NotebookExecutor(const NotebookExecutor&) = delete;
  NotebookExecutor& operator=(const NotebookExecutor&) = delete;

  //! Executes the code cells of `nb` (an nbformat 4 notebook as
  //! parse_notebook returns it), in place: outputs, execution counts,
  //! metadata.execution, and metadata.language_info from the kernel. Code
  //! cells that this run will execute lose their old outputs first, so a
  //! run that stops early leaves the later ones empty. Blocks until done.
  RunResult run(nlohmann::json& nb, ExecutionListener* listener = nullptr);

  //! Asks the run to stop: the kernel is interrupted and run() returns
  //! kCancelled once the current cell ended or interrupt_grace passed.
  //! `immediately`: return without waiting for the cell. Safe to call before
  //! run(), which then returns kCancelled at once.
  void cancel(bool immediately = false);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

//! Starts a kernel of spec `spec_name` and waits until it is ready (or
//! `timeout`, or `cancelled` becomes true). Returns its id. NotFound when
//! there is no such kernelspec; Unavailable when it did not start. `owner`
//! and `options` (runtime type) go to KernelManager::start.
Result<std::string> start_kernel(kernel::KernelService& kernels, const std::string& spec_name,
                                 std::chrono::milliseconds timeout,
                                 const std::atomic<bool>* cancelled = nullptr,
                                 const std::string& owner = "skylab-run",
                                 const kernel::StartOptions& options = {});

//! Waits until kernel `kernel_id` is ready (or `timeout`, or `cancelled`
//! becomes true); stops it when it is not. Unavailable when it did not
//! become ready.
Status wait_ready(kernel::KernelService& kernels, const std::string& kernel_id,
                  std::chrono::milliseconds timeout, const std::atomic<bool>* cancelled = nullptr);

//! Shuts the kernel down and waits (bounded) until it is gone.
void stop_kernel(kernel::KernelService& kernels, const std::string& kernel_id);

}  // namespace skylab::exec
