// Users, their password hashes, tags and per-vhost permissions, and the loopback-only rule.
// Built at start-up and read-only afterwards: every worker reads it without locks. (Changing
// users at run time arrives with the management API, as a new immutable snapshot per change.)
#pragma once

#include <boost/asio/ip/address.hpp>

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "auth/ip_network.hpp"
#include "auth/sasl.hpp"

namespace warren::auth {

struct permission {
  std::string configure = ".*";
  std::string write = ".*";
  std::string read = ".*";
};

struct user {
  std::string name;
  std::string password_hash;  // see password.hpp
  std::vector<std::string> tags;
  std::map<std::string, permission, std::less<>> permissions;  // by vhost
};

enum class login_result { ok, invalid_credentials, loopback_only };

class user_store {
 public:
  void add_user(user u);
  const user* find(std::string_view name) const;

  // Users that may log in only from a loopback peer (RabbitMQ's loopback_users, default guest),
  // and the networks that count as loopback.
  void set_loopback_users(std::vector<std::string> names) { loopback_users_ = std::move(names); }
  void set_loopback_networks(std::vector<ip_network> nets) { loopback_networks_ = std::move(nets); }

  // Checks the password and the loopback rule. `who` is set on success.
  login_result login(const credentials& c, const boost::asio::ip::address& peer,
                     const user** who) const;
  static bool may_access_vhost(const user& u, std::string_view vhost);

 private:
  std::map<std::string, user, std::less<>> users_;
  std::vector<std::string> loopback_users_{"guest"};
  std::vector<ip_network> loopback_networks_;
};

}  // namespace warren::auth
