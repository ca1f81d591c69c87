#include "client/ctl/roster_signing.h"

#include "absl/strings/str_cat.h"
#include "client/lib/yaml_proto.h"
#include "google/protobuf/util/json_util.h"
#include "ledger/crypto/dsse.h"

namespace corridor {

absl::StatusOr<std::string> SignRoster(const v1::Roster* roster, absl::string_view existing_json,
                                       absl::string_view key_name, const Ed25519PrivateKey& key) {
  v1::Envelope env;
  if (!existing_json.empty()) {
    auto parsed = ParseSignedRosterEnvelope(existing_json);
    if (!parsed.ok()) return parsed.status();
    env = *std::move(parsed);
    for (const auto& s : env.signatures()) {
      if (s.keyid() == key_name) {
        return absl::AlreadyExistsError(
            absl::StrCat("roster is already signed by \"", key_name, "\""));
      }
    }
  } else {
    if (roster == nullptr) return absl::InvalidArgumentError("no roster to sign");
    if (auto st = ValidateRoster(*roster); !st.ok()) return st;
    env.set_payload_type(kRosterPayloadType);
    env.set_payload(roster->SerializeAsString());
  }
  v1::EnvelopeSignature* sig = env.add_signatures();
  sig->set_keyid(std::string(key_name));
  sig->set_sig(key.Sign(DssePae(env.payload_type(), env.payload())));
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(env, &json, options);
  return json;
}

absl::StatusOr<v1::Roster> PeekSignedRoster(absl::string_view envelope_json) {
  auto env = ParseSignedRosterEnvelope(envelope_json);
  if (!env.ok()) return env.status();
  v1::Roster roster;
  if (auto st = ParseProtoStrict(env->payload(), "roster payload", &roster); !st.ok()) return st;
  return roster;
}

}  // namespace corridor
