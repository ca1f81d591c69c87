#include "server/auth/auth.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/lib/grpc_util.h"
#include "client/lib/pki.h"
#include "ledger/base/log.h"
#include "server/auth/access_table.h"
#include "server/common/edge.h"

namespace corridor {

void Queue(RefusalSink* log, v1::AccessEvent ev) {
  // Queued, not waited for: callers run on gRPC transport threads. Refusals
  // past the identity's budget are counted into one aggregated entry.
  const std::string action = ev.action();
  log->RecordRefusal(std::move(ev), [action](absl::Status recorded) {
    if (!recorded.ok()) {
      log::Error("access.unrecorded", {{"action", action}, {"error", recorded.message()}});
    }
  });
}

void RecordDenied(RefusalSink* log, const Principal& who, absl::string_view method,
                  const absl::Status& why) {
  if (log == nullptr) return;
  v1::AccessEvent ev;
  SetActor(who, &ev);
  ev.set_action("auth.denied");
  ev.set_resource_kind("method");
  ev.set_resource_id(std::string(method));
  ev.set_outcome(v1::ACCESS_OUTCOME_DENIED);
  ev.set_reason(std::string(why.message()));
  Queue(log, std::move(ev));
}

void CorridorAuthProcessor::RecordRefusedIdentity(const std::string& pem, const std::string& method,
                                                  const absl::Status& why) const {
  if (log_ == nullptr) return;
  // The identity is what the certificate *claims*: it was refused, so it is
  // unverified, and the entry says so.
  v1::AccessEvent ev;
  ev.set_actor_subject("unverified:unknown");
  if (!pem.empty()) ev.set_actor_issuer(resolver_->IssuingMember(pem, resolver_->clock().Now()));
  if (auto info = pki::InspectCertificate(pem); info.ok()) {
    std::vector<SpiffeId> claims;
    for (const auto& uri : info->uris) {
      if (auto id = ParseSpiffeUri(uri, federation_); id.ok()) claims.push_back(*id);
    }
    if (claims.size() == 1) {
      ev.set_actor_org(claims[0].org);
      ev.set_actor_subject(absl::StrCat("unverified:", claims[0].kind == PrincipalKind::kNode
                                                           ? "node"
                                                           : "user/" + claims[0].user));
    } else if (claims.size() > 1) {
      ev.set_actor_subject(absl::StrCat("unverified:", claims.size(), "-identities"));
    }
  }
  ev.set_action("auth.refused");
  // The method tried: the trail of a refused identity says what it attempted.
  ev.set_resource_kind("method");
  bool served = false;
  for (const MethodRule& rule : MethodRules()) served = served || method == rule.method;
  ev.set_resource_id(served ? method : RequestIdForLedger(method));
  ev.set_outcome(v1::ACCESS_OUTCOME_DENIED);
  ev.set_reason(std::string(why.message()));
  Queue(log_, std::move(ev));
}

grpc::Status CorridorAuthProcessor::Process(const InputMetadata& metadata,
                                            grpc::AuthContext* context, OutputMetadata*,
                                            OutputMetadata*) {
  auto path = metadata.find(":path");
  const std::string method =
      path == metadata.end() ? "" : std::string(path->second.data(), path->second.size());
  grpc::Status status = Check(method, context);
  if (!status.ok() && metrics_ != nullptr) metrics_->RecordRefused(method, status.error_code());
  return status;
}

grpc::Status CorridorAuthProcessor::Check(const std::string& method, grpc::AuthContext* context) {
  // Read-only use of the connection's AuthContext: see auth.h.
  const std::string pem = PeerCertificatePem(*context);
  auto principal = resolver_->ResolveCached(pem, resolver_->clock().Now());
  if (!principal.ok()) {
    log::Warn("auth.refused", {{"code", absl::StatusCodeToString(principal.status().code())},
                               {"reason", principal.status().message()}});
    RecordRefusedIdentity(pem, method, principal.status());
    return ToGrpcStatus(principal.status());
  }
  // Every call of a verified identity takes a token before any work is done.
  CallLimiter* limiter =
      (*principal)->kind == PrincipalKind::kNode ? peer_limiter_.get() : user_limiter_.get();
  if (limiter != nullptr) {
    const std::string who = (*principal)->Name();
    if (absl::Duration wait = limiter->Take(who); wait > absl::ZeroDuration()) {
      const absl::Status st = absl::ResourceExhaustedError(TooManyRequests(who, wait));
      if (log_ != nullptr) {
        v1::AccessEvent ev;
        SetActor(**principal, &ev);
        ev.set_action("auth.rate_limited");
        ev.set_resource_kind("method");
        ev.set_resource_id(method);
        ev.set_outcome(v1::ACCESS_OUTCOME_DENIED);
        ev.set_reason(std::string(st.message()));
        Queue(log_, std::move(ev));
      }
      return ToGrpcStatus(st);
    }
  }
  // Methods the Corridor services do not implement themselves (health,
  // reflection, unknown paths) are checked here against the same table.
  if (absl::StartsWith(method, "/corridor.v1.")) return grpc::Status::OK;
  if (auto st = CheckAccess(**principal, method); !st.ok()) {
    log::Warn("auth.denied", {{"caller", (*principal)->Name()}, {"method", ForLedger(method)}});
    RecordDenied(log_, **principal, method, st);
    return ToGrpcStatus(st);
  }
  return grpc::Status::OK;
}

absl::StatusOr<Principal> CallerOf(const IdentityResolver& identity,
                                   const grpc::AuthContext& context) {
  const std::string pem = PeerCertificatePem(context);
  if (pem.empty()) {
    return absl::UnauthenticatedError("the call carries no authenticated Corridor identity");
  }
  auto principal = identity.ResolveCached(pem, identity.clock().Now());
  if (!principal.ok()) return principal.status();
  return **principal;
}

absl::Status CheckAccess(const Principal& principal, absl::string_view method) {
  for (const MethodRule& rule : MethodRules()) {
    if (method != rule.method) continue;
    if (principal.kind == PrincipalKind::kNode) {
      if (rule.nodes) return absl::OkStatus();
      return absl::PermissionDeniedError(absl::StrCat(method, " is for users, not peer nodes"));
    }
    if (rule.any_user) return absl::OkStatus();
    for (v1::Role r : rule.roles) {
      if (principal.HasRole(r)) return absl::OkStatus();
    }
    std::vector<std::string> names;
    for (v1::Role r : rule.roles) names.push_back(v1::Role_Name(r));
    return absl::PermissionDeniedError(absl::StrCat(
        principal.Name(), " may not call ", method,
        rule.roles.empty()
            ? " (peer nodes only)"
            : absl::StrCat(" (needs one of the roles ", absl::StrJoin(names, ", "), ")")));
  }
  return absl::PermissionDeniedError(absl::StrCat(method, " is not open to anyone"));
}

absl::StatusOr<Principal> Authorize(const IdentityResolver& identity,
                                    const grpc::CallbackServerContext& context, const Rpc& rpc,
                                    RefusalSink* log) {
  const std::string& method = rpc.path();
  auto auth = context.auth_context();
  if (auth == nullptr) return absl::UnauthenticatedError("call has no TLS identity");
  auto principal = CallerOf(identity, *auth);
  if (!principal.ok()) return principal.status();
  if (auto st = CheckAccess(*principal, method); !st.ok()) {
    log::Warn("auth.denied",
              {{"caller", principal->Name()}, {"method", method}, {"reason", st.message()}});
    RecordDenied(log, *principal, method, st);
    return st;
  }
  return principal;
}

}  // namespace corridor
