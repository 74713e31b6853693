#pragma once
// What the configuration tests share (tests/unit/test_config.cpp, test_regions.cpp): the
// smallest valid file, and the error a text gets.
#include "auth/credential_answers.hpp"
#include "config/config.hpp"
#include "config/config_keys.hpp"
#include "config/regions.hpp"
#include "net/fd_limit.hpp"
#include "temp_dir.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <set>

namespace kpsd::test {

using namespace std::chrono_literals;

inline const std::string minimal =
    "[kps]\n"
    "endpoint = http://127.0.0.1:8080\n"
    "project_id = 0123456789abcdef0123456789ABCDEF\n";

inline std::string error_of(const std::string& text) {
  try {
    parse_config(text, "test.conf");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "no error";
}

}  // namespace kpsd::test
