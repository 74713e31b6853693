#pragma once
// Wall-clock time as the database stores it: Unix milliseconds.
#include <chrono>
#include <cstdint>

namespace kpsd {

inline std::int64_t unix_ms(
    std::chrono::system_clock::time_point t = std::chrono::system_clock::now()) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace kpsd
