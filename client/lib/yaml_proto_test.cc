#include "client/lib/yaml_proto.h"

#include "corridor/v1/config.pb.h"
#include "corridor/v1/roster.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

TEST(YamlProto, FillsNestedMessagesMapsListsAndEnums) {
  v1::NodeConfig c;
  ASSERT_OK(ParseYamlToProto(R"(
federation: corridor.example
org: union-sg
limits: {max_message_bytes: 1024}
roster:
  steward_keys:
    - {name: s1, public_key: AAAA}
  threshold: 1
users:
  alice: {roles: [caseworker, Auditor]}
  bob:
    roles: [ROLE_ADMIN]
    suspended: true
)",
                             "node.yaml", &c));
  EXPECT_EQ(c.org(), "union-sg");
  EXPECT_EQ(c.limits().max_message_bytes(), 1024u);
  EXPECT_EQ(c.roster().steward_keys(0).name(), "s1");
  ASSERT_EQ(c.users().at("alice").roles_size(), 2);
  EXPECT_EQ(c.users().at("alice").roles(0), v1::ROLE_CASEWORKER);
  EXPECT_EQ(c.users().at("alice").roles(1), v1::ROLE_AUDITOR);
  EXPECT_EQ(c.users().at("bob").roles(0), v1::ROLE_ADMIN);
  EXPECT_TRUE(c.users().at("bob").suspended());
}

TEST(YamlProto, UnknownKeyNamesFileLineAndPath) {
  v1::NodeConfig c;
  EXPECT_STATUS(ParseYamlToProto("org: x\ntls:\n  cert: a.pem\n", "node.yaml", &c),
                absl::StatusCode::kInvalidArgument, "node.yaml:3: tls.cert: unknown key \"cert\"");
}

TEST(YamlProto, WrongTypesAreErrors) {
  v1::NodeConfig c;
  EXPECT_STATUS(ParseYamlToProto("limits: {max_message_bytes: lots}", "n.yaml", &c),
                absl::StatusCode::kInvalidArgument,
                "limits.max_message_bytes: expected an unsigned integer, got \"lots\"");
  EXPECT_STATUS(ParseYamlToProto("limits: {max_message_bytes: -5}", "n.yaml", &c),
                absl::StatusCode::kInvalidArgument, "expected an unsigned integer");
  EXPECT_STATUS(ParseYamlToProto("users: {a: {suspended: maybe}}", "n.yaml", &c),
                absl::StatusCode::kInvalidArgument, "expected true or false");
  EXPECT_STATUS(ParseYamlToProto("users: {a: {roles: [chef]}}", "n.yaml", &c),
                absl::StatusCode::kInvalidArgument, "unknown value \"chef\" (allowed: caseworker");
  EXPECT_STATUS(ParseYamlToProto("tls: [a, b]", "n.yaml", &c), absl::StatusCode::kInvalidArgument,
                "tls: expected a mapping");
  EXPECT_STATUS(ParseYamlToProto("org: [a]", "n.yaml", &c), absl::StatusCode::kInvalidArgument,
                "org: expected a single value");
  EXPECT_STATUS(ParseYamlToProto("org: x\n  bad: : indent", "n.yaml", &c),
                absl::StatusCode::kInvalidArgument, "not valid YAML");
}

TEST(YamlProto, ProtoToYamlRoundTrips) {
  v1::Roster r;
  r.set_federation("f");
  r.set_version(7);
  auto* m = r.add_members();
  m->set_org("a");
  m->set_kind(v1::ORG_KIND_UNION);
  m->add_signing_keys()->set_status(v1::KEY_STATUS_ACTIVE);
  v1::Roster back;
  ASSERT_OK(ParseYamlToProto(ProtoToYaml(r), "r", &back));
  EXPECT_EQ(back.SerializeAsString(), r.SerializeAsString());
}

TEST(ProtoStrict, RefusesUnknownFieldsAtAnyDepth) {
  v1::Roster r;
  r.set_version(1);
  std::string bytes = r.SerializeAsString();
  v1::Roster parsed;
  ASSERT_OK(ParseProtoStrict(bytes, "roster", &parsed));
  // Field 99, varint 1, at top level.
  std::string with_unknown = bytes + std::string("\x98\x06\x01", 3);
  EXPECT_STATUS(ParseProtoStrict(with_unknown, "roster", &parsed),
                absl::StatusCode::kInvalidArgument, "fields this node does not know");
  // The same inside a member.
  std::string member = std::string("\x0a\x01x", 3) + std::string("\x98\x06\x01", 3);
  std::string nested = bytes + "\x22" + std::string(1, static_cast<char>(member.size())) + member;
  EXPECT_STATUS(ParseProtoStrict(nested, "roster", &parsed), absl::StatusCode::kInvalidArgument,
                "members[0]");
  EXPECT_STATUS(ParseProtoStrict("\xff\xff", "roster", &parsed), absl::StatusCode::kInvalidArgument,
                "not a well-formed");
}

}  // namespace
}  // namespace corridor
