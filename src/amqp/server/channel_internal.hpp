// What channel.cpp and channel_declarations.cpp share: the trip of an operation to the vhost's
// worker and back (call_vhost), and the permission checks a channel carries with it.
#pragma once

#include <memory>
#include <string_view>

#include "amqp/server/channel.hpp"
#include "amqp/server/connection.hpp"
#include "broker/access_checks.hpp"
#include "broker/vhost.hpp"
#include "net/worker.hpp"

namespace warren::amqp::server {

template <typename Task>
void run_on(net::worker& w, Task task, bool urgent);

// The checks to carry to the vhost's worker.
inline broker::access_checks checks_of(amqp_connection& c) {
  return broker::access_checks{c.access(), c.user().name};
}

// What to carry for a topic check on `exchange`: null (nothing to carry) unless the user has a
// topic permission on an exchange of that name, which most users do not.
inline std::shared_ptr<const broker::access_checks> topic_checks(amqp_connection& c,
                                                                 std::string_view exchange) {
  auto checks = checks_of(c);
  if (!checks.has_topic_rule(exchange)) return nullptr;
  return std::make_shared<const broker::access_checks>(std::move(checks));
}

template <typename Op, typename Reply>
void channel::call_vhost(Op op, Reply reply, bool urgent) {
  call_shard(SIZE_MAX, std::move(op), std::move(reply), urgent);
}

template <typename Op, typename Reply>
void channel::call_shard(size_t shard, Op op, Reply reply, bool urgent, bool ordered) {
  broker::vhost* v = &conn_.vhost();
  if (shard != SIZE_MAX && shard != v->home_worker())
    v = &v->shard_at(shard);
  else
    shard = SIZE_MAX;
  ++pending_;
  if (shard != SIZE_MAX)
    return to_shard(shard, bound_call(v, link_, std::move(op), std::move(reply)), urgent, ordered);
  ++home_calls_;
  auto run = bound_call(v, link_, std::move(op),
                        [reply = std::move(reply)](channel& ch, auto& result) mutable {
                          --ch.home_calls_;
                          reply(ch, result);
                        });
  // Both hops are plain calls when the channel runs on the vhost's home worker.
  run_on(conn_.home_of(*v), std::move(run), urgent);
}

// Runs task now when on w's thread, else posts it (ahead of ordinary tasks when urgent).
template <typename Task>
void run_on(net::worker& w, Task task, bool urgent) {
  if (w.on_own_thread())
    task();
  else if (urgent)
    w.post_urgent(std::move(task));
  else
    w.post(std::move(task));
}

template <typename Op, typename Reply>
auto channel::bound_call(broker::vhost* v, std::shared_ptr<channel_link> link, Op op, Reply reply) {
  // Captures move along rather than copy: every shared_ptr copy is an atomic count that the
  // other worker's cache then has to fetch back.
  return [v, link = std::move(link), op = std::move(op), reply = std::move(reply)]() mutable {
    auto result = op(*v);
    net::worker& w = link->worker();
    w.run_or_post(
        [link = std::move(link), result = std::move(result), reply = std::move(reply)]() mutable {
          if (!link->ch) return;
          channel& ch = *link->ch;
          reply(ch, result);
          // The reply may have closed the channel or the whole connection (a hard error destroys
          // every channel): only a channel still attached to its link is touched again.
          if (link->ch) link->ch->reply_done();
        });
  };
}

template <typename Op, typename Reply>
void channel::call_queue(const std::string& queue, Op op, Reply reply) {
  broker::vhost* a = &conn_.vhost();
  if (!sharded_) return call_vhost(std::move(op), std::move(reply));
  if (pending_ == 0) return call_shard(a->locate_queue(queue), std::move(op), std::move(reply));
  // Something of ours is on its way through the home (the queue's declaration, a publish to it):
  // the queue's shard is looked up there, after it, and the call goes on from there.
  ++pending_;
  on_queue(
      queue,
      [link = link_, op = std::move(op), reply = std::move(reply)](broker::vhost* v) mutable {
        bound_call(v, link, std::move(op), std::move(reply))();
      },
      false);
}

template <typename F>
void channel::on_queue(const std::string& queue, F fn, bool settled) {
  broker::vhost* a = &conn_.vhost();
  net::worker_pool* pool = conn_.context().pool;
  auto go = [a, pool, queue, fn = std::move(fn)]() mutable {
    size_t s = a->locate_queue(queue);
    broker::vhost* v = &a->shard_at(s);
    net::worker& w = a->shard_count() == 1 ? pool->at(a->home_worker()) : pool->at(s);
    if (w.on_own_thread())
      fn(v);
    else
      w.post([v, fn = std::move(fn)]() mutable { fn(v); });
  };
  if (!sharded_ || settled) return go();
  conn_.home_of(*a).run_or_post(std::move(go));
}

template <typename Task>
void channel::to_shard(size_t shard, Task task, bool urgent, bool ordered) {
  net::worker& w = conn_.worker_at(shard);
  if (ordered && inflight_publishes_ > 0) {
    // Our publishes still on their way through the home would reach the shard after this: it
    // follows them there (a basic.get after a publish sees the message, as on one worker).
    conn_.home_of(conn_.vhost()).run_or_post([&w, task = std::move(task)]() mutable {
      if (w.on_own_thread())
        task();
      else
        w.post(std::move(task));
    });
    return;
  }
  run_on(w, std::move(task), urgent);
}

}  // namespace warren::amqp::server
