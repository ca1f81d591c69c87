#!/usr/bin/env bash
# Fails (exit 1, one line per violation) when a source file includes a header
# its layer may not use. The rules, as in docs/architecture.md "Dependency rules":
#   ledger/**        never proto, gRPC, server/ or client/; ledger/base only
#                    itself; ledger/crypto only base; ledger/ not its rocksdb/ or
#                    testing/ implementations. ledger/ (top level), ledger/base
#                    and ledger/crypto never include RocksDB (rocksdb/): the
#                    Ledger interface is storage-neutral (ledger/mutation.h).
#   client/lib       only proto, ledger and itself.
#   client/ctl       is included only by client/ and tests/ (nothing in the node).
#   server/common    no other server folder.
#   (A server *_test.cc may include any server/ header: in-process integration.)
#   server/auth      only common (never the audit layer or the handlers).
#   server/audit     auth, common.         server/store  common.
#   server/federation audit, auth, store, common.
#   server/cases     federation, audit, auth, store, common.
#   server/node      all of server/.
#   tests/ (tests/testing/, tests/**/testing) is included only by tests, fuzzers
#   and benchmarks (*_test.cc, fuzz/, tests/).
# Usage: tests/check_layering.sh [source root]   (default: the repository)
set -u
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2

# allowed <file> <include>: 0 if the include is allowed in the file.
allowed() {
  local f=$1 inc=$2
  local is_test=0
  case $f in
    *_test.cc|*/fuzz/*|tests/*) is_test=1 ;;
  esac
  case $inc in
    tests/*) [ $is_test = 1 ]; return ;;
    client/ctl/*)
      case $f in client/*|tests/*) return 0 ;; esac
      return 1 ;;
  esac
  # A layer's own tests may reach further up (in-process integration), never
  # into the CLI and, under ledger/, never into proto or gRPC.
  case $f in
    server/*_test.cc) [ "${inc#server/}" != "$inc" ] && return 0 ;;
  esac
  # Which project folders may the file's folder include?
  local may
  case $f in
    ledger/base/*)       may="ledger/base/" ;;
    ledger/crypto/*)     may="ledger/base/ ledger/crypto/" ;;
    ledger/rocksdb/*)    may="ledger/" ;;
    ledger/testing/*|ledger/fuzz/*) may="ledger/" ;;
    ledger/*)            may="ledger/base/ ledger/crypto/ LEDGER_TOP" ;;
    client/lib/*)        may="ledger/ client/lib/ PROTO GRPC" ;;
    client/*)            may="ledger/ client/ PROTO GRPC" ;;
    server/common/*)     may="ledger/ server/common/ PROTO GRPC" ;;
    server/auth/*)       may="ledger/ client/lib/ server/common/ server/auth/ PROTO GRPC" ;;
    server/audit/*)      may="ledger/ client/lib/ server/common/ server/auth/ server/audit/ PROTO GRPC" ;;
    server/store/*)      may="ledger/ client/lib/ server/common/ server/store/ PROTO" ;;
    server/federation/*) may="ledger/ client/lib/ server/common/ server/auth/ server/audit/ server/store/ server/federation/ PROTO GRPC" ;;
    server/cases/*)      may="ledger/ client/lib/ server/common/ server/auth/ server/audit/ server/store/ server/federation/ server/cases/ PROTO GRPC" ;;
    server/*)            may="ledger/ client/lib/ server/ PROTO GRPC" ;;
    tests/*)             may="ledger/ client/ server/ PROTO GRPC" ;;
    *)                   return 0 ;;
  esac
  local kind=other
  case $inc in
    corridor/v1/*|grpc/health/*) kind=PROTO ;;
    grpc/*|grpcpp/*) kind=GRPC ;;
    ledger/*|client/*|server/*) kind=PROJECT ;;
  esac
  # ledger/ never uses gRPC or proto, in tests neither.
  case $f in
    ledger/*) [ $kind = PROTO ] || [ $kind = GRPC ] && return 1 ;;
  esac
  # Only ledger/rocksdb (and what builds on it) knows RocksDB.
  case $inc in
    rocksdb/*)
      case $f in
        ledger/base/*|ledger/crypto/*) return 1 ;;
        ledger/*/*) ;;
        ledger/*) return 1 ;;
      esac ;;
  esac
  [ $kind = other ] && return 0
  local m
  for m in $may; do
    case $m in
      PROTO|GRPC) [ $kind = "$m" ] && return 0 ;;
      LEDGER_TOP) local rest=${inc#ledger/}
                  [ "$rest" != "$inc" ] && [ "${rest#*/}" = "$rest" ] && return 0 ;;
      *) case $inc in $m*) return 0 ;; esac ;;
    esac
  done
  return 1
}

bad=0
while IFS= read -r f; do
  while IFS= read -r line; do
    inc=${line#*\"}
    inc=${inc%%\"*}
    if ! allowed "$f" "$inc"; then
      echo "$f: may not include \"$inc\" (see tests/check_layering.sh and docs/architecture.md)"
      bad=1
    fi
  done < <(grep -E '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' "$f")
done < <(git ls-files '*.cc' '*.h' 2>/dev/null || find ledger client server tests -name '*.cc' -o -name '*.h')
exit $bad
