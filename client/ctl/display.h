// What corridorctl shows on a terminal: values that came from a node (ids,
// names, reasons, error messages), made safe to print.
//
// Identifiers and text in a node's answers may have been chosen by a peer or a
// user of another org. Printed raw, a newline in an envelope id plants a forged
// row in `audit log`, and escape sequences or bidi overrides change what the
// auditor sees. Printable() shows every such character visibly instead:
//   C0 controls and DEL      \n, \r, \t, \x1b, \x7f, ...
//   C1 controls              \u0085, ...
//   bidi controls, line and paragraph separators, zero-width marks
//                            \u202e, \u2028, \u200b, ...
//   bytes that are not UTF-8 \xff, ...
//   a backslash              \\ (so an escape shown is never the value's own text)
// Everything else, including printable non-ASCII text, is kept as it is.
// Stateless and thread-safe.
#ifndef CORRIDOR_CLIENT_CTL_DISPLAY_H_
#define CORRIDOR_CLIENT_CTL_DISPLAY_H_

#include <string>

#include "absl/strings/string_view.h"

namespace corridor::ctl {

// `s` with every character that could change the terminal or the layout of
// what is printed around it shown as an escape (see above).
std::string Printable(absl::string_view s);

// True iff Printable(s) == s.
bool IsPrintable(absl::string_view s);

// `s` as a JSON string literal, quotes included: valid JSON whatever the
// bytes; characters Printable() escapes are written as \uXXXX, and bytes that
// are not UTF-8 as \ufffd.
std::string JsonQuoted(absl::string_view s);

// A JSON text with every non-ASCII character Printable() would escape (bidi
// controls, separators, C1) rewritten as \uXXXX and bytes that are not UTF-8
// as \ufffd; the same JSON value, safe on a terminal. ASCII is left alone
// (valid JSON holds no raw ASCII controls but whitespace).
std::string TerminalSafeJson(absl::string_view json);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_DISPLAY_H_
