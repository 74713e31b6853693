#pragma once
// How doctest shows a kpsd::Result in a failed CHECK: "a value", or the failure's message.
// boost::system::result's own operator<< would print the value, which most value types here
// cannot be printed as (and doctest takes that operator for usable).
#include "core/result.hpp"

#include <doctest/doctest.h>

#include <string>

namespace doctest {

template <class T, class E>
struct StringMaker<boost::system::result<T, E>> {
  static String convert(const boost::system::result<T, E>& r) {
    if (r) return "a value";
    return String(("failure: " + r.error().message).c_str());
  }
};

}  // namespace doctest
