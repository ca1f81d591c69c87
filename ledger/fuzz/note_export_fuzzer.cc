// libFuzzer target for everything in the ledger that parses untrusted bytes:
// signed notes, checkpoints, verifier keys, exports and proof verification.
// Built with -DCORRIDOR_FUZZ=ON (clang); ctest runs it for a bounded time.
//
// The first input byte picks the parser. With CORRIDOR_FUZZ_SEED_DIR set, a
// valid export signed by the fixed key below is written there first, so the
// fuzzer starts past the signature check.
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

#include "ledger/export.h"
#include "ledger/merkle.h"
#include "ledger/note.h"
#include "ledger/testing/memory_ledger.h"

namespace {

const corridor::Ed25519PrivateKey& Key() {
  static const auto* key =
      new corridor::Ed25519PrivateKey(*corridor::Ed25519PrivateKey::FromSeed(std::string(32, 'k')));
  return *key;
}

const corridor::note::Verifier& TheVerifier() {
  static const auto* v =
      new corridor::note::Verifier{"fuzz.corridor.example/log", 0x01, Key().public_key()};
  return *v;
}

uint64_t ReadU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const char* dir = std::getenv("CORRIDOR_FUZZ_SEED_DIR");
  if (dir == nullptr) return 0;
  corridor::ledger::LedgerOptions o;
  o.origin = "fuzz.corridor.example/log";
  o.signing_key = &Key();
  auto l = corridor::ledger::MemoryLedger::Create(o);
  if (!l.ok()) return 0;
  for (int i = 0; i < 11; ++i) (void)(*l)->Append({{std::string(i, 'e'), {}}});
  auto file = (*l)->Export(3, 7);
  if (file.ok()) {
    std::ofstream(std::string(dir) + "/seed-export") << '\x02' << *file;
    std::ofstream(std::string(dir) + "/seed-note") << '\x00' << (*l)->head().checkpoint;
    std::ofstream(std::string(dir) + "/seed-vkey") << '\x01' << (*l)->verifier().ToString();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0] % 5;
  const std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (mode) {
    case 0: {
      auto n = corridor::note::ParseNote(text);
      if (n.ok()) {
        (void)corridor::note::VerifyNote(*n, TheVerifier());
        (void)corridor::note::FormatNote(*n);
        (void)corridor::note::VerifyCosignature(
            *n, corridor::note::Verifier{"w", 0x04, Key().public_key()});
      }
      (void)corridor::note::OpenCheckpoint(text, TheVerifier());
      break;
    }
    case 1: {
      // Whatever parses must round-trip (the hex key id may come in either case).
      auto v = corridor::note::ParseVerifier(text);
      if (v.ok()) {
        auto again = corridor::note::ParseVerifier(v->ToString());
        if (!again.ok() || again->name != v->name || again->type != v->type ||
            again->key.raw() != v->key.raw()) {
          std::abort();
        }
      }
      break;
    }
    case 2: {
      auto v = corridor::ledger::VerifyExport(text, TheVerifier());
      // Anything accepted must really be covered by a checkpoint we signed.
      if (v.ok() && v->checkpoint.origin != "fuzz.corridor.example/log") std::abort();
      break;
    }
    case 3:
      (void)corridor::note::ParseCheckpointBody(text);
      break;
    case 4: {
      // Proof verification on arbitrary sizes and hashes.
      if (size < 1 + 16 + 64) return 0;
      const uint8_t* p = data + 1;
      const uint64_t a = ReadU64(p), b = ReadU64(p + 8);
      corridor::merkle::Hash h1, h2;
      std::copy(p + 16, p + 48, h1.begin());
      std::copy(p + 48, p + 80, h2.begin());
      std::vector<corridor::merkle::Hash> proof;
      for (size_t off = 1 + 80; off + 32 <= size && proof.size() < 70; off += 32) {
        corridor::merkle::Hash h;
        std::copy(data + off, data + off + 32, h.begin());
        proof.push_back(h);
      }
      (void)corridor::merkle::VerifyInclusion(a, b, h1, proof, h2);
      (void)corridor::merkle::VerifyConsistency(a, b, h1, h2, proof);
      break;
    }
  }
  return 0;
}
