// Downloading a case's evidence item from the user's node, checked end to end
// against the size and SHA-256 recorded at upload: used by `evidence get` and
// `evidence fetch` (evidence.cc implements it). Internal to client/ctl.
// Not thread-safe (one command at a time).
#ifndef CORRIDOR_CLIENT_CTL_EVIDENCE_TRANSFER_H_
#define CORRIDOR_CLIENT_CTL_EVIDENCE_TRANSFER_H_

#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "client/ctl/command.h"
#include "corridor/v1/case.pb.h"

namespace corridor::ctl {

struct DownloadedEvidence {
  v1::EvidenceItem item;  // as the node recorded it
  std::string data;       // its bytes, size and SHA-256 checked against `item`
};

// CaseService.GetEvidence, with progress on `err` at a terminal. A failed
// call is Explain()ed; DataLoss if what arrived does not match the recorded
// size and SHA-256.
absl::StatusOr<DownloadedEvidence> DownloadEvidence(const Connection& conn,
                                                    const std::string& case_id,
                                                    const std::string& evidence_id,
                                                    const std::string& purpose, std::ostream& err);

// For evidence received under another org's grant (docs/evidence.md): who
// gave it, under which grant, and the grant's conditions of use, numbered.
// Prints nothing for evidence of this org's own.
void PrintConditions(std::ostream& out, const v1::EvidenceItem& item);

}  // namespace corridor::ctl

#endif  // CORRIDOR_CLIENT_CTL_EVIDENCE_TRANSFER_H_
