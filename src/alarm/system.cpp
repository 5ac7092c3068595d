// /proc, /sys/fs/cgroup and statvfs readings for the alarms.
#include "alarm/system.hpp"

#include "common/memory.hpp"

#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <vector>

namespace warren::alarm {

namespace fs = std::filesystem;

namespace {

std::optional<std::string> read_file(const fs::path& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

std::optional<uint64_t> to_u64(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return v;
}

// Limits at or above this mean "unlimited": cgroup v1 writes 2^63 rounded down to a page.
constexpr uint64_t unlimited_v1 = uint64_t(1) << 62;

// The smallest limit found in `file` in `dir` and each ancestor of it up to `root`.
// read(text) -> limit, or nullopt for "no limit here".
template <typename Read>
std::optional<uint64_t> smallest_up_to(const fs::path& root, const std::string& cgroup_path,
                                       const char* file, Read read) {
  std::optional<uint64_t> best;
  fs::path rel = fs::path(cgroup_path).relative_path();
  for (;;) {
    if (auto text = read_file(root / rel / file))
      if (auto v = read(*text)) best = best ? std::min(*best, *v) : *v;
    if (rel.empty()) break;
    rel = rel.parent_path();
  }
  return best;
}

}  // namespace

std::optional<uint64_t> physical_memory(const system_paths& p) {
  auto text = read_file(p.meminfo);
  if (!text) return std::nullopt;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    std::string_view l = line;
    if (!l.starts_with("MemTotal:")) continue;
    l.remove_prefix(9);
    if (!l.ends_with("kB")) return std::nullopt;
    l.remove_suffix(2);
    auto kb = to_u64(l);
    if (!kb) return std::nullopt;
    return *kb * 1024;
  }
  return std::nullopt;
}

std::optional<uint64_t> cgroup_memory_limit(const system_paths& p) {
  auto text = read_file(p.self_cgroup);
  if (!text) return std::nullopt;
  std::optional<uint64_t> best;
  auto take = [&best](std::optional<uint64_t> v) {
    if (v) best = best ? std::min(*best, *v) : *v;
  };
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    // hierarchy-id:controller-list:path
    size_t a = line.find(':');
    size_t b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    std::string_view id = std::string_view(line).substr(0, a);
    std::string_view controllers = std::string_view(line).substr(a + 1, b - a - 1);
    std::string path = line.substr(b + 1);
    if (id == "0" && controllers.empty()) {  // cgroup v2: "max" or bytes
      take(smallest_up_to(p.cgroup_root, path, "memory.max",
                          [](const std::string& t) -> std::optional<uint64_t> {
                            return t.starts_with("max") ? std::nullopt : to_u64(t);
                          }));
      continue;
    }
    bool memory = false;  // cgroup v1: the hierarchy whose controllers include memory
    for (std::string_view rest = controllers; !rest.empty();) {
      size_t comma = rest.find(',');
      if (rest.substr(0, comma) == "memory") memory = true;
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
    if (memory)
      take(smallest_up_to(fs::path(p.cgroup_root) / "memory", path, "memory.limit_in_bytes",
                          [](const std::string& t) -> std::optional<uint64_t> {
                            auto v = to_u64(t);
                            if (v && *v >= unlimited_v1) return std::nullopt;
                            return v;
                          }));
  }
  return best;
}

std::optional<total_memory> available_memory(const system_paths& p) {
  auto ram = physical_memory(p);
  auto cg = cgroup_memory_limit(p);
  if (ram && cg && *cg < *ram) return total_memory{*cg, true};
  if (ram) return total_memory{*ram, false};
  if (cg) return total_memory{*cg, true};
  return std::nullopt;
}

std::optional<uint64_t> process_rss(const system_paths& p) {
  auto text = read_file(p.self_statm);
  if (!text) return std::nullopt;
  // size resident shared text lib data dt, in pages
  std::string_view t = *text;
  size_t sp = t.find(' ');
  if (sp == std::string_view::npos) return std::nullopt;
  t.remove_prefix(sp + 1);
  auto pages = to_u64(t.substr(0, t.find(' ')));
  if (!pages) return std::nullopt;
  static const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
  return *pages * page;
}

std::optional<uint64_t> disk_free(const std::string& dir) {
  struct statvfs s {};
  if (::statvfs(dir.c_str(), &s) != 0) return std::nullopt;
  return uint64_t(s.f_bavail) * uint64_t(s.f_frsize);
}

void release_free_memory() {
  warren::release_free_memory();
}

}  // namespace warren::alarm
