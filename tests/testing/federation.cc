#include "tests/testing/federation.h"

#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/ctl/roster_signing.h"
#include "client/lib/roster.h"

namespace corridor::testing {
namespace {

void WriteOrDie(const std::string& path, const std::string& data, int mode = 0600) {
  if (!WriteFileAtomically(path, data, mode).ok()) throw std::runtime_error("cannot write " + path);
}

}  // namespace

std::string MakeTempDir(const std::string& prefix) {
  const char* base = getenv("TMPDIR");
  std::string tmpl = absl::StrCat(base ? base : "/tmp", "/", prefix, "-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  return tmpl;
}

bool AnyFileContains(const std::string& dir, const std::string& needle) {
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    std::string content = ReadFileToString(e.path().string()).value_or("");
    if (content.find(needle) != std::string::npos) return true;
  }
  return false;
}

int PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

TestFederation::TestFederation(std::string federation, int stewards, uint32_t threshold)
    : federation_(std::move(federation)),
      root_(MakeTempDir("corridor-fed")),
      threshold_(threshold) {
  for (int i = 0; i < stewards; ++i) stewards_.push_back(Ed25519PrivateKey::Generate());
}

TestOrg& TestFederation::AddOrg(const std::string& org, v1::OrgKind kind, const std::string& host) {
  TestOrg o;
  o.org = org;
  o.kind = kind;
  o.host = host;
  pki::CaOptions ca_opts;
  ca_opts.federation = federation_;
  ca_opts.org = org;
  ca_opts.common_name = org + " CA";
  ca_opts.validity = kCertificateValidity + absl::Hours(24);
  o.ca = pki::CreateOrgCa(ca_opts).value();
  pki::LeafOptions leaf;
  leaf.spiffe_uri = pki::NodeSpiffeUri(federation_, org);
  leaf.common_name = org + " node";
  leaf.dns_names = {"localhost"};
  leaf.ip_addresses = {"127.0.0.1"};
  if (host != "127.0.0.1") leaf.ip_addresses.push_back(host);
  leaf.server_auth = true;
  leaf.validity = kCertificateValidity;
  o.node = pki::IssueLeaf(o.ca, leaf).value();
  o.key_id = org + "-1";
  o.port = PickFreePort();
  o.dir = absl::StrCat(root_, "/", org);
  mkdir(o.dir.c_str(), 0700);
  WriteOrDie(o.dir + "/ca.crt", o.ca.cert_pem, 0644);
  WriteOrDie(o.dir + "/node.crt", o.node.cert_pem, 0644);
  WriteOrDie(o.dir + "/node.key", o.node.key_pem);
  WriteOrDie(o.dir + "/signing.key", o.signing.ToPem());
  WriteOrDie(o.dir + "/master.key", Base64Encode(RandomBytes(32)) + "\n");
  order_.push_back(org);
  return orgs_[org] = std::move(o);
}

v1::Roster TestFederation::MakeRoster(uint64_t version) const {
  v1::Roster r;
  r.set_federation(federation_);
  r.set_version(version);
  r.set_issued_at("2026-01-01T00:00:00Z");
  for (const std::string& name : order_) {
    const TestOrg& o = orgs_.at(name);
    v1::Member* m = r.add_members();
    m->set_org(o.org);
    m->set_name(o.org + " (test)");
    m->set_country("SG");
    m->set_kind(o.kind);
    m->set_endpoint(o.endpoint());
    m->set_ca_cert_pem(o.ca.cert_pem);
    v1::SigningKey* k = m->add_signing_keys();
    k->set_key_id(o.key_id);
    k->set_public_key(Base64Encode(
        (o.listed_signing_key ? *o.listed_signing_key : o.signing.public_key()).raw()));
    k->set_status(v1::KEY_STATUS_ACTIVE);
  }
  if (order_.size() >= 2) {
    v1::Agreement* a = r.add_agreements();
    a->set_id("test-agreement");
    for (const std::string& name : order_) a->add_parties(name);
    a->add_purposes("case-referral");
  }
  return r;
}

TestFederation::~TestFederation() {
  if (keep_files_) return;
  if (getenv("CORRIDOR_KEEP_TEST_DIRS") != nullptr) {
    fprintf(stderr, "kept the test federation's files in %s\n", root_.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(root_, ignored);
}

std::string TestFederation::Sign(const v1::Roster& roster, int signers) const {
  std::string json;
  for (int i = 0; i < signers; ++i) {
    json = SignRoster(&roster, json, absl::StrCat("steward-", i + 1), stewards_[i]).value();
  }
  return json;
}

namespace {
// The steward_keys: list of a node config or stewards file, indented by `indent`.
std::string StewardKeysYaml(const std::vector<Ed25519PrivateKey>& stewards,
                            const std::string& indent) {
  std::string yaml;
  for (size_t i = 0; i < stewards.size(); ++i) {
    absl::StrAppend(&yaml, indent, "- name: steward-", i + 1, "\n", indent,
                    "  public_key: ", Base64Encode(stewards[i].public_key().raw()), "\n");
  }
  return yaml;
}
}  // namespace

std::string TestFederation::WriteStewardsFile() const {
  const std::string path = root_ + "/stewards.yaml";
  WriteOrDie(path,
             absl::StrCat("threshold: ", threshold_, "\nsteward_keys:\n",
                          StewardKeysYaml(stewards_, "  ")),
             0644);
  return path;
}

std::string TestFederation::WriteNodeConfig(
    const std::string& org, const std::map<std::string, std::vector<std::string>>& users,
    uint64_t roster_version) {
  const TestOrg& o = orgs_.at(org);
  WriteOrDie(o.dir + "/roster.json", Sign(MakeRoster(roster_version), threshold_), 0644);
  std::string yaml = absl::StrCat(
      "federation: ", federation_, "\norg: ", org, "\nlisten: ", o.endpoint(),
      "\ndata_dir: data\nmaster_key_file: master.key\n"
      "tls:\n  cert_file: node.crt\n  key_file: node.key\n  ca_file: ca.crt\n"
      "signing_key:\n  key_id: ",
      o.key_id, "\n", o.signing_key_yaml.empty() ? "  key_file: signing.key\n" : o.signing_key_yaml,
      "roster:\n  file: roster.json\n  threshold: ", threshold_, "\n  steward_keys:\n",
      StewardKeysYaml(stewards_, "    "));
  absl::StrAppend(&yaml, "limits:\n");
  for (const auto& [name, value] : limits) absl::StrAppend(&yaml, "  ", name, ": ", value, "\n");
  if (!users.empty()) {
    absl::StrAppend(&yaml, "users:\n");
    for (const auto& [name, roles] : users) {
      absl::StrAppend(&yaml, "  ", name, ": {roles: [", absl::StrJoin(roles, ", "), "]}\n");
    }
  }
  const std::string path = o.dir + "/node.yaml";
  WriteOrDie(path, yaml, 0644);
  return path;
}

std::string TestFederation::IssueUser(const std::string& org, const std::string& name) {
  const TestOrg& o = orgs_.at(org);
  pki::LeafOptions opts;
  opts.spiffe_uri = pki::UserSpiffeUri(federation_, org, name);
  opts.common_name = name;
  opts.validity = kCertificateValidity;
  pki::IssuedCertificate user = pki::IssueLeaf(o.ca, opts).value();
  const std::string prefix = absl::StrCat(o.dir, "/", name);
  WriteOrDie(prefix + ".crt", user.cert_pem, 0644);
  WriteOrDie(prefix + ".key", user.key_pem);
  return prefix;
}

std::string TestFederation::IssueCertificatePem(const std::string& issuer_org,
                                                const std::string& spiffe_uri,
                                                const std::string& common_name) {
  pki::LeafOptions opts;
  opts.spiffe_uri = spiffe_uri;
  opts.common_name = common_name;
  return pki::IssueLeaf(orgs_.at(issuer_org).ca, opts).value().cert_pem;
}

}  // namespace corridor::testing
