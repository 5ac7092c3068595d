// The vhost: shards, exchanges, queue declarations and their persistence. Messages on their way
// through the queues are broker/vhost_messages.cpp; routing itself broker/routing.cpp; consumers,
// deliveries and acknowledgements vhost_deliveries.cpp; queues on other nodes vhost_remote.cpp.
// Reply codes and texts follow RabbitMQ 3.10 (rabbit_channel, rabbit_amqqueue, rabbit_exchange).
#include "broker/vhost.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <random>

#include "common/utf8.hpp"

namespace warren::broker {

namespace {

std::string bool_text(bool b) {
  return b ? "true" : "false";
}

error inequivalent(std::string_view what, std::string_view arg, std::string_view name,
                   std::string_view vhost, std::string_view received, std::string_view current) {
  return error{error_code::precondition_failed,
               fmt::format("inequivalent arg '{}' for {} '{}' in vhost '{}': received '{}' but "
                           "current is '{}'",
                           arg, what, name, vhost, received, current)};
}

// A name that is not UTF-8 could not be shown by the management API, written to JSON definitions
// or to a cluster's etcd as it is: refused when the queue or exchange would be created.
error invalid_name(std::string_view what) {
  return error{error_code::precondition_failed, fmt::format("{} name is not valid UTF-8", what)};
}

// "amq.gen-" and 22 URL-safe base64 characters, like RabbitMQ's server-named queues.
std::string generated_queue_name() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string s = "amq.gen-";
  for (int i = 0; i < 22; ++i) s += alphabet[rng() % 64];
  return s;
}

// The first key whose value differs between two argument tables, if any.
std::optional<std::string> first_difference(const common::field_table& a,
                                            const common::field_table& b) {
  for (const auto& e : a.entries) {
    const common::field_value* o = b.find(e.key);
    if (!o || !(*o == e.value)) return e.key;
  }
  for (const auto& e : b.entries)
    if (!a.find(e.key)) return e.key;
  return std::nullopt;
}

}  // namespace

vhost::vhost(std::string name, size_t home_worker)
    : name_(std::move(name)), home_(home_worker), shard_(home_worker) {}

// ----------------------------------------------------------------------------- shards

void vhost::enable_shards(size_t count, placement p, shard_poster post, shard_poster defer) {
  placement_ = p;
  post_ = std::move(post);
  defer_ = std::move(defer);
  if (count <= 1 || !shards_.empty()) return;
  shards_.resize(count);
  for (size_t i = 0; i < count; ++i) {
    if (i == home_) {
      shards_[i] = this;
      continue;
    }
    auto sh = std::make_unique<vhost>(name_, home_);
    sh->shard_ = i;
    sh->authority_ = this;
    sh->tag_base_ = uint64_t(i + 1) << tag_shard_shift;
    sh->journal_ = journal_;
    sh->page_threshold_ = page_threshold_;
    shards_[i] = sh.get();
    owned_shards_.push_back(std::move(sh));
  }
  // The built-in exchanges are in every copy from the start; their counts are summed as well.
  for (auto& [n, x] : routing_.exchanges()) {
    x->copied = std::make_shared<copied_counters>(count);
    for (auto& sh : owned_shards_)
      if (exchange* c = sh->routing_.exchange_by_id(x->id())) c->copied = x->copied;
  }
}

void vhost::on_shard(size_t s, std::function<void(vhost&)> fn) {
  // From the authority or a shard (a publish routed on a worker's copy): the authority's posts.
  vhost& a = *authority_;
  vhost& target = a.shard_at(s);
  if (a.direct_ || !a.post_ || &target == this) return fn(target);
  a.post_(s, [&target, fn = std::move(fn)] { fn(target); });
}

void vhost::to_authority(std::function<void(vhost&)> fn) {
  vhost& a = *authority_;
  // From a shard's thread: always a post (on_shard would run it here when the target is the
  // caller), except during recovery, when nothing runs yet.
  if (a.direct_ || !a.post_) return fn(a);
  a.post_(a.home_, [&a, fn = std::move(fn)] { fn(a); });
}

size_t vhost::locate_queue(std::string_view name) const {
  size_t s = located_shard(name);
  return s == SIZE_MAX ? authority_->home_ : s;
}

size_t vhost::located_shard(std::string_view name) const {
  const vhost& a = *authority_;
  if (a.shards_.empty()) return SIZE_MAX;
  std::shared_lock lk(a.located_mutex_);
  auto it = a.located_.find(name);
  return it == a.located_.end() ? SIZE_MAX : it->second;
}

std::optional<std::pair<uint32_t, uint32_t>> vhost::queue_counts(std::string_view name) {
  queue* q = find_queue(name);
  if (!q) return std::nullopt;
  q->last_used = now_ms();
  return std::pair{uint32_t(q->message_count()), uint32_t(q->consumers().size())};
}

void vhost::hand_over(size_t s, message_ptr m, std::vector<dest_id> ids, uint64_t publisher,
                      const shard_answer* answer) {
  vhost& a = *authority_;
  // Gathered, and sent when this worker's handler returns (a socket read's worth of publishes:
  // one mailbox message per destination instead of one per publish, and a wake-up of the other
  // worker per batch). The worker sends them before anything else it posts, so a publish a
  // channel sends later another way (through the authority, or after a basic.get posted to the
  // queue's shard) still comes after these. Without a deferrer (recovery, tests driving shards by
  // hand), sent at once.
  if (outgoing_.size() < a.shard_count()) outgoing_.resize(a.shard_count());
  outgoing_[s].push_back(
      {std::move(m), std::move(ids), publisher, answer ? *answer : shard_answer{}});
  if (a.direct_ || !a.post_ || !a.defer_) return flush_hand_overs();
  if (flush_armed_) return;
  flush_armed_ = true;
  a.defer_(shard_, [this] { flush_hand_overs(); });
}

void vhost::flush_hand_overs() {
  flush_armed_ = false;
  for (size_t s = 0; s < outgoing_.size(); ++s) {
    if (outgoing_[s].empty()) continue;
    std::vector<pending_hand_over> batch;
    batch.swap(outgoing_[s]);
    outgoing_[s].reserve(batch.size());
    on_shard(s, [batch = std::move(batch)](vhost& sh) mutable {
      uint64_t now = now_ms();
      for (auto& h : batch) {
        bool rejected = false;
        uint64_t ticket = sh.enqueue_all(std::move(h.m), h.ids, now, rejected, h.publisher);
        if (h.answer) h.answer(ticket, rejected);
      }
    });
  }
}

void vhost::queue_gone(dest_id id) {
  if (is_authority()) return forget_queue(id);
  to_authority([id](vhost& a) { a.forget_queue(id); });
}

void vhost::forget_queue(dest_id id) {
  auto t = twins_.find(id);
  if (t == twins_.end()) return;  // gone already (deleted through the authority)
  queue* q = queue_by_id(id);
  if (q) drop_definition(*q);
}

maybe_error vhost::remote_queue(std::string_view name) const {
  if (!remote_queue_) return std::nullopt;
  auto info = remote_queue_(name);
  if (!info) return std::nullopt;
  const std::string* node = &info->node;
  // RabbitMQ (rabbit_amqqueue:absent/2, nodedown): a durable queue of a node that is down is
  // known but absent; a transient one is gone with its node.
  if (!info->node_running)
    return info->durable
               ? error{error_code::not_found,
                       fmt::format("home node '{}' of durable queue '{}' in vhost '{}' is down or "
                                   "inaccessible",
                                   *node, name, name_)}
               : error{error_code::not_found,
                       fmt::format("no queue '{}' in vhost '{}'", name, name_)};
  if (info->exclusive)  // no connection of this node owns it (check_exclusive's text)
    return error{error_code::resource_locked,
                 fmt::format("cannot obtain exclusive access to locked queue '{}' in vhost '{}'. "
                             "It could be originally declared on another connection or the "
                             "exclusive property value does not match that of the original "
                             "declaration.",
                             name, name_)};
  return error{error_code::resource_locked,
               fmt::format("queue '{}' in vhost '{}' lives on node '{}' of this cluster; this "
                           "operation is served on that node only",
                           name, name_, *node)};
}

error vhost::no_queue(std::string_view name) const {
  if (auto e = remote_queue(name)) return *e;
  return error{error_code::not_found, fmt::format("no queue '{}' in vhost '{}'", name, name_)};
}

error vhost::no_exchange(std::string_view name) const {
  return error{error_code::not_found, fmt::format("no exchange '{}' in vhost '{}'", name, name_)};
}

queue* vhost::find_queue(std::string_view name) const {
  auto it = queues_.find(name);
  return it == queues_.end() ? nullptr : it->second.get();
}

queue* vhost::queue_by_id(dest_id id) const {
  auto it = queue_ids_.find(id);
  return it == queue_ids_.end() ? nullptr : it->second;
}

bool vhost::has_exchange(std::string_view name) const {
  return find_exchange(name) != nullptr;
}

maybe_error vhost::check_exclusive(const queue& q, uint64_t connection_id) const {
  if (q.settings().exclusive && q.settings().exclusive_owner != connection_id)
    return error{error_code::resource_locked,
                 fmt::format("cannot obtain exclusive access to locked queue '{}' in vhost '{}'. "
                             "It could be originally declared on another connection or the "
                             "exclusive property value does not match that of the original "
                             "declaration.",
                             q.name(), name_)};
  return std::nullopt;
}

// ----------------------------------------------------------------------------- exchanges

maybe_error vhost::declare_exchange(const exchange_settings& s, bool passive) {
  exchange* x = find_exchange(s.name);
  if (passive) {
    if (!x) return no_exchange(s.name);
    return std::nullopt;
  }
  if (s.name.empty())
    return error{error_code::access_refused, "operation not permitted on the default exchange"};
  // As RabbitMQ: the amq. prefix is checked only when creating; an equivalent redeclaration of
  // amq.direct and friends succeeds.
  if (!x && s.name.rfind("amq.", 0) == 0)
    return error{error_code::access_refused,
                 fmt::format("exchange name '{}' contains reserved prefix 'amq.*'", s.name)};
  if (!x && !common::is_valid_utf8(s.name)) return invalid_name("exchange");
  if (!is_known_exchange_type(s.type))
    return error{error_code::command_invalid, fmt::format("unknown exchange type '{}'", s.type)};
  if (auto e = check_exchange_arguments(s)) return e;
  if (x) {
    const auto& c = x->settings();
    if (c.type != s.type) return inequivalent("exchange", "type", s.name, name_, s.type, c.type);
    if (c.durable != s.durable)
      return inequivalent("exchange", "durable", s.name, name_, bool_text(s.durable),
                          bool_text(c.durable));
    if (c.auto_delete != s.auto_delete)
      return inequivalent("exchange", "auto_delete", s.name, name_, bool_text(s.auto_delete),
                          bool_text(c.auto_delete));
    if (c.internal != s.internal)
      return inequivalent("exchange", "internal", s.name, name_, bool_text(s.internal),
                          bool_text(c.internal));
    if (auto k = first_difference(s.arguments, c.arguments))
      return inequivalent("exchange", *k, s.name, name_, "(new value)", "(current value)");
    return std::nullopt;
  }
  change_routing(exchange_added{s, exchange_bit | next_id_++});
  if (journal_ && !restoring_ && s.durable) journal_->exchange_declared(s);
  return std::nullopt;
}

maybe_error vhost::delete_exchange(std::string_view name, bool if_unused) {
  if (name.empty())
    return error{error_code::access_refused, "operation not permitted on the default exchange"};
  if (name.rfind("amq.", 0) == 0)
    return error{error_code::access_refused,
                 fmt::format("exchange name '{}' contains reserved prefix 'amq.*'", name)};
  if (builtin_.count(name))
    return error{error_code::access_refused,
                 fmt::format("operation not permitted on the built-in exchange '{}'", name)};
  exchange* x = find_exchange(name);
  if (!x) return std::nullopt;  // deleting what is not there succeeds, as in RabbitMQ
  if (if_unused && routing_.bound_from(name))
    return error{error_code::precondition_failed,
                 fmt::format("exchange '{}' in vhost '{}' in use", name, name_)};
  std::string gone(name);
  if (journal_ && !restoring_ && x->settings().durable) journal_->exchange_deleted(gone);
  // Bindings from it and to it go with it; exchanges bound to it only may go in turn.
  std::vector<std::string> sources = routing_.sources_bound_to(x->id());
  std::erase(sources, gone);
  change_routing(exchange_removed{gone});
  auto_delete_exchanges(sources);
  return std::nullopt;
}

std::variant<dest_id, error> vhost::queue_dest(std::string_view name, uint64_t connection_id,
                                               bool check_excl) {
  queue* q = find_queue(name);
  if (!q) return no_queue(name);
  if (check_excl)
    if (auto e = check_exclusive(*q, connection_id)) return *e;
  return q->id();
}

std::variant<dest_id, error> vhost::exchange_dest(std::string_view name) const {
  exchange* x = find_exchange(name);
  if (!x) return no_exchange(name);
  if (name.empty())
    return error{error_code::access_refused, "operation not permitted on the default exchange"};
  return x->id();
}

maybe_error vhost::bind(std::string_view source, dest_id dest, const std::string& key,
                        const common::field_table& args) {
  if (source.empty())
    return error{error_code::access_refused, "operation not permitted on the default exchange"};
  exchange* x = find_exchange(source);
  if (!x) return no_exchange(source);
  if (auto e = x->check_binding(key, args)) return e;
  binding b{std::string(source), dest, key, args};
  if (routing_.has_binding(b)) return std::nullopt;  // already bound: idempotent
  change_routing(binding_added{std::move(b)});
  journal_binding(true, source, dest, key, args);
  if (queue_by_id(dest)) {
    // A new member of a recent-history exchange sees what was said before it came.
    std::vector<message_ptr> past;
    x->history(past);
    bool rejected = false;
    int64_t now = now_ms();
    for (auto& m : past) enqueue_all(m, std::span<const dest_id>(&dest, 1), now, rejected, 0);
  }
  return std::nullopt;
}

maybe_error vhost::unbind(std::string_view source, dest_id dest, const std::string& key,
                          const common::field_table& args) {
  if (source.empty())
    return error{error_code::access_refused, "operation not permitted on the default exchange"};
  exchange* x = find_exchange(source);
  if (!x) return no_exchange(source);
  binding b{std::string(source), dest, key, args};
  if (!routing_.has_binding(b)) return std::nullopt;  // RabbitMQ: unbinding what is not bound is ok
  change_routing(binding_removed{std::move(b)});
  journal_binding(false, source, dest, key, args);
  maybe_auto_delete_exchange(source);
  return std::nullopt;
}

void vhost::change_routing(routing_change c, size_t place) {
  routing_.apply(c);
  if (!shards_.empty()) copy_routing(c, place);
  if (routing_observer_) routing_observer_(c);
}

void vhost::auto_delete_exchanges(const std::vector<std::string>& sources) {
  for (const auto& s : sources) maybe_auto_delete_exchange(s);
}

void vhost::maybe_auto_delete_exchange(std::string_view name) {
  exchange* x = find_exchange(name);
  if (!x || !x->settings().auto_delete) return;
  if (!routing_.bound_from(name)) (void)delete_exchange(std::string(name), false);
}

// ----------------------------------------------------------------------------- queues

std::variant<queue_declare_ok, error> vhost::declare_queue(const queue_declare_request& r) {
  if (!restoring_) count(global_counters::queues_declared);
  std::string name = r.name;
  if (r.passive) {
    queue* q = find_queue(name);
    if (!q) return no_queue(name);
    if (auto e = check_exclusive(*q, r.connection_id)) return *e;
    return queue_declare_ok{name, uint32_t(q->message_count()), uint32_t(q->consumers().size()),
                            twin_shard(q->id())};
  }
  if (name.empty()) {
    do name = generated_queue_name();
    while (find_queue(name));
  } else if (name.rfind("amq.", 0) == 0) {
    return error{error_code::access_refused,
                 fmt::format("queue name '{}' contains reserved prefix 'amq.*'", name)};
  } else if (!common::is_valid_utf8(name) && !find_queue(name)) {
    return invalid_name("queue");
  }
  if (!restoring_ && !find_queue(name))
    if (auto e = remote_queue(name)) return *e;
  if (r.authorize)
    if (auto e = r.authorize(name, find_queue(name) != nullptr)) return *e;
  if (queue* q = find_queue(name)) {
    if (auto e = check_exclusive(*q, r.connection_id)) return *e;
    const auto& c = q->settings();
    // RabbitMQ checks exclusivity before the other properties: a mismatch either way is 405.
    if (c.exclusive != r.exclusive)
      return error{error_code::resource_locked,
                   fmt::format("cannot obtain exclusive access to locked queue '{}' in vhost "
                               "'{}'. It could be originally declared on another connection or "
                               "the exclusive property value does not match that of the "
                               "original declaration.",
                               name, name_)};
    if (c.durable != r.durable)
      return inequivalent("queue", "durable", name, name_, bool_text(r.durable),
                          bool_text(c.durable));
    if (c.exclusive != r.exclusive)
      return inequivalent("queue", "exclusive", name, name_, bool_text(r.exclusive),
                          bool_text(c.exclusive));
    if (c.auto_delete != r.auto_delete)
      return inequivalent("queue", "auto_delete", name, name_, bool_text(r.auto_delete),
                          bool_text(c.auto_delete));
    if (auto k = first_difference(r.arguments, c.arguments))
      return inequivalent("queue", *k, name, name_, "(new value)", "(current value)");
    q->last_used = now_ms();
    return queue_declare_ok{name, uint32_t(q->message_count()), uint32_t(q->consumers().size()),
                            twin_shard(q->id())};
  }
  queue_policy policy;
  if (auto e = parse_queue_arguments(r.arguments, policy)) return *e;
  // max-queues counts every queue, exclusive, server-named and auto-delete ones too; a queue
  // that exists was redeclared above. Recovery restores what was there, whatever the limit.
  if (int64_t limit = max_queues(); limit >= 0 && !restoring_ && int64_t(queues_.size()) >= limit)
    return error{error_code::precondition_failed,
                 fmt::format("cannot declare queue '{}': queue limit in vhost '{}' ({}) is reached",
                             name, name_, limit)};
  queue_settings s{name,          r.durable,   r.exclusive,
                   r.auto_delete, r.arguments, r.exclusive ? r.connection_id : 0};
  dest_id id = next_id_++;
  auto q = std::make_unique<queue>(std::move(s), std::move(policy), id);
  q->pager = journal_;
  q->reads = &read_cache_;
  if (journal_) q->spool = journal_->paged_index_spool();
  q->page_threshold = memory_pressure_ ? queue::read_ahead : page_threshold_;
  q->page_threshold_bytes = memory_pressure_ ? queue::read_ahead_bytes : SIZE_MAX;
  // Exclusive queues die with their connection, so they are never stored (as in RabbitMQ).
  if (journal_ && r.durable && !r.exclusive) {
    q->store_id = r.store_id ? r.store_id : next_store_queue_;
    next_store_queue_ = std::max(next_store_queue_, q->store_id + 1);
    store_queues_[q->store_id] = q.get();
    if (!restoring_) journal_->queue_declared(q->settings(), q->store_id);
  }
  queue_ids_[id] = q.get();
  size_t place = home_;
  if (!shards_.empty() && placement_ == placement::hash) {
    // FNV-1a of the vhost's and the queue's names: the same workers put a queue back on the
    // same shard after a restart.
    uint64_t h = 14695981039346656037ull;
    auto mix = [&h](std::string_view text) {
      for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
    };
    mix(name_);
    mix(std::string_view("\0", 1));
    mix(name);
    place = size_t(h % shards_.size());
  }
  if (place != home_) {
    // The authority keeps a twin (the declaration); the queue itself lives on its shard.
    twins_[id] = place;
    {
      std::unique_lock lk(located_mutex_);
      located_[name] = place;
    }
    queue_policy runtime_policy;
    (void)parse_queue_arguments(q->settings().arguments, runtime_policy);
    auto rt = std::make_shared<std::unique_ptr<queue>>(
        std::make_unique<queue>(q->settings(), std::move(runtime_policy), id));
    (*rt)->store_id = q->store_id;
    on_shard(place, [rt](vhost& sh) { sh.adopt(std::move(*rt)); });
    queues_[name] = std::move(q);
  } else {
    q->timed_sink = &timed_;
    if (q->policy().expires_ms) q->list_timed();
    queues_[name] = std::move(q);
  }
  // After the adoption was posted: a copy routes to the queue only once its shard has it.
  change_routing(queue_added{name, id}, place);
  count(global_counters::queues_created);
  return queue_declare_ok{name, 0, 0, place == home_ ? SIZE_MAX : place};
}

std::variant<uint32_t, error> vhost::purge_queue(std::string_view name, uint64_t connection_id) {
  queue* q = find_queue(name);
  if (!q) return no_queue(name);
  if (auto e = check_exclusive(*q, connection_id)) return *e;
  if (journal_)
    q->for_each_stored(
        [&](uint32_t seg, uint32_t off) { journal_->release(seg, off, q->store_id); });
  uint32_t n = uint32_t(q->purge());
  release_throttles(*q);
  return n;
}

std::variant<uint32_t, error> vhost::delete_queue(std::string_view name, bool if_unused,
                                                  bool if_empty, uint64_t connection_id) {
  queue* q = find_queue(name);
  if (!q) {
    if (auto e = remote_queue(name)) return *e;
    return uint32_t(0);  // RabbitMQ: deleting a missing queue succeeds with 0
  }
  if (auto e = check_exclusive(*q, connection_id)) return *e;
  if (if_unused && !q->consumers().empty())
    return error{error_code::precondition_failed,
                 fmt::format("queue '{}' in vhost '{}' in use", name, name_)};
  if (if_empty && q->message_count() != 0)
    return error{error_code::precondition_failed,
                 fmt::format("queue '{}' in vhost '{}' not empty", name, name_)};
  uint32_t n = uint32_t(q->message_count());
  destroy_queue(*q, true);
  return n;
}

void vhost::destroy_queue(queue& q, bool notify_consumers) {
  q.deleting = true;
  release_throttles(q);
  while (!q.consumers().empty()) remove_consumer(*q.consumers().front(), notify_consumers);
  dest_id id = q.id();
  if (journal_)
    q.for_each_stored([&](uint32_t seg, uint32_t off) { journal_->release(seg, off, q.store_id); });
  if (auto t = twins_.find(id); t != twins_.end()) {
    // Deleted through the authority (a connection's exclusive queue, the management API): the
    // queue itself goes on its shard, which then tells us, when we have forgotten it already.
    size_t s = t->second;
    twins_.erase(t);
    {
      std::unique_lock lk(located_mutex_);
      located_.erase(q.name());
    }
    on_shard(s, [id, notify_consumers](vhost& sh) {
      if (queue* rq = sh.queue_by_id(id)) sh.destroy_queue(*rq, notify_consumers);
    });
  }
  if (!is_authority()) {
    queue_gone(id);
    if (q.store_id) store_queues_.erase(q.store_id);
  }
  const queue_counters& c = q.stats;
  for (auto [sum, add] : {std::pair{&retired_.publish, c.publish},
                          {&retired_.deliver, c.deliver},
                          {&retired_.deliver_no_ack, c.deliver_no_ack},
                          {&retired_.get, c.get},
                          {&retired_.get_no_ack, c.get_no_ack},
                          {&retired_.get_empty, c.get_empty},
                          {&retired_.redeliver, c.redeliver},
                          {&retired_.ack, c.ack}})
    *sum += add;
  if (!is_authority()) {
    queue_ids_.erase(id);
    queues_.erase(queues_.find(q.name()));
    return;
  }
  count(global_counters::queues_deleted);
  drop_definition(q);
}

void vhost::drop_definition(queue& q) {
  dest_id id = q.id();
  if (q.store_id) {
    store_queues_.erase(q.store_id);
    if (!restoring_) journal_->queue_deleted(q.name());
  }
  if (twins_.erase(id)) {
    std::unique_lock lk(located_mutex_);
    located_.erase(q.name());
  }
  std::vector<std::string> sources = routing_.sources_bound_to(id);
  change_routing(queue_removed{q.name(), id});
  queue_ids_.erase(id);
  std::string name = q.name();
  queues_.erase(queues_.find(name));  // destroys q
  auto_delete_exchanges(sources);
}

void vhost::adopt(std::unique_ptr<queue> q) {
  q->pager = journal_;
  q->reads = &read_cache_;
  if (journal_) q->spool = journal_->paged_index_spool();
  q->page_threshold = memory_pressure_ ? queue::read_ahead : page_threshold_;
  q->page_threshold_bytes = memory_pressure_ ? queue::read_ahead_bytes : SIZE_MAX;
  if (q->store_id) store_queues_[q->store_id] = q.get();
  queue_ids_[q->id()] = q.get();
  q->timed_sink = &timed_;
  if (q->policy().expires_ms) q->list_timed();
  std::string name = q->settings().name;
  queues_[name] = std::move(q);
}

maybe_error vhost::declare_builtin_exchange(const exchange_settings& s) {
  bool was = restoring_;
  restoring_ = true;  // not journalled: it is declared again at every start
  auto e = declare_exchange(s, false);
  restoring_ = was;
  if (!e) builtin_.insert(s.name);
  return e;
}

bool vhost::attach_sink(std::string_view name, std::function<bool(const message&)> fn) {
  auto* x = dynamic_cast<sink_exchange*>(find_exchange(name));
  if (!x) return false;
  x->set_sink(std::move(fn));
  return true;
}

// ----------------------------------------------------------------------------- persistence

bool vhost::durable_dest(dest_id d) const {
  if (d & exchange_bit) {
    exchange* x = exchange_by_id(d);
    return x && x->settings().durable;
  }
  queue* q = queue_by_id(d);
  return q && q->store_id != 0;
}

void vhost::journal_binding(bool added, std::string_view source, dest_id dest,
                            const std::string& key, const common::field_table& args) {
  // As RabbitMQ: a binding is durable when both its ends are.
  if (!journal_ || restoring_) return;
  exchange* x = find_exchange(source);
  if (!x || !x->settings().durable || !durable_dest(dest)) return;
  bool to_queue = !(dest & exchange_bit);
  const std::string& dname = to_queue ? queue_by_id(dest)->name() : exchange_by_id(dest)->name();
  journal_->binding_changed(added, source, to_queue, dname, key, args);
}

void vhost::snapshot(definitions_journal& j) const {
  for (const auto& [n, x] : routing_.exchanges())
    if (x->settings().durable && !n.empty() && n.rfind("amq.", 0) != 0 && !builtin_.count(n))
      j.exchange_declared(x->settings());
  for (const auto& [n, q] : queues_)
    if (q->store_id) j.queue_declared(q->settings(), q->store_id);
  for (const auto& b : routing_.bindings()) {
    exchange* x = find_exchange(b.source);
    if (!x || !x->settings().durable || !durable_dest(b.dest)) continue;
    bool to_queue = !(b.dest & exchange_bit);
    const std::string& dname =
        to_queue ? queue_by_id(b.dest)->name() : exchange_by_id(b.dest)->name();
    j.binding_changed(true, b.source, to_queue, dname, b.key, b.args);
  }
}

// ----------------------------------------------------------------------------- registry

vhost& vhost_registry::add(std::string name, size_t home_worker) {
  return add(std::make_unique<vhost>(std::move(name), home_worker));
}

vhost& vhost_registry::add(std::unique_ptr<vhost> v) {
  std::unique_lock lock(mutex_);
  auto& slot = vhosts_[v->name()];
  if (!slot) {
    order_.push_back(v->name());
    slot = std::move(v);
  }
  return *slot;
}

vhost* vhost_registry::retire(std::string_view name) {
  std::unique_lock lock(mutex_);
  auto it = vhosts_.find(name);
  if (it == vhosts_.end()) return nullptr;
  vhost* v = it->second.get();
  retired_.push_back(std::move(it->second));
  vhosts_.erase(it);
  std::erase(order_, std::string(name));
  return v;
}

vhost* vhost_registry::find(std::string_view name) const {
  std::shared_lock lock(mutex_);
  auto it = vhosts_.find(name);
  return it == vhosts_.end() ? nullptr : it->second.get();
}

size_t vhost_registry::size() const {
  std::shared_lock lock(mutex_);
  return vhosts_.size();
}

std::vector<std::string> vhost_registry::names() const {
  std::shared_lock lock(mutex_);
  return order_;
}

}  // namespace warren::broker
