// X.509 for a Corridor federation: SPIFFE IDs, inspecting certificates and
// verifying who issued them, built on OpenSSL's API. What the node needs;
// issuing certificates is corridorctl's (client/ctl/certificates.h).
//
// Each organisation runs its own CA. Node and user certificates carry exactly one
// SPIFFE-style SAN URI:
//   spiffe://<federation>/<org>/node
//   spiffe://<federation>/<org>/user/<name>
// Node certificates additionally carry DNS/IP SANs so TLS hostname checks pass.
// All functions are stateless and thread-safe.
#ifndef CORRIDOR_CLIENT_LIB_PKI_H_
#define CORRIDOR_CLIENT_LIB_PKI_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace corridor::pki {

// The SPIFFE IDs of an org's node and of its users (see above).
std::string NodeSpiffeUri(absl::string_view federation, absl::string_view org);
std::string UserSpiffeUri(absl::string_view federation, absl::string_view org,
                          absl::string_view user);

// What a certificate says about its holder.
struct CertificateInfo {
  std::vector<std::string> uris;  // SAN URIs
  std::string serial_hex;         // NormalizeSerial() form: lower-case hex, no leading zeros
  std::string subject;            // one-line subject
  absl::Time not_before;
  absl::Time not_after;
};
absl::StatusOr<CertificateInfo> InspectCertificate(absl::string_view cert_pem);

// A certificate serial as people write it, in the one form Corridor compares:
// lower-case hex without leading zeros ("0" for zero; a leading "-" kept for
// the negative serials of broken issuers). Accepts upper or lower case,
// colons, spaces or dashes between the digits (as `openssl x509 -text`
// prints it: "0a:1b:..."), leading zeros and a 0x prefix. InvalidArgument,
// saying why, for anything else (empty, other characters, a decimal serial
// cannot be told apart and must be given in hex). Also used for
// CertificateInfo::serial_hex, so both sides of a comparison agree.
absl::StatusOr<std::string> NormalizeSerial(absl::string_view written);

// True iff the two PEM texts hold the same certificate (byte-identical DER).
bool SameCertificate(absl::string_view a_pem, absl::string_view b_pem);

// What a certificate must be fit for, besides being issued by the CA.
enum class Purpose {
  kAny,
  // A TLS client (OpenSSL's ssl_client purpose: extendedKeyUsage, if present,
  // lists clientAuth; keyUsage, if present, allows digitalSignature) — what a
  // server checks of the certificates its clients present.
  kTlsClient,
};

// True iff `cert_pem` was signed by `ca_cert_pem` (chain of exactly one CA, the
// given one, validity checked at `at`) and is fit for `purpose`. Returns the
// reason on failure.
absl::Status VerifyIssuedBy(absl::string_view cert_pem, absl::string_view ca_cert_pem,
                            absl::Time at, Purpose purpose = Purpose::kAny);

}  // namespace corridor::pki

#endif  // CORRIDOR_CLIENT_LIB_PKI_H_
