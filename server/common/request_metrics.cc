#include "server/common/request_metrics.h"

#include <chrono>

namespace corridor {
namespace {

// "/pkg.Service/Method" → ("pkg.Service", "Method").
std::pair<std::string, std::string> SplitPath(absl::string_view path) {
  const size_t slash = path.rfind('/');
  if (path.size() < 4 || path[0] != '/' || slash == 0 || slash == absl::string_view::npos) {
    return {"other", "other"};
  }
  return {std::string(path.substr(1, slash - 1)), std::string(path.substr(slash + 1))};
}

class CallInterceptor : public grpc::experimental::Interceptor {
 public:
  CallInterceptor(RequestMetrics* metrics, const char* method)
      : metrics_(metrics),
        method_(method == nullptr ? "" : method),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start_;
      metrics_->Record(method_, methods->GetSendStatus().error_code(), took.count());
    }
    methods->Proceed();
  }

 private:
  RequestMetrics* metrics_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
};

class CallInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallInterceptorFactory(RequestMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new CallInterceptor(metrics_, info->method());
  }

 private:
  RequestMetrics* metrics_;
};

}  // namespace

RequestMetrics::RequestMetrics(metrics::Registry* registry,
                               const std::vector<std::string>& methods) {
  auto& calls = registry->AddCounter(
      "corridor_grpc_requests_total",
      "gRPC calls answered by this node, by service, method and status code (calls refused "
      "before a handler ran included).",
      {"service", "method", "code"});
  auto& duration = registry->AddHistogram(
      "corridor_grpc_request_duration_seconds",
      "Time from a call's arrival at a handler to its status being sent, by service and method.",
      metrics::Histogram::LatencyBounds(), {"service", "method"});
  auto fill = [&](Method& m, const std::pair<std::string, std::string>& name) {
    for (int c = 0; c < kCodes; ++c) {
      m.calls[c] =
          &calls.With({name.first, name.second, CodeName(static_cast<grpc::StatusCode>(c))});
    }
    m.duration = &duration.With({name.first, name.second});
  };
  for (const std::string& path : methods) {
    const auto name = SplitPath(path);
    if (name.first == "other") continue;
    fill(methods_[path], name);
  }
  fill(other_, {"other", "other"});
}

RequestMetrics::Method& RequestMetrics::Find(absl::string_view path) {
  auto it = methods_.find(path);
  return it == methods_.end() ? other_ : it->second;
}

void RequestMetrics::Record(absl::string_view path, grpc::StatusCode code, double seconds) {
  Method& m = Find(path);
  const int c = static_cast<int>(code);
  m.calls[c >= 0 && c < kCodes ? c : grpc::StatusCode::UNKNOWN]->Add();
  m.duration->Observe(seconds);
}

void RequestMetrics::RecordRefused(absl::string_view path, grpc::StatusCode code) {
  const int c = static_cast<int>(code);
  Find(path).calls[c >= 0 && c < kCodes ? c : grpc::StatusCode::UNKNOWN]->Add();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
RequestMetrics::InterceptorFactory() {
  return std::make_unique<CallInterceptorFactory>(this);
}

const char* RequestMetrics::CodeName(grpc::StatusCode code) {
  static const char* const kNames[kCodes] = {"OK",
                                             "CANCELLED",
                                             "UNKNOWN",
                                             "INVALID_ARGUMENT",
                                             "DEADLINE_EXCEEDED",
                                             "NOT_FOUND",
                                             "ALREADY_EXISTS",
                                             "PERMISSION_DENIED",
                                             "RESOURCE_EXHAUSTED",
                                             "FAILED_PRECONDITION",
                                             "ABORTED",
                                             "OUT_OF_RANGE",
                                             "UNIMPLEMENTED",
                                             "INTERNAL",
                                             "UNAVAILABLE",
                                             "DATA_LOSS",
                                             "UNAUTHENTICATED"};
  const int c = static_cast<int>(code);
  return c >= 0 && c < kCodes ? kNames[c] : "UNKNOWN";
}

}  // namespace corridor
