#include "ledger/mutation.h"

#include <iterator>
#include <utility>

namespace corridor::ledger {

void Mutation::Put(absl::string_view space, absl::string_view key, absl::string_view value) {
  ops_.push_back(Op{Op::Kind::kPut, std::string(space), std::string(key), std::string(value)});
  bytes_ += key.size() + value.size();
}

void Mutation::Delete(absl::string_view space, absl::string_view key) {
  ops_.push_back(Op{Op::Kind::kDelete, std::string(space), std::string(key), {}});
  bytes_ += key.size();
}

void Mutation::DeleteRange(absl::string_view space, absl::string_view begin,
                           absl::string_view end) {
  ops_.push_back(
      Op{Op::Kind::kDeleteRange, std::string(space), std::string(begin), std::string(end)});
  bytes_ += begin.size() + end.size();
}

void Mutation::Append(Mutation other) {
  if (ops_.empty()) {
    *this = std::move(other);
    return;
  }
  ops_.insert(ops_.end(), std::make_move_iterator(other.ops_.begin()),
              std::make_move_iterator(other.ops_.end()));
  bytes_ += other.bytes_;
}

}  // namespace corridor::ledger
