#pragma once
// Trimming, in the two senses kpsd needs. Header-only: both are one loop.
#include <string_view>

namespace kpsd {

// Without leading and trailing whitespace (isspace: space, \t, \n, \v, \f, \r): a configuration
// line, a proxy URL, a no_proxy entry.
inline std::string_view trim(std::string_view s) {
  auto space = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Without HTTP's optional whitespace around it (OWS: space and tab only, RFC 9110 §5.6.3): a
// header value, as the SDK-HMAC-SHA256 signer canonicalises it.
inline std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace kpsd
