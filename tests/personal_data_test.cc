// Which methods hand out a worker's personal data, walked rather than listed
// by hand: every method of every Corridor service is called by every kind of
// caller with a well-formed request (built from the descriptors) naming a case
// full of distinctive personal data, at the node that holds the case and at a
// node that received it with the worker's consent; every answer, error
// messages included, is searched for that data. The methods that return any
// of it must be exactly the list in docs/access-control.md ("Methods that
// return personal data"), and each of them must need a purpose, be recorded
// as a read, and obey a received case's retention date.
#include <algorithm>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"
#include "tests/testing/requests.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

namespace pb = google::protobuf;

// docs/access-control.md, "Methods that return personal data".
const std::set<std::string> kPersonalDataMethods = {
    "/corridor.v1.CaseService/GetCase",
    "/corridor.v1.CaseService/GetEvidence",
    "/corridor.v1.CaseService/ListEvidence",
};

// Distinctive values for every free-text field of a case that can hold
// personal data; none of them may appear in any other answer.
const std::vector<std::string> kMarkers = {
    "Quillfeather",
    "DOC-Q9Z8Y7",
    "1987-03-14",
    "+65-9123-4567",
    "NARR-unpaid-7781",
    "EMPL-Kestrel",
    "LIC-K-5150",
    "RECR-Falconry",
    "LIC-R-6161",
    "witnessed-by-Nadia",
    "Quillfeather-passport.jpg",
    "EVID-payslip-5521",
};

constexpr char kPurpose[] = "case-referral";
constexpr char kAgreement[] = "test-agreement";

std::string FoundMarker(const std::string& bytes) {
  for (const std::string& m : kMarkers) {
    if (absl::StrContains(bytes, m)) return m;
  }
  return "";
}

class PersonalDataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    const std::map<std::string, std::vector<std::string>> users = {{"cw", {"caseworker"}},
                                                                   {"pros", {"prosecutor"}},
                                                                   {"appr", {"approver"}},
                                                                   {"aud", {"auditor"}},
                                                                   {"adm", {"admin"}}};
    ASSERT_OK_AND_ASSIGN(sender_config_, LoadNodeConfig(fed_.WriteNodeConfig("union-sg", users)));
    ASSERT_OK_AND_ASSIGN(receiver_config_,
                         LoadNodeConfig(fed_.WriteNodeConfig("ministry-id", users)));
    ASSERT_OK_AND_ASSIGN(sender_, Node::Start(sender_config_));
    NodeTestHooks hooks;
    hooks.clock = &receiver_clock_;
    ASSERT_OK_AND_ASSIGN(receiver_, Node::Start(receiver_config_, hooks));
  }
  void TearDown() override {
    if (sender_) sender_->Shutdown(absl::Seconds(1));
    if (receiver_) receiver_->Shutdown(absl::Seconds(1));
  }

  // A channel to `at`'s node as `user` of `org` ("node" for `org`'s node certificate).
  std::shared_ptr<grpc::Channel> As(const std::string& at, const std::string& org,
                                    const std::string& user) {
    const std::string key = absl::StrCat(at, "/", org, "/", user);
    auto it = channels_.find(key);
    if (it != channels_.end()) return it->second;
    TlsIdentity id;
    if (user == "node") {
      id = {fed_.org(org).node.cert_pem, fed_.org(org).node.key_pem, fed_.org(at).ca.cert_pem};
    } else {
      const std::string prefix = fed_.IssueUser(org, user);
      id = {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
            fed_.org(at).ca.cert_pem};
    }
    return channels_[key] = MakeMutualTlsChannel(id, fed_.org(at).endpoint(), "");
  }
  // Every kind of caller at `at`: each role of its own org, a user of the
  // other org, and the other org's node.
  std::vector<std::pair<std::string, std::shared_ptr<grpc::Channel>>> Callers(
      const std::string& at) {
    const std::string other = at == "union-sg" ? "ministry-id" : "union-sg";
    std::vector<std::pair<std::string, std::shared_ptr<grpc::Channel>>> out;
    for (const char* user : {"cw", "pros", "appr", "aud", "adm"}) {
      out.emplace_back(user, As(at, at, user));
    }
    out.emplace_back("other-org user", As(at, other, "cw"));
    out.emplace_back("other-org node", As(at, other, "node"));
    return out;
  }
  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return ctx;
  }

  struct PersonalCase {
    std::string case_id, evidence_id;
  };
  // A case at union-sg with a marker in every field that can hold personal
  // data, consent to share it with ministry-id, and one evidence item.
  PersonalCase CreatePersonalCase() {
    v1::CreateCaseRequest req;
    v1::Case* c = req.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    c->set_sector("domestic-work");  // in the summary: not personal data
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name("Siti Quillfeather");
    c->mutable_worker()->set_document_number("DOC-Q9Z8Y7");
    c->mutable_worker()->set_date_of_birth("1987-03-14");
    c->mutable_worker()->set_contact("+65-9123-4567");
    c->set_narrative("NARR-unpaid-7781 months of wages withheld");
    c->mutable_employer()->set_name("EMPL-Kestrel Pte Ltd");
    c->mutable_employer()->set_licence_number("LIC-K-5150");
    c->mutable_recruiter()->set_name("RECR-Falconry Agency");
    c->mutable_recruiter()->set_licence_number("LIC-R-6161");
    v1::ConsentGrant* g = c->mutable_consent()->add_grants();
    g->set_org("ministry-id");
    g->add_purposes(kPurpose);
    c->mutable_consent()->set_method("written, witnessed-by-Nadia");
    v1::Case created;
    grpc::Status s = v1::CaseService::NewStub(As("union-sg", "union-sg", "cw"))
                         ->CreateCase(Ctx().get(), req, &created);
    EXPECT_TRUE(s.ok()) << s.error_message();
    PersonalCase out{created.id(), ""};
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::EvidenceItem item;
    auto writer =
        v1::CaseService::NewStub(As("union-sg", "union-sg", "cw"))->AddEvidence(&ctx, &item);
    v1::AddEvidenceRequest header, data;
    header.mutable_header()->set_case_id(out.case_id);
    header.mutable_header()->set_file_name("Quillfeather-passport.jpg");
    header.mutable_header()->set_media_type("image/jpeg");
    data.set_data("EVID-payslip-5521 passport scan");
    writer->Write(header);
    writer->Write(data);
    writer->WritesDone();
    s = writer->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    out.evidence_id = item.id();
    return out;
  }

  // Calls `method` at `at` as `caller` with every field filled from `values`.
  testing::CallResult Call(const testing::MethodInfo& method,
                           const std::shared_ptr<grpc::Channel>& caller,
                           const testing::RequestValues& values) {
    pb::DynamicMessageFactory factory;
    std::unique_ptr<pb::Message> req(factory.GetPrototype(method.request)->New());
    testing::FillRequest(req.get(), values);
    std::vector<std::string> messages = {req->SerializeAsString()};
    if (method.client_streaming) {  // AddEvidence: the header, then data
      v1::AddEvidenceRequest data;
      data.set_data("more");
      messages.push_back(data.SerializeAsString());
    }
    return testing::CallByPath(caller, method.path, messages);
  }
  static std::string Everything(const testing::CallResult& r) {
    return absl::StrCat(r.status.error_message(), r.status.error_details(),
                        absl::StrJoin(r.responses, ""));
  }

  // The ledger entries at `at` after index `from`, as its auditor reads them.
  std::vector<v1::LoggedEvent> EntriesSince(const std::string& at, uint64_t from) {
    auto audit = v1::AuditService::NewStub(As(at, at, "aud"));
    v1::CheckpointResponse cp;
    EXPECT_TRUE(audit->GetCheckpoint(Ctx().get(), {}, &cp).ok());
    std::vector<v1::LoggedEvent> out;
    while (from < cp.size()) {
      v1::GetEntriesRequest req;
      req.set_begin(from);
      req.set_end(std::min<uint64_t>(cp.size(), from + 1000));  // the most one call may ask
      v1::GetEntriesResponse resp;
      grpc::Status s = audit->GetEntries(Ctx().get(), req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok() || resp.events_size() == 0) break;
      for (const auto& e : resp.events()) out.push_back(e);
      from = resp.events().rbegin()->index() + 1;
    }
    return out;
  }
  uint64_t LedgerSize(const std::string& at) {
    v1::CheckpointResponse cp;
    EXPECT_TRUE(
        v1::AuditService::NewStub(As(at, at, "aud"))->GetCheckpoint(Ctx().get(), {}, &cp).ok());
    return cp.size();
  }

  // Refers `pc` to ministry-id with its personal data and evidence, waits for
  // it to arrive and accepts it; returns the received case's id there.
  std::string ReferAndAccept(const PersonalCase& pc) {
    v1::ReferCaseRequest req;
    req.set_case_id(pc.case_id);
    req.set_to_org("ministry-id");
    req.set_agreement(kAgreement);
    req.set_purpose(kPurpose);
    req.set_include_personal_data(true);
    req.add_evidence_ids(pc.evidence_id);
    v1::ReferCaseResponse sent;
    grpc::Status s = v1::ReferralService::NewStub(As("union-sg", "union-sg", "cw"))
                         ->Refer(Ctx().get(), req, &sent);
    EXPECT_TRUE(s.ok()) << s.error_message();
    auto inbox = v1::ReferralService::NewStub(As("ministry-id", "ministry-id", "cw"));
    for (int i = 0; i < 300; ++i) {
      v1::ListInboxResponse items;
      EXPECT_TRUE(inbox->ListInbox(Ctx().get(), {}, &items).ok());
      for (const auto& item : items.items()) {
        if (item.referral_id() != sent.referral_id()) continue;
        v1::DecideReferralRequest d;
        d.set_referral_id(item.referral_id());
        d.set_accept(true);
        v1::DecideReferralResponse decided;
        s = inbox->Decide(Ctx().get(), d, &decided);
        EXPECT_TRUE(s.ok()) << s.error_message();
        return item.case_id();
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    ADD_FAILURE() << "referral " << sent.referral_id() << " never arrived";
    return "";
  }

  testing::TestFederation fed_;
  v1::NodeConfig sender_config_, receiver_config_;
  // The receiver's clock: real time plus `ahead` (declared before the
  // node that reads it).
  struct AheadClock : Clock {
    absl::Time Now() const override { return absl::Now() + ahead.load(); }
    std::atomic<absl::Duration> ahead{absl::ZeroDuration()};
  };
  AheadClock receiver_clock_;
  std::unique_ptr<Node> sender_, receiver_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_;
};

TEST_F(PersonalDataTest, OnlyTheListedMethodsReturnPersonalData) {
  const PersonalCase received_from = CreatePersonalCase();
  const std::string received_case = ReferAndAccept(received_from);
  ASSERT_FALSE(received_case.empty());

  std::map<std::string, std::string> returned;  // method → where it returned what
  for (const testing::MethodInfo& method : testing::MethodsOf(testing::CorridorServices())) {
    for (const std::string at : {"union-sg", "ministry-id"}) {
      for (const auto& [who, channel] : Callers(at)) {
        // At the case's own node, a fresh case for every call: a change made by one
        // call (an update, an erasure) must not hide what the next one would return.
        testing::RequestValues values;
        if (at == "union-sg") {
          const PersonalCase pc = CreatePersonalCase();
          values.case_id = pc.case_id;
          values.evidence_id = pc.evidence_id;
        } else {
          if (absl::EndsWith(method.path, "/EraseCase")) continue;  // walked at the sender
          values.case_id = received_case;
          values.evidence_id = received_from.evidence_id;
        }
        const testing::CallResult r = Call(method, channel, values);
        const std::string marker = FoundMarker(Everything(r));
        if (!marker.empty()) {
          returned[method.path] += absl::StrCat(" [at ", at, " as ", who, ": \"", marker, "\"]");
        }
      }
    }
  }
  std::set<std::string> leaking;
  for (const auto& [path, where] : returned) {
    leaking.insert(path);
    EXPECT_TRUE(kPersonalDataMethods.count(path))
        << path << " returns personal data but is not in the list:" << where;
  }
  for (const std::string& path : kPersonalDataMethods) {
    EXPECT_TRUE(leaking.count(path)) << path << " is listed but returned no personal data";
  }
}

TEST_F(PersonalDataTest, EveryListedMethodRefusesWithoutAPurposeAndRecordsAReadWithOne) {
  const std::set<std::string> kReads = {"case.get", "evidence.get", "evidence.list"};
  for (const testing::MethodInfo& method : testing::MethodsOf(testing::CorridorServices())) {
    if (!kPersonalDataMethods.count(method.path)) continue;
    for (const std::string user : {"cw", "pros"}) {
      SCOPED_TRACE(absl::StrCat(method.path, " as ", user));
      const PersonalCase pc = CreatePersonalCase();
      testing::RequestValues values{pc.case_id, pc.evidence_id, "", ""};
      uint64_t before = LedgerSize("union-sg");
      testing::CallResult r = Call(method, As("union-sg", "union-sg", user), values);
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
          << r.status.error_message();
      EXPECT_EQ(FoundMarker(Everything(r)), "");
      int denied = 0;
      for (const auto& e : EntriesSince("union-sg", before)) {
        if (e.event().case_id() == pc.case_id && e.event().actor_subject() == "user/" + user) {
          EXPECT_EQ(e.event().outcome(), v1::ACCESS_OUTCOME_DENIED) << e.event().action();
          ++denied;
        }
      }
      EXPECT_EQ(denied, 1);

      values.purpose = kPurpose;
      before = LedgerSize("union-sg");
      r = Call(method, As("union-sg", "union-sg", user), values);
      EXPECT_TRUE(r.status.ok()) << r.status.error_message();
      int reads = 0;
      for (const auto& e : EntriesSince("union-sg", before)) {
        if (e.event().case_id() == pc.case_id && e.event().actor_subject() == "user/" + user) {
          EXPECT_TRUE(kReads.count(e.event().action())) << e.event().action();
          EXPECT_EQ(e.event().outcome(), v1::ACCESS_OUTCOME_ALLOWED);
          EXPECT_EQ(e.event().purpose(), kPurpose);
          ++reads;
        }
      }
      EXPECT_EQ(reads, 1);
    }
  }
}

TEST_F(PersonalDataTest, EveryListedMethodObeysTheRetentionDateOfAReceivedCase) {
  const PersonalCase pc = CreatePersonalCase();
  const std::string received_case = ReferAndAccept(pc);
  ASSERT_FALSE(received_case.empty());
  const testing::RequestValues values{received_case, pc.evidence_id, "", kPurpose};
  // Within retention the received case is readable (its evidence stayed with the sender).
  testing::CallResult r = Call(testing::MethodsOf({"corridor.v1.CaseService"})[1],
                               As("ministry-id", "ministry-id", "cw"), values);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  ASSERT_NE(FoundMarker(Everything(r)), "");

  receiver_clock_.ahead = absl::Hours(24 * 366);  // the default retention is one year
  for (const testing::MethodInfo& method : testing::MethodsOf(testing::CorridorServices())) {
    if (!kPersonalDataMethods.count(method.path)) continue;
    for (const std::string user : {"cw", "pros"}) {
      SCOPED_TRACE(absl::StrCat(method.path, " as ", user));
      const uint64_t before = LedgerSize("ministry-id");
      r = Call(method, As("ministry-id", "ministry-id", user), values);
      EXPECT_FALSE(r.status.ok());
      EXPECT_EQ(FoundMarker(Everything(r)), "") << Everything(r);
      // The refusal is recorded: one entry of this caller on the case, not allowed.
      int refused = 0;
      for (const auto& e : EntriesSince("ministry-id", before)) {
        if (e.event().case_id() == received_case && e.event().actor_subject() == "user/" + user) {
          EXPECT_NE(e.event().outcome(), v1::ACCESS_OUTCOME_ALLOWED) << e.event().action();
          ++refused;
        }
      }
      EXPECT_EQ(refused, 1);
    }
  }
}

// The ledger is never erased, so it must never hold what a person typed: every
// method is called by every caller with a distinctive text in every free-text
// field of its request (reasons, notes, names, narrative, file names, ...) and
// a case full of personal data; no entry of either node's ledger may then hold
// any of it, nor any of the case's personal data.
TEST_F(PersonalDataTest, NoFreeTextOrPersonalDataFromAnyRequestReachesEitherLedger) {
  const std::string kTyped = "Zq typed by hand about Siti";
  // The same name fitted to the alphabets of code fields: a purpose, an agreement, an org
  // and a request id are checked by shape, and "zq-typed-siti" has the right one.
  const std::string kTypedCode = "zq-typed-siti";
  const PersonalCase referred = CreatePersonalCase();
  const std::string received_case = ReferAndAccept(referred);
  ASSERT_FALSE(received_case.empty());
  // Pass 0 types the name into the free-text fields of calls that go deep; pass 1 also into
  // every code field (purpose, agreement, org, request id); pass 2 also into every id field
  // (case, evidence, referral ids): "zq-typed-siti" fits the identifier alphabet too, and a
  // refused call must not record it as the id it asked for.
  for (int pass = 0; pass < 3; ++pass)
    for (const testing::MethodInfo& method : testing::MethodsOf(testing::CorridorServices())) {
      for (const std::string at : {"union-sg", "ministry-id"}) {
        for (const auto& [who, channel] : Callers(at)) {
          testing::RequestValues values;
          if (at == "union-sg") {
            const PersonalCase pc = CreatePersonalCase();
            values.case_id = pc.case_id;
            values.evidence_id = pc.evidence_id;
            values.org = "ministry-id";
          } else {
            if (absl::EndsWith(method.path, "/EraseCase")) continue;  // walked at the sender
            values.case_id = received_case;
            values.evidence_id = referred.evidence_id;
            values.org = "union-sg";
          }
          values.agreement = kAgreement;
          values.request_id = "";
          values.text = kTyped;
          if (pass == 1) {
            values.purpose = kTypedCode;
            values.agreement = kTypedCode;
            values.org = kTypedCode;
            values.request_id = "Zq-Typed-Siti";
          }
          if (pass == 2) {
            values.case_id = kTypedCode;
            values.evidence_id = kTypedCode;
            values.referral_id = kTypedCode;
          }
          Call(method, channel, values);
        }
      }
    }
  for (const std::string at : {"union-sg", "ministry-id"}) {
    const std::vector<v1::LoggedEvent> entries = EntriesSince(at, 0);
    ASSERT_GT(entries.size(), 100u) << at;
    for (const v1::LoggedEvent& e : entries) {
      const std::string lower = absl::AsciiStrToLower(e.entry());
      EXPECT_FALSE(absl::StrContains(lower, "zq typed") || absl::StrContains(lower, "typed-siti"))
          << at << " entry " << e.index() << ": " << e.event().ShortDebugString();
      EXPECT_EQ(FoundMarker(e.entry()), "")
          << at << " entry " << e.index() << ": " << e.event().ShortDebugString();
    }
  }
}

}  // namespace
}  // namespace corridor
