#!/usr/bin/env bash
# Fails (exit 1, one line per function) when a function in the server's
# non-test sources is longer than the limit (default 60 lines; issue 10: a
# handler validates, decides, persists and answers in pieces small enough to
# read). A function runs from the line of its body's opening brace to the line
# of its closing brace, both counted; lambdas and local classes inside count
# toward it. Free functions, member functions defined out of line, and member
# functions defined inside a class body are all measured.
#
# How a body is found (a brace-level scan, with comments, strings and
# character literals removed first): a `{` opened directly inside a namespace,
# class or struct (or at file level) is a function body when the text before
# it, since the last `;` or the end of the previous body, contains `(` and
# ends with `)`, with a qualifier (const, override, noexcept, ...), or with a
# constructor's braced member initialiser. `namespace`/`class`/`struct`/
# `union`/`enum` open a scope; anything else (an initialiser list) is skipped.
# Preprocessor lines are ignored.
#
# Usage: tests/check_function_length.sh [source root] [limit]
#   default root: the repository; files checked: server/**/*.cc except *_test.cc
#   and fuzz/ folders. Set FUNCTION_LENGTH_REPORT=1 to list every function over
#   40 lines (for measuring), not only those over the limit.
set -u
root=${1:-$(cd "$(dirname "$0")/.." && pwd)}
limit=${2:-60}
cd "$root" || exit 2

files=$( (git ls-files 'server/*.cc' 2>/dev/null || find server -name '*.cc') |
  grep -v '_test\.cc$' | grep -v '/fuzz/' | sort)
[ -n "$files" ] || { echo "no server sources under $root"; exit 2; }

# shellcheck disable=SC2086
awk -v limit="$limit" -v report="${FUNCTION_LENGTH_REPORT:-0}" -v report_min="${FUNCTION_LENGTH_MIN:-40}" '
function reset_file() {
  depth = 0; in_block_comment = 0; stmt = ""; fn_depth = 0
}
# Removes comments, string and character literals from one line (keeping a
# placeholder so that "(" inside a string does not count), tracking /* */
# across lines.
function strip(s,    out, i, c, n, q) {
  out = ""; n = length(s); i = 1
  while (i <= n) {
    c = substr(s, i, 1)
    if (in_block_comment) {
      if (c == "*" && substr(s, i + 1, 1) == "/") { in_block_comment = 0; i += 2; continue }
      i++; continue
    }
    if (c == "/" && substr(s, i + 1, 1) == "/") break
    if (c == "/" && substr(s, i + 1, 1) == "*") { in_block_comment = 1; i += 2; continue }
    if (c == "\"" || c == "\047") {
      q = c; i++
      while (i <= n) {
        c = substr(s, i, 1)
        if (c == "\\") { i += 2; continue }
        if (c == q) break
        i++
      }
      i++; out = out "_"; continue
    }
    out = out c; i++
  }
  return out
}
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
# What a "{" opened at scope level begins: "fn", "scope" or "init".
function classify(text,    t) {
  t = trim(text)
  if (t ~ /(^|[^A-Za-z0-9_])(namespace|class|struct|union|enum)([^A-Za-z0-9_][^()]*)?$/) return "scope"
  if (t ~ /^extern _$/ || t == "") return (t == "" ? "init" : "scope")
  if (index(t, "(") == 0) return "init"
  if (t ~ /\)$/ || t ~ /\}$/) return "fn"
  if (t ~ /(const|override|final|noexcept|mutable|volatile|&|&&)$/) return "fn"
  if (t ~ /->[ \t]*[A-Za-z_:<>, *&0-9]+$/) return "fn"
  if (t ~ /ABSL_[A-Z_]+\(.*\)$/) return "fn"
  return "init"
}
# The name of a function from its signature text: the word before the first "(".
function name_of(text,    t, p) {
  t = text
  p = index(t, "(")
  if (p > 0) t = substr(t, 1, p - 1)
  t = trim(t)
  sub(/.*[ \t*&]/, "", t)
  return t
}
FNR == 1 { reset_file() }
{
  line = $0
  if (!in_block_comment && line ~ /^[ \t]*#/) next
  s = strip(line)
  n = length(s)
  for (i = 1; i <= n; i++) {
    c = substr(s, i, 1)
    if (c == "{") {
      depth++
      if (fn_depth == 0 && (depth == 1 || kind[depth - 1] == "scope")) {
        k = classify(stmt)
        kind[depth] = k
        if (k == "fn") {
          fn_depth = depth; fn_start = FNR; fn_name = name_of(stmt)
        }
        if (k != "init") stmt = ""
      } else {
        kind[depth] = "inner"
      }
      continue
    }
    if (c == "}") {
      if (fn_depth > 0 && depth == fn_depth) {
        len = FNR - fn_start + 1
        if (len > limit) {
          printf "%s:%d: %s is %d lines (limit %d)\n", FILENAME, fn_start, fn_name, len, limit
          over = 1
        } else if (report && len > report_min) {
          printf "%s:%d: %s is %d lines\n", FILENAME, fn_start, fn_name, len
        }
        fn_depth = 0
        stmt = ""
      } else if (fn_depth == 0 && kind[depth] == "scope") {
        stmt = ""
      } else if (fn_depth == 0 && kind[depth] == "init") {
        stmt = stmt "}"
      }
      if (depth > 0) depth--
      continue
    }
    if (fn_depth == 0 && (depth == 0 || kind[depth] == "scope")) {
      if (c == ";") { stmt = ""; continue }
      stmt = stmt c
    }
  }
  if (fn_depth == 0 && (depth == 0 || kind[depth] == "scope")) stmt = stmt " "
}
END { exit over ? 1 : 0 }
' $files
