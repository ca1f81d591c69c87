#include "server/node/node_metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/pki.h"
#include "grpcpp/grpcpp.h"
#include "ledger/ledger.h"
#include "server/federation/exchange.h"
#include "server/federation/peers.h"
#include "server/federation/witness.h"

namespace corridor {
namespace {

using metrics::Sample;
using metrics::Type;

// The states a peer can be in, as label values (PeerState without its prefix).
const std::vector<std::pair<v1::PeerState, std::string>>& PeerStates() {
  static const auto* states = new std::vector<std::pair<v1::PeerState, std::string>>{
      {v1::PEER_STATE_UNKNOWN, "unknown"},
      {v1::PEER_STATE_JOINING, "joining"},
      {v1::PEER_STATE_HEALTHY, "healthy"},
      {v1::PEER_STATE_UNREACHABLE, "unreachable"},
      {v1::PEER_STATE_REFUSED, "refused"}};
  return *states;
}

// The prober's view of every peer, with the witness's (one lock each, briefly).
std::vector<v1::PeerStatus> Peers(const NodeMetricsSources& s) {
  std::vector<v1::PeerStatus> peers = s.prober->Snapshot();
  for (v1::PeerStatus& p : peers) s.witness->Annotate(&p);
  return peers;
}

// One sample per peer of `value(peer)`.
std::function<std::vector<Sample>()> PerPeer(const NodeMetricsSources& s,
                                             std::function<double(const v1::PeerStatus&)> value) {
  return [s, value = std::move(value)] {
    std::vector<Sample> out;
    for (const v1::PeerStatus& p : Peers(s)) out.push_back({{p.org()}, value(p)});
    return out;
  };
}

double SecondsUntil(absl::Time t, const Clock* clock) {
  return absl::ToDoubleSeconds(t - clock->Now());
}

}  // namespace

NodeMetrics::NodeMetrics(const v1::NodeConfig& config, const std::vector<std::string>& methods)
    : org_(config.org()), signing_key_id_(config.signing_key().key_id()) {
  registry_
      .AddGauge("corridor_build_info",
                "Always 1; the labels say what runs: the gRPC library version and the "
                "compiler corridord was built with.",
                {"grpc_version", "compiler"})
      .With({grpc::Version(), __VERSION__})
      .Set(1);
  registry_.AddGauge("corridor_start_time_seconds", "When this corridord process started (Unix).")
      .With({})
      .Set(absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  requests_ = std::make_unique<RequestMetrics>(&registry_, methods);
  ledger_append_ = &registry_
                        .AddHistogram("corridor_ledger_append_duration_seconds",
                                      "Time from an access event's append to its being durable "
                                      "(group commit and fsync included).",
                                      metrics::Histogram::LatencyBounds())
                        .With({});
}

NodeMetrics::~NodeMetrics() { Stop(); }

void NodeMetrics::Collect(NodeMetricsSources s) {
  registry_.AddCollector(
      "corridor_ledger_entries", "Entries in this node's ledger (its size).", Type::kGauge, {},
      [s] {
        return std::vector<Sample>{{{}, static_cast<double>(s.ledger->head().size)}};
      });
  registry_.AddCollector(
      "corridor_ledger_writable",
      "1 while the ledger accepts appends; 0 while it refuses them (e.g. the disk is full).",
      Type::kGauge, {}, [s] {
        return std::vector<Sample>{{{}, s.ledger->health().ok() ? 1.0 : 0.0}};
      });
  registry_.AddCollector("corridor_outbox_pending",
                         "Envelopes waiting in the outbox for delivery, per peer.", Type::kGauge,
                         {"peer"}, [s] {
                           std::vector<Sample> out;
                           for (const auto& lane : s.exchange->OutboxStats()) {
                             out.push_back({{lane.peer}, static_cast<double>(lane.pending)});
                           }
                           return out;
                         });
  registry_.AddCollector(
      "corridor_outbox_oldest_pending_age_seconds",
      "Age of the oldest envelope waiting in the outbox, per peer with anything waiting.",
      Type::kGauge, {"peer"}, [s] {
        std::vector<Sample> out;
        const int64_t now = absl::ToUnixSeconds(s.clock->Now());
        for (const auto& lane : s.exchange->OutboxStats()) {
          out.push_back({{lane.peer}, static_cast<double>(now - lane.oldest_created_unix)});
        }
        return out;
      });
  CollectPeers(s);
  CollectTrust(s);
}

void NodeMetrics::CollectPeers(const NodeMetricsSources& s) {
  registry_.AddCollector("corridor_peer_up",
                         "1 if the peer's node answered the last probe and proved its identity.",
                         Type::kGauge, {"peer"}, PerPeer(s, [](const v1::PeerStatus& p) {
                           return p.state() == v1::PEER_STATE_HEALTHY ? 1.0 : 0.0;
                         }));
  registry_.AddCollector(
      "corridor_peer_state",
      "1 for the state the peer is in (unknown, joining, healthy, unreachable, refused), 0 for "
      "the others.",
      Type::kGauge, {"peer", "state"}, [s] {
        std::vector<Sample> out;
        for (const v1::PeerStatus& p : Peers(s)) {
          for (const auto& [state, name] : PeerStates()) {
            out.push_back({{p.org(), name}, p.state() == state ? 1.0 : 0.0});
          }
        }
        return out;
      });
  registry_.AddCollector("corridor_peer_last_healthy_timestamp_seconds",
                         "When the peer last answered a probe (Unix); 0 if never since start.",
                         Type::kGauge, {"peer"}, PerPeer(s, [](const v1::PeerStatus& p) {
                           return static_cast<double>(p.last_healthy_unix());
                         }));
  registry_.AddCollector("corridor_witness_last_witnessed_timestamp_seconds",
                         "When this node last verified and cosigned the peer's checkpoint (Unix); "
                         "0 if never.",
                         Type::kGauge, {"peer"}, PerPeer(s, [](const v1::PeerStatus& p) {
                           return static_cast<double>(p.witnessed_unix());
                         }));
  registry_.AddCollector("corridor_witness_witnessed_size",
                         "Size of the peer's ledger at the checkpoint this node last cosigned.",
                         Type::kGauge, {"peer"}, PerPeer(s, [](const v1::PeerStatus& p) {
                           return static_cast<double>(p.witnessed_size());
                         }));
  registry_.AddCollector(
      "corridor_witness_round_failed",
      "1 if the last witness round with the peer did not complete.", Type::kGauge, {"peer"},
      PerPeer(s, [](const v1::PeerStatus& p) { return p.witness_error().empty() ? 0.0 : 1.0; }));
  registry_.AddCollector(
      "corridor_witness_fork",
      "1 once this node has seen the peer show two inconsistent checkpoints (a fork).",
      Type::kGauge, {"peer"},
      PerPeer(s, [](const v1::PeerStatus& p) { return p.has_fork() ? 1.0 : 0.0; }));
}

void NodeMetrics::CollectTrust(const NodeMetricsSources& s) {
  // The node's own certificate and CA cannot change while it runs.
  std::vector<std::pair<std::string, absl::Time>> certificates;
  for (const auto& [name, pem] :
       {std::pair<std::string, std::string>{"node", s.tls.cert_pem}, {"ca", s.tls.roots_pem}}) {
    if (auto info = pki::InspectCertificate(pem); info.ok()) {
      certificates.push_back({name, info->not_after});
    }
  }
  registry_.AddCollector(
      "corridor_certificate_expiry_seconds",
      "Seconds until the node's TLS certificate (certificate=\"node\") or its org's CA "
      "(certificate=\"ca\") expires; negative once expired.",
      Type::kGauge, {"certificate"}, [certificates, clock = s.clock] {
        std::vector<Sample> out;
        for (const auto& [name, t] : certificates) out.push_back({{name}, SecondsUntil(t, clock)});
        return out;
      });
  registry_.AddCollector(
      "corridor_roster_version", "Version of the roster in force.", Type::kGauge, {}, [s] {
        return std::vector<Sample>{{{}, static_cast<double>(s.roster()->version())}};
      });
  registry_.AddCollector(
      "corridor_roster_ca_expiry_seconds",
      "Seconds until each member's CA certificate in the roster in force expires: a member "
      "whose CA expired can no longer connect until a new roster lists a new CA.",
      Type::kGauge, {"org"}, [s] {
        std::vector<Sample> out;
        for (const v1::Member& m : s.roster()->members()) {
          if (auto info = pki::InspectCertificate(m.ca_cert_pem()); info.ok()) {
            out.push_back({{m.org()}, SecondsUntil(info->not_after, s.clock)});
          }
        }
        return out;
      });
  registry_.AddCollector(
      "corridor_signing_key_expiry_seconds",
      "Seconds until this node's signing key's valid_until in the roster in force; absent when "
      "the roster gives it no end.",
      Type::kGauge, {}, [s, org = org_, key_id = signing_key_id_] {
        std::vector<Sample> out;
        for (const v1::Member& m : s.roster()->members()) {
          for (const v1::SigningKey& k : m.signing_keys()) {
            absl::Time until;
            std::string err;
            if (m.org() == org && k.key_id() == key_id && !k.valid_until().empty() &&
                absl::ParseTime(absl::RFC3339_full, k.valid_until(), &until, &err)) {
              out.push_back({{}, SecondsUntil(until, s.clock)});
            }
          }
        }
        return out;
      });
}

absl::Status NodeMetrics::Serve(const std::string& listen) {
  auto endpoint = MetricsEndpoint::Start(listen, [this] { return registry_.Render(); });
  if (!endpoint.ok()) return endpoint.status();
  endpoint_ = *std::move(endpoint);
  return absl::OkStatus();
}

}  // namespace corridor
