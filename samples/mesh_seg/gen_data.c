/* gen_data.c - a synthetic data set for movable-part segmentation (seed 000), in the seed's own format:
   one directory per mesh holding

       features.npy  float32 [N, 458]   PartField descriptor 448 | confidence 1 | the face's 3 vertices 9
       labels.npy    uint8   [N]        1 = the face belongs to a movable part
       info.txt      category, faces, movable fraction, parts (for people, not read by the trainer)

   Objects: cabinets (a grid of drawers, doors, fixed panels and open shelves), boxes with hinged lids,
   laptops, fridges and desks. Every part is a set of cuboids; movable parts are posed (drawers pulled
   out, doors/lids/screens rotated about their hinge) and each cuboid face is cut into a grid of
   triangles so the whole mesh has the requested number of faces. Faces are ordered along a Morton
   (z-order) curve of their centroids, as a mesh processed by a spatial sort would be, so the seed's
   chunks of 1024 consecutive faces are spatially local.

   The PartField stand-in is a fixed random network of purely geometric per-face quantities (position,
   normal, the face's position inside its part's bounding box, the part's extent and centre, Fourier
   features of the position), plus a smooth per-mesh noise field and white noise. It carries part
   identity only through geometry: nothing in it says "movable"; a drawer front and a fixed decorative
   panel of the same size look alike except for context (the handle, the drawer box behind).
   The confidence channel is the user's highlight: most movable parts are highlighted on most (not all)
   of their faces, some movable parts not at all, and a few patches of fixed faces are highlighted
   wrongly. Highlighted faces have confidence in [0.6, 1], the rest in [0, 0.1).

   Usage: gen_data --out DIR [--train 16] [--val 4] [--min-faces 10000] [--max-faces 60000] [--seed 1]
   writes DIR/train/mesh_0000 ... and DIR/val/mesh_0000 ... */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PI 3.14159265358979323846
#define FEAT 458
#define PF 448
#define GEO 32          /* geometric quantities fed to the PartField stand-in */
#define MAX_BOXES 4096
#define MAX_PARTS 256

/* ------------------------------------------------------------------------------------------ random */
typedef struct { uint64_t s; } rng;
static uint64_t rnext(rng *r) {   /* SplitMix64 (Steele, Lea & Flood 2014) */
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static double runi(rng *r) { return (double)(rnext(r) >> 11) * (1.0 / 9007199254740992.0); }
static double rrange(rng *r, double a, double b) { return a + (b - a) * runi(r); }
static int rint_(rng *r, int a, int b) { return a + (int)(runi(r) * (b - a + 1)); }   /* [a, b] */
static double rgauss(rng *r) { double u = runi(r) + 1e-12, v = runi(r); return sqrt(-2 * log(u)) * cos(2 * PI * v); }

/* ---------------------------------------------------------------------------------------- geometry */
/* a cuboid: centre c, half extents h, in its part's frame; the part's pose maps it to the world */
typedef struct { double c[3], h[3]; int part; } box;
typedef struct {
    int movable;
    const char *kind;
    double R[9], pivot[3], t[3];   /* world = R (p - pivot) + pivot + t */
} part;
typedef struct { box b[MAX_BOXES]; int nb; part p[MAX_PARTS]; int np; const char *category; } object;

static int add_part(object *o, const char *kind, int movable) {
    part *p = &o->p[o->np];
    if (o->np >= MAX_PARTS) { fprintf(stderr, "gen_data: too many parts\n"); exit(1); }
    memset(p, 0, sizeof *p);
    p->kind = kind; p->movable = movable;
    p->R[0] = p->R[4] = p->R[8] = 1;
    return o->np++;
}
static void add_box(object *o, int part, double cx, double cy, double cz, double hx, double hy, double hz) {
    box *b = &o->b[o->nb];
    if (o->nb >= MAX_BOXES) { fprintf(stderr, "gen_data: too many boxes\n"); exit(1); }
    b->c[0] = cx; b->c[1] = cy; b->c[2] = cz; b->h[0] = hx; b->h[1] = hy; b->h[2] = hz; b->part = part;
    o->nb++;
}
/* rotation by angle about axis 0/1/2 through pivot */
static void hinge(object *o, int pi, int axis, double angle, double px, double py, double pz) {
    part *p = &o->p[pi];
    double c = cos(angle), s = sin(angle);
    int a = (axis + 1) % 3, b = (axis + 2) % 3;
    memset(p->R, 0, sizeof p->R);
    p->R[axis * 3 + axis] = 1;
    p->R[a * 3 + a] = c; p->R[a * 3 + b] = -s;
    p->R[b * 3 + a] = s; p->R[b * 3 + b] = c;
    p->pivot[0] = px; p->pivot[1] = py; p->pivot[2] = pz;
}
static void to_world(const part *p, const double *q, double *w) {
    double d[3];
    int i;
    for (i = 0; i < 3; i++) d[i] = q[i] - p->pivot[i];
    for (i = 0; i < 3; i++) w[i] = p->R[i * 3] * d[0] + p->R[i * 3 + 1] * d[1] + p->R[i * 3 + 2] * d[2] + p->pivot[i] + p->t[i];
}

/* Objects are built y-up, front towards +z, in metres. */

/* a closed handle bar on a front face at z = zf: horizontal (along x) or vertical (along y) */
static void handle(object *o, int part, double x, double y, double zf, double len, int vertical) {
    double a = vertical ? 0.008 : len / 2, b = vertical ? len / 2 : 0.008;
    add_box(o, part, x, y, zf + 0.025, a, b, 0.008);                        /* the grip */
    if (vertical) {
        add_box(o, part, x, y - len / 2 + 0.01, zf + 0.012, 0.006, 0.006, 0.012);   /* two posts */
        add_box(o, part, x, y + len / 2 - 0.01, zf + 0.012, 0.006, 0.006, 0.012);
    } else {
        add_box(o, part, x - len / 2 + 0.01, y, zf + 0.012, 0.006, 0.006, 0.012);
        add_box(o, part, x + len / 2 - 0.01, y, zf + 0.012, 0.006, 0.006, 0.012);
    }
}

/* an open-front carcass: back, sides, top, bottom panels of thickness t, outer size W x H x D, base at y0 */
static void carcass(object *o, int part, double W, double H, double D, double t, double y0) {
    add_box(o, part, 0, y0 + H / 2, -D / 2 + t / 2, W / 2, H / 2, t / 2);                 /* back */
    add_box(o, part, -W / 2 + t / 2, y0 + H / 2, 0, t / 2, H / 2, D / 2);                 /* sides */
    add_box(o, part, W / 2 - t / 2, y0 + H / 2, 0, t / 2, H / 2, D / 2);
    add_box(o, part, 0, y0 + H - t / 2, 0, W / 2 - t, t / 2, D / 2);                      /* top, bottom */
    add_box(o, part, 0, y0 + t / 2, 0, W / 2 - t, t / 2, D / 2);
}

/* a drawer filling the opening [x0,x1] x [y0,y1] of a carcass with front plane z = zf, depth d */
static void drawer(object *o, rng *r, double x0, double x1, double y0, double y1, double zf, double d) {
    int p = add_part(o, "drawer", 1);
    double g = 0.004, t = 0.018, w = (x1 - x0) / 2 - g, h = (y1 - y0) / 2 - g, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    add_box(o, p, cx, cy, zf - t / 2, w, h, t / 2);                                       /* front */
    add_box(o, p, cx - w + 0.03, cy - 0.01, zf - d / 2, 0.006, h * 0.7, d / 2 - t);       /* box sides */
    add_box(o, p, cx + w - 0.03, cy - 0.01, zf - d / 2, 0.006, h * 0.7, d / 2 - t);
    add_box(o, p, cx, cy - h * 0.7, zf - d / 2, w - 0.03, 0.006, d / 2 - t);              /* bottom */
    add_box(o, p, cx, cy - 0.01, zf - d + t, w - 0.03, h * 0.7, 0.006);                   /* back */
    if (runi(r) < 0.85) handle(o, p, cx, cy, zf, fmin(0.8 * w, rrange(r, 0.08, 0.2)), 0);
    else add_box(o, p, cx, cy + h - 0.02, zf + 0.006, 0.4 * w, 0.01, 0.006);              /* a lip instead */
    if (runi(r) < 0.5) o->p[p].t[2] = rrange(r, 0.1, 0.7) * d;                            /* pulled out */
}

/* a door over [x0,x1] x [y0,y1] at z = zf, hinged on the left or the right edge */
static void door(object *o, rng *r, double x0, double x1, double y0, double y1, double zf, int glass) {
    int p = add_part(o, "door", 1), left = runi(r) < 0.5;
    double g = 0.004, t = 0.018, w = (x1 - x0) / 2 - g, h = (y1 - y0) / 2 - g, cx = (x0 + x1) / 2, cy = (y0 + y1) / 2;
    if (glass) {   /* a frame around a glass pane */
        add_box(o, p, cx, cy + h - 0.03, zf - t / 2, w, 0.03, t / 2);
        add_box(o, p, cx, cy - h + 0.03, zf - t / 2, w, 0.03, t / 2);
        add_box(o, p, cx - w + 0.03, cy, zf - t / 2, 0.03, h - 0.06, t / 2);
        add_box(o, p, cx + w - 0.03, cy, zf - t / 2, 0.03, h - 0.06, t / 2);
        add_box(o, p, cx, cy, zf - t / 2, w - 0.06, h - 0.06, 0.003);
    } else add_box(o, p, cx, cy, zf - t / 2, w, h, t / 2);
    handle(o, p, left ? cx + w - 0.04 : cx - w + 0.04, cy, zf, fmin(1.2 * h, rrange(r, 0.1, 0.3)), 1);
    if (runi(r) < 0.55) {
        double a = rrange(r, 0.15, 1.7);
        hinge(o, p, 1, left ? -a : a, left ? cx - w : cx + w, cy, zf);
    }
}

static void make_cabinet(object *o, rng *r) {
    double W = rrange(r, 0.5, 1.6), H = rrange(r, 0.5, 1.9), D = rrange(r, 0.35, 0.65), t = 0.02, base = 0;
    int body = add_part(o, "body", 0), ncol = rint_(r, 1, W > 1.0 ? 3 : 2), c, k;
    o->category = "cabinet";
    if (runi(r) < 0.5) { base = 0.1; add_box(o, body, 0, base / 2, 0, W / 2 - 0.03, base / 2, D / 2 - 0.05); }  /* plinth */
    else for (k = 0; k < 4; k++)                                                                              /* legs */
        add_box(o, body, (k & 1 ? 1 : -1) * (W / 2 - 0.04), 0.05, (k & 2 ? 1 : -1) * (D / 2 - 0.04), 0.02, 0.05, 0.02);
    if (!base) base = 0.1;
    carcass(o, body, W, H, D, t, base);
    if (runi(r) < 0.4) add_box(o, body, 0, base + H + 0.012, 0.01, W / 2 + 0.02, 0.012, D / 2 + 0.02);  /* worktop */
    for (c = 0; c < ncol; c++) {
        double x0 = -W / 2 + t + c * (W - 2 * t) / ncol, x1 = x0 + (W - 2 * t) / ncol, y = base + t;
        int nrow = rint_(r, 1, H > 1.0 ? 4 : 3), row;
        if (c > 0) add_box(o, body, x0, base + H / 2, 0, t / 2, H / 2 - t, D / 2 - t);   /* divider */
        for (row = 0; row < nrow; row++) {
            double y1 = row == nrow - 1 ? base + H - t : y + (H - 2 * t) / nrow, u = runi(r);
            if (u < 0.45) drawer(o, r, x0, x1, y, y1, D / 2, D - 2 * t);
            else if (u < 0.8) door(o, r, x0, x1, y, y1, D / 2 + 0.018, runi(r) < 0.2);
            else if (u < 0.9) add_box(o, body, (x0 + x1) / 2, (y + y1) / 2, D / 2 - 0.009,   /* fixed panel */
                                      (x1 - x0) / 2 - 0.004, (y1 - y) / 2 - 0.004, 0.009);
            else add_box(o, body, (x0 + x1) / 2, y1 - t / 2, 0, (x1 - x0) / 2, t / 2, D / 2 - t);  /* open shelf */
            y = y1;
        }
    }
}

static void make_lidbox(object *o, rng *r) {
    double W = rrange(r, 0.2, 0.9), D = rrange(r, 0.15, 0.6), H = rrange(r, 0.1, 0.5), t = 0.012, a;
    int body = add_part(o, "box", 0), lid = add_part(o, "lid", 1);
    o->category = "box_with_lid";
    add_box(o, body, 0, t / 2, 0, W / 2, t / 2, D / 2);                         /* floor */
    add_box(o, body, 0, H / 2, D / 2 - t / 2, W / 2, H / 2, t / 2);             /* walls */
    add_box(o, body, 0, H / 2, -D / 2 + t / 2, W / 2, H / 2, t / 2);
    add_box(o, body, -W / 2 + t / 2, H / 2, 0, t / 2, H / 2, D / 2 - t);
    add_box(o, body, W / 2 - t / 2, H / 2, 0, t / 2, H / 2, D / 2 - t);
    add_box(o, lid, 0, H + t / 2, 0, W / 2 + 0.005, t / 2, D / 2 + 0.005);      /* lid with a rim */
    add_box(o, lid, 0, H - 0.01, D / 2 + 0.002, W / 2 + 0.005, 0.012, 0.003);
    if (runi(r) < 0.6) add_box(o, lid, 0, H + t + 0.01, D / 2 - 0.03, 0.03, 0.01, 0.015);   /* knob */
    if (runi(r) < 0.5) add_box(o, body, 0, H - 0.04, D / 2 + 0.006, 0.02, 0.02, 0.006);      /* latch */
    a = runi(r) < 0.25 ? 0 : rrange(r, 0.2, 2.0);
    hinge(o, lid, 0, -a, 0, H + t / 2, -D / 2);
}

static void make_laptop(object *o, rng *r) {
    double W = rrange(r, 0.28, 0.4), D = W * rrange(r, 0.62, 0.72), tb = 0.016, ts = 0.007, a;
    int base = add_part(o, "base", 0), screen = add_part(o, "screen", 1), i, j, nx = 14, nz = 5;
    o->category = "laptop";
    add_box(o, base, 0, tb / 2, 0, W / 2, tb / 2, D / 2);
    for (j = 0; j < nz; j++)                                                    /* keys */
        for (i = 0; i < nx; i++)
            add_box(o, base, -W * 0.42 + (i + 0.5) * W * 0.84 / nx, tb + 0.002, -D * 0.4 + (j + 0.5) * D * 0.4 / nz,
                    W * 0.84 / nx * 0.4, 0.002, D * 0.4 / nz * 0.4);
    add_box(o, base, 0, tb + 0.0005, D * 0.27, W * 0.18, 0.0005, D * 0.12);     /* touchpad */
    add_box(o, screen, 0, tb + ts / 2, 0, W / 2, ts / 2, D / 2);                /* lid, closed pose */
    add_box(o, screen, 0, tb - 0.0015, 0, W * 0.46, 0.0015, D * 0.44);          /* panel */
    a = rrange(r, 1.0, 2.3);
    hinge(o, screen, 0, -a, 0, tb, -D / 2);
}

static void make_fridge(object *o, rng *r) {
    double W = rrange(r, 0.55, 0.9), H = rrange(r, 1.4, 2.0), D = rrange(r, 0.55, 0.75), t = 0.04, split;
    int body = add_part(o, "body", 0), two = runi(r) < 0.7, k;
    o->category = "fridge";
    carcass(o, body, W, H, D, t, 0.05);
    for (k = 0; k < 4; k++)
        add_box(o, body, (k & 1 ? 1 : -1) * (W / 2 - 0.05), 0.025, (k & 2 ? 1 : -1) * (D / 2 - 0.05), 0.02, 0.025, 0.02);
    for (k = 1; k < 4; k++) add_box(o, body, 0, 0.05 + k * H / 4, 0, W / 2 - t, 0.005, D / 2 - t);   /* shelves */
    split = two ? 0.05 + H * rrange(r, 0.6, 0.72) : 0.05 + H;
    door(o, r, -W / 2, W / 2, 0.05, split, D / 2 + 0.05, 0);
    if (two) door(o, r, -W / 2, W / 2, split, 0.05 + H, D / 2 + 0.05, 0);
    o->p[o->np - 1].kind = "fridge door";
}

static void make_desk(object *o, rng *r) {
    double W = rrange(r, 0.9, 1.8), D = rrange(r, 0.5, 0.8), H = rrange(r, 0.68, 0.78), t = 0.03, dw;
    int body = add_part(o, "desk", 0), k, nd = rint_(r, 1, 3);
    o->category = "desk";
    add_box(o, body, 0, H - t / 2, 0, W / 2, t / 2, D / 2);
    for (k = 0; k < 4; k++)
        add_box(o, body, (k & 1 ? 1 : -1) * (W / 2 - 0.04), (H - t) / 2, (k & 2 ? 1 : -1) * (D / 2 - 0.04), 0.025, (H - t) / 2, 0.025);
    add_box(o, body, 0, H - t - 0.06, -D / 2 + 0.05, W / 2 - 0.07, 0.06, 0.01);   /* back apron */
    dw = (W - 0.2) / nd;
    for (k = 0; k < nd; k++) {   /* drawers hanging under the top, in a rail frame */
        double x0 = -W / 2 + 0.1 + k * dw;
        add_box(o, body, x0 + 0.005, H - t - 0.07, 0, 0.005, 0.07, D / 2 - 0.06);
        drawer(o, r, x0 + 0.01, x0 + dw - 0.01, H - t - 0.14, H - t - 0.005, D / 2 - 0.03, D - 0.15);
    }
    add_box(o, body, W / 2 - 0.095, H - t - 0.07, 0, 0.005, 0.07, D / 2 - 0.06);
}

/* --------------------------------------------------------------------------------- triangulation */
typedef struct { float v[9]; int part; } tri;

static double object_area(const object *o) {
    double s = 0;
    int i;
    for (i = 0; i < o->nb; i++) {
        const double *h = o->b[i].h;
        s += 8 * (h[0] * h[1] + h[1] * h[2] + h[0] * h[2]);
    }
    return s;
}

/* each face of each cuboid into a nu x nv grid of quads, 2 triangles each, counter-clockwise seen from
   outside (u x v = the outward normal) */
static tri *triangulate(const object *o, double density, int64_t *n_out) {
    int64_t n = 0, cap = 1024;
    tri *T = malloc((size_t)cap * sizeof *T);
    int bi, f;
    for (bi = 0; bi < o->nb; bi++) {
        const box *b = &o->b[bi];
        for (f = 0; f < 6; f++) {
            int a = f / 2, s = f % 2 ? -1 : 1, u = (a + 1) % 3, v = (a + 2) % 3, nu, nv, i, j, k;
            if (s < 0) { int tmp = u; u = v; v = tmp; }
            nu = (int)fmax(1, floor(2 * b->h[u] * density + 0.5));
            nv = (int)fmax(1, floor(2 * b->h[v] * density + 0.5));
            for (i = 0; i < nu; i++)
                for (j = 0; j < nv; j++) {
                    double q[4][3], w[4][3];
                    static const int corner[4][2] = {{0, 0}, {1, 0}, {1, 1}, {0, 1}};
                    static const int tri_c[2][3] = {{0, 1, 2}, {0, 2, 3}};
                    for (k = 0; k < 4; k++) {
                        q[k][a] = b->c[a] + s * b->h[a];
                        q[k][u] = b->c[u] - b->h[u] + 2 * b->h[u] * (i + corner[k][0]) / nu;
                        q[k][v] = b->c[v] - b->h[v] + 2 * b->h[v] * (j + corner[k][1]) / nv;
                        to_world(&o->p[b->part], q[k], w[k]);
                    }
                    for (k = 0; k < 2; k++) {
                        int c, d;
                        if (n == cap) { cap *= 2; T = realloc(T, (size_t)cap * sizeof *T); }
                        for (c = 0; c < 3; c++)
                            for (d = 0; d < 3; d++) T[n].v[c * 3 + d] = (float)w[tri_c[k][c]][d];
                        T[n].part = b->part;
                        n++;
                    }
                }
        }
    }
    *n_out = n;
    return T;
}

/* Morton code of a point in [-1, 1]^3, 10 bits per axis */
static uint32_t spread10(uint32_t x) {
    x &= 0x3ff;
    x = (x | (x << 16)) & 0x030000FF;
    x = (x | (x << 8)) & 0x0300F00F;
    x = (x | (x << 4)) & 0x030C30C3;
    x = (x | (x << 2)) & 0x09249249;
    return x;
}
typedef struct { uint32_t key; int64_t i; } keyed;
static int cmp_key(const void *a, const void *b) {
    const keyed *x = a, *y = b;
    return x->key < y->key ? -1 : x->key > y->key ? 1 : (x->i < y->i ? -1 : x->i > y->i);
}

/* ------------------------------------------------------------------------------------ the features */
/* the fixed "PartField network": tanh(W g + b), one W for the whole data set */
static float Wpf[PF][GEO], Bpf[PF], Fdir[8][3], Fnoise[PF][8];

static void init_partfield(uint64_t seed) {
    rng r = {seed ^ 0x5eedf00dull};
    int i, j;
    for (i = 0; i < PF; i++) {
        for (j = 0; j < GEO; j++) Wpf[i][j] = (float)(rgauss(&r) * 1.2 / sqrt((double)GEO) * 2.0);
        Bpf[i] = (float)(0.3 * rgauss(&r));
        for (j = 0; j < 8; j++) Fnoise[i][j] = (float)(rgauss(&r) / sqrt(8.0));
    }
    for (i = 0; i < 8; i++) {
        double f = rrange(&r, 0.5, 2.0);
        for (j = 0; j < 3; j++) Fdir[i][j] = (float)(rgauss(&r) * f);
    }
}

static int write_mesh(const char *dir, const object *o, rng *r, int64_t target) {
    int64_t N, i, k;
    double density = sqrt((double)target / (2 * object_area(o))), lo[3] = {1e9, 1e9, 1e9}, hi[3] = {-1e9, -1e9, -1e9};
    double yaw = rrange(r, 0, 2 * PI), cy = cos(yaw), sy = sin(yaw), scale, mid[3];
    double plo[MAX_PARTS][3], phi[MAX_PARTS][3], smooth_w[8][3], smooth_p[8];
    int64_t pcount[MAX_PARTS], n_mov = 0, n_mark = 0;
    int highlighted[MAX_PARTS], p, j, d, n_wrong;
    float *F, *cen;
    uint8_t *L, *mark;
    keyed *order;
    tri *T = triangulate(o, density, &N), *S;
    char path[1024];
    FILE *fi;

    /* yaw about the up axis, then centre and scale into [-1, 1]^3 (max half extent 1) */
    for (i = 0; i < N; i++)
        for (k = 0; k < 3; k++) {
            float *v = T[i].v + 3 * k;
            double x = v[0], z = v[2];
            v[0] = (float)(cy * x + sy * z); v[2] = (float)(-sy * x + cy * z);
            for (d = 0; d < 3; d++) { lo[d] = fmin(lo[d], v[d]); hi[d] = fmax(hi[d], v[d]); }
        }
    scale = 0;
    for (d = 0; d < 3; d++) { mid[d] = (lo[d] + hi[d]) / 2; scale = fmax(scale, (hi[d] - lo[d]) / 2); }
    for (i = 0; i < N; i++)
        for (k = 0; k < 9; k++) T[i].v[k] = (float)((T[i].v[k] - mid[k % 3]) / scale);

    /* Morton order of the centroids */
    order = malloc((size_t)N * sizeof *order);
    for (i = 0; i < N; i++) {
        uint32_t key = 0;
        for (d = 0; d < 3; d++) {
            double c = (T[i].v[d] + T[i].v[3 + d] + T[i].v[6 + d]) / 3;
            key |= spread10((uint32_t)fmin(1023, fmax(0, (c + 1) * 511.5))) << d;
        }
        order[i].key = key; order[i].i = i;
    }
    qsort(order, (size_t)N, sizeof *order, cmp_key);
    S = malloc((size_t)N * sizeof *S);
    for (i = 0; i < N; i++) S[i] = T[order[i].i];
    free(T); free(order);
    T = S;

    /* per-part bounding boxes (after posing) and face counts */
    for (p = 0; p < o->np; p++) { pcount[p] = 0; for (d = 0; d < 3; d++) { plo[p][d] = 1e9; phi[p][d] = -1e9; } }
    cen = malloc((size_t)N * 3 * sizeof *cen);
    for (i = 0; i < N; i++) {
        p = T[i].part;
        pcount[p]++;
        for (d = 0; d < 3; d++) {
            cen[3 * i + d] = (T[i].v[d] + T[i].v[3 + d] + T[i].v[6 + d]) / 3;
            for (k = 0; k < 3; k++) { plo[p][d] = fmin(plo[p][d], T[i].v[3 * k + d]); phi[p][d] = fmax(phi[p][d], T[i].v[3 * k + d]); }
        }
    }

    /* the confidence highlight */
    mark = calloc((size_t)N, 1);
    for (p = 0; p < o->np; p++) highlighted[p] = o->p[p].movable && runi(r) < 0.75;
    for (p = 0; p < o->np; p++) {
        double dir[3], nrm = 0, tau;
        if (!highlighted[p]) continue;
        for (d = 0; d < 3; d++) { dir[d] = rgauss(r); nrm += dir[d] * dir[d]; }
        for (d = 0; d < 3; d++) dir[d] /= sqrt(nrm);
        tau = runi(r) < 0.4 ? 10 : rrange(r, -0.3, 1.2);   /* the whole part, or a cut through it */
        for (i = 0; i < N; i++) {
            double s = 0;
            if (T[i].part != p) continue;
            for (d = 0; d < 3; d++) {
                double half = fmax(1e-6, (phi[p][d] - plo[p][d]) / 2);
                s += dir[d] * (cen[3 * i + d] - (phi[p][d] + plo[p][d]) / 2) / half;
            }
            mark[i] = s < tau && runi(r) > 0.05;
        }
    }
    n_wrong = rint_(r, 0, 3);
    for (j = 0; j < n_wrong; j++) {   /* fixed faces near a random fixed face, wrongly highlighted */
        int64_t seed_face = (int64_t)(runi(r) * N), tries = 0;
        double rad = rrange(r, 0.04, 0.15);
        while (o->p[T[seed_face].part].movable && tries++ < 100) seed_face = (int64_t)(runi(r) * N);
        if (o->p[T[seed_face].part].movable) break;
        for (i = 0; i < N; i++) {
            double dd = 0;
            if (o->p[T[i].part].movable) continue;
            for (d = 0; d < 3; d++) dd += (cen[3 * i + d] - cen[3 * seed_face + d]) * (cen[3 * i + d] - cen[3 * seed_face + d]);
            if (dd < rad * rad) mark[i] = 1;
        }
    }

    /* a smooth noise field of this mesh: 8 random plane waves */
    for (j = 0; j < 8; j++) {
        for (d = 0; d < 3; d++) smooth_w[j][d] = rgauss(r) * 2.5;
        smooth_p[j] = rrange(r, 0, 2 * PI);
    }

    F = malloc((size_t)N * FEAT * sizeof *F);
    L = malloc((size_t)N);
    {
        uint64_t noise_seed = rnext(r);
        float *conf_u = malloc((size_t)N * sizeof *conf_u);
        for (i = 0; i < N; i++) conf_u[i] = (float)runi(r);
#pragma omp parallel for schedule(static)
        for (i = 0; i < N; i++) {
            const tri *t = &T[i];
            int pp = t->part, q, e;
            float g[GEO], sm[8], *f = F + i * FEAT;
            double e1[3], e2[3], n3[3], nn;
            rng fr = {noise_seed ^ ((uint64_t)i * 0x9E3779B97F4A7C15ull)};
            for (q = 0; q < 3; q++) { e1[q] = t->v[3 + q] - t->v[q]; e2[q] = t->v[6 + q] - t->v[q]; }
            n3[0] = e1[1] * e2[2] - e1[2] * e2[1]; n3[1] = e1[2] * e2[0] - e1[0] * e2[2]; n3[2] = e1[0] * e2[1] - e1[1] * e2[0];
            nn = sqrt(n3[0] * n3[0] + n3[1] * n3[1] + n3[2] * n3[2]) + 1e-12;
            e = 0;
            for (q = 0; q < 3; q++) g[e++] = cen[3 * i + q];                                   /* position */
            for (q = 0; q < 3; q++) g[e++] = (float)(n3[q] / nn);                              /* normal */
            for (q = 0; q < 3; q++) {                                                          /* in-part position */
                double half = fmax(1e-3, (phi[pp][q] - plo[pp][q]) / 2);
                g[e++] = (float)((cen[3 * i + q] - (phi[pp][q] + plo[pp][q]) / 2) / half);
            }
            for (q = 0; q < 3; q++) g[e++] = (float)log(fmax(1e-3, (phi[pp][q] - plo[pp][q]) / 2)) / 3;  /* extent */
            for (q = 0; q < 3; q++) g[e++] = (float)(phi[pp][q] + plo[pp][q]) / 2;                       /* centre */
            g[e++] = (float)log((double)pcount[pp] / (double)N) / 4;                                     /* share */
            for (q = 0; q < 8; q++) {                                                          /* Fourier */
                double ph = 2 * PI * (Fdir[q][0] * cen[3 * i] + Fdir[q][1] * cen[3 * i + 1] + Fdir[q][2] * cen[3 * i + 2]);
                g[e++] = (float)sin(ph); g[e++] = (float)cos(ph);
            }
            for (q = 0; q < 8; q++)
                sm[q] = (float)sin(smooth_w[q][0] * cen[3 * i] + smooth_w[q][1] * cen[3 * i + 1] + smooth_w[q][2] * cen[3 * i + 2] + smooth_p[q]);
            for (q = 0; q < PF; q++) {
                float s = Bpf[q], nz = 0;
                int m;
                for (m = 0; m < GEO; m++) s += Wpf[q][m] * g[m];
                for (m = 0; m < 8; m++) nz += Fnoise[q][m] * sm[m];
                f[q] = tanhf(s) + 0.35f * nz + 0.35f * (float)rgauss(&fr);
            }
            f[PF] = mark[i] ? 0.6f + 0.4f * conf_u[i] : 0.1f * conf_u[i];
            for (q = 0; q < 9; q++) f[PF + 1 + q] = t->v[q];
            L[i] = (uint8_t)o->p[pp].movable;
        }
        free(conf_u);
    }
    for (i = 0; i < N; i++) { n_mov += L[i]; n_mark += mark[i]; }

    mkdir(dir, 0755);
    {
        int64_t sf[2], sl[1];
        nn_tensor *tf, *tl;
        sf[0] = N; sf[1] = FEAT; sl[0] = N;
        tf = nn_from_data(NN_F32, 2, sf, F);
        tl = nn_from_data(NN_U8, 1, sl, L);
        snprintf(path, sizeof path, "%s/features.npy", dir); nn_npy_save(path, tf);
        snprintf(path, sizeof path, "%s/labels.npy", dir); nn_npy_save(path, tl);
        nn_tensor_free(tf); nn_tensor_free(tl);
    }
    snprintf(path, sizeof path, "%s/info.txt", dir);
    if ((fi = fopen(path, "w")) != NULL) {
        fprintf(fi, "category %s\nfaces %lld\nmovable_fraction %.4f\nhighlighted_fraction %.4f\nparts", o->category,
                (long long)N, (double)n_mov / N, (double)n_mark / N);
        for (p = 0; p < o->np; p++) fprintf(fi, " %s%s", o->p[p].kind, o->p[p].movable ? "*" : "");
        fprintf(fi, "\n");
        fclose(fi);
    }
    printf("%s: %-13s %6lld faces, %2d parts, movable %.2f, highlighted %.2f\n", dir, o->category, (long long)N,
           o->np, (double)n_mov / N, (double)n_mark / N);
    free(F); free(L); free(mark); free(cen); free(T);
    return 0;
}

int main(int argc, char **argv) {
    const char *out = NULL;
    int n_train = 16, n_val = 4, i, split;
    long min_faces = 10000, max_faces = 60000;
    uint64_t seed = 1;
    static object obj;
    char dir[1024];
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--train") && i + 1 < argc) n_train = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--val") && i + 1 < argc) n_val = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--min-faces") && i + 1 < argc) min_faces = atol(argv[++i]);
        else if (!strcmp(argv[i], "--max-faces") && i + 1 < argc) max_faces = atol(argv[++i]);
        else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else { fprintf(stderr, "gen_data: unknown argument %s\n", argv[i]); out = NULL; break; }
    }
    if (!out || n_train < 0 || n_val < 0 || min_faces < 100 || max_faces < min_faces) {
        fprintf(stderr, "usage: gen_data --out DIR [--train 16] [--val 4] [--min-faces 10000] [--max-faces 60000] [--seed 1]\n");
        return 2;
    }
    init_partfield(12345);   /* the same "network" for every data set */
    snprintf(dir, sizeof dir, "%s", out);   /* mkdir -p */
    for (i = 1; dir[i]; i++)
        if (dir[i] == '/') { dir[i] = 0; mkdir(dir, 0755); dir[i] = '/'; }
    mkdir(out, 0755);
    for (split = 0; split < 2; split++) {
        int n = split ? n_val : n_train;
        snprintf(dir, sizeof dir, "%s/%s", out, split ? "val" : "train");
        mkdir(dir, 0755);
        for (i = 0; i < n; i++) {
            rng r = {seed * 1000003ull + (uint64_t)split * 7919ull + (uint64_t)i};
            int64_t target;
            int kind;
            rnext(&r);
            target = min_faces + (int64_t)(runi(&r) * (double)(max_faces - min_faces));
            kind = i % 5;
            memset(&obj, 0, sizeof obj);
            switch (kind) {
            case 0: make_cabinet(&obj, &r); break;
            case 1: make_lidbox(&obj, &r); break;
            case 2: make_laptop(&obj, &r); break;
            case 3: make_fridge(&obj, &r); break;
            default: make_desk(&obj, &r); break;
            }
            snprintf(dir, sizeof dir, "%s/%s/mesh_%04d", out, split ? "val" : "train", i);
            write_mesh(dir, &obj, &r, target);
        }
    }
    nn_shutdown();
    return 0;
}
