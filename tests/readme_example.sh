#!/usr/bin/env bash
# Compiles and runs the example in README.md, so the README never shows code that does not work.
set -u
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
awk '/<!-- example:begin -->/{on=1; next} /<!-- example:end -->/{on=0} on' README.md | sed '/^```/d' > "$dir/example.c"
if ${CC:-gcc} -std=c99 -Wall -Wextra -Wpedantic -Werror -O2 -fopenmp -I. "$dir/example.c" -o "$dir/example" -lm &&
   (cd "$dir" && ./example); then
  echo "1 passed, 0 failed"
else
  echo "README example failed"; echo "0 passed, 1 failed"; exit 1
fi
