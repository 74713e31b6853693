#pragma once
// RFC 3986 percent-encoding, as the KPS paths and the SDK-HMAC-SHA256 canonical request use it.
#include <string>
#include <string_view>

namespace kpsd {

// Keeps the unreserved characters A-Za-z0-9-_.~; everything else becomes %XX (upper case).
std::string percent_encode(std::string_view s);
// Turns %XX back into bytes; a '%' not followed by two hex digits is kept as it is.
std::string percent_decode(std::string_view s);
// ASCII lower case (header names, host names), whatever the locale.
std::string ascii_lower(std::string_view s);

}  // namespace kpsd
