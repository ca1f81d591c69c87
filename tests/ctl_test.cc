// corridorctl in process: ctl::Main with argv and string streams, against a
// real node started in this process (mutual TLS on a loopback port). Every
// command group at least once, with its output and exit code; usage errors
// (unknown command, unknown or valueless option, missing option, no node
// configured, a node that is not there) answered in words a caseworker can act
// on with a non-zero exit; `--help` of every command, generated from the
// command table, listing each of its options; and many commands in flight at
// once.
#include "client/ctl/ctl.h"

#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/ctl/command.h"
#include "gtest/gtest.h"
#include "ledger/crypto/crypto.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "tests/testing/ctl_run.h"
#include "tests/testing/federation.h"
#include "tests/testing/status_matchers.h"

namespace corridor {
namespace {

namespace fs = std::filesystem;

using testing::Ctl;
using testing::CtlRun;
using testing::ExpectWords;

// The first word after `prefix` in `text`, e.g. the id in "created case C-1\n".
std::string WordAfter(const std::string& text, const std::string& prefix) {
  const size_t at = text.find(prefix);
  if (at == std::string::npos) return "";
  std::string rest = text.substr(at + prefix.size());
  return std::string(rest.substr(0, rest.find_first_of(" \n:;,)")));
}

class CtlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // The connection comes from the options in these tests, never from the
    // environment of whoever runs them.
    testing::ClearCtlEnvironment();
    fed_.AddOrg("union-sg");
    fed_.AddOrg("ministry-id", v1::ORG_KIND_MINISTRY);
    ASSERT_OK_AND_ASSIGN(v1::NodeConfig config,
                         LoadNodeConfig(fed_.WriteNodeConfig("union-sg", {{"cw", {"caseworker"}},
                                                                          {"pros", {"prosecutor"}},
                                                                          {"appr", {"approver"}},
                                                                          {"aud", {"auditor"}},
                                                                          {"adm", {"admin"}}})));
    ASSERT_OK_AND_ASSIGN(node_, Node::Start(config));
    for (const char* user : {"cw", "pros", "appr", "aud", "adm"}) fed_.IssueUser("union-sg", user);
  }
  void TearDown() override {
    if (node_) node_->Shutdown(absl::Seconds(1));
  }

  // The options that reach the node as `user` of union-sg.
  std::vector<std::string> As(const std::string& user) {
    const testing::TestOrg& o = fed_.org("union-sg");
    return {"--node", o.endpoint(),
            "--cert", absl::StrCat(o.dir, "/", user, ".crt"),
            "--key",  absl::StrCat(o.dir, "/", user, ".key"),
            "--ca",   o.dir + "/ca.crt"};
  }
  // `words` + `args` + the connection options of `user`.
  CtlRun CtlAs(const std::string& user, std::vector<std::string> argv) {
    for (std::string& o : As(user)) argv.push_back(std::move(o));
    return Ctl(argv);
  }
  std::string Dir(const std::string& name) const { return fed_.root() + "/" + name; }
  std::string RosterFile() { return fed_.org("union-sg").dir + "/roster.json"; }

  std::string CreateCase() {
    CtlRun r = CtlAs("cw", {"case", "create", "--category", "recruitment-fees", "--origin", "id",
                            "--destination", "sg", "--worker-name", "Siti Rahayu", "--sector",
                            "domestic-work", "--narrative", "charged eight months of wages"});
    EXPECT_EQ(r.code, 0) << r;
    return WordAfter(r.out, "created case ");
  }

  testing::TestFederation fed_;
  std::unique_ptr<Node> node_;
};

// ---- help and usage errors -------------------------------------------------

TEST_F(CtlTest, HelpListsEveryCommandAndEachCommandsHelpListsItsOptions) {
  CtlRun help = Ctl({"help"});
  EXPECT_EQ(help.code, 0) << help;
  ASSERT_FALSE(ctl::Commands().empty());
  for (const ctl::Command& cmd : ctl::Commands()) {
    const std::string name = absl::StrJoin(cmd.words, " ");
    SCOPED_TRACE(name);
    EXPECT_TRUE(absl::StrContains(help.out, absl::StrCat("  ", name, " "))) << help;
    std::vector<std::string> argv = cmd.words;
    argv.push_back("--help");
    CtlRun r = Ctl(argv);
    EXPECT_EQ(r.code, 0) << r;
    EXPECT_TRUE(absl::StartsWith(r.out, absl::StrCat("usage: corridorctl ", name))) << r;
    EXPECT_TRUE(absl::StrContains(r.out, cmd.summary)) << r;
    for (const OptionSpec& o : cmd.options) {
      EXPECT_TRUE(absl::StrContains(r.out, absl::StrCat("--", o.name))) << o.name << "\n" << r;
      EXPECT_TRUE(absl::StrContains(r.out, o.help)) << o.name << "\n" << r;
    }
    EXPECT_TRUE(r.err.empty()) << r;
  }
  // No command at all: the list, on stderr, and a usage exit.
  CtlRun none = Ctl({});
  EXPECT_EQ(none.code, 2) << none;
  EXPECT_TRUE(absl::StrContains(none.err, "commands:")) << none;
}

TEST_F(CtlTest, AnUnknownCommandSaysSoAndListsTheCommands) {
  for (const std::vector<std::string>& argv : std::vector<std::vector<std::string>>{
           {"cases", "list"}, {"case", "delete"}, {"frobnicate"}}) {
    SCOPED_TRACE(absl::StrJoin(argv, " "));
    CtlRun r = Ctl(argv);
    EXPECT_EQ(r.code, 2) << r;
    EXPECT_TRUE(absl::StrContains(r.err, "unknown command")) << r;
    EXPECT_TRUE(absl::StrContains(r.err, "case list")) << r;  // the list to choose from
    EXPECT_TRUE(r.out.empty()) << r;
  }
}

TEST_F(CtlTest, AnUnknownOptionOfEveryCommandNamesTheCommandAndItsHelp) {
  for (const ctl::Command& cmd : ctl::Commands()) {
    const std::string name = absl::StrJoin(cmd.words, " ");
    SCOPED_TRACE(name);
    std::vector<std::string> argv = cmd.words;
    argv.push_back("--no-such-option");
    CtlRun r = Ctl(argv);
    EXPECT_EQ(r.code, 2) << r;
    EXPECT_TRUE(absl::StartsWith(r.err, absl::StrCat("corridorctl ", name, ": "))) << r;
    EXPECT_TRUE(absl::StrContains(r.err, "--no-such-option")) << r;
    EXPECT_TRUE(absl::StrContains(r.err, absl::StrCat("see `corridorctl ", name, " --help`"))) << r;
    ExpectWords(r.err);
  }
}

TEST_F(CtlTest, MissingOrValuelessOptionsAreNamed) {
  struct Case {
    std::vector<std::string> argv;
    int code;
    std::string says;
  };
  const std::string id = CreateCase();
  const std::vector<Case> cases = {
      {{"case", "list", "--status"}, 2, "--status"},  // no value
      {{"pki", "org", "--federation", "f"}, 1, "missing --org, --out"},
      {{"roster", "sign", "--in", "x"}, 1, "missing --key, --key-name, --out"},
      {{"case", "show", id}, 1, "say why you read this worker's data: --purpose"},
      {{"case", "show"}, 1, "name the case, e.g. `corridorctl case show"},
      {{"case", "erase", id}, 1, "missing --reason"},
      {{"case", "create", "--category", "wage-theft"},
       1,
       "missing --origin, --destination, --worker-name"},
      {{"case", "create", "--category", "bad", "--origin", "id", "--destination", "sg",
        "--worker-name", "x"},
       1,
       "--category must be one of recruitment-fees, wage-theft"},
      {{"decline", "REF-1"}, 1, "missing --reason"},
      {{"audit", "verify", "export.txt"}, 1, "give the roster (--roster FILE or CORRIDOR_ROSTER)"},
      {{"audit", "verify", "export.txt", "--roster", "r.json"},
       1,
       "give the federation's steward keys (--stewards FILE or CORRIDOR_STEWARDS"},
      {{"whoami"}, 1, "to reach your node, set --node (or CORRIDOR_NODE), --cert"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(absl::StrJoin(c.argv, " "));
    CtlRun r = Ctl(c.argv);
    EXPECT_EQ(r.code, c.code) << r;
    EXPECT_TRUE(absl::StrContains(r.err, c.says)) << r;
    EXPECT_TRUE(r.out.empty()) << r;
    ExpectWords(r.err);
  }
}

TEST_F(CtlTest, ANodeThatIsNotThereOrRefusesIsExplained) {
  // Nobody listens on this port.
  std::vector<std::string> argv = {"whoami"};
  for (std::string& o : As("cw")) argv.push_back(o);
  argv[2] = absl::StrCat("127.0.0.1:", testing::PickFreePort());
  CtlRun away = Ctl(argv);
  EXPECT_EQ(away.code, 1) << away;
  EXPECT_TRUE(absl::StrContains(away.err, "cannot reach the node at 127.0.0.1:")) << away;
  EXPECT_TRUE(absl::StrContains(away.err, "Is corridord running there")) << away;
  // The table refuses: said as a refusal, with the roles it takes.
  CtlRun refused = CtlAs("aud", {"case", "list"});
  EXPECT_EQ(refused.code, 1) << refused;
  EXPECT_TRUE(absl::StrContains(refused.err, "refused: ")) << refused;
  EXPECT_TRUE(absl::StrContains(refused.err, "needs one of the roles")) << refused;
}

// ---- every command group against the node ----------------------------------

TEST_F(CtlTest, NodeCommandsSayWhoYouAreAndWhetherTheNodeServes) {
  CtlRun who = CtlAs("cw", {"whoami"});
  EXPECT_EQ(who.code, 0) << who;
  EXPECT_TRUE(absl::StrContains(who.out, "org:     union-sg")) << who;
  EXPECT_TRUE(absl::StrContains(who.out, "subject: user/cw")) << who;
  EXPECT_TRUE(absl::StrContains(who.out, "roles:   caseworker")) << who;
  CtlRun health = CtlAs("cw", {"health"});
  EXPECT_EQ(health.code, 0) << health;
  EXPECT_TRUE(absl::StrContains(health.out, "node union-sg (corridor.test)")) << health;
  EXPECT_TRUE(absl::StrContains(health.out, ": serving, roster version 1")) << health;
  EXPECT_TRUE(absl::StrContains(health.out, "PEER")) << health;
  // --require-peers: ministry-id's node is not running.
  CtlRun peers = CtlAs("cw", {"health", "--require-peers"});
  EXPECT_EQ(peers.code, 1) << peers;
  EXPECT_TRUE(absl::StrContains(peers.err, "peers not healthy: ministry-id")) << peers;
}

TEST_F(CtlTest, PkiAndRosterCommandsMakeASignedRosterTheNodeTakes) {
  const std::string keys = Dir("stewards"), org = Dir("ngo-x"), users = Dir("users");
  CtlRun fed = Ctl({"pki", "federation", "--federation", "corridor.test", "--out", keys});
  EXPECT_EQ(fed.code, 0) << fed;
  EXPECT_TRUE(absl::StrContains(fed.out, "3 steward keys in " + keys)) << fed;
  EXPECT_TRUE(fs::exists(keys + "/steward-1.key") && fs::exists(keys + "/stewards.yaml"));
  // Keys are never overwritten by accident.
  CtlRun again = Ctl({"pki", "federation", "--federation", "corridor.test", "--out", keys});
  EXPECT_EQ(again.code, 1) << again;
  EXPECT_TRUE(absl::StrContains(again.err, "already exists; not overwriting it")) << again;

  CtlRun o = Ctl({"pki", "org", "--federation", "corridor.test", "--org", "ngo-x", "--out", org});
  EXPECT_EQ(o.code, 0) << o;
  EXPECT_TRUE(absl::StrContains(o.out, "spiffe://corridor.test/ngo-x/node")) << o;
  for (const char* f : {"ca.key", "ca.crt", "node.key", "node.crt", "signing.key", "signing.pub",
                        "signing.keyid", "master.key"}) {
    EXPECT_TRUE(fs::exists(org + "/" + f)) << f;
  }
  CtlRun u = Ctl({"pki", "user", "--federation", "corridor.test", "--org", "ngo-x", "--org-dir",
                  org, "--name", "amina", "--out", users});
  EXPECT_EQ(u.code, 0) << u;
  EXPECT_TRUE(absl::StrContains(u.out, "spiffe://corridor.test/ngo-x/user/amina")) << u;
  EXPECT_TRUE(fs::exists(users + "/amina.crt") && fs::exists(users + "/amina.key"));

  // A roster source from scratch, signed and shown.
  const std::string source = Dir("roster.yaml"), signed_roster = Dir("roster-signed.json");
  CtlRun init = Ctl({"roster", "init", "--federation", "corridor.test", "--out", source});
  EXPECT_EQ(init.code, 0) << init;
  CtlRun member =
      Ctl({"roster", "add-member", "--roster", source, "--org", "ngo-x", "--name", "NGO X",
           "--country", "SG", "--kind", "ngo", "--endpoint", "127.0.0.1:1", "--org-dir", org});
  EXPECT_EQ(member.code, 0) << member;
  CtlRun bad_kind =
      Ctl({"roster", "add-member", "--roster", source, "--org", "ngo-y", "--name", "Y", "--country",
           "SG", "--kind", "club", "--endpoint", "127.0.0.1:1", "--org-dir", org});
  EXPECT_EQ(bad_kind.code, 1) << bad_kind;
  EXPECT_TRUE(absl::StrContains(bad_kind.err, "--kind must be one of ministry")) << bad_kind;
  // A second member, so an agreement has two parties.
  const std::string org_y = Dir("ngo-y");
  CtlRun y = Ctl({"pki", "org", "--federation", "corridor.test", "--org", "ngo-y", "--out", org_y});
  EXPECT_EQ(y.code, 0) << y;
  CtlRun member_y =
      Ctl({"roster", "add-member", "--roster", source, "--org", "ngo-y", "--name", "NGO Y",
           "--country", "ID", "--kind", "union", "--endpoint", "127.0.0.1:2", "--org-dir", org_y});
  EXPECT_EQ(member_y.code, 0) << member_y;
  CtlRun agreement = Ctl({"roster", "add-agreement", "--roster", source, "--id", "mou-1",
                          "--parties", "ngo-x,ngo-y", "--purposes", "case-referral"});
  EXPECT_EQ(agreement.code, 0) << agreement;
  CtlRun sign = Ctl({"roster", "sign", "--in", source, "--key", keys + "/steward-1.key",
                     "--key-name", "steward-1", "--out", signed_roster});
  EXPECT_EQ(sign.code, 0) << sign;
  EXPECT_TRUE(absl::StrContains(sign.out, "signed roster version 1 as steward-1")) << sign;
  CtlRun cosign = Ctl({"roster", "sign", "--in", signed_roster, "--key", keys + "/steward-2.key",
                       "--key-name", "steward-2", "--out", signed_roster});
  EXPECT_EQ(cosign.code, 0) << cosign;
  CtlRun show = Ctl({"roster", "show", "--in", signed_roster});
  EXPECT_EQ(show.code, 0) << show;
  EXPECT_TRUE(absl::StrContains(show.out, "federation corridor.test, roster version 1")) << show;
  EXPECT_TRUE(absl::StrContains(show.out, "ngo-x-1(active)")) << show;
  EXPECT_TRUE(
      absl::StrContains(show.out, "agreement mou-1: parties ngo-x, ngo-y; purposes case-referral"))
      << show;

  // Push: a newer roster of this federation, by the admin; nobody else may.
  const std::string v2 = Dir("roster-v2.json");
  ASSERT_OK(WriteFileAtomically(v2, fed_.Sign(fed_.MakeRoster(2), fed_.threshold())));
  CtlRun by_cw = CtlAs("cw", {"roster", "push", "--in", v2});
  EXPECT_EQ(by_cw.code, 1) << by_cw;
  EXPECT_TRUE(absl::StrContains(by_cw.err, "refused: ")) << by_cw;
  CtlRun push = CtlAs("adm", {"roster", "push", "--in", v2});
  EXPECT_EQ(push.code, 0) << push;
  EXPECT_TRUE(absl::StrContains(push.out, "roster version 2 is in force at 127.0.0.1:")) << push;
}

TEST_F(CtlTest, CaseCommandsRecordReadListChangeCloseAndErase) {
  const std::string id = CreateCase();
  ASSERT_TRUE(absl::StartsWith(id, "C-")) << id;
  CtlRun show = CtlAs("pros", {"case", "show", id, "--purpose", "prosecution"});
  EXPECT_EQ(show.code, 0) << show;
  EXPECT_TRUE(absl::StrContains(show.out, "case " + id + " (open)")) << show;
  EXPECT_TRUE(absl::StrContains(show.out, "worker:      Siti Rahayu")) << show;
  EXPECT_TRUE(absl::StrContains(show.out, "corridor:    ID -> SG")) << show;
  CtlRun json = CtlAs("cw", {"case", "show", id, "--purpose", "case-handling", "--json"});
  EXPECT_EQ(json.code, 0) << json;
  EXPECT_TRUE(absl::StrContains(json.out, "\"id\": \"" + id + "\"")) << json;
  CtlRun list = CtlAs("cw", {"case", "list", "--category", "recruitment-fees"});
  EXPECT_EQ(list.code, 0) << list;
  EXPECT_TRUE(absl::StartsWith(list.out, "CASE")) << list;
  EXPECT_TRUE(absl::StrContains(list.out, id)) << list;
  EXPECT_FALSE(absl::StrContains(list.out, "Siti")) << list;  // no personal data in lists
  CtlRun update = CtlAs("cw", {"case", "update", id, "--status", "in-progress"});
  EXPECT_EQ(update.code, 0) << update;
  EXPECT_EQ(update.out, "updated case " + id + " (in-progress)\n") << update;
  CtlRun close = CtlAs("cw", {"case", "close", id, "--reason", "resolved"});
  EXPECT_EQ(close.code, 0) << close;
  EXPECT_EQ(close.out, "closed case " + id + "\n") << close;
  CtlRun erase_cw = CtlAs("cw", {"case", "erase", id, "--reason", "the worker asked"});
  EXPECT_EQ(erase_cw.code, 1) << erase_cw;
  CtlRun erase = CtlAs("appr", {"case", "erase", id, "--reason", "the worker asked"});
  EXPECT_EQ(erase.code, 0) << erase;
  EXPECT_TRUE(absl::StartsWith(erase.out, "erased case " + id + ": its data key is destroyed"))
      << erase;
}

TEST_F(CtlTest, EvidenceCommandsUploadListAndDownloadDigestChecked) {
  const std::string id = CreateCase();
  const std::string file = Dir("contract.pdf"), back = Dir("contract-back.pdf");
  const std::string content = "%PDF-1.4 a contract with the fee schedule\n";
  ASSERT_OK(WriteFileAtomically(file, content));
  CtlRun add = CtlAs("cw", {"evidence", "add", id, file, "--media-type", "application/pdf"});
  EXPECT_EQ(add.code, 0) << add;
  const std::string ev = WordAfter(add.out, "added evidence ");
  ASSERT_TRUE(absl::StartsWith(ev, "E-")) << add;
  EXPECT_TRUE(absl::StrContains(add.out, "contract.pdf, " + std::to_string(content.size()) +
                                             " bytes, SHA-256 " +
                                             HexEncode(DigestBytes(Sha256(content)))))
      << add;
  CtlRun list = CtlAs("cw", {"evidence", "list", id, "--purpose", "case-handling"});
  EXPECT_EQ(list.code, 0) << list;
  EXPECT_TRUE(absl::StrContains(list.out, ev)) << list;
  EXPECT_TRUE(absl::StrContains(list.out, "application/pdf")) << list;
  CtlRun get =
      CtlAs("pros", {"evidence", "get", id, ev, "--out", back, "--purpose", "prosecution"});
  EXPECT_EQ(get.code, 0) << get;
  EXPECT_TRUE(absl::StrContains(get.out, "SHA-256 verified")) << get;
  EXPECT_EQ(ReadFileToString(back).value_or(""), content);
  CtlRun no_file = CtlAs("cw", {"evidence", "add", id});
  EXPECT_EQ(no_file.code, 1) << no_file;
  EXPECT_TRUE(absl::StrContains(no_file.err, "name the file")) << no_file;
}

TEST_F(CtlTest, ReferralCommandsQueueAReferralAndShowTheBoxes) {
  const std::string id = CreateCase();
  CtlRun inbox = CtlAs("cw", {"inbox"});
  EXPECT_EQ(inbox.code, 0) << inbox;
  EXPECT_TRUE(absl::StrContains(inbox.out, "(no referrals waiting)")) << inbox;
  CtlRun refer = CtlAs("cw", {"refer", id, "--to", "ministry-id", "--agreement", "test-agreement",
                              "--purpose", "case-referral"});
  EXPECT_EQ(refer.code, 0) << refer;
  EXPECT_TRUE(absl::StrContains(refer.out, "to ministry-id is queued for delivery")) << refer;
  const std::string envelope = WordAfter(refer.out, "(envelope ");
  ASSERT_FALSE(envelope.empty()) << refer;
  CtlRun outbox = CtlAs("cw", {"outbox"});
  EXPECT_EQ(outbox.code, 0) << outbox;
  EXPECT_TRUE(absl::StartsWith(outbox.out, "CREATED")) << outbox;
  EXPECT_TRUE(absl::StrContains(outbox.out, envelope)) << outbox;
  CtlRun note = CtlAs("cw", {"update", id, "--note", "called the employer"});
  EXPECT_EQ(note.code, 0) << note;
  EXPECT_TRUE(absl::StartsWith(note.out, "update recorded on case " + id + " and sent to "))
      << note;
  CtlRun accept = CtlAs("cw", {"accept", "REF-0000000000000000"});
  EXPECT_EQ(accept.code, 1) << accept;
  EXPECT_TRUE(absl::StartsWith(accept.err, "corridorctl accept: ")) << accept;
  ExpectWords(accept.err);
  CtlRun bad = CtlAs("cw", {"refer", id, "--to", "ministry-id", "--agreement", "test-agreement",
                            "--purpose", "case-referral", "--include", "photos"});
  EXPECT_EQ(bad.code, 1) << bad;
  EXPECT_TRUE(absl::StrContains(bad.err, "--include takes personal-data and/or evidence ids"))
      << bad;
}

TEST_F(CtlTest, AuditCommandsQueryProveExportAndVerifyWithTheRostersKey) {
  CreateCase();
  CtlRun log = CtlAs("aud", {"audit", "log", "--action", "case.create"});
  EXPECT_EQ(log.code, 0) << log;
  EXPECT_TRUE(absl::StartsWith(log.out, "INDEX")) << log;
  EXPECT_TRUE(absl::StrContains(log.out, "union-sg/user/cw")) << log;
  // The commands that read a checkpoint check it with the roster's key and
  // against the one this auditor saved before (audit_state_test has the rest).
  const std::string node_yaml = fed_.org("union-sg").dir + "/node.yaml";
  const std::vector<std::string> keys = {"--roster",   RosterFile(), "--org",   "union-sg",
                                         "--stewards", node_yaml,    "--state", Dir("state")};
  auto with_keys = [&](std::vector<std::string> argv) {
    argv.insert(argv.end(), keys.begin(), keys.end());
    return argv;
  };
  CtlRun cp = CtlAs("aud", with_keys({"audit", "checkpoint"}));
  EXPECT_EQ(cp.code, 0) << cp;
  EXPECT_TRUE(absl::StrContains(cp.out, "signature verified with corridor.test/union-sg")) << cp;
  EXPECT_TRUE(absl::StrContains(cp.out, "first checkpoint of this ledger")) << cp;
  const std::string stewards = fed_.WriteStewardsFile();
  CtlRun key = Ctl({"audit", "key", "union-sg", "--roster", RosterFile(), "--stewards", stewards});
  EXPECT_EQ(key.code, 0) << key;
  EXPECT_TRUE(absl::StartsWith(key.out, "corridor.test/union-sg+")) << key;
  CtlRun prove = CtlAs("aud", with_keys({"audit", "prove", "0"}));
  EXPECT_EQ(prove.code, 0) << prove;
  EXPECT_TRUE(absl::StartsWith(prove.out, "entry 0 is in the ledger of ")) << prove;
  EXPECT_TRUE(absl::StrContains(prove.out, "verified against the checkpoint signed by")) << prove;
  EXPECT_TRUE(absl::StrContains(prove.out, "consistent with the checkpoint this auditor saved"))
      << prove;
  const std::string exported = Dir("export.txt");
  CtlRun exp = CtlAs("aud", with_keys({"audit", "export", "--out", exported}));
  EXPECT_EQ(exp.code, 0) << exp;
  EXPECT_TRUE(absl::StartsWith(exp.out, "exported to " + exported)) << exp;
  CtlRun verify = Ctl({"audit", "verify", exported, "--roster", RosterFile(), "--org", "union-sg",
                       "--stewards", stewards});
  EXPECT_EQ(verify.code, 0) << verify;
  EXPECT_TRUE(absl::StartsWith(verify.out, "verified: entries 0..")) << verify;
  // The wrong org's key does not verify it.
  CtlRun wrong = Ctl({"audit", "verify", exported, "--roster", RosterFile(), "--org", "ministry-id",
                      "--stewards", stewards});
  EXPECT_EQ(wrong.code, 1) << wrong;
  EXPECT_TRUE(absl::StrContains(wrong.err, "the export does NOT verify")) << wrong;
  // A node config's roster: section holds the steward keys too (the checks above used it).
  CtlRun by_config = Ctl({"audit", "verify", exported, "--roster", RosterFile(), "--org",
                          "union-sg", "--stewards", node_yaml});
  EXPECT_EQ(by_config.code, 0) << by_config;
  // A caseworker does not read the ledger.
  CtlRun cw = CtlAs("cw", {"audit", "log"});
  EXPECT_EQ(cw.code, 1) << cw;
  EXPECT_TRUE(absl::StrContains(cw.err, "refused: ")) << cw;
}

// Every command that takes an org's key from a roster believes the roster only
// with the stewards' signatures checked against keys the auditor holds: a copy
// with union-sg's key swapped (its signatures now over another payload), one
// signed by keys that are not the stewards', one stripped of its signatures, and
// any roster with no stewards file given, supply no key to any of them.
TEST_F(CtlTest, AForgedRosterIsRefusedByEveryAuditCommand) {
  const std::string stewards = fed_.WriteStewardsFile();
  const std::string genuine = ReadFileToString(RosterFile()).value();
  const size_t sigs = genuine.find("\"signatures\"");
  ASSERT_NE(sigs, std::string::npos);
  v1::Roster swapped = fed_.MakeRoster();
  for (v1::Member& m : *swapped.mutable_members()) {
    if (m.org() != "union-sg") continue;
    m.mutable_signing_keys(0)->set_public_key(
        Base64Encode(Ed25519PrivateKey::Generate().public_key().raw()));
  }
  const std::string resigned = fed_.Sign(swapped, 1);
  testing::TestFederation impostors("corridor.test");
  const std::map<std::string, std::string> forgeries = {
      {"swapped.json", resigned.substr(0, resigned.find("\"signatures\"")) + genuine.substr(sigs)},
      {"impostors.json", impostors.Sign(swapped, 2)},
      {"stripped.json", genuine.substr(0, sigs) + "\"signatures\": []}"},
  };
  auto as_auditor = [this](std::vector<std::string> argv) {
    for (std::string& o : As("aud")) argv.push_back(std::move(o));
    return argv;
  };
  const std::vector<std::vector<std::string>> commands = {
      {"audit", "key", "union-sg"},
      {"audit", "verify", Dir("export.txt"), "--org", "union-sg"},
      as_auditor({"audit", "prove", "0", "--org", "union-sg", "--state", Dir("state")}),
      as_auditor({"audit", "checkpoint", "--state", Dir("state")}),
      as_auditor({"audit", "export", "--out", Dir("forged.export"), "--state", Dir("state")}),
      as_auditor(
          {"audit", "consistency", "--from", Dir("saved.checkpoint"), "--state", Dir("state")}),
      as_auditor({"audit", "log", "--case", "C-3F9A0C12D4E7", "--verify"}),
      as_auditor({"evidence", "custody", "E-3F9A0C12D4E7"}),
  };
  for (std::vector<std::string> argv : commands) {
    for (const auto& [name, json] : forgeries) {
      SCOPED_TRACE(absl::StrCat(absl::StrJoin(argv, " "), " with ", name));
      ASSERT_OK(WriteFileAtomically(Dir(name), json));
      std::vector<std::string> forged = argv;
      for (const std::string& a :
           {std::string("--roster"), Dir(name), std::string("--stewards"), stewards}) {
        forged.push_back(a);
      }
      CtlRun r = Ctl(forged);
      EXPECT_EQ(r.code, 1) << r;
      EXPECT_TRUE(absl::StrContains(r.err, name + " is not valid")) << r;
      EXPECT_TRUE(r.out.empty()) << r;
    }
    // No steward keys, no key, whatever the roster.
    argv.push_back("--roster");
    argv.push_back(RosterFile());
    CtlRun unchecked = Ctl(argv);
    EXPECT_EQ(unchecked.code, 1) << unchecked;
    EXPECT_TRUE(absl::StrContains(unchecked.err, "give the federation's steward keys"))
        << unchecked;
  }
}

// ---- at once ----------------------------------------------------------------

TEST_F(CtlTest, ManyCommandsInFlightAtOnceEachGetItsOwnAnswer) {
  constexpr int kThreads = 8, kEach = 6;
  std::vector<std::vector<CtlRun>> runs(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([this, t, &runs] {
      for (int i = 0; i < kEach; ++i) {
        const std::string worker = absl::StrCat("Worker ", t, "-", i);
        runs[t].push_back(CtlAs("cw", {"case", "create", "--category", "wage-theft", "--origin",
                                       "id", "--destination", "sg", "--worker-name", worker}));
        const std::string id = WordAfter(runs[t].back().out, "created case ");
        runs[t].push_back(CtlAs("cw", {"case", "show", id, "--purpose", "case-handling"}));
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<std::string> ids;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kEach; ++i) {
      const CtlRun& created = runs[t][2 * i];
      const CtlRun& shown = runs[t][2 * i + 1];
      EXPECT_EQ(created.code, 0) << created;
      EXPECT_EQ(shown.code, 0) << shown;
      ids.insert(WordAfter(created.out, "created case "));
      // Each answer is its own case's, not another thread's.
      EXPECT_TRUE(
          absl::StrContains(shown.out, absl::StrCat("worker:      Worker ", t, "-", i, "\n")))
          << shown;
    }
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kEach));
}

}  // namespace
}  // namespace corridor
