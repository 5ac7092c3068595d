// Loading and atomically replacing the users file.
#include "mgmt/users_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "mgmt/definitions.hpp"

namespace warren::mgmt {

namespace {

std::string os_error(std::string_view what, const std::filesystem::path& p) {
  return fmt::format("{} {}: {}", what, p.string(), std::strerror(errno));
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(size_t(n));
  }
  return true;
}

bool fsync_path(const std::filesystem::path& p, int flags) {
  int fd = ::open(p.c_str(), flags | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

bool users_file::load(auth::user_store& store, std::string& error) const {
  std::ifstream in(path_, std::ios::binary);
  if (!in) {
    if (!std::filesystem::exists(path_)) return true;
    error = os_error("cannot read", path_);
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  auto parsed = parse_definitions(text.str());
  if (auto* why = std::get_if<std::string>(&parsed)) {
    error = fmt::format("{}: {}", path_.string(), *why);
    return false;
  }
  if (auto why = apply_users(store, std::get<definitions>(parsed))) {
    error = fmt::format("{}: {}", path_.string(), *why);
    return false;
  }
  return true;
}

bool users_file::save(const auth::user_store& store, std::string& error) {
  std::lock_guard lock(save_mutex_);
  // Read under the lock: of two concurrent imports, the one that writes last also read last,
  // so the file never loses the other's users.
  definitions d;
  add_users(d, store.all());
  json doc = json::object();
  doc["rabbit_version"] = rabbitmq_compat_version;
  json full = export_json(d, export_info{});
  doc["users"] = full["users"];
  doc["permissions"] = full["permissions"];
  doc["topic_permissions"] = full["topic_permissions"];
  std::string text = doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";

  if (!write_file_durably(path_, text, error)) return false;
  if (on_saved) on_saved();
  return true;
}

bool write_file_durably(const std::filesystem::path& path, std::string_view text,
                        std::string& error) {
  auto tmp = path;
  tmp += ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    error = os_error("cannot create", tmp);
    return false;
  }
  bool ok = write_all(fd, text) && ::fsync(fd) == 0;
  if (!ok) error = os_error("cannot write", tmp);
  ::close(fd);
  if (ok && ::rename(tmp.c_str(), path.c_str()) != 0) {
    error = os_error("cannot rename onto", path);
    ok = false;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    return false;
  }
  auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  if (!fsync_path(dir, O_RDONLY | O_DIRECTORY)) {
    error = os_error("cannot sync directory", dir);
    return false;
  }
  return true;
}

}  // namespace warren::mgmt
