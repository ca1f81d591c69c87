#include "ledger/note.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace corridor::note {
namespace {

constexpr absl::string_view kSigPrefix = "\xe2\x80\x94 ";  // U+2014 EM DASH, space

std::string Be32(uint32_t v) {
  std::string s(4, '\0');
  for (int i = 0; i < 4; ++i) s[i] = static_cast<char>(v >> (24 - 8 * i));
  return s;
}

uint32_t ReadBe32(absl::string_view s) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

std::string Be64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (56 - 8 * i));
  return s;
}

uint64_t ReadBe64(absl::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(s[i]);
  return v;
}

bool ValidKeyName(absl::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (c == '+' || absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string CosignedMessage(const Checkpoint& cp, uint64_t timestamp) {
  return absl::StrCat("cosignature/v1\ntime ", timestamp, "\n", cp.Body());
}

}  // namespace

uint32_t KeyId(absl::string_view name, uint8_t type, const Ed25519PublicKey& key) {
  std::string data = absl::StrCat(name, "\n");
  data.push_back(static_cast<char>(type));
  data += key.raw();
  Sha256Digest d = Sha256(data);
  return (uint32_t{d[0]} << 24) | (uint32_t{d[1]} << 16) | (uint32_t{d[2]} << 8) | d[3];
}

uint32_t Verifier::key_id() const { return KeyId(name, type, key); }

std::string Verifier::ToString() const {
  std::string material(1, static_cast<char>(type));
  material += key.raw();
  return absl::StrCat(name, "+", absl::Hex(key_id(), absl::kZeroPad8), "+", Base64Encode(material));
}

absl::StatusOr<Verifier> ParseVerifier(absl::string_view vkey) {
  std::vector<absl::string_view> parts = absl::StrSplit(vkey, absl::MaxSplits('+', 2));
  if (parts.size() != 3) {
    return absl::InvalidArgumentError("a verifier key is <name>+<hex key id>+<base64 key>");
  }
  if (!ValidKeyName(parts[0])) return absl::InvalidArgumentError("verifier key name is not valid");
  auto material = Base64Decode(parts[2]);
  if (!material.ok() || material->size() != 33) {
    return absl::InvalidArgumentError("verifier key material is not base64 of 33 bytes");
  }
  const uint8_t type = static_cast<uint8_t>((*material)[0]);
  if (type != 0x01 && type != 0x04) {
    return absl::InvalidArgumentError(absl::StrCat("unsupported verifier key type ", int{type}));
  }
  auto key = Ed25519PublicKey::FromRaw(material->substr(1));
  if (!key.ok()) return key.status();
  Verifier v{std::string(parts[0]), type, *key};
  uint32_t id = 0;
  if (parts[1].size() != 8 || !absl::SimpleHexAtoi(parts[1], &id) || id != v.key_id()) {
    return absl::InvalidArgumentError("verifier key id does not match its name and key");
  }
  return v;
}

absl::StatusOr<Note> ParseNote(absl::string_view text) {
  const size_t split = text.rfind("\n\n");
  if (split == absl::string_view::npos) {
    return absl::InvalidArgumentError("not a signed note: no blank line before the signatures");
  }
  Note note;
  note.body = std::string(text.substr(0, split + 1));
  absl::string_view sigs = text.substr(split + 2);
  if (sigs.empty() || sigs.back() != '\n') {
    return absl::InvalidArgumentError("not a signed note: signature lines must end with a newline");
  }
  sigs.remove_suffix(1);
  for (absl::string_view line : absl::StrSplit(sigs, '\n')) {
    if (!absl::ConsumePrefix(&line, kSigPrefix)) {
      return absl::InvalidArgumentError(
          "not a signed note: a signature line does not start with \"— \"");
    }
    const size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) {
      return absl::InvalidArgumentError("not a signed note: malformed signature line");
    }
    Signature sig;
    sig.name = std::string(line.substr(0, space));
    if (!ValidKeyName(sig.name)) {
      return absl::InvalidArgumentError("not a signed note: bad key name in a signature line");
    }
    auto raw = Base64Decode(line.substr(space + 1));
    if (!raw.ok() || raw->size() < 5) {
      return absl::InvalidArgumentError(
          "not a signed note: signature is not base64 of key id and signature");
    }
    sig.key_id = ReadBe32(*raw);
    sig.signature = raw->substr(4);
    note.signatures.push_back(std::move(sig));
  }
  if (note.signatures.empty()) return absl::InvalidArgumentError("note has no signatures");
  return note;
}

std::string FormatNote(const Note& note) {
  std::string out = note.body + "\n";
  for (const Signature& s : note.signatures) {
    absl::StrAppend(&out, kSigPrefix, s.name, " ", Base64Encode(Be32(s.key_id) + s.signature),
                    "\n");
  }
  return out;
}

void SignNote(Note& note, absl::string_view name, const Ed25519PrivateKey& key) {
  note.signatures.push_back(
      {std::string(name), KeyId(name, 0x01, key.public_key()), key.Sign(note.body)});
}

absl::Status SignNoteWith(Note& note, absl::string_view name, const Signer& signer) {
  auto sig = signer.Signature(note.body);
  if (!sig.ok()) return sig.status();
  note.signatures.push_back({std::string(name), KeyId(name, 0x01, signer.public_key()), *sig});
  return absl::OkStatus();
}

absl::Status VerifyNote(const Note& note, const Verifier& verifier) {
  const uint32_t id = verifier.key_id();
  bool seen = false;
  std::vector<uint32_t> other_keys;  // signatures under this name by other keys
  for (const Signature& s : note.signatures) {
    if (s.name != verifier.name) continue;
    if (s.key_id != id) {
      other_keys.push_back(s.key_id);
      continue;
    }
    seen = true;
    if (verifier.key.Verify(note.body, s.signature)) return absl::OkStatus();
  }
  if (!seen && !other_keys.empty()) {
    return absl::NotFoundError(absl::StrFormat(
        "the note is signed by %s with another key (key id %08x), not this one (key id %08x)",
        verifier.name, other_keys.front(), id));
  }
  if (!seen) {
    return absl::NotFoundError(absl::StrCat("the note carries no signature by ", verifier.name));
  }
  return absl::PermissionDeniedError(
      absl::StrCat("the signature by ", verifier.name, " is not valid"));
}

std::string Checkpoint::Body() const {
  std::string out =
      absl::StrCat(origin, "\n", size, "\n", Base64Encode(merkle::ToBytes(root)), "\n");
  for (const std::string& e : extensions) absl::StrAppend(&out, e, "\n");
  return out;
}

absl::StatusOr<Checkpoint> ParseCheckpointBody(absl::string_view body) {
  if (body.empty() || body.back() != '\n') {
    return absl::InvalidArgumentError("checkpoint body must end with a newline");
  }
  std::vector<absl::string_view> lines = absl::StrSplit(body.substr(0, body.size() - 1), '\n');
  if (lines.size() < 3) return absl::InvalidArgumentError("checkpoint has fewer than 3 lines");
  Checkpoint cp;
  cp.origin = std::string(lines[0]);
  if (cp.origin.empty()) return absl::InvalidArgumentError("checkpoint origin is empty");
  if (lines[1].empty() || (lines[1].size() > 1 && lines[1][0] == '0') ||
      !absl::SimpleAtoi(lines[1], &cp.size) || !absl::ascii_isdigit(lines[1][0])) {
    return absl::InvalidArgumentError("checkpoint size is not a decimal number");
  }
  auto root = Base64Decode(lines[2]);
  if (!root.ok() || root->size() != 32) {
    return absl::InvalidArgumentError("checkpoint root is not base64 of 32 bytes");
  }
  cp.root = *merkle::FromBytes(*root);
  for (size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty())
      return absl::InvalidArgumentError("checkpoint has an empty extension line");
    cp.extensions.emplace_back(lines[i]);
  }
  return cp;
}

std::string SignCheckpoint(const Checkpoint& cp, absl::string_view key_name,
                           const Ed25519PrivateKey& key) {
  Note note;
  note.body = cp.Body();
  SignNote(note, key_name, key);
  return FormatNote(note);
}

absl::StatusOr<std::string> SignCheckpointWith(const Checkpoint& cp, absl::string_view key_name,
                                               const Signer& signer) {
  Note note;
  note.body = cp.Body();
  if (auto st = SignNoteWith(note, key_name, signer); !st.ok()) return st;
  return FormatNote(note);
}

absl::StatusOr<Checkpoint> OpenCheckpoint(absl::string_view note_text, const Verifier& verifier) {
  auto note = ParseNote(note_text);
  if (!note.ok()) return note.status();
  if (auto st = VerifyNote(*note, verifier); !st.ok()) return st;
  return ParseCheckpointBody(note->body);
}

Signature Cosign(const Checkpoint& cp, absl::string_view witness_name,
                 const Ed25519PrivateKey& witness_key, uint64_t timestamp) {
  Signature s;
  s.name = std::string(witness_name);
  s.key_id = KeyId(witness_name, 0x04, witness_key.public_key());
  s.signature = Be64(timestamp) + witness_key.Sign(CosignedMessage(cp, timestamp));
  return s;
}

absl::StatusOr<Signature> CosignWith(const Checkpoint& cp, absl::string_view witness_name,
                                     const Signer& witness, uint64_t timestamp) {
  auto sig = witness.Signature(CosignedMessage(cp, timestamp));
  if (!sig.ok()) return sig.status();
  Signature s;
  s.name = std::string(witness_name);
  s.key_id = KeyId(witness_name, 0x04, witness.public_key());
  s.signature = Be64(timestamp) + *sig;
  return s;
}

absl::StatusOr<uint64_t> VerifyCosignature(const Note& note, const Verifier& witness) {
  if (witness.type != 0x04) return absl::InvalidArgumentError("not a cosigner key (type 0x04)");
  auto cp = ParseCheckpointBody(note.body);
  if (!cp.ok()) return cp.status();
  const uint32_t id = witness.key_id();
  for (const Signature& s : note.signatures) {
    if (s.name != witness.name || s.key_id != id) continue;
    if (s.signature.size() != 72) return absl::PermissionDeniedError("cosignature is not 72 bytes");
    const uint64_t t = ReadBe64(s.signature);
    if (t > (uint64_t{1} << 63) - 1)
      return absl::PermissionDeniedError("cosignature time out of range");
    if (witness.key.Verify(CosignedMessage(*cp, t), s.signature.substr(8))) return t;
    return absl::PermissionDeniedError(
        absl::StrCat("the cosignature by ", witness.name, " is not valid"));
  }
  return absl::NotFoundError(absl::StrCat("no cosignature by ", witness.name));
}

}  // namespace corridor::note
