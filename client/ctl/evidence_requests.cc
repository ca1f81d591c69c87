// corridorctl evidence request|fetch|custody, requests [show], decide: asking
// another org for a case's evidence under an agreement, deciding such a
// request, fetching what was granted and following an item's chain of
// custody (docs/evidence.md).
#include "client/ctl/evidence_requests.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/ctl/command.h"
#include "client/ctl/display.h"
#include "client/ctl/evidence_transfer.h"
#include "client/ctl/ledger_keys.h"
#include "corridor/v1/evidence.grpc.pb.h"
#include "ledger/crypto/crypto.h"
#include "ledger/merkle.h"

namespace corridor::ctl {
namespace {

constexpr char kReceiptContext[] = "corridor-fetch-receipt/v1\n";

bool IsDateOnly(const std::string& v) {
  if (v.size() != 10 || v[4] != '-' || v[7] != '-') return false;
  for (int i : {0, 1, 2, 3, 5, 6, 8, 9}) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(v[i]))) return false;
  }
  return true;
}

bool Undecided(const v1::EvidenceRequestSummary& s) {
  return s.state() == v1::EVIDENCE_REQUEST_STATE_PENDING ||
         s.state() == v1::EVIDENCE_REQUEST_STATE_NO_RESPONSE ||
         s.state() == v1::EVIDENCE_REQUEST_STATE_UNSPECIFIED;
}

// Characters, not bytes: UTF-8 continuation bytes are not counted.
size_t CharacterCount(absl::string_view s) {
  size_t n = 0;
  for (char ch : s) n += (static_cast<unsigned char>(ch) & 0xc0) != 0x80;
  return n;
}

// Evidence ids from option values and positional words, commas allowed.
absl::StatusOr<std::vector<std::string>> EvidenceIds(const std::vector<std::string>& words) {
  std::vector<std::string> ids;
  for (const std::string& w : words) {
    for (absl::string_view part : absl::StrSplit(w, ',', absl::SkipEmpty())) {
      if (!absl::StartsWith(part, "E-") || part.size() < 3) {
        return absl::InvalidArgumentError(
            absl::StrCat("\"", part, "\" is not an evidence id: they look like E-3F9A0C12D4E7"));
      }
      ids.emplace_back(part);
    }
  }
  return ids;
}

// The evidence request a command names: its first positional word.
absl::StatusOr<std::string> RequestIdArg(const Args& args, const std::string& example) {
  if (args.positional().empty() || !absl::StartsWith(args.positional()[0], "ER-")) {
    return absl::InvalidArgumentError(
        absl::StrCat("name the evidence request (ER-...), e.g. `corridorctl ", example, "`"));
  }
  return args.positional()[0];
}

// "pending", "approved", "denied", "no-response" (EnumShort() would keep "state-").
std::string StateWord(const v1::EvidenceRequestSummary& s) {
  const std::string word = EnumShort(v1::EvidenceRequestState_descriptor(), s.state());
  return absl::StartsWith(word, "state-") ? word.substr(6) : word;
}

std::string ItemsCell(const v1::EvidenceRequestSummary& s) {
  if (s.all()) return "all";
  std::vector<std::string> shown(s.item_ids().begin(),
                                 s.item_ids().begin() + std::min(s.item_ids_size(), 3));
  std::string cell = absl::StrJoin(shown, ",");
  if (s.item_ids_size() > 3) absl::StrAppend(&cell, " +", s.item_ids_size() - 3, " more");
  return cell;
}

}  // namespace

absl::StatusOr<std::string> ParseDateOption(const std::string& value, const std::string& option,
                                            absl::Time now) {
  const bool date_only = IsDateOnly(value);
  absl::Time t;
  std::string why;
  const bool parsed = date_only ? absl::ParseTime("%Y-%m-%d", value, absl::UTCTimeZone(), &t, &why)
                                : absl::ParseTime(absl::RFC3339_full, value, &t, &why);
  if (!parsed) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", option, " \"", value,
                     "\" is not a date: write YYYY-MM-DD (the end of that day, UTC) or an RFC "
                     "3339 time such as 2026-12-31T17:00:00+08:00"));
  }
  if (date_only) t += absl::Hours(24) - absl::Seconds(1);
  if (t <= now) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", option, " ", value, " is in the past: give a later date"));
  }
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

std::string DeadlineCell(const v1::EvidenceRequestSummary& s, absl::Time now) {
  absl::Time t;
  std::string why;
  if (!absl::ParseTime(absl::RFC3339_full, s.deadline(), &t, &why)) {
    return s.overdue() ? "OVERDUE " + s.deadline() : s.deadline();
  }
  const bool overdue = Undecided(s) && (s.overdue() || now > t);
  if (s.urgent() && Undecided(s)) {
    if (overdue) {
      const int64_t hours = absl::ToInt64Hours(now - t);
      return hours < 1 ? "OVERDUE by <1h" : absl::StrCat("OVERDUE by ", hours, "h");
    }
    const double left = std::ceil(absl::ToDoubleHours(t - now));
    return absl::StrCat(static_cast<int64_t>(left), "h left");
  }
  const std::string date = absl::FormatTime("%Y-%m-%d", t, absl::UTCTimeZone());
  return overdue ? "OVERDUE since " + date : date;
}

std::string SafeFileName(const std::string& name, const std::string& fallback) {
  if (name.empty() || name.size() > 200 || name[0] == '.' || !IsPrintable(name) ||
      name.find_first_of("/\\") != std::string::npos) {
    return fallback;
  }
  return name;
}

namespace {

// ---- evidence request ---------------------------------------------------------

absl::StatusOr<v1::RequestEvidenceRequest> EvidenceRequestFromArgs(const Args& a, absl::Time now) {
  if (auto st = Require(a, {"holder", "case", "agreement", "legal-basis", "purpose"}); !st.ok())
    return st;
  if (!a.positional().empty() && !a.Has("items")) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected \"", a.positional()[0],
                     "\": name the items with --items E-.. [E-..], or ask for all with --all"));
  }
  std::vector<std::string> words = a.GetAll("items");
  words.insert(words.end(), a.positional().begin(), a.positional().end());
  auto items = EvidenceIds(words);
  if (!items.ok()) return items.status();
  if (a.Has("all") && a.Has("items")) {
    return absl::InvalidArgumentError(
        "--items and --all exclude each other: name the items, or ask for all of them");
  }
  if (!a.Has("all") && items->empty()) {
    return absl::InvalidArgumentError(
        "say which evidence you ask for: --items E-.. [E-..] or --all");
  }
  if (items->size() > 1000)
    return absl::InvalidArgumentError("at most 1000 items in one request: ask for --all");
  if (CharacterCount(a.Get("legal-basis")) > 2000) {
    return absl::InvalidArgumentError(
        "--legal-basis is longer than 2000 characters: cite the provision and the case");
  }
  v1::RequestEvidenceRequest req;
  if (a.Has("deadline")) {
    auto deadline = ParseDateOption(a.Get("deadline"), "deadline", now);
    if (!deadline.ok()) return deadline.status();
    req.set_deadline(*deadline);
  }
  req.set_holder_org(a.Get("holder"));
  req.set_case_id(a.Get("case"));
  for (const std::string& id : *items) req.add_item_ids(id);
  req.set_all(a.Has("all"));
  req.set_agreement(a.Get("agreement"));
  req.set_legal_basis(a.Get("legal-basis"));
  req.set_purpose(a.Get("purpose"));
  req.set_urgent(a.Has("urgent"));
  return req;
}

absl::Status RunEvidenceRequest(Context& c) {
  auto req = EvidenceRequestFromArgs(c.args, absl::Now());
  if (!req.ok()) return req.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::RequestEvidenceResponse resp;
  grpc::Status s = v1::EvidenceService::NewStub(conn->channel)->Request(ctx.get(), *req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  c.out << "evidence request " << Printable(resp.request_id()) << " for case "
        << Printable(req->case_id()) << " is on its way to " << Printable(req->holder_org())
        << " (envelope " << Printable(resp.envelope_id()) << ")\n  answer due by "
        << Printable(resp.deadline()) << (req->urgent() ? " (urgent)" : "")
        << "\n  follow it with `corridorctl requests`\n";
  return absl::OkStatus();
}

// ---- requests, requests show --------------------------------------------------

absl::Status RunRequests(Context& c) {
  if (!c.args.positional().empty()) {
    return absl::InvalidArgumentError(
        "to see one request: corridorctl requests show ER-... (`corridorctl requests` lists "
        "them all)");
  }
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::ListEvidenceRequestsResponse resp;
  grpc::Status s = v1::EvidenceService::NewStub(conn->channel)->List(ctx.get(), {}, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
    return absl::OkStatus();
  }
  const absl::Time now = absl::Now();
  std::vector<std::vector<std::string>> rows = {
      {"REQUEST", "DIRECTION", "PEER", "CASE", "STATE", "URGENT", "DEADLINE", "ITEMS"}};
  // In the node's order: urgent first, then by deadline.
  for (const auto& r : resp.requests()) {
    rows.push_back({r.request_id(), r.outgoing() ? "out" : "in", r.peer_org(), r.case_id(),
                    StateWord(r), r.urgent() ? "URGENT" : "", DeadlineCell(r, now), ItemsCell(r)});
  }
  PrintTable(c.out, rows);
  if (resp.requests().empty()) c.out << "(no evidence requests)\n";
  return absl::OkStatus();
}

void Line(std::ostream& out, const std::string& label, const std::string& value) {
  std::string l = label + ":";
  l.resize(std::max<size_t>(l.size() + 1, 15), ' ');
  out << "  " << l << Printable(value) << "\n";
}

// The grant's conditions, set apart: they bind every use of the items.
void PrintConditions(std::ostream& out, const google::protobuf::RepeatedPtrField<std::string>& cs) {
  if (cs.empty()) return;
  out << "\nConditions of use:\n";
  for (int i = 0; i < cs.size(); ++i) out << "  " << i + 1 << ". " << Printable(cs[i]) << "\n";
  out << "\n";
}

void PrintDecision(std::ostream& out, const v1::EvidenceRequestSummary& s) {
  Line(out, "decided by", s.decided_by());
  if (s.state() == v1::EVIDENCE_REQUEST_STATE_DENIED) {
    Line(out, "reason", s.reason());
    return;
  }
  Line(out, "grant", s.grant_id());
  Line(out, "valid until", s.expires_at());
  Line(out, "fetches",
       absl::StrCat(s.fetches(), " so far; at most ", s.max_fetches(), " per item"));
  PrintConditions(out, s.conditions());
  std::vector<std::vector<std::string>> rows = {{"GRANTED", "FILE", "TYPE", "BYTES", "SHA-256"}};
  for (const auto& g : s.granted()) {
    rows.push_back({g.item_id(), g.file_name(), g.media_type(), std::to_string(g.size()),
                    HexEncode(g.sha256())});
  }
  PrintTable(out, rows);
}

void PrintRequestDetail(std::ostream& out, const v1::EvidenceRequestDetail& d, absl::Time now) {
  const v1::EvidenceRequestSummary& s = d.summary();
  out << "evidence request " << Printable(s.request_id())
      << (s.outgoing() ? " sent to " : " received from ") << Printable(s.peer_org()) << "\n";
  const std::string deadline = DeadlineCell(s, now);
  Line(out, "state", StateWord(s) + (absl::StartsWith(deadline, "OVERDUE") ? ", OVERDUE" : ""));
  Line(out, "case", s.case_id());
  Line(out, "agreement", s.agreement());
  Line(out, "purpose", s.purpose());
  Line(out, "requested", s.requested_at() + " by " + s.requested_by());
  Line(out, "deadline", s.deadline() + (s.urgent() ? " (urgent: " + deadline + ")" : ""));
  Line(out, "items asked",
       s.all() ? "all of the case's evidence" : absl::StrJoin(s.item_ids(), ", "));
  Line(out, "legal basis", d.legal_basis());
  if (!Undecided(s)) PrintDecision(out, s);
}

absl::StatusOr<v1::EvidenceRequestDetail> GetRequest(const Connection& conn,
                                                     const std::string& request_id,
                                                     const std::string& peer_org) {
  v1::GetEvidenceRequestRequest req;
  req.set_request_id(request_id);
  req.set_peer_org(peer_org);
  auto ctx = conn.NewContext();
  v1::EvidenceRequestDetail detail;
  grpc::Status s = v1::EvidenceService::NewStub(conn.channel)->Get(ctx.get(), req, &detail);
  if (!s.ok()) return Explain(s, conn);
  return detail;
}

absl::Status RunRequestsShow(Context& c) {
  auto id = RequestIdArg(c.args, "requests show ER-3F9A0C12D4E7");
  if (!id.ok()) return id.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto detail = GetRequest(*conn, *id, c.args.Get("from"));
  if (!detail.ok()) return detail.status();
  if (c.json()) {
    c.out << ToJson(*detail);
  } else {
    PrintRequestDetail(c.out, *detail, absl::Now());
  }
  return absl::OkStatus();
}

// ---- decide -------------------------------------------------------------------

bool IsRuleCode(const std::string& s) {
  if (s.empty() || s.size() > 64) return false;
  for (char ch : s) {
    if (!absl::ascii_islower(static_cast<unsigned char>(ch)) &&
        !absl::ascii_isdigit(static_cast<unsigned char>(ch)) && ch != '-')
      return false;
  }
  return true;
}

absl::Status DenyFromArgs(const Args& a, v1::DecideEvidenceRequest* req) {
  if (a.positional().size() > 1) {
    return absl::InvalidArgumentError(
        "evidence ids go with --approve (to grant some of them); --deny refuses the whole "
        "request");
  }
  for (const char* terms : {"until", "max-fetches", "condition"}) {
    if (a.Has(terms)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", terms, " is a term of an approval; it does not go with --deny"));
    }
  }
  if (!a.Has("reason")) {
    return absl::InvalidArgumentError(
        "missing --reason: a refusal names a rule's code, e.g. --reason insufficient-basis");
  }
  if (!IsRuleCode(a.Get("reason"))) {
    return absl::InvalidArgumentError(
        "--reason takes a rule's code (lower-case letters, digits and hyphens, e.g. "
        "insufficient-basis), not free text");
  }
  req->set_reason(a.Get("reason"));
  return absl::OkStatus();
}

absl::Status ApproveFromArgs(const Args& a, absl::Time now, v1::DecideEvidenceRequest* req) {
  if (a.Has("reason")) {
    return absl::InvalidArgumentError(
        "--reason goes with --deny; an approval's terms are --until, --max-fetches and "
        "--condition");
  }
  auto items = EvidenceIds({a.positional().begin() + 1, a.positional().end()});
  if (!items.ok()) return items.status();
  for (const std::string& id : *items) req->add_item_ids(id);
  if (a.Has("until")) {
    auto until = ParseDateOption(a.Get("until"), "until", now);
    if (!until.ok()) return until.status();
    req->set_until(*until);
  }
  if (a.Has("max-fetches")) {
    uint32_t n = 0;
    if (!absl::SimpleAtoi(a.Get("max-fetches"), &n) || n < 1 || n > 100)
      return absl::InvalidArgumentError("--max-fetches must be a number from 1 to 100");
    req->set_max_fetches(n);
  }
  const std::vector<std::string> conditions = a.GetAll("condition");
  if (conditions.size() > 20)
    return absl::InvalidArgumentError("at most 20 --condition options; combine some of them");
  for (const std::string& cond : conditions) {
    if (cond.empty() || CharacterCount(cond) > 500) {
      return absl::InvalidArgumentError("each --condition is a sentence of 1 to 500 characters");
    }
    req->add_conditions(cond);
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::DecideEvidenceRequest> DecisionFromArgs(const Args& a, absl::Time now) {
  auto id = RequestIdArg(a, "decide ER-3F9A0C12D4E7 --approve");
  if (!id.ok()) return id.status();
  const bool approve = a.Has("approve"), deny = a.Has("deny");
  if (approve && deny)
    return absl::InvalidArgumentError("--approve and --deny exclude each other: decide one way");
  if (!approve && !deny) {
    return absl::InvalidArgumentError(
        "say how you decide: --approve [EVIDENCE...] or --deny --reason CODE");
  }
  v1::DecideEvidenceRequest req;
  req.set_request_id(*id);
  req.set_requester_org(a.Get("from"));
  req.set_approve(approve);
  absl::Status st = approve ? ApproveFromArgs(a, now, &req) : DenyFromArgs(a, &req);
  if (!st.ok()) return st;
  return req;
}

absl::Status RunDecide(Context& c) {
  auto req = DecisionFromArgs(c.args, absl::Now());
  if (!req.ok()) return req.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto ctx = conn->NewContext();
  v1::DecideEvidenceResponse resp;
  grpc::Status s = v1::EvidenceService::NewStub(conn->channel)->Decide(ctx.get(), *req, &resp);
  if (!s.ok()) return Explain(s, *conn);
  if (c.json()) {
    c.out << ToJson(resp);
  } else if (req->approve()) {
    c.out << "approved " << Printable(req->request_id()) << ": grant " << Printable(resp.grant_id())
          << "\n  the decision is on its way to the requester "
          << "(envelope " << Printable(resp.envelope_id()) << ")\n";
  } else {
    c.out << "denied " << Printable(req->request_id()) << " (" << Printable(req->reason())
          << ")\n  the decision is on its way to the requester (envelope "
          << Printable(resp.envelope_id()) << ")\n";
  }
  return absl::OkStatus();
}

// ---- evidence fetch -----------------------------------------------------------

// OK if `dir` is a directory, or does not exist but its parent does (it is
// created once the items arrive).
absl::Status CheckOutDir(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("--out ", dir, " is a file: name a directory to save the items in"));
  }
  if (errno != ENOENT)
    return absl::FailedPreconditionError(
        absl::StrCat("cannot use --out ", dir, ": ", strerror(errno)));
  std::string parent = dir;
  while (parent.size() > 1 && parent.back() == '/') parent.pop_back();
  const size_t slash = parent.rfind('/');
  parent = slash == std::string::npos ? "." : slash == 0 ? "/" : parent.substr(0, slash);
  if (stat(parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat("--out ", dir, ": the directory ", parent,
                                                   " it would be created in does not exist"));
  }
  return absl::OkStatus();
}

// Writes `data` to `path`, which must not exist yet: a temporary file beside
// it, synced, then linked to `path` (which fails rather than replace a file
// that appeared meanwhile). AlreadyExists if `path` exists.
absl::Status SaveAsNewFile(const std::string& path, absl::string_view data) {
  const std::string tmp = absl::StrCat(path, ".part-", getpid());
  if (auto st = WriteFileAtomically(tmp, data, 0600); !st.ok()) return st;
  const int rc = link(tmp.c_str(), path.c_str());
  const int err = errno;
  unlink(tmp.c_str());
  if (rc != 0 && err == EEXIST) return absl::AlreadyExistsError(path + " already exists");
  if (rc != 0)
    return absl::InternalError(absl::StrCat("cannot create ", path, ": ", strerror(err)));
  const std::string dir = path.substr(0, path.rfind('/'));
  const int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
  return absl::OkStatus();
}

// What arrived must be what the holder recorded, as its decision described it.
absl::Status CheckAgainstGrant(const DownloadedEvidence& got, const v1::FetchedItem& fetched,
                               const v1::EvidenceRequestSummary& s) {
  for (const v1::GrantedItem& g : s.granted()) {
    if (g.item_id() != fetched.holder_item_id()) continue;
    if (got.data.size() != g.size() || DigestBytes(Sha256(got.data)) != g.sha256()) {
      return absl::DataLossError(absl::StrCat(fetched.item().id(),
                                              " does not match the size and SHA-256 ", s.peer_org(),
                                              " recorded for its ", g.item_id(), ": not saved"));
    }
    return absl::OkStatus();
  }
  return absl::DataLossError(absl::StrCat(fetched.item().id(), " (", fetched.holder_item_id(),
                                          " at ", s.peer_org(),
                                          ") is not among the items granted: not saved"));
}

// "entry N of ORG's ledger (fetch n of grant G)" from the receipt, as the
// node stored it (its signature is checked by `evidence custody`).
std::string ReceiptSummary(const v1::EvidenceItem& item) {
  v1::FetchReceipt receipt;
  v1::FetchReceiptBody body;
  if (item.holder_receipt().empty() || !receipt.ParseFromString(item.holder_receipt()) ||
      !body.ParseFromString(receipt.body())) {
    return "none stored";
  }
  return absl::StrCat("entry ", body.ledger_index(), " of ", body.holder_org(), "'s ledger (fetch ",
                      body.fetch_number(), " under grant ", body.grant_id(), ")");
}

// Saves under the item's own file name if that is safe and free, else beside
// it under the local evidence id; says so. With --json, the lines go to stderr.
absl::Status SaveFetched(Context& c, const v1::FetchedItem& fetched,
                         const DownloadedEvidence& got) {
  std::ostream& out = c.json() ? c.err : c.out;
  const std::string dir = c.args.Get("out");
  const std::string id = SafeFileName(fetched.item().id(), "evidence");
  const std::string name = SafeFileName(fetched.item().file_name(), id + ".bin");
  if (name != fetched.item().file_name()) {
    out << "  the holder's file name \"" << Printable(fetched.item().file_name())
        << "\" is not safe to create; using " << Printable(name) << "\n";
  }
  std::string path = absl::StrCat(dir, "/", name);
  absl::Status st = SaveAsNewFile(path, got.data);
  if (absl::IsAlreadyExists(st)) {
    out << "  " << Printable(path) << " already exists and was left as it is\n";
    path = absl::StrCat(dir, "/", id, "-", name);
    st = SaveAsNewFile(path, got.data);
  }
  if (!st.ok()) return st;
  out << "saved " << Printable(fetched.item().id()) << " (" << Printable(fetched.holder_item_id())
      << " at the holder) to " << Printable(path) << ": " << got.data.size() << " bytes, SHA-256 "
      << HexEncode(DigestBytes(Sha256(got.data)))
      << " verified\n  holder's receipt: " << Printable(ReceiptSummary(fetched.item()))
      << "; its signature: `corridorctl evidence custody " << Printable(fetched.item().id())
      << "`\n";
  return absl::OkStatus();
}

// Downloads one fetched item from the user's node, checks it and saves it.
absl::Status FetchOne(Context& c, const Connection& conn, const std::string& case_id,
                      const v1::FetchedItem& fetched, const v1::EvidenceRequestSummary& s) {
  auto got = DownloadEvidence(conn, case_id, fetched.item().id(), s.purpose(), c.err);
  if (!got.ok()) return got.status();
  if (auto st = CheckAgainstGrant(*got, fetched, s); !st.ok()) return st;
  return SaveFetched(c, fetched, *got);
}

absl::StatusOr<v1::FetchGrantedResponse> CallFetch(const Connection& conn,
                                                   const std::string& request_id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(10)));
  v1::FetchGrantedRequest req;
  req.set_request_id(request_id);
  v1::FetchGrantedResponse resp;
  grpc::Status s = v1::EvidenceService::NewStub(conn.channel)->Fetch(&ctx, req, &resp);
  if (!s.ok()) return Explain(s, conn);
  return resp;
}

absl::Status RunEvidenceFetch(Context& c) {
  auto id = RequestIdArg(c.args, "evidence fetch ER-3F9A0C12D4E7 --out DIR");
  if (!id.ok()) return id.status();
  if (auto st = Require(c.args, {"out"}); !st.ok()) return st;
  const std::string dir = c.args.Get("out");
  if (auto st = CheckOutDir(dir); !st.ok()) return st;
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  // The purpose the items are read for is the request's own.
  auto detail = GetRequest(*conn, *id, "");
  if (!detail.ok()) return detail.status();
  const v1::EvidenceRequestSummary& s = detail->summary();
  if (!s.outgoing()) {
    return absl::FailedPreconditionError(
        absl::StrCat(*id, " was sent to your org by ", s.peer_org(),
                     ": only the org that asked fetches (the evidence is your org's own)"));
  }
  auto resp = CallFetch(*conn, *id);
  if (!resp.ok()) return resp.status();
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", strerror(errno)));
  if (resp->items().empty() && !c.json())
    c.out << "the node fetched nothing for " << Printable(*id) << "\n";
  std::vector<std::string> failed;
  for (const v1::FetchedItem& fetched : resp->items()) {
    absl::Status st = FetchOne(c, *conn, resp->case_id(), fetched, s);
    if (!st.ok()) failed.push_back(absl::StrCat(fetched.item().id(), ": ", st.message()));
  }
  if (c.json()) {
    c.out << ToJson(*resp);
  } else {
    PrintConditions(c.out, s.conditions());
  }
  if (failed.empty()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat(failed.size(), " of ", resp->items_size(), " items were not saved (",
                   absl::StrJoin(failed, "; "), "); they are in case ", resp->case_id(),
                   " at your node: `corridorctl evidence get ", resp->case_id(),
                   " EVIDENCE --out FILE --purpose ", s.purpose(), "`"));
}

// ---- evidence custody ---------------------------------------------------------

// The ledger entry of `ev`, once its inclusion proof verified against `cp`
// and it is about `evidence_id`; DataLoss saying what does not hold.
absl::StatusOr<v1::AccessEvent> VerifiedEntry(const v1::CustodyEvent& ev,
                                              const note::Checkpoint& cp,
                                              const std::string& evidence_id) {
  const v1::LoggedEvent& le = ev.event();
  const std::string at = absl::StrCat("entry ", le.index());
  if (le.entry().empty())
    return absl::DataLossError(at + ": the node sent no ledger entry to check");
  auto proof = ProofHashes(ev.inclusion_proof());
  if (!proof.ok()) return absl::DataLossError(absl::StrCat(at, ": ", proof.status().message()));
  absl::Status verified =
      merkle::VerifyInclusion(le.index(), cp.size, merkle::HashLeaf(le.entry()), *proof, cp.root);
  if (!verified.ok()) {
    return absl::DataLossError(
        absl::StrCat(at, ": the inclusion proof does NOT verify: ", verified.message()));
  }
  v1::AccessEvent e;
  if (!e.ParseFromString(le.entry()))
    return absl::DataLossError(at + " is in the ledger but is not an access event");
  if (e.resource_id() != evidence_id) {
    return absl::DataLossError(
        absl::StrCat(at, " is about ", e.resource_id(), ", not ", evidence_id));
  }
  return e;
}

// The holder's receipt on a fetch entry `e`, checked against the holder's key
// in `roster` (the holder is the entry's peer org): signature first, then
// that it names the holder and the bytes the entry recorded.
absl::StatusOr<std::string> CheckReceipt(const v1::FetchReceipt& r, const v1::AccessEvent& e,
                                         const v1::Roster& roster) {
  auto key = MemberSigningKey(roster, e.peer_org(), r.key_id());
  if (!key.ok()) return key.status();
  if (!key->Verify(absl::StrCat(kReceiptContext, r.body()), r.signature()))
    return absl::PermissionDeniedError("its signature does NOT verify");
  v1::FetchReceiptBody body;
  if (!body.ParseFromString(r.body())) return absl::DataLossError("its body is malformed");
  if (body.holder_org() != e.peer_org() || body.sha256() != e.payload_sha256()) {
    return absl::DataLossError(
        "it is signed, but for another holder or other bytes than this entry records");
  }
  return absl::StrCat("entry ", body.ledger_index(), " of ", e.peer_org(), "'s ledger (fetch ",
                      body.fetch_number(), " under grant ", body.grant_id(), "): signature by key ",
                      r.key_id(), " verified");
}

absl::StatusOr<v1::CustodyResponse> CallCustody(const Connection& conn, const std::string& id) {
  v1::CustodyRequest req;
  req.set_evidence_id(id);
  auto ctx = conn.NewContext();
  v1::CustodyResponse resp;
  grpc::Status s = v1::EvidenceService::NewStub(conn.channel)->Custody(ctx.get(), req, &resp);
  if (!s.ok()) return Explain(s, conn);
  return resp;
}

struct CustodyReport {
  std::vector<std::vector<std::string>> rows = {
      {"INDEX", "TIME (UTC)", "ACTION", "ACTOR", "PEER", "OUTCOME", "REASON", "PROOF"}};
  std::vector<std::string> receipts;
  std::vector<std::string> failures;
};

void AddCustodyEvent(const v1::CustodyEvent& ev, const note::Checkpoint& cp,
                     const std::string& evidence_id, const v1::Roster* roster, CustodyReport* rep) {
  const std::string index = std::to_string(ev.event().index());
  auto e = VerifiedEntry(ev, cp, evidence_id);
  if (!e.ok()) {
    rep->rows.push_back({index, "", "", "", "", "", "", "NOT VERIFIED"});
    rep->failures.emplace_back(e.status().message());
    return;
  }
  rep->rows.push_back(
      {index,
       absl::FormatTime("%Y-%m-%d %H:%M:%S", absl::FromUnixMicros(e->time_unix_micros()),
                        absl::UTCTimeZone()),
       e->action(), e->actor_org() + "/" + e->actor_subject(), e->peer_org(),
       EnumShort(v1::AccessOutcome_descriptor(), e->outcome()), e->reason(), "verified"});
  if (ev.holder_receipt().body().empty()) return;
  const std::string what = absl::StrCat("entry ", index, ": holder's receipt: ");
  if (roster == nullptr) {
    rep->receipts.push_back(what +
                            "signature NOT checked (give --roster, not --vkey, to check it)");
    return;
  }
  auto checked = CheckReceipt(ev.holder_receipt(), *e, *roster);
  rep->receipts.push_back(what +
                          (checked.ok() ? *checked : std::string(checked.status().message())));
  if (!checked.ok()) rep->failures.push_back(what + std::string(checked.status().message()));
}

absl::Status RunEvidenceCustody(Context& c) {
  if (c.args.positional().empty() || !absl::StartsWith(c.args.positional()[0], "E-")) {
    return absl::InvalidArgumentError(
        "name the evidence item, e.g. `corridorctl evidence custody E-3F9A0C12D4E7`");
  }
  const std::string id = c.args.positional()[0];
  const std::string my_org = OrgOfCertificate(c.args);
  v1::Roster roster;
  auto verifiers = VerifiersFromOptions(c.args, my_org, &roster);
  if (!verifiers.ok()) return verifiers.status();
  auto conn = Connect(c.args);
  if (!conn.ok()) return conn.status();
  auto resp = CallCustody(*conn, id);
  if (!resp.ok()) return resp.status();
  auto opened = OpenCheckpointWithAny(c.args, my_org, *verifiers, resp->checkpoint());
  if (!opened.ok()) return opened.status();
  if (opened->checkpoint.size != resp->tree_size())
    return absl::DataLossError("the checkpoint is for another tree size than the proofs");
  CustodyReport rep;
  const v1::Roster* keys = c.args.Has("vkey") ? nullptr : &roster;
  for (const v1::CustodyEvent& ev : resp->events())
    AddCustodyEvent(ev, opened->checkpoint, id, keys, &rep);
  if (c.json()) {
    if (rep.failures.empty()) c.out << ToJson(*resp);
  } else {
    c.out << "evidence " << Printable(id) << " of case " << Printable(resp->case_id()) << "\n";
    PrintTable(c.out, rep.rows);
    for (const std::string& r : rep.receipts) c.out << Printable(r) << "\n";
    c.out << "checked against the checkpoint of " << Printable(opened->checkpoint.origin)
          << " at size " << opened->checkpoint.size << ", signed by "
          << Printable(opened->verifier.name) << "\n";
  }
  if (rep.failures.empty()) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat("the chain of custody does NOT verify: ", absl::StrJoin(rep.failures, "; ")));
}

}  // namespace

std::vector<Command> EvidenceRequestCommands() {
  return {
      {{"evidence", "request"},
       "--holder ORG --case C-.. (--items E-.. [E-..]... | --all) --agreement ID "
       "--legal-basis TEXT --purpose P [--deadline DATE] [--urgent]",
       "ask the org holding a case's evidence for it (prosecutors)",
       With(ConnectionOptions(),
            {{"holder", "ORG", "the org that holds the evidence"},
             {"case", "C-..", "your case, linked to the holder by a referral"},
             {"items", "E-..", "the holder's evidence ids (more may follow the first)", true},
             {"all", "", "ask for all of the case's evidence at the holder"},
             {"agreement", "ID", "the agreement you ask under"},
             {"legal-basis", "TEXT", "the legal basis for the request (at most 2000 characters)"},
             {"purpose", "P", "the purpose, as the agreement names it"},
             {"deadline", "DATE",
              "answer due by: YYYY-MM-DD (end of that day, UTC) or RFC 3339 (default 10 days; "
              "8 hours if urgent)"},
             {"urgent", "", "urgent: listed first, answer due within hours"}}),
       RunEvidenceRequest},
      {{"requests"},
       "",
       "evidence requests sent and received, urgent first (prosecutors, approvers)",
       ConnectionOptions(),
       RunRequests},
      {{"requests", "show"},
       "ER-.. [--from ORG]",
       "one evidence request: legal basis, decision, grant and its conditions",
       With(ConnectionOptions(),
            {{"from", "ORG", "the other org, if two orgs used the same request id"}}),
       RunRequestsShow},
      {{"decide"},
       "ER-.. (--approve [E-..]... [--until DATE] [--max-fetches N] [--condition TEXT]... | "
       "--deny --reason CODE) [--from ORG]",
       "grant or refuse an evidence request your org received (approvers)",
       With(ConnectionOptions(),
            {{"approve", "", "grant the items asked for, or only the ones named after it"},
             {"deny", "", "refuse the request"},
             {"reason", "CODE", "with --deny: the rule's code, e.g. insufficient-basis"},
             {"until", "DATE",
              "the grant ends: YYYY-MM-DD (end of that day, UTC) or RFC 3339 (default 30 "
              "days)"},
             {"max-fetches", "N", "fetches allowed per item, 1 to 100 (default 3)"},
             {"condition", "TEXT", "a condition of use, besides the speciality rule", true},
             {"from", "ORG", "the requesting org, if two orgs used the same request id"}}),
       RunDecide},
      {{"evidence", "fetch"},
       "ER-.. --out DIR",
       "fetch what was granted into your case and save it in DIR (digest-checked)",
       With(ConnectionOptions(),
            {{"out", "DIR", "directory to save the items in (created if missing)"}}),
       RunEvidenceFetch},
      {{"evidence", "custody"},
       "E-.. --roster FILE [--org ORG]",
       "every ledger event of an evidence item, each proof and receipt checked",
       With(ConnectionOptions(), LedgerKeyOptions()),
       RunEvidenceCustody},
  };
}

}  // namespace corridor::ctl
