// The power-loss file system can fail a test: RocksDB writes made without
// sync are lost by a power cut while synced ones survive, names not made
// durable by a directory fsync disappear, and renames not made durable are
// undone. Without these, a durability test that passes on it proves nothing.
#include "ledger/testing/power_loss_fs.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "ledger/testing/ledger_test_util.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "tests/testing/status_matchers.h"

namespace corridor::ledger::testing {
namespace {

using rocksdb::IOOptions;

class PowerLossFileSystemTest : public ::testing::Test {
 protected:
  // Writes `data` to a new file `name` in the test directory, synced or not.
  void WriteFile(const std::string& name, const std::string& data, bool sync) {
    std::unique_ptr<rocksdb::FSWritableFile> f;
    ASSERT_TRUE(fs_->NewWritableFile(Path(name), rocksdb::FileOptions(), &f, nullptr).ok());
    ASSERT_TRUE(f->Append(data, IOOptions(), nullptr).ok());
    if (sync) {
      ASSERT_TRUE(f->Sync(IOOptions(), nullptr).ok());
    }
    ASSERT_TRUE(f->Close(IOOptions(), nullptr).ok());
  }
  void SyncDir() {
    std::unique_ptr<rocksdb::FSDirectory> d;
    ASSERT_TRUE(fs_->NewDirectory(dir_.path(), IOOptions(), &d, nullptr).ok());
    ASSERT_TRUE(d->Fsync(IOOptions(), nullptr).ok());
  }
  // The file's contents; "<absent>" if it does not exist.
  std::string Read(const std::string& name) {
    std::string data;
    if (!rocksdb::ReadFileToString(fs_.get(), Path(name), &data).ok()) return "<absent>";
    return data;
  }
  void CutAndReboot() {
    fs_->PowerCut();
    ASSERT_OK(fs_->Reboot());
  }
  std::string Path(const std::string& name) { return dir_.path() + "/" + name; }

  TempDir dir_;
  std::shared_ptr<PowerLossFileSystem> fs_ = std::make_shared<PowerLossFileSystem>();
};

TEST_F(PowerLossFileSystemTest, OnlySyncedBytesOfANameMadeDurableSurvive) {
  WriteFile("synced", "kept", /*sync=*/true);
  WriteFile("unsynced", "lost", /*sync=*/false);
  SyncDir();
  std::unique_ptr<rocksdb::FSWritableFile> f;
  ASSERT_TRUE(fs_->ReopenWritableFile(Path("synced"), rocksdb::FileOptions(), &f, nullptr).ok());
  ASSERT_TRUE(f->Append(" and more", IOOptions(), nullptr).ok());
  ASSERT_TRUE(f->Flush(IOOptions(), nullptr).ok());
  ASSERT_TRUE(f->RangeSync(0, 100, IOOptions(), nullptr).ok());  // persists nothing
  ASSERT_TRUE(f->Close(IOOptions(), nullptr).ok());
  WriteFile("no-dir-sync", "synced data, name never durable", /*sync=*/true);
  CutAndReboot();
  EXPECT_EQ(Read("synced"), "kept");
  EXPECT_EQ(Read("unsynced"), "");
  EXPECT_EQ(Read("no-dir-sync"), "<absent>");
  EXPECT_EQ(fs_->last_reboot().files_removed, 1);
  EXPECT_EQ(fs_->last_reboot().bytes_dropped, std::string(" and more").size() + 4);
}

TEST_F(PowerLossFileSystemTest, ARenameNotMadeDurableIsUndone) {
  WriteFile("CURRENT", "old", /*sync=*/true);
  WriteFile("moved", "moved contents", /*sync=*/true);
  SyncDir();
  WriteFile("CURRENT.tmp", "new", /*sync=*/true);
  ASSERT_TRUE(fs_->RenameFile(Path("CURRENT.tmp"), Path("CURRENT"), IOOptions(), nullptr).ok());
  ASSERT_TRUE(fs_->RenameFile(Path("moved"), Path("moved-to"), IOOptions(), nullptr).ok());
  EXPECT_EQ(Read("CURRENT"), "new");
  CutAndReboot();
  EXPECT_EQ(Read("CURRENT"), "old");
  EXPECT_EQ(Read("CURRENT.tmp"), "<absent>");
  EXPECT_EQ(Read("moved"), "moved contents");
  EXPECT_EQ(Read("moved-to"), "<absent>");
  EXPECT_EQ(fs_->last_reboot().renames_undone, 1);
}

TEST_F(PowerLossFileSystemTest, ARenameMadeDurableStays) {
  WriteFile("CURRENT", "old", /*sync=*/true);
  SyncDir();
  WriteFile("CURRENT.tmp", "new", /*sync=*/true);
  ASSERT_TRUE(fs_->RenameFile(Path("CURRENT.tmp"), Path("CURRENT"), IOOptions(), nullptr).ok());
  SyncDir();
  CutAndReboot();
  EXPECT_EQ(Read("CURRENT"), "new");
  EXPECT_EQ(Read("CURRENT.tmp"), "<absent>");
}

TEST_F(PowerLossFileSystemTest, NothingChangesTheDiskWhilePowerIsOff) {
  WriteFile("a", "kept", /*sync=*/true);
  SyncDir();
  std::unique_ptr<rocksdb::FSWritableFile> f;
  ASSERT_TRUE(fs_->ReopenWritableFile(Path("a"), rocksdb::FileOptions(), &f, nullptr).ok());
  fs_->PowerCut();
  EXPECT_TRUE(f->Append("x", IOOptions(), nullptr).IsIOError());
  EXPECT_TRUE(f->Sync(IOOptions(), nullptr).IsIOError());
  EXPECT_TRUE(f->Close(IOOptions(), nullptr).IsIOError());
  std::unique_ptr<rocksdb::FSWritableFile> g;
  EXPECT_TRUE(fs_->NewWritableFile(Path("b"), rocksdb::FileOptions(), &g, nullptr).IsIOError());
  EXPECT_TRUE(fs_->RenameFile(Path("a"), Path("c"), IOOptions(), nullptr).IsIOError());
  EXPECT_TRUE(fs_->DeleteFile(Path("a"), IOOptions(), nullptr).IsIOError());
  ASSERT_OK(fs_->Reboot());
  EXPECT_EQ(Read("a"), "kept");
  EXPECT_STATUS(fs_->Reboot(), absl::StatusCode::kFailedPrecondition, "PowerCut");
}

TEST_F(PowerLossFileSystemTest, PowerCutAtStopsTheDiskAtThatStep) {
  WriteFile("a", "kept", /*sync=*/true);  // steps: create, append, sync
  SyncDir();                              // step: directory fsync
  EXPECT_EQ(fs_->steps(), 4u);
  std::unique_ptr<rocksdb::FSWritableFile> f;
  ASSERT_TRUE(fs_->ReopenWritableFile(Path("a"), rocksdb::FileOptions(), &f, nullptr).ok());
  fs_->PowerCutAt(3);  // from here: append (1), sync (2), append (3: never happens)
  ASSERT_TRUE(f->Append(" synced", IOOptions(), nullptr).ok());
  ASSERT_TRUE(f->Sync(IOOptions(), nullptr).ok());
  EXPECT_TRUE(fs_->powered());
  EXPECT_TRUE(f->Append(" lost", IOOptions(), nullptr).IsIOError());
  EXPECT_FALSE(fs_->powered());
  EXPECT_TRUE(f->Close(IOOptions(), nullptr).IsIOError());
  ASSERT_OK(fs_->Reboot());
  EXPECT_EQ(Read("a"), "kept synced");
  EXPECT_TRUE(fs_->powered());
}

// The reason the harness exists: plain RocksDB with WriteOptions::sync=false
// acknowledges writes a power cut loses (killing the process would not).
TEST_F(PowerLossFileSystemTest, RocksDbWritesWithoutSyncAreLostSyncedOnesSurvive) {
  std::unique_ptr<rocksdb::Env> env = rocksdb::NewCompositeEnv(fs_);
  rocksdb::Options options;
  options.create_if_missing = true;
  options.env = env.get();
  const std::string path = Path("db");
  rocksdb::WriteOptions synced, unsynced;
  synced.sync = true;
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(options, path, &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(db->Put(synced, absl::StrCat("synced-", i), "v").ok());
  }
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(db->Put(unsynced, absl::StrCat("unsynced-", i), "v").ok());
  }
  fs_->PowerCut();
  db.reset();  // closing writes nothing more: the disk is off
  ASSERT_OK(fs_->Reboot());
  EXPECT_GT(fs_->last_reboot().bytes_dropped, 0u);
  ASSERT_TRUE(rocksdb::DB::Open(options, path, &raw).ok());
  db.reset(raw);
  std::string v;
  for (int i = 0; i < 100; ++i) {
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), absl::StrCat("synced-", i), &v).ok()) << i;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), absl::StrCat("unsynced-", i), &v).IsNotFound())
        << i;
  }
}

}  // namespace
}  // namespace corridor::ledger::testing
