// Field table wire codec. Written by hand: it is the one part of the codec the spec XML does not
// describe (the XML only names the "table" domain).
#include "amqp/protocol/field_table.hpp"

#include <bit>

#include "common/overloaded.hpp"

namespace warren::amqp::protocol {

using common::overloaded;

bool decode_value(common::byte_reader& r, field_value& out, int depth) {
  char tag = char(r.u8());
  if (!r.ok()) return false;
  switch (tag) {
    case 'V':
      out.v = std::monostate{};
      break;
    case 't':
      out.v = r.u8() != 0;
      break;
    case 'b':
      out.v = int8_t(r.u8());
      break;
    case 'B':
      out.v = uint8_t(r.u8());
      break;
    case 's':
      out.v = int16_t(r.u16());
      break;
    case 'u':
      out.v = uint16_t(r.u16());
      break;
    case 'I':
      out.v = int32_t(r.u32());
      break;
    case 'i':
      out.v = uint32_t(r.u32());
      break;
    case 'l':
      out.v = int64_t(r.u64());
      break;
    case 'L':
      out.v = uint64_t(r.u64());
      break;
    case 'f':
      out.v = std::bit_cast<float>(r.u32());
      break;
    case 'd':
      out.v = std::bit_cast<double>(r.u64());
      break;
    case 'D': {
      decimal d;
      d.scale = r.u8();
      d.value = r.u32();
      out.v = d;
      break;
    }
    case 'S': {
      uint32_t n = r.u32();
      out.v = std::string(r.bytes(n));
      break;
    }
    case 'x': {
      uint32_t n = r.u32();
      out.v = byte_array{std::string(r.bytes(n))};
      break;
    }
    case 'T':
      out.v = timestamp{r.u64()};
      break;
    case 'A': {
      field_array a;
      if (!decode_array(r, a, depth + 1)) return false;
      out.v = std::move(a);
      break;
    }
    case 'F': {
      field_table t;
      if (!decode_table(r, t, depth + 1)) return false;
      out.v = std::move(t);
      break;
    }
    default:
      r.fail();
      return false;
  }
  return r.ok();
}

namespace {

// Tables and arrays are both a 32-bit length and then items up to it; `item` reads one from the
// sub-reader and returns false if it does not decode.
template <typename Item>
bool decode_sized(common::byte_reader& r, int depth, Item item) {
  if (depth > max_table_depth) {
    r.fail();
    return false;
  }
  uint32_t len = r.u32();
  std::string_view body = r.bytes(len);
  if (!r.ok()) return false;
  common::byte_reader sub(body.data(), body.size());
  while (sub.remaining() > 0) {
    if (!item(sub)) {
      r.fail();
      return false;
    }
  }
  return true;
}

}  // namespace

bool decode_table(common::byte_reader& r, field_table& out, int depth) {
  out.entries.clear();
  return decode_sized(r, depth, [&](common::byte_reader& sub) {
    uint8_t klen = sub.u8();
    std::string_view key = sub.bytes(klen);
    field_value v;
    if (!sub.ok() || !decode_value(sub, v, depth)) return false;
    out.entries.push_back(field_entry{std::string(key), std::move(v)});
    return true;
  });
}

bool decode_array(common::byte_reader& r, field_array& out, int depth) {
  out.items.clear();
  return decode_sized(r, depth, [&](common::byte_reader& sub) {
    field_value v;
    if (!decode_value(sub, v, depth)) return false;
    out.items.push_back(std::move(v));
    return true;
  });
}

void encode_value(common::byte_writer& w, const field_value& fv) {
  w.u8(uint8_t(fv.type_tag()));
  std::visit(overloaded{[](std::monostate) {}, [&](bool b) { w.u8(b ? 1 : 0); },
                        [&](int8_t x) { w.u8(uint8_t(x)); }, [&](uint8_t x) { w.u8(x); },
                        [&](int16_t x) { w.u16(uint16_t(x)); }, [&](uint16_t x) { w.u16(x); },
                        [&](int32_t x) { w.u32(uint32_t(x)); }, [&](uint32_t x) { w.u32(x); },
                        [&](int64_t x) { w.u64(uint64_t(x)); }, [&](uint64_t x) { w.u64(x); },
                        [&](float x) { w.u32(std::bit_cast<uint32_t>(x)); },
                        [&](double x) { w.u64(std::bit_cast<uint64_t>(x)); },
                        [&](const decimal& d) {
                          w.u8(d.scale);
                          w.u32(d.value);
                        },
                        [&](const std::string& s) {
                          w.u32(uint32_t(s.size()));
                          w.bytes(s);
                        },
                        [&](const byte_array& b) {
                          w.u32(uint32_t(b.data.size()));
                          w.bytes(b.data);
                        },
                        [&](const timestamp& t) { w.u64(t.value); },
                        [&](const field_array& a) { encode_array(w, a); },
                        [&](const field_table& t) { encode_table(w, t); }},
             fv.v);
}

void encode_table(common::byte_writer& w, const field_table& t) {
  size_t at = w.size();
  w.u32(0);
  for (const auto& e : t.entries) {
    std::string_view key = std::string_view(e.key).substr(0, 255);  // short string limit
    w.u8(uint8_t(key.size()));
    w.bytes(key);
    encode_value(w, e.value);
  }
  w.patch_u32(at, uint32_t(w.size() - at - 4));
}

void encode_array(common::byte_writer& w, const field_array& a) {
  size_t at = w.size();
  w.u32(0);
  for (const auto& v : a.items) encode_value(w, v);
  w.patch_u32(at, uint32_t(w.size() - at - 4));
}

}  // namespace warren::amqp::protocol
