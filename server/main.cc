// corridord: the Corridor node. Usage: corridord --config node.yaml [--check-config]
#include <signal.h>

#include <cstring>
#include <iostream>
#include <string>

#include "server/node/config.h"
#include "ledger/base/log.h"
#include "server/common/grpc_logs.h"
#include "server/node/node.h"

namespace {

int Usage() {
  std::cerr << "usage: corridord --config FILE [--check-config]\n"
               "  --config FILE    the node configuration (YAML; see docs/configuration.md)\n"
               "  --check-config   validate the configuration and exit\n"
               "signals: SIGTERM/SIGINT stop gracefully; SIGHUP takes a rotated signing key\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::string config_path;
  bool check_only = false;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config_path = argv[++i];
    } else if (arg.rfind("--config=", 0) == 0) {
      config_path = arg.substr(strlen("--config="));
    } else if (arg == "--check-config") {
      check_only = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage();
      return 0;
    } else {
      std::cerr << "corridord: unknown argument \"" << arg << "\"\n";
      return Usage();
    }
  }
  if (config_path.empty()) return Usage();

  // Block the stop signals before any thread starts so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  corridor::log::RouteGrpcLogs();
  auto config = corridor::LoadNodeConfig(config_path);
  if (!config.ok()) {
    corridor::log::Error("config.invalid", {{"error", config.status().message()}});
    std::cerr << "corridord: configuration error: " << config.status().message() << "\n";
    return 1;
  }
  corridor::log::Level level = corridor::log::Level::kInfo;
  if (corridor::log::ParseLevel(config->log().level(), &level)) corridor::log::SetLevel(level);
  if (check_only) {
    std::cout << "configuration " << config_path << " is valid\n";
    return 0;
  }

  auto node = corridor::Node::Start(*config);
  if (!node.ok()) {
    corridor::log::Error("node.start_failed", {{"error", node.status().message()}});
    std::cerr << "corridord: cannot start: " << node.status().message() << "\n";
    return 1;
  }
  int sig = 0;
  while (true) {
    sigwait(&stop_signals, &sig);
    if (sig != SIGHUP) break;
    // SIGHUP: take a rotated signing key from the config file without a restart.
    if (auto st = (*node)->ReloadSigningKey(config_path); !st.ok()) {
      corridor::log::Error("node.signing_key_refused", {{"error", st.message()}});
    }
  }
  corridor::log::Info("node.signal", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*node)->Shutdown(absl::Seconds(10));
  return 0;
}
