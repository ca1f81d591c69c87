#include "server/federation/peers.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/pki.h"
#include "ledger/base/log.h"

namespace corridor {
namespace {

// How often an unreachable peer is probed.
constexpr absl::Duration kUnhealthyProbeInterval = absl::Seconds(1);

}  // namespace

PeerProber::PeerProber(v1::NodeConfig config, std::shared_ptr<const v1::Roster> roster,
                       TlsIdentity own_identity, const Clock* clock)
    : config_(std::move(config)), roster_(std::move(roster)), clock_(clock) {
  for (const v1::Member& m : roster_->members()) {
    if (m.org() == config_.org()) continue;
    auto peer = std::make_unique<Peer>();
    peer->member = m;
    TlsIdentity id = own_identity;
    id.roots_pem = m.ca_cert_pem();  // only that org's CA may vouch for that org's node
    peer->channel =
        MakeMutualTlsChannel(id, m.endpoint(), "", config_.limits().max_message_bytes());
    peer->stub = v1::PeerService::NewStub(peer->channel);
    v1::PeerStatus initial;
    initial.set_org(m.org());
    initial.set_name(m.name());
    initial.set_endpoint(m.endpoint());
    initial.set_state(v1::PEER_STATE_UNKNOWN);
    absl::MutexLock lock(&mu_);
    status_[m.org()] = initial;
    peers_.push_back(std::move(peer));
  }
}

PeerProber::~PeerProber() { Stop(); }

void PeerProber::Start() {
  for (const auto& peer : peers_) {
    threads_.emplace_back([this, p = peer.get()] { RunPeer(p); });
  }
}

void PeerProber::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (grpc::ClientContext* probe : probes_) probe->TryCancel();
  }
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void PeerProber::RunPeer(const Peer* peer) {
  const absl::Duration interval = absl::Seconds(config_.limits().peer_probe_interval_seconds());
  while (true) {
    // An unreachable peer is probed often; a refusing one is not (each refused
    // probe is a denied entry in that peer's ledger).
    const bool unreachable = ProbeAndRecord(*peer) == v1::PEER_STATE_UNREACHABLE;
    absl::MutexLock lock(&mu_);
    auto stopping = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_; };
    mu_.AwaitWithTimeout(absl::Condition(&stopping),
                         unreachable ? std::min(interval, kUnhealthyProbeInterval) : interval);
    if (stopping_) return;
  }
}

void PeerProber::ProbeAll() {
  std::vector<std::thread> probes;
  for (const auto& peer : peers_) {
    probes.emplace_back([this, p = peer.get()] { ProbeAndRecord(*p); });
  }
  for (std::thread& t : probes) t.join();
}

v1::PeerState PeerProber::ProbeAndRecord(const Peer& peer) {
  bool was_healthy;
  {
    absl::MutexLock lock(&mu_);
    was_healthy = status_[peer.member.org()].state() == v1::PEER_STATE_HEALTHY;
  }
  // After an outage the channel may sit in its reconnect backoff (up to two
  // minutes in gRPC); probe a peer that was not healthy on a fresh attempt.
  if (!was_healthy) grpc::experimental::ChannelResetConnectionBackoff(peer.channel.get());
  v1::PeerStatus result = ProbeOne(peer);
  const bool healthy = result.state() == v1::PEER_STATE_HEALTHY;
  {
    absl::MutexLock lock(&mu_);
    v1::PeerStatus& current = status_[peer.member.org()];
    if (result.state() != current.state()) {
      log::Info("peer.state", {{"peer", peer.member.org()},
                               {"endpoint", peer.member.endpoint()},
                               {"state", v1::PeerState_Name(result.state())},
                               {"error", result.last_error()}});
    }
    if (!healthy) result.set_last_healthy_unix(current.last_healthy_unix());
    current = result;
  }
  if (healthy && on_reachable_) on_reachable_(peer.member.org());
  return result.state();
}

v1::PeerStatus PeerProber::ProbeOne(const Peer& peer) {
  v1::PeerStatus st;
  st.set_org(peer.member.org());
  st.set_name(peer.member.name());
  st.set_endpoint(peer.member.endpoint());
  grpc::ClientContext ctx;
  ctx.set_wait_for_ready(true);  // a reconnect just started counts; the deadline bounds it
  ctx.set_deadline(absl::ToChronoTime(absl::Now() +
                                      absl::Seconds(config_.limits().peer_call_timeout_seconds())));
  v1::HelloRequest req;
  const uint64_t ours = current_version_ ? current_version_() : roster_->version();
  req.set_roster_version(ours);
  v1::HelloResponse resp;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) ctx.TryCancel();
    probes_.insert(&ctx);
  }
  grpc::Status s = peer.stub->Hello(&ctx, req, &resp);
  {
    absl::MutexLock lock(&mu_);
    probes_.erase(&ctx);
  }
  if (!s.ok()) {
    const bool refused = s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                         s.error_code() == grpc::StatusCode::UNAUTHENTICATED;
    st.set_state(refused ? v1::PEER_STATE_REFUSED : v1::PEER_STATE_UNREACHABLE);
    st.set_last_error(s.error_message());
    return st;
  }
  // TLS proved the certificate chains to this org's CA; now check it names this org's node.
  const std::string want = pki::NodeSpiffeUri(config_.federation(), peer.member.org());
  auto info = pki::InspectCertificate(PeerCertificatePem(*ctx.auth_context()));
  bool uri_ok = false;
  if (info.ok()) {
    for (const auto& uri : info->uris) uri_ok = uri_ok || uri == want;
  }
  if (!uri_ok || resp.org() != peer.member.org()) {
    st.set_state(v1::PEER_STATE_REFUSED);
    st.set_last_error(
        absl::StrCat("peer at ", peer.member.endpoint(), " did not prove to be ", want));
    return st;
  }
  if (resp.roster_version() > ours && install_) {
    grpc::ClientContext fetch;
    fetch.set_deadline(absl::ToChronoTime(
        absl::Now() + absl::Seconds(config_.limits().peer_call_timeout_seconds())));
    v1::SignedRoster newer;
    if (peer.stub->GetRoster(&fetch, v1::GetRosterRequest(), &newer).ok()) {
      install_(newer.signed_roster(), peer.member.org());
    }
  }
  st.set_state(v1::PEER_STATE_HEALTHY);
  st.set_last_healthy_unix(absl::ToUnixSeconds(clock_->Now()));
  st.set_peer_roster_version(resp.roster_version());
  return st;
}

std::vector<v1::PeerStatus> PeerProber::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<v1::PeerStatus> out;
  for (const auto& [org, st] : status_) out.push_back(st);
  return out;
}

}  // namespace corridor
