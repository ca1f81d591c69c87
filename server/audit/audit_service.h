// AuditService (auditors): the node's ledger as auditors read it — access
// events by case, actor, org, action or outcome, the signed checkpoint,
// inclusion and consistency proofs, raw entries and a full export. Every call
// is itself an access event, recorded before anything is returned (fail
// closed: if the ledger cannot write, the call fails UNAVAILABLE). Needs only
// the access log and the identity resolver, so it lives with the audit layer.
// Thread-safe.
#ifndef CORRIDOR_SERVER_AUDIT_AUDIT_SERVICE_H_
#define CORRIDOR_SERVER_AUDIT_AUDIT_SERVICE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "absl/time/time.h"
#include "corridor/v1/case.grpc.pb.h"
#include "ledger/base/clock.h"
#include "server/audit/access_log.h"
#include "server/auth/identity.h"
#include "server/common/executor.h"
#include "server/common/rate_limit.h"

namespace corridor {

//
// Export streams the ledger as the client reads it: one page of entries at a
// time (at most kExportPageEntries entries, pieces of at most 1 MiB), so an
// export holds about 1 MiB of memory whatever the ledger's size. At most
// kMaxExportsAtOnce exports run at once (more are refused RESOURCE_EXHAUSTED,
// recorded), and an export whose client reads nothing for `idle_timeout`
// (limits.stream_idle_timeout_seconds) is cut off (recorded as an error).
class AuditServiceImpl final : public v1::AuditService::CallbackService {
 public:
  // Exports in progress at once, node-wide.
  static constexpr uint32_t kMaxExportsAtOnce = 4;
  // Entries read from the ledger per page of an export.
  static constexpr uint64_t kExportPageEntries = 128;

  // `bulk` builds proofs and export pages, so that a large export never holds
  // up the completion threads that answer ordinary calls.
  AuditServiceImpl(const IdentityResolver* identity, AccessLog* log, Executor* bulk,
                   absl::Duration idle_timeout, const Clock* clock)
      : identity_(identity),
        log_(log),
        bulk_(bulk),
        exports_(kMaxExportsAtOnce),
        watchdog_(std::make_unique<StreamWatchdog>(idle_timeout, clock)) {}

  // Waits until every export stream has ended (its reactor is deleted): gRPC
  // may run a reactor's OnDone after the server's Shutdown has returned. Call
  // after the server has shut down, before the log and the bulk executor go.
  void WaitForStreams();

  // Fills a GetCheckpoint answer with the newest checkpoint carrying at least
  // k peer cosignatures (the witness, server/federation/witness.h);
  // FailedPrecondition if there is none. Set before serving; without it such
  // requests are refused.
  using CosignedSource = std::function<absl::Status(uint32_t k, v1::CheckpointResponse* resp)>;
  void set_cosigned(CosignedSource cosigned) { cosigned_ = std::move(cosigned); }
  // What the audit layer asks of the federation layer for the downstream
  // calls (server/federation/attestations.h): a peer's proof of an entry it
  // attested to this node, and a reconciliation with a peer. Both may block on
  // a peer call (they run on the bulk executor). Unset: those calls fail
  // UNIMPLEMENTED. Set once at start, before serving.
  struct DownstreamHooks {
    std::function<absl::StatusOr<v1::InclusionProofResponse>(const std::string& org,
                                                             uint64_t index)>
        prove;
    std::function<absl::StatusOr<v1::ReconcileResponse>(const std::string& peer)> reconcile;
  };
  void set_downstream(DownstreamHooks hooks) { downstream_ = std::move(hooks); }

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
  grpc::ServerUnaryReactor* ListAttestations(grpc::CallbackServerContext* ctx,
                                             const v1::ListAttestationsRequest* req,
                                             v1::ListAttestationsResponse* resp) override;
  grpc::ServerUnaryReactor* ProveDownstream(grpc::CallbackServerContext* ctx,
                                            const v1::ProveDownstreamRequest* req,
                                            v1::InclusionProofResponse* resp) override;
  grpc::ServerUnaryReactor* Reconcile(grpc::CallbackServerContext* ctx,
                                      const v1::ReconcileRequest* req,
                                      v1::ReconcileResponse* resp) override;

 private:
  const IdentityResolver* identity_;
  AccessLog* log_;
  Executor* bulk_;
  TransferSlots exports_;  // exports in progress
  std::unique_ptr<StreamWatchdog> watchdog_;
  std::atomic<int> live_streams_{0};  // export reactors not yet deleted
  CosignedSource cosigned_;
  DownstreamHooks downstream_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUDIT_AUDIT_SERVICE_H_
