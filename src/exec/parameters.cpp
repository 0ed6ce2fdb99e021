#include "exec/parameters.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/json_limits.hpp"
#include "exec/notebook.hpp"

namespace skylab::exec {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

std::string_view strip(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
  };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Removes underscores that sit between two digits (Python's numeric literal
// rule); nullopt when an underscore is anywhere else.
std::optional<std::string> drop_underscores(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '_') {
      out += s[i];
      continue;
    }
    if (i == 0 || i + 1 >= s.size() || !is_digit(s[i - 1]) || !is_digit(s[i + 1]))
      return std::nullopt;
  }
  return out;
}

// Python int(text): the canonical decimal digits (with '-' when negative), or nullopt.
std::optional<std::string> python_int(std::string_view raw) {
  auto s = drop_underscores(strip(raw));
  if (!s || s->empty()) return std::nullopt;
  std::string_view v = *s;
  bool neg = false;
  if (v.front() == '+' || v.front() == '-') {
    neg = v.front() == '-';
    v.remove_prefix(1);
  }
  if (v.empty()) return std::nullopt;
  for (char c : v)
    if (!is_digit(c)) return std::nullopt;
  while (v.size() > 1 && v.front() == '0') v.remove_prefix(1);
  std::string out(v);
  if (neg && out != "0") out.insert(out.begin(), '-');
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// Python float(text), or nullopt.
std::optional<double> python_float(std::string_view raw) {
  std::string_view t = strip(raw);
  std::string_view body = t;
  bool neg = false;
  if (!body.empty() && (body.front() == '+' || body.front() == '-')) {
    neg = body.front() == '-';
    body.remove_prefix(1);
  }
  if (iequals(body, "inf") || iequals(body, "infinity")) return neg ? -HUGE_VAL : HUGE_VAL;
  if (iequals(body, "nan")) return std::nan("");
  auto s = drop_underscores(body);
  if (!s || s->empty()) return std::nullopt;
  // digits [. digits] [e [sign] digits], at least one mantissa digit
  const std::string& v = *s;
  std::size_t i = 0, mant = 0;
  while (i < v.size() && is_digit(v[i])) ++i, ++mant;
  if (i < v.size() && v[i] == '.') {
    ++i;
    while (i < v.size() && is_digit(v[i])) ++i, ++mant;
  }
  if (mant == 0) return std::nullopt;
  if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
    ++i;
    if (i < v.size() && (v[i] == '+' || v[i] == '-')) ++i;
    std::size_t exp = 0;
    while (i < v.size() && is_digit(v[i])) ++i, ++exp;
    if (exp == 0) return std::nullopt;
  }
  if (i != v.size()) return std::nullopt;
  double d = std::strtod(v.c_str(), nullptr);
  return neg ? -d : d;
}

std::string float_literal(double v) {
  if (std::isnan(v)) return "float('nan')";
  if (std::isinf(v)) return v < 0 ? "float('-inf')" : "float('inf')";
  return python_float_repr(v);
}

void append_hex(std::string& out, char kind, unsigned long cp, int width) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "\\%c%0*lx", kind, width, cp);
  out += buf;
}

}  // namespace

std::string python_float_repr(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  std::string sign = std::signbit(v) ? "-" : "";
  v = std::fabs(v);
  if (v == 0) return sign + "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string sci(buf, res.ptr);  // d[.ddd]e[+-]XX, shortest round trip
  auto e = sci.find('e');
  std::string digits;
  for (std::size_t i = 0; i < e; ++i)
    if (sci[i] != '.') digits += sci[i];
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  int exp = std::atoi(sci.c_str() + e + 1);
  int decpt = exp + 1;  // value = 0.DIGITS x 10^decpt
  int n = static_cast<int>(digits.size());
  std::string out;
  if (decpt <= -4 || decpt > 16) {
    out = digits.substr(0, 1);
    if (n > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
    out += eb;
  } else if (decpt <= 0) {
    out = "0." + std::string(static_cast<std::size_t>(-decpt), '0') + digits;
  } else if (decpt >= n) {
    out = digits + std::string(static_cast<std::size_t>(decpt - n), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<std::size_t>(decpt)) + "." +
          digits.substr(static_cast<std::size_t>(decpt));
  }
  return sign + out;
}

std::string python_string_literal(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size();) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    unsigned long cp = c;
    std::size_t len = 1;
    if (c >= 0x80) {  // decode UTF-8; a byte that starts no valid sequence counts as Latin-1
      std::size_t extra = (c & 0xe0) == 0xc0   ? 1
                          : (c & 0xf0) == 0xe0 ? 2
                          : (c & 0xf8) == 0xf0 ? 3
                                               : 0;
      bool ok = extra > 0 && i + extra < s.size();
      unsigned long decoded = c & (0x3fu >> extra);
      for (std::size_t k = 1; ok && k <= extra; ++k) {
        unsigned char cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xc0) != 0x80) ok = false;
        decoded = (decoded << 6) | (cc & 0x3f);
      }
      if (ok) {
        cp = decoded;
        len = extra + 1;
      }
    }
    i += len;
    if (cp == '\\')
      out += "\\\\";
    else if (cp == '\t')
      out += "\\t";
    else if (cp == '\n')
      out += "\\n";
    else if (cp == '\r')
      out += "\\r";
    else if (cp == '"')
      out += "\\\"";
    else if (cp < 0x20 || (cp >= 0x7f && cp < 0x100))
      append_hex(out, 'x', cp, 2);
    else if (cp >= 0x100 && cp < 0x10000)
      append_hex(out, 'u', cp, 4);
    else if (cp >= 0x10000)
      append_hex(out, 'U', cp, 8);
    else
      out += static_cast<char>(cp);
  }
  out += '"';
  return out;
}

std::string python_literal(const ordered_json& v) {
  switch (v.type()) {
    case ordered_json::value_t::null:
      return "None";
    case ordered_json::value_t::boolean:
      return v.get<bool>() ? "True" : "False";
    case ordered_json::value_t::number_integer:
      return std::to_string(v.get<std::int64_t>());
    case ordered_json::value_t::number_unsigned:
      return std::to_string(v.get<std::uint64_t>());
    case ordered_json::value_t::number_float:
      return float_literal(v.get<double>());
    case ordered_json::value_t::string:
      return python_string_literal(v.get_ref<const std::string&>());
    case ordered_json::value_t::array: {
      std::string out = "[";
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        out += python_literal(e);
      }
      return out + "]";
    }
    case ordered_json::value_t::object: {
      std::string out = "{";
      bool first = true;
      for (const auto& [k, e] : v.items()) {
        if (!first) out += ", ";
        first = false;
        out += python_string_literal(k) + ": " + python_literal(e);
      }
      return out + "}";
    }
    default:
      return python_string_literal(v.dump());
  }
}

TypedValue type_parameter(std::string_view raw) {
  if (raw == "True") return {true, "True"};
  if (raw == "False") return {false, "False"};
  if (raw == "None") return {nullptr, "None"};
  if (auto i = python_int(raw)) {
    ordered_json value = json_limits::parse_ordered_or_discarded(*i);
    if (value.is_discarded()) value = *i;
    return {value, *i};
  }
  if (auto d = python_float(raw)) {
    ordered_json value = std::isfinite(*d) ? ordered_json(*d) : ordered_json(python_float_repr(*d));
    return {value, float_literal(*d)};
  }
  std::string_view t = strip(raw);
  if (!t.empty() && (t.front() == '[' || t.front() == '{')) {
    ordered_json value = json_limits::parse_ordered_or_discarded(t);
    if (!value.is_discarded()) return {value, python_literal(value)};
  }
  return {std::string(raw), python_string_literal(raw)};
}

bool valid_parameter_name(std::string_view name) {
  if (name.empty() || is_digit(name.front())) return false;
  for (char c : name)
    if (!(is_digit(c) || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
      return false;
  return true;
}

void set_parameter(Parameters& params, const std::string& name, TypedValue value) {
  for (auto& [n, v] : params) {
    if (n == name) {
      v = std::move(value);
      return;
    }
  }
  params.emplace_back(name, std::move(value));
}

std::string parameters_source(const Parameters& params) {
  std::string out = "# Parameters\n";
  for (const auto& [name, v] : params) out += name + " = " + v.python + "\n";
  return out;
}

long find_tagged_cell(const json& nb, std::string_view tag) {
  const json& cells = nb["cells"];
  for (std::size_t i = 0; i < cells.size(); ++i) {
    auto m = cells[i].find("metadata");
    if (m == cells[i].end() || !m->is_object()) continue;
    auto tags = m->find("tags");
    if (tags == m->end() || !tags->is_array()) continue;
    for (const auto& t : *tags)
      if (t.is_string() && t.get_ref<const std::string&>() == tag) return static_cast<long>(i);
  }
  return -1;
}

std::size_t inject_parameters(json& nb, const Parameters& params) {
  json cell = {{"cell_type", "code"},
               {"execution_count", nullptr},
               {"metadata", {{"tags", {"injected-parameters"}}}},
               {"outputs", json::array()},
               {"source", parameters_source(params)}};
  if (nb.value("nbformat", 4) > 4 ||
      (nb.value("nbformat", 4) == 4 && nb.value("nbformat_minor", 0) >= 5))
    cell["id"] = new_cell_id();
  json& cells = nb["cells"];
  long injected = find_tagged_cell(nb, "injected-parameters");
  long tagged = find_tagged_cell(nb, "parameters");
  std::size_t at;
  if (injected >= 0) {
    at = static_cast<std::size_t>(injected);
    cells[at] = std::move(cell);
  } else {
    at = tagged >= 0 ? static_cast<std::size_t>(tagged) + 1 : 0;
    cells.insert(cells.begin() + static_cast<long>(at), std::move(cell));
  }
  json values = json::object();
  for (const auto& [name, v] : params) values[name] = json::parse(v.value.dump());
  if (!nb["metadata"].contains("papermill") || !nb["metadata"]["papermill"].is_object())
    nb["metadata"]["papermill"] = json::object();
  nb["metadata"]["papermill"]["parameters"] = values;
  return at;
}

}  // namespace skylab::exec
