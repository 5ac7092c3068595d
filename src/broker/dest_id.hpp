// The identity routing structures hand back for a binding's destination (a queue or, for
// exchange-to-exchange bindings, an exchange). The vhost that owns the routing tables maps ids to
// objects, so the tables stay small, copyable and free of pointers into the broker model.
#pragma once

#include <algorithm>
#include <boost/container/small_vector.hpp>
#include <cstdint>
#include <unordered_set>

namespace warren::broker {

using dest_id = uint64_t;

// Where one publish goes: nearly always a few destinations, kept on the stack (no allocation
// per publish); a fan-out to more spills to the heap.
using dest_list = boost::container::small_vector<dest_id, 16>;

// The exchanges one publish has passed through (cycle and alternate-exchange checks): a few, so
// searched linearly on the stack, switching to a hash set for a publish that crosses many.
class dest_set {
 public:
  // True if `d` was not in the set yet.
  bool insert(dest_id d) {
    if (!big_.empty()) return big_.insert(d).second;
    if (std::find(small_.begin(), small_.end(), d) != small_.end()) return false;
    if (small_.size() < small_.capacity()) {
      small_.push_back(d);
      return true;
    }
    big_.insert(small_.begin(), small_.end());
    return big_.insert(d).second;
  }

 private:
  boost::container::small_vector<dest_id, 8> small_;
  std::unordered_set<dest_id> big_;
};

}  // namespace warren::broker
