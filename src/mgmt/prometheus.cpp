// The Prometheus endpoints: routing, and gathering a scrape's snapshot across the workers.
#include "mgmt/prometheus.hpp"

#include <sys/resource.h>
#include <zlib.h>

#include <algorithm>
#include <memory>

#include "broker/vhost.hpp"
#include "federation/supervisor.hpp"
#include "net/worker.hpp"

namespace warren::mgmt {

namespace bhttp = boost::beast::http;

namespace {

double cpu_seconds() {
  rusage u{};
  if (::getrusage(RUSAGE_SELF, &u) != 0) return 0;
  auto secs = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  return secs(u.ru_utime) + secs(u.ru_stime);
}

}  // namespace

bool accepts_gzip(std::string_view header) {
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header.remove_prefix(comma == std::string_view::npos ? header.size() : comma + 1);
    std::string_view coding = item.substr(0, item.find(';'));
    while (!coding.empty() && coding.front() == ' ') coding.remove_prefix(1);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    if (coding != "gzip" && coding != "x-gzip" && coding != "*") continue;
    // "gzip;q=0" refuses it.
    std::string_view params = item.substr(std::min(item.size(), coding.size()));
    size_t q = params.find("q=");
    if (q != std::string_view::npos) {
      std::string_view v = params.substr(q + 2);
      bool zero = !v.empty() && v.front() == '0';
      for (char c : v.substr(std::min<size_t>(1, v.size())))
        if (c >= '1' && c <= '9') zero = false;
      if (zero) continue;
    }
    return true;
  }
  return false;
}

// zlib's fastest level: a per-object scrape of many queues shrinks about tenfold for a few
// milliseconds of the worker's time per megabyte.
std::optional<std::string> gzip(std::string_view body) {
  z_stream z{};
  if (deflateInit2(&z, Z_BEST_SPEED, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    return std::nullopt;
  std::string out(deflateBound(&z, uLong(body.size())), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(body.data()));
  z.avail_in = uInt(body.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = uInt(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) return std::nullopt;
  return out;
}

void gather_metrics(const api_context& api, const metrics_request& r, net::worker& here,
                    std::function<void(metrics_snapshot)> done) {
  // Touched only on `here`: each part is posted back there before it is stored.
  struct job {
    const api_context* api;
    metrics_snapshot s;
    size_t left = 0;
    std::function<void(metrics_snapshot)> done;

    void finish() {
      s.node_name = api->node_name;
      s.cluster_name = api->cluster_name;
      s.version = api->version;
      s.global = broker::global_counters::total();
      if (api->node) s.node = api->node();
      if (api->cluster) {
        cluster_status cs = api->cluster();
        metrics_snapshot::cluster_part p;
        p.nodes = cs.members.size();
        for (const auto& m : cs.members) p.running += m.running ? 1 : 0;
        p.fenced = cs.state != "serving";
        s.cluster = p;
      }
      int64_t now = broker::wall_ms();
      s.uptime_seconds = double(now - api->started_at) / 1000.0;
      s.start_time_seconds = double(api->started_at) / 1000.0;
      s.cpu_seconds = cpu_seconds();
      if (api->federation) {
        auto& f = api->federation->counters();
        s.federation =
            metrics_snapshot::federation_part{f.forwarded.load(), f.shovelled.load(),
                                              f.links_running.load(), f.shovels_running.load()};
      }
      // In the order they were opened, whichever worker answered first.
      std::sort(s.connections.begin(), s.connections.end(),
                [](const auto& a, const auto& b) { return a.id < b.id; });
      done(std::move(s));
    }
    void one_done() {
      if (--left == 0) finish();
    }
  };
  auto j = std::make_shared<job>();
  j->api = &api;
  j->done = std::move(done);

  std::vector<broker::vhost*> vs;
  for (const auto& n : api.vhosts->names())
    if (broker::vhost* v = api.vhosts->find(n)) vs.push_back(v);
  j->s.vhosts.resize(vs.size());
  size_t workers = api.pool->size();
  size_t parts = 0;
  for (auto* v : vs) parts += v->shard_count();
  j->left = parts + workers + (api.gateway_stats ? 1 : 0);
  net::worker* back = &here;

  const bool exchanges = r.needs_exchanges(), channels = r.needs_channels(),
             bindings = r.needs_bindings();
  for (size_t i = 0; i < vs.size(); ++i) {
    broker::vhost* v = vs[i];
    // Queues are copied only where they will be rendered (the vhost filter of /detailed).
    const bool queues = r.needs_queues() && r.keeps_vhost(v->name());
    j->s.vhosts[i].name = v->name();
    // Every shard of the vhost (its queues may live on several workers): the definitions are
    // the authority's, the queues, totals and channels' counts add up.
    for (size_t s = 0; s < v->shard_count(); ++s) {
      broker::vhost* sh = &v->shard_at(s);
      bool authority = sh == v;
      api.pool->at(sh->shard_index())
          .post([j, sh, i, back, queues, exchanges, channels, bindings, authority] {
            metrics_snapshot::vhost_part p;
            p.totals = sh->totals();
            if (queues) p.queues = sh->view_queues();
            if (exchanges && authority) p.exchanges = sh->view_exchanges();
            if (channels) p.channels = sh->view_channels();
            if (bindings && authority)
              for (const auto& b : sh->view_bindings())
                if (!b.source.empty()) ++p.bindings[b.source];
            back->post([j, i, p = std::move(p)]() mutable {
              auto& to = j->s.vhosts[i];
              to.totals.add(p.totals);
              std::move(p.queues.begin(), p.queues.end(), std::back_inserter(to.queues));
              std::move(p.exchanges.begin(), p.exchanges.end(), std::back_inserter(to.exchanges));
              for (auto& [source, n] : p.bindings) to.bindings[source] += n;
              for (auto& u : p.channels) {
                auto it = std::find_if(to.channels.begin(), to.channels.end(),
                                       [&](const auto& x) { return x.channel_id == u.channel_id; });
                if (it == to.channels.end()) {
                  to.channels.push_back(u);
                } else {
                  it->unacked += u.unacked;
                  it->consumers += u.consumers;
                }
              }
              j->one_done();
            });
          });
    }
  }
  for (size_t i = 0; i < workers; ++i) {
    net::worker& w = api.pool->at(i);
    w.post([j, &w, back, list = api.list_connections] {
      std::vector<broker::connection_view> mine;
      if (list) list(w, mine);
      uint64_t sockets = w.connection_count();
      back->post([j, mine = std::move(mine), sockets]() mutable {
        std::move(mine.begin(), mine.end(), std::back_inserter(j->s.connections));
        j->s.open_sockets += sockets;
        j->one_done();
      });
    });
  }
  if (api.gateway_stats)
    api.gateway_stats([j, back](web::gateway_stats g) {
      back->post([j, g] {
        j->s.gateway = g;
        j->one_done();
      });
    });
}

http::router make_prometheus_router(const api_context& api) {
  http::router r;
  r.on_head = [](const http::request_header&,
                 const http::request_context&) -> std::variant<size_t, http::response> {
    return size_t(4096);  // scrapes carry no body
  };
  r.handle = [&api](http::request req, const http::request_context& ctx, http::responder done) {
    if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::head) {
      auto res = http::text_response(req, bhttp::status::method_not_allowed, "Method Not Allowed");
      res.set(bhttp::field::allow, "GET, HEAD");
      return done(std::move(res));
    }
    auto parsed = parse_metrics_target(req.target());
    if (auto* no = std::get_if<metrics_refusal>(&parsed))
      return done(http::text_response(req, static_cast<bhttp::status>(no->status), no->text));
    auto mr = std::make_shared<metrics_request>(std::move(std::get<metrics_request>(parsed)));
    auto head = std::make_shared<http::request_header>(std::move(req.base()));
    gather_metrics(api, *mr, *ctx.worker, [mr, head, done = std::move(done)](metrics_snapshot s) {
      auto res = http::text_response(*head, bhttp::status::ok, render_metrics(s, *mr),
                                     prometheus_content_type);
      res.set(bhttp::field::vary, "Accept-Encoding");
      if (accepts_gzip((*head)[bhttp::field::accept_encoding]))
        if (auto packed = gzip(res.body())) {
          res.body() = std::move(*packed);
          res.set(bhttp::field::content_encoding, "gzip");
          res.prepare_payload();
        }
      if (head->method() == bhttp::verb::head) {
        size_t length = res.body().size();
        res.body().clear();
        res.content_length(length);
      }
      done(std::move(res));
    });
  };
  return r;
}

}  // namespace warren::mgmt
