// The signer against vectors computed independently by tests/data/aksk_vectors.py (Python's
// hmac/hashlib/urllib, written from the algorithm's description, not from this C++).
#include "auth/aksk_signer.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <ctime>
#include <fstream>
#include <map>
#include <sstream>

using namespace kpsd;
namespace json = boost::json;

TEST_CASE("AK/SK signatures match the independently computed vectors") {
  std::ifstream in(KPSD_TEST_DATA "/aksk_vectors.json");
  REQUIRE(in);
  std::ostringstream text;
  text << in.rdbuf();
  json::array cases = json::parse(text.str()).as_array();
  REQUIRE(cases.size() >= 3);
  for (const auto& v : cases) {
    const json::object& c = v.as_object();
    CAPTURE(c.at("name").as_string());
    SigningRequest r;
    r.method = std::string(c.at("method").as_string());
    r.path = std::string(c.at("path").as_string());
    r.query = std::string(c.at("query").as_string());
    for (const auto& [name, value] : c.at("headers").as_object()) {
      r.headers.emplace_back(std::string(name), std::string(value.as_string()));
    }
    std::string body(c.at("body").as_string());
    r.body = body;
    CHECK(canonical_request(r) == c.at("canonical_request").as_string());
    std::string date;
    for (const auto& [name, value] : r.headers)
      if (name == "X-Sdk-Date") date = value;
    CHECK(string_to_sign(canonical_request(r), date) == c.at("string_to_sign").as_string());
    CHECK(authorization_header(r, std::string(c.at("ak").as_string()),
                               Secret(std::string(c.at("sk").as_string()))) ==
          c.at("authorization").as_string());
  }
}

TEST_CASE("X-Sdk-Date is UTC in the compact ISO form") {
  CHECK(sdk_date(std::chrono::system_clock::from_time_t(1764072000)) == "20251125T120000Z");
}

// What kpsd sends for each vector that is a KPS request: the headers sign_request adds and the
// Authorization, byte for byte. The temporary-key vector proves X-Security-Token is sent and
// signed as the SDKs do.
TEST_CASE("sign_request adds the vendor's headers and the vectors' Authorization") {
  std::ifstream in(KPSD_TEST_DATA "/aksk_vectors.json");
  REQUIRE(in);
  std::ostringstream text;
  text << in.rdbuf();
  int with_token = 0;
  json::value vectors = json::parse(text.str());
  for (const auto& v : vectors.as_array()) {
    const json::object& c = v.as_object();
    const json::object& want = c.at("headers").as_object();
    if (!want.contains("X-Project-Id")) continue;
    CAPTURE(c.at("name").as_string());
    std::vector<std::pair<std::string, std::string>> headers;
    if (want.contains("Content-Type"))
      headers.emplace_back("Content-Type", std::string(want.at("Content-Type").as_string()));
    AkSkKeys keys{Secret(std::string(c.at("ak").as_string())),
                  Secret(std::string(c.at("sk").as_string())), Secret()};
    if (want.contains("X-Security-Token")) {
      keys.security_token = Secret(std::string(want.at("X-Security-Token").as_string()));
      ++with_token;
    }
    std::string target(c.at("path").as_string());
    if (!c.at("query").as_string().empty()) target += "?" + std::string(c.at("query").as_string());
    std::string body(c.at("body").as_string());
    std::tm tm{};
    std::string date(want.at("X-Sdk-Date").as_string());
    REQUIRE(strptime(date.c_str(), "%Y%m%dT%H%M%SZ", &tm) != nullptr);
    sign_request({std::string(c.at("method").as_string()), target,
                  std::string(want.at("Host").as_string()), headers, body},
                 keys, std::string(want.at("X-Project-Id").as_string()),
                 std::chrono::system_clock::from_time_t(timegm(&tm)));
    std::map<std::string, std::string> sent(headers.begin(), headers.end());
    CHECK(sent.size() == headers.size());  // no header twice
    for (const auto& [name, value] : want) {
      if (name == "Host") continue;  // the HTTP client sets it
      CHECK_MESSAGE(sent[std::string(name)] == value.as_string(), name);
    }
    CHECK(sent["Authorization"] == c.at("authorization").as_string());
    CHECK(sent.size() == want.size());  // the vector's headers less Host, plus Authorization
  }
  CHECK(with_token == 1);
}
