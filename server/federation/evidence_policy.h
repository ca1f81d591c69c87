// The rules of evidence requests (docs/evidence.md) as pure functions of the
// roster, the request and the time: no gRPC, storage or clock. The
// requester's node asks them before it sends; the holder's node asks them
// again of what it receives, and the requester of the decision that comes
// back.
#ifndef CORRIDOR_SERVER_FEDERATION_EVIDENCE_POLICY_H_
#define CORRIDOR_SERVER_FEDERATION_EVIDENCE_POLICY_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corridor/v1/evidence.pb.h"
#include "corridor/v1/roster.pb.h"

namespace corridor {

inline constexpr size_t kMaxLegalBasisBytes = 2000;
inline constexpr size_t kMaxConditionBytes = 500;
inline constexpr int kMaxConditions = 20;
inline constexpr int kMaxRequestedItems = 1000;
inline constexpr uint32_t kDefaultMaxFetches = 3;
inline constexpr uint32_t kMaxMaxFetches = 100;
inline constexpr absl::Duration kDefaultAnswerTime = absl::Hours(24 * 10);
inline constexpr absl::Duration kUrgentAnswerTime = absl::Hours(8);
inline constexpr absl::Duration kMaxAnswerTime = absl::Hours(24 * 90);
inline constexpr absl::Duration kDefaultGrantTime = absl::Hours(24 * 30);
inline constexpr absl::Duration kMaxGrantTime = absl::Hours(24 * 366);

// Agreement `agreement` covers a request by `requester` (of kind
// `requester_kind`) to `holder` for `purpose`: it is in the roster, binds both,
// covers the purpose and lists the requester's kind among those that may
// request evidence. PERMISSION_DENIED naming the rule otherwise.
absl::Status CheckEvidenceAgreement(const v1::Roster& roster, const std::string& agreement,
                                    const std::string& requester, const std::string& holder,
                                    const std::string& purpose);

// Free text a person typed (legal basis, conditions): at most `limit` bytes,
// no control characters but line breaks and tabs. INVALID_ARGUMENT naming `what`.
absl::Status CheckFreeText(const std::string& what, const std::string& text, size_t limit);

// The body of a request as any node must find it: ids, items, legal basis,
// deadline (RFC 3339), the asker speaking for `sender`.
absl::Status ValidateEvidenceRequestBody(const v1::EvidenceRequest& r, const std::string& sender);
// The body of a decision: ids, a grant with items, expiry, fetch limit and
// bounded conditions when approved; a reason code when denied; the approver
// speaking for `sender`.
absl::Status ValidateEvidenceDecisionBody(const v1::EvidenceDecision& d, const std::string& sender);

// The deadline of a request made at `now`: `asked` (RFC 3339, after `now`, at
// most kMaxAnswerTime ahead), or the default for its urgency.
absl::StatusOr<absl::Time> RequestDeadline(const std::string& asked, bool urgent, absl::Time now);

// The speciality rule every grant carries first.
std::string SpecialityCondition(const std::string& purpose, const std::string& agreement);

// An RFC 3339 time; InvalidArgument naming `what` if it is not one.
absl::StatusOr<absl::Time> ParseRfc3339(const std::string& what, const std::string& text);

// The signed fetch receipt `receipt` verifies under a key of `holder` in
// `roster` (Ed25519 over "corridor-fetch-receipt/v1\n" ‖ body) and names
// `holder`. Returns its body; PERMISSION_DENIED or INVALID_ARGUMENT otherwise.
absl::StatusOr<v1::FetchReceiptBody> CheckFetchReceipt(const v1::FetchReceipt& receipt,
                                                       const v1::Roster& roster,
                                                       const std::string& holder);
inline constexpr char kFetchReceiptContext[] = "corridor-fetch-receipt/v1\n";

// Lower-case letters, digits and '-', 1 to 64 bytes: a rule's code, not free text.
bool IsRuleCode(const std::string& s);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_EVIDENCE_POLICY_H_
