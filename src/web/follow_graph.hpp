// The follow graph (seed 002, part 3): "A follows B" edges, so that an event for B reaches the
// inboxes of B's online followers. Users are interned (a string once, then 32-bit ids) and each
// side keeps a sorted vector of ids: about 8 bytes per edge plus the names, so millions of edges
// fit, and a bulk load appends everything and sorts each touched list once instead of inserting
// edge by edge (seed 002 spent 15 minutes loading 15 million subscriptions).
//
// Persistence: an append-only log of CRC-framed records (store::record_file) in the gateway
// vhost's directory, `follows.log`; each record is an operation byte ('+' or '-') followed by
// "A B\n" lines. It is replayed at start and rewritten as a snapshot when it has grown to more
// than twice the live edges. Every change is synced before it is acknowledged.
//
// Owned by the gateway hub, on its worker; not thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace warren::web {

class follow_graph {
 public:
  // Without a path nothing is persisted.
  explicit follow_graph(std::filesystem::path log = {});
  ~follow_graph();
  follow_graph(const follow_graph&) = delete;
  follow_graph& operator=(const follow_graph&) = delete;

  // Replays the log (creating it if missing). Returns the edges loaded; throws
  // std::runtime_error if the file cannot be read or written. A torn tail is cut off.
  size_t load();

  // True if the edge is new (false: A already followed B).
  bool follow(std::string_view a, std::string_view b);
  // True if the edge existed.
  bool unfollow(std::string_view a, std::string_view b);
  struct bulk_result {
    size_t added = 0;
    size_t existing = 0;
  };
  // Adds many edges in one pass and one log write (pairs may repeat).
  bulk_result follow_all(const std::vector<std::pair<std::string_view, std::string_view>>& edges);

  // Removes every edge into b in one log record (its followers moved to another node with b's
  // slot: web/hub_handover.cpp); returns how many went.
  size_t drop_followers(std::string_view b);
  // The users who have followers.
  std::vector<std::string> followees() const;

  std::vector<std::string> following(std::string_view a) const;
  std::vector<std::string> followers(std::string_view b) const;
  // Calls fn for each follower of b.
  template <typename F>
  void for_each_follower(std::string_view b, F&& fn) const {
    auto it = ids_.find(std::string(b));
    if (it == ids_.end()) return;
    for (uint32_t f : followers_[it->second]) fn(std::string_view(names_[f]));
  }
  size_t edge_count() const { return edges_; }

 private:
  uint32_t intern(std::string_view name);
  static bool sorted_insert(std::vector<uint32_t>& v, uint32_t x);
  static bool sorted_erase(std::vector<uint32_t>& v, uint32_t x);
  void apply_record(std::string_view payload);
  void append_record(char op, const std::string& lines);
  void maybe_compact();

  std::filesystem::path path_;
  int fd_ = -1;
  uint64_t log_edges_ = 0;  // edge operations written to the log since the last snapshot
  std::unordered_map<std::string, uint32_t> ids_;
  std::vector<std::string> names_;
  std::vector<std::vector<uint32_t>> following_;  // by id: whom the user follows (sorted)
  std::vector<std::vector<uint32_t>> followers_;  // by id: who follows the user (sorted)
  size_t edges_ = 0;
};

}  // namespace warren::web
