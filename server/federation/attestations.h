// Attestations: who saw a referred case across the border, and whether two
// nodes agree on what they exchanged (docs/federation.md, "Access
// attestations" and "Reconciliation"; docs/audit.md, "Downstream access").
//
// Receiver: once a read of a case it received (GetCase, ListEvidence,
// GetEvidence) is durable in its ledger, Attest() queues one signed
// AccessAttestation envelope per org that referred the case to it, through
// the exchange's outbox, naming the read's ledger index; the outbox write and one
// `attestation.send` entry per envelope commit in one synced batch before the
// read is answered. ProveAccess() serves a peer the inclusion proof of a read
// it attested to that peer, and nothing else.
//
// Originator: Apply() (the exchange's body handler) checks a received
// attestation against the referral index (the case named must be the one this
// node referred to the sender through the referral named) and records one
// `downstream.access` entry about its own case, which carries the signed
// envelope as received: the ledger is the durable store of attestations.
// Anything else is refused by the exchange as one denied `envelope.receive`
// entry and changes nothing.
//
// Both: ListExchanged() lists the envelopes this node recorded exchanging
// with a peer; ProveDownstream() and Reconcile() are the auditor's side,
// calling the peer's PeerService. Thread-safe.
#ifndef CORRIDOR_SERVER_FEDERATION_ATTESTATIONS_H_
#define CORRIDOR_SERVER_FEDERATION_ATTESTATIONS_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "corridor/v1/case.pb.h"
#include "corridor/v1/node.pb.h"
#include "server/audit/access_log.h"
#include "server/federation/exchange.h"
#include "server/store/case_store.h"

namespace corridor {

class Attestations {
 public:
  // The most envelopes either side may list for one reconciliation.
  static constexpr size_t kMaxReconciled = 100000;
  // Peer calls of ProveDownstream and Reconcile get this deadline each.
  static constexpr absl::Duration kPeerCallDeadline = absl::Seconds(10);

  // None owned; all must outlive this object.
  Attestations(const v1::NodeConfig& config, Exchange* exchange, CaseStore* cases, AccessLog* log)
      : config_(config), exchange_(exchange), cases_(cases), log_(log) {}

  // Receiver: `read` (an allowed case.get, evidence.list or evidence.get, recorded at ledger
  // `index`) of case `c`. If `c` was received from other orgs, queues one
  // attestation for each and records it; `done` gets OK once that is durable
  // (at once if `c` was received from no one), or why it could not be queued.
  // `done` runs on the access log's completions executor.
  void Attest(const v1::Case& c, const v1::AccessEvent& read, uint64_t index,
              std::function<void(absl::Status)> done);

  // Originator: the exchange's body handler.
  static bool Handles(const v1::EnvelopePayload& p) { return p.has_access_attestation(); }
  Exchange::Applied Apply(const v1::Envelope& envelope, const v1::EnvelopePayload& p);

  // Receiver, for PeerService.ProveAccess from `caller_org`: the inclusion
  // proof of entry `index` at the ledger's latest size, with its signed
  // checkpoint. PermissionDenied unless the entry is an allowed read of a case
  // this node received from `caller_org` (what it attested to that org).
  absl::StatusOr<v1::InclusionProofResponse> ProveAccess(const std::string& caller_org,
                                                         uint64_t index) const;
  // For PeerService.ListExchanged from `peer`: one page of the envelopes this
  // node recorded sending to (`req.sent`) or receiving from `peer`.
  // InvalidArgument for a bad page token.
  absl::StatusOr<v1::ListExchangedResponse> ListExchanged(
      const std::string& peer, const v1::ListExchangedRequest& req) const;

  // Auditor: PeerService.ProveAccess of `org`'s node. The answer is only what
  // the peer sent: the caller checks it with `org`'s roster key.
  absl::StatusOr<v1::InclusionProofResponse> ProveDownstream(const std::string& org,
                                                             uint64_t index);
  // Auditor: both sides' lists of the envelopes exchanged with `peer`
  // compared by (sender, recipient, envelope id, digest). ResourceExhausted
  // past kMaxReconciled on either side; the peer's errors as it gave them.
  absl::StatusOr<v1::ReconcileResponse> Reconcile(const std::string& peer);

 private:
  // The attestation envelope of `read` (at `index`) of `c` for incoming `link`.
  v1::EnvelopePayload AttestationFor(const v1::Case& c, const v1::ReferralLink& link,
                                     const v1::AccessEvent& read, uint64_t index) const;
  // The local case attestation `p` is about; PermissionDenied unless this
  // node referred it to the sender through the referral named.
  absl::StatusOr<v1::Case> ReferredCase(const v1::EnvelopePayload& p) const;
  // Every envelope of one direction with `peer`, from this node's ledger or
  // the peer's (`remote`), paged.
  absl::StatusOr<std::vector<v1::ExchangedEnvelope>> AllExchanged(const std::string& peer,
                                                                  bool sent, bool remote);

  const v1::NodeConfig config_;
  Exchange* exchange_;
  CaseStore* cases_;
  AccessLog* log_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_FEDERATION_ATTESTATIONS_H_
