// ledger_bench: the ledger's throughput, proof latency, re-verification rate
// and memory, each beside its raw baseline, with the ratios. Prints one
// report to stdout; no pass/fail. Usage and recorded results:
// docs/benchmarks.md.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "ledger/merkle.h"
#include "ledger/rocksdb/rocksdb_ledger.h"

ABSL_FLAG(uint64_t, entries, 10'000'000, "size of the ledger for proof, verify and memory runs");
ABSL_FLAG(double, append_seconds, 2.0, "duration of each append-throughput run");
ABSL_FLAG(int, append_repeats, 3, "ledger/raw pairs per concurrency level (median reported)");
ABSL_FLAG(std::string, dir, "/tmp/corridor-ledger-bench", "scratch directory (deleted first)");
ABSL_FLAG(int, entry_bytes, 300, "bytes per entry");
ABSL_FLAG(int, proofs, 10000, "proofs of each kind to time");
ABSL_FLAG(bool, keep, false, "keep the scratch directory afterwards");
ABSL_FLAG(bool, reuse, false,
          "skip the append runs and the build; reuse <dir>/big kept by an earlier --keep run");

namespace corridor::ledger {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// VmHWM / VmRSS of this process in MiB.
double ProcStatusMiB(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(field, 0) == 0) return std::stod(line.substr(strlen(field) + 1)) / 1024.0;
  }
  return -1;
}
// Resets the peak-RSS mark (Linux: echo 5 > /proc/self/clear_refs).
void ResetPeakRss() {
  malloc_trim(0);  // give back what earlier phases freed, so it is not counted
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
}

std::vector<std::string> Payloads(size_t n, int bytes) {
  std::mt19937_64 rng(1);
  static const char kAlphabet[] =
      "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 {}\":,";
  std::vector<std::string> out(n);
  for (auto& s : out) {
    s.resize(bytes);
    for (auto& c : s) c = kAlphabet[rng() % (sizeof(kAlphabet) - 1)];
  }
  return out;
}

std::string Be64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (56 - 8 * i));
  return s;
}

struct Opened {
  std::unique_ptr<LedgerDb> db;
  std::unique_ptr<RocksDbLedger> ledger;
};

Opened OpenLedger(const std::string& path, const Ed25519PrivateKey& key,
                  std::function<absl::Status()> hook = nullptr, double* ledger_open_ms = nullptr) {
  Opened o;
  auto db = OpenLedgerDb(path);
  const auto start = Clock::now();
  if (!db.ok()) {
    fprintf(stderr, "%s\n", db.status().ToString().c_str());
    exit(1);
  }
  o.db = std::move(*db);
  RocksDbLedgerOptions opts;
  opts.origin = "bench.corridor.example/node";
  opts.signing_key = &key;
  opts.before_commit = std::move(hook);
  auto l = RocksDbLedger::Open(o.db->db.get(), o.db->families, std::move(opts));
  if (!l.ok()) {
    fprintf(stderr, "%s\n", l.status().ToString().c_str());
    exit(1);
  }
  o.ledger = std::move(*l);
  if (ledger_open_ms) *ledger_open_ms = 1e3 * Seconds(Clock::now() - start);
  return o;
}

// `callers` requests of one entry each are always in flight. A completion
// hands its caller back to an issuing thread, which builds and queues that
// caller's next request, as gRPC threads would: the sequencer thread does only
// the ledger's own work.
struct AppendRun {
  double entries_per_sec = 0;
  double avg_group = 0;
};

AppendRun RunLedgerAppends(const std::string& path, int callers, double seconds,
                           const std::vector<std::string>& payloads, const Ed25519PrivateKey& key) {
  std::atomic<uint64_t> commits{0};
  Opened o = OpenLedger(path, key, [&] {
    ++commits;
    return absl::OkStatus();
  });
  RocksDbLedger* l = o.ledger.get();
  absl::Mutex mu;
  int ready = 0;      // callers whose previous append completed
  int in_flight = 0;  // appends queued and not yet completed
  bool stop = false;
  std::atomic<uint64_t> completed{0};
  auto on_done = [&](absl::StatusOr<uint64_t> r) {
    if (!r.ok()) {
      fprintf(stderr, "append failed: %s\n", r.status().ToString().c_str());
      exit(1);
    }
    ++completed;
    absl::MutexLock lock(&mu);
    --in_flight;
    ++ready;
  };
  std::thread issuer([&] {
    uint64_t next = 0;
    while (true) {
      int n = 0;
      {
        absl::MutexLock lock(&mu);
        auto wake = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return ready > 0 || stop; };
        mu.Await(absl::Condition(&wake));
        if (stop) return;
        n = ready;
        ready = 0;
        in_flight += n;
      }
      for (int k = 0; k < n; ++k, ++next) {
        l->AppendAsync({{payloads[next % payloads.size()], {absl::StrCat("case/", next % 1000)}}},
                       nullptr, on_done);
      }
    }
  });
  const auto start = Clock::now();
  {
    absl::MutexLock lock(&mu);
    ready = callers;
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  const uint64_t done_at_stop = completed.load();
  const uint64_t commits_at_stop = commits.load();
  const auto elapsed = Clock::now() - start;
  {
    absl::MutexLock lock(&mu);
    stop = true;
  }
  issuer.join();
  {
    absl::MutexLock lock(&mu);
    auto drained = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return in_flight == 0; };
    mu.Await(absl::Condition(&drained));
  }
  AppendRun r;
  r.entries_per_sec = done_at_stop / Seconds(elapsed);
  r.avg_group = commits_at_stop ? double(done_at_stop) / commits_at_stop : 0;
  return r;
}

// Raw RocksDB: synced WriteBatches of `group` entries (same entry bytes and
// index key), one after another, same column families, no tree.
double RunRawAppends(const std::string& path, int group, double seconds,
                     const std::vector<std::string>& payloads) {
  auto db = OpenLedgerDb(path);
  if (!db.ok()) exit(1);
  auto* entries = (*db)->families.at(kEntriesFamily);
  auto* index = (*db)->families.at(kIndexFamily);
  rocksdb::WriteOptions wo;
  wo.sync = true;
  uint64_t i = 0;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < deadline) {
    rocksdb::WriteBatch batch;
    for (int k = 0; k < group; ++k, ++i) {
      batch.Put(entries, Be64(i), payloads[i % payloads.size()]);
      batch.Put(index, absl::StrCat("case/", i % 1000, std::string(1, '\0'), Be64(i)), "");
    }
    if (!(*db)->db->Write(wo, &batch).ok()) exit(1);
  }
  return i / Seconds(Clock::now() - start);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * v.size()))];
}

void Main() {
  const uint64_t n = absl::GetFlag(FLAGS_entries);
  const std::string dir = absl::GetFlag(FLAGS_dir);
  const double secs = absl::GetFlag(FLAGS_append_seconds);
  const int bytes = absl::GetFlag(FLAGS_entry_bytes);
  const bool reuse = absl::GetFlag(FLAGS_reuse);
  if (!reuse) std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  // A fixed key, so a kept ledger can be reopened by a later --reuse run.
  const Ed25519PrivateKey key = *Ed25519PrivateKey::FromSeed(std::string(32, 'b'));
  const std::vector<std::string> payloads = Payloads(4096, bytes);

  printf("corridor ledger_bench: %u cores, entry %d bytes, ledger size %lu, dir %s\n",
         std::thread::hardware_concurrency(), bytes, static_cast<unsigned long>(n), dir.c_str());

  const std::string big = absl::StrCat(dir, "/big");
  if (!reuse) {
    // 1. Durable appends through the sequencer vs raw synced WriteBatches.
    printf("\n== durable appends (each entry also filed under one index key) ==\n");
    printf("%8s %14s %10s %16s %8s\n", "callers", "ledger ent/s", "avg group", "raw ent/s (same",
           "ratio");
    printf("%8s %14s %10s %16s %8s\n", "", "", "", "group size)", "");
    int run = 0;
    // Fsync latency on a shared virtual disk drifts over seconds, so each
    // ledger run is paired with a raw run right after it, and the pairs are
    // repeated; the summary line is the median pair (by ratio).
    const int repeats = std::max(1, absl::GetFlag(FLAGS_append_repeats));
    for (int callers : {1, 16, 256}) {
      std::vector<std::pair<double, std::string>> pairs;
      for (int rep = 0; rep < repeats; ++rep) {
        AppendRun l =
            RunLedgerAppends(absl::StrCat(dir, "/append", run++), callers, secs, payloads, key);
        const int group = std::max(1, int(l.avg_group + 0.5));
        const double raw = RunRawAppends(absl::StrCat(dir, "/raw", run++), group, secs, payloads);
        const double ratio = 100.0 * l.entries_per_sec / raw;
        char line[160];
        snprintf(line, sizeof(line), "%8d %14.0f %10.1f %16.0f %7.0f%%", callers, l.entries_per_sec,
                 l.avg_group, raw, ratio);
        printf("%s%s\n", line, repeats > 1 ? "   (one pair)" : "");
        fflush(stdout);
        pairs.emplace_back(ratio, line);
      }
      if (repeats > 1) {
        std::sort(pairs.begin(), pairs.end());
        printf("%s   <- median of %d pairs\n", pairs[pairs.size() / 2].second.c_str(), repeats);
      }
    }

    // 2. Build the big ledger: peak memory while appending.
    printf("\n== appending %lu entries (requests of 1024, no index keys) ==\n",
           static_cast<unsigned long>(n));
    ResetPeakRss();
    {
      Opened o = OpenLedger(big, key);
      absl::Mutex mu;
      int in_flight = 0;
      const auto start = Clock::now();
      uint64_t i = 0;
      while (i < n) {
        const uint64_t count = std::min<uint64_t>(1024, n - i);
        std::vector<AppendEntry> req(count);
        for (uint64_t k = 0; k < count; ++k) req[k].data = payloads[(i + k) % payloads.size()];
        {
          absl::MutexLock lock(&mu);
          auto room = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return in_flight < 16; };
          mu.Await(absl::Condition(&room));
          ++in_flight;
        }
        o.ledger->AppendAsync(std::move(req), nullptr, [&](absl::StatusOr<uint64_t> r) {
          if (!r.ok()) exit(1);
          absl::MutexLock lock(&mu);
          --in_flight;
        });
        i += count;
      }
      {
        absl::MutexLock lock(&mu);
        auto idle = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return in_flight == 0; };
        mu.Await(absl::Condition(&idle));
      }
      const double s = Seconds(Clock::now() - start);
      printf("appended in %.1f s (%.0f entries/s); peak RSS while appending %.0f MiB\n", s, n / s,
             ProcStatusMiB("VmHWM:"));
    }

  }  // !reuse

  // 3. Proofs on the big ledger (reopened: cold tile cache, no replay).
  printf("\n== proofs on a %lu-entry ledger ==\n", static_cast<unsigned long>(n));
  {
    const auto open_start = Clock::now();
    double ledger_ms = 0;
    Opened o = OpenLedger(big, key, nullptr, &ledger_ms);
    printf(
        "reopen: RocksDB open + ledger open %.1f ms, of which RocksDbLedger::Open (head, "
        "tiles, last entry, checkpoint; no replay) %.2f ms\n",
        1e3 * Seconds(Clock::now() - open_start), ledger_ms);
    std::mt19937_64 rng(9);
    const int proofs = absl::GetFlag(FLAGS_proofs);
    std::vector<double> incl, cons;
    for (int k = 0; k < proofs; ++k) {
      const uint64_t index = rng() % n;
      const auto t0 = Clock::now();
      auto p = o.ledger->InclusionProof(index, n);
      incl.push_back(1e6 * Seconds(Clock::now() - t0));
      if (!p.ok()) exit(1);
      const uint64_t old_size = 1 + rng() % n;
      const auto t1 = Clock::now();
      auto c = o.ledger->ConsistencyProof(old_size, n);
      cons.push_back(1e6 * Seconds(Clock::now() - t1));
      if (!c.ok()) exit(1);
    }
    printf("inclusion proof (random index, size %lu): median %.1f us, p99 %.1f us\n",
           static_cast<unsigned long>(n), Percentile(incl, 0.5), Percentile(incl, 0.99));
    printf("consistency proof (random old size -> %lu): median %.1f us, p99 %.1f us\n",
           static_cast<unsigned long>(n), Percentile(cons, 0.5), Percentile(cons, 0.99));
  }

  // 4. Full re-verification vs raw SHA-256 of the same leaf and node hashes.
  printf("\n== full re-verification of %lu entries ==\n", static_cast<unsigned long>(n));
  {
    Opened o = OpenLedger(big, key);
    // Let RocksDB finish compacting the bulk load first: otherwise its
    // background compactions share the two cores and the disk with the
    // verification, and the figure measures them as much as the ledger.
    const auto settle_start = Clock::now();
    for (int i = 0; i < 1200; ++i) {
      bool busy = false;
      for (const auto& [name, cf] : o.db->families) {
        uint64_t pending = 0, running = 0;
        o.db->db->GetIntProperty(cf, "rocksdb.compaction-pending", &pending);
        o.db->db->GetIntProperty(cf, "rocksdb.num-running-compactions", &running);
        busy |= pending > 0 || running > 0;
      }
      if (!busy) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    printf("waited %.1f s for RocksDB's background compactions to finish\n",
           Seconds(Clock::now() - settle_start));
    ResetPeakRss();
    const auto t0 = Clock::now();
    absl::Status st = o.ledger->VerifyAll();
    const double verify = Seconds(Clock::now() - t0);
    const double peak = ProcStatusMiB("VmHWM:");
    if (!st.ok()) {
      printf("VERIFY FAILED: %s\n", st.ToString().c_str());
      exit(1);
    }
    // Raw: n leaf hashes over the same bytes (in memory) + n - 1 node hashes.
    const auto t1 = Clock::now();
    merkle::Hash acc{};
    for (uint64_t i = 0; i < n; ++i) {
      merkle::Hash leaf = merkle::HashLeaf(payloads[i % payloads.size()]);
      acc = merkle::HashChildren(acc, leaf);  // stands in for the n - 1 node hashes
    }
    const double raw = Seconds(Clock::now() - t1);
    printf(
        "VerifyAll: %.1f s (%.0f entries/s); raw SHA-256 of the same %lu leaf + %lu node "
        "hashes: %.1f s; ratio %.0f%% of raw (checksum %02x)\n",
        verify, n / verify, static_cast<unsigned long>(n), static_cast<unsigned long>(n - 1), raw,
        100.0 * raw / verify, acc[0]);
    printf("peak RSS while re-verifying: %.0f MiB\n", peak);
  }
  if (!absl::GetFlag(FLAGS_keep)) std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace corridor::ledger

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  corridor::ledger::Main();
  return 0;
}
