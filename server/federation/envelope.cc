#include "server/federation/envelope.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "client/lib/yaml_proto.h"
#include "ledger/crypto/dsse.h"
#include "server/common/edge.h"
#include "server/federation/evidence_policy.h"
#include "server/federation/referral_policy.h"

namespace corridor {
namespace {

constexpr char kReceiptContext[] = "corridor-receipt/v1\n";

absl::Time ParseOr(const std::string& s, absl::Time fallback) {
  absl::Time t;
  std::string err;
  return !s.empty() && absl::ParseTime(absl::RFC3339_full, s, &t, &err) ? t : fallback;
}

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

// Whether `key` may vouch for an envelope created at `created` and received at
// `now` (the receiver's clock): not revoked, active or retired, and inside its
// validity window at both times, so a backdated envelope does not revive a
// key whose time is over.
absl::Status KeyUsable(const v1::SigningKey& key, absl::Time created, absl::Time now) {
  if (key.status() == v1::KEY_STATUS_REVOKED) {
    return absl::PermissionDeniedError(
        absl::StrCat("signing key ", key.key_id(), " has been revoked"));
  }
  if (key.status() != v1::KEY_STATUS_ACTIVE && key.status() != v1::KEY_STATUS_RETIRED) {
    return absl::PermissionDeniedError(
        absl::StrCat("signing key ", key.key_id(), " is not active"));
  }
  const absl::Time from = ParseOr(key.valid_from(), absl::InfinitePast());
  const absl::Time until = ParseOr(key.valid_until(), absl::InfiniteFuture());
  if (now >= until) {
    return absl::PermissionDeniedError(absl::StrCat(
        "signing key ", key.key_id(), " stopped being valid at ", Rfc3339(until),
        " by this node's clock; envelopes signed with it are refused however they are dated"));
  }
  if (now < from) {
    return absl::PermissionDeniedError(absl::StrCat("signing key ", key.key_id(),
                                                    " is not valid before ", Rfc3339(from),
                                                    " by this node's clock"));
  }
  if (created < from || created >= until) {
    return absl::PermissionDeniedError(
        absl::StrCat("signing key ", key.key_id(), " was not valid when the envelope was created"));
  }
  return absl::OkStatus();
}

bool UserNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
}

// How a refused name is quoted in an error: printable, bounded.
std::string Quoted(absl::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 80)) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      constexpr char kHex[] = "0123456789abcdef";
      out += {'\\', 'x', kHex[u >> 4], kHex[u & 0xf]};
    } else {
      out.push_back(c);
    }
  }
  if (s.size() > 80) absl::StrAppend(&out, "…");
  return out + "\"";
}

}  // namespace

v1::Envelope SignEnvelope(const v1::EnvelopePayload& payload, const Ed25519PrivateKey& key) {
  return SignEnvelope(payload, static_cast<const Signer&>(key)).value();
}

absl::StatusOr<v1::Envelope> SignEnvelope(const v1::EnvelopePayload& payload, const Signer& key) {
  v1::Envelope env;
  env.set_payload_type(kEnvelopePayloadType);
  env.set_payload(payload.SerializeAsString());
  auto sig = key.Signature(DssePae(env.payload_type(), env.payload()));
  if (!sig.ok()) return sig.status();
  auto* s = env.add_signatures();
  s->set_keyid(payload.key_id());
  s->set_sig(*std::move(sig));
  return env;
}

v1::Envelope CanonicalEnvelope(const v1::Envelope& envelope) {
  v1::Envelope kept;
  kept.set_payload_type(envelope.payload_type());
  kept.set_payload(envelope.payload());
  for (const v1::EnvelopeSignature& sig : envelope.signatures()) {
    v1::EnvelopeSignature* k = kept.add_signatures();
    k->set_keyid(sig.keyid());
    k->set_sig(sig.sig());
  }
  return kept;
}

v1::Receipt CanonicalReceipt(const v1::Receipt& receipt) {
  v1::Receipt kept;
  kept.set_body(receipt.body());
  kept.set_key_id(receipt.key_id());
  kept.set_signature(receipt.signature());
  return kept;
}

std::string EnvelopeDigest(const v1::Envelope& envelope) {
  return DigestBytes(Sha256(envelope.payload()));
}

namespace {

// The envelope's one signature is by a roster key of the calling org and
// verifies over the payload as sent; returns that key. Nothing is parsed yet.
absl::StatusOr<const v1::SigningKey*> VerifySignedByCaller(const v1::Envelope& env,
                                                           const EnvelopeContext& ctx) {
  if (env.payload_type() != kEnvelopePayloadType) {
    return absl::InvalidArgumentError(
        absl::StrCat("envelope has another payload type (", env.payload_type().size(),
                     " bytes, not quoted here), expected ", kEnvelopePayloadType));
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
  return key;
}

// The envelope's address and times by the receiver's clock: its key was
// usable when it was created and still is; it is addressed to this node; it
// is not from the future, not expired, and declares a lifetime the receiver
// accepts.
absl::Status CheckAddressAndTimes(const v1::EnvelopePayload& payload, const v1::SigningKey& key,
                                  const EnvelopeContext& ctx) {
  const absl::Time created = absl::FromUnixSeconds(payload.created_unix());
  const absl::Time expires = absl::FromUnixSeconds(payload.expires_unix());
  if (auto st = KeyUsable(key, created, ctx.now); !st.ok()) return st;
  if (payload.recipient_org() != ctx.self_org) {
    return absl::PermissionDeniedError(absl::StrCat(
        "envelope is addressed to ", payload.recipient_org(), ", this node is ", ctx.self_org));
  }
  if (created > ctx.now + kMaxClockSkew) {
    return absl::FailedPreconditionError(
        "envelope was created in the future (check the sender's clock)");
  }
  if (ctx.now > expires) {
    return absl::FailedPreconditionError(absl::StrCat("envelope expired at ", Rfc3339(expires)));
  }
  // With the expiry check this also bounds the age: nothing created longer
  // than max_lifetime ago by this node's clock gets past both.
  const int64_t max_days = absl::ToInt64Hours(ctx.max_lifetime) / 24;
  if (expires - created > ctx.max_lifetime) {
    return absl::FailedPreconditionError(
        absl::StrCat("envelope declares a lifetime from ", Rfc3339(created), " to ",
                     Rfc3339(expires), ", longer than the ", max_days, " days this node accepts"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<v1::EnvelopePayload> VerifyEnvelope(const v1::Envelope& env,
                                                   const EnvelopeContext& ctx) {
  auto key = VerifySignedByCaller(env, ctx);
  if (!key.ok()) return key.status();
  // Only now is the payload parsed.
  v1::EnvelopePayload payload;
  if (auto st = ParseProtoStrict(env.payload(), "envelope payload", &payload); !st.ok()) return st;
  if (payload.envelope_id().empty()) return absl::InvalidArgumentError("envelope has no id");
  if (payload.sender_org() != ctx.caller_org) {
    return absl::PermissionDeniedError(absl::StrCat("envelope claims sender ", payload.sender_org(),
                                                    " but was delivered by the node of ",
                                                    ctx.caller_org));
  }
  if (payload.key_id() != env.signatures(0).keyid()) {
    return absl::PermissionDeniedError(
        "envelope names a different key than the one that signed it");
  }
  if (auto st = CheckAddressAndTimes(payload, **key, ctx); !st.ok()) return st;
  // The referral policy's agreement rule (server/federation/referral_policy.h).
  if (auto st = CheckAgreement(*ctx.roster, payload.agreement(), payload.sender_org(),
                               payload.recipient_org(), payload.purpose());
      !st.ok()) {
    return st;
  }
  if (payload.body_case() == v1::EnvelopePayload::BODY_NOT_SET) {
    return absl::InvalidArgumentError("envelope has no body");
  }
  if (auto st = VerifySpeaksForSender(payload, ctx); !st.ok()) return st;
  return payload;
}

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

bool IsPrincipalOf(absl::string_view name, absl::string_view org) {
  if (org.empty() || !absl::ConsumePrefix(&name, org) || !absl::ConsumePrefix(&name, "/")) {
    return false;
  }
  if (name == "node") return true;
  if (!absl::ConsumePrefix(&name, "user/") || name.empty() || name.size() > 128) return false;
  return std::all_of(name.begin(), name.end(), UserNameChar);
}

absl::Status VerifySpeaksForSender(const v1::EnvelopePayload& p, const EnvelopeContext& ctx) {
  const std::string& sender = p.sender_org();
  // The refusal names the field, never its value: it is the name of someone
  // (on the peer's staff, or typed by mistake) and the reason goes into a ledger
  // that cannot be erased. The peer knows what it sent.
  auto not_sender = [&](absl::string_view field) {
    return absl::PermissionDeniedError(
        absl::StrCat(field, " does not name a user or the node of ", sender,
                     ": a peer may only speak for its own people (\"", sender,
                     "/user/<name>\" or \"", sender, "/node\")"));
  };
  // Every body type is listed: a new one needs its rules here before any
  // node applies it (until then it is refused below).
  switch (p.body_case()) {
    case v1::EnvelopePayload::kReferral:
      for (int i = 0; i < p.referral().shared().evidence_size(); ++i) {
        const std::string& by = p.referral().shared().evidence(i).added_by();
        if (!by.empty() && !IsPrincipalOf(by, sender)) {
          return not_sender(absl::StrCat("referral.shared.evidence[", i, "].added_by"));
        }
      }
      return absl::OkStatus();
    case v1::EnvelopePayload::kDecision:
      return absl::OkStatus();  // names no one; finality is checked on the case
    case v1::EnvelopePayload::kUpdate:
      if (!IsPrincipalOf(p.update().author(), sender)) {
        return not_sender("update.author");
      }
      return absl::OkStatus();
    case v1::EnvelopePayload::kPermission: {
      const v1::OnwardPermission& perm = p.permission();
      if (perm.holder_org() != ctx.self_org) {
        return absl::PermissionDeniedError(
            absl::StrCat("permission.holder_org is ", Quoted(perm.holder_org()),
                         ": a permission must be addressed to its holder, ", ctx.self_org));
      }
      if (FindMember(*ctx.roster, perm.permitted_org()) == nullptr) {
        return absl::PermissionDeniedError(
            absl::StrCat("permission.permitted_org is ", Quoted(perm.permitted_org()),
                         ", which is not a member of the federation"));
      }
      return absl::OkStatus();
    }
    case v1::EnvelopePayload::kErasureRequest:   // the receiver acts only on a referral
    case v1::EnvelopePayload::kErasureOutcome:   // it received; the sender checks outcomes
      return absl::OkStatus();                   // against what it sent: ids only either way
    case v1::EnvelopePayload::kEvidenceRequest:  // the asker and approver are the sender's
      return ValidateEvidenceRequestBody(p.evidence_request(), sender);
    case v1::EnvelopePayload::kEvidenceDecision:
      return ValidateEvidenceDecisionBody(p.evidence_decision(), sender);
    case v1::EnvelopePayload::kAccessAttestation:
      return ValidateAccessAttestationBody(p.access_attestation(), sender);
    case v1::EnvelopePayload::BODY_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("this node has no rules for the envelope's body (field ",
                   static_cast<int>(p.body_case()), ") and does not apply it"));
}

absl::Status ValidateAccessAttestationBody(const v1::AccessAttestation& a,
                                           const std::string& sender) {
  // Names the field, never its value (the refusal is recorded).
  auto bad = [](absl::string_view field, absl::string_view rule) {
    return absl::InvalidArgumentError(
        absl::StrCat("access attestation: ", field, " must be ", rule));
  };
  for (const auto& [field, id] :
       {std::pair<absl::string_view, const std::string*>{"referral_id", &a.referral_id()},
        {"origin_case_id", &a.origin_case_id()},
        {"sender_case_id", &a.sender_case_id()},
        {"resource_id", &a.resource_id()}}) {
    if (!ValidateIdentifier(field, *id).ok()) return bad(field, "an identifier");
  }
  if (!IsPrincipalOf(absl::StrCat(sender, "/", a.subject()), sender) || a.subject() == "node") {
    return bad("subject", "\"user/<name>\", a staff account of the sending org");
  }
  if (a.roles_size() > 8) return bad("roles", "at most 8 roles");
  for (int r : a.roles()) {
    if (!v1::Role_IsValid(r) || r == v1::ROLE_UNSPECIFIED) return bad("roles", "known roles");
  }
  const bool case_read =
      (a.action() == "case.get" || a.action() == "evidence.list") && a.resource_kind() == "case";
  const bool evidence_read = a.action() == "evidence.get" && a.resource_kind() == "evidence";
  if (!case_read && !evidence_read) {
    return bad("action",
               "\"case.get\" or \"evidence.list\" (resource_kind case) or "
               "\"evidence.get\" (evidence)");
  }
  if (!ValidatePurposeCode(a.purpose()).ok()) return bad("purpose", "a purpose code");
  if (a.time_unix_micros() <= 0) return bad("time_unix_micros", "a time after 1970");
  return absl::OkStatus();
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
  if (payload->sender_org() == holder_org) {
    return absl::PermissionDeniedError(
        absl::StrCat("the cited permission is signed by ", holder_org,
                     " itself; only the org the case came from can permit passing it on"));
  }
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
  return SignReceipt(body, key_id, static_cast<const Signer&>(key)).value();
}

absl::StatusOr<v1::Receipt> SignReceipt(const v1::ReceiptBody& body, const std::string& key_id,
                                        const Signer& key) {
  v1::Receipt r;
  r.set_body(body.SerializeAsString());
  r.set_key_id(key_id);
  auto sig = key.Signature(kReceiptContext + r.body());
  if (!sig.ok()) return sig.status();
  r.set_signature(*std::move(sig));
  return r;
}

absl::StatusOr<v1::ReceiptBody> VerifyReceipt(const v1::Receipt& receipt,
                                              const v1::Envelope& envelope,
                                              const std::string& receiver_org,
                                              const v1::Roster& roster) {
  // The sender keeps the receipt in its ledger (AccessEvent.peer_receipt), so
  // a receiver cannot make it carry anything but what a receipt holds.
  if (receipt.ByteSizeLong() > kMaxReceiptBytes) {
    return absl::PermissionDeniedError(
        absl::StrCat("receipt is larger than ", kMaxReceiptBytes, " bytes"));
  }
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
  v1::EnvelopePayload payload;
  if (body.envelope_sha256() != EnvelopeDigest(envelope) || body.receiver_org() != receiver_org ||
      !payload.ParseFromString(envelope.payload()) || body.envelope_id() != payload.envelope_id()) {
    return absl::PermissionDeniedError("receipt is for another envelope or receiver");
  }
  return body;
}

}  // namespace corridor
