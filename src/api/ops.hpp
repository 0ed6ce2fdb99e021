// What operators watch: GET /api/health (public) and GET /metrics
// (Prometheus text format; admin token or [metrics] token).
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "api/api.hpp"

namespace skylab::runtime {
class GpuAllocator;
}

namespace skylab::api {

struct OpsOptions {
  std::string admin_token;    //!< accepted on /metrics ("" none)
  std::string metrics_token;  //!< [metrics] token, also accepted ("" none)
  std::string database;       //!< the SQLite file /api/health reads (skylab.db)
  //! /api/health answers 503 when its checks take longer than this.
  std::chrono::milliseconds health_timeout{3000};
  std::shared_ptr<runtime::GpuAllocator> gpus;  //!< null: no GPU gauges
};

//! Adds GET /api/health and GET /metrics to `r`, and registers the scrape-time
//! gauges (runtimes by type, pending, GPUs, Drive bytes per user). Call once,
//! before serving. The checks and the scrape run on ctx->work, never on the
//! I/O thread.
void add_ops_routes(http::Router& r, std::shared_ptr<const Context> ctx, OpsOptions options);

}  // namespace skylab::api
