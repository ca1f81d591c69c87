// Everything the node's metrics endpoint shows (docs/operations.md, "Monitor",
// lists each metric): the registry, the gRPC request metrics, the ledger's
// append latency, and collectors that read the ledger, the outbox, the peer
// prober, the witness, the roster in force and the node's certificates at
// each scrape. No label carries personal data: method names, status codes and
// federation org ids only. Thread-safe.
#ifndef CORRIDOR_SERVER_NODE_NODE_METRICS_H_
#define CORRIDOR_SERVER_NODE_NODE_METRICS_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/base/clock.h"
#include "server/common/metrics.h"
#include "server/common/request_metrics.h"
#include "server/node/metrics_endpoint.h"

namespace corridor {

class Exchange;
class PeerProber;
class Witness;
namespace ledger {
class Ledger;
}

// What the collectors read; every pointer must outlive the endpoint (Stop first).
struct NodeMetricsSources {
  const ledger::Ledger* ledger = nullptr;
  const Exchange* exchange = nullptr;
  const PeerProber* prober = nullptr;
  const Witness* witness = nullptr;
  // The roster in force, now.
  std::function<std::shared_ptr<const v1::Roster>()> roster;
  const Clock* clock = nullptr;  // "seconds until" and ages are by the node's clock
  TlsIdentity tls;               // the node certificate and the org's CA
};

class NodeMetrics {
 public:
  // `methods`: every gRPC path the node serves (other paths count as "other").
  NodeMetrics(const v1::NodeConfig& config, const std::vector<std::string>& methods);
  ~NodeMetrics();

  RequestMetrics& requests() { return *requests_; }
  metrics::Histogram& ledger_append() { return *ledger_append_; }
  const metrics::Registry& registry() const { return registry_; }

  // Adds the collectors over `sources` (once, before Serve).
  void Collect(NodeMetricsSources sources);
  // Starts the endpoint on `listen` (MetricsEndpoint::Start's errors).
  absl::Status Serve(const std::string& listen);
  // The endpoint's port; 0 when it does not run.
  int port() const { return endpoint_ ? endpoint_->port() : 0; }
  // Stops the endpoint (no scrape runs once this returns). Idempotent.
  void Stop() { endpoint_.reset(); }

 private:
  void CollectPeers(const NodeMetricsSources& sources);
  void CollectTrust(const NodeMetricsSources& sources);

  const std::string org_, signing_key_id_;
  metrics::Registry registry_;
  std::unique_ptr<RequestMetrics> requests_;
  metrics::Histogram* ledger_append_;
  std::unique_ptr<MetricsEndpoint> endpoint_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_NODE_NODE_METRICS_H_
