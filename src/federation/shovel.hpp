// One dynamic shovel (RabbitMQ's rabbit_shovel_worker for AMQP 0-9-1, behaviour only): consumes
// from a source queue (declared durable if missing) or from a server-named queue bound to a
// source exchange, and publishes each message to the destination exchange (or to the
// destination queue through the default exchange). Both ends are AMQP connections (amqp/client),
// the local Warren's included. Acks at the source per ack-mode: on-confirm (after the
// destination's confirm), on-publish (after publishing), no-ack. src-delete-after (a count, or
// queue-length read at start) ends the shovel once that many were moved: it is terminated and
// its parameter cleared, as RabbitMQ does. On the supervisor's worker.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "amqp/client/connection.hpp"
#include "federation/supervisor.hpp"

namespace warren::federation {

class shovel : public std::enable_shared_from_this<shovel> {
 public:
  shovel(supervisor& sup, std::string key, std::string vhost, std::string name, json def);
  void start();
  void stop();
  const link_status& status() const { return status_; }

 private:
  void connect();
  void on_side_ready();
  void on_closed(const std::string& error);
  void on_delivery(amqp::client::delivery&& d);
  void on_confirm(uint64_t seq, bool multiple, bool ack);
  void maybe_finish();
  void finish();
  void set_state(const std::string& state, const std::string& error = {});

  supervisor& sup_;
  std::string key_, vhost_, name_;
  json def_;
  std::optional<amqp::client::uri> src_uri_, dest_uri_;
  std::shared_ptr<amqp::client::connection> src_, dest_;
  boost::asio::steady_timer timer_;
  link_status status_;
  bool stopped_ = false;
  bool running_ = false;
  bool finished_ = false;
  int ready_sides_ = 0;
  uint64_t generation_ = 0;
  std::string ack_mode_ = "on-confirm";
  double reconnect_delay_ = 5;
  std::optional<int64_t> delete_after_;  // messages left to publish; nullopt: never
  bool delete_after_queue_length_ = false;
  std::map<uint64_t, uint64_t> unconfirmed_;  // destination seq -> source delivery tag
};

}  // namespace warren::federation
