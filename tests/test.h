/* tests/test.h - the smallest test harness: CHECK records a pass or a failure,
   test_summary() prints the closing "N passed, M failed" line and gives the exit code. */
#ifndef NN_TEST_H
#define NN_TEST_H
#include <stdio.h>
#include <stdlib.h>
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

/* a whole file in one malloc'd buffer (NUL-terminated, *n bytes before the NUL), or NULL if it cannot be read */
static inline unsigned char *test_read_file(const char *path, size_t *n) {
    FILE *fp = fopen(path, "rb");
    unsigned char *b = NULL;
    long sz;
    *n = 0;
    if (!fp) return NULL;
    if (fseek(fp, 0, SEEK_END) == 0 && (sz = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0 &&
        (b = (unsigned char *)malloc((size_t)sz + 1)) != NULL) {
        if (fread(b, 1, (size_t)sz, fp) == (size_t)sz) { b[sz] = 0; *n = (size_t)sz; }
        else { free(b); b = NULL; }
    }
    fclose(fp);
    return b;
}

static int test_summary(void) {
    printf("%d passed, %d failed\n", test_passed, test_failed);
    return test_failed ? 1 : 0;
}
#endif
