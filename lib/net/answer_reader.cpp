#include "net/answer_reader.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>

namespace kpsd {

namespace http = boost::beast::http;

AnswerReader::AnswerReader() { start_parser(); }

void AnswerReader::start_parser() {
  parser_.emplace();
  parser_->header_limit(static_cast<std::uint32_t>(max_response_header_bytes));
  parser_->body_limit(max_response_body_bytes);
  // Parse as far as the bytes go in one put(): the body may follow the header in one read.
  parser_->eager(true);
}

AnswerReader::Step AnswerReader::fail(std::string why) {
  error_ = std::move(why);
  return Step::failed;
}

AnswerReader::Step AnswerReader::put(std::string_view bytes, std::size_t& consumed) {
  consumed = 0;
  if (!error_.empty()) return Step::failed;
  if (!bytes.empty()) got_bytes_ = true;
  while (consumed < bytes.size()) {
    boost::system::error_code ec;
    std::size_t used =
        parser_->put(boost::asio::buffer(bytes.data() + consumed, bytes.size() - consumed), ec);
    consumed += used;
    if (ec == http::error::need_more) return Step::need_more;
    if (ec) return fail(ec.message());
    if (!parser_->is_done()) {
      if (used == 0) return Step::need_more;
      continue;
    }
    unsigned status = parser_->get().result_int();
    if (status >= 200) return Step::done;
    if (status < 100) return fail("status " + std::to_string(status) + " is not HTTP");
    if (status == 101) return fail("unexpected 101 Switching Protocols");
    // An interim answer: read past it, to the final answer that follows (RFC 9110 §15.2).
    if (++interim_ > max_interim_answers)
      return fail("more than " + std::to_string(max_interim_answers) + " interim answers");
    start_parser();
  }
  if (parser_->is_done() && parser_->get().result_int() >= 200) return Step::done;
  return Step::need_more;
}

AnswerReader::Step AnswerReader::put_eof() {
  if (!error_.empty()) return Step::failed;
  if (parser_->is_done()) return Step::done;
  if (!parser_->got_some())
    return fail(got_bytes_ ? "end of stream after an interim answer" : "end of stream");
  boost::system::error_code ec;
  parser_->put_eof(ec);
  if (ec) return fail(ec.message());
  return parser_->is_done() ? Step::done : fail("end of stream");
}

bool AnswerReader::keep_alive() const { return parser_->is_done() && parser_->keep_alive(); }

void AnswerReader::take(HttpResult& r) {
  auto& res = parser_->get();
  r.status = res.result_int();
  r.body = std::move(res.body());
  if (auto it = res.find("X-Request-Id"); it != res.end()) r.request_id = std::string(it->value());
  if (auto it = res.find(http::field::retry_after); it != res.end())
    r.retry_after = std::string(it->value());
  if (auto it = res.find(http::field::content_encoding); it != res.end())
    r.content_encoding = std::string(it->value());
  if (auto it = res.find("X-Subject-Token"); it != res.end())
    r.subject_token = Secret(std::string(it->value()));
}

bool keep_connection(const ConnectionAfterCall& c) noexcept {
  return c.final_answer_complete && c.keep_alive && c.bytes_left_over == 0 && !c.stopping;
}

}  // namespace kpsd
