// Rpc: the method a handler serves, named as gRPC dispatched it, for the
// access check and the ledger.
//
// A generated CallbackService dispatches "/<package>.<Service>/<Method>" to
// its virtual function named <Method>, so inside a handler the handler's own
// name is the method that was called. Rpc::Served<v1::CaseService>() called in
// CaseServiceImpl::GetCase takes that name from the compiler (the caller's
// function, as std::source_location does) and the service from the generated
// class: no handler types a method string, so none can check one method's
// rule while serving another. Call it in the handler itself (in a lambda or a
// reactor it would name that instead, and the access table has no rule for
// such a path, so every call is refused). tests/dispatch_test.cc calls every
// method and checks that each refusal names exactly the path called.
// Immutable; thread-safe.
#ifndef CORRIDOR_SERVER_AUTH_RPC_H_
#define CORRIDOR_SERVER_AUTH_RPC_H_

#include <string>

#include "absl/strings/string_view.h"

namespace corridor {

class Rpc {
 public:
  // The RPC of generated service `Service` served by the function this is
  // called from. `handler` is filled in by the compiler; only a service's own
  // shorthand, itself defaulted the same way and called in the handler
  // (`Rpc Cases(const char* handler = __builtin_FUNCTION())`), passes it on.
  template <typename Service>
  static Rpc Served(const char* handler = __builtin_FUNCTION()) {
    return Rpc(Service::service_full_name(), handler);
  }

  // "/corridor.v1.CaseService/GetCase": the key of the access table.
  const std::string& path() const { return path_; }

 private:
  Rpc(absl::string_view service, absl::string_view method);

  std::string path_;
};

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUTH_RPC_H_
