// List query parameters: parsing, the name filter, the page window, sort values and columns.
#include "mgmt/list_query.hpp"

#include <algorithm>
#include <charconv>
#include <limits>

#include "http/url.hpp"

namespace warren::mgmt {
namespace {

std::string_view query_part(std::string_view target) {
  size_t q = target.find('?');
  if (q != std::string_view::npos) return target.substr(q + 1);
  // A path without a query has no parameters; anything else is the query itself.
  return !target.empty() && target.front() == '/' ? std::string_view() : target;
}

// Erlang's list_to_integer: optional sign, digits only.
std::optional<int64_t> to_int(std::string_view s) {
  if (!s.empty() && s.front() == '+') s.remove_prefix(1);
  if (s.empty() || s.front() == '+') return std::nullopt;
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  while (!s.empty()) {
    size_t at = s.find(sep);
    std::string_view part = s.substr(0, at);
    if (!part.empty()) out.emplace_back(part);  // like string:tokens, empty parts vanish
    s.remove_prefix(at == std::string_view::npos ? s.size() : at + 1);
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  }
  return out;
}

query_error invalid_pagination() {
  return {"bad_request", "Pagination parameters are invalid"};
}

std::string show(const std::optional<int64_t>& v) {
  return v ? std::to_string(*v) : std::string("undefined");
}

// A column tree: an empty `sub` means the whole value.
struct column_node {
  std::string key;
  bool whole = false;
  std::vector<std::vector<std::string>> sub;  // the rest of each dotted path under `key`
};

json keep(const json& value, const std::vector<std::vector<std::string>>& paths);

json keep_object(const json& object, const std::vector<std::vector<std::string>>& paths) {
  json out = json::object();
  for (auto it = object.begin(); it != object.end(); ++it) {
    bool wanted = false, whole = false;
    std::vector<std::vector<std::string>> sub;
    for (const auto& p : paths) {
      if (p.front() != it.key()) continue;
      wanted = true;
      if (p.size() == 1) {
        whole = true;
      } else {
        sub.emplace_back(p.begin() + 1, p.end());
      }
    }
    if (!wanted) continue;
    out[it.key()] = whole ? it.value() : keep(it.value(), sub);
  }
  return out;
}

json keep(const json& value, const std::vector<std::vector<std::string>>& paths) {
  if (value.is_object()) return keep_object(value, paths);
  if (value.is_array()) {
    json out = json::array();
    for (const auto& v : value) out.push_back(keep(v, paths));
    return out;
  }
  return value;  // a scalar asked for its sub-keys stays whole, as in RabbitMQ
}

}  // namespace

std::variant<list_query, query_error> parse_list_query(std::string_view target) {
  std::string_view query = query_part(target);
  // Decoded parameters, the first of each name kept.
  std::vector<std::pair<std::string, std::string>> params;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query.remove_prefix(amp == std::string_view::npos ? query.size() : amp + 1);
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    auto name = http::percent_decode(pair.substr(0, eq), true);
    auto value = http::percent_decode(
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1), true);
    if (!name || !value) return query_error{"bad_request", "Invalid query string"};
    params.emplace_back(std::move(*name), std::move(*value));
  }
  auto get = [&](std::string_view name) -> const std::string* {
    for (const auto& [k, v] : params) {
      if (k == name) return &v;
    }
    return nullptr;
  };
  auto flag = [&](std::string_view name) {
    const std::string* v = get(name);
    return v && *v == "true";
  };

  list_query q;
  if (const std::string* c = get("columns")) q.columns = split(*c, ',');
  if (const std::string* s = get("sort")) q.sort = *s;
  q.sort_reverse = flag("sort_reverse");
  if (const std::string* n = get("name")) q.name = *n;
  q.use_regex = flag("use_regex");
  q.disable_stats = flag("disable_stats");
  q.enable_queue_totals = flag("enable_queue_totals");

  // Pagination: both numbers are read (and must be integers) even without a page.
  std::optional<int64_t> page, page_size;
  if (const std::string* p = get("page")) {
    page = to_int(*p);
    if (!page) return invalid_pagination();
  }
  if (const std::string* p = get("page_size")) {
    page_size = to_int(*p);
    if (!page_size) return invalid_pagination();
  }
  if (page) {
    if (*page < 1 || (page_size && (*page_size < 1 || *page_size > int64_t(max_page_size)))) {
      return query_error{"invalid_pagination_parameters",
                         "Invalid pagination parameters: page number " + show(page) +
                             ", page size " + show(page_size)};
    }
    q.page = size_t(*page);
    q.page_size = page_size ? size_t(*page_size) : default_page_size;
  }

  // Sample ranges: a value that is not an integer counts as absent; a pair must make sense.
  struct range {
    const char* prefix;
    std::optional<int64_t>* age;
    std::optional<int64_t>* incr;
  };
  for (const range& r : {range{"lengths", &q.lengths_age, &q.lengths_incr},
                         range{"msg_rates", &q.msg_rates_age, &q.msg_rates_incr},
                         range{"data_rates", &q.data_rates_age, &q.data_rates_incr},
                         range{"node_stats", &q.node_stats_age, &q.node_stats_incr}}) {
    std::string prefix(r.prefix);
    if (const std::string* v = get(prefix + "_age")) *r.age = to_int(*v);
    if (const std::string* v = get(prefix + "_incr")) *r.incr = to_int(*v);
    if (*r.age && *r.incr &&
        !(**r.age > 0 && **r.incr > 0 && **r.age / **r.incr <= max_range_samples)) {
      return query_error{"invalid_range_parameters", "Invalid range parameters: age " +
                                                         std::to_string(**r.age) + ", incr " +
                                                         std::to_string(**r.incr)};
    }
  }
  return q;
}

int compare_sort_values(const sort_value& a, const sort_value& b) {
  auto number = [](const sort_value& v) -> std::optional<double> {
    if (std::holds_alternative<std::monostate>(v)) return 0.0;
    if (const double* d = std::get_if<double>(&v)) return *d;
    return std::nullopt;
  };
  auto na = number(a), nb = number(b);
  if (na && nb) return *na < *nb ? -1 : (*nb < *na ? 1 : 0);
  if (na) return -1;  // numbers before strings, as in Erlang's term order
  if (nb) return 1;
  int c = std::get<std::string>(a).compare(std::get<std::string>(b));
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

sort_value json_sort_value(const json& object, std::string_view dotted_key) {
  const json* at = &object;
  for (const std::string& key : split(dotted_key, '.')) {
    if (!at->is_object()) return std::monostate();
    auto it = at->find(key);
    if (it == at->end()) return std::monostate();
    at = &*it;
  }
  if (at->is_number()) return at->get<double>();
  if (at->is_string()) return at->get<std::string>();
  if (at->is_boolean()) return std::string(at->get<bool>() ? "true" : "false");
  return std::monostate();  // null, objects and arrays
}

json keep_columns(const json& object, const std::vector<std::string>& columns) {
  std::vector<std::vector<std::string>> paths;
  for (const std::string& c : columns) {
    auto p = split(c, '.');
    if (!p.empty()) paths.push_back(std::move(p));
  }
  if (paths.empty()) return object;
  return keep(object, paths);
}

namespace detail {

std::variant<name_filter, query_error> name_filter::make(const list_query& q) {
  name_filter f;
  if (!q.page || q.name.empty()) return f;  // RabbitMQ filters paged lists only
  if (!q.use_regex) {
    f.kind_ = kind::substring;
    f.lowered_ = lower(q.name);
    return f;
  }
  // Bounded (bounded_regex.hpp): a pattern from the network must not take the worker down.
  // RabbitMQ's re:run raises badarg inside the pagination step, answered like a bad page.
  auto r = bounded_regex::make(q.name, true, {max_regex_bytes, max_regex_weight});
  if (std::holds_alternative<std::string>(r)) return invalid_pagination();
  f.regex_ = std::move(std::get<bounded_regex>(r));
  f.kind_ = kind::regex;
  return f;
}

bool name_filter::matches(std::string_view name) const {
  switch (kind_) {
    case kind::none:
      return true;
    case kind::substring:
      return lower(name).find(lowered_) != std::string::npos;
    case kind::regex:
      return regex_->search(name);
  }
  return true;
}

std::variant<page_window, query_error> window_for(const list_query& q, size_t filtered) {
  if (!q.page) return page_window{0, filtered};
  size_t page = *q.page, size = q.page_size;
  // RabbitMQ drops (page - 1) * size items and fails only when there are fewer than that.
  bool overflow = page - 1 > 0 && size > std::numeric_limits<size_t>::max() / (page - 1);
  if (overflow || (page - 1) * size > filtered) {
    return query_error{"page_out_of_range", "Page out of range, page: " + std::to_string(page) +
                                                " page size: " + std::to_string(size) +
                                                ", len: " + std::to_string(filtered)};
  }
  size_t offset = (page - 1) * size;
  return page_window{offset, std::min(size, filtered - offset)};
}

json paged(const list_query& q, size_t total, size_t filtered, json items) {
  size_t size = q.page_size;
  json out = json::object();
  out["filtered_count"] = filtered;
  out["item_count"] = items.size();
  out["items"] = std::move(items);
  out["page"] = q.page.value_or(1);
  out["page_count"] = (filtered + size - 1) / size;
  out["page_size"] = size;
  out["total_count"] = total;
  return out;
}

}  // namespace detail

std::variant<json, query_error> answer_list(const list_query& q, json items) {
  if (!items.is_array()) return items;
  std::vector<json> list;
  list.reserve(items.size());
  for (auto& item : items) list.push_back(std::move(item));
  auto string_at = [](const json& item, const char* key) -> std::string_view {
    if (!item.is_object()) return {};
    auto it = item.find(key);
    if (it == item.end() || !it->is_string()) return {};
    return it->get_ref<const std::string&>();
  };
  list_source<json> src;
  src.name = [string_at](const json& item) { return string_at(item, "name"); };
  src.vhost = [string_at](const json& item) { return string_at(item, "vhost"); };
  src.sort_key = [](const json& item, std::string_view key) -> std::optional<sort_value> {
    return json_sort_value(item, key);
  };
  src.render = [](const json& item) { return item; };
  return answer_list(q, std::move(list), src);
}

}  // namespace warren::mgmt
