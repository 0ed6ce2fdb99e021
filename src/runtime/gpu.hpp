// GPUs: inventory (NVML at run time, else nvidia-smi, else a fake one from
// the config) and whole-GPU allocation with a fair FIFO queue.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/mutex.hpp"

namespace skylab::runtime {

struct Gpu {
  int index = 0;
  std::string name;
  std::string uuid;
  std::uint64_t memory_total = 0;  //!< bytes; 0 when unknown
  bool fake = false;
};

//! `fake` > 0: that many fake GPUs. Else the machine's NVIDIA GPUs, found
//! through libnvidia-ml (loaded with dlopen, so no build or run dependency)
//! or nvidia-smi; none when neither answers.
std::vector<Gpu> detect_gpus(int fake);

//! Device nodes a runtime with these GPUs needs (/dev/nvidiaN and the
//! shared control nodes that exist on this machine).
std::vector<std::string> gpu_device_nodes(const std::vector<int>& indices);

struct GpuUsage {
  int index = 0;
  double utilization = 0;          //!< percent
  std::uint64_t memory_used = 0;   //!< bytes
  std::uint64_t memory_total = 0;  //!< bytes
};
//! Current utilisation from nvidia-smi; empty when unavailable or fake.
std::vector<GpuUsage> gpu_usage();

//! Hands out whole GPUs. Requests that cannot be served wait in strict
//! FIFO order (no overtaking, so large requests cannot starve). Thread-safe;
//! grant callbacks run outside the lock, on the thread that freed GPUs.
class GpuAllocator {
 public:
  using Grant = std::function<void(std::vector<int>)>;
  explicit GpuAllocator(std::vector<Gpu> gpus);

  //! Requests `count` GPUs for holder `id`. Returns 0 and calls `on_grant`
  //! before returning when they are free and nobody waits; otherwise queues
  //! and returns the 1-based queue position. -1 when `count` exceeds the
  //! machine's GPUs (can never be served).
  int request(const std::string& id, int count, Grant on_grant);
  //! Records that `id` holds these GPUs (a runtime reattached after a
  //! server restart). Indices out of range are ignored.
  void claim(const std::string& id, const std::vector<int>& gpus);
  //! 1-based queue position of `id`, 0 when not queued.
  int position(const std::string& id) const;
  //! Removes `id` from the queue; false when it was not queued.
  bool cancel(const std::string& id);
  //! Frees what `id` holds and serves the queue.
  void release(const std::string& id);
  std::vector<int> held_by(const std::string& id) const;

  const std::vector<Gpu>& gpus() const { return gpus_; }
  int free_count() const;
  std::vector<std::string> queue() const;

 private:
  struct Waiter {
    std::string id;
    int count;
    Grant grant;
  };
  std::vector<std::pair<std::vector<int>, Grant>> serve_locked() REQUIRES(mutex_);

  std::vector<Gpu> gpus_;
  mutable Mutex mutex_;
  std::vector<std::string> owner_ GUARDED_BY(mutex_);  // per GPU index: holder id or ""
  std::deque<Waiter> queue_ GUARDED_BY(mutex_);
};

}  // namespace skylab::runtime
