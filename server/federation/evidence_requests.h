// EvidenceRequests: both ends of an evidence request (docs/evidence.md).
//
// Requester: a prosecutor's request for evidence on a case linked to the
// holder by a referral goes out as a signed EvidenceRequest envelope through
// the exchange's outbox, recorded ("out/<id>" in the "evidence_requests"
// family) in the same batch as its ledger entry; the holder's decision comes
// back as an EvidenceDecision envelope; FetchGranted then fetches each granted
// item over PeerService.FetchEvidence, checks its size and SHA-256 against the
// grant, and stores it sealed in the local case with the grant's conditions
// and the holder's signed receipt. A request undecided at its deadline gets
// one `evidence.no_response` entry (SweepDeadlines).
//
// Holder: a received request is checked (the agreement lets the requester's
// kind ask, the referral links the two orgs, the items are in the case) and
// kept ("in/<requester>/<id>") for an approver to decide; an approval is a
// grant ("grant/<id>") of some items, an expiry, a fetch limit and
// conditions; each fetch is checked against it, counted and recorded before
// the item is sent, with the item's digest checked as it is read.
//
// The legal basis and the conditions are free text: they are stored only
// sealed under the case's data key and never enter the ledger. Every change
// to a request happens under its case's lock. Thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_EVIDENCE_REQUESTS_H_
#define CORRIDOR_SERVER_FEDERATION_EVIDENCE_REQUESTS_H_

#include <atomic>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "corridor/v1/evidence.pb.h"
#include "corridor/v1/storage.pb.h"
#include "ledger/base/clock.h"
#include "server/audit/access_log.h"
#include "server/auth/identity.h"
#include "server/common/executor.h"
#include "server/federation/exchange.h"
#include "server/store/case_store.h"

namespace corridor {

inline constexpr char kEvidenceRequestsFamily[] = "evidence_requests";

class EvidenceRequests {
 public:
  EvidenceRequests(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
                   Exchange* exchange, CaseStore* cases, AccessLog* log, rocksdb::DB* db,
                   rocksdb::ColumnFamilyHandle* family, const Clock* clock);
  ~EvidenceRequests();

  // Starts the deadline sweep (once a minute). Stop ends it and waits for
  // fetches in flight. Idempotent.
  void Start();
  void Stop();

  // A change ready to commit with its ledger events, under its case's lock.
  struct Change {
    std::unique_ptr<ledger::Mutation> batch;
    std::shared_ptr<CaseLock> lock;
    std::vector<v1::AccessEvent> events;  // besides the call's own event
  };

  // Requester: checks `req` from prosecutor `caller` and prepares the
  // envelope, the record and (in `ev`, the call's event) what the entry names.
  absl::StatusOr<Change> PrepareRequest(const Principal& caller,
                                        const v1::RequestEvidenceRequest& req,
                                        v1::RequestEvidenceResponse* resp, v1::AccessEvent* ev);
  // Holder: the approver's decision on a received request.
  absl::StatusOr<Change> PrepareDecision(const Principal& caller,
                                         const v1::DecideEvidenceRequest& req,
                                         v1::DecideEvidenceResponse* resp, v1::AccessEvent* ev);
  // Both ends: every request, urgent first, then by deadline.
  // Records what SweepDeadlines would first.
  absl::StatusOr<std::vector<v1::EvidenceRequestSummary>> List();
  // One request with its legal basis and conditions (opened from their seals).
  absl::StatusOr<v1::EvidenceRequestDetail> Get(const std::string& request_id,
                                                const std::string& peer_org,
                                                v1::AccessEvent* ev) const;

  // The exchange's body handler: a received request (holder) or decision
  // (requester).
  static bool Handles(const v1::EnvelopePayload& p);
  Exchange::Applied Apply(const v1::EnvelopePayload& p);

  // Holder, for PeerService.FetchEvidence: checks the fetch against its grant
  // and reads the item (verifying its digest); the change counts the fetch.
  struct Serving {
    Change change;
    v1::GrantedItem item;
    std::vector<std::string> chunks;  // the item's content, in kEvidenceChunkSize pieces
    v1::FetchReceiptBody receipt;     // all but the ledger index
  };
  absl::StatusOr<Serving> PrepareServe(const Principal& caller, const v1::FetchEvidenceRequest& req,
                                       v1::AccessEvent* ev);
  // The signer's error if the node's key (in a token) fails.
  absl::StatusOr<v1::FetchReceipt> SignFetchReceipt(const v1::FetchReceiptBody& body) const;
  // FetchEvidence streams alive: gRPC may run a stream's last callback after
  // the server's Shutdown returned, so the node waits for them
  // (WaitForStreams) before what they use goes.
  void StreamStarted() { live_streams_.fetch_add(1); }
  void StreamDone() { live_streams_.fetch_sub(1); }
  void WaitForStreams() const;

  // Requester: fetches every granted item of request `request_id`, one at a
  // time, each as a new item of the local case (each call counts against the
  // grant's limit); records each fetch (or its failure) and stops at the
  // first failure. Runs on this object's fetch executor, then calls `done`.
  void FetchGranted(const Principal& caller, const std::string& request_id, v1::AccessEvent ev,
                    std::function<void(absl::StatusOr<v1::FetchGrantedResponse>)> done);

  // Every ledger event about evidence `evidence_id`, with inclusion proofs.
  absl::StatusOr<v1::CustodyResponse> Custody(const std::string& evidence_id) const;

  // Requester: records `evidence.no_response` once for each request still
  // undecided past its deadline. Runs every minute; for tests.
  absl::Status SweepDeadlines();

 private:
  struct Found {
    std::string key;
    v1::StoredEvidenceRequest record;
  };
  absl::Time Now() const { return clock_->Now(); }
  absl::StatusOr<std::vector<Found>> Scan(const std::string& prefix) const;
  absl::StatusOr<Found> Read(const std::string& key) const;
  absl::StatusOr<Found> FindReceived(const std::string& request_id,
                                     const std::string& requester) const;
  absl::StatusOr<Found> FindAny(const std::string& request_id, const std::string& peer) const;
  void Put(ledger::Mutation* batch, const Found& f) const;
  absl::StatusOr<std::string> Seal(const Found& f, const std::string& what,
                                   const std::string& text) const;
  absl::StatusOr<std::string> Open(const Found& f, const std::string& what,
                                   const std::string& sealed) const;
  // The decision `d` into `f`: its state and grant in the summary (items by
  // id, size and digest only), its conditions and items whole, sealed.
  absl::Status RecordDecision(Found* f, const v1::EvidenceDecision& d) const;
  absl::StatusOr<v1::EvidenceDecision> OpenDecision(const Found& f) const;
  // Steps of PrepareRequest, Apply and PrepareDecision. The request's body
  // (its referral id a placeholder until the case is read); the record of
  // the request `p` carries, about local case `case_id`, with its legal basis
  // sealed.
  absl::StatusOr<v1::EvidenceRequest> RequestBody(const Principal& caller,
                                                  const v1::RequestEvidenceRequest& req) const;
  absl::StatusOr<Found> RecordOf(const std::string& key, const v1::EnvelopePayload& p,
                                 const std::string& case_id) const;
  absl::StatusOr<v1::ReferralLink> LinkWith(const v1::Case& c, const std::string& holder) const;
  absl::StatusOr<std::vector<v1::GrantedItem>> HeldItems(const v1::Case& c, bool all,
                                                         const std::vector<std::string>& ids) const;
  Exchange::Applied ApplyRequest(const v1::EnvelopePayload& p);
  Exchange::Applied ApplyDecision(const v1::EnvelopePayload& p);
  absl::StatusOr<Found> ReceivedRecord(const v1::EnvelopePayload& p, const v1::Case& c,
                                       const std::string& key);
  absl::Status Grant(const v1::DecideEvidenceRequest& req, const v1::Case& c, Found* f,
                     v1::EvidenceDecision* d) const;
  // Holder: reads every chunk of `item` of case `case_id` into `chunks` and
  // checks size and SHA-256 against the grant (DATA_LOSS otherwise).
  absl::Status ReadIntact(const std::string& case_id, const v1::GrantedItem& item,
                          std::vector<std::string>* chunks) const;
  // What the holder signs for fetch `number` of `item` of grant `s` by `requester` (no index yet).
  v1::FetchReceiptBody ReceiptBody(const v1::EvidenceRequestSummary& s, const v1::GrantedItem& item,
                                   uint32_t number, const std::string& requester) const;
  // Requester: one item.
  absl::StatusOr<v1::FetchedItem> FetchItem(const Found& f, const v1::GrantedItem& item,
                                            v1::AccessEvent ev);
  absl::StatusOr<v1::FetchReceipt> Download(const Found& f, const v1::GrantedItem& item,
                                            const std::string& case_id,
                                            const std::string& evidence_id);
  absl::Status VerifyFetchReceipt(const v1::FetchReceipt& receipt, const v1::GrantedItem& item,
                                  const Found& f) const;
  absl::StatusOr<uint64_t> StoreFetched(const Found& f, const v1::GrantedItem& item,
                                        const std::string& evidence_id,
                                        const v1::FetchReceipt& receipt, v1::AccessEvent ev,
                                        v1::EvidenceItem* stored);
  absl::StatusOr<std::string> CaseOfEvidence(const std::string& evidence_id) const;
  void SweepLoop();

  const v1::NodeConfig config_;
  std::shared_ptr<IdentityResolver> identity_;
  Exchange* exchange_;
  CaseStore* cases_;
  AccessLog* log_;
  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* family_;
  const Clock* clock_;
  std::unique_ptr<Executor> fetches_;
  std::atomic<int> live_streams_{0};
  // Keys of received requests being written (a second envelope reusing the id waits).
  mutable absl::Mutex mu_;
  std::set<std::string> receiving_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  std::thread sweeper_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_EVIDENCE_REQUESTS_H_
