// CodeMirror 6 change sets (@codemirror/state ChangeSet.toJSON) applied to
// UTF-8 text on the server. Positions and lengths in a change set count
// UTF-16 code units (JavaScript string indexes); a line break is one unit
// and CodeMirror splits lines on "\r\n", "\r" and "\n", so text edited this
// way holds "\n" only (see normalize_newlines). Pure logic, no I/O.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace skylab::live {

//! The length of valid UTF-8 `s` in UTF-16 code units.
std::size_t utf16_length(std::string_view s);

//! `s` with "\r\n" and "\r" turned into "\n" (CodeMirror's line model).
std::string normalize_newlines(std::string_view s);

//! Applies `changes` (the JSON of a ChangeSet: a number keeps that many
//! units, [n] deletes n, [n, "line", ...] replaces n by the lines joined
//! with "\n") to `text`. BadRequest when the JSON is not a change set, when
//! it covers a length other than `text`'s, when it has more than
//! `max_sections` sections, when a position splits a surrogate pair, or
//! when the result would exceed `max_bytes`. `text` must be valid UTF-8
//! (nlohmann::json strings are).
Result<std::string> apply_changes(std::string_view text, const nlohmann::json& changes,
                                  std::size_t max_sections, std::size_t max_bytes);

//! A change set that turns `from` into `to` (one replacement of the part
//! between their common prefix and suffix), as JSON.
nlohmann::json diff_changes(std::string_view from, std::string_view to);

}  // namespace skylab::live
