// Routing micro-benchmarks: topic matching over large binding sets, headers matching, the
// consistent-hash ring's pick, and the deduplication filter's check of a message. Run by hand from
// a Release build: build/bench/broker_bench.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "broker/consistent_hash_ring.hpp"
#include "broker/dedup.hpp"
#include "broker/headers_match.hpp"
#include "broker/topic_index.hpp"

namespace {

using namespace warren::broker;

// Strings are built by appending: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string&&.
std::string word(uint64_t i) {
  std::string w = "w";
  w += std::to_string(i);
  return w;
}

// Word w of a key is drawn from a vocabulary of 10, 10, 100 and 100 words for w = 0..3, like
// "region.service.entity.event": broad first words, specific last ones.
std::string key_word(std::mt19937_64& rng, size_t w) {
  static constexpr uint64_t kVocabulary[] = {10, 10, 100, 100};
  return word(rng() % kVocabulary[w]);
}

// Bindings of 3-4 words: 70% exact, 20% with one '*', 10% ending in '#'. Routing keys come from
// the same vocabularies; the dests_per_match counter shows how many bindings a publish hits.
topic_index make_topic_index(size_t bindings) {
  std::mt19937_64 rng(1);
  topic_index idx;
  for (size_t i = 0; i < bindings; ++i) {
    size_t n = 3 + rng() % 2;
    std::string key;
    const unsigned kind = rng() % 10;
    const size_t star_at = rng() % n;
    for (size_t w = 0; w < n; ++w) {
      if (w) key += '.';
      if (kind == 9 && w == n - 1)
        key += '#';
      else if (kind >= 7 && kind < 9 && w == star_at)
        key += '*';
      else
        key += key_word(rng, w);
    }
    idx.add(key, i);
  }
  return idx;
}

std::vector<std::string> make_routing_keys(size_t n) {
  std::mt19937_64 rng(2);
  std::vector<std::string> keys;
  for (size_t i = 0; i < n; ++i) {
    size_t words = 3 + rng() % 2;
    std::string key;
    for (size_t w = 0; w < words; ++w) {
      if (w) key += '.';
      key += key_word(rng, w);
    }
    keys.push_back(key);
  }
  return keys;
}

void topic_match(benchmark::State& state) {
  const topic_index idx = make_topic_index(static_cast<size_t>(state.range(0)));
  const auto keys = make_routing_keys(1024);
  std::vector<dest_id> out;
  size_t i = 0, matched = 0;
  for (auto _ : state) {
    out.clear();
    idx.match(keys[i++ & 1023], out);
    matched += out.size();
    benchmark::DoNotOptimize(out.data());
  }
  state.counters["dests_per_match"] =
      benchmark::Counter(static_cast<double>(matched) / static_cast<double>(state.iterations()));
}
BENCHMARK(topic_match)->Arg(10'000)->Arg(100'000);

void topic_add_remove(benchmark::State& state) {
  topic_index idx = make_topic_index(10'000);
  uint64_t i = 0;
  for (auto _ : state) {
    std::string key = "churn.";
    key += std::to_string(i % 64);
    key += ".*.#";
    idx.add(key, 1'000'000 + i);
    idx.remove(key, 1'000'000 + i);
    ++i;
  }
}
BENCHMARK(topic_add_remove);

using warren::common::field_entry;
using warren::common::field_table;

field_table headers_table(std::initializer_list<field_entry> entries) {
  field_table t;
  t.entries = entries;
  return t;
}

// A binding with four conditions against a message carrying eight headers.
void headers(benchmark::State& state) {
  const auto mode = static_cast<x_match>(state.range(0));
  field_table binding = headers_table({{"x-match", mode == x_match::all ? "all" : "any"},
                                       {"format", "pdf"},
                                       {"type", "report"},
                                       {"region", "eu"},
                                       {"priority", int32_t{5}}});
  field_table message = headers_table({{"content-owner", "alice"},
                                       {"format", "pdf"},
                                       {"x-trace", "abc123"},
                                       {"type", "report"},
                                       {"size", int64_t{123456}},
                                       {"region", "eu"},
                                       {"priority", int8_t{5}},
                                       {"checksum", "deadbeef"}});
  for (auto _ : state) benchmark::DoNotOptimize(headers_match(mode, binding, &message));
}
BENCHMARK(headers)->Arg(static_cast<int>(x_match::all))->Arg(static_cast<int>(x_match::any));

void ring_pick(benchmark::State& state) {
  consistent_hash_ring ring;
  for (dest_id d = 0; d < static_cast<dest_id>(state.range(0)); ++d)
    ring.add(d, 1 + static_cast<uint32_t>(d % 4));
  std::vector<std::string> keys;
  for (int i = 0; i < 1024; ++i) {
    keys.emplace_back("order-");
    keys.back() += std::to_string(i * 7919);
  }
  size_t i = 0;
  for (auto _ : state) benchmark::DoNotOptimize(ring.pick(keys[i++ & 1023]));
}
BENCHMARK(ring_pick)->Arg(4)->Arg(64)->Arg(1024);

// A deduplicating exchange's work per message with a 36-byte id: the key (SHA-256 of the id),
// the look-up, and the insert (new ids: arg 1, with evictions once the window of 1 M is full) or
// the drop (ids seen: arg 0).
void dedup_check(benchmark::State& state) {
  dedup_settings s;
  s.cache_size = 1'000'000;
  dedup_filter f{s};
  const bool fresh = state.range(0) == 1;
  std::vector<message> msgs(4096);
  for (size_t i = 0; i < msgs.size(); ++i) {
    char id[40];
    std::snprintf(id, sizeof id, "%08zx-0000-4000-8000-%012zx", i, i);
    warren::common::field_table h;
    h.set("x-deduplication-header", std::string(id));
    msgs[i].properties.headers = std::move(h);
    if (!fresh) f.check_and_remember(msgs[i], 1);
  }
  uint64_t n = 0;
  for (auto _ : state) {
    message& m = msgs[n & 4095];
    if (fresh) {  // a new id each time: the counter as the header's value
      m.properties.headers->set("x-deduplication-header", static_cast<int64_t>(n));
    }
    benchmark::DoNotOptimize(f.check_and_remember(m, 1));
    ++n;
  }
}
BENCHMARK(dedup_check)->Arg(0)->Arg(1);

}  // namespace
