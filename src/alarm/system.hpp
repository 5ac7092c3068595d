// Readings of this machine for the alarms: total memory (physical RAM or the cgroup's limit,
// whichever is smaller), the process's resident memory, and a directory's free space. Every
// Linux file read is named in system_paths so that tests can point it at files of their own.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace warren::alarm {

struct system_paths {
  std::string meminfo = "/proc/meminfo";
  std::string self_cgroup = "/proc/self/cgroup";
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string self_statm = "/proc/self/statm";
};

// MemTotal of /proc/meminfo, in bytes.
std::optional<uint64_t> physical_memory(const system_paths& p = {});

// The smallest memory limit on this process's cgroup and its ancestors: cgroup v2's memory.max
// and cgroup v1's memory.limit_in_bytes (hybrid hosts have both). nullopt when no limit is set.
// A directory missing under cgroup_root (a cgroup path seen from another namespace) is skipped:
// its ancestors, up to the mount's root, still count.
std::optional<uint64_t> cgroup_memory_limit(const system_paths& p = {});

struct total_memory {
  uint64_t bytes = 0;
  bool cgroup_limited = false;  // the cgroup's limit is below the physical RAM
};
// min(physical RAM, cgroup limit); nullopt when neither can be read.
std::optional<total_memory> available_memory(const system_paths& p = {});

// Resident set size of this process (statm's second field times the page size), in bytes.
std::optional<uint64_t> process_rss(const system_paths& p = {});

// Bytes an unprivileged process may still write on the file system holding `dir` (statvfs
// f_bavail * f_frsize, what df shows as available).
std::optional<uint64_t> disk_free(const std::string& dir);

// Hands memory that malloc keeps on its free lists back to the kernel (common/memory.hpp):
// without it, a drained queue's memory would stay resident and the memory alarm would not clear.
void release_free_memory();

}  // namespace warren::alarm
