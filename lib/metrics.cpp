#include "metrics.hpp"

#include <spdlog/fmt/fmt.h>

namespace kpsd {

void Histogram::observe(std::chrono::milliseconds latency) {
  double seconds = static_cast<double>(latency.count()) / 1000.0;
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (seconds <= bounds[i]) {
      ++counts[i];
      break;
    }
  }
  ++total;
  sum += seconds;
}

std::string Metrics::render(const Gauges& g) const {
  std::string out;
  auto header = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  header("kpsd_jobs", "gauge", "Jobs in the database by state.");
  if (g.jobs_known)
    for (const auto& [state, n] : g.jobs) {
      out += fmt::format("kpsd_jobs{{state=\"{}\"}} {}\n", to_string(state), n);
    }
  header("kpsd_calls_total", "counter",
         "Disassociate calls by outcome (delivered, retryable, permanent, throttled, "
         "reauthenticate, cancelled).");
  for (const auto& [outcome, n] : calls) {
    out += fmt::format("kpsd_calls_total{{outcome=\"{}\"}} {}\n", outcome, n);
  }
  header("kpsd_task_polls_total", "counter", "Task polls by outcome.");
  for (const auto& [outcome, n] : task_polls) {
    out += fmt::format("kpsd_task_polls_total{{outcome=\"{}\"}} {}\n", outcome, n);
  }
  header("kpsd_retries_total", "counter", "Times a job was scheduled for another attempt.");
  out += fmt::format("kpsd_retries_total {}\n", retries);
  header("kpsd_rate_cuts_total", "counter",
         "Congestion episodes: times a 429 cut the request rate (once per episode).");
  out += fmt::format("kpsd_rate_cuts_total {}\n", throttled_rate_cuts);
  header("kpsd_http_request_duration_seconds", "histogram",
         "Latency of KPS API calls that got an answer or failed, by operation.");
  for (const auto& [op, h] : latency) {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < Histogram::bounds.size(); ++i) {
      cumulative += h.counts[i];
      out += fmt::format(
          "kpsd_http_request_duration_seconds_bucket{{operation=\"{}\",le=\"{}\"}} {}\n", op,
          Histogram::bounds[i], cumulative);
    }
    out += fmt::format(
        "kpsd_http_request_duration_seconds_bucket{{operation=\"{}\",le=\"+Inf\"}} {}\n", op,
        h.total);
    out +=
        fmt::format("kpsd_http_request_duration_seconds_sum{{operation=\"{}\"}} {}\n", op, h.sum);
    out += fmt::format("kpsd_http_request_duration_seconds_count{{operation=\"{}\"}} {}\n", op,
                       h.total);
  }
  header("kpsd_calls_in_flight", "gauge", "API calls in flight.");
  out += fmt::format("kpsd_calls_in_flight {}\n", g.in_flight);
  header("kpsd_rate_limit_per_second", "gauge",
         "Current pace found from the gateway's 429s, under the ceiling (0 = not paced).");
  out += fmt::format("kpsd_rate_limit_per_second {}\n", g.rate_per_second);
  header("kpsd_rate_limit_configured_per_second", "gauge",
         "Configured rate_per_second: the ceiling (0 = auto, none).");
  out += fmt::format("kpsd_rate_limit_configured_per_second {}\n", g.configured_rate_per_second);
  header("kpsd_throttled_share", "gauge",
         "Share of API answers in the last minute that were 429 (0 to 1).");
  out += fmt::format("kpsd_throttled_share {}\n", g.throttled_share);
  header("kpsd_quota_holding", "gauge",
         "1 while the gateway refuses every call (a quota window) and kpsd waits for it to turn.");
  out += fmt::format("kpsd_quota_holding {}\n", g.holding_for_quota ? 1 : 0);
  header("kpsd_paused", "gauge", "1 while kpsctl pause is in effect.");
  out += fmt::format("kpsd_paused {}\n", g.paused ? 1 : 0);
  header(
      "kpsd_store_writable", "gauge",
      "0 while the job store cannot be written (lock held, disk full, I/O error): no new calls.");
  out += fmt::format("kpsd_store_writable {}\n", g.store_writable ? 1 : 0);
  header("kpsd_blocked", "gauge",
         "1 while calls are paused because nothing can reach KPS (credentials, TLS, descriptors).");
  out += fmt::format("kpsd_blocked {}\n", g.blocked ? 1 : 0);
  header("kpsd_store_outages_total", "counter", "Times the job store stopped being writable.");
  out += fmt::format("kpsd_store_outages_total {}\n", store_outages);
  header("kpsd_outcomes_unrecorded", "gauge",
         "Call and poll outcomes waiting in memory for their commit.");
  out += fmt::format("kpsd_outcomes_unrecorded {}\n", g.outcomes_waiting);
  header("kpsd_control_clients_refused_total", "counter",
         "Control connections closed because too many clients were connected.");
  out += fmt::format("kpsd_control_clients_refused_total {}\n", control_clients_refused);
  return out;
}

}  // namespace kpsd
