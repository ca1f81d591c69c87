#include "server/log.h"

#include <grpc/support/log.h>

#include <atomic>
#include <cstdio>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace corridor::log {
namespace {

std::atomic<int> g_level{static_cast<int>(Level::kInfo)};

const char* LevelName(Level level) {
  switch (level) {
    case Level::kDebug:
      return "debug";
    case Level::kInfo:
      return "info";
    case Level::kWarn:
      return "warn";
    case Level::kError:
      return "error";
  }
  return "info";
}

void GrpcLogSink(gpr_log_func_args* args) {
  Level level = Level::kInfo;
  if (args->severity == GPR_LOG_SEVERITY_DEBUG) level = Level::kDebug;
  if (args->severity == GPR_LOG_SEVERITY_ERROR) level = Level::kWarn;
  Emit(level, "grpc.log", {{"message", args->message}, {"file", args->file}, {"line", args->line}});
}

}  // namespace

std::string JsonEscape(absl::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  return out;
}

bool ParseLevel(absl::string_view name, Level* level) {
  for (Level l : {Level::kDebug, Level::kInfo, Level::kWarn, Level::kError}) {
    if (name == LevelName(l)) {
      *level = l;
      return true;
    }
  }
  return false;
}

void SetLevel(Level level) { g_level.store(static_cast<int>(level)); }

void Emit(Level level, absl::string_view event, std::initializer_list<Field> fields) {
  if (static_cast<int>(level) < g_level.load(std::memory_order_relaxed)) return;
  std::string line = absl::StrCat(
      "{\"ts\":\"", absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(), absl::UTCTimeZone()),
      "\",\"level\":\"", LevelName(level), "\",\"event\":\"", JsonEscape(event), "\"");
  for (const Field& f : fields) {
    absl::StrAppend(&line, ",\"", JsonEscape(f.key), "\":");
    if (f.quoted) {
      absl::StrAppend(&line, "\"", JsonEscape(f.value), "\"");
    } else {
      absl::StrAppend(&line, f.value);
    }
  }
  line += "}\n";
  // One write per line keeps lines whole when threads log at once.
  fwrite(line.data(), 1, line.size(), stderr);
  fflush(stderr);
}

void RouteGrpcLogs() { gpr_set_log_function(GrpcLogSink); }

}  // namespace corridor::log
