// Text from outside shown safely (lib/core/outside_text.hpp, issue 31), and the plain checks around
// it: task ids that become URL paths, Host headers on the HTTP port, batch names, the prune
// guard, secret files others may read.
#include "auth/token_source.hpp"
#include "control/control_handlers.hpp"
#include "core/outside_text.hpp"
#include "core/url.hpp"
#include "kps/classify.hpp"
#include "kps/task_look.hpp"
#include "model/job.hpp"
#include "protocol/control_protocol.hpp"
#include "result_strings.hpp"
#include "temp_dir.hpp"

#include <boost/json/serialize.hpp>

#include <doctest/doctest.h>

#include <filesystem>

using namespace kpsd;

TEST_CASE("printable: controls - C1 - bidi overrides - broken UTF-8 escaped - other text kept") {
  CHECK(printable("KPS.4016\n<0>emerg: FORGED") == "KPS.4016\\x0a<0>emerg: FORGED");
  CHECK(printable("a\rb\x1b[2Jc\x7f") == "a\\x0db\\x1b[2Jc\\x7f");
  CHECK(printable("\x1b]52;c;ZXZpbA==\x07") == "\\x1b]52;c;ZXZpbA==\\x07");  // OSC 52 clipboard
  CHECK(printable("x\xc2\x9b"
                  "2Jy") == "x\\u009b2Jy");       // C1 CSI: a terminal's ESC [
  CHECK(printable("x\xc2\x85y") == "x\\u0085y");  // C1 NEL: a line break
  CHECK(printable("srv\xe2\x80\xae"
                  "fdp.exe") == "srv\\u202efdp.exe");                  // RIGHT-TO-LEFT OVERRIDE
  CHECK(printable("\xe2\x81\xa6x\xe2\x81\xa9") == "\\u2066x\\u2069");  // isolates
  CHECK(printable("\xff\xfe"
                  "ok") == "\\xff\\xfeok");
  CHECK(printable("\xed\xa0\x80") == "\\xed\\xa0\\x80");  // a surrogate is not UTF-8
  CHECK(printable("ecs-北京-1 é ✓") == "ecs-北京-1 é ✓");
  CHECK(printable("") == "");
}

TEST_CASE("printable_capped: a 200 KB value is cut - at a character - and says its size") {
  std::string big(200 * 1024, 'a');
  std::string shown = printable_capped(big, 64);
  CHECK(shown == std::string(64, 'a') + "...(204800 bytes)");
  CHECK(printable_capped("short", 64) == "short");
  std::string cjk;
  for (int i = 0; i < 30; ++i) cjk += "北";  // 3 bytes each
  CHECK(printable_capped(cjk, 10) == "北北北...(90 bytes)");
}

TEST_CASE("spreadsheet_safe: a cell a spreadsheet would run gets a leading quote") {
  for (std::string cell : {"=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"}) {
    CAPTURE(cell);
    CHECK(spreadsheet_safe(cell) == "'" + cell);
  }
  CHECK(spreadsheet_safe("srv-1") == "srv-1");
  CHECK(spreadsheet_safe("") == "");
  CHECK(spreadsheet_safe("a=b") == "a=b");
}

TEST_CASE("task ids from an answer: a strict shape - never a path - never 200 KB") {
  for (std::string id : {"fake-task-1", "d76baba7-ef09-40a2-87ff-3eafec0696e7", "T_1.2:3"}) {
    CAPTURE(id);
    CHECK(is_task_id(id));
  }
  for (std::string id : {"", ".", "..", ".hidden", "a/b", "../x", "a?b", "a%2fb", "a b", "é"}) {
    CAPTURE(id);
    CHECK_FALSE(is_task_id(id));
  }
  CHECK(is_task_id(std::string(max_task_id_bytes, 'a')));
  CHECK_FALSE(is_task_id(std::string(max_task_id_bytes + 1, 'a')));
  // Accepted with such an id: the outcome is unknown (looked up), never a URL.
  HttpResult r;
  r.status = 202;
  r.body = R"({"task_id":"..","status":"SUCCESS"})";
  auto out = classify_disassociate(r, std::chrono::system_clock::now());
  CHECK(out.verdict == Verdict::unknown);
  CHECK(out.task_id.empty());
  CHECK(out.error_msg == "202 with an unreadable body: task_id `..` (2 bytes) is not a task id");
  r.body = R"({"task_id":")" + std::string(200 * 1024, 'x') + R"("})";
  out = classify_disassociate(r, std::chrono::system_clock::now());
  CHECK(out.verdict == Verdict::unknown);
  CHECK(out.error_msg.size() < 200);
  // A list entry with such an id is kept, marked: never followed, never taken for absence.
  auto page = parse_task_list_body(
      R"({"total":2,"tasks":[{"task_id":"../x","server_id":"s"},{"task_id":"ok-1","server_id":"t"}]})");
  REQUIRE(page);
  REQUIRE(page->tasks.size() == 2);
  CHECK_FALSE(page->tasks[0].followable);
  CHECK(page->tasks[1].followable);
  TaskListing running;
  running.tasks = page->tasks;
  running.total = 2;
  TaskListing failed;
  LookSettings settings;
  auto d = decide_look("s", 1000, running, &failed, 0, settings, {});
  CHECK(d.kind == LookDecision::Kind::wait);  // not adopted (a URL), not "no task: send again"
  CHECK(d.note.find("listed under an id kpsd cannot follow (`../x`)") != std::string::npos);
}

TEST_CASE("the HTTP port answers its address and localhost - not a name (DNS rebinding)") {
  for (std::string host : {"127.0.0.1:9464", "127.0.0.1", "localhost:9464", "LOCALHOST",
                           "[::1]:9464", "[::1]", "10.0.0.5:9464", "0.0.0.0:1"}) {
    CAPTURE(host);
    CHECK(host_header_allowed(host));
  }
  for (std::string host : {"", "attacker.example:9464", "attacker.example", "127.0.0.1.nip.io",
                           "1.2.3:9464", "[::1", "[::1]x", "[evil]:80", "kpsd-box:9464"}) {
    CAPTURE(host);
    CHECK_FALSE(host_header_allowed(host));
  }
}

TEST_CASE("loopback: an address in 127.0.0.0/8 - localhost - ::1 - not a name that starts 127.") {
  for (std::string host : {"127.0.0.1", "127.1.2.3", "localhost", "LocalHost", "::1", "[::1]"})
    CHECK(is_loopback_host(host));
  for (std::string host : {"127.example.com", "127.0.0.1.nip.io", "10.0.0.1", "kms.example", ""})
    CHECK_FALSE(is_loopback_host(host));
}

TEST_CASE("batch names on every op: no control character - no C1 - no bidi override") {
  CHECK(validate_batch_name("night-run 2"));
  CHECK(validate_batch_name("ночь"));
  CHECK_FALSE(validate_batch_name("n\n<2>crit: FORGED"));
  CHECK_FALSE(validate_batch_name("n\xe2\x80\xae"));
  CHECK_FALSE(validate_batch_name("n\xc2\x9b"));
  CHECK_FALSE(validate_batch_name("n\xff"));
  // The socket's batch field is checked the same way, before any op logs it.
  auto forged = parse_control_request(
      R"({"op":"cancel","batch":"n\n<2>crit: FORGED audit: uid 0 (root): cancel job 1"})");
  REQUIRE_FALSE(forged);
  CHECK(forged.error().message.find("control character") != std::string::npos);
  CHECK(parse_control_request(R"({"op":"cancel","batch":"42"})"));
  CHECK(parse_control_request(R"({"op":"pause","batch":"night-run"})"));
}

TEST_CASE("prune: kpsd refuses a cut-off in the future - under an hour unless forced") {
  const std::int64_t now = 1'800'000'000'000;
  auto future = prune_allowed(now + 5000, now, true);
  REQUIRE_FALSE(future.has_value());
  CHECK(future.error().message ==
        "prune: the cut-off is 5 s in the future: only jobs that ended before now can be pruned");
  auto recent = prune_allowed(now - 60'000, now, false);
  REQUIRE_FALSE(recent.has_value());
  CHECK(recent.error().message.starts_with("prune: the cut-off is under an hour"));
  CHECK(prune_allowed(now - 60'000, now, true).has_value());
  CHECK(prune_allowed(now - min_prune_age_ms, now, false).has_value());
  // `force` travels with the request.
  PruneRequest r;
  r.older_than_ms = 60'000;
  r.force = true;
  auto back = parse_control_request(boost::json::serialize(to_json(ControlRequest{r})));
  REQUIRE(back);
  CHECK(std::get<PruneRequest>(*back).force);
}

TEST_CASE(
    "a secret file others may read is named with its mode - one only its owner reads is not") {
  test::TempDir dir;
  std::string path = dir.write("token", "t\n");
  CHECK(loose_mode(path) == "");
  std::filesystem::permissions(path, std::filesystem::perms::group_read,
                               std::filesystem::perm_options::add);
  CHECK(loose_mode(path) == path +
                                " holds a secret but its group may read it (mode 0640): chmod "
                                "go-rwx, and give it to the user that reads it (root, or kpsd)");
  std::filesystem::permissions(path, std::filesystem::perms::others_read,
                               std::filesystem::perm_options::add);
  CHECK(loose_mode(path).find("every user may read it (mode 0644)") != std::string::npos);
  CHECK(loose_mode(dir.file("absent")) == "");
}
