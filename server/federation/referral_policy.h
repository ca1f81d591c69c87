// The referral policy (docs/federation.md, "Policy that travels"): whether a
// case may be referred to another member org, and how, decided from values
// alone — the roster's agreements, the worker's consent record, the rules the
// originator attached to a received case, and the request. No gRPC, no
// storage, no clock (the time is an argument): ReferralService::Refer (the
// sender) and Exchange (the receiver) both call these functions, so both
// sides apply the same rules, and server/federation/referral_policy_test.cc
// tests every rule and its refusal without a node.
//
// The rules, each a function below, in the order the sender applies them:
//   1. the recipient is another org (INVALID_ARGUMENT);
//   2. the agreement is in the roster, binds the sender and the recipient and
//      covers the purpose (PERMISSION_DENIED);
//   3. a received case travels on only as its originator allowed: never, only
//      within the agreement it came under, or with the originator's signed
//      permission for exactly this recipient, purpose and agreement
//      (PERMISSION_DENIED, saying how to get the permission);
//   4. the worker's personal data goes only where their consent covers the
//      recipient and purpose; otherwise the caseworker may send the case
//      de-identified, or it is refused (PERMISSION_DENIED).
// The receiver checks rule 2 for every envelope (VerifyEnvelope), a cited
// permission (rule 3) for a referral, and which changes a peer may make to a
// referral link (CheckPeerChange).
// Verifying a permission is a signature check against the roster
// (server/federation/envelope.h), nothing more. Stateless; thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_REFERRAL_POLICY_H_
#define CORRIDOR_SERVER_FEDERATION_REFERRAL_POLICY_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corridor/v1/case.pb.h"
#include "corridor/v1/federation.pb.h"
#include "corridor/v1/roster.pb.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "server/federation/envelope.h"

namespace corridor {

// What a caseworker asks for when referring a case (ReferCaseRequest, as the
// policy sees it).
struct ReferralRequest {
  std::string from_org;  // this node's org: the sender
  std::string to_org;
  std::string agreement;
  std::string purpose;
  bool include_personal_data = false;
  // Without consent for the personal data, send the case de-identified
  // instead of refusing.
  bool deidentify = false;
};

// How an allowed referral goes.
struct ReferralClearance {
  // Without the worker's personal data (name, documents, contact, narrative).
  bool deidentified = true;
  // For a received case passed on with its originator's permission: that
  // permission (a serialized Envelope), cited in the referral. Else empty.
  std::string onward_permission;
};

// Rule 1: `req.to_org` names an org other than the sender.
absl::Status CheckRecipient(const ReferralRequest& req);

// Rule 2: agreement `agreement` is in `roster`, binds `sender` and
// `recipient`, and covers `purpose`.
absl::Status CheckAgreement(const v1::Roster& roster, const std::string& agreement,
                            const std::string& sender, const std::string& recipient,
                            const std::string& purpose);

// Rules 1 and 2 for `req`: what can be checked before the case is read.
absl::Status CheckReferralTerms(const v1::Roster& roster, const ReferralRequest& req);

// Rule 3, for a case received through `incoming` (the link it came in by):
// whether it may go on as `req` asks at `now`. Returns the permission to cite
// (empty if none is needed).
absl::StatusOr<std::string> CheckOnwardSharing(const v1::Roster& roster,
                                               const v1::ReferralLink& incoming,
                                               const ReferralRequest& req, absl::Time now);

// Rule 4's test: `consent` lets the worker's personal data go to `org` for `purpose`.
bool ConsentCovers(const v1::ConsentRecord& consent, const std::string& org,
                   const std::string& purpose);

// Every rule, in order, for referring a case with `consent` and referral
// `links` as `req` asks at `now`: how it goes, or why it may not.
absl::StatusOr<ReferralClearance> DecideReferral(
    const v1::Roster& roster, const v1::ConsentRecord& consent,
    const google::protobuf::RepeatedPtrField<v1::ReferralLink>& links, const ReferralRequest& req,
    absl::Time now);

// The receiver's rule 3: a referral envelope `p` (already verified, so rule 2
// holds) that cites an onward permission must cite one that verifies at
// `ctx.now` for exactly its sender, purpose and agreement. Returns the
// originator who gave the permission, or "" if none is cited.
absl::StatusOr<std::string> CheckReceivedReferral(const v1::EnvelopePayload& p,
                                                  const EnvelopeContext& ctx);

// The receiver's rules for a decision, permission or update envelope `p`
// about referral `link` of a local case (a link with the sender as its peer):
// a peer changes only what is its own to change — a decision only on a
// referral this node sent, once, naming the receiver's case exactly when it
// accepts; a permission only for a referral this node (`self_org`) received
// and accepted; an update only on an accepted referral, with a status a peer
// may post. PERMISSION_DENIED, FAILED_PRECONDITION or INVALID_ARGUMENT.
absl::Status CheckPeerChange(const v1::ReferralLink& link, const v1::EnvelopePayload& p,
                             const std::string& self_org);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_REFERRAL_POLICY_H_
