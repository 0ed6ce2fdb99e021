// OutputCollector against recorded kernel message sequences (ipykernel 6,
// as nbclient 0.7 + nbconvert's coalesce_streams turn them into outputs).
#include "exec/outputs.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace skylab::exec {

using nlohmann::json;

namespace {

json code_cell() {
  return {{"cell_type", "code"},
          {"execution_count", nullptr},
          {"metadata", json::object()},
          {"outputs", json::array()},
          {"source", "x"}};
}

constexpr const char* kDate = "2024-05-01T10:00:00.123456Z";

// Feeds iopub messages (type, content) to cell `index`, framed by busy/idle
// as a kernel sends them. Returns whether idle ended the cell.
bool feed(OutputCollector& c, std::size_t index,
          const std::vector<std::pair<std::string, json>>& msgs) {
  c.begin_cell(index);
  c.on_iopub("status", {{"execution_state", "busy"}}, kDate);
  c.on_iopub("execute_input", {{"code", "x"}, {"execution_count", 7}}, kDate);
  for (const auto& [type, content] : msgs) EXPECT_FALSE(c.on_iopub(type, content, kDate));
  c.on_execute_reply(kDate);
  bool idle = c.on_iopub("status", {{"execution_state", "idle"}}, kDate);
  c.end_cell();
  return idle;
}

json stream(const std::string& name, const std::string& text) {
  return {{"name", name}, {"text", text}};
}

json display(const std::string& text, const std::string& id = "") {
  json c = {{"data", {{"text/plain", text}}}, {"metadata", json::object()}};
  if (!id.empty()) c["transient"] = {{"display_id", id}};
  return c;
}

}  // namespace

TEST(OutputCollector, ConsecutiveStreamsOfOneNameMerge) {
  json cells = json::array({code_cell()});
  OutputCollector c(&cells);
  EXPECT_TRUE(feed(c, 0,
                   {{"stream", stream("stdout", "a\n")},
                    {"stream", stream("stdout", "b\n")},
                    {"stream", stream("stderr", "oops\n")},
                    {"stream", stream("stdout", "c")},
                    {"stream", stream("stdout", "d\n")}}));
  const json& outs = cells[0]["outputs"];
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0], json({{"output_type", "stream"}, {"name", "stdout"}, {"text", "a\nb\n"}}));
  EXPECT_EQ(outs[1]["name"], "stderr");
  EXPECT_EQ(outs[2]["text"], "cd\n");
  EXPECT_EQ(cells[0]["execution_count"], 7);
}

TEST(OutputCollector, ExecuteResultDisplayDataAndError) {
  json cells = json::array({code_cell()});
  OutputCollector c(&cells);
  feed(c, 0,
       {{"display_data",
         {{"data", {{"image/png", "iVBOR"}, {"text/plain", "<Figure>"}}},
          {"metadata", {{"image/png", {{"width", 10}}}}},
          {"transient", json::object()}}},
        {"execute_result",
         {{"data", {{"text/plain", "42"}}}, {"metadata", json::object()}, {"execution_count", 7}}},
        {"error",
         {{"ename", "ValueError"}, {"evalue", "bad"}, {"traceback", {"line 1", "line 2"}}}}});
  const json& outs = cells[0]["outputs"];
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0], json({{"output_type", "display_data"},
                           {"data", {{"image/png", "iVBOR"}, {"text/plain", "<Figure>"}}},
                           {"metadata", {{"image/png", {{"width", 10}}}}}}));
  EXPECT_EQ(outs[1], json({{"output_type", "execute_result"},
                           {"data", {{"text/plain", "42"}}},
                           {"metadata", json::object()},
                           {"execution_count", 7}}));
  EXPECT_EQ(outs[2], json({{"output_type", "error"},
                           {"ename", "ValueError"},
                           {"evalue", "bad"},
                           {"traceback", {"line 1", "line 2"}}}));
}

TEST(OutputCollector, ClearOutputNowAndWait) {
  json cells = json::array({code_cell()});
  OutputCollector c(&cells);
  feed(c, 0,
       {{"stream", stream("stdout", "1\n")},
        {"clear_output", {{"wait", false}}},
        {"stream", stream("stdout", "2\n")},
        {"clear_output", {{"wait", true}}}});
  // wait=True with nothing after it: the old output stays (as nbclient).
  ASSERT_EQ(cells[0]["outputs"].size(), 1u);
  EXPECT_EQ(cells[0]["outputs"][0]["text"], "2\n");

  feed(c, 0,
       {{"stream", stream("stdout", "1\n")},
        {"clear_output", {{"wait", true}}},
        {"stream", stream("stdout", "2\n")},
        {"stream", stream("stdout", "3\n")}});
  ASSERT_EQ(cells[0]["outputs"].size(), 1u);
  EXPECT_EQ(cells[0]["outputs"][0]["text"], "2\n3\n");
}

TEST(OutputCollector, PendingClearDoesNotLeakIntoTheNextCell) {
  json cells = json::array({code_cell(), code_cell()});
  OutputCollector c(&cells);
  feed(c, 0, {{"stream", stream("stdout", "a\n")}, {"clear_output", {{"wait", true}}}});
  feed(c, 1, {{"stream", stream("stdout", "b\n")}});
  EXPECT_EQ(cells[0]["outputs"][0]["text"], "a\n");
  EXPECT_EQ(cells[1]["outputs"][0]["text"], "b\n");
}

TEST(OutputCollector, UpdateDisplayDataReachesEarlierCells) {
  json cells = json::array({code_cell(), code_cell(), code_cell()});
  OutputCollector c(&cells);
  feed(c, 0, {{"display_data", display("first", "d1")}, {"display_data", display("other", "d2")}});
  feed(c, 1, {{"update_display_data", display("second", "d1")}});
  EXPECT_EQ(cells[0]["outputs"][0]["data"]["text/plain"], "second");
  EXPECT_EQ(cells[0]["outputs"][1]["data"]["text/plain"], "other");
  EXPECT_TRUE(cells[1]["outputs"].empty());  // an update is not an output of its own

  // A new display with the same id updates the old ones and is added too.
  feed(c, 2, {{"display_data", display("third", "d1")}});
  EXPECT_EQ(cells[0]["outputs"][0]["data"]["text/plain"], "third");
  ASSERT_EQ(cells[2]["outputs"].size(), 1u);
  EXPECT_EQ(cells[2]["outputs"][0]["data"]["text/plain"], "third");
}

TEST(OutputCollector, UpdateAfterClearDoesNotTouchClearedSlots) {
  json cells = json::array({code_cell()});
  OutputCollector c(&cells);
  feed(c, 0,
       {{"display_data", display("a", "d")},
        {"clear_output", {{"wait", false}}},
        {"stream", stream("stdout", "s\n")},
        {"update_display_data", display("b", "d")}});
  ASSERT_EQ(cells[0]["outputs"].size(), 1u);
  EXPECT_EQ(cells[0]["outputs"][0]["output_type"], "stream");
  EXPECT_FALSE(cells[0]["outputs"][0].contains("data"));
}

TEST(OutputCollector, DisplayIdIndexesSurviveStreamMerging) {
  json cells = json::array({code_cell()});
  OutputCollector c(&cells);
  feed(c, 0,
       {{"stream", stream("stdout", "a")},
        {"stream", stream("stdout", "b")},
        {"display_data", display("v1", "p")},
        {"stream", stream("stdout", "c")},
        {"update_display_data", display("v2", "p")}});
  const json& outs = cells[0]["outputs"];
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(outs[0]["text"], "ab");
  EXPECT_EQ(outs[1]["data"]["text/plain"], "v2");
  EXPECT_EQ(outs[2]["text"], "c");
}

TEST(OutputCollector, CarriageReturnsKeepTheLastState) {
  json cells = json::array({code_cell()});
  OutputCollector c(&cells);
  feed(c, 0,
       {{"stream", stream("stdout", "10%\r")},
        {"stream", stream("stdout", "50%\r")},
        {"stream", stream("stdout", "100%\n")},
        {"stream", stream("stdout", "done\r\n")}});
  EXPECT_EQ(cells[0]["outputs"][0]["text"], "100%\ndone\r\n");
}

TEST(OutputCollector, TimingMetadataAsNbclient) {
  json cells = json::array({code_cell()});
  cells[0]["metadata"]["execution"] = {{"stale", "x"}};
  OutputCollector c(&cells);
  c.begin_cell(0);
  c.on_iopub("status", {{"execution_state", "busy"}}, "2024-05-01T10:00:00.1Z");
  c.on_iopub("execute_input", {{"code", "x"}, {"execution_count", 1}},
             "2024-05-01T10:00:00.200000+00:00");
  c.on_execute_reply("2024-05-01T10:00:01Z");
  EXPECT_TRUE(c.on_iopub("status", {{"execution_state", "idle"}}, "2024-05-01T10:00:01.5Z"));
  c.end_cell();
  EXPECT_EQ(cells[0]["metadata"]["execution"],
            json({{"iopub.status.busy", "2024-05-01T10:00:00.100000Z"},
                  {"iopub.execute_input", "2024-05-01T10:00:00.200000Z"},
                  {"shell.execute_reply", "2024-05-01T10:00:01.000000Z"},
                  {"iopub.status.idle", "2024-05-01T10:00:01.500000Z"}}));

  OutputCollector untimed(&cells, false);
  cells[0]["metadata"].erase("execution");
  feed(untimed, 0, {});
  EXPECT_FALSE(cells[0]["metadata"].contains("execution"));
}

TEST(OutputCollector, IgnoresNonOutputMessagesAndBadContent) {
  json cells = json::array({code_cell()});
  OutputCollector c(&cells);
  feed(c, 0,
       {{"comm_open", {{"comm_id", "c"}, {"target_name", "t"}, {"data", json::object()}}},
        {"comm_msg", {{"comm_id", "c"}, {"data", json::object()}}},
        {"debug_event", json::object()},
        {"stream", {{"name", "stdout"}}},  // no text
        {"stream", json::array()}});
  EXPECT_TRUE(cells[0]["outputs"].empty());
}

TEST(Timestamps, Normalize) {
  EXPECT_EQ(normalize_timestamp("2024-05-01T10:00:00Z"), "2024-05-01T10:00:00.000000Z");
  EXPECT_EQ(normalize_timestamp("2024-05-01T10:00:00.123456789Z"), "2024-05-01T10:00:00.123456Z");
  EXPECT_EQ(normalize_timestamp("2024-05-01T10:00:00.5"), "2024-05-01T10:00:00.500000Z");
  EXPECT_EQ(normalize_timestamp("2024-05-01T10:00:00.5-05:00"), "2024-05-01T10:00:00.500000Z");
  EXPECT_EQ(normalize_timestamp("yesterday"), "");
  EXPECT_EQ(normalize_timestamp("2024-05-01T10:00:00.Z"), "");
  EXPECT_EQ(normalize_timestamp(""), "");
}

TEST(CarriageReturns, AsCoalesceStreams) {
  EXPECT_EQ(apply_carriage_returns("abc"), "abc");
  EXPECT_EQ(apply_carriage_returns("a\rb"), "b");
  EXPECT_EQ(apply_carriage_returns("a\rb\r\n"), "b\r\n");  // the last \r precedes \n: kept
  EXPECT_EQ(apply_carriage_returns("x\ra\rb\nc\rd"), "b\nd");
  EXPECT_EQ(apply_carriage_returns("end\r"), "end\r");  // nothing after it
  EXPECT_EQ(apply_carriage_returns("\r\rz"), "z");
  EXPECT_EQ(apply_carriage_returns("\n\n"), "\n\n");
}

}  // namespace skylab::exec
