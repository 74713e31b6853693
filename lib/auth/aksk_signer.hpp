#pragma once
// SDK-HMAC-SHA256 request signing for AK/SK authentication (docs/vendor-api.md, "AK/SK
// signing"), without I/O.
#include "core/secret.hpp"

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

// An AK/SK key pair; temporary ones (from STS or an ECS agency) come with a security token.
struct AkSkKeys {
  Secret access_key;
  Secret secret_key;
  Secret security_token;  // empty for a permanent key pair
};

// A request as kpsd sends it, to be signed: `target` is path and query as on the wire;
// `headers` are those already set (Content-Type among them for a body).
struct OutgoingRequest {
  std::string_view method;
  std::string_view target;
  std::string_view host_header;  // what Host: says
  std::vector<std::pair<std::string, std::string>>& headers;
  std::string_view body;
};

// Signs `r` as the vendor's SDKs do (Go core/auth/basic_credentials.go ProcessAuthRequest, then
// core/auth/signer/signer.go): adds X-Project-Id (when `project_id` is not empty), X-Security-
// Token (temporary keys), X-Sdk-Date from `date` and Authorization. Signed: Host, Content-Type
// when present, and the headers it adds. No errors: the keys are taken as they are.
void sign_request(OutgoingRequest r, const AkSkKeys& keys, std::string_view project_id,
                  std::chrono::system_clock::time_point date);

}  // namespace kpsd
