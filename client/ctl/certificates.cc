#include "client/ctl/certificates.h"

#include <openssl/asn1.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <climits>
#include <cstdint>
#include <ctime>
#include <memory>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "client/lib/x509_internal.h"

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
// PEM out, and the CA key in.

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

}  // namespace

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

}  // namespace corridor::pki
