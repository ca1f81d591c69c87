// `corridorctl audit log --verify`: checks a node's answer to an audit query
// instead of taking it on the node's word. Every entry returned is proved to be
// in the ledger with an inclusion proof against a checkpoint signed with the
// org's key from the roster (ledger_keys.h), and must be exactly the entry the
// node showed. For a case's or an actor's trail (--case, --actor) the links each
// entry carries (AccessEvent.prev_case_entry / prev_actor_entry, set by the
// ledger as it assigned the index, so covered by the tree) are followed from the
// newest entry returned back to the trail's first entry (or to the end of the
// page): every entry on the way that matches the query must have been returned,
// so an entry the node hides — its index keys deleted, or dropped from the
// answer — shows. docs/audit.md, "Checking that a trail is complete".
// Internal to client/ctl. Not thread-safe (one command at a time).
#ifndef CORRIDOR_CLIENT_CTL_AUDIT_TRAIL_H_
#define CORRIDOR_CLIENT_CTL_AUDIT_TRAIL_H_

#include <ostream>

#include "absl/status/status.h"
#include "client/ctl/args.h"
#include "client/ctl/command.h"
#include "corridor/v1/case.pb.h"

namespace corridor::ctl {

// Checks `resp`, the node's answer to `req`, as above, asking `conn` for the
// proofs; the org whose ledger it is comes from --org, else the user's
// certificate. Writes what was checked to `out`. DataLoss "the audit trail
// does NOT verify: ..." naming the first entry that fails; the key errors of
// VerifiersFromOptions; the node's refusals as Explain() words them.
absl::Status VerifyTrail(const Args& args, const Connection& conn,
                         const v1::QueryEventsRequest& req, const v1::QueryEventsResponse& resp,
                         std::ostream& out);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_AUDIT_TRAIL_H_
