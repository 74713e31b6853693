#include "net/answer_reader.hpp"
#include "net/http_client_impl.hpp"
#include "net/proxy_tunnel.hpp"
#include "net/use_tuple.hpp"

namespace kpsd {

template <class Stream>
auto HttpClient::Impl::send_on(Stream& stream, Connection& conn, const Request& req)
    -> net::awaitable<SendOutcome> {
  SendOutcome out;
  detail::set_deadline(stream, timeout);
  auto [wec, written] = co_await http::async_write(stream, req, use_tuple);
  if (wec) {
    // Not sent in full: the server cannot have acted on it.
    out.stale = closed_under_us(wec);
    out.nothing_written = written == 0;
    out.result = detail::failure(detail::transport_kind(wec), "write: " + wec.message());
    co_return out;
  }
  out.result = co_await read_answer(stream, conn, out);
  out.result.request_sent = true;
  co_return out;
}

// Reads the final answer to the request just written (interim 1xx answers read past), with
// one deadline for the whole answer.
template <class Stream>
net::awaitable<HttpResult> HttpClient::Impl::read_answer(Stream& stream, Connection& conn,
                                                         SendOutcome& out) {
  AnswerReader reader;
  detail::set_deadline(stream, timeout);
  bool closed = false;  // the peer closed: what is buffered is all there will be
  for (;;) {
    AnswerReader::Step step = AnswerReader::Step::need_more;
    if (conn.buffer.size() > 0) {
      std::size_t used = 0;
      auto data = conn.buffer.data();
      step = reader.put({static_cast<const char*>(data.data()), data.size()}, used);
      conn.buffer.consume(used);
    }
    if (step == AnswerReader::Step::need_more && closed) {
      step = reader.put_eof();
      out.stale = step == AnswerReader::Step::failed && !reader.got_bytes();
    } else if (step == AnswerReader::Step::need_more) {
      auto [rec, n] =
          co_await stream.async_read_some(conn.buffer.prepare(detail::read_chunk), use_tuple);
      conn.buffer.commit(n);
      if (rec && !closed_under_us(rec)) {
        co_return detail::failure(detail::transport_kind(rec), "read: " + rec.message());
      }
      closed = static_cast<bool>(rec);
      continue;
    }
    if (step == AnswerReader::Step::failed) {
      co_return detail::failure(HttpResult::Transport::io_error, "read: " + reader.error());
    }
    if (step == AnswerReader::Step::done) break;
  }
  HttpResult r;
  reader.take(r);
  out.keep = keep_connection(
      {true, reader.keep_alive(), conn.buffer.size() + detail::tls_unread(conn), cancelled});
  co_return r;
}

// The most recently used idle connection that is still open, or null. Only the one about to
// be reused is peeked at (one syscall per call, whatever the pool's size), however briefly
// it was idle: the peek is what sees bytes a server sent unasked (which must never be read
// as the next answer), and it costs about a microsecond. Connections idle too long are
// dropped from the old end without a syscall.
std::unique_ptr<detail::Connection> HttpClient::Impl::take_idle() {
  auto now = std::chrono::steady_clock::now();
  while (!idle.empty() && now - idle.front()->idle_since > detail::max_idle_reuse) idle.pop_front();
  while (!idle.empty()) {
    std::unique_ptr<Connection> c = std::move(idle.back());
    idle.pop_back();
    if (!detail::closed_by_peer(*c)) return c;
  }
  return nullptr;
}

// One request on `conn` (a reused one, or fresh); the connection goes back to the pool only
// when keep_connection allows.
auto HttpClient::Impl::send(std::unique_ptr<Connection> conn, const Request& req)
    -> net::awaitable<SendOutcome> {
  ActiveGuard guard(*this, conn.get());
  // Two statements, not `?:` with a co_await in each branch: GCC 12 mishandles temporaries
  // of co_await inside conditional expressions.
  SendOutcome out;
  if (conn->tls) {
    out = co_await send_on(*conn->tls, *conn, req);
  } else {
    out = co_await send_on(*conn->plain, *conn, req);
  }
  if (out.keep && !cancelled) {
    conn->lowest().expires_never();
    conn->idle_since = std::chrono::steady_clock::now();
    idle.push_back(std::move(conn));
  }
  co_return out;
}

detail::Request HttpClient::Impl::make_request(const HttpRequest& request, bool forward) const {
  Request req{http::string_to_verb(request.method),
              forward ? "http://" + host_header + request.target : request.target, 11};
  req.set(http::field::host, host_header);
  req.set(http::field::user_agent, "kpsd/" KPSD_VERSION);
  // kpsd reads no content coding: a gzipped answer would be unreadable (RFC 9110 §12.5.3).
  req.set(http::field::accept_encoding, "identity");
  if (forward && !proxy_auth.empty())
    req.set(http::field::proxy_authorization, proxy_auth.reveal());
  for (const auto& [name, value] : request.headers) req.set(name, value);
  req.body() = request.body;
  req.keep_alive(true);
  req.prepare_payload();
  return req;
}

net::awaitable<HttpResult> HttpClient::Impl::exchange(const HttpRequest& request) {
  auto started = std::chrono::steady_clock::now();
  auto finish = [&](HttpResult r) {
    r.latency = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    return r;
  };
  if (cancelled)
    co_return detail::failure(HttpResult::Transport::io_error, "cancelled: kpsd is stopping");

  // Plain HTTP through a proxy: the absolute form, and the proxy's credentials on each
  // request (RFC 9112 §3.2.2); HTTPS goes through the tunnel as if direct.
  bool forward = proxy && !tls_context;
  Request req = make_request(request, forward);

  std::unique_ptr<Connection> conn = take_idle();
  bool reused = conn != nullptr;
  SendOutcome out;
  bool resent = false;
  for (int tries = 0; tries < 2; ++tries) {
    if (!conn) {
      auto [fresh, err] = co_await connect();
      if (!fresh) {
        out.result = std::move(err);
        break;
      }
      conn = std::move(fresh);
    }
    out = co_await send(std::move(conn), req);
    if (!(out.stale && reused && tries == 0 && !cancelled)) break;
    // A keep-alive connection the server closed while it sat idle fails before one byte of
    // answer, and so does one the server closed right after it read (and maybe acted on)
    // the request: kpsd cannot tell them apart. RFC 9112 §9.3.1: only a request known not
    // to have been applied, or an idempotent one, is sent again on its own; a POST that
    // left kpsd is an unknown outcome for the caller to record and look up (as Go's
    // net/http, which resends a POST only when none of it was written).
    if (!out.nothing_written && !detail::idempotent(req.method())) {
      if (out.result.request_sent)
        out.result.transport_detail =
            "the server closed the reused connection after the request, before any answer";
      break;
    }
    spdlog::debug(
        "{}: the reused connection was closed under the request ({}); sending it "
        "again on a fresh connection",
        host_header, out.result.transport_detail);
    resent = true;
    reused = false;
  }
  out.result.resent_on_fresh_connection = resent;
  // A 407 comes from the proxy, not the API: nothing was forwarded.
  if (forward && out.result.transport == HttpResult::Transport::ok && out.result.status == 407)
    out.result = detail::credentials_refused(*proxy, "HTTP 407");
  // The request may hold a token or a job's key: do not leave it in freed memory.
  OPENSSL_cleanse(req.body().data(), req.body().size());
  co_return finish(std::move(out.result));
}
HttpClient::HttpClient(net::any_io_executor executor, Endpoint endpoint, std::string ca_file,
                       std::chrono::milliseconds timeout, std::optional<ProxyRoute> proxy)
    : impl_(std::make_unique<Impl>(executor, std::move(endpoint), ca_file, timeout,
                                   std::move(proxy))) {}

HttpClient::~HttpClient() = default;

net::awaitable<HttpResult> HttpClient::exchange(const HttpRequest& request) {
  return impl_->exchange(request);
}

const std::string& HttpClient::host_header() const { return impl_->host_header; }
const Endpoint& HttpClient::endpoint() const { return impl_->endpoint; }

Result<void> HttpClient::reload_ca(const std::string& ca_file) {
  if (!impl_->tls_context) return {};
  auto ctx = detail::make_tls_context(ca_file);
  if (!ctx) return ctx.error();
  impl_->tls_context = std::move(*ctx);
  impl_->idle.clear();  // new connections verify against the new store
  impl_->last_tls_error.clear();
  return {};
}

void HttpClient::close_idle() { impl_->idle.clear(); }

void HttpClient::cancel_all() {
  impl_->cancelled = true;
  impl_->idle.clear();
  impl_->resolver.cancel();
  for (detail::Connection* c : impl_->active) {
    boost::system::error_code ignored;
    c->lowest().socket().cancel(ignored);
    c->lowest().socket().close(ignored);
  }
}

}  // namespace kpsd
