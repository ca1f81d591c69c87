// Exchange: the node's side of the federation protocol (docs/federation.md).
//
// Sending: envelopes are written to a durable outbox in the same batch as the
// ledger entry that records the send. Delivery runs in one lane per peer: up to
// `max_in_flight_per_peer` envelopes in flight to each peer at once on
// asynchronous gRPC calls with a deadline, so a slow or frozen peer holds only
// its own lane. Envelopes about the same referral go out one at a time, in the
// order they were queued. A transient failure is retried with exponential
// backoff and jitter; a peer that answers again (a successful probe or
// delivery) has every pending envelope's backoff reset. Once a signed receipt
// comes back the item moves from "pending/" to "delivered/" in the same synced
// batch as the ledger entry that records the receipt and, for a referral, a
// durable "case-update/" marker; the delivery thread then turns the link on the
// sending case DELIVERED under the case lock, retrying while the case is busy
// and again after a restart, until done. Delivered
// items are pruned after a retention window; the ledger keeps the receipt.
// Pending work is loaded at Start and then kept in memory: the outbox is never
// rescanned. A pending envelope that carries personal data is stored sealed
// under its case's data key and opened only in memory to be sent; erasing the
// case cancels what is still queued and asks each peer that received a
// referral of it to erase its copy (docs/federation.md, "Erasure").
//
// Receiving: Deliver() verifies an envelope completely before anything but a
// denial is written (signature, key validity by both clocks, lifetime, and that
// the body speaks only for its sender), deduplicates by (sender, envelope id)
// (a redelivery returns the original receipt and changes nothing), applies the
// body to the local case only where it is the sender's to change (a decision
// once, by the referral's receiver; updates and permissions on accepted
// referrals), and answers with a signed receipt naming the ledger index of the
// receive entry. Every refusal is one denied ledger entry. Thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_EXCHANGE_H_
#define CORRIDOR_SERVER_FEDERATION_EXCHANGE_H_

#include <atomic>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/federation.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "corridor/v1/storage.pb.h"
#include "ledger/base/clock.h"
#include "server/audit/access_log.h"
#include "server/auth/identity.h"
#include "server/federation/envelope.h"
#include "server/store/case_store.h"

namespace corridor {

inline constexpr char kOutboxFamily[] = "outbox";
inline constexpr char kReceivedFamily[] = "envelopes_in";
// The outbox kind of an access attestation (docs/federation.md, "Access
// attestations"): ids and codes only, stored unsealed, never cancelled by an erasure.
inline constexpr char kAccessAttestationKind[] = "access-attestation";
// (referral id, peer org) → local case id; docs/federation.md, "Referral index".
inline constexpr char kReferralIndexFamily[] = "referrals";

// The ledger event of this node (`self_org`, subject "node") doing `action`
// with envelope `envelope_id` of case `case_id` sent to `peer_org`: allowed,
// resource kind "envelope". Callers add digest, agreement, purpose, reason.
v1::AccessEvent OutgoingEnvelopeEvent(const std::string& self_org, const std::string& action,
                                      const std::string& envelope_id, const std::string& case_id,
                                      const std::string& peer_org);

// How delivery behaves. Zero or negative values take the default.
struct ExchangeOptions {
  // Envelopes in flight to one peer at a time. Default 16.
  int max_in_flight_per_peer = 16;
  // Retry delay after the n-th transient failure in a row:
  // min(base_backoff · 2^n, max_backoff) · uniform(0.5, 1.5). Defaults 250 ms and 30 s.
  absl::Duration base_backoff = absl::Milliseconds(250);
  absl::Duration max_backoff = absl::Seconds(30);
  // Delivered items are deleted from the outbox this long after their receipt
  // was recorded (the ledger keeps the receipt entry). Default 24 hours.
  absl::Duration delivered_retention = absl::Hours(24);
  // The clock for due times, expiry, retention and the times envelopes carry
  // (not owned; it must outlive the exchange). Null means Clock::Real().
  const Clock* clock = nullptr;
  // Seeds the backoff jitter, so a test can predict the retry schedule. 0
  // means a seed from std::random_device.
  uint64_t jitter_seed = 0;
};

class Exchange {
 public:
  Exchange(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
           const Signer* signing_key, rocksdb::DB* db,
           const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families, CaseStore* cases,
           AccessLog* log, TlsIdentity tls, ExchangeOptions options = {});
  ~Exchange();

  // Converts an outbox written by an earlier version (keyed by envelope id),
  // loads the pending items, sweeps "case-update/" markers, prunes, and starts
  // the delivery thread. Errors reading the outbox are logged; delivery of what
  // could be read goes ahead.
  void Start();
  // Stops the delivery thread, cancels calls in flight and waits for their
  // completions (and receipt recordings) to finish. Idempotent.
  void Stop();
  // Tells the delivery thread that an outbox write committed (call after the
  // batch given to Enqueue is durable): it picks the new items up.
  void Wake();
  // `org` answers again (a successful probe): every pending item for it is due
  // now with its backoff reset, and its channel reconnects at once.
  void PeerReachable(const std::string& org);
  // The roster in force changed: channels to members removed, or listed with
  // another endpoint or CA, are dropped (the next call makes a new one), and
  // every pending item is due now.
  void RosterChanged();
  // Wakes the delivery thread and returns once it has made a whole pass that
  // began after this call: every item due by the clock as it is now has been
  // started (its call is in flight or done). Returns at once if delivery is
  // not running. For tests on a fake clock; never from a completion.
  void DeliverDueNow();
  // Calls in flight plus receipts being recorded (for tests).
  int Outstanding() const;

  // A new payload from this node to `to` under `agreement` / `purpose`.
  v1::EnvelopePayload NewPayload(const std::string& to, const std::string& agreement,
                                 const std::string& purpose) const;
  // Signs `payload` and adds it to `batch` as a pending outbox item; Wake()
  // once the batch is durable. The stored envelope is sealed under the data
  // key of `case_id` unless the body is an erasure request or outcome (which
  // carry no personal data). The returned item holds the signed envelope in
  // memory. NotFound / FailedPrecondition if the case is missing or erased.
  absl::StatusOr<v1::OutboxItem> Enqueue(ledger::Mutation* batch,
                                         const v1::EnvelopePayload& payload,
                                         const std::string& kind, const std::string& case_id,
                                         const std::string& referral_id);
  // The outbox side of erasing live case `c` (call under its case lock, with
  // the content read before the erase; the caller commits `batch` with the
  // returned ledger events and calls Wake()): every queued envelope of the
  // case that is not being sent right now is cancelled (deleted from
  // "pending/", kept as a "failed/" item in state "cancelled" without its
  // envelope; one `envelope.cancel` event each); and every peer that received,
  // or may have received (the envelope is in flight), a referral of the case
  // gets an erasure request (one `erasure.request` event each). An envelope in
  // flight that fails afterwards is cancelled when it would be retried. The
  // events hold ids only.
  absl::StatusOr<std::vector<v1::AccessEvent>> PrepareErasure(ledger::Mutation* batch,
                                                              const v1::Case& c);
  // The referral index (docs/federation.md, "Referral index"). A referral id
  // is chosen by the referral's sender, so it is unique only among one
  // sender's referrals: a referral is known by its id together with the org at
  // the other end of it (the receiver of one this node sent, the sender of one
  // it received), and everything a peer's envelope names is looked up with the
  // envelope's verified sender as that org.
  //
  // Adds to `batch` the entry for referral `referral_id` exchanged with
  // `peer_org`, whose local case is `case_id`.
  void IndexReferral(ledger::Mutation* batch, const std::string& peer_org,
                     const std::string& referral_id, const std::string& case_id) const;
  // The local case of referral `referral_id` exchanged with `peer_org`.
  // NotFound if this node exchanged no referral of that id with that org,
  // whichever other org it exchanged that id with; an error reading the index
  // otherwise. An entry an earlier version wrote under the bare id counts only
  // for the org its case's link of that id names (none once the case is erased).
  absl::StatusOr<std::string> CaseForReferral(const std::string& peer_org,
                                              const std::string& referral_id) const;
  // The local cases of every referral with id `referral_id`, whatever org it
  // was exchanged with, in no particular order: for a local user, who names a
  // referral by its id alone and must be told when that is ambiguous.
  absl::StatusOr<std::vector<std::string>> CasesWithReferralId(
      const std::string& referral_id) const;

  // Receiver: handles PeerService.Deliver from `caller`; `done` is called once.
  void Deliver(const Principal& caller, const v1::Envelope& envelope,
               std::function<void(grpc::Status, v1::Receipt)> done);

  struct OutboxPage {
    std::vector<v1::OutboxItem> items;
    std::string next_page_token;  // empty on the last page
  };
  static constexpr size_t kDefaultPageSize = 100;
  static constexpr size_t kMaxPageSize = 1000;
  // One page of the outbox: pending items oldest first, then failed, then
  // delivered ones in delivery order. `page_size` 0 means kDefaultPageSize and
  // is capped at kMaxPageSize. InvalidArgument for a token this node did not issue.
  absl::StatusOr<OutboxPage> ListOutbox(size_t page_size, const std::string& page_token) const;
  // Per peer with anything queued: the envelopes waiting for delivery (durable,
  // not yet receipted, failed ones not counted) and the created_unix of the
  // oldest. Memory only, cheap: for the metrics endpoint.
  struct LaneStats {
    std::string peer;
    uint64_t pending = 0;
    int64_t oldest_created_unix = 0;
  };
  std::vector<LaneStats> OutboxStats() const;
  // Deletes delivered items whose receipt was recorded more than
  // `delivered_retention` ago. Runs by itself every 10 minutes; for tests.
  absl::Status PruneDelivered();

  // Signs new envelopes and receipts with `key` (listed as `key_id` in the
  // roster in force, checked by the caller) from now on, without a restart.
  void RotateSigningKey(std::shared_ptr<const Signer> key, std::string key_id);
  std::shared_ptr<const v1::Roster> roster() const { return identity_->roster(); }
  const v1::NodeConfig& config() const { return config_; }

  // What receiving an envelope's body comes to (ApplyBody, and a body
  // handler set with SetBodyHandler).
  struct Applied {
    // OK, or why the body is refused (UNAVAILABLE: try again, nothing recorded).
    absl::Status status;
    // The local case it concerns, once known: named in the receive entry,
    // refused or not.
    std::string case_id;
    // The case's lock, held from the checks to the commit (or the refusal).
    std::shared_ptr<CaseLock> lock;
    // What to commit with the receive entry, when OK.
    std::unique_ptr<ledger::Mutation> change;
    // Ledger events to commit after the receive entry.
    std::vector<v1::AccessEvent> also_record;
    // A referral being received: its index key stays claimed (ClaimReferral)
    // until the commit, like the lock.
    std::shared_ptr<const void> claim;

    // This application refused with `why`; the case id and lock stay.
    Applied Refused(absl::Status why) && {
      status = std::move(why);
      return std::move(*this);
    }
  };

  // Applies received bodies of the kinds `handles` accepts (evidence requests
  // and decisions: server/federation/evidence_requests.h; access
  // attestations: attestations.h) with `apply`, given the envelope as
  // received and its verified payload `p`; it holds `p`'s case lock in what
  // it returns, if it needs one, and leaves the receive entry to the
  // exchange. Set once, before Start.
  void SetBodyHandler(
      std::function<bool(const v1::EnvelopePayload&)> handles,
      std::function<Applied(const v1::Envelope&, const v1::EnvelopePayload&)> apply);
  // The PeerService stub for `org`'s node (one channel per peer, shared with
  // delivery); null if `org` is not in the roster in force.
  std::shared_ptr<v1::PeerService::Stub> PeerStub(const std::string& org) { return StubFor(org); }
  // The key this node signs with now, and its roster key id.
  std::pair<std::shared_ptr<const Signer>, std::string> CurrentSigner() const {
    ActiveKey s = signer();
    return {s.key, s.key_id};
  }

 private:
  // An item waiting in a lane (its envelope stays on disk until it is sent).
  struct Pending {
    std::string key;        // "pending/<seq>"
    std::string order_key;  // envelopes with the same one go out in order
    std::string case_id, kind, referral_id;
    absl::Time due;
    int64_t created_unix = 0;      // the item's, for the oldest-pending metric
    uint32_t failures = 0;         // transient failures in a row: the backoff exponent
    bool in_flight = false;        // being sent, or its receipt being recorded
    bool reset_while_out = false;  // the lane was reset while it was in flight
  };
  // One peer's delivery lane.
  struct Lane {
    std::map<uint64_t, Pending> items;                     // by seq
    std::map<std::string, std::deque<uint64_t>> by_order;  // order key → seqs, oldest first
    std::set<std::pair<absl::Time, uint64_t>> ready;       // heads not in flight, by due time
    int in_flight = 0;                                     // calls in flight
    bool failing = false;                                  // a call failed since the last success
  };
  struct Call;
  // A referral link on a local case to move from QUEUED to `state`; its
  // "case-update/" marker is deleted in the same write.
  struct CaseFix {
    std::string case_id, referral_id;
    v1::ReferralState state;
  };
  struct PeerChannel {
    std::string endpoint, ca_cert_pem;  // of the member it was made for
    std::shared_ptr<grpc::Channel> channel;
    std::shared_ptr<v1::PeerService::Stub> stub;
  };

  void Run();
  absl::Time Now() const { return options_.clock->Now(); }
  uint64_t NextSeq();
  void LoadOutbox();
  // The steps of LoadOutbox: the sequence continues after the newest item;
  // an outbox of an earlier version (keyed by envelope id) is rewritten; a
  // pending envelope an earlier version stored in plaintext is sealed; the
  // "case-update/" markers are queued.
  void ContinueSequence(rocksdb::Iterator* it);
  void MigrateLegacyOutbox(rocksdb::Iterator* it);
  void SealIfPlaintext(const std::string& key, const v1::OutboxItem& item);
  void LoadCaseFixesLocked(rocksdb::Iterator* it) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PromoteStaged();
  void AddPendingLocked(const v1::OutboxItem& item, absl::Time due)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void StartCall(const std::string& org, uint64_t seq);
  // The steps of StartCall. Whether `item`'s case is being erased right now
  // (wait for the erasure to commit, then cancel); opens the envelope of
  // `call->item` into `call->envelope` (FAILED_PRECONDITION or NOT_FOUND: its
  // case is erased); one call fewer in `org`'s lane; what becomes of an item
  // that could not be sent (`read`: reading it from the outbox).
  bool WaitForErasure(const v1::OutboxItem& item);
  absl::Status OpenEnvelope(Call* call);
  void LeaveLane(const std::string& org);
  void NotSent(const std::string& org, uint64_t seq, const rocksdb::Status& read, bool readable,
               bool expired, v1::OutboxItem item);
  void OnCallDone(std::shared_ptr<Call> call, grpc::Status status);
  // The item leaves its lane (delivered or failed).
  void FinishItem(const std::string& org, uint64_t seq);
  // The item stays pending and is retried after `delay`; `item`, if given, is
  // saved with `error` for `corridorctl outbox`.
  void RetryItem(const std::string& org, uint64_t seq, std::optional<v1::OutboxItem> item,
                 const std::string& error, absl::Duration delay);
  // The item's case was erased while it was in flight or queued: it is
  // cancelled as PrepareErasure cancels, and the cancellation recorded.
  void CancelItem(const std::string& org, uint64_t seq, v1::OutboxItem item);
  // Removes item `seq` from its lane; the next of its order key becomes ready.
  void RemoveLocked(Lane& lane, uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The steps of PrepareErasure: takes the case's queued envelopes that are
  // not being sent out of their lanes (returns them as (org, seq)) and marks
  // the case as being erased; queues into `batch` the erasure request to the
  // receiver of `link` and returns its event; cuts short the calls sending
  // the case's envelopes right now.
  std::vector<std::pair<std::string, uint64_t>> TakeQueuedOfCase(const std::string& case_id);
  absl::StatusOr<v1::AccessEvent> RequestErasure(ledger::Mutation* batch, const v1::Case& c,
                                                 const v1::ReferralLink& link);
  void CutShortCallsOfCase(const std::string& case_id);
  // Writes of a cancellation into `batch`; the event that records it.
  v1::AccessEvent Cancellation(ledger::Mutation* batch, v1::OutboxItem item);
  // The receiver's view of an envelope from `sender`: this node, `roster`,
  // the time now and the limits.
  EnvelopeContext ReceiverContext(const std::string& sender, const v1::Roster* roster) const;
  // The branches of ApplyBody, one per kind of body.
  Applied ApplyReferral(const v1::EnvelopePayload& p);
  Applied ApplyLinkChange(const v1::Envelope& envelope, const v1::EnvelopePayload& p);
  Applied ApplyErasureRequest(const v1::EnvelopePayload& p);
  Applied ApplyErasureOutcome(const v1::EnvelopePayload& p);
  // Erases the case `out->case_id` (locked) that `p`'s sender asked to erase,
  // unless it is held for proceedings; `result` says which.
  absl::Status EraseOnRequest(const v1::EnvelopePayload& p, Applied* out,
                              v1::ErasureOutcome* result);
  // The record of envelope `id` already received from `sender`, if any.
  absl::StatusOr<std::optional<v1::ReceivedEnvelope>> FindReceived(const std::string& sender,
                                                                   const std::string& id) const;
  // Claims the referral index key `key` for a referral being received (an
  // identical second referral from the same sender waits its turn, so two
  // envelopes cannot both create it); null if it is claimed already. The
  // claim ends when the returned pointer is destroyed.
  std::shared_ptr<const void> ClaimReferral(const std::string& key);
  // Marks the envelope `key` as being received; false if it already is.
  bool BeginReceiving(const std::string& key);
  void EndReceiving(const std::string& key);
  // The signed receipt of envelope `envelope_id` received at ledger `index`.
  absl::StatusOr<v1::Receipt> ReceiptAt(const std::string& envelope_id, const std::string& digest,
                                        uint64_t index) const;
  // Commits `applied` with the receive event `ev` and the received record,
  // then answers `done` with the receipt; `release` ends the receiving.
  void CommitReceive(const std::string& sender, const std::string& digest, v1::AccessEvent ev,
                     Applied applied, std::function<void()> release,
                     std::function<void(grpc::Status, v1::Receipt)> done);
  // Destroys the keys of cases erased at a peer's request once their erasure
  // committed (the shred marker finishes the job after a crash); forgets
  // erasures prepared long ago.
  void DestroyOwedKeys();
  void Fail(const std::string& org, uint64_t seq, v1::OutboxItem item, const std::string& error);
  void RecordReceipt(const std::string& org, uint64_t seq, v1::OutboxItem item,
                     const v1::Receipt& receipt, uint64_t receiver_index);
  void ResetLaneLocked(Lane& lane, absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Duration Backoff(uint32_t failures);
  // Moves the links named by `fixes` on case `case_id` and deletes their
  // markers in one write; false if the case is busy or the write failed (try
  // again later).
  bool ApplyCaseFixes(const std::string& case_id, const std::vector<CaseFix>& fixes);
  void DoneOutstanding();
  // The stub for `org`'s node (one channel per peer, reused); null if `org` is
  // not in the roster.
  std::shared_ptr<v1::PeerService::Stub> StubFor(const std::string& org);
  // Checks `p` (`envelope`) against this node's state and the referral
  // policy and prepares its change, holding the case's lock if it has one.
  Applied ApplyBody(const v1::Envelope& envelope, const v1::EnvelopePayload& p);
  // The receipt of the envelope `envelope_id` with `digest` received from
  // `sender`, rebuilt from its receive entry; Unavailable while not visible.
  absl::StatusOr<v1::Receipt> ReceiptFor(const std::string& sender, const std::string& envelope_id,
                                         const std::string& digest) const;
  // limits.max_envelope_lifetime_days, or its default if unset.
  absl::Duration MaxEnvelopeLifetime() const;

  const v1::NodeConfig config_;
  ExchangeOptions options_;
  std::shared_ptr<IdentityResolver> identity_;
  // The key envelopes and receipts are signed with; replaced by RotateSigningKey.
  struct ActiveKey {
    std::shared_ptr<const Signer> key;
    std::string key_id;
  };
  ActiveKey signer() const;
  mutable absl::Mutex signer_mu_;
  ActiveKey signer_ ABSL_GUARDED_BY(signer_mu_);
  rocksdb::DB* db_;
  const std::map<std::string, rocksdb::ColumnFamilyHandle*> families_;
  rocksdb::ColumnFamilyHandle* outbox_;
  rocksdb::ColumnFamilyHandle* received_;
  rocksdb::ColumnFamilyHandle* referrals_;
  CaseStore* cases_;
  AccessLog* log_;
  const TlsIdentity tls_;
  Jitter jitter_;  // backoff jitter, seeded from options_.jitter_seed
  std::atomic<uint64_t> last_seq_{0};

  mutable absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  // Passes of the delivery loop finished; whether it is waiting between two.
  uint64_t passes_ ABSL_GUARDED_BY(mu_) = 0;
  bool idle_ ABSL_GUARDED_BY(mu_) = false;
  // Calls in flight plus receipts being recorded; Stop waits for zero.
  int outstanding_ ABSL_GUARDED_BY(mu_) = 0;
  std::set<std::shared_ptr<Call>> calls_ ABSL_GUARDED_BY(mu_);
  // Items enqueued whose batch may not be durable yet: key → (item, when).
  std::map<std::string, std::pair<v1::OutboxItem, absl::Time>> staged_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Lane> lanes_ ABSL_GUARDED_BY(mu_);
  std::deque<CaseFix> case_fixes_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, PeerChannel> peers_ ABSL_GUARDED_BY(mu_);
  // Envelopes being received right now, by (sender, id) key: a concurrent
  // duplicate waits its turn.
  std::set<std::string> receiving_ ABSL_GUARDED_BY(mu_);
  // Referral index keys of referrals being received right now (ClaimReferral).
  std::set<std::string> referrals_receiving_ ABSL_GUARDED_BY(mu_);
  // Cases erased at a peer's request whose key is still to be destroyed once
  // the erasure commits: case id → when it was prepared.
  std::map<std::string, absl::Time> shreds_owed_ ABSL_GUARDED_BY(mu_);
  // Cases whose erasure is prepared (case id → when): their envelopes are not
  // sent until the erasure has committed (then they are cancelled) or is
  // given up for failed.
  std::map<std::string, absl::Time> erasing_ ABSL_GUARDED_BY(mu_);
  std::function<bool(const v1::EnvelopePayload&)> handles_body_;
  std::function<Applied(const v1::Envelope&, const v1::EnvelopePayload&)> apply_body_;
  std::thread thread_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_EXCHANGE_H_
