#include "client/ctl/audit_witness.h"

#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/ctl/display.h"
#include "client/ctl/ledger_keys.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "ledger/base/file.h"
#include "ledger/crypto/crypto.h"
#include "ledger/merkle.h"

namespace corridor::ctl {
namespace {

// The keys of `org` in `roster` (not revoked) as note verifiers of `type`.
std::vector<note::Verifier> RosterKeys(const v1::Roster& roster, const std::string& org,
                                       uint8_t type) {
  std::vector<note::Verifier> out;
  for (const auto& m : roster.members()) {
    if (m.org() != org) continue;
    for (const auto& k : m.signing_keys()) {
      if (k.status() == v1::KEY_STATUS_REVOKED) continue;
      auto raw = Base64Decode(k.public_key());
      if (!raw.ok()) continue;
      if (auto pub = Ed25519PublicKey::FromRaw(*raw); pub.ok()) {
        out.push_back(note::Verifier{absl::StrCat(roster.federation(), "/", org), type, *pub});
      }
    }
  }
  return out;
}

// The size and root of a checkpoint note that verifies with one of `keys`.
absl::StatusOr<note::Checkpoint> OpenWithAny(const std::string& text,
                                             const std::vector<note::Verifier>& keys) {
  for (const note::Verifier& k : keys) {
    if (auto cp = note::OpenCheckpoint(text, k); cp.ok()) return cp;
  }
  return absl::DataLossError("it does not verify with any key the roster lists for the org");
}

}  // namespace

std::vector<std::string> VerifiedCosigners(const v1::Roster& roster, const std::string& node_org,
                                           const note::Note& n) {
  std::vector<std::string> orgs;
  for (const auto& m : roster.members()) {
    if (m.org() == node_org) continue;
    for (const note::Verifier& k : RosterKeys(roster, m.org(), 0x04)) {
      if (note::VerifyCosignature(n, k).ok()) {
        orgs.push_back(m.org());
        break;
      }
    }
  }
  return orgs;
}

absl::Status RunAuditCosignedCheckpoint(Context& c) {
  uint32_t k = 0;
  if (!absl::SimpleAtoi(c.args.Get("cosigned"), &k) || k == 0) {
    return absl::InvalidArgumentError("--cosigned must be a number of peers, at least 1");
  }
  const std::string org = c.args.Get("org", OrgOfCertificate(c.args));
  v1::Roster roster;
  auto verifiers = LedgerVerifiers(c.args, org, &roster);
  if (!verifiers.ok()) return verifiers.status();
  if (c.args.Has("vkey") || roster.members_size() == 0) {
    return absl::InvalidArgumentError(
        "--cosigned needs the roster (--roster): the witnesses' keys come from it");
  }
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::GetCheckpointRequest req;
  req.set_min_cosignatures(k);
  v1::CheckpointResponse resp;
  grpc::Status s = v1::AuditService::NewStub(conn->channel)->GetCheckpoint(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  auto opened = OpenCheckpointWithAny(c.args, org, *verifiers, resp.checkpoint());
  if (!opened.ok()) return opened.status();
  auto n = note::ParseNote(resp.checkpoint());
  if (!n.ok()) return absl::DataLossError("the node's cosigned checkpoint is not a signed note");
  const std::vector<std::string> cosigners = VerifiedCosigners(roster, org, *n);
  if (cosigners.size() < k) {
    return absl::FailedPreconditionError(absl::StrCat(
        "refused: the node's checkpoint carries ", cosigners.size(),
        " cosignatures that verify with the witnesses' keys in the roster",
        cosigners.empty() ? "" : absl::StrCat(" (", absl::StrJoin(cosigners, ", "), ")"),
        ", fewer than the ", k, " asked for"));
  }
  if (c.json()) {
    c.out << "{\n  \"origin\": " << JsonQuoted(opened->checkpoint.origin) << ",\n  \"size\": \""
          << opened->checkpoint.size << "\",\n  \"root_hash\": \""
          << Base64Encode(merkle::ToBytes(opened->checkpoint.root))
          << "\",\n  \"checkpoint\": " << JsonQuoted(resp.checkpoint()) << ",\n  \"cosigners\": [";
    for (size_t i = 0; i < cosigners.size(); ++i)
      c.out << (i ? ", " : "") << JsonQuoted(cosigners[i]);
    c.out << "],\n  \"verified\": true\n}\n";
    return absl::OkStatus();
  }
  c.out << "signature verified with " << Printable(opened->verifier.name)
        << "'s key from the roster\n"
        << "cosigned by " << cosigners.size() << " peers, each verified with its witness key "
        << "from the roster: " << Printable(absl::StrJoin(cosigners, ", ")) << "\n";
  for (absl::string_view line : absl::StrSplit(resp.checkpoint(), '\n')) {
    c.out << Printable(line) << "\n";
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CheckForkEvidence(const v1::ForkEvidence& fork,
                                              const std::vector<note::Verifier>& keys) {
  auto first = OpenWithAny(fork.first_checkpoint(), keys);
  if (!first.ok()) {
    return absl::DataLossError(absl::StrCat("the first checkpoint: ", first.status().message()));
  }
  auto second = OpenWithAny(fork.second_checkpoint(), keys);
  if (!second.ok()) {
    return absl::DataLossError(absl::StrCat("the second checkpoint: ", second.status().message()));
  }
  const uint64_t m = first->size, n = second->size;
  const std::string both = absl::StrCat("both checkpoints are validly signed by ", fork.org(),
                                        " (sizes ", m, " and ", n, "); ");
  if (m == n && first->root != second->root) {
    return both + "they give one size two different roots: the two cannot both be true";
  }
  if (n < m) {
    return both +
           "the later one is smaller: the ledger went back to an earlier state (a rolled-back "
           "or replaced data directory); ask the org for a consistency proof from the smaller "
           "to the larger: only a ledger that forked has none";
  }
  if (m < n) {
    std::vector<merkle::Hash> proof;
    for (const std::string& h : fork.proof()) {
      auto hash = merkle::FromBytes(h);
      if (!hash.ok()) return both + "the consistency proof the org served is malformed";
      proof.push_back(*hash);
    }
    if (!merkle::VerifyConsistency(m, n, first->root, second->root, proof).ok()) {
      return both +
             "the consistency proof the org served between them does not verify; an honest "
             "ledger always has one (ask the org: `corridorctl audit consistency`)";
    }
  }
  return absl::DataLossError(
      "the two checkpoints are not inconsistent as kept: this evidence proves no fork");
}

absl::Status RunAuditForks(Context& c) {
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::StatusResponse status;
  grpc::Status s =
      v1::NodeService::NewStub(conn->channel)->Status(ctx.get(), v1::StatusRequest(), &status);
  if (!s.ok()) return Explain(s, *conn);
  int forks = 0;
  for (const auto& p : status.peers()) {
    if (!p.has_fork()) continue;
    ++forks;
    const v1::ForkEvidence& fork = p.fork();
    auto keys = LedgerVerifiers(c.args, fork.org());
    if (!keys.ok()) return keys.status();
    auto verdict = CheckForkEvidence(fork, *keys);
    c.out << "fork of " << Printable(fork.org()) << " (" << Printable(fork.kind())
          << "), detected at "
          << absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixSeconds(fork.detected_unix()),
                              absl::UTCTimeZone())
          << ": " << Printable(verdict.ok() ? *verdict : std::string(verdict.status().message()))
          << "\n";
    if (c.args.Has("save")) {
      const std::string base = absl::StrCat(c.args.Get("save"), "/", fork.org());
      for (const auto& [suffix, text] :
           {std::pair{"-first.checkpoint", fork.first_checkpoint()},
            std::pair{"-second.checkpoint", fork.second_checkpoint()}}) {
        if (auto st = WriteFileAtomically(base + suffix, text, 0644); !st.ok()) return st;
        c.out << "  saved " << Printable(base + suffix) << "\n";
      }
    }
    if (!verdict.ok()) return verdict.status();
  }
  if (forks == 0) c.out << "no forks: every peer this node witnesses showed one history\n";
  return absl::OkStatus();
}

}  // namespace corridor::ctl
