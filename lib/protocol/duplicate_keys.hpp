#pragma once
// A key repeated within one JSON object, which boost::json::parse resolves silently as "last one
// wins" ({"op":"stats","op":"pause"} must not pause): the control protocol refuses such a line.
#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

// The first key found twice in one object of `text` (its first 64 bytes), or nullopt. Reads
// keys only, never values; text that is not JSON gives nullopt (the real parse says why).
std::optional<std::string> find_duplicate_key(std::string_view text);

}  // namespace kpsd
