// Fuzzes the definitions import (POST /api/definitions, and users.json at start-up): the JSON
// reader of RabbitMQ's format (mgmt/definitions_json), the checks made before anything changes
// (mgmt::precheck), and the declarations into a vhost (with a journal, as every vhost of the
// broker has) and the user store (mgmt::apply, apply_users) on a fresh broker each time. Bit 0 of
// the first byte: the per-vhost form (POST /api/definitions/{vhost}). Checks: what parses exports
// to JSON that parses back to the same definitions; an import that applies without error leaves
// every durable queue it named in the vhost's own export (a queue named twice keeps its first
// declaration, as an existing queue is left as it is).
#include <algorithm>
#include <set>
#include <string>

#include "auth/user_store.hpp"
#include "broker/vhost.hpp"
#include "fuzz_support.hpp"
#include "mgmt/definitions.hpp"
#include "mgmt/definitions_json.hpp"
#include "null_journal.hpp"

using namespace warren;

namespace {

bool same(const mgmt::definitions& a, const mgmt::definitions& b) {
  return a.users == b.users && a.vhosts == b.vhosts && a.permissions == b.permissions &&
         a.vhost_limits == b.vhost_limits && a.exchanges == b.exchanges && a.queues == b.queues &&
         a.bindings == b.bindings;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  fuzz::quiet_logs();
  std::optional<std::string> only_vhost;
  if (data[0] & 1) only_vhost = "/";
  std::string_view body = fuzz::as_text(data + 1, size - 1);
  auto parsed = mgmt::parse_definitions(body, only_vhost);
  auto* d = std::get_if<mgmt::definitions>(&parsed);
  if (!d) {
    FUZZ_CHECK(!std::get<std::string>(parsed).empty());
    return 0;
  }

  // Export and import again: nothing lost, nothing added.
  mgmt::export_info info{"0.0.0-fuzz", only_vhost};
  std::string text = mgmt::dump(mgmt::export_json(*d, info));
  auto again = mgmt::parse_definitions(text, only_vhost);
  auto* d2 = std::get_if<mgmt::definitions>(&again);
  FUZZ_CHECK(d2 && same(*d, *d2));

  if (mgmt::precheck(*d)) return 0;
  fuzz::null_journal journal;
  broker::vhost v("/", 0);
  v.set_journal(&journal);
  auto error = mgmt::apply(v, *d);
  auth::user_store users;
  (void)mgmt::apply_users(users, *d);
  mgmt::definitions out;
  mgmt::collect(v, out);
  (void)mgmt::dump(mgmt::export_json(out, {"0.0.0-fuzz", std::nullopt}));
  if (error) return 0;
  // A queue named twice keeps its first declaration (an existing queue is left as it is).
  std::set<std::string> named;
  for (const auto& q : d->queues) {
    if (!named.insert(q.name).second || q.vhost != "/" || !q.durable) continue;
    bool found = std::any_of(out.queues.begin(), out.queues.end(),
                             [&](const mgmt::queue_def& o) { return o.name == q.name; });
    FUZZ_CHECK(found);
  }
  return 0;
}
