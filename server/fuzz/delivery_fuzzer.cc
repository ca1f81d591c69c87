// libFuzzer target: the receiving node past the signature, for every body type
// a peer can send.
//
// A real node of org union-sg (the whole of corridor_server, built with the
// fuzzer's coverage and ASan+UBSan) runs in this process on a loopback port
// with mutual TLS, as method_fuzzer's does. The harness plays its peer
// ministry-id: it holds ministry-id's node certificate and its roster signing
// key, so every envelope it sends is correctly signed, correctly addressed,
// unexpired and under an agreement that covers it, and reaches what
// PeerService.Deliver runs after VerifyEnvelope: the identifier checks, the
// deduplication, Exchange's apply path for the body (the referral policy, the
// case store, the outbox) and the commit with its receipt. Each input is one
// envelope:
//
//   byte 0   which body: each member of EnvelopePayload's oneof `body`
//            (referral, decision, update, permission, erasure request,
//            erasure outcome; from the descriptor, so a new body type is
//            fuzzed without touching this file);
//   byte 1   bit 0 set: every string field of the body reading one of the
//            tokens below is replaced; bit 1 set as well: every free-text
//            field (every string field but those NamesSomething lists) is
//            prefixed with kCanary, which must then never reach the ledger.
//            With bit 0 clear the bytes are the body exactly as given
//            (unknown fields included);
//   the rest the body. Bytes that do not parse as the body's message are
//            skipped: a payload that does not parse is refused before
//            anything past the signature runs, and envelope_fuzzer and
//            method_fuzzer cover that path (at first most inputs here were
//            such bytes).
//
// Tokens: "@new" a fresh identifier; "@sent" the id of a referral this node
// sent to ministry-id, not yet decided (a new one once a decision on it is
// taken); "@recv" the id of a referral this node received from ministry-id and
// accepted (a new one once an erasure request on it is taken); "@sentcase" and
// "@recvcase" the local cases of those referrals; "@erased" a referral whose
// case this node erased and "@erasure" the id of the erasure request it sent
// about it. ministry-id's real node runs in the process as well, so that
// union-sg's referrals are delivered and its erasure request sent, as in
// production; the harness speaks for ministry-id beside it.
//
// What must hold, whatever the input (a violation aborts, and libFuzzer keeps
// the input):
//   - the node answers, with a status other than UNKNOWN, INTERNAL or
//     DEADLINE_EXCEEDED;
//   - every envelope gets exactly one answer, and exactly one
//     `envelope.receive` ledger entry for it (matched by the payload digest),
//     ALLOWED exactly when the answer is OK; none for UNAVAILABLE (try again,
//     nothing recorded);
//   - an OK answer carries a receipt signed by union-sg's roster key for this
//     envelope that names the index of that entry;
//   - a refused body changes nothing: the cases behind "@sent" and "@recv"
//     read the same afterwards, and no referral the node refused is ever in
//     its inbox (unless a later envelope with the same id was taken);
//   - every ledger entry written meanwhile is at most kMaxEntryBytes, holds no
//     control character in its text fields, and never holds kCanary: no free
//     text a peer sends reaches the never-erasable ledger.
// A crash, leak or undefined behaviour anywhere in the node is caught by the
// sanitizers.
//
// It lives in server/fuzz/ beside method_fuzzer, not in server/federation/,
// because it includes server/node/.
//
// Seeds: run with CORRIDOR_FUZZ_WRITE_SEEDS=<dir> and the fuzzer writes, and
// exits, well-formed bodies of every type (each also with the canary), built
// here from the tokens, so they never go stale. ctest does that, then fuzzes
// from them for a short bounded time (server/CMakeLists.txt).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/federation.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/grpcpp.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/dsse.h"
#include "server/federation/envelope.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"

namespace {

using namespace corridor;  // NOLINT: fuzz harness
namespace pb = google::protobuf;

constexpr char kSelf[] = "union-sg";
constexpr char kPeer[] = "ministry-id";
constexpr char kAgreement[] = "test-agreement";
constexpr char kPurpose[] = "case-referral";
// Prefixed to free text: no identifier can hold '~', so any ledger entry that
// holds it got it from free text.
constexpr absl::string_view kCanary = "~canary~";
constexpr size_t kMaxEntryBytes = 8 << 10;  // fields are cut at 256 B (reasons 1 KiB)
constexpr int kInboxCheckEvery = 32;

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "delivery_fuzzer: invariant broken: %s\n", what.c_str());
  abort();
}

// The string fields of a body that name something (ids, orgs, principals,
// agreement, purpose, a rule's code): the ledger may quote them. Every other
// string field is free text, a field added later included.
bool NamesSomething(const pb::FieldDescriptor* f) {
  static const auto* names = new std::set<std::string>{"id",
                                                       "referral_id",
                                                       "origin_case_id",
                                                       "linked_case_id",
                                                       "request_envelope_id",
                                                       "receiver_case_id",
                                                       "holder_org",
                                                       "permitted_org",
                                                       "purpose",
                                                       "agreement",
                                                       "author",
                                                       "added_by",
                                                       "corridor.v1.ErasureOutcome.reason"};
  return names->count(f->name()) > 0 || names->count(f->full_name()) > 0;
}

// Calls `fn(field, &value)` for every string value in `m`, recursively; a
// value `fn` changed (it returns true) is written back.
template <typename Fn>
void ForEachString(pb::Message* m, const Fn& fn) {
  const pb::Reflection* r = m->GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    const int n = f->is_repeated() ? r->FieldSize(*m, f) : 1;
    for (int i = 0; i < n; ++i) {
      if (f->type() == pb::FieldDescriptor::TYPE_STRING) {
        std::string v = f->is_repeated() ? r->GetRepeatedString(*m, f, i) : r->GetString(*m, f);
        if (fn(f, &v)) {
          if (f->is_repeated()) {
            r->SetRepeatedString(m, f, i, v);
          } else {
            r->SetString(m, f, v);
          }
        }
      } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        ForEachString(
            f->is_repeated() ? r->MutableRepeatedMessage(m, f, i) : r->MutableMessage(m, f), fn);
      }
    }
  }
}

std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}

// What one delivery came to.
struct Answer {
  grpc::Status status;
  v1::Receipt receipt;
  std::string digest;
};

class World {
 public:
  World() {
    // Malformed UTF-8 in string fields is what this fuzzer sends; keep the output readable.
    pb::SetLogHandler([](pb::LogLevel, const char*, int, const std::string&) {});
    const pb::OneofDescriptor* body = v1::EnvelopePayload::descriptor()->FindOneofByName("body");
    for (int i = 0; i < body->field_count(); ++i) bodies_.push_back(body->field(i));

    fed_.AddOrg(kSelf);
    fed_.AddOrg(kPeer, v1::ORG_KIND_MINISTRY);
    node_ = StartNode(fed_.WriteNodeConfig(
        kSelf, {{"cw", {"caseworker"}}, {"appr", {"approver"}}, {"aud", {"auditor"}}}));
    // ministry-id's own node runs too: it takes union-sg's referrals and erasure
    // requests, so union-sg holds sent referrals that were delivered, and an
    // erasure request it sent, as in production.
    peer_node_ = StartNode(fed_.WriteNodeConfig(kPeer, {}));

    caseworker_ = UserChannel("cw");
    approver_ = UserChannel("appr");
    auditor_ = UserChannel("aud");
    const testing::TestOrg& peer = fed_.org(kPeer);
    peer_ =
        MakeMutualTlsChannel({peer.node.cert_pem, peer.node.key_pem, fed_.org(kSelf).ca.cert_pem},
                             fed_.org(kSelf).endpoint(), "");
    checked_ = LedgerSize();
    NewErased();
    NewSent();
    NewReceived();
  }

  const std::vector<const pb::FieldDescriptor*>& bodies() const { return bodies_; }

  // Replaces the tokens in every string field of `body`; with `canary`,
  // prefixes every free-text field with kCanary and takes it out of the
  // others. Returns the tokens used.
  std::set<std::string> Prepare(pb::Message* body, bool canary) {
    std::set<std::string> used;
    ForEachString(body, [&](const pb::FieldDescriptor* f, std::string* v) {
      const std::string before = *v;
      if (*v == "@new") *v = NewId();
      if (*v == "@sent") *v = sent_ref_;
      if (*v == "@recv") *v = recv_ref_;
      if (*v == "@sentcase") *v = sent_case_;
      if (*v == "@recvcase") *v = recv_case_;
      if (*v == "@erased") *v = erased_ref_;
      if (*v == "@erasure") *v = erasure_envelope_;
      if (*v != before) used.insert(before);
      if (canary) {
        while (absl::StrContains(*v, kCanary)) *v = absl::StrReplaceAll(*v, {{kCanary, ""}});
        if (!NamesSomething(f)) *v = absl::StrCat(kCanary, *v);
      }
      return *v != before;
    });
    return used;
  }

  // Signs and delivers an envelope from ministry-id whose body is field
  // `body` holding the bytes `bytes`; checks every invariant of one delivery.
  Answer Deliver(const pb::FieldDescriptor* body, const std::string& bytes) {
    v1::EnvelopePayload p;
    p.set_envelope_id(NewId());
    p.set_sender_org(kPeer);
    p.set_recipient_org(kSelf);
    const absl::Time now = absl::Now();
    p.set_created_unix(absl::ToUnixSeconds(now));
    p.set_expires_unix(absl::ToUnixSeconds(now + absl::Hours(1)));
    p.set_key_id(fed_.org(kPeer).key_id);
    p.set_agreement(kAgreement);
    p.set_purpose(kPurpose);
    // The body field by hand, so that bytes that do not parse go as given.
    const std::string payload = absl::StrCat(
        p.SerializeAsString(), Varint((static_cast<uint64_t>(body->number()) << 3) | 2),
        Varint(bytes.size()), bytes);
    v1::Envelope env;
    env.set_payload_type(kEnvelopePayloadType);
    env.set_payload(payload);
    v1::EnvelopeSignature* sig = env.add_signatures();
    sig->set_keyid(fed_.org(kPeer).key_id);
    sig->set_sig(fed_.org(kPeer).signing.Sign(DssePae(kEnvelopePayloadType, payload)));

    Answer a;
    a.digest = EnvelopeDigest(env);
    auto ctx = Ctx();
    const absl::Time start = absl::Now();
    a.status = v1::PeerService::NewStub(peer_)->Deliver(ctx.get(), env, &a.receipt);
    static const bool trace = getenv("CORRIDOR_FUZZ_TRACE") != nullptr;
    if (trace) {
      fprintf(stderr, "  the call took %.1f ms\n", absl::ToDoubleMilliseconds(absl::Now() - start));
    }
    const grpc::StatusCode code = a.status.error_code();
    if (code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::INTERNAL ||
        code == grpc::StatusCode::DEADLINE_EXCEEDED) {
      Fail(absl::StrCat("Deliver of a ", body->name(), " answered ", code, ": ",
                        a.status.error_message()));
    }
    CheckEntries(a, p.envelope_id());
    return a;
  }

  // After `a`, a refused body about the watched cases: they read the same.
  void CheckWatchedUnchanged() {
    for (const auto& [id, before] : watched_) {
      if (ReadCase(id) != before) Fail(absl::StrCat("a refused envelope changed case ", id));
    }
  }
  // The cases' contents after an envelope was taken.
  void RefreshWatched() {
    watched_.clear();
    for (const std::string& id : {sent_case_, recv_case_}) watched_[id] = ReadCase(id);
  }

  // Bookkeeping after envelope `a` with `body`: renews the
  // referrals an accepted envelope used up, remembers refused referrals.
  void After(const pb::FieldDescriptor* field, const pb::Message* body,
             const std::set<std::string>& used, const Answer& a) {
    const bool taken = a.status.ok();
    const bool refused = !taken && a.status.error_code() != grpc::StatusCode::UNAVAILABLE;
    if (refused) CheckWatchedUnchanged();
    if (field->name() == "referral") {
      const auto& id = static_cast<const v1::Referral*>(body)->referral_id();
      if (taken) {
        taken_referrals_.insert(id);
        refused_referrals_.erase(id);
      } else if (refused && taken_referrals_.count(id) == 0) {
        refused_referrals_.insert(id);
      }
    }
    if (taken && field->name() == "decision" && used.count("@sent")) NewSent();
    if (taken && field->name() == "erasure_request" && used.count("@recv")) NewReceived();
    if (taken) RefreshWatched();
    if (++calls_ % kInboxCheckEvery == 0) CheckInbox();
  }

  // The seeds: well-formed bodies of every type, as the tokens name them.
  std::vector<std::pair<std::string, std::string>> SeedBodies() const {
    std::vector<std::pair<std::string, std::string>> out;
    v1::Referral r;
    r.set_referral_id("@new");
    r.set_origin_case_id("@new");
    r.mutable_handling()->set_onward_sharing(v1::ONWARD_SHARING_WITHIN_AGREEMENT);
    r.mutable_handling()->set_contains_personal_data(true);
    v1::SharedCase* s = r.mutable_shared();
    s->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    s->set_sector("construction");
    s->set_origin_country("ID");
    s->set_destination_country("SG");
    s->mutable_worker()->set_name("Siti Rahma");
    s->mutable_worker()->set_document_number("X1234567");
    s->mutable_employer()->set_name("PT Contoh");
    s->set_narrative("Charged six months' wages in fees.");
    v1::EvidenceItem* e = s->add_evidence();
    e->set_id("@new");
    e->set_file_name("receipt.jpg");
    e->set_media_type("image/jpeg");
    e->set_size(10);
    e->set_added_by(absl::StrCat(kPeer, "/user/officer"));
    out.emplace_back("referral", r.SerializeAsString());
    r.clear_shared();
    r.set_deidentified(true);
    out.emplace_back("referral", r.SerializeAsString());

    v1::ReferralDecision d;
    d.set_referral_id("@sent");
    d.set_accepted(true);
    d.set_linked_case_id("@new");
    out.emplace_back("decision", d.SerializeAsString());
    d.set_accepted(false);
    d.clear_linked_case_id();
    d.set_reason("out of our jurisdiction");
    out.emplace_back("decision", d.SerializeAsString());

    v1::CaseUpdate u;
    u.set_referral_id("@recv");
    u.set_status(v1::CASE_STATUS_IN_PROGRESS);
    u.set_outcome("fees-refunded");
    u.set_note("The agency repaid the fees.");
    u.set_author(absl::StrCat(kPeer, "/user/officer"));
    out.emplace_back("update", u.SerializeAsString());
    u.set_outcome("legal-hold");
    out.emplace_back("update", u.SerializeAsString());

    v1::OnwardPermission perm;
    perm.set_referral_id("@recv");
    perm.set_holder_org(kSelf);
    perm.set_permitted_org(kPeer);
    perm.set_purpose(kPurpose);
    perm.set_agreement(kAgreement);
    out.emplace_back("permission", perm.SerializeAsString());

    v1::ErasureRequest er;
    er.set_referral_id("@recv");
    er.set_origin_case_id("@new");
    out.emplace_back("erasure_request", er.SerializeAsString());

    v1::ErasureOutcome o;
    o.set_referral_id("@erased");
    o.set_request_envelope_id("@erasure");
    o.set_result(v1::ERASURE_RESULT_REFUSED);
    o.set_reason("legal-hold");
    o.set_receiver_case_id("@new");
    out.emplace_back("erasure_outcome", o.SerializeAsString());
    o.set_result(v1::ERASURE_RESULT_ERASED);
    o.clear_reason();
    out.emplace_back("erasure_outcome", o.SerializeAsString());
    return out;
  }

 private:
  std::shared_ptr<grpc::Channel> UserChannel(const std::string& user) {
    const std::string prefix = fed_.IssueUser(kSelf, user);
    return MakeMutualTlsChannel(
        {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
         fed_.org(kSelf).ca.cert_pem},
        fed_.org(kSelf).endpoint(), "");
  }
  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    return ctx;
  }
  static std::unique_ptr<Node> StartNode(const std::string& config_path) {
    absl::StatusOr<v1::NodeConfig> config = LoadNodeConfig(config_path);
    if (!config.ok()) Fail(config.status().ToString());
    absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(*config);
    if (!node.ok()) Fail(node.status().ToString());
    return *std::move(node);
  }
  std::string NewId() { return absl::StrCat("FZ", ++ids_, "-", getpid()); }

  uint64_t LedgerSize() {
    v1::CheckpointResponse cp;
    grpc::Status s = v1::AuditService::NewStub(auditor_)->GetCheckpoint(Ctx().get(), {}, &cp);
    if (!s.ok()) Fail(absl::StrCat("the auditor's checkpoint failed: ", s.error_message()));
    return cp.size();
  }

  // Every entry written since the last check: bounded, no control characters,
  // no canary; exactly one receive entry for the envelope of `a`, as its answer says.
  void CheckEntries(const Answer& a, const std::string& envelope_id) {
    const uint64_t size = LedgerSize();
    std::vector<v1::LoggedEvent> receives;
    while (checked_ < size) {
      v1::GetEntriesRequest req;
      req.set_begin(checked_);
      req.set_end(size);
      v1::GetEntriesResponse resp;
      grpc::Status s = v1::AuditService::NewStub(auditor_)->GetEntries(Ctx().get(), req, &resp);
      if (!s.ok()) Fail(absl::StrCat("GetEntries from ", checked_, ": ", s.error_message()));
      if (resp.events_size() == 0) Fail(absl::StrCat("GetEntries from ", checked_, " is empty"));
      for (const v1::LoggedEvent& e : resp.events()) {
        if (e.entry().size() > kMaxEntryBytes) {
          Fail(absl::StrCat("entry ", e.index(), " is ", e.entry().size(), " bytes"));
        }
        if (absl::StrContains(e.entry(), kCanary)) {
          Fail(absl::StrCat(
              "entry ", e.index(), " (", e.event().action(),
              ") holds free text from an envelope's body: ", e.event().ShortDebugString()));
        }
        v1::AccessEvent ev = e.event();
        ForEachString(&ev, [&](const pb::FieldDescriptor* f, std::string* v) {
          for (unsigned char ch : *v) {
            if (ch < 0x20 || ch == 0x7f) {
              Fail(absl::StrCat("entry ", e.index(), " field ", f->full_name(),
                                " holds a control character"));
            }
          }
          return false;
        });
        if (ev.action() == "envelope.receive" && ev.payload_sha256() == a.digest) {
          receives.push_back(e);
        }
        checked_ = e.index() + 1;
      }
    }
    const bool unavailable = a.status.error_code() == grpc::StatusCode::UNAVAILABLE;
    if (receives.size() != (unavailable ? 0u : 1u)) {
      Fail(absl::StrCat("envelope ", envelope_id, " answered ", a.status.error_code(), " (",
                        a.status.error_message(), ") has ", receives.size(), " receive entries"));
    }
    if (unavailable) return;
    const v1::LoggedEvent& entry = receives[0];
    const bool allowed = entry.event().outcome() == v1::ACCESS_OUTCOME_ALLOWED;
    if (allowed != a.status.ok()) {
      Fail(absl::StrCat("envelope ", envelope_id, " answered ", a.status.error_code(),
                        " but its receive entry ", entry.index(), " says ",
                        entry.event().outcome()));
    }
    if (!a.status.ok()) return;
    absl::StatusOr<v1::ReceiptBody> body = VerifyReceiptDigest(a);
    if (!body.ok()) Fail(absl::StrCat("the receipt does not verify: ", body.status().message()));
    if (body->ledger_index() != entry.index() || body->envelope_id() != envelope_id) {
      Fail(absl::StrCat("the receipt names index ", body->ledger_index(), " and envelope ",
                        body->envelope_id(), "; the entry is ", entry.index()));
    }
  }

  absl::StatusOr<v1::ReceiptBody> VerifyReceiptDigest(const Answer& a) {
    v1::ReceiptBody body;
    if (!body.ParseFromString(a.receipt.body())) return absl::DataLossError("receipt body");
    if (body.envelope_sha256() != a.digest || body.receiver_org() != kSelf) {
      return absl::PermissionDeniedError("the receipt is for another envelope or receiver");
    }
    const testing::TestOrg& self = fed_.org(kSelf);
    if (a.receipt.key_id() != self.key_id ||
        !self.signing.public_key().Verify(absl::StrCat("corridor-receipt/v1\n", a.receipt.body()),
                                          a.receipt.signature())) {
      return absl::PermissionDeniedError("the receipt's signature does not verify");
    }
    return body;
  }

  std::string ReadCase(const std::string& id) {
    v1::GetCaseRequest req;
    req.set_id(id);
    req.set_purpose("case-handling");
    v1::Case c;
    grpc::Status s = v1::CaseService::NewStub(caseworker_)->GetCase(Ctx().get(), req, &c);
    if (!s.ok()) return absl::StrCat("unreadable: ", s.error_code());
    return c.SerializeAsString();
  }

  // A case of this node referred to ministry-id, the referral delivered:
  // (case id, referral id).
  std::pair<std::string, std::string> ReferDelivered() {
    v1::CreateCaseRequest create;
    v1::Case* c = create.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name("Fuzz Worker");
    v1::Case created;
    grpc::Status s =
        v1::CaseService::NewStub(caseworker_)->CreateCase(Ctx().get(), create, &created);
    if (!s.ok()) Fail(absl::StrCat("CreateCase: ", s.error_message()));
    v1::ReferCaseRequest refer;
    refer.set_case_id(created.id());
    refer.set_to_org(kPeer);
    refer.set_agreement(kAgreement);
    refer.set_purpose(kPurpose);
    v1::ReferCaseResponse referred;
    s = v1::ReferralService::NewStub(caseworker_)->Refer(Ctx().get(), refer, &referred);
    if (!s.ok()) Fail(absl::StrCat("Refer: ", s.error_message()));
    // Delivered before anything watches the case: the receipt changes its link.
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (true) {
      node_->DeliverNow();
      v1::Case c;
      if (!c.ParseFromString(ReadCase(created.id()))) Fail("the referred case is unreadable");
      if (c.referrals_size() == 1 && c.referrals(0).state() == v1::REFERRAL_STATE_DELIVERED) break;
      if (absl::Now() > give_up) Fail("a referral to ministry-id was not delivered in 30 s");
      absl::SleepFor(absl::Milliseconds(20));
    }
    return {created.id(), referred.referral_id()};
  }

  // A referral this node sent to ministry-id, delivered, undecided: "@sent".
  void NewSent() {
    std::tie(sent_case_, sent_ref_) = ReferDelivered();
    checked_ = LedgerSize();
    RefreshWatched();
  }

  // A referral whose case this node erased, and the erasure request it sent
  // ministry-id about it: "@erased" and "@erasure".
  void NewErased() {
    const auto [case_id, referral_id] = ReferDelivered();
    v1::EraseCaseRequest erase;
    erase.set_id(case_id);
    erase.set_reason("the worker asked for it");
    v1::EraseCaseResponse erased;
    grpc::Status s = v1::CaseService::NewStub(approver_)->EraseCase(Ctx().get(), erase, &erased);
    if (!s.ok()) Fail(absl::StrCat("EraseCase: ", s.error_message()));
    v1::ListOutboxRequest list;
    list.set_page_size(1000);
    v1::ListOutboxResponse outbox;
    s = v1::ReferralService::NewStub(caseworker_)->ListOutbox(Ctx().get(), list, &outbox);
    if (!s.ok()) Fail(absl::StrCat("ListOutbox: ", s.error_message()));
    for (const v1::OutboxEntry& e : outbox.entries()) {
      if (e.kind() == "erasure-request") erasure_envelope_ = e.envelope_id();
    }
    if (erasure_envelope_.empty()) Fail("erasing a referred case sent no erasure request");
    erased_ref_ = referral_id;
    checked_ = LedgerSize();
  }

  // A referral received from ministry-id and accepted here: "@recv".
  void NewReceived() {
    v1::Referral r;
    r.set_referral_id(NewId());
    r.mutable_shared()->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    r.set_deidentified(true);
    const pb::FieldDescriptor* field =
        v1::EnvelopePayload::descriptor()->FindFieldByName("referral");
    const Answer a = Deliver(field, r.SerializeAsString());
    if (!a.status.ok())
      Fail(absl::StrCat("a plain referral was refused: ", a.status.error_message()));
    v1::DecideReferralRequest decide;
    decide.set_referral_id(r.referral_id());
    decide.set_accept(true);
    v1::DecideReferralResponse decided;
    grpc::Status s =
        v1::ReferralService::NewStub(caseworker_)->Decide(Ctx().get(), decide, &decided);
    if (!s.ok()) Fail(absl::StrCat("Decide: ", s.error_message()));
    recv_ref_ = r.referral_id();
    recv_case_ = decided.case_id();
    taken_referrals_.insert(recv_ref_);
    checked_ = LedgerSize();
    RefreshWatched();
  }

  // No referral the node refused is in its inbox.
  void CheckInbox() {
    v1::ListInboxResponse inbox;
    grpc::Status s = v1::ReferralService::NewStub(caseworker_)->ListInbox(Ctx().get(), {}, &inbox);
    if (!s.ok()) Fail(absl::StrCat("ListInbox: ", s.error_message()));
    for (const v1::InboxItem& item : inbox.items()) {
      if (refused_referrals_.count(item.referral_id())) {
        Fail(absl::StrCat("referral ", item.referral_id(), " was refused but is in the inbox"));
      }
    }
    checked_ = LedgerSize();
  }

  testing::TestFederation fed_;
  std::unique_ptr<Node> node_;
  std::vector<const pb::FieldDescriptor*> bodies_;
  std::unique_ptr<Node> peer_node_;
  std::shared_ptr<grpc::Channel> caseworker_, approver_, auditor_, peer_;
  std::string sent_ref_, sent_case_, recv_ref_, recv_case_, erased_ref_, erasure_envelope_;
  std::map<std::string, std::string> watched_;  // case id → its contents, serialized
  std::set<std::string> taken_referrals_, refused_referrals_;
  uint64_t checked_ = 0;
  uint64_t ids_ = 0;
  int calls_ = 0;
};

World& TheWorld() {
  static World* w = new World;  // never destroyed: the node runs until the process exits
  return *w;
}

// Writes every seed body, plain and with the canary, into `dir`.
void WriteSeeds(const World& w, const std::string& dir) {
  int written = 0;
  for (const auto& [name, body] : w.SeedBodies()) {
    size_t selector = 0;
    while (w.bodies()[selector]->name() != name) ++selector;
    for (char flags : {'\x01', '\x03'}) {
      const std::string seed =
          absl::StrCat(std::string(1, static_cast<char>(selector)), std::string(1, flags), body);
      const std::string path = absl::StrCat(dir, "/seed-", written);
      if (!WriteFileAtomically(path, seed).ok()) Fail("cannot write " + path);
      ++written;
    }
  }
  fprintf(stderr, "delivery_fuzzer: wrote %d seeds for %zu body types to %s\n", written,
          w.bodies().size(), dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = getenv("CORRIDOR_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(TheWorld(), dir);
    _exit(0);  // the node runs on; nothing to tidy in a one-shot
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  if (size < 2) return 0;
  const pb::FieldDescriptor* field = w.bodies()[data[0] % w.bodies().size()];
  const bool structured = (data[1] & 1) != 0;
  const bool canary = (data[1] & 2) != 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 2, size - 2);

  std::unique_ptr<pb::Message> body(
      pb::MessageFactory::generated_factory()->GetPrototype(field->message_type())->New());
  if (!body->ParseFromString(bytes)) return 0;
  std::set<std::string> used;
  if (structured) {
    used = w.Prepare(body.get(), canary);
    bytes = body->SerializeAsString();
  }
  const absl::Time start = absl::Now();
  const Answer a = w.Deliver(field, bytes);
  const absl::Time delivered = absl::Now();
  w.After(field, body.get(), used, a);
  static const bool trace = getenv("CORRIDOR_FUZZ_TRACE") != nullptr;
  if (trace) {
    fprintf(stderr, "%s: %d (%s) after %.1f ms, checks %.1f ms\n", field->name().c_str(),
            a.status.error_code(), a.status.error_message().c_str(),
            absl::ToDoubleMilliseconds(delivered - start),
            absl::ToDoubleMilliseconds(absl::Now() - delivered));
  }
  return 0;
}
