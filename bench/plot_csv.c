/* bench/plot_csv.c - a loss-curve PNG from a CSV of "series,x,y" lines (e.g. tests/test_amp's AMP_CURVES file):
   one line per series, in the order they first appear, log-scale y.

       cc -O2 -D_POSIX_C_SOURCE=200809L -Isamples/kit bench/plot_csv.c -o build/plot_csv -lstb -lm
       build/plot_csv curves.csv curves.png "title" "x label" "y label"                                */
#define KIT_IMPLEMENTATION
#include "kit_image.h"
#include "kit_plot.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SERIES 16

int main(int argc, char **argv) {
    static char names[MAX_SERIES][256];
    float *xs[MAX_SERIES] = {0}, *ys[MAX_SERIES] = {0};
    size_t n[MAX_SERIES] = {0}, cap[MAX_SERIES] = {0};
    kit_series s[MAX_SERIES];
    kit_plot_opts o = {900, 520, NULL, NULL, NULL, 1};
    kit_err err;
    char line[256];
    int ns = 0, k, lineno = 0;
    FILE *f;
    if (argc < 3) { fprintf(stderr, "usage: %s in.csv out.png [title] [xlabel] [ylabel]\n", argv[0]); return 2; }
    if (!(f = fopen(argv[1], "r"))) { fprintf(stderr, "plot_csv: cannot open %s\n", argv[1]); return 1; }
    while (fgets(line, sizeof line, f)) {
        char *c1 = strchr(line, ','), *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        lineno++;
        if (!c2) { fprintf(stderr, "plot_csv: %s:%d: expected series,x,y\n", argv[1], lineno); return 1; }
        *c1 = 0;
        for (k = 0; k < ns && strcmp(names[k], line) != 0; k++) {}
        if (k == ns) {
            if (ns == MAX_SERIES) { fprintf(stderr, "plot_csv: more than %d series\n", MAX_SERIES); return 1; }
            snprintf(names[ns++], sizeof names[0], "%s", line);
        }
        if (n[k] == cap[k]) {
            cap[k] = cap[k] ? 2 * cap[k] : 256;
            xs[k] = (float *)realloc(xs[k], cap[k] * sizeof(float));
            ys[k] = (float *)realloc(ys[k], cap[k] * sizeof(float));
            if (!xs[k] || !ys[k]) { fprintf(stderr, "plot_csv: out of memory\n"); return 1; }
        }
        xs[k][n[k]] = strtof(c1 + 1, NULL);
        ys[k][n[k]++] = strtof(c2 + 1, NULL);
    }
    fclose(f);
    for (k = 0; k < ns; k++) { s[k].name = names[k]; s[k].x = xs[k]; s[k].y = ys[k]; s[k].n = n[k]; }
    o.title = argc > 3 ? argv[3] : NULL;
    o.xlabel = argc > 4 ? argv[4] : NULL;
    o.ylabel = argc > 5 ? argv[5] : NULL;
    if (kit_plot_png(argv[2], s, ns, &o, &err)) { fprintf(stderr, "plot_csv: %s\n", err.msg); return 1; }
    for (k = 0; k < ns; k++) { free(xs[k]); free(ys[k]); }
    return 0;
}
