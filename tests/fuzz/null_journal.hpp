// A journal that keeps nothing, for fuzzing a vhost as the broker runs it (with a store, so that
// durable queues get store ids and appear in exports) without files or a writer thread: every
// write is "on disk" at once, and nothing can be paged back in.
#pragma once

#include "broker/journal.hpp"
#include "broker/message.hpp"

namespace warren::fuzz {

class null_journal final : public broker::journal {
 public:
  void exchange_declared(const broker::exchange_settings&) override {}
  void exchange_deleted(std::string_view) override {}
  void queue_declared(const broker::queue_settings&, uint32_t) override {}
  void queue_deleted(std::string_view) override {}
  void binding_changed(bool, std::string_view, bool, std::string_view, std::string_view,
                       const common::field_table&) override {}
  uint64_t write(const broker::message& m, uint32_t, std::span<const uint32_t>) override {
    m.store_id = ++next_;
    m.store_segment = 1;
    m.store_offset = uint32_t(next_);
    m.store_length = uint32_t(m.body.size());
    return next_;
  }
  void release(uint32_t, uint32_t, uint32_t) override {}
  bool retain(uint32_t) override { return true; }
  broker::message_ptr read(uint32_t, uint32_t, uint32_t) override { return nullptr; }
  void when_synced(uint64_t, std::function<void()> fn) override { fn(); }
  uint64_t synced() const override { return next_; }

 private:
  uint64_t next_ = 0;
};

}  // namespace warren::fuzz
