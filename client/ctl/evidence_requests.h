// corridorctl's evidence-request commands (evidence_requests.cc: `evidence
// request`, `requests`, `requests show`, `decide`, `evidence fetch`,
// `evidence custody`) and the parts of them that need no node, exposed so
// tests can check them. Internal to client/ctl. Stateless; thread-safe.
#ifndef CORRIDOR_CLIENT_CTL_EVIDENCE_REQUESTS_H_
#define CORRIDOR_CLIENT_CTL_EVIDENCE_REQUESTS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corridor/v1/evidence.pb.h"

namespace corridor::ctl {

// A date option (--deadline, --until) in the form the node takes: "YYYY-MM-DD"
// means the end of that day in UTC (23:59:59Z); anything else must be RFC 3339
// ("2026-12-31T17:00:00+08:00"). Returns RFC 3339 in UTC, to the second.
// InvalidArgument naming `option` and the accepted forms if `value` is
// neither, or if it is not after `now`.
absl::StatusOr<std::string> ParseDateOption(const std::string& value, const std::string& option,
                                            absl::Time now);

// The DEADLINE cell of `corridorctl requests`: for an urgent request not yet
// decided, hours left ("5h left") or overdue ("OVERDUE by 3h"); otherwise the
// date ("2026-12-10", "OVERDUE since 2026-12-10"). Undecided past its deadline
// (by the node's `overdue` or by `now`) is always marked OVERDUE.
std::string DeadlineCell(const v1::EvidenceRequestSummary& s, absl::Time now);

// `name` if it is safe to create in a directory as it is: not empty, at most
// 200 bytes, shown as itself (display.h), no path separator, not starting
// with a dot. Otherwise `fallback`.
std::string SafeFileName(const std::string& name, const std::string& fallback);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_EVIDENCE_REQUESTS_H_
