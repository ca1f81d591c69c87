// Issuing certificates for a Corridor federation (`corridorctl pki`, and test
// federations): an org's CA, its node's certificate and its users'. Built on
// OpenSSL's API (no shell-outs). Certificates carry exactly one SPIFFE-style
// SAN URI (client/lib/pki.h); node certificates also DNS/IP SANs so TLS
// hostname checks pass. Only corridorctl and tests link this: a node never
// issues a certificate. All functions are stateless and thread-safe.
#ifndef CORRIDOR_CLIENT_CTL_CERTIFICATES_H_
#define CORRIDOR_CLIENT_CTL_CERTIFICATES_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/lib/pki.h"

namespace corridor::pki {

// A key pair and certificate, PEM-encoded.
struct IssuedCertificate {
  std::string key_pem;   // PKCS#8 private key (ECDSA P-256)
  std::string cert_pem;  // X.509 v3 certificate
};

struct CaOptions {
  std::string federation;   // e.g. "corridor.example"
  std::string org;          // e.g. "union-sg"
  std::string common_name;  // human-readable, e.g. "Union SG Corridor CA"
  absl::Duration validity = absl::Hours(24 * 365 * 5);
};

// Creates a self-signed CA certificate (basicConstraints CA:TRUE, pathlen 0,
// keyUsage keyCertSign|cRLSign) with a fresh P-256 key and a random 128-bit serial.
absl::StatusOr<IssuedCertificate> CreateOrgCa(const CaOptions& options);

struct LeafOptions {
  std::string spiffe_uri;  // the single SAN URI
  std::string common_name;
  std::vector<std::string> dns_names;     // extra SAN DNS entries (node certs)
  std::vector<std::string> ip_addresses;  // extra SAN IP entries, e.g. "127.0.0.1"
  absl::Duration validity = absl::Hours(24 * 365);
  bool server_auth = false;  // adds extendedKeyUsage serverAuth (nodes); clientAuth is always set
  // Further SAN URIs after spiffe_uri, unchecked. For tests only: a Corridor
  // certificate carries exactly one, and nodes refuse one that carries more.
  std::vector<std::string> extra_uris_for_tests;
};

// Issues a leaf certificate signed by the CA in `ca`. InvalidArgument if the CA
// PEMs do not parse or the key does not match the certificate, or the options are invalid.
absl::StatusOr<IssuedCertificate> IssueLeaf(const IssuedCertificate& ca,
                                            const LeafOptions& options);

}  // namespace corridor::pki

#endif  // CORRIDOR_CLIENT_CTL_CERTIFICATES_H_
