// Secrets for kernels (Colab's `userdata`): the kernel→server path.
//
// A kernel asks over its own stdin channel: `google.colab.userdata.get`
// sends a signed `skylab_secret_request` {"name"} on the kernel's stdin
// socket, which only this server's connection to that kernel receives; the
// server answers on the same connection with `skylab_secret_reply`. The
// asking kernel is thus known by the connection the request came on, never
// by anything in the request; the notebook by the Sessions API bindings of
// that kernel, checked when the request arrives. Nothing is readable by
// other code: the reply goes to that kernel's socket only, and a request
// carries no credential that could be replayed elsewhere.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "common/mutex.hpp"

namespace skylab::kernel {
class KernelService;
}
namespace skylab::auth {
class SecretStore;
}

namespace skylab {
class WorkQueue;  // common/work_queue.hpp
}

namespace skylab::api {

class SessionStore;

//! The message types of the kernel→server secret protocol (stdin channel).
inline constexpr const char* kSecretRequest = "skylab_secret_request";
inline constexpr const char* kSecretReply = "skylab_secret_reply";

//! Answers kernels' secret requests. Thread-safe.
class SecretsBroker : public std::enable_shared_from_this<SecretsBroker> {
 public:
  SecretsBroker(std::shared_ptr<kernel::KernelService> kernels,
                std::shared_ptr<auth::SecretStore> store, std::shared_ptr<SessionStore> sessions,
                std::shared_ptr<WorkQueue> work);
  //! Starts answering kernel `kernel_id`'s requests (once; later calls are
  //! cheap no-ops). Unknown kernels are ignored. Any thread.
  void watch(const std::string& kernel_id);
  //! A job's kernel, which has no session: it works on notebook `path`
  //! (the job's), and is answered as a session on that path would be.
  //! Watches it. Any thread.
  void bind_job(const std::string& kernel_id, const std::string& path);

 private:
  class Observer;
  void forget(const std::string& kernel_id);
  void answer(const std::string& kernel_id, const std::string& name, const std::string& request_id,
              const std::string& parent_header);

  std::shared_ptr<kernel::KernelService> kernels_;
  std::shared_ptr<auth::SecretStore> store_;
  std::shared_ptr<SessionStore> sessions_;
  std::shared_ptr<WorkQueue> work_;
  Mutex mu_;
  std::map<std::string, std::shared_ptr<Observer>> observers_ GUARDED_BY(mu_);
  std::map<std::string, std::string> job_paths_ GUARDED_BY(mu_);  // by kernel id
};

}  // namespace skylab::api
