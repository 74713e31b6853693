#include "web/status_api.hpp"

#include "control/overview.hpp"
#include "core/clock.hpp"
#include "core/url.hpp"
#include "model/job_endings.hpp"
#include "model/metrics.hpp"
#include "protocol/control_protocol.hpp"
#include "scheduling/scheduler.hpp"
#include "store/job_store.hpp"
#include "web/web_assets.hpp"

#include <boost/json.hpp>

#include <charconv>

namespace kpsd {

namespace net = boost::asio;
namespace json = boost::json;

namespace {

constexpr std::int64_t default_page = 50;
constexpr std::int64_t max_page = 500;
constexpr std::size_t history_minutes = 360;
constexpr std::int64_t recent_batches = 20;

std::optional<std::int64_t> to_int(std::string_view text) {
  std::int64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

WebAnswer json_answer(const json::object& o, unsigned status = 200) {
  return WebAnswer{status, "application/json", json::serialize(o) + "\n", false};
}

WebAnswer error_answer(unsigned status, std::string_view message) {
  return json_answer(json::object{{"error", message}}, status);
}

}  // namespace

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    std::string key = percent_decode(pair.substr(0, eq), /*plus_as_space=*/true);
    std::string value =
        eq == std::string_view::npos ? "" : percent_decode(pair.substr(eq + 1), true);
    out[std::move(key)] = std::move(value);
  }
  return out;
}

StatusApi::StatusApi(DbWorker& db, Scheduler& scheduler, const Metrics& metrics)
    : db_(db), scheduler_(scheduler), metrics_(metrics) {}

net::awaitable<std::optional<WebAnswer>> StatusApi::get(std::string target) {
  std::string_view t = target;
  auto q = t.find('?');
  std::string_view path = t.substr(0, q);
  std::string_view query = q == std::string_view::npos ? std::string_view{} : t.substr(q + 1);
  if (path == "/index.html") path = "/";
  for (const WebAsset& a : web_assets()) {
    if (a.path == path) {
      co_return WebAnswer{200, std::string(a.content_type), std::string(a.body), true};
    }
  }
  if (path == "/api/overview") co_return co_await overview();
  if (path == "/api/failures") co_return co_await failures(parse_query(query));
  if (path.starts_with("/api/jobs/")) {
    auto id = to_int(path.substr(10));
    if (!id || *id <= 0) co_return error_answer(400, "job id must be a positive number");
    co_return co_await job(*id);
  }
  if (path.starts_with("/api/")) co_return error_answer(404, "no such API");
  co_return std::nullopt;
}

net::awaitable<WebAnswer> StatusApi::overview() {
  std::int64_t now = unix_ms();
  auto clock_now = std::chrono::steady_clock::now();
  bool refresh_batches =
      batches_at_ == std::chrono::steady_clock::time_point{} ||
      clock_now - batches_at_ >= std::max<std::chrono::steady_clock::duration>(
                                     std::chrono::seconds(3), 50 * batches_took_);
  struct Read {
    std::map<JobState, std::int64_t> counts;
    std::optional<std::int64_t> oldest;
    std::optional<std::vector<Batch>> batches;
    std::vector<Batch> paused;
  };
  Read read;
  std::string read_problem;
  try {
    auto read_store = [refresh_batches](JobQueries& s) {
      Read r;
      r.counts = s.count_by_state();
      r.oldest = s.oldest_queued_due();
      r.paused = s.paused_batches();  // the banner: always fresh, however large the batches
      if (refresh_batches) r.batches = s.list_batches(recent_batches);
      return r;
    };
    read = co_await db_.call(std::move(read_store));
  } catch (const std::exception& e) {
    read_problem = e.what();  // shown, not hidden: an outage is what the page is for
  }
  if (read.batches) {
    batches_ = std::move(*read.batches);
    batches_took_ = std::chrono::steady_clock::now() - clock_now;
    batches_at_ = std::chrono::steady_clock::now();
  }
  json::array batches;
  for (const Batch& b : batches_) batches.push_back(batch_to_json(b));
  json::array history;
  auto answers = metrics_.history.last(now, history_minutes);
  // The endings' minutes, as the store committed them, beside the answers' (same minutes).
  auto ended = metrics_.endings ? metrics_.endings->last(now, history_minutes)
                                : std::vector<MinuteHistory::Minute>(answers.size());
  for (std::size_t i = 0; i < answers.size(); ++i) {
    const auto& m = answers[i];
    history.push_back(json::object{{"minute_ms", m.minute * 60000},
                                   {"succeeded", ended[i].succeeded},
                                   {"failed", ended[i].failed},
                                   {"cancelled", ended[i].cancelled},
                                   {"answers", m.answers},
                                   {"throttled", m.throttled}});
  }
  json::object reply = stats_json(
      Overview{read.counts, read.oldest, read_problem, scheduler_.stats(), std::move(read.paused)},
      now);
  reply["now_ms"] = now;
  reply["version"] = KPSD_VERSION;
  reply["batches"] = std::move(batches);
  reply["batches_counted_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                                    std::chrono::steady_clock::now() - batches_at_)
                                    .count();
  reply["history"] = std::move(history);
  co_return json_answer(reply);
}

net::awaitable<WebAnswer> StatusApi::failures(const std::map<std::string, std::string>& query) {
  ListQuery q;
  q.limit = default_page;
  std::optional<std::string> batch;
  // The failures view by default; `state=any` (or another state) lists the rest.
  std::string state = "failed";
  for (const auto& [key, value] : query) {
    if (key == "state") {
      state = value;
    } else if (key == "batch") {
      if (!value.empty()) batch = value;
    } else if (key == "after" || key == "limit") {
      auto n = to_int(value);
      if (!n || *n < 0 || (key == "limit" && (*n < 1 || *n > max_page))) {
        co_return error_answer(400, key + " must be " +
                                        (key == "limit" ? "1 to " + std::to_string(max_page)
                                                        : std::string("a job id")));
      }
      (key == "after" ? q.after_id : q.limit) = *n;
    } else {
      co_return error_answer(400, "unknown parameter " + key);
    }
  }
  if (state != "any") {
    auto parsed = parse_job_state(state);
    if (!parsed) co_return error_answer(400, "state must be a job state or any");
    q.state = parsed;
  }
  auto read_page = [q, batch](JobQueries& s) {
    return s.list_page(q, batch, /*with_request_ids=*/true);
  };
  JobPage page = co_await db_.call(std::move(read_page));
  if (page.batch_missing) co_return error_answer(404, "no batch " + *batch);
  co_return json_answer(job_page_to_json(page, q.limit));
}

net::awaitable<WebAnswer> StatusApi::job(std::int64_t id) {
  auto read_job = [id](JobQueries& s) { return s.job_with_attempts(id); };
  auto found = co_await db_.call(std::move(read_job));
  if (!found) co_return error_answer(404, "no job with id " + std::to_string(id));
  co_return json_answer(job_detail_to_json(*found));
}

}  // namespace kpsd
