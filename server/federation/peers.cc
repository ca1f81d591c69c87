#include "server/federation/peers.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/pki.h"
#include "ledger/base/log.h"

namespace corridor {
namespace {

// How often an unreachable peer is probed.
constexpr absl::Duration kUnhealthyProbeInterval = absl::Seconds(1);

}  // namespace

std::string DescribePeerCallError(const grpc::Status& status) {
  const std::string& m = status.error_message();
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      (absl::StrContains(m, "Socket closed") || absl::StrContains(m, "andshake") ||
       absl::StrContains(m, "Connection reset"))) {
    return absl::StrCat(
        "the peer closed the connection during the TLS handshake: it may not trust this node's "
        "CA yet (is the roster version that lists this node in force there?) or this node's "
        "certificate is revoked or expired (",
        m, ")");
  }
  if (status.error_code() == grpc::StatusCode::UNAVAILABLE &&
      absl::StrContains(m, "Connection refused")) {
    return absl::StrCat("nothing listens at the peer's endpoint: is its node running? (", m, ")");
  }
  return m;
}

PeerProber::PeerProber(v1::NodeConfig config, std::shared_ptr<const v1::Roster> roster,
                       TlsIdentity own_identity, const Clock* clock)
    : config_(std::move(config)), own_identity_(std::move(own_identity)), clock_(clock) {
  absl::MutexLock lock(&mu_);
  roster_version_ = roster->version();
  for (const v1::Member& m : roster->members()) {
    if (m.org() != config_.org()) AddLocked(MakePeer(m), v1::PEER_STATE_UNKNOWN);
  }
}

PeerProber::~PeerProber() { Stop(); }

std::shared_ptr<PeerProber::Peer> PeerProber::MakePeer(const v1::Member& m) const {
  auto peer = std::make_shared<Peer>();
  peer->member = m;
  TlsIdentity id = own_identity_;
  id.roots_pem = m.ca_cert_pem();  // only that org's CA may vouch for that org's node
  peer->channel = MakeMutualTlsChannel(id, m.endpoint(), "", config_.limits().max_message_bytes());
  peer->stub = v1::PeerService::NewStub(peer->channel);
  return peer;
}

void PeerProber::AddLocked(std::shared_ptr<Peer> peer, v1::PeerState state) {
  const v1::Member& m = peer->member;
  v1::PeerStatus initial;
  initial.set_org(m.org());
  initial.set_name(m.name());
  initial.set_endpoint(m.endpoint());
  initial.set_state(state);
  status_[m.org()] = initial;
  peers_[m.org()] = peer;
  if (started_ && !stopping_) threads_.emplace_back([this, peer] { RunPeer(peer); });
}

void PeerProber::RemoveLocked(Peer* peer) {
  peer->removed = true;
  for (auto& [ctx, p] : probes_) {
    if (p == peer) ctx->TryCancel();
  }
}

void PeerProber::SetRoster(std::shared_ptr<const v1::Roster> roster) {
  absl::MutexLock lock(&mu_);
  if (roster->version() <= roster_version_) return;  // an older install's call, overtaken
  roster_version_ = roster->version();
  std::map<std::string, const v1::Member*> listed;
  for (const v1::Member& m : roster->members()) {
    if (m.org() != config_.org()) listed[m.org()] = &m;
  }
  for (auto it = peers_.begin(); it != peers_.end();) {
    if (listed.count(it->first) > 0) {
      ++it;
      continue;
    }
    log::Warn("peer.removed", {{"peer", it->first},
                               {"roster_version", roster_version_},
                               {"detail", "not in the roster in force: no longer probed"}});
    RemoveLocked(it->second.get());
    status_.erase(it->first);
    it = peers_.erase(it);
  }
  for (const auto& [org, m] : listed) {
    auto it = peers_.find(org);
    if (it != peers_.end() && it->second->member.endpoint() == m->endpoint() &&
        it->second->member.ca_cert_pem() == m->ca_cert_pem()) {
      it->second->member.set_name(m->name());  // only shown
      status_[org].set_name(m->name());
      continue;
    }
    // New, or reached at another endpoint or under another CA: verify afresh.
    if (it != peers_.end()) RemoveLocked(it->second.get());
    log::Info("peer.joining",
              {{"peer", org}, {"endpoint", m->endpoint()}, {"roster_version", roster_version_}});
    AddLocked(MakePeer(*m), v1::PEER_STATE_JOINING);
  }
}

std::vector<std::shared_ptr<PeerProber::Peer>> PeerProber::Peers() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::shared_ptr<Peer>> out;
  for (const auto& [org, peer] : peers_) out.push_back(peer);
  return out;
}

void PeerProber::Start() {
  absl::MutexLock lock(&mu_);
  started_ = true;
  for (const auto& [org, peer] : peers_) {
    threads_.emplace_back([this, p = peer] { RunPeer(p); });
  }
}

void PeerProber::Stop() {
  std::vector<std::thread> threads;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (auto& [ctx, peer] : probes_) ctx->TryCancel();
    threads.swap(threads_);
  }
  for (std::thread& t : threads) {
    if (t.joinable()) t.join();
  }
}

void PeerProber::RunPeer(std::shared_ptr<Peer> peer) {
  const absl::Duration interval = absl::Seconds(config_.limits().peer_probe_interval_seconds());
  while (true) {
    // An unreachable peer is probed often; a refusing one is not (each refused
    // probe is a denied entry in that peer's ledger).
    const v1::PeerState state = ProbeAndRecord(*peer);
    const bool often = state == v1::PEER_STATE_UNREACHABLE || state == v1::PEER_STATE_JOINING;
    absl::MutexLock lock(&mu_);
    auto done = [this, &peer]()
                    ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || peer->removed; };
    mu_.AwaitWithTimeout(absl::Condition(&done),
                         often ? std::min(interval, kUnhealthyProbeInterval) : interval);
    if (done()) return;
  }
}

void PeerProber::ProbeAll() {
  std::vector<std::thread> probes;
  for (const auto& peer : Peers()) {
    probes.emplace_back([this, peer] { ProbeAndRecord(*peer); });
  }
  for (std::thread& t : probes) t.join();
}

v1::PeerState PeerProber::ProbeAndRecord(const Peer& peer) {
  bool was_healthy;
  {
    absl::MutexLock lock(&mu_);
    if (peer.removed) return v1::PEER_STATE_UNKNOWN;
    was_healthy = status_[peer.member.org()].state() == v1::PEER_STATE_HEALTHY;
  }
  // After an outage the channel may sit in its reconnect backoff (up to two
  // minutes in gRPC); probe a peer that was not healthy on a fresh attempt.
  if (!was_healthy) grpc::experimental::ChannelResetConnectionBackoff(peer.channel.get());
  v1::PeerStatus result = ProbeOne(peer);
  const bool healthy = result.state() == v1::PEER_STATE_HEALTHY;
  {
    absl::MutexLock lock(&mu_);
    if (peer.removed) return v1::PEER_STATE_UNKNOWN;  // no longer in the roster in force
    v1::PeerStatus& current = status_[peer.member.org()];
    // A joining member stays joining, with the last error, until verified once.
    if (!healthy && current.state() == v1::PEER_STATE_JOINING) {
      result.set_state(v1::PEER_STATE_JOINING);
    }
    if (result.state() != current.state()) {
      const bool worse =
          current.state() == v1::PEER_STATE_HEALTHY || result.state() == v1::PEER_STATE_REFUSED;
      log::Emit(worse ? log::Level::kWarn : log::Level::kInfo, "peer.state",
                {{"peer", peer.member.org()},
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
  // The roster keeper's lock is never taken under ours (it calls SetRoster holding its own).
  uint64_t ours = current_version_ ? current_version_() : 0;
  {
    absl::MutexLock lock(&mu_);
    if (ours == 0) ours = roster_version_;
    if (stopping_ || peer.removed) ctx.TryCancel();
    probes_[&ctx] = &peer;
  }
  req.set_roster_version(ours);
  v1::HelloResponse resp;
  grpc::Status s = peer.stub->Hello(&ctx, req, &resp);
  {
    absl::MutexLock lock(&mu_);
    probes_.erase(&ctx);
  }
  if (!s.ok()) {
    const bool refused = s.error_code() == grpc::StatusCode::PERMISSION_DENIED ||
                         s.error_code() == grpc::StatusCode::UNAUTHENTICATED;
    st.set_state(refused ? v1::PEER_STATE_REFUSED : v1::PEER_STATE_UNREACHABLE);
    st.set_last_error(DescribePeerCallError(s));
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
