/* kit_base.h - what every part of the sample kit shares: error reporting and a small seeded RNG.

   The kit is a set of stb-style headers: include them anywhere for the declarations, and in exactly one
   translation unit `#define KIT_IMPLEMENTATION` before including kit.h (or the single header you use) to
   compile the code. It does not depend on nn.h; samples glue kit buffers to nn.h tensors themselves.

   Errors: functions that can fail on user input (a file, a config value) return 0 on success or a
   nonzero kit_status, and write a one-line message naming the file / key into a kit_err the caller
   passes (which may be NULL). Nothing in the kit aborts on bad input; programming errors (asking a
   config for a key that was never declared, for instance) print and abort, like nn.h's default. */
/* The implementation asks for POSIX declarations. Every kit header includes this one before any system
   header, so this is where the feature macro is set; it sits outside the guard because a later include with
   KIT_IMPLEMENTATION defined is the one that needs it (it must still precede the translation unit's first
   system header: include the kit first, or compile with $(KIT_CFLAGS)). */
#if defined(KIT_IMPLEMENTATION) && !defined(_POSIX_C_SOURCE) && !defined(_GNU_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef KIT_BASE_H
#define KIT_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KIT_OK = 0,
    KIT_ERR_IO,        /* missing file, permission, disk full */
    KIT_ERR_FORMAT,    /* not the expected format (not an image, YAML syntax, unknown key, wrong type) */
    KIT_ERR_TRUNCATED, /* the file ends early */
    KIT_ERR_RANGE,     /* a value outside its documented range */
    KIT_ERR_NOMEM,
    KIT_ERR_ARG,       /* a bad argument from the calling program */
    KIT_ERR_CALLBACK   /* a user callback (dataset get_item) reported failure */
} kit_status;

#define KIT_ERR_MSG_SIZE 1024
typedef struct { kit_status code; char msg[KIT_ERR_MSG_SIZE]; } kit_err;

/* Records code and a printf-style message in err (if not NULL) and returns code. */
int kit_fail(kit_err *err, kit_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Programming errors: print "kit: <message>" to stderr and abort. */
void kit_panic(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2), noreturn))
#endif
    ;

/* A small, fast, seedable generator (SplitMix64; Steele, Lea & Flood, "Fast splittable pseudorandom
   number generators", OOPSLA 2014). The kit uses it for shuffling and augmentation; samples that want
   nn.h's Philox stream can seed a kit_rng from it. The state is one integer, so a kit_rng can be copied,
   stored in a checkpoint, or derived per (seed, epoch, item) so results don't depend on thread timing. */
typedef struct { uint64_t state; } kit_rng;

void     kit_rng_seed(kit_rng *r, uint64_t seed);
uint64_t kit_rng_next(kit_rng *r);                   /* 64 random bits */
double   kit_rng_uniform(kit_rng *r);                /* [0, 1), 53-bit resolution */
double   kit_rng_range(kit_rng *r, double lo, double hi); /* [lo, hi) */
uint64_t kit_rng_below(kit_rng *r, uint64_t n);      /* [0, n) without modulo bias; n > 0 */
/* An independent stream for (seed, a, b), e.g. (seed, epoch, item index). */
kit_rng  kit_rng_derive(uint64_t seed, uint64_t a, uint64_t b);

/* Monotonic seconds, for timing. */
double kit_now(void);

#ifdef __cplusplus
}
#endif
#endif /* KIT_BASE_H */

#if defined(KIT_IMPLEMENTATION) && !defined(KIT_BASE_IMPLEMENTED)
#define KIT_BASE_IMPLEMENTED
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int kit_fail(kit_err *err, kit_status code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return (int)code;
}

void kit_panic(const char *fmt, ...) {
    va_list ap;
    fputs("kit: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void kit_rng_seed(kit_rng *r, uint64_t seed) { r->state = seed; }

uint64_t kit_rng_next(kit_rng *r) {
    /* SplitMix64: a Weyl sequence passed through a 64-bit finaliser (constants from the paper above). */
    uint64_t z = (r->state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

double kit_rng_uniform(kit_rng *r) { return (double)(kit_rng_next(r) >> 11) * (1.0 / 9007199254740992.0); }

double kit_rng_range(kit_rng *r, double lo, double hi) { return lo + (hi - lo) * kit_rng_uniform(r); }

uint64_t kit_rng_below(kit_rng *r, uint64_t n) {
    /* Rejection sampling: drop the top partial block of 2^64 so every residue is equally likely. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n, x;
    do x = kit_rng_next(r); while (x >= limit);
    return x % n;
}

kit_rng kit_rng_derive(uint64_t seed, uint64_t a, uint64_t b) {
    kit_rng r;
    kit_rng_seed(&r, seed);
    r.state = kit_rng_next(&r) ^ (a * 0xD1B54A32D192ED03ull);
    r.state = kit_rng_next(&r) ^ (b * 0xAEF17502108EF2D9ull);
    kit_rng_next(&r);
    return r;
}

double kit_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif
