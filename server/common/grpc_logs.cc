#include "server/common/grpc_logs.h"

#include <google/protobuf/stubs/logging.h>
#include <grpc/support/log.h>

#include <string>

#include "ledger/base/log.h"

namespace corridor::log {
namespace {

void GrpcLogSink(gpr_log_func_args* args) {
  Level level = Level::kInfo;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = Level::kDebug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) level = Level::kWarn;
  Emit(level, "grpc.log", {{"message", args->message}, {"file", args->file}, {"line", args->line}});
}

// libprotobuf's own lines, e.g. "String field ... contains invalid UTF-8 data"
// when a peer sends bytes that are not UTF-8: a peer's doing, so at most warn.
void ProtobufLogSink(google::protobuf::LogLevel severity, const char* file, int line,
                     const std::string& message) {
  Level level = Level::kWarn;
  if (severity == google::protobuf::LOGLEVEL_INFO) level = Level::kDebug;
  if (severity == google::protobuf::LOGLEVEL_FATAL) level = Level::kError;
  Emit(level, "protobuf.log",
       {{"message", message}, {"file", file == nullptr ? "" : file}, {"line", line}});
}

}  // namespace

void RouteGrpcLogs() {
  gpr_set_log_function(GrpcLogSink);
  google::protobuf::SetLogHandler(ProtobufLogSink);
}

}  // namespace corridor::log
