// Wiring of the resource monitor to the workers.
#include "app/alarms.hpp"

#include <spdlog/spdlog.h>

#include "alarm/limits.hpp"
#include "alarm/system.hpp"

namespace warren::app {

namespace {

// The RSS limit from the configuration; nullopt (memory alarm off) when it cannot be known.
std::optional<uint64_t> resolve_memory_limit(const config& cfg) {
  using alarm::describe_size;
  auto total = alarm::available_memory();
  std::string of_total =
      total ? fmt::format("total memory {}, {}", describe_size(total->bytes),
                          total->cgroup_limited ? "the cgroup's limit" : "physical RAM")
            : "total memory unknown";
  if (cfg.vm_memory_high_watermark_absolute > 0) {
    uint64_t limit = cfg.vm_memory_high_watermark_absolute;
    spdlog::info("memory high watermark set to {} (absolute; {})", describe_size(limit), of_total);
    if (total && limit > total->bytes)
      spdlog::warn(
          "the memory high watermark is above the total memory: the memory alarm may "
          "never go off before the kernel's OOM killer acts");
    return limit;
  }
  if (!total) {
    spdlog::warn(
        "cannot read the total memory (/proc/meminfo, cgroup limits): memory alarm "
        "disabled; set vm_memory_high_watermark_absolute to enable it");
    return std::nullopt;
  }
  auto limit = uint64_t(double(total->bytes) * cfg.vm_memory_high_watermark);
  spdlog::info("memory high watermark set to {} ({} of {})", describe_size(limit),
               cfg.vm_memory_high_watermark, of_total);
  return limit;
}

// One step of paging out a vhost's in-memory backlog, on its home worker. A flood can fill
// memory up to the paging mark before the monitor's next sample: that backlog must go to disk
// too, or memory may stay above the watermark with publishers blocked for good (seen in
// test_alarms). Paging it all at once would first copy every body into the store's write batch,
// a spike past the watermark it is meant to protect; so each step pages a few MiB and the next
// waits until the store has written them.
constexpr size_t page_step_bytes = 4u << 20;

void page_out_in_steps(net::worker_pool& pool, broker::vhost* v, size_t paged_so_far) {
  auto step = v->page_out_some(page_step_bytes);
  size_t total = paged_so_far + step.messages;
  if (!step.more) {
    if (total) spdlog::info("vhost '{}': {} messages paged out to disk", v->name(), total);
    return;
  }
  auto next = [&pool, v, total] {
    pool.at(v->shard_index()).post([&pool, v, total] { page_out_in_steps(pool, v, total); });
  };
  broker::journal* j = v->get_journal();
  if (j && step.ticket)
    j->when_synced(step.ticket, next);  // on the store's thread: posts only
  else
    next();
}

}  // namespace

resource_alarms::resource_alarms(const config& cfg, net::worker_pool& pool)
    : pool_(pool),
      monitor_(
          [&cfg, this] {
            alarm::monitor_settings s;
            s.memory_limit = resolve_memory_limit(cfg);
            memory_limit_ = s.memory_limit.value_or(0);
            s.disk_free_limit = cfg.disk_free_limit;
            s.disk_path = cfg.data_dir;
            spdlog::info("disk free limit set to {} for {}",
                         alarm::describe_size(cfg.disk_free_limit), cfg.data_dir);
            return s;
          }(),
          alarm::probes{[] { return alarm::process_rss(); },
                        [dir = cfg.data_dir] { return alarm::disk_free(dir); },
                        alarm::release_free_memory},
          // On the monitor's thread; board_ is built by then (the monitor's thread starts later).
          [this](alarm::alarm_set s) { board_.broadcast(pool_, s); }),
      board_(pool.size(), monitor_.state()) {}

std::optional<uint64_t> resource_alarms::set_memory_high_watermark(
    std::variant<double, uint64_t> limit) {
  uint64_t bytes = 0;
  if (auto* fraction = std::get_if<double>(&limit)) {
    auto total = alarm::available_memory();
    if (!total) return std::nullopt;
    bytes = uint64_t(double(total->bytes) * *fraction);
  } else {
    bytes = std::get<uint64_t>(limit);
  }
  memory_limit_.store(bytes, std::memory_order_relaxed);
  monitor_.set_memory_limit(bytes);
  return bytes;
}

void resource_alarms::page_vhosts(broker::vhost_registry& vhosts, double ratio) {
  if (!(ratio > 0))
    throw std::runtime_error("vm_memory_high_watermark_paging_ratio must be above 0");
  monitor_.on_paging(ratio, [this, &vhosts](bool on) {
    for (const auto& name : vhosts.names()) {
      broker::vhost* v = vhosts.find(name);
      pool_.at(v->home_worker()).post([&pool = pool_, v, on] {
        // New arrivals are paged from now on; what is already in memory goes in steps, on
        // every shard (each posted after the shard's own pressure change, which the authority
        // passes on first).
        v->set_memory_pressure(on);
        if (!on) return;
        for (size_t i = 0; i < v->shard_count(); ++i) {
          broker::vhost* sh = &v->shard_at(i);
          if (sh == v)
            page_out_in_steps(pool, v, 0);
          else
            pool.at(i).post([&pool, sh] { page_out_in_steps(pool, sh, 0); });
        }
      });
    }
  });
}

}  // namespace warren::app
