// NotebookExecutor's cell bookkeeping against a kernel played by the test
// (FakeKernelService): a cell ends when its execute_reply and its iopub idle
// both arrived (or iopub_grace after the reply), messages count only for the
// request they answer, a cell error ends the run unless allowed, and
// timeouts, cancel() and a dying kernel end it with the right status.
#include "exec/executor.hpp"

#include <gtest/gtest.h>

#include <future>
#include <map>
#include <mutex>

#include <nlohmann/json.hpp>

#include "kernel/fake_kernel_service.hpp"

namespace skylab::exec {
namespace {

using kernel::Channel;
using nlohmann::json;
using std::chrono::milliseconds;

json code_cell(const std::string& source, json tags = json::array()) {
  return {
      {"cell_type", "code"},
      {"id", "c" + std::to_string(std::hash<std::string>{}(source) % 100000)},
      {"metadata", {{"tags", std::move(tags)}}},
      {"source", source},
      {"outputs", json::array({{{"output_type", "stream"}, {"name", "stdout"}, {"text", "old"}}})},
      {"execution_count", 7}};
}

json notebook(std::vector<json> cells) {
  return {{"cells", cells}, {"metadata", json::object()}, {"nbformat", 4}, {"nbformat_minor", 5}};
}

//! The kernel "k": answers kernel_info by itself and each execute_request
//! with the test's script for that code (by default: reply ok, then idle).
class PlayedKernel {
 public:
  using Script = std::function<void(PlayedKernel&, const std::string& msg_id)>;

  PlayedKernel() : service(std::make_shared<kernel::FakeKernelService>()) {
    kernel::KernelModel k;
    k.id = "k";
    k.execution_state = kernel::KernelState::kIdle;
    service->put(k);
    service->on_send([this](const std::string&, Channel ch, const kernel::Message& m) {
      auto info = kernel::inspect(m).value();
      auto content = json::parse(m.content);
      if (info.msg_type == "kernel_info_request") {
        reply(info.msg_id, "kernel_info_reply",
              {{"status", "ok"}, {"language_info", {{"name", "python"}, {"version", "3"}}}});
        idle(info.msg_id);
        return;
      }
      if (info.msg_type != "execute_request") return;
      std::string code = content.value("code", "");
      Script script;
      {
        std::lock_guard lock(mu);
        requests.push_back({code, info.msg_id, content});
        if (auto it = scripts.find(code); it != scripts.end()) script = it->second;
      }
      if (script)
        script(*this, info.msg_id);
      else
        ok_cell(info.msg_id);
    });
  }

  void iopub(const std::string& parent, const std::string& type, const json& content) {
    json ph = parent.empty() ? json::object() : json{{"msg_id", parent}};
    service->emit("k", Channel::kIopub,
                  kernel::make_message(type, content, "ks", "kernel", ph.dump()));
  }
  void reply(const std::string& parent, const std::string& type, const json& content) {
    service->emit(
        "k", Channel::kShell,
        kernel::make_message(type, content, "ks", "kernel", json{{"msg_id", parent}}.dump()));
  }
  void execute_reply(const std::string& parent, const json& content = {{"status", "ok"}}) {
    reply(parent, "execute_reply", content);
  }
  void idle(const std::string& parent) { iopub(parent, "status", {{"execution_state", "idle"}}); }
  void print(const std::string& parent, const std::string& text) {
    iopub(parent, "stream", {{"name", "stdout"}, {"text", text}});
  }
  void ok_cell(const std::string& parent) {
    iopub(parent, "status", {{"execution_state", "busy"}});
    iopub(parent, "execute_input", {{"code", ""}, {"execution_count", 1}});
    execute_reply(parent);
    idle(parent);
  }
  void error_cell(const std::string& parent, const std::string& ename) {
    iopub(parent, "execute_input", {{"code", ""}, {"execution_count", 1}});
    json err = {{"ename", ename}, {"evalue", "bad"}, {"traceback", json::array({"tb"})}};
    iopub(parent, "error", err);
    json rep = err;
    rep["status"] = "error";
    execute_reply(parent, rep);
    idle(parent);
  }
  void on(const std::string& code, Script s) {
    std::lock_guard lock(mu);
    scripts[code] = std::move(s);
  }
  std::vector<std::string> codes() {
    std::lock_guard lock(mu);
    std::vector<std::string> out;
    for (auto& r : requests) out.push_back(r.code);
    return out;
  }
  std::string msg_id_of(const std::string& code) {
    std::lock_guard lock(mu);
    for (auto& r : requests)
      if (r.code == code) return r.msg_id;
    return {};
  }
  json request_of(const std::string& code) {
    std::lock_guard lock(mu);
    for (auto& r : requests)
      if (r.code == code) return r.content;
    return {};
  }

  std::shared_ptr<kernel::FakeKernelService> service;

 private:
  struct Request {
    std::string code, msg_id;
    json content;
  };
  std::mutex mu;
  std::map<std::string, Script> scripts;
  std::vector<Request> requests;
};

//! Progress as the listener saw it.
struct Recorder : ExecutionListener {
  std::vector<std::pair<std::size_t, bool>> ends;  // (index, ok)
  std::vector<milliseconds> took;
  void on_cell_end(const CellInfo& c, bool ok, milliseconds t) override {
    ends.emplace_back(c.index, ok);
    took.push_back(t);
  }
};

//! run(), but a run that hangs (a broken end condition) fails the test
//! instead of hanging it.
RunResult run_bounded(NotebookExecutor& ex, json& nb, ExecutionListener* ls = nullptr) {
  auto f = std::async(std::launch::async, [&] { return ex.run(nb, ls); });
  if (f.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << "run() did not return within 20 s";
    ex.cancel(true);
  }
  return f.get();
}

std::vector<std::string> texts(const json& cell) {
  std::vector<std::string> out;
  for (auto& o : cell["outputs"])
    if (o.value("output_type", "") == "stream") out.push_back(o["text"].get<std::string>());
  return out;
}

ExecuteOptions quick() {
  ExecuteOptions o;
  o.tick_interval = milliseconds(20);
  o.interrupt_grace = milliseconds(2000);
  return o;
}

TEST(Executor, RunsTheCodeCellsInOrderAndNumbersThem) {
  PlayedKernel k;
  k.on("a", [](PlayedKernel& k, const std::string& id) {
    k.print(id, "A\n");
    k.ok_cell(id);
  });
  json md = {{"cell_type", "markdown"}, {"metadata", json::object()}, {"source", "a"}};
  auto nb = notebook({md, code_cell("a"), code_cell("  \n"),
                      code_cell("skipped", json::array({"skip-execution"})), code_cell("b")});
  NotebookExecutor ex(k.service, "k", quick());
  Recorder rec;
  auto r = run_bounded(ex, nb, &rec);
  EXPECT_EQ(r.status, RunStatus::kOk) << r.message;
  EXPECT_EQ(r.cells_run, 2u);
  EXPECT_EQ(k.codes(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(nb["cells"][1]["execution_count"], 1);
  EXPECT_EQ(nb["cells"][4]["execution_count"], 2);
  EXPECT_EQ(texts(nb["cells"][1]), std::vector<std::string>{"A\n"});
  EXPECT_TRUE(nb["cells"][4]["outputs"].empty()) << "old outputs of an executed cell go";
  EXPECT_EQ(nb["cells"][3]["execution_count"], 7) << "a skipped cell is left alone";
  EXPECT_EQ(nb["metadata"]["language_info"]["name"], "python");
  EXPECT_EQ((rec.ends), (std::vector<std::pair<std::size_t, bool>>{{1, true}, {4, true}}));
}

TEST(Executor, OutputAfterTheReplyBelongsToTheCellUntilIdle) {
  PlayedKernel k;
  k.on("a", [](PlayedKernel& k, const std::string& id) {
    k.execute_reply(id);
    k.print(id, "late\n");
    k.idle(id);
  });
  auto nb = notebook({code_cell("a")});
  NotebookExecutor ex(k.service, "k", quick());
  auto r = run_bounded(ex, nb);
  EXPECT_EQ(r.status, RunStatus::kOk);
  EXPECT_EQ(texts(nb["cells"][0]), std::vector<std::string>{"late\n"});
}

TEST(Executor, IdleWithoutAReplyDoesNotEndTheCell) {
  PlayedKernel k;
  k.on("a", [](PlayedKernel& k, const std::string& id) { k.idle(id); });  // and no reply
  k.service->on_interrupt(
      [&](const std::string&) { k.error_cell(k.msg_id_of("a"), "KeyboardInterrupt"); });
  auto nb = notebook({code_cell("a")});
  auto o = quick();
  o.cell_timeout = milliseconds(200);
  NotebookExecutor ex(k.service, "k", o);
  auto r = run_bounded(ex, nb);
  EXPECT_EQ(r.status, RunStatus::kTimeout) << r.message;
  EXPECT_EQ(r.failed_cell, 0);
  EXPECT_EQ(r.message, "cell 1 timed out after 0.2 s; the kernel was interrupted");
  EXPECT_GE(k.service->interrupts(), 1);
}

TEST(Executor, AReplyWithoutIdleEndsTheCellAfterTheIopubGrace) {
  PlayedKernel k;
  k.on("a", [](PlayedKernel& k, const std::string& id) { k.execute_reply(id); });
  auto nb = notebook({code_cell("a"), code_cell("b")});
  auto o = quick();
  o.iopub_grace = milliseconds(300);
  NotebookExecutor ex(k.service, "k", o);
  Recorder rec;
  auto r = run_bounded(ex, nb, &rec);
  EXPECT_EQ(r.status, RunStatus::kOk) << r.message;
  EXPECT_EQ(r.cells_run, 2u);
  ASSERT_EQ(rec.took.size(), 2u);
  EXPECT_GE(rec.took[0], milliseconds(300));
  EXPECT_LT(rec.took[1], milliseconds(300)) << "a cell with its idle does not wait";
}

TEST(Executor, MessagesOfOtherRequestsAreIgnored) {
  PlayedKernel k;
  k.on("a", [](PlayedKernel& k, const std::string& id) {
    k.execute_reply(id);  // a's idle never comes: it ends after the grace
  });
  k.on("b", [](PlayedKernel& k, const std::string& id) {
    std::string a = k.msg_id_of("a");
    k.print(a, "stray from a\n");
    k.idle(a);                        // idle of another request: not b's end
    k.execute_reply("someone-else");  // nor another request's reply
    k.print("", "no parent\n");
    k.execute_reply(id);
    k.print(id, "mine\n");
    k.idle(id);
  });
  auto nb = notebook({code_cell("a"), code_cell("b")});
  auto o = quick();
  o.iopub_grace = milliseconds(100);
  NotebookExecutor ex(k.service, "k", o);
  auto r = run_bounded(ex, nb);
  EXPECT_EQ(r.status, RunStatus::kOk) << r.message;
  EXPECT_TRUE(nb["cells"][0]["outputs"].empty());
  EXPECT_EQ(texts(nb["cells"][1]), std::vector<std::string>{"mine\n"});
}

TEST(Executor, ACellErrorEndsTheRun) {
  PlayedKernel k;
  k.on("b", [](PlayedKernel& k, const std::string& id) { k.error_cell(id, "ValueError"); });
  auto nb = notebook({code_cell("a"), code_cell("b"), code_cell("c")});
  NotebookExecutor ex(k.service, "k", quick());
  Recorder rec;
  auto r = run_bounded(ex, nb, &rec);
  EXPECT_EQ(r.status, RunStatus::kCellError);
  EXPECT_EQ(r.failed_cell, 1);
  EXPECT_EQ(r.cells_run, 2u);
  EXPECT_EQ(r.message, "cell 2 raised ValueError: bad");
  EXPECT_EQ(r.error["ename"], "ValueError");
  EXPECT_EQ(r.error["traceback"], json::array({"tb"}));
  EXPECT_EQ(k.codes(), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(nb["cells"][2]["outputs"].empty());
  EXPECT_TRUE(nb["cells"][2]["execution_count"].is_null());
  EXPECT_EQ(nb["cells"][1]["outputs"][0]["output_type"], "error");
  EXPECT_EQ(k.request_of("b")["stop_on_error"], true);
  EXPECT_EQ((rec.ends), (std::vector<std::pair<std::size_t, bool>>{{0, true}, {1, false}}));
}

TEST(Executor, AllowedErrorsRunOn) {
  for (bool by_tag : {false, true}) {
    PlayedKernel k;
    k.on("b", [](PlayedKernel& k, const std::string& id) { k.error_cell(id, "ValueError"); });
    auto nb = notebook({code_cell("a"),
                        code_cell("b", by_tag ? json::array({"raises-exception"}) : json::array()),
                        code_cell("c")});
    auto o = quick();
    o.allow_errors = !by_tag;
    NotebookExecutor ex(k.service, "k", o);
    auto r = run_bounded(ex, nb);
    EXPECT_EQ(r.status, RunStatus::kOk) << (by_tag ? "tag: " : "option: ") << r.message;
    EXPECT_EQ(r.cells_run, 3u);
    EXPECT_EQ(k.codes(), (std::vector<std::string>{"a", "b", "c"}));
    EXPECT_EQ(k.request_of("b")["stop_on_error"], false);
    EXPECT_EQ(k.request_of("a")["stop_on_error"], by_tag);
  }
}

TEST(Executor, CancelBeforeRunSendsNothing) {
  PlayedKernel k;
  auto nb = notebook({code_cell("a")});
  NotebookExecutor ex(k.service, "k", quick());
  ex.cancel();
  auto r = run_bounded(ex, nb);
  EXPECT_EQ(r.status, RunStatus::kCancelled);
  EXPECT_TRUE(k.service->sent().empty());
}

TEST(Executor, CancelInterruptsAgainOnceTheCellStartedAndWaitsForItsEnd) {
  PlayedKernel k;
  NotebookExecutor* exec = nullptr;
  // cancel() lands before the cell started; ipykernel would ignore that
  // SIGINT, so the executor interrupts again on execute_input.
  k.on("b", [&](PlayedKernel&, const std::string&) { exec->cancel(); });
  k.service->on_interrupt([&](const std::string&) {
    std::string id = k.msg_id_of("b");
    if (k.service->interrupts() == 1)
      k.iopub(id, "execute_input", {{"code", "b"}, {"execution_count", 2}});
    else
      k.error_cell(id, "KeyboardInterrupt");
  });
  auto nb = notebook({code_cell("a"), code_cell("b"), code_cell("c")});
  auto o = quick();
  o.interrupt_grace = milliseconds(10000);
  NotebookExecutor ex(k.service, "k", o);
  exec = &ex;
  auto start = std::chrono::steady_clock::now();
  auto r = run_bounded(ex, nb);
  EXPECT_EQ(r.status, RunStatus::kCancelled);
  EXPECT_EQ(r.failed_cell, 1);
  EXPECT_EQ(r.message, "cancelled during cell 2");
  EXPECT_EQ(k.service->interrupts(), 2);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5))
      << "the cell's end, not the grace, ended the wait";
  EXPECT_EQ(k.codes(), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(nb["cells"][1]["outputs"][0]["ename"], "KeyboardInterrupt");
}

TEST(Executor, CancelImmediatelyDoesNotWaitForTheCell) {
  PlayedKernel k;
  NotebookExecutor* exec = nullptr;
  k.on("a", [&](PlayedKernel& k, const std::string& id) {
    k.iopub(id, "execute_input", {{"code", "a"}, {"execution_count", 1}});
    exec->cancel(true);  // and the kernel never answers
  });
  auto nb = notebook({code_cell("a")});
  auto o = quick();
  o.interrupt_grace = milliseconds(30000);
  NotebookExecutor ex(k.service, "k", o);
  exec = &ex;
  auto r = run_bounded(ex, nb);
  EXPECT_EQ(r.status, RunStatus::kCancelled);
  EXPECT_EQ(r.failed_cell, 0);
}

TEST(Executor, AKernelThatDiesEndsTheRun) {
  PlayedKernel k;
  k.on("a", [](PlayedKernel& k, const std::string&) {
    k.iopub("", "status", {{"execution_state", "dead"}});
  });
  k.on("b", [](PlayedKernel& k, const std::string&) { k.service->remove("k"); });
  for (const char* code : {"a", "b"}) {
    auto nb = notebook({code_cell("x"), code_cell(code), code_cell("z")});
    NotebookExecutor ex(k.service, "k", quick());
    auto r = run_bounded(ex, nb);
    EXPECT_EQ(r.status, RunStatus::kKernelDied) << code;
    EXPECT_EQ(r.failed_cell, 1) << code;
    EXPECT_EQ(r.message, "the kernel died while running cell 2");
  }
  EXPECT_EQ(k.codes(), (std::vector<std::string>{"x", "a", "x", "b"}));
}

TEST(Executor, ADeadKernelIsNotRunOn) {
  PlayedKernel k;
  k.service->set_state("k", kernel::KernelState::kDead);
  auto nb = notebook({code_cell("a")});
  NotebookExecutor ex(k.service, "k", quick());
  auto r = run_bounded(ex, nb);
  EXPECT_EQ(r.status, RunStatus::kKernelDied);
  EXPECT_TRUE(k.codes().empty());
  EXPECT_EQ(k.service->observer_count("k"), 0u) << "the executor leaves no observer behind";
}

TEST(Executor, SetupCodeRunsSilentlyFirstAndItsErrorEndsTheRun) {
  PlayedKernel k;
  k.on("import os; os.chdir('/nowhere')",
       [](PlayedKernel& k, const std::string& id) { k.error_cell(id, "FileNotFoundError"); });
  auto nb = notebook({code_cell("a")});
  auto o = quick();
  o.setup_code = "import os; os.chdir('/nowhere')";
  o.setup_what = "change to the notebook's directory";
  NotebookExecutor ex(k.service, "k", o);
  auto r = run_bounded(ex, nb);
  EXPECT_EQ(r.status, RunStatus::kCellError);
  EXPECT_EQ(r.failed_cell, -1);
  EXPECT_EQ(r.message, "cannot change to the notebook's directory: FileNotFoundError: bad");
  EXPECT_EQ(k.request_of(o.setup_code)["silent"], true);
  EXPECT_EQ(k.codes(), std::vector<std::string>{o.setup_code});
  EXPECT_EQ(k.service->observer_count("k"), 0u);
}

}  // namespace
}  // namespace skylab::exec
