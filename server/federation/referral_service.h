// ReferralService (caseworkers): refer a case to a peer, see and decide
// incoming referrals, post updates that travel to every linked peer, watch
// the outbox. Every call is an access event; sends commit with their outbox
// item in one batch. Policy: docs/federation.md ("Policy that travels").
// Thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_REFERRAL_SERVICE_H_
#define CORRIDOR_SERVER_FEDERATION_REFERRAL_SERVICE_H_

#include "corridor/v1/federation.grpc.pb.h"
#include "server/audit/access_log.h"
#include "server/federation/exchange.h"
#include "server/federation/referral_policy.h"
#include "server/store/case_store.h"

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
  struct QueuedReferral {
    std::string referral_id;
    v1::OutboxItem item;
  };
  // The referral envelope's payload for `req` as `clearance` allows, from
  // case `c`; NotFound if `req` names evidence the case does not have.
  absl::StatusOr<v1::EnvelopePayload> ReferralPayload(const v1::ReferCaseRequest& req,
                                                      const ReferralClearance& clearance,
                                                      const v1::Case& c,
                                                      const std::string& referral_id,
                                                      absl::Time now) const;
  // Queues the referral into `batch` (the outbox item, the referral index and
  // case `c` with its new outgoing link). Call under the case lock.
  absl::StatusOr<QueuedReferral> QueueReferral(ledger::Mutation* batch,
                                               const v1::ReferCaseRequest& req,
                                               const ReferralClearance& clearance,
                                               const std::string& author, v1::Case* c);
  // The cases received and waiting in the inbox.
  absl::StatusOr<std::vector<v1::InboxItem>> InboxItems() const;
  // The local case of the referral `referral_id` this node received, for a
  // caseworker who names it by its id alone. NotFound if none was received;
  // FailedPrecondition, naming the senders, if more than one member sent a
  // referral with that id (ids are chosen by senders: one may have copied
  // another's), rather than picking one.
  absl::StatusOr<std::string> ReceivedCaseOf(const std::string& referral_id) const;
  // Records the decision `req` by `author` on case `c` and its incoming link
  // `in`; returns the envelope that tells the referring org.
  v1::EnvelopePayload DecisionOn(const v1::DecideReferralRequest& req, const std::string& author,
                                 v1::Case* c, v1::ReferralLink* in) const;
  // Queues update `req` into `batch` for every peer holding a case linked to
  // `c`; returns their envelope ids.
  absl::StatusOr<std::vector<std::string>> QueueUpdates(ledger::Mutation* batch,
                                                        const v1::PostUpdateRequest& req,
                                                        const std::string& author,
                                                        const v1::Case& c);

  const IdentityResolver* identity_;
  Exchange* exchange_;
  CaseStore* cases_;
  AccessLog* log_;
  const Clock* const clock_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_REFERRAL_SERVICE_H_
