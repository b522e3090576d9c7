#include "core/util/worker.h"

namespace emo {

Worker::Worker(size_t depth) : depth_(depth < 1 ? 1 : depth), thread_([this] { loop(); }) {}

Worker::~Worker() {
  wait_quietly();
  {
    std::lock_guard<std::mutex> lock(m_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Worker::rethrow_locked() {
  if (!error_) return;
  std::exception_ptr e = error_;
  error_ = nullptr;
  std::rethrow_exception(e);
}

void Worker::start(std::function<void()> task) {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [this] { return tasks_.size() < depth_ || error_; });
  rethrow_locked();
  tasks_.push_back(std::move(task));
  cv_.notify_all();
}

void Worker::wait() {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [this] { return tasks_.empty(); });
  rethrow_locked();
}

void Worker::wait_quietly() noexcept {
  std::unique_lock<std::mutex> lock(m_);
  cv_.wait(lock, [this] { return tasks_.empty(); });
  error_ = nullptr;
}

void Worker::loop() {
  std::unique_lock<std::mutex> lock(m_);
  for (;;) {
    cv_.wait(lock, [this] { return !tasks_.empty() || stop_; });
    if (tasks_.empty()) return;  // stop_ with nothing left
    std::function<void()>& task = tasks_.front();
    lock.unlock();
    std::exception_ptr error;
    try {
      task();
    } catch (...) {
      error = std::current_exception();
    }
    lock.lock();
    tasks_.pop_front();
    if (error) {
      // Later tasks build on this one (the same hashers, in order): drop them.
      if (!error_) error_ = error;
      tasks_.clear();
    }
    cv_.notify_all();
  }
}

}  // namespace emo
