// Regular expressions that come from the network - the management API's name filter
// (list_query), the Prometheus endpoint's queue filter, permission patterns - compiled and
// matched within bounds, so that no pattern can take a worker down.
//
// libstdc++'s std::regex compiles by recursive descent, so a long or deeply nested pattern
// overflows the stack (from about 35 000 nested groups in a release build, far fewer in a debug
// or sanitized one), and by default it matches by backtracking, so a pattern such as "(a|aa)*b"
// takes time exponential in the subject's length (seconds for a 32-byte queue name, hours for a
// 48-byte one). A bounded_regex is a pattern of bounded length whose automaton is bounded too
// (counted repetitions multiply it), matched by libstdc++'s polynomial breadth-first matcher
// (which refuses back-references) as one match over the whole subject rather than a search from
// every position: time linear in the subject for a given pattern. Found while writing the fuzz
// target for request targets (tests/fuzz/fuzz_query.cpp; docs/security.md, "Fuzzing").
#pragma once

#include <cstddef>
#include <regex>
#include <string>
#include <string_view>
#include <variant>

namespace warren::mgmt {

struct regex_limits {
  size_t max_bytes = 256;    // of the pattern
  size_t max_weight = 2000;  // states of its automaton, as regex_weight_within counts them
};

class bounded_regex {
 public:
  // ECMAScript syntax. The compiled pattern, or why it is refused: std::regex's own message, or
  // the limit it passes.
  static std::variant<bounded_regex, std::string> make(std::string_view pattern, bool icase,
                                                       regex_limits limits = {});
  // Whether some part of `s` matches (std::regex_search's meaning).
  bool search(std::string_view s) const;

 private:
  std::regex whole_;  // "[\s\S]*(?:" pattern ")[\s\S]*"
};

// An upper bound on the size of the automaton `pattern` compiles to: one state per atom (an
// escape, a class, a character), a group the sum of its parts, a quantified atom or group
// multiplied by its largest count (*, + and ? by two). False once it passes `limit`.
bool regex_weight_within(std::string_view pattern, size_t limit);

}  // namespace warren::mgmt
