#include "exec/notebook.hpp"

#include <set>

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include "temp_dir.hpp"

namespace skylab::exec {

using nlohmann::json;

TEST(ExecNotebook, CellIdsNormalisedAsNbformatDoes) {
  // 4.4 with ids: becomes 4.5; every cell then has a valid, unique id.
  auto nb = parse_notebook(R"({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [
      {"cell_type": "code", "id": "keep-me_1", "source": ""}, {"cell_type": "code", "source": ""},
      {"cell_type": "code", "id": "keep-me_1", "source": ""}, {"cell_type": "code", "id": "bad id!", "source": ""}]})");
  ASSERT_TRUE(nb.ok()) << nb.error().message;
  EXPECT_EQ(nb->at("nbformat_minor"), 5);
  const json& cells = nb->at("cells");
  EXPECT_EQ(cells[0]["id"], "keep-me_1");
  std::set<std::string> ids;
  for (auto& c : cells) ids.insert(c.at("id").get<std::string>());
  EXPECT_EQ(ids.size(), 4u);  // the missing, repeated and malformed ids were replaced
  EXPECT_FALSE(ids.count("bad id!"));
  // 4.4 without ids stays 4.4, untouched.
  auto old = parse_notebook(R"({"nbformat": 4, "nbformat_minor": 4, "metadata": {}, "cells": [
      {"cell_type": "code", "source": ""}]})");
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->at("nbformat_minor"), 4);
  EXPECT_FALSE(old->at("cells")[0].contains("id"));
}

TEST(ExecNotebook, ParsesAndRejoinsLines) {
  auto nb = parse_notebook(R"({
    "nbformat": 4, "nbformat_minor": 5, "metadata": {},
    "cells": [
      {"cell_type": "markdown", "id": "a", "metadata": {}, "source": ["# T\n", "text"]},
      {"cell_type": "code", "id": "b", "source": ["print(1)\n", "2"], "metadata": {},
       "execution_count": 3,
       "outputs": [{"output_type": "stream", "name": "stdout", "text": ["1\n", "2\n"]},
                   {"output_type": "execute_result", "execution_count": 3, "metadata": {},
                    "data": {"text/plain": ["2"], "application/json": ["a", "b"]}}]},
      {"cell_type": "code", "source": "x"}
    ]})");
  ASSERT_TRUE(nb.ok()) << nb.error().message;
  const json& cells = nb->at("cells");
  EXPECT_EQ(cells[0]["source"], "# T\ntext");
  EXPECT_EQ(cells[1]["source"], "print(1)\n2");
  EXPECT_EQ(cells[1]["outputs"][0]["text"], "1\n2\n");
  EXPECT_EQ(cells[1]["outputs"][1]["data"]["text/plain"], "2");
  EXPECT_EQ(cells[1]["outputs"][1]["data"]["application/json"],
            json({"a", "b"}));                    // JSON mime left alone
  EXPECT_EQ(cells[2]["outputs"], json::array());  // filled in
  EXPECT_TRUE(cells[2]["execution_count"].is_null());
  EXPECT_EQ(cells[2]["metadata"], json::object());
  EXPECT_EQ(cell_source(cells[1]), "print(1)\n2");
}

TEST(ExecNotebook, RejectsWhatIsNotANotebook) {
  auto bad_json = parse_notebook("{\n  \"nbformat\": 4,\n  oops\n}");
  ASSERT_FALSE(bad_json.ok());
  EXPECT_NE(bad_json.error().message.find("not valid JSON (line 3"), std::string::npos)
      << bad_json.error().message;

  EXPECT_NE(parse_notebook("[1, 2]").error().message.find("not a Jupyter notebook"),
            std::string::npos);
  EXPECT_NE(parse_notebook(R"({"cells": []})").error().message.find("not a Jupyter notebook"),
            std::string::npos);
  EXPECT_NE(parse_notebook(R"({"nbformat": 4, "metadata": {}})").error().message.find("no 'cells'"),
            std::string::npos);
  EXPECT_NE(parse_notebook(R"({"nbformat": 4, "metadata": {}, "cells": [{"source": "x"}]})")
                .error()
                .message.find("cell 0"),
            std::string::npos);
  auto v3 =
      parse_notebook(R"({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []})");
  ASSERT_FALSE(v3.ok());
  EXPECT_NE(v3.error().message.find("nbformat 3"), std::string::npos);
  EXPECT_NE(v3.error().message.find("nbconvert --to notebook --nbformat 4"), std::string::npos);
  EXPECT_FALSE(parse_notebook(R"({"nbformat": 5, "cells": []})").ok());
  EXPECT_FALSE(parse_notebook("").ok());
}

TEST(ExecNotebook, SplitLinesAsPython) {
  using V = std::vector<std::string>;
  EXPECT_EQ(split_lines_keepends(""), V{});
  EXPECT_EQ(split_lines_keepends("a"), V{"a"});
  EXPECT_EQ(split_lines_keepends("a\nb\n"), (V{"a\n", "b\n"}));
  EXPECT_EQ(split_lines_keepends("a\r\nb\rc"), (V{"a\r\n", "b\r", "c"}));
  EXPECT_EQ(split_lines_keepends("a\x0b"
                                 "b\x0c"
                                 "c"),
            (V{"a\x0b", "b\x0c", "c"}));
  EXPECT_EQ(split_lines_keepends("a\xe2\x80\xa8z"), (V{"a\xe2\x80\xa8", "z"}));
  EXPECT_EQ(split_lines_keepends("\n\n"), (V{"\n", "\n"}));
}

TEST(ExecNotebook, SerializesAsNbformat) {
  json nb = {{"nbformat", 4},
             {"nbformat_minor", 5},
             {"metadata", {{"orig_nbformat", 3}, {"kernelspec", {{"name", "python3"}}}}},
             {"cells",
              {{{"cell_type", "code"},
                {"id", "c1"},
                {"execution_count", 1},
                {"metadata", {{"trusted", true}}},
                {"source", "a\nb"},
                {"outputs",
                 {{{"output_type", "stream"}, {"name", "stdout"}, {"text", "é\n"}},
                  {{"output_type", "display_data"},
                   {"metadata", json::object()},
                   {"data",
                    {{"text/plain", "x\ny"},
                     {"image/png", "AAAA\nBBBB"},
                     {"image/svg+xml", "<s>\n</s>"}}}}}}}}}};
  std::string text = serialize_notebook(nb);
  EXPECT_EQ(text.back(), '\n');
  EXPECT_NE(text.find("\n \"cells\": [\n  {\n   \"cell_type\": \"code\",\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("\"é\\n\""), std::string::npos);  // no ASCII escaping
  json back = json::parse(text);
  EXPECT_EQ(back["cells"][0]["source"], json({"a\n", "b"}));
  EXPECT_EQ(back["cells"][0]["outputs"][0]["text"], json({"é\n"}));
  EXPECT_EQ(back["cells"][0]["outputs"][1]["data"]["text/plain"], json({"x\n", "y"}));
  EXPECT_EQ(back["cells"][0]["outputs"][1]["data"]["image/png"], "AAAA\nBBBB");  // not a text type
  EXPECT_EQ(back["cells"][0]["outputs"][1]["data"]["image/svg+xml"], json({"<s>\n", "</s>"}));
  EXPECT_FALSE(back["metadata"].contains("orig_nbformat"));
  EXPECT_FALSE(back["cells"][0]["metadata"].contains("trusted"));
  // Round trip through the reader gives the in-memory form back.
  auto again = parse_notebook(text);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->at("cells")[0]["source"], "a\nb");
}

TEST(ExecNotebook, WritesAtomically) {
  namespace fs = std::filesystem;
  TempDir tmp("skylab-nb-test");
  const fs::path& dir = tmp.path();
  std::string path = (dir / "out.ipynb").string();
  { std::ofstream(path) << "old"; }
  json nb = {{"nbformat", 4},
             {"nbformat_minor", 5},
             {"metadata", json::object()},
             {"cells", json::array()}};
  ASSERT_TRUE(write_notebook(path, nb).ok());
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), serialize_notebook(nb));
  std::size_t files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, 1u);  // no temporary left behind
  EXPECT_FALSE(write_notebook((dir / "missing" / "x.ipynb").string(), nb).ok());
}

TEST(ExecNotebook, DefaultOutputPath) {
  EXPECT_EQ(default_output_path("a/b.ipynb"), "a/b.out.ipynb");
  EXPECT_EQ(default_output_path("nb"), "nb.out.ipynb");
  EXPECT_EQ(default_output_path(".ipynb"), ".ipynb.out.ipynb");
  EXPECT_EQ(new_cell_id().size(), 8u);
}

}  // namespace skylab::exec
