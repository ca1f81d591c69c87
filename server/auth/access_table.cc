#include "server/auth/access_table.h"

#include <map>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/evidence.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/impl/server_builder_plugin.h"
#include "grpcpp/impl/server_initializer.h"

namespace corridor {

namespace {

// Evidence requests (docs/evidence.md): prosecutors ask and fetch, approvers
// decide; an item's chain of custody is for both and for auditors.
std::vector<MethodRule> EvidenceRules() {
  return {
      {"/corridor.v1.EvidenceService/Request", false, false, {v1::ROLE_PROSECUTOR}},
      {"/corridor.v1.EvidenceService/List", false, false, {v1::ROLE_PROSECUTOR, v1::ROLE_APPROVER}},
      {"/corridor.v1.EvidenceService/Get", false, false, {v1::ROLE_PROSECUTOR, v1::ROLE_APPROVER}},
      {"/corridor.v1.EvidenceService/Decide", false, false, {v1::ROLE_APPROVER}},
      {"/corridor.v1.EvidenceService/Fetch", false, false, {v1::ROLE_PROSECUTOR}},
      {"/corridor.v1.EvidenceService/Custody",
       false,
       false,
       {v1::ROLE_PROSECUTOR, v1::ROLE_APPROVER, v1::ROLE_AUDITOR}},
  };
}

// Access attestations and reconciliation (docs/federation.md): peers ask for
// proofs of what was attested to them and for the envelopes exchanged with
// them; auditors read attestations and ask for both through their node.
std::vector<MethodRule> DownstreamRules() {
  return {
      {"/corridor.v1.PeerService/ProveAccess", true, false, {}},
      {"/corridor.v1.PeerService/ListExchanged", true, false, {}},
      {"/corridor.v1.AuditService/ListAttestations", false, false, {v1::ROLE_AUDITOR}},
      {"/corridor.v1.AuditService/ProveDownstream", false, false, {v1::ROLE_AUDITOR}},
      {"/corridor.v1.AuditService/Reconcile", false, false, {v1::ROLE_AUDITOR}},
  };
}

}  // namespace

const std::vector<MethodRule>& MethodRules() {
  static auto* rules = new std::vector<MethodRule>{
      {"/corridor.v1.NodeService/Whoami", true, true, {}},
      {"/corridor.v1.NodeService/Status", false, true, {}},
      {"/corridor.v1.NodeService/PushRoster", false, false, {v1::ROLE_ADMIN}},
      {"/corridor.v1.NodeService/Backup", false, false, {v1::ROLE_ADMIN}},
      {"/corridor.v1.PeerService/GetRoster", true, false, {}},
      {"/corridor.v1.PeerService/Hello", true, false, {}},
      {"/corridor.v1.PeerService/Deliver", true, false, {}},
      {"/corridor.v1.PeerService/FetchEvidence", true, false, {}},
      {"/corridor.v1.PeerService/GetCheckpoint", true, false, {}},
      {"/corridor.v1.PeerService/AddCosignature", true, false, {}},
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
      {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", false, true, {}},
  };
  static const bool evidence_added = [] {
    for (auto& r : EvidenceRules()) rules->push_back(std::move(r));
    for (auto& r : DownstreamRules()) rules->push_back(std::move(r));
    return true;
  }();
  (void)evidence_added;
  return *rules;
}

std::vector<std::string> ServedServiceNames() {
  return {
      v1::NodeService::service_full_name(),          v1::PeerService::service_full_name(),
      v1::CaseService::service_full_name(),          v1::AuditService::service_full_name(),
      v1::ReferralService::service_full_name(),      v1::EvidenceService::service_full_name(),
      grpc::health::v1::Health::service_full_name(), "grpc.reflection.v1alpha.ServerReflection",
  };
}

absl::Status CheckAccessTable(const std::vector<std::string>& services) {
  return CheckAccessTable(services, MethodRules());
}

absl::Status CheckAccessTable(const std::vector<std::string>& services,
                              const std::vector<MethodRule>& rules) {
  std::map<std::string, int> rules_for;  // method path -> how many rules name it
  for (const MethodRule& rule : rules) ++rules_for[rule.method];
  std::vector<std::string> problems;
  std::set<std::string> served;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const std::string& name : services) {
    const google::protobuf::ServiceDescriptor* service = pool->FindServiceByName(name);
    if (service == nullptr) {
      problems.push_back(
          absl::StrCat("the service ", name, " is served but this build has no descriptor for it"));
      continue;
    }
    for (int i = 0; i < service->method_count(); ++i) {
      const std::string path = absl::StrCat("/", name, "/", service->method(i)->name());
      served.insert(path);
      auto it = rules_for.find(path);
      if (it == rules_for.end()) {
        problems.push_back(absl::StrCat(path, " is served but has no rule"));
      } else if (it->second > 1) {
        problems.push_back(absl::StrCat(path, " has ", it->second, " rules"));
      }
    }
  }
  for (const auto& [method, count] : rules_for) {
    if (served.count(method) == 0) {
      problems.push_back(absl::StrCat("the rule for ", method, " names a method not served"));
    }
  }
  if (problems.empty()) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("the access table (server/auth/access_table.cc) does not match the services "
                   "served: ",
                   absl::StrJoin(problems, "; ")));
}

namespace {

class ServiceListPlugin : public grpc::ServerBuilderPlugin {
 public:
  explicit ServiceListPlugin(std::shared_ptr<std::vector<std::string>> services)
      : services_(std::move(services)) {}
  std::string name() override { return "corridor.served_services"; }
  void InitServer(grpc::ServerInitializer*) override {}
  // Runs after every service, the plugins' own included, is registered.
  void Finish(grpc::ServerInitializer* si) override { *services_ = *si->GetServiceList(); }
  void ChangeArguments(const std::string&, void*) override {}

 private:
  std::shared_ptr<std::vector<std::string>> services_;
};

class ServiceListOption : public grpc::ServerBuilderOption {
 public:
  explicit ServiceListOption(std::shared_ptr<std::vector<std::string>> services)
      : services_(std::move(services)) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    plugins->push_back(std::make_unique<ServiceListPlugin>(services_));
  }

 private:
  std::shared_ptr<std::vector<std::string>> services_;
};

}  // namespace

std::unique_ptr<grpc::ServerBuilderOption> RecordServedServices(
    std::shared_ptr<std::vector<std::string>> services) {
  return std::make_unique<ServiceListOption>(std::move(services));
}

}  // namespace corridor
