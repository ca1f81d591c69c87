#include "ledger/rocksdb/rocksdb_ledger.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "ledger/rocksdb/tsan_visible_writes.h"
#include "rocksdb/listener.h"
#include "rocksdb/options.h"

namespace corridor::ledger {
namespace {

constexpr int kTileHeight = 8;
constexpr uint32_t kTileWidth = 1u << kTileHeight;
// Free space wanted, beyond the memtables, before resuming the database.
constexpr uint64_t kResumeSlackBytes = uint64_t{4} << 20;
constexpr char kHeadKey[] = "head";
constexpr char kCheckpointKey[] = "checkpoint";
constexpr char kGroupPrefix = 'g';  // 'g' ‖ be64(first index) -> be64(unix micros)
constexpr char kTimePrefix = 't';   // 't' ‖ be64(unix micros) ‖ be64(first index) -> ""

std::string Be64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(v >> (56 - 8 * i));
  return s;
}

uint64_t ReadBe64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string TileKey(int level, uint64_t index) {
  std::string k(1, static_cast<char>(level));
  return k + Be64(index);
}

uint64_t CacheKey(int level, uint64_t index) { return (uint64_t(level) << 56) | index; }

// The families callers' changes may name: every one given, and the default
// one. The ledger's own are reserved (RocksDbKeySpaces refuses them).
RocksDbKeySpaces CallerFamilies(
    rocksdb::DB* db, const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families) {
  std::map<std::string, rocksdb::ColumnFamilyHandle*> all = families;
  all.emplace(rocksdb::kDefaultColumnFamilyName, db->DefaultColumnFamily());
  const std::vector<std::string> own = LedgerColumnFamilyNames();
  return RocksDbKeySpaces(std::move(all), std::set<std::string>(own.begin(), own.end()));
}

std::string HashName(const merkle::Hash& h) { return Base64Encode(merkle::ToBytes(h)); }

// How many hashes row 0 of tile (level, index) holds in a tree of `size`.
uint32_t ExpectedTileWidth(int level, uint64_t index, uint64_t size) {
  const int shift = kTileHeight * level;
  const uint64_t nodes = shift >= 64 ? 0 : size >> shift;
  const uint64_t start = index * kTileWidth;
  if (nodes <= start) return 0;
  return static_cast<uint32_t>(std::min<uint64_t>(kTileWidth, nodes - start));
}

}  // namespace

// A tile: the hashes of an 8-level slab of the tree. Tile (L, i) row r holds
// the complete nodes at tree level 8L + r over leaves of tile i; row 0 has n
// hashes, row r has n >> r. Encoding: be16(n) then rows 0..7 concatenated.
struct RocksDbLedger::Tile {
  uint32_t n = 0;
  std::vector<merkle::Hash> rows[kTileHeight];

  std::string Encode() const {
    std::string out;
    size_t total = 0;
    for (int r = 0; r < kTileHeight; ++r) total += rows[r].size();
    out.reserve(2 + 32 * total);
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
    for (int r = 0; r < kTileHeight; ++r) {
      for (const auto& h : rows[r]) out.append(reinterpret_cast<const char*>(h.data()), 32);
    }
    return out;
  }

  static absl::StatusOr<Tile> Decode(absl::string_view v) {
    Tile t;
    if (v.size() < 2) return absl::DataLossError("tile is truncated");
    t.n = (static_cast<uint8_t>(v[0]) << 8) | static_cast<uint8_t>(v[1]);
    if (t.n > kTileWidth) return absl::DataLossError("tile claims more than 256 hashes");
    size_t off = 2;
    for (int r = 0; r < kTileHeight; ++r) {
      const uint32_t count = t.n >> r;
      if (v.size() < off + 32 * size_t{count}) return absl::DataLossError("tile is truncated");
      t.rows[r].resize(count);
      for (uint32_t i = 0; i < count; ++i) {
        memcpy(t.rows[r][i].data(), v.data() + off, 32);
        off += 32;
      }
    }
    if (off != v.size()) return absl::DataLossError("tile has trailing bytes");
    return t;
  }
};

std::vector<std::string> LedgerColumnFamilyNames() {
  return {kEntriesFamily, kTilesFamily, kStateFamily, kIndexFamily, kTimesFamily};
}

rocksdb::ColumnFamilyOptions LedgerColumnFamilyOptions(const std::string& name) {
  rocksdb::ColumnFamilyOptions o;
  const bool big = name == kEntriesFamily || name == kTilesFamily;
  o.write_buffer_size = big ? (32 << 20) : (8 << 20);
  o.max_write_buffer_number = 2;
  return o;
}

RocksDbLedger::RocksDbLedger(rocksdb::DB* db,
                             const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families,
                             RocksDbLedgerOptions options)
    : db_(db), spaces_(CallerFamilies(db, families)), options_(std::move(options)) {
  entries_cf_ = families.at(kEntriesFamily);
  tiles_cf_ = families.at(kTilesFamily);
  state_cf_ = families.at(kStateFamily);
  index_cf_ = families.at(kIndexFamily);
  times_cf_ = families.at(kTimesFamily);
}

absl::StatusOr<std::unique_ptr<RocksDbLedger>> RocksDbLedger::Open(
    rocksdb::DB* db, const std::map<std::string, rocksdb::ColumnFamilyHandle*>& families,
    RocksDbLedgerOptions options) {
  if (db == nullptr) return absl::InvalidArgumentError("ledger: no database");
  for (const std::string& name : LedgerColumnFamilyNames()) {
    auto it = families.find(name);
    if (it == families.end() || it->second == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("ledger: column family ", name, " was not given to Open"));
    }
  }
  if (auto st = ValidateOptions(options); !st.ok()) return st;
  if (options.max_group_entries == 0) options.max_group_entries = 8192;
  if (options.tile_cache_tiles == 0) options.tile_cache_tiles = 16;
  if (options.recovery_backoff_min <= absl::ZeroDuration() ||
      options.recovery_backoff_max < options.recovery_backoff_min) {
    return absl::InvalidArgumentError(
        "ledger: recovery backoff must satisfy 0 < recovery_backoff_min <= recovery_backoff_max");
  }
  std::unique_ptr<RocksDbLedger> ledger(new RocksDbLedger(db, families, std::move(options)));
  {
    absl::MutexLock lock(&ledger->commit_mu_);
    if (auto st = ledger->Load(); !st.ok()) return st;
  }
  ledger->sequencer_ = std::thread([l = ledger.get()] { l->Run(); });
  return ledger;
}

RocksDbLedger::~RocksDbLedger() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (sequencer_.joinable()) sequencer_.join();
}

note::Verifier RocksDbLedger::verifier() const {
  return note::Verifier{options_.key_name, 0x01, options_.signing_key->public_key()};
}

absl::Status RocksDbLedger::Load() {
  const rocksdb::ReadOptions ro;
  std::string head;
  rocksdb::Status s = db_->Get(ro, state_cf_, kHeadKey, &head);
  Head h;
  merkle::CompactRange edge;
  if (s.IsNotFound()) {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, entries_cf_));
    it->SeekToFirst();
    if (it->Valid()) return absl::DataLossError("the ledger has entries but no stored tree head");
    std::unique_ptr<rocksdb::Iterator> tiles(db_->NewIterator(ro, tiles_cf_));
    tiles->SeekToFirst();
    if (tiles->Valid()) return absl::DataLossError("the ledger has tiles but no stored tree head");
  } else if (!s.ok()) {
    return FromRocksStatus(s, "reading the ledger head");
  } else {
    if (head.size() != 40) return absl::DataLossError("the stored ledger head is malformed");
    h.size = ReadBe64(head.data());
    h.root = *merkle::FromBytes(absl::string_view(head).substr(8));
    if (h.size == 0) return absl::DataLossError("the stored ledger head has size 0");
    // The stored subtree hashes must give the stored root.
    const merkle::NodeSource stored = [this](int level, uint64_t index) {
      return StoredNode(level, index);
    };
    auto root = merkle::RootAt(h.size, stored);
    if (!root.ok()) {
      return absl::DataLossError(absl::StrCat(
          "the stored tree head says ", h.size,
          " entries but the stored subtree hashes are incomplete: ", root.status().message()));
    }
    if (*root != h.root) {
      return absl::DataLossError(
          absl::StrCat("the stored tree head (size ", h.size, ", root ", HashName(h.root),
                       ") does not match the root computed from the stored subtree hashes (",
                       HashName(*root), ")"));
    }
    // The entries must end exactly at the head, and the last must hash right.
    std::string last;
    s = db_->Get(ro, entries_cf_, Be64(h.size - 1), &last);
    if (s.IsNotFound()) {
      return absl::DataLossError(absl::StrCat("entry ", h.size - 1, " (the last one) is missing"));
    }
    if (!s.ok()) return FromRocksStatus(s, "reading the last entry");
    auto leaf = StoredNode(0, h.size - 1);
    if (!leaf.ok()) return leaf.status();
    if (merkle::HashLeaf(last) != *leaf) {
      return absl::DataLossError(absl::StrCat(
          "entry ", h.size - 1, " (the last one) does not match its stored leaf hash"));
    }
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, entries_cf_));
    it->Seek(Be64(h.size));
    if (it->Valid()) {
      return absl::DataLossError(
          absl::StrCat("an entry exists beyond the stored tree head (size ", h.size, ")"));
    }
    // The latest checkpoint must be ours and commit to the same head.
    s = db_->Get(ro, state_cf_, kCheckpointKey, &h.checkpoint);
    if (!s.ok()) return absl::DataLossError("the latest signed checkpoint is missing");
    auto cp = OpenStoredCheckpoint(options_, h.checkpoint);
    if (!cp.ok()) {
      return absl::DataLossError(
          absl::StrCat("the latest signed checkpoint does not verify: ", cp.status().message()));
    }
    if (cp->origin != options_.origin) {
      return absl::DataLossError(absl::StrCat("the latest signed checkpoint is for origin \"",
                                              cp->origin, "\", not \"", options_.origin, "\""));
    }
    if (cp->size != h.size || cp->root != h.root) {
      return absl::DataLossError(absl::StrCat("the latest signed checkpoint (size ", cp->size,
                                              ", root ", HashName(cp->root),
                                              ") does not match the stored tree head (size ",
                                              h.size, ", root ", HashName(h.root), ")"));
    }
    // The right edge of the tree: one complete subtree per set bit of size.
    std::vector<merkle::Hash> parts;
    uint64_t begin = 0;
    for (int level = 63; level >= 0; --level) {
      const uint64_t width = uint64_t{1} << level;
      if ((h.size & width) == 0) continue;
      auto node = StoredNode(level, begin >> level);
      if (!node.ok()) return node.status();
      parts.push_back(*node);
      begin += width;
    }
    edge.Restore(h.size, parts);
    // The last group's time stamp keeps time stamps monotonic across restarts.
    std::unique_ptr<rocksdb::Iterator> times(db_->NewIterator(ro, times_cf_));
    times->SeekForPrev(std::string(1, kGroupPrefix) + Be64(~uint64_t{0}));
    if (times->Valid() && times->key().size() == 9 && times->key()[0] == kGroupPrefix &&
        times->value().size() == 8) {
      last_micros_ = std::max(last_micros_, static_cast<int64_t>(ReadBe64(times->value().data())));
    }
  }
  edge_ = std::move(edge);
  absl::MutexLock lock(&mu_);
  head_ = h;
  return absl::OkStatus();
}

Head RocksDbLedger::head() const {
  absl::MutexLock lock(&mu_);
  return head_;
}

absl::Status RocksDbLedger::health() const {
  absl::MutexLock lock(&mu_);
  return broken_;
}

void RocksDbLedger::AppendAsync(std::vector<AppendEntry> entries, std::unique_ptr<Mutation> change,
                                AppendCallback done) {
  if (absl::Status st = ValidateEntries(entries); !st.ok()) return done(st);
  if (change) {
    if (absl::Status st = spaces_.Check(*change); !st.ok()) return done(st);
  }
  absl::Status refused;
  {
    absl::MutexLock lock(&mu_);
    if (broken_.ok()) {
      queue_.push_back(Request{std::move(entries), std::move(change), std::move(done)});
      return;
    }
    refused = broken_;
  }
  done(refused);
}

void RocksDbLedger::Run() {
  const bool auto_recover = options_.recovery_backoff_min != absl::InfiniteDuration();
  absl::Duration backoff = options_.recovery_backoff_min;
  while (true) {
    std::vector<Request> group;
    bool recover = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]()
                       ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !queue_.empty() || stopping_; };
      if (broken_.ok()) backoff = options_.recovery_backoff_min;
      if (!broken_.ok() && recoverable_ && auto_recover) {
        recover = !mu_.AwaitWithTimeout(absl::Condition(&ready), backoff);
      } else {
        mu_.Await(absl::Condition(&ready));
      }
      if (queue_.empty() && stopping_) return;
      size_t count = 0;
      while (
          !recover && !queue_.empty() &&
          (group.empty() || count + queue_.front().entries.size() <= options_.max_group_entries)) {
        count += queue_.front().entries.size();
        group.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    if (recover) {
      if (!TryRecover().ok()) backoff = std::min(2 * backoff, options_.recovery_backoff_max);
      continue;
    }
    absl::MutexLock lock(&commit_mu_);
    CommitGroup(group);
  }
}

absl::Status RocksDbLedger::TryRecover() {
  absl::MutexLock commit_lock(&commit_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (broken_.ok() || !recoverable_) return broken_;
  }
  absl::Status st = Recover();
  absl::Status now;
  {
    absl::MutexLock lock(&mu_);
    if (st.ok()) {
      broken_ = absl::OkStatus();
    } else if (absl::IsDataLoss(st)) {
      recoverable_ = false;
      broken_ = absl::UnavailableError(absl::StrCat(
          "the ledger refuses all writes until it is reopened: after a failed commit its "
          "stored state does not verify: ",
          st.message()));
    } else {
      broken_ = absl::UnavailableError(
          absl::StrCat(failure_.message(), "; last recovery attempt: ", st.message()));
    }
    now = broken_;
  }
  if (options_.on_health_change && (now.ok() || absl::IsDataLoss(st))) {
    options_.on_health_change(now);
  }
  return now;
}

absl::Status ResumeWhenRoom(rocksdb::DB* db) {
  // DB::Resume flushes the memtables and moves to a new WAL, so a write
  // RocksDB failed is not replayed later behind our back. That flush needs
  // room; a resume that fails for want of it turns the error fatal (only a
  // restart helps), so resume only once the disk has room for every
  // memtable, plus slack.
  uint64_t memtables = 0, free_bytes = 0;
  if (!db->GetAggregatedIntProperty(rocksdb::DB::Properties::kCurSizeAllMemTables, &memtables)) {
    memtables = 0;
  }
  const uint64_t needed = memtables + kResumeSlackBytes;
  if (db->GetEnv()->GetFreeSpace(db->GetName(), &free_bytes).ok() && free_bytes < needed) {
    return absl::UnavailableError(absl::StrCat("the database's disk has ", free_bytes >> 20,
                                               " MiB free; waiting for at least ", needed >> 20,
                                               " MiB before resuming"));
  }
  rocksdb::Status s = db->Resume();  // OK at once if RocksDB is not stopped
  if (s.ok()) return absl::OkStatus();
  if (s.severity() >= rocksdb::Status::Severity::kFatalError) {
    return absl::UnavailableError(absl::StrCat(
        "the database stopped after an error it cannot resume from while running; restart the "
        "node: ",
        s.ToString()));
  }
  return absl::UnavailableError(absl::StrCat("the database cannot resume yet: ", s.ToString()));
}

namespace {

class ManualRecoveryListener : public rocksdb::EventListener {
 public:
  const char* Name() const override { return "CorridorManualRecovery"; }
  void OnErrorRecoveryBegin(rocksdb::BackgroundErrorReason, rocksdb::Status,
                            bool* auto_recovery) override {
    *auto_recovery = false;
  }
};

}  // namespace

std::shared_ptr<rocksdb::EventListener> NewManualRecoveryListener() {
  return std::make_shared<ManualRecoveryListener>();
}

absl::Status RocksDbLedger::Recover() {
  if (absl::Status st = ResumeWhenRoom(db_); !st.ok()) return st;
  // Re-derive the head and the right edge from what is durable, with Open's
  // checks; the tile cache may hold tiles of a head that never became durable.
  {
    absl::MutexLock lock(&cache_mu_);
    cache_.clear();
    lru_.clear();
  }
  const Head acknowledged = head();
  if (absl::Status st = Load(); !st.ok()) {
    return absl::IsDataLoss(st) ? st : absl::UnavailableError(st.message());
  }
  // Nothing acknowledged may be missing: the durable tree must extend the
  // last head readers saw (it is longer if the failed group reached the disk).
  const Head h = head();
  if (h.size < acknowledged.size) {
    return absl::DataLossError(absl::StrCat("the durable tree head (size ", h.size,
                                            ") is behind the last committed one (size ",
                                            acknowledged.size, ")"));
  }
  if (acknowledged.size > 0) {
    auto root = RootAt(acknowledged.size);
    if (!root.ok() || *root != acknowledged.root) {
      return absl::DataLossError(absl::StrCat("the durable tree does not extend the last ",
                                              "committed head (size ", acknowledged.size, ")"));
    }
  }
  // Prove the database takes a synced write, the way a commit writes: store
  // the head just loaded again (the same bytes; for the empty ledger, delete
  // the absent head key).
  rocksdb::WriteBatch probe;
  if (h.size == 0) {
    probe.Delete(state_cf_, kHeadKey);
  } else {
    probe.Put(state_cf_, kHeadKey, Be64(h.size) + merkle::ToBytes(h.root));
    probe.Put(state_cf_, kCheckpointKey, h.checkpoint);
  }
  absl::Status st;
  if (options_.before_commit) st = options_.before_commit();
  if (st.ok()) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    st = FromRocksStatus(db_->Write(wo, &probe), "writing to the database");
  }
  if (!st.ok()) return absl::UnavailableError(st.message());
  return absl::OkStatus();
}

void RocksDbLedger::FailQueued(const absl::Status& st) {
  std::deque<Request> rest;
  {
    absl::MutexLock lock(&mu_);
    broken_ = failure_ = st;
    rest.swap(queue_);
  }
  if (options_.on_health_change) options_.on_health_change(st);
  for (Request& r : rest) r.done(st);
}

absl::StatusOr<std::string> RocksDbLedger::Link(
    const AppendEntry& e, const std::map<std::string, uint64_t>& filed_here) const {
  std::vector<uint64_t> previous;
  previous.reserve(e.chain_keys.size());
  for (const std::string& k : e.chain_keys) {
    if (auto it = filed_here.find(k); it != filed_here.end()) {
      previous.push_back(it->second);
      continue;
    }
    // The committed entries only: the group being committed is not in the head yet.
    auto newest = Lookup(k, kFromNewest, 1);
    if (!newest.ok()) return newest.status();
    previous.push_back(newest->empty() ? kNoPrevious : newest->front());
  }
  return e.link(previous);
}

void RocksDbLedger::CommitGroup(std::vector<Request>& group) {
  uint64_t size;
  {
    absl::MutexLock lock(&mu_);
    if (!broken_.ok()) {
      const absl::Status st = broken_;
      for (Request& r : group) r.done(st);
      return;
    }
    size = head_.size;
  }
  const uint64_t group_first = size;

  // Tiles touched by this group, copied so readers keep seeing the old ones.
  std::map<std::pair<int, uint64_t>, std::shared_ptr<Tile>> dirty;
  absl::Status tile_error;
  auto tile_for_write = [&](int level, uint64_t index) -> Tile* {
    auto key = std::make_pair(level, index);
    auto it = dirty.find(key);
    if (it != dirty.end()) return it->second.get();
    const uint32_t want = ExpectedTileWidth(level, index, group_first);
    std::shared_ptr<Tile> copy;
    if (want == 0) {
      copy = std::make_shared<Tile>();
    } else {
      auto existing = GetTile(level, index);
      // The cache may hold a copy read before the last commit: go to disk.
      if (existing.ok() && (*existing)->n != want) existing = ReadTile(level, index);
      if (existing.ok() && (*existing)->n != want) {
        existing = absl::DataLossError(absl::StrCat("tile ", level, "/", index, " holds ",
                                                    (*existing)->n, " hashes, expected ", want));
      }
      if (!existing.ok()) {
        tile_error = existing.status();
        return nullptr;
      }
      copy = std::make_shared<Tile>(**existing);
    }
    return (dirty[key] = std::move(copy)).get();
  };

  merkle::CompactRange edge = edge_;
  edge.set_on_node([&](int level, uint64_t index, const merkle::Hash& h) {
    const int tile_level = level / kTileHeight;
    const int row = level % kTileHeight;
    const uint64_t tile_index = index >> (kTileHeight - row);
    Tile* tile = tile_for_write(tile_level, tile_index);
    if (tile == nullptr) return;
    tile->rows[row].push_back(h);
    if (row == 0) tile->n = static_cast<uint32_t>(tile->rows[0].size());
  });

  rocksdb::WriteBatch batch;
  std::vector<uint64_t> first_index;
  first_index.reserve(group.size());
  absl::Status copy_error;
  // The newest entry of this group under each index key, for trail links.
  std::map<std::string, uint64_t> filed_here;
  for (Request& r : group) {
    first_index.push_back(size);
    for (AppendEntry& e : r.entries) {
      if (e.link) {
        auto linked = Link(e, filed_here);
        if (!linked.ok()) {
          copy_error.Update(linked.status());
        } else {
          e.data = *std::move(linked);
        }
      }
      for (const std::string& k : e.index_keys) filed_here[k] = size;
      const std::string key = Be64(size);
      batch.Put(entries_cf_, key, e.data);
      for (const std::string& k : e.index_keys) {
        std::string ik;
        ik.reserve(k.size() + 9);
        ik.append(k).push_back('\0');
        ik.append(key);
        batch.Put(index_cf_, ik, rocksdb::Slice());
      }
      edge.Push(merkle::HashLeaf(e.data));
      ++size;
    }
    if (r.change && copy_error.ok()) copy_error = spaces_.AddTo(*r.change, &batch);
  }
  absl::Status st = tile_error.ok() ? copy_error : tile_error;
  if (st.ok()) {
    for (const auto& [key, tile] : dirty) {
      batch.Put(tiles_cf_, TileKey(key.first, key.second), tile->Encode());
    }
    const int64_t micros = std::max(last_micros_, absl::ToUnixMicros(options_.clock()));
    const uint64_t stamp = static_cast<uint64_t>(std::max<int64_t>(micros, 0));
    batch.Put(times_cf_, std::string(1, kGroupPrefix) + Be64(group_first), Be64(stamp));
    batch.Put(times_cf_, std::string(1, kTimePrefix) + Be64(stamp) + Be64(group_first),
              rocksdb::Slice());

    Head next;
    next.size = size;
    next.root = edge.Root();
    auto signed_head = SignHead(options_, next.size, next.root);
    if (signed_head.ok()) {
      next.checkpoint = *std::move(signed_head);
    } else {
      st = absl::UnavailableError(
          absl::StrCat("signing the checkpoint: ", signed_head.status().message()));
    }
    batch.Put(state_cf_, kHeadKey, Be64(next.size) + merkle::ToBytes(next.root));
    batch.Put(state_cf_, kCheckpointKey, next.checkpoint);

    if (st.ok() && options_.before_commit) st = options_.before_commit();
    if (st.ok()) {
      rocksdb::WriteOptions wo;
      wo.sync = true;
      st = FromRocksStatus(db_->Write(wo, &batch), "committing a ledger group");
    }
    if (st.ok()) {
      edge.set_on_node(nullptr);
      edge_ = std::move(edge);
      last_micros_ = static_cast<int64_t>(stamp);
      {
        absl::MutexLock lock(&cache_mu_);
        for (auto& [key, tile] : dirty) {
          auto it = cache_.find(CacheKey(key.first, key.second));
          if (it != cache_.end()) it->second.first = tile;
        }
      }
      {
        absl::MutexLock lock(&mu_);
        head_ = std::move(next);
      }
      for (size_t i = 0; i < group.size(); ++i) group[i].done(first_index[i]);
      return;
    }
  }
  // Whether any of it reached the disk is unknown (or the tree could not be
  // extended): stop, loudly, until recovery has re-derived the state from
  // the disk (TryRecover). Readers never saw this group.
  const absl::Status refused = absl::UnavailableError(
      absl::StrCat("the ledger could not commit and refuses writes until it recovers (retrying): ",
                   st.message()));
  FailQueued(refused);
  for (Request& r : group) r.done(refused);
}

absl::StatusOr<std::shared_ptr<const RocksDbLedger::Tile>> RocksDbLedger::ReadTile(
    int level, uint64_t index) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), tiles_cf_, TileKey(level, index), &value);
  if (s.IsNotFound()) {
    return absl::NotFoundError(absl::StrCat("tile ", level, "/", index, " is not stored"));
  }
  if (!s.ok()) return FromRocksStatus(s, "reading a tile");
  auto tile = Tile::Decode(value);
  if (!tile.ok()) {
    return absl::DataLossError(
        absl::StrCat("tile ", level, "/", index, ": ", tile.status().message()));
  }
  return std::make_shared<const Tile>(*std::move(tile));
}

absl::StatusOr<std::shared_ptr<const RocksDbLedger::Tile>> RocksDbLedger::GetTile(
    int level, uint64_t index) const {
  const uint64_t ck = CacheKey(level, index);
  {
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(ck);
    if (it != cache_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second.second);
      return it->second.first;
    }
  }
  auto tile = ReadTile(level, index);
  if (!tile.ok()) return tile;
  absl::MutexLock lock(&cache_mu_);
  auto it = cache_.find(ck);
  if (it != cache_.end()) return it->second.first;  // loaded meanwhile
  lru_.push_front(ck);
  cache_[ck] = {*tile, lru_.begin()};
  while (cache_.size() > options_.tile_cache_tiles) {
    cache_.erase(lru_.back());
    lru_.pop_back();
  }
  return tile;
}

absl::StatusOr<merkle::Hash> RocksDbLedger::SubtreeHash(int level, uint64_t index) const {
  if (level < 0 || level >= 64) return absl::InvalidArgumentError("no such tree level");
  const uint64_t size = head().size;
  if (index >= (size >> level)) {
    return absl::OutOfRangeError(absl::StrCat("the subtree at level ", level, ", index ", index,
                                              " is not complete in the tree of size ", size));
  }
  return StoredNode(level, index);
}

absl::StatusOr<merkle::Hash> RocksDbLedger::StoredNode(int level, uint64_t index) const {
  if (level < 0 || level >= 64) return absl::InvalidArgumentError("no such tree level");
  const int tile_level = level / kTileHeight;
  const int row = level % kTileHeight;
  const uint64_t tile_index = index >> (kTileHeight - row);
  const uint64_t pos = index & ((uint64_t{1} << (kTileHeight - row)) - 1);
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto tile = attempt == 0 ? GetTile(tile_level, tile_index) : ReadTile(tile_level, tile_index);
    if (!tile.ok()) {
      if (absl::IsNotFound(tile.status())) break;
      return tile.status();
    }
    if (pos < (*tile)->rows[row].size()) return (*tile)->rows[row][pos];
    // A partial tile cached before a later commit: drop it, read from disk.
    absl::MutexLock lock(&cache_mu_);
    auto it = cache_.find(CacheKey(tile_level, tile_index));
    if (it != cache_.end()) {
      lru_.erase(it->second.second);
      cache_.erase(it);
    }
  }
  return absl::DataLossError(absl::StrCat("the subtree hash at level ", level, ", index ", index,
                                          " is missing from tile ", tile_level, "/", tile_index));
}

absl::StatusOr<std::string> RocksDbLedger::Entry(uint64_t index) const {
  const uint64_t size = head().size;
  if (index >= size) {
    return absl::OutOfRangeError(
        absl::StrCat("entry ", index, " does not exist (the ledger has ", size, ")"));
  }
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), entries_cf_, Be64(index), &value);
  if (s.IsNotFound()) return absl::DataLossError(absl::StrCat("entry ", index, " is missing"));
  if (!s.ok()) return FromRocksStatus(s, "reading an entry");
  return value;
}

absl::StatusOr<std::vector<std::string>> RocksDbLedger::Entries(uint64_t begin,
                                                                uint64_t end) const {
  const uint64_t size = head().size;
  if (begin > end || end > size) {
    return absl::OutOfRangeError(absl::StrCat("range [", begin, ", ", end,
                                              ") is not within the ledger's ", size, " entries"));
  }
  std::vector<std::string> out;
  out.reserve(end - begin);
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), entries_cf_));
  uint64_t expect = begin;
  if (begin < end) it->Seek(Be64(begin));
  for (; expect < end; it->Next(), ++expect) {
    if (!it->Valid() || it->key().size() != 8 || ReadBe64(it->key().data()) != expect) {
      if (!it->status().ok()) return FromRocksStatus(it->status(), "reading entries");
      return absl::DataLossError(absl::StrCat("entry ", expect, " is missing"));
    }
    out.push_back(it->value().ToString());
  }
  return out;
}

absl::StatusOr<absl::Time> RocksDbLedger::EntryTime(uint64_t index) const {
  const uint64_t size = head().size;
  if (index >= size) {
    return absl::OutOfRangeError(
        absl::StrCat("entry ", index, " does not exist (the ledger has ", size, ")"));
  }
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), times_cf_));
  it->SeekForPrev(std::string(1, kGroupPrefix) + Be64(index));
  if (!it->Valid() || it->key().size() != 9 || it->key()[0] != kGroupPrefix ||
      it->value().size() != 8) {
    if (!it->status().ok()) return FromRocksStatus(it->status(), "reading entry times");
    return absl::DataLossError(absl::StrCat("no commit time is stored for entry ", index));
  }
  return absl::FromUnixMicros(static_cast<int64_t>(ReadBe64(it->value().data())));
}

absl::StatusOr<uint64_t> RocksDbLedger::FirstIndexAtOrAfter(absl::Time t) const {
  const uint64_t size = head().size;
  const int64_t micros = std::max<int64_t>(0, absl::ToUnixMicros(t));
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), times_cf_));
  it->Seek(std::string(1, kTimePrefix) + Be64(static_cast<uint64_t>(micros)));
  if (!it->Valid()) {
    if (!it->status().ok()) return FromRocksStatus(it->status(), "reading entry times");
    return size;
  }
  if (it->key().size() != 17 || it->key()[0] != kTimePrefix) {
    return absl::DataLossError("malformed key in the ledger's time index");
  }
  return std::min(size, ReadBe64(it->key().data() + 9));
}

absl::StatusOr<std::vector<uint64_t>> RocksDbLedger::Lookup(absl::string_view index_key,
                                                            uint64_t before, size_t limit) const {
  const uint64_t size = head().size;
  if (before > size) before = size;  // also hides entries of a group being committed
  std::vector<uint64_t> out;
  if (before == 0 || limit == 0) return out;
  std::string prefix(index_key);
  prefix.push_back('\0');
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), index_cf_));
  for (it->SeekForPrev(prefix + Be64(before - 1)); it->Valid() && out.size() < limit; it->Prev()) {
    const rocksdb::Slice k = it->key();
    if (k.size() != prefix.size() + 8 || !k.starts_with(prefix)) break;
    out.push_back(ReadBe64(k.data() + prefix.size()));
  }
  if (!it->status().ok()) return FromRocksStatus(it->status(), "reading the ledger index");
  return out;
}

absl::Status RocksDbLedger::Verify(bool quiescent) const {
  const Head h = head();
  // Reads tiles in order straight from disk, one current tile per level, so
  // memory stays flat and the cache is left alone.
  std::map<int, std::pair<uint64_t, std::shared_ptr<const Tile>>> current;
  merkle::CompactRange range;
  absl::Status mismatch;
  range.set_on_node([&](int level, uint64_t index, const merkle::Hash& computed) {
    if (!mismatch.ok()) return;
    const int tile_level = level / kTileHeight;
    const int row = level % kTileHeight;
    const uint64_t tile_index = index >> (kTileHeight - row);
    const uint64_t pos = index & ((uint64_t{1} << (kTileHeight - row)) - 1);
    auto& slot = current[tile_level];
    if (!slot.second || slot.first != tile_index) {
      auto tile = ReadTile(tile_level, tile_index);
      if (!tile.ok()) {
        mismatch =
            absl::DataLossError(absl::StrCat("the subtree hash at level ", level, ", index ", index,
                                             " is unreadable: ", tile.status().message()));
        return;
      }
      slot = {tile_index, *tile};
    }
    if (pos >= slot.second->rows[row].size()) {
      mismatch = absl::DataLossError(
          absl::StrCat("the subtree hash at level ", level, ", index ", index, " is missing"));
    } else if (slot.second->rows[row][pos] != computed) {
      mismatch = absl::DataLossError(
          level == 0 ? absl::StrCat("entry ", index, " does not match its stored leaf hash")
                     : absl::StrCat("the stored subtree hash at level ", level, ", index ", index,
                                    " does not match the entries below it"));
    }
  });
  // Two stages, one per core: a reader thread walks the entries in order
  // (RocksDB iteration is the larger cost); this thread hashes them, builds
  // the tree and compares every node. A bounded queue keeps memory flat.
  struct Batch {
    std::string bytes;         // the entries, concatenated
    std::vector<size_t> ends;  // where each entry ends in `bytes`
  };
  constexpr size_t kBatch = 4096, kMaxQueued = 8;
  absl::Mutex qmu;
  std::deque<Batch> queue;     // guarded by qmu
  bool reader_done = false;    // guarded by qmu
  bool stop_reader = false;    // guarded by qmu
  absl::Status reader_status;  // written by the reader before reader_done
  std::thread reader([&] {
    rocksdb::ReadOptions ro;
    ro.readahead_size = 4 << 20;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, entries_cf_));
    uint64_t expect = 0;
    Batch batch;
    batch.ends.reserve(kBatch);
    auto flush = [&]() -> bool {
      absl::MutexLock lock(&qmu);
      auto room = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return queue.size() < kMaxQueued || stop_reader;
      };
      qmu.Await(absl::Condition(&room));
      if (stop_reader) return false;
      queue.push_back(std::move(batch));
      batch = Batch();
      batch.ends.reserve(kBatch);
      return true;
    };
    for (it->SeekToFirst(); it->Valid() && expect < h.size; it->Next(), ++expect) {
      const uint64_t got = it->key().size() == 8 ? ReadBe64(it->key().data()) : ~uint64_t{0};
      if (got != expect) {
        reader_status = absl::DataLossError(absl::StrCat("entry ", expect,
                                                         " is missing or out of order (found key ",
                                                         it->key().ToString(true), ")"));
        break;
      }
      batch.bytes.append(it->value().data(), it->value().size());
      batch.ends.push_back(batch.bytes.size());
      if (batch.ends.size() == kBatch && !flush()) break;
    }
    if (reader_status.ok()) {
      if (!it->status().ok()) {
        reader_status = FromRocksStatus(it->status(), "reading entries");
      } else if (expect != h.size) {
        reader_status = absl::DataLossError(absl::StrCat("entry ", expect, " is missing"));
      } else if (quiescent && it->Valid()) {
        reader_status = absl::DataLossError(
            absl::StrCat("an entry exists beyond the tree head (size ", h.size, ")"));
      }
    }
    if (!batch.ends.empty()) flush();
    absl::MutexLock lock(&qmu);
    reader_done = true;
  });
  while (mismatch.ok()) {
    Batch batch;
    {
      absl::MutexLock lock(&qmu);
      auto have = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !queue.empty() || reader_done; };
      qmu.Await(absl::Condition(&have));
      if (queue.empty()) break;  // reader done and drained
      batch = std::move(queue.front());
      queue.pop_front();
    }
    size_t begin = 0;
    const absl::string_view bytes = batch.bytes;
    for (size_t end : batch.ends) {
      range.Push(merkle::HashLeaf(bytes.substr(begin, end - begin)));
      begin = end;
      if (!mismatch.ok()) break;
    }
  }
  {
    absl::MutexLock lock(&qmu);
    stop_reader = true;
  }
  reader.join();
  // Leaves before a reader error were all checked: report the earliest fault.
  if (!mismatch.ok()) return mismatch;
  if (!reader_status.ok()) return reader_status;
  if (h.size == 0) return absl::OkStatus();
  auto cp = OpenStoredCheckpoint(options_, h.checkpoint);
  if (!cp.ok()) {
    return absl::DataLossError(
        absl::StrCat("the latest checkpoint does not verify: ", cp.status().message()));
  }
  if (range.Root() != cp->root || range.size() != cp->size) {
    return absl::DataLossError(absl::StrCat("the root recomputed from the entries (size ",
                                            range.size(), ", root ", HashName(range.Root()),
                                            ") does not match the signed checkpoint (size ",
                                            cp->size, ", root ", HashName(cp->root), ")"));
  }
  return absl::OkStatus();
}

LedgerDb::~LedgerDb() {
  if (!db) return;
  for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
  db->Close();
}

rocksdb::Options LedgerDbOptions::DefaultOptions() {
  rocksdb::Options options;
  options.db_write_buffer_size = 64 << 20;
  return options;
}

absl::StatusOr<std::unique_ptr<LedgerDb>> OpenLedgerDb(const std::string& path,
                                                       LedgerDbOptions options) {
  rocksdb::Options& o = options.options;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  o.listeners.push_back(NewManualRecoveryListener());

  std::set<std::string> names = {rocksdb::kDefaultColumnFamilyName};
  for (const std::string& n : LedgerColumnFamilyNames()) names.insert(n);
  names.insert(options.families.begin(), options.families.end());
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(o, path, &existing).ok()) {
    names.insert(existing.begin(), existing.end());
  }
  const std::vector<std::string> own = LedgerColumnFamilyNames();
  std::vector<rocksdb::ColumnFamilyDescriptor> descriptors;
  for (const std::string& n : names) {
    if (std::find(own.begin(), own.end(), n) != own.end()) {
      descriptors.emplace_back(n, LedgerColumnFamilyOptions(n));
    } else if (options.family_options) {
      descriptors.emplace_back(n, options.family_options(n));
    } else {
      descriptors.emplace_back(n, rocksdb::ColumnFamilyOptions(o));
    }
  }
  auto out = std::make_unique<LedgerDb>();
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s =
      rocksdb::DB::Open(rocksdb::DBOptions(o), path, descriptors, &out->handles, &raw);
  if (!s.ok()) return FromRocksStatus(s, absl::StrCat("opening the database in ", path));
  out->db.reset(WithTsanVisibleWrites(raw));
  for (size_t i = 0; i < descriptors.size(); ++i) {
    out->families[descriptors[i].name] = out->handles[i];
  }
  return out;
}

}  // namespace corridor::ledger
