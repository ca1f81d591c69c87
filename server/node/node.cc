#include "server/node/node.h"

#include <sys/stat.h>

#include "absl/algorithm/container.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "client/lib/pki.h"
#include "client/lib/roster.h"
#include "corridor/v1/node.grpc.pb.h"
#include "google/protobuf/util/message_differencer.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "ledger/base/log.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/pkcs11.h"
#include "ledger/rocksdb/rocksdb_ledger.h"
#include "server/audit/access_log.h"
#include "server/audit/audit_service.h"
#include "server/audit/audited_call.h"
#include "server/audit/ledger_scrub.h"
#include "server/auth/access_table.h"
#include "server/auth/auth.h"
#include "server/auth/identity.h"
#include "server/auth/rpc.h"
#include "server/auth/tls_trust.h"
#include "server/cases/case_service.h"
#include "server/common/executor.h"
#include "server/federation/attestations.h"
#include "server/federation/evidence_requests.h"
#include "server/federation/evidence_service.h"
#include "server/federation/exchange.h"
#include "server/federation/peers.h"
#include "server/federation/referral_service.h"
#include "server/federation/witness.h"
#include "server/node/backup.h"
#include "server/node/config.h"
#include "server/node/health.h"
#include "server/node/node_metrics.h"
#include "server/node/reflection.h"
#include "server/node/signing_key.h"
#include "server/store/case_store.h"
#include "server/store/store.h"

namespace corridor {

absl::Status CheckOwnMembership(const v1::NodeConfig& config, const v1::Roster& roster,
                                const TlsIdentity& tls, absl::Time now);

namespace {
// The steward keys the config names (LoadNodeConfig has checked that each decodes).
std::vector<StewardPublicKey> StewardKeys(const v1::NodeConfig& config) {
  std::vector<StewardPublicKey> stewards;
  for (const auto& k : config.roster().steward_keys()) {
    stewards.push_back(
        {k.name(), Ed25519PublicKey::FromRaw(*Base64Decode(k.public_key())).value()});
  }
  return stewards;
}
}  // namespace

// The roster version in force and its digest, in the meta family; each change
// of them commits together with its ledger entry.
constexpr char kRosterVersionKey[] = "roster/version";
constexpr char kRosterDigestKey[] = "roster/digest";

// The roster in force: installs newer signed rosters (pushed by an admin or
// fetched from a peer) after full verification, persisting the file, the
// node state and a ledger entry; serves the signed bytes to peers.
class RosterInForce {
 public:
  RosterInForce(const v1::NodeConfig& config, AccessLog* log,
                std::shared_ptr<IdentityResolver> identity, TlsIdentity tls, std::string json,
                uint64_t version)
      : config_(config),
        log_(log),
        identity_(std::move(identity)),
        tls_(std::move(tls)),
        json_(std::move(json)),
        version_(version) {}

  // Called after each install, without this keeper's lock, with the new roster in force.
  void set_on_installed(std::function<void(std::shared_ptr<const v1::Roster>)> on_installed) {
    on_installed_ = std::move(on_installed);
  }

  absl::StatusOr<VerifiedRoster> Install(const std::string& json, const std::string& actor_org,
                                         const std::string& actor_subject) {
    auto installed = InstallOnce(json, actor_org, actor_subject);
    if (installed.ok() && on_installed_) on_installed_(identity_->roster());
    return installed;
  }

  uint64_t version() const {
    absl::MutexLock lock(&mu_);
    return version_;
  }
  std::string json() const {
    absl::MutexLock lock(&mu_);
    return json_;
  }

 private:
  absl::StatusOr<VerifiedRoster> InstallOnce(const std::string& json, const std::string& actor_org,
                                             const std::string& actor_subject) {
    const std::vector<StewardPublicKey> stewards = StewardKeys(config_);
    absl::MutexLock lock(&mu_);
    v1::AccessEvent ev;
    ev.set_actor_org(actor_org);
    ev.set_actor_subject(actor_subject);
    ev.set_action("roster.install");
    ev.set_resource_kind("roster");
    auto refuse = [&](absl::Status st) -> absl::Status {
      ev.set_outcome(v1::ACCESS_OUTCOME_DENIED);
      // The first line only: a parser's message goes on to quote the pushed text,
      // which has no place in the ledger; the file's digest identifies it.
      ev.set_reason(std::string(st.message().substr(0, st.message().find('\n'))));
      if (ev.payload_sha256().empty()) ev.set_payload_sha256(DigestBytes(Sha256(json)));
      // Budgeted like every refusal: a peer serving junk rosters to the prober
      // cannot grow the ledger by one entry per probe for ever.
      if (absl::Status recorded = log_->RecordRefusalSync(ev); !recorded.ok()) {
        log::Error("access.unrecorded",
                   {{"action", "roster.install"}, {"error", recorded.message()}});
        return absl::UnavailableError(
            "the node could not record this refusal in its ledger; try again later or ask the "
            "node's operator");
      }
      return st;
    };
    auto roster =
        VerifySignedRoster(json, stewards, config_.roster().threshold(), config_.federation());
    if (!roster.ok()) return refuse(roster.status());
    ev.set_resource_id(absl::StrCat(roster->roster.version()));
    ev.set_payload_sha256(*HexDecode(roster->digest_hex));
    if (roster->roster.version() <= version_) {
      return refuse(absl::FailedPreconditionError(absl::StrCat(
          "roster version ", roster->roster.version(), " is not newer than version ", version_,
          " in force; make the next version from the roster in force (`corridorctl roster "
          "new-version --from` the newest signed roster, e.g. this node's roster.file)")));
    }
    if (auto st = CheckOwnMembership(config_, roster->roster, tls_, identity_->clock().Now());
        !st.ok()) {
      return refuse(absl::FailedPreconditionError(
          absl::StrCat("this roster would cut this node off: ", st.message())));
    }
    // The file first: a restart then starts from the new version even if what follows is lost.
    if (auto st = WriteFileAtomically(config_.roster().file(), json); !st.ok()) return refuse(st);
    auto change = std::make_unique<ledger::Mutation>();
    change->Put(NodeStore::kMetaFamily, kRosterVersionKey, absl::StrCat(roster->roster.version()));
    change->Put(NodeStore::kMetaFamily, kRosterDigestKey, roster->digest_hex);
    ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    ev.set_reason(absl::StrCat("roster version ", roster->roster.version(), " in force"));
    if (auto idx = log_->RecordSync({ev}, std::move(change)); !idx.ok()) return idx.status();
    identity_->SetRoster(std::make_shared<const v1::Roster>(roster->roster));
    json_ = json;
    version_ = roster->roster.version();
    log::Info("roster.in_force", {{"version", version_},
                                  {"digest", roster->digest_hex},
                                  {"from", actor_org + "/" + actor_subject}});
    return roster;
  }

  const v1::NodeConfig config_;
  AccessLog* log_;
  std::shared_ptr<IdentityResolver> identity_;
  const TlsIdentity tls_;
  mutable absl::Mutex mu_;
  std::string json_ ABSL_GUARDED_BY(mu_);
  uint64_t version_ ABSL_GUARDED_BY(mu_);
  std::function<void(std::shared_ptr<const v1::Roster>)> on_installed_;
};

// What NodeService.Backup and Status need of the node.
struct BackupSource {
  rocksdb::DB* db = nullptr;
  rocksdb::DB* keystore = nullptr;  // the case store's key store
  Executor* bulk = nullptr;         // backups run here, never on gRPC's threads
  std::optional<v1::RestoreInfo> restored;
};

// The gRPC services of the foundation: NodeService for users, PeerService for nodes.
class NodeServices {
 public:
  NodeServices(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
               AccessLog* log, PeerProber* prober, Exchange* exchange, RosterInForce* roster,
               EvidenceRequests* evidence, Witness* witness, Attestations* attestations,
               BackupSource backups)
      : node_(config, identity, log, prober, roster, witness, std::move(backups)),
        peer_(config, identity, log, exchange, roster, evidence, witness, attestations) {}

  class NodeServiceImpl final : public v1::NodeService::CallbackService {
   public:
    NodeServiceImpl(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
                    AccessLog* log, PeerProber* prober, RosterInForce* roster, Witness* witness,
                    BackupSource backups)
        : config_(config),
          identity_(std::move(identity)),
          log_(log),
          prober_(prober),
          roster_(roster),
          witness_(witness),
          backups_(std::move(backups)),
          started_unix_(absl::ToUnixSeconds(identity_->clock().Now())) {}

    // An online backup (server/node/backup.h), made on the bulk executor; the
    // call is answered once its `node.backup` entry is durable. Refusals (bad
    // path, a backup already running, not an admin) are recorded too.
    // Returns once no backup is being made (Shutdown, before the ledger closes).
    void AwaitBackups() { gate_.AwaitIdle(); }

    grpc::ServerUnaryReactor* Backup(grpc::CallbackServerContext* ctx, const v1::BackupRequest* req,
                                     v1::BackupResponse* resp) override {
      AuditedCall call(log_, ctx->DefaultReactor());
      if (!call.Begin(*identity_, ctx, Rpc::Served<v1::NodeService>(),
                      {"node.backup", "backup", "", "", ""})) {
        return call.reactor();
      }
      absl::Status ok = CheckBackupTarget(req->out_dir(), config_.data_dir());
      if (ok.ok()) ok = gate_.TryEnter();
      if (!ok.ok()) return call.Refuse(ok);
      backups_.bulk->Post([this, req, resp, ev = call.event(), reactor = call.reactor()]() mutable {
        MakeBackup(*req, resp, std::move(ev), reactor);
      });
      return call.reactor();
    }

    grpc::ServerUnaryReactor* PushRoster(grpc::CallbackServerContext* ctx,
                                         const v1::PushRosterRequest* req,
                                         v1::PushRosterResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      auto caller = Authorize(*identity_, *ctx, Rpc::Served<v1::NodeService>(), log_);
      if (!caller.ok()) {
        reactor->Finish(ToGrpcStatus(caller.status()));
        return reactor;
      }
      auto installed = roster_->Install(req->signed_roster(), caller->org, caller->subject);
      if (installed.ok()) {
        resp->set_version(installed->roster.version());
        resp->set_digest(installed->digest_hex);
      }
      reactor->Finish(ToGrpcStatus(installed.status()));
      return reactor;
    }

    grpc::ServerUnaryReactor* Whoami(grpc::CallbackServerContext* ctx, const v1::WhoamiRequest*,
                                     v1::WhoamiResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      auto caller = Authorize(*identity_, *ctx, Rpc::Served<v1::NodeService>(), log_);
      if (!caller.ok()) {
        reactor->Finish(ToGrpcStatus(caller.status()));
        return reactor;
      }
      resp->set_federation(config_.federation());
      resp->set_org(caller->org);
      resp->set_subject(caller->subject);
      for (v1::Role r : caller->roles) resp->add_roles(r);
      resp->set_node_org(config_.org());
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }

    grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* ctx, const v1::StatusRequest*,
                                     v1::StatusResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      auto caller = Authorize(*identity_, *ctx, Rpc::Served<v1::NodeService>(), log_);
      if (!caller.ok()) {
        reactor->Finish(ToGrpcStatus(caller.status()));
        return reactor;
      }
      resp->set_federation(config_.federation());
      resp->set_org(config_.org());
      resp->set_roster_version(roster_->version());
      resp->set_started_unix(started_unix_);
      resp->set_data_format_version(static_cast<uint32_t>(kDataFormatVersion));
      if (backups_.restored.has_value()) *resp->mutable_restored() = *backups_.restored;
      for (auto& p : prober_->Snapshot()) {
        witness_->Annotate(&p);
        *resp->add_peers() = std::move(p);
      }
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }

   private:
    void MakeBackup(const v1::BackupRequest& req, v1::BackupResponse* resp, v1::AccessEvent ev,
                    grpc::ServerUnaryReactor* reactor) {
      std::string note;
      const absl::Time now = identity_->clock().Now();
      auto made = WriteBackup(backups_.db, backups_.keystore, req.out_dir(), config_, now, &note);
      // The gate is left once the outcome is queued to the ledger (AwaitBackups).
      if (!made.ok()) {
        log::Error("node.backup_failed", {{"error", made.status().message()}});
        RecordRefusal(log_, reactor, std::move(ev), made.status());
        return gate_.Leave();
      }
      const std::string manifest = FormatManifest(*made);
      uint64_t bytes = 0;
      for (const auto& f : made->files) bytes += f.size;
      resp->set_ledger_size(made->ledger_size);
      resp->set_root_hash(HexDecode(made->ledger_root_hex).value_or(""));
      resp->set_checkpoint(note);
      resp->set_created_unix(made->created_unix);
      resp->set_files(static_cast<uint32_t>(made->files.size()));
      resp->set_bytes(bytes);
      resp->set_manifest_sha256(HexEncode(DigestBytes(Sha256(manifest))));
      ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
      ev.set_resource_id(absl::StrCat(made->ledger_size));
      ev.set_payload_sha256(DigestBytes(Sha256(manifest)));
      ev.set_reason(absl::StrCat("backup at ledger size ", made->ledger_size, ", ",
                                 made->files.size(), " files"));
      log::Info("node.backup", {{"ledger_size", made->ledger_size},
                                {"files", made->files.size()},
                                {"manifest_sha256", resp->manifest_sha256()}});
      RecordThenFinish(log_, reactor, {std::move(ev)}, nullptr, [resp](uint64_t index) {
        resp->set_recorded_index(index);
        return grpc::Status::OK;
      });
      gate_.Leave();
    }

    const v1::NodeConfig config_;
    std::shared_ptr<IdentityResolver> identity_;
    AccessLog* log_;
    PeerProber* prober_;
    RosterInForce* roster_;
    Witness* witness_;
    const BackupSource backups_;
    BackupGate gate_;
    int64_t started_unix_;
  };

  class PeerServiceImpl final : public v1::PeerService::CallbackService {
   public:
    PeerServiceImpl(const v1::NodeConfig& config, std::shared_ptr<IdentityResolver> identity,
                    AccessLog* log, Exchange* exchange, RosterInForce* roster,
                    EvidenceRequests* evidence, Witness* witness, Attestations* attestations)
        : config_(config),
          identity_(std::move(identity)),
          log_(log),
          exchange_(exchange),
          roster_(roster),
          evidence_(evidence),
          witness_(witness),
          attestations_(attestations) {}

    grpc::ServerUnaryReactor* GetCheckpoint(grpc::CallbackServerContext* ctx,
                                            const v1::PeerCheckpointRequest* req,
                                            v1::PeerCheckpoint* resp) override {
      auto* reactor = ctx->DefaultReactor();
      auto caller = Authorize(*identity_, *ctx, Rpc::Served<v1::PeerService>(), log_);
      if (!caller.ok()) {
        reactor->Finish(ToGrpcStatus(caller.status()));
        return reactor;
      }
      auto answer = witness_->Answer(caller->org, *req);
      if (answer.ok()) *resp = *std::move(answer);
      reactor->Finish(ToGrpcStatus(answer.status()));
      return reactor;
    }

    grpc::ServerUnaryReactor* AddCosignature(grpc::CallbackServerContext* ctx,
                                             const v1::AddCosignatureRequest* req,
                                             v1::AddCosignatureResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      auto caller = Authorize(*identity_, *ctx, Rpc::Served<v1::PeerService>(), log_);
      if (!caller.ok()) {
        reactor->Finish(ToGrpcStatus(caller.status()));
        return reactor;
      }
      auto count = witness_->AddCosignature(caller->org, req->cosigned_checkpoint());
      if (count.ok()) {
        resp->set_cosignatures(*count);
        reactor->Finish(grpc::Status::OK);
        return reactor;
      }
      // A refused cosignature is recorded (budgeted, as every refusal); the
      // note itself is not: its digest identifies it.
      v1::AccessEvent ev;
      SetActor(*caller, &ev);
      ev.set_action("witness.cosignature");
      ev.set_resource_kind("ledger");
      ev.set_peer_org(caller->org);
      ev.set_payload_sha256(DigestBytes(Sha256(req->cosigned_checkpoint())));
      RecordRefusal(log_, reactor, std::move(ev), count.status());
      return reactor;
    }

    grpc::ServerWriteReactor<v1::FetchEvidenceChunk>* FetchEvidence(
        grpc::CallbackServerContext* ctx, const v1::FetchEvidenceRequest* req) override {
      return ServeFetch(Authorize(*identity_, *ctx, Rpc::Served<v1::PeerService>(), log_), *req,
                        evidence_, log_);
    }

    grpc::ServerUnaryReactor* GetRoster(grpc::CallbackServerContext* ctx,
                                        const v1::GetRosterRequest*,
                                        v1::SignedRoster* resp) override {
      auto* reactor = ctx->DefaultReactor();
      auto caller = Authorize(*identity_, *ctx, Rpc::Served<v1::PeerService>(), log_);
      if (caller.ok()) {
        resp->set_signed_roster(roster_->json());
        resp->set_version(roster_->version());
      }
      reactor->Finish(ToGrpcStatus(caller.status()));
      return reactor;
    }

    grpc::ServerUnaryReactor* Deliver(grpc::CallbackServerContext* ctx, const v1::Envelope* env,
                                      v1::Receipt* resp) override {
      auto* reactor = ctx->DefaultReactor();
      auto caller = Authorize(*identity_, *ctx, Rpc::Served<v1::PeerService>(), log_);
      if (!caller.ok()) {
        reactor->Finish(ToGrpcStatus(caller.status()));
        return reactor;
      }
      exchange_->Deliver(*caller, *env, [reactor, resp](grpc::Status s, v1::Receipt r) {
        if (s.ok()) *resp = std::move(r);
        reactor->Finish(s);
      });
      return reactor;
    }

    grpc::ServerUnaryReactor* Hello(grpc::CallbackServerContext* ctx, const v1::HelloRequest* req,
                                    v1::HelloResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      auto caller = Authorize(*identity_, *ctx, Rpc::Served<v1::PeerService>(), log_);
      if (!caller.ok()) {
        reactor->Finish(ToGrpcStatus(caller.status()));
        return reactor;
      }
      log::Debug("peer.hello",
                 {{"peer", caller->org}, {"peer_roster_version", req->roster_version()}});
      resp->set_org(config_.org());
      resp->set_roster_version(roster_->version());
      resp->set_time_unix(absl::ToUnixSeconds(identity_->clock().Now()));
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }

    // Proofs of reads attested to the caller (server/federation/attestations.h).
    grpc::ServerUnaryReactor* ProveAccess(grpc::CallbackServerContext* ctx,
                                          const v1::ProveAccessRequest* req,
                                          v1::InclusionProofResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      v1::AccessEvent ev;
      auto caller = Begin(*identity_, ctx, reactor, log_, Rpc::Served<v1::PeerService>(),
                          {"peer.prove", "ledger", std::to_string(req->index()), "audit", ""}, &ev);
      if (!caller) return reactor;
      ev.set_peer_org(caller->org);
      auto proof = attestations_->ProveAccess(caller->org, req->index());
      if (!proof.ok()) {
        RecordRefusal(log_, reactor, ev, proof.status());
        return reactor;
      }
      ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
      RecordThenFinish(log_, reactor, {ev}, nullptr, [resp, p = *std::move(proof)](uint64_t) {
        *resp = p;
        return grpc::Status::OK;
      });
      return reactor;
    }

    // The envelopes this node recorded exchanging with the caller (reconciliation).
    grpc::ServerUnaryReactor* ListExchanged(grpc::CallbackServerContext* ctx,
                                            const v1::ListExchangedRequest* req,
                                            v1::ListExchangedResponse* resp) override {
      auto* reactor = ctx->DefaultReactor();
      v1::AccessEvent ev;
      auto caller = Begin(*identity_, ctx, reactor, log_, Rpc::Served<v1::PeerService>(),
                          {"peer.exchanged", "ledger", "", "audit", ""}, &ev);
      if (!caller) return reactor;
      ev.set_peer_org(caller->org);
      auto page = attestations_->ListExchanged(caller->org, *req);
      if (!page.ok()) {
        RecordRefusal(log_, reactor, ev, page.status());
        return reactor;
      }
      ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
      RecordThenFinish(log_, reactor, {ev}, nullptr, [resp, p = *std::move(page)](uint64_t) {
        *resp = p;
        return grpc::Status::OK;
      });
      return reactor;
    }

   private:
    const v1::NodeConfig config_;
    std::shared_ptr<IdentityResolver> identity_;
    AccessLog* log_;
    Exchange* exchange_;
    RosterInForce* roster_;
    EvidenceRequests* evidence_;
    Witness* witness_;
    Attestations* attestations_;
  };

  NodeServiceImpl node_;
  PeerServiceImpl peer_;
};

namespace {

// Threads that finish calls once their access event is durable; threads for
// slow follow-up work (proofs, exports, key destruction).
constexpr int kCompletionThreads = 4;
constexpr int kBulkThreads = 2;

// The roster file, its signatures checked against the configured stewards and threshold.
absl::StatusOr<VerifiedRoster> VerifyRosterFile(const v1::NodeConfig& config) {
  const std::vector<StewardPublicKey> stewards = StewardKeys(config);
  auto json = ReadFileToString(config.roster().file());
  if (!json.ok()) return json.status();
  auto roster =
      VerifySignedRoster(*json, stewards, config.roster().threshold(), config.federation());
  if (!roster.ok()) {
    return absl::Status(roster.status().code(),
                        absl::StrCat(config.roster().file(), ": ", roster.status().message()));
  }
  return roster;
}

// Loads and verifies the roster file, and checks it is not older than the one in force.
absl::StatusOr<VerifiedRoster> LoadRoster(const v1::NodeConfig& config, NodeStore& store) {
  auto roster = VerifyRosterFile(config);
  if (!roster.ok()) return roster;
  // A stored version that is not a number is DataLoss: the rollback check
  // below cannot be made, so the node does not start.
  auto stored_version = store.GetMetaNumber(kRosterVersionKey);
  if (stored_version.ok()) {
    const uint64_t in_force = *stored_version;
    if (roster->roster.version() < in_force) {
      return absl::FailedPreconditionError(
          absl::StrCat(config.roster().file(), ": roster version ", roster->roster.version(),
                       " is older than version ", in_force,
                       " already in force at this node; use the newer roster"));
    }
    if (roster->roster.version() == in_force &&
        store.GetMeta(kRosterDigestKey).value_or("") != roster->digest_hex) {
      return absl::FailedPreconditionError(absl::StrCat(
          config.roster().file(), ": roster version ", in_force, " differs from the version ",
          in_force, " already in force; a changed roster needs a new version"));
    }
  } else if (!absl::IsNotFound(stored_version.status())) {
    return stored_version.status();
  }
  return roster;
}

// 0 when none is stored. LoadRoster, called next, refuses a damaged one.
uint64_t StoredRosterVersion(const NodeStore& store) {
  return store.GetMetaNumber(kRosterVersionKey).value_or(0);
}

absl::StatusOr<std::string> LoadMasterKey(const std::string& path) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  auto key = Base64Decode(absl::StripAsciiWhitespace(*text));
  if (!key.ok() || key->size() != 32) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": master_key_file must hold 32 random bytes in base64"));
  }
  return key;
}

}  // namespace

// This node must be in the roster with the CA, certificate and signing key it is configured with.
absl::Status CheckOwnMembership(const v1::NodeConfig& config, const v1::Roster& roster,
                                const TlsIdentity& tls, absl::Time now) {
  const v1::Member* self = nullptr;
  for (const auto& m : roster.members()) {
    if (m.org() == config.org()) self = &m;
  }
  if (self == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "org \"", config.org(), "\" is not in the roster (version ", roster.version(), ")"));
  }
  if (!pki::SameCertificate(tls.roots_pem, self->ca_cert_pem())) {
    return absl::FailedPreconditionError(absl::StrCat(
        config.tls().ca_file(), ": tls.ca_file is not the CA the roster lists for org \"",
        config.org(), "\""));
  }
  if (auto st = pki::VerifyIssuedBy(tls.cert_pem, self->ca_cert_pem(), now); !st.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat(config.tls().cert_file(),
                     ": tls.cert_file is not valid under this org's CA: ", st.message()));
  }
  auto cert = pki::InspectCertificate(tls.cert_pem);
  const std::string want = pki::NodeSpiffeUri(config.federation(), config.org());
  bool has_uri = false;
  for (const auto& u : cert->uris) has_uri = has_uri || u == want;
  if (!has_uri) {
    return absl::FailedPreconditionError(absl::StrCat(
        config.tls().cert_file(), ": tls.cert_file does not carry the node identity ", want));
  }
  auto key = OpenSigningKey(config.signing_key());
  if (!key.ok()) return key.status();
  for (const auto& k : self->signing_keys()) {
    if (k.key_id() != config.signing_key().key_id()) continue;
    const std::string own = Base64Encode((*key)->public_key().raw());
    if (k.public_key() != own) {
      return absl::FailedPreconditionError(absl::StrCat(
          "signing_key: the roster lists key id \"", k.key_id(), "\" for org \"", config.org(),
          "\" with public key ", k.public_key(), ", but the public key of ",
          DescribeSigningKey(config.signing_key()), " is ", own,
          ": point signing_key at the key the roster lists, or have the stewards list this one "
          "(`corridord --config FILE --signing-public-key DIR` writes its signing.pub)"));
    }
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat("signing_key.key_id: the roster lists no key \"", config.signing_key().key_id(),
                   "\" for org \"", config.org(), "\""));
}

namespace {

// The node's own signing key must be one peers still take: not revoked, and,
// if retired, not past its valid_until at `now`.
absl::Status CheckOwnKeyUsable(const v1::NodeConfig& config, const v1::Roster& roster,
                               absl::Time now) {
  for (const auto& m : roster.members()) {
    if (m.org() != config.org()) continue;
    for (const auto& k : m.signing_keys()) {
      if (k.key_id() != config.signing_key().key_id()) continue;
      const std::string rotate =
          "; peers refuse what this node signs with it: make a new signing key, have it listed "
          "in a new roster version and set signing_key to it (docs/federation.md)";
      if (k.status() == v1::KEY_STATUS_REVOKED) {
        return absl::FailedPreconditionError(absl::StrCat(
            "signing_key.key_id: the roster lists key \"", k.key_id(), "\" as revoked", rotate));
      }
      absl::Time until;
      std::string err;
      if (!k.valid_until().empty() &&
          absl::ParseTime(absl::RFC3339_full, k.valid_until(), &until, &err) && until <= now) {
        return absl::FailedPreconditionError(absl::StrCat("signing_key.key_id: key \"", k.key_id(),
                                                          "\" was valid until ", k.valid_until(),
                                                          rotate));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> Node::CheckStartable(const v1::NodeConfig& config, absl::Time now) {
  auto roster = VerifyRosterFile(config);
  if (!roster.ok()) return roster.status();
  auto tls =
      LoadTlsIdentity(config.tls().cert_file(), config.tls().key_file(), config.tls().ca_file());
  if (!tls.ok()) return tls.status();
  if (auto st = CheckOwnMembership(config, roster->roster, *tls, now); !st.ok()) return st;
  if (auto st = CheckOwnKeyUsable(config, roster->roster, now); !st.ok()) return st;
  return absl::StrCat("roster ", config.roster().file(), " version ", roster->roster.version(),
                      " is signed by at least ", config.roster().threshold(),
                      " of the configured stewards; org \"", config.org(),
                      "\" is a member with this node's CA, certificate and signing key \"",
                      config.signing_key().key_id(), "\"");
}

std::string LedgerOrigin(const v1::NodeConfig& config) {
  return absl::StrCat(config.federation(), "/", config.org());
}

absl::Status Node::OpenStore(const v1::NodeConfig& config) {
  if (mkdir(config.data_dir().c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("data_dir: cannot create ", config.data_dir(), ": ", strerror(errno)));
  }
  std::vector<std::string> families = ledger::LedgerColumnFamilyNames();
  families.push_back(kCasesFamily);
  families.push_back(kEvidenceFamily);
  for (const char* f : {kOutboxFamily, kReceivedFamily, kReferralIndexFamily,
                        kEvidenceRequestsFamily, kWitnessFamily})
    families.push_back(f);
  NodeStoreOptions store_options;
  if (config.limits().disk_reserve_mib() > 0) {
    store_options.reserve_bytes = uint64_t{config.limits().disk_reserve_mib()} << 20;
  }
  auto store = NodeStore::Open(config.data_dir(), families, store_options);
  if (!store.ok()) return store.status();
  store_ = *std::move(store);
  return absl::OkStatus();
}

namespace {

// After a key rotation the stored checkpoint is signed by an earlier key of
// this org (the one in use before the switch): accept any key the roster
// lists for this org — even one revoked since, as the checkpoint is this
// node's own — so the node starts and signs on with the new key.
std::vector<note::Verifier> PreviousVerifiers(const v1::NodeConfig& config,
                                              const v1::Roster& roster) {
  std::vector<note::Verifier> out;
  for (const auto& m : roster.members()) {
    if (m.org() != config.org()) continue;
    for (const auto& k : m.signing_keys()) {
      if (k.key_id() == config.signing_key().key_id()) continue;
      auto raw = Base64Decode(k.public_key());
      if (!raw.ok()) continue;
      if (auto pub = Ed25519PublicKey::FromRaw(*raw); pub.ok()) {
        out.push_back(note::Verifier{LedgerOrigin(config), 0x01, *pub});
      }
    }
  }
  return out;
}

}  // namespace

absl::Status Node::OpenLedger(const v1::NodeConfig& config, const v1::Roster& roster,
                              std::function<absl::Status()> before_commit, const Clock* clock) {
  // The ledger: this node's checkpoints are signed with its roster signing key.
  auto signing_key = OpenSigningKey(config.signing_key());
  if (!signing_key.ok()) return signing_key.status();
  signing_key_ = *std::move(signing_key);
  if (config.signing_key().has_pkcs11()) {
    log::Info("node.signing_key_in_token",
              {{"key_id", config.signing_key().key_id()},
               {"key", DescribeSigningKey(config.signing_key())},
               {"extractable", static_cast<const Pkcs11Signer*>(signing_key_.get())->extractable()
                                   ? "yes (wrapped only)"
                                   : "no"}});
  }
  ledger::RocksDbLedgerOptions ledger_options;
  ledger_options.origin = LedgerOrigin(config);
  ledger_options.signing_key = signing_key_.get();
  ledger_options.before_commit = std::move(before_commit);
  ledger_options.clock = [clock] { return clock->Now(); };
  ledger_options.on_health_change = [](const absl::Status& st) {
    if (st.ok()) {
      log::Info("ledger.recovered");
    } else {
      log::Error("ledger.refusing_writes", {{"reason", st.message()}});
    }
  };
  ledger_options.previous_verifiers = PreviousVerifiers(config, roster);
  // Completions of ledger appends run here, never on the ledger's sequencer;
  // slow follow-up work (proofs, exports, key destruction) on `bulk_`.
  completions_ = std::make_unique<Executor>("completions", kCompletionThreads);
  bulk_ = std::make_unique<Executor>("bulk", kBulkThreads);
  auto ledger =
      ledger::RocksDbLedger::Open(store_->db(), store_->families(), std::move(ledger_options));
  if (!ledger.ok()) {
    return absl::Status(ledger.status().code(),
                        absl::StrCat("the ledger in ", config.data_dir(),
                                     " cannot be opened: ", ledger.status().message()));
  }
  ledger_ = *std::move(ledger);
  access_log_ = std::make_unique<AccessLog>(ledger_.get(), clock, completions_.get());
  access_log_->set_append_latency(&metrics_->ledger_append());
  access_log_->LimitRefusals(config.limits().refusal_budget(),
                             absl::Seconds(config.limits().refusal_interval_seconds()));
  return absl::OkStatus();
}

namespace {

// The event both the restore and the format upgrade record: by the node itself.
v1::AccessEvent NodeEvent(const v1::NodeConfig& config, const std::string& action,
                          const std::string& kind, const std::string& id) {
  v1::AccessEvent ev;
  ev.set_actor_org(config.org());
  ev.set_actor_subject("node");
  ev.set_action(action);
  ev.set_resource_kind(kind);
  ev.set_resource_id(id);
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  return ev;
}

// The restore the data directory's meta family records, if any.
absl::StatusOr<std::optional<v1::RestoreInfo>> StoredRestore(const NodeStore& store) {
  auto stored = store.GetMeta(kRestoreInfoKey);
  if (absl::IsNotFound(stored.status())) return std::optional<v1::RestoreInfo>();
  if (!stored.ok()) return stored.status();
  v1::RestoreInfo info;
  if (!info.ParseFromString(*stored)) {
    return absl::DataLossError("the node state \"restore/last\" is damaged");
  }
  return std::optional<v1::RestoreInfo>(info);
}

}  // namespace

absl::Status Node::CompleteRestore(const v1::NodeConfig& config, absl::Time now) {
  auto stored = StoredRestore(*store_);
  if (!stored.ok()) return stored.status();
  restored_ = *stored;
  const std::string pending_path = config.data_dir() + "/" + kRestorePendingFile;
  auto pending = ReadFileToString(pending_path);
  if (!pending.ok()) return absl::OkStatus();  // not restored since the last start
  auto manifest = ParseManifest(*pending);
  if (!manifest.ok()) return manifest.status();
  const std::string manifest_sha = HexEncode(DigestBytes(Sha256(*pending)));
  if (!restored_.has_value() || restored_->manifest_sha256() != manifest_sha) {
    if (auto st = RecordRestore(config, *manifest, manifest_sha, now); !st.ok()) return st;
  }
  if (std::remove(pending_path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot remove ", pending_path));
  }
  return absl::OkStatus();
}

absl::Status Node::RecordRestore(const v1::NodeConfig& config, const BackupManifest& manifest,
                                 const std::string& manifest_sha, absl::Time now) {
  // The whole ledger is checked before anything is recorded on top of it.
  if (auto st = ledger_->VerifyCommitted(); !st.ok()) {
    return absl::DataLossError(absl::StrCat("the restored ledger does not verify: ", st.message(),
                                            "; restore another backup"));
  }
  const ledger::Head head = ledger_->head();
  if (head.size != manifest.ledger_size ||
      HexEncode(merkle::ToBytes(head.root)) != manifest.ledger_root_hex) {
    return absl::DataLossError(
        absl::StrCat("the restored ledger (size ", head.size,
                     ") is not the one the backup's manifest names (size ", manifest.ledger_size,
                     "); restore the backup again into an empty data directory"));
  }
  v1::RestoreInfo info;
  info.set_backup_unix(manifest.created_unix);
  info.set_ledger_size(manifest.ledger_size);
  info.set_backup_checkpoint(head.checkpoint);
  info.set_restored_unix(absl::ToUnixSeconds(now));
  info.set_restored_entry_index(head.size);
  info.set_manifest_sha256(manifest_sha);
  v1::AccessEvent ev = NodeEvent(config, "node.restored", "ledger", absl::StrCat(head.size));
  ev.set_payload_sha256(*HexDecode(manifest_sha));
  ev.set_reason(
      absl::StrCat("restored from a backup of ",
                   absl::FormatTime(absl::RFC3339_sec, absl::FromUnixSeconds(manifest.created_unix),
                                    absl::UTCTimeZone()),
                   " at its checkpoint of ledger size ", manifest.ledger_size, " and root ",
                   manifest.ledger_root_hex,
                   "; anything this node recorded after that backup is not in this ledger"));
  auto change = std::make_unique<ledger::Mutation>();
  change->Put(NodeStore::kMetaFamily, kRestoreInfoKey, info.SerializeAsString());
  auto index = access_log_->RecordSync({ev}, std::move(change));
  if (!index.ok()) return index.status();
  restored_ = info;
  log::Warn("node.restored", {{"backup_unix", manifest.created_unix},
                              {"ledger_size", manifest.ledger_size},
                              {"entry", *index},
                              {"manifest_sha256", manifest_sha}});
  return absl::OkStatus();
}

absl::Status Node::RecordFormatUpgrade(const v1::NodeConfig& config) {
  if (!store_->unversioned()) return absl::OkStatus();
  // Format 1 is the format of directories written before versions existed:
  // nothing changes but the version, stored with the entry that records it.
  v1::AccessEvent ev = NodeEvent(config, "store.format", "store", absl::StrCat(kDataFormatVersion));
  ev.set_reason(absl::StrCat("the data directory had no format version: recorded as version ",
                             kDataFormatVersion, " (nothing else changed)"));
  auto change = std::make_unique<ledger::Mutation>();
  change->Put(NodeStore::kMetaFamily, kFormatVersionKey, absl::StrCat(kDataFormatVersion));
  auto index = access_log_->RecordSync({ev}, std::move(change));
  if (!index.ok()) return index.status();
  log::Info("store.format_upgraded",
            {{"from", "unversioned"}, {"to", kDataFormatVersion}, {"entry", *index}});
  return absl::OkStatus();
}

absl::Status Node::OpenCases(const v1::NodeConfig& config) {
  auto master_key = LoadMasterKey(config.master_key_file());
  if (!master_key.ok()) return master_key.status();
  auto case_store =
      CaseStore::Open(store_->db(), store_->family(kCasesFamily), store_->family(kEvidenceFamily),
                      store_->family(NodeStore::kMetaFamily), config.data_dir() + "/keystore",
                      *std::move(master_key));
  if (!case_store.ok()) return case_store.status();
  case_store_ = *std::move(case_store);
  // Uploads a crash cut off left sealed chunks in staging: they go.
  if (auto discarded = case_store_->DiscardAllStaged(); !discarded.ok()) {
    return discarded.status();
  } else if (*discarded > 0) {
    log::Info("evidence.staging_discarded", {{"uploads", *discarded}});
  }
  return absl::OkStatus();
}

absl::Status Node::RecordRosterInForce(const v1::NodeConfig& config, const VerifiedRoster& roster,
                                       uint64_t stored_version) {
  // A new roster version in force is itself an audited event.
  if (stored_version != roster.roster.version()) {
    v1::AccessEvent ev;
    ev.set_actor_org(config.org());
    ev.set_actor_subject("node");
    ev.set_action("roster.in_force");
    ev.set_resource_kind("roster");
    ev.set_resource_id(absl::StrCat(roster.roster.version()));
    ev.set_payload_sha256(*HexDecode(roster.digest_hex));
    ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
    // The version in force and its entry commit together: a start cut off
    // before this point records the version at the next start.
    auto change = std::make_unique<ledger::Mutation>();
    change->Put(NodeStore::kMetaFamily, kRosterVersionKey, absl::StrCat(roster.roster.version()));
    change->Put(NodeStore::kMetaFamily, kRosterDigestKey, roster.digest_hex);
    if (auto idx = access_log_->RecordSync({ev}, std::move(change)); !idx.ok()) {
      return idx.status();
    }
  }
  log::Info("roster.in_force", {{"version", roster.roster.version()},
                                {"digest", roster.digest_hex},
                                {"members", roster.roster.members_size()}});
  return absl::OkStatus();
}

absl::Status Node::StartServices(const v1::NodeConfig& config, const VerifiedRoster& roster,
                                 const TlsIdentity& tls, const Clock* clock, uint64_t jitter_seed) {
  auto roster_ptr = std::make_shared<const v1::Roster>(roster.roster);
  identity_ = std::make_shared<IdentityResolver>(config, roster_ptr, clock);
  case_service_ = std::make_unique<CaseServiceImpl>(config, identity_.get(), case_store_.get(),
                                                    access_log_.get(), bulk_.get(), clock);
  audit_service_ = std::make_unique<AuditServiceImpl>(
      identity_.get(), access_log_.get(), bulk_.get(),
      absl::Seconds(config.limits().stream_idle_timeout_seconds()), clock);
  prober_ = std::make_unique<PeerProber>(config, roster_ptr, tls, clock);
  ExchangeOptions exchange_options;
  exchange_options.clock = clock;
  exchange_options.jitter_seed = jitter_seed;
  exchange_ = std::make_unique<Exchange>(config, identity_, signing_key_.get(), store_->db(),
                                         store_->families(), case_store_.get(), access_log_.get(),
                                         tls, exchange_options);
  case_service_->set_exchange(exchange_.get());
  referral_service_ = std::make_unique<ReferralServiceImpl>(
      identity_.get(), exchange_.get(), case_store_.get(), access_log_.get(), clock);
  auto roster_json = ReadFileToString(config.roster().file());
  if (!roster_json.ok()) return roster_json.status();
  roster_ = std::make_unique<RosterInForce>(config, access_log_.get(), identity_, tls, *roster_json,
                                            roster.roster.version());
  RosterInForce* keeper = roster_.get();
  prober_->set_roster_sync(
      [keeper] { return keeper->version(); },
      [keeper](const std::string& json, const std::string& from) {
        auto st = keeper->Install(json, from, "node");
        if (!st.ok())
          log::Warn("roster.fetch_refused", {{"from", from}, {"reason", st.status().message()}});
      });
  Exchange* exchange = exchange_.get();
  prober_->set_on_reachable([exchange](const std::string& org) { exchange->PeerReachable(org); });
  // Components that follow the roster in force (identity is set by the keeper itself; the TLS
  // verifier reads it at each handshake).
  PeerProber* prober = prober_.get();
  roster_->set_on_installed([prober, exchange](std::shared_ptr<const v1::Roster> roster) {
    prober->SetRoster(std::move(roster));
    exchange->RosterChanged();
  });
  StartEvidence(config, clock);
  if (auto st = MakeWitness(config, clock); !st.ok()) return st;
  services_ = std::make_unique<NodeServices>(
      config, identity_, access_log_.get(), prober_.get(), exchange_.get(), roster_.get(),
      evidence_.get(), witness_.get(), attestations_.get(),
      BackupSource{store_->db(), case_store_->keystore(), bulk_.get(), restored_});
  return absl::OkStatus();
}

absl::Status Node::MakeWitness(const v1::NodeConfig& config, const Clock* clock) {
  Exchange* exchange = exchange_.get();
  witness_ = std::make_unique<Witness>(
      config, identity_, ledger_.get(), access_log_.get(), store_->db(),
      store_->family(kWitnessFamily), signing_key_.get(),
      [exchange](const std::string& org) { return exchange->PeerStub(org); }, clock);
  Witness* witness = witness_.get();
  audit_service_->set_cosigned([witness](uint32_t k, v1::CheckpointResponse* resp) {
    auto cosigned = witness->LatestCosigned(k);
    if (!cosigned.ok()) return cosigned.status();
    resp->set_size(cosigned->size);
    resp->set_root_hash(cosigned->root);
    resp->set_checkpoint(cosigned->note);
    for (const std::string& org : cosigned->cosigners) resp->add_cosigners(org);
    return absl::OkStatus();
  });
  if (restored_.has_value()) witness_->SetRestored(*restored_);
  return witness_->Load();
}

void Node::StartEvidence(const v1::NodeConfig& config, const Clock* clock) {
  evidence_ = std::make_unique<EvidenceRequests>(
      config, identity_, exchange_.get(), case_store_.get(), access_log_.get(), store_->db(),
      store_->families().at(kEvidenceRequestsFamily), clock);
  EvidenceRequests* evidence = evidence_.get();
  attestations_ =
      std::make_unique<Attestations>(config, exchange_.get(), case_store_.get(), access_log_.get());
  Attestations* attestations = attestations_.get();
  exchange_->SetBodyHandler(
      [](const v1::EnvelopePayload& p) {
        return EvidenceRequests::Handles(p) || Attestations::Handles(p);
      },
      [evidence, attestations](const v1::Envelope& envelope, const v1::EnvelopePayload& p) {
        if (Attestations::Handles(p)) return attestations->Apply(envelope, p);
        return evidence->Apply(p);
      });
  case_service_->set_attestations(attestations);
  audit_service_->set_downstream(
      {[attestations](const std::string& org, uint64_t index) {
         return attestations->ProveDownstream(org, index);
       },
       [attestations](const std::string& peer) { return attestations->Reconcile(peer); }});
  evidence_service_ = std::make_unique<EvidenceServiceImpl>(
      identity_.get(), evidence, exchange_.get(), access_log_.get(), bulk_.get());
}

namespace {

// Accept client certificates from any CA of a member of the roster in force at
// the TLS layer, checked at each handshake (server/auth/tls_trust.h), so the
// trust follows roster changes; the auth processor then insists on the right
// CA for the claimed org.
std::shared_ptr<grpc::ServerCredentials> ServerCredentials(
    const v1::NodeConfig& config, const TlsIdentity& tls,
    std::shared_ptr<IdentityResolver> identity, AccessLog* log, const Clock* clock,
    RequestMetrics* requests) {
  auto own = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
      std::vector<grpc::experimental::IdentityKeyCertPair>{{tls.key_pem, tls.cert_pem}});
  grpc::experimental::TlsServerCredentialsOptions options(own);
  options.watch_identity_key_cert_pairs();
  options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  options.set_certificate_verifier(RosterCertificateVerifier(identity));
  auto creds = grpc::experimental::TlsServerCredentials(options);
  creds->SetAuthMetadataProcessor(std::make_shared<CorridorAuthProcessor>(
      std::move(identity), log, config.federation(),
      std::make_shared<CallLimiter>(config.limits().user_calls_per_second(),
                                    config.limits().user_call_burst(), clock),
      std::make_shared<CallLimiter>(config.limits().peer_calls_per_second(),
                                    config.limits().peer_call_burst(), clock),
      requests));
  return creds;
}

// What health says about damage the background check found.
absl::Status LedgerDamage(const LedgerCheck& run) {
  return absl::DataLossError(absl::StrCat(
      "the ledger is damaged: ", run.status.message(), " (found by the ledger check at ",
      absl::FormatTime("%Y-%m-%d %H:%M:%S UTC", run.finished, absl::UTCTimeZone()),
      "). Proofs over the damaged part cannot be trusted: tell the federation's stewards, "
      "keep the data directory as it is for investigation, and restore from a backup"));
}

}  // namespace

void Node::MakeScrubber(const v1::NodeConfig& config) {
  AccessLog* log = access_log_.get();
  const std::string org = config.org();
  scrubber_ = std::make_unique<LedgerScrubber>(
      ledger_.get(), absl::Seconds(config.limits().ledger_scrub_interval_seconds()),
      [log, org](const LedgerCheck& run) {
        log::Error("ledger.damaged", {{"error", run.status.message()},
                                      {"verified_up_to", run.size},
                                      {"took_ms", absl::ToInt64Milliseconds(run.took)}});
        v1::AccessEvent ev;
        ev.set_actor_org(org);
        ev.set_actor_subject("node");
        ev.set_action("ledger.scrub");
        ev.set_resource_kind("ledger");
        ev.set_outcome(v1::ACCESS_OUTCOME_ERROR);
        ev.set_reason(std::string(run.status.message().substr(0, 1024)));
        log->Record({std::move(ev)}, nullptr, [](absl::StatusOr<uint64_t> recorded) {
          if (!recorded.ok()) {
            log::Error("access.unrecorded",
                       {{"action", "ledger.scrub"}, {"error", recorded.status().message()}});
          }
        });
      },
      [log](uint64_t size) { return log->CheckIndex(size); });
}

absl::Status Node::Serve(const v1::NodeConfig& config, const v1::Roster& roster,
                         const TlsIdentity& tls, const Clock* clock) {
  auto creds =
      ServerCredentials(config, tls, identity_, access_log_.get(), clock, &metrics_->requests());
  // grpc.health.v1 answers from the ledger's and the database's state on
  // every call: NOT_SERVING, with the reason, while writes are refused.
  // Damage the background check found keeps the node NOT_SERVING until it is
  // restarted on a repaired or restored ledger.
  ledger::RocksDbLedger* ledger_ptr = ledger_.get();
  NodeStore* store_ptr = store_.get();
  const LedgerScrubber* scrub_ptr = scrubber_.get();
  health_ =
      std::make_unique<HealthServiceImpl>([ledger_ptr, store_ptr, scrub_ptr]() -> absl::Status {
        if (absl::Status st = ledger_ptr->health(); !st.ok()) return st;
        if (auto damage = scrub_ptr->first_damage()) return LedgerDamage(*damage);
        return store_ptr->health();
      });
  grpc::EnableDefaultHealthCheckService(false);
  grpc::ServerBuilder builder;
  // One node per port: without this gRPC sets SO_REUSEPORT and a second node
  // on the same port would silently share its traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Every connection is told to go away (GOAWAY) after max_connection_age_seconds:
  // calls in flight finish on it, new ones make a new connection, whose handshake
  // is checked against the roster in force. So a member removed by a roster, or a
  // certificate revoked, loses its open connections too, not only its calls.
  builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS,
                             static_cast<int>(config.limits().max_connection_age_seconds() * 1000));
  builder.AddListeningPort(config.listen(), creds, &port_);
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  builder.SetMaxSendMessageSize(static_cast<int>(config.limits().max_message_bytes()));
  builder.RegisterService(&services_->node_);
  builder.RegisterService(&services_->peer_);
  builder.RegisterService(case_service_.get());
  builder.RegisterService(audit_service_.get());
  builder.RegisterService(referral_service_.get());
  builder.RegisterService(evidence_service_.get());
  builder.RegisterService(health_.get());
  // Reflection lists what the server registered (filled in as it is built).
  auto served = std::make_shared<std::vector<std::string>>();
  reflection_ = std::make_unique<ReflectionService>(
      served, identity_.get(), access_log_.get(),
      absl::Seconds(config.limits().stream_idle_timeout_seconds()), clock);
  builder.RegisterService(reflection_.get());
  builder.SetOption(RecordServedServices(served));
  // Every call a handler answers is counted (and timed) for the metrics endpoint.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counting;
  counting.push_back(metrics_->requests().InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(counting));
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("listen: cannot serve on ", config.listen(),
                                               " (address in use or not available?)"));
  }
  // Every method served has exactly one rule (the destructor stops the server).
  return CheckAccessTable(*served);
}

absl::StatusOr<std::unique_ptr<Node>> Node::Start(const v1::NodeConfig& config,
                                                  NodeTestHooks hooks) {
  std::unique_ptr<Node> node(new Node);
  const Clock* clock = hooks.clock != nullptr ? hooks.clock : &Clock::Real();
  std::vector<std::string> methods;
  for (const MethodRule& rule : MethodRules()) methods.push_back(rule.method);
  node->metrics_ = std::make_unique<NodeMetrics>(config, methods);
  if (auto st = node->OpenStore(config); !st.ok()) return st;
  const uint64_t stored_roster_version = StoredRosterVersion(*node->store_);
  auto roster = LoadRoster(config, *node->store_);
  if (!roster.ok()) return roster.status();
  auto tls =
      LoadTlsIdentity(config.tls().cert_file(), config.tls().key_file(), config.tls().ca_file());
  if (!tls.ok()) return tls.status();
  if (auto st = CheckOwnMembership(config, roster->roster, *tls, clock->Now()); !st.ok()) return st;
  if (auto st =
          node->OpenLedger(config, roster->roster, std::move(hooks.ledger_before_commit), clock);
      !st.ok()) {
    return st;
  }
  if (auto st = node->CompleteRestore(config, clock->Now()); !st.ok()) return st;
  if (auto st = node->RecordFormatUpgrade(config); !st.ok()) return st;
  if (auto st = node->OpenCases(config); !st.ok()) return st;
  if (auto st = node->RecordRosterInForce(config, *roster, stored_roster_version); !st.ok()) {
    return st;
  }
  if (auto st = node->StartServices(config, *roster, *tls, clock, hooks.jitter_seed); !st.ok()) {
    return st;
  }
  node->MakeScrubber(config);
  if (auto st = node->Serve(config, roster->roster, *tls, clock); !st.ok()) return st;
  node->scrubber_->Start();
  node->prober_->Start();
  node->exchange_->Start();
  node->evidence_->Start();
  node->witness_->Start();
  if (auto st = node->ServeMetrics(config, *tls, clock); !st.ok()) return st;
  {
    absl::MutexLock lock(&node->reload_mu_);
    node->config_ = config;
  }
  node->started_ = true;
  log::Info("node.started", {{"federation", config.federation()},
                             {"org", config.org()},
                             {"listen", config.listen()},
                             {"port", node->port_}});
  return node;
}

namespace {

// The fields of `a` and `b` that differ, as dotted names under `prefix`
// (one level into sub-messages, so that "tls.cert_file" is named).
void ChangedFields(const google::protobuf::Message& a, const google::protobuf::Message& b,
                   const std::string& prefix, bool descend, std::vector<std::string>* out) {
  const google::protobuf::Descriptor* d = a.GetDescriptor();
  const google::protobuf::Reflection* r = a.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const google::protobuf::FieldDescriptor* f = d->field(i);
    const std::string name = prefix + f->name();
    if (descend && f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE &&
        !f->is_repeated()) {
      ChangedFields(r->GetMessage(a, f), r->GetMessage(b, f), name + ".", false, out);
      continue;
    }
    google::protobuf::util::MessageDifferencer diff;
    diff.set_scope(google::protobuf::util::MessageDifferencer::FULL);
    std::vector<const google::protobuf::FieldDescriptor*> only = {f};
    if (!diff.CompareWithFields(a, b, only, only)) out->push_back(name);
  }
}

// The fields of `before` and `after` that differ, other than those SIGHUP
// reloads (users, tls.revoked_serials, signing_key, log), as dotted names.
std::vector<std::string> RestartOnlyChanges(v1::NodeConfig before, v1::NodeConfig after) {
  for (v1::NodeConfig* c : {&before, &after}) {
    c->clear_users();
    c->mutable_tls()->clear_revoked_serials();
    c->clear_signing_key();
    c->clear_log();
  }
  std::vector<std::string> changed;
  ChangedFields(before, after, "", true, &changed);
  return changed;
}

// What SIGHUP would change, in words for the log and the ledger (no values:
// user names and serials are not logged).
std::vector<std::string> ReloadableChanges(const v1::NodeConfig& before,
                                           const v1::NodeConfig& after) {
  std::vector<std::string> changed;
  auto differ = [](const google::protobuf::Message& a, const google::protobuf::Message& b) {
    return a.SerializeAsString() != b.SerializeAsString();
  };
  // Map order is not canonical in the wire form: compare entry by entry.
  bool users_changed = before.users().size() != after.users().size();
  for (const auto& [name, entry] : before.users()) {
    auto it = after.users().find(name);
    users_changed = users_changed || it == after.users().end() || differ(entry, it->second);
  }
  if (users_changed) changed.push_back("users");
  if (std::vector<std::string>(before.tls().revoked_serials().begin(),
                               before.tls().revoked_serials().end()) !=
      std::vector<std::string>(after.tls().revoked_serials().begin(),
                               after.tls().revoked_serials().end())) {
    changed.push_back("tls.revoked_serials");
  }
  if (differ(before.signing_key(), after.signing_key())) changed.push_back("signing_key");
  if (differ(before.log(), after.log())) changed.push_back("log");
  return changed;
}

}  // namespace

absl::StatusOr<std::shared_ptr<const Signer>> Node::ListedSigningKey(
    const v1::NodeConfig& config) const {
  auto key = OpenSigningKey(config.signing_key());
  if (!key.ok()) return key.status();
  const std::string& key_id = config.signing_key().key_id();
  auto roster = identity_->roster();
  const v1::SigningKey* listed = nullptr;
  for (const auto& m : roster->members()) {
    if (m.org() != config.org()) continue;
    for (const auto& k : m.signing_keys()) {
      if (k.key_id() == key_id) listed = &k;
    }
  }
  if (listed == nullptr || listed->status() != v1::KEY_STATUS_ACTIVE ||
      listed->public_key() != Base64Encode((*key)->public_key().raw())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "signing_key: the roster in force (version ", roster->version(), ") does not list key \"",
        key_id, "\" as active with the public key of ", DescribeSigningKey(config.signing_key())));
  }
  return std::shared_ptr<const Signer>(*std::move(key));
}

absl::StatusOr<std::string> Node::Reload(const std::string& config_path) {
  absl::MutexLock lock(&reload_mu_);
  auto config = LoadNodeConfig(config_path);
  if (!config.ok()) {
    return absl::Status(config.status().code(),
                        absl::StrCat("nothing was reloaded: ", config.status().message()));
  }
  if (auto restart = RestartOnlyChanges(config_, *config); !restart.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "nothing was reloaded: ", absl::StrJoin(restart, ", "),
        restart.size() == 1 ? " changed, which needs" : " changed, which need",
        " a restart of corridord (SIGHUP reloads only users, tls.revoked_serials, signing_key "
        "and log)"));
  }
  const std::vector<std::string> changed = ReloadableChanges(config_, *config);
  if (changed.empty()) return std::string("nothing changed");
  // Check everything before changing anything.
  std::shared_ptr<const Signer> key;
  const bool new_key = absl::c_linear_search(changed, "signing_key");
  if (new_key) {
    auto listed = ListedSigningKey(*config);
    if (!listed.ok()) {
      return absl::Status(listed.status().code(),
                          absl::StrCat("nothing was reloaded: ", listed.status().message()));
    }
    key = *std::move(listed);
  }
  v1::AccessEvent ev;
  ev.set_actor_org(config->org());
  ev.set_actor_subject("node");
  ev.set_action("node.reload");
  ev.set_resource_kind("config");
  ev.set_outcome(v1::ACCESS_OUTCOME_ALLOWED);
  ev.set_reason(absl::StrCat("reloaded: ", absl::StrJoin(changed, ", ")));
  std::vector<v1::AccessEvent> events = {ev};
  if (new_key) {
    ev.set_action("node.signing_key");
    ev.set_resource_kind("key");
    ev.set_resource_id(config->signing_key().key_id());
    ev.set_reason("envelopes and receipts are now signed with this key");
    events.push_back(ev);
  }
  // Recorded first: a change nobody can later see in the ledger is not made.
  if (auto idx = access_log_->RecordSync(events); !idx.ok()) {
    return absl::Status(idx.status().code(),
                        absl::StrCat("nothing was reloaded: ", idx.status().message()));
  }
  identity_->SetLocalAccess(*config);
  if (new_key) {
    exchange_->RotateSigningKey(key, config->signing_key().key_id());
    log::Info("node.signing_key", {{"key_id", config->signing_key().key_id()}});
  }
  log::Level level = log::Level::kInfo;  // also when log.level was removed
  log::ParseLevel(config->log().level(), &level);
  log::SetLevel(level);
  config_ = *std::move(config);
  return absl::StrJoin(changed, ", ");
}

void Node::Shutdown(absl::Duration grace) {
  if (shut_down_) return;
  shut_down_ = true;
  // No scrape reads a part of the node once this returns.
  if (metrics_) metrics_->Stop();
  // A start that failed says so itself (node.start_failed); it never served, so it does not stop.
  if (started_) log::Info("node.stopping", {{"grace_ms", absl::ToInt64Milliseconds(grace)}});
  if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  if (prober_) prober_->Stop();
  if (witness_) witness_->Stop();    // waits for a round in progress
  if (scrubber_) scrubber_->Stop();  // waits for a check in progress
  if (evidence_) evidence_->Stop();  // waits for fetches in flight
  if (exchange_) exchange_->Stop();
  server_.reset();
  // gRPC may run an evidence stream's last callback after Shutdown returned; what
  // the streams use goes only once they are gone.
  if (case_service_) case_service_->WaitForStreams();
  if (audit_service_) audit_service_->WaitForStreams();
  if (evidence_) evidence_->WaitForStreams();
  reflection_.reset();  // waits for its streams
  // A backup in progress records its outcome before the ledger closes.
  if (services_) services_->node_.AwaitBackups();
  // Refusals counted but not yet recorded go into the ledger before it closes.
  if (access_log_) access_log_->FlushRefusals();
  // The ledger commits what is queued before the database closes; the
  // executors then run the last completions.
  ledger_.reset();
  bulk_.reset();
  completions_.reset();
  case_store_.reset();
  store_.reset();
  if (started_) log::Info("node.stopped");
}

absl::Status Node::ServeMetrics(const v1::NodeConfig& config, const TlsIdentity& tls,
                                const Clock* clock) {
  NodeMetricsSources sources;
  sources.ledger = ledger_.get();
  sources.exchange = exchange_.get();
  sources.prober = prober_.get();
  sources.witness = witness_.get();
  std::shared_ptr<IdentityResolver> identity = identity_;
  sources.roster = [identity] { return identity->roster(); };
  sources.clock = clock;
  sources.tls = tls;
  metrics_->Collect(std::move(sources));
  if (config.metrics().listen().empty()) return absl::OkStatus();
  if (auto st = metrics_->Serve(config.metrics().listen()); !st.ok()) return st;
  log::Info("metrics.listening",
            {{"listen", config.metrics().listen()}, {"port", metrics_->port()}});
  return absl::OkStatus();
}

int Node::metrics_port() const { return metrics_ ? metrics_->port() : 0; }

std::optional<LedgerCheck> Node::LastLedgerCheck() const {
  return scrubber_ ? scrubber_->last() : std::nullopt;
}

absl::Status Node::SweepEvidenceDeadlines() {
  return evidence_ ? evidence_->SweepDeadlines() : absl::OkStatus();
}

void Node::DeliverNow() {
  if (exchange_) exchange_->DeliverDueNow();
}

int Node::DeliveriesOutstanding() const { return exchange_ ? exchange_->Outstanding() : 0; }

void Node::ProbePeersNow() {
  if (prober_) prober_->ProbeAll();
}

Node::~Node() { Shutdown(absl::Seconds(5)); }

}  // namespace corridor
