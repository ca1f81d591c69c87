#include "server/federation/evidence_policy.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "ledger/crypto/crypto.h"
#include "server/common/edge.h"
#include "server/federation/envelope.h"
#include "server/federation/referral_policy.h"

namespace corridor {
namespace {

const v1::Agreement* AgreementOf(const v1::Roster& roster, const std::string& id) {
  for (const auto& a : roster.agreements()) {
    if (a.id() == id) return &a;
  }
  return nullptr;
}

}  // namespace

bool IsRuleCode(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_islower(static_cast<unsigned char>(c)) ||
           absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '-';
  });
}

absl::Status CheckEvidenceAgreement(const v1::Roster& roster, const std::string& agreement,
                                    const std::string& requester, const std::string& holder,
                                    const std::string& purpose) {
  if (auto st = CheckAgreement(roster, agreement, requester, holder, purpose); !st.ok()) return st;
  const v1::Member* member = FindMember(roster, requester);
  const v1::Agreement* a = AgreementOf(roster, agreement);
  if (member == nullptr || a == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(requester, " is not a member"));
  }
  for (int kind : a->evidence_requesters()) {
    if (kind == member->kind()) return absl::OkStatus();
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "agreement ", agreement, " does not let members of ", requester, "'s kind (",
      absl::AsciiStrToLower(absl::StripPrefix(v1::OrgKind_Name(member->kind()), "ORG_KIND_")),
      ") request evidence: the stewards must list that kind under the agreement's "
      "evidence_requesters (roster add-agreement --evidence-requesters)"));
}

absl::Status CheckFreeText(const std::string& what, const std::string& text, size_t limit) {
  if (auto st = CheckTextLength(what, text, limit); !st.ok()) return st;
  for (unsigned char c : text) {
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " holds a control character; write it as plain text (line breaks are allowed)"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Time> ParseRfc3339(const std::string& what, const std::string& text) {
  absl::Time t;
  std::string err;
  if (text.size() > 64 || !absl::ParseTime(absl::RFC3339_full, text, &t, &err)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a date and time such as 2026-12-31T17:00:00Z (RFC 3339)"));
  }
  return t;
}

absl::Status ValidateEvidenceRequestBody(const v1::EvidenceRequest& r, const std::string& sender) {
  if (auto st = ValidateIdentifier("evidence_request.request_id", r.request_id()); !st.ok()) {
    return st;
  }
  if (auto st = ValidateIdentifier("evidence_request.referral_id", r.referral_id()); !st.ok()) {
    return st;
  }
  if (r.all() == (r.item_ids_size() > 0)) {
    return absl::InvalidArgumentError("an evidence request names items or asks for all, not both");
  }
  if (r.item_ids_size() > kMaxRequestedItems) {
    return absl::InvalidArgumentError(
        absl::StrCat("an evidence request names at most ", kMaxRequestedItems, " items"));
  }
  for (const auto& id : r.item_ids()) {
    if (auto st = ValidateIdentifier("evidence_request.item_ids", id); !st.ok()) return st;
  }
  if (r.legal_basis().empty()) {
    return absl::InvalidArgumentError("an evidence request needs its legal basis");
  }
  if (auto st = CheckFreeText("the legal basis", r.legal_basis(), kMaxLegalBasisBytes); !st.ok()) {
    return st;
  }
  if (auto t = ParseRfc3339("the deadline", r.deadline()); !t.ok()) return t.status();
  if (!IsPrincipalOf(r.requested_by(), sender)) {
    return absl::PermissionDeniedError(
        absl::StrCat("evidence_request.requested_by does not name a user of ", sender,
                     ": a node may only speak for its own people"));
  }
  return absl::OkStatus();
}

absl::Status ValidateEvidenceDecisionBody(const v1::EvidenceDecision& d,
                                          const std::string& sender) {
  if (auto st = ValidateIdentifier("evidence_decision.request_id", d.request_id()); !st.ok()) {
    return st;
  }
  if (!IsPrincipalOf(d.decided_by(), sender)) {
    return absl::PermissionDeniedError(
        absl::StrCat("evidence_decision.decided_by does not name a user of ", sender,
                     ": a node may only speak for its own people"));
  }
  if (!d.approved()) {
    if (!IsRuleCode(d.reason())) {
      return absl::InvalidArgumentError(
          "a refused evidence request needs, as its reason, a rule's code (e.g. "
          "insufficient-basis)");
    }
    return absl::OkStatus();
  }
  if (auto st = ValidateIdentifier("evidence_decision.grant_id", d.grant_id()); !st.ok()) return st;
  if (d.items_size() == 0 || d.items_size() > kMaxRequestedItems) {
    return absl::InvalidArgumentError("a grant names between 1 and 1000 items");
  }
  for (const auto& i : d.items()) {
    if (auto st = ValidateIdentifier("evidence_decision.items.item_id", i.item_id()); !st.ok()) {
      return st;
    }
    if (i.sha256().size() != 32) {
      return absl::InvalidArgumentError("a granted item needs its 32-byte SHA-256");
    }
    if (auto st = CheckFreeText("a granted item's file name", i.file_name(), 1024); !st.ok()) {
      return st;
    }
    if (auto st = CheckFreeText("a granted item's media type", i.media_type(), 256); !st.ok()) {
      return st;
    }
  }
  if (auto t = ParseRfc3339("the grant's expiry", d.expires_at()); !t.ok()) return t.status();
  if (d.max_fetches() == 0 || d.max_fetches() > kMaxMaxFetches) {
    return absl::InvalidArgumentError(
        absl::StrCat("a grant allows between 1 and ", kMaxMaxFetches, " fetches of each item"));
  }
  if (d.conditions_size() > kMaxConditions + 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("a grant carries at most ", kMaxConditions, " conditions"));
  }
  for (const auto& c : d.conditions()) {
    if (auto st = CheckFreeText("a condition", c, kMaxConditionBytes); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::StatusOr<absl::Time> RequestDeadline(const std::string& asked, bool urgent, absl::Time now) {
  if (asked.empty()) return now + (urgent ? kUrgentAnswerTime : kDefaultAnswerTime);
  auto t = ParseRfc3339("the deadline", asked);
  if (!t.ok()) return t.status();
  if (*t <= now) return absl::InvalidArgumentError("the deadline has already passed");
  if (*t > now + kMaxAnswerTime) {
    return absl::InvalidArgumentError("the deadline is more than 90 days away");
  }
  return *t;
}

std::string SpecialityCondition(const std::string& purpose, const std::string& agreement) {
  return absl::StrCat("Use only for the purpose \"", purpose, "\" under agreement ", agreement,
                      " (speciality rule); passing it on needs the holder's consent.");
}

absl::StatusOr<v1::FetchReceiptBody> CheckFetchReceipt(const v1::FetchReceipt& receipt,
                                                       const v1::Roster& roster,
                                                       const std::string& holder) {
  const v1::Member* m = FindMember(roster, holder);
  if (m == nullptr) return absl::PermissionDeniedError(absl::StrCat(holder, " is not a member"));
  const v1::SigningKey* k = FindKey(*m, receipt.key_id());
  if (k == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("the fetch receipt is signed with a key ", holder, " does not list"));
  }
  if (k->status() == v1::KEY_STATUS_REVOKED) {
    return absl::PermissionDeniedError(absl::StrCat("the fetch receipt is signed with key ",
                                                    k->key_id(), ", which the roster revokes"));
  }
  auto raw = Base64Decode(k->public_key());
  auto pub =
      raw.ok() ? Ed25519PublicKey::FromRaw(*raw) : absl::StatusOr<Ed25519PublicKey>(raw.status());
  if (!pub.ok() ||
      !pub->Verify(absl::StrCat(kFetchReceiptContext, receipt.body()), receipt.signature())) {
    return absl::PermissionDeniedError("the fetch receipt's signature does not verify");
  }
  v1::FetchReceiptBody body;
  if (!body.ParseFromString(receipt.body()) || body.holder_org() != holder) {
    return absl::PermissionDeniedError("the fetch receipt names another holder");
  }
  return body;
}

}  // namespace corridor
