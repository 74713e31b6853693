#include "auth/metadata_credentials.hpp"

#include "auth/credential_answers.hpp"
#include "auth/shared_refresh.hpp"
#include "net/http_client.hpp"

#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;
using SysClock = std::chrono::system_clock;

namespace {

constexpr const char* token_path = "/meta-data/latest/api/token";
constexpr const char* securitykey_path = "/openstack/latest/securitykey";
// The SDK's timeout for each metadata request; the service is on the instance's own link.
constexpr auto metadata_timeout = std::chrono::seconds(3);
// A key pair this close to its expiry is no longer used when a refresh fails (see usable()).
constexpr auto expiry_margin = std::chrono::seconds(5);
// After a failed fetch (or while one runs for a pair still good), the next try is this far off.
constexpr auto retry_after_failure = std::chrono::seconds(10);

std::string describe(const HttpResult& r) {
  if (r.transport != HttpResult::Transport::ok) return r.transport_detail;
  return "HTTP " + std::to_string(r.status);
}

class MetadataCredentials final : public Credentials {
 public:
  MetadataCredentials(net::any_io_executor ex, const Config& c, std::string host_header)
      : metadata_(ex, c.auth.metadata_endpoint, "", metadata_timeout),  // never a proxy
        project_id_(c.kps.project_id),
        host_header_(std::move(host_header)),
        refresh_(ex) {}

  net::awaitable<Result<void>> apply(HttpRequest& request, std::uint64_t& generation) override {
    auto now = SysClock::now();
    if (!usable(now) || now >= refresh_at_) {
      // While the pair in hand is good, only this call waits for the renewal; the others
      // sign with the current pair meanwhile (a slow metadata service stalls one slot).
      if (usable(now)) refresh_at_ = now + retry_after_failure;
      auto fetched = co_await refresh_.run([this] { return fetch(); });
      if (!usable(SysClock::now())) {
        co_return fail("ECS metadata credentials: " +
                       (fetched ? std::string("no usable key pair") : fetched.error().message));
      }
    }
    sign_request({request.method, request.target, host_header_, request.headers, request.body},
                 keys_, project_id_, SysClock::now());
    generation = generation_;
    co_return Result<void>{};
  }

  void rejected(std::uint64_t generation) override {
    // A key pair refused before its expiry (the agency changed): fetch again, once per pair.
    if (generation != generation_ || keys_.access_key.empty()) return;
    spdlog::info("KPS refused the agency's temporary key pair (401): fetching a new one");
    refresh_at_ = {};
  }

  Result<void> reload() override {
    refresh_at_ = {};  // SIGHUP: fetch at the next call
    return {};
  }

 private:
  // A key pair is used until shortly before its end (calls in flight must arrive in time).
  bool usable(SysClock::time_point now) const {
    return !keys_.access_key.empty() && now < expires_at_ - margin_;
  }

  // One fetch (SharedRefresh runs one at a time).
  net::awaitable<Result<void>> fetch() {
    Result<void> read = co_await read_securitykey();
    auto now = SysClock::now();
    if (read) {
      failing_since_.reset();
      co_return read;
    }
    // Keep the key pair while it is valid; try again 10 s after this failure, not at every call.
    refresh_at_ = now + retry_after_failure;
    if (!failing_since_) {
      failing_since_ = now;
      if (usable(now)) {
        spdlog::warn(
            "cannot refresh the agency's credentials ({}); the current key pair stays "
            "in use while it is valid",
            read.error().message);
      }
    }
    co_return read;
  }

  // The session token, then the key pair; one new session token after a 401 (it may have
  // expired), as the SDK does.
  net::awaitable<Result<void>> read_securitykey() {
    if (session_token_.empty() && !token_unneeded_) {
      if (auto token = co_await get_session_token(); !token) co_return token;
    }
    HttpResult r = co_await get_securitykey();
    if (r.transport == HttpResult::Transport::ok && r.status == 401 &&
        r.body.find("Please configure Cloud Service Agency first") == std::string::npos) {
      token_unneeded_ = false;
      if (auto token = co_await get_session_token(); !token) co_return token;
      r = co_await get_securitykey();
    }
    if (r.transport != HttpResult::Transport::ok || r.status != 200) {
      std::string agency =
          r.body.find("Please configure Cloud Service Agency first") != std::string::npos
              ? " (this ECS has no agency: attach one with KPS rights)"
              : "";
      co_return fail("GET " + std::string(securitykey_path) + " on " + metadata_.endpoint().text +
                     ": " + describe(r) + agency);
    }
    auto credential = parse_securitykey_body(r.body);
    OPENSSL_cleanse(r.body.data(), r.body.size());
    if (!credential)
      co_return fail("the securitykey answer cannot be used: " + credential.error().message);
    auto now = SysClock::now();
    // The margin is set by the pair's life when first seen (the service hands out the same pair
    // until it renews it): 5 s, or a quarter of the life of a short-lived pair.
    bool same_pair = credential->keys.access_key == keys_.access_key;
    auto margin =
        same_pair ? margin_
                  : std::min<SysClock::duration>(expiry_margin, (credential->expires_at - now) / 4);
    if (credential->expires_at - std::max<SysClock::duration>(margin, {}) <= now) {
      co_return fail(
          "the metadata service handed out a key pair that has already expired here "
          "(expires_at " +
          std::to_string(SysClock::to_time_t(credential->expires_at)) +
          "): check this machine's clock");
    }
    keys_ = std::move(credential->keys);
    expires_at_ = credential->expires_at;
    margin_ = margin;
    // Never sooner than a second from now: a pair near its end is not fetched per call.
    refresh_at_ = std::max(refresh_time(now, expires_at_), now + std::chrono::seconds(1));
    ++generation_;
    spdlog::info(
        "agency credentials from the metadata service: valid until {} (next refresh in "
        "{} s)",
        std::chrono::duration_cast<std::chrono::seconds>(expires_at_.time_since_epoch()).count(),
        std::chrono::duration_cast<std::chrono::seconds>(refresh_at_ - SysClock::now()).count());
    co_return Result<void>{};
  }

  net::awaitable<Result<void>> get_session_token() {
    HttpRequest req;
    req.method = "PUT";
    req.target = token_path;
    req.headers.emplace_back("X-Metadata-Token-Ttl-Seconds", "21600");
    HttpResult r = co_await metadata_.exchange(req);
    if (r.transport == HttpResult::Transport::ok && (r.status == 404 || r.status == 405)) {
      token_unneeded_ = true;  // an older metadata service: no session tokens
      co_return Result<void>{};
    }
    if (r.transport != HttpResult::Transport::ok || r.status != 200 || r.body.empty()) {
      co_return fail("PUT " + std::string(token_path) + " on " + metadata_.endpoint().text + ": " +
                     describe(r));
    }
    session_token_ = Secret(std::move(r.body));
    co_return Result<void>{};
  }

  net::awaitable<HttpResult> get_securitykey() {
    HttpRequest req;
    req.method = "GET";
    req.target = securitykey_path;
    if (!session_token_.empty())
      req.headers.emplace_back("X-Metadata-Token", std::string(session_token_.reveal()));
    HttpResult r = co_await metadata_.exchange(req);
    for (auto& [name, value] : req.headers) OPENSSL_cleanse(value.data(), value.size());
    if (r.transport == HttpResult::Transport::ok && r.status == 401) session_token_ = Secret();
    co_return r;
  }

  HttpClient metadata_;
  std::string project_id_, host_header_;
  SharedRefresh refresh_;
  AkSkKeys keys_;
  SysClock::time_point expires_at_{}, refresh_at_{};
  SysClock::duration margin_{};  // see usable()
  std::optional<SysClock::time_point> failing_since_;
  Secret session_token_;
  bool token_unneeded_ = false;
  std::uint64_t generation_ = 0;
};

}  // namespace

std::unique_ptr<Credentials> make_metadata_credentials(net::any_io_executor executor,
                                                       const Config& config,
                                                       const std::string& host_header) {
  return std::make_unique<MetadataCredentials>(executor, config, host_header);
}

}  // namespace kpsd
