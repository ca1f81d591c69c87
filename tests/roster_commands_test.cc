// The stewards' and org admins' roster and key commands, in process through
// ctl::Main, on files in a temporary directory (no node needed): `roster
// new-version`, `add-member`, `remove-member`, `add-key`, `retire-key`,
// `revoke-key`, `revoke-cert`, `add-agreement`, `end-agreement`, `diff`,
// `verify`, `show --stewards`, and `pki signing-key`, `pki user`'s serial,
// `pki revoke`.
//
// Each success path is checked by reading the result back and by signing it
// and verifying it as a node does (VerifySignedRoster with the stewards file
// and threshold 2). Each refusal is checked for exit 1, a message naming the
// cause, and the file left byte for byte as it was.
#include <stdlib.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "client/ctl/ctl.h"
#include "client/ctl/roster_edit.h"
#include "client/ctl/roster_signing.h"
#include "client/lib/pki.h"
#include "client/lib/roster.h"
#include "client/lib/yaml_proto.h"
#include "corridor/v1/config.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "tests/testing/ctl_run.h"

namespace corridor {
namespace {

namespace fs = std::filesystem;

using testing::Ctl;
using testing::CtlRun;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

class RosterCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "corridor-rostercmds-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
    Ok({"pki", "federation", "--federation", "f.test", "--out", P("fed"), "--stewards", "3"});
    for (const char* org : {"union-sg", "ministry-id", "ngo-my"}) {
      Ok({"pki", "org", "--federation", "f.test", "--org", org, "--out", P(org)});
    }
    Ok({"roster", "init", "--federation", "f.test", "--out", P("v1.yaml")});
    AddMember("v1.yaml", "union-sg", "union", 7001);
    AddMember("v1.yaml", "ministry-id", "ministry", 7002);
    Ok({"roster", "add-agreement", "--roster", P("v1.yaml"), "--id", "mou-1", "--parties",
        "union-sg,ministry-id", "--purposes", "case-referral"});
    in_force_ = SignWith("v1.yaml", "v1.json", 2);
  }
  void TearDown() override { fs::remove_all(root_); }

  std::string P(const std::string& name) const { return root_ + "/" + name; }

  CtlRun Ok(const std::vector<std::string>& argv) {
    CtlRun r = Ctl(argv);
    EXPECT_EQ(r.code, 0) << r;
    return r;
  }

  void AddMember(const std::string& source, const std::string& org, const std::string& kind,
                 int port) {
    Ok({"roster", "add-member", "--roster", P(source), "--org", org, "--name", org + " office",
        "--country", "SG", "--kind", kind, "--endpoint", absl::StrCat("127.0.0.1:", port),
        "--org-dir", P(org)});
  }

  // Signs `source` with the first `n` stewards into `out`; returns the path.
  std::string SignWith(const std::string& source, const std::string& out, int n) {
    Ok({"roster", "sign", "--in", P(source), "--key", P("fed/steward-1.key"), "--key-name",
        "steward-1", "--out", P(out)});
    for (int i = 2; i <= n; ++i) {
      Ok({"roster", "sign", "--in", P(out), "--key", P(absl::StrCat("fed/steward-", i, ".key")),
          "--key-name", absl::StrCat("steward-", i), "--out", P(out)});
    }
    return P(out);
  }

  // What a node configured with fed/stewards.yaml and threshold 2 makes of `json_path`.
  absl::StatusOr<VerifiedRoster> NodeVerifies(const std::string& json_path) {
    auto stewards = roster_edit::LoadStewards(P("fed/stewards.yaml"));
    if (!stewards.ok()) return stewards.status();
    return VerifySignedRoster(Read(json_path), stewards->keys, 2, "f.test");
  }

  v1::Roster Source(const std::string& name) {
    v1::Roster r;
    EXPECT_TRUE(LoadYamlFileToProto(P(name), &r).ok());
    return r;
  }

  // Starts v2.yaml from the roster in force.
  void NewVersion() {
    Ok({"roster", "new-version", "--from", in_force_, "--out", P("v2.yaml"), "--stewards",
        P("fed/stewards.yaml"), "--threshold", "2"});
  }

  // Runs `argv`, which must be refused (exit 1) naming `cause`, leaving `file` as it was.
  void ExpectRefused(const std::vector<std::string>& argv, const std::string& file,
                     const std::string& cause) {
    const bool existed = fs::exists(file);
    const std::string before = existed ? Read(file) : "";
    CtlRun r = Ctl(argv);
    EXPECT_EQ(r.code, 1) << r;
    EXPECT_TRUE(absl::StrContains(r.err, cause)) << "expected \"" << cause << "\" in:\n" << r;
    EXPECT_EQ(fs::exists(file), existed) << file;
    if (existed) {
      EXPECT_EQ(Read(file), before) << file << " changed by a refused command";
    }
  }

  // The signed roster `json_path` with its envelope changed by `change`, written to `out`.
  std::string Tampered(const std::string& json_path, const std::string& out,
                       const std::function<void(v1::Envelope&)>& change) {
    auto env = ParseSignedRosterEnvelope(Read(json_path));
    EXPECT_TRUE(env.ok()) << env.status();
    change(*env);
    std::string json;
    EXPECT_TRUE(google::protobuf::util::MessageToJsonString(*env, &json).ok());
    Write(P(out), json);
    return P(out);
  }

  std::string root_;
  std::string in_force_;
};

TEST_F(RosterCommandsTest, NewVersionCopiesTheRosterInForceOneVersionOn) {
  CtlRun r = Ctl({"roster", "new-version", "--from", in_force_, "--out", P("v2.yaml"), "--stewards",
                  P("fed/stewards.yaml"), "--threshold", "2"});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "signed by steward-1, steward-2")) << r;
  v1::Roster v1 = Source("v1.yaml"), v2 = Source("v2.yaml");
  EXPECT_EQ(v2.version(), v1.version() + 1);
  EXPECT_EQ(v2.members_size(), 2);
  EXPECT_EQ(v2.agreements_size(), 1);
  EXPECT_FALSE(absl::StrContains(Read(P("v2.yaml")), "signature"));
  EXPECT_TRUE(roster_edit::DescribeChanges(v1, v2).size() == 1);  // the version only
  ASSERT_TRUE(NodeVerifies(SignWith("v2.yaml", "v2.json", 2)).ok());
  // Without --stewards it says the signatures were not checked.
  r = Ctl({"roster", "new-version", "--from", in_force_, "--out", P("v2b.yaml")});
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_TRUE(absl::StrContains(r.out, "not checked")) << r;
}

TEST_F(RosterCommandsTest, NewVersionRefusals) {
  NewVersion();
  ExpectRefused({"roster", "new-version", "--from", in_force_, "--out", P("v2.yaml")}, P("v2.yaml"),
                "already exists");
  ExpectRefused({"roster", "new-version", "--from", P("v1.yaml"), "--out", P("x.yaml")},
                P("x.yaml"), "is not a signed roster");
  const std::string one = SignWith("v1.yaml", "one.json", 1);
  ExpectRefused({"roster", "new-version", "--from", one, "--out", P("x.yaml"), "--stewards",
                 P("fed/stewards.yaml"), "--threshold", "2"},
                P("x.yaml"), "1 valid steward signature");
  ExpectRefused({"roster", "new-version", "--from", in_force_, "--out", P("x.yaml"), "--stewards",
                 P("fed/stewards.yaml")},
                P("x.yaml"), "--threshold");
}

TEST_F(RosterCommandsTest, AddMemberRefusesDuplicatesAndBadInput) {
  const std::string src = P("v1.yaml");
  auto add = [&](const std::string& org, const std::string& country, const std::string& kind,
                 const std::string& endpoint, const std::string& dir) {
    return std::vector<std::string>{
        "roster",    "add-member", "--roster", src,  "--org",      org,      "--name",    "X",
        "--country", country,      "--kind",   kind, "--endpoint", endpoint, "--org-dir", dir};
  };
  ExpectRefused(add("union-sg", "SG", "union", "h:1", P("ngo-my")), src, "already in the roster");
  ExpectRefused(add("ngo-my", "Singapore", "ngo", "h:1", P("ngo-my")), src, "two-letter");
  ExpectRefused(add("ngo-my", "S1", "ngo", "h:1", P("ngo-my")), src, "two-letter");
  ExpectRefused(add("ngo-my", "MY", "ngo", "nohost", P("ngo-my")), src, "HOST:PORT");
  ExpectRefused(add("ngo-my", "MY", "ngo", "h:99999", P("ngo-my")), src, "HOST:PORT");
  ExpectRefused(add("ngo-my", "MY", "charity", "h:1", P("ngo-my")), src, "--kind");
  ExpectRefused(add("NGO_MY", "MY", "ngo", "h:1", P("ngo-my")), src, "org id");
  ExpectRefused(add("ngo-my", "MY", "ngo", "h:1", P("missing")), src, "missing");
  // Another org's CA, or another org's signing key.
  ASSERT_TRUE(fs::create_directory(P("mixed")));
  fs::copy_file(P("union-sg/ca.crt"), P("mixed/ca.crt"));
  fs::copy_file(P("ngo-my/signing.pub"), P("mixed/signing.pub"));
  fs::copy_file(P("ngo-my/signing.keyid"), P("mixed/signing.keyid"));
  ExpectRefused(add("ngo-my", "MY", "ngo", "h:1", P("mixed")), src, "already union-sg's");
  fs::copy_file(P("ngo-my/ca.crt"), P("mixed/ca2.crt"));
  fs::rename(P("mixed/ca2.crt"), P("mixed/ca.crt"));
  fs::copy_file(P("union-sg/signing.pub"), P("mixed/signing.pub"),
                fs::copy_options::overwrite_existing);
  ExpectRefused(add("ngo-my", "MY", "ngo", "h:1", P("mixed")), src, "union-sg's key union-sg-1");
  // And the good one goes in, lower-case country and all.
  CtlRun r = Ctl(add("ngo-my", "my", "ngo", "ngo.example:7443", P("ngo-my")));
  ASSERT_EQ(r.code, 0) << r;
  EXPECT_EQ(Source("v1.yaml").members(2).country(), "MY");
  auto node = NodeVerifies(SignWith("v1.yaml", "v1b.json", 2));
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->roster.members(2).org(), "ngo-my");
  EXPECT_EQ(node->roster.members(2).signing_keys(0).key_id(), "ngo-my-1");
}

TEST_F(RosterCommandsTest, RemoveMemberOnceItsAgreementsAreEnded) {
  NewVersion();
  const std::string src = P("v2.yaml");
  ExpectRefused({"roster", "remove-member", "--roster", src, "--org", "ngo-my"}, src,
                "org \"ngo-my\" is not in this roster");
  ExpectRefused({"roster", "remove-member", "--roster", src, "--org", "ministry-id"}, src,
                "party to agreement(s) mou-1; end them first");
  ExpectRefused({"roster", "end-agreement", "--roster", src, "--id", "mou-9"}, src,
                "agreement \"mou-9\" is not in this roster (its agreements: mou-1)");
  Ok({"roster", "end-agreement", "--roster", src, "--id", "mou-1"});
  Ok({"roster", "remove-member", "--roster", src, "--org", "ministry-id"});
  v1::Roster v2 = Source("v2.yaml");
  ASSERT_EQ(v2.members_size(), 1);
  EXPECT_EQ(v2.members(0).org(), "union-sg");
  EXPECT_EQ(v2.agreements_size(), 0);
  auto node = NodeVerifies(SignWith("v2.yaml", "v2.json", 2));
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->roster.version(), 2u);
  EXPECT_EQ(node->roster.members_size(), 1);
}

TEST_F(RosterCommandsTest, AddAgreementRefusals) {
  const std::string src = P("v1.yaml");
  auto add = [&](const std::string& id, const std::string& parties, const std::string& purposes) {
    return std::vector<std::string>{"roster", "add-agreement", "--roster", src,          "--id",
                                    id,       "--parties",     parties,    "--purposes", purposes};
  };
  ExpectRefused(add("mou-1", "union-sg,ministry-id", "x"), src, "already in the roster");
  ExpectRefused(add("mou-2", "union-sg,ngo-my", "x"), src, "party \"ngo-my\" is not a member");
  ExpectRefused(add("mou-2", "union-sg", "x"), src, "at least two parties");
  ExpectRefused(add("mou-2", "union-sg,union-sg", "x"), src, "listed twice");
  ExpectRefused(add("mou-2", "union-sg,ministry-id", ","), src, "at least one purpose");
}

TEST_F(RosterCommandsTest, KeyRotationAddRetireRevoke) {
  NewVersion();
  const std::string src = P("v2.yaml");
  // pki signing-key next to the org's directory: the next free id is union-sg-2.
  CtlRun r = Ok({"pki", "signing-key", "--org", "union-sg", "--out", P("union-sg/key-2")});
  EXPECT_TRUE(absl::StrContains(r.out, "signing key union-sg-2")) << r;
  Ok({"roster", "add-key", "--roster", src, "--org", "union-sg", "--key-dir", P("union-sg/key-2")});
  Ok({"roster", "retire-key", "--roster", src, "--org", "union-sg", "--key-id", "union-sg-1",
      "--valid-until", "2030-01-02T03:04:05Z"});
  Ok({"pki", "signing-key", "--org", "ministry-id", "--out", P("ministry-id/k2"), "--key-id",
      "ministry-id-new"});
  Ok({"roster", "add-key", "--roster", src, "--org", "ministry-id", "--key-dir",
      P("ministry-id/k2")});
  Ok({"roster", "revoke-key", "--roster", src, "--org", "ministry-id", "--key-id",
      "ministry-id-1"});
  auto node = NodeVerifies(SignWith("v2.yaml", "v2.json", 2));
  ASSERT_TRUE(node.ok()) << node.status();
  const v1::Member& u = node->roster.members(0);
  ASSERT_EQ(u.signing_keys_size(), 2);
  EXPECT_EQ(u.signing_keys(0).status(), v1::KEY_STATUS_RETIRED);
  EXPECT_EQ(u.signing_keys(0).valid_until(), "2030-01-02T03:04:05+00:00");
  EXPECT_EQ(u.signing_keys(1).key_id(), "union-sg-2");
  EXPECT_EQ(u.signing_keys(1).status(), v1::KEY_STATUS_ACTIVE);
  EXPECT_EQ(u.signing_keys(1).public_key() + "\n", Read(P("union-sg/key-2/signing.pub")));
  const v1::Member& m = node->roster.members(1);
  EXPECT_EQ(m.signing_keys(0).status(), v1::KEY_STATUS_REVOKED);
  EXPECT_EQ(m.signing_keys(1).key_id(), "ministry-id-new");
  // Checkpoints verify with the active key, then the retired one; never the revoked one.
  auto verifiers = LedgerVerifiersFromRoster(node->roster, "union-sg");
  ASSERT_TRUE(verifiers.ok());
  EXPECT_EQ(verifiers->size(), 2u);
  verifiers = LedgerVerifiersFromRoster(node->roster, "ministry-id");
  ASSERT_TRUE(verifiers.ok());
  EXPECT_EQ(verifiers->size(), 1u);
}

TEST_F(RosterCommandsTest, RetireKeyDefaultsToThirtyDaysOfGrace) {
  const std::string src = P("v1.yaml");
  Ok({"roster", "add-key", "--roster", src, "--org", "union-sg", "--key-id", "union-sg-2",
      "--public-key", Base64Encode(Ed25519PrivateKey::Generate().public_key().raw())});
  const absl::Time before = absl::Now();
  Ok({"roster", "retire-key", "--roster", src, "--org", "union-sg", "--key-id", "union-sg-1"});
  absl::Time until;
  std::string err;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full,
                              Source("v1.yaml").members(0).signing_keys(0).valid_until(), &until,
                              &err));
  EXPECT_GE(until, before + roster_edit::kDefaultRetiredKeyGrace - absl::Seconds(1));
  EXPECT_LE(until, absl::Now() + roster_edit::kDefaultRetiredKeyGrace + absl::Seconds(1));
}

TEST_F(RosterCommandsTest, KeyRefusals) {
  const std::string src = P("v1.yaml");
  const std::string fresh = Base64Encode(Ed25519PrivateKey::Generate().public_key().raw());
  auto add = [&](const std::string& org, const std::string& id, const std::string& pub) {
    return std::vector<std::string>{"roster",   "add-key", "--roster",     src, "--org", org,
                                    "--key-id", id,        "--public-key", pub};
  };
  auto key = [&](const std::string& verb, const std::string& org, const std::string& id) {
    return std::vector<std::string>{"roster", verb, "--roster", src, "--org", org, "--key-id", id};
  };
  ExpectRefused(add("ngo-my", "k", fresh), src, "org \"ngo-my\" is not in this roster");
  ExpectRefused(add("union-sg", "union-sg-1", fresh), src, "already has a signing key");
  ExpectRefused(add("union-sg", "k2", Read(P("ministry-id/signing.pub")).substr(0, 44)), src,
                "ministry-id's key ministry-id-1");
  ExpectRefused(add("union-sg", "k2", "not-a-key"), src, "base64 32-byte Ed25519");
  ExpectRefused({"roster", "add-key", "--roster", src, "--org", "union-sg"}, src, "--key-dir");
  ExpectRefused(key("retire-key", "union-sg", "nope"), src, "has no signing key \"nope\"");
  ExpectRefused(key("revoke-key", "ngo-my", "x"), src, "not in this roster");
  ExpectRefused(key("retire-key", "union-sg", "union-sg-1"), src, "last active signing key");
  ExpectRefused(key("revoke-key", "union-sg", "union-sg-1"), src, "last active signing key");
  ExpectRefused({"roster", "retire-key", "--roster", src, "--org", "union-sg", "--key-id",
                 "union-sg-1", "--valid-until", "next week"},
                src, "not an RFC 3339 time");
  Ok(add("union-sg", "union-sg-2", fresh));
  Ok(key("revoke-key", "union-sg", "union-sg-1"));
  ExpectRefused(key("revoke-key", "union-sg", "union-sg-1"), src, "already revoked");
  ExpectRefused(key("retire-key", "union-sg", "union-sg-1"), src, "is revoked");
  // The remaining key is now the last active one.
  ExpectRefused(key("retire-key", "union-sg", "union-sg-2"), src, "last active signing key");
  // Both ways of naming the new key at once: which one is meant?
  ExpectRefused({"roster", "add-key", "--roster", src, "--org", "ministry-id", "--key-dir",
                 P("union-sg"), "--key-id", "m2", "--public-key", fresh},
                src, "not both");
  // A key retired already keeps its end date unless one is given.
  const std::string other = Base64Encode(Ed25519PrivateKey::Generate().public_key().raw());
  Ok(add("ministry-id", "ministry-id-2", other));
  Ok(key("retire-key", "ministry-id", "ministry-id-1"));
  ExpectRefused(key("retire-key", "ministry-id", "ministry-id-1"), src, "already retired");
  Ok({"roster", "retire-key", "--roster", src, "--org", "ministry-id", "--key-id", "ministry-id-1",
      "--valid-until", "2030-01-01T00:00:00Z"});
}

TEST_F(RosterCommandsTest, PkiUserSerialIsWhatRevokeCertTakesAndTheNodeCompares) {
  NewVersion();
  const std::string src = P("v2.yaml");
  CtlRun r = Ok({"pki", "user", "--federation", "f.test", "--org", "union-sg", "--org-dir",
                 P("union-sg"), "--name", "cw", "--out", P("users")});
  const std::string cert_serial =
      pki::InspectCertificate(Read(P("users/cw.crt"))).value().serial_hex;
  EXPECT_TRUE(absl::StrContains(r.out, "serial " + cert_serial)) << r;
  Ok({"roster", "revoke-cert", "--roster", src, "--org", "union-sg", "--serial", cert_serial});
  // The same certificate by file, or its serial written another way, is a duplicate.
  ExpectRefused(
      {"roster", "revoke-cert", "--roster", src, "--org", "union-sg", "--cert", P("users/cw.crt")},
      src, "already revoked");
  std::string colons;
  for (size_t i = 0; i < cert_serial.size(); ++i) {
    if (i && i % 2 == 0) colons += ':';
    colons += absl::ascii_toupper(cert_serial[i]);
  }
  ExpectRefused({"roster", "revoke-cert", "--roster", src, "--org", "union-sg", "--serial", colons},
                src, "already revoked");
  // --cert of another user works too; the roster holds the normalized serial.
  Ok({"pki", "user", "--federation", "f.test", "--org", "union-sg", "--org-dir", P("union-sg"),
      "--name", "cw2", "--out", P("users")});
  Ok({"roster", "revoke-cert", "--roster", src, "--org", "union-sg", "--cert", P("users/cw2.crt")});
  auto node = NodeVerifies(SignWith("v2.yaml", "v2.json", 2));
  ASSERT_TRUE(node.ok()) << node.status();
  const v1::Member& u = node->roster.members(0);
  ASSERT_EQ(u.revoked_serials_size(), 2);
  EXPECT_EQ(u.revoked_serials(0), cert_serial);
  EXPECT_EQ(u.revoked_serials(1),
            pki::InspectCertificate(Read(P("users/cw2.crt"))).value().serial_hex);
}

TEST_F(RosterCommandsTest, RevokeCertRefusals) {
  const std::string src = P("v1.yaml");
  Ok({"pki", "user", "--federation", "f.test", "--org", "union-sg", "--org-dir", P("union-sg"),
      "--name", "cw", "--out", P("users")});
  auto revoke = [&](const std::string& org, const std::string& opt, const std::string& value) {
    return std::vector<std::string>{"roster", "revoke-cert", "--roster", src,
                                    "--org",  org,           "--" + opt, value};
  };
  ExpectRefused(revoke("ngo-my", "serial", "0a1b"), src, "not in this roster");
  ExpectRefused(revoke("union-sg", "serial", "12g4"), src, "not a hexadecimal");
  ExpectRefused(revoke("union-sg", "serial", ":"), src, "no hexadecimal digits");
  ExpectRefused(revoke("ministry-id", "cert", P("users/cw.crt")), src, "belongs to union-sg");
  ExpectRefused(revoke("union-sg", "cert", P("fed/stewards.yaml")), src, "not a certificate");
  ExpectRefused({"roster", "revoke-cert", "--roster", src, "--org", "union-sg"}, src,
                "either --serial");
}

TEST_F(RosterCommandsTest, PkiRevokePrintsLinesTheRosterAndConfigTake) {
  NewVersion();
  Ok({"pki", "user", "--federation", "f.test", "--org", "union-sg", "--org-dir", P("union-sg"),
      "--name", "cw", "--out", P("users")});
  CtlRun r = Ok({"pki", "revoke", "--cert", P("users/cw.crt")});
  const std::string serial = pki::InspectCertificate(Read(P("users/cw.crt"))).value().serial_hex;
  const std::string roster_line = absl::StrCat(
      "corridorctl roster revoke-cert --roster ROSTER.yaml --org union-sg --serial ", serial);
  EXPECT_TRUE(absl::StrContains(r.out, roster_line)) << r;
  EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("revoked_serials: [\"", serial, "\"]"))) << r;
  // The printed command, run, does what it says.
  Ok({"roster", "revoke-cert", "--roster", P("v2.yaml"), "--org", "union-sg", "--serial", serial});
  EXPECT_EQ(Source("v2.yaml").members(0).revoked_serials(0), serial);
  // The printed config lines parse as a node's tls: section.
  const std::string cfg = r.out.substr(r.out.find("  tls:"));
  v1::NodeConfig config;
  ASSERT_TRUE(
      ParseYamlToProto(absl::StrReplaceAll(cfg, {{"\n  ", "\n"}}).substr(2), "printed", &config)
          .ok())
      << cfg;
  EXPECT_EQ(config.tls().revoked_serials(0), serial);
}

TEST_F(RosterCommandsTest, PkiSigningKeyMakesOnlyASigningKeyAndNeverOverwrites) {
  const std::string dir = P("union-sg/k");
  Ok({"pki", "signing-key", "--org", "union-sg", "--out", dir});
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"signing.key", "signing.keyid", "signing.pub"}));
  EXPECT_EQ(Read(dir + "/signing.keyid"), "union-sg-2\n");
  struct stat st;
  ASSERT_EQ(stat((dir + "/signing.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_TRUE(Ed25519PrivateKey::FromPemFile(dir + "/signing.key").ok());
  // Into the org's own directory: every existing file stays as it was, nothing is written.
  std::map<std::string, std::string> before;
  for (const auto& e : fs::directory_iterator(P("union-sg")))
    if (e.is_regular_file()) before[e.path().string()] = Read(e.path().string());
  ExpectRefused({"pki", "signing-key", "--org", "union-sg", "--out", P("union-sg")},
                P("union-sg/signing.key"), "already exists");
  ExpectRefused({"pki", "signing-key", "--org", "union-sg", "--out", dir}, dir + "/signing.pub",
                "already exists");
  for (const auto& [path, text] : before) EXPECT_EQ(Read(path), text) << path;
  // The next one counts on; an explicit id is taken as given.
  Ok({"pki", "signing-key", "--org", "union-sg", "--out", P("union-sg/k3")});
  EXPECT_EQ(Read(P("union-sg/k3/signing.keyid")), "union-sg-3\n");
  Ok({"pki", "signing-key", "--org", "union-sg", "--out", P("elsewhere"), "--key-id", "usg-2027"});
  EXPECT_EQ(Read(P("elsewhere/signing.keyid")), "usg-2027\n");
  for (const char* never : {"ca.key", "ca.crt", "master.key", "node.key", "node.crt"}) {
    EXPECT_FALSE(fs::exists(P(std::string("elsewhere/") + never))) << never;
    EXPECT_FALSE(fs::exists(dir + "/" + never)) << never;
  }
}

TEST_F(RosterCommandsTest, DiffNamesEveryKindOfChange) {
  NewVersion();
  const std::string src = P("v2.yaml");
  Ok({"roster", "end-agreement", "--roster", src, "--id", "mou-1"});
  AddMember("v2.yaml", "ngo-my", "ngo", 7003);
  Ok({"roster", "add-agreement", "--roster", src, "--id", "mou-2", "--parties", "union-sg,ngo-my",
      "--purposes", "fee-recovery"});
  Ok({"roster", "remove-member", "--roster", src, "--org", "ministry-id"});
  Ok({"pki", "signing-key", "--org", "union-sg", "--out", P("union-sg/k2")});
  Ok({"roster", "add-key", "--roster", src, "--org", "union-sg", "--key-dir", P("union-sg/k2")});
  Ok({"roster", "retire-key", "--roster", src, "--org", "union-sg", "--key-id", "union-sg-1",
      "--valid-until", "2030-01-01T00:00:00Z"});
  Ok({"roster", "revoke-cert", "--roster", src, "--org", "union-sg", "--serial", "0A:1B"});
  auto node = NodeVerifies(SignWith("v2.yaml", "v2.json", 2));
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_EQ(node->roster.agreements(0).id(), "mou-2");
  // A signed roster compares like its source: the same lines after the heading.
  const std::string from_source = Ok({"roster", "diff", in_force_, src}).out;
  const std::string from_signed = Ok({"roster", "diff", in_force_, P("v2.json")}).out;
  EXPECT_EQ(from_signed.substr(from_signed.find(":\n")),
            from_source.substr(from_source.find(":\n")));
  CtlRun r = Ok({"roster", "diff", in_force_, src});
  for (const char* line : {
           "version 1 → 2",
           "member added: ngo-my (ngo-my office, SG, ngo) at 127.0.0.1:7003",
           "member removed: ministry-id",
           "union-sg: signing key union-sg-2 (active) added",
           "union-sg: signing key union-sg-1 active → retired (valid until 2030-01-01",
           "union-sg: certificate serial a1b revoked",
           "agreement added: mou-2: parties union-sg, ngo-my; purposes fee-recovery",
           "agreement ended: mou-1: parties union-sg, ministry-id; purposes case-referral",
       }) {
    EXPECT_TRUE(absl::StrContains(r.out, line)) << "no \"" << line << "\" in\n" << r;
  }
  // Member fields, revocation of a key, an agreement changed in place.
  v1::Roster before = Source("v2.yaml"), after = before;
  v1::Member& u = *after.mutable_members(0);
  u.set_name("Union legal desk");
  u.set_endpoint("union.example:7443");
  u.set_country("MY");
  u.set_kind(v1::ORG_KIND_NGO);
  u.set_ca_cert_pem(Read(P("ministry-id/ca.crt")));
  u.mutable_signing_keys(1)->set_status(v1::KEY_STATUS_REVOKED);
  u.clear_revoked_serials();
  after.mutable_agreements(0)->add_purposes("case-referral");
  after.mutable_agreements(0)->set_title("MoU");
  Write(P("after.yaml"), ProtoToYaml(after));
  r = Ok({"roster", "diff", src, P("after.yaml")});
  EXPECT_FALSE(absl::StrContains(r.out, "version 2 →")) << r;
  for (const char* line : {
           "union-sg: name \"union-sg office\" → \"Union legal desk\"",
           "union-sg: endpoint 127.0.0.1:7001 → union.example:7443",
           "union-sg: country SG → MY",
           "union-sg: kind union → ngo",
           "union-sg: CA certificate replaced",
           "union-sg: signing key union-sg-2 active → revoked",
           "union-sg: revocation of certificate serial a1b withdrawn",
           "agreement mou-2: purposes fee-recovery → fee-recovery, case-referral",
           "agreement mou-2: title \"\" → \"MoU\"",
       }) {
    EXPECT_TRUE(absl::StrContains(r.out, line)) << "no \"" << line << "\" in\n" << r;
  }
  r = Ok({"roster", "diff", src, src});
  EXPECT_TRUE(absl::StrContains(r.out, "no changes")) << r;
  // An older version than the one compared with is called out.
  r = Ok({"roster", "diff", src, in_force_});
  EXPECT_TRUE(absl::StrContains(r.out, "not newer")) << r;
  r = Ctl({"roster", "diff", src});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "give two rosters")) << r;
}

TEST_F(RosterCommandsTest, VerifyChecksSignaturesAndThresholdOffline) {
  const std::string stewards = P("fed/stewards.yaml");
  CtlRun r =
      Ok({"roster", "verify", "--in", in_force_, "--stewards", stewards, "--threshold", "2"});
  EXPECT_TRUE(absl::StrContains(r.out,
                                "is valid; signatures checked: signed by steward-1, "
                                "steward-2 (2 of 3 stewards; 2 required)"))
      << r;
  auto refused = [&](const std::string& in, const std::string& file, const std::string& cause,
                     const std::string& threshold = "2") {
    CtlRun v = Ctl({"roster", "verify", "--in", in, "--stewards", file, "--threshold", threshold});
    EXPECT_EQ(v.code, 1) << v;
    EXPECT_TRUE(absl::StrContains(v.err, cause)) << "expected \"" << cause << "\" in\n" << v;
  };
  refused(in_force_, stewards,
          "2 valid steward signature(s) (steward-1, steward-2); this node "
          "requires 3",
          "3");
  refused(SignWith("v1.yaml", "one.json", 1), stewards, "1 valid steward signature(s)");
  // Keys of another federation's stewards.
  Ok({"pki", "federation", "--federation", "other", "--out", P("other"), "--stewards", "3"});
  refused(in_force_, P("other/stewards.yaml"), "0 valid steward signature(s)");
  // A signature stripped, or one made to look like another steward's.
  refused(Tampered(in_force_, "stripped.json",
                   [](v1::Envelope& e) { e.mutable_signatures()->RemoveLast(); }),
          stewards, "1 valid steward signature(s)");
  refused(Tampered(in_force_, "relabelled.json",
                   [](v1::Envelope& e) { e.mutable_signatures(1)->set_keyid("steward-3"); }),
          stewards, "1 valid steward signature(s)");
  // The payload changed after signing (a version bumped by hand).
  refused(Tampered(in_force_, "changed.json",
                   [](v1::Envelope& e) {
                     v1::Roster r;
                     ASSERT_TRUE(r.ParseFromString(e.payload()));
                     r.set_version(9);
                     e.set_payload(r.SerializeAsString());
                   }),
          stewards, "0 valid steward signature(s)");
  // Signed for a different federation than the one asked for.
  CtlRun f = Ctl({"roster", "verify", "--in", in_force_, "--stewards", stewards, "--threshold", "2",
                  "--federation", "g.test"});
  EXPECT_EQ(f.code, 1) << f;
  EXPECT_TRUE(absl::StrContains(f.err, "federation \"f.test\"")) << f;
  // Not even a signed roster.
  refused(P("v1.yaml"), stewards, "signed roster");
}

TEST_F(RosterCommandsTest, VerifyTakesTheThresholdFromTheStewardsFileOrAsksForIt) {
  const std::string stewards = Read(P("fed/stewards.yaml"));
  // A node config's roster: section carries its threshold.
  Write(P("section.yaml"), "file: roster.json\nthreshold: 3\n" + stewards);
  CtlRun r = Ctl({"roster", "verify", "--in", in_force_, "--stewards", P("section.yaml")});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "requires 3")) << r;
  Write(P("node.yaml"), "federation: f.test\norg: union-sg\nroster:\n  threshold: 2\n" +
                            absl::StrReplaceAll(stewards, {{"\n", "\n  "}}).insert(0, "  "));
  r = Ctl({"roster", "verify", "--in", in_force_, "--stewards", P("node.yaml")});
  EXPECT_EQ(r.code, 0) << r;
  r = Ctl({"roster", "verify", "--in", in_force_, "--stewards", P("fed/stewards.yaml")});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "gives no threshold: pass --threshold N")) << r;
  Write(P("bad.yaml"), "steward_keys:\n  - {name: s, public_key: AAAA}\n");
  r = Ctl({"roster", "verify", "--in", in_force_, "--stewards", P("bad.yaml"), "--threshold", "1"});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "base64 32-byte Ed25519 public_key")) << r;
}

TEST_F(RosterCommandsTest, ShowSaysWhetherSignaturesWereChecked) {
  CtlRun r = Ok({"roster", "show", "--in", in_force_});
  EXPECT_TRUE(absl::StrContains(r.out, "signatures not checked")) << r;
  r = Ok({"roster", "show", "--in", in_force_, "--stewards", P("fed/stewards.yaml"), "--threshold",
          "2"});
  EXPECT_TRUE(absl::StrContains(r.out, "signatures checked: signed by steward-1, steward-2")) << r;
  EXPECT_FALSE(absl::StrContains(r.out, "not checked")) << r;
  r = Ctl({"roster", "show", "--in", SignWith("v1.yaml", "one.json", 1), "--stewards",
           P("fed/stewards.yaml"), "--threshold", "2"});
  EXPECT_EQ(r.code, 1) << r;
  EXPECT_TRUE(absl::StrContains(r.err, "1 valid steward signature(s) (steward-1)")) << r;
}

TEST_F(RosterCommandsTest, PkiFederationHintHasNoDoubledSlash) {
  CtlRun r = Ok({"pki", "federation", "--federation", "g.test", "--out", P("g") + "/"});
  EXPECT_TRUE(absl::StrContains(r.out, P("g") + "/stewards.yaml")) << r;
  EXPECT_FALSE(absl::StrContains(r.out, "//")) << r;
}

}  // namespace
}  // namespace corridor
