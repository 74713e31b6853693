// libFuzzer: raw bytes from a KPS server through Beast's response parser with kpsd's limits
// (1 MiB body), then the classifier, as HttpClient hands them over.
#include "kps/classify.hpp"

#include <boost/beast/http.hpp>

#include <cstddef>
#include <cstdint>

namespace http = boost::beast::http;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  http::response_parser<http::string_body> parser;
  parser.body_limit(1024 * 1024);
  parser.eager(true);
  boost::system::error_code ec;
  parser.put(boost::asio::buffer(data, size), ec);
  if (ec || !parser.is_done()) return 0;
  auto& res = parser.get();
  kpsd::HttpResult r;
  r.status = res.result_int();
  r.body = res.body();
  if (auto it = res.find("X-Request-Id"); it != res.end()) r.request_id = std::string(it->value());
  if (auto it = res.find(http::field::retry_after); it != res.end())
    r.retry_after = std::string(it->value());
  kpsd::classify_disassociate(r, std::chrono::system_clock::now());
  return 0;
}
