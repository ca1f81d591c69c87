// A federation in one process: N corridor nodes (server/node Node objects)
// in the test's process, on loopback ports, all reading one FakeClock, built
// on a TestFederation on disk (CAs, certificates, signing keys, a signed
// roster, node configs). Tests call the nodes through typed stubs per node
// and user, over mutual TLS as corridorctl does, and move time by advancing
// the clock instead of sleeping (docs/testing.md, "In-process tests on a fake
// clock").
//
// Time: the clock starts at the real time (whole seconds, or
// options.start), so the certificates the TestFederation issued are valid,
// and moves only through Advance(). Everything a node dates or expires reads it: envelope and key
// validity, retention, delivery due times and backoff, outbox retention, rate
// limits. gRPC deadlines, connection retries and the prober's intervals are
// real time. Delivery: DeliverNow() returns once every running node's
// delivery thread has started every envelope due by the clock; what a call
// then does over the network is waited for with Eventually(), on the real
// condition, never with a fixed sleep.
//
// The nodes listen on ports TestFederation picked as free (the roster names
// every node's endpoint before any starts, so the ports cannot be 0).
// Test-only. Not thread-safe as a whole: set up, start and stop nodes from
// the test's thread; the stubs and the clock may be used from any thread.
#ifndef CORRIDOR_TESTS_TESTING_INPROC_FEDERATION_H_
#define CORRIDOR_TESTS_TESTING_INPROC_FEDERATION_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "corridor/v1/roster.pb.h"
#include "grpcpp/grpcpp.h"
#include "ledger/base/clock.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"

namespace corridor::testing {

struct InProcessFederationOptions {
  // The member orgs, in roster order. The roster has one agreement,
  // "test-agreement", between all of them for "case-referral".
  std::vector<std::pair<std::string, v1::OrgKind>> orgs = {{"union-sg", v1::ORG_KIND_UNION},
                                                           {"ministry-id", v1::ORG_KIND_MINISTRY}};
  // The users every node lists (name → roles); each org has them all.
  std::map<std::string, std::vector<std::string>> users = {{"cw", {"caseworker"}},
                                                           {"pros", {"prosecutor"}},
                                                           {"appr", {"approver"}},
                                                           {"aud", {"auditor"}},
                                                           {"adm", {"admin"}}};
  // Changes the roster (version 1) before the stewards sign it: more
  // agreements, key validity windows.
  std::function<void(v1::Roster&)> edit_roster;
  // Node limits over TestFederation's generous ones (name → YAML value).
  std::map<std::string, std::string> limits;
  // The delivery jitter seed of the i-th org's node is jitter_seed + i.
  uint64_t jitter_seed = 1;
  // Where the clock starts; InfinitePast means the real time now, in whole
  // seconds. The TestFederation's certificates are valid from the real time
  // now for kCertificateValidity.
  absl::Time start = absl::InfinitePast();
};

class InProcessFederation {
 public:
  explicit InProcessFederation(InProcessFederationOptions options = {});
  // Stops every node that runs.
  ~InProcessFederation();
  InProcessFederation(const InProcessFederation&) = delete;
  InProcessFederation& operator=(const InProcessFederation&) = delete;

  // Starts every org's node (a restart keeps its data directory). The error
  // of the first node that does not start.
  absl::Status StartAll();
  absl::Status Start(const std::string& org);
  // Shuts `org`'s node down (calls in flight get a second); its port is then
  // closed, as a node that is down. No-op if it does not run.
  void Stop(const std::string& org);
  bool running(const std::string& org) const { return nodes_.count(org) > 0; }
  Node& node(const std::string& org) { return *nodes_.at(org); }
  const v1::NodeConfig& config(const std::string& org) const { return configs_.at(org); }

  FakeClock& clock() { return clock_; }
  // Moves the shared clock by `d`, then DeliverNow().
  void Advance(absl::Duration d);
  // Every running node's delivery thread looks at its outbox; returns once
  // each has started what is due by the clock.
  void DeliverNow();

  // A channel to `at`'s node as `user` of `org` (default: of `at`); "node"
  // as `user` presents `org`'s node certificate. Cached: the same arguments
  // give the same channel, so many calls share one connection.
  std::shared_ptr<grpc::Channel> Channel(const std::string& at, const std::string& user,
                                         const std::string& org = "");
  // A fresh channel (its own connection) to `at` as `user` of `at`.
  std::shared_ptr<grpc::Channel> NewChannel(const std::string& at, const std::string& user);
  std::unique_ptr<v1::CaseService::Stub> Cases(const std::string& at,
                                               const std::string& user = "cw");
  std::unique_ptr<v1::ReferralService::Stub> Referrals(const std::string& at,
                                                       const std::string& user = "cw");
  std::unique_ptr<v1::AuditService::Stub> Audit(const std::string& at,
                                                const std::string& user = "aud");
  std::unique_ptr<v1::NodeService::Stub> NodeApi(const std::string& at,
                                                 const std::string& user = "adm");

  // A client context with a real-time deadline (scaled for sanitizer builds).
  static std::unique_ptr<grpc::ClientContext> Context(absl::Duration deadline = absl::Seconds(10));
  // Polls `done` until it holds (true) or `deadline` of real time, scaled
  // for sanitizer builds, has passed (false). For what a node does over the
  // network; never a pass/fail timing check.
  static bool Eventually(const std::function<bool()>& done,
                         absl::Duration deadline = absl::Seconds(20));

  TestFederation& files() { return fed_; }

 private:
  std::string CertificatePrefix(const std::string& org, const std::string& user)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(channels_mu_);

  const InProcessFederationOptions options_;
  TestFederation fed_;
  FakeClock clock_;
  std::map<std::string, v1::NodeConfig> configs_;
  std::map<std::string, uint64_t> seeds_;
  absl::Mutex channels_mu_;
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(channels_mu_);
  std::map<std::string, std::string> user_prefixes_ ABSL_GUARDED_BY(channels_mu_);
  // Declared last: the nodes go before the clock and the files they use.
  std::map<std::string, std::unique_ptr<Node>> nodes_;
};

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_INPROC_FEDERATION_H_
