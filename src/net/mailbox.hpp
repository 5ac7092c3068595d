// A worker's mailbox: a multi-producer, single-consumer queue of tasks (Vyukov's intrusive MPSC
// queue). Producers never take a lock: one atomic exchange per task. Written by hand because
// neither Boost nor the standard library has an unbounded MPSC queue; Boost.Lockfree's queue is
// bounded and multi-consumer, which costs more per operation than this loop needs.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <type_traits>
#include <utility>

namespace warren::net {

class mailbox {
 public:
  using task = std::function<void()>;

  mailbox() : head_(&stub_), tail_(&stub_) {}
  mailbox(const mailbox&) = delete;
  mailbox& operator=(const mailbox&) = delete;
  ~mailbox() {
    while (node* n = pop()) delete n;
  }

  // Any thread. The task lives in its node: one allocation per task (a std::function in a node
  // would be two for any closure above 16 bytes, which most are: the path of every publish).
  template <typename F>
  void push(F&& fn) {
    push_node(new task_node<std::decay_t<F>>(std::forward<F>(fn)));
  }

  // Owner thread only: runs every task that is visible now. Returns how many ran. A task pushed
  // while draining may run in this call or the next one.
  size_t drain(size_t limit = SIZE_MAX) {
    return drain(limit, [] {});
  }
  // The same, calling before_each() after a task is taken and before it runs.
  template <typename Before>
  size_t drain(size_t limit, Before&& before_each) {
    size_t ran = 0;
    while (ran < limit) {
      node* n = pop();
      if (!n) break;
      before_each();
      n->run();
      delete n;
      ++ran;
    }
    return ran;
  }
  // Owner thread: whether a task is visible now.
  bool empty() const { return tail_ == &stub_ && !stub_.next.load(std::memory_order_acquire); }

 private:
  struct node {
    virtual ~node() = default;
    virtual void run() = 0;
    std::atomic<node*> next{nullptr};
  };
  template <typename F>
  struct task_node final : node {
    explicit task_node(F&& f) : fn(std::move(f)) {}
    explicit task_node(const F& f) : fn(f) {}
    void run() override { fn(); }
    F fn;
  };
  struct stub_node final : node {
    void run() override {}
  };

  void push_node(node* n) {
    n->next.store(nullptr, std::memory_order_relaxed);
    node* prev = head_.exchange(n, std::memory_order_acq_rel);
    prev->next.store(n, std::memory_order_release);
  }

  // Returns nullptr when empty, or when a producer is between its exchange and its link (the
  // item becomes visible to a later drain; the producer's wake-up guarantees that drain happens).
  node* pop() {
    node* tail = tail_;
    node* next = tail->next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (!next) return nullptr;
      tail_ = next;
      tail = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;
    push_node(&stub_);
    next = tail->next.load(std::memory_order_acquire);
    if (next) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  stub_node stub_;
  std::atomic<node*> head_;  // producers
  node* tail_;               // consumer
};

}  // namespace warren::net
