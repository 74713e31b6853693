// The signer against vectors computed independently by tests/data/aksk_vectors.py (Python's
// hmac/hashlib/urllib, written from the algorithm's description, not from this C++).
#include "aksk_signer.hpp"

#include <boost/json.hpp>

#include <doctest/doctest.h>

#include <fstream>
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
