#pragma once
// A fake ECS metadata service for [auth] method = ecs_agency, on 127.0.0.1, as the vendor's
// SDKs use it (docs/vendor-api.md; Go core/auth/internal/metadata_accessor.go):
//   PUT /meta-data/latest/api/token with X-Metadata-Token-Ttl-Seconds -> a session token;
//   GET /openstack/latest/securitykey with X-Metadata-Token ->
//     {"credential": {"access", "secret", "securitytoken", "expires_at"}}.
// Session tokens are required (401 without one, as an instance that enforces them). Temporary
// key pairs live `lifetime`; a new one is minted when the current one has less than half its
// life left, and handed to the fake KPS (pair_with), which accepts each until it expires.
#include "fake_kps.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace kpsd::fake {

class FakeMetadata {
 public:
  explicit FakeMetadata(std::chrono::milliseconds lifetime);
  ~FakeMetadata();
  FakeMetadata(const FakeMetadata&) = delete;
  FakeMetadata& operator=(const FakeMetadata&) = delete;

  std::uint16_t port() const;
  std::string url() const;  // http://127.0.0.1:PORT
  // The fake KPS that accepts the key pairs minted from now on (before kpsd starts).
  void pair_with(FakeKps& kps);
  // While on, every request gets 503 (the metadata service is down).
  void set_outage(bool on);

  std::int64_t session_tokens_issued() const;  // PUTs answered 200
  std::int64_t key_pairs_minted() const;
  std::int64_t securitykey_reads() const;       // GETs answered 200
  std::int64_t refused_reads() const;           // GETs without a valid session token (401)
  std::int64_t outage_refusals() const;         // 503s
  std::string last_security_token() const;      // to look for in logs
  std::vector<std::string> violations() const;  // what kpsd sent wrong

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kpsd::fake
