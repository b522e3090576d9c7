// One background thread running queued tasks in order. Writers use it to hash what the
// calling thread has just written: the hash runs on another core and, with a depth above
// one, may lag the writes by a few tasks instead of holding each write until its hash is
// done (in lockstep each side idles whenever the other's piece is the longer one).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace emo {

class Worker {
 public:
  explicit Worker(size_t depth = 1);  // tasks queued or running at once; start() waits past that
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start(std::function<void()> task);  // rethrows an earlier task's error
  void wait();                             // waits for every task; rethrows the first error
  void wait_quietly() noexcept;            // waits, drops any error (while unwinding)

 private:
  void loop();
  void rethrow_locked();
  const size_t depth_;
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;  // the front one is running
  std::exception_ptr error_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace emo
