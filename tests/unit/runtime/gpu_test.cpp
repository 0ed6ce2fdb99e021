#include "runtime/gpu.hpp"

#include <gtest/gtest.h>

namespace skylab::runtime {

TEST(Gpu, FakeInventory) {
  auto g = detect_gpus(2);
  ASSERT_EQ(g.size(), 2u);
  EXPECT_TRUE(g[0].fake);
  EXPECT_EQ(g[1].index, 1);
}

TEST(Gpu, TwoRunFourQueueInOrder) {
  GpuAllocator a(detect_gpus(2));
  std::map<std::string, std::vector<int>> got;
  auto grant = [&](std::string id) { return [&got, id](std::vector<int> g) { got[id] = g; }; };
  EXPECT_EQ(a.request("r1", 1, grant("r1")), 0);
  EXPECT_EQ(a.request("r2", 1, grant("r2")), 0);
  EXPECT_EQ(a.request("r3", 1, grant("r3")), 1);
  EXPECT_EQ(a.request("r4", 1, grant("r4")), 2);
  EXPECT_EQ(got.size(), 2u);
  EXPECT_NE(got["r1"], got["r2"]);
  EXPECT_EQ(a.free_count(), 0);
  EXPECT_EQ(a.position("r3"), 1);
  EXPECT_EQ(a.position("r4"), 2);

  a.release("r1");  // r3 takes r1's GPU, r4 advances
  EXPECT_EQ(got["r3"], got["r1"]);
  EXPECT_EQ(a.position("r3"), 0);
  EXPECT_EQ(a.position("r4"), 1);

  EXPECT_TRUE(a.cancel("r4"));
  EXPECT_FALSE(a.cancel("r4"));
  a.release("r2");
  EXPECT_EQ(got.count("r4"), 0u);
  EXPECT_EQ(a.free_count(), 1);
}

TEST(Gpu, NoOvertakingAndImpossibleRequests) {
  GpuAllocator a(detect_gpus(2));
  std::vector<std::string> order;
  auto grant = [&](std::string id) {
    return [&order, id](std::vector<int>) { order.push_back(id); };
  };
  EXPECT_EQ(a.request("one", 1, grant("one")), 0);
  EXPECT_EQ(a.request("both", 2, grant("both")), 1);    // waits for two
  EXPECT_EQ(a.request("small", 1, grant("small")), 2);  // a GPU is free, but it may not overtake
  a.release("one");
  EXPECT_EQ(order, (std::vector<std::string>{"one", "both"}));
  a.release("both");
  EXPECT_EQ(order.back(), "small");
  EXPECT_EQ(a.request("huge", 3, grant("huge")), -1);
}

}  // namespace skylab::runtime
