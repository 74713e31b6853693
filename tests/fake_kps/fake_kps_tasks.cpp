// Tasks as KPS keeps them: GET tasks/{id}, and the lists GET running-tasks and GET failed-tasks
// (docs/vendor-api.md), with the counters tests read about them.
#include "fake_kps_impl.hpp"

#include <algorithm>
#include <charconv>

namespace kpsd::fake {

// Other servers' failures, left on the project before the fake started (the list keeps
// every failure until deleted): a minute apart, the last one a minute before the start.
void FakeKps::Impl::seed_failed_tasks() {
  const std::int64_t start_ms = unix_ms();
  const int n = options.seeded_failed_tasks;
  for (int i = 1; i <= n; ++i) {
    std::string k = std::to_string(i);
    failed.push_back({"seeded-" + k, "seeded-server-" + k, "KPS.6004", "no key pair found",
                      start_ms - std::int64_t{n + 1 - i} * 60000});
  }
}

// Ends the tasks whose time has passed, polled or not, as KPS ends them by itself: the
// failures join the failed list, each once. Every task runs task_duration, so tasks end in
// creation order and a cursor into task_order is enough. The caller holds mutex.
void FakeKps::Impl::settle_tasks() {
  const auto now = std::chrono::steady_clock::now();
  for (; ended < task_order.size(); ++ended) {
    const std::string& id = task_order[ended];
    const Task& t = tasks.at(id);
    if (now - t.created < options.task_duration) break;
    if (t.fails) failed.push_back({id, t.server_id, task_error_code, task_error_msg, t.created_ms});
  }
}

// limit and offset of a list request, or nullopt for what KPS refuses: not decimal, limit
// outside 1..1000, offset below 0. A missing limit is 1000, the vendor's default.
std::optional<FakeKps::Impl::Page> FakeKps::Impl::parse_page(std::string_view rest) {
  Page page;
  auto q = rest.find('?');
  std::string_view query = q == std::string_view::npos ? std::string_view{} : rest.substr(q + 1);
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    auto eq = pair.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = pair.substr(0, eq), value = pair.substr(eq + 1);
    std::int64_t* field = key == "limit" ? &page.limit : key == "offset" ? &page.offset : nullptr;
    if (field == nullptr) continue;
    const char* end = value.data() + value.size();
    auto [stop, ec] = std::from_chars(value.data(), end, *field);
    if (ec != std::errc{} || stop != end) return std::nullopt;
  }
  if (page.limit < 1 || page.limit > 1000 || page.offset < 0) return std::nullopt;
  return page;
}

// GET <name> or GET <name>?query
bool FakeKps::Impl::is_list(std::string_view rest, std::string_view name) {
  return rest.starts_with(name) && (rest.size() == name.size() || rest[name.size()] == '?');
}

// GET failed-tasks: every failure so far, seeded ones first, paged in the chosen order.
FakeKps::Impl::Response FakeKps::Impl::list_failed(const std::string& rest, unsigned v, bool ka) {
  auto page = parse_page(rest);
  if (!page) {
    violation("bad limit or offset: GET " + rest);
    return error(400, "KPS.0002", "parameter error", v, ka);
  }
  json::array list;
  std::size_t total = 0;
  {
    std::lock_guard lock(mutex);
    ++failed_task_lookups;
    settle_tasks();
    total = failed.size();
    const bool newest = options.failed_tasks_order == FailedTasksOrder::newest_first;
    for (std::int64_t i = page->offset;
         i < static_cast<std::int64_t>(total) && i - page->offset < page->limit; ++i) {
      auto k = static_cast<std::size_t>(i);
      const FailedTask& f = failed[newest ? total - 1 - k : k];
      list.push_back(json::object{{"task_id", f.task_id},
                                  {"operate_type", "UNBIND"},
                                  {"task_time", std::to_string(f.task_time_ms)},
                                  {"task_error_code", f.error_code},
                                  {"task_error_msg", f.error_msg},
                                  {"server_id", f.server_id},
                                  {"server_name", server_name(f.server_id)},
                                  {"keypair_name", keypair_name}});
    }
  }
  if (!options.failed_tasks_total.empty()) {
    // A number kpsd must read without trusting it (1.5, 1e30 ...): the body by hand.
    Response res = reply(200, {}, v, ka);
    res.body() =
        "{\"total\":" + options.failed_tasks_total + ",\"tasks\":" + json::serialize(list) + "}";
    res.prepare_payload();
    return res;
  }
  return reply(200, json::object{{"total", total}, {"tasks", std::move(list)}}, v, ka);
}

// GET running-tasks: tasks not ended, oldest first. Only the oldest running_tasks_cap are
// ever listed or counted, as the vendor's total stops at 1,000.
FakeKps::Impl::Response FakeKps::Impl::list_running(const std::string& rest, unsigned v, bool ka) {
  auto page = parse_page(rest);
  if (!page) {
    violation("bad limit or offset: GET " + rest);
    return error(400, "KPS.0002", "parameter error", v, ka);
  }
  json::array list;
  std::int64_t total = 0;
  {
    std::lock_guard lock(mutex);
    ++running_task_lookups;
    settle_tasks();
    total = std::min(static_cast<std::int64_t>(task_order.size() - ended),
                     std::max<std::int64_t>(0, options.running_tasks_cap));
    for (std::int64_t i = page->offset; i < total && i - page->offset < page->limit; ++i) {
      const std::string& id = task_order[ended + static_cast<std::size_t>(i)];
      const Task& t = tasks.at(id);
      list.push_back(json::object{{"task_id", id},
                                  {"operate_type", "UNBIND"},
                                  {"task_time", std::to_string(t.created_ms)},
                                  {"server_id", t.server_id},
                                  {"server_name", server_name(t.server_id)},
                                  {"keypair_name", keypair_name}});
    }
  }
  return reply(200, json::object{{"total", total}, {"tasks", std::move(list)}}, v, ka);
}

// GET tasks/{id}: the task's status by its age, unless its server's Behavior refuses polls.
FakeKps::Impl::Response FakeKps::Impl::poll_task(const std::string& task_id, unsigned v, bool ka) {
  Task task;
  int poll_refusal = 0;
  {
    std::lock_guard lock(mutex);
    ++task_polls;
    auto it = tasks.find(task_id);
    if (it == tasks.end()) {
      violations.push_back("poll of unknown task " + task_id);  // violation() would relock
      return error(400, "KPS.0001", "taskId is illegal", v, ka);
    }
    task = it->second;
    std::int64_t n = ++polls_by_server[task.server_id];
    if (auto b = behaviors.find(task.server_id); b != behaviors.end()) {
      const Behavior& bh = b->second;
      if (bh.task_poll_status != 0 && (bh.task_poll_times < 0 || n <= bh.task_poll_times)) {
        poll_refusal = bh.task_poll_status;
      }
    }
  }
  if (poll_refusal != 0) {
    return error(static_cast<unsigned>(poll_refusal), poll_refusal == 403 ? "KPS.9003" : "KPS.0001",
                 poll_refusal == 403 ? "no permission to read tasks" : "task not found", v, ka);
  }
  auto age = std::chrono::steady_clock::now() - task.created;
  std::string status = age >= options.task_duration
                           ? (task.fails ? "FAILED_UNBIND" : "SUCCESS_UNBIND")
                       : age >= options.task_duration / 3 ? "RUNNING_UNBIND"
                                                          : "READY_UNBIND";
  return reply(
      200,
      json::object{{"server_id", task.server_id}, {"task_id", task_id}, {"task_status", status}}, v,
      ka);
}

std::int64_t FakeKps::accepted_for(const std::string& server_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->accepted.find(server_id);
  return it == impl_->accepted.end() ? 0 : it->second;
}

std::string FakeKps::server_of_task(const std::string& task_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->tasks.find(task_id);
  return it == impl_->tasks.end() ? std::string{} : it->second.server_id;
}

std::int64_t FakeKps::failed_task_lookups() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->failed_task_lookups;
}

std::int64_t FakeKps::running_task_lookups() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->running_task_lookups;
}

std::int64_t FakeKps::tasks_running() const {
  std::lock_guard lock(impl_->mutex);
  impl_->settle_tasks();
  return static_cast<std::int64_t>(impl_->task_order.size() - impl_->ended);
}

std::int64_t FakeKps::task_polls_for(const std::string& server_id) const {
  std::lock_guard lock(impl_->mutex);
  auto it = impl_->polls_by_server.find(server_id);
  return it == impl_->polls_by_server.end() ? 0 : it->second;
}

std::int64_t FakeKps::task_polls() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->task_polls;
}

}  // namespace kpsd::fake
