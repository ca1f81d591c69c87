// Hostile input that reaches people and logs: what corridorctl prints from a
// node's answers, what corridord writes to its JSON log, serials in the
// forms people write them, and how refusals are recorded (issue 9).
#include <signal.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "client/ctl/certificates.h"
#include "client/ctl/ctl.h"
#include "client/ctl/display.h"
#include "client/ctl/roster_signing.h"
#include "client/lib/grpc_util.h"
#include "client/lib/pki.h"
#include "client/lib/roster.h"
#include "corridor/v1/case.pb.h"
#include "corridor/v1/federation.pb.h"
#include "corridor/v1/node.pb.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "ledger/note.h"
#include "server/auth/identity.h"
#include "server/node/config.h"
#include "tests/testing/federation.h"
#include "tests/testing/nodes.h"
#include "tests/testing/process.h"
#include "tests/testing/status_matchers.h"

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
    return new Reactor(ctx->method(), mode.load(), this);
  }

  // Declare the server after this service: it is shut down first, and every
  // reactor is done by then.
  ~HostileNode() override {
    absl::MutexLock lock(&done_mu_);
    for (Reactor* r : done_) r->Free();
  }

 private:
  class Reactor;
  void Done(Reactor* r) {
    absl::MutexLock lock(&done_mu_);
    done_.push_back(r);
  }

  absl::Mutex done_mu_;
  std::vector<Reactor*> done_ ABSL_GUARDED_BY(done_mu_);

  class Reactor : public grpc::ServerGenericBidiReactor {
   public:
    Reactor(std::string method, Mode mode, HostileNode* node)
        : method_(std::move(method)), mode_(mode), node_(node) {
      StartRead(&in_);
      Release();
    }
    void Free() {
      Acquire();
      delete this;
    }
    void OnReadDone(bool ok) override {
      Acquire();
      if (ok) {
        last_request_ = in_;
        in_.Clear();
        Release();
        StartRead(&in_);
        Release();
        return;
      }
      if (mode_ == Mode::kFail) {
        Release();
        Finish(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                            std::string(kHostile) + "\xff\xfe"));
        Release();
        return;
      }
      // "/pkg.Service/Method" → "pkg.Service.Method".
      std::string name = method_.substr(1);
      std::replace(name.begin(), name.end(), '/', '.');
      const auto* md = google::protobuf::DescriptorPool::generated_pool()->FindMethodByName(name);
      if (md == nullptr) {
        Release();
        Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "no such method: " + name));
        Release();
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
      Release();
      StartWrite(&out_);
      Release();
    }
    void OnWriteDone(bool) override {
      Finish(grpc::Status::OK);
      Release();
    }
    // Not deleted here: Finish() (gRPC++ code compiled into the test, so seen
    // by ThreadSanitizer) reads the reactor on the thread that called it, and
    // gRPC orders that read before OnDone in its own uninstrumented code. The
    // node frees its reactors when it is destroyed, acquiring what each
    // callback released after its last use.
    void OnDone() override { node_->Done(this); }

   private:
    // gRPC runs one reactor's callbacks one after another, possibly on
    // different threads, ordering them inside its own (uninstrumented) code:
    // ThreadSanitizer cannot see that order. Each callback acquires at its start
    // and releases before and after handing the reactor back to gRPC, so the
    // order is visible.
    void Acquire() { handoff_.load(std::memory_order_acquire); }
    void Release() { handoff_.fetch_add(1, std::memory_order_release); }

    const std::string method_;
    const Mode mode_;
    HostileNode* const node_;
    grpc::ByteBuffer in_, last_request_, out_;
    std::atomic<int> handoff_{0};
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
    ASSERT_TRUE(
        WriteFileAtomically(dir_ + "/signed-roster.json", fed_->Sign(fed_->MakeRoster(), 2)).ok());
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
    const Ed25519PrivateKey key = Ed25519PrivateKey::Generate();
    const note::Verifier vkey{"hostile", 0x01, key.public_key()};
    // An earlier checkpoint signed with that key, for `audit consistency --from`.
    EXPECT_TRUE(WriteFileAtomically(
                    dir_ + "/earlier.checkpoint",
                    note::SignCheckpoint(note::Checkpoint{"hostile", 1, {}, {}}, "hostile", key))
                    .ok());
    return {
        {"health", {}},
        {"peers", {}},
        {"whoami", {}},
        {"roster push", {"--in", dir_ + "/roster.json"}},
        {"admin backup", {"--out", dir_ + "/backup"}},
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
        {"evidence request",
         {"--holder", "ministry-id", "--case", "C-1", "--all", "--agreement", "a", "--legal-basis",
          "b", "--purpose", "p"}},
        {"evidence fetch", {"ER-1", "--out", dir_ + "/fetched"}},
        {"evidence custody", {"E-1", "--vkey", vkey.ToString()}},
        {"requests", {}},
        {"requests show", {"ER-1"}},
        {"decide", {"ER-1", "--approve"}},
        {"refer", {"C-1", "--to", "ministry-id", "--agreement", "a", "--purpose", "p"}},
        {"inbox", {}},
        {"accept", {"REF-1"}},
        {"decline", {"REF-1", "--reason", "no"}},
        {"update", {"C-1", "--note", "n"}},
        {"permit",
         {"C-1", "--referral", "REF-1", "--to", "x", "--purpose", "p", "--agreement", "a"}},
        {"outbox", {}},
        {"audit log", {}},
        {"audit checkpoint", {"--vkey", vkey.ToString(), "--state", dir_ + "/state"}},
        {"audit consistency",
         {"--from", dir_ + "/earlier.checkpoint", "--vkey", vkey.ToString(), "--state",
          dir_ + "/state"}},
        {"audit prove", {"0", "--vkey", vkey.ToString(), "--state", dir_ + "/state"}},
        {"audit forks", {"--vkey", vkey.ToString()}},
        {"audit export",
         {"--out", dir_ + "/export", "--vkey", vkey.ToString(), "--state", dir_ + "/state"}},
        // A bundle carries its roster: a real one, checked against the stewards.
        {"audit bundle",
         {"C-1", "--out", dir_ + "/bundle", "--roster", dir_ + "/signed-roster.json", "--stewards",
          fed_->WriteStewardsFile(), "--state", dir_ + "/state"}},
        {"audit reconcile", {"--peer", "ministry-id"}},
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

// `roster show` reads a file, but the roster in it came from other orgs: a
// hostile one (unsigned: `roster show` does not check signatures) is shown escaped.
TEST_F(CtlOutputTest, ARosterFromAFileIsShownEscaped) {
  const v1::Roster base = fed_->MakeRoster();
  auto valid = SignRoster(&base, "", "steward-1", fed_->stewards()[0]);
  ASSERT_TRUE(valid.ok()) << valid.status();
  v1::Envelope env;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(*valid, &env).ok());
  v1::Roster hostile;
  FillHostile(&hostile);
  env.set_payload(hostile.SerializeAsString());
  std::string json;
  ASSERT_TRUE(google::protobuf::util::MessageToJsonString(env, &json).ok());
  ASSERT_TRUE(WriteFileAtomically(dir_ + "/hostile-roster.json", json).ok());
  for (bool as_json : {false, true}) {
    std::vector<std::string> argv = {"roster", "show", "--in", dir_ + "/hostile-roster.json"};
    if (as_json) argv.push_back("--json");
    std::ostringstream out, err;
    EXPECT_EQ(ctl::Main(argv, out, err), 0) << err.str();
    ExpectSafeForTerminal(out.str(), "roster show (stdout)");
    ExpectSafeForTerminal(err.str(), "roster show (stderr)");
    EXPECT_TRUE(absl::StrContains(out.str(), "FORGED")) << out.str() << err.str();
  }
}

// ---- real nodes ----------------------------------------------------------------

using testing::BinaryPath;
using testing::CommandResult;
using testing::RunCommand;
using testing::Subprocess;

using testing::JsonValues;

class NodeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fed_.AddOrg("union-sg", v1::ORG_KIND_UNION);
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    fed_.AddOrg("inspectorate-sg", v1::ORG_KIND_INSPECTORATE);
    for (const std::string org : {"union-sg", "ministry-id", "inspectorate-sg"}) {
      configs_[org] = fed_.WriteNodeConfig(
          org, {{"cw", {"caseworker"}}, {"aud", {"auditor"}}, {"adm", {"admin"}}});
      users_[org + "/cw"] = fed_.IssueUser(org, "cw");
      users_[org + "/aud"] = fed_.IssueUser(org, "aud");
    }
  }
  void TearDown() override {
    for (auto& [org, node] : nodes_) {
      if (node) node->Stop(SIGTERM);
    }
  }
  // Replaces `org`'s config text `from` with `to` (before Start).
  void EditConfig(const std::string& org, const std::string& from, const std::string& to) {
    std::ifstream in(configs_[org]);
    std::string yaml((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_NE(yaml.find(from), std::string::npos);
    yaml.replace(yaml.find(from), from.size(), to);
    ASSERT_TRUE(WriteFileAtomically(configs_[org], yaml).ok());
  }
  void Start(const std::string& org) {
    nodes_[org] = std::make_unique<Subprocess>(
        std::vector<std::string>{BinaryPath("corridord"), "--config", configs_[org]}, LogPath(org));
    CommandResult r = Ctl(org + "/aud", {"health", "--wait", "60"});
    ASSERT_EQ(r.exit_code, 0) << r.err << nodes_[org]->Log();
  }
  std::string LogPath(const std::string& org) { return fed_.org(org).dir + "/corridord.log"; }
  // Runs corridorctl as `who` ("org/user", or a path prefix of a .crt/.key pair
  // for org `as_org`).
  CommandResult Ctl(const std::string& who, std::vector<std::string> args,
                    const std::string& cert_prefix = "") {
    const std::string org = who.substr(0, who.find('/'));
    const std::string prefix = cert_prefix.empty() ? users_[who] : cert_prefix;
    std::vector<std::string> argv = {BinaryPath("corridorctl")};
    argv.insert(argv.end(), args.begin(), args.end());
    for (const std::string& a :
         {std::string("--node"), fed_.org(org).endpoint(), std::string("--cert"), prefix + ".crt",
          std::string("--key"), prefix + ".key", std::string("--ca"),
          fed_.org(org).dir + "/ca.crt"}) {
      argv.push_back(a);
    }
    return RunCommand(argv);
  }
  // The audit log of `org` for `action`, as JSON.
  std::string Audit(const std::string& org, const std::vector<std::string>& filters) {
    std::vector<std::string> args = {"audit", "log", "--json", "--limit", "1000"};
    args.insert(args.end(), filters.begin(), filters.end());
    CommandResult r = Ctl(org + "/aud", args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }

  testing::TestFederation fed_;
  std::map<std::string, std::string> configs_, users_;
  std::map<std::string, std::unique_ptr<Subprocess>> nodes_;
};

// Class 2: a revoked serial matches however it is written, and one that cannot
// be read is refused when the config is checked.
TEST_F(NodeTest, RevokedSerialsMatchInEveryFormPeopleWriteThem) {
  const std::string cert_prefix = users_["union-sg/cw"];
  ASSERT_OK_AND_ASSIGN(std::string pem, ReadFileToString(cert_prefix + ".crt"));
  ASSERT_OK_AND_ASSIGN(pki::CertificateInfo info, pki::InspectCertificate(pem));
  const std::string hex = info.serial_hex;  // lower case, no leading zeros
  std::string colons, upper = absl::AsciiStrToUpper(hex);
  const std::string even = hex.size() % 2 ? "0" + hex : hex;
  for (size_t i = 0; i < even.size(); i += 2) {
    absl::StrAppend(&colons, i ? ":" : "", absl::AsciiStrToUpper(even.substr(i, 2)));
  }
  const std::vector<std::string> forms = {hex,
                                          upper,
                                          colons,
                                          absl::AsciiStrToLower(colons),
                                          "00" + hex,
                                          "0x" + upper,
                                          absl::StrReplaceAll(colons, {{":", " "}}),
                                          " " + colons + " "};
  for (const std::string& form : forms) {
    ASSERT_OK_AND_ASSIGN(std::string normal, pki::NormalizeSerial(form));
    EXPECT_EQ(normal, hex) << form;
    // The resolver a node runs, with the serial in its config and in the roster.
    ASSERT_OK_AND_ASSIGN(v1::NodeConfig config, LoadNodeConfig(configs_["union-sg"]));
    auto roster = std::make_shared<v1::Roster>(fed_.MakeRoster());
    v1::NodeConfig in_config = config;
    in_config.mutable_tls()->add_revoked_serials(form);
    SCOPED_TRACE(form);
    EXPECT_STATUS(IdentityResolver(in_config, roster).Resolve(pem, absl::Now()),
                  absl::StatusCode::kPermissionDenied, "revoked");
    roster->mutable_members(0)->add_revoked_serials(form);
    EXPECT_STATUS(IdentityResolver(config, roster).Resolve(pem, absl::Now()),
                  absl::StatusCode::kPermissionDenied, "revoked");
  }
  // The node itself, with the form `openssl x509 -text` prints.
  EditConfig("union-sg", "  ca_file: ca.crt\n",
             absl::StrCat("  ca_file: ca.crt\n  revoked_serials: [\"", colons, "\"]\n"));
  ASSERT_OK(LoadNodeConfig(configs_["union-sg"]).status());
  Start("union-sg");
  CommandResult r = Ctl("union-sg/cw", {"whoami"});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(absl::StrContains(r.err, "revoked")) << r.err;
  EXPECT_EQ(Ctl("union-sg/aud", {"whoami"}).exit_code, 0);
}

TEST_F(NodeTest, SerialsThatCannotBeReadAreRefusedByTheConfigCheck) {
  for (const std::string junk : {"", "xyz", "12g4", "0a;1b", "serial 0a", "0x", "::", "\u00e9"}) {
    EXPECT_FALSE(pki::NormalizeSerial(junk).ok()) << junk;
  }
  EditConfig("union-sg", "  ca_file: ca.crt\n",
             "  ca_file: ca.crt\n  revoked_serials: [\"0a:1b\", \"0a;1b\"]\n");
  EXPECT_STATUS(LoadNodeConfig(configs_["union-sg"]), absl::StatusCode::kInvalidArgument,
                "tls.revoked_serials[1]");
  CommandResult r =
      RunCommand({BinaryPath("corridord"), "--config", configs_["union-sg"], "--check-config"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(absl::StrContains(r.err + r.out, "tls.revoked_serials[1]")) << r.err << r.out;
  // In a roster, too.
  v1::Roster roster = fed_.MakeRoster();
  roster.mutable_members(0)->add_revoked_serials("not-a-serial");
  EXPECT_STATUS(SignRoster(&roster, "", "steward-1", fed_.stewards()[0]),
                absl::StatusCode::kInvalidArgument, "revoked_serials[0]");
}

// --check-config runs the start-up checks without serving: a valid
// configuration passes and says what was checked; a roster short of the
// threshold, a signing key id the roster does not list, a revoked or expired
// signing key, and a CA that is not the org's each fail it, exit 1, naming
// the cause; so does what the config's own checks refuse (a master key that is
// not one; SerialsThatCannotBeReadAreRefusedByTheConfigCheck).
TEST_F(NodeTest, CheckConfigRunsEveryStartUpCheckWithoutServing) {
  const std::string org = "ministry-id";
  const std::string dir = fed_.org(org).dir;
  auto check = [&] {
    return RunCommand({BinaryPath("corridord"), "--config", configs_[org], "--check-config"});
  };
  auto expect_refused = [&](const std::string& why, const std::string& says,
                            const std::string& stage = "would not start: ") {
    CommandResult r = check();
    EXPECT_EQ(r.exit_code, 1) << why << ": " << r.out;
    EXPECT_TRUE(absl::StrContains(r.err, stage)) << why << ": " << r.err;
    EXPECT_TRUE(absl::StrContains(r.err, says)) << why << ": " << r.err;
  };
  CommandResult ok = check();
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_TRUE(absl::StrContains(ok.out, "is signed by at least 2 of the configured stewards"))
      << ok.out;
  // Signed by two stewards, but three are required.
  EditConfig(org, "threshold: 2", "threshold: 3");
  expect_refused("threshold", "requires 3");
  EditConfig(org, "threshold: 3", "threshold: 2");
  // A key id the roster does not list for this org.
  EditConfig(org, "key_id: ministry-id-1", "key_id: ministry-id-9");
  expect_refused("unlisted key", "the roster lists no key \"ministry-id-9\"");
  EditConfig(org, "key_id: ministry-id-9", "key_id: ministry-id-1");
  // The key revoked, then past its valid_until.
  const std::string roster_file = dir + "/roster.json";
  ASSERT_OK_AND_ASSIGN(const std::string original, ReadFileToString(roster_file));
  v1::Roster roster = fed_.MakeRoster(1);
  for (auto& m : *roster.mutable_members()) {
    if (m.org() == org) m.mutable_signing_keys(0)->set_status(v1::KEY_STATUS_REVOKED);
  }
  ASSERT_OK(WriteFileAtomically(roster_file, fed_.Sign(roster, 2)));
  expect_refused("revoked key", "as revoked");
  roster = fed_.MakeRoster(1);
  for (auto& m : *roster.mutable_members()) {
    if (m.org() != org) continue;
    m.mutable_signing_keys(0)->set_status(v1::KEY_STATUS_RETIRED);
    m.mutable_signing_keys(0)->set_valid_until("2020-01-01T00:00:00Z");
  }
  ASSERT_OK(WriteFileAtomically(roster_file, fed_.Sign(roster, 2)));
  expect_refused("expired key", "was valid until 2020-01-01T00:00:00Z");
  ASSERT_OK(WriteFileAtomically(roster_file, original));
  // A master key that is not 32 bytes.
  ASSERT_OK_AND_ASSIGN(const std::string master, ReadFileToString(dir + "/master.key"));
  ASSERT_OK(WriteFileAtomically(dir + "/master.key", "c2hvcnQ=\n", 0600));
  expect_refused("master key", "must hold 32 random bytes", "configuration error: ");
  ASSERT_OK(WriteFileAtomically(dir + "/master.key", master, 0600));
  // Another org's CA as this node's.
  EditConfig(org, "ca_file: ca.crt", "ca_file: " + fed_.org("union-sg").dir + "/ca.crt");
  expect_refused("CA", "is not the CA the roster lists");
  EditConfig(org, "ca_file: " + fed_.org("union-sg").dir + "/ca.crt", "ca_file: ca.crt");
  EXPECT_EQ(check().exit_code, 0);
  // Nothing was served or opened: no data directory was made.
  EXPECT_FALSE(std::filesystem::exists(dir + "/data"));
}

// Class 6: a certificate with two spiffe identities is refused as ambiguous,
// and the refusal names every claim as unverified.
TEST_F(NodeTest, ACertificateWithTwoIdentitiesIsRefusedAndItsClaimsRecordedAsUnverified) {
  const testing::TestOrg& o = fed_.org("union-sg");
  pki::LeafOptions opts;
  opts.spiffe_uri = pki::UserSpiffeUri(fed_.federation(), "union-sg", "cw");
  opts.extra_uris_for_tests = {pki::UserSpiffeUri(fed_.federation(), "union-sg", "aud")};
  opts.common_name = "two";
  ASSERT_OK_AND_ASSIGN(pki::IssuedCertificate two, pki::IssueLeaf(o.ca, opts));
  const std::string prefix = o.dir + "/two";
  ASSERT_OK(WriteFileAtomically(prefix + ".crt", two.cert_pem));
  ASSERT_OK(WriteFileAtomically(prefix + ".key", two.key_pem, 0600));
  Start("union-sg");
  CommandResult r = Ctl("union-sg/two", {"whoami"}, prefix);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "ambiguous")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.out, "auditor")) << r.out;
  std::string json;
  for (int i = 0; i < 50; ++i) {
    json = Audit("union-sg", {"--action", "auth.refused"});
    if (!JsonValues(json, "reason").empty()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const auto subjects = JsonValues(json, "actor_subject");
  ASSERT_FALSE(subjects.empty()) << json;
  for (const std::string& s : subjects) EXPECT_TRUE(absl::StartsWith(s, "unverified:")) << s;
  // The reason names both claims, each quoted.
  EXPECT_TRUE(absl::StrContains(json, "ambiguous")) << json;
  EXPECT_TRUE(absl::StrContains(json, "unverified claims")) << json;
  EXPECT_TRUE(absl::StrContains(json, "/union-sg/user/cw\\\"")) << json;
  EXPECT_TRUE(absl::StrContains(json, "/union-sg/user/aud\\\"")) << json;
}

TEST_F(NodeTest, TheClaimsOfAnAmbiguousCertificateAreBoundedInTheRefusal) {
  const testing::TestOrg& o = fed_.org("union-sg");
  pki::LeafOptions opts;
  opts.spiffe_uri = pki::UserSpiffeUri(fed_.federation(), "union-sg", "cw");
  opts.extra_uris_for_tests = {
      pki::UserSpiffeUri(fed_.federation(), "union-sg", std::string(5000, 'a')),
      "spiffe://x/\x1b[2J", "spiffe://y", "spiffe://z"};
  opts.common_name = "five";
  ASSERT_OK_AND_ASSIGN(pki::IssuedCertificate five, pki::IssueLeaf(o.ca, opts));
  ASSERT_OK_AND_ASSIGN(v1::NodeConfig config, LoadNodeConfig(configs_["union-sg"]));
  IdentityResolver resolver(config, std::make_shared<v1::Roster>(fed_.MakeRoster()));
  absl::Status refused = resolver.Resolve(five.cert_pem, absl::Now()).status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnauthenticated);
  const std::string message(refused.message());
  EXPECT_TRUE(absl::StrContains(message, "5 spiffe:// identities")) << message;
  EXPECT_TRUE(absl::StrContains(message, "and 1 more")) << message;
  EXPECT_TRUE(absl::StrContains(message, "/union-sg/user/cw\"")) << message;
  EXPECT_LT(message.size(), 1000u);
  // The escape sequence is escaped: no raw control character in the refusal.
  EXPECT_TRUE(absl::StrContains(message, "spiffe://x/\\x1b[2J")) << message;
  EXPECT_TRUE(ctl::IsPrintable(absl::StrReplaceAll(message, {{"\\", ""}}))) << message;
}

// Sets every string field of `m` (recursively, repeated ones once) to `marker`.
void FillStrings(Message* m, const std::string& marker, int depth = 0) {
  const auto* d = m->GetDescriptor();
  const auto* r = m->GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->containing_oneof() != nullptr && r->HasOneof(*m, f->containing_oneof())) continue;
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
        f->type() == FieldDescriptor::TYPE_STRING) {
      f->is_repeated() ? r->AddString(m, f, marker) : r->SetString(m, f, marker);
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE && depth < 4 && !f->is_map()) {
      FillStrings(f->is_repeated() ? r->AddMessage(m, f) : r->MutableMessage(m, f), marker,
                  depth + 1);
    }
  }
}

// Class 3: every line corridord writes to its log is JSON, after callers sent
// bytes that are not UTF-8 in every string field of every method's request.
TEST_F(NodeTest, EveryLogLineIsJsonAfterInvalidUtf8InEveryStringFieldOfEveryRequest) {
  Start("union-sg");
  ASSERT_OK_AND_ASSIGN(TlsIdentity id, LoadTlsIdentity(users_["union-sg/cw"] + ".crt",
                                                       users_["union-sg/cw"] + ".key",
                                                       fed_.org("union-sg").dir + "/ca.crt"));
  auto channel = MakeMutualTlsChannel(id, fed_.org("union-sg").endpoint(), "");
  // Four channels; every request is sent on each, all calls in flight at once.
  std::vector<std::unique_ptr<grpc::GenericStub>> stubs;
  for (int i = 0; i < 4; ++i) {
    grpc::ChannelArguments args;
    args.SetInt("corridor.test.channel", i);  // distinct channels, not one shared subchannel
    stubs.push_back(std::make_unique<grpc::GenericStub>(grpc::CreateCustomChannel(
        fed_.org("union-sg").endpoint(),
        grpc::SslCredentials({id.roots_pem, id.key_pem, id.cert_pem}), args)));
  }
  stubs.push_back(std::make_unique<grpc::GenericStub>(channel));
  // Same length as the marker, not UTF-8.
  const std::string marker = "MARKER-UTF8";
  const std::string invalid = "bad\xff\xfe\xc0\xaf\xed\xa0\x80!";
  ASSERT_EQ(marker.size(), invalid.size());
  struct Call {
    std::string method;
    grpc::ClientContext ctx;
    grpc::ByteBuffer request, response;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable cv;
  size_t done = 0;
  int sent = 0;
  // Every service the node serves, from the files that define them.
  const std::set<const google::protobuf::FileDescriptor*> files = {
      v1::Case::descriptor()->file(), v1::StatusRequest::descriptor()->file(),
      v1::ReferCaseRequest::descriptor()->file(), v1::Envelope::descriptor()->file()};
  for (const auto* file : files) {
    for (int s = 0; s < file->service_count(); ++s) {
      for (int m = 0; m < file->service(s)->method_count(); ++m) {
        const auto* method = file->service(s)->method(m);
        std::unique_ptr<Message> req(google::protobuf::MessageFactory::generated_factory()
                                         ->GetPrototype(method->input_type())
                                         ->New());
        FillStrings(req.get(), marker);
        std::string bytes = absl::StrReplaceAll(req->SerializeAsString(), {{marker, invalid}});
        if (bytes == req->SerializeAsString()) continue;  // no string fields
        ++sent;
        for (auto& stub : stubs) {
          auto call = std::make_unique<Call>();
          call->method = method->full_name();
          grpc::Slice slice(bytes);
          call->request = grpc::ByteBuffer(&slice, 1);
          call->ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
          Call* c = call.get();
          calls.push_back(std::move(call));
          stub->UnaryCall(&c->ctx,
                          absl::StrCat("/", file->service(s)->full_name(), "/", method->name()),
                          grpc::StubOptions(), &c->request, &c->response, [&, c](grpc::Status st) {
                            std::lock_guard<std::mutex> lock(mu);
                            c->status = st;
                            ++done;
                            cv.notify_one();
                          });
        }
      }
    }
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done == calls.size(); });
  }
  for (const auto& c : calls) EXPECT_FALSE(c->status.ok()) << c->method;
  EXPECT_GE(sent, 15);  // every method whose request has a string field
  nodes_["union-sg"]->Stop(SIGTERM);
  nodes_["union-sg"].reset();
  std::ifstream in(LogPath("union-sg"));
  std::string line;
  int lines = 0, protobuf_lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    google::protobuf::Struct parsed;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &parsed).ok())
        << "not a JSON line: " << ctl::Printable(line);
    if (absl::StrContains(line, "\"protobuf.log\"")) ++protobuf_lines;
  }
  EXPECT_GT(lines, 0);
  // The trigger fired: libprotobuf complained, in JSON.
  EXPECT_GT(protobuf_lines, 0);
}

// Classes 4 and 5: metadata-only evidence on a received case says where the
// content is; every policy refusal of a referral is recorded as denied.
TEST_F(NodeTest, ReceivedEvidenceAndReferralRefusals) {
  // A second, narrower agreement: union-sg and ministry-id, for fee recovery.
  v1::Roster roster = fed_.MakeRoster();
  v1::Agreement* narrow = roster.add_agreements();
  narrow->set_id("narrow");
  narrow->add_parties("union-sg");
  narrow->add_parties("ministry-id");
  narrow->add_purposes("fee-recovery");
  for (const std::string org : {"union-sg", "ministry-id"}) {
    ASSERT_OK(WriteFileAtomically(fed_.org(org).dir + "/roster.json",
                                  fed_.Sign(roster, fed_.threshold())));
    Start(org);
  }
  CommandResult r = Ctl("union-sg/cw", {"case", "create", "--json", "--category", "wage-theft",
                                        "--origin", "ID", "--destination", "SG", "--worker-name",
                                        "Dewi", "--consent", "ministry-id:case-referral"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string case_id = JsonValues(r.out, "id").at(0);
  const std::string file = fed_.root() + "/payslip.pdf";
  ASSERT_OK(WriteFileAtomically(file, "payslip: 0 SGD for March"));
  r = Ctl("union-sg/cw", {"evidence", "add", case_id, file, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string evidence_id = JsonValues(r.out, "id").at(0);

  // Every policy refusal of a referral: denied, never error.
  const std::vector<std::vector<std::string>> refused = {
      {"--to", "union-sg", "--agreement", "test-agreement", "--purpose", "case-referral"},
      {"--to", "ministry-id", "--agreement", "no-such", "--purpose", "case-referral"},
      {"--to", "inspectorate-sg", "--agreement", "narrow", "--purpose", "fee-recovery"},
      {"--to", "ministry-id", "--agreement", "narrow", "--purpose", "case-referral"},
      // Consent covers ministry-id only.
      {"--to", "inspectorate-sg", "--agreement", "test-agreement", "--purpose", "case-referral",
       "--include", "personal-data"},
  };
  for (const auto& args : refused) {
    std::vector<std::string> argv = {"refer", case_id};
    argv.insert(argv.end(), args.begin(), args.end());
    r = Ctl("union-sg/cw", argv);
    EXPECT_EQ(r.exit_code, 1) << absl::StrJoin(args, " ");
  }
  EXPECT_TRUE(absl::StrContains(r.err, "consent")) << r.err;
  EXPECT_TRUE(absl::StrContains(r.err, "refused")) << r.err;  // PERMISSION_DENIED, as explained

  r = Ctl("union-sg/cw",
          {"refer", case_id, "--to", "ministry-id", "--agreement", "test-agreement", "--purpose",
           "case-referral", "--include", "personal-data," + evidence_id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string received;
  for (int i = 0; i < 300 && received.empty(); ++i) {
    auto ids = JsonValues(Ctl("ministry-id/cw", {"inbox", "--json"}).out, "referral_id");
    if (!ids.empty())
      received = ids[0];
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_FALSE(received.empty());
  r = Ctl("ministry-id/cw", {"accept", received, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string local = JsonValues(r.out, "case_id").at(0);

  // The evidence's content stayed with union-sg: said plainly, not as corruption.
  r = Ctl("ministry-id/cw", {"evidence", "get", local, evidence_id, "--out",
                             fed_.root() + "/got.pdf", "--purpose", "case-referral"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "stayed with union-sg")) << r.err;
  EXPECT_FALSE(absl::StrContains(r.err, "SHA-256 recorded")) << r.err;
  EXPECT_FALSE(absl::StrContains(nodes_["ministry-id"]->Log(), "evidence.corrupt"));

  // Onward sharing of the received case, which the originator did not allow.
  r = Ctl("ministry-id/cw", {"refer", local, "--to", "inspectorate-sg", "--agreement",
                             "test-agreement", "--purpose", "case-referral"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(absl::StrContains(r.err, "onward")) << r.err;

  const std::string denied =
      Audit("union-sg", {"--action", "referral.send", "--outcome", "denied"});
  EXPECT_EQ(JsonValues(denied, "action").size(), refused.size()) << denied;
  EXPECT_TRUE(
      JsonValues(Audit("union-sg", {"--action", "referral.send", "--outcome", "error"}), "action")
          .empty());
  EXPECT_EQ(JsonValues(Audit("ministry-id", {"--action", "referral.send", "--outcome", "denied"}),
                       "action")
                .size(),
            1u);
}

}  // namespace
}  // namespace corridor
