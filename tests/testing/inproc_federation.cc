#include "tests/testing/inproc_federation.h"

#include <atomic>
#include <stdexcept>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "ledger/crypto/crypto.h"
#include "server/node/config.h"
#include "tests/testing/deadline.h"

namespace corridor::testing {
namespace {

// Whole seconds, so times the nodes write (RFC 3339 to the second) compare
// exactly with times a test computes from the clock.
absl::Time StartTime(absl::Time start) {
  if (start != absl::InfinitePast()) return start;
  return absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()));
}

}  // namespace

InProcessFederation::InProcessFederation(InProcessFederationOptions options)
    : options_(std::move(options)), clock_(StartTime(options_.start)) {
  for (const auto& [name, value] : options_.limits) fed_.limits[name] = value;
  for (const auto& [org, kind] : options_.orgs) fed_.AddOrg(org, kind);
  uint64_t seed = options_.jitter_seed;
  for (const auto& [org, kind] : options_.orgs) {
    auto config = LoadNodeConfig(fed_.WriteNodeConfig(org, options_.users));
    if (!config.ok()) throw std::runtime_error(std::string(config.status().message()));
    configs_[org] = *std::move(config);
    seeds_[org] = seed++;
  }
  if (options_.edit_roster) {
    v1::Roster roster = fed_.MakeRoster(1);
    options_.edit_roster(roster);
    const std::string json = fed_.Sign(roster, static_cast<int>(fed_.threshold()));
    for (const auto& [org, kind] : options_.orgs) {
      if (!WriteFileAtomically(fed_.org(org).dir + "/roster.json", json, 0644).ok()) {
        throw std::runtime_error("cannot write the roster of " + org);
      }
    }
  }
}

InProcessFederation::~InProcessFederation() {
  for (auto& [org, node] : nodes_) node->Shutdown(absl::Seconds(1));
  nodes_.clear();
}

absl::Status InProcessFederation::StartAll() {
  for (const auto& [org, kind] : options_.orgs) {
    if (auto st = Start(org); !st.ok()) return st;
  }
  return absl::OkStatus();
}

absl::Status InProcessFederation::Start(const std::string& org) {
  if (running(org)) return absl::OkStatus();
  NodeTestHooks hooks;
  hooks.clock = &clock_;
  hooks.jitter_seed = seeds_.at(org);
  auto node = Node::Start(configs_.at(org), std::move(hooks));
  if (!node.ok()) {
    return absl::Status(node.status().code(),
                        absl::StrCat(org, "'s node: ", node.status().message()));
  }
  nodes_[org] = *std::move(node);
  return absl::OkStatus();
}

void InProcessFederation::Stop(const std::string& org) {
  auto it = nodes_.find(org);
  if (it == nodes_.end()) return;
  it->second->Shutdown(absl::Seconds(1));
  nodes_.erase(it);
}

void InProcessFederation::Advance(absl::Duration d) {
  clock_.Advance(d);
  DeliverNow();
}

void InProcessFederation::DeliverNow() {
  for (auto& [org, node] : nodes_) node->DeliverNow();
}

std::string InProcessFederation::CertificatePrefix(const std::string& org,
                                                   const std::string& user) {
  const std::string key = absl::StrCat(org, "/", user);
  auto it = user_prefixes_.find(key);
  if (it != user_prefixes_.end()) return it->second;
  return user_prefixes_[key] = fed_.IssueUser(org, user);
}

std::shared_ptr<grpc::Channel> InProcessFederation::Channel(const std::string& at,
                                                            const std::string& user,
                                                            const std::string& org) {
  const std::string who = org.empty() ? at : org;
  const std::string key = absl::StrCat(at, "/", who, "/", user);
  absl::MutexLock lock(&channels_mu_);
  auto it = channels_.find(key);
  if (it != channels_.end()) return it->second;
  TlsIdentity id;
  id.roots_pem = fed_.org(at).ca.cert_pem;
  if (user == "node") {
    id.cert_pem = fed_.org(who).node.cert_pem;
    id.key_pem = fed_.org(who).node.key_pem;
  } else {
    const std::string prefix = CertificatePrefix(who, user);
    id.cert_pem = ReadFileToString(prefix + ".crt").value();
    id.key_pem = ReadFileToString(prefix + ".key").value();
  }
  return channels_[key] = MakeMutualTlsChannel(id, fed_.org(at).endpoint(), "");
}

std::shared_ptr<grpc::Channel> InProcessFederation::NewChannel(const std::string& at,
                                                               const std::string& user) {
  std::string prefix;
  {
    absl::MutexLock lock(&channels_mu_);
    prefix = CertificatePrefix(at, user);
  }
  TlsIdentity id{ReadFileToString(prefix + ".crt").value(),
                 ReadFileToString(prefix + ".key").value(), fed_.org(at).ca.cert_pem};
  // A channel argument of its own keeps gRPC from sharing a subchannel.
  grpc::ChannelArguments args;
  static std::atomic<int> distinct{0};
  args.SetInt("corridor.test.distinct", distinct++);
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = id.roots_pem;
  ssl.pem_private_key = id.key_pem;
  ssl.pem_cert_chain = id.cert_pem;
  return grpc::CreateCustomChannel(fed_.org(at).endpoint(), grpc::SslCredentials(ssl), args);
}

std::unique_ptr<v1::CaseService::Stub> InProcessFederation::Cases(const std::string& at,
                                                                  const std::string& user) {
  return v1::CaseService::NewStub(Channel(at, user));
}

std::unique_ptr<v1::ReferralService::Stub> InProcessFederation::Referrals(const std::string& at,
                                                                          const std::string& user) {
  return v1::ReferralService::NewStub(Channel(at, user));
}

std::unique_ptr<v1::AuditService::Stub> InProcessFederation::Audit(const std::string& at,
                                                                   const std::string& user) {
  return v1::AuditService::NewStub(Channel(at, user));
}

std::unique_ptr<v1::NodeService::Stub> InProcessFederation::NodeApi(const std::string& at,
                                                                    const std::string& user) {
  return v1::NodeService::NewStub(Channel(at, user));
}

std::unique_ptr<grpc::ClientContext> InProcessFederation::Context(absl::Duration deadline) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + ScaledDeadline(deadline)));
  return ctx;
}

bool InProcessFederation::Eventually(const std::function<bool()>& done, absl::Duration deadline) {
  const absl::Time give_up = absl::Now() + ScaledDeadline(deadline);
  while (!done()) {
    if (absl::Now() > give_up) return false;
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

}  // namespace corridor::testing
