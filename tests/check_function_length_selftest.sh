#!/usr/bin/env bash
# The function-length check must catch what it claims to: in a tree with one
# function of each kind over the limit (a free function, an out-of-line member,
# a member defined in its class, a constructor with an initialiser list, a
# function whose lambda makes it long) each is named, and nothing else is: not
# a short function, a test file, braces in strings or comments, or a long
# initialiser list.
set -u
here=$(cd "$(dirname "$0")" && pwd)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/server/a" "$t/server/fuzz"
body() { for ((i = 0; i < $1; i++)); do echo "  x += $i;  // { not a brace"; done; }
{
  echo 'namespace corridor {'
  echo 'namespace {'
  echo 'int LongFree(int x) {'; body 60; echo '  return x;'; echo '}'
  echo 'int ShortFree(int x) {'; body 57; echo '  return x;'; echo '}'
  echo 'const char* kBraces = "}}}{{{";'
  echo 'const int kTable[] = {'; body 0; for ((i = 0; i < 70; i++)); do echo "    $i,"; done; echo '};'
  echo '}  // namespace'
  echo 'void Thing::LongMember(int x) const {'; body 61; echo '}'
  echo 'Thing::Thing(int x)'; echo '    : a_(x), b_{x} {'; body 61; echo '}'
  echo 'class Inline : public Base {'
  echo ' public:'
  echo '  void LongInline(int x) override {'; body 61; echo '  }'
  echo '  void ShortInline() { return; }'
  echo '};'
  echo 'void WithLambda() {'; echo '  auto f = [&](int x) {'; body 60; echo '  };'; echo '}'
  echo '/* void Commented() {'; body 70; echo '} */'
  echo '}  // namespace corridor'
} > "$t/server/a/long.cc"
{ echo 'void LongTest() {'; body 70; echo '}'; } > "$t/server/a/long_test.cc"
cp "$t/server/a/long_test.cc" "$t/server/fuzz/fuzzer.cc"
(cd "$t" && git init -q && git add -A)
out=$(bash "$here/check_function_length.sh" "$t")
rc=$?
fail=0
[ $rc = 1 ] || { echo "expected exit 1, got $rc"; fail=1; }
for f in LongFree Thing::LongMember Thing::Thing LongInline WithLambda; do
  grep -q ": $f is [0-9]* lines" <<<"$out" || { echo "not caught: $f"; fail=1; }
done
n=$(grep -c . <<<"$out")
[ "$n" = 5 ] || { echo "expected 5 findings, got $n:"; echo "$out"; fail=1; }
# The limit is a parameter; the same tree passes with a higher one.
bash "$here/check_function_length.sh" "$t" 100 >/dev/null || { echo "limit 100 refused"; fail=1; }
exit $fail
