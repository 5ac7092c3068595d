// Message deduplication: the window of remembered keys, the declare arguments, message keys.
#include "broker/dedup.hpp"

#include <openssl/evp.h>

#include <charconv>
#include <cstring>
#include <memory>

namespace warren::broker {

// ----------------------------------------------------------------------------- keys

namespace {

struct md_ctx_deleter {
  void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
};

const EVP_MD* sha256() {
  // Fetched once: an implicit fetch per digest would cost a provider look-up per message.
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

}  // namespace

dedup_key make_dedup_key(char type, const void* data, size_t n) {
  thread_local std::unique_ptr<EVP_MD_CTX, md_ctx_deleter> ctx(EVP_MD_CTX_new());
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  dedup_key k;
  if (ctx && sha256() && EVP_DigestInit_ex2(ctx.get(), sha256(), nullptr) == 1 &&
      EVP_DigestUpdate(ctx.get(), &type, 1) == 1 && EVP_DigestUpdate(ctx.get(), data, n) == 1 &&
      EVP_DigestFinal_ex(ctx.get(), out, &len) == 1 && len >= 16) {
    std::memcpy(&k.lo, out, 8);
    std::memcpy(&k.hi, out + 8, 8);
  }
  return k;
}

namespace {

// A header value as key bytes. Strings and byte arrays alike (RabbitMQ's plugin compares the
// binaries), integers of every width as one 64-bit value, so that a publisher switching from
// 'I' to 'l' still matches; arrays, tables, void and decimals give no key.
std::optional<dedup_key> value_key(const common::field_value& v) {
  return std::visit(
      [](const auto& x) -> std::optional<dedup_key> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return make_dedup_key('S', x.data(), x.size());
        } else if constexpr (std::is_same_v<T, common::byte_array>) {
          return make_dedup_key('S', x.data.data(), x.data.size());
        } else if constexpr (std::is_same_v<T, bool>) {
          char b = x ? 1 : 0;
          return make_dedup_key('t', &b, 1);
        } else if constexpr (std::is_integral_v<T>) {
          if constexpr (std::is_unsigned_v<T>) {
            if (uint64_t(x) > uint64_t(INT64_MAX)) {
              uint64_t u = x;
              return make_dedup_key('U', &u, sizeof u);
            }
          }
          int64_t i = int64_t(x);
          return make_dedup_key('I', &i, sizeof i);
        } else if constexpr (std::is_floating_point_v<T>) {
          double d = double(x);
          return make_dedup_key('d', &d, sizeof d);
        } else if constexpr (std::is_same_v<T, common::timestamp>) {
          return make_dedup_key('T', &x.value, sizeof x.value);
        } else {
          return std::nullopt;
        }
      },
      v.v);
}

error invalid(std::string text) {
  return error{error_code::precondition_failed, std::move(text)};
}

// A positive integer argument: any integer type, or (as the plugin accepts) a string of decimal
// digits.
std::optional<int64_t> positive(const common::field_value& v) {
  std::optional<int64_t> n = std::visit(
      [](const auto& x) -> std::optional<int64_t> {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, bool>) {
          return std::nullopt;
        } else if constexpr (std::is_integral_v<T>) {
          if constexpr (std::is_unsigned_v<T>)
            if (uint64_t(x) > uint64_t(INT64_MAX)) return std::nullopt;
          return int64_t(x);
        } else if constexpr (std::is_same_v<T, std::string>) {
          int64_t r = 0;
          auto [end, ec] = std::from_chars(x.data(), x.data() + x.size(), r);
          if (ec != std::errc() || end != x.data() + x.size() || x.empty() || x[0] == '-')
            return std::nullopt;
          return r;
        } else {
          return std::nullopt;
        }
      },
      v.v);
  if (n && *n > 0) return n;
  return std::nullopt;
}

}  // namespace

// ----------------------------------------------------------------------------- arguments

// Positions in the ring are 32-bit.
static constexpr int64_t max_cache_size = int64_t(1) << 30;

maybe_error parse_dedup_arguments(const common::field_table& args, std::string_view exchange_type,
                                  std::optional<dedup_settings>& out) {
  out.reset();
  const bool is_type = exchange_type == dedup_exchange_type;
  bool on = is_type;
  if (const auto* v = args.find("x-message-deduplication")) {
    const bool* b = v->get_if<bool>();
    if (!b) return invalid("Invalid argument, 'x-message-deduplication' must be a boolean");
    on = on || *b;
  }
  if (!on) return std::nullopt;
  dedup_settings s;
  if (const auto* v = args.find("x-cache-size")) {
    auto n = positive(*v);
    if (!n)
      return invalid(
          "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0");
    if (*n > max_cache_size)
      return invalid("Invalid argument, 'x-cache-size' must be at most 1073741824");
    s.cache_size = size_t(*n);
  } else if (is_type) {
    // The plugin's exchange type has no default size; LavinMQ's argument defaults to 128.
    return invalid("Missing or invalid argument, 'x-cache-size' must be an integer greater than 0");
  }
  if (const auto* v = args.find("x-cache-ttl")) {
    auto n = positive(*v);
    if (!n) return invalid("Invalid argument, 'x-cache-ttl' must be an integer greater than 0");
    s.cache_ttl_ms = *n;
  }
  if (const auto* v = args.find("x-cache-persistence")) {
    const std::string* p = v->get_if<std::string>();
    if (!p || (*p != "disk" && *p != "memory"))
      return invalid("Invalid argument, 'x-cache-persistence' must be either 'disk' or 'memory'");
    // The cache is held in memory only: accepting 'disk' would promise what a restart breaks.
    if (*p == "disk")
      return invalid(
          "Invalid argument, 'x-cache-persistence' 'disk' is not supported: Warren keeps the "
          "deduplication cache in memory");
  }
  if (const auto* v = args.find("x-deduplication-header")) {
    const std::string* h = v->get_if<std::string>();
    if (!h || h->empty())
      return invalid("Invalid argument, 'x-deduplication-header' must be a non-empty string");
    s.header = *h;
  }
  if (const auto* v = args.find("x-deduplication-property")) {
    const std::string* p = v->get_if<std::string>();
    if (!p || *p != "message_id")
      return invalid("Invalid argument, 'x-deduplication-property' must be 'message_id'");
    s.fall_back_to_message_id = true;
  }
  out = std::move(s);
  return std::nullopt;
}

// ----------------------------------------------------------------------------- filter

std::optional<dedup_key> dedup_filter::key_of(const message& m) const {
  const auto& p = m.properties;
  if (p.headers)
    if (const auto* v = p.headers->find(settings_.header)) return value_key(*v);
  if (settings_.fall_back_to_message_id && p.message_id)
    return make_dedup_key('S', p.message_id->data(), p.message_id->size());
  return std::nullopt;
}

void dedup_filter::remember(const dedup_key& k, const message& m, int64_t now) {
  std::optional<int64_t> ttl = settings_.cache_ttl_ms;
  if (m.properties.headers)
    if (const auto* v = m.properties.headers->find("x-cache-ttl"))
      if (auto n = positive(*v); n && !v->get_if<std::string>()) ttl = n;
  cache_.insert(k, ttl ? now + *ttl : 0, now);
}

bool dedup_filter::check_and_remember(const message& m, int64_t now) {
  auto k = key_of(m);
  if (!k) return false;
  if (seen(*k, now)) {
    ++dropped;
    return true;
  }
  remember(*k, m, now);
  return false;
}

// ----------------------------------------------------------------------------- cache

size_t dedup_cache::find(const dedup_key& k) const {
  if (index_.empty()) return SIZE_MAX;
  const size_t mask = index_.size() - 1;
  for (size_t p = home(k);; p = (p + 1) & mask) {
    uint32_t at = index_[p];
    if (at == empty_) return SIZE_MAX;
    if (slots_[at].key == k) return p;
  }
}

bool dedup_cache::contains(const dedup_key& k, int64_t now) const {
  size_t p = find(k);
  if (p == SIZE_MAX) return false;
  int64_t d = slots_[index_[p]].deadline;
  return d == 0 || d > now;
}

void dedup_cache::index_remove(size_t pos) {
  // Backward-shift deletion: later entries of the probe run move up into the gap unless their
  // home lies cyclically after the gap, so no tombstones are needed.
  const size_t mask = index_.size() - 1;
  size_t gap = pos;
  for (size_t j = (pos + 1) & mask; index_[j] != empty_; j = (j + 1) & mask) {
    size_t h = home(slots_[index_[j]].key);
    bool stays = gap <= j ? (gap < h && h <= j) : (gap < h || h <= j);
    if (!stays) {
      index_[gap] = index_[j];
      gap = j;
    }
  }
  index_[gap] = empty_;
}

void dedup_cache::pop_oldest() {
  slot& s = slots_[head_];
  if (s.deadline != erased_) {
    index_remove(find(s.key));
    --live_;
  }
  head_ = head_ + 1 == slots_.size() ? 0 : head_ + 1;
  --count_;
}

void dedup_cache::grow() {
  size_t n = std::min(capacity_, std::max<size_t>(64, slots_.size() * 2));
  std::vector<slot> next;
  next.reserve(n);
  for (size_t i = 0, at = head_; i < count_; ++i, at = at + 1 == slots_.size() ? 0 : at + 1)
    if (slots_[at].deadline != erased_) next.push_back(slots_[at]);  // holes go
  next.resize(n);
  slots_ = std::move(next);
  head_ = 0;
  count_ = live_;
  rebuild_index();
}

void dedup_cache::rebuild_index() {
  size_t n = 1;
  while (n < slots_.size() * 2) n *= 2;
  index_.assign(n, empty_);
  const size_t mask = n - 1;
  for (size_t i = 0; i < count_; ++i) {
    size_t p = home(slots_[i].key);
    while (index_[p] != empty_) p = (p + 1) & mask;
    index_[p] = uint32_t(i);
  }
}

void dedup_cache::insert(const dedup_key& k, int64_t deadline, int64_t now) {
  if (capacity_ == 0) return;
  if (size_t p = find(k); p != SIZE_MAX) {
    slots_[index_[p]].deadline = deadline;
    return;
  }
  // Holes and expired keys at the old end go first (with one window for all, keys expire in
  // insertion order, so this keeps memory to what is live).
  while (count_ > 0) {
    int64_t d = slots_[head_].deadline;
    if (d != erased_ && (d == 0 || d > now)) break;
    pop_oldest();
  }
  if (count_ == slots_.size()) {
    if (slots_.size() < capacity_)
      grow();
    else
      pop_oldest();  // full: the oldest key makes room
  }
  size_t at = head_ + count_;
  if (at >= slots_.size()) at -= slots_.size();
  slots_[at] = slot{k, deadline};
  const size_t mask = index_.size() - 1;
  size_t p = home(k);
  while (index_[p] != empty_) p = (p + 1) & mask;
  index_[p] = uint32_t(at);
  ++count_;
  ++live_;
}

void dedup_cache::erase(const dedup_key& k) {
  size_t p = find(k);
  if (p == SIZE_MAX) return;
  slots_[index_[p]].deadline = erased_;
  index_remove(p);
  --live_;
}

void dedup_cache::clear() {
  slots_ = {};
  index_ = {};
  head_ = count_ = live_ = 0;
}

}  // namespace warren::broker
