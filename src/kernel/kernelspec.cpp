#include "kernel/kernelspec.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "common/json_limits.hpp"

namespace skylab::kernel {

namespace fs = std::filesystem;

bool valid_kernel_name(const std::string& name) {
  if (name.empty() || name.size() > 128 || name == "." || name == "..") return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

KernelSpecStore::KernelSpecStore(std::vector<std::string> dirs, std::string python)
    : dirs_(std::move(dirs)), python_(std::move(python)) {}

std::vector<std::string> KernelSpecStore::default_dirs() {
  std::vector<std::string> out;
  if (const char* jp = std::getenv("JUPYTER_PATH")) {
    std::stringstream ss(jp);
    std::string item;
    while (std::getline(ss, item, ':'))
      if (!item.empty()) out.push_back(item + "/kernels");
  }
  if (const char* dd = std::getenv("JUPYTER_DATA_DIR")) {
    out.push_back(std::string(dd) + "/kernels");
  } else if (const char* home = std::getenv("HOME")) {
    out.push_back(std::string(home) + "/.local/share/jupyter/kernels");
  }
  out.emplace_back("/usr/local/share/jupyter/kernels");
  out.emplace_back("/usr/share/jupyter/kernels");
  return out;
}

Result<KernelSpec> KernelSpecStore::load(const std::string& dir, const std::string& name) const {
  std::ifstream in(fs::path(dir) / "kernel.json");
  if (!in) return Error::not_found("no kernel.json");
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = json_limits::parse_or_discarded(ss.str());
  if (!j.is_object() || !j.contains("argv") || !j["argv"].is_array() || j["argv"].empty())
    return Error::bad_request("invalid kernel.json in " + dir);
  KernelSpec k;
  k.name = name;
  k.resource_dir = dir;
  for (const auto& a : j["argv"]) {
    if (!a.is_string()) return Error::bad_request("invalid argv in " + dir);
    k.argv.push_back(a.get<std::string>());
  }
  if (auto e = j.find("env"); e != j.end() && e->is_object())
    for (auto& [key, v] : e->items())
      if (v.is_string()) k.env[key] = v.get<std::string>();
  if (auto im = j.find("interrupt_mode"); im != j.end() && im->is_string())
    k.interrupt_mode = im->get<std::string>();
  if (!j.contains("display_name")) j["display_name"] = name;
  if (!j.contains("language")) j["language"] = "";
  if (!j.contains("interrupt_mode")) j["interrupt_mode"] = "signal";
  if (!j.contains("env")) j["env"] = nlohmann::json::object();
  if (!j.contains("metadata")) j["metadata"] = nlohmann::json::object();
  k.spec = std::move(j);
  return k;
}

KernelSpec KernelSpecStore::builtin_python() const {
  KernelSpec k;
  k.name = "python3";
  k.argv = {python_, "-m", "ipykernel_launcher", "-f", "{connection_file}"};
  k.spec = {{"argv", k.argv},
            {"display_name", "Python 3 (ipykernel)"},
            {"language", "python"},
            {"interrupt_mode", "signal"},
            {"env", nlohmann::json::object()},
            {"metadata", {{"debugger", true}}}};
  for (const char* d : {"/usr/lib/python3/dist-packages/ipykernel/resources",
                        "/usr/local/lib/python3/dist-packages/ipykernel/resources"}) {
    std::error_code ec;
    if (fs::is_directory(d, ec)) {
      k.resource_dir = d;
      break;
    }
  }
  return k;
}

std::vector<KernelSpec> KernelSpecStore::list() const {
  std::vector<KernelSpec> out;
  std::set<std::string> seen;
  for (const auto& dir : dirs_) {
    std::error_code ec;
    fs::directory_iterator it(dir, ec), end;
    if (ec) continue;
    std::vector<std::string> names;
    for (; it != end; it.increment(ec)) {
      if (ec) break;
      if (!it->is_directory(ec)) continue;
      std::string name = it->path().filename().string();
      std::string lower = name;
      for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!valid_kernel_name(lower) || seen.count(lower)) continue;
      auto k = load(it->path().string(), lower);
      if (!k.ok()) continue;
      seen.insert(lower);
      out.push_back(std::move(k.value()));
    }
  }
  if (!seen.count("python3")) out.push_back(builtin_python());
  return out;
}

Result<KernelSpec> KernelSpecStore::find(const std::string& name) const {
  if (!valid_kernel_name(name)) return Error::not_found("No such kernel spec: " + name);
  for (auto& k : list())
    if (k.name == name) return k;
  return Error::not_found("No such kernel spec: " + name);
}

Result<std::string> KernelSpecStore::resource_path(const std::string& name,
                                                   const std::string& resource) const {
  auto k = find(name);
  if (!k.ok()) return k.error();
  if (k->resource_dir.empty() || resource.empty() || resource.find('/') != std::string::npos ||
      resource.find('\\') != std::string::npos || resource.find('\0') != std::string::npos ||
      resource == "." || resource == "..")
    return Error::not_found("No such resource");
  fs::path p = fs::path(k->resource_dir) / resource;
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return Error::not_found("No such resource");
  return p.string();
}

}  // namespace skylab::kernel
