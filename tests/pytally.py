"""tests/pytally.py - the tally the Python checks share. check() counts one assertion; finish() prints the
line tests/run.sh and tests/kit_run.sh sum, "N passed, M failed", and exits 1 on any failure; run(main) also
counts an exception as a failure, so that a corrupt input still ends with that line."""
import sys
import traceback

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


def finish():
    print("%d passed, %d failed" % (passed, failed))
    sys.exit(1 if failed else 0)


def run(main):
    try:
        main()
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        check(False, "exception: %r" % e)
    finish()
