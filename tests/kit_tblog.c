/* tests/kit_tblog.c - TensorBoard event files: CRC-32C test vectors, a log written and read back here
   record by record (framing, checksums, protobuf fields). The same log is then read by the real
   tensorboard package in tests/kit_check_tensorboard.py (run by tests/kit_run.sh), which needs the
   values below: keep both in step.

   usage: kit_tblog [logdir]   (default /tmp/kit_tblog_test; any old event files there are removed) */
#define KIT_IMPLEMENTATION
#include "kit.h"
#include "test.h"
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rd_u64(const unsigned char *p) {
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) v = v << 8 | p[i];
    return v;
}
static uint32_t rd_u32(const unsigned char *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void test_crc(void) {
    unsigned char buf[32];
    int i;
    /* RFC 3720 appendix B.4 (iSCSI) CRC-32C examples, and the usual "123456789" check value. */
    CHECK(kit_crc32c("123456789", 9) == 0xE3069283u, "check value %08x", kit_crc32c("123456789", 9));
    memset(buf, 0, 32);
    CHECK(kit_crc32c(buf, 32) == 0x8A9136AAu, "32 zeros");
    memset(buf, 0xFF, 32);
    CHECK(kit_crc32c(buf, 32) == 0x62A8AB43u, "32 0xFF");
    for (i = 0; i < 32; i++) buf[i] = (unsigned char)i;
    CHECK(kit_crc32c(buf, 32) == 0x46DD794Eu, "0..31");
    CHECK(kit_crc32c("", 0) == 0, "empty");
    /* masked = rotate right 15 + 0xa282ead8 */
    {
        uint32_t c = kit_crc32c("123456789", 9);
        CHECK(kit_crc32c_masked("123456789", 9) == (((c >> 15) | (c << 17)) + 0xa282ead8u), "mask");
    }
}

static int find_event_file(const char *dir, char *out, size_t n) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int count = 0;
    if (!d) return 0;
    while ((e = readdir(d)))
        if (strstr(e->d_name, "events.out.tfevents.")) {
            snprintf(out, n, "%s/%s", dir, e->d_name);
            count++;
        }
    closedir(d);
    return count;
}

static void clean_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[4200];
    if (!d) return;
    while ((e = readdir(d)))
        if (strstr(e->d_name, "events.out.tfevents.")) {
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            remove(p);
        }
    closedir(d);
}

static int contains(const unsigned char *hay, size_t n, const void *needle, size_t m) {
    size_t i;
    for (i = 0; i + m <= n; i++) if (!memcmp(hay + i, needle, m)) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "/tmp/kit_tblog_test";
    kit_err err;
    kit_tb *tb;
    unsigned char rgb[6 * 8 * 3], gray[5 * 4], *file;
    char path[4200];
    size_t n, pos = 0;
    int step, x, y, records = 0, crc_ok = 1, nfiles;

    test_crc();
    clean_dir(dir);
    tb = kit_tb_open(dir, &err);
    CHECK(tb != NULL, "open: %s", err.msg);
    if (!tb) return test_summary();
    CHECK(strstr(kit_tb_path(tb), "/events.out.tfevents.") != NULL, "file name %s", kit_tb_path(tb));
    for (step = 0; step < 10; step++) {
        CHECK(kit_tb_scalar(tb, "loss/train", 1.0 / (step + 1), step) == 0, "scalar");
        CHECK(kit_tb_scalar(tb, "lr", 1e-3 * step, step) == 0, "scalar");
    }
    CHECK(kit_tb_scalar(tb, "memory/peak_mib", 12345.5, 1000000000000LL) == 0, "large step");
    for (y = 0; y < 6; y++)
        for (x = 0; x < 8; x++) {
            rgb[(y * 8 + x) * 3 + 0] = (unsigned char)(x * 30);
            rgb[(y * 8 + x) * 3 + 1] = (unsigned char)(y * 40);
            rgb[(y * 8 + x) * 3 + 2] = 128;
        }
    CHECK(kit_tb_image_rgb(tb, "samples/gradient", rgb, 6, 8, 3, 5) == 0, "image");
    for (y = 0; y < 4; y++)
        for (x = 0; x < 5; x++) gray[y * 5 + x] = (unsigned char)(x * 50 + y);
    CHECK(kit_tb_image_rgb(tb, "samples/gray", gray, 4, 5, 1, 6) == 0, "gray image");
    CHECK(kit_tb_text(tb, "config", "training:\n  batch_size: 4\n", 0) == 0, "text");
    CHECK(kit_tb_image_rgb(tb, "bad", rgb, 0, 8, 3, 0) == KIT_ERR_ARG, "bad image size refused");
    CHECK(kit_tb_flush(tb) == 0, "flush");

    /* flushed data is on disk before close */
    nfiles = find_event_file(dir, path, sizeof path);
    CHECK(nfiles == 1, "one event file, found %d", nfiles);
    file = test_read_file(path, &n);
    CHECK(file && n > 100, "flushed data visible before close (%lu bytes)", (unsigned long)n);
    free(file);
    CHECK(kit_tb_close(tb) == 0, "close");

    file = test_read_file(path, &n);
    while (file && pos + 12 <= n) {
        uint64_t len = rd_u64(file + pos);
        if (rd_u32(file + pos + 8) != kit_crc32c_masked(file + pos, 8)) crc_ok = 0;
        if (pos + 16 + len > n) { crc_ok = 0; break; }
        if (rd_u32(file + pos + 12 + len) != kit_crc32c_masked(file + pos + 12, (size_t)len)) crc_ok = 0;
        if (records == 0) {
            /* first event: wall_time (key 0x09 + 8 bytes) then file_version (key 0x1a, length 13) */
            CHECK(file[pos + 12] == 0x09 && file[pos + 21] == 0x1A && file[pos + 22] == 13 &&
                  !memcmp(file + pos + 23, "brain.Event:2", 13), "first record is the file version");
        }
        records++;
        pos += 16 + len;
    }
    CHECK(file && pos == n, "records tile the file exactly");
    CHECK(crc_ok, "every length and data CRC matches");
    CHECK(records == 1 + 20 + 1 + 2 + 1, "record count %d", records);
    {   /* protobuf spot checks: a Value's tag and simple_value 0.5f (step 1 of loss/train) */
        unsigned char want[] = {0x0A, 10, 'l', 'o', 's', 's', '/', 't', 'r', 'a', 'i', 'n', 0x15, 0x00, 0x00, 0x00, 0x3F};
        unsigned char step_big[] = {0x10, 0x80, 0xA0, 0x94, 0xA5, 0x8D, 0x1D}; /* varint of 10^12 */
        unsigned char png_sig[] = {0x89, 'P', 'N', 'G'};
        CHECK(contains(file, n, want, sizeof want), "loss/train 0.5 encoded as tag + fixed32");
        CHECK(contains(file, n, step_big, sizeof step_big), "int64 step varint");
        CHECK(contains(file, n, png_sig, sizeof png_sig), "PNG payload present");
    }
    free(file);

    tb = kit_tb_open("/dev/null/sub", &err);
    CHECK(tb == NULL && !strcmp(err.msg, "cannot create log directory '/dev/null/sub': '/dev/null' exists and is not a directory"), "bad logdir: %s", err.msg);
    return test_summary();
}
