#pragma once
// The final answer to one HTTP/1.1 request, read from the bytes a connection delivers, without
// I/O; and the one rule for reusing a keep-alive connection. HttpClient feeds the reader what
// its socket gives (every call kpsd makes: KPS, IAM); the fuzz target feeds it random answers.
//
// What real peers send (docs/vendor-api.md, "What real gateways and proxies send"): interim 1xx
// answers before the final one (RFC 9110 §15.2: 100 Continue, 102 Processing, 103 Early Hints; read
// past, never the answer), IAM PKI tokens past 8 KiB in X-Subject-Token, load balancers' cookies of
// 10 KB and more. Beast's parser allows 8 KiB of headers by default; kpsd allows
// max_response_header_bytes.
#include "net/http_result.hpp"

#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace kpsd {

// Header bytes of one answer (status line and fields), interim ones each on their own.
inline constexpr std::size_t max_response_header_bytes = 64 * 1024;
// Body bytes of one answer: KPS and IAM answers are a few hundred bytes.
inline constexpr std::size_t max_response_body_bytes = 1024 * 1024;
// Interim answers before the final one; more is not a peer kpsd should keep talking to.
inline constexpr int max_interim_answers = 16;

class AnswerReader {
 public:
  enum class Step {
    need_more,  // feed more bytes (or put_eof)
    done,       // the final answer is complete: take() it
    failed,     // the bytes are not a readable answer (error() says why); close the connection
  };

  AnswerReader();

  // Parses what it can of `bytes` (the unread bytes of the connection, oldest first) and sets
  // `consumed` to how many it used. After `done`, bytes past the final answer are not consumed:
  // they are left over, and the connection must not be reused (keep_connection).
  Step put(std::string_view bytes, std::size_t& consumed);
  // The peer closed the connection. Ends a body that runs to the close (no Content-Length, not
  // chunked); anything else unfinished is `failed` ("end of stream" with no byte of answer).
  Step put_eof();

  bool got_bytes() const noexcept { return got_bytes_; }  // a byte of any answer arrived
  int interim_answers() const noexcept { return interim_; }
  bool keep_alive() const;  // after done: the final answer allows another request
  // After done: status, body, X-Request-Id, Retry-After, Content-Encoding and X-Subject-Token
  // into `out`.
  void take(HttpResult& out);
  const std::string& error() const noexcept { return error_; }

 private:
  using Parser = boost::beast::http::response_parser<boost::beast::http::string_body>;
  void start_parser();
  Step fail(std::string why);

  std::optional<Parser> parser_;
  bool got_bytes_ = false;
  int interim_ = 0;
  std::string error_;
};

// What is known of a connection once a call on it has ended.
struct ConnectionAfterCall {
  bool final_answer_complete = false;  // a whole final answer to the request just sent was read
  bool keep_alive = false;             // that answer allows reuse (no Connection: close, 1.1)
  std::size_t bytes_left_over = 0;     // bytes received past that answer
  bool stopping = false;               // kpsd is cancelling its calls
};

// The pool's rule: a connection goes back to the pool only after a complete, correctly framed
// final answer to the request just sent, with nothing left unread. Anything else (a framing
// error, a limit hit, bytes left over, an answer that arrived early, a timeout) closes it, so
// a later request can never be handed an earlier request's answer.
bool keep_connection(const ConnectionAfterCall& c) noexcept;

}  // namespace kpsd
