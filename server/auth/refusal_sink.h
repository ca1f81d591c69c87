// Where the auth layer sends what it refuses. The auth processor and
// Authorize() record every refusal in the ledger through this interface, so
// server/auth does not depend on the audit layer that implements it
// (server/audit/access_log.h: AccessLog).
#ifndef CORRIDOR_SERVER_AUTH_REFUSAL_SINK_H_
#define CORRIDOR_SERVER_AUTH_REFUSAL_SINK_H_

#include <functional>

#include "absl/status/status.h"
#include "corridor/v1/case.pb.h"
#include "server/auth/identity.h"

namespace corridor {

class RefusalSink {
 public:
  virtual ~RefusalSink() = default;
  // Records the refusal `event` (outcome denied or error), or counts it into
  // an aggregated entry past its identity's refusal budget; `done` gets OK
  // once it is durable or counted, or the error.
  virtual void RecordRefusal(v1::AccessEvent event, std::function<void(absl::Status)> done) = 0;
};

// Fills the actor fields of an event from a principal.
void SetActor(const Principal& who, v1::AccessEvent* event);

}  // namespace corridor

#endif  // CORRIDOR_SERVER_AUTH_REFUSAL_SINK_H_
