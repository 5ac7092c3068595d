// What comes back to a channel for its publishes: publisher confirms (in sequence order, once
// the store has synced them and every shard that took one has answered), and the answers of
// shards handed a publish routed on the channel's own worker (docs/architecture.md, "Spreading
// queues over workers"), which keep it in flight for the connection's flow control until then.
#include "amqp/server/channel_internal.hpp"

namespace warren::amqp::server {

using namespace protocol;

void channel::confirm_later(uint64_t seq) {
  // Replies come back in publish order, so every sequence number up to `seq` is settled: one
  // basic.ack with multiple=true covers the batch, sent once the current burst of replies is in.
  acked_upto_ = seq;
  if (confirm_flush_scheduled_) return;
  confirm_flush_scheduled_ = true;
  link_->worker().post([link = link_] {
    if (link->ch) link->ch->send_pending_confirms();
  });
}

void channel::confirm_after_sync(uint64_t seq, uint64_t ticket, bool nack) {
  // Confirms go out in sequence order, so one that needs no sync still waits behind those that do.
  if (!unsynced_.empty()) ticket = std::max(ticket, unsynced_.back().ticket);
  unsynced_.push_back({seq, ticket, nack});
  wait_for_sync();
}

void channel::on_shard_answer(uint64_t seq, uint64_t ticket, bool rejected) {
  if (seq != 0 && !handed_.empty()) on_handed(seq);
  max_ticket_ = std::max(max_ticket_, ticket);
  if (seq == 0) {
    if (--remote_outstanding_ == 0 && !after_remote_.empty()) {
      auto waiting = std::move(after_remote_);
      after_remote_.clear();
      for (auto& fn : waiting) fn();
    }
    return;
  }
  for (auto& c : unsynced_)
    if (c.seq == seq) {
      --c.remaining;
      c.ticket = std::max(c.ticket, ticket);
      c.nack = c.nack || rejected;
      break;
    }
  on_synced();
}

void channel::wait_for_sync() {
  if (sync_wait_ || unsynced_.empty() || !unsynced_.front().counted ||
      unsynced_.front().remaining != 0)
    return;
  broker::journal* j = conn_.vhost().get_journal();
  if (!j) return;
  sync_wait_ = true;
  // The callback may run on the store's writer thread: it only posts back to this worker.
  j->when_synced(unsynced_.front().ticket, [link = link_] {
    link->worker().post([link] {
      if (link->ch) link->ch->on_synced();
    });
  });
}

void channel::on_synced() {
  sync_wait_ = false;
  broker::journal* j = conn_.vhost().get_journal();
  uint64_t synced = j ? j->synced() : UINT64_MAX;
  while (!unsynced_.empty() && unsynced_.front().counted && unsynced_.front().remaining == 0 &&
         unsynced_.front().ticket <= synced) {
    auto c = unsynced_.front();
    unsynced_.pop_front();
    if (c.nack) {
      send_pending_confirms();
      if (state_ == state::open) conn_.send(id_, basic_nack{c.seq, false, false});
      // Written now: a publisher waiting for this answer sends nothing else that would flush it
      // (a node's link that closed nacks its publishes here, outside any reply).
      conn_.conn().flush_soon();
      acked_upto_ = acked_sent_ = c.seq;
    } else {
      acked_upto_ = c.seq;
    }
  }
  send_pending_confirms();
  wait_for_sync();
}

void channel::send_pending_confirms() {
  confirm_flush_scheduled_ = false;
  if (acked_upto_ <= acked_sent_ || state_ != state::open) return;
  conn_.send(id_, basic_ack{acked_upto_, acked_upto_ - acked_sent_ > 1});
  broker::count(broker::global_counters::confirmed, acked_upto_ - acked_sent_);
  stat_confirmed_ += acked_upto_ - acked_sent_;
  acked_sent_ = acked_upto_;
  conn_.conn().flush_soon();
}

const broker::shard_answer* channel::flow_answer() {
  if (!flow_answer_) {
    flow_ = std::make_shared<handover_flow>();
    // Runs on the shard's worker: one atomic decrement, and a post only for the resume.
    flow_answer_ =
        std::make_shared<broker::shard_answer>([link = link_, flow = flow_](uint64_t, bool) {
          // Sequentially consistent, as the channel's side in count_handed: see there.
          int64_t left = flow->outstanding.fetch_sub(1, std::memory_order_seq_cst) - 1;
          if (left <= handed_low && flow->waiting.load(std::memory_order_seq_cst) &&
              flow->waiting.exchange(false, std::memory_order_acq_rel))
            link->worker().run_or_post([link] {
              if (link->ch) link->ch->resume_handed();
            });
        });
  }
  return flow_answer_.get();
}

void channel::count_handed(uint32_t n) {
  int64_t now = flow_->outstanding.fetch_add(n, std::memory_order_acq_rel) + n;
  if (now < handed_high || handover_paused_) return;
  handover_paused_ = true;
  conn_.throttle(true);
  // The shards may have taken them all between the count and the flag: nobody would post. The
  // flag's store and the count's load here, the count's decrement and the flag's load on the
  // shard, are sequentially consistent: with release and acquire only, x86 may let this load run
  // before the store is visible, and each side would miss the other (a publisher held forever).
  flow_->waiting.store(true, std::memory_order_seq_cst);
  if (flow_->outstanding.load(std::memory_order_seq_cst) <= handed_low &&
      flow_->waiting.exchange(false, std::memory_order_acq_rel))
    resume_handed();
}

void channel::resume_handed() {
  if (!handover_paused_) return;
  handover_paused_ = false;
  conn_.throttle(false);
}

void channel::on_handed(uint64_t seq) {
  for (auto& h : handed_)
    if (h.seq == seq && (h.remaining > 0 || !h.counted)) {
      --h.remaining;
      break;
    }
  pop_handed();
}

void channel::pop_handed() {
  while (!handed_.empty() && handed_.front().counted && handed_.front().remaining <= 0) {
    uint64_t bytes = handed_.front().bytes;
    handed_.pop_front();
    conn_.publish_finished(1, bytes);
    if (inflight_publishes_ > 0) --inflight_publishes_;
    inflight_bytes_ -= std::min(bytes, inflight_bytes_);
  }
}

}  // namespace warren::amqp::server
