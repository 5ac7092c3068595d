// Connections, channels and consumers. Connections and their channels are described on their
// own workers (api_context::list_connections); what a channel holds unacknowledged and its
// consumers are the vhosts' (view_channels, view_consumers): a listing gathers both and joins
// them by channel id.
#include <fmt/format.h>

#include <map>

#include "mgmt/resources.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

// Users who are not monitoring or administrator see only their own connections (RabbitMQ).
bool may_see_connection(const call& c, const broker::connection_view& v) {
  return sees_all_vhosts(*c.user) || v.user == c.user->name;
}

json connections_json(const call_ptr& c, const std::vector<broker::connection_view>& conns,
                      std::string_view only_vhost) {
  json items = json::array();
  for (const auto& v : conns)
    if (may_see_connection(*c, v) && (only_vhost.empty() || v.vhost == only_vhost))
      items.push_back(connection_json(v, c->node()));
  return items;
}

// Every channel usage of every visible vhost, by channel id.
void channel_usage(const call_ptr& c,
                   std::function<void(std::map<uint64_t, broker::channel_usage>)> done) {
  over_vhost_shards<std::vector<broker::channel_usage>>(
      c, c->visible_vhosts(), [](broker::vhost& v) { return v.view_channels(); },
      [](std::vector<broker::channel_usage>& to, std::vector<broker::channel_usage>&& part) {
        // Every shard has a record of every channel: their counts add up.
        for (auto& u : part) {
          auto it = std::find_if(to.begin(), to.end(),
                                 [&](const auto& x) { return x.channel_id == u.channel_id; });
          if (it == to.end()) {
            to.push_back(u);
          } else {
            it->unacked += u.unacked;
            it->consumers += u.consumers;
          }
        }
      },
      [done](std::vector<std::vector<broker::channel_usage>> parts) {
        std::map<uint64_t, broker::channel_usage> by_id;
        for (auto& p : parts)
          for (auto& u : p) by_id[u.channel_id] = u;
        done(std::move(by_id));
      });
}

}  // namespace

void list_connections(const call_ptr& c, bool one_vhost) {
  std::string vhost;
  if (one_vhost) {
    if (!c->vhost_arg(0)) return;
    vhost = c->args[0];
  }
  all_connections(c, [c, vhost](std::vector<broker::connection_view> conns) {
    c->list(connections_json(c, conns, vhost));
  });
}

void get_connection(const call_ptr& c) {
  all_connections(c, [c](std::vector<broker::connection_view> conns) {
    for (const auto& v : conns)
      if (v.name == c->args[0] && may_see_connection(*c, v)) {
        json j = connection_json(v, c->node());
        return c->json_reply(c->query.columns.empty() ? j : keep_columns(j, c->query.columns));
      }
    c->not_found();
  });
}

void close_connection(const call_ptr& c) {
  std::string reason(c->req["X-Reason"]);
  all_connections(c, [c, reason](std::vector<broker::connection_view> conns) {
    for (const auto& v : conns) {
      if (v.name != c->args[0] || !may_see_connection(*c, v)) continue;
      net::worker& w = c->api.pool->at(v.worker);
      net::worker* back = &c->here;
      w.post([c, &w, back, id = v.id, reason] {
        bool closed = c->api.close_connection && c->api.close_connection(w, id, reason);
        back->post([c, closed] { closed ? c->no_content() : c->not_found(); });
      });
      return;
    }
    c->not_found();
  });
}

void list_channels(const call_ptr& c, int scope) {
  std::string vhost, connection;
  if (scope == 1) {
    if (!c->vhost_arg(0)) return;
    vhost = c->args[0];
  } else if (scope == 2) {
    connection = c->args[0];
  }
  all_connections(c, [c, scope, vhost, connection](std::vector<broker::connection_view> conns) {
    channel_usage(c, [c, scope, vhost, connection,
                      conns = std::move(conns)](std::map<uint64_t, broker::channel_usage> usage) {
      json items = json::array();
      bool found = false;
      for (const auto& k : conns) {
        if (!may_see_connection(*c, k)) continue;
        if (scope == 1 && k.vhost != vhost) continue;
        if (scope == 2 && k.name != connection) continue;
        found = true;
        for (const auto& ch : k.channels) {
          auto u = usage.find(ch.id);
          items.push_back(channel_json(k, ch, u == usage.end() ? nullptr : &u->second, c->node()));
        }
      }
      if (scope == 2 && !found) return c->not_found();
      c->list(std::move(items));
    });
  });
}

void get_channel(const call_ptr& c) {
  all_connections(c, [c](std::vector<broker::connection_view> conns) {
    channel_usage(c, [c,
                      conns = std::move(conns)](std::map<uint64_t, broker::channel_usage> usage) {
      for (const auto& k : conns) {
        if (!may_see_connection(*c, k)) continue;
        for (const auto& ch : k.channels)
          if (channel_name(k, ch.number) == c->args[0]) {
            auto u = usage.find(ch.id);
            json j = channel_json(k, ch, u == usage.end() ? nullptr : &u->second, c->node());
            return c->json_reply(c->query.columns.empty() ? j : keep_columns(j, c->query.columns));
          }
      }
      c->not_found();
    });
  });
}

void list_consumers(const call_ptr& c, bool one_vhost) {
  std::vector<broker::vhost*> vs;
  if (!c->vhosts_arg(one_vhost, vs)) return;
  over_vhost_shards<std::vector<broker::consumer_view>>(
      c, vs, [](broker::vhost& v) { return v.view_consumers(); },
      [](auto& to, auto&& part) { append_part(to, std::move(part)); },
      [c, vs](std::vector<std::vector<broker::consumer_view>> parts) {
        all_connections(c, [c, vs,
                            parts = std::move(parts)](std::vector<broker::connection_view> conns) {
          std::map<uint64_t, std::pair<const broker::connection_view*, const broker::channel_view*>>
              channels;
          for (const auto& k : conns)
            for (const auto& ch : k.channels) channels[ch.id] = {&k, &ch};
          json items = json::array();
          for (size_t i = 0; i < parts.size(); ++i)
            for (const auto& cv : parts[i]) {
              auto it = channels.find(cv.channel_id);
              const broker::connection_view* k = it == channels.end() ? nullptr : it->second.first;
              if (k && !may_see_connection(*c, *k)) continue;
              items.push_back(consumer_json(cv, vs[i]->name(), k,
                                            it == channels.end() ? nullptr : it->second.second,
                                            c->node()));
            }
          c->list(std::move(items));
        });
      });
}

}  // namespace warren::mgmt
