#include "auth/credentials.hpp"
#include "auth/token_source.hpp"
#include "config/proxy.hpp"

#include <cstdlib>
#include <string>
#include <vector>

namespace kpsd {

ProxyChoice proxy_for(const KpsConfig& kps, const Endpoint& target) {
  auto chosen = choose_proxy(kps.proxy, target, [](const char* name) { return std::getenv(name); });
  if (!chosen) throw ConfigError(chosen.error().message);
  ProxyChoice choice = std::move(*chosen);
  if (!choice.route || kps.proxy_credentials_file.empty()) return choice;
  std::string path =
      resolve_credential_path(kps.proxy_credentials_file, "kps.proxy_credentials_file");
  auto credentials = read_secret_file(path, "");
  if (!credentials) throw ConfigError("kps.proxy_credentials_file: " + credentials.error().message);
  if (credentials->reveal().find(':') == std::string_view::npos)
    throw ConfigError("kps.proxy_credentials_file: " + path + " must hold user:password");
  choice.route->credentials = std::move(*credentials);
  choice.why += ", with Basic credentials";
  return choice;
}

}  // namespace kpsd

namespace kpsd {

std::vector<std::string> describe_routes(const Config& config) {
  std::vector<std::string> lines;
  std::string region = config.kps.region.empty() ? "" : " (region " + config.kps.region + ")";
  lines.push_back("KPS " + config.kps.endpoint.text + region + ": " +
                  proxy_for(config.kps, config.kps.endpoint).why);
  bool uses_iam = config.auth.method == AuthMethod::iam_password || config.kps.project_id_auto;
  if (uses_iam) {
    lines.push_back("IAM " + config.auth.iam_endpoint.text + ": " +
                    proxy_for(config.kps, config.auth.iam_endpoint).why);
  }
  return lines;
}

}  // namespace kpsd
