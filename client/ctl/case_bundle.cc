#include "client/ctl/case_bundle.h"

#include <algorithm>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "client/ctl/audit_witness.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "client/ctl/ledger_keys.h"
#include "client/lib/roster.h"
#include "corridor/v1/case.pb.h"
#include "corridor/v1/federation.pb.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/dsse.h"
#include "ledger/note.h"

namespace corridor::ctl {
namespace {

constexpr char kReceiptContext[] = "corridor-receipt/v1\n";
// Every envelope's DSSE payload type (docs/federation.md).
constexpr char kEnvelopePayloadType[] = "application/vnd.corridor.envelope.v1+protobuf";
// Case ids and org ids as nodes write them: short, printable, no spaces.
constexpr size_t kMaxIdBytes = 128;

absl::Status Fails(absl::string_view part, absl::string_view why) {
  return absl::DataLossError(absl::StrCat("the bundle does NOT verify: ", part, ": ", why));
}

bool IsId(absl::string_view s) {
  if (s.empty() || s.size() > kMaxIdBytes) return false;
  for (char c : s) {
    if (c <= ' ' || c > '~') return false;
  }
  return true;
}

std::string ProofField(const std::vector<merkle::Hash>& proof) {
  if (proof.empty()) return "-";
  std::vector<std::string> parts;
  for (const auto& h : proof) parts.push_back(Base64Encode(merkle::ToBytes(h)));
  return absl::StrJoin(parts, ",");
}

std::string Body(const CaseBundle& b) {
  std::string out =
      absl::StrCat(kCaseBundleMagic, "\n", "case ", b.case_id, "\n", "org ", b.org, "\n", "roster ",
                   Base64Encode(b.roster), "\n", "checkpoint ", Base64Encode(b.checkpoint), "\n");
  for (const BundleEntry& e : b.entries) {
    absl::StrAppend(&out, "entry ", e.index, " ", Base64Encode(e.entry), " ", ProofField(e.proof),
                    "\n");
  }
  return out;
}

// The part a line holds, for naming it: its first word.
std::string PartOf(absl::string_view line, size_t number) {
  std::string word(line.substr(0, line.find(' ')));
  if (!IsId(word) || word.size() > 16) word = "?";
  return absl::StrCat("line ", number, " (", word, ")");
}

absl::StatusOr<std::string> Decode(absl::string_view b64, absl::string_view part) {
  auto raw = Base64Decode(b64);
  if (!raw.ok() || raw->empty()) return Fails(part, "not base64");
  return raw;
}

absl::StatusOr<BundleEntry> ParseEntry(absl::string_view rest, absl::string_view part) {
  std::vector<absl::string_view> f = absl::StrSplit(rest, ' ');
  BundleEntry e;
  if (f.size() != 3 || !absl::SimpleAtoi(f[0], &e.index))
    return Fails(part, "expected INDEX ENTRY PROOF");
  auto entry = Decode(f[1], part);
  if (!entry.ok()) return entry.status();
  e.entry = *std::move(entry);
  if (f[2] == "-") return e;
  for (absl::string_view h : absl::StrSplit(f[2], ',')) {
    auto raw = Base64Decode(h);
    auto hash = raw.ok() ? merkle::FromBytes(*raw) : absl::StatusOr<merkle::Hash>(raw.status());
    if (!hash.ok()) return Fails(part, "a proof hash is malformed");
    e.proof.push_back(*hash);
  }
  return e;
}

// One line of the body into `b`; `stage` is how far the fixed header has got.
absl::Status ParseLine(absl::string_view line, absl::string_view part, int& stage, CaseBundle& b) {
  static constexpr const char* kHeader[] = {"case", "org", "roster", "checkpoint"};
  const size_t space = line.find(' ');
  if (space == absl::string_view::npos) return Fails(part, "expected NAME VALUE");
  const absl::string_view name = line.substr(0, space), value = line.substr(space + 1);
  if (stage < 4) {
    if (name != kHeader[stage]) return Fails(part, absl::StrCat("expected ", kHeader[stage]));
    ++stage;
    if (name == "case" || name == "org") {
      if (!IsId(value)) return Fails(part, "not an id");
      (name == "case" ? b.case_id : b.org) = std::string(value);
      return absl::OkStatus();
    }
    auto raw = Decode(value, part);
    if (!raw.ok()) return raw.status();
    (name == "roster" ? b.roster : b.checkpoint) = *std::move(raw);
    return absl::OkStatus();
  }
  if (name == "entry") {
    auto e = ParseEntry(value, part);
    if (!e.ok()) return e.status();
    b.entries.push_back(*std::move(e));
    return absl::OkStatus();
  }
  return Fails(part, "not a part of a case bundle here");
}

// ---- verification ------------------------------------------------------------

std::string Time(int64_t unix_micros) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", absl::FromUnixMicros(unix_micros),
                          absl::UTCTimeZone());
}

// Every signature line on the checkpoint note is either the org's (a key the
// roster lists for it) or a cosignature by another member's witness key, and
// verifies; no line appears twice. A line nobody can check is refused, so
// what the file carries is exactly what was checked.
absl::Status CheckEverySignatureLine(const CaseBundle& b, const v1::Roster& roster,
                                     const note::Note& n) {
  std::set<std::pair<std::string, uint32_t>> verified, seen;
  for (const v1::Member& m : roster.members()) {
    for (const v1::SigningKey& k : m.signing_keys()) {
      auto key = MemberSigningKey(roster, m.org(), k.key_id());
      if (!key.ok()) continue;
      const bool own = m.org() == b.org;
      const note::Verifier v{absl::StrCat(roster.federation(), "/", m.org()),
                             static_cast<uint8_t>(own ? 0x01 : 0x04), *key};
      if (own ? note::VerifyNote(n, v).ok() : note::VerifyCosignature(n, v).ok()) {
        verified.insert({v.name, v.key_id()});
      }
    }
  }
  for (const note::Signature& sig : n.signatures) {
    if (!seen.insert({sig.name, sig.key_id}).second) {
      return Fails("the checkpoint",
                   absl::StrCat("it carries two signature lines by ", Printable(sig.name)));
    }
    if (!verified.count({sig.name, sig.key_id})) {
      return Fails("the checkpoint",
                   absl::StrCat("its signature line by ", Printable(sig.name),
                                " does not verify with any key the roster lists"));
    }
  }
  return absl::OkStatus();
}

// The checkpoint, opened with the org's keys from the roster; says who signed
// and cosigned it.
absl::StatusOr<note::Checkpoint> CheckCheckpoint(const CaseBundle& b, const v1::Roster& roster,
                                                 std::ostream& out) {
  auto verifiers = LedgerVerifiersFromRoster(roster, b.org);
  if (!verifiers.ok()) return Fails("the checkpoint", verifiers.status().message());
  absl::Status last = absl::NotFoundError("no key");
  for (const note::Verifier& v : *verifiers) {
    auto cp = note::OpenCheckpoint(b.checkpoint, v);
    if (!cp.ok()) {
      last = cp.status();
      continue;
    }
    out << "  checkpoint: " << Printable(cp->origin) << " at size " << cp->size << ", signed by "
        << Printable(b.org) << "'s key " << Printable(v.ToString()) << "\n";
    auto n = note::ParseNote(b.checkpoint);
    if (!n.ok()) return Fails("the checkpoint", "not a signed note");
    if (auto st = CheckEverySignatureLine(b, roster, *n); !st.ok()) return st;
    const std::vector<std::string> cosigners = VerifiedCosigners(roster, b.org, *n);
    out << "  cosigned by " << cosigners.size() << " peers"
        << (cosigners.empty()
                ? ""
                : absl::StrCat(" (", Printable(absl::StrJoin(cosigners, ", ")),
                               "), each cosignature verified with its witness key from the roster"))
        << "\n";
    return cp;
  }
  return Fails("the checkpoint", absl::StrCat("not signed by a key of ", b.org,
                                              " the roster lists: ", last.message()));
}

// Where the trail stands after entry i (newest first): the next entry must be
// the one this entry names as the case's previous.
absl::Status CheckLink(const CaseBundle& b, size_t i, const v1::AccessEvent& e,
                       std::string* ending) {
  const std::string part = absl::StrCat("entry ", b.entries[i].index);
  const bool last = i + 1 == b.entries.size();
  if (!e.trail_linked()) {
    if (!last) return Fails(part, "it carries no trail link, yet older entries follow it");
    *ending = absl::StrCat("entry ", b.entries[i].index,
                           " was recorded before the ledger linked trails: older entries about "
                           "the case, if any, cannot be shown complete");
    return absl::OkStatus();
  }
  if (!e.has_prev_case_entry()) {
    if (!last) return Fails(part, "it is the case's first entry, yet older entries follow it");
    *ending = absl::StrCat("entry ", b.entries[i].index,
                           " names no entry before it: it is the case's first");
    return absl::OkStatus();
  }
  if (last || b.entries[i + 1].index != e.prev_case_entry()) {
    return Fails(part, absl::StrCat("the entry before it about the case is entry ",
                                    e.prev_case_entry(), ", which the bundle does not hold next"));
  }
  return absl::OkStatus();
}

// The receiver's signed receipt an "envelope.receipt" entry keeps.
absl::Status CheckReceipt(const v1::AccessEvent& e, const v1::Roster& roster,
                          absl::string_view part, std::ostream& out) {
  if (e.peer_receipt().empty()) {
    out << "    " << part << ": a delivery recorded before receipts were kept in the ledger\n";
    return absl::OkStatus();
  }
  v1::Receipt r;
  v1::ReceiptBody body;
  if (!r.ParseFromString(e.peer_receipt()) || !body.ParseFromString(r.body()))
    return Fails(part, "its receipt is malformed");
  auto key = MemberSigningKey(roster, e.peer_org(), r.key_id());
  if (!key.ok()) return Fails(part, absl::StrCat("its receipt: ", key.status().message()));
  if (!key->Verify(absl::StrCat(kReceiptContext, r.body()), r.signature()))
    return Fails(part,
                 absl::StrCat("the receipt's signature by ", e.peer_org(), " does NOT verify"));
  if (body.receiver_org() != e.peer_org() || body.envelope_sha256() != e.payload_sha256() ||
      body.envelope_id() != e.resource_id()) {
    return Fails(part, "the receipt is signed, but for another envelope or receiver");
  }
  out << "    " << part << ": " << Printable(e.peer_org()) << " signed that it recorded envelope "
      << Printable(body.envelope_id()) << " (sha256 " << HexEncode(body.envelope_sha256())
      << ") at index " << body.ledger_index() << " of its ledger\n";
  return absl::OkStatus();
}

// The receiver's signed attestation a "downstream.access" entry keeps: a
// DSSE envelope signed by a key of the entry's peer org, whose access
// attestation is about this case and says what the entry says.
absl::Status CheckAttestation(const v1::AccessEvent& e, const v1::Roster& roster,
                              const std::string& case_id, const std::string& recipient,
                              absl::string_view part, std::ostream& out) {
  v1::Envelope env;
  v1::EnvelopePayload p;
  if (!env.ParseFromString(e.attestation()) || env.signatures_size() != 1 ||
      !p.ParseFromString(env.payload()) || !p.has_access_attestation()) {
    return Fails(part, "its attestation is malformed");
  }
  auto key = MemberSigningKey(roster, e.peer_org(), env.signatures(0).keyid());
  if (!key.ok()) return Fails(part, absl::StrCat("its attestation: ", key.status().message()));
  if (env.payload_type() != kEnvelopePayloadType || p.recipient_org() != recipient) {
    return Fails(part, "its attestation is not an envelope addressed to this org");
  }
  if (env.signatures(0).keyid() != p.key_id() ||
      !key->Verify(DssePae(env.payload_type(), env.payload()), env.signatures(0).sig())) {
    return Fails(part,
                 absl::StrCat("the attestation's signature by ", e.peer_org(), " does NOT verify"));
  }
  const v1::AccessAttestation& a = p.access_attestation();
  if (p.sender_org() != e.peer_org() || a.origin_case_id() != case_id ||
      DigestBytes(Sha256(env.payload())) != e.payload_sha256() ||
      a.ledger_index() != e.remote_ledger_index() || a.subject() != e.remote_subject() ||
      a.action() != e.remote_action() || a.time_unix_micros() != e.remote_time_unix_micros()) {
    return Fails(part, "the attestation is signed, but says something else than the entry");
  }
  out << "    " << part << ": " << Printable(e.peer_org()) << " signed that "
      << Printable(a.subject()) << " did " << Printable(a.action()) << " on "
      << Printable(a.resource_kind()) << " " << Printable(a.resource_id()) << " for "
      << Printable(a.purpose()) << " at " << Time(a.time_unix_micros()) << " (index "
      << a.ledger_index() << " of its ledger)\n";
  return absl::OkStatus();
}

// Every entry: proved, about the case, in trail order; the trail's table.
absl::Status CheckEntries(const CaseBundle& b, const v1::Roster& roster, const note::Checkpoint& cp,
                          std::ostream& out) {
  if (b.entries.empty()) return Fails("the entries", "the bundle holds no entry about the case");
  std::string ending;
  std::ostringstream receipts, downstream;
  std::vector<std::vector<std::string>> rows = {
      {"INDEX", "TIME", "ACTOR", "ACTION", "OUTCOME", "PEER"}};
  for (size_t i = 0; i < b.entries.size(); ++i) {
    const BundleEntry& be = b.entries[i];
    const std::string part = absl::StrCat("entry ", be.index);
    if (be.index >= cp.size) return Fails(part, "it is not in the checkpoint's tree");
    if (auto st = merkle::VerifyInclusion(be.index, cp.size, merkle::HashLeaf(be.entry), be.proof,
                                          cp.root);
        !st.ok()) {
      return Fails(part, absl::StrCat("its inclusion proof does not lead to the checkpoint's "
                                      "root (the entry or the proof was changed): ",
                                      st.message()));
    }
    v1::AccessEvent e;
    if (!e.ParseFromString(be.entry)) return Fails(part, "it is not an access event");
    if (e.case_id() != b.case_id) return Fails(part, "it is not about this case");
    if (auto st = CheckLink(b, i, e, &ending); !st.ok()) return st;
    if (e.action() == "envelope.receipt") {
      if (auto st = CheckReceipt(e, roster, part, receipts); !st.ok()) return st;
    }
    if (e.action() == "downstream.access" && e.outcome() == v1::ACCESS_OUTCOME_ALLOWED) {
      if (auto st = CheckAttestation(e, roster, b.case_id, b.org, part, downstream); !st.ok())
        return st;
    }
    rows.push_back({std::to_string(be.index), Time(e.time_unix_micros()),
                    e.actor_org() + "/" + e.actor_subject(), e.action(),
                    EnumShort(v1::AccessOutcome_descriptor(), e.outcome()), e.peer_org()});
  }
  out << "  entries: " << b.entries.size() << " entries about case " << Printable(b.case_id)
      << ", each in the ledger (inclusion proof against the checkpoint's root)\n"
      << "  trail: complete from entry " << b.entries.front().index << " back: each entry names "
      << "the one before it about the case; " << ending << "\n";
  if (!receipts.str().empty()) out << "  receipts:\n" << receipts.str();
  if (!downstream.str().empty()) {
    out << "  read at the nodes the case was referred to (their signed attestations):\n"
        << downstream.str();
  }
  PrintTable(out, rows);
  return absl::OkStatus();
}

}  // namespace

bool IsCaseBundle(absl::string_view text) {
  return absl::StartsWith(text, absl::StrCat(kCaseBundleMagic, "\n"));
}

std::string FormatCaseBundle(const CaseBundle& bundle) {
  std::string body = Body(bundle);
  absl::StrAppend(&body, "end ", HexEncode(DigestBytes(Sha256(body))), "\n");
  return body;
}

absl::StatusOr<CaseBundle> ParseCaseBundle(absl::string_view text) {
  if (!IsCaseBundle(text)) return Fails("line 1", "not a case bundle");
  if (!absl::EndsWith(text, "\n")) return Fails("the end", "the file was cut short");
  std::vector<absl::string_view> lines = absl::StrSplit(text.substr(0, text.size() - 1), '\n');
  CaseBundle b;
  int stage = 0;
  bool ended = false;
  for (size_t n = 1; n < lines.size(); ++n) {
    const std::string part = PartOf(lines[n], n + 1);
    if (ended) return Fails(part, "lines after the end");
    if (absl::StartsWith(lines[n], "end ")) {
      if (stage < 4) return Fails(part, "the bundle ends before its checkpoint");
      b.end_digest = std::string(lines[n].substr(4));
      ended = true;
      continue;
    }
    if (auto st = ParseLine(lines[n], part, stage, b); !st.ok()) return st;
  }
  if (!ended) return Fails("the end", "the file was cut short (no end line)");
  // What was read, written again, must be the file itself: a byte that does
  // not change any value (base64's spare bits, a different spelling of a
  // number) is refused too, and named. (The end line's digest is checked last,
  // by VerifyCaseBundle, so that a changed part is named, not just the digest.)
  const std::string again = Body(b);
  std::vector<absl::string_view> want = absl::StrSplit(again, '\n');
  for (size_t n = 0; n + 1 < lines.size(); ++n) {
    if (n >= want.size() || want[n] != lines[n]) {
      return Fails(PartOf(lines[n], n + 1),
                   "not written as a bundle writes it: the file was changed");
    }
  }
  return b;
}

absl::Status VerifyCaseBundle(const CaseBundle& b, const v1::Roster& roster, std::ostream& out) {
  auto cp = CheckCheckpoint(b, roster, out);
  if (!cp.ok()) return cp.status();
  if (auto st = CheckEntries(b, roster, *cp, out); !st.ok()) return st;
  if (b.end_digest != HexEncode(DigestBytes(Sha256(Body(b))))) {
    return Fails("the end line", "the digest of the bundle does not match: the file was changed");
  }
  return absl::OkStatus();
}

}  // namespace corridor::ctl
