/* gen_data.c - a synthetic Part Location data set in seed 001's layout:

       <out>/<model>/<model>-whole.png      the assembled model
       <out>/<model>/<model>-<part>.png     one part alone, normalised to [-0.5, 0.5]
       <out>/<model>/<model>-<part>.json    {"model_name", "part_name", "translation": [3],
                                             "rotation": [1,0,0,0], "scale": [s,s,s]}

   A model is 2..5 primitives (axis-aligned boxes, ellipsoids, elliptic cylinders) of random size, place
   and colour; the whole model is normalised to [-0.5, 0.5] (largest bounding-box side 1, centred), as the
   seed's data. A part's label follows the seed's definition: the part normalised the same way (own
   bounding box centred, largest side 1) goes back into the whole by  p_whole = scale * p_part + translation,
   so translation is the part's bounding-box centre in whole coordinates and scale its largest side.

   Rendering: a small ray caster, 2x2 supersampled, Lambert + headlight shading on white. One view cannot
   show all three coordinates, so every image is a 2x2 sheet of orthographic views of the object, the
   same sheet for whole and part images: front (x right, y up), right side (-z right, y up), top (x right,
   -z up) and a three-quarter view. Each view maps the square [-0.6, 0.6]^2 to its quadrant.

   gen_data [--out data/images] [--models 64] [--size 224] [--part-size PX] [--seed 1] [--min-parts 2] [--max-parts 5]
            [--first 0] [--diag 1] [--min-visible 0.5]
   --part-size PX renders the part images at PX (default: --size). A part is one primitive on white: a 1024 px
   whole with 256 px parts takes a quarter of the time of all at 1024 px, and a training config that resizes
   the parts to data.part_image_size <= PX loses nothing.
   --min-visible V: a model is drawn again (up to 100 times) while one of its parts shows less than V of its own
   silhouette in the whole sheet (hidden inside or behind other parts: its place cannot be read off the image);
   0 keeps every draw (the data sets before 2026-12-06).
   --first F makes models F .. F+models-1 (model F is the same whichever run makes it): several processes
   can share the work, e.g. 8 processes with --models 125 --first 0, 125, 250 ... for 1000 models.
   --diag 1 writes the diagnostic set: one folder per part (model<M>_<k>) whose "whole" image is that part
   alone, in its place in the whole model; the label is where it is. No correspondence is needed, so it
   tells whether the network can read a position off the image at all. */
#define KIT_IMPLEMENTATION
#include "kit.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <errno.h>

enum { BOX, ELLIPSOID, CYLINDER };
static const char *kind_name[] = {"box", "ellipsoid", "cylinder"};

typedef struct { int kind; double c[3], h[3]; float rgb[3]; } prim;  /* centre, half extents, colour */
typedef struct { double r[3], u[3], d[3]; } view;                    /* screen right, up, view direction */

static void normalize3(double *v) { double n = sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); v[0] /= n; v[1] /= n; v[2] /= n; }
static void cross3(const double *a, const double *b, double *o) {
    o[0] = a[1] * b[2] - a[2] * b[1]; o[1] = a[2] * b[0] - a[0] * b[2]; o[2] = a[0] * b[1] - a[1] * b[0];
}

/* nearest hit of ray o + t d (t > 0) with primitive p: t and the unit normal, or 0 */
static int intersect(const prim *p, const double *o, const double *d, double *t_hit, double *n) {
    double q[3], t = INFINITY;
    int i;
    for (i = 0; i < 3; i++) q[i] = o[i] - p->c[i];
    if (p->kind == BOX) {                      /* slabs (Kay & Kajiya 1986) */
        double t0 = -INFINITY, t1 = INFINITY;
        int axis = 0;
        for (i = 0; i < 3; i++) {
            double a, b;
            if (fabs(d[i]) < 1e-12) { if (fabs(q[i]) > p->h[i]) return 0; continue; }
            a = (-p->h[i] - q[i]) / d[i]; b = (p->h[i] - q[i]) / d[i];
            if (a > b) { double s = a; a = b; b = s; }
            if (a > t0) { t0 = a; axis = i; }
            if (b < t1) t1 = b;
        }
        if (t0 > t1 || t0 <= 0) return 0;
        t = t0;
        n[0] = n[1] = n[2] = 0;
        n[axis] = d[axis] > 0 ? -1 : 1;
    } else if (p->kind == ELLIPSOID) {         /* unit sphere after dividing by the half extents */
        double A = 0, B = 0, C = -1, disc;
        for (i = 0; i < 3; i++) { double qi = q[i] / p->h[i], di = d[i] / p->h[i]; A += di * di; B += 2 * qi * di; C += qi * qi; }
        disc = B * B - 4 * A * C;
        if (disc < 0) return 0;
        t = (-B - sqrt(disc)) / (2 * A);
        if (t <= 0) return 0;
        for (i = 0; i < 3; i++) n[i] = (q[i] + t * d[i]) / (p->h[i] * p->h[i]);
        normalize3(n);
    } else {                                   /* elliptic cylinder along y: side, then the two caps */
        double qx = q[0] / p->h[0], qz = q[2] / p->h[2], dx = d[0] / p->h[0], dz = d[2] / p->h[2];
        double A = dx * dx + dz * dz, B = 2 * (qx * dx + qz * dz), C = qx * qx + qz * qz - 1, disc = B * B - 4 * A * C;
        if (A > 1e-12 && disc >= 0) {
            double ts = (-B - sqrt(disc)) / (2 * A), y = q[1] + ts * d[1];
            if (ts > 0 && fabs(y) <= p->h[1]) {
                t = ts;
                n[0] = (q[0] + t * d[0]) / (p->h[0] * p->h[0]); n[1] = 0; n[2] = (q[2] + t * d[2]) / (p->h[2] * p->h[2]);
                normalize3(n);
            }
        }
        if (fabs(d[1]) > 1e-12) {
            int s;
            for (s = -1; s <= 1; s += 2) {
                double tc = (s * p->h[1] - q[1]) / d[1], x, z;
                if (tc <= 0 || tc >= t) continue;
                x = (q[0] + tc * d[0]) / p->h[0]; z = (q[2] + tc * d[2]) / p->h[2];
                if (x * x + z * z <= 1) { t = tc; n[0] = 0; n[1] = s; n[2] = 0; }
            }
        }
        if (!isfinite(t)) return 0;
    }
    *t_hit = t;
    return 1;
}

/* the screen rectangle [u0, u1] x [v0, v1] of prim p's bounding box in view v (orthographic: the extremes
   of the 8 corners' projections), a little wider so rays that graze the border are still tested */
static void screen_box(const prim *p, const view *v, double box[4]) {
    int k, j;
    box[0] = box[2] = INFINITY; box[1] = box[3] = -INFINITY;
    for (k = 0; k < 8; k++) {
        double c[3], u = 0, w = 0;
        for (j = 0; j < 3; j++) c[j] = p->c[j] + ((k >> j) & 1 ? p->h[j] : -p->h[j]);
        for (j = 0; j < 3; j++) { u += c[j] * v->r[j]; w += c[j] * v->u[j]; }
        if (u < box[0]) box[0] = u;
        if (u > box[1]) box[1] = u;
        if (w < box[2]) box[2] = w;
        if (w > box[3]) box[3] = w;
    }
    box[0] -= 1e-6; box[1] += 1e-6; box[2] -= 1e-6; box[3] += 1e-6;
}

/* the 2x2 sheet of views of prims[0..n) into rgb (size x size x 3, u8). A ray is intersected only with the
   primitives whose screen rectangle holds it (the image is mostly background: ~10x faster at 1024 px,
   the same pixels). */
static void render(const prim *prims, int n, const view *views, int size, unsigned char *rgb, long *hits) {
    const double light[3] = {0.40, 0.80, 0.45}, half = 0.6;
    int half_px = size / 2;
    int y, k0, q0;
    double boxes[4][16][4];
    for (q0 = 0; q0 < 4; q0++)
        for (k0 = 0; k0 < n; k0++) screen_box(&prims[k0], &views[q0], boxes[q0][k0]);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 4)
#endif
    for (y = 0; y < size; y++) {
        int x;
        for (x = 0; x < size; x++) {
            int qv = (x >= half_px) + 2 * (y >= half_px), sx, sy, k, c;
            const view *v = &views[qv];
            double acc[3] = {0, 0, 0}, L[3] = {light[0], light[1], light[2]};
            int qx = x - (qv & 1) * half_px, qy = y - (qv >> 1) * half_px;
            normalize3(L);
            for (sy = 0; sy < 2; sy++)
                for (sx = 0; sx < 2; sx++) {
                    double su = ((qx + 0.25 + 0.5 * sx) / half_px * 2 - 1) * half;
                    double sv = (1 - (qy + 0.25 + 0.5 * sy) / half_px * 2) * half;
                    double o[3], best = INFINITY, nb[3] = {0, 0, 0}, col[3] = {1, 1, 1};
                    int hit = -1;
                    for (k = 0; k < 3; k++) o[k] = su * v->r[k] + sv * v->u[k] - 5 * v->d[k];
                    for (k = 0; k < n; k++) {
                        double t, nn[3];
                        const double *bx = boxes[qv][k];
                        if (su < bx[0] || su > bx[1] || sv < bx[2] || sv > bx[3]) continue;
                        if (intersect(&prims[k], o, v->d, &t, nn) && t < best) {
                            best = t; hit = k; nb[0] = nn[0]; nb[1] = nn[1]; nb[2] = nn[2];
                        }
                    }
                    if (hit >= 0 && hits) {
#ifdef _OPENMP
#pragma omp atomic
#endif
                        hits[hit]++;
                    }
                    if (hit >= 0) {
                        double lam = nb[0] * L[0] + nb[1] * L[1] + nb[2] * L[2];
                        double head = -(nb[0] * v->d[0] + nb[1] * v->d[1] + nb[2] * v->d[2]);
                        double sh = 0.25 + 0.45 * (lam > 0 ? lam : 0) + 0.30 * (head > 0 ? head : 0);
                        for (c = 0; c < 3; c++) col[c] = prims[hit].rgb[c] * sh;
                    }
                    for (c = 0; c < 3; c++) acc[c] += col[c] / 4;
                }
            /* a thin grey frame separates the four views */
            if (qx == 0 || qy == 0 || qx == half_px - 1 || qy == half_px - 1) acc[0] = acc[1] = acc[2] = 0.8;
            for (c = 0; c < 3; c++) {
                double s = acc[c] < 0 ? 0 : acc[c] > 1 ? 1 : acc[c];
                rgb[((size_t)y * size + x) * 3 + c] = (unsigned char)(s * 255 + 0.5);
            }
        }
    }
}

static void hsv_to_rgb(double h, double s, double v, float *rgb) {
    double f = h * 6 - floor(h * 6), p = v * (1 - s), q = v * (1 - f * s), t = v * (1 - (1 - f) * s);
    double r, g, b;
    switch ((int)floor(h * 6) % 6) {
    case 0: r = v; g = t; b = p; break;
    case 1: r = q; g = v; b = p; break;
    case 2: r = p; g = v; b = t; break;
    case 3: r = p; g = q; b = v; break;
    case 4: r = t; g = p; b = v; break;
    default: r = v; g = p; b = q; break;
    }
    rgb[0] = (float)r; rgb[1] = (float)g; rgb[2] = (float)b;
}

static void mkdir_p(const char *path) {
    char buf[1024];
    size_t i, n = strlen(path);
    if (n >= sizeof buf) { fprintf(stderr, "gen_data: path too long\n"); exit(1); }
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++)
        if (buf[i] == '/' || buf[i] == 0) {
            char ch = buf[i];
            buf[i] = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST) { perror(buf); exit(1); }
            buf[i] = ch;
        }
}

static void write_png(const char *path, const unsigned char *rgb, int size) {
    kit_err err;
    if (kit_png_write_u8(path, rgb, size, size, 3, &err)) { fprintf(stderr, "gen_data: %s\n", err.msg); exit(1); }
}

/* 2..5 random primitives (count from [min_parts, max_parts]), the whole normalised to [-0.5, 0.5]: its
   bounding box centred, largest side 1. Returns the count. */
static int draw_model(kit_rng *rng, int min_parts, int max_parts, prim *prims) {
    int n = min_parts + (int)kit_rng_below(rng, (uint64_t)(max_parts - min_parts + 1)), k, j;
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY}, ext = 0, c0[3];
    double hue0 = kit_rng_uniform(rng);
    for (k = 0; k < n; k++) {
        prim *p = &prims[k];
        p->kind = (int)kit_rng_below(rng, 3);
        for (j = 0; j < 3; j++) { p->c[j] = kit_rng_range(rng, -0.5, 0.5); p->h[j] = kit_rng_range(rng, 0.06, 0.3); }
        /* hues spread around the wheel so parts of one model differ in colour */
        hsv_to_rgb(fmod(hue0 + (double)k / n + kit_rng_range(rng, -0.05, 0.05) + 1.0, 1.0),
                   kit_rng_range(rng, 0.45, 0.9), kit_rng_range(rng, 0.7, 1.0), p->rgb);
        for (j = 0; j < 3; j++) {
            if (p->c[j] - p->h[j] < lo[j]) lo[j] = p->c[j] - p->h[j];
            if (p->c[j] + p->h[j] > hi[j]) hi[j] = p->c[j] + p->h[j];
        }
    }
    for (j = 0; j < 3; j++) { c0[j] = (lo[j] + hi[j]) / 2; if (hi[j] - lo[j] > ext) ext = hi[j] - lo[j]; }
    for (k = 0; k < n; k++)
        for (j = 0; j < 3; j++) { prims[k].c[j] = (prims[k].c[j] - c0[j]) / ext; prims[k].h[j] /= ext; }
    return n;
}

/* the smallest share, over the parts, of a part's own silhouette (rendered alone, in place) that stays
   visible in the whole sheet; on a fixed 48 px sheet, so the data set does not depend on --size */
static double least_visible(const prim *prims, int n, const view *views) {
    unsigned char rgb[48 * 48 * 3];
    long whole[16] = {0}, alone;
    double least = 1;
    int k;
    render(prims, n, views, 48, rgb, whole);
    for (k = 0; k < n; k++) {
        alone = 0;
        render(&prims[k], 1, views, 48, rgb, &alone);
        if (alone > 0 && (double)whole[k] / alone < least) least = (double)whole[k] / alone;
    }
    return least;
}

int main(int argc, char **argv) {
    const char *out = "data/images";
    int models = 64, size = 224, psize = 0, big, min_parts = 2, max_parts = 5, first = 0, diag = 0, i, m;
    double min_visible = 0.5;
    unsigned long long seed = 1;
    view views[4];
    unsigned char *rgb;
    long total_parts = 0, redrawn = 0;
    for (i = 1; i < argc; i += 2) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { fprintf(stderr, "gen_data: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "--out")) out = v;
        else if (!strcmp(a, "--models")) models = atoi(v);
        else if (!strcmp(a, "--size")) size = atoi(v);
        else if (!strcmp(a, "--part-size")) psize = atoi(v);
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--min-parts")) min_parts = atoi(v);
        else if (!strcmp(a, "--max-parts")) max_parts = atoi(v);
        else if (!strcmp(a, "--first")) first = atoi(v);
        else if (!strcmp(a, "--diag")) diag = atoi(v);
        else if (!strcmp(a, "--min-visible")) min_visible = atof(v);
        else { fprintf(stderr, "usage: gen_data [--out DIR] [--models N] [--size PX] [--part-size PX] [--seed S] [--min-parts A] [--max-parts B] [--first F] [--diag 1] [--min-visible V]\n"); return 2; }
    }
    if (!psize) psize = size;
    big = size > psize ? size : psize;   /* the render buffer serves wholes and parts */
    if (models < 1 || size < 28 || psize < 28 || min_parts < 1 || max_parts < min_parts || max_parts > 16 || first < 0 || first > 9999999 - models) {
        fprintf(stderr, "gen_data: bad arguments\n");
        return 2;
    }
    /* front, right side, top, three-quarter */
    {
        double f[3][3][3] = {{{1, 0, 0}, {0, 1, 0}, {0, 0, -1}},
                             {{0, 0, -1}, {0, 1, 0}, {-1, 0, 0}},
                             {{1, 0, 0}, {0, 0, -1}, {0, -1, 0}}};
        double up[3] = {0, 1, 0};
        int k;
        for (i = 0; i < 3; i++)
            for (k = 0; k < 3; k++) { views[i].r[k] = f[i][0][k]; views[i].u[k] = f[i][1][k]; views[i].d[k] = f[i][2][k]; }
        views[3].d[0] = -0.7; views[3].d[1] = -0.55; views[3].d[2] = -1.0;
        normalize3(views[3].d);
        cross3(views[3].d, up, views[3].r); normalize3(views[3].r);
        cross3(views[3].r, views[3].d, views[3].u);
    }
    /* the models are independent (each has its own random stream): one model per thread at a time, the
       render's own row loop then runs in that thread (OpenMP nesting is off). Twice the rate of
       splitting each small image's rows over 2 cores. */
#ifdef _OPENMP
#pragma omp parallel private(rgb)
#endif
    {
    rgb = (unsigned char *)malloc((size_t)big * big * 3);
    if (!rgb) exit(1);
#ifdef _OPENMP
#pragma omp for schedule(dynamic, 4) reduction(+ : total_parts, redrawn)
#endif
    for (m = first; m < first + models; m++) {
        kit_rng rng = kit_rng_derive(seed, (uint64_t)m, 0);
        prim prims[16];
        int n, k, j, tries;
        char name[64], dir[1024], path[1200];
        snprintf(name, sizeof name, "model%04d", m);
        /* a model with a part hidden (mostly) inside or behind the others is drawn again: where such a part
           goes cannot be read off the images (measured: README, "What limits learning") */
        for (tries = 0;; tries++) {
            n = draw_model(&rng, min_parts, max_parts, prims);
            if (min_visible <= 0 || tries == 99 || least_visible(prims, n, views) >= min_visible) break;
            redrawn++;
        }
        snprintf(dir, sizeof dir, "%s/%s", out, name);
        if (!diag) {
            mkdir_p(dir);
            render(prims, n, views, size, rgb, NULL);
            snprintf(path, sizeof path, "%s/%s-whole.png", dir, name);
            write_png(path, rgb, size);
        }
        for (k = 0; k < n; k++) {
            prim part = prims[k];
            double s = 0, t[3];
            char pname[32];
            FILE *f;
            if (diag) {   /* the diagnostic set: a folder per part whose "whole" is the part alone, in place */
                snprintf(name, sizeof name, "model%04d_%d", m, k);
                snprintf(dir, sizeof dir, "%s/%s", out, name);
                mkdir_p(dir);
                render(&prims[k], 1, views, size, rgb, NULL);
                snprintf(path, sizeof path, "%s/%s-whole.png", dir, name);
                write_png(path, rgb, size);
            }
            for (j = 0; j < 3; j++) { t[j] = part.c[j]; if (2 * part.h[j] > s) s = 2 * part.h[j]; }
            for (j = 0; j < 3; j++) { part.c[j] = 0; part.h[j] /= s; }   /* the part normalised alone */
            snprintf(pname, sizeof pname, "%s%d", kind_name[part.kind], k);
            render(&part, 1, views, psize, rgb, NULL);
            snprintf(path, sizeof path, "%s/%s-%s.png", dir, name, pname);
            write_png(path, rgb, psize);
            snprintf(path, sizeof path, "%s/%s-%s.json", dir, name, pname);
            f = fopen(path, "w");
            if (!f) { perror(path); exit(1); }
            fprintf(f, "{\n  \"model_name\": \"%s\",\n  \"part_name\": \"%s\",\n  \"translation\": [%.6f, %.6f, %.6f],\n"
                       "  \"rotation\": [1.0, 0.0, 0.0, 0.0],\n  \"scale\": [%.6f, %.6f, %.6f]\n}\n",
                    name, pname, t[0], t[1], t[2], s, s, s);
            fclose(f);
            total_parts++;
        }
    }
    free(rgb);
    }
    printf("gen_data: %d models, %ld parts, %dx%d px (parts %d px) -> %s (%ld draws redrawn: a part less than %.0f%% visible)\n",
           models, total_parts, size, size, psize, out, redrawn, 100 * min_visible);
    return 0;
}
