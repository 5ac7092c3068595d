// The text exposition format's writer.
#include "mgmt/prometheus_text.hpp"

#include <fmt/format.h>

#include <cmath>
#include <iterator>
#include <stdexcept>

namespace warren::mgmt::prom {

namespace {

std::string_view type_name(metric_type t) {
  switch (t) {
    case metric_type::counter:
      return "counter";
    case metric_type::gauge:
      return "gauge";
    case metric_type::histogram:
      return "histogram";
    case metric_type::untyped:
      break;
  }
  return "untyped";
}

}  // namespace

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  return fmt::format("{}", v);
}

void text_writer::begin(std::string_view name, metric_type type, std::string_view help) {
  if (type == metric_type::counter && !name.ends_with("_total"))
    throw std::logic_error(fmt::format("counter {} does not end in _total", name));
  if (!names_.emplace(name).second)
    throw std::logic_error(fmt::format("family {} begun twice", name));
  family_.assign(name);
  type_ = type;
  auto out = std::back_inserter(out_);
  fmt::format_to(out, "# HELP {} {}\n# TYPE {} {}\n", name, escape_help(help), name,
                 type_name(type));
}

void text_writer::add_common_label(std::string name, std::string value) {
  common_.emplace_back(std::move(name), std::move(value));
}

void text_writer::series(std::string_view suffix, std::span<const label> ls, const label* extra) {
  out_ += family_;
  out_ += suffix;
  auto has = [&](std::string_view name) {
    for (const auto& l : ls)
      if (l.name == name) return true;
    return extra && extra->name == name;
  };
  bool any_common = false;
  for (const auto& [name, value] : common_) any_common = any_common || !has(name);
  if (!ls.empty() || extra || any_common) {
    out_ += '{';
    bool first = true;
    auto add = [&](const label& l) {
      if (!first) out_ += ',';
      first = false;
      out_ += l.name;
      out_ += "=\"";
      out_ += escape_label_value(l.value);
      out_ += '"';
    };
    for (const auto& l : ls) add(l);
    for (const auto& c : common_)
      if (!has(c.first)) add({c.first, c.second});
    if (extra) add(*extra);
    out_ += '}';
  }
  out_ += ' ';
}

void text_writer::sample(std::span<const label> ls, uint64_t value) {
  series("", ls, nullptr);
  fmt::format_to(std::back_inserter(out_), "{}\n", value);
}

void text_writer::sample(std::span<const label> ls, double value) {
  series("", ls, nullptr);
  out_ += format_value(value);
  out_ += '\n';
}

void text_writer::histogram(std::span<const label> ls, std::span<const std::string_view> le,
                            std::span<const uint64_t> cumulative, double sum, uint64_t count) {
  for (size_t i = 0; i < le.size() && i < cumulative.size(); ++i) {
    label bound{"le", le[i]};
    series("_bucket", ls, &bound);
    fmt::format_to(std::back_inserter(out_), "{}\n", cumulative[i]);
  }
  series("_sum", ls, nullptr);
  out_ += format_value(sum);
  out_ += '\n';
  series("_count", ls, nullptr);
  fmt::format_to(std::back_inserter(out_), "{}\n", count);
}

}  // namespace warren::mgmt::prom
