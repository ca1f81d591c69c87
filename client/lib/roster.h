// The signed federation roster: signing (corridorctl, by stewards) and
// verification (corridord, before it trusts anything in it).
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

// Returns the DSSE JSON for `roster` signed by `key` under `key_name`. If
// `existing_json` is not empty it must be a signed roster; the signature is
// added to it (co-signing by several stewards) and its payload is kept byte for byte.
absl::StatusOr<std::string> SignRoster(const v1::Roster* roster, absl::string_view existing_json,
                                       absl::string_view key_name, const Ed25519PrivateKey& key);

// Every key of `org` that may have signed its checkpoints (active and retired,
// not revoked), active first: after a key rotation older checkpoints verify
// with the retired key.
absl::StatusOr<std::vector<note::Verifier>> LedgerVerifiersFromRoster(const v1::Roster& roster,
                                                                      absl::string_view org);

// Parses a signed roster without verifying signatures (for display).
absl::StatusOr<v1::Roster> PeekSignedRoster(absl::string_view envelope_json);

}  // namespace corridor

#endif  // CORRIDOR_CLIENT_LIB_ROSTER_H_
