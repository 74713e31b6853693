#pragma once
// SDK-HMAC-SHA256 request signing for AK/SK authentication (shared/kps-api.md), without I/O.
#include "secret.hpp"

#include <chrono>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kpsd {

struct SigningRequest {
  std::string method;  // "GET", "POST"
  std::string path;    // as sent on the wire (may hold %XX escapes)
  std::string query;   // as sent, without '?'; empty if none
  std::vector<std::pair<std::string, std::string>> headers;  // exactly the headers to sign
  std::string_view body;
};

std::string canonical_request(const SigningRequest& r);
std::string string_to_sign(std::string_view canonical_request, std::string_view sdk_date);
std::string hex_hmac_sha256(const Secret& key, std::string_view data);
std::string hex_sha256(std::string_view data);
// The Authorization header value. `r.headers` must include X-Sdk-Date.
std::string authorization_header(const SigningRequest& r, std::string_view access_key,
                                 const Secret& secret_key);
// X-Sdk-Date: YYYYMMDDTHHMMSSZ, UTC.
std::string sdk_date(std::chrono::system_clock::time_point t);

}  // namespace kpsd
