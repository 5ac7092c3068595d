// The x-recent-history exchange's memory: the last N messages it routed, replayed oldest first to
// each new binding. Owned by its exchange on the exchange's worker; not thread-safe.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "common/field_table.hpp"

namespace warren::broker {

inline constexpr size_t default_history_length = 20;  // the plugin's KEEP_NB

// A bounded ring of the newest `capacity()` items. Storage grows with the items actually kept,
// not with the capacity, since a declare may ask for a very large length.
template <typename T>
class recent_history {
 public:
  explicit recent_history(size_t capacity = default_history_length) : capacity_(capacity) {}

  // Keeps `item` as the newest, dropping the oldest when full. With capacity 0 it keeps nothing.
  void push(T item) {
    if (capacity_ == 0) return;
    if (items_.size() < capacity_) {
      if (items_.size() == items_.capacity())
        items_.reserve(std::min(capacity_, std::max<size_t>(8, items_.size() * 2)));
      items_.push_back(std::move(item));  // not full yet: head_ is 0, order is push order
      return;
    }
    items_[head_] = std::move(item);
    head_ = head_ + 1 == capacity_ ? 0 : head_ + 1;
  }

  // Calls fn(const T&) for each item, oldest to newest.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    const size_t n = items_.size();
    for (size_t i = 0, at = head_; i < n; ++i, at = at + 1 == n ? 0 : at + 1) fn(items_[at]);
  }

  // Keeps the newest min(size(), n) items.
  void set_capacity(size_t n) {
    std::rotate(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_), items_.end());
    head_ = 0;
    if (items_.size() > n) {
      items_.erase(items_.begin(), items_.end() - static_cast<std::ptrdiff_t>(n));
      items_.shrink_to_fit();
    }
    capacity_ = n;
  }

  void clear() {
    items_.clear();
    head_ = 0;
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  size_t capacity() const { return capacity_; }

 private:
  std::vector<T> items_;  // once full, items_[head_] is the oldest
  size_t head_ = 0;
  size_t capacity_;
};

// The exchange's "x-recent-history-length" argument, as the plugin validates it on declare:
// absent -> 20; a signed integer ('b', 's', 'I', 'l', and 'L', which RabbitMQ decodes as a
// signed long) greater than 0 -> that value. Zero, negatives, unsigned types ('B', 'u', 'i'),
// strings and floats -> nullopt, which the caller answers with 406 PRECONDITION_FAILED. (The
// plugin's README says "greater or equal to zero" but its code refuses 0.)
inline std::optional<size_t> parse_history_length(const common::field_table& args) {
  const common::field_value* v = args.find("x-recent-history-length");
  if (!v) return default_history_length;
  int64_t n;
  if (auto p = v->get_if<int8_t>()) {
    n = *p;
  } else if (auto p = v->get_if<int16_t>()) {
    n = *p;
  } else if (auto p = v->get_if<int32_t>()) {
    n = *p;
  } else if (auto p = v->get_if<int64_t>()) {
    n = *p;
  } else if (auto p = v->get_if<uint64_t>()) {
    n = static_cast<int64_t>(*p);
  } else {
    return std::nullopt;
  }
  if (n <= 0) return std::nullopt;
  return static_cast<size_t>(n);
}

// A message carrying the header "x-recent-history-no-store" = true (a boolean; any other type
// or value does not count) is routed but not remembered.
inline bool history_no_store(const common::field_table* message_headers) {
  return message_headers && common::table_bool(*message_headers, "x-recent-history-no-store") ==
                                std::optional<bool>(true);
}

}  // namespace warren::broker
