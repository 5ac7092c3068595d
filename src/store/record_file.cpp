// Record framing and the file primitives of the store. CRC-32 is zlib's (IEEE polynomial).
#include "store/record_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <system_error>

#include "common/byte_io.hpp"

namespace warren::store {

namespace {

// CRC-32 (IEEE, zlib's values) by slicing-by-8: zlib's crc32 handles the short buffers of small
// messages (tens of bytes) a byte at a time and was half of a recovery's time.
struct crc_tables {
  uint32_t t[8][256];
  constexpr crc_tables() : t{} {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i)
      for (int j = 1; j < 8; ++j) t[j][i] = (t[j - 1][i] >> 8) ^ t[0][t[j - 1][i] & 0xff];
  }
};
constexpr crc_tables tables;

}  // namespace

uint32_t crc(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  size_t n = s.size();
  uint32_t c = 0xFFFFFFFFu;
  const auto& t = tables.t;
  while (n >= 8) {
    uint32_t lo =
        c ^ (uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24);
    uint32_t hi =
        uint32_t(p[4]) | uint32_t(p[5]) << 8 | uint32_t(p[6]) << 16 | uint32_t(p[7]) << 24;
    c = t[7][lo & 0xff] ^ t[6][(lo >> 8) & 0xff] ^ t[5][(lo >> 16) & 0xff] ^ t[4][lo >> 24] ^
        t[3][hi & 0xff] ^ t[2][(hi >> 8) & 0xff] ^ t[1][(hi >> 16) & 0xff] ^ t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = t[0][(c ^ *p++) & 0xff] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

namespace {

std::system_error io_error(const std::string& what) {
  return std::system_error(errno, std::generic_category(), what);
}

}  // namespace

size_t begin_record(std::string& out) {
  size_t at = out.size();
  out.append(8, '\0');
  return at;
}

void end_record(std::string& out, size_t at) {
  std::string_view payload(out.data() + at + 8, out.size() - at - 8);
  common::byte_writer w(out);
  w.patch_u32(at, uint32_t(payload.size()));
  w.patch_u32(at + 4, crc(payload));
}

scan_result scan_records(std::string_view data, std::string_view magic,
                         const std::function<void(std::string_view)>& fn) {
  scan_result r;
  if (data.size() < magic_size || data.substr(0, magic_size) != magic) {
    r.bad_magic = true;
    r.torn = !data.empty();
    return r;
  }
  size_t pos = magic_size;
  r.good_bytes = pos;
  while (pos < data.size()) {
    if (data.size() - pos < 8) break;
    common::byte_reader h(data.data() + pos, 8);
    uint32_t len = h.u32();
    uint32_t sum = h.u32();
    if (len > max_record || data.size() - pos - 8 < len) break;
    std::string_view payload = data.substr(pos + 8, len);
    if (crc(payload) != sum) break;
    fn(payload);
    ++r.records;
    pos += 8 + len;
    r.good_bytes = pos;
  }
  r.torn = r.good_bytes != data.size();
  return r;
}

bool read_whole_file(const std::filesystem::path& p, std::string& out) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return false;
  f.seekg(0, std::ios::end);
  out.resize(size_t(f.tellg()));
  f.seekg(0);
  f.read(out.data(), std::streamsize(out.size()));
  return bool(f) || out.empty();
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw io_error("write");
    }
    data.remove_prefix(size_t(n));
  }
}

void write_consume(int fd, std::string& data) {
  size_t done = 0;
  try {
    while (done < data.size()) {
      ssize_t n = ::write(fd, data.data() + done, data.size() - done);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw io_error("write");
      }
      done += size_t(n);
    }
  } catch (...) {
    data.erase(0, done);
    throw;
  }
  data.clear();
}

int open_for_append(const std::filesystem::path& p, std::string_view magic) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) throw io_error("open " + p.string());
  off_t end = ::lseek(fd, 0, SEEK_END);
  if (end == 0) write_all(fd, magic);
  return fd;
}

void sync_directory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw io_error("open " + dir.string());
  ::fsync(fd);
  ::close(fd);
}

void replace_file(const std::filesystem::path& p, std::string_view content) {
  std::filesystem::path tmp = p;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw io_error("open " + tmp.string());
  try {
    write_all(fd, content);
    if (::fsync(fd) != 0) throw io_error("fsync " + tmp.string());
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::close(fd);
  std::filesystem::rename(tmp, p);
  sync_directory(p.parent_path());
}

}  // namespace warren::store
