#include "server/auth/auth.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/lib/grpc_util.h"
#include "client/lib/pki.h"
#include "ledger/base/log.h"
#include "server/common/edge.h"

namespace corridor {
namespace {

// Who may call what. `nodes`: peer nodes of the federation; `any_user`: every
// configured user of this org whatever their roles; `roles`: users holding
// any of these roles.
struct MethodRule {
  const char* method;
  bool nodes;
  bool any_user;
  std::vector<v1::Role> roles;
};

const std::vector<MethodRule>& MethodRules() {
  static const auto* rules = new std::vector<MethodRule>{
      {"/corridor.v1.NodeService/Whoami", true, true, {}},
      {"/corridor.v1.NodeService/Status", false, true, {}},
      {"/corridor.v1.NodeService/PushRoster", false, false, {v1::ROLE_ADMIN}},
      {"/corridor.v1.PeerService/GetRoster", true, false, {}},
      {"/corridor.v1.PeerService/Hello", true, false, {}},
      {"/corridor.v1.PeerService/Deliver", true, false, {}},
      // Referrals: caseworkers.
      {"/corridor.v1.ReferralService/Refer", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.ReferralService/ListInbox", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.ReferralService/Decide", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.ReferralService/PostUpdate", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.ReferralService/ListOutbox", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.ReferralService/Permit", false, false, {v1::ROLE_CASEWORKER}},
      // Cases: caseworkers handle them; prosecutors may read; only the
      // approver (data controller) may erase. Admins and auditors read no case content.
      {"/corridor.v1.CaseService/CreateCase", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.CaseService/GetCase",
       false,
       false,
       {v1::ROLE_CASEWORKER, v1::ROLE_PROSECUTOR}},
      {"/corridor.v1.CaseService/ListCases",
       false,
       false,
       {v1::ROLE_CASEWORKER, v1::ROLE_PROSECUTOR}},
      {"/corridor.v1.CaseService/UpdateCase", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.CaseService/CloseCase", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.CaseService/EraseCase", false, false, {v1::ROLE_APPROVER}},
      {"/corridor.v1.CaseService/AddEvidence", false, false, {v1::ROLE_CASEWORKER}},
      {"/corridor.v1.CaseService/ListEvidence",
       false,
       false,
       {v1::ROLE_CASEWORKER, v1::ROLE_PROSECUTOR}},
      {"/corridor.v1.CaseService/GetEvidence",
       false,
       false,
       {v1::ROLE_CASEWORKER, v1::ROLE_PROSECUTOR}},
      // The ledger: auditors only.
      {"/corridor.v1.AuditService/QueryEvents", false, false, {v1::ROLE_AUDITOR}},
      {"/corridor.v1.AuditService/GetCheckpoint", false, false, {v1::ROLE_AUDITOR}},
      {"/corridor.v1.AuditService/GetInclusionProof", false, false, {v1::ROLE_AUDITOR}},
      {"/corridor.v1.AuditService/GetConsistencyProof", false, false, {v1::ROLE_AUDITOR}},
      {"/corridor.v1.AuditService/GetEntries", false, false, {v1::ROLE_AUDITOR}},
      {"/corridor.v1.AuditService/Export", false, false, {v1::ROLE_AUDITOR}},
      {"/grpc.health.v1.Health/Check", true, true, {}},
      {"/grpc.health.v1.Health/Watch", true, true, {}},
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", false, true, {}},
  };
  return *rules;
}

}  // namespace

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

void CorridorAuthProcessor::RecordRefusedIdentity(const std::string& pem,
                                                  const absl::Status& why) const {
  if (log_ == nullptr) return;
  // The identity is what the certificate *claims*: it was refused, so it is
  // unverified, and the entry says so.
  v1::AccessEvent ev;
  ev.set_actor_subject("unverified:unknown");
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
  ev.set_resource_kind("node");
  ev.set_outcome(v1::ACCESS_OUTCOME_DENIED);
  ev.set_reason(std::string(why.message()));
  Queue(log_, std::move(ev));
}

grpc::Status CorridorAuthProcessor::Process(const InputMetadata& metadata,
                                            grpc::AuthContext* context, OutputMetadata*,
                                            OutputMetadata*) {
  // Read-only use of the connection's AuthContext: see auth.h.
  const std::string pem = PeerCertificatePem(*context);
  auto principal = resolver_->ResolveCached(pem, resolver_->clock().Now());
  if (!principal.ok()) {
    log::Warn("auth.refused", {{"code", absl::StatusCodeToString(principal.status().code())},
                               {"reason", principal.status().message()}});
    RecordRefusedIdentity(pem, principal.status());
    return ToGrpcStatus(principal.status());
  }
  auto path = metadata.find(":path");
  const std::string method =
      path == metadata.end() ? "" : std::string(path->second.data(), path->second.size());
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
