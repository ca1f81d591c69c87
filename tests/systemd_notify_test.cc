// corridord under systemd's Type=notify (deploy/systemd/corridord.service), checked for
// real: the test plays the service manager with a unix datagram socket named by
// NOTIFY_SOCKET and starts a real corridord. READY=1 arrives only once the node answers
// the health service; SIGHUP brings RELOADING=1 then READY=1; SIGTERM brings STOPPING=1.
// A NOTIFY_SOCKET nobody listens on changes nothing.
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "ledger/base/file.h"
#include "tests/testing/deadline.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"
#include "tests/testing/process.h"

namespace corridor {
namespace {

using testing::BinaryPath;
using testing::CommandResult;
using testing::ScaledDeadline;
using testing::Subprocess;

constexpr char kOrg[] = "union-sg";

// The service manager's end: a bound unix datagram socket in a short temp directory
// (a socket path must fit in 108 bytes).
class NotifySocket {
 public:
  NotifySocket() {
    char dir[] = "/tmp/corridor-notify-XXXXXX";
    if (mkdtemp(dir) == nullptr) return;
    dir_ = dir;
    path_ = dir_ + "/notify";
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    path_.copy(addr.sun_path, sizeof(addr.sun_path) - 1);
    if (fd_ >= 0 && bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  ~NotifySocket() {
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  bool ok() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }

  // The next datagram, or "" if none came within `limit` (scaled).
  std::string Receive(absl::Duration limit) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, absl::ToInt64Milliseconds(ScaledDeadline(limit))) != 1) return "";
    char buf[4096];
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    return n > 0 ? std::string(buf, n) : "";
  }
  // Datagrams until one holds the line `want`; all of them, in order, joined by " | ".
  // `*found` says whether it came within `limit`.
  std::string ReceiveUntil(const std::string& want, absl::Duration limit, bool* found) {
    std::vector<std::string> got;
    *found = false;
    const absl::Time give_up = absl::Now() + ScaledDeadline(limit);
    while (!*found && absl::Now() < give_up) {
      std::string msg = Receive(absl::Seconds(1));
      if (msg.empty()) continue;
      for (absl::string_view line : absl::StrSplit(msg, '\n')) {
        if (line == want) *found = true;
      }
      got.push_back(std::move(msg));
    }
    return absl::StrJoin(got, " | ");
  }

 private:
  std::string dir_, path_;
  int fd_ = -1;
};

class SystemdNotifyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg(kOrg);
    nodes_.Configure(kOrg);
  }
  // Starts corridord with NOTIFY_SOCKET=`socket_path` (only corridord sees it).
  void StartNode(const std::string& socket_path) {
    setenv("NOTIFY_SOCKET", socket_path.c_str(), 1);
    node_ = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("corridord"), "--config", nodes_.config(kOrg)},
        fed_.org(kOrg).dir + "/corridord.log");
    unsetenv("NOTIFY_SOCKET");
  }
  // One health check, no waiting: exit 0 and "serving" only if the node serves now.
  CommandResult HealthNow() { return nodes_.Ctl(kOrg, {"health"}); }

  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
  std::unique_ptr<Subprocess> node_;
};

TEST_F(SystemdNotifyTest, ReadyOnlyOnceServingReloadingThenReadyOnSighupStoppingOnSigterm) {
  NotifySocket manager;
  ASSERT_TRUE(manager.ok()) << "cannot bind a unix datagram socket under /tmp";
  StartNode(manager.path());

  bool found = false;
  std::string got = manager.ReceiveUntil("READY=1", absl::Seconds(60), &found);
  ASSERT_TRUE(found) << "no READY=1 from corridord; got: " << got << "\nlog:\n" << node_->Log();
  // Ready means serving: the very first health check after READY=1 answers SERVING.
  CommandResult health = HealthNow();
  EXPECT_EQ(health.exit_code, 0) << health.out << health.err;
  EXPECT_TRUE(absl::StrContains(health.out, ": serving")) << health.out;
  EXPECT_TRUE(absl::StrContains(got, "STATUS=serving on ")) << got;
  EXPECT_FALSE(absl::StrContains(got, "RELOADING=1")) << got;

  ASSERT_EQ(kill(node_->pid(), SIGHUP), 0);
  got = manager.ReceiveUntil("RELOADING=1", absl::Seconds(30), &found);
  ASSERT_TRUE(found) << "no RELOADING=1 after SIGHUP; got: " << got;
  EXPECT_TRUE(absl::StrContains(got, "MONOTONIC_USEC=")) << got;
  // READY=1 again once the reload is done (in a later datagram than RELOADING=1).
  got = manager.ReceiveUntil("READY=1", absl::Seconds(30), &found);
  ASSERT_TRUE(found) << "no READY=1 after the reload; got: " << got << "\nlog:\n" << node_->Log();
  EXPECT_TRUE(absl::StrContains(got, "last reload applied")) << got;
  EXPECT_TRUE(absl::StrContains(node_->Log(), "node.reloaded")) << node_->Log();

  EXPECT_EQ(node_->Stop(SIGTERM), 0) << node_->Log();
  got = manager.ReceiveUntil("STOPPING=1", absl::Seconds(5), &found);
  EXPECT_TRUE(found) << "no STOPPING=1 on SIGTERM; got: " << got;
  EXPECT_TRUE(absl::StrContains(got, "STATUS=stopping")) << got;
}

// A refused reload (a change that needs a restart) still ends with READY=1, and the
// status line says the reload was refused.
TEST_F(SystemdNotifyTest, RefusedReloadEndsReadyWithTheRefusalInTheStatus) {
  NotifySocket manager;
  ASSERT_TRUE(manager.ok());
  StartNode(manager.path());
  bool found = false;
  ASSERT_TRUE((manager.ReceiveUntil("READY=1", absl::Seconds(60), &found), found)) << node_->Log();

  std::string yaml = ReadFileToString(nodes_.config(kOrg)).value();
  yaml += "\npurposes: [case-handling]\n";  // purposes change only with a restart
  ASSERT_TRUE(WriteFileAtomically(nodes_.config(kOrg), yaml).ok());
  ASSERT_EQ(kill(node_->pid(), SIGHUP), 0);
  std::string got = manager.ReceiveUntil("RELOADING=1", absl::Seconds(30), &found);
  ASSERT_TRUE(found) << got;
  got = manager.ReceiveUntil("READY=1", absl::Seconds(30), &found);
  ASSERT_TRUE(found) << got << "\nlog:\n" << node_->Log();
  EXPECT_TRUE(absl::StrContains(got, "last reload refused")) << got;
  EXPECT_EQ(HealthNow().exit_code, 0);
}

// Not under systemd, or a service manager that is gone: the node serves and stops as ever.
TEST_F(SystemdNotifyTest, NotifySocketNobodyListensOnChangesNothing) {
  StartNode(fed_.root() + "/no-such-socket");
  CommandResult health = nodes_.Ctl(kOrg, {"health", "--wait", "60"});
  EXPECT_EQ(health.exit_code, 0) << health.err << "\nlog:\n" << node_->Log();
  EXPECT_EQ(node_->Stop(SIGTERM), 0) << node_->Log();
}

}  // namespace
}  // namespace corridor
