#pragma once
// Boost.JSON storage that zeroes memory before freeing it: for JSON that may carry a job's
// password or private key (control requests, kpsctl's enqueue lines), so no copy lingers in
// freed heap.
#include <boost/json/storage_ptr.hpp>
#include <boost/json/value.hpp>

#include <string_view>

namespace kpsd {

boost::json::storage_ptr zeroing_storage();

// Parses `text` with zeroing storage for the result and for the parser's own temporary memory.
boost::json::value parse_json_zeroing(std::string_view text, boost::system::error_code& ec);

}  // namespace kpsd
