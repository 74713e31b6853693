// libFuzzer: random sequences of answers on one keep-alive connection, read the way HttpClient
// reads them (AnswerReader on a connection buffer, reads of random sizes, the pool's rule
// keep_connection, and the peek before reuse). Interim 1xx answers, extra pipelined bytes,
// truncated, chunked and close-delimited bodies, over-long headers, raw garbage. The answer a
// request is handed must be its own (X-Request-Id: seq-K for request K, never another's);
// nothing may crash.
#include "net/answer_reader.hpp"

#include <cstdlib>
#include <fuzzer/FuzzedDataProvider.h>
#include <string>
#include <vector>

namespace {

std::string final_answer(FuzzedDataProvider& in, int k) {
  std::string id = "X-Request-Id: seq-" + std::to_string(k) + "\r\n";
  std::string body = "{\"task_id\":\"t-" + std::to_string(k) + "\"}";
  std::string head = "HTTP/1." + std::string(in.ConsumeBool() ? "1" : "0") + " " +
                     std::to_string(in.ConsumeIntegralInRange(200, 599)) + " X\r\n" + id;
  if (in.ConsumeBool())
    head += "Connection: " + std::string(in.ConsumeBool() ? "close" : "keep-alive") + "\r\n";
  if (in.ConsumeIntegralInRange(0, 15) == 0) {
    // Over-long headers, around the 64 KiB limit.
    head +=
        "Set-Cookie: a=" + std::string(in.ConsumeIntegralInRange<std::size_t>(60000, 70000), 'c') +
        "\r\n";
  }
  switch (in.ConsumeIntegralInRange(0, 2)) {
    case 0:
      return head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    case 1: {
      std::string chunked = head + "Transfer-Encoding: chunked\r\n\r\n";
      for (std::size_t at = 0; at < body.size();) {
        std::size_t n = in.ConsumeIntegralInRange<std::size_t>(1, body.size() - at);
        char size[16];
        std::snprintf(size, sizeof size, "%zx\r\n", n);
        chunked += size + body.substr(at, n) + "\r\n";
        at += n;
      }
      return chunked + "0\r\n\r\n";
    }
    default:
      return head + "\r\n" + body;  // to the close
  }
}

// What the server sends after request k: interim answers, the final one, perhaps more.
std::string segment(FuzzedDataProvider& in, int k) {
  std::string out;
  int interim = in.ConsumeIntegralInRange(0, 3);
  for (int i = 0; i < interim; ++i) {
    int status = in.PickValueInArray({100, 102, 103, 103, 101});
    out += "HTTP/1.1 " + std::to_string(status) + " Interim\r\n";
    if (status == 103) out += "Link: </s.css>; rel=preload\r\n";
    out += "\r\n";
  }
  std::string answer = final_answer(in, k);
  if (in.ConsumeIntegralInRange(0, 7) == 0) {
    answer.resize(in.ConsumeIntegralInRange<std::size_t>(0, answer.size()));  // cut short
  }
  out += answer;
  switch (in.ConsumeIntegralInRange(0, 7)) {
    case 0:
      out += final_answer(in, k);  // pipelined: a second answer to the same request
      break;
    case 1:
      out += in.ConsumeBytesAsString(in.ConsumeIntegralInRange<std::size_t>(1, 64));  // garbage
      break;
    default:
      break;
  }
  return out;
}

// True when every "seq-N" in `id` names request k.
bool only_seq(const std::string& id, int k) {
  const std::string mine = "seq-" + std::to_string(k);
  for (std::size_t at = id.find("seq-"); at != std::string::npos; at = id.find("seq-", at + 1)) {
    std::size_t end = at + 4;
    while (end < id.size() && id[end] >= '0' && id[end] <= '9') ++end;
    if (id.compare(at, end - at, mine) != 0) return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  int requests = in.ConsumeIntegralInRange(1, 6);
  std::string sent;     // what the server has sent so far (segments of requests sent)
  std::size_t pos = 0;  // how far the client has read it
  std::string buffer;   // the connection's buffer: read, not yet parsed
  bool closed = false;  // the server closed after the last segment (when it said so, or not)
  for (int k = 0; k < requests; ++k) {
    // Request k is written; only now does the server send its answers.
    sent += segment(in, k);
    closed = in.ConsumeBool();
    kpsd::AnswerReader reader;
    kpsd::AnswerReader::Step step = kpsd::AnswerReader::Step::need_more;
    for (;;) {
      if (!buffer.empty()) {
        std::size_t used = 0;
        step = reader.put(buffer, used);
        if (used > buffer.size()) std::abort();
        buffer.erase(0, used);
      }
      if (step != kpsd::AnswerReader::Step::need_more) break;
      if (pos == sent.size()) {
        if (!closed) return 0;  // the server waits: the call would time out and close
        step = reader.put_eof();
        break;
      }
      std::size_t n = in.ConsumeIntegralInRange<std::size_t>(1, 16384);
      n = std::min(n, sent.size() - pos);
      buffer += sent.substr(pos, n);
      pos += n;
    }
    if (step != kpsd::AnswerReader::Step::done) return 0;  // the connection is closed
    kpsd::HttpResult r;
    reader.take(r);
    // Another request's answer: every "seq-N" in the id must be this request's. (A final answer
    // cut inside a header and followed by more bytes of the same request's segment can fold
    // them into the id's value: still this request's bytes, not a desync.)
    if (!only_seq(r.request_id, k)) std::abort();
    if (r.status < 200) std::abort();  // an interim one
    bool keep = kpsd::keep_connection({true, reader.keep_alive(), buffer.size(), false});
    // The peek before reuse: bytes the server sent and the client has not read are seen.
    if (!keep || pos < sent.size() || closed) return 0;
  }
  return 0;
}
