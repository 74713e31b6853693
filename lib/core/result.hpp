#pragma once
// kpsd's one form for an expected failure (docs/architecture.md, "Errors"): a function that may
// fail in the ordinary course (a bad answer, an unreadable file, a refused request) returns
// Result<T>, holding either the value or a Failure whose message is the one line a person reads.
// Start-up failures and broken invariants throw instead.
#include <boost/assert/source_location.hpp>
#include <boost/system/result.hpp>

#include <stdexcept>
#include <string>
#include <utility>

namespace kpsd {

// Why it failed, in words fit for a log line or a reply; never a secret. Made with fail(): the
// declared constructor keeps Failure from being built out of a bare string, so that a
// Result<std::string> knows which side a string goes to.
struct Failure {
  Failure() = default;
  std::string message;
};

// Result<T>::value() on a failure is a caller that did not look: a bug, so it throws
// std::logic_error (boost::system::result finds this by argument-dependent lookup).
[[noreturn]] inline void throw_exception_from_error(const Failure& failure,
                                                    const boost::source_location&) {
  throw std::logic_error("unchecked failure: " + failure.message);
}

// E: Failure, or a type derived from it that tells failures apart for a caller that acts on
// the difference (DatabaseLock's LockRefusal).
template <class T = void, class E = Failure>
using Result = boost::system::result<T, E>;

// `return fail("...")` in a function returning any Result<T>.
inline Failure fail(std::string message) {
  Failure failure;
  failure.message = std::move(message);
  return failure;
}

}  // namespace kpsd
