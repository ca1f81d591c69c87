#!/usr/bin/env bash
# Writes the files compose.yaml mounts: a federation of three organisations (union-sg,
# ministry-id, inspectorate-sg) with its stewards' keys, each org's CA, node certificate,
# signing key, master key, a monitor user (the health check) and an admin, a signed roster
# whose endpoints are the compose service names, and each node's node.yaml in the image's
# layout. Uses corridorctl only, as an operator would (docs/operations.md).
#
#   deploy/container/make-compose-federation.sh DIR      (DIR must not exist yet)
#
# Then: docker compose -f deploy/container/compose.yaml up --build -d  (DIR must be
# deploy/container/federation for that file, or edit its volumes).
# CORRIDOR_BIN (default build/bin) is where corridorctl is.
set -euo pipefail
OUT=${1:?usage: $0 DIR}
CTL=${CORRIDOR_BIN:-build/bin}/corridorctl
FED=corridor.compose
ORGS=(union-sg ministry-id inspectorate-sg)
declare -A KIND=([union-sg]=union [ministry-id]=ministry [inspectorate-sg]=inspectorate)
declare -A COUNTRY=([union-sg]=SG [ministry-id]=ID [inspectorate-sg]=SG)
# The uid and gid the image runs corridord as (Dockerfile: useradd --uid 10001).
NODE_UID=10001

[ -x "$CTL" ] || { echo "$0: $CTL is missing; build first (make build)" >&2; exit 1; }
[ -e "$OUT" ] && { echo "$0: $OUT exists; give a new directory" >&2; exit 1; }
mkdir -p "$OUT"

"$CTL" pki federation --federation "$FED" --out "$OUT/stewards" --stewards 3
"$CTL" roster init --federation "$FED" --out "$OUT/stewards/roster.yaml"
for org in "${ORGS[@]}"; do
  pki="$OUT/$org/pki"   # the org's own files; ca.key stays here, never in etc/
  # --host: the name peers use to reach this node (the compose service name).
  "$CTL" pki org --federation "$FED" --org "$org" --out "$pki" --host "$org"
  for user in monitor admin1; do
    "$CTL" pki user --federation "$FED" --org "$org" --org-dir "$pki" --name "$user" --out "$pki/users"
  done
  "$CTL" roster add-member --roster "$OUT/stewards/roster.yaml" --org "$org" --name "$org" \
    --country "${COUNTRY[$org]}" --kind "${KIND[$org]}" --endpoint "$org:7443" --org-dir "$pki"
done
"$CTL" roster add-agreement --roster "$OUT/stewards/roster.yaml" --id mou-compose \
  --parties union-sg,ministry-id,inspectorate-sg --purposes case-referral,labour-inspection
"$CTL" roster sign --in "$OUT/stewards/roster.yaml" --key "$OUT/stewards/steward-1.key" \
  --key-name steward-1 --out "$OUT/stewards/roster.json"
"$CTL" roster sign --in "$OUT/stewards/roster.json" --key "$OUT/stewards/steward-2.key" \
  --key-name steward-2 --out "$OUT/stewards/roster.json"

for org in "${ORGS[@]}"; do
  pki="$OUT/$org/pki" etc="$OUT/$org/etc"
  mkdir -p "$etc/keys" "$etc/monitor"
  cp "$pki/ca.crt" "$pki/node.crt" "$etc/"
  cp "$OUT/stewards/roster.json" "$etc/roster.json"
  cp "$pki/node.key" "$pki/signing.key" "$pki/master.key" "$etc/keys/"
  cp "$pki/users/monitor.crt" "$pki/users/monitor.key" "$etc/monitor/"
  {
    echo "federation: $FED"
    echo "org: $org"
    echo "listen: 0.0.0.0:7443"
    echo "data_dir: /var/lib/corridor/data"
    echo "master_key_file: /etc/corridor/keys/master.key"
    echo "tls: {cert_file: /etc/corridor/node.crt, key_file: /etc/corridor/keys/node.key, ca_file: /etc/corridor/ca.crt}"
    echo "signing_key: {key_id: $(cat "$pki/signing.keyid"), key_file: /etc/corridor/keys/signing.key}"
    echo "roster:"
    echo "  file: /var/lib/corridor/roster.json"
    echo "  threshold: 2"
    sed 's/^/  /' "$OUT/stewards/stewards.yaml"
    echo "users:"
    echo "  monitor: {roles: [monitor]}"
    echo "  admin1: {roles: [admin]}"
  } >"$etc/node.yaml"
  # The node runs as uid 10001 in the container: it must read its files, nobody else.
  chmod 0755 "$etc" && chmod 0700 "$etc/keys" "$etc/monitor" && chmod 0600 "$etc"/keys/* "$etc"/monitor/*
  if [ "$(id -u)" -eq 0 ]; then
    chown -R "$NODE_UID:$NODE_UID" "$etc"
  else
    echo "$0: not root: run 'sudo chown -R $NODE_UID:$NODE_UID $etc' so the container's user can read its keys"
  fi
done
echo "federation written to $OUT: each org's etc/ is what its container mounts at /etc/corridor"
