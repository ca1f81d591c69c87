// ReferralService (caseworkers): refer a case to a peer, see and decide
// incoming referrals, post updates that travel to every linked peer, watch
// the outbox. Every call is an access event; sends commit with their outbox
// item in one batch. Policy: docs/federation.md ("Policy that travels").
// Thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_REFERRAL_SERVICE_H_
#define CORRIDOR_SERVER_FEDERATION_REFERRAL_SERVICE_H_

#include "corridor/v1/federation.grpc.pb.h"
#include "server/audit/access_log.h"
#include "server/store/case_store.h"
#include "server/federation/exchange.h"

namespace corridor {

class ReferralServiceImpl final : public v1::ReferralService::CallbackService {
 public:
  // `clock` (not owned; it must outlive the service) dates links, decisions,
  // updates and consent.
  ReferralServiceImpl(const IdentityResolver* identity, Exchange* exchange, CaseStore* cases,
                      AccessLog* log, const Clock* clock)
      : identity_(identity), exchange_(exchange), cases_(cases), log_(log), clock_(clock) {}

  grpc::ServerUnaryReactor* Refer(grpc::CallbackServerContext* ctx, const v1::ReferCaseRequest* req,
                                  v1::ReferCaseResponse* resp) override;
  grpc::ServerUnaryReactor* ListInbox(grpc::CallbackServerContext* ctx,
                                      const v1::ListInboxRequest* req,
                                      v1::ListInboxResponse* resp) override;
  grpc::ServerUnaryReactor* Decide(grpc::CallbackServerContext* ctx,
                                   const v1::DecideReferralRequest* req,
                                   v1::DecideReferralResponse* resp) override;
  grpc::ServerUnaryReactor* PostUpdate(grpc::CallbackServerContext* ctx,
                                       const v1::PostUpdateRequest* req,
                                       v1::PostUpdateResponse* resp) override;
  grpc::ServerUnaryReactor* Permit(grpc::CallbackServerContext* ctx, const v1::PermitRequest* req,
                                   v1::PermitResponse* resp) override;
  grpc::ServerUnaryReactor* ListOutbox(grpc::CallbackServerContext* ctx,
                                       const v1::ListOutboxRequest* req,
                                       v1::ListOutboxResponse* resp) override;

 private:
  const IdentityResolver* identity_;
  Exchange* exchange_;
  CaseStore* cases_;
  AccessLog* log_;
  const Clock* const clock_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_REFERRAL_SERVICE_H_
