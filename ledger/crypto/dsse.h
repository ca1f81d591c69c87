// DSSE (Dead Simple Signing Envelope, v1) signing and verification.
//
// Signatures are over PAE(payload_type, payload) =
//   "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload
// where LEN is the ASCII decimal byte length and SP is one space. The payload
// is carried as the exact bytes that were signed; verify before you parse.
// Plain data types and free functions: thread-safe.
#ifndef CORRIDOR_LEDGER_CRYPTO_DSSE_H_
#define CORRIDOR_LEDGER_CRYPTO_DSSE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ledger/crypto/crypto.h"

namespace corridor {

struct DsseSignature {
  std::string keyid;
  std::string sig;  // raw 64-byte Ed25519 signature
};

struct DsseEnvelope {
  std::string payload_type;
  std::string payload;  // exact signed bytes
  std::vector<DsseSignature> signatures;
};

// The pre-authentication encoding that is signed.
std::string DssePae(absl::string_view payload_type, absl::string_view payload);

// Appends a signature by `key` under `keyid`.
void DsseSign(DsseEnvelope& envelope, absl::string_view keyid, const Ed25519PrivateKey& key);

// True iff some signature in `envelope` has keyid `keyid` and verifies with `key`.
bool DsseVerifiedBy(const DsseEnvelope& envelope, absl::string_view keyid,
                    const Ed25519PublicKey& key);

}  // namespace corridor

#endif  // CORRIDOR_LEDGER_CRYPTO_DSSE_H_
