// Queues, exchanges and bindings: lists, declare, delete, purge, publish and get. Each change
// runs on the vhost's home worker through the vhost's ordinary methods, as an AMQP client's
// would, and its answer is posted back to the request's worker.
//
// Changes are checked against the user's permissions as RabbitMQ's management checks them: it
// runs them on an internal channel as the user, after finding the object (404 first):
//
// | request                          | checks                                | refused          |
// | -------------------------------- | ------------------------------------- | ---------------- |
// | PUT queue, DELETE queue          | queue.declare's, configure            | 401 "Access      |
// | DELETE queue contents (purge)    | read on the queue                     | refused."        |
// | PUT exchange, DELETE exchange    | exchange.declare's, configure         | (direct_request) |
// | POST/DELETE binding              | write on the destination, read on the |                  |
// |                                  | source, topic read                    |                  |
// | POST queue get                   | read on the queue                     | 401, the AMQP    |
// |                                  |                                       | reply text       |
// | POST exchange publish            | write on the exchange, topic write    | 400 "403 ACCESS_ |
// |                                  |                                       | REFUSED - ..."   |
//
// Requests over the control socket (warrenctl) are not checked, as rabbitmqctl's are not.
#include <fmt/format.h>

// GCC 12 sees a std::variant moved inside std::partial_sort's heap as maybe uninitialized
// (a known false positive of -Wmaybe-uninitialized with variants); clang does not.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "auth/password.hpp"
#include "http/url.hpp"
#include "mgmt/resources.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

// "amq.default" in a path is the default exchange "" (as RabbitMQ's API names it).
std::string exchange_name(const std::string& s) {
  return s == "amq.default" ? std::string() : s;
}

// ?name=true in the request's query.
bool query_flag(std::string_view target, std::string_view name) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return false;
  std::string_view rest = target.substr(q + 1);
  while (!rest.empty()) {
    size_t amp = rest.find('&');
    std::string_view kv = rest.substr(0, amp);
    if (kv == fmt::format("{}=true", name)) return true;
    if (amp == std::string_view::npos) break;
    rest.remove_prefix(amp + 1);
  }
  return false;
}

// A broker refusal as the API answers it: 404 for what does not exist, else 400 with the text.
void refuse(const call_ptr& c, const broker::error& e) {
  if (e.code == broker::error_code::not_found)
    return c->error(bhttp::status::not_found, "not_found", e.text);
  c->bad_request(e.text);
}

// The user's permissions refused a change that RabbitMQ's management makes with
// rabbit_mgmt_util:direct_request: it answers 401 without the reason.
struct denied {};
void refuse_denied(const call_ptr& c) {
  c->error(bhttp::status::unauthorized, "not_authorised", "Access refused.");
}

// The answer to a declare or delete run on the vhost's worker: refused by permissions, refused
// by the vhost, or done (`yes` when the flag is true, else `no`).
using change_result = std::variant<bool, broker::error, denied>;
void answer_change(const call_ptr& c, const change_result& r, void (call::*yes)(),
                   void (call::*no)()) {
  if (std::holds_alternative<denied>(r)) return refuse_denied(c);
  if (auto* e = std::get_if<broker::error>(&r)) return refuse(c, *e);
  (c.get()->*(std::get<bool>(r) ? yes : no))();
}

// Whether the payload can be shown as text (encoding "auto"); overlong forms are not checked.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char b = s[i];
    size_t n = b < 0x80 ? 0 : (b >> 5) == 0x6 ? 1 : (b >> 4) == 0xE ? 2 : (b >> 3) == 0x1E ? 3 : 4;
    if (n == 4 || i + n >= s.size() + (n == 0 ? 1 : 0)) return false;
    for (size_t k = 1; k <= n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += n + 1;
  }
  return true;
}

struct vhost_queue {
  std::string vhost;
  broker::queue_view q;
  std::string node;  // another node's queue (its record in etcd); empty: this node's
};

// In a cluster, the queues other nodes hold, as their records say (no statistics: those stay on
// their node).
std::vector<vhost_queue> remote_queues(const call_ptr& c, const std::vector<broker::vhost*>& vs) {
  std::vector<vhost_queue> out;
  if (!c->api.remote_queues) return out;
  for (broker::vhost* v : vs)
    for (auto& d : c->api.remote_queues(&v->name())) {
      broker::queue_view q;
      q.name = d.name;
      q.durable = d.durable;
      q.auto_delete = d.auto_delete;
      q.arguments = std::move(d.arguments);
      out.push_back({d.vhost, std::move(q), d.node});
    }
  return out;
}

std::optional<sort_value> queue_sort_key(const vhost_queue& v, std::string_view key) {
  const auto& q = v.q;
  if (key == "messages") return double(q.ready + q.unacked);
  if (key == "messages_ready") return double(q.ready);
  if (key == "messages_unacknowledged") return double(q.unacked);
  if (key == "consumers") return double(q.consumers);
  if (key == "memory") return double(q.memory);
  if (key == "message_bytes") return double(q.ready_bytes + q.unacked_bytes);
  return std::nullopt;
}

bool wants_history(const list_query& q) {
  return q.lengths_age || q.msg_rates_age;
}

}  // namespace

// ----------------------------------------------------------------------------- queues

namespace {

// A page in the default order (vhost, then name: each vhost's own order), or by name within one
// vhost, is cut where the queues live: each home worker walks its queues' names and builds views
// for its share of the page only. A dashboard polling the first page of 100 000 queues then costs
// a walk over names instead of a copy of every queue (docs/benchmarks.md, "management at scale").
// Other sorts need every queue's key and take the general path.
bool page_in_stored_order(const list_query& q, size_t vhosts) {
  if (!q.page || q.sort_reverse) return false;
  return q.sort.empty() || q.sort == "vhost" || (q.sort == "name" && vhosts == 1);
}

void list_queues_page(const call_ptr& c, std::vector<broker::vhost*> vs, bool history) {
  auto filter_or = detail::name_filter::make(c->query);
  if (auto* e = std::get_if<query_error>(&filter_or)) return c->bad_request_error(*e);
  auto filter = std::make_shared<const detail::name_filter>(
      std::move(std::get<detail::name_filter>(filter_or)));
  std::function<bool(std::string_view)> keep;
  if (filter->active()) keep = [filter](std::string_view n) { return filter->matches(n); };
  std::sort(vs.begin(), vs.end(),
            [](broker::vhost* a, broker::vhost* b) { return a->name() < b->name(); });
  struct counts {
    size_t total = 0, matched = 0;
  };
  over_vhosts<counts>(
      c, vs,
      [keep](broker::vhost& v) {
        return counts{v.queue_count(), v.count_queues(keep)};
      },
      [c, vs, keep, history](std::vector<counts> n) {
        size_t total = 0, filtered = 0;
        for (const auto& x : n) {
          total += x.total;
          filtered += x.matched;
        }
        auto w = detail::window_for(c->query, filtered);
        if (auto* e = std::get_if<query_error>(&w)) return c->bad_request_error(*e);
        auto win = std::get<detail::page_window>(w);
        // Each vhost's share of the window: [skip, skip + count) of its matching queues.
        std::vector<broker::vhost*> parts;
        std::vector<std::pair<size_t, size_t>> cuts;
        size_t start = 0;
        for (size_t i = 0; i < vs.size(); ++i) {
          size_t lo = std::max(win.offset, start);
          size_t hi = std::min(win.offset + win.count, start + n[i].matched);
          if (lo < hi) {
            parts.push_back(vs[i]);
            cuts.emplace_back(lo - start, hi - lo);
          }
          start += n[i].matched;
        }
        over_vhosts<std::vector<broker::queue_view>>(
            c, parts,
            [parts, cuts, keep, history](broker::vhost& v) {
              size_t i = size_t(std::find(parts.begin(), parts.end(), &v) - parts.begin());
              return v.view_queues_window(keep, cuts[i].first, cuts[i].second, history);
            },
            [c, parts, total, filtered](std::vector<std::vector<broker::queue_view>> got) {
              auto o = render_options::from(c->query);
              json items = json::array();
              for (size_t i = 0; i < got.size(); ++i)
                for (const auto& q : got[i]) {
                  json object = queue_json(q, parts[i]->name(), c->node(), o);
                  items.push_back(c->query.columns.empty()
                                      ? std::move(object)
                                      : keep_columns(object, c->query.columns));
                }
              c->json_reply(detail::paged(c->query, total, filtered, std::move(items)));
            });
      });
}

}  // namespace

void list_queues(const call_ptr& c, bool one_vhost) {
  std::vector<broker::vhost*> vs;
  if (!c->vhosts_arg(one_vhost, vs)) return;
  bool history = wants_history(c->query);
  // Other nodes' queues are not in the vhosts' order, nor are a sharded vhost's: the general path.
  auto remote = std::make_shared<std::vector<vhost_queue>>(remote_queues(c, vs));
  bool sharded = std::any_of(vs.begin(), vs.end(), [](auto* v) { return v->shard_count() > 1; });
  if (!sharded && remote->empty() && page_in_stored_order(c->query, vs.size()))
    return list_queues_page(c, std::move(vs), history);
  over_vhost_shards<std::vector<broker::queue_view>>(
      c, vs, [history](broker::vhost& v) { return v.view_queues({}, history); },
      [](auto& to, auto&& part) {
        append_part(to, std::move(part));
        std::sort(to.begin(), to.end(),
                  [](const auto& a, const auto& b) { return a.name < b.name; });
      },
      [c, vs, remote](std::vector<std::vector<broker::queue_view>> parts) {
        std::vector<vhost_queue> all;
        for (size_t i = 0; i < parts.size(); ++i)
          for (auto& q : parts[i]) all.push_back({vs[i]->name(), std::move(q), {}});
        for (auto& r : *remote) all.push_back(std::move(r));
        auto o = render_options::from(c->query);
        list_source<vhost_queue> src;
        src.name = [](const vhost_queue& v) -> std::string_view { return v.q.name; };
        src.vhost = [](const vhost_queue& v) -> std::string_view { return v.vhost; };
        src.sort_key = [](const vhost_queue& v, std::string_view k) -> std::optional<sort_value> {
          return queue_sort_key(v, k);
        };
        std::string node = c->node();
        src.render = [o, node](const vhost_queue& v) {
          return queue_json(v.q, v.vhost, v.node.empty() ? node : v.node, o);
        };
        c->list(std::move(all), src);
      });
}

void get_queue(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  struct one {
    std::vector<broker::queue_view> q;
    std::vector<broker::consumer_view> consumers;
  };
  std::string name = c->args[1];
  over_vhost_shards<one>(
      c, {v},
      [name](broker::vhost& v) {
        return one{v.view_queues(name, true), v.view_consumers(name)};
      },
      [](one& to, one&& part) {
        append_part(to.q, std::move(part.q));
        append_part(to.consumers, std::move(part.consumers));
      },
      [c, v](std::vector<one> r) {
        if (r[0].q.empty()) {
          for (auto& x : remote_queues(c, {v}))
            if (x.q.name == c->args[1]) {
              json j = queue_json(x.q, x.vhost, x.node, render_options::from(c->query));
              return c->json_reply(c->query.columns.empty() ? j
                                                            : keep_columns(j, c->query.columns));
            }
          return c->not_found();
        }
        auto o = render_options::from(c->query);
        if (!c->query.lengths_age) o.lengths_age = o.lengths_incr = 0;
        json j = queue_json(r[0].q[0], v->name(), c->node(), o);
        auto consumers = std::move(r[0].consumers);
        all_connections(c, [c, j = std::move(j), consumers = std::move(consumers),
                            vname = v->name()](std::vector<broker::connection_view> conns) mutable {
          json details = json::array();
          for (const auto& cv : consumers) {
            const broker::connection_view* conn = nullptr;
            const broker::channel_view* ch = nullptr;
            for (const auto& k : conns)
              for (const auto& x : k.channels)
                if (x.id == cv.channel_id) conn = &k, ch = &x;
            details.push_back(consumer_json(cv, vname, conn, ch, c->node()));
          }
          j["consumer_details"] = std::move(details);
          j["incoming"] = json::array();
          j["deliveries"] = json::array();
          j["backing_queue_status"] = {{"mode", "default"}};
          c->json_reply(c->query.columns.empty() ? j : keep_columns(j, c->query.columns));
        });
      });
}

void put_queue(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  auto body = c->body_object();
  if (!body) return;
  broker::queue_declare_request r;
  r.name = c->args[1];
  r.durable = json_bool(*body, "durable").value_or(true);
  r.auto_delete = json_bool(*body, "auto_delete").value_or(false);
  if (auto a = body->find("arguments"); a != body->end() && !a->is_null()) {
    std::string why;
    auto t = table_from_json(*a, why);
    if (!t) return c->bad_request(why);
    r.arguments = std::move(*t);
  }
  using result = change_result;  // created?
  over_vhosts<result>(
      c, {v},
      [r, checks = c->checks_in(*v)](broker::vhost& v) -> result {
        bool existed = v.inspect_queue(r.name) != nullptr;
        auto request = r;
        std::optional<std::string_view> dlx =
            common::table_string(request.arguments, "x-dead-letter-exchange");
        bool refused = false;
        request.authorize = [&](const std::string& name, bool exists) {
          auto e = checks.declare_queue(name, exists, dlx, v);
          refused = e.has_value();
          return e;
        };
        auto out = v.declare_queue(request);
        if (refused) return denied{};
        if (auto* e = std::get_if<broker::error>(&out)) return *e;
        return !existed;
      },
      [c](std::vector<result> res) {
        answer_change(c, res[0], &call::created, &call::no_content);
      });
}

void delete_queue(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  std::string name = c->args[1];
  bool if_empty = query_flag(c->req.target(), "if-empty");
  bool if_unused = query_flag(c->req.target(), "if-unused");
  using result = change_result;  // existed?
  over_vhosts<result>(
      c, {&v->shard_at(v->locate_queue(name))},
      [name, if_empty, if_unused, checks = c->checks_in(*v)](broker::vhost& v) -> result {
        const broker::queue* q = v.inspect_queue(name);
        if (!q) return false;
        if (checks.resource(auth::perm::configure, auth::resource::queue, name, v)) return denied{};
        auto out = v.delete_queue(name, if_unused, if_empty, q->settings().exclusive_owner);
        if (auto* e = std::get_if<broker::error>(&out)) return *e;
        return true;
      },
      [c](std::vector<result> res) {
        answer_change(c, res[0], &call::no_content, &call::not_found);
      });
}

void purge_queue(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  std::string name = c->args[1];
  using result = change_result;
  over_vhosts<result>(
      c, {&v->shard_at(v->locate_queue(name))},
      [name, checks = c->checks_in(*v)](broker::vhost& v) -> result {
        const broker::queue* q = v.inspect_queue(name);
        if (!q) return false;
        if (checks.resource(auth::perm::read, auth::resource::queue, name, v)) return denied{};
        auto out = v.purge_queue(name, q->settings().exclusive_owner);
        if (auto* e = std::get_if<broker::error>(&out)) return *e;
        return true;
      },
      [c](std::vector<result> res) {
        answer_change(c, res[0], &call::no_content, &call::not_found);
      });
}

void get_messages(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  auto body = c->body_object();
  if (!body) return;
  auto count = json_int(*body, "count");
  if (!count || *count < 0) return c->bad_request("count: a non-negative integer is required");
  std::string ackmode = json_text(*body, "ackmode");
  using broker::vhost;
  vhost::fetch_mode mode;
  if (ackmode == "ack_requeue_true")
    mode = vhost::fetch_mode::ack_requeue_true;
  else if (ackmode == "ack_requeue_false")
    mode = vhost::fetch_mode::ack_requeue_false;
  else if (ackmode == "reject_requeue_true")
    mode = vhost::fetch_mode::reject_requeue_true;
  else if (ackmode == "reject_requeue_false")
    mode = vhost::fetch_mode::reject_requeue_false;
  else
    return c->bad_request(fmt::format("ackmode: unknown mode '{}'", ackmode));
  std::string encoding = json_text(*body, "encoding", "auto");
  if (encoding != "auto" && encoding != "base64")
    return c->bad_request(fmt::format("encoding: unknown encoding '{}'", encoding));
  std::optional<int64_t> truncate = json_int(*body, "truncate");
  std::string name = c->args[1];
  using result = std::variant<std::vector<broker::get_ok>, broker::error>;
  over_vhosts<result>(
      c, {&v->shard_at(v->locate_queue(name))},
      [name, n = size_t(*count), mode, checks = c->checks_in(*v)](broker::vhost& v) -> result {
        // Found first (404), then basic.get's read check on RabbitMQ's internal channel.
        if (v.inspect_queue(name))
          if (auto e = checks.resource(auth::perm::read, auth::resource::queue, name, v)) return *e;
        return v.fetch(name, n, mode);
      },
      [c, encoding, truncate](std::vector<result> res) {
        if (auto* e = std::get_if<broker::error>(&res[0])) {
          // with_channel answers a channel closed with 403 as 401, with the reply text.
          if (e->code == broker::error_code::access_refused)
            return c->error(bhttp::status::unauthorized, "not_authorised",
                            "ACCESS_REFUSED - " + e->text);
          return refuse(c, *e);
        }
        json out = json::array();
        for (const auto& g : std::get<std::vector<broker::get_ok>>(res[0])) {
          const broker::message& m = *g.msg;
          std::string_view payload = m.body;
          if (truncate && *truncate >= 0 && size_t(*truncate) < payload.size())
            payload = payload.substr(0, size_t(*truncate));
          bool text = encoding == "auto" && valid_utf8(payload);
          out.push_back({{"payload_bytes", m.body.size()},
                         {"redelivered", g.redelivered},
                         {"exchange", m.exchange},
                         {"routing_key", m.routing_key},
                         {"message_count", g.message_count},
                         {"properties", message_properties_json(m.properties)},
                         {"payload", text ? std::string(payload) : auth::base64_encode(payload)},
                         {"payload_encoding", text ? "string" : "base64"}});
        }
        c->json_reply(out);
      });
}

// ----------------------------------------------------------------------------- exchanges

namespace {
struct vhost_exchange {
  std::string vhost;
  broker::exchange_view x;
};
}  // namespace

void list_exchanges(const call_ptr& c, bool one_vhost) {
  std::vector<broker::vhost*> vs;
  if (!c->vhosts_arg(one_vhost, vs)) return;
  over_vhosts<std::vector<broker::exchange_view>>(
      c, vs, [](broker::vhost& v) { return v.view_exchanges(); },
      [c, vs](std::vector<std::vector<broker::exchange_view>> parts) {
        std::vector<vhost_exchange> all;
        for (size_t i = 0; i < parts.size(); ++i)
          for (auto& x : parts[i]) all.push_back({vs[i]->name(), std::move(x)});
        auto o = render_options::from(c->query);
        list_source<vhost_exchange> src;
        src.name = [](const vhost_exchange& v) -> std::string_view { return v.x.name; };
        src.vhost = [](const vhost_exchange& v) -> std::string_view { return v.vhost; };
        src.sort_key = [](const vhost_exchange& v,
                          std::string_view k) -> std::optional<sort_value> {
          if (k == "type") return v.x.type;
          return std::nullopt;
        };
        src.render = [o](const vhost_exchange& v) { return exchange_json(v.x, v.vhost, o); };
        c->list(std::move(all), src);
      });
}

void get_exchange(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  std::string name = exchange_name(c->args[1]);
  over_vhosts<std::optional<broker::exchange_view>>(
      c, {v}, [name](broker::vhost& v) { return v.view_exchange(name); },
      [c, v](std::vector<std::optional<broker::exchange_view>> r) {
        if (!r[0]) return c->not_found();
        json j = exchange_json(*r[0], v->name(), render_options::from(c->query));
        c->json_reply(c->query.columns.empty() ? j : keep_columns(j, c->query.columns));
      });
}

void put_exchange(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  auto body = c->body_object();
  if (!body) return;
  broker::exchange_settings s;
  s.name = exchange_name(c->args[1]);
  s.type = json_text(*body, "type");
  if (s.type.empty()) return c->bad_request("type: an exchange type is required");
  s.durable = json_bool(*body, "durable").value_or(true);
  s.auto_delete = json_bool(*body, "auto_delete").value_or(false);
  s.internal = json_bool(*body, "internal").value_or(false);
  if (auto a = body->find("arguments"); a != body->end() && !a->is_null()) {
    std::string why;
    auto t = table_from_json(*a, why);
    if (!t) return c->bad_request(why);
    s.arguments = std::move(*t);
  }
  if (s.name.empty() || s.name.rfind("amq.", 0) == 0)
    return c->error(bhttp::status::forbidden, "access_refused",
                    fmt::format("exchange name '{}' contains reserved prefix 'amq.*'", s.name));
  using result = change_result;
  over_vhosts<result>(
      c, {v},
      [s, checks = c->checks_in(*v)](broker::vhost& v) -> result {
        bool existed = v.has_exchange(s.name);
        // exchange.declare's checks (the type first, as RabbitMQ's check_type).
        if (broker::is_known_exchange_type(s.type)) {
          if (checks.resource(auth::perm::configure, auth::resource::exchange, s.name, v))
            return denied{};
          if (auto ae = common::table_string(s.arguments, "alternate-exchange"); ae && !existed)
            if (checks.new_exchange_alternate(s.name, *ae, v)) return denied{};
        }
        if (auto e = v.declare_exchange(s, false)) return *e;
        return !existed;
      },
      [c](std::vector<result> res) {
        answer_change(c, res[0], &call::created, &call::no_content);
      });
}

void delete_exchange(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  std::string name = exchange_name(c->args[1]);
  if (name.empty() || name.rfind("amq.", 0) == 0)
    return c->error(bhttp::status::forbidden, "access_refused",
                    fmt::format("cannot delete exchange '{}': it is built in", name));
  bool if_unused = query_flag(c->req.target(), "if-unused");
  using result = change_result;
  over_vhosts<result>(
      c, {v},
      [name, if_unused, checks = c->checks_in(*v)](broker::vhost& v) -> result {
        if (!v.has_exchange(name)) return false;
        if (checks.resource(auth::perm::configure, auth::resource::exchange, name, v))
          return denied{};
        if (auto e = v.delete_exchange(name, if_unused)) return *e;
        return true;
      },
      [c](std::vector<result> res) {
        answer_change(c, res[0], &call::no_content, &call::not_found);
      });
}

void publish_message(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  auto body = c->body_object();
  if (!body) return;
  auto m = std::make_shared<broker::message>();
  m->exchange = exchange_name(c->args[1]);
  m->routing_key = json_text(*body, "routing_key");
  std::string encoding = json_text(*body, "payload_encoding", "string");
  std::string payload = json_text(*body, "payload");
  if (encoding == "base64") {
    if (!auth::base64_decode(payload, m->body)) return c->bad_request("payload: not base64");
  } else if (encoding == "string") {
    m->body = std::move(payload);
  } else {
    return c->bad_request(fmt::format("payload_encoding: unknown encoding '{}'", encoding));
  }
  if (auto p = body->find("properties"); p != body->end() && p->is_object()) {
    auto& props = m->properties;
    auto text = [&](const char* k, std::optional<std::string>& out) {
      if (auto it = p->find(k); it != p->end() && it->is_string()) out = it->get<std::string>();
    };
    text("content_type", props.content_type);
    text("content_encoding", props.content_encoding);
    text("correlation_id", props.correlation_id);
    text("reply_to", props.reply_to);
    text("expiration", props.expiration);
    text("message_id", props.message_id);
    text("type", props.type);
    text("user_id", props.user_id);
    text("app_id", props.app_id);
    text("cluster_id", props.cluster_id);
    if (auto d = json_int(*p, "delivery_mode")) props.delivery_mode = uint8_t(*d);
    if (auto d = json_int(*p, "priority")) props.priority = uint8_t(*d);
    if (auto d = json_int(*p, "timestamp")) props.timestamp = uint64_t(*d);
    if (auto h = p->find("headers"); h != p->end() && h->is_object()) {
      std::string why;
      auto t = table_from_json(*h, why);
      if (!t) return c->bad_request(why);
      props.headers = std::move(*t);
    }
    if (props.expiration) {
      int64_t ms = 0;
      if (!broker::parse_expiration(*props.expiration, ms))
        return c->bad_request(fmt::format("invalid expiration '{}'", *props.expiration));
      m->ttl_ms = ms;
    }
    if (props.user_id && *props.user_id != c->user->name)
      return c->bad_request(
          fmt::format("user_id property set to '{}' but authenticated user was '{}'",
                      *props.user_id, c->user->name));
  }
  using result = std::variant<broker::publish_outcome, broker::error>;
  over_vhosts<result>(
      c, {v},
      [m = broker::message_ptr(std::move(m)),
       checks = c->checks_in(*v)](broker::vhost& v) -> result {
        // Found first (404), then basic.publish's checks on RabbitMQ's internal channel.
        if (v.has_exchange(m->exchange)) {
          if (auto e = checks.resource(auth::perm::write, auth::resource::exchange, m->exchange, v))
            return *e;
          if (auto e = checks.topic(auth::perm::write, m->exchange, m->routing_key, v)) return *e;
        }
        return v.publish(m);
      },
      [c](std::vector<result> res) {
        // RabbitMQ publishes on an internal channel and reports that channel's error as a 400.
        if (auto* e = std::get_if<broker::error>(&res[0]))
          return c->bad_request(fmt::format(
              "{} {} - {}", int(e->code),
              e->code == broker::error_code::not_found ? "NOT_FOUND" : "ACCESS_REFUSED", e->text));
        c->json_reply({{"routed", std::get<broker::publish_outcome>(res[0]) ==
                                      broker::publish_outcome::routed}});
      });
}

// ----------------------------------------------------------------------------- bindings

namespace {

struct vhost_binding {
  std::string vhost;
  broker::binding_view b;
};

// queue.bind and exchange.bind's checks (also for unbinding): write on the destination, read on
// the source, and the routing key against a topic permission on the source.
broker::maybe_error binding_checks(const broker::access_checks& checks,
                                   const broker::binding_view& b, const broker::vhost& v) {
  using auth::perm, auth::resource;
  auto dest_kind = b.to_exchange ? resource::exchange : resource::queue;
  if (auto e = checks.resource(perm::write, dest_kind, b.destination, v)) return e;
  if (auto e = checks.resource(perm::read, resource::exchange, b.source, v)) return e;
  return checks.topic(perm::read, b.source, b.routing_key, v);
}

// Bindings of the vhosts, kept by `keep`, as a list.
void binding_list(const call_ptr& c, std::vector<broker::vhost*> vs,
                  std::function<bool(const broker::binding_view&)> keep) {
  over_vhosts<std::vector<broker::binding_view>>(
      c, vs, [](broker::vhost& v) { return v.view_bindings(); },
      [c, vs, keep](std::vector<std::vector<broker::binding_view>> parts) {
        std::vector<vhost_binding> all;
        for (size_t i = 0; i < parts.size(); ++i)
          for (auto& b : parts[i])
            if (!keep || keep(b)) all.push_back({vs[i]->name(), std::move(b)});
        // In a cluster, those of other nodes' queues too: the default exchange's, then the rest.
        for (broker::vhost* v : vs) {
          const std::string& vh = v->name();
          std::vector<broker::binding_view> remote;
          if (c->api.remote_queues)
            for (const auto& q : c->api.remote_queues(&vh))
              remote.push_back({"", q.name, false, q.name, {}});
          if (c->api.remote_bindings)
            for (auto& b : c->api.remote_bindings(&vh))
              remote.push_back({std::move(b.source), std::move(b.destination), !b.to_queue,
                                std::move(b.routing_key), std::move(b.arguments)});
          for (auto& b : remote)
            if (!keep || keep(b)) all.push_back({vh, std::move(b)});
        }
        // Bindings keep their own order (default exchange first) rather than vhost, name.
        json items = json::array();
        for (const auto& x : all) items.push_back(binding_json(x.b, x.vhost));
        if (c->query.sort.empty() && !c->query.page) {
          json out = json::array();
          for (auto& i : items)
            out.push_back(c->query.columns.empty() ? i : keep_columns(i, c->query.columns));
          return c->json_reply(out);
        }
        c->list(std::move(items));
      });
}

}  // namespace

void list_bindings(const call_ptr& c, bool one_vhost) {
  std::vector<broker::vhost*> vs;
  if (!c->vhosts_arg(one_vhost, vs)) return;
  binding_list(c, vs, nullptr);
}

void queue_bindings(const call_ptr& c) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  std::string q = c->args[1];
  binding_list(c, {v},
               [q](const broker::binding_view& b) { return !b.to_exchange && b.destination == q; });
}

void exchange_bindings(const call_ptr& c, bool as_source) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  std::string x = exchange_name(c->args[1]);
  binding_list(c, {v}, [x, as_source](const broker::binding_view& b) {
    return as_source ? b.source == x && !x.empty() : b.to_exchange && b.destination == x;
  });
}

void bindings_between(const call_ptr& c, bool to_exchange) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  std::string s = exchange_name(c->args[1]), d = c->args[2];
  binding_list(c, {v}, [s, d, to_exchange](const broker::binding_view& b) {
    return b.source == s && b.destination == d && b.to_exchange == to_exchange;
  });
}

void add_binding(const call_ptr& c, bool to_exchange) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  auto body = c->body_object();
  if (!body) return;
  broker::binding_view b;
  b.source = exchange_name(c->args[1]);
  b.destination = c->args[2];
  b.to_exchange = to_exchange;
  b.routing_key = json_text(*body, "routing_key");
  if (auto a = body->find("arguments"); a != body->end() && !a->is_null()) {
    std::string why;
    auto t = table_from_json(*a, why);
    if (!t) return c->bad_request(why);
    b.arguments = std::move(*t);
  }
  if (b.source.empty())
    return c->error(bhttp::status::forbidden, "access_refused",
                    "operation not permitted on the default exchange");
  using result = std::variant<std::monostate, broker::error, denied>;
  over_vhosts<result>(
      c, {v},
      [b, checks = c->checks_in(*v)](broker::vhost& v) -> result {
        // queue.bind's checks come before anything is looked up (binding_action_with_checks).
        if (binding_checks(checks, b, v)) return denied{};
        auto d =
            b.to_exchange ? v.exchange_dest(b.destination) : v.queue_dest(b.destination, 0, false);
        if (auto* e = std::get_if<broker::error>(&d)) return *e;
        if (auto e = v.bind(b.source, std::get<broker::dest_id>(d), b.routing_key, b.arguments))
          return *e;
        return std::monostate{};
      },
      [c, b](std::vector<result> res) {
        if (std::holds_alternative<denied>(res[0])) return refuse_denied(c);
        if (auto* e = std::get_if<broker::error>(&res[0])) return refuse(c, *e);
        http::response r{bhttp::status::created, c->req.version()};
        r.set(bhttp::field::server, "Warren");
        // RabbitMQ answers with the new binding's path, relative to the request's.
        r.set(bhttp::field::location, properties_key(b));
        r.prepare_payload();
        c->reply(std::move(r));
      });
}

void binding_by_props(const call_ptr& c, bool to_exchange, bool remove) {
  broker::vhost* v = c->vhost_arg(0);
  if (!v) return;
  std::string s = exchange_name(c->args[1]), d = c->args[2], props = c->args[3];
  using result = std::variant<std::optional<broker::binding_view>, broker::error, denied>;
  over_vhosts<result>(
      c, {v},
      [s, d, props, to_exchange, remove, checks = c->checks_in(*v)](broker::vhost& v) -> result {
        for (auto& b : v.view_bindings()) {
          if (b.source != s || b.destination != d || b.to_exchange != to_exchange ||
              properties_key(b) != props)
            continue;
          if (remove) {
            if (s.empty())
              return broker::error{broker::error_code::access_refused,
                                   "operation not permitted on the default exchange"};
            if (binding_checks(checks, b, v)) return denied{};
            auto dest = to_exchange ? v.exchange_dest(d) : v.queue_dest(d, 0, false);
            if (auto* e = std::get_if<broker::error>(&dest)) return *e;
            if (auto e = v.unbind(s, std::get<broker::dest_id>(dest), b.routing_key, b.arguments))
              return *e;
          }
          return std::optional<broker::binding_view>(std::move(b));
        }
        return std::optional<broker::binding_view>();
      },
      [c, v, remove](std::vector<result> res) {
        if (std::holds_alternative<denied>(res[0])) return refuse_denied(c);
        if (auto* e = std::get_if<broker::error>(&res[0])) return refuse(c, *e);
        auto& b = std::get<std::optional<broker::binding_view>>(res[0]);
        if (!b) return c->not_found();
        if (remove) return c->no_content();
        c->json_reply(binding_json(*b, v->name()));
      });
}

}  // namespace warren::mgmt
