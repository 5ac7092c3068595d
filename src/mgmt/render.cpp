// JSON for the management API's objects, field by field as RabbitMQ 3.10-3.13 names them.
// Never a JSON null where rabbitmqadmin prints a field (it crashes on one): a value that is not
// known is left out.
#include "mgmt/render.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <functional>

namespace warren::mgmt {

render_options render_options::from(const list_query& q) {
  render_options o;
  o.stats = !q.disable_stats;
  auto ms = [](const std::optional<int64_t>& s) { return s ? *s * 1000 : 0; };
  o.lengths_age = ms(q.lengths_age);
  o.lengths_incr = ms(q.lengths_incr);
  o.msg_rates_age = ms(q.msg_rates_age);
  o.msg_rates_incr = ms(q.msg_rates_incr);
  return o;
}

namespace {

// Warren's own field: a deduplicating exchange's or queue's window.
json dedup_json(const broker::dedup_view& d) {
  return {{"ids", d.ids}, {"capacity", d.capacity}, {"dropped", d.dropped}, {"memory", d.memory}};
}

}  // namespace

json queue_json(const broker::queue_view& q, std::string_view vhost, std::string_view node,
                const render_options& o) {
  using namespace broker;
  json j;
  j["name"] = q.name;
  j["vhost"] = vhost;
  j["type"] = "classic";
  j["durable"] = q.durable;
  j["auto_delete"] = q.auto_delete;
  j["exclusive"] = q.exclusive;
  j["arguments"] = to_json(q.arguments);
  if (q.dedup) j["deduplication"] = dedup_json(*q.dedup);
  j["node"] = std::string(node);
  j["warren_worker"] = q.worker;  // Warren's: the worker thread the queue runs on
  j["state"] = "running";
  j["policy"] = "";
  j["effective_policy_definition"] = json::object();
  if (!o.stats) {
    j["messages"] = q.ready + q.unacked;
    j["messages_ready"] = q.ready;
    j["messages_unacknowledged"] = q.unacked;
    return j;
  }
  const queue_history* h = q.history.get();
  auto len = [&](double rate, size_t s) {
    return details(rate, h, s, o.lengths_age, o.lengths_incr);
  };
  auto msg = [&](double rate, size_t s) {
    return details(rate, h, s, o.msg_rates_age, o.msg_rates_incr);
  };
  j["consumers"] = q.consumers;
  j["consumer_capacity"] = q.consumers ? 1.0 : 0.0;
  j["consumer_utilisation"] = q.consumers ? 1.0 : 0.0;
  j["memory"] = q.memory;
  j["messages"] = q.ready + q.unacked;
  j["messages_details"] = {{"rate", q.rates[qs_ready] + q.rates[qs_unacked]}};
  j["messages_ready"] = q.ready;
  j["messages_ready_details"] = len(q.rates[qs_ready], qs_ready);
  j["messages_unacknowledged"] = q.unacked;
  j["messages_unacknowledged_details"] = len(q.rates[qs_unacked], qs_unacked);
  j["messages_ram"] = q.ready - q.paged + q.unacked;
  j["messages_ready_ram"] = q.ready - q.paged;
  j["messages_unacknowledged_ram"] = q.unacked;
  j["messages_paged_out"] = q.paged;
  j["message_bytes"] = q.ready_bytes + q.unacked_bytes;
  j["message_bytes_ready"] = q.ready_bytes;
  j["message_bytes_unacknowledged"] = q.unacked_bytes;
  j["message_bytes_ram"] = q.ready_bytes + q.unacked_bytes;
  const auto& c = q.counters;
  j["message_stats"] = {
      {"publish", c.publish},
      {"publish_details", msg(q.rates[qs_publish], qs_publish)},
      {"deliver", c.deliver},
      {"deliver_no_ack", c.deliver_no_ack},
      {"get", c.get},
      {"get_no_ack", c.get_no_ack},
      {"get_empty", c.get_empty},
      {"deliver_get", c.deliver_get()},
      {"deliver_get_details", msg(q.rates[qs_deliver_get], qs_deliver_get)},
      {"redeliver", c.redeliver},
      {"redeliver_details", msg(q.rates[qs_redeliver], qs_redeliver)},
      {"ack", c.ack},
      {"ack_details", msg(q.rates[qs_ack], qs_ack)},
  };
  // head_message_timestamp stays out: RabbitMQ leaves it out when unknown, and Warren does not
  // keep it.
  return j;
}

json exchange_json(const broker::exchange_view& x, std::string_view vhost,
                   const render_options& o) {
  json j;
  j["name"] = x.name;
  j["vhost"] = vhost;
  j["type"] = x.type;
  j["durable"] = x.durable;
  j["auto_delete"] = x.auto_delete;
  j["internal"] = x.internal;
  j["arguments"] = to_json(x.arguments);
  j["user_who_performed_action"] = "rmq-internal";
  if (x.dedup) j["deduplication"] = dedup_json(*x.dedup);
  if (o.stats && (x.counters.publish_in || x.counters.publish_out))
    j["message_stats"] = {{"publish_in", x.counters.publish_in},
                          {"publish_in_details", {{"rate", x.rates[0]}}},
                          {"publish_out", x.counters.publish_out},
                          {"publish_out_details", {{"rate", x.rates[1]}}}};
  return j;
}

std::string properties_key(const broker::binding_view& b) {
  std::string key;
  if (b.routing_key.empty() && b.arguments.empty()) return "~";
  // Percent-encoded as RabbitMQ's quote_plus: unreserved bytes stay, a space becomes '+'.
  for (unsigned char c : b.routing_key) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~')
      key += char(c);
    else if (c == ' ')
      key += '+';
    else
      key += fmt::format("%{:02X}", c);
  }
  if (!b.arguments.empty()) {
    // RabbitMQ hashes the Erlang term (not reproducible here); clients treat the key as opaque
    // and send back what a listing gave them.
    size_t h = std::hash<std::string>{}(dump(to_json(b.arguments)));
    key += fmt::format("~{:08x}", uint32_t(h));
  }
  return key;
}

json binding_json(const broker::binding_view& b, std::string_view vhost) {
  return {{"source", b.source},
          {"vhost", vhost},
          {"destination", b.destination},
          {"destination_type", b.to_exchange ? "exchange" : "queue"},
          {"routing_key", b.routing_key},
          {"arguments", to_json(b.arguments)},
          {"properties_key", properties_key(b)}};
}

json connection_json(const broker::connection_view& c, std::string_view node) {
  json j;
  j["name"] = c.name;
  j["node"] = std::string(node);
  j["type"] = "network";
  j["protocol"] = c.protocol;
  j["warren_worker"] = c.worker;  // Warren's: the worker thread the connection runs on
  j["user"] = c.user;
  j["user_who_performed_action"] = c.user;
  j["vhost"] = c.vhost;
  j["state"] = c.state;
  j["host"] = c.host;
  j["port"] = c.port;
  j["peer_host"] = c.peer_host;
  j["peer_port"] = c.peer_port;
  // As RabbitMQ: null where a plain connection (or one without a client certificate) has none.
  auto or_null = [](const std::string& s) { return s.empty() ? json(nullptr) : json(s); };
  j["ssl"] = c.ssl;
  j["ssl_protocol"] = or_null(c.ssl_protocol);
  j["ssl_key_exchange"] = or_null(c.ssl_key_exchange);
  j["ssl_cipher"] = or_null(c.ssl_cipher);
  j["ssl_hash"] = or_null(c.ssl_hash);
  j["peer_cert_subject"] = or_null(c.peer_cert_subject);
  j["peer_cert_issuer"] = or_null(c.peer_cert_issuer);
  j["peer_cert_validity"] = or_null(c.peer_cert_validity);
  j["auth_mechanism"] = c.auth_mechanism;
  j["channels"] = c.channels.size();
  j["channel_max"] = c.channel_max;
  j["frame_max"] = c.frame_max;
  j["timeout"] = c.heartbeat;
  j["connected_at"] = c.connected_at;
  j["client_properties"] = to_json(c.client_properties);
  j["recv_oct"] = c.recv_oct;
  j["recv_oct_details"] = {{"rate", c.recv_rate}};
  j["send_oct"] = c.send_oct;
  j["send_oct_details"] = {{"rate", c.send_rate}};
  j["recv_cnt"] = c.recv_cnt;
  j["send_cnt"] = c.send_cnt;
  j["send_pend"] = c.send_pend;
  return j;
}

std::string channel_name(const broker::connection_view& c, uint16_t number) {
  return fmt::format("{} ({})", c.name, number);
}

json channel_json(const broker::connection_view& c, const broker::channel_view& ch,
                  const broker::channel_usage* usage, std::string_view node) {
  json j;
  j["name"] = channel_name(c, ch.number);
  j["number"] = ch.number;
  j["node"] = std::string(node);
  j["user"] = c.user;
  j["user_who_performed_action"] = c.user;
  j["vhost"] = c.vhost;
  j["connection_details"] = {
      {"name", c.name}, {"peer_host", c.peer_host}, {"peer_port", c.peer_port}};
  j["state"] = ch.closing ? "closing" : ch.flow_blocked ? "flow" : "running";
  j["confirm"] = ch.confirm;
  j["transactional"] = ch.transactional;
  j["prefetch_count"] = ch.prefetch;
  j["global_prefetch_count"] = usage ? usage->global_prefetch : 0;
  j["consumer_count"] = usage ? usage->consumers : 0;
  j["messages_unacknowledged"] = usage ? usage->unacked : 0;
  j["messages_unconfirmed"] = ch.unconfirmed;
  j["messages_uncommitted"] = ch.uncommitted;
  j["acks_uncommitted"] = 0;
  auto rate = [](double r) { return json{{"rate", r}}; };
  j["message_stats"] = {{"publish", ch.publish},
                        {"publish_details", rate(ch.rates[0])},
                        {"confirm", ch.confirmed},
                        {"confirm_details", rate(ch.rates[1])},
                        {"return_unroutable", ch.returned},
                        {"return_unroutable_details", rate(ch.rates[2])},
                        {"deliver_get", ch.delivered},
                        {"deliver_get_details", rate(ch.rates[3])},
                        {"ack", ch.acked},
                        {"ack_details", rate(ch.rates[4])}};
  return j;
}

json consumer_json(const broker::consumer_view& v, std::string_view vhost,
                   const broker::connection_view* conn, const broker::channel_view* ch,
                   std::string_view node) {
  json j;
  j["consumer_tag"] = v.tag;
  j["queue"] = {{"name", v.queue}, {"vhost", vhost}};
  j["active"] = v.active;
  j["activity_status"] = v.active ? "up" : "waiting";
  j["ack_required"] = v.ack_required;
  j["exclusive"] = v.exclusive;
  j["prefetch_count"] = v.prefetch;
  j["arguments"] = to_json(v.arguments);
  j["consumer_timeout"] = 1800000;
  if (conn && ch)
    j["channel_details"] = {{"name", channel_name(*conn, ch->number)},
                            {"number", ch->number},
                            {"connection_name", conn->name},
                            {"peer_host", conn->peer_host},
                            {"peer_port", conn->peer_port},
                            {"user", conn->user},
                            {"node", std::string(node)}};
  else
    j["channel_details"] = json::object();
  return j;
}

json message_properties_json(const broker::message_properties& p) {
  json j = json::object();
  auto put = [&](const char* k, const auto& v) {
    if (v) j[k] = *v;
  };
  put("content_type", p.content_type);
  put("content_encoding", p.content_encoding);
  if (p.headers) j["headers"] = to_json(*p.headers);
  put("delivery_mode", p.delivery_mode);
  put("priority", p.priority);
  put("correlation_id", p.correlation_id);
  put("reply_to", p.reply_to);
  put("expiration", p.expiration);
  put("message_id", p.message_id);
  put("timestamp", p.timestamp);
  put("type", p.type);
  put("user_id", p.user_id);
  put("app_id", p.app_id);
  put("cluster_id", p.cluster_id);
  return j;
}

double histogram_quantile(double q, std::span<const double> bounds,
                          std::span<const uint64_t> cumulative, uint64_t count) {
  if (count == 0 || bounds.empty()) return 0;
  double rank = std::clamp(q, 0.0, 1.0) * double(count);
  size_t i = 0;
  while (i < bounds.size() && double(cumulative[i]) < rank) ++i;
  if (i == bounds.size()) return bounds.back();  // in the +Inf bucket
  double lower = i == 0 ? 0.0 : bounds[i - 1];
  uint64_t below = i == 0 ? 0 : cumulative[i - 1];
  uint64_t in = cumulative[i] - below;
  if (in == 0) return bounds[i];
  return lower + (bounds[i] - lower) * (rank - double(below)) / double(in);
}

json gateway_json(const web::gateway_stats& s, json delivered_details) {
  auto ms = [&s](double q) {
    return 1000.0 * histogram_quantile(q, s.latency_bounds, s.latency_buckets, s.latency_count);
  };
  return {{"connections",
           {{"websocket", s.websocket},
            {"sse", s.sse},
            {"stream", s.stream},
            {"longpoll", s.longpoll}}},
          {"online_users", s.online_users},
          {"inboxes", s.inboxes},
          {"held_events", s.held_events},
          {"rooms", s.rooms},
          {"events_delivered", s.events_delivered},
          {"events_delivered_details", std::move(delivered_details)},
          {"replays", s.replays},
          {"resets", s.resets},
          {"slow_readers_cut", s.slow_readers_cut},
          {"delivery_latency",
           {{"count", s.latency_count},
            {"sum_seconds", s.latency_sum_seconds},
            {"p50_ms", ms(0.5)},
            {"p99_ms", ms(0.99)}}}};
}

}  // namespace warren::mgmt
