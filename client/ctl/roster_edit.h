// Editing a roster source the way stewards change the roster in force
// (`corridorctl roster new-version`, `add-member`, `remove-member`, `add-key`,
// `retire-key`, `revoke-key`, `revoke-cert`, `add-agreement`,
// `end-agreement`), describing what changes between two versions (`roster
// diff`) and reading the stewards file (`roster verify`, `roster show`).
//
// Each edit works on a v1::Roster in memory and either changes it and returns
// OK, or returns an error naming the cause and what to do, leaving it
// untouched. The caller validates the result (ValidateRoster) and writes it.
// Times come from the caller (`now`). Stateless; thread-safe.
#ifndef CORRIDOR_CLIENT_CTL_ROSTER_EDIT_H_
#define CORRIDOR_CLIENT_CTL_ROSTER_EDIT_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "client/ctl/args.h"
#include "client/lib/roster.h"
#include "corridor/v1/roster.pb.h"

namespace corridor::roster_edit {

// How long a retired key keeps vouching for what it signed before retirement
// when no --valid-until is given: the longest an envelope may live
// (server/federation/envelope.h, kDefaultMaxEnvelopeLifetime).
inline constexpr absl::Duration kDefaultRetiredKeyGrace = absl::Hours(24 * 30);

// The next roster source after `in_force`: the same members and agreements,
// version + 1, issued at `now`.
v1::Roster NewVersion(const v1::Roster& in_force, absl::Time now);

// Adds `member` (one signing key, a CA). AlreadyExists if its org is listed;
// InvalidArgument if its country is not two letters, its endpoint not
// HOST:PORT, or its CA certificate or a signing key (id or public key) is
// already another member's.
absl::Status AddMember(v1::Roster& roster, const v1::Member& member);

// Removes `org`. NotFound if not listed; FailedPrecondition naming the
// agreements it is a party to (end those first).
absl::Status RemoveMember(v1::Roster& roster, absl::string_view org);

// Adds an active signing key to `org`, valid from `valid_from`. NotFound for
// an unknown org; AlreadyExists if the key id is the org's already or the
// public key is anyone's; InvalidArgument if the public key is not a base64
// 32-byte Ed25519 key.
absl::Status AddKey(v1::Roster& roster, absl::string_view org, absl::string_view key_id,
                    absl::string_view public_key_b64, absl::Time valid_from);

// Marks a key retired, valid until `valid_until` (what it signed before then
// still verifies). NotFound for an unknown org or key; FailedPrecondition if
// the key is revoked already or is the org's last active key, or if it is
// retired already and `until_given` is false (a default date would silently
// move its end).
absl::Status RetireKey(v1::Roster& roster, absl::string_view org, absl::string_view key_id,
                       absl::Time valid_until, bool until_given);

// Marks a key revoked (nothing it signed is accepted any more). NotFound for
// an unknown org or key; FailedPrecondition if it is revoked already or is
// the org's last active key.
absl::Status RevokeKey(v1::Roster& roster, absl::string_view org, absl::string_view key_id);

// Adds `serial` (any form pki::NormalizeSerial takes) to the org's
// revoked_serials in normalized form, which it returns. NotFound for an
// unknown org; InvalidArgument for a malformed serial; AlreadyExists if listed.
absl::StatusOr<std::string> RevokeCert(v1::Roster& roster, absl::string_view org,
                                       absl::string_view serial);

// Adds an agreement. AlreadyExists for a listed id; InvalidArgument if a
// party is not a member (naming it), fewer than two parties or no purposes.
absl::Status AddAgreement(v1::Roster& roster, const v1::Agreement& agreement);

// Removes an agreement. NotFound (listing the ids there are) otherwise.
absl::Status EndAgreement(v1::Roster& roster, absl::string_view id);

// The kinds of member agreement `a` lets request evidence, as words
// ("prosecutor, inspectorate"); empty if none.
std::string EvidenceRequesters(const v1::Agreement& a);

// What changes from `before` to `after`, one sentence per change, in the
// order: version, federation, members added, removed, changed (name,
// country, kind, endpoint, CA, keys, revoked certificates), agreements added,
// ended, changed. Empty if nothing differs but issued_at.
std::vector<std::string> DescribeChanges(const v1::Roster& before, const v1::Roster& after);

// The steward keys and threshold in a stewards file: what `pki federation`
// writes (steward_keys:), a node config's roster: section, or a whole node
// config. threshold is 0 if the file gives none. InvalidArgument naming the
// file and what is wrong (no keys, a key that does not decode).
struct Stewards {
  std::vector<StewardPublicKey> keys;
  uint32_t threshold = 0;
};
absl::StatusOr<Stewards> LoadStewards(const std::string& path);

// A signed roster checked against the stewards file `stewards_file` (a
// stewards.yaml or a node config) and --threshold (else the file's threshold),
// for --federation (else the roster's own): `roster verify`, `roster show`,
// `roster new-version` and the audit commands. Errors about the roster itself
// name `label`.
struct Checked {
  VerifiedRoster roster;
  uint32_t threshold = 0;
  size_t stewards = 0;
};
absl::StatusOr<Checked> CheckSignatures(const Args& args, const std::string& stewards_file,
                                        const std::string& label, const std::string& json);
// "signatures checked: signed by steward-1, steward-2 (2 of 3 stewards; 2 required)".
std::string SignedBySentence(const Checked& c);

}  // namespace corridor::roster_edit

#endif  // CORRIDOR_CLIENT_CTL_ROSTER_EDIT_H_
