// A running Corridor node: the database, the roster in force, identity, the
// gRPC server (mutual TLS only, client certificates required) and the peer
// prober. Start() does every start-up check and refuses to start, with an
// error naming what is wrong, rather than run half-configured.
// Thread-safe.
#ifndef CORRIDOR_SERVER_NODE_NODE_H_
#define CORRIDOR_SERVER_NODE_NODE_H_

#include <functional>
#include <memory>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/lib/grpc_util.h"
#include "client/lib/roster.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/node.pb.h"
#include "corridor/v1/roster.pb.h"
#include "grpcpp/grpcpp.h"
#include "ledger/base/clock.h"
#include "ledger/crypto/crypto.h"
#include "server/audit/ledger_scrub.h"

namespace corridor {

class AccessLog;
class AuditServiceImpl;
class CaseServiceImpl;
class CaseStore;
class Exchange;
class Executor;
class HealthServiceImpl;
class ReflectionService;
class ReferralServiceImpl;
class EvidenceRequests;
class Attestations;
class EvidenceServiceImpl;
class RosterInForce;
class NodeServices;
class NodeStore;
class NodeMetrics;
namespace ledger {
class RocksDbLedger;
}
class PeerProber;
class Witness;
class IdentityResolver;
struct BackupManifest;

// The origin line of this node's ledger checkpoints: "<federation>/<org>".
std::string LedgerOrigin(const v1::NodeConfig& config);

// Test-only injection points; production leaves them empty.
struct NodeTestHooks {
  // Called before every ledger commit; an error fails it like a disk error.
  std::function<absl::Status()> ledger_before_commit;
  // The node's clock for everything that reads business time: the access log,
  // cases (retention, times recorded), the exchange (envelope times and
  // expiry, delivery due times and backoff, outbox retention), referrals,
  // identities and rate limits. Not owned; it must outlive the node.
  // Clock::Real() when null. gRPC deadlines and thread waits stay real time.
  const Clock* clock = nullptr;
  // Seeds the delivery backoff jitter (ExchangeOptions::jitter_seed); 0 draws one.
  uint64_t jitter_seed = 0;
};

class Node {
 public:
  // Opens the data directory, verifies the roster (signatures, version not
  // older than the one in force, this org listed with this node's CA and
  // signing key), checks the node certificate, and starts serving.
  static absl::StatusOr<std::unique_ptr<Node>> Start(const v1::NodeConfig& config,
                                                     NodeTestHooks hooks = {});
  // The checks Start makes on the configuration and the files it names, at
  // `now`, without opening the data directory or serving (corridord
  // --check-config): the roster file's steward signatures and threshold, this
  // org's membership (CA, certificate, signing key listed with this public key),
  // and the signing key neither revoked nor past its valid_until (the config's
  // own checks, the master key's among them, are LoadNodeConfig's). Returns what was checked, in
  // words; the first failure otherwise. Not checked: that the roster file is not older than the one
  // in force (that needs the data directory, which a running node holds).
  static absl::StatusOr<std::string> CheckStartable(const v1::NodeConfig& config, absl::Time now);
  ~Node();

  // The port actually bound (useful with listen port 0).
  int port() const { return port_; }
  // The metrics endpoint's port (metrics.listen; port 0 binds a free one), 0 if it does not run.
  int metrics_port() const;

  // SIGHUP: re-reads `config_path` and applies, without a restart, what can
  // change safely at run time — `users` (roles, suspension) and
  // `tls.revoked_serials` (the next call of every connection is re-checked),
  // `signing_key` (another key the roster in force lists as active for this
  // org with that public key: envelopes and receipts are signed with it from
  // now on; ledger checkpoints move to it at the next restart) and `log`.
  // Recorded in the ledger (`node.reload`, and `node.signing_key`) before it
  // takes effect. All or nothing: if any other field changed (those need a
  // restart), the file does not load, or the new key is not listed, nothing
  // changes and the error says why. Returns what changed, in words.
  absl::StatusOr<std::string> Reload(const std::string& config_path);

  // Stops accepting calls, lets calls in flight finish for up to `grace`,
  // stops the prober and closes the database. Idempotent.
  void Shutdown(absl::Duration grace);

  // Has the delivery thread look at the outbox now and returns once it has:
  // every item due by the node's clock has been sent (its call started, not
  // necessarily finished). For tests on a fake clock, after advancing it.
  void DeliverNow();
  // Delivery calls in flight plus receipts being recorded (for tests).
  int DeliveriesOutstanding() const;
  // Probes every peer once, now, and returns when all probes are done (a peer
  // that answers has its delivery backoff reset). For tests.
  void ProbePeersNow();
  // Records `evidence.no_response` for every request this node sent that is
  // still undecided past its deadline by the node's clock (docs/evidence.md);
  // runs by itself every minute. For tests on a fake clock.
  absl::Status SweepEvidenceDeadlines();
  // The latest finished background ledger check (nullopt before the first), for
  // tests and status.
  std::optional<LedgerCheck> LastLedgerCheck() const;

 private:
  Node() = default;
  // The steps of Start(), in order; each fills the members it names.
  // The data directory and its database (store_).
  absl::Status OpenStore(const v1::NodeConfig& config);
  // The ledger signed with this node's key, its executors and the access log.
  absl::Status OpenLedger(const v1::NodeConfig& config, const v1::Roster& roster,
                          std::function<absl::Status()> before_commit, const Clock* clock);
  // A data directory restored from a backup (kRestorePendingFile): verifies
  // the whole ledger and that it is the backup's, then records `node.restored`
  // with the restore (meta "restore/last") in one commit; loads restored_.
  absl::Status CompleteRestore(const v1::NodeConfig& config, absl::Time now);
  absl::Status RecordRestore(const v1::NodeConfig& config, const BackupManifest& manifest,
                             const std::string& manifest_sha, absl::Time now);
  // A data directory written before format versions: records `store.format`
  // and stores the version in the same commit.
  absl::Status RecordFormatUpgrade(const v1::NodeConfig& config);
  // The case store, under the master key; discards uploads a crash cut off.
  absl::Status OpenCases(const v1::NodeConfig& config);
  // Records a roster version new to this node as in force.
  absl::Status RecordRosterInForce(const v1::NodeConfig& config, const VerifiedRoster& roster,
                                   uint64_t stored_version);
  // Identity, services, exchange, prober and roster keeper, wired together.
  absl::Status StartServices(const v1::NodeConfig& config, const VerifiedRoster& roster,
                             const TlsIdentity& tls, const Clock* clock, uint64_t jitter_seed);
  // Evidence requests (evidence_, evidence_service_), wired to the exchange.
  void StartEvidence(const v1::NodeConfig& config, const Clock* clock);
  // The witness (docs/federation.md, "Witnessing"); started once the node serves.
  absl::Status MakeWitness(const v1::NodeConfig& config, const Clock* clock);
  // The background check of the whole ledger (started once the node serves).
  void MakeScrubber(const v1::NodeConfig& config);
  // The signing key `config` names, if the roster in force lists it as active for this org.
  absl::StatusOr<std::shared_ptr<const Signer>> ListedSigningKey(
      const v1::NodeConfig& config) const;
  // Starts the metrics endpoint if metrics.listen is set (once the node serves).
  absl::Status ServeMetrics(const v1::NodeConfig& config, const TlsIdentity& tls,
                            const Clock* clock);
  // Listens with mutual TLS and the auth processor, and serves every service.
  absl::Status Serve(const v1::NodeConfig& config, const v1::Roster& roster, const TlsIdentity& tls,
                     const Clock* clock);

  int port_ = 0;
  absl::Mutex reload_mu_;
  // The config in use (Reload replaces its reloadable parts).
  v1::NodeConfig config_ ABSL_GUARDED_BY(reload_mu_);
  bool started_ = false;  // Start succeeded
  // First, so it goes last: gRPC's interceptor and auth processor count into it.
  std::unique_ptr<NodeMetrics> metrics_;
  // The key in a file or in a PKCS#11 token (server/node/signing_key.h).
  std::unique_ptr<Signer> signing_key_;
  std::unique_ptr<NodeStore> store_;
  // Declared before the ledger: they must outlive its last completion.
  std::unique_ptr<Executor> completions_;
  std::unique_ptr<Executor> bulk_;
  std::unique_ptr<ledger::RocksDbLedger> ledger_;
  std::unique_ptr<CaseStore> case_store_;
  std::unique_ptr<AccessLog> access_log_;
  std::unique_ptr<LedgerScrubber> scrubber_;
  std::unique_ptr<CaseServiceImpl> case_service_;
  std::unique_ptr<AuditServiceImpl> audit_service_;
  std::unique_ptr<Exchange> exchange_;
  std::unique_ptr<ReferralServiceImpl> referral_service_;
  std::unique_ptr<EvidenceRequests> evidence_;
  std::unique_ptr<EvidenceServiceImpl> evidence_service_;
  std::unique_ptr<Attestations> attestations_;
  std::unique_ptr<RosterInForce> roster_;
  std::shared_ptr<IdentityResolver> identity_;
  std::unique_ptr<PeerProber> prober_;
  // Witnessing of peers' checkpoints and the cosignatures peers hand back.
  std::unique_ptr<Witness> witness_;
  std::unique_ptr<NodeServices> services_;
  std::unique_ptr<HealthServiceImpl> health_;
  std::unique_ptr<ReflectionService> reflection_;
  std::unique_ptr<grpc::Server> server_;
  bool shut_down_ = false;
  // The latest restore from a backup (Status, the witness), if any.
  std::optional<v1::RestoreInfo> restored_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_NODE_NODE_H_
