// Bounded regular expressions: the weight of a pattern, and compiling and matching it.
#include "mgmt/bounded_regex.hpp"

#include <algorithm>
#include <vector>

namespace warren::mgmt {

bool regex_weight_within(std::string_view pattern, size_t limit) {
  struct level {
    size_t total = 0;
    size_t last = 0;  // the atom or group a quantifier would apply to
  };
  std::vector<level> stack(1);
  auto atom = [&](size_t w) {
    stack.back().total += w;
    stack.back().last = w;
  };
  auto repeat = [&](size_t times) {
    level& l = stack.back();
    if (times > limit) return false;
    l.total += l.last * (times - 1);
    l.last *= times;
    return true;
  };
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\') {
      ++i;
      atom(1);
    } else if (c == '[') {
      size_t j = i + 1;
      if (j < pattern.size() && pattern[j] == '^') ++j;
      if (j < pattern.size() && pattern[j] == ']') ++j;
      while (j < pattern.size() && pattern[j] != ']') j += pattern[j] == '\\' ? 2 : 1;
      i = j;
      atom(1);
    } else if (c == '(') {
      stack.emplace_back();
    } else if (c == ')' && stack.size() > 1) {
      size_t w = stack.back().total + 1;
      stack.pop_back();
      atom(w);
    } else if (c == '*' || c == '+' || c == '?') {
      if (!repeat(2)) return false;
    } else if (c == '{') {
      // {n}, {n,} or {n,m}; anything else is a literal brace.
      size_t j = i + 1, n = 0, m = 0;
      bool digits = false, comma = false, m_digits = false;
      for (; j < pattern.size() && pattern[j] != '}'; ++j) {
        char d = pattern[j];
        if (d >= '0' && d <= '9') {
          size_t& v = comma ? m : n;
          v = std::min(v * 10 + size_t(d - '0'), limit + 1);
          (comma ? m_digits : digits) = true;
        } else if (d == ',' && !comma) {
          comma = true;
        } else {
          break;
        }
      }
      if (j < pattern.size() && pattern[j] == '}' && digits) {
        if (!repeat(std::max<size_t>({1, n, m_digits ? m : n + 1}))) return false;
        i = j;
      } else {
        atom(1);
      }
    } else {
      atom(1);
    }
    if (stack.back().total > limit) return false;
  }
  size_t total = 0;
  for (const auto& l : stack) total += l.total;
  return total <= limit;
}

std::variant<bounded_regex, std::string> bounded_regex::make(std::string_view pattern, bool icase,
                                                             regex_limits limits) {
  if (pattern.size() > limits.max_bytes)
    return "longer than " + std::to_string(limits.max_bytes) + " bytes";
  if (!regex_weight_within(pattern, limits.max_weight)) return std::string("too complex");
  auto flags = std::regex::ECMAScript;
  if (icase) flags |= std::regex::icase;
#ifdef __GLIBCXX__
  flags |= std::regex_constants::__polynomial;  // refuses back-references
#endif
  bounded_regex r;
  try {
    std::regex alone(pattern.begin(), pattern.end(), flags);  // wrapped, "a)(b" would pass
    std::string whole = "[\\s\\S]*(?:";
    whole.append(pattern);
    whole += ")[\\s\\S]*";
    r.whole_ = std::regex(whole, flags);
  } catch (const std::regex_error& e) {
    return std::string(e.what());
  }
  return r;
}

bool bounded_regex::search(std::string_view s) const {
  return std::regex_match(s.begin(), s.end(), whole_);
}

}  // namespace warren::mgmt
