#include "scheduling/task_finder.hpp"

#include "core/clock.hpp"

#include <spdlog/spdlog.h>

namespace kpsd {

namespace net = boost::asio;

TaskFinder::TaskFinder(net::any_io_executor executor, KpsClient& client, Metrics& metrics,
                       CallPace& pace)
    : client_(client),
      metrics_(metrics),
      pace_(pace),
      lists_(executor, [this](TaskList list) { return fetch(list); }) {}

net::awaitable<std::optional<FailedTaskEntry>> TaskFinder::failed_task(std::string task_id,
                                                                       Clock::time_point seen_at) {
  auto get = lists_.get(TaskList::failed, seen_at);
  std::shared_ptr<const TaskListing> listing = co_await std::move(get);
  if (const TaskListEntry* t = find_task(task_id, *listing)) co_return *t;
  if (!listing->error.empty())
    spdlog::debug("failed-tasks lookup for task {}: {}", task_id, listing->error);
  co_return std::nullopt;
}

// One whole task list, page by page (each page takes a rate token like any call). The order of
// either list is not documented, so every page is read until one comes back short or `total`
// is reached (docs/vendor-api.md, "The failed-task list"; the vendor's Terraform data source
// pages the same way).
net::awaitable<TaskListing> TaskFinder::fetch(TaskList list) {
  const bool running = list == TaskList::running;
  const std::string label = running ? "running" : "failed";
  TaskListing out;
  for (int page = 0; page < max_task_list_pages; ++page) {
    auto sent_at = co_await pace_.list_token();
    if (!sent_at) {
      out.error = "kpsd is stopping";
      co_return out;
    }
    std::int64_t offset = std::int64_t{page} * task_list_page_size;
    auto get = running ? client_.get_running_tasks(task_list_page_size, offset)
                       : client_.get_failed_tasks(task_list_page_size, offset);
    HttpResult r = co_await std::move(get);
    ++out.requests;
    ++metrics_.task_list_requests[label];
    metrics_.latency[running ? "running_tasks" : "failed_tasks"].observe(r.latency);
    pace_.list_answered(*sent_at, r);
    if (r.transport != HttpResult::Transport::ok || r.status != 200) {
      out.error = r.transport == HttpResult::Transport::ok ? "HTTP " + std::to_string(r.status)
                                                           : r.transport_detail;
      co_return out;
    }
    auto body = parse_task_list_body(r.body);
    if (!body) {
      out.error = body.error().message;
      co_return out;
    }
    if (page == 0) out.total = body->total;
    std::size_t got = body->tasks.size();
    for (auto& t : body->tasks) out.tasks.push_back(std::move(t));
    bool short_page = got < static_cast<std::size_t>(task_list_page_size);
    if (short_page || (body->total > 0 && offset + std::int64_t(got) >= body->total)) co_return out;
  }
  out.error = "longer than " + std::to_string(max_task_list_pages) + " pages; read in part";
  co_return out;
}

// Reads the task lists for one job's look and decides (task_look.hpp). Each list is shared with
// every job looking within look_reuse, but never one read before the lost call's deadline (it
// might predate a task the server created late), and the failed list is read after the running
// one (a task that failed between the two reads would be in neither).
net::awaitable<LookDecision> TaskFinder::look(const DeliveryWork& w, const LookSettings& settings) {
  constexpr auto look_reuse = std::chrono::seconds(5);
  auto steady_now = TaskLists::Clock::now();
  auto settled_at =
      steady_now - std::chrono::milliseconds(unix_ms() - (w.lost_at + settings.settle.count()));
  auto not_before = std::max(steady_now - look_reuse, settled_at);
  auto get_running = lists_.get(TaskList::running, not_before);
  std::shared_ptr<const TaskListing> running = co_await std::move(get_running);
  std::shared_ptr<const TaskListing> failed;
  if (!find_running_task(w.server_id, *running, w.known_tasks)) {
    auto get_failed = lists_.get(TaskList::failed, std::max(not_before, running->read_started));
    failed = co_await std::move(get_failed);
  }
  LookDecision d = decide_look(w.server_id, *w.unknown_since, *running, failed.get(), w.look_waits,
                               settings, w.known_tasks);
  ++metrics_.looks[std::string(look_label(d.kind))];
  spdlog::info("job {} ({}): {}", w.job_id, w.server_id, d.note);
  co_return d;
}

}  // namespace kpsd
