// The metrics endpoint's listener on its own: addresses it takes and refuses,
// a port already in use refused with a message naming the key, and nothing
// listening once it is stopped.
#include "server/node/metrics_endpoint.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

bool Connects(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  close(fd);
  return ok;
}

TEST(MetricsEndpointListenerTest, ParsesLiteralAddressesAndTellsLoopback) {
  struct Case {
    std::string listen;
    bool ok, loopback, ipv6;
  };
  for (const Case& c : std::vector<Case>{{"127.0.0.1:9464", true, true, false},
                                         {"127.9.9.9:0", true, true, false},
                                         {"10.0.0.1:9464", true, false, false},
                                         {"0.0.0.0:9464", true, false, false},
                                         {"[::1]:9464", true, true, true},
                                         {"[::]:9464", true, false, true},
                                         {"localhost:9464", false, false, false},
                                         {"127.0.0.1", false, false, false},
                                         {"127.0.0.1:65536", false, false, false},
                                         {"127.0.0.1:-1", false, false, false},
                                         {"::1:9464", false, false, false},
                                         {":9464", false, false, false}}) {
    SCOPED_TRACE(c.listen);
    auto parsed = ParseMetricsAddress(c.listen);
    ASSERT_EQ(parsed.ok(), c.ok) << parsed.status();
    if (!c.ok) {
      EXPECT_STATUS(parsed, absl::StatusCode::kInvalidArgument, "is not an IP address and port");
      continue;
    }
    EXPECT_EQ(parsed->loopback, c.loopback);
    EXPECT_EQ(parsed->ipv6, c.ipv6);
  }
}

TEST(MetricsEndpointListenerTest, PortInUseIsRefusedAndStopClosesTheListener) {
  ASSERT_OK_AND_ASSIGN(auto first, MetricsEndpoint::Start("127.0.0.1:0", [] { return "x 1\n"; }));
  const int port = first->port();
  ASSERT_GT(port, 0);
  EXPECT_TRUE(Connects(port));
  EXPECT_STATUS(MetricsEndpoint::Start("127.0.0.1:" + std::to_string(port), [] { return ""; }),
                absl::StatusCode::kUnavailable, "metrics.listen: cannot serve metrics on");
  first.reset();
  EXPECT_FALSE(Connects(port));
}

}  // namespace
}  // namespace corridor
