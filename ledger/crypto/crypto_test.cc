#include "ledger/crypto/crypto.h"

#include "gtest/gtest.h"
#include "ledger/crypto/dsse.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

TEST(Sha256, MatchesKnownAnswer) {
  EXPECT_EQ(HexEncode(DigestBytes(Sha256("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256Hasher h;
  h.Update("a");
  h.Update("bc");
  EXPECT_EQ(h.Finish(), Sha256("abc"));
}

TEST(Ed25519, Rfc8032TestVector1) {
  ASSERT_OK_AND_ASSIGN(
      std::string seed,
      HexDecode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"));
  ASSERT_OK_AND_ASSIGN(Ed25519PrivateKey key, Ed25519PrivateKey::FromSeed(seed));
  EXPECT_EQ(HexEncode(key.public_key().raw()),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
  EXPECT_EQ(HexEncode(key.Sign("")),
            "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
            "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
}

TEST(Ed25519, PemRoundTripAndTamperedSignatureFails) {
  Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  ASSERT_OK_AND_ASSIGN(Ed25519PrivateKey again, Ed25519PrivateKey::FromPem(key.ToPem()));
  ASSERT_OK_AND_ASSIGN(Ed25519PublicKey pub, Ed25519PublicKey::FromPem(key.public_key().ToPem()));
  std::string sig = again.Sign("hello");
  EXPECT_TRUE(pub.Verify("hello", sig));
  EXPECT_FALSE(pub.Verify("hellp", sig));
  sig[3] ^= 1;
  EXPECT_FALSE(pub.Verify("hello", sig));
}

TEST(Base64, RejectsNonCanonicalInput) {
  EXPECT_EQ(Base64Decode("aGk=").value(), "hi");
  EXPECT_FALSE(Base64Decode("aGk").ok());
  EXPECT_FALSE(Base64Decode("a$k=").ok());
  EXPECT_FALSE(HexDecode("abc").ok());
  EXPECT_FALSE(HexDecode("zz").ok());
}

TEST(Dsse, PaeMatchesSpecExample) {
  // From the DSSE v1 protocol description.
  EXPECT_EQ(DssePae("http://example.com/HelloWorld", "hello world"),
            "DSSEv1 29 http://example.com/HelloWorld 11 hello world");
}

TEST(Dsse, SignatureCoversPayloadTypeAndPayload) {
  Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  DsseEnvelope env{"application/x-test", "payload", {}};
  DsseSign(env, "k1", key);
  EXPECT_TRUE(DsseVerifiedBy(env, "k1", key.public_key()));
  EXPECT_FALSE(DsseVerifiedBy(env, "k2", key.public_key()));
  DsseEnvelope changed_type = env;
  changed_type.payload_type = "application/x-other";
  EXPECT_FALSE(DsseVerifiedBy(changed_type, "k1", key.public_key()));
  DsseEnvelope changed_payload = env;
  changed_payload.payload = "payloae";
  EXPECT_FALSE(DsseVerifiedBy(changed_payload, "k1", key.public_key()));
}

}  // namespace
}  // namespace corridor
