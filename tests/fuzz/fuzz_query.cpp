// Fuzzes what reads request targets: percent-decoding and query parameters (http/url), shared by
// the management API and the web gateway, and the management API's list parameters
// (mgmt/list_query: columns, sort, pagination, the name filter with its optional regex), answered
// over a small fixed list the way a resource answers GET /api/queues, and the Prometheus
// endpoint's targets (mgmt/prometheus_metrics: families, vhosts, the queue regex). The input is
// a request target. Checks: decoding never grows the text and agrees with a decode of its own %XX
// re-encoding; a page holds at most page_size items, of at most as many as there are; every
// answer renders to JSON text.
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "http/url.hpp"
#include "mgmt/definitions_json.hpp"
#include "mgmt/list_query.hpp"
#include "mgmt/prometheus_metrics.hpp"

using namespace warren;
using mgmt::json;

namespace {

struct item {
  std::string vhost;
  std::string name;
  int64_t messages;
  json extra;
};

const std::vector<item>& items() {
  static const std::vector<item> v = [] {
    std::vector<item> out;
    const char* names[] = {"orders",
                           "Orders.EU",
                           "",
                           "a",
                           "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
                           "\xc3\xa9t\xc3\xa9",
                           "q-7",
                           "amq.gen-XYZ",
                           "x y",
                           "ORDERS"};
    const char* vhosts[] = {"/", "b", "/"};
    for (int i = 0; i < 30; ++i) {
      json extra = json::object();
      if (i % 3 == 0) extra["message_stats"] = {{"publish", i * 7}, {"ack", i % 4}};
      if (i % 4 == 1) extra["message_stats"] = "n/a";
      if (i % 5 == 2) extra["flag"] = i % 2 == 0;
      std::string tag = "c";  // not "c" + to_string: GCC 12 warns falsely (-Wrestrict) at -O3
      tag += std::to_string(i);
      extra["consumer_details"] = json::array({{{"tag", tag}, {"n", i}}});
      out.push_back(item{vhosts[i % 3], names[i % 10], int64_t(i * 37 % 11) - 3, extra});
    }
    return out;
  }();
  return v;
}

mgmt::list_source<item> source() {
  mgmt::list_source<item> s;
  s.name = [](const item& i) -> std::string_view { return i.name; };
  s.vhost = [](const item& i) -> std::string_view { return i.vhost; };
  s.sort_key = [](const item& i, std::string_view key) -> std::optional<mgmt::sort_value> {
    if (key == "messages") return mgmt::sort_value(double(i.messages));
    return std::nullopt;  // the rendered JSON is used
  };
  s.render = [](const item& i) {
    json j = {{"name", i.name}, {"vhost", i.vhost}, {"messages", i.messages}};
    for (auto it = i.extra.begin(); it != i.extra.end(); ++it) j[it.key()] = it.value();
    return j;
  };
  return s;
}

std::string reencode(std::string_view s) {
  static const char hex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : s) {
    out += '%';
    out += hex[uint8_t(c) >> 4];
    out += hex[uint8_t(c) & 15];
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view target = fuzz::as_text(data, size);
  for (bool plus : {false, true}) {
    auto d = http::percent_decode(target, plus);
    if (!d) continue;
    FUZZ_CHECK(d->size() <= target.size());
    auto again = http::percent_decode(reencode(*d), plus);
    FUZZ_CHECK(again && *again == *d);
  }
  size_t q = target.find('?');
  std::string_view query = q == std::string_view::npos ? target : target.substr(q + 1);
  for (std::string_view name : {"token", "since", "page", "name", ""}) {
    auto one = http::query_param(query, name);
    auto all = http::query_params(query, name);
    // The first of the repeated values is the one query_param finds.
    FUZZ_CHECK(one.has_value() == !all.empty());
    if (one) FUZZ_CHECK(*one == all.front());
  }

  // The Prometheus port's targets (no credentials there): the endpoint, families, vhosts and the
  // queue regex, tried on the list's names.
  auto metrics = mgmt::parse_metrics_target(target);
  if (auto* m = std::get_if<mgmt::metrics_request>(&metrics)) {
    for (const auto& i : items()) {
      (void)m->keeps_vhost(i.vhost);
      if (m->queue) (void)m->queue->search(i.name);
    }
    (void)m->needs_queues();
  } else {
    int status = std::get<mgmt::metrics_refusal>(metrics).status;
    FUZZ_CHECK(status == 400 || status == 404);
  }

  auto parsed = mgmt::parse_list_query(target);
  auto* lq = std::get_if<mgmt::list_query>(&parsed);
  if (!lq) return 0;
  auto answer = mgmt::answer_list(*lq, items(), source());
  if (auto* j = std::get_if<json>(&answer)) {
    (void)mgmt::dump(*j);
    if (lq->page) {
      FUZZ_CHECK(j->is_object());
      const json& page_items = (*j)["items"];
      FUZZ_CHECK(page_items.size() <= lq->page_size);
      FUZZ_CHECK((*j)["filtered_count"].get<size_t>() <= (*j)["total_count"].get<size_t>());
    } else {
      FUZZ_CHECK(j->is_array() && j->size() <= items().size());
    }
  }
  // The same list as JSON already (the form some resources use).
  json as_json = json::array();
  for (const auto& i : items()) as_json.push_back(source().render(i));
  auto answer2 = mgmt::answer_list(*lq, as_json);
  if (auto* j = std::get_if<json>(&answer2)) (void)mgmt::dump(*j);
  return 0;
}
