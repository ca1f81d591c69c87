#include "client/ctl/audit_trail.h"

#include <map>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
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
  // Older than anything the node would still look at for --after (it stops a
  // second past the range, for clock jitter between callers).
  bool BeforeRange(const v1::AccessEvent& e) const {
    return after_us_ != INT64_MIN && e.time_unix_micros() < after_us_ - 1000000;
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

// Every entry the node returned is in the ledger, is what the node showed,
// matches the query, and is returned once, below the page it continues.
absl::StatusOr<std::set<uint64_t>> ProveReturned(const v1::QueryEventsRequest& req,
                                                 const v1::QueryEventsResponse& resp,
                                                 const QueryFilter& filter,
                                                 InclusionProver& prover) {
  uint64_t below = ~uint64_t{0};
  if (!req.page_token().empty() && !absl::SimpleAtoi(req.page_token(), &below)) {
    return absl::InvalidArgumentError("--page-token is not one the node gave");
  }
  std::set<uint64_t> returned;
  for (const v1::LoggedEvent& le : resp.events()) {
    if (le.index() >= below || !returned.insert(le.index()).second) {
      return NotVerified(
          absl::StrCat("the node returned entry ", le.index(),
                       le.index() >= below ? ", which is not below the page token" : " twice"));
    }
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
  // The node's next page starts below the oldest entry of this one (AnswerPage).
  if (!resp.next_page_token().empty() &&
      (returned.empty() || resp.next_page_token() != absl::StrCat(*returned.begin()))) {
    return NotVerified("the node's page token does not continue from the entries it returned");
  }
  return returned;
}

struct Walk {
  std::set<uint64_t> visited;  // the entries reached, from the start down
  uint64_t followed = 0;       // links followed
  bool unlinked = false;       // stopped at an entry recorded before trail links existed
};

// Follows the trail from `start` down to `floor`: each entry reached that
// matches the query must be among `returned`.
absl::StatusOr<Walk> FollowTrail(const QueryFilter& filter, const std::set<uint64_t>& returned,
                                 uint64_t start, uint64_t floor, InclusionProver& prover) {
  Walk w;
  uint64_t cur = start;
  for (;;) {
    auto e = prover.Prove(cur);
    if (!e.ok()) return e.status();
    w.visited.insert(cur);
    std::optional<uint64_t> prev = filter.Previous(**e);
    if (!prev) {
      w.unlinked = !(*e)->trail_linked();
      return w;
    }
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
      return NotVerified(absl::StrCat("entry ", *prev, " (", (*p)->action(), ", ",
                                      EnumShort(v1::AccessOutcome_descriptor(), (*p)->outcome()),
                                      ") is on the ", filter.TrailName(),
                                      " trail and matches the query, but the node did not return "
                                      "it"));
    }
    if (filter.BeforeRange(**p)) {
      w.visited.insert(*prev);
      return w;
    }
    cur = *prev;
  }
}

// Where the walk starts: the page token's entry (the oldest of the page
// before, itself on the trail), else the newest entry returned.
absl::StatusOr<uint64_t> WalkStart(const v1::QueryEventsRequest& req,
                                   const std::set<uint64_t>& returned, const QueryFilter& filter,
                                   InclusionProver& prover) {
  uint64_t token = 0;
  if (req.page_token().empty() || !absl::SimpleAtoi(req.page_token(), &token)) {
    return *returned.rbegin();
  }
  auto e = prover.Prove(token);
  if (!e.ok()) return e.status();
  if (!filter.OnTrail(**e)) {
    return NotVerified(absl::StrCat("the page token names entry ", token, ", which is not on the ",
                                    filter.TrailName(), " trail"));
  }
  return token;
}

void SayComplete(const QueryFilter& filter, const Walk& w, uint64_t start, bool more,
                 std::ostream& out) {
  const uint64_t last = *w.visited.begin();
  out << "complete: the " << Printable(filter.TrailName()) << " trail followed from entry " << start
      << " back to entry " << last << " (" << w.followed
      << " links, each proved); every entry on it that matches the query was returned";
  if (more) {
    out << "; it continues on the next page\n";
  } else if (w.unlinked) {
    out << "; entry " << last
        << " was recorded before trail links existed: older entries are not checked\n";
  } else {
    out << "; entry " << last << " names no entry before it (the trail's first)\n";
  }
  out << "not provable from the links: an entry newer than entry " << start
      << ", or one hidden before any later entry on the trail was recorded (docs/audit.md)\n";
}

}  // namespace

InclusionProver::InclusionProver(const Connection& conn, const note::Checkpoint& pinned)
    : conn_(conn), stub_(v1::AuditService::NewStub(conn.channel)), pinned_(pinned) {}

InclusionProver::~InclusionProver() = default;

absl::StatusOr<const v1::AccessEvent*> InclusionProver::Prove(uint64_t index) {
  if (auto it = proven_.find(index); it != proven_.end()) return &it->second;
  v1::InclusionProofRequest req;
  req.set_index(index);
  req.set_tree_size(pinned_.size);
  v1::InclusionProofResponse resp;
  if (auto st = Call(req, &resp); !st.ok()) return st;
  auto proof = ProofHashes(resp.proof());
  if (!proof.ok()) return proof.status();
  if (resp.index() != index || resp.tree_size() != pinned_.size ||
      !merkle::VerifyInclusion(index, pinned_.size, merkle::HashLeaf(resp.entry()), *proof,
                               pinned_.root)
           .ok()) {
    return NotVerified(absl::StrCat("the inclusion proof of entry ", index,
                                    " does not verify against the checkpoint of size ",
                                    pinned_.size));
  }
  v1::AccessEvent e;
  if (!e.ParseFromString(resp.entry()))
    return NotVerified(absl::StrCat("entry ", index, " is not an access event"));
  entries_[index] = resp.entry();
  proofs_[index] = *std::move(proof);
  return &(proven_[index] = std::move(e));
}

absl::Status InclusionProver::Call(const v1::InclusionProofRequest& req,
                                   v1::InclusionProofResponse* resp) {
  absl::Duration wait = absl::Milliseconds(250);
  for (int attempt = 0;; ++attempt) {
    auto ctx = conn_.NewContext();
    grpc::Status s = stub_->GetInclusionProof(ctx.get(), req, resp);
    if (s.ok()) return absl::OkStatus();
    if (s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED || attempt >= 40) {
      return Explain(s, conn_);
    }
    absl::SleepFor(wait);
    wait = std::min(2 * wait, absl::Seconds(5));
  }
}

absl::Status VerifyTrail(const Connection& conn, const note::Checkpoint& pinned,
                         const v1::QueryEventsRequest& req, const v1::QueryEventsResponse& resp,
                         std::ostream& out) {
  auto filter = QueryFilter::Of(req);
  if (!filter.ok()) return filter.status();
  InclusionProver prover(conn, pinned);
  auto returned = ProveReturned(req, resp, *filter, prover);
  if (!returned.ok()) return returned.status();
  out << "verified: the " << returned->size()
      << " entries shown are in the ledger (inclusion proofs against the checkpoint of size "
      << pinned.size << ")\n";
  if (!filter->HasTrail()) {
    out << "completeness not checked: only a --case or --actor query follows a trail\n";
    return absl::OkStatus();
  }
  if (returned->empty() && req.page_token().empty()) {
    out << "nothing returned, nothing to follow (an empty first page cannot be checked against "
           "a trail: ask about an entry you know of)\n";
    return absl::OkStatus();
  }
  auto start = WalkStart(req, *returned, *filter, prover);
  if (!start.ok()) return start.status();
  const bool more = !resp.next_page_token().empty();
  auto walk = FollowTrail(*filter, *returned, *start, more ? *returned->begin() : 0, prover);
  if (!walk.ok()) return walk.status();
  for (uint64_t r : *returned) {
    if (walk->visited.count(r) == 0 && (r > *walk->visited.begin() || !walk->unlinked)) {
      return NotVerified(absl::StrCat("entry ", r, " was returned but the ", filter->TrailName(),
                                      " trail does not pass through it"));
    }
  }
  SayComplete(*filter, *walk, *start, more, out);
  return absl::OkStatus();
}

}  // namespace corridor::ctl
