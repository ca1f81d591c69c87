// A strict parser of the Prometheus text exposition format 0.0.4, for tests
// of what the node's metrics endpoint serves: every line a HELP, TYPE or
// sample line; names and label names valid; label values with only the
// escapes \\ \" \n; a family's TYPE before its samples and its samples
// together; no series twice; counters not negative; histograms with their
// buckets in ascending `le`, cumulative, ending in le="+Inf" equal to _count,
// and a _sum. Header-only; test-only.
#ifndef CORRIDOR_TESTS_TESTING_PROMETHEUS_TEXT_H_
#define CORRIDOR_TESTS_TESTING_PROMETHEUS_TEXT_H_

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace corridor::testing {

using Labels = std::map<std::string, std::string>;

struct PromSample {
  std::string name;  // as written, e.g. "x_bucket"
  Labels labels;
  double value = 0;
};

struct PromFamily {
  std::string type, help;
  std::vector<PromSample> samples;
};

struct Exposition {
  std::map<std::string, PromFamily> families;
  // The value of series `name` with exactly `labels`; 0 if absent.
  double Value(const std::string& name, const Labels& labels = {}) const {
    for (const auto& [family, f] : families) {
      for (const PromSample& s : f.samples) {
        if (s.name == name && s.labels == labels) return s.value;
      }
    }
    return 0;
  }
  // Every sample of every family.
  std::vector<PromSample> All() const {
    std::vector<PromSample> out;
    for (const auto& [family, f] : families)
      out.insert(out.end(), f.samples.begin(), f.samples.end());
    return out;
  }
};

namespace prom_internal {

inline bool ValidName(absl::string_view n, bool label) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    const char c = n[i];
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                    (!label && c == ':') || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

inline absl::StatusOr<double> ParseValue(const std::string& v) {
  if (v == "+Inf") return HUGE_VAL;
  if (v == "-Inf") return -HUGE_VAL;
  if (v == "NaN") return std::nan("");
  char* end = nullptr;
  double d = std::strtod(v.c_str(), &end);
  if (v.empty() || end != v.c_str() + v.size() || std::isinf(d) || std::isnan(d)) {
    return absl::InvalidArgumentError(absl::StrCat("not a sample value: \"", v, "\""));
  }
  return d;
}

// `line` from `pos` at '{': the label set up to and including '}'.
inline absl::Status ParseLabels(absl::string_view line, size_t* pos, Labels* labels) {
  ++*pos;  // '{'
  while (*pos < line.size() && line[*pos] != '}') {
    size_t eq = line.find('=', *pos);
    if (eq == absl::string_view::npos) return absl::InvalidArgumentError("label without =");
    std::string name(line.substr(*pos, eq - *pos));
    if (!ValidName(name, true)) return absl::InvalidArgumentError("bad label name " + name);
    if (eq + 1 >= line.size() || line[eq + 1] != '"') {
      return absl::InvalidArgumentError("label value not quoted");
    }
    std::string value;
    size_t i = eq + 2;
    for (; i < line.size() && line[i] != '"'; ++i) {
      if (line[i] != '\\') {
        value += line[i];
        continue;
      }
      if (++i >= line.size()) return absl::InvalidArgumentError("dangling backslash");
      if (line[i] == 'n') {
        value += '\n';
      } else if (line[i] == '\\' || line[i] == '"') {
        value += line[i];
      } else {
        return absl::InvalidArgumentError("bad escape in label value");
      }
    }
    if (i >= line.size()) return absl::InvalidArgumentError("unterminated label value");
    if (!labels->emplace(name, value).second) {
      return absl::InvalidArgumentError("label twice: " + name);
    }
    *pos = i + 1;
    if (*pos < line.size() && line[*pos] == ',') ++*pos;
  }
  if (*pos >= line.size()) return absl::InvalidArgumentError("unterminated label set");
  ++*pos;  // '}'
  return absl::OkStatus();
}

// The family a sample name belongs to, given the family's type.
inline std::string FamilyOf(const std::string& name,
                            const std::map<std::string, PromFamily>& fams) {
  for (const char* suffix : {"_bucket", "_sum", "_count"}) {
    if (name.size() > strlen(suffix) &&
        name.compare(name.size() - strlen(suffix), std::string::npos, suffix) == 0) {
      std::string base = name.substr(0, name.size() - strlen(suffix));
      auto it = fams.find(base);
      if (it != fams.end() && it->second.type == "histogram") return base;
    }
  }
  return name;
}

inline absl::Status CheckHistogram(const std::string& name, const PromFamily& f) {
  // Series by their labels without le.
  std::map<Labels, std::vector<std::pair<double, double>>> buckets;
  std::map<Labels, double> counts, sums;
  for (const PromSample& s : f.samples) {
    Labels base = s.labels;
    if (s.name == name + "_bucket") {
      auto le = base.find("le");
      if (le == base.end()) return absl::InvalidArgumentError(name + "_bucket without le");
      auto bound = ParseValue(le->second);
      if (!bound.ok()) return bound.status();
      base.erase(le);
      buckets[base].push_back({*bound, s.value});
    } else if (s.name == name + "_count") {
      counts[base] = s.value;
    } else if (s.name == name + "_sum") {
      sums[base] = s.value;
    } else {
      return absl::InvalidArgumentError("histogram " + name + " has sample " + s.name);
    }
  }
  for (const auto& [labels, bs] : buckets) {
    for (size_t i = 1; i < bs.size(); ++i) {
      if (!(bs[i].first > bs[i - 1].first) || bs[i].second < bs[i - 1].second) {
        return absl::InvalidArgumentError(name + ": buckets not ascending or not cumulative");
      }
    }
    if (bs.empty() || !std::isinf(bs.back().first)) {
      return absl::InvalidArgumentError(name + ": no le=\"+Inf\" bucket last");
    }
    if (counts.count(labels) == 0 || counts[labels] != bs.back().second) {
      return absl::InvalidArgumentError(name + ": _count missing or not the +Inf bucket");
    }
    if (sums.count(labels) == 0) return absl::InvalidArgumentError(name + ": _sum missing");
  }
  if (counts.size() != buckets.size() || sums.size() != buckets.size()) {
    return absl::InvalidArgumentError(name + ": _count or _sum without buckets");
  }
  return absl::OkStatus();
}

inline absl::Status ParseComment(absl::string_view line, std::map<std::string, PromFamily>* fams,
                                 std::set<std::string>* typed, std::set<std::string>* helped,
                                 const std::string& current) {
  std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
  if (parts.size() < 3 || (parts[1] != "HELP" && parts[1] != "TYPE")) return absl::OkStatus();
  const std::string& name = parts[2];
  if (!ValidName(name, false)) return absl::InvalidArgumentError("bad metric name " + name);
  if (parts[1] == "TYPE") {
    if (parts.size() != 4) return absl::InvalidArgumentError("TYPE without a type");
    static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                 "untyped"};
    if (kTypes.count(parts[3]) == 0) return absl::InvalidArgumentError("bad type " + parts[3]);
    if (!typed->insert(name).second) return absl::InvalidArgumentError("TYPE twice: " + name);
    if ((*fams)[name].samples.size() > 0) {
      return absl::InvalidArgumentError("TYPE after samples: " + name);
    }
    (*fams)[name].type = parts[3];
    return absl::OkStatus();
  }
  if (!helped->insert(name).second) return absl::InvalidArgumentError("HELP twice: " + name);
  std::string help = parts.size() == 4 ? parts[3] : "";
  for (size_t i = 0; i < help.size(); ++i) {
    if (help[i] == '\\' && (i + 1 >= help.size() || (help[i + 1] != '\\' && help[i + 1] != 'n'))) {
      return absl::InvalidArgumentError("bad escape in HELP of " + name);
    }
    if (help[i] == '\\') ++i;
  }
  (*fams)[name].help = help;
  (void)current;
  return absl::OkStatus();
}

}  // namespace prom_internal

inline absl::StatusOr<Exposition> ParseExposition(const std::string& text) {
  using namespace prom_internal;  // NOLINT
  if (text.empty() || text.back() != '\n') {
    return absl::InvalidArgumentError("the exposition does not end with a newline");
  }
  Exposition out;
  std::set<std::string> typed, helped, finished, series;
  std::string current;  // the family whose samples are being read
  std::vector<std::string> lines = absl::StrSplit(text.substr(0, text.size() - 1), '\n');
  for (const std::string& line : lines) {
    const auto where = [&line](absl::Status st) {
      return absl::InvalidArgumentError(absl::StrCat(st.message(), " in line \"", line, "\""));
    };
    if (line.empty()) return where(absl::InvalidArgumentError("empty line"));
    if (line[0] == '#') {
      if (auto st = ParseComment(line, &out.families, &typed, &helped, current); !st.ok()) {
        return where(st);
      }
      continue;
    }
    size_t pos = 0;
    while (pos < line.size() && line[pos] != '{' && line[pos] != ' ') ++pos;
    PromSample s;
    s.name = line.substr(0, pos);
    if (!ValidName(s.name, false)) return where(absl::InvalidArgumentError("bad name"));
    if (pos < line.size() && line[pos] == '{') {
      if (auto st = ParseLabels(line, &pos, &s.labels); !st.ok()) return where(st);
    }
    if (pos >= line.size() || line[pos] != ' ')
      return where(absl::InvalidArgumentError("no value"));
    std::vector<std::string> rest = absl::StrSplit(line.substr(pos + 1), ' ');
    if (rest.empty() || rest.size() > 2) return where(absl::InvalidArgumentError("bad value"));
    auto value = ParseValue(rest[0]);
    if (!value.ok()) return where(value.status());
    s.value = *value;
    const std::string family = FamilyOf(s.name, out.families);
    if (typed.count(family) == 0) return where(absl::InvalidArgumentError("sample before TYPE"));
    if (family != current) {
      if (finished.count(family) > 0) {
        return where(absl::InvalidArgumentError("samples of a family not together"));
      }
      if (!current.empty()) finished.insert(current);
      current = family;
    }
    std::string key = s.name;
    for (const auto& [k, v] : s.labels) absl::StrAppend(&key, "\x01", k, "\x02", v);
    if (!series.insert(key).second) return where(absl::InvalidArgumentError("series twice"));
    PromFamily& f = out.families[family];
    if (f.type == "counter" && !(s.value >= 0)) {
      return where(absl::InvalidArgumentError("negative counter"));
    }
    f.samples.push_back(std::move(s));
  }
  for (const auto& [name, f] : out.families) {
    if (f.type == "histogram") {
      if (auto st = CheckHistogram(name, f); !st.ok()) return st;
    }
  }
  return out;
}

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_PROMETHEUS_TEXT_H_
