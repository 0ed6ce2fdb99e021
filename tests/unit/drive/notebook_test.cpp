#include "drive/notebook.hpp"

#include <gtest/gtest.h>

#include "common/json_io.hpp"

namespace skylab::drive {

using json_io::JsonStyle;
using json_io::parse_json;
using json_io::to_json;
using nlohmann::json;

namespace {

json valid_nb() {
  return json::parse(R"J({
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"},
                 "language_info": {"name": "python"}},
    "cells": [
      {"id": "a1", "cell_type": "markdown", "metadata": {}, "source": "# Title\nline"},
      {"id": "b2", "cell_type": "code", "metadata": {"tags": ["x"], "collapsed": false},
       "source": ["print(1)\n", "print(2)"], "execution_count": 3,
       "outputs": [
         {"output_type": "stream", "name": "stdout", "text": "1\n2\n"},
         {"output_type": "execute_result", "execution_count": 3, "metadata": {},
          "data": {"text/plain": "3", "application/json": {"a": [1, 2]}}},
         {"output_type": "display_data", "metadata": {}, "data": {"image/png": "iVBORw0K"}},
         {"output_type": "error", "ename": "E", "evalue": "v", "traceback": ["t1", "t2"]}]},
      {"id": "c3", "cell_type": "raw", "metadata": {"format": "text/html"}, "source": ""}
    ]})J");
}

std::string save_error(json nb) {
  auto st = prepare_for_save(nb);
  return st.ok() ? std::string() : st.error().message;
}

}  // namespace

TEST(Notebook, ValidNotebookPasses) {
  json nb = valid_nb();
  ASSERT_TRUE(prepare_for_save(nb).ok());
  EXPECT_EQ(nb["nbformat_minor"], 5);
  EXPECT_EQ(nb["cells"][0]["id"], "a1");  // existing ids are kept
  EXPECT_FALSE(validation_problem(nb));
}

TEST(Notebook, InvalidNotebooksAreRejectedWithTheProblemNamed) {
  struct Case {
    std::function<void(json&)> break_it;
    std::string expect;
  } cases[] = {
      {[](json& nb) { nb.erase("cells"); }, "missing 'cells'"},
      {[](json& nb) { nb["cells"] = json::object(); }, "cells: must be a list"},
      {[](json& nb) { nb["cells"][1]["cell_type"] = "python"; }, "unknown cell_type 'python'"},
      {[](json& nb) { nb["cells"][0]["source"] = 5; }, "cells[0].source"},
      {[](json& nb) {
         nb["cells"][0]["source"] = json::array({"a", 1});
       },
       "cells[0].source[1]"},
      {[](json& nb) { nb["cells"][1].erase("outputs"); }, "cells[1]: missing 'outputs'"},
      {[](json& nb) { nb["cells"][1]["outputs"][0]["output_type"] = "pyout"; },
       "unknown output_type 'pyout'"},
      {[](json& nb) { nb["cells"][1]["outputs"][0].erase("name"); },
       "cells[1].outputs[0]: missing 'name'"},
      {[](json& nb) { nb["cells"][1]["outputs"][1]["data"]["text/plain"] = 3; }, "'text/plain'"},
      {[](json& nb) { nb["cells"][1]["outputs"][3]["traceback"] = "t"; }, "traceback"},
      {[](json& nb) { nb["cells"][1]["metadata"] = json::array(); },
       "cells[1].metadata: must be an object"},
      {[](json& nb) { nb["metadata"] = "x"; }, "metadata: must be an object"},
      {[](json& nb) {
         nb["metadata"]["kernelspec"] = {{"name", "p"}};
       },
       "display_name"},
      {[](json& nb) { nb["nbformat"] = "4"; }, "'nbformat' must be an integer"},
      {[](json& nb) { nb["nbformat_minor"] = 4.5; },
       "'nbformat_minor' must be a non-negative integer"},
      {[](json& nb) { nb["nbformat"] = 5; }, "Unsupported notebook format"},
      {[](json& nb) { nb["extra"] = 1; }, "unexpected property 'extra'"},
      {[](json& nb) { nb["cells"][1]["attachments"] = json::object(); },
       "unexpected property 'attachments'"},
      {[](json& nb) { nb["cells"][1]["execution_count"] = -1; }, "execution_count"},
      {[](json& nb) { nb["cells"][1]["execution_count"] = 1.0; }, "execution_count"},
      {[](json& nb) { nb["cells"][0]["id"] = "bad id!"; }, "cells[0].id"},
      {[](json& nb) {
         nb["cells"][1]["metadata"]["tags"] = json::array({"a", "a"});
       },
       "duplicate tag"},
      {[](json& nb) { nb["cells"][1]["metadata"]["scrolled"] = "yes"; }, "scrolled"},
      {[](json& nb) { nb["cells"] = json::array({"not a cell"}); }, "cells[0]: must be an object"},
  };
  for (auto& c : cases) {
    json nb = valid_nb();
    c.break_it(nb);
    std::string err = save_error(nb);
    EXPECT_NE(err.find(c.expect), std::string::npos)
        << "expected '" << c.expect << "' in '" << err << "'";
    EXPECT_EQ(err.rfind("Invalid notebook", 0) == 0 || err.rfind("Unsupported", 0) == 0, true)
        << err;
  }
}

TEST(Notebook, CellIdsAddedAndMinorUpgraded) {
  json nb = valid_nb();
  nb["nbformat_minor"] = 4;
  for (auto& c : nb["cells"]) c.erase("id");
  ASSERT_TRUE(prepare_for_save(nb).ok());
  EXPECT_EQ(nb["nbformat_minor"], 5);
  std::set<std::string> ids;
  for (auto& c : nb["cells"]) {
    ASSERT_TRUE(c["id"].is_string());
    EXPECT_EQ(c["id"].get<std::string>().size(), 8u);
    ids.insert(c["id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), 3u);

  // v4.5 with a missing id: added; duplicates: replaced.
  json nb2 = valid_nb();
  nb2["cells"][0].erase("id");
  nb2["cells"][2]["id"] = "b2";
  ASSERT_TRUE(prepare_for_save(nb2).ok());
  EXPECT_TRUE(nb2["cells"][0]["id"].is_string());
  EXPECT_EQ(nb2["cells"][1]["id"], "b2");
  EXPECT_NE(nb2["cells"][2]["id"], "b2");
}

TEST(Notebook, TransientFieldsStripped) {
  json nb = valid_nb();
  nb["metadata"]["signature"] = "sha256:x";
  nb["metadata"]["orig_nbformat"] = 3;
  nb["cells"][1]["metadata"]["trusted"] = true;
  ASSERT_TRUE(prepare_for_save(nb).ok());
  EXPECT_FALSE(nb["metadata"].contains("signature"));
  EXPECT_FALSE(nb["metadata"].contains("orig_nbformat"));
  EXPECT_FALSE(nb["cells"][1]["metadata"].contains("trusted"));
}

TEST(Notebook, SerializeSplitsLinesAndReadJoinsThem) {
  json nb = valid_nb();
  ASSERT_TRUE(prepare_for_save(nb).ok());
  std::string bytes = serialize_notebook(nb);
  EXPECT_EQ(bytes.back(), '\n');
  EXPECT_NE(bytes.find("\n \"cells\": [\n  {\n"), std::string::npos) << bytes.substr(0, 200);
  json stored = json::parse(bytes);
  EXPECT_EQ(stored["cells"][0]["source"], json::array({"# Title\n", "line"}));
  EXPECT_EQ(stored["cells"][1]["outputs"][0]["text"], json::array({"1\n", "2\n"}));
  EXPECT_EQ(stored["cells"][1]["outputs"][1]["data"]["application/json"], json({{"a", {1, 2}}}));
  EXPECT_EQ(stored["cells"][1]["outputs"][2]["data"]["image/png"], "iVBORw0K");  // not split
  EXPECT_EQ(stored["cells"][2]["source"], json::array());

  std::string message;
  auto back = parse_stored_notebook(bytes, &message);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE(message.empty()) << message;
  EXPECT_EQ((*back)["cells"][0]["source"], "# Title\nline");
  EXPECT_EQ((*back)["cells"][1]["source"], "print(1)\nprint(2)");
  EXPECT_EQ((*back)["cells"][1]["outputs"][0]["text"], "1\n2\n");
  EXPECT_EQ((*back)["cells"][2]["source"], "");
  // Keys are sorted, like nbformat's writer.
  EXPECT_LT(bytes.find("\"cell_type\""), bytes.find("\"id\""));
}

TEST(Notebook, ReadsOlderMinorsAsStoredAndReportsProblems) {
  json nb = valid_nb();
  nb["nbformat_minor"] = 2;
  for (auto& c : nb["cells"]) c.erase("id");
  std::string message;
  auto r = parse_stored_notebook(nb.dump(), &message);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)["nbformat_minor"], 2);
  EXPECT_FALSE((*r)["cells"][0].contains("id"));
  EXPECT_TRUE(message.empty()) << message;

  nb["cells"][0]["cell_type"] = "bogus";
  r = parse_stored_notebook(nb.dump(), &message);
  ASSERT_TRUE(r.ok());  // served anyway, as Jupyter does, with a message
  EXPECT_NE(message.find("bogus"), std::string::npos);

  EXPECT_FALSE(parse_stored_notebook("{not json", &message).ok());
  EXPECT_FALSE(parse_stored_notebook(R"J({"nbformat": 2, "nbformat_minor": 0})J", &message).ok());
}

TEST(Notebook, V3IsConvertedToV4) {
  const char* v3 = R"J({
    "metadata": {"name": "old", "signature": "x"}, "nbformat": 3, "nbformat_minor": 0,
    "worksheets": [{"metadata": {}, "cells": [
      {"cell_type": "heading", "level": 2, "metadata": {}, "source": ["Intro\n", "part"]},
      {"cell_type": "markdown", "metadata": {}, "source": "text"},
      {"cell_type": "code", "collapsed": true, "input": ["x = 1\n", "x"], "language": "python",
       "metadata": {}, "prompt_number": 4,
       "outputs": [
         {"output_type": "pyout", "prompt_number": 4, "text": ["1"], "png": "iVBOR", "metadata": {}},
         {"output_type": "stream", "stream": "stderr", "text": "warn"},
         {"output_type": "pyerr", "ename": "E", "evalue": "v", "traceback": []},
         {"output_type": "display_data", "json": "{\"a\": 1}", "metadata": {}}]}]}]})J";
  std::string message;
  auto r = parse_stored_notebook(v3, &message);
  ASSERT_TRUE(r.ok()) << r.error().message;
  json& nb = r.value();
  EXPECT_EQ(nb["nbformat"], 4);
  EXPECT_EQ(nb["metadata"]["orig_nbformat"], 3);
  EXPECT_FALSE(nb["metadata"].contains("name"));
  ASSERT_EQ(nb["cells"].size(), 3u);
  EXPECT_EQ(nb["cells"][0]["cell_type"], "markdown");
  EXPECT_EQ(nb["cells"][0]["source"], "## Intro part");
  auto& code = nb["cells"][2];
  EXPECT_EQ(code["source"], "x = 1\nx");
  EXPECT_EQ(code["execution_count"], 4);
  EXPECT_EQ(code["metadata"]["collapsed"], true);
  EXPECT_FALSE(code.contains("language"));
  EXPECT_EQ(code["outputs"][0]["output_type"], "execute_result");
  EXPECT_EQ(code["outputs"][0]["data"]["text/plain"], "1");
  EXPECT_EQ(code["outputs"][0]["data"]["image/png"], "iVBOR");
  EXPECT_EQ(code["outputs"][1]["name"], "stderr");
  EXPECT_EQ(code["outputs"][2]["output_type"], "error");
  EXPECT_EQ(code["outputs"][3]["data"]["application/json"], json({{"a", 1}}));
  EXPECT_TRUE(message.empty()) << message;

  // Saving a v3 notebook stores a valid v4.5 one.
  json v3json = json::parse(v3);
  ASSERT_TRUE(prepare_for_save(v3json).ok());
  EXPECT_EQ(v3json["nbformat"], 4);
  EXPECT_EQ(v3json["nbformat_minor"], 5);
  EXPECT_FALSE(v3json["metadata"].contains("orig_nbformat"));
  EXPECT_FALSE(validation_problem(v3json));
}

TEST(JsonIo, ParsesAndWrites) {
  auto r = parse_json(R"J( {"b": [1, -2, 3.5, 1e3, 18446744073709551615, true, false, null],
      "a": "x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00", "a": "last"} )J");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)["a"], "last");
  EXPECT_EQ((*r)["b"][0], 1);
  EXPECT_EQ((*r)["b"][1], -2);
  EXPECT_DOUBLE_EQ((*r)["b"][2].get<double>(), 3.5);
  EXPECT_TRUE((*r)["b"][4].is_number_unsigned());
  EXPECT_EQ(to_json(*r),
            R"J({"a":"last","b":[1,-2,3.5,1000.0,18446744073709551615,true,false,null]})J");
  auto s = parse_json(R"J("x\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00<")J");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->get<std::string>(), "x\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80<");
  EXPECT_EQ(to_json(*s), "\"x\\\"\\\\/\\b\\f\\n\\r\\t\xc3\xa9\xf0\x9f\x98\x80<\"");
  EXPECT_EQ(to_json(*s, JsonStyle{-1, true}),
            "\"x\\\"\\\\/\\b\\f\\n\\r\\t\xc3\xa9\xf0\x9f\x98\x80\\u003c\"");
  EXPECT_EQ(to_json(json::parse(R"J({"a":[1,{}],"b":[]})J"), JsonStyle{1, false}),
            "{\n \"a\": [\n  1,\n  {}\n ],\n \"b\": []\n}");
  EXPECT_EQ(to_json(json(std::string("\xff"))), "\"\\ufffd\"");
  EXPECT_EQ(to_json(json(std::string("\x01", 1))), "\"\\u0001\"");
}

TEST(JsonIo, RejectsMalformedInput) {
  for (const char* bad :
       {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "-", "\"\\x\"", "\"\\ud800\"", "\"\\udc00x\"",
        "\"a\x01\"", "\"\xff\"", "\"\xc0\xaf\"", "tru", "nul", "NaN", "{}x", "[1 2]", "'a'"}) {
    EXPECT_FALSE(parse_json(bad).ok()) << bad;
  }
  std::string deep(600, '[');
  deep += std::string(600, ']');
  auto r = parse_json(deep);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("too deep"), std::string::npos);
  EXPECT_TRUE(parse_json(std::string(500, '[') + std::string(500, ']')).ok());
}

}  // namespace skylab::drive
