// AMQP-style field tables and arrays as plain values: what message headers, queue and exchange
// arguments and peer properties are made of. Shared by the codec (amqp/protocol), the broker and
// the web gateway; the wire codec lives in amqp/protocol/field_table.hpp. Type tags follow
// RabbitMQ's interpretation of the 0-9-1 errata ('s' is a signed 16-bit integer).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace warren::common {

struct decimal {
  uint8_t scale = 0;
  uint32_t value = 0;
  bool operator==(const decimal&) const = default;
};
struct byte_array {  // 'x': opaque bytes, distinct from a long string 'S'
  std::string data;
  bool operator==(const byte_array&) const = default;
};
struct timestamp {  // 'T': seconds since the epoch
  uint64_t value = 0;
  bool operator==(const timestamp&) const = default;
};

struct field_value;
struct field_entry;

// A table keeps its entries in wire order; keys are looked up by linear scan (tables are small).
// Special members are defined below, once field_entry is complete (clang instantiates them early).
struct field_table {
  std::vector<field_entry> entries;

  field_table();
  field_table(const field_table&);
  field_table(field_table&&) noexcept;
  field_table& operator=(const field_table&);
  field_table& operator=(field_table&&) noexcept;
  ~field_table();

  const field_value* find(std::string_view key) const;
  void set(std::string key, field_value value);
  bool empty() const { return entries.empty(); }
  bool operator==(const field_table& other) const;
};

struct field_array {
  std::vector<field_value> items;

  field_array();
  field_array(std::vector<field_value> v);
  field_array(const field_array&);
  field_array(field_array&&) noexcept;
  field_array& operator=(const field_array&);
  field_array& operator=(field_array&&) noexcept;
  ~field_array();
  bool operator==(const field_array& other) const;
};

struct field_value {
  // Alternative order is irrelevant to the wire: each maps to one type tag (see type_tag()).
  using variant_type =
      std::variant<std::monostate /*V*/, bool /*t*/, int8_t /*b*/, uint8_t /*B*/, int16_t /*s*/,
                   uint16_t /*u*/, int32_t /*I*/, uint32_t /*i*/, int64_t /*l*/, uint64_t /*L*/,
                   float /*f*/, double /*d*/, decimal /*D*/, std::string /*S*/, byte_array /*x*/,
                   timestamp /*T*/, field_array /*A*/, field_table /*F*/>;
  variant_type v;

  field_value() = default;
  template <typename T>
  requires std::is_constructible_v<variant_type, T&&> field_value(T&& x)
      : v(std::forward<T>(x)) {}  // NOLINT: implicit by design
  field_value(const char* s) : v(std::string(s)) {}

  char type_tag() const;
  template <typename T>
  const T* get_if() const {
    return std::get_if<T>(&v);
  }
  bool operator==(const field_value& other) const { return v == other.v; }
};

struct field_entry {
  std::string key;
  field_value value;
  bool operator==(const field_entry&) const = default;
};

inline field_table::field_table() = default;
inline field_table::field_table(const field_table&) = default;
inline field_table::field_table(field_table&&) noexcept = default;
inline field_table& field_table::operator=(const field_table&) = default;
inline field_table& field_table::operator=(field_table&&) noexcept = default;
inline field_table::~field_table() = default;
inline field_array::field_array() = default;
inline field_array::field_array(std::vector<field_value> v) : items(std::move(v)) {}
inline field_array::field_array(const field_array&) = default;
inline field_array::field_array(field_array&&) noexcept = default;
inline field_array& field_array::operator=(const field_array&) = default;
inline field_array& field_array::operator=(field_array&&) noexcept = default;
inline field_array::~field_array() = default;

inline bool field_table::operator==(const field_table& other) const {
  return entries == other.entries;
}
inline bool field_array::operator==(const field_array& other) const {
  return items == other.items;
}

// Lookup helpers for tables clients send (client-properties, capabilities, arguments).
std::optional<bool> table_bool(const field_table& t, std::string_view key);
std::optional<std::string_view> table_string(const field_table& t, std::string_view key);
// An integer of any width and sign (not a boolean), as int64_t.
std::optional<int64_t> integer_value(const field_value& v);
std::optional<int64_t> table_int(const field_table& t, std::string_view key);
const field_table* table_table(const field_table& t, std::string_view key);

}  // namespace warren::common
