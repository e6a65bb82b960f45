/* tests/kit_progress.c - progress output with a fake clock: plain lines at every 10% (CI logs), the
   redrawn terminal bar, rates, ETA, running loss, notes and the per-epoch summary line. */
#define KIT_IMPLEMENTATION
#include "kit.h"
#include "test.h"
#include <stdlib.h>
#include <string.h>

static double fake_t;
static double fake_clock(void) { return fake_t; }

static char *run(int tty, long long total, int steps, double dt) {
    static char text[16384];
    FILE *f = tmpfile();
    kit_progress p;
    int i;
    size_t n;
    kit_progress_init(&p, f);
    p.tty = tty;
    p.clock = fake_clock;
    fake_t = 1000;
    kit_progress_begin(&p, "train", 2, 5, total);
    for (i = 1; i <= steps; i++) {
        fake_t += dt;
        kit_progress_note(&p, "lr %.2e", 1e-3);
        kit_progress_step(&p, 1, (double)i);
    }
    kit_progress_end(&p, "val_loss %.2f", 0.25);
    rewind(f);
    n = fread(text, 1, sizeof text - 1, f);
    text[n] = 0;
    fclose(f);
    return text;
}

static int count(const char *s, const char *sub) {
    int n = 0;
    for (s = strstr(s, sub); s; s = strstr(s + 1, sub)) n++;
    return n;
}

int main(void) {
    char buf[32], *out;
    kit_progress p;
    CHECK(!strcmp(kit_format_duration(7, buf, sizeof buf), "0:07"), "0:07");
    CHECK(!strcmp(kit_format_duration(65, buf, sizeof buf), "1:05"), "1:05");
    CHECK(!strcmp(kit_format_duration(3725, buf, sizeof buf), "1:02:05"), "1:02:05");
    CHECK(!strcmp(kit_format_duration(-1, buf, sizeof buf), "?"), "unknown");

    out = run(0, 100, 100, 0.1);
    CHECK(count(out, "\n") == 10, "plain: 9 progress lines + 1 summary, got:\n%s", out);
    CHECK(strstr(out, "train 2/5 10/100  10.0 it/s  ETA 0:09  loss 5.5  lr 1.00e-03 (10%)\n") != NULL, "10%% line:\n%s", out);
    CHECK(strstr(out, "train 2/5 90/100  10.0 it/s  ETA 0:01  loss 45.5  lr 1.00e-03 (90%)\n") != NULL, "90%% line");
    CHECK(strstr(out, "train 2/5 done: 100 steps in 10.0s (10.0 it/s), loss 50.5, val_loss 0.25\n") != NULL, "summary:\n%s", out);
    CHECK(strchr(out, '\r') == NULL && strchr(out, '\033') == NULL, "no terminal control codes in plain mode");

    out = run(0, 0, 25, 2.0); /* unknown total: a line every 30 s */
    CHECK(count(out, "\n") == 2 && strstr(out, "train 2/5 15  2.00 s/it  loss 8  lr 1.00e-03\n"), "time-based plain lines:\n%s", out);
    CHECK(strstr(out, "done: 25 steps in 50.0s (2.00 s/it), loss 13, val_loss 0.25") != NULL, "summary:\n%s", out);
    out = run(0, 0, 40, 2.0);
    CHECK(strstr(out, "done: 40 steps in 1:20 (2.00 s/it)") != NULL, "minutes in the summary:\n%s", out);

    out = run(0, 4, 4, 3.0); /* slow steps: seconds per iteration */
    CHECK(strstr(out, "(0.33 it/s)") == NULL && strstr(out, "3.00 s/it") != NULL, "s/it below 1 it/s:\n%s", out);

    out = run(1, 50, 50, 0.1);
    CHECK(count(out, "\r") == 50 + 1, "bar redrawn each step (0.1 s apart) and once at the end: %d", count(out, "\r"));
    CHECK(strstr(out, "\rtrain 2/5 [==========>         ] 25/50  10.0 it/s  ETA 0:03  loss 13  lr 1.00e-03\033[K") != NULL, "half bar:\n%s", out);
    CHECK(strstr(out, "[====================] 50/50") != NULL, "full bar");
    CHECK(strstr(out, "\033[K\ntrain 2/5 done: 50 steps in 5.0s (10.0 it/s), loss 25.5, val_loss 0.25\n") != NULL, "summary on its own line");

    out = run(1, 50, 50, 0.01); /* fast steps: redraws throttled to every 0.1 s */
    CHECK(count(out, "\r") <= 7, "throttled redraws: %d", count(out, "\r"));

    kit_progress_init(&p, tmpfile());
    p.clock = fake_clock;
    kit_progress_begin(&p, "val", 0, 0, 10);
    CHECK(isnan(kit_progress_mean_loss(&p)), "no loss yet");
    kit_progress_step(&p, 1, NAN);
    CHECK(isnan(kit_progress_mean_loss(&p)) && p.step == 1, "NaN loss skipped");
    fclose(p.out);
    return test_summary();
}
