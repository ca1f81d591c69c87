#include "server/store/case_store.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "client/lib/yaml_proto.h"
#include "ledger/base/log.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/sealing.h"
#include "ledger/rocksdb/rocksdb_key_spaces.h"
#include "ledger/rocksdb/tsan_visible_writes.h"
#include "rocksdb/options.h"
#include "server/store/store.h"

namespace corridor {
namespace {

std::string CaseAad(const std::string& id) { return "case/" + id; }
// Authenticated data of a wrapped data key: binds it to its key store key.
std::string KeyAad(const std::string& keystore_key) { return "dek/" + keystore_key; }

constexpr char kSlotPrefix[] = "slot/";         // key store: slot → wrapped key
constexpr char kPoolPrefix[] = "pool/";         // key store: pooled slot marker
constexpr char kAssignedPrefix[] = "keyslot/";  // main meta: slot → case id
constexpr char kShredPrefix[] = "shred/";       // main meta: key store key → case id

std::string Be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(v >> (24 - 8 * i));
  return s;
}

// Evidence chunk key: "<case id>/<evidence id>/" + big-endian chunk number.
std::string ChunkPrefix(const std::string& case_id, const std::string& evidence_id) {
  return case_id + "/" + evidence_id + "/";
}

}  // namespace

v1::CaseSummary SummaryOf(const v1::Case& c) {
  v1::CaseSummary s;
  s.set_id(c.id());
  s.set_category(c.category());
  s.set_sector(c.sector());
  s.set_origin_country(c.origin_country());
  s.set_destination_country(c.destination_country());
  s.set_status(c.status());
  s.set_created_at(c.created_at());
  s.set_updated_at(c.updated_at());
  return s;
}

absl::Status RetentionAllowsRead(const v1::Case& c, absl::Time now) {
  for (const auto& link : c.referrals()) {
    if (link.outgoing() || link.retention_until().empty()) continue;
    absl::Time until;
    std::string err;
    if (!absl::ParseTime(absl::RFC3339_full, link.retention_until(), &until, &err)) continue;
    if (now >= until) {
      return absl::PermissionDeniedError(absl::StrCat(
          "this case was received from ", link.peer_org(), " to keep until ",
          link.retention_until(), "; that date has passed and the record is closed to reads"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CaseStore>> CaseStore::Open(
    rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cases, rocksdb::ColumnFamilyHandle* evidence,
    rocksdb::ColumnFamilyHandle* meta, const std::string& keystore_dir, std::string master_key,
    rocksdb::Env* keystore_env) {
  if (master_key.size() != kAesKeySize)
    return absl::InvalidArgumentError("master key must be 32 bytes");
  std::unique_ptr<CaseStore> store(new CaseStore);
  store->db_ = db;
  store->cases_ = cases;
  store->evidence_ = evidence;
  store->meta_ = meta;
  for (rocksdb::ColumnFamilyHandle* h : {cases, evidence, meta}) store->families_[h->GetName()] = h;
  store->master_key_ = SecretBytes(std::move(master_key));
  rocksdb::Options options;
  options.create_if_missing = true;
  options.paranoid_checks = true;
  if (keystore_env != nullptr) options.env = keystore_env;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(options, keystore_dir, &raw);
  if (!s.ok()) return FromRocksStatus(s, absl::StrCat("opening the key store in ", keystore_dir));
  store->keystore_.reset(ledger::WithTsanVisibleWrites(raw));
  if (auto st = store->FinishPendingDestruction(); !st.ok()) return st;
  if (auto st = store->SweepUnusedPoolKeys(); !st.ok()) return st;
  return store;
}

CaseStore::~CaseStore() {
  // A change still holding a case lock (a call finishing as the node stops)
  // releases it before the store goes; bounded, so a stuck call cannot hang
  // shutdown for ever.
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &CaseStore::IdleLocked), absl::Seconds(10));
  }
  if (keystore_) keystore_->Close();
}

std::string CaseStore::NewCaseId() {
  return "C-" + absl::AsciiStrToUpper(HexEncode(RandomBytes(6)));
}

std::string CaseStore::KeystoreKey(const std::string& id, const v1::StoredCase& stored) {
  return stored.key_slot().empty() ? id : stored.key_slot();
}

absl::StatusOr<SecretBytes> CaseStore::DataKey(const std::string& id) const {
  auto stored = GetStored(id);
  if (!stored.ok()) return stored.status();
  return DataKeyOf(id, *stored);
}

absl::StatusOr<SecretBytes> CaseStore::DataKeyOf(const std::string& id,
                                                 const v1::StoredCase& stored) const {
  const std::string kk = KeystoreKey(id, stored);
  std::string wrapped;
  rocksdb::Status s = keystore_->Get(rocksdb::ReadOptions(), kk, &wrapped);
  if (s.IsNotFound()) {
    return absl::FailedPreconditionError(
        absl::StrCat("case ", id, " has been erased: its data key no longer exists"));
  }
  if (!s.ok()) return FromRocksStatus(s, "reading a data key");
  auto key = Unseal(master_key_.view(), KeyAad(kk), wrapped);
  if (!key.ok()) {
    return absl::DataLossError(
        absl::StrCat("the data key of case ", id, " does not open under this node's master key"));
  }
  return SecretBytes(*std::move(key));
}

size_t CaseStore::pooled_keys() const {
  absl::MutexLock lock(&pool_mu_);
  return pool_.size();
}

absl::Status CaseStore::RefillLocked() {
  rocksdb::WriteBatch batch;
  // Clear the markers of slots handed out earlier whose case committed; the
  // rest (creates in flight, or failed) are settled at the next start.
  std::vector<std::string> still_out;
  for (const std::string& slot : handed_out_) {
    std::string owner;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, kAssignedPrefix + slot, &owner);
    if (s.ok()) {
      batch.Delete(kPoolPrefix + slot);
    } else if (s.IsNotFound()) {
      still_out.push_back(slot);
    } else {
      return FromRocksStatus(s, "reading a key slot assignment");
    }
  }
  std::vector<PooledKey> fresh;
  for (int i = 0; i < kKeyPoolBatch; ++i) {
    PooledKey k{kSlotPrefix + HexEncode(RandomBytes(12)), SecretBytes::Random(kAesKeySize)};
    batch.Put(k.slot, Seal(master_key_.view(), KeyAad(k.slot), k.key.view()));
    batch.Put(kPoolPrefix + k.slot, "");
    fresh.push_back(std::move(k));
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;  // a key must be durable before anything is sealed under it
  rocksdb::Status s = keystore_->Write(wo, &batch);
  if (!s.ok()) return FromRocksStatus(s, "storing new data keys");
  handed_out_ = std::move(still_out);
  for (auto& k : fresh) pool_.push_back(std::move(k));
  return absl::OkStatus();
}

absl::StatusOr<CaseStore::PooledKey> CaseStore::TakeKey() {
  absl::MutexLock lock(&pool_mu_);
  if (pool_.empty()) {
    if (auto st = RefillLocked(); !st.ok()) return st;
  }
  PooledKey k = std::move(pool_.back());
  pool_.pop_back();
  handed_out_.push_back(k.slot);
  return k;
}

absl::Status CaseStore::SweepUnusedPoolKeys() {
  rocksdb::WriteBatch batch;
  std::unique_ptr<rocksdb::Iterator> it(keystore_->NewIterator(rocksdb::ReadOptions()));
  for (it->Seek(kPoolPrefix); it->Valid() && it->key().starts_with(kPoolPrefix); it->Next()) {
    const std::string marker = it->key().ToString();
    const std::string slot = marker.substr(strlen(kPoolPrefix));
    std::string owner;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), meta_, kAssignedPrefix + slot, &owner);
    if (s.IsNotFound())
      batch.Delete(slot);  // never used: nothing was sealed under it durably
    else if (!s.ok())
      return FromRocksStatus(s, "reading a key slot assignment");
    batch.Delete(marker);
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "sweeping the key pool");
  if (batch.Count() == 0) return absl::OkStatus();
  rocksdb::WriteOptions wo;
  wo.sync = true;
  return FromRocksStatus(keystore_->Write(wo, &batch), "sweeping the key pool");
}

std::string CaseStore::SealedValue(const v1::Case& c, absl::string_view key,
                                   const std::string& slot) const {
  v1::StoredCase stored;
  stored.set_key_slot(slot);
  *stored.mutable_summary() = SummaryOf(c);
  stored.set_owner_org(c.owner_org());
  stored.set_sealed(Seal(key, CaseAad(c.id()), c.SerializeAsString()));
  return stored.SerializeAsString();
}

absl::StatusOr<std::unique_ptr<ledger::Mutation>> CaseStore::PrepareCreate(const v1::Case& c) {
  auto key = TakeKey();
  if (!key.ok()) return key.status();
  auto batch = std::make_unique<ledger::Mutation>();
  batch->Put(cases_->GetName(), c.id(), SealedValue(c, key->key.view(), key->slot));
  batch->Put(meta_->GetName(), kAssignedPrefix + key->slot, c.id());
  return batch;
}

absl::StatusOr<std::unique_ptr<ledger::Mutation>> CaseStore::PrepareUpdate(const v1::Case& c) {
  auto batch = std::make_unique<ledger::Mutation>();
  if (auto st = PutCase(batch.get(), c); !st.ok()) return st;
  return batch;
}

absl::Status CaseStore::PutCase(ledger::Mutation* batch, const v1::Case& c) const {
  auto stored = GetStored(c.id());
  if (!stored.ok()) return stored.status();
  auto key = DataKeyOf(c.id(), *stored);
  if (!key.ok()) return key.status();
  batch->Put(cases_->GetName(), c.id(), SealedValue(c, key->view(), stored->key_slot()));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<ledger::Mutation>> CaseStore::PrepareErase(const std::string& id) {
  auto stored = GetStored(id);
  if (!stored.ok()) return stored.status();
  stored->mutable_summary()->set_status(v1::CASE_STATUS_ERASED);
  stored->clear_sealed();
  auto batch = std::make_unique<ledger::Mutation>();
  batch->Put(cases_->GetName(), id, stored->SerializeAsString());
  // Evidence goes with it ('0' follows '/' in byte order: the whole "<id>/" range).
  batch->DeleteRange(evidence_->GetName(), id + "/", id + "0");
  // The key goes after the commit (DestroyKey), or at the next start if the
  // process dies first.
  batch->Put(meta_->GetName(), kShredPrefix + KeystoreKey(id, *stored), id);
  return batch;
}

absl::StatusOr<std::string> CaseStore::SealForCase(const std::string& id, absl::string_view aad,
                                                   absl::string_view plaintext) const {
  auto stored = GetStored(id);
  if (!stored.ok()) return stored.status();
  if (stored->summary().status() == v1::CASE_STATUS_ERASED) {
    return absl::FailedPreconditionError(absl::StrCat("case ", id, " has been erased"));
  }
  auto key = DataKeyOf(id, *stored);
  if (!key.ok()) return key.status();
  return Seal(key->view(), aad, plaintext);
}

absl::StatusOr<std::string> CaseStore::OpenForCase(const std::string& id, absl::string_view aad,
                                                   absl::string_view sealed) const {
  auto stored = GetStored(id);
  if (!stored.ok()) return stored.status();
  if (stored->summary().status() == v1::CASE_STATUS_ERASED) {
    return absl::FailedPreconditionError(absl::StrCat("case ", id, " has been erased"));
  }
  auto key = DataKeyOf(id, *stored);
  if (!key.ok()) return key.status();
  auto plain = Unseal(key->view(), aad, sealed);
  if (!plain.ok()) {
    return absl::DataLossError(absl::StrCat("a value sealed under case ", id,
                                            " does not open: ", plain.status().message()));
  }
  return plain;
}

bool CaseStore::IsErased(const std::string& id) const {
  auto stored = GetStored(id);
  return stored.ok() && stored->summary().status() == v1::CASE_STATUS_ERASED;
}

absl::Status CaseStore::PutEvidenceChunk(ledger::Mutation* batch, const std::string& case_id,
                                         const std::string& evidence_id, uint32_t chunk,
                                         absl::string_view data) const {
  auto key = DataKey(case_id);
  if (!key.ok()) return key.status();
  const std::string k = ChunkPrefix(case_id, evidence_id) + Be32(chunk);
  batch->Put(evidence_->GetName(), k, Seal(key->view(), k, data));
  return absl::OkStatus();
}

absl::StatusOr<std::string> CaseStore::ReadEvidence(const std::string& case_id,
                                                    const std::string& evidence_id) const {
  auto key = DataKey(case_id);
  if (!key.ok()) return key.status();
  const std::string prefix = ChunkPrefix(case_id, evidence_id);
  std::string out;
  uint32_t expect = 0;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), evidence_));
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next(), ++expect) {
    const std::string k = it->key().ToString();
    if (k != prefix + Be32(expect)) {
      return absl::DataLossError(
          absl::StrCat("evidence ", evidence_id, ": chunk ", expect, " is missing"));
    }
    auto plain = Unseal(key->view(), k, absl::string_view(it->value().data(), it->value().size()));
    if (!plain.ok()) {
      return absl::DataLossError(absl::StrCat("evidence ", evidence_id, ": chunk ", expect,
                                              " was altered on disk and does not decrypt"));
    }
    out += *plain;
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "reading evidence");
  return out;
}

absl::Status CaseStore::DestroyKey(const std::string& id) {
  auto stored = GetStored(id);
  if (!stored.ok()) return stored.status();
  const std::string kk = KeystoreKey(id, *stored);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  absl::MutexLock lock(&destroy_mu_);
  rocksdb::Status s = keystore_->Delete(wo, kk);
  if (!s.ok()) return FromRocksStatus(s, "destroying a data key");
  if (auto st = PurgeKeystore(); !st.ok()) return st;
  // Losing this delete in a crash only repeats the (idempotent) destruction.
  return FromRocksStatus(db_->Delete(rocksdb::WriteOptions(), meta_, kShredPrefix + kk),
                         "clearing a shred marker");
}

absl::Status CaseStore::PurgeKeystore() {
  // Push deletions through memtable, WAL and every SST file that held a key.
  rocksdb::FlushOptions fo;
  fo.wait = true;
  rocksdb::Status s = keystore_->Flush(fo);
  if (s.ok()) {
    rocksdb::CompactRangeOptions co;
    co.bottommost_level_compaction = rocksdb::BottommostLevelCompaction::kForce;
    s = keystore_->CompactRange(co, nullptr, nullptr);
  }
  if (s.ok()) s = keystore_->FlushWAL(true);
  return FromRocksStatus(s, "purging destroyed data keys");
}

absl::Status CaseStore::FinishPendingDestruction() {
  std::vector<std::string> markers;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
  for (it->Seek(kShredPrefix); it->Valid() && it->key().starts_with(kShredPrefix); it->Next()) {
    markers.push_back(it->key().ToString());
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "reading shred markers");
  if (markers.empty()) return absl::OkStatus();
  absl::MutexLock lock(&destroy_mu_);
  rocksdb::WriteBatch keys;
  for (const std::string& m : markers) keys.Delete(m.substr(strlen(kShredPrefix)));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  rocksdb::Status s = keystore_->Write(wo, &keys);
  if (!s.ok()) return FromRocksStatus(s, "destroying data keys of erased cases");
  if (auto st = PurgeKeystore(); !st.ok()) return st;
  rocksdb::WriteBatch done;
  for (const std::string& m : markers) done.Delete(meta_, m);
  log::Info("case.keys_destroyed_at_start", {{"count", markers.size()}});
  return FromRocksStatus(db_->Write(wo, &done), "clearing shred markers");
}

absl::StatusOr<v1::StoredCase> CaseStore::GetStored(const std::string& id) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), cases_, id, &value);
  if (s.IsNotFound()) return absl::NotFoundError(absl::StrCat("there is no case ", id));
  if (!s.ok()) return FromRocksStatus(s, "reading a case");
  v1::StoredCase stored;
  if (auto st = ParseProtoStrict(value, "stored case", &stored); !st.ok()) return st;
  return stored;
}

absl::StatusOr<v1::Case> CaseStore::Get(const std::string& id) const {
  auto stored = GetStored(id);
  if (!stored.ok()) return stored.status();
  if (stored->summary().status() == v1::CASE_STATUS_ERASED) {
    return absl::FailedPreconditionError(absl::StrCat("case ", id, " has been erased"));
  }
  auto key = DataKeyOf(id, *stored);
  if (!key.ok()) return key.status();
  auto plain = Unseal(key->view(), CaseAad(id), stored->sealed());
  if (!plain.ok())
    return absl::DataLossError(
        absl::StrCat("case ", id, " does not decrypt: ", plain.status().message()));
  v1::Case c;
  if (auto st = ParseProtoStrict(*plain, "case", &c); !st.ok()) return st;
  return c;
}

absl::StatusOr<std::vector<v1::StoredCase>> CaseStore::Scan(const std::string& after_id,
                                                            size_t limit) const {
  std::vector<v1::StoredCase> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), cases_));
  for (after_id.empty() ? it->SeekToFirst() : it->Seek(after_id); it->Valid() && out.size() < limit;
       it->Next()) {
    if (it->key().ToString() == after_id) continue;
    v1::StoredCase stored;
    if (!stored.ParseFromString(it->value().ToString())) {
      return absl::DataLossError(
          absl::StrCat("stored case ", it->key().ToString(), " is malformed"));
    }
    out.push_back(std::move(stored));
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "listing cases");
  return out;
}

absl::Status CaseStore::Lock(const std::string& id) {
  absl::MutexLock lock(&mu_);
  if (!busy_.insert(id).second) {
    return absl::AbortedError(
        absl::StrCat("case ", id, " is being changed by another request; try again"));
  }
  return absl::OkStatus();
}

void CaseStore::Unlock(const std::string& id) {
  absl::MutexLock lock(&mu_);
  busy_.erase(id);
}

// ---- Evidence staging ----------------------------------------------------------

namespace {
constexpr char kStagingPrefix[] = "staging/";  // main meta: "<case>/<evidence>" → ""
}  // namespace

absl::Status CaseStore::BeginStaging(const std::string& case_id, const std::string& evidence_id) {
  return FromRocksStatus(
      db_->Put(rocksdb::WriteOptions(), meta_, kStagingPrefix + case_id + "/" + evidence_id, ""),
      "marking staged evidence");
}

absl::Status CaseStore::StageEvidenceChunk(const std::string& case_id,
                                           const std::string& evidence_id, uint32_t chunk,
                                           absl::string_view data) {
  ledger::Mutation chunk_write;
  if (auto st = PutEvidenceChunk(&chunk_write, case_id, evidence_id, chunk, data); !st.ok()) {
    return st;
  }
  return ledger::WriteMutation(db_, families_, chunk_write, /*sync=*/false);
}

void CaseStore::EndStaging(ledger::Mutation* batch, const std::string& case_id,
                           const std::string& evidence_id) const {
  batch->Delete(meta_->GetName(), kStagingPrefix + case_id + "/" + evidence_id);
}

absl::Status CaseStore::DiscardStaged(const std::string& case_id, const std::string& evidence_id) {
  ledger::Mutation discard;
  const std::string prefix = ChunkPrefix(case_id, evidence_id);
  // '0' follows '/' in byte order: the whole "<case>/<evidence>/" range.
  discard.DeleteRange(evidence_->GetName(), prefix, case_id + "/" + evidence_id + "0");
  EndStaging(&discard, case_id, evidence_id);
  return ledger::WriteMutation(db_, families_, discard, /*sync=*/false);
}

absl::StatusOr<int> CaseStore::DiscardAllStaged() {
  std::vector<std::string> staged;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), meta_));
  for (it->Seek(kStagingPrefix); it->Valid() && it->key().starts_with(kStagingPrefix); it->Next()) {
    staged.push_back(it->key().ToString().substr(sizeof(kStagingPrefix) - 1));
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "listing staged evidence");
  for (const std::string& item : staged) {
    const size_t slash = item.find('/');
    if (slash == std::string::npos) continue;
    if (auto st = DiscardStaged(item.substr(0, slash), item.substr(slash + 1)); !st.ok()) return st;
  }
  return static_cast<int>(staged.size());
}

absl::StatusOr<std::string> CaseStore::ReadEvidenceChunk(const std::string& case_id,
                                                         const std::string& evidence_id,
                                                         uint32_t chunk) const {
  auto key = DataKey(case_id);
  if (!key.ok()) return key.status();
  const std::string k = ChunkPrefix(case_id, evidence_id) + Be32(chunk);
  std::string sealed;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), evidence_, k, &sealed);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("evidence ", evidence_id, ": no chunk ", chunk));
  }
  if (!s.ok()) return FromRocksStatus(s, "reading evidence");
  auto plain = Unseal(key->view(), k, sealed);
  if (!plain.ok()) {
    return absl::DataLossError(absl::StrCat("evidence ", evidence_id, ": chunk ", chunk,
                                            " was altered on disk and does not decrypt"));
  }
  return *std::move(plain);
}

}  // namespace corridor
