#pragma once
// kpsd's configuration: one struct with typed fields, parsed once from the INI file
// documented in conf/kpsd.conf. Every field says its default and what 0 means where 0 is allowed.
#include "core/result.hpp"
#include "model/batch_brakes.hpp"

#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace kpsd {

using std::chrono::milliseconds;

// A parsed http:// or https:// base URL.
struct Endpoint {
  std::string scheme;  // "http" or "https"
  std::string host;
  std::uint16_t port = 0;
  std::string text;  // as written, for messages
};

struct KpsConfig {
  // A region of regions.hpp: derives `endpoint` (and auth.iam_endpoint, auth.project) when they
  // are not set. "" = none (then endpoint is required).
  std::string region;
  Endpoint endpoint;                       // required, or derived from region
  std::string project_id;                  // 32 hex characters; "" while project_id_auto
  bool project_id_auto = false;            // project_id = auto: looked up from IAM at start
  std::string ca_file;                     // empty = system trust store (https only)
  milliseconds request_timeout{15000};     // deadline of each connect/write/read; > 0
  bool poll_tasks = true;                  // false: a delivered 202 is final (succeeded)
  milliseconds poll_initial_delay{10000};  // first task poll after delivery; 0 = at once
  milliseconds poll_interval{20000};       // between task polls; > 0
  milliseconds poll_timeout{1800000};      // task still pending after this = failed; > 0
  // An http:// forward proxy for KPS and IAM calls (proxy.hpp): "" = from the environment as
  // curl reads it, "none" = direct whatever the environment says, or http://HOST[:PORT].
  std::string proxy;
  std::string proxy_credentials_file;  // "user:password" (Basic), one line; "" = none
};

enum class AuthMethod { token, iam_password, aksk, ecs_agency };

// Secret files hold one line. A relative path names a systemd credential
// ($CREDENTIALS_DIRECTORY/<name>, from LoadCredential=).
struct AuthConfig {
  AuthMethod method = AuthMethod::token;
  // token
  std::string token_file = "/etc/kpsd/kps-token";
  // iam_password: POST {iam_endpoint}/v3/auth/tokens; also where project_id = auto is looked up.
  // Set, or derived from kps.region; empty (host "") when neither.
  Endpoint iam_endpoint;
  std::string domain, user, password_file, project;
  // aksk; security_token_file (optional) for a temporary key pair, sent as X-Security-Token
  std::string ak_file, sk_file, security_token_file;
  // ecs_agency: temporary AK/SK from the ECS metadata service (never through a proxy)
  Endpoint metadata_endpoint;  // default http://169.254.169.254
};

struct QueueConfig {
  std::string database = "/var/lib/kpsd/jobs.db";
  unsigned concurrency = 64;              // calls in flight at once; >= 1
  double rate_per_second = 0;             // ceiling on calls per second; 0 = auto (none)
  unsigned max_attempts = 8;              // delivery attempts before failed; >= 1
  unsigned task_failure_retries = 1;      // new disassociates after a FAILED_* task; 0..100
  milliseconds backoff_initial{1000};     // first retry delay (before jitter); > 0
  milliseconds backoff_max{300000};       // cap on any retry delay; >= backoff_initial
  milliseconds throttle_backoff{15000};   // quota wall: longest gap between probes; > 0
  milliseconds retry_after_max{3600000};  // a server's Retry-After is followed up to this; > 0
  milliseconds drain_grace{30000};        // on SIGTERM, wait this long for calls in
                                          // flight, then cancel them; 0 = cancel at once
  // Finished jobs (succeeded, failed, cancelled) are deleted this many days after they ended,
  // with their attempts; 0 keeps them for ever. Checked hourly.
  unsigned retention_days = 30;
  // Brakes every new batch gets unless its enqueue says otherwise (--canary, --max-failures;
  // 0 there turns one off): off by default.
  std::int64_t default_canary = 0;  // 0: none
  Brakes default_brakes;            // max_failures: a count or a percentage; unset: none
};

struct ControlConfig {
  std::string socket = "/run/kpsd/kpsd.sock";
  unsigned socket_mode = 0660;  // octal; never world-accessible
  // Control connections open at once. A new one past the cap closes the connection idle the
  // longest (or is itself refused when every client is mid-request), with an error line.
  unsigned max_clients = 256;
};

struct MetricsConfig {
  bool enabled = false;    // [metrics] listen set
  std::string host;        // an IP address (127.0.0.1 keeps it local)
  std::uint16_t port = 0;  // 0 = any free port (logged at start)
};

struct LogConfig {
  std::string level = "info";  // trace debug info warn error critical off
};

struct Config {
  KpsConfig kps;
  AuthConfig auth;
  QueueConfig queue;
  ControlConfig control;
  MetricsConfig metrics;
  LogConfig log;
  // Every key the file sets ("section.key"), with its value as written (secrets are never in
  // the file, only paths to them): what SIGHUP compares to say what changed.
  std::map<std::string, std::string> written;
};

// Keys whose value differs between two configurations (set in one and not the other too).
std::vector<std::string> changed_keys(const Config& before, const Config& after);
// Keys SIGHUP applies while running; a change to any other key needs a restart.
bool applies_on_reload(std::string_view key);

// A start-up failure: the message is one line, `file:line: key: what is wrong`.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses INI text; `file_name` only appears in messages. Throws ConfigError.
Config parse_config(std::string_view text, std::string_view file_name);
// Reads and parses a file. Throws ConfigError (also when the file cannot be read).
Config load_config(const std::string& path);

// Parses "http[s]://host[:port]" with no path; a failure says what is wrong with it.
Result<Endpoint> parse_endpoint(std::string_view text);

}  // namespace kpsd
