// The nbformat v4 rules that both writers of notebooks share (Drive saves,
// `skylab run` and jobs): multi-line fields joined and split as nbformat's
// rwbase does, transient fields stripped, cell ids as nbformat 4.5 wants
// them, and the on-disk layout. Validation stays with the Drive
// (drive/notebook.hpp); reading rules with each reader.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace skylab::nbformat {

//! Python's str.splitlines(keepends=True): splits after \n, \r\n, \r, \v,
//! \f, \x1c-\x1e, U+0085, U+2028 and U+2029.
std::vector<std::string> split_lines_keepends(std::string_view s);

//! Whether a mime type's data is JSON (kept as a value, never as lines).
bool is_json_mime(const std::string& mime);

//! One field: a list of strings becomes their concatenation; anything else
//! is left as it is.
void join_field(nlohmann::json& v);

//! nbformat's rejoin_lines: sources, attachments, stream/error texts and
//! non-JSON mime data given as lists of strings become single strings.
//! Anything else (a list with a non-string) is left alone.
void join_lines(nlohmann::json& nb);

//! nbformat's split_lines: the reverse, with split_lines_keepends, for
//! sources, attachments, stream texts and text-like mime data (text/*,
//! application/javascript, image/svg+xml).
void split_lines(nlohmann::json& nb);

//! nbformat's strip_transient: metadata.orig_nbformat, orig_nbformat_minor,
//! signature and each cell's metadata.trusted go.
void strip_transient(nlohmann::json& nb);

//! A valid nbformat 4.5 cell id: 1 to 64 of [A-Za-z0-9_-].
bool valid_cell_id(const nlohmann::json& id);

//! A fresh cell id (8 lower-case hex characters, as nbformat's random_cell_id).
std::string new_cell_id();

//! nbformat's repair_duplicate_cell_ids, stretched: every cell (object) in
//! `nb.cells` without an id, with a repeated one, or (replace_invalid) with
//! an invalid one gets a fresh id that no other cell has. The first holder
//! of an id keeps it.
void assign_cell_ids(nlohmann::json& nb, bool replace_invalid);

//! The notebook as nbformat.writes puts it on disk: strip_transient,
//! split_lines, keys sorted, indent 1, non-ASCII kept (invalid UTF-8 becomes
//! U+FFFD), a final newline.
std::string serialize(nlohmann::json nb);

}  // namespace skylab::nbformat
