#include "client/ctl/args.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace corridor {

absl::StatusOr<Args> Args::Parse(const std::vector<std::string>& argv,
                                 const std::vector<OptionSpec>& spec) {
  Args args;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a.size() < 3 || a.compare(0, 2, "--") != 0) {
      args.positional_.push_back(a);
      continue;
    }
    std::string name = a.substr(2);
    std::string value;
    bool has_inline_value = false;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_inline_value = true;
    }
    const OptionSpec* opt = nullptr;
    for (const OptionSpec& s : spec) {
      if (s.name == name) opt = &s;
    }
    if (opt == nullptr) {
      std::vector<std::string> names;
      for (const OptionSpec& s : spec) names.push_back("--" + s.name);
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown option --", name,
          names.empty() ? "; this command takes no options"
                        : absl::StrCat("; known options: ", absl::StrJoin(names, " "))));
    }
    if (opt->value_name.empty()) {
      if (has_inline_value) {
        return absl::InvalidArgumentError(absl::StrCat("option --", name, " takes no value"));
      }
      value = "true";
    } else if (!has_inline_value) {
      if (i + 1 >= argv.size()) {
        return absl::InvalidArgumentError(
            absl::StrCat("option --", name, " needs a value (", opt->value_name, ")"));
      }
      value = argv[++i];
    }
    auto& slot = args.values_[name];
    if (!slot.empty() && !opt->repeated) {
      return absl::InvalidArgumentError(absl::StrCat("option --", name, " given more than once"));
    }
    slot.push_back(value);
  }
  return args;
}

std::string Args::Get(const std::string& name, const std::string& fallback) const {
  auto it = values_.find(name);
  return it == values_.end() || it->second.empty() ? fallback : it->second.back();
}

std::vector<std::string> Args::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::string OptionsHelp(const std::vector<OptionSpec>& spec) {
  std::string out;
  for (const OptionSpec& s : spec) {
    std::string left = absl::StrCat("  --", s.name, s.value_name.empty() ? "" : " " + s.value_name);
    if (left.size() < 28) left.resize(28, ' ');
    absl::StrAppend(&out, left, " ", s.help, s.repeated ? " (repeatable)" : "", "\n");
  }
  return out;
}

}  // namespace corridor
