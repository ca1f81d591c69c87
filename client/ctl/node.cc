// corridorctl health and whoami: what the node says about itself and about you.
#include <chrono>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/node.grpc.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"

namespace corridor::ctl {
namespace {

std::string RoleName(int r) {
  std::string n = v1::Role_Name(static_cast<v1::Role>(r));
  return absl::AsciiStrToLower(absl::StripPrefix(n, "ROLE_"));
}

std::string PeerStateName(v1::PeerState s) {
  return absl::AsciiStrToLower(absl::StripPrefix(v1::PeerState_Name(s), "PEER_STATE_"));
}

std::string UtcTime(int64_t unix) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(unix),
                          absl::UTCTimeZone());
}

// "restored on T from a backup of T0 at ledger size N".
std::string RestoreDetail(const v1::RestoreInfo& r) {
  return absl::StrCat("restored on ", UtcTime(r.restored_unix()), " from a backup of ",
                      UtcTime(r.backup_unix()), " at ledger size ", r.ledger_size());
}

// What this node's witness says of a peer (docs/federation.md, "Witnessing").
std::string WitnessDetail(const v1::PeerStatus& p) {
  if (p.has_fork() && p.fork().has_restored()) {
    return absl::StrCat("FORKED (", p.fork().kind(), ") by a restore: the peer says it was ",
                        RestoreDetail(p.fork().restored()),
                        "; what it recorded after that is gone from its ledger");
  }
  if (p.has_fork()) {
    return absl::StrCat("FORKED (", p.fork().kind(),
                        "): it showed two inconsistent checkpoints; `corridorctl audit forks`");
  }
  if (!p.witness_error().empty()) return p.witness_error();
  if (p.witnessed_size() == 0) return "not yet";
  if (p.witnessed_unix() == 0) {
    return absl::StrCat("size ", p.witnessed_size(), " (before this node last started)");
  }
  return absl::StrCat("size ", p.witnessed_size(), " at ",
                      absl::FormatTime("%H:%M:%S UTC", absl::FromUnixSeconds(p.witnessed_unix()),
                                       absl::UTCTimeZone()));
}

void PrintPeers(std::ostream& out, const v1::StatusResponse& sresp) {
  std::vector<std::vector<std::string>> rows = {
      {"PEER", "ENDPOINT", "STATE", "DETAIL", "WITNESSED"}};
  for (const auto& p : sresp.peers()) {
    rows.push_back({p.org(), p.endpoint(), PeerStateName(p.state()),
                    p.state() == v1::PEER_STATE_HEALTHY
                        ? "mutual TLS ok, roster v" + std::to_string(p.peer_roster_version())
                        : p.last_error(),
                    WitnessDetail(p)});
  }
  PrintTable(out, rows);
}

absl::Status RunHealth(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  int wait_seconds = 0;
  if (c.args.Has("wait") && !absl::SimpleAtoi(c.args.Get("wait"), &wait_seconds)) {
    return absl::InvalidArgumentError("--wait must be a number of seconds");
  }
  const bool require_peers = c.args.Has("require-peers");
  const absl::Time give_up = absl::Now() + absl::Seconds(wait_seconds);
  auto health = grpc::health::v1::Health::NewStub(conn->channel);
  auto node = v1::NodeService::NewStub(conn->channel);
  while (true) {
    grpc::health::v1::HealthCheckResponse hresp;
    v1::StatusResponse sresp;
    absl::Status problem;
    std::string not_serving;  // the node's reason, if it answered NOT_SERVING
    {
      auto ctx = conn->NewContext();
      // While waiting, let the call wait for the connection instead of failing fast.
      if (absl::Now() < give_up) ctx->set_wait_for_ready(true);
      grpc::Status s = health->Check(ctx.get(), grpc::health::v1::HealthCheckRequest(), &hresp);
      if (!s.ok()) {
        problem = Explain(s, *conn);
      } else if (hresp.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
        const auto& trailers = ctx->GetServerTrailingMetadata();
        auto reason = trailers.find(kHealthReasonKey);
        not_serving = reason == trailers.end()
                          ? "no reason given"
                          : std::string(reason->second.data(), reason->second.size());
        problem = absl::UnavailableError(absl::StrCat(
            "the node at ", conn->target, " is running but not serving: ", not_serving,
            ". It refuses to record anything until this is fixed; once it is (e.g. disk space "
            "freed) it recovers by itself."));
      }
    }
    // Not serving still answers: show the node's view with the reason.
    if (problem.ok() || !not_serving.empty()) {
      auto ctx = conn->NewContext();
      grpc::Status s = node->Status(ctx.get(), v1::StatusRequest(), &sresp);
      if (!s.ok() && problem.ok()) problem = Explain(s, *conn);
    }
    std::vector<std::string> unhealthy;
    if (problem.ok()) {
      for (const auto& p : sresp.peers()) {
        if (p.state() != v1::PEER_STATE_HEALTHY) {
          unhealthy.push_back(absl::StrCat(p.org(), " (", PeerStateName(p.state()), ")"));
        } else if (p.has_fork()) {
          unhealthy.push_back(absl::StrCat(p.org(), " (FORKED: ", p.fork().kind(), ")"));
        } else if (p.peer_roster_version() != sresp.roster_version()) {
          // Healthy, but the two nodes follow different rosters: not yet converged.
          unhealthy.push_back(absl::StrCat(p.org(), " (on roster version ", p.peer_roster_version(),
                                           ", this node on ", sresp.roster_version(), ")"));
        }
      }
      if (require_peers && !unhealthy.empty()) {
        problem = absl::UnavailableError(
            absl::StrCat("peers not healthy: ", absl::StrJoin(unhealthy, ", ")));
      }
    }
    // A refusal will not change by waiting; anything else might.
    const bool refused = absl::IsPermissionDenied(problem) || absl::IsUnauthenticated(problem);
    if (!problem.ok() && !refused && absl::Now() < give_up) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      continue;
    }
    if (!problem.ok() && sresp.org().empty()) return problem;
    if (c.json()) {
      c.out << ToJson(sresp);
    } else {
      c.out << "node " << Printable(sresp.org()) << " (" << Printable(sresp.federation()) << ") at "
            << Printable(conn->target) << ": "
            << (not_serving.empty() ? "serving" : "NOT SERVING (" + Printable(not_serving) + ")")
            << ", roster version " << sresp.roster_version() << "\n";
      if (sresp.has_restored()) {
        c.out << "this node was " << RestoreDetail(sresp.restored())
              << " (its node.restored entry is ledger index "
              << sresp.restored().restored_entry_index() << ")\n";
      }
      PrintPeers(c.out, sresp);
    }
    return problem;
  }
}

absl::Status RunWhoami(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto stub = v1::NodeService::NewStub(conn->channel);
  auto ctx = conn->NewContext();
  v1::WhoamiResponse resp;
  grpc::Status s = stub->Whoami(ctx.get(), v1::WhoamiRequest(), &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  std::vector<std::string> roles;
  for (int r : resp.roles()) roles.push_back(RoleName(r));
  c.out << "org:     " << Printable(resp.org()) << "\n"
        << "subject: " << Printable(resp.subject()) << "\n"
        << "roles:   " << (roles.empty() ? "(none)" : absl::StrJoin(roles, ", ")) << "\n"
        << "node:    " << Printable(resp.node_org()) << " in federation "
        << Printable(resp.federation()) << "\n";
  return absl::OkStatus();
}

absl::Status RunAdminBackup(Context& c) {
  if (auto st = Require(c.args, {"out"}); !st.ok()) return st;
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  v1::BackupRequest req;
  req.set_out_dir(c.args.Get("out"));
  v1::BackupResponse resp;
  auto ctx = conn->NewContext();
  // A backup copies the whole database: give it longer than an ordinary call.
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::hours(2));
  grpc::Status s = v1::NodeService::NewStub(conn->channel)->Backup(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  c.out << "backup written by the node at " << Printable(conn->target) << " to "
        << Printable(req.out_dir()) << " (on the node's machine): ledger size "
        << resp.ledger_size() << ", " << resp.files() << " files, " << resp.bytes()
        << " bytes, manifest SHA-256 " << Printable(resp.manifest_sha256())
        << "; recorded as ledger entry " << resp.recorded_index()
        << ".\n  keystore/ holds the case keys: store it apart from the rest (and from "
           "master.key).\n";
  return absl::OkStatus();
}

}  // namespace

std::vector<Command> NodeStatusCommands() {
  return {
      {{"health"},
       "",
       "is the node serving, and which peers has it authenticated?",
       With(ConnectionOptions(),
            {{"wait", "SECONDS", "keep trying for up to this long"},
             {"require-peers", "",
              "fail unless every roster peer is healthy and on this node's roster version"}}),
       RunHealth},
      {{"peers"},
       "",
       "the node's peers: reachable, authenticated, witnessed, forked (as health shows them)",
       With(ConnectionOptions(),
            {{"wait", "SECONDS", "keep trying for up to this long"},
             {"require-peers", "",
              "fail unless every roster peer is healthy, unforked and on this node's roster "
              "version"}}),
       RunHealth},
      {{"whoami"},
       "",
       "the org, subject and roles the node sees for you",
       ConnectionOptions(),
       RunWhoami},
      {{"admin", "backup"},
       "--out DIR",
       "an online backup, written by the node to DIR on its own machine (admins)",
       With(ConnectionOptions(),
            {{"out", "DIR",
              "absolute path on the node's machine; must not exist or be empty, and not be in "
              "the data directory"}}),
       RunAdminBackup},
  };
}

}  // namespace corridor::ctl
