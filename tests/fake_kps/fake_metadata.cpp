#include "fake_metadata.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <cstdio>
#include <ctime>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

namespace kpsd::fake {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = net::ip::tcp;
using Clock = std::chrono::system_clock;

namespace {

// "2026-11-30T10:15:00.123000Z": the IAM form the SDKs parse (microseconds, UTC).
std::string iso_utc(Clock::time_point t) {
  auto secs = std::chrono::time_point_cast<std::chrono::seconds>(t);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t - secs).count();
  std::time_t tt = Clock::to_time_t(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[16];
  std::snprintf(frac, sizeof(frac), ".%06lldZ", static_cast<long long>(micros));
  return std::string(buf) + frac;
}

}  // namespace

struct FakeMetadata::Impl {
  explicit Impl(std::chrono::milliseconds l) : lifetime(l), acceptor(io) {
    tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    acceptor.open(ep.protocol());
    acceptor.bind(ep);
    acceptor.listen();
    port = acceptor.local_endpoint().port();
  }

  using Response = http::response<http::string_body>;

  Response answer(unsigned status, std::string body, unsigned version) {
    Response res{static_cast<http::status>(status), version};
    res.set(http::field::server, "fake-metadata");
    res.set(http::field::content_type, body.starts_with("{") ? "application/json" : "text/plain");
    res.body() = std::move(body);
    res.prepare_payload();
    return res;
  }

  // The current key pair, minted anew when less than half its life is left.
  json::object credential() {
    auto now = Clock::now();
    if (access.empty() || expires_at - now < lifetime / 2) {
      ++minted;
      access = "HSTAGENCY" + std::to_string(minted);
      secret = "agency-secret-" + std::to_string(minted) + "-7d1f";
      security_token = "AGENCY-STS-" + std::to_string(minted) + "-" + std::string(2000, 'x');
      expires_at = now + lifetime;
      if (kps) kps->accept_aksk(access, secret, security_token, expires_at);
    }
    return {{"access", access},
            {"secret", secret},
            {"securitytoken", security_token},
            {"expires_at", iso_utc(expires_at)}};
  }

  Response handle(const http::request<http::string_body>& req) {
    unsigned v = req.version();
    std::lock_guard lock(mutex);
    if (outage) {
      ++outage_refusals;
      return answer(503, "metadata service unavailable", v);
    }
    std::string target(req.target());
    if (req.method() == http::verb::put && target == "/meta-data/latest/api/token") {
      if (req["X-Metadata-Token-Ttl-Seconds"].empty())
        violations.push_back("token PUT without X-Metadata-Token-Ttl-Seconds");
      std::string token = "session-" + std::to_string(++tokens_issued);
      tokens.insert(token);
      return answer(200, token, v);
    }
    if (req.method() == http::verb::get && target == "/openstack/latest/securitykey") {
      if (!tokens.contains(std::string(req["X-Metadata-Token"]))) {
        ++refused;
        return answer(401, "Unauthorized: a valid X-Metadata-Token is required", v);
      }
      ++reads;
      return answer(200, json::serialize(json::object{{"credential", credential()}}), v);
    }
    violations.push_back("unexpected " + std::string(req.method_string()) + " " + target);
    return answer(404, "not found", v);
  }

  net::awaitable<void> session(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> req;
      auto [ec, n] =
          co_await http::async_read(stream, buffer, req, net::as_tuple(net::use_awaitable));
      if (ec) co_return;
      Response res = handle(req);
      res.keep_alive(req.keep_alive());
      auto [wec, wn] = co_await http::async_write(stream, res, net::as_tuple(net::use_awaitable));
      if (wec || !req.keep_alive()) co_return;
    }
  }

  net::awaitable<void> accept_loop() {
    for (;;) {
      auto [ec, socket] = co_await acceptor.async_accept(net::as_tuple(net::use_awaitable));
      if (ec) co_return;
      net::co_spawn(io, session(std::move(socket)), net::detached);
    }
  }

  FakeKps* kps = nullptr;
  std::chrono::milliseconds lifetime;
  net::io_context io;
  tcp::acceptor acceptor;
  std::uint16_t port = 0;
  std::thread thread;
  mutable std::mutex mutex;
  bool outage = false;
  std::set<std::string> tokens;
  std::string access, secret, security_token;
  Clock::time_point expires_at{};
  std::int64_t tokens_issued = 0, minted = 0, reads = 0, refused = 0, outage_refusals = 0;
  std::vector<std::string> violations;
};

FakeMetadata::FakeMetadata(std::chrono::milliseconds lifetime)
    : impl_(std::make_unique<Impl>(lifetime)) {
  net::co_spawn(impl_->io, impl_->accept_loop(), net::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

FakeMetadata::~FakeMetadata() {
  impl_->io.stop();
  impl_->thread.join();
}

std::uint16_t FakeMetadata::port() const { return impl_->port; }
std::string FakeMetadata::url() const { return "http://127.0.0.1:" + std::to_string(port()); }

void FakeMetadata::pair_with(FakeKps& kps) {
  std::lock_guard lock(impl_->mutex);
  impl_->kps = &kps;
}

void FakeMetadata::set_outage(bool on) {
  std::lock_guard lock(impl_->mutex);
  impl_->outage = on;
}

std::int64_t FakeMetadata::session_tokens_issued() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->tokens_issued;
}
std::int64_t FakeMetadata::key_pairs_minted() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->minted;
}
std::int64_t FakeMetadata::securitykey_reads() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->reads;
}
std::int64_t FakeMetadata::refused_reads() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->refused;
}
std::int64_t FakeMetadata::outage_refusals() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->outage_refusals;
}
std::string FakeMetadata::last_security_token() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->security_token;
}
std::vector<std::string> FakeMetadata::violations() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->violations;
}

}  // namespace kpsd::fake
