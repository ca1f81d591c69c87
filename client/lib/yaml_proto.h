// Strict YAML → protobuf loading, for the node config and roster sources.
//
// Every YAML key must name a field of the message (by its proto field name);
// scalars must parse as the field's type; enums accept the value name with or
// without the enum's prefix, in any case ("caseworker" for ROLE_CASEWORKER);
// bytes are base64. Errors name the source, the line and the dotted key path,
// e.g. `node.yaml:7: limits.max_message_bytes: expected an unsigned integer, got "lots"`.
// Stateless; thread-safe.
#ifndef CORRIDOR_CLIENT_LIB_YAML_PROTO_H_
#define CORRIDOR_CLIENT_LIB_YAML_PROTO_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace corridor {

// Parses `yaml` into `message` (which is cleared first). `source` names the
// input in errors (usually the file name). Returns InvalidArgument on any
// syntax, unknown-key or type error.
absl::Status ParseYamlToProto(absl::string_view yaml, absl::string_view source,
                              google::protobuf::Message* message);

// Reads `path` and parses it as above. NotFound if the file does not exist.
absl::Status LoadYamlFileToProto(const std::string& path, google::protobuf::Message* message);

// Renders `message` as JSON with proto field names — valid YAML that
// ParseYamlToProto reads back.
std::string ProtoToYaml(const google::protobuf::Message& message);

// Parses binary protobuf `bytes` into `message`, refusing malformed input and
// any field this build does not know (at any depth): InvalidArgument naming `what`.
absl::Status ParseProtoStrict(absl::string_view bytes, absl::string_view what,
                              google::protobuf::Message* message);

// Parses proto3 JSON into `message`, refusing unknown keys: InvalidArgument naming `what`.
absl::Status ParseJsonStrict(absl::string_view json, absl::string_view what,
                             google::protobuf::Message* message);

}  // namespace corridor

#endif  // CORRIDOR_CLIENT_LIB_YAML_PROTO_H_
