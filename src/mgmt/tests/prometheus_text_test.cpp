// The text exposition writer: escaping, HELP and TYPE once per family, counters in _total,
// histogram series and value formatting.
#include "mgmt/prometheus_text.hpp"

#include <gtest/gtest.h>

#include <array>
#include <limits>
#include <stdexcept>

namespace warren::mgmt::prom {
namespace {

TEST(prometheus_text, label_values_escape_backslash_quote_and_newline) {
  EXPECT_EQ(escape_label_value("plain /vhost"), "plain /vhost");
  EXPECT_EQ(escape_label_value("a\\b"), "a\\\\b");
  EXPECT_EQ(escape_label_value("say \"hi\""), "say \\\"hi\\\"");
  EXPECT_EQ(escape_label_value("two\nlines"), "two\\nlines");
  // Other bytes (tabs, UTF-8) pass unchanged.
  EXPECT_EQ(escape_label_value("t\tü"), "t\tü");
}

TEST(prometheus_text, help_escapes_backslash_and_newline_but_not_quotes) {
  EXPECT_EQ(escape_help("a \"b\" \\ c\nd"), "a \"b\" \\\\ c\\nd");
}

TEST(prometheus_text, family_lines_then_samples) {
  text_writer w;
  w.begin("rabbitmq_queues", metric_type::gauge, "Queues available");
  w.sample({}, uint64_t(3));
  w.begin("rabbitmq_queue_messages", metric_type::gauge, "Sum\nof \\ things");
  w.sample({{"vhost", "/"}, {"queue", "q \"1\""}}, uint64_t(7));
  w.sample({{"vhost", "/"}, {"queue", "back\\slash"}}, 0.5);
  EXPECT_EQ(w.text(),
            "# HELP rabbitmq_queues Queues available\n"
            "# TYPE rabbitmq_queues gauge\n"
            "rabbitmq_queues 3\n"
            "# HELP rabbitmq_queue_messages Sum\\nof \\\\ things\n"
            "# TYPE rabbitmq_queue_messages gauge\n"
            "rabbitmq_queue_messages{vhost=\"/\",queue=\"q \\\"1\\\"\"} 7\n"
            "rabbitmq_queue_messages{vhost=\"/\",queue=\"back\\\\slash\"} 0.5\n");
  EXPECT_EQ(w.families(), 2u);
}

TEST(prometheus_text, a_family_begins_once) {
  text_writer w;
  w.begin("x", metric_type::gauge, "h");
  EXPECT_THROW(w.begin("x", metric_type::gauge, "h"), std::logic_error);
}

TEST(prometheus_text, counters_end_in_total) {
  text_writer w;
  EXPECT_THROW(w.begin("rabbitmq_connections_opened", metric_type::counter, "h"), std::logic_error);
  w.begin("rabbitmq_connections_opened_total", metric_type::counter, "h");
  w.sample({}, uint64_t(1));
  EXPECT_NE(w.text().find("# TYPE rabbitmq_connections_opened_total counter\n"), std::string::npos);
  // Other types may end as they like; untyped is written as such.
  w.begin("rabbitmq_identity_info", metric_type::untyped, "h");
  EXPECT_NE(w.text().find("# TYPE rabbitmq_identity_info untyped\n"), std::string::npos);
}

TEST(prometheus_text, histogram_buckets_sum_and_count) {
  text_writer w;
  w.begin("h_bytes", metric_type::histogram, "sizes");
  std::array<std::string_view, 3> le{"100.0", "1e+06", "+Inf"};
  std::array<uint64_t, 3> counts{1, 3, 4};
  std::array<label, 1> ls{label{"protocol", "amqp091"}};
  w.histogram(ls, le, counts, 1234.5, 4);
  EXPECT_EQ(w.text(),
            "# HELP h_bytes sizes\n"
            "# TYPE h_bytes histogram\n"
            "h_bytes_bucket{protocol=\"amqp091\",le=\"100.0\"} 1\n"
            "h_bytes_bucket{protocol=\"amqp091\",le=\"1e+06\"} 3\n"
            "h_bytes_bucket{protocol=\"amqp091\",le=\"+Inf\"} 4\n"
            "h_bytes_sum{protocol=\"amqp091\"} 1234.5\n"
            "h_bytes_count{protocol=\"amqp091\"} 4\n");
}

TEST(prometheus_text, a_common_label_goes_on_every_series_it_is_not_already_on) {
  text_writer w;
  w.add_common_label("rabbitmq_node", "n1");
  w.begin("plain", metric_type::gauge, "no labels");
  w.sample({}, uint64_t(1));
  w.begin("own", metric_type::gauge, "own labels");
  w.sample({{"queue", "q"}}, uint64_t(2));
  w.sample({{"rabbitmq_node", "other"}}, uint64_t(3));
  w.begin("h_bytes", metric_type::histogram, "sizes");
  std::array<std::string_view, 1> le{"+Inf"};
  std::array<uint64_t, 1> counts{4};
  w.histogram({}, le, counts, 8, 4);
  EXPECT_EQ(w.text(),
            "# HELP plain no labels\n"
            "# TYPE plain gauge\n"
            "plain{rabbitmq_node=\"n1\"} 1\n"
            "# HELP own own labels\n"
            "# TYPE own gauge\n"
            "own{queue=\"q\",rabbitmq_node=\"n1\"} 2\n"
            "own{rabbitmq_node=\"other\"} 3\n"
            "# HELP h_bytes sizes\n"
            "# TYPE h_bytes histogram\n"
            "h_bytes_bucket{rabbitmq_node=\"n1\",le=\"+Inf\"} 4\n"
            "h_bytes_sum{rabbitmq_node=\"n1\"} 8\n"
            "h_bytes_count{rabbitmq_node=\"n1\"} 4\n");
}

TEST(prometheus_text, values) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(1.5), "1.5");
  EXPECT_EQ(format_value(0.0005), "0.0005");
  EXPECT_EQ(format_value(2.5), "2.5");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(std::stod(format_value(1712345678.123)), 1712345678.123);
}

}  // namespace
}  // namespace warren::mgmt::prom
