// libFuzzer: the INI configuration parser. Bad input is a ConfigError, nothing else.
#include "config/config.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    kpsd::parse_config(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.conf");
  } catch (const kpsd::ConfigError&) {
  }
  return 0;
}
