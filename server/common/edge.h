// Bounds on what callers and peers send, checked at the edge before anything
// is stored or recorded (docs/access-control.md, "Input bounds").
//
//  - identifiers (case, evidence, referral, envelope, request ids): 1 to
//    kMaxIdentifierBytes bytes of [A-Za-z0-9._:-];
//  - purpose codes: 1 to kMaxPurposeBytes bytes of [a-z0-9._-], starting with
//    a letter or digit (codes from the agreements' vocabulary, never free text);
//  - anything that goes into a ledger entry is made safe by ForLedger: no
//    control characters, no invalid UTF-8, and at most a given length, with
//    the original length said.
// Stateless and thread-safe.
#ifndef CORRIDOR_SERVER_COMMON_EDGE_H_
#define CORRIDOR_SERVER_COMMON_EDGE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "corridor/v1/case.pb.h"

namespace corridor {

inline constexpr size_t kMaxIdentifierBytes = 128;
inline constexpr size_t kMaxPurposeBytes = 64;
// The longest text field of a ledger entry (reasons); other fields are shorter.
inline constexpr size_t kMaxLedgerTextBytes = 1024;
inline constexpr size_t kMaxLedgerFieldBytes = 256;
// The longest note a case update (local or from a peer) may carry, and the
// largest a case may grow to with its history: every answer holding a case
// then fits well inside a message.
inline constexpr size_t kMaxNoteBytes = 16 << 10;
inline constexpr size_t kMaxCaseBytes = 2 << 20;
// The longest a case's narrative may be, and any other text of a case (names,
// numbers, countries, languages, the consent method, evidence file names and
// media types); history notes are bounded by kMaxNoteBytes.
inline constexpr size_t kMaxNarrativeBytes = 64 << 10;
inline constexpr size_t kMaxCaseFieldBytes = 1 << 10;
// The node's own purpose codes when its configuration lists none (`purposes`).
inline constexpr absl::string_view kDefaultLocalPurposes[] = {"case-handling", "prosecution",
                                                              "inspection", "legal-aid"};

// InvalidArgument naming `what` unless `id` is a valid identifier.
absl::Status ValidateIdentifier(absl::string_view what, absl::string_view id);
// Like ValidateIdentifier, but an empty value is allowed (optional fields).
absl::Status ValidateOptionalIdentifier(absl::string_view what, absl::string_view id);
// InvalidArgument unless `purpose` is a valid purpose code. The message never
// repeats what was sent (it may be a typed name; refusals are recorded).
absl::Status ValidatePurposeCode(absl::string_view purpose);
// InvalidArgument unless `purpose` is a valid code and one of `vocabulary` (the
// node's purpose vocabulary: IdentityResolver::Purposes). The message lists the
// vocabulary, never what was sent.
absl::Status CheckPurposeListed(absl::string_view purpose,
                                const std::vector<std::string>& vocabulary);

// InvalidArgument unless a case update's `outcome` is empty or a code (as
// purpose codes: "fees-refunded") and its `note` at most kMaxNoteBytes.
absl::Status ValidateUpdateText(absl::string_view outcome, absl::string_view note);

// InvalidArgument naming the first text field of `c` over its bound
// (kMaxNarrativeBytes, kMaxNoteBytes, kMaxCaseFieldBytes), by its path
// ("worker.name") and length, never its content. Checked on what a caller or
// peer sends (a new case, an update's fields, a received case, an upload's
// header), not on cases already stored.
absl::Status CheckCaseText(const v1::Case& c);

// What the ledger keeps of a caller's request id (an idempotency id the caller
// chose, which may be anything typed): "sha256:" and the hex SHA-256 of it. The caller, who knows
// the id, can find its entries by the same digest; the ledger never holds the id itself. Empty for
// an empty id.
std::string RequestIdForLedger(absl::string_view request_id);

// True if `id` has the shape of an id a node mints: a prefix of one to four
// upper-case letters, "-", and 8 to 64 hex digits ("C-0A1B2C3D4E5F",
// "REF-...", "ENV-...", "E-..."). No word a person types has this shape.
bool IsMintedIdShape(absl::string_view id);

// What a refused call's entry keeps of an id the caller or peer sent: the id
// itself if it has a minted id's shape, otherwise "sha256:" and its hex SHA-256
// (a name typed into an id field fits the identifier alphabet, and the ledger
// cannot be erased). Whoever knows what was typed can find the entry by the
// same digest. Empty for an empty id.
std::string IdForLedger(absl::string_view id);

// How a refusal's message quotes an id the caller typed in a field the ledger
// entry does not file it under (an evidence id in a referral, a referral id in
// a permission): the id if it has a minted id's shape, otherwise a phrase that
// says it is not one (the message is the entry's reason, which cannot be erased).
std::string IdInMessage(absl::string_view id);

// InvalidArgument unless `text` (free text: a reason, a note) is at most
// `limit` bytes; names `what` and the length, never the text.
absl::Status CheckTextLength(absl::string_view what, absl::string_view text, size_t limit);

// `text` fit for a ledger entry and a terminal: every byte outside printable
// ASCII and valid multi-byte UTF-8 is shown as \xHH, and if the result is
// longer than `max_bytes` it is cut and " …[N bytes]" says the original length.
std::string ForLedger(absl::string_view text, size_t max_bytes = kMaxLedgerFieldBytes);

// What the ledger keeps of a free-text reason a person typed (closing, declining,
// erasing): "reason sha256:<hex>", never the text, which may name the worker and
// could never be erased from the ledger. The text itself is kept, if at all, in
// the sealed case. Empty for an empty reason.
std::string ReasonForLedger(absl::string_view reason);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_COMMON_EDGE_H_
