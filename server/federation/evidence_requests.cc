#include "server/federation/evidence_requests.h"

#include <algorithm>
#include <chrono>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/lib/grpc_util.h"
#include "grpcpp/grpcpp.h"
#include "ledger/base/log.h"
#include "ledger/crypto/crypto.h"
#include "ledger/merkle.h"
#include "server/auth/refusal_sink.h"
#include "server/common/edge.h"
#include "server/federation/envelope.h"
#include "server/federation/evidence_policy.h"
#include "server/store/store.h"

namespace corridor {
namespace {

constexpr char kRequestKind[] = "evidence-request";
constexpr char kDecisionKind[] = "evidence-decision";

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string NewId(const char* prefix) {
  return prefix + absl::AsciiStrToUpper(HexEncode(RandomBytes(6)));
}

std::string OutKey(const std::string& id) { return "out/" + id; }
std::string InKey(const std::string& org, const std::string& id) {
  return absl::StrCat("in/", org, "/", id);
}
std::string GrantKey(const std::string& id) { return "grant/" + id; }

// Names request `r` in `ev` (kind "evidence-request"), keeping its actor.
void NameRequest(const std::string& action, const v1::EvidenceRequestSummary& r,
                 v1::AccessEvent* ev) {
  ev->set_action(action);
  ev->set_resource_kind("evidence-request");
  ev->set_resource_id(r.request_id());
  ev->set_case_id(r.case_id());
  ev->set_peer_org(r.peer_org());
  ev->set_agreement(r.agreement());
  ev->set_purpose(r.purpose());
  ev->set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
}

// A new event about request `r`.
v1::AccessEvent RequestEvent(const std::string& action, const v1::EvidenceRequestSummary& r) {
  v1::AccessEvent ev;
  NameRequest(action, r, &ev);
  return ev;
}

// The node itself as the actor of an event.
void SetNodeActor(const std::string& org, v1::AccessEvent* ev) {
  ev->set_actor_org(org);
  ev->set_actor_subject("node");
}

std::string DecisionReason(const v1::EvidenceRequestSummary& s) {
  return s.state() == v1::EVIDENCE_REQUEST_STATE_APPROVED
             ? absl::StrCat("approved: grant ", s.grant_id(), " of ", s.granted_size(),
                            " item(s) until ", s.expires_at(), ", at most ", s.max_fetches(),
                            " fetch(es) each")
             : absl::StrCat("denied: ", s.reason());
}

bool Undecided(const v1::EvidenceRequestSummary& s) {
  return s.state() == v1::EVIDENCE_REQUEST_STATE_PENDING ||
         s.state() == v1::EVIDENCE_REQUEST_STATE_NO_RESPONSE;
}

absl::Status Busy(const std::string& case_id) {
  return absl::UnavailableError(
      absl::StrCat("case ", case_id, " is being changed by another call; try again"));
}

// What a fetch has received so far, staged in sealed chunks of
// kEvidenceChunkSize as it arrives and checked against the grant's item.
class Incoming {
 public:
  Incoming(CaseStore* cases, std::string case_id, std::string evidence_id,
           const v1::GrantedItem& item)
      : cases_(cases),
        case_id_(std::move(case_id)),
        evidence_id_(std::move(evidence_id)),
        item_(item) {}

  // One message of the stream: the item first, then data, then the receipt.
  absl::Status Take(const v1::FetchEvidenceChunk& msg) {
    if (first_ != msg.has_item() || receipt_.has_value() ||
        msg.data().size() > kEvidenceChunkSize) {
      return absl::DataLossError("the holder's stream is malformed");
    }
    first_ = false;
    if (msg.has_item() && msg.item().sha256() != item_.sha256()) {
      return absl::DataLossError(
          "digest mismatch: the holder sends the item with another SHA-256 than its grant");
    }
    if (msg.has_item() && msg.item().size() != item_.size()) {
      return absl::DataLossError("the holder sends the item with another size than its grant");
    }
    if (msg.has_receipt()) receipt_ = msg.receipt();
    size_ += msg.data().size();
    if (size_ > item_.size()) {
      return absl::DataLossError("the holder sent more than the granted item's size");
    }
    hasher_.Update(msg.data());
    pending_ += msg.data();
    while (pending_.size() >= kEvidenceChunkSize) {
      if (auto st = cases_->StageEvidenceChunk(case_id_, evidence_id_, chunk_++,
                                               pending_.substr(0, kEvidenceChunkSize));
          !st.ok()) {
        return st;
      }
      pending_.erase(0, kEvidenceChunkSize);
    }
    return absl::OkStatus();
  }

  // The stream ended: the rest is staged, and size and digest must match.
  absl::Status Finish() {
    if (!pending_.empty() || chunk_ == 0) {
      if (auto st = cases_->StageEvidenceChunk(case_id_, evidence_id_, chunk_++, pending_);
          !st.ok()) {
        return st;
      }
    }
    if (size_ != item_.size() || DigestBytes(hasher_.Finish()) != item_.sha256()) {
      return absl::DataLossError(
          absl::StrCat("digest mismatch: what was sent for evidence ", item_.item_id(),
                       " does not match the SHA-256 its grant records; nothing was kept"));
    }
    return absl::OkStatus();
  }

  const std::optional<v1::FetchReceipt>& receipt() const { return receipt_; }

 private:
  CaseStore* cases_;
  const std::string case_id_, evidence_id_;
  const v1::GrantedItem item_;
  Sha256Hasher hasher_;
  std::string pending_;
  uint64_t size_ = 0;
  uint32_t chunk_ = 0;
  bool first_ = true;
  std::optional<v1::FetchReceipt> receipt_;
};

}  // namespace

EvidenceRequests::EvidenceRequests(const v1::NodeConfig& config,
                                   std::shared_ptr<IdentityResolver> identity, Exchange* exchange,
                                   CaseStore* cases, AccessLog* log, rocksdb::DB* db,
                                   rocksdb::ColumnFamilyHandle* family, const Clock* clock)
    : config_(config),
      identity_(std::move(identity)),
      exchange_(exchange),
      cases_(cases),
      log_(log),
      db_(db),
      family_(family),
      clock_(clock),
      fetches_(std::make_unique<Executor>("evidence-fetch", 2)) {}

EvidenceRequests::~EvidenceRequests() { Stop(); }

void EvidenceRequests::Start() {
  absl::MutexLock l(&mu_);
  if (started_) return;
  started_ = true;
  sweeper_ = std::thread([this] { SweepLoop(); });
}

void EvidenceRequests::Stop() {
  {
    absl::MutexLock l(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (sweeper_.joinable()) sweeper_.join();
  fetches_.reset();  // runs what is queued, then joins
}

void EvidenceRequests::SweepLoop() {
  while (true) {
    // At start (a deadline may have passed while the node was down), then every minute.
    if (absl::Status st = SweepDeadlines(); !st.ok()) {
      log::Warn("evidence.sweep_failed", {{"error", st.message()}});
    }
    {
      absl::MutexLock l(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Minutes(1))) return;
    }
  }
}

// ---- Records ------------------------------------------------------------------

absl::StatusOr<EvidenceRequests::Found> EvidenceRequests::Read(const std::string& key) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), family_, key, &value);
  if (s.IsNotFound()) return absl::NotFoundError("no such evidence request");
  if (!s.ok()) return FromRocksStatus(s, "reading evidence requests");
  Found f{key, {}};
  if (!f.record.ParseFromString(value)) {
    return absl::DataLossError(absl::StrCat("evidence request record ", key, " is malformed"));
  }
  return f;
}

absl::StatusOr<std::vector<EvidenceRequests::Found>> EvidenceRequests::Scan(
    const std::string& prefix) const {
  std::vector<Found> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), family_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    Found f{it->key().ToString(), {}};
    if (!f.record.ParseFromString(it->value().ToString())) {
      return absl::DataLossError(absl::StrCat("evidence request record ", f.key, " is malformed"));
    }
    out.push_back(std::move(f));
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "reading evidence requests");
  return out;
}

absl::StatusOr<EvidenceRequests::Found> EvidenceRequests::FindReceived(
    const std::string& request_id, const std::string& requester) const {
  if (!requester.empty()) {
    auto f = Read(InKey(requester, request_id));
    if (absl::IsNotFound(f.status())) {
      return absl::NotFoundError(absl::StrCat("this node received no evidence request ",
                                              IdInMessage(request_id), " from ", requester));
    }
    return f;
  }
  auto all = Scan("in/");
  if (!all.ok()) return all.status();
  std::vector<Found> hits;
  std::vector<std::string> orgs;
  for (auto& f : *all) {
    if (f.record.summary().request_id() != request_id) continue;
    orgs.push_back(f.record.summary().peer_org());
    hits.push_back(std::move(f));
  }
  if (hits.empty()) {
    return absl::NotFoundError(
        absl::StrCat("this node received no evidence request ", IdInMessage(request_id)));
  }
  if (hits.size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("evidence request ", request_id, " came from more than one org (",
                     absl::StrJoin(orgs, ", "), "): say which with --from"));
  }
  return std::move(hits.front());
}

absl::StatusOr<EvidenceRequests::Found> EvidenceRequests::FindAny(const std::string& request_id,
                                                                  const std::string& peer) const {
  auto out = Read(OutKey(request_id));
  if (out.ok() && (peer.empty() || out->record.summary().peer_org() == peer)) return out;
  if (!out.ok() && !absl::IsNotFound(out.status())) return out.status();
  return FindReceived(request_id, peer);
}

void EvidenceRequests::Put(ledger::Mutation* batch, const Found& f) const {
  batch->Put(kEvidenceRequestsFamily, f.key, f.record.SerializeAsString());
}

absl::StatusOr<std::string> EvidenceRequests::Seal(const Found& f, const std::string& what,
                                                   const std::string& text) const {
  return cases_->SealForCase(f.record.summary().case_id(), absl::StrCat("evreq/", f.key, "/", what),
                             text);
}

absl::StatusOr<std::string> EvidenceRequests::Open(const Found& f, const std::string& what,
                                                   const std::string& sealed) const {
  if (sealed.empty()) return std::string();
  return cases_->OpenForCase(f.record.summary().case_id(), absl::StrCat("evreq/", f.key, "/", what),
                             sealed);
}

absl::StatusOr<v1::EvidenceDecision> EvidenceRequests::OpenDecision(const Found& f) const {
  auto opened = Open(f, "decision", f.record.sealed_decision());
  if (!opened.ok()) return opened.status();
  v1::EvidenceDecision d;
  if (!d.ParseFromString(*opened)) return absl::DataLossError("a sealed decision is malformed");
  return d;
}

absl::Status EvidenceRequests::RecordDecision(Found* f, const v1::EvidenceDecision& d) const {
  v1::EvidenceRequestSummary* s = f->record.mutable_summary();
  s->set_state(d.approved() ? v1::EVIDENCE_REQUEST_STATE_APPROVED
                            : v1::EVIDENCE_REQUEST_STATE_DENIED);
  s->set_grant_id(d.grant_id());
  s->set_expires_at(d.expires_at());
  s->set_max_fetches(d.max_fetches());
  s->set_reason(d.reason());
  s->set_decided_by(d.decided_by());
  s->clear_conditions();
  s->clear_granted();
  // File names and media types can name the worker: only ids, sizes and
  // digests stay outside the seal.
  for (const auto& item : d.items()) {
    v1::GrantedItem* g = s->add_granted();
    g->set_item_id(item.item_id());
    g->set_size(item.size());
    g->set_sha256(item.sha256());
  }
  v1::EvidenceDecision sealed;
  *sealed.mutable_conditions() = d.conditions();
  *sealed.mutable_items() = d.items();
  auto bytes = Seal(*f, "decision", sealed.SerializeAsString());
  if (!bytes.ok()) return bytes.status();
  f->record.set_sealed_decision(*bytes);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<v1::EvidenceRequestSummary>> EvidenceRequests::List() {
  // A request undecided past its deadline is recorded as such before it is shown.
  if (absl::Status st = SweepDeadlines(); !st.ok()) return st;
  std::vector<v1::EvidenceRequestSummary> out;
  const absl::Time now = Now();
  for (const char* prefix : {"out/", "in/"}) {
    auto found = Scan(prefix);
    if (!found.ok()) return found.status();
    for (auto& f : *found) {
      v1::EvidenceRequestSummary s = f.record.summary();
      s.set_overdue(Undecided(s) && absl::FromUnixSeconds(f.record.deadline_unix()) < now);
      out.push_back(std::move(s));
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    if (a.urgent() != b.urgent()) return a.urgent();
    if (a.deadline() != b.deadline()) return a.deadline() < b.deadline();
    return a.request_id() < b.request_id();
  });
  return out;
}

absl::StatusOr<v1::EvidenceRequestDetail> EvidenceRequests::Get(const std::string& request_id,
                                                                const std::string& peer_org,
                                                                v1::AccessEvent* ev) const {
  auto f = FindAny(request_id, peer_org);
  if (!f.ok()) return f.status();
  ev->set_case_id(f->record.summary().case_id());
  ev->set_peer_org(f->record.summary().peer_org());
  v1::EvidenceRequestDetail d;
  *d.mutable_summary() = f->record.summary();
  d.mutable_summary()->set_overdue(Undecided(d.summary()) &&
                                   absl::FromUnixSeconds(f->record.deadline_unix()) < Now());
  auto basis = Open(*f, "basis", f->record.sealed_legal_basis());
  if (!basis.ok()) return basis.status();
  d.set_legal_basis(*basis);
  auto decision = OpenDecision(*f);
  if (!decision.ok()) return decision.status();
  *d.mutable_summary()->mutable_conditions() = decision->conditions();
  if (decision->items_size() > 0) *d.mutable_summary()->mutable_granted() = decision->items();
  return d;
}

// ---- Requester: the request ----------------------------------------------------

absl::StatusOr<v1::ReferralLink> EvidenceRequests::LinkWith(const v1::Case& c,
                                                            const std::string& holder) const {
  for (const auto& l : c.referrals()) {
    if (l.peer_org() != holder) continue;
    if (l.state() == v1::REFERRAL_STATE_FAILED || l.state() == v1::REFERRAL_STATE_DECLINED) {
      continue;
    }
    return l;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "case ", c.id(), " has no referral exchanged with ", holder,
      ": evidence can be requested only on a case this org referred to, or received from, the "
      "holder"));
}

absl::StatusOr<v1::EvidenceRequest> EvidenceRequests::RequestBody(
    const Principal& caller, const v1::RequestEvidenceRequest& req) const {
  if (auto st = ValidateIdentifier("the holder", req.holder_org()); !st.ok()) return st;
  if (req.holder_org() == config_.org()) {
    return absl::InvalidArgumentError("the holder is this org: read the evidence directly");
  }
  if (auto st = ValidateIdentifier("the case id", req.case_id()); !st.ok()) return st;
  if (auto st = ValidateIdentifier("the agreement", req.agreement()); !st.ok()) return st;
  auto roster = identity_->roster();
  if (FindMember(*roster, req.holder_org()) == nullptr) {
    return absl::NotFoundError(
        absl::StrCat("the holder \"", req.holder_org(), "\" is not a member of the federation"));
  }
  if (auto st = CheckEvidenceAgreement(*roster, req.agreement(), config_.org(), req.holder_org(),
                                       req.purpose());
      !st.ok()) {
    return st;
  }
  v1::EvidenceRequest body;
  body.set_all(req.all());
  for (const auto& id : req.item_ids()) body.add_item_ids(id);
  body.set_legal_basis(req.legal_basis());
  auto deadline = RequestDeadline(req.deadline(), req.urgent(), Now());
  if (!deadline.ok()) return deadline.status();
  body.set_deadline(Rfc3339(*deadline));
  body.set_urgent(req.urgent());
  body.set_requested_by(caller.Name());
  body.set_requester_role(v1::ROLE_PROSECUTOR);
  body.set_request_id(NewId("ER-"));
  body.set_referral_id("REF-000000000000");  // the caller's link, once the case is read
  if (auto st = ValidateEvidenceRequestBody(body, config_.org()); !st.ok()) return st;
  return body;
}

absl::StatusOr<EvidenceRequests::Found> EvidenceRequests::RecordOf(
    const std::string& key, const v1::EnvelopePayload& p, const std::string& case_id) const {
  const v1::EvidenceRequest& r = p.evidence_request();
  const bool outgoing = p.sender_org() == config_.org();
  Found f{key, {}};
  v1::EvidenceRequestSummary* s = f.record.mutable_summary();
  s->set_request_id(r.request_id());
  s->set_outgoing(outgoing);
  s->set_peer_org(outgoing ? p.recipient_org() : p.sender_org());
  s->set_case_id(case_id);
  s->set_agreement(p.agreement());
  s->set_purpose(p.purpose());
  s->set_deadline(r.deadline());
  s->set_urgent(r.urgent());
  s->set_state(v1::EVIDENCE_REQUEST_STATE_PENDING);
  s->set_requested_at(Rfc3339(Now()));
  s->set_requested_by(r.requested_by());
  *s->mutable_item_ids() = r.item_ids();
  s->set_all(r.all());
  f.record.set_referral_id(r.referral_id());
  f.record.set_envelope_id(p.envelope_id());
  auto deadline = ParseRfc3339("the deadline", r.deadline());
  if (!deadline.ok()) return deadline.status();
  f.record.set_deadline_unix(absl::ToUnixSeconds(*deadline));
  auto basis = Seal(f, "basis", r.legal_basis());
  if (!basis.ok()) return basis.status();
  f.record.set_sealed_legal_basis(*basis);
  return f;
}

absl::StatusOr<EvidenceRequests::Change> EvidenceRequests::PrepareRequest(
    const Principal& caller, const v1::RequestEvidenceRequest& req,
    v1::RequestEvidenceResponse* resp, v1::AccessEvent* ev) {
  if (FindMember(*identity_->roster(), req.holder_org()) != nullptr)
    ev->set_peer_org(req.holder_org());
  auto body = RequestBody(caller, req);
  if (!body.ok()) return body.status();
  auto lock = CaseLock::Acquire(cases_, req.case_id());
  if (!lock.ok()) return Busy(req.case_id());
  auto c = cases_->Get(req.case_id());
  if (!c.ok()) return c.status();
  auto link = LinkWith(*c, req.holder_org());
  if (!link.ok()) return link.status();
  body->set_referral_id(link->referral_id());
  v1::EnvelopePayload payload =
      exchange_->NewPayload(req.holder_org(), req.agreement(), req.purpose());
  *payload.mutable_evidence_request() = *body;
  Change change{std::make_unique<ledger::Mutation>(), *std::move(lock), {}};
  auto queued = exchange_->Enqueue(change.batch.get(), payload, kRequestKind, c->id(), "");
  if (!queued.ok()) return queued.status();
  auto f = RecordOf(OutKey(body->request_id()), payload, c->id());
  if (!f.ok()) return f.status();
  Put(change.batch.get(), *f);
  NameRequest("evidence.request", f->record.summary(), ev);
  resp->set_request_id(body->request_id());
  resp->set_envelope_id(payload.envelope_id());
  resp->set_deadline(body->deadline());
  return change;
}

// ---- Receiving ------------------------------------------------------------------

bool EvidenceRequests::Handles(const v1::EnvelopePayload& p) {
  return p.has_evidence_request() || p.has_evidence_decision();
}

Exchange::Applied EvidenceRequests::Apply(const v1::EnvelopePayload& p) {
  return p.has_evidence_request() ? ApplyRequest(p) : ApplyDecision(p);
}

absl::StatusOr<std::vector<v1::GrantedItem>> EvidenceRequests::HeldItems(
    const v1::Case& c, bool all, const std::vector<std::string>& ids) const {
  std::vector<v1::GrantedItem> out;
  auto held = [&](const v1::EvidenceItem& e) {
    return e.size() == 0 || cases_->ReadEvidenceChunk(c.id(), e.id(), 0).ok();
  };
  auto granted = [](const v1::EvidenceItem& e) {
    v1::GrantedItem g;
    g.set_item_id(e.id());
    g.set_file_name(e.file_name());
    g.set_media_type(e.media_type());
    g.set_size(e.size());
    g.set_sha256(e.sha256());
    return g;
  };
  for (const auto& e : c.evidence()) {
    if (all && held(e)) out.push_back(granted(e));
  }
  for (const auto& id : ids) {
    auto it = std::find_if(c.evidence().begin(), c.evidence().end(),
                           [&](const v1::EvidenceItem& e) { return e.id() == id; });
    if (it == c.evidence().end() || !held(*it)) {
      // Permanent for the sender's outbox: the request fails rather than waits.
      return absl::FailedPreconditionError(
          absl::StrCat("the case holds no evidence ", IdInMessage(id), " to give"));
    }
    out.push_back(granted(*it));
  }
  if (out.empty()) return absl::FailedPreconditionError("the case holds no evidence to give");
  return out;
}

absl::StatusOr<EvidenceRequests::Found> EvidenceRequests::ReceivedRecord(
    const v1::EnvelopePayload& p, const v1::Case& c, const std::string& key) {
  const v1::EvidenceRequest& r = p.evidence_request();
  auto items = HeldItems(c, r.all(), {r.item_ids().begin(), r.item_ids().end()});
  if (!items.ok()) return items.status();
  return RecordOf(key, p, c.id());
}

Exchange::Applied EvidenceRequests::ApplyRequest(const v1::EnvelopePayload& p) {
  Exchange::Applied out;
  const v1::EvidenceRequest& r = p.evidence_request();
  if (r.requester_role() != v1::ROLE_PROSECUTOR) {
    return std::move(out).Refused(absl::PermissionDeniedError(
        "evidence may be requested only by a prosecutor (requester_role ROLE_PROSECUTOR)"));
  }
  if (auto st = CheckEvidenceAgreement(*identity_->roster(), p.agreement(), p.sender_org(),
                                       config_.org(), p.purpose());
      !st.ok()) {
    return std::move(out).Refused(st);
  }
  auto id = exchange_->CaseForReferral(p.sender_org(), r.referral_id());
  if (!id.ok()) {
    return std::move(out).Refused(
        absl::IsNotFound(id.status())
            ? absl::PermissionDeniedError(
                  absl::StrCat(p.sender_org(), " is not party to referral ", r.referral_id()))
            : id.status());
  }
  out.case_id = *id;
  auto lock = CaseLock::Acquire(cases_, *id);
  if (!lock.ok()) return std::move(out).Refused(Busy(*id));
  out.lock = *std::move(lock);
  const std::string key = InKey(p.sender_org(), r.request_id());
  {
    absl::MutexLock l(&mu_);
    if (!receiving_.insert(key).second) return std::move(out).Refused(Busy(*id));
  }
  out.claim = std::shared_ptr<const void>(nullptr, [this, key](const void*) {
    absl::MutexLock l(&mu_);
    receiving_.erase(key);
  });
  if (Read(key).ok()) {
    return std::move(out).Refused(absl::AlreadyExistsError(absl::StrCat(
        "evidence request ", r.request_id(), " from ", p.sender_org(), " was already received")));
  }
  auto c = cases_->Get(*id);
  if (!c.ok()) return std::move(out).Refused(c.status());
  auto f = ReceivedRecord(p, *c, key);
  if (!f.ok()) return std::move(out).Refused(f.status());
  out.change = std::make_unique<ledger::Mutation>();
  Put(out.change.get(), *f);
  v1::AccessEvent ev = RequestEvent("evidence.requested", f->record.summary());
  SetNodeActor(p.sender_org(), &ev);
  ev.set_reason(r.urgent() ? "urgent; answer due " + r.deadline() : "answer due " + r.deadline());
  out.also_record.push_back(std::move(ev));
  return out;
}

Exchange::Applied EvidenceRequests::ApplyDecision(const v1::EnvelopePayload& p) {
  Exchange::Applied out;
  const v1::EvidenceDecision& d = p.evidence_decision();
  auto f = Read(OutKey(d.request_id()));
  if (!f.ok() || f->record.summary().peer_org() != p.sender_org()) {
    return std::move(out).Refused(
        f.ok() || absl::IsNotFound(f.status())
            ? absl::PermissionDeniedError(absl::StrCat("this node sent ", p.sender_org(),
                                                       " no evidence request ", d.request_id()))
            : f.status());
  }
  v1::EvidenceRequestSummary* s = f->record.mutable_summary();
  out.case_id = s->case_id();
  auto lock = CaseLock::Acquire(cases_, s->case_id());
  if (!lock.ok()) return std::move(out).Refused(Busy(s->case_id()));
  out.lock = *std::move(lock);
  if (auto again = Read(f->key); again.ok()) *f = *std::move(again);  // under the lock now
  s = f->record.mutable_summary();
  if (!Undecided(*s)) {
    return std::move(out).Refused(absl::FailedPreconditionError(
        absl::StrCat("evidence request ", d.request_id(), " was already decided")));
  }
  for (const auto& item : d.items()) {
    const bool asked = s->all() || std::find(s->item_ids().begin(), s->item_ids().end(),
                                             item.item_id()) != s->item_ids().end();
    if (!asked) {
      return std::move(out).Refused(absl::PermissionDeniedError(
          absl::StrCat("the grant names evidence ", item.item_id(), ", which was not asked for")));
    }
  }
  if (auto st = RecordDecision(&*f, d); !st.ok()) return std::move(out).Refused(st);
  out.change = std::make_unique<ledger::Mutation>();
  Put(out.change.get(), *f);
  v1::AccessEvent ev = RequestEvent("evidence.decision", *s);
  SetNodeActor(p.sender_org(), &ev);
  ev.set_reason(DecisionReason(*s));
  out.also_record.push_back(std::move(ev));
  return out;
}

// ---- Holder: the decision -----------------------------------------------------

absl::Status EvidenceRequests::Grant(const v1::DecideEvidenceRequest& req, const v1::Case& c,
                                     Found* f, v1::EvidenceDecision* d) const {
  v1::EvidenceRequestSummary* s = f->record.mutable_summary();
  std::vector<std::string> ids(req.item_ids().begin(), req.item_ids().end());
  for (const auto& id : ids) {
    const bool asked = s->all() || std::find(s->item_ids().begin(), s->item_ids().end(), id) !=
                                       s->item_ids().end();
    if (!asked) {
      return absl::InvalidArgumentError(
          absl::StrCat("evidence ", IdInMessage(id),
                       " was not asked for: approve only items the request names"));
    }
  }
  if (ids.empty() && !s->all()) ids.assign(s->item_ids().begin(), s->item_ids().end());
  auto items = HeldItems(c, ids.empty(), ids);
  if (!items.ok()) return items.status();
  const absl::Time now = Now();
  absl::Time until = now + kDefaultGrantTime;
  if (!req.until().empty()) {
    auto t = ParseRfc3339("--until", req.until());
    if (!t.ok()) return t.status();
    if (*t <= now || *t > now + kMaxGrantTime) {
      return absl::InvalidArgumentError("--until must be in the future and within a year");
    }
    until = *t;
  }
  const uint32_t max = req.max_fetches() == 0 ? kDefaultMaxFetches : req.max_fetches();
  if (max > kMaxMaxFetches) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-fetches is at most ", kMaxMaxFetches, " per item"));
  }
  if (req.conditions_size() > kMaxConditions) {
    return absl::InvalidArgumentError(
        absl::StrCat("a grant carries at most ", kMaxConditions, " conditions"));
  }
  d->add_conditions(SpecialityCondition(s->purpose(), s->agreement()));
  for (const auto& cond : req.conditions()) {
    if (auto st = CheckFreeText("a condition", cond, kMaxConditionBytes); !st.ok()) return st;
    d->add_conditions(cond);
  }
  d->set_approved(true);
  d->set_grant_id(NewId("G-"));
  for (auto& i : *items) *d->add_items() = std::move(i);
  d->set_expires_at(Rfc3339(until));
  d->set_max_fetches(max);
  f->record.set_expires_unix(absl::ToUnixSeconds(until));
  return absl::OkStatus();
}

absl::StatusOr<EvidenceRequests::Change> EvidenceRequests::PrepareDecision(
    const Principal& caller, const v1::DecideEvidenceRequest& req, v1::DecideEvidenceResponse* resp,
    v1::AccessEvent* ev) {
  if (auto st = ValidateIdentifier("the request id", req.request_id()); !st.ok()) return st;
  if (auto st = ValidateOptionalIdentifier("--from", req.requester_org()); !st.ok()) return st;
  if (!req.approve() && !IsRuleCode(req.reason())) {
    return absl::InvalidArgumentError(
        "refusing needs --reason with a rule's code such as insufficient-basis (lower-case "
        "letters, digits and -), not free text");
  }
  auto f = FindReceived(req.request_id(), req.requester_org());
  if (!f.ok()) return f.status();
  v1::EvidenceRequestSummary* s = f->record.mutable_summary();
  ev->set_case_id(s->case_id());
  ev->set_peer_org(s->peer_org());
  auto lock = CaseLock::Acquire(cases_, s->case_id());
  if (!lock.ok()) return Busy(s->case_id());
  if (auto again = Read(f->key); again.ok()) *f = *std::move(again);
  s = f->record.mutable_summary();
  if (s->state() != v1::EVIDENCE_REQUEST_STATE_PENDING) {
    return absl::FailedPreconditionError(
        absl::StrCat("evidence request ", req.request_id(), " was already decided (",
                     v1::EvidenceRequestState_Name(s->state()), ")"));
  }
  auto c = cases_->Get(s->case_id());
  if (!c.ok()) return c.status();
  v1::EvidenceDecision d;
  d.set_request_id(s->request_id());
  d.set_decided_by(caller.Name());
  if (req.approve()) {
    if (auto st = Grant(req, *c, &*f, &d); !st.ok()) return st;
  } else {
    d.set_reason(req.reason());
  }
  v1::EnvelopePayload payload = exchange_->NewPayload(s->peer_org(), s->agreement(), s->purpose());
  *payload.mutable_evidence_decision() = d;
  Change change{std::make_unique<ledger::Mutation>(), *std::move(lock), {}};
  auto queued = exchange_->Enqueue(change.batch.get(), payload, kDecisionKind, c->id(), "");
  if (!queued.ok()) return queued.status();
  if (auto st = RecordDecision(&*f, d); !st.ok()) return st;
  Put(change.batch.get(), *f);
  if (d.approved()) change.batch->Put(kEvidenceRequestsFamily, GrantKey(d.grant_id()), f->key);
  NameRequest("evidence.decide", *s, ev);
  ev->set_reason(DecisionReason(*s));
  for (const auto& item : d.items()) {
    v1::AccessEvent g = *ev;
    g.set_action("evidence.grant");
    g.set_resource_kind("evidence");
    g.set_resource_id(item.item_id());
    g.set_payload_sha256(item.sha256());
    g.set_reason(absl::StrCat("grant ", d.grant_id(), " to ", s->peer_org(), " under request ",
                              s->request_id(), " until ", d.expires_at(), ", at most ",
                              d.max_fetches(), " fetch(es)"));
    change.events.push_back(std::move(g));
  }
  resp->set_grant_id(d.grant_id());
  resp->set_envelope_id(payload.envelope_id());
  return change;
}

// ---- Holder: serving a fetch ---------------------------------------------------

absl::StatusOr<EvidenceRequests::Serving> EvidenceRequests::PrepareServe(
    const Principal& caller, const v1::FetchEvidenceRequest& req, v1::AccessEvent* ev) {
  if (auto st = ValidateIdentifier("grant_id", req.grant_id()); !st.ok()) return st;
  if (auto st = ValidateIdentifier("item_id", req.item_id()); !st.ok()) return st;
  const absl::Status not_yours = absl::PermissionDeniedError(
      absl::StrCat("grant ", req.grant_id(), " was not made to ", caller.org));
  std::string key;
  rocksdb::Status rs = db_->Get(rocksdb::ReadOptions(), family_, GrantKey(req.grant_id()), &key);
  if (rs.IsNotFound()) return not_yours;
  auto f = rs.ok() ? Read(key) : FromRocksStatus(rs, "reading grants");
  if (!f.ok()) return f.status();
  v1::EvidenceRequestSummary* s = f->record.mutable_summary();
  if (s->peer_org() != caller.org) return not_yours;
  ev->set_case_id(s->case_id());
  ev->set_agreement(s->agreement());
  ev->set_purpose(s->purpose());
  auto lock = CaseLock::Acquire(cases_, s->case_id());
  if (!lock.ok()) return Busy(s->case_id());
  if (auto again = Read(key); again.ok()) *f = *std::move(again);
  s = f->record.mutable_summary();
  auto item = std::find_if(s->granted().begin(), s->granted().end(),
                           [&](const v1::GrantedItem& g) { return g.item_id() == req.item_id(); });
  if (item == s->granted().end()) {
    return absl::PermissionDeniedError(
        absl::StrCat("grant ", req.grant_id(), " does not cover evidence ", req.item_id()));
  }
  if (cases_->IsErased(s->case_id())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the case evidence ", req.item_id(), " belonged to was erased; it can no longer be given"));
  }
  if (Now() >= absl::FromUnixSeconds(f->record.expires_unix())) {
    return absl::PermissionDeniedError(absl::StrCat("grant ", req.grant_id(), " expired at ",
                                                    s->expires_at(),
                                                    "; ask the holder for a new grant"));
  }
  const uint32_t done = (*f->record.mutable_fetches())[req.item_id()];
  if (done >= s->max_fetches()) {
    return absl::PermissionDeniedError(absl::StrCat(
        "grant ", req.grant_id(), " allows ", s->max_fetches(), " fetch(es) of evidence ",
        req.item_id(), " and all have been made; ask the holder for a new grant"));
  }
  Serving out;
  out.item = *item;
  ev->set_payload_sha256(item->sha256());
  if (auto st = ReadIntact(s->case_id(), *item, &out.chunks); !st.ok()) return st;
  (*f->record.mutable_fetches())[req.item_id()] = done + 1;
  s->set_fetches(s->fetches() + 1);
  out.change = Change{std::make_unique<ledger::Mutation>(), *std::move(lock), {}};
  Put(out.change.batch.get(), *f);
  ev->set_reason(absl::StrCat("grant ", req.grant_id(), " request ", s->request_id(), ": fetch ",
                              done + 1, " of ", s->max_fetches()));
  out.receipt = ReceiptBody(*s, *item, done + 1, caller.org);
  return out;
}

v1::FetchReceiptBody EvidenceRequests::ReceiptBody(const v1::EvidenceRequestSummary& s,
                                                   const v1::GrantedItem& item, uint32_t number,
                                                   const std::string& requester) const {
  v1::FetchReceiptBody r;
  r.set_grant_id(s.grant_id());
  r.set_request_id(s.request_id());
  r.set_item_id(item.item_id());
  r.set_sha256(item.sha256());
  r.set_fetch_number(number);
  r.set_holder_org(config_.org());
  r.set_requester_org(requester);
  r.set_time_unix(absl::ToUnixSeconds(Now()));
  return r;
}

absl::Status EvidenceRequests::ReadIntact(const std::string& case_id, const v1::GrantedItem& item,
                                          std::vector<std::string>* chunks) const {
  Sha256Hasher hasher;
  uint64_t size = 0;
  const uint64_t count =
      std::max<uint64_t>(1, (item.size() + kEvidenceChunkSize - 1) / kEvidenceChunkSize);
  for (uint32_t i = 0; i < count; ++i) {
    auto chunk = cases_->ReadEvidenceChunk(case_id, item.item_id(), i);
    if (!chunk.ok()) {
      return absl::DataLossError(absl::StrCat("evidence ", item.item_id(),
                                              " cannot be read intact (chunk ", i,
                                              "): digest mismatch; nothing was sent"));
    }
    size += chunk->size();
    hasher.Update(*chunk);
    chunks->push_back(*std::move(chunk));
  }
  if (size != item.size() || DigestBytes(hasher.Finish()) != item.sha256()) {
    return absl::DataLossError(absl::StrCat("evidence ", item.item_id(),
                                            " does not match the SHA-256 recorded at upload: "
                                            "digest mismatch; nothing was sent"));
  }
  return absl::OkStatus();
}

void EvidenceRequests::WaitForStreams() const {
  while (live_streams_.load() > 0) absl::SleepFor(absl::Milliseconds(1));
}

absl::StatusOr<v1::FetchReceipt> EvidenceRequests::SignFetchReceipt(
    const v1::FetchReceiptBody& body) const {
  v1::FetchReceipt r;
  r.set_body(body.SerializeAsString());
  auto signer = exchange_->CurrentSigner();
  r.set_key_id(signer.second);
  auto sig = signer.first->Signature(absl::StrCat(kFetchReceiptContext, r.body()));
  if (!sig.ok()) return sig.status();
  r.set_signature(*std::move(sig));
  return r;
}

// ---- Requester: fetching -------------------------------------------------------

void EvidenceRequests::FetchGranted(
    const Principal& caller, const std::string& request_id, v1::AccessEvent ev,
    std::function<void(absl::StatusOr<v1::FetchGrantedResponse>)> done) {
  fetches_->Post([this, caller, request_id, ev, done = std::move(done)]() mutable {
    auto f = Read(OutKey(request_id));
    if (!f.ok()) {
      done(absl::IsNotFound(f.status())
               ? absl::NotFoundError(
                     absl::StrCat("this node sent no evidence request ", IdInMessage(request_id)))
               : f.status());
      return;
    }
    const v1::EvidenceRequestSummary& s = f->record.summary();
    if (s.state() != v1::EVIDENCE_REQUEST_STATE_APPROVED) {
      done(absl::FailedPreconditionError(absl::StrCat(
          "evidence request ", request_id, " is ", v1::EvidenceRequestState_Name(s.state()),
          ": only an approved request can be fetched")));
      return;
    }
    auto decision = OpenDecision(*f);
    if (!decision.ok()) {
      done(decision.status());
      return;
    }
    v1::FetchGrantedResponse resp;
    resp.set_case_id(s.case_id());
    for (const auto& item : decision->items()) {
      ev.set_actor_org(caller.org);
      auto fetched = FetchItem(*f, item, ev);
      if (!fetched.ok()) {
        done(fetched.status());
        return;
      }
      *resp.add_items() = *std::move(fetched);
    }
    done(std::move(resp));
  });
}

absl::StatusOr<v1::FetchedItem> EvidenceRequests::FetchItem(const Found& f,
                                                            const v1::GrantedItem& item,
                                                            v1::AccessEvent ev) {
  const v1::EvidenceRequestSummary& s = f.record.summary();
  ev.set_action("evidence.fetch");
  ev.set_resource_kind("evidence");
  ev.set_resource_id(item.item_id());
  ev.set_case_id(s.case_id());
  ev.set_peer_org(s.peer_org());
  ev.set_agreement(s.agreement());
  ev.set_purpose(s.purpose());
  ev.set_payload_sha256(item.sha256());
  const std::string evidence_id = NewId("E-");
  auto fail = [&](const absl::Status& st) -> absl::Status {
    cases_->DiscardStaged(s.case_id(), evidence_id).IgnoreError();
    v1::AccessEvent refused = ev;
    refused.set_outcome(absl::IsPermissionDenied(st) ? v1::ACCESS_OUTCOME_DENIED
                                                     : v1::ACCESS_OUTCOME_ERROR);
    refused.set_reason(
        absl::StrCat("from ", s.peer_org(), " under grant ", s.grant_id(), ": ", st.message()));
    if (auto rec = log_->RecordRefusalSync(refused); !rec.ok()) return rec;
    return st;
  };
  if (auto st = cases_->BeginStaging(s.case_id(), evidence_id); !st.ok()) return fail(st);
  auto receipt = Download(f, item, s.case_id(), evidence_id);
  if (!receipt.ok()) return fail(receipt.status());
  v1::FetchedItem out;
  out.set_holder_item_id(item.item_id());
  auto index = StoreFetched(f, item, evidence_id, *receipt, ev, out.mutable_item());
  if (!index.ok()) return fail(index.status());
  out.set_ledger_index(*index);
  return out;
}

absl::StatusOr<v1::FetchReceipt> EvidenceRequests::Download(const Found& f,
                                                            const v1::GrantedItem& item,
                                                            const std::string& case_id,
                                                            const std::string& evidence_id) {
  const v1::EvidenceRequestSummary& s = f.record.summary();
  auto stub = exchange_->PeerStub(s.peer_org());
  if (stub == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(s.peer_org(), " is not in the roster in force"));
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  v1::FetchEvidenceRequest req;
  req.set_grant_id(s.grant_id());
  req.set_item_id(item.item_id());
  auto reader = stub->FetchEvidence(&ctx, req);
  Incoming in(cases_, case_id, evidence_id, item);
  v1::FetchEvidenceChunk msg;
  while (reader->Read(&msg)) {
    if (auto st = in.Take(msg); !st.ok()) {
      ctx.TryCancel();
      reader->Finish().ok();
      return st;
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  if (auto st = in.Finish(); !st.ok()) {
    return absl::Status(st.code(), absl::StrCat(st.message(), " (from ", s.peer_org(), ")"));
  }
  const std::optional<v1::FetchReceipt>& receipt = in.receipt();
  if (!receipt.has_value()) return absl::DataLossError("the holder sent no receipt");
  if (auto st = VerifyFetchReceipt(*receipt, item, f); !st.ok()) return st;
  return *receipt;
}

absl::Status EvidenceRequests::VerifyFetchReceipt(const v1::FetchReceipt& receipt,
                                                  const v1::GrantedItem& item,
                                                  const Found& f) const {
  const v1::EvidenceRequestSummary& s = f.record.summary();
  auto body = CheckFetchReceipt(receipt, *identity_->roster(), s.peer_org());
  if (!body.ok()) return body.status();
  if (body->grant_id() != s.grant_id() || body->item_id() != item.item_id() ||
      body->sha256() != item.sha256() || body->requester_org() != config_.org()) {
    return absl::DataLossError("the holder's receipt is for another fetch");
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> EvidenceRequests::StoreFetched(const Found& f, const v1::GrantedItem& item,
                                                        const std::string& evidence_id,
                                                        const v1::FetchReceipt& receipt,
                                                        v1::AccessEvent ev,
                                                        v1::EvidenceItem* stored) {
  const v1::EvidenceRequestSummary& s = f.record.summary();
  auto lock = CaseLock::Acquire(cases_, s.case_id());
  for (int i = 0; !lock.ok() && i < 100; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
    lock = CaseLock::Acquire(cases_, s.case_id());
  }
  if (!lock.ok()) return Busy(s.case_id());
  auto c = cases_->Get(s.case_id());
  if (!c.ok()) return c.status();
  auto record = Read(f.key);
  if (!record.ok()) return record.status();
  auto decision = OpenDecision(*record);
  if (!decision.ok()) return decision.status();
  const auto& conditions = decision->conditions();
  v1::EvidenceItem* e = c->add_evidence();
  e->set_id(evidence_id);
  e->set_file_name(item.file_name());
  e->set_media_type(item.media_type());
  e->set_size(item.size());
  e->set_sha256(item.sha256());
  e->set_added_at(Rfc3339(Now()));
  e->set_added_by(ev.actor_org() + "/" + ev.actor_subject());
  e->set_received_from(s.peer_org());
  e->set_grant_id(s.grant_id());
  e->set_holder_item_id(item.item_id());
  for (const auto& cond : conditions) e->add_conditions(cond);
  e->set_holder_receipt(receipt.SerializeAsString());
  *stored = *e;
  c->set_updated_at(e->added_at());
  auto batch = std::make_unique<ledger::Mutation>();
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) return st;
  cases_->EndStaging(batch.get(), s.case_id(), evidence_id);
  (*record->record.mutable_fetches())[item.item_id()] += 1;
  record->record.mutable_summary()->set_fetches(record->record.summary().fetches() + 1);
  Put(batch.get(), *record);
  ev.set_resource_id(evidence_id);
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_reason(absl::StrCat("from ", s.peer_org(), " evidence ", item.item_id(), " under grant ",
                             s.grant_id(), "; digest checked"));
  return log_->RecordSync({ev}, std::move(batch));
}

// ---- Custody --------------------------------------------------------------------

absl::StatusOr<std::string> EvidenceRequests::CaseOfEvidence(const std::string& evidence_id) const {
  for (const char* action : {"evidence.add", "evidence.fetch", "evidence.grant"}) {
    AccessLog::Query q;
    q.action = action;
    q.limit = 1000;
    while (true) {
      auto hits = log_->Find(q);
      if (!hits.ok()) return hits.status();
      for (const auto& h : *hits) {
        if (h.event.resource_id() == evidence_id && !h.event.case_id().empty()) {
          return h.event.case_id();
        }
      }
      if (hits->size() < q.limit) break;
      q.before_index = hits->back().index;
    }
  }
  return absl::NotFoundError(
      absl::StrCat("this node's ledger names no evidence ", IdInMessage(evidence_id)));
}

absl::StatusOr<v1::CustodyResponse> EvidenceRequests::Custody(
    const std::string& evidence_id) const {
  auto case_id = CaseOfEvidence(evidence_id);
  if (!case_id.ok()) return case_id.status();
  ledger::Ledger* ledger = log_->ledger();
  const ledger::Head head = ledger->head();
  v1::CustodyResponse resp;
  resp.set_evidence_id(evidence_id);
  resp.set_case_id(*case_id);
  resp.set_checkpoint(head.checkpoint);
  resp.set_tree_size(head.size);
  std::string receipt;
  if (auto c = cases_->Get(*case_id); c.ok()) {
    for (const auto& e : c->evidence()) {
      if (e.id() == evidence_id) receipt = e.holder_receipt();
    }
  }
  AccessLog::Query q;
  q.case_id = *case_id;
  q.limit = 1000;
  std::vector<AccessLog::Hit> found;
  while (true) {
    auto hits = log_->Find(q);
    if (!hits.ok()) return hits.status();
    for (auto& h : *hits) {
      if (h.index < head.size && h.event.resource_id() == evidence_id &&
          h.event.resource_kind() == "evidence") {
        found.push_back(std::move(h));
      }
    }
    if (hits->size() < q.limit) break;
    q.before_index = hits->back().index;
  }
  std::reverse(found.begin(), found.end());
  for (const auto& h : found) {
    v1::CustodyEvent* e = resp.add_events();
    e->mutable_event()->set_index(h.index);
    *e->mutable_event()->mutable_event() = h.event;
    e->mutable_event()->set_entry(h.entry);
    auto proof = ledger->InclusionProof(h.index, head.size);
    if (!proof.ok()) return proof.status();
    for (const auto& p : *proof) e->add_inclusion_proof(merkle::ToBytes(p));
    if (h.event.action() == "evidence.fetch" && h.event.outcome() == v1::ACCESS_OUTCOME_ALLOWED &&
        !receipt.empty()) {
      e->mutable_holder_receipt()->ParseFromString(receipt);
    }
  }
  return resp;
}

// ---- Deadlines ------------------------------------------------------------------

absl::Status EvidenceRequests::SweepDeadlines() {
  auto sent = Scan("out/");
  if (!sent.ok()) return sent.status();
  const absl::Time now = Now();
  for (auto& f : *sent) {
    const v1::EvidenceRequestSummary& s = f.record.summary();
    if (s.state() != v1::EVIDENCE_REQUEST_STATE_PENDING ||
        absl::FromUnixSeconds(f.record.deadline_unix()) >= now) {
      continue;
    }
    auto lock = CaseLock::Acquire(cases_, s.case_id());
    if (!lock.ok()) continue;  // the next sweep
    auto again = Read(f.key);
    if (!again.ok()) return again.status();
    if (again->record.summary().state() != v1::EVIDENCE_REQUEST_STATE_PENDING) continue;
    again->record.mutable_summary()->set_state(v1::EVIDENCE_REQUEST_STATE_NO_RESPONSE);
    auto batch = std::make_unique<ledger::Mutation>();
    Put(batch.get(), *again);
    v1::AccessEvent ev = RequestEvent("evidence.no_response", again->record.summary());
    SetNodeActor(config_.org(), &ev);
    ev.set_reason(absl::StrCat("no decision from ", s.peer_org(), " by the deadline ", s.deadline(),
                               s.urgent() ? " (urgent)" : ""));
    auto index = log_->RecordSync({ev}, std::move(batch));
    if (!index.ok()) return index.status();
    log::Warn("evidence.no_response",
              {{"request", s.request_id()}, {"holder", s.peer_org()}, {"deadline", s.deadline()}});
  }
  return absl::OkStatus();
}

}  // namespace corridor
