#pragma once
// What an accept loop does when accept() fails (EMFILE, ENFILE, ENOMEM ...): wait before the
// next try, doubling from 10 ms to 1 s, and say so once per episode, not once per try.
#include <chrono>
#include <string>

namespace kpsd {

class AcceptBackoff {
 public:
  explicit AcceptBackoff(std::string listener) : listener_(std::move(listener)) {}
  // A failed accept: logs the first failure of an episode; returns how long to wait.
  std::chrono::milliseconds failed(const std::string& why);
  // An accept that worked: ends an episode (logged, with the count of failed tries).
  void succeeded();

  static constexpr std::chrono::milliseconds first_delay{10};
  static constexpr std::chrono::milliseconds max_delay{1000};

 private:
  std::string listener_;
  std::chrono::milliseconds delay_{0};
  unsigned long failures_ = 0;
};

}  // namespace kpsd
