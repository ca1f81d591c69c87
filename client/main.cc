// corridorctl: Corridor for people and scripts. Run `corridorctl help`.
#include <grpc/support/log.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/ctl/ctl.h"

namespace {
// gRPC's own diagnostics (handshake failures and the like) are for developers;
// corridorctl explains failures itself. CORRIDOR_DEBUG=1 shows them.
void DropGrpcLog(gpr_log_func_args*) {}
}  // namespace

int main(int argc, char** argv) {
  if (getenv("CORRIDOR_DEBUG") == nullptr) gpr_set_log_function(DropGrpcLog);
  std::vector<std::string> args(argv + 1, argv + argc);
  return corridor::ctl::Main(args, std::cout, std::cerr);
}
