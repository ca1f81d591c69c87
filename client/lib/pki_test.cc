#include "client/lib/pki.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/ctl/certificates.h"
#include "gtest/gtest.h"
#include "ledger/crypto/openssl_ptr.h"
#include "tests/testing/status_matchers.h"

namespace corridor::pki {
namespace {

constexpr char kFederation[] = "corridor.test";

// ---------------------------------------------------------------------------
// OpenSSL access for checking what the certificates actually say.

using PkeyPtr = EvpPkeyPtr;
using SslCtxPtr = OpenSslPtr<SSL_CTX, SSL_CTX_free>;
using SslPtr = OpenSslPtr<SSL, SSL_free>;
using X509Ptr = OpenSslPtr<X509, X509_free>;

X509Ptr ParseCert(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return X509Ptr(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
}

PkeyPtr ParseKey(const std::string& pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return PkeyPtr(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, const_cast<char*>("")));
}

std::string ToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string ToHex(const ASN1_OCTET_STRING* s) {
  if (s == nullptr) return "";
  std::string out;
  for (int i = 0; i < ASN1_STRING_length(s); ++i) {
    absl::StrAppend(&out, absl::Hex(ASN1_STRING_get0_data(s)[i], absl::kZeroPad2));
  }
  return out;
}

std::string P256GroupName(EVP_PKEY* key) {
  char name[64] = {};
  size_t len = 0;
  if (EVP_PKEY_get_group_name(key, name, sizeof(name), &len) != 1) return "";
  return std::string(name, len);
}

// ---------------------------------------------------------------------------
// Fixtures.

IssuedCertificate MakeCa(const std::string& org) {
  CaOptions o;
  o.federation = kFederation;
  o.org = org;
  o.common_name = org + " CA";
  auto ca = CreateOrgCa(o);
  EXPECT_TRUE(ca.ok()) << ca.status();
  return ca.ok() ? *ca : IssuedCertificate{};
}

LeafOptions NodeOptions(const std::string& org) {
  LeafOptions o;
  o.spiffe_uri = NodeSpiffeUri(kFederation, org);
  o.common_name = org + " node";
  o.dns_names = {"localhost"};
  o.ip_addresses = {"127.0.0.1", "::1"};
  o.server_auth = true;
  return o;
}

LeafOptions UserOptions(const std::string& org, const std::string& user) {
  LeafOptions o;
  o.spiffe_uri = UserSpiffeUri(kFederation, org, user);
  o.common_name = user;
  return o;
}

IssuedCertificate MustIssue(const IssuedCertificate& ca, const LeafOptions& options) {
  auto leaf = IssueLeaf(ca, options);
  EXPECT_TRUE(leaf.ok()) << leaf.status();
  return leaf.ok() ? *leaf : IssuedCertificate{};
}

class PkiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_ = MakeCa("union-sg");
    other_ca_ = MakeCa("ministry-id");
    node_ = MustIssue(ca_, NodeOptions("union-sg"));
    alice_ = MustIssue(ca_, UserOptions("union-sg", "alice"));
  }

  IssuedCertificate ca_;
  IssuedCertificate other_ca_;
  IssuedCertificate node_;
  IssuedCertificate alice_;
};

// ---------------------------------------------------------------------------
// Identity formats.

TEST(SpiffeUriTest, FormatsNodeAndUserIdentities) {
  EXPECT_EQ(NodeSpiffeUri("fed", "org"), "spiffe://fed/org/node");
  EXPECT_EQ(UserSpiffeUri("fed", "org", "alice"), "spiffe://fed/org/user/alice");
}

// ---------------------------------------------------------------------------
// CA creation.

TEST_F(PkiTest, CreateOrgCaMakesSelfSignedCaLimitedToIssuingLeaves) {
  X509Ptr cert = ParseCert(ca_.cert_pem);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_check_ca(cert.get()), 1);
  EXPECT_EQ(X509_get_pathlen(cert.get()), 0);
  EXPECT_EQ(X509_get_key_usage(cert.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);
  EXPECT_TRUE(X509_get_extension_flags(cert.get()) & EXFLAG_SS);
  const std::string ski = ToHex(X509_get0_subject_key_id(cert.get()));
  EXPECT_EQ(ski.size(), 40u);
  EXPECT_EQ(ToHex(X509_get0_authority_key_id(cert.get())), ski);

  ASSERT_OK_AND_ASSIGN(CertificateInfo info, InspectCertificate(ca_.cert_pem));
  EXPECT_TRUE(absl::StrContains(info.subject, "O = union-sg")) << info.subject;
  EXPECT_TRUE(absl::StrContains(info.subject, "CN = union-sg CA")) << info.subject;
  EXPECT_TRUE(info.uris.empty());
  EXPECT_OK(VerifyIssuedBy(ca_.cert_pem, ca_.cert_pem, absl::Now()));
}

TEST_F(PkiTest, CreateOrgCaWritesPkcs8P256KeyMatchingTheCertificate) {
  EXPECT_TRUE(absl::StartsWith(ca_.key_pem, "-----BEGIN PRIVATE KEY-----")) << ca_.key_pem;
  PkeyPtr key = ParseKey(ca_.key_pem);
  X509Ptr cert = ParseCert(ca_.cert_pem);
  ASSERT_NE(key, nullptr);
  ASSERT_NE(cert, nullptr);
  EXPECT_TRUE(EVP_PKEY_is_a(key.get(), "EC"));
  EXPECT_EQ(P256GroupName(key.get()), "prime256v1");
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
}

TEST(CreateOrgCaTest, ValidityStartsFiveMinutesEarlyForClockSkew) {
  CaOptions o;
  o.org = "union-sg";
  o.common_name = "Union SG Corridor CA";
  o.validity = absl::Hours(48);
  const absl::Time before = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  ASSERT_OK_AND_ASSIGN(IssuedCertificate ca, CreateOrgCa(o));
  const absl::Time after = absl::Now();
  ASSERT_OK_AND_ASSIGN(CertificateInfo info, InspectCertificate(ca.cert_pem));
  EXPECT_GE(info.not_before, before - absl::Minutes(5));
  EXPECT_LE(info.not_before, after - absl::Minutes(5));
  EXPECT_GE(info.not_after, before + absl::Hours(48));
  EXPECT_LE(info.not_after, after + absl::Hours(48));
}

TEST(CreateOrgCaTest, RejectsIncompleteOrImpossibleOptions) {
  struct Case {
    const char* name;
    void (*mutate)(CaOptions&);
    const char* want;
  };
  const Case cases[] = {
      {"no org", [](CaOptions& o) { o.org.clear(); }, "org"},
      {"no common name", [](CaOptions& o) { o.common_name.clear(); }, "common name"},
      {"common name too long", [](CaOptions& o) { o.common_name = std::string(65, 'x'); },
       "at most 64"},
      {"zero validity", [](CaOptions& o) { o.validity = absl::ZeroDuration(); }, "validity"},
      {"negative validity", [](CaOptions& o) { o.validity = -absl::Hours(1); }, "validity"},
      {"endless validity", [](CaOptions& o) { o.validity = absl::InfiniteDuration(); }, "validity"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    CaOptions o;
    o.federation = kFederation;
    o.org = "union-sg";
    o.common_name = "Union SG CA";
    c.mutate(o);
    EXPECT_STATUS(CreateOrgCa(o), absl::StatusCode::kInvalidArgument, c.want);
  }
}

// ---------------------------------------------------------------------------
// Leaf issuance.

TEST_F(PkiTest, NodeCertificateCarriesIdentityHostsAndBothTlsUsages) {
  X509Ptr cert = ParseCert(node_.cert_pem);
  X509Ptr ca = ParseCert(ca_.cert_pem);
  ASSERT_NE(cert, nullptr);
  ASSERT_NE(ca, nullptr);
  EXPECT_EQ(X509_check_ca(cert.get()), 0);
  int critical = -1;
  OpenSslPtr<BASIC_CONSTRAINTS, BASIC_CONSTRAINTS_free> constraints(static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(cert.get(), NID_basic_constraints, &critical, nullptr)));
  ASSERT_NE(constraints, nullptr);
  EXPECT_EQ(constraints->ca, 0);
  EXPECT_EQ(critical, 1);
  EXPECT_EQ(X509_get_key_usage(cert.get()),
            static_cast<uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
  EXPECT_EQ(X509_get_extended_key_usage(cert.get()),
            static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_EQ(X509_get_signature_nid(cert.get()), NID_ecdsa_with_SHA256);
  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(cert.get()), X509_get_subject_name(ca.get())), 0);
  EXPECT_EQ(ToHex(X509_get0_subject_key_id(cert.get())).size(), 40u);
  EXPECT_EQ(ToHex(X509_get0_authority_key_id(cert.get())),
            ToHex(X509_get0_subject_key_id(ca.get())));
  EXPECT_EQ(X509_check_host(cert.get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(cert.get(), "::1", 0), 1);
  EXPECT_EQ(X509_check_host(cert.get(), "example.com", 0, 0, nullptr), 0);

  ASSERT_OK_AND_ASSIGN(CertificateInfo info, InspectCertificate(node_.cert_pem));
  EXPECT_EQ(info.uris, std::vector<std::string>{"spiffe://corridor.test/union-sg/node"});
  EXPECT_EQ(info.subject, "CN = union-sg node");

  PkeyPtr key = ParseKey(node_.key_pem);
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(P256GroupName(key.get()), "prime256v1");
  EXPECT_EQ(X509_check_private_key(cert.get(), key.get()), 1);
}

TEST_F(PkiTest, UserCertificateIsForClientAuthOnly) {
  X509Ptr cert = ParseCert(alice_.cert_pem);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_get_extended_key_usage(cert.get()), static_cast<uint32_t>(XKU_SSL_CLIENT));
  EXPECT_EQ(X509_check_ca(cert.get()), 0);
  ASSERT_OK_AND_ASSIGN(CertificateInfo info, InspectCertificate(alice_.cert_pem));
  EXPECT_EQ(info.uris, std::vector<std::string>{"spiffe://corridor.test/union-sg/user/alice"});
  EXPECT_OK(VerifyIssuedBy(alice_.cert_pem, ca_.cert_pem, absl::Now()));
}

TEST_F(PkiTest, LeafWithoutCommonNameHasEmptySubjectAndCriticalSan) {
  LeafOptions o = UserOptions("union-sg", "bob");
  o.common_name.clear();
  ASSERT_OK_AND_ASSIGN(IssuedCertificate bob, IssueLeaf(ca_, o));
  X509Ptr cert = ParseCert(bob.cert_pem);
  ASSERT_NE(cert, nullptr);
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(cert.get())), 0);
  const int san = X509_get_ext_by_NID(cert.get(), NID_subject_alt_name, -1);
  ASSERT_GE(san, 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(cert.get(), san)), 1);
  EXPECT_OK(VerifyIssuedBy(bob.cert_pem, ca_.cert_pem, absl::Now()));
}

TEST_F(PkiTest, SerialsAreRandomPositive128BitNumbersInLowerCaseHex) {
  std::set<std::string> seen;
  for (int i = 0; i < 16; ++i) {
    const IssuedCertificate leaf = MustIssue(ca_, UserOptions("union-sg", "alice"));
    ASSERT_OK_AND_ASSIGN(CertificateInfo info, InspectCertificate(leaf.cert_pem));
    EXPECT_EQ(info.serial_hex.size(), 32u) << info.serial_hex;
    EXPECT_EQ(info.serial_hex, absl::AsciiStrToLower(info.serial_hex));
    EXPECT_GE(info.serial_hex[0], '8') << "the top bit is set so every serial has 128 bits";

    // The same number OpenSSL reads from the certificate, and positive.
    X509Ptr cert = ParseCert(leaf.cert_pem);
    ASSERT_NE(cert, nullptr);
    const ASN1_INTEGER* serial = X509_get0_serialNumber(cert.get());
    EXPECT_EQ(ASN1_STRING_type(serial), V_ASN1_INTEGER);
    OpenSslPtr<BIGNUM, BN_free> bn(ASN1_INTEGER_to_BN(serial, nullptr));
    char* hex = BN_bn2hex(bn.get());
    EXPECT_EQ(absl::AsciiStrToLower(hex), info.serial_hex);
    OPENSSL_free(hex);
    seen.insert(info.serial_hex);
  }
  EXPECT_EQ(seen.size(), 16u);
}

TEST_F(PkiTest, InspectCertificateReportsValidityWindow) {
  LeafOptions o = UserOptions("union-sg", "alice");
  o.validity = absl::Hours(10);
  const absl::Time before = absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
  ASSERT_OK_AND_ASSIGN(IssuedCertificate leaf, IssueLeaf(ca_, o));
  const absl::Time after = absl::Now();
  ASSERT_OK_AND_ASSIGN(CertificateInfo info, InspectCertificate(leaf.cert_pem));
  EXPECT_GE(info.not_before, before - absl::Minutes(5));
  EXPECT_LE(info.not_before, after - absl::Minutes(5));
  EXPECT_GE(info.not_after, before + absl::Hours(10));
  EXPECT_LE(info.not_after, after + absl::Hours(10));
}

TEST(InspectCertificateTest, RejectsInputThatIsNotACertificate) {
  EXPECT_STATUS(InspectCertificate("garbage"), absl::StatusCode::kInvalidArgument,
                "not a PEM X.509 certificate");
  EXPECT_STATUS(InspectCertificate(""), absl::StatusCode::kInvalidArgument,
                "not a PEM X.509 certificate");
}

TEST_F(PkiTest, IssueLeafRejectsBadCaMaterialAndOptions) {
  struct Case {
    const char* name;
    IssuedCertificate ca;
    LeafOptions options;
    const char* want;
  };
  auto with = [](LeafOptions o, void (*mutate)(LeafOptions&)) {
    mutate(o);
    return o;
  };
  const LeafOptions user = UserOptions("union-sg", "alice");
  const LeafOptions node = NodeOptions("union-sg");
  const std::vector<Case> cases = {
      {"CA key of another CA", {other_ca_.key_pem, ca_.cert_pem}, user, "does not belong"},
      {"CA cert garbage", {ca_.key_pem, "garbage"}, user, "CA certificate is not a PEM"},
      {"CA key garbage", {"garbage", ca_.cert_pem}, user, "CA key is not"},
      {"CA key is a certificate", {ca_.cert_pem, ca_.cert_pem}, user, "CA key is not"},
      {"node certificate used as CA", node_, user, "is not a CA"},
      {"not spiffe", ca_, with(user, [](LeafOptions& o) { o.spiffe_uri = "https://example.com"; }),
       "must be a spiffe:// URI"},
      {"empty identity", ca_, with(user, [](LeafOptions& o) { o.spiffe_uri.clear(); }),
       "spiffe://"},
      {"second URI smuggled in", ca_,
       with(user,
            [](LeafOptions& o) {
              o.spiffe_uri =
                  "spiffe://corridor.test/union-sg/user/a,URI:spiffe://corridor.test/x/node";
            }),
       "path segment"},
      {"no path", ca_, with(user, [](LeafOptions& o) { o.spiffe_uri = "spiffe://corridor.test"; }),
       "has no path"},
      {"upper-case federation", ca_,
       with(user, [](LeafOptions& o) { o.spiffe_uri = "spiffe://Corridor.test/union-sg/node"; }),
       "federation name"},
      {"port in federation", ca_,
       with(user,
            [](LeafOptions& o) { o.spiffe_uri = "spiffe://corridor.test:443/union-sg/node"; }),
       "federation name"},
      {"dot-dot segment", ca_,
       with(user, [](LeafOptions& o) { o.spiffe_uri = "spiffe://corridor.test/union-sg/user/.."; }),
       "path segment"},
      {"empty segment", ca_,
       with(user, [](LeafOptions& o) { o.spiffe_uri = "spiffe://corridor.test/union-sg//node"; }),
       "path segment"},
      {"query", ca_,
       with(user,
            [](LeafOptions& o) { o.spiffe_uri = "spiffe://corridor.test/union-sg/node?x=1"; }),
       "path segment"},
      {"bad IP", ca_, with(node, [](LeafOptions& o) { o.ip_addresses = {"300.1.2.3"}; }),
       "not an IPv4 or IPv6 address"},
      {"host name as IP", ca_, with(node, [](LeafOptions& o) { o.ip_addresses = {"localhost"}; }),
       "not an IPv4 or IPv6 address"},
      {"DNS entry smuggling an IP", ca_,
       with(node, [](LeafOptions& o) { o.dns_names = {"localhost,IP:10.0.0.1"}; }),
       "not a valid DNS name"},
      {"empty DNS name", ca_, with(node, [](LeafOptions& o) { o.dns_names = {""}; }),
       "not a valid DNS name"},
      {"zero validity", ca_, with(user, [](LeafOptions& o) { o.validity = absl::ZeroDuration(); }),
       "validity must be positive"},
      {"outlives the CA", ca_,
       with(user, [](LeafOptions& o) { o.validity = absl::Hours(24 * 365 * 6); }),
       "outlive its CA"},
      {"common name too long", ca_,
       with(user, [](LeafOptions& o) { o.common_name = std::string(65, 'n'); }), "at most 64"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_STATUS(IssueLeaf(c.ca, c.options), absl::StatusCode::kInvalidArgument, c.want);
  }
}

// ---------------------------------------------------------------------------
// Verification.

TEST_F(PkiTest, VerifyIssuedByAcceptsOnlyTheIssuingCaWithinValidity) {
  const absl::Time now = absl::Now();
  EXPECT_OK(VerifyIssuedBy(node_.cert_pem, ca_.cert_pem, now));
  EXPECT_OK(VerifyIssuedBy(alice_.cert_pem, ca_.cert_pem, now));
  // Inside the clock-skew allowance.
  EXPECT_OK(VerifyIssuedBy(alice_.cert_pem, ca_.cert_pem, now - absl::Minutes(4)));

  struct Case {
    const char* name;
    std::string cert;
    std::string ca;
    absl::Time at;
    absl::StatusCode code;
    const char* want;
  };
  const Case cases[] = {
      {"another org's CA", node_.cert_pem, other_ca_.cert_pem, now,
       absl::StatusCode::kPermissionDenied, "unable to get local issuer certificate"},
      {"after expiry", node_.cert_pem, ca_.cert_pem, now + absl::Hours(24 * 366),
       absl::StatusCode::kPermissionDenied, "certificate has expired"},
      {"before notBefore", node_.cert_pem, ca_.cert_pem, now - absl::Hours(1),
       absl::StatusCode::kPermissionDenied, "not yet valid"},
      {"a leaf as the CA", alice_.cert_pem, node_.cert_pem, now,
       absl::StatusCode::kPermissionDenied, "not valid under the given CA"},
      {"another CA's root as the leaf", other_ca_.cert_pem, ca_.cert_pem, now,
       absl::StatusCode::kPermissionDenied, "not valid under the given CA"},
      {"garbage certificate", "garbage", ca_.cert_pem, now, absl::StatusCode::kInvalidArgument,
       "certificate is not a PEM"},
      {"garbage CA", node_.cert_pem, "garbage", now, absl::StatusCode::kInvalidArgument,
       "CA certificate is not a PEM"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_STATUS(VerifyIssuedBy(c.cert, c.ca, c.at), c.code, c.want);
  }
}

TEST_F(PkiTest, VerifyIssuedByExplainsExpiryWithTheValidityWindow) {
  const absl::Status st =
      VerifyIssuedBy(node_.cert_pem, ca_.cert_pem, absl::Now() + absl::Hours(24 * 366));
  EXPECT_TRUE(absl::StrContains(st.message(), "valid from")) << st;
  EXPECT_TRUE(absl::StrContains(st.message(), "checked at")) << st;
}

TEST_F(PkiTest, VerifyIssuedByRejectsCertificateResignedByAnotherKey) {
  // Same issuer name, same authorityKeyIdentifier, same contents: only the signature is wrong.
  X509Ptr forged = ParseCert(alice_.cert_pem);
  PkeyPtr other_key = ParseKey(other_ca_.key_pem);
  ASSERT_NE(forged, nullptr);
  ASSERT_NE(other_key, nullptr);
  ASSERT_GT(X509_sign(forged.get(), other_key.get(), EVP_sha256()), 0);
  EXPECT_STATUS(VerifyIssuedBy(ToPem(forged.get()), ca_.cert_pem, absl::Now()),
                absl::StatusCode::kPermissionDenied, "signature failure");
}

TEST_F(PkiTest, VerifyIssuedByRejectsImpostorCaWithTheSameName) {
  const IssuedCertificate impostor = MakeCa("union-sg");  // same subject as ca_
  const IssuedCertificate leaf = MustIssue(impostor, UserOptions("union-sg", "alice"));
  EXPECT_OK(VerifyIssuedBy(leaf.cert_pem, impostor.cert_pem, absl::Now()));
  EXPECT_STATUS(VerifyIssuedBy(leaf.cert_pem, ca_.cert_pem, absl::Now()),
                absl::StatusCode::kPermissionDenied, "not valid under the given CA");
}

// ---------------------------------------------------------------------------
// The certificates in a real TLS 1.3 handshake, as gRPC's OpenSSL backend runs it: both sides
// present a certificate and verify the other's against a trust store holding one CA.

struct TlsSide {
  IssuedCertificate identity;
  std::string trusted_ca_pem;
};

struct HandshakeResult {
  bool client_ok = false;
  bool server_ok = false;
  std::string client_verify;  // X509_verify_cert_error_string of what the client saw
  std::string server_verify;
  std::string client_seen_by_server_pem;
};

SslCtxPtr MakeContext(const SSL_METHOD* method, const TlsSide& side) {
  SslCtxPtr ctx(SSL_CTX_new(method));
  X509Ptr cert = ParseCert(side.identity.cert_pem);
  PkeyPtr key = ParseKey(side.identity.key_pem);
  X509Ptr ca = ParseCert(side.trusted_ca_pem);
  if (!ctx || !cert || !key || !ca || SSL_CTX_use_certificate(ctx.get(), cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 ||
      X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.get()) != 1) {
    ADD_FAILURE() << "cannot set up a TLS context";
    return nullptr;
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  return ctx;
}

// `host` is what the client expects the server certificate to name (DNS or IP).
HandshakeResult Handshake(const TlsSide& server, const TlsSide& client, const std::string& host) {
  HandshakeResult r;
  SslCtxPtr server_ctx = MakeContext(TLS_server_method(), server);
  SslCtxPtr client_ctx = MakeContext(TLS_client_method(), client);
  if (!server_ctx || !client_ctx) return r;
  SslPtr s(SSL_new(server_ctx.get()));
  SslPtr c(SSL_new(client_ctx.get()));
  BIO* server_bio = nullptr;
  BIO* client_bio = nullptr;
  if (!s || !c || BIO_new_bio_pair(&server_bio, 0, &client_bio, 0) != 1) {
    ADD_FAILURE() << "cannot set up TLS endpoints";
    return r;
  }
  SSL_set_bio(s.get(), server_bio, server_bio);  // each SSL owns its end
  SSL_set_bio(c.get(), client_bio, client_bio);
  SSL_set_accept_state(s.get());
  SSL_set_connect_state(c.get());
  X509_VERIFY_PARAM* param = SSL_get0_param(c.get());
  if (X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) != 1) {
    ERR_clear_error();
    X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  }

  // Pump both ends in memory until each has finished or failed; no sockets, no threads.
  enum class State { kRunning, kDone, kFailed };
  State cs = State::kRunning, ss = State::kRunning;
  auto step = [](SSL* ssl, State& state) {
    if (state != State::kRunning) return;
    const int rc = SSL_do_handshake(ssl);
    if (rc == 1) {
      state = State::kDone;
      return;
    }
    const int err = SSL_get_error(ssl, rc);
    if (err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE) state = State::kFailed;
  };
  for (int i = 0; i < 20 && (cs == State::kRunning || ss == State::kRunning); ++i) {
    step(c.get(), cs);
    step(s.get(), ss);
  }
  // With TLS 1.3 the client finishes before the server has judged its certificate; a server
  // that refuses sends an alert the client only reads on its next record.
  if (cs == State::kDone && ss == State::kDone) {
    const char ping[] = "ping";
    char buf[8] = {};
    r.client_ok = SSL_write(c.get(), ping, 4) == 4 && SSL_read(s.get(), buf, sizeof(buf)) == 4 &&
                  std::string(buf, 4) == "ping";
    r.server_ok = r.client_ok;
  } else {
    r.client_ok = false;
    r.server_ok = ss == State::kDone;
  }
  r.client_verify = X509_verify_cert_error_string(SSL_get_verify_result(c.get()));
  r.server_verify = X509_verify_cert_error_string(SSL_get_verify_result(s.get()));
  if (X509* peer = SSL_get0_peer_certificate(s.get()); peer != nullptr) {
    r.client_seen_by_server_pem = ToPem(peer);
  }
  ERR_clear_error();
  return r;
}

TEST_F(PkiTest, NodeAndUserCertificatesCompleteMutualTls) {
  for (const std::string host : {"localhost", "127.0.0.1", "::1"}) {
    SCOPED_TRACE(host);
    const HandshakeResult r = Handshake({node_, ca_.cert_pem}, {alice_, ca_.cert_pem}, host);
    EXPECT_TRUE(r.client_ok) << r.client_verify;
    EXPECT_TRUE(r.server_ok) << r.server_verify;
    ASSERT_OK_AND_ASSIGN(CertificateInfo peer, InspectCertificate(r.client_seen_by_server_pem));
    EXPECT_EQ(peer.uris, std::vector<std::string>{UserSpiffeUri(kFederation, "union-sg", "alice")});
  }
}

TEST_F(PkiTest, NodeCertificatesWorkAsBothEndsBetweenOrgs) {
  const IssuedCertificate other_node = MustIssue(other_ca_, NodeOptions("ministry-id"));
  const HandshakeResult r =
      Handshake({node_, other_ca_.cert_pem}, {other_node, ca_.cert_pem}, "localhost");
  EXPECT_TRUE(r.client_ok) << r.client_verify;
  EXPECT_TRUE(r.server_ok) << r.server_verify;
}

TEST_F(PkiTest, TlsRefusesMisusedOrForeignCertificates) {
  const IssuedCertificate rogue = MustIssue(other_ca_, UserOptions("union-sg", "alice"));
  struct Case {
    const char* name;
    TlsSide server;
    TlsSide client;
    std::string host;
    bool server_should_refuse;  // else the client refuses
    const char* want;
  };
  const Case cases[] = {
      {"user certificate as a server (no serverAuth)",
       {alice_, ca_.cert_pem},
       {node_, ca_.cert_pem},
       "localhost",
       false,
       "unsuitable certificate purpose"},
      {"server name not in the certificate",
       {node_, ca_.cert_pem},
       {alice_, ca_.cert_pem},
       "node.example.com",
       false,
       "hostname mismatch"},
      {"server IP not in the certificate",
       {node_, ca_.cert_pem},
       {alice_, ca_.cert_pem},
       "10.1.2.3",
       false,
       "IP address mismatch"},
      // OpenSSL completes the server's chain with its CA, which the client does not trust.
      {"server from an untrusted CA",
       {node_, ca_.cert_pem},
       {alice_, other_ca_.cert_pem},
       "localhost",
       false,
       "self-signed certificate in certificate chain"},
      {"client from an untrusted CA",
       {node_, ca_.cert_pem},
       {rogue, ca_.cert_pem},
       "localhost",
       true,
       "unable to get local issuer certificate"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const HandshakeResult r = Handshake(c.server, c.client, c.host);
    EXPECT_FALSE(r.client_ok && r.server_ok);
    if (c.server_should_refuse) {
      EXPECT_FALSE(r.server_ok);
      EXPECT_EQ(r.server_verify, c.want);
    } else {
      EXPECT_FALSE(r.client_ok);
      EXPECT_EQ(r.client_verify, c.want);
    }
  }
}

}  // namespace
}  // namespace corridor::pki
