#include "server/federation/referral_policy.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace corridor {
namespace {

template <typename List>
bool Contains(const List& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// The link a received case came in by (a case is received once), or null.
const v1::ReferralLink* IncomingLink(
    const google::protobuf::RepeatedPtrField<v1::ReferralLink>& links) {
  for (const auto& l : links) {
    if (!l.outgoing()) return &l;
  }
  return nullptr;
}

const char* DecisionWord(v1::ReferralState state) {
  return state == v1::REFERRAL_STATE_ACCEPTED ? "accepted" : "declined";
}

absl::Status CheckDecision(const v1::ReferralLink& link, const v1::EnvelopePayload& p) {
  const v1::ReferralDecision& d = p.decision();
  if (!link.outgoing()) {
    return absl::PermissionDeniedError(absl::StrCat(p.sender_org(), " sent referral ",
                                                    link.referral_id(),
                                                    " to this node; only its receiver decides it"));
  }
  if (link.state() == v1::REFERRAL_STATE_ACCEPTED || link.state() == v1::REFERRAL_STATE_DECLINED) {
    return absl::FailedPreconditionError(
        absl::StrCat("referral ", link.referral_id(), " was already ", DecisionWord(link.state()),
                     " by ", p.sender_org(), "; a decision is final once recorded"));
  }
  if (d.accepted() == d.linked_case_id().empty()) {
    return absl::InvalidArgumentError(d.accepted()
                                          ? "an acceptance must name the receiver's linked case"
                                          : "a decline names no linked case");
  }
  return absl::OkStatus();
}

absl::Status CheckPermission(const v1::ReferralLink& link, const v1::EnvelopePayload& p,
                             const std::string& self_org) {
  if (link.outgoing() || p.permission().holder_org() != self_org) {
    return absl::PermissionDeniedError("a permission must concern a referral this node received");
  }
  if (link.state() != v1::REFERRAL_STATE_ACCEPTED) {
    return absl::FailedPreconditionError(
        absl::StrCat("referral ", link.referral_id(),
                     " has not been accepted here; there is nothing to pass on"));
  }
  return absl::OkStatus();
}

absl::Status CheckUpdate(const v1::ReferralLink& link, const v1::CaseUpdate& u) {
  if (link.state() != v1::REFERRAL_STATE_ACCEPTED) {
    return absl::FailedPreconditionError(
        absl::StrCat("referral ", link.referral_id(),
                     " is not accepted; updates are taken only on linked cases"));
  }
  if (!v1::CaseStatus_IsValid(u.status()) || u.status() == v1::CASE_STATUS_ERASED ||
      u.status() == v1::CASE_STATUS_INCOMING) {
    return absl::InvalidArgumentError(
        absl::StrCat("update.status ", static_cast<int>(u.status()), " cannot be posted"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckRecipient(const ReferralRequest& req) {
  if (req.to_org.empty() || req.to_org == req.from_org) {
    return absl::InvalidArgumentError("--to must name another member org");
  }
  return absl::OkStatus();
}

absl::Status CheckAgreement(const v1::Roster& roster, const std::string& agreement,
                            const std::string& sender, const std::string& recipient,
                            const std::string& purpose) {
  const v1::Agreement* found = nullptr;
  for (const auto& a : roster.agreements()) {
    if (a.id() == agreement) found = &a;
  }
  // An unknown agreement or purpose is not repeated: refusals are recorded in
  // the ledger, and what was typed there may be a name.
  if (found == nullptr) {
    std::vector<std::string> known;
    for (const auto& a : roster.agreements()) known.push_back(a.id());
    return absl::PermissionDeniedError(
        absl::StrCat("the agreement named (", agreement.size(),
                     " bytes, not recorded) is not in the roster; its agreements are: ",
                     absl::StrJoin(known, ", ")));
  }
  if (!Contains(found->parties(), sender) || !Contains(found->parties(), recipient)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "agreement ", found->id(), " does not bind both ", sender, " and ", recipient));
  }
  if (!Contains(found->purposes(), purpose)) {
    return absl::PermissionDeniedError(absl::StrCat(
        "agreement ", found->id(),
        " does not cover the purpose stated; it covers: ", absl::StrJoin(found->purposes(), ", ")));
  }
  return absl::OkStatus();
}

absl::Status CheckReferralTerms(const v1::Roster& roster, const ReferralRequest& req) {
  if (absl::Status st = CheckRecipient(req); !st.ok()) return st;
  // A member that left (or an id never listed): said before any agreement is looked at.
  // What was typed is not repeated: it may be a name, and refusals are recorded.
  bool member = false;
  std::vector<std::string> members;
  for (const auto& m : roster.members()) {
    member = member || m.org() == req.to_org;
    if (m.org() != req.from_org) members.push_back(m.org());
  }
  if (!member) {
    return absl::FailedPreconditionError(
        absl::StrCat("the org named (", req.to_org.size(),
                     " bytes, not recorded) is not a member in the "
                     "roster in force (version ",
                     roster.version(),
                     "), so nothing can be referred to it; "
                     "its other members are: ",
                     absl::StrJoin(members, ", ")));
  }
  return CheckAgreement(roster, req.agreement, req.from_org, req.to_org, req.purpose);
}

absl::StatusOr<std::string> CheckOnwardSharing(const v1::Roster& roster,
                                               const v1::ReferralLink& incoming,
                                               const ReferralRequest& req, absl::Time now) {
  switch (static_cast<v1::OnwardSharing>(incoming.onward_sharing())) {
    case v1::ONWARD_SHARING_WITHIN_AGREEMENT:
      if (incoming.agreement() == req.agreement) return std::string();
      return absl::PermissionDeniedError(
          absl::StrCat("this case was received from ", incoming.peer_org(),
                       " whose handling rules allow sharing it onward only under agreement ",
                       incoming.agreement()));
    case v1::ONWARD_SHARING_WITH_ORIGINATOR_PERMISSION: {
      // A stored permission counts if it still verifies for exactly this
      // onward referral, signed by the org the case came from.
      const EnvelopeContext ctx{"", req.to_org, &roster, now, 4 << 20};
      for (const std::string& p : incoming.permissions()) {
        auto from = VerifyOnwardPermission(p, req.from_org, req.purpose, req.agreement, ctx);
        if (from.ok() && *from == incoming.peer_org()) return p;
      }
      return absl::PermissionDeniedError(absl::StrCat(
          "passing this case on needs the signed permission of ", incoming.peer_org(), " for ",
          req.to_org, " and \"", req.purpose, "\"; ask them to run `corridorctl permit ",
          incoming.peer_case_id(), " --referral ", incoming.referral_id(), " --to ", req.to_org,
          " --purpose ", req.purpose, " --agreement ", req.agreement, "`"));
    }
    default:
      return absl::PermissionDeniedError(
          absl::StrCat("this case was received from ", incoming.peer_org(),
                       " whose handling rules do not allow sharing it onward"));
  }
}

bool ConsentCovers(const v1::ConsentRecord& consent, const std::string& org,
                   const std::string& purpose) {
  for (const auto& g : consent.grants()) {
    if (g.org() == org && Contains(g.purposes(), purpose)) return true;
  }
  return false;
}

absl::StatusOr<ReferralClearance> DecideReferral(
    const v1::Roster& roster, const v1::ConsentRecord& consent,
    const google::protobuf::RepeatedPtrField<v1::ReferralLink>& links, const ReferralRequest& req,
    absl::Time now) {
  if (absl::Status st = CheckReferralTerms(roster, req); !st.ok()) return st;
  ReferralClearance out;
  if (const v1::ReferralLink* in = IncomingLink(links)) {
    auto permission = CheckOnwardSharing(roster, *in, req, now);
    if (!permission.ok()) return permission.status();
    out.onward_permission = *std::move(permission);
  }
  out.deidentified = !req.include_personal_data;
  if (req.include_personal_data && !ConsentCovers(consent, req.to_org, req.purpose)) {
    if (!req.deidentify) {
      return absl::PermissionDeniedError(absl::StrCat(
          "the worker's consent record does not allow sharing their personal data with ",
          req.to_org, " for \"", req.purpose,
          "\"; record consent first, or send it de-identified (--deidentify)"));
    }
    out.deidentified = true;
  }
  return out;
}

absl::StatusOr<std::string> CheckReceivedReferral(const v1::EnvelopePayload& p,
                                                  const EnvelopeContext& ctx) {
  const std::string& permission = p.referral().onward_permission();
  if (permission.empty()) return std::string();
  return VerifyOnwardPermission(permission, p.sender_org(), p.purpose(), p.agreement(), ctx);
}

absl::Status CheckPeerChange(const v1::ReferralLink& link, const v1::EnvelopePayload& p,
                             const std::string& self_org) {
  switch (p.body_case()) {
    case v1::EnvelopePayload::kDecision:
      return CheckDecision(link, p);
    case v1::EnvelopePayload::kPermission:
      return CheckPermission(link, p, self_org);
    case v1::EnvelopePayload::kUpdate:
      return CheckUpdate(link, p.update());
    default:
      return absl::InvalidArgumentError(absl::StrCat("envelope body (field ",
                                                     static_cast<int>(p.body_case()),
                                                     ") does not change a referral link"));
  }
}

}  // namespace corridor
