// CaseStore: cases at rest. Each case has its own AES-256-GCM data key,
// wrapped by the node's master key and kept in a separate key store
// (data_dir/keystore, its own RocksDB) — never in the main database, so a
// backup of the main database holds ciphertext only. Erasing a case destroys
// its data key (crypto-shredding): its content cannot be opened again from the
// database or any backup of it, while its ledger entries stay and verify.
//
// Changes are returned as ledger::Mutations (ledger/mutation.h; key spaces
// "cases", "evidence", "meta") for the caller to commit together with the
// ledger entries that record them. Thread-safe.
//
// Data keys come from a pool made ahead of time (docs/architecture.md, "One
// durable step per write"): each key store slot ("slot/<hex>") is written,
// synced, with a "pool/<slot>" marker before any case uses it, so creating a
// case costs only the ledger's group-committed fsync. The create's batch
// records "keyslot/<slot>" → case id in the main database; a slot whose
// marker has no such record at start-up was never used and is deleted.
// Erasing a case records "shred/<key store key>" in the erase's batch; the
// key is destroyed after the commit, and any marker left by a crash is
// finished at the next start.
#ifndef CORRIDOR_SERVER_STORE_CASE_STORE_H_
#define CORRIDOR_SERVER_STORE_CASE_STORE_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "corridor/v1/case.pb.h"
#include "corridor/v1/storage.pb.h"
#include "ledger/crypto/secret.h"
#include "ledger/mutation.h"
#include "rocksdb/db.h"

namespace corridor {

inline constexpr char kCasesFamily[] = "cases";
inline constexpr char kEvidenceFamily[] = "evidence";
// Evidence is stored sealed in chunks of this size.
inline constexpr size_t kEvidenceChunkSize = 64 * 1024;

// For a case received by referral: PermissionDenied once the originator's
// retention date has passed (the record is closed to reads), OK otherwise.
absl::Status RetentionAllowsRead(const v1::Case& c, absl::Time now);

class CaseStore {
 public:
  // `db`/`cases` are the node's database and its "cases" family; the key store
  // is opened (created) at `keystore_dir`; `master_key` is 32 bytes.
  // `meta` is the node's metadata family (slot assignments, shred markers).
  // Opening finishes any key destruction a crash interrupted and deletes
  // pooled keys that no case uses. `keystore_env`: the RocksDB environment of
  // the key store (tests inject file-system faults, e.g. power loss, as
  // NodeStoreOptions::env does for the main database); default (nullptr):
  // rocksdb::Env::Default(). Must outlive the store.
  static absl::StatusOr<std::unique_ptr<CaseStore>> Open(
      rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cases, rocksdb::ColumnFamilyHandle* evidence,
      rocksdb::ColumnFamilyHandle* meta, const std::string& keystore_dir, std::string master_key,
      rocksdb::Env* keystore_env = nullptr);
  ~CaseStore();

  // The key store's database (wrapped data keys only), for an online backup
  // of it (a RocksDB checkpoint); owned by the case store.
  rocksdb::DB* keystore() const { return keystore_.get(); }

  // A new case id, e.g. "C-3F9A0C12D4E7".
  static std::string NewCaseId();

  // Takes a durable data key from the pool for `c.id()` and returns the write
  // that stores the sealed case and the key's assignment. Refills the pool
  // (one synced key store write for kKeyPoolBatch keys) when it is empty.
  absl::StatusOr<std::unique_ptr<ledger::Mutation>> PrepareCreate(const v1::Case& c);
  // The write that replaces the stored case with `c` (same id, key exists).
  absl::StatusOr<std::unique_ptr<ledger::Mutation>> PrepareUpdate(const v1::Case& c);
  // Adds the sealed write of `c` (key exists) to `batch`.
  absl::Status PutCase(ledger::Mutation* batch, const v1::Case& c) const;
  // The write that erases the case's content, marks it erased and records
  // that its key must be destroyed; call DestroyKey after it is durable.
  absl::StatusOr<std::unique_ptr<ledger::Mutation>> PrepareErase(const std::string& id);
  // Destroys the data key of erased case `id`, compacts the key store so no
  // copy remains in its files, and clears the shred marker. Idempotent.
  absl::Status DestroyKey(const std::string& id);
  // Destroys every key whose erasure committed but whose destruction did not
  // finish (a crash in between). Called by Open.
  absl::Status FinishPendingDestruction();

  // Seals `plaintext` under the data key of live case `id`, bound to `aad`:
  // for copies of the case's personal data kept outside the case record (the
  // outbox), so that erasing the case shreds them too. NotFound if there is
  // no such case; FailedPrecondition if it has been erased.
  absl::StatusOr<std::string> SealForCase(const std::string& id, absl::string_view aad,
                                          absl::string_view plaintext) const;
  // Opens what SealForCase sealed. NotFound / FailedPrecondition as above
  // (after erasure the key is gone: nothing sealed under it opens again);
  // DataLoss if the value was altered or bound to other associated data.
  absl::StatusOr<std::string> OpenForCase(const std::string& id, absl::string_view aad,
                                          absl::string_view sealed) const;
  // Whether case `id` exists and has been erased (its erasure committed).
  bool IsErased(const std::string& id) const;

  // Keys made per pool refill.
  static constexpr int kKeyPoolBatch = 256;
  // Keys waiting in the pool (for tests).
  size_t pooled_keys() const;

  // NotFound if there is no such case; FailedPrecondition if erased.
  absl::StatusOr<v1::Case> Get(const std::string& id) const;
  absl::StatusOr<v1::StoredCase> GetStored(const std::string& id) const;
  // All stored cases' summaries (no personal data), ordered by id, starting after `after_id`.
  absl::StatusOr<std::vector<v1::StoredCase>> Scan(const std::string& after_id, size_t limit) const;

  // Adds to `batch` the sealed chunk `chunk` of evidence `evidence_id`.
  absl::Status PutEvidenceChunk(ledger::Mutation* batch, const std::string& case_id,
                                const std::string& evidence_id, uint32_t chunk,
                                absl::string_view data) const;
  // Reads, opens and concatenates every chunk of an evidence item. DataLoss if
  // a chunk is missing, altered or misplaced.
  absl::StatusOr<std::string> ReadEvidence(const std::string& case_id,
                                           const std::string& evidence_id) const;

  // Evidence staging (docs/architecture.md, "Evidence transfers"): an upload
  // writes its sealed chunks as they arrive, without the case lock, under a
  // "staging/<case>/<evidence>" marker; the commit lists the item in the case
  // and drops the marker in the same batch as its ledger entry. Staged chunks
  // are sealed like all evidence (nothing in plaintext on disk).
  absl::Status BeginStaging(const std::string& case_id, const std::string& evidence_id);
  // Seals and writes one chunk now (unsynced: the commit's synced batch, later
  // in the same write-ahead log, makes it durable).
  absl::Status StageEvidenceChunk(const std::string& case_id, const std::string& evidence_id,
                                  uint32_t chunk, absl::string_view data);
  // Adds the removal of the staging marker to the commit `batch`.
  void EndStaging(ledger::Mutation* batch, const std::string& case_id,
                  const std::string& evidence_id) const;
  // Deletes a staged item's chunks and its marker (abort, timeout, erase).
  absl::Status DiscardStaged(const std::string& case_id, const std::string& evidence_id);
  // Discards everything a crash left staged; returns how many items. Call at
  // start-up, before serving.
  absl::StatusOr<int> DiscardAllStaged();
  // Reads and opens one chunk of an evidence item: NotFound if there is no
  // such chunk, DataLoss if it was altered or misplaced.
  absl::StatusOr<std::string> ReadEvidenceChunk(const std::string& case_id,
                                                const std::string& evidence_id,
                                                uint32_t chunk) const;

  // Serialises changes to one case: Lock fails with Aborted while another
  // change to the same case is in flight.
  absl::Status Lock(const std::string& id);
  void Unlock(const std::string& id);

 private:
  CaseStore() = default;
  bool IdleLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return busy_.empty(); }
  absl::StatusOr<SecretBytes> DataKey(const std::string& id) const;
  absl::StatusOr<SecretBytes> DataKeyOf(const std::string& id, const v1::StoredCase& stored) const;
  // The key store key that holds the case's wrapped data key.
  static std::string KeystoreKey(const std::string& id, const v1::StoredCase& stored);
  struct PooledKey {
    std::string slot;
    SecretBytes key;
  };
  absl::StatusOr<PooledKey> TakeKey();
  absl::Status RefillLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_mu_);
  absl::Status SweepUnusedPoolKeys();
  absl::Status PurgeKeystore();
  std::string SealedValue(const v1::Case& c, absl::string_view key, const std::string& slot) const;

  rocksdb::DB* db_ = nullptr;
  rocksdb::ColumnFamilyHandle* cases_ = nullptr;
  rocksdb::ColumnFamilyHandle* evidence_ = nullptr;
  rocksdb::ColumnFamilyHandle* meta_ = nullptr;
  // The three families above by name, for writes no ledger entry records.
  std::map<std::string, rocksdb::ColumnFamilyHandle*> families_;
  std::unique_ptr<rocksdb::DB> keystore_;
  mutable absl::Mutex pool_mu_;
  std::vector<PooledKey> pool_ ABSL_GUARDED_BY(pool_mu_);
  // Slots handed out this run whose pool marker is not yet cleared.
  std::vector<std::string> handed_out_ ABSL_GUARDED_BY(pool_mu_);
  // Serialises key destruction (each compacts the key store).
  absl::Mutex destroy_mu_;
  SecretBytes master_key_;
  absl::Mutex mu_;
  std::set<std::string> busy_ ABSL_GUARDED_BY(mu_);
};

// Holds a case's change lock while alive (share it with the completion that
// must release it). Acquire fails with Aborted while another change is in flight.
class CaseLock {
 public:
  static absl::StatusOr<std::shared_ptr<CaseLock>> Acquire(CaseStore* store,
                                                           const std::string& id) {
    if (auto st = store->Lock(id); !st.ok()) return st;
    return std::shared_ptr<CaseLock>(new CaseLock(store, id));
  }
  ~CaseLock() { store_->Unlock(id_); }
  CaseLock(const CaseLock&) = delete;
  CaseLock& operator=(const CaseLock&) = delete;

 private:
  CaseLock(CaseStore* store, std::string id) : store_(store), id_(std::move(id)) {}
  CaseStore* store_;
  std::string id_;
};

// The listing view of a case: no personal data.
v1::CaseSummary SummaryOf(const v1::Case& c);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_STORE_CASE_STORE_H_
