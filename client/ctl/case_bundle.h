// Court bundles: one self-contained file holding everything needed to check,
// with no node and no network, who accessed one case at one node — the case's
// whole trail of ledger entries, each with its inclusion proof, the signed
// checkpoint they are proved against (with the peers' cosignatures), the
// receivers' signed receipts for the envelopes sent about the case (kept in
// the entries themselves), the signed access attestations of the nodes the case
// reached (kept in the entries too), and the signed roster whose keys check all
// of it. Written by
// `corridorctl audit bundle`, checked by `corridorctl audit verify FILE`.
// Format and checks: docs/audit.md, "Court bundles".
// Stateless; thread-safe. Internal to client/ctl.
#ifndef CORRIDOR_CLIENT_CTL_CASE_BUNDLE_H_
#define CORRIDOR_CLIENT_CTL_CASE_BUNDLE_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/merkle.h"

namespace corridor::ctl {

inline constexpr char kCaseBundleMagic[] = "corridor-case-bundle v1";

struct BundleEntry {
  uint64_t index = 0;
  std::string entry;                // the exact ledger entry (a serialized AccessEvent)
  std::vector<merkle::Hash> proof;  // its inclusion proof at the checkpoint's size
};

struct CaseBundle {
  std::string case_id;
  std::string org;         // whose ledger the entries are in
  std::string roster;      // the signed roster (DSSE JSON) in force when the bundle was made
  std::string checkpoint;  // the signed checkpoint note, with any cosignature lines
  std::vector<BundleEntry> entries;  // the case's trail, newest first
  std::string end_digest;            // as read: hex SHA-256 of every line before the end line
};

// Whether `text` starts like a bundle (else it may be a ledger export).
bool IsCaseBundle(absl::string_view text);

// The bundle's bytes: one line per part, ending with a digest of all before it.
std::string FormatCaseBundle(const CaseBundle& bundle);

// Parses a bundle strictly: every line in its place, every value well formed,
// and the bytes exactly those FormatCaseBundle writes for what was read.
// DataLoss "the bundle does NOT verify: line N (PART): ..." naming the first
// line that is not so.
absl::StatusOr<CaseBundle> ParseCaseBundle(absl::string_view text);

// Checks a parsed bundle against `roster` — its steward signatures already
// checked by the caller against keys the auditor holds, and `roster` the one
// the bundle carries — and writes what was checked, and the trail, to `out`.
// DataLoss "the bundle does NOT verify: PART: ..." naming the first part that
// fails: the checkpoint's signature by the org's key; each entry's inclusion
// proof, its case and its place on the trail; each receipt's signature by the
// receiver's key and that it names the envelope the entry records; each
// attestation's signature by the accessing org's key and that it says what the
// entry that recorded it says; the digest on the last line.
absl::Status VerifyCaseBundle(const CaseBundle& bundle, const v1::Roster& roster,
                              std::ostream& out);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_CASE_BUNDLE_H_
