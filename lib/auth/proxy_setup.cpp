#include "auth/credentials.hpp"
#include "auth/token_source.hpp"
#include "config/proxy.hpp"

#include <cstdlib>
#include <string>
#include <vector>

namespace kpsd {

std::optional<ProxyRoute> proxy_for(const KpsConfig& kps, const Endpoint& target,
                                    std::string& why) {
  std::string error;
  auto route = choose_proxy(
      kps.proxy, target, [](const char* name) { return std::getenv(name); }, why, error);
  if (!error.empty()) throw ConfigError(error);
  if (!route || kps.proxy_credentials_file.empty()) return route;
  std::string path =
      resolve_credential_path(kps.proxy_credentials_file, "kps.proxy_credentials_file");
  auto credentials = read_secret_file(path, "");
  if (!credentials) throw ConfigError("kps.proxy_credentials_file: " + credentials.error().message);
  if (credentials->reveal().find(':') == std::string_view::npos)
    throw ConfigError("kps.proxy_credentials_file: " + path + " must hold user:password");
  route->credentials = std::move(*credentials);
  why += ", with Basic credentials";
  return route;
}

}  // namespace kpsd

namespace kpsd {

std::vector<std::string> describe_routes(const Config& config) {
  std::vector<std::string> lines;
  std::string why;
  proxy_for(config.kps, config.kps.endpoint, why);
  std::string region = config.kps.region.empty() ? "" : " (region " + config.kps.region + ")";
  lines.push_back("KPS " + config.kps.endpoint.text + region + ": " + why);
  bool uses_iam = config.auth.method == AuthMethod::iam_password || config.kps.project_id_auto;
  if (uses_iam) {
    proxy_for(config.kps, config.auth.iam_endpoint, why);
    lines.push_back("IAM " + config.auth.iam_endpoint.text + ": " + why);
  }
  return lines;
}

}  // namespace kpsd
