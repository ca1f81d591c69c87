#include "server/federation/evidence_service.h"

#include "absl/strings/str_cat.h"
#include "server/audit/audited_call.h"
#include "server/auth/refusal_sink.h"
#include "server/common/edge.h"
#include "server/federation/evidence_policy.h"

namespace corridor {
namespace {

// The RPC of EvidenceService being served (server/auth/rpc.h).
Rpc Evidence(const char* handler = __builtin_FUNCTION()) {
  return Rpc::Served<v1::EvidenceService>(handler);
}

}  // namespace

grpc::ServerUnaryReactor* EvidenceServiceImpl::Request(grpc::CallbackServerContext* ctx,
                                                       const v1::RequestEvidenceRequest* req,
                                                       v1::RequestEvidenceResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  auto caller = call.Begin(*identity_, ctx, Evidence(),
                           {"evidence.request", "case", req->case_id(), req->purpose(),
                            req->request_id(), /*stated=*/true});
  if (!caller) return call.reactor();
  if (req->purpose().empty()) {
    return call.Refuse(
        absl::InvalidArgumentError("an evidence request needs a purpose (--purpose)"));
  }
  auto change = requests_->PrepareRequest(*caller, *req, resp, &call.event());
  if (!change.ok()) return call.Refuse(change.status());
  std::vector<v1::AccessEvent> events = {call.event()};
  return call.Record(std::move(events), std::move(change->batch),
                     [exchange = exchange_, lock = std::move(change->lock)](uint64_t) {
                       exchange->Wake();
                       return grpc::Status::OK;
                     });
}

grpc::ServerUnaryReactor* EvidenceServiceImpl::List(grpc::CallbackServerContext* ctx,
                                                    const v1::ListEvidenceRequestsRequest*,
                                                    v1::ListEvidenceRequestsResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Evidence(),
                  {"evidence.requests", "evidence-request", "", "case-handling", ""})) {
    return call.reactor();
  }
  auto list = requests_->List();
  if (!list.ok()) return call.Refuse(list.status());
  return call.Allow(nullptr, [resp, list = *std::move(list)](uint64_t) {
    for (const auto& s : list) *resp->add_requests() = s;
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* EvidenceServiceImpl::Get(grpc::CallbackServerContext* ctx,
                                                   const v1::GetEvidenceRequestRequest* req,
                                                   v1::EvidenceRequestDetail* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(
          *identity_, ctx, Evidence(),
          {"evidence.request_view", "evidence-request", req->request_id(), "case-handling", ""})) {
    return call.reactor();
  }
  if (auto st = ValidateIdentifier("the request id", req->request_id()); !st.ok()) {
    return call.Refuse(st);
  }
  if (auto st = ValidateOptionalIdentifier("--from", req->peer_org()); !st.ok()) {
    return call.Refuse(st);
  }
  auto detail = requests_->Get(req->request_id(), req->peer_org(), &call.event());
  if (!detail.ok()) return call.Refuse(detail.status());
  return call.Allow(nullptr, [resp, detail = *std::move(detail)](uint64_t) {
    *resp = detail;
    return grpc::Status::OK;
  });
}

grpc::ServerUnaryReactor* EvidenceServiceImpl::Decide(grpc::CallbackServerContext* ctx,
                                                      const v1::DecideEvidenceRequest* req,
                                                      v1::DecideEvidenceResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  auto caller = call.Begin(*identity_, ctx, Evidence(),
                           {"evidence.decide", "evidence-request", req->request_id(),
                            "case-handling", req->idempotency_id()});
  if (!caller) return call.reactor();
  auto change = requests_->PrepareDecision(*caller, *req, resp, &call.event());
  if (!change.ok()) return call.Refuse(change.status());
  std::vector<v1::AccessEvent> events = {call.event()};
  for (auto& e : change->events) events.push_back(std::move(e));
  return call.Record(std::move(events), std::move(change->batch),
                     [exchange = exchange_, lock = std::move(change->lock)](uint64_t) {
                       exchange->Wake();
                       return grpc::Status::OK;
                     });
}

grpc::ServerUnaryReactor* EvidenceServiceImpl::Fetch(grpc::CallbackServerContext* ctx,
                                                     const v1::FetchGrantedRequest* req,
                                                     v1::FetchGrantedResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  auto caller =
      call.Begin(*identity_, ctx, Evidence(),
                 {"evidence.fetch", "evidence-request", req->request_id(), "case-handling", ""});
  if (!caller) return call.reactor();
  if (auto st = ValidateIdentifier("the request id", req->request_id()); !st.ok()) {
    return call.Refuse(st);
  }
  auto* reactor = call.reactor();
  AccessLog* log = log_;
  requests_->FetchGranted(
      *caller, req->request_id(), call.event(),
      [reactor, resp, log, ev = call.event()](absl::StatusOr<v1::FetchGrantedResponse> r) {
        if (r.ok()) {
          *resp = *std::move(r);
          reactor->Finish(grpc::Status::OK);
          return;
        }
        // A failed item is recorded where it failed; a request that could not
        // be fetched at all is recorded here.
        if (absl::IsNotFound(r.status()) || absl::IsFailedPrecondition(r.status())) {
          v1::AccessEvent refused = ev;
          refused.set_outcome(v1::ACCESS_OUTCOME_DENIED);
          refused.set_reason(std::string(r.status().message()));
          log->RecordRefusalSync(refused).IgnoreError();
        }
        reactor->Finish(ToGrpcStatus(r.status()));
      });
  return reactor;
}

grpc::ServerUnaryReactor* EvidenceServiceImpl::Custody(grpc::CallbackServerContext* ctx,
                                                       const v1::CustodyRequest* req,
                                                       v1::CustodyResponse* resp) {
  AuditedCall call(log_, ctx->DefaultReactor());
  if (!call.Begin(*identity_, ctx, Evidence(),
                  {"evidence.custody", "custody", req->evidence_id(), "audit", ""})) {
    return call.reactor();
  }
  if (auto st = ValidateIdentifier("the evidence id", req->evidence_id()); !st.ok()) {
    return call.Refuse(st);
  }
  return call.Allow(
      nullptr,
      [resp, requests = requests_, id = req->evidence_id()](uint64_t) {
        auto custody = requests->Custody(id);
        if (!custody.ok()) return ToGrpcStatus(custody.status());
        *resp = *std::move(custody);
        return grpc::Status::OK;
      },
      slow_);
}

namespace {

// The holder's side of one fetch: the recorded serve, then the item in
// chunks, then the receipt naming the serve's ledger index.
class FetchServer : public grpc::ServerWriteReactor<v1::FetchEvidenceChunk> {
 public:
  FetchServer(absl::StatusOr<Principal> caller, const v1::FetchEvidenceRequest& req,
              EvidenceRequests* requests, AccessLog* log)
      : requests_(requests), log_(log) {
    requests_->StreamStarted();
    if (!caller.ok()) {
      Finish(ToGrpcStatus(caller.status()));
      return;
    }
    SetActor(*caller, &event_);
    event_.set_action("evidence.serve");
    event_.set_resource_kind("evidence");
    event_.set_resource_id(req.item_id());
    event_.set_peer_org(caller->org);
    auto serving = requests_->PrepareServe(*caller, req, &event_);
    if (!serving.ok()) {
      RecordRefusal(log_, this, event_, serving.status());
      return;
    }
    serving_ = *std::move(serving);
    event_.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    log_->Record({event_}, std::move(serving_.change.batch),
                 [this](absl::StatusOr<uint64_t> index) { Recorded(index); });
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the requester went away"));
    WriteNext();
  }
  void OnDone() override {
    EvidenceRequests* requests = requests_;
    delete this;
    requests->StreamDone();
  }

 private:
  void Recorded(absl::StatusOr<uint64_t> index) {
    serving_.change.lock.reset();
    if (!index.ok()) {
      return Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                 "the holder could not record this fetch, so it sent nothing"));
    }
    serving_.receipt.set_ledger_index(*index);
    WriteNext();
  }

  void WriteNext() {
    msg_.Clear();
    if (next_ == 0) *msg_.mutable_item() = serving_.item;
    if (next_ < serving_.chunks.size()) {
      msg_.set_data(std::move(serving_.chunks[next_]));
    } else if (next_ == serving_.chunks.size()) {
      auto receipt = requests_->SignFetchReceipt(serving_.receipt);
      if (!receipt.ok()) {
        return Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "the holder could not sign the fetch receipt; fetch again"));
      }
      *msg_.mutable_receipt() = *std::move(receipt);
    } else {
      return Finish(grpc::Status::OK);
    }
    ++next_;
    StartWrite(&msg_);
  }

  EvidenceRequests* requests_;
  AccessLog* log_;
  v1::AccessEvent event_;
  EvidenceRequests::Serving serving_;
  size_t next_ = 0;
  v1::FetchEvidenceChunk msg_;
};

}  // namespace

grpc::ServerWriteReactor<v1::FetchEvidenceChunk>* ServeFetch(absl::StatusOr<Principal> caller,
                                                             const v1::FetchEvidenceRequest& req,
                                                             EvidenceRequests* requests,
                                                             AccessLog* log) {
  return new FetchServer(std::move(caller), req, requests, log);
}

}  // namespace corridor
