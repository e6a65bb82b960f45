/* tests/fixture.h - golden values made by PyTorch (tests/fixtures_lib.py writes them).

   A fixture file is text, one tensor after another:
       tensor <name> <f32|i64> <ndim> <d0> ... <d(ndim-1)>
       <numel values, whitespace separated; f32 written with 9 significant digits (round-trips)>
   Names are free-form without spaces, e.g. "gelu.x", "gelu.y", "gelu.dx".
   A tensor too big to store as text (a whole model's state_dict) may instead be generated:
       tensor <name> rand <ndim> <d0> ... <d(ndim-1)>
       <seed> <center> <halfwidth> <sum of the values>
   fx_rand makes the values as tests/fixtures_lib.py's fixture_rand does; the sum must agree. */
#ifndef NN_FIXTURE_H
#define NN_FIXTURE_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char name[96]; nn_tensor *t; } fx_entry;
typedef struct { fx_entry *e; int n; char path[256]; } fx_file;

/* splitmix64 from seed; each output's top 24 bits u give center + halfwidth * (u - 2^23) / 2^23, exact in
   double (halfwidth a power of two, center a small dyadic: the writer checks), then rounded to f32 as
   Python's struct.pack("<f") does. Returns the values' sum in order, in double. */
static double fx_rand(float *out, int64_t n, uint64_t seed, double center, double halfwidth) {
    uint64_t state = seed;
    double sum = 0;
    int64_t i;
    for (i = 0; i < n; i++) {
        uint64_t z;
        state += 0x9E3779B97F4A7C15ull;
        z = state;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        out[i] = (float)(center + halfwidth * (((double)(z >> 40) - 8388608.0) * (1.0 / 8388608.0)));
        sum += out[i];
    }
    return sum;
}

static fx_file fx_load(const char *path) {
    fx_file f;
    FILE *fp = fopen(path, "r");
    char word[32];
    memset(&f, 0, sizeof f);
    snprintf(f.path, sizeof f.path, "%s", path);
    if (!fp) { fprintf(stderr, "fixture %s: cannot open (tests/make_fixtures_*.py write the fixtures)\n", path); exit(2); }
    while (fscanf(fp, "%31s", word) == 1) {
        fx_entry en;
        char dt[8];
        int ndim, d;
        int64_t shape[NN_MAX_DIMS], i, numel = 1;
        if (strcmp(word, "tensor") != 0 || fscanf(fp, "%95s %7s %d", en.name, dt, &ndim) != 3 || ndim < 0 ||
            ndim > NN_MAX_DIMS) {
            fprintf(stderr, "fixture %s: bad header near tensor %d\n", path, f.n); exit(2);
        }
        for (d = 0; d < ndim; d++) {
            long long v;
            if (fscanf(fp, "%lld", &v) != 1 || v < 0) { fprintf(stderr, "fixture %s: bad shape of %s\n", path, en.name); exit(2); }
            shape[d] = v; numel *= v;
        }
        if (strcmp(dt, "rand") == 0) {
            unsigned long long seed;
            double center, halfwidth, want, got;
            if (fscanf(fp, "%llu %lf %lf %lf", &seed, &center, &halfwidth, &want) != 4) {
                fprintf(stderr, "fixture %s: bad generator line of %s\n", path, en.name); exit(2);
            }
            en.t = nn_empty(NN_F32, ndim, shape);
            got = fx_rand((float *)en.t->data, numel, (uint64_t)seed, center, halfwidth);
            if (!(fabs(got - want) <= 1e-9 * (1.0 + (fabs(center) + halfwidth) * (double)numel))) {
                fprintf(stderr, "fixture %s: %s: generated values sum to %.17g, the writer's to %.17g "
                        "(fx_rand and fixture_rand disagree)\n", path, en.name, got, want);
                exit(2);
            }
        } else if (strcmp(dt, "f32") == 0) {
            en.t = nn_empty(NN_F32, ndim, shape);
            for (i = 0; i < numel; i++) {
                double v;
                if (fscanf(fp, "%lf", &v) != 1) { fprintf(stderr, "fixture %s: short data in %s\n", path, en.name); exit(2); }
                ((float *)en.t->data)[i] = (float)v;
            }
        } else {
            en.t = nn_empty(NN_I64, ndim, shape);
            for (i = 0; i < numel; i++) {
                long long v;
                if (fscanf(fp, "%lld", &v) != 1) { fprintf(stderr, "fixture %s: short data in %s\n", path, en.name); exit(2); }
                ((int64_t *)en.t->data)[i] = v;
            }
        }
        f.e = (fx_entry *)realloc(f.e, sizeof(fx_entry) * (size_t)(f.n + 1));
        f.e[f.n++] = en;
    }
    fclose(fp);
    return f;
}

static nn_tensor *fx_get(const fx_file *f, const char *name) {
    int i;
    for (i = 0; i < f->n; i++) if (strcmp(f->e[i].name, name) == 0) return f->e[i].t;
    fprintf(stderr, "fixture %s: no tensor named %s (regenerate it with its tests/make_fixtures_*.py)\n", f->path, name);
    exit(2);
}

static int fx_has(const fx_file *f, const char *name) {
    int i;
    for (i = 0; i < f->n; i++) if (strcmp(f->e[i].name, name) == 0) return 1;
    return 0;
}

static void fx_free(fx_file *f) {
    int i;
    for (i = 0; i < f->n; i++) nn_tensor_free(f->e[i].t);
    free(f->e);
    f->e = NULL; f->n = 0;
}

/* max |a-b| / (atol + rtol*|b|) over elements: <= 1 means close */
static double fx_err(const nn_tensor *a, const nn_tensor *b, double atol, double rtol) {
    int64_t i;
    double worst = 0;
    if (a->numel != b->numel) return 1e30;
    for (i = 0; i < a->numel; i++) {
        double x = ((const float *)a->data)[i], y = ((const float *)b->data)[i];
        double e = fabs(x - y) / (atol + rtol * fabs(y));
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

#define CHECK_FX(a, b, atol, rtol, what) do { \
    double e_ = fx_err((a), (b), (atol), (rtol)); \
    CHECK(e_ <= 1.0, "%s: differs from PyTorch (error ratio %.3g, numel %lld vs %lld)", (what), e_, \
          (long long)(a)->numel, (long long)(b)->numel); \
} while (0)
#endif
