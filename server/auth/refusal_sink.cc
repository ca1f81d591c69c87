#include "server/auth/refusal_sink.h"

namespace corridor {

void SetActor(const Principal& who, v1::AccessEvent* event) {
  event->set_actor_org(who.org);
  event->set_actor_subject(who.subject);
  for (v1::Role r : who.roles) event->add_actor_roles(r);
}

}  // namespace corridor
