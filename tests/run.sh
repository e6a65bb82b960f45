#!/usr/bin/env bash
# Runs test commands (one per argument), shows their output, and sums their closing
# "N passed, M failed" lines into one. A command that fails without such a line (a crash,
# a sanitizer report, a missing tool) counts as one failure.
passed=0; failed=0
for cmd in "$@"; do
  echo "== $cmd"
  out=$(bash -c "$cmd" 2>&1); rc=$?
  printf '%s\n' "$out" | grep -v -E '^[0-9]+ passed, [0-9]+ failed$'
  line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line#*, }; f=${f%% failed}
    passed=$((passed + p)); failed=$((failed + f))
    echo "   $line"
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "   (exit status $rc)"; failed=$((failed + 1)); fi
  else
    echo "   no summary line, exit status $rc: counted as a failure"
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
