#pragma once
// RFC 3986 percent-encoding, as the KPS paths and the SDK-HMAC-SHA256 canonical request use it.
#include <string>
#include <string_view>

namespace kpsd {

// Keeps the unreserved characters A-Za-z0-9-_.~; everything else becomes %XX (upper case).
std::string percent_encode(std::string_view s);
// Turns %XX back into bytes; a '%' not followed by two hex digits is kept as it is. With
// `plus_as_space`, '+' is a space too, as in a form-encoded query string (the status page's).
std::string percent_decode(std::string_view s, bool plus_as_space = false);
// ASCII lower case (header names, host names), whatever the locale.
std::string ascii_lower(std::string_view s);
// localhost, 127.0.0.0/8 or ::1: a host whose traffic never leaves the machine.
bool is_loopback_host(std::string_view host);
// Whether the HTTP port answers a request with this Host header (RFC 9110 7.2): an IP address
// (kpsd listens on one: metrics.listen) or localhost, with or without a port. A DNS name is
// refused: a web page that reaches the port under its own name, after its DNS answer turned to
// 127.0.0.1 (DNS rebinding), must not read job data through the operator's browser.
bool host_header_allowed(std::string_view host);

}  // namespace kpsd
