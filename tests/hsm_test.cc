// Keys in an HSM (issue 13): the org's signing key lives in a PKCS#11 token
// and the node signs through it, never holding the private key. Against
// SoftHSM2 (Debian's softhsm2) in a token store of the test's own: the
// PKCS#11 signer directly (signatures verify with the token's public key, the
// token refuses to reveal the key, many signatures at once, each
// misconfiguration refused with its own plain message), and real corridord
// processes — one signing through a token, one with a key file — exchanging
// a referral, its decision, receipts, access attestations, checkpoints and
// cosignatures that the other side and the auditor verify with the roster's
// key. Skips, saying so, where libsofthsm2.so is not installed.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "gtest/gtest.h"
#include "ledger/crypto/pkcs11.h"
#include "server/node/config.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"
#include "tests/testing/softhsm.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using testing::CommandResult;
using testing::kSoftHsmModule;
using testing::SoftHsm;

constexpr char kPin[] = "4711-node-user-pin";
constexpr char kKeyLabel[] = "corridor-signing";

// Under AddressSanitizer these tests skip: Debian's SoftHSM 2.6.1 leaks an OpenSSL
// ASN1 string per EdDSA signature inside libsofthsm2 (LeakSanitizer sees only
// CRYPTO_zalloc/ASN1_STRING_set: Debian's libraries have no frame pointers, so no
// suppression can name SoftHSM without naming every OpenSSL allocation). They run in
// `make test` and under ThreadSanitizer; docs/testing.md.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kUnderAsan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kUnderAsan = true;
#else
constexpr bool kUnderAsan = false;
#endif
#else
constexpr bool kUnderAsan = false;
#endif

#define SKIP_WITHOUT_SOFTHSM()                                                                    \
  if (kUnderAsan)                                                                                 \
    GTEST_SKIP() << "SoftHSM2 leaks OpenSSL objects per signature inside libsofthsm2, which "     \
                    "LeakSanitizer cannot tell from ours: run in make test and under TSan";       \
  if (!SoftHsm::Available())                                                                      \
  GTEST_SKIP() << kSoftHsmModule                                                                  \
               << " is not installed (Debian package softhsm2, which deploy/setup.sh installs): " \
                  "the PKCS#11 signing tests need it"

// A token label no other test of this process uses (at most 32 bytes).
std::string NewTokenLabel() {
  static int n = 0;
  return absl::StrCat("t", getpid(), "-", ++n);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// How many rows `audit log --downstream` says it listed, -1 if it failed.
int DownstreamCount(const CommandResult& r) {
  if (r.exit_code != 0) return -1;
  const size_t at = r.out.rfind("\n", r.out.size() - 2);
  const std::string last = r.out.substr(at == std::string::npos ? 0 : at + 1);
  return std::atoi(last.c_str());
}

// A token with an Ed25519 key pair kKeyLabel (object id 01) in it.
struct Token {
  std::string label;
  Ed25519PublicKey public_key;
};
absl::StatusOr<Token> NewTokenWithKey() {
  SoftHsm& hsm = SoftHsm::ForProcess();
  const std::string label = NewTokenLabel();
  if (auto st = hsm.InitToken(label, kPin); !st.ok()) return st;
  auto pub = hsm.GenerateKey(label, kPin, kKeyLabel, "01");
  if (!pub.ok()) return pub.status();
  return Token{label, *pub};
}

// A session logged in to `token` as its user, through the raw PKCS#11 API,
// for what the signer does not offer (reading attributes, other key types).
class RawSession {
 public:
  explicit RawSession(const std::string& token) {
    module_ = Pkcs11Module::Load(kSoftHsmModule).value();
    f_ = module_->functions();
    const CK_SLOT_ID slot = module_->FindToken(token).value();
    EXPECT_EQ(f_->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s_),
              CKR_OK);
    std::string pin = kPin;
    const CK_RV rv =
        f_->C_Login(s_, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size());
    EXPECT_TRUE(rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) << Pkcs11ReturnName(rv);
  }
  ~RawSession() { f_->C_CloseSession(s_); }

  CK_OBJECT_HANDLE PrivateKey(const std::string& label) { return Find(CKO_PRIVATE_KEY, label); }
  CK_OBJECT_HANDLE PublicKey(const std::string& label) { return Find(CKO_PUBLIC_KEY, label); }
  // The one object of class `klass` labelled `label`.
  CK_OBJECT_HANDLE Find(CK_OBJECT_CLASS klass, const std::string& label) {
    std::string l = label;
    CK_ATTRIBUTE t[] = {{CKA_CLASS, &klass, sizeof klass}, {CKA_LABEL, l.data(), l.size()}};
    CK_OBJECT_HANDLE h = CK_INVALID_HANDLE;
    CK_ULONG n = 0;
    EXPECT_EQ(f_->C_FindObjectsInit(s_, t, 2), CKR_OK);
    EXPECT_EQ(f_->C_FindObjects(s_, &h, 1, &n), CKR_OK);
    f_->C_FindObjectsFinal(s_);
    EXPECT_EQ(n, 1u);
    return h;
  }
  CK_RV GetAttribute(CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, std::string* value) {
    value->assign(256, '\0');
    CK_ATTRIBUTE a{type, value->data(), value->size()};
    const CK_RV rv = f_->C_GetAttributeValue(s_, h, &a, 1);
    if (rv == CKR_OK) value->resize(a.ulValueLen);
    return rv;
  }
  CK_RV Destroy(CK_OBJECT_HANDLE h) { return f_->C_DestroyObject(s_, h); }
  CK_RV Relabel(CK_OBJECT_HANDLE h, const std::string& label) {
    std::string l = label;
    CK_ATTRIBUTE a{CKA_LABEL, l.data(), l.size()};
    return f_->C_SetAttributeValue(s_, h, &a, 1);
  }
  // An ECDSA P-256 key pair `label`: a key of the wrong type for Corridor.
  CK_RV GenerateEcdsaKey(const std::string& label) {
    CK_MECHANISM m{CKM_EC_KEY_PAIR_GEN, nullptr, 0};
    std::string p256("\x06\x08\x2a\x86\x48\xce\x3d\x03\x01\x07", 10), l = label;
    CK_BBOOL yes = CK_TRUE;
    CK_ATTRIBUTE pub[] = {{CKA_TOKEN, &yes, 1},
                          {CKA_EC_PARAMS, p256.data(), p256.size()},
                          {CKA_LABEL, l.data(), l.size()}};
    CK_ATTRIBUTE prv[] = {{CKA_TOKEN, &yes, 1},
                          {CKA_SENSITIVE, &yes, 1},
                          {CKA_SIGN, &yes, 1},
                          {CKA_LABEL, l.data(), l.size()}};
    CK_OBJECT_HANDLE a, b;
    return f_->C_GenerateKeyPair(s_, &m, pub, 3, prv, 4, &a, &b);
  }

 private:
  std::shared_ptr<Pkcs11Module> module_;
  CK_FUNCTION_LIST* f_ = nullptr;
  CK_SESSION_HANDLE s_ = CK_INVALID_HANDLE;
};

// ---- The PKCS#11 signer against SoftHSM -----------------------------------------------

class Pkcs11SignerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_SOFTHSM();
    ASSERT_OK_AND_ASSIGN(token_, NewTokenWithKey());
  }
  Pkcs11KeyRef Ref(const std::string& key_label = kKeyLabel) const {
    return Pkcs11KeyRef{kSoftHsmModule, token_.label, key_label, ""};
  }
  absl::StatusOr<std::unique_ptr<Pkcs11Signer>> Open(const Pkcs11KeyRef& ref,
                                                     const std::string& pin = kPin) {
    return Pkcs11Signer::Open(ref, SecretBytes::CopyOf(pin));
  }

  Token token_{"", Ed25519PublicKey::FromRaw(std::string(32, '\1')).value()};
};

TEST_F(Pkcs11SignerTest, SignaturesMadeInTheTokenVerifyWithTheTokensPublicKey) {
  ASSERT_OK_AND_ASSIGN(auto signer, Open(Ref()));
  EXPECT_EQ(signer->public_key().raw(), token_.public_key.raw());
  EXPECT_FALSE(signer->extractable());
  for (const std::string& message : {std::string(), std::string("one"), std::string(10000, 'x')}) {
    ASSERT_OK_AND_ASSIGN(std::string sig, signer->Signature(message));
    EXPECT_EQ(sig.size(), kEd25519SignatureSize);
    EXPECT_TRUE(token_.public_key.Verify(message, sig));
    EXPECT_FALSE(token_.public_key.Verify(message + "!", sig));
  }
  // The same key found by its object id alone.
  ASSERT_OK_AND_ASSIGN(auto by_id, Open(Pkcs11KeyRef{kSoftHsmModule, token_.label, "", "01"}));
  EXPECT_EQ(by_id->public_key().raw(), token_.public_key.raw());
}

TEST_F(Pkcs11SignerTest, TheTokenNeverRevealsThePrivateKey) {
  RawSession raw(token_.label);
  const CK_OBJECT_HANDLE key = raw.PrivateKey(kKeyLabel);
  std::string value;
  EXPECT_EQ(raw.GetAttribute(key, CKA_VALUE, &value), CKR_ATTRIBUTE_SENSITIVE);
  ASSERT_EQ(raw.GetAttribute(key, CKA_EXTRACTABLE, &value), CKR_OK);
  EXPECT_EQ(value, std::string(1, CK_FALSE));
  ASSERT_EQ(raw.GetAttribute(key, CKA_SENSITIVE, &value), CKR_OK);
  EXPECT_EQ(value, std::string(1, CK_TRUE));
}

TEST_F(Pkcs11SignerTest, ManySignaturesAtOnceAllSucceedAndVerify) {
  ASSERT_OK_AND_ASSIGN(auto signer, Open(Ref()));
  constexpr int kThreads = 16, kEach = 40;
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        const std::string message = absl::StrCat("message ", t, "/", i);
        auto sig = signer->Signature(message);
        if (sig.ok() && token_.public_key.Verify(message, *sig)) ++good;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), kThreads * kEach);
}

TEST_F(Pkcs11SignerTest, AWrongPinIsRefusedSayingSo) {
  auto signer = Open(Ref(), "not-the-pin");
  EXPECT_STATUS(signer.status(), absl::StatusCode::kPermissionDenied, "refused the PIN");
  EXPECT_FALSE(absl::StrContains(signer.status().message(), "not-the-pin"));
}

TEST_F(Pkcs11SignerTest, EachMissingPieceIsNamed) {
  EXPECT_STATUS(Open(Ref("no-such-key")).status(), absl::StatusCode::kNotFound,
                "no private key \"no-such-key\"");
  Pkcs11KeyRef token = Ref();
  token.token_label = "no-such-token";
  auto st = Open(token).status();
  EXPECT_STATUS(st, absl::StatusCode::kNotFound, "no token labelled \"no-such-token\"");
  EXPECT_TRUE(absl::StrContains(st.message(), token_.label)) << st;  // the tokens present
  Pkcs11KeyRef module = Ref();
  module.module = "/nonexistent/libvendor-pkcs11.so";
  EXPECT_STATUS(Open(module).status(), absl::StatusCode::kNotFound, "does not exist");
  const std::string not_a_module = testing::MakeTempDir("hsm") + "/libfake.so";
  ASSERT_OK(WriteFileAtomically(not_a_module, "not a library"));
  module.module = not_a_module;
  EXPECT_STATUS(Open(module).status(), absl::StatusCode::kFailedPrecondition, "cannot be loaded");
}

TEST_F(Pkcs11SignerTest, AKeyOfAnotherTypeIsRefused) {
  {
    RawSession raw(token_.label);
    ASSERT_EQ(raw.GenerateEcdsaKey("ecdsa-key"), CKR_OK);
  }
  auto st = Open(Ref("ecdsa-key")).status();
  EXPECT_STATUS(st, absl::StatusCode::kFailedPrecondition, "is an ECDSA");
  EXPECT_TRUE(absl::StrContains(st.message(), "Ed25519")) << st;
}

TEST_F(Pkcs11SignerTest, AGeneratedKeyIsNeverReplaced) {
  auto again = SoftHsm::ForProcess().GenerateKey(token_.label, kPin, kKeyLabel);
  EXPECT_STATUS(again.status(), absl::StatusCode::kAlreadyExists, "already holds");
}

// Someone swaps the public key object beside the private key for another
// key's: the node would announce a public key its signatures do not match.
// The test signature at open catches it.
TEST_F(Pkcs11SignerTest, APublicKeyThatIsNotThePrivateKeysOwnIsRefused) {
  ASSERT_OK(SoftHsm::ForProcess().GenerateKey(token_.label, kPin, "other-key").status());
  {
    RawSession raw(token_.label);
    ASSERT_EQ(raw.Destroy(raw.PublicKey(kKeyLabel)), CKR_OK);
    ASSERT_EQ(raw.Relabel(raw.PublicKey("other-key"), kKeyLabel), CKR_OK);
  }
  auto st = Open(Pkcs11KeyRef{kSoftHsmModule, token_.label, kKeyLabel, ""}).status();
  EXPECT_STATUS(st, absl::StatusCode::kInternal, "do not belong together");
}

TEST(PinFileTest, APinFileOthersMayReadIsRefused) {
  const std::string dir = testing::MakeTempDir("pin");
  SoftHsm::WritePinFile(dir + "/open", "1234", 0644);
  EXPECT_STATUS(ReadPinFile(dir + "/open").status(), absl::StatusCode::kFailedPrecondition,
                "every user of this machine (mode 0644)");
  for (int mode : {0600, 0640, 0400}) {
    SoftHsm::WritePinFile(dir + "/ok", "1234", mode);
    ASSERT_OK_AND_ASSIGN(SecretBytes pin, ReadPinFile(dir + "/ok"));
    EXPECT_EQ(pin.view(), "1234");  // the newline is not part of the PIN
  }
  EXPECT_STATUS(ReadPinFile(dir + "/missing").status(), absl::StatusCode::kNotFound, "no such");
}

// ---- Real nodes -------------------------------------------------------------------------

constexpr char kUnion[] = "union-sg";        // signs with a key file
constexpr char kMinistry[] = "ministry-id";  // signs through the token

class HsmNodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_SOFTHSM();
    testing::ClearCtlEnvironment();
    ASSERT_OK_AND_ASSIGN(token_, NewTokenWithKey());
    fed_.AddOrg(kUnion);
    testing::TestOrg& ministry = fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
    ASSERT_EQ(unlink((ministry.dir + "/signing.key").c_str()), 0);
    TestOrgInToken(ministry, kKeyLabel, "01");
    fed_.limits["witness_interval_seconds"] = "1";
    for (const char* org : {kUnion, kMinistry}) nodes_.Configure(org);
    stewards_ = fed_.WriteStewardsFile();
  }

  // `o` signs with the token's key: the roster lists the token's public key,
  // the config names the token, and the org has no key file at all.
  void TestOrgInToken(testing::TestOrg& o, const std::string& key_label,
                      const std::string& object_id, const std::string& pin = kPin) {
    o.listed_signing_key = token_.public_key;
    SoftHsm::WritePinFile(o.dir + "/token.pin", pin);
    o.signing_key_yaml = absl::StrCat(
        "  pkcs11:\n    module: ", kSoftHsmModule, "\n    token_label: \"", token_.label,
        "\"\n    key_label: ", key_label, "\n",
        object_id.empty() ? "" : absl::StrCat("    key_object_id: \"", object_id, "\"\n"),
        "    pin_file: token.pin\n");
  }

  // Every envelope was taken, with a receipt that verified: the sender checks
  // the receiver's signature on it before it marks the envelope delivered.
  static void ExpectAllDelivered(const v1::ListOutboxResponse& outbox) {
    EXPECT_GT(outbox.entries_size(), 0);
    for (const auto& e : outbox.entries()) EXPECT_EQ(e.state(), "delivered") << e.DebugString();
  }

  // A case at union-sg referred to ministry-id and accepted there; returns
  // (union's case id, ministry's case id).
  std::pair<std::string, std::string> ReferredCase() {
    CommandResult r = nodes_.Ctl(kUnion, {"case", "create", "--json", "--category", "wage-theft",
                                          "--origin", "ID", "--destination", "SG", "--worker-name",
                                          "Dewi", "--consent", "ministry-id:case-referral"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string id = testing::JsonValues(r.out, "id").at(0);
    r = nodes_.Ctl(kUnion, {"refer", id, "--to", kMinistry, "--agreement", "test-agreement",
                            "--purpose", "case-referral", "--include", "personal-data", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::string referral = testing::JsonValues(r.out, "referral_id").at(0);
    ExpectAllDelivered(nodes_.AwaitOutboxSettled(kUnion));
    r = nodes_.Ctl(kMinistry, {"accept", referral});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    ExpectAllDelivered(nodes_.AwaitOutboxSettled(kMinistry));
    auto ids = testing::JsonValues(nodes_.Ctl(kMinistry, {"case", "list", "--json"}).out, "id");
    EXPECT_EQ(ids.size(), 1u);
    return {id, ids.empty() ? "" : ids[0]};
  }

  // corridorctl as `org`'s auditor, checking against the roster and the stewards' keys.
  CommandResult Audit(const std::string& org, std::vector<std::string> args) {
    for (const std::string& a : {std::string("--roster"), fed_.org(org).dir + "/roster.json",
                                 std::string("--stewards"), stewards_}) {
      args.push_back(a);
    }
    return nodes_.CtlAs(org, nodes_.auditor(org), args);
  }

  CommandResult CheckConfig(const std::string& org) {
    return testing::RunCommand(
        {testing::BinaryPath("corridord"), "--config", nodes_.config(org), "--check-config"});
  }

  Token token_{"", Ed25519PublicKey::FromRaw(std::string(32, '\1')).value()};
  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
  std::string stewards_;
};

TEST_F(HsmNodeTest, ANodeSigningThroughTheTokenIsVerifiedByItsPeerAndTheAuditor) {
  ASSERT_TRUE(nodes_.Start(kUnion));
  ASSERT_TRUE(nodes_.Start(kMinistry));
  // The referral's receipt, the decision envelope and its receipt: each side
  // verified the other's signatures, or the outboxes would not settle.
  const auto referred = ReferredCase();
  const std::string id = referred.first, mcase = referred.second;
  ASSERT_FALSE(mcase.empty());

  // Many reads in flight at ministry-id on one channel: each makes the token
  // sign an access attestation (and the checkpoints of their ledger entries).
  const std::string user = nodes_.user(kMinistry);
  auto ch = MakeMutualTlsChannel(
      {ReadAll(user + ".crt"), ReadAll(user + ".key"), fed_.org(kMinistry).ca.cert_pem},
      fed_.org(kMinistry).endpoint(), "");
  auto stub = v1::CaseService::NewStub(ch);
  constexpr int kThreads = 8, kReadsEach = 4;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kReadsEach; ++i) {
        grpc::ClientContext ctx;
        ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
        v1::GetCaseRequest req;
        req.set_id(mcase);
        req.set_purpose("case-handling");
        v1::Case c;
        if (stub->GetCase(&ctx, req, &c).ok()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(ok.load(), kThreads * kReadsEach);
  // union-sg took every attestation (it checks the token's signature against
  // the roster), and its auditor proves each attested entry against
  // ministry-id's checkpoint, signed in the token.
  CommandResult downstream;
  ASSERT_TRUE(testing::Eventually([&] {
    downstream = Audit(kUnion, {"audit", "log", "--case", id, "--downstream", "--prove"});
    return DownstreamCount(downstream) == kThreads * kReadsEach;
  })) << downstream.out
      << downstream.err;

  // Checkpoints signed in the token, cosigned by the file-key peer, and the
  // file-key node's checkpoints cosigned through the token: all verify.
  for (const char* org : {kMinistry, kUnion}) {
    CommandResult r;
    ASSERT_TRUE(testing::Eventually([&] {
      r = Audit(org, {"audit", "checkpoint", "--cosigned", "1", "--state",
                      fed_.root() + "/audit-state-" + org});
      return r.exit_code == 0;
    })) << org
        << ": " << r.out << r.err;
    EXPECT_TRUE(absl::StrContains(r.out, "cosigned by 1 peers")) << r.out;
  }

  // The node said where its key is; neither its files nor its log hold the PIN
  // or any private key (there is no key file for it to read).
  const std::string log = nodes_.process(kMinistry).Log();
  EXPECT_TRUE(absl::StrContains(log, "node.signing_key_in_token")) << log;
  EXPECT_FALSE(absl::StrContains(log, kPin));
  EXPECT_FALSE(absl::StrContains(log, "PRIVATE KEY"));
  const std::string data = fed_.org(kMinistry).dir + "/data";
  EXPECT_FALSE(testing::AnyFileContains(data, kPin));
  EXPECT_FALSE(testing::AnyFileContains(data, "PRIVATE KEY"));
  EXPECT_NE(access((fed_.org(kMinistry).dir + "/signing.key").c_str(), F_OK), 0);
}

TEST_F(HsmNodeTest, SigningPublicKeyWritesTheTokensKeyForTheStewards) {
  const std::string out = testing::MakeTempDir("hsm-pub");
  CommandResult r = testing::RunCommand({testing::BinaryPath("corridord"), "--config",
                                         nodes_.config(kMinistry), "--signing-public-key", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadAll(out + "/signing.pub"), Base64Encode(token_.public_key.raw()) + "\n");
  EXPECT_EQ(ReadAll(out + "/signing.keyid"), fed_.org(kMinistry).key_id + "\n");
  EXPECT_FALSE(absl::StrContains(r.out + r.err, kPin));
}

// Moving a file key into the token is a rotation: the stewards list the
// token's key, the node's signing_key is pointed at the token, SIGHUP; the
// peer then takes what the node signs in the token.
TEST_F(HsmNodeTest, AKeyFileIsReplacedByATokenKeyOnReload) {
  ASSERT_TRUE(nodes_.Start(kUnion));
  ASSERT_TRUE(nodes_.Start(kMinistry));
  ASSERT_OK_AND_ASSIGN(Ed25519PublicKey next,
                       SoftHsm::ForProcess().GenerateKey(token_.label, kPin, "union-sg-2", "02"));
  v1::Roster v2 = fed_.MakeRoster(2);
  for (v1::Member& m : *v2.mutable_members()) {
    if (m.org() != kUnion) continue;
    m.mutable_signing_keys(0)->set_status(v1::KEY_STATUS_RETIRED);
    m.mutable_signing_keys(0)->set_valid_until(absl::FormatTime(
        absl::RFC3339_sec, absl::Now() + absl::Hours(24 * 7), absl::UTCTimeZone()));
    v1::SigningKey* k = m.add_signing_keys();
    k->set_key_id("union-sg-2");
    k->set_public_key(Base64Encode(next.raw()));
    k->set_status(v1::KEY_STATUS_ACTIVE);
  }
  CommandResult pushed = nodes_.PushRoster(kUnion, fed_.Sign(v2, fed_.threshold()));
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  ASSERT_TRUE(nodes_.AwaitRosterVersion(kMinistry, 2));

  const std::string dir = fed_.org(kUnion).dir;
  SoftHsm::WritePinFile(dir + "/token.pin", kPin);
  std::string yaml = ReadAll(nodes_.config(kUnion));
  const std::string from = "  key_id: union-sg-1\n  key_file: signing.key\n";
  ASSERT_NE(yaml.find(from), std::string::npos) << yaml;
  yaml.replace(yaml.find(from), from.size(),
               absl::StrCat("  key_id: union-sg-2\n  pkcs11:\n    module: ", kSoftHsmModule,
                            "\n    token_label: \"", token_.label,
                            "\"\n    key_label: union-sg-2\n    pin_file: token.pin\n"));
  ASSERT_OK(WriteFileAtomically(nodes_.config(kUnion), yaml));
  ASSERT_EQ(kill(nodes_.process(kUnion).pid(), SIGHUP), 0);
  EXPECT_FALSE(nodes_.AwaitLogLine(kUnion, {"\"event\":\"node.reloaded\"", "signing_key"}).empty())
      << nodes_.process(kUnion).Log();

  // A referral signed in the token now: ministry-id verifies it against the
  // roster and answers with a receipt union-sg verifies.
  const auto referred = ReferredCase();
  EXPECT_FALSE(referred.second.empty());
  EXPECT_FALSE(absl::StrContains(nodes_.process(kUnion).Log(), kPin));
}

// Each misconfiguration stops corridord before it serves, naming the setting
// and the cause in words, never showing the PIN.
TEST_F(HsmNodeTest, MisconfiguredTokenKeysAreRefusedWithTheirOwnMessage) {
  testing::TestOrg& o = fed_.org(kMinistry);
  struct Case {
    std::string what, key_label, object_id, pin;
    int pin_mode;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {"wrong PIN",
       kKeyLabel,
       "01",
       "0000-wrong",
       0600,
       {"signing_key.pkcs11.pin_file", "refused the PIN", "not the token's user PIN"}},
      {"missing key",
       "no-such-key",
       "",
       kPin,
       0600,
       {"signing_key.pkcs11.key_label", "no private key \"no-such-key\""}},
      {"PIN file others may read",
       kKeyLabel,
       "01",
       kPin,
       0644,
       {"signing_key.pkcs11.pin_file", "every user of this machine"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    o.signing_key_yaml.clear();
    TestOrgInToken(o, c.key_label, c.object_id, c.pin);
    chmod((o.dir + "/token.pin").c_str(), c.pin_mode);
    nodes_.Configure(kMinistry);
    CommandResult r = CheckConfig(kMinistry);
    EXPECT_EQ(r.exit_code, 1);
    for (const std::string& s : c.says) EXPECT_TRUE(absl::StrContains(r.err, s)) << r.err;
    EXPECT_FALSE(absl::StrContains(r.err, c.pin)) << r.err;
    testing::ExpectWords(r.err);
    // A start fails the same way, logged.
    CommandResult start = testing::RunCommand(
        {testing::BinaryPath("corridord"), "--config", nodes_.config(kMinistry)});
    EXPECT_EQ(start.exit_code, 1);
    EXPECT_TRUE(absl::StrContains(start.err, c.says.back())) << start.err;
    EXPECT_FALSE(absl::StrContains(start.err, c.pin)) << start.err;
  }
}

TEST_F(HsmNodeTest, ATokenKeyTheRosterDoesNotListStopsTheStart) {
  // The roster lists another key for ministry-id than the one in the token.
  testing::TestOrg& o = fed_.org(kMinistry);
  o.listed_signing_key = Ed25519PrivateKey::Generate().public_key();
  nodes_.Configure(kMinistry);
  CommandResult r = CheckConfig(kMinistry);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(
      absl::StrContains(r.err, "with public key " + Base64Encode(o.listed_signing_key->raw())))
      << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat("in token \"", token_.label, "\""))) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, Base64Encode(token_.public_key.raw()))) << r.err;
  CommandResult start =
      testing::RunCommand({testing::BinaryPath("corridord"), "--config", nodes_.config(kMinistry)});
  EXPECT_EQ(start.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(start.err, "the roster lists key id")) << start.err;
}

}  // namespace
}  // namespace corridor
