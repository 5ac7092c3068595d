// Byte edits of a basic property list (properties_edit.hpp). By hand: the codec generated from
// the spec decodes and encodes whole property lists, which is what these edits avoid; the list's
// layout (flags word, then the present fields in order: content-type and content-encoding as
// short strings, then the headers table) is fixed by the spec for class basic.
#include "amqp/protocol/properties_edit.hpp"

#include <cstdint>

namespace warren::amqp::protocol {

namespace {

constexpr uint16_t flag_content_type = 1 << 15;
constexpr uint16_t flag_content_encoding = 1 << 14;
constexpr uint16_t flag_headers = 1 << 13;
constexpr uint16_t flag_continued = 1;  // never set for class basic: 14 properties fit one word

uint32_t get_u32(std::string_view s, size_t at) {
  auto b = [&](size_t i) { return uint32_t(uint8_t(s[at + i])); };
  return b(0) << 24 | b(1) << 16 | b(2) << 8 | b(3);
}

void put_u32(std::string& s, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + size_t(i)] = char(v >> (24 - 8 * i));
}

void put_u16(std::string& s, size_t at, uint16_t v) {
  s[at] = char(v >> 8);
  s[at + 1] = char(v);
}

// Where the headers table is (or would go) in `props`, with the flags; nullopt if malformed. When
// the headers flag is set, the table's length is checked to lie within `props`.
std::optional<size_t> headers_at(std::string_view props, uint16_t& flags) {
  common::byte_reader r(props.data(), props.size());
  flags = r.u16();
  if (!r.ok() || (flags & flag_continued)) return std::nullopt;
  if (flags & flag_content_type) r.bytes(r.u8());
  if (flags & flag_content_encoding) r.bytes(r.u8());
  if (!r.ok()) return std::nullopt;
  size_t at = r.position();
  if (flags & flag_headers) {
    uint32_t len = r.u32();
    if (!r.ok() || r.remaining() < len) return std::nullopt;
  }
  return at;
}

}  // namespace

bool prepend_header(std::string& props, std::string_view key, const field_value& value) {
  if (key.size() > 255) return false;
  uint16_t flags = 0;
  auto at = headers_at(props, flags);
  if (!at) return false;
  std::string entry;
  common::byte_writer w(entry);
  bool had_table = flags & flag_headers;
  if (!had_table) w.u32(0);  // the new table's length, patched below
  w.u8(uint8_t(key.size()));
  w.bytes(key);
  encode_value(w, value);
  if (had_table) {
    put_u32(props, *at, get_u32(props, *at) + uint32_t(entry.size()));
    props.insert(*at + 4, entry);
  } else {
    put_u32(entry, 0, uint32_t(entry.size() - 4));
    props.insert(*at, entry);
    put_u16(props, 0, uint16_t(flags | flag_headers));
  }
  return true;
}

std::optional<field_value> take_first_header(std::string& props, std::string_view key) {
  uint16_t flags = 0;
  auto at = headers_at(props, flags);
  if (!at || !(flags & flag_headers)) return std::nullopt;
  uint32_t len = get_u32(props, *at);
  common::byte_reader r(props.data() + *at + 4, len);
  std::string_view k = r.bytes(r.u8());
  if (!r.ok() || k != key) return std::nullopt;
  field_value v;
  if (!decode_value(r, v)) return std::nullopt;
  auto entry = uint32_t(r.position());
  if (entry == len) {  // the only entry: the table goes
    props.erase(*at, 4 + size_t(len));
    put_u16(props, 0, uint16_t(flags & ~flag_headers));
  } else {
    props.erase(*at + 4, entry);
    put_u32(props, *at, len - entry);
  }
  return v;
}

}  // namespace warren::amqp::protocol
