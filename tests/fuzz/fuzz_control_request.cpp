// libFuzzer: one control-socket request line (parse_control_request, with the duplicate-key
// check). Any input must give a request or an error message, never a crash or an exception.
#include "protocol/control_protocol.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto request =
      kpsd::parse_control_request(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!request && request.error().message.empty()) __builtin_trap();  // a refusal always says why
  return 0;
}
