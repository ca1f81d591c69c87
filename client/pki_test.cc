#include "client/pki.h"

#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace corridor::pki {
namespace {

IssuedCertificate Ca(const std::string& org) {
  CaOptions o;
  o.federation = "corridor.test";
  o.org = org;
  o.common_name = org + " CA";
  return CreateOrgCa(o).value();
}

TEST(Pki, IssuedLeafCarriesIdentityAndVerifiesOnlyUnderItsCa) {
  IssuedCertificate ca = Ca("union-sg");
  IssuedCertificate other = Ca("ministry-id");
  LeafOptions leaf;
  leaf.spiffe_uri = NodeSpiffeUri("corridor.test", "union-sg");
  leaf.common_name = "node";
  leaf.dns_names = {"localhost"};
  leaf.ip_addresses = {"127.0.0.1"};
  leaf.server_auth = true;
  ASSERT_OK_AND_ASSIGN(IssuedCertificate cert, IssueLeaf(ca, leaf));
  ASSERT_OK_AND_ASSIGN(CertificateInfo info, InspectCertificate(cert.cert_pem));
  ASSERT_EQ(info.uris.size(), 1u);
  EXPECT_EQ(info.uris[0], "spiffe://corridor.test/union-sg/node");
  EXPECT_EQ(info.serial_hex.size(), 32u);
  EXPECT_LT(info.not_before, absl::Now());
  EXPECT_GT(info.not_after, absl::Now() + absl::Hours(24 * 300));
  EXPECT_OK(VerifyIssuedBy(cert.cert_pem, ca.cert_pem, absl::Now()));
  EXPECT_STATUS(VerifyIssuedBy(cert.cert_pem, other.cert_pem, absl::Now()),
                absl::StatusCode::kPermissionDenied, "unable to get local issuer");
  EXPECT_STATUS(VerifyIssuedBy(cert.cert_pem, ca.cert_pem, absl::Now() + absl::Hours(24 * 400)),
                absl::StatusCode::kPermissionDenied, "expired");
  EXPECT_STATUS(VerifyIssuedBy("garbage", ca.cert_pem, absl::Now()),
                absl::StatusCode::kInvalidArgument, "not a PEM");
}

TEST(Pki, RefusesMismatchedCaKeyAndNonSpiffeIdentity) {
  IssuedCertificate ca = Ca("union-sg");
  IssuedCertificate other = Ca("ministry-id");
  LeafOptions leaf;
  leaf.spiffe_uri = UserSpiffeUri("corridor.test", "union-sg", "alice");
  EXPECT_EQ(leaf.spiffe_uri, "spiffe://corridor.test/union-sg/user/alice");
  EXPECT_STATUS(IssueLeaf({other.key_pem, ca.cert_pem}, leaf), absl::StatusCode::kInvalidArgument,
                "does not belong");
  leaf.spiffe_uri = "https://example.com";
  EXPECT_STATUS(IssueLeaf(ca, leaf), absl::StatusCode::kInvalidArgument, "spiffe://");
}

TEST(Pki, CaCertificateIsSelfSignedCa) {
  IssuedCertificate ca = Ca("union-sg");
  EXPECT_OK(VerifyIssuedBy(ca.cert_pem, ca.cert_pem, absl::Now()));
}

}  // namespace
}  // namespace corridor::pki
