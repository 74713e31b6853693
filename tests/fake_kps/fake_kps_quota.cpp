// The gateway's quota in fixed windows (Options::window_quota): this many API calls per window,
// then 429 APIGW.0308 to every call until the window turns.
#include "fake_kps_impl.hpp"

namespace kpsd::fake {

// The 429 for a KPS call over the window quota, else nullopt (and the call is counted).
std::optional<FakeKps::Impl::Response> FakeKps::Impl::refuse_over_quota(unsigned v, bool ka) {
  if (options.window_quota <= 0 || admitted_by_quota()) return std::nullopt;
  // As API Gateway words it (docs/vendor-api.md), with this quota's numbers.
  return error(429, "APIGW.0308",
               "The throttling threshold has been reached: policy user over ratelimit,"
               "limit:" +
                   std::to_string(options.window_quota) +
                   ",time:" + std::to_string(options.quota_window.count()) + " millisecond",
               v, ka);
}

// Windows start when the fake does.
bool FakeKps::Impl::admitted_by_quota() {
  std::lock_guard lock(mutex);
  auto window = (std::chrono::steady_clock::now() - started) / options.quota_window;
  if (window != quota_window_index) {
    quota_window_index = window;
    quota_used = 0;
  }
  if (quota_used >= options.window_quota) {
    ++quota_refusals;
    return false;
  }
  ++quota_used;
  return true;
}

std::int64_t FakeKps::quota_refusals() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->quota_refusals;
}

}  // namespace kpsd::fake
