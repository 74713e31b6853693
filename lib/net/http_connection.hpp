#pragma once
// One keep-alive connection of HttpClient's pool (plain TCP or TLS), and what the pool asks of
// it: bytes waiting unread (the socket peek, and what OpenSSL holds), the TLS client context.
// Beast types: included by http_client.cpp only.
#include "core/result.hpp"

#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <openssl/crypto.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace kpsd::detail {

namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = boost::asio::ssl;

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Request headers carry the token or the signature: their storage is zeroed when freed.
template <class T>
struct ZeroingAllocator {
  using value_type = T;
  ZeroingAllocator() = default;
  template <class U>
  ZeroingAllocator(const ZeroingAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    OPENSSL_cleanse(p, n * sizeof(T));
    std::allocator<T>{}.deallocate(p, n);
  }
  template <class U>
  bool operator==(const ZeroingAllocator<U>&) const noexcept {
    return true;
  }
};
using Request = http::request<http::string_body, http::basic_fields<ZeroingAllocator<char>>>;

struct Connection {
  std::shared_ptr<ssl::context> context;  // outlives the TLS stream made from it
  std::optional<beast::tcp_stream> plain;
  std::optional<TlsStream> tls;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
};

// The TLS client context for new connections: the system trust store plus `ca_file` (PEM),
// peer verification on, TLS 1.2 or newer. A failure names the file when it cannot be loaded.
Result<std::shared_ptr<ssl::context>> make_tls_context(const std::string& ca_file);

// Bytes the TLS layer has read from the socket but kpsd has not: a decrypted record waiting in
// OpenSSL, or raw bytes in its read BIO. The socket peek cannot see them.
std::size_t tls_unread(Connection& c);

// True when an idle connection must not be reused: the server closed or reset it (a
// non-blocking peek sees EOF or an error), or sent bytes unasked.
bool closed_by_peer(Connection& c);

}  // namespace kpsd::detail
