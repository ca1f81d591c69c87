// CaseService (caseworkers, prosecutors, approvers): every call that
// touches a case — allowed, denied or failed — appends an
// AccessEvent, and a call returns data only after that event is durable
// (fail closed: if the ledger cannot write, the call fails UNAVAILABLE and
// returns nothing). A change and its event commit in one synced batch.
// Thread-safe.
#ifndef CORRIDOR_SERVER_CASES_CASE_SERVICE_H_
#define CORRIDOR_SERVER_CASES_CASE_SERVICE_H_

#include <atomic>
#include <functional>
#include <string>

#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/config.pb.h"
#include "server/audit/access_log.h"
#include "server/audit/audited_call.h"
#include "server/auth/identity.h"
#include "server/common/executor.h"
#include "server/common/rate_limit.h"
#include "server/federation/attestations.h"
#include "server/federation/exchange.h"
#include "server/store/case_store.h"

namespace corridor {

class CaseServiceImpl final : public v1::CaseService::CallbackService {
 public:
  CaseServiceImpl(const v1::NodeConfig& config, const IdentityResolver* identity, CaseStore* store,
                  AccessLog* log, Executor* bulk, const Clock* clock)
      : config_(config),
        identity_(identity),
        store_(store),
        log_(log),
        bulk_(bulk),
        clock_(clock),
        transfers_(config.limits().max_evidence_transfers()),
        watchdog_(std::make_unique<StreamWatchdog>(
            absl::Seconds(config.limits().stream_idle_timeout_seconds()), clock_)) {}

  // The node's exchange: erasing a case cancels its queued envelopes and asks
  // the receivers of its referrals to erase their copies. Set once at start,
  // before serving.
  void set_exchange(Exchange* exchange) { exchange_ = exchange; }
  // Reads of a case received from another org are attested to that org
  // (server/federation/attestations.h) before they are answered. Set once at
  // start, before serving; null: not attested.
  void set_attestations(Attestations* attestations) { attestations_ = attestations; }

  // Waits until every evidence upload and download has ended (its reactor is
  // deleted): gRPC may run a reactor's OnDone after the server's Shutdown has
  // returned, and the reactors use this service's store, log, transfer slots
  // and watchdog. Call after the server has shut down, before those go.
  void WaitForStreams();

  grpc::ServerUnaryReactor* CreateCase(grpc::CallbackServerContext* ctx,
                                       const v1::CreateCaseRequest* req, v1::Case* resp) override;
  grpc::ServerUnaryReactor* GetCase(grpc::CallbackServerContext* ctx, const v1::GetCaseRequest* req,
                                    v1::Case* resp) override;
  grpc::ServerUnaryReactor* ListCases(grpc::CallbackServerContext* ctx,
                                      const v1::ListCasesRequest* req,
                                      v1::ListCasesResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateCase(grpc::CallbackServerContext* ctx,
                                       const v1::UpdateCaseRequest* req, v1::Case* resp) override;
  grpc::ServerUnaryReactor* CloseCase(grpc::CallbackServerContext* ctx,
                                      const v1::CloseCaseRequest* req,
                                      v1::CaseSummary* resp) override;
  grpc::ServerUnaryReactor* EraseCase(grpc::CallbackServerContext* ctx,
                                      const v1::EraseCaseRequest* req,
                                      v1::EraseCaseResponse* resp) override;
  grpc::ServerReadReactor<v1::AddEvidenceRequest>* AddEvidence(grpc::CallbackServerContext* ctx,
                                                               v1::EvidenceItem* resp) override;
  grpc::ServerUnaryReactor* ListEvidence(grpc::CallbackServerContext* ctx,
                                         const v1::ListEvidenceRequest* req,
                                         v1::ListEvidenceResponse* resp) override;
  grpc::ServerWriteReactor<v1::EvidenceChunk>* GetEvidence(
      grpc::CallbackServerContext* ctx, const v1::GetEvidenceRequest* req) override;

 private:
  // The erasure of case `id` (its content, and what the outbox holds or sent
  // of it) into a batch, adding the outbox's events to `events`. NotFound if
  // there is no such case; a case already erased is erased again (a retry
  // after its key could not be destroyed). Call under the case lock.
  absl::StatusOr<std::unique_ptr<ledger::Mutation>> PrepareErasure(
      const std::string& id, std::vector<v1::AccessEvent>* events);
  // GetCase or ListEvidence of received case `c`: records the read, attests
  // it, then fills the response with `answer` and answers.
  grpc::ServerUnaryReactor* AttestedRead(AuditedCall<>& call, v1::Case c,
                                         std::function<void(const v1::Case&)> answer);

  const v1::NodeConfig config_;
  const IdentityResolver* identity_;
  CaseStore* store_;
  AccessLog* log_;
  Exchange* exchange_ = nullptr;
  Attestations* attestations_ = nullptr;
  // Runs slow follow-up work (destroying an erased case's key) off the
  // completion threads.
  Executor* bulk_;
  const Clock* const clock_;  // not owned
  // Evidence uploads and downloads in progress, and their idle timeout.
  TransferSlots transfers_;
  std::unique_ptr<StreamWatchdog> watchdog_;
  // Evidence stream reactors not yet deleted.
  std::atomic<int> live_streams_{0};
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_CASES_CASE_SERVICE_H_
