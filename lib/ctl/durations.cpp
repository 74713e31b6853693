#include "ctl/durations.hpp"

#include <array>
#include <charconv>
#include <cstdio>

namespace kpsd::ctl {

namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t ms;
};
// Largest first: "1h30m" must name its units in this order, each once.
constexpr std::array<Unit, 6> units{{{"w", 7 * 24 * 3600 * 1000LL},
                                     {"d", 24 * 3600 * 1000LL},
                                     {"h", 3600 * 1000LL},
                                     {"m", 60 * 1000LL},
                                     {"s", 1000LL},
                                     {"ms", 1LL}}};
constexpr std::int64_t century_ms = 100LL * 365 * 24 * 3600 * 1000;

}  // namespace

std::optional<std::int64_t> parse_duration_ms(std::string_view text, BareNumber bare) {
  if (text.empty()) return std::nullopt;
  std::int64_t total = 0;
  std::size_t next_unit = 0;  // units left to use, largest first
  while (!text.empty()) {
    std::int64_t n = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc{} || n < 0 || n > century_ms) return std::nullopt;
    std::string_view rest = text.substr(static_cast<std::size_t>(ptr - text.data()));
    if (rest.empty()) {  // a bare number: only alone, and only where seconds are the custom
      if (total != 0 || next_unit != 0 || bare == BareNumber::refused) return std::nullopt;
      return n * 1000;
    }
    std::size_t len = 0;
    while (len < rest.size() && rest[len] >= 'a' && rest[len] <= 'z') ++len;
    std::string_view suffix = rest.substr(0, len);
    std::size_t u = next_unit;
    while (u < units.size() && units[u].suffix != suffix) ++u;
    if (u == units.size() || n > century_ms / units[u].ms) return std::nullopt;
    total += n * units[u].ms;
    if (total > century_ms) return std::nullopt;
    next_unit = u + 1;
    text = rest.substr(len);
  }
  return total;
}

std::string format_duration_ms(std::int64_t ms) {
  char buf[48];
  if (ms < 0) ms = 0;
  if (ms < 1000) {
    std::snprintf(buf, sizeof(buf), "%lldms", static_cast<long long>(ms));
  } else if (ms < 60'000) {
    std::snprintf(buf, sizeof(buf), "%lld.%llds", static_cast<long long>(ms / 1000),
                  static_cast<long long>(ms % 1000 / 100));
  } else if (ms < 3'600'000) {
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(ms / 60'000),
                  static_cast<long long>(ms / 1000 % 60));
  } else if (ms < 86'400'000) {
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(ms / 3'600'000),
                  static_cast<long long>(ms / 60'000 % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%lldd%02lldh", static_cast<long long>(ms / 86'400'000),
                  static_cast<long long>(ms / 3'600'000 % 24));
  }
  return buf;
}

}  // namespace kpsd::ctl
