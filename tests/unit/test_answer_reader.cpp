// AnswerReader and the pool's keep/close rule, fed bytes as real servers send them: interim
// answers, large headers, answers split anywhere, extra bytes, close-delimited bodies.
#include "net/answer_reader.hpp"

#include <doctest/doctest.h>

#include <string>

using namespace kpsd;

namespace {

std::string answer(int status, std::string body, std::string extra_headers = "") {
  return "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Type: application/json\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

struct Fed {
  AnswerReader::Step step = AnswerReader::Step::need_more;
  std::size_t left_over = 0;
};

// Feeds `bytes` in pieces of `chunk` bytes, keeping unconsumed bytes as a connection buffer.
Fed feed(AnswerReader& reader, const std::string& bytes, std::size_t chunk, bool eof = false) {
  std::string buffer;
  Fed f;
  for (std::size_t at = 0; at < bytes.size();) {
    buffer += bytes.substr(at, chunk);
    at += chunk;
    std::size_t used = 0;
    f.step = reader.put(buffer, used);
    buffer.erase(0, used);
    if (f.step != AnswerReader::Step::need_more) break;
  }
  if (eof && f.step == AnswerReader::Step::need_more) {
    std::size_t used = 0;
    if (!buffer.empty()) f.step = reader.put(buffer, used), buffer.erase(0, used);
    if (f.step == AnswerReader::Step::need_more) f.step = reader.put_eof();
  }
  f.left_over = buffer.size();
  return f;
}

}  // namespace

TEST_CASE("interim 100 and 103 answers are read past to the final answer in any split") {
  std::string bytes =
      "HTTP/1.1 100 Continue\r\n\r\n"
      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" +
      answer(202, R"({"task_id":"t-1"})", "X-Request-Id: r-1\r\n");
  for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, bytes.size()}) {
    CAPTURE(chunk);
    AnswerReader reader;
    Fed f = feed(reader, bytes, chunk);
    REQUIRE(f.step == AnswerReader::Step::done);
    CHECK(reader.interim_answers() == 2);
    CHECK(f.left_over == 0);
    HttpResult r;
    reader.take(r);
    CHECK(r.status == 202);
    CHECK(r.body == R"({"task_id":"t-1"})");
    CHECK(r.request_id == "r-1");
    CHECK(keep_connection({true, reader.keep_alive(), f.left_over, false}));
  }
}

TEST_CASE("headers up to 64 KiB are read: a 30 KB IAM token and a 10 KB cookie") {
  std::string token(30000, 'T');
  std::string cookie(10000, 'c');
  std::string bytes =
      answer(201, "{}", "X-Subject-Token: " + token + "\r\nSet-Cookie: a=" + cookie + "\r\n");
  AnswerReader reader;
  Fed f = feed(reader, bytes, 4096);
  REQUIRE(f.step == AnswerReader::Step::done);
  HttpResult r;
  reader.take(r);
  CHECK(r.status == 201);
  CHECK(r.subject_token.reveal() == token);
}

TEST_CASE("headers over the limit fail the read and close the connection") {
  std::string bytes =
      answer(202, "{}", "Set-Cookie: a=" + std::string(max_response_header_bytes, 'c') + "\r\n");
  AnswerReader reader;
  Fed f = feed(reader, bytes, 16384);
  CHECK(f.step == AnswerReader::Step::failed);
  CHECK(reader.error().find("header limit") != std::string::npos);
  CHECK(reader.got_bytes());
}

TEST_CASE("bytes past the final answer are left over and the connection is not kept") {
  std::string bytes = answer(202, R"({"task_id":"a"})") + answer(202, R"({"task_id":"b"})");
  AnswerReader reader;
  Fed f = feed(reader, bytes, bytes.size());
  REQUIRE(f.step == AnswerReader::Step::done);
  CHECK(f.left_over > 0);
  HttpResult r;
  reader.take(r);
  CHECK(r.body == R"({"task_id":"a"})");
  CHECK_FALSE(keep_connection({true, reader.keep_alive(), f.left_over, false}));
}

TEST_CASE("a chunked body is read whole and a body to the close ends at EOF") {
  std::string chunked =
      "HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"ta\r\n"
      "D\r\nsk_id\":\"c-1\"}\r\n0\r\n\r\n";
  AnswerReader a;
  REQUIRE(feed(a, chunked, 5).step == AnswerReader::Step::done);
  HttpResult r;
  a.take(r);
  CHECK(r.body == R"({"task_id":"c-1"})");
  CHECK(a.keep_alive());

  std::string to_close = "HTTP/1.1 202 Accepted\r\nConnection: close\r\n\r\n{\"task_id\":\"e\"}";
  AnswerReader b;
  REQUIRE(feed(b, to_close, 8, true).step == AnswerReader::Step::done);
  HttpResult rb;
  b.take(rb);
  CHECK(rb.body == R"({"task_id":"e"})");
  CHECK_FALSE(keep_connection({true, b.keep_alive(), 0, false}));
}

TEST_CASE("EOF before any byte is told apart from EOF inside an answer") {
  AnswerReader nothing;
  CHECK(nothing.put_eof() == AnswerReader::Step::failed);
  CHECK_FALSE(nothing.got_bytes());  // a stale keep-alive connection looks like this
  CHECK(nothing.error() == "end of stream");

  AnswerReader cut;
  std::string bytes = answer(202, R"({"task_id":"t"})");
  CHECK(feed(cut, bytes.substr(0, bytes.size() - 3), 64, true).step == AnswerReader::Step::failed);
  CHECK(cut.got_bytes());

  AnswerReader after_interim;
  CHECK(feed(after_interim, "HTTP/1.1 100 Continue\r\n\r\n", 64, true).step ==
        AnswerReader::Step::failed);
  CHECK(after_interim.got_bytes());
}

TEST_CASE("endless interim answers and 101 are refused") {
  std::string many;
  for (int i = 0; i <= max_interim_answers; ++i) many += "HTTP/1.1 100 Continue\r\n\r\n";
  AnswerReader a;
  CHECK(feed(a, many + answer(202, "{}"), many.size()).step == AnswerReader::Step::failed);
  AnswerReader b;
  CHECK(feed(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n", 100).step ==
        AnswerReader::Step::failed);
}

TEST_CASE("the pool keeps a connection only after a whole final answer with nothing unread") {
  CHECK(keep_connection({.final_answer_complete = true, .keep_alive = true}));
  CHECK_FALSE(keep_connection({.final_answer_complete = false, .keep_alive = true}));
  CHECK_FALSE(keep_connection({.final_answer_complete = true, .keep_alive = false}));
  CHECK_FALSE(
      keep_connection({.final_answer_complete = true, .keep_alive = true, .bytes_left_over = 1}));
  CHECK_FALSE(
      keep_connection({.final_answer_complete = true, .keep_alive = true, .stopping = true}));
}

TEST_CASE("an HTTP/1.0 answer without keep-alive closes the connection") {
  AnswerReader reader;
  std::string bytes = "HTTP/1.0 202 Accepted\r\nContent-Length: 2\r\n\r\n{}";
  REQUIRE(feed(reader, bytes, bytes.size()).step == AnswerReader::Step::done);
  CHECK_FALSE(reader.keep_alive());
}

TEST_CASE("a status under 100 is not HTTP") {
  AnswerReader reader;
  CHECK(feed(reader, "HTTP/1.1 042 Odd\r\nContent-Length: 0\r\n\r\n", 64).step ==
        AnswerReader::Step::failed);
}
