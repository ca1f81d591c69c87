// Ed25519 signing with a key that stays in a PKCS#11 token (a hardware
// security module, or SoftHSM2 for trying it out): the node asks the token to
// sign and never holds the private key.
//
// The module (the vendor's PKCS#11 library, a .so) is loaded with dlopen and
// driven through the C API of PKCS#11 v2.40 (OASIS; p11-kit's pkcs11.h), with
// the mechanisms CKM_EDDSA (sign) and CKM_EC_EDWARDS_KEY_PAIR_GEN (generate),
// key type CKK_EC_EDWARDS on curve edwards25519. No OpenSSL engine is involved.
//
// Thread safety: Pkcs11Signer::Signature may be called from any number of
// threads at once. PKCS#11 sessions are never shared between threads: each
// signature takes a session of its own from a small pool (at most
// kMaxPkcs11Sessions open, guarded by a std::mutex) and gives it back after.
// Modules are initialised with CKF_OS_LOCKING_OK, so the module may be called
// from several threads on different sessions.
#ifndef CORRIDOR_LEDGER_CRYPTO_PKCS11_H_
#define CORRIDOR_LEDGER_CRYPTO_PKCS11_H_

#include <p11-kit/pkcs11.h>

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/secret.h"

namespace corridor {

// The most sessions one signer keeps open with its token (signatures beyond
// that many at once wait for a session to come back).
inline constexpr size_t kMaxPkcs11Sessions = 8;

// A PKCS#11 module, loaded and initialised (C_Initialize) once per process and
// path, and kept for the life of the process (never finalised or unloaded:
// another signer may need it again after a reload). Thread-safe.
class Pkcs11Module {
 public:
  // NotFound if `path` does not exist; FailedPrecondition if it cannot be
  // loaded or is not a PKCS#11 module, or if C_Initialize fails.
  static absl::StatusOr<std::shared_ptr<Pkcs11Module>> Load(const std::string& path);
  const std::string& path() const { return path_; }
  CK_FUNCTION_LIST* functions() const { return functions_; }

  // The slot holding the initialised token labelled `label` (labels are
  // compared without PKCS#11's trailing blank padding). NotFound names the
  // labels of the tokens present.
  absl::StatusOr<CK_SLOT_ID> FindToken(absl::string_view label) const;

  Pkcs11Module(std::string path, CK_FUNCTION_LIST* functions)
      : path_(std::move(path)), functions_(functions) {}

 private:
  const std::string path_;
  CK_FUNCTION_LIST* const functions_;
};

// Which key: the module, the token's label, and the key's CKA_LABEL and/or
// CKA_ID (hex). At least one of key_label and key_object_id must be set.
struct Pkcs11KeyRef {
  std::string module;
  std::string token_label;
  std::string key_label;
  std::string key_object_id;  // hex, e.g. "01" or "a1b2c3"

  // "key \"<label>\" (id <hex>) in token \"<token>\"", for messages.
  std::string Describe() const;
};

// The PKCS#11 name of a return value ("CKR_PIN_INCORRECT"), or its hex.
std::string Pkcs11ReturnName(CK_RV rv);

// Reads a PIN from `path` (trailing whitespace dropped). FailedPrecondition if
// the file may be read by users other than its owner and group (any "other"
// permission bit: a PIN must not be world-readable), NotFound if missing,
// InvalidArgument if empty or over 256 bytes.
absl::StatusOr<SecretBytes> ReadPinFile(const std::string& path);

class Pkcs11Signer final : public Signer {
 public:
  // Loads the module, finds the token, logs in as its user with `pin`, finds
  // the private key and its public key, checks that it is an Ed25519 key that
  // may sign and is sensitive (the token never reveals its value), and makes
  // one test signature that must verify with the public key. Errors, each in
  // words for the person who set the token up:
  //   NotFound            the module file, the token or the key is not there;
  //   PermissionDenied    the token refused the PIN (or the PIN is locked);
  //   FailedPrecondition  the module cannot be loaded, the key is of another
  //                       type or may not sign, is not sensitive, several keys
  //                       match, or the token cannot make Ed25519 signatures;
  //   Unavailable         the token failed (a device error).
  static absl::StatusOr<std::unique_ptr<Pkcs11Signer>> Open(const Pkcs11KeyRef& ref,
                                                            SecretBytes pin);
  ~Pkcs11Signer() override;
  Pkcs11Signer(const Pkcs11Signer&) = delete;
  Pkcs11Signer& operator=(const Pkcs11Signer&) = delete;

  // Read from the token at Open (CKA_EC_POINT of the key's public object).
  const Ed25519PublicKey& public_key() const override { return public_key_; }
  // Signs with CKM_EDDSA on a session of the pool, and checks the signature
  // with the public key before returning it. A session the token closed (or a
  // token that logged out) is replaced once; then Unavailable naming what the
  // token answered.
  absl::StatusOr<std::string> Signature(absl::string_view message) const override;
  // CKA_EXTRACTABLE of the private key: true means the token would export it
  // wrapped under another key (never in the clear: Open refuses keys that are
  // not sensitive).
  bool extractable() const { return extractable_; }
  const Pkcs11KeyRef& ref() const { return ref_; }

 private:
  struct Session {
    CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
    CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  };
  Pkcs11Signer(std::shared_ptr<Pkcs11Module> module, CK_SLOT_ID slot, Pkcs11KeyRef ref,
               SecretBytes pin, Ed25519PublicKey public_key);
  absl::Status Login(CK_SESSION_HANDLE session) const;
  absl::StatusOr<Session> OpenSession() const;
  absl::StatusOr<Session> Acquire() const;
  void Release(Session s, bool reusable) const;
  // One attempt on one session; `rv` is what the token answered.
  absl::StatusOr<std::string> SignOn(const Session& s, absl::string_view message, CK_RV* rv) const;

  const std::shared_ptr<Pkcs11Module> module_;
  const CK_SLOT_ID slot_;
  const Pkcs11KeyRef ref_;
  const SecretBytes pin_;  // to log in again after the token logged out
  Ed25519PublicKey public_key_;
  bool extractable_ = false;
  // Kept open so the login (which PKCS#11 keeps per application and token,
  // while any session is open) lasts as long as the signer.
  CK_SESSION_HANDLE login_session_ = CK_INVALID_HANDLE;

  mutable std::mutex mu_;
  mutable std::condition_variable returned_;
  mutable std::vector<Session> idle_;  // guarded by mu_
  mutable size_t open_ = 0;            // guarded by mu_: idle plus in use
};

// Generates a new Ed25519 key pair in the token with `ref`'s label and id:
// private half sensitive, never extractable, token object; public half with
// CKA_EC_POINT. AlreadyExists if a private key with that label (or id) is
// there; the other errors as Pkcs11Signer::Open. Returns the public key.
absl::StatusOr<Ed25519PublicKey> GenerateEd25519KeyInToken(const Pkcs11KeyRef& ref,
                                                           const SecretBytes& pin);

}  // namespace corridor

#endif  // CORRIDOR_LEDGER_CRYPTO_PKCS11_H_
