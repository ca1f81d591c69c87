// PeerProber: keeps one mutual-TLS channel per member of the roster in force
// and periodically says Hello, proving over TLS that each peer is the org the
// roster names (its certificate chains to that org's CA and carries that org's
// node URI). Each peer is probed on its own thread, so a frozen peer delays no
// other's probe; an unreachable peer is probed every second (its channel's
// reconnect backoff reset first) so its return is noticed at once.
// SetRoster follows a new roster in force while running: a member it brings in
// (or whose endpoint or CA it changes) is probed at once and shows as
// `joining` until a probe verifies it; a member it drops is no longer probed
// or listed. Thread-safe; the set_* hooks must be set before Start.
#ifndef CORRIDOR_SERVER_FEDERATION_PEERS_H_
#define CORRIDOR_SERVER_FEDERATION_PEERS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "corridor/v1/roster.pb.h"
#include "ledger/base/clock.h"

namespace corridor {

// A failed call to a peer, in words naming the likely cause: a connection the
// peer closed during the TLS handshake usually means it does not trust this
// node's CA yet (it lacks the roster version that lists this node).
std::string DescribePeerCallError(const grpc::Status& status);

class PeerProber {
 public:
  // `clock` (not owned; it must outlive the prober) dates the last healthy
  // probe; the probe intervals and call deadlines are real time.
  PeerProber(v1::NodeConfig config, std::shared_ptr<const v1::Roster> roster,
             TlsIdentity own_identity, const Clock* clock = &Clock::Real());
  ~PeerProber();  // stops the thread

  // When a peer reports a newer roster version than `current_version()`, the
  // prober fetches it from that peer and hands it to `install` (which verifies it).
  void set_roster_sync(
      std::function<uint64_t()> current_version,
      std::function<void(const std::string& json, const std::string& from_org)> install) {
    current_version_ = std::move(current_version);
    install_ = std::move(install);
  }

  // Called on a prober thread after every successful probe of `org` (the
  // exchange resets that peer's delivery backoff). Must be short.
  void set_on_reachable(std::function<void(const std::string& org)> on_reachable) {
    on_reachable_ = std::move(on_reachable);
  }

  void Start();
  void Stop();
  // Probes every peer once, now, concurrently; returns when all are done.
  void ProbeAll();
  // Follows `roster`, the new roster in force (see the class comment).
  void SetRoster(std::shared_ptr<const v1::Roster> roster);

  std::vector<v1::PeerStatus> Snapshot() const;

 private:
  struct Peer {
    v1::Member member;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::PeerService::Stub> stub;
    bool removed = false;  // guarded by the prober's mu_
  };
  std::shared_ptr<Peer> MakePeer(const v1::Member& m) const;
  // Adds `peer` in `state`, and starts its thread if the prober runs.
  void AddLocked(std::shared_ptr<Peer> peer, v1::PeerState state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops probing `peer`: cancels its probe in flight, its thread ends.
  void RemoveLocked(Peer* peer) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::vector<std::shared_ptr<Peer>> Peers() const;
  v1::PeerStatus ProbeOne(const Peer& peer);
  // Probes `peer`, records the result and tells on_reachable_; returns its state.
  v1::PeerState ProbeAndRecord(const Peer& peer);
  void RunPeer(std::shared_ptr<Peer> peer);

  const v1::NodeConfig config_;
  const TlsIdentity own_identity_;
  const Clock* const clock_;

  mutable absl::Mutex mu_;
  uint64_t roster_version_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::shared_ptr<Peer>> peers_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, v1::PeerStatus> status_ ABSL_GUARDED_BY(mu_);
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Probes in progress and their peer, cancelled by Stop or the peer's removal.
  std::map<grpc::ClientContext*, const Peer*> probes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(mu_);
  std::function<uint64_t()> current_version_;
  std::function<void(const std::string&)> on_reachable_;
  std::function<void(const std::string&, const std::string&)> install_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_PEERS_H_
