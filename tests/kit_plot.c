/* tests/kit_plot.c - loss-curve PNGs: the chart is drawn (series colours, axes, white background),
   the PNG reads back pixel for pixel, the bitmap font has its glyphs, awkward data (NaN, zeros on a
   log axis, one point, a flat line) draws without trouble, and bad sizes are refused.
   usage: kit_plot [out.png]   (default /tmp/kit_plot_test.png; kept for a look) */
#define KIT_IMPLEMENTATION
#include "kit.h"
#include "test.h"
#include <stdlib.h>
#include <string.h>

static long count_color(const unsigned char *rgb, int w, int h, int r, int g, int b) {
    long n = 0, i;
    for (i = 0; i < (long)w * h; i++) n += rgb[3 * i] == r && rgb[3 * i + 1] == g && rgb[3 * i + 2] == b;
    return n;
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "/tmp/kit_plot_test.png";
    float train[60], val[12], vx[12], weird[6] = {1, NAN, 0, -1, INFINITY, 0.5f}, one = 3, flat[4] = {2, 2, 2, 2};
    kit_series s[2], odd[3];
    kit_plot_opts o = {640, 400, "Loss curves", "epoch", "L1 loss", 0};
    unsigned char *rgb = (unsigned char *)malloc(640 * 400 * 3), *back;
    kit_err err;
    int i, w, h, ink = 0;
    const unsigned char *g;
    for (i = 0; i < 60; i++) train[i] = 0.5f * expf(-i / 15.0f) + 0.02f;
    for (i = 0; i < 12; i++) { vx[i] = (float)(i * 5 + 4); val[i] = 0.55f * expf(-vx[i] / 18.0f) + 0.05f; }
    s[0].name = "train"; s[0].x = NULL; s[0].y = train; s[0].n = 60;
    s[1].name = "val"; s[1].x = vx; s[1].y = val; s[1].n = 12;

    CHECK(kit_plot_render(s, 2, &o, rgb) == 0, "render");
    CHECK(rgb[0] == 255 && rgb[1] == 255 && rgb[2] == 255, "white background");
    {
        long blue = count_color(rgb, 640, 400, 31, 119, 180);
        CHECK(blue > 500 && blue < 2500, "first series drawn in blue as a 2-pixel line (%ld pixels)", blue);
    }
    CHECK(count_color(rgb, 640, 400, 255, 127, 14) > 200, "second series drawn in orange");
    CHECK(count_color(rgb, 640, 400, 0, 0, 0) > 2000, "axes, title and labels in black");
    CHECK(count_color(rgb, 640, 400, 40, 40, 40) > 300, "tick labels and legend text");
    CHECK(kit_plot_png(path, s, 2, &o, &err) == 0, "write: %s", err.msg);
    CHECK(kit_image_load_u8(path, 3, &back, &w, &h, &err) == 0 && w == 640 && h == 400, "read back: %s", err.msg);
    CHECK(back && !memcmp(back, rgb, 640 * 400 * 3), "PNG holds exactly the rendered pixels");
    free(back);

    o.log_y = 1;
    CHECK(kit_plot_render(s, 2, &o, rgb) == 0, "log-y render");
    odd[0].name = "nan/inf/neg"; odd[0].x = NULL; odd[0].y = weird; odd[0].n = 6;
    odd[1].name = "one point"; odd[1].x = NULL; odd[1].y = &one; odd[1].n = 1;
    odd[2].name = "flat"; odd[2].x = NULL; odd[2].y = flat; odd[2].n = 4;
    CHECK(kit_plot_render(odd, 3, &o, rgb) == 0, "odd data on a log axis");
    o.log_y = 0;
    CHECK(kit_plot_render(odd + 2, 1, &o, rgb) == 0 && count_color(rgb, 640, 400, 31, 119, 180) > 100, "a flat line still shows");
    CHECK(kit_plot_render(NULL, 0, &o, rgb) == 0, "no series: empty axes");
    o.width = 50;
    CHECK(kit_plot_png("/tmp/kit_never.png", s, 2, &o, &err) == KIT_ERR_ARG && strstr(err.msg, "too small"), "tiny plot refused: %s", err.msg);
    o.width = 640;
    CHECK(kit_plot_png("/nonexistent/dir/p.png", s, 2, &o, &err) == KIT_ERR_IO, "unwritable path reported");

    for (i = 32; i < 127; i++) if (!kit_font_glyph((char)i) && !(i >= 'a' && i <= 'z')) break;
    CHECK(i == 127 || strchr("~`{}|\\^@$&;", i) != NULL, "font covers digits, capitals and common punctuation (first gap '%c')", i);
    CHECK(kit_font_glyph('e') == kit_font_glyph('E') && kit_font_glyph('~') == NULL, "lower case maps to capitals; missing glyphs are NULL");
    g = kit_font_glyph('8');
    for (i = 0; i < 7; i++) ink += g[i] != 0;
    CHECK(ink == 7 && g[0] == 0x0E && g[3] == 0x0E, "glyph rows are 5-bit masks");
    CHECK(kit_text_width("loss", 1) == 23 && kit_text_width("", 2) == 0 && kit_text_width("ab", 2) == 22, "text widths");
    memset(rgb, 0, 40 * 10 * 3);
    {
        static const unsigned char white[3] = {255, 255, 255};
        kit_draw_text(rgb, 40, 10, 1, 1, "1", 1, white);
        CHECK(count_color(rgb, 40, 10, 255, 255, 255) == 10, "'1' has 10 ink pixels");
        kit_draw_text(rgb, 40, 10, 35, 5, "WWW", 1, white); /* clipped at the edges, no overflow */
    }
    free(rgb);
    return test_summary();
}
