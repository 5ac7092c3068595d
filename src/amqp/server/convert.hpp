// Conversions between the codec's basic properties and the broker's plain message properties.
#pragma once

#include "amqp/protocol/methods.hpp"
#include "broker/message.hpp"

namespace warren::amqp::server {

broker::message_properties to_broker(protocol::basic_properties&& p);
protocol::basic_properties to_amqp(const broker::message_properties& p);

}  // namespace warren::amqp::server
