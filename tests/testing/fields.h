// Walking a protobuf message's string fields by descriptor, for tests that
// send every field of a request oversized or hostile (so a field added later
// is covered without touching the test). Test-only; pure functions.
#ifndef CORRIDOR_TESTS_TESTING_FIELDS_H_
#define CORRIDOR_TESTS_TESTING_FIELDS_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"

namespace corridor::testing {

namespace pb = google::protobuf;

// A field reached from a request's top level, one descriptor per level.
using FieldPath = std::vector<const pb::FieldDescriptor*>;

// Every string and bytes field of `d` (to depth 3), as paths.
inline void StringFields(const pb::Descriptor* d, FieldPath prefix, std::vector<FieldPath>* out,
                         int depth = 0) {
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    FieldPath path = prefix;
    path.push_back(f);
    if (f->type() == pb::FieldDescriptor::TYPE_STRING ||
        f->type() == pb::FieldDescriptor::TYPE_BYTES) {
      out->push_back(path);
    } else if (f->type() == pb::FieldDescriptor::TYPE_MESSAGE && depth < 3) {
      StringFields(f->message_type(), path, out, depth + 1);
    }
  }
}

inline std::string PathName(const FieldPath& path) {
  std::string out;
  for (const auto* f : path) absl::StrAppend(&out, out.empty() ? "" : ".", f->name());
  return out;
}

// Sets the field at `path` of `m` to `value` (a repeated field's first element).
inline void SetAt(pb::Message* m, const FieldPath& path, const std::string& value,
                  size_t level = 0) {
  const pb::FieldDescriptor* f = path[level];
  const pb::Reflection* r = m->GetReflection();
  if (level + 1 == path.size()) {
    if (!f->is_repeated()) return r->SetString(m, f, value);
    if (r->FieldSize(*m, f) == 0) return r->AddString(m, f, value);
    return r->SetRepeatedString(m, f, 0, value);
  }
  pb::Message* child = nullptr;
  if (!f->is_repeated()) {
    child = r->MutableMessage(m, f);
  } else {
    child = r->FieldSize(*m, f) == 0 ? r->AddMessage(m, f) : r->MutableRepeatedMessage(m, f, 0);
  }
  SetAt(child, path, value, level + 1);
}

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_FIELDS_H_
