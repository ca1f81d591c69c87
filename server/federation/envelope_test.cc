#include "server/federation/envelope.h"

#include "absl/time/clock.h"
#include "google/protobuf/unknown_field_set.h"
#include "gtest/gtest.h"
#include "ledger/crypto/dsse.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

class EnvelopeTest : public ::testing::Test {
 protected:
  EnvelopeTest() {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    fed_.AddOrg("inspectorate-sg", v1::ORG_KIND_INSPECTORATE);
    roster_ = fed_.MakeRoster();
  }
  v1::EnvelopePayload Payload() const {
    v1::EnvelopePayload p;
    p.set_envelope_id("env-1");
    p.set_sender_org("union-sg");
    p.set_recipient_org("ministry-id");
    p.set_created_unix(absl::ToUnixSeconds(now_) - 10);
    p.set_expires_unix(absl::ToUnixSeconds(now_) + 3600);
    p.set_key_id("union-sg-1");
    p.set_agreement("test-agreement");
    p.set_purpose("case-referral");
    p.mutable_referral()->set_referral_id("ref-1");
    return p;
  }
  absl::StatusOr<v1::EnvelopePayload> Check(const v1::Envelope& env,
                                            const std::string& caller = "union-sg",
                                            const std::string& self = "ministry-id") {
    EnvelopeContext ctx{caller, self, &roster_, now_, 4096};
    return VerifyEnvelope(env, ctx);
  }
  v1::Envelope Signed(const v1::EnvelopePayload& p) {
    return SignEnvelope(p, fed_.org("union-sg").signing);
  }

  testing::TestFederation fed_;
  v1::Roster roster_;
  absl::Time now_ = absl::Now();
};

TEST_F(EnvelopeTest, GoodEnvelopeVerifies) {
  ASSERT_OK_AND_ASSIGN(v1::EnvelopePayload p, Check(Signed(Payload())));
  EXPECT_EQ(p.referral().referral_id(), "ref-1");
}

// Adds a field the schema does not know, holding `bytes`, as a peer could.
void Plant(google::protobuf::Message& m, const std::string& bytes) {
  m.GetReflection()->MutableUnknownFields(&m)->AddLengthDelimited(99, bytes);
}

// A peer may append fields the schema does not know to the outer envelope or
// receipt (proto3 keeps them and no signature covers them): what a node keeps
// in its ledger must not carry them, whatever they hold.
TEST_F(EnvelopeTest, WhatTheLedgerKeepsOfAPeersEnvelopeOrReceiptHasNoUnknownFields) {
  const std::string planted = "Siti Rahayu, passport A1234567";
  v1::Envelope env = Signed(Payload());
  Plant(env, planted);
  Plant(*env.mutable_signatures(0), planted);
  ASSERT_OK(Check(env).status());  // the signature covers only the payload
  const v1::Envelope kept = CanonicalEnvelope(env);
  EXPECT_EQ(kept.SerializeAsString().find(planted), std::string::npos);
  EXPECT_EQ(EnvelopeDigest(kept), EnvelopeDigest(env));
  ASSERT_OK(Check(kept).status());

  v1::ReceiptBody body;
  body.set_envelope_id("env-1");
  v1::Receipt receipt = SignReceipt(body, "union-sg-1", fed_.org("union-sg").signing);
  Plant(receipt, planted);
  const v1::Receipt kept_receipt = CanonicalReceipt(receipt);
  EXPECT_EQ(kept_receipt.SerializeAsString().find(planted), std::string::npos);
  EXPECT_EQ(kept_receipt.body(), receipt.body());
  EXPECT_EQ(kept_receipt.signature(), receipt.signature());
  EXPECT_EQ(kept_receipt.key_id(), receipt.key_id());
}

TEST_F(EnvelopeTest, EachBadEnvelopeHasItsOwnError) {
  struct Case {
    std::string name;
    std::function<v1::Envelope()> make;
    std::string caller;
    absl::StatusCode code;
    std::string error;
  };
  auto mutate = [this](std::function<void(v1::EnvelopePayload&)> f) {
    v1::EnvelopePayload p = Payload();
    f(p);
    return Signed(p);
  };
  const std::vector<Case> cases = {
      {"wrong payload type",
       [&] {
         auto e = Signed(Payload());
         e.set_payload_type("text/plain");
         return e;
       },
       "union-sg", absl::StatusCode::kInvalidArgument, "payload type"},
      {"oversized",
       [&] {
         return mutate(
             [](auto& p) { p.mutable_referral()->set_referral_id(std::string(5000, 'x')); });
       },
       "union-sg", absl::StatusCode::kInvalidArgument, "exceeds the limit"},
      {"malformed protobuf",
       [&] {
         v1::Envelope e;
         e.set_payload_type(kEnvelopePayloadType);
         e.set_payload("\xff\xff\xff");
         auto* s = e.add_signatures();
         s->set_keyid("union-sg-1");
         s->set_sig(fed_.org("union-sg").signing.Sign(DssePae(kEnvelopePayloadType, e.payload())));
         return e;
       },
       "union-sg", absl::StatusCode::kInvalidArgument, "not a well-formed"},
      {"replayed with a changed body",
       [&] {
         auto e = Signed(Payload());
         v1::EnvelopePayload p = Payload();
         p.mutable_referral()->set_referral_id("ref-2");
         e.set_payload(p.SerializeAsString());
         return e;
       },
       "union-sg", absl::StatusCode::kPermissionDenied, "signature does not verify"},
      {"signed by another member's key",
       [&] {
         v1::EnvelopePayload p = Payload();
         p.set_key_id("ministry-id-1");
         return SignEnvelope(p, fed_.org("ministry-id").signing);
       },
       "union-sg", absl::StatusCode::kPermissionDenied, "not a key of union-sg"},
      {"delivered by another member's node", [&] { return Signed(Payload()); }, "inspectorate-sg",
       absl::StatusCode::kPermissionDenied, "not a key of inspectorate-sg"},
      {"addressed to a third node",
       [&] { return mutate([](auto& p) { p.set_recipient_org("inspectorate-sg"); }); }, "union-sg",
       absl::StatusCode::kPermissionDenied, "addressed to inspectorate-sg"},
      {"expired",
       [&] {
         return mutate([this](auto& p) { p.set_expires_unix(absl::ToUnixSeconds(now_) - 1); });
       },
       "union-sg", absl::StatusCode::kFailedPrecondition, "expired"},
      {"from the future",
       [&] {
         return mutate([this](auto& p) { p.set_created_unix(absl::ToUnixSeconds(now_) + 3600); });
       },
       "union-sg", absl::StatusCode::kFailedPrecondition, "in the future"},
      {"unknown agreement", [&] { return mutate([](auto& p) { p.set_agreement("secret-deal"); }); },
       "union-sg", absl::StatusCode::kPermissionDenied, "not in the roster"},
      {"purpose not covered", [&] { return mutate([](auto& p) { p.set_purpose("marketing"); }); },
       "union-sg", absl::StatusCode::kPermissionDenied, "does not cover the purpose"},
      {"sender claims another org",
       [&] { return mutate([](auto& p) { p.set_sender_org("inspectorate-sg"); }); }, "union-sg",
       absl::StatusCode::kPermissionDenied, "claims sender inspectorate-sg"},
      {"no body", [&] { return mutate([](auto& p) { p.clear_referral(); }); }, "union-sg",
       absl::StatusCode::kInvalidArgument, "no body"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_STATUS(Check(c.make(), c.caller), c.code, c.error);
  }
}

TEST_F(EnvelopeTest, RevokedKeyStopsNewEnvelopes) {
  roster_.mutable_members(0)->mutable_signing_keys(0)->set_status(v1::KEY_STATUS_REVOKED);
  EXPECT_STATUS(Check(Signed(Payload())), absl::StatusCode::kPermissionDenied, "has been revoked");
}

TEST_F(EnvelopeTest, ReceiptsBindEnvelopeAndReceiver) {
  v1::Envelope env = Signed(Payload());
  v1::ReceiptBody body;
  body.set_envelope_id("env-1");
  body.set_envelope_sha256(EnvelopeDigest(env));
  body.set_receiver_org("ministry-id");
  body.set_ledger_index(42);
  v1::Receipt r = SignReceipt(body, "ministry-id-1", fed_.org("ministry-id").signing);
  ASSERT_OK_AND_ASSIGN(v1::ReceiptBody got, VerifyReceipt(r, env, "ministry-id", roster_));
  EXPECT_EQ(got.ledger_index(), 42u);
  EXPECT_STATUS(VerifyReceipt(r, env, "inspectorate-sg", roster_),
                absl::StatusCode::kPermissionDenied, "unknown key");
  v1::Envelope other = Signed(Payload());
  other.set_payload(other.payload() + "x");
  EXPECT_STATUS(VerifyReceipt(r, other, "ministry-id", roster_),
                absl::StatusCode::kPermissionDenied, "another envelope");
  r.mutable_signature()->at(0) ^= 1;
  EXPECT_STATUS(VerifyReceipt(r, env, "ministry-id", roster_), absl::StatusCode::kPermissionDenied,
                "does not verify");
}

}  // namespace
}  // namespace corridor
