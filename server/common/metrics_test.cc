// The metrics registry and its text rendering: what Prometheus reads must be
// exposition format 0.0.4 to the letter (checked with the strict parser of
// tests/testing/prometheus_text.h, which is itself shown to refuse bad text),
// values move by exactly what was counted, also under concurrent updates and
// scrapes, and request metrics keep their label set bounded.
#include "server/common/metrics.h"

#include <thread>

#include "gtest/gtest.h"
#include "server/common/request_metrics.h"
#include "tests/testing/prometheus_text.h"

namespace corridor::metrics {
namespace {

using ::corridor::testing::Exposition;
using ::corridor::testing::ParseExposition;

Exposition Parse(const std::string& text) {
  auto parsed = ParseExposition(text);
  EXPECT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  return parsed.ok() ? *parsed : Exposition{};
}

TEST(MetricsRegistryTest, RendersHelpTypeAndEscapedLabels) {
  Registry r;
  r.AddCounter("c_total", "Calls, with a \\ and a\nnewline.", {"who"}).With({"a\"b\\c\nd"}).Add(3);
  r.AddGauge("g", "A gauge.").With({}).Set(-2.5);
  const std::string text = r.Render();
  EXPECT_EQ(text,
            "# HELP c_total Calls, with a \\\\ and a\\nnewline.\n"
            "# TYPE c_total counter\n"
            "c_total{who=\"a\\\"b\\\\c\\nd\"} 3\n"
            "# HELP g A gauge.\n"
            "# TYPE g gauge\n"
            "g -2.5\n");
  Exposition e = Parse(text);
  EXPECT_EQ(e.Value("c_total", {{"who", "a\"b\\c\nd"}}), 3);
  EXPECT_EQ(e.families["c_total"].type, "counter");
}

TEST(MetricsRegistryTest, HistogramHasCumulativeBucketsInfSumAndCount) {
  Registry r;
  Histogram& h = r.AddHistogram("lat_seconds", "Latency.", {0.1, 1}, {"m"}).With({"x"});
  for (double v : {0.05, 0.1, 0.5, 2.0, 7.0}) h.Observe(v);
  r.AddHistogram("unused_seconds", "Never observed.", {1}, {"m"}).With({"y"});
  const std::string text = r.Render();
  EXPECT_NE(text.find("lat_seconds_bucket{m=\"x\",le=\"0.1\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{m=\"x\",le=\"1\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_bucket{m=\"x\",le=\"+Inf\"} 5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_sum{m=\"x\"} 9.65\n"), std::string::npos) << text;
  EXPECT_NE(text.find("lat_seconds_count{m=\"x\"} 5\n"), std::string::npos) << text;
  // A labelled series nobody observed adds no lines, only its HELP and TYPE.
  EXPECT_EQ(text.find("unused_seconds_"), std::string::npos) << text;
  Exposition e = Parse(text);
  EXPECT_EQ(e.Value("lat_seconds_count", {{"m", "x"}}), 5);
}

TEST(MetricsRegistryTest, CollectorsReportAtEachScrape) {
  Registry r;
  int calls = 0;
  r.AddCollector("peer_up", "Up.", Type::kGauge, {"peer"}, [&calls] {
    ++calls;
    return std::vector<Sample>{{{"b"}, 1}, {{"a"}, 0}};
  });
  Exposition e = Parse(r.Render());
  EXPECT_EQ(e.Value("peer_up", {{"peer", "b"}}), 1);
  EXPECT_EQ(e.families["peer_up"].samples.size(), 2u);
  r.Render();
  EXPECT_EQ(calls, 2);
}

TEST(MetricsRegistryTest, FormatsValuesAsPrometheusReadsThem) {
  EXPECT_EQ(FormatValue(0), "0");
  EXPECT_EQ(FormatValue(12345678901), "12345678901");
  EXPECT_EQ(FormatValue(0.001), "0.001");
  EXPECT_EQ(FormatValue(1.0 / 3), "0.3333333333333333");
  EXPECT_EQ(FormatValue(HUGE_VAL), "+Inf");
  EXPECT_EQ(FormatValue(-HUGE_VAL), "-Inf");
  EXPECT_EQ(FormatValue(std::nan("")), "NaN");
}

// The parser the end-to-end tests rely on refuses what Prometheus would.
TEST(MetricsRegistryTest, StrictParserRefusesMalformedExpositions) {
  const std::vector<std::string> bad = {
      "x 1\n",                                                           // no TYPE
      "# TYPE x counter\nx 1",                                           // no final newline
      "# TYPE x counter\nx{a=\"b} 1\n",                                  // unterminated value
      "# TYPE x counter\nx{a=\"\\t\"} 1\n",                              // bad escape
      "# TYPE x counter\nx{a=\"1\",a=\"2\"} 1\n",                        // label twice
      "# TYPE x counter\nx -1\n",                                        // negative counter
      "# TYPE x counter\nx 1\nx 2\n",                                    // series twice
      "# TYPE x counter\n\nx 1\n",                                       // empty line
      "# TYPE x gauge\n# TYPE y gauge\nx 1\ny 1\nx{a=\"b\"} 1\n",        // family split
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_sum 1\nh_count 2\n",  // no +Inf
      "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
      "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",  // count differs
      "# TYPE x counter\nx one\n",                                          // not a number
      "# TYPE 1x counter\n",                                                // bad name
  };
  for (const std::string& text : bad) {
    EXPECT_FALSE(ParseExposition(text).ok()) << text;
  }
  EXPECT_TRUE(ParseExposition("# HELP x X.\n# TYPE x counter\nx{a=\"\\n\"} 1\n").ok());
}

TEST(MetricsRegistryTest, ConcurrentUpdatesAndScrapesCountExactly) {
  Registry r;
  Counter& c = r.AddCounter("n_total", "N.", {"k"}).With({"v"});
  Histogram& h = r.AddHistogram("d_seconds", "D.", Histogram::LatencyBounds()).With({});
  constexpr int kThreads = 8, kEach = 20000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) {
      auto parsed = ParseExposition(r.Render());
      ASSERT_TRUE(parsed.ok()) << parsed.status();
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        c.Add();
        h.Observe(0.002);
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  scraper.join();
  Exposition e = Parse(r.Render());
  EXPECT_EQ(e.Value("n_total", {{"k", "v"}}), kThreads * kEach);
  EXPECT_EQ(e.Value("d_seconds_count"), kThreads * kEach);
  EXPECT_EQ(e.Value("d_seconds_bucket", {{"le", "0.0025"}}), kThreads * kEach);
  EXPECT_EQ(e.Value("d_seconds_bucket", {{"le", "0.001"}}), 0);
}

TEST(RequestMetricsTest, UnknownMethodsCollapseIntoOneLabel) {
  Registry r;
  RequestMetrics m(&r, {"/corridor.v1.CaseService/GetCase"});
  m.Record("/corridor.v1.CaseService/GetCase", grpc::StatusCode::OK, 0.01);
  m.Record("/corridor.v1.CaseService/GetCase", grpc::StatusCode::PERMISSION_DENIED, 0.01);
  m.RecordRefused("/corridor.v1.CaseService/GetCase", grpc::StatusCode::UNAUTHENTICATED);
  for (int i = 0; i < 50; ++i) {
    m.Record("/x.Typed/" + std::to_string(i), grpc::StatusCode::UNIMPLEMENTED, 0.001);
  }
  m.Record("garbage", static_cast<grpc::StatusCode>(99), 0.001);
  Exposition e = Parse(r.Render());
  auto calls = [&](const std::string& service, const std::string& method, const std::string& code) {
    return e.Value("corridor_grpc_requests_total",
                   {{"service", service}, {"method", method}, {"code", code}});
  };
  EXPECT_EQ(calls("corridor.v1.CaseService", "GetCase", "OK"), 1);
  EXPECT_EQ(calls("corridor.v1.CaseService", "GetCase", "PERMISSION_DENIED"), 1);
  EXPECT_EQ(calls("corridor.v1.CaseService", "GetCase", "UNAUTHENTICATED"), 1);
  EXPECT_EQ(calls("other", "other", "UNIMPLEMENTED"), 50);
  EXPECT_EQ(calls("other", "other", "UNKNOWN"), 1);
  // Refused before a handler: counted, but no duration observed.
  EXPECT_EQ(e.Value("corridor_grpc_request_duration_seconds_count",
                    {{"service", "corridor.v1.CaseService"}, {"method", "GetCase"}}),
            2);
  for (const auto& s : e.All()) {
    if (s.labels.count("method") == 0) continue;
    EXPECT_TRUE(s.labels.at("method") == "GetCase" || s.labels.at("method") == "other")
        << s.labels.at("method");
  }
}

}  // namespace
}  // namespace corridor::metrics
