// The web gateway's shard map in a cluster (docs/cluster.md, "The web gateway across nodes"):
// users and rooms are spread over the running nodes by 256 slots, each naming the node that
// owns what hashes to it. The map itself is kept in etcd (app/cluster_gateway.cpp); this file is
// the plain part: the hash, the rebalancing rule, the JSON form, and the table every thread
// reads. No sockets, no etcd.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace warren::web {

inline constexpr size_t shard_slots = 256;

// 32-bit FNV-1a: stable across builds, platforms and restarts (std::hash is not), so every node
// puts a name in the same slot. Hand-written: eight lines, no library offers it as such.
constexpr uint32_t fnv1a(std::string_view s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) {
    h ^= c;
    h *= 16777619u;
  }
  return h;
}
constexpr size_t slot_of(std::string_view name) {
  return fnv1a(name) % shard_slots;
}

using slot_list = std::vector<std::string>;  // shard_slots entries; "" for a slot without owner

// The map after `running` (sorted or not; empty: no node) changed: every slot of a node that is
// not running, and each slot a node holds beyond its share, goes to the running nodes below
// their share (by name, lowest slot first). Shares are 256/n, the first 256%n nodes by slots held
// (then by name) one more. Slots already balanced over running nodes never move: applied to its
// own result it changes nothing, so every node computes the same map from the same input.
slot_list rebalance(const slot_list& current, std::vector<std::string> running);
// How many slots differ.
size_t slots_moved(const slot_list& a, const slot_list& b);

// {"slots":["a","b",...]} and back; nullopt when malformed.
std::string encode_slots(const slot_list& s);
std::optional<slot_list> decode_slots(std::string_view json);

// The map as this node last read it; any thread (a mutex around a shared pointer, taken once per
// send to the gateway's exchanges).
class shard_table {
 public:
  explicit shard_table(std::string self) : self_(std::move(self)) {}
  const std::string& self() const { return self_; }
  void set(slot_list s, int64_t version);
  std::shared_ptr<const slot_list> get() const;
  int64_t version() const;
  // The node owning `name`; empty while no map is known (the caller acts alone, as without a
  // cluster).
  std::string owner(std::string_view name) const;

 private:
  std::string self_;
  mutable std::mutex mutex_;
  std::shared_ptr<const slot_list> slots_;
  int64_t version_ = 0;
};

}  // namespace warren::web
