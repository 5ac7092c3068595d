// A channel's publishes routed on its own worker and handed to other workers' shards
// (docs/architecture.md, "Spreading queues over workers"): they stay in flight, for the
// connection's flow control, until every shard handed one has taken it.
#include "amqp/server/channel_internal.hpp"

namespace warren::amqp::server {

const broker::shard_answer* channel::flow_answer() {
  if (!flow_answer_)
    flow_answer_ = std::make_shared<broker::shard_answer>([link = link_](uint64_t, bool) {
      link->worker().run_or_post([link] {
        if (link->ch) link->ch->on_handed(0);
      });
    });
  return flow_answer_.get();
}

void channel::on_handed(uint64_t seq) {
  for (auto& h : handed_)
    if (h.seq == seq && h.remaining > 0) {
      --h.remaining;
      break;
    }
  while (!handed_.empty() && handed_.front().remaining == 0) {
    uint64_t bytes = handed_.front().bytes;
    handed_.pop_front();
    conn_.publish_finished(1, bytes);
    if (inflight_publishes_ > 0) --inflight_publishes_;
    inflight_bytes_ -= std::min(bytes, inflight_bytes_);
  }
}

}  // namespace warren::amqp::server
