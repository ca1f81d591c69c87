// Structured logs: one JSON object per line on stderr, with a stable dotted
// event name and key/value fields, e.g.
//   {"ts":"2026-11-22T18:00:00.123Z","level":"info","event":"node.started","org":"union-sg"}
// Logs carry ids, digests and indexes, never personal data or payloads: the
// ledger, not the log, is the audit trail. Thread-safe.
#ifndef CORRIDOR_LEDGER_BASE_LOG_H_
#define CORRIDOR_LEDGER_BASE_LOG_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace corridor::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// One key/value pair; numbers and booleans are written unquoted.
struct Field {
  Field(absl::string_view k, absl::string_view v) : key(k), value(v) {}
  Field(absl::string_view k, const std::string& v) : key(k), value(v) {}
  Field(absl::string_view k, const char* v) : key(k), value(v) {}
  template <typename Int,
            typename = std::enable_if_t<std::is_integral_v<Int> && !std::is_same_v<Int, bool>>>
  Field(absl::string_view k, Int v) : key(k), value(absl::StrCat(v)), quoted(false) {}
  Field(absl::string_view k, bool v) : key(k), value(v ? "true" : "false"), quoted(false) {}
  std::string key;
  std::string value;
  bool quoted = true;
};

// Parses "debug", "info", "warn" or "error"; false if unknown.
bool ParseLevel(absl::string_view name, Level* level);
void SetLevel(Level level);

void Emit(Level level, absl::string_view event, std::initializer_list<Field> fields);
inline void Debug(absl::string_view event, std::initializer_list<Field> fields = {}) {
  Emit(Level::kDebug, event, fields);
}
inline void Info(absl::string_view event, std::initializer_list<Field> fields = {}) {
  Emit(Level::kInfo, event, fields);
}
inline void Warn(absl::string_view event, std::initializer_list<Field> fields = {}) {
  Emit(Level::kWarn, event, fields);
}
inline void Error(absl::string_view event, std::initializer_list<Field> fields = {}) {
  Emit(Level::kError, event, fields);
}

// JSON string escaping (without the surrounding quotes) of any bytes: the
// result is always valid JSON; bytes that are not UTF-8 become \ufffd,
// controls and DEL \uXXXX (or \n, \r, \t).
std::string JsonEscape(absl::string_view s);

}  // namespace corridor::log

#endif  // CORRIDOR_LEDGER_BASE_LOG_H_
