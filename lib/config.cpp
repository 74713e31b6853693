#include "config.hpp"

#include <spdlog/common.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <vector>

namespace kpsd {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Strips a `#` comment. A `#` only starts a comment at the line start or after whitespace,
// so values such as URLs with fragments are not cut (none of ours has one, but paths may).
std::string_view strip_comment(std::string_view line) {
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '#' && (i == 0 || std::isspace(static_cast<unsigned char>(line[i - 1])))) {
      return line.substr(0, i);
    }
  }
  return line;
}

struct Setting {
  std::string value;
  int line = 0;
};

class Parser {
 public:
  Parser(std::string_view file_name) : file_(file_name) {}
  const std::map<std::string, std::string>& written() const { return written_; }

  [[noreturn]] void fail(int line, std::string_view key, std::string_view what) const {
    std::string msg = file_;
    if (line > 0) msg += ":" + std::to_string(line);
    msg += ": ";
    if (!key.empty()) msg += std::string(key) + ": ";
    msg += what;
    throw ConfigError(msg);
  }

  void read(std::string_view text) {
    std::string section;
    int line_no = 0;
    while (!text.empty()) {
      ++line_no;
      auto nl = text.find('\n');
      std::string_view raw = text.substr(0, nl);
      text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
      std::string_view line = trim(strip_comment(raw));
      if (line.empty()) continue;
      if (line.front() == '[') {
        if (line.back() != ']') fail(line_no, "", "section header must look like [name]");
        section = std::string(trim(line.substr(1, line.size() - 2)));
        if (!known_sections().contains(section)) {
          fail(line_no, "[" + section + "]", "unknown section");
        }
        continue;
      }
      auto eq = line.find('=');
      if (eq == std::string_view::npos) fail(line_no, "", "expected `key = value`");
      std::string key(trim(line.substr(0, eq)));
      std::string value(trim(line.substr(eq + 1)));
      if (key.empty()) fail(line_no, "", "missing key before `=`");
      if (section.empty()) fail(line_no, key, "key outside of a [section]");
      std::string full = section + "." + key;
      if (!known_keys().contains(full)) fail(line_no, full, "unknown key");
      if (settings_.contains(full)) {
        fail(line_no, full,
             "set twice (first on line " + std::to_string(settings_[full].line) + ")");
      }
      settings_[full] = Setting{value, line_no};
      written_[full] = value;
    }
  }

  static const std::set<std::string>& known_sections() {
    static const std::set<std::string> s{"kps", "auth", "queue", "control", "metrics", "log"};
    return s;
  }
  static const std::set<std::string>& known_keys() {
    static const std::set<std::string> k{"kps.endpoint",
                                         "kps.project_id",
                                         "kps.ca_file",
                                         "kps.request_timeout_ms",
                                         "kps.poll_tasks",
                                         "kps.poll_initial_delay_ms",
                                         "kps.poll_interval_ms",
                                         "kps.poll_timeout_ms",
                                         "auth.method",
                                         "auth.token_file",
                                         "auth.iam_endpoint",
                                         "auth.domain",
                                         "auth.user",
                                         "auth.password_file",
                                         "auth.project",
                                         "auth.ak_file",
                                         "auth.sk_file",
                                         "queue.database",
                                         "queue.concurrency",
                                         "queue.rate_per_second",
                                         "queue.max_attempts",
                                         "queue.backoff_initial_ms",
                                         "queue.backoff_max_ms",
                                         "queue.throttle_backoff_ms",
                                         "queue.drain_grace_ms",
                                         "queue.retry_after_max_ms",
                                         "queue.retention_days",
                                         "control.socket",
                                         "metrics.listen",
                                         "control.socket_mode",
                                         "control.max_clients",
                                         "log.level"};
    return k;
  }

  const Setting* get(const std::string& key) const {
    auto it = settings_.find(key);
    return it == settings_.end() ? nullptr : &it->second;
  }

  void string_value(const std::string& key, std::string& out, bool required = false) {
    const Setting* s = get(key);
    if (!s) {
      if (required) fail(0, key, "required but not set");
      return;
    }
    if (required && s->value.empty()) fail(s->line, key, "must not be empty");
    out = s->value;
  }

  std::int64_t integer(const Setting& s, const std::string& key, std::int64_t min, std::int64_t max,
                       int base = 10) {
    std::int64_t v = 0;
    const char* first = s.value.data();
    const char* last = first + s.value.size();
    auto [ptr, ec] = std::from_chars(first, last, v, base);
    if (ec != std::errc{} || ptr != last || s.value.empty()) {
      fail(s.line, key, "`" + s.value + "` is not a whole number");
    }
    if (v < min || v > max) {
      fail(s.line, key,
           "`" + s.value + "` is out of range (" + std::to_string(min) + " to " +
               std::to_string(max) + ")");
    }
    return v;
  }

  void unsigned_value(const std::string& key, unsigned& out, std::int64_t min, std::int64_t max) {
    if (const Setting* s = get(key)) out = static_cast<unsigned>(integer(*s, key, min, max));
  }

  void millis(const std::string& key, milliseconds& out, std::int64_t min) {
    // Upper bound of 30 days: large enough for any sane timeout, small enough that adding it
    // to a Unix-millisecond time cannot overflow.
    if (const Setting* s = get(key)) out = milliseconds(integer(*s, key, min, 30LL * 86400000));
  }

  void boolean(const std::string& key, bool& out) {
    const Setting* s = get(key);
    if (!s) return;
    if (s->value == "true" || s->value == "yes" || s->value == "on" || s->value == "1") {
      out = true;
    } else if (s->value == "false" || s->value == "no" || s->value == "off" || s->value == "0") {
      out = false;
    } else {
      fail(s->line, key, "`" + s->value + "` is not a boolean (true or false)");
    }
  }

  int line_of(const std::string& key) const {
    const Setting* s = get(key);
    return s ? s->line : 0;
  }

 private:
  std::string file_;
  std::map<std::string, Setting> settings_;
  std::map<std::string, std::string> written_;
};

bool is_hex(std::string_view s) {
  for (char c : s) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

std::string parse_endpoint(std::string_view text, Endpoint& out) {
  Endpoint e;
  e.text = std::string(text);
  std::string_view rest = text;
  if (rest.starts_with("https://")) {
    e.scheme = "https";
    e.port = 443;
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    e.scheme = "http";
    e.port = 80;
    rest.remove_prefix(7);
  } else {
    return "`" + e.text + "` must start with https:// (or http:// for tests)";
  }
  while (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.find('/') != std::string_view::npos) {
    return "`" + e.text + "` must be a base URL without a path (kpsd adds /v3/...)";
  }
  std::string_view host = rest;
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos && rest.front() != '[') {
    host = rest.substr(0, colon);
    std::string_view port = rest.substr(colon + 1);
    unsigned p = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), p);
    if (ec != std::errc{} || ptr != port.data() + port.size() || p == 0 || p > 65535) {
      return "`" + e.text + "` has an invalid port";
    }
    e.port = static_cast<std::uint16_t>(p);
  }
  if (host.empty()) return "`" + e.text + "` has no host";
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-')) {
      return "`" + e.text + "` has an invalid host name";
    }
  }
  e.host = std::string(host);
  out = std::move(e);
  return {};
}

Config parse_config(std::string_view text, std::string_view file_name) {
  Parser p(file_name);
  p.read(text);
  Config c;

  std::string endpoint;
  p.string_value("kps.endpoint", endpoint, true);
  if (auto err = parse_endpoint(endpoint, c.kps.endpoint); !err.empty()) {
    p.fail(p.line_of("kps.endpoint"), "kps.endpoint", err);
  }
  p.string_value("kps.project_id", c.kps.project_id, true);
  if (c.kps.project_id.size() != 32 || !is_hex(c.kps.project_id)) {
    p.fail(p.line_of("kps.project_id"), "kps.project_id",
           "`" + c.kps.project_id + "` must be 32 hexadecimal characters (the IAM project id)");
  }
  p.string_value("kps.ca_file", c.kps.ca_file);
  p.millis("kps.request_timeout_ms", c.kps.request_timeout, 1);
  p.boolean("kps.poll_tasks", c.kps.poll_tasks);
  p.millis("kps.poll_initial_delay_ms", c.kps.poll_initial_delay, 0);
  p.millis("kps.poll_interval_ms", c.kps.poll_interval, 1);
  p.millis("kps.poll_timeout_ms", c.kps.poll_timeout, 1);

  std::string method = "token";
  p.string_value("auth.method", method);
  const std::map<std::string, std::vector<std::string>> keys_of{
      {"token", {"auth.token_file"}},
      {"iam_password",
       {"auth.iam_endpoint", "auth.domain", "auth.user", "auth.password_file", "auth.project"}},
      {"aksk", {"auth.ak_file", "auth.sk_file"}}};
  if (!keys_of.contains(method)) {
    p.fail(p.line_of("auth.method"), "auth.method",
           "`" + method + "` is not one of token, iam_password, aksk");
  }
  c.auth.method = method == "token"          ? AuthMethod::token
                  : method == "iam_password" ? AuthMethod::iam_password
                                             : AuthMethod::aksk;
  // A key of another method is a mistake worth stopping for (it would be silently ignored).
  for (const auto& [other, keys] : keys_of) {
    if (other == method) continue;
    for (const auto& key : keys) {
      if (p.get(key)) p.fail(p.line_of(key), key, "is only used with method = " + other);
    }
  }
  p.string_value("auth.token_file", c.auth.token_file);
  if (c.auth.token_file.empty()) {
    p.fail(p.line_of("auth.token_file"), "auth.token_file", "must not be empty");
  }
  if (c.auth.method == AuthMethod::iam_password) {
    std::string iam;
    p.string_value("auth.iam_endpoint", iam, true);
    if (auto err = parse_endpoint(iam, c.auth.iam_endpoint); !err.empty()) {
      p.fail(p.line_of("auth.iam_endpoint"), "auth.iam_endpoint", err);
    }
    p.string_value("auth.domain", c.auth.domain, true);
    p.string_value("auth.user", c.auth.user, true);
    p.string_value("auth.password_file", c.auth.password_file, true);
    p.string_value("auth.project", c.auth.project, true);
  }
  if (c.auth.method == AuthMethod::aksk) {
    p.string_value("auth.ak_file", c.auth.ak_file, true);
    p.string_value("auth.sk_file", c.auth.sk_file, true);
  }

  p.string_value("queue.database", c.queue.database);
  if (c.queue.database.empty()) {
    p.fail(p.line_of("queue.database"), "queue.database", "must not be empty");
  }
  p.unsigned_value("queue.concurrency", c.queue.concurrency, 1, 4096);
  if (const auto* s = p.get("queue.rate_per_second")) {
    double v = 0;
    // "auto" (no ceiling: the gateway's 429s alone set the pace) is the same as 0.
    if (s->value != "auto") {
      auto [ptr, ec] = std::from_chars(s->value.data(), s->value.data() + s->value.size(), v);
      if (ec != std::errc{} || ptr != s->value.data() + s->value.size() || s->value.empty() ||
          !(v >= 0 && v <= 100000)) {
        p.fail(s->line, "queue.rate_per_second",
               "`" + s->value + "` must be auto, or a number from 0 (no ceiling) to 100000");
      }
    }
    c.queue.rate_per_second = v;
  }
  p.unsigned_value("queue.max_attempts", c.queue.max_attempts, 1, 1000);
  p.millis("queue.backoff_initial_ms", c.queue.backoff_initial, 1);
  p.millis("queue.backoff_max_ms", c.queue.backoff_max, 1);
  p.millis("queue.throttle_backoff_ms", c.queue.throttle_backoff, 1);
  p.millis("queue.drain_grace_ms", c.queue.drain_grace, 0);
  p.millis("queue.retry_after_max_ms", c.queue.retry_after_max, 1);
  p.unsigned_value("queue.retention_days", c.queue.retention_days, 0, 36500);
  if (c.queue.backoff_max < c.queue.backoff_initial) {
    p.fail(p.line_of("queue.backoff_max_ms"), "queue.backoff_max_ms",
           "must not be smaller than queue.backoff_initial_ms");
  }

  p.string_value("control.socket", c.control.socket);
  if (c.control.socket.empty()) {
    p.fail(p.line_of("control.socket"), "control.socket", "must not be empty");
  }
  if (const auto* s = p.get("control.socket_mode")) {
    c.control.socket_mode = static_cast<unsigned>(p.integer(*s, "control.socket_mode", 0, 0777, 8));
    if (c.control.socket_mode & 0007) {
      p.fail(s->line, "control.socket_mode",
             "`" + s->value +
                 "` gives access to other users; the socket must not be "
                 "world-accessible (use 0600 or 0660)");
    }
  }

  p.unsigned_value("control.max_clients", c.control.max_clients, 1, 10000);

  std::string listen;
  p.string_value("metrics.listen", listen);
  if (!listen.empty()) {
    // host:port, with IPv6 hosts in brackets: [::1]:9464
    auto colon = listen.rfind(':');
    std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
    std::string port = colon == std::string::npos ? "" : listen.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (host.empty() || port.empty() || ec != std::errc{} || ptr != port.data() + port.size() ||
        v > 65535) {
      p.fail(p.line_of("metrics.listen"), "metrics.listen",
             "`" + listen + "` must be ADDRESS:PORT, e.g. 127.0.0.1:9464");
    }
    c.metrics.enabled = true;
    c.metrics.host = host;
    c.metrics.port = static_cast<std::uint16_t>(v);
  }

  p.string_value("log.level", c.log.level);
  if (spdlog::level::from_str(c.log.level) == spdlog::level::off && c.log.level != "off") {
    p.fail(p.line_of("log.level"), "log.level",
           "`" + c.log.level + "` is not one of trace, debug, info, warn, error, critical, off");
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
  static constexpr std::string_view live[] = {
      "kps.ca_file",           "kps.poll_tasks",           "kps.poll_initial_delay_ms",
      "kps.poll_interval_ms",  "kps.poll_timeout_ms",      "queue.concurrency",
      "queue.rate_per_second", "queue.max_attempts",       "queue.backoff_initial_ms",
      "queue.backoff_max_ms",  "queue.retry_after_max_ms", "log.level"};
  return std::find(std::begin(live), std::end(live), key) != std::end(live);
}

Config load_config(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read the configuration file");
  std::ostringstream text;
  text << in.rdbuf();
  return parse_config(text.str(), path);
}

}  // namespace kpsd
