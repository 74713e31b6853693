#include "auth/credentials.hpp"

#include "auth/aksk_signer.hpp"
#include "auth/credential_answers.hpp"
#include "auth/metadata_credentials.hpp"
#include "auth/shared_refresh.hpp"
#include "auth/token_source.hpp"
#include "config/proxy.hpp"
#include "net/api_error.hpp"
#include "net/http_client.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

namespace kpsd {

namespace net = boost::asio;
namespace json = boost::json;

std::string resolve_credential_path(const std::string& configured, const std::string& key) {
  if (!configured.empty() && configured.front() == '/') return configured;
  const char* dir = std::getenv("CREDENTIALS_DIRECTORY");
  if (!dir || !*dir) {
    throw ConfigError(key + " `" + configured +
                      "` is relative, which names a systemd credential, but "
                      "$CREDENTIALS_DIRECTORY is not set");
  }
  return std::string(dir) + "/" + configured;
}

std::vector<std::string> loose_secret_files(const Config& config) {
  std::vector<std::pair<std::string, std::string>> files;  // key, as configured
  const AuthConfig& a = config.auth;
  if (a.method == AuthMethod::token) files.emplace_back("auth.token_file", a.token_file);
  if (a.method == AuthMethod::iam_password)
    files.emplace_back("auth.password_file", a.password_file);
  if (a.method == AuthMethod::aksk) {
    files.emplace_back("auth.ak_file", a.ak_file);
    files.emplace_back("auth.sk_file", a.sk_file);
    files.emplace_back("auth.security_token_file", a.security_token_file);
  }
  files.emplace_back("kps.proxy_credentials_file", config.kps.proxy_credentials_file);
  std::vector<std::string> lines;
  for (const auto& [key, configured] : files) {
    if (configured.empty()) continue;
    std::string path;
    try {
      path = resolve_credential_path(configured, key);
    } catch (const std::exception&) {
      continue;  // reported where the file is read
    }
    if (std::string why = loose_mode(path); !why.empty()) lines.push_back(key + ": " + why);
  }
  return lines;
}

namespace {

class TokenFileCredentials final : public Credentials {
 public:
  explicit TokenFileCredentials(std::string path) : tokens_(std::move(path)) {
    if (auto token = tokens_.current(); !token) throw ConfigError(token.error().message);
  }
  net::awaitable<Result<void>> apply(HttpRequest& request, std::uint64_t& generation) override {
    auto token = tokens_.current();
    if (!token) co_return token.error();
    request.headers.emplace_back("X-Auth-Token", std::string(token->reveal()));
    generation = 0;
    co_return Result<void>{};
  }
  void rejected(std::uint64_t) override { tokens_.invalidate(); }
  Result<void> reload() override {
    tokens_.invalidate();
    return {};
  }

 private:
  TokenSource tokens_;
};

// AK/SK signing; with security_token_file, a temporary key pair (STS). Each file is watched as
// the token file is (TokenSource: one stat a second at most), so a rotated key pair is used
// within a second of being written, without SIGHUP; a 401 re-reads all of them at once.
class AkSkCredentials final : public Credentials {
 public:
  AkSkCredentials(const AuthConfig& auth, std::string project_id, std::string host_header)
      : ak_(resolve_credential_path(auth.ak_file, "auth.ak_file"), "file"),
        sk_(resolve_credential_path(auth.sk_file, "auth.sk_file"), "file"),
        project_id_(std::move(project_id)),
        host_header_(std::move(host_header)) {
    if (!auth.security_token_file.empty()) {
      token_.emplace(resolve_credential_path(auth.security_token_file, "auth.security_token_file"),
                     "file");
    }
    if (auto keys = read(); !keys) throw ConfigError(keys.error().message);
  }
  net::awaitable<Result<void>> apply(HttpRequest& request, std::uint64_t& generation) override {
    generation = 0;
    auto keys = read();
    if (!keys) co_return keys.error();
    sign_request({request.method, request.target, host_header_, request.headers, request.body},
                 *keys, project_id_, std::chrono::system_clock::now());
    co_return Result<void>{};
  }
  void rejected(std::uint64_t) override {
    // Read every file again at the next call (a rotated key pair is picked up at once), and
    // say it once however many calls in flight come back refused together.
    invalidate();
    auto now = std::chrono::steady_clock::now();
    if (now - last_warning_ < std::chrono::seconds(1)) return;
    last_warning_ = now;
    spdlog::warn("KPS rejected an AK/SK signature (401): check ak_file, sk_file{} and the clock",
                 token_ ? ", security_token_file (a temporary key pair may have expired)" : "");
  }
  Result<void> reload() override {
    invalidate();
    if (auto keys = read(); !keys) return keys.error();
    return {};
  }

 private:
  void invalidate() {
    ak_.invalidate();
    sk_.invalidate();
    if (token_) token_->invalidate();
  }
  // The current keys; an error names the key and the file, never the content.
  Result<AkSkKeys> read() {
    AkSkKeys keys;
    auto ak = ak_.current();
    if (!ak) return fail("auth.ak_file: " + ak.error().message);
    auto sk = sk_.current();
    if (!sk) return fail("auth.sk_file: " + sk.error().message);
    if (token_) {
      auto token = token_->current();
      if (!token) return fail("auth.security_token_file: " + token.error().message);
      keys.security_token = std::move(*token);
    }
    keys.access_key = std::move(*ak);
    keys.secret_key = std::move(*sk);
    return keys;
  }

  TokenSource ak_, sk_;
  std::optional<TokenSource> token_;
  std::string project_id_, host_header_;
  std::chrono::steady_clock::time_point last_warning_{};
};

class IamPasswordCredentials final : public Credentials {
 public:
  IamPasswordCredentials(net::any_io_executor ex, const Config& c, std::optional<ProxyRoute> proxy)
      : executor_(ex),
        auth_(c.auth),
        iam_(ex, c.auth.iam_endpoint, c.kps.ca_file, c.kps.request_timeout, std::move(proxy)) {
    password_file_ = resolve_credential_path(c.auth.password_file, "auth.password_file");
    if (auto read = reload(); !read) throw ConfigError(read.error().message);
  }

  net::awaitable<Result<void>> apply(HttpRequest& request, std::uint64_t& generation) override {
    if (token_.empty() || std::chrono::system_clock::now() >= refresh_at_) {
      if (auto refreshed = co_await refresh(); !refreshed) co_return refreshed.error();
    }
    request.headers.emplace_back("X-Auth-Token", std::string(token_.reveal()));
    generation = generation_;
    co_return Result<void>{};
  }

  void rejected(std::uint64_t generation) override {
    // Only the first 401 for a token forces a refresh; later ones were sent with the same old
    // token, or with a new token already on its way.
    if (generation == generation_ && !token_.empty()) {
      spdlog::info("IAM token rejected (401): getting a new one");
      token_ = Secret();
    }
  }

  Result<void> reload() override {
    auto pw = read_secret_file(password_file_, "");
    if (!pw) return fail("auth.password_file: " + pw.error().message);
    password_ = std::move(*pw);
    token_ = Secret();  // the next call gets a token with the (new) password
    return {};
  }

 private:
  // One refresh at a time (SharedRefresh): a burst of calls or 401s makes one IAM request.
  net::awaitable<Result<void>> refresh() {
    co_return co_await refresh_.run([this] { return request_token(); });
  }

  net::awaitable<Result<void>> request_token() {
    json::object user{{"name", auth_.user},
                      {"password", password_.reveal()},
                      {"domain", json::object{{"name", auth_.domain}}}};
    json::object body{
        {"auth", json::object{
                     {"identity", json::object{{"methods", json::array{"password"}},
                                               {"password", json::object{{"user", user}}}}},
                     {"scope", json::object{{"project", json::object{{"name", auth_.project}}}}}}}};
    HttpRequest req;
    req.method = "POST";
    req.target = "/v3/auth/tokens";
    req.headers.emplace_back("Content-Type", "application/json;charset=utf8");
    req.body = json::serialize(body);
    // The serialized password also sits in `user` and `body`: clear what we own.
    auto& pw = user["password"].as_string();
    OPENSSL_cleanse(pw.data(), pw.size());
    HttpResult r = co_await iam_.exchange(req);
    OPENSSL_cleanse(req.body.data(), req.body.size());
    std::string where = "IAM token request to " + iam_.endpoint().host;
    if (r.transport != HttpResult::Transport::ok)
      co_return fail(where + " failed: " + r.transport_detail);
    if (r.status != 201 || r.subject_token.empty()) {
      ApiErrorBody e = parse_error_body(r.body);
      co_return fail(where + " answered HTTP " + std::to_string(r.status) +
                     (e.code.empty() ? "" : " " + e.code) +
                     (e.message.empty() ? "" : ": " + e.message));
    }
    auto now = std::chrono::system_clock::now();
    auto expires = now + std::chrono::hours(24);  // the documented lifetime, if the body is silent
    if (auto at = parse_iam_token_expiry(r.body)) expires = *at;
    // Refresh well ahead: an hour before expiry, or halfway for a short-lived token.
    auto left = expires - now;
    refresh_at_ =
        expires - std::min<std::chrono::system_clock::duration>(std::chrono::hours(1), left / 2);
    token_ = std::move(r.subject_token);
    ++generation_;
    spdlog::info(
        "IAM token obtained for user {} (project {}), valid until {}", auth_.user, auth_.project,
        std::chrono::duration_cast<std::chrono::seconds>(expires.time_since_epoch()).count());
    co_return Result<void>{};
  }

  net::any_io_executor executor_;
  AuthConfig auth_;
  HttpClient iam_;
  std::string password_file_;
  Secret password_;
  Secret token_;
  std::chrono::system_clock::time_point refresh_at_{};
  std::uint64_t generation_ = 0;
  SharedRefresh refresh_{executor_};
};

}  // namespace

std::unique_ptr<Credentials> make_credentials(net::any_io_executor executor, const Config& config,
                                              const std::string& host_header) {
  switch (config.auth.method) {
    case AuthMethod::token:
      return std::make_unique<TokenFileCredentials>(
          resolve_credential_path(config.auth.token_file, "auth.token_file"));
    case AuthMethod::iam_password: {
      // IAM is reached the way KPS is: through the same proxy rules.
      auto proxy = proxy_for(config.kps, config.auth.iam_endpoint).route;
      return std::make_unique<IamPasswordCredentials>(executor, config, std::move(proxy));
    }
    case AuthMethod::aksk:
      return std::make_unique<AkSkCredentials>(config.auth, config.kps.project_id, host_header);
    case AuthMethod::ecs_agency:
      return make_metadata_credentials(executor, config, host_header);
  }
  throw std::logic_error("unknown auth method");
}

}  // namespace kpsd
