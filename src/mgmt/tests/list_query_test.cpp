// List query parameters: parsing (percent-decoding, every error RabbitMQ answers), columns with
// dotted names, sorting numbers, strings and missing keys, pagination and its edges, the name
// filter, and that a page of 100 out of 100 000 items renders only those 100.
#include <gtest/gtest.h>

#include "mgmt/list_query.hpp"

namespace warren::mgmt {
namespace {

list_query parse(std::string_view target) {
  auto r = parse_list_query(target);
  if (auto* e = std::get_if<query_error>(&r)) {
    ADD_FAILURE() << "unexpected error " << e->error << ": " << e->reason;
    return {};
  }
  return std::get<list_query>(r);
}

query_error parse_error(std::string_view target) {
  auto r = parse_list_query(target);
  if (auto* e = std::get_if<query_error>(&r)) return *e;
  ADD_FAILURE() << "no error for " << target;
  return {};
}

json answer(const list_query& q, json items) {
  auto r = answer_list(q, std::move(items));
  if (auto* e = std::get_if<query_error>(&r)) {
    ADD_FAILURE() << "unexpected error " << e->error << ": " << e->reason;
    return nullptr;
  }
  return std::get<json>(r);
}

query_error answer_error(const list_query& q, json items) {
  auto r = answer_list(q, std::move(items));
  if (auto* e = std::get_if<query_error>(&r)) return *e;
  ADD_FAILURE() << "no error";
  return {};
}

std::vector<std::string> names(const json& list) {
  std::vector<std::string> out;
  const json& items = list.is_object() ? list.at("items") : list;
  for (const auto& i : items) out.push_back(i.value("name", std::string("?")));
  return out;
}

json queues() {
  return json::parse(R"([
    {"name": "b", "vhost": "/", "messages": 10, "message_stats": {"publish": 5, "ack": 1}},
    {"name": "a", "vhost": "v2", "messages": 2},
    {"name": "c", "vhost": "/", "messages": 2.5, "message_stats": {"publish": 1}},
    {"name": "A", "vhost": "/", "messages": "many"}
  ])");
}

// --- parsing ------------------------------------------------------------------------------------

TEST(ListQueryParse, DefaultsWithoutQuery) {
  for (std::string_view t : {"/api/queues", "/api/queues?", "", "?"}) {
    list_query q = parse(t);
    EXPECT_TRUE(q.columns.empty()) << t;
    EXPECT_EQ(q.sort, "");
    EXPECT_FALSE(q.sort_reverse);
    EXPECT_FALSE(q.page);
    EXPECT_EQ(q.page_size, 100u);
    EXPECT_EQ(q.name, "");
    EXPECT_FALSE(q.use_regex || q.disable_stats || q.enable_queue_totals);
    EXPECT_FALSE(q.lengths_age || q.lengths_incr || q.msg_rates_age || q.data_rates_incr);
  }
}

TEST(ListQueryParse, EveryParameter) {
  list_query q = parse(
      "/api/queues/%2F?columns=name,message_stats.publish,,messages&sort=message_stats.ack"
      "&sort_reverse=true&page=3&page_size=20&name=foo&use_regex=true&disable_stats=true"
      "&enable_queue_totals=true&lengths_age=60&lengths_incr=5&msg_rates_age=600"
      "&msg_rates_incr=10&data_rates_age=30&data_rates_incr=30&node_stats_age=5&node_stats_incr=5");
  EXPECT_EQ(q.columns, (std::vector<std::string>{"name", "message_stats.publish", "messages"}));
  EXPECT_EQ(q.sort, "message_stats.ack");
  EXPECT_TRUE(q.sort_reverse);
  EXPECT_EQ(q.page, 3u);
  EXPECT_EQ(q.page_size, 20u);
  EXPECT_EQ(q.name, "foo");
  EXPECT_TRUE(q.use_regex && q.disable_stats && q.enable_queue_totals);
  EXPECT_EQ(q.lengths_age, 60);
  EXPECT_EQ(q.lengths_incr, 5);
  EXPECT_EQ(q.msg_rates_age, 600);
  EXPECT_EQ(q.msg_rates_incr, 10);
  EXPECT_EQ(q.data_rates_age, 30);
  EXPECT_EQ(q.data_rates_incr, 30);
  EXPECT_EQ(q.node_stats_age, 5);
  EXPECT_EQ(q.node_stats_incr, 5);
}

TEST(ListQueryParse, JustTheQuery) {
  EXPECT_EQ(parse("page=2").page, 2u);
  EXPECT_EQ(parse("?page=2&page_size=7").page_size, 7u);
}

TEST(ListQueryParse, PercentDecodingAndPlus) {
  list_query q = parse("?name=my+queue%2Fx&columns=a%2Cb&sort=message%5Fstats.publish");
  EXPECT_EQ(q.name, "my queue/x");
  EXPECT_EQ(q.columns, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(q.sort, "message_stats.publish");
  // Names are decoded too, and the first of a repeated parameter counts.
  EXPECT_EQ(parse("?sor%74=x&sort=y").sort, "x");
  EXPECT_EQ(parse_error("?name=%zz").error, "bad_request");
}

TEST(ListQueryParse, BooleansAreTrueOnlyForTrue) {
  EXPECT_FALSE(parse("?sort_reverse=false").sort_reverse);
  EXPECT_FALSE(parse("?sort_reverse=yes").sort_reverse);
  EXPECT_FALSE(parse("?sort_reverse").sort_reverse);
  EXPECT_TRUE(parse("?sort_reverse=true").sort_reverse);
  EXPECT_TRUE(parse("?disable_stats=true&enable_queue_totals=true").enable_queue_totals);
}

TEST(ListQueryParse, PageSizeAloneIsIgnoredButMustBeAnInteger) {
  EXPECT_FALSE(parse("?page_size=1000").page);
  EXPECT_EQ(parse("?page=1").page_size, 100u);
  EXPECT_EQ(parse_error("?page_size=big"),
            (query_error{"bad_request", "Pagination parameters are invalid"}));
}

TEST(ListQueryParse, PaginationErrors) {
  for (std::string_view t :
       {"?page=x", "?page=", "?page=1.5", "?page=1&page_size=ten", "?page=++1"}) {
    EXPECT_EQ(parse_error(t), (query_error{"bad_request", "Pagination parameters are invalid"}))
        << t;
  }
  EXPECT_EQ(parse_error("?page=0"),
            (query_error{"invalid_pagination_parameters",
                         "Invalid pagination parameters: page number 0, page size undefined"}));
  EXPECT_EQ(parse_error("?page=-1&page_size=10").error, "invalid_pagination_parameters");
  EXPECT_EQ(parse_error("?page=1&page_size=0").error, "invalid_pagination_parameters");
  EXPECT_EQ(parse_error("?page=1&page_size=501"),
            (query_error{"invalid_pagination_parameters",
                         "Invalid pagination parameters: page number 1, page size 501"}));
  EXPECT_EQ(parse("?page=1&page_size=500").page_size, 500u);
  EXPECT_EQ(parse("?page=%2B2&page_size=1").page, 2u);  // "+2", as Erlang's list_to_integer
}

TEST(ListQueryParse, RangeParameters) {
  EXPECT_FALSE(parse("?lengths_age=x&lengths_incr=5").lengths_age);  // not an integer: absent
  EXPECT_EQ(parse("?lengths_age=60").lengths_age, 60);               // alone: no check
  EXPECT_EQ(parse_error("?msg_rates_age=0&msg_rates_incr=5"),
            (query_error{"invalid_range_parameters", "Invalid range parameters: age 0, incr 5"}));
  EXPECT_EQ(parse_error("?data_rates_age=60&data_rates_incr=-1").error, "invalid_range_parameters");
  EXPECT_EQ(parse_error("?lengths_age=5010&lengths_incr=10").error, "invalid_range_parameters");
  EXPECT_EQ(parse("?lengths_age=5009&lengths_incr=10").lengths_incr, 10);  // 500, integer division
}

// --- columns ------------------------------------------------------------------------------------

TEST(ListQueryColumns, DottedColumnsKeepTheNesting) {
  json q = queues()[0];
  EXPECT_EQ(keep_columns(q, {"name", "message_stats.publish"}),
            json::parse(R"({"name": "b", "message_stats": {"publish": 5}})"));
  EXPECT_EQ(keep_columns(q, {"message_stats"}), json::parse(R"({"message_stats": {"publish": 5,
            "ack": 1}})"));
  // A whole key wins over one of its sub-keys, whatever the order.
  EXPECT_EQ(keep_columns(q, {"message_stats.ack", "message_stats"}),
            json::parse(R"({"message_stats": {"publish": 5, "ack": 1}})"));
  EXPECT_EQ(keep_columns(q, {}), q);
  // The object's order is kept, not the columns'.
  EXPECT_EQ(keep_columns(q, {"messages", "name"}).begin().key(), "name");
}

TEST(ListQueryColumns, MissingKeysAreLeftOutNeverNull) {
  json q = queues()[1];
  json kept = keep_columns(q, {"name", "nope", "message_stats.publish", "a.b.c"});
  EXPECT_EQ(kept, json::parse(R"({"name": "a"})"));
  EXPECT_EQ(keep_columns(queues()[2], {"message_stats.ack"}),
            json::parse(R"({"message_stats": {}})"));
  EXPECT_EQ(keep_columns(queues()[2], {"name.x"}), json::parse(R"({"name": "c"})"));
}

TEST(ListQueryColumns, SubColumnsApplyToEachObjectOfAnArray) {
  json q = json::parse(R"({"name": "q", "consumer_details": [{"consumer_tag": "t1", "x": 1},
                          {"consumer_tag": "t2", "x": 2}], "tags": ["a", "b"]})");
  EXPECT_EQ(keep_columns(q, {"consumer_details.consumer_tag", "tags"}),
            json::parse(R"({"consumer_details": [{"consumer_tag": "t1"}, {"consumer_tag": "t2"}],
                            "tags": ["a", "b"]})"));
}

TEST(ListQueryColumns, AppliedToEachItemNotTheEnvelope) {
  json paged = answer(parse("?page=1&columns=name"), queues());
  EXPECT_EQ(paged.at("total_count"), 4);
  EXPECT_EQ(paged.at("items")[0], json::parse(R"({"name": "A"})"));
  json plain = answer(parse("?columns=messages,message_stats.publish"), queues());
  EXPECT_EQ(plain[0], json::parse(R"({"messages": "many"})"));
  EXPECT_EQ(plain[1], json::parse(R"({"messages": 10, "message_stats": {"publish": 5}})"));
}

// --- sorting ------------------------------------------------------------------------------------

TEST(ListQuerySort, DefaultOrderIsVhostThenName) {
  EXPECT_EQ(names(answer(parse(""), queues())), (std::vector<std::string>{"A", "b", "c", "a"}));
  EXPECT_EQ(names(answer(parse("?sort_reverse=true"), queues())),
            (std::vector<std::string>{"a", "c", "b", "A"}));
  EXPECT_EQ(names(answer(parse("?sort="), queues())),
            (std::vector<std::string>{"A", "b", "c", "a"}));
}

TEST(ListQuerySort, ByNameThenVhost) {
  json items = queues();
  items.push_back(json::parse(R"({"name": "a", "vhost": "/"})"));
  items.push_back(json::parse(R"({"name": "b", "vhost": "/", "id": 2})"));  // a tie: kept in order
  json sorted = answer(parse("?sort=name"), items);
  std::vector<std::string> got;
  for (const auto& i : sorted)
    got.push_back(i.at("name").get<std::string>() + "@" + i.at("vhost").get<std::string>());
  EXPECT_EQ(got, (std::vector<std::string>{"A@/", "a@/", "a@v2", "b@/", "b@/", "c@/"}));
  EXPECT_FALSE(sorted[3].contains("id"));
  EXPECT_EQ(sorted[4].at("id"), 2);
}

TEST(ListQuerySort, NumbersMissingAndStrings) {
  // Missing sorts as 0, numbers numerically (2 < 2.5 < 10), strings after every number.
  json items = queues();
  items.push_back(json::parse(R"({"name": "neg", "vhost": "/", "messages": -1})"));
  items.push_back(json::parse(R"({"name": "none", "vhost": "/"})"));
  EXPECT_EQ(names(answer(parse("?sort=messages"), items)),
            (std::vector<std::string>{"neg", "none", "a", "c", "b", "A"}));
  EXPECT_EQ(names(answer(parse("?sort=messages&sort_reverse=true"), items)),
            (std::vector<std::string>{"A", "b", "c", "a", "none", "neg"}));
}

TEST(ListQuerySort, DottedKeys) {
  // b: publish 5, c: publish 1, a and A: no message_stats (0), ties by vhost, name.
  EXPECT_EQ(names(answer(parse("?sort=message_stats.publish"), queues())),
            (std::vector<std::string>{"A", "a", "c", "b"}));
  EXPECT_EQ(names(answer(parse("?sort=message_stats.publish&sort_reverse=true"), queues())),
            (std::vector<std::string>{"b", "c", "a", "A"}));
}

TEST(ListQuerySort, StringsCompareBytewise) {
  json items = json::parse(R"([{"name": "x", "k": "b"}, {"name": "y", "k": "B"},
                               {"name": "z", "k": "ab"}, {"name": "w", "k": "é"}])");
  EXPECT_EQ(names(answer(parse("?sort=k"), items)), (std::vector<std::string>{"y", "z", "x", "w"}));
}

TEST(ListQuerySort, SortValueComparison) {
  EXPECT_EQ(compare_sort_values(std::monostate(), 0.0), 0);
  EXPECT_EQ(compare_sort_values(std::monostate(), -0.5), 1);
  EXPECT_EQ(compare_sort_values(1e9, std::string("")), -1);
  EXPECT_EQ(compare_sort_values(std::string("b"), std::string("a")), 1);
  json o = json::parse(R"({"a": {"b": 3, "s": "x", "t": true, "n": null}})");
  EXPECT_EQ(json_sort_value(o, "a.b"), sort_value(3.0));
  EXPECT_EQ(json_sort_value(o, "a.s"), sort_value(std::string("x")));
  EXPECT_EQ(json_sort_value(o, "a.t"), sort_value(std::string("true")));
  EXPECT_EQ(json_sort_value(o, "a.n"), sort_value());
  EXPECT_EQ(json_sort_value(o, "a"), sort_value());
  EXPECT_EQ(json_sort_value(o, "a.b.c"), sort_value());
  EXPECT_EQ(json_sort_value(o, "x.y"), sort_value());
}

// --- pagination ---------------------------------------------------------------------------------

TEST(ListQueryPage, Envelope) {
  json page = answer(parse("?page=2&page_size=3"), queues());
  EXPECT_EQ(page, json::parse(R"({"filtered_count": 4, "item_count": 1,
      "items": [{"name": "a", "vhost": "v2", "messages": 2}], "page": 2, "page_count": 2,
      "page_size": 3, "total_count": 4})"));
  std::vector<std::string> keys;
  for (auto it = page.begin(); it != page.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, (std::vector<std::string>{"filtered_count", "item_count", "items", "page",
                                            "page_count", "page_size", "total_count"}));
}

TEST(ListQueryPage, EveryPageOfAList) {
  json items = json::array();
  for (int i = 0; i < 25; ++i)
    items.push_back({{"name", std::string("q").append(std::to_string(100 + i))}});
  std::vector<std::string> all;
  for (int p = 1; p <= 3; ++p) {
    json page =
        answer(parse("?page=" + std::to_string(p) + "&page_size=10&sort_reverse=true"), items);
    EXPECT_EQ(page.at("page_count"), 3);
    EXPECT_EQ(page.at("item_count"), p < 3 ? 10 : 5);
    for (const auto& n : names(page)) all.push_back(n);
  }
  ASSERT_EQ(all.size(), 25u);
  for (size_t i = 0; i < all.size(); ++i)
    EXPECT_EQ(all[i], std::string("q").append(std::to_string(124 - i)));
}

TEST(ListQueryPage, PastTheEnd) {
  // Like RabbitMQ: the page right after the last is empty, the one after that an error.
  json page = answer(parse("?page=3&page_size=2"), queues());
  EXPECT_EQ(page.at("item_count"), 0);
  EXPECT_EQ(page.at("items"), json::array());
  EXPECT_EQ(page.at("page_count"), 2);
  EXPECT_EQ(answer_error(parse("?page=4&page_size=2"), queues()),
            (query_error{"page_out_of_range", "Page out of range, page: 4 page size: 2, len: 4"}));
  EXPECT_EQ(answer_error(parse("?page=9223372036854775807&page_size=500"), queues()).error,
            "page_out_of_range");
}

TEST(ListQueryPage, EmptyList) {
  json page = answer(parse("?page=1"), json::array());
  EXPECT_EQ(page, json::parse(R"({"filtered_count": 0, "item_count": 0, "items": [], "page": 1,
      "page_count": 0, "page_size": 100, "total_count": 0})"));
  EXPECT_EQ(answer_error(parse("?page=2"), json::array()).error, "page_out_of_range");
  EXPECT_EQ(answer(parse(""), json::array()), json::array());
}

TEST(ListQueryPage, NotAnArrayIsReturnedAsIs) {
  json o = {{"name", "x"}};
  EXPECT_EQ(answer(parse("?page=1"), o), o);
}

// --- the name filter ----------------------------------------------------------------------------

TEST(ListQueryName, CaselessSubstringOnPagedListsOnly) {
  json items = json::parse(R"([{"name": "Orders.EU"}, {"name": "orders.us"}, {"name": "billing"},
                               {"vhost": "/"}])");
  json page = answer(parse("?page=1&name=ORDERS"), items);
  EXPECT_EQ(names(page), (std::vector<std::string>{"Orders.EU", "orders.us"}));
  EXPECT_EQ(page.at("filtered_count"), 2);
  EXPECT_EQ(page.at("total_count"), 4);
  EXPECT_EQ(page.at("page_count"), 1);
  // "." is not special in a substring; without a page RabbitMQ does not filter at all.
  EXPECT_EQ(names(answer(parse("?page=1&name=s.e"), items)),
            (std::vector<std::string>{"Orders.EU"}));
  EXPECT_EQ(answer(parse("?name=orders"), items).size(), 4u);
  EXPECT_EQ(answer(parse("?page=1&name="), items).at("filtered_count"), 4);
  // The filter counts before the page: past the filtered end is out of range.
  EXPECT_EQ(answer_error(parse("?page=4&page_size=1&name=orders"), items).error,
            "page_out_of_range");
}

TEST(ListQueryName, CaselessRegex) {
  json items =
      json::parse(R"([{"name": "Orders.EU"}, {"name": "orders.us"}, {"name": "billing"}])");
  EXPECT_EQ(names(answer(parse("?page=1&use_regex=true&name=%5Eorders%5C.(eu%7Cxx)%24"), items)),
            (std::vector<std::string>{"Orders.EU"}));
  EXPECT_EQ(names(answer(parse("?page=1&use_regex=true&name=LL"), items)),
            (std::vector<std::string>{"billing"}));  // searched, not matched whole
  EXPECT_EQ(answer_error(parse("?page=1&use_regex=true&name=(unclosed"), items),
            (query_error{"bad_request", "Pagination parameters are invalid"}));
  // A bad regex without a page is never compiled.
  EXPECT_EQ(answer(parse("?use_regex=true&name=(unclosed"), items).size(), 3u);
  // use_regex=false: the pattern is a plain substring.
  EXPECT_EQ(answer(parse("?page=1&use_regex=false&name=(unclosed"), items).at("item_count"), 0);
}

// Found with the fuzz targets (docs/security.md, "Fuzzing"): a pattern from the network could
// overflow the worker's stack while compiling (deep nesting) or hold the worker for minutes while
// matching (exponential backtracking). Both are now bounded; ordinary patterns behave as before.
TEST(ListQueryName, RegexCannotTakeTheWorkerDown) {
  json items = json::parse(
      R"([{"name": "Orders.EU"}, {"name": "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}])");
  query_error bad{"bad_request", "Pagination parameters are invalid"};
  std::string nested = std::string(20000, '(') + std::string(20000, ')');
  EXPECT_EQ(answer_error(parse("?page=1&use_regex=true&name=" + nested), items), bad);
  EXPECT_EQ(answer_error(parse("?page=1&use_regex=true&name=" + std::string(257, 'a')), items),
            bad);
  // Counted repetitions multiply the automaton: refused before it is built.
  EXPECT_EQ(answer_error(parse("?page=1&use_regex=true&name=(a%3F)%7B200%7D%7B200%7D"), items),
            bad);
  // Back-references need backtracking: refused.
  EXPECT_EQ(answer_error(parse("?page=1&use_regex=true&name=(a)%5C1"), items), bad);
  // "(a|aa)*b" against 48 a's: 2^33 paths for a backtracking matcher; answered at once now.
  EXPECT_EQ(answer(parse("?page=1&use_regex=true&name=(a%7Caa)*b"), items).at("item_count"), 0);
  EXPECT_EQ(names(answer(parse("?page=1&use_regex=true&name=%5E(a%7Caa)*%24"), items)),
            (std::vector<std::string>{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}));
  // A wrapped pattern must not turn a bad one good ("a)(b" inside "(?:" ... ")").
  EXPECT_EQ(answer_error(parse("?page=1&use_regex=true&name=a)(b"), items), bad);
  // Anchors and classes keep their meaning inside the whole-name match.
  EXPECT_EQ(names(answer(parse("?page=1&use_regex=true&name=eu%24"), items)),
            (std::vector<std::string>{"Orders.EU"}));
  EXPECT_EQ(answer(parse("?page=1&use_regex=true&name=%5Eeu"), items).at("item_count"), 0);
  EXPECT_EQ(names(answer(parse("?page=1&use_regex=true&name=%5B%5Ea%5D%7B2%7D%5C."), items)),
            (std::vector<std::string>{"Orders.EU"}));
}

// --- plain structs: render only what is shown ---------------------------------------------------

struct small_queue {
  std::string vhost;
  std::string name;
  int64_t messages;
};

struct counting_source {
  size_t renders = 0;
  size_t sort_key_calls = 0;
  list_source<small_queue> src;
  explicit counting_source(bool knows_messages) {
    src.name = [](const small_queue& q) -> std::string_view { return q.name; };
    src.vhost = [](const small_queue& q) -> std::string_view { return q.vhost; };
    src.sort_key = [this, knows_messages](const small_queue& q,
                                          std::string_view key) -> std::optional<sort_value> {
      ++sort_key_calls;
      if (knows_messages && key == "messages") return double(q.messages);
      return std::nullopt;
    };
    src.render = [this](const small_queue& q) {
      ++renders;
      return json{{"name", q.name},
                  {"vhost", q.vhost},
                  {"messages", q.messages},
                  {"message_stats", {{"publish", q.messages * 2}}}};
    };
  }
};

std::vector<small_queue> many_queues(size_t n) {
  std::vector<small_queue> out;
  out.reserve(n);
  // Names in a scrambled order, so that sorting has work to do.
  for (size_t i = 0; i < n; ++i) {
    size_t k = (i * 7919) % n;
    out.push_back({"/", "queue-" + std::to_string(1000000 + k), int64_t(k % 1000)});
  }
  return out;
}

json answer_structs(const list_query& q, std::vector<small_queue> items, counting_source& s) {
  auto r = answer_list(q, std::move(items), s.src);
  if (auto* e = std::get_if<query_error>(&r)) {
    ADD_FAILURE() << e->error << ": " << e->reason;
    return nullptr;
  }
  return std::get<json>(r);
}

TEST(ListQueryStructs, HundredThousandPageRendersOnlyThePage) {
  counting_source s(true);
  json page = answer_structs(parse("?page=1&page_size=100&sort=name"), many_queues(100000), s);
  EXPECT_EQ(s.renders, 100u);
  EXPECT_EQ(s.sort_key_calls, 0u);  // name comes from src.name
  EXPECT_EQ(page.at("total_count"), 100000);
  EXPECT_EQ(page.at("page_count"), 1000);
  ASSERT_EQ(page.at("items").size(), 100u);
  for (size_t i = 0; i < 100; ++i) {
    EXPECT_EQ(page.at("items")[i].at("name"), "queue-" + std::to_string(1000000 + i));
  }

  // A middle page, reversed, on a key the source knows.
  counting_source s2(true);
  json mid = answer_structs(
      parse("?page=7&page_size=50&sort=messages&sort_reverse=true&columns=name,messages"),
      many_queues(100000), s2);
  EXPECT_EQ(s2.renders, 50u);
  // 100 queues have each count; reversed: 999 x100, 998 x100, 997 x100, 996: pages 7 is 300..349.
  for (const auto& item : mid.at("items")) {
    EXPECT_EQ(item.at("messages"), 996);
    EXPECT_EQ(item.size(), 2u);
  }
  // Ties on messages go by vhost then name, reversed too.
  EXPECT_GT(mid.at("items")[0].at("name").get<std::string>(),
            mid.at("items")[1].at("name").get<std::string>());
}

TEST(ListQueryStructs, UnknownKeyFallsBackToTheRenderedJson) {
  counting_source s(false);
  json page = answer_structs(parse("?page=2&page_size=10&sort=message_stats.publish"),
                             many_queues(1000), s);
  EXPECT_EQ(s.renders, 1000u);  // each item once: the page reuses what sorting rendered
  ASSERT_EQ(page.at("items").size(), 10u);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(page.at("items")[i].at("message_stats").at("publish"), 2 * (10 + i));
  }
  // The same order as when the source knows the key.
  counting_source k(true);
  json known = answer_structs(parse("?page=2&page_size=10&sort=messages"), many_queues(1000), k);
  EXPECT_EQ(names(page), names(known));
}

TEST(ListQueryStructs, PlainListAndFilter) {
  counting_source s(true);
  json all = answer_structs(parse("?columns=name"), many_queues(30), s);
  EXPECT_EQ(s.renders, 30u);
  ASSERT_EQ(all.size(), 30u);
  EXPECT_EQ(all[0], json({{"name", "queue-1000000"}}));
  counting_source f(true);
  json page = answer_structs(parse("?page=1&name=QUEUE-100001"), many_queues(30), f);
  EXPECT_EQ(names(page), (std::vector<std::string>{
                             "queue-1000010", "queue-1000011", "queue-1000012", "queue-1000013",
                             "queue-1000014", "queue-1000015", "queue-1000016", "queue-1000017",
                             "queue-1000018", "queue-1000019"}));
  EXPECT_EQ(f.renders, 10u);
}

}  // namespace
}  // namespace warren::mgmt
