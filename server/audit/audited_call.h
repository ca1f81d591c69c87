// The shape every audited call takes (CaseService, AuditService,
// ReferralService): authorise, record the event, and answer only once the
// event is durable. Header-only templates over the gRPC reactor type.
#ifndef CORRIDOR_SERVER_AUDIT_AUDITED_CALL_H_
#define CORRIDOR_SERVER_AUDIT_AUDITED_CALL_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "client/lib/grpc_util.h"
#include "grpcpp/grpcpp.h"
#include "server/audit/access_log.h"
#include "server/auth/auth.h"
#include "server/common/edge.h"
#include "ledger/base/log.h"

namespace corridor {

// Records `events` (and `change`) durably, then finishes the call with what
// `on_durable` returns. If the ledger cannot write, nothing is returned.
// `on_durable` runs on the access log's completion threads, or on `slow` if
// given: pass an executor for slow work (proofs, exports, key destruction)
// so it never holds up the completions of ordinary calls.
template <typename Reactor>
inline void RecordThenFinish(AccessLog* log, Reactor* reactor, std::vector<v1::AccessEvent> events,
                             std::unique_ptr<ledger::Mutation> change,
                             std::function<grpc::Status(uint64_t)> on_durable,
                             Executor* slow = nullptr) {
  const std::string action = events.empty() ? "" : events.front().action();
  // `on_durable` is dropped before the answer goes out: what it holds (a case
  // lock) is released before the caller can send its next call.
  auto answer = [reactor](std::function<grpc::Status(uint64_t)>& on_durable, uint64_t index) {
    grpc::Status status = on_durable(index);
    on_durable = nullptr;
    reactor->Finish(status);
  };
  log->Record(std::move(events), std::move(change),
              [reactor, on_durable = std::move(on_durable), action, slow,
               answer](absl::StatusOr<uint64_t> index) mutable {
                if (!index.ok()) {
                  on_durable = nullptr;
                  log::Error("access.unrecorded",
                             {{"action", action}, {"error", index.status().message()}});
                  reactor->Finish(grpc::Status(
                      grpc::StatusCode::UNAVAILABLE,
                      "the node could not record this access in its ledger, "
                      "so it returned nothing; try again later or ask the node's operator"));
                  return;
                }
                if (slow != nullptr) {
                  slow->Post([on_durable = std::move(on_durable), index = *index,
                              answer]() mutable { answer(on_durable, index); });
                  return;
                }
                answer(on_durable, *index);
              });
}

// Records `event` as denied or failed with `status`'s reason and finishes with
// `status`. Past the caller's refusal budget the refusal is counted into one
// aggregated entry instead (AccessLog::RecordRefusal).
template <typename Reactor>
inline void RecordRefusal(AccessLog* log, Reactor* reactor, v1::AccessEvent event,
                          const absl::Status& status) {
  const bool denied = absl::IsPermissionDenied(status) || absl::IsUnauthenticated(status) ||
                      absl::IsInvalidArgument(status);
  event.set_outcome(denied ? v1::ACCESS_OUTCOME_DENIED : v1::ACCESS_OUTCOME_ERROR);
  event.set_reason(std::string(status.message()));
  const std::string action = event.action();
  log->RecordRefusal(std::move(event), [reactor, status, action](absl::Status recorded) {
    if (!recorded.ok()) {
      log::Error("access.unrecorded", {{"action", action}, {"error", recorded.message()}});
      reactor->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "the node could not record this access in its ledger, "
                                   "so it returned nothing; try again later or ask the node's "
                                   "operator"));
      return;
    }
    reactor->Finish(ToGrpcStatus(status));
  });
}

// The start of every audited call: who is calling, the event skeleton, the
// access check, and the bounds on the identifiers and purpose the caller sent
// (server/common/edge.h; an empty `id`, `purpose` or `request_id` is left to the
// handler to require). Returns nullopt if the call was refused (and recorded).
template <typename Reactor>
std::optional<Principal> Begin(const IdentityResolver& identity, grpc::CallbackServerContext* ctx,
                               Reactor* reactor, AccessLog* log, const std::string& method,
                               const std::string& action, const std::string& kind,
                               const std::string& id, const std::string& purpose,
                               const std::string& request_id, v1::AccessEvent* event) {
  event->set_action(action);
  event->set_resource_kind(kind);
  event->set_resource_id(id);
  if (kind == "case") event->set_case_id(id);
  event->set_purpose(purpose);
  event->set_request_id(request_id);
  auto auth = ctx->auth_context();
  auto caller = auth ? CallerOf(identity, *auth) : absl::UnauthenticatedError("no identity");
  if (!caller.ok()) {
    event->set_actor_subject("unknown");
    RecordRefusal(log, reactor, *event, caller.status());
    return std::nullopt;
  }
  SetActor(*caller, event);
  if (auto st = CheckAccess(*caller, method); !st.ok()) {
    log::Warn("auth.denied", {{"caller", caller->Name()}, {"method", method}});
    RecordRefusal(log, reactor, *event, st);
    return std::nullopt;
  }
  absl::Status bad = ValidateOptionalIdentifier("the id", id);
  if (bad.ok() && !purpose.empty()) bad = ValidatePurposeCode(purpose);
  if (bad.ok()) bad = ValidateOptionalIdentifier("the request id", request_id);
  if (!bad.ok()) {
    RecordRefusal(log, reactor, *event, bad);  // the access log bounds what it records
    return std::nullopt;
  }
  return *caller;
}

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUDIT_AUDITED_CALL_H_
