// Cases and audited access at a real node (in-process, mutual TLS on a
// loopback port): the whole access table walked with every role, each call
// leaving exactly one ledger entry with the right outcome; reads that fail
// closed when the ledger cannot write; and crypto-shredding on erase.
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "ledger/export.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "rocksdb/db.h"
#include "server/common/edge.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/store/case_store.h"
#include "server/store/store.h"
#include "tests/testing/deadline.h"
#include "tests/testing/federation.h"
#include "tests/testing/fields.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

namespace fs = std::filesystem;

// An export as the auditor receives it: every piece of the stream, joined.
struct ReadExportResult {
  grpc::Status status;
  std::string exported;
};
ReadExportResult ReadExport(std::shared_ptr<grpc::Channel> ch, const v1::ExportRequest& req,
                            grpc::ClientContext* ctx) {
  ReadExportResult out;
  auto stub = v1::AuditService::NewStub(ch);
  auto reader = stub->Export(ctx, req);
  v1::ExportResponse piece;
  while (reader->Read(&piece)) out.exported += piece.export_();
  out.status = reader->Finish();
  return out;
}

class CasesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    const std::string path = fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}},
                                                               {"pros", {"prosecutor"}},
                                                               {"appr", {"approver"}},
                                                               {"aud", {"auditor"}},
                                                               {"adm", {"admin"}}});
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(path));
    StartNode();
  }
  void TearDown() override { StopNode(); }
  void StartNode() {
    NodeTestHooks hooks;
    hooks.ledger_before_commit = [this]() -> absl::Status {
      if (fail_commits_) return absl::UnavailableError("injected: the disk is gone");
      return absl::OkStatus();
    };
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_, hooks));
  }
  void StopNode() {
    if (node_) node_->Shutdown(absl::Seconds(1));
    node_.reset();
  }

  std::shared_ptr<grpc::Channel> As(const std::string& org, const std::string& user) {
    const std::string prefix = fed_.IssueUser(org, user);
    return MakeMutualTlsChannel(
        {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
         fed_.org("union-sg").ca.cert_pem},
        fed_.org("union-sg").endpoint(), "");
  }
  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + testing::ScaledDeadline(absl::Seconds(10))));
    return ctx;
  }
  static v1::CreateCaseRequest NewCase(const std::string& worker = "Siti Rahayu") {
    v1::CreateCaseRequest req;
    auto* c = req.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    c->set_sector("domestic-work");
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name(worker);
    c->mutable_worker()->set_document_number("X1234567");
    c->set_narrative("charged eight months of wages");
    return req;
  }
  std::string CreateCase(const std::string& worker = "Siti Rahayu") {
    v1::Case resp;
    grpc::Status s = v1::CaseService::NewStub(As("union-sg", "cw"))
                         ->CreateCase(Ctx().get(), NewCase(worker), &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.id();
  }
  // Ledger size as the auditor sees it (the query itself adds one entry).
  uint64_t LedgerSize() {
    v1::CheckpointResponse cp;
    grpc::Status s = v1::AuditService::NewStub(auditor_)->GetCheckpoint(Ctx().get(), {}, &cp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return cp.size();
  }
  std::vector<v1::LoggedEvent> Entries(uint64_t begin, uint64_t end) {
    v1::GetEntriesRequest req;
    req.set_begin(begin);
    req.set_end(end);
    v1::GetEntriesResponse resp;
    EXPECT_TRUE(v1::AuditService::NewStub(auditor_)->GetEntries(Ctx().get(), req, &resp).ok());
    return {resp.events().begin(), resp.events().end()};
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::unique_ptr<Node> node_;
  std::atomic<bool> fail_commits_{false};
  std::shared_ptr<grpc::Channel> auditor_;
};

using Call = std::function<grpc::Status(std::shared_ptr<grpc::Channel>, const std::string& case_id,
                                        const std::string& evidence_id)>;

struct MethodCase {
  std::string name;
  Call call;
  std::set<std::string> allowed;  // users (by role name) allowed
};

struct Upload {
  grpc::Status status;
  v1::EvidenceItem item;
};

Upload UploadEvidence(std::shared_ptr<grpc::Channel> ch, const std::string& case_id,
                      const std::string& file_name, const std::string& data) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + testing::ScaledDeadline(absl::Seconds(30))));
  Upload out;
  auto writer = v1::CaseService::NewStub(ch)->AddEvidence(&ctx, &out.item);
  v1::AddEvidenceRequest header;
  header.mutable_header()->set_case_id(case_id);
  header.mutable_header()->set_file_name(file_name);
  header.mutable_header()->set_media_type("text/plain");
  writer->Write(header);
  for (size_t off = 0; off < data.size(); off += 50000) {
    v1::AddEvidenceRequest part;
    part.set_data(data.substr(off, 50000));
    if (!writer->Write(part)) break;
  }
  writer->WritesDone();
  out.status = writer->Finish();
  return out;
}

struct Download {
  grpc::Status status;
  v1::EvidenceItem item;
  std::string data;
};

Download DownloadEvidence(std::shared_ptr<grpc::Channel> ch, const std::string& case_id,
                          const std::string& evidence_id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + testing::ScaledDeadline(absl::Seconds(30))));
  v1::GetEvidenceRequest req;
  req.set_case_id(case_id);
  req.set_evidence_id(evidence_id);
  req.set_purpose("case-handling");
  auto reader = v1::CaseService::NewStub(ch)->GetEvidence(&ctx, req);
  Download out;
  v1::EvidenceChunk chunk;
  while (reader->Read(&chunk)) {
    if (chunk.has_item()) out.item = chunk.item();
    out.data += chunk.data();
  }
  out.status = reader->Finish();
  return out;
}

std::vector<MethodCase> AccessTable() {
  auto ctx = [] {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return c;
  };
  return {
      {"CreateCase",
       [ctx](auto ch, const std::string&, const std::string&) {
         v1::Case r;
         v1::CreateCaseRequest req;
         req.mutable_case_()->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
         req.mutable_case_()->set_origin_country("ID");
         req.mutable_case_()->set_destination_country("SG");
         req.mutable_case_()->mutable_worker()->set_name("Walk Worker");
         return v1::CaseService::NewStub(ch)->CreateCase(ctx().get(), req, &r);
       },
       {"cw"}},
      {"GetCase",
       [ctx](auto ch, const std::string& id, const std::string&) {
         v1::GetCaseRequest req;
         req.set_id(id);
         req.set_purpose("case-handling");
         v1::Case r;
         return v1::CaseService::NewStub(ch)->GetCase(ctx().get(), req, &r);
       },
       {"cw", "pros"}},
      {"ListCases",
       [ctx](auto ch, const std::string&, const std::string&) {
         v1::ListCasesRequest req;
         req.set_page_size(1);
         v1::ListCasesResponse r;
         return v1::CaseService::NewStub(ch)->ListCases(ctx().get(), req, &r);
       },
       {"cw", "pros"}},
      {"UpdateCase",
       [ctx](auto ch, const std::string& id, const std::string&) {
         v1::UpdateCaseRequest req;
         req.set_id(id);
         req.set_narrative("update");
         v1::Case r;
         return v1::CaseService::NewStub(ch)->UpdateCase(ctx().get(), req, &r);
       },
       {"cw"}},
      {"CloseCase",
       [ctx](auto ch, const std::string& id, const std::string&) {
         v1::CloseCaseRequest req;
         req.set_id(id);
         v1::CaseSummary r;
         return v1::CaseService::NewStub(ch)->CloseCase(ctx().get(), req, &r);
       },
       {"cw"}},
      {"EraseCase",
       [ctx](auto ch, const std::string& id, const std::string&) {
         v1::EraseCaseRequest req;
         req.set_id(id);
         req.set_reason("worker asked for erasure");
         v1::EraseCaseResponse r;
         return v1::CaseService::NewStub(ch)->EraseCase(ctx().get(), req, &r);
       },
       {"appr"}},
      {"AddEvidence",
       [](auto ch, const std::string& id, const std::string&) {
         return UploadEvidence(ch, id, "walk.txt", "walk evidence").status;
       },
       {"cw"}},
      {"ListEvidence",
       [ctx](auto ch, const std::string& id, const std::string&) {
         v1::ListEvidenceRequest req;
         req.set_case_id(id);
         req.set_purpose("case-handling");
         v1::ListEvidenceResponse r;
         return v1::CaseService::NewStub(ch)->ListEvidence(ctx().get(), req, &r);
       },
       {"cw", "pros"}},
      {"GetEvidence",
       [](auto ch, const std::string& id, const std::string& ev) {
         return DownloadEvidence(ch, id, ev).status;
       },
       {"cw", "pros"}},
      {"QueryEvents",
       [ctx](auto ch, const std::string& id, const std::string&) {
         v1::QueryEventsRequest req;
         req.set_case_id(id);
         v1::QueryEventsResponse r;
         return v1::AuditService::NewStub(ch)->QueryEvents(ctx().get(), req, &r);
       },
       {"aud"}},
      {"GetCheckpoint",
       [ctx](auto ch, const std::string&, const std::string&) {
         v1::CheckpointResponse r;
         return v1::AuditService::NewStub(ch)->GetCheckpoint(ctx().get(), {}, &r);
       },
       {"aud"}},
      {"GetInclusionProof",
       [ctx](auto ch, const std::string&, const std::string&) {
         v1::InclusionProofRequest req;
         req.set_index(0);
         v1::InclusionProofResponse r;
         return v1::AuditService::NewStub(ch)->GetInclusionProof(ctx().get(), req, &r);
       },
       {"aud"}},
      {"GetConsistencyProof",
       [ctx](auto ch, const std::string&, const std::string&) {
         v1::ConsistencyProofRequest req;
         req.set_old_size(1);
         v1::ConsistencyProofResponse r;
         return v1::AuditService::NewStub(ch)->GetConsistencyProof(ctx().get(), req, &r);
       },
       {"aud"}},
      {"GetEntries",
       [ctx](auto ch, const std::string&, const std::string&) {
         v1::GetEntriesRequest req;
         req.set_begin(0);
         req.set_end(1);
         v1::GetEntriesResponse r;
         return v1::AuditService::NewStub(ch)->GetEntries(ctx().get(), req, &r);
       },
       {"aud"}},
      {"Export",
       [ctx](auto ch, const std::string&, const std::string&) {
         v1::ExportRequest req;
         req.set_begin(0);
         req.set_end(1);
         return ReadExport(ch, req, ctx().get()).status;
       },
       {"aud"}},
  };
}

TEST_F(CasesTest, AccessTableWalkEveryMethodEveryRoleOneEntryEach) {
  auditor_ = As("union-sg", "aud");
  // Identities: one per role, a user the node does not know, and a user of another org.
  std::vector<std::pair<std::string, std::shared_ptr<grpc::Channel>>> who = {
      {"cw", As("union-sg", "cw")},           {"pros", As("union-sg", "pros")},
      {"appr", As("union-sg", "appr")},       {"aud", As("union-sg", "aud")},
      {"adm", As("union-sg", "adm")},         {"unknown", As("union-sg", "stranger")},
      {"other-org", As("ministry-id", "cw")},
  };
  int calls = 0;
  for (const MethodCase& m : AccessTable()) {
    for (const auto& [name, channel] : who) {
      SCOPED_TRACE(m.name + " as " + name);
      const std::string id = CreateCase();
      Upload ev = UploadEvidence(As("union-sg", "cw"), id, "contract.txt", "a contract");
      ASSERT_TRUE(ev.status.ok()) << ev.status.error_message();
      const uint64_t before = LedgerSize();
      grpc::Status s = m.call(channel, id, ev.item.id());
      const uint64_t after = LedgerSize();
      const bool allowed = m.allowed.count(name) > 0;
      if (allowed) {
        EXPECT_TRUE(s.ok()) << s.error_message();
      } else if (name == "unknown" || name == "other-org") {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
      } else {
        EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
      }
      // Exactly one entry between the two checkpoint reads (which add one each).
      ASSERT_EQ(after - before, 2u);
      std::vector<v1::LoggedEvent> e = Entries(before, before + 1);
      ASSERT_EQ(e.size(), 1u);
      EXPECT_EQ(e[0].event().outcome(),
                allowed ? v1::ACCESS_OUTCOME_ALLOWED : v1::ACCESS_OUTCOME_DENIED)
          << e[0].event().DebugString();
      if (name == "unknown") {
        EXPECT_EQ(e[0].event().actor_subject(), "unverified:user/stranger");
      }
      if (name == "other-org") {
        EXPECT_EQ(e[0].event().actor_org(), "ministry-id");
      }
      ++calls;
    }
  }
  EXPECT_EQ(calls, 15 * 7);
}

// Every method that takes a case or evidence id, given ids that are malformed
// in each way a probe tried (NUL, newline forging a row, escape sequences,
// oversized): a specific INVALID_ARGUMENT, exactly one denied entry, and that
// entry bounded and free of control characters.
TEST_F(CasesTest, MalformedIdsAreRefusedAndRecordedBoundedByEveryMethod) {
  auditor_ = As("union-sg", "aud");
  const std::map<std::string, std::shared_ptr<grpc::Channel>> as = {
      {"cw", As("union-sg", "cw")},
      {"pros", As("union-sg", "pros")},
      {"appr", As("union-sg", "appr")},
      {"aud", auditor_}};
  const std::vector<std::string> bad_ids = {
      std::string("C-1\0hidden", 10), "C-1\n2026 union-sg/user/admin1 case.erase allowed",
      "C-\x1b[31mred", std::string(100000, 'A'), "C-1/../C-2"};
  int calls = 0;
  for (const MethodCase& m : AccessTable()) {
    if (m.name == "CreateCase" || m.name == "ListCases" || m.name == "GetCheckpoint" ||
        m.name == "GetInclusionProof" || m.name == "GetConsistencyProof" ||
        m.name == "GetEntries" || m.name == "Export") {
      continue;  // these take no id
    }
    const std::string user = *m.allowed.begin();
    for (const std::string& bad : bad_ids) {
      SCOPED_TRACE(m.name + " with id of " + std::to_string(bad.size()) + " bytes");
      const uint64_t before = LedgerSize();
      // As the case id, and as the evidence id.
      grpc::Status s = m.call(as.at(user), bad, m.name == "GetEvidence" ? bad : "E-1");
      EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
      const uint64_t after = LedgerSize();
      ASSERT_EQ(after - before, 2u);
      std::vector<v1::LoggedEvent> e = Entries(before, before + 1);
      ASSERT_EQ(e.size(), 1u);
      const v1::AccessEvent& ev = e[0].event();
      EXPECT_EQ(ev.outcome(), v1::ACCESS_OUTCOME_DENIED) << ev.DebugString();
      EXPECT_LT(e[0].entry().size(), 4096u);
      for (const std::string* field : {&ev.resource_id(), &ev.case_id(), &ev.reason()}) {
        for (char c : *field) EXPECT_FALSE(c >= 0 && c < 0x20) << ev.DebugString();
      }
      ++calls;
    }
  }
  EXPECT_EQ(calls, 8 * 5);
  // An oversized purpose (any caseworker) is refused and recorded bounded, and
  // the audit trail stays readable in full afterwards.
  const std::string id = CreateCase();
  v1::GetCaseRequest get;
  get.set_id(id);
  get.set_purpose(std::string(1 << 20, 'p'));
  v1::Case c;
  grpc::Status s = v1::CaseService::NewStub(as.at("cw"))->GetCase(Ctx().get(), get, &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  get.set_purpose("Case Handling\n");
  s = v1::CaseService::NewStub(as.at("cw"))->GetCase(Ctx().get(), get, &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  v1::QueryEventsRequest q;
  q.set_page_size(1000);
  v1::QueryEventsResponse events;
  s = v1::AuditService::NewStub(auditor_)->QueryEvents(Ctx().get(), q, &events);
  ASSERT_TRUE(s.ok()) << s.error_message();
  s = ReadExport(auditor_, v1::ExportRequest(), Ctx().get()).status;
  ASSERT_TRUE(s.ok()) << s.error_message();
}

// No set of entries makes an audit answer too large to send: QueryEvents and
// GetEntries answers stay within 1 MiB while paging through every entry once,
// and an export larger than 1 MiB arrives as a stream of pieces that verifies
// when joined. (Entries are bounded to a few KiB, so 1,000 of them reach 1 MiB
// only when every field is at its bound; the cut itself is plain code in
// AuditServiceImpl.)
TEST_F(CasesTest, AuditAnswersPageByBytesAndAnExportOfAnySizeArrivesInPieces) {
  auditor_ = As("union-sg", "aud");
  constexpr int kCases = 50;
  for (int i = 0; i < kCases; ++i) CreateCase(absl::StrCat("Worker ", i));
  // Each listing records one entry per case returned; a long request id makes each big.
  auto cases = v1::CaseService::NewStub(As("union-sg", "cw"));
  const uint64_t before = LedgerSize();
  constexpr int kListings = 100;
  for (int i = 0; i < kListings; ++i) {
    v1::ListCasesRequest req;
    req.set_page_size(kCases);
    req.set_request_id(absl::StrCat(i, ":", std::string(120, 'r')));
    v1::ListCasesResponse resp;
    ASSERT_TRUE(cases->ListCases(Ctx().get(), req, &resp).ok());
    ASSERT_EQ(resp.cases_size(), kCases);
  }
  const uint64_t size = LedgerSize();
  ASSERT_GE(size - before, uint64_t{kCases} * kListings);

  auto audit = v1::AuditService::NewStub(auditor_);
  // QueryEvents: every case.list entry exactly once, over pages of at most 1 MiB.
  std::set<uint64_t> seen;
  std::string token;
  int pages = 0;
  do {
    v1::QueryEventsRequest q;
    q.set_action("case.list");
    q.set_page_size(1000);
    q.set_page_token(token);
    v1::QueryEventsResponse page;
    grpc::Status s = audit->QueryEvents(Ctx().get(), q, &page);
    ASSERT_TRUE(s.ok()) << s.error_message();
    size_t bytes = 0;
    for (const auto& e : page.events()) {
      bytes += e.entry().size();
      EXPECT_TRUE(seen.insert(e.index()).second) << "entry " << e.index() << " twice";
    }
    EXPECT_LE(bytes, size_t{1} << 20);
    ++pages;
    token = page.next_page_token();
  } while (!token.empty() && pages < 100);
  EXPECT_EQ(seen.size(), size_t{kCases} * kListings);

  // GetEntries: at most 1 MiB, from where it was asked.
  v1::GetEntriesRequest g;
  g.set_begin(before);
  g.set_end(before + 1000);
  v1::GetEntriesResponse got;
  ASSERT_TRUE(audit->GetEntries(Ctx().get(), g, &got).ok());
  size_t bytes = 0;
  for (const auto& e : got.events()) bytes += e.entry().size();
  EXPECT_GT(got.events_size(), 0);
  EXPECT_LE(bytes, size_t{1} << 20);
  EXPECT_EQ(got.events(0).index(), before);

  // Export: the whole ledger, in several pieces, that verify when joined.
  v1::CheckpointResponse cp;
  ASSERT_TRUE(audit->GetCheckpoint(Ctx().get(), {}, &cp).ok());
  auto ctx = Ctx();
  auto reader = audit->Export(ctx.get(), v1::ExportRequest());
  v1::ExportResponse piece;
  std::string joined;
  int pieces = 0;
  while (reader->Read(&piece)) {
    EXPECT_LE(piece.export_().size(), size_t{1} << 20);
    joined += piece.export_();
    ++pieces;
  }
  grpc::Status s = reader->Finish();
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(joined.size(), size_t{1} << 20);
  EXPECT_GT(pieces, 1);
  auto verified = ledger::VerifyExport(joined, cp.verifier_key());
  EXPECT_TRUE(verified.ok()) << verified.status();
}

// Calls a method by path with an empty request (a generic unary call).
grpc::Status CallByPath(std::shared_ptr<grpc::Channel> ch, const std::string& path) {
  grpc::GenericStub stub(ch);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  grpc::CompletionQueue cq;
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  auto call = stub.PrepareUnaryCall(&ctx, path, request, &cq);
  call->StartCall();
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  cq.Next(&tag, &ok);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

// Every service goes through the access table — health, reflection and
// methods nobody serves included — and every refusal is a ledger entry.
TEST_F(CasesTest, RefusalsOutsideTheCaseServicesAreRecordedToo) {
  auditor_ = As("union-sg", "aud");
  std::shared_ptr<grpc::Channel> peer_node =
      MakeMutualTlsChannel({fed_.org("ministry-id").node.cert_pem,
                            fed_.org("ministry-id").node.key_pem, fed_.org("union-sg").ca.cert_pem},
                           fed_.org("union-sg").endpoint(), "");
  struct Refused {
    std::string who;
    std::shared_ptr<grpc::Channel> channel;
    std::string path;
  };
  const std::vector<Refused> refused = {
      {"user calling the peer service", As("union-sg", "cw"), "/corridor.v1.PeerService/Hello"},
      {"user calling Deliver", As("union-sg", "cw"), "/corridor.v1.PeerService/Deliver"},
      {"caseworker pushing a roster", As("union-sg", "cw"), "/corridor.v1.NodeService/PushRoster"},
      {"node calling Status", peer_node, "/corridor.v1.NodeService/Status"},
      {"node using reflection", peer_node,
       "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"},
      {"user calling an unknown method", As("union-sg", "cw"), "/corridor.v2.Secret/Read"},
      {"user calling an unknown service", As("union-sg", "cw"), "/other.Service/Method"},
  };
  for (const Refused& r : refused) {
    SCOPED_TRACE(r.who);
    const uint64_t before = LedgerSize();
    grpc::Status s = CallByPath(r.channel, r.path);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    const uint64_t after = LedgerSize();
    ASSERT_EQ(after - before, 2u);
    std::vector<v1::LoggedEvent> e = Entries(before, before + 1);
    ASSERT_EQ(e.size(), 1u);
    EXPECT_EQ(e[0].event().action(), "auth.denied");
    EXPECT_EQ(e[0].event().outcome(), v1::ACCESS_OUTCOME_DENIED);
    EXPECT_EQ(e[0].event().resource_id(), r.path);
  }
  // What the table allows still works: health for nodes and users.
  EXPECT_EQ(CallByPath(peer_node, "/grpc.health.v1.Health/Check").error_code(),
            grpc::StatusCode::OK);
}

// A change releases its case lock before it answers: a client that sends its
// next change on the case as soon as it has the answer never finds it busy.
TEST_F(CasesTest, TheNextChangeAfterAnAnswerNeverFindsTheCaseBusy) {
  auto cw = As("union-sg", "cw");
  const std::string id = CreateCase();
  auto stub = v1::CaseService::NewStub(cw);
  for (int i = 0; i < 40; ++i) {
    SCOPED_TRACE(i);
    Upload up = UploadEvidence(cw, id, "payslip.txt", "a payslip");
    ASSERT_TRUE(up.status.ok()) << up.status.error_message();
    v1::UpdateCaseRequest req;
    req.set_id(id);
    req.set_narrative("update " + std::to_string(i));
    v1::Case r;
    grpc::Status s = stub->UpdateCase(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
    s = stub->UpdateCase(Ctx().get(), req, &r);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
}

TEST_F(CasesTest, ReadsFailClosedWhenTheLedgerCannotWrite) {
  auditor_ = As("union-sg", "aud");
  const std::string id = CreateCase();
  fail_commits_ = true;
  v1::GetCaseRequest req;
  req.set_id(id);
  req.set_purpose("case-handling");
  v1::Case resp;
  grpc::Status s = v1::CaseService::NewStub(As("union-sg", "cw"))->GetCase(Ctx().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(resp.worker().name(), "");  // nothing of the case came back
  EXPECT_EQ(resp.ByteSizeLong(), 0u);
  // A change cannot happen unrecorded either.
  v1::Case created;
  s = v1::CaseService::NewStub(As("union-sg", "cw"))
          ->CreateCase(Ctx().get(), NewCase("Lost Worker"), &created);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  // The disk is back (the node would recover by itself: tests/health_test.cc);
  // after a restart nothing of the refused create is there.
  fail_commits_ = false;
  StopNode();
  StartNode();
  v1::ListCasesResponse list;
  ASSERT_TRUE(
      v1::CaseService::NewStub(As("union-sg", "cw"))->ListCases(Ctx().get(), {}, &list).ok());
  ASSERT_EQ(list.cases_size(), 1);  // the unrecorded create left nothing behind
  EXPECT_EQ(list.cases(0).id(), id);
  ASSERT_TRUE(
      v1::CaseService::NewStub(As("union-sg", "cw"))->GetCase(Ctx().get(), req, &resp).ok());
  EXPECT_EQ(resp.worker().name(), "Siti Rahayu");
}

TEST_F(CasesTest, EraseShredsContentEvenInBackupsWhileLedgerVerifies) {
  auditor_ = As("union-sg", "aud");
  const std::string name = "Worker Zq7-Unique";
  const std::string id = CreateCase(name);
  const std::string data_dir = config_.data_dir();
  // Personal data is never stored in the clear.
  StopNode();
  EXPECT_FALSE(testing::AnyFileContains(data_dir, name));
  // A backup of the database (everything but the key store), and the wrapped
  // data key as it sits in the key store today.
  const std::string backup = fed_.root() + "/backup";  // removed with the federation
  fs::create_directories(backup);
  for (const auto& e : fs::directory_iterator(data_dir)) {
    if (e.path().filename() == "keystore") continue;
    fs::copy(e.path(), backup + "/" + e.path().filename().string(), fs::copy_options::recursive);
  }
  std::string wrapped;
  {
    // The case's key store slot, from the stored case.
    std::string slot;
    {
      ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(backup, {kCasesFamily, kEvidenceFamily}));
      std::string value;
      ASSERT_TRUE(
          store->db()->Get(rocksdb::ReadOptions(), store->family(kCasesFamily), id, &value).ok());
      v1::StoredCase stored;
      ASSERT_TRUE(stored.ParseFromString(value));
      slot = stored.key_slot();
      ASSERT_FALSE(slot.empty());
    }
    rocksdb::DB* ks = nullptr;
    ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::Options(), data_dir + "/keystore", &ks).ok());
    ASSERT_TRUE(ks->Get(rocksdb::ReadOptions(), slot, &wrapped).ok());
    delete ks;
  }
  ASSERT_TRUE(testing::AnyFileContains(data_dir + "/keystore", wrapped));
  StartNode();

  v1::EraseCaseRequest erase;
  erase.set_id(id);
  erase.set_reason("the worker withdrew consent");
  v1::EraseCaseResponse erased;
  ASSERT_TRUE(v1::CaseService::NewStub(As("union-sg", "appr"))
                  ->EraseCase(Ctx().get(), erase, &erased)
                  .ok());
  v1::GetCaseRequest get;
  get.set_id(id);
  get.set_purpose("case-handling");
  v1::Case c;
  grpc::Status s = v1::CaseService::NewStub(As("union-sg", "cw"))->GetCase(Ctx().get(), get, &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  StopNode();

  // The data key is gone from every file of the key store.
  EXPECT_FALSE(testing::AnyFileContains(data_dir + "/keystore", wrapped));
  // The backup still holds the sealed case, but nothing can open it now.
  {
    ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(backup, {kCasesFamily, kEvidenceFamily}));
    auto master = Base64Decode(
        absl::StripAsciiWhitespace(ReadFileToString(config_.master_key_file()).value()));
    ASSERT_OK_AND_ASSIGN(
        auto cases,
        CaseStore::Open(store->db(), store->family(kCasesFamily), store->family(kEvidenceFamily),
                        store->family(NodeStore::kMetaFamily), data_dir + "/keystore", *master));
    ASSERT_OK_AND_ASSIGN(v1::StoredCase stored, cases->GetStored(id));
    EXPECT_FALSE(stored.sealed().empty());
    EXPECT_STATUS(cases->Get(id), absl::StatusCode::kFailedPrecondition,
                  "data key no longer exists");
  }
  // The ledger still holds and verifies the case's history, erasure included.
  {
    std::vector<std::string> families = ledger::LedgerColumnFamilyNames();
    families.push_back(kCasesFamily);
    families.push_back(kEvidenceFamily);
    ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(data_dir, families));
    ASSERT_OK_AND_ASSIGN(Ed25519PrivateKey key,
                         Ed25519PrivateKey::FromPemFile(config_.signing_key().key_file()));
    ledger::RocksDbLedgerOptions o;
    o.origin = LedgerOrigin(config_);
    o.signing_key = &key;
    ASSERT_OK_AND_ASSIGN(auto ledger,
                         ledger::RocksDbLedger::Open(store->db(), store->families(), std::move(o)));
    EXPECT_OK(ledger->VerifyAll());
    ASSERT_OK_AND_ASSIGN(std::vector<uint64_t> hits,
                         ledger->Lookup("case/" + id, ledger::Ledger::kFromNewest, 10));
    ASSERT_GE(hits.size(), 3u);  // create, erase, the refused read
    bool saw_erase = false;
    for (uint64_t i : hits) {
      v1::AccessEvent e;
      ASSERT_TRUE(e.ParseFromString(ledger->Entry(i).value()));
      saw_erase =
          saw_erase || (e.action() == "case.erase" && e.outcome() == v1::ACCESS_OUTCOME_ALLOWED);
      EXPECT_EQ(e.SerializeAsString().find(name),
                std::string::npos);  // no personal data in the ledger
    }
    EXPECT_TRUE(saw_erase);
  }
  StartNode();
}

TEST_F(CasesTest, EvidenceRoundTripsEncryptedAndDigestChecked) {
  auditor_ = As("union-sg", "aud");
  const std::string id = CreateCase();
  std::string payload;
  for (int i = 0; i < 5000; ++i) payload += absl::StrCat("payslip line ", i, " unpaid overtime\n");
  ASSERT_GT(payload.size(), 2 * kEvidenceChunkSize);  // several chunks
  Upload up = UploadEvidence(As("union-sg", "cw"), id, "payslips.txt", payload);
  ASSERT_TRUE(up.status.ok()) << up.status.error_message();
  EXPECT_EQ(up.item.size(), payload.size());
  EXPECT_EQ(up.item.sha256(), DigestBytes(Sha256(payload)));
  Download down = DownloadEvidence(As("union-sg", "pros"), id, up.item.id());
  ASSERT_TRUE(down.status.ok()) << down.status.error_message();
  EXPECT_EQ(down.data, payload);
  EXPECT_EQ(down.item.sha256(), up.item.sha256());
  // At rest it is ciphertext only.
  StopNode();
  EXPECT_FALSE(testing::AnyFileContains(config_.data_dir(), "unpaid overtime"));
  StartNode();
  // Too large: refused, nothing stored.
  const std::string big(config_.limits().max_evidence_bytes() + 1, 'x');
  Upload too_big = UploadEvidence(As("union-sg", "cw"), id, "big.bin", big);
  EXPECT_EQ(too_big.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
      << too_big.status.error_message();
  v1::ListEvidenceRequest lreq;
  lreq.set_case_id(id);
  lreq.set_purpose("case-handling");
  v1::ListEvidenceResponse list;
  ASSERT_TRUE(
      v1::CaseService::NewStub(As("union-sg", "cw"))->ListEvidence(Ctx().get(), lreq, &list).ok());
  EXPECT_EQ(list.items_size(), 1);
}

TEST_F(CasesTest, EmptyOrHeaderlessUploadsAreRefusedNotLeftHanging) {
  auditor_ = As("union-sg", "aud");
  const std::string id = CreateCase();
  auto stub = v1::CaseService::NewStub(As("union-sg", "cw"));
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::EvidenceItem item;
    auto writer = stub->AddEvidence(&ctx, &item);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::EvidenceItem item;
    auto writer = stub->AddEvidence(&ctx, &item);
    v1::AddEvidenceRequest data_first;
    data_first.set_data("no header");
    writer->Write(data_first);
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
  }
}

TEST_F(CasesTest, CorruptedEvidenceBlobIsRefusedOnDownload) {
  auditor_ = As("union-sg", "aud");
  const std::string id = CreateCase();
  Upload up = UploadEvidence(As("union-sg", "cw"), id, "contract.txt", std::string(100000, 'c'));
  ASSERT_TRUE(up.status.ok());
  StopNode();
  {
    ASSERT_OK_AND_ASSIGN(auto store, NodeStore::Open(config_.data_dir(), {kEvidenceFamily}));
    std::unique_ptr<rocksdb::Iterator> it(
        store->db()->NewIterator(rocksdb::ReadOptions(), store->family(kEvidenceFamily)));
    it->SeekToFirst();
    ASSERT_TRUE(it->Valid());
    std::string key = it->key().ToString(), value = it->value().ToString();
    value[value.size() / 2] ^= 0x01;  // one bit of one sealed chunk
    ASSERT_TRUE(
        store->db()->Put(rocksdb::WriteOptions(), store->family(kEvidenceFamily), key, value).ok());
  }
  StartNode();
  const uint64_t before = LedgerSize();
  Download down = DownloadEvidence(As("union-sg", "cw"), id, up.item.id());
  EXPECT_EQ(down.status.error_code(), grpc::StatusCode::DATA_LOSS) << down.status.error_message();
  EXPECT_TRUE(down.data.empty());  // nothing of a corrupt item is sent
  std::vector<v1::LoggedEvent> e = Entries(before, before + 1);
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].event().action(), "evidence.get");
  EXPECT_EQ(e[0].event().outcome(), v1::ACCESS_OUTCOME_ERROR);
}

// Every event about a case is filed under it, refusals included: an evidence
// read refused by the access check shows in the case's trail.
TEST_F(CasesTest, ARefusedEvidenceReadIsInTheCasesTrail) {
  auditor_ = As("union-sg", "aud");
  const std::string id = CreateCase();
  Upload up = UploadEvidence(As("union-sg", "cw"), id, "contract.txt", "terms");
  ASSERT_TRUE(up.status.ok());
  Download refused = DownloadEvidence(auditor_, id, up.item.id());  // auditors read no evidence
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  v1::QueryEventsRequest req;
  req.set_case_id(id);
  req.set_action("evidence.get");
  v1::QueryEventsResponse resp;
  grpc::Status s = v1::AuditService::NewStub(auditor_)->QueryEvents(Ctx().get(), req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.events_size(), 1);
  EXPECT_EQ(resp.events(0).event().outcome(), v1::ACCESS_OUTCOME_DENIED);
  EXPECT_EQ(resp.events(0).event().resource_id(), up.item.id());
  EXPECT_EQ(resp.events(0).event().actor_subject(), "user/aud");
}

TEST_F(CasesTest, BadInputGetsASpecificErrorAndChangesNothing) {
  auditor_ = As("union-sg", "aud");
  auto cw = v1::CaseService::NewStub(As("union-sg", "cw"));
  v1::CreateCaseRequest bad = NewCase();
  bad.mutable_case_()->set_origin_country("Indonesia");
  v1::Case c;
  grpc::Status s = cw->CreateCase(Ctx().get(), bad, &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("two-letter"), std::string::npos);
  v1::GetCaseRequest no_purpose;
  no_purpose.set_id(CreateCase());
  s = cw->GetCase(Ctx().get(), no_purpose, &c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("purpose"), std::string::npos);
  v1::GetCaseRequest missing;
  missing.set_id("C-000000000000");
  missing.set_purpose("case-handling");
  EXPECT_EQ(cw->GetCase(Ctx().get(), missing, &c).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::ListCasesResponse list;
  ASSERT_TRUE(cw->ListCases(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.cases_size(), 1);
}

// Every text field of a case, one byte over its bound (kMaxNarrativeBytes,
// kMaxNoteBytes, kMaxCaseFieldBytes; walked by descriptor, so a field added
// later is covered), is refused by CreateCase, and every text field an update
// brings by UpdateCase, and an upload's file name by AddEvidence: INVALID_ARGUMENT
// naming the field, never its content, recorded as denied, nothing stored or
// changed. At its bound a field is taken.
TEST_F(CasesTest, EveryCaseTextFieldIsBoundedOnCreateAndUpdate) {
  namespace pb = google::protobuf;
  auditor_ = As("union-sg", "aud");
  auto cw = v1::CaseService::NewStub(As("union-sg", "cw"));
  const std::string id = CreateCase();
  auto bound_of = [](const std::string& name) {
    if (name == "narrative") return kMaxNarrativeBytes;
    if (name == "history.note") return kMaxNoteBytes;
    return kMaxCaseFieldBytes;
  };
  auto denied = [&](const std::string& action) {
    v1::QueryEventsRequest q;
    q.set_action(action);
    q.set_outcome(v1::ACCESS_OUTCOME_DENIED);
    q.set_page_size(1000);
    v1::QueryEventsResponse r;
    EXPECT_TRUE(v1::AuditService::NewStub(auditor_)->QueryEvents(Ctx().get(), q, &r).ok());
    return r.events_size();
  };
  std::vector<testing::FieldPath> fields;
  testing::StringFields(v1::Case::descriptor(), {}, &fields);
  int refused = 0;
  for (const testing::FieldPath& path : fields) {
    const std::string name = testing::PathName(path);
    if (path.back()->type() != pb::FieldDescriptor::TYPE_STRING || name == "id") continue;
    v1::CreateCaseRequest req = NewCase();
    testing::SetAt(req.mutable_case_(), path, std::string(bound_of(name) + 1, 'x'));
    v1::Case out;
    grpc::Status s = cw->CreateCase(Ctx().get(), req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    EXPECT_TRUE(absl::StrContains(s.error_message(), "the case's " + name + " is "))
        << name << ": " << s.error_message();
    EXPECT_FALSE(absl::StrContains(s.error_message(), "xxx")) << name;
    ++refused;
  }
  EXPECT_GT(refused, 25);  // every text field of a case, its people and lists
  EXPECT_EQ(denied("case.create"), refused);
  v1::ListCasesResponse list;
  ASSERT_TRUE(cw->ListCases(Ctx().get(), {}, &list).ok());
  EXPECT_EQ(list.cases_size(), 1);

  v1::GetCaseRequest get;
  get.set_id(id);
  get.set_purpose("case-handling");
  v1::Case before;
  ASSERT_TRUE(cw->GetCase(Ctx().get(), get, &before).ok());
  std::vector<testing::FieldPath> brought;
  testing::StringFields(v1::UpdateCaseRequest::descriptor(), {}, &brought);
  int update_refused = 0;
  for (const testing::FieldPath& path : brought) {
    const std::string name = testing::PathName(path);
    if (name == "id" || name == "request_id") continue;  // identifiers: bounded at the edge
    v1::UpdateCaseRequest req;
    req.set_id(id);
    testing::SetAt(&req, path, std::string(bound_of(name) + 1, 'x'));
    v1::Case out;
    grpc::Status s = cw->UpdateCase(Ctx().get(), req, &out);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << name;
    EXPECT_TRUE(absl::StrContains(s.error_message(), "the case's " + name + " is "))
        << name << ": " << s.error_message();
    ++update_refused;
  }
  EXPECT_GE(update_refused, 10);
  EXPECT_EQ(denied("case.update"), update_refused);
  v1::Case after;
  ASSERT_TRUE(cw->GetCase(Ctx().get(), get, &after).ok());
  EXPECT_EQ(after.SerializeAsString(), before.SerializeAsString());

  // An upload's file name: over the bound refused, naming the field; at it, taken.
  Upload up =
      UploadEvidence(As("union-sg", "cw"), id, std::string(kMaxCaseFieldBytes + 1, 'f'), "scan");
  EXPECT_EQ(up.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(up.status.error_message(), "the case's evidence.file_name is"))
      << up.status.error_message();
  EXPECT_EQ(denied("evidence.add"), 1);
  up = UploadEvidence(As("union-sg", "cw"), id, std::string(kMaxCaseFieldBytes, 'f'), "scan");
  EXPECT_TRUE(up.status.ok()) << up.status.error_message();

  // At their bounds, the narrative and the worker's name are taken.
  v1::UpdateCaseRequest full;
  full.set_id(id);
  full.set_narrative(std::string(kMaxNarrativeBytes, 'n'));
  full.mutable_worker()->set_name(std::string(kMaxCaseFieldBytes, 'w'));
  v1::Case out;
  grpc::Status s = cw->UpdateCase(Ctx().get(), full, &out);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

}  // namespace
}  // namespace corridor
