// EvidenceService (prosecutors, approvers, auditors): request evidence from
// another org, list and read requests at either end, decide a received one,
// fetch what was granted, and show an item's chain of custody
// (docs/evidence.md). Thin handlers over EvidenceRequests and the
// audited-call helper: every call is recorded, refusals included. Thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_EVIDENCE_SERVICE_H_
#define CORRIDOR_SERVER_FEDERATION_EVIDENCE_SERVICE_H_

#include "corridor/v1/evidence.grpc.pb.h"
#include "server/audit/access_log.h"
#include "server/common/executor.h"
#include "server/federation/evidence_requests.h"

namespace corridor {

class EvidenceServiceImpl final : public v1::EvidenceService::CallbackService {
 public:
  // `slow` runs custody listings (proofs). Not owned; all must outlive the service.
  EvidenceServiceImpl(const IdentityResolver* identity, EvidenceRequests* requests,
                      Exchange* exchange, AccessLog* log, Executor* slow)
      : identity_(identity), requests_(requests), exchange_(exchange), log_(log), slow_(slow) {}

  grpc::ServerUnaryReactor* Request(grpc::CallbackServerContext* ctx,
                                    const v1::RequestEvidenceRequest* req,
                                    v1::RequestEvidenceResponse* resp) override;
  grpc::ServerUnaryReactor* List(grpc::CallbackServerContext* ctx,
                                 const v1::ListEvidenceRequestsRequest* req,
                                 v1::ListEvidenceRequestsResponse* resp) override;
  grpc::ServerUnaryReactor* Get(grpc::CallbackServerContext* ctx,
                                const v1::GetEvidenceRequestRequest* req,
                                v1::EvidenceRequestDetail* resp) override;
  grpc::ServerUnaryReactor* Decide(grpc::CallbackServerContext* ctx,
                                   const v1::DecideEvidenceRequest* req,
                                   v1::DecideEvidenceResponse* resp) override;
  grpc::ServerUnaryReactor* Fetch(grpc::CallbackServerContext* ctx,
                                  const v1::FetchGrantedRequest* req,
                                  v1::FetchGrantedResponse* resp) override;
  grpc::ServerUnaryReactor* Custody(grpc::CallbackServerContext* ctx, const v1::CustodyRequest* req,
                                    v1::CustodyResponse* resp) override;

 private:
  const IdentityResolver* identity_;
  EvidenceRequests* requests_;
  Exchange* exchange_;
  AccessLog* log_;
  Executor* slow_;
};

// PeerService.FetchEvidence at the holder, for `caller` (as Authorize
// found it): checks the fetch against its grant, records it, then streams the
// item and the signed receipt. A refusal is recorded and answered.
grpc::ServerWriteReactor<v1::FetchEvidenceChunk>* ServeFetch(absl::StatusOr<Principal> caller,
                                                             const v1::FetchEvidenceRequest& req,
                                                             EvidenceRequests* requests,
                                                             AccessLog* log);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_EVIDENCE_SERVICE_H_
