#include "config/regions.hpp"

#include <algorithm>

namespace kpsd {

const std::vector<std::string_view>& known_regions() {
  // KPS v3's 23 regions, then the KMS host's other regions (KMS v2), where KPS is served too.
  static const std::vector<std::string_view> regions{
      "cn-north-4",     "cn-north-1",       "cn-north-2",     "cn-north-9",     "cn-east-2",
      "cn-east-3",      "cn-south-1",       "cn-southwest-2", "ap-southeast-1", "ap-southeast-3",
      "ap-southeast-4", "la-south-2",       "sa-brazil-1",    "la-north-2",     "ap-southeast-2",
      "na-mexico-1",    "af-south-1",       "cn-south-4",     "cn-south-2",     "me-east-1",
      "tr-west-1",      "my-kualalumpur-1", "ru-moscow-1",    "eu-west-101",    "ae-ad-1",
      "cn-east-5",      "cn-east-4",        "ap-southeast-5", "cn-north-12",    "cn-north-11",
      "af-north-1",     "cn-southwest-3"};
  return regions;
}

std::optional<RegionEndpoints> region_endpoints(std::string_view region) {
  const auto& all = known_regions();
  if (std::find(all.begin(), all.end(), region) == all.end()) return std::nullopt;
  // Terraform's rule: eu-west-1xx lives on the European cloud; eu-west-0 does not.
  std::string cloud = region.starts_with("eu-west-1") ? "myhuaweicloud.eu" : "myhuaweicloud.com";
  std::string r(region);
  return RegionEndpoints{"https://kms." + r + "." + cloud, "https://iam." + r + "." + cloud};
}

}  // namespace kpsd
