#pragma once
// What the credential services answer, read without I/O (and fuzzed): the ECS metadata
// service's securitykey (Go core/auth/internal/metadata_accessor.go), IAM's expires_at form,
// and IAM's project list (Go core/auth/internal/iam_service.go).
#include "auth/aksk_signer.hpp"
#include "core/result.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

struct MetadataCredential {
  AkSkKeys keys;
  std::chrono::system_clock::time_point expires_at;
};

// "2020-01-08T03:50:07.574000Z" (UTC; the fraction optional, as IAM writes it) as a time
// point; nullopt for anything else.
std::optional<std::chrono::system_clock::time_point> parse_expires_at(std::string_view text);

// The securitykey answer {"credential": {"access", "secret", "securitytoken", "expires_at"}};
// a failure (whose message never holds a value from the body) when a field is missing, empty or
// not a string, or expires_at is unreadable.
Result<MetadataCredential> parse_securitykey_body(std::string_view body);

// When to fetch a new key pair, for one fetched at `fetched` that expires at `expires`: 2 hours
// before expiry, as the Go SDK does, or halfway for a shorter-lived pair.
std::chrono::system_clock::time_point refresh_time(std::chrono::system_clock::time_point fetched,
                                                   std::chrono::system_clock::time_point expires);

// IAM's token answer (POST /v3/auth/tokens, 201): token.expires_at, as IAM writes it
// ("2026-11-26T12:00:00.000000Z"; the seconds are what counts). nullopt when absent or
// unreadable, or outside 1970 to 2199.
std::optional<std::chrono::system_clock::time_point> parse_iam_token_expiry(std::string_view body);

struct ProjectMatch {
  std::string id, name;
};

// The projects of a {"projects": [{"id", "name"}, ...]} answer named exactly `region` (IAM
// filters by name, but an answer is not trusted to); possibly none. A failure when the body is
// not that shape.
Result<std::vector<ProjectMatch>> matching_projects(std::string_view body, std::string_view region);

}  // namespace kpsd
