// The Prometheus listener's router (--prometheus-port, RabbitMQ's 15692): /metrics,
// /metrics/per-object and /metrics/detailed, without authentication, as rabbitmq_prometheus
// serves them. A scrape gathers a metrics_snapshot across the workers by message passing, the way
// the management API gathers its views, then renders it (prometheus_metrics.hpp) on the worker
// of the scrape's connection.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "http/http_handler.hpp"
#include "mgmt/api.hpp"
#include "mgmt/prometheus_metrics.hpp"

namespace warren::mgmt {

inline constexpr std::string_view prometheus_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

// Gathers what `r` needs: each vhost's part on its home worker, each worker's connections on
// that worker, the gateway's statistics if the node has a gateway; then calls done(snapshot) on
// `here`, which must be a worker of api.pool (the caller's). Never waits on a worker.
void gather_metrics(const api_context& api, const metrics_request& r, net::worker& here,
                    std::function<void(metrics_snapshot)> done);

// Whether an Accept-Encoding header value takes gzip (Prometheus asks for it), and the gzip
// (RFC 1952) of a body; nullopt if zlib fails.
bool accepts_gzip(std::string_view accept_encoding);
std::optional<std::string> gzip(std::string_view body);

// `api` must outlive the router and every scrape in flight.
http::router make_prometheus_router(const api_context& api);

}  // namespace warren::mgmt
