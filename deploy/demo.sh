#!/usr/bin/env bash
# The demo federation: a corridor of four organisations on this machine, each
# with its own PKI, data directory and corridord, using exactly the tooling an
# operator would (corridorctl pki / roster). Run by `make demo`.
#
#   deploy/demo.sh          set up, start, show the federation, then stop it
#   deploy/demo.sh --keep   leave the nodes running (prints how to reach and stop them)
#   deploy/demo.sh --stop   stop nodes left running by --keep
#
# Every run starts clean: nodes of an earlier run are stopped and demo/ is wiped.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${CORRIDOR_BIN:-build/bin}
DEMO=${CORRIDOR_DEMO_DIR:-demo}
FED=corridor.demo
CTL="$BIN/corridorctl"
# The auditor's saved checkpoints (docs/audit.md) stay with the demo, not in your home.
export CORRIDOR_AUDIT_STATE="$DEMO/audit-state"
KEEP=0
case "${1:-}" in
  --keep) KEEP=1 ;;
  --stop) ;;
  "") ;;
  *) echo "usage: deploy/demo.sh [--keep|--stop]" >&2; exit 2 ;;
esac

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

stop_nodes() {
  local any=0
  for pidfile in "$DEMO"/*/corridord.pid; do
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
      any=1
    fi
    rm -f "$pidfile"
  done
  return 0
}

if [ "${1:-}" = "--stop" ]; then
  stop_nodes
  echo "demo nodes stopped"
  exit 0
fi

for b in corridord corridorctl; do
  [ -x "$BIN/$b" ] || { echo "demo: $BIN/$b is missing; run 'make demo' (it builds first)" >&2; exit 1; }
done

stop_nodes
rm -rf "$DEMO"
mkdir -p "$DEMO"

# A free loopback port: nothing answers on it.
port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port=$(( 20000 + (RANDOM % 20000) ))
take_free_port() {  # sets FREE_PORT (no subshell, so ports handed out stay distinct)
  while ! port_is_free "$next_port"; do next_port=$((next_port + 1)); done
  FREE_PORT=$next_port; next_port=$((next_port + 1))
}

# org id | name | country | kind
ORGS=(
  "union-sg|Migrant Workers Union legal-aid desk|SG|union"
  "ministry-id|Ministry of Manpower, migrant worker protection|ID|ministry"
  "inspectorate-sg|Labour Inspectorate|SG|inspectorate"
  "prosecutor-id|Attorney General's Office, transnational crime|ID|prosecutor"
)

say "1. The federation's stewards create their keys (2 of 3 must sign a roster)"
"$CTL" pki federation --federation "$FED" --out "$DEMO/federation" --stewards 3

say "2. Each organisation creates its CA, node certificate, signing key and users"
declare -A PORT
for entry in "${ORGS[@]}"; do
  IFS='|' read -r org name country kind <<<"$entry"
  take_free_port; PORT[$org]=$FREE_PORT
  "$CTL" pki org --federation "$FED" --org "$org" --out "$DEMO/$org"
  "$CTL" pki user --federation "$FED" --org "$org" --org-dir "$DEMO/$org" --name caseworker1 --out "$DEMO/$org/users"
  "$CTL" pki user --federation "$FED" --org "$org" --org-dir "$DEMO/$org" --name auditor1 --out "$DEMO/$org/users"
  "$CTL" pki user --federation "$FED" --org "$org" --org-dir "$DEMO/$org" --name admin1 --out "$DEMO/$org/users"
  "$CTL" pki user --federation "$FED" --org "$org" --org-dir "$DEMO/$org" --name prosecutor1 --out "$DEMO/$org/users"
  "$CTL" pki user --federation "$FED" --org "$org" --org-dir "$DEMO/$org" --name approver1 --out "$DEMO/$org/users"
done

say "3. The stewards build, sign and co-sign roster version 1"
"$CTL" roster init --federation "$FED" --out "$DEMO/federation/roster.yaml"
for entry in "${ORGS[@]}"; do
  IFS='|' read -r org name country kind <<<"$entry"
  "$CTL" roster add-member --roster "$DEMO/federation/roster.yaml" --org "$org" --name "$name" \
    --country "$country" --kind "$kind" --endpoint "127.0.0.1:${PORT[$org]}" --org-dir "$DEMO/$org"
done
"$CTL" roster add-agreement --roster "$DEMO/federation/roster.yaml" --id mou-sg-id-2026 \
  --title "SG-ID memorandum on migrant worker protection" \
  --parties union-sg,ministry-id,inspectorate-sg --purposes case-referral,fee-recovery,labour-inspection
# Under the treaty, prosecutors' offices may request evidence (docs/evidence.md).
"$CTL" roster add-agreement --roster "$DEMO/federation/roster.yaml" --id mla-sg-id-2026 \
  --title "SG-ID treaty on mutual legal assistance in criminal matters" \
  --parties union-sg,prosecutor-id --purposes prosecution --evidence-requesters prosecutor
"$CTL" roster sign --in "$DEMO/federation/roster.yaml" --key "$DEMO/federation/steward-1.key" \
  --key-name steward-1 --out "$DEMO/federation/roster.json"
"$CTL" roster sign --in "$DEMO/federation/roster.json" --key "$DEMO/federation/steward-2.key" \
  --key-name steward-2 --out "$DEMO/federation/roster.json"
"$CTL" roster show --in "$DEMO/federation/roster.json" --stewards "$DEMO/federation/stewards.yaml" --threshold 2

say "4. Each organisation configures and starts its node"
for entry in "${ORGS[@]}"; do
  IFS='|' read -r org name country kind <<<"$entry"
  dir="$DEMO/$org"
  cp "$DEMO/federation/roster.json" "$dir/roster.json"
  {
    echo "federation: $FED"
    echo "org: $org"
    echo "listen: 127.0.0.1:${PORT[$org]}"
    echo "data_dir: data"
    echo "master_key_file: master.key"
    echo "tls: {cert_file: node.crt, key_file: node.key, ca_file: ca.crt}"
    echo "signing_key: {key_id: $(cat "$dir/signing.keyid"), key_file: signing.key}"
    echo "roster:"
    echo "  file: roster.json"
    echo "  threshold: 2"
    sed 's/^/  /' "$DEMO/federation/stewards.yaml"
    echo "users:"
    echo "  caseworker1: {roles: [caseworker]}"
    echo "  auditor1: {roles: [auditor]}"
    echo "  admin1: {roles: [admin]}"
    echo "  prosecutor1: {roles: [prosecutor]}"
    echo "  approver1: {roles: [approver]}"
    echo "limits: {peer_probe_interval_seconds: 2, witness_interval_seconds: 2}"
  } >"$dir/node.yaml"
  "$BIN/corridord" --config "$dir/node.yaml" --check-config
  "$BIN/corridord" --config "$dir/node.yaml" 2>"$dir/corridord.log" &
  echo $! >"$dir/corridord.pid"
  echo "started $org on 127.0.0.1:${PORT[$org]} (pid $!, log $dir/corridord.log)"
done

cleanup() { [ "$KEEP" = 1 ] || stop_nodes; }
trap cleanup EXIT

ctl_as() {  # ctl_as ORG USER ARGS...
  local org=$1 user=$2; shift 2
  "$CTL" "$@" --node "127.0.0.1:${PORT[$org]}" --cert "$DEMO/$org/users/$user.crt" \
    --key "$DEMO/$org/users/$user.key" --ca "$DEMO/$org/ca.crt"
}

# Waits up to 30 s until ORG's USER lists evidence request ID in STATE (corridorctl requests).
wait_for_request() {  # wait_for_request ORG USER ID STATE
  local listing
  for _ in $(seq 1 150); do
    listing=$(ctl_as "$1" "$2" requests 2>/dev/null || true)
    if printf '%s\n' "$listing" | grep -F "$3" | grep -qi "$4"; then return 0; fi
    sleep 0.2
  done
  return 1
}

say "5. The nodes find each other through the roster and handshake over mutual TLS"
for entry in "${ORGS[@]}"; do
  IFS='|' read -r org _ <<<"$entry"
  ctl_as "$org" caseworker1 health --wait 60 --require-peers
  echo
done

say "6. Who does each node think is calling?"
ctl_as ministry-id caseworker1 whoami
echo
ctl_as union-sg auditor1 whoami

say "7. A caseworker at the union records a worker's case"
CASE=$(ctl_as union-sg caseworker1 case create --json --category recruitment-fees --sector domestic-work \
  --origin ID --destination SG --worker-name "Siti Rahayu" --worker-dob 1994-03-02 \
  --worker-document "X1234567" --languages id,en --employer "(household employer)" \
  --recruiter "PT Maju Jaya Recruitment" --recruiter-licence "KEP-123/2019" --recruiter-country ID \
  --narrative "Charged 8 months of wages in recruitment fees; passport held by the employer." \
  --consent ministry-id:fee-recovery,case-referral --consent prosecutor-id:prosecution | sed -n 's/.*"id": "\(C-[0-9A-F]*\)".*/\1/p' | head -1)
echo "created case $CASE"
ctl_as union-sg caseworker1 case show "$CASE" --purpose case-handling
echo
printf 'Employment contract, signed 2025-01-10. Monthly wage SGD 650. Placement fee: 8 months of wages.\n' >"$DEMO/contract.txt"
ctl_as union-sg caseworker1 evidence add "$CASE" "$DEMO/contract.txt" --media-type text/plain
ctl_as union-sg caseworker1 evidence list "$CASE" --purpose case-handling
EVIDENCE=$(ctl_as union-sg caseworker1 evidence list "$CASE" --purpose case-handling --json | sed -n 's/.*"id": "\(E-[0-9a-f]*\)".*/\1/p' | head -1)
ctl_as union-sg caseworker1 evidence get "$CASE" "$EVIDENCE" --out "$DEMO/contract.copy.txt" --purpose case-handling
echo
ctl_as union-sg caseworker1 case list
echo
echo "An auditor may not read case content; the refusal is recorded too:"
ctl_as union-sg auditor1 case show "$CASE" --purpose curiosity || true

say "8. The union's auditor reads the audit trail of the case"
ctl_as union-sg auditor1 audit log --case "$CASE"
echo
echo "... and checks that the node hid nothing: every entry proved, every link of the case's trail followed:"
ctl_as union-sg auditor1 audit log --case "$CASE" --verify --roster "$DEMO/federation/roster.json" \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2 | tail -n 3
INDEX=$(ctl_as union-sg auditor1 audit log --case "$CASE" --action case.create --json | sed -n 's/.*"index": "\{0,1\}\([0-9]*\)"\{0,1\},*$/\1/p' | head -1)
echo
echo "The checkpoint key comes from the roster, not from the node being audited:"
"$CTL" audit key union-sg --roster "$DEMO/federation/roster.json" \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2
ctl_as union-sg auditor1 audit prove "$INDEX" --roster "$DEMO/federation/roster.json" --org union-sg \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2
ctl_as union-sg auditor1 audit export --out "$DEMO/union-sg-ledger.export" \
  --roster "$DEMO/federation/roster.json" --org union-sg \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2
echo
echo "Each check after the first proves the ledger only grew since the auditor's last look:"
ctl_as union-sg auditor1 audit checkpoint --roster "$DEMO/federation/roster.json" --org union-sg \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2
"$CTL" audit verify "$DEMO/union-sg-ledger.export" --roster "$DEMO/federation/roster.json" --org union-sg \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2

say "9. The union refers the case across the corridor to the origin ministry"
ctl_as union-sg caseworker1 refer "$CASE" --to ministry-id --agreement mou-sg-id-2026 \
  --purpose fee-recovery --include personal-data,"$EVIDENCE"
for _ in $(seq 1 100); do
  ctl_as ministry-id caseworker1 inbox | grep -q REF- && break
  sleep 0.2
done
ctl_as union-sg caseworker1 outbox
echo
echo "At the ministry:"
ctl_as ministry-id caseworker1 inbox
REF=$(ctl_as ministry-id caseworker1 inbox --json | sed -n 's/.*"referral_id": "\(REF-[0-9A-F]*\)".*/\1/p' | head -1)
MCASE=$(ctl_as ministry-id caseworker1 accept "$REF" --json | sed -n 's/.*"case_id": "\(C-[0-9A-F]*\)".*/\1/p' | head -1)
echo "accepted $REF as the ministry's case $MCASE"

say "10. The ministry acts against the recruiter, and the outcome flows back"
echo "The ministry's caseworker reads the case; the ministry tells the union so, signed:"
ctl_as ministry-id caseworker1 case show "$MCASE" --purpose fee-recovery
ctl_as ministry-id caseworker1 update "$MCASE" --status in-progress --outcome licence-suspended \
  --note "Recruiter licence KEP-123/2019 suspended pending fee refund."
ctl_as ministry-id caseworker1 update "$MCASE" --outcome fees-refunded --note "IDR 21,000,000 refunded to the worker."
for _ in $(seq 1 100); do
  ctl_as union-sg caseworker1 case show "$CASE" --purpose case-handling | grep -q fees-refunded && break
  sleep 0.2
done
ctl_as union-sg caseworker1 case show "$CASE" --purpose case-handling

say "11. Both sides' audit logs show the hand-over"
echo "union-sg:"
ctl_as union-sg auditor1 audit log --case "$CASE" --limit 8
echo
echo "ministry-id:"
ctl_as ministry-id auditor1 audit log --case "$MCASE"

say "12. The union refers the case to the prosecutor's office in Indonesia, under the MLA treaty"
ctl_as union-sg caseworker1 refer "$CASE" --to prosecutor-id --agreement mla-sg-id-2026 \
  --purpose prosecution --include personal-data,"$EVIDENCE"
for _ in $(seq 1 100); do
  ctl_as prosecutor-id caseworker1 inbox | grep -q REF- && break
  sleep 0.2
done
PREF=$(ctl_as prosecutor-id caseworker1 inbox --json | sed -n 's/.*"referral_id": "\(REF-[0-9A-F]*\)".*/\1/p' | head -1)
PCASE=$(ctl_as prosecutor-id caseworker1 accept "$PREF" --json | sed -n 's/.*"case_id": "\(C-[0-9A-F]*\)".*/\1/p' | head -1)
echo "accepted $PREF as the prosecutor's case $PCASE"
echo "The referral carried the contract's description and digest; its content stayed with the union:"
ctl_as prosecutor-id prosecutor1 evidence list "$PCASE" --purpose prosecution

say "13. The prosecutor asks the union for the contract itself (an evidence request)"
echo "Only members of a kind the agreement lists may ask: a prosecutor at the ministry may not"
echo "under the memorandum (refused, and recorded):"
ctl_as ministry-id prosecutor1 evidence request --holder union-sg --case "$MCASE" --all \
  --agreement mou-sg-id-2026 --purpose fee-recovery \
  --legal-basis "Fee recovery proceedings against PT Maju Jaya Recruitment." || true
echo
ER_OUT=$(ctl_as prosecutor-id prosecutor1 evidence request --holder union-sg --case "$PCASE" \
  --items "$EVIDENCE" --agreement mla-sg-id-2026 --purpose prosecution \
  --legal-basis "SG-ID MLA treaty art. 15; investigation of PT Maju Jaya Recruitment for trafficking in persons (Law 21/2007 art. 4).")
echo "$ER_OUT"
ER=$(printf '%s\n' "$ER_OUT" | grep -o 'ER-[0-9A-F]\{12\}' | head -1)
[ -n "$ER" ] || { echo "demo: no evidence request id in the answer above" >&2; exit 1; }
echo
echo "At the union, once the request has arrived:"
wait_for_request union-sg approver1 "$ER" pending ||
  { echo "demo: request $ER did not reach union-sg within 30 s (see corridorctl outbox at prosecutor-id)" >&2; exit 1; }
ctl_as union-sg approver1 requests
echo
ctl_as union-sg approver1 requests show "$ER"

say "14. The union's approver grants it: one item, at most 2 fetches, on conditions"
ctl_as union-sg approver1 decide "$ER" --approve "$EVIDENCE" --max-fetches 2 \
  --condition "Not to be disclosed to the employer or the recruiter before charges are filed."
wait_for_request prosecutor-id prosecutor1 "$ER" approved ||
  { echo "demo: the decision on $ER did not reach prosecutor-id within 30 s (see corridorctl outbox at union-sg)" >&2; exit 1; }
ctl_as prosecutor-id prosecutor1 requests show "$ER"

say "15. The prosecutor fetches the granted evidence; its SHA-256 is checked end to end"
ctl_as prosecutor-id prosecutor1 evidence fetch "$ER" --out "$DEMO/prosecutor-id/evidence"
echo "The file the union uploaded and the one the prosecutor received:"
sha256sum "$DEMO/contract.txt" "$DEMO/prosecutor-id/evidence/"*
LOCAL=$(ctl_as prosecutor-id prosecutor1 evidence list "$PCASE" --purpose prosecution --json |
  sed -n 's/.*"id": "\(E-[0-9A-Fa-f]*\)".*/\1/p' | { grep -v "^$EVIDENCE\$" || true; } | head -1)
[ -n "$LOCAL" ] || { echo "demo: the fetched item is not in the prosecutor's case $PCASE" >&2; exit 1; }
echo "stored in the prosecutor's case $PCASE as $LOCAL, its conditions shown whenever it is read:"
ctl_as prosecutor-id prosecutor1 evidence list "$PCASE" --purpose prosecution

say "16. Chain of custody at both ends, every event proved against the node's signed checkpoint"
echo "union-sg (the holder), $EVIDENCE: upload, download, grant, serve:"
ctl_as union-sg auditor1 evidence custody "$EVIDENCE" --roster "$DEMO/federation/roster.json" \
  --org union-sg --stewards "$DEMO/federation/stewards.yaml" --threshold 2
echo
echo "prosecutor-id (the requester), $LOCAL: the fetch with the union's signed receipt, the download:"
ctl_as prosecutor-id auditor1 evidence custody "$LOCAL" --roster "$DEMO/federation/roster.json" \
  --org prosecutor-id --stewards "$DEMO/federation/stewards.yaml" --threshold 2
echo
echo "Both ledgers hold the request, the decision and the fetch (newest first):"
echo "prosecutor-id:"
ctl_as prosecutor-id auditor1 audit log --case "$PCASE" --limit 10
echo
echo "union-sg:"
ctl_as union-sg auditor1 audit log --case "$CASE" --limit 10

say "17. The stewards prepare roster version 2: a new union signing key, a certificate revoked"
"$CTL" pki signing-key --org union-sg --out "$DEMO/union-sg/key-2"
"$CTL" pki user --federation "$FED" --org union-sg --org-dir "$DEMO/union-sg" --name former-caseworker --out "$DEMO/union-sg/users"
"$CTL" pki revoke --cert "$DEMO/union-sg/users/former-caseworker.crt"
"$CTL" roster new-version --from "$DEMO/federation/roster.json" --out "$DEMO/federation/roster-v2.yaml" \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2
"$CTL" roster add-key --roster "$DEMO/federation/roster-v2.yaml" --org union-sg --key-dir "$DEMO/union-sg/key-2"
"$CTL" roster revoke-cert --roster "$DEMO/federation/roster-v2.yaml" --org union-sg \
  --cert "$DEMO/union-sg/users/former-caseworker.crt"
echo "Revoking the ministry's only signing key is refused (it would have none left):"
"$CTL" roster revoke-key --roster "$DEMO/federation/roster-v2.yaml" --org ministry-id --key-id ministry-id-1 || true
"$CTL" roster diff "$DEMO/federation/roster.json" "$DEMO/federation/roster-v2.yaml"
"$CTL" roster sign --in "$DEMO/federation/roster-v2.yaml" --key "$DEMO/federation/steward-1.key" \
  --key-name steward-1 --out "$DEMO/federation/roster-v2.json"
echo "One signature is not enough:"
"$CTL" roster verify --in "$DEMO/federation/roster-v2.json" --stewards "$DEMO/federation/stewards.yaml" --threshold 2 || true
"$CTL" roster sign --in "$DEMO/federation/roster-v2.json" --key "$DEMO/federation/steward-3.key" \
  --key-name steward-3 --out "$DEMO/federation/roster-v2.json"
"$CTL" roster verify --in "$DEMO/federation/roster-v2.json" --stewards "$DEMO/federation/stewards.yaml" --threshold 2
echo "The union's admin installs it at the union's node; the other nodes fetch it from there and"
echo "follow it at once, without a restart:"
ctl_as union-sg admin1 roster push --in "$DEMO/federation/roster-v2.json"
cp "$DEMO/federation/roster-v2.json" "$DEMO/federation/roster.json"
ctl_as union-sg admin1 health --require-peers --wait 60

say "18. An auditor's review: who saw the worker's file, at home and across the border"
echo "Every node witnesses the others' ledgers and cosigns their checkpoints; the union's"
echo "checkpoint, vouched for by both other nodes:"
for _ in $(seq 1 150); do
  ctl_as union-sg auditor1 audit checkpoint --cosigned 2 --roster "$DEMO/federation/roster.json" \
    --stewards "$DEMO/federation/stewards.yaml" --threshold 2 >/dev/null 2>&1 && break
  sleep 0.2
done
ctl_as union-sg auditor1 audit checkpoint --cosigned 2 --roster "$DEMO/federation/roster.json" \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2
echo
echo "Who read the case at the nodes it was referred to, each read attested by that node's key"
echo "and proved in that node's own ledger:"
ctl_as union-sg auditor1 audit log --case "$CASE" --downstream --prove \
  --roster "$DEMO/federation/roster.json" --stewards "$DEMO/federation/stewards.yaml" --threshold 2
echo
echo "Both sides hold the same record of every envelope they exchanged:"
ctl_as union-sg auditor1 audit reconcile --peer ministry-id
echo
echo "A court bundle of the case: its whole trail, proved against the cosigned checkpoint,"
echo "with the receivers' receipts and the other nodes' signed access attestations:"
ctl_as union-sg auditor1 audit bundle "$CASE" --cosigned 2 --out "$DEMO/$CASE.bundle" \
  --roster "$DEMO/federation/roster.json" --stewards "$DEMO/federation/stewards.yaml" --threshold 2 >/dev/null
echo "wrote $DEMO/$CASE.bundle; a court checks it with no node and no network, only the"
echo "stewards' public keys:"
"$CTL" audit verify "$DEMO/$CASE.bundle" --stewards "$DEMO/federation/stewards.yaml" --threshold 2

if [ "$KEEP" = 1 ]; then
  say "The federation keeps running"
  for entry in "${ORGS[@]}"; do
    IFS='|' read -r org _ <<<"$entry"
    echo "  $org: 127.0.0.1:${PORT[$org]}  (config $DEMO/$org/node.yaml, log $DEMO/$org/corridord.log)"
  done
  cat <<EOT

Talk to a node as one of its users, e.g.:
  export CORRIDOR_NODE=127.0.0.1:${PORT[union-sg]} CORRIDOR_CA=$DEMO/union-sg/ca.crt
  export CORRIDOR_CERT=$DEMO/union-sg/users/caseworker1.crt CORRIDOR_KEY=$DEMO/union-sg/users/caseworker1.key
  $CTL health
Stop them with:  deploy/demo.sh --stop
EOT
else
  say "Stopping the demo federation (run 'make demo KEEP=1' to leave it running)"
  stop_nodes
  echo "all nodes stopped cleanly"
fi
