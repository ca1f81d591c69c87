// The shape every audited call takes (CaseService, AuditService,
// ReferralService): authorise, record the event, and answer only once the
// event is durable; a refusal is recorded too, and answered once it is.
// AuditedCall puts the three together for a unary call. Header-only templates
// over the gRPC reactor type.
#ifndef CORRIDOR_SERVER_AUDIT_AUDITED_CALL_H_
#define CORRIDOR_SERVER_AUDIT_AUDITED_CALL_H_

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "client/lib/grpc_util.h"
#include "grpcpp/grpcpp.h"
#include "ledger/base/log.h"
#include "server/audit/access_log.h"
#include "server/auth/auth.h"
#include "server/auth/rpc.h"
#include "server/common/edge.h"

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

// What a call's access event says before its outcome is known.
struct CallEvent {
  std::string action;      // "case.get", "audit.export", ...
  std::string kind;        // the resource kind: "case", "evidence", "ledger", ...
  std::string id;          // the resource id (for kind "case", also the event's case id)
  std::string purpose;     // the caller's purpose code, or the action's own
  std::string request_id;  // the caller's idempotency id, if any
  // `purpose` is what the caller stated (checked against the node's purpose
  // vocabulary), not the action's own.
  bool stated = false;
  // The case the resource belongs to, when `kind` is not "case" (evidence): so
  // that every event about a case, refusals included, is filed under it.
  std::string case_id = {};
};

// The start of every audited call: who is calling, the event skeleton, the
// access check of `rpc` (Rpc::Served in the handler: the method gRPC
// dispatched), and the bounds on the identifiers and purpose the caller sent
// (server/common/edge.h; an empty `id`, `purpose` or `request_id` is left to the
// handler to require). Returns nullopt if the call was refused (and recorded).
template <typename Reactor>
std::optional<Principal> Begin(const IdentityResolver& identity, grpc::CallbackServerContext* ctx,
                               Reactor* reactor, AccessLog* log, const Rpc& rpc,
                               const CallEvent& what, v1::AccessEvent* event) {
  event->set_action(what.action);
  event->set_resource_kind(what.kind);
  event->set_resource_id(what.id);
  if (what.kind == "case") event->set_case_id(what.id);
  if (!what.case_id.empty()) event->set_case_id(what.case_id);
  // A stated purpose outside the node's vocabulary may be anything typed, a name
  // included: no entry records it, whatever else refuses the call.
  if (!what.stated || CheckPurposeListed(what.purpose, identity.Purposes()).ok()) {
    event->set_purpose(what.purpose);
  }
  // The ledger keeps the request id's digest, never the id (server/common/edge.h).
  event->set_request_id(RequestIdForLedger(what.request_id));
  auto auth = ctx->auth_context();
  auto caller = auth ? CallerOf(identity, *auth) : absl::UnauthenticatedError("no identity");
  if (!caller.ok()) {
    event->set_actor_subject("unknown");
    RecordRefusal(log, reactor, *event, caller.status());
    return std::nullopt;
  }
  SetActor(*caller, event);
  if (auto st = CheckAccess(*caller, rpc.path()); !st.ok()) {
    log::Warn("auth.denied", {{"caller", caller->Name()}, {"method", rpc.path()}});
    RecordRefusal(log, reactor, *event, st);
    return std::nullopt;
  }
  absl::Status bad = ValidateOptionalIdentifier("the id", what.id);
  if (bad.ok() && what.stated && !what.purpose.empty()) {
    bad = CheckPurposeListed(what.purpose, identity.Purposes());
  }
  if (bad.ok()) bad = ValidateOptionalIdentifier("the case id", what.case_id);
  if (bad.ok()) bad = ValidateOptionalIdentifier("the request id", what.request_id);
  if (!bad.ok()) {
    RecordRefusal(log, reactor, *event, bad);  // the access log bounds what it records
    return std::nullopt;
  }
  return *caller;
}

// One audited call, from its start to its one answer: every way it ends is
// one call that records the event and finishes the reactor, and returns the
// reactor for the handler to return:
//
//   AuditedCall call(log_, ctx->DefaultReactor());
//   auto caller = call.Begin(*identity_, ctx, Rpc::Served<v1::CaseService>(), {...});
//   if (!caller) return call.reactor();
//   if (!ok) return call.Refuse(absl::InvalidArgumentError("..."));
//   return call.Allow(std::move(change), [resp](uint64_t) { ...; return grpc::Status::OK; });
//
// Not thread-safe; lives on the handler's stack (what it records is copied).
template <typename Reactor = grpc::ServerUnaryReactor>
class AuditedCall {
 public:
  AuditedCall(AccessLog* log, Reactor* reactor) : log_(log), reactor_(reactor) {}

  // Begin() above, for this call's reactor and event.
  std::optional<Principal> Begin(const IdentityResolver& identity, grpc::CallbackServerContext* ctx,
                                 const Rpc& rpc, const CallEvent& what) {
    return corridor::Begin(identity, ctx, reactor_, log_, rpc, what, &event_);
  }

  // The event so far: a handler adds what it learns (peer org, agreement, reason).
  v1::AccessEvent& event() { return event_; }
  Reactor* reactor() const { return reactor_; }

  // Records the event refused with `why` (RecordRefusal) and finishes the call with it.
  Reactor* Refuse(const absl::Status& why) {
    RecordRefusal(log_, reactor_, event_, why);
    return reactor_;
  }
  // Records the event allowed, with `change` (may be null) in the same batch,
  // then answers with what `on_durable` returns (RecordThenFinish).
  Reactor* Allow(std::unique_ptr<ledger::Mutation> change,
                 std::function<grpc::Status(uint64_t)> on_durable, Executor* slow = nullptr) {
    event_.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    return Record({event_}, std::move(change), std::move(on_durable), slow);
  }
  // Records `events` (their outcomes set; one per resource touched) with
  // `change`, then answers as Allow does.
  Reactor* Record(std::vector<v1::AccessEvent> events, std::unique_ptr<ledger::Mutation> change,
                  std::function<grpc::Status(uint64_t)> on_durable, Executor* slow = nullptr) {
    RecordThenFinish(log_, reactor_, std::move(events), std::move(change), std::move(on_durable),
                     slow);
    return reactor_;
  }

 private:
  AccessLog* log_;
  Reactor* reactor_;
  v1::AccessEvent event_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUDIT_AUDITED_CALL_H_
