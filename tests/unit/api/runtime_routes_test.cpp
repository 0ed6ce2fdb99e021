// The runtime routes (/api/skylab/runtimes, /api/skylab/runtime_types,
// /api/skylab/resources) and the kernel routes (/api/kernels) driven through
// an http::Router with fake requests, over a RuntimeService whose backend is
// a fake (kernels "run" in a FakeKernelService): what each user sees, what
// they may stop, malformed requests, limits and a full work queue.
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "api/api.hpp"
#include "api/work_queue.hpp"
#include "kernel/fake_kernel_service.hpp"
#include "kernel/kernelspec.hpp"
#include "runtime/config.hpp"
#include "runtime/fake_backend.hpp"
#include "runtime/gpu.hpp"
#include "runtime/service.hpp"

namespace skylab::api {
namespace {

using nlohmann::json;

struct Reply {
  int status = 0;
  json body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string header(const std::string& name) const {
    for (const auto& [k, v] : headers)
      if (k == name) return v;
    return "";
  }
};

auth::Identity user(const std::string& name, bool admin = false) {
  auth::Identity who;
  who.username = name;
  who.admin = admin;
  who.via = auth::Via::kApiToken;
  return who;
}

// The API's objects as serve.cpp builds them, with fakes where processes
// would run: `kernels` is what the routes list, `backend` where the runtime
// service starts and stops kernels (into `kernels`).
class RuntimeRoutesTest : public ::testing::Test {
 protected:
  //! Builds the context and the routes; `gpus` fake GPUs exist.
  void build(int max_per_user = 0, int gpus = 0,
             std::shared_ptr<WorkQueue> work = std::make_shared<WorkQueue>(2, 64)) {
    kernels_ = std::make_shared<kernel::FakeKernelService>();
    auto allocator = std::make_shared<runtime::GpuAllocator>(
        gpus > 0 ? runtime::detect_gpus(gpus) : std::vector<runtime::Gpu>{});
    backend_ = std::make_shared<runtime::FakeBackend>(allocator, kernels_);
    runtime::Config c = runtime::default_config();
    c.runtimes.max_per_user = max_per_user;
    c.runtimes.max_gpu_per_user = 1;
    runtime::RuntimeType gpu;
    gpu.name = "gpu";
    gpu.gpus = 1;
    c.types["gpu"] = gpu;
    auto ctx = std::make_shared<Context>();
    ctx->kernels = kernels_;
    ctx->specs =
        std::make_shared<kernel::KernelSpecStore>(std::vector<std::string>{}, "/usr/bin/python3");
    ctx->runtime_config = std::make_shared<runtime::Config>(c);
    ctx->runtimes =
        std::make_shared<runtime::RuntimeService>(backend_, ctx->runtime_config, allocator);
    ctx->work = std::move(work);
    ctx_ = ctx;
    add_kernel_routes(router_, ctx_);
    add_runtime_routes(router_, ctx_);
  }

  void TearDown() override {
    if (backend_) backend_->open();  // starts still at the gate finish
    if (ctx_) {
      ctx_->runtimes->stop();
      ctx_->work->stop();
    }
  }

  //! Dispatches like http::Server: the route, its parameters, the handler;
  //! waits (a few seconds at most) for the answer, which may come from
  //! another thread.
  Reply call(const std::string& method, const std::string& path, const auth::Identity& who,
             const std::string& body = "") {
    http::Request req;
    req.method = method;
    req.path = path;
    req.target = path;
    req.body = body;
    req.user = who;
    bool path_exists = false;
    const http::Route* route = router_.match(method, path, req.params, path_exists);
    if (!route) return Reply{path_exists ? 405 : 404, json(), {}};
    auto answer = std::make_shared<std::promise<http::Response>>();
    auto answered = std::make_shared<std::atomic<bool>>(false);
    route->handler(req, [answer, answered](http::Response r) {
      if (answered->exchange(true)) {
        ADD_FAILURE() << "a request answered twice";  // a bug the test must see
        return;
      }
      answer->set_value(std::move(r));
    });
    auto got = answer->get_future();
    if (got.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
      ADD_FAILURE() << method << " " << path << ": no answer";
      return Reply{};
    }
    auto res = got.get();
    Reply out{res.status, json(), res.headers};
    if (!res.body.empty()) out.body = json::parse(res.body);
    return out;
  }

  std::shared_ptr<kernel::FakeKernelService> kernels_;
  std::shared_ptr<runtime::FakeBackend> backend_;
  std::shared_ptr<const Context> ctx_;
  http::Router router_;
};

std::vector<std::string> ids(const json& list) {
  std::vector<std::string> out;
  for (const auto& r : list) out.push_back(r.at("id").get<std::string>());
  return out;
}

// ---------------------------------------------------------------- runtimes

TEST_F(RuntimeRoutesTest, StartListAndStopARuntime) {
  build();
  backend_->open();
  auto started = call("POST", "/api/skylab/runtimes", user("ann"), R"({"type":"cpu"})");
  ASSERT_EQ(started.status, 201) << started.body;
  std::string id = started.body.at("id");
  EXPECT_EQ(started.body.at("type"), "cpu");
  EXPECT_EQ(started.body.at("kernel").at("name"), "python3");
  EXPECT_EQ(backend_->starts(), 1);

  auto mine = call("GET", "/api/skylab/runtimes", user("ann"));
  ASSERT_EQ(mine.status, 200);
  EXPECT_EQ(ids(mine.body), std::vector<std::string>{id});
  EXPECT_EQ(call("GET", "/api/skylab/runtimes/" + id, user("ann")).body.at("id"), id);

  EXPECT_EQ(call("DELETE", "/api/skylab/runtimes/" + id, user("ann")).status, 204);
  EXPECT_EQ(backend_->stops(), 1);
  EXPECT_TRUE(call("GET", "/api/skylab/runtimes", user("ann")).body.empty());
  EXPECT_EQ(call("GET", "/api/skylab/runtimes/" + id, user("ann")).status, 404);
  // The owner told nobody: a stop of one's own runtime is no operator's.
  EXPECT_TRUE(kernels_->notes().empty());
}

TEST_F(RuntimeRoutesTest, AnotherUsersRuntimeIsNotFound) {
  build();
  backend_->add_running("a1", "ann");
  EXPECT_TRUE(call("GET", "/api/skylab/runtimes", user("bob")).body.empty());
  auto get = call("GET", "/api/skylab/runtimes/a1", user("bob"));
  EXPECT_EQ(get.status, 404);
  EXPECT_EQ(get.body.at("message"), "No such runtime: a1");
  EXPECT_EQ(call("DELETE", "/api/skylab/runtimes/a1", user("bob")).status, 404);
  EXPECT_EQ(backend_->running(), 1u);  // still running
  EXPECT_EQ(backend_->stops(), 0);
  // As a missing one: the answer does not tell that it exists.
  EXPECT_EQ(call("GET", "/api/skylab/runtimes/b2", user("bob")).body.at("message"),
            "No such runtime: b2");
}

TEST_F(RuntimeRoutesTest, AnAdministratorSeesAndStopsAnyRuntimeAndItsNotebookIsTold) {
  build();
  backend_->add_running("a1", "ann");
  EXPECT_EQ(ids(call("GET", "/api/skylab/runtimes", user("root", true)).body),
            std::vector<std::string>{"a1"});
  EXPECT_EQ(call("DELETE", "/api/skylab/runtimes/a1", user("root", true)).status, 204);
  EXPECT_EQ(backend_->running(), 0u);
  auto notes = kernels_->notes();
  ASSERT_EQ(notes.size(), 1u);
  EXPECT_EQ(std::get<1>(notes[0]), "skylab_runtime_event");
  EXPECT_EQ(std::get<2>(notes[0]).at("reason"), "operator");
}

TEST_F(RuntimeRoutesTest, MalformedRequestsAre400AndUnknownSpecs404) {
  build();
  auto bad = call("POST", "/api/skylab/runtimes", user("ann"), "{not json");
  EXPECT_EQ(bad.status, 400);
  EXPECT_NE(bad.body.at("message").get<std::string>().find("Malformed JSON"), std::string::npos);
  EXPECT_EQ(call("POST", "/api/skylab/runtimes", user("ann"), "[1]").status, 400);
  auto field = call("POST", "/api/skylab/runtimes", user("ann"), R"({"tpye":"cpu"})");
  EXPECT_EQ(field.status, 400);
  EXPECT_EQ(field.body.at("message"), "Unknown field 'tpye'");
  EXPECT_EQ(call("POST", "/api/skylab/runtimes", user("ann"), R"({"type":3})").status, 400);
  auto type = call("POST", "/api/skylab/runtimes", user("ann"), R"({"type":"tpu"})");
  EXPECT_EQ(type.status, 400);
  EXPECT_EQ(type.body.at("message"), "Unknown runtime type 'tpu'");
  auto spec = call("POST", "/api/skylab/runtimes", user("ann"), R"({"kernel_name":"julia"})");
  EXPECT_EQ(spec.status, 404);
  EXPECT_EQ(backend_->starts(), 0);  // nothing was started for any of them
}

TEST_F(RuntimeRoutesTest, ThePerUserLimitIs409) {
  build(/*max_per_user=*/1);
  backend_->add_running("a1", "ann");
  auto refused = call("POST", "/api/skylab/runtimes", user("ann"), "{}");
  EXPECT_EQ(refused.status, 409);
  EXPECT_NE(refused.body.at("message").get<std::string>().find("the most allowed"),
            std::string::npos);
  backend_->open();
  EXPECT_EQ(call("POST", "/api/skylab/runtimes", user("bob"), "{}").status, 201);
  EXPECT_EQ(backend_->starts(), 1);
}

TEST_F(RuntimeRoutesTest, AGpuTypeOnAServerWithoutGpusIs400) {
  build(0, /*gpus=*/0);
  auto none = call("POST", "/api/skylab/runtimes", user("ann"), R"({"type":"gpu"})");
  EXPECT_EQ(none.status, 400) << none.body;
  EXPECT_EQ(backend_->starts(), 0);
}

TEST_F(RuntimeRoutesTest, ABusyGpuQueuesAndTheGpuLimitIs409) {
  build(0, /*gpus=*/1);
  backend_->open();
  auto first = call("POST", "/api/skylab/runtimes", user("ann"), R"({"type":"gpu"})");
  ASSERT_EQ(first.status, 201) << first.body;
  // Ann's second GPU runtime: over her GPU limit.
  EXPECT_EQ(call("POST", "/api/skylab/runtimes", user("ann"), R"({"type":"gpu"})").status, 409);
  // Bob waits in the queue for the one GPU: 202 at once, with where to look.
  auto queued = call("POST", "/api/skylab/runtimes", user("bob"), R"({"type":"gpu"})");
  ASSERT_EQ(queued.status, 202) << queued.body;
  EXPECT_EQ(queued.body.at("state"), "queued");
  EXPECT_EQ(queued.body.at("position"), 1);
  std::string id = queued.body.at("id");
  EXPECT_EQ(queued.header("Location"), "/api/skylab/runtimes/" + id);
  EXPECT_EQ(call("GET", "/api/skylab/runtimes/" + id, user("bob")).body.at("state"), "queued");
  EXPECT_EQ(call("GET", "/api/skylab/runtimes/" + id, user("ann")).status, 404);
  EXPECT_EQ(ids(call("GET", "/api/skylab/runtimes", user("bob")).body),
            std::vector<std::string>{id});
  auto types = call("GET", "/api/skylab/runtime_types", user("bob"));
  EXPECT_EQ(types.body.at("gpus").at("total"), 1);
  EXPECT_EQ(types.body.at("gpus").at("free"), 0);
  EXPECT_EQ(types.body.at("gpus").at("queued"), 1);
  // Leaving the queue: gone, and nothing was started for it.
  EXPECT_EQ(call("DELETE", "/api/skylab/runtimes/" + id, user("bob")).status, 204);
  EXPECT_EQ(call("GET", "/api/skylab/runtimes/" + id, user("bob")).status, 404);
  EXPECT_EQ(backend_->starts(), 1);
}

TEST_F(RuntimeRoutesTest, ResourcesAnswer503WhenTheWorkQueueIsFull) {
  build(0, 0, std::make_shared<WorkQueue>(0, 0));  // no room: every post is refused
  backend_->add_running("a1", "ann");
  auto busy = call("GET", "/api/skylab/resources", user("ann"));
  EXPECT_EQ(busy.status, 503);
  EXPECT_EQ(busy.header("Retry-After"), "1");
}

TEST_F(RuntimeRoutesTest, ResourcesListOnlyTheUsersRuntimes) {
  build();
  backend_->add_running("a1", "ann");
  backend_->add_running("b2", "bob");
  auto res = call("GET", "/api/skylab/resources", user("ann"));
  ASSERT_EQ(res.status, 200);
  EXPECT_EQ(ids(res.body.at("runtimes")), std::vector<std::string>{"a1"});
  EXPECT_EQ(res.body.at("host").at("gpu_count"), 0);
}

// ---------------------------------------------------------------- kernels

TEST_F(RuntimeRoutesTest, KernelsStartListAndStopThroughTheRuntimeService) {
  build();
  backend_->open();
  auto started = call("POST", "/api/kernels", user("ann"), R"({"name":"python3"})");
  ASSERT_EQ(started.status, 201) << started.body;
  std::string id = started.body.at("id");
  EXPECT_EQ(started.header("Location"), "/api/kernels/" + id);
  EXPECT_EQ(backend_->starts(), 1);  // the service's backend started it
  EXPECT_EQ(ids(call("GET", "/api/kernels", user("ann")).body), std::vector<std::string>{id});
  EXPECT_EQ(call("GET", "/api/kernels/" + id, user("ann")).body.at("name"), "python3");
  EXPECT_EQ(call("POST", "/api/kernels/" + id + "/interrupt", user("ann")).status, 204);
  EXPECT_EQ(call("DELETE", "/api/kernels/" + id, user("ann")).status, 204);
  EXPECT_EQ(backend_->stops(), 1);
  EXPECT_EQ(call("GET", "/api/kernels/" + id, user("ann")).status, 404);
}

TEST_F(RuntimeRoutesTest, AnotherUsersKernelIsNotFound) {
  build();
  backend_->add_running("a1", "ann");
  EXPECT_TRUE(call("GET", "/api/kernels", user("bob")).body.empty());
  for (auto [method, path] :
       std::vector<std::pair<std::string, std::string>>{{"GET", "/api/kernels/a1"},
                                                        {"DELETE", "/api/kernels/a1"},
                                                        {"POST", "/api/kernels/a1/interrupt"},
                                                        {"POST", "/api/kernels/a1/restart"}}) {
    auto r = call(method, path, user("bob"));
    EXPECT_EQ(r.status, 404) << method << " " << path;
    EXPECT_EQ(r.body.at("message"), "Kernel does not exist: a1");
  }
  EXPECT_EQ(backend_->running(), 1u);
  EXPECT_EQ(call("GET", "/api/kernels/a1", user("root", true)).status, 200);
}

TEST_F(RuntimeRoutesTest, KernelRequestsThatAreMalformedOrOverTheLimitAreRefused) {
  build(/*max_per_user=*/1);
  EXPECT_EQ(call("POST", "/api/kernels", user("ann"), "{").status, 400);
  auto name = call("POST", "/api/kernels", user("ann"), R"({"name":7})");
  EXPECT_EQ(name.status, 400);
  EXPECT_EQ(name.body.at("message"), "'name' must be a string");
  backend_->add_running("a1", "ann");
  EXPECT_EQ(call("POST", "/api/kernels", user("ann"), "{}").status, 409);
  EXPECT_EQ(backend_->starts(), 0);
}

}  // namespace
}  // namespace skylab::api
