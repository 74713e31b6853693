// The fake's server: the accept loop, connections (plain or TLS), reading requests, writing
// answers (with interim answers and the closes Options asks for), and the router over the
// routes the other parts serve.
#include "fake_kps_impl.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/ssl.hpp>

namespace kpsd::fake {

FakeKps::Impl::Impl(Options o)
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

FakeKps::Impl::Response FakeKps::Impl::reply(unsigned status, json::object body, unsigned version,
                                             bool keep_alive) {
  Response res{static_cast<http::status>(status), version};
  res.set(http::field::content_type, "application/json");
  res.set("X-Request-Id", "fake-req-" + std::to_string(++request_counter));
  res.keep_alive(keep_alive);
  res.body() = json::serialize(body);
  res.prepare_payload();
  return res;
}

FakeKps::Impl::Response FakeKps::Impl::error(unsigned status, std::string code, std::string msg,
                                             unsigned version, bool ka) {
  return reply(status, json::object{{"error_code", std::move(code)}, {"error_msg", std::move(msg)}},
               version, ka);
}

void FakeKps::Impl::violation(std::string what) {
  std::lock_guard lock(mutex);
  violations.push_back(std::move(what));
}

void FakeKps::Impl::add_cookie(Response& res, std::size_t bytes) {
  std::string cookie = "LB_SESSION=";
  while (cookie.size() < bytes) cookie += static_cast<char>('a' + cookie.size() % 26);
  res.insert(http::field::set_cookie, cookie + "; Path=/; HttpOnly");
}

// An interim answer as servers send it: 100 Continue bare, 103 Early Hints with a Link.
std::string FakeKps::Impl::interim_text(unsigned status) {
  if (status == 103) return "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n";
  if (status == 102) return "HTTP/1.1 102 Processing\r\n\r\n";
  return "HTTP/1.1 100 Continue\r\n\r\n";
}

void FakeKps::Impl::count_request(const Request& req) {
  std::lock_guard lock(mutex);
  ++requests;
  if (req.method() == http::verb::post &&
      std::string(req.target()).ends_with("/keypairs/disassociate"))
    ++disassociates_received;
}

// What every request to IAM's projects and to KPS must carry.
void FakeKps::Impl::check_request_headers(const Request& req) {
  if (req.version() != 11) violation("HTTP version is not 1.1");
  // kpsd reads no content coding, and says so (issue 30).
  if (req[http::field::accept_encoding] != "identity")
    violation("Accept-Encoding is not identity: " + std::string(req[http::field::accept_encoding]));
  if (req[http::field::host].empty()) violation("no Host header");
}

// GET /_fake/stats
FakeKps::Impl::Response FakeKps::Impl::stats_answer(const Request& req) {
  Response res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/json");
  res.keep_alive(req.keep_alive());
  res.body() = stats_json();
  res.prepare_payload();
  return res;
}

// nullopt: drop the connection without an answer.
net::awaitable<std::optional<FakeKps::Impl::Answer>> FakeKps::Impl::handle(const Request& req) {
  unsigned v = req.version();
  bool ka = req.keep_alive();
  std::string target(req.target());
  const bool get = req.method() == http::verb::get, post = req.method() == http::verb::post;
  count_request(req);
  if (get && target == "/_fake/stats") co_return stats_answer(req);
  if (options.iam && post && target == "/v3/auth/tokens") co_return issue_token(req);
  check_request_headers(req);
  if (get && target.starts_with("/v3/projects")) co_return list_projects(req);
  std::string prefix = "/v3/" + options.project_id + "/";
  if (!target.starts_with(prefix)) {
    violation("unknown path " + target);
    co_return error(404, "APIGW.0101", "The API does not exist or has not been published", v, ka);
  }
  if (auto refusal = refuse_over_quota(v, ka)) co_return std::move(*refusal);
  if (auto refusal = refuse_unauthenticated(req)) co_return std::move(*refusal);
  std::string rest = target.substr(prefix.size());
  if (post && rest == "keypairs/disassociate") co_return co_await disassociate(req);
  if (get && is_list(rest, "failed-tasks")) co_return list_failed(rest, v, ka);
  if (get && is_list(rest, "running-tasks")) co_return list_running(rest, v, ka);
  if (get && rest.starts_with("tasks/")) co_return poll_task(rest.substr(6), v, ka);
  violation("unexpected " + std::string(req.method_string()) + " " + target);
  co_return error(404, "APIGW.0101", "The API does not exist or has not been published", v, ka);
}

// Closed silently, as a server's idle timer fires: it loses the race with the client's next
// request, which arrives and is never read (the client sees EOF or a reset before any answer).
template <class Stream>
net::awaitable<void> FakeKps::Impl::close_silently(Stream& stream, beast::flat_buffer& buffer) {
  auto [rec, rn] = co_await stream.async_read_some(buffer.prepare(4), use_tuple);
  buffer.commit(rn);
  std::lock_guard lock(mutex);
  if (!rec) ++unread_requests;
  // Its first bytes tell a disassociate (the only POST kpsd sends to KPS) from a GET.
  auto first = static_cast<const char*>(buffer.data().data());
  if (!rec && std::string_view(first, buffer.size()).starts_with("P")) ++disassociates_received;
}

template <class Stream>
net::awaitable<void> FakeKps::Impl::serve(Stream& stream, beast::flat_buffer& buffer) {
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
      co_await close_silently(stream, buffer);
      break;
    }
  }
}

net::awaitable<void> FakeKps::Impl::session(tcp::socket socket) {
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

net::awaitable<void> FakeKps::Impl::accept_loop() {
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

FakeKps::FakeKps(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {
  net::co_spawn(impl_->io, impl_->accept_loop(), net::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

FakeKps::~FakeKps() {
  impl_->io.stop();
  impl_->thread.join();
}

std::uint16_t FakeKps::port() const { return impl_->port; }

}  // namespace kpsd::fake
