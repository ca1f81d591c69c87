#include "server/envelope.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "client/yaml_proto.h"
#include "ledger/dsse.h"

namespace corridor {
namespace {

constexpr char kReceiptContext[] = "corridor-receipt/v1\n";

const v1::Member* FindMember(const v1::Roster& roster, const std::string& org) {
  for (const auto& m : roster.members()) {
    if (m.org() == org) return &m;
  }
  return nullptr;
}

const v1::SigningKey* FindKey(const v1::Member& m, const std::string& key_id) {
  for (const auto& k : m.signing_keys()) {
    if (k.key_id() == key_id) return &k;
  }
  return nullptr;
}

absl::Time ParseOr(const std::string& s, absl::Time fallback) {
  absl::Time t;
  std::string err;
  return !s.empty() && absl::ParseTime(absl::RFC3339_full, s, &t, &err) ? t : fallback;
}

// Whether `key` could sign at `t`: not revoked, within its validity window.
absl::Status KeyUsableAt(const v1::SigningKey& key, absl::Time t) {
  if (key.status() == v1::KEY_STATUS_REVOKED) {
    return absl::PermissionDeniedError(
        absl::StrCat("signing key ", key.key_id(), " has been revoked"));
  }
  if (t < ParseOr(key.valid_from(), absl::InfinitePast()) ||
      t >= ParseOr(key.valid_until(), absl::InfiniteFuture())) {
    return absl::PermissionDeniedError(
        absl::StrCat("signing key ", key.key_id(), " was not valid when the envelope was created"));
  }
  if (key.status() != v1::KEY_STATUS_ACTIVE && key.status() != v1::KEY_STATUS_RETIRED) {
    return absl::PermissionDeniedError(
        absl::StrCat("signing key ", key.key_id(), " is not active"));
  }
  return absl::OkStatus();
}

}  // namespace

v1::Envelope SignEnvelope(const v1::EnvelopePayload& payload, const Ed25519PrivateKey& key) {
  v1::Envelope env;
  env.set_payload_type(kEnvelopePayloadType);
  env.set_payload(payload.SerializeAsString());
  auto* sig = env.add_signatures();
  sig->set_keyid(payload.key_id());
  sig->set_sig(key.Sign(DssePae(env.payload_type(), env.payload())));
  return env;
}

std::string EnvelopeDigest(const v1::Envelope& envelope) {
  return DigestBytes(Sha256(envelope.payload()));
}

absl::StatusOr<v1::EnvelopePayload> VerifyEnvelope(const v1::Envelope& env,
                                                   const EnvelopeContext& ctx) {
  if (env.payload_type() != kEnvelopePayloadType) {
    return absl::InvalidArgumentError(absl::StrCat(
        "envelope has payload type \"", env.payload_type(), "\", expected ", kEnvelopePayloadType));
  }
  if (env.payload().size() > ctx.max_payload_bytes) {
    return absl::InvalidArgumentError(absl::StrCat("envelope payload of ", env.payload().size(),
                                                   " bytes exceeds the limit of ",
                                                   ctx.max_payload_bytes));
  }
  const v1::Member* sender = FindMember(*ctx.roster, ctx.caller_org);
  if (sender == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat(ctx.caller_org, " is not a member"));
  }
  if (env.signatures_size() != 1) {
    return absl::InvalidArgumentError("an envelope carries exactly one signature");
  }
  const v1::EnvelopeSignature& sig = env.signatures(0);
  const v1::SigningKey* key = FindKey(*sender, sig.keyid());
  if (key == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("envelope is signed with key \"", sig.keyid(),
                                                    "\", which is not a key of ", ctx.caller_org));
  }
  auto raw = Base64Decode(key->public_key());
  auto pub =
      raw.ok() ? Ed25519PublicKey::FromRaw(*raw) : absl::StatusOr<Ed25519PublicKey>(raw.status());
  if (!pub.ok() || !pub->Verify(DssePae(env.payload_type(), env.payload()), sig.sig())) {
    return absl::PermissionDeniedError("envelope signature does not verify");
  }
  // Only now is the payload parsed.
  v1::EnvelopePayload payload;
  if (auto st = ParseProtoStrict(env.payload(), "envelope payload", &payload); !st.ok()) return st;
  if (payload.envelope_id().empty()) return absl::InvalidArgumentError("envelope has no id");
  if (payload.sender_org() != ctx.caller_org) {
    return absl::PermissionDeniedError(absl::StrCat("envelope claims sender ", payload.sender_org(),
                                                    " but was delivered by the node of ",
                                                    ctx.caller_org));
  }
  if (payload.key_id() != sig.keyid()) {
    return absl::PermissionDeniedError(
        "envelope names a different key than the one that signed it");
  }
  const absl::Time created = absl::FromUnixSeconds(payload.created_unix());
  if (auto st = KeyUsableAt(*key, created); !st.ok()) return st;
  if (payload.recipient_org() != ctx.self_org) {
    return absl::PermissionDeniedError(absl::StrCat(
        "envelope is addressed to ", payload.recipient_org(), ", this node is ", ctx.self_org));
  }
  if (created > ctx.now + kMaxClockSkew) {
    return absl::FailedPreconditionError(
        "envelope was created in the future (check the sender's clock)");
  }
  if (ctx.now > absl::FromUnixSeconds(payload.expires_unix())) {
    return absl::FailedPreconditionError(absl::StrCat(
        "envelope expired at ",
        absl::FormatTime(absl::RFC3339_sec, absl::FromUnixSeconds(payload.expires_unix()),
                         absl::UTCTimeZone())));
  }
  const v1::Agreement* agreement = nullptr;
  for (const auto& a : ctx.roster->agreements()) {
    if (a.id() == payload.agreement()) agreement = &a;
  }
  if (agreement == nullptr) {
    return absl::PermissionDeniedError(
        absl::StrCat("agreement \"", payload.agreement(), "\" is not in the roster"));
  }
  auto has = [](const auto& list, const std::string& v) {
    return std::find(list.begin(), list.end(), v) != list.end();
  };
  if (!has(agreement->parties(), payload.sender_org()) ||
      !has(agreement->parties(), payload.recipient_org())) {
    return absl::PermissionDeniedError(absl::StrCat("agreement ", agreement->id(),
                                                    " does not bind both ", payload.sender_org(),
                                                    " and ", payload.recipient_org()));
  }
  if (!has(agreement->purposes(), payload.purpose())) {
    return absl::PermissionDeniedError(absl::StrCat(
        "agreement ", agreement->id(), " does not cover the purpose \"", payload.purpose(), "\""));
  }
  if (payload.body_case() == v1::EnvelopePayload::BODY_NOT_SET) {
    return absl::InvalidArgumentError("envelope has no body");
  }
  return payload;
}

absl::StatusOr<std::string> VerifyOnwardPermission(absl::string_view serialized,
                                                   const std::string& holder_org,
                                                   const std::string& purpose,
                                                   const std::string& agreement,
                                                   const EnvelopeContext& ctx) {
  v1::Envelope env;
  if (auto st = ParseProtoStrict(serialized, "onward permission", &env); !st.ok()) return st;
  // Who claims to have signed it decides which roster key must have.
  v1::EnvelopePayload claimed;
  if (!claimed.ParseFromString(env.payload())) {
    return absl::InvalidArgumentError("onward permission is malformed");
  }
  EnvelopeContext c = ctx;
  c.caller_org = claimed.sender_org();
  c.self_org = holder_org;
  auto payload = VerifyEnvelope(env, c);
  if (!payload.ok()) {
    return absl::PermissionDeniedError(
        absl::StrCat("the cited onward permission does not hold: ", payload.status().message()));
  }
  if (!payload->has_permission())
    return absl::PermissionDeniedError("the cited envelope is not a permission");
  const v1::OnwardPermission& p = payload->permission();
  if (p.holder_org() != holder_org || p.permitted_org() != ctx.self_org || p.purpose() != purpose ||
      p.agreement() != agreement) {
    return absl::PermissionDeniedError(absl::StrCat(
        "the cited permission lets ", p.holder_org(), " share with ", p.permitted_org(), " for \"",
        p.purpose(), "\" under ", p.agreement(), ", not this referral"));
  }
  return payload->sender_org();
}

v1::Receipt SignReceipt(const v1::ReceiptBody& body, const std::string& key_id,
                        const Ed25519PrivateKey& key) {
  v1::Receipt r;
  r.set_body(body.SerializeAsString());
  r.set_key_id(key_id);
  r.set_signature(key.Sign(kReceiptContext + r.body()));
  return r;
}

absl::StatusOr<v1::ReceiptBody> VerifyReceipt(const v1::Receipt& receipt,
                                              const v1::Envelope& envelope,
                                              const std::string& receiver_org,
                                              const v1::Roster& roster) {
  const v1::Member* m = FindMember(roster, receiver_org);
  if (m == nullptr)
    return absl::PermissionDeniedError(absl::StrCat(receiver_org, " is not a member"));
  const v1::SigningKey* key = FindKey(*m, receipt.key_id());
  if (key == nullptr) return absl::PermissionDeniedError("receipt signed with an unknown key");
  auto raw = Base64Decode(key->public_key());
  auto pub =
      raw.ok() ? Ed25519PublicKey::FromRaw(*raw) : absl::StatusOr<Ed25519PublicKey>(raw.status());
  if (!pub.ok() || !pub->Verify(kReceiptContext + receipt.body(), receipt.signature())) {
    return absl::PermissionDeniedError("receipt signature does not verify");
  }
  v1::ReceiptBody body;
  if (auto st = ParseProtoStrict(receipt.body(), "receipt", &body); !st.ok()) return st;
  if (body.envelope_sha256() != EnvelopeDigest(envelope) || body.receiver_org() != receiver_org) {
    return absl::PermissionDeniedError("receipt is for another envelope or receiver");
  }
  return body;
}

}  // namespace corridor
