// Notebook documents (nbformat 4) as JSON: reading with the checks a
// headless run needs, multi-line string normalisation as nbformat does it,
// and atomic writing in nbformat's on-disk layout.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace skylab::exec {

//! Parses `text` as an nbformat 4 notebook. Fails (kBadRequest, with a
//! message fit for a user) when it is not JSON, not a notebook, or another
//! major version (nbformat 3 included). On success multi-line fields
//! (sources, stream texts, text mime data) are joined into single strings,
//! as nbformat.reads does, and missing per-cell fields that nbformat 4
//! requires (`metadata`, a code cell's `outputs` and `execution_count`) are
//! added. Cell ids are normalised as nbformat does: a 4.0-4.4 notebook whose
//! cells carry ids becomes 4.5, and in 4.5 every cell gets a valid, unique id.
Result<nlohmann::json> parse_notebook(std::string_view text);

//! Reads the file at `path` (whole) and parses it as parse_notebook does.
//! Errors name the path.
Result<nlohmann::json> read_notebook(const std::string& path);

//! The notebook as nbformat writes it: multi-line strings split into lists
//! of lines (nbformat's split_lines), keys sorted, 1-space indent, no ASCII
//! escaping, a final newline. Invalid UTF-8 in strings is replaced by U+FFFD.
std::string serialize_notebook(const nlohmann::json& nb);

//! Writes serialize_notebook(nb) to `path` atomically: a temporary file in
//! the same directory, fsync, rename over `path`, fsync of the directory.
//! The file's mode is 0666 less the umask. Never leaves a partial `path`.
Status write_notebook(const std::string& path, const nlohmann::json& nb);

//! A cell's `source` as one string (accepts a string or a list of strings).
std::string cell_source(const nlohmann::json& cell);

//! Python's str.splitlines(keepends=True): splits after \n, \r\n, \r, \v,
//! \f, \x1c-\x1e, U+0085, U+2028 and U+2029.
std::vector<std::string> split_lines_keepends(std::string_view s);

//! `IN.ipynb` -> `IN.out.ipynb`; any other name gets `.out.ipynb` appended.
std::string default_output_path(const std::string& input);

//! A fresh nbformat 4.5 cell id (8 lower-case hex characters, as nbformat's
//! random_cell_id).
std::string new_cell_id();

}  // namespace skylab::exec
