#include "server/federation/referral_service.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "server/audit/audited_call.h"
#include "server/federation/envelope.h"

namespace corridor {
namespace {

constexpr char kService[] = "/corridor.v1.ReferralService/";

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string NewReferralId() { return "REF-" + absl::AsciiStrToUpper(HexEncode(RandomBytes(6))); }

bool ConsentCovers(const v1::Case& c, const std::string& org, const std::string& purpose) {
  for (const auto& g : c.consent().grants()) {
    if (g.org() != org) continue;
    for (const auto& p : g.purposes()) {
      if (p == purpose) return true;
    }
  }
  return false;
}

// The received-case rules: onward sharing and retention, from the incoming link.
const v1::ReferralLink* IncomingLink(const v1::Case& c) {
  for (const auto& l : c.referrals()) {
    if (!l.outgoing()) return &l;
  }
  return nullptr;
}

}  // namespace

grpc::ServerUnaryReactor* ReferralServiceImpl::Refer(grpc::CallbackServerContext* ctx,
                                                     const v1::ReferCaseRequest* req,
                                                     v1::ReferCaseResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  v1::AccessEvent ev;
  auto caller =
      Begin(*identity_, ctx, reactor, log_, std::string(kService) + "Refer", "referral.send",
            "case", req->case_id(), req->purpose(), req->request_id(), &ev);
  if (!caller) return reactor;
  ev.set_peer_org(req->to_org());
  ev.set_agreement(req->agreement());
  auto roster = exchange_->roster();
  // The agreement must bind both orgs and cover the purpose, as the receiver will check.
  const v1::Agreement* agreement = nullptr;
  for (const auto& a : roster->agreements()) {
    if (a.id() == req->agreement()) agreement = &a;
  }
  absl::Status bad;
  if (req->to_org().empty() || req->to_org() == exchange_->config().org()) {
    bad = absl::InvalidArgumentError("--to must name another member org");
  } else if (agreement == nullptr) {
    bad = absl::InvalidArgumentError(
        absl::StrCat("agreement \"", req->agreement(), "\" is not in the roster"));
  } else if (std::find(agreement->parties().begin(), agreement->parties().end(), req->to_org()) ==
             agreement->parties().end()) {
    bad = absl::PermissionDeniedError(
        absl::StrCat("agreement ", agreement->id(), " does not include ", req->to_org()));
  } else if (std::find(agreement->purposes().begin(), agreement->purposes().end(),
                       req->purpose()) == agreement->purposes().end()) {
    bad = absl::PermissionDeniedError(absl::StrCat(
        "agreement ", agreement->id(), " does not cover the purpose \"", req->purpose(), "\""));
  }
  if (!bad.ok()) {
    RecordRefusal(log_, reactor, ev, bad);
    return reactor;
  }
  auto lock = CaseLock::Acquire(cases_, req->case_id());
  if (!lock.ok()) {
    RecordRefusal(log_, reactor, ev, lock.status());
    return reactor;
  }
  auto c = cases_->Get(req->case_id());
  if (!c.ok()) {
    RecordRefusal(log_, reactor, ev, c.status());
    return reactor;
  }
  // A received case travels on only as its originator allowed.
  std::string permission;
  if (const v1::ReferralLink* in = IncomingLink(*c)) {
    const auto rule = static_cast<v1::OnwardSharing>(in->onward_sharing());
    absl::Status allowed = absl::PermissionDeniedError(
        absl::StrCat("this case was received from ", in->peer_org(),
                     " whose handling rules do not allow sharing it onward"));
    if (rule == v1::ONWARD_SHARING_WITHIN_AGREEMENT) {
      if (in->agreement() == req->agreement()) {
        allowed = absl::OkStatus();
      } else {
        allowed = absl::PermissionDeniedError(
            absl::StrCat("this case was received from ", in->peer_org(),
                         " whose handling rules allow sharing it onward only under agreement ",
                         in->agreement()));
      }
    } else if (rule == v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION) {
      allowed = absl::PermissionDeniedError(absl::StrCat(
          "passing this case on needs the signed permission of ", in->peer_org(), " for ",
          req->to_org(), " and \"", req->purpose(), "\"; ask them to run `corridorctl permit ",
          in->peer_case_id(), " --referral ", in->referral_id(), " --to ", req->to_org(),
          " --purpose ", req->purpose(), " --agreement ", req->agreement(), "`"));
      // A stored permission counts if it still verifies for exactly this onward referral.
      EnvelopeContext ctx{"", req->to_org(), roster.get(), absl::Now(), 4 << 20};
      for (const std::string& p : in->permissions()) {
        if (VerifyOnwardPermission(p, exchange_->config().org(), req->purpose(), req->agreement(),
                                   ctx)
                .ok()) {
          permission = p;
          allowed = absl::OkStatus();
          break;
        }
      }
    }
    if (!allowed.ok()) {
      RecordRefusal(log_, reactor, ev, allowed);
      return reactor;
    }
  }
  bool deidentified = !req->include_personal_data();
  if (req->include_personal_data() && !ConsentCovers(*c, req->to_org(), req->purpose())) {
    if (!req->deidentify()) {
      // A policy refusal like the agreement's: recorded as denied, not as an error.
      RecordRefusal(
          log_, reactor, ev,
          absl::PermissionDeniedError(absl::StrCat(
              "the worker's consent record does not allow sharing their personal data with ",
              req->to_org(), " for \"", req->purpose(),
              "\"; record consent first, or send it de-identified (--deidentify)")));
      return reactor;
    }
    deidentified = true;
  }
  const std::string referral_id = NewReferralId();
  v1::EnvelopePayload payload =
      exchange_->NewPayload(req->to_org(), req->agreement(), req->purpose());
  v1::Referral* r = payload.mutable_referral();
  r->set_referral_id(referral_id);
  r->set_origin_case_id(c->id());
  r->set_deidentified(deidentified);
  r->set_onward_permission(permission);
  r->mutable_handling()->set_onward_sharing(req->onward_sharing() == v1::ONWARD_SHARING_UNSPECIFIED
                                                ? v1::ONWARD_SHARING_NEVER
                                                : req->onward_sharing());
  r->mutable_handling()->set_retention_until(req->retention_until().empty()
                                                 ? Rfc3339(absl::Now() + absl::Hours(24 * 365))
                                                 : req->retention_until());
  r->mutable_handling()->set_contains_personal_data(!deidentified);
  v1::SharedCase* shared = r->mutable_shared();
  shared->set_category(c->category());
  shared->set_sector(c->sector());
  shared->set_origin_country(c->origin_country());
  shared->set_destination_country(c->destination_country());
  *shared->mutable_employer() = c->employer();
  *shared->mutable_recruiter() = c->recruiter();
  if (!deidentified) {
    *shared->mutable_worker() = c->worker();
    shared->set_narrative(c->narrative());
  }
  for (const std::string& eid : req->evidence_ids()) {
    bool found = false;
    for (const auto& item : c->evidence()) {
      if (item.id() == eid) {
        v1::EvidenceItem* e = shared->add_evidence();
        *e = item;
        // A node speaks only for its own people (docs/federation.md): an item
        // this org received is passed on as added by this node.
        if (!IsPrincipalOf(e->added_by(), exchange_->config().org())) {
          e->set_added_by(exchange_->config().org() + "/node");
        }
        found = true;
      }
    }
    if (!found) {
      RecordRefusal(log_, reactor, ev,
                    absl::NotFoundError(absl::StrCat("case ", c->id(), " has no evidence ", eid)));
      return reactor;
    }
  }
  auto batch = std::make_unique<ledger::Mutation>();
  // Stored sealed under the case's key: erasing the case shreds it too.
  auto queued = exchange_->Enqueue(batch.get(), payload, "referral", c->id(), referral_id);
  if (!queued.ok()) {
    RecordRefusal(log_, reactor, ev, queued.status());
    return reactor;
  }
  const v1::OutboxItem item = *std::move(queued);
  exchange_->IndexReferral(batch.get(), referral_id, c->id());
  v1::ReferralLink* link = c->add_referrals();
  link->set_referral_id(referral_id);
  link->set_outgoing(true);
  link->set_peer_org(req->to_org());
  link->set_agreement(req->agreement());
  link->set_purpose(req->purpose());
  link->set_state(v1::REFERRAL_STATE_QUEUED);
  link->set_created_at(Rfc3339(absl::Now()));
  if (c->status() == v1::CASE_STATUS_OPEN) c->set_status(v1::CASE_STATUS_REFERRED);
  v1::CaseNote* n = c->add_history();
  n->set_time(link->created_at());
  n->set_org(exchange_->config().org());
  n->set_author(caller->Name());
  n->set_note(absl::StrCat("referred to ", req->to_org(), " for ", req->purpose(),
                           deidentified ? " (de-identified)" : ""));
  c->set_updated_at(link->created_at());
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) {
    RecordRefusal(log_, reactor, ev, st);
    return reactor;
  }
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_payload_sha256(EnvelopeDigest(item.envelope()));
  ev.set_reason(
      absl::StrCat("referral ", referral_id, " envelope ", item.envelope_id(),
                   deidentified ? " (de-identified)" : " (with personal data, consented)"));
  Exchange* exchange = exchange_;
  RecordThenFinish(log_, reactor, {ev}, std::move(batch),
                   [resp, referral_id, item, deidentified, exchange, lock = *std::move(lock)](uint64_t) {
                     exchange->Wake();
                     resp->set_referral_id(referral_id);
                     resp->set_envelope_id(item.envelope_id());
                     resp->set_deidentified(deidentified);
                     return grpc::Status::OK;
                   });
  return reactor;
}

grpc::ServerUnaryReactor* ReferralServiceImpl::ListInbox(grpc::CallbackServerContext* ctx,
                                                         const v1::ListInboxRequest*,
                                                         v1::ListInboxResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  v1::AccessEvent ev;
  auto caller = Begin(*identity_, ctx, reactor, log_, std::string(kService) + "ListInbox",
                      "referral.view", "referral", "", "case-handling", "", &ev);
  if (!caller) return reactor;
  std::vector<v1::InboxItem> items;
  std::string cursor;
  while (true) {
    auto batch = cases_->Scan(cursor, 256);
    if (!batch.ok()) {
      RecordRefusal(log_, reactor, ev, batch.status());
      return reactor;
    }
    for (const auto& stored : *batch) {
      cursor = stored.summary().id();
      if (stored.summary().status() != v1::CASE_STATUS_INCOMING) continue;
      auto c = cases_->Get(stored.summary().id());
      if (!c.ok()) continue;
      const v1::ReferralLink* in = IncomingLink(*c);
      if (in == nullptr) continue;
      v1::InboxItem item;
      item.set_referral_id(in->referral_id());
      item.set_case_id(c->id());
      item.set_from_org(in->peer_org());
      item.set_agreement(in->agreement());
      item.set_purpose(in->purpose());
      item.set_received_at(in->created_at());
      *item.mutable_summary() = stored.summary();
      item.set_deidentified(c->worker().name().empty());
      items.push_back(std::move(item));
    }
    if (batch->size() < 256) break;
  }
  // One event per referral viewed.
  std::vector<v1::AccessEvent> events;
  for (const auto& i : items) {
    v1::AccessEvent e = ev;
    e.set_resource_id(i.referral_id());
    e.set_case_id(i.case_id());
    e.set_peer_org(i.from_org());
    e.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    events.push_back(std::move(e));
  }
  if (events.empty()) {
    ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    ev.set_reason("inbox empty");
    events.push_back(ev);
  }
  RecordThenFinish(log_, reactor, std::move(events), nullptr, [resp, items](uint64_t) {
    for (const auto& i : items) *resp->add_items() = i;
    return grpc::Status::OK;
  });
  return reactor;
}

grpc::ServerUnaryReactor* ReferralServiceImpl::Decide(grpc::CallbackServerContext* ctx,
                                                      const v1::DecideReferralRequest* req,
                                                      v1::DecideReferralResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  v1::AccessEvent ev;
  auto caller = Begin(*identity_, ctx, reactor, log_, std::string(kService) + "Decide",
                      req->accept() ? "referral.accept" : "referral.decline", "referral",
                      req->referral_id(), "case-handling", req->request_id(), &ev);
  if (!caller) return reactor;
  ev.set_reason(ReasonForLedger(req->reason()));
  if (!req->accept() && req->reason().empty()) {
    RecordRefusal(log_, reactor, ev,
                  absl::InvalidArgumentError("declining needs a reason (--reason)"));
    return reactor;
  }
  auto case_id = exchange_->CaseForReferral(req->referral_id());
  if (!case_id.ok()) {
    RecordRefusal(log_, reactor, ev, case_id.status());
    return reactor;
  }
  ev.set_case_id(*case_id);
  auto lock = CaseLock::Acquire(cases_, *case_id);
  if (!lock.ok()) {
    RecordRefusal(log_, reactor, ev, lock.status());
    return reactor;
  }
  auto c = cases_->Get(*case_id);
  v1::ReferralLink* in = nullptr;
  if (c.ok()) {
    for (auto& l : *c->mutable_referrals()) {
      if (!l.outgoing() && l.referral_id() == req->referral_id()) in = &l;
    }
  }
  if (!c.ok() || in == nullptr || in->state() != v1::REFERRAL_STATE_PENDING) {
    RecordRefusal(log_, reactor, ev,
                  !c.ok()
                      ? c.status()
                      : absl::FailedPreconditionError(absl::StrCat(
                            "referral ", req->referral_id(), " is not waiting for a decision")));
    return reactor;
  }
  ev.set_peer_org(in->peer_org());
  in->set_state(req->accept() ? v1::REFERRAL_STATE_ACCEPTED : v1::REFERRAL_STATE_DECLINED);
  in->set_reason(req->reason());
  c->set_status(req->accept() ? v1::CASE_STATUS_OPEN : v1::CASE_STATUS_DECLINED);
  const std::string now = Rfc3339(absl::Now());
  v1::CaseNote* n = c->add_history();
  n->set_time(now);
  n->set_org(exchange_->config().org());
  n->set_author(caller->Name());
  n->set_note(req->accept() ? "referral accepted" : "referral declined: " + req->reason());
  c->set_updated_at(now);
  v1::EnvelopePayload payload =
      exchange_->NewPayload(in->peer_org(), in->agreement(), in->purpose());
  payload.mutable_decision()->set_referral_id(req->referral_id());
  payload.mutable_decision()->set_accepted(req->accept());
  payload.mutable_decision()->set_reason(req->reason());
  if (req->accept()) payload.mutable_decision()->set_linked_case_id(c->id());
  auto batch = std::make_unique<ledger::Mutation>();
  auto queued = exchange_->Enqueue(batch.get(), payload, "decision", c->id(), req->referral_id());
  if (!queued.ok()) {
    RecordRefusal(log_, reactor, ev, queued.status());
    return reactor;
  }
  const v1::OutboxItem item = *std::move(queued);
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) {
    RecordRefusal(log_, reactor, ev, st);
    return reactor;
  }
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_payload_sha256(EnvelopeDigest(item.envelope()));
  Exchange* exchange = exchange_;
  const std::string id = c->id();
  RecordThenFinish(log_, reactor, {ev}, std::move(batch),
                   [resp, id, item, exchange, lock = *std::move(lock)](uint64_t) {
                     exchange->Wake();
                     resp->set_case_id(id);
                     resp->set_envelope_id(item.envelope_id());
                     return grpc::Status::OK;
                   });
  return reactor;
}

grpc::ServerUnaryReactor* ReferralServiceImpl::PostUpdate(grpc::CallbackServerContext* ctx,
                                                          const v1::PostUpdateRequest* req,
                                                          v1::PostUpdateResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  v1::AccessEvent ev;
  auto caller =
      Begin(*identity_, ctx, reactor, log_, std::string(kService) + "PostUpdate",
            "case.post_update", "case", req->case_id(), "case-handling", req->request_id(), &ev);
  if (!caller) return reactor;
  if (req->note().empty() && req->outcome().empty() &&
      req->status() == v1::CASE_STATUS_UNSPECIFIED) {
    RecordRefusal(log_, reactor, ev,
                  absl::InvalidArgumentError("an update needs a --status, --outcome or --note"));
    return reactor;
  }
  if (req->status() == v1::CASE_STATUS_ERASED || req->status() == v1::CASE_STATUS_INCOMING) {
    RecordRefusal(log_, reactor, ev, absl::InvalidArgumentError("that status cannot be posted"));
    return reactor;
  }
  auto lock = CaseLock::Acquire(cases_, req->case_id());
  if (!lock.ok()) {
    RecordRefusal(log_, reactor, ev, lock.status());
    return reactor;
  }
  auto c = cases_->Get(req->case_id());
  if (!c.ok()) {
    RecordRefusal(log_, reactor, ev, c.status());
    return reactor;
  }
  const std::string now = Rfc3339(absl::Now());
  v1::CaseNote* n = c->add_history();
  n->set_time(now);
  n->set_org(exchange_->config().org());
  n->set_author(caller->Name());
  n->set_note(req->note());
  n->set_outcome(req->outcome());
  n->set_status(req->status());
  if (req->status() != v1::CASE_STATUS_UNSPECIFIED) c->set_status(req->status());
  c->set_updated_at(now);
  auto batch = std::make_unique<ledger::Mutation>();
  std::vector<std::string> envelopes;
  std::string digests;
  for (const auto& link : c->referrals()) {
    if (link.state() != v1::REFERRAL_STATE_ACCEPTED) continue;  // only peers holding a linked case
    v1::EnvelopePayload payload =
        exchange_->NewPayload(link.peer_org(), link.agreement(), link.purpose());
    v1::CaseUpdate* u = payload.mutable_update();
    u->set_referral_id(link.referral_id());
    u->set_status(req->status());
    u->set_outcome(req->outcome());
    u->set_note(req->note());
    u->set_author(caller->Name());
    auto item = exchange_->Enqueue(batch.get(), payload, "update", c->id(), link.referral_id());
    if (!item.ok()) {
      RecordRefusal(log_, reactor, ev, item.status());
      return reactor;
    }
    envelopes.push_back(item->envelope_id());
  }
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) {
    RecordRefusal(log_, reactor, ev, st);
    return reactor;
  }
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_reason(absl::StrCat("sent to ", envelopes.size(), " linked peer(s)"));
  Exchange* exchange = exchange_;
  RecordThenFinish(log_, reactor, {ev}, std::move(batch),
                   [resp, envelopes, exchange, lock = *std::move(lock)](uint64_t) {
                     exchange->Wake();
                     for (const auto& e : envelopes) resp->add_envelope_ids(e);
                     return grpc::Status::OK;
                   });
  return reactor;
}

grpc::ServerUnaryReactor* ReferralServiceImpl::ListOutbox(grpc::CallbackServerContext* ctx,
                                                          const v1::ListOutboxRequest* req,
                                                          v1::ListOutboxResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  v1::AccessEvent ev;
  if (!Begin(*identity_, ctx, reactor, log_, std::string(kService) + "ListOutbox", "outbox.view",
             "outbox", "", "case-handling", "", &ev)) {
    return reactor;
  }
  auto page = exchange_->ListOutbox(req->page_size(), req->page_token());
  if (!page.ok()) {
    RecordRefusal(log_, reactor, ev, page.status());
    return reactor;
  }
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  RecordThenFinish(log_, reactor, {ev}, nullptr, [resp, page = *std::move(page)](uint64_t) {
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
    return grpc::Status::OK;
  });
  return reactor;
}

grpc::ServerUnaryReactor* ReferralServiceImpl::Permit(grpc::CallbackServerContext* ctx,
                                                      const v1::PermitRequest* req,
                                                      v1::PermitResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  v1::AccessEvent ev;
  auto caller =
      Begin(*identity_, ctx, reactor, log_, std::string(kService) + "Permit", "referral.permit",
            "case", req->case_id(), req->purpose(), req->request_id(), &ev);
  if (!caller) return reactor;
  ev.set_agreement(req->agreement());
  auto lock = CaseLock::Acquire(cases_, req->case_id());
  if (!lock.ok()) {
    RecordRefusal(log_, reactor, ev, lock.status());
    return reactor;
  }
  auto c = cases_->Get(req->case_id());
  const v1::ReferralLink* link = nullptr;
  if (c.ok()) {
    for (const auto& l : c->referrals()) {
      if (l.outgoing() && l.referral_id() == req->referral_id()) link = &l;
    }
  }
  absl::Status bad =
      !c.ok() ? c.status()
      : link == nullptr
          ? absl::NotFoundError(absl::StrCat("case ", req->case_id(), " has no outgoing referral ",
                                             req->referral_id()))
      : link->state() != v1::REFERRAL_STATE_ACCEPTED
          ? absl::FailedPreconditionError("the referral has not been accepted by its receiver")
      : req->to_org().empty() || req->purpose().empty() || req->agreement().empty()
          ? absl::InvalidArgumentError("a permission needs --to, --purpose and --agreement")
          : absl::OkStatus();
  if (!bad.ok()) {
    RecordRefusal(log_, reactor, ev, bad);
    return reactor;
  }
  ev.set_peer_org(link->peer_org());
  v1::EnvelopePayload payload =
      exchange_->NewPayload(link->peer_org(), req->agreement(), req->purpose());
  v1::OnwardPermission* p = payload.mutable_permission();
  p->set_referral_id(req->referral_id());
  p->set_holder_org(link->peer_org());
  p->set_permitted_org(req->to_org());
  p->set_purpose(req->purpose());
  p->set_agreement(req->agreement());
  auto batch = std::make_unique<ledger::Mutation>();
  auto queued = exchange_->Enqueue(batch.get(), payload, "permission", c->id(), req->referral_id());
  if (!queued.ok()) {
    RecordRefusal(log_, reactor, ev, queued.status());
    return reactor;
  }
  const v1::OutboxItem item = *std::move(queued);
  v1::CaseNote* n = c->add_history();
  n->set_time(Rfc3339(absl::Now()));
  n->set_org(exchange_->config().org());
  n->set_author(caller->Name());
  n->set_note(absl::StrCat("permitted ", link->peer_org(), " to pass the case on to ",
                           req->to_org(), " for ", req->purpose()));
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) {
    RecordRefusal(log_, reactor, ev, st);
    return reactor;
  }
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_payload_sha256(EnvelopeDigest(item.envelope()));
  ev.set_reason(absl::StrCat("onward sharing to ", req->to_org(), " permitted"));
  Exchange* exchange = exchange_;
  RecordThenFinish(log_, reactor, {ev}, std::move(batch),
                   [resp, item, exchange, lock = *std::move(lock)](uint64_t) {
                     exchange->Wake();
                     resp->set_envelope_id(item.envelope_id());
                     return grpc::Status::OK;
                   });
  return reactor;
}

}  // namespace corridor
