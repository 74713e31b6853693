// libFuzzer: what credential services and the environment hand kpsd: the metadata service's
// securitykey answer and expires_at, IAM's project list, and proxy URLs and no_proxy lists.
#include "auth/credential_answers.hpp"
#include "config/proxy.hpp"

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto c = kpsd::parse_securitykey_body(text)) {
    if (c->keys.access_key.empty() || c->keys.secret_key.empty()) __builtin_trap();
  } else if (c.error().message.empty()) {
    __builtin_trap();  // a refusal always says why
  }
  kpsd::parse_expires_at(text);
  if (auto found = kpsd::matching_projects(text, "cn-north-4"))
    for (const auto& p : *found)
      if (p.name != "cn-north-4") __builtin_trap();  // only exact names
  if (auto route = kpsd::parse_proxy_url(text, true);
      route && (route->port == 0 || route->host.empty()))
    __builtin_trap();
  kpsd::no_proxy_matches(text, "kms.cn-north-4.myhuaweicloud.com");
  kpsd::no_proxy_matches(text, "10.1.2.3");
  kpsd::no_proxy_matches("10.0.0.0/8,.example", text);
  return 0;
}
