#pragma once
// What one HTTP exchange of the client (http_client.hpp) gives back. Its own header, without
// Asio, so that the classifiers in kps_api (and their fuzzers) read it without the client.
#include "core/secret.hpp"

#include <chrono>
#include <string>

namespace kpsd {

// What came back from one HTTP exchange. `transport` is set when no complete response arrived.
struct HttpResult {
  // tls_failed: the server's certificate did not verify; no_credentials: kpsd had nothing to
  // authenticate with (token file unreadable, IAM unreachable); no_descriptors: kpsd is at its
  // open-file limit and could not even open a socket; proxy_refused: the proxy refused the
  // credentials (407) or the CONNECT (its policy). None of them sent the request.
  enum class Transport {
    ok,
    connect_failed,
    timed_out,
    io_error,
    tls_failed,
    no_credentials,
    no_descriptors,
    proxy_refused
  };
  Transport transport = Transport::ok;
  std::string transport_detail;  // e.g. "Connection refused"; never holds request data
  unsigned status = 0;
  std::string body;
  std::string request_id;   // X-Request-Id
  std::string retry_after;  // Retry-After, raw
  // Content-Encoding, raw; empty when absent. kpsd sends Accept-Encoding: identity and reads no
  // coding: an answer in one (gzip, br ...) has a body kpsd cannot read.
  std::string content_encoding;
  Secret subject_token;  // X-Subject-Token (IAM's token answer)
  std::chrono::milliseconds latency{0};
  // The whole request was written: a transport failure after that (no answer, an answer that
  // cannot be read, a timeout) leaves the outcome unknown: the server may have acted on it.
  bool request_sent = false;
  // The request first went out on a reused keep-alive connection that the server had closed
  // (EOF or reset before one byte of answer) and was sent again, once, on a fresh one.
  bool resent_on_fresh_connection = false;
};

}  // namespace kpsd
