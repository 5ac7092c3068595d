// Field-by-field property conversion (the two structs describe the same 14 properties).
#include "amqp/server/convert.hpp"

namespace warren::amqp::server {

broker::message_properties to_broker(protocol::basic_properties&& p) {
  broker::message_properties m;
  m.content_type = std::move(p.content_type);
  m.content_encoding = std::move(p.content_encoding);
  m.headers = std::move(p.headers);
  m.delivery_mode = p.delivery_mode;
  m.priority = p.priority;
  m.correlation_id = std::move(p.correlation_id);
  m.reply_to = std::move(p.reply_to);
  m.expiration = std::move(p.expiration);
  m.message_id = std::move(p.message_id);
  m.timestamp = p.timestamp;
  m.type = std::move(p.type);
  m.user_id = std::move(p.user_id);
  m.app_id = std::move(p.app_id);
  m.cluster_id = std::move(p.reserved);
  return m;
}

protocol::basic_properties to_amqp(const broker::message_properties& m) {
  protocol::basic_properties p;
  p.content_type = m.content_type;
  p.content_encoding = m.content_encoding;
  p.headers = m.headers;
  p.delivery_mode = m.delivery_mode;
  p.priority = m.priority;
  p.correlation_id = m.correlation_id;
  p.reply_to = m.reply_to;
  p.expiration = m.expiration;
  p.message_id = m.message_id;
  p.timestamp = m.timestamp;
  p.type = m.type;
  p.user_id = m.user_id;
  p.app_id = m.app_id;
  p.reserved = m.cluster_id;
  return p;
}

}  // namespace warren::amqp::server
