// `corridorctl audit log --verify`: checks a node's answer to an audit query
// instead of taking it on the node's word. Every entry returned is proved to be
// in the ledger with an inclusion proof against one checkpoint signed with the
// org's key from the roster (ledger_keys.h) and consistent with the auditor's
// saved one (audit_state.h), and must be exactly the entry the node showed.
// For a case's or an actor's trail (--case, --actor) the links each entry
// carries (AccessEvent.prev_case_entry / prev_actor_entry, set by the ledger as
// it assigned the index, so covered by the tree) are followed from the newest
// entry returned (or the page token's entry) back to the trail's first entry
// (or to the oldest entry of the page): every entry on the way that matches the
// query must have been returned, so an entry the node leaves out of its answer
// — its index keys deleted after a later entry on its trail was recorded, or
// dropped from the answer — shows. docs/audit.md, "Checking that a trail is
// complete", says what this does not catch.
// Internal to client/ctl. Not thread-safe (one command at a time).
#ifndef CORRIDOR_CLIENT_CTL_AUDIT_TRAIL_H_
#define CORRIDOR_CLIENT_CTL_AUDIT_TRAIL_H_

#include <ostream>

#include "absl/status/status.h"
#include "client/ctl/command.h"
#include "corridor/v1/case.pb.h"
#include "ledger/note.h"

namespace corridor::ctl {

// Checks `resp`, the node's answer to `req`, as above, with inclusion proofs
// `conn` gives at the size of `pinned` (a checkpoint already verified with
// the roster's keys and against the auditor's saved one), checked against its
// root. Writes what was checked to `out`. DataLoss "the audit trail does NOT
// verify: ..." naming the first entry that fails; the node's refusals as
// Explain() words them (a node asking to slow down is asked again, later).
absl::Status VerifyTrail(const Connection& conn, const note::Checkpoint& pinned,
                         const v1::QueryEventsRequest& req, const v1::QueryEventsResponse& resp,
                         std::ostream& out);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_AUDIT_TRAIL_H_
