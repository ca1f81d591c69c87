#include "server/common/edge.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "ledger/crypto/crypto.h"

namespace corridor {
namespace {

bool IdentifierChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
         c == '-';
}

bool PurposeChar(char c) {
  return (c >= 'a' && c <= 'z') || absl::ascii_isdigit(static_cast<unsigned char>(c)) || c == '.' ||
         c == '_' || c == '-';
}

// Length of the valid UTF-8 sequence of at least two bytes at `s[i]`, or 0.
size_t Utf8SequenceAt(absl::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  size_t n = 0;
  uint32_t cp = 0;
  if (c >= 0xC2 && c <= 0xDF) {
    n = 2;
    cp = c & 0x1F;
  } else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    cp = c & 0x0F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  for (size_t k = 1; k < n; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (b(i + k) & 0x3F);
  }
  // Overlong forms, surrogates, beyond U+10FFFF, the C1 controls, and the
  // bidirectional marks and overrides (U+061C, U+200E/F, U+202A-E, U+2066-9),
  // which can make a terminal show a line in another order than it is stored.
  if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10FFFF ||
      (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x80 && cp <= 0x9F) || cp == 0x061C ||
      cp == 0x200E || cp == 0x200F || (cp >= 0x202A && cp <= 0x202E) ||
      (cp >= 0x2066 && cp <= 0x2069)) {
    return 0;
  }
  return n;
}

}  // namespace

absl::Status ValidateIdentifier(absl::string_view what, absl::string_view id) {
  if (id.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " is missing"));
  if (id.size() > kMaxIdentifierBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is ", id.size(), " bytes long; the limit is ", kMaxIdentifierBytes));
  }
  // What was sent is not repeated: a refusal is recorded in the ledger, which
  // cannot be erased, and a mistyped id may be a person's name.
  for (size_t i = 0; i < id.size(); ++i) {
    if (!IdentifierChar(id[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " (", id.size(), " bytes) has a character that is not allowed at byte ", i + 1,
          ": ids may only hold letters, digits and . _ : -"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateOptionalIdentifier(absl::string_view what, absl::string_view id) {
  return id.empty() ? absl::OkStatus() : ValidateIdentifier(what, id);
}

absl::Status ValidatePurposeCode(absl::string_view purpose) {
  if (purpose.empty()) return absl::InvalidArgumentError("a purpose is required (--purpose CODE)");
  bool ok = purpose.size() <= kMaxPurposeBytes &&
            absl::ascii_isalnum(static_cast<unsigned char>(purpose[0]));
  for (char c : purpose) ok = ok && PurposeChar(c);
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the purpose (", purpose.size(),
        " bytes, not recorded) is not a purpose code: use a code such as case-handling "
        "(lower-case letters, digits and - . _, at most ",
        kMaxPurposeBytes, " bytes)"));
  }
  return absl::OkStatus();
}

absl::Status CheckPurposeListed(absl::string_view purpose,
                                const std::vector<std::string>& vocabulary) {
  if (auto st = ValidatePurposeCode(purpose); !st.ok()) return st;
  if (std::find(vocabulary.begin(), vocabulary.end(), purpose) != vocabulary.end()) {
    return absl::OkStatus();
  }
  std::string codes;
  for (const std::string& code : vocabulary) {
    if (codes.size() + code.size() > kMaxLedgerTextBytes / 2) {
      absl::StrAppend(&codes, ", …");
      break;
    }
    absl::StrAppend(&codes, codes.empty() ? "" : ", ", code);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "the purpose (", purpose.size(),
      " bytes, not recorded) is not one of this node's purpose codes; use one of: ", codes));
}

std::string ForLedger(absl::string_view text, size_t max_bytes) {
  std::string out;
  size_t i = 0;
  while (i < text.size() && out.size() <= max_bytes) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (size_t n = c >= 0x80 ? Utf8SequenceAt(text, i) : 0; n > 0) {
      out.append(text.data() + i, n);
      i += n;
    } else {
      absl::StrAppendFormat(&out, "\\x%02X", c);
      ++i;
    }
  }
  if (i < text.size() || out.size() > max_bytes) {
    // Cut at a character boundary (never inside a UTF-8 sequence or an escape),
    // leaving room for the note of the original length within `max_bytes`.
    const std::string note = absl::StrCat(" …[", text.size(), " bytes]");
    size_t cut = std::min(out.size(), max_bytes > note.size() ? max_bytes - note.size() : 0);
    while (cut > 0 && (static_cast<unsigned char>(out[cut]) & 0xC0) == 0x80) --cut;
    const size_t esc = out.rfind("\\x", cut);
    if (esc != std::string::npos && esc + 4 > cut) cut = esc;
    out.resize(cut);
    out += note;
  }
  return out;
}

std::string ReasonForLedger(absl::string_view reason) {
  if (reason.empty()) return "";
  return absl::StrCat("reason sha256:", HexEncode(DigestBytes(Sha256(reason))));
}

absl::Status ValidateUpdateText(absl::string_view outcome, absl::string_view note) {
  if (!outcome.empty()) {
    bool ok = outcome.size() <= kMaxPurposeBytes &&
              absl::ascii_isalnum(static_cast<unsigned char>(outcome[0]));
    for (char c : outcome) ok = ok && PurposeChar(c);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the outcome (", outcome.size(),
          " bytes) is not an outcome code such as fees-refunded (lower-case letters, digits "
          "and - . _, at most ",
          kMaxPurposeBytes, " bytes); put free text in the note"));
    }
  }
  if (note.size() > kMaxNoteBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the note is ", note.size(), " bytes long; the limit is ", kMaxNoteBytes));
  }
  return absl::OkStatus();
}

namespace {

// The bound of string field `f` of a case (or of a message inside one).
size_t CaseFieldBound(const google::protobuf::FieldDescriptor* f) {
  if (f->containing_type() == v1::Case::descriptor() && f->name() == "narrative") {
    return kMaxNarrativeBytes;
  }
  if (f->containing_type() == v1::CaseNote::descriptor() && f->name() == "note") {
    return kMaxNoteBytes;
  }
  return kMaxCaseFieldBytes;
}

// CheckCaseText for `m`, reached from the case by `path`.
absl::Status CheckTextFields(const google::protobuf::Message& m, const std::string& path) {
  namespace pb = google::protobuf;
  const pb::Reflection* r = m.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  for (const pb::FieldDescriptor* f : fields) {
    const std::string name = path.empty() ? f->name() : absl::StrCat(path, ".", f->name());
    const int n = f->is_repeated() ? r->FieldSize(m, f) : 1;
    for (int i = 0; i < n; ++i) {
      if (f->type() == pb::FieldDescriptor::TYPE_STRING) {
        std::string scratch;
        const std::string& v = f->is_repeated() ? r->GetRepeatedStringReference(m, f, i, &scratch)
                                                : r->GetStringReference(m, f, &scratch);
        if (v.size() > CaseFieldBound(f)) {
          return absl::InvalidArgumentError(absl::StrCat("the case's ", name, " is ", v.size(),
                                                         " bytes long; the limit is ",
                                                         CaseFieldBound(f), " bytes"));
        }
      } else if (f->type() == pb::FieldDescriptor::TYPE_MESSAGE) {
        const pb::Message& child =
            f->is_repeated() ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f);
        if (absl::Status st = CheckTextFields(child, name); !st.ok()) return st;
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckCaseText(const v1::Case& c) { return CheckTextFields(c, ""); }

std::string IdInMessage(absl::string_view id) {
  if (IsMintedIdShape(id)) return std::string(id);
  return "\"(not an id: ids look like C-, E- or REF- and hex digits)\"";
}

absl::Status CheckTextLength(absl::string_view what, absl::string_view text, size_t limit) {
  if (text.size() <= limit) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " is ", text.size(), " bytes long; the limit is ", limit, " bytes"));
}

std::string RequestIdForLedger(absl::string_view request_id) {
  if (request_id.empty()) return "";
  return absl::StrCat("sha256:", HexEncode(DigestBytes(Sha256(request_id))));
}

bool IsMintedIdShape(absl::string_view id) {
  const size_t dash = id.find('-');
  if (dash == absl::string_view::npos || dash < 1 || dash > 4) return false;
  const absl::string_view prefix = id.substr(0, dash), hex = id.substr(dash + 1);
  if (hex.size() < 8 || hex.size() > 64) return false;
  return std::all_of(prefix.begin(), prefix.end(),
                     [](char c) { return absl::ascii_isupper(static_cast<unsigned char>(c)); }) &&
         std::all_of(hex.begin(), hex.end(),
                     [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); });
}

std::string IdForLedger(absl::string_view id) {
  if (id.empty() || IsMintedIdShape(id)) return std::string(id);
  return RequestIdForLedger(id);
}

}  // namespace corridor
