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
#include "ledger/crypto/openssl_ptr.h"

namespace corridor::pki {
namespace {

// Clients and servers whose clocks run a little behind ours still accept a fresh certificate.
constexpr absl::Duration kClockSkew = absl::Minutes(5);
// Far enough for any sane CA, and keeps notAfter well inside GeneralizedTime's year 9999.
constexpr absl::Duration kMaxValidity = absl::Hours(24 * 365 * 100);
// RFC 5280 ub-common-name and ub-organization-name.
constexpr size_t kMaxNameAttribute = 64;
// SPIFFE ID specification: an ID is at most 2048 bytes; a trust domain at most 255.
constexpr size_t kMaxSpiffeUri = 2048;
constexpr size_t kMaxTrustDomain = 255;
// RFC 1035: a DNS name is at most 253 characters in text form.
constexpr size_t kMaxDnsName = 253;

// ---------------------------------------------------------------------------
// RAII for OpenSSL objects (the project's one family: ledger/crypto/openssl_ptr.h).

void FreeOpenSslString(char* s) { OPENSSL_free(s); }
void FreeGeneralNames(GENERAL_NAMES* names) { GENERAL_NAMES_free(names); }

using Asn1IntegerPtr = OpenSslPtr<ASN1_INTEGER, ASN1_INTEGER_free>;
using Asn1StringPtr = OpenSslPtr<ASN1_STRING, ASN1_STRING_free>;
using BigNumPtr = OpenSslPtr<BIGNUM, BN_free>;
using ExtensionPtr = OpenSslPtr<X509_EXTENSION, X509_EXTENSION_free>;
using GeneralNamePtr = OpenSslPtr<GENERAL_NAME, GENERAL_NAME_free>;
using GeneralNamesPtr = OpenSslPtr<GENERAL_NAMES, FreeGeneralNames>;
using OpenSslStringPtr = OpenSslPtr<char, FreeOpenSslString>;
using PkeyPtr = EvpPkeyPtr;
using StoreCtxPtr = OpenSslPtr<X509_STORE_CTX, X509_STORE_CTX_free>;
using StorePtr = OpenSslPtr<X509_STORE, X509_STORE_free>;
using X509Ptr = OpenSslPtr<X509, X509_free>;

// Drains OpenSSL's thread-local error queue and describes its oldest entry (the root cause).
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

// ---------------------------------------------------------------------------
// PEM in and out.

absl::StatusOr<std::string> BioContents(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  if (len <= 0 || data == nullptr) return OpenSslFailure("cannot read an OpenSSL memory buffer");
  return std::string(data, static_cast<size_t>(len));
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  // PEM_write_bio_PrivateKey writes PKCS#8 ("BEGIN PRIVATE KEY") in OpenSSL 3.
  if (!bio ||
      PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslFailure("cannot PEM-encode the private key");
  }
  return BioContents(bio.get());
}

absl::StatusOr<std::string> CertificateToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return OpenSslFailure("cannot PEM-encode the certificate");
  }
  return BioContents(bio.get());
}

absl::StatusOr<BioPtr> ReadOnlyBio(absl::string_view pem) {
  if (pem.size() > static_cast<size_t>(INT_MAX)) {
    return absl::InvalidArgumentError("PEM input is too large");
  }
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return OpenSslFailure("cannot allocate an OpenSSL buffer");
  return bio;
}

// `what` names the input in the error, e.g. "CA certificate".
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

absl::StatusOr<PkeyPtr> ParsePrivateKeyPem(absl::string_view pem, absl::string_view what) {
  auto bio = ReadOnlyBio(pem);
  if (!bio.ok()) return bio.status();
  // An empty passphrase as callback data stops OpenSSL from prompting on the terminal;
  // encrypted keys fail to load instead.
  PkeyPtr key(PEM_read_bio_PrivateKey(bio->get(), nullptr, nullptr, const_cast<char*>("")));
  if (!key) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not an unencrypted PEM private key: ", DrainOpenSslErrors()));
  }
  return key;
}

// ---------------------------------------------------------------------------
// Input validation. Everything that ends up in a certificate is checked here, once.

bool IsTrustDomainChar(char c) {
  return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' || c == '-' || c == '_';
}
bool IsPathSegmentChar(char c) {
  return absl::ascii_isalnum(c) || c == '.' || c == '-' || c == '_';
}

// The SPIFFE ID rules (github.com/spiffe/spiffe, standards/SPIFFE-ID.md): lower-case trust
// domain, at least one path segment, segments of [A-Za-z0-9._-] other than "." and "..",
// no query, fragment, port, user info or percent-encoding.
absl::Status ValidateSpiffeUri(absl::string_view uri) {
  constexpr absl::string_view kScheme = "spiffe://";
  if (!absl::StartsWith(uri, kScheme)) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate identity \"", uri,
                     "\" must be a spiffe:// URI, e.g. spiffe://<federation>/<org>/node"));
  }
  if (uri.size() > kMaxSpiffeUri) {
    return absl::InvalidArgumentError(absl::StrCat(
        "certificate identity is ", uri.size(), " bytes; at most ", kMaxSpiffeUri, " are allowed"));
  }
  const absl::string_view rest = uri.substr(kScheme.size());
  const size_t slash = rest.find('/');
  const absl::string_view trust_domain = rest.substr(0, slash);
  if (trust_domain.empty() || trust_domain.size() > kMaxTrustDomain ||
      !std::all_of(trust_domain.begin(), trust_domain.end(), IsTrustDomainChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate identity \"", uri, "\": the federation name \"", trust_domain,
                     "\" must be 1-255 characters of lower-case letters, digits, '.', '-' or '_'"));
  }
  if (slash == absl::string_view::npos || slash + 1 == rest.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate identity \"", uri, "\" has no path; expected spiffe://",
                     trust_domain, "/<org>/node or spiffe://", trust_domain, "/<org>/user/<name>"));
  }
  for (absl::string_view segment : absl::StrSplit(rest.substr(slash + 1), '/')) {
    if (segment.empty() || segment == "." || segment == ".." ||
        !std::all_of(segment.begin(), segment.end(), IsPathSegmentChar)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "certificate identity \"", uri, "\": path segment \"", segment,
          "\" must be non-empty letters, digits, '.', '-' or '_' (and not \".\" or \"..\")"));
    }
  }
  return absl::OkStatus();
}

// A host name or a wildcard ("*.example.com"): labels of letters, digits and '-'.
absl::Status ValidateDnsName(absl::string_view name) {
  absl::string_view host = name;
  if (absl::StartsWith(host, "*.")) host.remove_prefix(2);
  bool ok = !host.empty() && name.size() <= kMaxDnsName;
  for (absl::string_view label : absl::StrSplit(host, '.')) {
    ok = ok && !label.empty() && label.size() <= 63 && label.front() != '-' &&
         label.back() != '-' && std::all_of(label.begin(), label.end(), [](char c) {
           return absl::ascii_isalnum(c) || c == '-';
         });
  }
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", name,
        "\" is not a valid DNS name for the certificate (dot-separated labels of letters, digits "
        "and '-'; pass IP addresses as IP addresses)"));
  }
  return absl::OkStatus();
}

absl::Status ValidateValidity(absl::Duration validity) {
  if (validity <= absl::ZeroDuration() || validity > kMaxValidity) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate validity must be positive and at most 100 years, got ",
                     absl::FormatDuration(validity)));
  }
  return absl::OkStatus();
}

// `field` names the attribute in the error, e.g. "common name".
absl::Status ValidateNameAttribute(absl::string_view field, absl::string_view value) {
  if (value.size() > kMaxNameAttribute) {
    return absl::InvalidArgumentError(absl::StrCat(field, " \"", value, "\" is ", value.size(),
                                                   " bytes; X.509 allows at most ",
                                                   kMaxNameAttribute));
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// Building certificates.

absl::StatusOr<PkeyPtr> NewP256Key() {
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
  if (!key) return OpenSslFailure("cannot generate a P-256 key");
  return key;
}

// A uniformly random serial of exactly 128 bits: the top bit is set so the hex form is always
// 32 digits, leaving 127 random bits (RFC 5280 allows up to 20 octets; DER adds a 0x00 sign
// octet, making 17).
absl::Status SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    return OpenSslFailure("cannot draw random bytes for the certificate serial");
  }
  bytes[0] |= 0x80;
  BigNumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return OpenSslFailure("cannot set the certificate serial");
  }
  return absl::OkStatus();
}

absl::Status AddNameEntry(X509_NAME* name, const char* field, const std::string& value) {
  if (value.empty()) return absl::OkStatus();
  if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8,
                                 reinterpret_cast<const unsigned char*>(value.data()),
                                 static_cast<int>(value.size()), -1, 0) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot put ", field, "=\"", value,
                     "\" in the certificate subject: ", DrainOpenSslErrors()));
  }
  return absl::OkStatus();
}

// A v3 certificate with a fresh serial, validity [now - skew, now + validity], the given subject
// and public key. The caller sets the issuer, adds extensions and signs.
absl::StatusOr<X509Ptr> NewCertificate(EVP_PKEY* key, const std::string& org,
                                       const std::string& common_name, absl::Time now,
                                       absl::Duration validity) {
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslFailure("cannot allocate a certificate");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return OpenSslFailure("cannot set the certificate version");
  }
  if (auto st = SetRandomSerial(cert.get()); !st.ok()) return st;
  if (ASN1_TIME_set(X509_getm_notBefore(cert.get()),
                    static_cast<time_t>(absl::ToUnixSeconds(now - kClockSkew))) == nullptr ||
      ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                    static_cast<time_t>(absl::ToUnixSeconds(now + validity))) == nullptr) {
    return OpenSslFailure("cannot set the certificate validity");
  }
  X509_NAME* subject = X509_get_subject_name(cert.get());
  if (auto st = AddNameEntry(subject, "O", org); !st.ok()) return st;
  if (auto st = AddNameEntry(subject, "CN", common_name); !st.ok()) return st;
  if (X509_set_pubkey(cert.get(), key) != 1) {
    return OpenSslFailure("cannot set the certificate public key");
  }
  return cert;
}

// Adds an extension from OpenSSL's config syntax. Only ever called with constant values, never
// with user input (a ',' in user input would add entries; SANs are built by hand below).
absl::Status AddConfExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) {
    return OpenSslFailure(
        absl::StrCat("cannot add certificate extension ", OBJ_nid2sn(nid), "=", value));
  }
  return absl::OkStatus();
}

absl::Status PushName(GENERAL_NAMES* names, int type, Asn1StringPtr value) {
  GeneralNamePtr name(GENERAL_NAME_new());
  if (!name || !value) return OpenSslFailure("cannot allocate a subjectAltName entry");
  GENERAL_NAME_set0_value(name.get(), type, value.release());
  if (sk_GENERAL_NAME_push(names, name.get()) == 0) {
    return OpenSslFailure("cannot build the subjectAltName extension");
  }
  name.release();  // Owned by `names` now.
  return absl::OkStatus();
}

absl::StatusOr<Asn1StringPtr> Ia5String(const std::string& s) {
  Asn1StringPtr str(ASN1_IA5STRING_new());
  if (!str || ASN1_STRING_set(str.get(), s.data(), static_cast<int>(s.size())) != 1) {
    return OpenSslFailure("cannot allocate a subjectAltName string");
  }
  return str;
}

// subjectAltName = the SPIFFE URI, then DNS names, then IP addresses. Critical when the
// subject is empty (RFC 5280 4.2.1.6).
absl::Status AddSubjectAltName(X509* cert, const LeafOptions& options, bool critical) {
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return OpenSslFailure("cannot allocate the subjectAltName extension");
  auto uri = Ia5String(options.spiffe_uri);
  if (!uri.ok()) return uri.status();
  if (auto st = PushName(names.get(), GEN_URI, *std::move(uri)); !st.ok()) return st;
  for (const std::string& extra : options.extra_uris_for_tests) {
    auto more = Ia5String(extra);
    if (!more.ok()) return more.status();
    if (auto st = PushName(names.get(), GEN_URI, *std::move(more)); !st.ok()) return st;
  }
  for (const std::string& dns : options.dns_names) {
    auto s = Ia5String(dns);
    if (!s.ok()) return s.status();
    if (auto st = PushName(names.get(), GEN_DNS, *std::move(s)); !st.ok()) return st;
  }
  for (const std::string& ip : options.ip_addresses) {
    Asn1StringPtr octets(a2i_IPADDRESS(ip.c_str()));
    if (!octets) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat("\"", ip, "\" is not an IPv4 or IPv6 address (e.g. 127.0.0.1 or ::1)"));
    }
    if (auto st = PushName(names.get(), GEN_IPADD, std::move(octets)); !st.ok()) return st;
  }
  if (X509_add1_ext_i2d(cert, NID_subject_alt_name, names.get(), critical ? 1 : 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return OpenSslFailure("cannot add the subjectAltName extension");
  }
  return absl::OkStatus();
}

absl::Status Sign(X509* cert, EVP_PKEY* key) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) {
    return OpenSslFailure("cannot sign the certificate with SHA-256");
  }
  return absl::OkStatus();
}

absl::StatusOr<IssuedCertificate> Encode(EVP_PKEY* key, X509* cert) {
  IssuedCertificate out;
  auto key_pem = PrivateKeyToPem(key);
  if (!key_pem.ok()) return key_pem.status();
  auto cert_pem = CertificateToPem(cert);
  if (!cert_pem.ok()) return cert_pem.status();
  out.key_pem = *std::move(key_pem);
  out.cert_pem = *std::move(cert_pem);
  return out;
}

// ---------------------------------------------------------------------------
// Reading certificates.

absl::StatusOr<absl::Time> Asn1TimeToAbsl(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the certificate has a malformed validity time");
  }
  return absl::FromTM(tm, absl::UTCTimeZone());
}

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

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

}  // namespace

std::string NodeSpiffeUri(absl::string_view federation, absl::string_view org) {
  return absl::StrCat("spiffe://", federation, "/", org, "/node");
}

std::string UserSpiffeUri(absl::string_view federation, absl::string_view org,
                          absl::string_view user) {
  return absl::StrCat("spiffe://", federation, "/", org, "/user/", user);
}

absl::StatusOr<IssuedCertificate> CreateOrgCa(const CaOptions& options) {
  if (options.org.empty()) return absl::InvalidArgumentError("the CA needs an org (CaOptions.org)");
  if (options.common_name.empty()) {
    return absl::InvalidArgumentError("the CA needs a common name (CaOptions.common_name)");
  }
  if (auto st = ValidateNameAttribute("common name", options.common_name); !st.ok()) return st;
  if (auto st = ValidateNameAttribute("org", options.org); !st.ok()) return st;
  if (auto st = ValidateValidity(options.validity); !st.ok()) return st;

  auto key = NewP256Key();
  if (!key.ok()) return key.status();
  auto cert =
      NewCertificate(key->get(), options.org, options.common_name, absl::Now(), options.validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(c)) != 1) {
    return OpenSslFailure("cannot set the CA certificate issuer");
  }
  // subjectKeyIdentifier must come before authorityKeyIdentifier, which copies it.
  const std::pair<int, const char*> extensions[] = {
      {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
      {NID_key_usage, "critical,keyCertSign,cRLSign"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  for (const auto& [nid, value] : extensions) {
    if (auto st = AddConfExtension(c, c, nid, value); !st.ok()) return st;
  }
  if (auto st = Sign(c, key->get()); !st.ok()) return st;
  return Encode(key->get(), c);
}

absl::StatusOr<IssuedCertificate> IssueLeaf(const IssuedCertificate& ca,
                                            const LeafOptions& options) {
  if (auto st = ValidateSpiffeUri(options.spiffe_uri); !st.ok()) return st;
  if (auto st = ValidateNameAttribute("common name", options.common_name); !st.ok()) return st;
  for (const std::string& dns : options.dns_names) {
    if (auto st = ValidateDnsName(dns); !st.ok()) return st;
  }
  if (auto st = ValidateValidity(options.validity); !st.ok()) return st;

  auto ca_cert = ParseCertificatePem(ca.cert_pem, "the CA certificate");
  if (!ca_cert.ok()) return ca_cert.status();
  auto ca_key = ParsePrivateKeyPem(ca.key_pem, "the CA key");
  if (!ca_key.ok()) return ca_key.status();
  if (X509_check_private_key(ca_cert->get(), ca_key->get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        "the CA key does not belong to the CA certificate; pass the ca.key written together with "
        "this ca.crt");
  }
  if (X509_check_ca(ca_cert->get()) != 1) {
    return absl::InvalidArgumentError(
        "the CA certificate is not a CA (no basicConstraints CA:TRUE with keyCertSign); pass the "
        "org's ca.crt, not a node or user certificate");
  }

  if (X509_get0_subject_key_id(ca_cert->get()) == nullptr) {
    return absl::InvalidArgumentError(
        "the CA certificate has no subjectKeyIdentifier, which leaves need to name their issuer; "
        "recreate the CA with `corridorctl pki org`");
  }

  const absl::Time now = absl::Now();
  auto ca_not_after = Asn1TimeToAbsl(X509_get0_notAfter(ca_cert->get()));
  if (!ca_not_after.ok()) return ca_not_after.status();
  if (now + options.validity > *ca_not_after) {
    return absl::InvalidArgumentError(
        absl::StrCat("the certificate would outlive its CA (the CA expires ",
                     Rfc3339(*ca_not_after), "); shorten the validity or renew the CA"));
  }

  auto key = NewP256Key();
  if (!key.ok()) return key.status();
  auto cert = NewCertificate(key->get(), /*org=*/"", options.common_name, now, options.validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  if (X509_set_issuer_name(c, X509_get_subject_name(ca_cert->get())) != 1) {
    return OpenSslFailure("cannot set the certificate issuer");
  }
  // keyEncipherment is meaningless for an EC key but harmless, and some TLS stacks still look for
  // it on server certificates.
  const std::pair<int, const char*> extensions[] = {
      {NID_basic_constraints, "critical,CA:FALSE"},
      {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
      {NID_ext_key_usage, options.server_auth ? "serverAuth,clientAuth" : "clientAuth"},
      {NID_subject_key_identifier, "hash"},
      {NID_authority_key_identifier, "keyid:always"},
  };
  for (const auto& [nid, value] : extensions) {
    if (auto st = AddConfExtension(c, ca_cert->get(), nid, value); !st.ok()) return st;
  }
  if (auto st = AddSubjectAltName(c, options, /*critical=*/options.common_name.empty()); !st.ok()) {
    return st;
  }
  if (auto st = Sign(c, ca_key->get()); !st.ok()) return st;
  return Encode(key->get(), c);
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
                            absl::Time at) {
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
