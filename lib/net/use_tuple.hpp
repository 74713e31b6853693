#pragma once
// The completion token kpsd's coroutines use: `co_await op(..., use_tuple)` gives the error code
// (and the result) as a value, never an exception: a failed read or a timeout is expected.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace kpsd {

inline constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);

}  // namespace kpsd
