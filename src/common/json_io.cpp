#include "common/json_io.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdlib>

#include "common/json_limits.hpp"

namespace skylab::json_io {

using nlohmann::json;

namespace {

constexpr int kMaxDepth = static_cast<int>(json_limits::kStoredMaxDepth);

//! Length (2-4) of the valid UTF-8 sequence starting at p (a byte >= 0x80),
//! or 0 when it is malformed, overlong, a surrogate or beyond U+10FFFF.
inline int utf8_sequence(const unsigned char* p, const unsigned char* e) {
  unsigned char c = p[0];
  auto cont = [&](int i, unsigned char lo = 0x80, unsigned char hi = 0xBF) {
    return p + i < e && p[i] >= lo && p[i] <= hi;
  };
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c == 0xE0) return cont(1, 0xA0) && cont(2) ? 3 : 0;
  if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) return cont(1) && cont(2) ? 3 : 0;
  if (c == 0xED) return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
  if (c == 0xF0) return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
  if (c >= 0xF1 && c <= 0xF3) return cont(1) && cont(2) && cont(3) ? 4 : 0;
  if (c == 0xF4) return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
  return 0;
}

void append_utf8(std::string& s, std::uint32_t cp) {
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else if (cp < 0x800) {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += static_cast<char>(0xE0 | (cp >> 12));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    s += static_cast<char>(0xF0 | (cp >> 18));
    s += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    s += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

//! Bytes that can be copied from a JSON string as they are: printable ASCII
//! other than '"' and '\\'.
constexpr std::array<bool, 256> make_plain() {
  std::array<bool, 256> t{};
  for (int c = 0x20; c < 0x80; ++c) t[c] = c != '"' && c != '\\';
  return t;
}
constexpr auto kPlain = make_plain();

class Parser {
 public:
  Parser(std::string_view t)
      : begin_(reinterpret_cast<const unsigned char*>(t.data())),
        p_(begin_),
        end_(begin_ + t.size()) {}

  Result<json> parse() {
    json out;
    ws();
    if (!value(out, 0)) return Error::bad_request(error_);
    ws();
    if (p_ != end_) {
      fail("unexpected data after the JSON value");
      return Error::bad_request(error_);
    }
    return out;
  }

 private:
  bool fail(const char* what) {
    if (error_.empty())
      error_ = std::string("Malformed JSON: ") + what + " at byte " + std::to_string(p_ - begin_);
    return false;
  }

  void ws() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\n' || *p_ == '\r' || *p_ == '\t')) ++p_;
  }

  bool literal(const char* word, json&& v, json& out) {
    std::size_t n = std::char_traits<char>::length(word);
    if (static_cast<std::size_t>(end_ - p_) < n ||
        std::char_traits<char>::compare(reinterpret_cast<const char*>(p_), word, n) != 0)
      return fail("invalid literal");
    p_ += n;
    out = std::move(v);
    return true;
  }

  bool value(json& out, int depth) {
    if (p_ >= end_) return fail("unexpected end of input");
    switch (*p_) {
      case '{':
        return object(out, depth + 1);
      case '[':
        return array(out, depth + 1);
      case '"': {
        out = std::string();
        return string(out.get_ref<std::string&>());
      }
      case 't':
        return literal("true", json(true), out);
      case 'f':
        return literal("false", json(false), out);
      case 'n':
        return literal("null", json(nullptr), out);
      default:
        if (*p_ == '-' || (*p_ >= '0' && *p_ <= '9')) return number(out);
        return fail("unexpected character");
    }
  }

  bool object(json& out, int depth) {
    if (depth > kMaxDepth) return fail("nesting too deep");
    ++p_;
    out = json::object();
    auto& obj = out.get_ref<json::object_t&>();
    ws();
    if (p_ < end_ && *p_ == '}') {
      ++p_;
      return true;
    }
    std::string key;
    while (true) {
      ws();
      if (p_ >= end_ || *p_ != '"') return fail("expected a string key");
      if (!string(key)) return false;
      ws();
      if (p_ >= end_ || *p_ != ':') return fail("expected ':'");
      ++p_;
      ws();
      // Keys usually arrive sorted (nbformat writes them so): append at the end.
      json* slot;
      if (obj.empty() || obj.rbegin()->first < key) {
        slot = &obj.emplace_hint(obj.end(), std::move(key), nullptr)->second;
      } else {
        slot = &obj[std::move(key)];  // a duplicate key: the last one wins
      }
      key.clear();
      if (!value(*slot, depth)) return false;
      ws();
      if (p_ >= end_) return fail("unterminated object");
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == '}') {
        ++p_;
        return true;
      }
      return fail("expected ',' or '}'");
    }
  }

  bool array(json& out, int depth) {
    if (depth > kMaxDepth) return fail("nesting too deep");
    ++p_;
    out = json::array();
    auto& arr = out.get_ref<json::array_t&>();
    ws();
    if (p_ < end_ && *p_ == ']') {
      ++p_;
      return true;
    }
    while (true) {
      ws();
      arr.emplace_back();
      if (!value(arr.back(), depth)) return false;
      ws();
      if (p_ >= end_) return fail("unterminated array");
      if (*p_ == ',') {
        ++p_;
        continue;
      }
      if (*p_ == ']') {
        ++p_;
        return true;
      }
      return fail("expected ',' or ']'");
    }
  }

  bool hex4(std::uint32_t& v) {
    if (end_ - p_ < 4) return fail("truncated \\u escape");
    v = 0;
    for (int i = 0; i < 4; ++i) {
      unsigned char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= c - '0';
      else if (c >= 'a' && c <= 'f')
        v |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F')
        v |= c - 'A' + 10;
      else
        return fail("invalid \\u escape");
    }
    return true;
  }

  bool string(std::string& s) {
    ++p_;  // opening quote
    const unsigned char* run = p_;
    while (true) {
      // Plain printable ASCII: the common case, consumed eight bytes at a time.
      while (end_ - p_ >= 8 && kPlain[p_[0]] && kPlain[p_[1]] && kPlain[p_[2]] && kPlain[p_[3]] &&
             kPlain[p_[4]] && kPlain[p_[5]] && kPlain[p_[6]] && kPlain[p_[7]])
        p_ += 8;
      while (p_ < end_ && kPlain[*p_]) ++p_;
      if (p_ >= end_) return fail("unterminated string");
      unsigned char c = *p_;
      if (c == '"') {
        s.append(reinterpret_cast<const char*>(run), p_ - run);
        ++p_;
        return true;
      }
      if (c == '\\') {
        s.append(reinterpret_cast<const char*>(run), p_ - run);
        ++p_;
        if (p_ >= end_) return fail("unterminated string");
        unsigned char e = *p_++;
        switch (e) {
          case '"':
            s += '"';
            break;
          case '\\':
            s += '\\';
            break;
          case '/':
            s += '/';
            break;
          case 'b':
            s += '\b';
            break;
          case 'f':
            s += '\f';
            break;
          case 'n':
            s += '\n';
            break;
          case 'r':
            s += '\r';
            break;
          case 't':
            s += '\t';
            break;
          case 'u': {
            std::uint32_t cp = 0;
            if (!hex4(cp)) return false;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              std::uint32_t lo = 0;
              if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u')
                return fail("unpaired surrogate in \\u escape");
              p_ += 2;
              if (!hex4(lo)) return false;
              if (lo < 0xDC00 || lo > 0xDFFF) return fail("unpaired surrogate in \\u escape");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
              return fail("unpaired surrogate in \\u escape");
            }
            append_utf8(s, cp);
            break;
          }
          default:
            --p_;
            return fail("invalid escape");
        }
        run = p_;
        continue;
      }
      if (c < 0x20) return fail("control character in string");
      int n = utf8_sequence(p_, end_);
      if (n == 0) return fail("invalid UTF-8");
      p_ += n;
    }
  }

  bool number(json& out) {
    const unsigned char* start = p_;
    bool negative = false;
    if (*p_ == '-') {
      negative = true;
      ++p_;
    }
    auto digit = [&] { return p_ < end_ && *p_ >= '0' && *p_ <= '9'; };
    if (!digit()) return fail("invalid number");
    if (*p_ == '0') {
      ++p_;
    } else {
      while (digit()) ++p_;
    }
    bool is_float = false;
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!digit()) return fail("invalid number");
      while (digit()) ++p_;
      is_float = true;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!digit()) return fail("invalid number");
      while (digit()) ++p_;
      is_float = true;
    }
    const char* b = reinterpret_cast<const char*>(start);
    const char* e = reinterpret_cast<const char*>(p_);
    if (!is_float) {
      std::int64_t i;
      if (auto r = std::from_chars(b, e, i); r.ec == std::errc() && r.ptr == e) {
        out = i;
        return true;
      }
      if (!negative) {
        std::uint64_t u;
        if (auto r = std::from_chars(b, e, u); r.ec == std::errc() && r.ptr == e) {
          out = u;
          return true;
        }
      }
    }
    double d;
    auto r = std::from_chars(b, e, d);
    if (r.ec == std::errc::result_out_of_range)
      d = std::strtod(std::string(b, e).c_str(), nullptr);
    else if (r.ec != std::errc() || r.ptr != e)
      return fail("invalid number");
    out = d;
    return true;
  }

  const unsigned char* begin_;
  const unsigned char* p_;
  const unsigned char* end_;
  std::string error_;
};

// Byte classes for the writer: 0 plain, 1 always escaped, 2 HTML-special, 3 non-ASCII.
constexpr std::array<unsigned char, 256> make_classes() {
  std::array<unsigned char, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 1;
  t['"'] = 1;
  t['\\'] = 1;
  t['<'] = 2;
  t['>'] = 2;
  t['&'] = 2;
  for (int c = 0x80; c < 0x100; ++c) t[c] = 3;
  return t;
}
constexpr auto kClass = make_classes();

class Writer {
 public:
  Writer(std::string& out, JsonStyle style) : out_(out), style_(style) {}

  void value(const json& j, int level) {
    switch (j.type()) {
      case json::value_t::null:
        out_ += "null";
        break;
      case json::value_t::boolean:
        out_ += j.get<bool>() ? "true" : "false";
        break;
      case json::value_t::number_integer:
        integer(j.get<std::int64_t>());
        break;
      case json::value_t::number_unsigned:
        integer(j.get<std::uint64_t>());
        break;
      case json::value_t::number_float:
        floating(j.get<double>());
        break;
      case json::value_t::string:
        string(j.get_ref<const std::string&>());
        break;
      case json::value_t::array: {
        const auto& a = j.get_ref<const json::array_t&>();
        if (a.empty()) {
          out_ += "[]";
          break;
        }
        out_ += '[';
        bool first = true;
        for (const auto& v : a) {
          if (!first) out_ += ',';
          first = false;
          newline(level + 1);
          value(v, level + 1);
        }
        newline(level);
        out_ += ']';
        break;
      }
      case json::value_t::object: {
        const auto& o = j.get_ref<const json::object_t&>();
        if (o.empty()) {
          out_ += "{}";
          break;
        }
        out_ += '{';
        bool first = true;
        for (const auto& [k, v] : o) {
          if (!first) out_ += ',';
          first = false;
          newline(level + 1);
          string(k);
          out_ += style_.indent >= 0 ? ": " : ":";
          value(v, level + 1);
        }
        newline(level);
        out_ += '}';
        break;
      }
      default:
        out_ += "null";
        break;  // binary, discarded: never produced by the parser
    }
  }

 private:
  void newline(int level) {
    if (style_.indent < 0) return;
    out_ += '\n';
    out_.append(static_cast<std::size_t>(level) * static_cast<std::size_t>(style_.indent), ' ');
  }

  template <typename T>
  void integer(T v) {
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
  }

  void floating(double d) {
    if (!std::isfinite(d)) {
      out_ += "null";
      return;
    }
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof buf, d);
    std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
    out_ += s;
    if (s.find_first_of(".e") == std::string_view::npos) out_ += ".0";
  }

  void string(const std::string& s) {
    static const char* hex = "0123456789abcdef";
    out_ += '"';
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const auto* e = p + s.size();
    const auto* run = p;
    const bool html = style_.escape_html;
    while (p < e) {
      unsigned char k = kClass[*p];
      if (k == 0 || (k == 2 && !html)) {
        ++p;
        continue;
      }
      if (k == 3) {
        int n = utf8_sequence(p, e);
        if (n) {
          p += n;
          continue;
        }
      }
      out_.append(reinterpret_cast<const char*>(run), p - run);
      unsigned char c = *p;
      switch (c) {
        case '"':
          out_ += "\\\"";
          break;
        case '\\':
          out_ += "\\\\";
          break;
        case '\n':
          out_ += "\\n";
          break;
        case '\r':
          out_ += "\\r";
          break;
        case '\t':
          out_ += "\\t";
          break;
        case '\b':
          out_ += "\\b";
          break;
        case '\f':
          out_ += "\\f";
          break;
        default:
          if (k == 3) {
            out_ += "\\ufffd";  // malformed UTF-8
          } else {
            out_ += "\\u00";
            out_ += hex[c >> 4];
            out_ += hex[c & 15];
          }
      }
      ++p;
      run = p;
    }
    out_.append(reinterpret_cast<const char*>(run), p - run);
    out_ += '"';
  }

  std::string& out_;
  JsonStyle style_;
};

}  // namespace

Result<json> parse_json(std::string_view text) {
  return Parser(text).parse();
}

void write_json(std::string& out, const json& j, JsonStyle style) {
  Writer(out, style).value(j, 0);
}

std::string to_json(const json& j, JsonStyle style) {
  std::string out;
  write_json(out, j, style);
  return out;
}

}  // namespace skylab::json_io
