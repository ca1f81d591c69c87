// The ledger export format: a range of entries, the signed checkpoint that
// covers them, and the subtree hashes that connect the range to the
// checkpoint's root. Verifiable offline with nothing but the file and the
// ledger's checkpoint verifier key. Format: docs/ledger.md ("Export").
// Stateless; thread-safe.
#ifndef CORRIDOR_LEDGER_EXPORT_H_
#define CORRIDOR_LEDGER_EXPORT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ledger/merkle.h"
#include "ledger/note.h"

namespace corridor::ledger {

inline constexpr char kExportMagic[] = "corridor-ledger-export v1";

// An export in three parts, for sending one of any size with bounded memory:
// `head`, then ExportEntryLine(e, leaf) for each entry of the range in order,
// then `tail` (Ledger::Export; the node's AuditService.Export).
struct ExportFrame {
  std::string head;  // the magic line, first, count and hashes lines
  std::string tail;  // the connecting hash lines and the checkpoint
};
// The frame of an export of the `count` entries [first, first + count) of a
// tree of `size` leaves whose signed checkpoint note is `checkpoint_note`,
// connecting hashes taken from `nodes`. InvalidArgument if the range is empty
// or beyond `size`.
absl::StatusOr<ExportFrame> BuildExportFrame(uint64_t first, uint64_t count, uint64_t size,
                                             absl::string_view checkpoint_note,
                                             const merkle::NodeSource& nodes);
// One entry's line in an export, with the leaf hash the ledger stored for it
// (so that a verifier can name an entry whose bytes no longer match it).
std::string ExportEntryLine(absl::string_view entry, const merkle::Hash& stored_leaf);

// What VerifyExport proved: the checkpoint (signature checked) and that
// `entries` are exactly the entries [first_index, first_index + count) of
// the tree it commits to.
struct VerifiedExport {
  note::Checkpoint checkpoint;
  std::string checkpoint_note;
  uint64_t first_index = 0;
  std::vector<std::string> entries;
};

// Verifies an export with only its bytes and the ledger's verifier key.
// Errors:
//   InvalidArgument   not an export, or malformed (the message says where);
//   PermissionDenied  the checkpoint is not signed by `verifier`;
//   DataLoss          an entry does not match the leaf hash listed with it
//                     (named: "entry N ..."), or entries and connecting
//                     hashes do not lead to the signed root (a changed,
//                     dropped or reordered entry).
absl::StatusOr<VerifiedExport> VerifyExport(absl::string_view export_bytes,
                                            const note::Verifier& verifier);
// Same, with the verifier key in signed-note "name+hexid+base64" form.
absl::StatusOr<VerifiedExport> VerifyExport(absl::string_view export_bytes,
                                            absl::string_view verifier_key);

}  // namespace corridor::ledger

#endif  // CORRIDOR_LEDGER_EXPORT_H_
