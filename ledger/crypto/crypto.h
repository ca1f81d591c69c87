// Cryptographic primitives the ledger and the federation build on: SHA-256 and
// Ed25519 (RFC 8032) through OpenSSL 3, plus base64 and hex codecs.
//
// Everything here is stateless or immutable after construction and therefore
// thread-safe. Keys are raw 32-byte Ed25519 values; PEM is only used at the edges
// (files on disk).
#ifndef CORRIDOR_LEDGER_CRYPTO_CRYPTO_H_
#define CORRIDOR_LEDGER_CRYPTO_CRYPTO_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
// Key files are read and written with these (ReadFileToString,
// WriteFileAtomically); many users of this header rely on it for them.
#include "ledger/base/file.h"
#include "ledger/crypto/secret.h"

namespace corridor {

using Sha256Digest = std::array<uint8_t, 32>;

// SHA-256 of `data`.
Sha256Digest Sha256(absl::string_view data);

// Incremental SHA-256, for hashing data that arrives in pieces (evidence uploads,
// domain-separated tree hashes). Not thread-safe.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;
  void Update(absl::string_view data);
  Sha256Digest Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// The digest as a 32-byte string.
inline std::string DigestBytes(const Sha256Digest& d) {
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

std::string HexEncode(absl::string_view bytes);
// Returns InvalidArgument for odd length or non-hex characters.
absl::StatusOr<std::string> HexDecode(absl::string_view hex);
// Standard base64 with padding (RFC 4648 §4).
std::string Base64Encode(absl::string_view bytes);
// Strict standard base64 with padding; InvalidArgument on anything else.
absl::StatusOr<std::string> Base64Decode(absl::string_view b64);

// Fills `n` bytes from the OpenSSL CSPRNG.
std::string RandomBytes(size_t n);

constexpr size_t kEd25519PublicKeySize = 32;
constexpr size_t kEd25519SignatureSize = 64;

// An Ed25519 public key. Verification is constant in the key; cheap to copy.
class Ed25519PublicKey {
 public:
  // Returns InvalidArgument unless `raw` is exactly 32 bytes.
  static absl::StatusOr<Ed25519PublicKey> FromRaw(absl::string_view raw);
  // Parses a SubjectPublicKeyInfo PEM ("-----BEGIN PUBLIC KEY-----").
  static absl::StatusOr<Ed25519PublicKey> FromPem(absl::string_view pem);

  // True iff `signature` is a valid Ed25519 signature of `message`.
  bool Verify(absl::string_view message, absl::string_view signature) const;

  const std::string& raw() const { return raw_; }
  std::string ToPem() const;

 private:
  explicit Ed25519PublicKey(std::string raw) : raw_(std::move(raw)) {}
  std::string raw_;
};

// Something that makes Ed25519 signatures with one key: a key in memory
// (Ed25519PrivateKey, read from a file) or a key that never leaves a PKCS#11
// token (Pkcs11Signer, ledger/crypto/pkcs11.h). Every signature the node makes
// (envelopes, receipts, checkpoints, cosignatures) goes through this interface.
// Implementations are thread-safe: Signature may be called from many threads
// at once.
class Signer {
 public:
  virtual ~Signer() = default;
  // The public key the signatures verify with.
  virtual const Ed25519PublicKey& public_key() const = 0;
  // The 64-byte Ed25519 signature of `message`. A key in memory never fails;
  // a token may: Unavailable (the token or its module failed; the message
  // says what the token answered), and then nothing was signed.
  virtual absl::StatusOr<std::string> Signature(absl::string_view message) const = 0;
};

// An Ed25519 private key. Signing is thread-safe. The key is parsed once,
// when it is made: signing never re-derives it. Move-only: a private key is
// never copied; its seed is wiped when the key is destroyed (SecretBytes),
// and OpenSSL wipes its own copy when the parsed key is freed. Share one key
// by pointer (std::shared_ptr<const Ed25519PrivateKey> or a reference to an
// owner that outlives the users).
class Ed25519PrivateKey : public Signer {
 public:
  static Ed25519PrivateKey Generate();
  // From the 32-byte RFC 8032 seed.
  static absl::StatusOr<Ed25519PrivateKey> FromSeed(absl::string_view seed);
  // PKCS#8 PEM ("-----BEGIN PRIVATE KEY-----").
  static absl::StatusOr<Ed25519PrivateKey> FromPem(absl::string_view pem);
  static absl::StatusOr<Ed25519PrivateKey> FromPemFile(const std::string& path);

  Ed25519PrivateKey(Ed25519PrivateKey&&) noexcept;
  Ed25519PrivateKey& operator=(Ed25519PrivateKey&&) noexcept;
  Ed25519PrivateKey(const Ed25519PrivateKey&) = delete;
  Ed25519PrivateKey& operator=(const Ed25519PrivateKey&) = delete;
  ~Ed25519PrivateKey() override;

  // Cannot fail (a key in memory): the same bytes as Signature.
  std::string Sign(absl::string_view message) const;
  absl::StatusOr<std::string> Signature(absl::string_view message) const override {
    return Sign(message);
  }
  const Ed25519PublicKey& public_key() const override { return public_key_; }
  std::string ToPem() const;  // PKCS#8, unencrypted
  absl::string_view seed() const { return seed_.view(); }

 private:
  struct Parsed;  // the OpenSSL key object
  Ed25519PrivateKey(SecretBytes seed, Ed25519PublicKey pub, std::unique_ptr<const Parsed> parsed);
  SecretBytes seed_;
  Ed25519PublicKey public_key_;
  std::unique_ptr<const Parsed> parsed_;
};

// Compares in time independent of the content.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace corridor

#endif  // CORRIDOR_LEDGER_CRYPTO_CRYPTO_H_
