// Fuzzes the store's recovery (store/message_store, store/record_file) on damaged data
// directories. Once, the store itself writes a small data directory: durable exchanges, queues
// (one with priorities, one deleted) and bindings, persistent messages with every property over
// several small segments, some acknowledged. Each input is a list of edits to a copy of that
// directory - flip a bit, overwrite bytes, truncate, swap blocks, insert bytes, remove a file,
// and two that a crash cannot do (overwrite bytes and fix the record's CRC, append a copy of a
// range) - then a broker life recovers it, and a second life recovers what the first left.
//
// Checks, always: no crash, no exception. Unless a record was rewritten with a valid CRC or
// copied: every recovered message is one written to that queue, whole and unaltered (each body
// carries its own checksum and is compared with what was written), none comes twice, so no queue
// holds more than was written to it; the second life finds what the first did; and if the edits
// were only of kinds a reader can notice (no truncation, no removed file), fewer messages than
// the intact directory holds means recovery logged a warning.
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "broker/vhost.hpp"
#include "common/byte_io.hpp"
#include "fuzz_support.hpp"
#include "store/message_store.hpp"
#include "store/record_file.hpp"

using namespace warren;
namespace fs = std::filesystem;

namespace {

// libFuzzer's timer (-timeout) interrupts system calls with SIGALRM, and std::filesystem::copy does
// not retry one that fails with EINTR: a campaign stopped on "cannot copy: Interrupted system
// call" after 119 332 runs, in this harness, not in the store. The copy starts again instead.
void copy_tree(const fs::path& from, const fs::path& to) {
  for (int attempt = 0;; ++attempt) {
    std::error_code ec;
    fs::remove_all(to, ec);
    fs::copy(from, to, fs::copy_options::recursive, ec);
    if (!ec) return;
    if (ec != std::errc::interrupted || attempt == 100)
      throw fs::filesystem_error("copy", from, to, ec);
  }
}

constexpr store::store_options options{.segment_bytes = 700, .fsync = false};
const char* const queue_names[] = {"q1", "q2", "q3", "gone"};

// Counts warnings and errors, printing nothing.
class counting_sink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  std::atomic<size_t> warnings{0};

 protected:
  void sink_it_(const spdlog::details::log_msg& m) override {
    if (m.level >= spdlog::level::warn) ++warnings;
  }
  void flush_() override {}
};

struct no_target : broker::delivery_target {
  void deliver(const std::string&, uint64_t, bool, const broker::message_ptr&) override {}
  void cancelled(const std::string&) override {}
};

uint32_t crc(std::string_view s) {
  return uint32_t(::crc32(0L, reinterpret_cast<const Bytef*>(s.data()), uInt(s.size())));
}

// "m<k>|<filler>|<crc of what precedes, 8 hex digits>"
std::string make_body(int k, size_t filler) {
  std::string b = "m" + std::to_string(k) + "|";
  for (size_t i = 0; i < filler; ++i) b += char('a' + (k * 7 + i) % 26);
  b += '|';
  char sum[9];
  std::snprintf(sum, sizeof sum, "%08x", crc(b));
  return b + sum;
}

// The k of a body whose checksum holds, or -1.
int body_index(const std::string& b) {
  if (b.size() < 11 || b[0] != 'm') return -1;
  std::string_view head(b.data(), b.size() - 8);
  char sum[9];
  std::snprintf(sum, sizeof sum, "%08x", crc(head));
  if (b.compare(b.size() - 8, 8, sum) != 0) return -1;
  return std::atoi(b.c_str() + 1);
}

bool same_message(const broker::message& a, const broker::message& b) {
  const auto &p = a.properties, &q = b.properties;
  return a.exchange == b.exchange && a.routing_key == b.routing_key && a.body == b.body &&
         p.content_type == q.content_type && p.content_encoding == q.content_encoding &&
         p.headers == q.headers && p.delivery_mode == q.delivery_mode && p.priority == q.priority &&
         p.correlation_id == q.correlation_id && p.reply_to == q.reply_to &&
         p.expiration == q.expiration && p.message_id == q.message_id &&
         p.timestamp == q.timestamp && p.type == q.type && p.user_id == q.user_id &&
         p.app_id == q.app_id && p.cluster_id == q.cluster_id;
}

struct fixture {
  fs::path base, pristine, work;
  std::vector<broker::message_ptr> written;     // by k
  std::map<std::string, std::set<int>> routed;  // queue -> every k it was given
  std::map<std::string, size_t> intact;  // queue -> messages a recovery of the intact copy finds
  std::shared_ptr<counting_sink> sink = std::make_shared<counting_sink>();
};

broker::message_ptr make_message(int k) {
  auto m = std::make_shared<broker::message>();
  const char* keys[] = {"a.b", "a.c", "z"};
  m->exchange = k % 5 == 4 ? "" : "ex";
  m->routing_key = k % 5 == 4 ? "gone" : keys[k % 3];
  if (k % 7 == 3) m->routing_key = "q3", m->exchange = "";
  auto& p = m->properties;
  p.delivery_mode = 2;
  if (k % 2) p.content_type = "text/plain";
  if (k % 3 == 1) p.content_encoding = "identity";
  if (k % 4 == 1) {
    common::field_table h;
    h.set("n", int32_t(k));
    h.set("s", std::string("v") + std::to_string(k));
    common::field_table inner;
    inner.set("deep", true);
    h.set("t", inner);
    p.headers = h;
  }
  p.priority = uint8_t(k % 6);
  if (k % 3 == 0) p.correlation_id = "c" + std::to_string(k);
  if (k % 4 == 2) p.reply_to = "amq.rabbitmq.reply-to";
  if (k % 5 == 1) p.message_id = "id-" + std::to_string(k);
  if (k % 2 == 0) p.timestamp = 1'700'000'000u + unsigned(k);
  if (k % 6 == 5) p.type = "t", p.user_id = "guest", p.app_id = "fuzz", p.cluster_id = "c";
  m->body = make_body(k, size_t(k * 37 % 150));
  return m;
}

std::map<std::string, size_t> counts(broker::vhost& v) {
  std::map<std::string, size_t> out;
  for (const char* q : queue_names) {
    broker::queue_declare_request r;
    r.name = q;
    r.passive = true;
    auto res = v.declare_queue(r);
    if (auto* ok = std::get_if<broker::queue_declare_ok>(&res)) out[q] = ok->message_count;
  }
  return out;
}

fixture& setup() {
  static fixture* f = [] {
    auto* f = new fixture;
    auto logger = std::make_shared<spdlog::logger>("fuzz", f->sink);
    logger->set_level(spdlog::level::trace);
    spdlog::set_default_logger(logger);
    fs::path tmp = fs::exists("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    f->base = tmp / ("warren-fuzz-store-" + std::to_string(::getpid()));
    f->pristine = f->base / "pristine";
    f->work = f->base / "work";
    fs::remove_all(f->base);
    static fs::path cleanup = f->base;
    std::atexit([] { fs::remove_all(cleanup); });
    {
      broker::vhost v("/", 0);
      store::message_store st(f->pristine, options);
      st.recover(v);
      v.open_channel(1, 7, std::make_shared<no_target>());
      FUZZ_CHECK(!v.declare_exchange({"ex", "topic", true}, false));
      common::field_table prio;
      prio.set("x-max-priority", int32_t(5));
      common::field_table len;
      len.set("x-max-length", int32_t(1000));
      for (auto [name, args] : {std::pair{"q1", common::field_table{}}, std::pair{"q2", len},
                                std::pair{"q3", prio}, std::pair{"gone", common::field_table{}}}) {
        broker::queue_declare_request r;
        r.name = name;
        r.durable = true;
        r.arguments = args;
        r.connection_id = 7;
        FUZZ_CHECK(std::holds_alternative<broker::queue_declare_ok>(v.declare_queue(r)));
      }
      common::field_table bargs;
      bargs.set("x-match", std::string("all"));
      for (auto [q, key] : {std::pair{"q1", "a.*"}, std::pair{"q2", "#"}, std::pair{"q3", "a.b"}})
        FUZZ_CHECK(!v.bind("ex", std::get<broker::dest_id>(v.queue_dest(q, 7)), key, bargs));
      for (int k = 0; k < 40; ++k) {
        auto m = make_message(k);
        f->written.push_back(m);
        if (m->exchange.empty()) {
          f->routed[m->routing_key].insert(k);
        } else {
          if (m->routing_key.rfind("a.", 0) == 0) f->routed["q1"].insert(k);
          f->routed["q2"].insert(k);
          if (m->routing_key == "a.b") f->routed["q3"].insert(k);
        }
        auto r = v.publish(m);
        FUZZ_CHECK(std::holds_alternative<broker::publish_outcome>(r));
      }
      // Some acknowledged (ack records), one queue deleted (a delete record, and acks).
      for (const char* q : {"q1", "q2", "q2"}) {
        auto r = v.get(1, q, false, 7);
        FUZZ_CHECK(std::holds_alternative<broker::get_ok>(r));
        FUZZ_CHECK(!v.ack(1, std::get<broker::get_ok>(r).delivery_tag, false));
      }
      FUZZ_CHECK(std::holds_alternative<uint32_t>(v.delete_queue("gone", false, false, 0)));
      st.flush();
    }
    {
      // What a recovery of the intact copy finds.
      copy_tree(f->pristine, f->work);
      broker::vhost v("/", 0);
      store::message_store st(f->work, options);
      st.recover(v);
      f->intact = counts(v);
      st.flush();
    }
    fs::remove_all(f->work);
    FUZZ_CHECK(f->sink->warnings == 0);
    return f;
  }();
  return *f;
}

// The input, read as a list of edits.
class reader {
 public:
  reader(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool more() const { return at_ < n_; }
  uint8_t u8() { return at_ < n_ ? d_[at_++] : 0; }
  uint16_t u16() { return uint16_t(u8() << 8 | u8()); }
  std::string_view bytes(size_t n) {
    n = std::min(n, n_ - at_);
    std::string_view s(reinterpret_cast<const char*>(d_ + at_), n);
    at_ += n;
    return s;
  }

 private:
  const uint8_t* d_;
  size_t n_;
  size_t at_ = 0;
};

// The record (after the 8-byte magic) that holds `pos`: its start, or npos.
size_t record_at(const std::string& f, size_t pos) {
  size_t at = store::magic_size;
  while (at + 8 <= f.size()) {
    common::byte_reader h(f.data() + at, 8);
    uint32_t len = h.u32();
    if (len > f.size() - at - 8) return std::string::npos;
    if (pos < at + 8 + len) return at;
    at += 8 + len;
  }
  return std::string::npos;
}

struct edits {
  bool resealed = false;  // a record rewritten with a valid CRC, or copied: not a crash's damage
  bool unnoticeable = false;  // truncation or a removed file: loss a reader cannot see
};

edits damage(const fixture& f, const uint8_t* data, size_t size) {
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(f.work))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::map<fs::path, std::string> content;
  for (const auto& p : files) FUZZ_CHECK(store::read_whole_file(p, content[p]));
  std::set<fs::path> removed;
  edits e;
  reader r(data, size);
  for (int n = 0; r.more() && n < 16 && !files.empty(); ++n) {
    uint8_t op = r.u8();
    const fs::path& p = files[r.u8() % files.size()];
    std::string& s = content[p];
    size_t at = s.empty() ? 0 : r.u16() % s.size();
    switch (op % 8) {
      case 0:  // flip a bit
        if (!s.empty()) s[at] = char(s[at] ^ (1 << (r.u8() & 7)));
        break;
      case 1: {  // overwrite bytes
        std::string_view b = r.bytes(r.u8() % 17);
        s.replace(at, std::min(b.size(), s.size() - at), b);
        break;
      }
      case 2:  // truncate
        s.resize(at);
        e.unnoticeable = true;
        break;
      case 3: {  // swap two blocks
        size_t len = 1 + r.u8() % 64;
        size_t other = s.empty() ? 0 : r.u16() % s.size();
        if (at > other) std::swap(at, other);
        if (other >= at + len && other + len <= s.size()) {
          std::string a = s.substr(at, len);
          s.replace(at, len, s.substr(other, len));
          s.replace(other, len, a);
        }
        break;
      }
      case 4: {  // insert bytes
        std::string_view b = r.bytes(1 + r.u8() % 16);
        s.insert(at, b);
        break;
      }
      case 5:  // remove the file
        removed.insert(p);
        e.unnoticeable = true;
        break;
      case 6: {  // overwrite bytes inside a record and make its CRC right again
        size_t rec = record_at(s, at);
        std::string_view b = r.bytes(1 + r.u8() % 8);
        if (rec == std::string::npos) break;
        common::byte_reader h(s.data() + rec, 8);
        uint32_t len = h.u32();
        size_t from = std::max(at, rec + 8), end = rec + 8 + len;
        if (from >= end) break;
        s.replace(from, std::min(b.size(), end - from), b.substr(0, end - from));
        common::byte_writer w(s);
        w.patch_u32(rec + 4, crc(std::string_view(s).substr(rec + 8, len)));
        e.resealed = true;
        break;
      }
      case 7: {  // append a copy of a range (a record written twice)
        size_t len = std::min<size_t>(r.u16() % 512, s.size() - at);
        s += s.substr(at, len);
        e.resealed = true;
        break;
      }
    }
  }
  for (const auto& [p, s] : content) {
    if (removed.count(p)) {
      fs::remove(p);
      continue;
    }
    std::ofstream(p, std::ios::binary | std::ios::trunc).write(s.data(), std::streamsize(s.size()));
  }
  return e;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fixture& f = setup();
  copy_tree(f.pristine, f.work);
  edits e = damage(f, data, size);
  f.sink->warnings = 0;

  std::map<std::string, size_t> first;
  size_t first_total = 0;
  {
    broker::vhost v("/", 0);
    store::message_store st(f.work, options);
    st.recover(v);
    first = counts(v);
    for (const auto& [q, n] : first) first_total += n;
    st.flush();
  }
  const size_t warned = f.sink->warnings;

  broker::vhost v("/", 0);
  store::message_store st(f.work, options);
  st.recover(v);
  v.open_channel(1, 7, std::make_shared<no_target>());
  std::map<std::string, size_t> second = counts(v);
  if (!e.resealed) {
    FUZZ_CHECK(first == second);
    size_t intact_total = 0;
    for (const auto& [q, n] : f.intact) intact_total += n;
    if (!e.unnoticeable && first_total < intact_total) FUZZ_CHECK(warned > 0);
  }
  for (const auto& [q, n] : second) {
    std::set<int> seen;
    size_t got = 0;
    for (;;) {
      auto r = v.get(1, q, true, 7);
      auto* ok = std::get_if<broker::get_ok>(&r);
      if (!ok) break;
      ++got;
      if (e.resealed) continue;
      int k = body_index(ok->msg->body);
      FUZZ_CHECK(k >= 0 && size_t(k) < f.written.size());
      FUZZ_CHECK(same_message(*ok->msg, *f.written[size_t(k)]));
      FUZZ_CHECK(f.routed.at(q).count(k));
      FUZZ_CHECK(seen.insert(k).second);
    }
    if (!e.resealed) FUZZ_CHECK(got == n);
  }
  st.flush();
  return 0;
}
