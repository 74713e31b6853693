#pragma once
// kpsctl's command line the way operators read it: every error is one "kpsctl: error: …"
// line naming the offending word, with a did-you-mean for a mistyped command, option or value.
// CLI11 parses; these check what it would say in its own words ("Could not convert: job_id =
// abc", "A subcommand is required") before it gets the chance, and reword what is left.
#include "core/result.hpp"
#include "core/suggest.hpp"
#include "ctl/durations.hpp"

#include <CLI/CLI.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace kpsd::ctl {

using kpsd::did_you_mean;

// The command word of argv (its first word that is neither an option nor an option's value),
// or "" when there is none.
std::string command_word(const CLI::App& app, int argc, char** argv);

// The first problem of argv that CLI11 would word badly: no command, an unknown command, or an
// option that neither the command nor kpsctl knows. Fine when there is none (or --help/--version
// is asked for, which needs none).
Result<> precheck(const CLI::App& app, int argc, char** argv);

// What CLI11's error says, reworded where its words are its own ("The following argument was
// not expected: 2" becomes "unexpected argument `2`").
std::string parse_error_text(const CLI::ParseError& e);

// Validators whose refusals quote the value and say what is wanted.
CLI::Validator non_empty(std::string what);                       // refuses "" naming `what`
CLI::Validator one_of(std::vector<std::string> allowed);          // a word from the list
CLI::Validator whole_number(std::int64_t min, std::int64_t max);  // digits in [min, max]
CLI::Validator job_id();                                          // a whole number above 0
CLI::Validator duration(BareNumber bare);                         // parse_duration_ms

}  // namespace kpsd::ctl
