// corridord: the Corridor node. Usage: corridord --config node.yaml [--check-config]
// or corridord --restore DIR --config node.yaml (restores a backup, then exits).
#include <signal.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include <cstring>
#include <iostream>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "ledger/base/file.h"
#include "ledger/base/log.h"
#include "ledger/crypto/crypto.h"
#include "server/common/grpc_logs.h"
#include "server/node/backup.h"
#include "server/node/config.h"
#include "server/node/node.h"
#include "server/node/signing_key.h"

namespace {

int Usage() {
  std::cerr
      << "usage: corridord --config FILE [--check-config | --signing-public-key DIR]\n"
         "       corridord --restore DIR --config FILE\n"
         "  --config FILE    the node configuration (YAML; see docs/configuration.md)\n"
         "  --check-config   validate the configuration and exit\n"
         "  --signing-public-key DIR\n"
         "                   write the public half of the configured signing key (a key file or\n"
         "                   a key in a PKCS#11 token) as DIR/signing.pub and its key id as\n"
         "                   DIR/signing.keyid, for the stewards (`corridorctl roster add-key\n"
         "                   --key-dir DIR`), and exit; needs only the signing_key settings\n"
         "  --restore DIR    check the backup in DIR (from `corridorctl admin backup`), copy it\n"
         "                   into the config's empty data_dir and exit; the next start verifies\n"
         "                   the ledger and records the restore (docs/operations.md)\n"
         "signals: SIGTERM/SIGINT stop gracefully; SIGHUP reloads users, tls.revoked_serials,\n"
         "  signing_key and log from the config (other changes need a restart)\n";
  return 2;
}

struct Args {
  std::string config_path;
  bool check_only = false;
  std::string public_key_dir;  // --signing-public-key
  std::string restore_dir;
};

// The command line, or nullopt when corridord should exit at once with
// `*exit_code` (usage printed).
std::optional<Args> ParseArgs(int argc, char** argv, int* exit_code) {
  Args args;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      args.config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      args.config_path = arg.substr(strlen("--config="));
    } else if (arg == "--restore" && i + 1 < argc) {
      args.restore_dir = argv[++i];
    } else if (arg == "--check-config") {
      args.check_only = true;
    } else if (arg == "--signing-public-key" && i + 1 < argc) {
      args.public_key_dir = argv[++i];
    } else if (arg == "--help" || arg == "-h") {
      Usage();
      *exit_code = 0;
      return std::nullopt;
    } else {
      std::cerr << "corridord: unknown argument \"" << arg << "\"\n";
      *exit_code = Usage();
      return std::nullopt;
    }
  }
  if (args.config_path.empty()) {
    *exit_code = Usage();
    return std::nullopt;
  }
  return args;
}

// Tells the service manager (systemd, Type=notify) about the node's state:
// READY=1 once it serves, RELOADING=1 / READY=1 around a reload, STOPPING=1,
// each with a STATUS= line for `systemctl status`. Does nothing when
// NOTIFY_SOCKET is unset (not started by systemd) or cannot be reached: the
// node serves the same either way.
void NotifyServiceManager(const std::string& state) {
  sd_notify(/*unset_environment=*/0, state.c_str());
}

// CLOCK_MONOTONIC in microseconds, as systemd reads MONOTONIC_USEC.
int64_t MonotonicMicros() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return int64_t{now.tv_sec} * 1000000 + now.tv_nsec / 1000;
}

// Serves until SIGTERM or SIGINT; SIGHUP reloads what can change at run time
// (Node::Reload) and refuses, changing nothing, a change that needs a restart.
void ServeUntilStopped(corridor::Node& node, const std::string& config_path,
                       const std::string& listen, const sigset_t& stop_signals) {
  const std::string serving = absl::StrCat("STATUS=serving on ", listen);
  NotifyServiceManager(absl::StrCat("READY=1\n", serving));
  int sig = 0;
  while (true) {
    sigwait(&stop_signals, &sig);
    if (sig != SIGHUP) break;
    // MONOTONIC_USEC: systemd 253 and later want it with RELOADING=1; 252 ignores it.
    NotifyServiceManager(absl::StrCat("RELOADING=1\nSTATUS=reloading ", config_path,
                                      "\nMONOTONIC_USEC=", MonotonicMicros()));
    if (auto changed = node.Reload(config_path); changed.ok()) {
      corridor::log::Info("node.reloaded", {{"changed", *changed}});
      NotifyServiceManager(absl::StrCat("READY=1\n", serving, "; last reload applied"));
    } else {
      corridor::log::Error("node.reload_refused", {{"error", changed.status().message()}});
      NotifyServiceManager(absl::StrCat(
          "READY=1\n", serving, "; last reload refused, see the log (node.reload_refused)"));
    }
  }
  corridor::log::Info("node.signal", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  NotifyServiceManager("STOPPING=1\nSTATUS=stopping: finishing calls in flight");
  node.Shutdown(absl::Seconds(10));
}

// --signing-public-key: the files `corridorctl pki signing-key` writes beside
// a new key file (signing.pub, signing.keyid), for a key of any kind.
int WriteSigningPublicKey(const Args& args) {
  auto key_config = corridor::LoadSigningKeyConfig(args.config_path);
  if (!key_config.ok()) {
    std::cerr << "corridord: configuration error: " << key_config.status().message() << "\n";
    return 1;
  }
  auto signer = corridor::OpenSigningKey(*key_config);
  if (!signer.ok()) {
    std::cerr << "corridord: " << signer.status().message() << "\n";
    return 1;
  }
  const std::string pub = corridor::Base64Encode((*signer)->public_key().raw());
  const std::string dir = args.public_key_dir;
  for (const auto& [name, content] : {std::pair<std::string, std::string>{"signing.pub", pub},
                                      {"signing.keyid", key_config->key_id()}}) {
    if (auto st = corridor::WriteFileAtomically(dir + "/" + name, content + "\n", 0644); !st.ok()) {
      std::cerr << "corridord: cannot write " << dir << "/" << name << ": " << st.message() << "\n";
      return 1;
    }
  }
  std::cout << "signing key " << key_config->key_id() << " ("
            << corridor::DescribeSigningKey(*key_config) << "): public key " << pub
            << "\n  written to " << dir << "/signing.pub and " << dir
            << "/signing.keyid; send both to the stewards\n";
  return 0;
}

// corridord --restore: the backup copied into the empty data_dir, or why not.
int Restore(const std::string& dir, const corridor::v1::NodeConfig& config) {
  auto restored = corridor::RestoreBackup(dir, config);
  if (!restored.ok()) {
    corridor::log::Error("node.restore_refused", {{"error", restored.status().message()}});
    std::cerr << "corridord: restore refused: " << restored.status().message() << "\n";
    return 1;
  }
  corridor::log::Info("node.restore_copied", {{"data_dir", config.data_dir()}});
  std::cout << *restored << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int exit_code = 0;
  const std::optional<Args> args = ParseArgs(argc, argv, &exit_code);
  if (!args) return exit_code;

  // Block the stop signals before any thread starts so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  corridor::log::RouteGrpcLogs();
  if (!args->public_key_dir.empty()) return WriteSigningPublicKey(*args);
  auto config = corridor::LoadNodeConfig(args->config_path);
  if (!config.ok()) {
    // A check by hand gets the one sentence below; a failed start is logged as well.
    if (!args->check_only) {
      corridor::log::Error("config.invalid", {{"error", config.status().message()}});
    }
    std::cerr << "corridord: configuration error: " << config.status().message() << "\n";
    return 1;
  }
  corridor::log::Level level = corridor::log::Level::kInfo;
  if (corridor::log::ParseLevel(config->log().level(), &level)) corridor::log::SetLevel(level);
  if (!args->restore_dir.empty()) return Restore(args->restore_dir, *config);
  if (args->check_only) {
    auto checked = corridor::Node::CheckStartable(*config, absl::Now());
    if (!checked.ok()) {
      std::cerr << "corridord: configuration " << args->config_path
                << " would not start: " << checked.status().message() << "\n";
      return 1;
    }
    std::cout << "configuration " << args->config_path << " is valid: " << *checked << "\n";
    return 0;
  }

  auto node = corridor::Node::Start(*config);
  if (!node.ok()) {
    corridor::log::Error("node.start_failed", {{"error", node.status().message()}});
    std::cerr << "corridord: cannot start: " << node.status().message() << "\n";
    return 1;
  }
  ServeUntilStopped(**node, args->config_path, config->listen(), stop_signals);
  return 0;
}
