// CaseStore in process: data keys from the pool, crash-safe erasure.
#include "server/store/case_store.h"

#include <filesystem>

#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "ledger/rocksdb/rocksdb_key_spaces.h"
#include "server/store/store.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

namespace fs = std::filesystem;

class CaseStoreTest : public ::testing::Test {
 protected:
  CaseStoreTest() : dir_(testing::MakeTempDir("corridor-casestore")), master_(RandomBytes(32)) {}
  ~CaseStoreTest() override {
    cases_.reset();
    store_.reset();
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }

  void Open() {
    cases_.reset();
    store_.reset();
    store_ = NodeStore::Open(dir_ + "/db", {kCasesFamily, kEvidenceFamily}).value();
    cases_ =
        CaseStore::Open(store_->db(), store_->family(kCasesFamily), store_->family(kEvidenceFamily),
                        store_->family(NodeStore::kMetaFamily), dir_ + "/keystore", master_)
            .value();
  }

  void Commit(std::unique_ptr<ledger::Mutation> change) {
    ASSERT_OK(ledger::WriteMutation(store_->db(), store_->families(), *change, /*sync=*/true));
  }

  std::string CreateCase(const std::string& name) {
    v1::Case c;
    c.set_id(CaseStore::NewCaseId());
    c.mutable_worker()->set_name(name);
    auto batch = cases_->PrepareCreate(c);
    EXPECT_TRUE(batch.ok()) << batch.status();
    Commit(*std::move(batch));
    return c.id();
  }

  std::string WrappedKeyOf(const std::string& id) {
    auto stored = cases_->GetStored(id).value();
    std::string wrapped;
    rocksdb::DB* ks = nullptr;
    EXPECT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::Options(), dir_ + "/keystore", &ks).ok());
    EXPECT_TRUE(ks->Get(rocksdb::ReadOptions(), stored.key_slot(), &wrapped).ok());
    delete ks;
    return wrapped;
  }

  std::string dir_;
  std::string master_;
  std::unique_ptr<NodeStore> store_;
  std::unique_ptr<CaseStore> cases_;
};

TEST_F(CaseStoreTest, CreateUsesAPooledKeyAndSurvivesReopen) {
  Open();
  const std::string id = CreateCase("Worker Pool-1");
  EXPECT_EQ(cases_->pooled_keys(), CaseStore::kKeyPoolBatch - 1u);
  ASSERT_OK_AND_ASSIGN(v1::StoredCase stored, cases_->GetStored(id));
  EXPECT_FALSE(stored.key_slot().empty());
  Open();
  ASSERT_OK_AND_ASSIGN(v1::Case c, cases_->Get(id));
  EXPECT_EQ(c.worker().name(), "Worker Pool-1");
}

TEST_F(CaseStoreTest, ManyCreatesRefillThePool) {
  Open();
  std::vector<std::string> ids;
  for (int i = 0; i < CaseStore::kKeyPoolBatch * 2 + 3; ++i) ids.push_back(CreateCase("W"));
  Open();
  for (const std::string& id : ids) ASSERT_OK(cases_->Get(id));
}

TEST_F(CaseStoreTest, KeysOfCreatesThatNeverCommittedAreDeletedAtStart) {
  Open();
  v1::Case c;
  c.set_id(CaseStore::NewCaseId());
  ASSERT_OK_AND_ASSIGN(auto batch, cases_->PrepareCreate(c));  // never committed: a crash
  const std::string kept = CreateCase("Kept");
  const std::string kept_wrapped = WrappedKeyOf(kept);
  Open();
  // Only committed cases keep their slot: the key store holds exactly one slot.
  rocksdb::DB* ks = nullptr;
  ASSERT_TRUE(rocksdb::DB::OpenForReadOnly(rocksdb::Options(), dir_ + "/keystore", &ks).ok());
  std::unique_ptr<rocksdb::Iterator> it(ks->NewIterator(rocksdb::ReadOptions()));
  int slots = 0, markers = 0;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    if (it->key().starts_with("slot/")) ++slots;
    if (it->key().starts_with("pool/")) ++markers;
  }
  it.reset();
  delete ks;
  EXPECT_EQ(slots, 1);
  EXPECT_EQ(markers, 0);
  EXPECT_EQ(WrappedKeyOf(kept), kept_wrapped);
  ASSERT_OK(cases_->Get(kept));
}

TEST_F(CaseStoreTest, ErasureInterruptedBeforeKeyDestructionIsFinishedAtStart) {
  Open();
  const std::string id = CreateCase("Worker Shred-Me");
  const std::string wrapped = WrappedKeyOf(id);
  ASSERT_TRUE(testing::AnyFileContains(dir_ + "/keystore", wrapped));
  // The erase commits, then the process dies before DestroyKey.
  ASSERT_OK_AND_ASSIGN(auto erase, cases_->PrepareErase(id));
  Commit(std::move(erase));
  Open();
  EXPECT_FALSE(testing::AnyFileContains(dir_ + "/keystore", wrapped));
  EXPECT_STATUS(cases_->Get(id), absl::StatusCode::kFailedPrecondition, "erased");
  // No marker is left behind: a second start has nothing to do.
  std::string marker;
  EXPECT_TRUE(store_->db()
                  ->Get(rocksdb::ReadOptions(), store_->family(NodeStore::kMetaFamily),
                        "shred/" + cases_->GetStored(id)->key_slot(), &marker)
                  .IsNotFound());
}

TEST_F(CaseStoreTest, DestroyKeyRemovesTheKeyFromEveryFile) {
  Open();
  const std::string id = CreateCase("Worker Destroy");
  const std::string other = CreateCase("Worker Other");
  const std::string wrapped = WrappedKeyOf(id);
  ASSERT_OK_AND_ASSIGN(auto erase, cases_->PrepareErase(id));
  Commit(std::move(erase));
  ASSERT_OK(cases_->DestroyKey(id));
  ASSERT_OK(cases_->DestroyKey(id));  // idempotent
  EXPECT_FALSE(testing::AnyFileContains(dir_ + "/keystore", wrapped));
  Open();
  EXPECT_STATUS(cases_->Get(id), absl::StatusCode::kFailedPrecondition, "");
  ASSERT_OK(cases_->Get(other));
}

}  // namespace
}  // namespace corridor
