// User store lookups and the login decision.
#include "auth/user_store.hpp"

#include <algorithm>

#include "auth/password.hpp"

namespace warren::auth {

void user_store::add_user(user u) {
  std::string name = u.name;
  users_[name] = std::move(u);
}

const user* user_store::find(std::string_view name) const {
  auto it = users_.find(name);
  return it == users_.end() ? nullptr : &it->second;
}

login_result user_store::login(const credentials& c, const boost::asio::ip::address& peer,
                               const user** who) const {
  const user* u = find(c.username);
  // Hash even for an unknown user, so timing does not tell which names exist.
  static const std::string dummy = hash_password_with_salt("", "salt");
  bool ok = verify_password(u ? u->password_hash : dummy, c.password) && u != nullptr;
  if (!ok) return login_result::invalid_credentials;
  bool loopback_only = std::find(loopback_users_.begin(), loopback_users_.end(), c.username) !=
                       loopback_users_.end();
  if (loopback_only && !in_any(loopback_networks_, peer)) return login_result::loopback_only;
  *who = u;
  return login_result::ok;
}

bool user_store::may_access_vhost(const user& u, std::string_view vhost) {
  return u.permissions.find(vhost) != u.permissions.end();
}

}  // namespace warren::auth
