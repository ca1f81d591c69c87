// Exchange: the node's side of the federation protocol (docs/federation.md).
//
// Sending: envelopes are written to a durable outbox in the same batch as the
// ledger entry that records the send; a delivery thread retries each with
// exponential backoff and jitter, across restarts and peer outages, until a
// signed receipt comes back (stored and recorded in the ledger) or the
// envelope expires. Receiving: Deliver() verifies an envelope completely
// before anything but a denial is written, deduplicates by envelope id (a
// redelivery returns the original receipt and changes nothing), applies the
// body to the local case, and answers with a signed receipt naming the ledger
// index of the receive entry. Thread-safe.
#ifndef CORRIDOR_SERVER_EXCHANGE_H_
#define CORRIDOR_SERVER_EXCHANGE_H_

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/grpc_util.h"
#include "corridor/v1/config.pb.h"
#include "corridor/v1/federation.pb.h"
#include "corridor/v1/node.grpc.pb.h"
#include "corridor/v1/storage.pb.h"
#include "server/access_log.h"
#include "server/case_store.h"
#include "server/identity.h"

namespace corridor {

inline constexpr char kOutboxFamily[] = "outbox";
inline constexpr char kReceivedFamily[] = "envelopes_in";
inline constexpr char kReferralIndexFamily[] = "referrals";  // referral id → local case id

class Exchange {
 public:
  Exchange(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
           const Ed25519PrivateKey* signing_key, rocksdb::DB* db,
           const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families, CaseStore* cases,
           AccessLog* log, TlsIdentity tls);
  ~Exchange();

  void Start();  // the delivery thread
  void Stop();
  // Nudges the delivery thread (after an outbox write committed).
  void Wake();

  // A new payload from this node to `to` under `agreement` / `purpose`.
  v1::EnvelopePayload NewPayload(const std::string& to, const std::string& agreement,
                                 const std::string& purpose) const;
  // Signs `payload` and adds it to `batch` as a pending outbox item.
  v1::OutboxItem Enqueue(rocksdb::WriteBatch* batch, const v1::EnvelopePayload& payload,
                         const std::string& kind, const std::string& case_id,
                         const std::string& referral_id) const;
  // The referral index write for `batch`.
  void IndexReferral(rocksdb::WriteBatch* batch, const std::string& referral_id,
                     const std::string& case_id) const;
  absl::StatusOr<std::string> CaseForReferral(const std::string& referral_id) const;

  // Receiver: handles PeerService.Deliver from `caller`; `done` is called once.
  void Deliver(const Principal& caller, const v1::Envelope& envelope,
               std::function<void(grpc::Status, v1::Receipt)> done);

  absl::StatusOr<std::vector<v1::OutboxItem>> Outbox() const;

  // Signs new envelopes and receipts with `key` (listed as `key_id` in the
  // roster in force, checked by the caller) from now on, without a restart.
  void RotateSigningKey(std::shared_ptr<const Ed25519PrivateKey> key, std::string key_id);
  std::shared_ptr<const v1::Roster> roster() const { return identity_->roster(); }
  const v1::NodeConfig& config() const { return config_; }

 private:
  void Run();
  void DeliverOne(v1::OutboxItem item);
  v1::PeerService::Stub* StubFor(const std::string& org);
  absl::StatusOr<std::unique_ptr<rocksdb::WriteBatch>> ApplyBody(const v1::Envelope& envelope,
                                                                 const v1::EnvelopePayload& p,
                                                                 std::string* case_id,
                                                                 std::string* locked);
  absl::StatusOr<v1::Receipt> ReceiptFor(const std::string& envelope_id,
                                         const std::string& digest) const;

  const v1::NodeConfig config_;
  std::shared_ptr<IdentityResolver> identity_;
  // The key envelopes and receipts are signed with; replaced by RotateSigningKey.
  struct Signer {
    std::shared_ptr<const Ed25519PrivateKey> key;
    std::string key_id;
  };
  Signer signer() const;
  mutable absl::Mutex signer_mu_;
  Signer signer_ ABSL_GUARDED_BY(signer_mu_);
  rocksdb::DB* db_;
  rocksdb::ColumnFamilyHandle* outbox_;
  rocksdb::ColumnFamilyHandle* received_;
  rocksdb::ColumnFamilyHandle* referrals_;
  CaseStore* cases_;
  AccessLog* log_;
  const TlsIdentity tls_;

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool woken_ ABSL_GUARDED_BY(mu_) = false;
  std::map<std::string, std::unique_ptr<v1::PeerService::Stub>> stubs_ ABSL_GUARDED_BY(mu_);
  // Envelope ids being received right now: a concurrent duplicate waits its turn.
  std::set<std::string> receiving_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_EXCHANGE_H_
