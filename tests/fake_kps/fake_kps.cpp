#include "fake_kps.hpp"

#include "auth/aksk_signer.hpp"
#include "core/url.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/json.hpp>

#include <charconv>
#include <ctime>
#include <mutex>
#include <set>
#include <thread>
#include <zlib.h>

namespace kpsd::fake {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;

namespace {
constexpr auto use_tuple = net::as_tuple(net::use_awaitable);

std::string default_code(int status) {
  switch (status) {
    case 400:
      return "KPS.0002";
    case 401:
      return "APIGW.0301";
    case 403:
      return "KPS.9003";
    case 404:
      return "APIGW.0101";
    case 429:
      return "APIGW.0308";
    default:
      return status >= 500 ? "KPS.0003" : "KPS.0002";
  }
}
// `text` in the gzip format (RFC 1952), as a gateway that compresses answers sends it.
std::string gzip(const std::string& text) {
  z_stream z{};
  if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw std::runtime_error("deflateInit2 failed");
  std::string out(deflateBound(&z, text.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  if (rc != Z_STREAM_END) throw std::runtime_error("deflate did not finish");
  return out;
}

}  // namespace

// Coroutines hold a plain `this`: FakeKps joins the thread before Impl goes, and Impl's
// io_context destroys any suspended frame when it goes.
struct FakeKps::Impl {
  explicit Impl(Options o)
      : options(std::move(o)), acceptor(io), tls(net::ssl::context::tls_server) {
    if (!options.tls_cert_file.empty()) {
      tls.use_certificate_chain_file(options.tls_cert_file);
      tls.use_private_key_file(options.tls_key_file, net::ssl::context::pem);
      use_tls = true;
    }
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    acceptor.open(ep.protocol());
    acceptor.set_option(net::socket_base::reuse_address(true));
    acceptor.bind(ep);
    acceptor.listen();
    port = acceptor.local_endpoint().port();
    seed_failed_tasks();
  }

  struct Task {
    std::string server_id;
    std::chrono::steady_clock::time_point created;
    bool fails = false;
    std::int64_t created_ms = 0;  // Unix milliseconds, for task_time in the lists
  };
  struct FailedTask {
    std::string task_id, server_id, error_code, error_msg;
    std::int64_t task_time_ms = 0;
  };
  // The reason kpsd's own failed tasks carry in failed-tasks.
  static constexpr const char* task_error_code = "KPS.0003";
  static constexpr const char* task_error_msg = "fake: cannot reach the server over SSH";
  static constexpr const char* keypair_name = "kp-demo";
  static std::string server_name(const std::string& server_id) { return "ecs-" + server_id; }

  static std::int64_t unix_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  // Other servers' failures, left on the project before the fake started (the list keeps
  // every failure until deleted): a minute apart, the last one a minute before the start.
  void seed_failed_tasks() {
    const std::int64_t start_ms = unix_ms();
    const int n = options.seeded_failed_tasks;
    for (int i = 1; i <= n; ++i) {
      std::string k = std::to_string(i);
      failed.push_back({"seeded-" + k, "seeded-server-" + k, "KPS.6004", "no key pair found",
                        start_ms - std::int64_t{n + 1 - i} * 60000});
    }
  }

  // Ends the tasks whose time has passed, polled or not, as KPS ends them by itself: the
  // failures join the failed list, each once. Every task runs task_duration, so tasks end in
  // creation order and a cursor into task_order is enough. The caller holds mutex.
  void settle_tasks() {
    const auto now = std::chrono::steady_clock::now();
    for (; ended < task_order.size(); ++ended) {
      const std::string& id = task_order[ended];
      const Task& t = tasks.at(id);
      if (now - t.created < options.task_duration) break;
      if (t.fails)
        failed.push_back({id, t.server_id, task_error_code, task_error_msg, t.created_ms});
    }
  }

  // limit and offset of a list request, or nullopt for what KPS refuses: not decimal, limit
  // outside 1..1000, offset below 0. A missing limit is 1000, the vendor's default.
  struct Page {
    std::int64_t limit = 1000, offset = 0;
  };
  static std::optional<Page> parse_page(std::string_view rest) {
    Page page;
    auto q = rest.find('?');
    std::string_view query = q == std::string_view::npos ? std::string_view{} : rest.substr(q + 1);
    while (!query.empty()) {
      auto amp = query.find('&');
      std::string_view pair = query.substr(0, amp);
      query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
      auto eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      std::string_view key = pair.substr(0, eq), value = pair.substr(eq + 1);
      std::int64_t* field = key == "limit" ? &page.limit : key == "offset" ? &page.offset : nullptr;
      if (field == nullptr) continue;
      const char* end = value.data() + value.size();
      auto [stop, ec] = std::from_chars(value.data(), end, *field);
      if (ec != std::errc{} || stop != end) return std::nullopt;
    }
    if (page.limit < 1 || page.limit > 1000 || page.offset < 0) return std::nullopt;
    return page;
  }

  // GET <name> or GET <name>?query
  static bool is_list(std::string_view rest, std::string_view name) {
    return rest.starts_with(name) && (rest.size() == name.size() || rest[name.size()] == '?');
  }

  using Response = http::response<http::string_body>;
  // A final answer, and the interim one (100, 103) to send before it.
  struct Answer {
    Answer(Response r, unsigned interim = 0) : res(std::move(r)), interim_status(interim) {}
    Response res;
    unsigned interim_status = 0;
  };

  Response reply(unsigned status, json::object body, unsigned version, bool keep_alive) {
    Response res{static_cast<http::status>(status), version};
    res.set(http::field::content_type, "application/json");
    res.set("X-Request-Id", "fake-req-" + std::to_string(++request_counter));
    res.keep_alive(keep_alive);
    res.body() = json::serialize(body);
    res.prepare_payload();
    return res;
  }

  Response error(unsigned status, std::string code, std::string msg, unsigned version, bool ka) {
    return reply(status,
                 json::object{{"error_code", std::move(code)}, {"error_msg", std::move(msg)}},
                 version, ka);
  }

  void violation(std::string what) {
    std::lock_guard lock(mutex);
    violations.push_back(std::move(what));
  }

  // GET failed-tasks: every failure so far, seeded ones first, paged in the chosen order.
  Response list_failed(const std::string& rest, unsigned v, bool ka) {
    auto page = parse_page(rest);
    if (!page) {
      violation("bad limit or offset: GET " + rest);
      return error(400, "KPS.0002", "parameter error", v, ka);
    }
    json::array list;
    std::size_t total = 0;
    {
      std::lock_guard lock(mutex);
      ++failed_task_lookups;
      settle_tasks();
      total = failed.size();
      const bool newest = options.failed_tasks_order == FailedTasksOrder::newest_first;
      for (std::int64_t i = page->offset;
           i < static_cast<std::int64_t>(total) && i - page->offset < page->limit; ++i) {
        auto k = static_cast<std::size_t>(i);
        const FailedTask& f = failed[newest ? total - 1 - k : k];
        list.push_back(json::object{{"task_id", f.task_id},
                                    {"operate_type", "UNBIND"},
                                    {"task_time", std::to_string(f.task_time_ms)},
                                    {"task_error_code", f.error_code},
                                    {"task_error_msg", f.error_msg},
                                    {"server_id", f.server_id},
                                    {"server_name", server_name(f.server_id)},
                                    {"keypair_name", keypair_name}});
      }
    }
    if (!options.failed_tasks_total.empty()) {
      // A number kpsd must read without trusting it (1.5, 1e30 ...): the body by hand.
      Response res = reply(200, {}, v, ka);
      res.body() =
          "{\"total\":" + options.failed_tasks_total + ",\"tasks\":" + json::serialize(list) + "}";
      res.prepare_payload();
      return res;
    }
    return reply(200, json::object{{"total", total}, {"tasks", std::move(list)}}, v, ka);
  }

  // GET running-tasks: tasks not ended, oldest first. Only the oldest running_tasks_cap are
  // ever listed or counted, as the vendor's total stops at 1,000.
  Response list_running(const std::string& rest, unsigned v, bool ka) {
    auto page = parse_page(rest);
    if (!page) {
      violation("bad limit or offset: GET " + rest);
      return error(400, "KPS.0002", "parameter error", v, ka);
    }
    json::array list;
    std::int64_t total = 0;
    {
      std::lock_guard lock(mutex);
      ++running_task_lookups;
      settle_tasks();
      total = std::min(static_cast<std::int64_t>(task_order.size() - ended),
                       std::max<std::int64_t>(0, options.running_tasks_cap));
      for (std::int64_t i = page->offset; i < total && i - page->offset < page->limit; ++i) {
        const std::string& id = task_order[ended + static_cast<std::size_t>(i)];
        const Task& t = tasks.at(id);
        list.push_back(json::object{{"task_id", id},
                                    {"operate_type", "UNBIND"},
                                    {"task_time", std::to_string(t.created_ms)},
                                    {"server_id", t.server_id},
                                    {"server_name", server_name(t.server_id)},
                                    {"keypair_name", keypair_name}});
      }
    }
    return reply(200, json::object{{"total", total}, {"tasks", std::move(list)}}, v, ka);
  }

  // Empty when the request is authenticated; "expired" for an issued token past its lifetime;
  // anything else is a protocol violation (recorded).
  std::string check_auth(const http::request<http::string_body>& req, bool scoped = true) {
    std::string target(req.target());
    if (!options.ak.empty()) {
      std::string why = check_signature(req, scoped);
      if (!why.empty() && why != "expired")
        violation("bad AK/SK signature on " + target + ": " + why);
      return why;
    }
    std::string token(req["X-Auth-Token"]);
    {
      std::lock_guard lock(mutex);
      largest_token = std::max(largest_token, token.size());
    }
    if (options.iam) {
      std::lock_guard lock(mutex);
      auto it = issued.find(token);
      if (it == issued.end()) {
        violations.push_back("unknown IAM token on " + target);
        return "unknown";
      }
      if (std::chrono::steady_clock::now() >= it->second) {
        ++expired_rejections;
        return "expired";
      }
      return {};
    }
    std::lock_guard lock(mutex);
    if (token == accepted_token) return {};
    if (retired_tokens.contains(token)) {
      ++expired_rejections;
      return "expired";
    }
    violations.push_back("wrong or missing X-Auth-Token on " + target);
    return "wrong";
  }

  // Recomputes the SDK-HMAC-SHA256 signature from what arrived.
  // `scoped`: a KPS call, which carries and signs X-Project-Id (an IAM lookup does not).
  std::string check_signature(const http::request<http::string_body>& req, bool scoped) {
    std::string auth(req[http::field::authorization]);
    const std::string scheme = "SDK-HMAC-SHA256 ";
    if (!auth.starts_with(scheme)) return "no SDK-HMAC-SHA256 Authorization header";
    std::map<std::string, std::string> parts;
    std::string rest = auth.substr(scheme.size());
    for (std::size_t pos = 0; pos < rest.size();) {
      auto comma = rest.find(", ", pos);
      std::string item =
          rest.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      pos = comma == std::string::npos ? rest.size() : comma + 2;
      auto eq = item.find('=');
      if (eq != std::string::npos) parts[item.substr(0, eq)] = item.substr(eq + 1);
    }
    std::string ak = parts["Access"], sk, security_token;
    {
      std::lock_guard lock(mutex);
      auto it = key_pairs.find(ak);
      if (it == key_pairs.end()) return "unknown access key";
      if (std::chrono::system_clock::now() >= it->second.valid_until) {
        ++expired_rejections;
        return "expired";
      }
      sk = it->second.sk;
      security_token = it->second.security_token;
    }
    if (req["X-Security-Token"] != security_token)
      return security_token.empty() ? "X-Security-Token sent with a permanent key pair"
                                    : "X-Security-Token missing or wrong";
    if (scoped && req["X-Project-Id"] != options.project_id) return "X-Project-Id missing or wrong";
    std::string date(req["X-Sdk-Date"]);
    std::tm tm{};
    if (date.size() != 16 || !strptime(date.c_str(), "%Y%m%dT%H%M%SZ", &tm))
      return "bad X-Sdk-Date";
    auto skew =
        std::chrono::system_clock::now() - std::chrono::system_clock::from_time_t(timegm(&tm));
    if (skew > std::chrono::minutes(15) || skew < -std::chrono::minutes(15))
      return "clock skew over 15 minutes";
    SigningRequest s;
    s.method = std::string(req.method_string());
    std::string target(req.target());
    auto q = target.find('?');
    s.path = target.substr(0, q);
    s.query = q == std::string::npos ? "" : target.substr(q + 1);
    std::set<std::string> names;
    std::string signed_names = parts["SignedHeaders"];
    for (std::size_t pos = 0; pos <= signed_names.size();) {
      auto semi = signed_names.find(';', pos);
      std::string name =
          signed_names.substr(pos, semi == std::string::npos ? std::string::npos : semi - pos);
      pos = semi == std::string::npos ? signed_names.size() + 1 : semi + 1;
      if (name.empty()) continue;
      names.insert(name);
      s.headers.emplace_back(name, std::string(req[name]));
    }
    for (const char* required : {"host", "x-sdk-date", "x-project-id"}) {
      if (!scoped && std::string_view(required) == "x-project-id") continue;
      if (!names.contains(required)) return std::string(required) + " is not signed";
    }
    if (!security_token.empty() && !names.contains("x-security-token"))
      return "x-security-token is not signed";
    if (req.method() == http::verb::post && !names.contains("content-type"))
      return "content-type is not signed";
    s.body = req.body();
    std::string expected = authorization_header(s, ak, Secret(sk));
    {
      std::lock_guard lock(mutex);
      ++signatures;
    }
    if (expected != auth) return "signature does not match";
    return {};
  }

  // IAM's GET /v3/projects?name=N (Keystone): the projects of options.projects named N, for a
  // request authenticated as KPS calls are (an AK/SK signature here carries no X-Project-Id).
  Response list_projects(const http::request<http::string_body>& req) {
    unsigned v = req.version();
    bool ka = req.keep_alive();
    std::string target(req.target());
    {
      std::lock_guard lock(mutex);
      ++project_lookups;
    }
    if (!req["X-Project-Id"].empty()) violation("X-Project-Id on an IAM project lookup");
    if (auto refusal = check_auth(req, false); !refusal.empty())
      return error(401, "APIGW.0301", "Incorrect IAM authentication information", v, ka);
    std::string name;
    if (auto q = target.find("?name="); q != std::string::npos)
      name = percent_decode(target.substr(q + 6));
    json::array list;
    for (const auto& [id, project_name] : options.projects) {
      if (name.empty() || project_name == name)
        list.push_back(json::object{{"id", id}, {"name", project_name}, {"enabled", true}});
    }
    return reply(200, json::object{{"projects", std::move(list)}}, v, ka);
  }

  Response issue_token(const http::request<http::string_body>& req) {
    unsigned v = req.version();
    bool ka = req.keep_alive();
    boost::system::error_code ec;
    json::value body = json::parse(req.body(), ec);
    auto at = [&](std::initializer_list<std::string_view> path) -> std::string {
      const json::value* cur = &body;
      for (auto key : path) {
        if (!cur->is_object() || !cur->as_object().contains(key)) return {};
        cur = &cur->as_object().at(key);
      }
      return cur->is_string() ? std::string(cur->as_string()) : std::string{};
    };
    const IamOptions& iam = *options.iam;
    bool methods_ok = false;
    if (!ec && body.is_object()) {
      if (auto* m = body.as_object().if_contains("auth")) {
        if (m->is_object() && m->as_object().contains("identity")) {
          const json::value& id = m->as_object().at("identity");
          methods_ok = id.is_object() && id.as_object().contains("methods") &&
                       json::serialize(id.as_object().at("methods")) == "[\"password\"]";
        }
      }
    }
    if (ec || !methods_ok || at({"auth", "identity", "password", "user", "name"}) != iam.user ||
        at({"auth", "identity", "password", "user", "password"}) != iam.password ||
        at({"auth", "identity", "password", "user", "domain", "name"}) != iam.domain ||
        at({"auth", "scope", "project", "name"}) != iam.project) {
      violation("IAM token request with a wrong body or password");
      return error(401, "IAM.0001", "The username or password is wrong", v, ka);
    }
    std::string token;
    {
      std::lock_guard lock(mutex);
      token = "fake-iam-token-" + std::to_string(++tokens_issued) + "-";
      // A PKI token's size: base64-like filler after a unique prefix.
      while (token.size() < iam.token_bytes) token += static_cast<char>('A' + token.size() % 26);
      issued[token] = std::chrono::steady_clock::now() + iam.token_lifetime;
    }
    std::time_t expires = std::time(nullptr) + 24 * 3600;
    std::tm tm{};
    gmtime_r(&expires, &tm);
    char buf[40];
    std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S.000000Z", &tm);
    Response res = reply(
        201,
        json::object{
            {"token", json::object{{"expires_at", buf}, {"methods", json::array{"password"}}}}},
        v, ka);
    res.set("X-Subject-Token", token);
    return res;
  }

  static std::string refuse(std::string& why, std::string reason) {
    why = std::move(reason);
    return {};
  }

  // Checks the disassociate body; returns the server id or sets `why`.
  static std::string check_body(const std::string& body, std::string& why) {
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec || !v.is_object()) return refuse(why, "body is not a JSON object");
    const json::object& root = v.as_object();
    if (root.size() != 1 || !root.contains("server") || !root.at("server").is_object()) {
      return refuse(why, "body must be exactly {\"server\": {...}}");
    }
    const json::object& server = root.at("server").as_object();
    for (const auto& kv : server) {
      if (kv.key() != "id" && kv.key() != "auth" && kv.key() != "port") {
        return refuse(why, "unknown field server." + std::string(kv.key()));
      }
    }
    if (!server.contains("id") || !server.at("id").is_string() ||
        server.at("id").as_string().empty()) {
      return refuse(why, "server.id missing or not a non-empty string");
    }
    if (server.contains("port")) {
      const json::value& p = server.at("port");
      if (!p.is_int64() || p.as_int64() < 1 || p.as_int64() > 65535) {
        return refuse(why, "server.port is not a port number");
      }
    }
    if (server.contains("auth")) {
      const json::value& a = server.at("auth");
      if (!a.is_object() || a.as_object().size() != 2)
        return refuse(why, "server.auth must be {type, key}");
      const json::object& ao = a.as_object();
      const json::value* type = ao.if_contains("type");
      const json::value* key = ao.if_contains("key");
      if (!type || !type->is_string() ||
          (type->as_string() != "password" && type->as_string() != "keypair")) {
        return refuse(why, "server.auth.type must be password or keypair");
      }
      if (!key || !key->is_string() || key->as_string().empty()) {
        return refuse(why, "server.auth.key must be a non-empty string");
      }
    }
    return std::string(server.at("id").as_string());
  }

  // nullopt: drop the connection without an answer.
  net::awaitable<std::optional<Answer>> handle(const http::request<http::string_body>& req) {
    unsigned v = req.version();
    bool ka = req.keep_alive();
    std::string target(req.target());
    {
      std::lock_guard lock(mutex);
      ++requests;
      if (req.method() == http::verb::post && target.ends_with("/keypairs/disassociate"))
        ++disassociates_received;
    }
    if (req.method() == http::verb::get && target == "/_fake/stats") {
      Response res{http::status::ok, v};
      res.set(http::field::content_type, "application/json");
      res.keep_alive(ka);
      res.body() = stats_json();
      res.prepare_payload();
      co_return res;
    }
    if (options.iam && req.method() == http::verb::post && target == "/v3/auth/tokens") {
      co_return issue_token(req);
    }
    if (v != 11) violation("HTTP version is not 1.1");
    // kpsd reads no content coding, and says so (issue 30).
    if (req[http::field::accept_encoding] != "identity")
      violation("Accept-Encoding is not identity: " +
                std::string(req[http::field::accept_encoding]));
    if (req[http::field::host].empty()) violation("no Host header");
    if (req.method() == http::verb::get && target.starts_with("/v3/projects")) {
      co_return list_projects(req);
    }
    std::string prefix = "/v3/" + options.project_id + "/";
    if (!target.starts_with(prefix)) {
      violation("unknown path " + target);
      co_return error(404, "APIGW.0101", "The API does not exist or has not been published", v, ka);
    }
    if (options.window_quota > 0 && !admitted_by_quota()) {
      // As API Gateway words it (docs/vendor-api.md), with this quota's numbers.
      co_return error(429, "APIGW.0308",
                      "The throttling threshold has been reached: policy user over ratelimit,"
                      "limit:" +
                          std::to_string(options.window_quota) +
                          ",time:" + std::to_string(options.quota_window.count()) + " millisecond",
                      v, ka);
    }
    if (auto refusal = check_auth(req); !refusal.empty()) {
      {
        std::lock_guard lock(mutex);
        ++auth_refusals;
      }
      co_return error(401, refusal == "expired" ? "APIGW.0307" : "APIGW.0301",
                      refusal == "expired" ? "The token must be updated"
                                           : "Incorrect IAM authentication information",
                      v, ka);
    }
    std::string rest = target.substr(prefix.size());

    if (req.method() == http::verb::post && rest == "keypairs/disassociate") {
      if (!req[http::field::content_type].starts_with("application/json")) {
        violation("disassociate without Content-Type: application/json");
      }
      std::string why;
      std::string server_id = check_body(req.body(), why);
      if (server_id.empty()) {
        violation("bad disassociate body: " + why);
        co_return error(400, "KPS.0002", "parameter error: " + why, v, ka);
      }
      Behavior b;
      std::int64_t n = 0;
      {
        std::lock_guard lock(mutex);
        n = ++calls[server_id];
        ++disassociate_calls;
        if (auto it = behaviors.find(server_id); it != behaviors.end()) b = it->second;
      }
      auto delay = options.call_delay;
      if (b.delay.count() > 0 && (b.delay_times == 0 || n <= b.delay_times)) delay += b.delay;
      if (delay.count() > 0) {
        net::steady_timer t(io, delay);
        co_await t.async_wait(use_tuple);
      }
      std::int64_t k = n;  // call number within the current fault phase
      if (k <= b.drop_times) co_return std::nullopt;
      k -= b.drop_times;
      if (b.error_status != 0 && (b.error_times < 0 || k <= b.error_times)) {
        std::string code = b.error_code.empty() ? default_code(b.error_status) : b.error_code;
        Response res =
            error(static_cast<unsigned>(b.error_status), code,
                  "fake error " + std::to_string(b.error_status) + " for call " + std::to_string(n),
                  v, ka);
        if (!b.retry_after.empty()) res.set(http::field::retry_after, b.retry_after);
        co_return res;
      }
      k -= std::max(0, b.error_times);
      if (k <= b.garbage_times) {
        Response res = reply(202, {}, v, ka);
        res.body() = "{\"task_id\": \"tru";  // cut short: not JSON
        res.prepare_payload();
        co_return res;
      }
      k -= b.garbage_times;
      if (k <= b.accepted_failed_times) {
        co_return reply(202,
                        json::object{{"server_id", server_id},
                                     {"status", "FAILED"},
                                     {"error_code", "KPS.0003"},
                                     {"error_msg", "fake delivery failure"}},
                        v, ka);
      }
      std::string task_id;
      std::int64_t nth_task = 0;
      {
        std::lock_guard lock(mutex);
        task_id = "fake-task-" + std::to_string(++task_counter);
        nth_task = ++accepted[server_id];
        bool fails = b.task_failed_times < 0 || nth_task <= b.task_failed_times;
        tasks[task_id] = Task{server_id, std::chrono::steady_clock::now(), fails, unix_ms()};
        task_order.push_back(task_id);
      }
      if (b.answer_delay.count() > 0 && (b.answer_delay_times == 0 || n <= b.answer_delay_times)) {
        net::steady_timer t(io, b.answer_delay);
        co_await t.async_wait(use_tuple);
      }
      Response res =
          reply(b.accept_status ? static_cast<unsigned>(b.accept_status) : 202,
                json::object{{"server_id", server_id}, {"task_id", task_id}, {"status", "SUCCESS"}},
                v, ka);
      if (nth_task <= b.gzip_times) {
        res.body() = gzip(res.body());
        res.set(http::field::content_encoding, "gzip");
        res.prepare_payload();
      }
      if (b.set_cookie_bytes > 0) add_cookie(res, static_cast<std::size_t>(b.set_cookie_bytes));
      co_return Answer(std::move(res), static_cast<unsigned>(b.interim_status));
    }

    if (req.method() == http::verb::get && is_list(rest, "failed-tasks")) {
      co_return list_failed(rest, v, ka);
    }
    if (req.method() == http::verb::get && is_list(rest, "running-tasks")) {
      co_return list_running(rest, v, ka);
    }

    if (req.method() == http::verb::get && rest.starts_with("tasks/")) {
      std::string task_id = rest.substr(6);
      Task task;
      int poll_refusal = 0;
      {
        std::lock_guard lock(mutex);
        ++task_polls;
        auto it = tasks.find(task_id);
        if (it == tasks.end()) {
          violations.push_back("poll of unknown task " + task_id);  // violation() would relock
          co_return error(400, "KPS.0001", "taskId is illegal", v, ka);
        }
        task = it->second;
        std::int64_t n = ++polls_by_server[task.server_id];
        if (auto b = behaviors.find(task.server_id); b != behaviors.end()) {
          const Behavior& bh = b->second;
          if (bh.task_poll_status != 0 && (bh.task_poll_times < 0 || n <= bh.task_poll_times)) {
            poll_refusal = bh.task_poll_status;
          }
        }
      }
      if (poll_refusal != 0) {
        co_return error(
            static_cast<unsigned>(poll_refusal), poll_refusal == 403 ? "KPS.9003" : "KPS.0001",
            poll_refusal == 403 ? "no permission to read tasks" : "task not found", v, ka);
      }
      auto age = std::chrono::steady_clock::now() - task.created;
      std::string status = age >= options.task_duration
                               ? (task.fails ? "FAILED_UNBIND" : "SUCCESS_UNBIND")
                           : age >= options.task_duration / 3 ? "RUNNING_UNBIND"
                                                              : "READY_UNBIND";
      co_return reply(
          200,
          json::object{
              {"server_id", task.server_id}, {"task_id", task_id}, {"task_status", status}},
          v, ka);
    }
    violation("unexpected " + std::string(req.method_string()) + " " + target);
    co_return error(404, "APIGW.0101", "The API does not exist or has not been published", v, ka);
  }

  static void add_cookie(Response& res, std::size_t bytes) {
    std::string cookie = "LB_SESSION=";
    while (cookie.size() < bytes) cookie += static_cast<char>('a' + cookie.size() % 26);
    res.insert(http::field::set_cookie, cookie + "; Path=/; HttpOnly");
  }

  // An interim answer as servers send it: 100 Continue bare, 103 Early Hints with a Link.
  static std::string interim_text(unsigned status) {
    if (status == 103) return "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
    if (status == 102) return "HTTP/1.1 102 Processing\r\n\r\n";
    return "HTTP/1.1 100 Continue\r\n\r\n";
  }

  template <class Stream>
  net::awaitable<void> serve(Stream& stream, beast::flat_buffer& buffer) {
    for (int answers = 1;; ++answers) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(4 * 1024 * 1024);
      // IAM tokens and gateways' headers are large: accept what kpsd accepts (64 KiB).
      parser.header_limit(64 * 1024);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
      auto [ec, n] = co_await http::async_read(stream, buffer, parser, use_tuple);
      if (ec) break;
      auto req = parser.release();
      std::optional<Answer> answer = co_await handle(req);
      if (!answer) break;  // a dropped connection: no answer at all
      Response& res = answer->res;
      if (options.set_cookie_bytes > 0) add_cookie(res, options.set_cookie_bytes);
      bool last = options.close_after > 0 && answers % options.close_after == 0;
      if (last && options.close_announced) res.keep_alive(false);
      beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
      unsigned interim = answer->interim_status ? answer->interim_status : options.interim_status;
      if (interim != 0) {
        std::string text = interim_text(interim);
        auto [iec, in] = co_await net::async_write(stream, net::buffer(text), use_tuple);
        if (iec) break;
      }
      auto [wec, wn] = co_await http::async_write(stream, res, use_tuple);
      if (wec || !res.keep_alive()) break;
      if (last) {
        // Closed silently, as a server's idle timer fires: it loses the race with the
        // client's next request, which arrives and is never read (the client sees EOF or a
        // reset before any answer).
        auto [rec, rn] = co_await stream.async_read_some(buffer.prepare(4), use_tuple);
        buffer.commit(rn);
        std::lock_guard lock(mutex);
        if (!rec) ++unread_requests;
        // Its first bytes tell a disassociate (the only POST kpsd sends to KPS) from a GET.
        auto first = static_cast<const char*>(buffer.data().data());
        if (!rec && std::string_view(first, buffer.size()).starts_with("P"))
          ++disassociates_received;
        break;
      }
    }
  }

  net::awaitable<void> session(tcp::socket socket) {
    beast::flat_buffer buffer;
    if (!use_tls) {
      beast::tcp_stream stream(std::move(socket));
      co_await serve(stream, buffer);
      boost::system::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), tls);
    beast::get_lowest_layer(stream).expires_after(std::chrono::seconds(30));
    auto [hec] = co_await stream.async_handshake(net::ssl::stream_base::server, use_tuple);
    if (hec) {
      std::lock_guard lock(mutex);
      ++tls_handshake_failures;  // the client refused our certificate: no request arrived
      co_return;
    }
    co_await serve(stream, buffer);
    beast::get_lowest_layer(stream).socket().close();
  }

  net::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) break;
      {
        std::lock_guard lock(mutex);
        ++connections;
      }
      net::co_spawn(io, session(std::move(socket)), net::detached);
    }
  }

  std::string stats_json() {
    std::lock_guard lock(mutex);
    json::object calls_obj;
    for (const auto& [id, n] : calls) calls_obj[id] = n;
    json::array v;
    for (const auto& s : violations) v.push_back(json::string(s));
    return json::serialize(json::object{{"requests", requests},
                                        {"disassociate_calls", disassociate_calls},
                                        {"task_polls", task_polls},
                                        {"failed_task_lookups", failed_task_lookups},
                                        {"running_task_lookups", running_task_lookups},
                                        {"quota_refusals", quota_refusals},
                                        {"calls", std::move(calls_obj)},
                                        {"violations", std::move(v)}});
  }

  bool admitted_by_quota() {
    std::lock_guard lock(mutex);
    auto window = (std::chrono::steady_clock::now() - started) / options.quota_window;
    if (window != quota_window_index) {
      quota_window_index = window;
      quota_used = 0;
    }
    if (quota_used >= options.window_quota) {
      ++quota_refusals;
      return false;
    }
    ++quota_used;
    return true;
  }

  Options options;
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::int64_t quota_window_index = -1, quota_used = 0, quota_refusals = 0;
  net::io_context io;
  tcp::acceptor acceptor;
  net::ssl::context tls;
  bool use_tls = false;
  std::uint16_t port = 0;
  std::thread thread;

  mutable std::mutex mutex;
  std::map<std::string, Behavior> behaviors;
  std::map<std::string, std::int64_t> calls;
  std::map<std::string, Task> tasks;
  std::map<std::string, std::int64_t> accepted;
  std::vector<std::string> task_order;  // task ids, oldest first
  std::size_t ended = 0;                // task_order[0, ended) have ended (settle_tasks)
  std::vector<FailedTask> failed;       // seeded, then ended FAILED_UNBIND: oldest first
  std::int64_t failed_task_lookups = 0, running_task_lookups = 0;
  std::map<std::string, std::chrono::steady_clock::time_point> issued;  // IAM token → dies at
  std::int64_t tokens_issued = 0, expired_rejections = 0, signatures = 0, auth_refusals = 0,
               project_lookups = 0;
  std::int64_t connections = 0;
  std::int64_t unread_requests = 0;  // requests that met a silent close (close_after)
  std::int64_t disassociates_received = 0;
  std::size_t largest_token = 0;
  std::string accepted_token = options.token;  // method token: what is accepted now
  // AK/SK: the key pair accepted now (set_aksk rotates it).
  // AK/SK: the key pairs accepted, by access key, each until its expiry (set_aksk, accept_aksk).
  struct KeyPair {
    std::string sk, security_token;
    std::chrono::system_clock::time_point valid_until;
  };
  std::map<std::string, KeyPair> key_pairs{
      {options.ak,
       {options.sk, options.security_token, std::chrono::system_clock::time_point::max()}}};
  std::set<std::string> retired_tokens;  // ... and what was accepted before
  std::int64_t tls_handshake_failures = 0;
  std::vector<std::string> violations;
  std::int64_t requests = 0, disassociate_calls = 0, task_polls = 0, task_counter = 0;
  std::map<std::string, std::int64_t> polls_by_server;
  std::atomic<std::int64_t> request_counter{0};
};

FakeKps::FakeKps(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {
  net::co_spawn(impl_->io, impl_->accept_loop(), net::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

FakeKps::~FakeKps() {
  impl_->io.stop();
  impl_->thread.join();
}

std::uint16_t FakeKps::port() const { return impl_->port; }

void FakeKps::set_behavior(const std::string& server_id, Behavior behavior) {
  std::lock_guard lock(impl_->mutex);
  impl_->behaviors[server_id] = std::move(behavior);
}

std::int64_t FakeKps::calls_for(const std::string& server_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->calls.find(server_id);
  return it == impl_->calls.end() ? 0 : it->second;
}

std::int64_t FakeKps::accepted_for(const std::string& server_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->accepted.find(server_id);
  return it == impl_->accepted.end() ? 0 : it->second;
}

std::int64_t FakeKps::project_lookups() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->project_lookups;
}

std::int64_t FakeKps::iam_tokens_issued() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->tokens_issued;
}

std::int64_t FakeKps::expired_token_rejections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->expired_rejections;
}

void FakeKps::set_aksk(std::string ak, std::string sk, std::string security_token) {
  std::lock_guard lock(impl_->mutex);
  auto now = std::chrono::system_clock::now();
  for (auto& [old_ak, pair] : impl_->key_pairs) pair.valid_until = std::min(pair.valid_until, now);
  impl_->key_pairs[ak] = {std::move(sk), std::move(security_token),
                          std::chrono::system_clock::time_point::max()};
}

void FakeKps::accept_aksk(std::string ak, std::string sk, std::string security_token,
                          std::chrono::system_clock::time_point valid_until) {
  std::lock_guard lock(impl_->mutex);
  impl_->key_pairs[ak] = {std::move(sk), std::move(security_token), valid_until};
}

void FakeKps::set_token(std::string token) {
  std::lock_guard lock(impl_->mutex);
  impl_->retired_tokens.insert(impl_->accepted_token);
  impl_->accepted_token = std::move(token);
}

std::int64_t FakeKps::auth_refusals() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->auth_refusals;
}

std::size_t FakeKps::largest_auth_token() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->largest_token;
}

std::int64_t FakeKps::disassociates_received() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->disassociates_received;
}

std::int64_t FakeKps::unread_requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->unread_requests;
}

std::string FakeKps::server_of_task(const std::string& task_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->tasks.find(task_id);
  return it == impl_->tasks.end() ? std::string{} : it->second.server_id;
}

std::int64_t FakeKps::connections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->connections;
}

std::int64_t FakeKps::signatures_checked() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->signatures;
}

std::int64_t FakeKps::failed_task_lookups() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->failed_task_lookups;
}

std::int64_t FakeKps::running_task_lookups() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->running_task_lookups;
}

std::int64_t FakeKps::tasks_running() const {
  std::lock_guard lock(impl_->mutex);
  impl_->settle_tasks();
  return static_cast<std::int64_t>(impl_->task_order.size() - impl_->ended);
}

std::map<std::string, std::int64_t> FakeKps::calls() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->calls;
}

std::int64_t FakeKps::disassociate_calls() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->disassociate_calls;
}

std::int64_t FakeKps::task_polls_for(const std::string& server_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->polls_by_server.find(server_id);
  return it == impl_->polls_by_server.end() ? 0 : it->second;
}

std::int64_t FakeKps::task_polls() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->task_polls;
}

std::int64_t FakeKps::requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->requests;
}

std::int64_t FakeKps::quota_refusals() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->quota_refusals;
}

std::vector<std::string> FakeKps::violations() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->violations;
}

std::string FakeKps::stats_json() const { return impl_->stats_json(); }

std::map<std::string, Behavior> parse_behaviors(const std::string& text) {
  std::map<std::string, Behavior> out;
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) throw std::runtime_error("behaviors: not a JSON object");
  for (const auto& [id, spec] : v.as_object()) {
    std::string where = "behaviors: " + std::string(id) + ": ";
    if (!spec.is_object()) throw std::runtime_error(where + "must be an object");
    Behavior b;
    for (const auto& [key, value] : spec.as_object()) {
      if (key == "error_code" || key == "retry_after") {
        if (!value.is_string())
          throw std::runtime_error(where + std::string(key) + " must be a string");
        (key == "error_code" ? b.error_code : b.retry_after) = std::string(value.as_string());
        continue;
      }
      if (!value.is_int64())
        throw std::runtime_error(where + std::string(key) + " must be an integer");
      int n = static_cast<int>(value.as_int64());
      if (key == "accepted_failed_times")
        b.accepted_failed_times = n;
      else if (key == "error_status")
        b.error_status = n;
      else if (key == "error_times")
        b.error_times = n;
      else if (key == "delay_ms")
        b.delay = std::chrono::milliseconds(n);
      else if (key == "delay_times")
        b.delay_times = n;
      else if (key == "answer_delay_ms")
        b.answer_delay = std::chrono::milliseconds(n);
      else if (key == "answer_delay_times")
        b.answer_delay_times = n;
      else if (key == "drop_times")
        b.drop_times = n;
      else if (key == "garbage_times")
        b.garbage_times = n;
      else if (key == "task_poll_status")
        b.task_poll_status = n;
      else if (key == "task_poll_times")
        b.task_poll_times = n;
      else if (key == "task_failed_times") {
        if (n < -1) throw std::runtime_error(where + "task_failed_times must be -1 (all) or more");
        b.task_failed_times = n;
      } else if (key == "set_cookie_bytes")
        b.set_cookie_bytes = n;
      else if (key == "interim_status")
        b.interim_status = n;
      else if (key == "accept_status")
        b.accept_status = n;
      else if (key == "gzip_times")
        b.gzip_times = n;
      else
        throw std::runtime_error(where + "unknown key " + std::string(key));
    }
    out[std::string(id)] = b;
  }
  return out;
}

}  // namespace kpsd::fake
