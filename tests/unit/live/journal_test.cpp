// The co-editing write-ahead journal: its line format read back as
// untrusted input (torn, damaged, crafted lines), its rotation after saves,
// and the replay of its records through CollabState.
#include "live/journal.hpp"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "live/collab.hpp"
#include "live/document.hpp"
#include "temp_dir.hpp"

namespace skylab::live {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

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

TEST(JournalFormat, RecordsRoundTripAndATornLastLineIsIgnored) {
  std::string text =
      encode_journal_line({{"t", "head"}}) + encode_journal_line({{"t", "op"}, {"n", 1}});
  auto d = decode_journal(text, {});
  ASSERT_EQ(d.records.size(), 2u);
  EXPECT_EQ(d.records[1]["n"], 1);
  EXPECT_FALSE(d.torn_tail);
  EXPECT_FALSE(d.corrupt);
  // Cut anywhere inside the last line: the records before it stay.
  std::string last = encode_journal_line({{"t", "op"}, {"n", 2}});
  for (std::size_t cut = 1; cut < last.size(); ++cut) {
    auto t = decode_journal(text + last.substr(0, cut), {});
    EXPECT_EQ(t.records.size(), 2u) << cut;
    EXPECT_TRUE(t.torn_tail) << cut;
    EXPECT_FALSE(t.corrupt) << cut;
  }
}

TEST(JournalFormat, DamagedAndCraftedLinesStopTheReplay) {
  std::string good = encode_journal_line({{"t", "head"}});
  std::string next = encode_journal_line({{"t", "op"}});
  auto flipped = next;
  flipped[flipped.size() - 3] ^= 1;  // payload changed: checksum fails
  for (const std::string& bad :
       {flipped, std::string("5 0000000000000000 {}{}{\n"), std::string("x\n"), std::string("\n"),
        std::string("99999999999 0123456789abcdef {}\n"),
        std::string("-1 0123456789abcdef {}\n")}) {
    auto d = decode_journal(good + bad + next, {});
    EXPECT_EQ(d.records.size(), 1u) << bad;
    EXPECT_TRUE(d.corrupt) << bad;
  }
  // Valid checksums over hostile payloads: not an object, too deep, too big.
  auto line = [](const std::string& payload) {
    return std::to_string(payload.size()) + " " + fnv1a64_hex(payload) + " " + payload + "\n";
  };
  std::string deep(100000, '[');
  JournalLimits small;
  small.max_record_bytes = 64;
  for (const std::string& payload : {std::string("[1,2]"), deep, std::string(100, ' ') + "{}"}) {
    auto d = decode_journal(good + line(payload) + next, small);
    EXPECT_EQ(d.records.size(), 1u);
    EXPECT_TRUE(d.corrupt);
  }
}

class JournalFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    auto d = JournalDir::open(base_, "live/journal", {});
    ASSERT_TRUE(d.ok()) << d.error().message;
    dir_ = d.value();
  }
  std::string file(const std::string& name) {
    std::ifstream in(base_ + "/live/journal/" + name);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  TempDir tmp_{"skylab-journal"};
  std::string base_ = tmp_.str();
  std::shared_ptr<JournalDir> dir_;
};

TEST_F(JournalFiles, TheFolderIsRootsAndSavesRotateTheFile) {
  struct stat st {};
  ASSERT_EQ(::stat((base_ + "/live/journal").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  std::string name = JournalDir::name_for("alice", "a/b.ipynb");
  EXPECT_NE(name, JournalDir::name_for("alic", "ea/b.ipynb"));
  JournalWriter w(dir_, name);
  json head = {{"t", "head"}, {"n", 0}};
  ASSERT_TRUE(w.append(head, {{"r", 1}}, 5).ok());
  ASSERT_TRUE(w.append(head, {{"r", 2}}, 6).ok());
  ASSERT_TRUE(w.append(head, {{"r", 3}}, 7).ok());
  EXPECT_EQ(dir_->list(), std::vector<std::string>{name});
  // A save of version 6: only record 3 is left, under the new header.
  ASSERT_TRUE(w.covered(6, {{"t", "head"}, {"n", 6}}).ok());
  auto d = decode_journal(file(name), {});
  ASSERT_EQ(d.records.size(), 2u);
  EXPECT_EQ(d.records[0]["n"], 6);
  EXPECT_EQ(d.records[1]["r"], 3);
  // Appends go on after the rewrite; offsets stay right for the next one.
  ASSERT_TRUE(w.append(head, {{"r", 4}}, 8).ok());
  ASSERT_TRUE(w.covered(7, {{"t", "head"}, {"n", 7}}).ok());
  d = decode_journal(file(name), {});
  ASSERT_EQ(d.records.size(), 2u);
  EXPECT_EQ(d.records[1]["r"], 4);
  // Renamed with the notebook.
  std::string moved = JournalDir::name_for("alice", "c.ipynb");
  ASSERT_TRUE(w.moved(moved, {{"t", "head"}, {"n", 8}}).ok());
  EXPECT_EQ(dir_->list(), std::vector<std::string>{moved});
  // Everything saved: no file at all.
  ASSERT_TRUE(w.covered(8, head).ok());
  EXPECT_TRUE(dir_->list().empty());
  EXPECT_EQ(w.bytes(), 0u);
}

TEST_F(JournalFiles, SymlinksAndSpecialFilesAreNeverFollowed) {
  std::string name = JournalDir::name_for("bob", "x.ipynb");
  std::string target = base_ + "/victim";
  { std::ofstream(target) << "precious"; }
  ASSERT_EQ(::symlink(target.c_str(), (base_ + "/live/journal/" + name).c_str()), 0);
  EXPECT_FALSE(dir_->read(name).ok());
  // A file (here a link) already under the name is kept aside, never
  // written through or truncated; the journal starts in a new file.
  JournalWriter w(dir_, name);
  EXPECT_TRUE(w.append({{"t", "head"}}, {{"r", 1}}, 1).ok());
  std::ifstream in(target);
  std::string s;
  in >> s;
  EXPECT_EQ(s, "precious");
  struct stat st {};
  ASSERT_EQ(::lstat((base_ + "/live/journal/" + name).c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(decode_journal(file(name), {}).records.size(), 2u);
  w.drop();
  EXPECT_FALSE(dir_->exists(name));
  ASSERT_EQ(::mkfifo((base_ + "/live/journal/" + name).c_str(), 0600), 0);
  EXPECT_FALSE(dir_->read(name).ok());  // O_NONBLOCK + fstat: never hangs
  auto kept = dir_->set_aside(name);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(dir_->list().empty());  // kept-aside files are not journals
}

TEST(JournalReplay, RecordsReplayOntoTheSavedFileAndOnlyThere) {
  CollabLimits limits;
  Document live(nb_with({{"a", "x"}, {"b", "y"}}), {});
  CollabState cs(limits, "e1");
  cs.prepare(live);
  CollabPeer me{1, "me", true};
  auto push = [&](const char* cell, json changes) {
    return cs.handle(live, me,
                     {{"t", "push"},
                      {"cell", cell},
                      {"version", cs.version(cell)},
                      {"updates", json::array({{{"clientID", "c"}, {"changes", changes}}})}});
  };
  push("a", json::array({1, json::array({0, "1"})}));  // "x1"
  cs.handle(live, me,
            {{"t", "op"},
             {"op",
              {{"kind", "insert"},
               {"after", "a"},
               {"cell", {{"id", "n"}, {"cell_type", "raw"}, {"source", "new"}}}}}});
  push("a", json::array({2, json::array({0, "2"})}));  // "x12"
  cs.handle(live, me, {{"t", "op"}, {"op", {{"kind", "delete"}, {"id", "b"}}}});
  cs.handle(live, me, {{"t", "pull"}, {"cell", "a"}, {"version", 0}});  // not a change
  auto records = cs.take_journal();
  ASSERT_EQ(records.size(), 4u);
  EXPECT_TRUE(cs.take_journal().empty());

  // Onto the file as saved before: the same document.
  Document again(nb_with({{"a", "x"}, {"b", "y"}}), {});
  CollabState r(limits, "replay");
  r.prepare(again);
  for (auto& rec : records) EXPECT_TRUE(r.replay(again, rec, false)) << rec.dump();
  EXPECT_EQ(again.notebook()["cells"], live.notebook()["cells"]);
  // Twice: nothing applies a second time (text records name the text they
  // were made on; the insert's cell exists; the deleted cell is gone).
  for (auto& rec : records) EXPECT_FALSE(r.replay(again, rec, false)) << rec.dump();
  EXPECT_EQ(again.notebook()["cells"], live.notebook()["cells"]);

  // Onto a file changed from outside: additions only, no text patched
  // over another text, no delete.
  Document other(nb_with({{"a", "restored"}, {"b", "y"}}), {});
  CollabState o(limits, "replay");
  o.prepare(other);
  std::vector<bool> applied;
  for (auto& rec : records) applied.push_back(o.replay(other, rec, true));
  EXPECT_EQ(applied, (std::vector<bool>{false, true, false, false}));
  EXPECT_EQ(*other.source("a"), "restored");
  EXPECT_EQ(*other.source("n"), "new");
  EXPECT_NE(other.source("b"), nullptr);

  // Malformed records are refused like a client's frames.
  for (const json& bad :
       {json(1), json{{"t", "text"}}, json{{"t", "op"}, {"op", {{"kind", "insert"}, {"cell", 5}}}},
        json{{"t", "text"}, {"cell", "a"}, {"len", 1}, {"h", fnv1a64_hex("x")}, {"updates", "no"}},
        json{{"t", "head"}}, json{{"t", "op"}, {"op", {{"kind", "nbmeta"}, {"metadata", 3}}}}}) {
    Document d(nb_with({{"a", "x"}}), {});
    CollabState s(limits, "replay");
    EXPECT_FALSE(s.replay(d, bad, false)) << bad.dump();
    EXPECT_EQ(*d.source("a"), "x");
  }
}

TEST(JournalReplay, DeletingTheLastCellReplaysTheSameBlankCell) {
  CollabLimits limits;
  Document live(nb_with({{"a", "x"}}), {});
  CollabState cs(limits, "e1");
  CollabPeer me{1, "me", true};
  cs.handle(live, me, {{"t", "op"}, {"op", {{"kind", "delete"}, {"id", "a"}}}});
  auto records = cs.take_journal();
  ASSERT_EQ(records.size(), 2u);  // the delete, the server's blank cell
  Document again(nb_with({{"a", "x"}}), {});
  CollabState r(limits, "replay");
  for (auto& rec : records) EXPECT_TRUE(r.replay(again, rec, false));
  EXPECT_EQ(again.notebook()["cells"], live.notebook()["cells"]);  // one blank, same id
}

}  // namespace
}  // namespace skylab::live
