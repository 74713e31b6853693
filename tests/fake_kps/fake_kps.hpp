#pragma once
// A fake KPS endpoint for tests and the demo: a small Beast server on 127.0.0.1 that checks
// what kpsd sends (token, project id, request shape) and answers per server id with the
// behaviour a test chose. Serves on its own thread; counters are safe to read from any thread.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace kpsd::fake {

struct Behavior {
  int accepted_failed_times = 0;  // first N disassociate calls: 202 {"status":"FAILED"}
  int error_status = 0;           // answer this HTTP status ...
  int error_times = 0;            // ... to the first N calls (-1: to every call)
  std::string error_code;         // error_code in that answer ("" = a typical one for the status)
  std::chrono::milliseconds delay{0};  // wait this long before answering each call
};

struct Options {
  std::string project_id;
  std::string token;
  std::chrono::milliseconds task_duration{0};  // a task is RUNNING_UNBIND this long, then SUCCESS
};

class FakeKps {
 public:
  explicit FakeKps(Options options);
  ~FakeKps();
  FakeKps(const FakeKps&) = delete;
  FakeKps& operator=(const FakeKps&) = delete;

  std::uint16_t port() const;
  void set_behavior(const std::string& server_id, Behavior behavior);

  std::int64_t calls_for(const std::string& server_id) const;  // disassociate calls
  std::map<std::string, std::int64_t> calls() const;
  std::int64_t disassociate_calls() const;
  std::int64_t task_polls() const;
  std::int64_t requests() const;
  std::vector<std::string> violations() const;  // what kpsd sent wrong, one line each
  std::string stats_json() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// {"server-id": {"accepted_failed_times": N, "error_status": S, "error_times": N,
//  "error_code": "...", "delay_ms": N}, ...}. Throws std::runtime_error naming the bad entry.
std::map<std::string, Behavior> parse_behaviors(const std::string& json_text);

}  // namespace kpsd::fake
