// Hostile input that reaches people and logs: what corridorctl prints from a
// node's answers, what corridord writes to its JSON log, serials in the
// forms people write them, and how refusals are recorded (issue 9).
#include <atomic>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "client/ctl.h"
#include "client/display.h"
#include "client/roster.h"
#include "corridor/v1/case.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ledger/crypto.h"
#include "ledger/note.h"
#include "tests/testing/federation.h"

namespace corridor {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

// ---- corridorctl against a hostile node -------------------------------------

// What a hostile node puts in every string it answers: a newline that would
// start a forged row, terminal escape sequences, a bell, DEL, a C1 control,
// bidi overrides, a line separator and a zero-width space.
const char kHostile[] =
    "id\nFORGED union-sg/user/admin1 case.erase allowed\r\x1b[31m\x1b]0;title\x07\x7f"
    "\xc2\x9b\xe2\x80\xae\xe2\x80\xa8\xe2\x81\xa6\xe2\x80\x8b\t|end";

// Sets every string field of `m`, recursively (repeated ones twice, one
// member of each oneof), to kHostile; bytes fields stay empty. New fields are
// covered without changing this test.
void FillHostile(Message* m, int depth = 0) {
  const auto* d = m->GetDescriptor();
  const auto* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->containing_oneof() != nullptr && r->HasOneof(*m, f->containing_oneof())) continue;
    const int copies = f->is_repeated() ? 2 : 1;
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
        f->type() != FieldDescriptor::TYPE_BYTES) {
      for (int k = 0; k < copies; ++k) {
        f->is_repeated() ? r->AddString(m, f, kHostile) : r->SetString(m, f, kHostile);
      }
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && depth < 4) {
      for (int k = 0; k < copies; ++k) {
        FillHostile(f->is_repeated() ? r->AddMessage(m, f) : r->MutableMessage(m, f), depth + 1);
      }
    }
  }
}

// Finds every message of `type` inside `m` (itself included).
void ForEach(Message* m, const google::protobuf::Descriptor* type,
             const std::function<void(Message*)>& fn) {
  if (m->GetDescriptor() == type) fn(m);
  const auto* r = m->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int k = 0; k < r->FieldSize(*m, f); ++k)
        ForEach(r->MutableRepeatedMessage(m, f, k), type, fn);
    } else {
      ForEach(r->MutableMessage(m, f), type, fn);
    }
  }
}

// A node that answers every method of every service with a response whose
// every string is hostile (kAnswer), or refuses every call with a hostile
// error message (kFail). It answers through the descriptor pool, so a new
// method is answered without changing this test.
class HostileNode : public grpc::CallbackGenericService {
 public:
  enum class Mode { kAnswer, kFail };
  std::atomic<Mode> mode{Mode::kAnswer};

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* ctx) override {
    return new Reactor(ctx->method(), mode.load());
  }

 private:
  class Reactor : public grpc::ServerGenericBidiReactor {
   public:
    Reactor(std::string method, Mode mode) : method_(std::move(method)), mode_(mode) {
      StartRead(&in_);
    }
    void OnReadDone(bool ok) override {
      if (ok) {
        last_request_ = in_;
        in_.Clear();
        StartRead(&in_);
        return;
      }
      if (mode_ == Mode::kFail) {
        Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            std::string(kHostile) + "\xff\xfe"));
        return;
      }
      // "/pkg.Service/Method" → "pkg.Service.Method".
      std::string name = method_.substr(1);
      std::replace(name.begin(), name.end(), '/', '.');
      const auto* md = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(name);
      if (md == nullptr) {
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no such method: " + name));
        return;
      }
      std::unique_ptr<Message> resp(google::protobuf::MessageFactory::generated_factory()
                                        ->GetPrototype(md->output_type())
                                        ->New());
      FillHostile(resp.get());
      // Evidence whose digest matches what is sent (nothing), so the commands
      // that check it go on to print the item.
      ForEach(resp.get(), v1::EvidenceItem::descriptor(), [](Message* m) {
        auto* item = static_cast<v1::EvidenceItem*>(m);
        item->set_size(0);
        item->set_sha256(DigestBytes(Sha256("")));
      });
      // A listing ends: the page asked for with a token has no next one.
      std::unique_ptr<Message> req(google::protobuf::MessageFactory::generated_factory()
                                       ->GetPrototype(md->input_type())
                                       ->New());
      std::vector<grpc::Slice> slices;
      std::string bytes;
      if (last_request_.Dump(&slices).ok()) {
        for (const auto& s : slices)
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
      }
      const auto* token = md->input_type()->FindFieldByName("page_token");
      const auto* next = md->output_type()->FindFieldByName("next_page_token");
      if (req->ParseFromString(bytes) && token != nullptr && next != nullptr &&
          !req->GetReflection()->GetString(*req, token).empty()) {
        resp->GetReflection()->SetString(resp.get(), next, "");
      }
      grpc::Slice slice(resp->SerializeAsString());
      out_ = grpc::ByteBuffer(&slice, 1);
      StartWrite(&out_);
    }
    void OnWriteDone(bool) override { Finish(grpc::Status::OK); }
    void OnDone() override { delete this; }

   private:
    const std::string method_;
    const Mode mode_;
    grpc::ByteBuffer in_, last_request_, out_;
  };
};

// Fails the test if `text` holds anything but printable UTF-8 and newlines,
// or (unless `lines_are_values`: a checkpoint is a note of lines) a line
// that a value started.
void ExpectSafeForTerminal(const std::string& text, const std::string& what,
                           bool lines_are_values = false) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    // Printable() escapes a backslash too; the output's own backslashes are
    // the escapes it wrote, so they are taken out before the check.
    const std::string without = absl::StrReplaceAll(line, {{"\\", ""}});
    EXPECT_TRUE(ctl::IsPrintable(without))
        << what << ": raw control characters or bytes reached the terminal in line: "
        << ctl::Printable(line);
    if (!lines_are_values) {
      EXPECT_FALSE(absl::StartsWith(line, "FORGED")) << what << ": a value started a line";
    }
  }
}

class CtlOutputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_ = std::make_unique<testing::TestFederation>();
    testing::TestOrg& org = fed_->AddOrg("union-sg");
    user_ = fed_->IssueUser("union-sg", "auditor1");
    grpc::SslServerCredentialsOptions tls(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    tls.pem_root_certs = org.ca.cert_pem;
    tls.pem_key_cert_pairs.push_back({org.node.key_pem, org.node.cert_pem});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(tls), &port_);
    builder.RegisterCallbackGenericService(&node_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    dir_ = fed_->root();
    ASSERT_TRUE(WriteFileAtomically(dir_ + "/empty", "").ok());
    ASSERT_TRUE(WriteFileAtomically(dir_ + "/roster.json", "{}").ok());
  }
  void TearDown() override { server_->Shutdown(); }

  // Runs corridorctl; returns stdout and stderr together, labelled.
  std::pair<std::string, std::string> Run(std::vector<std::string> argv) {
    const std::string ca = fed_->org("union-sg").dir + "/ca.crt";
    for (const std::string& a : std::vector<std::string>{
             "--node", absl::StrCat("127.0.0.1:", port_), "--cert", user_ + ".crt", "--key",
             user_ + ".key", "--ca", ca, "--timeout", "20"}) {
      argv.push_back(a);
    }
    std::ostringstream out, err;
    ctl::Main(argv, out, err);
    return {out.str(), err.str()};
  }

  // Every command that talks to a node, with what it needs to reach the node.
  std::map<std::string, std::vector<std::string>> Commands() {
    const note::Verifier vkey{"hostile", 0x01, Ed25519PrivateKey::Generate().public_key()};
    return {
        {"health", {}},
        {"whoami", {}},
        {"roster push", {"--in", dir_ + "/roster.json"}},
        {"case create",
         {"--category", "wage-theft", "--origin", "ID", "--destination", "SG", "--worker-name",
          "W"}},
        {"case show", {"C-1", "--purpose", "case-handling"}},
        {"case list", {}},
        {"case update", {"C-1", "--status", "open"}},
        {"case close", {"C-1"}},
        {"case erase", {"C-1", "--reason", "asked"}},
        {"evidence add", {"C-1", dir_ + "/empty"}},
        {"evidence list", {"C-1"}},
        {"evidence get", {"C-1", "E-1", "--out", dir_ + "/got", "--purpose", "case-handling"}},
        {"refer", {"C-1", "--to", "ministry-id", "--agreement", "a", "--purpose", "p"}},
        {"inbox", {}},
        {"accept", {"REF-1"}},
        {"decline", {"REF-1", "--reason", "no"}},
        {"update", {"C-1", "--note", "n"}},
        {"permit",
         {"C-1", "--referral", "REF-1", "--to", "x", "--purpose", "p", "--agreement", "a"}},
        {"outbox", {}},
        {"audit log", {}},
        {"audit checkpoint", {}},
        {"audit prove", {"0", "--vkey", vkey.ToString()}},
        {"audit export", {"--out", dir_ + "/export"}},
    };
  }

  std::unique_ptr<testing::TestFederation> fed_;
  std::string user_, dir_;
  int port_ = 0;
  HostileNode node_;
  std::unique_ptr<grpc::Server> server_;
};

std::vector<std::string> Words(const std::string& command) { return absl::StrSplit(command, ' '); }

TEST_F(CtlOutputTest, TheTestWalksEveryCommandThatTalksToANode) {
  const auto commands = Commands();
  for (const std::string& name : ctl::NodeCommands()) {
    EXPECT_TRUE(commands.count(name)) << "add \"" << name << "\" to CtlOutputTest::Commands()";
  }
}

TEST_F(CtlOutputTest, EveryValueFromANodeIsShownEscapedInTablesListingsAndJson) {
  std::set<std::string> shown;  // commands whose output shows a hostile value
  for (const auto& [name, args] : Commands()) {
    for (bool json : {false, true}) {
      std::vector<std::string> argv = Words(name);
      argv.insert(argv.end(), args.begin(), args.end());
      if (json) argv.push_back("--json");
      const auto [out, err] = Run(argv);
      const std::string what = absl::StrCat(name, json ? " --json" : "");
      ExpectSafeForTerminal(out, what + " (stdout)", name == "audit checkpoint");
      ExpectSafeForTerminal(err, what + " (stderr)");
      if (absl::StrContains(out, "FORGED")) shown.insert(name);
      // JSON stays JSON, with the value intact inside it.
      if (json && !out.empty() && absl::StartsWith(out, "{")) {
        google::protobuf::Value parsed;
        EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(out, &parsed).ok())
            << what << " printed invalid JSON: " << ctl::Printable(out);
      }
    }
  }
  // The walk reached the printing: these show values from the answer.
  for (const char* name : {"whoami", "case show", "case list", "evidence list", "evidence get",
                           "inbox", "outbox", "audit log", "health", "refer", "accept"}) {
    EXPECT_TRUE(shown.count(name)) << name << " showed no value from the node's answer";
  }
}

TEST_F(CtlOutputTest, ANodesErrorMessagesAreShownEscaped) {
  node_.mode = HostileNode::Mode::kFail;
  for (const auto& [name, args] : Commands()) {
    std::vector<std::string> argv = Words(name);
    argv.insert(argv.end(), args.begin(), args.end());
    const auto [out, err] = Run(argv);
    ExpectSafeForTerminal(out, name + " (stdout)");
    ExpectSafeForTerminal(err, name + " (stderr)");
    EXPECT_TRUE(absl::StrContains(err, "FORGED")) << name << ": " << ctl::Printable(err);
  }
}

TEST_F(CtlOutputTest, AnAuditLogRowCannotBeForged) {
  const auto [out, err] = Run({"audit", "log"});
  // Header plus the two hostile events, and the page hint: nothing more.
  std::vector<std::string> lines = absl::StrSplit(out, '\n', absl::SkipEmpty());
  EXPECT_EQ(lines.size(), 4u) << ctl::Printable(out);
  EXPECT_TRUE(absl::StrContains(out, "id\\nFORGED union-sg/user/admin1")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\\x1b[31m")) << out;
  EXPECT_TRUE(absl::StrContains(out, "\\u202e")) << out;
}

}  // namespace
}  // namespace corridor
