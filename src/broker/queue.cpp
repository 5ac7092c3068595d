// Queue storage and limits.
#include "broker/queue.hpp"

#include <algorithm>

namespace warren::broker {

namespace {

std::optional<int64_t> as_integer(const common::field_value& v) {
  return std::visit(
      [](const auto& x) -> std::optional<int64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return int64_t(x);
        return std::nullopt;
      },
      v.v);
}

}  // namespace

maybe_error parse_queue_arguments(const common::field_table& args, queue_limits& limits) {
  for (const auto& e : args.entries) {
    const std::string& k = e.key;
    if (k == "x-max-length" || k == "x-max-length-bytes") {
      auto n = as_integer(e.value);
      if (!n || *n < 0)
        return error{error_code::precondition_failed,
                     "invalid arg '" + k + "': expected a non-negative integer"};
      (k == "x-max-length" ? limits.max_length : limits.max_bytes) = uint64_t(*n);
    } else if (k == "x-overflow") {
      auto s = e.value.get_if<std::string>();
      if (s && *s == "drop-head")
        limits.overflow = overflow_mode::drop_head;
      else if (s && *s == "reject-publish")
        limits.overflow = overflow_mode::reject_publish;
      else
        return error{error_code::precondition_failed,
                     "invalid arg 'x-overflow': expected drop-head or reject-publish"};
    } else if (k == "x-queue-type") {
      auto s = e.value.get_if<std::string>();
      if (!s || *s != "classic")
        return error{error_code::precondition_failed,
                     "invalid arg 'x-queue-type': only 'classic' queues exist in Warren"};
    }
    // Other x- arguments (TTL, dead-lettering, priorities) are accepted and stored; they take
    // effect as the broker model grows (see docs/compatibility.md).
  }
  return std::nullopt;
}

bool queue::enqueue(message_ptr m) {
  if (limits_.overflow == overflow_mode::reject_publish) {
    if ((limits_.max_length && ready_.size() >= *limits_.max_length) ||
        (limits_.max_bytes && bytes_ + m->body.size() > *limits_.max_bytes))
      return false;
  }
  bytes_ += m->body.size();
  ready_.push_back(entry{next_seq_++, std::move(m), false});
  enforce_limits();
  return true;
}

void queue::enforce_limits() {
  // drop-head: the oldest messages make room (RabbitMQ's default overflow behaviour).
  while (!ready_.empty() && ((limits_.max_length && ready_.size() > *limits_.max_length) ||
                             (limits_.max_bytes && bytes_ > *limits_.max_bytes))) {
    bytes_ -= ready_.front().msg->body.size();
    ready_.pop_front();
  }
}

std::optional<queue::entry> queue::take() {
  if (ready_.empty()) return std::nullopt;
  entry e = std::move(ready_.front());
  ready_.pop_front();
  bytes_ -= e.msg->body.size();
  return e;
}

void queue::requeue(entry e) {
  e.redelivered = true;
  bytes_ += e.msg->body.size();
  auto pos = std::lower_bound(ready_.begin(), ready_.end(), e.seq,
                              [](const entry& x, uint64_t s) { return x.seq < s; });
  ready_.insert(pos, std::move(e));
}

size_t queue::purge() {
  size_t n = ready_.size();
  ready_.clear();
  bytes_ = 0;
  return n;
}

}  // namespace warren::broker
