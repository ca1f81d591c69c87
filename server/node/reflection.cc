#include "server/node/reflection.h"

#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "client/lib/grpc_util.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "ledger/base/log.h"
#include "server/audit/audited_call.h"
#include "server/auth/auth.h"
#include "server/auth/rpc.h"

namespace corridor {

namespace pb = google::protobuf;
using grpc::reflection::v1alpha::ServerReflection;
using grpc::reflection::v1alpha::ServerReflectionRequest;
using grpc::reflection::v1alpha::ServerReflectionResponse;

namespace {

// `file`, then the files it imports (each once), as the protocol sends them.
void AddFileAndImports(const pb::FileDescriptor* file, std::set<std::string>* sent,
                       grpc::reflection::v1alpha::FileDescriptorResponse* out) {
  if (!sent->insert(file->name()).second) return;
  pb::FileDescriptorProto proto;
  file->CopyTo(&proto);
  out->add_file_descriptor_proto(proto.SerializeAsString());
  for (int i = 0; i < file->dependency_count(); ++i)
    AddFileAndImports(file->dependency(i), sent, out);
}

void SetError(grpc::StatusCode code, std::string message, ServerReflectionResponse* response) {
  response->mutable_error_response()->set_error_code(code);
  response->mutable_error_response()->set_error_message(std::move(message));
}

}  // namespace

ServerReflectionResponse AnswerReflection(const ServerReflectionRequest& request,
                                          const std::vector<std::string>& services) {
  ServerReflectionResponse response;
  response.set_valid_host(request.host());
  *response.mutable_original_request() = request;
  const pb::DescriptorPool* pool = pb::DescriptorPool::generated_pool();
  const pb::FileDescriptor* file = nullptr;
  switch (request.message_request_case()) {
    case ServerReflectionRequest::kListServices:
      for (const std::string& name : services) {
        response.mutable_list_services_response()->add_service()->set_name(name);
      }
      return response;
    case ServerReflectionRequest::kFileByFilename:
      file = pool->FindFileByName(request.file_by_filename());
      if (file == nullptr) SetError(grpc::StatusCode::NOT_FOUND, "no such file", &response);
      break;
    case ServerReflectionRequest::kFileContainingSymbol:
      file = pool->FindFileContainingSymbol(request.file_containing_symbol());
      if (file == nullptr) SetError(grpc::StatusCode::NOT_FOUND, "no such symbol", &response);
      break;
    case ServerReflectionRequest::kFileContainingExtension: {
      const auto& ext = request.file_containing_extension();
      const pb::Descriptor* type = pool->FindMessageTypeByName(ext.containing_type());
      const pb::FieldDescriptor* field =
          type == nullptr ? nullptr : pool->FindExtensionByNumber(type, ext.extension_number());
      if (field == nullptr) {
        SetError(grpc::StatusCode::NOT_FOUND, "no such extension", &response);
      } else {
        file = field->file();
      }
      break;
    }
    case ServerReflectionRequest::kAllExtensionNumbersOfType: {
      const pb::Descriptor* type =
          pool->FindMessageTypeByName(request.all_extension_numbers_of_type());
      if (type == nullptr) {
        SetError(grpc::StatusCode::NOT_FOUND, "no such message type", &response);
        break;
      }
      std::vector<const pb::FieldDescriptor*> extensions;
      pool->FindAllExtensions(type, &extensions);
      auto* numbers = response.mutable_all_extension_numbers_response();
      numbers->set_base_type_name(type->full_name());
      for (const pb::FieldDescriptor* e : extensions) numbers->add_extension_number(e->number());
      break;
    }
    default:
      SetError(grpc::StatusCode::UNIMPLEMENTED, "this node does not answer that request",
               &response);
  }
  if (file != nullptr) {
    std::set<std::string> sent;
    AddFileAndImports(file, &sent, response.mutable_file_descriptor_response());
  }
  return response;
}

// One reflection stream: reads a request, writes its answer, reads the next;
// one operation outstanding at a time, so exactly one Finish. Touches the
// watchdog whenever it moves; the watchdog cancels it when it does not.
class ReflectionService::Stream
    : public grpc::ServerBidiReactor<ServerReflectionRequest, ServerReflectionResponse> {
 public:
  Stream(ReflectionService* service, grpc::CallbackServerContext* ctx, const Rpc& rpc)
      : service_(service), ctx_(ctx) {
    service_->live_.fetch_add(1);
    auto caller = Authorize(*service_->identity_, *ctx, rpc, service_->log_);
    if (caller.ok()) SetActor(*caller, &event_);
    event_.set_action("reflection.request");
    event_.set_resource_kind("service");
    event_.set_resource_id(ServerReflection::service_full_name());
    watch_ = service_->watchdog_.Register([this] { TimedOut(); });
    if (!caller.ok()) {
      Finish(ToGrpcStatus(caller.status()));  // refused and recorded by Authorize
      return;
    }
    slot_ = service_->slots_.TryAcquire();
    if (slot_ == nullptr) {
      RecordRefusal(service_->log_, this, event_,
                    absl::ResourceExhaustedError(absl::StrCat(
                        "this node already has ", kMaxStreams,
                        " reflection streams open, the most it serves at once; try again later")));
      return;
    }
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return Finish(grpc::Status::OK);  // the client closed (or the call was cancelled)
    watch_->Touch();
    if (request_.ByteSizeLong() > kMaxRequestBytes) {
      return RecordRefusal(service_->log_, this, event_,
                           absl::InvalidArgumentError(absl::StrCat(
                               "a reflection request may be at most ", kMaxRequestBytes,
                               " bytes; this one was ", request_.ByteSizeLong())));
    }
    response_ = AnswerReflection(request_, *service_->services_);
    StartWrite(&response_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the client went away"));
    watch_->Touch();
    request_.Clear();
    StartRead(&request_);
  }

  void OnDone() override {
    service_->watchdog_.Unregister(watch_);  // waits for a running timeout of this stream
    // The count goes down last: the service's destructor waits for it.
    std::atomic<int>* live = &service_->live_;
    delete this;
    live->fetch_sub(1);
  }

 private:
  // Silent for the idle timeout: cancel it. Nothing was granted that the
  // ledger records, so the cut-off is logged, not recorded.
  void TimedOut() {
    log::Warn("reflection.idle",
              {{"caller", absl::StrCat(event_.actor_org(), "/", event_.actor_subject())}});
    ctx_->TryCancel();
  }

  ReflectionService* const service_;
  grpc::CallbackServerContext* const ctx_;
  StreamWatchdog::Registration* watch_ = nullptr;
  std::unique_ptr<TransferSlots::Slot> slot_;
  v1::AccessEvent event_;  // set before the first read; not changed after
  ServerReflectionRequest request_;
  ServerReflectionResponse response_;
};

ReflectionService::ReflectionService(std::shared_ptr<const std::vector<std::string>> services,
                                     const IdentityResolver* identity, AccessLog* log,
                                     absl::Duration idle_timeout, const Clock* clock)
    : services_(std::move(services)),
      identity_(identity),
      log_(log),
      watchdog_(idle_timeout, clock) {}

ReflectionService::~ReflectionService() {
  while (live_.load() > 0) absl::SleepFor(absl::Milliseconds(1));
}

grpc::ServerBidiReactor<ServerReflectionRequest, ServerReflectionResponse>*
ReflectionService::ServerReflectionInfo(grpc::CallbackServerContext* ctx) {
  return new Stream(this, ctx, Rpc::Served<ServerReflection>());
}

}  // namespace corridor
