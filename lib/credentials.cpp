#include "credentials.hpp"

#include "aksk_signer.hpp"
#include "http_client.hpp"
#include "kps_api.hpp"
#include "token_source.hpp"

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

namespace {

class TokenFileCredentials final : public Credentials {
 public:
  explicit TokenFileCredentials(std::string path) : tokens_(std::move(path)) {
    std::string error;
    if (!tokens_.current(error)) throw ConfigError(error);
  }
  net::awaitable<std::string> apply(HttpRequest& request, std::uint64_t& generation) override {
    std::string error;
    auto token = tokens_.current(error);
    if (!token) co_return error;
    request.headers.emplace_back("X-Auth-Token", std::string(token->reveal()));
    generation = 0;
    co_return std::string{};
  }
  void rejected(std::uint64_t) override { tokens_.invalidate(); }
  std::string reload() override {
    tokens_.invalidate();
    return {};
  }

 private:
  TokenSource tokens_;
};

class AkSkCredentials final : public Credentials {
 public:
  AkSkCredentials(std::string ak_file, std::string sk_file, std::string project_id,
                  std::string host_header)
      : ak_file_(std::move(ak_file)),
        sk_file_(std::move(sk_file)),
        project_id_(std::move(project_id)),
        host_header_(std::move(host_header)) {
    if (auto error = reload(); !error.empty()) throw ConfigError(error);
  }
  net::awaitable<std::string> apply(HttpRequest& request, std::uint64_t& generation) override {
    generation = 0;
    std::string date = sdk_date(std::chrono::system_clock::now());
    request.headers.emplace_back("X-Project-Id", project_id_);
    request.headers.emplace_back("X-Sdk-Date", date);
    SigningRequest s;
    s.method = request.method;
    auto q = request.target.find('?');
    s.path = request.target.substr(0, q);
    s.query = q == std::string::npos ? "" : request.target.substr(q + 1);
    s.headers.emplace_back("Host", host_header_);
    for (const auto& [name, value] : request.headers) {
      if (name == "Content-Type" || name == "X-Project-Id" || name == "X-Sdk-Date") {
        s.headers.emplace_back(name, value);
      }
    }
    s.body = request.body;
    request.headers.emplace_back("Authorization", authorization_header(s, ak_.reveal(), sk_));
    co_return std::string{};
  }
  void rejected(std::uint64_t) override {
    // The refresh for AK/SK: read both files again (a rotated key pair is picked up at once),
    // once however many calls in flight come back refused together.
    auto now = std::chrono::steady_clock::now();
    if (now - last_refresh_ < std::chrono::seconds(1)) return;
    last_refresh_ = now;
    if (auto error = reload(); !error.empty()) spdlog::warn("after a 401: {}", error);
    spdlog::warn("KPS rejected an AK/SK signature (401): check ak_file/sk_file and the clock");
  }
  std::string reload() override {
    std::string error;
    auto ak = read_secret_file(ak_file_, "", error);
    if (!ak) return "auth.ak_file: " + error;
    auto sk = read_secret_file(sk_file_, "", error);
    if (!sk) return "auth.sk_file: " + error;
    ak_ = std::move(*ak);
    sk_ = std::move(*sk);
    return {};
  }

 private:
  std::string ak_file_, sk_file_, project_id_, host_header_;
  Secret ak_, sk_;
  std::chrono::steady_clock::time_point last_refresh_{};
};

class IamPasswordCredentials final : public Credentials {
 public:
  IamPasswordCredentials(net::any_io_executor ex, const Config& c)
      : executor_(ex),
        auth_(c.auth),
        iam_(ex, c.auth.iam_endpoint, c.kps.ca_file, c.kps.request_timeout) {
    password_file_ = resolve_credential_path(c.auth.password_file, "auth.password_file");
    if (auto error = reload(); !error.empty()) throw ConfigError(error);
  }

  net::awaitable<std::string> apply(HttpRequest& request, std::uint64_t& generation) override {
    if (token_.empty() || std::chrono::system_clock::now() >= refresh_at_) {
      std::string error = co_await refresh();
      if (!error.empty()) co_return error;
    }
    request.headers.emplace_back("X-Auth-Token", std::string(token_.reveal()));
    generation = generation_;
    co_return std::string{};
  }

  void rejected(std::uint64_t generation) override {
    // Only the first 401 for a token forces a refresh; later ones were sent with the same old
    // token, or with a new token already on its way.
    if (generation == generation_ && !token_.empty()) {
      spdlog::info("IAM token rejected (401): getting a new one");
      token_ = Secret();
    }
  }

  std::string reload() override {
    std::string error;
    auto pw = read_secret_file(password_file_, "", error);
    if (!pw) return "auth.password_file: " + error;
    password_ = std::move(*pw);
    token_ = Secret();  // the next call gets a token with the (new) password
    return {};
  }

 private:
  // One refresh at a time: callers that arrive while one runs wait for it, so a burst of calls
  // (or of 401s) makes one IAM request, not one each.
  net::awaitable<std::string> refresh() {
    if (refreshing_) {
      net::steady_timer wait(executor_, std::chrono::steady_clock::time_point::max());
      waiters_.push_back(&wait);
      co_await wait.async_wait(net::as_tuple(net::use_awaitable));
      co_return token_.empty() ? last_error_ : std::string{};
    }
    refreshing_ = true;
    std::string error = co_await request_token();
    refreshing_ = false;
    last_error_ = error;
    for (auto* w : waiters_) w->cancel();
    waiters_.clear();
    co_return error;
  }

  net::awaitable<std::string> request_token() {
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
      co_return where + " failed: " + r.transport_detail;
    if (r.status != 201 || r.subject_token.empty()) {
      ApiErrorBody e = parse_error_body(r.body);
      co_return where + " answered HTTP " + std::to_string(r.status) +
          (e.code.empty() ? "" : " " + e.code) + (e.message.empty() ? "" : ": " + e.message);
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
    co_return std::string{};
  }

  net::any_io_executor executor_;
  AuthConfig auth_;
  HttpClient iam_;
  std::string password_file_;
  Secret password_;
  Secret token_;
  std::chrono::system_clock::time_point refresh_at_{};
  std::uint64_t generation_ = 0;
  bool refreshing_ = false;
  std::string last_error_;
  std::vector<net::steady_timer*> waiters_;
};

}  // namespace

std::unique_ptr<Credentials> make_credentials(net::any_io_executor executor, const Config& config,
                                              const std::string& host_header) {
  switch (config.auth.method) {
    case AuthMethod::token:
      return std::make_unique<TokenFileCredentials>(
          resolve_credential_path(config.auth.token_file, "auth.token_file"));
    case AuthMethod::iam_password:
      return std::make_unique<IamPasswordCredentials>(executor, config);
    case AuthMethod::aksk:
      return std::make_unique<AkSkCredentials>(
          resolve_credential_path(config.auth.ak_file, "auth.ak_file"),
          resolve_credential_path(config.auth.sk_file, "auth.sk_file"), config.kps.project_id,
          host_header);
  }
  throw std::logic_error("unknown auth method");
}

}  // namespace kpsd
