// SoftHSM2 (Debian's softhsm2) for tests of keys in a PKCS#11 token: a token
// store in a temporary directory of its own, tokens initialised through
// PKCS#11 (C_InitToken, C_InitPIN) and Ed25519 keys generated in them
// (GenerateEd25519KeyInToken). Test-only; not thread-safe.
//
// SoftHSM reads its configuration (SOFTHSM2_CONF) once, when a process first
// loads it, and the module stays loaded (ledger/crypto/pkcs11.h): so a test
// process has one store, made by the first call of ForProcess, which sets
// SOFTHSM2_CONF in the process's environment (corridord processes the test
// starts inherit it). Tests tell their tokens apart by label.
#ifndef CORRIDOR_TESTS_TESTING_SOFTHSM_H_
#define CORRIDOR_TESTS_TESTING_SOFTHSM_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "ledger/crypto/crypto.h"
#include "ledger/crypto/pkcs11.h"

namespace corridor::testing {

inline constexpr char kSoftHsmModule[] = "/usr/lib/softhsm/libsofthsm2.so";

class SoftHsm {
 public:
  // Whether Debian's libsofthsm2.so is installed (tests skip, saying so, if not).
  static bool Available();
  // The process's store (made on first use, under a temporary directory).
  static SoftHsm& ForProcess();

  // Initialises a free token as `label` with a security officer PIN and the
  // user PIN `user_pin`.
  absl::Status InitToken(const std::string& label, const std::string& user_pin);
  // A new Ed25519 key pair `key_label` (CKA_ID `object_id`, hex, if not
  // empty) in token `token_label`; returns its public key.
  absl::StatusOr<Ed25519PublicKey> GenerateKey(const std::string& token_label,
                                               const std::string& user_pin,
                                               const std::string& key_label,
                                               const std::string& object_id = "");
  // Writes `pin` to `path` with `mode` (e.g. 0600).
  static void WritePinFile(const std::string& path, const std::string& pin, int mode = 0600);

  const std::string& dir() const { return dir_; }         // the store's directory
  const std::string& conf_path() const { return conf_; }  // its softhsm2.conf

 private:
  SoftHsm();
  std::string dir_;
  std::string conf_;
};

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_SOFTHSM_H_
