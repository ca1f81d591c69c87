// libFuzzer target: every method the node serves, from the wire in.
//
// A real node (the whole of corridor_server, built with the fuzzer's coverage
// and ASan+UBSan) runs in this process on a loopback port with mutual TLS, as
// in production. Each input is one call:
//
//   byte 0   which method: every method of CaseService, AuditService,
//            ReferralService, NodeService and PeerService (from the protobuf
//            descriptors, so a new method is fuzzed without touching this
//            file) but NodeService.Backup (it writes directories on the
//            machine), gRPC's health service, server reflection, and a path
//            nobody serves;
//   byte 1   who calls: a caseworker, prosecutor, approver, auditor or admin
//            of the node's org, a user of another org, or another org's node;
//   byte 2   bit 0 set: the request bytes are parsed as the method's request
//            type and every string field reading "@case", "@ev" or "@ref" is
//            replaced by the id of a real case or evidence item, or a referral id, so the fuzzer
//            reaches the code behind the id checks; otherwise the bytes go to the node exactly as
//            given, unparseable ones included;
//   the rest the request message(s); for streaming methods, "#next#"
//            separates the messages of the stream.
//
// The bytes reach the node through gRPC's own parsing, the auth processor,
// the access table, the edge checks (server/common/edge.h) and the handler. What
// must hold, whatever the input (a violation aborts, and libFuzzer keeps the
// input):
//   - the node answers every call, with a status other than UNKNOWN, and
//     INTERNAL only for a request gRPC itself could not parse;
//   - every ledger entry written meanwhile (checked every kCheckEvery calls,
//     through the auditor's GetEntries) is at most kMaxEntryBytes, and none of
//     its text fields holds a control character: no input, however long or
//     strange, reaches the never-erasable ledger unbounded or raw.
// A crash, leak or undefined behaviour anywhere in the node is caught by the
// sanitizers.
//
// Seeds: run with CORRIDOR_FUZZ_WRITE_SEEDS=<dir> and the fuzzer writes, and
// exits, one well-formed request per method and caller into <dir> (every
// field filled by testing::FillRequest: ids as "@case" / "@ev" / "@ref",
// purposes as a code of the agreement),
// so a new method or field gets seeds without anyone writing them. ctest does
// that, then fuzzes from them for a short bounded time (server/CMakeLists.txt).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "client/lib/grpc_util.h"
#include "corridor/v1/case.grpc.pb.h"
#include "corridor/v1/federation.pb.h"
#include "corridor/v1/node.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"
#include "google/protobuf/stubs/logging.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "ledger/crypto/crypto.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/federation.h"
#include "tests/testing/requests.h"

namespace {

using namespace corridor;  // NOLINT: fuzz harness
namespace pb = google::protobuf;

constexpr int kCheckEvery = 32;
constexpr size_t kMaxEntryBytes = 8 << 10;  // fields are cut at 256 B (reasons 1 KiB)
constexpr absl::string_view kNext = "#next#";

struct Method {
  std::string path;
  const pb::Descriptor* request = nullptr;  // null: no descriptor (a path nobody serves)
  bool client_streaming = false;
};

[[noreturn]] void Fail(const std::string& what) {
  fprintf(stderr, "method_fuzzer: invariant broken: %s\n", what.c_str());
  abort();
}

class World {
 public:
  World() {
    // Malformed UTF-8 in string fields is what this fuzzer sends; keep the output readable.
    pb::SetLogHandler([](pb::LogLevel, const char*, int, const std::string&) {});
    for (const testing::MethodInfo& m : testing::MethodsOf(testing::CorridorServices())) {
      // NodeService.Backup writes a directory wherever an admin's path says, on
      // this machine: not from random bytes. Its bounds and refusals have their
      // own tests (tests/backup_test.cc).
      if (m.path == "/corridor.v1.NodeService/Backup") continue;
      methods_.push_back({m.path, m.request, m.client_streaming});
    }
    const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
    const pb::Descriptor* health = pool->FindMessageTypeByName("grpc.health.v1.HealthCheckRequest");
    methods_.push_back({"/grpc.health.v1.Health/Check", health, false});
    methods_.push_back({"/grpc.health.v1.Health/Watch", health, false});
    methods_.push_back(
        {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
         pool->FindMessageTypeByName("grpc.reflection.v1alpha.ServerReflectionRequest"), true});
    methods_.push_back({"/corridor.v1.NoSuchService/Anything", nullptr, false});

    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    const std::string path = fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}},
                                                               {"pros", {"prosecutor"}},
                                                               {"appr", {"approver"}},
                                                               {"aud", {"auditor"}},
                                                               {"adm", {"admin"}}});
    absl::StatusOr<v1::NodeConfig> config = LoadNodeConfig(path);
    if (!config.ok()) Fail(config.status().ToString());
    absl::StatusOr<std::unique_ptr<Node>> node = Node::Start(*config);
    if (!node.ok()) Fail(node.status().ToString());
    node_ = std::move(*node);

    for (const char* user : {"cw", "pros", "appr", "aud", "adm"}) {
      callers_.push_back(UserChannel("union-sg", user));
    }
    callers_.push_back(UserChannel("ministry-id", "cw"));
    const testing::TestOrg& peer = fed_.org("ministry-id");
    callers_.push_back(MakeMutualTlsChannel(
        {peer.node.cert_pem, peer.node.key_pem, fed_.org("union-sg").ca.cert_pem},
        fed_.org("union-sg").endpoint(), ""));
    auditor_ = callers_[3];
    MakeCaseAndEvidence();
  }

  const std::vector<Method>& methods() const { return methods_; }
  const std::vector<std::shared_ptr<grpc::Channel>>& callers() const { return callers_; }

  // Replaces "@case" / "@ev" in every string field of `m`, recursively.
  void Substitute(pb::Message* m) const {
    const pb::Reflection* r = m->GetReflection();
    std::vector<const pb::FieldDescriptor*> fields;
    r->ListFields(*m, &fields);
    for (const pb::FieldDescriptor* f : fields) {
      if (f->type() == pb::FieldDescriptor::TYPE_STRING) {
        auto fix = [&](const std::string& v) {
          return v == "@case" ? case_id_ : v == "@ev" ? evidence_id_ : v == "@ref" ? "REF-0" : v;
        };
        if (f->is_repeated()) {
          for (int i = 0; i < r->FieldSize(*m, f); ++i) {
            r->SetRepeatedString(m, f, i, fix(r->GetRepeatedString(*m, f, i)));
          }
        } else {
          r->SetString(m, f, fix(r->GetString(*m, f)));
        }
      } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
        if (f->is_repeated()) {
          for (int i = 0; i < r->FieldSize(*m, f); ++i) {
            Substitute(r->MutableRepeatedMessage(m, f, i));
          }
        } else {
          Substitute(r->MutableMessage(m, f));
        }
      }
    }
  }

  // Every entry written since the last check is bounded and free of control characters.
  void CheckLedger() {
    v1::CheckpointResponse cp;
    grpc::Status s = Audit()->GetCheckpoint(Ctx().get(), {}, &cp);
    if (!s.ok()) Fail(absl::StrCat("the auditor's checkpoint failed: ", s.error_message()));
    while (checked_ < cp.size()) {
      v1::GetEntriesRequest req;
      req.set_begin(checked_);
      req.set_end(cp.size());
      v1::GetEntriesResponse resp;
      s = Audit()->GetEntries(Ctx().get(), req, &resp);
      if (!s.ok()) Fail(absl::StrCat("GetEntries from ", checked_, ": ", s.error_message()));
      if (resp.events_size() == 0) Fail(absl::StrCat("GetEntries from ", checked_, " is empty"));
      for (const v1::LoggedEvent& e : resp.events()) {
        if (e.entry().size() > kMaxEntryBytes) {
          Fail(absl::StrCat("entry ", e.index(), " is ", e.entry().size(), " bytes"));
        }
        CheckText(e.event(), e.index());
        checked_ = e.index() + 1;
      }
    }
  }

 private:
  std::shared_ptr<grpc::Channel> UserChannel(const std::string& org, const std::string& user) {
    const std::string prefix = fed_.IssueUser(org, user);
    return MakeMutualTlsChannel(
        {ReadFileToString(prefix + ".crt").value(), ReadFileToString(prefix + ".key").value(),
         fed_.org("union-sg").ca.cert_pem},
        fed_.org("union-sg").endpoint(), "");
  }
  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    return ctx;
  }
  std::unique_ptr<v1::AuditService::Stub> Audit() { return v1::AuditService::NewStub(auditor_); }

  void MakeCaseAndEvidence() {
    v1::CreateCaseRequest req;
    v1::Case* c = req.mutable_case_();
    c->set_category(v1::CASE_CATEGORY_RECRUITMENT_FEES);
    c->set_origin_country("ID");
    c->set_destination_country("SG");
    c->mutable_worker()->set_name("Fuzz Worker");
    v1::Case created;
    grpc::Status s = v1::CaseService::NewStub(callers_[0])->CreateCase(Ctx().get(), req, &created);
    if (!s.ok()) Fail(absl::StrCat("CreateCase: ", s.error_message()));
    case_id_ = created.id();
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
    v1::EvidenceItem item;
    auto writer = v1::CaseService::NewStub(callers_[0])->AddEvidence(&ctx, &item);
    v1::AddEvidenceRequest header;
    header.mutable_header()->set_case_id(case_id_);
    header.mutable_header()->set_file_name("contract.txt");
    header.mutable_header()->set_media_type("text/plain");
    v1::AddEvidenceRequest data;
    data.set_data("a contract");
    writer->Write(header);
    writer->Write(data);
    writer->WritesDone();
    s = writer->Finish();
    if (!s.ok()) Fail(absl::StrCat("AddEvidence: ", s.error_message()));
    evidence_id_ = item.id();
  }

  static void CheckText(const pb::Message& m, uint64_t index) {
    const pb::Reflection* r = m.GetReflection();
    std::vector<const pb::FieldDescriptor*> fields;
    r->ListFields(m, &fields);
    for (const pb::FieldDescriptor* f : fields) {
      const int n = f->is_repeated() ? r->FieldSize(m, f) : 1;
      for (int i = 0; i < n; ++i) {
        if (f->type() == pb::FieldDescriptor::TYPE_STRING) {
          const std::string v =
              f->is_repeated() ? r->GetRepeatedString(m, f, i) : r->GetString(m, f);
          for (unsigned char ch : v) {
            if (ch < 0x20 || ch == 0x7f) {
              Fail(absl::StrCat("entry ", index, " field ", f->full_name(),
                                " holds a control character"));
            }
          }
        } else if (f->cpp_type() == pb::FieldDescriptor::CPPTYPE_MESSAGE) {
          CheckText(f->is_repeated() ? r->GetRepeatedMessage(m, f, i) : r->GetMessage(m, f), index);
        }
      }
    }
  }

  testing::TestFederation fed_;
  std::unique_ptr<Node> node_;
  std::vector<Method> methods_;
  std::vector<std::shared_ptr<grpc::Channel>> callers_;
  std::shared_ptr<grpc::Channel> auditor_;
  std::string case_id_, evidence_id_;
  uint64_t checked_ = 0;
};

World& TheWorld() {
  static World* w = new World;  // never destroyed: the node runs until the process exits
  return *w;
}

// Writes one seed per method and caller into `dir`.
void WriteSeeds(const World& w, const std::string& dir) {
  pb::DynamicMessageFactory factory;
  int written = 0;
  for (size_t mi = 0; mi < w.methods().size(); ++mi) {
    const Method& method = w.methods()[mi];
    std::string request;
    if (method.request != nullptr) {
      std::unique_ptr<pb::Message> m(factory.GetPrototype(method.request)->New());
      testing::FillRequest(m.get(), {"@case", "@ev", "@ref"});
      request = m->SerializeAsString();
      if (method.client_streaming && method.request->name() == "AddEvidenceRequest") {
        v1::AddEvidenceRequest data;
        data.set_data("a payslip");
        request = absl::StrCat(request, kNext, data.SerializeAsString());
      }
    }
    for (size_t ci = 0; ci < w.callers().size(); ++ci) {
      const std::string seed =
          absl::StrCat(std::string(1, static_cast<char>(mi)), std::string(1, static_cast<char>(ci)),
                       std::string(1, '\x01'), request);
      const std::string path = absl::StrCat(dir, "/seed-", mi, "-", ci);
      if (!WriteFileAtomically(path, seed).ok()) Fail("cannot write " + path);
      ++written;
    }
  }
  fprintf(stderr, "method_fuzzer: wrote %d seeds for %zu methods to %s\n", written,
          w.methods().size(), dir.c_str());
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (const char* dir = getenv("CORRIDOR_FUZZ_WRITE_SEEDS")) {
    WriteSeeds(TheWorld(), dir);
    _exit(0);  // the node runs on; nothing to tidy in a one-shot
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static int calls = 0;
  World& w = TheWorld();
  if (size < 3) return 0;
  const Method& method = w.methods()[data[0] % w.methods().size()];
  const auto& caller = w.callers()[data[1] % w.callers().size()];
  const bool substitute = (data[2] & 1) != 0;
  const absl::string_view rest(reinterpret_cast<const char*>(data) + 3, size - 3);

  std::vector<std::string> messages;
  if (method.client_streaming) {
    messages = absl::StrSplit(rest, kNext);
  } else {
    messages.emplace_back(rest);
  }
  if (substitute && method.request != nullptr) {
    pb::DynamicMessageFactory factory;
    for (std::string& bytes : messages) {
      std::unique_ptr<pb::Message> m(factory.GetPrototype(method.request)->New());
      if (!m->ParseFromString(bytes)) continue;  // sent as given
      w.Substitute(m.get());
      bytes = m->SerializeAsString();
    }
  }

  const absl::Time start = absl::Now();
  const grpc::Status status = testing::CallByPath(caller, method.path, messages).status;
  static const bool trace = getenv("CORRIDOR_FUZZ_TRACE") != nullptr;
  if (trace) {
    fprintf(stderr, "call %s as %d: %d (%s) after %.1f ms\n", method.path.c_str(),
            data[1] % static_cast<int>(w.callers().size()), status.error_code(),
            status.error_message().c_str(), absl::ToDoubleMilliseconds(absl::Now() - start));
  }
  if (status.error_code() == grpc::StatusCode::UNKNOWN ||
      (status.error_code() == grpc::StatusCode::INTERNAL &&
       status.error_message().find("pars") == std::string::npos &&
       status.error_message().find("eserializ") == std::string::npos)) {
    Fail(
        absl::StrCat(method.path, " answered ", status.error_code(), ": ", status.error_message()));
  }
  if (++calls % kCheckEvery == 0) w.CheckLedger();
  return 0;
}
