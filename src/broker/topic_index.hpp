// Topic-exchange routing: an index from binding keys ("stock.*.nyse", "audit.#") to destinations,
// matched against routing keys with RabbitMQ's rules. Owned by the topic exchange that uses it;
// add/remove mutate it, match is const and safe to call from several threads at once.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "broker/dest_id.hpp"

namespace warren::broker {

// Keys are split on '.' into words; "a..b" has an empty middle word, "" has no words at all.
// In a binding key the whole word "*" matches exactly one word and "#" zero or more; any other
// word, including one that merely contains '*' or '#', is literal. So "#" matches every routing
// key including "", "a.*" does not match "a", and "*" matches "" only as a word ("a..b" ~
// "a.*.b"), never the empty key.
//
// The index is a trie over words, so matching visits only nodes whose path fits the routing key:
// bindings that cannot match cost nothing. Removal prunes nodes left without bindings or
// children, so add/remove churn leaves no residue. An (key, destination) pair is stored once;
// a caller that keeps several bindings differing only in arguments (RabbitMQ allows that)
// counts them itself and removes the pair when the last one goes.
class topic_index {
 public:
  topic_index();
  ~topic_index();
  topic_index(topic_index&&) noexcept;
  topic_index& operator=(topic_index&&) noexcept;
  topic_index(const topic_index&) = delete;
  topic_index& operator=(const topic_index&) = delete;

  // False if this exact (binding_key, d) pair is already present.
  bool add(std::string_view binding_key, dest_id d);
  // False if the pair was not present.
  bool remove(std::string_view binding_key, dest_id d);
  // Appends every destination with at least one matching binding, each once, in ascending id
  // order, after whatever `out` already holds (which is left untouched). Allocates only if
  // `out` must grow.
  void match(std::string_view routing_key, std::vector<dest_id>& out) const;

  size_t size() const { return bindings_; }  // number of (key, destination) pairs
  bool empty() const { return bindings_ == 0; }
  // Trie nodes including the root, which always exists: 1 when empty. For tests and metrics.
  size_t node_count() const { return nodes_; }
  void clear();

 private:
  struct node;
  struct matcher;
  bool remove_below(node& n, std::string_view key, size_t pos, dest_id d);

  std::unique_ptr<node> root_;
  size_t bindings_ = 0;
  size_t nodes_ = 1;
};

}  // namespace warren::broker
