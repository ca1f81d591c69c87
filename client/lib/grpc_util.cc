#include "client/lib/grpc_util.h"

#include "ledger/crypto/crypto.h"

namespace corridor {

namespace {

void AppendVarint(uint64_t v, std::string& out) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// google.rpc.Status{code = 1, message = 2} in protobuf wire format.
std::string RpcStatusBytes(int code, absl::string_view message) {
  std::string out;
  out.push_back(0x08);
  AppendVarint(static_cast<uint64_t>(code), out);
  out.push_back(0x12);
  AppendVarint(message.size(), out);
  out.append(message.data(), message.size());
  return out;
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()),
                      RpcStatusBytes(static_cast<int>(status.code()), status.message()));
}

bool AnsweredByServer(const grpc::Status& status, grpc::Channel& channel) {
  if (!status.error_details().empty()) return true;
  return channel.GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

absl::StatusOr<TlsIdentity> LoadTlsIdentity(const std::string& cert_file,
                                            const std::string& key_file,
                                            const std::string& ca_file) {
  TlsIdentity id;
  auto cert = ReadFileToString(cert_file);
  if (!cert.ok()) return cert.status();
  auto key = ReadFileToString(key_file);
  if (!key.ok()) return key.status();
  auto ca = ReadFileToString(ca_file);
  if (!ca.ok()) return ca.status();
  id.cert_pem = *std::move(cert);
  id.key_pem = *std::move(key);
  id.roots_pem = *std::move(ca);
  return id;
}

std::shared_ptr<grpc::Channel> MakeMutualTlsChannel(const TlsIdentity& identity,
                                                    const std::string& target,
                                                    const std::string& server_name,
                                                    int max_message_bytes) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = identity.roots_pem;
  ssl.pem_private_key = identity.key_pem;
  ssl.pem_cert_chain = identity.cert_pem;
  grpc::ChannelArguments args;
  if (!server_name.empty()) args.SetSslTargetNameOverride(server_name);
  args.SetMaxReceiveMessageSize(max_message_bytes);
  args.SetMaxSendMessageSize(max_message_bytes);
  // Fail fast on a dead peer instead of waiting out long reconnect backoffs.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args);
}

std::string PeerCertificatePem(const grpc::AuthContext& context) {
  auto values = context.FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (values.empty()) return "";
  return std::string(values.front().data(), values.front().size());
}

}  // namespace corridor
