// Fast JSON reading and writing for large documents (notebooks of several
// MB, directory listings of 10,000 entries) into and from nlohmann::json.
// nlohmann's own parser and serializer work a character at a time; these
// scan runs of plain bytes at once.
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace skylab::json_io {

//! Parses one JSON text (RFC 8259: UTF-8, no comments, no NaN; leading and
//! trailing whitespace allowed). Duplicate keys: the last one wins.
//! BadRequest naming the byte offset of the problem; nesting deeper than
//! 512 levels is refused.
Result<nlohmann::json> parse_json(std::string_view text);

struct JsonStyle {
  //! -1: compact (no whitespace); n >= 0: one member per line, indented by
  //! n spaces per level, ": " after keys (Python's json.dumps(indent=n)).
  int indent = -1;
  //! Writes '<', '>' and '&' as \u003c, \u003e, \u0026, so that no response
  //! can be sniffed or rendered as HTML.
  bool escape_html = false;
};

//! Appends `j` to `out`. Object keys come out in nlohmann's (sorted)
//! order; invalid UTF-8 in strings is replaced by U+FFFD; non-finite numbers
//! are written as null.
void write_json(std::string& out, const nlohmann::json& j, JsonStyle style = {});
std::string to_json(const nlohmann::json& j, JsonStyle style = {});

}  // namespace skylab::json_io
