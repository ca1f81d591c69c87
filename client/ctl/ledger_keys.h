// Checking what a node says about its ledger (checkpoints, inclusion proofs)
// and what a peer signed (fetch receipts) with keys from the federation's
// roster, never with keys the node itself supplies. Used by the `audit`
// commands and `evidence custody`.
// Internal to client/ctl. Not thread-safe (one command at a time).
#ifndef CORRIDOR_CLIENT_CTL_LEDGER_KEYS_H_
#define CORRIDOR_CLIENT_CTL_LEDGER_KEYS_H_

#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/ctl/args.h"
#include "corridor/v1/roster.pb.h"
#include "google/protobuf/repeated_ptr_field.h"
#include "ledger/crypto/crypto.h"
#include "ledger/merkle.h"
#include "ledger/note.h"

namespace corridor::ctl {

// --roster, --org, --stewards, --threshold, --vkey: where the key comes from.
std::vector<OptionSpec> LedgerKeyOptions();

// The roster in `roster_file`, its steward signatures checked against the
// stewards file in --stewards (else CORRIDOR_STEWARDS) and --threshold.
// InvalidArgument if no stewards file is given: an unchecked roster supplies
// no key.
absl::StatusOr<v1::Roster> RosterFromOptions(const Args& args, const std::string& roster_file);

// The keys that may have signed the checkpoints of --org (else `default_org`),
// from the roster in --roster (or CORRIDOR_ROSTER), or the one given with
// --vkey. If `roster` is not null and the keys came from a roster, *roster is
// set to it. InvalidArgument if neither a roster nor --vkey is given, or no org.
absl::StatusOr<std::vector<note::Verifier>> VerifiersFromOptions(const Args& args,
                                                                 const std::string& default_org,
                                                                 v1::Roster* roster = nullptr);

// The same for `org`, whatever --org says (for a command whose --org means
// something else).
absl::StatusOr<std::vector<note::Verifier>> LedgerVerifiers(const Args& args,
                                                            const std::string& org,
                                                            v1::Roster* roster = nullptr);

// If the roster lists a revoked key of the org with which `verifies`
// succeeds, why the export or checkpoint is refused, in words; "" otherwise.
std::string SignedByRevokedKey(const Args& args, const std::string& default_org,
                               const std::function<bool(const note::Verifier&)>& verifies);

// A checkpoint whose signature verified, and the key that verified it.
struct OpenedCheckpoint {
  note::Checkpoint checkpoint;
  note::Verifier verifier;
};

// Opens `checkpoint_text` with the first of `verifiers` that verifies it.
// DataLoss "the node's checkpoint does not verify: ..." (naming a revoked key
// if one signed it) otherwise.
absl::StatusOr<OpenedCheckpoint> OpenCheckpointWithAny(const Args& args,
                                                       const std::string& default_org,
                                                       const std::vector<note::Verifier>& verifiers,
                                                       const std::string& checkpoint_text);

// The hashes of an inclusion proof as a node sent them; DataLoss "the proof
// holds a malformed hash" if one is not 32 bytes.
absl::StatusOr<std::vector<merkle::Hash>> ProofHashes(
    const google::protobuf::RepeatedPtrField<std::string>& proof);

// The signing key `key_id` of member `org` in `roster`, to check something
// that org signed (a receipt, an attestation); PermissionDenied if the roster
// lists it as revoked, NotFound if it lists no such key or org.
absl::StatusOr<Ed25519PublicKey> MemberSigningKey(const v1::Roster& roster, const std::string& org,
                                                  const std::string& key_id);

// The org a user certificate (--cert or CORRIDOR_CERT) names in its SPIFFE ID
// (spiffe://FEDERATION/ORG/user/NAME); "" if there is none or it cannot be read.
std::string OrgOfCertificate(const Args& args);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_LEDGER_KEYS_H_
