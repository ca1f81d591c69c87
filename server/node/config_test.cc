#include "server/node/config.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  ConfigTest() {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    path_ = fed_.WriteNodeConfig("union-sg", {{"alice", {"caseworker"}}});
    good_ = ReadFileToString(path_).value();
  }
  // Writes `yaml` as the config and loads it.
  absl::StatusOr<v1::NodeConfig> Load(const std::string& yaml) {
    EXPECT_OK(WriteFileAtomically(path_, yaml));
    return LoadNodeConfig(path_);
  }
  std::string Replace(const std::string& from, const std::string& to) {
    EXPECT_NE(good_.find(from), std::string::npos) << from;
    return absl::StrReplaceAll(good_, {{from, to}});
  }
  testing::TestFederation fed_;
  std::string path_;
  std::string good_;
};

TEST_F(ConfigTest, GoodConfigLoadsWithDefaultsAndResolvedPaths) {
  ASSERT_OK_AND_ASSIGN(v1::NodeConfig c, Load(good_));
  EXPECT_EQ(c.org(), "union-sg");
  EXPECT_EQ(c.tls().cert_file(), fed_.org("union-sg").dir + "/node.crt");
  EXPECT_EQ(c.data_dir(), fed_.org("union-sg").dir + "/data");
  EXPECT_EQ(c.limits().max_message_bytes(), kDefaultMaxMessageBytes);
  EXPECT_EQ(c.limits().peer_probe_interval_seconds(), 1u);
  EXPECT_EQ(c.limits().witness_interval_seconds(), kDefaultWitnessIntervalSeconds);
  EXPECT_EQ(c.users().at("alice").roles(0), v1::ROLE_CASEWORKER);
}

TEST_F(ConfigTest, EachKindOfBadConfigHasItsOwnError) {
  struct Case {
    std::string name;
    std::string yaml;
    std::string error;
  };
  const std::vector<Case> cases = {
      {"unknown key", good_ + "colour: blue\n", "unknown key \"colour\""},
      {"unknown nested key", Replace("  cert_file: node.crt", "  cert_fil: node.crt"),
       "tls.cert_fil: unknown key"},
      {"wrong type",
       Replace("peer_probe_interval_seconds: 1", "peer_probe_interval_seconds: often"),
       "limits.peer_probe_interval_seconds: expected an unsigned integer, got \"often\""},
      {"missing org", Replace("org: union-sg\n", ""), "org: is required but missing"},
      {"witness interval too long",
       Replace("peer_probe_interval_seconds: 1",
               "peer_probe_interval_seconds: 1\n  witness_interval_seconds: 3601"),
       "limits.witness_interval_seconds: must be at most 3600"},
      {"missing listen",
       Replace(absl::StrCat("listen: 127.0.0.1:", fed_.org("union-sg").port, "\n"), ""),
       "listen: is required"},
      {"bad listen", Replace(absl::StrCat("127.0.0.1:", fed_.org("union-sg").port), "nowhere"),
       "listen: \"nowhere\" is not host:port"},
      {"missing cert file", Replace("cert_file: node.crt", "cert_file: missing.crt"),
       "tls.cert_file: " + fed_.org("union-sg").dir + "/missing.crt: no such file"},
      {"missing roster", Replace("file: roster.json", "file: nope.json"), "roster.file:"},
      {"bad signing key", Replace("key_file: signing.key", "key_file: node.crt"),
       "not an Ed25519 private key"},
      {"threshold too high", Replace("threshold: 2", "threshold: 9"),
       "roster.threshold: is 9 but only 3 steward keys are configured"},
      {"threshold zero", Replace("threshold: 2", "threshold: 0"),
       "roster.threshold: must be at least 1"},
      {"bad steward key", Replace("public_key: ", "public_key: x"),
       "must be a base64 32-byte Ed25519"},
      {"unknown role", Replace("roles: [caseworker]", "roles: [boss]"),
       "users.alice.roles[0]: unknown value \"boss\""},
      {"no roles", Replace("roles: [caseworker]", "roles: []"),
       "users.alice.roles: lists no roles"},
      {"bad log level", good_ + "log: {level: loud}\n", "log.level: must be one of"},
      {"not yaml", "federation: [unclosed\n", "not valid YAML"},
      {"metrics on a host name", good_ + "metrics: {listen: \"localhost:9464\"}\n",
       "metrics.listen: \"localhost:9464\" is not an IP address and port"},
      {"metrics without a port", good_ + "metrics: {listen: \"127.0.0.1\"}\n",
       "metrics.listen: \"127.0.0.1\" is not an IP address and port"},
      {"metrics on every address", good_ + "metrics: {listen: \"0.0.0.0:9464\"}\n",
       "metrics.listen: \"0.0.0.0:9464\" is not a loopback address"},
      {"metrics on a public IPv6 address", good_ + "metrics: {listen: \"[2001:db8::1]:9464\"}\n",
       "is not a loopback address"},
      {"metrics allowed without an address", good_ + "metrics: {allow_non_loopback: true}\n",
       "metrics.allow_non_loopback: is set but metrics.listen is not"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    auto loaded = Load(c.yaml);
    EXPECT_STATUS(loaded, absl::StatusCode::kInvalidArgument, c.error);
    // Every error names the file.
    EXPECT_NE(loaded.status().message().find(path_), std::string::npos) << loaded.status();
  }
}

// Metrics are off unless asked for; loopback needs no more, another address needs the flag.
TEST_F(ConfigTest, MetricsEndpointIsOffByDefaultAndLoopbackUnlessAllowed) {
  ASSERT_OK_AND_ASSIGN(v1::NodeConfig off, Load(good_));
  EXPECT_EQ(off.metrics().listen(), "");
  for (const std::string listen : {"127.0.0.1:9464", "127.0.0.2:0", "[::1]:9464"}) {
    ASSERT_OK_AND_ASSIGN(v1::NodeConfig c, Load(good_ + "metrics: {listen: \"" + listen + "\"}\n"));
    EXPECT_EQ(c.metrics().listen(), listen);
  }
  ASSERT_OK_AND_ASSIGN(
      v1::NodeConfig open,
      Load(good_ + "metrics: {listen: \"0.0.0.0:9464\", allow_non_loopback: true}\n"));
  EXPECT_TRUE(open.metrics().allow_non_loopback());
}

TEST_F(ConfigTest, MissingConfigFileIsNotFound) {
  EXPECT_STATUS(LoadNodeConfig(path_ + ".nope"), absl::StatusCode::kNotFound, "no such file");
}

}  // namespace
}  // namespace corridor
