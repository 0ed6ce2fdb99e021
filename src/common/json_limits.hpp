// The one way untrusted JSON enters the server: a parse with a nesting-depth
// and a size limit. nlohmann's dump(), comparison and hand-written walkers
// recurse once per level, so a value nested 50,000 deep overflows the stack;
// everything parsed here is at most `max_depth` deep, which makes every later
// recursive walk over it bounded.
#pragma once

#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include "common/result.hpp"

namespace skylab::json_limits {

//! Nesting allowed by default. Real traffic (Plotly figures, widget state,
//! Vega specs, notebooks) stays well below 64 levels; 256 leaves room and
//! keeps every recursive walk far from the stack limit.
inline constexpr std::size_t kDefaultMaxDepth = 256;
//! Nesting allowed in documents the server stores and reads back
//! (notebooks, records): a value that passed kDefaultMaxDepth plus the
//! envelope around it (cells, outputs, data, metadata) must still read.
inline constexpr std::size_t kStoredMaxDepth = 2 * kDefaultMaxDepth;
//! Size allowed by default (64 MiB): above any body or WebSocket limit, so
//! callers with a tighter limit pass it.
inline constexpr std::size_t kDefaultMaxBytes = std::size_t{64} << 20;

struct Limits {
  std::size_t max_depth = kDefaultMaxDepth;  //!< arrays + objects open at once
  std::size_t max_bytes = kDefaultMaxBytes;  //!< length of the text
};

//! For files the server wrote itself (records, sessions, uids).
inline constexpr Limits kStoredLimits{kStoredMaxDepth, kDefaultMaxBytes};

enum class Shape { kOk, kTooDeep, kTooLarge };

//! O(n), no allocation, never throws: whether `text` stays within `limits`.
//! Brackets inside strings (escapes included) do not count. Says nothing
//! about whether the text is valid JSON.
Shape check_shape(std::string_view text, const Limits& limits = {});

//! Parses `text` as JSON within `limits`. Never throws. Fails with
//! kTooLarge when the text is longer than max_bytes, kBadRequest when it
//! nests deeper than max_depth or is not valid JSON (the message says which).
Result<nlohmann::json> parse(std::string_view text, const Limits& limits = {});
//! As parse(), keeping the order of object keys.
Result<nlohmann::ordered_json> parse_ordered(std::string_view text, const Limits& limits = {});

//! parse() for call sites that test is_discarded(): a text that is refused
//! for any reason yields a discarded value (never a partial one).
nlohmann::json parse_or_discarded(std::string_view text, const Limits& limits = {});
nlohmann::ordered_json parse_ordered_or_discarded(std::string_view text, const Limits& limits = {});

//! Depth of an already built value, counting down from `max_depth` so that it
//! never recurses more than max_depth + 1 levels. For values that did not come
//! from parse() (e.g. built by code from several parsed pieces).
bool within_depth(const nlohmann::json& v, std::size_t max_depth = kDefaultMaxDepth);
bool within_depth(const nlohmann::ordered_json& v, std::size_t max_depth = kDefaultMaxDepth);

}  // namespace skylab::json_limits
