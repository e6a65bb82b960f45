/* kit_progress.h - progress of an epoch: a redrawn bar on a terminal, plain lines in logs.

       kit_progress p;
       kit_progress_init(&p, stdout);
       kit_progress_begin(&p, "train", epoch + 1, epochs, steps_per_epoch);
       for (...) { ...; kit_progress_note(&p, "lr %.2e", lr); kit_progress_step(&p, 1, loss); }
       kit_progress_end(&p, "val_loss %.4f", val_loss);

   On a terminal (isatty) one line is redrawn at most every 0.1 s:
       train 3/20 [=========>          ] 240/500  12.3 it/s  ETA 0:21  loss 0.1234  lr 3.00e-04
   Elsewhere (CI logs, files) the same fields are printed as ordinary lines at every 10% of the epoch and
   at least every `plain_every_s` seconds (30 by default). Either way kit_progress_end prints one summary:
       train 3/20 done: 500 steps in 41.2s (12.1 it/s), loss 0.1234, val_loss 0.2345
   The environment variable KIT_PROGRESS=plain or =bar overrides the terminal check.
   The loss shown is the running mean over the epoch so far. */
#ifndef KIT_PROGRESS_H
#define KIT_PROGRESS_H
#include "kit_base.h"
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    FILE *out;
    int tty;               /* 1: redraw a bar with \r; 0: plain lines */
    double plain_every_s;  /* plain mode: a line at least this often (default 30) */
    double redraw_every_s; /* bar mode: at most one redraw per this long (default 0.1) */
    double (*clock)(void); /* seconds; kit_now by default, replaceable in tests */
    /* state, read-only for callers */
    char label[64], note[128];
    int epoch, epochs;
    long long total, step, loss_n;
    double t0, t_last, loss_sum;
    int next_tenth;
} kit_progress;

void kit_progress_init(kit_progress *p, FILE *out);
/* epoch/epochs: shown as "3/20" (epochs 0: just "3"; epoch 0 too: nothing). total: steps expected, 0 if unknown. */
void kit_progress_begin(kit_progress *p, const char *label, int epoch, int epochs, long long total);
/* n more steps are done; loss (NaN to skip) joins the running mean. */
void kit_progress_step(kit_progress *p, long long n, double loss);
/* Extra text shown after the loss (learning rate, memory); printf-style. */
void kit_progress_note(kit_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Ends the epoch with the summary line; fmt (may be NULL) adds ", <text>". */
void kit_progress_end(kit_progress *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
double kit_progress_mean_loss(const kit_progress *p); /* NaN before any loss */
/* "42s"-style durations: "0:07", "12:05", "1:02:03". */
char *kit_format_duration(double seconds, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* KIT_PROGRESS_H */

#if defined(KIT_IMPLEMENTATION) && !defined(KIT_PROGRESS_IMPLEMENTED)
#define KIT_PROGRESS_IMPLEMENTED
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void kit_progress_init(kit_progress *p, FILE *out) {
    const char *env = getenv("KIT_PROGRESS");
    memset(p, 0, sizeof *p);
    p->out = out;
    p->tty = isatty(fileno(out));
    if (env && !strcmp(env, "plain")) p->tty = 0;
    if (env && !strcmp(env, "bar")) p->tty = 1;
    p->plain_every_s = 30;
    p->redraw_every_s = 0.1;
    p->clock = kit_now;
}

char *kit_format_duration(double s, char *buf, size_t n) {
    long t;
    if (!(s >= 0) || s > 1e9) { snprintf(buf, n, "?"); return buf; }
    t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
    return buf;
}

double kit_progress_mean_loss(const kit_progress *p) { return p->loss_n ? p->loss_sum / (double)p->loss_n : NAN; }

void kit_progress_begin(kit_progress *p, const char *label, int epoch, int epochs, long long total) {
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->epoch = epoch;
    p->epochs = epochs;
    p->total = total;
    p->step = 0;
    p->loss_sum = 0;
    p->loss_n = 0;
    p->note[0] = 0;
    p->t0 = p->t_last = p->clock();
    p->next_tenth = 1;
}

void kit_progress_note(kit_progress *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->note, sizeof p->note, fmt, ap);
    va_end(ap);
}

static void kit__progress_head(const kit_progress *p, char *buf, size_t n) {
    if (p->epochs > 0) snprintf(buf, n, "%s %d/%d", p->label, p->epoch, p->epochs);
    else if (p->epoch > 0) snprintf(buf, n, "%s %d", p->label, p->epoch);
    else snprintf(buf, n, "%s", p->label);
}

static void kit__progress_rate(double steps, double secs, char *buf, size_t n) {
    double r = secs > 0 ? steps / secs : 0;
    if (r >= 1 || r == 0) snprintf(buf, n, "%.1f it/s", r);
    else snprintf(buf, n, "%.2f s/it", 1 / r);
}

/* The fields after the head: "240/500  12.3 it/s  ETA 0:21  loss 0.1234  note" */
static void kit__progress_fields(const kit_progress *p, double now, char *buf, size_t n) {
    char rate[32], eta[32] = "", loss[48] = "";
    double el = now - p->t0;
    size_t off;
    kit__progress_rate((double)p->step, el, rate, sizeof rate);
    if (p->total > 0 && p->step > 0 && p->step < p->total && el > 0) {
        char d[24];
        snprintf(eta, sizeof eta, "  ETA %s", kit_format_duration(el / (double)p->step * (double)(p->total - p->step), d, sizeof d));
    }
    if (p->loss_n) snprintf(loss, sizeof loss, "  loss %.4g", kit_progress_mean_loss(p));
    if (p->total > 0) snprintf(buf, n, "%lld/%lld", p->step, p->total);
    else snprintf(buf, n, "%lld", p->step);
    off = strlen(buf);
    snprintf(buf + off, n - off, "  %s%s%s%s%s", rate, eta, loss, p->note[0] ? "  " : "", p->note);
}

static void kit__progress_draw(kit_progress *p, double now) {
    char head[96], fields[320];
    kit__progress_head(p, head, sizeof head);
    kit__progress_fields(p, now, fields, sizeof fields);
    if (p->tty) {
        char bar[32];
        int width = 20, i, fill = 0;
        if (p->total > 0) {
            fill = (int)((double)width * (double)p->step / (double)p->total);
            if (fill > width) fill = width;
            for (i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
            bar[width] = 0;
            fprintf(p->out, "\r%s [%s] %s\033[K", head, bar, fields); /* ESC[K clears the rest of the line */
        } else {
            fprintf(p->out, "\r%s %s\033[K", head, fields);
        }
    } else {
        if (p->total > 0)
            fprintf(p->out, "%s %s (%d%%)\n", head, fields, (int)(100.0 * (double)p->step / (double)p->total));
        else
            fprintf(p->out, "%s %s\n", head, fields);
    }
    fflush(p->out);
    p->t_last = now;
}

void kit_progress_step(kit_progress *p, long long n, double loss) {
    double now = p->clock();
    p->step += n;
    if (!isnan(loss)) { p->loss_sum += loss; p->loss_n++; }
    if (p->tty) {
        if (now - p->t_last >= p->redraw_every_s || (p->total > 0 && p->step >= p->total)) kit__progress_draw(p, now);
    } else {
        int tenth = p->total > 0 ? (int)(10 * p->step / p->total) : 0;
        if (p->total > 0 && tenth >= p->next_tenth && p->step < p->total) {
            p->next_tenth = tenth + 1;
            kit__progress_draw(p, now);
        } else if (now - p->t_last >= p->plain_every_s && (p->total <= 0 || p->step < p->total)) {
            kit__progress_draw(p, now);
        }
    }
}

void kit_progress_end(kit_progress *p, const char *fmt, ...) {
    char head[96], rate[32], dur[32], extra[256] = "", loss[48] = "";
    double now = p->clock(), el = now - p->t0;
    if (p->tty) {
        kit__progress_draw(p, now);
        fputc('\n', p->out);
    }
    if (fmt) {
        va_list ap;
        extra[0] = ',';
        extra[1] = ' ';
        va_start(ap, fmt);
        vsnprintf(extra + 2, sizeof extra - 2, fmt, ap);
        va_end(ap);
    }
    if (p->loss_n) snprintf(loss, sizeof loss, ", loss %.4g", kit_progress_mean_loss(p));
    kit__progress_head(p, head, sizeof head);
    kit__progress_rate((double)p->step, el, rate, sizeof rate);
    if (el < 60) snprintf(dur, sizeof dur, "%.1fs", el);
    else kit_format_duration(el, dur, sizeof dur);
    fprintf(p->out, "%s done: %lld steps in %s (%s)%s%s\n", head, p->step, dur, rate, loss, extra);
    fflush(p->out);
}
#endif /* KIT_IMPLEMENTATION */
