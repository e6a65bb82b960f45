/* kit_tblog.h - TensorBoard event files, written by hand (no TensorFlow, no protobuf library).

       kit_err err;
       kit_tb *tb = kit_tb_open("runs/exp1", &err);        // NULL + err.msg on failure
       kit_tb_scalar(tb, "loss/train", 0.25, step);
       kit_tb_image_rgb(tb, "samples/pred", rgb_u8, height, width, 3, step);  // PNG-encoded
       kit_tb_text(tb, "config", yaml_text, 0);
       kit_tb_flush(tb);                                    // make everything so far visible to readers
       kit_tb_close(tb);

   File: <logdir>/events.out.tfevents.<unix time, 10 digits>.<hostname>.<pid>.<n>, the name TensorBoard's
   own Python writer uses (tensorboard/summary/writer/event_file_writer.py); the pid and counter keep
   two writers started in the same second from colliding. TensorBoard finds any file whose name
   contains "tfevents".

   Framing: a TFRecord file (tensorflow/core/lib/io/record_writer.cc): every record is
       uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
   where crc32c is CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final xor 0xFFFFFFFF)
   and masked(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (tensorflow/core/lib/hash/crc32c.h, Mask()).

   Data: one tensorflow.Event protobuf per record (tensorboard/compat/proto/event.proto), the first one
   carrying file_version "brain.Event:2". Fields used, with protobuf wire types
   (https://protobuf.dev/programming-guides/encoding/):
     Event          wall_time = 1 (double, fixed64), step = 2 (int64, varint), file_version = 3 (string),
                    summary = 5 (Summary)
     Summary        value = 1 (repeated Summary.Value)                                     [summary.proto]
     Summary.Value  tag = 1 (string), simple_value = 2 (float, fixed32), image = 4 (Summary.Image),
                    metadata = 9 (SummaryMetadata), tensor = 8 (TensorProto)
     Summary.Image  height = 1, width = 2, colorspace = 3 (int32 varints; 1 gray, 2 gray+alpha,
                    3 RGB, 4 RGBA), encoded_image_string = 4 (bytes, PNG here)
     SummaryMetadata plugin_data = 1 (PluginData{plugin_name = 1, content = 2})
     TensorProto    dtype = 1 (DT_STRING = 7), tensor_shape = 2 (empty: a scalar), string_val = 8
   Scalars use the legacy simple_value, which TensorBoard migrates to its scalar plugin on load
   (tensorboard/data_compat.py); text uses the "text" plugin's string tensor.

   Writes are buffered; kit_tb_flush() pushes them to the file. A kit_tb is not thread-safe: log from
   one thread (the training loop). */
#ifndef KIT_TBLOG_H
#define KIT_TBLOG_H
#include "kit_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kit_tb kit_tb;

/* Creates logdir (and its parents) if needed and a new event file in it. */
kit_tb *kit_tb_open(const char *logdir, kit_err *err);
const char *kit_tb_path(const kit_tb *tb);
int kit_tb_scalar(kit_tb *tb, const char *tag, double value, long long step);
/* An image already encoded as PNG (or JPEG); height/width/channels describe it for the viewer. */
int kit_tb_image_encoded(kit_tb *tb, const char *tag, const void *data, size_t len, int height, int width,
                         int channels, long long step);
/* Interleaved 8-bit pixels (row-major, channels 1, 2, 3 or 4), PNG-encoded here. */
int kit_tb_image_rgb(kit_tb *tb, const char *tag, const unsigned char *pixels, int height, int width,
                     int channels, long long step);
/* A string for TensorBoard's Text tab (rendered as Markdown), e.g. the effective config. */
int kit_tb_text(kit_tb *tb, const char *tag, const char *text, long long step);
int kit_tb_flush(kit_tb *tb);
/* Flushes, closes and frees; returns nonzero if any write failed. tb may be NULL. */
int kit_tb_close(kit_tb *tb);

/* CRC-32C of data, and TFRecord's masked form; exposed for the tests. */
uint32_t kit_crc32c(const void *data, size_t n);
uint32_t kit_crc32c_masked(const void *data, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* KIT_TBLOG_H */

#if defined(KIT_IMPLEMENTATION) && !defined(KIT_TBLOG_IMPLEMENTED)
#define KIT_TBLOG_IMPLEMENTED
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>
#ifndef KIT_STB_IMAGE_WRITE_HEADER
#define KIT_STB_IMAGE_WRITE_HEADER <stb/stb_image_write.h> /* Debian libstb-dev; override for a vendored copy */
#endif
#include KIT_STB_IMAGE_WRITE_HEADER

struct kit_tb {
    FILE *f;
    char path[4096];
    int failed;
};

/* ---- CRC-32C ------------------------------------------------------------------------------------ */

static uint32_t kit__crc32c_table[256];
static int kit__crc32c_ready;

static void kit__crc32c_init(void) {
    /* Table for the reflected Castagnoli polynomial 0x82F63B78 (RFC 3720 appendix B.4). Building it
       twice from two threads writes the same values, so no lock is needed. */
    uint32_t i, k, c;
    for (i = 0; i < 256; i++) {
        c = i;
        for (k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        kit__crc32c_table[i] = c;
    }
    kit__crc32c_ready = 1;
}

uint32_t kit_crc32c(const void *data, size_t n) {
    const unsigned char *p = (const unsigned char *)data;
    uint32_t c = 0xFFFFFFFFu;
    if (!kit__crc32c_ready) kit__crc32c_init();
    while (n--) c = kit__crc32c_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t kit_crc32c_masked(const void *data, size_t n) {
    uint32_t c = kit_crc32c(data, n);
    return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

/* ---- protobuf encoding ------------------------------------------------------------------------- */

typedef struct { unsigned char *p; size_t len, cap; int oom; } kit__pb;
#define KIT__PB_EMPTY {NULL, 0, 0, 0} /* every field named: C++ -Wextra warns on {0} */

static void kit__pb_put(kit__pb *b, const void *data, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = (b->len + n) * 2 + 64;
        unsigned char *p = (unsigned char *)realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void kit__pb_varint(kit__pb *b, uint64_t v) {
    unsigned char buf[10];
    size_t n = 0;
    do { /* 7 bits per byte, least significant group first, high bit = "more follows" */
        buf[n] = (unsigned char)(v & 0x7F);
        v >>= 7;
        if (v) buf[n] |= 0x80;
        n++;
    } while (v);
    kit__pb_put(b, buf, n);
}

/* wire types: 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32 */
static void kit__pb_key(kit__pb *b, unsigned field, unsigned wire) { kit__pb_varint(b, (uint64_t)(field << 3 | wire)); }

static void kit__pb_bytes(kit__pb *b, unsigned field, const void *data, size_t n) {
    kit__pb_key(b, field, 2);
    kit__pb_varint(b, n);
    kit__pb_put(b, data, n);
}

static void kit__pb_msg(kit__pb *b, unsigned field, const kit__pb *sub) {
    if (sub->oom) b->oom = 1;
    kit__pb_bytes(b, field, sub->p, sub->len);
}

static void kit__pb_u64le(kit__pb *b, uint64_t v) {
    unsigned char buf[8];
    int i;
    for (i = 0; i < 8; i++) buf[i] = (unsigned char)(v >> (8 * i));
    kit__pb_put(b, buf, 8);
}

static void kit__pb_double(kit__pb *b, unsigned field, double v) {
    uint64_t bits;
    memcpy(&bits, &v, 8); /* IEEE-754 binary64, written little-endian */
    kit__pb_key(b, field, 1);
    kit__pb_u64le(b, bits);
}

static void kit__pb_float(kit__pb *b, unsigned field, float v) {
    uint32_t bits;
    unsigned char buf[4];
    int i;
    memcpy(&bits, &v, 4);
    kit__pb_key(b, field, 5);
    for (i = 0; i < 4; i++) buf[i] = (unsigned char)(bits >> (8 * i));
    kit__pb_put(b, buf, 4);
}

static double kit__wall_time(void) {
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + 1e-6 * (double)tv.tv_usec;
}

/* Frames one serialized Event as a TFRecord and appends it to the file. */
static int kit__tb_record(kit_tb *tb, const kit__pb *event) {
    unsigned char hdr[12], tail[4];
    uint32_t c;
    int i;
    if (event->oom) { tb->failed = 1; return KIT_ERR_NOMEM; }
    for (i = 0; i < 8; i++) hdr[i] = (unsigned char)((uint64_t)event->len >> (8 * i));
    c = kit_crc32c_masked(hdr, 8);
    for (i = 0; i < 4; i++) hdr[8 + i] = (unsigned char)(c >> (8 * i));
    c = kit_crc32c_masked(event->p, event->len);
    for (i = 0; i < 4; i++) tail[i] = (unsigned char)(c >> (8 * i));
    if (fwrite(hdr, 1, 12, tb->f) != 12 || fwrite(event->p, 1, event->len, tb->f) != event->len ||
        fwrite(tail, 1, 4, tb->f) != 4) {
        tb->failed = 1;
        return KIT_ERR_IO;
    }
    return KIT_OK;
}

/* Wraps one Summary.Value in an Event and writes it. */
static int kit__tb_write_value(kit_tb *tb, const kit__pb *value, long long step) {
    kit__pb summary = KIT__PB_EMPTY, event = KIT__PB_EMPTY;
    int rc;
    kit__pb_msg(&summary, 1, value);
    kit__pb_double(&event, 1, kit__wall_time());
    kit__pb_key(&event, 2, 0);
    kit__pb_varint(&event, (uint64_t)step); /* int64: negative values take 10 bytes, as protobuf says */
    kit__pb_msg(&event, 5, &summary);
    rc = kit__tb_record(tb, &event);
    free(summary.p);
    free(event.p);
    return rc;
}

static int kit__mkdirs(const char *dir, kit_err *err) {
    char path[4096];
    size_t i, n = strlen(dir);
    if (n == 0 || n >= sizeof path) return kit_fail(err, KIT_ERR_ARG, "bad log directory '%s'", dir);
    memcpy(path, dir, n + 1);
    for (i = 1; i <= n; i++) {
        if (path[i] == '/' || path[i] == 0) {
            char saved = path[i];
            path[i] = 0;
            struct stat st;
            if (mkdir(path, 0777) != 0 && errno != EEXIST)
                return kit_fail(err, KIT_ERR_IO, "cannot create log directory '%s': %s", path, strerror(errno));
            if (stat(path, &st) == 0 && !S_ISDIR(st.st_mode))
                return kit_fail(err, KIT_ERR_IO, "cannot create log directory '%s': '%s' exists and is not a directory", dir, path);
            path[i] = saved;
        }
    }
    return KIT_OK;
}

kit_tb *kit_tb_open(const char *logdir, kit_err *err) {
    static int counter;
    char host[256];
    kit_tb *tb;
    kit__pb event = KIT__PB_EMPTY;
    int fd, tries;
    if (!logdir) { kit_fail(err, KIT_ERR_ARG, "kit_tb_open: no log directory"); return NULL; }
    if (kit__mkdirs(logdir, err)) return NULL;
    tb = (kit_tb *)calloc(1, sizeof *tb);
    if (!tb) { kit_fail(err, KIT_ERR_NOMEM, "out of memory"); return NULL; }
    if (gethostname(host, sizeof host) != 0) strcpy(host, "localhost");
    host[sizeof host - 1] = 0;
    for (tries = 0; tries < 100; tries++) {
        snprintf(tb->path, sizeof tb->path, "%s/events.out.tfevents.%010ld.%s.%ld.%d", logdir, (long)kit__wall_time(),
                 host, (long)getpid(), counter++);
        fd = open(tb->path, O_WRONLY | O_CREAT | O_EXCL, 0666); /* never clobber another run's file */
        if (fd >= 0 || errno != EEXIST) break;
    }
    if (fd < 0 || !(tb->f = fdopen(fd, "wb"))) {
        kit_fail(err, KIT_ERR_IO, "cannot create event file '%s': %s", tb->path, strerror(errno));
        if (fd >= 0) close(fd);
        free(tb);
        return NULL;
    }
    kit__pb_double(&event, 1, kit__wall_time());
    kit__pb_bytes(&event, 3, "brain.Event:2", 13);
    if (kit__tb_record(tb, &event) || fflush(tb->f)) {
        kit_fail(err, KIT_ERR_IO, "cannot write event file '%s': %s", tb->path, strerror(errno));
        fclose(tb->f);
        free(tb);
        free(event.p);
        return NULL;
    }
    free(event.p);
    return tb;
}

const char *kit_tb_path(const kit_tb *tb) { return tb->path; }

int kit_tb_scalar(kit_tb *tb, const char *tag, double value, long long step) {
    kit__pb v = KIT__PB_EMPTY;
    int rc;
    kit__pb_bytes(&v, 1, tag, strlen(tag));
    kit__pb_float(&v, 2, (float)value);
    rc = kit__tb_write_value(tb, &v, step);
    free(v.p);
    return rc;
}

int kit_tb_image_encoded(kit_tb *tb, const char *tag, const void *data, size_t len, int height, int width,
                         int channels, long long step) {
    kit__pb img = KIT__PB_EMPTY, v = KIT__PB_EMPTY;
    int rc;
    if (channels < 1 || channels > 4 || height <= 0 || width <= 0) return KIT_ERR_ARG;
    kit__pb_key(&img, 1, 0); kit__pb_varint(&img, (uint64_t)height);
    kit__pb_key(&img, 2, 0); kit__pb_varint(&img, (uint64_t)width);
    kit__pb_key(&img, 3, 0); kit__pb_varint(&img, (uint64_t)channels); /* colorspace = channel count */
    kit__pb_bytes(&img, 4, data, len);
    kit__pb_bytes(&v, 1, tag, strlen(tag));
    kit__pb_msg(&v, 4, &img);
    rc = kit__tb_write_value(tb, &v, step);
    free(img.p);
    free(v.p);
    return rc;
}

static void kit__png_sink(void *ctx, void *data, int size) { kit__pb_put((kit__pb *)ctx, data, (size_t)size); }

int kit_tb_image_rgb(kit_tb *tb, const char *tag, const unsigned char *pixels, int height, int width,
                     int channels, long long step) {
    kit__pb png = KIT__PB_EMPTY;
    int rc;
    if (channels < 1 || channels > 4 || height <= 0 || width <= 0) return KIT_ERR_ARG;
    if (!stbi_write_png_to_func(kit__png_sink, &png, width, height, channels, pixels, width * channels) || png.oom) {
        free(png.p);
        return KIT_ERR_NOMEM;
    }
    rc = kit_tb_image_encoded(tb, tag, png.p, png.len, height, width, channels, step);
    free(png.p);
    return rc;
}

int kit_tb_text(kit_tb *tb, const char *tag, const char *text, long long step) {
    kit__pb v = KIT__PB_EMPTY, meta = KIT__PB_EMPTY, plugin = KIT__PB_EMPTY, tensor = KIT__PB_EMPTY, shape = KIT__PB_EMPTY;
    int rc;
    kit__pb_bytes(&plugin, 1, "text", 4);
    kit__pb_msg(&meta, 1, &plugin);
    kit__pb_key(&tensor, 1, 0);
    kit__pb_varint(&tensor, 7); /* DT_STRING (tensorboard/compat/proto/types.proto) */
    kit__pb_msg(&tensor, 2, &shape); /* no dims: a scalar */
    kit__pb_bytes(&tensor, 8, text, strlen(text));
    kit__pb_bytes(&v, 1, tag, strlen(tag));
    kit__pb_msg(&v, 9, &meta);
    kit__pb_msg(&v, 8, &tensor);
    rc = kit__tb_write_value(tb, &v, step);
    free(v.p); free(meta.p); free(plugin.p); free(tensor.p); free(shape.p);
    return rc;
}

int kit_tb_flush(kit_tb *tb) {
    if (fflush(tb->f) != 0) tb->failed = 1;
    return tb->failed ? KIT_ERR_IO : KIT_OK;
}

int kit_tb_close(kit_tb *tb) {
    int rc;
    if (!tb) return KIT_OK;
    kit_tb_flush(tb);
    if (fclose(tb->f) != 0) tb->failed = 1;
    rc = tb->failed ? KIT_ERR_IO : KIT_OK;
    free(tb);
    return rc;
}
#endif /* KIT_IMPLEMENTATION */
