#!/bin/sh
# tests/kit_run.sh - runs the kit's test programs and sums their results.
#   sh tests/kit_run.sh build/kit/kit_config build/kit/kit_image ...   (what `make test-kit` does)
# Each program ends with "N passed, M failed"; a program that crashes or prints no such line counts as
# one failure. kit_tblog writes an event file that tests/kit_check_tensorboard.py then reads with the
# real tensorboard package. The very last line is the sum; the exit status is 1 if anything failed.
PY=${KIT_PYTHON:-python3}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kit_run.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
passed=0
failed=0

tally() { # name, output file, exit status
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$2" | tail -n 1)
    if [ -z "$line" ]; then
        echo "$1: no summary line (exit status $3) - counted as 1 failure"
        failed=$((failed + 1))
        return
    fi
    p=${line%% passed*}
    f=${line#*, }
    f=${f%% failed}
    if [ "$f" = 0 ] && [ "$3" != 0 ]; then f=1; echo "$1: exit status $3 despite 0 failures - counted as 1 failure"; fi
    passed=$((passed + p))
    failed=$((failed + f))
}

run() { # name, command...
    name=$1
    shift
    "$@" >"$TMP/out" 2>&1
    rc=$?
    grep -v -E '^[0-9]+ passed, [0-9]+ failed$' "$TMP/out" | sed "s|^|  |"
    tally "$name" "$TMP/out" $rc
    echo "$name: $(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$TMP/out" | tail -n 1)"
}

for bin in "$@"; do
    name=$(basename "$bin")
    case $name in
    kit_tblog)
        run "$name" "$bin" "$TMP/tb"
        run kit_check_tensorboard.py "$PY" tests/kit_check_tensorboard.py "$TMP/tb"
        ;;
    kit_config)
        run "$name" "$bin" "$TMP/config_dump.yaml"
        run kit_check_config_yaml.py "$PY" tests/kit_check_config_yaml.py "$TMP/config_dump.yaml"
        ;;
    kit_image) run "$name" "$bin" tests/fixtures/kit ;;
    kit_plot) run "$name" "$bin" "$TMP/plot.png" ;;
    *) run "$name" "$bin" ;;
    esac
done
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
