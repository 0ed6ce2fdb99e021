#include "runtime/config.hpp"

#include <cctype>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "runtime/config_ops.hpp"

namespace skylab::runtime {

Result<Duration> parse_duration(std::string_view text) {
  if (text.empty()) return Error::bad_request("empty duration");
  long long total = 0;
  std::size_t i = 0;
  bool any = false;
  while (i < text.size()) {
    std::size_t start = i;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) ++i;
    if (i == start || i - start > 9)
      return Error::bad_request("invalid duration '" + std::string(text) + "'");
    long long n = std::stoll(std::string(text.substr(start, i - start)));
    long long unit = 1;
    if (i < text.size()) {
      char u = text[i++];
      if (u == 's')
        unit = 1;
      else if (u == 'm')
        unit = 60;
      else if (u == 'h')
        unit = 3600;
      else if (u == 'd')
        unit = 86400;
      else
        return Error::bad_request("invalid duration unit in '" + std::string(text) +
                                  "' (use s, m, h)");
    } else if (any) {
      return Error::bad_request("invalid duration '" + std::string(text) + "'");
    }
    total += n * unit;
    any = true;
  }
  return Duration(total);
}

Result<std::uint64_t> parse_size(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == 0 || i > 20) return Error::bad_request("invalid size '" + std::string(text) + "'");
  double n = std::strtod(std::string(text.substr(0, i)).c_str(), nullptr);
  std::string unit(text.substr(i));
  if (!unit.empty() && (unit.back() == 'B' || unit.back() == 'b') && unit.size() > 1)
    unit.pop_back();
  if (unit == "i" || (unit.size() == 2 && unit[1] == 'i')) unit = unit.substr(0, 1);
  double mult = 1;
  if (unit.empty() || unit == "B" || unit == "b")
    mult = 1;
  else if (unit == "K" || unit == "k")
    mult = 1024.0;
  else if (unit == "M" || unit == "m")
    mult = 1024.0 * 1024;
  else if (unit == "G" || unit == "g")
    mult = 1024.0 * 1024 * 1024;
  else if (unit == "T" || unit == "t")
    mult = 1024.0 * 1024 * 1024 * 1024;
  else
    return Error::bad_request("invalid size unit in '" + std::string(text) + "' (use K, M, G, T)");
  double v = n * mult;
  if (!std::isfinite(v) || v < 0 || v > 1.8e19)
    return Error::bad_request("size out of range: " + std::string(text));
  return static_cast<std::uint64_t>(v);
}

Config default_config() {
  Config c;
  RuntimeType cpu;
  cpu.name = "cpu";
  cpu.display_name = "CPU";
  c.types["cpu"] = cpu;
  return c;
}

namespace {

struct Walker {
  std::string error;

  bool fail(const std::string& key, const std::string& what) {
    if (error.empty()) error = "config: " + key + ": " + what;
    return false;
  }

  bool check_keys(const toml::table& t, const std::string& prefix,
                  const std::set<std::string>& allowed) {
    for (auto& [k, v] : t) {
      std::string key(k.str());
      if (!allowed.count(key)) return fail(prefix + key, "unknown key");
    }
    return true;
  }

  bool duration(const toml::table& t, const std::string& prefix, const char* key, Duration& out) {
    auto node = t.get(key);
    if (!node) return true;
    if (auto s = node->value<std::string>()) {
      auto d = parse_duration(*s);
      if (!d.ok()) return fail(prefix + key, d.error().message);
      out = d.value();
      return true;
    }
    if (auto n = node->value<std::int64_t>(); n && *n >= 0) {
      out = Duration(*n);
      return true;
    }
    return fail(prefix + key, "expected a duration such as \"90m\"");
  }

  bool size(const toml::table& t, const std::string& prefix, const char* key, std::uint64_t& out) {
    auto node = t.get(key);
    if (!node) return true;
    if (auto s = node->value<std::string>()) {
      auto v = parse_size(*s);
      if (!v.ok()) return fail(prefix + key, v.error().message);
      out = v.value();
      return true;
    }
    if (auto n = node->value<std::int64_t>(); n && *n >= 0) {
      out = static_cast<std::uint64_t>(*n);
      return true;
    }
    return fail(prefix + key, "expected a size such as \"8G\"");
  }

  bool integer(const toml::table& t, const std::string& prefix, const char* key, int& out, int lo,
               int hi) {
    auto node = t.get(key);
    if (!node) return true;
    auto n = node->value_exact<std::int64_t>();
    if (!n || *n < lo || *n > hi)
      return fail(prefix + key,
                  "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
    out = static_cast<int>(*n);
    return true;
  }

  bool string(const toml::table& t, const std::string& prefix, const char* key, std::string& out,
              std::initializer_list<const char*> choices = {}) {
    auto node = t.get(key);
    if (!node) return true;
    auto s = node->value_exact<std::string>();
    if (!s) return fail(prefix + key, "expected a string");
    if (choices.size()) {
      bool ok = false;
      std::string list;
      for (auto c : choices) {
        ok = ok || *s == c;
        list += std::string(list.empty() ? "" : ", ") + c;
      }
      if (!ok) return fail(prefix + key, "expected one of " + list);
    }
    out = *s;
    return true;
  }
};

}  // namespace

namespace {
// "" or "/a/b": absolute, no empty, "." or ".." part, systemd's unit-name characters only.
bool valid_cgroup_path(const std::string& p) {
  if (p.empty()) return true;
  if (p.size() > 512 || p[0] != '/' || p.back() == '/') return false;
  std::size_t start = 1;
  while (start <= p.size()) {
    auto end = p.find('/', start);
    if (end == std::string::npos) end = p.size();
    std::string part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    for (char ch : part)
      if (ch == '\0' ||
          (!std::isalnum(static_cast<unsigned char>(ch)) && !std::strchr("._-@:\\", ch)))
        return false;
    start = end + 1;
  }
  return true;
}

// [quotas] gpu_hours_per_week = N; [quotas.users.NAME] and [quotas.groups.NAME] the same key.
bool quota_hours(Walker& w, const toml::table& t, const std::string& p,
                 std::optional<double>& out) {
  if (!w.check_keys(t, p, {"gpu_hours_per_week"})) return false;
  if (auto* n = t.get("gpu_hours_per_week")) {
    auto d = n->value<double>();
    if (!d || !(*d >= 0) || *d > 1e6)
      return w.fail(p + "gpu_hours_per_week", "expected a number of hours (0 to 1000000)");
    out = *d;
  }
  return true;
}

bool parse_quotas(const toml::table& root, QuotasSection& q, Walker& w) {
  auto* node = root.get("quotas");
  if (!node) return true;
  auto* t = node->as_table();
  if (!t) return w.fail("quotas", "expected a table");
  if (!w.check_keys(*t, "quotas.", {"gpu_hours_per_week", "users", "groups"})) return false;
  toml::table top;
  if (auto* n = t->get("gpu_hours_per_week")) top.insert("gpu_hours_per_week", *n);
  if (!quota_hours(w, top, "quotas.", q.gpu_hours_per_week)) return false;
  for (const char* kind : {"users", "groups"}) {
    auto* sub = t->get(kind);
    if (!sub) continue;
    auto* st = sub->as_table();
    if (!st || st->size() > 10000)
      return w.fail(std::string("quotas.") + kind, "expected a table of names");
    for (auto& [k, v] : *st) {
      std::string name(k.str());
      const std::string p = std::string("quotas.") + kind + "." + name + ".";
      auto* vt = v.as_table();
      if (!vt) return w.fail(p.substr(0, p.size() - 1), "expected a table");
      if (std::string(kind) == "groups" && name != "admins" && name != "users")
        return w.fail(p.substr(0, p.size() - 1),
                      "unknown group (the groups are \"admins\" and \"users\")");
      std::optional<double> hours;
      if (!quota_hours(w, *vt, p, hours)) return false;
      if (hours) (std::string(kind) == "users" ? q.users : q.groups)[name] = *hours;
    }
  }
  return true;
}
}  // namespace

Result<Config> parse_config(std::string_view text) {
  toml::table root;
  try {
    root = toml::parse(text);
  } catch (const toml::parse_error& e) {
    std::ostringstream m;
    m << "config: " << e.description() << " (line " << e.source().begin.line << ")";
    return Error::bad_request(m.str());
  }
  Config c = default_config();
  Walker w;
  if (!w.check_keys(root, "",
                    {"runtimes", "runtime_types", "gpus", "accounts", "server", "drive", "slurm",
                     "metrics", "log", "quotas"}))
    return Error::bad_request(w.error);

  if (auto* r = root.get_as<toml::table>("runtimes")) {
    const std::string p = "runtimes.";
    bool ok = w.check_keys(*r, p,
                           {"idle_timeout", "max_lifetime", "warning", "grace", "sandbox",
                            "default_type", "warm_pool", "max_per_user", "max_gpu_per_user",
                            "cgroup_parent", "template", "instant"}) &&
              w.duration(*r, p, "idle_timeout", c.runtimes.idle_timeout) &&
              w.duration(*r, p, "max_lifetime", c.runtimes.max_lifetime) &&
              w.duration(*r, p, "warning", c.runtimes.warning) &&
              w.duration(*r, p, "grace", c.runtimes.grace) &&
              w.string(*r, p, "sandbox", c.runtimes.sandbox, {"auto", "bwrap", "none"}) &&
              w.string(*r, p, "default_type", c.runtimes.default_type) &&
              w.integer(*r, p, "warm_pool", c.runtimes.warm_pool, 0, 8) &&
              w.integer(*r, p, "instant", c.runtimes.instant, 0, 64) &&
              w.integer(*r, p, "max_per_user", c.runtimes.max_per_user, 0, 1000) &&
              w.integer(*r, p, "max_gpu_per_user", c.runtimes.max_gpu_per_user, 0, 64) &&
              w.string(*r, p, "cgroup_parent", c.runtimes.cgroup_parent);
    if (!ok) return Error::bad_request(w.error);
    if (!valid_cgroup_path(c.runtimes.cgroup_parent))
      return Error::bad_request(
          "config: runtimes.cgroup_parent: expected an absolute cgroup path such as "
          "\"/system.slice/skylab-runtimes.service\" (letters, digits, . _ - @ : \\x; no . or "
          ".. parts)");
    if (auto n = r->get("template")) {
      auto b = n->value_exact<bool>();
      if (!b) return Error::bad_request("config: runtimes.template: expected true or false");
      c.runtimes.template_on = *b;
    }
  } else if (root.contains("runtimes")) {
    return Error::bad_request("config: runtimes: expected a table");
  }

  if (auto* types = root.get_as<toml::table>("runtime_types")) {
    for (auto& [k, v] : *types) {
      std::string name(k.str());
      const std::string p = "runtime_types." + name + ".";
      auto* t = v.as_table();
      if (!t) return Error::bad_request("config: runtime_types." + name + ": expected a table");
      bool valid_name = !name.empty() && name.size() <= 64;
      for (char ch : name)
        valid_name =
            valid_name && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_');
      if (!valid_name)
        return Error::bad_request("config: runtime_types." + name + ": invalid type name");
      RuntimeType rt = c.types.count(name) ? c.types[name] : RuntimeType{};
      rt.name = name;
      if (rt.display_name.empty()) rt.display_name = name == "gpu" ? "GPU" : name;
      Duration idle{}, life{};
      bool has_idle = t->contains("idle_timeout"), has_life = t->contains("max_lifetime");
      NetworkMode network = rt.network;
      SeccompMode seccomp = rt.seccomp;
      bool ok =
          w.check_keys(*t, p,
                       {"display_name", "memory", "cpus", "gpus", "pids", "disk", "idle_timeout",
                        "max_lifetime", "network", "seccomp", "backend", "partition", "account",
                        "qos", "constraint", "sbatch_options", "preload"}) &&
          w.string(*t, p, "display_name", rt.display_name) &&
          w.size(*t, p, "memory", rt.memory_bytes) && w.integer(*t, p, "gpus", rt.gpus, 0, 64) &&
          w.integer(*t, p, "pids", rt.pids, 0, 1 << 22) && w.size(*t, p, "disk", rt.disk_bytes) &&
          w.duration(*t, p, "idle_timeout", idle) && w.duration(*t, p, "max_lifetime", life);
      if (!ok) return Error::bad_request(w.error);
      if (auto cpus = t->get("cpus")) {
        auto d = cpus->value<double>();
        if (!d || *d < 0 || *d > 4096)
          return Error::bad_request("config: " + p + "cpus: expected a number of CPUs");
        rt.cpus = *d;
      }
      if (auto n = t->get("network")) {
        // true keeps its old meaning "has a network", which is now the isolated NAT.
        auto b = n->value_exact<bool>();
        auto s = n->value_exact<std::string>();
        if (b)
          network = *b ? NetworkMode::kIsolated : NetworkMode::kNone;
        else if (s && *s == "isolated")
          network = NetworkMode::kIsolated;
        else if (s && *s == "host")
          network = NetworkMode::kHost;
        else if (s && *s == "none")
          network = NetworkMode::kNone;
        else
          return Error::bad_request(
              "config: " + p + "network: expected true, false, \"isolated\", \"host\" or \"none\"");
      }
      rt.network = network;
      if (auto n = t->get("seccomp")) {
        auto s = n->value_exact<std::string>();
        if (s && *s == "default")
          seccomp = SeccompMode::kDefault;
        else if (s && *s == "unconfined")
          seccomp = SeccompMode::kUnconfined;
        else
          return Error::bad_request("config: " + p +
                                    "seccomp: expected \"default\" or \"unconfined\"");
      }
      rt.seccomp = seccomp;
      std::string backend = rt.backend == Backend::kSlurm ? "slurm" : "local";
      if (!w.string(*t, p, "backend", backend, {"local", "slurm"}) ||
          !w.string(*t, p, "partition", rt.slurm.partition) ||
          !w.string(*t, p, "account", rt.slurm.account) || !w.string(*t, p, "qos", rt.slurm.qos) ||
          !w.string(*t, p, "constraint", rt.slurm.constraint))
        return Error::bad_request(w.error);
      rt.backend = backend == "slurm" ? Backend::kSlurm : Backend::kLocal;
      if (auto* so = t->get("sbatch_options")) {
        auto* arr = so->as_array();
        if (!arr || arr->size() > 64)
          return Error::bad_request("config: " + p + "sbatch_options: expected a list of strings");
        rt.slurm.sbatch_options.clear();
        for (auto& item : *arr) {
          auto v = item.value_exact<std::string>();
          if (!v || v->empty() || v->size() > 1024)
            return Error::bad_request("config: " + p + "sbatch_options: invalid entry");
          rt.slurm.sbatch_options.push_back(*v);
        }
      }
      if (auto* pl = t->get("preload")) {
        auto* arr = pl->as_array();
        if (!arr || arr->size() > 64)
          return Error::bad_request("config: " + p + "preload: expected a list of module names");
        rt.preload.clear();
        for (auto& item : *arr) {
          auto v = item.value_exact<std::string>();
          bool valid = v && !v->empty() && v->size() <= 128 && (*v)[0] != '.';
          for (char ch : v ? *v : std::string())
            valid =
                valid && (std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '.');
          if (!valid) return Error::bad_request("config: " + p + "preload: invalid module name");
          rt.preload.push_back(*v);
        }
      }
      if (rt.backend == Backend::kSlurm) {
        // Slurm allocates a Slurm type's GPUs on its node; the server's GPU queue is not involved.
        if (rt.gpus > 0) rt.slurm.gpus = rt.gpus;
        rt.gpus = 0;
      } else if (t->contains("partition") || t->contains("account") || t->contains("qos") ||
                 t->contains("constraint") || t->contains("sbatch_options")) {
        return Error::bad_request(
            "config: " + p +
            "partition, account, qos, constraint and sbatch_options need backend = \"slurm\"");
      }
      if (has_idle) rt.idle_timeout = idle;
      if (has_life) rt.max_lifetime = life;
      c.types[name] = rt;
    }
  } else if (root.contains("runtime_types")) {
    return Error::bad_request("config: runtime_types: expected a table");
  }

  if (auto* sl = root.get_as<toml::table>("slurm")) {
    const std::string p = "slurm.";
    std::string users = c.slurm.users;
    bool ok = w.check_keys(*sl, p, {"conf", "listen_host", "users", "bin", "grace"}) &&
              w.string(*sl, p, "conf", c.slurm.conf) &&
              w.string(*sl, p, "listen_host", c.slurm.listen_host) &&
              w.string(*sl, p, "bin", c.slurm.bin) && w.duration(*sl, p, "grace", c.slurm.grace);
    if (!ok) return Error::bad_request(w.error);
    auto name_ok = [](const std::string& v) {
      if (v.empty() || v.size() > 64) return false;
      for (unsigned char ch : v)
        if (!std::isalnum(ch) && ch != '-' && ch != '_' && ch != '.') return false;
      return v[0] != '-';
    };
    if (auto* u = sl->get("users")) {
      if (auto* tab = u->as_table()) {
        c.slurm.users = "table";
        for (auto& [uk, uv] : *tab) {
          auto acct = uv.value_exact<std::string>();
          if (!acct || !name_ok(*acct) || !name_ok(std::string(uk.str())))
            return Error::bad_request("config: slurm.users." + std::string(uk.str()) +
                                      ": expected a cluster account name");
          c.slurm.accounts[std::string(uk.str())] = *acct;
        }
      } else if (!w.string(*sl, p, "users", c.slurm.users, {"root", "same"})) {
        return Error::bad_request(
            "config: slurm.users: expected \"root\", \"same\" or a table of user = \"account\"");
      }
    }
  } else if (root.contains("slurm")) {
    return Error::bad_request("config: slurm: expected a table");
  }

  if (!parse_quotas(root, c.quotas, w)) return Error::bad_request(w.error);

  if (auto* g = root.get_as<toml::table>("gpus")) {
    if (!w.check_keys(*g, "gpus.", {"fake"}) || !w.integer(*g, "gpus.", "fake", c.fake_gpus, 0, 64))
      return Error::bad_request(w.error);
  } else if (root.contains("gpus")) {
    return Error::bad_request("config: gpus: expected a table");
  }

  if (auto* d = root.get_as<toml::table>("drive")) {
    if (!w.check_keys(*d, "drive.", {"quota"}) ||
        !w.size(*d, "drive.", "quota", c.drive.quota_bytes))
      return Error::bad_request(w.error);
  } else if (root.contains("drive")) {
    return Error::bad_request("config: drive: expected a table");
  }

  if (auto* a = root.get_as<toml::table>("accounts")) {
    const std::string p = "accounts.";
    if (!w.check_keys(*a, p, {"signup", "invite_codes", "email_domains"}))
      return Error::bad_request(w.error);
    if (auto n = a->get("signup")) {
      auto b = n->value_exact<bool>();
      if (!b) return Error::bad_request("config: accounts.signup: expected true or false");
      c.accounts.signup = *b;
    }
    auto strings = [&](const char* key, std::vector<std::string>& out, auto valid) -> Status {
      auto* node = a->get(key);
      if (!node) return ok_status();
      auto* arr = node->as_array();
      if (!arr)
        return Error::bad_request(std::string("config: accounts.") + key +
                                  ": expected a list of strings");
      for (auto& item : *arr) {
        auto v = item.value_exact<std::string>();
        if (!v || !valid(*v))
          return Error::bad_request(std::string("config: accounts.") + key + ": invalid entry");
        out.push_back(*v);
      }
      return ok_status();
    };
    // Invitation codes are secrets people type: long enough not to guess, printable.
    auto code_ok = [](const std::string& v) {
      if (v.size() < 8 || v.size() > 128) return false;
      for (unsigned char ch : v)
        if (ch <= ' ' || ch >= 0x7f) return false;
      return true;
    };
    auto domain_ok = [](std::string& v) {
      if (v.empty() || v.size() > 253 || v.front() == '.' || v.back() == '.' ||
          v.find('.') == std::string::npos)
        return false;
      for (auto& ch : v) {
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '-' && ch != '.') return false;
      }
      return true;
    };
    if (auto st = strings("invite_codes", c.accounts.invite_codes, code_ok); !st.ok())
      return st.error();
    if (auto st = strings("email_domains", c.accounts.email_domains, domain_ok); !st.ok())
      return st.error();
  } else if (root.contains("accounts")) {
    return Error::bad_request("config: accounts: expected a table");
  }

  if (auto* sv = root.get_as<toml::table>("server")) {
    if (!w.check_keys(*sv, "server.", {"allowed_hosts", "tls_cert", "tls_key", "trusted_proxies"}))
      return Error::bad_request(w.error);
    if (auto* node = sv->get("allowed_hosts")) {
      auto* arr = node->as_array();
      if (!arr)
        return Error::bad_request("config: server.allowed_hosts: expected a list of host names");
      for (auto& item : *arr) {
        auto v = item.value_exact<std::string>();
        // A host name or address as it appears in a Host header, without port.
        auto ok = [](const std::string& h) {
          if (h == "*") return true;
          if (h.empty() || h.size() > 253) return false;
          for (unsigned char ch : h)
            if (!std::isalnum(ch) && ch != '-' && ch != '.' && ch != ':' && ch != '[' &&
                ch != ']' && ch != '_')
              return false;
          return true;
        };
        if (!v || !ok(*v))
          return Error::bad_request(
              "config: server.allowed_hosts: invalid entry (a host name or address, "
              "without port, or \"*\")");
        c.server.allowed_hosts.push_back(*v);
      }
    }
  } else if (root.contains("server")) {
    return Error::bad_request("config: server: expected a table");
  }

  if (auto st = parse_ops_config(root, c); !st.ok()) return st.error();

  if (!c.types.count(c.runtimes.default_type))
    return Error::bad_request("config: runtimes.default_type: no runtime type named '" +
                              c.runtimes.default_type + "'");
  if (c.runtimes.warning >= c.runtimes.max_lifetime)
    return Error::bad_request(
        "config: runtimes.warning: must be shorter than runtimes.max_lifetime");
  return c;
}

Result<Config> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error::not_found("config: cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config(ss.str());
}

}  // namespace skylab::runtime
