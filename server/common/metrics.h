// A small metrics registry and its rendering in the Prometheus text exposition
// format, version 0.0.4 (docs/operations.md, "Monitor", lists every metric).
//
//  - Counter, Gauge, Histogram: one value each, updated with std::atomic only
//    (no lock on the paths that count calls and ledger appends).
//  - Registry: named families of them, with fixed label names, and collectors:
//    functions run at each scrape that report values read from elsewhere
//    (peer states, outbox depth, certificate expiry). Families are added
//    before the node serves; children (label values) may be added any time.
//    Render() writes the whole exposition.
//
// Label values must never carry personal data or free text: method names,
// status codes and federation org ids only. Callers bound their number (the
// request metrics map unknown methods to one label). Thread-safe.
#ifndef CORRIDOR_SERVER_COMMON_METRICS_H_
#define CORRIDOR_SERVER_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace corridor::metrics {

// A value that only goes up (resets to 0 only when the process restarts).
class Counter {
 public:
  void Add(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double d);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted into buckets with fixed upper bounds (seconds, bytes).
class Histogram {
 public:
  // `bounds` ascending, finite; the +Inf bucket is implied.
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;
    std::vector<uint64_t> cumulative;  // per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  // A consistent-enough copy: counts are cumulative and the +Inf bucket equals
  // the count (sum may lag an observation being added).
  Snapshot snapshot() const;

  // Seconds, from 1 ms to 30 s: calls and ledger appends.
  static std::vector<double> LatencyBounds();

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;  // bounds_.size() + 1, not cumulative
  std::atomic<double> sum_{0};
};

enum class Type { kCounter, kGauge, kHistogram };

// One sample a collector reports: label values (in the family's label order) and a value.
struct Sample {
  std::vector<std::string> labels;
  double value = 0;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // A family of counters (gauges, histograms) named `name` ([a-zA-Z_:][a-zA-Z0-9_:]*)
  // with `label_names`; `help` is one line. The child for a set of label
  // values is made on first use and lives as long as the registry, so callers
  // may keep the reference. Adding a name twice is a programming error (aborts).
  class CounterFamily;
  class GaugeFamily;
  class HistogramFamily;
  CounterFamily& AddCounter(std::string name, std::string help,
                            std::vector<std::string> label_names = {});
  GaugeFamily& AddGauge(std::string name, std::string help,
                        std::vector<std::string> label_names = {});
  HistogramFamily& AddHistogram(std::string name, std::string help, std::vector<double> bounds,
                                std::vector<std::string> label_names = {});
  // A counter or gauge family whose samples `collect` reports at each scrape
  // (called with no lock of the registry held, on the scraping thread; it
  // must be thread-safe and must not block for long).
  void AddCollector(std::string name, std::string help, Type type,
                    std::vector<std::string> label_names,
                    std::function<std::vector<Sample>()> collect);

  // The exposition: per family "# HELP", "# TYPE", then its samples; families
  // in the order added, children in label order. Counters and histograms
  // whose value is still zero are left out when they have labels (they
  // appear once they move), so an unused method adds no lines.
  std::string Render() const;

 private:
  struct Family;
  Family& Add(std::string name, std::string help, Type type, std::vector<std::string> labels);

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Family>> families_ ABSL_GUARDED_BY(mu_);
};

// Children keyed by label values. With() takes the family's lock: keep the
// reference rather than looking it up on a hot path.
class Registry::CounterFamily {
 public:
  Counter& With(const std::vector<std::string>& label_values);

 private:
  friend class Registry;
  absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Counter>> children_ ABSL_GUARDED_BY(mu_);
};

class Registry::GaugeFamily {
 public:
  Gauge& With(const std::vector<std::string>& label_values);

 private:
  friend class Registry;
  absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Gauge>> children_ ABSL_GUARDED_BY(mu_);
};

class Registry::HistogramFamily {
 public:
  explicit HistogramFamily(std::vector<double> bounds) : bounds_(std::move(bounds)) {}
  Histogram& With(const std::vector<std::string>& label_values);

 private:
  friend class Registry;
  const std::vector<double> bounds_;
  absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Histogram>> children_ ABSL_GUARDED_BY(mu_);
};

// Text-format helpers (exposed for the tests).
// A label value with \ " and newline escaped.
std::string EscapeLabelValue(absl::string_view v);
// HELP text with \ and newline escaped.
std::string EscapeHelp(absl::string_view v);
// A sample value: integers without a fraction, "+Inf", "-Inf", "NaN", else shortest round-trip.
std::string FormatValue(double v);

}  // namespace corridor::metrics

#endif  // CORRIDOR_SERVER_COMMON_METRICS_H_
