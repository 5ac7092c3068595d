// A prefix of etcd mirrored locally (see prefix_mirror.hpp).
#include "cluster/prefix_mirror.hpp"

#include <spdlog/spdlog.h>

namespace warren::cluster {

prefix_mirror::prefix_mirror(std::shared_ptr<etcd_client> client, std::string prefix,
                             on_change_fn on_change, std::chrono::milliseconds retry)
    : client_(std::move(client)),
      prefix_(std::move(prefix)),
      on_change_(std::move(on_change)),
      retry_(retry),
      timer_(client_->io()) {}

void prefix_mirror::start() {
  stopped_ = false;
  resync();
}

void prefix_mirror::stop() {
  stopped_ = true;
  timer_.cancel();
  if (watch_) watch_->cancel();
  watch_.reset();
}

void prefix_mirror::retry_later() {
  synced_ = false;
  if (watch_) watch_->cancel();
  watch_.reset();
  timer_.expires_after(retry_);
  timer_.async_wait([w = weak_from_this()](const boost::system::error_code& ec) {
    auto self = w.lock();
    if (ec || !self || self->stopped_) return;
    self->resync();
  });
}

void prefix_mirror::resync() {
  client_->range(prefix_, prefix_end(prefix_),
                 [w = weak_from_this()](const std::string& err, range_result r) {
                   auto self = w.lock();
                   if (!self || self->stopped_) return;
                   if (!err.empty()) {
                     spdlog::debug("etcd: reading {}: {}", self->prefix_, err);
                     return self->retry_later();
                   }
                   self->items_.clear();
                   for (auto& kv : r.kvs) {
                     std::string k = kv.key;
                     self->items_.emplace(std::move(k), std::move(kv));
                   }
                   self->revision_ = r.revision;
                   ++self->reads_;
                   self->watch_ = self->client_->watch(
                       self->prefix_, prefix_end(self->prefix_), r.revision + 1,
                       [w](const watch_message& m) {
                         if (auto s = w.lock()) s->apply(m);
                       },
                       [w](const std::string& why) {
                         auto s = w.lock();
                         if (!s || s->stopped_) return;
                         spdlog::debug("etcd: watch of {} ended: {}", s->prefix_, why);
                         s->retry_later();
                       });
                   self->synced_ = true;
                   self->changed_.clear();
                   for (const auto& [k, kv] : self->items_) self->changed_.push_back(k);
                   self->changed_all_ = true;
                   if (self->on_change_) self->on_change_(self->items_);
                 });
}

void prefix_mirror::apply(const watch_message& m) {
  if (m.canceled) {
    // Compacted past our revision, or etcd dropped the watch: read everything again.
    spdlog::debug("etcd: watch of {} canceled ({}), reading it again", prefix_, m.cancel_reason);
    return retry_later();
  }
  if (m.events.empty()) return;
  changed_.clear();
  changed_all_ = false;
  for (const auto& e : m.events) {
    changed_.push_back(e.kv.key);
    if (e.deleted)
      items_.erase(e.kv.key);
    else
      items_[e.kv.key] = e.kv;
    revision_ = std::max(revision_, e.kv.mod_revision);
  }
  if (on_change_) on_change_(items_);
}

}  // namespace warren::cluster
