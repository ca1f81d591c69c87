// Client channels and call contexts for tests that talk to a real node over
// mutual TLS. Test-only; thread-safe (each call builds its own objects).
#ifndef CORRIDOR_TESTS_TESTING_CHANNELS_H_
#define CORRIDOR_TESTS_TESTING_CHANNELS_H_

#include <memory>
#include <string>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "tests/testing/deadline.h"

namespace corridor::testing {

// A call context whose deadline is `deadline` from now, scaled for sanitizer
// builds (ScaledDeadline).
inline std::unique_ptr<grpc::ClientContext> ScaledContext(
    absl::Duration deadline = absl::Seconds(30)) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + ScaledDeadline(deadline)));
  return ctx;
}

// A channel with a connection of its own (not shared with other channels),
// presenting `cert_pem`/`key_pem` and trusting `roots_pem`; messages up to 16 MiB.
// `small_window`: the channel's HTTP/2 receive window stays at its 64 KiB default
// (no BDP probing), so a reader that stops reading stops the sender within a
// window, whatever the machine's speed (sanitizer builds included).
inline std::shared_ptr<grpc::Channel> OwnChannel(const std::string& cert_pem,
                                                 const std::string& key_pem,
                                                 const std::string& roots_pem,
                                                 const std::string& endpoint,
                                                 bool small_window = false) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = roots_pem;
  ssl.pem_private_key = key_pem;
  ssl.pem_cert_chain = cert_pem;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  if (small_window) args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  return grpc::CreateCustomChannel(endpoint, grpc::SslCredentials(ssl), args);
}

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_CHANNELS_H_
