#include "client/lib/pki.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <ctime>
#include <memory>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/lib/x509_internal.h"

namespace corridor::pki {

// ---------------------------------------------------------------------------
// Shared with issuance (x509_internal.h).

std::string DrainOpenSslErrors() {
  const unsigned long first = ERR_get_error();
  ERR_clear_error();
  if (first == 0) return "no detail from OpenSSL";
  char buf[256];
  ERR_error_string_n(first, buf, sizeof(buf));
  return buf;
}

absl::Status OpenSslFailure(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", DrainOpenSslErrors()));
}

absl::StatusOr<BioPtr> ReadOnlyBio(absl::string_view pem) {
  if (pem.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError("PEM input is too large");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslFailure("cannot allocate an OpenSSL buffer");
  return bio;
}

absl::StatusOr<X509Ptr> ParseCertificatePem(absl::string_view pem, absl::string_view what) {
  auto bio = ReadOnlyBio(pem);
  if (!bio.ok()) return bio.status();
  X509Ptr cert(PEM_read_bio_X509(bio->get(), nullptr, nullptr, nullptr));
  if (!cert) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " is not a PEM X.509 certificate (expected \"-----BEGIN CERTIFICATE-----\"): ",
        DrainOpenSslErrors()));
  }
  return cert;
}

absl::StatusOr<absl::Time> Asn1TimeToAbsl(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the certificate has a malformed validity time");
  }
  return absl::FromTM(tm, absl::UTCTimeZone());
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

namespace {

std::string HexLower(const unsigned char* data, size_t len) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * len);
  for (size_t i = 0; i < len; ++i) {
    out.push_back(kDigits[data[i] >> 4]);
    out.push_back(kDigits[data[i] & 0xf]);
  }
  return out;
}

std::string SubjectOneLine(const X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  // "O = union-sg, CN = Union SG Corridor CA", UTF-8 kept as is.
  if (!bio || X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB) < 0) {
    ERR_clear_error();
    return "";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<size_t>(len)) : "";
}

}  // namespace

std::string NodeSpiffeUri(absl::string_view federation, absl::string_view org) {
  return absl::StrCat("spiffe://", federation, "/", org, "/node");
}

std::string UserSpiffeUri(absl::string_view federation, absl::string_view org,
                          absl::string_view user) {
  return absl::StrCat("spiffe://", federation, "/", org, "/user/", user);
}

absl::StatusOr<std::string> NormalizeSerial(absl::string_view written) {
  absl::string_view s = absl::StripAsciiWhitespace(written);
  std::string sign;
  if (absl::ConsumePrefix(&s, "-")) sign = "-";
  if (!absl::ConsumePrefix(&s, "0x")) absl::ConsumePrefix(&s, "0X");
  std::string digits;
  for (char ch : s) {
    if (absl::ascii_isxdigit(static_cast<unsigned char>(ch))) {
      digits.push_back(absl::ascii_tolower(static_cast<unsigned char>(ch)));
    } else if (ch != ':' && ch != ' ' && ch != '-') {
      return absl::InvalidArgumentError(absl::StrCat(
          "serial \"", absl::CHexEscape(written),
          "\" is not a hexadecimal certificate serial (write it as `openssl x509 -noout -serial` "
          "or `-text` shows it, e.g. 0A:1B:2C or 0a1b2c)"));
    }
  }
  const size_t first = digits.find_first_not_of('0');
  if (digits.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("serial \"", absl::CHexEscape(written), "\" holds no hexadecimal digits"));
  }
  if (first == std::string::npos) return std::string("0");
  return sign + digits.substr(first);
}

bool SameCertificate(absl::string_view a_pem, absl::string_view b_pem) {
  auto a = ParseCertificatePem(a_pem, "the first certificate");
  auto b = ParseCertificatePem(b_pem, "the second certificate");
  return a.ok() && b.ok() && X509_cmp(a->get(), b->get()) == 0;
}

absl::StatusOr<CertificateInfo> InspectCertificate(absl::string_view cert_pem) {
  auto cert = ParseCertificatePem(cert_pem, "the input");
  if (!cert.ok()) return cert.status();
  CertificateInfo info;

  int crit = 0;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert->get(), NID_subject_alt_name, &crit, nullptr)));
  if (!names && crit == -2) {
    return absl::InvalidArgumentError("the certificate has more than one subjectAltName extension");
  }
  if (!names && crit >= 0) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the certificate's subjectAltName extension is malformed");
  }
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type != GEN_URI) continue;
    const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
    info.uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                           static_cast<size_t>(ASN1_STRING_length(s)));
  }

  // The serial's magnitude bytes as encoded (RFC 5280 serials are positive; a negative one from
  // a broken issuer keeps its sign so it cannot collide with the positive value).
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert->get());
  info.serial_hex =
      HexLower(ASN1_STRING_get0_data(serial), static_cast<size_t>(ASN1_STRING_length(serial)));
  if (info.serial_hex.empty()) info.serial_hex = "00";
  if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER) info.serial_hex.insert(0, "-");
  if (auto normal = NormalizeSerial(info.serial_hex); normal.ok()) info.serial_hex = *normal;

  info.subject = SubjectOneLine(X509_get_subject_name(cert->get()));
  auto not_before = Asn1TimeToAbsl(X509_get0_notBefore(cert->get()));
  if (!not_before.ok()) return not_before.status();
  auto not_after = Asn1TimeToAbsl(X509_get0_notAfter(cert->get()));
  if (!not_after.ok()) return not_after.status();
  info.not_before = *not_before;
  info.not_after = *not_after;
  return info;
}

absl::Status VerifyIssuedBy(absl::string_view cert_pem, absl::string_view ca_cert_pem,
                            absl::Time at, Purpose purpose) {
  auto cert = ParseCertificatePem(cert_pem, "the certificate");
  if (!cert.ok()) return cert.status();
  auto ca = ParseCertificatePem(ca_cert_pem, "the CA certificate");
  if (!ca.ok()) return ca.status();

  // The store trusts exactly this CA; no untrusted intermediates are offered, so the only chain
  // that can verify is cert -> ca (or ca alone, when cert is the CA).
  StorePtr store(X509_STORE_new());
  if (!store || X509_STORE_add_cert(store.get(), ca->get()) != 1) {
    return OpenSslFailure("cannot set up certificate verification");
  }
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr) != 1) {
    return OpenSslFailure("cannot set up certificate verification");
  }
  X509_VERIFY_PARAM_set_time(X509_STORE_CTX_get0_param(ctx.get()),
                             static_cast<time_t>(absl::ToUnixSeconds(at)));
  if (purpose == Purpose::kTlsClient &&
      X509_STORE_CTX_set_purpose(ctx.get(), X509_PURPOSE_SSL_CLIENT) != 1) {
    return OpenSslFailure("cannot set up certificate verification");
  }
  const int verified = X509_verify_cert(ctx.get());
  const int err = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  if (verified != 1) {
    std::string why = X509_verify_cert_error_string(err);
    if (err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID) {
      X509* failed = X509_STORE_CTX_get_current_cert(ctx.get());
      auto from = Asn1TimeToAbsl(X509_get0_notBefore(failed ? failed : cert->get()));
      auto until = Asn1TimeToAbsl(X509_get0_notAfter(failed ? failed : cert->get()));
      if (from.ok() && until.ok()) {
        absl::StrAppend(&why, " (", failed == ca->get() ? "CA" : "certificate", " valid from ",
                        Rfc3339(*from), " until ", Rfc3339(*until), ", checked at ", Rfc3339(at),
                        ")");
      }
    }
    return absl::PermissionDeniedError(
        absl::StrCat("the certificate is not valid under the given CA: ", why));
  }
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  const int depth = chain ? sk_X509_num(chain) : 0;
  if (depth < 1 || depth > 2 || X509_cmp(sk_X509_value(chain, depth - 1), ca->get()) != 0) {
    return absl::PermissionDeniedError("the certificate does not chain directly to the given CA");
  }
  return absl::OkStatus();
}

}  // namespace corridor::pki
