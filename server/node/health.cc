#include "server/node/health.h"

#include "absl/strings/match.h"

namespace corridor {

grpc::ServerUnaryReactor* HealthServiceImpl::Check(grpc::CallbackServerContext* ctx,
                                                   const grpc::health::v1::HealthCheckRequest* req,
                                                   grpc::health::v1::HealthCheckResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (!req->service().empty() && !absl::StartsWith(req->service(), "corridor.v1.")) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    return reactor;
  }
  const absl::Status st = check_();
  if (st.ok()) {
    resp->set_status(grpc::health::v1::HealthCheckResponse::SERVING);
  } else {
    resp->set_status(grpc::health::v1::HealthCheckResponse::NOT_SERVING);
    // Metadata values must be printable ASCII.
    std::string reason(st.message().substr(0, 1024));
    for (char& ch : reason) {
      if (ch < 0x20 || ch > 0x7e) ch = '?';
    }
    ctx->AddTrailingMetadata(kHealthReasonKey, reason);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

}  // namespace corridor
