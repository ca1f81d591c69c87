#include "server/federation/exchange.h"

#include <algorithm>
#include <cstring>
#include <iterator>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/lib/pki.h"
#include "client/lib/yaml_proto.h"
#include "ledger/base/log.h"
#include "server/common/edge.h"
#include "server/federation/envelope.h"
#include "server/federation/peers.h"
#include "server/federation/referral_policy.h"
#include "server/store/store.h"

namespace corridor {

v1::AccessEvent OutgoingEnvelopeEvent(const std::string& self_org, const std::string& action,
                                      const std::string& envelope_id, const std::string& case_id,
                                      const std::string& peer_org) {
  v1::AccessEvent ev;
  ev.set_actor_org(self_org);
  ev.set_actor_subject("node");
  ev.set_action(action);
  ev.set_resource_kind("envelope");
  ev.set_resource_id(envelope_id);
  ev.set_case_id(case_id);
  ev.set_peer_org(peer_org);
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  return ev;
}
namespace {

constexpr absl::Duration kEnvelopeLifetime = absl::Hours(24 * 7);
constexpr absl::Duration kPruneInterval = absl::Minutes(10);
// An enqueued item whose batch is still not visible this long after Enqueue
// belonged to a batch that failed; it is forgotten (a restart would find it).
constexpr absl::Duration kStagedLimit = absl::Minutes(2);
// How soon a case-update marker is tried again while its case is busy.
constexpr absl::Duration kCaseFixRetry = absl::Milliseconds(5);

// Outbox keys (docs/federation.md, "Delivery").
constexpr char kPendingPrefix[] = "pending/";
constexpr char kFailedPrefix[] = "failed/";
constexpr char kDeliveredPrefix[] = "delivered/";
constexpr char kCaseUpdatePrefix[] = "case-update/";
constexpr char kErasurePrefix[] = "erasure/";  // erasure requests sent: SentErasure
// The order ListOutbox pages through.
constexpr const char* kListedPrefixes[] = {kPendingPrefix, kFailedPrefix, kDeliveredPrefix};

std::string Hex16(uint64_t v) { return absl::StrFormat("%016x", v); }
std::string PendingKey(uint64_t seq) { return kPendingPrefix + Hex16(seq); }
std::string FailedKey(uint64_t seq) { return kFailedPrefix + Hex16(seq); }
std::string DeliveredKey(int64_t finished_ms, uint64_t seq) {
  return absl::StrCat(kDeliveredPrefix,
                      Hex16(static_cast<uint64_t>(std::max<int64_t>(finished_ms, 0))), "/",
                      Hex16(seq));
}
std::string CaseUpdateKey(const std::string& case_id, const std::string& referral_id) {
  return absl::StrCat(kCaseUpdatePrefix, case_id, "/", referral_id);
}
std::string ErasureKey(const std::string& case_id, const std::string& referral_id) {
  return absl::StrCat(kErasurePrefix, case_id, "/", referral_id);
}
// Associated data of a sealed outbox envelope: binds it to its envelope id.
std::string OutboxAad(const std::string& envelope_id) { return "outbox/" + envelope_id; }

// Outbox kinds without personal data (ids only): stored unsealed, never
// cancelled by an erasure.
constexpr char kErasureRequestKind[] = "erasure-request";
constexpr char kErasureOutcomeKind[] = "erasure-outcome";
bool CarriesPersonalData(const std::string& kind) {
  return kind != kErasureRequestKind && kind != kErasureOutcomeKind &&
         kind != kAccessAttestationKind;
}
// The receiver's rule for erasure requests (docs/federation.md, "Erasure"): a
// received case is held for proceedings, and kept, while the latest of its
// notes with outcome "legal-hold" or "legal-hold-released" is "legal-hold".
constexpr char kLegalHold[] = "legal-hold";
constexpr char kLegalHoldReleased[] = "legal-hold-released";
bool UnderLegalHold(const v1::Case& c) {
  for (auto it = c.history().rbegin(); it != c.history().rend(); ++it) {
    if (it->outcome() == kLegalHold) return true;
    if (it->outcome() == kLegalHoldReleased) return false;
  }
  return false;
}
// A peer's reason code: short, lower-case letters, digits and '-' (no free text).
bool IsReasonCode(const std::string& s) {
  if (s.size() > 64) return false;
  for (char ch : s) {
    if (!absl::ascii_islower(ch) && !absl::ascii_isdigit(ch) && ch != '-') return false;
  }
  return true;
}

// Envelopes with the same order key are delivered one at a time, in order.
std::string OrderKey(const v1::OutboxItem& item) {
  return item.referral_id().empty() ? "case/" + item.case_id() : item.referral_id();
}
bool HasPrefix(const rocksdb::Slice& key, absl::string_view prefix) {
  return absl::StartsWith(absl::string_view(key.data(), key.size()), prefix);
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

// Received envelopes (family envelopes_in) are keyed by sender and id: an id is
// unique only among one sender's envelopes. Records written before were keyed
// by the id alone (identifiers have no '/', so the two never collide); they are
// still read, for their own sender only.
std::string ReceivedKey(const std::string& sender, const std::string& id) {
  return absl::StrCat("from/", sender, "/", id);
}

// The referral index (family referrals) is keyed by "<referral id>/<peer org>":
// the id with the org at the other end of the referral. Identifiers have no
// '/', so "<referral id>/" prefixes exactly the entries of that id. Entries
// written before were keyed by the bare referral id (which never collides
// with the new form); they are still read, for the org their case names only.
std::string ReferralKey(const std::string& peer_org, const std::string& referral_id) {
  return absl::StrCat(referral_id, "/", peer_org);
}

// Whether `c` has a link of `referral_id` whose other end is `peer_org`.
bool LinkedWith(const v1::Case& c, const std::string& peer_org, const std::string& referral_id) {
  for (const auto& l : c.referrals()) {
    if (l.referral_id() == referral_id && l.peer_org() == peer_org) return true;
  }
  return false;
}

// Every identifier a peer sends: the envelope id and the ids in its body.
absl::Status ValidatePeerIdentifiers(const v1::EnvelopePayload& p) {
  if (auto st = ValidateIdentifier("envelope_id", p.envelope_id()); !st.ok()) return st;
  if (p.has_referral()) {
    const v1::Referral& r = p.referral();
    if (auto st = ValidateIdentifier("referral.referral_id", r.referral_id()); !st.ok()) return st;
    if (auto st = ValidateOptionalIdentifier("referral.origin_case_id", r.origin_case_id());
        !st.ok()) {
      return st;
    }
    for (int i = 0; i < r.shared().evidence_size(); ++i) {
      if (auto st = ValidateIdentifier(absl::StrCat("referral.shared.evidence[", i, "].id"),
                                       r.shared().evidence(i).id());
          !st.ok()) {
        return st;
      }
    }
  } else if (p.has_decision()) {
    if (auto st = ValidateIdentifier("decision.referral_id", p.decision().referral_id());
        !st.ok()) {
      return st;
    }
    if (auto st =
            ValidateOptionalIdentifier("decision.linked_case_id", p.decision().linked_case_id());
        !st.ok()) {
      return st;
    }
    return CheckTextLength("decision.reason", p.decision().reason(), kMaxNoteBytes);
  } else if (p.has_update()) {
    if (auto st = ValidateIdentifier("update.referral_id", p.update().referral_id()); !st.ok()) {
      return st;
    }
    return ValidateUpdateText(p.update().outcome(), p.update().note());
  } else if (p.has_permission()) {
    return ValidateIdentifier("permission.referral_id", p.permission().referral_id());
  } else if (p.has_erasure_request()) {
    const v1::ErasureRequest& r = p.erasure_request();
    if (auto st = ValidateIdentifier("erasure_request.referral_id", r.referral_id()); !st.ok()) {
      return st;
    }
    return ValidateOptionalIdentifier("erasure_request.origin_case_id", r.origin_case_id());
  } else if (p.has_erasure_outcome()) {
    const v1::ErasureOutcome& o = p.erasure_outcome();
    for (const auto& [what, id] :
         {std::pair<const char*, const std::string*>{"erasure_outcome.referral_id",
                                                     &o.referral_id()},
          {"erasure_outcome.request_envelope_id", &o.request_envelope_id()}}) {
      if (auto st = ValidateIdentifier(what, *id); !st.ok()) return st;
    }
    if (auto st =
            ValidateOptionalIdentifier("erasure_outcome.receiver_case_id", o.receiver_case_id());
        !st.ok()) {
      return st;
    }
    return ValidateOptionalIdentifier("erasure_outcome.reason", o.reason());  // a rule's code
  }
  return absl::OkStatus();
}

std::string NewId(const char* prefix) {
  return absl::StrCat(prefix, absl::AsciiStrToUpper(HexEncode(RandomBytes(8))));
}

// Errors from a receiver that will not change by retrying.
bool Permanent(grpc::StatusCode code) {
  return code == grpc::StatusCode::PERMISSION_DENIED ||
         code == grpc::StatusCode::INVALID_ARGUMENT || code == grpc::StatusCode::ALREADY_EXISTS ||
         code == grpc::StatusCode::FAILED_PRECONDITION || code == grpc::StatusCode::UNAUTHENTICATED;
}

// Sets the sender's link of `referral_id` from QUEUED to `to`; false if there
// was nothing to change.
bool MarkLink(v1::Case& c, const std::string& referral_id, v1::ReferralState to) {
  bool changed = false;
  for (auto& link : *c.mutable_referrals()) {
    if (link.outgoing() && link.referral_id() == referral_id &&
        link.state() == v1::REFERRAL_STATE_QUEUED) {
      link.set_state(to);
      changed = true;
    }
  }
  return changed;
}

}  // namespace

// One Deliver call in flight.
struct Exchange::Call {
  std::string org;
  uint64_t seq = 0;
  v1::OutboxItem item;    // as stored (sealed)
  v1::Envelope envelope;  // opened, in memory only
  grpc::ClientContext ctx;
  v1::Receipt receipt;
};

Exchange::Exchange(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
                   const Signer* signing_key, rocksdb::DB* db,
                   const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families,
                   CaseStore* cases, AccessLog* log, TlsIdentity tls, ExchangeOptions options)
    : config_(config),
      options_(std::move(options)),
      identity_(std::move(identity)),
      signer_{std::shared_ptr<const Signer>(signing_key, [](const Signer*) {}),
              config.signing_key().key_id()},
      db_(db),
      families_(families),
      outbox_(families.at(kOutboxFamily)),
      received_(families.at(kReceivedFamily)),
      referrals_(families.at(kReferralIndexFamily)),
      cases_(cases),
      log_(log),
      tls_(std::move(tls)),
      jitter_(options_.jitter_seed) {
  const ExchangeOptions defaults;
  if (options_.max_in_flight_per_peer <= 0)
    options_.max_in_flight_per_peer = defaults.max_in_flight_per_peer;
  if (options_.base_backoff <= absl::ZeroDuration()) options_.base_backoff = defaults.base_backoff;
  if (options_.max_backoff <= absl::ZeroDuration()) options_.max_backoff = defaults.max_backoff;
  if (options_.delivered_retention <= absl::ZeroDuration())
    options_.delivered_retention = defaults.delivered_retention;
  if (options_.clock == nullptr) options_.clock = &Clock::Real();
}

Exchange::~Exchange() { Stop(); }

Exchange::ActiveKey Exchange::signer() const {
  absl::MutexLock lock(&signer_mu_);
  return signer_;
}

void Exchange::RotateSigningKey(std::shared_ptr<const Signer> key, std::string key_id) {
  absl::MutexLock lock(&signer_mu_);
  signer_ = ActiveKey{std::move(key), std::move(key_id)};
}

void Exchange::Start() {
  LoadOutbox();
  if (auto st = PruneDelivered(); !st.ok()) {
    log::Warn("outbox.prune_failed", {{"error", st.message()}});
  }
  absl::MutexLock lock(&mu_);
  if (started_ || stopping_) return;
  started_ = true;
  thread_ = std::thread([this] { Run(); });
}

void Exchange::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  // Not under mu_: a cancelled call's completion may run inside TryCancel.
  std::vector<std::shared_ptr<Call>> calls;
  {
    absl::MutexLock lock(&mu_);
    calls.assign(calls_.begin(), calls_.end());
  }
  for (const auto& call : calls) call->ctx.TryCancel();
  calls.clear();
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return outstanding_ == 0; };
  mu_.Await(absl::Condition(&idle));
}

void Exchange::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

void Exchange::DeliverDueNow() {
  absl::MutexLock lock(&mu_);
  if (!started_ || stopping_) return;
  // A pass under way may have read the clock before this call: wait for the next.
  const uint64_t target = passes_ + (idle_ ? 1 : 2);
  woken_ = true;
  auto done = [this, target]()
                  ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || passes_ >= target; };
  mu_.Await(absl::Condition(&done));
}

int Exchange::Outstanding() const {
  absl::MutexLock lock(&mu_);
  return outstanding_;
}

void Exchange::PeerReachable(const std::string& org) {
  std::shared_ptr<grpc::Channel> channel;
  {
    absl::MutexLock lock(&mu_);
    auto peer = peers_.find(org);
    if (peer != peers_.end()) channel = peer->second.channel;
  }
  if (channel != nullptr) grpc::experimental::ChannelResetConnectionBackoff(channel.get());
  absl::MutexLock lock(&mu_);
  auto lane = lanes_.find(org);
  if (lane == lanes_.end()) return;
  ResetLaneLocked(lane->second, Now());
  woken_ = true;
}

void Exchange::ResetLaneLocked(Lane& lane, absl::Time now) {
  std::set<std::pair<absl::Time, uint64_t>> ready;
  for (const auto& [due, seq] : lane.ready) {
    lane.items[seq].due = std::min(due, now);
    ready.insert({lane.items[seq].due, seq});
  }
  lane.ready.swap(ready);
  for (auto& [seq, p] : lane.items) {
    p.failures = 0;
    p.reset_while_out = p.in_flight;
  }
  lane.failing = false;
}

v1::EnvelopePayload Exchange::NewPayload(const std::string& to, const std::string& agreement,
                                         const std::string& purpose) const {
  const absl::Time now = Now();
  v1::EnvelopePayload p;
  p.set_envelope_id(NewId("ENV-"));
  p.set_sender_org(config_.org());
  p.set_recipient_org(to);
  p.set_created_unix(absl::ToUnixSeconds(now));
  p.set_expires_unix(absl::ToUnixSeconds(now + kEnvelopeLifetime));
  p.set_key_id(config_.signing_key().key_id());
  p.set_agreement(agreement);
  p.set_purpose(purpose);
  return p;
}

uint64_t Exchange::NextSeq() {
  const uint64_t now = static_cast<uint64_t>(std::max<int64_t>(absl::ToUnixMicros(Now()), 0));
  uint64_t last = last_seq_.load();
  while (true) {
    const uint64_t next = std::max(last + 1, now);
    if (last_seq_.compare_exchange_weak(last, next)) return next;
  }
}

absl::StatusOr<v1::OutboxItem> Exchange::Enqueue(ledger::Mutation* batch,
                                                 const v1::EnvelopePayload& payload,
                                                 const std::string& kind,
                                                 const std::string& case_id,
                                                 const std::string& referral_id) {
  v1::OutboxItem item;
  const ActiveKey s = signer();
  v1::EnvelopePayload signed_payload = payload;
  signed_payload.set_key_id(s.key_id);
  auto envelope = SignEnvelope(signed_payload, *s.key);
  if (!envelope.ok()) {
    return absl::UnavailableError(
        absl::StrCat("the node could not sign the envelope: ", envelope.status().message()));
  }
  *item.mutable_envelope() = *std::move(envelope);
  item.set_envelope_id(payload.envelope_id());
  item.set_recipient_org(payload.recipient_org());
  item.set_kind(kind);
  item.set_state("pending");
  item.set_expires_unix(payload.expires_unix());
  item.set_created_unix(payload.created_unix());
  item.set_case_id(case_id);
  item.set_referral_id(referral_id);
  item.set_seq(NextSeq());
  const std::string key = PendingKey(item.seq());
  v1::OutboxItem stored = item;
  if (CarriesPersonalData(kind)) {
    auto sealed = cases_->SealForCase(case_id, OutboxAad(item.envelope_id()),
                                      item.envelope().SerializeAsString());
    if (!sealed.ok()) return sealed.status();
    stored.clear_envelope();
    stored.set_sealed_envelope(*std::move(sealed));
  }
  batch->Put(kOutboxFamily, key, stored.SerializeAsString());
  v1::OutboxItem meta = item;
  meta.clear_envelope();
  absl::MutexLock lock(&mu_);
  staged_[key] = {std::move(meta), Now()};
  return item;
}

void Exchange::IndexReferral(ledger::Mutation* batch, const std::string& peer_org,
                             const std::string& referral_id, const std::string& case_id) const {
  batch->Put(kReferralIndexFamily, ReferralKey(peer_org, referral_id), case_id);
}

absl::StatusOr<std::string> Exchange::CaseForReferral(const std::string& peer_org,
                                                      const std::string& referral_id) const {
  const absl::Status none = absl::NotFoundError(
      absl::StrCat("there is no referral ", referral_id, " exchanged with ", peer_org));
  std::string case_id;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), referrals_, ReferralKey(peer_org, referral_id), &case_id);
  if (s.ok()) return case_id;
  if (!s.IsNotFound()) return FromRocksStatus(s, "reading the referral index");
  // An entry of an earlier version, keyed by the bare id: it counts only for
  // the org at the other end of its case's link (the case says which).
  s = db_->Get(rocksdb::ReadOptions(), referrals_, referral_id, &case_id);
  if (s.IsNotFound()) return none;
  if (!s.ok()) return FromRocksStatus(s, "reading the referral index");
  auto c = cases_->Get(case_id);
  if (absl::IsNotFound(c.status()) || absl::IsFailedPrecondition(c.status())) return none;
  if (!c.ok()) return c.status();  // not known either way: not "none"
  if (!LinkedWith(*c, peer_org, referral_id)) return none;
  return case_id;
}

absl::StatusOr<std::vector<std::string>> Exchange::CasesWithReferralId(
    const std::string& referral_id) const {
  std::vector<std::string> found;
  std::string legacy;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), referrals_, referral_id, &legacy);
  if (s.ok()) found.push_back(legacy);
  if (!s.ok() && !s.IsNotFound()) return FromRocksStatus(s, "reading the referral index");
  const std::string prefix = referral_id + "/";
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), referrals_));
  for (it->Seek(prefix); it->Valid() && HasPrefix(it->key(), prefix); it->Next()) {
    std::string case_id = it->value().ToString();
    if (std::find(found.begin(), found.end(), case_id) == found.end()) {
      found.push_back(std::move(case_id));
    }
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "reading the referral index");
  return found;
}

absl::StatusOr<Exchange::OutboxPage> Exchange::ListOutbox(size_t page_size,
                                                          const std::string& page_token) const {
  if (page_size == 0) page_size = kDefaultPageSize;
  page_size = std::min(page_size, kMaxPageSize);
  size_t first = 0;
  if (!page_token.empty()) {
    first = std::size(kListedPrefixes);
    for (size_t i = 0; i < std::size(kListedPrefixes); ++i) {
      if (absl::StartsWith(page_token, kListedPrefixes[i])) first = i;
    }
    if (first == std::size(kListedPrefixes)) {
      return absl::InvalidArgumentError(
          "page_token is not one this node issued; pass next_page_token from the previous page");
    }
  }
  OutboxPage page;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), outbox_));
  for (size_t i = first; i < std::size(kListedPrefixes); ++i) {
    const char* prefix = kListedPrefixes[i];
    for (it->Seek(i == first && !page_token.empty() ? page_token : prefix);
         it->Valid() && HasPrefix(it->key(), prefix); it->Next()) {
      if (page.items.size() == page_size) {
        page.next_page_token = it->key().ToString();
        return page;
      }
      v1::OutboxItem item;
      if (item.ParseFromString(it->value().ToString())) page.items.push_back(std::move(item));
    }
    if (!it->status().ok()) return FromRocksStatus(it->status(), "reading the outbox");
  }
  return page;
}

absl::Status Exchange::PruneDelivered() {
  const int64_t cutoff_ms = absl::ToUnixMillis(Now() - options_.delivered_retention);
  rocksdb::WriteOptions wo;
  rocksdb::Status s = db_->DeleteRange(wo, outbox_, kDeliveredPrefix, DeliveredKey(cutoff_ms, 0));
  if (!s.ok()) return FromRocksStatus(s, "pruning delivered outbox items");
  return absl::OkStatus();
}

// ---- sending -------------------------------------------------------------------

void Exchange::ContinueSequence(rocksdb::Iterator* it) {
  // The sequence continues after the newest item of any state.
  uint64_t last = 0;
  for (const char* prefix : kListedPrefixes) {
    it->SeekForPrev(absl::StrCat(prefix, "\xff"));
    if (it->Valid() && HasPrefix(it->key(), prefix)) {
      v1::OutboxItem item;
      if (item.ParseFromString(it->value().ToString())) last = std::max(last, item.seq());
    }
  }
  uint64_t expected = last_seq_.load();
  while (expected < last && !last_seq_.compare_exchange_weak(expected, last)) {
  }
}

void Exchange::MigrateLegacyOutbox(rocksdb::Iterator* it) {
  // An outbox written by an earlier version: items keyed by envelope id.
  std::vector<std::pair<std::string, v1::OutboxItem>> legacy;
  for (it->Seek("ENV-"); it->Valid() && HasPrefix(it->key(), "ENV-"); it->Next()) {
    v1::OutboxItem item;
    if (item.ParseFromString(it->value().ToString()))
      legacy.push_back({it->key().ToString(), std::move(item)});
  }
  if (legacy.empty()) return;
  std::stable_sort(legacy.begin(), legacy.end(), [](const auto& a, const auto& b) {
    return a.second.created_unix() < b.second.created_unix();
  });
  rocksdb::WriteBatch batch;
  const int64_t now_ms = absl::ToUnixMillis(Now());
  for (auto& [old_key, item] : legacy) {
    item.set_seq(NextSeq());
    batch.Delete(outbox_, old_key);
    if (item.state() == "pending") {
      batch.Put(outbox_, PendingKey(item.seq()), item.SerializeAsString());
      continue;
    }
    item.clear_envelope();
    item.set_finished_unix_ms(now_ms);
    batch.Put(outbox_,
              item.state() == "failed" ? FailedKey(item.seq()) : DeliveredKey(now_ms, item.seq()),
              item.SerializeAsString());
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (rocksdb::Status s = db_->Write(wo, &batch); !s.ok()) {
    log::Error("outbox.migration_failed", {{"error", s.ToString()}});
  } else {
    log::Info("outbox.migrated", {{"items", legacy.size()}});
  }
}

void Exchange::SealIfPlaintext(const std::string& key, const v1::OutboxItem& item) {
  if (!item.has_envelope() || !CarriesPersonalData(item.kind())) return;
  // Written by an earlier version in plaintext: sealed now (an erased
  // case's item stays as it is and is cancelled when it comes up).
  auto sealed = cases_->SealForCase(item.case_id(), OutboxAad(item.envelope_id()),
                                    item.envelope().SerializeAsString());
  if (!sealed.ok()) return;
  v1::OutboxItem stored = item;
  stored.clear_envelope();
  stored.set_sealed_envelope(*std::move(sealed));
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (!db_->Put(wo, outbox_, key, stored.SerializeAsString()).ok()) {
    log::Error("outbox.seal_failed", {{"envelope", item.envelope_id()}});
  }
}

void Exchange::LoadCaseFixesLocked(rocksdb::Iterator* it) {
  for (it->Seek(kCaseUpdatePrefix); it->Valid() && HasPrefix(it->key(), kCaseUpdatePrefix);
       it->Next()) {
    std::vector<std::string> parts =
        absl::StrSplit(it->key().ToString().substr(strlen(kCaseUpdatePrefix)), '/');
    if (parts.size() != 2) continue;
    int state = v1::REFERRAL_STATE_DELIVERED;
    (void)absl::SimpleAtoi(it->value().ToString(), &state);
    case_fixes_.push_back(CaseFix{parts[0], parts[1], static_cast<v1::ReferralState>(state)});
  }
}

void Exchange::LoadOutbox() {
  rocksdb::ReadOptions ro;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, outbox_));
  ContinueSequence(it.get());
  MigrateLegacyOutbox(it.get());
  absl::MutexLock lock(&mu_);
  const absl::Time now = Now();
  size_t pending = 0;
  for (it->Seek(kPendingPrefix); it->Valid() && HasPrefix(it->key(), kPendingPrefix); it->Next()) {
    v1::OutboxItem item;
    if (!item.ParseFromString(it->value().ToString())) {
      log::Error("outbox.unreadable_item", {{"key", it->key().ToString()}});
      continue;
    }
    SealIfPlaintext(it->key().ToString(), item);
    AddPendingLocked(item, now);
    ++pending;
  }
  LoadCaseFixesLocked(it.get());
  if (!it->status().ok()) {
    log::Error("outbox.unreadable", {{"error", it->status().ToString()}});
  }
  log::Info("outbox.loaded", {{"pending", pending}, {"case_updates", case_fixes_.size()}});
}

void Exchange::AddPendingLocked(const v1::OutboxItem& item, absl::Time due) {
  Lane& lane = lanes_[item.recipient_org()];
  if (lane.items.count(item.seq()) != 0) return;
  Pending p;
  p.key = PendingKey(item.seq());
  p.order_key = OrderKey(item);
  p.case_id = item.case_id();
  p.kind = item.kind();
  p.referral_id = item.referral_id();
  p.due = due;
  p.created_unix = item.created_unix();
  lane.items[item.seq()] = p;
  std::deque<uint64_t>& queue = lane.by_order[p.order_key];
  queue.insert(std::upper_bound(queue.begin(), queue.end(), item.seq()), item.seq());
  if (queue.front() != item.seq()) return;
  // It is the oldest of its order key now: it goes first.
  if (queue.size() > 1) {
    const Pending& displaced = lane.items[queue[1]];
    if (displaced.in_flight) return;  // the displaced one is being sent; this waits for it
    lane.ready.erase({displaced.due, queue[1]});
  }
  lane.ready.insert({due, item.seq()});
}

void Exchange::PromoteStaged() {
  std::vector<std::string> keys;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [key, staged] : staged_) keys.push_back(key);
  }
  if (keys.empty()) return;
  std::vector<bool> visible(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    std::string value;
    visible[i] = db_->Get(rocksdb::ReadOptions(), outbox_, keys[i], &value).ok();
  }
  absl::MutexLock lock(&mu_);
  const absl::Time now = Now();
  for (size_t i = 0; i < keys.size(); ++i) {
    auto it = staged_.find(keys[i]);
    if (it == staged_.end()) continue;
    if (visible[i]) {
      AddPendingLocked(it->second.first, now);
      staged_.erase(it);
    } else if (now - it->second.second > kStagedLimit) {
      staged_.erase(it);
    }
  }
}

std::vector<Exchange::LaneStats> Exchange::OutboxStats() const {
  absl::MutexLock lock(&mu_);
  std::vector<LaneStats> out;
  for (const auto& [org, lane] : lanes_) {
    if (lane.items.empty()) continue;
    LaneStats stats{org, lane.items.size(), 0};
    for (const auto& [seq, item] : lane.items) {
      if (stats.oldest_created_unix == 0 || item.created_unix < stats.oldest_created_unix) {
        stats.oldest_created_unix = item.created_unix;
      }
    }
    out.push_back(std::move(stats));
  }
  return out;
}

absl::Duration Exchange::Backoff(uint32_t failures) {
  const absl::Duration backoff = std::min(
      options_.base_backoff * (1 << std::min<uint32_t>(failures, 10)), options_.max_backoff);
  return backoff * jitter_.Uniform(0.5, 1.5);
}

void Exchange::Run() {
  absl::Time next_prune = Now() + kPruneInterval;
  while (true) {
    PromoteStaged();
    std::vector<std::pair<std::string, uint64_t>> to_start;
    std::deque<CaseFix> fixes;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      const absl::Time now = Now();
      for (auto& [org, lane] : lanes_) {
        while (lane.in_flight < options_.max_in_flight_per_peer && !lane.ready.empty() &&
               lane.ready.begin()->first <= now) {
          const uint64_t seq = lane.ready.begin()->second;
          lane.ready.erase(lane.ready.begin());
          lane.items[seq].in_flight = true;
          lane.items[seq].reset_while_out = false;
          ++lane.in_flight;
          ++outstanding_;
          to_start.push_back({org, seq});
        }
      }
      fixes.swap(case_fixes_);
    }
    for (const auto& [org, seq] : to_start) StartCall(org, seq);
    DestroyOwedKeys();
    // One write per case for all of its owed link changes.
    std::map<std::string, std::vector<CaseFix>> by_case;
    for (CaseFix& fix : fixes) by_case[fix.case_id].push_back(std::move(fix));
    std::deque<CaseFix> busy;
    for (auto& [case_id, owed] : by_case) {
      if (!ApplyCaseFixes(case_id, owed)) busy.insert(busy.end(), owed.begin(), owed.end());
    }
    if (Now() >= next_prune) {
      if (auto st = PruneDelivered(); !st.ok()) {
        log::Warn("outbox.prune_failed", {{"error", st.message()}});
      }
      next_prune = Now() + kPruneInterval;
    }
    absl::MutexLock lock(&mu_);
    ++passes_;
    for (CaseFix& fix : busy) case_fixes_.push_back(std::move(fix));
    // Sleep until the next item is due (the clock may be a test's: never long).
    absl::Duration wait = absl::Seconds(1);
    const absl::Time now = Now();
    for (const auto& [org, lane] : lanes_) {
      if (lane.in_flight < options_.max_in_flight_per_peer && !lane.ready.empty()) {
        wait = std::min(wait, lane.ready.begin()->first - now);
      }
    }
    if (!case_fixes_.empty()) wait = std::min(wait, kCaseFixRetry);
    if (!staged_.empty() || !shreds_owed_.empty()) wait = std::min(wait, absl::Milliseconds(100));
    auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || woken_; };
    idle_ = true;
    if (wait > absl::ZeroDuration()) mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
    idle_ = false;
    woken_ = false;
  }
}

void Exchange::RosterChanged() {
  const std::shared_ptr<const v1::Roster> now = roster();
  absl::MutexLock lock(&mu_);
  for (auto it = peers_.begin(); it != peers_.end();) {
    bool same = false;
    for (const v1::Member& m : now->members()) {
      same = same || (m.org() == it->first && m.endpoint() == it->second.endpoint &&
                      pki::SameCertificate(m.ca_cert_pem(), it->second.ca_cert_pem));
    }
    it = same ? std::next(it) : peers_.erase(it);
  }
  // Items held for a member that just joined, or moved, are due now.
  for (auto& [org, lane] : lanes_) ResetLaneLocked(lane, Now());
  woken_ = true;
}

std::shared_ptr<v1::PeerService::Stub> Exchange::StubFor(const std::string& org) {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(org);
  if (it != peers_.end()) return it->second.stub;
  // Held for the loop (a temporary's members would be freed by a roster change).
  const std::shared_ptr<const v1::Roster> in_force = roster();
  for (const auto& m : in_force->members()) {
    if (m.org() != org) continue;
    TlsIdentity id = tls_;
    id.roots_pem = m.ca_cert_pem();
    PeerChannel& peer = peers_[org];
    peer.endpoint = m.endpoint();
    peer.ca_cert_pem = m.ca_cert_pem();
    peer.channel = MakeMutualTlsChannel(id, m.endpoint(), "", config_.limits().max_message_bytes());
    peer.stub = v1::PeerService::NewStub(peer.channel);
    return peer.stub;
  }
  return nullptr;
}

bool Exchange::WaitForErasure(const v1::OutboxItem& item) {
  if (!CarriesPersonalData(item.kind())) return false;
  bool wait = false;
  {
    absl::MutexLock lock(&mu_);
    auto e = erasing_.find(item.case_id());
    if (e != erasing_.end() && Now() - e->second > kStagedLimit) {
      erasing_.erase(e);  // the erasure's write failed: the case stays
    } else if (e != erasing_.end()) {
      wait = true;
    }
  }
  return wait && !cases_->IsErased(item.case_id());
}

absl::Status Exchange::OpenEnvelope(Call* call) {
  if (!call->item.sealed_envelope().empty()) {
    auto plain = cases_->OpenForCase(call->item.case_id(), OutboxAad(call->item.envelope_id()),
                                     call->item.sealed_envelope());
    if (!plain.ok()) return plain.status();
    if (!call->envelope.ParseFromString(*plain)) {
      return absl::DataLossError("a sealed outbox envelope does not parse");
    }
    return absl::OkStatus();
  }
  call->envelope = call->item.envelope();
  call->item.clear_envelope();
  if (CarriesPersonalData(call->item.kind()) && cases_->IsErased(call->item.case_id())) {
    return absl::FailedPreconditionError("case erased");
  }
  return absl::OkStatus();
}

void Exchange::LeaveLane(const std::string& org) {
  absl::MutexLock lock(&mu_);
  --lanes_[org].in_flight;
}

void Exchange::NotSent(const std::string& org, uint64_t seq, const rocksdb::Status& read,
                       bool readable, bool expired, v1::OutboxItem item) {
  if (read.IsNotFound()) {  // gone (only if the store was changed underneath)
    FinishItem(org, seq);
  } else if (!readable) {
    log::Error("outbox.unreadable_item", {{"seq", seq}, {"error", read.ToString()}});
    RetryItem(org, seq, std::nullopt, "", options_.max_backoff);
  } else if (expired) {
    const std::string error = absl::StrCat("expired before delivery: ", item.last_error());
    Fail(org, seq, std::move(item), error);
  } else {
    Fail(org, seq, std::move(item),
         absl::StrCat("org \"", org, "\" is not in the roster in force (version ",
                      roster()->version(), "): the envelope is not sent"));
  }
}

void Exchange::StartCall(const std::string& org, uint64_t seq) {
  auto call = std::make_shared<Call>();
  call->org = org;
  call->seq = seq;
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), outbox_, PendingKey(seq), &value);
  std::shared_ptr<v1::PeerService::Stub> stub = StubFor(org);
  bool readable = s.ok() && call->item.ParseFromString(value);
  // Its case's erasure is being committed: wait for it, then cancel.
  if (readable && WaitForErasure(call->item)) {
    LeaveLane(org);
    RetryItem(org, seq, std::nullopt, "", kCaseFixRetry);
    return DoneOutstanding();
  }
  // Personal data is opened here, in memory only; a case erased meanwhile has
  // nothing left to send.
  if (readable) {
    const absl::Status open = OpenEnvelope(call.get());
    if (absl::IsFailedPrecondition(open) || absl::IsNotFound(open)) {
      LeaveLane(org);
      CancelItem(org, seq, std::move(call->item));
      return DoneOutstanding();
    }
    readable = open.ok();
  }
  const bool expired = readable && Now() > absl::FromUnixSeconds(call->item.expires_unix());
  if (!readable || expired || stub == nullptr) {
    LeaveLane(org);
    NotSent(org, seq, s, readable, expired, std::move(call->item));
    return DoneOutstanding();
  }
  // Wait for the connection (within the deadline) instead of failing at once
  // while the channel is between reconnect attempts: a peer that is back is
  // reached by the calls already waiting for it. The deadline is gRPC's,
  // in real time.
  call->ctx.set_wait_for_ready(true);
  call->ctx.set_deadline(absl::ToChronoTime(
      absl::Now() + absl::Seconds(config_.limits().peer_call_timeout_seconds())));
  {
    absl::MutexLock lock(&mu_);
    calls_.insert(call);
  }
  // Called without locks held: the completion may run inside this call.
  Call* raw = call.get();
  stub->async()->Deliver(
      &raw->ctx, &raw->envelope, &raw->receipt,
      [this, call](grpc::Status status) { OnCallDone(call, std::move(status)); });
}

void Exchange::OnCallDone(std::shared_ptr<Call> call, grpc::Status status) {
  const std::string org = call->org;
  {
    absl::MutexLock lock(&mu_);
    calls_.erase(call);
    --lanes_[org].in_flight;
  }
  v1::OutboxItem item = std::move(call->item);
  item.set_attempts(item.attempts() + 1);
  if (!status.ok()) {
    std::shared_ptr<grpc::Channel> channel;
    {
      absl::MutexLock lock(&mu_);
      if (auto peer = peers_.find(org); peer != peers_.end()) channel = peer->second.channel;
    }
    const std::string error = DescribePeerCallError(status, channel.get());
    if (Permanent(status.error_code())) {
      Fail(org, call->seq, std::move(item), error);
    } else {
      uint32_t failures = 1;
      {
        absl::MutexLock lock(&mu_);
        Lane& lane = lanes_[org];
        lane.failing = true;
        failures = ++lane.items[call->seq].failures;
      }
      RetryItem(org, call->seq, std::move(item), error, Backoff(failures));
    }
    return DoneOutstanding();
  }
  auto body = VerifyReceipt(call->receipt, call->envelope, org, *roster());
  if (!body.ok()) {
    RetryItem(org, call->seq, std::move(item),
              absl::StrCat("bad receipt: ", body.status().message()), options_.max_backoff);
    return DoneOutstanding();
  }
  {
    // The peer answers: whatever waits for it is due now.
    absl::MutexLock lock(&mu_);
    Lane& lane = lanes_[org];
    if (lane.failing) ResetLaneLocked(lane, Now());
    woken_ = true;
  }
  *item.mutable_envelope() = call->envelope;  // for its digest; never stored again
  RecordReceipt(org, call->seq, std::move(item), call->receipt, body->ledger_index());
}

void Exchange::RecordReceipt(const std::string& org, uint64_t seq, v1::OutboxItem item,
                             const v1::Receipt& receipt, uint64_t receiver_index) {
  v1::OutboxItem done = item;
  done.clear_envelope();
  done.clear_sealed_envelope();
  done.set_state("delivered");
  done.set_last_error("");
  *done.mutable_receipt() = receipt;
  done.set_receipt_ledger_index(receiver_index);
  done.set_finished_unix_ms(absl::ToUnixMillis(Now()));
  auto batch = std::make_unique<ledger::Mutation>();
  batch->Delete(kOutboxFamily, PendingKey(seq));
  batch->Put(kOutboxFamily, DeliveredKey(done.finished_unix_ms(), seq), done.SerializeAsString());
  // The referral is to show as delivered on the sending case: a marker in this
  // batch, applied under the case lock right after (never holding the case's
  // lock across this commit, which would turn the case's users away).
  const bool marker = item.kind() == "referral";
  if (marker) {
    batch->Put(kOutboxFamily, CaseUpdateKey(item.case_id(), item.referral_id()),
               absl::StrCat(static_cast<int>(v1::REFERRAL_STATE_DELIVERED)));
  }
  v1::AccessEvent ev = OutgoingEnvelopeEvent(config_.org(), "envelope.receipt", item.envelope_id(),
                                             item.case_id(), item.recipient_org());
  ev.set_payload_sha256(EnvelopeDigest(item.envelope()));
  ev.set_peer_receipt(CanonicalReceipt(receipt).SerializeAsString());
  ev.set_reason(absl::StrCat("receipt: ", item.recipient_org(), " ledger index ", receiver_index));
  log_->Record(
      {ev}, std::move(batch),
      [this, org, seq, item = std::move(item), marker](absl::StatusOr<uint64_t> index) mutable {
        if (!index.ok()) {
          // Still pending on disk: the next attempt gets the same receipt back.
          log::Error("outbox.receipt_unrecorded",
                     {{"envelope", item.envelope_id()}, {"error", index.status().message()}});
          if (!item.sealed_envelope().empty()) item.clear_envelope();
          RetryItem(org, seq, std::move(item), "the receipt could not be recorded",
                    options_.base_backoff);
          return DoneOutstanding();
        }
        log::Debug("outbox.delivered", {{"envelope", item.envelope_id()},
                                        {"to", item.recipient_org()},
                                        {"attempts", item.attempts()}});
        if (marker) {
          absl::MutexLock lock(&mu_);
          case_fixes_.push_back(
              CaseFix{item.case_id(), item.referral_id(), v1::REFERRAL_STATE_DELIVERED});
        }
        FinishItem(org, seq);
        DoneOutstanding();
      });
}

void Exchange::Fail(const std::string& org, uint64_t seq, v1::OutboxItem item,
                    const std::string& error) {
  log::Warn("outbox.failed",
            {{"envelope", item.envelope_id()}, {"to", item.recipient_org()}, {"error", error}});
  item.clear_envelope();
  item.clear_sealed_envelope();
  item.set_state("failed");
  item.set_last_error(error);
  item.set_finished_unix_ms(absl::ToUnixMillis(Now()));
  rocksdb::WriteBatch batch;
  batch.Delete(outbox_, PendingKey(seq));
  batch.Put(outbox_, FailedKey(seq), item.SerializeAsString());
  const bool referral = item.kind() == "referral";
  if (referral) {
    batch.Put(outbox_, CaseUpdateKey(item.case_id(), item.referral_id()),
              absl::StrCat(static_cast<int>(v1::REFERRAL_STATE_FAILED)));
  }
  rocksdb::WriteOptions wo;
  wo.sync = true;
  if (rocksdb::Status s = db_->Write(wo, &batch); !s.ok()) {
    // Still pending on disk: it fails again after a restart.
    log::Error("outbox.unwritable", {{"envelope", item.envelope_id()}, {"error", s.ToString()}});
  } else if (referral) {
    absl::MutexLock lock(&mu_);
    case_fixes_.push_back(CaseFix{item.case_id(), item.referral_id(), v1::REFERRAL_STATE_FAILED});
  }
  FinishItem(org, seq);
}

void Exchange::RetryItem(const std::string& org, uint64_t seq, std::optional<v1::OutboxItem> item,
                         const std::string& error, absl::Duration delay) {
  const absl::Time due = Now() + delay;
  if (item.has_value()) {
    // Never the opened envelope of a sealed item.
    if (!item->sealed_envelope().empty()) item->clear_envelope();
    // Shown by `corridorctl outbox`; not synced: after a crash it is simply due at once.
    item->set_last_error(error);
    item->set_next_attempt_unix_ms(absl::ToUnixMillis(due));
    (void)db_->Put(rocksdb::WriteOptions(), outbox_, PendingKey(seq), item->SerializeAsString());
  }
  absl::MutexLock lock(&mu_);
  Lane& lane = lanes_[org];
  auto it = lane.items.find(seq);
  if (it == lane.items.end()) return;
  Pending& p = it->second;
  p.in_flight = false;
  // The peer answered again while this attempt was out: no backoff.
  p.due = p.reset_while_out ? std::min(due, Now()) : due;
  p.reset_while_out = false;
  const auto& queue = lane.by_order[p.order_key];
  if (!queue.empty() && queue.front() == seq) lane.ready.insert({p.due, seq});
  woken_ = true;
}

void Exchange::FinishItem(const std::string& org, uint64_t seq) {
  absl::MutexLock lock(&mu_);
  woken_ = true;
  RemoveLocked(lanes_[org], seq);
}

void Exchange::RemoveLocked(Lane& lane, uint64_t seq) {
  auto it = lane.items.find(seq);
  if (it == lane.items.end()) return;
  const std::string order_key = it->second.order_key;
  lane.ready.erase({it->second.due, seq});
  lane.items.erase(it);
  auto q = lane.by_order.find(order_key);
  if (q == lane.by_order.end()) return;
  q->second.erase(std::remove(q->second.begin(), q->second.end(), seq), q->second.end());
  if (q->second.empty()) {
    lane.by_order.erase(q);
    return;
  }
  const Pending& next = lane.items[q->second.front()];
  if (!next.in_flight) lane.ready.insert({next.due, q->second.front()});
}

bool Exchange::ApplyCaseFixes(const std::string& case_id, const std::vector<CaseFix>& fixes) {
  if (!cases_->Lock(case_id).ok()) return false;  // busy: the next round tries again
  ledger::Mutation batch;
  bool done = true;
  auto c = cases_->Get(case_id);
  if (c.ok()) {
    bool changed = false;
    for (const CaseFix& fix : fixes) changed = MarkLink(*c, fix.referral_id, fix.state) || changed;
    if (changed) done = cases_->PutCase(&batch, *c).ok();
  } else {
    // A case erased or gone has nothing to show; anything else is retried.
    done = absl::IsNotFound(c.status()) || absl::IsFailedPrecondition(c.status());
  }
  if (done) {
    for (const CaseFix& fix : fixes) {
      batch.Delete(kOutboxFamily, CaseUpdateKey(fix.case_id, fix.referral_id));
    }
    // Not synced: the marker it deletes was, so a crash that loses this write
    // loses both halves and the marker is applied again at start.
    done = ledger::WriteMutation(db_, families_, batch, /*sync=*/false).ok();
  }
  cases_->Unlock(case_id);
  return done;
}

// ---- erasure --------------------------------------------------------------------

v1::AccessEvent Exchange::Cancellation(ledger::Mutation* batch, v1::OutboxItem item) {
  const uint64_t seq = item.seq();
  item.clear_envelope();
  item.clear_sealed_envelope();
  item.set_state("cancelled");
  item.set_last_error("cancelled: the case was erased before delivery");
  item.set_finished_unix_ms(absl::ToUnixMillis(Now()));
  batch->Delete(kOutboxFamily, PendingKey(seq));
  batch->Put(kOutboxFamily, FailedKey(seq), item.SerializeAsString());
  v1::AccessEvent ev = OutgoingEnvelopeEvent(config_.org(), "envelope.cancel", item.envelope_id(),
                                             item.case_id(), item.recipient_org());
  ev.set_reason(absl::StrCat(item.kind(), " not delivered: the case was erased"));
  return ev;
}

void Exchange::CancelItem(const std::string& org, uint64_t seq, v1::OutboxItem item) {
  ledger::Mutation* raw = new ledger::Mutation;
  std::unique_ptr<ledger::Mutation> batch(raw);
  v1::AccessEvent ev = Cancellation(raw, item);
  auto index = log_->RecordSync({ev}, std::move(batch));
  if (!index.ok()) {
    // Still pending on disk: it is cancelled again after a restart.
    log::Error("outbox.cancel_unrecorded",
               {{"envelope", item.envelope_id()}, {"error", index.status().message()}});
  } else {
    log::Info("outbox.cancelled", {{"envelope", item.envelope_id()}, {"case", item.case_id()}});
  }
  FinishItem(org, seq);
}

std::vector<std::pair<std::string, uint64_t>> Exchange::TakeQueuedOfCase(
    const std::string& case_id) {
  std::vector<std::pair<std::string, uint64_t>> removed;  // (org, seq)
  absl::MutexLock lock(&mu_);
  for (auto it = staged_.begin(); it != staged_.end();) {
    // Still invisible: its batch failed; nothing to cancel.
    if (it->second.first.case_id() == case_id) {
      it = staged_.erase(it);
    } else {
      ++it;
    }
  }
  erasing_[case_id] = Now();
  for (auto& [org, lane] : lanes_) {
    std::vector<uint64_t> seqs;
    for (auto& [seq, p] : lane.items) {
      if (p.case_id != case_id || !CarriesPersonalData(p.kind)) continue;
      if (p.in_flight) {
        // It may arrive; the erasure request follows it. Cut short
        // (CutShortCallsOfCase), it comes up again at once, to be cancelled.
        p.reset_while_out = true;
      } else {
        seqs.push_back(seq);
      }
    }
    for (uint64_t seq : seqs) {
      RemoveLocked(lane, seq);
      removed.push_back({org, seq});
    }
  }
  return removed;
}

absl::StatusOr<v1::AccessEvent> Exchange::RequestErasure(ledger::Mutation* batch, const v1::Case& c,
                                                         const v1::ReferralLink& link) {
  v1::EnvelopePayload payload = NewPayload(link.peer_org(), link.agreement(), link.purpose());
  payload.mutable_erasure_request()->set_referral_id(link.referral_id());
  payload.mutable_erasure_request()->set_origin_case_id(c.id());
  auto item = Enqueue(batch, payload, kErasureRequestKind, c.id(), link.referral_id());
  if (!item.ok()) return item.status();
  v1::SentErasure sent;
  sent.set_receiver_org(link.peer_org());
  sent.set_request_envelope_id(item->envelope_id());
  batch->Put(kOutboxFamily, ErasureKey(c.id(), link.referral_id()), sent.SerializeAsString());
  v1::AccessEvent ev = OutgoingEnvelopeEvent(config_.org(), "erasure.request", item->envelope_id(),
                                             c.id(), link.peer_org());
  ev.set_agreement(link.agreement());
  ev.set_purpose(link.purpose());
  ev.set_payload_sha256(EnvelopeDigest(item->envelope()));
  ev.set_reason(absl::StrCat("erase what was received through referral ", link.referral_id()));
  return ev;
}

void Exchange::CutShortCallsOfCase(const std::string& case_id) {
  // Whether the peer took the envelope is unknown: its erasure request
  // follows it. They are cancelled when they come up again, the case being
  // erased by then.
  std::vector<std::shared_ptr<Call>> sending;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& call : calls_) {
      if (call->item.case_id() == case_id && CarriesPersonalData(call->item.kind())) {
        sending.push_back(call);
      }
    }
  }
  for (const auto& call : sending) call->ctx.TryCancel();  // not under mu_
}

absl::StatusOr<std::vector<v1::AccessEvent>> Exchange::PrepareErasure(ledger::Mutation* batch,
                                                                      const v1::Case& c) {
  // Everything committed for the case is on disk (its writers held the case
  // lock until their commit): bring it into the lanes first.
  PromoteStaged();
  std::vector<v1::AccessEvent> events;
  std::set<std::string> never_sent;  // referrals whose envelope is cancelled
  for (const auto& [org, seq] : TakeQueuedOfCase(c.id())) {
    std::string value;
    v1::OutboxItem item;
    rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), outbox_, PendingKey(seq), &value);
    if (s.IsNotFound()) continue;
    if (!s.ok() || !item.ParseFromString(value)) {
      return absl::UnavailableError("the outbox could not be read; nothing was erased, try again");
    }
    if (item.kind() == "referral") never_sent.insert(item.referral_id());
    events.push_back(Cancellation(batch, std::move(item)));
  }
  for (const auto& link : c.referrals()) {
    if (!link.outgoing() || link.state() == v1::REFERRAL_STATE_FAILED ||
        link.state() == v1::REFERRAL_STATE_UNSPECIFIED || never_sent.count(link.referral_id())) {
      continue;
    }
    auto ev = RequestErasure(batch, c, link);
    if (!ev.ok()) return ev.status();
    events.push_back(*std::move(ev));
  }
  CutShortCallsOfCase(c.id());
  return events;
}

void Exchange::DestroyOwedKeys() {
  std::vector<std::string> owed;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = erasing_.begin(); it != erasing_.end();) {
      it = Now() - it->second > kStagedLimit ? erasing_.erase(it) : std::next(it);
    }
    for (const auto& [id, since] : shreds_owed_) owed.push_back(id);
  }
  for (const std::string& id : owed) {
    bool done = false;
    if (cases_->IsErased(id)) {
      absl::Status st = cases_->DestroyKey(id);
      if (!st.ok()) log::Error("case.key_destroy_failed", {{"case", id}, {"error", st.message()}});
      done = st.ok();
    }
    absl::MutexLock lock(&mu_);
    auto it = shreds_owed_.find(id);
    if (it == shreds_owed_.end()) continue;
    // Not erased this long after: the erasure's write failed (the envelope is
    // retried by its sender).
    if (done || Now() - it->second > kStagedLimit) shreds_owed_.erase(it);
  }
}

void Exchange::DoneOutstanding() {
  absl::MutexLock lock(&mu_);
  --outstanding_;
  woken_ = true;
}

// ---- receiving -----------------------------------------------------------------

absl::Duration Exchange::MaxEnvelopeLifetime() const {
  const uint32_t days = config_.limits().max_envelope_lifetime_days();
  return days == 0 ? kDefaultMaxEnvelopeLifetime : absl::Hours(24) * static_cast<int64_t>(days);
}

absl::StatusOr<v1::Receipt> Exchange::ReceiptFor(const std::string& sender,
                                                 const std::string& envelope_id,
                                                 const std::string& digest) const {
  // Only allowed receives are filed under "envelope/<id>", at most one per
  // sender: the one from `sender` is the receipt's.
  constexpr size_t kPage = 16;
  uint64_t before = ledger::Ledger::kFromNewest;
  while (true) {
    auto hits = log_->ledger()->Lookup("envelope/" + envelope_id, before, kPage);
    if (!hits.ok()) return hits.status();
    for (uint64_t index : *hits) {
      auto entry = log_->ledger()->Entry(index);
      if (!entry.ok()) return entry.status();
      auto ev = AccessLog::Decode(*entry);
      if (!ev.ok()) return ev.status();
      if (ev->peer_org() != sender || ev->payload_sha256() != digest) continue;
      v1::ReceiptBody body;
      body.set_envelope_id(envelope_id);
      body.set_envelope_sha256(digest);
      body.set_receiver_org(config_.org());
      body.set_time_unix(ev->time_unix_micros() / 1000000);
      body.set_ledger_index(index);
      const ActiveKey s = signer();
      return SignReceipt(body, s.key_id, *s.key);
    }
    if (hits->size() < kPage) break;
    before = hits->back();
  }
  return absl::UnavailableError("the receive entry is not visible yet; retry");
}

namespace {

// A note a peer's envelope leaves in a local case's history.
void AddPeerNote(v1::Case& c, const v1::EnvelopePayload& p, const std::string& now,
                 const std::string& text, const std::string& outcome, v1::CaseStatus status) {
  v1::CaseNote* n = c.add_history();
  n->set_time(now);
  n->set_org(p.sender_org());
  n->set_author(p.has_update() ? p.update().author() : p.sender_org() + "/node");
  n->set_note(text);
  n->set_outcome(outcome);
  n->set_status(status);
}

// The local case a referral envelope creates: incoming, waiting for a
// decision, linked to the sender's case; `originator` gave the permission the
// referral cites ("" if it cites none).
v1::Case ReceivedCase(const v1::EnvelopePayload& p, const std::string& self_org,
                      const std::string& originator, const std::string& now) {
  const v1::Referral& r = p.referral();
  v1::Case c;
  c.set_id(CaseStore::NewCaseId());
  c.set_owner_org(self_org);
  c.set_category(r.shared().category());
  c.set_sector(r.shared().sector());
  c.set_origin_country(r.shared().origin_country());
  c.set_destination_country(r.shared().destination_country());
  *c.mutable_worker() = r.shared().worker();
  *c.mutable_employer() = r.shared().employer();
  *c.mutable_recruiter() = r.shared().recruiter();
  c.set_narrative(r.shared().narrative());
  for (const auto& e : r.shared().evidence()) *c.add_evidence() = e;
  c.set_status(v1::CASE_STATUS_INCOMING);
  c.set_created_at(now);
  c.set_updated_at(now);
  c.set_created_by(p.sender_org() + "/node");
  v1::ReferralLink* link = c.add_referrals();
  link->set_referral_id(r.referral_id());
  link->set_outgoing(false);
  link->set_peer_org(p.sender_org());
  link->set_peer_case_id(r.origin_case_id());
  link->set_agreement(p.agreement());
  link->set_purpose(p.purpose());
  link->set_state(v1::REFERRAL_STATE_PENDING);
  link->set_onward_sharing(r.handling().onward_sharing());
  link->set_retention_until(r.handling().retention_until());
  link->set_created_at(now);
  AddPeerNote(c, p, now,
              absl::StrCat("referral received from ", p.sender_org(),
                           originator.empty() ? "" : " with the permission of " + originator,
                           r.deidentified() ? " (de-identified)" : ""),
              "", v1::CASE_STATUS_INCOMING);
  return c;
}

// The referral a decision, update or permission envelope is about.
const std::string& ReferralIdOf(const v1::EnvelopePayload& p) {
  return p.has_decision() ? p.decision().referral_id()
         : p.has_update() ? p.update().referral_id()
                          : p.permission().referral_id();
}

// Applies decision, permission or update `p` (`envelope`), which the referral
// policy allowed (CheckPeerChange), to `link` and its case `c`.
void ApplyPeerChange(const v1::Envelope& envelope, const v1::EnvelopePayload& p,
                     const std::string& now, v1::ReferralLink* link, v1::Case* c) {
  if (p.has_decision()) {
    const auto& d = p.decision();
    link->set_state(d.accepted() ? v1::REFERRAL_STATE_ACCEPTED : v1::REFERRAL_STATE_DECLINED);
    link->set_peer_case_id(d.linked_case_id());
    link->set_reason(d.reason());
    AddPeerNote(*c, p, now,
                absl::StrCat(p.sender_org(),
                             d.accepted() ? " accepted the referral" : " declined the referral",
                             d.reason().empty() ? "" : ": " + d.reason()),
                "", v1::CASE_STATUS_UNSPECIFIED);
  } else if (p.has_permission()) {
    link->add_permissions(envelope.SerializeAsString());
    AddPeerNote(*c, p, now,
                absl::StrCat(p.sender_org(), " permits passing this case on to ",
                             p.permission().permitted_org(), " for ", p.permission().purpose()),
                "", v1::CASE_STATUS_UNSPECIFIED);
  } else {
    const auto& u = p.update();
    AddPeerNote(*c, p, now, u.note(), u.outcome(), u.status());
  }
  c->set_updated_at(now);
}

// The event of erasing a case at `p`'s sender's request (its case and outcome set later).
v1::AccessEvent PeerErasureEvent(const v1::EnvelopePayload& p, const std::string& self_org) {
  v1::AccessEvent ev;
  ev.set_actor_org(self_org);
  ev.set_actor_subject("node");
  ev.set_action("case.erase");
  ev.set_resource_kind("case");
  ev.set_peer_org(p.sender_org());
  ev.set_agreement(p.agreement());
  ev.set_purpose("erasure");
  return ev;
}

// The event of receiving erasure outcome `o` from `p`'s sender about case `case_id`.
v1::AccessEvent ErasureOutcomeEvent(const v1::EnvelopePayload& p, const std::string& case_id) {
  const v1::ErasureOutcome& o = p.erasure_outcome();
  v1::AccessEvent ev;
  ev.set_actor_org(p.sender_org());
  ev.set_actor_subject("node");
  ev.set_action("erasure.outcome");
  ev.set_resource_kind("envelope");
  ev.set_resource_id(o.request_envelope_id());
  ev.set_case_id(case_id);
  ev.set_peer_org(p.sender_org());
  ev.set_outcome(o.result() == v1::ERASURE_RESULT_REFUSED ? v1::ACCESS_OUTCOME_DENIED
                                                          : v1::ACCESS_OUTCOME_ALLOWED);
  switch (o.result()) {
    case v1::ERASURE_RESULT_ERASED:
      ev.set_reason(absl::StrCat("erased (their case ", o.receiver_case_id(), ")"));
      break;
    case v1::ERASURE_RESULT_REFUSED:
      ev.set_reason(absl::StrCat("refused under their law: ", o.reason()));
      break;
    default:
      ev.set_reason(absl::StrCat("they hold nothing received through referral ", o.referral_id()));
  }
  return ev;
}

}  // namespace

EnvelopeContext Exchange::ReceiverContext(const std::string& sender,
                                          const v1::Roster* roster) const {
  return EnvelopeContext{sender,
                         config_.org(),
                         roster,
                         Now(),
                         config_.limits().max_message_bytes(),
                         MaxEnvelopeLifetime()};
}

Exchange::Applied Exchange::ApplyBody(const v1::Envelope& envelope, const v1::EnvelopePayload& p) {
  if (handles_body_ && handles_body_(p)) return apply_body_(envelope, p);
  if (p.has_evidence_request() || p.has_evidence_decision()) {
    return Applied{}.Refused(absl::FailedPreconditionError("this node takes no evidence requests"));
  }
  if (p.has_erasure_request()) return ApplyErasureRequest(p);
  if (p.has_erasure_outcome()) return ApplyErasureOutcome(p);
  if (p.has_referral()) return ApplyReferral(p);
  return ApplyLinkChange(envelope, p);
}

void Exchange::SetBodyHandler(
    std::function<bool(const v1::EnvelopePayload&)> handles,
    std::function<Applied(const v1::Envelope&, const v1::EnvelopePayload&)> apply) {
  handles_body_ = std::move(handles);
  apply_body_ = std::move(apply);
}

Exchange::Applied Exchange::ApplyReferral(const v1::EnvelopePayload& p) {
  Applied out;
  const v1::Referral& r = p.referral();
  auto roster = this->roster();
  auto originator = CheckReceivedReferral(p, ReceiverContext(p.sender_org(), roster.get()));
  if (!originator.ok()) return std::move(out).Refused(originator.status());
  // Known by (sender, id): another member using the same id neither blocks
  // this referral nor reaches its case. Claimed until the commit, so two
  // envelopes of the sender carrying it cannot both create it.
  out.claim = ClaimReferral(ReferralKey(p.sender_org(), r.referral_id()));
  if (out.claim == nullptr) {
    return std::move(out).Refused(absl::UnavailableError(
        absl::StrCat("referral ", r.referral_id(), " is being received; retry")));
  }
  auto known = CaseForReferral(p.sender_org(), r.referral_id());
  if (known.ok()) {
    return std::move(out).Refused(absl::AlreadyExistsError(absl::StrCat(
        "referral ", r.referral_id(), " from ", p.sender_org(), " was already received")));
  }
  if (!absl::IsNotFound(known.status())) return std::move(out).Refused(known.status());
  const v1::Case c = ReceivedCase(p, config_.org(), *originator, Rfc3339(Now()));
  if (absl::Status st = CheckCaseText(c); !st.ok()) return std::move(out).Refused(st);
  auto create = cases_->PrepareCreate(c);
  if (!create.ok()) return std::move(out).Refused(create.status());
  auto batch = *std::move(create);
  IndexReferral(batch.get(), p.sender_org(), r.referral_id(), c.id());
  out.case_id = c.id();
  out.change = std::move(batch);
  return out;
}

Exchange::Applied Exchange::ApplyLinkChange(const v1::Envelope& envelope,
                                            const v1::EnvelopePayload& p) {
  Applied out;
  const std::string& referral_id = ReferralIdOf(p);
  // Only a referral exchanged with the sender is found: naming another
  // member's referral id gets the same answer as naming none.
  const absl::Status not_party = absl::PermissionDeniedError(
      absl::StrCat(p.sender_org(), " is not party to referral ", referral_id));
  auto id = CaseForReferral(p.sender_org(), referral_id);
  if (!id.ok()) {
    return std::move(out).Refused(absl::IsNotFound(id.status()) ? not_party : id.status());
  }
  out.case_id = *id;
  auto lock = CaseLock::Acquire(cases_, *id);
  if (!lock.ok()) return std::move(out).Refused(absl::UnavailableError(lock.status().message()));
  out.lock = *std::move(lock);
  auto c = cases_->Get(*id);
  if (!c.ok()) return std::move(out).Refused(c.status());
  v1::ReferralLink* link = nullptr;
  for (auto& l : *c->mutable_referrals()) {
    if (l.referral_id() == referral_id && l.peer_org() == p.sender_org()) link = &l;
  }
  if (link == nullptr) return std::move(out).Refused(not_party);
  // A peer changes only what is its own to change, and a decision once.
  if (auto st = CheckPeerChange(*link, p, config_.org()); !st.ok()) {
    return std::move(out).Refused(st);
  }
  ApplyPeerChange(envelope, p, Rfc3339(Now()), link, &*c);
  // A peer's notes count against the same cap as local ones: no member can
  // grow a case past what every answer holding it can carry.
  if (c->ByteSizeLong() > kMaxCaseBytes) {
    return std::move(out).Refused(absl::FailedPreconditionError(
        absl::StrCat("case for referral ", referral_id,
                     " has reached the largest size a case may have (", kMaxCaseBytes >> 20,
                     " MiB with its history) at ", config_.org(), "; the change was not applied")));
  }
  auto batch = std::make_unique<ledger::Mutation>();
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) return std::move(out).Refused(st);
  out.change = std::move(batch);
  return out;
}

absl::Status Exchange::EraseOnRequest(const v1::EnvelopePayload& p, Applied* out,
                                      v1::ErasureOutcome* result) {
  const v1::ErasureRequest& r = p.erasure_request();
  const std::string& id = out->case_id;
  if (cases_->IsErased(id)) {
    result->set_result(v1::ERASURE_RESULT_ERASED);  // already: nothing left to do
    return absl::OkStatus();
  }
  auto c = cases_->Get(id);
  if (!c.ok()) return c.status();
  bool received = false;
  for (const auto& l : c->referrals()) {
    received = received || (!l.outgoing() && l.referral_id() == r.referral_id() &&
                            l.peer_org() == p.sender_org());
  }
  if (!received) {
    return absl::PermissionDeniedError(
        absl::StrCat(p.sender_org(), " did not send referral ", r.referral_id(), " to this node"));
  }
  v1::AccessEvent ev = PeerErasureEvent(p, config_.org());
  ev.set_resource_id(id);
  ev.set_case_id(id);
  const std::string why = absl::StrCat("requested by ", p.sender_org(), " (envelope ",
                                       p.envelope_id(), ", referral ", r.referral_id(), ")");
  if (UnderLegalHold(*c)) {
    result->set_result(v1::ERASURE_RESULT_REFUSED);
    result->set_reason(kLegalHold);
    ev.set_outcome(v1::ACCESS_OUTCOME_DENIED);
    ev.set_reason(absl::StrCat("refused (legal-hold: the case is held for proceedings); ", why));
    out->also_record.push_back(ev);
    return absl::OkStatus();
  }
  auto erase = cases_->PrepareErase(id);
  if (!erase.ok()) return erase.status();
  out->change = *std::move(erase);
  // What this node queued about the case goes too, and whoever it passed the
  // case on to is asked in turn.
  auto more = PrepareErasure(out->change.get(), *c);
  if (!more.ok()) return more.status();
  result->set_result(v1::ERASURE_RESULT_ERASED);
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_reason(why);
  out->also_record.push_back(ev);
  out->also_record.insert(out->also_record.end(), more->begin(), more->end());
  absl::MutexLock lock(&mu_);
  shreds_owed_[id] = Now();
  return absl::OkStatus();
}

Exchange::Applied Exchange::ApplyErasureRequest(const v1::EnvelopePayload& p) {
  const v1::ErasureRequest& r = p.erasure_request();
  Applied out;
  if (r.referral_id().empty()) {
    return std::move(out).Refused(
        absl::InvalidArgumentError("an erasure request must name a referral"));
  }
  out.change = std::make_unique<ledger::Mutation>();
  v1::ErasureOutcome result;
  result.set_referral_id(r.referral_id());
  result.set_request_envelope_id(p.envelope_id());
  auto id = CaseForReferral(p.sender_org(), r.referral_id());
  if (absl::IsNotFound(id.status())) {
    result.set_result(v1::ERASURE_RESULT_NOT_HELD);
  } else if (!id.ok()) {
    return std::move(out).Refused(id.status());
  } else {
    out.case_id = *id;
    auto lock = CaseLock::Acquire(cases_, *id);
    if (!lock.ok()) return std::move(out).Refused(absl::UnavailableError(lock.status().message()));
    out.lock = *std::move(lock);
    result.set_receiver_case_id(*id);
    if (auto st = EraseOnRequest(p, &out, &result); !st.ok()) return std::move(out).Refused(st);
  }
  v1::EnvelopePayload answer = NewPayload(p.sender_org(), p.agreement(), p.purpose());
  *answer.mutable_erasure_outcome() = result;
  auto item = Enqueue(out.change.get(), answer, kErasureOutcomeKind, out.case_id, r.referral_id());
  if (!item.ok()) return std::move(out).Refused(item.status());
  return out;
}

Exchange::Applied Exchange::ApplyErasureOutcome(const v1::EnvelopePayload& p) {
  const v1::ErasureOutcome& o = p.erasure_outcome();
  Applied out;
  const absl::Status not_asked = absl::PermissionDeniedError(
      absl::StrCat("this node sent ", p.sender_org(), " no erasure request ",
                   o.request_envelope_id(), " about referral ", o.referral_id()));
  if (o.result() == v1::ERASURE_RESULT_UNSPECIFIED || !IsReasonCode(o.reason())) {
    return std::move(out).Refused(absl::InvalidArgumentError(
        "an erasure outcome needs a result and, as its reason, a rule's code"));
  }
  auto id = CaseForReferral(p.sender_org(), o.referral_id());
  if (!id.ok())
    return std::move(out).Refused(absl::IsNotFound(id.status()) ? not_asked : id.status());
  std::string value;
  rocksdb::Status s =
      db_->Get(rocksdb::ReadOptions(), outbox_, ErasureKey(*id, o.referral_id()), &value);
  if (s.IsNotFound()) return std::move(out).Refused(not_asked);
  if (!s.ok())
    return std::move(out).Refused(FromRocksStatus(s, "reading the erasure requests sent"));
  v1::SentErasure sent;
  if (!sent.ParseFromString(value)) {
    return std::move(out).Refused(absl::DataLossError("a sent erasure record is malformed"));
  }
  if (sent.receiver_org() != p.sender_org() ||
      sent.request_envelope_id() != o.request_envelope_id()) {
    return std::move(out).Refused(not_asked);
  }
  out.case_id = *id;
  sent.set_result(o.result());
  auto batch = std::make_unique<ledger::Mutation>();
  batch->Put(kOutboxFamily, ErasureKey(*id, o.referral_id()), sent.SerializeAsString());
  out.change = std::move(batch);
  out.also_record.push_back(ErasureOutcomeEvent(p, *id));
  return out;
}

absl::StatusOr<std::optional<v1::ReceivedEnvelope>> Exchange::FindReceived(
    const std::string& sender, const std::string& id) const {
  std::string seen;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), received_, ReceivedKey(sender, id), &seen);
  if (s.IsNotFound()) {
    // A record from before (sender, id) keys counts for its own sender only.
    rocksdb::Status ls = db_->Get(rocksdb::ReadOptions(), received_, id, &seen);
    v1::ReceivedEnvelope prior;
    if (ls.ok() && prior.ParseFromString(seen) && prior.sender_org() == sender) return prior;
    if (!ls.ok() && !ls.IsNotFound()) return FromRocksStatus(ls, "reading received envelopes");
    return std::nullopt;
  }
  if (!s.ok()) return FromRocksStatus(s, "reading received envelopes");
  v1::ReceivedEnvelope prior;
  prior.ParseFromString(seen);
  return prior;
}

std::shared_ptr<const void> Exchange::ClaimReferral(const std::string& key) {
  {
    absl::MutexLock lock(&mu_);
    if (!referrals_receiving_.insert(key).second) return nullptr;
  }
  return std::shared_ptr<const void>(this, [this, key](const void*) {
    absl::MutexLock lock(&mu_);
    referrals_receiving_.erase(key);
  });
}

bool Exchange::BeginReceiving(const std::string& key) {
  absl::MutexLock lock(&mu_);
  return receiving_.insert(key).second;
}

void Exchange::EndReceiving(const std::string& key) {
  absl::MutexLock lock(&mu_);
  receiving_.erase(key);
}

absl::StatusOr<v1::Receipt> Exchange::ReceiptAt(const std::string& envelope_id,
                                                const std::string& digest, uint64_t index) const {
  v1::ReceiptBody body;
  body.set_envelope_id(envelope_id);
  body.set_envelope_sha256(digest);
  body.set_receiver_org(config_.org());
  auto entry = log_->ledger()->Entry(index);
  auto ev =
      entry.ok() ? AccessLog::Decode(*entry) : absl::StatusOr<v1::AccessEvent>(entry.status());
  body.set_time_unix(ev.ok() ? ev->time_unix_micros() / 1000000 : 0);
  body.set_ledger_index(index);
  const ActiveKey s = signer();
  return SignReceipt(body, s.key_id, *s.key);
}

void Exchange::CommitReceive(const std::string& sender, const std::string& digest,
                             v1::AccessEvent ev, Applied applied, std::function<void()> release,
                             std::function<void(grpc::Status, v1::Receipt)> done) {
  const std::string id = ev.resource_id();
  v1::ReceivedEnvelope record;
  record.set_payload_sha256(digest);
  record.set_sender_org(sender);
  applied.change->Put(kReceivedFamily, ReceivedKey(sender, id), record.SerializeAsString());
  ev.set_case_id(applied.case_id);
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  std::vector<v1::AccessEvent> events = {ev};
  events.insert(events.end(), applied.also_record.begin(), applied.also_record.end());
  log_->Record(
      std::move(events), std::move(applied.change),
      [this, done, id, digest, lock = std::move(applied.lock), claim = std::move(applied.claim),
       release](absl::StatusOr<uint64_t> index) mutable {
        lock.reset();  // the case may change again
        claim.reset();
        if (!index.ok()) {
          release();
          done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "could not record the envelope; retry"),
               {});
          return;
        }
        auto receipt = ReceiptAt(id, digest, *index);
        release();
        if (!receipt.ok()) {
          // Recorded, not signed: a redelivery finds the entry and signs its receipt.
          log::Error("envelope.receipt_unsigned",
                     {{"envelope", id}, {"error", receipt.status().message()}});
          done(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            "the node could not sign the receipt; retry"),
               {});
          return;
        }
        done(grpc::Status::OK, *std::move(receipt));
      });
}

void Exchange::Deliver(const Principal& caller, const v1::Envelope& envelope,
                       std::function<void(grpc::Status, v1::Receipt)> done) {
  v1::AccessEvent ev;
  SetActor(caller, &ev);
  ev.set_action("envelope.receive");
  ev.set_resource_kind("envelope");
  ev.set_peer_org(caller.org);
  const std::string digest = EnvelopeDigest(envelope);
  ev.set_payload_sha256(digest);
  auto refuse = [&](const absl::Status& st) {
    ev.set_outcome(v1::ACCESS_OUTCOME_DENIED);
    ev.set_reason(std::string(st.message()));
    log::Warn("envelope.refused", {{"from", caller.org}, {"reason", st.message()}});
    log_->Record({ev}, nullptr,
                 [done, st](absl::StatusOr<uint64_t>) { done(ToGrpcStatus(st), {}); });
  };
  auto roster = this->roster();
  auto payload = VerifyEnvelope(envelope, ReceiverContext(caller.org, roster.get()));
  if (!payload.ok()) return refuse(payload.status());
  if (auto st = ValidatePeerIdentifiers(*payload); !st.ok()) return refuse(st);
  ev.set_resource_id(payload->envelope_id());
  ev.set_agreement(payload->agreement());
  ev.set_purpose(payload->purpose());
  const std::string id = payload->envelope_id();
  // Ids are unique per sender: everything below is keyed by (sender, id); a
  // concurrent duplicate waits its turn.
  const std::string key = ReceivedKey(caller.org, id);
  if (!BeginReceiving(key)) {
    done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "this envelope is being received; retry"), {});
    return;
  }
  auto release = [this, key] { EndReceiving(key); };
  // Deduplicate: the same envelope again gets the original receipt; another
  // payload under an id this sender used is refused.
  auto prior = FindReceived(caller.org, id);
  if (!prior.ok() || prior->has_value()) release();
  if (!prior.ok()) return done(ToGrpcStatus(prior.status()), {});
  if (prior->has_value()) {
    if ((*prior)->payload_sha256() != digest) {
      return refuse(absl::AlreadyExistsError(
          absl::StrCat("envelope id ", id, " from ", caller.org,
                       " was already used for a different payload; refused")));
    }
    auto receipt = ReceiptFor(caller.org, id, digest);
    return done(receipt.ok() ? grpc::Status::OK : ToGrpcStatus(receipt.status()),
                receipt.value_or(v1::Receipt()));
  }
  Applied applied = ApplyBody(envelope, *payload);
  if (!applied.status.ok()) {
    applied.lock.reset();
    release();
    if (absl::IsUnavailable(applied.status)) return done(ToGrpcStatus(applied.status), {});
    ev.set_case_id(applied.case_id);
    return refuse(applied.status);
  }
  CommitReceive(caller.org, digest, std::move(ev), std::move(applied), release, done);
}

}  // namespace corridor
