#include "server/cases/case_service.h"

#include <atomic>
#include <optional>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/lib/grpc_util.h"
#include "ledger/base/log.h"
#include "ledger/crypto/crypto.h"
#include "server/audit/audited_call.h"
#include "server/auth/auth.h"

namespace corridor {
namespace {

// The RPC of CaseService being served, named by the handler that calls this (server/auth/rpc.h).
Rpc Cases(const char* handler = __builtin_FUNCTION()) {
  return Rpc::Served<v1::CaseService>(handler);
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

absl::Status ValidateNewCase(const v1::Case& c) {
  if (absl::Status st = CheckCaseText(c); !st.ok()) return st;
  if (c.category() == v1::CASE_CATEGORY_UNSPECIFIED) {
    return absl::InvalidArgumentError(
        "a case needs a category (e.g. recruitment-fees, wage-theft)");
  }
  for (const auto* cc : {&c.origin_country(), &c.destination_country()}) {
    if (cc->size() != 2) {
      return absl::InvalidArgumentError(
          "origin and destination countries are two-letter ISO codes (e.g. ID, SG)");
    }
  }
  if (c.worker().name().empty())
    return absl::InvalidArgumentError("a case needs the worker's name");
  return absl::OkStatus();
}

// A case as an answer to a write: ids, status, times and links, without the
// worker, parties, narrative, evidence or notes.
v1::Case WithoutPersonalData(const v1::Case& c) {
  v1::Case out = c;
  out.clear_worker();
  out.clear_employer();
  out.clear_recruiter();
  out.clear_narrative();
  out.clear_evidence();
  out.clear_history();
  out.clear_consent();
  return out;
}

// Case `id` for a read of its personal data at `now`: it exists and, if it was
// received, its retention date has not passed.
absl::StatusOr<v1::Case> ReadableCase(const CaseStore& store, const std::string& id,
                                      absl::Time now) {
  auto c = store.Get(id);
  if (!c.ok()) return c;
  if (auto st = RetentionAllowsRead(*c, now); !st.ok()) return st;
  return c;
}

// Whether `req` may change `c`: a closed case is reopened only by setting a
// status, and erased and incoming are not statuses an update sets.
absl::Status UpdateAllowed(const v1::Case& c, const v1::UpdateCaseRequest& req) {
  if (c.status() == v1::CASE_STATUS_CLOSED && req.status() == v1::CASE_STATUS_UNSPECIFIED) {
    return absl::FailedPreconditionError("the case is closed; reopen it by setting a status");
  }
  if (req.status() == v1::CASE_STATUS_ERASED || req.status() == v1::CASE_STATUS_INCOMING) {
    return absl::InvalidArgumentError(
        "that status cannot be set by an update (erase has its own command)");
  }
  return absl::OkStatus();
}

// The fields of `req` that are set, onto `c`.
// The text an update brings, bounded as a new case's (CheckCaseText).
absl::Status CheckUpdateText(const v1::UpdateCaseRequest& req) {
  v1::Case brought;
  brought.set_narrative(req.narrative());
  if (req.has_employer()) *brought.mutable_employer() = req.employer();
  if (req.has_recruiter()) *brought.mutable_recruiter() = req.recruiter();
  if (req.has_worker()) *brought.mutable_worker() = req.worker();
  return CheckCaseText(brought);
}

void ApplyUpdate(const v1::UpdateCaseRequest& req, v1::Case* c) {
  if (req.status() != v1::CASE_STATUS_UNSPECIFIED) c->set_status(req.status());
  if (!req.narrative().empty()) c->set_narrative(req.narrative());
  if (req.has_employer()) *c->mutable_employer() = req.employer();
  if (req.has_recruiter()) *c->mutable_recruiter() = req.recruiter();
  if (req.has_worker()) *c->mutable_worker() = req.worker();
}

// The filter of a ListCases request.
struct CaseFilter {
  const v1::ListCasesRequest& req;
  absl::Time after = absl::InfinitePast(), before = absl::InfiniteFuture();

  bool Matches(const v1::CaseSummary& sum) const {
    absl::Time created;
    std::string err;
    absl::ParseTime(absl::RFC3339_full, sum.created_at(), &created, &err);
    return !((req.status() && sum.status() != req.status()) ||
             (req.category() && sum.category() != req.category()) ||
             (!req.sector().empty() && sum.sector() != req.sector()) ||
             (!req.origin_country().empty() && sum.origin_country() != req.origin_country()) ||
             (!req.destination_country().empty() &&
              sum.destination_country() != req.destination_country()) ||
             created < after || created >= before);
  }
};

// The filter of `req`; InvalidArgument if its dates are not RFC 3339.
absl::StatusOr<CaseFilter> FilterOf(const v1::ListCasesRequest& req) {
  CaseFilter f{req};
  std::string err;
  if ((!req.created_after().empty() &&
       !absl::ParseTime(absl::RFC3339_full, req.created_after(), &f.after, &err)) ||
      (!req.created_before().empty() &&
       !absl::ParseTime(absl::RFC3339_full, req.created_before(), &f.before, &err))) {
    return absl::InvalidArgumentError("dates must be RFC 3339, e.g. 2026-01-31T00:00:00Z");
  }
  return f;
}

// Up to `page` summaries matching `filter`, after the case `cursor`.
absl::StatusOr<std::vector<v1::CaseSummary>> FindCases(const CaseStore& store,
                                                       const CaseFilter& filter, std::string cursor,
                                                       size_t page) {
  std::vector<v1::CaseSummary> found;
  bool more = true;
  while (found.size() < page && more) {
    auto batch = store.Scan(cursor, 256);
    if (!batch.ok()) return batch.status();
    more = batch->size() == 256;
    for (const v1::StoredCase& s : *batch) {
      cursor = s.summary().id();
      if (!filter.Matches(s.summary())) continue;
      found.push_back(s.summary());
      if (found.size() >= page) break;
    }
  }
  return found;
}

// One allowed event per case returned, from the call's event: no unrecorded
// bulk read. One event saying so if none matched.
std::vector<v1::AccessEvent> OneEventPerCase(v1::AccessEvent ev,
                                             const std::vector<v1::CaseSummary>& found) {
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  std::vector<v1::AccessEvent> events;
  for (const auto& sum : found) {
    v1::AccessEvent e = ev;
    e.set_resource_id(sum.id());
    e.set_case_id(sum.id());
    events.push_back(std::move(e));
  }
  if (events.empty()) {
    ev.set_reason("no case matched");
    events.push_back(ev);
  }
  return events;
}

// The answer to an erasure once it is durable: destroys the case's key (the
// content is gone already) and wakes the outbox for the erasure requests.
grpc::Status AnswerErasure(CaseStore* store, Exchange* exchange, const std::string& id,
                           uint64_t index, v1::EraseCaseResponse* resp) {
  if (exchange != nullptr) exchange->Wake();
  if (absl::Status destroyed = store->DestroyKey(id); !destroyed.ok()) {
    log::Error("case.key_destroy_failed", {{"case", id}, {"error", destroyed.message()}});
    return grpc::Status(grpc::StatusCode::INTERNAL,
                        "the case content was erased but its key could not be destroyed; "
                        "the operator must retry (corridord logs case.key_destroy_failed)");
  }
  resp->set_id(id);
  resp->set_ledger_index(index);
  return grpc::Status::OK;
}

// What a read of a received case answers when its attestation to the org that
// referred the case could not be queued.
grpc::Status Unattested(const absl::Status& why) {
  log::Error("attestation.unqueued", {{"error", why.message()}});
  return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                      "the read was recorded, but the node could not queue the notice it owes the "
                      "org that referred this case, so it returned nothing; try again later");
}

// Whether case `c` was received from another org (its reads are attested).
bool ReceivedFromPeer(const v1::Case& c) {
  for (const auto& link : c.referrals()) {
    if (!link.outgoing()) return true;
  }
  return false;
}

}  // namespace

grpc::ServerUnaryReactor* CaseServiceImpl::CreateCase(grpc::CallbackServerContext* ctx,
                                                      const v1::CreateCaseRequest* req,
                                                      v1::Case* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  v1::Case c = req->case_();
  c.set_id(CaseStore::NewCaseId());
  auto caller = call.Begin(*identity_, ctx, Cases(),
                           {"case.create", "case", c.id(), "case-intake", req->request_id()});
  if (!caller) return call.reactor();
  if (auto st = ValidateNewCase(c); !st.ok()) return call.Refuse(st);
  const std::string now = Rfc3339(clock_->Now());
  c.set_owner_org(config_.org());
  c.set_status(v1::CASE_STATUS_OPEN);
  c.clear_evidence();
  c.set_created_at(now);
  c.set_updated_at(now);
  c.set_created_by(caller->Name());
  auto change = store_->PrepareCreate(c);
  if (!change.ok()) return call.Refuse(change.status());
  return call.Allow(*std::move(change), [resp, c](uint64_t) {
    *resp = c;
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* CaseServiceImpl::GetCase(grpc::CallbackServerContext* ctx,
                                                   const v1::GetCaseRequest* req, v1::Case* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Cases(),
                  {"case.get", "case", req->id(), req->purpose(), req->request_id(),
                   /*stated=*/true})) {
    return call.reactor();
  }
  if (req->purpose().empty()) {
    return call.Refuse(
        absl::InvalidArgumentError("reading a case's personal data needs a purpose (--purpose)"));
  }
  auto c = ReadableCase(*store_, req->id(), clock_->Now());
  if (!c.ok()) return call.Refuse(c.status());
  if (attestations_ != nullptr && ReceivedFromPeer(*c)) {
    return AttestedRead(call, *std::move(c), [resp](const v1::Case& read) { *resp = read; });
  }
  return call.Allow(nullptr, [resp, c = *std::move(c)](uint64_t) {
    *resp = c;
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* CaseServiceImpl::AttestedRead(
    AuditedCall<>& call, v1::Case c, std::function<void(const v1::Case&)> answer) {
  // The read is recorded, then attested to the org(s) that referred the case
  // (docs/federation.md, "Access attestations"), then answered.
  call.event().set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  v1::AccessEvent ev = call.event();
  grpc::ServerUnaryReactor* reactor = call.reactor();
  Attestations* attestations = attestations_;
  log_->Record(
      {ev}, nullptr,
      [reactor, answer, ev, attestations, c = std::move(c)](absl::StatusOr<uint64_t> index) {
        if (!index.ok()) {
          reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       "the node could not record this access in its "
                                       "ledger, so it returned nothing; try again later"));
          return;
        }
        attestations->Attest(c, ev, *index, [reactor, answer, c](absl::Status st) {
          if (!st.ok()) return reactor->Finish(Unattested(st));
          answer(c);
          reactor->Finish(grpc::Status::OK);
        });
      });
  return reactor;
}

grpc::ServerUnaryReactor* CaseServiceImpl::ListCases(grpc::CallbackServerContext* ctx,
                                                     const v1::ListCasesRequest* req,
                                                     v1::ListCasesResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Cases(), {"case.list", "case", "", "", req->request_id()})) {
    return call.reactor();
  }
  const size_t page = req->page_size() == 0 ? 50 : std::min<uint32_t>(req->page_size(), 500);
  auto filter = FilterOf(*req);
  if (!filter.ok()) return call.Refuse(filter.status());
  auto found = FindCases(*store_, *filter, req->page_token(), page);
  if (!found.ok()) return call.Refuse(found.status());
  const std::string next = found->size() >= page ? found->back().id() : "";
  // Before the call below: the order its arguments are evaluated in is
  // unspecified, and the completion takes `found` (gcc moved it out first).
  std::vector<v1::AccessEvent> events = OneEventPerCase(call.event(), *found);
  return call.Record(std::move(events), nullptr, [resp, found = *std::move(found), next](uint64_t) {
    for (const auto& s : found) *resp->add_cases() = s;
    resp->set_next_page_token(next);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* CaseServiceImpl::UpdateCase(grpc::CallbackServerContext* ctx,
                                                      const v1::UpdateCaseRequest* req,
                                                      v1::Case* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Cases(),
                  {"case.update", "case", req->id(), "case-handling", req->request_id()})) {
    return call.reactor();
  }
  if (auto st = CheckUpdateText(*req); !st.ok()) return call.Refuse(st);
  auto lock = CaseLock::Acquire(store_, req->id());
  if (!lock.ok()) return call.Refuse(lock.status());
  auto c = store_->Get(req->id());
  if (!c.ok()) return call.Refuse(c.status());
  if (auto st = UpdateAllowed(*c, *req); !st.ok()) return call.Refuse(st);
  ApplyUpdate(*req, &*c);
  c->set_updated_at(Rfc3339(clock_->Now()));
  auto change = store_->PrepareUpdate(*c);
  if (!change.ok()) return call.Refuse(change.status());
  // An update is not a read: the answer carries no personal data (a caller
  // who wants the case reads it with GetCase, stating a purpose).
  return call.Allow(*std::move(change), [resp, c = *c, lock = *std::move(lock)](uint64_t) {
    *resp = WithoutPersonalData(c);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* CaseServiceImpl::CloseCase(grpc::CallbackServerContext* ctx,
                                                     const v1::CloseCaseRequest* req,
                                                     v1::CaseSummary* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Cases(),
                  {"case.close", "case", req->id(), "case-handling", req->request_id()})) {
    return call.reactor();
  }
  call.event().set_reason(ReasonForLedger(req->reason()));
  auto lock = CaseLock::Acquire(store_, req->id());
  if (!lock.ok()) return call.Refuse(lock.status());
  auto c = store_->Get(req->id());
  if (!c.ok()) return call.Refuse(c.status());
  c->set_status(v1::CASE_STATUS_CLOSED);
  c->set_updated_at(Rfc3339(clock_->Now()));
  auto change = store_->PrepareUpdate(*c);
  if (!change.ok()) return call.Refuse(change.status());
  return call.Allow(*std::move(change),
                    [resp, sum = SummaryOf(*c), lock = *std::move(lock)](uint64_t) {
                      *resp = sum;
                      return grpc::Status::OK;
                    });
}

absl::StatusOr<std::unique_ptr<ledger::Mutation>> CaseServiceImpl::PrepareErasure(
    const std::string& id, std::vector<v1::AccessEvent>* events) {
  // The content as it was, for the outbox's part: its queued envelopes are
  // cancelled and the receivers of its referrals asked to erase their copies.
  // A case already erased (a retry after its key could not be destroyed) has
  // nothing left queued.
  auto before = store_->Get(id);
  if (!before.ok() && !store_->IsErased(id)) return before.status();
  auto change = store_->PrepareErase(id);
  if (!change.ok()) return change.status();
  if (before.ok() && exchange_ != nullptr) {
    auto outbox = exchange_->PrepareErasure(change->get(), *before);
    if (!outbox.ok()) return outbox.status();
    events->insert(events->end(), outbox->begin(), outbox->end());
  }
  return change;
}

grpc::ServerUnaryReactor* CaseServiceImpl::EraseCase(grpc::CallbackServerContext* ctx,
                                                     const v1::EraseCaseRequest* req,
                                                     v1::EraseCaseResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Cases(),
                  {"case.erase", "case", req->id(), "erasure", req->request_id()})) {
    return call.reactor();
  }
  // The reason is free text (it may well name the worker): the ledger, which
  // is never erased, keeps only its SHA-256; the text goes with the case.
  if (req->reason().empty()) {
    return call.Refuse(absl::InvalidArgumentError("erasing a case needs a reason (--reason)"));
  }
  call.event().set_reason(ReasonForLedger(req->reason()));
  auto lock = CaseLock::Acquire(store_, req->id());
  if (!lock.ok()) return call.Refuse(lock.status());
  std::vector<v1::AccessEvent> events = {call.event()};
  auto change = PrepareErasure(req->id(), &events);
  if (!change.ok()) return call.Refuse(change.status());
  events[0].set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  return call.Record(
      std::move(events), *std::move(change),
      [resp, id = req->id(), store = store_, exchange = exchange_, lock = *std::move(lock)](
          uint64_t index) { return AnswerErasure(store, exchange, id, index, resp); },
      bulk_);
}

// ---- Evidence ----------------------------------------------------------------

namespace {

// What a transfer past the limit is told.
absl::Status TooManyTransfers(uint32_t max) {
  return absl::ResourceExhaustedError(
      absl::StrCat("the node is already handling ", max,
                   " evidence transfers at once (limits.max_evidence_transfers); try again "
                   "in a moment"));
}

// The case lock, for a commit: other changes hold it for one ledger commit,
// so wait a little for it rather than fail a whole upload (in real time: it
// waits on other threads).
absl::StatusOr<std::shared_ptr<CaseLock>> LockForCommit(CaseStore* store, const std::string& id) {
  const absl::Time give_up = absl::Now() + absl::Seconds(2);
  for (;;) {
    auto lock = CaseLock::Acquire(store, id);
    if (lock.ok() || !absl::IsAborted(lock.status()) || absl::Now() >= give_up) return lock;
    absl::SleepFor(absl::Milliseconds(2));
  }
}

// Receives an upload (docs/architecture.md, "Evidence transfers"): header
// first, then data, hashed and sealed chunk by chunk into the staging area as
// it arrives, without the case lock, so the memory an upload uses is one
// message and one chunk. At the end the case lock is taken only to commit:
// the item is listed in the case (if the case still exists and is not
// erased) in one batch with its ledger entry. Anything else (a refusal, the
// client going away, an erase, a stream silent for the idle timeout) discards
// what was staged. Holds a transfer slot from the header to the end.
// Thread-safe: gRPC's reads and the watchdog's timeout meet under `mu_`.
// Counts a stream reactor for CaseServiceImpl::WaitForStreams: a base of each
// reactor, so it is destroyed after every member that uses the service.
class LiveStream {
 public:
  explicit LiveStream(std::atomic<int>* count) : count_(count) { count_->fetch_add(1); }
  ~LiveStream() { count_->fetch_sub(1); }
  LiveStream(const LiveStream&) = delete;
  LiveStream& operator=(const LiveStream&) = delete;

 private:
  std::atomic<int>* count_;
};

// The text of an upload's header, bounded as a case's evidence list (CheckCaseText).
absl::Status CheckHeaderText(const v1::AddEvidenceRequest::Header& header) {
  v1::Case listed;
  v1::EvidenceItem* item = listed.add_evidence();
  item->set_file_name(header.file_name());
  item->set_media_type(header.media_type());
  return CheckCaseText(listed);
}

class EvidenceUpload : public grpc::ServerReadReactor<v1::AddEvidenceRequest>, private LiveStream {
 public:
  EvidenceUpload(const IdentityResolver* identity, grpc::CallbackServerContext* ctx, Rpc rpc,
                 v1::EvidenceItem* resp, CaseStore* store, AccessLog* log, uint64_t max_bytes,
                 const Clock* clock, TransferSlots* slots, StreamWatchdog* watchdog,
                 std::atomic<int>* live)
      : LiveStream(live),
        identity_(identity),
        ctx_(ctx),
        rpc_(std::move(rpc)),
        resp_(resp),
        store_(store),
        log_(log),
        max_bytes_(max_bytes),
        clock_(clock),
        slots_(slots),
        watchdog_(watchdog) {
    watch_ = watchdog_->Register([this] { TimedOut(); });
    StartRead(&msg_);
  }

  void OnReadDone(bool ok) override {
    bool no_header = false;
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return;  // refused, timed out or committing: nothing more is read
      watch_->Touch();
      if (!ok && !started_) {
        ended_ = true;
        no_header = true;
      } else if (!ok) {
        Complete();
      } else if (!started_) {
        Start();
      } else {
        Receive();
      }
    }
    if (no_header) {
      // The client closed the upload without sending anything.
      Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the upload sent no header"));
    }
  }

  void OnDone() override {
    watchdog_->Unregister(watch_);  // waits for a running timeout of this stream
    if (staged_ && !committed_) {
      if (absl::Status st = store_->DiscardStaged(header_.case_id(), evidence_id_); !st.ok()) {
        log::Error(
            "evidence.discard_failed",
            {{"case", header_.case_id()}, {"evidence", evidence_id_}, {"error", st.message()}});
      }
    }
    delete this;
  }
  void OnCancel() override {}

 private:
  void Start() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    started_ = true;
    if (!msg_.has_header())
      return Refuse(absl::InvalidArgumentError("the first message must be the header"));
    header_ = msg_.header();
    caller_ =
        Begin(*identity_, ctx_, this, log_, rpc_,
              {"evidence.add", "case", header_.case_id(), "case-handling", header_.request_id()},
              &event_);
    if (!caller_) {
      ended_ = true;  // refused and recorded
      return;
    }
    if (header_.file_name().empty())
      return Refuse(absl::InvalidArgumentError("evidence needs a file name"));
    if (absl::Status st = CheckHeaderText(header_); !st.ok()) return Refuse(st);
    slot_ = slots_->TryAcquire();
    if (slot_ == nullptr) return Refuse(TooManyTransfers(slots_->max()));
    if (auto c = store_->Get(header_.case_id()); !c.ok()) return Refuse(c.status());
    evidence_id_ = "E-" + HexEncode(RandomBytes(6));
    event_.set_resource_kind("evidence");
    event_.set_resource_id(evidence_id_);
    if (auto st = store_->BeginStaging(header_.case_id(), evidence_id_); !st.ok())
      return Refuse(st);
    staged_ = true;
    StartRead(&msg_);
  }

  void Receive() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (msg_.has_header())
      return Refuse(absl::InvalidArgumentError("only the first message may be a header"));
    absl::string_view data = msg_.data();
    size_ += data.size();
    if (size_ > max_bytes_) {
      return Refuse(absl::InvalidArgumentError(
          absl::StrCat("evidence is larger than this node accepts (", max_bytes_,
                       " bytes; limits.max_evidence_bytes)")));
    }
    hasher_.Update(data);
    // Whole chunks go straight to staging; only a partial chunk waits here.
    if (!pending_.empty()) {
      const size_t n = std::min(kEvidenceChunkSize - pending_.size(), data.size());
      pending_.append(data.data(), n);
      data.remove_prefix(n);
      if (pending_.size() == kEvidenceChunkSize) {
        if (auto st = Stage(pending_); !st.ok()) return Refuse(st);
        pending_.clear();
      }
    }
    while (data.size() >= kEvidenceChunkSize) {
      if (auto st = Stage(data.substr(0, kEvidenceChunkSize)); !st.ok()) return Refuse(st);
      data.remove_prefix(kEvidenceChunkSize);
    }
    pending_.append(data.data(), data.size());
    msg_.Clear();
    StartRead(&msg_);
  }

  absl::Status Stage(absl::string_view chunk) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return store_->StageEvidenceChunk(header_.case_id(), evidence_id_, chunks_++, chunk);
  }

  // Records the refusal and answers with it; OnDone discards what was staged.
  void Refuse(const absl::Status& st) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ended_) return;
    ended_ = true;
    RecordRefusal(log_, this, event_, st);
  }

  // Called by the watchdog when the stream has been silent for its timeout.
  void TimedOut() {
    absl::MutexLock lock(&mu_);
    if (ended_ || committing_) return;
    if (!started_) {
      // Not even a header: say who it was, as far as the connection tells.
      event_.set_action("evidence.add");
      event_.set_resource_kind("case");
      auto auth = ctx_->auth_context();
      auto caller = auth ? CallerOf(*identity_, *auth) : absl::UnauthenticatedError("no identity");
      if (caller.ok()) {
        SetActor(*caller, &event_);
      } else {
        event_.set_actor_subject("unknown");
      }
    }
    log::Warn("evidence.upload_idle", {{"case", header_.case_id()}});
    Refuse(absl::DeadlineExceededError(absl::StrCat(
        "the upload sent nothing for ", absl::FormatDuration(watchdog_->timeout()),
        " (limits.stream_idle_timeout_seconds), so the node ended it; nothing was stored")));
  }

  void Complete() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!caller_) return;
    committing_ = true;
    if (!pending_.empty() || chunks_ == 0) {
      if (auto st = Stage(pending_); !st.ok()) return Refuse(st);
      pending_.clear();
    }
    // The case lock only now, to commit; the case must still be there.
    auto lock = LockForCommit(store_, header_.case_id());
    if (!lock.ok()) return Refuse(lock.status());
    auto c = store_->Get(header_.case_id());
    if (!c.ok()) {
      return Refuse(absl::Status(c.status().code(),
                                 absl::StrCat("the upload was discarded: ", c.status().message())));
    }
    const Sha256Digest digest = hasher_.Finish();
    v1::EvidenceItem item;
    item.set_id(evidence_id_);
    item.set_file_name(header_.file_name());
    item.set_media_type(header_.media_type().empty() ? "application/octet-stream"
                                                     : header_.media_type());
    item.set_size(size_);
    item.set_sha256(DigestBytes(digest));
    item.set_added_at(Rfc3339(clock_->Now()));
    item.set_added_by(caller_->Name());
    *c->add_evidence() = item;
    c->set_updated_at(item.added_at());
    // The case record and the end of staging commit in one batch with the entry.
    auto change = std::make_unique<ledger::Mutation>();
    if (auto st = store_->PutCase(change.get(), *c); !st.ok()) return Refuse(st);
    store_->EndStaging(change.get(), header_.case_id(), evidence_id_);
    ended_ = true;
    event_.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    event_.set_payload_sha256(DigestBytes(digest));
    v1::EvidenceItem* resp = resp_;
    RecordThenFinish(log_, this, {event_}, std::move(change),
                     [this, resp, item, lock = *std::move(lock)](uint64_t) {
                       committed_ = true;
                       *resp = item;
                       return grpc::Status::OK;
                     });
  }

  const IdentityResolver* identity_;
  grpc::CallbackServerContext* ctx_;
  const Rpc rpc_;
  v1::EvidenceItem* resp_;
  CaseStore* store_;
  AccessLog* log_;
  const uint64_t max_bytes_;
  const Clock* const clock_;
  TransferSlots* slots_;
  StreamWatchdog* watchdog_;
  StreamWatchdog::Registration* watch_ = nullptr;
  absl::Mutex mu_;
  v1::AddEvidenceRequest msg_;
  v1::AddEvidenceRequest::Header header_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  bool committing_ ABSL_GUARDED_BY(mu_) = false;
  bool staged_ = false;     // written under mu_; read in OnDone, after every read
  bool committed_ = false;  // set when the commit is durable, before the answer
  std::unique_ptr<TransferSlots::Slot> slot_;
  std::optional<Principal> caller_;
  v1::AccessEvent event_;
  std::string evidence_id_;
  uint64_t size_ = 0;
  uint32_t chunks_ = 0;
  std::string pending_;
  Sha256Hasher hasher_;
};

}  // namespace
}  // namespace corridor

namespace corridor {
namespace {

// Serves a download: checks every chunk and the whole item's size and SHA-256
// before anything is sent (reading it chunk by chunk), records the access,
// then streams it chunk by chunk again, so a download holds one chunk in
// memory. Holds a transfer slot; a client that stops reading for the idle
// timeout is cut off (recorded).
class EvidenceDownload : public grpc::ServerWriteReactor<v1::EvidenceChunk>, private LiveStream {
 public:
  EvidenceDownload(const IdentityResolver& identity, grpc::CallbackServerContext* ctx,
                   const Rpc& rpc, const v1::GetEvidenceRequest* req, CaseStore* store,
                   AccessLog* log, TransferSlots* slots, StreamWatchdog* watchdog, absl::Time now,
                   std::atomic<int>* live, Attestations* attestations)
      : LiveStream(live),
        ctx_(ctx),
        store_(store),
        log_(log),
        attestations_(attestations),
        watchdog_(watchdog),
        case_id_(req->case_id()),
        evidence_id_(req->evidence_id()) {
    watch_ = watchdog_->Register([this] { TimedOut(); });
    Start(identity, rpc, *req, slots, now);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      streaming_ = false;
      return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    }
    watch_->Touch();
    WriteNext();
  }
  void OnDone() override {
    watchdog_->Unregister(watch_);
    delete this;
  }

 private:
  // The call's access check and checks, then the recorded access, then the stream.
  void Start(const IdentityResolver& identity, const Rpc& rpc, const v1::GetEvidenceRequest& req,
             TransferSlots* slots, absl::Time now) {
    auto caller =
        Begin(identity, ctx_, this, log_, rpc,
              {"evidence.get", "evidence", req.evidence_id(), req.purpose(), req.request_id(),
               /*stated=*/true, req.case_id()},
              &event_);
    if (!caller) return;
    if (req.purpose().empty()) {
      return Refuse(absl::InvalidArgumentError("reading evidence needs a purpose (--purpose)"));
    }
    slot_ = slots->TryAcquire();
    if (slot_ == nullptr) return Refuse(TooManyTransfers(slots->max()));
    if (absl::Status st = FindItem(now); !st.ok()) return Refuse(st);
    event_.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    event_.set_payload_sha256(item_.sha256());
    log_->Record({event_}, nullptr, [this](absl::StatusOr<uint64_t> index) {
      if (!index.ok()) {
        Finish(grpc::Status(
            grpc::StatusCode::UNAVAILABLE,
            "the node could not record this access in its ledger, so it returned nothing"));
        return;
      }
      if (attestations_ == nullptr || !ReceivedFromPeer(case_)) return StartStreaming();
      // A received case's evidence: attested to the org that referred it first.
      attestations_->Attest(case_, event_, *index, [this](absl::Status st) {
        if (!st.ok()) return Finish(Unattested(st));
        StartStreaming();
      });
    });
  }

  void StartStreaming() {
    watch_->Touch();
    streaming_ = true;
    WriteNext();
  }

  void Refuse(const absl::Status& why) { RecordRefusal(log_, this, event_, why); }

  // Finds the item in its case, readable at `now`, and checks that this node
  // holds its content and that the content is intact.
  absl::Status FindItem(absl::Time now) {
    auto c = ReadableCase(*store_, case_id_, now);
    if (!c.ok()) return c.status();
    const v1::EvidenceItem* found = nullptr;
    for (const auto& item : c->evidence()) {
      if (item.id() == evidence_id_) found = &item;
    }
    if (found == nullptr) {
      return absl::NotFoundError(
          absl::StrCat("case ", case_id_, " has no evidence ", evidence_id_));
    }
    item_ = *found;
    case_ = *c;
    if (absl::Status st = ContentHeldHere(*c); !st.ok()) return st;
    if (absl::Status st = Verify(); !st.ok()) {
      log::Error("evidence.corrupt", {{"case", case_id_}, {"evidence", evidence_id_}});
      return st;
    }
    return absl::OkStatus();
  }

  // A received case holds only the metadata of the evidence shared with it:
  // the content stayed with the org that referred the case. Not corruption.
  absl::Status ContentHeldHere(const v1::Case& c) {
    if (item_.size() == 0 ||
        !absl::IsNotFound(store_->ReadEvidenceChunk(case_id_, evidence_id_, 0).status())) {
      return absl::OkStatus();
    }
    for (const auto& link : c.referrals()) {
      if (link.outgoing()) continue;
      return absl::FailedPreconditionError(absl::StrCat(
          "the content of evidence ", item_.id(), " stayed with ", link.peer_org(),
          ", who referred this case (their case ", link.peer_case_id(),
          "); only its description, size and SHA-256 were shared. Ask ", link.peer_org(),
          " for the file; its SHA-256 here lets you check the copy they send"));
    }
    return absl::OkStatus();
  }

  // Chunks of an item: at least one (an empty item has one empty chunk).
  uint32_t ChunkCount() const {
    return static_cast<uint32_t>(
        std::max<uint64_t>(1, (item_.size() + kEvidenceChunkSize - 1) / kEvidenceChunkSize));
  }

  // Every chunk opens, and together they have the recorded size and SHA-256.
  absl::Status Verify() {
    Sha256Hasher hasher;
    uint64_t size = 0;
    for (uint32_t i = 0; i < ChunkCount(); ++i) {
      auto chunk = store_->ReadEvidenceChunk(case_id_, evidence_id_, i);
      if (absl::IsNotFound(chunk.status())) {
        return absl::DataLossError(
            absl::StrCat("evidence ", evidence_id_, ": chunk ", i, " is missing"));
      }
      if (!chunk.ok()) return chunk.status();
      size += chunk->size();
      hasher.Update(*chunk);
    }
    if (size != item_.size() || DigestBytes(hasher.Finish()) != item_.sha256()) {
      return absl::DataLossError(absl::StrCat(
          "evidence ", item_.id(), " does not match the SHA-256 recorded when it was added"));
    }
    return absl::OkStatus();
  }

  void WriteNext() {
    if (next_ >= ChunkCount()) {
      streaming_ = false;
      return Finish(grpc::Status::OK);
    }
    auto data = store_->ReadEvidenceChunk(case_id_, evidence_id_, next_);
    if (!data.ok()) {
      streaming_ = false;
      log::Error("evidence.corrupt", {{"case", case_id_}, {"evidence", evidence_id_}});
      return Finish(grpc::Status(
          grpc::StatusCode::DATA_LOSS,
          absl::StrCat("evidence ", evidence_id_,
                       " changed on disk while it was being sent: ", data.status().message())));
    }
    chunk_.Clear();
    if (next_ == 0) *chunk_.mutable_item() = item_;
    chunk_.set_data(*std::move(data));
    ++next_;
    StartWrite(&chunk_);
  }

  // The client has read nothing for the idle timeout: cut it off, and say so
  // in the ledger (its access was recorded as allowed before sending).
  void TimedOut() {
    if (!streaming_.exchange(false)) return;  // not sending (yet, or any more)
    log::Warn("evidence.download_idle", {{"case", case_id_}, {"evidence", evidence_id_}});
    log_->RecordIdleCutOff(event_, watchdog_->timeout(), "download", next_.load(), "chunks");
    ctx_->TryCancel();
  }

  grpc::CallbackServerContext* ctx_;
  CaseStore* store_;
  AccessLog* log_;
  Attestations* attestations_;  // null: reads are not attested
  StreamWatchdog* watchdog_;
  StreamWatchdog::Registration* watch_ = nullptr;
  const std::string case_id_, evidence_id_;
  std::unique_ptr<TransferSlots::Slot> slot_;
  v1::AccessEvent event_;  // not changed once streaming_ is set
  // Between the recorded access and the end of the stream: the watchdog may cut it off.
  std::atomic<bool> streaming_{false};
  v1::EvidenceItem item_;
  v1::Case case_;  // the item's case, as read for the call
  std::atomic<uint32_t> next_{0};
  v1::EvidenceChunk chunk_;
};

}  // namespace

grpc::ServerReadReactor<v1::AddEvidenceRequest>* CaseServiceImpl::AddEvidence(
    grpc::CallbackServerContext* ctx, v1::EvidenceItem* resp) {
  return new EvidenceUpload(identity_, ctx, Cases(), resp, store_, log_,
                            config_.limits().max_evidence_bytes(), clock_, &transfers_,
                            watchdog_.get(), &live_streams_);
}

grpc::ServerWriteReactor<v1::EvidenceChunk>* CaseServiceImpl::GetEvidence(
    grpc::CallbackServerContext* ctx, const v1::GetEvidenceRequest* req) {
  return new EvidenceDownload(*identity_, ctx, Cases(), req, store_, log_, &transfers_,
                              watchdog_.get(), clock_->Now(), &live_streams_, attestations_);
}

void CaseServiceImpl::WaitForStreams() {
  while (live_streams_.load() > 0) absl::SleepFor(absl::Milliseconds(1));
}

grpc::ServerUnaryReactor* CaseServiceImpl::ListEvidence(grpc::CallbackServerContext* ctx,
                                                        const v1::ListEvidenceRequest* req,
                                                        v1::ListEvidenceResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Cases(),
                  {"evidence.list", "case", req->case_id(), req->purpose(), req->request_id(),
                   /*stated=*/true})) {
    return call.reactor();
  }
  // File names and media types can name the worker: a list is a read of personal data.
  if (req->purpose().empty()) {
    return call.Refuse(absl::InvalidArgumentError(
        "listing a case's evidence shows its file names and needs a purpose (--purpose)"));
  }
  auto c = ReadableCase(*store_, req->case_id(), clock_->Now());
  if (!c.ok()) return call.Refuse(c.status());
  if (attestations_ != nullptr && ReceivedFromPeer(*c)) {
    return AttestedRead(call, *std::move(c), [resp](const v1::Case& read) {
      for (const auto& i : read.evidence()) *resp->add_items() = i;
    });
  }
  return call.Allow(nullptr, [resp, items = c->evidence()](uint64_t) {
    for (const auto& i : items) *resp->add_items() = i;
    return grpc::Status::OK;
  });
}

}  // namespace corridor
