// The node's signing key as its config names it (`signing_key`): a key file,
// or a key in a PKCS#11 token. Stateless; thread-safe.
#ifndef CORRIDOR_SERVER_NODE_SIGNING_KEY_H_
#define CORRIDOR_SERVER_NODE_SIGNING_KEY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "corridor/v1/config.pb.h"
#include "ledger/crypto/crypto.h"

namespace corridor {

// Opens the signer `config` names (paths already resolved). For a key in a
// token this loads the module, logs in with the PIN file's PIN and makes a
// test signature (ledger/crypto/pkcs11.h). Errors are InvalidArgument,
// naming the config key at fault first ("signing_key.pkcs11.pin_file: ...")
// and then what is wrong, in words for the person who set the key up; the
// PIN is never in a message.
absl::StatusOr<std::unique_ptr<Signer>> OpenSigningKey(const v1::SigningKeyConfig& config);

// Where the key is, for messages: "<key_file>" or "the key \"L\" in token
// \"T\" (PKCS#11 module M)".
std::string DescribeSigningKey(const v1::SigningKeyConfig& config);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_NODE_SIGNING_KEY_H_
