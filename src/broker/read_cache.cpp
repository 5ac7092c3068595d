// A shard's cache of message records read back from the store (read_cache.hpp).
#include "broker/read_cache.hpp"

#include <spdlog/spdlog.h>

namespace warren::broker {

message_ptr read_cache::lookup(const journal::location& l) {
  auto it = map_.find(key(l.segment, l.offset));
  if (it == map_.end()) return nullptr;
  entry& e = it->second;
  message_ptr m = e.held ? e.held : e.weak.lock();
  if (!m || m->store_segment != l.segment || m->store_offset != l.offset ||
      m->store_length != l.length) {
    // Gone, or not the record asked for: forget it (the caller reads the store).
    if (e.held) {
      held_bytes_ -= cost(*e.held);
      held_.erase(e.pos);
    } else {
      seen_.erase(e.pos);
    }
    map_.erase(it);
    return nullptr;
  }
  if (e.held) {
    ++stats_.hits;
    held_.splice(held_.begin(), held_, e.pos);
  } else {
    ++stats_.seen_hits;
    seen_.splice(seen_.begin(), seen_, e.pos);
  }
  return m;
}

void read_cache::to_seen(std::unordered_map<uint64_t, entry>::iterator it) {
  entry& e = it->second;
  held_bytes_ -= cost(*e.held);
  held_.erase(e.pos);
  e.held.reset();
  seen_.push_front(it->first);
  e.pos = seen_.begin();
}

void read_cache::bound() {
  while (held_bytes_ > max_bytes_ && !held_.empty()) to_seen(map_.find(held_.back()));
  while (seen_.size() > max_seen_) {
    map_.erase(seen_.back());
    seen_.pop_back();
  }
}

void read_cache::insert(const journal::location& l, const message_ptr& m) {
  auto [it, fresh] = map_.try_emplace(key(l.segment, l.offset));
  entry& e = it->second;
  if (!fresh) {  // a stale entry (lookup found it dead or of another length): replace it
    if (e.held) {
      held_bytes_ -= cost(*e.held);
      held_.erase(e.pos);
    } else {
      seen_.erase(e.pos);
    }
  }
  e.weak = m;
  if (cost(*m) <= max_bytes_) {
    e.held = m;
    held_bytes_ += cost(*m);
    held_.push_front(it->first);
    e.pos = held_.begin();
  } else {
    e.held.reset();
    seen_.push_front(it->first);
    e.pos = seen_.begin();
  }
  bound();
}

void read_cache::read_many(journal& j, std::span<const journal::location> where,
                           std::vector<message_ptr>& out) {
  out.assign(where.size(), nullptr);
  miss_where_.clear();
  miss_index_.clear();
  for (size_t i = 0; i < where.size(); ++i) {
    out[i] = lookup(where[i]);
    if (out[i]) continue;
    miss_where_.push_back(where[i]);
    miss_index_.push_back(i);
  }
  if (miss_where_.empty()) return;
  stats_.misses += miss_where_.size();
  j.read_many(miss_where_, miss_got_);
  for (size_t k = 0; k < miss_index_.size() && k < miss_got_.size(); ++k) {
    if (!miss_got_[k]) continue;  // unreadable: logged by the store, not cached
    insert(miss_where_[k], miss_got_[k]);
    out[miss_index_[k]] = std::move(miss_got_[k]);
  }
  miss_got_.clear();
}

read_cache::~read_cache() {
  if (stats_.misses == 0) return;
  spdlog::info("paging reads: {} records from the store, {} from the cache ({} held, {} alive)",
               stats_.misses, stats_.hits + stats_.seen_hits, stats_.hits, stats_.seen_hits);
}

void read_cache::trim() {
  while (!held_.empty()) to_seen(map_.find(held_.back()));
  bound();
}

void read_cache::set_max_bytes(size_t n) {
  max_bytes_ = n;
  bound();
}

}  // namespace warren::broker
