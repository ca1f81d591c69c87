// The access table: who may call which method of the node. One row per
// method the node serves, Corridor's own services and gRPC's health and
// reflection alike; docs/access-control.md is this table in words.
// CheckAccess() (auth.h) reads it; a method without a row is refused to
// everyone. CheckAccessTable() holds the table to the services a server
// actually registered, so a new RPC without a rule, or a rule for a method
// that no longer exists, stops the node at start (and fails
// access_table_unit_test). tests/access_table_test.cc walks every row with
// every kind of caller. Immutable after first use; thread-safe.
#ifndef CORRIDOR_SERVER_AUTH_ACCESS_TABLE_H_
#define CORRIDOR_SERVER_AUTH_ACCESS_TABLE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "corridor/v1/roster.pb.h"
#include "grpcpp/impl/server_builder_option.h"

namespace corridor {

// Who may call one method. `nodes`: peer nodes of the federation;
// `any_user`: every configured user of this org whatever their roles;
// `roles`: users holding any of these roles. Users of other orgs and users
// the node does not know never get this far (the identity is refused first).
struct MethodRule {
  const char* method;  // the gRPC path, e.g. "/corridor.v1.CaseService/GetCase"
  bool nodes;
  bool any_user;
  std::vector<v1::Role> roles;
};

// The table, in a fixed order.
const std::vector<MethodRule>& MethodRules();

// The services a Corridor node serves, by full name: corridor.v1's five,
// grpc.health.v1.Health and server reflection. What the table must cover.
std::vector<std::string> ServedServiceNames();

// OK iff every method of every service in `services` (full names, as
// grpc::Server lists them) has exactly one rule in MethodRules(), and every
// rule names a method of one of those services. FailedPrecondition naming
// each method without a rule, each method with several, and each rule for a
// method not served; also FailedPrecondition for a service whose descriptor
// this binary does not hold (its methods cannot be checked, so the node does
// not serve it).
absl::Status CheckAccessTable(const std::vector<std::string>& services);
// The same for another table (to test the check itself).
absl::Status CheckAccessTable(const std::vector<std::string>& services,
                              const std::vector<MethodRule>& rules);

// A server builder option that records, once the server is built, the names
// of the services it registered (its own and its plugins', reflection
// included) into `*services`, for CheckAccessTable(). `services` must
// outlive BuildAndStart().
std::unique_ptr<grpc::ServerBuilderOption> RecordServedServices(
    std::shared_ptr<std::vector<std::string>> services);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUTH_ACCESS_TABLE_H_
