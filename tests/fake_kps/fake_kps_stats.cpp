// The counters tests read (each under the mutex, so from any thread), and GET /_fake/stats.
#include "fake_kps_impl.hpp"

namespace kpsd::fake {

std::string FakeKps::Impl::stats_json() {
  std::lock_guard lock(mutex);
  json::object calls_obj;
  for (const auto& [id, n] : calls) calls_obj[id] = n;
  json::array v;
  for (const auto& s : violations) v.push_back(json::string(s));
  return json::serialize(json::object{{"requests", requests},
                                      {"disassociate_calls", disassociate_calls},
                                      {"task_polls", task_polls},
                                      {"failed_task_lookups", failed_task_lookups},
                                      {"running_task_lookups", running_task_lookups},
                                      {"quota_refusals", quota_refusals},
                                      {"calls", std::move(calls_obj)},
                                      {"violations", std::move(v)}});
}

std::string FakeKps::stats_json() const { return impl_->stats_json(); }

std::int64_t FakeKps::calls_for(const std::string& server_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->calls.find(server_id);
  return it == impl_->calls.end() ? 0 : it->second;
}

std::map<std::string, std::int64_t> FakeKps::calls() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->calls;
}

std::int64_t FakeKps::disassociate_calls() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->disassociate_calls;
}

std::int64_t FakeKps::disassociates_received() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->disassociates_received;
}

std::int64_t FakeKps::requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->requests;
}

std::int64_t FakeKps::connections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->connections;
}

std::int64_t FakeKps::unread_requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->unread_requests;
}

std::int64_t FakeKps::project_lookups() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->project_lookups;
}

std::int64_t FakeKps::iam_tokens_issued() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->tokens_issued;
}

std::int64_t FakeKps::expired_token_rejections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->expired_rejections;
}

std::int64_t FakeKps::auth_refusals() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->auth_refusals;
}

std::size_t FakeKps::largest_auth_token() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->largest_token;
}

std::int64_t FakeKps::signatures_checked() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->signatures;
}

std::vector<std::string> FakeKps::violations() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->violations;
}

}  // namespace kpsd::fake
