// RFC 9162 Merkle math against the published vectors (RFC 6962 tree vectors,
// all 196 transparency-dev inclusion/consistency vectors) and property tests
// against trees recomputed from scratch.
#include "ledger/merkle.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "tests/testing/status_matchers.h"

namespace corridor::merkle {
namespace {

const std::string kData = std::string(CORRIDOR_SOURCE_DIR) + "/tests/data";

Hash FromHex(absl::string_view hex) { return *FromBytes(*HexDecode(hex)); }

// The reference: MTH straight from RFC 9162's definition.
Hash RefMth(const std::vector<Hash>& leaves, uint64_t lo, uint64_t hi) {
  if (hi == lo) return EmptyRoot();
  if (hi - lo == 1) return leaves[lo];
  uint64_t k = 1;
  while (k * 2 < hi - lo) k *= 2;
  return HashChildren(RefMth(leaves, lo, lo + k), RefMth(leaves, lo + k, hi));
}

// All complete subtree hashes of a tree, as a NodeSource.
class MemoryTree {
 public:
  explicit MemoryTree(const std::vector<Hash>& leaves) {
    CompactRange range;
    range.set_on_node([this](int level, uint64_t index, const Hash& h) {
      nodes_[{level, index}] = h;
    });
    for (const Hash& l : leaves) range.Push(l);
  }
  NodeSource Source() const {
    return [this](int level, uint64_t index) -> absl::StatusOr<Hash> {
      auto it = nodes_.find({level, index});
      if (it == nodes_.end()) return absl::NotFoundError("no such node");
      return it->second;
    };
  }
  const std::map<std::pair<int, uint64_t>, Hash>& nodes() const { return nodes_; }

 private:
  std::map<std::pair<int, uint64_t>, Hash> nodes_;
};

std::vector<Hash> RandomLeaves(size_t n, std::mt19937_64& rng) {
  std::vector<Hash> leaves;
  for (size_t i = 0; i < n; ++i) leaves.push_back(HashLeaf(std::to_string(rng())));
  return leaves;
}

TEST(Merkle, Rfc6962TreeVectors) {
  std::ifstream in(kData + "/rfc6962_tree_vectors.txt");
  ASSERT_TRUE(in) << "missing test data";
  std::vector<Hash> leaves;
  std::map<std::pair<int, uint64_t>, Hash> want_nodes;
  std::map<uint64_t, Hash> want_roots;
  std::string line;
  int checked = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (f.empty() || f[0][0] == '#') continue;
    if (f[0] == "leaf_input") {
      leaves.push_back(HashLeaf(f[2] == "-" ? "" : *HexDecode(f[2])));
    } else if (f[0] == "node") {
      want_nodes[{std::stoi(f[1]), std::stoull(f[2])}] = FromHex(f[3]);
    } else if (f[0] == "root") {
      want_roots[std::stoull(f[1])] = FromHex(f[2]);
    } else if (f[0] == "empty_root") {
      EXPECT_EQ(EmptyRoot(), FromHex(f[1]));
      ++checked;
    } else if (f[0] == "leaf(\"\")") {
      EXPECT_EQ(HashLeaf(""), FromHex(f[1]));
      ++checked;
    } else if (f[0] == "leaf(\"L123456\")") {
      EXPECT_EQ(HashLeaf("L123456"), FromHex(f[1]));
      ++checked;
    } else if (f[0] == "node(\"N123\",\"N456\")") {
      // node() over raw 4-byte strings: build the preimage by hand.
      std::string pre = std::string("\x01", 1) + "N123" + "N456";
      EXPECT_EQ(Sha256(pre), FromHex(f[1]));
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4);
  ASSERT_EQ(leaves.size(), 8u);
  MemoryTree tree(leaves);
  for (const auto& [key, hash] : want_nodes) {
    EXPECT_EQ(tree.nodes().at(key), hash) << "node " << key.first << " " << key.second;
  }
  ASSERT_EQ(want_roots.size(), 9u);
  for (const auto& [size, root] : want_roots) {
    std::vector<Hash> prefix(leaves.begin(), leaves.begin() + size);
    MemoryTree t(prefix);
    ASSERT_OK_AND_ASSIGN(Hash got, RootAt(size, t.Source()));
    EXPECT_EQ(got, root) << "size " << size;
  }
}

// Just enough JSON for the transparency-dev vector files (flat objects).
class Json {
 public:
  explicit Json(std::string text) : text_(std::move(text)) {}
  std::string Raw(const std::string& key) const {
    size_t p = text_.find("\"" + key + "\"");
    if (p == std::string::npos) return "";
    p = text_.find(':', p) + 1;
    while (isspace(static_cast<unsigned char>(text_[p]))) ++p;
    size_t e = p;
    if (text_[p] == '[') {
      e = text_.find(']', p) + 1;
    } else if (text_[p] == '"') {
      e = text_.find('"', p + 1) + 1;
    } else {
      while (e < text_.size() && text_[e] != ',' && text_[e] != '\n' && text_[e] != '}') ++e;
    }
    return text_.substr(p, e - p);
  }
  uint64_t U64(const std::string& key) const { return std::stoull(Raw(key)); }
  bool Bool(const std::string& key) const { return Raw(key) == "true"; }
  // Bytes of a base64 string value ("" for null or absent).
  std::string Bytes(const std::string& key) const {
    std::string r = Raw(key);
    if (r.size() < 2 || r[0] != '"') return "";
    auto b = Base64Decode(r.substr(1, r.size() - 2));
    return b.ok() ? *b : "<invalid>";
  }
  std::vector<std::string> List(const std::string& key) const {
    std::vector<std::string> out;
    std::string r = Raw(key);
    if (r.empty() || r[0] != '[') return out;
    for (absl::string_view item :
         absl::StrSplit(r.substr(1, r.size() - 2), ',', absl::SkipWhitespace())) {
      item = absl::StripAsciiWhitespace(item);
      out.push_back(*Base64Decode(item.substr(1, item.size() - 2)));
    }
    return out;
  }

 private:
  std::string text_;
};

// A hash of whatever length the vector gives; wrong lengths cannot verify.
absl::StatusOr<Hash> AnyHash(const std::string& bytes) { return FromBytes(bytes); }

std::vector<std::filesystem::path> VectorFiles(const std::string& kind) {
  std::vector<std::filesystem::path> files;
  for (const auto& e : std::filesystem::recursive_directory_iterator(
           kData + "/transparency-dev-merkle/testdata/" + kind)) {
    if (e.path().extension() == ".json") files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string Slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status RunInclusionVector(const Json& j) {
  auto leaf = AnyHash(j.Bytes("leafHash"));
  auto root = AnyHash(j.Bytes("root"));
  if (!leaf.ok()) return leaf.status();
  if (!root.ok()) return root.status();
  std::vector<Hash> proof;
  for (const std::string& p : j.List("proof")) {
    auto h = AnyHash(p);
    if (!h.ok()) return h.status();
    proof.push_back(*h);
  }
  return VerifyInclusion(j.U64("leafIdx"), j.U64("treeSize"), *leaf, proof, *root);
}

absl::Status RunConsistencyVector(const Json& j) {
  // Between equal sizes only root equality and an empty proof matter; these
  // vectors use placeholder roots that are not hashes.
  if (j.U64("size1") == j.U64("size2") && j.Bytes("root1").size() != 32) {
    if (j.U64("size1") == 0) return absl::InvalidArgumentError("no proof from the empty tree");
    if (!j.List("proof").empty()) return absl::InvalidArgumentError("proof must be empty");
    if (j.Bytes("root1") != j.Bytes("root2")) return absl::FailedPreconditionError("roots differ");
    return absl::OkStatus();
  }
  auto r1 = AnyHash(j.Bytes("root1"));
  auto r2 = AnyHash(j.Bytes("root2"));
  if (!r1.ok()) return r1.status();
  if (!r2.ok()) return r2.status();
  std::vector<Hash> proof;
  for (const std::string& p : j.List("proof")) {
    auto h = AnyHash(p);
    if (!h.ok()) return h.status();
    proof.push_back(*h);
  }
  return VerifyConsistency(j.U64("size1"), j.U64("size2"), *r1, *r2, proof);
}

TEST(Merkle, TransparencyDevVectors) {
  int total = 0, rejected = 0;
  for (const auto& kind : {"inclusion", "consistency"}) {
    for (const auto& file : VectorFiles(kind)) {
      Json j(Slurp(file));
      const bool want_err = j.Bool("wantErr");
      absl::Status st =
          std::string(kind) == "inclusion" ? RunInclusionVector(j) : RunConsistencyVector(j);
      EXPECT_EQ(st.ok(), !want_err) << file << ": " << st;
      ++total;
      rejected += want_err;
    }
  }
  EXPECT_EQ(total, 196);
  EXPECT_GT(rejected, 150);  // the mutated proofs
}

TEST(Merkle, ProofsMatchTreesRecomputedFromScratch) {
  std::mt19937_64 rng(20261122);
  std::vector<uint64_t> sizes = {1,   2,   3,   4,   5,   7,   8,    9,    15,
                                 16,  17,  31,  33,  63,  64,  65,   100,  127,
                                 128, 129, 255, 256, 257, 511, 1000, 1023, 1025};
  for (int i = 0; i < 6; ++i) sizes.push_back(1 + rng() % 3000);
  for (uint64_t n : sizes) {
    SCOPED_TRACE(n);
    std::vector<Hash> leaves = RandomLeaves(n, rng);
    MemoryTree tree(leaves);
    const Hash root = RefMth(leaves, 0, n);
    ASSERT_OK_AND_ASSIGN(Hash got_root, RootAt(n, tree.Source()));
    ASSERT_EQ(got_root, root);
    // Inclusion: every index for small trees, a sample for large ones.
    for (uint64_t k = 0; k < std::min<uint64_t>(n, 64); ++k) {
      const uint64_t i = n <= 64 ? k : rng() % n;
      ASSERT_OK_AND_ASSIGN(std::vector<Hash> proof, InclusionProof(i, n, tree.Source()));
      ASSERT_OK(VerifyInclusion(i, n, leaves[i], proof, root));
      // A flipped bit anywhere fails.
      Hash bad_leaf = leaves[i];
      bad_leaf[rng() % 32] ^= uint8_t(1) << (rng() % 8);
      EXPECT_FALSE(VerifyInclusion(i, n, bad_leaf, proof, root).ok());
      Hash bad_root = root;
      bad_root[rng() % 32] ^= uint8_t(1) << (rng() % 8);
      EXPECT_FALSE(VerifyInclusion(i, n, leaves[i], proof, bad_root).ok());
      if (!proof.empty()) {
        std::vector<Hash> bad = proof;
        bad[rng() % bad.size()][rng() % 32] ^= uint8_t(1) << (rng() % 8);
        EXPECT_FALSE(VerifyInclusion(i, n, leaves[i], bad, root).ok());
      }
      if (n > 1) {
        EXPECT_FALSE(VerifyInclusion((i + 1) % n, n, leaves[i], proof, root).ok());
      }
    }
    // Consistency from a sample of older sizes.
    for (int k = 0; k < 24; ++k) {
      const uint64_t m = 1 + rng() % n;
      const Hash old_root = RefMth(leaves, 0, m);
      ASSERT_OK_AND_ASSIGN(std::vector<Hash> proof, ConsistencyProof(m, n, tree.Source()));
      ASSERT_OK(VerifyConsistency(m, n, old_root, root, proof));
      if (!proof.empty()) {
        std::vector<Hash> bad = proof;
        bad[rng() % bad.size()][rng() % 32] ^= uint8_t(1) << (rng() % 8);
        EXPECT_FALSE(VerifyConsistency(m, n, old_root, root, bad).ok());
      }
      Hash bad_old = old_root;
      bad_old[rng() % 32] ^= 1;
      if (m < n) {
        EXPECT_FALSE(VerifyConsistency(m, n, bad_old, root, proof).ok());
      }
    }
  }
}

TEST(Merkle, ProofRequestsOutsideTheTreeAreRefused) {
  std::mt19937_64 rng(1);
  MemoryTree tree(RandomLeaves(5, rng));
  EXPECT_STATUS(InclusionProof(5, 5, tree.Source()), absl::StatusCode::kInvalidArgument,
                "not in a tree");
  EXPECT_STATUS(ConsistencyProof(0, 5, tree.Source()), absl::StatusCode::kInvalidArgument,
                "0 < old size");
  EXPECT_STATUS(ConsistencyProof(6, 5, tree.Source()), absl::StatusCode::kInvalidArgument,
                "0 < old size");
}

}  // namespace
}  // namespace corridor::merkle
