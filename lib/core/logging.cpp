#include "core/logging.hpp"

#include "core/outside_text.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <unistd.h>

namespace kpsd {

void log_exception(std::string_view what, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("{}: {}", what, ex.what());
  } catch (...) {
    spdlog::error("{}: unknown exception", what);
  }
}

namespace {

// The syslog priority journald gives a line of this spdlog level.
int syslog_priority(spdlog::level::level_enum level) noexcept {
  switch (level) {
    case spdlog::level::critical:
      return 2;  // LOG_CRIT
    case spdlog::level::err:
      return 3;  // LOG_ERR
    case spdlog::level::warn:
      return 4;  // LOG_WARNING
    case spdlog::level::info:
      return 6;  // LOG_INFO
    default:
      return 7;  // LOG_DEBUG (debug, trace)
  }
}

// "<N>" at the start of a line: journald reads it as the line's priority (sd-daemon(3)), so
// `journalctl -p warning` finds kpsd's warnings.
class PriorityPrefix final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    char prefix[4] = {'<', static_cast<char>('0' + syslog_priority(msg.level)), '>', '\0'};
    dest.append(prefix, prefix + 3);
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PriorityPrefix>();
  }
};

// The message itself, as one record: every value from outside (API answers, database rows,
// socket requests, files) reaches a log line through here, and a CR or LF in it would start a
// journald record of its own, with any priority a "<N>" after it says (issue 31). Escaped
// (outside_text.hpp) and capped, whatever the caller passed.
class OneRecord final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    std::string_view payload(msg.payload.data(), msg.payload.size());
    std::string text = printable_capped(payload, max_log_record_bytes);
    dest.append(text.data(), text.data() + text.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<OneRecord>();
  }
};

}  // namespace

void setup_logging(const std::string& level) {
  std::shared_ptr<spdlog::logger> logger;
  if (::isatty(STDERR_FILENO)) {
    logger = spdlog::stderr_color_mt("kpsd");
  } else {
    logger = spdlog::stderr_logger_mt("kpsd");
  }
  if (std::getenv("JOURNAL_STREAM")) {
    // journald adds its own timestamp; the prefix carries the priority.
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<PriorityPrefix>('*').add_flag<OneRecord>('&').set_pattern("%*%l: %&");
    logger->set_formatter(std::move(formatter));
  } else {
    // RFC 3339 in UTC, as kpsctl prints times.
    auto formatter = std::make_unique<spdlog::pattern_formatter>(spdlog::pattern_time_type::utc);
    formatter->add_flag<OneRecord>('&').set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %&");
    logger->set_formatter(std::move(formatter));
  }
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);  // stderr: every line out at once, none lost on a kill
  spdlog::set_default_logger(logger);
}

}  // namespace kpsd
