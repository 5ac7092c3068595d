// Prometheus's text exposition format (version 0.0.4): families with their # HELP and # TYPE
// lines, samples with escaped label values, histograms. A pure writer into a string; it knows no
// metric and no socket.
//
// Hand-written rather than a client library: Debian 12 packages no C++ Prometheus client
// (prometheus-cpp is not in bookworm), and a client's registry of long-lived metric objects
// updated in place does not fit how Warren keeps statistics (counters on each object's worker,
// copied and added up when a scrape asks). Printing one snapshot needs only this.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

namespace warren::mgmt::prom {

enum class metric_type { counter, gauge, histogram, untyped };

struct label {
  std::string_view name;
  std::string_view value;
};
using labels = std::initializer_list<label>;

// The exposition's escapes: a label value escapes backslash, double quote and line feed; help
// text backslash and line feed.
std::string escape_label_value(std::string_view v);
std::string escape_help(std::string_view v);
// A sample value: the shortest text that reads back as the same double; +Inf, -Inf, NaN.
std::string format_value(double v);

// One document (one scrape's answer). Not thread-safe; used on one worker.
class text_writer {
 public:
  // Begins a family: its # HELP and # TYPE lines. Samples that follow belong to it until the
  // next begin, so a family's samples stay together as the format requires. A name begins at
  // most once per document, and a counter's name ends in _total (the name its samples carry):
  // both are programming errors, thrown as std::logic_error.
  void begin(std::string_view name, metric_type type, std::string_view help);
  // A sample of the current family (not of a histogram).
  void sample(std::span<const label> ls, uint64_t value);
  void sample(std::span<const label> ls, double value);
  void sample(labels ls, uint64_t value) {
    sample(std::span<const label>(ls.begin(), ls.size()), value);
  }
  void sample(labels ls, double value) {
    sample(std::span<const label>(ls.begin(), ls.size()), value);
  }
  // A histogram's series: one _bucket per upper bound (`le`, written exactly as given; the last
  // should be "+Inf"), with cumulative counts, then _sum and _count.
  void histogram(std::span<const label> ls, std::span<const std::string_view> le,
                 std::span<const uint64_t> cumulative, double sum, uint64_t count);

  // A label every series of the document carries from now on, after its own labels, unless the
  // series already has a label of that name (a cluster's node writes `rabbitmq_node` this way).
  void add_common_label(std::string name, std::string value);

  size_t families() const { return names_.size(); }
  const std::string& text() const { return out_; }
  std::string take() { return std::move(out_); }

 private:
  void series(std::string_view suffix, std::span<const label> ls, const label* extra);

  std::string out_;
  std::string family_;
  metric_type type_ = metric_type::untyped;
  std::unordered_set<std::string> names_;
  std::vector<std::pair<std::string, std::string>> common_;
};

}  // namespace warren::mgmt::prom
