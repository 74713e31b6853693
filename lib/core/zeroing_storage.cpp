#include "core/zeroing_storage.hpp"

#include <boost/json/parser.hpp>

#include <openssl/crypto.h>

#include <cstddef>
#include <new>

namespace kpsd {

namespace {

// Each block carries its own size in a header in front of it: Boost.JSON does not always hand
// deallocate() the size and alignment it allocated with (a fuzzer found both), and zeroing
// must cover the whole block, never less (a secret left behind) nor more (someone else's
// memory). One fixed alignment, so the header is found whatever deallocate() is told.
class ZeroingResource final : public boost::json::memory_resource {
  static constexpr std::size_t block_align = alignof(std::max_align_t);
  static constexpr std::size_t header = block_align;  // holds the size; keeps the alignment
  void* do_allocate(std::size_t n, std::size_t align) override {
    if (align > block_align) throw std::bad_alloc();  // Boost.JSON never asks for more
    auto* base =
        static_cast<unsigned char*>(::operator new(header + n, std::align_val_t(block_align)));
    *reinterpret_cast<std::size_t*>(base) = n;
    return base + header;
  }
  void do_deallocate(void* p, std::size_t, std::size_t) override {
    auto* base = static_cast<unsigned char*>(p) - header;
    OPENSSL_cleanse(p, *reinterpret_cast<std::size_t*>(base));
    ::operator delete(base, std::align_val_t(block_align));
  }
  bool do_is_equal(const boost::json::memory_resource& other) const noexcept override {
    return this == &other;
  }
};

}  // namespace

boost::json::storage_ptr zeroing_storage() {
  static ZeroingResource resource;  // stateless; lives for the whole program
  return boost::json::storage_ptr(&resource);
}

boost::json::value parse_json_zeroing(std::string_view text, boost::system::error_code& ec) {
  boost::json::parser p(zeroing_storage());
  p.reset(zeroing_storage());
  p.write(text, ec);
  if (ec) return nullptr;
  return p.release();
}

}  // namespace kpsd
