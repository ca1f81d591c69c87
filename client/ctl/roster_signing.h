// Signing a federation roster (stewards, with `corridorctl roster sign`) and
// reading one without checking its signatures (for display). Only corridorctl
// and tests need these; the node only verifies (client/lib/roster.h), so it
// holds no code that signs a roster or trusts an unverified one.
// Stateless; thread-safe.
#ifndef CORRIDOR_CLIENT_CTL_ROSTER_SIGNING_H_
#define CORRIDOR_CLIENT_CTL_ROSTER_SIGNING_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/lib/roster.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/crypto/crypto.h"

namespace corridor {

// Returns the DSSE JSON for `roster` signed by `key` under `key_name`. If
// `existing_json` is not empty it must be a signed roster; the signature is
// added to it (co-signing by several stewards) and its payload is kept byte
// for byte. InvalidArgument for a roster that fails ValidateRoster or an
// envelope that does not parse; AlreadyExists if `key_name` signed it already.
absl::StatusOr<std::string> SignRoster(const v1::Roster* roster, absl::string_view existing_json,
                                       absl::string_view key_name, const Ed25519PrivateKey& key);

// Parses a signed roster without verifying signatures (for display only).
// InvalidArgument if the envelope or its payload does not parse.
absl::StatusOr<v1::Roster> PeekSignedRoster(absl::string_view envelope_json);

}  // namespace corridor

#endif  // CORRIDOR_CLIENT_CTL_ROSTER_SIGNING_H_
