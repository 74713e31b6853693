#pragma once
// The error body every Huawei Cloud service answers with (KPS, IAM, the API gateway), read the
// way the vendor SDKs read it: error_code/error_msg, falling back to code/message (Go
// core/sdkerr/errors.go). Plain code, fuzzed (tests/fuzz/fuzz_kps_bodies.cpp).
#include <boost/json/object.hpp>

#include <string>
#include <string_view>

namespace kpsd {

struct ApiErrorBody {
  std::string code;     // "KPS.4016", "APIGW.0301"; at most 64 bytes, escaped
  std::string message;  // at most 500 bytes, escaped (core/outside_text.hpp)
};

// Both fields empty when `body` is not a JSON object or has neither form. Never throws.
ApiErrorBody parse_error_body(std::string_view body);

// A string member of an answer's JSON object, raw (the caller escapes and caps it); "" when
// absent or of another type, as the vendor SDKs read optional strings. Never throws.
std::string string_field(const boost::json::object& o, std::string_view key);

}  // namespace kpsd
