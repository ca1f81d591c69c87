// corridorctl audit checkpoint --cosigned K and audit forks: what the
// federation's witnesses vouch for (docs/audit.md, "Cosigned checkpoints",
// "Forks"). Every signature and cosignature is checked with keys from the
// steward-checked roster, never with keys the node supplies.
// Internal to client/ctl. Not thread-safe (one command at a time).
#ifndef CORRIDOR_CLIENT_CTL_AUDIT_WITNESS_H_
#define CORRIDOR_CLIENT_CTL_AUDIT_WITNESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/ctl/command.h"
#include "corridor/v1/node.pb.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/note.h"

namespace corridor::ctl {

// `audit checkpoint --cosigned K`: the node's newest checkpoint carrying at
// least K peer cosignatures; its signature and each cosignature verified;
// FailedPrecondition if fewer than K verify.
absl::Status RunAuditCosignedCheckpoint(Context& c);

// `audit forks`: the fork evidence the node's witness kept, each checkpoint
// verified with the forked org's roster keys.
absl::Status RunAuditForks(Context& c);

// The orgs of `roster` (other than `node_org`) whose witness key (type 0x04,
// name "<federation>/<org>", each of the org's keys not revoked) verifies a
// cosignature on `n`.
std::vector<std::string> VerifiedCosigners(const v1::Roster& roster, const std::string& node_org,
                                           const note::Note& n);

// What a kept fork proves, checked: both checkpoints verify with `org`'s keys
// and are inconsistent as `kind` says. DataLoss naming what does not hold.
absl::StatusOr<std::string> CheckForkEvidence(const v1::ForkEvidence& fork,
                                              const std::vector<note::Verifier>& keys);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_AUDIT_WITNESS_H_
