// The Prometheus metrics endpoint: a plain-HTTP listener, separate from gRPC,
// served by libmicrohttpd (Debian's libmicrohttpd12), that answers
// GET /metrics with what `render` returns (text format 0.0.4). Anything else:
// 404 for another path, 405 (Allow: GET) for another method on /metrics;
// libmicrohttpd itself refuses requests whose headers do not fit the
// per-connection memory limit (431) and closes connections that do not speak HTTP.
// One internal thread polls every connection; at most kMaxConnections at
// once (kMaxPerIp from one address), each closed after kIdleTimeoutSeconds
// idle. docs/operations.md, "Monitor". Thread-safe; the destructor stops the
// thread and closes the listener before returning.
#ifndef CORRIDOR_SERVER_NODE_METRICS_ENDPOINT_H_
#define CORRIDOR_SERVER_NODE_METRICS_ENDPOINT_H_

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

struct MHD_Daemon;

namespace corridor {

// A metrics listen address: a literal IPv4 address or a bracketed IPv6 one, and a port.
struct MetricsAddress {
  sockaddr_storage addr = {};
  socklen_t len = 0;
  bool ipv6 = false;
  bool loopback = false;  // 127.0.0.0/8 or ::1
  int port = 0;
};

// Parses "127.0.0.1:9464" or "[::1]:9464". InvalidArgument, saying what is
// expected, for a host name or anything else.
absl::StatusOr<MetricsAddress> ParseMetricsAddress(const std::string& listen);

class MetricsEndpoint {
 public:
  static constexpr unsigned kMaxConnections = 16;
  static constexpr unsigned kMaxPerIp = 8;
  static constexpr unsigned kIdleTimeoutSeconds = 10;
  // Request line and headers must fit in this much (per connection).
  static constexpr size_t kConnectionMemory = 32 * 1024;

  // Listens on `listen` (checked as ParseMetricsAddress does) and serves.
  // `render` runs on the endpoint's thread for each GET /metrics, and must be
  // thread-safe. Unavailable if the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsEndpoint>> Start(
      const std::string& listen, std::function<std::string()> render);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // The port bound (useful with port 0).
  int port() const { return port_; }

  // Called by libmicrohttpd for each request (public for its C callback).
  std::string Render() const { return render_(); }

 private:
  explicit MetricsEndpoint(std::function<std::string()> render) : render_(std::move(render)) {}

  const std::function<std::string()> render_;
  MHD_Daemon* daemon_ = nullptr;
  int port_ = 0;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_NODE_METRICS_ENDPOINT_H_
