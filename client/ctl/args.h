// Command-line parsing for corridorctl: options are declared per command, so
// an unknown or misspelt option is an error that says which ones exist.
// Not thread-safe (used once per process).
#ifndef CORRIDOR_CLIENT_CTL_ARGS_H_
#define CORRIDOR_CLIENT_CTL_ARGS_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace corridor {

struct OptionSpec {
  std::string name;        // without the leading "--"
  std::string value_name;  // empty for a flag that takes no value
  std::string help;
  bool repeated = false;
};

class Args {
 public:
  // Parses `argv` against `spec`: "--name value", "--name=value", "--flag";
  // anything else is positional. InvalidArgument for an unknown option, a
  // missing value, or a repeated non-repeatable option.
  static absl::StatusOr<Args> Parse(const std::vector<std::string>& argv,
                                    const std::vector<OptionSpec>& spec);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  std::string Get(const std::string& name, const std::string& fallback = "") const;
  std::vector<std::string> GetAll(const std::string& name) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

// "--name VALUE  help" lines for a usage message.
std::string OptionsHelp(const std::vector<OptionSpec>& spec);

}  // namespace corridor

#endif  // CORRIDOR_CLIENT_CTL_ARGS_H_
