#include "server/common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace corridor::metrics {
namespace {

// A programming error in how metrics are declared: stop at start-up, saying which.
void Require(bool ok, absl::string_view what) {
  if (ok) return;
  std::fprintf(stderr, "metrics: %.*s\n", static_cast<int>(what.size()), what.data());
  std::abort();
}

void AtomicAdd(std::atomic<double>& target, double d) {
  double old = target.load(std::memory_order_relaxed);
  while (!target.compare_exchange_weak(old, old + d, std::memory_order_relaxed)) {
  }
}

bool ValidName(absl::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

const char* TypeName(Type t) {
  switch (t) {
    case Type::kCounter:
      return "counter";
    case Type::kGauge:
      return "gauge";
    case Type::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// {a="x",b="y"} from names and values, plus an optional extra pair (le="...").
std::string LabelSet(const std::vector<std::string>& names, const std::vector<std::string>& values,
                     absl::string_view extra_name = "", absl::string_view extra_value = "") {
  std::string out;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    absl::StrAppend(&out, out.empty() ? "" : ",", names[i], "=\"", EscapeLabelValue(values[i]),
                    "\"");
  }
  if (!extra_name.empty()) {
    absl::StrAppend(&out, out.empty() ? "" : ",", extra_name, "=\"", extra_value, "\"");
  }
  return out.empty() ? "" : absl::StrCat("{", out, "}");
}

void AppendHistogram(const std::string& name, const std::vector<std::string>& label_names,
                     const std::vector<std::string>& values, const Histogram::Snapshot& s,
                     std::string* out) {
  for (size_t i = 0; i < s.bounds.size(); ++i) {
    absl::StrAppend(out, name, "_bucket",
                    LabelSet(label_names, values, "le", FormatValue(s.bounds[i])), " ",
                    s.cumulative[i], "\n");
  }
  absl::StrAppend(out, name, "_bucket", LabelSet(label_names, values, "le", "+Inf"), " ", s.count,
                  "\n");
  absl::StrAppend(out, name, "_sum", LabelSet(label_names, values), " ", FormatValue(s.sum), "\n");
  absl::StrAppend(out, name, "_count", LabelSet(label_names, values), " ", s.count, "\n");
}

}  // namespace

void Gauge::Add(double d) { AtomicAdd(value_, d); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  Require(std::is_sorted(bounds_.begin(), bounds_.end()), "histogram bounds must ascend");
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(sum_, v);
}

Histogram::Snapshot Histogram::snapshot() const {
  Snapshot s;
  s.bounds = bounds_;
  uint64_t running = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative.push_back(running);
  }
  s.count = running;
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> Histogram::LatencyBounds() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
}

Counter& Registry::CounterFamily::With(const std::vector<std::string>& label_values) {
  absl::MutexLock lock(&mu_);
  auto& child = children_[label_values];
  if (!child) child = std::make_unique<Counter>();
  return *child;
}

Gauge& Registry::GaugeFamily::With(const std::vector<std::string>& label_values) {
  absl::MutexLock lock(&mu_);
  auto& child = children_[label_values];
  if (!child) child = std::make_unique<Gauge>();
  return *child;
}

Histogram& Registry::HistogramFamily::With(const std::vector<std::string>& label_values) {
  absl::MutexLock lock(&mu_);
  auto& child = children_[label_values];
  if (!child) child = std::make_unique<Histogram>(bounds_);
  return *child;
}

struct Registry::Family {
  std::string name, help;
  Type type;
  std::vector<std::string> label_names;
  std::unique_ptr<CounterFamily> counters;
  std::unique_ptr<GaugeFamily> gauges;
  std::unique_ptr<HistogramFamily> histograms;
  std::function<std::vector<Sample>()> collect;

  void Render(std::string* out) const;
};

void Registry::Family::Render(std::string* out) const {
  absl::StrAppend(out, "# HELP ", name, " ", EscapeHelp(help), "\n# TYPE ", name, " ",
                  TypeName(type), "\n");
  const bool labelled = !label_names.empty();
  if (collect) {
    for (const Sample& s : collect()) {
      absl::StrAppend(out, name, LabelSet(label_names, s.labels), " ", FormatValue(s.value), "\n");
    }
  } else if (counters) {
    absl::MutexLock lock(&counters->mu_);
    for (const auto& [values, c] : counters->children_) {
      if (labelled && c->value() == 0) continue;
      absl::StrAppend(out, name, LabelSet(label_names, values), " ", c->value(), "\n");
    }
  } else if (gauges) {
    absl::MutexLock lock(&gauges->mu_);
    for (const auto& [values, g] : gauges->children_) {
      absl::StrAppend(out, name, LabelSet(label_names, values), " ", FormatValue(g->value()), "\n");
    }
  } else if (histograms) {
    absl::MutexLock lock(&histograms->mu_);
    for (const auto& [values, h] : histograms->children_) {
      Histogram::Snapshot s = h->snapshot();
      if (labelled && s.count == 0) continue;
      AppendHistogram(name, label_names, values, s, out);
    }
  }
}

Registry::Registry() = default;
Registry::~Registry() = default;

Registry::Family& Registry::Add(std::string name, std::string help, Type type,
                                std::vector<std::string> labels) {
  Require(ValidName(name), absl::StrCat("bad metric name ", name));
  for (const std::string& l : labels) {
    Require(ValidName(l) && l.find(':') == std::string::npos && l != "le",
            absl::StrCat("bad label name ", l));
  }
  absl::MutexLock lock(&mu_);
  for (const auto& f : families_) {
    Require(f->name != name, absl::StrCat("metric added twice: ", name));
  }
  auto family = std::make_unique<Family>();
  family->name = std::move(name);
  family->help = std::move(help);
  family->type = type;
  family->label_names = std::move(labels);
  families_.push_back(std::move(family));
  return *families_.back();
}

Registry::CounterFamily& Registry::AddCounter(std::string name, std::string help,
                                              std::vector<std::string> label_names) {
  Family& f = Add(std::move(name), std::move(help), Type::kCounter, std::move(label_names));
  f.counters = std::make_unique<CounterFamily>();
  if (f.label_names.empty()) f.counters->With({});
  return *f.counters;
}

Registry::GaugeFamily& Registry::AddGauge(std::string name, std::string help,
                                          std::vector<std::string> label_names) {
  Family& f = Add(std::move(name), std::move(help), Type::kGauge, std::move(label_names));
  f.gauges = std::make_unique<GaugeFamily>();
  if (f.label_names.empty()) f.gauges->With({});
  return *f.gauges;
}

Registry::HistogramFamily& Registry::AddHistogram(std::string name, std::string help,
                                                  std::vector<double> bounds,
                                                  std::vector<std::string> label_names) {
  Family& f = Add(std::move(name), std::move(help), Type::kHistogram, std::move(label_names));
  f.histograms = std::make_unique<HistogramFamily>(std::move(bounds));
  if (f.label_names.empty()) f.histograms->With({});
  return *f.histograms;
}

void Registry::AddCollector(std::string name, std::string help, Type type,
                            std::vector<std::string> label_names,
                            std::function<std::vector<Sample>()> collect) {
  Require(type != Type::kHistogram, "collectors report counters and gauges");
  Add(std::move(name), std::move(help), type, std::move(label_names)).collect = std::move(collect);
}

std::string Registry::Render() const {
  // Families are only ever added, never removed: render them without the
  // registry's lock, so a collector may take its own component's locks.
  std::vector<const Family*> families;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& f : families_) families.push_back(f.get());
  }
  std::string out;
  for (const Family* f : families) f->Render(&out);
  return out;
}

std::string EscapeLabelValue(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeHelp(absl::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  char buf[40];
  for (int precision = 1; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof buf, "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

}  // namespace corridor::metrics
