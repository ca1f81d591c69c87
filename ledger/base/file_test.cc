// WriteFileAtomically: new bytes or old, never a mix; the file and then its
// directory are synced; failures name the path and leave nothing behind.
#include "ledger/base/file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

namespace fs = std::filesystem;

class FileTest : public ::testing::Test {
 protected:
  FileTest() {
    dir_ = absl::StrCat(::testing::TempDir(), "/file_test_", getpid(), "_",
                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  ~FileTest() override {
    SetSyncObserverForTesting(nullptr);
    fs::remove_all(dir_);
  }
  // Names in the directory (temporary files left behind would show here).
  std::vector<std::string> Listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    return names;
  }
  std::string dir_;
};

TEST_F(FileTest, WritesTheExactBytesWithTheMode) {
  const std::string path = dir_ + "/signing.key";
  const std::string bytes("key\0with\nbytes\xff", 15);
  ASSERT_OK(WriteFileAtomically(path, bytes, 0600));
  ASSERT_OK_AND_ASSIGN(std::string read, ReadFileToString(path));
  EXPECT_EQ(read, bytes);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(Listing(), std::vector<std::string>{"signing.key"});
}

TEST_F(FileTest, ReplacesAnExistingFileWhole) {
  const std::string path = dir_ + "/roster.json";
  ASSERT_OK(WriteFileAtomically(path, std::string(100000, 'a')));
  ASSERT_OK(WriteFileAtomically(path, "short"));
  EXPECT_EQ(*ReadFileToString(path), "short");
  ASSERT_OK(WriteFileAtomically(path, ""));
  EXPECT_EQ(*ReadFileToString(path), "");
  EXPECT_EQ(Listing(), std::vector<std::string>{"roster.json"});
}

TEST_F(FileTest, SyncsTheFileThenTheDirectoryAfterTheRename) {
  std::vector<std::string> synced;
  SetSyncObserverForTesting([&](const std::string& p) { synced.push_back(p); });
  const std::string path = dir_ + "/config.yaml";
  ASSERT_OK(WriteFileAtomically(path, "org: union-sg\n"));
  ASSERT_EQ(synced.size(), 2u);
  // First the temporary file (beside the target), then the directory.
  EXPECT_EQ(synced[0].rfind(path + ".tmp.", 0), 0u) << synced[0];
  EXPECT_EQ(synced[1], dir_);
  // A bare file name syncs the current directory.
  synced.clear();
  const fs::path cwd = fs::current_path();
  fs::current_path(dir_);
  ASSERT_OK(WriteFileAtomically("bare", "x"));
  fs::current_path(cwd);
  ASSERT_EQ(synced.size(), 2u);
  EXPECT_EQ(synced[1], ".");
}

TEST_F(FileTest, AMissingDirectoryIsNotFoundAndNamesThePath) {
  const std::string path = dir_ + "/no/such/dir/file";
  EXPECT_STATUS(WriteFileAtomically(path, "x"), absl::StatusCode::kNotFound, path);
  EXPECT_TRUE(Listing().empty());
}

TEST_F(FileTest, AFailedRenameLeavesTheTargetAndNoTemporaryFile) {
  // A directory where the file should go: the rename fails after the write.
  const std::string path = dir_ + "/occupied";
  fs::create_directories(path + "/inside");
  const absl::Status st = WriteFileAtomically(path, "x");
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("rename failed"), absl::string_view::npos) << st;
  EXPECT_TRUE(fs::is_directory(path));
  EXPECT_EQ(Listing(), std::vector<std::string>{"occupied"});
}

TEST_F(FileTest, AnUnwritableDirectoryIsPermissionDenied) {
  if (geteuid() == 0) GTEST_SKIP() << "root writes anywhere";
  fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
  const absl::Status st = WriteFileAtomically(dir_ + "/f", "x");
  fs::permissions(dir_, fs::perms::owner_all);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied) << st;
  EXPECT_TRUE(Listing().empty());
}

TEST_F(FileTest, ConcurrentWritersToOnePathLeaveOneWholeVersion) {
  const std::string path = dir_ + "/contended";
  constexpr int kWriters = 8;
  constexpr int kRounds = 25;
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      const std::string bytes(4096 + w, static_cast<char>('a' + w));
      for (int r = 0; r < kRounds; ++r) EXPECT_OK(WriteFileAtomically(path, bytes));
    });
  }
  for (auto& t : writers) t.join();
  ASSERT_OK_AND_ASSIGN(std::string read, ReadFileToString(path));
  ASSERT_GE(read.size(), 4096u);
  const int w = static_cast<int>(read.size()) - 4096;
  EXPECT_EQ(read, std::string(4096 + w, static_cast<char>('a' + w)));
  EXPECT_EQ(Listing(), std::vector<std::string>{"contended"});
}

TEST_F(FileTest, ReadingAMissingFileIsNotFound) {
  EXPECT_STATUS(ReadFileToString(dir_ + "/absent"), absl::StatusCode::kNotFound, "absent");
}

}  // namespace
}  // namespace corridor
