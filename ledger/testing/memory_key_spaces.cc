#include "ledger/testing/memory_key_spaces.h"

#include "absl/strings/str_cat.h"

namespace corridor::ledger {

MemoryKeySpaces::MemoryKeySpaces(const std::vector<std::string>& names) {
  absl::MutexLock lock(&mu_);
  for (const std::string& n : names) spaces_[n];
}

absl::Status MemoryKeySpaces::Check(const Mutation& m) const {
  absl::MutexLock lock(&mu_);
  for (const Mutation::Op& op : m.ops()) {
    if (spaces_.find(op.space) == spaces_.end()) {
      return absl::InvalidArgumentError(absl::StrCat("the change writes key space \"", op.space,
                                                     "\", which this ledger was not given"));
    }
  }
  return absl::OkStatus();
}

absl::Status MemoryKeySpaces::Apply(const Mutation& m) {
  if (absl::Status st = Check(m); !st.ok()) return st;
  absl::MutexLock lock(&mu_);
  for (const Mutation::Op& op : m.ops()) {
    Space& space = spaces_.find(op.space)->second;
    switch (op.kind) {
      case Mutation::Op::Kind::kPut:
        space[op.key] = op.value;
        break;
      case Mutation::Op::Kind::kDelete:
        space.erase(op.key);
        break;
      case Mutation::Op::Kind::kDeleteRange:
        if (op.key < op.value) {
          space.erase(space.lower_bound(op.key), space.lower_bound(op.value));
        }
        break;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MemoryKeySpaces::Get(absl::string_view space,
                                                 absl::string_view key) const {
  absl::MutexLock lock(&mu_);
  auto s = spaces_.find(space);
  if (s == spaces_.end()) {
    return absl::InvalidArgumentError(absl::StrCat("no key space \"", space, "\""));
  }
  auto it = s->second.find(key);
  if (it == s->second.end()) return absl::NotFoundError(absl::StrCat("no key ", key));
  return it->second;
}

std::map<std::string, std::string> MemoryKeySpaces::Contents(absl::string_view space) const {
  absl::MutexLock lock(&mu_);
  auto s = spaces_.find(space);
  if (s == spaces_.end()) return {};
  return std::map<std::string, std::string>(s->second.begin(), s->second.end());
}

}  // namespace corridor::ledger
