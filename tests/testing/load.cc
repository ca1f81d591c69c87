#include "tests/testing/load.h"

#include <algorithm>
#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace corridor::testing {

std::shared_ptr<grpc::Channel> MakeDedicatedChannel(const TlsIdentity& identity,
                                                    const std::string& target) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = identity.roots_pem;
  ssl.pem_private_key = identity.key_pem;
  ssl.pem_cert_chain = identity.cert_pem;
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(64 << 20);
  args.SetMaxSendMessageSize(64 << 20);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args);
}

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return absl::StrCat("CODE_", static_cast<int>(code));
  }
}

void OutcomeTally::Add(absl::string_view method, grpc::StatusCode code) {
  absl::MutexLock lock(&mu_);
  ++counts_[std::string(method)][code];
}

uint64_t OutcomeTally::Count(absl::string_view method, grpc::StatusCode code) const {
  absl::MutexLock lock(&mu_);
  auto m = counts_.find(std::string(method));
  if (m == counts_.end()) return 0;
  auto c = m->second.find(code);
  return c == m->second.end() ? 0 : c->second;
}

uint64_t OutcomeTally::Total(absl::string_view method) const {
  absl::MutexLock lock(&mu_);
  auto m = counts_.find(std::string(method));
  if (m == counts_.end()) return 0;
  uint64_t n = 0;
  for (const auto& [code, count] : m->second) n += count;
  return n;
}

uint64_t OutcomeTally::Total() const {
  absl::MutexLock lock(&mu_);
  uint64_t n = 0;
  for (const auto& [method, codes] : counts_) {
    for (const auto& [code, count] : codes) n += count;
  }
  return n;
}

OutcomeTally::Counts OutcomeTally::Snapshot() const {
  absl::MutexLock lock(&mu_);
  return counts_;
}

std::string OutcomeTally::ToString() const {
  std::string out;
  for (const auto& [method, codes] : Snapshot()) {
    std::vector<std::string> parts;
    for (const auto& [code, count] : codes) {
      parts.push_back(absl::StrCat(StatusCodeName(code), " ", count));
    }
    absl::StrAppend(&out, method, ": ", absl::StrJoin(parts, ", "), "\n");
  }
  return out;
}

LoadResult RunLoad(const LoadOptions& options, const CallStarter& start) {
  struct State {
    absl::Mutex mu;
    int in_flight ABSL_GUARDED_BY(mu) = 0;
  };
  // Shared with the `done` callbacks; every one of them has run before RunLoad returns.
  auto state = std::make_shared<State>();
  const int limit = std::max(1, options.in_flight);
  const absl::Time begin = absl::Now();
  const absl::Time end = begin + options.duration;
  uint64_t started = 0;
  while (options.max_calls == 0 || started < options.max_calls) {
    {
      absl::MutexLock lock(&state->mu);
      auto has_room = [&]() ABSL_SHARED_LOCKS_REQUIRED(state->mu) {
        return state->in_flight < limit;
      };
      if (!state->mu.AwaitWithDeadline(absl::Condition(&has_room), end)) break;
      if (absl::Now() >= end) break;
      ++state->in_flight;
    }
    start(started++, [state](const grpc::Status&) {
      absl::MutexLock lock(&state->mu);
      --state->in_flight;
    });
  }
  absl::MutexLock lock(&state->mu);
  auto idle = [&]() ABSL_SHARED_LOCKS_REQUIRED(state->mu) { return state->in_flight == 0; };
  state->mu.Await(absl::Condition(&idle));
  return {started, absl::Now() - begin};
}

CallStarter WeightedMix(std::vector<std::pair<int, CallStarter>> starters) {
  const int total = std::accumulate(starters.begin(), starters.end(), 0,
                                    [](int sum, const auto& s) { return sum + s.first; });
  return [starters = std::move(starters), total](uint64_t n, CallDone done) {
    int slot = static_cast<int>(n % static_cast<uint64_t>(total));
    for (const auto& [weight, starter] : starters) {
      if (slot < weight) return starter(n, std::move(done));
      slot -= weight;
    }
  };
}

}  // namespace corridor::testing
