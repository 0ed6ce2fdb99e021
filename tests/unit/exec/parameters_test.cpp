#include "exec/parameters.hpp"

#include <gtest/gtest.h>

namespace skylab::exec {

using nlohmann::json;
using nlohmann::ordered_json;

TEST(Parameters, TypesLikePapermill) {
  auto py = [](const char* raw) { return type_parameter(raw).python; };
  EXPECT_EQ(py("True"), "True");
  EXPECT_EQ(py("False"), "False");
  EXPECT_EQ(py("None"), "None");
  EXPECT_EQ(py("true"), "\"true\"");  // papermill: only Python spellings
  EXPECT_EQ(py("42"), "42");
  EXPECT_EQ(py("-7"), "-7");
  EXPECT_EQ(py(" +0012 "), "12");
  EXPECT_EQ(py("1_000"), "1000");
  EXPECT_EQ(py("123456789012345678901234567890"), "123456789012345678901234567890");
  EXPECT_EQ(py("0.5"), "0.5");
  EXPECT_EQ(py("1e-3"), "0.001");
  EXPECT_EQ(py("3."), "3.0");
  EXPECT_EQ(py(".25"), "0.25");
  EXPECT_EQ(py("1e20"), "1e+20");
  EXPECT_EQ(py("inf"), "float('inf')");
  EXPECT_EQ(py("-Infinity"), "float('-inf')");
  EXPECT_EQ(py("nan"), "float('nan')");
  EXPECT_EQ(py("[1, 2.5, \"a\", true, null]"), "[1, 2.5, \"a\", True, None]");
  EXPECT_EQ(py("{\"b\": 1, \"a\": {\"x\": [false]}}"),
            "{\"b\": 1, \"a\": {\"x\": [False]}}");  // order kept
  EXPECT_EQ(py("[1, 2"), "\"[1, 2\"");               // not JSON: a string
  EXPECT_EQ(py("hello"), "\"hello\"");
  EXPECT_EQ(py(""), "\"\"");
  EXPECT_EQ(py("1_"), "\"1_\"");
  EXPECT_EQ(py("0x10"), "\"0x10\"");

  EXPECT_EQ(type_parameter("42").value, ordered_json(42));
  EXPECT_EQ(type_parameter("0.5").value, ordered_json(0.5));
  EXPECT_EQ(type_parameter("True").value, ordered_json(true));
  EXPECT_TRUE(type_parameter("None").value.is_null());
  EXPECT_EQ(type_parameter("x").value, ordered_json("x"));
}

TEST(Parameters, FloatReprAsPython) {
  EXPECT_EQ(python_float_repr(0.1), "0.1");
  EXPECT_EQ(python_float_repr(1.0), "1.0");
  EXPECT_EQ(python_float_repr(-2.5), "-2.5");
  EXPECT_EQ(python_float_repr(-0.0), "-0.0");
  EXPECT_EQ(python_float_repr(1e16), "1e+16");
  EXPECT_EQ(python_float_repr(1234567890123456.0), "1234567890123456.0");
  EXPECT_EQ(python_float_repr(0.0001), "0.0001");
  EXPECT_EQ(python_float_repr(0.00001), "1e-05");
  EXPECT_EQ(python_float_repr(1.5e-7), "1.5e-07");
  EXPECT_EQ(python_float_repr(1e100), "1e+100");
  EXPECT_EQ(python_float_repr(123.456), "123.456");
  EXPECT_EQ(python_float_repr(1.0 / 3), "0.3333333333333333");
}

TEST(Parameters, StringEscapesAsUnicodeEscape) {
  EXPECT_EQ(python_string_literal("plain"), "\"plain\"");
  EXPECT_EQ(python_string_literal("a\"b'c"), "\"a\\\"b'c\"");
  EXPECT_EQ(python_string_literal("back\\slash"), "\"back\\\\slash\"");
  EXPECT_EQ(python_string_literal("l1\nl2\t\r"), "\"l1\\nl2\\t\\r\"");
  EXPECT_EQ(python_string_literal("\x01\x7f"), "\"\\x01\\x7f\"");
  EXPECT_EQ(python_string_literal("caf\xc3\xa9"), "\"caf\\xe9\"");
  EXPECT_EQ(python_string_literal("\xe2\x82\xac"), "\"\\u20ac\"");
  EXPECT_EQ(python_string_literal("\xf0\x9f\x98\x80"), "\"\\U0001f600\"");
}

TEST(Parameters, NamesAndOrder) {
  EXPECT_TRUE(valid_parameter_name("alpha_1"));
  EXPECT_TRUE(valid_parameter_name("_x"));
  EXPECT_FALSE(valid_parameter_name("1x"));
  EXPECT_FALSE(valid_parameter_name("a-b"));
  EXPECT_FALSE(valid_parameter_name(""));
  Parameters p;
  set_parameter(p, "b", type_parameter("1"));
  set_parameter(p, "a", type_parameter("x"));
  set_parameter(p, "b", type_parameter("2"));
  EXPECT_EQ(parameters_source(p), "# Parameters\nb = 2\na = \"x\"\n");
}

namespace {
json cell(const char* source, std::vector<std::string> tags = {}) {
  json c = {{"cell_type", "code"},
            {"execution_count", nullptr},
            {"metadata", json::object()},
            {"outputs", json::array()},
            {"source", source}};
  if (!tags.empty()) c["metadata"]["tags"] = tags;
  return c;
}
json notebook(json cells, int minor = 5) {
  return {
      {"nbformat", 4}, {"nbformat_minor", minor}, {"metadata", json::object()}, {"cells", cells}};
}
}  // namespace

TEST(Parameters, InjectsAfterTheParametersCell) {
  json nb = notebook({cell("import x"), cell("a = 1", {"parameters"}), cell("print(a)")});
  Parameters p;
  set_parameter(p, "a", type_parameter("5"));
  EXPECT_EQ(inject_parameters(nb, p), 2u);
  ASSERT_EQ(nb["cells"].size(), 4u);
  const json& injected = nb["cells"][2];
  EXPECT_EQ(injected["source"], "# Parameters\na = 5\n");
  EXPECT_EQ(injected["metadata"]["tags"], json({"injected-parameters"}));
  EXPECT_EQ(injected["id"].get<std::string>().size(), 8u);
  EXPECT_EQ(nb["cells"][3]["source"], "print(a)");
  EXPECT_EQ(nb["metadata"]["papermill"]["parameters"], json({{"a", 5}}));
}

TEST(Parameters, InjectsAtTheTopWithoutAParametersCell) {
  json nb = notebook({cell("print(a)")}, 4);
  Parameters p;
  set_parameter(p, "a", type_parameter("x"));
  EXPECT_EQ(inject_parameters(nb, p), 0u);
  EXPECT_EQ(nb["cells"][0]["source"], "# Parameters\na = \"x\"\n");
  EXPECT_FALSE(nb["cells"][0].contains("id"));  // nbformat 4.4 has no cell ids
}

TEST(Parameters, ReplacesAPreviouslyInjectedCell) {
  json nb = notebook(
      {cell("a = 1", {"parameters"}), cell("a = 2", {"injected-parameters"}), cell("print(a)")});
  Parameters p;
  set_parameter(p, "a", type_parameter("3"));
  EXPECT_EQ(inject_parameters(nb, p), 1u);
  ASSERT_EQ(nb["cells"].size(), 3u);
  EXPECT_EQ(nb["cells"][1]["source"], "# Parameters\na = 3\n");
  EXPECT_EQ(find_tagged_cell(nb, "parameters"), 0);
  EXPECT_EQ(find_tagged_cell(nb, "nothing"), -1);
}

}  // namespace skylab::exec
