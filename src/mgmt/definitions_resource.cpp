// Export and import of definitions across the vhosts' home workers.
#include "mgmt/definitions_resource.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <iterator>
#include <memory>
#include <set>

#include "federation/parameters.hpp"
#include "mgmt/definitions.hpp"
#include "mgmt/limits.hpp"
#include "mgmt/users_file.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

// ?download=<name> asks for a Content-Disposition, as RabbitMQ's UI does. The name is kept to
// a safe token (RabbitMQ checks it is one too).
std::string download_name(std::string_view target) {
  size_t q = target.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view query = target.substr(q + 1);
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view kv = query.substr(0, amp);
    if (kv.rfind("download=", 0) == 0) {
      std::string name(kv.substr(9));
      bool token = !name.empty() && std::all_of(name.begin(), name.end(), [](unsigned char c) {
        return std::isalnum(c) || c == '.' || c == '_' || c == '-';
      });
      return token ? name : std::string();
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return {};
}

// Gathered on the connection's worker only.
struct export_job {
  http::request_header req;
  http::responder done;
  export_info info;
  definitions all;                 // users, vhosts and permissions, filled up front
  std::vector<definitions> parts;  // one per vhost, in the order asked
  size_t pending = 0;

  // In a cluster: the queues of other nodes and the bindings to them (api_context).
  std::function<std::vector<queue_def>(const std::string*)> remote_queues;
  std::function<std::vector<binding_def>(const std::string*)> remote_bindings;
  std::string node;  // this node's name, given to its queues when in a cluster

  void finish() {
    if (remote_queues)
      for (auto& p : parts)
        for (auto& q : p.queues) q.node = node;
    for (auto& p : parts) {
      std::move(p.exchanges.begin(), p.exchanges.end(), std::back_inserter(all.exchanges));
      std::move(p.queues.begin(), p.queues.end(), std::back_inserter(all.queues));
      std::move(p.bindings.begin(), p.bindings.end(), std::back_inserter(all.bindings));
    }
    const std::string* only = info.only_vhost ? &*info.only_vhost : nullptr;
    // As for this node's: durable queues only, and the bindings to them.
    std::set<std::pair<std::string, std::string>> durable;
    if (remote_queues)
      for (auto& q : remote_queues(only))
        if (q.durable) {
          durable.emplace(q.vhost, q.name);
          all.queues.push_back(std::move(q));
        }
    std::set<std::pair<std::string, std::string>> sources;
    for (const auto& x : all.exchanges) sources.emplace(x.vhost, x.name);
    if (remote_bindings)
      for (auto& b : remote_bindings(only))
        if (durable.count({b.vhost, b.destination}) &&
            (b.source.starts_with("amq.") || sources.count({b.vhost, b.source})))
          all.bindings.push_back(std::move(b));
    auto res = json_response(req, bhttp::status::ok, export_json(all, info));
    if (auto name = download_name(req.target()); !name.empty())
      res.set(bhttp::field::content_disposition, "attachment; filename=" + name);
    res.set(bhttp::field::cache_control, "no-cache");
    done(std::move(res));
  }
};

// `d` is read by the vhosts' workers at the same time and never written once shared; the
// results are gathered on the connection's worker.
struct import_job {
  http::request_header req;
  http::responder done;
  std::string acting_user;
  definitions d;
  std::vector<std::string> vhosts;                 // those with something to declare
  std::vector<std::optional<std::string>> errors;  // per vhost
  std::vector<int64_t> max_queues;  // per vhost, as it was before the file's limits were set
  size_t pending = 0;

  void finish() {
    for (size_t i = 0; i < vhosts.size(); ++i)
      if (errors[i]) {
        spdlog::error("definitions import by '{}' failed in vhost '{}': {}", acting_user, vhosts[i],
                      *errors[i]);
        done(json_error(req, bhttp::status::bad_request, "bad_request", *errors[i]));
        return;
      }
    spdlog::info(
        "definitions imported by '{}': {} users, {} permissions, {} topic permissions, "
        "{} vhost limits, {} exchanges, {} queues, {} bindings",
        acting_user, d.users.size(), d.permissions.size(), d.topic_permissions.size(),
        d.vhost_limits.size(), d.exchanges.size(), d.queues.size(), d.bindings.size());
    http::response res{bhttp::status::no_content, req.version()};
    res.set(bhttp::field::server, "Warren");
    res.prepare_payload();
    done(std::move(res));
  }
};

// Declares the next slice of a vhost's part on its home worker, then either posts the next
// slice behind whatever else the worker has queued meanwhile (AMQP traffic is not held up by
// a large import) or posts the outcome back to the connection's worker.
constexpr size_t import_slice_items = 256;

// RabbitMQ's validate_limits (rabbit_definitions), before the vhost's first declaration: the
// file's new queues must fit under the max-queues the vhost had before the import. On the home
// worker. The text is RabbitMQ's.
std::optional<std::string> check_queue_limit(const import_job& job, const broker::vhost& v,
                                             int64_t limit) {
  if (limit < 0) return std::nullopt;
  std::set<std::string_view> added;
  for (const auto& q : job.d.queues)
    if (q.vhost == v.name() && !v.inspect_queue(q.name)) added.insert(q.name);
  if (added.empty()) return std::nullopt;
  size_t count = limit == 0 ? 0 : v.queue_count();  // RabbitMQ reports 0 for a limit of 0
  if (limit > 0 && int64_t(added.size() + count) <= limit) return std::nullopt;
  return fmt::format(
      "Adding {} queue(s) to virtual host \"{}\" would exceed the limit of {} queue(s).\n\nThis "
      "virtual host currently has {} queue(s) defined.\n\nImport aborted!",
      added.size(), v.name(), limit, count);
}

void import_slice(std::shared_ptr<import_job> job, broker::vhost* v, net::worker* home,
                  net::worker* back, size_t i, size_t next) {
  home->post([job = std::move(job), v, home, back, i, next]() mutable {
    if (next == 0)
      if (auto refused = check_queue_limit(*job, *v, job->max_queues[i]))
        return back->post([job = std::move(job), i, refused = std::move(refused)] {
          job->errors[i] = refused;
          if (--job->pending == 0) job->finish();
        });
    auto r = apply_some(*v, job->d, next, import_slice_items);
    if (std::holds_alternative<apply_more>(r))
      return import_slice(std::move(job), v, home, back, i, next);
    std::optional<std::string> error;
    if (auto* e = std::get_if<std::string>(&r)) error = std::move(*e);
    back->post([job = std::move(job), i, error = std::move(error)] {
      job->errors[i] = error;
      if (--job->pending == 0) job->finish();
    });
  });
}

void note_ignored(const definitions& d, const std::string& user) {
  auto say = [&](size_t n, std::string_view what) {
    if (n) spdlog::warn("definitions import by '{}': {} {} ignored (not supported)", user, n, what);
  };
  say(d.ignored_parameters, "runtime parameters");
  say(d.ignored_global_parameters, "global parameters");
  say(d.ignored_policies, "policies");
}

}  // namespace

void export_definitions(const api_context& api, const http::request_header& req,
                        std::optional<std::string> vhost, net::worker& here, http::responder done) {
  if (vhost && !api.vhosts->find(*vhost)) {
    done(json_error(req, bhttp::status::bad_request, "bad_request", "vhost_not_found"));
    return;
  }
  auto job = std::make_shared<export_job>();
  job->req = req;
  job->done = std::move(done);
  job->info = export_info{api.version, vhost};
  job->remote_queues = api.remote_queues;
  job->remote_bindings = api.remote_bindings;
  job->node = api.node_name;
  std::vector<std::string> names = vhost ? std::vector<std::string>{*vhost} : api.vhosts->names();
  if (!vhost) {
    add_users(job->all, api.users->all());
    job->all.vhosts = api.vhosts->names();
  }
  if (api.runtime) {
    for (auto& p : api.runtime->parameters())
      if (std::find(names.begin(), names.end(), p.vhost) != names.end())
        job->all.runtime_parameters.push_back(std::move(p));
    for (auto& p : api.runtime->policies())
      if (std::find(names.begin(), names.end(), p.vhost) != names.end())
        job->all.policies.push_back(std::move(p));
  }
  // Vhost limits are atomics on the vhost: read here, not on its home worker.
  for (const auto& n : names)
    if (broker::vhost* v = api.vhosts->find(n))
      if (limit_map l = vhost_limits(*v); !l.empty())
        job->all.vhost_limits.push_back(vhost_limits_def{n, std::move(l)});
  job->parts.resize(names.size());
  job->pending = names.size();
  if (names.empty()) {
    job->finish();
    return;
  }
  net::worker* back = &here;
  for (size_t i = 0; i < names.size(); ++i) {
    broker::vhost* v = api.vhosts->find(names[i]);
    api.pool->at(v->home_worker()).post([job, v, i, back] {
      definitions part;
      collect(*v, part);
      back->post([job, i, part = std::move(part)]() mutable {
        job->parts[i] = std::move(part);
        if (--job->pending == 0) job->finish();
      });
    });
  }
}

void import_definitions(const api_context& api, const http::request& req,
                        std::optional<std::string> vhost, const std::string& acting_user,
                        net::worker& here, http::responder done) {
  auto job = std::make_shared<import_job>();
  job->req = req.base();
  job->done = std::move(done);
  job->acting_user = acting_user;
  auto bad = [&job](std::string_view reason) {
    spdlog::error("definitions import by '{}' refused: {}", job->acting_user, reason);
    job->done(json_error(job->req, bhttp::status::bad_request, "bad_request", reason));
  };
  auto parsed = parse_definitions(req.body(), vhost);
  if (auto* why = std::get_if<std::string>(&parsed)) return bad(*why);
  if (vhost && !api.vhosts->find(*vhost)) {
    job->done(json_error(req, bhttp::status::not_found, "not_found", "vhost_not_found"));
    return;
  }
  job->d = std::move(std::get<definitions>(parsed));
  const definitions& d = job->d;

  // Every vhost the file uses must exist or be in its "vhosts" list (as in RabbitMQ).
  std::vector<std::string> named;
  for (const auto& p : d.permissions) named.push_back(p.vhost);
  for (const auto& t : d.topic_permissions) named.push_back(t.vhost);
  for (const auto& l : d.vhost_limits) named.push_back(l.vhost);
  for (const auto& p : d.runtime_parameters) named.push_back(p.vhost);
  for (const auto& p : d.policies) named.push_back(p.vhost);
  for (const auto& x : d.exchanges) job->vhosts.push_back(x.vhost);
  for (const auto& q : d.queues) job->vhosts.push_back(q.vhost);
  for (const auto& b : d.bindings) job->vhosts.push_back(b.vhost);
  named.insert(named.end(), job->vhosts.begin(), job->vhosts.end());
  for (const auto& n : named)
    if (!api.vhosts->find(n) && std::find(d.vhosts.begin(), d.vhosts.end(), n) == d.vhosts.end())
      return bad(fmt::format("vhost '{}' does not exist and the file does not declare it", n));
  if (auto why = precheck(d)) return bad(*why);
  for (const auto& n : d.vhosts) {
    if (api.vhosts->find(n)) continue;
    std::string why =
        api.create_vhost ? api.create_vhost(n, acting_user) : "this broker cannot create vhosts";
    if (!why.empty()) return bad(why);
  }

  note_ignored(d, acting_user);
  if (!d.users.empty() || !d.permissions.empty() || !d.topic_permissions.empty()) {
    if (auto why = apply_users(*api.users, d)) return bad(*why);
    std::string error;
    if (api.user_file && !api.user_file->save(*api.users, error)) {
      spdlog::error("definitions import by '{}': users not saved: {}", acting_user, error);
      job->done(json_error(req, bhttp::status::internal_server_error, "internal_server_error",
                           "users were changed but could not be saved: " + error));
      return;
    }
  }

  // Vhost limits before the queues, as RabbitMQ imports parameters first: a max-queues in the
  // file applies to the file's queues (each declaration checks it), after the file's new queues
  // were counted against the vhost's limit before the import (check_queue_limit).
  std::vector<std::pair<std::string, int64_t>> prior_max_queues;
  for (const auto& q : d.queues)
    if (std::none_of(prior_max_queues.begin(), prior_max_queues.end(),
                     [&](const auto& p) { return p.first == q.vhost; }))
      prior_max_queues.emplace_back(q.vhost, api.vhosts->find(q.vhost)->max_queues());
  if (!d.vhost_limits.empty()) {
    for (const auto& l : d.vhost_limits) set_vhost_limits(*api.vhosts->find(l.vhost), l.limits);
    std::string error;
    if (api.limits_file && !api.limits_file->save(*api.vhosts, error)) {
      spdlog::error("definitions import by '{}': vhost limits not saved: {}", acting_user, error);
      job->done(json_error(req, bhttp::status::internal_server_error, "internal_server_error",
                           "vhost limits were changed but could not be saved: " + error));
      return;
    }
  }

  // Runtime parameters and policies (federation upstreams, shovels) before the exchanges, as
  // RabbitMQ imports them; the links start once the exchanges exist (the next reconciliation).
  if (api.runtime) {
    std::string error;
    for (const auto& p : d.runtime_parameters)
      if (auto e = api.runtime->set_parameter(p); !e.empty()) error = e;
    for (const auto& p : d.policies)
      if (auto e = api.runtime->set_policy(p); !e.empty()) error = e;
    if (!error.empty()) {
      spdlog::error("definitions import by '{}': parameters not saved: {}", acting_user, error);
      job->done(json_error(req, bhttp::status::internal_server_error, "internal_server_error",
                           "parameters were changed but could not be saved: " + error));
      return;
    }
  }

  // Each vhost's part, in slices on its home worker; the vhosts in the order the file names them.
  std::vector<std::string> order;
  for (const auto& n : job->vhosts)
    if (std::find(order.begin(), order.end(), n) == order.end()) order.push_back(n);
  job->vhosts = std::move(order);
  job->errors.resize(job->vhosts.size());
  for (const auto& n : job->vhosts) {
    auto it = std::find_if(prior_max_queues.begin(), prior_max_queues.end(),
                           [&](const auto& p) { return p.first == n; });
    job->max_queues.push_back(it == prior_max_queues.end() ? common::limited_count::unset
                                                           : it->second);
  }
  job->pending = job->vhosts.size();
  if (job->vhosts.empty()) {
    job->finish();
    return;
  }
  for (size_t i = 0; i < job->vhosts.size(); ++i) {
    broker::vhost* v = api.vhosts->find(job->vhosts[i]);
    import_slice(job, v, &api.pool->at(v->home_worker()), &here, i, 0);
  }
}

}  // namespace warren::mgmt
