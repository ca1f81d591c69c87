#include "client/lib/yaml_proto.h"

#include <yaml-cpp/yaml.h>

#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "ledger/crypto/crypto.h"

namespace corridor {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::EnumValueDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

class YamlToProto {
 public:
  explicit YamlToProto(absl::string_view source) : source_(source) {}

  absl::Status FillMessage(const YAML::Node& node, const std::string& path, Message* msg) {
    if (node.IsNull()) return absl::OkStatus();
    if (!node.IsMap()) return Error(node, path, "expected a mapping of keys to values");
    const Descriptor* desc = msg->GetDescriptor();
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) return Error(kv.first, path, "keys must be plain names");
      const std::string key = kv.first.Scalar();
      const std::string key_path = path.empty() ? key : absl::StrCat(path, ".", key);
      const FieldDescriptor* field = desc->FindFieldByName(key);
      if (field == nullptr) {
        return Error(kv.first, key_path,
                     absl::StrCat("unknown key \"", key, "\" (allowed: ", AllowedKeys(desc), ")"));
      }
      if (auto st = FillField(kv.second, key_path, field, msg); !st.ok()) return st;
    }
    return absl::OkStatus();
  }

 private:
  static std::string AllowedKeys(const Descriptor* desc) {
    std::string out;
    for (int i = 0; i < desc->field_count(); ++i) {
      absl::StrAppend(&out, i == 0 ? "" : ", ", desc->field(i)->name());
    }
    return out;
  }

  absl::Status Error(const YAML::Node& node, const std::string& path, absl::string_view what) {
    const YAML::Mark mark = node.Mark();
    std::string where = source_;
    if (!mark.is_null()) absl::StrAppend(&where, ":", mark.line + 1);
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": ", path.empty() ? "" : absl::StrCat(path, ": "), what));
  }

  absl::Status FillField(const YAML::Node& node, const std::string& path,
                         const FieldDescriptor* field, Message* msg) {
    const Reflection* refl = msg->GetReflection();
    if (field->is_map()) {
      if (node.IsNull()) return absl::OkStatus();
      if (!node.IsMap()) return Error(node, path, "expected a mapping");
      const Descriptor* entry_desc = field->message_type();
      const FieldDescriptor* key_field = entry_desc->map_key();
      const FieldDescriptor* value_field = entry_desc->map_value();
      for (const auto& kv : node) {
        const std::string key = kv.first.Scalar();
        const std::string entry_path = absl::StrCat(path, ".", key);
        Message* entry = refl->AddMessage(msg, field);
        if (auto st = SetScalar(kv.first, entry_path, key_field, entry, false); !st.ok()) return st;
        if (value_field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          Message* value = entry->GetReflection()->MutableMessage(entry, value_field);
          if (auto st = FillMessage(kv.second, entry_path, value); !st.ok()) return st;
        } else if (auto st = SetScalar(kv.second, entry_path, value_field, entry, false);
                   !st.ok()) {
          return st;
        }
      }
      return absl::OkStatus();
    }
    if (field->is_repeated()) {
      if (node.IsNull()) return absl::OkStatus();
      if (!node.IsSequence()) return Error(node, path, "expected a list");
      for (size_t i = 0; i < node.size(); ++i) {
        const std::string item_path = absl::StrCat(path, "[", i, "]");
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
          if (auto st = FillMessage(node[i], item_path, refl->AddMessage(msg, field)); !st.ok()) {
            return st;
          }
        } else if (auto st = SetScalar(node[i], item_path, field, msg, true); !st.ok()) {
          return st;
        }
      }
      return absl::OkStatus();
    }
    if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      return FillMessage(node, path, refl->MutableMessage(msg, field));
    }
    return SetScalar(node, path, field, msg, false);
  }

  template <typename T>
  absl::StatusOr<T> ParseInt(const YAML::Node& node, const std::string& path, const char* kind) {
    T value{};
    std::string s = node.Scalar();
    if (!absl::SimpleAtoi(s, &value)) {
      return Error(node, path, absl::StrCat("expected ", kind, ", got \"", s, "\""));
    }
    return value;
  }

  absl::Status SetScalar(const YAML::Node& node, const std::string& path,
                         const FieldDescriptor* field, Message* msg, bool repeated) {
    if (!node.IsScalar()) return Error(node, path, "expected a single value");
    const Reflection* refl = msg->GetReflection();
    const std::string s = node.Scalar();
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_STRING: {
        std::string value = s;
        if (field->type() == FieldDescriptor::TYPE_BYTES) {
          auto decoded = Base64Decode(s);
          if (!decoded.ok()) return Error(node, path, "expected base64 bytes");
          value = *std::move(decoded);
        }
        repeated ? refl->AddString(msg, field, value) : refl->SetString(msg, field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_BOOL: {
        const std::string lower = absl::AsciiStrToLower(s);
        bool value;
        if (lower == "true") {
          value = true;
        } else if (lower == "false") {
          value = false;
        } else {
          return Error(node, path, absl::StrCat("expected true or false, got \"", s, "\""));
        }
        repeated ? refl->AddBool(msg, field, value) : refl->SetBool(msg, field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT32: {
        auto v = ParseInt<int32_t>(node, path, "an integer");
        if (!v.ok()) return v.status();
        repeated ? refl->AddInt32(msg, field, *v) : refl->SetInt32(msg, field, *v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_INT64: {
        auto v = ParseInt<int64_t>(node, path, "an integer");
        if (!v.ok()) return v.status();
        repeated ? refl->AddInt64(msg, field, *v) : refl->SetInt64(msg, field, *v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT32: {
        if (absl::StartsWith(s, "-")) {
          return Error(node, path, absl::StrCat("expected an unsigned integer, got \"", s, "\""));
        }
        auto v = ParseInt<uint32_t>(node, path, "an unsigned integer");
        if (!v.ok()) return v.status();
        repeated ? refl->AddUInt32(msg, field, *v) : refl->SetUInt32(msg, field, *v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_UINT64: {
        if (absl::StartsWith(s, "-")) {
          return Error(node, path, absl::StrCat("expected an unsigned integer, got \"", s, "\""));
        }
        auto v = ParseInt<uint64_t>(node, path, "an unsigned integer");
        if (!v.ok()) return v.status();
        repeated ? refl->AddUInt64(msg, field, *v) : refl->SetUInt64(msg, field, *v);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT: {
        double v;
        if (!absl::SimpleAtod(s, &v)) {
          return Error(node, path, absl::StrCat("expected a number, got \"", s, "\""));
        }
        if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
          repeated ? refl->AddDouble(msg, field, v) : refl->SetDouble(msg, field, v);
        } else {
          repeated ? refl->AddFloat(msg, field, static_cast<float>(v))
                   : refl->SetFloat(msg, field, static_cast<float>(v));
        }
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_ENUM: {
        const EnumValueDescriptor* value = FindEnumValue(field->enum_type(), s);
        if (value == nullptr || value->number() == 0) {
          return Error(node, path,
                       absl::StrCat("unknown value \"", s,
                                    "\" (allowed: ", EnumNames(field->enum_type()), ")"));
        }
        repeated ? refl->AddEnum(msg, field, value) : refl->SetEnum(msg, field, value);
        return absl::OkStatus();
      }
      case FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
    return Error(node, path, "unsupported field type");
  }

 public:
  static const EnumValueDescriptor* FindEnumValue(const EnumDescriptor* e, absl::string_view s) {
    const std::string upper = absl::AsciiStrToUpper(s);
    std::string normalized;
    for (char c : upper) normalized.push_back(c == '-' ? '_' : c);
    if (const auto* v = e->FindValueByName(normalized)) return v;
    // Without the prefix: "caseworker" for ROLE_CASEWORKER, "union" for ORG_KIND_UNION.
    for (int i = 0; i < e->value_count(); ++i) {
      const std::string& name = e->value(i)->name();
      if (absl::EndsWith(name, "_" + normalized)) return e->value(i);
    }
    return nullptr;
  }

  static std::string EnumNames(const EnumDescriptor* e) {
    std::string out;
    for (int i = 1; i < e->value_count(); ++i) {
      absl::StrAppend(&out, i == 1 ? "" : ", ", ShortEnumName(e, e->value(i)->name()));
    }
    return out;
  }

  static std::string ShortEnumName(const EnumDescriptor* e, const std::string& name) {
    // Strip the longest prefix shared by every value name.
    size_t common = name.size();
    for (int i = 0; i < e->value_count(); ++i) {
      const std::string& other = e->value(i)->name();
      size_t n = 0;
      while (n < common && n < other.size() && other[n] == name[n]) ++n;
      common = n;
    }
    while (common > 0 && name[common - 1] != '_') --common;
    return absl::AsciiStrToLower(name.substr(common));
  }

 private:
  std::string source_;
};

}  // namespace

absl::Status ParseYamlToProto(absl::string_view yaml, absl::string_view source, Message* message) {
  message->Clear();
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ":", e.mark.line + 1, ": not valid YAML: ", e.msg));
  }
  YamlToProto loader(source);
  return loader.FillMessage(root, "", message);
}

absl::Status LoadYamlFileToProto(const std::string& path, Message* message) {
  auto text = ReadFileToString(path);
  if (!text.ok()) return text.status();
  return ParseYamlToProto(*text, path, message);
}

namespace {
// First unknown field found in `message` or its sub-messages, as a dotted path.
bool FindUnknownField(const Message& message, const std::string& path, std::string* where) {
  const Reflection* refl = message.GetReflection();
  if (!refl->GetUnknownFields(message).empty()) {
    *where = path.empty() ? "(top level)" : path;
    return true;
  }
  std::vector<const FieldDescriptor*> fields;
  refl->ListFields(message, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const std::string sub = path.empty() ? f->name() : absl::StrCat(path, ".", f->name());
    if (f->is_repeated()) {
      for (int i = 0; i < refl->FieldSize(message, f); ++i) {
        if (FindUnknownField(refl->GetRepeatedMessage(message, f, i),
                             absl::StrCat(sub, "[", i, "]"), where)) {
          return true;
        }
      }
    } else if (FindUnknownField(refl->GetMessage(message, f), sub, where)) {
      return true;
    }
  }
  return false;
}
}  // namespace

absl::Status ParseProtoStrict(absl::string_view bytes, absl::string_view what, Message* message) {
  message->Clear();
  if (!message->ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a well-formed ", message->GetDescriptor()->name(), " message"));
  }
  std::string where;
  if (FindUnknownField(*message, "", &where)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has fields this node does not know, at ", where,
                     " (made by a newer version? refusing rather than ignoring them)"));
  }
  return absl::OkStatus();
}

absl::Status ParseJsonStrict(absl::string_view json, absl::string_view what, Message* message) {
  message->Clear();
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(std::string(json), message, options);
  if (!st.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not valid: ", st.message().as_string()));
  }
  return absl::OkStatus();
}

std::string ProtoToYaml(const Message& message) {
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

}  // namespace corridor
