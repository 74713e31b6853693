// libFuzzer: the Retry-After parser (delta-seconds and RFC 9110's three HTTP-date forms).
#include "kps/classify.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto now = std::chrono::system_clock::time_point(std::chrono::seconds(1764000000));
  auto d =
      kpsd::parse_retry_after(std::string_view(reinterpret_cast<const char*>(data), size), now);
  if (d && d->count() < 0) __builtin_trap();  // never a negative wait
  return 0;
}
