// Topic routing trie: words on edges, '*' and '#' as dedicated edges, destinations on nodes.
#include "broker/topic_index.hpp"

#include <algorithm>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>

namespace warren::broker {

namespace {

// A position in a key is the offset where a word starts; size() + 1 means "no words left". With
// that sentinel "a." (words "a", "") and "a" (word "a") stay distinct, and matching walks the key
// in place instead of splitting it into a vector first.
size_t key_end(std::string_view key) {
  return key.size() + 1;
}
size_t key_begin(std::string_view key) {
  return key.empty() ? key_end(key) : 0;
}

struct word_at_result {
  std::string_view word;
  size_t next;
};
word_at_result word_at(std::string_view key, size_t pos) {
  size_t dot = key.find('.', pos);
  if (dot == std::string_view::npos) return {key.substr(pos), key_end(key)};
  return {key.substr(pos, dot - pos), dot + 1};
}

struct word_hash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

}  // namespace

struct topic_index::node {
  std::vector<dest_id> dests;  // sorted: binary search on add/remove, merge-friendly on match
  std::unordered_map<std::string, std::unique_ptr<node>, word_hash, std::equal_to<>> children;
  std::unique_ptr<node> star;  // the "*" edge
  std::unique_ptr<node> hash;  // the "#" edge

  bool bare() const { return dests.empty() && children.empty() && !star && !hash; }
};

topic_index::topic_index() : root_(std::make_unique<node>()) {}
topic_index::~topic_index() = default;
topic_index::topic_index(topic_index&&) noexcept = default;
topic_index& topic_index::operator=(topic_index&&) noexcept = default;

void topic_index::clear() {
  root_ = std::make_unique<node>();
  bindings_ = 0;
  nodes_ = 1;
}

bool topic_index::add(std::string_view binding_key, dest_id d) {
  node* n = root_.get();
  for (size_t pos = key_begin(binding_key), end = key_end(binding_key); pos != end;) {
    auto [word, next] = word_at(binding_key, pos);
    std::unique_ptr<node>* slot;
    if (word == "*") {
      slot = &n->star;
    } else if (word == "#") {
      slot = &n->hash;
    } else {
      auto it = n->children.find(word);
      if (it == n->children.end()) it = n->children.emplace(std::string(word), nullptr).first;
      slot = &it->second;
    }
    if (!*slot) {
      *slot = std::make_unique<node>();
      ++nodes_;
    }
    n = slot->get();
    pos = next;
  }
  auto it = std::lower_bound(n->dests.begin(), n->dests.end(), d);
  if (it != n->dests.end() && *it == d) return false;
  n->dests.insert(it, d);
  ++bindings_;
  return true;
}

bool topic_index::remove(std::string_view binding_key, dest_id d) {
  if (!remove_below(*root_, binding_key, key_begin(binding_key), d)) return false;
  --bindings_;
  return true;
}

// Recursive so that each node on the way back up can drop a child the removal left bare.
bool topic_index::remove_below(node& n, std::string_view key, size_t pos, dest_id d) {
  if (pos == key_end(key)) {
    auto it = std::lower_bound(n.dests.begin(), n.dests.end(), d);
    if (it == n.dests.end() || *it != d) return false;
    n.dests.erase(it);
    if (n.dests.empty()) n.dests.shrink_to_fit();
    return true;
  }
  auto [word, next] = word_at(key, pos);
  if (word == "*" || word == "#") {
    std::unique_ptr<node>& child = word == "*" ? n.star : n.hash;
    if (!child || !remove_below(*child, key, next, d)) return false;
    if (child->bare()) {
      child.reset();
      --nodes_;
    }
    return true;
  }
  auto it = n.children.find(word);
  if (it == n.children.end() || !remove_below(*it->second, key, next, d)) return false;
  if (it->second->bare()) {
    n.children.erase(it);
    --nodes_;
  }
  return true;
}

// Depth-first walk of the trie along the routing key, mirroring RabbitMQ's trie_match: at each
// node try the literal word, "*" (consumes one word) and "#" (consumes any number of words).
//
// A node under a "#" edge is entered once per remaining suffix, and RabbitMQ's walk enters it
// again each time its parent is reached, so a binding like "#.a.#.a.#.a" costs O(words^3) on
// "a.a.a..." and "#.#.#..." likewise: a client could make routing exponential in the number of
// '#'. Here a '#' node is walked only on its first entry. That is enough because the walk
// reaches every node at non-decreasing positions (a '#' node's loop goes forward through the
// key, and a literal or '*' child is entered one word after its parent), so the first entry
// has the lowest position and its loop already covers every suffix a later entry would. Each
// (node, position) pair is then visited at most once: O(reachable nodes x words) at worst.
struct topic_index::matcher {
  std::string_view key;
  size_t end;
  std::vector<dest_id>& out;
  // '#' nodes already walked during this match: a short list scanned linearly, which covers
  // every realistic binding set without allocating; past kListMax (a binding set built to
  // reach many '#' nodes at once) a hash set keeps the check O(1).
  static constexpr size_t kListMax = 32;
  std::vector<const node*>& hash_done;
  std::unordered_set<const node*>& hash_done_many;

  bool first_entry(const node& h) {
    if (hash_done_many.empty()) {
      if (std::find(hash_done.begin(), hash_done.end(), &h) != hash_done.end()) return false;
      if (hash_done.size() < kListMax) {
        hash_done.push_back(&h);
        return true;
      }
      hash_done_many.insert(hash_done.begin(), hash_done.end());
    }
    return hash_done_many.insert(&h).second;
  }

  void visit(const node& n, size_t pos) {
    if (pos == end) {
      out.insert(out.end(), n.dests.begin(), n.dests.end());
      if (n.hash) visit_hash(*n.hash, pos);
      return;
    }
    auto [word, next] = word_at(key, pos);
    if (!n.children.empty()) {
      auto it = n.children.find(word);
      if (it != n.children.end()) visit(*it->second, next);
    }
    if (n.star) visit(*n.star, next);
    if (n.hash) visit_hash(*n.hash, pos);
  }

  // `h` hangs off a "#" edge: it continues after zero, one, ... or all of the remaining words.
  void visit_hash(const node& h, size_t pos) {
    if (!first_entry(h)) return;
    for (size_t p = pos;; p = word_at(key, p).next) {
      visit(h, p);
      if (p == end) break;
    }
  }
};

void topic_index::match(std::string_view routing_key, std::vector<dest_id>& out) const {
  // Per thread and reused: the memo costs no allocation once warm, and match stays const and
  // safe to call concurrently.
  thread_local std::vector<const node*> hash_done;
  thread_local std::unordered_set<const node*> hash_done_many;
  hash_done.clear();
  if (!hash_done_many.empty()) hash_done_many.clear();  // clear() costs O(buckets) even if empty
  const size_t start = out.size();
  matcher m{routing_key, key_end(routing_key), out, hash_done, hash_done_many};
  m.visit(*root_, key_begin(routing_key));
  // Several bindings of one destination can match ("a.*" and "#"): sort the new tail and keep
  // each id once. The tail is usually a handful of ids, cheaper than a hash set per call.
  if (out.size() - start > 1) {
    auto first = out.begin() + static_cast<std::ptrdiff_t>(start);
    std::sort(first, out.end());
    out.erase(std::unique(first, out.end()), out.end());
  }
}

}  // namespace warren::broker
