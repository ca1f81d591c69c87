// Secrets are move-only and wiped: SecretBytes and the private keys and data
// keys built on it.
#include "ledger/crypto/secret.h"

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

static_assert(!std::is_copy_constructible_v<SecretBytes>, "a secret is never copied");
static_assert(!std::is_copy_assignable_v<SecretBytes>, "a secret is never copied");
static_assert(std::is_nothrow_move_constructible_v<SecretBytes>);
static_assert(!std::is_copy_constructible_v<Ed25519PrivateKey>, "a private key is never copied");
static_assert(!std::is_copy_assignable_v<Ed25519PrivateKey>, "a private key is never copied");
static_assert(std::is_move_constructible_v<Ed25519PrivateKey>);

// Records every buffer SecretBytes wipes: its size and whether it held only
// zero bytes when the wipe was done.
class WipeLog {
 public:
  WipeLog() {
    SecretBytes::SetWipeObserverForTesting([this](const char* data, size_t size) {
      bool zero = true;
      for (size_t i = 0; i < size; ++i) zero = zero && data[i] == 0;
      wipes_.push_back({size, zero});
    });
  }
  ~WipeLog() { SecretBytes::SetWipeObserverForTesting(nullptr); }
  struct Wipe {
    size_t size;
    bool zero;
  };
  const std::vector<Wipe>& wipes() const { return wipes_; }

 private:
  std::vector<Wipe> wipes_;
};

TEST(SecretBytes, HoldsTheBytesAndWipesThemWhenDestroyed) {
  WipeLog log;
  {
    const SecretBytes s = SecretBytes::CopyOf("data key of case C-1, 32 bytes!!");
    EXPECT_EQ(s.view(), "data key of case C-1, 32 bytes!!");
    EXPECT_EQ(s.size(), 32u);
    EXPECT_TRUE(log.wipes().empty());
  }
  ASSERT_EQ(log.wipes().size(), 1u);
  EXPECT_EQ(log.wipes()[0].size, 32u);
  EXPECT_TRUE(log.wipes()[0].zero);
}

TEST(SecretBytes, TakingAStringWipesTheString) {
  std::string source(40, 'k');
  const SecretBytes s(std::move(source));
  EXPECT_EQ(s.view(), std::string(40, 'k'));
  EXPECT_TRUE(source.empty());  // NOLINT(bugprone-use-after-move): what is left behind
}

TEST(SecretBytes, AMoveTransfersWithoutACopyAndEmptiesTheSource) {
  WipeLog log;
  SecretBytes a = SecretBytes::CopyOf("master key");
  const char* buffer = a.view().data();
  SecretBytes b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(b.view(), "master key");
  EXPECT_EQ(b.view().data(), buffer);  // the same buffer: no copy left behind
  EXPECT_TRUE(log.wipes().empty());
  // Assigned over: the old secret is wiped at once.
  b = SecretBytes::CopyOf("next");
  ASSERT_EQ(log.wipes().size(), 1u);
  EXPECT_EQ(log.wipes()[0].size, 10u);
  EXPECT_TRUE(log.wipes()[0].zero);
  EXPECT_EQ(b.view(), "next");
}

TEST(SecretBytes, RandomSecretsDiffer) {
  const SecretBytes a = SecretBytes::Random(32);
  const SecretBytes b = SecretBytes::Random(32);
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a.view(), b.view());
}

TEST(Ed25519PrivateKey, TheSeedIsWipedWhenTheKeyIsDestroyed) {
  std::string seed(32, '\x07');
  ASSERT_OK_AND_ASSIGN(Ed25519PrivateKey key, Ed25519PrivateKey::FromSeed(seed));
  const std::string signature = key.Sign("checkpoint");
  WipeLog log;
  {
    Ed25519PrivateKey moved = std::move(key);  // moving wipes nothing: one owner
    EXPECT_TRUE(moved.public_key().Verify("checkpoint", signature));
    EXPECT_TRUE(log.wipes().empty());
  }
  ASSERT_EQ(log.wipes().size(), 1u);
  EXPECT_EQ(log.wipes()[0].size, 32u);
  EXPECT_TRUE(log.wipes()[0].zero);
}

TEST(Ed25519PrivateKey, ParsingAPemLeavesNoUnwipedSeed) {
  const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
  const std::string pem = key.ToPem();
  WipeLog log;
  {
    ASSERT_OK_AND_ASSIGN(Ed25519PrivateKey again, Ed25519PrivateKey::FromPem(pem));
    EXPECT_EQ(again.public_key().raw(), key.public_key().raw());
    // The transient seed taken out of the PEM was wiped already.
    ASSERT_EQ(log.wipes().size(), 1u);
    EXPECT_TRUE(log.wipes()[0].zero);
  }
  ASSERT_EQ(log.wipes().size(), 2u);
  EXPECT_TRUE(log.wipes()[1].zero);
}

}  // namespace
}  // namespace corridor
