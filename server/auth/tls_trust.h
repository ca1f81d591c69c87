// The node's TLS trust follows the roster in force: a client certificate is
// accepted at the handshake if a CA of a member of the roster in force issued
// it, checked at every new handshake against IdentityResolver::roster() — so a
// member a new roster brings in is trusted at once, and a removed member's CA
// no longer is, without a restart. (gRPC's own verification would check a
// fixed root list, read once when the server starts.) Which org's CA must have
// issued it, revocation and users are the auth processor's checks, per call.
//
// A refused handshake is logged as `tls.refused` with the identity the
// certificate claims (unverified) and the cause — at most a few lines a
// second, with a count of those not logged.
#ifndef CORRIDOR_SERVER_AUTH_TLS_TRUST_H_
#define CORRIDOR_SERVER_AUTH_TLS_TRUST_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/security/tls_certificate_verifier.h"

namespace corridor {

class IdentityResolver;

// OK if a member of `identity`'s roster in force issued `cert_pem` and it is
// valid at `now`; otherwise UNAUTHENTICATED naming the cause ("org X is not
// in the roster in force (version N)", "not issued by the CA of org X: ...",
// "no member's CA issued it"). Which member issued a certificate is cached per
// certificate (IdentityResolver::IssuingMember, dropped on a roster change);
// its validity period is checked again on every call by the auth processor.
absl::Status CheckIssuedByRosterMember(const IdentityResolver& identity, absl::string_view cert_pem,
                                       absl::Time now);

// A verifier for TlsServerCredentialsOptions::set_certificate_verifier that
// applies CheckIssuedByRosterMember at the node's clock.
std::shared_ptr<grpc::experimental::CertificateVerifier> RosterCertificateVerifier(
    std::shared_ptr<const IdentityResolver> identity);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUTH_TLS_TRUST_H_
