// Witness: this node's side of witnessing (docs/federation.md, "Witnessing").
//
// As a witness, on its own thread, every `interval` it asks each peer of the
// roster in force, one at a time with a deadline, for its checkpoint
// (PeerService.GetCheckpoint) and a consistency proof from the size it last
// verified; checks the peer's signature (keys from the roster) and the proof;
// records what it saw in this node's ledger ("witness.checkpoint") together
// with the new state; cosigns (C2SP tlog-cosignature v1.0.1, key name
// "<federation>/<org>", the org's roster signing key) and hands the
// cosignature back (PeerService.AddCosignature). A proof that fails, two
// checkpoints of one size with different roots, or a smaller size than
// already verified is a fork: both signed checkpoints are kept as evidence,
// recorded ("witness.fork"), logged at error level and shown in Status; the
// peer is no longer cosigned. The checkpoints other peers say they witnessed
// (gossip) are compared with this node's: same size, different root is a fork.
//
// As a witnessed node, it answers GetCheckpoint with its published checkpoint
// (which moves to the ledger's head once every peer has cosigned it, or once
// it is older than three intervals, so that witnesses cosign the same
// checkpoint), and keeps the cosignatures it is handed after checking them.
//
// State (column family kWitnessFamily): "seen/<org>" latest verified note of
// each peer; "fork/<org>" its ForkEvidence; "ckpt/<20-digit size>" this
// node's checkpoint note; "cosig/<20-digit size>/<org>" that note with the
// org's cosignature line. Thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_WITNESS_H_
#define CORRIDOR_SERVER_FEDERATION_WITNESS_H_

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "ledger/base/clock.h"
#include "ledger/crypto/crypto.h"
#include "ledger/ledger.h"
#include "ledger/note.h"
#include "rocksdb/db.h"
#include "server/audit/access_log.h"
#include "server/auth/identity.h"

namespace corridor {

inline constexpr char kWitnessFamily[] = "witness";

// Bounds on what peers send (checked before anything is parsed).
inline constexpr size_t kMaxCheckpointNoteBytes = 8192;
inline constexpr int kMaxNoteSignatures = 64;
inline constexpr int kMaxProofHashes = 64;
inline constexpr int kMaxGossipNotes = 256;

// A checkpoint of this node with the cosignatures it holds, as one note.
struct CosignedCheckpoint {
  std::string note;  // body, this node's signature, cosignature lines
  uint64_t size = 0;
  std::string root;                    // 32 bytes
  std::vector<std::string> cosigners;  // orgs
};

class Witness {
 public:
  using StubFor = std::function<std::shared_ptr<v1::PeerService::Stub>(const std::string& org)>;

  // Nothing is owned; all must outlive the witness. `key` signs cosignatures.
  Witness(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
          ledger::Ledger* ledger, AccessLog* log, rocksdb::DB* db,
          rocksdb::ColumnFamilyHandle* family, const Signer* key, StubFor stub_for,
          const Clock* clock);
  ~Witness();  // stops the thread

  // Reads the stored state; DataLoss if a stored fork does not parse.
  absl::Status Load();
  void Start();
  void Stop();
  // One round: every peer once, one at a time (tests and the thread).
  void RunOnce();

  // The key name this org cosigns under: "<federation>/<org>".
  static std::string WitnessName(const std::string& federation, const std::string& org);

  // PeerService.GetCheckpoint for `caller_org`.
  absl::StatusOr<v1::PeerCheckpoint> Answer(const std::string& caller_org,
                                            const v1::PeerCheckpointRequest& req);
  // PeerService.AddCosignature from `caller_org`: InvalidArgument for a note
  // too large or malformed, or not one of this node's checkpoints;
  // PermissionDenied if no cosignature by the caller's roster key verifies.
  // Returns how many witnesses' cosignatures this node holds for it.
  absl::StatusOr<uint32_t> AddCosignature(const std::string& caller_org,
                                          const std::string& cosigned_note);
  // The newest stored checkpoint with at least `k` cosignatures that verify
  // with the roster in force; FailedPrecondition if there is none.
  absl::StatusOr<CosignedCheckpoint> LatestCosigned(uint32_t k) const;

  // Adds the witness fields to a peer's status.
  void Annotate(v1::PeerStatus* status) const;

  // This node was restored from a backup: every checkpoint it shows peers from
  // now on carries `info` (PeerCheckpoint.restored), so a witness that sees the
  // rollback knows it for a restore (docs/operations.md, "Restore").
  void SetRestored(v1::RestoreInfo info);

 private:
  struct Seen {
    std::string note;
    note::Checkpoint checkpoint;
    int64_t unix = 0;
  };
  struct Peer {
    std::optional<Seen> seen;
    std::string error;
    std::optional<v1::ForkEvidence> fork;
    uint64_t cosigned_size = 0;  // of seen, handed back
    bool cosigned = false;
    // The restore the peer announced, its backup checkpoint verified.
    std::optional<v1::RestoreInfo> restored;
  };
  // The peer's restore notice, if it has one whose backup checkpoint verifies
  // with the peer's roster key at the size it claims; logged once.
  void NoteRestore(const std::string& org, const v1::PeerCheckpoint& resp);
  void Loop();
  void RoundFor(const std::string& org);
  // The checks of a peer's answer; records the outcome.
  void Check(const std::string& org, const v1::PeerCheckpoint& resp);
  void CheckGossip(const std::string& from, const v1::PeerCheckpoint& resp);
  void RecordFork(v1::ForkEvidence fork);
  void RecordSeen(const std::string& org, const std::string& note, const note::Checkpoint& cp);
  void RecordRefusedAnswer(const std::string& org, const absl::Status& why);
  void HandBack(const std::string& org);
  void SetError(const std::string& org, std::string error);
  std::vector<note::Verifier> Keys(const std::string& org, uint8_t type) const;
  absl::StatusOr<note::Checkpoint> OpenWithRoster(const std::string& org,
                                                  const std::string& text) const;
  // The checkpoint witnesses are shown now (see the class comment).
  std::string Published();
  std::vector<std::string> PeerOrgs() const;
  int64_t NowUnix() const;

  const v1::NodeConfig config_;
  const std::shared_ptr<IdentityResolver> identity_;
  ledger::Ledger* const ledger_;
  AccessLog* const log_;
  rocksdb::DB* const db_;
  rocksdb::ColumnFamilyHandle* const family_;
  const Signer* const key_;
  const StubFor stub_for_;
  const Clock* const clock_;
  const absl::Duration interval_;

  mutable absl::Mutex mu_;
  std::map<std::string, Peer> peers_ ABSL_GUARDED_BY(mu_);
  std::string published_ ABSL_GUARDED_BY(mu_);
  uint64_t published_size_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time published_at_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> published_cosigners_ ABSL_GUARDED_BY(mu_);
  std::optional<v1::RestoreInfo> restored_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* in_flight_ ABSL_GUARDED_BY(mu_) = nullptr;
  // Serializes AddCosignature's read-modify-write of the store.
  absl::Mutex store_mu_;
  std::thread thread_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_WITNESS_H_
