#include "zeroing_storage.hpp"

#include <boost/json/parser.hpp>

#include <openssl/crypto.h>

#include <new>

namespace kpsd {

namespace {

class ZeroingResource final : public boost::json::memory_resource {
  void* do_allocate(std::size_t n, std::size_t align) override {
    return ::operator new(n, std::align_val_t(align));
  }
  void do_deallocate(void* p, std::size_t n, std::size_t align) override {
    OPENSSL_cleanse(p, n);
    ::operator delete(p, n, std::align_val_t(align));
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
