// OpenSSL pieces shared by X.509 inspection and verification
// (client/lib/pki.cc) and certificate issuance (client/ctl/certificates.cc):
// RAII owners, error draining, PEM parsing, time conversion. Not part of
// client/lib's API: include it only from those two files. Thread-safe
// (OpenSSL's error queue is per thread).
#ifndef CORRIDOR_CLIENT_LIB_X509_INTERNAL_H_
#define CORRIDOR_CLIENT_LIB_X509_INTERNAL_H_

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "ledger/crypto/openssl_ptr.h"

namespace corridor::pki {

// RAII for the X.509 objects, in the project's one family
// (ledger/crypto/openssl_ptr.h).
using corridor::BioPtr;
using corridor::OpenSslPtr;

inline void FreeOpenSslString(char* s) { OPENSSL_free(s); }
inline void FreeGeneralNames(GENERAL_NAMES* names) { GENERAL_NAMES_free(names); }

using Asn1IntegerPtr = OpenSslPtr<ASN1_INTEGER, ASN1_INTEGER_free>;
using Asn1StringPtr = OpenSslPtr<ASN1_STRING, ASN1_STRING_free>;
using BigNumPtr = OpenSslPtr<BIGNUM, BN_free>;
using ExtensionPtr = OpenSslPtr<X509_EXTENSION, X509_EXTENSION_free>;
using GeneralNamePtr = OpenSslPtr<GENERAL_NAME, GENERAL_NAME_free>;
using GeneralNamesPtr = OpenSslPtr<GENERAL_NAMES, FreeGeneralNames>;
using OpenSslStringPtr = OpenSslPtr<char, FreeOpenSslString>;
using PkeyPtr = corridor::EvpPkeyPtr;
using StoreCtxPtr = OpenSslPtr<X509_STORE_CTX, X509_STORE_CTX_free>;
using StorePtr = OpenSslPtr<X509_STORE, X509_STORE_free>;
using X509Ptr = OpenSslPtr<X509, X509_free>;

// Drains OpenSSL's thread-local error queue and describes its oldest entry (the root cause).
std::string DrainOpenSslErrors();
// InternalError "<what>: <OpenSSL's reason>".
absl::Status OpenSslFailure(absl::string_view what);
// A read-only memory BIO over `pem` (which must outlive it).
absl::StatusOr<BioPtr> ReadOnlyBio(absl::string_view pem);
// InvalidArgument naming `what` (e.g. "the CA certificate") if `pem` is not one.
absl::StatusOr<X509Ptr> ParseCertificatePem(absl::string_view pem, absl::string_view what);
// InvalidArgument for a malformed time.
absl::StatusOr<absl::Time> Asn1TimeToAbsl(const ASN1_TIME* t);
// "2026-01-31T00:00:00Z".
std::string Rfc3339(absl::Time t);

}  // namespace corridor::pki

#endif  // CORRIDOR_CLIENT_LIB_X509_INTERNAL_H_
