#include "runtime/gpu.hpp"

#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "common/log.hpp"
#include "common/mutex.hpp"
#include "common/subprocess.hpp"

namespace skylab::runtime {

namespace {

// Runs nvidia-smi with `args` and returns its stdout ("" on failure).
std::string smi(std::vector<std::string> args) {
  subprocess::Spec spec;
  spec.argv = {"nvidia-smi"};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  auto r = subprocess::run(spec, std::chrono::seconds(30), std::size_t{1} << 20);
  if (!r.ok() || r->timed_out || subprocess::exit_code(r->status) != 0) return "";
  return std::move(r->out);
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string f;
  while (std::getline(ss, f, ',')) {
    while (!f.empty() && f.front() == ' ') f.erase(0, 1);
    while (!f.empty() && (f.back() == ' ' || f.back() == '\r')) f.pop_back();
    out.push_back(f);
  }
  return out;
}

// NVML through dlopen: only the few entry points we need.
std::vector<Gpu> nvml_gpus() {
  std::vector<Gpu> out;
  void* lib = ::dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
  if (!lib) return out;
  using InitFn = int (*)();
  using CountFn = int (*)(unsigned*);
  using HandleFn = int (*)(unsigned, void**);
  using NameFn = int (*)(void*, char*, unsigned);
  struct Memory {
    unsigned long long total, free, used;
  };
  using MemFn = int (*)(void*, Memory*);
  auto init = reinterpret_cast<InitFn>(::dlsym(lib, "nvmlInit_v2"));
  auto count = reinterpret_cast<CountFn>(::dlsym(lib, "nvmlDeviceGetCount_v2"));
  auto handle = reinterpret_cast<HandleFn>(::dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
  auto name = reinterpret_cast<NameFn>(::dlsym(lib, "nvmlDeviceGetName"));
  auto uuid = reinterpret_cast<NameFn>(::dlsym(lib, "nvmlDeviceGetUUID"));
  auto mem = reinterpret_cast<MemFn>(::dlsym(lib, "nvmlDeviceGetMemoryInfo"));
  unsigned n = 0;
  if (init && count && handle && init() == 0 && count(&n) == 0) {
    for (unsigned i = 0; i < n; ++i) {
      void* h = nullptr;
      if (handle(i, &h) != 0) continue;
      Gpu g;
      g.index = static_cast<int>(i);
      char buf[96] = {0};
      if (name && name(h, buf, sizeof buf) == 0) g.name = buf;
      if (uuid && uuid(h, buf, sizeof buf) == 0) g.uuid = buf;
      Memory m{};
      if (mem && mem(h, &m) == 0) g.memory_total = m.total;
      out.push_back(g);
    }
  }
  // The library stays loaded: NVML does not like being unloaded and reloaded.
  return out;
}

std::vector<Gpu> smi_gpus() {
  std::vector<Gpu> out;
  std::string text =
      smi({"--query-gpu=index,name,uuid,memory.total", "--format=csv,noheader,nounits"});
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    auto f = split_csv(line);
    if (f.size() < 4) continue;
    Gpu g;
    g.index = std::atoi(f[0].c_str());
    g.name = f[1];
    g.uuid = f[2];
    g.memory_total = std::strtoull(f[3].c_str(), nullptr, 10) << 20;
    out.push_back(g);
  }
  return out;
}

}  // namespace

std::vector<Gpu> detect_gpus(int fake) {
  if (fake > 0) {
    std::vector<Gpu> out;
    out.reserve(static_cast<std::size_t>(fake));
    for (int i = 0; i < fake; ++i)
      out.push_back(Gpu{i, "Fake GPU", "GPU-fake-" + std::to_string(i), 0, true});
    return out;
  }
  auto g = nvml_gpus();
  if (g.empty()) g = smi_gpus();
  return g;
}

std::vector<std::string> gpu_device_nodes(const std::vector<int>& indices) {
  std::vector<std::string> out;
  std::error_code ec;
  for (int i : indices) {
    std::string d = "/dev/nvidia" + std::to_string(i);
    if (std::filesystem::exists(d, ec)) out.push_back(d);
  }
  if (out.empty()) return out;
  for (const char* d :
       {"/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"})
    if (std::filesystem::exists(d, ec)) out.emplace_back(d);
  return out;
}

std::vector<GpuUsage> gpu_usage() {
  std::vector<GpuUsage> out;
  std::string text = smi({"--query-gpu=index,utilization.gpu,memory.used,memory.total",
                          "--format=csv,noheader,nounits"});
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    auto f = split_csv(line);
    if (f.size() < 4) continue;
    out.push_back({std::atoi(f[0].c_str()), std::atof(f[1].c_str()),
                   std::strtoull(f[2].c_str(), nullptr, 10) << 20,
                   std::strtoull(f[3].c_str(), nullptr, 10) << 20});
  }
  return out;
}

GpuAllocator::GpuAllocator(std::vector<Gpu> gpus) : gpus_(std::move(gpus)), owner_(gpus_.size()) {}

std::vector<std::pair<std::vector<int>, GpuAllocator::Grant>> GpuAllocator::serve_locked() {
  std::vector<std::pair<std::vector<int>, Grant>> granted;
  while (!queue_.empty()) {
    auto& w = queue_.front();
    std::vector<int> free;
    for (std::size_t i = 0; i < owner_.size(); ++i)
      if (owner_[i].empty()) free.push_back(static_cast<int>(i));
    if (static_cast<int>(free.size()) < w.count) break;  // strict FIFO: nobody overtakes
    free.resize(w.count);
    for (int i : free) owner_[i] = w.id;
    granted.emplace_back(std::move(free), std::move(w.grant));
    queue_.pop_front();
  }
  return granted;
}

int GpuAllocator::request(const std::string& id, int count, Grant on_grant) {
  std::vector<std::pair<std::vector<int>, Grant>> granted;
  int pos = 0;
  {
    MutexLock lock(mutex_);
    if (count > static_cast<int>(gpus_.size()) || count < 1) return -1;
    queue_.push_back({id, count, std::move(on_grant)});
    granted = serve_locked();
    for (std::size_t i = 0; i < queue_.size(); ++i)
      if (queue_[i].id == id) pos = static_cast<int>(i) + 1;
  }
  for (auto& [gpus, grant] : granted) grant(gpus);
  return pos;
}

void GpuAllocator::claim(const std::string& id, const std::vector<int>& gpus) {
  MutexLock lock(mutex_);
  for (int g : gpus)
    if (g >= 0 && g < static_cast<int>(owner_.size())) owner_[g] = id;
}

int GpuAllocator::position(const std::string& id) const {
  MutexLock lock(mutex_);
  for (std::size_t i = 0; i < queue_.size(); ++i)
    if (queue_[i].id == id) return static_cast<int>(i) + 1;
  return 0;
}

bool GpuAllocator::cancel(const std::string& id) {
  std::vector<std::pair<std::vector<int>, Grant>> granted;
  bool found = false;
  {
    MutexLock lock(mutex_);
    auto it = std::find_if(queue_.begin(), queue_.end(), [&](auto& w) { return w.id == id; });
    if (it != queue_.end()) {
      queue_.erase(it);
      found = true;
      granted = serve_locked();  // the head may now be servable
    }
  }
  for (auto& [gpus, grant] : granted) grant(gpus);
  return found;
}

void GpuAllocator::release(const std::string& id) {
  std::vector<std::pair<std::vector<int>, Grant>> granted;
  {
    MutexLock lock(mutex_);
    for (auto& o : owner_)
      if (o == id) o.clear();
    granted = serve_locked();
  }
  for (auto& [gpus, grant] : granted) grant(gpus);
}

std::vector<int> GpuAllocator::held_by(const std::string& id) const {
  MutexLock lock(mutex_);
  std::vector<int> out;
  for (std::size_t i = 0; i < owner_.size(); ++i)
    if (owner_[i] == id) out.push_back(static_cast<int>(i));
  return out;
}

int GpuAllocator::free_count() const {
  MutexLock lock(mutex_);
  return static_cast<int>(std::count(owner_.begin(), owner_.end(), std::string()));
}

std::vector<std::string> GpuAllocator::queue() const {
  MutexLock lock(mutex_);
  std::vector<std::string> out;
  for (auto& w : queue_) out.push_back(w.id);
  return out;
}

}  // namespace skylab::runtime
