// C2SP signed notes (signed-note v1.0.0) with Ed25519 signatures, the
// checkpoints they carry (tlog-checkpoint v1.0.0) and witness cosignatures
// (tlog-cosignature v1.0.1). Specs: ../shared/vectors/specs/.
//
// A note is a text body (UTF-8, each line ending in "\n") followed by a blank
// line and signature lines "— <key name> <base64(key id ‖ signature)>".
// Ed25519 key id = SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key)[:4]; cosigner key
// id = SHA-256(name ‖ "\n" ‖ 0x04 ‖ public key)[:4]. Verifier keys are written
// "<name>+<hex key id>+<base64(0x01 ‖ public key)>". Stateless; thread-safe.
#ifndef CORRIDOR_LEDGER_NOTE_H_
#define CORRIDOR_LEDGER_NOTE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ledger/crypto/crypto.h"
#include "ledger/merkle.h"

namespace corridor::note {

// A key that can check note signatures: an Ed25519 note key (type 0x01) or a
// witness cosigner key (type 0x04).
struct Verifier {
  std::string name;
  uint8_t type = 0x01;
  Ed25519PublicKey key;
  uint32_t key_id() const;
  // "<name>+<8 hex digits>+<base64(type ‖ key)>"
  std::string ToString() const;
};

// Parses a verifier key string; InvalidArgument saying what is wrong,
// including a key id that does not match the key.
absl::StatusOr<Verifier> ParseVerifier(absl::string_view vkey);

uint32_t KeyId(absl::string_view name, uint8_t type, const Ed25519PublicKey& key);

struct Signature {
  std::string name;
  uint32_t key_id = 0;
  std::string signature;  // raw bytes after the key id
};

struct Note {
  std::string body;  // the text up to and including the last body "\n"
  std::vector<Signature> signatures;
};

// Splits and checks the note's syntax (not its signatures).
absl::StatusOr<Note> ParseNote(absl::string_view text);
// Renders a note: body, blank line, signature lines.
std::string FormatNote(const Note& note);

// Appends an Ed25519 note signature (type 0x01) by `key` under `name`.
void SignNote(Note& note, absl::string_view name, const Ed25519PrivateKey& key);
// The same with any signer (a key in a token); its error (nothing appended) if
// the signer fails.
absl::Status SignNoteWith(Note& note, absl::string_view name, const Signer& signer);

// OK iff a signature line by `verifier` (matching name and key id) verifies.
// Lines by other keys are ignored. NotFound if no line names this key;
// PermissionDenied if one does and its signature is bad.
absl::Status VerifyNote(const Note& note, const Verifier& verifier);

// A checkpoint (tlog-checkpoint): origin, size, root, extension lines.
struct Checkpoint {
  std::string origin;
  uint64_t size = 0;
  merkle::Hash root{};
  std::vector<std::string> extensions;

  // "<origin>\n<size>\n<base64 root>\n" + extension lines.
  std::string Body() const;
};
absl::StatusOr<Checkpoint> ParseCheckpointBody(absl::string_view body);

// Signs a checkpoint as a note; returns the note text.
std::string SignCheckpoint(const Checkpoint& cp, absl::string_view key_name,
                           const Ed25519PrivateKey& key);
absl::StatusOr<std::string> SignCheckpointWith(const Checkpoint& cp, absl::string_view key_name,
                                               const Signer& signer);
// Parses a checkpoint note and verifies it with `verifier`.
absl::StatusOr<Checkpoint> OpenCheckpoint(absl::string_view note_text, const Verifier& verifier);

// tlog-cosignature v1: a witness signs "cosignature/v1\ntime <t>\n" + body.
Signature Cosign(const Checkpoint& cp, absl::string_view witness_name,
                 const Ed25519PrivateKey& witness_key, uint64_t timestamp);
absl::StatusOr<Signature> CosignWith(const Checkpoint& cp, absl::string_view witness_name,
                                     const Signer& witness, uint64_t timestamp);
// Verifies a cosignature line on `note` by `witness` (type 0x04); returns its timestamp.
absl::StatusOr<uint64_t> VerifyCosignature(const Note& note, const Verifier& witness);

}  // namespace corridor::note

#endif  // CORRIDOR_LEDGER_NOTE_H_
