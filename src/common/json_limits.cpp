#include "common/json_limits.hpp"

#include <string>

namespace skylab::json_limits {

Shape check_shape(std::string_view text, const Limits& limits) {
  if (text.size() > limits.max_bytes) return Shape::kTooLarge;
  std::size_t depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        in_string = false;
      continue;
    }
    switch (c) {
      case '"':
        in_string = true;
        break;
      case '[':
      case '{':
        if (++depth > limits.max_depth) return Shape::kTooDeep;
        break;
      case ']':
      case '}':
        if (depth > 0) --depth;
        break;
      default:
        break;
    }
  }
  return Shape::kOk;
}

namespace {

template <typename J>
Result<J> parse_impl(std::string_view text, const Limits& limits) {
  switch (check_shape(text, limits)) {
    case Shape::kTooLarge:
      return Error::too_large("JSON text longer than " + std::to_string(limits.max_bytes) +
                              " bytes");
    case Shape::kTooDeep:
      return Error::bad_request("JSON nested deeper than " + std::to_string(limits.max_depth) +
                                " levels");
    case Shape::kOk:
      break;
  }
  // allow_exceptions=false: invalid input becomes a discarded value. Invalid
  // UTF-8 inside strings is rejected by the lexer the same way.
  J j = J::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded()) return Error::bad_request("malformed JSON");
  return j;
}

template <typename J>
bool depth_ok(const J& v, std::size_t left) {
  if (!v.is_structured()) return true;
  if (left == 0) return false;
  for (const auto& e : v) {
    if (!depth_ok(e, left - 1)) return false;
  }
  return true;
}

}  // namespace

Result<nlohmann::json> parse(std::string_view text, const Limits& limits) {
  return parse_impl<nlohmann::json>(text, limits);
}

Result<nlohmann::ordered_json> parse_ordered(std::string_view text, const Limits& limits) {
  return parse_impl<nlohmann::ordered_json>(text, limits);
}

nlohmann::json parse_or_discarded(std::string_view text, const Limits& limits) {
  auto j = parse(text, limits);
  if (!j.ok()) return nlohmann::json(nlohmann::json::value_t::discarded);
  return std::move(j).value();
}

nlohmann::ordered_json parse_ordered_or_discarded(std::string_view text, const Limits& limits) {
  auto j = parse_ordered(text, limits);
  if (!j.ok()) return nlohmann::ordered_json(nlohmann::ordered_json::value_t::discarded);
  return std::move(j).value();
}

bool within_depth(const nlohmann::json& v, std::size_t max_depth) {
  return depth_ok(v, max_depth);
}
bool within_depth(const nlohmann::ordered_json& v, std::size_t max_depth) {
  return depth_ok(v, max_depth);
}

}  // namespace skylab::json_limits
