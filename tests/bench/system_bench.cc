// system_bench: real corridord nodes over real mutual TLS on 127.0.0.1, each
// workload beside a bare mutual-TLS gRPC baseline (this binary, re-executed as
// a child process with --serve_echo) in the same run, with ratios and the
// targets of issue 8 marked met or missed. Prints one Markdown table to
// stdout (progress goes to stderr); no pass/fail except in --smoke, where a
// failed call or a crashed node exits 1. Usage and recorded results:
// docs/benchmarks.md.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/dsse.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "rocksdb/utilities/checkpoint.h"
#include "server/federation/exchange.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/store/case_store.h"
#include "server/store/store.h"
#include "tests/bench/bench_echo.grpc.pb.h"
#include "tests/testing/federation.h"
#include "tests/testing/process.h"

ABSL_FLAG(double, seconds, 3.0, "measured duration of each throughput cell");
ABSL_FLAG(std::vector<std::string>, in_flight, std::vector<std::string>({"1", "16", "64"}),
          "calls in flight for the read and write cells");
ABSL_FLAG(std::vector<std::string>, referral_in_flight, std::vector<std::string>({"16", "64"}),
          "Refer calls in flight for the referral exchange cells");
ABSL_FLAG(int, referrals, 2000, "referrals per exchange cell (each needs a fresh case)");
ABSL_FLAG(uint64_t, scale_entries, 10'000'000,
          "ledger entries bulk-loaded before the scale run (0 skips it)");
ABSL_FLAG(std::string, scale_cache, "",
          "directory where the bulk-loaded ledger is kept and reused by later runs "
          "(empty: load it afresh into the scratch directory)");
ABSL_FLAG(bool, smoke, false,
          "seconds-long run for ctest: small in-flight counts and scale size; exits 1 on a failed "
          "call or a crashed node");
ABSL_FLAG(int, shared_channel_max_in_flight, 1 << 20,
          "skip the one-shared-channel cells above this many calls in flight");
ABSL_FLAG(bool, keep, false, "keep the scratch federation (node logs and data) afterwards");
ABSL_FLAG(std::string, perf_out, "",
          "if set, `perf record -g` the node during the largest per-call-channel GetCase cell "
          "into this file");
// Internal: the baseline server's process.
ABSL_FLAG(int, serve_echo, 0, "(internal) serve the baseline on this port until killed");
ABSL_FLAG(std::string, echo_cert, "", "(internal) baseline server certificate");
ABSL_FLAG(std::string, echo_key, "", "(internal) baseline server key");
ABSL_FLAG(std::string, echo_roots, "", "(internal) CAs the baseline server's clients chain to");

namespace corridor::bench {
namespace {

using Clock = std::chrono::steady_clock;
using testing::Subprocess;

constexpr char kSender[] = "union-sg";
constexpr char kReceiver[] = "ministry-id";
constexpr char kPurpose[] = "case-handling";
constexpr char kReceiptContext[] = "corridor-receipt/v1\n";
constexpr char kPayloadType[] = "application/vnd.corridor.envelope+protobuf";

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// Processes this run started, killed if it has to give up.
std::vector<pid_t>& Children() {
  static auto* pids = new std::vector<pid_t>;
  return *pids;
}

[[noreturn]] void Die(const std::string& what) {
  fprintf(stderr, "system_bench: %s\n", what.c_str());
  for (pid_t pid : Children()) kill(pid, SIGKILL);
  exit(2);
}

template <typename T>
T OrDie(absl::StatusOr<T> v, const std::string& what) {
  if (!v.ok()) Die(absl::StrCat(what, ": ", v.status().ToString()));
  return *std::move(v);
}

// The fixed keys of the baseline exchange (both processes derive them).
Ed25519PrivateKey BaselineSenderKey() { return *Ed25519PrivateKey::FromSeed(std::string(32, 's')); }
Ed25519PrivateKey BaselineReceiverKey() {
  return *Ed25519PrivateKey::FromSeed(std::string(32, 'r'));
}
// The sender node's signing key is fixed so a cached bulk-loaded ledger (whose
// checkpoint it signed) opens in a later run.
Ed25519PrivateKey ScaleNodeKey() { return *Ed25519PrivateKey::FromSeed(std::string(32, 'n')); }

// ---- /proc ------------------------------------------------------------------

// user+sys CPU seconds of a process so far; -1 if it is gone.
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; fields >> f; ++i) {  // field 3 is the state
    if (i == 14) (void)absl::SimpleAtoi(f, &utime);
    if (i == 15) {
      (void)absl::SimpleAtoi(f, &stime);
      break;
    }
  }
  return double(utime + stime) / sysconf(_SC_CLK_TCK);
}

// A "VmHWM:"/"VmRSS:" field of a process in MiB; -1 if unknown.
double StatusMiB(pid_t pid, const std::string& field) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(field.size())) / 1024.0;
  }
  return -1;
}

double Percentile(std::vector<float> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * v.size()))];
}

// ---- channels -----------------------------------------------------------------

// The client side of every measured call, node and baseline alike: the
// channel MakeMutualTlsChannel builds, except that each channel gets its own
// connection (gRPC would otherwise share one between identical channels).
std::shared_ptr<grpc::Channel> MakeChannel(const TlsIdentity& id, const std::string& target) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = id.roots_pem;
  ssl.pem_private_key = id.key_pem;
  ssl.pem_cert_chain = id.cert_pem;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(4 << 20);
  args.SetMaxSendMessageSize(4 << 20);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args);
}

std::vector<std::shared_ptr<grpc::Channel>> MakeChannels(const TlsIdentity& id,
                                                         const std::string& target, int n) {
  std::vector<std::shared_ptr<grpc::Channel>> out;
  for (int i = 0; i < n; ++i) out.push_back(MakeChannel(id, target));
  return out;
}

// True once grpc.health.v1 answers SERVING, polled on fresh connections
// (no reconnect backoff) every 5 ms until `limit`.
bool WaitServing(const TlsIdentity& id, const std::string& target, absl::Duration limit,
                 const std::function<bool()>& alive) {
  const auto give_up = Clock::now() + absl::ToChronoSeconds(limit);
  while (Clock::now() < give_up) {
    if (alive && !alive()) return false;
    auto stub = grpc::health::v1::Health::NewStub(MakeChannel(id, target));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(2));
    grpc::health::v1::HealthCheckRequest req;
    grpc::health::v1::HealthCheckResponse resp;
    grpc::Status st = stub->Check(&ctx, req, &resp);
    if (st.ok() && resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return false;
}

// ---- the baseline server ------------------------------------------------------

class EchoService final : public BenchEcho::CallbackService {
 public:
  grpc::ServerUnaryReactor* Echo(grpc::CallbackServerContext* ctx, const EchoRequest* req,
                                 EchoReply* reply) override {
    reply->mutable_payload()->assign(req->reply_bytes(), 'x');
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Exchange(grpc::CallbackServerContext* ctx, const ExchangeRequest* req,
                                     ExchangeReply* reply) override {
    auto* reactor = ctx->DefaultReactor();
    DsseEnvelope env{req->payload_type(), req->payload(), {{req->keyid(), req->signature()}}};
    if (!DsseVerifiedBy(env, req->keyid(), sender_)) {
      reactor->Finish(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "bad signature"));
      return reactor;
    }
    v1::ReceiptBody body;
    body.set_envelope_id(req->keyid());
    body.set_envelope_sha256(DigestBytes(Sha256(req->payload())));
    body.set_receiver_org(kReceiver);
    body.set_time_unix(time(nullptr));
    body.set_ledger_index(1);
    reply->set_body(body.SerializeAsString());
    reply->set_signature(receiver_.Sign(absl::StrCat(kReceiptContext, reply->body())));
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  const Ed25519PublicKey sender_ = BaselineSenderKey().public_key();
  const Ed25519PrivateKey receiver_ = BaselineReceiverKey();
};

int ServeEcho() {
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = OrDie(ReadFileToString(absl::GetFlag(FLAGS_echo_roots)), "echo roots");
  ssl.pem_key_cert_pairs.push_back(
      {OrDie(ReadFileToString(absl::GetFlag(FLAGS_echo_key)), "echo key"),
       OrDie(ReadFileToString(absl::GetFlag(FLAGS_echo_cert)), "echo cert")});
  EchoService service;
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int port = 0;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", absl::GetFlag(FLAGS_serve_echo)),
                           grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) Die("the baseline server cannot listen");
  server->Wait();
  return 0;
}

// ---- closed-loop load -----------------------------------------------------------

// Starts one call on `ctx` using slot `slot`'s request and response, and calls
// `done` with its status.
using StartCall =
    std::function<void(int slot, grpc::ClientContext* ctx, std::function<void(grpc::Status)> done)>;

struct LoadResult {
  uint64_t ok = 0, failed = 0;  // over the whole run, warm-up included
  double qps = 0;               // successful calls per second in the measured window
  double p50_ms = 0, p99_ms = 0;
  std::string first_error;
  bool crashed = false;  // `alive` said no
  bool timed_out = false;
  Clock::time_point first_start, last_ok;
};

// Keeps `in_flight` calls going (each completion starts its slot's next
// call) for `warmup` + `seconds`, or until `max_calls` calls were started if
// it is non-zero. QPS and latencies are over the `seconds` after the warm-up.
LoadResult RunLoad(int in_flight, double warmup, double seconds, uint64_t max_calls,
                   const StartCall& start, const std::function<bool()>& alive) {
  struct Slot {
    std::unique_ptr<grpc::ClientContext> ctx, prev;
    Clock::time_point t0;
    std::vector<float> lat_ms;
  };
  std::vector<Slot> slots(in_flight);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> started{0}, ok{0}, failed{0}, ok_in_window{0};
  absl::Mutex mu;
  int running = in_flight;
  std::string first_error;
  Clock::time_point last_ok{};
  LoadResult r;
  r.first_start = Clock::now();
  // With a call count, every call is measured.
  const Clock::time_point from = r.first_start + std::chrono::duration_cast<Clock::duration>(
                                                     std::chrono::duration<double>(warmup));
  const Clock::time_point to = max_calls ? Clock::time_point::max()
                                         : from + std::chrono::duration_cast<Clock::duration>(
                                                      std::chrono::duration<double>(seconds));

  std::function<void(int)> issue = [&](int s) {
    if (stop.load() || (max_calls && started.fetch_add(1) >= max_calls)) {
      absl::MutexLock lock(&mu);
      --running;
      return;
    }
    Slot& slot = slots[s];
    slot.prev = std::move(slot.ctx);  // the finished call's context, kept one round longer
    slot.ctx = std::make_unique<grpc::ClientContext>();
    slot.ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    slot.t0 = Clock::now();
    start(s, slot.ctx.get(), [&, s](grpc::Status st) {
      const auto t1 = Clock::now();
      Slot& slot = slots[s];
      if (st.ok()) {
        ++ok;
        if (slot.t0 >= from && t1 <= to) {
          ++ok_in_window;
          slot.lat_ms.push_back(1e3 * Seconds(t1 - slot.t0));
        }
        absl::MutexLock lock(&mu);
        last_ok = std::max(last_ok, t1);
      } else {
        ++failed;
        absl::MutexLock lock(&mu);
        if (first_error.empty()) {
          first_error = absl::StrCat(st.error_code(), ": ", st.error_message());
        }
      }
      issue(s);
    });
  };
  for (int s = 0; s < in_flight; ++s) issue(s);

  // Wait for the window (or the call count), watching the server.
  const Clock::time_point limit = max_calls ? r.first_start + std::chrono::seconds(600) : to;
  while (true) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (alive && !alive()) {
      r.crashed = true;
      break;
    }
    if (Clock::now() >= limit) {
      r.timed_out = max_calls != 0;
      break;
    }
    absl::MutexLock lock(&mu);
    if (running == 0) break;
  }
  stop = true;
  {
    absl::MutexLock lock(&mu);
    auto idle = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return running == 0; };
    mu.AwaitWithTimeout(absl::Condition(&idle), absl::Seconds(60));
    if (running != 0) Die("calls did not finish 60 s after the run stopped");
  }
  // The last callbacks are still unwinding through gRPC; let them leave
  // before their contexts and channels go.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::vector<float> lat;
  for (auto& s : slots) lat.insert(lat.end(), s.lat_ms.begin(), s.lat_ms.end());
  r.ok = ok;
  r.failed = failed;
  r.qps = max_calls ? (last_ok > r.first_start ? ok / Seconds(last_ok - r.first_start) : 0)
                    : ok_in_window / seconds;
  r.p50_ms = Percentile(lat, 0.5);
  r.p99_ms = Percentile(lat, 0.99);
  r.first_error = first_error;
  r.last_ok = last_ok;
  return r;
}

// ---- the nodes --------------------------------------------------------------------

struct RunningNode {
  std::string org;
  TlsIdentity user;  // a caseworker of this org
  std::string config;
  std::string endpoint;
  std::unique_ptr<Subprocess> proc;
  double start_ms = 0;  // spawn to first SERVING health answer
  int crashes = 0;

  pid_t pid() const { return proc ? proc->pid() : -1; }
  bool alive() { return proc && proc->running(); }
};

std::string Tail(const std::string& text, int lines) {
  size_t p = text.size();
  for (int i = 0; i <= lines; ++i) {
    if (p == 0) return text;
    p = text.rfind('\n', p - 1);
    if (p == std::string::npos) return text;
  }
  return text.substr(p + 1);
}

void StartNode(RunningNode& n) {
  const auto t0 = Clock::now();
  n.proc = std::make_unique<Subprocess>(
      std::vector<std::string>{testing::BinaryPath("corridord"), "--config", n.config},
      std::filesystem::path(n.config).parent_path().string() + "/corridord.log");
  Children().push_back(n.proc->pid());
  if (!WaitServing(n.user, n.endpoint, absl::Seconds(60), [&] { return n.alive(); })) {
    Die(absl::StrCat(n.org, " node did not start:\n", Tail(n.proc->Log(), 30)));
  }
  n.start_ms = 1e3 * Seconds(Clock::now() - t0);
}

// ---- workloads ----------------------------------------------------------------------

v1::Case CaseTemplate() {
  v1::Case c;
  c.set_category(v1::CASE_CATEGORY_WAGE_THEFT);
  c.set_sector("construction");
  c.set_origin_country("ID");
  c.set_destination_country("SG");
  v1::Worker* w = c.mutable_worker();
  w->set_name("Dewi Lestari");
  w->set_date_of_birth("1994-03-12");
  w->set_document_number("C1234567");
  w->set_contact("+62 812 0000 0000");
  w->add_languages("id");
  w->add_languages("en");
  c.mutable_employer()->set_name("Example Builders Pte Ltd");
  c.mutable_employer()->set_licence_number("2019-01234");
  c.mutable_employer()->set_country("SG");
  c.mutable_recruiter()->set_name("PT Contoh Penempatan");
  c.mutable_recruiter()->set_country("ID");
  c.set_narrative(
      "Worker reports three months of unpaid overtime and deductions for accommodation that "
      "were not in the contract; the employer holds her passport. Payslips for January to "
      "March were provided; the recruiter charged a placement fee of six months' salary, "
      "repaid by salary deductions. She asks for the wages owed and for her passport back.");
  v1::ConsentRecord* consent = c.mutable_consent();
  v1::ConsentGrant* g = consent->add_grants();
  g->set_org(kReceiver);
  g->add_purposes("case-referral");
  consent->set_given_at("2026-01-05T09:00:00Z");
  consent->set_method("written, in Bahasa Indonesia, witnessed by a caseworker");
  return c;
}

// An EchoRequest of the same size as `request_bytes` that asks for `reply_bytes`.
EchoRequest SizedEcho(size_t request_bytes, size_t reply_bytes) {
  EchoRequest e;
  e.set_reply_bytes(reply_bytes);
  size_t pad = request_bytes;
  do {
    e.set_payload(std::string(pad, 'p'));
    if (e.ByteSizeLong() <= request_bytes || pad == 0) break;
    --pad;
  } while (true);
  return e;
}

struct Ctx {
  TlsIdentity user;        // alice, caseworker at the sender
  TlsIdentity node_ident;  // the sender node's certificate (baseline exchange client)
  std::string echo_target;
  pid_t echo_pid = -1;
};

// A closed-loop run against the node or the echo, on one channel or one
// channel per call in flight, with the server's CPU time per call.
struct Cell {
  LoadResult load;
  double cpu_us_per_op = 0;
};

template <typename MakeStart>
Cell RunCell(const TlsIdentity& id, const std::string& target, pid_t server, int in_flight,
             bool channel_per_call, double seconds, uint64_t max_calls, MakeStart make_start,
             const std::function<bool()>& alive) {
  auto channels = MakeChannels(id, target, channel_per_call ? in_flight : 1);
  for (auto& ch : channels)
    ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10));
  StartCall start = make_start(channels);
  const double cpu0 = CpuSeconds(server);
  const double warmup = max_calls ? 0 : std::min(1.0, std::max(0.2, 0.2 * seconds));
  Cell c;
  c.load = RunLoad(in_flight, warmup, seconds, max_calls, start, alive);
  const double cpu1 = CpuSeconds(server);
  if (c.load.ok > 0 && cpu0 >= 0 && cpu1 >= 0) c.cpu_us_per_op = 1e6 * (cpu1 - cpu0) / c.load.ok;
  return c;
}

// Per-channel stubs of service S.
template <typename S>
std::vector<std::unique_ptr<typename S::Stub>> Stubs(
    const std::vector<std::shared_ptr<grpc::Channel>>& channels) {
  std::vector<std::unique_ptr<typename S::Stub>> out;
  for (auto& ch : channels) out.push_back(S::NewStub(ch));
  return out;
}

// GetCase of `ids` in turn (purpose given) at the node.
StartCall GetCaseCalls(const std::vector<std::shared_ptr<grpc::Channel>>& channels, int in_flight,
                       std::shared_ptr<const std::vector<std::string>> ids) {
  struct State {
    std::vector<std::unique_ptr<v1::CaseService::Stub>> stubs;
    std::vector<v1::GetCaseRequest> req;
    std::vector<v1::Case> resp;
    std::atomic<uint64_t> next{0};
    std::shared_ptr<const std::vector<std::string>> ids;
  };
  auto st = std::make_shared<State>();
  st->stubs = Stubs<v1::CaseService>(channels);
  st->req.resize(in_flight);
  st->resp.resize(in_flight);
  st->ids = std::move(ids);
  return [st](int s, grpc::ClientContext* ctx, std::function<void(grpc::Status)> done) {
    v1::GetCaseRequest& req = st->req[s];
    req.set_id((*st->ids)[st->next++ % st->ids->size()]);
    req.set_purpose(kPurpose);
    st->stubs[s % st->stubs.size()]->async()->GetCase(ctx, &req, &st->resp[s], std::move(done));
  };
}

// CreateCase of the template; created ids go to `created` if it is not null.
StartCall CreateCaseCalls(const std::vector<std::shared_ptr<grpc::Channel>>& channels,
                          int in_flight, std::shared_ptr<std::vector<std::string>> created,
                          std::shared_ptr<absl::Mutex> created_mu) {
  struct State {
    std::vector<std::unique_ptr<v1::CaseService::Stub>> stubs;
    std::vector<v1::CreateCaseRequest> req;
    std::vector<v1::Case> resp;
  };
  auto st = std::make_shared<State>();
  st->stubs = Stubs<v1::CaseService>(channels);
  st->req.resize(in_flight);
  st->resp.resize(in_flight);
  for (auto& r : st->req) *r.mutable_case_() = CaseTemplate();
  return [st, created, created_mu](int s, grpc::ClientContext* ctx,
                                   std::function<void(grpc::Status)> done) {
    st->stubs[s % st->stubs.size()]->async()->CreateCase(
        ctx, &st->req[s], &st->resp[s],
        [st, s, created, created_mu, done = std::move(done)](grpc::Status status) {
          if (status.ok() && created) {
            absl::MutexLock lock(created_mu.get());
            created->push_back(st->resp[s].id());
          }
          done(std::move(status));
        });
  };
}

// The echo with the measured call's request and reply sizes.
StartCall EchoCalls(const std::vector<std::shared_ptr<grpc::Channel>>& channels, int in_flight,
                    const EchoRequest& sized) {
  struct State {
    std::vector<std::unique_ptr<BenchEcho::Stub>> stubs;
    std::vector<EchoRequest> req;
    std::vector<EchoReply> resp;
  };
  auto st = std::make_shared<State>();
  st->stubs = Stubs<BenchEcho>(channels);
  st->req.assign(in_flight, sized);
  st->resp.resize(in_flight);
  return [st](int s, grpc::ClientContext* ctx, std::function<void(grpc::Status)> done) {
    st->stubs[s % st->stubs.size()]->async()->Echo(ctx, &st->req[s], &st->resp[s], std::move(done));
  };
}

// Refer of `ids` in turn to the receiver.
StartCall ReferCalls(const std::vector<std::shared_ptr<grpc::Channel>>& channels, int in_flight,
                     std::shared_ptr<const std::vector<std::string>> ids) {
  struct State {
    std::vector<std::unique_ptr<v1::ReferralService::Stub>> stubs;
    std::vector<v1::ReferCaseRequest> req;
    std::vector<v1::ReferCaseResponse> resp;
    std::atomic<uint64_t> next{0};
    std::shared_ptr<const std::vector<std::string>> ids;
  };
  auto st = std::make_shared<State>();
  st->stubs = Stubs<v1::ReferralService>(channels);
  st->req.resize(in_flight);
  st->resp.resize(in_flight);
  st->ids = std::move(ids);
  return [st](int s, grpc::ClientContext* ctx, std::function<void(grpc::Status)> done) {
    v1::ReferCaseRequest& req = st->req[s];
    req.set_case_id((*st->ids)[st->next++ % st->ids->size()]);
    req.set_to_org(kReceiver);
    req.set_agreement("test-agreement");
    req.set_purpose("case-referral");
    req.set_include_personal_data(true);
    st->stubs[s % st->stubs.size()]->async()->Refer(ctx, &req, &st->resp[s], std::move(done));
  };
}

// The referral baseline: sign a referral-sized payload (DSSE, Ed25519), send
// it to the echo, which verifies it and signs a receipt; verify the receipt.
StartCall ExchangeCalls(const std::vector<std::shared_ptr<grpc::Channel>>& channels, int in_flight,
                        const std::string& payload) {
  struct State {
    std::vector<std::unique_ptr<BenchEcho::Stub>> stubs;
    std::vector<ExchangeRequest> req;
    std::vector<ExchangeReply> resp;
    Ed25519PrivateKey sender = BaselineSenderKey();
    Ed25519PublicKey receiver = BaselineReceiverKey().public_key();
    std::string payload;
    std::atomic<uint64_t> next{0};
  };
  auto st = std::make_shared<State>();
  st->stubs = Stubs<BenchEcho>(channels);
  st->req.resize(in_flight);
  st->resp.resize(in_flight);
  st->payload = payload;
  return [st](int s, grpc::ClientContext* ctx, std::function<void(grpc::Status)> done) {
    DsseEnvelope env{kPayloadType, st->payload, {}};
    // A unique envelope each time (the id is the first bytes of the payload).
    const std::string id = absl::StrFormat("%016x", st->next++);
    env.payload.replace(0, std::min(id.size(), env.payload.size()), id);
    DsseSign(env, id, st->sender);
    ExchangeRequest& req = st->req[s];
    req.set_payload_type(env.payload_type);
    req.set_payload(env.payload);
    req.set_keyid(id);
    req.set_signature(env.signatures[0].sig);
    st->stubs[s % st->stubs.size()]->async()->Exchange(
        ctx, &req, &st->resp[s], [st, s, done = std::move(done)](grpc::Status status) {
          if (status.ok() && !st->receiver.Verify(absl::StrCat(kReceiptContext, st->resp[s].body()),
                                                  st->resp[s].signature())) {
            status = grpc::Status(grpc::StatusCode::DATA_LOSS, "receipt does not verify");
          }
          done(std::move(status));
        });
  };
}

// ---- fsync ----------------------------------------------------------------------------

// p50 of write(512 bytes) + fdatasync of one small file in `dir`, in ms.
double FsyncP50Ms(const std::string& dir, int n) {
  const std::string path = dir + "/fsync-probe";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) Die("cannot create " + path);
  std::string block(512, 'f');
  std::vector<float> ms;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    if (pwrite(fd, block.data(), block.size(), 0) != ssize_t(block.size()) || fdatasync(fd) != 0) {
      Die("fsync probe failed");
    }
    ms.push_back(1e3 * Seconds(Clock::now() - t0));
  }
  close(fd);
  unlink(path.c_str());
  return Percentile(ms, 0.5);
}

// ---- bulk load ---------------------------------------------------------------------------

std::vector<std::string> NodeFamilies() {
  std::vector<std::string> f = ledger::LedgerColumnFamilyNames();
  for (const char* name :
       {kCasesFamily, kEvidenceFamily, kOutboxFamily, kReceivedFamily, kReferralIndexFamily}) {
    f.push_back(name);
  }
  return f;
}

// Fills the ledger in the node database at `dir` with `n` access events of
// the kind the node writes (GetCase reads spread over 100,000 cases), filed
// under the same index keys as AccessLog, without the node running. Then
// waits for RocksDB's compactions to settle.
void BulkLoad(const std::string& dir, uint64_t n, const std::string& origin,
              const Ed25519PrivateKey& key) {
  auto store = OrDie(NodeStore::Open(dir, NodeFamilies()), "open " + dir);
  ledger::RocksDbLedgerOptions opts;
  opts.origin = origin;
  opts.signing_key = &key;
  auto ledger = OrDie(ledger::RocksDbLedger::Open(store->db(), store->families(), std::move(opts)),
                      "open the ledger in " + dir);
  const auto t0 = Clock::now();
  absl::Mutex mu;
  int in_flight = 0;
  absl::Status failure;
  const int64_t base_micros = 1767225600LL * 1000000;  // 2026-01-01
  for (uint64_t i = ledger->head().size; i < n;) {
    const uint64_t count = std::min<uint64_t>(1024, n - i);
    std::vector<ledger::AppendEntry> req(count);
    for (uint64_t k = 0; k < count; ++k, ++i) {
      v1::AccessEvent e;
      e.set_time_unix_micros(base_micros + int64_t(i) * 1000);
      e.set_actor_org(kSender);
      e.set_actor_subject(absl::StrCat("user/cw", i % 50));
      e.add_actor_roles(v1::ROLE_CASEWORKER);
      e.set_action("case.get");
      e.set_resource_kind("case");
      const std::string case_id = absl::StrFormat("C-%012d", i % 100000);
      e.set_resource_id(case_id);
      e.set_case_id(case_id);
      e.set_purpose(kPurpose);
      e.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
      e.set_request_id(absl::StrFormat("bulk-%d", i));
      req[k].data = e.SerializeAsString();
      req[k].index_keys = {"case/" + case_id, "actor/union-sg/" + e.actor_subject(), "org/union-sg",
                           "action/case.get", "outcome/allowed"};
    }
    {
      absl::MutexLock lock(&mu);
      auto room = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return in_flight < 8; };
      mu.Await(absl::Condition(&room));
      if (!failure.ok()) Die("bulk load: " + failure.ToString());
      ++in_flight;
    }
    ledger->AppendAsync(std::move(req), nullptr, [&](absl::StatusOr<uint64_t> r) {
      absl::MutexLock lock(&mu);
      if (!r.ok()) failure = r.status();
      --in_flight;
    });
    if (i % 1'000'000 < 1024) {
      fprintf(stderr, "  bulk load: %lu of %lu entries (%.0f s)\n", (unsigned long)i,
              (unsigned long)n, Seconds(Clock::now() - t0));
    }
  }
  {
    absl::MutexLock lock(&mu);
    auto idle = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return in_flight == 0; };
    mu.Await(absl::Condition(&idle));
    if (!failure.ok()) Die("bulk load: " + failure.ToString());
  }
  fprintf(stderr, "  bulk load: %lu entries in %.1f s; flushing, waiting for compactions\n",
          (unsigned long)n, Seconds(Clock::now() - t0));
  // As a cleanly stopped node would leave it: nothing for the node to replay.
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  for (const auto& [name, cf] : store->families()) handles.push_back(cf);
  if (!store->db()->Flush(rocksdb::FlushOptions(), handles).ok()) Die("bulk load: flush failed");
  for (int i = 0; i < 1800; ++i) {
    bool busy = false;
    for (const auto& [name, cf] : store->families()) {
      uint64_t pending = 0, running = 0;
      store->db()->GetIntProperty(cf, "rocksdb.compaction-pending", &pending);
      store->db()->GetIntProperty(cf, "rocksdb.num-running-compactions", &running);
      busy |= pending > 0 || running > 0;
    }
    if (!busy) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  fprintf(stderr, "  bulk load done in %.1f s\n", Seconds(Clock::now() - t0));
}

// Makes `data_dir` a node database holding an `n`-entry ledger: a RocksDB
// checkpoint (hard links) of the cached one if --scale_cache is set (loading
// the cache first if it is missing), else a fresh load.
void PrepareScaleDataDir(const std::string& data_dir, uint64_t n, const std::string& origin) {
  const Ed25519PrivateKey key = ScaleNodeKey();
  const std::string cache = absl::GetFlag(FLAGS_scale_cache);
  if (cache.empty()) {
    BulkLoad(data_dir, n, origin, key);
    return;
  }
  const std::string dir = absl::StrCat(cache, "/ledger-", n);
  if (!std::filesystem::exists(dir + "/COMPLETE")) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    BulkLoad(dir + "/db", n, origin, key);
    std::ofstream(dir + "/COMPLETE") << origin << "\n";
  } else {
    fprintf(stderr, "  reusing the bulk-loaded ledger in %s\n", dir.c_str());
  }
  auto store = OrDie(NodeStore::Open(dir + "/db", NodeFamilies()), "open " + dir);
  rocksdb::Checkpoint* cp = nullptr;
  if (!rocksdb::Checkpoint::Create(store->db(), &cp).ok()) Die("checkpoint");
  std::unique_ptr<rocksdb::Checkpoint> owned(cp);
  rocksdb::Status s = cp->CreateCheckpoint(data_dir);
  if (!s.ok()) Die("checkpoint into " + data_dir + ": " + s.ToString());
}

// ---- the report ------------------------------------------------------------------------

struct Row {
  std::string measure, in_flight, channels, corridor, baseline, ratio, cpu, target;
};

std::string Num(double v) {
  std::string s = absl::StrFormat("%.0f", v);
  for (int i = int(s.size()) - 3; i > 0 && s[i - 1] != '-'; i -= 3) s.insert(i, ",");
  return s;
}
std::string Ms(double v) {
  return v < 10 ? absl::StrFormat("%.2f", v) : absl::StrFormat("%.1f", v);
}
std::string Pct(double v) { return absl::StrFormat("%.0f%%", v); }
std::string Mark(bool met) { return met ? "**met**" : "**MISSED**"; }

std::string Figures(const LoadResult& r) {
  if (r.crashed) return "NODE CRASHED";
  std::string s =
      absl::StrCat(Num(r.qps), "/s, p50 ", Ms(r.p50_ms), " / p99 ", Ms(r.p99_ms), " ms");
  if (r.failed) absl::StrAppend(&s, " (", r.failed, " failed: ", r.first_error.substr(0, 80), ")");
  return s;
}

class Bench {
 public:
  Bench() : fed_("corridor.test", 3, 2) {}

  int Run();

 private:
  void Setup();
  std::function<bool()> Alive(RunningNode& n) {
    return [&n] { return n.alive(); };
  }
  // After a cell: if the node died, say so, keep its log and start it again.
  bool CheckCrash(RunningNode& n, const LoadResult& r, const std::string& what);
  // Adds a row to the table, and shows it on stderr at once.
  void AddRow(const Row& r);
  void ReadWriteCells(const std::string& label, bool scale, std::map<std::string, double>* qps_out);
  void ReferralCells();
  std::vector<std::string> CreateCases(int count);

  testing::TestFederation fed_;
  Ctx ctx_;
  RunningNode sender_, receiver_;
  std::unique_ptr<Subprocess> echo_;
  std::vector<Row> rows_;
  std::vector<std::string> notes_;
  bool any_failure_ = false;
  double fsync_ms_ = 0;
  std::map<std::string, double> base_qps_;
};

std::string FormatRow(const Row& r) {
  return absl::StrCat("| ", r.measure, " | ", r.in_flight, " | ", r.channels, " | ", r.corridor,
                      " | ", r.baseline, " | ", r.ratio, " | ", r.cpu, " | ", r.target, " |");
}

void Bench::AddRow(const Row& r) {
  rows_.push_back(r);
  fprintf(stderr, "%s\n", FormatRow(r).c_str());
}

bool Bench::CheckCrash(RunningNode& n, const LoadResult& r, const std::string& what) {
  if (r.failed) any_failure_ = true;
  if (n.alive()) return false;
  ++n.crashes;
  any_failure_ = true;
  const std::string log = Tail(n.proc->Log(), 15);
  const int code = n.proc->Stop(SIGKILL);
  fprintf(stderr, "!! the %s node died during %s (exit/signal status %d); log tail:\n%s\n",
          n.org.c_str(), what.c_str(), code, log.c_str());
  notes_.push_back(absl::StrCat("The ", n.org, " node died during ", what, " (status ", code,
                                "); it was restarted for the following cells."));
  StartNode(n);
  return true;
}

void Bench::Setup() {
  fed_.AddOrg(kSender, v1::ORG_KIND_UNION);
  fed_.AddOrg(kReceiver, v1::ORG_KIND_MINISTRY);
  // A fixed signing key for the sender, so a cached bulk-loaded ledger opens.
  testing::TestOrg& s = fed_.org(kSender);
  s.signing = ScaleNodeKey();
  if (!WriteFileAtomically(s.dir + "/signing.key", s.signing.ToPem(), 0600).ok()) {
    Die("cannot write the signing key");
  }
  for (const std::string org : {kSender, kReceiver}) {
    fed_.WriteNodeConfig(org, {{"alice", {"caseworker"}}});
    fed_.IssueUser(org, "alice");
  }
  const std::string sdir = fed_.org(kSender).dir;
  ctx_.user = OrDie(LoadTlsIdentity(sdir + "/alice.crt", sdir + "/alice.key", sdir + "/ca.crt"),
                    "alice's identity");
  ctx_.node_ident = OrDie(LoadTlsIdentity(sdir + "/node.crt", sdir + "/node.key", sdir + "/ca.crt"),
                          "the node identity");
  for (auto* n : {&sender_, &receiver_}) {
    n->org = n == &sender_ ? kSender : kReceiver;
    n->config = fed_.org(n->org).dir + "/node.yaml";
    n->endpoint = fed_.org(n->org).endpoint();
    const std::string dir = fed_.org(n->org).dir;
    n->user = OrDie(LoadTlsIdentity(dir + "/alice.crt", dir + "/alice.key", dir + "/ca.crt"),
                    "alice's identity at " + n->org);
  }
  StartNode(sender_);
  StartNode(receiver_);

  // The baseline server: this binary, with the sender node's certificate.
  const int port = testing::PickFreePort();
  ctx_.echo_target = absl::StrCat("127.0.0.1:", port);
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (len <= 0) Die("cannot find this binary");
  self[len] = '\0';
  echo_ = std::make_unique<Subprocess>(
      std::vector<std::string>{
          self, absl::StrCat("--serve_echo=", port), "--echo_cert=" + sdir + "/node.crt",
          "--echo_key=" + sdir + "/node.key", "--echo_roots=" + sdir + "/ca.crt"},
      fed_.root() + "/echo.log");
  if (!WaitServing(ctx_.user, ctx_.echo_target, absl::Seconds(30),
                   [&] { return echo_->running(); })) {
    Die("the baseline server did not start: " + echo_->Log());
  }
  Children().push_back(echo_->pid());
  ctx_.echo_pid = echo_->pid();
}

std::vector<std::string> Bench::CreateCases(int count) {
  auto created = std::make_shared<std::vector<std::string>>();
  auto mu = std::make_shared<absl::Mutex>();
  // One connection per call in flight: setup must not trip the crash with
  // many calls on one connection (issue 8), which the measured cells report.
  const int in_flight = std::min(count, 16);
  Cell c = RunCell(
      ctx_.user, sender_.endpoint, sender_.pid(), in_flight, true, 0, count,
      [&](const auto& ch) { return CreateCaseCalls(ch, in_flight, created, mu); }, Alive(sender_));
  if (CheckCrash(sender_, c.load, "case creation") || c.load.failed) {
    Die(absl::StrCat("creating cases failed: ", c.load.first_error));
  }
  absl::MutexLock lock(mu.get());
  return *created;
}

void Bench::ReadWriteCells(const std::string& label, bool scale,
                           std::map<std::string, double>* qps_out) {
  const double seconds = absl::GetFlag(FLAGS_seconds);
  std::vector<int> counts;
  for (const auto& s : absl::GetFlag(FLAGS_in_flight)) {
    int v = 0;
    if (!absl::SimpleAtoi(s, &v) || v < 1) Die("--in_flight: bad count " + s);
    counts.push_back(v);
  }
  const int max_count = *std::max_element(counts.begin(), counts.end());
  auto ids = std::make_shared<const std::vector<std::string>>(CreateCases(256));

  // The measured messages' sizes, from one real call of each kind.
  v1::GetCaseRequest get;
  get.set_id((*ids)[0]);
  get.set_purpose(kPurpose);
  v1::CreateCaseRequest create;
  *create.mutable_case_() = CaseTemplate();
  v1::Case got, made;
  {
    auto stub = v1::CaseService::NewStub(MakeChannel(ctx_.user, sender_.endpoint));
    grpc::ClientContext c1, c2;
    if (!stub->GetCase(&c1, get, &got).ok() || !stub->CreateCase(&c2, create, &made).ok()) {
      Die("sample calls failed");
    }
  }
  const EchoRequest get_echo = SizedEcho(get.ByteSizeLong(), got.ByteSizeLong());
  const EchoRequest create_echo = SizedEcho(create.ByteSizeLong(), made.ByteSizeLong());
  fprintf(stderr, "message sizes: GetCase %zu -> %zu bytes, CreateCase %zu -> %zu bytes\n",
          get.ByteSizeLong(), got.ByteSizeLong(), create.ByteSizeLong(), made.ByteSizeLong());

  for (const bool write : {false, true}) {
    const std::string op = write ? "CreateCase" : "GetCase";
    for (const bool per_call : {false, true}) {
      for (int n : counts) {
        if (per_call && n == 1) continue;  // the same as one channel
        if (!per_call && n > absl::GetFlag(FLAGS_shared_channel_max_in_flight)) continue;
        const std::string chan = n == 1 ? "1" : per_call ? absl::StrCat(n) : "1 shared";
        const std::string what = absl::StrCat(op, label, " at ", n, " in flight on ", chan,
                                              per_call ? " channels" : " channel");
        fprintf(stderr, "%s ...\n", what.c_str());
        if (!write && n == 1 && !scale) fsync_ms_ = FsyncP50Ms(fed_.org(kSender).dir, 200);
        std::unique_ptr<std::thread> perf;
        if (!write && per_call && n == max_count && !scale &&
            !absl::GetFlag(FLAGS_perf_out).empty()) {
          const pid_t pid = sender_.pid();
          perf = std::make_unique<std::thread>([pid, seconds] {
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
            auto r = testing::RunCommand(
                {"/usr/bin/env", "perf", "record", "-g", "-o", absl::GetFlag(FLAGS_perf_out), "-p",
                 absl::StrCat(pid), "--", "sleep", absl::StrFormat("%.1f", seconds * 0.8)},
                absl::Seconds(seconds + 30));
            fprintf(stderr, "perf: exit %d %s\n", r.exit_code, Tail(r.err, 3).c_str());
          });
        }
        Cell node = RunCell(
            ctx_.user, sender_.endpoint, sender_.pid(), n, per_call, seconds, 0,
            [&](const auto& ch) {
              return write ? CreateCaseCalls(ch, n, nullptr, nullptr) : GetCaseCalls(ch, n, ids);
            },
            Alive(sender_));
        if (perf) perf->join();
        const bool crashed = CheckCrash(sender_, node.load, what);
        Row row;
        row.measure = op + label;
        row.in_flight = absl::StrCat(n);
        row.channels = chan;
        row.corridor = Figures(node.load);
        row.cpu = crashed ? "" : absl::StrFormat("%.0f µs", node.cpu_us_per_op);
        const std::string key = absl::StrCat(op, "/", n, "/", per_call);
        if (scale) {
          // Against the same figure without the big ledger (same run).
          auto base = base_qps_.find(key);
          if (base != base_qps_.end() && !crashed) {
            const double ratio = 100.0 * node.load.qps / base->second;
            row.baseline = absl::StrCat(Num(base->second), "/s without it");
            row.ratio = Pct(ratio);
            row.target = absl::StrCat("≥ 90% of the small-ledger figure: ", Mark(ratio >= 90));
          }
        } else {
          if (!crashed) base_qps_[key] = node.load.qps;
          Cell echo = RunCell(
              ctx_.user, ctx_.echo_target, ctx_.echo_pid, n, per_call, seconds, 0,
              [&](const auto& ch) { return EchoCalls(ch, n, write ? create_echo : get_echo); },
              nullptr);
          if (echo.load.failed) any_failure_ = true;
          row.baseline = absl::StrCat(Figures(echo.load), "; ",
                                      absl::StrFormat("%.0f µs", echo.cpu_us_per_op), " CPU");
          const double ratio = crashed ? 0 : 100.0 * node.load.qps / echo.load.qps;
          row.ratio = crashed ? "—" : Pct(ratio);
          if (n == 64) {
            const double goal = write ? 40 : 60;
            row.target = absl::StrCat("≥ ", goal, "% of echo: ", Mark(!crashed && ratio >= goal));
          }
          if (!write && n == 1) {
            const double bound = echo.load.p50_ms + fsync_ms_;
            AddRow(row);
            row = Row();
            row.measure = "GetCase p50 vs echo p50 + one fsync";
            row.in_flight = "1";
            row.channels = "1";
            row.corridor = absl::StrCat(Ms(node.load.p50_ms), " ms");
            row.baseline = absl::StrCat(Ms(echo.load.p50_ms), " + ", Ms(fsync_ms_), " = ",
                                        Ms(bound), " ms (fsync: write+fdatasync, p50 of 200)");
            row.ratio = crashed ? "—" : absl::StrFormat("%.1f×", node.load.p50_ms / bound);
            row.target = absl::StrCat("p50 ≤ echo p50 + fsync: ",
                                      Mark(!crashed && node.load.p50_ms <= bound));
          }
        }
        if (qps_out) (*qps_out)[key] = node.load.qps;
        AddRow(row);
      }
    }
  }
}

void Bench::ReferralCells() {
  const int count = absl::GetFlag(FLAGS_referrals);
  // A referral-sized signed payload: a referral of the template case.
  v1::EnvelopePayload payload;
  payload.set_envelope_id("0123456789abcdef0123456789abcdef");
  payload.set_sender_org(kSender);
  payload.set_recipient_org(kReceiver);
  payload.set_created_unix(time(nullptr));
  payload.set_expires_unix(time(nullptr) + 86400);
  payload.set_key_id(fed_.org(kSender).key_id);
  payload.set_agreement("test-agreement");
  payload.set_purpose("case-referral");
  {
    v1::Referral* r = payload.mutable_referral();
    r->set_referral_id("R-0123456789ab");
    r->set_origin_case_id("C-0123456789ab");
    r->mutable_handling()->set_onward_sharing(v1::ONWARD_SHARING_NEVER);
    r->mutable_handling()->set_retention_until("2027-01-01T00:00:00Z");
    r->mutable_handling()->set_contains_personal_data(true);
    const v1::Case c = CaseTemplate();
    v1::SharedCase* sc = r->mutable_shared();
    sc->set_category(c.category());
    sc->set_sector(c.sector());
    sc->set_origin_country(c.origin_country());
    sc->set_destination_country(c.destination_country());
    *sc->mutable_worker() = c.worker();
    *sc->mutable_employer() = c.employer();
    *sc->mutable_recruiter() = c.recruiter();
    sc->set_narrative(c.narrative());
  }
  const std::string signed_payload = payload.SerializeAsString();

  auto outbox_delivered = [&]() -> int64_t {
    auto stub = v1::ReferralService::NewStub(MakeChannel(ctx_.user, sender_.endpoint));
    int64_t n = 0;
    v1::ListOutboxRequest req;
    req.set_page_size(1000);
    do {  // ListOutbox is paged
      grpc::ClientContext c;
      c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
      v1::ListOutboxResponse resp;
      if (!stub->ListOutbox(&c, req, &resp).ok()) return -1;
      for (const auto& e : resp.entries()) n += e.kind() == "referral" && e.state() == "delivered";
      req.set_page_token(resp.next_page_token());
    } while (!req.page_token().empty());
    return n;
  };

  for (const auto& s : absl::GetFlag(FLAGS_referral_in_flight)) {
    int n = 0;
    if (!absl::SimpleAtoi(s, &n) || n < 1) Die("--referral_in_flight: bad count " + s);
    const std::string what = absl::StrCat("referral exchange at ", n, " in flight");
    fprintf(stderr, "%s: creating %d cases ...\n", what.c_str(), count);
    auto ids = std::make_shared<const std::vector<std::string>>(CreateCases(count));
    const int64_t before = outbox_delivered();
    if (before < 0) Die("ListOutbox failed");
    fprintf(stderr, "%s ...\n", what.c_str());

    // Poll the sender's outbox (every 100 ms, one fresh connection each)
    // until every referral of this cell is delivered (receipt recorded).
    std::atomic<int64_t> delivered{0};
    Clock::time_point drained{};
    const double cpu_s0 = CpuSeconds(sender_.pid()), cpu_r0 = CpuSeconds(receiver_.pid());
    const auto t0 = Clock::now();
    std::thread poller([&] {
      const auto give_up = t0 + std::chrono::seconds(std::max(120, count / 20));
      while (Clock::now() < give_up && sender_.alive() && receiver_.alive()) {
        const int64_t d = outbox_delivered();
        if (d >= 0) delivered = d - before;
        if (d - before >= count) {
          drained = Clock::now();
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    // One connection per call in flight, like the baseline.
    Cell refer = RunCell(
        ctx_.user, sender_.endpoint, sender_.pid(), n, true, 0, count,
        [&](const auto& ch) { return ReferCalls(ch, n, ids); },
        [&] { return sender_.alive() && receiver_.alive(); });
    poller.join();
    const double cpu_s1 = CpuSeconds(sender_.pid()), cpu_r1 = CpuSeconds(receiver_.pid());
    bool crashed = CheckCrash(sender_, refer.load, what);
    crashed |= CheckCrash(receiver_, refer.load, what);

    Cell base = RunCell(
        ctx_.node_ident, ctx_.echo_target, ctx_.echo_pid, n, true, 0, count,
        [&](const auto& ch) { return ExchangeCalls(ch, n, signed_payload); }, nullptr);
    if (base.load.failed) any_failure_ = true;
    const double base_rate = base.load.ok / Seconds(base.load.last_ok - base.load.first_start);

    Row row;
    row.measure = "Referral exchange (Refer → delivered → receipt on sender)";
    row.in_flight = absl::StrCat(n);
    row.channels = absl::StrCat(n);
    row.baseline = absl::StrCat(Num(base_rate), "/s sign + mTLS send + verify + sign receipt (",
                                signed_payload.size(), "-byte payload); ",
                                absl::StrFormat("%.0f µs", base.cpu_us_per_op), " CPU");
    if (crashed || drained == Clock::time_point{}) {
      row.corridor = crashed ? "NODE CRASHED"
                             : absl::StrCat("NOT DRAINED: ", delivered.load(), " of ", count,
                                            " delivered; Refer ", Figures(refer.load));
      row.target = absl::StrCat("≥ 1,000/s, ≥ 40% of baseline, drained ≤ 1 s: ", Mark(false));
      if (!crashed) any_failure_ = true;
    } else {
      const double total = Seconds(drained - t0);
      const double rate = count / total;
      const double drain = Seconds(drained - refer.load.last_ok);
      const double accept = count / Seconds(refer.load.last_ok - t0);
      row.corridor = absl::StrCat(
          Num(rate), "/s delivered (", count, " in ", absl::StrFormat("%.1f", total),
          " s); Refer accepted at ", Num(accept), "/s, p50 ", Ms(refer.load.p50_ms),
          " ms; outbox drained ", absl::StrFormat("%.2f", drain), " s after the last Refer");
      if (refer.load.failed) {
        absl::StrAppend(&row.corridor, " (", refer.load.failed,
                        " Refer failed: ", refer.load.first_error.substr(0, 80), ")");
      }
      const double ratio = 100.0 * rate / base_rate;
      row.ratio = Pct(ratio);
      row.cpu = absl::StrFormat("%.0f + %.0f µs", 1e6 * (cpu_s1 - cpu_s0) / count,
                                1e6 * (cpu_r1 - cpu_r0) / count);
      row.target = absl::StrCat("≥ 1,000/s: ", Mark(rate >= 1000),
                                "; ≥ 40% of baseline: ", Mark(ratio >= 40),
                                "; drained ≤ 1 s: ", Mark(drain <= 1.0));
    }
    AddRow(row);
  }
}

int Bench::Run() {
  const auto t_start = Clock::now();
  Setup();
  fprintf(stderr, "federation in %s; nodes started in %.0f / %.0f ms\n", fed_.root().c_str(),
          sender_.start_ms, receiver_.start_ms);
  ReadWriteCells("", false, nullptr);
  if (!absl::GetFlag(FLAGS_referral_in_flight).empty() && absl::GetFlag(FLAGS_referrals) > 0) {
    ReferralCells();
  }
  const double sender_hwm = StatusMiB(sender_.pid(), "VmHWM:");
  const double receiver_hwm = StatusMiB(receiver_.pid(), "VmHWM:");
  const double echo_hwm = StatusMiB(ctx_.echo_pid, "VmHWM:");
  const double sender_start_ms = sender_.start_ms;

  // Scale: the sender again, on a data dir whose ledger was bulk-loaded.
  const uint64_t entries = absl::GetFlag(FLAGS_scale_entries);
  double scale_hwm = 0, scale_rss = 0;
  if (entries > 0) {
    fprintf(stderr, "scale: preparing a %lu-entry ledger ...\n", (unsigned long)entries);
    sender_.proc->Stop(SIGTERM);
    const std::string dir = fed_.org(kSender).dir;
    const std::string yaml = OrDie(ReadFileToString(sender_.config), "read config");
    sender_.config = dir + "/node-scale.yaml";
    if (!WriteFileAtomically(
             sender_.config,
             absl::StrReplaceAll(yaml, {{"data_dir: data\n", "data_dir: data-scale\n"}}))
             .ok()) {
      Die("cannot write the scale config");
    }
    const v1::NodeConfig config = OrDie(LoadNodeConfig(sender_.config), "scale config");
    PrepareScaleDataDir(config.data_dir(), entries, LedgerOrigin(config));
    StartNode(sender_);
    fprintf(stderr, "scale: node started in %.0f ms, RSS %.0f MiB\n", sender_.start_ms,
            StatusMiB(sender_.pid(), "VmRSS:"));
    Row start;
    start.measure = absl::StrCat("Node start with a ", Num(double(entries)), "-entry ledger");
    start.corridor = absl::StrFormat("%.0f ms to first SERVING health answer (RSS then %.0f MiB)",
                                     sender_.start_ms, StatusMiB(sender_.pid(), "VmRSS:"));
    start.baseline = absl::StrFormat("%.0f ms with a small ledger", sender_start_ms);
    start.target = absl::StrCat("< 1 s: ", Mark(sender_.start_ms < 1000));
    AddRow(start);
    ReadWriteCells(absl::StrCat(" @", Num(double(entries))), true, nullptr);
    scale_hwm = StatusMiB(sender_.pid(), "VmHWM:");
    scale_rss = StatusMiB(sender_.pid(), "VmRSS:");
    Row mem;
    mem.measure = absl::StrCat("Node peak RSS with a ", Num(double(entries)), "-entry ledger");
    mem.corridor =
        absl::StrFormat("%.0f MiB peak (VmHWM), %.0f MiB at the end", scale_hwm, scale_rss);
    mem.baseline = absl::StrFormat("%.0f MiB peak with a small ledger", sender_hwm);
    mem.target = absl::StrCat("< 512 MiB: ", Mark(scale_hwm < 512));
    AddRow(mem);
  }

  // The table.
  printf("\n## corridor system_bench — %s\n\n",
         absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone()).c_str());
  printf("%u cores; %.1f s per cell; in flight %s; referrals per cell %d; scale %s entries%s\n\n",
         std::thread::hardware_concurrency(), absl::GetFlag(FLAGS_seconds),
         absl::StrJoin(absl::GetFlag(FLAGS_in_flight), "/").c_str(), absl::GetFlag(FLAGS_referrals),
         Num(double(entries)).c_str(), absl::GetFlag(FLAGS_smoke) ? " (SMOKE RUN)" : "");
  printf(
      "| measure | in flight | channels | Corridor | baseline (same run) | ratio | node CPU/op "
      "| target |\n");
  printf("| --- | ---: | --- | --- | --- | ---: | ---: | --- |\n");
  for (const Row& r : rows_) printf("%s\n", FormatRow(r).c_str());
  printf("\nPeak RSS (VmHWM): sender node %.0f MiB, receiver node %.0f MiB, echo server %.0f MiB",
         sender_hwm, receiver_hwm, echo_hwm);
  if (entries > 0) printf("; sender on the big ledger %.0f MiB", scale_hwm);
  printf(".\nNode crashes: sender %d, receiver %d. Total run %.0f s.\n", sender_.crashes,
         receiver_.crashes, Seconds(Clock::now() - t_start));
  for (const auto& n : notes_) printf("- %s\n", n.c_str());
  fflush(stdout);

  sender_.proc->Stop(SIGTERM);
  receiver_.proc->Stop(SIGTERM);
  echo_->Stop(SIGTERM);
  if (absl::GetFlag(FLAGS_keep)) {
    fed_.KeepFiles();
    fprintf(stderr, "kept %s\n", fed_.root().c_str());
  }  // otherwise fed_ removes its files
  if (absl::GetFlag(FLAGS_smoke) && any_failure_) {
    fprintf(stderr, "system_bench --smoke: a call failed or a node crashed (see above)\n");
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace corridor::bench

namespace {
// Takes the nodes and the baseline server down with this process.
void KillChildrenAndDie(int sig) {
  for (pid_t pid : corridor::bench::Children()) kill(pid, SIGKILL);
  signal(sig, SIG_DFL);
  raise(sig);
}
}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  if (absl::GetFlag(FLAGS_serve_echo) != 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    return corridor::bench::ServeEcho();
  }
  for (int sig : {SIGINT, SIGTERM, SIGABRT, SIGSEGV, SIGBUS}) signal(sig, KillChildrenAndDie);
  if (absl::GetFlag(FLAGS_smoke)) {
    // Seconds-long: every cell, few calls, several in flight on one channel
    // and on several.
    absl::SetFlag(&FLAGS_seconds, 0.3);
    absl::SetFlag(&FLAGS_in_flight, std::vector<std::string>({"1", "8"}));
    absl::SetFlag(&FLAGS_referral_in_flight, std::vector<std::string>({"4"}));
    absl::SetFlag(&FLAGS_referrals, 20);
    absl::SetFlag(&FLAGS_scale_entries, 20000);
    absl::SetFlag(&FLAGS_scale_cache, std::string());
  }
  return corridor::bench::Bench().Run();
}
