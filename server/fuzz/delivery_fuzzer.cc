// libFuzzer target: the receiving node past the signature, for every body type
// a peer can send, from two peers, with and without onward permissions.
//
// A real node of org union-sg (the whole of corridor_server, built with the
// fuzzer's coverage and ASan+UBSan) runs in this process on a loopback port
// with mutual TLS, as method_fuzzer's does. The harness plays two of its
// peers, ministry-id and ngo-ph: it holds each one's node certificate and
// roster signing key, so every envelope it sends is correctly signed by its
// sender, correctly addressed, unexpired and under an agreement that covers
// it, and reaches what PeerService.Deliver runs after VerifyEnvelope: the
// identifier checks, the deduplication, Exchange's apply path for the body
// (the referral policy, a cited onward permission, the case store, the
// outbox) and the commit with its receipt. Each input is one envelope:
//
//   byte 0   which body: each member of EnvelopePayload's oneof `body`
//            (referral, decision, update, permission, erasure request,
//            erasure outcome; from the descriptor, so a new body type is
//            fuzzed without touching this file);
//   byte 1   bit 0 set: every string field of the body reading one of the
//            tokens below is replaced, and a referral's onward_permission
//            reading a permission token is replaced by that permission; bit 1
//            set as well: every free-text field (every string field but those
//            NamesSomething lists) is prefixed with kCanary, which must then
//            never reach the ledger. With bit 0 clear the bytes are the body
//            exactly as given (unknown fields included). Bit 2: the sender
//            (clear ministry-id, set ngo-ph). Bit 3: the envelope reuses the
//            id of the last envelope the other sender had taken (each such id
//            once), so envelope ids must be told apart by sender;
//   the rest the body. Bytes that do not parse as the body's message are
//            skipped: a payload that does not parse is refused before
//            anything past the signature runs, and envelope_fuzzer and
//            method_fuzzer cover that path (at first most inputs here were
//            such bytes).
//
// Tokens, each for the envelope's sender S (O is the other sender):
// "@new" a fresh identifier; "@sent" the id of a referral this node sent to S,
// delivered, not yet decided (a new one once a decision on it is taken);
// "@recv" the id of a referral this node received from S and accepted (a new
// one once an erasure request on it is taken); "@sentcase" and "@recvcase" the
// local cases of those referrals; "@erased" a referral to S whose case this
// node erased and "@erasure" the id of the erasure request it sent S about it.
// The same with "@other-" in front ("@other-sent", "@other-recvcase", ...)
// name O's: S naming O's referrals, cases and erasure requests (cross-sender
// confusion). "@author" is a principal of S, "@other" O's org name. The real
// nodes of ministry-id and ngo-ph run in the process as well, so that
// union-sg's referrals are delivered and its erasure requests sent, as in
// production; the harness speaks for them beside them.
//
// Permission tokens, for a referral's onward_permission (a serialized Envelope
// with an OnwardPermission body, as docs/federation.md describes): "@permit"
// a valid one, signed by O (the originator, a third org to this referral)
// with its roster key, addressed to S (the holder), letting S pass the case on
// to union-sg for this purpose under this agreement; "@permit:" and a
// mutation a broken one (kPermitMutations: wrong signer, expired, another
// receiver, holder, addressee, purpose, agreement or body, a flipped signature
// byte, a permission the holder signed itself; and one the receiver cannot
// tell from a valid one: another referral id). Any other bytes there are sent
// as given.
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
//     envelope (its digest, its id) that names the index of that entry;
//   - a refused body changes nothing: the cases behind "@sent" and "@recv" of
//     both senders read the same afterwards, and no referral the node refused
//     is ever in its inbox (unless a later envelope from the same sender with
//     the same id was taken);
//   - a sender never changes a case it is not party to: whatever S sends,
//     taken or refused, O's watched cases read the same afterwards;
//   - a referral citing a valid permission is not refused for its permission;
//     one citing a broken permission, or any bytes the harness did not sign,
//     is refused;
//   - every ledger entry written meanwhile is at most kMaxEntryBytes, holds no
//     control character in its text fields, and never holds kCanary: no free
//     text a peer sends reaches the never-erasable ledger;
//   - a referral is never refused as already received because the other
//     sender used its id (received referrals are keyed by (sender, referral id)).
// A crash, leak or undefined behaviour anywhere in the node is caught by the
// sanitizers.
//
// It lives in server/fuzz/ beside method_fuzzer, not in server/federation/,
// because it includes server/node/.
//
// Seeds: run with CORRIDOR_FUZZ_WRITE_SEEDS=<dir> and the fuzzer writes, and
// exits without starting a node, well-formed bodies of every type from each
// sender (each also with the canary), the cross-sender ones and a referral
// citing each permission token, built here from the tokens, so they never go
// stale. ctest does that, then fuzzes from them for a short bounded time
// (server/CMakeLists.txt).
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
constexpr int kSenderCount = 2;
// The peers the harness speaks for; byte 1 bit 2 picks one.
constexpr const char* kSenders[kSenderCount] = {"ministry-id", "ngo-ph"};
constexpr v1::OrgKind kSenderKinds[kSenderCount] = {v1::ORG_KIND_MINISTRY, v1::ORG_KIND_NGO};
constexpr char kAgreement[] = "test-agreement";
constexpr char kPurpose[] = "case-referral";
// Prefixed to free text: no identifier can hold '~', so any ledger entry that
// holds it got it from free text.
constexpr absl::string_view kCanary = "~canary~";
constexpr size_t kMaxEntryBytes = 8 << 10;  // fields are cut at 256 B (reasons 1 KiB)
constexpr int kInboxCheckEvery = 32;
constexpr absl::string_view kPermitToken = "@permit";
// "@permit:<mutation>": what is wrong with the cited permission, and whether
// the receiver can tell (an expected refusal) or not (another referral id: the
// receiver does not know through which referral the holder got the case). A
// permission the holder signed itself is refused: only an originator permits.
struct PermitMutation {
  const char* name;
  bool refused;
};
constexpr PermitMutation kPermitMutations[] = {
    {"signer", true},    {"expired", true}, {"receiver", true},   {"holder", true},
    {"addressed", true}, {"purpose", true}, {"agreement", true},  {"body", true},
    {"flip", true},      {"case", false},   {"self-signed", true}};

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

// The body types, in the order byte 0 picks them.
const std::vector<const pb::FieldDescriptor*>& Bodies() {
  static const auto* bodies = [] {
    auto* out = new std::vector<const pb::FieldDescriptor*>;
    const pb::OneofDescriptor* body = v1::EnvelopePayload::descriptor()->FindOneofByName("body");
    for (int i = 0; i < body->field_count(); ++i) out->push_back(body->field(i));
    return out;
  }();
  return *bodies;
}

// What one delivery came to.
struct Answer {
  grpc::Status status;
  v1::Receipt receipt;
  std::string digest;
  std::string envelope_id;
};

// What the tokens of one body were replaced with.
struct Prepared {
  std::set<std::string> used;  // the tokens
  // The referral's onward_permission: none, a valid one, one the receiver must
  // refuse (a broken one, or bytes the harness did not sign), or one it cannot
  // tell from a valid one.
  enum class Permit { kNone, kValid, kRefused, kUnchecked } permit = Permit::kNone;
};

// One peer the harness speaks for, and what it holds on union-sg.
struct Sender {
  std::string org;
  std::unique_ptr<Node> node;              // its own real node, beside the harness
  std::shared_ptr<grpc::Channel> channel;  // to union-sg, with its node certificate
  std::string sent_ref, sent_case, recv_ref, recv_case, erased_ref, erasure_envelope;
  // The id of the last envelope it had taken, for the other sender to reuse once.
  std::string last_envelope;
};

// One seed: body type, byte 1's flags, the body.
struct SeedBody {
  std::string body_name;
  uint8_t flags;
  std::string bytes;
};

constexpr uint8_t kStructured = 1, kWithCanary = 2, kSecondSender = 4, kReuseEnvelopeId = 8;

// The seeds: well-formed bodies of every type, as the tokens name them.
std::vector<SeedBody> SeedBodies() {
  std::vector<std::pair<std::string, std::string>> plain;
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
  e->set_added_by("@author");
  plain.emplace_back("referral", r.SerializeAsString());
  v1::Referral deidentified = r;
  deidentified.clear_shared();
  deidentified.set_deidentified(true);
  plain.emplace_back("referral", deidentified.SerializeAsString());

  v1::ReferralDecision d;
  d.set_referral_id("@sent");
  d.set_accepted(true);
  d.set_linked_case_id("@new");
  plain.emplace_back("decision", d.SerializeAsString());
  v1::ReferralDecision declined = d;
  declined.set_accepted(false);
  declined.clear_linked_case_id();
  declined.set_reason("out of our jurisdiction");
  plain.emplace_back("decision", declined.SerializeAsString());

  v1::CaseUpdate u;
  u.set_referral_id("@recv");
  u.set_status(v1::CASE_STATUS_IN_PROGRESS);
  u.set_outcome("fees-refunded");
  u.set_note("The agency repaid the fees.");
  u.set_author("@author");
  plain.emplace_back("update", u.SerializeAsString());
  v1::CaseUpdate held = u;
  held.set_outcome("legal-hold");
  plain.emplace_back("update", held.SerializeAsString());

  v1::OnwardPermission perm;
  perm.set_referral_id("@recv");
  perm.set_holder_org(kSelf);
  perm.set_permitted_org("@other");
  perm.set_purpose(kPurpose);
  perm.set_agreement(kAgreement);
  plain.emplace_back("permission", perm.SerializeAsString());

  v1::ErasureRequest er;
  er.set_referral_id("@recv");
  er.set_origin_case_id("@new");
  plain.emplace_back("erasure_request", er.SerializeAsString());

  v1::ErasureOutcome o;
  o.set_referral_id("@erased");
  o.set_request_envelope_id("@erasure");
  o.set_result(v1::ERASURE_RESULT_REFUSED);
  o.set_reason("legal-hold");
  o.set_receiver_case_id("@new");
  plain.emplace_back("erasure_outcome", o.SerializeAsString());
  v1::ErasureOutcome erased = o;
  erased.set_result(v1::ERASURE_RESULT_ERASED);
  erased.clear_reason();
  plain.emplace_back("erasure_outcome", erased.SerializeAsString());

  std::vector<SeedBody> out;
  // Every body from each sender, plain and with the canary.
  for (uint8_t sender : {uint8_t{0}, kSecondSender}) {
    for (const auto& [name, bytes] : plain) {
      for (uint8_t flags : {kStructured, uint8_t{kStructured | kWithCanary}}) {
        out.push_back({name, static_cast<uint8_t>(flags | sender), bytes});
      }
    }
  }
  // ngo-ph naming ministry-id's referrals, cases and erasure request, and
  // reusing the id of ministry-id's last envelope.
  d.set_referral_id("@other-sent");
  out.push_back({"decision", kStructured | kSecondSender, d.SerializeAsString()});
  u.set_referral_id("@other-recv");
  out.push_back({"update", kStructured | kSecondSender, u.SerializeAsString()});
  out.push_back({"update", kStructured | kSecondSender | kReuseEnvelopeId, u.SerializeAsString()});
  perm.set_referral_id("@other-recv");
  out.push_back({"permission", kStructured | kSecondSender, perm.SerializeAsString()});
  er.set_referral_id("@other-recv");
  out.push_back({"erasure_request", kStructured | kSecondSender, er.SerializeAsString()});
  o.set_referral_id("@other-erased");
  o.set_request_envelope_id("@other-erasure");
  out.push_back({"erasure_outcome", kStructured | kSecondSender, o.SerializeAsString()});
  deidentified.set_referral_id("@other-recv");  // the id ministry-id used for its referral
  out.push_back({"referral", kStructured | kSecondSender, deidentified.SerializeAsString()});
  // A referral citing a valid permission, from each sender (the other one
  // signs it), and one citing each broken permission.
  deidentified.set_referral_id("@new");
  deidentified.set_onward_permission(std::string(kPermitToken));
  for (uint8_t sender : {uint8_t{0}, kSecondSender}) {
    out.push_back(
        {"referral", static_cast<uint8_t>(kStructured | sender), deidentified.SerializeAsString()});
  }
  r.set_onward_permission(std::string(kPermitToken));
  out.push_back({"referral", kStructured | kWithCanary, r.SerializeAsString()});
  uint8_t sender = 0;
  for (const PermitMutation& m : kPermitMutations) {
    deidentified.set_onward_permission(absl::StrCat(kPermitToken, ":", m.name));
    out.push_back(
        {"referral", static_cast<uint8_t>(kStructured | sender), deidentified.SerializeAsString()});
    sender ^= kSecondSender;
  }
  return out;
}

class World {
 public:
  World() {
    // Malformed UTF-8 in string fields is what this fuzzer sends; keep the output readable.
    pb::SetLogHandler([](pb::LogLevel, const char*, int, const std::string&) {});
    fed_.AddOrg(kSelf);
    for (int i = 0; i < kSenderCount; ++i) fed_.AddOrg(kSenders[i], kSenderKinds[i]);
    node_ = StartNode(fed_.WriteNodeConfig(
        kSelf, {{"cw", {"caseworker"}}, {"appr", {"approver"}}, {"aud", {"auditor"}}}));
    caseworker_ = UserChannel("cw");
    approver_ = UserChannel("appr");
    auditor_ = UserChannel("aud");
    for (int i = 0; i < kSenderCount; ++i) {
      Sender& s = senders_[i];
      s.org = kSenders[i];
      // The sender's own node runs too: it takes union-sg's referrals and
      // erasure requests, so union-sg holds sent referrals that were
      // delivered, and an erasure request it sent, as in production.
      s.node = StartNode(fed_.WriteNodeConfig(s.org, {}));
      const testing::TestOrg& peer = fed_.org(s.org);
      s.channel =
          MakeMutualTlsChannel({peer.node.cert_pem, peer.node.key_pem, fed_.org(kSelf).ca.cert_pem},
                               fed_.org(kSelf).endpoint(), "");
    }
    checked_ = LedgerSize();
    for (Sender& s : senders_) {
      NewErased(s);
      NewSent(s);
      NewReceived(s);
    }
  }

  Sender& sender(int i) { return senders_[i]; }
  Sender& other(const Sender& s) { return &s == &senders_[0] ? senders_[1] : senders_[0]; }

  // Replaces the tokens in every string field of `body`, for sender `s`; with
  // `canary`, prefixes every free-text field with kCanary and takes it out of
  // the others. A referral's onward_permission reading a permission token
  // becomes that permission.
  Prepared Prepare(pb::Message* body, bool canary, Sender& s) {
    Prepared out;
    Sender& o = other(s);
    const std::map<std::string, std::string> tokens = {
        {"@sent", s.sent_ref},
        {"@recv", s.recv_ref},
        {"@sentcase", s.sent_case},
        {"@recvcase", s.recv_case},
        {"@erased", s.erased_ref},
        {"@erasure", s.erasure_envelope},
        {"@other-sent", o.sent_ref},
        {"@other-recv", o.recv_ref},
        {"@other-sentcase", o.sent_case},
        {"@other-recvcase", o.recv_case},
        {"@other-erased", o.erased_ref},
        {"@other-erasure", o.erasure_envelope},
        {"@author", absl::StrCat(s.org, "/user/officer")},
        {"@other", o.org},
    };
    ForEachString(body, [&](const pb::FieldDescriptor* f, std::string* v) {
      const std::string before = *v;
      if (*v == "@new") *v = NewId();
      if (auto it = tokens.find(*v); it != tokens.end()) *v = it->second;
      if (*v != before) out.used.insert(before);
      if (canary) {
        while (absl::StrContains(*v, kCanary)) *v = absl::StrReplaceAll(*v, {{kCanary, ""}});
        if (!NamesSomething(f)) *v = absl::StrCat(kCanary, *v);
      }
      return *v != before;
    });
    if (body->GetDescriptor() == v1::Referral::descriptor()) {
      auto* r = static_cast<v1::Referral*>(body);
      out.permit = CitePermission(r->mutable_onward_permission(), s);
    }
    return out;
  }

  // Signs and delivers an envelope from `from` whose body is field `body`
  // holding the bytes `bytes`, under `envelope_id` (empty: a fresh one);
  // checks every invariant of one delivery. A fresh id that was taken becomes
  // `from`'s last envelope.
  Answer Deliver(Sender& from, const pb::FieldDescriptor* body, const std::string& bytes,
                 std::string envelope_id = "") {
    v1::EnvelopePayload p;
    p.set_envelope_id(envelope_id.empty() ? NewId() : envelope_id);
    p.set_sender_org(from.org);
    p.set_recipient_org(kSelf);
    const absl::Time now = absl::Now();
    p.set_created_unix(absl::ToUnixSeconds(now));
    p.set_expires_unix(absl::ToUnixSeconds(now + absl::Hours(1)));
    p.set_key_id(fed_.org(from.org).key_id);
    p.set_agreement(kAgreement);
    p.set_purpose(kPurpose);
    // The body field by hand, so that bytes that do not parse go as given.
    const std::string payload = absl::StrCat(
        p.SerializeAsString(), Varint((static_cast<uint64_t>(body->number()) << 3) | 2),
        Varint(bytes.size()), bytes);
    const v1::Envelope env = Sign(from.org, from.org, payload);

    Answer a;
    a.digest = EnvelopeDigest(env);
    a.envelope_id = p.envelope_id();
    auto ctx = Ctx();
    const absl::Time start = absl::Now();
    a.status = v1::PeerService::NewStub(from.channel)->Deliver(ctx.get(), env, &a.receipt);
    static const bool trace = getenv("CORRIDOR_FUZZ_TRACE") != nullptr;
    if (trace) {
      fprintf(stderr, "  the call took %.1f ms\n", absl::ToDoubleMilliseconds(absl::Now() - start));
    }
    const grpc::StatusCode code = a.status.error_code();
    if (code == grpc::StatusCode::UNKNOWN || code == grpc::StatusCode::INTERNAL ||
        code == grpc::StatusCode::DEADLINE_EXCEEDED) {
      Fail(absl::StrCat("Deliver of a ", body->name(), " from ", from.org, " answered ", code, ": ",
                        a.status.error_message()));
    }
    CheckEntries(a);
    if (a.status.ok() && envelope_id.empty()) from.last_envelope = a.envelope_id;
    return a;
  }

  // Bookkeeping and checks after envelope `a` from `s` with `body`: the
  // watched cases, the permission, referral ids; renews the referrals an
  // accepted envelope used up, remembers refused referrals.
  void After(Sender& s, const pb::FieldDescriptor* field, const pb::Message* body,
             const Prepared& prepared, bool reused_envelope_id, const Answer& a) {
    const bool taken = a.status.ok();
    const bool refused = !taken && a.status.error_code() != grpc::StatusCode::UNAVAILABLE;
    CheckWatched(s, refused);
    if (field->name() == "referral") {
      CheckReferral(s, *static_cast<const v1::Referral*>(body), prepared, reused_envelope_id, a);
    }
    if (taken && field->name() == "decision" && prepared.used.count("@sent")) NewSent(s);
    if (taken && field->name() == "erasure_request" && prepared.used.count("@recv")) {
      NewReceived(s);
    }
    if (taken) RefreshWatched(s);
    if (++calls_ % kInboxCheckEvery == 0) CheckInbox();
  }

 private:
  // Whatever `s` sent: the other sender's cases read the same (a sender never
  // changes a case it is not party to); after a refusal, `s`'s own as well.
  void CheckWatched(const Sender& s, bool refused) {
    for (const auto& [id, watched] : watched_) {
      const auto& [party, before] = watched;
      if (party == s.org && !refused) continue;
      if (ReadCase(id) == before) continue;
      if (party != s.org) {
        Fail(absl::StrCat("a sender changed a case it is not party to: an envelope from ", s.org,
                          " changed case ", id, " (", party, "'s)"));
      }
      Fail(absl::StrCat("a refused envelope from ", s.org, " changed case ", id));
    }
  }
  // The contents of `s`'s watched cases (the other sender's are unchanged).
  void RefreshWatched(const Sender& s) {
    for (auto it = watched_.begin(); it != watched_.end();) {
      it = it->second.first == s.org ? watched_.erase(it) : std::next(it);
    }
    for (const std::string& id : {s.sent_case, s.recv_case}) watched_[id] = {s.org, ReadCase(id)};
  }

  // The referral `r` from `s` came to `a`: the permission it cites decided as
  // it should, its id told apart by sender; remembered for the inbox check.
  void CheckReferral(const Sender& s, const v1::Referral& r, const Prepared& prepared,
                     bool reused_envelope_id, const Answer& a) {
    const bool taken = a.status.ok();
    const bool refused = !taken && a.status.error_code() != grpc::StatusCode::UNAVAILABLE;
    const std::string& id = r.referral_id();
    if (prepared.permit == Prepared::Permit::kRefused && taken) {
      Fail(absl::StrCat("a referral from ", s.org, " citing a broken onward permission was taken"));
    }
    if (prepared.permit == Prepared::Permit::kValid && refused &&
        absl::StrContains(a.status.error_message(), "permission")) {
      Fail(absl::StrCat("a referral from ", s.org, " citing a valid onward permission, signed by ",
                        other(s).org, ", was refused for it: ", a.status.error_message()));
    }
    if (!reused_envelope_id && a.status.error_code() == grpc::StatusCode::ALREADY_EXISTS &&
        taken_referrals_.count({s.org, id}) == 0 && sent_referrals_.count({s.org, id}) == 0) {
      Fail(absl::StrCat("cross-sender referral-id confusion: referral ", id, " from ", s.org,
                        " was refused as already received, but only another sender used its id: ",
                        a.status.error_message()));
    }
    if (taken) {
      taken_referrals_.insert({s.org, id});
      refused_referrals_.erase({s.org, id});
    } else if (refused && taken_referrals_.count({s.org, id}) == 0) {
      refused_referrals_.insert({s.org, id});
    }
  }

  // Replaces a permission token in `permission` (a referral's
  // onward_permission from `holder`) by that permission; says what the
  // receiver must make of it.
  Prepared::Permit CitePermission(std::string* permission, const Sender& holder) {
    if (permission->empty()) return Prepared::Permit::kNone;
    if (*permission == kPermitToken) {
      *permission = Permission(holder, "");
      return Prepared::Permit::kValid;
    }
    for (const PermitMutation& m : kPermitMutations) {
      if (*permission == absl::StrCat(kPermitToken, ":", m.name)) {
        *permission = Permission(holder, m.name);
        return m.refused ? Prepared::Permit::kRefused : Prepared::Permit::kUnchecked;
      }
    }
    // Bytes the harness did not sign: never a valid permission.
    return Prepared::Permit::kRefused;
  }

  // The other sender's permission for `holder` to pass a case on to union-sg
  // (a serialized Envelope), broken as `mutation` says ("" for none).
  std::string Permission(const Sender& holder, const std::string& mutation) {
    const std::string& originator = other(holder).org;
    v1::EnvelopePayload p;
    p.set_envelope_id(NewId());
    p.set_sender_org(mutation == "self-signed" ? holder.org : originator);
    p.set_recipient_org(mutation == "addressed" ? kSelf : holder.org);
    const absl::Time created = absl::Now() - absl::Hours(mutation == "expired" ? 2 : 0);
    p.set_created_unix(absl::ToUnixSeconds(created));
    p.set_expires_unix(absl::ToUnixSeconds(created + absl::Hours(1)));
    p.set_key_id(fed_.org(p.sender_org()).key_id);
    p.set_agreement(kAgreement);
    p.set_purpose(kPurpose);
    v1::OnwardPermission* perm =
        mutation == "body" ? nullptr : p.mutable_permission();  // "body": a decision instead
    if (perm == nullptr) {
      p.mutable_decision()->set_referral_id(NewId());
      p.mutable_decision()->set_accepted(false);
    } else {
      perm->set_referral_id(mutation == "case" ? other(holder).recv_ref : NewId());
      perm->set_holder_org(mutation == "holder" ? originator : holder.org);
      perm->set_permitted_org(mutation == "receiver" ? originator : kSelf);
      perm->set_purpose(mutation == "purpose" ? "other-purpose" : kPurpose);
      perm->set_agreement(mutation == "agreement" ? "other-agreement" : kAgreement);
    }
    // "signer": the holder's key under the originator's key id.
    v1::Envelope env = Sign(mutation == "signer" ? holder.org : p.sender_org(), p.sender_org(),
                            p.SerializeAsString());
    if (mutation == "flip") {
      std::string* sig = env.mutable_signatures(0)->mutable_sig();
      (*sig)[sig->size() / 2] ^= 1;
    }
    return env.SerializeAsString();
  }

  // `payload` in an envelope signed with `signer`'s roster key, under the key
  // id of `key_org`.
  v1::Envelope Sign(const std::string& signer, const std::string& key_org,
                    const std::string& payload) {
    v1::Envelope env;
    env.set_payload_type(kEnvelopePayloadType);
    env.set_payload(payload);
    v1::EnvelopeSignature* sig = env.add_signatures();
    sig->set_keyid(fed_.org(key_org).key_id);
    sig->set_sig(fed_.org(signer).signing.Sign(DssePae(kEnvelopePayloadType, payload)));
    return env;
  }

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
  void CheckEntries(const Answer& a) {
    const std::string& envelope_id = a.envelope_id;
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

  // A case of this node referred to `to`, the referral delivered:
  // (case id, referral id).
  std::pair<std::string, std::string> ReferDelivered(const std::string& to) {
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
    refer.set_to_org(to);
    refer.set_agreement(kAgreement);
    refer.set_purpose(kPurpose);
    v1::ReferCaseResponse referred;
    s = v1::ReferralService::NewStub(caseworker_)->Refer(Ctx().get(), refer, &referred);
    if (!s.ok()) Fail(absl::StrCat("Refer: ", s.error_message()));
    sent_referrals_.insert({to, referred.referral_id()});
    // Delivered before anything watches the case: the receipt changes its link.
    const absl::Time give_up = absl::Now() + absl::Seconds(30);
    while (true) {
      node_->DeliverNow();
      v1::Case c;
      if (!c.ParseFromString(ReadCase(created.id()))) Fail("the referred case is unreadable");
      if (c.referrals_size() == 1 && c.referrals(0).state() == v1::REFERRAL_STATE_DELIVERED) break;
      if (absl::Now() > give_up)
        Fail(absl::StrCat("a referral to ", to, " was not delivered in 30 s"));
      absl::SleepFor(absl::Milliseconds(20));
    }
    return {created.id(), referred.referral_id()};
  }

  // A referral this node sent to `s`, delivered, undecided: "@sent".
  void NewSent(Sender& s) {
    std::tie(s.sent_case, s.sent_ref) = ReferDelivered(s.org);
    checked_ = LedgerSize();
    RefreshWatched(s);
  }

  // A referral whose case this node erased, and the erasure request it sent
  // `s` about it: "@erased" and "@erasure".
  void NewErased(Sender& s) {
    const auto [case_id, referral_id] = ReferDelivered(s.org);
    v1::EraseCaseRequest erase;
    erase.set_id(case_id);
    erase.set_reason("the worker asked for it");
    v1::EraseCaseResponse erased;
    grpc::Status st = v1::CaseService::NewStub(approver_)->EraseCase(Ctx().get(), erase, &erased);
    if (!st.ok()) Fail(absl::StrCat("EraseCase: ", st.error_message()));
    v1::ListOutboxRequest list;
    list.set_page_size(1000);
    v1::ListOutboxResponse outbox;
    st = v1::ReferralService::NewStub(caseworker_)->ListOutbox(Ctx().get(), list, &outbox);
    if (!st.ok()) Fail(absl::StrCat("ListOutbox: ", st.error_message()));
    for (const v1::OutboxEntry& e : outbox.entries()) {
      if (e.kind() == "erasure-request" && e.recipient_org() == s.org) {
        s.erasure_envelope = e.envelope_id();
      }
    }
    if (s.erasure_envelope.empty()) Fail("erasing a referred case sent no erasure request");
    s.erased_ref = referral_id;
    checked_ = LedgerSize();
  }

  // A referral received from `s` and accepted here: "@recv".
  void NewReceived(Sender& s) {
    v1::Referral r;
    r.set_referral_id(NewId());
    r.mutable_shared()->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    r.set_deidentified(true);
    const pb::FieldDescriptor* field =
        v1::EnvelopePayload::descriptor()->FindFieldByName("referral");
    const Answer a = Deliver(s, field, r.SerializeAsString());
    if (!a.status.ok()) {
      Fail(absl::StrCat("a plain referral from ", s.org,
                        " was refused: ", a.status.error_message()));
    }
    v1::DecideReferralRequest decide;
    decide.set_referral_id(r.referral_id());
    decide.set_accept(true);
    v1::DecideReferralResponse decided;
    grpc::Status st =
        v1::ReferralService::NewStub(caseworker_)->Decide(Ctx().get(), decide, &decided);
    if (!st.ok()) Fail(absl::StrCat("Decide: ", st.error_message()));
    s.recv_ref = r.referral_id();
    s.recv_case = decided.case_id();
    taken_referrals_.insert({s.org, s.recv_ref});
    checked_ = LedgerSize();
    RefreshWatched(s);
  }

  // No referral the node refused is in its inbox.
  void CheckInbox() {
    v1::ListInboxResponse inbox;
    grpc::Status s = v1::ReferralService::NewStub(caseworker_)->ListInbox(Ctx().get(), {}, &inbox);
    if (!s.ok()) Fail(absl::StrCat("ListInbox: ", s.error_message()));
    for (const v1::InboxItem& item : inbox.items()) {
      if (refused_referrals_.count({item.from_org(), item.referral_id()})) {
        Fail(absl::StrCat("referral ", item.referral_id(), " from ", item.from_org(),
                          " was refused but is in the inbox"));
      }
    }
    checked_ = LedgerSize();
  }

  testing::TestFederation fed_;
  std::unique_ptr<Node> node_;
  Sender senders_[kSenderCount];
  std::shared_ptr<grpc::Channel> caseworker_, approver_, auditor_;
  // case id → (the sender party to it, its contents serialized)
  std::map<std::string, std::pair<std::string, std::string>> watched_;
  // (sender, referral id)
  std::set<std::pair<std::string, std::string>> taken_referrals_, refused_referrals_;
  // (receiver, referral id) of every referral this node sent: a receiver sending
  // one back under the same id is refused as already exchanged; another sender is not.
  std::set<std::pair<std::string, std::string>> sent_referrals_;
  uint64_t checked_ = 0;
  uint64_t ids_ = 0;
  int calls_ = 0;
};

World& TheWorld() {
  static World* w = new World;  // never destroyed: the nodes run until the process exits
  return *w;
}

// Writes every seed into `dir`; starts no node.
void WriteSeeds(const std::string& dir) {
  int written = 0;
  for (const SeedBody& b : SeedBodies()) {
    size_t selector = 0;
    while (Bodies()[selector]->name() != b.body_name) ++selector;
    const std::string seed = absl::StrCat(std::string(1, static_cast<char>(selector)),
                                          std::string(1, static_cast<char>(b.flags)), b.bytes);
    const std::string path = absl::StrCat(dir, "/seed-", written);
    if (!WriteFileAtomically(path, seed).ok()) Fail("cannot write " + path);
    ++written;
  }
  fprintf(stderr, "delivery_fuzzer: wrote %d seeds for %zu body types to %s\n", written,
          Bodies().size(), dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = getenv("CORRIDOR_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(dir);
    _exit(0);
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = TheWorld();
  if (size < 2) return 0;
  const pb::FieldDescriptor* field = Bodies()[data[0] % Bodies().size()];
  const bool structured = (data[1] & kStructured) != 0;
  const bool canary = (data[1] & kWithCanary) != 0;
  Sender& sender = w.sender((data[1] & kSecondSender) ? 1 : 0);
  std::string bytes(reinterpret_cast<const char*>(data) + 2, size - 2);

  std::unique_ptr<pb::Message> body(
      pb::MessageFactory::generated_factory()->GetPrototype(field->message_type())->New());
  if (!body->ParseFromString(bytes)) return 0;
  std::string envelope_id;
  if ((data[1] & kReuseEnvelopeId) != 0) {
    // Each id at most once, so that no sender sends the same id twice.
    std::swap(envelope_id, w.other(sender).last_envelope);
  }
  Prepared prepared;
  if (structured) {
    prepared = w.Prepare(body.get(), canary, sender);
    bytes = body->SerializeAsString();
  } else if (field->name() == "referral" &&
             !static_cast<const v1::Referral*>(body.get())->onward_permission().empty()) {
    prepared.permit = Prepared::Permit::kRefused;  // bytes the harness did not sign
  }
  const absl::Time start = absl::Now();
  const Answer a = w.Deliver(sender, field, bytes, envelope_id);
  const absl::Time delivered = absl::Now();
  w.After(sender, field, body.get(), prepared, !envelope_id.empty(), a);
  static const bool trace = getenv("CORRIDOR_FUZZ_TRACE") != nullptr;
  if (trace) {
    fprintf(stderr, "%s from %s (permission %d): %d (%s) after %.1f ms, checks %.1f ms\n",
            field->name().c_str(), sender.org.c_str(), static_cast<int>(prepared.permit),
            a.status.error_code(), a.status.error_message().c_str(),
            absl::ToDoubleMilliseconds(delivered - start),
            absl::ToDoubleMilliseconds(absl::Now() - delivered));
  }
  return 0;
}
