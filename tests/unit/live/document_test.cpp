// The live document: outputs recorded as the browser shows them, merges of
// outside writes, and the debounce of saves (fake clock: set_now).
#include "live/document.hpp"

#include <gtest/gtest.h>

#include "exec/outputs.hpp"

namespace skylab::live {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

json nb_with(std::initializer_list<std::pair<const char*, const char*>> cells) {
  json nb = {{"nbformat", 4},
             {"nbformat_minor", 5},
             {"metadata", json::object()},
             {"cells", json::array()}};
  for (auto& [id, src] : cells)
    nb["cells"].push_back({{"cell_type", "code"},
                           {"id", id},
                           {"source", src},
                           {"metadata", json::object()},
                           {"outputs", json::array()},
                           {"execution_count", nullptr}});
  return nb;
}

json stream(const std::string& text, const char* name = "stdout") {
  return {{"name", name}, {"text", text}};
}

const json& cell(const Document& d, const std::string& id) {
  for (auto& c : d.notebook()["cells"])
    if (c["id"] == id) return c;
  static json none;
  return none;
}

struct LiveDocument : ::testing::Test {
  Clock::time_point t0 = Clock::time_point(100s);
  Document doc{nb_with({{"a", "print(1)"}, {"b", "x"}}), DocumentLimits{}};
  void feed(const std::string& type, const json& content, std::size_t bytes = 10) {
    doc.on_iopub("m1", type, content, "2026-01-01T00:00:00.000Z", bytes);
  }
};

TEST_F(LiveDocument, BeginClearsTheCellAsTheBrowserDoes) {
  json nb = nb_with({{"a", "print(1)"}});
  nb["cells"][0]["outputs"] =
      json::array({json{{"output_type", "stream"}, {"name", "stdout"}, {"text", "old"}}});
  nb["cells"][0]["execution_count"] = 3;
  Document d(nb, {});
  auto v = d.version();
  d.begin("m1", "a", "print(1)");
  EXPECT_TRUE(cell(d, "a")["outputs"].empty());
  EXPECT_TRUE(cell(d, "a")["execution_count"].is_null());
  EXPECT_GT(d.version(), v);
  EXPECT_TRUE(d.is_running("a"));
}

TEST_F(LiveDocument, UnknownCellIsAppendedSoItsOutputsAreKept) {
  doc.begin("m1", "zz", "print(2)");
  ASSERT_EQ(doc.notebook()["cells"].size(), 3u);
  EXPECT_EQ(cell(doc, "zz")["source"], "print(2)");
  feed("stream", stream("2\n"));
  EXPECT_EQ(cell(doc, "zz")["outputs"][0]["text"], "2\n");
}

TEST_F(LiveDocument, StreamsMergeAndCarriageReturnsCollapseAsTheyArrive) {
  doc.begin("m1", "a", "");
  std::string all;
  for (std::string piece : {"0%\r", "25%\r50", "%\r75%", "\r100%", "\nnext line\n", "a\rb\r\n"}) {
    feed("stream", stream(piece));
    all += piece;
  }
  ASSERT_EQ(cell(doc, "a")["outputs"].size(), 1u);
  EXPECT_EQ(cell(doc, "a")["outputs"][0]["text"], exec::apply_carriage_returns(all));
  EXPECT_EQ(cell(doc, "a")["outputs"][0]["text"], "100%\nnext line\nb\r\n");
  feed("stream", stream("err\n", "stderr"));
  EXPECT_EQ(cell(doc, "a")["outputs"].size(), 2u);
}

TEST_F(LiveDocument, ClearOutputWaitReplacesOnTheNextOutput) {
  doc.begin("m1", "a", "");
  feed("stream", stream("step 0\n"));
  feed("clear_output", {{"wait", true}});
  EXPECT_EQ(cell(doc, "a")["outputs"].size(), 1u);  // still shown until the next output
  feed("stream", stream("step 1\n"));
  ASSERT_EQ(cell(doc, "a")["outputs"].size(), 1u);
  EXPECT_EQ(cell(doc, "a")["outputs"][0]["text"], "step 1\n");
  feed("clear_output", {{"wait", false}});
  EXPECT_TRUE(cell(doc, "a")["outputs"].empty());
}

TEST_F(LiveDocument, UpdateDisplayDataReplacesByDisplayId) {
  doc.begin("m1", "a", "");
  feed("display_data", {{"data", {{"text/plain", "'first'"}}},
                        {"metadata", json::object()},
                        {"transient", {{"display_id", "d1"}}}});
  feed("stream", stream("after\n"));
  feed("update_display_data", {{"data", {{"text/plain", "'second'"}}},
                               {"metadata", json::object()},
                               {"transient", {{"display_id", "d1"}}}});
  ASSERT_EQ(cell(doc, "a")["outputs"].size(), 2u);
  EXPECT_EQ(cell(doc, "a")["outputs"][0]["data"]["text/plain"], "'second'");
}

TEST_F(LiveDocument, OutputBeyondTheLimitIsTruncatedWithOneMarker) {
  DocumentLimits l;
  l.max_cell_output_bytes = 100;
  Document d(nb_with({{"a", ""}}), l);
  d.begin("m1", "a", "");
  for (int i = 0; i < 20; ++i)
    d.on_iopub("m1", "stream", stream(std::string(20, 'x') + "\n"), "", 21);
  d.on_iopub("m1", "execute_input", {{"execution_count", 7}}, "", 10);
  const json& outs = cell(d, "a")["outputs"];
  ASSERT_EQ(outs.size(), 2u);
  EXPECT_LE(outs[0]["text"].get<std::string>().size(), 100u);
  EXPECT_NE(outs[1]["text"].get<std::string>().find("[output truncated by Skylab:"),
            std::string::npos);
  EXPECT_EQ(cell(d, "a")["execution_count"], 7);  // counts and status still recorded
}

TEST_F(LiveDocument, ReplyStatusAndEnd) {
  doc.begin("m1", "a", "");
  feed("execute_input", {{"execution_count", 4}, {"code", ""}});
  EXPECT_TRUE(doc.on_iopub("m1", "status", {{"execution_state", "idle"}}, "", 10));
  doc.on_execute_reply("m1", {{"status", "error"}, {"execution_count", 4}}, "");
  doc.end("m1");
  EXPECT_FALSE(doc.is_running("a"));
  EXPECT_EQ(cell(doc, "a")["execution_count"], 4);
  EXPECT_EQ(cell(doc, "a")["metadata"]["execution"]["shell.execute_reply.status"], "error");
}

TEST_F(LiveDocument, OutsideWriteWinsForSourcesButNotForARunningCellsOutputs) {
  doc.begin("m1", "a", "");
  feed("execute_input", {{"execution_count", 1}});
  feed("stream", stream("recorded\n"));
  json incoming = nb_with({{"a", "print('edited')"}, {"c", "new"}});  // b deleted, c added
  doc.merge_outside(incoming);
  ASSERT_EQ(doc.notebook()["cells"].size(), 2u);
  EXPECT_EQ(cell(doc, "a")["source"], "print('edited')");
  EXPECT_EQ(cell(doc, "a")["outputs"][0]["text"], "recorded\n");
  EXPECT_EQ(cell(doc, "c")["source"], "new");
  // Recording continues on the new cell set by id.
  feed("stream", stream("more\n"));
  EXPECT_EQ(cell(doc, "a")["outputs"][0]["text"], "recorded\nmore\n");
}

TEST_F(LiveDocument, FinishedCellKeepsRecordedOutputsOnlyAgainstACopyOfTheSameRun) {
  doc.begin("m1", "a", "");
  feed("execute_input", {{"execution_count", 5}});
  feed("stream", stream("full output\n"));
  doc.on_execute_reply("m1", {{"status", "ok"}, {"execution_count", 5}}, "");
  doc.end("m1");
  // A client that saw run 5 but only part of its output: the server's copy stays.
  json stale = nb_with({{"a", "print(1)"}, {"b", "x"}});
  stale["cells"][0]["execution_count"] = 5;
  doc.merge_outside(stale);
  EXPECT_EQ(cell(doc, "a")["outputs"][0]["text"], "full output\n");
  // A client that cleared the cell (execution_count null): the clear wins.
  doc.merge_outside(nb_with({{"a", "print(1)"}, {"b", "x"}}));
  EXPECT_TRUE(cell(doc, "a")["outputs"].empty());
}

TEST_F(LiveDocument, RunningExecutionOfADeletedCellStopsBeingRecorded) {
  doc.begin("m1", "a", "");
  doc.merge_outside(nb_with({{"b", "x"}}));
  EXPECT_FALSE(doc.tracks("m1"));
  feed("stream", stream("lost\n"));
  EXPECT_EQ(doc.notebook()["cells"].size(), 1u);
}

TEST_F(LiveDocument, SavesAreDebouncedAndBoundedWhileOutputStreams) {
  DocumentLimits l;
  l.debounce = 1000ms;
  l.max_delay = 5000ms;
  Document d(nb_with({{"a", ""}}), l);
  EXPECT_FALSE(d.save_due());
  d.set_now(t0);
  d.begin("m1", "a", "");
  EXPECT_EQ(*d.save_due(), t0 + 1000ms);
  // Output every 500 ms keeps pushing the debounce, but not beyond max_delay.
  for (int i = 1; i <= 20; ++i) {
    d.set_now(t0 + i * 500ms);
    d.on_iopub("m1", "stream", stream("x\n"), "", 2);
  }
  EXPECT_EQ(*d.save_due(), t0 + 5000ms);
  auto v = d.version();
  d.saved(v);
  EXPECT_FALSE(d.dirty());
  // A change during a save keeps the document dirty.
  d.set_now(t0 + 20s);
  d.on_iopub("m1", "stream", stream("y\n"), "", 2);
  d.saved(v);
  EXPECT_TRUE(d.dirty());
}

TEST_F(LiveDocument, CellsWithoutIdsGetOne) {
  json nb = nb_with({{"a", ""}});
  nb["cells"][0].erase("id");
  Document d(nb, {});
  EXPECT_TRUE(d.notebook()["cells"][0]["id"].is_string());
  EXPECT_EQ(d.notebook()["cells"][0]["id"].get<std::string>().size(), 8u);
}

}  // namespace
}  // namespace skylab::live
