// corridorctl's evidence-request commands (client/ctl/evidence_requests.cc)
// in process, through ctl::Main:
// - what needs no node: missing and contradictory options, malformed and past
//   dates, ids that are not ids, each refused before any node is reached with
//   a sentence naming the option (the commands are run without a node, so a
//   check that let the input through would end in "to reach your node");
// - the date, deadline and file-name rules as functions, by class of input;
// - `evidence custody` and `evidence fetch` against a fake node (EvidenceService
//   and CaseService answering from the test): each proof, receipt and digest
//   check made to fail by a tampered answer, and files never overwritten or
//   written outside --out;
// - the whole flow with corridorctl against two real nodes in process (a
//   prosecutor's org and a union holding the evidence): request, list, show,
//   decide, fetch and custody, each proof and receipt checked.
#include <sys/stat.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/ctl/display.h"
#include "client/ctl/evidence_requests.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/evidence.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "ledger/merkle.h"
#include "ledger/note.h"
#include "tests/integration/calls.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/federation.h"
#include "tests/testing/inproc_federation.h"

namespace corridor {
namespace {

using testing::Ctl;
using testing::CtlRun;
using testing::ExpectWords;

class EvidenceCtlArgsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // No node: a command that passes its own checks stops at "to reach your node".
    testing::ClearCtlEnvironment();
  }
};

constexpr char kNoNode[] = "to reach your node, set --node";

struct Refusal {
  std::vector<std::string> argv;
  std::string says;
};

// Each is refused with exit 1, nothing on stdout, the sentence `says` in
// words, before any node is looked for.
void ExpectRefused(const std::vector<Refusal>& cases) {
  for (const Refusal& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.argv, " "));
    CtlRun r = Ctl(c.argv);
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(absl::StrContains(r.err, c.says)) << r;
    EXPECT_FALSE(absl::StrContains(r.err, kNoNode)) << r;
    EXPECT_TRUE(r.out.empty()) << r;
    ExpectWords(r.err);
  }
}

// Each gets past the command's own checks (and stops for want of a node).
void ExpectAccepted(const std::vector<std::vector<std::string>>& cases) {
  for (const auto& argv : cases) {
    SCOPED_TRACE(absl::StrJoin(argv, " "));
    CtlRun r = Ctl(argv);
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(absl::StrContains(r.err, kNoNode)) << r;
  }
}

// `evidence request` with every required option, plus `more`.
std::vector<std::string> RequestArgs(std::vector<std::string> more) {
  std::vector<std::string> argv = {
      "evidence",    "request", "--holder",  "ministry-id",   "--case",        "C-1",
      "--agreement", "mou-1",   "--purpose", "case-handling", "--legal-basis", "Art. 5 MLA treaty"};
  argv.insert(argv.end(), more.begin(), more.end());
  return argv;
}

const std::vector<std::string> kMalformedDates = {"2099-02-30",
                                                  "2099-13-01",
                                                  "2099-1-5",
                                                  "2099-12-32",
                                                  "tomorrow",
                                                  "31/12/2099",
                                                  "2099-12-31 17:00",
                                                  "2099-12-31T17:00:00",
                                                  "2099-12-31T25:00:00Z",
                                                  "2099-12-31T17:00:00+25:00",
                                                  "20991231",
                                                  "",
                                                  "2099-12-31Z",
                                                  "2099-12-31T17:00Z",
                                                  " 2099-12-31"};

const std::vector<std::string> kPastDates = {"2020-01-01", "1999-12-31T23:59:59Z",
                                             "2021-06-01T08:00:00+08:00"};

TEST_F(EvidenceCtlArgsTest, RequestNamesEachMissingOption) {
  const std::vector<std::string> full = RequestArgs({"--all"});
  for (const char* option : {"holder", "case", "agreement", "purpose", "legal-basis"}) {
    std::vector<std::string> argv;
    for (size_t i = 0; i < full.size(); ++i) {
      if (full[i] == absl::StrCat("--", option)) {
        ++i;  // and its value
        continue;
      }
      argv.push_back(full[i]);
    }
    ExpectRefused({{argv, absl::StrCat("missing --", option)}});
  }
  ExpectAccepted({full});
}

TEST_F(EvidenceCtlArgsTest, RequestTakesEitherItemsOrAllAndOnlyEvidenceIds) {
  ExpectRefused({
      {RequestArgs({}), "say which evidence you ask for: --items E-.. [E-..] or --all"},
      {RequestArgs({"--items", "E-1", "--all"}), "--items and --all exclude each other"},
      {RequestArgs({"--all", "--items", "E-1", "E-2"}), "--items and --all exclude each other"},
      {RequestArgs({"E-1"}), "unexpected \"E-1\": name the items with --items"},
      {RequestArgs({"--all", "E-1"}), "unexpected \"E-1\""},
      {RequestArgs({"--items", "C-1"}), "\"C-1\" is not an evidence id"},
      {RequestArgs({"--items", "E-1", "REF-2"}), "\"REF-2\" is not an evidence id"},
      {RequestArgs({"--items", "E-1,e-2"}), "\"e-2\" is not an evidence id"},
      {RequestArgs({"--items", "E-"}), "\"E-\" is not an evidence id"},
  });
  ExpectAccepted({
      RequestArgs({"--items", "E-1"}),
      RequestArgs({"--items", "E-1", "E-2", "E-3"}),
      RequestArgs({"--items", "E-1,E-2", "--items", "E-3"}),
      RequestArgs({"--all", "--urgent"}),
  });
}

TEST_F(EvidenceCtlArgsTest, RequestBoundsItemsAndLegalBasis) {
  std::vector<std::string> many = {"--items"};
  for (int i = 0; i < 1001; ++i) many.push_back(absl::StrCat("E-", i));
  std::vector<std::string> thousand(many.begin(), many.end() - 1);
  // `evidence request --all` with this legal basis.
  const auto with_basis = [](const std::string& basis) {
    std::vector<std::string> argv = RequestArgs({"--all"});
    *(std::find(argv.begin(), argv.end(), "--legal-basis") + 1) = basis;
    return argv;
  };
  const std::vector<std::string> long_basis = with_basis(std::string(2001, 'x'));
  const std::vector<std::string> longest = with_basis(std::string(2000, 'x'));
  std::string multibyte;
  for (int i = 0; i < 2000; ++i) multibyte += "\xc3\xbc";  // ü: 2 bytes, 1 character
  const std::vector<std::string> longest_multibyte = with_basis(multibyte);
  ExpectRefused({{RequestArgs(many), "at most 1000 items"},
                 {long_basis, "--legal-basis is longer than 2000 characters"}});
  ExpectAccepted({RequestArgs(thousand), longest, longest_multibyte});
}

TEST_F(EvidenceCtlArgsTest, RequestRefusesEveryMalformedOrPastDeadline) {
  std::vector<Refusal> cases;
  for (const std::string& d : kMalformedDates) {
    cases.push_back({RequestArgs({"--all", "--deadline", d}),
                     absl::StrCat("--deadline \"", d, "\" is not a date: write YYYY-MM-DD")});
  }
  for (const std::string& d : kPastDates) {
    cases.push_back({RequestArgs({"--all", "--deadline", d}), "is in the past"});
  }
  ExpectRefused(cases);
  ExpectAccepted({RequestArgs({"--all", "--deadline", "2099-12-31"}),
                  RequestArgs({"--all", "--deadline", "2099-12-31T17:00:00+08:00"}),
                  RequestArgs({"--all", "--deadline", "2099-12-31T17:00:00Z"}),
                  RequestArgs({"--all", "--deadline", "2099-12-31T17:00:00.5-05:00"})});
}

TEST_F(EvidenceCtlArgsTest, DecideTakesExactlyOneWayAndOnlyItsTerms) {
  ExpectRefused({
      {{"decide"}, "name the evidence request (ER-...)"},
      {{"decide", "--approve"}, "name the evidence request (ER-...)"},
      {{"decide", "REF-1", "--approve"}, "name the evidence request (ER-...)"},
      {{"decide", "ER-1"}, "say how you decide: --approve [EVIDENCE...] or --deny --reason CODE"},
      {{"decide", "ER-1", "--approve", "--deny", "--reason", "x"},
       "--approve and --deny exclude each other"},
      {{"decide", "ER-1", "--deny"}, "missing --reason"},
      {{"decide", "ER-1", "--deny", "E-1", "--reason", "x"}, "evidence ids go with --approve"},
      {{"decide", "ER-1", "--deny", "--reason", "x", "--until", "2099-01-01"},
       "--until is a term of an approval"},
      {{"decide", "ER-1", "--deny", "--reason", "x", "--max-fetches", "2"},
       "--max-fetches is a term of an approval"},
      {{"decide", "ER-1", "--deny", "--reason", "x", "--condition", "c"},
       "--condition is a term of an approval"},
      {{"decide", "ER-1", "--approve", "--reason", "x"}, "--reason goes with --deny"},
      {{"decide", "ER-1", "--approve", "C-1"}, "\"C-1\" is not an evidence id"},
      {{"decide", "ER-1", "--approve", "E-1", "ER-2"}, "\"ER-2\" is not an evidence id"},
  });
  ExpectAccepted({{"decide", "ER-1", "--approve"},
                  {"decide", "ER-1", "--approve", "E-1", "E-2", "--from", "union-sg"},
                  {"decide", "ER-1", "--deny", "--reason", "insufficient-basis"}});
}

TEST_F(EvidenceCtlArgsTest, ADenialsReasonIsARuleCodeNotFreeText) {
  std::vector<Refusal> cases;
  // An empty value is an option given: refused as no code, not as missing.
  for (const std::string& reason :
       {std::string("Not enough"), std::string("insufficient basis"), std::string("UPPER"),
        std::string("code\nFORGED"), std::string("a_b"), std::string(65, 'a'), std::string("")}) {
    cases.push_back(
        {{"decide", "ER-1", "--deny", "--reason", reason}, "--reason takes a rule's code"});
  }
  ExpectRefused(cases);
  ExpectAccepted({{"decide", "ER-1", "--deny", "--reason", "insufficient-basis"},
                  {"decide", "ER-1", "--deny", "--reason", "no-agreement-2"},
                  {"decide", "ER-1", "--deny", "--reason", std::string(64, 'a')}});
}

TEST_F(EvidenceCtlArgsTest, AnApprovalsTermsAreBounded) {
  std::vector<Refusal> cases;
  for (const char* n : {"0", "101", "-1", "three", "1.5", "", "4294967297"}) {
    cases.push_back({{"decide", "ER-1", "--approve", "--max-fetches", n},
                     "--max-fetches must be a number from 1 to 100"});
  }
  for (const std::string& d : kMalformedDates) {
    cases.push_back({{"decide", "ER-1", "--approve", "--until", d},
                     absl::StrCat("--until \"", d, "\" is not a date")});
  }
  for (const std::string& d : kPastDates) {
    cases.push_back({{"decide", "ER-1", "--approve", "--until", d}, "is in the past"});
  }
  cases.push_back({{"decide", "ER-1", "--approve", "--condition", std::string(501, 'c')},
                   "each --condition is a sentence of 1 to 500 characters"});
  cases.push_back({{"decide", "ER-1", "--approve", "--condition", ""},
                   "each --condition is a sentence of 1 to 500 characters"});
  std::vector<std::string> too_many = {"decide", "ER-1", "--approve"};
  for (int i = 0; i < 21; ++i) {
    too_many.push_back("--condition");
    too_many.push_back(absl::StrCat("condition ", i));
  }
  cases.push_back({too_many, "at most 20 --condition options"});
  ExpectRefused(cases);
  std::vector<std::string> twenty(too_many.begin(), too_many.end() - 2);
  ExpectAccepted({{"decide", "ER-1", "--approve", "--max-fetches", "1"},
                  {"decide", "ER-1", "--approve", "--max-fetches", "100"},
                  {"decide", "ER-1", "--approve", "--until", "2099-01-01"},
                  {"decide", "ER-1", "--approve", "--condition", std::string(500, 'c')},
                  twenty});
}

TEST_F(EvidenceCtlArgsTest, FetchNeedsARequestAndADirectoryItCanCreate) {
  const std::string dir = testing::MakeTempDir("evctl-fetch-args");
  ASSERT_TRUE(WriteFileAtomically(dir + "/a-file", "mine").ok());
  ExpectRefused({
      {{"evidence", "fetch", "--out", dir}, "name the evidence request (ER-...)"},
      {{"evidence", "fetch", "E-1", "--out", dir}, "name the evidence request (ER-...)"},
      {{"evidence", "fetch", "ER-1"}, "missing --out"},
      {{"evidence", "fetch", "ER-1", "--out", dir + "/a-file"},
       absl::StrCat("--out ", dir, "/a-file is a file")},
      {{"evidence", "fetch", "ER-1", "--out", dir + "/none/sub"},
       absl::StrCat("the directory ", dir, "/none it would be created in does not exist")},
  });
  // Nothing was created or changed by the refusals.
  struct stat st;
  EXPECT_NE(stat((dir + "/none").c_str(), &st), 0);
  auto mine = ReadFileToString(dir + "/a-file");
  EXPECT_TRUE(mine.ok() && *mine == "mine");
  ExpectAccepted({{"evidence", "fetch", "ER-1", "--out", dir},
                  {"evidence", "fetch", "ER-1", "--out", dir + "/new/"}});
  EXPECT_NE(stat((dir + "/new").c_str(), &st), 0) << "created before the node was reached";
}

TEST_F(EvidenceCtlArgsTest, CustodyNeedsAnItemAndAKeyFromTheFederation) {
  ExpectRefused({
      {{"evidence", "custody"}, "name the evidence item"},
      {{"evidence", "custody", "ER-1", "--vkey", "x"}, "name the evidence item"},
      {{"evidence", "custody", "E-1"}, "give the roster (--roster FILE or CORRIDOR_ROSTER)"},
      {{"evidence", "custody", "E-1", "--roster", "/no/such/roster.json"}, "/no/such/roster.json"},
  });
  CtlRun bad_vkey = Ctl({"evidence", "custody", "E-1", "--vkey", "not-a-key"});
  EXPECT_EQ(bad_vkey.code, 1) << bad_vkey;
  EXPECT_FALSE(absl::StrContains(bad_vkey.err, kNoNode)) << bad_vkey;
}

TEST_F(EvidenceCtlArgsTest, RequestsListTakesNoWordsAndShowNeedsARequest) {
  ExpectRefused({
      {{"requests", "ER-1"}, "to see one request: corridorctl requests show ER-..."},
      {{"requests", "show"}, "name the evidence request (ER-...)"},
      {{"requests", "show", "E-1"}, "name the evidence request (ER-...)"},
  });
  ExpectAccepted({{"requests"}, {"requests", "show", "ER-1", "--from", "union-sg"}});
}

// The existing evidence commands are untouched by the new ones beside them.
TEST_F(EvidenceCtlArgsTest, EvidenceAddListGetStillParseAsBefore) {
  ExpectRefused({{{"evidence", "get", "C-1"}, "corridorctl evidence get CASE EVIDENCE"},
                 {{"evidence", "get", "C-1", "E-1"}, "missing --out, --purpose"},
                 {{"evidence", "add", "C-1"}, "name the file"}});
  ExpectAccepted({{"evidence", "list", "C-1"},
                  {"evidence", "get", "C-1", "E-1", "--out", "x", "--purpose", "p"}});
}

// ---- the rules as functions ---------------------------------------------------

TEST(ParseDateOptionTest, ADateMeansTheEndOfThatDayInUtcAndTimesAreConvertedToUtc) {
  const absl::Time now = absl::FromUnixSeconds(1767225600);  // 2026-01-01T00:00:00Z
  const std::map<std::string, std::string> want = {
      {"2026-01-01", "2026-01-01T23:59:59+00:00"},
      {"2026-12-31", "2026-12-31T23:59:59+00:00"},
      {"2028-02-29", "2028-02-29T23:59:59+00:00"},
      {"2026-12-31T17:00:00+08:00", "2026-12-31T09:00:00+00:00"},
      {"2026-12-31T17:00:00Z", "2026-12-31T17:00:00+00:00"},
      {"2026-12-31T23:30:00-05:00", "2027-01-01T04:30:00+00:00"},
      {"2026-01-01T00:00:01Z", "2026-01-01T00:00:01+00:00"},
  };
  for (const auto& [in, out] : want) {
    auto got = ctl::ParseDateOption(in, "deadline", now);
    ASSERT_TRUE(got.ok()) << in << ": " << got.status();
    EXPECT_EQ(*got, out) << in;
  }
  // Not after now: refused, whatever the form.
  for (const char* past :
       {"2025-12-31", "2026-01-01T00:00:00Z", "2026-01-01T07:59:59+08:00", "1970-01-01"}) {
    auto got = ctl::ParseDateOption(past, "until", now);
    EXPECT_FALSE(got.ok()) << past;
    EXPECT_TRUE(absl::StrContains(got.status().message(), "--until")) << got.status();
  }
  EXPECT_FALSE(ctl::ParseDateOption("2028-02-30", "deadline", now).ok());
  EXPECT_FALSE(ctl::ParseDateOption("2027-02-29", "deadline", now).ok());
}

v1::EvidenceRequestSummary Summary(absl::Time deadline, bool urgent, v1::EvidenceRequestState state,
                                   bool overdue = false) {
  v1::EvidenceRequestSummary s;
  s.set_deadline(absl::FormatTime(absl::RFC3339_sec, deadline, absl::UTCTimeZone()));
  s.set_urgent(urgent);
  s.set_state(state);
  s.set_overdue(overdue);
  return s;
}

TEST(DeadlineCellTest, UrgentUndecidedInHoursOthersAsADateOverdueAlwaysMarked) {
  const absl::Time now = absl::FromUnixSeconds(1767225600);  // 2026-01-01T00:00:00Z
  const auto pending = v1::EVIDENCE_REQUEST_STATE_PENDING;
  const auto approved = v1::EVIDENCE_REQUEST_STATE_APPROVED;
  const auto no_response = v1::EVIDENCE_REQUEST_STATE_NO_RESPONSE;
  struct Case {
    v1::EvidenceRequestSummary s;
    std::string want;
  };
  const std::vector<Case> cases = {
      {Summary(now + absl::Hours(8), true, pending), "8h left"},
      {Summary(now + absl::Minutes(270), true, pending), "5h left"},
      {Summary(now + absl::Minutes(10), true, pending), "1h left"},
      {Summary(now - absl::Minutes(200), true, pending), "OVERDUE by 3h"},
      {Summary(now - absl::Minutes(20), true, pending), "OVERDUE by <1h"},
      {Summary(now - absl::Hours(30), true, no_response), "OVERDUE by 30h"},
      // The node says overdue (its clock is ahead of ours): shown so.
      {Summary(now + absl::Minutes(5), true, pending, true), "OVERDUE by <1h"},
      {Summary(now + absl::Minutes(5), false, pending, true), "OVERDUE since 2026-01-01"},
      {Summary(now + absl::Hours(24 * 9), false, pending), "2026-01-10"},
      {Summary(now - absl::Hours(24 * 2), false, pending), "OVERDUE since 2025-12-30"},
      {Summary(now - absl::Hours(24 * 2), false, no_response), "OVERDUE since 2025-12-30"},
      // Decided: a date, never overdue.
      {Summary(now - absl::Hours(5), true, approved), "2025-12-31"},
      {Summary(now - absl::Hours(24 * 2), false, v1::EVIDENCE_REQUEST_STATE_DENIED), "2025-12-30"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ctl::DeadlineCell(c.s, now), c.want) << c.s.ShortDebugString();
  }
  v1::EvidenceRequestSummary garbled;
  garbled.set_deadline("soon");
  garbled.set_overdue(true);
  EXPECT_EQ(ctl::DeadlineCell(garbled, now), "OVERDUE soon");
}

TEST(SafeFileNameTest, OnlyANameThatStaysInTheDirectoryAndShowsAsItselfIsKept) {
  for (const std::string& ok : {std::string("report.pdf"), std::string("Bericht \xc3\x9c.pdf"),
                                std::string("\xd1\x84\xd0\xb0\xd0\xb9\xd0\xbb.jpg"),
                                std::string("a..b"), std::string(200, 'n')}) {
    EXPECT_EQ(ctl::SafeFileName(ok, "fallback"), ok);
  }
  for (const std::string& bad :
       {std::string(""), std::string("."), std::string(".."), std::string("../x.pdf"),
        std::string("a/b.pdf"), std::string("/etc/passwd"), std::string("a\\b.pdf"),
        std::string(".bashrc"), std::string("x\ny.pdf"), std::string("x\x1b[31m.pdf"),
        std::string("gpj.\xe2\x80\xaepdf"), std::string("\xff.pdf"), std::string("x\ty"),
        std::string(201, 'n'), std::string("zero\xe2\x80\x8bwidth")}) {
    EXPECT_EQ(ctl::SafeFileName(bad, "fallback"), "fallback") << ctl::Printable(bad);
  }
}

// ---- custody and fetch against a fake node ------------------------------------

// EvidenceService as the test sets it: Get, Fetch and Custody answer what the
// test put in the fields.
class FakeEvidenceService : public v1::EvidenceService::Service {
 public:
  v1::EvidenceRequestDetail detail;
  v1::FetchGrantedResponse fetched;
  v1::CustodyResponse custody;
  v1::ListEvidenceRequestsResponse list;

  // The last Request / Decide the node was sent.
  v1::RequestEvidenceRequest last_request() {
    absl::MutexLock lock(&mu_);
    return last_request_;
  }
  v1::DecideEvidenceRequest last_decision() {
    absl::MutexLock lock(&mu_);
    return last_decision_;
  }
  int fetch_calls() {
    absl::MutexLock lock(&mu_);
    return fetch_calls_;
  }
  grpc::Status Request(grpc::ServerContext*, const v1::RequestEvidenceRequest* req,
                       v1::RequestEvidenceResponse* out) override {
    absl::MutexLock lock(&mu_);
    last_request_ = *req;
    out->set_request_id("ER-0000000000B2");
    out->set_envelope_id("env-1");
    out->set_deadline(req->deadline());
    return grpc::Status::OK;
  }
  grpc::Status Decide(grpc::ServerContext*, const v1::DecideEvidenceRequest* req,
                      v1::DecideEvidenceResponse* out) override {
    absl::MutexLock lock(&mu_);
    last_decision_ = *req;
    if (req->approve()) out->set_grant_id("G-0000000000C3");
    out->set_envelope_id("env-2");
    return grpc::Status::OK;
  }
  // Orders the handlers' reads of the answers before what the caller does next.
  void Sync() { absl::MutexLock lock(&mu_); }
  grpc::Status List(grpc::ServerContext*, const v1::ListEvidenceRequestsRequest*,
                    v1::ListEvidenceRequestsResponse* out) override {
    absl::MutexLock lock(&mu_);
    *out = list;
    return grpc::Status::OK;
  }
  grpc::Status Get(grpc::ServerContext*, const v1::GetEvidenceRequestRequest*,
                   v1::EvidenceRequestDetail* out) override {
    absl::MutexLock lock(&mu_);
    *out = detail;
    return grpc::Status::OK;
  }
  grpc::Status Fetch(grpc::ServerContext*, const v1::FetchGrantedRequest*,
                     v1::FetchGrantedResponse* out) override {
    absl::MutexLock lock(&mu_);
    ++fetch_calls_;
    *out = fetched;
    return grpc::Status::OK;
  }
  grpc::Status Custody(grpc::ServerContext*, const v1::CustodyRequest*,
                       v1::CustodyResponse* out) override {
    absl::MutexLock lock(&mu_);
    *out = custody;
    return grpc::Status::OK;
  }

 private:
  absl::Mutex mu_;
  int fetch_calls_ ABSL_GUARDED_BY(mu_) = 0;
  v1::RequestEvidenceRequest last_request_ ABSL_GUARDED_BY(mu_);
  v1::DecideEvidenceRequest last_decision_ ABSL_GUARDED_BY(mu_);
};

// CaseService.GetEvidence serving `items` (id → record and bytes); records
// what each download asked for.
class FakeCaseService : public v1::CaseService::Service {
 public:
  std::map<std::string, std::pair<v1::EvidenceItem, std::string>> items;

  std::vector<std::string> asked() {
    absl::MutexLock lock(&mu_);
    return asked_;
  }
  // Orders the handler's reads of `items` before what the caller does next.
  void Sync() { absl::MutexLock lock(&mu_); }
  grpc::Status GetEvidence(grpc::ServerContext*, const v1::GetEvidenceRequest* req,
                           grpc::ServerWriter<v1::EvidenceChunk>* writer) override {
    std::pair<v1::EvidenceItem, std::string> found;
    {
      absl::MutexLock lock(&mu_);
      asked_.push_back(absl::StrCat(req->case_id(), " ", req->evidence_id(), " ", req->purpose()));
      auto it = items.find(req->evidence_id());
      if (it == items.end()) return grpc::Status(grpc::StatusCode::NOT_FOUND, "no such evidence");
      found = it->second;
    }
    v1::EvidenceChunk head;
    *head.mutable_item() = found.first;
    writer->Write(head);
    v1::EvidenceChunk data;
    data.set_data(found.second);
    writer->Write(data);
    return grpc::Status::OK;
  }

 private:
  absl::Mutex mu_;
  std::vector<std::string> asked_ ABSL_GUARDED_BY(mu_);
};

// A ledger of entries and the Merkle tree over them, for proofs a node would send.
struct FakeLedger {
  std::vector<std::string> entries;

  merkle::Hash Node(int level, uint64_t index) const {
    if (level == 0) return merkle::HashLeaf(entries[index]);
    return merkle::HashChildren(Node(level - 1, 2 * index), Node(level - 1, 2 * index + 1));
  }
  merkle::NodeSource Nodes() const {
    return [this](int level, uint64_t index) -> absl::StatusOr<merkle::Hash> {
      return Node(level, index);
    };
  }
};

constexpr char kRequester[] = "union-sg";
constexpr char kHolder[] = "ministry-id";
constexpr char kLocalItem[] = "E-10CA1000000A";

class EvidenceCtlNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::ClearCtlEnvironment();
    testing::TestOrg& org = fed_.AddOrg(kRequester);
    fed_.AddOrg(kHolder, v1::ORG_KIND_MINISTRY);
    user_ = fed_.IssueUser(kRequester, "pros");
    roster_file_ = fed_.root() + "/roster.json";
    stewards_file_ = fed_.WriteStewardsFile();
    ASSERT_TRUE(
        WriteFileAtomically(roster_file_, fed_.Sign(fed_.MakeRoster(), fed_.threshold())).ok());
    grpc::SslServerCredentialsOptions tls(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    tls.pem_root_certs = org.ca.cert_pem;
    tls.pem_key_cert_pairs.push_back({org.node.key_pem, org.node.cert_pem});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(tls), &port_);
    builder.RegisterService(&evidence_);
    builder.RegisterService(&cases_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override { server_->Shutdown(); }

  CtlRun Run(std::vector<std::string> argv) {
    for (const std::string& a : std::vector<std::string>{
             "--node", absl::StrCat("127.0.0.1:", port_), "--cert", user_ + ".crt", "--key",
             user_ + ".key", "--ca", fed_.org(kRequester).dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    CtlRun r = Ctl(argv);
    // The fakes' handlers read their answers under a lock; taking it here orders
    // their reads before the test's next edit of them (ThreadSanitizer does not
    // see the TCP connection between the two).
    evidence_.Sync();
    cases_.Sync();
    return r;
  }

  // A receipt as the holder signs it (by `key`, named `key_id`) for `data`.
  v1::FetchReceipt Receipt(const std::string& data, const Ed25519PrivateKey& key,
                           const std::string& key_id) {
    v1::FetchReceiptBody body;
    body.set_grant_id("G-0000000000A1");
    body.set_request_id("ER-0000000000A1");
    body.set_item_id("E-H0");
    body.set_sha256(DigestBytes(Sha256(data)));
    body.set_fetch_number(1);
    body.set_holder_org(kHolder);
    body.set_requester_org(kRequester);
    body.set_ledger_index(40);
    v1::FetchReceipt r;
    r.set_body(body.SerializeAsString());
    r.set_key_id(key_id);
    r.set_signature(key.Sign(absl::StrCat("corridor-fetch-receipt/v1\n", r.body())));
    return r;
  }

  // Six ledger entries; 2 (the fetch, with the holder's receipt) and 4 (a
  // download) are about kLocalItem, the others about a case. The response as
  // an honest node sends it, checkpoint signed with the requester's key.
  v1::CustodyResponse HonestCustody() {
    FakeLedger ledger;
    const std::string data = "the payslips";
    for (int i = 0; i < 6; ++i) {
      v1::AccessEvent e;
      e.set_time_unix_micros(1767225600000000 + i * 1000000);
      e.set_actor_org(kRequester);
      e.set_actor_subject("user/pros");
      e.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
      e.set_resource_kind(i == 2 || i == 4 ? "evidence" : "case");
      e.set_resource_id(i == 2 || i == 4 ? kLocalItem : "C-9");
      e.set_action(i == 2 ? "evidence.fetch" : i == 4 ? "evidence.get" : "case.get");
      if (i == 2) {
        e.set_peer_org(kHolder);
        e.set_payload_sha256(DigestBytes(Sha256(data)));
      }
      ledger.entries.push_back(e.SerializeAsString());
    }
    const uint64_t size = ledger.entries.size();
    v1::CustodyResponse resp;
    resp.set_evidence_id(kLocalItem);
    resp.set_case_id("C-7");
    resp.set_tree_size(size);
    for (uint64_t index : {2, 4}) {
      v1::CustodyEvent* ev = resp.add_events();
      ev->mutable_event()->set_index(index);
      ev->mutable_event()->set_entry(ledger.entries[index]);
      ev->mutable_event()->mutable_event()->ParseFromString(ledger.entries[index]);
      const auto proof = merkle::InclusionProof(index, size, ledger.Nodes());
      for (const merkle::Hash& h : *proof) ev->add_inclusion_proof(merkle::ToBytes(h));
    }
    const testing::TestOrg& holder = fed_.org(kHolder);
    *resp.mutable_events(0)->mutable_holder_receipt() =
        Receipt(data, holder.signing, holder.key_id);
    note::Checkpoint cp;
    cp.origin = absl::StrCat(fed_.federation(), "/", kRequester);
    cp.size = size;
    cp.root = *merkle::RootAt(size, ledger.Nodes());
    resp.set_checkpoint(note::SignCheckpoint(cp, cp.origin, fed_.org(kRequester).signing));
    return resp;
  }

  CtlRun Custody() {
    return Run({"evidence", "custody", kLocalItem, "--roster", roster_file_, "--stewards",
                stewards_file_, "--org", kRequester});
  }

  testing::TestFederation fed_;
  std::string user_, roster_file_, stewards_file_;
  int port_ = 0;
  FakeEvidenceService evidence_;
  FakeCaseService cases_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(EvidenceCtlNodeTest, CustodyVerifiesEveryProofAndTheHoldersReceipt) {
  evidence_.custody = HonestCustody();
  CtlRun r = Custody();
  ASSERT_EQ(r.code, 0) << r;
  int verified_rows = 0;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    if (absl::StartsWith(line, "2 ") || absl::StartsWith(line, "4 ")) {
      EXPECT_TRUE(absl::EndsWith(line, "verified")) << line;
      ++verified_rows;
    }
  }
  EXPECT_EQ(verified_rows, 2) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "evidence.fetch")) << r;
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat("entry 2: holder's receipt: entry 40 of ", kHolder, "'s ledger")))
      << r;
  EXPECT_TRUE(absl::StrContains(
      r.out, absl::StrCat("signature by key ", fed_.org(kHolder).key_id, " verified")))
      << r;
  // The org defaults to the one in the user's certificate.
  CtlRun own = Run(
      {"evidence", "custody", kLocalItem, "--roster", roster_file_, "--stewards", stewards_file_});
  EXPECT_EQ(own.code, 0) << own;
}

TEST_F(EvidenceCtlNodeTest, CustodyFailsLoudlyOnEveryKindOfTamperedAnswer) {
  const Ed25519PrivateKey stranger = Ed25519PrivateKey::Generate();
  const testing::TestOrg& holder = fed_.org(kHolder);
  struct Case {
    std::string what;
    std::function<void(v1::CustodyResponse*)> tamper;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"a proof hash changed",
       [](v1::CustodyResponse* r) { (*r->mutable_events(1)->mutable_inclusion_proof(0))[0] ^= 1; },
       "entry 4: the inclusion proof does NOT verify"},
      {"a proof hash left out",
       [](v1::CustodyResponse* r) {
         r->mutable_events(1)->mutable_inclusion_proof()->RemoveLast();
       },
       "entry 4: the inclusion proof does NOT verify"},
      {"a malformed proof hash",
       [](v1::CustodyResponse* r) { r->mutable_events(0)->set_inclusion_proof(0, "short"); },
       "entry 2: the proof holds a malformed hash"},
      {"an entry changed after it was logged",
       [](v1::CustodyResponse* r) {
         v1::AccessEvent e;
         e.ParseFromString(r->events(1).event().entry());
         e.set_actor_subject("user/someone-else");
         r->mutable_events(1)->mutable_event()->set_entry(e.SerializeAsString());
       },
       "entry 4: the inclusion proof does NOT verify"},
      {"an entry shown at another index",
       [](v1::CustodyResponse* r) { r->mutable_events(1)->mutable_event()->set_index(3); },
       "entry 3: the inclusion proof does NOT verify"},
      {"no entry bytes",
       [](v1::CustodyResponse* r) { r->mutable_events(0)->mutable_event()->clear_entry(); },
       "entry 2: the node sent no ledger entry to check"},
      {"a checkpoint signed by a key not in the roster",
       [&](v1::CustodyResponse* r) {
         auto cp = note::ParseCheckpointBody(note::ParseNote(r->checkpoint())->body);
         r->set_checkpoint(note::SignCheckpoint(*cp, cp->origin, stranger));
       },
       "the node's checkpoint does not verify"},
      {"a checkpoint of another size",
       [](v1::CustodyResponse* r) { r->set_tree_size(r->tree_size() + 1); },
       "the checkpoint is for another tree size"},
      {"a receipt signed by another key",
       [&](v1::CustodyResponse* r) {
         *r->mutable_events(0)->mutable_holder_receipt() =
             Receipt("the payslips", stranger, holder.key_id);
       },
       "its signature does NOT verify"},
      {"a receipt for other bytes",
       [&](v1::CustodyResponse* r) {
         *r->mutable_events(0)->mutable_holder_receipt() =
             Receipt("other bytes", holder.signing, holder.key_id);
       },
       "for another holder or other bytes"},
      {"a receipt by a key the holder does not have",
       [&](v1::CustodyResponse* r) {
         *r->mutable_events(0)->mutable_holder_receipt() =
             Receipt("the payslips", holder.signing, "no-such-key");
       },
       absl::StrCat("the roster lists no key no-such-key of ", kHolder)},
      {"a receipt body changed after signing",
       [](v1::CustodyResponse* r) {
         r->mutable_events(0)->mutable_holder_receipt()->mutable_body()->back() ^= 1;
       },
       "its signature does NOT verify"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    v1::CustodyResponse resp = HonestCustody();
    c.tamper(&resp);
    evidence_.custody = resp;
    CtlRun r = Custody();
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(absl::StrContains(r.err, c.says)) << r;
    ExpectWords(r.err);
  }
}

// An entry whose proof verifies but that is about something else is not
// passed off as part of this item's custody.
TEST_F(EvidenceCtlNodeTest, CustodyRefusesAnEntryAboutAnotherItem) {
  // Honest proofs and checkpoint; the entries are about kLocalItem, asked
  // for as the custody of another item.
  v1::CustodyResponse resp = HonestCustody();
  evidence_.custody = resp;
  CtlRun ok = Custody();
  ASSERT_EQ(ok.code, 0) << ok;
  resp.set_evidence_id("E-0THER0000000");
  evidence_.custody = resp;
  CtlRun r = Run({"evidence", "custody", "E-0THER0000000", "--roster", roster_file_, "--stewards",
                  stewards_file_});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat("is about ", kLocalItem, ", not E-0THER")))
      << r;
}

// ---- request, requests, decide ----

TEST_F(EvidenceCtlNodeTest, RequestSendsTheDeadlineAsRfc3339InUtcAndTheItemsAsked) {
  CtlRun r = Run({"evidence", "request", "--holder", kHolder, "--case", "C-7", "--items", "E-1",
                  "E-2,E-3", "--agreement", "mou-1", "--legal-basis", "Art. 5", "--purpose",
                  "case-handling", "--deadline", "2099-12-31", "--urgent"});
  ASSERT_EQ(r.code, 0) << r;
  const v1::RequestEvidenceRequest sent = evidence_.last_request();
  EXPECT_EQ(sent.deadline(), "2099-12-31T23:59:59+00:00");
  EXPECT_EQ(std::vector<std::string>(sent.item_ids().begin(), sent.item_ids().end()),
            (std::vector<std::string>{"E-1", "E-2", "E-3"}));
  EXPECT_FALSE(sent.all());
  EXPECT_TRUE(sent.urgent());
  EXPECT_EQ(sent.holder_org(), kHolder);
  EXPECT_EQ(sent.legal_basis(), "Art. 5");
  EXPECT_TRUE(absl::StrContains(r.out, "evidence request ER-0000000000B2 for case C-7")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "answer due by 2099-12-31T23:59:59+00:00 (urgent)")) << r;
  // An RFC 3339 time with an offset arrives in UTC; none given, none sent.
  ASSERT_EQ(Run({"evidence", "request", "--holder", kHolder, "--case", "C-7", "--all",
                 "--agreement", "mou-1", "--legal-basis", "b", "--purpose", "p", "--deadline",
                 "2099-12-31T17:00:00+08:00"})
                .code,
            0);
  EXPECT_EQ(evidence_.last_request().deadline(), "2099-12-31T09:00:00+00:00");
  EXPECT_TRUE(evidence_.last_request().all());
  ASSERT_EQ(Run({"evidence", "request", "--holder", kHolder, "--case", "C-7", "--all",
                 "--agreement", "mou-1", "--legal-basis", "b", "--purpose", "p"})
                .code,
            0);
  EXPECT_EQ(evidence_.last_request().deadline(), "");
}

TEST_F(EvidenceCtlNodeTest, RequestsListsInTheNodesOrderWithOverdueMarked) {
  const absl::Time now = absl::Now();
  const auto add = [&](const std::string& id, bool urgent, absl::Time deadline, bool outgoing) {
    v1::EvidenceRequestSummary* s = evidence_.list.add_requests();
    *s = Summary(deadline, urgent, v1::EVIDENCE_REQUEST_STATE_PENDING);
    s->set_request_id(id);
    s->set_outgoing(outgoing);
    s->set_peer_org(outgoing ? kHolder : kRequester);
    s->set_case_id("C-7");
    s->set_all(true);
  };
  add("ER-URGENT0LATE", true, now - absl::Minutes(150), true);
  add("ER-URGENT00OK0", true, now + absl::Minutes(300), false);
  add("ER-PLAIN00LATE", false, now - absl::Hours(72), true);
  add("ER-PLAIN000OK0", false, now + absl::Hours(24 * 9), false);
  CtlRun r = Run({"requests"});
  ASSERT_EQ(r.code, 0) << r;
  std::vector<std::string> lines = absl::StrSplit(r.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 5u) << r;
  EXPECT_TRUE(absl::StartsWith(lines[0], "REQUEST")) << r;
  EXPECT_TRUE(absl::StartsWith(lines[1], "ER-URGENT0LATE")) << r;
  EXPECT_TRUE(absl::StrContains(lines[1], "URGENT  OVERDUE by 2h")) << r;
  EXPECT_TRUE(absl::StartsWith(lines[2], "ER-URGENT00OK0")) << r;
  EXPECT_TRUE(absl::StrContains(lines[2], "5h left")) << r;
  EXPECT_TRUE(absl::StrContains(lines[3], "OVERDUE since ")) << r;
  EXPECT_FALSE(absl::StrContains(lines[4], "OVERDUE")) << r;
  EXPECT_TRUE(absl::StrContains(lines[1], " out ")) << r;
  EXPECT_TRUE(absl::StrContains(lines[1], " pending ")) << r;
  EXPECT_TRUE(absl::StrContains(lines[2], " in ")) << r;
}

TEST_F(EvidenceCtlNodeTest, RequestsShowGivesTheLegalBasisGrantAndConditions) {
  v1::EvidenceRequestSummary* s = evidence_.detail.mutable_summary();
  *s = Summary(absl::Now() + absl::Hours(48), false, v1::EVIDENCE_REQUEST_STATE_APPROVED);
  s->set_request_id("ER-0000000000A1");
  s->set_peer_org(kRequester);
  s->set_grant_id("G-0000000000A1");
  s->set_max_fetches(3);
  s->add_conditions("use only for the purpose case-handling under agreement mou-1");
  s->add_conditions("do not publish");
  v1::GrantedItem* g = s->add_granted();
  g->set_item_id("E-H1");
  g->set_file_name("report.pdf");
  evidence_.detail.set_legal_basis("Art. 5 MLA treaty\nFORGED line");
  CtlRun r = Run({"requests", "show", "ER-0000000000A1"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "received from union-sg")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "  state:         approved\n")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "  legal basis:   Art. 5 MLA treaty\\nFORGED line\n")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "  grant:         G-0000000000A1\n")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "Conditions of use:\n  1. use only")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "E-H1     report.pdf")) << r;
}

TEST_F(EvidenceCtlNodeTest, DecideSendsTheTermsAndPrintsTheGrant) {
  CtlRun r = Run({"decide", "ER-0000000000A1", "--approve", "E-H1", "--until", "2099-06-30",
                  "--max-fetches", "2", "--condition", "do not publish", "--condition",
                  "return on request", "--from", kRequester});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "approved ER-0000000000A1: grant G-0000000000C3")) << r;
  v1::DecideEvidenceRequest sent = evidence_.last_decision();
  EXPECT_TRUE(sent.approve());
  EXPECT_EQ(sent.until(), "2099-06-30T23:59:59+00:00");
  EXPECT_EQ(sent.max_fetches(), 2u);
  EXPECT_EQ(sent.conditions_size(), 2);
  EXPECT_EQ(sent.item_ids_size(), 1);
  EXPECT_EQ(sent.requester_org(), kRequester);
  CtlRun deny = Run({"decide", "ER-0000000000A1", "--deny", "--reason", "insufficient-basis"});
  ASSERT_EQ(deny.code, 0) << deny;
  EXPECT_TRUE(absl::StrContains(deny.out, "denied ER-0000000000A1 (insufficient-basis)")) << deny;
  sent = evidence_.last_decision();
  EXPECT_FALSE(sent.approve());
  EXPECT_EQ(sent.reason(), "insufficient-basis");
}

// ---- fetch ----

struct FetchSetup {
  std::string data1 = "payslips, eight months";
  std::string data2 = "photo of the contract";
};

class EvidenceCtlFetchTest : public EvidenceCtlNodeTest {
 protected:
  void SetUp() override {
    EvidenceCtlNodeTest::SetUp();
    out_dir_ = testing::MakeTempDir("evctl-fetch");
    v1::EvidenceRequestSummary* s = evidence_.detail.mutable_summary();
    s->set_request_id("ER-0000000000A1");
    s->set_outgoing(true);
    s->set_peer_org(kHolder);
    s->set_case_id("C-7");
    s->set_purpose("case-handling");
    s->set_state(v1::EVIDENCE_REQUEST_STATE_APPROVED);
    s->set_grant_id("G-0000000000A1");
    s->add_conditions("use only for the purpose case-handling under agreement mou-1");
    s->add_conditions("do not publish");
    evidence_.fetched.set_case_id("C-7");
    AddItem("E-H1", "E-L1", "report.pdf", data_.data1);
    AddItem("E-H2", "E-L2", "photo.jpg", data_.data2);
  }

  void AddItem(const std::string& holder_id, const std::string& local_id, const std::string& name,
               const std::string& data) {
    v1::GrantedItem* g = evidence_.detail.mutable_summary()->add_granted();
    g->set_item_id(holder_id);
    g->set_file_name(name);
    g->set_size(data.size());
    g->set_sha256(DigestBytes(Sha256(data)));
    v1::FetchedItem* f = evidence_.fetched.add_items();
    f->set_holder_item_id(holder_id);
    v1::EvidenceItem* item = f->mutable_item();
    item->set_id(local_id);
    item->set_file_name(name);
    item->set_size(data.size());
    item->set_sha256(DigestBytes(Sha256(data)));
    item->set_received_from(kHolder);
    const testing::TestOrg& holder = fed_.org(kHolder);
    item->set_holder_receipt(Receipt(data, holder.signing, holder.key_id).SerializeAsString());
    cases_.items[local_id] = {*item, data};
  }
  CtlRun Fetch() { return Run({"evidence", "fetch", "ER-0000000000A1", "--out", out_dir_}); }
  std::string Saved(const std::string& name) {
    auto s = ReadFileToString(out_dir_ + "/" + name);
    return s.ok() ? *s : "(absent)";
  }

  FetchSetup data_;
  std::string out_dir_;
};

TEST_F(EvidenceCtlFetchTest, SavesEachItemCheckedAndShowsConditionsAndReceipts) {
  CtlRun r = Fetch();
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(Saved("report.pdf"), data_.data1);
  EXPECT_EQ(Saved("photo.jpg"), data_.data2);
  EXPECT_TRUE(absl::StrContains(r.out, "Conditions of use:\n  1. use only for the purpose")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "  2. do not publish")) << r;
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("holder's receipt: entry 40 of ", kHolder)))
      << r;
  EXPECT_EQ(evidence_.fetch_calls(), 1);
  // Each item read from the case the fetch named, for the request's purpose.
  EXPECT_EQ(cases_.asked(),
            (std::vector<std::string>{"C-7 E-L1 case-handling", "C-7 E-L2 case-handling"}));
}

TEST_F(EvidenceCtlFetchTest, AnExistingFileIsNeverOverwritten) {
  ASSERT_TRUE(WriteFileAtomically(out_dir_ + "/report.pdf", "mine").ok());
  CtlRun r = Fetch();
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(Saved("report.pdf"), "mine");
  EXPECT_EQ(Saved("E-L1-report.pdf"), data_.data1);
  EXPECT_TRUE(absl::StrContains(r.out, "report.pdf already exists and was left as it is")) << r;
  // Again: both names taken now; the item is not saved and the user is told how to get it.
  CtlRun again = Fetch();
  EXPECT_EQ(again.code, 1) << again;
  EXPECT_EQ(Saved("report.pdf"), "mine");
  EXPECT_EQ(Saved("E-L1-report.pdf"), data_.data1);
  EXPECT_TRUE(absl::StrContains(again.err, "items were not saved")) << again;
  EXPECT_TRUE(absl::StrContains(again.err, "corridorctl evidence get C-7")) << again;
}

TEST_F(EvidenceCtlFetchTest, AHoldersFileNameNeverLeavesTheDirectory) {
  for (const std::string& name :
       {std::string("../escape.pdf"), std::string("sub/x.pdf"), std::string(".profile"),
        std::string("/tmp/abs.pdf"), std::string("x\ny.pdf"), std::string("")}) {
    SCOPED_TRACE(ctl::Printable(name));
    out_dir_ = testing::MakeTempDir("evctl-fetch-name");
    evidence_.fetched.mutable_items(0)->mutable_item()->set_file_name(name);
    cases_.items["E-L1"].first.set_file_name(name);
    CtlRun r = Fetch();
    ASSERT_EQ(r.code, 0) << r;
    EXPECT_EQ(Saved("E-L1.bin"), data_.data1);
    std::vector<std::string> present;
    for (const auto& entry : std::filesystem::directory_iterator(out_dir_))
      present.push_back(entry.path().filename().string());
    std::sort(present.begin(), present.end());
    EXPECT_EQ(present, (std::vector<std::string>{"E-L1.bin", "photo.jpg"}));
    struct stat st;
    EXPECT_NE(stat((out_dir_ + "/../escape.pdf").c_str(), &st), 0);
    EXPECT_NE(stat("/tmp/abs.pdf", &st), 0);
  }
}

TEST_F(EvidenceCtlFetchTest, WhatDoesNotMatchTheGrantIsNotSaved) {
  struct Case {
    std::string what;
    std::function<void(FakeEvidenceService*, FakeCaseService*)> tamper;
    std::string says;
  };
  const std::vector<Case> cases = {
      {"the holder recorded another digest",
       [](FakeEvidenceService* e, FakeCaseService*) {
         (*e->detail.mutable_summary()->mutable_granted(0)->mutable_sha256())[0] ^= 1;
       },
       "E-L1 does not match the size and SHA-256 ministry-id recorded for its E-H1"},
      {"the holder recorded another size",
       [](FakeEvidenceService* e, FakeCaseService*) {
         e->detail.mutable_summary()->mutable_granted(0)->set_size(3);
       },
       "E-L1 does not match the size and SHA-256"},
      {"an item that was not granted",
       [](FakeEvidenceService* e, FakeCaseService*) {
         e->fetched.mutable_items(0)->set_holder_item_id("E-H9");
       },
       "is not among the items granted"},
      {"the node serves other bytes than it recorded",
       [](FakeEvidenceService*, FakeCaseService* c) { c->items["E-L1"].second[0] ^= 1; },
       "what arrived does not match the recorded size and SHA-256"},
      {"the node recorded and serves other bytes than granted",
       [](FakeEvidenceService*, FakeCaseService* c) {
         c->items["E-L1"].second = "forged";
         c->items["E-L1"].first.set_size(6);
         c->items["E-L1"].first.set_sha256(DigestBytes(Sha256("forged")));
       },
       "E-L1 does not match the size and SHA-256"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    out_dir_ = testing::MakeTempDir("evctl-fetch-bad");
    const auto detail = evidence_.detail;
    const auto fetched = evidence_.fetched;
    const auto items = cases_.items;
    c.tamper(&evidence_, &cases_);
    CtlRun r = Fetch();
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(absl::StrContains(r.err, c.says)) << r;
    EXPECT_TRUE(absl::StrContains(r.err, "1 of 2 items were not saved")) << r;
    ExpectWords(r.err);
    EXPECT_EQ(Saved("report.pdf"), "(absent)");
    EXPECT_EQ(Saved("photo.jpg"), data_.data2);  // the good one is kept
    evidence_.detail = detail;
    evidence_.fetched = fetched;
    cases_.items = items;
  }
}

TEST_F(EvidenceCtlFetchTest, ARequestYourOrgReceivedIsNotFetched) {
  evidence_.detail.mutable_summary()->set_outgoing(false);
  CtlRun r = Fetch();
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "only the org that asked fetches")) << r;
  EXPECT_EQ(evidence_.fetch_calls(), 0);
}

// ---- the whole flow against real nodes ----------------------------------------

constexpr char kUnion[] = "union-sg";
constexpr char kProsecutor[] = "prosecutor-sg";

// The first word after `prefix` in `text`, e.g. the id in "evidence request ER-1 for".
std::string WordAfter(const std::string& text, const std::string& prefix) {
  const size_t at = text.find(prefix);
  if (at == std::string::npos) return "";
  const std::string rest = text.substr(at + prefix.size());
  return rest.substr(0, rest.find_first_of(" \n:;,)"));
}

class EvidenceCtlFlowTest : public ::testing::Test {
 protected:
  static testing::InProcessFederationOptions Options() {
    testing::InProcessFederationOptions o;
    o.orgs = {{kUnion, v1::ORG_KIND_UNION}, {kProsecutor, v1::ORG_KIND_PROSECUTOR}};
    o.edit_roster = [](v1::Roster& r) {
      v1::Agreement* a = r.add_agreements();
      a->set_id("mla-test");
      a->add_parties(kUnion);
      a->add_parties(kProsecutor);
      a->add_purposes("prosecution");
      a->add_evidence_requesters(v1::ORG_KIND_PROSECUTOR);
    };
    return o;
  }
  void SetUp() override {
    testing::ClearCtlEnvironment();
    ASSERT_TRUE(fed_.StartAll().ok());
    testing::TestFederation& files = fed_.files();
    roster_file_ = files.root() + "/roster-for-ctl.json";
    stewards_file_ = files.WriteStewardsFile();
    ASSERT_TRUE(
        WriteFileAtomically(roster_file_, files.Sign(files.MakeRoster(), files.threshold())).ok());
  }

  // corridorctl at `org`'s node as its `user`.
  CtlRun As(const std::string& org, const std::string& user, std::vector<std::string> argv) {
    const std::string key = org + "/" + user;
    if (!users_.count(key)) users_[key] = fed_.files().IssueUser(org, user);
    for (const std::string& a :
         std::vector<std::string>{"--node", fed_.files().org(org).endpoint(), "--cert",
                                  users_[key] + ".crt", "--key", users_[key] + ".key", "--ca",
                                  fed_.files().org(org).dir + "/ca.crt", "--timeout", "30"}) {
      argv.push_back(a);
    }
    return Ctl(argv);
  }

  // Waits until `corridorctl requests` at `org` shows `id` with `state`.
  bool EventuallyListed(const std::string& org, const std::string& user, const std::string& id,
                        const std::string& state) {
    return testing::InProcessFederation::Eventually([&] {
      fed_.DeliverNow();
      CtlRun r = As(org, user, {"requests"});
      for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
        if (absl::StartsWith(line, id) && absl::StrContains(line, " " + state + " ")) return true;
      }
      return false;
    });
  }

  testing::InProcessFederation fed_{Options()};
  std::string roster_file_, stewards_file_;
  std::map<std::string, std::string> users_;
};

TEST_F(EvidenceCtlFlowTest, RequestDecideFetchAndCustodyWithCorridorctl) {
  // A union case with a document, referred to the prosecutor's org and accepted.
  const std::string union_case = testing::CreateCase(fed_, kUnion, {});
  const std::string content = std::string(300000, 'p') + "end of payslips";
  const std::string upload = fed_.files().root() + "/payslips.pdf";
  ASSERT_TRUE(WriteFileAtomically(upload, content).ok());
  CtlRun added = As(kUnion, "cw", {"evidence", "add", union_case, upload});
  ASSERT_EQ(added.code, 0) << added;
  const std::string union_item = WordAfter(added.out, "added evidence ");
  v1::ReferCaseRequest refer = testing::ReferralOf(union_case, kProsecutor);
  refer.set_deidentify(true);
  v1::ReferCaseResponse sent;
  ASSERT_TRUE(testing::Refer(fed_, kUnion, refer, &sent).ok());
  fed_.DeliverNow();
  ASSERT_TRUE(testing::EventuallyInState(fed_, kUnion, sent.envelope_id(), "delivered"));
  const std::string prosecutor_case =
      testing::InboxItemOf(fed_, kProsecutor, sent.referral_id()).case_id();
  ASSERT_FALSE(prosecutor_case.empty());

  // The prosecutor asks; the union's approver sees it, with its legal basis, and grants it.
  CtlRun asked =
      As(kProsecutor, "pros",
         {"evidence", "request", "--holder", kUnion, "--case", prosecutor_case, "--items",
          union_item, "--agreement", "mla-test", "--legal-basis",
          "Criminal Procedure Code s.20, production order 17/2026", "--purpose", "prosecution",
          "--deadline",
          absl::FormatTime("%Y-%m-%d", absl::Now() + absl::Hours(24 * 5), absl::UTCTimeZone())});
  ASSERT_EQ(asked.code, 0) << asked;
  const std::string request_id = WordAfter(asked.out, "evidence request ");
  ASSERT_TRUE(absl::StartsWith(request_id, "ER-")) << asked;
  ASSERT_TRUE(EventuallyListed(kUnion, "appr", request_id, "pending"));
  CtlRun shown = As(kUnion, "appr", {"requests", "show", request_id, "--from", kProsecutor});
  ASSERT_EQ(shown.code, 0) << shown;
  EXPECT_TRUE(absl::StrContains(shown.out, "production order 17/2026")) << shown;
  EXPECT_TRUE(absl::StrContains(shown.out, "received from prosecutor-sg")) << shown;
  CtlRun decided = As(kUnion, "appr",
                      {"decide", request_id, "--approve", "--max-fetches", "2", "--condition",
                       "Not to be shown to the employer"});
  ASSERT_EQ(decided.code, 0) << decided;
  const std::string grant = WordAfter(decided.out, ": grant ");
  EXPECT_TRUE(absl::StartsWith(grant, "G-")) << decided;
  ASSERT_TRUE(EventuallyListed(kProsecutor, "pros", request_id, "approved"));

  // The prosecutor fetches: saved, checked, the conditions shown.
  const std::string out_dir = fed_.files().root() + "/fetched";
  CtlRun fetched = As(kProsecutor, "pros", {"evidence", "fetch", request_id, "--out", out_dir});
  ASSERT_EQ(fetched.code, 0) << fetched;
  auto saved = ReadFileToString(out_dir + "/payslips.pdf");
  ASSERT_TRUE(saved.ok()) << saved.status() << "\n" << fetched;
  EXPECT_EQ(*saved, content);
  EXPECT_TRUE(absl::StrContains(fetched.out, "Conditions of use:")) << fetched;
  EXPECT_TRUE(absl::StrContains(fetched.out, "Not to be shown to the employer")) << fetched;
  EXPECT_TRUE(absl::StrContains(fetched.out, "holder's receipt: entry ")) << fetched;
  const std::string local_item = WordAfter(fetched.out, "saved ");
  ASSERT_TRUE(absl::StartsWith(local_item, "E-")) << fetched;

  // Custody at both ends, every proof checked with the roster's keys; the
  // holder's receipt at the requester checked with the union's key.
  CtlRun here = As(
      kProsecutor, "pros",
      {"evidence", "custody", local_item, "--roster", roster_file_, "--stewards", stewards_file_});
  ASSERT_EQ(here.code, 0) << here;
  EXPECT_TRUE(absl::StrContains(here.out, "evidence.fetch")) << here;
  EXPECT_TRUE(absl::StrContains(here.out, "verified\n")) << here;
  EXPECT_TRUE(absl::StrContains(
      here.out, absl::StrCat("signature by key ", fed_.files().org(kUnion).key_id, " verified")))
      << here;
  CtlRun there = As(
      kUnion, "appr",
      {"evidence", "custody", union_item, "--roster", roster_file_, "--stewards", stewards_file_});
  ASSERT_EQ(there.code, 0) << there;
  for (const char* action : {"evidence.add", "evidence.grant", "evidence.serve"}) {
    EXPECT_TRUE(absl::StrContains(there.out, action)) << action << "\n" << there;
  }
  EXPECT_FALSE(absl::StrContains(there.out, "NOT")) << there;
}

}  // namespace
}  // namespace corridor
