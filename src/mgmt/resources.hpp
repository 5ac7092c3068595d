// What the management API's resources share: one request in progress (`call`), gathering
// answers from the vhosts' home workers and from every worker, and the usual responses.
// Resources live in resources_*.cpp, one file per family; routes.cpp maps paths to them.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "broker/access_checks.hpp"
#include "mgmt/api.hpp"
#include "mgmt/list_query.hpp"
#include "mgmt/render.hpp"

namespace warren::mgmt {

// One request, from routing to its answer. Held by shared_ptr while answers from other workers
// come back; touched only on the connection's worker (`here`).
struct call {
  const api_context& api;
  http::request req;
  net::worker& here;
  http::responder done;
  auth::user_ptr user;
  std::vector<std::string> args;  // the path's variable segments, decoded
  list_query query;
  // Came over the control socket (warrenctl): its administrator is not in the user store, and its
  // changes are not checked against permissions, as rabbitmqctl's are not.
  bool local = false;

  void reply(http::response res) { done(std::move(res)); }
  void json_reply(const json& body, boost::beast::http::status s = boost::beast::http::status::ok);
  void error(boost::beast::http::status s, std::string_view error, std::string_view reason);
  void bad_request(std::string_view reason);
  void not_found();
  void no_content();
  void created();
  // A list: filtered, sorted, paged, columns kept (list_query.hpp).
  void list(json items);
  template <typename T>
  void list(std::vector<T> items, const list_source<T>& src) {
    auto r = answer_list(query, std::move(items), src);
    if (auto* e = std::get_if<query_error>(&r)) return bad_request_error(*e);
    json_reply(std::get<json>(r));
  }
  void bad_request_error(const query_error& e);
  // The vhost named by args[i], if it exists and the user may see it; else answers (404 or
  // 401) and returns null.
  broker::vhost* vhost_arg(size_t i);
  // The vhosts the user may see, in the registry's order.
  std::vector<broker::vhost*> visible_vhosts() const;
  // A list's vhosts: the one named by args[0] (one_vhost), else every visible one. False when
  // vhost_arg(0) has answered.
  bool vhosts_arg(bool one_vhost, std::vector<broker::vhost*>& out);
  bool may_see(std::string_view vhost) const;
  // The body as JSON (an object); else answers 400 and returns nullopt.
  std::optional<json> body_object();
  const std::string& node() const { return api.node_name; }
  // The user's permissions in `v`, for the checks RabbitMQ's management makes through an internal
  // channel (rabbit_mgmt_util:direct_request, with_channel), run on the vhost's home worker.
  broker::access_checks checks_in(const broker::vhost& v) const;
};
using call_ptr = std::shared_ptr<call>;

// Runs fn on each vhost's home worker, then done(results in order) on c's worker.
template <typename R>
void over_vhosts(const call_ptr& c, std::vector<broker::vhost*> vs,
                 std::function<R(broker::vhost&)> fn, std::function<void(std::vector<R>)> done) {
  struct job {
    std::vector<R> out;
    size_t left = 0;
    std::function<void(std::vector<R>)> done;
  };
  auto j = std::make_shared<job>();
  j->out.resize(vs.size());
  j->left = vs.size();
  j->done = std::move(done);
  if (vs.empty()) return j->done({});
  net::worker* back = &c->here;
  for (size_t i = 0; i < vs.size(); ++i) {
    broker::vhost* v = vs[i];
    c->api.pool->at(v->shard_index()).post([j, v, i, fn, back] {
      R r = fn(*v);
      back->post([j, i, r = std::move(r)]() mutable {
        j->out[i] = std::move(r);
        if (--j->left == 0) j->done(std::move(j->out));
      });
    });
  }
}

// The same over every shard of each vhost (its queues, consumers and channels' deliveries may
// live on several workers, docs/architecture.md): each vhost's parts are merged into its result
// with merge(result, part), the authority's first.
template <typename R>
void over_vhost_shards(const call_ptr& c, std::vector<broker::vhost*> vs,
                       std::function<R(broker::vhost&)> fn, std::function<void(R&, R&&)> merge,
                       std::function<void(std::vector<R>)> done) {
  std::vector<broker::vhost*> parts;
  std::vector<size_t> owner;
  for (size_t i = 0; i < vs.size(); ++i) {
    parts.push_back(vs[i]);
    owner.push_back(i);
    for (size_t s = 0; s < vs[i]->shard_count(); ++s)
      if (&vs[i]->shard_at(s) != vs[i]) {
        parts.push_back(&vs[i]->shard_at(s));
        owner.push_back(i);
      }
  }
  over_vhosts<R>(c, std::move(parts), std::move(fn),
                 [n = vs.size(), owner = std::move(owner), merge = std::move(merge),
                  done = std::move(done)](std::vector<R> got) {
                   std::vector<R> out(n);
                   std::vector<bool> seen(n, false);
                   for (size_t k = 0; k < got.size(); ++k) {
                     size_t i = owner[k];
                     if (!seen[i]) {
                       out[i] = std::move(got[k]);
                       seen[i] = true;
                     } else {
                       merge(out[i], std::move(got[k]));
                     }
                   }
                   done(std::move(out));
                 });
}

// Concatenates vectors (over_vhost_shards' merge for lists).
template <typename T>
void append_part(std::vector<T>& to, std::vector<T>&& part) {
  to.insert(to.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
}

// Every client connection on every worker, then done(them) on c's worker.
void all_connections(const call_ptr& c,
                     std::function<void(std::vector<broker::connection_view>)> done);

// Boolean and count fields read leniently, as RabbitMQ does ("true", "false", numbers as text).
std::optional<bool> json_bool(const json& j, std::string_view key);
std::optional<int64_t> json_int(const json& j, std::string_view key);
std::string json_text(const json& j, std::string_view key, std::string_view fallback = "");

// The resources, by family. Each answers through its call.
void get_overview(const call_ptr& c);
void get_nodes(const call_ptr& c, bool one);
void get_whoami(const call_ptr& c);
// GET /api/warren/gateway: the web gateway's statistics (404 without a gateway).
void get_gateway(const call_ptr& c);

void list_queues(const call_ptr& c, bool one_vhost);
void get_queue(const call_ptr& c);
void put_queue(const call_ptr& c);
void delete_queue(const call_ptr& c);
void purge_queue(const call_ptr& c);
void get_messages(const call_ptr& c);
void queue_bindings(const call_ptr& c);

void list_exchanges(const call_ptr& c, bool one_vhost);
void get_exchange(const call_ptr& c);
void put_exchange(const call_ptr& c);
void delete_exchange(const call_ptr& c);
void exchange_bindings(const call_ptr& c, bool as_source);
void publish_message(const call_ptr& c);

void list_bindings(const call_ptr& c, bool one_vhost);
// /api/bindings/{vhost}/e/{source}/{q|e}/{destination}[/{props}]
void bindings_between(const call_ptr& c, bool to_exchange);
void add_binding(const call_ptr& c, bool to_exchange);
void binding_by_props(const call_ptr& c, bool to_exchange, bool remove);

void list_connections(const call_ptr& c, bool one_vhost);
void get_connection(const call_ptr& c);
void close_connection(const call_ptr& c);
void list_channels(const call_ptr& c, int scope);  // 0 all, 1 per vhost, 2 per connection
void get_channel(const call_ptr& c);
void list_consumers(const call_ptr& c, bool one_vhost);

void list_users(const call_ptr& c);
void get_user(const call_ptr& c);
void put_user(const call_ptr& c);
void delete_user(const call_ptr& c);
void list_permissions(const call_ptr& c, int scope);  // 0 all, 1 of a vhost, 2 of a user
void get_permission(const call_ptr& c);
void put_permission(const call_ptr& c);
void delete_permission(const call_ptr& c);
void list_topic_permissions(const call_ptr& c, int scope);  // 0 all, 1 of a vhost, 2 of a user
void get_topic_permission(const call_ptr& c);
void put_topic_permission(const call_ptr& c);
// /api/topic-permissions/{vhost}/{user}[/{exchange}]: all of the user's in the vhost, or one.
void delete_topic_permission(const call_ptr& c, bool one);
void list_vhosts(const call_ptr& c);
void get_vhost(const call_ptr& c);
void put_vhost(const call_ptr& c);
void delete_vhost(const call_ptr& c);

void put_memory_watermark(const call_ptr& c);  // Warren's own

// Saves the user store after a change; answers 500 and returns false if that fails.
bool save_users(const call_ptr& c);

// Limits (resources_limits.cpp): /api/vhost-limits[/{vhost}[/{name}]],
// /api/user-limits[/{user}[/{name}]].
void list_vhost_limits(const call_ptr& c, bool one);
void put_vhost_limit(const call_ptr& c);
void delete_vhost_limit(const call_ptr& c);
void list_user_limits(const call_ptr& c, bool one);
void put_user_limit(const call_ptr& c);
void delete_user_limit(const call_ptr& c);

// Runtime parameters and policies (resources_parameters.cpp): /api/parameters[/{component}[/
// {vhost}[/{name}]]], /api/policies[/{vhost}[/{name}]]; the links' status: /api/federation-links,
// /api/shovels.
void list_parameters(const call_ptr& c, int scope);  // 0 all, 1 of a component, 2 and a vhost
void get_parameter(const call_ptr& c);
void put_parameter(const call_ptr& c);
void delete_parameter(const call_ptr& c);
void list_policies(const call_ptr& c, bool one_vhost);
void get_policy(const call_ptr& c);
void put_policy(const call_ptr& c);
void delete_policy(const call_ptr& c);
void list_links(const call_ptr& c, bool shovels, bool one_vhost);

}  // namespace warren::mgmt
