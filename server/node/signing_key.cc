#include "server/node/signing_key.h"

#include "absl/strings/str_cat.h"
#include "ledger/crypto/pkcs11.h"

namespace corridor {
namespace {

absl::Status At(absl::string_view key, const absl::Status& st) {
  return absl::InvalidArgumentError(absl::StrCat("signing_key.", key, ": ", st.message()));
}

Pkcs11KeyRef RefOf(const v1::Pkcs11KeyConfig& c) {
  return Pkcs11KeyRef{c.module(), c.token_label(), c.key_label(), c.key_object_id()};
}

absl::StatusOr<std::unique_ptr<Signer>> OpenTokenKey(const v1::Pkcs11KeyConfig& c) {
  // Each step's error names the setting to look at.
  auto module = Pkcs11Module::Load(c.module());
  if (!module.ok()) return At("pkcs11.module", module.status());
  if (auto slot = (*module)->FindToken(c.token_label()); !slot.ok()) {
    return At("pkcs11.token_label", slot.status());
  }
  auto pin = ReadPinFile(c.pin_file());
  if (!pin.ok()) return At("pkcs11.pin_file", pin.status());
  auto signer = Pkcs11Signer::Open(RefOf(c), *std::move(pin));
  if (!signer.ok()) {
    const absl::Status& st = signer.status();
    if (absl::IsPermissionDenied(st)) {
      return At("pkcs11.pin_file",
                absl::Status(st.code(), absl::StrCat(c.pin_file(), ": ", st.message())));
    }
    if (absl::IsUnavailable(st)) return At("pkcs11", st);
    return At(c.key_label().empty() ? "pkcs11.key_object_id" : "pkcs11.key_label", st);
  }
  return std::unique_ptr<Signer>(*std::move(signer));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Signer>> OpenSigningKey(const v1::SigningKeyConfig& config) {
  if (config.has_pkcs11()) return OpenTokenKey(config.pkcs11());
  auto key = Ed25519PrivateKey::FromPemFile(config.key_file());
  if (!key.ok()) return At("key_file", key.status());
  return std::unique_ptr<Signer>(std::make_unique<Ed25519PrivateKey>(*std::move(key)));
}

std::string DescribeSigningKey(const v1::SigningKeyConfig& config) {
  if (!config.has_pkcs11()) return config.key_file();
  return absl::StrCat("the ", RefOf(config.pkcs11()).Describe(), " (PKCS#11 module ",
                      config.pkcs11().module(), ")");
}

}  // namespace corridor
