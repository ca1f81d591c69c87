// The access table (server/auth/access_table.h), held to what the node serves
// and walked at a running node:
// - CheckAccessTable: every method of every service the node serves (the
//   corridor.v1 services, gRPC health and server reflection) has exactly one
//   rule and no rule names a method that does not exist; the check catches a
//   missing, a doubled and a stale rule, each one of the table's rows in turn.
// - The services a running node lists over reflection are exactly those the
//   table is checked against.
// - Every row of the table, generated from MethodRules() itself (not a hand
//   list), called by every kind of caller: each role, a user the node does not
//   know, a user of another org, a peer node. Allowed or refused exactly as the
//   row says; an allowed call may fail later (missing data, a malformed
//   envelope) but never with the access check's refusal. Then the same walk
//   with every caller's calls in flight at once.
#include "server/auth/access_table.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "gtest/gtest.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/deadline.h"
#include "tests/testing/federation.h"
#include "tests/testing/requests.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

namespace pb = google::protobuf;

// ---- the check against the services' descriptors --------------------------

TEST(AccessTableCheckTest, TheTableCoversExactlyTheServedMethods) {
  EXPECT_OK(CheckAccessTable(ServedServiceNames()));
}

TEST(AccessTableCheckTest, EveryServedServiceHasMethodsInTheTable) {
  // Not one service the table would cover vacuously.
  for (const std::string& service : ServedServiceNames()) {
    SCOPED_TRACE(service);
    int rows = 0;
    for (const MethodRule& rule : MethodRules()) {
      if (absl::StartsWith(rule.method, absl::StrCat("/", service, "/"))) ++rows;
    }
    EXPECT_GT(rows, 0);
  }
}

TEST(AccessTableCheckTest, AMissingRuleIsCaughtForEveryRow) {
  const std::vector<MethodRule>& table = MethodRules();
  for (size_t i = 0; i < table.size(); ++i) {
    SCOPED_TRACE(table[i].method);
    std::vector<MethodRule> without = table;
    without.erase(without.begin() + static_cast<long>(i));
    EXPECT_STATUS(CheckAccessTable(ServedServiceNames(), without),
                  absl::StatusCode::kFailedPrecondition,
                  absl::StrCat(table[i].method, " is served but has no rule"));
  }
}

TEST(AccessTableCheckTest, ADoubledRuleIsCaughtForEveryRow) {
  const std::vector<MethodRule>& table = MethodRules();
  for (const MethodRule& rule : table) {
    SCOPED_TRACE(rule.method);
    std::vector<MethodRule> doubled = table;
    doubled.push_back({rule.method, true, true, {}});
    EXPECT_STATUS(CheckAccessTable(ServedServiceNames(), doubled),
                  absl::StatusCode::kFailedPrecondition, absl::StrCat(rule.method, " has 2 rules"));
  }
}

TEST(AccessTableCheckTest, ARuleForAMethodNobodyServesIsCaught) {
  std::vector<MethodRule> stale = MethodRules();
  stale.push_back({"/corridor.v1.CaseService/ExportEverything", false, true, {}});
  stale.push_back({"/corridor.v2.Secret/Read", true, false, {}});
  absl::Status st = CheckAccessTable(ServedServiceNames(), stale);
  EXPECT_STATUS(st, absl::StatusCode::kFailedPrecondition,
                "/corridor.v1.CaseService/ExportEverything names a method not served");
  EXPECT_STATUS(st, absl::StatusCode::kFailedPrecondition,
                "/corridor.v2.Secret/Read names a method not served");
}

TEST(AccessTableCheckTest, AServiceServedWithoutItsRulesOrItsDescriptorIsCaught) {
  // A service the table does not know (here: the rules of one dropped).
  std::vector<MethodRule> no_audit;
  for (const MethodRule& rule : MethodRules()) {
    if (!absl::StartsWith(rule.method, "/corridor.v1.AuditService/")) no_audit.push_back(rule);
  }
  EXPECT_STATUS(CheckAccessTable(ServedServiceNames(), no_audit),
                absl::StatusCode::kFailedPrecondition,
                "/corridor.v1.AuditService/Export is served but has no rule");
  // A service this build has no descriptor for cannot be checked.
  std::vector<std::string> services = ServedServiceNames();
  services.push_back("corridor.v1.NoSuchService");
  EXPECT_STATUS(CheckAccessTable(services), absl::StatusCode::kFailedPrecondition,
                "corridor.v1.NoSuchService is served but this build has no descriptor");
  // And a table for services not served.
  EXPECT_STATUS(CheckAccessTable({"corridor.v1.CaseService"}),
                absl::StatusCode::kFailedPrecondition,
                "/corridor.v1.AuditService/QueryEvents names a method not served");
}

// What the node checks at start is what its server registered, plugins (if
// any) included: a server serving part of the node's services records exactly
// those, and the check then names the rules for the methods it does not serve.
TEST(AccessTableCheckTest, TheServicesAServerRegisteredAreRecordedForTheCheck) {
  v1::NodeService::CallbackService node_service;
  grpc::health::v1::Health::CallbackService health_service;
  grpc::reflection::v1alpha::ServerReflection::CallbackService reflection_service;
  auto served = std::make_shared<std::vector<std::string>>();
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&node_service);
  builder.RegisterService(&health_service);
  builder.RegisterService(&reflection_service);
  builder.SetOption(RecordServedServices(served));
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ASSERT_NE(server, nullptr);
  server->Shutdown();
  EXPECT_EQ(std::set<std::string>(served->begin(), served->end()),
            (std::set<std::string>{"corridor.v1.NodeService", "grpc.health.v1.Health",
                                   "grpc.reflection.v1alpha.ServerReflection"}));
  EXPECT_STATUS(CheckAccessTable(*served), absl::StatusCode::kFailedPrecondition,
                "the rule for /corridor.v1.CaseService/GetCase names a method not served");
}

// ---- the table walked at a running node -------------------------------------

// One kind of caller and what the table says it may do.
struct Caller {
  std::string name;
  std::shared_ptr<grpc::Channel> channel;
  // Whether `rule` lets this caller in. Computed from the rule's fields, not
  // through CheckAccess (the code under test).
  std::function<bool(const MethodRule&)> allowed;
};

// What one call answered, and whether that is the access check refusing it.
struct Outcome {
  grpc::Status status;
  bool refused_by_access_check = false;
};

class AccessTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    // One user per role, generated from the Role enum.
    std::map<std::string, std::vector<std::string>> users;
    const pb::EnumDescriptor* roles = v1::Role_descriptor();
    for (int i = 0; i < roles->value_count(); ++i) {
      const auto role = static_cast<v1::Role>(roles->value(i)->number());
      if (role == v1::ROLE_UNSPECIFIED) continue;
      const std::string name = RoleWord(role);
      users[name] = {name};
      roles_.push_back(role);
    }
    ASSERT_OK_AND_ASSIGN(v1::NodeConfig config,
                         LoadNodeConfig(fed_.WriteNodeConfig("union-sg", users)));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config));
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(1));
  }

  static std::string RoleWord(v1::Role role) {
    return absl::AsciiStrToLower(absl::StripPrefix(v1::Role_Name(role), "ROLE_"));
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& cert_pem, const std::string& key_pem) {
    return MakeMutualTlsChannel({cert_pem, key_pem, fed_.org("union-sg").ca.cert_pem},
                                fed_.org("union-sg").endpoint(), "");
  }
  std::shared_ptr<grpc::Channel> As(const std::string& org, const std::string& user) {
    const std::string prefix = fed_.IssueUser(org, user);
    return Channel(ReadFileToString(prefix + ".crt").value(),
                   ReadFileToString(prefix + ".key").value());
  }

  // Every kind of caller: each role, a user the node does not know, a user of
  // another org, and another member's node.
  std::vector<Caller> Callers() {
    std::vector<Caller> callers;
    for (v1::Role role : roles_) {
      callers.push_back(
          {RoleWord(role), As("union-sg", RoleWord(role)), [role](const MethodRule& r) {
             if (r.any_user) return true;
             for (v1::Role needed : r.roles) {
               if (needed == role) return true;
             }
             return false;
           }});
    }
    auto never = [](const MethodRule&) { return false; };
    callers.push_back({"a user the node does not know", As("union-sg", "stranger"), never});
    callers.push_back({"a user of another org", As("ministry-id", "caseworker"), never});
    const testing::TestOrg& peer = fed_.org("ministry-id");
    callers.push_back({"a peer node", Channel(peer.node.cert_pem, peer.node.key_pem),
                       [](const MethodRule& r) { return r.nodes; }});
    return callers;
  }

  // A case to name in requests, so that allowed calls get as far as they can.
  std::string CreateCase() {
    v1::CreateCaseRequest req;
    req.mutable_case_()->set_category(v1::CASE_CATEGORY_WAGE_THEFT);
    req.mutable_case_()->set_origin_country("ID");
    req.mutable_case_()->set_destination_country("SG");
    req.mutable_case_()->mutable_worker()->set_name("Siti Rahayu");
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + testing::ScaledDeadline(absl::Seconds(10))));
    v1::Case resp;
    grpc::Status s =
        v1::CaseService::NewStub(As("union-sg", "caseworker"))->CreateCase(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.id();
  }

  // Calls the rule's method with a well-formed request built from its
  // descriptor (an empty message where this binary has none).
  static Outcome Call(const Caller& caller, const MethodRule& rule, const std::string& case_id) {
    std::string method_name(rule.method + 1);  // "pkg.Service/Method" -> "pkg.Service.Method"
    method_name[method_name.rfind('/')] = '.';
    const pb::MethodDescriptor* method =
        pb::DescriptorPool::generated_pool()->FindMethodByName(method_name);
    std::string request;
    if (method != nullptr) {
      pb::DynamicMessageFactory factory;
      std::unique_ptr<pb::Message> m(factory.GetPrototype(method->input_type())->New());
      testing::RequestValues values;
      values.case_id = case_id;
      values.evidence_id = "E-00000000000000000000000000000000";
      values.referral_id = "REF-00000000000000000000000000000000";
      testing::FillRequest(m.get(), values);
      request = m->SerializeAsString();
    }
    Outcome out;
    // A stream the server kept open past the deadline would count as let in.
    out.status = testing::CallByPath(caller.channel, rule.method, {request},
                                     testing::ScaledDeadline(absl::Seconds(5)))
                     .status;
    // The access check's refusal (CheckAccess, server/auth/auth.cc) names the
    // method; a refusal later on (a policy, a bad signature) does not.
    out.refused_by_access_check = out.status.error_code() == grpc::StatusCode::PERMISSION_DENIED &&
                                  absl::StrContains(out.status.error_message(), rule.method);
    return out;
  }

  // Checks one caller's outcome against the rule.
  static void Expect(const Caller& caller, const MethodRule& rule, const Outcome& out) {
    SCOPED_TRACE(absl::StrCat(rule.method, " called by ", caller.name));
    const grpc::Status& s = out.status;
    if (caller.allowed(rule)) {
      EXPECT_FALSE(out.refused_by_access_check) << s.error_message();
      EXPECT_NE(s.error_code(), grpc::StatusCode::UNAUTHENTICATED) << s.error_message();
    } else if (caller.name == "a user the node does not know" ||
               caller.name == "a user of another org") {
      // Refused before any method: the identity itself.
      EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
    } else {
      EXPECT_TRUE(out.refused_by_access_check)
          << "code " << s.error_code() << ": " << s.error_message();
    }
  }

  testing::TestFederation fed_;
  std::unique_ptr<Node> node_;
  std::vector<v1::Role> roles_;
};

TEST_F(AccessTableTest, ANodeListsExactlyTheServicesTheTableIsCheckedAgainst) {
  const pb::Descriptor* request_type = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(
      "grpc.reflection.v1alpha.ServerReflectionRequest");
  const pb::Descriptor* response_type = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(
      "grpc.reflection.v1alpha.ServerReflectionResponse");
  ASSERT_NE(request_type, nullptr);
  ASSERT_NE(response_type, nullptr);
  pb::DynamicMessageFactory factory;
  std::unique_ptr<pb::Message> request(factory.GetPrototype(request_type)->New());
  request->GetReflection()->SetString(request.get(), request_type->FindFieldByName("list_services"),
                                      "");
  testing::CallResult result =
      testing::CallByPath(As("union-sg", "caseworker"),
                          "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                          {request->SerializeAsString()});
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  ASSERT_EQ(result.responses.size(), 1u);
  std::unique_ptr<pb::Message> response(factory.GetPrototype(response_type)->New());
  ASSERT_TRUE(response->ParseFromString(result.responses[0]));
  const pb::Message& list = response->GetReflection()->GetMessage(
      *response, response_type->FindFieldByName("list_services_response"));
  const pb::FieldDescriptor* services = list.GetDescriptor()->FindFieldByName("service");
  std::set<std::string> listed;
  for (int i = 0; i < list.GetReflection()->FieldSize(list, services); ++i) {
    const pb::Message& s = list.GetReflection()->GetRepeatedMessage(list, services, i);
    listed.insert(s.GetReflection()->GetString(s, s.GetDescriptor()->FindFieldByName("name")));
  }
  const std::vector<std::string> expected = ServedServiceNames();
  EXPECT_EQ(listed, std::set<std::string>(expected.begin(), expected.end()));
}

// Every rule, every kind of caller, one call each: the answer is what the
// rule says, and each refusal by the access check is one denied entry.
TEST_F(AccessTableTest, EveryRuleWalkedByEveryKindOfCaller) {
  const std::string case_id = CreateCase();
  const std::vector<Caller> callers = Callers();
  int calls = 0, allowed = 0;
  for (const MethodRule& rule : MethodRules()) {
    for (const Caller& caller : callers) {
      Expect(caller, rule, Call(caller, rule, case_id));
      ++calls;
      if (caller.allowed(rule)) ++allowed;
    }
  }
  // Every row, every caller; and the walk exercised both answers.
  EXPECT_EQ(calls, static_cast<int>(MethodRules().size() * callers.size()));
  EXPECT_GT(allowed, 0);
  EXPECT_LT(allowed, calls);
  // Every refusal — by the access check, or of the identity itself — is one
  // denied ledger entry of the caller's (claimed) org naming the method tried,
  // whatever the service (health and reflection included). The auth
  // processor's are queued, not waited for: read until all are there.
  std::map<std::pair<std::string, std::string>, int> want;  // (org, method) -> refusals
  for (const MethodRule& rule : MethodRules()) {
    for (const Caller& caller : callers) {
      if (caller.allowed(rule)) continue;
      const bool other_org = caller.name == "a peer node" || caller.name == "a user of another org";
      ++want[{other_org ? "ministry-id" : "union-sg", rule.method}];
    }
  }
  ASSERT_FALSE(want.empty());
  std::map<std::pair<std::string, std::string>, int> got;
  const absl::Time until = absl::Now() + testing::ScaledDeadline(absl::Seconds(30));
  do {
    got.clear();
    auto audit = v1::AuditService::NewStub(As("union-sg", "auditor"));
    v1::CheckpointResponse cp;
    {
      grpc::ClientContext ctx;
      ctx.set_deadline(
          absl::ToChronoTime(absl::Now() + testing::ScaledDeadline(absl::Seconds(10))));
      ASSERT_TRUE(audit->GetCheckpoint(&ctx, {}, &cp).ok());
    }
    for (uint64_t from = 0; from < cp.size();) {
      v1::GetEntriesRequest req;
      req.set_begin(from);
      req.set_end(std::min<uint64_t>(cp.size(), from + 1000));
      v1::GetEntriesResponse resp;
      grpc::ClientContext ctx;
      ctx.set_deadline(
          absl::ToChronoTime(absl::Now() + testing::ScaledDeadline(absl::Seconds(10))));
      grpc::Status st = audit->GetEntries(&ctx, req, &resp);
      ASSERT_TRUE(st.ok()) << st.error_message();
      if (resp.events_size() == 0) break;
      for (const auto& e : resp.events()) {
        from = e.index() + 1;
        if (e.event().outcome() != v1::ACCESS_OUTCOME_DENIED) continue;
        // The auth processor files the method as the resource (refused identities
        // included); a handler's own check records its action, with the method
        // named in the reason.
        for (const auto& [cell, n] : want) {
          if (cell.first == e.event().actor_org() &&
              (e.event().resource_id() == cell.second ||
               absl::StrContains(e.event().reason(), cell.second))) {
            ++got[cell];
          }
        }
      }
    }
    if (got == want) break;
    absl::SleepFor(absl::Milliseconds(200));
  } while (absl::Now() < until);
  for (const auto& [cell, n] : want) {
    EXPECT_EQ(got[cell], n) << cell.first << " refused " << cell.second;
  }
  EXPECT_EQ(got.size(), want.size());
}

TEST_F(AccessTableTest, EveryRuleWalkedByEveryCallerAtOnce) {
  const std::string case_id = CreateCase();
  const std::vector<Caller> callers = Callers();
  // Every caller walks the whole table on its own channel, all at the same
  // time; the answers are checked afterwards on this thread.
  absl::Mutex mu;
  std::vector<std::tuple<const Caller*, const MethodRule*, Outcome>> outcomes;
  std::vector<std::thread> threads;
  for (const Caller& caller : callers) {
    threads.emplace_back([&, caller_ptr = &caller] {
      for (const MethodRule& rule : MethodRules()) {
        Outcome out = Call(*caller_ptr, rule, case_id);
        absl::MutexLock lock(&mu);
        outcomes.emplace_back(caller_ptr, &rule, std::move(out));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  ASSERT_EQ(outcomes.size(), MethodRules().size() * callers.size());
  for (const auto& [caller, rule, out] : outcomes) Expect(*caller, *rule, out);
}

}  // namespace
}  // namespace corridor
