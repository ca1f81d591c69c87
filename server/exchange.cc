#include "server/exchange.h"

#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/yaml_proto.h"
#include "server/envelope.h"
#include "server/log.h"
#include "server/store.h"

namespace corridor {
namespace {

constexpr absl::Duration kEnvelopeLifetime = absl::Hours(24 * 7);
constexpr absl::Duration kBaseBackoff = absl::Milliseconds(250);
constexpr absl::Duration kMaxBackoff = absl::Seconds(30);

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
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

}  // namespace

Exchange::Exchange(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
                   const Ed25519PrivateKey* signing_key, rocksdb::DB* db,
                   const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families,
                   CaseStore* cases, AccessLog* log, TlsIdentity tls)
    : config_(config),
      identity_(std::move(identity)),
      signer_{
          std::shared_ptr<const Ed25519PrivateKey>(signing_key, [](const Ed25519PrivateKey*) {}),
          config.signing_key().key_id()},
      db_(db),
      outbox_(families.at(kOutboxFamily)),
      received_(families.at(kReceivedFamily)),
      referrals_(families.at(kReferralIndexFamily)),
      cases_(cases),
      log_(log),
      tls_(std::move(tls)) {}

Exchange::~Exchange() { Stop(); }

Exchange::Signer Exchange::signer() const {
  absl::MutexLock lock(&signer_mu_);
  return signer_;
}

void Exchange::RotateSigningKey(std::shared_ptr<const Ed25519PrivateKey> key, std::string key_id) {
  absl::MutexLock lock(&signer_mu_);
  signer_ = Signer{std::move(key), std::move(key_id)};
}

void Exchange::Start() {
  thread_ = std::thread([this] { Run(); });
}

void Exchange::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

void Exchange::Wake() {
  absl::MutexLock lock(&mu_);
  woken_ = true;
}

v1::EnvelopePayload Exchange::NewPayload(const std::string& to, const std::string& agreement,
                                         const std::string& purpose) const {
  const absl::Time now = absl::Now();
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

v1::OutboxItem Exchange::Enqueue(rocksdb::WriteBatch* batch, const v1::EnvelopePayload& payload,
                                 const std::string& kind, const std::string& case_id,
                                 const std::string& referral_id) const {
  v1::OutboxItem item;
  const Signer s = signer();
  v1::EnvelopePayload signed_payload = payload;
  signed_payload.set_key_id(s.key_id);
  *item.mutable_envelope() = SignEnvelope(signed_payload, *s.key);
  item.set_envelope_id(payload.envelope_id());
  item.set_recipient_org(payload.recipient_org());
  item.set_kind(kind);
  item.set_state("pending");
  item.set_expires_unix(payload.expires_unix());
  item.set_created_unix(payload.created_unix());
  item.set_case_id(case_id);
  item.set_referral_id(referral_id);
  batch->Put(outbox_, item.envelope_id(), item.SerializeAsString());
  return item;
}

void Exchange::IndexReferral(rocksdb::WriteBatch* batch, const std::string& referral_id,
                             const std::string& case_id) const {
  batch->Put(referrals_, referral_id, case_id);
}

absl::StatusOr<std::string> Exchange::CaseForReferral(const std::string& referral_id) const {
  std::string case_id;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), referrals_, referral_id, &case_id);
  if (s.IsNotFound())
    return absl::NotFoundError(absl::StrCat("there is no referral ", referral_id));
  if (!s.ok()) return FromRocksStatus(s, "reading the referral index");
  return case_id;
}

absl::StatusOr<std::vector<v1::OutboxItem>> Exchange::Outbox() const {
  std::vector<v1::OutboxItem> out;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), outbox_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    v1::OutboxItem item;
    if (item.ParseFromString(it->value().ToString())) out.push_back(std::move(item));
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "reading the outbox");
  return out;
}

// ---- sending -------------------------------------------------------------------

void Exchange::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stopping_ || woken_; };
      mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(200));
      if (stopping_) return;
      woken_ = false;
    }
    auto items = Outbox();
    if (!items.ok()) {
      log::Error("outbox.unreadable", {{"error", items.status().message()}});
      continue;
    }
    const int64_t now_ms = absl::ToUnixMillis(absl::Now());
    for (v1::OutboxItem& item : *items) {
      if (item.state() != "pending" || item.next_attempt_unix_ms() > now_ms) continue;
      {
        absl::MutexLock lock(&mu_);
        if (stopping_) return;
      }
      DeliverOne(std::move(item));
    }
  }
}

v1::PeerService::Stub* Exchange::StubFor(const std::string& org) {
  absl::MutexLock lock(&mu_);
  auto it = stubs_.find(org);
  if (it != stubs_.end()) return it->second.get();
  for (const auto& m : roster()->members()) {
    if (m.org() != org) continue;
    TlsIdentity id = tls_;
    id.roots_pem = m.ca_cert_pem();
    auto stub = v1::PeerService::NewStub(
        MakeMutualTlsChannel(id, m.endpoint(), "", config_.limits().max_message_bytes()));
    return (stubs_[org] = std::move(stub)).get();
  }
  return nullptr;
}

void Exchange::DeliverOne(v1::OutboxItem item) {
  const absl::Time now = absl::Now();
  auto save = [this](const v1::OutboxItem& i) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    return db_->Put(wo, outbox_, i.envelope_id(), i.SerializeAsString());
  };
  if (now > absl::FromUnixSeconds(item.expires_unix())) {
    item.set_state("failed");
    item.set_last_error(absl::StrCat("expired before delivery: ", item.last_error()));
    (void)save(item);
    log::Warn("outbox.expired", {{"envelope", item.envelope_id()}, {"to", item.recipient_org()}});
    return;
  }
  v1::PeerService::Stub* stub = StubFor(item.recipient_org());
  grpc::Status s;
  v1::Receipt receipt;
  if (stub == nullptr) {
    s = grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                     absl::StrCat(item.recipient_org(), " is no longer in the roster"));
  } else {
    grpc::ClientContext ctx;
    ctx.set_deadline(
        absl::ToChronoTime(now + absl::Seconds(config_.limits().peer_call_timeout_seconds())));
    s = stub->Deliver(&ctx, item.envelope(), &receipt);
  }
  item.set_attempts(item.attempts() + 1);
  if (!s.ok()) {
    item.set_last_error(s.error_message());
    if (Permanent(s.error_code())) {
      item.set_state("failed");
      log::Warn("outbox.refused", {{"envelope", item.envelope_id()},
                                   {"to", item.recipient_org()},
                                   {"error", s.error_message()}});
    } else {
      // Exponential backoff with jitter, capped.
      static thread_local std::mt19937_64 rng(std::random_device{}());
      absl::Duration backoff = kBaseBackoff * (1 << std::min<uint32_t>(item.attempts(), 10));
      backoff =
          std::min(backoff, kMaxBackoff) * std::uniform_real_distribution<double>(0.5, 1.5)(rng);
      item.set_next_attempt_unix_ms(absl::ToUnixMillis(now + backoff));
    }
    (void)save(item);
    return;
  }
  auto body = VerifyReceipt(receipt, item.envelope(), item.recipient_org(), *roster());
  if (!body.ok()) {
    item.set_last_error(absl::StrCat("bad receipt: ", body.status().message()));
    item.set_next_attempt_unix_ms(absl::ToUnixMillis(now + kMaxBackoff));
    (void)save(item);
    return;
  }
  item.set_state("delivered");
  item.set_last_error("");
  *item.mutable_receipt() = receipt;
  item.set_receipt_ledger_index(body->ledger_index());
  auto batch = std::make_unique<rocksdb::WriteBatch>();
  batch->Put(outbox_, item.envelope_id(), item.SerializeAsString());
  // The referral now shows as delivered on the sending case.
  std::string locked;
  if (item.kind() == "referral" && cases_->Lock(item.case_id()).ok()) {
    locked = item.case_id();
    if (auto c = cases_->Get(item.case_id()); c.ok()) {
      for (auto& link : *c->mutable_referrals()) {
        if (link.referral_id() == item.referral_id() && link.state() == v1::REFERRAL_STATE_QUEUED) {
          link.set_state(v1::REFERRAL_STATE_DELIVERED);
        }
      }
      (void)cases_->PutCase(batch.get(), *c);
    }
  }
  v1::AccessEvent ev;
  ev.set_actor_org(config_.org());
  ev.set_actor_subject("node");
  ev.set_action("envelope.receipt");
  ev.set_resource_kind("envelope");
  ev.set_resource_id(item.envelope_id());
  ev.set_case_id(item.case_id());
  ev.set_peer_org(item.recipient_org());
  ev.set_payload_sha256(EnvelopeDigest(item.envelope()));
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_reason(
      absl::StrCat("receipt: ", item.recipient_org(), " ledger index ", body->ledger_index()));
  auto st = log_->RecordSync({ev}, std::move(batch));
  if (!locked.empty()) cases_->Unlock(locked);
  if (!st.ok()) {
    log::Error("outbox.receipt_unrecorded",
               {{"envelope", item.envelope_id()}, {"error", st.status().message()}});
    return;  // still pending on disk: the next attempt gets the same receipt back
  }
  log::Info("outbox.delivered", {{"envelope", item.envelope_id()},
                                 {"to", item.recipient_org()},
                                 {"attempts", item.attempts()}});
}

// ---- receiving -----------------------------------------------------------------

absl::StatusOr<v1::Receipt> Exchange::ReceiptFor(const std::string& envelope_id,
                                                 const std::string& digest) const {
  auto hits = log_->ledger()->Lookup("envelope/" + envelope_id, ledger::Ledger::kFromNewest, 1);
  if (!hits.ok()) return hits.status();
  if (hits->empty()) return absl::UnavailableError("the receive entry is not visible yet; retry");
  auto entry = log_->ledger()->Entry(hits->front());
  if (!entry.ok()) return entry.status();
  auto ev = AccessLog::Decode(*entry);
  if (!ev.ok()) return ev.status();
  v1::ReceiptBody body;
  body.set_envelope_id(envelope_id);
  body.set_envelope_sha256(digest);
  body.set_receiver_org(config_.org());
  body.set_time_unix(ev->time_unix_micros() / 1000000);
  body.set_ledger_index(hits->front());
  const Signer s = signer();
  return SignReceipt(body, s.key_id, *s.key);
}

absl::StatusOr<std::unique_ptr<rocksdb::WriteBatch>> Exchange::ApplyBody(
    const v1::Envelope& envelope, const v1::EnvelopePayload& p, std::string* case_id,
    std::string* locked) {
  auto batch = std::make_unique<rocksdb::WriteBatch>();
  const std::string now = Rfc3339(absl::Now());
  auto note = [&](v1::Case& c, const std::string& text, const std::string& outcome,
                  v1::CaseStatus st) {
    v1::CaseNote* n = c.add_history();
    n->set_time(now);
    n->set_org(p.sender_org());
    n->set_author(p.has_update() ? p.update().author() : p.sender_org() + "/node");
    n->set_note(text);
    n->set_outcome(outcome);
    n->set_status(st);
  };
  if (p.has_referral()) {
    const v1::Referral& r = p.referral();
    std::string originator;
    if (!r.onward_permission().empty()) {
      EnvelopeContext ctx{p.sender_org(), config_.org(), roster().get(), absl::Now(),
                          config_.limits().max_message_bytes()};
      auto from = VerifyOnwardPermission(r.onward_permission(), p.sender_org(), p.purpose(),
                                         p.agreement(), ctx);
      if (!from.ok()) return from.status();
      originator = *from;
    }
    if (CaseForReferral(r.referral_id()).ok()) {
      return absl::AlreadyExistsError(
          absl::StrCat("referral ", r.referral_id(), " was already received"));
    }
    v1::Case c;
    c.set_id(CaseStore::NewCaseId());
    c.set_owner_org(config_.org());
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
    note(c,
         absl::StrCat("referral received from ", p.sender_org(),
                      originator.empty() ? "" : " with the permission of " + originator,
                      r.deidentified() ? " (de-identified)" : ""),
         "", v1::CASE_STATUS_INCOMING);
    auto create = cases_->PrepareCreate(c);
    if (!create.ok()) return create.status();
    batch = *std::move(create);
    IndexReferral(batch.get(), r.referral_id(), c.id());
    *case_id = c.id();
    return batch;
  }
  const std::string referral_id = p.has_decision() ? p.decision().referral_id()
                                  : p.has_update() ? p.update().referral_id()
                                                   : p.permission().referral_id();
  auto id = CaseForReferral(referral_id);
  if (!id.ok()) return id.status();
  *case_id = *id;
  if (auto st = cases_->Lock(*id); !st.ok()) return absl::UnavailableError(st.message());
  *locked = *id;
  auto c = cases_->Get(*id);
  if (!c.ok()) return c.status();
  v1::ReferralLink* link = nullptr;
  for (auto& l : *c->mutable_referrals()) {
    if (l.referral_id() == referral_id && l.peer_org() == p.sender_org()) link = &l;
  }
  if (link == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat(p.sender_org(), " is not party to referral ", referral_id));
  }
  if (p.has_decision()) {
    const auto& d = p.decision();
    link->set_state(d.accepted() ? v1::REFERRAL_STATE_ACCEPTED : v1::REFERRAL_STATE_DECLINED);
    link->set_peer_case_id(d.linked_case_id());
    link->set_reason(d.reason());
    note(*c,
         absl::StrCat(p.sender_org(),
                      d.accepted() ? " accepted the referral" : " declined the referral",
                      d.reason().empty() ? "" : ": " + d.reason()),
         "", v1::CASE_STATUS_UNSPECIFIED);
  } else if (p.has_permission()) {
    if (link->outgoing() || p.permission().holder_org() != config_.org()) {
      return absl::PermissionDeniedError("a permission must concern a referral this node received");
    }
    link->add_permissions(envelope.SerializeAsString());
    note(*c,
         absl::StrCat(p.sender_org(), " permits passing this case on to ",
                      p.permission().permitted_org(), " for ", p.permission().purpose()),
         "", v1::CASE_STATUS_UNSPECIFIED);
  } else {
    const auto& u = p.update();
    note(*c, u.note(), u.outcome(), u.status());
  }
  c->set_updated_at(now);
  if (auto st = cases_->PutCase(batch.get(), *c); !st.ok()) return st;
  return batch;
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
  EnvelopeContext ctx{caller.org, config_.org(), roster.get(), absl::Now(),
                      config_.limits().max_message_bytes()};
  auto payload = VerifyEnvelope(envelope, ctx);
  if (!payload.ok()) return refuse(payload.status());
  ev.set_resource_id(payload->envelope_id());
  ev.set_agreement(payload->agreement());
  ev.set_purpose(payload->purpose());
  const std::string id = payload->envelope_id();
  {
    absl::MutexLock lock(&mu_);
    if (!receiving_.insert(id).second) {
      done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "this envelope is being received; retry"),
           {});
      return;
    }
  }
  auto release = [this, id] {
    absl::MutexLock lock(&mu_);
    receiving_.erase(id);
  };
  // Deduplicate: the same envelope again gets the original receipt; another payload under a used id
  // is refused.
  std::string seen;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), received_, id, &seen);
  if (s.ok()) {
    v1::ReceivedEnvelope prior;
    prior.ParseFromString(seen);
    if (prior.payload_sha256() != digest) {
      release();
      return refuse(absl::AlreadyExistsError(
          absl::StrCat("envelope id ", id, " was already used for a different payload; refused")));
    }
    auto receipt = ReceiptFor(id, digest);
    release();
    done(receipt.ok() ? grpc::Status::OK : ToGrpcStatus(receipt.status()),
         receipt.value_or(v1::Receipt()));
    return;
  }
  if (!s.IsNotFound()) {
    release();
    done(ToGrpcStatus(FromRocksStatus(s, "reading received envelopes")), {});
    return;
  }
  std::string case_id, locked;
  auto change = ApplyBody(envelope, *payload, &case_id, &locked);
  if (!change.ok()) {
    if (!locked.empty()) cases_->Unlock(locked);
    release();
    if (absl::IsUnavailable(change.status())) {
      done(ToGrpcStatus(change.status()), {});
      return;
    }
    ev.set_case_id(case_id);
    return refuse(change.status());
  }
  v1::ReceivedEnvelope record;
  record.set_payload_sha256(digest);
  record.set_sender_org(caller.org);
  (*change)->Put(received_, id, record.SerializeAsString());
  ev.set_case_id(case_id);
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  log_->Record(
      {ev}, *std::move(change),
      [this, done, id, digest, locked, release](absl::StatusOr<uint64_t> index) {
        if (!locked.empty()) cases_->Unlock(locked);
        if (!index.ok()) {
          release();
          done(grpc::Status(grpc::StatusCode::UNAVAILABLE, "could not record the envelope; retry"),
               {});
          return;
        }
        v1::ReceiptBody body;
        body.set_envelope_id(id);
        body.set_envelope_sha256(digest);
        body.set_receiver_org(config_.org());
        auto entry = log_->ledger()->Entry(*index);
        auto ev = entry.ok() ? AccessLog::Decode(*entry)
                             : absl::StatusOr<v1::AccessEvent>(entry.status());
        body.set_time_unix(ev.ok() ? ev->time_unix_micros() / 1000000 : 0);
        body.set_ledger_index(*index);
        release();
        const Signer s = signer();
        done(grpc::Status::OK, SignReceipt(body, s.key_id, *s.key));
      });
}

}  // namespace corridor
