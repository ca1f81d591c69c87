// The signed federation roster: its verification (corridord, before it trusts
// anything in it; corridorctl, checking an export against an org's keys).
// Signing and unverified display are corridorctl's (client/ctl/roster_signing.h).
//
// A signed roster is a DSSE envelope, stored as JSON, whose payload is the
// serialized corridor.v1.Roster and whose signatures are Ed25519 signatures by
// steward keys (keyid = the steward key's name). See docs/configuration.md.
// Stateless; thread-safe.
#ifndef CORRIDOR_CLIENT_LIB_ROSTER_H_
#define CORRIDOR_CLIENT_LIB_ROSTER_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/crypto/crypto.h"
#include "ledger/note.h"

namespace corridor {

inline constexpr char kRosterPayloadType[] = "application/vnd.corridor.roster.v1+protobuf";

struct StewardPublicKey {
  std::string name;
  Ed25519PublicKey key;
};

struct VerifiedRoster {
  v1::Roster roster;
  std::string payload;                 // the exact signed bytes
  std::string digest_hex;              // SHA-256 of payload
  std::vector<std::string> signed_by;  // steward names whose signatures verified
};

// Parses a signed roster's DSSE envelope (strict JSON, no unknown fields)
// and checks its payload type. Signatures are not checked here.
// InvalidArgument saying what is malformed.
absl::StatusOr<v1::Envelope> ParseSignedRosterEnvelope(absl::string_view json);

// Checks the roster's own consistency: federation set, version > 0, member ids
// well-formed and unique, CA certificates and signing keys parse, endpoints
// present, agreement parties are members. InvalidArgument naming the problem.
absl::Status ValidateRoster(const v1::Roster& roster);

// Verifies a signed roster (DSSE JSON): payload type, at least `threshold`
// distinct steward signatures, a well-formed payload with no unknown fields,
// the expected federation, and ValidateRoster. Errors are InvalidArgument
// (malformed) or PermissionDenied (signatures), each saying what is wrong.
absl::StatusOr<VerifiedRoster> VerifySignedRoster(absl::string_view envelope_json,
                                                  const std::vector<StewardPublicKey>& stewards,
                                                  uint32_t threshold,
                                                  absl::string_view expected_federation);

// Every key of `org` that may have signed its checkpoints (active and retired,
// not revoked), active first: after a key rotation older checkpoints verify
// with the retired key.
absl::StatusOr<std::vector<note::Verifier>> LedgerVerifiersFromRoster(const v1::Roster& roster,
                                                                      absl::string_view org);

}  // namespace corridor

#endif  // CORRIDOR_CLIENT_LIB_ROSTER_H_
