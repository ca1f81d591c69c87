// Routes gRPC's and libprotobuf's own log lines into the JSON-lines log
// facade (ledger/base/log.h) as events "grpc.log" and "protobuf.log", so every
// line on stderr is JSON, including libprotobuf's complaint about a peer's
// string field that is not UTF-8. Call once at start-up.
#ifndef CORRIDOR_SERVER_COMMON_GRPC_LOGS_H_
#define CORRIDOR_SERVER_COMMON_GRPC_LOGS_H_

namespace corridor::log {

void RouteGrpcLogs();

}  // namespace corridor::log

#endif  // CORRIDOR_SERVER_COMMON_GRPC_LOGS_H_
