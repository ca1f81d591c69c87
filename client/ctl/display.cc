#include "client/ctl/display.h"

#include <cstdint>
#include <cstdio>

namespace corridor::ctl {
namespace {

// Decodes one UTF-8 sequence at s[i]; returns its length (1 to 4) and sets
// *cp, or returns 0 if the bytes there are not well-formed UTF-8 (overlong
// forms and surrogates included).
size_t DecodeUtf8(absl::string_view s, size_t i, uint32_t* cp) {
  const auto byte = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b0 = byte(i);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t len;
  uint32_t min;
  if ((b0 & 0xe0) == 0xc0) {
    len = 2, min = 0x80, *cp = b0 & 0x1f;
  } else if ((b0 & 0xf0) == 0xe0) {
    len = 3, min = 0x800, *cp = b0 & 0x0f;
  } else if ((b0 & 0xf8) == 0xf0) {
    len = 4, min = 0x10000, *cp = b0 & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((byte(i + k) & 0xc0) != 0x80) return 0;
    *cp = (*cp << 6) | (byte(i + k) & 0x3f);
  }
  if (*cp < min || *cp > 0x10ffff || (*cp >= 0xd800 && *cp <= 0xdfff)) return 0;
  return len;
}

// Characters that are not shown as themselves.
bool MustEscape(uint32_t cp) {
  if (cp < 0x20 || cp == 0x7f || cp == '\\') return true;
  if (cp >= 0x80 && cp <= 0x9f) return true;                        // C1 controls
  if (cp == 0x061c) return true;                                    // Arabic letter mark
  if (cp >= 0x200b && cp <= 0x200f) return true;                    // zero-width, LRM, RLM
  if (cp >= 0x2028 && cp <= 0x202e) return true;                    // LS, PS, bidi embeddings
  if (cp >= 0x2060 && cp <= 0x206f) return true;                    // word joiner, bidi isolates
  if (cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb)) return true;  // BOM, annotations
  return false;
}

void AppendHex(std::string* out, const char* format, uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof(buf), format, v);
  *out += buf;
}

}  // namespace

std::string Printable(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(s, i, &cp);
    if (len == 0) {
      AppendHex(&out, "\\x%02x", static_cast<unsigned char>(s[i]));
      ++i;
      continue;
    }
    if (!MustEscape(cp)) {
      out.append(s.data() + i, len);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\\') {
      out += "\\\\";
    } else if (cp < 0x80) {
      AppendHex(&out, "\\x%02x", cp);
    } else {
      AppendHex(&out, "\\u%04x", cp);
    }
    i += len;
  }
  return out;
}

bool IsPrintable(absl::string_view s) { return Printable(s) == s; }

std::string JsonQuoted(absl::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(s, i, &cp);
    if (len == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (cp == '"' || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\n') {
      out += "\\n";
    } else if (MustEscape(cp)) {
      AppendHex(&out, "\\u%04x", cp);
    } else {
      out.append(s.data() + i, len);
    }
    i += len;
  }
  return out + "\"";
}

std::string TerminalSafeJson(absl::string_view json) {
  std::string out;
  out.reserve(json.size());
  for (size_t i = 0; i < json.size();) {
    uint32_t cp = 0;
    const size_t len = DecodeUtf8(json, i, &cp);
    if (len == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (cp >= 0x80 && MustEscape(cp)) {
      AppendHex(&out, "\\u%04x", cp);
    } else {
      out.append(json.data() + i, len);
    }
    i += len;
  }
  return out;
}

}  // namespace corridor::ctl
