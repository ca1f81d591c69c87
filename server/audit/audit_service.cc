#include "server/audit/audit_service.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/lib/grpc_util.h"
#include "ledger/base/log.h"
#include "ledger/merkle.h"
#include "server/audit/audited_call.h"
#include "server/common/edge.h"

namespace corridor {
namespace {

// The most entry bytes one QueryEvents or GetEntries answer carries (well under
// gRPC's 4 MiB message limit, whatever the entries hold).
constexpr size_t kMaxAuditAnswerBytes = 1 << 20;
// The most cosignatures GetCheckpoint can be asked for.
constexpr uint32_t kMaxCosignaturesAsked = 1000;

Rpc Audit(const char* handler = __builtin_FUNCTION()) {
  return Rpc::Served<v1::AuditService>(handler);
}

v1::LoggedEvent Logged(uint64_t index, const std::string& entry) {
  v1::LoggedEvent out;
  out.set_index(index);
  out.set_entry(entry);
  if (auto e = AccessLog::Decode(entry); e.ok()) *out.mutable_event() = *e;
  return out;
}

// The query a QueryEvents request asks for; InvalidArgument for a bad time
// range or page token.
absl::StatusOr<AccessLog::Query> QueryOf(const v1::QueryEventsRequest& req) {
  AccessLog::Query q;
  q.case_id = req.case_id();
  q.actor = req.actor();
  q.org = req.org();
  q.action = req.action();
  q.outcome = req.outcome();
  q.limit = req.page_size() == 0 ? 50 : std::min<uint32_t>(req.page_size(), 1000);
  std::string err;
  if ((!req.after().empty() && !absl::ParseTime(absl::RFC3339_full, req.after(), &q.after, &err)) ||
      (!req.before().empty() &&
       !absl::ParseTime(absl::RFC3339_full, req.before(), &q.before, &err)) ||
      (!req.page_token().empty() && !absl::SimpleAtoi(req.page_token(), &q.before_index))) {
    return absl::InvalidArgumentError("bad time range or page token");
  }
  return q;
}

// A page of hits: it ends at `limit` entries or kMaxAuditAnswerBytes, whichever
// comes first, so no set of entries can make an answer too large to send.
void AnswerPage(const std::vector<AccessLog::Hit>& hits, size_t limit,
                v1::QueryEventsResponse* resp) {
  size_t bytes = 0;
  for (const auto& h : hits) {
    if (resp->events_size() > 0 && bytes + h.entry.size() > kMaxAuditAnswerBytes) {
      resp->set_next_page_token(std::to_string(resp->events().rbegin()->index()));
      return;
    }
    bytes += h.entry.size();
    *resp->add_events() = Logged(h.index, h.entry);
  }
  if (hits.size() >= limit) resp->set_next_page_token(std::to_string(hits.back().index));
}

grpc::Status AnswerInclusionProof(const ledger::Ledger& ledger, uint64_t index, uint64_t asked,
                                  v1::InclusionProofResponse* resp) {
  const ledger::Head h = ledger.head();
  const uint64_t size = asked == 0 ? h.size : asked;
  auto proof = ledger.InclusionProof(index, size);
  if (!proof.ok()) return ToGrpcStatus(proof.status());
  auto entry = ledger.Entry(index);
  if (!entry.ok()) return ToGrpcStatus(entry.status());
  resp->set_index(index);
  resp->set_tree_size(size);
  resp->set_entry(*entry);
  resp->set_leaf_hash(merkle::ToBytes(merkle::HashLeaf(*entry)));
  for (const auto& p : *proof) resp->add_proof(merkle::ToBytes(p));
  if (size == h.size) resp->set_checkpoint(h.checkpoint);
  return grpc::Status::OK;
}

grpc::Status AnswerConsistencyProof(const ledger::Ledger& ledger, uint64_t old_size, uint64_t asked,
                                    v1::ConsistencyProofResponse* resp) {
  const ledger::Head h = ledger.head();
  const uint64_t size = asked == 0 ? h.size : asked;
  auto proof = ledger.ConsistencyProof(old_size, size);
  if (!proof.ok()) return ToGrpcStatus(proof.status());
  auto old_root = ledger.RootAt(old_size);
  auto new_root = ledger.RootAt(size);
  if (!old_root.ok()) return ToGrpcStatus(old_root.status());
  if (!new_root.ok()) return ToGrpcStatus(new_root.status());
  resp->set_old_size(old_size);
  resp->set_new_size(size);
  resp->set_old_root(merkle::ToBytes(*old_root));
  resp->set_new_root(merkle::ToBytes(*new_root));
  for (const auto& p : *proof) resp->add_proof(merkle::ToBytes(p));
  if (size == h.size) resp->set_checkpoint(h.checkpoint);
  return grpc::Status::OK;
}

// At most kMaxAuditAnswerBytes of entries [begin, end) (always at least one):
// the caller asks again from the index after the last one returned.
grpc::Status AnswerEntries(const ledger::Ledger& ledger, uint64_t begin, uint64_t end,
                           v1::GetEntriesResponse* resp) {
  auto entries = ledger.Entries(begin, end);
  if (!entries.ok()) return ToGrpcStatus(entries.status());
  size_t bytes = 0;
  for (uint64_t i = begin; i < end; ++i) {
    const std::string& entry = (*entries)[i - begin];
    if (i > begin && bytes + entry.size() > kMaxAuditAnswerBytes) break;
    bytes += entry.size();
    *resp->add_events() = Logged(i, entry);
  }
  return grpc::Status::OK;
}

// What an export past the limit is told.
absl::Status TooManyExports() {
  return absl::ResourceExhaustedError(
      absl::StrCat("the node is already sending ", AuditServiceImpl::kMaxExportsAtOnce,
                   " ledger exports at once; try again in a moment"));
}

// Sends an export (ledger::ExportFrame) in pieces of at most
// kMaxAuditAnswerBytes, so an export of any size fits gRPC's message limit,
// building it page by page as the client reads it: the frame at the latest
// checkpoint once, then kExportPageEntries entries per ledger read, so it
// holds about one piece in memory. The access is recorded before the first
// piece goes; ledger reads run on the bulk executor. Holds an export slot; a
// client that reads nothing for the idle timeout is cut off (recorded).
class ExportStream : public grpc::ServerWriteReactor<v1::ExportResponse> {
 public:
  ExportStream(const IdentityResolver& identity, grpc::CallbackServerContext* ctx,
               const v1::ExportRequest* req, const Rpc& rpc, AccessLog* log, Executor* bulk,
               TransferSlots* slots, StreamWatchdog* watchdog, std::atomic<int>* live)
      : ctx_(ctx),
        log_(log),
        ledger_(log->ledger()),
        bulk_(bulk),
        watchdog_(watchdog),
        live_(live) {
    live_->fetch_add(1);
    watch_ = watchdog_->Register([this] { TimedOut(); });
    AuditedCall<ExportStream> call(log, this);
    if (!call.Begin(
            identity, ctx, rpc,
            {"audit.export", "ledger", absl::StrCat(req->begin(), "-", req->end()), "audit", ""})) {
      return;
    }
    slot_ = slots->TryAcquire();
    if (slot_ == nullptr) {
      call.Refuse(TooManyExports());
      return;
    }
    event_ = call.event();
    const uint64_t begin = req->begin(), asked = req->end();
    call.Allow(
        nullptr, [this, begin, asked](uint64_t) { return Open(begin, asked); }, bulk);
  }

  // What the helpers above call when the answer is known: an error ends the
  // call; OK starts sending the export (on the bulk executor).
  void Finish(grpc::Status status) {
    if (!status.ok()) return ServerWriteReactor::Finish(status);
    watch_->Touch();
    streaming_ = true;
    WriteNext();
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      streaming_ = false;
      return ServerWriteReactor::Finish(
          grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    }
    watch_->Touch();
    bulk_->Post([this] { WriteNext(); });
  }
  void OnDone() override {
    watchdog_->Unregister(watch_);
    // The count goes down last: WaitForStreams' caller may free the service (its
    // export slots among it) as soon as it reads zero. TSan found the slot released
    // after the count in the first whole run of this code.
    std::atomic<int>* live = live_;
    delete this;
    live->fetch_sub(1);
  }

 private:
  // The export's frame for [begin, asked) (asked 0: to the end of the ledger).
  grpc::Status Open(uint64_t begin, uint64_t asked) {
    end_ = asked == 0 ? ledger_->head().size : asked;
    auto frame = ledger_->ExportFrameOf(begin, end_);
    if (!frame.ok()) return ToGrpcStatus(frame.status());
    pending_ = std::move(frame->head);
    tail_ = std::move(frame->tail);
    next_ = begin;
    return grpc::Status::OK;
  }

  // Tops up `pending_` to a whole piece (or to what is left of the export),
  // one page of entries at a time.
  absl::Status Fill() {
    while (pending_.size() < kMaxAuditAnswerBytes && !tail_added_) {
      if (next_ >= end_) {
        pending_ += tail_;
        tail_added_ = true;
        break;
      }
      const uint64_t to = std::min(end_, next_ + AuditServiceImpl::kExportPageEntries);
      auto lines = ledger_->ExportEntryLines(next_, to);
      if (!lines.ok()) return lines.status();
      pending_ += *lines;
      next_ = to;
    }
    return absl::OkStatus();
  }

  void WriteNext() {
    if (absl::Status st = Fill(); !st.ok()) {
      streaming_ = false;
      log::Error("audit.export_failed", {{"error", st.message()}});
      return ServerWriteReactor::Finish(ToGrpcStatus(st));
    }
    if (pending_.empty()) {
      streaming_ = false;
      return ServerWriteReactor::Finish(grpc::Status::OK);
    }
    const size_t n = std::min(kMaxAuditAnswerBytes, pending_.size());
    piece_.set_export_(pending_.substr(0, n));
    pending_.erase(0, n);
    ++pieces_;
    StartWrite(&piece_);
  }

  // The client has read nothing for the idle timeout: cut it off, and say so
  // in the ledger (its access was recorded as allowed before sending).
  void TimedOut() {
    if (!streaming_.exchange(false)) return;  // not sending (yet, or any more)
    log::Warn("audit.export_idle",
              {{"actor", absl::StrCat(event_.actor_org(), "/", event_.actor_subject())}});
    log_->RecordIdleCutOff(event_, watchdog_->timeout(), "export", pieces_.load(), "pieces");
    ctx_->TryCancel();
  }

  grpc::CallbackServerContext* ctx_;
  AccessLog* log_;
  const ledger::Ledger* ledger_;
  Executor* bulk_;
  StreamWatchdog* watchdog_;
  StreamWatchdog::Registration* watch_ = nullptr;
  std::atomic<int>* live_;
  std::unique_ptr<TransferSlots::Slot> slot_;
  v1::AccessEvent event_;  // not changed once streaming_ is set
  // Between the recorded access and the end of the stream: the watchdog may cut it off.
  std::atomic<bool> streaming_{false};
  // The export: [next_, end_) still to read, then tail_; pending_ is built
  // and not yet sent. Touched by one callback at a time (each write's
  // completion posts the next).
  uint64_t next_ = 0, end_ = 0;
  std::string pending_, tail_;
  bool tail_added_ = false;
  std::atomic<uint64_t> pieces_{0};
  v1::ExportResponse piece_;
};

}  // namespace

grpc::ServerUnaryReactor* AuditServiceImpl::QueryEvents(grpc::CallbackServerContext* ctx,
                                                        const v1::QueryEventsRequest* req,
                                                        v1::QueryEventsResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Audit(),
                  {"audit.query", "ledger", req->case_id(), "audit", req->request_id()})) {
    return call.reactor();
  }
  auto query = QueryOf(*req);
  if (!query.ok()) return call.Refuse(query.status());
  auto hits = log_->Find(*query);
  if (!hits.ok()) return call.Refuse(hits.status());
  // The case asked about, as a refusal would record it: a typed name never.
  call.event().set_resource_id(IdForLedger(req->case_id()));
  call.event().set_case_id(IdForLedger(req->case_id()));
  return call.Allow(nullptr, [resp, hits = *std::move(hits), limit = query->limit](uint64_t) {
    AnswerPage(hits, limit, resp);
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* AuditServiceImpl::GetCheckpoint(grpc::CallbackServerContext* ctx,
                                                          const v1::GetCheckpointRequest* req,
                                                          v1::CheckpointResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Audit(), {"audit.checkpoint", "ledger", "", "audit", ""})) {
    return call.reactor();
  }
  ledger::Ledger* ledger = log_->ledger();
  if (const uint32_t k = req->min_cosignatures(); k > 0) {
    // Witnesses are the other members: no more can cosign than the roster lists.
    if (cosigned_ == nullptr || k > kMaxCosignaturesAsked) {
      return call.Refuse(absl::InvalidArgumentError(
          absl::StrCat("at most ", kMaxCosignaturesAsked, " cosignatures can be asked for")));
    }
    call.event().set_resource_id(absl::StrCat("cosigned/", k));
    return call.Allow(nullptr, [resp, ledger, k, cosigned = cosigned_](uint64_t) {
      resp->set_verifier_key(ledger->verifier().ToString());
      return ToGrpcStatus(cosigned(k, resp));
    });
  }
  return call.Allow(nullptr, [resp, ledger](uint64_t) {
    const ledger::Head h = ledger->head();
    resp->set_size(h.size);
    resp->set_root_hash(merkle::ToBytes(h.root));
    resp->set_checkpoint(h.checkpoint);
    resp->set_verifier_key(ledger->verifier().ToString());
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* AuditServiceImpl::GetInclusionProof(grpc::CallbackServerContext* ctx,
                                                              const v1::InclusionProofRequest* req,
                                                              v1::InclusionProofResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Audit(),
                  {"audit.prove", "ledger", std::to_string(req->index()), "audit", ""})) {
    return call.reactor();
  }
  ledger::Ledger* ledger = log_->ledger();
  const uint64_t index = req->index(), asked = req->tree_size();
  return call.Allow(
      nullptr,
      [resp, ledger, index, asked](uint64_t) {
        return AnswerInclusionProof(*ledger, index, asked, resp);
      },
      bulk_);
}

grpc::ServerUnaryReactor* AuditServiceImpl::GetConsistencyProof(
    grpc::CallbackServerContext* ctx, const v1::ConsistencyProofRequest* req,
    v1::ConsistencyProofResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Audit(), {"audit.consistency", "ledger", "", "audit", ""})) {
    return call.reactor();
  }
  ledger::Ledger* ledger = log_->ledger();
  const uint64_t old_size = req->old_size(), asked = req->new_size();
  return call.Allow(
      nullptr,
      [resp, ledger, old_size, asked](uint64_t) {
        return AnswerConsistencyProof(*ledger, old_size, asked, resp);
      },
      bulk_);
}

grpc::ServerUnaryReactor* AuditServiceImpl::GetEntries(grpc::CallbackServerContext* ctx,
                                                       const v1::GetEntriesRequest* req,
                                                       v1::GetEntriesResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(
          *identity_, ctx, Audit(),
          {"audit.entries", "ledger", absl::StrCat(req->begin(), "-", req->end()), "audit", ""})) {
    return call.reactor();
  }
  if (req->end() < req->begin() || req->end() - req->begin() > 1000) {
    return call.Refuse(absl::InvalidArgumentError("ask for at most 1000 entries at a time"));
  }
  ledger::Ledger* ledger = log_->ledger();
  const uint64_t begin = req->begin(), end = req->end();
  return call.Allow(
      nullptr,
      [resp, ledger, begin, end](uint64_t) { return AnswerEntries(*ledger, begin, end, resp); },
      bulk_);
}

grpc::ServerWriteReactor<v1::ExportResponse>* AuditServiceImpl::Export(
    grpc::CallbackServerContext* ctx, const v1::ExportRequest* req) {
  return new ExportStream(*identity_, ctx, req, Audit(), log_, bulk_, &exports_, watchdog_.get(),
                          &live_streams_);
}

// InvalidArgument unless `org` is a member of the roster in force: an org name
// typed by mistake (it may be anyone's name) never reaches the ledger.
static absl::Status CheckMember(const IdentityResolver& identity, const std::string& org) {
  auto roster = identity.roster();
  for (const auto& m : roster->members()) {
    if (m.org() == org) return absl::OkStatus();
  }
  return absl::InvalidArgumentError(
      "that org is not a member of the federation (corridorctl health lists the peers)");
}

grpc::ServerUnaryReactor* AuditServiceImpl::ListAttestations(grpc::CallbackServerContext* ctx,
                                                             const v1::ListAttestationsRequest* req,
                                                             v1::ListAttestationsResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Audit(),
                  {"audit.attestations", "case", req->case_id(), "audit", ""})) {
    return call.reactor();
  }
  if (req->case_id().empty()) {
    return call.Refuse(absl::InvalidArgumentError("name the case (--case)"));
  }
  AccessLog::Query q;
  q.case_id = req->case_id();
  q.action = "downstream.access";
  q.limit = req->page_size() == 0 ? 100 : std::min<uint32_t>(req->page_size(), 1000);
  if (!req->page_token().empty() && !absl::SimpleAtoi(req->page_token(), &q.before_index)) {
    return call.Refuse(absl::InvalidArgumentError("bad page token"));
  }
  auto hits = log_->Find(q);
  if (!hits.ok()) return call.Refuse(hits.status());
  // The case asked about, as a refusal would record it: a typed name never.
  call.event().set_resource_id(IdForLedger(req->case_id()));
  call.event().set_case_id(IdForLedger(req->case_id()));
  return call.Allow(nullptr, [resp, hits = *std::move(hits), limit = q.limit](uint64_t) {
    for (const auto& h : hits) {
      v1::StoredAttestation* a = resp->add_attestations();
      a->set_envelope(h.event.attestation());
      a->set_ledger_index(h.index);
      *a->mutable_event() = h.event;
      a->mutable_event()->clear_attestation();
    }
    if (hits.size() >= limit) resp->set_next_page_token(std::to_string(hits.back().index));
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* AuditServiceImpl::ProveDownstream(grpc::CallbackServerContext* ctx,
                                                            const v1::ProveDownstreamRequest* req,
                                                            v1::InclusionProofResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(
          *identity_, ctx, Audit(),
          {"audit.prove_downstream", "ledger", std::to_string(req->index()), "audit", ""})) {
    return call.reactor();
  }
  if (auto st = CheckMember(*identity_, req->org()); !st.ok()) return call.Refuse(st);
  call.event().set_peer_org(req->org());
  if (!downstream_.prove) {
    return call.Refuse(absl::UnimplementedError("this node does not fetch peers' proofs"));
  }
  auto prove = downstream_.prove;
  const std::string org = req->org();
  const uint64_t index = req->index();
  return call.Allow(
      nullptr,
      [resp, prove, org, index](uint64_t) {
        auto proof = prove(org, index);
        if (!proof.ok()) return ToGrpcStatus(proof.status());
        *resp = *std::move(proof);
        return grpc::Status::OK;
      },
      bulk_);
}

grpc::ServerUnaryReactor* AuditServiceImpl::Reconcile(grpc::CallbackServerContext* ctx,
                                                      const v1::ReconcileRequest* req,
                                                      v1::ReconcileResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Audit(), {"audit.reconcile", "ledger", "", "audit", ""})) {
    return call.reactor();
  }
  if (auto st = CheckMember(*identity_, req->peer()); !st.ok()) return call.Refuse(st);
  call.event().set_peer_org(req->peer());
  if (!downstream_.reconcile) {
    return call.Refuse(absl::UnimplementedError("this node does not reconcile with peers"));
  }
  auto reconcile = downstream_.reconcile;
  const std::string peer = req->peer();
  return call.Allow(
      nullptr,
      [resp, reconcile, peer](uint64_t) {
        auto out = reconcile(peer);
        if (!out.ok()) return ToGrpcStatus(out.status());
        *resp = *std::move(out);
        return grpc::Status::OK;
      },
      bulk_);
}

void AuditServiceImpl::WaitForStreams() {
  while (live_streams_.load() > 0) absl::SleepFor(absl::Milliseconds(1));
}

}  // namespace corridor
