// Nodes on separate hosts (issue 13): three corridord processes, each in a
// Linux network namespace of the test's own with its own address, joined by
// point-to-point veth links (a full mesh, no bridge and nothing in the
// machine's own namespace). A referral crosses the link; the link between two
// of them is cut, the sender's outbox holds the next referral while the third
// node is still reached, and once the link is back the referral is delivered.
//
// Needs root (CAP_NET_ADMIN) and iproute2's `ip`; skips, saying so, where a
// namespace cannot be created (an unprivileged container, say).
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gtest/gtest.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"

namespace corridor {
namespace {

using testing::CommandResult;
using testing::Eventually;
using testing::JsonValues;

// The three hosts: org, org kind, and the address it has in its namespace.
struct Host {
  std::string org;
  v1::OrgKind kind;
  std::string address;
};
const Host kHosts[] = {{"union-sg", v1::ORG_KIND_UNION, "10.213.0.1"},
                       {"ministry-id", v1::ORG_KIND_MINISTRY, "10.213.0.2"},
                       {"inspectorate-sg", v1::ORG_KIND_INSPECTORATE, "10.213.0.3"}};

// iproute2's `ip`, "" if it is not installed.
std::string IpPath() {
  for (const char* p : {"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"}) {
    if (access(p, X_OK) == 0) return p;
  }
  return "";
}

// Runs `ip ARGS`; "" if it succeeded, else what went wrong (never empty).
std::string Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {IpPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  CommandResult r = testing::RunCommand(argv, absl::Seconds(30));
  if (r.exit_code == 0) return "";
  return absl::StrCat("`ip ", absl::StrJoin(args, " "), "` exited ", r.exit_code, ": ", r.err);
}

// The namespaces and links, removed (with everything in them) on destruction.
class Network {
 public:
  Network() : tag_(absl::StrCat("cor", getpid() % 10000000)) {}
  ~Network() {
    for (const std::string& ns : made_) {
      if (std::string err = Ip({"netns", "delete", ns}); !err.empty()) {
        fprintf(stderr, "could not remove network namespace %s: %s\n", ns.c_str(), err.c_str());
      }
    }
  }
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  std::string Namespace(int host) const { return absl::StrCat(tag_, "h", host); }
  // The name of host `from`'s end of its link to host `to`.
  std::string Link(int from, int to) const { return absl::StrCat(tag_, "v", from, to); }

  // Creates namespace `host` with loopback up and its address on it; "" or why not.
  std::string AddHost(int host, const std::string& address) {
    const std::string ns = Namespace(host);
    if (std::string err = Ip({"netns", "add", ns}); !err.empty()) return err;
    made_.push_back(ns);
    for (const std::vector<std::string>& cmd :
         {std::vector<std::string>{"link", "set", "lo", "up"},
          std::vector<std::string>{"addr", "add", address + "/32", "dev", "lo"}}) {
      if (std::string err = InHost(host, cmd); !err.empty()) return err;
    }
    return "";
  }

  // A veth pair between hosts a and b, up, with a route to each other's address.
  std::string Connect(int a, const std::string& addr_a, int b, const std::string& addr_b) {
    if (std::string err = Ip({"link", "add", Link(a, b), "netns", Namespace(a), "type", "veth",
                              "peer", "name", Link(b, a), "netns", Namespace(b)});
        !err.empty()) {
      return err;
    }
    if (std::string err = Up(a, b, addr_a, addr_b); !err.empty()) return err;
    return Up(b, a, addr_b, addr_a);
  }

  // Takes both ends of the a–b link down: no packet crosses it.
  std::string Cut(int a, int b) {
    if (std::string err = InHost(a, {"link", "set", Link(a, b), "down"}); !err.empty()) return err;
    return InHost(b, {"link", "set", Link(b, a), "down"});
  }

  std::string Restore(int a, const std::string& addr_a, int b, const std::string& addr_b) {
    if (std::string err = Up(a, b, addr_a, addr_b); !err.empty()) return err;
    return Up(b, a, addr_b, addr_a);
  }

 private:
  // Host `from`'s end of the link to `to` up, routing `to_addr` over it.
  std::string Up(int from, int to, const std::string& from_addr, const std::string& to_addr) {
    if (std::string err = InHost(from, {"link", "set", Link(from, to), "up"}); !err.empty()) {
      return err;
    }
    return InHost(from,
                  {"route", "replace", to_addr + "/32", "dev", Link(from, to), "src", from_addr});
  }

  std::string InHost(int host, const std::vector<std::string>& cmd) {
    std::vector<std::string> args = {"-n", Namespace(host)};
    args.insert(args.end(), cmd.begin(), cmd.end());
    return Ip(args);
  }

  std::string tag_;
  std::vector<std::string> made_;
};

class NetnsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces";
    if (IpPath().empty()) GTEST_SKIP() << "needs iproute2's `ip` (deploy/setup.sh installs it)";
    if (std::string err = net_.AddHost(0, kHosts[0].address); !err.empty()) {
      GTEST_SKIP() << "cannot create a network namespace here (" << err
                   << "): the multi-host test needs CAP_NET_ADMIN and iproute2";
    }
    for (int h = 1; h < 3; ++h) ASSERT_EQ(net_.AddHost(h, kHosts[h].address), "");
    for (int a = 0; a < 3; ++a) {
      for (int b = a + 1; b < 3; ++b) {
        ASSERT_EQ(net_.Connect(a, kHosts[a].address, b, kHosts[b].address), "");
      }
    }
    for (const Host& h : kHosts) fed_.AddOrg(h.org, h.kind, h.address);
    for (int h = 0; h < 3; ++h) {
      nodes_.Configure(kHosts[h].org);
      nodes_.SetLauncher(kHosts[h].org, {IpPath(), "netns", "exec", net_.Namespace(h)});
    }
    for (const Host& h : kHosts) ASSERT_TRUE(nodes_.Start(h.org));
  }

  // A case at the union referred to `to`; returns the referral id.
  std::string Refer(const std::string& to) {
    CommandResult r =
        nodes_.Ctl("union-sg", {"case", "create", "--json", "--category", "wage-theft", "--origin",
                                "ID", "--destination", "SG", "--worker-name", "Ayu", "--consent",
                                absl::StrCat(to, ":case-referral")});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::vector<std::string> ids = JsonValues(r.out, "id");
    if (ids.empty()) return "";
    r = nodes_.Ctl("union-sg",
                   {"refer", ids[0], "--to", to, "--agreement", "test-agreement", "--purpose",
                    "case-referral", "--include", "personal-data", "--json"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    const std::vector<std::string> referral = JsonValues(r.out, "referral_id");
    return referral.empty() ? "" : referral[0];
  }

  // The referral ids waiting in `org`'s inbox.
  std::vector<std::string> Inbox(const std::string& org) {
    return JsonValues(nodes_.Ctl(org, {"inbox", "--json"}).out, "referral_id");
  }
  bool InInbox(const std::string& org, const std::string& referral) {
    for (const std::string& r : Inbox(org)) {
      if (r == referral) return true;
    }
    return false;
  }

  // Envelopes pending in the union's outbox for `peer`.
  int PendingFor(const std::string& peer) {
    int n = 0;
    const v1::ListOutboxResponse outbox = nodes_.Outbox("union-sg");
    for (const auto& e : outbox.entries()) {
      if (e.recipient_org() == peer && e.state() == "pending") ++n;
    }
    return n;
  }

  Network net_;  // declared first: removed last, after the nodes stopped
  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
};

TEST_F(NetnsTest, TheOutboxHoldsAReferralWhileItsLinkIsCutAndDeliversItOnceTheLinkIsBack) {
  // Across the link: delivered at once.
  const std::string first = Refer("ministry-id");
  ASSERT_FALSE(first.empty());
  nodes_.AwaitOutboxSettled("union-sg");
  ASSERT_TRUE(Eventually([&] { return InInbox("ministry-id", first); }));

  // The union–ministry link is cut; the inspectorate is still reached.
  ASSERT_EQ(net_.Cut(0, 1), "");
  ASSERT_TRUE(Eventually(
      [&] { return nodes_.PeerState("union-sg", "ministry-id") == v1::PEER_STATE_UNREACHABLE; }));
  EXPECT_EQ(nodes_.PeerState("union-sg", "inspectorate-sg"), v1::PEER_STATE_HEALTHY);
  const std::string held = Refer("ministry-id");
  const std::string other = Refer("inspectorate-sg");
  ASSERT_FALSE(held.empty());
  ASSERT_FALSE(other.empty());
  // The inspectorate's referral arrives over its own link; the ministry's
  // waits in the outbox and has not reached the ministry.
  ASSERT_TRUE(Eventually([&] { return InInbox("inspectorate-sg", other); }));
  EXPECT_TRUE(Eventually([&] { return PendingFor("inspectorate-sg") == 0; }));
  EXPECT_EQ(PendingFor("ministry-id"), 1) << nodes_.Ctl("union-sg", {"outbox"}).out;
  EXPECT_FALSE(InInbox("ministry-id", held));
  // The ministry's node, cut off from the union only, still reaches the inspectorate.
  EXPECT_EQ(nodes_.PeerState("ministry-id", "inspectorate-sg"), v1::PEER_STATE_HEALTHY);

  // The link is back: the held referral is delivered, once.
  ASSERT_EQ(net_.Restore(0, kHosts[0].address, 1, kHosts[1].address), "");
  ASSERT_TRUE(Eventually([&] { return InInbox("ministry-id", held); }))
      << nodes_.Ctl("union-sg", {"outbox"}).out << "\nunion-sg's log:\n"
      << nodes_.process("union-sg").Log();
  nodes_.AwaitOutboxSettled("union-sg");
  EXPECT_EQ(PendingFor("ministry-id"), 0);
  EXPECT_EQ(Inbox("ministry-id").size(), 2u);
  EXPECT_TRUE(Eventually(
      [&] { return nodes_.PeerState("union-sg", "ministry-id") == v1::PEER_STATE_HEALTHY; }));
  CommandResult r = nodes_.Ctl("ministry-id", {"accept", held});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

}  // namespace
}  // namespace corridor
