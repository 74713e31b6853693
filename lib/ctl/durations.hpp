#pragma once
// Durations as operators type and read them: `90s`, `5m`, `1h30m`, `7d` in; `1h02m` out.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd::ctl {

// What a bare number means: `wait --timeout 60` and `--watch 5` have always taken seconds;
// `prune --older-than 30` is refused (30 seconds or 30 days is too costly a guess).
enum class BareNumber { seconds, refused };

// "500ms", "90s", "15m", "12h", "7d", "2w", or several in a row from the largest unit down
// ("1h30m", "2d12h"), as milliseconds. nullopt for anything else (an empty text, a negative or
// fractional number, an unknown or repeated unit, more than a hundred years).
std::optional<std::int64_t> parse_duration_ms(std::string_view text,
                                              BareNumber bare = BareNumber::refused);

// How a duration reads in a table: "350ms", "12.5s", "5m03s", "1h02m", "2d03h". Negative
// durations read as "0ms".
std::string format_duration_ms(std::int64_t ms);

// What a flag's help and errors say a duration is.
inline constexpr const char* duration_help =
    "a duration: a whole number and ms, s, m, h, d or w (90s, 5m, 1h30m, 7d)";

}  // namespace kpsd::ctl
