/* kit_plot.h - line charts of loss curves as PNG, drawn by hand (no plotting library).

       float train[100], val[100];   ...
       kit_series s[2] = {{"train", NULL, train, 100}, {"val", NULL, val, 100}};  // x NULL: 0, 1, 2, ...
       kit_plot_opts o = {800, 500, "loss", "epoch", "L1", 1};                    // log-scale y
       kit_plot_png("runs/exp1/loss.png", s, 2, &o, &err);

   White background, light grid, axes with "nice" ticks (1, 2, 5 x 10^k; powers of ten on a log axis),
   tick labels, title, axis labels and a legend in a built-in 5x7 bitmap font (drawn for this kit;
   letters are shown in capitals). Points that are NaN, infinite, or <= 0 on a log axis break the line. */
#ifndef KIT_PLOT_H
#define KIT_PLOT_H
#include "kit_base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const char *name;
    const float *x; /* NULL: 0, 1, ..., n-1 */
    const float *y;
    size_t n;
} kit_series;

typedef struct {
    int width, height;                  /* pixels; 0 gives 800 x 500 */
    const char *title, *xlabel, *ylabel; /* each may be NULL */
    int log_y;
} kit_plot_opts;

/* Draws into rgb (width * height * 3 bytes). */
int kit_plot_render(const kit_series *s, int nseries, const kit_plot_opts *o, unsigned char *rgb);
int kit_plot_png(const char *path, const kit_series *s, int nseries, const kit_plot_opts *o, kit_err *err);

/* The bitmap font: text drawn with its top-left corner at (x, y), each font pixel scale x scale. */
void kit_draw_text(unsigned char *rgb, int w, int h, int x, int y, const char *text, int scale, const unsigned char color[3]);
int kit_text_width(const char *text, int scale);
/* The 7 rows (bit 4 = leftmost column) of a character's glyph; NULL if the font lacks it. */
const unsigned char *kit_font_glyph(char ch);

#ifdef __cplusplus
}
#endif
#endif /* KIT_PLOT_H */

#if defined(KIT_IMPLEMENTATION) && !defined(KIT_PLOT_IMPLEMENTED)
#define KIT_PLOT_IMPLEMENTED
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each glyph is drawn as 7 rows of 5 columns; '#' is ink. Converted to bits on first use. */
static const struct { char ch; const char *rows[7]; } kit__font_src[] = {
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"####.", "....#", "....#", ".###.", "....#", "....#", "####."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
    {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
    {'D', {"###..", "#..#.", "#...#", "#...#", "#...#", "#..#.", "###.."}},
    {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
    {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
    {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
    {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
    {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'N', {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"}},
    {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
    {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
    {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
    {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
    {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
    {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
    {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
    {'-', {".....", ".....", ".....", "#####", ".....", ".....", "....."}},
    {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {'/', {"....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {'[', {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."}},
    {']', {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."}},
    {'%', {"##..#", "##..#", "...#.", "..#..", ".#...", "#..##", "#..##"}},
    {'*', {".....", "#.#.#", ".###.", "#####", ".###.", "#.#.#", "....."}},
    {'#', {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}},
    {'\'', {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
    {'"', {".#.#.", ".#.#.", ".....", ".....", ".....", ".....", "....."}},
    {'<', {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."}},
    {'>', {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."}},
    {'!', {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}},
    {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
};

static unsigned char kit__font_bits[128][7];
static int kit__font_ready;

const unsigned char *kit_font_glyph(char ch) {
    size_t i;
    int r, c;
    if (!kit__font_ready) { /* same values from any thread: no lock needed */
        for (i = 0; i < sizeof kit__font_src / sizeof *kit__font_src; i++)
            for (r = 0; r < 7; r++) {
                unsigned char bits = 0;
                for (c = 0; c < 5; c++) if (kit__font_src[i].rows[r][c] == '#') bits |= (unsigned char)(0x10 >> c);
                kit__font_bits[(int)kit__font_src[i].ch][r] = bits;
            }
        kit__font_ready = 1;
    }
    if (ch >= 'a' && ch <= 'z') ch = (char)(ch - 'a' + 'A');
    for (i = 0; i < sizeof kit__font_src / sizeof *kit__font_src; i++)
        if (kit__font_src[i].ch == ch) return kit__font_bits[(int)ch];
    return NULL;
}

int kit_text_width(const char *text, int scale) {
    int n = (int)strlen(text);
    return n ? (6 * n - 1) * scale : 0; /* 5 columns + 1 of spacing */
}

static void kit__px(unsigned char *rgb, int w, int h, int x, int y, const unsigned char c[3]) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    memcpy(rgb + ((size_t)y * w + x) * 3, c, 3);
}

void kit_draw_text(unsigned char *rgb, int w, int h, int x, int y, const char *text, int scale, const unsigned char color[3]) {
    int r, c, sx, sy;
    for (; *text; text++, x += 6 * scale) {
        const unsigned char *g = kit_font_glyph(*text);
        if (!g) g = kit_font_glyph('?');
        for (r = 0; r < 7; r++)
            for (c = 0; c < 5; c++)
                if (g[r] & (0x10 >> c))
                    for (sy = 0; sy < scale; sy++)
                        for (sx = 0; sx < scale; sx++) kit__px(rgb, w, h, x + c * scale + sx, y + r * scale + sy, color);
    }
}

/* Text rotated a quarter turn counter-clockwise (for the y label), reading bottom to top. */
static void kit__draw_text_up(unsigned char *rgb, int w, int h, int x, int y_bottom, const char *text, const unsigned char color[3]) {
    int r, c;
    for (; *text; text++, y_bottom -= 6) {
        const unsigned char *g = kit_font_glyph(*text);
        if (!g) g = kit_font_glyph('?');
        for (r = 0; r < 7; r++)
            for (c = 0; c < 5; c++)
                if (g[r] & (0x10 >> c)) kit__px(rgb, w, h, x + r, y_bottom - c, color);
    }
}

static void kit__rect(unsigned char *rgb, int w, int h, int x0, int y0, int x1, int y1, const unsigned char c[3]) {
    int x, y;
    for (y = y0; y <= y1; y++)
        for (x = x0; x <= x1; x++) kit__px(rgb, w, h, x, y, c);
}

/* Bresenham's line, 2 pixels thick, clipped to [cx0, cx1] x [cy0, cy1]. */
static void kit__line(unsigned char *rgb, int w, int h, int x0, int y0, int x1, int y1, const unsigned char c[3],
                      int cx0, int cy0, int cx1, int cy1) {
    int dx = abs(x1 - x0), dy = -abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, e = dx + dy, e2, guard = 0;
    for (;;) {
        int ox, oy;
        for (oy = 0; oy < 2; oy++)
            for (ox = 0; ox < 2; ox++)
                if (x0 + ox >= cx0 && x0 + ox <= cx1 && y0 + oy >= cy0 && y0 + oy <= cy1) kit__px(rgb, w, h, x0 + ox, y0 + oy, c);
        if ((x0 == x1 && y0 == y1) || ++guard > 100000) break;
        e2 = 2 * e; /* both tests use the error before this step's updates */
        if (e2 >= dy) { e += dy; x0 += sx; }
        if (e2 <= dx) { e += dx; y0 += sy; }
    }
}

/* Tick spacing of about `target` intervals over [lo, hi]: 1, 2 or 5 times a power of ten. */
static double kit__nice_step(double lo, double hi, int target) {
    double raw = (hi - lo) / target, mag = pow(10, floor(log10(raw))), norm = raw / mag;
    return (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
}

static void kit__tick_label(double v, double step, char *buf, size_t n) {
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (fabs(v) < step * 1e-6) v = 0; /* no "-0.00" */
    if (fabs(v) >= 1e6 || (v != 0 && fabs(v) < 1e-4) || dec > 6) snprintf(buf, n, "%.2g", v);
    else snprintf(buf, n, "%.*f", dec, v);
}

static int kit__usable(double v, int log_y) { return isfinite(v) && (!log_y || v > 0); }

int kit_plot_render(const kit_series *s, int nseries, const kit_plot_opts *o, unsigned char *rgb) {
    static const unsigned char palette[8][3] = {
        {31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40},
        {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}};
    static const unsigned char white[3] = {255, 255, 255}, black[3] = {0, 0, 0}, grid[3] = {225, 225, 225},
                               text[3] = {40, 40, 40};
    int W = o && o->width > 0 ? o->width : 800, H = o && o->height > 0 ? o->height : 500, log_y = o && o->log_y;
    int left = 70, right = 20, top = 30, bottom = 45, x0, y0, x1, y1, i, any = 0;
    double xmin = HUGE_VAL, xmax = -HUGE_VAL, ymin = HUGE_VAL, ymax = -HUGE_VAL, step, t;
    size_t j;
    char buf[64];
    if (W < 120 || H < 100 || nseries < 0) return KIT_ERR_ARG;
    memset(rgb, 255, (size_t)W * H * 3);
    for (i = 0; i < nseries; i++)
        for (j = 0; j < s[i].n; j++) {
            double x = s[i].x ? s[i].x[j] : (double)j, y = s[i].y[j];
            if (!kit__usable(y, log_y) || !isfinite(x)) continue;
            if (log_y) y = log10(y);
            any = 1;
            if (x < xmin) xmin = x;
            if (x > xmax) xmax = x;
            if (y < ymin) ymin = y;
            if (y > ymax) ymax = y;
        }
    if (!any) { xmin = 0; xmax = 1; ymin = 0; ymax = 1; }
    if (xmax == xmin) { xmin -= 1; xmax += 1; }
    if (ymax == ymin) { double d = fabs(ymin) * 0.1 + (log_y ? 0.5 : 1); ymin -= d; ymax += d; }
    else { double pad = 0.05 * (ymax - ymin); ymin -= pad; ymax += pad; }
    x0 = left; y0 = top; x1 = W - right; y1 = H - bottom; /* plot area */
#define KIT__PX(x) (x0 + (int)lround(((x) - xmin) / (xmax - xmin) * (x1 - x0)))
#define KIT__PY(y) (y1 - (int)lround(((y) - ymin) / (ymax - ymin) * (y1 - y0)))
    /* grid and tick labels */
    step = kit__nice_step(xmin, xmax, 8);
    for (t = ceil(xmin / step) * step; t <= xmax + step * 1e-9; t += step) {
        int px = KIT__PX(t);
        kit__rect(rgb, W, H, px, y0, px, y1, grid);
        kit__rect(rgb, W, H, px, y1, px, y1 + 4, black);
        kit__tick_label(t, step, buf, sizeof buf);
        kit_draw_text(rgb, W, H, px - kit_text_width(buf, 1) / 2, y1 + 8, buf, 1, text);
    }
    if (log_y) {
        /* 1-2-5 in every decade; a range too narrow to hold two of them (a short run: 0.21 to 0.24) gets
           evenly spaced values instead, so the axis is never left without a label */
        double decades = ymax - ymin, e;
        int pass, nticks = 0;
        for (pass = 0; pass < 2; pass++)
            for (e = floor(ymin); e <= ceil(ymax); e++) {
                static const double mult[3] = {1, 2, 5};
                int m;
                for (m = 0; m < (decades < 2.5 ? 3 : 1); m++) {
                    double v = e + log10(mult[m]);
                    int py;
                    if (v < ymin || v > ymax) continue;
                    if (pass == 0) { nticks++; continue; }
                    if (nticks < 2) continue;
                    py = KIT__PY(v);
                    kit__rect(rgb, W, H, x0, py, x1, py, grid);
                    kit__rect(rgb, W, H, x0 - 4, py, x0, py, black);
                    snprintf(buf, sizeof buf, "%g", pow(10, v));
                    kit_draw_text(rgb, W, H, x0 - 8 - kit_text_width(buf, 1), py - 3, buf, 1, text);
                }
            }
        if (nticks < 2) {
            double lo = pow(10, ymin), hi = pow(10, ymax);
            step = kit__nice_step(lo, hi, 5);
            for (t = ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) {
                int py;
                if (t <= 0) continue;
                py = KIT__PY(log10(t));
                kit__rect(rgb, W, H, x0, py, x1, py, grid);
                kit__rect(rgb, W, H, x0 - 4, py, x0, py, black);
                kit__tick_label(t, step, buf, sizeof buf);
                kit_draw_text(rgb, W, H, x0 - 8 - kit_text_width(buf, 1), py - 3, buf, 1, text);
            }
        }
    } else {
        step = kit__nice_step(ymin, ymax, 6);
        for (t = ceil(ymin / step) * step; t <= ymax + step * 1e-9; t += step) {
            int py = KIT__PY(t);
            kit__rect(rgb, W, H, x0, py, x1, py, grid);
            kit__rect(rgb, W, H, x0 - 4, py, x0, py, black);
            kit__tick_label(t, step, buf, sizeof buf);
            kit_draw_text(rgb, W, H, x0 - 8 - kit_text_width(buf, 1), py - 3, buf, 1, text);
        }
    }
    /* series */
    for (i = 0; i < nseries; i++) {
        int have_prev = 0, px_prev = 0, py_prev = 0;
        for (j = 0; j < s[i].n; j++) {
            double x = s[i].x ? s[i].x[j] : (double)j, y = s[i].y[j];
            int px, py;
            if (!kit__usable(y, log_y) || !isfinite(x)) { have_prev = 0; continue; }
            px = KIT__PX(x);
            py = KIT__PY(log_y ? log10(y) : y);
            if (have_prev) kit__line(rgb, W, H, px_prev, py_prev, px, py, palette[i % 8], x0, y0, x1, y1);
            else kit__line(rgb, W, H, px, py, px, py, palette[i % 8], x0, y0, x1, y1);
            have_prev = 1; px_prev = px; py_prev = py;
        }
    }
#undef KIT__PX
#undef KIT__PY
    /* axes box */
    kit__rect(rgb, W, H, x0, y0, x1, y0, black);
    kit__rect(rgb, W, H, x0, y1, x1, y1, black);
    kit__rect(rgb, W, H, x0, y0, x0, y1, black);
    kit__rect(rgb, W, H, x1, y0, x1, y1, black);
    /* legend, top right inside the plot */
    if (nseries > 0) {
        int lw = 0, lx, ly = y0 + 8;
        for (i = 0; i < nseries; i++) {
            int tw = kit_text_width(s[i].name ? s[i].name : "", 1);
            if (tw > lw) lw = tw;
        }
        lx = x1 - lw - 40;
        kit__rect(rgb, W, H, lx - 6, ly - 5, x1 - 8, ly + 12 * nseries - 1, white);
        for (i = 0; i < nseries; i++, ly += 12) {
            kit__rect(rgb, W, H, lx, ly + 2, lx + 18, ly + 3, palette[i % 8]);
            kit_draw_text(rgb, W, H, lx + 24, ly, s[i].name ? s[i].name : "", 1, text);
        }
    }
    if (o && o->title) kit_draw_text(rgb, W, H, (x0 + x1) / 2 - kit_text_width(o->title, 2) / 2, 8, o->title, 2, black);
    if (o && o->xlabel) kit_draw_text(rgb, W, H, (x0 + x1) / 2 - kit_text_width(o->xlabel, 1) / 2, H - 16, o->xlabel, 1, black);
    if (o && o->ylabel) kit__draw_text_up(rgb, W, H, 8, (y0 + y1) / 2 + kit_text_width(o->ylabel, 1) / 2, o->ylabel, black);
    return KIT_OK;
}

/* kit_png_write_u8 lives in kit_image.h; declared here so kit_plot.h works on its own. */
int kit_png_write_u8(const char *path, const unsigned char *pixels, int width, int height, int channels, kit_err *err);

int kit_plot_png(const char *path, const kit_series *s, int nseries, const kit_plot_opts *o, kit_err *err) {
    int W = o && o->width > 0 ? o->width : 800, H = o && o->height > 0 ? o->height : 500, rc;
    unsigned char *rgb = (unsigned char *)malloc((size_t)W * H * 3);
    if (!rgb) return kit_fail(err, KIT_ERR_NOMEM, "out of memory for a %dx%d plot", W, H);
    rc = kit_plot_render(s, nseries, o, rgb);
    if (rc) {
        free(rgb);
        return kit_fail(err, (kit_status)rc, "plot '%s': size %dx%d too small (at least 120x100)", path, W, H);
    }
    rc = kit_png_write_u8(path, rgb, W, H, 3, err);
    free(rgb);
    return rc;
}
#endif /* KIT_IMPLEMENTATION */
