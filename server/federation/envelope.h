// Signed envelopes between nodes: sealing on the sender, and on the receiver
// every check that must pass before the body is parsed or anything but a
// denial is written. Format and order of checks: docs/federation.md.
// Stateless; thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_ENVELOPE_H_
#define CORRIDOR_SERVER_FEDERATION_ENVELOPE_H_

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corridor/v1/federation.pb.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/crypto/crypto.h"

namespace corridor {

inline constexpr char kEnvelopePayloadType[] = "application/vnd.corridor.envelope.v1+protobuf";
// Envelopes are refused if created further than this in the receiver's future.
inline constexpr absl::Duration kMaxClockSkew = absl::Minutes(5);
// The longest an envelope may live (expires - created), and the oldest it may
// be by the receiver's clock, unless limits.max_envelope_lifetime_days says
// otherwise.
inline constexpr absl::Duration kDefaultMaxEnvelopeLifetime = absl::Hours(24 * 30);

// Signs `payload` (whose key_id must be `key_id`) into a DSSE envelope.
// With a key in memory this cannot fail; with any Signer (the node's key,
// which may be in a PKCS#11 token) the signer's error, and no envelope.
v1::Envelope SignEnvelope(const v1::EnvelopePayload& payload, const Ed25519PrivateKey& key);
absl::StatusOr<v1::Envelope> SignEnvelope(const v1::EnvelopePayload& payload, const Signer& key);

struct EnvelopeContext {
  std::string caller_org;  // from the TLS identity of the calling node
  std::string self_org;    // this node
  const v1::Roster* roster = nullptr;
  absl::Time now;  // the receiver's clock
  size_t max_payload_bytes = 4 << 20;
  absl::Duration max_lifetime = kDefaultMaxEnvelopeLifetime;
};

// Checks, in this order, each with its own error: payload type and size; the
// signature is by a key of the calling node's org and verifies; the payload is
// well formed; its sender is the calling org and its key id the signing key;
// the key was usable when the envelope was created and is still usable now by
// the receiver's clock (PERMISSION_DENIED); the recipient is this node; the
// envelope is not from the future (beyond kMaxClockSkew), not expired, and
// declares a lifetime no longer than `max_lifetime`, so it is never accepted
// older than that (FAILED_PRECONDITION); the agreement
// covers sender, recipient and purpose; a body is present; and the body
// speaks only for the sender (VerifySpeaksForSender). Returns the payload only
// if all pass. Full table: docs/federation.md.
absl::StatusOr<v1::EnvelopePayload> VerifyEnvelope(const v1::Envelope& envelope,
                                                   const EnvelopeContext& ctx);

// A peer speaks only for itself: every field of the body that names a person
// or an org must name the sender or what the sender may name. Referral:
// each evidence item's `added_by` is empty or a principal of the sender.
// Update: `author` is a principal of the sender. Permission: `holder_org` is
// this node, `permitted_org` a member of the roster. Decision: names no
// one (its finality is checked against the case, in Exchange). A body type
// without rules here is refused. PERMISSION_DENIED naming the field.
absl::Status VerifySpeaksForSender(const v1::EnvelopePayload& payload, const EnvelopeContext& ctx);

// Whether `name` is a principal of `org` as nodes write them: "<org>/node" or
// "<org>/user/<name>" (name non-empty, printable ASCII without '/').
bool IsPrincipalOf(absl::string_view name, absl::string_view org);

// Member `org` of `roster`, or null; the signing key `key_id` of member `m`, or null.
const v1::Member* FindMember(const v1::Roster& roster, const std::string& org);
const v1::SigningKey* FindKey(const v1::Member& m, const std::string& key_id);

// Checks an originator's onward-sharing permission (a serialized Envelope with
// an OnwardPermission body) as cited by `holder_org` passing a case on to
// `ctx.self_org` for `purpose` under `agreement`: signed by the originator's
// roster key (never the holder's own), addressed to the holder, unexpired, and
// naming exactly this holder, recipient, purpose and agreement. Returns the
// originator's org.
absl::StatusOr<std::string> VerifyOnwardPermission(absl::string_view serialized,
                                                   const std::string& holder_org,
                                                   const std::string& purpose,
                                                   const std::string& agreement,
                                                   const EnvelopeContext& ctx);

// InvalidArgument naming the first field of access attestation `a` from
// `sender` that is not as docs/federation.md ("Access attestations") says:
// ids are identifiers, the subject "user/<name>", roles known, the action one
// of the two reads, the purpose a code, the time set. Never quotes a value.
absl::Status ValidateAccessAttestationBody(const v1::AccessAttestation& a,
                                           const std::string& sender);

// What a node keeps of a peer's signed envelope or receipt in its ledger,
// which can never be erased: only the fields the signature covers or names
// (payload type, payload, the one signature; body, key id, signature), never
// unknown fields a peer appended to the outer message (proto3 keeps them), so
// a peer cannot make another org's ledger hold bytes of its choosing.
v1::Envelope CanonicalEnvelope(const v1::Envelope& envelope);
v1::Receipt CanonicalReceipt(const v1::Receipt& receipt);

// SHA-256 of the payload bytes: what receipts and ledger entries name.
std::string EnvelopeDigest(const v1::Envelope& envelope);

// The largest receipt a sender accepts (a receipt holds an id, a digest, an
// org, a time and an index; the sender keeps it in its ledger).
inline constexpr size_t kMaxReceiptBytes = 1024;

// Receipts: the receiver signs "corridor-receipt/v1\n" ‖ serialized ReceiptBody.
// As SignEnvelope: the Signer form fails only if the signer does.
v1::Receipt SignReceipt(const v1::ReceiptBody& body, const std::string& key_id,
                        const Ed25519PrivateKey& key);
absl::StatusOr<v1::Receipt> SignReceipt(const v1::ReceiptBody& body, const std::string& key_id,
                                        const Signer& key);
// Verifies a receipt from `receiver_org` for `envelope` against the roster:
// at most kMaxReceiptBytes, signed by a key of the receiver, naming this
// envelope's id and digest and the receiver.
absl::StatusOr<v1::ReceiptBody> VerifyReceipt(const v1::Receipt& receipt,
                                              const v1::Envelope& envelope,
                                              const std::string& receiver_org,
                                              const v1::Roster& roster);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_ENVELOPE_H_
