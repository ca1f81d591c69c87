#include "server/auth/rpc.h"

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.h"
#include "ledger/base/log.h"

namespace corridor {

Rpc::Rpc(absl::string_view service, absl::string_view method)
    : path_(absl::StrCat("/", service, "/", method)) {
  // A name that is not a method of the service (Served() called outside a
  // handler) gets no rule in the access table: every call is refused. Said
  // loudly, as it is a programming error.
  const auto* found = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(
      absl::StrCat(service, ".", method));
  if (found == nullptr) log::Error("auth.unknown_rpc", {{"path", path_}});
}

}  // namespace corridor
