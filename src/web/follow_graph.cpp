// The follow graph: interned users, sorted id lists, and its log.
#include "web/follow_graph.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <stdexcept>

#include <spdlog/spdlog.h>

#include "store/record_file.hpp"

namespace warren::web {

namespace {
constexpr std::string_view magic = "WRNFOLW1";
// Lines per log record in a bulk write (a record must stay well under store::max_record).
constexpr size_t lines_per_record = 100'000;

// Splits "A B" (one space) into its two ids; false if malformed.
bool split_edge(std::string_view line, std::string_view& a, std::string_view& b) {
  size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size()) return false;
  a = line.substr(0, sp);
  b = line.substr(sp + 1);
  return b.find(' ') == std::string_view::npos;
}
}  // namespace

follow_graph::follow_graph(std::filesystem::path log) : path_(std::move(log)) {}

follow_graph::~follow_graph() {
  if (fd_ >= 0) ::close(fd_);
}

uint32_t follow_graph::intern(std::string_view name) {
  auto [it, added] = ids_.try_emplace(std::string(name), uint32_t(names_.size()));
  if (added) {
    names_.emplace_back(name);
    following_.emplace_back();
    followers_.emplace_back();
  }
  return it->second;
}

bool follow_graph::sorted_insert(std::vector<uint32_t>& v, uint32_t x) {
  auto it = std::lower_bound(v.begin(), v.end(), x);
  if (it != v.end() && *it == x) return false;
  v.insert(it, x);
  return true;
}

bool follow_graph::sorted_erase(std::vector<uint32_t>& v, uint32_t x) {
  auto it = std::lower_bound(v.begin(), v.end(), x);
  if (it == v.end() || *it != x) return false;
  v.erase(it);
  return true;
}

size_t follow_graph::load() {
  if (path_.empty()) return 0;
  std::filesystem::create_directories(path_.parent_path());
  std::string data;
  if (store::read_whole_file(path_, data) && !data.empty()) {
    auto r = store::scan_records(data, magic, [this](std::string_view p) { apply_record(p); });
    if (r.bad_magic) throw std::runtime_error(path_.string() + ": not a follows log");
    if (r.torn) {
      spdlog::warn("{}: torn tail after {} bytes cut off", path_.string(), r.good_bytes);
      if (::truncate(path_.c_str(), off_t(r.good_bytes)) != 0)
        throw std::runtime_error("cannot truncate " + path_.string());
    }
  }
  fd_ = store::open_for_append(path_, magic);
  maybe_compact();
  return edges_;
}

void follow_graph::apply_record(std::string_view payload) {
  if (payload.empty()) return;
  char op = payload[0];
  payload.remove_prefix(1);
  std::vector<std::pair<std::string_view, std::string_view>> edges;
  while (!payload.empty()) {
    size_t nl = payload.find('\n');
    std::string_view line = payload.substr(0, nl);
    payload.remove_prefix(nl == std::string_view::npos ? payload.size() : nl + 1);
    std::string_view a, b;
    if (!split_edge(line, a, b)) continue;
    ++log_edges_;
    if (op == '-') {
      auto ia = ids_.find(std::string(a));
      auto ib = ids_.find(std::string(b));
      if (ia != ids_.end() && ib != ids_.end() &&
          sorted_erase(following_[ia->second], ib->second)) {
        sorted_erase(followers_[ib->second], ia->second);
        --edges_;
      }
    } else {
      edges.emplace_back(a, b);
    }
  }
  if (!edges.empty()) {
    // The bulk path without writing the log again.
    int fd = fd_;
    fd_ = -1;
    auto saved = path_;
    path_.clear();
    follow_all(edges);
    path_ = std::move(saved);
    fd_ = fd;
  }
}

void follow_graph::append_record(char op, const std::string& lines) {
  if (path_.empty() || fd_ < 0) return;
  std::string rec;
  size_t at = store::begin_record(rec);
  rec += op;
  rec += lines;
  store::end_record(rec, at);
  store::write_all(fd_, rec);
  if (::fdatasync(fd_) != 0) throw std::runtime_error("fdatasync " + path_.string());
}

void follow_graph::maybe_compact() {
  if (path_.empty() || log_edges_ <= 2 * edges_ + 1000) return;
  std::string content(magic);
  std::string lines;
  size_t n = 0;
  auto flush = [&] {
    if (lines.empty()) return;
    size_t at = store::begin_record(content);
    content += '+';
    content += lines;
    store::end_record(content, at);
    lines.clear();
    n = 0;
  };
  for (uint32_t a = 0; a < following_.size(); ++a)
    for (uint32_t b : following_[a]) {
      lines += names_[a];
      lines += ' ';
      lines += names_[b];
      lines += '\n';
      if (++n == lines_per_record) flush();
    }
  flush();
  store::replace_file(path_, content);
  if (fd_ >= 0) ::close(fd_);
  fd_ = store::open_for_append(path_, magic);
  log_edges_ = edges_;
}

bool follow_graph::follow(std::string_view a, std::string_view b) {
  uint32_t ia = intern(a), ib = intern(b);
  if (!sorted_insert(following_[ia], ib)) return false;
  sorted_insert(followers_[ib], ia);
  ++edges_;
  std::string line;
  line.append(a).append(" ").append(b).append("\n");
  append_record('+', line);
  ++log_edges_;
  return true;
}

bool follow_graph::unfollow(std::string_view a, std::string_view b) {
  auto ia = ids_.find(std::string(a));
  auto ib = ids_.find(std::string(b));
  if (ia == ids_.end() || ib == ids_.end()) return false;
  if (!sorted_erase(following_[ia->second], ib->second)) return false;
  sorted_erase(followers_[ib->second], ia->second);
  --edges_;
  std::string line;
  line.append(a).append(" ").append(b).append("\n");
  append_record('-', line);
  ++log_edges_;
  maybe_compact();
  return true;
}

follow_graph::bulk_result follow_graph::follow_all(
    const std::vector<std::pair<std::string_view, std::string_view>>& edges) {
  // Append everything, then sort and deduplicate each list that was touched, once.
  std::unordered_map<uint32_t, size_t> size_before;  // of each touched following list
  std::vector<uint32_t> touched_b;
  size_t before = edges_;
  for (auto [a, b] : edges) {
    uint32_t ia = intern(a), ib = intern(b);
    size_before.try_emplace(ia, following_[ia].size());
    touched_b.push_back(ib);
    following_[ia].push_back(ib);
    followers_[ib].push_back(ia);
  }
  for (auto [a, n] : size_before) {
    auto& v = following_[a];
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    edges_ += v.size() - n;
  }
  std::sort(touched_b.begin(), touched_b.end());
  touched_b.erase(std::unique(touched_b.begin(), touched_b.end()), touched_b.end());
  for (uint32_t b : touched_b) {
    auto& v = followers_[b];
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
  }
  bulk_result r;
  r.added = edges_ - before;
  r.existing = edges.size() - r.added;
  if (!path_.empty() && fd_ >= 0 && !edges.empty()) {
    std::string rec;
    std::string lines;
    size_t n = 0;
    auto flush = [&] {
      if (lines.empty()) return;
      size_t at = store::begin_record(rec);
      rec += '+';
      rec += lines;
      store::end_record(rec, at);
      lines.clear();
      n = 0;
    };
    for (auto [a, b] : edges) {
      lines.append(a).append(" ").append(b).append("\n");
      if (++n == lines_per_record) flush();
    }
    flush();
    store::write_all(fd_, rec);
    if (::fdatasync(fd_) != 0) throw std::runtime_error("fdatasync " + path_.string());
    log_edges_ += edges.size();
    maybe_compact();
  }
  return r;
}

size_t follow_graph::drop_followers(std::string_view b) {
  auto ib = ids_.find(std::string(b));
  if (ib == ids_.end() || followers_[ib->second].empty()) return 0;
  std::string lines;
  size_t n = 0;
  for (uint32_t a : followers_[ib->second]) {
    sorted_erase(following_[a], ib->second);
    lines.append(names_[a]).append(" ").append(b).append("\n");
    ++n;
  }
  followers_[ib->second].clear();
  edges_ -= n;
  append_record('-', lines);
  log_edges_ += n;
  maybe_compact();
  return n;
}

std::vector<std::string> follow_graph::followees() const {
  std::vector<std::string> out;
  for (uint32_t i = 0; i < followers_.size(); ++i)
    if (!followers_[i].empty()) out.push_back(names_[i]);
  return out;
}

std::vector<std::string> follow_graph::following(std::string_view a) const {
  std::vector<std::string> out;
  auto it = ids_.find(std::string(a));
  if (it != ids_.end())
    for (uint32_t b : following_[it->second]) out.push_back(names_[b]);
  return out;
}

std::vector<std::string> follow_graph::followers(std::string_view b) const {
  std::vector<std::string> out;
  auto it = ids_.find(std::string(b));
  if (it != ids_.end())
    for (uint32_t a : followers_[it->second]) out.push_back(names_[a]);
  return out;
}

}  // namespace warren::web
