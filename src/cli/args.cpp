#include "cli/args.hpp"

namespace skylab::cli {

namespace {
bool is_option(const std::string& a) {
  return a.size() > 1 && a[0] == '-';
}
}  // namespace

ArgParser& ArgParser::flag(std::initializer_list<const char*> names, bool* dst) {
  Spec s;
  s.names.assign(names.begin(), names.end());
  s.kind = Spec::Kind::kFlag;
  s.flag = dst;
  specs_.push_back(std::move(s));
  return *this;
}

ArgParser& ArgParser::option(std::initializer_list<const char*> names, std::string* dst) {
  return option(names, [dst](const std::string& v) {
    *dst = v;
    return std::string();
  });
}

ArgParser& ArgParser::option(std::initializer_list<const char*> names, Take take) {
  Spec s;
  s.names.assign(names.begin(), names.end());
  s.kind = Spec::Kind::kValue;
  s.take = std::move(take);
  specs_.push_back(std::move(s));
  return *this;
}

ArgParser& ArgParser::option_n(std::initializer_list<const char*> names, int n, const char* what,
                               std::function<std::string(const std::vector<std::string>&)> take) {
  Spec s;
  s.names.assign(names.begin(), names.end());
  s.kind = Spec::Kind::kValues;
  s.n = n;
  s.what = what;
  s.take_n = std::move(take);
  specs_.push_back(std::move(s));
  return *this;
}

ArgParser& ArgParser::positional(Take take) {
  positional_ = std::move(take);
  return *this;
}

ArgParser& ArgParser::command(std::string* command, std::vector<std::string>* args) {
  return positional([command, args](const std::string& a) {
    (command->empty() ? *command : args->emplace_back()) = a;
    return std::string();
  });
}

ArgParser& ArgParser::rest_after_dashdash(std::vector<std::string>* dst) {
  rest_ = dst;
  return *this;
}

const ArgParser::Spec* ArgParser::find(const std::string& name) const {
  for (auto& s : specs_)
    for (auto& n : s.names)
      if (n == name) return &s;
  return nullptr;
}

int usage_error(const char* program, const std::string& message, std::FILE* err) {
  std::fprintf(err, "%s: %s (see '%s --help')\n", program, message.c_str(), program);
  return 2;
}

int ArgParser::usage_error(const std::string& message, std::FILE* err) const {
  return cli::usage_error(program_, message, err);
}

ArgParser::Outcome ArgParser::parse(const std::vector<std::string>& args, std::FILE* out,
                                    std::FILE* err) const {
  // Help wins wherever it stands, as long as it is not part of the command after "--".
  for (auto& a : args) {
    if (a == "--" && rest_) break;
    if (a == "-h" || a == "--help") {
      std::fputs(help_, out);
      return Outcome::kHelp;
    }
  }
  auto fail = [&](const std::string& m) {
    usage_error(m, err);
    return Outcome::kError;
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--" && rest_) {
      rest_->assign(args.begin() + static_cast<long>(i) + 1, args.end());
      return Outcome::kRun;
    }
    if (!is_option(a)) {
      if (!positional_) return fail("unexpected argument '" + a + "'");
      if (auto m = positional_(a); !m.empty()) return fail(m);
      continue;
    }
    std::string name = a, inline_value;
    bool has_inline = false;
    if (a.rfind("--", 0) == 0) {
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq);
        inline_value = a.substr(eq + 1);
        has_inline = true;
      }
    }
    const Spec* s = find(name);
    if (!s) return fail("unknown option '" + a + "'");
    switch (s->kind) {
      case Spec::Kind::kFlag:
        if (has_inline) return fail(name + " takes no value");
        *s->flag = true;
        break;
      case Spec::Kind::kValue: {
        std::string v;
        if (has_inline) {
          v = inline_value;
        } else if (i + 1 < args.size()) {
          v = args[++i];
        } else {
          return fail(name + " needs a value");
        }
        if (auto m = s->take(v); !m.empty()) return fail(m);
        break;
      }
      case Spec::Kind::kValues: {
        if (has_inline || i + static_cast<std::size_t>(s->n) >= args.size())
          return fail(name + " needs " + s->what);
        std::vector<std::string> vs(args.begin() + static_cast<long>(i) + 1,
                                    args.begin() + static_cast<long>(i) + 1 + s->n);
        i += static_cast<std::size_t>(s->n);
        if (auto m = s->take_n(vs); !m.empty()) return fail(m);
        break;
      }
    }
  }
  return Outcome::kRun;
}

}  // namespace skylab::cli
