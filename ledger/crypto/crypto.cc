#include "ledger/crypto/crypto.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "ledger/crypto/openssl_ptr.h"

namespace corridor {
namespace {

// gRPC's threads may still use OpenSSL while a process exits. OpenSSL's own at-exit
// cleanup would free its global state and drop the thread-local key under them (a
// crash risk, and every such thread's random generators and error state then count
// as leaked). Every program that links this file (corridord, corridorctl, every test)
// leaves OpenSSL's state alone at exit instead; this runs before main(), ahead of any
// other use of OpenSSL, whose first initialisation is the one that counts.
[[maybe_unused]] const bool kOpenSslKeptUntilExit = [] {
  return OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr) == 1;
}();

std::string BioToString(BIO* bio) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  return std::string(data, len);
}

}  // namespace

struct Sha256Hasher::State {
  EvpMdCtxPtr ctx{EVP_MD_CTX_new()};
};

Sha256Hasher::Sha256Hasher() : state_(new State) {
  EVP_DigestInit_ex(state_->ctx.get(), EVP_sha256(), nullptr);
}
Sha256Hasher::~Sha256Hasher() = default;

void Sha256Hasher::Update(absl::string_view data) {
  EVP_DigestUpdate(state_->ctx.get(), data.data(), data.size());
}

Sha256Digest Sha256Hasher::Finish() {
  Sha256Digest out;
  unsigned int len = 0;
  EVP_DigestFinal_ex(state_->ctx.get(), out.data(), &len);
  return out;
}

Sha256Digest Sha256(absl::string_view data) {
  Sha256Digest out;
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr);
  return out;
}

std::string HexEncode(absl::string_view bytes) { return absl::BytesToHexString(bytes); }

absl::StatusOr<std::string> HexDecode(absl::string_view hex) {
  if (hex.size() % 2 != 0) return absl::InvalidArgumentError("hex string has odd length");
  for (char c : hex) {
    if (!isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("hex string has a non-hex character");
    }
  }
  return absl::HexStringToBytes(hex);
}

std::string Base64Encode(absl::string_view bytes) { return absl::Base64Escape(bytes); }

absl::StatusOr<std::string> Base64Decode(absl::string_view b64) {
  // absl::Base64Unescape is lenient about padding; require canonical form so
  // that a value has exactly one encoding.
  if (b64.size() % 4 != 0)
    return absl::InvalidArgumentError("base64 length is not a multiple of 4");
  std::string out;
  if (!absl::Base64Unescape(b64, &out) || absl::Base64Escape(out) != b64) {
    return absl::InvalidArgumentError("not valid base64");
  }
  return out;
}

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    abort();  // No randomness means no safe keys or ids: never continue.
  }
  return out;
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromRaw(absl::string_view raw) {
  if (raw.size() != kEd25519PublicKeySize) {
    return absl::InvalidArgumentError(
        absl::StrCat("an Ed25519 public key is 32 bytes, got ", raw.size()));
  }
  return Ed25519PublicKey(std::string(raw));
}

absl::StatusOr<Ed25519PublicKey> Ed25519PublicKey::FromPem(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr));
  if (!key || EVP_PKEY_id(key.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("not an Ed25519 public key in PEM form");
  }
  std::string raw(kEd25519PublicKeySize, '\0');
  size_t len = raw.size();
  EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(raw.data()), &len);
  return Ed25519PublicKey(std::move(raw));
}

bool Ed25519PublicKey::Verify(absl::string_view message, absl::string_view signature) const {
  if (signature.size() != kEd25519SignatureSize) return false;
  EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw_.data()), raw_.size()));
  if (!key) return false;
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  if (EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key.get()) != 1) return false;
  return EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

std::string Ed25519PublicKey::ToPem() const {
  EvpPkeyPtr key(EVP_PKEY_new_raw_public_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(raw_.data()), raw_.size()));
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key.get());
  return BioToString(bio.get());
}

Ed25519PrivateKey Ed25519PrivateKey::Generate() {
  SecretBytes seed = SecretBytes::Random(32);
  auto key = FromSeed(seed.view());
  return *std::move(key);
}

struct Ed25519PrivateKey::Parsed {
  EvpPkeyPtr key;
};

Ed25519PrivateKey::Ed25519PrivateKey(SecretBytes seed, Ed25519PublicKey pub,
                                     std::unique_ptr<const Parsed> parsed)
    : seed_(std::move(seed)), public_key_(std::move(pub)), parsed_(std::move(parsed)) {}
Ed25519PrivateKey::Ed25519PrivateKey(Ed25519PrivateKey&&) noexcept = default;
Ed25519PrivateKey& Ed25519PrivateKey::operator=(Ed25519PrivateKey&&) noexcept = default;
Ed25519PrivateKey::~Ed25519PrivateKey() = default;

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromSeed(absl::string_view seed) {
  if (seed.size() != 32) return absl::InvalidArgumentError("an Ed25519 seed is 32 bytes");
  EvpPkeyPtr key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed.data()), seed.size()));
  if (!key) return absl::InternalError("OpenSSL refused the Ed25519 seed");
  std::string raw(kEd25519PublicKeySize, '\0');
  size_t len = raw.size();
  EVP_PKEY_get_raw_public_key(key.get(), reinterpret_cast<unsigned char*>(raw.data()), &len);
  auto parsed = std::make_unique<Parsed>();
  parsed->key = std::move(key);
  return Ed25519PrivateKey(SecretBytes::CopyOf(seed), Ed25519PublicKey::FromRaw(raw).value(),
                           std::move(parsed));
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromPem(absl::string_view pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key || EVP_PKEY_id(key.get()) != EVP_PKEY_ED25519) {
    return absl::InvalidArgumentError("not an Ed25519 private key in PEM (PKCS#8) form");
  }
  std::string seed(32, '\0');
  size_t len = seed.size();
  EVP_PKEY_get_raw_private_key(key.get(), reinterpret_cast<unsigned char*>(seed.data()), &len);
  const SecretBytes owned(std::move(seed));
  return FromSeed(owned.view());
}

absl::StatusOr<Ed25519PrivateKey> Ed25519PrivateKey::FromPemFile(const std::string& path) {
  auto pem = ReadFileToString(path);
  if (!pem.ok()) return pem.status();
  auto key = FromPem(*pem);
  WipeString(*pem);
  if (!key.ok())
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", key.status().message()));
  return key;
}

std::string Ed25519PrivateKey::Sign(absl::string_view message) const {
  // OpenSSL 3 allows one EVP_PKEY to sign from many threads at once.
  EVP_PKEY* key = parsed_->key.get();
  EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  std::string sig(kEd25519SignatureSize, '\0');
  size_t len = sig.size();
  if (EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1) {
    abort();  // Signing with a valid key cannot fail short of memory exhaustion.
  }
  return sig;
}

std::string Ed25519PrivateKey::ToPem() const {
  EvpPkeyPtr key(EVP_PKEY_new_raw_private_key(
      EVP_PKEY_ED25519, nullptr, reinterpret_cast<const unsigned char*>(seed_.view().data()),
      seed_.size()));
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  return BioToString(bio.get());
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace corridor
