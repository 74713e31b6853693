#pragma once
// The CONNECT request that opens a tunnel through an HTTP proxy to the API's host (RFC 9110
// §9.3.6), on a TCP connection to the proxy. Beast types: included by http_client.cpp only.
#include "config/proxy.hpp"
#include "net/http_result.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace kpsd::detail {

// Sends `CONNECT authority` (host:port) with `proxy_authorization` when not empty, and reads
// the proxy's answer within `timeout`. Returns an ok result when the tunnel is open; otherwise
// a failure whose detail names the proxy (never its credentials), nothing having reached the
// API: 407 (or 401, as tinyproxy answers wrong credentials) and other refusals (4xx) are
// proxy_refused (a proxy's policy or credentials: kpsd holds calls), 5xx (the proxy could not reach
// the API) and broken answers are connect_failed, a deadline is timed_out.
boost::asio::awaitable<HttpResult> open_tunnel(boost::beast::tcp_stream& stream,
                                               const ProxyRoute& proxy,
                                               const std::string& authority,
                                               std::string_view proxy_authorization,
                                               std::chrono::milliseconds timeout);

// The proxy_refused result for a 407 (or tinyproxy's 401) from `proxy`: "refused the
// credentials", or "asks for credentials" when kpsd sent none. `answer` is "HTTP 407 ...".
HttpResult credentials_refused(const ProxyRoute& proxy, const std::string& answer);

}  // namespace kpsd::detail
