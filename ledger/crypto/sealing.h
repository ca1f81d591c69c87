// Encryption at rest for case content: AES-256-GCM with a random 96-bit nonce.
// A sealed value is nonce(12) ‖ ciphertext ‖ tag(16); the associated data binds
// it to its place (case id, evidence id, chunk number), so a sealed value
// copied to another place does not open. Stateless; thread-safe.
#ifndef CORRIDOR_LEDGER_CRYPTO_SEALING_H_
#define CORRIDOR_LEDGER_CRYPTO_SEALING_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corridor {

inline constexpr size_t kAesKeySize = 32;

// Seals `plaintext` under the 32-byte `key`.
std::string Seal(absl::string_view key, absl::string_view aad, absl::string_view plaintext);

// Opens a sealed value; DataLoss if it was altered, bound to other associated
// data, or sealed under another key.
absl::StatusOr<std::string> Unseal(absl::string_view key, absl::string_view aad,
                                   absl::string_view sealed);

}  // namespace corridor

#endif  // CORRIDOR_LEDGER_CRYPTO_SEALING_H_
