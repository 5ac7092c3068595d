// The AMQP 0-9-1 wire codec of field tables and arrays (the values are common::field_table).
#pragma once

#include "common/byte_io.hpp"
#include "common/field_table.hpp"

namespace warren::amqp::protocol {

using common::byte_array;
using common::decimal;
using common::field_array;
using common::field_entry;
using common::field_table;
using common::field_value;
using common::table_bool;
using common::table_string;
using common::table_table;
using common::timestamp;

// Nesting deeper than this is refused: bounds recursion on hostile input.
inline constexpr int max_table_depth = 64;

// Decoders return false on truncated input, an unknown type tag or excessive nesting; the reader
// is then in a failed state.
bool decode_table(common::byte_reader& r, field_table& out, int depth = 0);
bool decode_array(common::byte_reader& r, field_array& out, int depth = 0);
bool decode_value(common::byte_reader& r, field_value& out, int depth = 0);
void encode_table(common::byte_writer& w, const field_table& t);
void encode_array(common::byte_writer& w, const field_array& a);
void encode_value(common::byte_writer& w, const field_value& v);

}  // namespace warren::amqp::protocol
