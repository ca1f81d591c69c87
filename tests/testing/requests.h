// Well-formed requests for any method, built from the protobuf descriptors, so
// tests and fuzzers that walk every method need no per-method code and cover a
// new method or field without being touched.
#ifndef CORRIDOR_TESTS_TESTING_REQUESTS_H_
#define CORRIDOR_TESTS_TESTING_REQUESTS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"

namespace corridor::testing {

// One method of a service, as a client calls it.
struct MethodInfo {
  std::string path;                                       // "/corridor.v1.CaseService/GetCase"
  const google::protobuf::Descriptor* request = nullptr;  // null: no descriptor here
  const google::protobuf::Descriptor* response = nullptr;
  bool client_streaming = false;
  bool server_streaming = false;
};

// Every method of the named services (e.g. "corridor.v1.CaseService"), in
// declaration order; aborts if a service is unknown.
std::vector<MethodInfo> MethodsOf(const std::vector<std::string>& services);

// The Corridor services: CaseService, AuditService, ReferralService,
// NodeService and PeerService.
std::vector<std::string> CorridorServices();

// The values FillRequest puts into fields, by field name.
struct RequestValues {
  std::string case_id;      // fields "case_id", "id", "linked_case_id"
  std::string evidence_id;  // fields naming evidence ("evidence_id", "evidence_ids", "item_id")
  std::string referral_id;  // field "referral_id"
  std::string purpose = "case-referral";  // field "purpose"
  std::string org = "x";                  // fields "org" and "*_org"
  std::string agreement = "x";            // field "agreement"
  std::string request_id = "x";           // field "request_id"
  std::string text = "x";                 // every other string field (free text)
};

// Sets every field of `m`, to depth 3: strings from `values`, bytes to a few
// bytes, numbers to 1, bools true, enums their first named non-zero value.
// Members of a oneof are left for the caller, except at the top level.
void FillRequest(google::protobuf::Message* m, const RequestValues& values, int depth = 0);

// What a call by path answered.
struct CallResult {
  grpc::Status status;
  std::vector<std::string> responses;  // every response message, serialized
};

// Calls `path` on `channel` sending `messages` as they are (raw bytes, any
// method type: the wire is the same), then half-closes and reads every
// response until the server finishes or `timeout` passes.
CallResult CallByPath(const std::shared_ptr<grpc::Channel>& channel, const std::string& path,
                      const std::vector<std::string>& messages,
                      absl::Duration timeout = absl::Seconds(10));

}  // namespace corridor::testing

#endif  // CORRIDOR_TESTS_TESTING_REQUESTS_H_
