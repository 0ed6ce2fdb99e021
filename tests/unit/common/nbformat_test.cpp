#include "common/nbformat.hpp"

#include <gtest/gtest.h>

#include "drive/notebook.hpp"
#include "exec/notebook.hpp"

namespace skylab::nbformat {
namespace {

using nlohmann::json;

json sample() {
  return json::parse(R"({
    "nbformat": 4, "nbformat_minor": 5,
    "metadata": {"orig_nbformat": 3, "signature": "x", "kernelspec": {"name": "python3"}},
    "cells": [
      {"cell_type": "code", "id": "a", "metadata": {"trusted": true}, "execution_count": 1,
       "source": "x = 1\r\ny = 2\rz",
       "outputs": [
         {"output_type": "stream", "name": "stdout", "text": "one\ntwo\f"},
         {"output_type": "display_data", "metadata": {},
          "data": {"text/plain": "p\nq", "application/json": {"k": "v\nw"},
                   "image/png": "AAAA\nBBBB"}}]},
      {"cell_type": "markdown", "id": "b", "metadata": {}, "source": ["# T\n", "text"]}
    ]})");
}

TEST(Nbformat, BothWritersWriteTheSameBytes) {
  // One serialiser: the Drive's saves and `skylab run` agree to the byte,
  // transient fields are gone and lines split as Python's splitlines does.
  json nb = sample();
  std::string bytes = serialize(nb);
  EXPECT_EQ(drive::serialize_notebook(nb), bytes);
  EXPECT_EQ(exec::serialize_notebook(nb), bytes);
  json back = json::parse(bytes);
  EXPECT_FALSE(back["metadata"].contains("orig_nbformat"));
  EXPECT_FALSE(back["metadata"].contains("signature"));
  EXPECT_FALSE(back["cells"][0]["metadata"].contains("trusted"));
  EXPECT_EQ(back["cells"][0]["source"], json({"x = 1\r\n", "y = 2\r", "z"}));
  EXPECT_EQ(back["cells"][0]["outputs"][0]["text"], json({"one\n", "two\f"}));
  auto& data = back["cells"][0]["outputs"][1]["data"];
  EXPECT_EQ(data["text/plain"], json({"p\n", "q"}));
  EXPECT_EQ(data["application/json"], json({{"k", "v\nw"}}));  // JSON stays a value
  EXPECT_EQ(data["image/png"], "AAAA\nBBBB");                  // base64 is not text
  EXPECT_EQ(bytes.back(), '\n');
  // And back: joined as nbformat's rejoin_lines.
  join_lines(back);
  EXPECT_EQ(back["cells"][0]["source"], "x = 1\r\ny = 2\rz");
  EXPECT_EQ(back["cells"][1]["source"], "# T\ntext");
  EXPECT_EQ(back["cells"][0]["outputs"][1]["data"]["text/plain"], "p\nq");
}

TEST(Nbformat, CellIdsAreRepairedAndTheFirstHolderKeepsItsId) {
  json nb = json::parse(R"({"cells": [
      {"id": "same"}, {"id": "same"}, {}, {"id": "bad id!"}, {"id": "ok-1"}]})");
  json loose = nb;
  assign_cell_ids(loose, false);  // the Drive at 4.5: a bad id is reported, not replaced
  EXPECT_EQ(loose["cells"][0]["id"], "same");
  EXPECT_NE(loose["cells"][1]["id"], "same");
  EXPECT_TRUE(valid_cell_id(loose["cells"][2]["id"]));
  EXPECT_EQ(loose["cells"][3]["id"], "bad id!");
  EXPECT_EQ(loose["cells"][4]["id"], "ok-1");
  assign_cell_ids(nb, true);
  std::set<std::string> ids;
  for (auto& c : nb["cells"]) {
    EXPECT_TRUE(valid_cell_id(c["id"]));
    ids.insert(c["id"].get<std::string>());
  }
  EXPECT_EQ(ids.size(), 5u);
  EXPECT_EQ(nb["cells"][4]["id"], "ok-1");
}

}  // namespace
}  // namespace skylab::nbformat
