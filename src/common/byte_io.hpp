// Big-endian readers and writers for wire formats (AMQP, WebSocket). No allocation on read;
// a reader never throws: every read reports failure and leaves the reader in a failed state.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>

namespace warren::common {

// Reads big-endian values from a borrowed byte span. After the first short read, ok() is false
// and every further read returns a zero value, so a decoder can read a whole struct and check once.
class byte_reader {
 public:
  explicit byte_reader(std::span<const uint8_t> data) : data_(data) {}
  byte_reader(const void* p, size_t n) : data_(static_cast<const uint8_t*>(p), n) {}

  bool ok() const { return ok_; }
  void fail() { ok_ = false; }
  size_t remaining() const { return ok_ ? data_.size() - pos_ : 0; }
  size_t position() const { return pos_; }
  bool at_end() const { return ok_ && pos_ == data_.size(); }

  uint8_t u8() {
    if (!need(1)) return 0;
    return data_[pos_++];
  }
  uint16_t u16() {
    if (!need(2)) return 0;
    uint16_t v = uint16_t(data_[pos_] << 8 | data_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = uint32_t(data_[pos_]) << 24 | uint32_t(data_[pos_ + 1]) << 16 |
                 uint32_t(data_[pos_ + 2]) << 8 | uint32_t(data_[pos_ + 3]);
    pos_ += 4;
    return v;
  }
  uint64_t u64() {
    uint64_t hi = u32();
    return hi << 32 | u32();
  }
  // A view of the next n bytes (valid as long as the underlying buffer).
  std::string_view bytes(size_t n) {
    if (!need(n)) return {};
    std::string_view v(reinterpret_cast<const char*>(data_.data() + pos_), n);
    pos_ += n;
    return v;
  }
  std::span<const uint8_t> rest() const { return ok_ ? data_.subspan(pos_) : data_.subspan(0, 0); }

 private:
  bool need(size_t n) {
    if (!ok_ || data_.size() - pos_ < n) {
      ok_ = false;
      return false;
    }
    return true;
  }
  std::span<const uint8_t> data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

// Appends big-endian values to a std::string used as a byte buffer.
class byte_writer {
 public:
  explicit byte_writer(std::string& out) : out_(out) {}

  void u8(uint8_t v) { out_.push_back(char(v)); }
  void u16(uint16_t v) {
    char b[2] = {char(v >> 8), char(v)};
    out_.append(b, 2);
  }
  void u32(uint32_t v) {
    char b[4] = {char(v >> 24), char(v >> 16), char(v >> 8), char(v)};
    out_.append(b, 4);
  }
  void u64(uint64_t v) {
    u32(uint32_t(v >> 32));
    u32(uint32_t(v));
  }
  void bytes(std::string_view s) { out_.append(s); }
  size_t size() const { return out_.size(); }
  // Overwrites a 32-bit value already written at offset `at` (used to back-patch lengths).
  void patch_u32(size_t at, uint32_t v) {
    out_[at] = char(v >> 24);
    out_[at + 1] = char(v >> 16);
    out_[at + 2] = char(v >> 8);
    out_[at + 3] = char(v);
  }
  std::string& buffer() { return out_; }

 private:
  std::string& out_;
};

}  // namespace warren::common
