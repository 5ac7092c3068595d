// Idle and churning connections (see crowd.hpp).
#include "warren-perf/crowd.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <thread>

namespace warren::perf {

namespace {

// One connection of a churner: once its channel is open it closes and reopens it
// `channel_cycles` times, then closes the connection.
class churn_client : public client {
 public:
  churn_client(boost::asio::io_context& io, std::string name, broker_address addr,
               client_events events, int channel_cycles)
      : client(io, std::move(name), std::move(addr), std::move(events)),
        cycles_left_(channel_cycles) {}

 protected:
  void on_ready() override { next(); }

 private:
  void next() {
    if (cycles_left_-- <= 0) return close();
    call(protocol::channel_close{200, "churn", 0, 0}, [this](const protocol::method&) {
      call(protocol::channel_open{}, [this](const protocol::method&) { next(); });
    });
  }
  int cycles_left_;
};

}  // namespace

// A churner's loop, on one I/O thread: a new connection each time the last one has closed,
// 100 ms later if it failed (a refused connect must not spin).
struct crowd::churner : std::enable_shared_from_this<crowd::churner> {
  churner(crowd& c, boost::asio::io_context& io, int index) : owner(c), io(io), timer(io) {
    name = "churn-" + std::to_string(index);
  }
  void next() {
    if (!owner.churning_.load()) {
      current.reset();
      owner.live_.fetch_sub(1);
      return;
    }
    failed = false;
    auto self = shared_from_this();
    client_events ev{nullptr,
                     [self](const std::string&, const std::string&) {
                       self->failed = true;
                       self->owner.counts_.churn_failed.fetch_add(1);
                     },
                     [self] {
                       if (!self->failed) self->owner.counts_.churn_cycles.fetch_add(1);
                       // Not from inside the closing client's own call stack.
                       boost::asio::post(self->io, [self] { self->after_close(); });
                     }};
    current = std::make_shared<churn_client>(io, name, owner.addr_, ev, owner.channel_cycles_);
    current->start();
  }
  void after_close() {
    current.reset();
    if (!failed) return next();
    timer.expires_after(std::chrono::milliseconds(100));
    timer.async_wait(
        [self = shared_from_this()](const boost::system::error_code&) { self->next(); });
  }

  crowd& owner;
  boost::asio::io_context& io;
  boost::asio::steady_timer timer;
  std::string name;
  std::shared_ptr<client> current;
  bool failed = false;
};

crowd::crowd(std::vector<boost::asio::io_context*> ios, broker_address addr, int idle, int churn,
             int channel_cycles)
    : ios_(std::move(ios)),
      addr_(std::move(addr)),
      idle_(idle),
      churn_(churn),
      channel_cycles_(channel_cycles) {}

crowd::~crowd() = default;

bool crowd::open_idle(double rate, std::chrono::steady_clock::duration timeout) {
  using clock = std::chrono::steady_clock;
  auto t0 = clock::now();
  auto deadline = t0 + timeout;
  for (int i = 0; i < idle_; ++i) {
    if (rate > 0)
      std::this_thread::sleep_until(t0 + std::chrono::duration_cast<clock::duration>(
                                             std::chrono::duration<double>(i / rate)));
    auto& io = *ios_[size_t(i) % ios_.size()];
    client_events ev{
        [this] { counts_.idle_open.fetch_add(1); },
        [this](const std::string&, const std::string&) { counts_.idle_failed.fetch_add(1); },
        [this] { live_.fetch_sub(1); }};
    auto c = std::make_shared<client>(io, "idle-" + std::to_string(i), addr_, ev);
    idle_clients_.push_back(c);
    live_.fetch_add(1);
    boost::asio::post(io, [c] { c->start(); });
    if (counts_.idle_failed.load() > 0 || clock::now() > deadline) return false;
  }
  while (clock::now() < deadline) {
    uint64_t up = counts_.idle_open.load(), failed = counts_.idle_failed.load();
    if (failed > 0) return false;
    if (up >= uint64_t(idle_)) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void crowd::start_churn() {
  churning_ = true;
  for (int i = 0; i < churn_; ++i) {
    auto& io = *ios_[size_t(i) % ios_.size()];
    auto ch = std::make_shared<churner>(*this, io, i);
    churners_.push_back(ch);
    live_.fetch_add(1);
    boost::asio::post(io, [ch] { ch->next(); });
  }
}

void crowd::stop(std::chrono::steady_clock::duration timeout) {
  churning_ = false;
  for (auto& c : idle_clients_) boost::asio::post(c->io(), [c] { c->close(); });
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (live_.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

}  // namespace warren::perf
