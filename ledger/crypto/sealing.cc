#include "ledger/crypto/sealing.h"

#include <openssl/evp.h>

#include <memory>

#include "ledger/crypto/crypto.h"
#include "ledger/crypto/openssl_ptr.h"

namespace corridor {
namespace {

constexpr size_t kNonceSize = 12;
constexpr size_t kTagSize = 16;

const unsigned char* U(absl::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

std::string Seal(absl::string_view key, absl::string_view aad, absl::string_view plaintext) {
  if (key.size() != kAesKeySize) abort();  // a programming error, never input
  const std::string nonce = RandomBytes(kNonceSize);
  std::string out(kNonceSize + plaintext.size() + kTagSize, '\0');
  memcpy(out.data(), nonce.data(), kNonceSize);
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  unsigned char* ct = reinterpret_cast<unsigned char*>(out.data()) + kNonceSize;
  if (EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), U(nonce)) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), ct, &len, U(plaintext), static_cast<int>(plaintext.size())) !=
          1 ||
      EVP_EncryptFinal_ex(ctx.get(), ct + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize, ct + plaintext.size()) != 1) {
    abort();
  }
  return out;
}

absl::StatusOr<std::string> Unseal(absl::string_view key, absl::string_view aad,
                                   absl::string_view sealed) {
  if (key.size() != kAesKeySize) return absl::InternalError("wrong key size");
  if (sealed.size() < kNonceSize + kTagSize) {
    return absl::DataLossError("sealed value is truncated");
  }
  const size_t ct_len = sealed.size() - kNonceSize - kTagSize;
  std::string out(ct_len, '\0');
  EvpCipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0;
  std::string tag(sealed.substr(kNonceSize + ct_len));
  if (EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, U(key), U(sealed)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, U(aad), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), &len,
                        U(sealed.substr(kNonceSize)), static_cast<int>(ct_len)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.data()) + len, &len) !=
          1) {
    return absl::DataLossError(
        "sealed value does not open: altered, misplaced, or under another key");
  }
  return out;
}

}  // namespace corridor
