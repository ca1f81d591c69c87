// The one family of RAII owners for OpenSSL objects, used everywhere the
// project calls OpenSSL (ledger/crypto, client/lib/pki, their tests):
//
//   OpenSslPtr<EVP_PKEY, EVP_PKEY_free> key(EVP_PKEY_new_raw_public_key(...));
//
// A std::unique_ptr whose deleter calls the object's own free function
// (nothing for nullptr). The common types have names below; add one here
// rather than writing a deleter beside the code that needs it. Header-only;
// include OpenSSL's headers for the types you use.
#ifndef CORRIDOR_LEDGER_CRYPTO_OPENSSL_PTR_H_
#define CORRIDOR_LEDGER_CRYPTO_OPENSSL_PTR_H_

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <memory>

namespace corridor {

template <typename T, void (*Free)(T*)>
struct OpenSslDeleter {
  void operator()(T* p) const {
    if (p != nullptr) Free(p);
  }
};
template <typename T, void (*Free)(T*)>
using OpenSslPtr = std::unique_ptr<T, OpenSslDeleter<T, Free>>;

// BIO_free_all frees a whole chain; for a single memory BIO it is BIO_free.
inline void FreeBio(BIO* b) { BIO_free_all(b); }

using BioPtr = OpenSslPtr<BIO, FreeBio>;
using EvpCipherCtxPtr = OpenSslPtr<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>;
using EvpMdCtxPtr = OpenSslPtr<EVP_MD_CTX, EVP_MD_CTX_free>;
using EvpPkeyPtr = OpenSslPtr<EVP_PKEY, EVP_PKEY_free>;

}  // namespace corridor

#endif  // CORRIDOR_LEDGER_CRYPTO_OPENSSL_PTR_H_
