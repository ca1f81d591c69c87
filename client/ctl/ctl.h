// The corridorctl commands. Main() dispatches on the command words, parses the
// command's options, runs it and returns the process exit code:
// 0 success, 1 the operation failed (message on `err`), 2 usage error.
#ifndef CORRIDOR_CLIENT_CTL_CTL_H_
#define CORRIDOR_CLIENT_CTL_CTL_H_

#include <ostream>
#include <string>
#include <vector>

namespace corridor::ctl {

int Main(const std::vector<std::string>& argv, std::ostream& out, std::ostream& err);

// The words of every command that talks to a node (takes --node), e.g.
// "audit log": what a test must walk to cover everything corridorctl prints
// from a node's answers.
std::vector<std::string> NodeCommands();

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_CTL_H_
