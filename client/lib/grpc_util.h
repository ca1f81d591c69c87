// The one place Corridor converts between absl::Status and grpc::Status, and
// builds mutual-TLS channels. Used by corridorctl and by corridord (for peers).
// Stateless; thread-safe.
#ifndef CORRIDOR_CLIENT_LIB_GRPC_UTIL_H_
#define CORRIDOR_CLIENT_LIB_GRPC_UTIL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"

namespace corridor {

// Trailing metadata of a NOT_SERVING grpc.health.v1 answer from corridord:
// why the node is not serving, in words.
inline constexpr char kHealthReasonKey[] = "corridor-health-reason";

// absl → gRPC, code and message unchanged. Callers at the edge decide what
// detail a peer may see before calling this. A non-OK status also carries
// error details (a google.rpc.Status of the same code and message, as gRPC's
// rich error model has it), which mark it as the node's own answer: see
// AnsweredByServer.
grpc::Status ToGrpcStatus(const absl::Status& status);
// gRPC → absl, code and message unchanged.
absl::Status FromGrpcStatus(const grpc::Status& status);

// Whether a failed call's status is the server's answer (its handler or its
// gRPC stack refused on a working connection) rather than the client's own
// verdict that it could not reach the server (no connection, handshake
// failed, connection lost). True if the status carries error details (see
// ToGrpcStatus) or `channel` is connected right after the call.
bool AnsweredByServer(const grpc::Status& status, grpc::Channel& channel);

// A certificate, its key and the CA bundle that the other side must chain to.
struct TlsIdentity {
  std::string cert_pem;
  std::string key_pem;
  std::string roots_pem;
};

// Reads the three PEM files; errors name the file that is missing or unreadable.
absl::StatusOr<TlsIdentity> LoadTlsIdentity(const std::string& cert_file,
                                            const std::string& key_file,
                                            const std::string& ca_file);

// A mutual-TLS channel to `target` (host:port). If `server_name` is not empty the
// server certificate must carry it as a SAN (instead of the target's host).
std::shared_ptr<grpc::Channel> MakeMutualTlsChannel(const TlsIdentity& identity,
                                                    const std::string& target,
                                                    const std::string& server_name,
                                                    int max_message_bytes = 4 << 20);

// The PEM of the peer's leaf certificate from a call's auth context, or empty.
std::string PeerCertificatePem(const grpc::AuthContext& context);

}  // namespace corridor

#endif  // CORRIDOR_CLIENT_LIB_GRPC_UTIL_H_
