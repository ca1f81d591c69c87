// corridorctl pki: steward keys, org CAs, node and user certificates, written to disk.
#include "client/lib/pki.h"

#include <errno.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/ctl/certificates.h"
#include "client/ctl/command.h"
#include "ledger/crypto/crypto.h"

namespace corridor::ctl {
namespace {

absl::Status MakeDir(const std::string& dir) {
  std::string path;
  for (absl::string_view part : absl::StrSplit(dir, '/')) {
    path += std::string(part) + "/";
    if (part.empty()) continue;
    if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
      return absl::InternalError(absl::StrCat("cannot create directory ", path));
    }
  }
  return absl::OkStatus();
}

// "dir/" → "dir", so paths joined with "/" and printed have no "//" ("/" stays).
std::string WithoutTrailingSlash(std::string dir) {
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir;
}

// Writes a new file; refuses to overwrite so keys are never lost by accident.
absl::Status WriteNew(const std::string& path, absl::string_view data, int mode, bool force) {
  struct stat st;
  if (!force && stat(path.c_str(), &st) == 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(path, " already exists; not overwriting it (use --force to replace)"));
  }
  return WriteFileAtomically(path, data, mode);
}

absl::Status RunPkiFederation(Context& c) {
  if (auto st = Require(c.args, {"federation", "out"}); !st.ok()) return st;
  int count = 3;
  if (c.args.Has("stewards") && (!absl::SimpleAtoi(c.args.Get("stewards"), &count) || count < 1)) {
    return absl::InvalidArgumentError("--stewards must be a positive number");
  }
  const std::string dir = WithoutTrailingSlash(c.args.Get("out"));
  const bool force = c.args.Has("force");
  if (auto st = MakeDir(dir); !st.ok()) return st;
  std::string yaml = "steward_keys:\n";
  for (int i = 1; i <= count; ++i) {
    const std::string name = absl::StrCat("steward-", i);
    Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
    if (auto st = WriteNew(absl::StrCat(dir, "/", name, ".key"), key.ToPem(), 0600, force);
        !st.ok()) {
      return st;
    }
    absl::StrAppend(&yaml, "  - name: ", name,
                    "\n    public_key: ", Base64Encode(key.public_key().raw()), "\n");
  }
  if (auto st = WriteNew(dir + "/stewards.yaml", yaml, 0644, force); !st.ok()) return st;
  c.out << "federation " << c.args.Get("federation") << ": " << count << " steward keys in " << dir
        << "\n  give each steward their steward-N.key; paste " << dir
        << "/stewards.yaml into every node's roster: section\n";
  return absl::OkStatus();
}

absl::Status RunPkiOrg(Context& c) {
  if (auto st = Require(c.args, {"federation", "org", "out"}); !st.ok()) return st;
  const std::string fed = c.args.Get("federation");
  const std::string org = c.args.Get("org");
  const std::string dir = WithoutTrailingSlash(c.args.Get("out"));
  const bool force = c.args.Has("force");
  if (auto st = MakeDir(dir); !st.ok()) return st;

  pki::CaOptions ca_opts;
  ca_opts.federation = fed;
  ca_opts.org = org;
  ca_opts.common_name = absl::StrCat(org, " Corridor CA");
  auto ca = pki::CreateOrgCa(ca_opts);
  if (!ca.ok()) return ca.status();

  pki::LeafOptions node_opts;
  node_opts.spiffe_uri = pki::NodeSpiffeUri(fed, org);
  node_opts.common_name = absl::StrCat(org, " node");
  node_opts.server_auth = true;
  node_opts.dns_names = {"localhost"};
  node_opts.ip_addresses = {"127.0.0.1"};
  for (const std::string& h : c.args.GetAll("host")) {
    bool is_ip = !h.empty() && (absl::ascii_isdigit(h[0]) || h.find(':') != std::string::npos);
    (is_ip ? node_opts.ip_addresses : node_opts.dns_names).push_back(h);
  }
  auto node = pki::IssueLeaf(*ca, node_opts);
  if (!node.ok()) return node.status();

  Ed25519PrivateKey signing = Ed25519PrivateKey::Generate();
  const std::string key_id = c.args.Get("key-id", absl::StrCat(org, "-1"));
  const std::vector<std::pair<std::string, std::pair<std::string, int>>> files = {
      {"ca.key", {ca->key_pem, 0600}},
      {"ca.crt", {ca->cert_pem, 0644}},
      {"node.key", {node->key_pem, 0600}},
      {"node.crt", {node->cert_pem, 0644}},
      {"signing.key", {signing.ToPem(), 0600}},
      {"signing.pub", {Base64Encode(signing.public_key().raw()) + "\n", 0644}},
      {"signing.keyid", {key_id + "\n", 0644}},
      // Wraps the node's per-case data keys; never leaves the node.
      {"master.key", {Base64Encode(RandomBytes(32)) + "\n", 0600}},
  };
  for (const auto& [name, content] : files) {
    if (auto st = WriteNew(absl::StrCat(dir, "/", name), content.first, content.second, force);
        !st.ok()) {
      return st;
    }
  }
  c.out << "org " << org << ": CA, node certificate (" << node_opts.spiffe_uri
        << ") and signing key " << key_id << " in " << dir
        << "\n  keep ca.key offline; add the org to the roster with `corridorctl roster "
           "add-member`\n";
  return absl::OkStatus();
}

absl::Status RunPkiUser(Context& c) {
  if (auto st = Require(c.args, {"federation", "org", "org-dir", "name", "out"}); !st.ok())
    return st;
  const std::string dir = c.args.Get("org-dir");
  auto ca_key = ReadFileToString(dir + "/ca.key");
  if (!ca_key.ok()) return ca_key.status();
  auto ca_cert = ReadFileToString(dir + "/ca.crt");
  if (!ca_cert.ok()) return ca_cert.status();
  pki::LeafOptions opts;
  const std::string name = c.args.Get("name");
  opts.spiffe_uri = pki::UserSpiffeUri(c.args.Get("federation"), c.args.Get("org"), name);
  opts.common_name = name;
  auto user = pki::IssueLeaf({*ca_key, *ca_cert}, opts);
  if (!user.ok()) return user.status();
  const std::string out = WithoutTrailingSlash(c.args.Get("out"));
  if (auto st = MakeDir(out); !st.ok()) return st;
  const bool force = c.args.Has("force");
  if (auto st = WriteNew(absl::StrCat(out, "/", name, ".key"), user->key_pem, 0600, force);
      !st.ok()) {
    return st;
  }
  if (auto st = WriteNew(absl::StrCat(out, "/", name, ".crt"), user->cert_pem, 0644, force);
      !st.ok()) {
    return st;
  }
  auto info = pki::InspectCertificate(user->cert_pem);
  if (!info.ok()) return info.status();
  c.out << "user " << opts.spiffe_uri << ": " << out << "/" << name << ".crt and .key, serial "
        << info->serial_hex << "\n  the node admin must list \"" << name
        << "\" under users: with their roles; to revoke the certificate: `corridorctl pki revoke "
           "--cert "
        << out << "/" << name << ".crt`\n";
  return absl::OkStatus();
}

// The N of key ids "<org>-N" in the signing.keyid files of `dir`, of its
// parent and of the parent's other subdirectories (an org keeps its keys
// side by side, e.g. union-sg/ and union-sg/key-2/); 0 if none.
int HighestKeyNumber(const std::string& dir, const std::string& org) {
  namespace fs = std::filesystem;
  std::vector<fs::path> places = {fs::path(dir)};
  std::error_code ec;
  const fs::path parent = fs::absolute(fs::path(dir), ec).parent_path();
  places.push_back(parent);
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    if (e.is_directory(ec)) places.push_back(e.path());
  }
  int highest = 0;
  for (const fs::path& p : places) {
    auto id = ReadFileToString((p / "signing.keyid").string());
    if (!id.ok()) continue;
    absl::string_view v = absl::StripAsciiWhitespace(*id);
    int n = 0;
    if (absl::ConsumePrefix(&v, org + "-") && absl::SimpleAtoi(v, &n))
      highest = std::max(highest, n);
  }
  return highest;
}

absl::Status RunPkiSigningKey(Context& c) {
  if (auto st = Require(c.args, {"org", "out"}); !st.ok()) return st;
  const std::string org = c.args.Get("org");
  const std::string dir = WithoutTrailingSlash(c.args.Get("out"));
  const std::string key_id =
      c.args.Get("key-id", absl::StrCat(org, "-", HighestKeyNumber(dir, org) + 1));
  // Refuse before writing anything, so a refusal leaves no part of a key behind.
  for (const char* name : {"signing.key", "signing.pub", "signing.keyid"}) {
    struct stat st;
    if (stat(absl::StrCat(dir, "/", name).c_str(), &st) == 0) {
      return absl::AlreadyExistsError(
          absl::StrCat(dir, "/", name,
                       " already exists; not overwriting a signing key: give --out a new "
                       "directory (e.g. ",
                       dir, "/", key_id, ")"));
    }
  }
  if (auto st = MakeDir(dir); !st.ok()) return st;
  Ed25519PrivateKey signing = Ed25519PrivateKey::Generate();
  const std::vector<std::pair<std::string, std::pair<std::string, int>>> files = {
      {"signing.key", {signing.ToPem(), 0600}},
      {"signing.pub", {Base64Encode(signing.public_key().raw()) + "\n", 0644}},
      {"signing.keyid", {key_id + "\n", 0644}},
  };
  for (const auto& [name, content] : files) {
    if (auto st = WriteNew(absl::StrCat(dir, "/", name), content.first, content.second, false);
        !st.ok()) {
      return st;
    }
  }
  c.out << "signing key " << key_id << " for " << org << " in " << dir
        << "\n  have the stewards add it to the roster: `corridorctl roster add-key --roster FILE "
           "--org "
        << org << " --key-dir " << dir
        << "`; once that version is in force, set the node's signing_key to {key_id: " << key_id
        << ", key_file: "
        << std::filesystem::absolute(dir + "/signing.key").lexically_normal().string()
        << "} (or that file's path relative to the node config's folder) and send the node "
           "SIGHUP\n";
  return absl::OkStatus();
}

// Prints what revokes a certificate: its serial, the roster command and the
// node config lines that both take that serial.
absl::Status RunPkiRevoke(Context& c) {
  if (auto st = Require(c.args, {"cert"}); !st.ok()) return st;
  auto pem = ReadFileToString(c.args.Get("cert"));
  if (!pem.ok()) return pem.status();
  auto info = pki::InspectCertificate(*pem);
  if (!info.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(c.args.Get("cert"), " is not a certificate: ", info.status().message()));
  }
  std::string org = "ORG";
  for (const std::string& uri : info->uris) {
    std::vector<std::string> parts = absl::StrSplit(uri, '/');  // spiffe://<fed>/<org>/...
    if (parts.size() > 3 && parts[0] == "spiffe:") org = parts[3];
  }
  c.out << "certificate " << c.args.Get("cert") << " (" << info->subject
        << (info->uris.empty() ? "" : ", " + info->uris[0]) << "), serial " << info->serial_hex
        << "\nto revoke it across the federation, add it to the roster (then sign and push the "
           "new version):\n  corridorctl roster revoke-cert --roster ROSTER.yaml --org "
        << org << " --serial " << info->serial_hex
        << "\nto refuse it at one node at once, add it to that node's config and send the node "
           "SIGHUP (kill -HUP <pid>; no restart):\n"
           "  tls:\n    revoked_serials: [\""
        << info->serial_hex << "\"]\n";
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> PkiCommands() {
  return {
      {{"pki", "federation"},
       "--federation NAME --out DIR",
       "create the federation's steward keys",
       {{"federation", "NAME", "federation name, e.g. corridor.example"},
        {"out", "DIR", "where to write the keys"},
        {"stewards", "N", "how many steward keys (default 3)"},
        {"force", "", "overwrite existing files"}},
       RunPkiFederation},
      {{"pki", "org"},
       "--federation NAME --org ID --out DIR",
       "create an org's CA, node certificate and Ed25519 signing key",
       {{"federation", "NAME", "federation name"},
        {"org", "ID", "org id, e.g. union-sg"},
        {"out", "DIR", "where to write"},
        {"host", "NAME", "extra DNS name or IP for the node certificate", true},
        {"key-id", "ID", "signing key id (default <org>-1)"},
        {"force", "", "overwrite existing files"}},
       RunPkiOrg},
      {{"pki", "user"},
       "--federation NAME --org ID --org-dir DIR --name USER --out DIR",
       "issue a user certificate from the org's CA",
       {{"federation", "NAME", "federation name"},
        {"org", "ID", "org id"},
        {"org-dir", "DIR", "the directory `pki org` wrote (holds ca.crt, ca.key)"},
        {"name", "USER", "user name"},
        {"out", "DIR", "where to write USER.crt and USER.key"},
        {"force", "", "overwrite existing files"}},
       RunPkiUser},
      {{"pki", "signing-key"},
       "--org ID --out DIR [--key-id ID]",
       "make a new Ed25519 signing key for an org (to add with `roster add-key`)",
       {{"org", "ID", "org id"},
        {"out", "DIR", "where to write signing.key, signing.pub, signing.keyid (a new directory)"},
        {"key-id", "ID", "key id (default: the next free <org>-N)"}},
       RunPkiSigningKey},
      {{"pki", "revoke"},
       "--cert FILE",
       "print a certificate's serial and how to revoke it in the roster and a node config",
       {{"cert", "FILE", "the certificate to revoke"}},
       RunPkiRevoke},
  };
}

}  // namespace corridor::ctl
