// The users and permissions that must survive a restart, in <data_dir>/users.json: the user
// store as a definitions document (definitions_json.hpp) holding only "users", "permissions"
// and "topic_permissions". Written after every change of users; read at start-up after the
// configuration's default user is added, so the file wins (as RabbitMQ's database wins over
// default_user once a node has booted).
#pragma once

#include <filesystem>
#include <functional>
#include <mutex>
#include <string>

#include "auth/user_store.hpp"

namespace warren::mgmt {

// Writes `text` to `path` so that a crash leaves the old file or the new one: a temporary file
// (mode 0600), fsync, rename, fsync of the directory. False with `error` set on failure.
bool write_file_durably(const std::filesystem::path& path, std::string_view text,
                        std::string& error);

class users_file {
 public:
  explicit users_file(std::filesystem::path path) : path_(std::move(path)) {}
  const std::filesystem::path& path() const { return path_; }

  // Adds the file's users (replacing same-named ones) and permissions to the store. A missing
  // file is no error. False with `error` set if it cannot be read or parsed.
  bool load(auth::user_store& store, std::string& error) const;
  // Any thread; saves are serialised. Writes every user of the store to a temporary file,
  // fsyncs it, renames it over the old one and fsyncs the directory, so a crash leaves the old
  // file or the new one. Blocks the calling thread for those syncs (imports are rare).
  bool save(const auth::user_store& store, std::string& error);
  // Called (on the saving thread) after each successful save: in a cluster, sends the users to
  // etcd (app/cluster_users.hpp). Set before the workers start.
  std::function<void()> on_saved;

 private:
  std::filesystem::path path_;
  std::mutex save_mutex_;
};

}  // namespace warren::mgmt
