// libFuzzer target: envelope verification and parsing (server/federation/envelope.cc),
// the code that reads bytes from other nodes before anything else does.
// Three views of each input: (a) as a whole Envelope, (b) as the payload of a
// correctly signed envelope — so the checks after the signature get fuzzed —
// and (c) as a Receipt. Invariants abort on violation.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/time/time.h"
#include "google/protobuf/stubs/logging.h"
#include "ledger/crypto/dsse.h"
#include "server/federation/envelope.h"

namespace {

using namespace corridor;  // NOLINT: fuzz harness

struct World {
  Ed25519PrivateKey union_key = *Ed25519PrivateKey::FromSeed(std::string(32, '\x01'));
  Ed25519PrivateKey ministry_key = *Ed25519PrivateKey::FromSeed(std::string(32, '\x02'));
  v1::Roster roster;
  absl::Time now = absl::FromUnixSeconds(1800000000);

  World() {
    // Malformed UTF-8 in string fields is expected here; keep the output readable.
    google::protobuf::SetLogHandler(
        [](google::protobuf::LogLevel, const char*, int, const std::string&) {});
    roster.set_federation("fuzz");
    roster.set_version(1);
    for (auto [org, key] :
         {std::pair<const char*, const Ed25519PrivateKey*>{"union-sg", &union_key},
          {"ministry-id", &ministry_key}}) {
      v1::Member* m = roster.add_members();
      m->set_org(org);
      v1::SigningKey* k = m->add_signing_keys();
      k->set_key_id(std::string(org) + "-1");
      k->set_public_key(Base64Encode(key->public_key().raw()));
      k->set_status(v1::KEY_STATUS_ACTIVE);
    }
    v1::Agreement* a = roster.add_agreements();
    a->set_id("a1");
    a->add_parties("union-sg");
    a->add_parties("ministry-id");
    a->add_purposes("p");
  }
  EnvelopeContext Context() const { return {"union-sg", "ministry-id", &roster, now, 1 << 16}; }
};

const World& TheWorld() {
  static const World* w = new World;
  return *w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const World& w = TheWorld();
  const std::string bytes(reinterpret_cast<const char*>(data), size);

  // (a) The input as an envelope off the wire.
  v1::Envelope env;
  if (env.ParseFromString(bytes)) {
    auto payload = VerifyEnvelope(env, w.Context());
    if (payload.ok()) {
      // Only union-sg's key can have signed it.
      const std::string pae = DssePae(env.payload_type(), env.payload());
      if (env.signatures_size() != 1 ||
          !w.union_key.public_key().Verify(pae, env.signatures(0).sig()))
        abort();
    }
  }

  // (b) The input as the payload of a correctly signed envelope.
  v1::Envelope signed_env;
  signed_env.set_payload_type(kEnvelopePayloadType);
  signed_env.set_payload(bytes);
  v1::EnvelopeSignature* sig = signed_env.add_signatures();
  sig->set_keyid("union-sg-1");
  sig->set_sig(w.union_key.Sign(DssePae(kEnvelopePayloadType, bytes)));
  auto payload = VerifyEnvelope(signed_env, w.Context());
  if (payload.ok()) {
    if (payload->sender_org() != "union-sg" || payload->recipient_org() != "ministry-id" ||
        payload->key_id() != "union-sg-1" || payload->agreement() != "a1" ||
        payload->purpose() != "p" || absl::FromUnixSeconds(payload->expires_unix()) < w.now) {
      abort();
    }
  }

  // (c) The input as a receipt for that envelope.
  v1::Receipt receipt;
  if (receipt.ParseFromString(bytes)) {
    auto body = VerifyReceipt(receipt, signed_env, "ministry-id", w.roster);
    if (body.ok() && body->receiver_org() != "ministry-id") abort();
  }
  return 0;
}
