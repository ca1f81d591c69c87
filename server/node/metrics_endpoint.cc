#include "server/node/metrics_endpoint.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "ledger/base/log.h"

namespace corridor {
namespace {

constexpr char kContentType[] = "text/plain; version=0.0.4; charset=utf-8";

// libmicrohttpd's own messages, into the node's JSON log.
void LogFromMhd(void*, const char* format, va_list ap) {
  char buf[512];
  std::vsnprintf(buf, sizeof buf, format, ap);
  std::string text(buf);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  log::Warn("metrics.http", {{"message", text}});
}

MHD_Result Answer(MHD_Connection* connection, unsigned int status, const std::string& body,
                  bool allow_get) {
  MHD_Response* response = MHD_create_response_from_buffer(
      body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY);
  if (response == nullptr) return MHD_NO;
  MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                          status == MHD_HTTP_OK ? kContentType : "text/plain; charset=utf-8");
  if (allow_get) MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET");
  const MHD_Result queued = MHD_queue_response(connection, status, response);
  MHD_destroy_response(response);
  return queued;
}

// Every request is answered at its first call, before any body is read: no
// request of this endpoint has one, and what a client sends is never stored.
MHD_Result Handle(void* cls, MHD_Connection* connection, const char* url, const char* method,
                  const char*, const char*, size_t*, void**) {
  const auto* endpoint = static_cast<const MetricsEndpoint*>(cls);
  if (std::strcmp(url, "/metrics") != 0) {
    return Answer(connection, MHD_HTTP_NOT_FOUND, "not found: the metrics are at /metrics\n",
                  false);
  }
  if (std::strcmp(method, MHD_HTTP_METHOD_GET) != 0) {
    return Answer(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET is served here\n", true);
  }
  return Answer(connection, MHD_HTTP_OK, endpoint->Render(), false);
}

}  // namespace

absl::StatusOr<MetricsAddress> ParseMetricsAddress(const std::string& listen) {
  const auto bad = [&listen] {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", listen,
        "\" is not an IP address and port (e.g. 127.0.0.1:9464 or [::1]:9464; a host name is "
        "not accepted)"));
  };
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return bad();
  MetricsAddress out;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &out.port) || out.port < 0 || out.port > 65535) {
    return bad();
  }
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&out.addr);
    if (inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &a6->sin6_addr) != 1) {
      return bad();
    }
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(out.port));
    out.len = sizeof(sockaddr_in6);
    out.ipv6 = true;
    out.loopback = IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr);
    return out;
  }
  auto* a4 = reinterpret_cast<sockaddr_in*>(&out.addr);
  if (inet_pton(AF_INET, host.c_str(), &a4->sin_addr) != 1) return bad();
  a4->sin_family = AF_INET;
  a4->sin_port = htons(static_cast<uint16_t>(out.port));
  out.len = sizeof(sockaddr_in);
  out.loopback = (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
  return out;
}

absl::StatusOr<std::unique_ptr<MetricsEndpoint>> MetricsEndpoint::Start(
    const std::string& listen, std::function<std::string()> render) {
  auto address = ParseMetricsAddress(listen);
  if (!address.ok()) return address.status();
  std::unique_ptr<MetricsEndpoint> endpoint(new MetricsEndpoint(std::move(render)));
  unsigned int flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ERROR_LOG;
  if (address->ipv6) flags |= MHD_USE_IPv6;
  endpoint->daemon_ = MHD_start_daemon(
      flags, static_cast<uint16_t>(address->port), nullptr, nullptr, &Handle, endpoint.get(),
      MHD_OPTION_SOCK_ADDR, reinterpret_cast<sockaddr*>(&address->addr),
      MHD_OPTION_CONNECTION_LIMIT, kMaxConnections, MHD_OPTION_PER_IP_CONNECTION_LIMIT, kMaxPerIp,
      MHD_OPTION_CONNECTION_TIMEOUT, kIdleTimeoutSeconds, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
      kConnectionMemory, MHD_OPTION_EXTERNAL_LOGGER, &LogFromMhd, nullptr, MHD_OPTION_END);
  if (endpoint->daemon_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("metrics.listen: cannot serve metrics on ", listen,
                                               " (address in use or not available on this host?)"));
  }
  const MHD_DaemonInfo* info = MHD_get_daemon_info(endpoint->daemon_, MHD_DAEMON_INFO_BIND_PORT);
  endpoint->port_ = info != nullptr ? info->port : address->port;
  return endpoint;
}

MetricsEndpoint::~MetricsEndpoint() {
  if (daemon_ != nullptr) MHD_stop_daemon(daemon_);
}

}  // namespace corridor
