/* tests/expect_error.h - EXPECT_ERROR(statement, needle): the statement must report through nn_error with a
   message containing needle. A handler that longjmps brings the test back (nn.h checks before it allocates,
   so nothing leaks). Include after nn.h and test.h. */
#ifndef NN_EXPECT_ERROR_H
#define NN_EXPECT_ERROR_H
#include <setjmp.h>
#include <string.h>

static jmp_buf err_jmp;
static char err_msg[1024];
static void err_handler(const char *msg, void *user) { (void)user; snprintf(err_msg, sizeof err_msg, "%s", msg); longjmp(err_jmp, 1); }
#define EXPECT_ERROR(stmt, needle) do { \
    err_msg[0] = 0; \
    nn_set_error_handler(err_handler, NULL); \
    if (!setjmp(err_jmp)) { stmt; CHECK(0, "expected an error containing '%s'", needle); } \
    else CHECK(strstr(err_msg, needle) != NULL, "error message '%s' lacks '%s'", err_msg, needle); \
    nn_set_error_handler(NULL, NULL); \
} while (0)
#endif
