#include "config/config_keys.hpp"

#include "config/config_parser.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

namespace kpsd {

using detail::Parser;

std::span<const ConfigKey> config_keys() noexcept {
  // name, reloadable (SIGHUP), reader. A key added here is known to the parser at once; the
  // unit test then asks for its paragraph in conf/kpsd.conf.
  static constexpr ConfigKey table[] = {
      {"kps.region", false, &detail::parse_kps},
      {"kps.endpoint", false, &detail::parse_kps},
      {"kps.project_id", false, &detail::parse_kps},
      {"kps.proxy", false, &detail::parse_kps},
      {"kps.proxy_credentials_file", false, &detail::parse_kps},
      {"kps.ca_file", true, &detail::parse_kps},
      {"kps.request_timeout_ms", false, &detail::parse_kps},
      {"kps.poll_tasks", true, &detail::parse_kps},
      {"kps.poll_initial_delay_ms", true, &detail::parse_kps},
      {"kps.poll_interval_ms", true, &detail::parse_kps},
      {"kps.poll_timeout_ms", true, &detail::parse_kps},
      {"auth.method", false, &detail::parse_auth},
      {"auth.token_file", false, &detail::parse_auth},
      {"auth.iam_endpoint", false, &detail::parse_auth},
      {"auth.domain", false, &detail::parse_auth},
      {"auth.user", false, &detail::parse_auth},
      {"auth.password_file", false, &detail::parse_auth},
      {"auth.project", false, &detail::parse_auth},
      {"auth.ak_file", false, &detail::parse_auth},
      {"auth.sk_file", false, &detail::parse_auth},
      {"auth.security_token_file", false, &detail::parse_auth},
      {"auth.metadata_endpoint", false, &detail::parse_auth},
      {"queue.database", false, &detail::parse_queue},
      {"queue.concurrency", true, &detail::parse_queue},
      {"queue.rate_per_second", true, &detail::parse_queue},
      {"queue.max_attempts", true, &detail::parse_queue},
      {"queue.task_failure_retries", true, &detail::parse_queue},
      {"queue.backoff_initial_ms", true, &detail::parse_queue},
      {"queue.backoff_max_ms", true, &detail::parse_queue},
      {"queue.throttle_backoff_ms", false, &detail::parse_queue},
      {"queue.retry_after_max_ms", true, &detail::parse_queue},
      {"queue.retention_days", false, &detail::parse_queue},
      {"queue.drain_grace_ms", false, &detail::parse_queue},
      {"queue.canary", false, &detail::parse_queue},
      {"queue.max_failures", false, &detail::parse_queue},
      {"control.socket", false, &detail::parse_control},
      {"control.socket_mode", false, &detail::parse_control},
      {"control.max_clients", false, &detail::parse_control},
      {"metrics.listen", false, &detail::parse_metrics},
      {"log.level", true, &detail::parse_log},
  };
  return table;
}

const ConfigKey* find_config_key(std::string_view name) noexcept {
  auto keys = config_keys();
  auto it =
      std::find_if(keys.begin(), keys.end(), [&](const ConfigKey& k) { return k.name == name; });
  return it == keys.end() ? nullptr : &*it;
}

Config parse_config(std::string_view text, std::string_view file_name) {
  Parser p(file_name);
  p.read(text);
  Config c;
  // Each section's reader once, in the table's order (kps before auth: auth's IAM endpoint
  // follows kps.region).
  void (*last)(Parser&, Config&) = nullptr;
  for (const ConfigKey& k : config_keys()) {
    if (k.reader == last) continue;
    last = k.reader;
    last(p, c);
  }
  c.written = p.written();
  return c;
}

std::vector<std::string> changed_keys(const Config& before, const Config& after) {
  std::vector<std::string> changed;
  for (const auto& [key, value] : before.written) {
    auto it = after.written.find(key);
    if (it == after.written.end() || it->second != value) changed.push_back(key);
  }
  for (const auto& [key, value] : after.written) {
    if (!before.written.contains(key)) changed.push_back(key);
  }
  std::sort(changed.begin(), changed.end());
  return changed;
}

bool applies_on_reload(std::string_view key) {
  const ConfigKey* k = find_config_key(key);
  return k && k->reloadable;
}

Config load_config(const std::string& path) {
  auto cannot_read = [&path](int error) {
    return ConfigError("cannot read the configuration file " + path + ": " + std::strerror(error));
  };
  // A directory opens and reads as empty (then "kps.endpoint: required"): say what it is.
  if (struct stat st{}; ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw cannot_read(EISDIR);
  }
  errno = 0;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw cannot_read(errno ? errno : ENOENT);
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

}  // namespace kpsd
