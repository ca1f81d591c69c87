#include "tests/testing/softhsm.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <vector>

#include "absl/strings/str_cat.h"
#include "ledger/base/file.h"
#include "tests/testing/federation.h"

namespace corridor::testing {
namespace {

constexpr char kSoPin[] = "so-pin-1234";

// The token label padded with blanks to PKCS#11's 32 bytes.
std::string PaddedLabel(const std::string& label) {
  std::string out = label.substr(0, 32);
  out.resize(32, ' ');
  return out;
}

absl::Status Check(CK_RV rv, const char* what) {
  if (rv == CKR_OK) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", Pkcs11ReturnName(rv)));
}

// A slot whose token is not yet initialised (SoftHSM always keeps one).
absl::StatusOr<CK_SLOT_ID> FreeSlot(CK_FUNCTION_LIST* f) {
  CK_ULONG n = 0;
  if (auto st = Check(f->C_GetSlotList(CK_TRUE, nullptr, &n), "C_GetSlotList"); !st.ok()) {
    return st;
  }
  std::vector<CK_SLOT_ID> slots(n);
  if (auto st = Check(f->C_GetSlotList(CK_TRUE, slots.data(), &n), "C_GetSlotList"); !st.ok()) {
    return st;
  }
  for (CK_ULONG i = 0; i < n; ++i) {
    CK_TOKEN_INFO info;
    if (f->C_GetTokenInfo(slots[i], &info) == CKR_OK && (info.flags & CKF_TOKEN_INITIALIZED) == 0) {
      return slots[i];
    }
  }
  return absl::InternalError("SoftHSM has no free slot");
}

}  // namespace

bool SoftHsm::Available() { return access(kSoftHsmModule, R_OK) == 0; }

SoftHsm::SoftHsm() {
  dir_ = MakeTempDir("softhsm");
  conf_ = dir_ + "/softhsm2.conf";
  const std::string tokens = dir_ + "/tokens";
  if (mkdir(tokens.c_str(), 0700) != 0) abort();
  if (!WriteFileAtomically(conf_,
                           absl::StrCat("directories.tokendir = ", tokens,
                                        "\nobjectstore.backend = file\nlog.level = ERROR\n"
                                        "slots.removable = false\n"),
                           0600)
           .ok()) {
    abort();
  }
  setenv("SOFTHSM2_CONF", conf_.c_str(), 1);
}

SoftHsm& SoftHsm::ForProcess() {
  static SoftHsm* store = new SoftHsm();
  // The store goes with the process (the module is never finalised; nothing
  // writes to it after main returns), unless the test's files are to be kept.
  static const bool cleanup_registered = [] {
    return std::atexit([] {
             if (getenv("CORRIDOR_KEEP_TEST_DIRS") == nullptr) {
               std::error_code ignored;
               std::filesystem::remove_all(store->dir_, ignored);
             }
           }) == 0;
  }();
  (void)cleanup_registered;
  return *store;
}

absl::Status SoftHsm::InitToken(const std::string& label, const std::string& user_pin) {
  auto module = Pkcs11Module::Load(kSoftHsmModule);
  if (!module.ok()) return module.status();
  CK_FUNCTION_LIST* f = (*module)->functions();
  auto slot = FreeSlot(f);
  if (!slot.ok()) return slot.status();
  std::string so_pin = kSoPin, padded = PaddedLabel(label), pin = user_pin;
  if (auto st = Check(f->C_InitToken(*slot, reinterpret_cast<CK_UTF8CHAR*>(so_pin.data()),
                                     so_pin.size(), reinterpret_cast<CK_UTF8CHAR*>(padded.data())),
                      "C_InitToken");
      !st.ok()) {
    return st;
  }
  // SoftHSM moves an initialised token to a new slot: find it by label.
  auto token = (*module)->FindToken(label);
  if (!token.ok()) return token.status();
  CK_SESSION_HANDLE s;
  if (auto st =
          Check(f->C_OpenSession(*token, CKF_SERIAL_SESSION | CKF_RW_SESSION, nullptr, nullptr, &s),
                "C_OpenSession");
      !st.ok()) {
    return st;
  }
  absl::Status st =
      Check(f->C_Login(s, CKU_SO, reinterpret_cast<CK_UTF8CHAR*>(so_pin.data()), so_pin.size()),
            "C_Login as SO");
  if (st.ok()) {
    st =
        Check(f->C_InitPIN(s, reinterpret_cast<CK_UTF8CHAR*>(pin.data()), pin.size()), "C_InitPIN");
  }
  f->C_Logout(s);
  f->C_CloseSession(s);
  return st;
}

absl::StatusOr<Ed25519PublicKey> SoftHsm::GenerateKey(const std::string& token_label,
                                                      const std::string& user_pin,
                                                      const std::string& key_label,
                                                      const std::string& object_id) {
  return GenerateEd25519KeyInToken(Pkcs11KeyRef{kSoftHsmModule, token_label, key_label, object_id},
                                   SecretBytes::CopyOf(user_pin));
}

void SoftHsm::WritePinFile(const std::string& path, const std::string& pin, int mode) {
  if (!WriteFileAtomically(path, pin + "\n", mode).ok()) abort();
  chmod(path.c_str(), mode);
}

}  // namespace corridor::testing
