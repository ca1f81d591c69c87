#include "server/node/config.h"

#include <sys/stat.h>
#include <unistd.h>

#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/lib/pki.h"
#include "client/lib/yaml_proto.h"
#include "ledger/base/log.h"
#include "ledger/crypto/crypto.h"
#include "server/common/edge.h"
#include "server/node/metrics_endpoint.h"
#include "server/node/signing_key.h"

namespace corridor {
namespace {

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string Resolve(const std::string& base_dir, const std::string& p) {
  if (p.empty() || p[0] == '/') return p;
  return absl::StrCat(base_dir, "/", p);
}

class Checker {
 public:
  explicit Checker(std::string source) : source_(std::move(source)) {}

  absl::Status Error(absl::string_view key, absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", key, ": ", what));
  }

  // `what` names the key itself ("signing_key.pkcs11.pin_file: ...").
  absl::Status Error(absl::string_view what) const {
    return absl::InvalidArgumentError(absl::StrCat(source_, ": ", what));
  }

  absl::Status Required(absl::string_view key, const std::string& value) const {
    if (value.empty()) return Error(key, "is required but missing");
    return absl::OkStatus();
  }

  // `value` (already resolved) must name a readable regular file.
  absl::Status ReadableFile(absl::string_view key, const std::string& value) const {
    if (auto st = Required(key, value); !st.ok()) return st;
    if (access(value.c_str(), F_OK) != 0) return Error(key, absl::StrCat(value, ": no such file"));
    if (access(value.c_str(), R_OK) != 0) {
      return Error(key, absl::StrCat(value, ": not readable by this user"));
    }
    struct stat st;
    if (stat(value.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
      return Error(key, absl::StrCat(value, ": is a directory or other non-file; name the file"));
    }
    return absl::OkStatus();
  }

 private:
  std::string source_;
};

// Paths in the file are relative to it, so a node directory can move as a whole.
void ResolvePaths(const std::string& base, v1::NodeConfig* config) {
  config->set_data_dir(Resolve(base, config->data_dir()));
  auto* tls = config->mutable_tls();
  tls->set_cert_file(Resolve(base, tls->cert_file()));
  tls->set_key_file(Resolve(base, tls->key_file()));
  tls->set_ca_file(Resolve(base, tls->ca_file()));
  config->mutable_roster()->set_file(Resolve(base, config->roster().file()));
  config->mutable_signing_key()->set_key_file(Resolve(base, config->signing_key().key_file()));
  if (config->signing_key().has_pkcs11()) {
    auto* p = config->mutable_signing_key()->mutable_pkcs11();
    p->set_pin_file(Resolve(base, p->pin_file()));
  }
  config->set_master_key_file(Resolve(base, config->master_key_file()));
}

// The signing key: a file or a key in a PKCS#11 token, opened once to prove it
// signs (OpenSigningKey says what is wrong, naming the setting).
absl::Status CheckSigningKey(const Checker& check, const v1::SigningKeyConfig& key) {
  if (key.has_pkcs11() == !key.key_file().empty()) {
    return check.Error("signing_key", key.has_pkcs11()
                                          ? "give key_file or pkcs11, not both"
                                          : "give key_file (a key file) or pkcs11 (a key in an "
                                            "HSM): neither is set");
  }
  if (key.has_pkcs11()) {
    const v1::Pkcs11KeyConfig& p = key.pkcs11();
    for (const auto& [name, value] :
         {std::pair<const char*, const std::string&>{"module", p.module()},
          {"token_label", p.token_label()},
          {"pin_file", p.pin_file()}}) {
      if (auto st = check.Required(absl::StrCat("signing_key.pkcs11.", name), value); !st.ok()) {
        return st;
      }
    }
    if (p.key_label().empty() && p.key_object_id().empty()) {
      return check.Error("signing_key.pkcs11",
                         "name the key with key_label, key_object_id (hex), or both");
    }
  } else if (auto st = check.ReadableFile("signing_key.key_file", key.key_file()); !st.ok()) {
    return st;
  }
  if (auto signer = OpenSigningKey(key); !signer.ok()) {
    return check.Error(signer.status().message());
  }
  return absl::OkStatus();
}

// Who the node is, where it listens, and the files it needs (readable, keys that parse).
absl::Status CheckIdentityAndFiles(const Checker& check, const v1::NodeConfig& config) {
  if (auto st = check.Required("federation", config.federation()); !st.ok()) return st;
  if (auto st = check.Required("org", config.org()); !st.ok()) return st;
  if (auto st = check.Required("listen", config.listen()); !st.ok()) return st;
  {
    int port = -1;
    if (config.listen().rfind(':') == std::string::npos ||
        !absl::SimpleAtoi(config.listen().substr(config.listen().rfind(':') + 1), &port) ||
        port < 0 || port > 65535) {
      return check.Error(
          "listen", absl::StrCat("\"", config.listen(), "\" is not host:port (e.g. 0.0.0.0:7443)"));
    }
  }
  if (auto st = check.Required("data_dir", config.data_dir()); !st.ok()) return st;
  if (auto st = check.ReadableFile("tls.cert_file", config.tls().cert_file()); !st.ok()) return st;
  if (auto st = check.ReadableFile("tls.key_file", config.tls().key_file()); !st.ok()) return st;
  if (auto st = check.ReadableFile("tls.ca_file", config.tls().ca_file()); !st.ok()) return st;
  if (auto st = check.ReadableFile("roster.file", config.roster().file()); !st.ok()) return st;
  if (auto st = check.Required("signing_key.key_id", config.signing_key().key_id()); !st.ok()) {
    return st;
  }
  if (auto st = check.ReadableFile("master_key_file", config.master_key_file()); !st.ok())
    return st;
  auto text = ReadFileToString(config.master_key_file());
  if (!text.ok()) return check.Error("master_key_file", text.status().message());
  auto key = Base64Decode(absl::StripAsciiWhitespace(*text));
  if (!key.ok() || key->size() != 32) {
    return check.Error("master_key_file", absl::StrCat(config.master_key_file(),
                                                       ": must hold 32 random bytes in base64"));
  }
  return CheckSigningKey(check, config.signing_key());
}

// The stewards who sign rosters and how many must.
absl::Status CheckRosterTrust(const Checker& check, const v1::RosterConfig& roster) {
  if (roster.steward_keys_size() == 0) {
    return check.Error("roster.steward_keys", "at least one steward key is required");
  }
  std::set<std::string> names;
  for (int i = 0; i < roster.steward_keys_size(); ++i) {
    const auto& k = roster.steward_keys(i);
    const std::string key = absl::StrCat("roster.steward_keys[", i, "]");
    if (k.name().empty()) return check.Error(key + ".name", "is required but missing");
    if (!names.insert(k.name()).second) return check.Error(key + ".name", "is listed twice");
    auto raw = Base64Decode(k.public_key());
    if (!raw.ok() || !Ed25519PublicKey::FromRaw(*raw).ok()) {
      return check.Error(key + ".public_key", "must be a base64 32-byte Ed25519 public key");
    }
  }
  if (roster.threshold() == 0) return check.Error("roster.threshold", "must be at least 1");
  if (roster.threshold() > static_cast<uint32_t>(roster.steward_keys_size())) {
    return check.Error("roster.threshold",
                       absl::StrCat("is ", roster.threshold(), " but only ",
                                    roster.steward_keys_size(), " steward keys are configured"));
  }
  return absl::OkStatus();
}

absl::Status NormalizeRevokedSerials(const Checker& check, v1::NodeConfig* config) {
  // Revoked serials in the one form identity checks compare (pki::NormalizeSerial):
  // a serial written as `openssl x509 -text` prints it must match, and one that
  // cannot be read must not pass the check and then never match.
  auto* tls = config->mutable_tls();
  for (int i = 0; i < tls->revoked_serials_size(); ++i) {
    auto normal = pki::NormalizeSerial(tls->revoked_serials(i));
    if (!normal.ok()) {
      return check.Error(absl::StrCat("tls.revoked_serials[", i, "]"), normal.status().message());
    }
    tls->set_revoked_serials(i, *normal);
  }
  return absl::OkStatus();
}

// Every user has a role; the log level is one the log knows.
absl::Status CheckUsersAndLog(const Checker& check, const v1::NodeConfig& config) {
  for (const auto& [name, entry] : config.users()) {
    if (entry.roles_size() == 0) {
      return check.Error(absl::StrCat("users.", name, ".roles"), "lists no roles");
    }
  }
  if (!config.log().level().empty()) {
    log::Level level;
    if (!log::ParseLevel(config.log().level(), &level)) {
      return check.Error("log.level", "must be one of debug, info, warn, error");
    }
  }

  return absl::OkStatus();
}

// The node's own purpose codes: each a valid code, none twice; the default list if unset.
absl::Status FillPurposes(const Checker& check, v1::NodeConfig* config) {
  if (config->purposes_size() == 0) {
    for (absl::string_view p : kDefaultLocalPurposes) config->add_purposes(std::string(p));
  }
  std::set<std::string> seen;
  for (int i = 0; i < config->purposes_size(); ++i) {
    const std::string key = absl::StrCat("purposes[", i, "]");
    if (auto st = ValidatePurposeCode(config->purposes(i)); !st.ok()) {
      return check.Error(key, st.message());
    }
    if (!seen.insert(config->purposes(i)).second) return check.Error(key, "is listed twice");
  }
  return absl::OkStatus();
}

// The witness interval's default and bound (docs/configuration.md).
absl::Status FillWitnessLimits(const Checker& check, v1::Limits* limits) {
  if (limits->witness_interval_seconds() == 0) {
    limits->set_witness_interval_seconds(kDefaultWitnessIntervalSeconds);
  }
  if (limits->witness_interval_seconds() > kMaxWitnessIntervalSeconds) {
    return check.Error("limits.witness_interval_seconds",
                       "must be at most 3600 (an hour): a forked peer would go unnoticed for "
                       "longer");
  }
  return absl::OkStatus();
}

// Defaults for limits left at zero, and the bounds on those set.
absl::Status FillLimits(const Checker& check, v1::Limits* limits) {
  if (limits->max_message_bytes() == 0) limits->set_max_message_bytes(kDefaultMaxMessageBytes);
  if (limits->max_evidence_bytes() == 0) limits->set_max_evidence_bytes(kDefaultMaxEvidenceBytes);
  if (limits->peer_probe_interval_seconds() == 0) {
    limits->set_peer_probe_interval_seconds(kDefaultPeerProbeIntervalSeconds);
  }
  if (limits->peer_call_timeout_seconds() == 0) {
    limits->set_peer_call_timeout_seconds(kDefaultPeerCallTimeoutSeconds);
  }
  if (limits->max_envelope_lifetime_days() == 0) {
    limits->set_max_envelope_lifetime_days(kDefaultMaxEnvelopeLifetimeDays);
  }
  if (limits->max_envelope_lifetime_days() < kMinEnvelopeLifetimeDays ||
      limits->max_envelope_lifetime_days() > kMaxEnvelopeLifetimeDays) {
    return check.Error("limits.max_envelope_lifetime_days",
                       absl::StrCat("must be from ", kMinEnvelopeLifetimeDays,
                                    " (the lifetime "
                                    "senders give envelopes) to ",
                                    kMaxEnvelopeLifetimeDays));
  }
  auto fill = [](uint32_t value, uint32_t fallback) { return value == 0 ? fallback : value; };
  limits->set_user_calls_per_second(
      fill(limits->user_calls_per_second(), kDefaultUserCallsPerSecond));
  limits->set_user_call_burst(fill(limits->user_call_burst(), kDefaultUserCallBurst));
  limits->set_peer_calls_per_second(
      fill(limits->peer_calls_per_second(), kDefaultPeerCallsPerSecond));
  limits->set_peer_call_burst(fill(limits->peer_call_burst(), kDefaultPeerCallBurst));
  limits->set_refusal_budget(fill(limits->refusal_budget(), kDefaultRefusalBudget));
  limits->set_refusal_interval_seconds(
      fill(limits->refusal_interval_seconds(), kDefaultRefusalIntervalSeconds));
  limits->set_max_evidence_transfers(
      fill(limits->max_evidence_transfers(), kDefaultMaxEvidenceTransfers));
  limits->set_stream_idle_timeout_seconds(
      fill(limits->stream_idle_timeout_seconds(), kDefaultStreamIdleTimeoutSeconds));
  limits->set_max_connection_age_seconds(
      fill(limits->max_connection_age_seconds(), kDefaultMaxConnectionAgeSeconds));
  limits->set_ledger_scrub_interval_seconds(
      fill(limits->ledger_scrub_interval_seconds(), kDefaultLedgerScrubIntervalSeconds));
  if (limits->ledger_scrub_interval_seconds() > kMaxLedgerScrubIntervalSeconds) {
    return check.Error("limits.ledger_scrub_interval_seconds",
                       "must be at most 2592000 (30 days): damage to the ledger would go "
                       "unnoticed for longer");
  }
  if (limits->max_connection_age_seconds() > 24 * 3600) {
    return check.Error("limits.max_connection_age_seconds",
                       "must be at most 86400 (a day): a removed member or revoked certificate "
                       "keeps its open connections until then");
  }
  if (limits->user_call_burst() < limits->user_calls_per_second() ||
      limits->peer_call_burst() < limits->peer_calls_per_second()) {
    return check.Error("limits", "a call burst must be at least its calls per second");
  }
  return absl::OkStatus();
}

// The metrics endpoint: off unless `metrics.listen` is set; loopback only unless
// `metrics.allow_non_loopback` (it shows how busy the node is, to anyone who reaches it).
absl::Status CheckMetrics(const Checker& check, const v1::MetricsConfig& metrics) {
  if (metrics.listen().empty()) {
    if (metrics.allow_non_loopback()) {
      return check.Error("metrics.allow_non_loopback",
                         "is set but metrics.listen is not: set the address to serve metrics on");
    }
    return absl::OkStatus();
  }
  auto address = ParseMetricsAddress(metrics.listen());
  if (!address.ok()) return check.Error("metrics.listen", address.status().message());
  if (!address->loopback && !metrics.allow_non_loopback()) {
    return check.Error(
        "metrics.listen",
        absl::StrCat("\"", metrics.listen(),
                     "\" is not a loopback address; the endpoint has no TLS and no "
                     "authentication and shows how busy the node is: listen on 127.0.0.1 (and "
                     "scrape from this host), or set metrics.allow_non_loopback: true and "
                     "firewall the port to your Prometheus server"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::NodeConfig> LoadNodeConfig(const std::string& path) {
  v1::NodeConfig config;
  if (auto st = LoadYamlFileToProto(path, &config); !st.ok()) return st;
  const Checker check(path);
  ResolvePaths(DirName(path), &config);
  if (auto st = CheckIdentityAndFiles(check, config); !st.ok()) return st;
  if (auto st = CheckRosterTrust(check, config.roster()); !st.ok()) return st;
  if (auto st = NormalizeRevokedSerials(check, &config); !st.ok()) return st;
  if (auto st = CheckUsersAndLog(check, config); !st.ok()) return st;
  if (auto st = FillPurposes(check, &config); !st.ok()) return st;
  if (auto st = FillLimits(check, config.mutable_limits()); !st.ok()) return st;
  if (auto st = FillWitnessLimits(check, config.mutable_limits()); !st.ok()) return st;
  if (auto st = CheckMetrics(check, config.metrics()); !st.ok()) return st;
  return config;
}

absl::StatusOr<v1::SigningKeyConfig> LoadSigningKeyConfig(const std::string& path) {
  v1::NodeConfig config;
  if (auto st = LoadYamlFileToProto(path, &config); !st.ok()) return st;
  const Checker check(path);
  ResolvePaths(DirName(path), &config);
  if (auto st = check.Required("signing_key.key_id", config.signing_key().key_id()); !st.ok()) {
    return st;
  }
  if (auto st = CheckSigningKey(check, config.signing_key()); !st.ok()) return st;
  return config.signing_key();
}

}  // namespace corridor
