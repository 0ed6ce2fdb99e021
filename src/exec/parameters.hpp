// Papermill-style parameters: values typed from command-line text, rendered
// as Python literals the way papermill's PythonTranslator does, and injected
// as a code cell tagged `injected-parameters`.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace skylab::exec {

//! A parameter value with its two renderings.
struct TypedValue {
  nlohmann::ordered_json value;  //!< for notebook metadata (papermill.parameters)
  std::string python;            //!< the Python literal assigned in the injected cell
};

//! Types `raw` as papermill's `-p` does, and JSON besides: "True"/"False" ->
//! bool, "None" -> None, Python int() syntax -> int, Python float() syntax
//! -> float, text starting with '[' or '{' that parses as JSON -> list/dict,
//! anything else -> str.
TypedValue type_parameter(std::string_view raw);

//! Python's repr() of a finite double ("0.1", "1e-05", "3.0", "1e+16").
std::string python_float_repr(double v);

//! papermill's translate_escaped_str: str.encode('unicode_escape') with '"'
//! escaped, in double quotes.
std::string python_string_literal(std::string_view s);

//! PythonTranslator.translate for a JSON value (None, True/False, numbers,
//! strings, lists and dicts, recursively).
std::string python_literal(const nlohmann::ordered_json& v);

//! True for a valid Python identifier in ASCII ([A-Za-z_][A-Za-z0-9_]*).
bool valid_parameter_name(std::string_view name);

using Parameters = std::vector<std::pair<std::string, TypedValue>>;

//! Adds or replaces `name` keeping first-insertion order (as a Python dict).
void set_parameter(Parameters& params, const std::string& name, TypedValue value);

//! The injected cell's source: "# Parameters\n" then "name = literal\n" for
//! each parameter, as papermill's PythonTranslator.codify writes it.
std::string parameters_source(const Parameters& params);

//! Injects the parameters cell as papermill's parameterize_notebook does:
//! replaces an existing cell tagged `injected-parameters`, else inserts
//! right after the first cell tagged `parameters`, else at the top. Also sets
//! metadata.papermill.parameters. The cell gets an `id` when the notebook is
//! nbformat 4.5 or later. Returns the index of the injected cell.
std::size_t inject_parameters(nlohmann::json& nb, const Parameters& params);

//! Index of the first cell whose metadata.tags contains `tag`, or -1.
long find_tagged_cell(const nlohmann::json& nb, std::string_view tag);

}  // namespace skylab::exec
