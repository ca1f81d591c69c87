#include "server/auth/tls_trust.h"

#include <atomic>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/lib/pki.h"
#include "ledger/base/log.h"
#include "server/auth/identity.h"

namespace corridor {
namespace {

// At most this many `tls.refused` lines a second; the rest are counted.
constexpr int kRefusalLinesPerSecond = 5;

// The certificate's first spiffe:// URI, unverified, for the log; "" if none.
std::string ClaimedUri(const pki::CertificateInfo& info) {
  for (const std::string& uri : info.uris) {
    if (uri.rfind("spiffe://", 0) == 0) return uri;
  }
  return "";
}

class Verifier final : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit Verifier(std::shared_ptr<const IdentityResolver> identity)
      : identity_(std::move(identity)) {}

  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    const std::string pem(request->peer_cert().data(), request->peer_cert().size());
    absl::Status st = CheckIssuedByRosterMember(*identity_, pem, identity_->clock().Now());
    if (st.ok()) {
      *sync_status = grpc::Status::OK;
    } else {
      LogRefusal(pem, st);
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(st.message()));
    }
    return true;  // done synchronously
  }

  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  void LogRefusal(const std::string& pem, const absl::Status& st) {
    const int64_t second = absl::ToUnixSeconds(absl::Now());
    int64_t window = window_.load();
    if (window != second && window_.compare_exchange_strong(window, second)) {
      lines_ = 0;
      const int64_t skipped = skipped_.exchange(0);
      if (skipped > 0) log::Warn("tls.refused", {{"not_logged", skipped}});
    }
    if (lines_.fetch_add(1) >= kRefusalLinesPerSecond) {
      skipped_.fetch_add(1);
      return;
    }
    auto info = pki::InspectCertificate(pem);
    log::Warn("tls.refused", {{"claims", info.ok() ? ClaimedUri(*info) : std::string()},
                              {"serial", info.ok() ? info->serial_hex : std::string()},
                              {"cause", st.message()}});
  }

  const std::shared_ptr<const IdentityResolver> identity_;
  std::atomic<int64_t> window_{0};
  std::atomic<int> lines_{0};
  std::atomic<int64_t> skipped_{0};
};

}  // namespace

absl::Status CheckIssuedByRosterMember(const IdentityResolver& identity, absl::string_view cert_pem,
                                       absl::Time now) {
  if (!identity.IssuingMember(cert_pem, now).empty()) return absl::OkStatus();
  const std::shared_ptr<const v1::Roster> roster = identity.roster();
  auto info = pki::InspectCertificate(cert_pem);
  if (!info.ok()) return absl::UnauthenticatedError("the client certificate cannot be read");
  // Name the cause by what the certificate claims, for the operator reading the log.
  const std::string uri = ClaimedUri(*info);
  auto id = ParseSpiffeUri(uri, roster->federation());
  if (id.ok()) {
    for (const v1::Member& m : roster->members()) {
      if (m.org() != id->org) continue;
      absl::Status st = pki::VerifyIssuedBy(cert_pem, m.ca_cert_pem(), now);
      return absl::UnauthenticatedError(
          absl::StrCat("the certificate of ", uri, " is not valid under the CA of org \"", m.org(),
                       "\" in roster version ", roster->version(), ": ",
                       st.ok() ? "it was issued by another member's CA" : st.message()));
    }
    return absl::UnauthenticatedError(absl::StrCat("CA not trusted: org \"", id->org,
                                                   "\" is not in the roster in force (version ",
                                                   roster->version(), ")"));
  }
  return absl::UnauthenticatedError(
      absl::StrCat("CA not trusted: no CA of a member of roster version ", roster->version(),
                   " issued this certificate",
                   uri.empty() ? std::string() : absl::StrCat(" (it claims to be ", uri, ")")));
}

std::shared_ptr<grpc::experimental::CertificateVerifier> RosterCertificateVerifier(
    std::shared_ptr<const IdentityResolver> identity) {
  return grpc::experimental::ExternalCertificateVerifier::Create<Verifier>(std::move(identity));
}

}  // namespace corridor
