#include "client/pki.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace corridor::pki {
namespace {

template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;
using StorePtr = std::unique_ptr<X509_STORE, Deleter<X509_STORE, X509_STORE_free>>;
using StoreCtxPtr = std::unique_ptr<X509_STORE_CTX, Deleter<X509_STORE_CTX, X509_STORE_CTX_free>>;
using BnPtr = std::unique_ptr<BIGNUM, Deleter<BIGNUM, BN_free>>;
using NamesPtr = std::unique_ptr<GENERAL_NAMES, Deleter<GENERAL_NAMES, GENERAL_NAMES_free>>;

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  ERR_clear_error();
  return buf;
}

PkeyPtr NewP256Key() { return PkeyPtr(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

std::string KeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, len);
}

std::string CertToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, len);
}

absl::StatusOr<X509Ptr> ParseCert(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not a PEM X.509 certificate");
  }
  return cert;
}

absl::StatusOr<PkeyPtr> ParseKey(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return absl::InvalidArgumentError("not a PEM private key");
  }
  return key;
}

absl::Status SetRandomSerial(X509* cert) {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) return absl::InternalError("no randomness");
  bytes[0] &= 0x7f;  // positive
  bytes[0] |= 0x01;  // and full length
  BnPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (!bn || BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert)) == nullptr) {
    return absl::InternalError("cannot set serial: " + OpenSslError());
  }
  return absl::OkStatus();
}

absl::Status AddExt(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("bad certificate extension ", OBJ_nid2sn(nid),
                                                   "=", value, ": ", OpenSslError()));
  }
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  return absl::OkStatus();
}

// Fills version, serial, validity, subject and key; the caller adds extensions and signs.
absl::StatusOr<X509Ptr> NewCert(EVP_PKEY* key, const std::string& cn, const std::string& org,
                                absl::Duration validity) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  if (auto st = SetRandomSerial(cert.get()); !st.ok()) return st;
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(now - 300));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()),
                static_cast<time_t>(now + absl::ToInt64Seconds(validity)));
  X509_NAME* name = X509_get_subject_name(cert.get());
  if (!org.empty()) {
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                               reinterpret_cast<const unsigned char*>(org.c_str()), -1, -1, 0);
  }
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

absl::Time FromAsn1(const ASN1_TIME* t) {
  struct tm tm {};
  ASN1_TIME_to_tm(t, &tm);
  return absl::FromUnixSeconds(timegm(&tm));
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
  if (options.org.empty() || options.common_name.empty()) {
    return absl::InvalidArgumentError("a CA needs an org and a common name");
  }
  PkeyPtr key = NewP256Key();
  if (!key) return absl::InternalError("cannot generate a P-256 key: " + OpenSslError());
  auto cert = NewCert(key.get(), options.common_name, options.org, options.validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(c));
  for (auto [nid, value] : std::vector<std::pair<int, std::string>>{
           {NID_basic_constraints, "critical,CA:TRUE,pathlen:0"},
           {NID_key_usage, "critical,keyCertSign,cRLSign"},
           {NID_subject_key_identifier, "hash"},
           {NID_authority_key_identifier, "keyid:always"}}) {
    if (auto st = AddExt(c, c, nid, value); !st.ok()) return st;
  }
  if (X509_sign(c, key.get(), EVP_sha256()) == 0) {
    return absl::InternalError("cannot sign the CA certificate: " + OpenSslError());
  }
  return IssuedCertificate{KeyToPem(key.get()), CertToPem(c)};
}

absl::StatusOr<IssuedCertificate> IssueLeaf(const IssuedCertificate& ca, const LeafOptions& options) {
  if (options.spiffe_uri.rfind("spiffe://", 0) != 0) {
    return absl::InvalidArgumentError("the certificate identity must be a spiffe:// URI");
  }
  auto ca_cert = ParseCert(ca.cert_pem);
  if (!ca_cert.ok()) return absl::InvalidArgumentError("CA certificate: not a PEM X.509 certificate");
  auto ca_key = ParseKey(ca.key_pem);
  if (!ca_key.ok()) return absl::InvalidArgumentError("CA key: not a PEM private key");
  if (X509_check_private_key(ca_cert->get(), ca_key->get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("the CA key does not belong to the CA certificate");
  }
  PkeyPtr key = NewP256Key();
  if (!key) return absl::InternalError("cannot generate a P-256 key: " + OpenSslError());
  auto cert = NewCert(key.get(), options.common_name.empty() ? options.spiffe_uri : options.common_name,
                      "", options.validity);
  if (!cert.ok()) return cert.status();
  X509* c = cert->get();
  X509_set_issuer_name(c, X509_get_subject_name(ca_cert->get()));

  std::string san = "URI:" + options.spiffe_uri;
  for (const auto& d : options.dns_names) absl::StrAppend(&san, ",DNS:", d);
  for (const auto& ip : options.ip_addresses) absl::StrAppend(&san, ",IP:", ip);
  for (auto [nid, value] : std::vector<std::pair<int, std::string>>{
           {NID_basic_constraints, "critical,CA:FALSE"},
           {NID_key_usage, "critical,digitalSignature,keyEncipherment,keyAgreement"},
           {NID_ext_key_usage, options.server_auth ? "clientAuth,serverAuth" : "clientAuth"},
           {NID_subject_key_identifier, "hash"},
           {NID_authority_key_identifier, "keyid:always"},
           {NID_subject_alt_name, san}}) {
    if (auto st = AddExt(c, ca_cert->get(), nid, value); !st.ok()) return st;
  }
  if (X509_sign(c, ca_key->get(), EVP_sha256()) == 0) {
    return absl::InternalError("cannot sign the certificate: " + OpenSslError());
  }
  return IssuedCertificate{KeyToPem(key.get()), CertToPem(c)};
}

absl::StatusOr<CertificateInfo> InspectCertificate(absl::string_view cert_pem) {
  auto cert = ParseCert(cert_pem);
  if (!cert.ok()) return cert.status();
  CertificateInfo info;
  NamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert->get(), NID_subject_alt_name, nullptr, nullptr)));
  if (names) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
      const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
      if (gn->type == GEN_URI) {
        const ASN1_IA5STRING* s = gn->d.uniformResourceIdentifier;
        info.uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                               ASN1_STRING_length(s));
      }
    }
  }
  BnPtr bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert->get()), nullptr));
  char* hex = BN_bn2hex(bn.get());
  info.serial_hex = absl::AsciiStrToLower(hex);
  OPENSSL_free(hex);
  char* subject = X509_NAME_oneline(X509_get_subject_name(cert->get()), nullptr, 0);
  info.subject = subject;
  OPENSSL_free(subject);
  info.not_before = FromAsn1(X509_get0_notBefore(cert->get()));
  info.not_after = FromAsn1(X509_get0_notAfter(cert->get()));
  return info;
}

absl::Status VerifyIssuedBy(absl::string_view cert_pem, absl::string_view ca_cert_pem, absl::Time at) {
  auto cert = ParseCert(cert_pem);
  if (!cert.ok()) return absl::InvalidArgumentError("certificate: not a PEM X.509 certificate");
  auto ca = ParseCert(ca_cert_pem);
  if (!ca.ok()) return absl::InvalidArgumentError("CA: not a PEM X.509 certificate");
  StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), ca->get());
  StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr) != 1) {
    return absl::InternalError("cannot set up certificate verification");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(absl::ToUnixSeconds(at)));
  if (X509_verify_cert(ctx.get()) != 1) {
    const int err = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    return absl::PermissionDeniedError(X509_verify_cert_error_string(err));
  }
  return absl::OkStatus();
}

}  // namespace corridor::pki
