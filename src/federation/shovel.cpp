// A dynamic shovel's life: connect both ends, declare, consume, forward, ack; reconnect.
#include "federation/shovel.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace warren::federation {

namespace protocol = amqp::protocol;
using common::field_array;
using common::field_table;

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string first_uri(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_array() && !v.empty() && v[0].is_string()) return v[0].get<std::string>();
  return {};
}

std::string str(const json& def, const char* key, const char* fallback = "") {
  auto it = def.find(key);
  return it != def.end() && it->is_string() ? it->get<std::string>() : std::string(fallback);
}

}  // namespace

shovel::shovel(supervisor& sup, std::string key, std::string vhost, std::string name, json def)
    : sup_(sup),
      key_(std::move(key)),
      vhost_(std::move(vhost)),
      name_(std::move(name)),
      def_(std::move(def)),
      timer_(sup.home().io()) {
  status_.type = "shovel";
  status_.vhost = vhost_;
  status_.name = name_;
  ack_mode_ = str(def_, "ack-mode", "on-confirm");
  if (auto it = def_.find("reconnect-delay"); it != def_.end() && it->is_number())
    reconnect_delay_ = it->get<double>();
  json after = def_.contains("src-delete-after") ? def_["src-delete-after"]
                                                 : def_.value("delete-after", json("never"));
  if (after.is_number_integer()) delete_after_ = after.get<int64_t>();
  delete_after_queue_length_ = after == "queue-length";
}

void shovel::start() {
  for (auto [key, out] : {std::pair{"src-uri", &src_uri_}, std::pair{"dest-uri", &dest_uri_}}) {
    auto parsed = amqp::client::parse_uri(first_uri(def_.value(key, json())));
    if (auto* why = std::get_if<std::string>(&parsed)) return set_state("terminated", *why);
    *out = std::get<amqp::client::uri>(parsed);
  }
  status_.uri = src_uri_->safe;
  status_.dest_uri = dest_uri_->safe;
  if (delete_after_ && *delete_after_ == 0) return finish();
  connect();
}

void shovel::stop() {
  stopped_ = true;
  timer_.cancel();
  if (src_) src_->close();
  if (dest_) dest_->close();
  src_.reset();
  dest_.reset();
  if (running_) sup_.counters().shovels_running.fetch_sub(1);
  running_ = false;
  sup_.forget(key_);
}

void shovel::set_state(const std::string& state, const std::string& error) {
  bool run = state == "running";
  if (run != running_) {
    if (run)
      sup_.counters().shovels_running.fetch_add(1);
    else
      sup_.counters().shovels_running.fetch_sub(1);
    running_ = run;
  }
  status_.state = state;
  status_.error = error;
  status_.timestamp = now_ms();
  if (!stopped_) sup_.report(key_, status_);
}

void shovel::connect() {
  if (stopped_) return;
  set_state("starting");
  uint64_t gen = ++generation_;
  ready_sides_ = 0;
  unconfirmed_.clear();
  std::weak_ptr<shovel> weak = shared_from_this();
  auto make = [&](const amqp::client::uri& u, bool source) {
    amqp::client::events ev;
    ev.ready = [weak, gen] {
      if (auto s = weak.lock(); s && s->generation_ == gen) s->on_side_ready();
    };
    ev.closed = [weak, gen](const std::string& e) {
      if (auto s = weak.lock(); s && s->generation_ == gen) s->on_closed(e);
    };
    if (source)
      ev.delivered = [weak, gen](amqp::client::delivery&& d) {
        if (auto s = weak.lock(); s && s->generation_ == gen) s->on_delivery(std::move(d));
      };
    else
      ev.confirmed = [weak, gen](uint64_t seq, bool multiple, bool ack) {
        if (auto s = weak.lock(); s && s->generation_ == gen) s->on_confirm(seq, multiple, ack);
      };
    auto c = std::make_shared<amqp::client::connection>(
        sup_.home().io(), u, fmt::format("Shovel {}", name_), std::move(ev));
    c->start();
    return c;
  };
  src_ = make(*src_uri_, true);
  dest_ = make(*dest_uri_, false);
}

void shovel::on_closed(const std::string& error) {
  if (stopped_) return;
  ++generation_;  // the other side's events no longer count
  if (src_) src_->close();
  if (dest_) dest_->close();
  src_.reset();
  dest_.reset();
  spdlog::warn("shovel '{}' in vhost '{}': {}", name_, vhost_, error.empty() ? "closed" : error);
  set_state("terminated", error.empty() ? "connection closed" : error);
  timer_.expires_after(std::chrono::milliseconds(int64_t(reconnect_delay_ * 1000)));
  std::weak_ptr<shovel> weak = shared_from_this();
  timer_.async_wait([weak](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto s = weak.lock()) s->connect();
  });
}

void shovel::on_side_ready() {
  if (++ready_sides_ < 2) return;
  std::weak_ptr<shovel> weak = shared_from_this();
  uint64_t gen = generation_;
  // Destination: its queue, confirms.
  std::string dq = str(def_, "dest-queue");
  if (!dq.empty()) {
    protocol::queue_declare q;
    q.queue = dq;
    q.durable = true;
    dest_->call(q);
  }
  if (ack_mode_ == "on-confirm") dest_->confirm_select(nullptr);
  // Source: its queue (or one bound to its exchange), prefetch, consume.
  std::string sq = str(def_, "src-queue");
  protocol::queue_declare q;
  q.queue = sq;
  if (sq.empty()) {
    q.exclusive = true;
  } else {
    q.durable = true;
  }
  src_->call(q, [weak, gen](const protocol::method& m) {
    auto s = weak.lock();
    if (!s || s->generation_ != gen) return;
    const auto* ok = std::get_if<protocol::queue_declare_ok>(&m);
    if (!ok) return;
    if (s->delete_after_queue_length_ && !s->delete_after_) {
      s->delete_after_ = ok->message_count;
      if (ok->message_count == 0) return s->finish();
    }
    std::string se = str(s->def_, "src-exchange");
    if (!se.empty()) {
      protocol::queue_bind b;
      b.queue = ok->queue;
      b.exchange = se;
      b.routing_key = str(s->def_, "src-exchange-key", "#");
      s->src_->call(b);
    }
    if (s->ack_mode_ != "no-ack") {
      protocol::basic_qos qos;
      int64_t n = s->def_.value("src-prefetch-count", s->def_.value("prefetch-count", 1000));
      qos.prefetch_count = uint16_t(std::clamp<int64_t>(n, 1, 65535));
      s->src_->call(qos);
    }
    protocol::basic_consume c;
    c.queue = ok->queue;
    c.no_ack = s->ack_mode_ == "no-ack";
    s->src_->call(c, [weak, gen](const protocol::method&) {
      auto s2 = weak.lock();
      if (!s2 || s2->generation_ != gen) return;
      spdlog::info("shovel '{}' in vhost '{}' running ({} -> {})", s2->name_, s2->vhost_,
                   s2->src_uri_->safe, s2->dest_uri_->safe);
      s2->set_state("running");
    });
  });
}

void shovel::on_delivery(amqp::client::delivery&& d) {
  if (!dest_ || !src_ || finished_) return;
  if (delete_after_ && *delete_after_ <= 0) {
    // Past the count (prefetched): back to the source for whoever comes next.
    if (ack_mode_ != "no-ack") src_->nack(d.tag, false, true);
    return;
  }
  std::string dx = str(def_, "dest-exchange");
  std::string dq = str(def_, "dest-queue");
  std::string key = !dq.empty() ? dq : str(def_, "dest-exchange-key", d.routing_key.c_str());
  if (def_.value("add-forward-headers", def_.value("dest-add-forward-headers", false))) {
    // RabbitMQ's x-shovelled header: where the message came from and went.
    field_table t;
    t.set("shovel-type", "dynamic");
    t.set("shovel-name", name_);
    t.set("shovel-vhost", vhost_);
    t.set("src-uri", src_uri_->safe);
    if (def_.contains("src-exchange")) t.set("src-exchange", str(def_, "src-exchange"));
    if (def_.contains("src-queue")) t.set("src-queue", str(def_, "src-queue"));
    t.set("dest-uri", dest_uri_->safe);
    if (!dx.empty()) t.set("dest-exchange", dx);
    if (!dq.empty()) t.set("dest-queue", dq);
    field_table h = d.properties.headers.value_or(field_table{});
    field_array arr;
    if (const auto* old = h.find("x-shovelled"))
      if (const auto* a = std::get_if<field_array>(&old->v)) arr = *a;
    arr.items.push_back(std::move(t));
    h.set("x-shovelled", std::move(arr));
    d.properties.headers = std::move(h);
  }
  uint64_t seq = dest_->publish(dq.empty() ? dx : std::string(), key, d.properties, d.body);
  ++status_.forwarded;
  sup_.counters().shovelled.fetch_add(1, std::memory_order_relaxed);
  if (ack_mode_ == "on-confirm")
    unconfirmed_.emplace(seq, d.tag);
  else if (ack_mode_ == "on-publish")
    src_->ack(d.tag, false);
  if (delete_after_) --*delete_after_;
  maybe_finish();
}

void shovel::on_confirm(uint64_t seq, bool multiple, bool ack) {
  if (!src_) return;
  auto end = multiple ? unconfirmed_.upper_bound(seq) : unconfirmed_.find(seq);
  auto begin = multiple ? unconfirmed_.begin() : end;
  if (!multiple) {
    if (end == unconfirmed_.end()) return;
    end = std::next(end);
  }
  std::vector<uint64_t> tags;
  for (auto it = begin; it != end; ++it) tags.push_back(it->second);
  unconfirmed_.erase(begin, end);
  for (uint64_t tag : tags) {
    // A nack from the destination sends the message back to the source (RabbitMQ requeues too).
    if (ack)
      src_->ack(tag, false);
    else
      src_->nack(tag, false, true);
  }
  maybe_finish();
}

void shovel::maybe_finish() {
  if (delete_after_ && *delete_after_ <= 0 && unconfirmed_.empty()) finish();
}

// src-delete-after reached: terminated, and the parameter goes (RabbitMQ deletes it too).
void shovel::finish() {
  if (finished_) return;
  finished_ = true;
  spdlog::info("shovel '{}' in vhost '{}' finished (src-delete-after)", name_, vhost_);
  set_state("terminated", "");
  ++generation_;
  if (src_) src_->close();
  if (dest_) dest_->close();
  src_.reset();
  dest_.reset();
  std::string vhost = vhost_, name = name_;
  runtime_store* store = &sup_.store();
  // Not from inside our own call stack: clearing reconciles, which stops this shovel.
  sup_.home().post([store, vhost, name] {
    std::string err;
    store->clear_parameter("shovel", vhost, name, err);
  });
}

}  // namespace warren::federation
