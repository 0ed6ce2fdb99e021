#include "exec/executor.hpp"

#include <deque>
#include <optional>
#include <vector>

#include "common/json_limits.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/util.hpp"
#include "exec/notebook.hpp"
#include "exec/outputs.hpp"

namespace skylab::exec {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace k = skylab::kernel;

namespace {

// Messages of the kernel, handed from the manager's I/O thread to run().
struct Inbox : k::KernelObserver {
  struct Item {
    k::Channel channel;
    std::shared_ptr<const k::Message> msg;
    std::string msg_type;
    std::string parent_id;
  };

  Mutex mutex;
  CondVar cv;
  std::deque<Item> items GUARDED_BY(mutex);
  bool removed GUARDED_BY(mutex) = false;
  int cancel GUARDED_BY(mutex) = 0;  // 0 none, 1 cancel, 2 immediately

  void on_kernel_message(k::Channel ch, const std::shared_ptr<const k::Message>& msg,
                         const k::MessageInfo& info) override {
    if (ch != k::Channel::kIopub && ch != k::Channel::kShell) return;
    // run() only needs to wake for what can end a wait (replies, status
    // changes) or when output piles up; fewer wake-ups leave the CPU to
    // the kernel.
    bool wake = ch == k::Channel::kShell || info.msg_type == "status";
    {
      MutexLock lock(mutex);
      items.push_back({ch, msg, info.msg_type, info.parent_msg_id});
      wake = wake || items.size() >= kWakeBacklog;
    }
    if (wake) cv.notify_one();
  }

  static constexpr std::size_t kWakeBacklog = 64;

  void on_kernel_removed() override {
    {
      MutexLock lock(mutex);
      removed = true;
    }
    cv.notify_one();
  }
};

std::string first_line(const std::string& source) {
  std::size_t start = 0;
  while (start < source.size()) {
    std::size_t nl = source.find('\n', start);
    std::string line =
        source.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    auto b = line.find_first_not_of(" \t\r");
    if (b != std::string::npos) {
      auto e = line.find_last_not_of(" \t\r");
      return line.substr(b, e - b + 1);
    }
    if (nl == std::string::npos) break;
    start = nl + 1;
  }
  return {};
}

bool has_tag(const json& cell, std::string_view tag) {
  auto m = cell.find("metadata");
  if (m == cell.end() || !m->is_object()) return false;
  auto tags = m->find("tags");
  if (tags == m->end() || !tags->is_array()) return false;
  for (const auto& t : *tags)
    if (t.is_string() && t.get_ref<const std::string&>() == tag) return true;
  return false;
}

bool blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n\f\v") == std::string::npos;
}

std::string header_date(const k::Message& m) {
  auto h = json_limits::parse_or_discarded(m.header);
  if (h.is_object()) {
    auto d = h.find("date");
    if (d != h.end() && d->is_string()) return d->get<std::string>();
  }
  return {};
}

}  // namespace

struct NotebookExecutor::Impl {
  std::shared_ptr<k::KernelService> kernels;
  std::string kernel_id;
  ExecuteOptions opts;
  std::shared_ptr<Inbox> inbox = std::make_shared<Inbox>();
  std::string session = util::uuid4();

  enum class Wait { kMessage, kTick, kDead, kCancel };

  // Pops the next message, or says why there is none before `until`.
  Wait next(Inbox::Item& out, Clock::time_point until, int& cancel_seen) {
    MutexLock lock(inbox->mutex);
    while (true) {
      if (inbox->cancel > cancel_seen) {
        cancel_seen = inbox->cancel;
        return Wait::kCancel;
      }
      if (!inbox->items.empty()) {
        out = std::move(inbox->items.front());
        inbox->items.pop_front();
        return Wait::kMessage;
      }
      if (inbox->removed) return Wait::kDead;
      if (inbox->cv.wait_until(lock, until) == std::cv_status::timeout) {
        if (!inbox->items.empty() || inbox->cancel > cancel_seen) continue;
        return Wait::kTick;
      }
    }
  }

  bool kernel_dead() const {
    auto m = kernels->get(kernel_id);
    return !m.ok() || m->execution_state == kernel::KernelState::kDead;
  }

  static bool is_dead_status(const Inbox::Item& it) {
    if (it.channel != k::Channel::kIopub || it.msg_type != "status" || !it.parent_id.empty())
      return false;
    auto c = json_limits::parse_or_discarded(it.msg->content);
    return c.is_object() && c.value("execution_state", "") == "dead";
  }

  Result<std::string> send(std::string_view type, const json& content) {
    k::Message m = k::make_message(type, content, session, "skylab");
    auto info = k::inspect(m);
    if (!info.ok()) return info.error();
    std::string id = info->msg_id;
    auto st = kernels->send(kernel_id, k::Channel::kShell, std::move(m));
    if (!st.ok()) return st.error();
    return id;
  }
};

NotebookExecutor::NotebookExecutor(std::shared_ptr<k::KernelService> kernels, std::string kernel_id,
                                   ExecuteOptions options)
    : impl_(std::make_unique<Impl>()) {
  impl_->kernels = std::move(kernels);
  impl_->kernel_id = std::move(kernel_id);
  impl_->opts = std::move(options);
}

NotebookExecutor::~NotebookExecutor() = default;

void NotebookExecutor::cancel(bool immediately) {
  {
    MutexLock lock(impl_->inbox->mutex);
    impl_->inbox->cancel = std::max(impl_->inbox->cancel, immediately ? 2 : 1);
  }
  impl_->inbox->cv.notify_one();
}

RunResult NotebookExecutor::run(json& nb, ExecutionListener* listener) {
  Impl& im = *impl_;
  ExecutionListener quiet;
  ExecutionListener& ls = listener ? *listener : quiet;
  RunResult result;
  json& cells = nb["cells"];

  // The plan: code cells with a non-blank source and no skip tag (as nbclient).
  std::vector<std::size_t> plan;
  for (std::size_t i = 0; i < cells.size(); ++i) {
    json& c = cells[i];
    if (c.value("cell_type", "") != "code" || blank(cell_source(c)) || has_tag(c, im.opts.skip_tag))
      continue;
    plan.push_back(i);
    c["outputs"] = json::array();
    c["execution_count"] = nullptr;
    if (c.contains("metadata") && c["metadata"].is_object()) c["metadata"].erase("execution");
  }

  auto finish = [&](RunStatus status, std::string message, long cell = -1) {
    result.status = status;
    result.message = std::move(message);
    result.failed_cell = cell;
    im.kernels->remove_observer(im.kernel_id, im.inbox.get());
    return result;
  };

  int cancel_seen = 0;
  {
    MutexLock lock(im.inbox->mutex);
    im.inbox->items.clear();
    if (im.inbox->cancel > 0) {
      result.status = RunStatus::kCancelled;
      result.message = "cancelled before the first cell";
      return result;
    }
  }
  if (auto st = im.kernels->add_observer(im.kernel_id, im.inbox); !st.ok()) {
    result.status = RunStatus::kKernelDied;
    result.message = "the kernel is gone: " + st.error().message;
    return result;
  }
  if (im.kernel_dead())
    return finish(RunStatus::kKernelDied, "the kernel died before the run started");

  // A shell request before the first cell and its reply (`reply_type`, ""
  // for any): the reply's content, or the run's end when cancelled, when the
  // kernel dies, or with `late` once the kernel_info timeout has passed.
  struct EarlyReply {
    json content;
    std::optional<RunResult> ended;
  };
  auto request_before_cells = [&](const char* type, const json& content, const char* reply_type,
                                  const std::string& late) -> EarlyReply {
    auto id = im.send(type, content);
    if (!id.ok())
      return {{}, finish(RunStatus::kKernelDied, "cannot reach the kernel: " + id.error().message)};
    auto deadline = Clock::now() + im.opts.kernel_info_timeout;
    while (true) {
      Inbox::Item it;
      auto w = im.next(it, std::min(deadline, Clock::now() + im.opts.tick_interval), cancel_seen);
      if (w == Impl::Wait::kCancel)
        return {{}, finish(RunStatus::kCancelled, "cancelled before the first cell")};
      if (w == Impl::Wait::kDead || (w == Impl::Wait::kMessage && Impl::is_dead_status(it)) ||
          (w == Impl::Wait::kTick && im.kernel_dead()))
        return {{}, finish(RunStatus::kKernelDied, "the kernel died before the first cell")};
      if (w == Impl::Wait::kTick && Clock::now() >= deadline)
        return {{}, finish(RunStatus::kKernelDied, late)};
      if (w != Impl::Wait::kMessage || it.channel != k::Channel::kShell ||
          it.parent_id != id.value() || (*reply_type && it.msg_type != reply_type))
        continue;
      return {json_limits::parse_or_discarded(it.msg->content), std::nullopt};
    }
  };

  // kernel_info: the notebook's language_info comes from the kernel (as nbclient).
  {
    auto r = request_before_cells("kernel_info_request", json::object(), "",
                                  "the kernel did not answer kernel_info");
    if (r.ended) return *r.ended;
    auto& c = r.content;
    if (c.is_object() && c.contains("language_info") && c["language_info"].is_object())
      nb["metadata"]["language_info"] = c["language_info"];
  }

  if (!im.opts.setup_code.empty()) {
    auto r = request_before_cells("execute_request",
                                  {{"code", im.opts.setup_code},
                                   {"silent", true},
                                   {"store_history", false},
                                   {"user_expressions", json::object()},
                                   {"allow_stdin", false},
                                   {"stop_on_error", true}},
                                  "execute_reply",
                                  "the kernel did not answer in time (" + im.opts.setup_what + ")");
    if (r.ended) return *r.ended;
    auto& c = r.content;
    auto text = [&](const char* key) {
      auto v = c.find(key);
      return v != c.end() && v->is_string() ? v->get<std::string>().substr(0, 1000) : std::string();
    };
    if (c.is_object() && text("status") == "error") {
      result.error = {{"ename", text("ename")}, {"evalue", text("evalue")}};
      return finish(RunStatus::kCellError,
                    "cannot " + im.opts.setup_what + ": " + text("ename") + ": " + text("evalue"));
    }
  }

  OutputCollector collector(&cells, im.opts.record_timing);
  ls.on_run_start(plan.size());
  for (std::size_t n = 0; n < plan.size(); ++n) {
    std::size_t index = plan[n];
    json& cell = cells[index];
    std::string source = cell_source(cell);
    CellInfo info{index, n + 1, plan.size(), first_line(source)};
    bool allow_error = im.opts.allow_errors || has_tag(cell, "raises-exception");

    ls.on_cell_start(info);
    auto started = Clock::now();
    collector.begin_cell(index);
    auto msg_id = im.send("execute_request", {{"code", source},
                                              {"silent", false},
                                              {"store_history", true},
                                              {"user_expressions", json::object()},
                                              {"allow_stdin", false},
                                              {"stop_on_error", !allow_error}});
    if (!msg_id.ok()) {
      ls.on_cell_end(info, false, std::chrono::milliseconds(0));
      return finish(RunStatus::kKernelDied, "cannot reach the kernel: " + msg_id.error().message,
                    static_cast<long>(index));
    }

    enum class Stop { kNone, kTimeout, kCancel, kDead } stop = Stop::kNone;
    bool got_reply = false, got_idle = false;
    json reply;
    auto reply_at = Clock::time_point::max();
    auto timeout_at =
        im.opts.cell_timeout ? started + *im.opts.cell_timeout : Clock::time_point::max();
    auto grace_until = Clock::time_point::max();
    auto next_tick = Clock::now() + im.opts.tick_interval;
    // ipykernel ignores SIGINT between requests: an interrupt that lands
    // before the cell started is sent again once execute_input shows it did.
    bool cell_started = false, interrupted_early = false;
    auto interrupt = [&](Stop why) {
      stop = why;
      interrupted_early = !cell_started;
      // A failed interrupt (the kernel is gone) ends in the grace deadline below.
      if (auto st = im.kernels->interrupt(im.kernel_id); !st.ok())
        log::warn("cannot interrupt kernel " + im.kernel_id + ": " + st.error().message);
      grace_until = Clock::now() + im.opts.interrupt_grace;
    };

    while (!(got_reply && got_idle)) {
      auto now = Clock::now();
      if (got_reply && now >= reply_at + im.opts.iopub_grace)
        break;  // as nbclient: idle never came
      if (stop != Stop::kNone && now >= grace_until) break;
      if (stop == Stop::kNone && now >= timeout_at) {
        interrupt(Stop::kTimeout);
        continue;
      }
      if (now >= next_tick) {
        ls.on_tick();
        next_tick = now + im.opts.tick_interval;
        if (im.kernel_dead()) {
          stop = Stop::kDead;
          break;
        }
      }
      auto until =
          std::min({next_tick, timeout_at, grace_until,
                    got_reply ? reply_at + im.opts.iopub_grace : Clock::time_point::max()});
      Inbox::Item it;
      auto w = im.next(it, until, cancel_seen);
      if (w == Impl::Wait::kTick) continue;
      if (w == Impl::Wait::kDead) {
        stop = Stop::kDead;
        break;
      }
      if (w == Impl::Wait::kCancel) {
        if (cancel_seen >= 2) {
          stop = Stop::kCancel;
          break;
        }
        if (stop == Stop::kNone)
          interrupt(Stop::kCancel);
        else
          stop = Stop::kCancel;
        continue;
      }
      if (Impl::is_dead_status(it)) {
        stop = Stop::kDead;
        break;
      }
      if (it.parent_id != msg_id.value()) continue;
      if (it.channel == k::Channel::kShell) {
        if (it.msg_type != "execute_reply") continue;
        got_reply = true;
        reply_at = Clock::now();
        reply = json_limits::parse_or_discarded(it.msg->content);
        collector.on_execute_reply(header_date(*it.msg));
        continue;
      }
      auto content = json_limits::parse_or_discarded(it.msg->content);
      if (content.is_discarded()) continue;
      if (it.msg_type == "execute_input") {
        cell_started = true;
        if (interrupted_early) {
          interrupted_early = false;
          if (auto st = im.kernels->interrupt(im.kernel_id); !st.ok())
            log::warn("cannot interrupt kernel " + im.kernel_id + ": " + st.error().message);
        }
      }
      if (collector.on_iopub(it.msg_type, content, header_date(*it.msg))) got_idle = true;
    }
    collector.end_cell();
    cell["execution_count"] = static_cast<int>(n + 1);  // nbclient numbers the cells it runs
    ++result.cells_run;
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
    bool errored = got_reply && reply.is_object() && reply.value("status", "") == "error";

    if (stop == Stop::kDead) {
      ls.on_cell_end(info, false, took);
      return finish(RunStatus::kKernelDied,
                    "the kernel died while running cell " + std::to_string(n + 1),
                    static_cast<long>(index));
    }
    if (stop == Stop::kTimeout) {
      ls.on_cell_end(info, false, took);
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g",
                    std::chrono::duration<double>(*im.opts.cell_timeout).count());
      return finish(RunStatus::kTimeout,
                    "cell " + std::to_string(n + 1) + " timed out after " + secs +
                        " s; the kernel was interrupted",
                    static_cast<long>(index));
    }
    if (stop == Stop::kCancel) {
      ls.on_cell_end(info, false, took);
      return finish(RunStatus::kCancelled, "cancelled during cell " + std::to_string(n + 1),
                    static_cast<long>(index));
    }
    ls.on_cell_end(info, !errored, took);
    if (errored && !allow_error) {
      result.error = {
          {"ename", reply.value("ename", "")},
          {"evalue", reply.value("evalue", "")},
          {"traceback", reply.contains("traceback") ? reply["traceback"] : json::array()}};
      std::string what = reply.value("ename", "error");
      std::string value = reply.value("evalue", "");
      return finish(
          RunStatus::kCellError,
          "cell " + std::to_string(n + 1) + " raised " + what + (value.empty() ? "" : ": " + value),
          static_cast<long>(index));
    }
  }
  return finish(RunStatus::kOk, "");
}

Result<std::string> start_kernel(k::KernelService& kernels, const std::string& spec_name,
                                 std::chrono::milliseconds timeout,
                                 const std::atomic<bool>* cancelled, const std::string& owner,
                                 const k::StartOptions& options) {
  auto model = kernels.start(spec_name, owner, options);
  if (!model.ok()) return model.error();
  if (auto st = wait_ready(kernels, model->id, timeout, cancelled); !st.ok()) return st.error();
  return model->id;
}

Status wait_ready(k::KernelService& kernels, const std::string& id,
                  std::chrono::milliseconds timeout, const std::atomic<bool>* cancelled) {
  struct State {
    Mutex mutex;
    CondVar cv;
    std::optional<Status> done GUARDED_BY(mutex);
  };
  auto state = std::make_shared<State>();
  kernels.when_ready(id, [state](const Result<k::KernelModel>& r) {
    MutexLock lock(state->mutex);
    state->done = r.ok() ? ok_status() : Status(r.error());
    state->cv.notify_all();
  });
  auto deadline = Clock::now() + timeout;
  MutexLock lock(state->mutex);
  while (!state->done) {
    if (Clock::now() >= deadline) {
      lock.unlock();
      stop_kernel(kernels, id);
      return Error::unavailable("the kernel did not become ready in time");
    }
    if (cancelled && cancelled->load()) {
      lock.unlock();
      stop_kernel(kernels, id);
      return Error::unavailable("cancelled while the kernel was starting");
    }
    state->cv.wait_for(lock, std::chrono::milliseconds(50));
  }
  if (!state->done->ok()) {
    Error e = state->done->error();
    lock.unlock();
    stop_kernel(kernels, id);
    return Error::unavailable("the kernel did not start: " + e.message);
  }
  return ok_status();
}

void stop_kernel(k::KernelService& kernels, const std::string& kernel_id) {
  struct State {
    Mutex mutex;
    CondVar cv;
    bool done GUARDED_BY(mutex) = false;
  };
  auto state = std::make_shared<State>();
  kernels.shutdown(kernel_id, [state](const Status&) {
    MutexLock lock(state->mutex);
    state->done = true;
    state->cv.notify_all();
  });
  MutexLock lock(state->mutex);
  state->cv.wait_for(lock, std::chrono::seconds(10),
                     [&]() REQUIRES(state->mutex) { return state->done; });
}

}  // namespace skylab::exec
