// Field table lookups and type tags.
#include "common/field_table.hpp"

#include "common/overloaded.hpp"

namespace warren::common {

const field_value* field_table::find(std::string_view key) const {
  for (const auto& e : entries)
    if (e.key == key) return &e.value;
  return nullptr;
}

void field_table::set(std::string key, field_value value) {
  for (auto& e : entries) {
    if (e.key == key) {
      e.value = std::move(value);
      return;
    }
  }
  entries.push_back(field_entry{std::move(key), std::move(value)});
}

char field_value::type_tag() const {
  return std::visit(
      overloaded{
          [](std::monostate) { return 'V'; }, [](bool) { return 't'; }, [](int8_t) { return 'b'; },
          [](uint8_t) { return 'B'; }, [](int16_t) { return 's'; }, [](uint16_t) { return 'u'; },
          [](int32_t) { return 'I'; }, [](uint32_t) { return 'i'; }, [](int64_t) { return 'l'; },
          [](uint64_t) { return 'L'; }, [](float) { return 'f'; }, [](double) { return 'd'; },
          [](const decimal&) { return 'D'; }, [](const std::string&) { return 'S'; },
          [](const byte_array&) { return 'x'; }, [](const timestamp&) { return 'T'; },
          [](const field_array&) { return 'A'; }, [](const field_table&) { return 'F'; }},
      v);
}

std::optional<bool> table_bool(const field_table& t, std::string_view key) {
  const field_value* v = t.find(key);
  if (!v) return std::nullopt;
  if (auto b = v->get_if<bool>()) return *b;
  return std::nullopt;
}

std::optional<std::string_view> table_string(const field_table& t, std::string_view key) {
  const field_value* v = t.find(key);
  if (!v) return std::nullopt;
  if (auto s = v->get_if<std::string>()) return std::string_view(*s);
  if (auto b = v->get_if<byte_array>()) return std::string_view(b->data);
  return std::nullopt;
}

std::optional<int64_t> integer_value(const field_value& v) {
  return std::visit(
      [](const auto& x) -> std::optional<int64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) return int64_t(x);
        return std::nullopt;
      },
      v.v);
}

std::optional<int64_t> table_int(const field_table& t, std::string_view key) {
  const field_value* v = t.find(key);
  return v ? integer_value(*v) : std::nullopt;
}

const field_table* table_table(const field_table& t, std::string_view key) {
  const field_value* v = t.find(key);
  return v ? v->get_if<field_table>() : nullptr;
}

}  // namespace warren::common
