// Framing shared by every file of the store: an 8-byte magic, then records of
//   u32 length | u32 CRC-32 of the payload | payload
// (big-endian). A reader stops at the first record that is short or fails its checksum: that
// is where a crash tore the file, and everything before it is intact.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

namespace warren::store {

inline constexpr size_t magic_size = 8;
inline constexpr uint32_t max_record = 1u << 30;

// CRC-32 of a payload, as zlib's crc32 computes it.
uint32_t crc(std::string_view payload);

// Starts a record at the end of `out`; finish it with end_record(out, at) once the payload is
// appended. No copy of the payload is made.
size_t begin_record(std::string& out);
void end_record(std::string& out, size_t at);

struct scan_result {
  size_t records = 0;
  size_t good_bytes = 0;  // file offset just after the last intact record
  bool torn = false;      // bytes after good_bytes that are not a whole record
  bool bad_magic = false;
};

// Calls fn for every intact record of `data` (a whole file, magic included), in order.
scan_result scan_records(std::string_view data, std::string_view magic,
                         const std::function<void(std::string_view payload)>& fn);

// Reads a whole file; false if it cannot be opened.
bool read_whole_file(const std::filesystem::path& p, std::string& out);

// Writes all of `data` at the end of fd, retrying on EINTR and short writes. Throws
// std::system_error on any other failure.
void write_all(int fd, std::string_view data);
// The same, removing from `data` what was written: after a failure it holds what is left.
void write_consume(int fd, std::string& data);

// Opens (creating, with the magic, if new or empty) a file for appending; returns the fd.
int open_for_append(const std::filesystem::path& p, std::string_view magic);

// fsync of a directory, so that files created or renamed in it survive a power cut.
void sync_directory(const std::filesystem::path& dir);

// Writes `content` to path.tmp, syncs it and renames it over path.
void replace_file(const std::filesystem::path& p, std::string_view content);

}  // namespace warren::store
