#include "server/federation/witness.h"

#include <cstdio>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ledger/base/log.h"
#include "ledger/merkle.h"
#include "server/federation/peers.h"

namespace corridor {
namespace {

// How long one call to a peer may take.
constexpr absl::Duration kCallDeadline = absl::Seconds(5);
// This node's checkpoints whose cosignatures are kept (older ones are pruned).
constexpr int kKeptCheckpoints = 100;

std::string SizeKey(uint64_t size) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%020llu", static_cast<unsigned long long>(size));
  return buf;
}

// The checkpoint note with only the signatures `keep` accepts.
// `n`'s body with the first of its signature lines that `verifies` alone, or
// "" if none does: what is stored of a note a peer handed over, so that a line
// it added (a second line under a key's name, or one that does not verify)
// never reaches the checkpoint this node serves.
std::string OneVerifiedLine(const note::Note& n,
                            const std::function<bool(const note::Note&)>& verifies) {
  for (const auto& s : n.signatures) {
    note::Note one;
    one.body = n.body;
    one.signatures.push_back(s);
    if (verifies(one)) return note::FormatNote(one);
  }
  return "";
}

bool SameRoot(const note::Checkpoint& a, const note::Checkpoint& b) { return a.root == b.root; }

// Parses a note within the bounds every peer input is held to.
absl::StatusOr<note::Note> BoundedNote(const std::string& text) {
  if (text.size() > kMaxCheckpointNoteBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint is larger than ", kMaxCheckpointNoteBytes, " bytes"));
  }
  auto n = note::ParseNote(text);
  if (!n.ok()) return absl::InvalidArgumentError("the checkpoint is not a signed note");
  if (n->signatures.size() > static_cast<size_t>(kMaxNoteSignatures)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the checkpoint carries more than ", kMaxNoteSignatures, " signatures"));
  }
  return n;
}

}  // namespace

Witness::Witness(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
                 ledger::Ledger* ledger, AccessLog* log, rocksdb::DB* db,
                 rocksdb::ColumnFamilyHandle* family, const Signer* key, StubFor stub_for,
                 const Clock* clock)
    : config_(config),
      identity_(std::move(identity)),
      ledger_(ledger),
      log_(log),
      db_(db),
      family_(family),
      key_(key),
      stub_for_(std::move(stub_for)),
      clock_(clock),
      interval_(absl::Seconds(config.limits().witness_interval_seconds())) {}

Witness::~Witness() { Stop(); }

std::string Witness::WitnessName(const std::string& federation, const std::string& org) {
  return absl::StrCat(federation, "/", org);
}

int64_t Witness::NowUnix() const { return absl::ToUnixSeconds(clock_->Now()); }

absl::Status Witness::Load() {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), family_));
  absl::MutexLock lock(&mu_);
  for (it->Seek("fork/"); it->Valid() && it->key().starts_with("fork/"); it->Next()) {
    v1::ForkEvidence fork;
    if (!fork.ParseFromString(it->value().ToString())) {
      return absl::DataLossError(absl::StrCat("the stored witness state is damaged (",
                                              it->key().ToString(), " does not parse)"));
    }
    peers_[fork.org()].fork = fork;
  }
  for (it->Seek("seen/"); it->Valid() && it->key().starts_with("seen/"); it->Next()) {
    const std::string org = it->key().ToString().substr(5);
    auto n = note::ParseNote(it->value().ToString());
    auto cp = n.ok() ? note::ParseCheckpointBody(n->body) : n.status();
    if (!cp.ok()) {
      return absl::DataLossError(absl::StrCat("the stored witness state is damaged (",
                                              it->key().ToString(), " does not parse)"));
    }
    peers_[org].seen = Seen{it->value().ToString(), *cp, 0};
  }
  return absl::OkStatus();
}

void Witness::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void Witness::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    if (in_flight_ != nullptr) in_flight_->TryCancel();
  }
  if (thread_.joinable()) thread_.join();
}

void Witness::Loop() {
  for (;;) {
    RunOnce();
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), interval_);
    if (stopping_) return;
  }
}

std::vector<std::string> Witness::PeerOrgs() const {
  std::vector<std::string> orgs;
  auto roster = identity_->roster();
  for (const auto& m : roster->members()) {
    if (m.org() != config_.org()) orgs.push_back(m.org());
  }
  return orgs;
}

void Witness::RunOnce() {
  for (const std::string& org : PeerOrgs()) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      if (peers_[org].fork.has_value()) continue;  // a forked peer is not cosigned again
    }
    RoundFor(org);
  }
}

std::vector<note::Verifier> Witness::Keys(const std::string& org, uint8_t type) const {
  std::vector<note::Verifier> keys;
  auto roster = identity_->roster();
  for (const auto& m : roster->members()) {
    if (m.org() != org) continue;
    for (const auto& k : m.signing_keys()) {
      if (k.status() == v1::KEY_STATUS_REVOKED) continue;
      auto raw = Base64Decode(k.public_key());
      if (!raw.ok()) continue;
      if (auto pub = Ed25519PublicKey::FromRaw(*raw); pub.ok()) {
        keys.push_back(note::Verifier{WitnessName(config_.federation(), org), type, *pub});
      }
    }
  }
  return keys;
}

absl::StatusOr<note::Checkpoint> Witness::OpenWithRoster(const std::string& org,
                                                         const std::string& text) const {
  for (const note::Verifier& v : Keys(org, 0x01)) {
    auto cp = note::OpenCheckpoint(text, v);
    if (!cp.ok()) continue;
    if (cp->origin != WitnessName(config_.federation(), org)) {
      return absl::InvalidArgumentError(
          absl::StrCat("the checkpoint's origin is not the ledger of ", org));
    }
    return cp;
  }
  return absl::PermissionDeniedError(
      absl::StrCat("the checkpoint does not verify with any key the roster lists for ", org));
}

void Witness::SetError(const std::string& org, std::string error) {
  absl::MutexLock lock(&mu_);
  peers_[org].error = std::move(error);
}

void Witness::RoundFor(const std::string& org) {
  std::shared_ptr<v1::PeerService::Stub> stub = stub_for_(org);
  if (stub == nullptr) return;
  v1::PeerCheckpointRequest req;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    const Peer& p = peers_[org];
    if (p.seen.has_value()) req.set_witnessed_size(p.seen->checkpoint.size);
    in_flight_ = &ctx;
  }
  v1::PeerCheckpoint resp;
  grpc::Status s = stub->GetCheckpoint(&ctx, req, &resp);
  {
    absl::MutexLock lock(&mu_);
    in_flight_ = nullptr;
  }
  if (!s.ok()) {
    // An unreachable or refusing peer is not a fork: it is only not witnessed.
    SetError(org, absl::StrCat("could not get its checkpoint: ", DescribePeerCallError(s)));
    return;
  }
  NoteRestore(org, resp);
  Check(org, resp);
  CheckGossip(org, resp);
  HandBack(org);
}

void Witness::RecordRefusedAnswer(const std::string& org, const absl::Status& why) {
  SetError(org, std::string(why.message()));
  log::Warn("witness.refused", {{"peer", org}, {"reason", why.message()}});
  v1::AccessEvent ev;
  ev.set_actor_org(org);
  ev.set_actor_subject("node");
  ev.set_action("witness.checkpoint");
  ev.set_resource_kind("ledger");
  ev.set_peer_org(org);
  ev.set_outcome(v1::ACCESS_OUTCOME_DENIED);
  ev.set_reason(std::string(why.message()));
  if (absl::Status st = log_->RecordRefusalSync(ev); !st.ok()) {
    log::Error("access.unrecorded", {{"action", "witness.checkpoint"}, {"error", st.message()}});
  }
}

void Witness::Check(const std::string& org, const v1::PeerCheckpoint& resp) {
  if (resp.consistency_proof_size() > kMaxProofHashes || resp.witnessed_size() > kMaxGossipNotes) {
    return RecordRefusedAnswer(org, absl::InvalidArgumentError("the answer is too large"));
  }
  if (auto n = BoundedNote(resp.checkpoint()); !n.ok()) return RecordRefusedAnswer(org, n.status());
  auto cp = OpenWithRoster(org, resp.checkpoint());
  if (!cp.ok()) return RecordRefusedAnswer(org, cp.status());
  std::optional<Seen> seen;
  {
    absl::MutexLock lock(&mu_);
    seen = peers_[org].seen;
  }
  v1::ForkEvidence fork;
  fork.set_org(org);
  fork.set_first_from(org);
  if (seen.has_value()) {
    fork.set_first_checkpoint(seen->note);
    fork.set_second_checkpoint(resp.checkpoint());
    const uint64_t m = seen->checkpoint.size, n = cp->size;
    if (n < m) {
      fork.set_kind("smaller");
      return RecordFork(std::move(fork));
    }
    if (n == m) {
      if (!SameRoot(seen->checkpoint, *cp)) {
        fork.set_kind("same-size");
        return RecordFork(std::move(fork));
      }
      return SetError(org, "");  // nothing new
    }
    std::vector<merkle::Hash> proof;
    bool well_formed = true;
    for (const std::string& h : resp.consistency_proof()) {
      auto hash = merkle::FromBytes(h);
      well_formed = well_formed && hash.ok();
      if (hash.ok()) proof.push_back(*hash);
    }
    if (m > 0 && (!well_formed ||
                  !merkle::VerifyConsistency(m, n, seen->checkpoint.root, cp->root, proof).ok())) {
      fork.set_kind("proof-fails");
      *fork.mutable_proof() = resp.consistency_proof();
      return RecordFork(std::move(fork));
    }
  }
  RecordSeen(org, resp.checkpoint(), *cp);
}

void Witness::RecordSeen(const std::string& org, const std::string& text,
                         const note::Checkpoint& cp) {
  v1::AccessEvent ev;
  ev.set_actor_org(config_.org());
  ev.set_actor_subject("node");
  ev.set_action("witness.checkpoint");
  ev.set_resource_kind("ledger");
  ev.set_resource_id(absl::StrCat(cp.size));
  ev.set_peer_org(org);
  ev.set_payload_sha256(DigestBytes(Sha256(text)));
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  auto change = std::make_unique<ledger::Mutation>();
  change->Put(kWitnessFamily, "seen/" + org, text);
  // Recorded first: what is not in this node's ledger was not witnessed.
  if (auto idx = log_->RecordSync({ev}, std::move(change)); !idx.ok()) {
    return SetError(org,
                    absl::StrCat("could not record the observation: ", idx.status().message()));
  }
  absl::MutexLock lock(&mu_);
  Peer& p = peers_[org];
  p.seen = Seen{text, cp, NowUnix()};
  p.error.clear();
  p.cosigned = false;
}

void Witness::NoteRestore(const std::string& org, const v1::PeerCheckpoint& resp) {
  if (!resp.has_restored()) return;
  const v1::RestoreInfo& info = resp.restored();
  if (BoundedNote(info.backup_checkpoint()).ok() && info.manifest_sha256().size() <= 64) {
    auto cp = OpenWithRoster(org, info.backup_checkpoint());
    if (cp.ok() && cp->size == info.ledger_size()) {
      absl::MutexLock lock(&mu_);
      Peer& p = peers_[org];
      if (!p.restored.has_value() || p.restored->manifest_sha256() != info.manifest_sha256()) {
        log::Warn("witness.peer_restored", {{"peer", org},
                                            {"ledger_size", info.ledger_size()},
                                            {"backup_unix", info.backup_unix()},
                                            {"restored_unix", info.restored_unix()}});
      }
      p.restored = info;
      return;
    }
  }
  log::Warn("witness.restore_notice_refused",
            {{"peer", org}, {"reason", "its backup checkpoint does not verify"}});
}

void Witness::SetRestored(v1::RestoreInfo info) {
  absl::MutexLock lock(&mu_);
  restored_ = std::move(info);
}

void Witness::RecordFork(v1::ForkEvidence fork) {
  fork.set_detected_unix(NowUnix());
  const std::string org = fork.org();
  {
    absl::MutexLock lock(&mu_);
    const Peer& p = peers_[org];
    if (p.restored.has_value() && fork.first_from() == org) *fork.mutable_restored() = *p.restored;
  }
  auto first = note::ParseNote(fork.first_checkpoint());
  auto second = note::ParseNote(fork.second_checkpoint());
  auto size_of = [](const absl::StatusOr<note::Note>& n) -> uint64_t {
    if (!n.ok()) return 0;
    auto cp = note::ParseCheckpointBody(n->body);
    return cp.ok() ? cp->size : 0;
  };
  log::Error("witness.fork", {{"peer", org},
                              {"kind", fork.kind()},
                              {"first_size", size_of(first)},
                              {"second_size", size_of(second)},
                              {"first_from", fork.first_from()}});
  v1::AccessEvent ev;
  ev.set_actor_org(config_.org());
  ev.set_actor_subject("node");
  ev.set_action("witness.fork");
  ev.set_resource_kind("ledger");
  ev.set_resource_id(absl::StrCat(size_of(second)));
  ev.set_peer_org(org);
  ev.set_payload_sha256(DigestBytes(Sha256(fork.second_checkpoint())));
  ev.set_outcome(v1::ACCESS_OUTCOME_ERROR);
  ev.set_reason(absl::StrCat("fork: ", fork.kind(),
                             fork.has_restored()
                                 ? absl::StrCat(" (the peer says it was restored from a backup "
                                                "at ledger size ",
                                                fork.restored().ledger_size(), ")")
                                 : ""));
  auto change = std::make_unique<ledger::Mutation>();
  change->Put(kWitnessFamily, "fork/" + org, fork.SerializeAsString());
  if (auto idx = log_->RecordSync({ev}, std::move(change)); !idx.ok()) {
    log::Error("access.unrecorded",
               {{"action", "witness.fork"}, {"error", idx.status().message()}});
  }
  // Shown and acted on even if the ledger could not record it.
  absl::MutexLock lock(&mu_);
  Peer& p = peers_[org];
  p.fork = std::move(fork);
  p.error = "forked: this node refuses to cosign its checkpoints";
}

void Witness::CheckGossip(const std::string& from, const v1::PeerCheckpoint& resp) {
  if (resp.witnessed_size() > kMaxGossipNotes) return;
  const std::string prefix = config_.federation() + "/";
  for (const std::string& text : resp.witnessed()) {
    auto n = BoundedNote(text);
    if (!n.ok()) continue;
    auto body = note::ParseCheckpointBody(n->body);
    if (!body.ok() || !absl::StartsWith(body->origin, prefix)) continue;
    const std::string org = body->origin.substr(prefix.size());
    if (org == config_.org() || org == from) continue;
    auto cp = OpenWithRoster(org, text);
    if (!cp.ok()) continue;
    std::optional<Seen> seen;
    {
      absl::MutexLock lock(&mu_);
      auto it = peers_.find(org);
      if (it == peers_.end() || it->second.fork.has_value()) continue;
      seen = it->second.seen;
    }
    if (!seen.has_value() || seen->checkpoint.size != cp->size || SameRoot(seen->checkpoint, *cp))
      continue;
    v1::ForkEvidence fork;
    fork.set_org(org);
    fork.set_kind("gossip-same-size");
    fork.set_first_checkpoint(seen->note);
    fork.set_first_from(org);
    fork.set_second_checkpoint(text);
    RecordFork(std::move(fork));
  }
}

void Witness::HandBack(const std::string& org) {
  std::string text;
  {
    absl::MutexLock lock(&mu_);
    Peer& p = peers_[org];
    if (p.fork.has_value() || !p.seen.has_value() || p.cosigned) return;
    text = p.seen->note;
  }
  auto n = note::ParseNote(text);
  auto cp = n.ok() ? note::ParseCheckpointBody(n->body) : n.status();
  if (!cp.ok()) return;
  auto cosignature = note::CosignWith(*cp, WitnessName(config_.federation(), config_.org()), *key_,
                                      static_cast<uint64_t>(NowUnix()));
  if (!cosignature.ok()) {
    log::Error("witness.cosign_failed", {{"peer", org}, {"error", cosignature.status().message()}});
    return;
  }
  n->signatures.push_back(*std::move(cosignature));
  v1::AddCosignatureRequest req;
  req.set_cosigned_checkpoint(note::FormatNote(*n));
  v1::AddCosignatureResponse resp;
  std::shared_ptr<v1::PeerService::Stub> stub = stub_for_(org);
  if (stub == nullptr) return;
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + kCallDeadline));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    in_flight_ = &ctx;
  }
  grpc::Status s = stub->AddCosignature(&ctx, req, &resp);
  {
    absl::MutexLock lock(&mu_);
    in_flight_ = nullptr;
  }
  if (!s.ok()) {
    return SetError(
        org, absl::StrCat("could not hand back the cosignature: ", DescribePeerCallError(s)));
  }
  absl::MutexLock lock(&mu_);
  Peer& p = peers_[org];
  if (p.seen.has_value() && p.seen->checkpoint.size == cp->size) p.cosigned = true;
}

std::string Witness::Published() {
  const ledger::Head head = ledger_->head();
  absl::MutexLock lock(&mu_);
  const bool all_cosigned = published_cosigners_.size() >= PeerOrgs().size();
  if (published_.empty() || all_cosigned || clock_->Now() - published_at_ > 3 * interval_ ||
      head.size < published_size_) {
    if (head.size != published_size_ || published_.empty()) {
      published_ = head.checkpoint;
      published_size_ = head.size;
      published_at_ = clock_->Now();
      published_cosigners_.clear();
    }
  }
  return published_;
}

absl::StatusOr<v1::PeerCheckpoint> Witness::Answer(const std::string& caller_org,
                                                   const v1::PeerCheckpointRequest& req) {
  v1::PeerCheckpoint out;
  out.set_checkpoint(Published());
  auto n = note::ParseNote(out.checkpoint());
  auto cp = n.ok() ? note::ParseCheckpointBody(n->body) : n.status();
  if (!cp.ok()) return absl::UnavailableError("this node has no checkpoint yet");
  const uint64_t m = req.witnessed_size();
  if (m > 0 && m < cp->size) {
    auto proof = ledger_->ConsistencyProof(m, cp->size);
    if (!proof.ok()) return proof.status();
    for (const merkle::Hash& h : *proof) out.add_consistency_proof(merkle::ToBytes(h));
  }
  absl::MutexLock lock(&mu_);
  for (const auto& [org, p] : peers_) {
    if (org != caller_org && p.seen.has_value() && !p.fork.has_value()) {
      out.add_witnessed(p.seen->note);
    }
  }
  if (restored_.has_value()) *out.mutable_restored() = *restored_;
  return out;
}

absl::StatusOr<uint32_t> Witness::AddCosignature(const std::string& caller_org,
                                                 const std::string& cosigned_note) {
  auto n = BoundedNote(cosigned_note);
  if (!n.ok()) return n.status();
  auto cp = note::ParseCheckpointBody(n->body);
  const note::Verifier own = ledger_->verifier();
  if (!cp.ok() || !note::VerifyNote(*n, own).ok()) {
    return absl::InvalidArgumentError("this is not a checkpoint this node signed");
  }
  auto root =
      cp->size <= ledger_->head().size ? ledger_->RootAt(cp->size) : absl::OutOfRangeError("");
  if (!root.ok() || *root != cp->root) {
    return absl::InvalidArgumentError("this is not a checkpoint of this node's ledger");
  }
  const note::Verifier* by = nullptr;
  const std::vector<note::Verifier> keys = Keys(caller_org, 0x04);
  for (const note::Verifier& k : keys) {
    if (note::VerifyCosignature(*n, k).ok()) by = &k;
  }
  if (by == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(
        "no cosignature on it verifies with a witness key the roster lists for ", caller_org));
  }
  const std::string ours =
      OneVerifiedLine(*n, [&](const note::Note& one) { return note::VerifyNote(one, own).ok(); });
  const std::string theirs = OneVerifiedLine(
      *n, [&](const note::Note& one) { return note::VerifyCosignature(one, *by).ok(); });
  absl::MutexLock store_lock(&store_mu_);
  rocksdb::WriteBatch batch;
  batch.Put(family_, "ckpt/" + SizeKey(cp->size), ours);
  batch.Put(family_, "cosig/" + SizeKey(cp->size) + "/" + caller_org, theirs);
  // Keep the newest kKeptCheckpoints checkpoints' cosignatures.
  std::vector<std::string> sizes;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), family_));
  for (it->Seek("ckpt/"); it->Valid() && it->key().starts_with("ckpt/"); it->Next()) {
    sizes.push_back(it->key().ToString().substr(5));
  }
  for (size_t i = 0; i + kKeptCheckpoints < sizes.size(); ++i) {
    batch.Delete(family_, "ckpt/" + sizes[i]);
    batch.DeleteRange(family_, "cosig/" + sizes[i] + "/", "cosig/" + sizes[i] + "0");
  }
  rocksdb::WriteOptions sync;
  sync.sync = true;
  if (auto st = db_->Write(sync, &batch); !st.ok()) {
    return absl::UnavailableError("this node could not store the cosignature; try again later");
  }
  uint32_t count = 0;
  const std::string prefix = "cosig/" + SizeKey(cp->size) + "/";
  it.reset(db_->NewIterator(rocksdb::ReadOptions(), family_));  // sees the write
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) ++count;
  absl::MutexLock lock(&mu_);
  if (cp->size == published_size_) published_cosigners_.insert(caller_org);
  return count;
}

absl::StatusOr<CosignedCheckpoint> Witness::LatestCosigned(uint32_t k) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), family_));
  for (it->SeekForPrev("ckpt/~"); it->Valid() && it->key().starts_with("ckpt/"); it->Prev()) {
    const std::string size_key = it->key().ToString().substr(5);
    auto n = note::ParseNote(it->value().ToString());
    if (!n.ok()) continue;
    CosignedCheckpoint out;
    std::unique_ptr<rocksdb::Iterator> c(db_->NewIterator(rocksdb::ReadOptions(), family_));
    const std::string prefix = "cosig/" + size_key + "/";
    for (c->Seek(prefix); c->Valid() && c->key().starts_with(prefix); c->Next()) {
      const std::string org = c->key().ToString().substr(prefix.size());
      auto cn = note::ParseNote(c->value().ToString());
      if (!cn.ok() || cn->body != n->body) continue;
      for (const note::Verifier& key : Keys(org, 0x04)) {
        if (!note::VerifyCosignature(*cn, key).ok()) continue;
        for (const auto& s : cn->signatures) n->signatures.push_back(s);
        out.cosigners.push_back(org);
        break;
      }
    }
    if (out.cosigners.size() < k) continue;
    auto cp = note::ParseCheckpointBody(n->body);
    if (!cp.ok()) continue;
    out.note = note::FormatNote(*n);
    out.size = cp->size;
    out.root = merkle::ToBytes(cp->root);
    return out;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("this node holds no checkpoint cosigned by at least ", k,
                   " peers: fewer peers witness it, or they have not yet (each witnesses every ",
                   absl::ToInt64Seconds(interval_), " s)"));
}

void Witness::Annotate(v1::PeerStatus* status) const {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(status->org());
  if (it == peers_.end()) return;
  const Peer& p = it->second;
  if (p.seen.has_value()) {
    status->set_witnessed_size(p.seen->checkpoint.size);
    status->set_witnessed_unix(p.seen->unix);
  }
  status->set_witness_error(p.error);
  if (p.fork.has_value()) *status->mutable_fork() = *p.fork;
  if (p.restored.has_value()) *status->mutable_restored() = *p.restored;
}

}  // namespace corridor
