// The Prometheus metrics endpoint (issue 13, "Metrics"; docs/operations.md,
// "Monitor") of a real corridord on a loopback port: after calls that succeed
// and calls refused by a handler, by the auth processor or for a method that
// does not exist, each counter moved by exactly the number of those calls;
// every scrape parses as exposition format 0.0.4 (the strict parser of
// tests/testing/prometheus_text.h); no personal data, case id or free text
// appears, and every label value is a method, a code, a state or a federation
// org id; the outbox, peer and witness metrics follow a peer going away and
// coming back; many calls in flight on one channel while several threads
// scrape; bad HTTP gets 404, 405 or 431 (or, not HTTP at all, the connection
// closed) and the node keeps serving.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "server/auth/access_table.h"
#include "server/common/request_metrics.h"
#include "tests/testing/channels.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/federation.h"
#include "tests/testing/load.h"
#include "tests/testing/nodes.h"
#include "tests/testing/prometheus_text.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

using testing::Exposition;
using testing::Labels;

constexpr char kUnion[] = "union-sg";
constexpr char kMinistry[] = "ministry-id";
constexpr char kWorkerName[] = "Zephyrine Quillfeather-Okonkwo";

struct HttpResponse {
  int status = 0;  // 0: no answer
  std::string head, body;
};

// One HTTP/1.1 exchange on a new connection to 127.0.0.1:`port`: sends
// `request` as given and reads until the server closes.
HttpResponse Http(int port, const std::string& request) {
  HttpResponse out;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return out;
  timeval timeout{
      static_cast<time_t>(absl::ToInt64Seconds(testing::ScaledDeadline(absl::Seconds(30)))), 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return out;
  }
  size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may answer and close before reading it all
    sent += n;
  }
  std::string raw;
  char buf[16384];
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, 0)) > 0;) raw.append(buf, n);
  close(fd);
  const size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.compare(0, 9, "HTTP/1.1 ") != 0) return out;
  out.head = raw.substr(0, end);
  out.body = raw.substr(end + 4);
  out.status = std::atoi(raw.substr(9, 3).c_str());
  return out;
}

HttpResponse Get(int port, const std::string& path = "/metrics") {
  return Http(port, absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
                                 "Connection: close\r\n\r\n"));
}

class MetricsEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::ClearCtlEnvironment();
    fed_.AddOrg(kUnion);
    fed_.AddOrg(kMinistry, v1::ORG_KIND_MINISTRY);
    fed_.limits["witness_interval_seconds"] = "1";
    for (const char* org : {kUnion, kMinistry}) nodes_.Configure(org);
    std::ofstream(nodes_.config(kUnion), std::ios::app) << "metrics:\n  listen: 127.0.0.1:0\n";
    stranger_ = fed_.IssueUser(kUnion, "stranger");  // a certificate of the org, not a user
    for (const char* org : {kUnion, kMinistry}) ASSERT_TRUE(nodes_.Start(org));
    const std::string line = nodes_.AwaitLogLine(kUnion, {"metrics.listening"});
    std::smatch m;
    ASSERT_TRUE(std::regex_search(line, m, std::regex("\"port\":([0-9]+)"))) << line;
    port_ = std::stoi(m[1]);
    ASSERT_GT(port_, 0);
  }

  // A scrape, parsed; fails the test if it is not a valid exposition.
  Exposition Scrape() {
    HttpResponse r = Get(port_);
    EXPECT_EQ(r.status, 200) << r.head;
    EXPECT_TRUE(absl::StrContains(r.head, "Content-Type: text/plain; version=0.0.4")) << r.head;
    auto parsed = testing::ParseExposition(r.body);
    EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n" << r.body;
    last_text_ = r.body;
    return parsed.ok() ? *parsed : Exposition{};
  }

  std::shared_ptr<grpc::Channel> Channel(const std::string& user_prefix) {
    auto id = LoadTlsIdentity(user_prefix + ".crt", user_prefix + ".key",
                              fed_.org(kUnion).dir + "/ca.crt");
    EXPECT_TRUE(id.ok()) << id.status();
    return testing::MakeDedicatedChannel(*id, fed_.org(kUnion).endpoint());
  }

  static double Calls(const Exposition& e, const std::string& service, const std::string& method,
                      const std::string& code) {
    return e.Value("corridor_grpc_requests_total",
                   {{"service", service}, {"method", method}, {"code", code}});
  }
  static double ListCases(const Exposition& e, const std::string& code) {
    return Calls(e, "corridor.v1.CaseService", "ListCases", code);
  }
  // Calls counted as the collapsed "other" method, whatever their code.
  static double OtherCalls(const Exposition& e) {
    double n = 0;
    for (const auto& s : e.All()) {
      if (s.name == "corridor_grpc_requests_total" && s.labels.at("method") == "other") {
        n += s.value;
      }
    }
    return n;
  }

  testing::TestFederation fed_;
  testing::NodeProcesses nodes_{fed_};
  std::string stranger_;
  int port_ = 0;
  std::string last_text_;
};

TEST_F(MetricsEndpointTest, CountersMoveByExactlyTheCallsMadeRefusalsIncluded) {
  const Exposition before = Scrape();
  auto cw = v1::CaseService::NewStub(Channel(nodes_.user(kUnion)));
  auto aud = v1::CaseService::NewStub(Channel(nodes_.auditor(kUnion)));
  auto stranger = v1::CaseService::NewStub(Channel(stranger_));
  constexpr int kAllowed = 5, kDenied = 3, kStrangers = 2, kUnknown = 4;
  for (int i = 0; i < kAllowed; ++i) {
    v1::ListCasesResponse resp;
    EXPECT_TRUE(cw->ListCases(testing::ScaledContext().get(), {}, &resp).ok());
  }
  for (int i = 0; i < kDenied; ++i) {  // an auditor may not list cases: refused by the handler
    v1::ListCasesResponse resp;
    EXPECT_EQ(aud->ListCases(testing::ScaledContext().get(), {}, &resp).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  grpc::StatusCode stranger_code = grpc::StatusCode::OK;
  for (int i = 0; i < kStrangers; ++i) {  // not a user: refused before any handler
    v1::ListCasesResponse resp;
    stranger_code = stranger->ListCases(testing::ScaledContext().get(), {}, &resp).error_code();
    EXPECT_NE(stranger_code, grpc::StatusCode::OK);
  }
  // Methods no service has: half inside corridor.v1, half outside; each typed path is "other".
  grpc::GenericStub generic(Channel(nodes_.user(kUnion)));
  for (int i = 0; i < kUnknown; ++i) {
    const std::string path = i % 2 == 0 ? absl::StrCat("/corridor.v1.CaseService/Nope", i)
                                        : absl::StrCat("/secret.Service/", kWorkerName, i);
    grpc::Slice empty("");
    grpc::ByteBuffer req(&empty, 1), resp;
    grpc::Status status;
    std::atomic<bool> done{false};
    auto ctx = testing::ScaledContext();
    generic.UnaryCall(ctx.get(), path, grpc::StubOptions(), &req, &resp, [&](grpc::Status s) {
      status = s;
      done = true;
    });
    ASSERT_TRUE(testing::Eventually([&] { return done.load(); }));
    EXPECT_FALSE(status.ok()) << path;
  }
  const Exposition after = Scrape();
  // What each code should have gained: the strangers' code may be the auditor's too.
  std::map<std::string, double> want = {{"OK", kAllowed}, {"PERMISSION_DENIED", kDenied}};
  want[RequestMetrics::CodeName(stranger_code)] += kStrangers;
  for (const auto& [code, n] : want) {
    EXPECT_EQ(ListCases(after, code) - ListCases(before, code), n) << code;
  }
  double all_codes = 0;
  for (int c = 0; c <= 16; ++c) {
    const std::string code = RequestMetrics::CodeName(static_cast<grpc::StatusCode>(c));
    all_codes += ListCases(after, code) - ListCases(before, code);
  }
  EXPECT_EQ(all_codes, kAllowed + kDenied + kStrangers);
  EXPECT_EQ(OtherCalls(after) - OtherCalls(before), kUnknown) << last_text_;
  // Every call a handler answered was timed; the strangers' were not (no handler ran).
  const Labels list = {{"service", "corridor.v1.CaseService"}, {"method", "ListCases"}};
  EXPECT_EQ(after.Value("corridor_grpc_request_duration_seconds_count", list) -
                before.Value("corridor_grpc_request_duration_seconds_count", list),
            kAllowed + kDenied);
  // Each answered call recorded an entry first: the ledger grew and its appends were timed.
  EXPECT_GE(after.Value("corridor_ledger_entries") - before.Value("corridor_ledger_entries"),
            kAllowed + kDenied);
  EXPECT_GE(after.Value("corridor_ledger_append_duration_seconds_count") -
                before.Value("corridor_ledger_append_duration_seconds_count"),
            kAllowed + kDenied);
  EXPECT_EQ(after.Value("corridor_ledger_writable"), 1);
  EXPECT_EQ(after.Value("corridor_build_info",
                        {{"grpc_version", grpc::Version()}, {"compiler", __VERSION__}}),
            1);
  // The node's certificate and CA are valid for ten years in the test federation.
  EXPECT_GT(after.Value("corridor_certificate_expiry_seconds", {{"certificate", "node"}}),
            9 * 365 * 86400.0);
  EXPECT_GT(after.Value("corridor_certificate_expiry_seconds", {{"certificate", "ca"}}),
            9 * 365 * 86400.0);
  EXPECT_GT(after.Value("corridor_roster_ca_expiry_seconds", {{"org", kMinistry}}),
            9 * 365 * 86400.0);
  EXPECT_EQ(after.Value("corridor_roster_version"), 1);
}

// What the endpoint shows of a case, its worker and its referral: nothing.
// Every label is one of a known, bounded set of values.
TEST_F(MetricsEndpointTest, ShowsNoPersonalDataAndOnlyBoundedLabels) {
  testing::CommandResult r =
      nodes_.Ctl(kUnion, {"case", "create", "--category", "wage-theft", "--origin", "id",
                          "--destination", "sg", "--worker-name", kWorkerName, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> ids = testing::JsonValues(r.out, "id");
  ASSERT_FALSE(ids.empty()) << r.out;
  r = nodes_.Ctl(kUnion, {"case", "show", ids[0], "--purpose", "case-handling"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = nodes_.Ctl(kUnion, {"refer", ids[0], "--to", kMinistry, "--agreement", "test-agreement",
                          "--purpose", "case-referral", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::vector<std::string> referral = testing::JsonValues(r.out, "referral_id");
  // A typed path carrying the name reaches the node too.
  grpc::GenericStub generic(Channel(nodes_.user(kUnion)));
  grpc::Slice empty("");
  grpc::ByteBuffer req(&empty, 1), resp;
  std::atomic<bool> done{false};
  auto ctx = testing::ScaledContext();
  generic.UnaryCall(ctx.get(), absl::StrCat("/", kWorkerName, "/", ids[0]), grpc::StubOptions(),
                    &req, &resp, [&](grpc::Status) { done = true; });
  ASSERT_TRUE(testing::Eventually([&] { return done.load(); }));

  const Exposition e = Scrape();
  for (const std::string& secret :
       {std::string(kWorkerName), std::string("Zephyrine"), std::string("Quillfeather"), ids[0]}) {
    EXPECT_FALSE(absl::StrContains(last_text_, secret)) << secret;
  }
  for (const std::string& id : referral) EXPECT_FALSE(absl::StrContains(last_text_, id));
  std::set<std::string> methods = {"other"}, services = {"other"};
  for (const MethodRule& rule : MethodRules()) {
    std::vector<std::string> parts = absl::StrSplit(rule.method, '/');
    services.insert(parts[1]);
    methods.insert(parts[2]);
  }
  const std::set<std::string> orgs = {kUnion, kMinistry};
  const std::set<std::string> states = {"unknown", "joining", "healthy", "unreachable", "refused"};
  const std::set<std::string> certificates = {"node", "ca"};
  for (const auto& s : e.All()) {
    for (const auto& [name, value] : s.labels) {
      SCOPED_TRACE(absl::StrCat(s.name, " ", name, "=", value));
      if (name == "method") {
        EXPECT_TRUE(methods.count(value));
      } else if (name == "service") {
        EXPECT_TRUE(services.count(value));
      } else if (name == "code") {
        EXPECT_TRUE(std::regex_match(value, std::regex("[A-Z_]+")));
      } else if (name == "peer" || name == "org") {
        EXPECT_TRUE(orgs.count(value));
      } else if (name == "state") {
        EXPECT_TRUE(states.count(value));
      } else if (name == "certificate") {
        EXPECT_TRUE(certificates.count(value));
      } else if (name == "le") {
        EXPECT_TRUE(std::regex_match(value, std::regex("[0-9.]+|\\+Inf")));
      } else {
        EXPECT_TRUE(name == "grpc_version" || name == "compiler");
      }
    }
  }
}

// A peer that goes away: its state, and the outbox holding what is sent to it
// with the age of its oldest envelope; once it is back, delivery empties it.
TEST_F(MetricsEndpointTest, OutboxPeerAndWitnessMetricsFollowAPeer) {
  const Labels peer = {{"peer", kMinistry}};
  ASSERT_TRUE(testing::Eventually([&] {
    const Exposition e = Scrape();
    return e.Value("corridor_peer_up", peer) == 1 &&
           e.Value("corridor_witness_last_witnessed_timestamp_seconds", peer) > 0 &&
           e.Value("corridor_witness_witnessed_size", peer) > 0;
  })) << last_text_;
  EXPECT_EQ(Scrape().Value("corridor_witness_fork", peer), 0);
  nodes_.Stop(kMinistry, SIGTERM);
  ASSERT_TRUE(testing::Eventually([&] {
    const Exposition e = Scrape();
    return e.Value("corridor_peer_up", peer) == 0 &&
           e.Value("corridor_peer_state", {{"peer", kMinistry}, {"state", "unreachable"}}) == 1 &&
           e.Value("corridor_peer_state", {{"peer", kMinistry}, {"state", "healthy"}}) == 0;
  })) << last_text_;
  testing::CommandResult r =
      nodes_.Ctl(kUnion, {"case", "create", "--category", "wage-theft", "--origin", "id",
                          "--destination", "sg", "--worker-name", kWorkerName, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string id = testing::JsonValues(r.out, "id").at(0);
  r = nodes_.Ctl(kUnion, {"refer", id, "--to", kMinistry, "--agreement", "test-agreement",
                          "--purpose", "case-referral"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // The referral waits; the age of the oldest envelope grows with the node's clock.
  ASSERT_TRUE(testing::Eventually([&] {
    const Exposition e = Scrape();
    return e.Value("corridor_outbox_pending", peer) == 1 &&
           e.Value("corridor_outbox_oldest_pending_age_seconds", peer) >= 2;
  })) << last_text_;
  ASSERT_TRUE(nodes_.Start(kMinistry));
  ASSERT_TRUE(testing::Eventually([&] {
    const Exposition e = Scrape();
    return e.Value("corridor_outbox_pending", peer) == 0 && e.Value("corridor_peer_up", peer) == 1;
  })) << last_text_;
  // A lane with nothing waiting shows no age at all.
  EXPECT_FALSE(absl::StrContains(last_text_, "corridor_outbox_oldest_pending_age_seconds{"));
}

// 32 calls in flight on one channel while four threads scrape: every scrape
// is valid, and the count of the calls is exact at the end.
TEST_F(MetricsEndpointTest, ScrapesDuringManyCallsInFlightOnOneChannel) {
  const Exposition before = Scrape();
  auto stub = v1::CaseService::NewStub(Channel(nodes_.user(kUnion)));
  testing::OutcomeTally tally;
  std::atomic<bool> stop{false};
  std::atomic<int> scrapes{0}, bad{0};
  std::vector<std::thread> scrapers;
  for (int t = 0; t < 4; ++t) {
    scrapers.emplace_back([&] {
      while (!stop.load()) {
        HttpResponse r = Get(port_);
        if (r.status != 200 || !testing::ParseExposition(r.body).ok()) ++bad;
        ++scrapes;
      }
    });
  }
  testing::LoadOptions options;
  options.in_flight = 32;
  options.duration = absl::Seconds(3);
  testing::RunLoad(options, [&](uint64_t, testing::CallDone done) {
    testing::StartUnaryCall<v1::ListCasesRequest, v1::ListCasesResponse>(
        [&stub](grpc::ClientContext* c, const v1::ListCasesRequest* q, v1::ListCasesResponse* p,
                std::function<void(grpc::Status)> cb) { stub->async()->ListCases(c, q, p, cb); },
        v1::ListCasesRequest(), testing::ScaledDeadline(absl::Seconds(60)),
        [&tally, done](const grpc::Status& s, const v1::ListCasesResponse&) {
          tally.Add("ListCases", s.error_code());
          done(s);
        });
  });
  stop = true;
  for (auto& t : scrapers) t.join();
  EXPECT_GT(scrapes.load(), 4);
  EXPECT_EQ(bad.load(), 0);
  const Exposition after = Scrape();
  ASSERT_GT(tally.Total(), 32u) << tally.ToString();
  for (const auto& [method, codes] : tally.Snapshot()) {
    for (const auto& [code, n] : codes) {
      const std::string name = RequestMetrics::CodeName(code);
      EXPECT_EQ(ListCases(after, name) - ListCases(before, name), n) << name;
    }
  }
  EXPECT_EQ(nodes_.Ctl(kUnion, {"health"}).exit_code, 0);
}

// Anything but GET /metrics is refused with its own code, nothing is served
// beside it, and the node goes on serving both HTTP and gRPC.
TEST_F(MetricsEndpointTest, BadHttpIsRefusedAndTheNodeStaysUp) {
  HttpResponse r = Http(port_,
                        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                        "Connection: close\r\n\r\nhello");
  EXPECT_EQ(r.status, 405) << r.head;
  EXPECT_TRUE(absl::StrContains(r.head, "Allow: GET")) << r.head;
  for (const char* method : {"PUT", "DELETE", "HEAD", "OPTIONS"}) {
    r = Http(port_, absl::StrCat(method,
                                 " /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                                 "\r\n"));
    EXPECT_EQ(r.status, 405) << method << " " << r.head;
  }
  for (const char* path : {"/", "/metrics/", "/metricsx", "/debug", "/../etc/passwd"}) {
    EXPECT_EQ(Get(port_, path).status, 404) << path;
  }
  EXPECT_EQ(Get(port_, "/metrics?name=x").status, 200);  // the query is not part of the path
  // Headers beyond the per-connection memory limit.
  r = Http(port_, absl::StrCat("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: ",
                               std::string(64 * 1024, 'a'), "\r\nConnection: close\r\n\r\n"));
  EXPECT_EQ(r.status, 431) << r.head;
  // Not HTTP at all: the connection is closed without an answer.
  EXPECT_EQ(Http(port_, "NONSENSE\r\n\r\n").status, 0);
  // More idle connections than the endpoint takes: they are turned away or
  // wait, and the node still answers gRPC; once they go, scrapes work again.
  std::vector<int> idle;
  for (int i = 0; i < 40; ++i) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    idle.push_back(fd);
  }
  EXPECT_EQ(nodes_.Ctl(kUnion, {"health"}).exit_code, 0);
  for (int fd : idle) close(fd);
  EXPECT_TRUE(testing::Eventually([&] { return Get(port_).status == 200; }));
  Scrape();
}

}  // namespace
}  // namespace corridor
