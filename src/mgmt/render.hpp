// The management API's JSON for the broker's views (broker/views.hpp), in RabbitMQ's field
// names. Pure: views in, JSON out, on whatever worker answers the request.
#pragma once

#include <span>
#include <string_view>

#include "broker/message.hpp"
#include "broker/views.hpp"
#include "mgmt/definitions_json.hpp"
#include "mgmt/list_query.hpp"
#include "web/gateway_stats.hpp"

namespace warren::mgmt {

// What a list asked for besides its items: stats or not, and sample ranges (ms).
struct render_options {
  bool stats = true;  // false: disable_stats=true
  int64_t lengths_age = 0, lengths_incr = 0;
  int64_t msg_rates_age = 0, msg_rates_incr = 0;
  static render_options from(const list_query& q);
};

// {"rate": r}, with samples when the history and an age are given.
template <size_t S, size_t C>
json details(double rate, const broker::sample_history<S, C>* h, size_t series, int64_t age,
             int64_t incr) {
  json d{{"rate", rate}};
  if (h && age > 0) {
    json samples = json::array();
    double sum = 0;
    h->for_each_sample(series, age, incr, [&](int64_t t, uint64_t v) {
      samples.push_back({{"sample", v}, {"timestamp", t}});
      sum += double(v);
    });
    if (!samples.empty()) {
      const json& newest = samples.front();
      const json& oldest = samples.back();
      double span = double(newest["timestamp"].get<int64_t>() - oldest["timestamp"].get<int64_t>());
      double moved = newest["sample"].get<double>() - oldest["sample"].get<double>();
      d["avg_rate"] = span > 0 ? moved * 1000.0 / span : 0.0;
      d["avg"] = sum / double(samples.size());
    }
    d["samples"] = std::move(samples);
  }
  return d;
}

json queue_json(const broker::queue_view& q, std::string_view vhost, std::string_view node,
                const render_options& o);
json exchange_json(const broker::exchange_view& x, std::string_view vhost, const render_options& o);
json binding_json(const broker::binding_view& b, std::string_view vhost);
// RabbitMQ's properties_key: "~" for an empty key without arguments, the key
// percent-encoded otherwise; with arguments, "key~" and a hash of them.
std::string properties_key(const broker::binding_view& b);
json connection_json(const broker::connection_view& c, std::string_view node);
// `usage` is the vhost's side of the channel (unacked, consumers), null if unknown.
json channel_json(const broker::connection_view& c, const broker::channel_view& ch,
                  const broker::channel_usage* usage, std::string_view node);
std::string channel_name(const broker::connection_view& c, uint16_t number);
// `conn` and `ch` describe the consumer's channel, null if it is gone meanwhile.
json consumer_json(const broker::consumer_view& v, std::string_view vhost,
                   const broker::connection_view* conn, const broker::channel_view* ch,
                   std::string_view node);
json message_properties_json(const broker::message_properties& p);

// The value below which a fraction q (0..1) of a histogram's observations lie, estimated from its
// cumulative bucket counts as Prometheus's histogram_quantile does: linear within the bucket the
// rank falls in (from 0 for the first), the highest finite bound when it falls beyond them, 0
// without observations. `cumulative[i]` counts the observations <= bounds[i]; `count` all of them.
double histogram_quantile(double q, std::span<const double> bounds,
                          std::span<const uint64_t> cumulative, uint64_t count);
// GET /api/warren/gateway: the statistics with `delivered_details` ({"rate": ..., samples}) as
// events_delivered_details and the latency summed up (count, sum, p50 and p99 in ms).
json gateway_json(const web::gateway_stats& s, json delivered_details);

}  // namespace warren::mgmt
