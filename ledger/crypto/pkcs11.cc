#include "ledger/crypto/pkcs11.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "ledger/base/file.h"

namespace corridor {
namespace {

// DER of the curve's name as CKA_EC_PARAMS holds it: the OID 1.3.101.112
// (RFC 8410) or, as PKCS#11 v3.0 also allows, the PrintableString
// "edwards25519".
const std::string kEd25519Oid("\x06\x03\x2b\x65\x70", 5);
const std::string kEd25519Name(
    "\x13\x0c"
    "edwards25519",
    14);
const std::string kEd448Oid("\x06\x03\x2b\x65\x71", 5);
const std::string kEd448Name(
    "\x13\x0a"
    "edwards448",
    12);

// What Open signs to prove the private and public halves belong together.
constexpr absl::string_view kProbeMessage = "corridor pkcs11 probe v1";

std::string Trimmed(const unsigned char* padded, size_t n) {
  return std::string(absl::StripTrailingAsciiWhitespace(
      absl::string_view(reinterpret_cast<const char*>(padded), n)));
}

absl::Status TokenError(CK_RV rv, absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": the token answered ", Pkcs11ReturnName(rv)));
}

// The attributes every search for the key carries: its class, label and id.
struct KeyTemplate {
  CK_OBJECT_CLASS klass;
  std::string label;
  std::string id;
  std::vector<CK_ATTRIBUTE> attrs;

  KeyTemplate(CK_OBJECT_CLASS c, const Pkcs11KeyRef& ref, const std::string& raw_id)
      : klass(c), label(ref.key_label), id(raw_id) {
    attrs.push_back({CKA_CLASS, &klass, sizeof klass});
    if (!label.empty()) attrs.push_back({CKA_LABEL, label.data(), label.size()});
    if (!id.empty()) attrs.push_back({CKA_ID, id.data(), id.size()});
  }
};

// The objects matching `t`, at most 4 (more is as bad as two).
absl::StatusOr<std::vector<CK_OBJECT_HANDLE>> FindObjects(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s,
                                                          KeyTemplate& t) {
  CK_RV rv = f->C_FindObjectsInit(s, t.attrs.data(), t.attrs.size());
  if (rv != CKR_OK) return TokenError(rv, "searching the token for the key");
  std::vector<CK_OBJECT_HANDLE> found(4);
  CK_ULONG n = 0;
  rv = f->C_FindObjects(s, found.data(), found.size(), &n);
  f->C_FindObjectsFinal(s);
  if (rv != CKR_OK) return TokenError(rv, "searching the token for the key");
  found.resize(n);
  return found;
}

absl::StatusOr<std::string> RawId(const Pkcs11KeyRef& ref) {
  std::string raw;
  if (ref.key_object_id.empty()) return raw;
  const std::string& hex = ref.key_object_id;
  if (hex.size() % 2 != 0 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the key's object id \"", hex, "\" is not hexadecimal (CKA_ID, e.g. \"01\" or \"a1b2\")"));
  }
  return absl::HexStringToBytes(hex);
}

// One attribute of `object` as bytes; NotFound if the token has none.
absl::StatusOr<std::string> Attribute(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s,
                                      CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  CK_ATTRIBUTE a{type, nullptr, 0};
  CK_RV rv = f->C_GetAttributeValue(s, object, &a, 1);
  if (rv == CKR_ATTRIBUTE_TYPE_INVALID || rv == CKR_ATTRIBUTE_SENSITIVE ||
      a.ulValueLen == CK_UNAVAILABLE_INFORMATION) {
    return absl::NotFoundError("attribute not available");
  }
  if (rv != CKR_OK) return TokenError(rv, "reading the key's attributes");
  std::string value(a.ulValueLen, '\0');
  a.pValue = value.data();
  rv = f->C_GetAttributeValue(s, object, &a, 1);
  if (rv != CKR_OK) return TokenError(rv, "reading the key's attributes");
  value.resize(a.ulValueLen);
  return value;
}

absl::StatusOr<CK_ULONG> UlongAttribute(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s,
                                        CK_OBJECT_HANDLE object, CK_ATTRIBUTE_TYPE type) {
  auto v = Attribute(f, s, object, type);
  if (!v.ok()) return v.status();
  if (v->size() != sizeof(CK_ULONG)) return absl::NotFoundError("attribute of an odd size");
  CK_ULONG out;
  memcpy(&out, v->data(), sizeof out);
  return out;
}

bool BoolAttribute(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE object,
                   CK_ATTRIBUTE_TYPE type, bool if_absent) {
  auto v = Attribute(f, s, object, type);
  if (!v.ok() || v->size() != 1) return if_absent;
  return (*v)[0] != 0;
}

std::string KeyTypeName(CK_ULONG type) {
  switch (type) {
    case CKK_RSA:
      return "an RSA key";
    case CKK_EC:
      return "an ECDSA (NIST/Brainpool curve) key";
    case CKK_DSA:
      return "a DSA key";
    case CKK_AES:
      return "an AES key";
    default:
      return absl::StrCat("a key of PKCS#11 key type 0x", absl::Hex(type));
  }
}

// The private key `ref` names, checked to be a sensitive Ed25519 signing key.
absl::StatusOr<CK_OBJECT_HANDLE> FindPrivateKey(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s,
                                                const Pkcs11KeyRef& ref) {
  auto raw_id = RawId(ref);
  if (!raw_id.ok()) return raw_id.status();
  KeyTemplate t(CKO_PRIVATE_KEY, ref, *raw_id);
  auto found = FindObjects(f, s, t);
  if (!found.ok()) return found.status();
  if (found->empty()) {
    return absl::NotFoundError(
        absl::StrCat("there is no private ", ref.Describe(),
                     " (check the label and id with your HSM's tool, e.g. `pkcs11-tool --module ",
                     ref.module, " --login --list-objects`)"));
  }
  if (found->size() > 1) {
    return absl::FailedPreconditionError(
        absl::StrCat("the token holds ", found->size(), " private keys matching ", ref.Describe(),
                     ": give key_object_id as well, so that exactly one matches"));
  }
  const CK_OBJECT_HANDLE key = found->front();
  auto type = UlongAttribute(f, s, key, CKA_KEY_TYPE);
  if (type.ok() && *type != CKK_EC_EDWARDS) {
    return absl::FailedPreconditionError(absl::StrCat(
        ref.Describe(), " is ", KeyTypeName(*type),
        "; Corridor signs with Ed25519: make an Ed25519 key (key type CKK_EC_EDWARDS, curve "
        "edwards25519) in the token"));
  }
  if (!BoolAttribute(f, s, key, CKA_SIGN, true)) {
    return absl::FailedPreconditionError(
        absl::StrCat(ref.Describe(), " may not sign (CKA_SIGN is false)"));
  }
  if (!BoolAttribute(f, s, key, CKA_SENSITIVE, true)) {
    return absl::FailedPreconditionError(
        absl::StrCat(ref.Describe(),
                     " is not sensitive (CKA_SENSITIVE is false): the token would reveal "
                     "its private value; make a new key that is sensitive"));
  }
  return key;
}

// The 32-byte key in a CKA_EC_POINT value: DER OCTET STRING (04 20 ‖ key), as
// PKCS#11 specifies, or the bare 32 bytes some tokens return.
absl::StatusOr<Ed25519PublicKey> DecodeEcPoint(absl::string_view point) {
  if (point.size() == 34 && point[0] == 0x04 && point[1] == 0x20) point.remove_prefix(2);
  if (point.size() != kEd25519PublicKeySize) {
    return absl::FailedPreconditionError(absl::StrCat("the key's public point (CKA_EC_POINT) is ",
                                                      point.size(),
                                                      " bytes, not an Ed25519 public key"));
  }
  return Ed25519PublicKey::FromRaw(point);
}

absl::Status CheckCurve(const std::string& params, const Pkcs11KeyRef& ref) {
  if (params == kEd25519Oid || params == kEd25519Name) return absl::OkStatus();
  const bool ed448 = params == kEd448Oid || params == kEd448Name;
  return absl::FailedPreconditionError(
      absl::StrCat(ref.Describe(), " is ", ed448 ? "an Ed448 key" : "an EdDSA key on another curve",
                   "; Corridor signs with Ed25519: make a key on curve edwards25519"));
}

// The public key of `ref`, from its public object's CKA_EC_POINT (or the
// private object's, where the token keeps it there).
absl::StatusOr<Ed25519PublicKey> ReadPublicKey(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s,
                                               CK_OBJECT_HANDLE private_key,
                                               const Pkcs11KeyRef& ref) {
  auto raw_id = RawId(ref);
  if (!raw_id.ok()) return raw_id.status();
  KeyTemplate t(CKO_PUBLIC_KEY, ref, *raw_id);
  auto found = FindObjects(f, s, t);
  if (!found.ok()) return found.status();
  const CK_OBJECT_HANDLE holder = found->size() == 1 ? found->front() : private_key;
  auto point = Attribute(f, s, holder, CKA_EC_POINT);
  if (!point.ok()) {
    return absl::NotFoundError(
        absl::StrCat("the token holds no public key beside the private ", ref.Describe(),
                     " (a public key object with the same label and id, with CKA_EC_POINT)"));
  }
  if (auto params = Attribute(f, s, holder, CKA_EC_PARAMS); params.ok()) {
    if (auto st = CheckCurve(*params, ref); !st.ok()) return st;
  }
  return DecodeEcPoint(*point);
}

absl::Status CheckMechanism(CK_FUNCTION_LIST* f, CK_SLOT_ID slot, CK_MECHANISM_TYPE m,
                            const Pkcs11KeyRef& ref) {
  CK_MECHANISM_INFO info;
  const CK_RV rv = f->C_GetMechanismInfo(slot, m, &info);
  if (rv == CKR_OK) return absl::OkStatus();
  if (rv == CKR_MECHANISM_INVALID) {
    return absl::FailedPreconditionError(absl::StrCat(
        "token \"", ref.token_label, "\" cannot make Ed25519 keys or signatures (it lacks ",
        m == CKM_EDDSA ? "CKM_EDDSA" : "CKM_EC_EDWARDS_KEY_PAIR_GEN",
        "); Corridor needs a token with EdDSA (PKCS#11 v3.0 mechanisms; SoftHSM 2.6 has them)"));
  }
  return TokenError(rv, "asking the token what it can do");
}

absl::StatusOr<CK_SESSION_HANDLE> OpenSessionOn(CK_FUNCTION_LIST* f, CK_SLOT_ID slot,
                                                bool read_write) {
  CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
  const CK_FLAGS flags = CKF_SERIAL_SESSION | (read_write ? CKF_RW_SESSION : 0);
  const CK_RV rv = f->C_OpenSession(slot, flags, nullptr, nullptr, &s);
  if (rv != CKR_OK) return TokenError(rv, "opening a session with the token");
  return s;
}

absl::Status LoginWith(CK_FUNCTION_LIST* f, CK_SESSION_HANDLE s, const SecretBytes& pin,
                       const std::string& token) {
  std::string copy(pin.view());
  const CK_RV rv =
      f->C_Login(s, CKU_USER, reinterpret_cast<CK_UTF8CHAR*>(copy.data()), copy.size());
  WipeString(copy);
  if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN) return absl::OkStatus();
  if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID || rv == CKR_PIN_LEN_RANGE) {
    return absl::PermissionDeniedError(absl::StrCat(
        "token \"", token,
        "\" refused the PIN: it is not the token's user PIN (every wrong PIN "
        "counts towards the token locking it; correct the PIN file before starting again)"));
  }
  if (rv == CKR_PIN_LOCKED) {
    return absl::PermissionDeniedError(
        absl::StrCat("token \"", token,
                     "\" has locked its user PIN after too many wrong PINs: its security "
                     "officer must unlock it (or set a new user PIN) before the node can sign"));
  }
  return TokenError(rv, absl::StrCat("logging in to token \"", token, "\""));
}

// Checks a module path before dlopen, so "no such file" is said plainly.
absl::Status CheckModuleFile(const std::string& path) {
  struct stat st;
  if (path.empty() || path[0] != '/') {
    return absl::FailedPreconditionError(
        absl::StrCat("the PKCS#11 module must be given by its full path (e.g. "
                     "/usr/lib/softhsm/libsofthsm2.so), not \"",
                     path, "\""));
  }
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(
        "the PKCS#11 module ", path,
        " does not exist (install your HSM's PKCS#11 library, or softhsm2, and give its path)"));
  }
  return absl::OkStatus();
}

}  // namespace

std::string Pkcs11ReturnName(CK_RV rv) {
  static const std::map<CK_RV, const char*> kNames = {
      {CKR_OK, "CKR_OK"},
      {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
      {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
      {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
      {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
      {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
      {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
      {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
      {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
      {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
      {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
      {CKR_OBJECT_HANDLE_INVALID, "CKR_OBJECT_HANDLE_INVALID"},
      {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
      {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
      {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
      {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
      {CKR_SESSION_COUNT, "CKR_SESSION_COUNT"},
      {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
      {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
      {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
      {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
      {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
  };
  auto it = kNames.find(rv);
  return it != kNames.end() ? it->second : absl::StrCat("CKR 0x", absl::Hex(rv));
}

std::string Pkcs11KeyRef::Describe() const {
  std::string out = "key";
  if (!key_label.empty()) absl::StrAppend(&out, " \"", key_label, "\"");
  if (!key_object_id.empty()) absl::StrAppend(&out, " (object id ", key_object_id, ")");
  return absl::StrCat(out, " in token \"", token_label, "\"");
}

absl::StatusOr<std::shared_ptr<Pkcs11Module>> Pkcs11Module::Load(const std::string& path) {
  static std::mutex mu;
  static auto* loaded = new std::map<std::string, std::shared_ptr<Pkcs11Module>>();
  std::lock_guard<std::mutex> lock(mu);
  if (auto it = loaded->find(path); it != loaded->end()) return it->second;
  if (auto st = CheckModuleFile(path); !st.ok()) return st;
  // Never closed: the module stays for the life of the process (see the header).
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* why = dlerror();
    return absl::FailedPreconditionError(absl::StrCat(
        "the PKCS#11 module ", path, " cannot be loaded: ", why ? why : "unknown reason"));
  }
  auto get = reinterpret_cast<CK_C_GetFunctionList>(dlsym(handle, "C_GetFunctionList"));
  CK_FUNCTION_LIST* functions = nullptr;
  if (get == nullptr || get(&functions) != CKR_OK || functions == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a PKCS#11 module (it has no C_GetFunctionList)"));
  }
  CK_C_INITIALIZE_ARGS args{};
  args.flags = CKF_OS_LOCKING_OK;
  const CK_RV rv = functions->C_Initialize(&args);
  if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the PKCS#11 module ", path, " failed to start (C_Initialize: ", Pkcs11ReturnName(rv),
        "); for SoftHSM2, check that SOFTHSM2_CONF names a readable softhsm2.conf whose "
        "tokendir exists"));
  }
  auto module = std::make_shared<Pkcs11Module>(path, functions);
  (*loaded)[path] = module;
  return module;
}

absl::StatusOr<CK_SLOT_ID> Pkcs11Module::FindToken(absl::string_view label) const {
  CK_ULONG n = 0;
  CK_RV rv = functions_->C_GetSlotList(CK_TRUE, nullptr, &n);
  std::vector<CK_SLOT_ID> slots(n);
  if (rv == CKR_OK && n > 0) rv = functions_->C_GetSlotList(CK_TRUE, slots.data(), &n);
  if (rv != CKR_OK) return TokenError(rv, absl::StrCat("listing the tokens of ", path_));
  slots.resize(n);
  std::vector<std::string> seen;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (functions_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if ((info.flags & CKF_TOKEN_INITIALIZED) == 0) continue;
    const std::string l = Trimmed(info.label, sizeof info.label);
    if (l == label) return slot;
    seen.push_back(absl::StrCat("\"", l, "\""));
  }
  return absl::NotFoundError(absl::StrCat(
      "the PKCS#11 module ", path_, " has no token labelled \"", label, "\" (tokens present: ",
      seen.empty() ? "none: check that this user may use the token (for SoftHSM2: "
                     "is in the softhsm group, and SOFTHSM2_CONF or "
                     "/etc/softhsm/softhsm2.conf names the token directory)"
                   : absl::StrJoin(seen, ", "),
      ")"));
}

absl::StatusOr<SecretBytes> ReadPinFile(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file"));
  }
  if ((st.st_mode & S_IRWXO) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " may be read by every user of this machine (mode ",
                     absl::StrFormat("%04o", st.st_mode & 07777),
                     "); the PIN must be readable only by the node's user "
                     "(chmod 0600, or 0640 with the node's group)"));
  }
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  SecretBytes pin(std::string(absl::StripTrailingAsciiWhitespace(*text)));
  WipeString(*text);
  if (pin.empty() || pin.size() > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": must hold the token's user PIN on one line (1 to 256 bytes)"));
  }
  return pin;
}

Pkcs11Signer::Pkcs11Signer(std::shared_ptr<Pkcs11Module> module, CK_SLOT_ID slot, Pkcs11KeyRef ref,
                           SecretBytes pin, Ed25519PublicKey public_key)
    : module_(std::move(module)),
      slot_(slot),
      ref_(std::move(ref)),
      pin_(std::move(pin)),
      public_key_(std::move(public_key)) {}

Pkcs11Signer::~Pkcs11Signer() {
  CK_FUNCTION_LIST* f = module_->functions();
  std::lock_guard<std::mutex> lock(mu_);
  for (const Session& s : idle_) f->C_CloseSession(s.handle);
  // No C_Logout: the login belongs to the whole process and another signer on
  // the same token may still use it. Closing our last session ends ours.
  if (login_session_ != CK_INVALID_HANDLE) f->C_CloseSession(login_session_);
}

absl::StatusOr<std::unique_ptr<Pkcs11Signer>> Pkcs11Signer::Open(const Pkcs11KeyRef& ref,
                                                                 SecretBytes pin) {
  if (ref.key_label.empty() && ref.key_object_id.empty()) {
    return absl::InvalidArgumentError("name the key by its label, its object id, or both");
  }
  auto module = Pkcs11Module::Load(ref.module);
  if (!module.ok()) return module.status();
  CK_FUNCTION_LIST* f = (*module)->functions();
  auto slot = (*module)->FindToken(ref.token_label);
  if (!slot.ok()) return slot.status();
  if (auto st = CheckMechanism(f, *slot, CKM_EDDSA, ref); !st.ok()) return st;
  auto session = OpenSessionOn(f, *slot, false);
  if (!session.ok()) return session.status();
  // From here the session belongs to the signer (closed by its destructor).
  auto login = LoginWith(f, *session, pin, ref.token_label);
  auto key = login.ok() ? FindPrivateKey(f, *session, ref) : login;
  auto pub = key.ok() ? ReadPublicKey(f, *session, *key, ref) : key.status();
  if (!pub.ok()) {
    f->C_CloseSession(*session);
    return pub.status();
  }
  std::unique_ptr<Pkcs11Signer> signer(
      new Pkcs11Signer(*module, *slot, ref, std::move(pin), *std::move(pub)));
  signer->login_session_ = *session;
  signer->extractable_ = BoolAttribute(f, *session, *key, CKA_EXTRACTABLE, false);
  // A key whose public half is not its own shows here, not in a peer's check.
  auto probe = signer->Signature(kProbeMessage);
  if (!probe.ok()) return probe.status();
  return signer;
}

absl::Status Pkcs11Signer::Login(CK_SESSION_HANDLE session) const {
  return LoginWith(module_->functions(), session, pin_, ref_.token_label);
}

absl::StatusOr<Pkcs11Signer::Session> Pkcs11Signer::OpenSession() const {
  CK_FUNCTION_LIST* f = module_->functions();
  auto handle = OpenSessionOn(f, slot_, false);
  if (!handle.ok()) return handle.status();
  auto key = FindPrivateKey(f, *handle, ref_);
  if (!key.ok() && absl::IsNotFound(key.status())) {
    // The token logged out (it was reset or reconnected): log in again.
    if (Login(*handle).ok()) key = FindPrivateKey(f, *handle, ref_);
  }
  if (!key.ok()) {
    f->C_CloseSession(*handle);
    return key.status();
  }
  return Session{*handle, *key};
}

absl::StatusOr<Pkcs11Signer::Session> Pkcs11Signer::Acquire() const {
  {
    std::unique_lock<std::mutex> lock(mu_);
    returned_.wait(lock, [this] { return !idle_.empty() || open_ < kMaxPkcs11Sessions; });
    if (!idle_.empty()) {
      Session s = idle_.back();
      idle_.pop_back();
      return s;
    }
    ++open_;
  }
  auto s = OpenSession();
  if (!s.ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    --open_;
    returned_.notify_one();
  }
  return s;
}

void Pkcs11Signer::Release(Session s, bool reusable) const {
  if (!reusable) module_->functions()->C_CloseSession(s.handle);
  std::lock_guard<std::mutex> lock(mu_);
  if (reusable) {
    idle_.push_back(s);
  } else {
    --open_;
  }
  returned_.notify_one();
}

absl::StatusOr<std::string> Pkcs11Signer::SignOn(const Session& s, absl::string_view message,
                                                 CK_RV* rv) const {
  CK_FUNCTION_LIST* f = module_->functions();
  CK_MECHANISM mechanism{CKM_EDDSA, nullptr, 0};
  *rv = f->C_SignInit(s.handle, &mechanism, s.key);
  if (*rv != CKR_OK) return TokenError(*rv, absl::StrCat("signing with ", ref_.Describe()));
  std::string data(message);
  std::string sig(kEd25519SignatureSize, '\0');
  CK_ULONG len = sig.size();
  *rv = f->C_Sign(s.handle, reinterpret_cast<CK_BYTE*>(data.data()), data.size(),
                  reinterpret_cast<CK_BYTE*>(sig.data()), &len);
  if (*rv != CKR_OK) return TokenError(*rv, absl::StrCat("signing with ", ref_.Describe()));
  sig.resize(len);
  return sig;
}

absl::StatusOr<std::string> Pkcs11Signer::Signature(absl::string_view message) const {
  absl::Status last;
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto session = Acquire();
    if (!session.ok()) {
      last = session.status();
      continue;
    }
    CK_RV rv = CKR_OK;
    auto sig = SignOn(*session, message, &rv);
    // A failed C_Sign ends the operation, but the session may be gone: open a new one.
    Release(*session, sig.ok());
    if (!sig.ok()) {
      last = sig.status();
      continue;
    }
    if (!public_key_.Verify(message, *sig)) {
      return absl::InternalError(absl::StrCat(
          "the signature ", ref_.Describe(),
          " made does not verify with the public key stored beside it: the token's public and "
          "private keys of that label do not belong together"));
    }
    return sig;
  }
  return absl::UnavailableError(last.message());
}

absl::StatusOr<Ed25519PublicKey> GenerateEd25519KeyInToken(const Pkcs11KeyRef& ref,
                                                           const SecretBytes& pin) {
  if (ref.key_label.empty()) return absl::InvalidArgumentError("a new key needs a label");
  auto module = Pkcs11Module::Load(ref.module);
  if (!module.ok()) return module.status();
  CK_FUNCTION_LIST* f = (*module)->functions();
  auto slot = (*module)->FindToken(ref.token_label);
  if (!slot.ok()) return slot.status();
  if (auto st = CheckMechanism(f, *slot, CKM_EC_EDWARDS_KEY_PAIR_GEN, ref); !st.ok()) return st;
  auto raw_id = RawId(ref);
  if (!raw_id.ok()) return raw_id.status();
  auto session = OpenSessionOn(f, *slot, true);
  if (!session.ok()) return session.status();
  auto close = [&](absl::Status st) {
    f->C_CloseSession(*session);
    return st;
  };
  if (auto st = LoginWith(f, *session, pin, ref.token_label); !st.ok()) return close(st);
  if (FindPrivateKey(f, *session, ref).status().code() != absl::StatusCode::kNotFound) {
    return close(absl::AlreadyExistsError(absl::StrCat("the token already holds a private ",
                                                       ref.Describe(), "; choose another label")));
  }
  CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
  std::string label = ref.key_label, id = *raw_id, params = kEd25519Oid;
  std::vector<CK_ATTRIBUTE> pub = {{CKA_TOKEN, &yes, 1},
                                   {CKA_VERIFY, &yes, 1},
                                   {CKA_EC_PARAMS, params.data(), params.size()},
                                   {CKA_LABEL, label.data(), label.size()}};
  std::vector<CK_ATTRIBUTE> prv = {
      {CKA_TOKEN, &yes, 1},      {CKA_PRIVATE, &yes, 1}, {CKA_SENSITIVE, &yes, 1},
      {CKA_EXTRACTABLE, &no, 1}, {CKA_SIGN, &yes, 1},    {CKA_LABEL, label.data(), label.size()}};
  if (!id.empty()) {
    pub.push_back({CKA_ID, id.data(), id.size()});
    prv.push_back({CKA_ID, id.data(), id.size()});
  }
  CK_MECHANISM mechanism{CKM_EC_EDWARDS_KEY_PAIR_GEN, nullptr, 0};
  CK_OBJECT_HANDLE pub_handle, prv_handle;
  const CK_RV rv = f->C_GenerateKeyPair(*session, &mechanism, pub.data(), pub.size(), prv.data(),
                                        prv.size(), &pub_handle, &prv_handle);
  if (rv != CKR_OK) return close(TokenError(rv, "generating the key pair"));
  auto key = ReadPublicKey(f, *session, prv_handle, ref);
  f->C_CloseSession(*session);
  return key;
}

}  // namespace corridor
