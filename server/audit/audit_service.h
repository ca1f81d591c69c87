// AuditService (auditors): the node's ledger as auditors read it — access
// events by case, actor, org, action or outcome, the signed checkpoint,
// inclusion and consistency proofs, raw entries and a full export. Every call
// is itself an access event, recorded before anything is returned (fail
// closed: if the ledger cannot write, the call fails UNAVAILABLE). Needs only
// the access log and the identity resolver, so it lives with the audit layer.
// Thread-safe.
#ifndef CORRIDOR_SERVER_AUDIT_AUDIT_SERVICE_H_
#define CORRIDOR_SERVER_AUDIT_AUDIT_SERVICE_H_

#include "corridor/v1/case.grpc.pb.h"
#include "server/audit/access_log.h"
#include "server/auth/identity.h"
#include "server/common/executor.h"

namespace corridor {

class AuditServiceImpl final : public v1::AuditService::CallbackService {
 public:
  // `bulk` builds proofs and exports, so that a large export never holds up
  // the completion threads that answer ordinary calls.
  AuditServiceImpl(const IdentityResolver* identity, AccessLog* log, Executor* bulk)
      : identity_(identity), log_(log), bulk_(bulk) {}

  grpc::ServerUnaryReactor* QueryEvents(grpc::CallbackServerContext* ctx,
                                        const v1::QueryEventsRequest* req,
                                        v1::QueryEventsResponse* resp) override;
  grpc::ServerUnaryReactor* GetCheckpoint(grpc::CallbackServerContext* ctx,
                                          const v1::GetCheckpointRequest* req,
                                          v1::CheckpointResponse* resp) override;
  grpc::ServerUnaryReactor* GetInclusionProof(grpc::CallbackServerContext* ctx,
                                              const v1::InclusionProofRequest* req,
                                              v1::InclusionProofResponse* resp) override;
  grpc::ServerUnaryReactor* GetConsistencyProof(grpc::CallbackServerContext* ctx,
                                                const v1::ConsistencyProofRequest* req,
                                                v1::ConsistencyProofResponse* resp) override;
  grpc::ServerUnaryReactor* GetEntries(grpc::CallbackServerContext* ctx,
                                       const v1::GetEntriesRequest* req,
                                       v1::GetEntriesResponse* resp) override;
  grpc::ServerWriteReactor<v1::ExportResponse>* Export(grpc::CallbackServerContext* ctx,
                                                       const v1::ExportRequest* req) override;

 private:
  const IdentityResolver* identity_;
  AccessLog* log_;
  Executor* bulk_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUDIT_AUDIT_SERVICE_H_
