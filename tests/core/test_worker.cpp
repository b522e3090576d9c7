// The background worker writers hash on: tasks run in the order given, start() holds the
// caller once `depth` tasks are waiting or running, and a failed task drops the ones queued
// behind it (they would extend the same hashes) and reaches the caller, once.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/util/worker.h"

using namespace emo;

TEST_CASE("worker runs queued tasks in order and waits for all of them") {
  Worker w(4);
  std::vector<int> order;  // written by the worker thread only, read after wait()
  for (int i = 0; i < 50; ++i) w.start([&order, i] { order.push_back(i); });
  w.wait();
  REQUIRE(order.size() == 50);
  for (int i = 0; i < 50; ++i) CHECK(order[size_t(i)] == i);
}

TEST_CASE("worker start() holds the caller once depth tasks are queued") {
  Worker w(2);
  std::atomic<bool> release{false};
  std::atomic<int> started{0};
  auto blocker = [&] {
    ++started;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  };
  w.start(blocker);  // running
  w.start(blocker);  // queued: depth 2 reached
  std::atomic<bool> third_queued{false};
  std::thread caller([&] {
    w.start([] {});
    third_queued = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(third_queued);  // still held: two tasks waiting or running
  release = true;
  caller.join();
  w.wait();
  CHECK(third_queued);
  CHECK(started == 2);
}

TEST_CASE("worker: a failed task drops the queue behind it and is reported once") {
  Worker w(8);
  std::atomic<bool> go{false};
  std::atomic<int> ran_after{0};
  w.start([&] {
    while (!go) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    throw std::runtime_error("disk full");
  });
  for (int i = 0; i < 5; ++i) w.start([&] { ++ran_after; });
  go = true;
  REQUIRE_THROWS_WITH(w.wait(), "disk full");
  CHECK(ran_after == 0);
  w.wait();  // reported once: the worker is usable again
  w.start([&] { ++ran_after; });
  w.wait();
  CHECK(ran_after == 1);
}
