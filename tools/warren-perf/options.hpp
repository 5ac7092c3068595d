// warren-perf's command line (CLI11) and its named scenarios, which preset options that the
// command line did not give.
#pragma once

#include <cstdint>
#include <string>
#include <variant>

#include "warren-perf/client.hpp"

namespace warren::perf {

struct options {
  broker_address address;
  std::string scenario;
  int producers = 1;
  int consumers = 1;
  int queues = 1;
  int fanout = 0;  // > 0: one fanout exchange bound to this many queues, one consumer each
  size_t size = 16;
  double rate = 0;  // per producer; 0 = unlimited
  uint16_t prefetch = 0;
  uint32_t multi_ack_every = 1;  // > 1: basic.ack multiple=true every N deliveries
  bool autoack = false;
  uint32_t confirm = 0;  // confirm window; 0 = no confirms
  bool persistent = false;
  bool durable = false;  // queues and exchange; implied by --persistent
  bool mandatory = false;
  double duration = 10;
  uint64_t pmessages = 0;        // per producer; 0 = no limit
  bool keep_queues = false;      // neither purge the queues first nor delete them at the end
  int threads = 0;               // I/O threads; 0 = min(cores, connections)
  std::string prefix = "perf-";  // queues <prefix>q-N, exchange <prefix>fanout
  int idle = 0;                  // idle connections (crowd.hpp)
  int churn = 0;                 // churning connections (crowd.hpp)
  int channel_cycles = 2;        // channel.close + channel.open pairs per churn connection
  double connect_rate = 2000;    // idle connections opened per second
  bool json = false;
};

struct usage_exit {
  int code;
};

// The options, or the exit code after CLI11 printed help or an error.
std::variant<options, usage_exit> parse_options(int argc, char** argv);

// Parses amqp://user:pass@host:port/vhost (percent-encoded parts decoded) into `out`; false with
// `error` set when malformed.
bool parse_uri(const std::string& uri, broker_address& out, std::string& error);

}  // namespace warren::perf
