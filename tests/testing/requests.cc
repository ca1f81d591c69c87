#include "tests/testing/requests.h"

#include <cstdio>
#include <cstdlib>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/generic/generic_stub.h"

namespace corridor::testing {

namespace pb = google::protobuf;

std::vector<std::string> CorridorServices() {
  return {"corridor.v1.CaseService", "corridor.v1.AuditService", "corridor.v1.ReferralService",
          "corridor.v1.NodeService", "corridor.v1.PeerService"};
}

std::vector<MethodInfo> MethodsOf(const std::vector<std::string>& services) {
  std::vector<MethodInfo> out;
  for (const std::string& name : services) {
    const pb::ServiceDescriptor* s = pb::DescriptorPool::generated_pool()->FindServiceByName(name);
    if (s == nullptr) {
      fprintf(stderr, "MethodsOf: no service %s linked in\n", name.c_str());
      abort();
    }
    for (int i = 0; i < s->method_count(); ++i) {
      const pb::MethodDescriptor* m = s->method(i);
      out.push_back({absl::StrCat("/", name, "/", m->name()), m->input_type(), m->output_type(),
                     m->client_streaming(), m->server_streaming()});
    }
  }
  return out;
}

namespace {

const std::string& StringFor(const pb::FieldDescriptor* f, const RequestValues& v) {
  const std::string& name = f->name();
  if (name == "case_id" || name == "id" || name == "linked_case_id") return v.case_id;
  if (name.find("evidence") != std::string::npos || name == "item_id") return v.evidence_id;
  if (name == "referral_id") return v.referral_id;
  if (name == "purpose") return v.purpose;
  if (name == "org" || absl::EndsWith(name, "_org")) return v.org;
  if (name == "agreement") return v.agreement;
  if (name == "request_id") return v.request_id;
  return v.text;
}

}  // namespace

void FillRequest(pb::Message* m, const RequestValues& values, int depth) {
  const pb::Descriptor* d = m->GetDescriptor();
  const pb::Reflection* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const pb::FieldDescriptor* f = d->field(i);
    if (f->containing_oneof() != nullptr && depth > 0) continue;
    if (f->containing_oneof() != nullptr && r->HasOneof(*m, f->containing_oneof())) continue;
    const bool rep = f->is_repeated();
    switch (f->cpp_type()) {
      case pb::FieldDescriptor::CPPTYPE_STRING: {
        const std::string v =
            f->type() == pb::FieldDescriptor::TYPE_BYTES ? "some bytes" : StringFor(f, values);
        rep ? r->AddString(m, f, v) : r->SetString(m, f, v);
        break;
      }
      case pb::FieldDescriptor::CPPTYPE_MESSAGE:
        if (depth < 3) {
          FillRequest(rep ? r->AddMessage(m, f) : r->MutableMessage(m, f), values, depth + 1);
        }
        break;
      case pb::FieldDescriptor::CPPTYPE_ENUM:
        if (f->enum_type()->value_count() > 1) {
          rep ? r->AddEnum(m, f, f->enum_type()->value(1))
              : r->SetEnum(m, f, f->enum_type()->value(1));
        }
        break;
      case pb::FieldDescriptor::CPPTYPE_BOOL:
        rep ? r->AddBool(m, f, true) : r->SetBool(m, f, true);
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT64:
        rep ? r->AddUInt64(m, f, 1) : r->SetUInt64(m, f, 1);
        break;
      case pb::FieldDescriptor::CPPTYPE_UINT32:
        rep ? r->AddUInt32(m, f, 1) : r->SetUInt32(m, f, 1);
        break;
      case pb::FieldDescriptor::CPPTYPE_INT64:
        rep ? r->AddInt64(m, f, 1) : r->SetInt64(m, f, 1);
        break;
      case pb::FieldDescriptor::CPPTYPE_INT32:
        rep ? r->AddInt32(m, f, 1) : r->SetInt32(m, f, 1);
        break;
      default:
        break;
    }
  }
}

CallResult CallByPath(const std::shared_ptr<grpc::Channel>& channel, const std::string& path,
                      const std::vector<std::string>& messages, absl::Duration timeout) {
  CallResult result;
  grpc::GenericStub stub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::CompletionQueue cq;
  auto step = [&cq]() {
    void* tag = nullptr;
    bool ok = false;
    return cq.Next(&tag, &ok) && ok;
  };
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call = stub.PrepareCall(&ctx, path, &cq);
  call->StartCall(nullptr);
  bool open = step();
  for (const std::string& bytes : messages) {
    if (!open) break;
    grpc::Slice slice(bytes);
    call->Write(grpc::ByteBuffer(&slice, 1), nullptr);
    open = step();
  }
  if (open) {
    call->WritesDone(nullptr);
    step();
    grpc::ByteBuffer response;
    while (true) {
      call->Read(&response, nullptr);
      if (!step()) break;
      std::vector<grpc::Slice> slices;
      (void)response.Dump(&slices);
      std::string bytes;
      for (const grpc::Slice& s : slices)
        bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      result.responses.push_back(std::move(bytes));
    }
  }
  call->Finish(&result.status, nullptr);
  step();
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  return result;
}

}  // namespace corridor::testing
