// The one channel between a Slurm runtime's kernel (on a compute node) and
// the server: `skylab agent` (inside the Slurm job, root on the node) starts
// the kernel in the same sandbox as the local backend, with its ZeroMQ
// sockets on ipc local to the node, and connects to `skylab slurm-link` (on
// the server, a root process the KernelManager starts in place of the
// kernel). The link binds the kernel's sockets as the connection file says,
// so the rest of Skylab sees an ordinary local kernel.
//
// Wire: TCP, agent -> link. The link sends a 32-byte random challenge in
// clear; every later frame is `u32 length | 24-byte nonce | secretbox` with
// a key per direction derived (crypto_kdf) from the runtime's 32-byte secret,
// which the server writes to a root-only file in the job directory (never on
// a command line, never in an environment). The plaintext starts with a
// 64-bit counter per direction (replay and reordering are refused); the
// agent's first frame carries the challenge, so a recorded session cannot be
// replayed to a new link. Frames are capped at kMaxFrame.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace skylab::runtime {

inline constexpr std::size_t kMaxFrame = 64u << 20;  //!< bytes of one frame's plaintext

//! One end of the authenticated, encrypted channel over connected socket `fd`.
//! Not thread-safe; blocking I/O.
class SecureChannel {
 public:
  //! `secret` is the runtime's 32 raw bytes; `agent_side` picks the direction keys.
  SecureChannel(int fd, const std::string& secret, bool agent_side);
  //! Sends one frame.
  Status send(const std::string& plaintext);
  //! Receives one frame of at most `max` bytes; Unavailable at EOF,
  //! Forbidden for a forged, replayed or oversized frame (refused before its
  //! body is read; the caller closes the connection).
  Result<std::string> recv(std::size_t max = kMaxFrame);
  int fd() const { return fd_; }

 private:
  int fd_;
  unsigned char tx_key_[32], rx_key_[32];
  std::uint64_t tx_ctr_ = 0, rx_ctr_ = 0;
};

//! Frame kinds (the byte after the counter).
enum class FrameKind : char {
  kHello = 'H',    //!< agent -> link: the challenge
  kLaunch = 'L',   //!< link -> agent: the kernel's launch description (JSON, with its key)
  kStarted = 'S',  //!< agent -> link: the kernel runs (JSON: node, job)
  kZmq = 'Z',      //!< both: one ZeroMQ message (encode_zmq)
  kExit = 'X',     //!< agent -> link: the kernel ended; the reason
  kUsage = 'U',    //!< agent -> link: the sandbox's resource use (JSON), every few seconds
};

//! A ZeroMQ multipart message on channel `ch` (0 shell, 1 iopub, 2 stdin,
//! 3 control) as a frame body, and back (BadRequest when malformed).
std::string encode_zmq(int ch, const std::vector<std::string>& parts);
Result<std::pair<int, std::vector<std::string>>> decode_zmq(const std::string& body);

// `skylab slurm-link` and `skylab agent` are in src/cli/agent.cpp.

}  // namespace skylab::runtime
