#include "server/federation/referral_service.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/audit/audited_call.h"
#include "server/common/edge.h"
#include "server/federation/envelope.h"
#include "server/federation/referral_policy.h"

namespace corridor {
namespace {

// The RPC of ReferralService being served, named by the handler that calls
// this (server/auth/rpc.h).
Rpc Referrals(const char* handler = __builtin_FUNCTION()) {
  return Rpc::Served<v1::ReferralService>(handler);
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string NewReferralId() { return "REF-" + absl::AsciiStrToUpper(HexEncode(RandomBytes(6))); }

// The link a received case came in by, or null.
const v1::ReferralLink* IncomingLink(const v1::Case& c) {
  for (const auto& l : c.referrals()) {
    if (!l.outgoing()) return &l;
  }
  return nullptr;
}

// A note in the case's history, by `author` of `org` at `now`.
v1::CaseNote* AddNote(v1::Case* c, absl::Time now, const std::string& org,
                      const std::string& author, const std::string& text) {
  v1::CaseNote* n = c->add_history();
  n->set_time(Rfc3339(now));
  n->set_org(org);
  n->set_author(author);
  n->set_note(text);
  return n;
}

// What a referral request asks, as the referral policy sees it.
ReferralRequest AsPolicyRequest(const v1::ReferCaseRequest& req, const std::string& self_org) {
  return {
      self_org,        req.to_org(), req.agreement(), req.purpose(), req.include_personal_data(),
      req.deidentify()};
}

// The part of case `c` a referral carries: always the corridor, sector and
// parties; the worker and narrative only if not de-identified.
v1::SharedCase SharedCaseOf(const v1::Case& c, bool deidentified) {
  v1::SharedCase shared;
  shared.set_category(c.category());
  shared.set_sector(c.sector());
  shared.set_origin_country(c.origin_country());
  shared.set_destination_country(c.destination_country());
  *shared.mutable_employer() = c.employer();
  *shared.mutable_recruiter() = c.recruiter();
  if (!deidentified) {
    *shared.mutable_worker() = c.worker();
    shared.set_narrative(c.narrative());
  }
  return shared;
}

// Adds the description of each evidence item `ids` names (not its content) to
// `shared`; NotFound if the case has no such item. A node speaks only for its
// own people (docs/federation.md): an item this org received is passed on as
// added by this node.
absl::Status ShareEvidence(const v1::Case& c,
                           const google::protobuf::RepeatedPtrField<std::string>& ids,
                           const std::string& self_org, v1::SharedCase* shared) {
  for (const std::string& eid : ids) {
    bool found = false;
    for (const auto& item : c.evidence()) {
      if (item.id() != eid) continue;
      v1::EvidenceItem* e = shared->add_evidence();
      *e = item;
      if (!IsPrincipalOf(e->added_by(), self_org)) e->set_added_by(self_org + "/node");
      found = true;
    }
    if (!found) {
      return absl::NotFoundError(
          absl::StrCat("case ", c.id(), " has no evidence ", IdInMessage(eid)));
    }
  }
  return absl::OkStatus();
}

// The outgoing link, status and note a referral adds to the referring case.
void LinkReferral(const v1::ReferCaseRequest& req, const std::string& referral_id,
                  bool deidentified, const std::string& author, const std::string& self_org,
                  absl::Time now, v1::Case* c) {
  v1::ReferralLink* link = c->add_referrals();
  link->set_referral_id(referral_id);
  link->set_outgoing(true);
  link->set_peer_org(req.to_org());
  link->set_agreement(req.agreement());
  link->set_purpose(req.purpose());
  link->set_state(v1::REFERRAL_STATE_QUEUED);
  link->set_created_at(Rfc3339(now));
  if (c->status() == v1::CASE_STATUS_OPEN) c->set_status(v1::CASE_STATUS_REFERRED);
  AddNote(c, now, self_org, author,
          absl::StrCat("referred to ", req.to_org(), " for ", req.purpose(),
                       deidentified ? " (de-identified)" : ""));
  c->set_updated_at(link->created_at());
}

// The incoming link of `c` for `referral_id` waiting for a decision, or null.
v1::ReferralLink* PendingIncoming(v1::Case* c, const std::string& referral_id) {
  for (auto& l : *c->mutable_referrals()) {
    if (!l.outgoing() && l.referral_id() == referral_id &&
        l.state() == v1::REFERRAL_STATE_PENDING) {
      return &l;
    }
  }
  return nullptr;
}

// The inbox entry of received case `c`, come in by `in`.
v1::InboxItem InboxItemOf(const v1::StoredCase& stored, const v1::Case& c,
                          const v1::ReferralLink& in) {
  v1::InboxItem item;
  item.set_referral_id(in.referral_id());
  item.set_case_id(c.id());
  item.set_from_org(in.peer_org());
  item.set_agreement(in.agreement());
  item.set_purpose(in.purpose());
  item.set_received_at(in.created_at());
  *item.mutable_summary() = stored.summary();
  item.set_deidentified(c.worker().name().empty());
  return item;
}

// One allowed event per referral viewed, from the call's event; one saying so
// if the inbox is empty.
std::vector<v1::AccessEvent> OneEventPerReferral(v1::AccessEvent ev,
                                                 const std::vector<v1::InboxItem>& items) {
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  std::vector<v1::AccessEvent> events;
  for (const auto& i : items) {
    v1::AccessEvent e = ev;
    e.set_resource_id(i.referral_id());
    e.set_case_id(i.case_id());
    e.set_peer_org(i.from_org());
    events.push_back(std::move(e));
  }
  if (events.empty()) {
    ev.set_reason("inbox empty");
    events.push_back(ev);
  }
  return events;
}

void AnswerOutbox(const Exchange::OutboxPage& page, v1::ListOutboxResponse* resp) {
  for (const auto& i : page.items) {
    v1::OutboxEntry* e = resp->add_entries();
    e->set_envelope_id(i.envelope_id());
    e->set_recipient_org(i.recipient_org());
    e->set_kind(i.kind());
    e->set_state(i.state());
    e->set_attempts(i.attempts());
    e->set_last_error(i.last_error());
    if (i.state() == "pending" && i.next_attempt_unix_ms() > 0) {
      e->set_next_attempt(Rfc3339(absl::FromUnixMillis(i.next_attempt_unix_ms())));
    }
    e->set_created_at(Rfc3339(absl::FromUnixSeconds(i.created_unix())));
    e->set_receipt_ledger_index(i.receipt_ledger_index());
  }
  resp->set_next_page_token(page.next_page_token);
}

// The outgoing link of `c` for `referral_id` that may carry a permission to
// pass the case on as `req` asks, or why not.
absl::StatusOr<const v1::ReferralLink*> PermittableLink(const v1::Case& c,
                                                        const v1::PermitRequest& req) {
  const v1::ReferralLink* link = nullptr;
  for (const auto& l : c.referrals()) {
    if (l.outgoing() && l.referral_id() == req.referral_id()) link = &l;
  }
  if (link == nullptr) {
    return absl::NotFoundError(absl::StrCat("case ", req.case_id(), " has no outgoing referral ",
                                            IdInMessage(req.referral_id())));
  }
  if (link->state() != v1::REFERRAL_STATE_ACCEPTED) {
    return absl::FailedPreconditionError("the referral has not been accepted by its receiver");
  }
  if (req.to_org().empty() || req.purpose().empty() || req.agreement().empty()) {
    return absl::InvalidArgumentError("a permission needs --to, --purpose and --agreement");
  }
  return link;
}

}  // namespace

absl::StatusOr<v1::EnvelopePayload> ReferralServiceImpl::ReferralPayload(
    const v1::ReferCaseRequest& req, const ReferralClearance& clearance, const v1::Case& c,
    const std::string& referral_id, absl::Time now) const {
  v1::EnvelopePayload payload = exchange_->NewPayload(req.to_org(), req.agreement(), req.purpose());
  v1::Referral* r = payload.mutable_referral();
  r->set_referral_id(referral_id);
  r->set_origin_case_id(c.id());
  r->set_deidentified(clearance.deidentified);
  r->set_onward_permission(clearance.onward_permission);
  r->mutable_handling()->set_onward_sharing(req.onward_sharing() == v1::ONWARD_SHARING_UNSPECIFIED
                                                ? v1::ONWARD_SHARING_NEVER
                                                : req.onward_sharing());
  r->mutable_handling()->set_retention_until(
      req.retention_until().empty() ? Rfc3339(now + absl::Hours(24 * 365)) : req.retention_until());
  r->mutable_handling()->set_contains_personal_data(!clearance.deidentified);
  *r->mutable_shared() = SharedCaseOf(c, clearance.deidentified);
  if (auto st =
          ShareEvidence(c, req.evidence_ids(), exchange_->config().org(), r->mutable_shared());
      !st.ok()) {
    return st;
  }
  return payload;
}

absl::StatusOr<ReferralServiceImpl::QueuedReferral> ReferralServiceImpl::QueueReferral(
    ledger::Mutation* batch, const v1::ReferCaseRequest& req, const ReferralClearance& clearance,
    const std::string& author, v1::Case* c) {
  const absl::Time now = clock_->Now();
  const std::string referral_id = NewReferralId();
  auto payload = ReferralPayload(req, clearance, *c, referral_id, now);
  if (!payload.ok()) return payload.status();
  // Stored sealed under the case's key: erasing the case shreds it too.
  auto queued = exchange_->Enqueue(batch, *payload, "referral", c->id(), referral_id);
  if (!queued.ok()) return queued.status();
  exchange_->IndexReferral(batch, req.to_org(), referral_id, c->id());
  LinkReferral(req, referral_id, clearance.deidentified, author, exchange_->config().org(), now, c);
  if (auto st = cases_->PutCase(batch, *c); !st.ok()) return st;
  return QueuedReferral{referral_id, *std::move(queued)};
}

grpc::ServerUnaryReactor* ReferralServiceImpl::Refer(grpc::CallbackServerContext* ctx,
                                                     const v1::ReferCaseRequest* req,
                                                     v1::ReferCaseResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  auto caller =
      call.Begin(*identity_, ctx, Referrals(),
                 {"referral.send", "case", req->case_id(), req->purpose(), req->request_id(),
                  /*stated=*/true});
  if (!caller) return call.reactor();
  call.event().set_peer_org(req->to_org());
  call.event().set_agreement(req->agreement());
  const ReferralRequest asked = AsPolicyRequest(*req, exchange_->config().org());
  auto roster = exchange_->roster();
  // What the roster alone refuses is refused before the case is locked.
  if (auto st = CheckReferralTerms(*roster, asked); !st.ok()) return call.Refuse(st);
  auto lock = CaseLock::Acquire(cases_, req->case_id());
  if (!lock.ok()) return call.Refuse(lock.status());
  auto c = cases_->Get(req->case_id());
  if (!c.ok()) return call.Refuse(c.status());
  auto clearance = DecideReferral(*roster, c->consent(), c->referrals(), asked, clock_->Now());
  if (!clearance.ok()) return call.Refuse(clearance.status());
  auto batch = std::make_unique<ledger::Mutation>();
  auto sent = QueueReferral(batch.get(), *req, *clearance, caller->Name(), &*c);
  if (!sent.ok()) return call.Refuse(sent.status());
  const bool deidentified = clearance->deidentified;
  call.event().set_payload_sha256(EnvelopeDigest(sent->item.envelope()));
  call.event().set_reason(
      absl::StrCat("referral ", sent->referral_id, " envelope ", sent->item.envelope_id(),
                   deidentified ? " (de-identified)" : " (with personal data, consented)"));
  return call.Allow(std::move(batch), [resp, sent = *std::move(sent), deidentified,
                                       exchange = exchange_, lock = *std::move(lock)](uint64_t) {
    exchange->Wake();
    resp->set_referral_id(sent.referral_id);
    resp->set_envelope_id(sent.item.envelope_id());
    resp->set_deidentified(deidentified);
    return grpc::Status::OK;
  });
}

absl::StatusOr<std::vector<v1::InboxItem>> ReferralServiceImpl::InboxItems() const {
  std::vector<v1::InboxItem> items;
  std::string cursor;
  while (true) {
    auto batch = cases_->Scan(cursor, 256);
    if (!batch.ok()) return batch.status();
    for (const auto& stored : *batch) {
      cursor = stored.summary().id();
      if (stored.summary().status() != v1::CASE_STATUS_INCOMING) continue;
      auto c = cases_->Get(stored.summary().id());
      if (!c.ok()) continue;
      const v1::ReferralLink* in = IncomingLink(*c);
      if (in == nullptr) continue;
      items.push_back(InboxItemOf(stored, *c, *in));
    }
    if (batch->size() < 256) break;
  }
  return items;
}

grpc::ServerUnaryReactor* ReferralServiceImpl::ListInbox(grpc::CallbackServerContext* ctx,
                                                         const v1::ListInboxRequest*,
                                                         v1::ListInboxResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Referrals(),
                  {"referral.view", "referral", "", "case-handling", ""})) {
    return call.reactor();
  }
  auto items = InboxItems();
  if (!items.ok()) return call.Refuse(items.status());
  // Before the call: its arguments' order is unspecified and the completion takes `items`.
  std::vector<v1::AccessEvent> events = OneEventPerReferral(call.event(), *items);
  return call.Record(std::move(events), nullptr, [resp, items = *std::move(items)](uint64_t) {
    for (const auto& i : items) *resp->add_items() = i;
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* ReferralServiceImpl::Decide(grpc::CallbackServerContext* ctx,
                                                      const v1::DecideReferralRequest* req,
                                                      v1::DecideReferralResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  auto caller = call.Begin(*identity_, ctx, Referrals(),
                           {req->accept() ? "referral.accept" : "referral.decline", "referral",
                            req->referral_id(), "case-handling", req->request_id()});
  if (!caller) return call.reactor();
  call.event().set_reason(ReasonForLedger(req->reason()));
  if (!req->accept() && req->reason().empty()) {
    return call.Refuse(absl::InvalidArgumentError("declining needs a reason (--reason)"));
  }
  if (auto st = CheckTextLength("the reason", req->reason(), kMaxNoteBytes); !st.ok()) {
    return call.Refuse(st);
  }
  auto case_id = ReceivedCaseOf(req->referral_id());
  if (!case_id.ok()) return call.Refuse(case_id.status());
  call.event().set_case_id(*case_id);
  auto lock = CaseLock::Acquire(cases_, *case_id);
  if (!lock.ok()) return call.Refuse(lock.status());
  auto c = cases_->Get(*case_id);
  if (!c.ok()) return call.Refuse(c.status());
  v1::ReferralLink* in = PendingIncoming(&*c, req->referral_id());
  if (in == nullptr) {
    return call.Refuse(absl::FailedPreconditionError(
        absl::StrCat("referral ", req->referral_id(), " is not waiting for a decision")));
  }
  call.event().set_peer_org(in->peer_org());
  v1::EnvelopePayload payload = DecisionOn(*req, caller->Name(), &*c, in);
  auto batch = std::make_unique<ledger::Mutation>();
  auto queued = exchange_->Enqueue(batch.get(), payload, "decision", c->id(), req->referral_id());
  if (!queued.ok()) return call.Refuse(queued.status());
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) return call.Refuse(st);
  call.event().set_payload_sha256(EnvelopeDigest(queued->envelope()));
  return call.Allow(std::move(batch), [resp, id = c->id(), item = *std::move(queued),
                                       exchange = exchange_, lock = *std::move(lock)](uint64_t) {
    exchange->Wake();
    resp->set_case_id(id);
    resp->set_envelope_id(item.envelope_id());
    return grpc::Status::OK;
  });
}

absl::StatusOr<std::string> ReferralServiceImpl::ReceivedCaseOf(
    const std::string& referral_id) const {
  auto cases = exchange_->CasesWithReferralId(referral_id);
  if (!cases.ok()) return cases.status();
  std::vector<std::pair<std::string, std::string>> received;  // (sender, case id)
  for (const std::string& id : *cases) {
    auto c = cases_->Get(id);
    if (absl::IsNotFound(c.status()) || absl::IsFailedPrecondition(c.status())) continue;  // erased
    if (!c.ok()) return c.status();  // not known either way: deciding the other could be wrong
    for (const auto& l : c->referrals()) {
      if (!l.outgoing() && l.referral_id() == referral_id) received.push_back({l.peer_org(), id});
    }
  }
  if (received.empty()) {
    return absl::NotFoundError(absl::StrCat("there is no received referral ", referral_id));
  }
  if (received.size() > 1) {
    std::vector<std::string> senders;
    for (const auto& r : received) senders.push_back(r.first);
    std::sort(senders.begin(), senders.end());
    return absl::FailedPreconditionError(absl::StrCat(
        "referral ", referral_id, " was received from ", received.size(),
        " different members under the same id (", absl::StrJoin(senders, ", "),
        "), so it cannot tell which one you mean; nothing was decided. One sender may have "
        "copied the other's id: ask your node's administrator to check with each sender"));
  }
  return received.front().second;
}

v1::EnvelopePayload ReferralServiceImpl::DecisionOn(const v1::DecideReferralRequest& req,
                                                    const std::string& author, v1::Case* c,
                                                    v1::ReferralLink* in) const {
  in->set_state(req.accept() ? v1::REFERRAL_STATE_ACCEPTED : v1::REFERRAL_STATE_DECLINED);
  in->set_reason(req.reason());
  c->set_status(req.accept() ? v1::CASE_STATUS_OPEN : v1::CASE_STATUS_DECLINED);
  const absl::Time now = clock_->Now();
  AddNote(c, now, exchange_->config().org(), author,
          req.accept() ? "referral accepted" : "referral declined: " + req.reason());
  c->set_updated_at(Rfc3339(now));
  v1::EnvelopePayload payload =
      exchange_->NewPayload(in->peer_org(), in->agreement(), in->purpose());
  payload.mutable_decision()->set_referral_id(req.referral_id());
  payload.mutable_decision()->set_accepted(req.accept());
  payload.mutable_decision()->set_reason(req.reason());
  if (req.accept()) payload.mutable_decision()->set_linked_case_id(c->id());
  return payload;
}

absl::StatusOr<std::vector<std::string>> ReferralServiceImpl::QueueUpdates(
    ledger::Mutation* batch, const v1::PostUpdateRequest& req, const std::string& author,
    const v1::Case& c) {
  std::vector<std::string> envelopes;
  for (const auto& link : c.referrals()) {
    if (link.state() != v1::REFERRAL_STATE_ACCEPTED) continue;  // only peers holding a linked case
    v1::EnvelopePayload payload =
        exchange_->NewPayload(link.peer_org(), link.agreement(), link.purpose());
    v1::CaseUpdate* u = payload.mutable_update();
    u->set_referral_id(link.referral_id());
    u->set_status(req.status());
    u->set_outcome(req.outcome());
    u->set_note(req.note());
    u->set_author(author);
    auto item = exchange_->Enqueue(batch, payload, "update", c.id(), link.referral_id());
    if (!item.ok()) return item.status();
    envelopes.push_back(item->envelope_id());
  }
  return envelopes;
}

grpc::ServerUnaryReactor* ReferralServiceImpl::PostUpdate(grpc::CallbackServerContext* ctx,
                                                          const v1::PostUpdateRequest* req,
                                                          v1::PostUpdateResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  auto caller =
      call.Begin(*identity_, ctx, Referrals(),
                 {"case.post_update", "case", req->case_id(), "case-handling", req->request_id()});
  if (!caller) return call.reactor();
  if (req->note().empty() && req->outcome().empty() &&
      req->status() == v1::CASE_STATUS_UNSPECIFIED) {
    return call.Refuse(
        absl::InvalidArgumentError("an update needs a --status, --outcome or --note"));
  }
  if (req->status() == v1::CASE_STATUS_ERASED || req->status() == v1::CASE_STATUS_INCOMING) {
    return call.Refuse(absl::InvalidArgumentError("that status cannot be posted"));
  }
  if (auto st = ValidateUpdateText(req->outcome(), req->note()); !st.ok()) {
    return call.Refuse(st);
  }
  auto lock = CaseLock::Acquire(cases_, req->case_id());
  if (!lock.ok()) return call.Refuse(lock.status());
  auto c = cases_->Get(req->case_id());
  if (!c.ok()) return call.Refuse(c.status());
  const absl::Time now = clock_->Now();
  v1::CaseNote* n = AddNote(&*c, now, exchange_->config().org(), caller->Name(), req->note());
  n->set_outcome(req->outcome());
  n->set_status(req->status());
  if (req->status() != v1::CASE_STATUS_UNSPECIFIED) c->set_status(req->status());
  c->set_updated_at(Rfc3339(now));
  if (c->ByteSizeLong() > kMaxCaseBytes) {
    return call.Refuse(absl::ResourceExhaustedError(absl::StrCat(
        "case ", c->id(), " has reached the largest size a case may have (", kMaxCaseBytes >> 20,
        " MiB with its history); shorten the note or ask the node's admin")));
  }
  auto batch = std::make_unique<ledger::Mutation>();
  auto envelopes = QueueUpdates(batch.get(), *req, caller->Name(), *c);
  if (!envelopes.ok()) return call.Refuse(envelopes.status());
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) return call.Refuse(st);
  call.event().set_reason(absl::StrCat("sent to ", envelopes->size(), " linked peer(s)"));
  return call.Allow(std::move(batch), [resp, envelopes = *std::move(envelopes),
                                       exchange = exchange_, lock = *std::move(lock)](uint64_t) {
    exchange->Wake();
    for (const auto& e : envelopes) resp->add_envelope_ids(e);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* ReferralServiceImpl::ListOutbox(grpc::CallbackServerContext* ctx,
                                                          const v1::ListOutboxRequest* req,
                                                          v1::ListOutboxResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Referrals(),
                  {"outbox.view", "outbox", "", "case-handling", ""})) {
    return call.reactor();
  }
  auto page = exchange_->ListOutbox(req->page_size(), req->page_token());
  if (!page.ok()) return call.Refuse(page.status());
  return call.Allow(nullptr, [resp, page = *std::move(page)](uint64_t) {
    AnswerOutbox(page, resp);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* ReferralServiceImpl::Permit(grpc::CallbackServerContext* ctx,
                                                      const v1::PermitRequest* req,
                                                      v1::PermitResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  auto caller =
      call.Begin(*identity_, ctx, Referrals(),
                 {"referral.permit", "case", req->case_id(), req->purpose(), req->request_id(),
                  /*stated=*/true});
  if (!caller) return call.reactor();
  call.event().set_agreement(req->agreement());
  auto lock = CaseLock::Acquire(cases_, req->case_id());
  if (!lock.ok()) return call.Refuse(lock.status());
  auto c = cases_->Get(req->case_id());
  if (!c.ok()) return call.Refuse(c.status());
  auto link = PermittableLink(*c, *req);
  if (!link.ok()) return call.Refuse(link.status());
  const std::string holder = (*link)->peer_org();
  call.event().set_peer_org(holder);
  v1::EnvelopePayload payload = exchange_->NewPayload(holder, req->agreement(), req->purpose());
  v1::OnwardPermission* p = payload.mutable_permission();
  p->set_referral_id(req->referral_id());
  p->set_holder_org(holder);
  p->set_permitted_org(req->to_org());
  p->set_purpose(req->purpose());
  p->set_agreement(req->agreement());
  auto batch = std::make_unique<ledger::Mutation>();
  auto queued = exchange_->Enqueue(batch.get(), payload, "permission", c->id(), req->referral_id());
  if (!queued.ok()) return call.Refuse(queued.status());
  AddNote(&*c, clock_->Now(), exchange_->config().org(), caller->Name(),
          absl::StrCat("permitted ", holder, " to pass the case on to ", req->to_org(), " for ",
                       req->purpose()));
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) return call.Refuse(st);
  call.event().set_payload_sha256(EnvelopeDigest(queued->envelope()));
  call.event().set_reason(absl::StrCat("onward sharing to ", req->to_org(), " permitted"));
  return call.Allow(std::move(batch), [resp, item = *std::move(queued), exchange = exchange_,
                                       lock = *std::move(lock)](uint64_t) {
    exchange->Wake();
    resp->set_envelope_id(item.envelope_id());
    return grpc::Status::OK;
  });
}

}  // namespace corridor
