// Headers-exchange routing: whether a message's headers satisfy a binding's arguments, with
// RabbitMQ 3.10's x-match modes and value comparison. Pure functions, no state.
#pragma once

#include <optional>

#include "common/field_table.hpp"

namespace warren::broker {

enum class x_match { all, any, all_with_x, any_with_x };

// The binding's "x-match": absent -> all; the long strings "all", "any", "all-with-x",
// "any-with-x" (exact, case-sensitive); anything else, including those words sent as a byte
// array, -> nullopt, which the caller refuses with 406 PRECONDITION_FAILED at bind time.
std::optional<x_match> parse_x_match(const common::field_table& binding_args);

// Rules (RabbitMQ 3.10, rabbit_exchange_type_headers):
//   - "x-match" in the binding is never a condition. Other binding keys starting with "x-" are
//     conditions only in the *_with_x modes. Message headers are never skipped.
//   - A binding value of type void asks for presence only: any value, of any type, matches.
//   - Otherwise values are compared as Erlang's == compares decoded terms (see
//     loosely_equal in the .cpp): integers of any width, timestamps and floats by numeric value
//     ('L' is signed, as RabbitMQ decodes it); long strings and byte arrays by bytes; nested
//     tables and arrays entry by entry with exact types.
//   - all: every condition holds (so no conditions -> true, even without headers).
//     any: at least one holds (so no conditions -> false).
//   - A key repeated in a table pairs its n-th binding entry with its n-th header entry, as
//     RabbitMQ's merge over stably sorted tables does.
// `message_headers` may be null (a message without a headers property).
bool headers_match(x_match mode, const common::field_table& binding_args,
                   const common::field_table* message_headers);

}  // namespace warren::broker
