#include "auth/aksk_signer.hpp"

#include "core/text.hpp"
#include "core/url.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <stdexcept>

namespace kpsd {

namespace {

std::string to_hex(const unsigned char* data, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out += digits[data[i] >> 4];
    out += digits[data[i] & 15];
  }
  return out;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    auto pos = s.find(sep, start);
    parts.push_back(
        s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) break;
    start = pos + 1;
  }
  return parts;
}

// Sorted lower-case (name, trimmed value) pairs.
std::vector<std::pair<std::string, std::string>> normalized(const SigningRequest& r) {
  std::vector<std::pair<std::string, std::string>> h;
  for (const auto& [name, value] : r.headers)
    h.emplace_back(ascii_lower(name), std::string(trim_ows(value)));
  std::sort(h.begin(), h.end());
  return h;
}

std::string signed_header_names(const std::vector<std::pair<std::string, std::string>>& h) {
  std::string out;
  for (const auto& [name, value] : h) out += (out.empty() ? "" : ";") + name;
  return out;
}

}  // namespace

std::string hex_sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return to_hex(digest, sizeof(digest));
}

std::string hex_hmac_sha256(const Secret& key, std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), key.reveal().data(), static_cast<int>(key.size()),
            reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest, &len)) {
    throw std::runtime_error("HMAC-SHA256 failed");  // OpenSSL broken: an invariant, not input
  }
  return to_hex(digest, len);
}

std::string canonical_request(const SigningRequest& r) {
  // URI: each segment of the decoded path encoded again, with a trailing slash.
  std::string uri;
  auto segments = split(r.path, '/');
  for (std::size_t i = 0; i < segments.size(); ++i) {
    if (i) uri += '/';
    uri += percent_encode(percent_decode(segments[i]));
  }
  if (uri.empty() || uri.back() != '/') uri += '/';

  std::string query;
  if (!r.query.empty()) {
    std::vector<std::pair<std::string, std::string>> pairs;
    for (auto part : split(r.query, '&')) {
      auto eq = part.find('=');
      std::string_view k = part.substr(0, eq);
      std::string_view v = eq == std::string_view::npos ? std::string_view{} : part.substr(eq + 1);
      pairs.emplace_back(percent_encode(percent_decode(k)), percent_encode(percent_decode(v)));
    }
    std::sort(pairs.begin(), pairs.end());
    for (const auto& [k, v] : pairs) query += (query.empty() ? "" : "&") + k + "=" + v;
  }

  auto headers = normalized(r);
  std::string canonical_headers;
  for (const auto& [name, value] : headers) canonical_headers += name + ":" + value + "\n";

  return r.method + "\n" + uri + "\n" + query + "\n" + canonical_headers + "\n" +
         signed_header_names(headers) + "\n" + hex_sha256(r.body);
}

std::string string_to_sign(std::string_view canonical, std::string_view date) {
  return "SDK-HMAC-SHA256\n" + std::string(date) + "\n" + hex_sha256(canonical);
}

std::string authorization_header(const SigningRequest& r, std::string_view access_key,
                                 const Secret& secret_key) {
  std::string date;
  for (const auto& [name, value] : r.headers) {
    if (ascii_lower(name) == "x-sdk-date") date = std::string(trim_ows(value));
  }
  std::string signature = hex_hmac_sha256(secret_key, string_to_sign(canonical_request(r), date));
  return "SDK-HMAC-SHA256 Access=" + std::string(access_key) +
         ", SignedHeaders=" + signed_header_names(normalized(r)) + ", Signature=" + signature;
}

std::string sdk_date(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

void sign_request(OutgoingRequest r, const AkSkKeys& keys, std::string_view project_id,
                  std::chrono::system_clock::time_point date) {
  if (!project_id.empty()) r.headers.emplace_back("X-Project-Id", std::string(project_id));
  if (!keys.security_token.empty())
    r.headers.emplace_back("X-Security-Token", std::string(keys.security_token.reveal()));
  r.headers.emplace_back("X-Sdk-Date", sdk_date(date));
  SigningRequest s;
  s.method = std::string(r.method);
  auto q = r.target.find('?');
  s.path = std::string(r.target.substr(0, q));
  s.query = q == std::string_view::npos ? "" : std::string(r.target.substr(q + 1));
  s.headers.emplace_back("Host", std::string(r.host_header));
  for (const auto& [name, value] : r.headers) {
    std::string n = ascii_lower(name);
    if (n == "content-type" || n == "x-project-id" || n == "x-sdk-date" || n == "x-security-token")
      s.headers.emplace_back(name, value);
  }
  s.body = r.body;
  std::string authorization = authorization_header(s, keys.access_key.reveal(), keys.secret_key);
  // The copies made for signing hold the security token: clear them before they are freed.
  for (auto& [name, value] : s.headers) OPENSSL_cleanse(value.data(), value.size());
  r.headers.emplace_back("Authorization", std::move(authorization));
}

}  // namespace kpsd
