#!/usr/bin/env bash
# The demo: one migrant domestic worker's case, told end to end across a labour-migration
# corridor (Indonesia -> Singapore) by four organisations, each running its own corridord on
# this machine with its own PKI and data directory, set up with exactly the tooling an
# operator would use (corridorctl pki / roster). Run by `make demo`. Every corridorctl command
# is printed before it runs, so a reader can repeat it by hand. All data is fictional.
#
#   deploy/demo.sh          set up, start, tell the story, then stop the nodes
#   deploy/demo.sh --keep   leave the nodes running (prints how to reach and stop them)
#   deploy/demo.sh --stop   stop nodes left running by --keep
#
# Every run starts clean: nodes of an earlier run are stopped and demo/ is wiped.
# CORRIDOR_BIN (default build/bin) and CORRIDOR_DEMO_DIR (default demo) override the paths.
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

stop_nodes() {
  for pidfile in "$DEMO"/*/corridord.pid; do
    [ -f "$pidfile" ] || continue
    local pid; pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
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

# ---------------------------------------------------------------------------------------------
# How the story is printed. Commands are echoed on fd 3 (the terminal), so that a command whose
# output the script reads still shows what it runs.
exec 3>&1
if [ -t 1 ]; then
  BOLD=$'\033[1m' CMD=$'\033[36m' OFF=$'\033[0m'
else
  BOLD='' CMD='' OFF=''
fi

chapter() { printf '\n%s== %s%s\n' "$BOLD" "$*" "$OFF"; }
tell() { printf '%s\n' "$@"; }  # the real-world sentence(s) of a step, one argument a line

# A word as a reader would type it: quoted only if the shell needs it, in double quotes if it
# holds an apostrophe and nothing double quotes would change.
shell_word() {
  if [[ $1 =~ ^[A-Za-z0-9_./:,=@%+-]+$ ]]; then
    printf '%s' "$1"
  elif [[ $1 != *\'* ]]; then
    printf "'%s'" "$1"
  elif [[ $1 != *[\"\$\`\\!]* ]]; then
    printf '"%s"' "$1"
  else
    printf "'%s'" "${1//\'/\'\\\'\'}"
  fi
}

# show SUFFIX PROGRAM ARGS...: prints "$ PROGRAM ARGS SUFFIX", broken before an option (kept
# with its value) once a line passes 92 columns, with shell continuations.
show() {
  local suffix=$1; shift
  local line="\$ $1" text="" unit i=2 n=$#
  local -a args=("$@")
  while [ "$i" -le "$n" ]; do
    unit=$(shell_word "${args[i-1]}")
    if [[ ${args[i-1]} == --* ]] && [ "$i" -lt "$n" ] && [[ ${args[i]} != --* ]]; then
      unit+=" $(shell_word "${args[i]}")"; i=$((i + 1))
    fi
    if [ $((${#line} + ${#unit} + 1)) -gt 92 ]; then
      text+="$line \\"$'\n'; line="    $unit"
    else
      line+=" $unit"
    fi
    i=$((i + 1))
  done
  [ -n "$suffix" ] && line+="  $suffix"
  printf '%s%s%s\n' "$CMD" "$text$line" "$OFF" >&3
}

ctl() {  # ctl ARGS...: corridorctl with no node (keys, rosters, offline checks)
  show "" corridorctl "$@"
  "$CTL" "$@"
}

# as ORG USER ARGS...: corridorctl as USER of ORG, at ORG's node. Shown as `[as ORG/USER]`;
# the flags it stands for are explained at the start.
as() {
  local org=$1 user=$2; shift 2
  show "[as $org/$user]" corridorctl "$@"
  "$CTL" "$@" --node "127.0.0.1:${PORT[$org]}" --cert "$DEMO/$org/users/$user.crt" \
    --key "$DEMO/$org/users/$user.key" --ca "$DEMO/$org/ca.crt"
}

# unshown ORG USER ARGS...: the same, not shown and without its errors (for the waits below).
unshown() {
  local org=$1 user=$2; shift 2
  "$CTL" "$@" --node "127.0.0.1:${PORT[$org]}" --cert "$DEMO/$org/users/$user.crt" \
    --key "$DEMO/$org/users/$user.key" --ca "$DEMO/$org/ca.crt" 2>/dev/null
}
as_quietly() { unshown "$@" >/dev/null; }

# refused ARGS...: `as ARGS...`, which must be refused; the demo fails if it is not.
refused() {
  if as "$@"; then echo "demo: the command above should have been refused" >&2; exit 1; fi
}

# brief COMMAND...: runs COMMAND (ctl or as), printing only the first line of its answer.
brief() {
  local out
  out=$("$@")
  printf '%s\n' "${out%%$'\n'*}"
}

# first_match REGEX TEXT: the first match of REGEX in TEXT; the demo fails if there is none.
first_match() {
  local found
  found=$(printf '%s\n' "$2" | grep -o -m1 -E "$1" | head -1 || true)
  [ -n "$found" ] || { echo "demo: expected $1 in the output above" >&2; exit 1; }
  printf '%s' "$found"
}

# eventually SECONDS WHAT COMMAND...: polls COMMAND every 0.2 s until it succeeds; after
# SECONDS the demo stops, saying WHAT did not happen.
eventually() {
  local seconds=$1 what=$2; shift 2
  local tries=$((seconds * 5))
  for _ in $(seq 1 "$tries"); do
    "$@" && return 0
    sleep 0.2
  done
  echo "demo: $what did not happen within $seconds s (the nodes' logs: $DEMO/*/corridord.log)" >&2
  exit 1
}

# ORG's outbox has no message still pending or failed: everything it sent was delivered and
# receipted.
outbox_delivered() {
  local listing
  listing=$(unshown "$1" caseworker1 outbox --json) || return 1
  ! printf '%s\n' "$listing" | grep '"state"' | grep -qv '"delivered"'
}
all_delivered() {
  for org in "${ORG_IDS[@]}"; do outbox_delivered "$org" || return 1; done
}

# ORG's USER lists evidence request ID in STATE.
request_in_state() {  # request_in_state ORG USER ID STATE
  local listing
  listing=$(unshown "$1" "$2" requests) || return 1
  printf '%s\n' "$listing" | grep -F "$3" | grep -qi "$4"
}

# ORG's node is serving, every peer is healthy, and it has witnessed (checked and cosigned)
# every peer's ledger at least once.
witnesses_every_peer() {
  local listing
  listing=$(unshown "$1" caseworker1 health --require-peers) || return 1
  [ "$(printf '%s\n' "$listing" | grep -c -E ' size [0-9]+ at ')" -eq $((${#ORG_IDS[@]} - 1)) ]
}

# A free loopback port: nothing answers on it.
port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
next_port=$(( 20000 + (RANDOM % 20000) ))
take_free_port() {  # sets FREE_PORT (no subshell, so ports handed out stay distinct)
  while ! port_is_free "$next_port"; do next_port=$((next_port + 1)); done
  FREE_PORT=$next_port; next_port=$((next_port + 1))
}

# org id | name | country | kind | its users (each user's role is the name less its digit).
# The union's node starts last, so that its first round of witnessing finds the others up.
ORGS=(
  "ministry-id|Ministry of Manpower, migrant worker protection|ID|ministry|caseworker1 auditor1"
  "inspectorate-sg|Labour Inspectorate|SG|inspectorate|caseworker1 auditor1"
  "prosecutor-sg|Public Prosecutor's Office, labour trafficking unit|SG|prosecutor|caseworker1 prosecutor1 auditor1"
  "union-sg|Migrant Workers Union, legal-aid desk|SG|union|caseworker1 approver1 auditor1 admin1"
)
ORG_IDS=()
declare -A PORT
for entry in "${ORGS[@]}"; do
  IFS='|' read -r org _ <<<"$entry"
  ORG_IDS+=("$org")
  take_free_port; PORT[$org]=$FREE_PORT
done
ROSTER=(--roster "$DEMO/federation/roster.json" --stewards "$DEMO/federation/stewards.yaml" --threshold 2)

cat <<EOT
${BOLD}Corridor demo: one worker's case across the Indonesia -> Singapore corridor${OFF}

Everything in this demo is FICTIONAL: the worker, her employer, the recruiter, the documents
and the amounts are made up, and the organisations are stand-ins, not the real agencies.

Siti, a domestic worker from Indonesia employed in a Singapore household, was charged eight
months' wages in fees by her recruiter, has had her passport taken by her employer, and has
not been paid for three months. Four organisations act on her case, each running its own Corridor
node on this machine (its keys and data under $DEMO/ORG):

  union-sg         the migrant workers' union legal-aid desk in Singapore, where she asks for help
  inspectorate-sg  Singapore's labour inspectorate
  prosecutor-sg    Singapore's public prosecutor's office
  ministry-id      Indonesia's labour ministry (the country she came from; it licenses recruiters)

Every command is printed before it runs, after a \$; corridorctl and corridord are in $BIN.
A command that talks to a node ends with [as ORG/USER]: it runs as that user of that org,
at that org's node. To run it by hand, type in place of [as ORG/USER]
  --node 127.0.0.1:PORT --cert $DEMO/ORG/users/USER.crt --key $DEMO/ORG/users/USER.key --ca $DEMO/ORG/ca.crt
with the node's port from step 4 (or export CORRIDOR_NODE, CORRIDOR_CERT, CORRIDOR_KEY and
CORRIDOR_CA once). To try commands yourself afterwards, run 'make demo KEEP=1': the nodes keep
running. The nodes' own answers are printed as they come.
EOT

# ---------------------------------------------------------------------------------------------
chapter "Part one: the organisations set up their federation (their IT staff, once)"

chapter "1. The federation's stewards create their keys: 2 of the 3 must sign the member list"
tell "The member list (the roster) says who belongs to the federation and what agreements they" \
  "have signed. No single steward can change it."
ctl pki federation --federation "$FED" --out "$DEMO/federation" --stewards 3

chapter "2. Each organisation creates its own certificate authority, node keys and staff certificates"
tell "Each organisation vouches for its own node and its own staff; nobody else holds its keys." \
  "(Only the first line of each answer is shown here.)"
for entry in "${ORGS[@]}"; do
  IFS='|' read -r org _ _ _ users <<<"$entry"
  brief ctl pki org --federation "$FED" --org "$org" --out "$DEMO/$org"
  for user in $users; do
    brief ctl pki user --federation "$FED" --org "$org" --org-dir "$DEMO/$org" --name "$user" \
      --out "$DEMO/$org/users"
  done
done

chapter "3. The stewards write down the members and their agreements, and sign (roster version 1)"
tell "Two agreements: a memorandum between Singapore and Indonesia, under which cases are" \
  "referred across the border for fee recovery; and a Singapore inter-agency protocol under" \
  "which the union, the inspectorate and the prosecutor share cases, and under which the" \
  "prosecutor (and only the prosecutor) may ask for evidence."
ctl roster init --federation "$FED" --out "$DEMO/federation/roster.yaml"
for entry in "${ORGS[@]}"; do
  IFS='|' read -r org name country kind _ <<<"$entry"
  ctl roster add-member --roster "$DEMO/federation/roster.yaml" --org "$org" --name "$name" \
    --country "$country" --kind "$kind" --endpoint "127.0.0.1:${PORT[$org]}" --org-dir "$DEMO/$org"
done
ctl roster add-agreement --roster "$DEMO/federation/roster.yaml" --id mou-sg-id-2026 \
  --title "SG-ID memorandum on migrant worker protection" \
  --parties union-sg,inspectorate-sg,ministry-id --purposes case-referral,fee-recovery
ctl roster add-agreement --roster "$DEMO/federation/roster.yaml" --id sg-protocol-2026 \
  --title "Singapore inter-agency protocol on migrant worker complaints" \
  --parties union-sg,inspectorate-sg,prosecutor-sg --purposes labour-inspection,prosecution \
  --evidence-requesters prosecutor
ctl roster sign --in "$DEMO/federation/roster.yaml" --key "$DEMO/federation/steward-1.key" \
  --key-name steward-1 --out "$DEMO/federation/roster.json"
ctl roster sign --in "$DEMO/federation/roster.json" --key "$DEMO/federation/steward-2.key" \
  --key-name steward-2 --out "$DEMO/federation/roster.json"
ctl roster show --in "$DEMO/federation/roster.json" --stewards "$DEMO/federation/stewards.yaml" --threshold 2

# From here on, the nodes started are stopped however the demo ends (unless --keep).
cleanup() { [ "$KEEP" = 1 ] || stop_nodes; }
trap cleanup EXIT

chapter "4. Each organisation configures and starts its node"
tell "Each node gets the signed roster and a config naming its staff and their roles" \
  "(caseworker, approver, prosecutor, auditor, admin): $DEMO/ORG/node.yaml."
for entry in "${ORGS[@]}"; do
  IFS='|' read -r org _ _ _ users <<<"$entry"
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
    for user in $users; do echo "  $user: {roles: [${user%%[0-9]*}]}"; done
    echo "limits: {peer_probe_interval_seconds: 2, witness_interval_seconds: 2}"
  } >"$dir/node.yaml"
  show "" corridord --config "$dir/node.yaml" --check-config
  "$BIN/corridord" --config "$dir/node.yaml" --check-config
  show "" corridord --config "$dir/node.yaml"
  "$BIN/corridord" --config "$dir/node.yaml" 2>"$dir/corridord.log" &
  echo $! >"$dir/corridord.pid"
  echo "started $org on 127.0.0.1:${PORT[$org]} (pid $!, log $dir/corridord.log)"
done


chapter "5. The nodes find each other through the roster and check each other's certificates"
tell "Each node speaks only to members of the roster, over mutual TLS, and watches the others'" \
  "ledgers (WITNESSED) so that none can quietly rewrite its history."
for org in inspectorate-sg prosecutor-sg ministry-id; do
  eventually 60 "$org seeing every peer" as_quietly "$org" caseworker1 health --require-peers
done
eventually 60 "union-sg seeing and witnessing every peer" witnesses_every_peer union-sg
as union-sg caseworker1 health --require-peers
echo
tell "Staff connect with a certificate from their own organisation; the node knows their role:"
as union-sg caseworker1 whoami

# ---------------------------------------------------------------------------------------------
chapter "Part two: Siti's case"

chapter "6. Siti tells the union's legal-aid desk what happened; a caseworker records her case"
tell "She agrees that her details may go to the Indonesian ministry (to recover the fees), to" \
  "the inspectorate (to inspect the employer) and to the prosecutor. Her name and details are" \
  "stored encrypted, and every read of them is recorded with its reason."
out=$(as union-sg caseworker1 case create --category recruitment-fees --sector domestic-work \
  --origin ID --destination SG --worker-name "Siti Rahayu" --worker-dob 1994-03-02 \
  --worker-document X1234567 --languages id,en --employer "Tan household, Bukit Timah" \
  --recruiter "PT Maju Jaya Recruitment" --recruiter-licence KEP-123/2019 --recruiter-country ID \
  --narrative "FICTIONAL DEMO CASE. Charged a placement fee of 8 months' wages by the recruiter, deducted from her salary; the employer has kept her passport since she arrived; no wages paid for March to May 2026." \
  --consent ministry-id:case-referral,fee-recovery --consent inspectorate-sg:labour-inspection \
  --consent prosecutor-sg:prosecution --consent-method "explained in Bahasa Indonesia; agreed orally")
printf '%s\n' "$out"
CASE=$(first_match 'C-[0-9A-F]{12}' "$out")

chapter "7. She brings three documents; the caseworker attaches them to her case"
tell "Her contract (with the fee clause), her wage record, and the caseworker's note of a photo" \
  "Siti took of her passport in her employer's locked drawer. Each file's SHA-256 fingerprint" \
  "is recorded, so any copy can later be checked against it."
cat >"$DEMO/contract.txt" <<'EOT'
FICTIONAL DEMO DOCUMENT - not a real contract.
Employment contract, signed 2025-01-10, Jakarta. Employer: Tan household, Singapore.
Monthly wage SGD 650. Clause 9: placement fee of 8 months' wages, deducted from salary.
EOT
cat >"$DEMO/wage-record.txt" <<'EOT'
FICTIONAL DEMO DOCUMENT - not a real wage record.
2026-01 and 2026-02: SGD 50 paid each month (SGD 600 deducted as "placement fee", passed on
to the recruiter).
2026-03 to 2026-05: nothing paid.
EOT
cat >"$DEMO/passport-photo-note.txt" <<'EOT'
FICTIONAL DEMO DOCUMENT - not a real photo.
Caseworker's note of a photo shown by the worker, taken 2026-05-14: her passport in a locked
drawer in the employer's study. The employer has held it since her arrival in 2025.
EOT
EVIDENCE=()
for doc in contract wage-record passport-photo-note; do
  out=$(as union-sg caseworker1 evidence add "$CASE" "$DEMO/$doc.txt" --media-type text/plain)
  printf '%s\n' "$out"
  EVIDENCE+=("$(first_match 'E-[0-9A-Fa-f]{12}' "$out")")
done
CONTRACT=${EVIDENCE[0]} WAGES=${EVIDENCE[1]} PHOTO=${EVIDENCE[2]}
tell "" "Reading the case means saying why (the purpose is recorded):"
as union-sg caseworker1 case show "$CASE" --purpose case-handling
echo
tell "The union's own auditor may not read Siti's file: auditors see who did what, not what the" \
  "file says. The refusal is recorded too:"
refused union-sg auditor1 case show "$CASE" --purpose case-handling

chapter "8. The union refers the case to the Indonesian ministry and to Singapore's inspectorate"
tell "The ministry licenses the recruiter and can make it refund the fees; the inspectorate can" \
  "inspect the employer. Each gets what its job needs: the ministry the contract and wage" \
  "record, the inspectorate all three documents. The files themselves stay at the union; a" \
  "referral carries their descriptions and fingerprints."
as union-sg caseworker1 refer "$CASE" --to ministry-id --agreement mou-sg-id-2026 \
  --purpose fee-recovery --include personal-data,"$CONTRACT","$WAGES"
as union-sg caseworker1 refer "$CASE" --to inspectorate-sg --agreement sg-protocol-2026 \
  --purpose labour-inspection --include personal-data,"$CONTRACT","$WAGES","$PHOTO"
eventually 30 "the delivery of both referrals" outbox_delivered union-sg
tell "" "Each referral is delivered, and each receiver signs a receipt naming its ledger entry:"
as union-sg caseworker1 outbox

chapter "9. Both accept the case"
tell "At the ministry in Jakarta:"
out=$(as ministry-id caseworker1 inbox); printf '%s\n' "$out"
out=$(as ministry-id caseworker1 accept "$(first_match 'REF-[0-9A-F]{12}' "$out")"); printf '%s\n' "$out"
MCASE=$(first_match 'C-[0-9A-F]{12}' "$out")
echo
tell "At the inspectorate in Singapore:"
out=$(as inspectorate-sg caseworker1 inbox); printf '%s\n' "$out"
out=$(as inspectorate-sg caseworker1 accept "$(first_match 'REF-[0-9A-F]{12}' "$out")"); printf '%s\n' "$out"
ICASE=$(first_match 'C-[0-9A-F]{12}' "$out")

chapter "10. The ministry acts against the recruiter"
tell "Its caseworker reads the case (the ministry's node tells the union so, signed), suspends" \
  "the recruiter's licence and has the fees refunded. Each step goes back to the union, signed."
as ministry-id caseworker1 case show "$MCASE" --purpose fee-recovery
as ministry-id caseworker1 update "$MCASE" --status in-progress --outcome licence-suspended \
  --note "Recruiter licence KEP-123/2019 suspended pending refund of the fees."
as ministry-id caseworker1 update "$MCASE" --outcome fees-refunded \
  --note "IDR 14,400,000 (SGD 1,200) refunded to the worker by the recruiter; the rest of the fee cancelled."

chapter "11. The inspectorate inspects the employer"
tell "The inspector looks at what documents the union holds (the files stay at the union)," \
  "visits the household, has the passport handed back to Siti, and orders her wages paid."
as inspectorate-sg caseworker1 evidence list "$ICASE" --purpose labour-inspection
as inspectorate-sg caseworker1 update "$ICASE" --status in-progress --outcome employer-inspected \
  --note "Household inspected 2026-06-02; employer interviewed."
as inspectorate-sg caseworker1 update "$ICASE" --outcome passport-returned \
  --note "Passport handed back to the worker in the inspector's presence."
as inspectorate-sg caseworker1 update "$ICASE" --outcome back-wages-ordered \
  --note "Employer ordered to pay SGD 1,950, her wages for March to May 2026."

chapter "12. Back at the union, the caseworker sees both outcomes on Siti's case"
eventually 30 "the ministry's updates reaching the union" outbox_delivered ministry-id
eventually 30 "the inspectorate's updates reaching the union" outbox_delivered inspectorate-sg
as union-sg caseworker1 case show "$CASE" --purpose case-handling

chapter "13. The union refers the case to the public prosecutor"
tell "Taking a worker's passport and charging unlawful fees are offences. With Siti's consent" \
  "the union refers her case to the prosecutor, under the Singapore protocol."
as union-sg caseworker1 refer "$CASE" --to prosecutor-sg --agreement sg-protocol-2026 \
  --purpose prosecution --include personal-data,"$CONTRACT","$WAGES","$PHOTO"
eventually 30 "the delivery of the referral to prosecutor-sg" outbox_delivered union-sg
out=$(as prosecutor-sg caseworker1 inbox); printf '%s\n' "$out"
out=$(as prosecutor-sg caseworker1 accept "$(first_match 'REF-[0-9A-F]{12}' "$out")"); printf '%s\n' "$out"
PCASE=$(first_match 'C-[0-9A-F]{12}' "$out")
echo
tell "The prosecutor sees what the documents are and their fingerprints, but not the files:"
as prosecutor-sg prosecutor1 evidence list "$PCASE" --purpose prosecution

chapter "14. The prosecutor formally asks the union for the three documents (an evidence request)"
tell "A request names its legal basis. The union's node checks that the protocol lets a" \
  "prosecutor ask, then waits for the union's approver (its data controller) to decide."
out=$(as prosecutor-sg prosecutor1 evidence request --holder union-sg --case "$PCASE" \
  --items "$CONTRACT" "$WAGES" "$PHOTO" --agreement sg-protocol-2026 --purpose prosecution \
  --legal-basis "Investigation of the employer (retention of a worker's passport) and of PT Maju Jaya Recruitment (unlawful fees).")
printf '%s\n' "$out"
ER=$(first_match 'ER-[0-9A-F]{12}' "$out")
eventually 30 "the request $ER reaching union-sg" request_in_state union-sg approver1 "$ER" pending
echo
tell "At the union, its approver reads the request:"
as union-sg approver1 requests show "$ER"

chapter "15. The union's approver grants it: the three documents, at most 2 fetches, on conditions"
as union-sg approver1 decide "$ER" --approve "$CONTRACT" "$WAGES" "$PHOTO" --max-fetches 2 \
  --condition "Not to be disclosed to the employer or the recruiter before charges are filed."
eventually 30 "the decision on $ER reaching prosecutor-sg" request_in_state prosecutor-sg prosecutor1 "$ER" approved

chapter "16. The prosecutor fetches the documents; each fingerprint is checked end to end"
as prosecutor-sg prosecutor1 evidence fetch "$ER" --out "$DEMO/prosecutor-sg/evidence"
echo
tell "The files the union recorded and the ones the prosecutor received have the same SHA-256:"
originals=("$DEMO/contract.txt" "$DEMO/wage-record.txt" "$DEMO/passport-photo-note.txt")
received=("$DEMO/prosecutor-sg/evidence/"*)
show "" sha256sum "${originals[@]}" "${received[@]}"
sha256sum "${originals[@]}" "${received[@]}"
echo
tell "They are now evidence in the prosecutor's own case, their conditions shown whenever read:"
out=$(as prosecutor-sg prosecutor1 evidence list "$PCASE" --purpose prosecution)
printf '%s\n' "$out"
# The fetched copy of the contract: its own id at the prosecutor's node.
LOCAL=$(printf '%s\n' "$out" | grep -F contract.txt | grep -o -E 'E-[0-9A-Fa-f]{12}' |
  { grep -v -x -F "$CONTRACT" || true; } | head -1)
[ -n "$LOCAL" ] || { echo "demo: no fetched copy of the contract in the prosecutor's case $PCASE" >&2; exit 1; }

chapter "17. The chain of custody, at both ends, each event proved against the node's signed ledger"
tell "The union's record of the contract: added by its caseworker, granted by its approver," \
  "served to the prosecutor's node:"
as union-sg auditor1 evidence custody "$CONTRACT" "${ROSTER[@]}"
echo
tell "The prosecutor's record of its copy of the contract ($LOCAL), with the union's signed receipt:"
as prosecutor-sg auditor1 evidence custody "$LOCAL" "${ROSTER[@]}"

# ---------------------------------------------------------------------------------------------
chapter "Part three: the IT staff keep the federation safe while the case goes on"

chapter "18. The stewards issue roster version 2: a new union signing key, a certificate revoked"
tell "A union caseworker has left: her certificate (issued here first, so that there is one)" \
  "is revoked in every node at once. The union's next signing key is announced, ready for a" \
  "key rotation. The nodes follow the new roster without a restart."
ctl pki signing-key --org union-sg --out "$DEMO/union-sg/key-2"
brief ctl pki user --federation "$FED" --org union-sg --org-dir "$DEMO/union-sg" --name former-caseworker \
  --out "$DEMO/union-sg/users"
brief ctl pki revoke --cert "$DEMO/union-sg/users/former-caseworker.crt"
brief ctl roster new-version --from "$DEMO/federation/roster.json" --out "$DEMO/federation/roster-v2.yaml" \
  --stewards "$DEMO/federation/stewards.yaml" --threshold 2
ctl roster add-key --roster "$DEMO/federation/roster-v2.yaml" --org union-sg --key-dir "$DEMO/union-sg/key-2"
ctl roster revoke-cert --roster "$DEMO/federation/roster-v2.yaml" --org union-sg \
  --cert "$DEMO/union-sg/users/former-caseworker.crt"
ctl roster diff "$DEMO/federation/roster.json" "$DEMO/federation/roster-v2.yaml"
ctl roster sign --in "$DEMO/federation/roster-v2.yaml" --key "$DEMO/federation/steward-1.key" \
  --key-name steward-1 --out "$DEMO/federation/roster-v2.json"
tell "One steward's signature is not enough:"
if ctl roster verify --in "$DEMO/federation/roster-v2.json" --stewards "$DEMO/federation/stewards.yaml" \
  --threshold 2; then
  echo "demo: a roster with one signature should not verify" >&2; exit 1
fi
ctl roster sign --in "$DEMO/federation/roster-v2.json" --key "$DEMO/federation/steward-3.key" \
  --key-name steward-3 --out "$DEMO/federation/roster-v2.json"
ctl roster verify --in "$DEMO/federation/roster-v2.json" --stewards "$DEMO/federation/stewards.yaml" --threshold 2
tell "The union's admin installs it at the union's node; the other nodes fetch it from there:"
brief as union-sg admin1 roster push --in "$DEMO/federation/roster-v2.json"
cp "$DEMO/federation/roster-v2.json" "$DEMO/federation/roster.json"
as union-sg admin1 health --require-peers --wait 60

# ---------------------------------------------------------------------------------------------
chapter "Part four: the audit"

chapter "19. Months later, an auditor reviews who saw Siti's file, at the union and across the border"
eventually 30 "the delivery of every message between the nodes" all_delivered
tell "The union's own record of the case, newest first (the most recent 12 entries):"
as union-sg auditor1 audit log --case "$CASE" --limit 12
echo
tell "The auditor does not take the node's word for it: every entry of the case is proved" \
  "against the node's signed ledger, and each entry names the one before it about the case," \
  "so a hidden entry would show:"
out=$(as union-sg auditor1 audit log --case "$CASE" --verify "${ROSTER[@]}")
printf '%s\n' "$out" | tail -n 2
echo
tell "Who read it at the ministry, the inspectorate and the prosecutor's office: each read" \
  "attested to the union by that node's signature and proved in that node's own ledger:"
as union-sg auditor1 audit log --case "$CASE" --downstream --prove "${ROSTER[@]}"
echo
tell "The union and each organisation it dealt with hold the same record of every message:"
for peer in ministry-id inspectorate-sg prosecutor-sg; do
  as union-sg auditor1 audit reconcile --peer "$peer"
done
echo
tell "At the ministry in Jakarta, its own auditor sees its side of the same case:"
as ministry-id auditor1 audit log --case "$MCASE" --limit 8

chapter "20. A court bundle of the case, checked offline against a checkpoint the peers cosigned"
tell "Every node witnesses the others' ledgers and cosigns what it saw. The union's latest" \
  "checkpoint, vouched for by at least two other organisations:"
eventually 30 "two peers cosigning the union's checkpoint" \
  as_quietly union-sg auditor1 audit checkpoint --cosigned 2 "${ROSTER[@]}"
as union-sg auditor1 audit checkpoint --cosigned 2 "${ROSTER[@]}"
echo
tell "The bundle holds the case's whole trail with its proofs, the receivers' signed receipts," \
  "the other organisations' signed records of who read it, and the roster:"
as union-sg auditor1 audit bundle "$CASE" --cosigned 2 --out "$DEMO/$CASE.bundle" "${ROSTER[@]}" >/dev/null
echo "wrote $DEMO/$CASE.bundle"
tell "A court checks it with no node and no network, only the stewards' public keys (its list" \
  "of the case's entries is left out here):"
out=$(ctl audit verify "$DEMO/$CASE.bundle" --stewards "$DEMO/federation/stewards.yaml" --threshold 2)
printf '%s\n' "$out" | grep -v -E '^(INDEX|[0-9]+ )'

if [ "$KEEP" = 1 ]; then
  chapter "The federation keeps running"
  for org in "${ORG_IDS[@]}"; do
    echo "  $org: 127.0.0.1:${PORT[$org]}  (config $DEMO/$org/node.yaml, log $DEMO/$org/corridord.log)"
  done
  cat <<EOT

Talk to a node as one of its users, e.g. the union's caseworker:
  export CORRIDOR_NODE=127.0.0.1:${PORT[union-sg]} CORRIDOR_CA=$DEMO/union-sg/ca.crt
  export CORRIDOR_CERT=$DEMO/union-sg/users/caseworker1.crt CORRIDOR_KEY=$DEMO/union-sg/users/caseworker1.key
  $CTL case show $CASE --purpose case-handling
Stop them with:  deploy/demo.sh --stop
EOT
else
  chapter "The end: stopping the demo's nodes (run 'make demo KEEP=1' to leave them running)"
  stop_nodes
  echo "all nodes stopped cleanly"
fi
