#include "ledger/crypto/dsse.h"

#include "absl/strings/str_cat.h"

namespace corridor {

std::string DssePae(absl::string_view payload_type, absl::string_view payload) {
  return absl::StrCat("DSSEv1 ", payload_type.size(), " ", payload_type, " ", payload.size(), " ",
                      payload);
}

void DsseSign(DsseEnvelope& envelope, absl::string_view keyid, const Ed25519PrivateKey& key) {
  envelope.signatures.push_back(
      {std::string(keyid), key.Sign(DssePae(envelope.payload_type, envelope.payload))});
}

bool DsseVerifiedBy(const DsseEnvelope& envelope, absl::string_view keyid,
                    const Ed25519PublicKey& key) {
  const std::string pae = DssePae(envelope.payload_type, envelope.payload);
  for (const DsseSignature& s : envelope.signatures) {
    if (s.keyid == keyid && key.Verify(pae, s.sig)) return true;
  }
  return false;
}

}  // namespace corridor
