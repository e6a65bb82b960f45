/* tests/kit_image.c - images: resize against Pillow fixtures, decoding against Pillow, colour jitter
   against torchvision fixtures (tests/make_kit_fixtures.py writes them), PNG round trips, ImageNet
   normalisation, and the errors for missing / truncated / non-image files.

   Tolerances: kit_resize_u8 vs Pillow 8-bit: exact (0 levels). kit_resize_f32 vs Pillow "F": 1e-6 absolute
   on [0, 1] data (bit-exact when written). Decoded PNGs: exact. JPEG, stb_image vs Pillow's libjpeg: at
   most 3 levels and a mean under 0.5 (the IDCTs differ; 2 and 0.05 when written). Jitter vs torchvision
   on float tensors: 1e-6 absolute (contrast differs by ~1e-7: the image mean is summed in another order).

   usage: kit_image [fixture dir]   (default tests/fixtures/kit, run from the repository root) */
#define KIT_IMPLEMENTATION
#include "kit.h"
#include "test.h"
#include <stdlib.h>
#include <string.h>

static const char *fixdir = "tests/fixtures/kit";

static char *fpath(const char *name) {
    static char buf[8][1024];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fixdir, name);
    return buf[k];
}

static float *read_f32(const char *name, size_t n) {
    FILE *f = fopen(fpath(name), "rb");
    float *v = (float *)malloc(n * sizeof(float));
    size_t got = f ? fread(v, sizeof(float), n + 1, f) : 0; /* n + 1: the size must match exactly */
    if (f) fclose(f);
    CHECK(got == n, "%s: read %lu floats, expected %lu", name, (unsigned long)got, (unsigned long)n);
    if (got != n) { free(v); return NULL; }
    return v;
}

static int write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(data, 1, n, f);
    fclose(f);
    return 0;
}

static void test_fixtures(void) {
    char line[512];
    FILE *man = fopen(fpath("fixtures.txt"), "r");
    unsigned char *src = NULL;
    float *srcf = NULL, *jsrc = NULL;
    int sw = 0, sh = 0, jw = 0, jh = 0, nresize_u8 = 0, nresize_f = 0, njitter = 0, ndecode = 0;
    kit_err err;
    CHECK(man != NULL, "fixture manifest %s (run python3 tests/make_kit_fixtures.py)", fpath("fixtures.txt"));
    if (!man) return;
    while (fgets(line, sizeof line, man)) {
        char a[64], b[64], c[128], d[128];
        int w, h, w2, h2;
        if (line[0] == '#') continue;
        if (sscanf(line, "source %63s %127s %d %d", a, c, &w, &h) == 4) {
            CHECK(kit_image_load_u8(fpath(a), 3, &src, &sw, &sh, &err) == 0, "load source: %s", err.msg);
            CHECK(sw == w && sh == h, "source size");
            srcf = read_f32(c, (size_t)w * h * 3);
        } else if (sscanf(line, "resize %63s %63s %d %d %127s", a, b, &w, &h, c) == 5 && src && srcf) {
            kit_filter f = !strcmp(b, "bilinear") ? KIT_FILTER_BILINEAR : KIT_FILTER_BICUBIC;
            size_t n = (size_t)w * h * 3, i;
            if (!strcmp(a, "u8")) {
                unsigned char *want, *got = (unsigned char *)malloc(n);
                int maxd = 0;
                CHECK(kit_image_load_u8(fpath(c), 3, &want, &w2, &h2, &err) == 0 && w2 == w && h2 == h, "load %s: %s", c, err.msg);
                CHECK(kit_resize_u8(src, sw, sh, 3, got, w, h, f) == 0, "resize_u8");
                for (i = 0; i < n; i++) { int dd = abs((int)got[i] - (int)want[i]); if (dd > maxd) maxd = dd; }
                CHECK(maxd == 0, "u8 %s %dx%d: max difference %d levels vs Pillow (want exact)", b, w, h, maxd);
                free(want);
                free(got);
                nresize_u8++;
            } else {
                float *want = read_f32(c, n), *got = (float *)malloc(n * sizeof(float));
                double maxd = 0;
                CHECK(kit_resize_f32(srcf, sw, sh, 3, got, w, h, f) == 0, "resize_f32");
                for (i = 0; want && i < n; i++) { double dd = fabs((double)got[i] - want[i]); if (dd > maxd) maxd = dd; }
                CHECK(want && maxd <= 1e-6, "f32 %s %dx%d: max difference %.3g vs Pillow F (tolerance 1e-6)", b, w, h, maxd);
                free(want);
                free(got);
                nresize_f++;
            }
        } else if (sscanf(line, "decode %127s %127s", c, d) == 2) {
            unsigned char *got, *want;
            int gw, gh, ww, wh, maxd = 0;
            double sum = 0;
            size_t i, n;
            CHECK(kit_image_load_u8(fpath(c), 3, &got, &gw, &gh, &err) == 0, "decode %s: %s", c, err.msg);
            CHECK(kit_image_load_u8(fpath(d), 3, &want, &ww, &wh, &err) == 0, "decode %s: %s", d, err.msg);
            if (!got || !want) continue;
            CHECK(gw == ww && gh == wh, "%s size", c);
            n = (size_t)gw * gh * 3;
            for (i = 0; i < n; i++) { int dd = abs((int)got[i] - (int)want[i]); sum += dd; if (dd > maxd) maxd = dd; }
            if (strstr(c, ".jpg"))
                CHECK(maxd <= 3 && sum / (double)n < 0.5, "%s: stb vs Pillow max %d, mean %.3f (tolerance 3, 0.5)", c, maxd, sum / (double)n);
            else
                CHECK(maxd == 0, "%s: stb vs Pillow differ by %d levels (want exact)", c, maxd);
            free(got);
            free(want);
            ndecode++;
        } else if (sscanf(line, "jitter_source %127s %d %d", c, &w, &h) == 3) {
            jsrc = read_f32(c, (size_t)w * h * 3);
            jw = w;
            jh = h;
        } else if (sscanf(line, "jitter %63s %127s %127s", a, d, c) == 3 && jsrc) {
            float factor = (float)atof(d), *want = read_f32(c, (size_t)jw * jh * 3);
            kit_image im;
            double maxd = 0, tol = 1e-6;
            size_t i;
            kit_image_alloc(&im, jw, jh, 3);
            memcpy(im.data, jsrc, sizeof(float) * (size_t)jw * jh * 3);
            if (!strcmp(a, "brightness")) kit_adjust_brightness(&im, factor);
            else if (!strcmp(a, "contrast")) kit_adjust_contrast(&im, factor);
            else if (!strcmp(a, "saturation")) kit_adjust_saturation(&im, factor);
            else kit_adjust_hue(&im, factor);
            for (i = 0; want && i < (size_t)jw * jh * 3; i++) {
                double dd = fabs((double)im.data[i] - want[i]);
                if (dd > maxd) maxd = dd;
            }
            CHECK(want && maxd <= tol, "jitter %s %g: max difference %.3g vs torchvision (tolerance %g)", a, factor, maxd, tol);
            kit_image_free(&im);
            free(want);
            njitter++;
        }
    }
    fclose(man);
    CHECK(nresize_u8 == 16 && nresize_f == 16 && ndecode == 5 && njitter == 9, "all fixtures used: %d %d %d %d", nresize_u8, nresize_f,
          ndecode, njitter);
    free(src);
    free(srcf);
    free(jsrc);
}

static void test_resize_properties(void) {
    unsigned char flat[7 * 5 * 2], out[19 * 3 * 2];
    float ramp[16], r4[4];
    int i;
    for (i = 0; i < 7 * 5 * 2; i++) flat[i] = (unsigned char)(i % 2 ? 200 : 17);
    CHECK(kit_resize_u8(flat, 7, 5, 2, out, 19, 3, KIT_FILTER_BICUBIC) == 0, "2-channel resize");
    for (i = 0; i < 19 * 3 * 2; i++) if (out[i] != (i % 2 ? 200 : 17)) break;
    CHECK(i == 19 * 3 * 2, "a flat image stays flat (weights sum to one)");
    for (i = 0; i < 16; i++) ramp[i] = (float)i;
    CHECK(kit_resize_f32(ramp, 16, 1, 1, r4, 4, 1, KIT_FILTER_BILINEAR) == 0, "ramp");
    /* 4x downscale with a triangle 4 px wide on each side: the box centres 1.5, 5.5, ... are kept
       inside (the edges clip the kernel, so only the middle two are exact). */
    CHECK_CLOSE(r4[1], 5.5, 1e-5, 0, "antialiased ramp middle");
    CHECK_CLOSE(r4[2], 9.5, 1e-5, 0, "antialiased ramp middle");
    CHECK(kit_resize_u8(flat, 0, 5, 2, out, 3, 3, KIT_FILTER_BILINEAR) == KIT_ERR_ARG, "zero size refused");
    {
        kit_image a, b;
        kit_image_alloc(&a, 4, 4, 3);
        for (i = 0; i < 48; i++) a.data[i] = (float)(i % 5) / 4.0f;
        CHECK(kit_image_resize(&a, &b, 4, 4, KIT_FILTER_BICUBIC) == 0 && !memcmp(a.data, b.data, 48 * sizeof(float)), "same size copies");
        kit_image_free(&a);
        kit_image_free(&b);
    }
}

static void test_normalize(void) {
    kit_image im;
    float chw[2 * 3 * 3];
    int i;
    kit_image_alloc(&im, 3, 2, 3);
    for (i = 0; i < 6; i++) { im.data[3 * i] = 0.485f; im.data[3 * i + 1] = 0.456f + 0.224f; im.data[3 * i + 2] = (float)i / 5; }
    kit_image_normalize_chw(&im, kit_imagenet_mean, kit_imagenet_std, chw);
    CHECK_CLOSE(chw[0], 0, 1e-6, 0, "R at the mean is 0");
    CHECK_CLOSE(chw[6 + 3], 1, 1e-6, 0, "G one std above is 1");
    CHECK_CLOSE(chw[12 + 5], (1 - 0.406) / 0.225, 1e-5, 0, "B plane, last pixel (CHW order)");
    CHECK(kit_imagenet_mean[1] == 0.456f && kit_imagenet_std[2] == 0.225f, "constants");
    kit_image_free(&im);
}

static void test_jitter(void) {
    kit_image a, b;
    kit_jitter j = {0.4f, 0.4f, 0.4f, 0.1f}, none = {0, 0, 0, 0};
    kit_rng r1, r2;
    int i, inrange = 1, differs = 0;
    kit_image_alloc(&a, 8, 6, 3);
    kit_image_alloc(&b, 8, 6, 3);
    for (i = 0; i < 144; i++) a.data[i] = (float)((i * 37) % 101) / 100.0f;
    memcpy(b.data, a.data, 144 * sizeof(float));
    kit_rng_seed(&r1, 7);
    kit_color_jitter(&b, &none, &r1);
    CHECK(!memcmp(a.data, b.data, 144 * sizeof(float)), "all-zero jitter is the identity");
    memcpy(b.data, a.data, 144 * sizeof(float));
    kit_rng_seed(&r1, 7);
    kit_color_jitter(&a, &j, &r1);
    kit_rng_seed(&r2, 7);
    kit_color_jitter(&b, &j, &r2);
    CHECK(!memcmp(a.data, b.data, 144 * sizeof(float)), "same seed, same jitter");
    kit_color_jitter(&b, &j, &r2);
    for (i = 0; i < 144; i++) {
        if (b.data[i] < 0 || b.data[i] > 1) inrange = 0;
        if (a.data[i] != b.data[i]) differs = 1;
    }
    CHECK(inrange && differs, "results stay in [0, 1], a new draw differs");
    /* hue by a third of the wheel turns pure red into pure green */
    a.data[0] = 1; a.data[1] = 0; a.data[2] = 0;
    kit_adjust_hue(&a, 1.0f / 3.0f);
    CHECK(fabsf(a.data[0]) < 1e-5f && fabsf(a.data[1] - 1) < 1e-5f && fabsf(a.data[2]) < 1e-5f, "red -> green: %g %g %g", a.data[0],
          a.data[1], a.data[2]);
    kit_image_free(&a);
    kit_image_free(&b);
}

static void test_png_roundtrip(void) {
    const char *p = "/tmp/kit_image_rt.png";
    unsigned char px[5 * 3 * 4], *back;
    kit_image im, im2;
    kit_err err;
    int w, h, c, i, same;
    for (c = 1; c <= 4; c++) {
        for (i = 0; i < 5 * 3 * c; i++) px[i] = (unsigned char)(i * 17 + c);
        CHECK(kit_png_write_u8(p, px, 5, 3, c, &err) == 0, "write %d channels: %s", c, err.msg);
        CHECK(kit_image_load_u8(p, c, &back, &w, &h, &err) == 0, "read back: %s", err.msg);
        CHECK(back && w == 5 && h == 3 && !memcmp(back, px, (size_t)5 * 3 * c), "%d-channel PNG round trip is exact", c);
        free(back);
    }
    kit_image_alloc(&im, 6, 4, 3);
    for (i = 0; i < 72; i++) im.data[i] = (float)i / 71.0f * 1.2f - 0.1f; /* some outside [0, 1]: clamped */
    CHECK(kit_image_write_png(p, &im, &err) == 0, "write float: %s", err.msg);
    CHECK(kit_image_load(p, &im2, &err) == 0 && im2.width == 6 && im2.height == 4 && im2.channels == 3, "load float");
    for (i = 0, same = 1; i < 72; i++) {
        float v = im.data[i] < 0 ? 0 : (im.data[i] > 1 ? 1 : im.data[i]);
        if (fabsf(im2.data[i] - v) > 0.5f / 255.0f + 1e-6f) same = 0;
    }
    CHECK(same, "float round trip within half a level");
    kit_image_free(&im);
    kit_image_free(&im2);
    {
        unsigned char *png;
        size_t len;
        CHECK(kit_png_encode_u8(px, 5, 3, 3, &png, &len) == 0 && len > 8 && png[1] == 'P', "encode to memory");
        CHECK(kit_image_decode_u8(png, len, "mem", 3, &back, &w, &h, &err) == 0 && w == 5 && !memcmp(back, px, 45), "decode from memory");
        free(back);
        free(png);
    }
    remove(p);
}

static void expect_load_error(const char *path, int code, const char *want) {
    kit_image im;
    kit_err err;
    int rc = kit_image_load(path, &im, &err);
    CHECK(rc == code, "%s: code %d, expected %d (%s)", path, rc, code, rc ? err.msg : "loaded");
    CHECK(rc && strstr(err.msg, want), "%s: message \"%s\" lacks \"%s\"", path, rc ? err.msg : "", want);
    CHECK(im.data == NULL, "no image on error");
    if (!rc) kit_image_free(&im);
}

static void test_errors(void) {
    unsigned char *b;
    size_t n;
    kit_err err;
    unsigned char px[12] = {0};
    expect_load_error("/nonexistent/x.png", KIT_ERR_IO, "cannot open image '/nonexistent/x.png': No such file or directory");
    expect_load_error("/tmp", KIT_ERR_IO, "cannot read image '/tmp': Is a directory");
    write_bytes("/tmp/kit_empty.png", "", 0);
    expect_load_error("/tmp/kit_empty.png", KIT_ERR_TRUNCATED, "image '/tmp/kit_empty.png' is empty (0 bytes)");
    write_bytes("/tmp/kit_text.png", "hello, world\n", 13);
    expect_load_error("/tmp/kit_text.png", KIT_ERR_FORMAT, "'/tmp/kit_text.png' is not a PNG or JPEG image (it starts with bytes 68 65 6c 6c)");
    b = test_read_file(fpath("src.png"), &n);
    CHECK(b != NULL, "src.png");
    if (!b) return;
    write_bytes("/tmp/kit_trunc.png", b, n / 2);
    expect_load_error("/tmp/kit_trunc.png", KIT_ERR_TRUNCATED, "truncated PNG '/tmp/kit_trunc.png': the file ends inside its 'IDAT' chunk");
    write_bytes("/tmp/kit_trunc.png", b, n - 12); /* everything but IEND */
    expect_load_error("/tmp/kit_trunc.png", KIT_ERR_TRUNCATED, "truncated PNG '/tmp/kit_trunc.png': no IEND chunk");
    write_bytes("/tmp/kit_trunc.png", b, 5);
    expect_load_error("/tmp/kit_trunc.png", KIT_ERR_TRUNCATED, "truncated PNG '/tmp/kit_trunc.png': only 5 bytes");
    b[16] = b[17] = b[18] = b[19] = 0; /* IHDR width 0: structurally whole, undecodable */
    write_bytes("/tmp/kit_bad.png", b, n);
    expect_load_error("/tmp/kit_bad.png", KIT_ERR_FORMAT, "cannot decode PNG '/tmp/kit_bad.png': ");
    free(b);
    b = test_read_file(fpath("src.jpg"), &n);
    CHECK(b != NULL, "src.jpg");
    if (!b) return;
    write_bytes("/tmp/kit_trunc.jpg", b, n * 2 / 3);
    expect_load_error("/tmp/kit_trunc.jpg", KIT_ERR_TRUNCATED, "truncated JPEG '/tmp/kit_trunc.jpg': no end-of-image marker");
    write_bytes("/tmp/kit_trunc.jpg", b, n - 2); /* only the EOI marker missing */
    expect_load_error("/tmp/kit_trunc.jpg", KIT_ERR_TRUNCATED, "truncated JPEG");
    free(b);
    CHECK(kit_png_write_u8("/nonexistent/dir/out.png", px, 2, 2, 3, &err) == KIT_ERR_IO &&
              !strcmp(err.msg, "cannot create '/nonexistent/dir/out.png': No such file or directory"), "write error: %s", err.msg);
    remove("/tmp/kit_empty.png"); remove("/tmp/kit_text.png"); remove("/tmp/kit_trunc.png"); remove("/tmp/kit_bad.png");
    remove("/tmp/kit_trunc.jpg");
}

int main(int argc, char **argv) {
    if (argc > 1) fixdir = argv[1];
    test_fixtures();
    test_resize_properties();
    test_normalize();
    test_jitter();
    test_png_roundtrip();
    test_errors();
    return test_summary();
}
