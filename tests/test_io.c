/* IO tests (nn.h [api:io]): safetensors and .npy files written by Python load here with the right dtypes,
   shapes, values and metadata; files written here load back here (and in Python: tests/check_io.py
   checks what this test leaves in the output directory); registry loading in strict and non-strict
   modes; header validation case by case; a fuzz test that feeds hundreds of truncated, bit-flipped and
   garbage safetensors and .npy files and expects a clean nn_error for each bad one (run it under ASan).

   Usage: test_io [fixtures-dir [out-dir]]   (defaults tests/fixtures and build/test_io_out)
          python3 tests/check_io.py build/test_io_out */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#include <setjmp.h>
#include <sys/stat.h>
#include "test.h"
#include "expect_error.h"
#include "fixture.h"

static const char *fixdir = "tests/fixtures";
static const char *outdir = "build/test_io_out";
static char iodir[300];
static fx_file fx;


static const char *in_io(const char *name) {
    static char p[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", iodir, name);
    return p[k];
}
static const char *in_out(const char *name) {
    static char p[4][400];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", outdir, name);
    return p[k];
}

/* every element equal to the golden tensor's (exactly: all these values are representable) */
static int same_values(const nn_tensor *t, const nn_tensor *want) {
    int64_t i;
    if (t->numel != want->numel) return 0;
    for (i = 0; i < t->numel; i++) {
        double a = nn__elem_get(t->data, t->dtype, i);
        double b = want->dtype == NN_I64 ? (double)((const int64_t *)want->data)[i] : ((const float *)want->data)[i];
        if (t->dtype == NN_I64 && want->dtype == NN_I64) {
            if (((const int64_t *)t->data)[i] != ((const int64_t *)want->data)[i]) return 0;
        } else if (a != b) return 0;
    }
    return 1;
}

static int shape_is(const nn_tensor *t, int ndim, int64_t d0, int64_t d1, int64_t d2) {
    int64_t d[3];
    int k;
    d[0] = d0; d[1] = d1; d[2] = d2;
    if (t->ndim != ndim) return 0;
    for (k = 0; k < ndim && k < 3; k++) if (t->shape[k] != d[k]) return 0;
    return 1;
}

/* ---------------------------------------------------------------- safetensors written by Python */
static void test_py_safetensors(void) {
    static const struct { const char *name, *fxname; nn_dtype dt; int ndim; int64_t d0, d1, d2; } cases[] = {
        {"f32", "py.f32", NN_F32, 2, 2, 3, 0}, {"f16", "py.f16", NN_F16, 1, 4, 0, 0},
        {"bf16", "py.bf16", NN_BF16, 1, 3, 0, 0}, {"i32", "py.i32", NN_I32, 1, 5, 0, 0},
        {"i64", "py.i64", NN_I64, 2, 2, 2, 0}, {"u8", "py.u8", NN_U8, 1, 6, 0, 0},
        {"bool", "py.bool", NN_BOOL, 1, 3, 0, 0}, {"scalar", "py.scalar", NN_F32, 0, 0, 0, 0},
        {"empty", "py.empty", NN_F32, 2, 0, 4, 0}, {"nested.name.with.dots", "py.nested.name.with.dots", NN_F32, 3, 2, 3, 4},
        {"unicode \xe2\x9c\x93 \"quoted\"", "py.unicode_\xe2\x9c\x93_quoted", NN_F32, 1, 1, 0, 0},
    };
    nn_safetensors *f = nn_safetensors_open(in_io("py_all.safetensors"));
    int k;
    CHECK(nn_safetensors_count(f) == 11, "11 tensors, got %d", nn_safetensors_count(f));
    CHECK(nn_safetensors_meta_count(f) == 2, "2 metadata entries");
    CHECK(nn_safetensors_meta(f, "producer") && strcmp(nn_safetensors_meta(f, "producer"), "torch") == 0, "metadata producer");
    CHECK(nn_safetensors_meta(f, "note") && strcmp(nn_safetensors_meta(f, "note"), "h\xc3\xa9llo \xe2\x9c\x93") == 0, "metadata utf-8");
    CHECK(nn_safetensors_meta(f, "nope") == NULL, "absent metadata key");
    for (k = 0; k < (int)(sizeof cases / sizeof cases[0]); k++) {
        nn_tensor *t;
        int i = nn_safetensors_find(f, cases[k].name);
        CHECK(i >= 0, "find %s", cases[k].name);
        if (i < 0) continue;
        CHECK(nn_safetensors_info(f, i)->dtype == cases[k].dt, "%s: dtype", cases[k].name);
        t = nn_safetensors_get(f, cases[k].name);
        CHECK(t->dtype == cases[k].dt && shape_is(t, cases[k].ndim, cases[k].d0, cases[k].d1, cases[k].d2), "%s: dtype/shape", cases[k].name);
        CHECK(same_values(t, fx_get(&fx, cases[k].fxname)), "%s: values equal Python's", cases[k].name);
        nn_tensor_free(t);
    }
    {
        int64_t s4 = 4;
        nn_tensor *d = nn_empty(NN_F32, 1, &s4);
        nn_safetensors_read_into(f, "f16", d, 1);
        CHECK(same_values(d, fx_get(&fx, "py.f16")), "read_into with f16 -> f32 conversion");
        EXPECT_ERROR(nn_safetensors_read_into(f, "f16", d, 0), "convert");
        EXPECT_ERROR(nn_safetensors_read_into(f, "f32", d, 1), "shape [2,3], destination [4]");
        nn_tensor_free(d);
    }
    EXPECT_ERROR(nn_safetensors_get(f, "missing.key"), "has no tensor \"missing.key\"");
    nn_safetensors_close(f);
    f = nn_safetensors_open(in_io("py_empty.safetensors"));
    CHECK(nn_safetensors_count(f) == 0 && nn_safetensors_meta(f, "only") != NULL, "a file with metadata only");
    nn_safetensors_close(f);
    EXPECT_ERROR(nn_safetensors_open(in_io("does_not_exist.safetensors")), "cannot open");
}

/* ---------------------------------------------------------------------- registry loading */
static void test_registry_load(void) {
    nn_params P;
    nn_Linear a, b;
    nn_load_opts o;
    nn_load_result r;
    int k;
    char nm[96];
    memset(&P, 0, sizeof P);
    nn_Linear_init(&a, &P, "fc1", 4, 8, 1);
    nn_Linear_init(&b, &P, "fc2", 8, 3, 1);
    o.strict = 1; o.convert_dtype = 0; o.skip_prefix = NULL; o.prefix = NULL;
    nn_params_load(in_io("py_mlp.safetensors"), &P, &o, &r);
    CHECK(r.n_missing == 0 && r.n_unexpected == 0, "strict load: nothing missing or unexpected");
    nn_load_result_free(&r);
    for (k = 0; k < P.n; k++) {
        snprintf(nm, sizeof nm, "mlp.final.%s", P.items[k].name);
        CHECK(same_values(P.items[k].t, fx_get(&fx, nm)), "numpy-written %s loaded by name", P.items[k].name);
    }
    nn_params_free(&P);

    /* a registry with one parameter the file lacks and without one the file has */
    memset(&P, 0, sizeof P);
    nn_Linear_init(&a, &P, "fc1", 4, 8, 1);
    nn_Linear_init(&b, &P, "fc2", 8, 3, 0);
    {
        int64_t s = 5;
        nn_params_add(&P, "extra", nn_full(NN_F32, 1, &s, 7.0));
    }
    nn_fill_(P.items[0].t, -1.0);
    EXPECT_ERROR(nn_params_load(in_io("py_mlp.safetensors"), &P, &o, NULL), "Missing key(s): \"extra\"");
    CHECK(strstr(err_msg, "Unexpected key(s): \"fc2.bias\"") != NULL, "strict error lists the unexpected key: %s", err_msg);
    CHECK(((float *)P.items[0].t->data)[0] == -1.0f, "a failed strict load changes nothing");
    o.strict = 0;
    nn_params_load(in_io("py_mlp.safetensors"), &P, &o, &r);
    CHECK(r.n_missing == 1 && strcmp(r.missing[0], "extra") == 0, "non-strict: missing listed");
    CHECK(r.n_unexpected == 1 && strcmp(r.unexpected[0], "fc2.bias") == 0, "non-strict: unexpected listed");
    CHECK(same_values(P.items[0].t, fx_get(&fx, "mlp.final.fc1.weight")), "non-strict: present keys loaded");
    CHECK(((float *)P.items[3].t->data)[0] == 7.0f, "non-strict: missing parameter untouched");
    nn_load_result_free(&r);
    /* skip_prefix: ignored keys are neither loaded nor unexpected */
    o.skip_prefix = "fc2."; o.prefix = NULL;
    nn_params_load(in_io("py_mlp.safetensors"), &P, &o, &r);
    CHECK(r.n_unexpected == 0 && r.n_missing == 2, "skip_prefix: %d unexpected, %d missing", r.n_unexpected, r.n_missing);
    nn_load_result_free(&r);
    nn_params_free(&P);

    /* shape and dtype mismatches */
    memset(&P, 0, sizeof P);
    nn_Linear_init(&a, &P, "fc1", 8, 4, 1);
    o.strict = 0; o.skip_prefix = NULL; o.prefix = NULL;
    EXPECT_ERROR(nn_params_load(in_io("py_mlp.safetensors"), &P, &o, NULL), "size mismatch for fc1.weight");
    nn_params_free(&P);
    memset(&P, 0, sizeof P);
    {
        int64_t s = 8;
        nn_params_add(&P, "fc1.bias", nn_zeros(NN_F16, 1, &s));
    }
    EXPECT_ERROR(nn_params_load(in_io("py_mlp.safetensors"), &P, &o, NULL), "dtype mismatch for fc1.bias");
    o.convert_dtype = 1;
    nn_params_load(in_io("py_mlp.safetensors"), &P, &o, NULL);
    {
        nn_tensor *want = fx_get(&fx, "mlp.final.fc1.bias");
        int ok = 1;
        for (k = 0; k < 8; k++)
            if (nn__half_to_f32(((uint16_t *)P.items[0].t->data)[k]) != nn__half_to_f32(nn__f32_to_half(((float *)want->data)[k]))) ok = 0;
        CHECK(ok, "convert_dtype: f32 file -> f16 parameter, rounded to nearest even");
    }
    nn_params_free(&P);
}

/* ----------------------------------------------------------------------- files written here */
static void fill_vals(nn_tensor *t, double scale, double off) {
    int64_t i;
    for (i = 0; i < t->numel; i++) {
        double v = (double)i * scale + off;
        switch (t->dtype) {
        case NN_F32: ((float *)t->data)[i] = (float)v; break;
        case NN_F16: ((uint16_t *)t->data)[i] = nn__f32_to_half((float)v); break;
        case NN_BF16: ((uint16_t *)t->data)[i] = nn__f32_to_bf16((float)v); break;
        case NN_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
        case NN_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
        default: ((uint8_t *)t->data)[i] = (uint8_t)v; break;
        }
    }
}

static nn_tensor *mk(nn_dtype dt, int ndim, int64_t d0, int64_t d1, double scale, double off) {
    int64_t s[2];
    nn_tensor *t;
    s[0] = d0; s[1] = d1;
    t = nn_empty(dt, ndim, s);
    fill_vals(t, scale, off);
    return t;
}

#define C_WEIRD "weird \"name\" \xe2\x9c\x93\n\\"
#define C_NOTE "line\nbreak \"quoted\" \xe2\x9c\x93 \\ backslash\t"

static void test_c_written(void) {
    const char *names[10] = {"f32", "f16", "bf16", "i32", "i64", "u8", "bool", "scalar", "empty", C_WEIRD};
    nn_tensor *ts[10];
    nn_st_entry e[10];
    const char *meta[4] = {"producer", "nn.h", "note", C_NOTE};
    int k;
    nn_safetensors *f;
    ts[0] = mk(NN_F32, 2, 2, 3, 0.25, -1);
    ts[1] = mk(NN_F16, 1, 4, 0, 0.5, -1);
    ts[2] = mk(NN_BF16, 1, 3, 0, 1.5, -2);
    ts[3] = mk(NN_I32, 1, 5, 0, 7, -10);
    ts[4] = mk(NN_I64, 2, 2, 2, 1099511627776.0, -2199023255552.0);
    ts[5] = mk(NN_U8, 1, 6, 0, 40, 0);
    ts[6] = mk(NN_BOOL, 1, 3, 0, 0, 0);
    for (k = 0; k < 3; k++) ((uint8_t *)ts[6]->data)[k] = (uint8_t)(k % 2);
    ts[7] = mk(NN_F32, 0, 0, 0, 0, 3.5);
    ts[8] = mk(NN_F32, 2, 0, 4, 0, 0);
    ts[9] = mk(NN_F32, 1, 1, 0, 0, 42);
    memset(e, 0, sizeof e);
    for (k = 0; k < 10; k++) { e[k].name = names[k]; e[k].t = ts[k]; }
    nn_safetensors_write(in_out("c_all.safetensors"), 10, e, 2, meta);
    f = nn_safetensors_open(in_out("c_all.safetensors"));
    CHECK(nn_safetensors_count(f) == 10, "c_all: 10 tensors");
    CHECK(nn_safetensors_meta(f, "note") && strcmp(nn_safetensors_meta(f, "note"), C_NOTE) == 0, "c_all: metadata escapes round-trip");
    for (k = 0; k < 10; k++) {
        nn_tensor *t = nn_safetensors_get(f, names[k]);
        CHECK(t->dtype == ts[k]->dtype && t->ndim == ts[k]->ndim && t->numel == ts[k]->numel &&
              memcmp(t->data, ts[k]->data, (size_t)t->numel * nn_dtype_size(t->dtype)) == 0, "c_all: %s round-trips", names[k]);
        nn_tensor_free(t);
    }
    /* alignment: every tensor starts at a multiple of its dtype size */
    {
        int ok = 1;
        for (k = 0; k < nn_safetensors_count(f); k++) {
            const nn_st_info *ti = nn_safetensors_info(f, k);
            if ((8 + ti->begin) % nn_dtype_size(ti->dtype)) ok = 0;  /* header length is a multiple of 8 */
        }
        CHECK(ok, "c_all: tensors aligned");
    }
    nn_safetensors_close(f);
    {
        nn_st_entry d[2];
        memset(d, 0, sizeof d);
        d[0].name = "a"; d[0].t = ts[0]; d[1].name = "a"; d[1].t = ts[1];
        EXPECT_ERROR(nn_safetensors_write(in_out("dup.safetensors"), 2, d, 0, NULL), "duplicate tensor name");
        d[1].name = "__metadata__";
        EXPECT_ERROR(nn_safetensors_write(in_out("dup.safetensors"), 2, d, 0, NULL), "not a valid tensor name");
        d[1].name = "bad\xff";
        EXPECT_ERROR(nn_safetensors_write(in_out("dup.safetensors"), 2, d, 0, NULL), "not a valid tensor name");
        EXPECT_ERROR(nn_safetensors_write("/nonexistent-dir/x.safetensors", 1, d, 0, NULL), "cannot create");
    }
    /* .npy files of every dtype numpy shares with nn.h */
    {
        static const char *np_names[7] = {"c_f4.npy", "c_f2.npy", NULL, "c_i4.npy", "c_i8.npy", "c_u1.npy", "c_b1.npy"};
        for (k = 0; k < 7; k++) {
            nn_tensor *t;
            if (!np_names[k]) continue;
            nn_npy_save(in_out(np_names[k]), ts[k]);
            t = nn_npy_load(in_out(np_names[k]));
            CHECK(t->dtype == ts[k]->dtype && nn__io_same_shape(t->ndim, t->shape, ts[k]->ndim, ts[k]->shape) &&
                  memcmp(t->data, ts[k]->data, (size_t)t->numel * nn_dtype_size(t->dtype)) == 0, "npy round trip %s", np_names[k]);
            nn_tensor_free(t);
        }
        nn_npy_save(in_out("c_scalar.npy"), ts[7]);
        nn_npy_save(in_out("c_empty.npy"), ts[8]);
        {
            nn_tensor *big = mk(NN_F32, 2, 300, 7, 0.5, -100);
            nn_npy_save(in_out("c_big.npy"), big);
            nn_tensor_free(big);
        }
        EXPECT_ERROR(nn_npy_save(in_out("c_bf16.npy"), ts[2]), "no .npy dtype");
    }
    for (k = 0; k < 10; k++) nn_tensor_free(ts[k]);

    /* a model and a checkpoint of it for PyTorch (tests/check_io.py loads them into a torch module) */
    {
        nn_params P;
        nn_Linear a, b;
        nn_adamw *opt;
        nn_sched s = nn_sched_warmup_cosine(1e-2, 0.1, 5, 20, 0);
        nn_ckpt_info info;
        int64_t sx[2] = {6, 4}, sy[2] = {6, 3};
        const char *m2[2] = {"producer", "nn.h"};
        memset(&P, 0, sizeof P);
        nn_seed(5);
        nn_Linear_init(&a, &P, "fc1", 4, 8, 1);
        nn_Linear_init(&b, &P, "fc2", 8, 3, 1);
        opt = nn_adamw_new(&P, nn_adamw_default());
        for (k = 0; k < 3; k++) {
            nn_params_zero_grad(&P);
            nn_scope_begin();
            nn_backward(nn_mse_loss(nn_Linear_forward(&b, nn_tanh(nn_Linear_forward(&a, nn_randn(2, sx)))), nn_randn(2, sy)));
            nn_scope_end(NULL);
            nn_adamw_step(opt, nn_sched_lr(&s));
            nn_sched_step(&s);
        }
        memset(&info, 0, sizeof info);
        info.epoch = 2; info.best_metric = 0.125; info.config = "lr: 1e-2\nname: \"tiny\"\n";
        nn_params_save(in_out("c_model.safetensors"), &P, 1, m2);
        nn_ckpt_save(in_out("c_ckpt.safetensors"), &P, opt, &s, &info);
        nn_params_zero_grad(&P);
        nn_adamw_free(opt);
        nn_params_free(&P);
    }
}

/* ----------------------------------------------------------------------------------- npy */
static void test_npy(void) {
    static const struct { const char *file, *fxname; nn_dtype dt; } ok[] = {
        {"np_f4.npy", "np.base", NN_F32}, {"np_f2.npy", "np.base", NN_F16}, {"np_i4.npy", "np.base_i4", NN_I32},
        {"np_i8.npy", "np.base_i8", NN_I64}, {"np_v2.npy", "np.base", NN_F32}, {"np_v3.npy", "np.base", NN_F32},
    };
    int k;
    for (k = 0; k < (int)(sizeof ok / sizeof ok[0]); k++) {
        nn_tensor *t = nn_npy_load(in_io(ok[k].file));
        CHECK(t->dtype == ok[k].dt && shape_is(t, 3, 2, 3, 4), "%s: dtype and shape", ok[k].file);
        CHECK(same_values(t, fx_get(&fx, ok[k].fxname)), "%s: values equal numpy's", ok[k].file);
        nn_tensor_free(t);
    }
    {
        nn_tensor *t = nn_npy_load(in_io("np_u1.npy"));
        int good = t->dtype == NN_U8 && shape_is(t, 1, 10, 0, 0);
        for (k = 0; good && k < 10; k++) good = ((uint8_t *)t->data)[k] == 25 * k;
        CHECK(good, "np_u1.npy");
        nn_tensor_free(t);
        t = nn_npy_load(in_io("np_b1.npy"));
        good = t->dtype == NN_BOOL && shape_is(t, 1, 4, 0, 0) && ((uint8_t *)t->data)[0] == 1 && ((uint8_t *)t->data)[1] == 0 &&
               ((uint8_t *)t->data)[3] == 1;
        CHECK(good, "np_b1.npy");
        nn_tensor_free(t);
        t = nn_npy_load(in_io("np_scalar.npy"));
        CHECK(t->ndim == 0 && t->numel == 1 && ((float *)t->data)[0] == 2.5f, "np_scalar.npy: a 0-d array");
        nn_tensor_free(t);
        t = nn_npy_load(in_io("np_empty.npy"));
        CHECK(shape_is(t, 2, 0, 5, 0) && t->numel == 0, "np_empty.npy");
        nn_tensor_free(t);
    }
    EXPECT_ERROR(nn_npy_load(in_io("bad_fortran.npy")), "fortran_order");
    EXPECT_ERROR(nn_npy_load(in_io("bad_bigendian.npy")), "big-endian");
    EXPECT_ERROR(nn_npy_load(in_io("bad_f8.npy")), "'<f8' is not one nn.h reads");
    EXPECT_ERROR(nn_npy_load(in_io("bad_i1.npy")), "'|i1' is not one nn.h reads");
    EXPECT_ERROR(nn_npy_load(in_io("bad_truncated.npy")), "truncated");
    CHECK(strstr(err_msg, "bad_truncated.npy") != NULL, "the error names the file: %s", err_msg);
    EXPECT_ERROR(nn_npy_load(in_io("py_all.safetensors")), "not a .npy file");
    EXPECT_ERROR(nn_npy_load(in_io("nope.npy")), "cannot open");
}

/* ------------------------------------------------------------------------- header validation */
static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp;
    remove(path);  /* not truncation: ext4 flushes a truncated file's blocks on close (auto_da_alloc), slow */
    fp = fopen(path, "wb");
    if (!fp) { printf("cannot write %s\n", path); return; }
    if (n) fwrite(p, 1, n, fp);
    fclose(fp);
}

/* a safetensors file from a header text and data_len zero bytes of data; hlen_override != 0 replaces N */
static void write_st(const char *path, const char *header, size_t data_len, uint64_t hlen_override) {
    size_t hn = strlen(header), k;
    unsigned char *b = (unsigned char *)calloc(8 + hn + data_len + 1, 1);
    uint64_t n = hlen_override ? hlen_override : hn;
    for (k = 0; k < 8; k++) b[k] = (unsigned char)(n >> (8 * k));
    memcpy(b + 8, header, hn);
    write_bytes(path, b, 8 + hn + data_len);
    free(b);
}

static int st_opens(const char *path) {
    nn_safetensors *volatile f = NULL;
    int ok;
    nn_set_error_handler(err_handler, NULL);
    err_msg[0] = 0;
    if (!setjmp(err_jmp)) {
        int k;
        f = nn_safetensors_open(path);
        for (k = 0; k < nn_safetensors_count(f); k++) {
            nn_tensor *t = nn_safetensors_get(f, nn_safetensors_info(f, k)->name);
            nn_tensor_free(t);
        }
        nn_safetensors_close(f);
        f = NULL;
        ok = 1;
    } else {
        if (f) nn_safetensors_close(f);
        ok = 0;
    }
    nn_set_error_handler(NULL, NULL);
    return ok;
}

static void test_headers(void) {
    static const struct { const char *header; size_t data; uint64_t hlen; const char *needle; } cases[] = {
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}    ", 8, 0, NULL},
        {"{}", 0, 0, NULL},
        {"{\"__metadata__\":{}}", 0, 0, NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 7, 0, "reach beyond the data"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9, 0, "after the last tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, 0, "needs 12 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, 0, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, 0, "belong to none"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "does not start with a tensor"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0, "duplicate tensor name \"a\""},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, 0, "\"F64\" is not one nn.h reads"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 0, "non-negative integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.5],\"data_offsets\":[0,4]}}", 4, 0, "fraction"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, 0, "leading zero"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, 0, "unknown field \"x\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "duplicate field \"shape\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, 0, "no data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, 0, "exactly 2"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, 0, "end before they begin"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, 0, "too many dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,4611686018427387904],\"data_offsets\":[0,4]}}", 4, 0, "too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4, 0, "integer too large"},
        {"{\"__metadata__\":{\"k\":1}}", 0, 0, "must be strings"},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, 0, "duplicate __metadata__ key"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0, "duplicate __metadata__"},
        {"{} x", 0, 0, "bytes after the closing"},
        {" {}", 0, 0, "must start with '{'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, 0, "expected ',' or '}'"},
        {"{\"a", 0, 0, "unterminated string"},
        {"{\"a\xff\":{}}", 0, 0, "invalid UTF-8"},
        {"{\"a\xc0\x80\":{}}", 0, 0, "invalid UTF-8"},
        {"{\"a\\u0000\":{}}", 0, 0, "NUL"},
        {"{\"a\\ud800\":{}}", 0, 0, "surrogate"},
        {"{\"a\\q\":{}}", 0, 0, "bad escape"},
        {"{\"a\t\":{}}", 0, 0, "control character"},
        {"{\"\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0, "empty tensor name"},
        {"{}", 4, 0, "no tensors but 4 bytes"},
        {"{}", 0, 100, "only 2 bytes follow"},
        {"{}", 0, 1ull << 40, "exceeds the limit"},
    };
    int k;
    const char *path = in_out("hdr.safetensors");
    for (k = 0; k < (int)(sizeof cases / sizeof cases[0]); k++) {
        int opened;
        write_st(path, cases[k].header, cases[k].data, cases[k].hlen);
        opened = st_opens(path);
        if (!cases[k].needle) CHECK(opened, "header case %d should load: %s", k, err_msg);
        else CHECK(!opened && strstr(err_msg, cases[k].needle) && strstr(err_msg, "hdr.safetensors"),
                   "header case %d: error '%s' lacks '%s' or the file name", k, err_msg, cases[k].needle);
    }
    /* the unicode-escaped name decodes (\u2713 and a surrogate pair) */
    write_st(path, "{\"\\u2713\\ud83d\\ude00\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0);
    {
        nn_safetensors *f = nn_safetensors_open(path);
        CHECK(nn_safetensors_find(f, "\xe2\x9c\x93\xf0\x9f\x98\x80") == 0, "\\u escapes decode to UTF-8");
        nn_safetensors_close(f);
    }
    write_bytes(path, "abc", 3);
    CHECK(!st_opens(path) && strstr(err_msg, "too short"), "3-byte file: %s", err_msg);
    remove(path);
}

/* --------------------------------------------------------------------------------------- fuzz */
#ifndef FUZZ_ROUNDS
#define FUZZ_ROUNDS 700  /* mutations per base file beyond its truncations (-DFUZZ_ROUNDS=20000 for a long run) */
#endif
static unsigned long long rng_state = 88172645463325252ull;
static unsigned rnd(void) {  /* xorshift64 (Marsaglia 2003): reproducible */
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return (unsigned)(rng_state >> 11);
}

static int npy_opens(const char *path) {
    int ok;
    nn_set_error_handler(err_handler, NULL);
    err_msg[0] = 0;
    if (!setjmp(err_jmp)) { nn_tensor_free(nn_npy_load(path)); ok = 1; }
    else ok = 0;
    nn_set_error_handler(NULL, NULL);
    return ok;
}

/* loading a mutated file into a registry too (the registry path validates again) */
static int st_loads_into(const char *path) {
    nn_params P;
    nn_load_opts o;
    int ok;
    int64_t s[2] = {2, 3};
    memset(&P, 0, sizeof P);
    nn_params_add(&P, "f32", nn_zeros(NN_F32, 2, s));
    o.strict = 0; o.convert_dtype = 1; o.skip_prefix = NULL; o.prefix = NULL;
    nn_set_error_handler(err_handler, NULL);
    if (!setjmp(err_jmp)) { nn_params_load(path, &P, &o, NULL); ok = 1; }
    else ok = 0;
    nn_set_error_handler(NULL, NULL);
    nn_params_free(&P);
    return ok;
}

static void fuzz_one(const char *kind, const unsigned char *base, size_t n, size_t header_end, int is_npy, int rounds,
                     int *n_files, int *n_rejected) {
    const char *path = in_out(is_npy ? "fuzz.npy" : "fuzz.safetensors");
    unsigned char *b = (unsigned char *)malloc(n + 512);
    int r;
    static const char jsonish[] = "{}[]\":,0123456789-.eE \\uFIBU";
    static const char pyish[] = "{}()':,0123456789<>|=fiub TrueFalsdcph";
    for (r = 0; r < rounds; r++) {
        size_t len = n, k;
        int how = r < (int)n ? 0 : 1 + (int)(rnd() % 5);
        memcpy(b, base, n);
        switch (how) {
        case 0: len = (size_t)r; break;  /* every truncation */
        case 1: {                         /* 1..4 bit flips, mostly in the header */
            int flips = 1 + (int)(rnd() % 4), q;
            for (q = 0; q < flips; q++) {
                size_t at = rnd() % 4 ? rnd() % header_end : rnd() % n;
                b[at] ^= (unsigned char)(1u << (rnd() % 8));
            }
            break;
        }
        case 2: {                         /* header bytes replaced by syntax characters */
            int q, reps = 1 + (int)(rnd() % 3);
            for (q = 0; q < reps; q++) {
                const char *set = is_npy ? pyish : jsonish;
                size_t at = 8 + rnd() % (header_end - 8);
                b[at] = (unsigned char)set[rnd() % strlen(set)];
            }
            break;
        }
        case 3:                           /* a random length field */
            if (is_npy) { b[8] = (unsigned char)rnd(); b[9] = (unsigned char)rnd(); }
            else for (k = 0; k < 8; k++) b[k] = (unsigned char)(k < 2 + rnd() % 6 ? rnd() : 0);
            break;
        case 4:                           /* garbage of random length, sometimes with a valid prefix */
            len = rnd() % (n + 256);
            for (k = rnd() % 2 ? header_end / 2 : 0; k < len; k++) b[k] = (unsigned char)rnd();
            break;
        default:                          /* bytes inserted or deleted in the header */
            if (rnd() % 2 && len + 1 < n + 512) { size_t at = rnd() % header_end; memmove(b + at + 1, b + at, len - at); b[at] = (unsigned char)rnd(); len++; }
            else { size_t at = rnd() % header_end; memmove(b + at, b + at + 1, len - at - 1); len--; }
            break;
        }
        write_bytes(path, b, len);
        (*n_files)++;
        if (is_npy) { if (!npy_opens(path)) (*n_rejected)++; }
        else {
            int a = st_opens(path);
            if (!a) (*n_rejected)++;
            st_loads_into(path);
        }
    }
    printf("  fuzz %s: %d files so far, %d rejected with a clean error\n", kind, *n_files, *n_rejected);
    free(b);
    remove(path);
}

static void test_fuzz(void) {
    size_t n1, n2, n3;
    unsigned char *a = test_read_file(in_io("py_all.safetensors"), &n1);
    unsigned char *c = test_read_file(in_out("c_all.safetensors"), &n2);
    unsigned char *p = test_read_file(in_io("np_v2.npy"), &n3);
    int files = 0, rejected = 0, nfiles = 0, nrejected = 0;
    size_t ha, hc;
    CHECK(a && c && p, "fuzz inputs");
    if (!a || !c || !p) { free(a); free(c); free(p); return; }
    ha = 8 + (size_t)(a[0] | (a[1] << 8));
    hc = 8 + (size_t)(c[0] | (c[1] << 8));
    fuzz_one("safetensors (python)", a, n1, ha, 0, (int)n1 + FUZZ_ROUNDS, &files, &rejected);
    fuzz_one("safetensors (nn.h)", c, n2, hc, 0, (int)n2 + FUZZ_ROUNDS, &files, &rejected);
    fuzz_one("npy", p, n3, 128, 1, (int)n3 + FUZZ_ROUNDS, &nfiles, &nrejected);
    CHECK(files > 1000 && rejected > files / 2, "safetensors fuzz: %d files, %d clean errors, no crash", files, rejected);
    CHECK(nfiles > 500 && nrejected > nfiles / 2, "npy fuzz: %d files, %d clean errors, no crash", nfiles, nrejected);
    free(a); free(c); free(p);
}

/* a hub file loads into a bigger model under a name prefix ("encoder." + file key) */
static void test_prefix_load(void) {
    nn_params small, big;
    nn_Linear a, e, h;
    nn_load_opts o;
    nn_load_result r;
    char path[512];
    memset(&small, 0, sizeof small); memset(&big, 0, sizeof big); memset(&o, 0, sizeof o);
    nn_seed(11);
    nn_Linear_init(&a, &small, "fc1", 4, 3, 1);
    snprintf(path, sizeof path, "%s/prefix.safetensors", outdir);
    nn_params_save(path, &small, 0, NULL);
    nn_Linear_init(&e, &big, "encoder.fc1", 4, 3, 1);
    nn_Linear_init(&h, &big, "head", 3, 2, 1);
    o.strict = 1; o.prefix = "encoder.";
    nn_params_load(path, &big, &o, &r);
    CHECK(r.n_missing == 0 && r.n_unexpected == 0, "prefix load: %d missing, %d unexpected", r.n_missing, r.n_unexpected);
    CHECK(memcmp(e.weight->data, a.weight->data, 12 * sizeof(float)) == 0 && memcmp(e.bias->data, a.bias->data, 3 * sizeof(float)) == 0,
          "prefix load copies fc1.* into encoder.fc1.*");
    nn_load_result_free(&r);
    nn_params_free(&small); nn_params_free(&big);
}

int main(int argc, char **argv) {
    char fxpath[200];
    if (argc >= 2) fixdir = argv[1];
    if (argc >= 3) outdir = argv[2];
    snprintf(iodir, sizeof iodir, "%s/io", fixdir);
    mkdir("build", 0777);  /* the default's parent; harmless when it exists */
    mkdir(outdir, 0777);
    snprintf(fxpath, sizeof fxpath, "%s/train.txt", fixdir);
    fx = fx_load(fxpath);
    (void)fx_has; (void)fx_err;
    test_py_safetensors();
    test_registry_load();
    test_prefix_load();
    test_c_written();
    test_npy();
    test_headers();
    test_fuzz();
    fx_free(&fx);
    nn_shutdown();
    return test_summary();
}
