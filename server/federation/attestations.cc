#include "server/federation/attestations.h"

#include <algorithm>
#include <map>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/lib/grpc_util.h"
#include "ledger/merkle.h"
#include "server/common/edge.h"
#include "server/federation/envelope.h"

namespace corridor {
namespace {

constexpr char kSentAction[] = "envelope.receipt";      // a delivered envelope, at its sender
constexpr char kReceivedAction[] = "envelope.receive";  // an accepted envelope, at its receiver
constexpr size_t kDefaultExchangedPage = 500;
constexpr size_t kMaxExchangedPage = 1000;
// The most bytes of a signed attestation the originator keeps in its entry.
constexpr size_t kMaxAttestationBytes = 8 << 10;

// The reads that are attested: a case received from a peer, or one of its
// evidence items, read by one of this node's people.
bool IsAttestedRead(const v1::AccessEvent& e) {
  return e.outcome() == v1::ACCESS_OUTCOME_ALLOWED &&
         (e.action() == "case.get" || e.action() == "evidence.list" ||
          e.action() == "evidence.get") &&
         !e.case_id().empty();
}

// The org that referred case `c` to this node through an incoming link, if `org` did.
const v1::ReferralLink* IncomingFrom(const v1::Case& c, const std::string& org) {
  for (const auto& link : c.referrals()) {
    if (!link.outgoing() && link.peer_org() == org) return &link;
  }
  return nullptr;
}

// A `downstream.access` entry about this node's case `case_id`: what the
// receiver attests, and the signed attestation itself.
v1::AccessEvent DownstreamEvent(const v1::Envelope& envelope, const v1::EnvelopePayload& p,
                                const std::string& case_id) {
  const v1::AccessAttestation& a = p.access_attestation();
  v1::AccessEvent ev;
  ev.set_actor_org(p.sender_org());
  ev.set_actor_subject("node");
  ev.set_action("downstream.access");
  ev.set_resource_kind(a.resource_kind());
  ev.set_resource_id(a.resource_kind() == "case" ? case_id : a.resource_id());
  ev.set_case_id(case_id);
  ev.set_peer_org(p.sender_org());
  ev.set_agreement(p.agreement());
  ev.set_purpose(a.purpose());
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_payload_sha256(EnvelopeDigest(envelope));
  ev.set_reason(absl::StrCat(p.sender_org(), " attests ", a.subject(), " ran ", a.action(),
                             " (their ledger index ", a.ledger_index(), ")"));
  ev.set_remote_ledger_index(a.ledger_index());
  ev.set_remote_subject(a.subject());
  *ev.mutable_remote_roles() = a.roles();
  ev.set_remote_action(a.action());
  ev.set_remote_time_unix_micros(a.time_unix_micros());
  ev.set_remote_case_id(a.sender_case_id());
  ev.set_attestation(CanonicalEnvelope(envelope).SerializeAsString());
  return ev;
}

v1::ExchangedEnvelope Exchanged(const AccessLog::Hit& h, const std::string& self, bool sent) {
  v1::ExchangedEnvelope out;
  out.set_envelope_id(h.event.resource_id());
  out.set_sha256(h.event.payload_sha256());
  out.set_sender_org(sent ? self : h.event.peer_org());
  out.set_recipient_org(sent ? h.event.peer_org() : self);
  out.set_ledger_index(h.index);
  return out;
}

using EnvelopeKey = std::tuple<std::string, std::string, std::string, std::string>;
EnvelopeKey KeyOf(const v1::ExchangedEnvelope& e) {
  return {e.sender_org(), e.recipient_org(), e.envelope_id(), e.sha256()};
}

// Compares `here` with `there` into `out`.
void Compare(const std::vector<v1::ExchangedEnvelope>& here,
             const std::vector<v1::ExchangedEnvelope>& there, v1::ReconcileResponse* out) {
  std::map<EnvelopeKey, const v1::ExchangedEnvelope*> theirs;
  for (const auto& e : there) theirs.emplace(KeyOf(e), &e);
  for (const auto& e : here) {
    auto it = theirs.find(KeyOf(e));
    if (it == theirs.end()) {
      *out->add_only_here() = e;
      continue;
    }
    out->set_agreed(out->agreed() + 1);
    theirs.erase(it);
  }
  for (const auto& [key, e] : theirs) *out->add_only_there() = *e;
}

}  // namespace

// ---- receiver ------------------------------------------------------------------

v1::EnvelopePayload Attestations::AttestationFor(const v1::Case& c, const v1::ReferralLink& link,
                                                 const v1::AccessEvent& read,
                                                 uint64_t index) const {
  v1::EnvelopePayload p = exchange_->NewPayload(link.peer_org(), link.agreement(), link.purpose());
  v1::AccessAttestation* a = p.mutable_access_attestation();
  a->set_referral_id(link.referral_id());
  a->set_origin_case_id(link.peer_case_id());
  a->set_sender_case_id(c.id());
  a->set_subject(read.actor_subject());
  *a->mutable_roles() = read.actor_roles();
  a->set_action(read.action());
  a->set_purpose(read.purpose());
  a->set_resource_kind(read.resource_kind());
  a->set_resource_id(read.resource_id());
  a->set_time_unix_micros(read.time_unix_micros());
  a->set_ledger_index(index);
  return p;
}

void Attestations::Attest(const v1::Case& c, const v1::AccessEvent& read, uint64_t index,
                          std::function<void(absl::Status)> done) {
  if (!IsAttestedRead(read)) return done(absl::OkStatus());
  // The read's time as the ledger stamped it (the event given is the call's, unstamped).
  v1::AccessEvent stamped = read;
  if (auto entry = log_->ledger()->Entry(index); entry.ok()) {
    if (auto ev = AccessLog::Decode(*entry); ev.ok()) stamped = *std::move(ev);
  }
  auto batch = std::make_unique<ledger::Mutation>();
  std::vector<v1::AccessEvent> events;
  for (const auto& link : c.referrals()) {
    if (link.outgoing() || link.peer_case_id().empty() || link.referral_id().empty()) continue;
    v1::EnvelopePayload p = AttestationFor(c, link, stamped, index);
    auto item =
        exchange_->Enqueue(batch.get(), p, kAccessAttestationKind, c.id(), link.referral_id());
    if (!item.ok()) return done(item.status());
    v1::AccessEvent ev = OutgoingEnvelopeEvent(config_.org(), "attestation.send", p.envelope_id(),
                                               c.id(), link.peer_org());
    ev.set_agreement(link.agreement());
    ev.set_purpose(link.purpose());
    ev.set_payload_sha256(EnvelopeDigest(item->envelope()));
    ev.set_reason(absl::StrCat("attests ledger index ", index, " to ", link.peer_org()));
    events.push_back(std::move(ev));
  }
  if (events.empty()) return done(absl::OkStatus());
  Exchange* exchange = exchange_;
  log_->Record(std::move(events), std::move(batch),
               [exchange, done = std::move(done)](absl::StatusOr<uint64_t> recorded) {
                 if (recorded.ok()) exchange->Wake();
                 done(recorded.status());
               });
}

absl::StatusOr<v1::InclusionProofResponse> Attestations::ProveAccess(const std::string& caller_org,
                                                                     uint64_t index) const {
  const absl::Status not_attested = absl::PermissionDeniedError(
      absl::StrCat("entry ", index, " is not a read this node attested to ", caller_org,
                   ": a peer gets proofs only of the reads of cases it referred here"));
  const ledger::Ledger& ledger = *log_->ledger();
  const ledger::Head h = ledger.head();
  if (index >= h.size) return not_attested;
  auto entry = ledger.Entry(index);
  if (!entry.ok()) return entry.status();
  auto ev = AccessLog::Decode(*entry);
  if (!ev.ok() || !IsAttestedRead(*ev)) return not_attested;
  auto c = cases_->Get(ev->case_id());
  if (!c.ok() || IncomingFrom(*c, caller_org) == nullptr) return not_attested;
  auto proof = ledger.InclusionProof(index, h.size);
  if (!proof.ok()) return proof.status();
  v1::InclusionProofResponse resp;
  resp.set_index(index);
  resp.set_tree_size(h.size);
  resp.set_entry(*entry);
  resp.set_leaf_hash(merkle::ToBytes(merkle::HashLeaf(*entry)));
  for (const auto& p : *proof) resp.add_proof(merkle::ToBytes(p));
  resp.set_checkpoint(h.checkpoint);
  return resp;
}

// ---- originator ----------------------------------------------------------------

absl::StatusOr<v1::Case> Attestations::ReferredCase(const v1::EnvelopePayload& p) const {
  const v1::AccessAttestation& a = p.access_attestation();
  const absl::Status never = absl::PermissionDeniedError(
      absl::StrCat("access attestation about case ", IdInMessage(a.origin_case_id()),
                   ": this node never referred that case to ", p.sender_org(), " through referral ",
                   IdInMessage(a.referral_id())));
  auto case_id = exchange_->CaseForReferral(p.sender_org(), a.referral_id());
  if (absl::IsNotFound(case_id.status())) return never;
  if (!case_id.ok()) return case_id.status();
  if (*case_id != a.origin_case_id()) return never;
  auto c = cases_->Get(*case_id);
  if (absl::IsNotFound(c.status())) return never;
  if (!c.ok()) return c.status();
  for (const auto& link : c->referrals()) {
    if (link.outgoing() && link.peer_org() == p.sender_org() &&
        link.referral_id() == a.referral_id()) {
      return c;
    }
  }
  return never;
}

Exchange::Applied Attestations::Apply(const v1::Envelope& envelope, const v1::EnvelopePayload& p) {
  Exchange::Applied out;
  if (envelope.ByteSizeLong() > kMaxAttestationBytes) {
    return std::move(out).Refused(absl::InvalidArgumentError(
        absl::StrCat("access attestation of ", envelope.ByteSizeLong(), " bytes; at most ",
                     kMaxAttestationBytes, " are kept")));
  }
  // The envelope verified, and its body passed ValidateAccessAttestationBody.
  auto c = ReferredCase(p);
  if (!c.ok()) return std::move(out).Refused(c.status());
  out.case_id = c->id();
  out.change = std::make_unique<ledger::Mutation>();
  out.also_record.push_back(DownstreamEvent(envelope, p, c->id()));
  return out;
}

// ---- reconciliation ------------------------------------------------------------

absl::StatusOr<v1::ListExchangedResponse> Attestations::ListExchanged(
    const std::string& peer, const v1::ListExchangedRequest& req) const {
  AccessLog::Query q;
  q.action = req.sent() ? kSentAction : kReceivedAction;
  if (req.sent()) {
    q.org = config_.org();
  } else {
    q.org = peer;
    q.outcome = v1::ACCESS_OUTCOME_ALLOWED;
  }
  q.limit = req.page_size() == 0 ? kDefaultExchangedPage
                                 : std::min<size_t>(req.page_size(), kMaxExchangedPage);
  if (!req.page_token().empty() && !absl::SimpleAtoi(req.page_token(), &q.before_index)) {
    return absl::InvalidArgumentError("bad page token");
  }
  auto hits = log_->Find(q);
  if (!hits.ok()) return hits.status();
  v1::ListExchangedResponse resp;
  for (const auto& h : *hits) {
    if (h.event.peer_org() != peer) continue;
    *resp.add_envelopes() = Exchanged(h, config_.org(), req.sent());
  }
  if (hits->size() >= q.limit) resp.set_next_page_token(std::to_string(hits->back().index));
  return resp;
}

absl::StatusOr<std::vector<v1::ExchangedEnvelope>> Attestations::AllExchanged(
    const std::string& peer, bool sent, bool remote) {
  std::shared_ptr<v1::PeerService::Stub> stub;
  if (remote) {
    stub = exchange_->PeerStub(peer);
    if (stub == nullptr) {
      return absl::NotFoundError(absl::StrCat(peer, " is not a member of the federation"));
    }
  }
  std::vector<v1::ExchangedEnvelope> all;
  v1::ListExchangedRequest req;
  req.set_sent(sent);
  req.set_page_size(kMaxExchangedPage);
  while (true) {
    absl::StatusOr<v1::ListExchangedResponse> page;
    if (remote) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + kPeerCallDeadline));
      v1::ListExchangedResponse resp;
      grpc::Status st = stub->ListExchanged(&ctx, req, &resp);
      page = st.ok() ? absl::StatusOr<v1::ListExchangedResponse>(std::move(resp))
                     : absl::UnavailableError(
                           absl::StrCat(peer, " did not list its envelopes: ", st.error_message()));
    } else {
      page = ListExchanged(peer, req);
    }
    if (!page.ok()) return page.status();
    for (auto& e : *page->mutable_envelopes()) all.push_back(std::move(e));
    if (all.size() > kMaxReconciled) {
      return absl::ResourceExhaustedError(
          absl::StrCat("more than ", kMaxReconciled, " envelopes to reconcile with ", peer));
    }
    if (page->next_page_token().empty()) return all;
    req.set_page_token(page->next_page_token());
  }
}

absl::StatusOr<v1::ReconcileResponse> Attestations::Reconcile(const std::string& peer) {
  if (peer == config_.org()) return absl::InvalidArgumentError("reconcile with another org");
  v1::ReconcileResponse out;
  for (bool sent : {true, false}) {
    // What this node sent, the peer received; and the other way round.
    auto here = AllExchanged(peer, sent, /*remote=*/false);
    if (!here.ok()) return here.status();
    auto there = AllExchanged(peer, !sent, /*remote=*/true);
    if (!there.ok()) return there.status();
    out.set_peer_checked(out.peer_checked() + there->size());
    Compare(*here, *there, &out);
  }
  return out;
}

absl::StatusOr<v1::InclusionProofResponse> Attestations::ProveDownstream(const std::string& org,
                                                                         uint64_t index) {
  auto stub = exchange_->PeerStub(org);
  if (stub == nullptr) {
    return absl::NotFoundError(absl::StrCat(org, " is not a member of the federation"));
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kPeerCallDeadline));
  v1::ProveAccessRequest req;
  req.set_index(index);
  v1::InclusionProofResponse resp;
  grpc::Status st = stub->ProveAccess(&ctx, req, &resp);
  if (!st.ok()) {
    return absl::Status(FromGrpcStatus(st).code(), absl::StrCat(org, " did not prove entry ", index,
                                                                ": ", st.error_message()));
  }
  return resp;
}

}  // namespace corridor
