#include "api/collab.hpp"

#include <chrono>
#include <utility>
#include <vector>

#include "api/work_queue.hpp"
#include "common/log.hpp"
#include "common/mutex.hpp"
#include "drive/drive.hpp"
#include "http/message.hpp"
#include "http/websocket.hpp"
#include "live/live.hpp"

namespace skylab::api {

namespace {

//! One co-editing WebSocket. Access is checked and the document joined on
//! the work queue (SQLite, disk); frames before that are refused.
class CollabConnection : public http::WebSocketHandler,
                         public live::CollabSink,
                         public std::enable_shared_from_this<CollabConnection> {
 public:
  //! Resolves (owner, path, may write) for the user; blocking.
  using Resolve = std::function<Result<SharedTarget>()>;

  //! `share`: the share it joined through ("" the owner's own route); its
  //! grant can end while it is open.
  CollabConnection(std::shared_ptr<const Context> ctx, std::string user, Resolve resolve,
                   std::string share)
      : ctx_(std::move(ctx)),
        user_(std::move(user)),
        resolve_(std::move(resolve)),
        share_(std::move(share)) {}

  void on_open(std::shared_ptr<http::WebSocket> ws) override {
    ws_ = ws;
    auto self = shared_from_this();
    if (!share_.empty()) remember(self);
    bool queued = ctx_->work->post([self] { self->join(); });
    if (!queued) ws->close(1013, "The server is busy; try again");
  }

  void on_message(std::string data, bool binary) override {
    std::uint64_t id = 0;
    {
      MutexLock lock(mu_);
      id = id_;
    }
    if (binary || data.size() > ctx_->live->collab_limits().max_message_bytes) {
      close(1009, "message too big");
      return;
    }
    if (id == 0) {
      deliver(std::make_shared<const std::string>(
          R"({"t":"error","code":"not_joined","message":"wait for the init frame"})"));
      return;
    }
    recheck();
    ctx_->live->collab_message(id, data);
  }

  void on_close() override {
    std::uint64_t id = 0;
    {
      MutexLock lock(mu_);
      closed_ = true;
      id = id_;
    }
    if (id) ctx_->live->collab_leave(id);
  }

  void deliver(std::shared_ptr<const std::string> frame) override {
    if (auto ws = ws_.lock()) ws->send(std::move(frame), false);
  }
  void close(std::uint16_t code, std::string reason) override {
    if (auto ws = ws_.lock()) ws->close(code, std::move(reason));
  }

  //! Checks the grant again now (a share or an account changed), also when
  //! this client never sends. Any thread; never blocks.
  void recheck_now() {
    {
      MutexLock lock(mu_);
      if (id_ == 0 || closed_) return;  // join() checks it anyway
      checked_ = {};
    }
    recheck();
  }

  //! The connections joined through share `id` ("": through any share).
  static std::vector<std::shared_ptr<CollabConnection>> open_shared(const std::string& id) {
    MutexLock lock(registry_mu_);
    std::vector<std::shared_ptr<CollabConnection>> out;
    for (auto& w : registry_)
      if (auto c = w.lock(); c && (id.empty() || c->share_ == id)) out.push_back(std::move(c));
    return out;
  }

 private:
  static void remember(const std::shared_ptr<CollabConnection>& c) {
    MutexLock lock(registry_mu_);
    std::erase_if(registry_, [](const auto& w) { return w.expired(); });
    registry_.push_back(c);
  }
  //! Access can change while the socket is open (a share revoked or turned
  //! into a viewer's, an account disabled): at most every kRecheck, while
  //! the client sends, the grant is checked again on the work queue; a
  //! change closes the connection (a reconnect gets the new rights).
  void recheck() {
    auto now = std::chrono::steady_clock::now();
    {
      MutexLock lock(mu_);
      if (checking_) {
        if (checked_ == std::chrono::steady_clock::time_point{}) again_ = true;
        return;
      }
      if (now - checked_ < kRecheck) return;
      checking_ = true;
      checked_ = now;
    }
    auto self = shared_from_this();
    bool queued = ctx_->work->post([self] {
      auto t = self->resolve_();
      bool was_editor = false;
      bool again = false;
      {
        MutexLock lock(self->mu_);
        self->checking_ = false;
        was_editor = self->editor_;
        again = std::exchange(self->again_, false);
      }
      if (!t.ok())
        self->close(4403, "access to this notebook ended");
      else if (t->editor != was_editor)
        self->close(4001, "your access changed; reconnect");
      else if (again)
        self->recheck_now();  // a change came while this check ran
    });
    if (!queued) {
      MutexLock lock(mu_);
      checking_ = false;
    }
  }

  void join() {
    auto target = resolve_();
    if (!target.ok()) {
      // 4000 + the HTTP status, as a close code the client can read.
      close(static_cast<std::uint16_t>(4000 + http::status_for(target.error())),
            target.error().message);
      return;
    }
    auto id = ctx_->live->collab_join(target->owner, target->path, shared_from_this(), user_,
                                      target->editor);
    if (!id.ok()) {
      close(static_cast<std::uint16_t>(4000 + http::status_for(id.error())), id.error().message);
      return;
    }
    bool leave = false;
    {
      MutexLock lock(mu_);
      id_ = id.value();
      leave = closed_;
      editor_ = target->editor;
      checked_ = std::chrono::steady_clock::now();
    }
    if (leave) ctx_->live->collab_leave(id.value());
  }

  std::shared_ptr<const Context> ctx_;
  std::string user_;
  Resolve resolve_;
  std::weak_ptr<http::WebSocket> ws_;
  Mutex mu_;
  std::uint64_t id_ GUARDED_BY(mu_) = 0;  // 0: not joined yet
  bool closed_ GUARDED_BY(mu_) = false;
  bool editor_ GUARDED_BY(mu_) = false;  // the rights it joined with
  bool checking_ GUARDED_BY(mu_) = false;
  bool again_ GUARDED_BY(mu_) = false;  // recheck_now() while checking
  std::chrono::steady_clock::time_point checked_ GUARDED_BY(mu_){};
  const std::string share_;
  static constexpr std::chrono::seconds kRecheck{5};
  static inline Mutex registry_mu_;
  static inline std::vector<std::weak_ptr<CollabConnection>> registry_ GUARDED_BY(registry_mu_);
};

}  // namespace

void recheck_collab_access(const std::string& share_id) {
  for (auto& c : CollabConnection::open_shared(share_id)) c->recheck_now();
}

void add_collab_routes(http::Router& r, std::shared_ptr<const Context> ctx) {
  if (!ctx->live || !ctx->drive) return;
  r.add_websocket("/api/skylab/collab/([\\s\\S]+)", [ctx](http::Request& req) {
    http::Upgrade up;
    std::string path = req.params[0];
    std::string owner = req.user.username;
    up.handler = std::make_shared<CollabConnection>(
        ctx, owner,
        [ctx, owner, path]() -> Result<SharedTarget> {
          auth::Identity me;
          me.username = owner;
          auto e = ctx->drive->get(me, path, drive::EntryType::kNotebook);
          if (!e.ok()) return e.error();
          return SharedTarget{owner, e->path, true};
        },
        std::string());
    return up;
  });
  r.add_websocket("/api/skylab/shared/([0-9a-f]{24,48})/collab(/[\\s\\S]*)?",
                  [ctx](http::Request& req) {
                    http::Upgrade up;
                    std::string id = req.params[0];
                    std::string sub = req.params.size() > 1 ? req.params[1] : std::string();
                    auto user = req.user;
                    up.handler = std::make_shared<CollabConnection>(
                        ctx, user.username,
                        [ctx, user, id, sub]() { return resolve_shared(*ctx, user, id, sub); }, id);
                    return up;
                  });
}

}  // namespace skylab::api
