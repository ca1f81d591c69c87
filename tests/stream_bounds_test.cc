// Oversized and hostile input at a real node, and streams that go silent
// (issue 9, "Oversized envelope headers" and "Streams without an idle
// timeout"): PeerService.Deliver with envelope headers of several MiB, and
// every ReferralService method with each of its string fields (walked by
// protobuf reflection, so a new field is covered without touching this test)
// oversized and full of control characters, each get one bounded denial and
// exactly one bounded ledger entry, and the audit log and a full export still
// read afterwards; many such calls at once leave the node up. An export whose
// client stops reading is cut off after the idle timeout while others go on;
// exports at once are bounded; held reflection streams are bounded in number
// and time and starve nothing.
#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/message.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "ledger/export.h"
#include "server/audit/access_log.h"
#include "server/audit/audit_service.h"
#include "server/common/edge.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/node/reflection.h"
#include "tests/testing/channels.h"
#include "tests/testing/deadline.h"
#include "tests/testing/federation.h"
#include "tests/testing/fields.h"
#include "tests/testing/requests.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

namespace pb = google::protobuf;
using ReflectionStub = grpc::reflection::v1alpha::ServerReflection;
using ReflectionRequest = grpc::reflection::v1alpha::ServerReflectionRequest;
using ReflectionResponse = grpc::reflection::v1alpha::ServerReflectionResponse;
using testing::FieldPath;
using testing::PathName;
using testing::SetAt;
using testing::StringFields;

// `bytes` of text full of control characters (valid UTF-8, as proto3 strings
// must be): escape sequences, NUL, newlines, bidi overrides, NEL.
std::string Hostile(size_t bytes) {
  const std::string unit =
      std::string("\x1b[2J\x01\x07\r\n\t\x7f\u202e\u0085\x1f name=Siti ") + '\0';
  std::string out;
  out.reserve(bytes + unit.size());
  while (out.size() < bytes) out += unit;
  out.resize(bytes - bytes % unit.size());
  return out;
}

// A status the node gives for input it refuses: specific, not a crash, a
// timeout or a failure to record.
bool IsBoundedDenial(const grpc::Status& s) {
  switch (s.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return true;
    default:
      return false;
  }
}

std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration deadline = absl::Seconds(30)) {
  return testing::ScaledContext(deadline);
}

// A channel of its own as `id` (testing::OwnChannel).
std::shared_ptr<grpc::Channel> OwnChannel(const TlsIdentity& id, const std::string& endpoint,
                                          bool small_window = false) {
  return testing::OwnChannel(id.cert_pem, id.key_pem, id.roots_pem, endpoint, small_window);
}

class StreamBoundsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(2));
  }

  void StartNode(const std::map<std::string, std::string>& limits = {}) {
    for (const auto& [k, v] : limits) fed_.limits[k] = v;
    const std::string path = fed_.WriteNodeConfig(
        "union-sg", {{"cw", {"caseworker"}}, {"aud", {"auditor"}}, {"aud2", {"auditor"}}});
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(path));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
  }

  TlsIdentity User(const std::string& name) {
    const std::string prefix = fed_.IssueUser("union-sg", name);
    return {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
            fed_.org("union-sg").ca.cert_pem};
  }
  std::shared_ptr<grpc::Channel> As(const std::string& user, bool small_window = false) {
    if (!ids_.count(user)) ids_[user] = User(user);
    return OwnChannel(ids_[user], fed_.org("union-sg").endpoint(), small_window);
  }
  // A channel as ministry-id's node would open it (a peer).
  std::shared_ptr<grpc::Channel> AsPeer() {
    const testing::TestOrg& o = fed_.org("ministry-id");
    return OwnChannel({o.node.cert_pem, o.node.key_pem, fed_.org("union-sg").ca.cert_pem},
                      fed_.org("union-sg").endpoint());
  }

  std::string CreateCase() {
    v1::CreateCaseRequest req;
    auto* c = req.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name("Dewi Lestari");
    v1::Case resp;
    grpc::Status s = v1::CaseService::NewStub(As("cw"))->CreateCase(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.id();
  }

  uint64_t LedgerSize() {
    v1::CheckpointResponse cp;
    grpc::Status s = v1::AuditService::NewStub(As("aud"))->GetCheckpoint(Ctx().get(), {}, &cp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    verifier_key_ = cp.verifier_key();
    return cp.size();
  }

  // The entries from `from` to the ledger's end now that are not the
  // auditor's own reads.
  std::vector<std::string> EntriesSince(uint64_t from) {
    const uint64_t end = LedgerSize();
    auto audit = v1::AuditService::NewStub(As("aud"));
    std::vector<std::string> out;
    while (from < end) {
      v1::GetEntriesRequest req;
      req.set_begin(from);
      req.set_end(std::min(end, from + 1000));
      v1::GetEntriesResponse resp;
      grpc::Status s = audit->GetEntries(Ctx().get(), req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok() || resp.events_size() == 0) return out;
      for (const auto& e : resp.events()) {
        if (!absl::StartsWith(e.event().action(), "audit.")) out.push_back(e.entry());
        from = e.index() + 1;
      }
    }
    return out;
  }

  // The entry is an access event whose every field is within the ledger's
  // bounds and free of the hostile input's control characters.
  void ExpectBounded(const std::string& entry, const std::string& what) {
    ASSERT_OK_AND_ASSIGN(v1::AccessEvent e, AccessLog::Decode(entry));
    const pb::Reflection* r = e.GetReflection();
    for (int i = 0; i < e.GetDescriptor()->field_count(); ++i) {
      const pb::FieldDescriptor* f = e.GetDescriptor()->field(i);
      if (f->type() != pb::FieldDescriptor::TYPE_STRING) continue;
      const std::string v = r->GetString(e, f);
      // At most the text bound and the note of the original length.
      EXPECT_LE(v.size(), kMaxLedgerTextBytes + 64) << what << ": " << f->name();
      EXPECT_FALSE(absl::StrContains(v, "\x1b")) << what << ": " << f->name();
      EXPECT_FALSE(absl::StrContains(v, std::string(1, '\0'))) << what << ": " << f->name();
    }
    EXPECT_LE(entry.size(), 16u << 10) << what;
  }

  // One hostile call: refused with a bounded denial, exactly one bounded entry.
  void ExpectOneBoundedDenial(const std::shared_ptr<grpc::Channel>& ch, const std::string& path,
                              const std::string& request, const std::string& what) {
    const uint64_t before = LedgerSize();
    testing::CallResult got = testing::CallByPath(ch, path, {request}, absl::Seconds(120));
    EXPECT_TRUE(IsBoundedDenial(got.status))
        << what << ": " << got.status.error_code() << " " << got.status.error_message();
    EXPECT_LE(got.status.error_message().size(), 4096u) << what;
    const std::vector<std::string> entries = EntriesSince(before);
    EXPECT_EQ(entries.size(), 1u) << what;
    for (const auto& e : entries) ExpectBounded(e, what);
  }

  // The audit log reads, and a full export arrives and verifies.
  void ExpectAuditReads() {
    auto audit = v1::AuditService::NewStub(As("aud"));
    v1::QueryEventsRequest q;
    q.set_page_size(100);
    v1::QueryEventsResponse page;
    grpc::Status s = audit->QueryEvents(Ctx().get(), q, &page);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(page.events_size(), 0);
    LedgerSize();  // the verifier key
    std::string joined;
    ASSERT_TRUE(ReadExport(As("aud"), &joined).ok());
    auto verified = ledger::VerifyExport(joined, verifier_key_);
    EXPECT_TRUE(verified.ok()) << verified.status();
  }

  grpc::Status ReadExport(const std::shared_ptr<grpc::Channel>& ch, std::string* joined) {
    auto ctx = Ctx(absl::Seconds(60));
    auto reader = v1::AuditService::NewStub(ch)->Export(ctx.get(), v1::ExportRequest());
    v1::ExportResponse piece;
    while (reader->Read(&piece)) {
      EXPECT_LE(piece.export_().size(), size_t{1} << 20);
      *joined += piece.export_();
    }
    return reader->Finish();
  }

  // Events of `action` by `actor` ("<org>/<subject>").
  std::vector<v1::AccessEvent> EventsOf(const std::string& actor, const std::string& action) {
    v1::QueryEventsRequest q;
    q.set_actor(actor);
    q.set_action(action);
    q.set_page_size(1000);
    v1::QueryEventsResponse page;
    grpc::Status s = v1::AuditService::NewStub(As("aud2"))->QueryEvents(Ctx().get(), q, &page);
    EXPECT_TRUE(s.ok()) << s.error_message();
    std::vector<v1::AccessEvent> out;
    for (const auto& e : page.events()) out.push_back(e.event());
    return out;
  }

  // A ledger whose export is well over 1 MiB: listings of many cases, each
  // recording one entry per case.
  void GrowLedger() {
    for (int i = 0; i < 100; ++i) CreateCase();
    auto cases = v1::CaseService::NewStub(As("cw"));
    for (int i = 0; i < 60; ++i) {
      v1::ListCasesRequest req;
      req.set_page_size(100);
      req.set_request_id(absl::StrCat(i, ".", std::string(120, 'r')));
      v1::ListCasesResponse resp;
      ASSERT_TRUE(cases->ListCases(Ctx().get(), req, &resp).ok());
    }
  }

  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::unique_ptr<Node> node_;
  std::map<std::string, TlsIdentity> ids_;
  std::string verifier_key_;
};

constexpr size_t kOversized = 3u << 20;  // within the default 4 MiB message limit

// An envelope as ministry-id's node would send it (the signature need not verify).
v1::Envelope SomeEnvelope() {
  v1::Envelope env;
  env.set_payload_type("application/vnd.corridor.envelope+proto");
  env.set_payload("payload");
  auto* sig = env.add_signatures();
  sig->set_keyid("ministry-id-1");
  sig->set_sig(std::string(64, 's'));
  return env;
}

TEST_F(StreamBoundsTest, OversizedEnvelopeFieldsOnDeliverGetOneBoundedDenialEach) {
  StartNode();
  const std::string path = "/corridor.v1.PeerService/Deliver";
  auto peer = AsPeer();
  std::vector<FieldPath> fields;
  StringFields(v1::Envelope::descriptor(), {}, &fields);
  ASSERT_GE(fields.size(), 4u);  // payload_type, payload, signatures.keyid, signatures.sig
  for (const FieldPath& f : fields) {
    v1::Envelope env = SomeEnvelope();
    SetAt(&env, f, Hostile(kOversized));
    ExpectOneBoundedDenial(peer, path, env.SerializeAsString(), "Deliver " + PathName(f));
  }
  // Many signatures, each with a long key id.
  v1::Envelope many = SomeEnvelope();
  for (int i = 0; i < 10000; ++i) {
    auto* sig = many.add_signatures();
    sig->set_keyid(Hostile(200));
    sig->set_sig(std::string(64, 's'));
  }
  ExpectOneBoundedDenial(peer, path, many.SerializeAsString(), "Deliver many signatures");
  // Past the message limit: gRPC refuses it before any handler runs.
  v1::Envelope huge = SomeEnvelope();
  huge.set_payload_type(Hostile(config_.limits().max_message_bytes() + 4096));
  const uint64_t before = LedgerSize();
  testing::CallResult got =
      testing::CallByPath(peer, path, {huge.SerializeAsString()}, absl::Seconds(30));
  EXPECT_EQ(got.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << got.status.error_message();
  EXPECT_LE(EntriesSince(before).size(), 1u);
  ExpectAuditReads();
}

TEST_F(StreamBoundsTest, EveryReferralServiceStringFieldOversizedGetsOneBoundedDenial) {
  StartNode();
  const std::string case_id = CreateCase();
  auto cw = As("cw");
  testing::RequestValues values;
  values.case_id = case_id;
  values.referral_id = "REF-1";
  values.org = "ministry-id";
  values.agreement = "test-agreement";
  int walked = 0;
  for (const testing::MethodInfo& m : testing::MethodsOf({"corridor.v1.ReferralService"})) {
    ASSERT_NE(m.request, nullptr) << m.path;
    std::unique_ptr<pb::Message> base(
        pb::MessageFactory::generated_factory()->GetPrototype(m.request)->New());
    testing::FillRequest(base.get(), values);
    std::vector<FieldPath> fields;
    StringFields(m.request, {}, &fields);
    for (const FieldPath& f : fields) {
      std::unique_ptr<pb::Message> req(base->New());
      req->CopyFrom(*base);
      SetAt(req.get(), f, Hostile(kOversized));
      ExpectOneBoundedDenial(cw, m.path, req->SerializeAsString(),
                             absl::StrCat(m.path, " ", PathName(f)));
      ++walked;
    }
    // Past the message limit: gRPC refuses it before the handler runs.
    if (!fields.empty()) {
      std::unique_ptr<pb::Message> req(base->New());
      req->CopyFrom(*base);
      SetAt(req.get(), fields.front(), Hostile(config_.limits().max_message_bytes() + 4096));
      testing::CallResult got =
          testing::CallByPath(cw, m.path, {req->SerializeAsString()}, absl::Seconds(30));
      EXPECT_EQ(got.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
          << m.path << ": " << got.status.error_message();
    }
    ExpectAuditReads();
  }
  EXPECT_GT(walked, 6);
}

TEST_F(StreamBoundsTest, ManyOversizedCallsAtOnceOnOneChannelAndOnSeveralLeaveTheNodeUp) {
  StartNode();
  const std::string case_id = CreateCase();
  const uint64_t before = LedgerSize();
  auto shared_user = As("cw");
  auto shared_peer = AsPeer();
  constexpr int kThreads = 12, kCallsEach = 3;
  std::atomic<int> bounded{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    // Half on the shared channels, half on channels of their own.
    auto user = t % 2 == 0 ? shared_user : As("cw");
    auto peer = t % 2 == 0 ? shared_peer : AsPeer();
    threads.emplace_back([&, user, peer, t] {
      for (int i = 0; i < kCallsEach; ++i) {
        v1::ReferCaseRequest up;
        up.set_case_id(case_id);
        up.set_to_org(Hostile(kOversized));
        v1::Envelope env = SomeEnvelope();
        env.set_payload_type(Hostile(kOversized / 2));
        env.mutable_signatures(0)->set_keyid(Hostile(kOversized / 2));
        auto a = testing::CallByPath(user, "/corridor.v1.ReferralService/Refer",
                                     {up.SerializeAsString()}, absl::Seconds(120));
        auto b = testing::CallByPath(peer, "/corridor.v1.PeerService/Deliver",
                                     {env.SerializeAsString()}, absl::Seconds(120));
        EXPECT_TRUE(IsBoundedDenial(a.status))
            << "Refer " << a.status.error_code() << " " << a.status.error_message();
        EXPECT_TRUE(IsBoundedDenial(b.status))
            << "Deliver " << b.status.error_code() << " " << b.status.error_message();
        bounded += IsBoundedDenial(a.status) ? 1 : 0;
        bounded += IsBoundedDenial(b.status) ? 1 : 0;
        (void)t;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bounded.load(), 2 * kThreads * kCallsEach);
  const std::vector<std::string> entries = EntriesSince(before);
  EXPECT_EQ(entries.size(), size_t{2} * kThreads * kCallsEach);
  for (const auto& e : entries) ExpectBounded(e, "concurrent");
  ExpectAuditReads();
}

// Whether this build's client transport keeps a stalled reader's window small
// (see flood_test's download cut-off: not under ThreadSanitizer).
bool StallIsVisible() {
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
  return false;
#endif
#endif
#if defined(__SANITIZE_THREAD__)
  return false;
#endif
  return true;
}

TEST_F(StreamBoundsTest, AnExportWhoseClientStopsReadingIsCutOffWhileOthersGoOn) {
  if (!StallIsVisible()) GTEST_SKIP() << "the client transport takes in a stalled stream here";
  StartNode({{"stream_idle_timeout_seconds", "2"}});
  GrowLedger();
  std::string whole;
  ASSERT_TRUE(ReadExport(As("aud"), &whole).ok());
  ASSERT_GT(whole.size(), size_t{1} << 20);  // more than one piece

  // One client starts an export and stops reading after the first piece.
  auto ctx = Ctx(absl::Seconds(120));
  auto stalled = v1::AuditService::NewStub(As("aud", /*small_window=*/true))->Export(ctx.get(), {});
  v1::ExportResponse piece;
  ASSERT_TRUE(stalled->Read(&piece));
  // Others go on meanwhile: queries and whole exports.
  for (int i = 0; i < 3; ++i) {
    std::string joined;
    ASSERT_TRUE(ReadExport(As("aud2"), &joined).ok());
    EXPECT_GE(joined.size(), whole.size());
  }
  // The node ends the stalled export after the idle timeout, and records it.
  bool cut_off = false;
  const absl::Time give_up = absl::Now() + corridor::testing::ScaledDeadline(absl::Seconds(30));
  while (!cut_off && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(500));
    for (const auto& e : EventsOf("union-sg/user/aud", "audit.export")) {
      cut_off |= e.outcome() == v1::ACCESS_OUTCOME_ERROR &&
                 absl::StrContains(e.reason(), "read nothing for") &&
                 absl::StrContains(e.reason(), "stream_idle_timeout_seconds");
    }
  }
  EXPECT_TRUE(cut_off) << "no audit.export error recorded for the stalled export";
  size_t got = piece.export_().size();
  while (stalled->Read(&piece)) got += piece.export_().size();
  EXPECT_FALSE(stalled->Finish().ok());
  EXPECT_LT(got, whole.size());
  // The slot is back: the same client exports again, byte for byte as before
  // but for what was recorded since.
  std::string again;
  ASSERT_TRUE(ReadExport(As("aud"), &again).ok());
  LedgerSize();  // the verifier key
  auto verified = ledger::VerifyExport(again, verifier_key_);
  EXPECT_TRUE(verified.ok()) << verified.status();
}

TEST_F(StreamBoundsTest, ExportsAtOnceAreBoundedAndTheNextIsRefusedResourceExhausted) {
  if (!StallIsVisible()) GTEST_SKIP() << "the client transport takes in a stalled stream here";
  StartNode({{"stream_idle_timeout_seconds", "600"}});
  GrowLedger();
  constexpr int kMax = AuditServiceImpl::kMaxExportsAtOnce;
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<grpc::ClientReader<v1::ExportResponse>>> held;
  for (int i = 0; i < kMax; ++i) {
    ctxs.push_back(Ctx(absl::Seconds(120)));
    held.push_back(
        v1::AuditService::NewStub(As("aud", /*small_window=*/true))->Export(ctxs.back().get(), {}));
  }
  // Wait until the node has admitted (recorded) all of them.
  const absl::Time give_up = absl::Now() + corridor::testing::ScaledDeadline(absl::Seconds(30));
  while (EventsOf("union-sg/user/aud", "audit.export").size() < kMax && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  ASSERT_EQ(EventsOf("union-sg/user/aud", "audit.export").size(), size_t{kMax});
  std::string joined;
  grpc::Status s = ReadExport(As("aud2"), &joined);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(s.error_message(), "exports at once")) << s.error_message();
  bool refusal_recorded = false;
  for (const auto& e : EventsOf("union-sg/user/aud2", "audit.export")) {
    refusal_recorded |= e.outcome() == v1::ACCESS_OUTCOME_ERROR;
  }
  EXPECT_TRUE(refusal_recorded);
  // Ordinary audit calls are unaffected.
  v1::QueryEventsResponse page;
  EXPECT_TRUE(v1::AuditService::NewStub(As("aud2"))->QueryEvents(Ctx().get(), {}, &page).ok());
  // Once the held exports end, exports go through again.
  for (auto& c : ctxs) c->TryCancel();
  for (auto& r : held) r->Finish();
  grpc::Status later;
  const absl::Time until = absl::Now() + corridor::testing::ScaledDeadline(absl::Seconds(30));
  do {
    joined.clear();
    later = ReadExport(As("aud2"), &joined);
  } while (later.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && absl::Now() < until);
  EXPECT_TRUE(later.ok()) << later.error_message();
}

// A reflection stream held open after one answer (list_services).
struct HeldReflection {
  std::unique_ptr<grpc::ClientContext> ctx;
  std::unique_ptr<grpc::ClientReaderWriter<ReflectionRequest, ReflectionResponse>> stream;
};

ReflectionRequest ListServices() {
  ReflectionRequest req;
  req.set_list_services("*");
  return req;
}

// Held reflection streams, on one channel and on several, are bounded in
// number (one more is refused and recorded) and in time (the idle timeout
// cancels them), and while they are held every other service answers.
TEST_F(StreamBoundsTest, HeldReflectionStreamsAreBoundedInNumberAndTime) {
  StartNode({{"stream_idle_timeout_seconds", "3"}});
  constexpr int kMax = ReflectionService::kMaxStreams;
  const std::vector<std::shared_ptr<grpc::Channel>> channels = {As("cw"), As("aud"), As("aud2")};
  std::vector<HeldReflection> held(kMax);
  std::vector<std::thread> openers;
  for (int t = 0; t < 4; ++t) {
    openers.emplace_back([&, t] {
      for (int i = t; i < kMax; i += 4) {
        // Half on the caseworker's one channel, the rest spread over the others.
        const auto& ch = channels[i % 2 == 0 ? 0 : 1 + (i / 2) % 2];
        held[i].ctx = Ctx(absl::Seconds(120));
        held[i].stream = ReflectionStub::NewStub(ch)->ServerReflectionInfo(held[i].ctx.get());
        ReflectionResponse resp;
        EXPECT_TRUE(held[i].stream->Write(ListServices()));
        EXPECT_TRUE(held[i].stream->Read(&resp));
        EXPECT_GT(resp.list_services_response().service_size(), 0);
      }
    });
  }
  for (auto& t : openers) t.join();
  const uint64_t before = LedgerSize();
  // One more is refused while they are open, and the refusal is recorded.
  {
    auto ctx = Ctx();
    auto extra = ReflectionStub::NewStub(As("cw"))->ServerReflectionInfo(ctx.get());
    extra->Write(ListServices());
    ReflectionResponse resp;
    EXPECT_FALSE(extra->Read(&resp));
    EXPECT_STATUS(FromGrpcStatus(extra->Finish()), absl::StatusCode::kResourceExhausted,
                  "reflection streams open");
  }
  bool recorded = false;
  for (const std::string& entry : EntriesSince(before)) {
    ASSERT_OK_AND_ASSIGN(v1::AccessEvent e, AccessLog::Decode(entry));
    // Too many at once is the node's limit, not the caller's fault: recorded as an error.
    recorded |= e.action() == "reflection.request" && e.outcome() == v1::ACCESS_OUTCOME_ERROR &&
                absl::StrContains(e.reason(), "reflection streams open");
  }
  EXPECT_TRUE(recorded) << "the refused reflection stream left no denied entry";
  // Every other service answers meanwhile, on the same connections and others.
  CreateCase();
  ExpectAuditReads();
  v1::HelloRequest hello;
  v1::HelloResponse resp;
  grpc::Status s = v1::PeerService::NewStub(AsPeer())->Hello(Ctx().get(), hello, &resp);
  EXPECT_NE(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << s.error_message();
  // The idle timeout ends every held stream (well within the client's deadline).
  for (HeldReflection& h : held) {
    ReflectionResponse more;
    EXPECT_FALSE(h.stream->Read(&more));
    EXPECT_EQ(h.stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // And reflection answers again, once the node has let the cut-off streams go
  // (the client can see a stream cancelled just before the node frees its place).
  const absl::Time give_up = absl::Now() + testing::ScaledDeadline(absl::Seconds(10));
  grpc::Status finished;
  ReflectionResponse listed;
  do {
    if (!finished.ok()) absl::SleepFor(absl::Milliseconds(50));
    auto ctx = Ctx();
    auto again = ReflectionStub::NewStub(As("cw"))->ServerReflectionInfo(ctx.get());
    listed.Clear();
    again->Write(ListServices());
    again->Read(&listed);
    again->WritesDone();
    finished = again->Finish();
  } while (finished.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED && absl::Now() < give_up);
  EXPECT_TRUE(finished.ok()) << finished.error_message();
  EXPECT_GT(listed.list_services_response().service_size(), 0);
}

// A reflection request over the bound ends its stream with INVALID_ARGUMENT,
// recorded; a request the node cannot answer gets the protocol's error answer
// and the stream goes on; file requests come with their imports.
TEST_F(StreamBoundsTest, ReflectionRequestsAreBoundedAndAnswered) {
  StartNode();
  auto ctx = Ctx();
  auto stream = ReflectionStub::NewStub(As("cw"))->ServerReflectionInfo(ctx.get());
  ReflectionRequest req;
  ReflectionResponse resp;
  req.set_file_containing_symbol("corridor.v1.CaseService");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_GT(resp.file_descriptor_response().file_descriptor_proto_size(), 1);  // with imports
  pb::FileDescriptorProto file;
  ASSERT_TRUE(file.ParseFromString(resp.file_descriptor_response().file_descriptor_proto(0)));
  EXPECT_EQ(file.package(), "corridor.v1");
  req.set_file_containing_symbol("no.such.Symbol");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.error_response().error_code(), grpc::StatusCode::NOT_FOUND);
  const uint64_t before = LedgerSize();
  req.set_file_containing_symbol(std::string(ReflectionService::kMaxRequestBytes, 'x'));
  stream->Write(req);
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_STATUS(FromGrpcStatus(stream->Finish()), absl::StatusCode::kInvalidArgument,
                "a reflection request may be at most");
  const std::vector<std::string> entries = EntriesSince(before);
  ASSERT_EQ(entries.size(), 1u);
  ASSERT_OK_AND_ASSIGN(v1::AccessEvent e, AccessLog::Decode(entries[0]));
  EXPECT_EQ(e.action(), "reflection.request");
  EXPECT_EQ(e.outcome(), v1::ACCESS_OUTCOME_DENIED);
  ExpectBounded(entries[0], "oversized reflection request");
}

}  // namespace
}  // namespace corridor
