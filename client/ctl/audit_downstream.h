// `corridorctl audit log --case ID --downstream [--prove]` and `corridorctl
// audit reconcile --peer ORG` (docs/audit.md, "Downstream access" and
// "Reconciliation").
//
// --downstream lists the signed access attestations the node holds about one
// of its cases (AuditService.ListAttestations): each envelope's signature is
// checked here with the sending org's key from the steward-checked roster,
// and it must name the case asked about and this node as its recipient.
// --prove also asks the node to fetch, from each receiver, the inclusion
// proof of the attested ledger entry (AuditService.ProveDownstream), and
// checks it here against the receiver's checkpoint signed with the
// receiver's ledger key from the roster; the entry must be the read attested.
// Internal to client/ctl. Not thread-safe (one command at a time).
#ifndef CORRIDOR_CLIENT_CTL_AUDIT_DOWNSTREAM_H_
#define CORRIDOR_CLIENT_CTL_AUDIT_DOWNSTREAM_H_

#include "absl/status/status.h"
#include "client/ctl/command.h"

namespace corridor::ctl {

// `audit log --case ID --downstream`. DataLoss naming the first attestation
// or proof that does not verify; InvalidArgument without --case or a roster.
absl::Status RunAuditDownstream(Context& c);

// `audit reconcile --peer ORG`: the envelopes one side recorded and the other
// did not, listed; FailedPrecondition (exit 1) if there are any.
absl::Status RunAuditReconcile(Context& c);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_AUDIT_DOWNSTREAM_H_
