#pragma once
// Region names to endpoints, as the vendor's tooling maps them: KPS is served by the KMS host
// (huaweicloud-sdk-go-v3 services/kps/v3/region/region.go and services/kms/v2/region/region.go),
// IAM by iam.{region} (services/iam/v3/region/region.go), on myhuaweicloud.com, or on
// myhuaweicloud.eu for the eu-west-1xx regions (terraform-provider-huaweicloud provider.go,
// getCloudDomain). Plain data and code, no I/O.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

struct RegionEndpoints {
  std::string kps;  // https://kms.{region}.{cloud}
  std::string iam;  // https://iam.{region}.{cloud}
};

// The endpoints of a region the SDKs list, or nullopt for any other name (a typo, or a region
// newer than this table: then kps.endpoint and auth.iam_endpoint are set by hand).
std::optional<RegionEndpoints> region_endpoints(std::string_view region);

// Every region of the table, in the SDKs' order (for messages).
const std::vector<std::string_view>& known_regions();

}  // namespace kpsd
