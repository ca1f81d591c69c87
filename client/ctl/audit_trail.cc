#include "client/ctl/audit_trail.h"

#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "client/ctl/display.h"
#include "client/ctl/ledger_keys.h"
#include "corridor/v1/case.grpc.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "ledger/merkle.h"

namespace corridor::ctl {
namespace {

absl::Status NotVerified(const std::string& why) {
  return absl::DataLossError(absl::StrCat("the audit trail does NOT verify: ", why));
}

// What the query asks for, as the node's AccessLog::Find filters it.
class QueryFilter {
 public:
  static absl::StatusOr<QueryFilter> Of(const v1::QueryEventsRequest& req) {
    QueryFilter f;
    f.req_ = req;
    std::string err;
    absl::Time t;
    if (!req.after().empty()) {
      if (!absl::ParseTime(absl::RFC3339_full, req.after(), &t, &err))
        return absl::InvalidArgumentError("--after is not an RFC 3339 time");
      f.after_us_ = absl::ToUnixMicros(t);
    }
    if (!req.before().empty()) {
      if (!absl::ParseTime(absl::RFC3339_full, req.before(), &t, &err))
        return absl::InvalidArgumentError("--before is not an RFC 3339 time");
      f.before_us_ = absl::ToUnixMicros(t);
    }
    return f;
  }

  bool Matches(const v1::AccessEvent& e) const {
    return (req_.case_id().empty() || e.case_id() == req_.case_id()) &&
           (req_.actor().empty() || Actor(e) == req_.actor()) &&
           (req_.org().empty() || e.actor_org() == req_.org()) &&
           (req_.action().empty() || e.action() == req_.action()) &&
           (req_.outcome() == v1::ACCESS_OUTCOME_UNSPECIFIED || e.outcome() == req_.outcome()) &&
           e.time_unix_micros() >= after_us_ && e.time_unix_micros() < before_us_;
  }

  // The trail the query follows: a case's, else an actor's, else none.
  bool HasTrail() const { return !req_.case_id().empty() || !req_.actor().empty(); }
  std::string TrailName() const {
    return req_.case_id().empty() ? "actor " + req_.actor() : "case " + req_.case_id();
  }
  bool OnTrail(const v1::AccessEvent& e) const {
    return req_.case_id().empty() ? Actor(e) == req_.actor() : e.case_id() == req_.case_id();
  }
  std::optional<uint64_t> Previous(const v1::AccessEvent& e) const {
    if (!req_.case_id().empty()) {
      if (e.has_prev_case_entry()) return e.prev_case_entry();
    } else if (e.has_prev_actor_entry()) {
      return e.prev_actor_entry();
    }
    return std::nullopt;
  }

 private:
  static std::string Actor(const v1::AccessEvent& e) {
    return absl::StrCat(e.actor_org(), "/", e.actor_subject());
  }

  v1::QueryEventsRequest req_;
  int64_t after_us_ = INT64_MIN;
  int64_t before_us_ = INT64_MAX;
};

// Entries proved against the node's latest checkpoint, each fetched once.
class Prover {
 public:
  Prover(const Args& args, const Connection& conn, std::vector<note::Verifier> verifiers)
      : args_(args),
        conn_(conn),
        stub_(v1::AuditService::NewStub(conn.channel)),
        verifiers_(std::move(verifiers)) {}

  absl::StatusOr<const v1::AccessEvent*> Prove(uint64_t index) {
    if (auto it = proven_.find(index); it != proven_.end()) return &it->second;
    v1::InclusionProofRequest req;
    req.set_index(index);
    v1::InclusionProofResponse resp;
    auto ctx = conn_.NewContext();
    grpc::Status s = stub_->GetInclusionProof(ctx.get(), req, &resp);
    if (!s.ok()) return Explain(s, conn_);
    auto opened =
        OpenCheckpointWithAny(args_, OrgOfCertificate(args_), verifiers_, resp.checkpoint());
    if (!opened.ok()) return opened.status();
    auto proof = ProofHashes(resp.proof());
    if (!proof.ok()) return proof.status();
    if (resp.index() != index || opened->checkpoint.size != resp.tree_size() ||
        !merkle::VerifyInclusion(index, resp.tree_size(), merkle::HashLeaf(resp.entry()), *proof,
                                 opened->checkpoint.root)
             .ok()) {
      return NotVerified(absl::StrCat("the inclusion proof of entry ", index, " does not verify"));
    }
    v1::AccessEvent e;
    if (!e.ParseFromString(resp.entry()))
      return NotVerified(absl::StrCat("entry ", index, " is not an access event"));
    entries_[index] = resp.entry();
    signer_ = opened->verifier.name;
    size_ = std::max(size_, resp.tree_size());
    return &(proven_[index] = std::move(e));
  }
  const std::string& Entry(uint64_t index) const { return entries_.at(index); }
  const std::string& signer() const { return signer_; }
  uint64_t size() const { return size_; }

 private:
  const Args& args_;
  const Connection& conn_;
  std::unique_ptr<v1::AuditService::Stub> stub_;
  std::vector<note::Verifier> verifiers_;
  std::map<uint64_t, v1::AccessEvent> proven_;
  std::map<uint64_t, std::string> entries_;
  std::string signer_;
  uint64_t size_ = 0;
};

// Every entry the node returned is in the ledger and is what the node showed.
absl::Status ProveReturned(const v1::QueryEventsResponse& resp, const QueryFilter& filter,
                           Prover& prover) {
  for (const v1::LoggedEvent& le : resp.events()) {
    auto proven = prover.Prove(le.index());
    if (!proven.ok()) return proven.status();
    if (le.entry() != prover.Entry(le.index()) ||
        !google::protobuf::util::MessageDifferencer::Equals(le.event(), **proven)) {
      return NotVerified(absl::StrCat("the node showed entry ", le.index(),
                                      " other than the entry its ledger holds"));
    }
    if (!filter.Matches(**proven)) {
      return NotVerified(absl::StrCat("entry ", le.index(), " does not match the query"));
    }
  }
  return absl::OkStatus();
}

struct Walk {
  std::set<uint64_t> visited;  // the entries reached, the newest returned first
  uint64_t followed = 0;       // links followed
};

// Follows the trail from the newest entry returned down to `floor`: each entry
// reached that matches the query must be among `returned`.
absl::StatusOr<Walk> FollowTrail(const QueryFilter& filter, const std::set<uint64_t>& returned,
                                 uint64_t floor, Prover& prover) {
  Walk w;
  uint64_t cur = *returned.rbegin();
  for (;;) {
    auto e = prover.Prove(cur);
    if (!e.ok()) return e.status();
    w.visited.insert(cur);
    std::optional<uint64_t> prev = filter.Previous(**e);
    if (!prev) return w;
    if (*prev >= cur) {
      return NotVerified(
          absl::StrCat("entry ", cur, " names a later entry (", *prev, ") as the one before it"));
    }
    if (*prev < floor) return w;  // the rest is on the next page
    auto p = prover.Prove(*prev);
    if (!p.ok()) return p.status();
    ++w.followed;
    if (!filter.OnTrail(**p)) {
      return NotVerified(absl::StrCat("entry ", cur, " names entry ", *prev,
                                      " as the one before it on the ", filter.TrailName(),
                                      " trail, but entry ", *prev, " is not on it"));
    }
    if (filter.Matches(**p) && returned.count(*prev) == 0) {
      return NotVerified(absl::StrCat(
          "entry ", *prev, " (", (*p)->action(), ", ",
          EnumShort(v1::AccessOutcome_descriptor(), (*p)->outcome()), ") is on the ",
          filter.TrailName(), " trail and matches the query, but the node did not return it"));
    }
    cur = *prev;
  }
}

}  // namespace

absl::Status VerifyTrail(const Args& args, const Connection& conn,
                         const v1::QueryEventsRequest& req, const v1::QueryEventsResponse& resp,
                         std::ostream& out) {
  auto filter = QueryFilter::Of(req);
  if (!filter.ok()) return filter.status();
  // The ledger is the node's own, so its org is the user's (--org filters the query).
  auto verifiers = LedgerVerifiers(args, OrgOfCertificate(args));
  if (!verifiers.ok()) return verifiers.status();
  Prover prover(args, conn, *std::move(verifiers));
  if (auto st = ProveReturned(resp, *filter, prover); !st.ok()) return st;
  if (resp.events_size() == 0) {
    out << "nothing returned, nothing to prove (an empty answer cannot be checked against a "
           "trail: ask about an entry you know of)\n";
    return absl::OkStatus();
  }
  out << "verified: the " << resp.events_size()
      << " entries shown are in the ledger (inclusion proofs against the checkpoint of size "
      << prover.size() << " signed by " << Printable(prover.signer()) << ")\n";
  if (!filter->HasTrail()) {
    out << "completeness not checked: only a --case or --actor query follows a trail\n";
    return absl::OkStatus();
  }
  std::set<uint64_t> returned;
  for (const v1::LoggedEvent& le : resp.events()) returned.insert(le.index());
  const bool more = !resp.next_page_token().empty();
  auto walk = FollowTrail(*filter, returned, more ? *returned.begin() : 0, prover);
  if (!walk.ok()) return walk.status();
  const uint64_t last = *walk->visited.begin();
  for (uint64_t r : returned) {
    if (r > last && walk->visited.count(r) == 0) {
      return NotVerified(absl::StrCat("entry ", r, " was returned but the ", filter->TrailName(),
                                      " trail does not pass through it"));
    }
  }
  out << "complete: the " << Printable(filter->TrailName()) << " trail followed from entry "
      << *returned.rbegin() << " back to entry " << last << " (" << walk->followed
      << " links, each proved); every entry on it that matches the query was returned";
  if (more) {
    out << "; it continues on the next page\n";
  } else {
    out << "; entry " << last << " names no entry before it (the trail's first";
    if (*returned.begin() < last) {
      out << "; the " << std::distance(returned.begin(), returned.lower_bound(last))
          << " older entries returned were recorded before trail links existed and are not "
             "checked";
    }
    out << ")\n";
  }
  out << "not provable here: an entry newer than entry " << *returned.rbegin()
      << " (the next entry on the trail will name it)\n";
  return absl::OkStatus();
}

}  // namespace corridor::ctl
