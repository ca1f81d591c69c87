#!/bin/sh
# The container's entrypoint: corridord with the arguments given (default
# --config /etc/corridor/node.yaml). The node rewrites its roster file when it installs a
# newer roster, so that file lives in the state volume; on the very first start it is copied
# there from the read-only /etc/corridor/roster.json. Later starts keep the volume's copy
# (which may be newer); the node refuses a roster older than the one in force anyway.
set -eu
state=/var/lib/corridor
if [ ! -e "$state/roster.json" ] && [ -e /etc/corridor/roster.json ]; then
  cp /etc/corridor/roster.json "$state/roster.json"
  echo "corridor-entrypoint: first start: copied /etc/corridor/roster.json to $state/roster.json" >&2
fi
exec /usr/local/bin/corridord "$@"
