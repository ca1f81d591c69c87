// PeerProber: keeps one mutual-TLS channel per roster member and periodically
// says Hello, proving over TLS that each peer is the org the roster names
// (its certificate chains to that org's CA and carries that org's node URI).
// Each peer is probed on its own thread, so a frozen peer delays no other's
// probe; an unreachable peer is probed every second (its channel's
// reconnect backoff reset first) so its return is noticed at once. Thread-safe;
// the set_* hooks must be set before Start.
#ifndef CORRIDOR_SERVER_FEDERATION_PEERS_H_
#define CORRIDOR_SERVER_FEDERATION_PEERS_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
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

  std::vector<v1::PeerStatus> Snapshot() const;

 private:
  struct Peer {
    v1::Member member;
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::PeerService::Stub> stub;
  };
  v1::PeerStatus ProbeOne(const Peer& peer);
  // Probes `peer`, records the result and tells on_reachable_; returns its state.
  v1::PeerState ProbeAndRecord(const Peer& peer);
  void RunPeer(const Peer* peer);

  const v1::NodeConfig config_;
  const std::shared_ptr<const v1::Roster> roster_;
  const Clock* const clock_;
  std::vector<std::unique_ptr<Peer>> peers_;  // immutable after construction

  mutable absl::Mutex mu_;
  std::map<std::string, v1::PeerStatus> status_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  // Probes in progress, cancelled by Stop.
  std::set<grpc::ClientContext*> probes_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
  std::function<uint64_t()> current_version_;
  std::function<void(const std::string&)> on_reachable_;
  std::function<void(const std::string&, const std::string&)> install_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_PEERS_H_
