// corridorctl audit: the ledger for auditors: query, checkpoint, consistency, proofs, export
// and offline verification; each checkpoint a node sends is checked against the auditor's
// saved one (audit_state.h).
#include <functional>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/ctl/audit_downstream.h"
#include "client/ctl/audit_state.h"
#include "client/ctl/audit_trail.h"
#include "client/ctl/audit_witness.h"
#include "client/ctl/case_bundle.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "client/ctl/ledger_keys.h"
#include "client/ctl/roster_edit.h"
#include "client/lib/roster.h"
#include "corridor/v1/case.grpc.pb.h"
#include "ledger/crypto/crypto.h"
#include "ledger/export.h"
#include "ledger/merkle.h"
#include "ledger/note.h"

namespace corridor::ctl {
namespace {

std::string EventTime(const v1::AccessEvent& e) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMicros(e.time_unix_micros()),
                          absl::UTCTimeZone());
}

// The node's latest checkpoint, verified with the roster's keys and checked
// against the auditor's saved one (and saved); `said` gets the words for it.
absl::StatusOr<OpenedCheckpoint> LatestCheckedAgainstSaved(Context& c, const Connection& conn,
                                                           std::string* said,
                                                           std::string* note_text = nullptr);

// `audit log --verify`: the checkpoint first (so that every proof is against
// one the auditor trusts), then the answer (audit_trail.h).
absl::Status VerifyLogAnswer(Context& c, const Connection& conn, const v1::QueryEventsRequest& req,
                             const v1::QueryEventsResponse& resp, std::ostream& out) {
  std::string said;
  auto pinned = LatestCheckedAgainstSaved(c, conn, &said);
  if (!pinned.ok()) return pinned.status();
  out << "checkpoint of size " << pinned->checkpoint.size << " signed by "
      << Printable(pinned->verifier.name) << (said.empty() ? "\n" : "; " + said);
  return VerifyTrail(conn, pinned->checkpoint, req, resp, out);
}

absl::Status RunAuditLog(Context& c) {
  if (c.args.Has("downstream")) return RunAuditDownstream(c);
  if (c.args.Has("prove")) return absl::InvalidArgumentError("--prove goes with --downstream");
  if (c.args.Has("verify")) {
    // No key, no check: say so before asking the node anything.
    if (auto keys = LedgerVerifiers(c.args, OrgOfCertificate(c.args)); !keys.ok()) {
      return keys.status();
    }
  }
  v1::QueryEventsRequest req;
  req.set_case_id(c.args.Get("case"));
  req.set_actor(c.args.Get("actor"));
  req.set_org(c.args.Get("org"));
  req.set_action(c.args.Get("action"));
  if (c.args.Has("outcome")) {
    auto o = ParseEnumOption<v1::AccessOutcome>(c.args.Get("outcome"), "outcome",
                                                v1::AccessOutcome_descriptor());
    if (!o.ok()) return o.status();
    req.set_outcome(*o);
  }
  req.set_after(c.args.Get("after"));
  req.set_before(c.args.Get("before"));
  uint32_t limit = 50;
  if (c.args.Has("limit") && !absl::SimpleAtoi(c.args.Get("limit"), &limit)) {
    return absl::InvalidArgumentError("--limit must be a number");
  }
  req.set_page_size(limit);
  req.set_page_token(c.args.Get("page-token"));
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::QueryEventsResponse resp;
  grpc::Status s = v1::AuditService::NewStub(conn->channel)->QueryEvents(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return c.args.Has("verify") ? VerifyLogAnswer(c, *conn, req, resp, c.err) : absl::OkStatus();
  }
  std::vector<std::vector<std::string>> rows = {
      {"INDEX", "TIME (UTC)", "ACTOR", "ACTION", "RESOURCE", "PURPOSE", "OUTCOME", "REASON"}};
  for (const auto& le : resp.events()) {
    const auto& e = le.event();
    rows.push_back(
        {std::to_string(le.index()), EventTime(e), e.actor_org() + "/" + e.actor_subject(),
         e.action(), e.resource_kind() + (e.resource_id().empty() ? "" : " " + e.resource_id()),
         e.purpose(), EnumShort(v1::AccessOutcome_descriptor(), e.outcome()), e.reason()});
  }
  PrintTable(c.out, rows);
  if (!resp.next_page_token().empty())
    c.out << "more: --page-token " << Printable(resp.next_page_token()) << "\n";
  if (c.args.Has("verify")) return VerifyLogAnswer(c, *conn, req, resp, c.out);
  return absl::OkStatus();
}

absl::Status RunAuditKey(Context& c) {
  const std::string org = c.args.positional().empty() ? c.args.Get("org") : c.args.positional()[0];
  auto vs = VerifiersFromOptions(c.args, org);
  if (!vs.ok()) return vs.status();
  for (const auto& v : *vs) c.out << Printable(v.ToString()) << "\n";
  return absl::OkStatus();
}

// The node's answers to consistency-proof requests, for AuditState::Track.
ConsistencyProofSource NodeConsistencyProofs(const Connection& conn) {
  return [conn](uint64_t old_size, uint64_t new_size) -> absl::StatusOr<std::vector<merkle::Hash>> {
    v1::ConsistencyProofRequest req;
    req.set_old_size(old_size);
    req.set_new_size(new_size);
    v1::ConsistencyProofResponse resp;
    auto ctx = conn.NewContext();
    grpc::Status s =
        v1::AuditService::NewStub(conn.channel)->GetConsistencyProof(ctx.get(), req, &resp);
    if (!s.ok()) return Explain(s, conn);
    if (resp.old_size() != old_size || resp.new_size() != new_size) {
      return absl::DataLossError(absl::StrCat(
          "asked for a consistency proof from ", old_size, " to ", new_size,
          " entries, the node answered one from ", resp.old_size(), " to ", resp.new_size()));
    }
    return ProofHashes(resp.proof());
  };
}

// Checks a verified checkpoint against the one this auditor saved before for
// its ledger and saves it in its place (audit_state.h). Returns what to tell
// the auditor about it (nothing in JSON mode).
absl::StatusOr<std::string> CheckAgainstSaved(Context& c, const AuditState& state,
                                              const Connection& conn,
                                              const std::vector<note::Verifier>& verifiers,
                                              const OpenedCheckpoint& opened,
                                              const std::string& text) {
  auto tracked =
      state.Track(verifiers, opened, text, NodeConsistencyProofs(conn), absl::Now(), c.err);
  if (!tracked.ok()) return tracked.status();
  if (c.json()) return "";
  const uint64_t size = opened.checkpoint.size;
  switch (tracked->relation) {
    case CheckpointRelation::kFirst:
      return absl::StrCat("first checkpoint of this ledger seen by this auditor (", size,
                          " entries); saved in ", tracked->path, "\n");
    case CheckpointRelation::kSame:
      return absl::StrCat("unchanged since the checkpoint this auditor saved (", size,
                          " entries)\n");
    default:
      return absl::StrCat(
          "consistent with the checkpoint this auditor saved before: the ledger grew from ",
          tracked->saved_size, " to ", size, " entries and kept every earlier entry; saved in ",
          tracked->path, "\n");
  }
}

// The node's latest checkpoint, verified with `verifiers` (the roster's keys).
absl::StatusOr<OpenedCheckpoint> FetchCheckpoint(Context& c, const Connection& conn,
                                                 const std::vector<note::Verifier>& verifiers,
                                                 std::string* text) {
  auto ctx = conn.NewContext();
  v1::CheckpointResponse resp;
  grpc::Status s = v1::AuditService::NewStub(conn.channel)
                       ->GetCheckpoint(ctx.get(), v1::GetCheckpointRequest(), &resp);
  if (!s.ok()) return Explain(s, conn);
  *text = resp.checkpoint();
  return OpenCheckpointWithAny(c.args, OrgOfCertificate(c.args), verifiers, *text);
}

absl::StatusOr<OpenedCheckpoint> LatestCheckedAgainstSaved(Context& c, const Connection& conn,
                                                           std::string* said,
                                                           std::string* note_text) {
  // --org filters `audit log`'s query: the ledger is the user's own node's.
  auto verifiers = LedgerVerifiers(c.args, OrgOfCertificate(c.args));
  if (!verifiers.ok()) return verifiers.status();
  auto state = AuditState::Open(AuditStateDirFromOptions(c.args));
  if (!state.ok()) return state.status();
  std::string text;
  auto opened = FetchCheckpoint(c, conn, *verifiers, &text);
  if (!opened.ok()) return opened.status();
  auto tracked = CheckAgainstSaved(c, *state, conn, *verifiers, *opened, text);
  if (!tracked.ok()) return tracked.status();
  *said = *tracked;
  if (note_text != nullptr) *note_text = text;
  return opened;
}

absl::Status RunAuditCheckpoint(Context& c) {
  if (c.args.Has("cosigned")) return RunAuditCosignedCheckpoint(c);
  auto verifiers = VerifiersFromOptions(c.args, OrgOfCertificate(c.args));
  if (!verifiers.ok()) return verifiers.status();
  auto state = AuditState::Open(AuditStateDirFromOptions(c.args));
  if (!state.ok()) return state.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  std::string text;
  auto opened = FetchCheckpoint(c, *conn, *verifiers, &text);
  if (!opened.ok()) return opened.status();
  auto tracked = CheckAgainstSaved(c, *state, *conn, *verifiers, *opened, text);
  if (!tracked.ok()) return tracked.status();
  if (c.args.Has("save")) {
    if (auto st = WriteFileAtomically(c.args.Get("save"), text, 0644); !st.ok()) return st;
  }
  // A checkpoint is a signed note: lines of text, each shown through Printable().
  if (c.json()) {
    c.out << "{\n  \"origin\": " << JsonQuoted(opened->checkpoint.origin) << ",\n  \"size\": \""
          << opened->checkpoint.size << "\",\n  \"root_hash\": \""
          << Base64Encode(merkle::ToBytes(opened->checkpoint.root))
          << "\",\n  \"checkpoint\": " << JsonQuoted(text)
          << ",\n  \"verifier_key\": " << JsonQuoted(opened->verifier.ToString())
          << ",\n  \"verified\": true\n}\n";
  } else {
    c.out << "signature verified with " << Printable(opened->verifier.name) << "'s key "
          << (c.args.Has("vkey") ? "given with --vkey" : "from the roster") << "\n";
    for (absl::string_view line : absl::StrSplit(text, '\n')) c.out << Printable(line) << "\n";
  }
  c.out << *tracked;
  if (c.args.Has("save"))
    c.err << "saved the verified checkpoint to " << c.args.Get("save") << "\n";
  return absl::OkStatus();
}

absl::Status RunAuditConsistency(Context& c) {
  if (auto st = Require(c.args, {"from"}); !st.ok()) return st;
  auto verifiers = VerifiersFromOptions(c.args, OrgOfCertificate(c.args));
  if (!verifiers.ok()) return verifiers.status();
  auto state = AuditState::Open(AuditStateDirFromOptions(c.args));
  if (!state.ok()) return state.status();
  const std::string from = c.args.Get("from");
  auto old_text = ReadFileToString(from);
  if (!old_text.ok()) return old_text.status();
  auto old = OpenCheckpointWithAny(c.args, OrgOfCertificate(c.args), *verifiers, *old_text);
  if (!old.ok()) {
    return absl::DataLossError(
        absl::StrCat("the checkpoint in ", from, " is not trusted: ", old.status().message()));
  }
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  std::string text;
  auto now = FetchCheckpoint(c, *conn, *verifiers, &text);
  if (!now.ok()) return now.status();
  if (old->checkpoint.origin != now->checkpoint.origin) {
    return absl::InvalidArgumentError(
        absl::StrCat(from, " is a checkpoint of ", Printable(old->checkpoint.origin),
                     ", the node's is of ", Printable(now->checkpoint.origin)));
  }
  auto relation =
      CompareCheckpoints(old->checkpoint, now->checkpoint, NodeConsistencyProofs(*conn));
  if (!relation.ok()) return relation.status();
  if (*relation == CheckpointRelation::kRollback || *relation == CheckpointRelation::kFork) {
    return state->ReportConflict(*relation, old->checkpoint, *old_text, now->checkpoint, text,
                                 absl::Now(), c.err);
  }
  auto tracked = CheckAgainstSaved(c, *state, *conn, *verifiers, *now, text);
  if (!tracked.ok()) return tracked.status();
  c.out << "old size " << old->checkpoint.size << ", new size " << now->checkpoint.size
        << ": consistent (the ledger of " << Printable(now->checkpoint.origin)
        << " still holds every entry of the checkpoint in " << from << ")\n"
        << *tracked;
  return absl::OkStatus();
}

// What `audit prove` found, as JSON or in words.
void PrintInclusion(Context& c, uint64_t index, const v1::InclusionProofResponse& resp,
                    const OpenedCheckpoint& opened, const std::vector<merkle::Hash>& proof_hashes,
                    const merkle::Hash& leaf, bool verified) {
  const note::Checkpoint* cp = &opened.checkpoint;
  const note::Verifier* verifier = &opened.verifier;
  const std::vector<merkle::Hash>* proof = &proof_hashes;
  if (c.json()) {
    c.out << "{\n  \"leaf_index\": " << index << ",\n  \"tree_size\": " << resp.tree_size()
          << ",\n  \"entry\": \"" << Base64Encode(resp.entry()) << "\",\n  \"leaf_hash\": \""
          << Base64Encode(merkle::ToBytes(leaf)) << "\",\n  \"proof\": [";
    for (size_t i = 0; i < proof->size(); ++i) {
      c.out << (i ? ", " : "") << "\"" << Base64Encode(merkle::ToBytes((*proof)[i])) << "\"";
    }
    c.out << "],\n  \"root_hash\": \"" << Base64Encode(merkle::ToBytes(cp->root))
          << "\",\n  \"checkpoint\": " << JsonQuoted(resp.checkpoint())
          << ",\n  \"verifier_key\": " << JsonQuoted(verifier->ToString())
          << ",\n  \"verified\": " << (verified ? "true" : "false") << "\n}\n";
  } else if (verified) {
    c.out << "entry " << index << " is in the ledger of " << Printable(cp->origin) << " at size "
          << cp->size << ": inclusion proof (" << proof->size()
          << " hashes) verified against the checkpoint signed by " << Printable(verifier->name)
          << "\n";
    if (auto e = v1::AccessEvent(); e.ParseFromString(resp.entry())) {
      c.out << "  " << EventTime(e) << "  " << Printable(e.actor_org() + "/" + e.actor_subject())
            << "  " << Printable(e.action()) << "  " << Printable(e.resource_kind()) << " "
            << Printable(e.resource_id()) << "  "
            << EnumShort(v1::AccessOutcome_descriptor(), e.outcome()) << "\n";
    }
  }
}

absl::Status RunAuditProve(Context& c) {
  if (c.args.positional().empty())
    return absl::InvalidArgumentError("name the ledger entry: corridorctl audit prove INDEX");
  uint64_t index = 0;
  if (!absl::SimpleAtoi(c.args.positional()[0], &index))
    return absl::InvalidArgumentError("INDEX must be a number");
  auto verifiers = VerifiersFromOptions(c.args, OrgOfCertificate(c.args));
  if (!verifiers.ok()) return verifiers.status();
  auto state = AuditState::Open(AuditStateDirFromOptions(c.args));
  if (!state.ok()) return state.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::InclusionProofRequest req;
  req.set_index(index);
  v1::InclusionProofResponse resp;
  grpc::Status s =
      v1::AuditService::NewStub(conn->channel)->GetInclusionProof(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  // Check everything here, with the roster's key: nothing is taken on the node's word.
  auto opened =
      OpenCheckpointWithAny(c.args, OrgOfCertificate(c.args), *verifiers, resp.checkpoint());
  if (!opened.ok()) return opened.status();
  auto tracked = CheckAgainstSaved(c, *state, *conn, *verifiers, *opened, resp.checkpoint());
  if (!tracked.ok()) return tracked.status();
  const note::Checkpoint* cp = &opened->checkpoint;
  if (cp->size != resp.tree_size())
    return absl::DataLossError("the checkpoint is for another tree size");
  auto proof = ProofHashes(resp.proof());
  if (!proof.ok()) return proof.status();
  const merkle::Hash leaf = merkle::HashLeaf(resp.entry());
  absl::Status verified = merkle::VerifyInclusion(index, resp.tree_size(), leaf, *proof, cp->root);
  PrintInclusion(c, index, resp, *opened, *proof, leaf, verified.ok());
  if (!verified.ok())
    return absl::DataLossError(
        absl::StrCat("the inclusion proof does NOT verify: ", verified.message()));
  c.out << *tracked;
  return absl::OkStatus();
}

// The export verified with the first of `verifiers` that signed it, and that key.
absl::StatusOr<std::pair<ledger::VerifiedExport, note::Verifier>> VerifyExportWithAny(
    Context& c, const std::vector<note::Verifier>& verifiers, const std::string& text) {
  absl::StatusOr<ledger::VerifiedExport> v = absl::NotFoundError("no key");
  for (const auto& candidate : verifiers) {
    v = ledger::VerifyExport(text, candidate);
    if (v.ok()) return std::make_pair(*std::move(v), candidate);
    // Only a wrong key is worth another try; a bad export stays bad.
    if (!absl::IsPermissionDenied(v.status())) break;
  }
  const std::string revoked = SignedByRevokedKey(
      c.args, "", [&](const note::Verifier& r) { return ledger::VerifyExport(text, r).ok(); });
  return absl::DataLossError(absl::StrCat("the export does NOT verify: ",
                                          revoked.empty() ? v.status().message() : revoked));
}

absl::Status RunAuditExport(Context& c) {
  if (auto st = Require(c.args, {"out"}); !st.ok()) return st;
  v1::ExportRequest req;
  uint64_t begin = 0, end = 0;
  if ((c.args.Has("begin") && !absl::SimpleAtoi(c.args.Get("begin"), &begin)) ||
      (c.args.Has("end") && !absl::SimpleAtoi(c.args.Get("end"), &end))) {
    return absl::InvalidArgumentError("--begin and --end are entry indexes");
  }
  req.set_begin(begin);
  req.set_end(end);
  auto verifiers = VerifiersFromOptions(c.args, OrgOfCertificate(c.args));
  if (!verifiers.ok()) return verifiers.status();
  auto state = AuditState::Open(AuditStateDirFromOptions(c.args));
  if (!state.ok()) return state.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  // The export arrives in pieces (an export may be larger than any one message).
  std::string exported;
  v1::ExportResponse piece;
  auto stub = v1::AuditService::NewStub(conn->channel);
  auto reader = stub->Export(ctx.get(), req);
  while (reader->Read(&piece)) exported += piece.export_();
  grpc::Status s = reader->Finish();
  if (!s.ok()) return Explain(s, *conn);
  if (auto st = WriteFileAtomically(c.args.Get("out"), exported); !st.ok()) return st;
  // The file is kept either way: an export that does not verify is evidence too.
  auto verified = VerifyExportWithAny(c, *verifiers, exported);
  if (!verified.ok()) return verified.status();
  const OpenedCheckpoint opened{verified->first.checkpoint, verified->second};
  auto tracked =
      CheckAgainstSaved(c, *state, *conn, *verifiers, opened, verified->first.checkpoint_note);
  if (!tracked.ok()) return tracked.status();
  c.out << "exported to " << c.args.Get("out") << " (" << exported.size()
        << " bytes); check it with `corridorctl audit verify " << c.args.Get("out")
        << " --roster FILE --org ORG`\n"
        << *tracked;
  return absl::OkStatus();
}

// A court bundle (case_bundle.h), checked with nothing but the stewards' keys:
// the roster it carries first, then everything else with that roster's keys.
absl::Status VerifyBundleText(Context& c, const std::string& label, const std::string& text) {
  auto bundle = ParseCaseBundle(text);
  if (!bundle.ok()) return bundle.status();
  const std::string stewards = OptionOrEnv(c.args, "stewards", "CORRIDOR_STEWARDS");
  if (stewards.empty()) {
    return absl::InvalidArgumentError(
        "give the federation's steward keys (--stewards FILE or CORRIDOR_STEWARDS: the "
        "stewards.yaml the stewards published) so the roster in the bundle is checked before "
        "its keys are trusted");
  }
  auto roster = roster_edit::CheckSignatures(c.args, stewards, label + "'s roster", bundle->roster);
  if (!roster.ok()) {
    return absl::DataLossError(
        absl::StrCat("the bundle does NOT verify: its roster: ", roster.status().message()));
  }
  c.out << "case bundle for case " << Printable(bundle->case_id) << " at " << Printable(bundle->org)
        << "\n"
        << "  roster: version " << roster->roster.roster.version() << " of "
        << Printable(roster->roster.roster.federation()) << ", "
        << roster_edit::SignedBySentence(*roster) << "\n";
  std::ostringstream report;
  if (auto st = VerifyCaseBundle(*bundle, roster->roster.roster, report); !st.ok()) return st;
  c.out << report.str() << "verified: every part of " << label
        << " checked with the roster's keys, the roster "
        << "with the stewards' keys\n"
        << "not proven by this bundle: that the node recorded no entry about the case after "
           "its newest one here, or hid one before any later entry was recorded (docs/audit.md)\n";
  return absl::OkStatus();
}

// The newest entry about `case_id` below the checkpoint's size, as the node finds it.
absl::StatusOr<uint64_t> NewestCaseEntry(const Connection& conn, const std::string& case_id,
                                         uint64_t size) {
  v1::QueryEventsRequest req;
  req.set_case_id(case_id);
  req.set_page_size(1);
  req.set_page_token(std::to_string(size));
  v1::QueryEventsResponse resp;
  auto ctx = conn.NewContext();
  grpc::Status s = v1::AuditService::NewStub(conn.channel)->QueryEvents(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, conn);
  if (resp.events().empty())
    return absl::NotFoundError(
        absl::StrCat("the node's ledger holds no entry about case ", Printable(case_id)));
  return resp.events(0).index();
}

// The case's trail from `head` back to its first entry, each entry proved
// against `pinned`.
absl::StatusOr<std::vector<BundleEntry>> ProvedTrail(const Connection& conn,
                                                     const note::Checkpoint& pinned,
                                                     const std::string& case_id, uint64_t head) {
  InclusionProver prover(conn, pinned);
  std::vector<BundleEntry> trail;
  for (uint64_t index = head;;) {
    auto e = prover.Prove(index);
    if (!e.ok()) return e.status();
    if ((*e)->case_id() != case_id) {
      return absl::DataLossError(absl::StrCat("the node's entry ", index, " is not about case ",
                                              Printable(case_id), ", yet the trail leads to it"));
    }
    trail.push_back({index, prover.Entry(index), prover.Proof(index)});
    if (!(*e)->has_prev_case_entry()) return trail;
    if ((*e)->prev_case_entry() >= index)
      return absl::DataLossError(absl::StrCat("entry ", index, " links forward"));
    index = (*e)->prev_case_entry();
  }
}

// With --cosigned K: the node's newest checkpoint carrying K cosignatures that
// verify with the witnesses' roster keys, and that `latest` (already checked
// against the auditor's saved one) extends; it replaces `*pinned` and `*text`.
absl::Status PinCosigned(Context& c, const Connection& conn, const std::string& org,
                         OpenedCheckpoint* pinned, std::string* text) {
  uint32_t k = 0;
  if (!absl::SimpleAtoi(c.args.Get("cosigned"), &k) || k == 0)
    return absl::InvalidArgumentError("--cosigned must be a number of peers, at least 1");
  v1::Roster roster;
  auto verifiers = LedgerVerifiers(c.args, org, &roster);
  if (!verifiers.ok()) return verifiers.status();
  v1::GetCheckpointRequest req;
  req.set_min_cosignatures(k);
  v1::CheckpointResponse resp;
  auto ctx = conn.NewContext();
  grpc::Status s = v1::AuditService::NewStub(conn.channel)->GetCheckpoint(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, conn);
  auto opened = OpenCheckpointWithAny(c.args, org, *verifiers, resp.checkpoint());
  if (!opened.ok()) return opened.status();
  auto n = note::ParseNote(resp.checkpoint());
  const size_t cosigners = n.ok() ? VerifiedCosigners(roster, org, *n).size() : 0;
  if (cosigners < k) {
    return absl::FailedPreconditionError(
        absl::StrCat("refused: the node's checkpoint carries ", cosigners,
                     " cosignatures that verify with the witnesses' keys in the roster, fewer "
                     "than the ",
                     k, " asked for"));
  }
  auto relation =
      CompareCheckpoints(opened->checkpoint, pinned->checkpoint, NodeConsistencyProofs(conn));
  if (!relation.ok()) return relation.status();
  if (*relation != CheckpointRelation::kSame && *relation != CheckpointRelation::kExtends) {
    return absl::DataLossError(absl::StrCat(
        "the node's cosigned checkpoint of size ", opened->checkpoint.size,
        " is not part of the history of its latest checkpoint of size ", pinned->checkpoint.size,
        ": the node shows two histories (docs/audit.md, \"Forks\")"));
  }
  *pinned = *std::move(opened);
  *text = resp.checkpoint();
  return absl::OkStatus();
}

absl::Status RunAuditBundle(Context& c) {
  if (c.args.positional().empty())
    return absl::InvalidArgumentError("name the case: corridorctl audit bundle CASE --out FILE");
  if (auto st = Require(c.args, {"out"}); !st.ok()) return st;
  if (c.args.Has("vkey"))
    return absl::InvalidArgumentError("a bundle carries the roster: give it with --roster");
  CaseBundle bundle;
  bundle.case_id = c.args.positional()[0];
  bundle.org = OrgOfCertificate(c.args);
  auto roster_text = ReadFileToString(OptionOrEnv(c.args, "roster", "CORRIDOR_ROSTER"));
  if (!roster_text.ok()) return roster_text.status();
  bundle.roster = *roster_text;
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  std::string said;
  auto pinned = LatestCheckedAgainstSaved(c, *conn, &said, &bundle.checkpoint);
  if (!pinned.ok()) return pinned.status();
  if (c.args.Has("cosigned")) {
    if (auto st = PinCosigned(c, *conn, bundle.org, &*pinned, &bundle.checkpoint); !st.ok())
      return st;
  }
  auto head = NewestCaseEntry(*conn, bundle.case_id, pinned->checkpoint.size);
  if (!head.ok()) return head.status();
  auto trail = ProvedTrail(*conn, pinned->checkpoint, bundle.case_id, *head);
  if (!trail.ok()) return trail.status();
  bundle.entries = *std::move(trail);
  const std::string text = FormatCaseBundle(bundle);
  const std::string out = c.args.Get("out");
  if (auto st = WriteFileAtomically(out, text, 0644); !st.ok()) return st;
  c.out << "wrote " << out << " (" << text.size() << " bytes, " << bundle.entries.size()
        << " entries); checked as a court would check it:\n";
  if (auto st = VerifyBundleText(c, out, text); !st.ok()) return st;
  c.out << said << "check it anywhere with `corridorctl audit verify " << out
        << " --stewards stewards.yaml`\n";
  return absl::OkStatus();
}

absl::Status RunAuditVerify(Context& c) {
  if (c.args.positional().empty())
    return absl::InvalidArgumentError(
        "name the export or bundle file: corridorctl audit verify FILE");
  auto text = ReadFileToString(c.args.positional()[0]);
  if (text.ok() && IsCaseBundle(*text)) return VerifyBundleText(c, c.args.positional()[0], *text);
  // An export: the key first, so that a bad roster is named whatever the file.
  auto verifiers = VerifiersFromOptions(c.args, "");
  if (!verifiers.ok()) return verifiers.status();
  if (!text.ok()) return text.status();
  auto verified = VerifyExportWithAny(c, *verifiers, *text);
  if (!verified.ok()) return verified.status();
  const ledger::VerifiedExport* v = &verified->first;
  const note::Verifier* verifier = &verified->second;
  size_t undecodable = 0;
  for (const std::string& e : v->entries) {
    v1::AccessEvent ev;
    if (!ev.ParseFromString(e)) ++undecodable;
  }
  c.out << "verified: entries " << v->first_index << ".." << v->first_index + v->entries.size() - 1
        << " of " << Printable(v->checkpoint.origin)
        << " are exactly those committed to by its checkpoint at size " << v->checkpoint.size
        << ", signed by " << Printable(verifier->name) << "\n";
  if (undecodable) c.out << "  note: " << undecodable << " entries are not access events\n";
  return absl::OkStatus();
}

// The options of a command that gets a checkpoint from a node: the connection,
// where the key comes from, the saved state, then `own`.
std::vector<OptionSpec> CheckpointOptions(const std::vector<OptionSpec>& own) {
  return With(With(ConnectionOptions(), LedgerKeyOptions()), With(AuditStateOptions(), own));
}

}  // namespace

std::vector<Command> AuditCommands() {
  return {
      {{"audit", "log"},
       "[--case ID] [--actor ORG/SUBJECT] ...",
       "who did what, newest first (auditors)",
       With(ConnectionOptions(),
            {{"case", "ID", "events about this case"},
             {"actor", "ORG/SUBJECT", "events by this actor, e.g. union-sg/user/caseworker1"},
             {"org", "ORG", "events by this org's actors"},
             {"action", "A", "e.g. case.get, case.erase, auth.refused"},
             {"outcome", "O", "allowed, denied or error"},
             {"after", "TIME", "at or after (RFC 3339)"},
             {"before", "TIME", "before (RFC 3339)"},
             {"limit", "N", "events per page (default 50)"},
             {"page-token", "T", "continue"},
             {"verify", "", "prove each entry, and that the case's or actor's trail is complete"},
             {"roster", "FILE", "with --verify: signed roster with the key (env CORRIDOR_ROSTER)"},
             {"stewards", "FILE",
              "with --verify: steward keys the roster is checked against (env CORRIDOR_STEWARDS)"},
             {"threshold", "N", "steward signatures required (default: the stewards file's)"},
             {"vkey", "VKEY", "with --verify: verifier key (name+id+key) instead of the roster"},
             {"state", "DIR",
              "with --verify: where the checkpoints this auditor saw are kept (env "
              "CORRIDOR_AUDIT_STATE)"},
             {"downstream", "",
              "with --case: every access to the case at the nodes it was referred to, each "
              "backed by the reading org's signed attestation (needs --roster, --stewards)"},
             {"prove", "",
              "with --downstream: also check each attested entry's inclusion proof against its "
              "node's signed checkpoint"}}),
       RunAuditLog},
      {{"audit", "reconcile"},
       "--peer ORG",
       "compare the envelopes this node and a peer recorded exchanging; exit 1 if one side "
       "recorded one the other did not",
       With(ConnectionOptions(), {{"peer", "ORG", "the peer org"}}),
       RunAuditReconcile},
      {{"audit", "checkpoint"},
       "--roster FILE [--org ORG] [--save FILE]",
       "the node's latest checkpoint, verified with the roster's key and against the last "
       "one this auditor saw",
       CheckpointOptions({{"save", "FILE", "also write the verified checkpoint to FILE"},
                          {"cosigned", "K",
                           "the newest checkpoint cosigned by at least K peers, each cosignature "
                           "verified with the witness's key from the roster"}}),
       RunAuditCheckpoint},
      {{"audit", "forks"},
       "--roster FILE [--save DIR]",
       "forks the node's witness found in its peers' ledgers, the evidence verified",
       With(With(ConnectionOptions(), LedgerKeyOptions()),
            {{"save", "DIR",
              "write each fork's two checkpoints to DIR/ORG-first|second.checkpoint"}}),
       RunAuditForks},
      {{"audit", "consistency"},
       "--from FILE --roster FILE [--org ORG]",
       "check that the node's ledger still holds everything of an earlier checkpoint",
       CheckpointOptions(
           {{"from", "FILE", "the earlier checkpoint (from audit checkpoint --save)"}}),
       RunAuditConsistency},
      {{"audit", "key"},
       "ORG --roster FILE --stewards FILE",
       "an org's checkpoint verifier key, from the roster",
       LedgerKeyOptions(),
       RunAuditKey},
      {{"audit", "prove"},
       "INDEX --roster FILE --stewards FILE --org ORG",
       "fetch and check an inclusion proof for a ledger entry",
       CheckpointOptions({}),
       RunAuditProve},
      {{"audit", "export"},
       "--out FILE --roster FILE [--org ORG] [--begin N] [--end N]",
       "export ledger entries with their checkpoint, and check them",
       CheckpointOptions({{"out", "FILE", "where to write"},
                          {"begin", "N", "first entry (default 0)"},
                          {"end", "N", "end (default: all)"}}),
       RunAuditExport},
      {{"audit", "verify"},
       "FILE --stewards FILE [--roster FILE --org ORG]",
       "check an export (with the roster) or a court bundle (stewards only) offline",
       LedgerKeyOptions(),
       RunAuditVerify},
      {{"audit", "bundle"},
       "CASE --out FILE --roster FILE --stewards FILE [--cosigned K]",
       "a court bundle: the case's whole trail with proofs, checkpoint, receipts and roster, "
       "checkable offline with `audit verify`",
       CheckpointOptions({{"out", "FILE", "where to write the bundle"},
                          {"cosigned", "K",
                           "prove against the newest checkpoint K peers cosigned (audit checkpoint "
                           "--cosigned)"}}),
       RunAuditBundle},
  };
}

}  // namespace corridor::ctl
