// A whole test federation on disk: steward keys, orgs with CAs, node
// certificates and signing keys, users, signed rosters and node configs in a
// temporary directory, with free loopback ports. Test-only; not thread-safe.
#ifndef CORRIDOR_TESTS_TESTING_FEDERATION_H_
#define CORRIDOR_TESTS_TESTING_FEDERATION_H_

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "client/ctl/certificates.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/crypto/crypto.h"

namespace corridor::testing {

// A fresh directory under $TMPDIR (or /tmp).
std::string MakeTempDir(const std::string& prefix);
// A loopback TCP port that was free a moment ago.
int PickFreePort();
// Whether any regular file below `dir` (recursively) contains `needle`.
bool AnyFileContains(const std::string& dir, const std::string& needle);

// How long the test federation's certificates are valid: ten years, so a
// test may move a node's clock past a year of retention without its
// certificates expiring.
inline constexpr absl::Duration kCertificateValidity = absl::Hours(24 * 365 * 10);

struct TestOrg {
  std::string org;
  v1::OrgKind kind;
  pki::IssuedCertificate ca;
  pki::IssuedCertificate node;
  Ed25519PrivateKey signing = Ed25519PrivateKey::Generate();
  std::string key_id;
  // A key in a PKCS#11 token instead of `signing` (hsm_test): the public key
  // the roster lists, and the YAML lines under `signing_key:` after key_id
  // (e.g. "  pkcs11:\n    module: ...\n"). Unset: `signing` and its file.
  std::optional<Ed25519PublicKey> listed_signing_key;
  std::string signing_key_yaml;
  int port = 0;
  // The address its node listens on and the roster names (loopback, unless a
  // test put the node in a network namespace of its own: netns_test).
  std::string host = "127.0.0.1";
  std::string dir;  // where its files live
  std::string endpoint() const { return host + ":" + std::to_string(port); }
};

class TestFederation {
 public:
  explicit TestFederation(std::string federation = "corridor.test", int stewards = 3,
                          uint32_t threshold = 2);
  // Removes root() and everything under it (node data directories included: a
  // node's files take hundreds of MB), unless CORRIDOR_KEEP_TEST_DIRS is set.
  // Declare the federation before the nodes and processes that use it, so they
  // are stopped first.
  ~TestFederation();
  // The destructor leaves the files in place.
  void KeepFiles() { keep_files_ = true; }
  TestFederation(const TestFederation&) = delete;
  TestFederation& operator=(const TestFederation&) = delete;

  // `host`: the IPv4 address its node listens on, which its certificate and
  // the roster carry.
  TestOrg& AddOrg(const std::string& org, v1::OrgKind kind = v1::ORG_KIND_UNION,
                  const std::string& host = "127.0.0.1");
  TestOrg& org(const std::string& org) { return orgs_.at(org); }

  // The roster of every org added so far, with one agreement between all of them.
  v1::Roster MakeRoster(uint64_t version = 1) const;
  // DSSE JSON signed by the first `signers` stewards.
  std::string Sign(const v1::Roster& roster, int signers) const;

  // Writes <root>/<org>/node.yaml (and roster.json signed by `threshold`
  // stewards) for `org`, with `users` (name → roles) and returns its path.
  std::string WriteNodeConfig(const std::string& org,
                              const std::map<std::string, std::vector<std::string>>& users,
                              uint64_t roster_version = 1);

  // Writes <root>/stewards.yaml (the steward keys and threshold, as `pki
  // federation` writes them: what an auditor checks rosters against) and
  // returns its path.
  std::string WriteStewardsFile() const;

  // Issues a user certificate from `org`'s CA and writes <name>.crt/.key into
  // the org's directory; returns the paths' common prefix (<dir>/<name>).
  std::string IssueUser(const std::string& org, const std::string& name);

  // A certificate (PEM) issued by `issuer_org`'s CA for `spiffe_uri`, whatever
  // it claims: for tests of what a node makes of certificates.
  std::string IssueCertificatePem(const std::string& issuer_org, const std::string& spiffe_uri,
                                  const std::string& common_name = "test");

  // The limits block of every node config written from now on (name → YAML
  // value). Tests get generous call and refusal limits unless they set their own.
  std::map<std::string, std::string> limits = {
      {"peer_probe_interval_seconds", "1"}, {"peer_call_timeout_seconds", "2"},
      {"user_calls_per_second", "1000000"}, {"user_call_burst", "1000000"},
      {"peer_calls_per_second", "1000000"}, {"peer_call_burst", "1000000"},
      {"refusal_budget", "1000000"},        {"max_evidence_transfers", "256"}};

  const std::string& federation() const { return federation_; }
  const std::string& root() const { return root_; }
  const std::vector<Ed25519PrivateKey>& stewards() const { return stewards_; }
  uint32_t threshold() const { return threshold_; }

 private:
  std::string federation_;
  std::string root_;
  bool keep_files_ = false;
  std::vector<Ed25519PrivateKey> stewards_;
  uint32_t threshold_;
  std::map<std::string, TestOrg> orgs_;
  std::vector<std::string> order_;
};

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_FEDERATION_H_
