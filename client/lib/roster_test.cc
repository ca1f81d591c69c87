#include "client/lib/roster.h"

#include "absl/strings/str_replace.h"
#include "client/ctl/roster_signing.h"
#include "client/lib/yaml_proto.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "ledger/crypto/dsse.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

class RosterTest : public ::testing::Test {
 protected:
  RosterTest() : fed_("corridor.test", 3, 2) {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    for (int i = 0; i < 3; ++i) {
      stewards_.push_back({"steward-" + std::to_string(i + 1), fed_.stewards()[i].public_key()});
    }
  }
  absl::StatusOr<VerifiedRoster> Verify(const std::string& json) {
    return VerifySignedRoster(json, stewards_, 2, "corridor.test");
  }
  testing::TestFederation fed_;
  std::vector<StewardPublicKey> stewards_;
};

TEST_F(RosterTest, AcceptsRosterSignedByThreshold) {
  ASSERT_OK_AND_ASSIGN(VerifiedRoster r, Verify(fed_.Sign(fed_.MakeRoster(4), 2)));
  EXPECT_EQ(r.roster.version(), 4u);
  EXPECT_EQ(r.signed_by.size(), 2u);
  EXPECT_EQ(r.digest_hex.size(), 64u);
}

TEST_F(RosterTest, RefusesTooFewSignatures) {
  EXPECT_STATUS(Verify(fed_.Sign(fed_.MakeRoster(), 1)), absl::StatusCode::kPermissionDenied,
                "roster has 1 valid steward signature(s) (steward-1); this node requires 2");
}

TEST_F(RosterTest, RefusesUnsignedRoster) {
  v1::Roster r = fed_.MakeRoster();
  std::string json = SignRoster(&r, "", "steward-1", fed_.stewards()[0]).value();
  // Strip the signature list entirely.
  v1::Envelope env;
  ASSERT_OK(ParseJsonStrict(json, "x", &env));
  env.clear_signatures();
  std::string unsigned_json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(env, &unsigned_json).ok());
  EXPECT_STATUS(Verify(unsigned_json), absl::StatusCode::kPermissionDenied,
                "roster has 0 valid steward signature(s)");
}

TEST_F(RosterTest, RefusesWrongSignature) {
  // Signed by a key that claims a steward's name but is not that steward.
  Ed25519PrivateKey impostor = Ed25519PrivateKey::Generate();
  v1::Roster r = fed_.MakeRoster();
  std::string json = SignRoster(&r, "", "steward-1", impostor).value();
  json = SignRoster(nullptr, json, "steward-2", impostor).value();
  EXPECT_STATUS(Verify(json), absl::StatusCode::kPermissionDenied, "0 valid steward signature");
}

TEST_F(RosterTest, SameStewardTwiceCountsOnce) {
  v1::Roster r = fed_.MakeRoster();
  std::string json = SignRoster(&r, "", "steward-1", fed_.stewards()[0]).value();
  EXPECT_STATUS(SignRoster(nullptr, json, "steward-1", fed_.stewards()[0]),
                absl::StatusCode::kAlreadyExists, "already signed");
  // Forge a duplicate signature entry by hand: still one distinct steward.
  v1::Envelope env;
  ASSERT_OK(ParseJsonStrict(json, "x", &env));
  *env.add_signatures() = env.signatures(0);
  std::string dup;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(env, &dup).ok());
  EXPECT_STATUS(Verify(dup), absl::StatusCode::kPermissionDenied, "1 valid steward signature");
}

TEST_F(RosterTest, RefusesTamperedPayload) {
  std::string json = fed_.Sign(fed_.MakeRoster(), 2);
  v1::Envelope env;
  ASSERT_OK(ParseJsonStrict(json, "x", &env));
  v1::Roster r;
  ASSERT_TRUE(r.ParseFromString(env.payload()));
  r.mutable_members(0)->set_endpoint("203.0.113.9:443");
  env.set_payload(r.SerializeAsString());
  std::string tampered;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(env, &tampered).ok());
  EXPECT_STATUS(Verify(tampered), absl::StatusCode::kPermissionDenied, "0 valid steward signature");
}

TEST_F(RosterTest, RefusesUnknownFieldsInPayloadEvenWhenSigned) {
  v1::Roster r = fed_.MakeRoster();
  std::string payload = r.SerializeAsString() + std::string("\x98\x06\x01", 3);
  v1::Envelope env;
  env.set_payload_type(kRosterPayloadType);
  env.set_payload(payload);
  for (int i = 0; i < 2; ++i) {
    auto* s = env.add_signatures();
    s->set_keyid("steward-" + std::to_string(i + 1));
    s->set_sig(fed_.stewards()[i].Sign(DssePae(kRosterPayloadType, payload)));
  }
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(env, &json).ok());
  EXPECT_STATUS(Verify(json), absl::StatusCode::kInvalidArgument, "fields this node does not know");
}

TEST_F(RosterTest, RefusesUnknownJsonKeysAndWrongPayloadType) {
  std::string json = fed_.Sign(fed_.MakeRoster(), 2);
  std::string extra =
      absl::StrReplaceAll(json, {{"\"payloadType\"", "\"extra\": 1, \"payloadType\""}});
  EXPECT_STATUS(Verify(extra), absl::StatusCode::kInvalidArgument, "signed roster is not valid");
  std::string wrong_type = absl::StrReplaceAll(json, {{kRosterPayloadType, "text/plain"}});
  EXPECT_STATUS(Verify(wrong_type), absl::StatusCode::kInvalidArgument,
                "payload type \"text/plain\"");
  EXPECT_STATUS(Verify("not json"), absl::StatusCode::kInvalidArgument,
                "signed roster is not valid");
}

TEST_F(RosterTest, RefusesOtherFederation) {
  v1::Roster r = fed_.MakeRoster();
  r.set_federation("elsewhere.example");
  EXPECT_STATUS(Verify(fed_.Sign(r, 2)), absl::StatusCode::kInvalidArgument,
                "roster is for federation \"elsewhere.example\"");
}

TEST_F(RosterTest, ValidateRosterCatchesMalformedContent) {
  struct Case {
    const char* name;
    std::function<void(v1::Roster&)> mutate;
    const char* error;
  };
  const std::vector<Case> cases = {
      {"version zero", [](v1::Roster& r) { r.set_version(0); }, "version must be at least 1"},
      {"bad org id", [](v1::Roster& r) { r.mutable_members(0)->set_org("Union SG"); },
       "org id must be"},
      {"duplicate org", [](v1::Roster& r) { r.mutable_members(1)->set_org(r.members(0).org()); },
       "org listed twice"},
      {"no endpoint", [](v1::Roster& r) { r.mutable_members(0)->clear_endpoint(); },
       "endpoint is empty"},
      {"bad CA", [](v1::Roster& r) { r.mutable_members(0)->set_ca_cert_pem("junk"); },
       "ca_cert_pem is not a certificate"},
      {"bad key",
       [](v1::Roster& r) { r.mutable_members(0)->mutable_signing_keys(0)->set_public_key("AAAA"); },
       "32-byte Ed25519"},
      {"bad time",
       [](v1::Roster& r) {
         r.mutable_members(0)->mutable_signing_keys(0)->set_valid_from("yesterday");
       },
       "not an RFC 3339 time"},
      {"retired key without an end",
       [](v1::Roster& r) {
         r.mutable_members(0)->mutable_signing_keys(0)->set_status(v1::KEY_STATUS_RETIRED);
       },
       "a retired key needs valid_until"},
      {"stranger party", [](v1::Roster& r) { r.mutable_agreements(0)->add_parties("nobody"); },
       "party \"nobody\" is not a member"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::Roster r = fed_.MakeRoster();
    c.mutate(r);
    EXPECT_STATUS(ValidateRoster(r), absl::StatusCode::kInvalidArgument, c.error);
  }
}

}  // namespace
}  // namespace corridor
