// The deploy files (issue 13), checked by reading them and, where this machine can, by
// running what they run. No container engine and no running systemd are here, so:
//   - the systemd unit: every hardening directive the issue asks for, the paths the install
//     steps create, the example config writing only under the unit's StateDirectory, and
//     `systemd-analyze verify` where that command exists (skipped with a message if not);
//   - the Kubernetes manifests and the compose file parse (yaml-cpp, as the node's config
//     loader), and their ports, probes, mounts and paths agree with each other, with the
//     Dockerfile and with the node config format (the embedded node.yaml is loaded with the
//     node's own strict YAML→NodeConfig parser);
//   - the Dockerfile: its health check is the Kubernetes readiness probe, its build stage
//     runs the repository's own steps, and its runtime packages (and install.sh's) cover
//     every shared library the built corridord and corridorctl load (ldd + dpkg -S);
//   - the image root: make-compose-federation.sh writes an org's /etc/corridor, the
//     entrypoint seeds the state directory and starts a real corridord from it (paths moved
//     into a temp directory), and the Dockerfile's health check command answers.
// What is not tested here: `docker build`, `docker compose up`, `kubectl apply`, and the
// unit under a running systemd (docs/operations.md says so).
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "client/lib/yaml_proto.h"
#include "corridor/v1/config.pb.h"
#include "gtest/gtest.h"
#include "ledger/base/file.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"
#include "tests/testing/process.h"
#include "yaml-cpp/yaml.h"

namespace corridor {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;

const std::string kSource = CORRIDOR_SOURCE_DIR;
constexpr char kPort[] = "7443";

std::string Source(const std::string& relative) {
  auto text = ReadFileToString(kSource + "/" + relative);
  EXPECT_TRUE(text.ok()) << relative << ": " << text.status().message();
  return text.value_or("");
}

// The absolute path of `name` on PATH, or "" (RunCommand runs absolute paths only).
std::string FindInPath(const std::string& name) {
  const char* path = getenv("PATH");
  for (absl::string_view dir : absl::StrSplit(path ? path : "/usr/bin:/bin", ':')) {
    const std::string candidate = absl::StrCat(dir, "/", name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

// The `key=value` lines of a systemd unit, in order, keyed by key (comments dropped).
std::multimap<std::string, std::string> UnitDirectives(const std::string& unit) {
  std::multimap<std::string, std::string> out;
  for (absl::string_view line : absl::StrSplit(unit, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits('=', 1));
    out.emplace(kv.first, kv.second);
  }
  return out;
}

std::string Only(const std::multimap<std::string, std::string>& d, const std::string& key) {
  EXPECT_EQ(d.count(key), 1u) << key << " must appear exactly once in the unit";
  auto it = d.find(key);
  return it == d.end() ? "" : it->second;
}

// Parses a node config in the deploy files' form. `<...>` placeholders (the example's
// "replace me" marks) become a value valid for any field: base64 of 32 bytes.
v1::NodeConfig ParseNodeConfig(std::string yaml, const std::string& source) {
  yaml = std::regex_replace(yaml, std::regex("<[^>\n]*>"),
                            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
  v1::NodeConfig config;
  absl::Status st = ParseYamlToProto(yaml, source, &config);
  EXPECT_TRUE(st.ok()) << st.message();
  return config;
}

// Every path the node writes must lie under `state` (the only writable place under
// ProtectSystem=strict or a read-only root), every file it only reads under `etc`.
void ExpectLayout(const v1::NodeConfig& c, const std::string& etc, const std::string& state,
                  const std::string& where) {
  SCOPED_TRACE(where);
  EXPECT_TRUE(absl::StartsWith(c.data_dir(), state + "/")) << c.data_dir();
  EXPECT_TRUE(absl::StartsWith(c.roster().file(), state + "/"))
      << "the node rewrites roster.file when it installs a newer roster: " << c.roster().file();
  for (const std::string& f : {c.master_key_file(), c.tls().cert_file(), c.tls().key_file(),
                               c.tls().ca_file(), c.signing_key().key_file()}) {
    EXPECT_TRUE(absl::StartsWith(f, etc + "/")) << f;
  }
  EXPECT_TRUE(absl::EndsWith(c.listen(), absl::StrCat(":", kPort))) << c.listen();
  ASSERT_TRUE(c.users().contains("monitor")) << "the health check's user is not in users";
  // The health check's key reads nothing but health (docs/access-control.md).
  const auto& roles = c.users().at("monitor").roles();
  ASSERT_EQ(roles.size(), 1);
  EXPECT_EQ(roles[0], v1::ROLE_MONITOR);
}

TEST(SystemdUnitTest, HasEveryHardeningDirectiveAndTheInstalledPaths) {
  const auto d = UnitDirectives(Source("deploy/systemd/corridord.service"));
  EXPECT_EQ(Only(d, "Type"), "notify");
  EXPECT_EQ(Only(d, "User"), "corridor");
  EXPECT_EQ(Only(d, "ProtectSystem"), "strict");
  EXPECT_EQ(Only(d, "NoNewPrivileges"), "yes");
  EXPECT_EQ(Only(d, "StateDirectory"), "corridor");
  EXPECT_EQ(Only(d, "CapabilityBoundingSet"), "") << "an empty set: no capabilities";
  EXPECT_EQ(Only(d, "SystemCallFilter"), "@system-service");
  EXPECT_EQ(Only(d, "ExecReload"), "/bin/kill -HUP $MAINPID");
  EXPECT_EQ(Only(d, "ExecStart"), "/usr/local/bin/corridord --config /etc/corridor/node.yaml");
  EXPECT_EQ(Only(d, "ExecStartPre"),
            "/usr/local/bin/corridord --config /etc/corridor/node.yaml --check-config");

  // install.sh puts the binaries and the config directory where the unit looks.
  const std::string install = Source("deploy/systemd/install.sh");
  EXPECT_TRUE(absl::StrContains(install, "PREFIX=/usr/local\n")) << install;
  EXPECT_TRUE(absl::StrContains(install,
                                "\"$BUILD/bin/corridord\" \"$BUILD/bin/corridorctl\" "
                                "\"$PREFIX/bin/\""));
  EXPECT_TRUE(absl::StrContains(install, "-o root -g corridor /etc/corridor\n"));
  EXPECT_TRUE(absl::StrContains(install, "/etc/systemd/system/corridord.service"));

  const v1::NodeConfig example =
      ParseNodeConfig(Source("deploy/systemd/node.yaml.example"), "node.yaml.example");
  ExpectLayout(example, "/etc/corridor", "/var/lib/corridor", "deploy/systemd/node.yaml.example");
}

TEST(SystemdUnitTest, SystemdAnalyzeVerifiesIt) {
  const std::string analyze = FindInPath("systemd-analyze");
  if (analyze.empty()) GTEST_SKIP() << "systemd-analyze is not installed here: unit not verified";
  // The copy runs the built corridord: verify checks that ExecStart's binary exists.
  testing::TestFederation scratch;
  const std::string unit = scratch.root() + "/corridord.service";
  ASSERT_TRUE(
      WriteFileAtomically(
          unit, absl::StrReplaceAll(Source("deploy/systemd/corridord.service"),
                                    {{"/usr/local/bin/corridord", BinaryPath("corridord")}}))
          .ok());
  CommandResult r = RunCommand({analyze, "verify", unit});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // Unknown or misspelt keys are only warnings: any line about the unit fails the test.
  for (absl::string_view line : absl::StrSplit(r.err, '\n')) {
    EXPECT_FALSE(absl::StrContains(line, "corridord.service")) << line;
  }
}

// The image's facts, read from the Dockerfile.
struct Dockerfile {
  std::string text;
  std::string uid;                         // useradd --uid
  std::vector<std::string> health;         // HEALTHCHECK CMD, exec form
  std::set<std::string> runtime_packages;  // the last stage's apt-get install
};

Dockerfile ReadDockerfile() {
  Dockerfile df;
  df.text = Source("deploy/container/Dockerfile");
  const std::string joined = absl::StrReplaceAll(df.text, {{"\\\n", " "}});
  std::smatch m;
  if (std::regex_search(joined, m, std::regex("--uid ([0-9]+)"))) df.uid = m[1];
  if (std::regex_search(joined, m, std::regex("HEALTHCHECK [^\\n]* CMD \\[([^\\]]*)\\]"))) {
    for (absl::string_view arg : absl::StrSplit(m[1].str(), ',')) {
      df.health.push_back(std::string(
          absl::StripPrefix(absl::StripSuffix(absl::StripAsciiWhitespace(arg), "\""), "\"")));
    }
  }
  const size_t last_stage = joined.rfind("\nFROM ");
  if (std::regex_search(joined.begin() + last_stage, joined.end(), m,
                        std::regex("apt-get install ([^&\\n]*)"))) {
    for (absl::string_view w : absl::StrSplit(m[1].str(), ' ', absl::SkipEmpty())) {
      if (w[0] != '-') df.runtime_packages.insert(std::string(w));
    }
  }
  return df;
}

TEST(ContainerTest, DockerfileBuildsWithTheRepositorysStepsAndRunsUnprivileged) {
  const Dockerfile df = ReadDockerfile();
  EXPECT_TRUE(absl::StrContains(df.text, "FROM debian:bookworm AS build\n"));
  EXPECT_TRUE(absl::StrContains(df.text, "\nFROM debian:bookworm-slim\n"));
  EXPECT_TRUE(absl::StrContains(df.text, "RUN bash deploy/setup.sh"));
  EXPECT_TRUE(absl::StrContains(df.text, "-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++"));
  EXPECT_EQ(df.uid, "10001");
  EXPECT_TRUE(absl::StrContains(df.text, "\nUSER 10001:10001\n"));
  EXPECT_TRUE(absl::StrContains(df.text, absl::StrCat("\nEXPOSE ", kPort, "\n")));
  EXPECT_TRUE(absl::StrContains(df.text, "\nVOLUME /var/lib/corridor\n"));
  EXPECT_TRUE(absl::StrContains(df.text, "CMD [\"--config\", \"/etc/corridor/node.yaml\"]"));
  const std::vector<std::string> want = {"/usr/local/bin/corridorctl",
                                         "health",
                                         "--node",
                                         absl::StrCat("127.0.0.1:", kPort),
                                         "--cert",
                                         "/etc/corridor/monitor/monitor.crt",
                                         "--key",
                                         "/etc/corridor/monitor/monitor.key",
                                         "--ca",
                                         "/etc/corridor/ca.crt"};
  EXPECT_EQ(df.health, want);
}

// The Debian packages owning the shared libraries `binary` loads (sanitizer runtimes and
// libraries of this build tree aside: neither is in a production image). One dpkg -S call.
std::set<std::string> LinkedPackages(const std::string& binary, std::string* problem) {
  CommandResult libs = RunCommand({FindInPath("ldd"), binary});
  std::vector<std::vector<std::string>> candidates;  // per library: the paths dpkg may know
  std::vector<std::string> query = {FindInPath("dpkg"), "-S"};
  for (absl::string_view line : absl::StrSplit(libs.out, '\n')) {
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (parts.size() < 3 || parts[1] != "=>") continue;
    const std::string& lib = parts[2];
    if (std::regex_search(lib, std::regex("lib(asan|tsan|ubsan|lsan|clang_rt)")) ||
        absl::StartsWith(lib, std::string(absl::StripSuffix(CORRIDOR_BIN_DIR, "/bin")))) {
      continue;
    }
    char real[PATH_MAX];
    candidates.push_back({lib, realpath(lib.c_str(), real) ? real : lib, "/usr" + lib});
    query.insert(query.end(), candidates.back().begin(), candidates.back().end());
  }
  std::map<std::string, std::string> owner;  // path → package
  for (absl::string_view line : absl::StrSplit(RunCommand(query).out, '\n')) {
    std::pair<std::string, std::string> kv = absl::StrSplit(line, absl::MaxSplits(": ", 1));
    if (!kv.second.empty()) owner[kv.second] = kv.first.substr(0, kv.first.find(':'));
  }
  std::set<std::string> packages;
  for (const std::vector<std::string>& paths : candidates) {
    std::string found;
    for (const std::string& p : paths) {
      if (found.empty() && owner.count(p) > 0) found = owner[p];
    }
    if (found.empty()) absl::StrAppend(problem, paths[0], " belongs to no Debian package; ");
    if (!found.empty()) packages.insert(found);
  }
  return packages;
}

TEST(ContainerTest, RuntimePackagesCoverEveryLibraryTheBinariesLoad) {
  if (FindInPath("ldd").empty() || FindInPath("dpkg").empty()) {
    GTEST_SKIP() << "ldd or dpkg is missing here: the runtime package lists are not checked";
  }
#if defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "a ThreadSanitizer build loads libraries a release build does not (libatomic, "
                  "through the TSan abseil): `make test` checks the release binaries";
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
  GTEST_SKIP() << "a ThreadSanitizer build loads libraries a release build does not (libatomic, "
                  "through the TSan abseil): `make test` checks the release binaries";
#endif
#endif
  const Dockerfile df = ReadDockerfile();
  std::smatch m;
  const std::string install = Source("deploy/systemd/install.sh");
  ASSERT_TRUE(std::regex_search(install, m, std::regex("RUNTIME_PACKAGES=\\(([^)]*)\\)")));
  std::set<std::string> installed;
  for (absl::string_view w : absl::StrSplit(m[1].str(), absl::ByAnyChar(" \n"), absl::SkipEmpty()))
    installed.insert(std::string(w));
  for (const std::string binary : {"corridord", "corridorctl"}) {
    std::string problem;
    for (const std::string& p : LinkedPackages(BinaryPath(binary), &problem)) {
      EXPECT_TRUE(df.runtime_packages.count(p) > 0)
          << binary << " loads a library of Debian package " << p
          << ", which deploy/container/Dockerfile's runtime stage does not install";
      EXPECT_TRUE(installed.count(p) > 0)
          << binary << " loads a library of " << p << ", not in install.sh's RUNTIME_PACKAGES";
    }
    EXPECT_EQ(problem, "") << binary;
  }
}

// The Kubernetes objects by kind.
std::map<std::string, YAML::Node> KubernetesObjects() {
  std::map<std::string, YAML::Node> by_kind;
  for (const YAML::Node& doc : YAML::LoadAll(Source("deploy/kubernetes/corridor.yaml"))) {
    by_kind[doc["kind"].as<std::string>()] = doc;
  }
  return by_kind;
}

// The exec probe's command as one line.
std::string ProbeCommand(const YAML::Node& probe) {
  std::vector<std::string> words;
  for (const YAML::Node& w : probe["exec"]["command"]) words.push_back(w.as<std::string>());
  return absl::StrJoin(words, " ");
}

TEST(KubernetesTest, ManifestsParseAndAgreeWithTheImageAndTheConfigFormat) {
  auto k = KubernetesObjects();
  for (const char* kind : {"ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}) {
    ASSERT_TRUE(k.count(kind)) << kind << " missing";
  }
  const v1::NodeConfig config =
      ParseNodeConfig(k["ConfigMap"]["data"]["node.yaml"].as<std::string>(), "ConfigMap");
  ExpectLayout(config, "/etc/corridor", "/var/lib/corridor", "ConfigMap corridor-config");

  const YAML::Node svc = k["Service"]["spec"], sts = k["StatefulSet"]["spec"];
  EXPECT_EQ(svc["clusterIP"].as<std::string>(), "None") << "the Service must be headless";
  EXPECT_EQ(sts["serviceName"].as<std::string>(),
            k["Service"]["metadata"]["name"].as<std::string>());
  EXPECT_EQ(sts["replicas"].as<int>(), 1);
  const YAML::Node pod = sts["template"]["spec"], c = pod["containers"][0];
  EXPECT_EQ(svc["ports"][0]["port"].as<std::string>(), kPort);
  EXPECT_EQ(svc["ports"][0]["targetPort"].as<std::string>(),
            c["ports"][0]["name"].as<std::string>());
  EXPECT_EQ(c["ports"][0]["containerPort"].as<std::string>(), kPort);
  EXPECT_EQ(pod["securityContext"]["runAsUser"].as<std::string>(), ReadDockerfile().uid);
  const std::string labels = YAML::Dump(sts["template"]["metadata"]["labels"]);
  EXPECT_EQ(YAML::Dump(svc["selector"]), labels);
  EXPECT_EQ(YAML::Dump(k["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"]), labels);
  EXPECT_TRUE(c["resources"]["requests"]["cpu"] && c["resources"]["requests"]["memory"]);

  // The readiness probe is the Dockerfile's health check; liveness and startup ask the same
  // health service and accept NOT SERVING too (a full disk heals without a restart).
  const std::string health = absl::StrJoin(ReadDockerfile().health, " ");
  EXPECT_EQ(ProbeCommand(c["readinessProbe"]), health);
  for (const char* probe : {"livenessProbe", "startupProbe"}) {
    EXPECT_EQ(ProbeCommand(c[probe]),
              absl::StrCat("/bin/sh -c ", health, " | grep -q -e ': serving' -e 'NOT SERVING'"))
        << probe;
  }

  // Every file the config and the probes name is in the projected /etc/corridor, and the
  // state is the claimed volume.
  std::map<std::string, std::string> mounts;
  for (const YAML::Node& m : c["volumeMounts"]) {
    mounts[m["name"].as<std::string>()] = m["mountPath"].as<std::string>();
  }
  ASSERT_EQ(mounts["etc"], "/etc/corridor");
  EXPECT_EQ(mounts[sts["volumeClaimTemplates"][0]["metadata"]["name"].as<std::string>()],
            "/var/lib/corridor");
  std::set<std::string> files;
  for (const YAML::Node& v : pod["volumes"]) {
    if (v["name"].as<std::string>() != "etc") continue;
    for (const YAML::Node& source : v["projected"]["sources"]) {
      const YAML::Node s = source["configMap"] ? source["configMap"] : source["secret"];
      for (const YAML::Node& item : s["items"]) {
        files.insert("/etc/corridor/" + item["path"].as<std::string>());
      }
    }
  }
  for (const std::string& f :
       {config.master_key_file(), config.tls().cert_file(), config.tls().key_file(),
        config.tls().ca_file(), config.signing_key().key_file(),
        std::string("/etc/corridor/node.yaml"), std::string("/etc/corridor/roster.json"),
        std::string("/etc/corridor/monitor/monitor.crt"),
        std::string("/etc/corridor/monitor/monitor.key")}) {
    EXPECT_TRUE(files.count(f) > 0) << f << " is not in the projected /etc/corridor volume";
  }
}

TEST(ContainerTest, ComposeParsesAndEachNodeMountsTheImagesLayout) {
  const YAML::Node compose = YAML::Load(Source("deploy/container/compose.yaml"));
  ASSERT_TRUE(compose["services"].IsMap());
  std::set<std::string> host_ports;
  for (const auto& entry : compose["services"]) {
    const std::string name = entry.first.as<std::string>();
    const YAML::Node s = entry.second;
    SCOPED_TRACE(name);
    std::vector<std::string> port = absl::StrSplit(s["ports"][0].as<std::string>(), ':');
    ASSERT_EQ(port.size(), 3u);
    EXPECT_EQ(port[0], "127.0.0.1") << "publish on loopback only";
    EXPECT_TRUE(host_ports.insert(port[1]).second) << "host port used twice";
    EXPECT_EQ(port[2], kPort);
    EXPECT_EQ(s["hostname"].as<std::string>(), name) << "peers reach it by this name";
    EXPECT_EQ(s["volumes"][0].as<std::string>(),
              absl::StrCat("./federation/", name, "/etc:/etc/corridor:ro"));
    EXPECT_EQ(s["volumes"][1].as<std::string>(), absl::StrCat(name, "-state:/var/lib/corridor"));
    EXPECT_TRUE(compose["volumes"][name + "-state"]) << "volume not declared";
  }
  EXPECT_EQ(host_ports.size(), 3u);
  EXPECT_EQ(compose["x-node"]["build"]["dockerfile"].as<std::string>(),
            "deploy/container/Dockerfile");
}

// The image root without an engine: an org's /etc/corridor as make-compose-federation.sh
// writes it and an empty state directory, both moved under a temp directory (with the
// paths in node.yaml and the entrypoint moved alike, and a free port); the entrypoint seeds
// the roster and starts corridord, and the Dockerfile's health check command answers.
TEST(ContainerTest, ComposeFederationFilesStartANodeThroughTheEntrypoint) {
  testing::TestFederation scratch;
  const std::string root = scratch.root() + "/image";
  setenv("CORRIDOR_BIN", CORRIDOR_BIN_DIR, 1);
  CommandResult made = RunCommand(
      {FindInPath("bash"), kSource + "/deploy/container/make-compose-federation.sh", root + "/fed"},
      absl::Seconds(120));
  ASSERT_EQ(made.exit_code, 0) << made.out << made.err;
  const std::string etc = root + "/fed/union-sg/etc", state = root + "/state";
  ASSERT_EQ(mkdir(state.c_str(), 0700), 0);
  const std::string port = std::to_string(testing::PickFreePort());
  const std::vector<std::pair<std::string, std::string>> moved = {
      {"/etc/corridor", etc},
      {"/var/lib/corridor", state},
      {"/usr/local/bin/", std::string(CORRIDOR_BIN_DIR) + "/"},
      {absl::StrCat("0.0.0.0:", kPort), "127.0.0.1:" + port},
      {absl::StrCat("127.0.0.1:", kPort), "127.0.0.1:" + port}};
  const std::string yaml = absl::StrReplaceAll(ReadFileToString(etc + "/node.yaml").value(), moved);
  ExpectLayout(ParseNodeConfig(ReadFileToString(etc + "/node.yaml").value(), "compose node.yaml"),
               "/etc/corridor", "/var/lib/corridor", "make-compose-federation.sh");
  ASSERT_TRUE(WriteFileAtomically(etc + "/node.yaml", yaml).ok());
  const std::string entrypoint = root + "/entrypoint.sh";
  ASSERT_TRUE(
      WriteFileAtomically(
          entrypoint, absl::StrReplaceAll(Source("deploy/container/entrypoint.sh"), moved), 0755)
          .ok());

  testing::Subprocess node({FindInPath("sh"), entrypoint, "--config", etc + "/node.yaml"},
                           root + "/corridord.log");
  std::vector<std::string> health;
  for (const std::string& arg : ReadDockerfile().health)
    health.push_back(absl::StrReplaceAll(arg, moved));
  health.insert(health.begin() + 2, {"--wait", "60"});
  CommandResult r = RunCommand(health, absl::Seconds(90));
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << "\nlog:\n" << node.Log();
  EXPECT_TRUE(absl::StrContains(r.out, "node union-sg (corridor.compose)")) << r.out;
  EXPECT_EQ(ReadFileToString(state + "/roster.json").value_or("missing"),
            ReadFileToString(etc + "/roster.json").value());
  EXPECT_TRUE(absl::StrContains(node.Log(), "first start: copied")) << node.Log();
  EXPECT_EQ(node.Stop(SIGTERM), 0) << node.Log();
}

}  // namespace
}  // namespace corridor
