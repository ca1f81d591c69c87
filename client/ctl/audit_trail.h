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

#include <map>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/ctl/command.h"
#include "corridor/v1/case.grpc.pb.h"
#include "ledger/merkle.h"
#include "ledger/note.h"

namespace corridor::ctl {

// Entries proved against one pinned checkpoint (already verified), each
// fetched from the node once with its inclusion proof at the checkpoint's
// size and checked against its root. A node asking the caller to slow down is
// asked again after a pause.
class InclusionProver {
 public:
  InclusionProver(const Connection& conn, const note::Checkpoint& pinned);
  ~InclusionProver();
  InclusionProver(const InclusionProver&) = delete;
  InclusionProver& operator=(const InclusionProver&) = delete;

  // Entry `index`, proved; DataLoss "the audit trail does NOT verify: ..." if
  // its proof does not hold or it is not an access event.
  absl::StatusOr<const v1::AccessEvent*> Prove(uint64_t index);
  // The bytes and the proof of an entry Prove returned.
  const std::string& Entry(uint64_t index) const { return entries_.at(index); }
  const std::vector<merkle::Hash>& Proof(uint64_t index) const { return proofs_.at(index); }

 private:
  absl::Status Call(const v1::InclusionProofRequest& req, v1::InclusionProofResponse* resp);

  const Connection& conn_;
  std::unique_ptr<v1::AuditService::Stub> stub_;
  const note::Checkpoint pinned_;
  std::map<uint64_t, v1::AccessEvent> proven_;
  std::map<uint64_t, std::string> entries_;
  std::map<uint64_t, std::vector<merkle::Hash>> proofs_;
};

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
