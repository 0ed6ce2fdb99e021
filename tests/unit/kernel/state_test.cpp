#include "kernel/state.hpp"

#include <gtest/gtest.h>

namespace skylab::kernel {

TEST(KernelState, RoundTripsThroughTheWireStrings) {
  for (auto s : {KernelState::kStarting, KernelState::kIdle, KernelState::kBusy,
                 KernelState::kRestarting, KernelState::kDead})
    EXPECT_EQ(kernel_state_from_string(to_string(s)), s);
  EXPECT_EQ(to_string(KernelState::kBusy), "busy");
  EXPECT_EQ(to_string(KernelState::kRestarting), "restarting");
}

TEST(KernelState, UnknownStringsAreNotStates) {
  EXPECT_FALSE(kernel_state_from_string("Busy"));
  EXPECT_FALSE(kernel_state_from_string(""));
  EXPECT_FALSE(kernel_state_from_string("queued"));
  EXPECT_FALSE(kernel_state_from_string(std::string_view("idle\0x", 6)));
}

}  // namespace skylab::kernel
