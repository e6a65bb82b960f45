/* tests/test.h - the smallest test harness: CHECK records a pass or a failure,
   test_summary() prints the closing "N passed, M failed" line and gives the exit code. */
#ifndef NN_TEST_H
#define NN_TEST_H
#include <stdio.h>
#include <math.h>

static int test_passed, test_failed;

#define CHECK(cond, ...) do { \
    if (cond) { test_passed++; } \
    else { test_failed++; printf("FAIL %s:%d: ", __FILE__, __LINE__); printf(__VA_ARGS__); printf("\n"); } \
} while (0)

/* close: |a-b| <= atol + rtol*|b| */
#define CHECK_CLOSE(a, b, atol, rtol, what) do { \
    double a_ = (double)(a), b_ = (double)(b); \
    CHECK(fabs(a_ - b_) <= (atol) + (rtol) * fabs(b_), "%s: %.9g vs %.9g", (what), a_, b_); \
} while (0)

static int test_summary(void) {
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}
#endif
