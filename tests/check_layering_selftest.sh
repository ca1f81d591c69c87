#!/usr/bin/env bash
# The layering check must catch what it claims to: a tree with one violation of
# each rule fails with each named, and the same tree without them passes.
set -u
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mk() { mkdir -p "$t/$(dirname "$1")"; printf '#include "%s"\n' "$2" > "$t/$1"; }
mk ledger/a.cc grpcpp/grpcpp.h
mk ledger/b.cc corridor/v1/case.pb.h
mk ledger/c.cc ledger/rocksdb/rocksdb_ledger.h
mk ledger/base/d.cc ledger/crypto/crypto.h
mk client/lib/e.cc server/node/node.h
mk server/node/f.cc client/ctl/ctl.h
mk server/auth/g.cc server/audit/access_log.h
mk server/auth/h.cc server/cases/case_service.h
mk server/store/i.cc server/federation/exchange.h
mk server/federation/j.cc tests/testing/federation.h
mk ledger/k.h rocksdb/write_batch.h
mk ledger/base/l.cc rocksdb/env.h
mk ledger/crypto/m.h rocksdb/db.h
(cd "$t" && git init -q && git add -A)
out=$(bash "$here/check_layering.sh" "$t")
rc=$?
fail=0
[ $rc = 1 ] || { echo "expected exit 1, got $rc"; fail=1; }
for f in ledger/a.cc ledger/b.cc ledger/c.cc ledger/base/d.cc client/lib/e.cc server/node/f.cc \
         server/auth/g.cc server/auth/h.cc server/store/i.cc server/federation/j.cc \
         ledger/k.h ledger/base/l.cc ledger/crypto/m.h; do
  grep -q "^$f: may not include" <<<"$out" || { echo "not caught: $f"; fail=1; }
done
# Allowed includes pass.
rm -rf "$t"/*
mk ledger/a.cc ledger/merkle.h
mk ledger/rocksdb/b.cc ledger/ledger.h
mk client/lib/c.cc corridor/v1/roster.pb.h
mk server/cases/d.cc server/federation/exchange.h
mk server/node/e.cc server/cases/case_service.h
mk tests/f_test.cc client/ctl/ctl.h
mk ledger/rocksdb/g.h rocksdb/db.h
mk ledger/testing/h_test.cc rocksdb/db.h
mk server/store/i.cc rocksdb/write_batch.h
(cd "$t" && git add -A)
bash "$here/check_layering.sh" "$t" || { echo "allowed includes refused"; fail=1; }
exit $fail
