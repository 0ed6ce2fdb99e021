// RuntimeService with a fake backend: admission limits (also under
// concurrency), the GPU queue, release in every state, leases, and starts that
// never block the caller of acquire.
#include "runtime/service.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "runtime/fake_backend.hpp"
#include "runtime/gpu.hpp"
#include "runtime/launch.hpp"

namespace skylab::runtime {
namespace {

using kernel::KernelModel;

// Collects on_started results; wait() blocks until `n` arrived.
struct Results {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Result<KernelModel>> got;
  RuntimeService::Started cb() {
    return [this](Result<KernelModel> k) {
      std::lock_guard lock(mu);
      got.push_back(std::move(k));
      cv.notify_all();
    };
  }
  void wait(std::size_t n) {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return got.size() >= n; });
  }
};

std::shared_ptr<const Config> config(int max_per_user, int max_gpu_per_user = 1) {
  Config c = default_config();
  c.runtimes.max_per_user = max_per_user;
  c.runtimes.max_gpu_per_user = max_gpu_per_user;
  RuntimeType gpu;
  gpu.name = "gpu";
  gpu.gpus = 1;
  c.types["gpu"] = gpu;
  return std::make_shared<Config>(c);
}

RuntimeRequest req(std::string user, std::string type = "", bool may_queue = false) {
  RuntimeRequest r;
  r.user = std::move(user);
  r.spec = "python3";
  r.type = std::move(type);
  r.may_queue = may_queue;
  return r;
}

TEST(RuntimeService, AcquireReturnsWhileTheStartIsStillRunning) {
  auto backend = std::make_shared<FakeBackend>();
  RuntimeService svc(backend, config(0), nullptr);
  Results results;
  auto t = svc.acquire(req("ann"), results.cb());
  ASSERT_TRUE(t.ok()) << t.error().message;
  // acquire returned although the start waits at the gate (on a worker).
  backend->wait_for_waiting(1);
  auto p = svc.pending("ann");
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].state, "starting");
  EXPECT_EQ(p[0].reason, "waiting for a machine");
  EXPECT_EQ(results.got.size(), 0u);
  backend->open();
  results.wait(1);
  ASSERT_TRUE(results.got[0].ok());
  EXPECT_EQ(results.got[0]->id, t->id);
  EXPECT_TRUE(svc.pending("ann").empty());
}

TEST(RuntimeService, LimitCountsStartingAndRunningPerUser) {
  auto backend = std::make_shared<FakeBackend>();
  RuntimeService svc(backend, config(2), nullptr);
  Results results;
  backend->add_running("k1", "ann");
  ASSERT_TRUE(svc.acquire(req("ann"), results.cb()).ok());  // starting, not running yet
  auto third = svc.acquire(req("ann"), results.cb());
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(third.error().code, Error::Code::kConflict);
  EXPECT_NE(third.error().message.find("the most allowed"), std::string::npos);
  EXPECT_TRUE(svc.acquire(req("bob"), results.cb()).ok());  // another user: unaffected
  backend->open();
  results.wait(2);
  // Releasing a running one frees its slot.
  std::promise<Status> released;
  svc.release("k1", [&](Status st) { released.set_value(st); });
  EXPECT_TRUE(released.get_future().get().ok());
  EXPECT_TRUE(svc.acquire(req("ann"), results.cb()).ok());
  results.wait(3);
}

TEST(RuntimeService, ConcurrentAcquiresNeverExceedTheLimit) {
  auto backend = std::make_shared<FakeBackend>();
  RuntimeService svc(backend, config(3), nullptr);
  Results results;
  backend->add_running("k1", "ann");
  backend->add_running("k2", "ann");
  std::atomic<int> admitted{0}, refused{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 16; ++i)
    threads.emplace_back([&] {
      while (!go) std::this_thread::yield();
      if (svc.acquire(req("ann"), results.cb()).ok())
        ++admitted;
      else
        ++refused;
    });
  go = true;
  for (auto& t : threads) t.join();
  EXPECT_EQ(admitted, 1);
  EXPECT_EQ(refused, 15);
  backend->open();
  results.wait(1);
  EXPECT_EQ(backend->running(), 3u);
}

TEST(RuntimeService, GpuQueueGrantsInOrderAndReleaseLeavesIt) {
  auto gpus = std::make_shared<GpuAllocator>(detect_gpus(1));
  auto backend = std::make_shared<FakeBackend>(gpus);
  backend->open();
  RuntimeService svc(backend, config(0, 4), gpus);
  Results first, second, third;
  auto a = svc.acquire(req("ann", "gpu", true), first.cb());
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->position, 0);
  first.wait(1);
  ASSERT_TRUE(first.got[0].ok());
  EXPECT_EQ(gpus_of(*first.got[0]), std::vector<int>{0});
  // No GPU free: a caller that cannot queue is told at once.
  auto refused = svc.acquire(req("ann", "gpu", false), nullptr);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().code, Error::Code::kUnavailable);
  auto b = svc.acquire(req("ann", "gpu", true), second.cb());
  auto c = svc.acquire(req("ann", "gpu", true), third.cb());
  ASSERT_TRUE(b.ok() && c.ok());
  EXPECT_EQ(b->position, 1);
  EXPECT_EQ(c->position, 2);
  // A queued one released: it leaves the queue, its callback says so once.
  std::promise<Status> gone;
  svc.release(b->id, [&](Status st) { gone.set_value(st); });
  EXPECT_TRUE(gone.get_future().get().ok());
  second.wait(1);
  EXPECT_FALSE(second.got[0].ok());
  EXPECT_EQ(svc.pending_one(c->id)->position, 1);
  // The GPU comes back: the next in the queue starts with it.
  svc.release(a->id, nullptr);
  third.wait(1);
  ASSERT_TRUE(third.got[0].ok());
  EXPECT_EQ(gpus_of(*third.got[0]), std::vector<int>{0});
  EXPECT_EQ(second.got.size(), 1u);
}

TEST(RuntimeService, GpuLimitPerUser) {
  auto gpus = std::make_shared<GpuAllocator>(detect_gpus(2));
  auto backend = std::make_shared<FakeBackend>(gpus);
  backend->open();
  RuntimeService svc(backend, config(0, 1), gpus);
  Results r;
  ASSERT_TRUE(svc.acquire(req("ann", "gpu"), r.cb()).ok());
  auto again = svc.acquire(req("ann", "gpu"), r.cb());
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, Error::Code::kConflict);
  EXPECT_TRUE(svc.acquire(req("ann"), r.cb()).ok());  // CPU runtimes are not GPU runtimes
  EXPECT_EQ(svc.acquire(req("bob", "nope"), r.cb()).error().code, Error::Code::kBadRequest);
  r.wait(2);
}

TEST(RuntimeService, ReleasedWhileStartingIsStoppedOnceStarted) {
  auto backend = std::make_shared<FakeBackend>();
  RuntimeService svc(backend, config(1), nullptr);
  Results r;
  auto t = svc.acquire(req("ann"), r.cb());
  ASSERT_TRUE(t.ok());
  backend->wait_for_waiting(1);
  std::promise<Status> released;
  svc.release(t->id, [&](Status st) { released.set_value(st); });
  EXPECT_TRUE(released.get_future().get().ok());
  backend->open();
  r.wait(1);
  EXPECT_FALSE(r.got[0].ok());
  EXPECT_EQ(backend->starts(), 1);
  EXPECT_EQ(backend->stops(), 1);
  EXPECT_EQ(backend->running(), 0u);
  // Its slot is free again.
  EXPECT_TRUE(svc.acquire(req("ann"), r.cb()).ok());
  r.wait(2);
}

TEST(RuntimeService, JobLeaseHoldsFromTheFirstMomentAndFollowsAWarmSpare) {
  auto backend = std::make_shared<FakeBackend>();
  RuntimeService svc(backend, config(0), nullptr);
  Results r;
  auto job = req("ann");
  job.purpose = Purpose::kJob;
  job.lease_holder = "job 1";
  auto t = svc.acquire(job, r.cb());
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(svc.lease_of(t->id), "job 1");  // before the kernel even exists
  backend->open();
  r.wait(1);
  EXPECT_EQ(svc.lease_of(t->id), "job 1");
  svc.unlease(t->id);
  EXPECT_EQ(svc.lease_of(t->id), "");
  // A warm spare has its own id: the lease moves to it.
  backend->set_spares(1);
  auto w = svc.acquire(job, r.cb());
  ASSERT_TRUE(w.ok());
  r.wait(2);
  ASSERT_TRUE(r.got[1].ok());
  EXPECT_TRUE(r.got[1]->claimed);
  EXPECT_EQ(svc.lease_of(r.got[1]->id), "job 1");
  EXPECT_EQ(svc.lease_of(w->id), "");
}

TEST(RuntimeService, BoundedStartsAndStop) {
  auto backend = std::make_shared<FakeBackend>();
  ServiceOptions o;
  o.max_starting = 1;
  RuntimeService svc(backend, config(0), nullptr, nullptr, o);
  Results r;
  ASSERT_TRUE(svc.acquire(req("ann"), r.cb()).ok());
  auto full = svc.acquire(req("bob"), r.cb());
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.error().code, Error::Code::kUnavailable);
  backend->open();
  r.wait(1);
  svc.stop();
  EXPECT_EQ(svc.acquire(req("bob"), r.cb()).error().code, Error::Code::kUnavailable);
}

TEST(RuntimeService, UnknownSpecFailsInTheCallback) {
  auto backend = std::make_shared<FakeBackend>();
  backend->open();
  RuntimeService svc(backend, config(1), nullptr);
  Results r;
  auto q = req("ann");
  q.spec = "missing";
  ASSERT_TRUE(svc.acquire(q, r.cb()).ok());
  r.wait(1);
  ASSERT_FALSE(r.got[0].ok());
  EXPECT_EQ(r.got[0].error().code, Error::Code::kNotFound);
  EXPECT_TRUE(svc.acquire(req("ann"), r.cb()).ok());  // it took no slot
  r.wait(2);
}

}  // namespace
}  // namespace skylab::runtime
