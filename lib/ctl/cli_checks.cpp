#include "ctl/cli_checks.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <regex>

namespace kpsd::ctl {

namespace {

bool is_help_or_version(std::string_view arg) {
  return arg == "-h" || arg == "--help" || arg == "--version";
}

// The option of `apps` (the command's, then kpsctl's own) that `name` ("--state", "-o") names.
const CLI::Option* find_option(const std::vector<const CLI::App*>& apps, std::string_view name) {
  for (const CLI::App* app : apps) {
    for (const CLI::Option* o : app->get_options()) {
      if (o->get_positional()) continue;
      for (const auto& l : o->get_lnames()) {
        if (name == "--" + l) return o;
      }
      for (const auto& s : o->get_snames()) {
        if (name == "-" + s) return o;
      }
    }
  }
  return nullptr;
}

std::vector<std::string> option_names(const std::vector<const CLI::App*>& apps) {
  std::vector<std::string> names;
  for (const CLI::App* app : apps) {
    for (const CLI::Option* o : app->get_options()) {
      for (const auto& l : o->get_lnames()) names.push_back("--" + l);
    }
  }
  return names;
}

std::vector<std::string> command_names(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
    names.push_back(sub->get_name());
  }
  return names;
}

std::string joined(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) out += (out.empty() ? "" : ", ") + w;
  return out;
}

// Whether the word after an option that takes a value is that value (an optional value, as
// --watch has, is only taken when it does not look like an option).
bool takes_next(const CLI::Option* o, std::string_view next) {
  if (o->get_expected_max() == 0) return false;  // a flag
  if (o->get_expected_min() == 0) return !next.starts_with("-");
  return true;
}

}  // namespace

std::string command_word(const CLI::App& app, int argc, char** argv) {
  std::vector<const CLI::App*> top{&app};
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!arg.starts_with("-") || arg == "-") return std::string(arg);
    const CLI::Option* o = find_option(top, arg.substr(0, arg.find('=')));
    if (o && arg.find('=') == std::string_view::npos && i + 1 < argc &&
        takes_next(o, argv[i + 1])) {
      ++i;
    }
  }
  return {};
}

namespace {

// The words before the command: a command's own option put first ("kpsctl --batch x stats"),
// or kpsctl's option that took the command as its value ("kpsctl -o stats"). "" if neither.
Result<> before_command(const CLI::App& app, int argc, char** argv,
                        const std::vector<std::string>& commands) {
  std::vector<const CLI::App*> top{&app};
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (!arg.starts_with("-") || arg == "-") return {};  // the command: the rest is its own
    std::string_view name = arg.substr(0, arg.find('='));
    const CLI::Option* o = find_option(top, name);
    if (!o) {
      // The command typed later that has this option, else the first that has it.
      const CLI::App *first = nullptr, *typed = nullptr;
      for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) {
        if (!find_option({sub}, name)) continue;
        if (!first) first = sub;
        for (int j = i + 1; j < argc; ++j) {
          if (sub->get_name() == argv[j]) typed = sub;
        }
      }
      const CLI::App* owner = typed ? typed : first;
      if (owner) {
        return kpsd::fail("`" + std::string(name) +
                          "` is an option of a command: put it after the " + "command (kpsctl " +
                          owner->get_name() + " " + std::string(name) + " ...)");
      }
      return kpsd::fail("unknown option `" + std::string(name) + "`" +
                        did_you_mean(name, option_names(top)) + " (kpsctl --help lists them)");
    }
    if (arg.find('=') != std::string_view::npos || i + 1 >= argc || !takes_next(o, argv[i + 1])) {
      continue;
    }
    std::string value = argv[++i];
    bool is_command = std::find(commands.begin(), commands.end(), value) != commands.end();
    if (is_command && command_word(app, argc - i, argv + i).empty()) {
      return kpsd::fail("`" + std::string(name) + "` took `" + value +
                        "` as its value and no command is left: give " + std::string(name) +
                        " its value first (kpsctl " + std::string(name) + " VALUE " + value + ")");
    }
  }
  return {};
}

}  // namespace

Result<> precheck(const CLI::App& app, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (is_help_or_version(argv[i])) return {};
  }
  std::string command = command_word(app, argc, argv);
  std::vector<std::string> commands = command_names(app);
  if (auto fine = before_command(app, argc, argv, commands); !fine) return fine;
  if (command.empty()) {
    return kpsd::fail("no command given; kpsctl needs one of: " + joined(commands) +
                      " (kpsctl --help says what each does)");
  }
  const CLI::App* sub = nullptr;
  for (const CLI::App* s : app.get_subcommands([](const CLI::App*) { return true; })) {
    if (s->get_name() == command) sub = s;
  }
  if (!sub) {
    return kpsd::fail("unknown command `" + command + "`" + did_you_mean(command, commands) +
                      "; the commands are: " + joined(commands));
  }
  std::vector<const CLI::App*> apps{sub, &app};
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--") break;  // what follows is arguments, whatever they look like
    if (!arg.starts_with("-") || arg == "-" ||
        (arg.size() > 1 && std::isdigit(static_cast<unsigned char>(arg[1]))))
      continue;
    std::string_view name = arg.substr(0, arg.find('='));
    const CLI::Option* o = find_option(apps, name);
    if (!o) {
      return kpsd::fail(command + ": unknown option `" + std::string(name) + "`" +
                        did_you_mean(name, option_names(apps)) + " (kpsctl " + command +
                        " --help lists its options)");
    }
    if (arg.find('=') == std::string_view::npos && i + 1 < argc && takes_next(o, argv[i + 1])) {
      ++i;
    }
  }
  return {};
}

std::string parse_error_text(const CLI::ParseError& e) {
  std::string what = e.what();
  std::smatch m;
  if (std::regex_match(what, m,
                       std::regex("The following arguments? (was|were) not expected: (.*)"))) {
    return "unexpected argument `" + m[2].str() + "`";
  }
  if (std::regex_match(what, m, std::regex("(\\S+): (\\d+) required .* missing"))) {
    return m[1].str() + " needs a value";
  }
  if (std::regex_match(what, m, std::regex("Could not convert: (\\S+) = (.*)"))) {
    return m[1].str() + ": `" + m[2].str() + "` is not a number";
  }
  if (std::regex_match(what, m, std::regex("(\\S+): (`.*|is empty.*)"))) {
    // One of the validators below: "--state `x` is …", or for an argument "`x` is not a job id".
    return m[1].str().starts_with("-") ? m[1].str() + " " + m[2].str() : m[2].str();
  }
  if (!what.empty()) what[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(what[0])));
  return what;
}

CLI::Validator non_empty(std::string what) {
  return CLI::Validator(
      [what](std::string& value) -> std::string {
        return value.empty() ? "is empty: give " + what : std::string();
      },
      "");
}

CLI::Validator one_of(std::vector<std::string> allowed) {
  std::string desc = "{" + joined(allowed) + "}";
  return CLI::Validator(
      [allowed](std::string& value) -> std::string {
        if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return {};
        return "`" + value + "` is not one of: " + joined(allowed) + did_you_mean(value, allowed);
      },
      desc);
}

CLI::Validator whole_number(std::int64_t min, std::int64_t max) {
  return CLI::Validator(
      [min, max](std::string& value) -> std::string {
        std::int64_t n = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec == std::errc{} && ptr == value.data() + value.size() && n >= min && n <= max) {
          return {};
        }
        return "`" + value + "` is not a whole number from " + std::to_string(min) + " to " +
               std::to_string(max);
      },
      "");
}

CLI::Validator job_id() {
  return CLI::Validator(
      [](std::string& value) -> std::string {
        std::int64_t n = 0;
        auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
        if (ec == std::errc{} && ptr == value.data() + value.size() && n > 0) return {};
        return "`" + value +
               "` is not a job id (a whole number above 0; a batch goes with "
               "--batch)";
      },
      "");
}

CLI::Validator duration(BareNumber bare) {
  return CLI::Validator(
      [bare](std::string& value) -> std::string {
        if (parse_duration_ms(value, bare)) return {};
        return "`" + value + "` is not " + duration_help +
               (bare == BareNumber::seconds ? "; a bare number is seconds" : "");
      },
      "");
}

}  // namespace kpsd::ctl
