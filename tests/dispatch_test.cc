// The access check is tied to the method gRPC dispatched (server/auth/rpc.h):
// every method of every Corridor service, walked from the protobuf
// descriptors, is called by every kind of caller, and the node's decision must
// be exactly the access table's for the path that was called — refused with
// the table's own message, which names that path, and recorded in the ledger
// with that message; or not refused by the table at all. A handler that
// checked another method's rule would be refused or allowed for the wrong
// callers, or name the wrong path, and fail here.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "server/auth/auth.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"
#include "tests/testing/requests.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

namespace pb = google::protobuf;

// Whether `message` is the access table's refusal (CheckAccess, server/auth/auth.cc).
bool IsAccessRefusal(const std::string& message) {
  return absl::StrContains(message, " may not call ") ||
         absl::StrContains(message, " is for users, not peer nodes") ||
         absl::StrContains(message, " is not open to anyone");
}

class DispatchTest : public ::testing::Test {
 protected:
  struct Caller {
    std::string name;
    Principal principal;  // who the node should see
    std::shared_ptr<grpc::Channel> channel;
  };

  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    ASSERT_OK_AND_ASSIGN(config_, LoadNodeConfig(fed_.WriteNodeConfig("union-sg", kUsers)));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config_));
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(1));
  }

  // Every kind of caller the table distinguishes: each role of the node's
  // org, and another member's node.
  std::vector<Caller> Callers() {
    std::vector<Caller> out;
    for (const auto& [user, roles] : kUsers) {
      Principal p;
      p.kind = PrincipalKind::kUser;
      p.org = "union-sg";
      p.subject = "user/" + user;
      for (const std::string& r : roles) {
        v1::Role role;
        EXPECT_TRUE(v1::Role_Parse("ROLE_" + absl::AsciiStrToUpper(r), &role)) << r;
        p.roles.push_back(role);
      }
      const std::string prefix = fed_.IssueUser("union-sg", user);
      TlsIdentity id{ReadFileToString(prefix + ".crt").value(),
                     ReadFileToString(prefix + ".key").value(), fed_.org("union-sg").ca.cert_pem};
      out.push_back({user, p, MakeMutualTlsChannel(id, fed_.org("union-sg").endpoint(), "")});
    }
    Principal node;
    node.kind = PrincipalKind::kNode;
    node.org = "ministry-id";
    node.subject = "node";
    TlsIdentity id{fed_.org("ministry-id").node.cert_pem, fed_.org("ministry-id").node.key_pem,
                   fed_.org("union-sg").ca.cert_pem};
    out.push_back(
        {"ministry-id node", node, MakeMutualTlsChannel(id, fed_.org("union-sg").endpoint(), "")});
    return out;
  }

  testing::CallResult Call(const testing::MethodInfo& method,
                           const std::shared_ptr<grpc::Channel>& channel) {
    pb::DynamicMessageFactory factory;
    std::unique_ptr<pb::Message> req(factory.GetPrototype(method.request)->New());
    testing::RequestValues values;
    values.case_id = "C-NONE";
    values.evidence_id = "E-NONE";
    values.referral_id = "REF-NONE";
    values.org = "ministry-id";
    values.agreement = "test-agreement";
    testing::FillRequest(req.get(), values);
    std::vector<std::string> messages = {req->SerializeAsString()};
    if (method.client_streaming) {  // AddEvidence: the header, then data
      v1::AddEvidenceRequest data;
      data.set_data("more");
      messages.push_back(data.SerializeAsString());
    }
    return testing::CallByPath(channel, method.path, messages);
  }

  // Every ledger entry, as the node's auditor reads them (a read is recorded
  // after every refusal queued before it: the ledger appends in order).
  std::vector<v1::LoggedEvent> Entries(const std::shared_ptr<grpc::Channel>& auditor) {
    auto audit = v1::AuditService::NewStub(auditor);
    v1::CheckpointResponse cp;
    grpc::ClientContext ctx;
    EXPECT_TRUE(audit->GetCheckpoint(&ctx, {}, &cp).ok());
    std::vector<v1::LoggedEvent> out;
    uint64_t from = 0;
    while (from < cp.size()) {
      v1::GetEntriesRequest req;
      req.set_begin(from);
      req.set_end(std::min<uint64_t>(cp.size(), from + 1000));
      v1::GetEntriesResponse resp;
      grpc::ClientContext c;
      grpc::Status s = audit->GetEntries(&c, req, &resp);
      EXPECT_TRUE(s.ok()) << s.error_message();
      if (!s.ok() || resp.events_size() == 0) break;
      for (const auto& e : resp.events()) out.push_back(e);
      from = resp.events().rbegin()->index() + 1;
    }
    return out;
  }

  const std::map<std::string, std::vector<std::string>> kUsers = {{"cw", {"caseworker"}},
                                                                  {"pros", {"prosecutor"}},
                                                                  {"appr", {"approver"}},
                                                                  {"aud", {"auditor"}},
                                                                  {"adm", {"admin"}}};
  testing::TestFederation fed_;
  v1::NodeConfig config_;
  std::unique_ptr<Node> node_;
};

TEST_F(DispatchTest, EveryMethodIsCheckedAgainstTheRuleOfThePathCalled) {
  const std::vector<Caller> callers = Callers();
  // Refusals expected in the ledger: "<actor> <reason>" → how many.
  std::map<std::string, int> expected;
  int refused_somewhere = 0, methods = 0;
  for (const testing::MethodInfo& method : testing::MethodsOf(testing::CorridorServices())) {
    ++methods;
    bool refused_any = false;
    for (const Caller& caller : callers) {
      SCOPED_TRACE(absl::StrCat(method.path, " as ", caller.name));
      const absl::Status rule = CheckAccess(caller.principal, method.path);
      const testing::CallResult r = Call(method, caller.channel);
      if (rule.ok()) {
        EXPECT_FALSE(IsAccessRefusal(r.status.error_message())) << r.status.error_message();
        continue;
      }
      refused_any = true;
      // The table's own refusal, naming the path that was called, and no other.
      EXPECT_EQ(r.status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_EQ(r.status.error_message(), rule.message());
      ASSERT_TRUE(absl::StrContains(rule.message(), method.path));
      ++expected[absl::StrCat(caller.principal.Name(), " ", rule.message())];
    }
    refused_somewhere += refused_any;
  }
  // Every method but those open to every identity is refused to someone.
  EXPECT_GE(refused_somewhere, methods - 1);  // NodeService.Whoami is open to all

  // Each refusal is recorded once, with the table's message for the path called.
  std::map<std::string, int> recorded;
  std::shared_ptr<grpc::Channel> auditor;
  for (const Caller& c : callers) {
    if (c.name == "aud") auditor = c.channel;
  }
  for (const v1::LoggedEvent& e : Entries(auditor)) {
    if (e.event().outcome() != v1::ACCESS_OUTCOME_DENIED) continue;
    if (!IsAccessRefusal(e.event().reason())) continue;
    ++recorded[absl::StrCat(e.event().actor_org(), "/", e.event().actor_subject(), " ",
                            e.event().reason())];
  }
  EXPECT_EQ(recorded, expected);
}

}  // namespace
}  // namespace corridor
