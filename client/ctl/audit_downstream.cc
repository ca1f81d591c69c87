#include "client/ctl/audit_downstream.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "client/ctl/display.h"
#include "client/ctl/ledger_keys.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.pb.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/dsse.h"
#include "ledger/merkle.h"

namespace corridor::ctl {
namespace {

// What every envelope's DSSE payload type is (docs/federation.md).
constexpr char kEnvelopePayloadType[] = "application/vnd.corridor.envelope.v1+protobuf";

std::string When(int64_t micros) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMicros(micros), absl::UTCTimeZone());
}

// The attestation in `stored`, its signature checked with its sender's roster
// key (verify before parse), naming case `case_id` and the org of the entry
// that recorded it. DataLoss saying why not.
absl::StatusOr<v1::EnvelopePayload> OpenAttestation(const v1::StoredAttestation& stored,
                                                    const std::string& case_id,
                                                    const v1::Roster& roster) {
  auto fail = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("the attestation recorded at entry ",
                                            stored.ledger_index(), " does NOT verify: ", why));
  };
  v1::Envelope env;
  if (!env.ParseFromString(stored.envelope()) || env.signatures_size() != 1 ||
      env.payload_type() != kEnvelopePayloadType) {
    return fail("it is not a signed envelope");
  }
  const std::string& org = stored.event().peer_org();
  auto key = MemberSigningKey(roster, org, env.signatures(0).keyid());
  if (!key.ok()) return fail(key.status().message());
  if (!key->Verify(DssePae(env.payload_type(), env.payload()), env.signatures(0).sig())) {
    return fail(absl::StrCat("its signature is not ", org, "'s"));
  }
  v1::EnvelopePayload p;
  if (!p.ParseFromString(env.payload()) || !p.has_access_attestation()) {
    return fail("its payload is not an access attestation");
  }
  if (p.sender_org() != org || p.access_attestation().origin_case_id() != case_id) {
    return fail(absl::StrCat("it is not ", org, "'s attestation about case ", case_id));
  }
  return p;
}

// The inclusion proof of attested entry `a` in the ledger of `org`, fetched
// through the node and checked against `org`'s checkpoint signed with its
// roster key; the entry must be the read attested. Words for what was proved.
absl::StatusOr<std::string> ProveAttested(Context& c, const Connection& conn,
                                          const std::string& org, const v1::AccessAttestation& a) {
  auto verifiers = LedgerVerifiers(c.args, org);
  if (!verifiers.ok()) return verifiers.status();
  auto ctx = conn.NewContext();
  v1::ProveDownstreamRequest req;
  req.set_org(org);
  req.set_index(a.ledger_index());
  v1::InclusionProofResponse resp;
  grpc::Status s = v1::AuditService::NewStub(conn.channel)->ProveDownstream(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, conn);
  auto opened = OpenCheckpointWithAny(c.args, org, *verifiers, resp.checkpoint());
  if (!opened.ok()) return opened.status();
  const note::Checkpoint& cp = opened->checkpoint;
  auto fail = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("the proof of ", org, "'s entry ", a.ledger_index(),
                                            " does NOT verify: ", why));
  };
  if (cp.size != resp.tree_size() || resp.index() != a.ledger_index()) {
    return fail("it is for another entry or tree size than its checkpoint");
  }
  auto proof = ProofHashes(resp.proof());
  if (!proof.ok()) return proof.status();
  const merkle::Hash leaf = merkle::HashLeaf(resp.entry());
  if (auto st = merkle::VerifyInclusion(a.ledger_index(), cp.size, leaf, *proof, cp.root);
      !st.ok()) {
    return fail(st.message());
  }
  v1::AccessEvent e;
  if (!e.ParseFromString(resp.entry()) || e.actor_org() != org ||
      e.actor_subject() != a.subject() || e.action() != a.action() ||
      e.case_id() != a.sender_case_id() || e.time_unix_micros() != a.time_unix_micros() ||
      e.outcome() != v1::ACCESS_OUTCOME_ALLOWED) {
    return fail("the entry is not the read attested");
  }
  return absl::StrCat("in ", org, "'s ledger at size ", cp.size, " (signed by ",
                      Printable(opened->verifier.name), ")");
}

std::string RolesOf(const v1::AccessAttestation& a) {
  std::vector<std::string> roles;
  for (int r : a.roles()) {
    roles.push_back(EnumShort(v1::Role_descriptor(), r));
  }
  return absl::StrJoin(roles, ",");
}

}  // namespace

absl::Status RunAuditDownstream(Context& c) {
  const std::string case_id = c.args.Get("case");
  if (case_id.empty()) {
    return absl::InvalidArgumentError("--downstream needs the case: --case ID");
  }
  v1::Roster roster;
  auto own_keys = LedgerVerifiers(c.args, OrgOfCertificate(c.args), &roster);
  if (!own_keys.ok()) return own_keys.status();
  if (roster.members_size() == 0) {
    return absl::InvalidArgumentError(
        "--downstream checks each attestation with its sender's key from the roster: give "
        "--roster FILE (and --stewards FILE), not --vkey");
  }
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  std::vector<std::vector<std::string>> rows = {{"INDEX", "ORG", "SUBJECT", "ROLES", "ACTION",
                                                 "RESOURCE", "PURPOSE", "WHEN (UTC)", "THEIR INDEX",
                                                 "PROOF"}};
  v1::ListAttestationsRequest req;
  req.set_case_id(case_id);
  req.set_page_size(1000);
  size_t count = 0;
  do {
    auto ctx = conn->NewContext();
    v1::ListAttestationsResponse resp;
    grpc::Status s =
        v1::AuditService::NewStub(conn->channel)->ListAttestations(ctx.get(), req, &resp);
    if (!s.ok()) return Explain(s, *conn);
    for (const auto& stored : resp.attestations()) {
      auto p = OpenAttestation(stored, case_id, roster);
      if (!p.ok()) return p.status();
      const v1::AccessAttestation& a = p->access_attestation();
      std::string proved = "-";
      if (c.args.Has("prove")) {
        auto words = ProveAttested(c, *conn, p->sender_org(), a);
        if (!words.ok()) return words.status();
        proved = *words;
      }
      rows.push_back({std::to_string(stored.ledger_index()), p->sender_org(), a.subject(),
                      RolesOf(a), a.action(), a.resource_kind() + " " + a.resource_id(),
                      a.purpose(), When(a.time_unix_micros()), std::to_string(a.ledger_index()),
                      proved});
      ++count;
    }
    req.set_page_token(resp.next_page_token());
  } while (!req.page_token().empty());
  PrintTable(c.out, rows);
  c.out << count << " access(es) at other nodes, each attested with the reading org's signature"
        << (c.args.Has("prove") ? " and proved in its ledger" : "") << "\n";
  return absl::OkStatus();
}

absl::Status RunAuditReconcile(Context& c) {
  const std::string peer = c.args.Get("peer");
  if (peer.empty()) return absl::InvalidArgumentError("name the peer: --peer ORG");
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::ReconcileRequest req;
  req.set_peer(peer);
  v1::ReconcileResponse resp;
  grpc::Status s = v1::AuditService::NewStub(conn->channel)->Reconcile(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) c.out << ToJson(resp);
  const int missing = resp.only_here_size() + resp.only_there_size();
  if (!c.json() && missing > 0) {
    std::vector<std::vector<std::string>> rows = {
        {"RECORDED BY", "ENVELOPE", "FROM", "TO", "SHA-256", "ITS INDEX"}};
    for (const auto* list : {&resp.only_here(), &resp.only_there()}) {
      for (const auto& e : *list) {
        rows.push_back({list == &resp.only_here() ? "this node only" : peer + " only",
                        e.envelope_id(), e.sender_org(), e.recipient_org(), HexEncode(e.sha256()),
                        std::to_string(e.ledger_index())});
      }
    }
    PrintTable(c.out, rows);
  }
  if (missing > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        missing, " envelope(s) exchanged with ", peer,
        " are recorded by one side only (listed above); both sides agree on ", resp.agreed()));
  }
  if (!c.json()) {
    c.out << "this node and " << Printable(peer) << " agree on " << resp.agreed()
          << " envelope(s) exchanged\n";
  }
  return absl::OkStatus();
}

}  // namespace corridor::ctl
