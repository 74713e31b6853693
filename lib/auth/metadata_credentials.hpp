#pragma once
// [auth] method = ecs_agency: temporary AK/SK from the ECS metadata service, got the way the
// vendor's SDKs get them (docs/vendor-api.md, "The ECS metadata service"; Go
// core/auth/internal/metadata_accessor.go and core/auth/base_credentials.go): PUT
// {metadata}/meta-data/latest/api/token with X-Metadata-Token-Ttl-Seconds: 21600 for a session
// token (404/405: none needed), then GET {metadata}/openstack/latest/securitykey with
// X-Metadata-Token. Nothing is stored on disk; calls to the metadata service never go through a
// proxy.
#include "auth/credentials.hpp"
#include "config/config.hpp"

#include <memory>
#include <string>

namespace kpsd {

// The Credentials of method ecs_agency; `host_header` and `project_id` are signed into each call
// as for aksk. No call is made until the first apply(). Throws nothing.
std::unique_ptr<Credentials> make_metadata_credentials(boost::asio::any_io_executor executor,
                                                       const Config& config,
                                                       const std::string& host_header);

}  // namespace kpsd
