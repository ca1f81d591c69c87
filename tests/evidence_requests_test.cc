// Evidence requests between nodes (issue 11, docs/evidence.md), in process on
// a fake clock, written from the design contract: a prosecutor at
// "prosecutor-sg" asks "union-sg" for evidence of a case the two exchanged a
// referral about, under an agreement whose evidence_requesters name
// prosecutor offices; an approver at the holder grants all or some of it, or
// refuses; the requester's node fetches each granted item and checks its
// digest. Every test checks the ledger entries expected on both nodes (as
// each node's auditor reads them). "ngo-my" is a third member: a kind the
// agreement does not let request, an approver of the wrong org, a node
// presenting someone else's grant.
#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "corridor/v1/evidence.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "ledger/mutation.h"
#include "rocksdb/db.h"
#include "server/federation/envelope.h"
#include "server/store/case_store.h"
#include "server/store/store.h"
#include "tests/integration/calls.h"
#include "tests/testing/deadline.h"
#include "tests/testing/federation.h"
#include "tests/testing/fields.h"
#include "tests/testing/inproc_federation.h"

namespace corridor::testing {
namespace {

constexpr char kHolder[] = "union-sg";
constexpr char kRequester[] = "prosecutor-sg";
constexpr char kThird[] = "ngo-my";
// Binds all three; prosecutor offices may request evidence under it.
constexpr char kMla[] = "mla-agreement";
// Binds the requester and the third org only.
constexpr char kPairMla[] = "pros-ngo-mla";
constexpr char kProsecution[] = "prosecution";

using Summary = v1::EvidenceRequestSummary;

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string Hex12() { return absl::AsciiStrToUpper(HexEncode(RandomBytes(6))); }

// "<prefix>" and 12 upper-case hex digits.
bool IsMinted(const std::string& id, const std::string& prefix) {
  if (!absl::StartsWith(id, prefix) || id.size() != prefix.size() + 12) return false;
  for (char c : id.substr(prefix.size())) {
    if (!(absl::ascii_isdigit(static_cast<unsigned char>(c)) || (c >= 'A' && c <= 'F'))) {
      return false;
    }
  }
  return true;
}

// `bytes` of distinct content, `tag` first.
std::string Payload(const std::string& tag, size_t bytes) {
  std::string out = tag + "\n";
  for (int i = 0; out.size() < bytes; ++i) absl::StrAppend(&out, tag, " line ", i, "\n");
  out.resize(bytes);
  return out;
}

// Text full of control characters (valid UTF-8): escapes, NUL, newlines, bidi
// overrides, NEL.
std::string Hostile(size_t bytes) {
  const std::string unit =
      std::string("\x1b[2J\x01\x07\r\n\t\x7f\u202e\u0085\x1f name=Siti ") + '\0';
  std::string out;
  while (out.size() < bytes) out += unit;
  return out;
}

const char* OutcomeName(v1::AccessOutcome o) {
  switch (o) {
    case v1::ACCESS_OUTCOME_ALLOWED:
      return "allowed";
    case v1::ACCESS_OUTCOME_DENIED:
      return "denied";
    case v1::ACCESS_OUTCOME_ERROR:
      return "error";
    default:
      return "unspecified";
  }
}

// The actions of the evidence-request flow (the design contract).
const std::set<std::string>& FlowActions() {
  static const auto* actions = new std::set<std::string>{
      "evidence.request",  "evidence.requested", "evidence.decide", "evidence.grant",
      "evidence.decision", "evidence.fetch",     "evidence.serve",  "evidence.no_response"};
  return *actions;
}

// "action:outcome" → count, for the flow's actions among `events`.
std::map<std::string, int> FlowCounts(const std::vector<v1::AccessEvent>& events) {
  std::map<std::string, int> out;
  for (const v1::AccessEvent& e : events) {
    if (FlowActions().count(e.action()) > 0) {
      ++out[absl::StrCat(e.action(), ":", OutcomeName(e.outcome()))];
    }
  }
  return out;
}

std::string Show(const std::map<std::string, int>& counts) {
  std::string out;
  for (const auto& [k, v] : counts) absl::StrAppend(&out, k, "=", v, " ");
  return out;
}

// As FlowCounts, with "denied" and "error" counted together as "refused": a
// refusal is recorded denied for PERMISSION_DENIED, UNAUTHENTICATED and
// INVALID_ARGUMENT, as an error for any other code (server/audit/audited_call.h).
std::map<std::string, int> Refusing(const std::map<std::string, int>& counts) {
  std::map<std::string, int> out;
  for (const auto& [k, v] : counts) {
    std::string key = k;
    if (absl::EndsWith(k, ":denied") || absl::EndsWith(k, ":error")) {
      key = k.substr(0, k.rfind(':')) + ":refused";
    }
    out[key] += v;
  }
  return out;
}

std::vector<v1::AccessEvent> WithAction(const std::vector<v1::AccessEvent>& events,
                                        const std::string& action) {
  std::vector<v1::AccessEvent> out;
  for (const auto& e : events) {
    if (e.action() == action) out.push_back(e);
  }
  return out;
}

// The ledger entry is bounded and carries none of the hostile input's control bytes.
void ExpectBoundedEntry(const v1::AccessEvent& e, const std::string& what) {
  const auto* d = e.GetDescriptor();
  const auto* r = e.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const auto* f = d->field(i);
    if (f->type() != google::protobuf::FieldDescriptor::TYPE_STRING || f->is_repeated()) continue;
    const std::string v = r->GetString(e, f);
    EXPECT_LE(v.size(), 1024u + 64u) << what << ": " << f->name();
    EXPECT_FALSE(absl::StrContains(v, "\x1b")) << what << ": " << f->name();
    EXPECT_FALSE(absl::StrContains(v, std::string(1, '\0'))) << what << ": " << f->name();
  }
}

InProcessFederationOptions ThreeOrgs() {
  InProcessFederationOptions o;
  o.orgs = {{kHolder, v1::ORG_KIND_UNION},
            {kRequester, v1::ORG_KIND_PROSECUTOR},
            {kThird, v1::ORG_KIND_NGO}};
  o.edit_roster = [](v1::Roster& r) {
    v1::Agreement* a = r.add_agreements();
    a->set_id(kMla);
    a->add_parties(kHolder);
    a->add_parties(kRequester);
    a->add_parties(kThird);
    a->add_purposes(kProsecution);
    a->add_purposes(kPurpose);
    a->add_evidence_requesters(v1::ORG_KIND_PROSECUTOR);
    v1::Agreement* b = r.add_agreements();
    b->set_id(kPairMla);
    b->add_parties(kRequester);
    b->add_parties(kThird);
    b->add_purposes(kProsecution);
    b->add_evidence_requesters(v1::ORG_KIND_PROSECUTOR);
  };
  return o;
}

// A referral exchanged between a requester and the holder: the case at each end.
struct Linked {
  std::string requester_case;
  std::string holder_case;
  std::string referral_id;
};

struct Uploaded {
  std::string id;
  std::string data;
  std::string sha256;  // raw bytes
  std::string file_name;
};

struct Download {
  grpc::Status status;
  v1::EvidenceItem item;
  std::string data;
};

struct PeerFetch {
  grpc::Status status;
  v1::GrantedItem item;
  std::string data;
  v1::FetchReceipt receipt;
  // The stream's messages in order: 'i' item, 'd' data, 'r' receipt ('?' anything else).
  std::string shape;
  size_t largest_chunk = 0;
};

class EvidenceRequestsTest : public ::testing::Test {
 protected:
  EvidenceRequestsTest() : fed_(ThreeOrgs()) {}
  void SetUp() override {
    absl::Status started = fed_.StartAll();
    ASSERT_TRUE(started.ok()) << started;
  }

  // A context that waits for the connection (a node just restarted), bounded
  // by a real-time deadline.
  static std::unique_ptr<grpc::ClientContext> Ctx(absl::Duration d = absl::Seconds(30)) {
    auto ctx = InProcessFederation::Context(d);
    ctx->set_wait_for_ready(true);
    return ctx;
  }

  std::unique_ptr<v1::EvidenceService::Stub> Evidence(const std::string& at,
                                                      const std::string& user) {
    return v1::EvidenceService::NewStub(fed_.Channel(at, user));
  }
  absl::Time Now() { return fed_.clock().Now(); }

  // ---- Setting up: a referral between two orgs, evidence at the holder ----

  // A case at `from` referred to `to`; returns {case at from, case at to, referral id}.
  std::vector<std::string> Refer(const std::string& from, const std::string& to) {
    const std::string origin = CreateCase(fed_, from, {});
    v1::ReferCaseResponse sent;
    grpc::Status s = corridor::testing::Refer(fed_, from, ReferralOf(origin, to), &sent);
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(EventuallyInState(fed_, from, sent.envelope_id(), "delivered"))
        << OutboxEntryOf(fed_, from, sent.envelope_id()).DebugString();
    const std::string received = InboxItemOf(fed_, to, sent.referral_id()).case_id();
    EXPECT_FALSE(received.empty()) << "referral " << sent.referral_id() << " not received";
    return {origin, received, sent.referral_id()};
  }

  // A referral between `requester` and the holder, sent by the requester
  // (`requester_sent`) or received from the holder.
  Linked Link(bool requester_sent, const std::string& requester = kRequester) {
    if (requester_sent) {
      auto r = Refer(requester, kHolder);
      return {r[0], r[1], r[2]};
    }
    auto r = Refer(kHolder, requester);
    return {r[1], r[0], r[2]};
  }

  Uploaded Upload(const std::string& at, const std::string& case_id, const std::string& file_name,
                  const std::string& data) {
    auto ctx = Ctx();
    v1::EvidenceItem item;
    auto writer = fed_.Cases(at, "cw")->AddEvidence(ctx.get(), &item);
    v1::AddEvidenceRequest header;
    header.mutable_header()->set_case_id(case_id);
    header.mutable_header()->set_file_name(file_name);
    header.mutable_header()->set_media_type("application/octet-stream");
    writer->Write(header);
    for (size_t off = 0; off < data.size(); off += 40000) {
      v1::AddEvidenceRequest part;
      part.set_data(data.substr(off, 40000));
      writer->Write(part);
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(item.sha256(), DigestBytes(Sha256(data)));
    return {item.id(), data, item.sha256(), file_name};
  }

  Download DownloadAt(const std::string& at, const std::string& user, const std::string& case_id,
                      const std::string& evidence_id, const std::string& purpose) {
    v1::GetEvidenceRequest req;
    req.set_case_id(case_id);
    req.set_evidence_id(evidence_id);
    req.set_purpose(purpose);
    auto ctx = Ctx();
    auto reader = v1::CaseService::NewStub(fed_.Channel(at, user))->GetEvidence(ctx.get(), req);
    Download out;
    v1::EvidenceChunk chunk;
    while (reader->Read(&chunk)) {
      if (chunk.has_item()) out.item = chunk.item();
      out.data += chunk.data();
    }
    out.status = reader->Finish();
    return out;
  }

  std::vector<v1::EvidenceItem> EvidenceOf(const std::string& at, const std::string& user,
                                           const std::string& case_id) {
    v1::ListEvidenceRequest req;
    req.set_case_id(case_id);
    req.set_purpose(kProsecution);
    v1::ListEvidenceResponse resp;
    grpc::Status s =
        v1::CaseService::NewStub(fed_.Channel(at, user))->ListEvidence(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {resp.items().begin(), resp.items().end()};
  }

  // ---- The flow's calls ----

  v1::RequestEvidenceRequest RequestOf(const Linked& l, const std::vector<Uploaded>& items,
                                       const std::string& legal_basis = "MLAT art. 14(2)") {
    v1::RequestEvidenceRequest req;
    req.set_holder_org(kHolder);
    req.set_case_id(l.requester_case);
    for (const Uploaded& u : items) req.add_item_ids(u.id);
    req.set_all(items.empty());
    req.set_agreement(kMla);
    req.set_legal_basis(legal_basis);
    req.set_purpose(kProsecution);
    return req;
  }

  grpc::Status Request(const v1::RequestEvidenceRequest& req, v1::RequestEvidenceResponse* resp,
                       const std::string& at = kRequester, const std::string& user = "pros") {
    return Evidence(at, user)->Request(Ctx().get(), req, resp);
  }

  // Sends `req` and waits until the holder lists it; the ER id.
  std::string Requested(const v1::RequestEvidenceRequest& req) {
    v1::RequestEvidenceResponse resp;
    grpc::Status s = Request(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) return "";
    EXPECT_TRUE(AwaitState(kHolder, resp.request_id(), v1::EVIDENCE_REQUEST_STATE_PENDING))
        << "the holder never listed " << resp.request_id();
    return resp.request_id();
  }

  grpc::Status List(const std::string& at, const std::string& user, std::vector<Summary>* out) {
    v1::ListEvidenceRequestsResponse resp;
    grpc::Status s = Evidence(at, user)->List(Ctx().get(), {}, &resp);
    out->assign(resp.requests().begin(), resp.requests().end());
    return s;
  }
  std::vector<Summary> ListAt(const std::string& at, const std::string& user = "") {
    std::vector<Summary> out;
    grpc::Status s = List(at, user.empty() ? (at == kRequester ? "pros" : "appr") : user, &out);
    EXPECT_TRUE(s.ok()) << at << ": " << s.error_message();
    return out;
  }
  // `er` as `at` lists it (empty if it does not).
  Summary SummaryAt(const std::string& at, const std::string& er) {
    for (Summary& s : ListAt(at)) {
      if (s.request_id() == er) return s;
    }
    return {};
  }
  // `er` in detail as `at` shows it (GetEvidenceRequest): the list carries no
  // free text, the detail the legal basis and the conditions.
  v1::EvidenceRequestDetail DetailAt(const std::string& at, const std::string& er) {
    v1::GetEvidenceRequestRequest req;
    req.set_request_id(er);
    v1::EvidenceRequestDetail detail;
    grpc::Status s =
        Evidence(at, at == kRequester ? "pros" : "appr")->Get(Ctx().get(), req, &detail);
    EXPECT_TRUE(s.ok()) << at << ": " << s.error_message();
    return detail;
  }
  bool AwaitState(const std::string& at, const std::string& er, v1::EvidenceRequestState state) {
    fed_.DeliverNow();
    return InProcessFederation::Eventually([&] { return SummaryAt(at, er).state() == state; });
  }

  v1::DecideEvidenceRequest Approval(const std::string& er,
                                     const std::vector<Uploaded>& items = {}) {
    v1::DecideEvidenceRequest d;
    d.set_request_id(er);
    d.set_approve(true);
    for (const Uploaded& u : items) d.add_item_ids(u.id);
    return d;
  }
  v1::DecideEvidenceRequest Denial(const std::string& er, const std::string& code) {
    v1::DecideEvidenceRequest d;
    d.set_request_id(er);
    d.set_approve(false);
    d.set_reason(code);
    return d;
  }
  grpc::Status Decide(const v1::DecideEvidenceRequest& req, v1::DecideEvidenceResponse* resp,
                      const std::string& at = kHolder, const std::string& user = "appr") {
    return Evidence(at, user)->Decide(Ctx().get(), req, resp);
  }
  // Decides at the holder and waits until the requester has the decision.
  v1::DecideEvidenceResponse Decided(const v1::DecideEvidenceRequest& req) {
    v1::DecideEvidenceResponse resp;
    grpc::Status s = Decide(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    const auto want =
        req.approve() ? v1::EVIDENCE_REQUEST_STATE_APPROVED : v1::EVIDENCE_REQUEST_STATE_DENIED;
    EXPECT_TRUE(AwaitState(kRequester, req.request_id(), want))
        << SummaryAt(kRequester, req.request_id()).DebugString();
    return resp;
  }
  grpc::Status Fetch(const std::string& er, v1::FetchGrantedResponse* resp) {
    v1::FetchGrantedRequest req;
    req.set_request_id(er);
    return Evidence(kRequester, "pros")->Fetch(Ctx(absl::Seconds(60)).get(), req, resp);
  }

  // PeerService.FetchEvidence at the holder, as `as_org`'s node.
  PeerFetch PeerFetchAs(const std::string& as_org, const std::string& grant,
                        const std::string& item) {
    v1::FetchEvidenceRequest req;
    req.set_grant_id(grant);
    req.set_item_id(item);
    auto ctx = Ctx();
    auto reader = v1::PeerService::NewStub(fed_.Channel(kHolder, "node", as_org))
                      ->FetchEvidence(ctx.get(), req);
    PeerFetch out;
    v1::FetchEvidenceChunk chunk;
    while (reader->Read(&chunk)) {
      const bool item = chunk.has_item(), receipt = chunk.has_receipt(),
                 data = !chunk.data().empty();
      // 'i' the item (with or without the first data), 'd' data, 'r' the receipt alone.
      out.shape += item && !receipt ? 'i' : receipt && !item && !data ? 'r' : data ? 'd' : '?';
      if (chunk.has_item()) out.item = chunk.item();
      if (chunk.has_receipt()) out.receipt = chunk.receipt();
      out.largest_chunk = std::max(out.largest_chunk, chunk.data().size());
      out.data += chunk.data();
    }
    out.status = reader->Finish();
    return out;
  }

  // ---- Crafted envelopes (a peer's node speaking for itself) ----

  v1::EnvelopePayload Header(const std::string& from, const std::string& to) {
    v1::EnvelopePayload p;
    p.set_envelope_id("ENV-" + Hex12());
    p.set_sender_org(from);
    p.set_recipient_org(to);
    p.set_created_unix(absl::ToUnixSeconds(Now()));
    p.set_expires_unix(absl::ToUnixSeconds(Now() + absl::Hours(24)));
    p.set_key_id(fed_.files().org(from).key_id);
    p.set_agreement(kMla);
    p.set_purpose(kProsecution);
    return p;
  }
  v1::EnvelopePayload CraftedRequest(const std::string& from, const std::string& referral_id,
                                     const std::vector<Uploaded>& items) {
    v1::EnvelopePayload p = Header(from, kHolder);
    v1::EvidenceRequest* r = p.mutable_evidence_request();
    r->set_request_id("ER-" + Hex12());
    r->set_referral_id(referral_id);
    for (const Uploaded& u : items) r->add_item_ids(u.id);
    r->set_all(items.empty());
    r->set_legal_basis("MLAT art. 14(2)");
    r->set_deadline(Rfc3339(Now() + absl::Hours(24 * 5)));
    r->set_requested_by(absl::StrCat(from, "/user/pros"));
    r->set_requester_role(v1::ROLE_PROSECUTOR);
    return p;
  }
  v1::Envelope Sign(const v1::EnvelopePayload& p) {
    return SignEnvelope(p, fed_.files().org(p.sender_org()).signing);
  }
  grpc::Status Deliver(const v1::Envelope& env, const std::string& from, const std::string& to,
                       v1::Receipt* receipt = nullptr) {
    v1::Receipt ignored;
    return v1::PeerService::NewStub(fed_.Channel(to, "node", from))
        ->Deliver(Ctx().get(), env, receipt != nullptr ? receipt : &ignored);
  }

  // ---- The ledger ----

  // The ledger's size at `at` now (the auditor's read adds an entry of its own).
  uint64_t Mark(const std::string& at) {
    v1::CheckpointResponse cp;
    grpc::Status s = fed_.Audit(at)->GetCheckpoint(Ctx().get(), {}, &cp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return cp.size();
  }
  // Every entry at `at` from index `from` on, but the auditor's own reads.
  std::vector<v1::AccessEvent> Since(const std::string& at, uint64_t from) {
    const uint64_t end = Mark(at);
    std::vector<v1::AccessEvent> out;
    while (from < end) {
      v1::GetEntriesRequest req;
      req.set_begin(from);
      req.set_end(end);
      v1::GetEntriesResponse resp;
      grpc::Status s = fed_.Audit(at)->GetEntries(Ctx().get(), req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok() || resp.events_size() == 0) break;
      for (const v1::LoggedEvent& e : resp.events()) {
        if (!absl::StartsWith(e.event().action(), "audit.")) out.push_back(e.event());
        from = e.index() + 1;
      }
    }
    return out;
  }
  // The entry at `index` of `at`'s ledger (empty if there is none).
  v1::AccessEvent EntryAt(const std::string& at, uint64_t index) {
    v1::GetEntriesRequest req;
    req.set_begin(index);
    req.set_end(index + 1);
    v1::GetEntriesResponse resp;
    grpc::Status s = fed_.Audit(at)->GetEntries(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.events_size() == 1 ? resp.events(0).event() : v1::AccessEvent();
  }
  // The holder's signed receipt in `serialized` (a FetchReceipt) verified
  // with the holder's key; its body, or an empty one (a failure) if it does not verify.
  v1::FetchReceiptBody VerifiedReceipt(const std::string& serialized) {
    v1::FetchReceipt receipt;
    v1::FetchReceiptBody body;
    EXPECT_TRUE(receipt.ParseFromString(serialized));
    EXPECT_EQ(receipt.key_id(), fed_.files().org(kHolder).key_id);
    const bool signed_ok = fed_.files().org(kHolder).signing.public_key().Verify(
        "corridor-fetch-receipt/v1\n" + receipt.body(), receipt.signature());
    EXPECT_TRUE(signed_ok) << "the holder's receipt does not verify with its key";
    if (!signed_ok || !body.ParseFromString(receipt.body())) return {};
    return body;
  }

  std::map<std::string, int> CountsSince(const std::string& at, uint64_t from) {
    return FlowCounts(Since(at, from));
  }
  // Every entry of `action` at `at`, any outcome.
  std::vector<v1::AccessEvent> All(const std::string& at, const std::string& action) {
    return Events(fed_, at, action, v1::ACCESS_OUTCOME_UNSPECIFIED);
  }
  int Count(const std::string& at, const std::string& action, v1::AccessOutcome outcome) {
    return static_cast<int>(Events(fed_, at, action, outcome).size());
  }
  // Refusals: denied or error.
  int Refusals(const std::string& at, const std::string& action) {
    return Count(at, action, v1::ACCESS_OUTCOME_DENIED) +
           Count(at, action, v1::ACCESS_OUTCOME_ERROR);
  }

  // Waits until `done`, moving the clock ten seconds at a time (retries due
  // after a backoff), for at most a minute of real time.
  bool AwaitAdvancing(const std::function<bool()>& done) {
    const absl::Time give_up = absl::Now() + ScaledDeadline(absl::Seconds(60));
    while (!done()) {
      if (absl::Now() > give_up) return false;
      fed_.Advance(absl::Seconds(10));
      absl::SleepFor(absl::Milliseconds(100));
    }
    return true;
  }

  // Waits until `at`'s node reaches `peer` again (after `peer` restarted).
  bool AwaitPeerHealthy(const std::string& at, const std::string& peer) {
    return InProcessFederation::Eventually([&] {
      fed_.node(at).ProbePeersNow();
      v1::StatusResponse st;
      if (!fed_.NodeApi(at)->Status(Ctx().get(), {}, &st).ok()) return false;
      for (const auto& p : st.peers()) {
        if (p.org() == peer) return p.state() == v1::PEER_STATE_HEALTHY;
      }
      return false;
    });
  }

  InProcessFederation fed_;
};

// ---- The flow ----------------------------------------------------------------

TEST_F(EvidenceRequestsTest, ApproveAllGrantsEveryItemAndTheFetchIsVerifiedAndRecordedAtBothEnds) {
  // The requester's case may be the one it referred to the holder or the one
  // it received from it.
  for (bool requester_sent : {false, true}) {
    SCOPED_TRACE(requester_sent ? "the requester referred the case" : "the holder referred it");
    const Linked l = Link(requester_sent);
    const Uploaded a =
        Upload(kHolder, l.holder_case, "payslips.txt", Payload("payslip", 3 * 65536 + 17));
    const Uploaded b = Upload(kHolder, l.holder_case, "contract.txt", Payload("contract", 1000));
    const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
    const absl::Time asked_at = Now();

    v1::RequestEvidenceResponse sent;
    grpc::Status s = Request(RequestOf(l, {}), &sent);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_TRUE(IsMinted(sent.request_id(), "ER-")) << sent.request_id();
    EXPECT_FALSE(sent.envelope_id().empty());
    EXPECT_EQ(sent.deadline(), Rfc3339(asked_at + absl::Hours(24 * 10)));  // the default
    const std::string er = sent.request_id();
    ASSERT_TRUE(AwaitState(kHolder, er, v1::EVIDENCE_REQUEST_STATE_PENDING));

    const Summary in = SummaryAt(kHolder, er);
    EXPECT_FALSE(in.outgoing());
    EXPECT_EQ(in.peer_org(), kRequester);
    EXPECT_EQ(in.case_id(), l.holder_case);
    EXPECT_EQ(in.agreement(), kMla);
    EXPECT_EQ(in.purpose(), kProsecution);
    EXPECT_EQ(in.deadline(), sent.deadline());
    EXPECT_TRUE(in.all());
    EXPECT_FALSE(in.overdue());
    EXPECT_EQ(in.requested_by(), absl::StrCat(kRequester, "/user/pros"));
    const Summary out = SummaryAt(kRequester, er);
    EXPECT_TRUE(out.outgoing());
    EXPECT_EQ(out.peer_org(), kHolder);
    EXPECT_EQ(out.case_id(), l.requester_case);
    EXPECT_EQ(out.state(), v1::EVIDENCE_REQUEST_STATE_PENDING);

    v1::DecideEvidenceRequest approve = Approval(er);
    approve.add_conditions("no disclosure to third parties");
    const absl::Time decided_at = Now();
    const v1::DecideEvidenceResponse decided = Decided(approve);
    const std::string grant = decided.grant_id();
    EXPECT_TRUE(IsMinted(grant, "G-")) << grant;

    const Summary got = SummaryAt(kRequester, er);
    EXPECT_EQ(got.grant_id(), grant);
    EXPECT_EQ(got.expires_at(), Rfc3339(decided_at + absl::Hours(24 * 30)));  // the default
    EXPECT_EQ(got.max_fetches(), 3u);                                         // the default
    EXPECT_EQ(got.decided_by(), absl::StrCat(kHolder, "/user/appr"));
    // Free text (the conditions, file names) is shown in detail (GetEvidenceRequest).

    const Summary detailed = DetailAt(kRequester, er).summary();
    EXPECT_EQ(DetailAt(kHolder, er).summary().conditions().size(), 2);
    ASSERT_EQ(detailed.conditions_size(), 2);
    EXPECT_TRUE(absl::StrContains(detailed.conditions(0), kProsecution)) << detailed.conditions(0);
    EXPECT_TRUE(absl::StrContains(detailed.conditions(0), kMla)) << detailed.conditions(0);
    EXPECT_EQ(detailed.conditions(1), "no disclosure to third parties");
    ASSERT_EQ(got.granted_size(), 2);
    std::map<std::string, const Uploaded*> uploaded = {{a.id, &a}, {b.id, &b}};
    for (const v1::GrantedItem& g : got.granted()) {
      ASSERT_EQ(uploaded.count(g.item_id()), 1u) << g.item_id();
      EXPECT_EQ(g.sha256(), uploaded[g.item_id()]->sha256);
      EXPECT_EQ(g.size(), uploaded[g.item_id()]->data.size());
    }
    ASSERT_EQ(detailed.granted_size(), 2);
    for (const v1::GrantedItem& g : detailed.granted()) {
      ASSERT_EQ(uploaded.count(g.item_id()), 1u) << g.item_id();
      EXPECT_EQ(g.sha256(), uploaded[g.item_id()]->sha256);
      EXPECT_EQ(g.file_name(), uploaded[g.item_id()]->file_name);
    }

    v1::FetchGrantedResponse fetched;
    s = Fetch(er, &fetched);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(fetched.case_id(), l.requester_case);
    ASSERT_EQ(fetched.items_size(), 2);
    std::map<std::string, std::string> local_ids;  // holder id → local id
    for (const v1::FetchedItem& f : fetched.items()) {
      ASSERT_EQ(uploaded.count(f.holder_item_id()), 1u) << f.holder_item_id();
      const Uploaded& u = *uploaded[f.holder_item_id()];
      EXPECT_EQ(f.item().received_from(), kHolder);
      EXPECT_EQ(f.item().grant_id(), grant);
      EXPECT_EQ(f.item().holder_item_id(), u.id);
      EXPECT_EQ(f.item().sha256(), u.sha256);
      EXPECT_EQ(f.item().size(), u.data.size());
      EXPECT_FALSE(f.item().holder_receipt().empty());
      const v1::FetchReceiptBody receipt = VerifiedReceipt(f.item().holder_receipt());
      EXPECT_EQ(receipt.grant_id(), grant);
      EXPECT_EQ(receipt.request_id(), er);
      EXPECT_EQ(receipt.item_id(), u.id);
      EXPECT_EQ(receipt.sha256(), u.sha256);
      EXPECT_EQ(receipt.fetch_number(), 1u);
      EXPECT_EQ(receipt.holder_org(), kHolder);
      EXPECT_EQ(receipt.requester_org(), kRequester);
      // It names the holder's ledger entry of that serve.
      const v1::AccessEvent served = EntryAt(kHolder, receipt.ledger_index());
      EXPECT_EQ(served.action(), "evidence.serve");
      EXPECT_EQ(served.resource_id(), u.id);
      EXPECT_EQ(served.payload_sha256(), u.sha256);
      EXPECT_EQ(
          std::vector<std::string>(f.item().conditions().begin(), f.item().conditions().end()),
          std::vector<std::string>(detailed.conditions().begin(), detailed.conditions().end()));
      local_ids[u.id] = f.item().id();
      // Stored at the requester like any evidence: downloaded by its prosecutor, digest intact.
      const Download d =
          DownloadAt(kRequester, "pros", l.requester_case, f.item().id(), kProsecution);
      ASSERT_TRUE(d.status.ok()) << d.status.error_message();
      EXPECT_EQ(d.data, u.data);
      EXPECT_EQ(d.item.conditions_size(), detailed.conditions_size());  // shown whenever read
    }
    EXPECT_EQ(SummaryAt(kHolder, er).fetches(), 2u);
    EXPECT_EQ(SummaryAt(kRequester, er).fetches(), 2u);

    // The ledger at each end.
    const std::vector<v1::AccessEvent> at_holder = Since(kHolder, h0);
    const std::vector<v1::AccessEvent> at_requester = Since(kRequester, r0);
    EXPECT_EQ(FlowCounts(at_requester),
              (std::map<std::string, int>{{"evidence.request:allowed", 1},
                                          {"evidence.decision:allowed", 1},
                                          {"evidence.fetch:allowed", 2}}))
        << Show(FlowCounts(at_requester));
    EXPECT_EQ(FlowCounts(at_holder), (std::map<std::string, int>{{"evidence.requested:allowed", 1},
                                                                 {"evidence.decide:allowed", 1},
                                                                 {"evidence.grant:allowed", 2},
                                                                 {"evidence.serve:allowed", 2}}))
        << Show(FlowCounts(at_holder));
    for (const v1::AccessEvent& e : WithAction(at_requester, "evidence.request")) {
      EXPECT_EQ(e.resource_kind(), "evidence-request");
      EXPECT_EQ(e.resource_id(), er);
      EXPECT_EQ(e.case_id(), l.requester_case);
      EXPECT_EQ(e.peer_org(), kHolder);
      EXPECT_EQ(e.agreement(), kMla);
      EXPECT_EQ(e.purpose(), kProsecution);
    }
    for (const v1::AccessEvent& e : WithAction(at_requester, "evidence.decision")) {
      EXPECT_EQ(e.resource_kind(), "evidence-request");
      EXPECT_EQ(e.resource_id(), er);
      EXPECT_TRUE(absl::StartsWith(e.reason(), "approved")) << e.reason();
    }
    std::set<std::string> fetched_ids;
    for (const v1::AccessEvent& e : WithAction(at_requester, "evidence.fetch")) {
      EXPECT_EQ(e.resource_kind(), "evidence");
      EXPECT_EQ(e.case_id(), l.requester_case);
      EXPECT_EQ(e.peer_org(), kHolder);
      fetched_ids.insert(e.resource_id());
      const std::string holder_id = e.resource_id() == local_ids[a.id] ? a.id : b.id;
      EXPECT_EQ(e.payload_sha256(), uploaded[holder_id]->sha256);
    }
    EXPECT_EQ(fetched_ids, (std::set<std::string>{local_ids[a.id], local_ids[b.id]}));
    for (const v1::AccessEvent& e : WithAction(at_holder, "evidence.requested")) {
      EXPECT_EQ(e.resource_kind(), "evidence-request");
      EXPECT_EQ(e.resource_id(), er);
      EXPECT_EQ(e.peer_org(), kRequester);
    }
    for (const v1::AccessEvent& e : WithAction(at_holder, "evidence.decide")) {
      EXPECT_EQ(e.resource_kind(), "evidence-request");
      EXPECT_EQ(e.resource_id(), er);
      EXPECT_TRUE(absl::StartsWith(e.reason(), "approved")) << e.reason();
    }
    std::set<std::string> granted, served;
    for (const v1::AccessEvent& e : WithAction(at_holder, "evidence.grant")) {
      EXPECT_EQ(e.resource_kind(), "evidence");
      EXPECT_EQ(e.case_id(), l.holder_case);
      EXPECT_EQ(e.peer_org(), kRequester);
      EXPECT_TRUE(absl::StartsWith(e.reason(), absl::StrCat("grant ", grant, " "))) << e.reason();
      EXPECT_TRUE(absl::StrContains(e.reason(), absl::StrCat(" until ", got.expires_at())))
          << e.reason();
      EXPECT_TRUE(absl::StrContains(e.reason(), "at most 3 fetch")) << e.reason();
      granted.insert(e.resource_id());
    }
    for (const v1::AccessEvent& e : WithAction(at_holder, "evidence.serve")) {
      EXPECT_EQ(e.resource_kind(), "evidence");
      EXPECT_EQ(e.peer_org(), kRequester);
      ASSERT_EQ(uploaded.count(e.resource_id()), 1u) << e.resource_id();
      EXPECT_EQ(e.payload_sha256(), uploaded[e.resource_id()]->sha256);
      // "grant G-.. fetch n of N" (the words around may differ).
      EXPECT_TRUE(absl::StartsWith(e.reason(), absl::StrCat("grant ", grant, " "))) << e.reason();
      EXPECT_TRUE(absl::EndsWith(e.reason(), "fetch 1 of 3")) << e.reason();
      served.insert(e.resource_id());
    }
    EXPECT_EQ(granted, (std::set<std::string>{a.id, b.id}));
    EXPECT_EQ(served, (std::set<std::string>{a.id, b.id}));
  }
}

TEST_F(EvidenceRequestsTest, ApproveSomeGrantsOnlyThoseAndTheRestIsNeverServed) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 5000));
  const Uploaded b = Upload(kHolder, l.holder_case, "b.txt", Payload("bravo", 70000));
  const Uploaded c = Upload(kHolder, l.holder_case, "c.txt", Payload("charlie", 300));
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  const std::string er = Requested(RequestOf(l, {a, b, c}));
  ASSERT_FALSE(er.empty());
  const Summary in = SummaryAt(kHolder, er);
  EXPECT_FALSE(in.all());
  EXPECT_EQ(std::set<std::string>(in.item_ids().begin(), in.item_ids().end()),
            (std::set<std::string>{a.id, b.id, c.id}));

  v1::DecideEvidenceRequest approve = Approval(er, {a, c});
  approve.set_max_fetches(5);
  const std::string grant = Decided(approve).grant_id();
  const Summary got = SummaryAt(kRequester, er);
  std::set<std::string> granted;
  for (const auto& g : got.granted()) granted.insert(g.item_id());
  EXPECT_EQ(granted, (std::set<std::string>{a.id, c.id}));
  EXPECT_EQ(got.max_fetches(), 5u);

  v1::FetchGrantedResponse fetched;
  grpc::Status s = Fetch(er, &fetched);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::set<std::string> holder_ids;
  for (const auto& f : fetched.items()) holder_ids.insert(f.holder_item_id());
  EXPECT_EQ(holder_ids, (std::set<std::string>{a.id, c.id}));
  // Only what was granted reached the requester's case.
  std::set<std::string> at_requester;
  for (const auto& e : EvidenceOf(kRequester, "pros", l.requester_case)) {
    if (!e.holder_item_id().empty()) at_requester.insert(e.holder_item_id());
  }
  EXPECT_EQ(at_requester, (std::set<std::string>{a.id, c.id}));

  // The item not granted is not served under the grant, even to its grantee's node.
  const PeerFetch direct = PeerFetchAs(kRequester, grant, b.id);
  EXPECT_EQ(direct.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << direct.status.error_message();
  EXPECT_TRUE(direct.data.empty());

  EXPECT_EQ(CountsSince(kRequester, r0),
            (std::map<std::string, int>{{"evidence.request:allowed", 1},
                                        {"evidence.decision:allowed", 1},
                                        {"evidence.fetch:allowed", 2}}))
      << Show(CountsSince(kRequester, r0));
  EXPECT_EQ(CountsSince(kHolder, h0), (std::map<std::string, int>{{"evidence.requested:allowed", 1},
                                                                  {"evidence.decide:allowed", 1},
                                                                  {"evidence.grant:allowed", 2},
                                                                  {"evidence.serve:allowed", 2},
                                                                  {"evidence.serve:denied", 1}}))
      << Show(CountsSince(kHolder, h0));
  for (const auto& e : WithAction(Since(kHolder, h0), "evidence.grant")) {
    EXPECT_TRUE(absl::StrContains(e.reason(), "at most 5 fetch")) << e.reason();
    EXPECT_NE(e.resource_id(), b.id);
  }
}

TEST_F(EvidenceRequestsTest, DenyReachesTheRequesterWithItsCodeAndNothingCanBeFetched) {
  const Linked l = Link(true);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 5000));
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  const v1::DecideEvidenceResponse denied = Decided(Denial(er, "insufficient-basis"));
  EXPECT_TRUE(denied.grant_id().empty());
  const Summary got = SummaryAt(kRequester, er);
  EXPECT_EQ(got.state(), v1::EVIDENCE_REQUEST_STATE_DENIED);
  EXPECT_EQ(got.reason(), "insufficient-basis");
  EXPECT_TRUE(got.grant_id().empty());
  EXPECT_EQ(got.granted_size(), 0);
  EXPECT_EQ(SummaryAt(kHolder, er).state(), v1::EVIDENCE_REQUEST_STATE_DENIED);

  v1::FetchGrantedResponse fetched;
  grpc::Status s = Fetch(er, &fetched);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  EXPECT_EQ(fetched.items_size(), 0);
  EXPECT_TRUE(EvidenceOf(kRequester, "pros", l.requester_case).empty());
  // Decided once: a second decision of either kind is refused.
  v1::DecideEvidenceResponse again;
  s = Decide(Approval(er), &again);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();

  const auto at_requester = Since(kRequester, r0);
  const auto at_holder = Since(kHolder, h0);
  EXPECT_EQ(Refusing(FlowCounts(at_requester)),
            (std::map<std::string, int>{{"evidence.request:allowed", 1},
                                        {"evidence.decision:allowed", 1},
                                        {"evidence.fetch:refused", 1}}))
      << Show(FlowCounts(at_requester));
  EXPECT_EQ(Refusing(FlowCounts(at_holder)),
            (std::map<std::string, int>{{"evidence.requested:allowed", 1},
                                        {"evidence.decide:allowed", 1},
                                        {"evidence.decide:refused", 1}}))
      << Show(FlowCounts(at_holder));
  for (const auto& e : WithAction(at_holder, "evidence.decide")) {
    if (e.outcome() == v1::ACCESS_OUTCOME_ALLOWED) {
      EXPECT_EQ(e.reason(), "denied: insufficient-basis");
    }
  }
  for (const auto& e : WithAction(at_requester, "evidence.decision")) {
    EXPECT_EQ(e.reason(), "denied: insufficient-basis");
  }
}

TEST_F(EvidenceRequestsTest, AGrantPastItsExpiryServesNothing) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 5000));
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  v1::DecideEvidenceRequest approve = Approval(er);
  approve.set_until(Rfc3339(Now() + absl::Hours(24)));
  const std::string grant = Decided(approve).grant_id();
  EXPECT_EQ(SummaryAt(kRequester, er).expires_at(), approve.until());

  // An hour before it ends, a fetch is served.
  fed_.Advance(absl::Hours(23));
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  v1::FetchGrantedResponse fetched;
  grpc::Status s = Fetch(er, &fetched);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(fetched.items_size(), 1);

  // Past it, nothing is: not through the requester's node, not asked directly.
  fed_.Advance(absl::Hours(2));
  v1::FetchGrantedResponse late;
  s = Fetch(er, &late);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(s.error_message()), "expire"))
      << s.error_message();
  EXPECT_EQ(late.items_size(), 0);
  const PeerFetch direct = PeerFetchAs(kRequester, grant, a.id);
  EXPECT_EQ(direct.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << direct.status.error_message();
  EXPECT_TRUE(direct.data.empty());
  EXPECT_EQ(EvidenceOf(kRequester, "pros", l.requester_case).size(), 1u);  // the first fetch only

  const auto at_requester = Since(kRequester, r0);
  const auto at_holder = Since(kHolder, h0);
  const auto rc = FlowCounts(at_requester);
  EXPECT_EQ(rc.count("evidence.fetch:allowed") ? rc.at("evidence.fetch:allowed") : 0, 1)
      << Show(rc);
  EXPECT_EQ((rc.count("evidence.fetch:denied") ? rc.at("evidence.fetch:denied") : 0) +
                (rc.count("evidence.fetch:error") ? rc.at("evidence.fetch:error") : 0),
            1)
      << Show(rc);
  EXPECT_EQ(FlowCounts(at_holder), (std::map<std::string, int>{{"evidence.serve:allowed", 1},
                                                               {"evidence.serve:denied", 2}}))
      << Show(FlowCounts(at_holder));
  for (const auto& e : WithAction(at_requester, "evidence.fetch")) {
    if (e.outcome() == v1::ACCESS_OUTCOME_ALLOWED) continue;
    EXPECT_EQ(e.resource_id(), a.id);  // the holder's id: nothing was stored
    EXPECT_EQ(e.peer_org(), kHolder);
    EXPECT_TRUE(absl::StrContains(absl::AsciiStrToLower(e.reason()), "expire")) << e.reason();
  }
}

TEST_F(EvidenceRequestsTest, TheFetchLimitIsPerItemAndCountedAtBothEnds) {
  const Linked l = Link(true);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 70000));
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  v1::DecideEvidenceRequest approve = Approval(er);
  approve.set_max_fetches(2);
  const std::string grant = Decided(approve).grant_id();
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  for (int i = 1; i <= 2; ++i) {
    v1::FetchGrantedResponse fetched;
    grpc::Status s = Fetch(er, &fetched);
    ASSERT_TRUE(s.ok()) << "fetch " << i << ": " << s.error_message();
    EXPECT_EQ(SummaryAt(kHolder, er).fetches(), static_cast<uint32_t>(i));
    EXPECT_EQ(SummaryAt(kRequester, er).fetches(), static_cast<uint32_t>(i));
  }
  v1::FetchGrantedResponse third;
  grpc::Status s = Fetch(er, &third);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  const PeerFetch direct = PeerFetchAs(kRequester, grant, a.id);
  EXPECT_EQ(direct.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(direct.data.empty());
  EXPECT_EQ(SummaryAt(kHolder, er).fetches(), 2u);
  EXPECT_EQ(EvidenceOf(kRequester, "pros", l.requester_case).size(), 2u);

  const auto at_holder = Since(kHolder, h0);
  EXPECT_EQ(FlowCounts(at_holder), (std::map<std::string, int>{{"evidence.serve:allowed", 2},
                                                               {"evidence.serve:denied", 2}}))
      << Show(FlowCounts(at_holder));
  std::vector<std::string> reasons;
  for (const auto& e : WithAction(at_holder, "evidence.serve")) {
    if (e.outcome() == v1::ACCESS_OUTCOME_ALLOWED) reasons.push_back(e.reason());
  }
  ASSERT_EQ(reasons.size(), 2u);
  for (size_t i = 0; i < reasons.size(); ++i) {
    EXPECT_TRUE(absl::StartsWith(reasons[i], absl::StrCat("grant ", grant, " "))) << reasons[i];
    EXPECT_TRUE(absl::EndsWith(reasons[i], absl::StrCat("fetch ", i + 1, " of 2"))) << reasons[i];
  }
  const auto rc = CountsSince(kRequester, r0);
  EXPECT_EQ(rc.count("evidence.fetch:allowed") ? rc.at("evidence.fetch:allowed") : 0, 2)
      << Show(rc);
  EXPECT_EQ((rc.count("evidence.fetch:denied") ? rc.at("evidence.fetch:denied") : 0) +
                (rc.count("evidence.fetch:error") ? rc.at("evidence.fetch:error") : 0),
            1)
      << Show(rc);
}

// A corrupted blob at the holder: the digest recorded at upload no longer
// matches. Nothing of it is served; both ends record the failure.
class DigestMismatchTest : public EvidenceRequestsTest {
 protected:
  // Stops the holder and changes the stored chunk 0 of `item` with `change`
  // (the database, the case store), then starts it again.
  void WithHolderStopped(const std::function<void(NodeStore&, CaseStore&)>& change) {
    fed_.Stop(kHolder);
    {
      const v1::NodeConfig& config = fed_.config(kHolder);
      std::vector<std::string> families = {kCasesFamily, kEvidenceFamily};
      auto store = NodeStore::Open(config.data_dir(), families);
      ASSERT_TRUE(store.ok()) << store.status();
      auto master = ReadFileToString(config.master_key_file());
      ASSERT_TRUE(master.ok());
      auto key = Base64Decode(absl::StripAsciiWhitespace(*master));
      ASSERT_TRUE(key.ok());
      auto cases = CaseStore::Open(
          (*store)->db(), (*store)->family(kCasesFamily), (*store)->family(kEvidenceFamily),
          (*store)->family(NodeStore::kMetaFamily), config.data_dir() + "/keystore", *key);
      ASSERT_TRUE(cases.ok()) << cases.status();
      change(**store, **cases);
    }
    ASSERT_TRUE(fed_.Start(kHolder).ok());
    ASSERT_TRUE(AwaitPeerHealthy(kRequester, kHolder));
  }

  // The request approved, then `corrupt` applied at the holder, then a fetch.
  void ExpectMismatchRefused(
      const std::function<void(NodeStore&, CaseStore&, const Linked&, const Uploaded&)>& corrupt) {
    const Linked l = Link(false);
    const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 100000));
    const std::string er = Requested(RequestOf(l, {a}));
    ASSERT_FALSE(er.empty());
    const std::string grant = Decided(Approval(er)).grant_id();
    WithHolderStopped([&](NodeStore& s, CaseStore& c) { corrupt(s, c, l, a); });
    const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
    v1::FetchGrantedResponse fetched;
    grpc::Status s = Fetch(er, &fetched);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
    EXPECT_EQ(fetched.items_size(), 0);
    EXPECT_TRUE(EvidenceOf(kRequester, "pros", l.requester_case).empty());
    // Nor to the grantee's node asked directly.
    const PeerFetch direct = PeerFetchAs(kRequester, grant, a.id);
    EXPECT_EQ(direct.status.error_code(), grpc::StatusCode::DATA_LOSS)
        << direct.status.error_message();
    EXPECT_TRUE(direct.data.empty());

    const auto at_holder = Since(kHolder, h0);
    const auto at_requester = Since(kRequester, r0);
    EXPECT_EQ(FlowCounts(at_holder), (std::map<std::string, int>{{"evidence.serve:error", 2}}))
        << Show(FlowCounts(at_holder));
    for (const auto& e : WithAction(at_holder, "evidence.serve")) {
      EXPECT_EQ(e.resource_id(), a.id);
      EXPECT_EQ(e.peer_org(), kRequester);
      EXPECT_TRUE(absl::StrContains(e.reason(), "digest mismatch")) << e.reason();
    }
    const auto fetches = WithAction(at_requester, "evidence.fetch");
    ASSERT_EQ(fetches.size(), 1u) << Show(FlowCounts(at_requester));
    EXPECT_NE(fetches[0].outcome(), v1::ACCESS_OUTCOME_ALLOWED);
    EXPECT_EQ(fetches[0].resource_id(), a.id);
    EXPECT_EQ(fetches[0].peer_org(), kHolder);
    EXPECT_TRUE(absl::StrContains(fetches[0].reason(), "digest")) << fetches[0].reason();
  }
};

TEST_F(DigestMismatchTest, AChunkValidlySealedOverOtherBytesIsNotServed) {
  ExpectMismatchRefused([](NodeStore& store, CaseStore& cases, const Linked& l, const Uploaded& a) {
    // Same length, other bytes, sealed under the case's key as the node seals
    // them: it opens, but its digest is not the one recorded at upload.
    std::string other = a.data.substr(0, kEvidenceChunkSize);
    other[100] ^= 0x20;
    ledger::Mutation batch;
    ASSERT_TRUE(cases.PutEvidenceChunk(&batch, l.holder_case, a.id, 0, other).ok());
    ASSERT_EQ(batch.size(), 1u);
    rocksdb::WriteOptions wo;
    wo.sync = true;
    for (const auto& op : batch.ops()) {
      ASSERT_EQ(op.kind, ledger::Mutation::Op::Kind::kPut);
      ASSERT_TRUE(store.db()->Put(wo, store.family(op.space), op.key, op.value).ok());
    }
    auto read = cases.ReadEvidence(l.holder_case, a.id);
    ASSERT_TRUE(read.ok()) << read.status();  // it opens: only the digest can tell
    ASSERT_NE(*read, a.data);
  });
}

TEST_F(DigestMismatchTest, AByteFlippedInTheStoredChunkIsNotServed) {
  ExpectMismatchRefused([](NodeStore& store, CaseStore& cases, const Linked& l, const Uploaded& a) {
    // The item's chunks, by their key (which names the evidence id).
    std::unique_ptr<rocksdb::Iterator> it(
        store.db()->NewIterator(rocksdb::ReadOptions(), store.family(kEvidenceFamily)));
    std::string key, value;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      if (absl::StrContains(it->key().ToString(), a.id)) {
        key = it->key().ToString();
        value = it->value().ToString();
        break;
      }
    }
    it.reset();
    ASSERT_FALSE(key.empty()) << "no stored chunk of " << a.id;
    value[value.size() / 2] ^= 0x01;
    rocksdb::WriteOptions wo;
    wo.sync = true;
    ASSERT_TRUE(store.db()->Put(wo, store.family(kEvidenceFamily), key, value).ok());
    EXPECT_FALSE(cases.ReadEvidence(l.holder_case, a.id).ok());
  });
}

// The requester's own end of the check: what it fetched must match the size
// and digest of the decision it holds. Its node holds a decision naming the
// real grant but another digest (as if the holder's decision had said so); the
// holder serves the real bytes; the requester refuses to store them.
TEST_F(EvidenceRequestsTest, TheRequesterChecksWhatItFetchedAgainstTheDecisionItHolds) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 70000));
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  // The holder decides while the requester's node is down, then goes down
  // itself: its decision waits in its outbox.
  fed_.Stop(kRequester);
  v1::DecideEvidenceResponse decided;
  grpc::Status s = Decide(Approval(er), &decided);
  ASSERT_TRUE(s.ok()) << s.error_message();
  fed_.Stop(kHolder);
  ASSERT_TRUE(fed_.Start(kRequester).ok());
  v1::EnvelopePayload p = Header(kHolder, kRequester);
  v1::EvidenceDecision* d = p.mutable_evidence_decision();
  d->set_request_id(er);
  d->set_approved(true);
  d->set_grant_id(decided.grant_id());
  v1::GrantedItem* g = d->add_items();
  g->set_item_id(a.id);
  g->set_file_name(a.file_name);
  g->set_media_type("application/octet-stream");
  g->set_size(a.data.size());
  std::string other = a.sha256;
  other[0] ^= 0x01;
  g->set_sha256(other);
  d->set_expires_at(Rfc3339(Now() + absl::Hours(24)));
  d->set_max_fetches(3);
  d->add_conditions("use only for the purpose prosecution under agreement mla-agreement");
  d->set_decided_by(absl::StrCat(kHolder, "/user/appr"));
  s = Deliver(Sign(p), kHolder, kRequester);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_APPROVED);
  ASSERT_TRUE(fed_.Start(kHolder).ok());
  ASSERT_TRUE(AwaitPeerHealthy(kRequester, kHolder));

  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  v1::FetchGrantedResponse fetched;
  s = Fetch(er, &fetched);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_EQ(fetched.items_size(), 0);
  EXPECT_TRUE(EvidenceOf(kRequester, "pros", l.requester_case).empty());
  const auto at_requester = Since(kRequester, r0);
  const auto fetches = WithAction(at_requester, "evidence.fetch");
  ASSERT_EQ(fetches.size(), 1u) << Show(FlowCounts(at_requester));
  EXPECT_EQ(fetches[0].outcome(), v1::ACCESS_OUTCOME_ERROR);
  EXPECT_EQ(fetches[0].resource_id(), a.id);
  EXPECT_TRUE(absl::StrContains(fetches[0].reason(), decided.grant_id())) << fetches[0].reason();
  // The holder served it (its digest was right by its own record).
  const auto serves = WithAction(Since(kHolder, h0), "evidence.serve");
  ASSERT_EQ(serves.size(), 1u);
  EXPECT_EQ(serves[0].outcome(), v1::ACCESS_OUTCOME_ALLOWED);
  EXPECT_EQ(serves[0].payload_sha256(), a.sha256);
}

// ---- Who may ask, about what -------------------------------------------------

TEST_F(EvidenceRequestsTest, AnOrgOfAKindTheAgreementDoesNotAllowCannotRequest) {
  // The NGO exchanged a referral with the holder and is a party to the
  // agreement, but the agreement lets only prosecutor offices request.
  const Linked l = Link(false, kThird);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  const uint64_t h0 = Mark(kHolder), n0 = Mark(kThird);
  const size_t outbox = Outbox(fed_, kThird).size();
  v1::RequestEvidenceResponse resp;
  grpc::Status s = Request(RequestOf(l, {a}), &resp, kThird);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(resp.request_id().empty());
  EXPECT_EQ(Outbox(fed_, kThird).size(), outbox);
  EXPECT_TRUE(ListAt(kThird, "pros").empty());

  // Its node sending the request anyway: the holder refuses it by the same rule.
  const v1::Envelope env = Sign(CraftedRequest(kThird, l.referral_id, {a}));
  s = Deliver(env, kThird, kHolder);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(ListAt(kHolder).empty());

  EXPECT_EQ(CountsSince(kThird, n0), (std::map<std::string, int>{{"evidence.request:denied", 1}}))
      << Show(CountsSince(kThird, n0));
  const auto at_holder = Since(kHolder, h0);
  EXPECT_TRUE(FlowCounts(at_holder).empty()) << Show(FlowCounts(at_holder));
  const auto received = WithAction(at_holder, "envelope.receive");
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].outcome(), v1::ACCESS_OUTCOME_DENIED);
  EXPECT_EQ(received[0].actor_org(), kThird);
}

// The holder's own checks of a request envelope, each broken alone by a
// requester's node that sends what its user interface never would: refused,
// one denied envelope.receive entry, nothing listed.
TEST_F(EvidenceRequestsTest, TheHolderRefusesARequestEnvelopeBreakingAnyOfItsRules) {
  const Linked l = Link(true);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  const Uploaded elsewhere =
      Upload(kHolder, CreateCase(fed_, kHolder, {}), "b.txt", Payload("bravo", 500));
  struct Row {
    std::string name;
    std::function<void(v1::EnvelopePayload&)> edit;
  };
  auto body = [](v1::EnvelopePayload& p) { return p.mutable_evidence_request(); };
  const std::vector<Row> rows = {
      {"asked by a caseworker", [&](auto& p) { body(p)->set_requester_role(v1::ROLE_CASEWORKER); }},
      {"asked by nobody's role",
       [&](auto& p) { body(p)->set_requester_role(v1::ROLE_UNSPECIFIED); }},
      {"asked in another org's name",
       [&](auto& p) { body(p)->set_requested_by(absl::StrCat(kThird, "/user/pros")); }},
      {"an item of another case", [&](auto& p) { body(p)->add_item_ids(elsewhere.id); }},
      {"an item that does not exist", [&](auto& p) { body(p)->add_item_ids("E-000000000000"); }},
      {"a legal basis of 2001 characters",
       [&](auto& p) { body(p)->set_legal_basis(std::string(2001, 'b')); }},
      {"a legal basis with control characters",
       [&](auto& p) { body(p)->set_legal_basis("art. 14\x1b[2J"); }},
      {"no legal basis", [&](auto& p) { body(p)->clear_legal_basis(); }},
      {"a deadline that is not a time", [&](auto& p) { body(p)->set_deadline("tomorrow"); }},
      {"a purpose the agreement does not cover", [&](auto& p) { p.set_purpose("legal-aid"); }},
      {"an agreement not binding the holder", [&](auto& p) { p.set_agreement(kPairMla); }},
      {"an agreement without evidence requesters",
       [&](auto& p) {
         p.set_agreement(kAgreement);
         p.set_purpose(kPurpose);
       }},
      {"a request id that is not one", [&](auto& p) { body(p)->set_request_id("ER 1/2"); }},
  };
  const uint64_t h0 = Mark(kHolder);
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::EnvelopePayload p = CraftedRequest(kRequester, l.referral_id, {a});
    row.edit(p);
    const uint64_t before = Mark(kHolder);
    grpc::Status s = Deliver(Sign(p), kRequester, kHolder);
    EXPECT_FALSE(s.ok());
    EXPECT_NE(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
    const auto entries = Since(kHolder, before);
    const auto received = WithAction(entries, "envelope.receive");
    ASSERT_EQ(received.size(), 1u);
    EXPECT_EQ(received[0].outcome(), v1::ACCESS_OUTCOME_DENIED);
    EXPECT_EQ(received[0].actor_org(), kRequester);
    EXPECT_FALSE(received[0].reason().empty());
  }
  EXPECT_TRUE(ListAt(kHolder).empty());
  EXPECT_TRUE(CountsSince(kHolder, h0).empty()) << Show(CountsSince(kHolder, h0));
  // The same envelope, rules kept: taken.
  grpc::Status s =
      Deliver(Sign(CraftedRequest(kRequester, l.referral_id, {a})), kRequester, kHolder);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ListAt(kHolder).size(), 1u);
}

TEST_F(EvidenceRequestsTest, ACaseWithNoReferralExchangedWithTheHolderCannotBeTheSubject) {
  // A case of the requester's own, never referred; one referred to the NGO only.
  const std::string own = CreateCase(fed_, kRequester, {});
  const std::string to_ngo = Refer(kRequester, kThird)[0];
  const Linked real = Link(false);  // a referral with the holder exists, on another case
  const Uploaded a = Upload(kHolder, real.holder_case, "a.txt", Payload("alpha", 500));
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  const size_t outbox = Outbox(fed_, kRequester).size();
  for (const std::string& case_id : {own, to_ngo}) {
    SCOPED_TRACE(case_id);
    v1::RequestEvidenceRequest req = RequestOf(real, {a});
    req.set_case_id(case_id);
    v1::RequestEvidenceResponse resp;
    grpc::Status s = Request(req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
    EXPECT_TRUE(absl::StrContains(
        s.error_message(),
        absl::StrCat("case ", case_id, " has no referral exchanged with ", kHolder)))
        << s.error_message();
  }
  EXPECT_EQ(Outbox(fed_, kRequester).size(), outbox);
  EXPECT_TRUE(ListAt(kRequester).empty());

  // Sent anyway by the requester's node, naming a referral the holder
  // exchanged with someone else: the holder refuses it.
  const Linked ngo = Link(false, kThird);
  const v1::Envelope env = Sign(CraftedRequest(kRequester, ngo.referral_id, {}));
  grpc::Status s = Deliver(env, kRequester, kHolder);
  EXPECT_FALSE(s.ok());
  // And naming a referral that does not exist.
  s = Deliver(Sign(CraftedRequest(kRequester, "REF-" + Hex12(), {})), kRequester, kHolder);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(ListAt(kHolder).empty());

  EXPECT_EQ(CountsSince(kRequester, r0),
            (std::map<std::string, int>{{"evidence.request:error", 2}}))
      << Show(CountsSince(kRequester, r0));
  const auto at_holder = Since(kHolder, h0);
  EXPECT_TRUE(FlowCounts(at_holder).empty()) << Show(FlowCounts(at_holder));
  int refused = 0;
  for (const auto& e : WithAction(at_holder, "envelope.receive")) {
    if (e.actor_org() == kRequester && e.outcome() == v1::ACCESS_OUTCOME_DENIED) ++refused;
  }
  EXPECT_EQ(refused, 2);
}

TEST_F(EvidenceRequestsTest, AnApproverOfAnotherOrgCanNeitherSeeNorDecideARequest) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  const uint64_t h0 = Mark(kHolder), n0 = Mark(kThird), r0 = Mark(kRequester);

  // The NGO's approver, at the NGO's node: nothing listed, nothing found.
  EXPECT_TRUE(ListAt(kThird, "appr").empty());
  v1::GetEvidenceRequestRequest get;
  get.set_request_id(er);
  get.set_peer_org(kRequester);
  v1::EvidenceRequestDetail detail;
  grpc::Status s = Evidence(kThird, "appr")->Get(Ctx().get(), get, &detail);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  EXPECT_TRUE(detail.legal_basis().empty());
  for (bool approve : {true, false}) {
    v1::DecideEvidenceRequest d = approve ? Approval(er) : Denial(er, "insufficient-basis");
    d.set_requester_org(kRequester);
    v1::DecideEvidenceResponse resp;
    s = Decide(d, &resp, kThird);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
    EXPECT_TRUE(resp.grant_id().empty());
  }
  // The requester's own approver cannot decide its org's outgoing request.
  v1::DecideEvidenceResponse resp;
  s = Decide(Approval(er), &resp, kRequester);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  // At the holder, only an approver decides.
  for (const char* user : {"pros", "cw", "aud"}) {
    s = Decide(Approval(er), &resp, kHolder, user);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << user;
  }
  EXPECT_EQ(SummaryAt(kHolder, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  EXPECT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);

  EXPECT_EQ(CountsSince(kThird, n0), (std::map<std::string, int>{{"evidence.decide:error", 2}}))
      << Show(CountsSince(kThird, n0));
  EXPECT_EQ(CountsSince(kRequester, r0), (std::map<std::string, int>{{"evidence.decide:error", 1}}))
      << Show(CountsSince(kRequester, r0));
  EXPECT_EQ(CountsSince(kHolder, h0), (std::map<std::string, int>{{"evidence.decide:denied", 3}}))
      << Show(CountsSince(kHolder, h0));
}

TEST_F(EvidenceRequestsTest, AGrantIdPresentedByAnotherOrgsNodeServesNothing) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 150000));
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  const std::string grant = Decided(Approval(er)).grant_id();
  const uint64_t h0 = Mark(kHolder);

  const PeerFetch stolen = PeerFetchAs(kThird, grant, a.id);
  EXPECT_EQ(stolen.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << stolen.status.error_message();
  EXPECT_TRUE(absl::StrContains(stolen.status.error_message(),
                                absl::StrCat("grant ", grant, " was not made to ", kThird)))
      << stolen.status.error_message();
  EXPECT_TRUE(stolen.data.empty());
  EXPECT_TRUE(stolen.item.item_id().empty());
  // A grant id nobody was given.
  const PeerFetch unknown = PeerFetchAs(kThird, "G-" + Hex12(), a.id);
  EXPECT_EQ(unknown.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << unknown.status.error_message();
  EXPECT_TRUE(unknown.data.empty());
  const auto at_holder = Since(kHolder, h0);
  const auto serves = WithAction(at_holder, "evidence.serve");
  int by_third = 0;
  for (const auto& e : serves) {
    EXPECT_NE(e.outcome(), v1::ACCESS_OUTCOME_ALLOWED);
    if (e.actor_org() == kThird) ++by_third;
  }
  EXPECT_EQ(serves.size(), 2u) << Show(FlowCounts(at_holder));
  EXPECT_EQ(by_third, 2);
  // Nor does a person, whatever grant they name: PeerService is for nodes.
  {
    const uint64_t before = Mark(kHolder);
    v1::FetchEvidenceRequest req;
    req.set_grant_id(grant);
    req.set_item_id(a.id);
    auto ctx = Ctx();
    auto reader =
        v1::PeerService::NewStub(fed_.Channel(kHolder, "pros"))->FetchEvidence(ctx.get(), req);
    v1::FetchEvidenceChunk chunk;
    std::string data;
    while (reader->Read(&chunk)) data += chunk.data();
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    EXPECT_TRUE(data.empty());
    EXPECT_TRUE(InProcessFederation::Eventually([&] {
      for (const auto& e : Since(kHolder, before)) {
        if (e.outcome() == v1::ACCESS_OUTCOME_DENIED && e.actor_org() == kHolder) return true;
      }
      return false;
    })) << "the refusal was not recorded";
  }
  // At the requester, only a prosecutor fetches.
  for (const char* user : {"cw", "appr", "aud"}) {
    v1::FetchGrantedRequest req;
    req.set_request_id(er);
    v1::FetchGrantedResponse resp;
    grpc::Status s = Evidence(kRequester, user)->Fetch(Ctx().get(), req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << user;
    EXPECT_EQ(resp.items_size(), 0);
  }
  // The grantee is not harmed: its own fetch still works, as fetch 1 of 3.
  v1::FetchGrantedResponse fetched;
  grpc::Status s = Fetch(er, &fetched);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(fetched.items_size(), 1);
  // What the grantee's node is sent: the item, its data in chunks of at most
  // 64 KiB, then the signed receipt.
  const PeerFetch direct = PeerFetchAs(kRequester, grant, a.id);
  ASSERT_TRUE(direct.status.ok()) << direct.status.error_message();
  EXPECT_EQ(direct.data, a.data);
  EXPECT_LE(direct.largest_chunk, 64u * 1024u);
  // The item first (it may carry the first chunk), then data, the receipt last.
  EXPECT_TRUE(direct.shape == "iddr" || direct.shape == "idddr") << direct.shape;
  EXPECT_EQ(direct.item.sha256(), a.sha256);
  EXPECT_EQ(VerifiedReceipt(direct.receipt.SerializeAsString()).fetch_number(), 2u);
  int n = 0;
  for (const auto& e : WithAction(Since(kHolder, h0), "evidence.serve")) {
    if (e.outcome() != v1::ACCESS_OUTCOME_ALLOWED) continue;
    ++n;
    EXPECT_TRUE(absl::StartsWith(e.reason(), absl::StrCat("grant ", grant, " "))) << e.reason();
    EXPECT_TRUE(absl::EndsWith(e.reason(), absl::StrCat("fetch ", n, " of 3"))) << e.reason();
  }
  EXPECT_EQ(n, 2);
}

// ---- Chain of custody -----------------------------------------------------------

TEST_F(EvidenceRequestsTest, CustodyListsEveryEventOfAnItemInLedgerOrderAtBothEnds) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 70000));
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  Decided(Approval(er));
  v1::FetchGrantedResponse fetched;
  grpc::Status s = Fetch(er, &fetched);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(fetched.items_size(), 1);
  const std::string local = fetched.items(0).item().id();
  ASSERT_TRUE(DownloadAt(kRequester, "pros", l.requester_case, local, kProsecution).status.ok());

  auto custody = [&](const std::string& at, const std::string& user, const std::string& id,
                     v1::CustodyResponse* out) {
    v1::CustodyRequest req;
    req.set_evidence_id(id);
    return Evidence(at, user)->Custody(Ctx().get(), req, out);
  };
  // The item's movements (a read of the custody itself, if recorded about
  // the item, is not one of them).
  auto actions = [](const v1::CustodyResponse& c) {
    static const std::set<std::string> moves = {"evidence.add", "evidence.get", "evidence.grant",
                                                "evidence.serve", "evidence.fetch"};
    std::vector<std::string> out;
    for (const auto& e : c.events()) {
      if (moves.count(e.event().event().action()) > 0) out.push_back(e.event().event().action());
    }
    return out;
  };
  for (const char* user : {"appr", "aud"}) {
    SCOPED_TRACE(user);
    v1::CustodyResponse held;
    s = custody(kHolder, user, a.id, &held);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(held.evidence_id(), a.id);
    EXPECT_EQ(held.case_id(), l.holder_case);
    EXPECT_EQ(actions(held),
              (std::vector<std::string>{"evidence.add", "evidence.grant", "evidence.serve"}));
    EXPECT_FALSE(held.checkpoint().empty());
    uint64_t last = 0;
    for (const auto& e : held.events()) {
      EXPECT_GE(e.event().index(), last);  // ledger order
      last = e.event().index();
      EXPECT_LT(e.event().index(), held.tree_size());
      EXPECT_FALSE(e.inclusion_proof().empty());
      EXPECT_EQ(e.event().event().resource_id(), a.id);
    }
  }
  v1::CustodyResponse got;
  s = custody(kRequester, "pros", local, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got.case_id(), l.requester_case);
  EXPECT_EQ(actions(got), (std::vector<std::string>{"evidence.fetch", "evidence.get"}));
  ASSERT_GE(got.events_size(), 1);
  EXPECT_FALSE(got.events(0).holder_receipt().body().empty());
  EXPECT_EQ(VerifiedReceipt(got.events(0).holder_receipt().SerializeAsString()).item_id(), a.id);
  // An unknown item, and a caseworker (not in the access table).
  v1::CustodyResponse none;
  s = custody(kRequester, "pros", "E-000000000000", &none);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << s.error_message();
  s = custody(kHolder, "cw", a.id, &none);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
}

// ---- Deadlines -----------------------------------------------------------------

TEST_F(EvidenceRequestsTest, ADeadlinePassingUndecidedIsRecordedOnceAndBothListsShowItOverdue) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  v1::RequestEvidenceRequest req = RequestOf(l, {a});
  req.set_deadline(Rfc3339(Now() + absl::Hours(48)));
  const std::string er = Requested(req);
  ASSERT_FALSE(er.empty());
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  EXPECT_FALSE(SummaryAt(kRequester, er).overdue());
  EXPECT_FALSE(SummaryAt(kHolder, er).overdue());

  // A minute before: not yet.
  fed_.Advance(absl::Hours(48) - absl::Minutes(1));
  EXPECT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  EXPECT_FALSE(SummaryAt(kRequester, er).overdue());
  EXPECT_FALSE(SummaryAt(kHolder, er).overdue());
  EXPECT_TRUE(All(kRequester, "evidence.no_response").empty());

  fed_.Advance(absl::Minutes(2));
  // The requester's node looks at its deadlines when its requests are listed
  // (and every minute, and at start).
  Summary out = SummaryAt(kRequester, er);
  EXPECT_EQ(out.state(), v1::EVIDENCE_REQUEST_STATE_NO_RESPONSE) << "not swept at List";
  EXPECT_TRUE(out.overdue());
  // The minute's sweep, now (the node's test hook), for the rest of the test.
  ASSERT_TRUE(fed_.node(kRequester).SweepEvidenceDeadlines().ok());
  out = SummaryAt(kRequester, er);
  EXPECT_EQ(out.state(), v1::EVIDENCE_REQUEST_STATE_NO_RESPONSE);
  EXPECT_TRUE(out.overdue());
  const Summary in = SummaryAt(kHolder, er);
  EXPECT_EQ(in.state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  EXPECT_TRUE(in.overdue());

  // Once, however often it is looked at, the clock moves or the node restarts.
  for (int i = 0; i < 3; ++i) {
    fed_.Advance(absl::Minutes(5));
    ListAt(kRequester);
    ASSERT_TRUE(fed_.node(kRequester).SweepEvidenceDeadlines().ok());
  }
  fed_.Stop(kRequester);
  ASSERT_TRUE(fed_.Start(kRequester).ok());
  fed_.Advance(absl::Minutes(5));
  ASSERT_TRUE(fed_.node(kRequester).SweepEvidenceDeadlines().ok());
  EXPECT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_NO_RESPONSE);
  const auto none = All(kRequester, "evidence.no_response");
  ASSERT_EQ(none.size(), 1u);
  EXPECT_EQ(none[0].resource_kind(), "evidence-request");
  EXPECT_EQ(none[0].resource_id(), er);
  EXPECT_EQ(none[0].case_id(), l.requester_case);
  EXPECT_EQ(none[0].peer_org(), kHolder);
  EXPECT_TRUE(All(kHolder, "evidence.no_response").empty());

  // A late decision is still taken and recorded at both ends; decided, it is no longer overdue.
  ASSERT_TRUE(AwaitPeerHealthy(kHolder, kRequester));
  v1::DecideEvidenceResponse decided;
  grpc::Status s = Decide(Approval(er), &decided);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_TRUE(AwaitState(kRequester, er, v1::EVIDENCE_REQUEST_STATE_APPROVED))
      << SummaryAt(kRequester, er).DebugString();
  EXPECT_FALSE(SummaryAt(kRequester, er).overdue());
  EXPECT_FALSE(SummaryAt(kHolder, er).overdue());
  // (The contract leaves the no-response entry's outcome open: counted whatever it is.)
  std::map<std::string, int> rc = CountsSince(kRequester, r0);
  int no_response = 0;
  for (auto it = rc.begin(); it != rc.end();) {
    if (absl::StartsWith(it->first, "evidence.no_response:")) {
      no_response += it->second;
      it = rc.erase(it);
    } else {
      ++it;
    }
  }
  EXPECT_EQ(no_response, 1);
  EXPECT_EQ(rc, (std::map<std::string, int>{{"evidence.decision:allowed", 1}})) << Show(rc);
  EXPECT_EQ(CountsSince(kHolder, h0), (std::map<std::string, int>{{"evidence.decide:allowed", 1},
                                                                  {"evidence.grant:allowed", 1}}))
      << Show(CountsSince(kHolder, h0));

  // A deadline that passed while the requester's node was down: seen at its start.
  v1::RequestEvidenceRequest soon = RequestOf(l, {a});
  soon.set_deadline(Rfc3339(Now() + absl::Hours(1)));
  const std::string er2 = Requested(soon);
  ASSERT_FALSE(er2.empty());
  fed_.Stop(kRequester);
  fed_.Advance(absl::Hours(2));
  ASSERT_TRUE(fed_.Start(kRequester).ok());
  EXPECT_TRUE(InProcessFederation::Eventually(
      [&] { return SummaryAt(kRequester, er2).state() == v1::EVIDENCE_REQUEST_STATE_NO_RESPONSE; },
      absl::Seconds(5)))
      << "not swept at start";
}

TEST_F(EvidenceRequestsTest,
       UrgentRequestsComeFirstThenByDeadlineAndDefaultsAreTenDaysOrEightHours) {
  const Linked l = Link(true);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  const absl::Time t0 = Now();
  auto send = [&](absl::Duration deadline, bool urgent, std::string* deadline_out = nullptr) {
    v1::RequestEvidenceRequest req = RequestOf(l, {a});
    if (deadline > absl::ZeroDuration()) req.set_deadline(Rfc3339(t0 + deadline));
    req.set_urgent(urgent);
    v1::RequestEvidenceResponse resp;
    grpc::Status s = Request(req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (deadline_out != nullptr) *deadline_out = resp.deadline();
    return resp.request_id();
  };
  std::string default_normal, default_urgent;
  const std::string late = send(absl::Hours(24 * 5), false);
  const std::string plain = send(absl::ZeroDuration(), false, &default_normal);
  const std::string early = send(absl::Hours(24 * 3), false);
  const std::string urgent_late = send(absl::Hours(20), true);
  const std::string urgent = send(absl::ZeroDuration(), true, &default_urgent);
  EXPECT_EQ(default_normal, Rfc3339(t0 + absl::Hours(24 * 10)));
  EXPECT_EQ(default_urgent, Rfc3339(t0 + absl::Hours(8)));
  const std::vector<std::string> want = {urgent, urgent_late, early, late, plain};
  for (const std::string& er : want) {
    ASSERT_TRUE(AwaitState(kHolder, er, v1::EVIDENCE_REQUEST_STATE_PENDING)) << er;
  }
  for (const char* at : {kRequester, kHolder}) {
    SCOPED_TRACE(at);
    std::vector<std::string> order;
    for (const Summary& s : ListAt(at)) order.push_back(s.request_id());
    EXPECT_EQ(order, want);
    EXPECT_TRUE(SummaryAt(at, urgent).urgent());
    EXPECT_EQ(SummaryAt(at, urgent).deadline(), default_urgent);
  }
}

// ---- Bad input ----------------------------------------------------------------

// Each rule of a request broken alone: a specific error, nothing sent or
// listed at either end, one denied evidence.request entry.
TEST_F(EvidenceRequestsTest, EachRuleOfARequestBrokenAloneIsRefusedAndRecorded) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  // A case of the requester's, referred to the holder, then erased.
  const Linked erased = Link(true);
  {
    v1::EraseCaseRequest erase;
    erase.set_id(erased.requester_case);
    erase.set_reason("the worker withdrew consent");
    v1::EraseCaseResponse resp;
    grpc::Status s = fed_.Cases(kRequester, "appr")->EraseCase(Ctx().get(), erase, &resp);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const absl::Time now = Now();
  struct Row {
    std::string name;
    std::function<void(v1::RequestEvidenceRequest&)> edit;
    grpc::StatusCode code;
  };
  const std::vector<Row> rows = {
      {"items and all", [&](auto& r) { r.set_all(true); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"neither items nor all",
       [&](auto& r) {
         r.clear_item_ids();
         r.set_all(false);
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"1001 items",
       [&](auto& r) {
         for (int i = 0; i < 1000; ++i) r.add_item_ids(absl::StrCat("E-", 100000 + i));
       },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"an item id that is no identifier", [&](auto& r) { r.add_item_ids("E 1/../x"); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"no legal basis", [&](auto& r) { r.clear_legal_basis(); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"legal basis of 2001 characters",
       [&](auto& r) { r.set_legal_basis(std::string(2001, 'b')); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"legal basis with an escape sequence",
       [&](auto& r) { r.set_legal_basis("art. 14\x1b[2J art. 15"); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"no purpose", [&](auto& r) { r.clear_purpose(); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"purpose outside the vocabulary", [&](auto& r) { r.set_purpose("fee-recovery"); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"purpose the agreement does not cover", [&](auto& r) { r.set_purpose("legal-aid"); },
       grpc::StatusCode::PERMISSION_DENIED},
      {"holder not a member", [&](auto& r) { r.set_holder_org("nobody-xx"); },
       grpc::StatusCode::NOT_FOUND},
      {"holder is this org", [&](auto& r) { r.set_holder_org(kRequester); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"no holder", [&](auto& r) { r.clear_holder_org(); }, grpc::StatusCode::INVALID_ARGUMENT},
      {"unknown agreement", [&](auto& r) { r.set_agreement("no-such-agreement"); },
       grpc::StatusCode::PERMISSION_DENIED},
      {"agreement not binding the holder", [&](auto& r) { r.set_agreement(kPairMla); },
       grpc::StatusCode::PERMISSION_DENIED},
      {"agreement without evidence requesters",
       [&](auto& r) {
         r.set_agreement(kAgreement);
         r.set_purpose(kPurpose);
       },
       grpc::StatusCode::PERMISSION_DENIED},
      {"unknown case", [&](auto& r) { r.set_case_id("C-000000000000"); },
       grpc::StatusCode::NOT_FOUND},
      {"erased case", [&](auto& r) { r.set_case_id(erased.requester_case); },
       grpc::StatusCode::FAILED_PRECONDITION},
      {"deadline in the past", [&](auto& r) { r.set_deadline(Rfc3339(now - absl::Minutes(1))); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"deadline more than 90 days on",
       [&](auto& r) { r.set_deadline(Rfc3339(now + absl::Hours(24 * 91))); },
       grpc::StatusCode::INVALID_ARGUMENT},
      {"deadline not a time", [&](auto& r) { r.set_deadline("next tuesday"); },
       grpc::StatusCode::INVALID_ARGUMENT},
  };
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  const size_t outbox = Outbox(fed_, kRequester).size();
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::RequestEvidenceRequest req = RequestOf(l, {a});
    row.edit(req);
    const int refused = Refusals(kRequester, "evidence.request");
    v1::RequestEvidenceResponse resp;
    grpc::Status s = Request(req, &resp);
    EXPECT_EQ(s.error_code(), row.code) << s.error_message();
    EXPECT_FALSE(s.error_message().empty());
    EXPECT_TRUE(resp.request_id().empty());
    EXPECT_EQ(Refusals(kRequester, "evidence.request"), refused + 1);
  }
  // Only prosecutors request.
  for (const char* user : {"cw", "appr", "aud", "adm"}) {
    SCOPED_TRACE(user);
    v1::RequestEvidenceResponse resp;
    grpc::Status s = Request(RequestOf(l, {a}), &resp, kRequester, user);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  }
  fed_.DeliverNow();
  EXPECT_EQ(Outbox(fed_, kRequester).size(), outbox);
  EXPECT_TRUE(ListAt(kRequester).empty());
  EXPECT_TRUE(ListAt(kHolder).empty());
  EXPECT_EQ(
      Refusing(CountsSince(kRequester, r0)),
      (std::map<std::string, int>{{"evidence.request:refused", static_cast<int>(rows.size()) + 4}}))
      << Show(CountsSince(kRequester, r0));
  EXPECT_TRUE(CountsSince(kHolder, h0).empty()) << Show(CountsSince(kHolder, h0));

  // The bounds themselves are allowed: 2000 characters, 90 days, 1000 items.
  v1::RequestEvidenceRequest edge = RequestOf(l, {a});
  edge.set_legal_basis(std::string(2000, 'b'));
  edge.set_deadline(Rfc3339(now + absl::Hours(24 * 90)));
  for (int i = 1; i < 1000; ++i) edge.add_item_ids(absl::StrCat("E-", 200000 + i));
  v1::RequestEvidenceResponse resp;
  grpc::Status s = Request(edge, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

// Each rule of a decision broken alone: a specific error, the request still
// pending at both ends, nothing sent, one denied evidence.decide entry.
TEST_F(EvidenceRequestsTest, EachRuleOfADecisionBrokenAloneIsRefusedAndChangesNothing) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  const Uploaded b = Upload(kHolder, l.holder_case, "b.txt", Payload("bravo", 500));
  const Uploaded not_asked = Upload(kHolder, l.holder_case, "c.txt", Payload("charlie", 500));
  const std::string er = Requested(RequestOf(l, {a, b}));
  ASSERT_FALSE(er.empty());
  const absl::Time now = Now();
  struct Row {
    std::string name;
    v1::DecideEvidenceRequest req;
    grpc::StatusCode code;
  };
  auto approve = [&](const std::function<void(v1::DecideEvidenceRequest&)>& edit) {
    v1::DecideEvidenceRequest d = Approval(er);
    edit(d);
    return d;
  };
  std::vector<Row> rows = {
      {"unknown request", approve([](auto& d) { d.set_request_id("ER-000000000000"); }),
       grpc::StatusCode::NOT_FOUND},
      {"an item not asked for", approve([&](auto& d) { d.add_item_ids(not_asked.id); }),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"deny without a reason", Denial(er, ""), grpc::StatusCode::INVALID_ARGUMENT},
      {"deny with free text", Denial(er, "not enough basis, sorry"),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"until in the past", approve([&](auto& d) { d.set_until(Rfc3339(now - absl::Minutes(1))); }),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"until more than a year on",
       approve([&](auto& d) { d.set_until(Rfc3339(now + absl::Hours(24 * 367))); }),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"until not a time", approve([](auto& d) { d.set_until("soon"); }),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"101 fetches", approve([](auto& d) { d.set_max_fetches(101); }),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a condition of 501 characters",
       approve([](auto& d) { d.add_conditions(std::string(501, 'c')); }),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"21 conditions", approve([](auto& d) {
         for (int i = 0; i < 21; ++i) d.add_conditions(absl::StrCat("condition ", i));
       }),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"a condition with a bell character", approve([](auto& d) { d.add_conditions("one\atwo"); }),
       grpc::StatusCode::INVALID_ARGUMENT},
      {"another requester's request of that id",
       approve([](auto& d) { d.set_requester_org(kThird); }), grpc::StatusCode::NOT_FOUND},
  };
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  const size_t outbox = Outbox(fed_, kHolder).size();
  for (const Row& row : rows) {
    SCOPED_TRACE(row.name);
    v1::DecideEvidenceResponse resp;
    grpc::Status s = Decide(row.req, &resp);
    EXPECT_EQ(s.error_code(), row.code) << s.error_message();
    EXPECT_FALSE(s.error_message().empty());
    EXPECT_TRUE(resp.grant_id().empty());
    EXPECT_EQ(SummaryAt(kHolder, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  }
  fed_.DeliverNow();
  EXPECT_EQ(Outbox(fed_, kHolder).size(), outbox);
  EXPECT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  EXPECT_EQ(
      Refusing(CountsSince(kHolder, h0)),
      (std::map<std::string, int>{{"evidence.decide:refused", static_cast<int>(rows.size())}}))
      << Show(CountsSince(kHolder, h0));
  EXPECT_TRUE(CountsSince(kRequester, r0).empty()) << Show(CountsSince(kRequester, r0));

  // The bounds are allowed: 20 conditions of 500 characters, a year, 100
  // fetches; the speciality rule comes first.
  v1::DecideEvidenceRequest edge = Approval(er, {b});
  for (int i = 0; i < 20; ++i) edge.add_conditions(std::string(499, 'c') + char('a' + i));
  edge.set_until(Rfc3339(now + absl::Hours(24 * 365)));
  edge.set_max_fetches(100);
  Decided(edge);
  const Summary got = DetailAt(kRequester, er).summary();
  ASSERT_EQ(got.conditions_size(), 21);
  EXPECT_TRUE(absl::StrContains(got.conditions(0), kProsecution));
  EXPECT_EQ(got.conditions(20), std::string(499, 'c') + 't');
  EXPECT_EQ(got.max_fetches(), 100u);
  ASSERT_EQ(got.granted_size(), 1);
  EXPECT_EQ(got.granted(0).item_id(), b.id);
}

// Every string field of RequestEvidenceRequest and DecideEvidenceRequest,
// oversized and full of control characters: INVALID_ARGUMENT, nothing
// stored, the refusal recorded in a bounded entry.
TEST_F(EvidenceRequestsTest, EveryStringFieldOversizedOrFullOfControlCharactersIsRefused) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  const std::vector<std::pair<std::string, std::string>> values = {
      {"oversized", std::string(20000, 'x')}, {"control characters", Hostile(64)}};
  auto expect_refused = [&](const std::string& at, const std::string& action,
                            const std::function<grpc::Status()>& call, const std::string& what) {
    SCOPED_TRACE(what);
    const uint64_t before = Mark(at);
    grpc::Status s = call();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_LE(s.error_message().size(), 4096u);
    EXPECT_FALSE(absl::StrContains(s.error_message(), "\x1b"));
    const auto entries = Since(at, before);
    const auto mine = WithAction(entries, action);
    ASSERT_EQ(mine.size(), 1u) << Show(FlowCounts(entries));
    EXPECT_EQ(mine[0].outcome(), v1::ACCESS_OUTCOME_DENIED);
    ExpectBoundedEntry(mine[0], what);
  };

  // RequestEvidenceRequest, at the requester.
  std::vector<FieldPath> fields;
  StringFields(v1::RequestEvidenceRequest::descriptor(), {}, &fields);
  ASSERT_GE(fields.size(), 8u);
  const size_t outbox = Outbox(fed_, kRequester).size();
  for (const FieldPath& f : fields) {
    for (const auto& [kind, value] : values) {
      v1::RequestEvidenceRequest req = RequestOf(l, {a});
      req.set_deadline(Rfc3339(Now() + absl::Hours(24)));
      req.set_request_id("idem-1");
      SetAt(&req, f, value);
      expect_refused(
          kRequester, "evidence.request",
          [&] {
            v1::RequestEvidenceResponse resp;
            return Request(req, &resp);
          },
          absl::StrCat("Request ", PathName(f), " ", kind));
    }
  }
  fed_.DeliverNow();
  EXPECT_EQ(Outbox(fed_, kRequester).size(), outbox);
  EXPECT_EQ(ListAt(kRequester).size(), 1u);
  EXPECT_EQ(ListAt(kHolder).size(), 1u);

  // DecideEvidenceRequest, at the holder: the reason on a denial, every other
  // field on an approval.
  fields.clear();
  StringFields(v1::DecideEvidenceRequest::descriptor(), {}, &fields);
  ASSERT_GE(fields.size(), 7u);
  const size_t holder_outbox = Outbox(fed_, kHolder).size();
  for (const FieldPath& f : fields) {
    for (const auto& [kind, value] : values) {
      const bool reason = PathName(f) == "reason";
      v1::DecideEvidenceRequest d = reason ? Denial(er, "insufficient-basis") : Approval(er);
      d.set_requester_org(kRequester);
      if (!reason) {
        d.add_item_ids(a.id);
        d.set_until(Rfc3339(Now() + absl::Hours(24 * 5)));
        d.add_conditions("no onward disclosure");
      }
      d.set_idempotency_id("idem-2");
      SetAt(&d, f, value);
      expect_refused(
          kHolder, "evidence.decide",
          [&] {
            v1::DecideEvidenceResponse resp;
            return Decide(d, &resp);
          },
          absl::StrCat("Decide ", PathName(f), " ", kind));
    }
  }
  fed_.DeliverNow();
  EXPECT_EQ(Outbox(fed_, kHolder).size(), holder_outbox);
  EXPECT_EQ(SummaryAt(kHolder, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  EXPECT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  // Nothing of the hostile text reached a ledger entry anywhere.
  for (const char* at : {kRequester, kHolder}) {
    for (const auto& e : Since(at, 0)) {
      EXPECT_FALSE(absl::StrContains(e.reason(), "name=Siti")) << at << " " << e.action();
    }
  }
}

// ---- Replays -------------------------------------------------------------------

TEST_F(EvidenceRequestsTest, ARequestEnvelopeDeliveredTwiceChangesNothingAndItsIdCannotBeReused) {
  const Linked l = Link(true);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  const uint64_t h0 = Mark(kHolder);
  const v1::EnvelopePayload p = CraftedRequest(kRequester, l.referral_id, {a});
  const std::string er = p.evidence_request().request_id();
  const v1::Envelope env = Sign(p);
  v1::Receipt first, again;
  grpc::Status s = Deliver(env, kRequester, kHolder, &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(SummaryAt(kHolder, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  EXPECT_EQ(SummaryAt(kHolder, er).case_id(), l.holder_case);
  s = Deliver(env, kRequester, kHolder, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  EXPECT_EQ(ListAt(kHolder).size(), 1u);

  // Another envelope reusing the ER id (another item list, a later deadline): refused.
  v1::EnvelopePayload reuse = CraftedRequest(kRequester, l.referral_id, {});
  reuse.mutable_evidence_request()->set_request_id(er);
  s = Deliver(Sign(reuse), kRequester, kHolder);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();
  const Summary in = SummaryAt(kHolder, er);
  EXPECT_FALSE(in.all());
  EXPECT_EQ(in.item_ids_size(), 1);
  EXPECT_EQ(ListAt(kHolder).size(), 1u);
  // Another org may use the same ER id for a request of its own.
  const Linked ngo = Link(false, kThird);
  v1::EnvelopePayload other = CraftedRequest(kThird, ngo.referral_id, {});
  other.mutable_evidence_request()->set_request_id(er);
  s = Deliver(Sign(other), kThird, kHolder);
  EXPECT_FALSE(s.ok());  // an NGO may not request under this agreement

  const auto at_holder = Since(kHolder, h0);
  EXPECT_EQ(FlowCounts(at_holder), (std::map<std::string, int>{{"evidence.requested:allowed", 1}}))
      << Show(FlowCounts(at_holder));
  int allowed = 0, denied = 0;
  for (const auto& e : WithAction(at_holder, "envelope.receive")) {
    if (e.actor_org() != kRequester) continue;
    allowed += e.outcome() == v1::ACCESS_OUTCOME_ALLOWED ? 1 : 0;
    denied += e.outcome() == v1::ACCESS_OUTCOME_DENIED ? 1 : 0;
  }
  EXPECT_EQ(allowed, 1);
  EXPECT_EQ(denied, 1);
}

TEST_F(EvidenceRequestsTest, ADecisionIsTakenOnlyFromTheHolderOnlyOnceAndOnlyForAPendingRequest) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  const std::string er = Requested(RequestOf(l, {a}));
  ASSERT_FALSE(er.empty());
  const uint64_t r0 = Mark(kRequester);
  auto decision = [&](const std::string& from, const std::string& id, bool approved) {
    v1::EnvelopePayload p = Header(from, kRequester);
    v1::EvidenceDecision* d = p.mutable_evidence_decision();
    d->set_request_id(id);
    d->set_approved(approved);
    if (approved) {
      d->set_grant_id("G-" + Hex12());
      v1::GrantedItem* g = d->add_items();
      g->set_item_id(a.id);
      g->set_file_name(a.file_name);
      g->set_size(a.data.size());
      g->set_sha256(a.sha256);
      d->set_expires_at(Rfc3339(Now() + absl::Hours(24)));
      d->set_max_fetches(3);
      d->add_conditions("use only for the purpose prosecution under agreement mla-agreement");
    } else {
      d->set_reason("insufficient-basis");
    }
    d->set_decided_by(absl::StrCat(from, "/user/appr"));
    return Sign(p);
  };
  // From an org the request did not go to: refused.
  grpc::Status s = Deliver(decision(kThird, er, true), kThird, kRequester);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_PENDING);
  // For a request the requester never sent: refused.
  s = Deliver(decision(kHolder, "ER-" + Hex12(), true), kHolder, kRequester);
  EXPECT_FALSE(s.ok());
  // The holder's decision, delivered twice: taken once.
  const v1::Envelope denial = decision(kHolder, er, false);
  v1::Receipt first, again;
  s = Deliver(denial, kHolder, kRequester, &first);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_DENIED);
  s = Deliver(denial, kHolder, kRequester, &again);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(again.SerializeAsString(), first.SerializeAsString());
  // Another decision for it, no longer pending: refused; it stays denied.
  s = Deliver(decision(kHolder, er, true), kHolder, kRequester);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(SummaryAt(kRequester, er).state(), v1::EVIDENCE_REQUEST_STATE_DENIED);
  EXPECT_TRUE(SummaryAt(kRequester, er).grant_id().empty());

  const auto at_requester = Since(kRequester, r0);
  EXPECT_EQ(FlowCounts(at_requester),
            (std::map<std::string, int>{{"evidence.decision:allowed", 1}}))
      << Show(FlowCounts(at_requester));
  int allowed = 0, denied = 0;
  for (const auto& e : WithAction(at_requester, "envelope.receive")) {
    allowed += e.outcome() == v1::ACCESS_OUTCOME_ALLOWED ? 1 : 0;
    denied += e.outcome() == v1::ACCESS_OUTCOME_DENIED ? 1 : 0;
  }
  EXPECT_EQ(allowed, 1);
  EXPECT_EQ(denied, 3);
}

// ---- At rest -------------------------------------------------------------------

TEST_F(EvidenceRequestsTest, TheLegalBasisAndConditionsNeverAppearInPlaintextInTheDataDirectory) {
  const std::string basis = "Treaty art. 18 LEGALBASIS-" + Hex12() + "-MARKER";
  const std::string condition = "Return after trial CONDITION-" + Hex12() + "-MARKER";
  // The evidence itself, fetched, is stored at the requester sealed like any evidence.
  const std::string content = "Payslip EVIDENCECONTENT-" + Hex12() + "-MARKER";
  const Linked l = Link(false);
  const Uploaded a =
      Upload(kHolder, l.holder_case, "a.txt", content + Payload(" filler", 3000) + content);
  const std::string er = Requested(RequestOf(l, {a}, basis));
  ASSERT_FALSE(er.empty());
  v1::DecideEvidenceRequest approve = Approval(er);
  approve.add_conditions(condition);
  Decided(approve);
  v1::FetchGrantedResponse fetched;
  grpc::Status s = Fetch(er, &fetched);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // Both ends hold both texts (so there is something to find).
  for (const char* at : {kRequester, kHolder}) {
    SCOPED_TRACE(at);
    v1::GetEvidenceRequestRequest get;
    get.set_request_id(er);
    v1::EvidenceRequestDetail detail;
    s = Evidence(at, at == std::string(kRequester) ? "pros" : "appr")
            ->Get(Ctx().get(), get, &detail);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(detail.legal_basis(), basis);
    ASSERT_EQ(detail.summary().conditions_size(), 2);
    EXPECT_EQ(detail.summary().conditions(1), condition);
    // The list carries no free text of the request.
    EXPECT_FALSE(absl::StrContains(SummaryAt(at, er).SerializeAsString(), basis));
  }
  ASSERT_EQ(fetched.items_size(), 1);
  ASSERT_EQ(fetched.items(0).item().conditions_size(), 2);
  EXPECT_EQ(fetched.items(0).item().conditions(1), condition);
  const std::string requester_dir = fed_.config(kRequester).data_dir();
  const std::string holder_dir = fed_.config(kHolder).data_dir();
  fed_.Stop(kRequester);
  fed_.Stop(kHolder);
  for (const std::string& dir : {requester_dir, holder_dir}) {
    SCOPED_TRACE(dir);
    for (const std::string& marker : {basis, condition, content}) {
      EXPECT_FALSE(AnyFileContains(dir, marker)) << marker;
      // Nor its distinctive part alone.
      const std::string core = marker.substr(marker.find_first_of("LCE"), 29);
      EXPECT_FALSE(AnyFileContains(dir, core)) << core;
    }
  }
}

// ---- Concurrency ---------------------------------------------------------------

TEST_F(EvidenceRequestsTest, ManyCallsInFlightOnOneChannelAndOnSeveralAllAnswerAndCountsMatch) {
  const Linked l = Link(false);
  const Uploaded a = Upload(kHolder, l.holder_case, "a.txt", Payload("alpha", 500));
  constexpr int kThreads = 8, kEach = 4;
  const uint64_t h0 = Mark(kHolder), r0 = Mark(kRequester);
  absl::Mutex mu;
  std::vector<std::string> ers;
  std::vector<std::string> unexpected;  // guarded by mu
  // A change to a case while another is in flight is answered "try again"
  // (UNAVAILABLE, recorded); the caller tries again, as corridorctl's user would.
  std::atomic<int> busy_requests{0}, busy_decisions{0};
  auto is_busy = [](const grpc::Status& s) {
    return s.error_code() == grpc::StatusCode::UNAVAILABLE &&
           absl::StrContains(s.error_message(), "try again");
  };
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      // Half share one channel, half have their own.
      auto ch = t % 2 == 0 ? fed_.Channel(kRequester, "pros") : fed_.NewChannel(kRequester, "pros");
      threads.emplace_back([&, ch, t] {
        auto stub = v1::EvidenceService::NewStub(ch);
        for (int i = 0; i < kEach; ++i) {
          v1::RequestEvidenceRequest req = RequestOf(l, {a});
          req.set_urgent((t + i) % 3 == 0);
          v1::RequestEvidenceResponse resp;
          grpc::Status s;
          for (int attempt = 0; attempt < 200; ++attempt) {
            s = stub->Request(Ctx(absl::Seconds(60)).get(), req, &resp);
            if (!is_busy(s)) break;
            ++busy_requests;
            absl::SleepFor(absl::Milliseconds(5));
          }
          v1::ListEvidenceRequestsResponse list;
          grpc::Status ls = stub->List(Ctx(absl::Seconds(60)).get(), {}, &list);
          absl::MutexLock lock(&mu);
          if (!s.ok()) unexpected.push_back("Request: " + s.error_message());
          if (!ls.ok()) unexpected.push_back("List: " + ls.error_message());
          if (s.ok()) ers.push_back(resp.request_id());
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  {
    absl::MutexLock lock(&mu);
    EXPECT_TRUE(unexpected.empty())
        << unexpected.size() << " calls failed, first: " << unexpected[0];
  }
  ASSERT_EQ(std::set<std::string>(ers.begin(), ers.end()).size(),
            static_cast<size_t>(kThreads * kEach));
  // Envelopes a busy receiver turned away are retried after a backoff on the fake clock.
  ASSERT_TRUE(AwaitAdvancing(
      [&] { return ListAt(kHolder).size() == static_cast<size_t>(kThreads * kEach); }));

  // Each request decided twice at once, an approval racing a denial, with
  // lists in between: exactly one decision each.
  std::atomic<int> ok{0}, refused{0}, other{0};
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      auto ch = t % 2 == 0 ? fed_.Channel(kHolder, "appr") : fed_.NewChannel(kHolder, "appr");
      threads.emplace_back([&, ch, t] {
        auto stub = v1::EvidenceService::NewStub(ch);
        for (size_t i = 0; i < ers.size(); ++i) {
          if (static_cast<int>(i % (kThreads / 2)) != t / 2) continue;
          const v1::DecideEvidenceRequest d =
              t % 2 == 0 ? Approval(ers[i]) : Denial(ers[i], "insufficient-basis");
          v1::DecideEvidenceResponse resp;
          grpc::Status s;
          for (int attempt = 0; attempt < 200; ++attempt) {
            s = stub->Decide(Ctx(absl::Seconds(60)).get(), d, &resp);
            if (!is_busy(s)) break;
            ++busy_decisions;
            absl::SleepFor(absl::Milliseconds(5));
          }
          v1::ListEvidenceRequestsResponse list;
          grpc::Status ls = stub->List(Ctx(absl::Seconds(60)).get(), {}, &list);
          if (!ls.ok()) ++other;
          if (s.ok()) {
            ++ok;
          } else if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
            ++refused;
          } else {
            ++other;
          }
        }
      });
    }
    for (auto& th : threads) th.join();
  }
  const int n = kThreads * kEach;
  EXPECT_EQ(ok.load(), n);
  EXPECT_EQ(refused.load(), n);
  EXPECT_EQ(other.load(), 0);
  ASSERT_TRUE(AwaitAdvancing([&] {
    for (const Summary& s : ListAt(kRequester)) {
      if (s.state() == v1::EVIDENCE_REQUEST_STATE_PENDING) return false;
    }
    return true;
  }));
  int approved = 0;
  for (const Summary& s : ListAt(kRequester)) {
    approved += s.state() == v1::EVIDENCE_REQUEST_STATE_APPROVED ? 1 : 0;
    EXPECT_EQ(s.state(), SummaryAt(kHolder, s.request_id()).state()) << s.request_id();
  }

  const auto rc = CountsSince(kRequester, r0);
  const auto hc = CountsSince(kHolder, h0);
  // Every answer recorded once: the allowed ones, and each refusal ("try
  // again" included).
  std::map<std::string, int> want_requester = {{"evidence.request:allowed", n},
                                               {"evidence.decision:allowed", n}};
  if (busy_requests.load() > 0) want_requester["evidence.request:refused"] = busy_requests.load();
  EXPECT_EQ(Refusing(rc), want_requester) << Show(rc);
  std::map<std::string, int> want_holder = {{"evidence.requested:allowed", n},
                                            {"evidence.decide:allowed", n},
                                            {"evidence.decide:refused", n + busy_decisions.load()}};
  if (approved > 0) want_holder["evidence.grant:allowed"] = approved;
  EXPECT_EQ(Refusing(hc), want_holder) << Show(hc);
}

}  // namespace
}  // namespace corridor::testing
