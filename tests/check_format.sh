#!/usr/bin/env bash
# Fails (exit 1, one line per file) when a tracked C++ file is not formatted as
# .clang-format says (`clang-format --dry-run -Werror`). `make format` fixes them all.
# Usage: tests/check_format.sh [source root]   (default: the repository)
set -u
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
cd "$root" || exit 2
if ! command -v clang-format >/dev/null 2>&1; then
  echo "check_format: clang-format is not installed (deploy/setup.sh installs it)" >&2
  exit 2
fi
if git rev-parse --git-dir >/dev/null 2>&1; then
  mapfile -t files < <(git ls-files '*.cc' '*.h')
else
  mapfile -t files < <(find ledger server client tests proto -name '*.cc' -o -name '*.h' | sort)
fi
bad=0
for f in "${files[@]}"; do
  [ -f "$f" ] || continue
  if ! clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then
    echo "$f: not clang-formatted (run: clang-format -i $f, or make format)"
    bad=$((bad + 1))
  fi
done
if [ "$bad" -ne 0 ]; then
  echo "check_format: $bad file(s) not formatted" >&2
  exit 1
fi
echo "check_format: ${#files[@]} files formatted"
