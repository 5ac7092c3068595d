// The query parameters of the management API's lists (columns, sort, pagination, name filter,
// stats switches and sample ranges), and answering a list with them the way RabbitMQ's
// rabbit_mgmt_util does (3.10-3.13). Pure: no broker, no sockets. Lists are filtered, sorted and
// paginated before any JSON is built, so a page of 100 out of 100 000 queues renders 100 objects.
//
// What RabbitMQ does, and so what this module does:
//
// | parameter                      | rule | | ------------------------------ |
// ------------------------------------------------------------- | | no `page` | a plain array;
// `page_size`, `name`, `use_regex` are ignored   | | `page`, `page_size` not ints   | 400
// bad_request "Pagination parameters are invalid" (even     | |                                |
// `page_size=x` alone)                                          | | `page` < 1, `page_size` not in
// | 400 invalid_pagination_parameters                             | | 1..500 (with `page`) | | |
// (page-1)*page_size > filtered  | 400 page_out_of_range; so the page just past the end, and     |
// |                                | page 1 of an empty list, are empty pages | | `name` | with
// `page` only: caseless substring of the item's name;      | |                                |
// `use_regex=true`: caseless ECMAScript regex, searched; a bad  | | | regex is 400 bad_request
// "Pagination parameters are invalid"  | | `sort=k.sub`                   | one dotted key, then
// vhost, then name; a missing key sorts as | |                                | 0; numbers before
// strings; strings bytewise; `sort=` empty is | |                                | the default
// order (vhost, name)                               | | `sort_reverse=true`            | reverses
// the order, the default order too                    | | `columns=a,b.c`                | per item
// (not the page envelope); dotted names keep nesting;  | |                                | missing
// keys are left out; inside an array of objects the     | |                                |
// sub-columns apply to each element; empty: every column        | | booleans | "true" is true,
// anything else false                           | | `*_age`, `*_incr`              | integers
// (seconds; not an integer: absent); when both of a    | |                                | pair
// are given: age > 0, incr > 0, age/incr <= 500, else 400  | |                                |
// invalid_range_parameters                                      |
//
// Known differences: RabbitMQ breaks remaining ties by comparing whole items, here they keep the
// caller's order; RabbitMQ sorts after cutting columns for some lists (a sort key not among the
// columns then sorts as 0), here the whole item is sorted on; JSON booleans sort as the strings
// "false"/"true" (Erlang atoms sort between numbers and strings); `columns=` (empty) keeps
// everything where RabbitMQ returns empty objects; a regex longer than 256 bytes, with
// back-references, or whose automaton would be large (max_regex_weight) is refused as a bad one,
// where RabbitMQ's re (PCRE) takes it and bounds the match's work instead.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "mgmt/bounded_regex.hpp"

namespace warren::mgmt {

using json = nlohmann::ordered_json;

// Answered as HTTP 400 {"error": error, "reason": reason}.
struct query_error {
  std::string error;
  std::string reason;
  bool operator==(const query_error&) const = default;
};

struct list_query {
  std::vector<std::string> columns;  // as given, dotted
  std::string sort;
  bool sort_reverse = false;
  std::optional<size_t> page;
  size_t page_size = 100;
  std::string name;
  bool use_regex = false;
  bool disable_stats = false, enable_queue_totals = false;
  std::optional<int64_t> lengths_age, lengths_incr, msg_rates_age, msg_rates_incr, data_rates_age,
      data_rates_incr;
  std::optional<int64_t> node_stats_age, node_stats_incr;  // /api/nodes in RabbitMQ
};

inline constexpr size_t default_page_size = 100;
inline constexpr size_t max_page_size = 500;
inline constexpr int64_t max_range_samples = 500;  // age / incr
// The name filter's regex (use_regex=true): longer patterns, or patterns whose automaton would be
// larger, are refused like a bad regex (mgmt/bounded_regex.hpp). Names are at most 255 bytes; the
// limits keep one match to microseconds and compiling it far from the stack's end.
inline constexpr size_t max_regex_bytes = 256;
inline constexpr size_t max_regex_weight = 2000;

// `target` is the whole request target ("/api/queues?page=1&..."), or just the query ("page=1&..."
// or "?page=1"). Names and values are percent-decoded, '+' as a space; a repeated parameter: the
// first one counts.
std::variant<list_query, query_error> parse_list_query(std::string_view target);

// A value to sort by: missing (sorts as 0), a number, or a string.
using sort_value = std::variant<std::monostate, double, std::string>;

// -1, 0, 1: missing is 0, numbers before strings, strings bytewise.
int compare_sort_values(const sort_value& a, const sort_value& b);

// The value at a dotted key of a JSON object ("message_stats.publish"); std::monostate if absent.
sort_value json_sort_value(const json& object, std::string_view dotted_key);

// Keep only the dotted columns of one object (also used for single objects, e.g.
// GET /api/overview?columns=...). Empty `columns`: the object unchanged.
json keep_columns(const json& object, const std::vector<std::string>& columns);

// Lists are paginated and sorted BEFORE their JSON is built, so items are plain structs T and the
// caller supplies how to read them.
template <typename T>
struct list_source {
  std::function<std::string_view(const T&)> name;   // for the name filter ("" if none)
  std::function<std::string_view(const T&)> vhost;  // default order vhost, name ("" if none)
  // The value of a dotted sort key, or std::nullopt if this source does not know the key quickly
  // (then the rendered JSON is used for every item: slower, still correct). Not asked for "name"
  // and "vhost", which come from the two functions above.
  std::function<std::optional<sort_value>(const T&, std::string_view key)> sort_key;
  std::function<json(const T&)> render;  // the full object
};

namespace detail {

// The name filter of a paged query: nothing, a caseless substring, or a caseless regex.
class name_filter {
 public:
  static std::variant<name_filter, query_error> make(const list_query& q);
  bool active() const { return kind_ != kind::none; }
  bool matches(std::string_view name) const;

 private:
  enum class kind { none, substring, regex };
  kind kind_ = kind::none;
  std::string lowered_;
  std::optional<bounded_regex> regex_;
};

// Which slice of the filtered list a query answers: [offset, offset + count).
struct page_window {
  size_t offset = 0;
  size_t count = 0;
};
std::variant<page_window, query_error> window_for(const list_query& q, size_t filtered);

// The page envelope around `items`.
json paged(const list_query& q, size_t total, size_t filtered, json items);

// One item in the sort: where it is, and its keys.
struct sort_entry {
  size_t index;
  sort_value primary;  // the `sort` key, when it is neither name nor vhost
  std::string_view vhost;
  std::string_view name;
};

}  // namespace detail

// Filter, sort, paginate, render only the items on the page, then keep only `columns`.
template <typename T>
std::variant<json, query_error> answer_list(const list_query& q, std::vector<T> items,
                                            const list_source<T>& src) {
  auto filter_or = detail::name_filter::make(q);
  if (auto* e = std::get_if<query_error>(&filter_or)) return std::move(*e);
  const auto& filter = std::get<detail::name_filter>(filter_or);

  // The sort keys, as RabbitMQ merges them: [sort, vhost, name] without repeats.
  enum class primary_kind { none, name, vhost, other } pk = primary_kind::none;
  if (q.sort == "name") {
    pk = primary_kind::name;
  } else if (q.sort == "vhost") {
    pk = primary_kind::vhost;
  } else if (!q.sort.empty()) {
    pk = primary_kind::other;
  }

  // Items rendered for sorting (a key the source does not know) are kept for the page.
  std::vector<std::optional<json>> rendered;
  std::vector<detail::sort_entry> entries;
  entries.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const T& item = items[i];
    std::string_view name = src.name ? src.name(item) : std::string_view();
    if (filter.active() && !filter.matches(name)) continue;
    detail::sort_entry e{i, {}, src.vhost ? src.vhost(item) : std::string_view(), name};
    if (pk == primary_kind::other) {
      std::optional<sort_value> v;
      if (src.sort_key) v = src.sort_key(item, q.sort);
      if (!v) {
        if (rendered.empty()) rendered.resize(items.size());
        rendered[i] = src.render(item);
        v = json_sort_value(*rendered[i], q.sort);
      }
      e.primary = std::move(*v);
    }
    entries.push_back(std::move(e));
  }

  auto compare = [&](const detail::sort_entry& a, const detail::sort_entry& b) {
    int c = 0;
    switch (pk) {
      case primary_kind::name:
        c = a.name.compare(b.name);
        if (c == 0) c = a.vhost.compare(b.vhost);
        break;
      case primary_kind::other:
        c = compare_sort_values(a.primary, b.primary);
        [[fallthrough]];
      case primary_kind::none:
      case primary_kind::vhost:
        if (c == 0) c = a.vhost.compare(b.vhost);
        if (c == 0) c = a.name.compare(b.name);
        break;
    }
    if (q.sort_reverse) c = -c;
    return c != 0 ? c < 0 : a.index < b.index;  // ties keep the caller's order
  };

  detail::page_window window{0, entries.size()};
  if (q.page) {
    auto w = detail::window_for(q, entries.size());
    if (auto* e = std::get_if<query_error>(&w)) return std::move(*e);
    window = std::get<detail::page_window>(w);
  }
  auto first = entries.begin() + static_cast<std::ptrdiff_t>(window.offset);
  auto last = first + static_cast<std::ptrdiff_t>(window.count);
  if (window.offset == 0 && window.count == entries.size()) {
    std::sort(entries.begin(), entries.end(), compare);
  } else if (window.count > 0) {
    // Only the page's items need their final place: O(n + (n - offset) log count).
    if (window.offset > 0) std::nth_element(entries.begin(), first, entries.end(), compare);
    std::partial_sort(first, last, entries.end(), compare);
  }

  json out = json::array();
  for (auto it = first; it != last; ++it) {
    json object = rendered.empty() || !rendered[it->index] ? src.render(items[it->index])
                                                           : std::move(*rendered[it->index]);
    out.push_back(q.columns.empty() ? std::move(object) : keep_columns(object, q.columns));
  }
  if (!q.page) return out;
  return detail::paged(q, items.size(), entries.size(), std::move(out));
}

// The same for lists that are JSON already (an array of objects; anything else is returned as is).
std::variant<json, query_error> answer_list(const list_query& q, json items);

}  // namespace warren::mgmt
