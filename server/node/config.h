// Loading and validating corridord's configuration (schema: corridor.v1.NodeConfig
// in proto/corridor/v1/config.proto; guide: docs/configuration.md).
// Stateless; thread-safe.
#ifndef CORRIDOR_SERVER_NODE_CONFIG_H_
#define CORRIDOR_SERVER_NODE_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "corridor/v1/config.pb.h"

namespace corridor {

// Defaults applied to unset limits.
inline constexpr uint32_t kDefaultMaxMessageBytes = 4u << 20;
inline constexpr uint64_t kDefaultMaxEvidenceBytes = 64ull << 20;
inline constexpr uint32_t kDefaultPeerProbeIntervalSeconds = 10;
inline constexpr uint32_t kDefaultPeerCallTimeoutSeconds = 5;
inline constexpr uint32_t kDefaultMaxEnvelopeLifetimeDays = 30;
// limits.max_envelope_lifetime_days may not be below what senders use (7 days) or above a year.
inline constexpr uint32_t kMinEnvelopeLifetimeDays = 7;
inline constexpr uint32_t kMaxEnvelopeLifetimeDays = 365;
inline constexpr uint32_t kDefaultUserCallsPerSecond = 20;
inline constexpr uint32_t kDefaultUserCallBurst = 100;
inline constexpr uint32_t kDefaultPeerCallsPerSecond = 50;
inline constexpr uint32_t kDefaultPeerCallBurst = 200;
inline constexpr uint32_t kDefaultRefusalBudget = 50;
inline constexpr uint32_t kDefaultRefusalIntervalSeconds = 60;
inline constexpr uint32_t kDefaultMaxEvidenceTransfers = 4;
inline constexpr uint32_t kDefaultStreamIdleTimeoutSeconds = 60;
inline constexpr uint32_t kDefaultMaxConnectionAgeSeconds = 300;
inline constexpr uint32_t kDefaultLedgerScrubIntervalSeconds = 24 * 3600;
inline constexpr uint32_t kMaxLedgerScrubIntervalSeconds = 30 * 24 * 3600;
inline constexpr uint32_t kDefaultWitnessIntervalSeconds = 60;
inline constexpr uint32_t kMaxWitnessIntervalSeconds = 3600;

// Reads the YAML file at `path`, checks it against the schema (unknown keys and
// wrong types are errors), resolves relative file paths against the config
// file's directory, applies defaults, and validates: required keys present,
// referenced files exist and are readable, steward threshold satisfiable, user
// roles set. Every error is InvalidArgument (or NotFound for the config file
// itself) and names the file and the key.
absl::StatusOr<v1::NodeConfig> LoadNodeConfig(const std::string& path);

// Only the `signing_key` of the config at `path`, checked as LoadNodeConfig
// checks it (the key opens and signs), without the rest: for printing the
// key's public half before the node has a roster.
absl::StatusOr<v1::SigningKeyConfig> LoadSigningKeyConfig(const std::string& path);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_NODE_CONFIG_H_
