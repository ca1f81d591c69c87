// Who saw it across the border (issue 12): a receiver attests every read of a
// case referred to it to the org that referred it, through its outbox; the
// originator records each signed attestation on its case's trail, and
// `corridorctl audit log --case ID --downstream [--prove]` lists them, proving
// each attested entry against the receiver's signed checkpoint. `audit
// reconcile --peer ORG` compares the envelopes both sides recorded. Against
// real corridord processes on loopback; attestations forged with members'
// own keys and certificates, and one node's database put back to an earlier
// copy (a restore from backup) so that envelopes vanish from its side only.
// (Index keys deleted behind a node's back are found by the node's own ledger
// check, which stops it serving: trail_test.)
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/federation/envelope.h"
#include "server/node/config.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/deadline.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using testing::CommandResult;
using testing::Eventually;
using testing::JsonValues;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// How many rows `audit log --downstream` says it listed, -1 if it failed.
int DownstreamCount(const CommandResult& r) {
  if (r.exit_code != 0) return -1;
  const size_t at = r.out.rfind("\n", r.out.size() - 2);
  const std::string last = r.out.substr(at == std::string::npos ? 0 : at + 1);
  return std::atoi(last.c_str());
}

class DownstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::ClearCtlEnvironment();
    for (const auto& [org, kind] :
         {std::pair<std::string, v1::OrgKind>{"union-sg", v1::ORG_KIND_UNION},
          {"ministry-id", v1::ORG_KIND_MINISTRY},
          {"inspectorate-sg", v1::ORG_KIND_INSPECTORATE}}) {
      fed_.AddOrg(org, kind);
    }
    for (const std::string org : {"union-sg", "ministry-id", "inspectorate-sg"}) {
      nodes_.Configure(org);
    }
    stewards_ = fed_.WriteStewardsFile();
    ASSERT_TRUE(nodes_.Start("union-sg"));
    ASSERT_TRUE(nodes_.Start("ministry-id"));
  }

  // A case at union-sg referred to ministry-id and accepted there; returns
  // (union's case id, ministry's case id).
  std::pair<std::string, std::string> ReferredCase() {
    CommandResult r =
        nodes_.Ctl("union-sg", {"case", "create", "--json", "--category", "wage-theft", "--origin",
                                "ID", "--destination", "SG", "--worker-name", "Dewi", "--consent",
                                "ministry-id:case-referral"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string id = JsonValues(r.out, "id").at(0);
    r = nodes_.Ctl("union-sg",
                   {"refer", id, "--to", "ministry-id", "--agreement", "test-agreement",
                    "--purpose", "case-referral", "--include", "personal-data", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string referral = JsonValues(r.out, "referral_id").at(0);
    nodes_.AwaitOutboxSettled("union-sg");
    r = nodes_.Ctl("ministry-id", {"accept", referral});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    nodes_.AwaitOutboxSettled("ministry-id");
    auto ids = JsonValues(nodes_.Ctl("ministry-id", {"case", "list", "--json"}).out, "id");
    EXPECT_EQ(ids.size(), 1u);
    return {id, ids.empty() ? "" : ids[0]};
  }

  CommandResult ReadAtMinistry(const std::string& mcase) {
    return nodes_.Ctl("ministry-id", {"case", "show", mcase, "--purpose", "case-handling"});
  }

  // `audit log --case ID --downstream` as union-sg's auditor.
  CommandResult Downstream(const std::string& id, bool prove = false) {
    std::vector<std::string> args = {"audit",
                                     "log",
                                     "--case",
                                     id,
                                     "--downstream",
                                     "--roster",
                                     fed_.org("union-sg").dir + "/roster.json",
                                     "--stewards",
                                     stewards_};
    if (prove) args.push_back("--prove");
    return nodes_.CtlAs("union-sg", nodes_.auditor("union-sg"), args);
  }
  int Attested(const std::string& id) { return DownstreamCount(Downstream(id)); }

  CommandResult Reconcile() {
    return nodes_.CtlAs("union-sg", nodes_.auditor("union-sg"),
                        {"audit", "reconcile", "--peer", "ministry-id"});
  }

  // An attestation from `from` to union-sg, signed with `from`'s key.
  v1::Envelope Forged(const std::string& from, const std::string& origin_case,
                      const std::string& referral, const std::string& subject) {
    v1::EnvelopePayload p;
    p.set_envelope_id(absl::StrCat("ENV-F0", ++forged_, "A1B2C3D4E5"));
    p.set_sender_org(from);
    p.set_recipient_org("union-sg");
    p.set_created_unix(absl::ToUnixSeconds(absl::Now()));
    p.set_expires_unix(absl::ToUnixSeconds(absl::Now() + absl::Hours(1)));
    p.set_key_id(fed_.org(from).key_id);
    p.set_agreement("test-agreement");
    p.set_purpose("case-referral");
    v1::AccessAttestation* a = p.mutable_access_attestation();
    a->set_referral_id(referral);
    a->set_origin_case_id(origin_case);
    a->set_sender_case_id("C-00112233AABB");
    a->set_subject(subject);
    a->add_roles(v1::ROLE_CASEWORKER);
    a->set_action("case.get");
    a->set_resource_kind("case");
    a->set_resource_id("C-00112233AABB");
    a->set_purpose("case-handling");
    a->set_time_unix_micros(absl::ToUnixMicros(absl::Now()));
    a->set_ledger_index(7);
    return SignEnvelope(p, fed_.org(from).signing);
  }
  grpc::Status DeliverToUnion(const std::string& as_org, const v1::Envelope& env) {
    const testing::TestOrg& o = fed_.org(as_org);
    auto ch =
        MakeMutualTlsChannel({o.node.cert_pem, o.node.key_pem, fed_.org("union-sg").ca.cert_pem},
                             fed_.org("union-sg").endpoint(), "");
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::Receipt receipt;
    return v1::PeerService::NewStub(ch)->Deliver(&ctx, env, &receipt);
  }
  std::string DataDir(const std::string& org) {
    auto config = LoadNodeConfig(nodes_.config(org));
    EXPECT_TRUE(config.ok());
    return config.ok() ? config->data_dir() : "";
  }

  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
  std::string stewards_;
  int forged_ = 0;
};

TEST_F(DownstreamTest, ReadAtReceiverShowsInOriginatorsDownstreamListWithItsProof) {
  const auto referred = ReferredCase();
  const std::string id = referred.first, mcase = referred.second;
  EXPECT_EQ(Attested(id), 0);
  CommandResult r = ReadAtMinistry(mcase);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_TRUE(Eventually([&] { return Attested(id) == 1; })) << Downstream(id).out;
  r = Downstream(id);
  EXPECT_TRUE(absl::StrContains(r.out, "ministry-id")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "user/cw")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "case.get")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "case-handling")) << r.out;
  // An evidence item of the received case (one the ministry added) read there.
  const std::string file = fed_.root() + "/payslip.pdf", back = fed_.root() + "/back.pdf";
  {
    std::ofstream out(file);
    out << "payslip";
  }
  r = nodes_.Ctl("ministry-id", {"evidence", "add", mcase, file, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string ev = JsonValues(r.out, "id").at(0);
  r = nodes_.Ctl("ministry-id",
                 {"evidence", "get", mcase, ev, "--out", back, "--purpose", "case-handling"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_EQ(nodes_.Ctl("ministry-id", {"evidence", "list", mcase, "--purpose", "case-handling"})
                .exit_code,
            0);
  ASSERT_TRUE(Eventually([&] { return Attested(id) == 3; })) << Downstream(id).out;
  r = Downstream(id);
  EXPECT_TRUE(absl::StrContains(r.out, "evidence.list")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "evidence.get")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.out, "evidence " + ev)) << r.out;
  // Both remote entries proved against ministry-id's signed checkpoint.
  r = Downstream(id, /*prove=*/true);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  size_t proved = 0;
  for (size_t at = r.out.find("in ministry-id's ledger at size"); at != std::string::npos;
       at = r.out.find("in ministry-id's ledger at size", at + 1)) {
    ++proved;
  }
  EXPECT_EQ(proved, 3u) << r.out;
  // The attestation is on the case's own trail at the originator.
  r = nodes_.CtlAs("union-sg", nodes_.auditor("union-sg"),
                   {"audit", "log", "--case", id, "--action", "downstream.access"});
  EXPECT_TRUE(absl::StrContains(r.out, "downstream.access")) << r.out;
  // A peer asking for a proof of an entry it was never attested is refused.
  const testing::TestOrg& insp = fed_.org("inspectorate-sg");
  auto ch = MakeMutualTlsChannel(
      {insp.node.cert_pem, insp.node.key_pem, fed_.org("ministry-id").ca.cert_pem},
      fed_.org("ministry-id").endpoint(), "");
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  v1::ProveAccessRequest req;
  req.set_index(1);
  v1::InclusionProofResponse resp;
  EXPECT_EQ(v1::PeerService::NewStub(ch)->ProveAccess(&ctx, req, &resp).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(DownstreamTest, AttestationsWaitInTheOutboxWhileTheOriginatorIsDownAndArriveOnce) {
  const auto referred = ReferredCase();
  const std::string id = referred.first, mcase = referred.second;
  nodes_.Stop("union-sg", SIGTERM);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(ReadAtMinistry(mcase).exit_code, 0);
  int pending = 0;
  const v1::ListOutboxResponse outbox = nodes_.Outbox("ministry-id");
  for (const auto& e : outbox.entries()) {
    if (e.kind() == "access-attestation" && e.state() == "pending") ++pending;
  }
  EXPECT_EQ(pending, 3);
  // The receiver restarts too (its outbox is loaded again), then the originator.
  nodes_.Stop("ministry-id", SIGKILL);
  ASSERT_TRUE(nodes_.Start("ministry-id"));
  ASSERT_TRUE(nodes_.Start("union-sg"));
  nodes_.AwaitOutboxSettled("ministry-id");
  ASSERT_TRUE(Eventually([&] { return Attested(id) == 3; }))
      << Downstream(id).out << "\nministry-id's outbox:\n"
      << nodes_.Ctl("ministry-id", {"outbox", "--json"}).out << "\nministry-id's log:\n"
      << nodes_.process("ministry-id").Log() << "\nunion-sg's log:\n"
      << nodes_.process("union-sg").Log();
  // Once more after both restart: nothing is delivered twice.
  nodes_.Stop("union-sg", SIGTERM);
  ASSERT_TRUE(nodes_.Start("union-sg"));
  nodes_.AwaitOutboxSettled("ministry-id");
  EXPECT_EQ(Attested(id), 3);
  // The attestations were stored unsealed: they hold no personal data.
  nodes_.Stop("ministry-id", SIGTERM);
  EXPECT_FALSE(testing::AnyFileContains(DataDir("ministry-id"), "Dewi"));
}

TEST_F(DownstreamTest, ForgedOrMalformedAttestationsAreRefusedRecordedAndChangeNothing) {
  const auto referred = ReferredCase();
  const std::string id = referred.first, mcase = referred.second;
  ASSERT_EQ(ReadAtMinistry(mcase).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return Attested(id) == 1; }));
  const std::string referral =
      JsonValues(
          nodes_.Ctl("union-sg", {"case", "show", id, "--purpose", "case-handling", "--json"}).out,
          "referral_id")
          .at(0);
  // From an org the case was never referred to (its own key and certificate).
  EXPECT_EQ(DeliverToUnion("inspectorate-sg", Forged("inspectorate-sg", id, referral, "user/x"))
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // From the receiver, about a case it never received, or another referral.
  EXPECT_EQ(
      DeliverToUnion("ministry-id", Forged("ministry-id", "C-0011223344FF", referral, "user/x"))
          .error_code(),
      grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(DeliverToUnion("ministry-id", Forged("ministry-id", id, "REF-0011223344FF", "user/x"))
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Control characters, a subject that is not a staff account, an oversized id.
  EXPECT_NE(DeliverToUnion("ministry-id", Forged("ministry-id", id, referral, "user/a\x1b[2Jb"))
                .error_code(),
            grpc::StatusCode::OK);
  EXPECT_NE(DeliverToUnion("ministry-id", Forged("ministry-id", id, referral, "Dewi Lestari"))
                .error_code(),
            grpc::StatusCode::OK);
  EXPECT_NE(DeliverToUnion("ministry-id",
                           Forged("ministry-id", id, referral, "user/" + std::string(5000, 'a')))
                .error_code(),
            grpc::StatusCode::OK);
  EXPECT_EQ(Attested(id), 1);
  CommandResult r = nodes_.CtlAs("union-sg", nodes_.auditor("union-sg"),
                                 {"audit", "log", "--action", "envelope.receive", "--outcome",
                                  "denied", "--json", "--limit", "100"});
  EXPECT_GE(JsonValues(r.out, "index").size(), 6u) << r.out;
  EXPECT_FALSE(absl::StrContains(r.out, "Dewi Lestari")) << r.out;
}

TEST_F(DownstreamTest, ReconcileAgreesOnANormalExchangeAndListsAnEnvelopeOneSideLost) {
  const auto referred = ReferredCase();
  const std::string id = referred.first, mcase = referred.second;
  CommandResult r = Reconcile();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "agree on 2 envelope(s)")) << r.out;  // referral, decision
  // The ministry's database as it is now, kept aside (a backup).
  const std::string data = DataDir("ministry-id"), backup = fed_.root() + "/ministry-backup";
  nodes_.Stop("ministry-id", SIGTERM);
  std::filesystem::copy(data, backup, std::filesystem::copy_options::recursive);
  ASSERT_TRUE(nodes_.Start("ministry-id"));
  ASSERT_EQ(ReadAtMinistry(mcase).exit_code, 0);
  ASSERT_TRUE(Eventually([&] { return Attested(id) == 1; }));
  nodes_.AwaitOutboxSettled("ministry-id");
  r = Reconcile();
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "agree on 3 envelope(s)")) << r.out;
  // The ministry's database goes back to the backup: the attestation it sent,
  // and its receipt entry of it, are gone from its side only.
  nodes_.Stop("ministry-id", SIGTERM);
  std::filesystem::remove_all(data);
  std::filesystem::copy(backup, data, std::filesystem::copy_options::recursive);
  ASSERT_TRUE(nodes_.Start("ministry-id"));
  r = Reconcile();
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_TRUE(absl::StrContains(r.out, "this node only")) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "recorded by one side only")) << r.err;
}

TEST_F(DownstreamTest, ConcurrentReadsAtTheReceiverAreEachAttestedExactlyOnce) {
  const auto referred = ReferredCase();
  const std::string id = referred.first, mcase = referred.second;
  // Many reads in flight on one channel, and two corridorctl users besides.
  const std::string user = nodes_.user("ministry-id");
  auto ch = MakeMutualTlsChannel(
      {ReadAll(user + ".crt"), ReadAll(user + ".key"), fed_.org("ministry-id").ca.cert_pem},
      fed_.org("ministry-id").endpoint(), "");
  auto stub = v1::CaseService::NewStub(ch);
  constexpr int kThreads = 6, kReadsEach = 3, kCtlReads = 2;
  std::atomic<int> ok{0};
  absl::Mutex mu;
  std::vector<std::string> failures;  // why a read failed, for the failure message
  auto failed = [&](std::string why) {
    absl::MutexLock lock(&mu);
    failures.push_back(std::move(why));
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kReadsEach; ++i) {
        grpc::ClientContext ctx;
        // Generous: on a loaded CI machine under a sanitizer twenty attested
        // reads (two synced commits each) queue behind one another.
        ctx.set_deadline(
            absl::ToChronoTime(absl::Now() + testing::ScaledDeadline(absl::Seconds(120))));
        v1::GetCaseRequest req;
        req.set_id(mcase);
        req.set_purpose("case-handling");
        v1::Case c;
        const grpc::Status st = stub->GetCase(&ctx, req, &c);
        if (st.ok()) {
          ++ok;
        } else {
          failed(absl::StrCat("GetCase: ", st.error_code(), " ", st.error_message()));
        }
      }
    });
  }
  for (int t = 0; t < kCtlReads; ++t) {
    threads.emplace_back([&] {
      const CommandResult r = ReadAtMinistry(mcase);
      if (r.exit_code == 0) {
        ++ok;
      } else {
        failed(absl::StrCat("case show: exit ", r.exit_code, " ", r.err));
      }
    });
  }
  for (auto& t : threads) t.join();
  constexpr int kReads = kThreads * kReadsEach + kCtlReads;
  ASSERT_EQ(ok.load(), kReads) << absl::StrJoin(failures, "\n") << "\nministry-id's log:\n"
                               << nodes_.process("ministry-id").Log();
  ASSERT_TRUE(Eventually([&] { return Attested(id) == kReads; })) << Downstream(id).out;
  // Every remote index is different: one attestation per read.
  CommandResult r = Downstream(id);
  std::set<std::string> remote;
  for (absl::string_view line : absl::StrSplit(r.out, '\n')) {
    std::vector<std::string> cells = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (cells.size() > 3 && cells[1] == "ministry-id") remote.insert(cells[cells.size() - 2]);
  }
  EXPECT_EQ(remote.size(), static_cast<size_t>(kReads)) << r.out;
}

}  // namespace
}  // namespace corridor
