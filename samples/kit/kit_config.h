/* kit_config.h - YAML configuration with a declared schema.

   A sample declares every key it reads (dotted path "section.key", type, default, range, one line of
   doc), then loads a YAML file and command-line overrides on top. Keys missing from the file keep their
   defaults, so a partial file works (seed 001, requirement 7). Anything the schema does not expect is an
   error naming the file, line and column: an unknown key (with a did-you-mean), a wrong type, a value out
   of range, a duplicate key. The effective configuration can be written back out as YAML, to print at
   start and to store in checkpoints; that text loads again with kit_cfg_load_string.

       kit_cfg *cfg = kit_cfg_new();
       kit_cfg_add_string(cfg, "data.data_dir", "data/images", NULL, "folder of model subfolders");
       kit_cfg_add_int   (cfg, "training.batch_size", 2, 1, 4096, "images per micro-batch");
       kit_cfg_add_float (cfg, "training.learning_rate", 1e-4, 0, 1, "AdamW peak learning rate");
       kit_cfg_add_bool  (cfg, "training.use_amp", 1, "mixed precision");
       if (kit_cfg_parse_args(cfg, &argc, argv) != 0) { fputs(kit_cfg_error(cfg), stderr); return 2; }
       int bs = (int)kit_cfg_int(cfg, "training.batch_size");

   Parsing uses libyaml (link -lyaml). Scalars are typed by the schema, not guessed:
     int     decimal integer ("12", "-3"); "1.0", "1e3" and quoted "12" are rejected
     float   decimal or exponent ("3", "0.5", "1e-4" - unlike PyYAML, which reads 1e-4 as a string),
             ".inf"/"-.inf"; NaN is rejected
     bool    true/false, yes/no, on/off (YAML 1.1 spellings, any of lower/Title/UPPER case)
     string  any scalar, quoted or not; an empty value must be written "" (a bare `key:` is an error)
     floats  a list of numbers, flow [0.5, 0.5] or block style, optionally of a fixed length
   --set overrides (`--set training.batch_size=4`) use the same rules; for string keys the text after
   '=' is taken literally. */
#ifndef KIT_CONFIG_H
#define KIT_CONFIG_H
#include "kit_base.h"
#include <math.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kit_cfg kit_cfg;
typedef enum { KIT_CFG_INT, KIT_CFG_FLOAT, KIT_CFG_BOOL, KIT_CFG_STRING, KIT_CFG_FLOATS } kit_cfg_type;

#define KIT_CFG_NO_MIN (-HUGE_VAL)  /* pass as min/max of a float key without a bound */
#define KIT_CFG_NO_MAX (HUGE_VAL)

kit_cfg *kit_cfg_new(void);
void kit_cfg_free(kit_cfg *cfg);

/* Declarations. Keys are dotted paths of [A-Za-z0-9_] names; a path is either a key or a section,
   never both. A bad declaration (duplicate, default out of its own range) is a programming error. */
void kit_cfg_add_int(kit_cfg *cfg, const char *key, long long def, long long min, long long max, const char *doc);
void kit_cfg_add_float(kit_cfg *cfg, const char *key, double def, double min, double max, const char *doc);
void kit_cfg_add_bool(kit_cfg *cfg, const char *key, int def, const char *doc);
/* choices: NULL for any string, or "a|b|c" to allow only those values. */
void kit_cfg_add_string(kit_cfg *cfg, const char *key, const char *def, const char *choices, const char *doc);
/* A list of numbers, each in [min, max]; length: 0 for any length, else exactly that many. */
void kit_cfg_add_floats(kit_cfg *cfg, const char *key, const double *def, int n_def, int length,
                        double min, double max, const char *doc);

/* Loading. Each returns 0, or -1 with every problem found listed by kit_cfg_error(), one per line
   ("file:line:col: message"). Values that were valid are applied even when others were not. */
int kit_cfg_load_file(kit_cfg *cfg, const char *path);
int kit_cfg_load_string(kit_cfg *cfg, const char *yaml, const char *name /* used in messages */);
int kit_cfg_set(kit_cfg *cfg, const char *assignment /* "section.key=value" */);
/* Takes "--config FILE" / "--config=FILE" and any number of "--set K=V" / "--set=K=V" out of argv
   (argc is updated, other arguments keep their order), loads the file, then applies the overrides in
   order. Returns 0 or -1 as above. */
int kit_cfg_parse_args(kit_cfg *cfg, int *argc, char **argv);
const char *kit_cfg_error(const kit_cfg *cfg);
/* The config file loaded by the last kit_cfg_parse_args / kit_cfg_load_file, or NULL. */
const char *kit_cfg_file(const kit_cfg *cfg);

/* Getters. Asking for an undeclared key or with the wrong type is a programming error (abort). */
long long kit_cfg_int(const kit_cfg *cfg, const char *key);
double kit_cfg_float(const kit_cfg *cfg, const char *key);
int kit_cfg_bool(const kit_cfg *cfg, const char *key);
const char *kit_cfg_string(const kit_cfg *cfg, const char *key);
const double *kit_cfg_floats(const kit_cfg *cfg, const char *key, int *n);
/* Where the value came from: "default", "file.yaml:12" or "--set". */
const char *kit_cfg_where(const kit_cfg *cfg, const char *key);

/* The effective configuration as YAML (nested sections, keys in declaration order), malloc'd; free()
   it. With docs != 0 each key gets its doc as a trailing comment. The text loads back unchanged. */
char *kit_cfg_dump(const kit_cfg *cfg, int docs);
void kit_cfg_print(const kit_cfg *cfg, FILE *out); /* kit_cfg_dump(cfg, 0) to out */
/* Every key with its type, default, range and doc: the text for a --help. */
void kit_cfg_print_help(const kit_cfg *cfg, FILE *out);

/* Levenshtein distance, exposed for the tests. */
size_t kit_edit_distance(const char *a, const char *b);

#ifdef __cplusplus
}
#endif
#endif /* KIT_CONFIG_H */

#if defined(KIT_IMPLEMENTATION) && !defined(KIT_CONFIG_IMPLEMENTED)
#define KIT_CONFIG_IMPLEMENTED
#include <yaml.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *key, *doc, *choices;
    kit_cfg_type type;
    long long i, imin, imax;
    double f, fmin, fmax;
    double *v; int nv, length;   /* floats */
    char *s;
    int b;
    char where[256];              /* "default", "file:line" or "--set" */
    char def_text[128];           /* default as text, for help */
} kit__cfg_entry;

struct kit_cfg {
    kit__cfg_entry *e;
    int n, cap;
    char *err; size_t err_len, err_cap; int nerr;
    char *file;
    /* per-load state */
    const char *src_name;
    int *set_line;                /* line (1-based) a key was set at in the current load, 0 if not */
};

static char *kit__strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = (char *)malloc(n);
    if (!d) kit_panic("out of memory");
    memcpy(d, s, n);
    return d;
}

kit_cfg *kit_cfg_new(void) {
    kit_cfg *c = (kit_cfg *)calloc(1, sizeof *c);
    if (!c) kit_panic("out of memory");
    return c;
}

void kit_cfg_free(kit_cfg *c) {
    int i;
    if (!c) return;
    for (i = 0; i < c->n; i++) {
        free(c->e[i].key); free(c->e[i].doc); free(c->e[i].choices); free(c->e[i].v); free(c->e[i].s);
    }
    free(c->e); free(c->err); free(c->file); free(c->set_line);
    free(c);
}

static void kit__cfg_errf(kit_cfg *c, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void kit__cfg_errf(kit_cfg *c, const char *fmt, ...) {
    char line[1024];
    size_t n;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    n = strlen(line);
    if (c->err_len + n + 2 > c->err_cap) {
        c->err_cap = (c->err_len + n + 2) * 2;
        c->err = (char *)realloc(c->err, c->err_cap);
        if (!c->err) kit_panic("out of memory");
    }
    memcpy(c->err + c->err_len, line, n);
    c->err_len += n;
    c->err[c->err_len++] = '\n';
    c->err[c->err_len] = 0;
    c->nerr++;
}

const char *kit_cfg_error(const kit_cfg *c) { return c->err ? c->err : ""; }
const char *kit_cfg_file(const kit_cfg *c) { return c->file; }

static int kit__cfg_find(const kit_cfg *c, const char *key) {
    int i;
    for (i = 0; i < c->n; i++) if (strcmp(c->e[i].key, key) == 0) return i;
    return -1;
}

/* Is `path` a proper prefix (a section) of some declared key? */
static int kit__cfg_is_section(const kit_cfg *c, const char *path) {
    size_t n = strlen(path);
    int i;
    for (i = 0; i < c->n; i++)
        if (strncmp(c->e[i].key, path, n) == 0 && c->e[i].key[n] == '.') return 1;
    return 0;
}

static kit__cfg_entry *kit__cfg_declare(kit_cfg *c, const char *key, kit_cfg_type t, const char *doc) {
    kit__cfg_entry *e;
    const char *p;
    int i;
    if (!key || !*key || key[0] == '.' || key[strlen(key) - 1] == '.' || strstr(key, ".."))
        kit_panic("config key '%s' is not a dotted path", key ? key : "(null)");
    for (p = key; *p; p++)
        if (!(*p == '.' || *p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            kit_panic("config key '%s': names may use only letters, digits and _", key);
    if (kit__cfg_find(c, key) >= 0) kit_panic("config key '%s' declared twice", key);
    if (kit__cfg_is_section(c, key)) kit_panic("config key '%s' is already a section", key);
    for (i = 0; i < c->n; i++) {
        size_t n = strlen(c->e[i].key);
        if (strncmp(key, c->e[i].key, n) == 0 && key[n] == '.')
            kit_panic("config key '%s' would make key '%s' a section", key, c->e[i].key);
    }
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 32;
        c->e = (kit__cfg_entry *)realloc(c->e, (size_t)c->cap * sizeof *c->e);
        if (!c->e) kit_panic("out of memory");
    }
    e = &c->e[c->n++];
    memset(e, 0, sizeof *e);
    e->key = kit__strdup(key);
    e->doc = kit__strdup(doc ? doc : "");
    e->type = t;
    strcpy(e->where, "default");
    return e;
}

void kit_cfg_add_int(kit_cfg *c, const char *key, long long def, long long min, long long max, const char *doc) {
    kit__cfg_entry *e = kit__cfg_declare(c, key, KIT_CFG_INT, doc);
    if (def < min || def > max) kit_panic("config key '%s': default %lld outside [%lld, %lld]", key, def, min, max);
    e->i = def; e->imin = min; e->imax = max;
    snprintf(e->def_text, sizeof e->def_text, "%lld", def);
}

static void kit__fmt_float(char *buf, size_t n, double v);

void kit_cfg_add_float(kit_cfg *c, const char *key, double def, double min, double max, const char *doc) {
    kit__cfg_entry *e = kit__cfg_declare(c, key, KIT_CFG_FLOAT, doc);
    if (!(def >= min && def <= max)) kit_panic("config key '%s': default %g outside [%g, %g]", key, def, min, max);
    e->f = def; e->fmin = min; e->fmax = max;
    kit__fmt_float(e->def_text, sizeof e->def_text, def);
}

void kit_cfg_add_bool(kit_cfg *c, const char *key, int def, const char *doc) {
    kit__cfg_entry *e = kit__cfg_declare(c, key, KIT_CFG_BOOL, doc);
    e->b = def != 0;
    strcpy(e->def_text, e->b ? "true" : "false");
}

static int kit__choice_ok(const char *choices, const char *v) {
    size_t n = strlen(v);
    const char *p = choices;
    while (p) {
        const char *bar = strchr(p, '|');
        size_t len = bar ? (size_t)(bar - p) : strlen(p);
        if (len == n && strncmp(p, v, n) == 0) return 1;
        p = bar ? bar + 1 : NULL;
    }
    return 0;
}

void kit_cfg_add_string(kit_cfg *c, const char *key, const char *def, const char *choices, const char *doc) {
    kit__cfg_entry *e = kit__cfg_declare(c, key, KIT_CFG_STRING, doc);
    if (!def) def = "";
    if (choices && !kit__choice_ok(choices, def)) kit_panic("config key '%s': default '%s' not in %s", key, def, choices);
    e->s = kit__strdup(def);
    e->choices = choices ? kit__strdup(choices) : NULL;
    snprintf(e->def_text, sizeof e->def_text, "\"%s\"", def);
}

void kit_cfg_add_floats(kit_cfg *c, const char *key, const double *def, int n_def, int length,
                        double min, double max, const char *doc) {
    kit__cfg_entry *e = kit__cfg_declare(c, key, KIT_CFG_FLOATS, doc);
    int i;
    size_t off = 0;
    if (n_def < 0 || (length > 0 && n_def != length)) kit_panic("config key '%s': default has %d values, not %d", key, n_def, length);
    e->v = (double *)malloc(sizeof(double) * (size_t)(n_def > 0 ? n_def : 1));
    if (!e->v) kit_panic("out of memory");
    for (i = 0; i < n_def; i++) {
        if (!(def[i] >= min && def[i] <= max)) kit_panic("config key '%s': default value %g outside [%g, %g]", key, def[i], min, max);
        e->v[i] = def[i];
    }
    e->nv = n_def; e->length = length; e->fmin = min; e->fmax = max;
    e->def_text[off++] = '[';
    for (i = 0; i < n_def && off < sizeof e->def_text - 40; i++) {
        if (i) { e->def_text[off++] = ','; e->def_text[off++] = ' '; }
        kit__fmt_float(e->def_text + off, sizeof e->def_text - off, def[i]);
        off += strlen(e->def_text + off);
    }
    e->def_text[off++] = ']';
    e->def_text[off] = 0;
}

static const kit__cfg_entry *kit__cfg_get(const kit_cfg *c, const char *key, kit_cfg_type t) {
    static const char *names[] = {"int", "float", "bool", "string", "floats"};
    int i = kit__cfg_find(c, key);
    if (i < 0) kit_panic("config key '%s' was never declared", key);
    if (c->e[i].type != t) kit_panic("config key '%s' is a %s, read as a %s", key, names[c->e[i].type], names[t]);
    return &c->e[i];
}
long long kit_cfg_int(const kit_cfg *c, const char *key) { return kit__cfg_get(c, key, KIT_CFG_INT)->i; }
double kit_cfg_float(const kit_cfg *c, const char *key) { return kit__cfg_get(c, key, KIT_CFG_FLOAT)->f; }
int kit_cfg_bool(const kit_cfg *c, const char *key) { return kit__cfg_get(c, key, KIT_CFG_BOOL)->b; }
const char *kit_cfg_string(const kit_cfg *c, const char *key) { return kit__cfg_get(c, key, KIT_CFG_STRING)->s; }
const double *kit_cfg_floats(const kit_cfg *c, const char *key, int *n) {
    const kit__cfg_entry *e = kit__cfg_get(c, key, KIT_CFG_FLOATS);
    if (n) *n = e->nv;
    return e->v;
}
const char *kit_cfg_where(const kit_cfg *c, const char *key) {
    int i = kit__cfg_find(c, key);
    if (i < 0) kit_panic("config key '%s' was never declared", key);
    return c->e[i].where;
}

size_t kit_edit_distance(const char *a, const char *b) {
    /* Classic two-row dynamic programme; names are short. */
    size_t la = strlen(a), lb = strlen(b), i, j, *prev, *cur, *tmp, d;
    prev = (size_t *)malloc((lb + 1) * sizeof *prev);
    cur = (size_t *)malloc((lb + 1) * sizeof *cur);
    if (!prev || !cur) kit_panic("out of memory");
    for (j = 0; j <= lb; j++) prev[j] = j;
    for (i = 1; i <= la; i++) {
        cur[0] = i;
        for (j = 1; j <= lb; j++) {
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1, sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            cur[j] = del < ins ? del : ins;
            if (sub < cur[j]) cur[j] = sub;
        }
        tmp = prev; prev = cur; cur = tmp;
    }
    d = prev[lb];
    free(prev); free(cur);
    return d;
}

/* ---- scalar parsing ---------------------------------------------------------------------------- */

static void kit__fmt_float(char *buf, size_t n, double v) {
    /* Shortest of %.15g..%.17g that reads back exactly, then made to look like a YAML 1.1 float
       (PyYAML reads "1e-05" as a string, "1.0e-05" as a float; "3" would read as an int). */
    int prec;
    char tmp[64], *e;
    if (isinf(v)) { snprintf(buf, n, v > 0 ? ".inf" : "-.inf"); return; }
    if (isnan(v)) { snprintf(buf, n, ".nan"); return; }
    for (prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    if (!strchr(tmp, '.') && !strchr(tmp, 'n')) {
        e = strchr(tmp, 'e');
        if (e) { char rest[32]; snprintf(rest, sizeof rest, "%s", e); snprintf(e, sizeof tmp - (size_t)(e - tmp), ".0%s", rest); }
        else strcat(tmp, ".0");
    }
    snprintf(buf, n, "%s", tmp);
}

static int kit__is_null(const char *s) {
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

static int kit__parse_int(const char *s, long long *out, int *overflow) {
    char *end;
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!*p) return 0;
    for (; *p; p++) if (*p < '0' || *p > '9') return 0;
    errno = 0;
    *out = strtoll(s, &end, 10);
    *overflow = errno == ERANGE;
    return 1;
}

static int kit__parse_float(const char *s, double *out) {
    const char *p = s;
    char *end;
    int digits = 0;
    if (!strcmp(s, ".inf") || !strcmp(s, ".Inf") || !strcmp(s, ".INF") || !strcmp(s, "+.inf") ||
        !strcmp(s, "+.Inf") || !strcmp(s, "+.INF")) { *out = HUGE_VAL; return 1; }
    if (!strcmp(s, "-.inf") || !strcmp(s, "-.Inf") || !strcmp(s, "-.INF")) { *out = -HUGE_VAL; return 1; }
    /* Only decimal notation: strtod alone would also take "nan", "infinity" and hex floats. */
    for (; *p; p++) {
        if (*p >= '0' && *p <= '9') digits++;
        else if (!strchr("+-.eE", *p)) return 0;
    }
    if (!digits) return 0;
    *out = strtod(s, &end);
    return *end == 0;
}

static int kit__parse_bool(const char *s, int *out) {
    static const char *yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
    static const char *no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
    size_t i;
    for (i = 0; i < sizeof yes / sizeof *yes; i++) {
        if (!strcmp(s, yes[i])) { *out = 1; return 1; }
        if (!strcmp(s, no[i])) { *out = 0; return 1; }
    }
    return 0;
}

/* ---- applying YAML nodes ----------------------------------------------------------------------- */

typedef struct {
    kit_cfg *c;
    yaml_document_t *doc;
    char where[300];    /* message prefix for the node being handled: "file:line:col" or "--set k=v" */
    int marks;          /* 1: node marks are lines of a file (0 for --set values) */
} kit__cfg_ctx;

static void kit__cfg_where(kit__cfg_ctx *x, const yaml_node_t *node) {
    if (node && x->marks) snprintf(x->where, sizeof x->where, "%s:%lu:%lu", x->c->src_name,
                       (unsigned long)node->start_mark.line + 1, (unsigned long)node->start_mark.column + 1);
}

static const char *kit__node_kind(const yaml_node_t *n) {
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    return "a scalar";
}

static const char *kit__type_name(kit_cfg_type t) {
    switch (t) {
    case KIT_CFG_INT: return "an integer";
    case KIT_CFG_FLOAT: return "a number";
    case KIT_CFG_BOOL: return "true or false";
    case KIT_CFG_STRING: return "a string";
    default: return "a list of numbers";
    }
}

/* Parses one scalar node as a number for a float or floats key. Returns 1 on success. */
static int kit__node_number(kit__cfg_ctx *x, kit__cfg_entry *e, yaml_node_t *n, double *out, const char *what) {
    const char *s = (const char *)n->data.scalar.value;
    if (n->type != YAML_SCALAR_NODE) {
        kit__cfg_errf(x->c, "%s: %s: expected a number, got %s", x->where, what, kit__node_kind(n));
        return 0;
    }
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        kit__cfg_errf(x->c, "%s: %s: expected a number, got the quoted string \"%s\"", x->where, what, s);
        return 0;
    }
    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) {
        kit__cfg_errf(x->c, "%s: %s: NaN is not allowed", x->where, what);
        return 0;
    }
    if (!kit__parse_float(s, out)) {
        kit__cfg_errf(x->c, "%s: %s: expected a number, got '%s'", x->where, what, s);
        return 0;
    }
    if (!(*out >= e->fmin && *out <= e->fmax)) {
        char lo[40], hi[40];
        kit__fmt_float(lo, sizeof lo, e->fmin);
        kit__fmt_float(hi, sizeof hi, e->fmax);
        kit__cfg_errf(x->c, "%s: %s = %s is out of range [%s, %s]", x->where, what, s, lo, hi);
        return 0;
    }
    return 1;
}

/* Suggestion for a misspelt choice or key: the closest candidate within a third of the length. */
static const char *kit__closest(const char *word, const char **cands, int n) {
    size_t best = (size_t)-1, lim = strlen(word) / 3 + 1;
    const char *pick = NULL;
    int i;
    if (lim < 2) lim = 2;
    for (i = 0; i < n; i++) {
        size_t d = kit_edit_distance(word, cands[i]);
        if (d < best) { best = d; pick = cands[i]; }
    }
    return best <= lim ? pick : NULL;
}

static void kit__cfg_apply(kit__cfg_ctx *x, kit__cfg_entry *e, yaml_node_t *n, const char *raw_string) {
    const char *s;
    int *mark = &x->c->set_line[e - x->c->e];
    if (raw_string) { /* a --set of a string key: the text after '=' as is */
        if (e->choices && !kit__choice_ok(e->choices, raw_string)) goto bad_choice_raw;
        free(e->s);
        e->s = kit__strdup(raw_string);
        *mark = -1;
        return;
    }
    if (e->type == KIT_CFG_FLOATS) {
        double *vals;
        int count, i, ok = 1;
        if (n->type == YAML_SCALAR_NODE && kit__is_null((const char *)n->data.scalar.value) &&
            n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
            kit__cfg_errf(x->c, "%s: %s has no value; write a list like [1.0, 2.0], or remove the line to use the default %s",
                          x->where, e->key, e->def_text);
            return;
        }
        if (n->type != YAML_SEQUENCE_NODE) {
            kit__cfg_errf(x->c, "%s: %s: expected a list of numbers like [1.0, 2.0], got %s", x->where, e->key, kit__node_kind(n));
            return;
        }
        count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (e->length > 0 && count != e->length) {
            kit__cfg_errf(x->c, "%s: %s: expected a list of %d numbers, got %d", x->where, e->key, e->length, count);
            return;
        }
        vals = (double *)malloc(sizeof(double) * (size_t)(count > 0 ? count : 1));
        if (!vals) kit_panic("out of memory");
        for (i = 0; i < count; i++) {
            char what[300];
            yaml_node_t *item = yaml_document_get_node(x->doc, n->data.sequence.items.start[i]);
            snprintf(what, sizeof what, "%s[%d]", e->key, i);
            kit__cfg_where(x, item);
            if (!kit__node_number(x, e, item, &vals[i], what)) ok = 0;
        }
        if (ok) { free(e->v); e->v = vals; e->nv = count; *mark = (int)n->start_mark.line + 1; }
        else free(vals);
        return;
    }
    if (n->type != YAML_SCALAR_NODE) {
        kit__cfg_errf(x->c, "%s: %s: expected %s, got %s", x->where, e->key, kit__type_name(e->type), kit__node_kind(n));
        return;
    }
    s = (const char *)n->data.scalar.value;
    if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && kit__is_null(s)) {
        kit__cfg_errf(x->c, "%s: %s has no value; give %s, or remove the line to use the default %s",
                      x->where, e->key, kit__type_name(e->type), e->def_text);
        return;
    }
    if (e->type == KIT_CFG_STRING) {
        if (e->choices && !kit__choice_ok(e->choices, s)) { raw_string = s; goto bad_choice_raw; }
        free(e->s);
        e->s = kit__strdup(s);
        *mark = (int)n->start_mark.line + 1;
        return;
    }
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        kit__cfg_errf(x->c, "%s: %s: expected %s, got the quoted string \"%s\"", x->where, e->key, kit__type_name(e->type), s);
        return;
    }
    if (e->type == KIT_CFG_INT) {
        long long v;
        int overflow;
        if (!kit__parse_int(s, &v, &overflow)) {
            kit__cfg_errf(x->c, "%s: %s: expected an integer, got '%s'", x->where, e->key, s);
        } else if (overflow || v < e->imin || v > e->imax) {
            kit__cfg_errf(x->c, "%s: %s = %s is out of range [%lld, %lld]", x->where, e->key, s, e->imin, e->imax);
        } else {
            e->i = v;
            *mark = (int)n->start_mark.line + 1;
        }
    } else if (e->type == KIT_CFG_FLOAT) {
        double v;
        if (kit__node_number(x, e, n, &v, e->key)) { e->f = v; *mark = (int)n->start_mark.line + 1; }
    } else {
        int v;
        if (!kit__parse_bool(s, &v)) kit__cfg_errf(x->c, "%s: %s: expected true or false, got '%s'", x->where, e->key, s);
        else { e->b = v; *mark = (int)n->start_mark.line + 1; }
    }
    return;
bad_choice_raw: {
        const char *cands[64], *sugg;
        char buf[1024], *p = buf;
        int nc = 0;
        snprintf(buf, sizeof buf, "%s", e->choices);
        while (p && nc < 64) { /* split "a|b|c" in place */
            char *bar = strchr(p, '|');
            cands[nc++] = p;
            if (bar) *bar = 0;
            p = bar ? bar + 1 : NULL;
        }
        sugg = kit__closest(raw_string, cands, nc);
        if (sugg)
            kit__cfg_errf(x->c, "%s: %s = '%s' is not one of %s (did you mean '%s'?)", x->where, e->key, raw_string, e->choices, sugg);
        else
            kit__cfg_errf(x->c, "%s: %s = '%s' is not one of %s", x->where, e->key, raw_string, e->choices);
    }
}

/* Error for an unknown `path` whose last name is `name`, with the best suggestion we can find:
   a near spelling among the names valid at this level, else a key elsewhere with the same name,
   else the list of valid names at this level. */
static void kit__cfg_unknown(kit__cfg_ctx *x, const char *path, const char *name, const char *prefix) {
    kit_cfg *c = x->c;
    const char **cands = (const char **)malloc(sizeof(char *) * (size_t)(c->n + 1));
    char (*names)[128] = (char (*)[128])malloc(128 * (size_t)(c->n + 1));
    char list[600], section[512];
    size_t plen = strlen(prefix), off = 0;
    const char *sugg;
    int i, j, nc = 0;
    if (!cands || !names) kit_panic("out of memory");
    for (i = 0; i < c->n; i++) { /* the distinct names one level below prefix */
        const char *k = c->e[i].key, *dot;
        size_t len;
        if (strncmp(k, prefix, plen) != 0) continue;
        dot = strchr(k + plen, '.');
        len = dot ? (size_t)(dot - (k + plen)) : strlen(k + plen);
        if (len >= 128) len = 127;
        memcpy(names[nc], k + plen, len);
        names[nc][len] = 0;
        for (j = 0; j < nc; j++) if (!strcmp(names[j], names[nc])) break;
        if (j == nc) { cands[nc] = names[nc]; nc++; }
    }
    sugg = kit__closest(name, cands, nc);
    if (sugg) {
        kit__cfg_errf(c, "%s: unknown key '%s' (did you mean '%s%s'?)", x->where, path, prefix, sugg);
    } else {
        for (i = 0; i < c->n; i++) { /* the same name in another section? */
            const char *dot = strrchr(c->e[i].key, '.');
            if (!strcmp(dot ? dot + 1 : c->e[i].key, name)) break;
        }
        if (i < c->n) {
            kit__cfg_errf(c, "%s: unknown key '%s' (did you mean '%s'?)", x->where, path, c->e[i].key);
        } else {
            list[0] = 0;
            for (j = 0; j < nc && off < sizeof list - 140; j++) {
                snprintf(list + off, sizeof list - off, "%s%s", j ? ", " : "", cands[j]);
                off += strlen(list + off);
            }
            if (j < nc) snprintf(list + off, sizeof list - off, ", ...");
            snprintf(section, sizeof section, "%.*s", plen ? (int)plen - 1 : 0, prefix);
            kit__cfg_errf(c, "%s: unknown key '%s' (valid %s%s%s: %s)", x->where, path,
                          plen ? "keys in '" : "top-level names", section, plen ? "'" : "", list);
        }
    }
    free(cands);
    free(names);
}

static void kit__cfg_walk(kit__cfg_ctx *x, yaml_node_t *map, const char *prefix, int depth) {
    yaml_node_pair_t *p, *q;
    if (depth > 16) { kit__cfg_errf(x->c, "%s: nesting too deep (a recursive alias?)", x->where); return; }
    for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(x->doc, p->key), *v = yaml_document_get_node(x->doc, p->value);
        const char *name;
        char path[512];
        int idx, dup = 0;
        kit__cfg_where(x, k);
        if (k->type != YAML_SCALAR_NODE) { kit__cfg_errf(x->c, "%s: keys must be plain names, got %s", x->where, kit__node_kind(k)); continue; }
        name = (const char *)k->data.scalar.value;
        for (q = map->data.mapping.pairs.start; q < p; q++) { /* libyaml accepts duplicate keys; we don't */
            yaml_node_t *k2 = yaml_document_get_node(x->doc, q->key);
            if (k2->type == YAML_SCALAR_NODE && !strcmp((const char *)k2->data.scalar.value, name)) {
                kit__cfg_errf(x->c, "%s: duplicate key '%s%s' (first given at line %lu)", x->where, prefix, name,
                              (unsigned long)k2->start_mark.line + 1);
                dup = 1;
                break;
            }
        }
        if (dup) continue;
        snprintf(path, sizeof path, "%s%s", prefix, name);
        idx = kit__cfg_find(x->c, path);
        if (idx >= 0) {
            kit__cfg_where(x, v);
            kit__cfg_apply(x, &x->c->e[idx], v, NULL);
        } else if (kit__cfg_is_section(x->c, path)) {
            char sub[520];
            if (v->type == YAML_SCALAR_NODE && v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                kit__is_null((const char *)v->data.scalar.value)) continue; /* "training:" alone: an empty section */
            if (v->type != YAML_MAPPING_NODE) {
                kit__cfg_where(x, v);
                kit__cfg_errf(x->c, "%s: '%s' is a section and needs indented keys below it, got %s", x->where, path, kit__node_kind(v));
                continue;
            }
            snprintf(sub, sizeof sub, "%s.", path);
            kit__cfg_walk(x, v, sub, depth + 1);
        } else {
            kit__cfg_unknown(x, path, name, prefix);
        }
    }
}

static void kit__cfg_begin(kit_cfg *c, const char *name) {
    c->err_len = 0;
    if (c->err) c->err[0] = 0;
    c->nerr = 0;
    c->src_name = name;
    free(c->set_line);
    c->set_line = (int *)calloc((size_t)(c->n ? c->n : 1), sizeof(int));
    if (!c->set_line) kit_panic("out of memory");
}

static void kit__cfg_end(kit_cfg *c, const char *where_fmt_name, int is_set) {
    int i;
    for (i = 0; i < c->n; i++) {
        if (!c->set_line[i]) continue;
        if (is_set) snprintf(c->e[i].where, sizeof c->e[i].where, "--set");
        else snprintf(c->e[i].where, sizeof c->e[i].where, "%s:%d", where_fmt_name, c->set_line[i]);
    }
}

static void kit__yaml_syntax_error(kit_cfg *c, yaml_parser_t *p) {
    if (p->context)
        kit__cfg_errf(c, "%s:%lu:%lu: YAML syntax error: %s %s (line %lu)", c->src_name,
                      (unsigned long)p->problem_mark.line + 1, (unsigned long)p->problem_mark.column + 1,
                      p->problem ? p->problem : "", p->context, (unsigned long)p->context_mark.line + 1);
    else
        kit__cfg_errf(c, "%s:%lu:%lu: YAML syntax error: %s", c->src_name, (unsigned long)p->problem_mark.line + 1,
                      (unsigned long)p->problem_mark.column + 1, p->problem ? p->problem : "unknown");
}

static int kit__cfg_load_buffer(kit_cfg *c, const char *text, size_t len, const char *name) {
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    kit__cfg_ctx x;
    kit__cfg_begin(c, name);
    x.c = c;
    x.doc = &doc;
    x.marks = 1;
    snprintf(x.where, sizeof x.where, "%s", name);
    if (!yaml_parser_initialize(&parser)) kit_panic("out of memory");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        kit__yaml_syntax_error(c, &parser);
        yaml_parser_delete(&parser);
        return -1;
    }
    root = yaml_document_get_root_node(&doc);
    if (root) {
        if (root->type == YAML_MAPPING_NODE) {
            kit__cfg_walk(&x, root, "", 0);
        } else if (!(root->type == YAML_SCALAR_NODE && root->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                     kit__is_null((const char *)root->data.scalar.value))) {
            kit__cfg_where(&x, root);
            kit__cfg_errf(c, "%s: the top level must be a mapping of sections (like 'training:'), got %s", x.where, kit__node_kind(root));
        }
        yaml_document_delete(&doc);
        /* A second document would silently be ignored; say so instead. */
        if (!yaml_parser_load(&parser, &doc)) {
            kit__yaml_syntax_error(c, &parser);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&doc);
            if (r2) kit__cfg_errf(c, "%s:%lu: a second YAML document ('---'); a config file holds one", name,
                                  (unsigned long)r2->start_mark.line + 1);
            yaml_document_delete(&doc);
        }
    } else {
        yaml_document_delete(&doc); /* an empty file: every key keeps its default */
    }
    yaml_parser_delete(&parser);
    kit__cfg_end(c, name, 0);
    return c->nerr ? -1 : 0;
}

int kit_cfg_load_string(kit_cfg *c, const char *yaml, const char *name) {
    return kit__cfg_load_buffer(c, yaml, strlen(yaml), name ? name : "<string>");
}

int kit_cfg_load_file(kit_cfg *c, const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t len = 0, cap = 4096, got;
    int rc;
    if (!f) {
        kit__cfg_begin(c, path);
        kit__cfg_errf(c, "%s: cannot open config file: %s", path, strerror(errno));
        return -1;
    }
    buf = (char *)malloc(cap);
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) buf = (char *)realloc(buf, cap *= 2);
    }
    if (!buf) kit_panic("out of memory");
    if (ferror(f)) {
        fclose(f);
        free(buf);
        kit__cfg_begin(c, path);
        kit__cfg_errf(c, "%s: read error: %s", path, strerror(errno));
        return -1;
    }
    fclose(f);
    free(c->file);
    c->file = kit__strdup(path);
    rc = kit__cfg_load_buffer(c, buf, len, c->file);
    free(buf);
    return rc;
}

/* Applies one "--set key=value" without resetting the error list (so parse_args collects all). */
static void kit__cfg_set_one(kit_cfg *c, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    char key[512];
    kit__cfg_ctx x;
    int idx;
    x.c = c;
    x.doc = NULL;
    x.marks = 0;
    snprintf(x.where, sizeof x.where, "--set %s", assignment);
    if (!eq || eq == assignment || (size_t)(eq - assignment) >= sizeof key) {
        kit__cfg_errf(c, "%s: expected section.key=value", x.where);
        return;
    }
    memcpy(key, assignment, (size_t)(eq - assignment));
    key[eq - assignment] = 0;
    idx = kit__cfg_find(c, key);
    if (idx < 0) {
        const char *dot = strrchr(key, '.');
        char prefix[512] = "";
        if (kit__cfg_is_section(c, key)) { kit__cfg_errf(c, "%s: '%s' is a section, not a key", x.where, key); return; }
        if (dot) { memcpy(prefix, key, (size_t)(dot - key)); prefix[dot - key] = 0; }
        if (dot && !kit__cfg_is_section(c, prefix)) {
            /* the section itself is unknown: suggest among full keys */
            const char **cands = (const char **)malloc(sizeof(char *) * (size_t)(c->n + 1));
            const char *s;
            int i;
            if (!cands) kit_panic("out of memory");
            for (i = 0; i < c->n; i++) cands[i] = c->e[i].key;
            s = kit__closest(key, cands, c->n);
            if (s) kit__cfg_errf(c, "%s: unknown key '%s' (did you mean '%s'?)", x.where, key, s);
            else kit__cfg_errf(c, "%s: unknown key '%s'", x.where, key);
            free(cands);
            return;
        }
        if (dot) strcat(prefix, ".");
        kit__cfg_unknown(&x, key, dot ? dot + 1 : key, prefix);
        return;
    }
    if (c->e[idx].type == KIT_CFG_STRING) {
        kit__cfg_apply(&x, &c->e[idx], NULL, eq + 1);
        return;
    } else {
        yaml_parser_t parser;
        yaml_document_t doc;
        yaml_node_t *root;
        const char *val = eq + 1;
        if (!yaml_parser_initialize(&parser)) kit_panic("out of memory");
        yaml_parser_set_input_string(&parser, (const unsigned char *)val, strlen(val));
        if (!yaml_parser_load(&parser, &doc)) {
            kit__cfg_errf(c, "%s: cannot parse the value: %s", x.where, parser.problem ? parser.problem : "YAML error");
            yaml_parser_delete(&parser);
            return;
        }
        x.doc = &doc;
        root = yaml_document_get_root_node(&doc);
        if (!root) kit__cfg_errf(c, "%s: %s has no value; give %s", x.where, key, kit__type_name(c->e[idx].type));
        else kit__cfg_apply(&x, &c->e[idx], root, NULL);
        yaml_document_delete(&doc);
        yaml_parser_delete(&parser);
    }
}

int kit_cfg_set(kit_cfg *c, const char *assignment) {
    kit__cfg_begin(c, "--set");
    kit__cfg_set_one(c, assignment);
    kit__cfg_end(c, "--set", 1);
    return c->nerr ? -1 : 0;
}

int kit_cfg_parse_args(kit_cfg *c, int *argc, char **argv) {
    const char *file = NULL;
    const char **sets = (const char **)malloc(sizeof(char *) * (size_t)(*argc + 1));
    char *saved_err = NULL;
    int i, out = 1, nsets = 0, file_errors = 0, rc;
    if (!sets) kit_panic("out of memory");
    for (i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config") || !strcmp(a, "--set")) {
            if (i + 1 >= *argc) {
                kit__cfg_begin(c, "args");
                kit__cfg_errf(c, "%s needs an argument", a);
                free(sets);
                return -1;
            }
            if (a[2] == 'c') file = argv[++i]; else sets[nsets++] = argv[++i];
        } else if (!strncmp(a, "--config=", 9)) {
            file = a + 9;
        } else if (!strncmp(a, "--set=", 6)) {
            sets[nsets++] = a + 6;
        } else {
            argv[out++] = argv[i];
        }
    }
    if (out < *argc) argv[out] = NULL;
    *argc = out;
    if (file) {
        file_errors = kit_cfg_load_file(c, file) != 0;
        if (file_errors) saved_err = kit__strdup(kit_cfg_error(c));
    }
    kit__cfg_begin(c, "--set");
    for (i = 0; i < nsets; i++) kit__cfg_set_one(c, sets[i]);
    kit__cfg_end(c, "--set", 1);
    rc = (c->nerr || file_errors) ? -1 : 0;
    if (saved_err) { /* file errors first, then --set errors */
        char *set_err = kit__strdup(kit_cfg_error(c));
        int nset = c->nerr;
        c->err_len = 0;
        c->nerr = 0;
        c->err[0] = 0;
        kit__cfg_errf(c, "%.*s", (int)(strlen(saved_err) - 1), saved_err);
        if (nset) kit__cfg_errf(c, "%.*s", (int)(strlen(set_err) - 1), set_err);
        free(set_err);
        free(saved_err);
    }
    free(sets);
    return rc;
}

/* ---- writing YAML ------------------------------------------------------------------------------ */

typedef struct { char *p; size_t len, cap; } kit__sbuf;

static void kit__sb_add(kit__sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void kit__sb_add(kit__sbuf *b, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        b->cap = (b->len + (size_t)n + 1) * 2;
        b->p = (char *)realloc(b->p, b->cap);
        if (!b->p) kit_panic("out of memory");
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void kit__sb_quoted(kit__sbuf *b, const char *s) {
    /* A double-quoted YAML scalar; escapes per YAML 1.1 section 5.7 (\" \\ \n \t \xHH). */
    kit__sb_add(b, "\"");
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') kit__sb_add(b, "\\%c", ch);
        else if (ch == '\n') kit__sb_add(b, "\\n");
        else if (ch == '\t') kit__sb_add(b, "\\t");
        else if (ch < 0x20 || ch == 0x7f) kit__sb_add(b, "\\x%02X", ch);
        else kit__sb_add(b, "%c", ch);
    }
    kit__sb_add(b, "\"");
}

static void kit__sb_value(kit__sbuf *b, const kit__cfg_entry *e) {
    char num[64];
    int i;
    switch (e->type) {
    case KIT_CFG_INT: kit__sb_add(b, "%lld", e->i); break;
    case KIT_CFG_FLOAT: kit__fmt_float(num, sizeof num, e->f); kit__sb_add(b, "%s", num); break;
    case KIT_CFG_BOOL: kit__sb_add(b, "%s", e->b ? "true" : "false"); break;
    case KIT_CFG_STRING: kit__sb_quoted(b, e->s); break;
    case KIT_CFG_FLOATS:
        kit__sb_add(b, "[");
        for (i = 0; i < e->nv; i++) { kit__fmt_float(num, sizeof num, e->v[i]); kit__sb_add(b, "%s%s", i ? ", " : "", num); }
        kit__sb_add(b, "]");
        break;
    }
}

/* Emits, at `depth`, every key and section directly below `prefix`, in order of first declaration. */
static void kit__cfg_emit(const kit_cfg *c, kit__sbuf *b, const char *prefix, int depth, int docs) {
    size_t plen = strlen(prefix);
    int i, j;
    for (i = 0; i < c->n; i++) {
        const char *k = c->e[i].key, *rest, *dot;
        size_t nlen;
        if (strncmp(k, prefix, plen) != 0) continue;
        rest = k + plen;
        dot = strchr(rest, '.');
        if (!dot) {
            kit__sb_add(b, "%*s%s: ", 2 * depth, "", rest);
            kit__sb_value(b, &c->e[i]);
            if (docs && c->e[i].doc[0]) kit__sb_add(b, "  # %s", c->e[i].doc);
            kit__sb_add(b, "\n");
            continue;
        }
        nlen = (size_t)(dot - rest);
        for (j = 0; j < i; j++) /* this section was already emitted with an earlier key */
            if (!strncmp(c->e[j].key, prefix, plen) && !strncmp(c->e[j].key + plen, rest, nlen + 1)) break;
        if (j < i) continue;
        {
            char sub[512];
            snprintf(sub, sizeof sub, "%s%.*s.", prefix, (int)nlen, rest);
            kit__sb_add(b, "%*s%.*s:\n", 2 * depth, "", (int)nlen, rest);
            kit__cfg_emit(c, b, sub, depth + 1, docs);
        }
    }
}

char *kit_cfg_dump(const kit_cfg *c, int docs) {
    kit__sbuf b = {NULL, 0, 0};
    kit__sb_add(&b, "%s", "");
    kit__cfg_emit(c, &b, "", 0, docs);
    return b.p;
}

void kit_cfg_print(const kit_cfg *c, FILE *out) {
    char *s = kit_cfg_dump(c, 0);
    fputs(s, out);
    free(s);
}

void kit_cfg_print_help(const kit_cfg *c, FILE *out) {
    static const char *names[] = {"int", "float", "bool", "string", "floats"};
    int i;
    for (i = 0; i < c->n; i++) {
        const kit__cfg_entry *e = &c->e[i];
        fprintf(out, "  %-36s %-6s default %s", e->key, names[e->type], e->def_text);
        if (e->type == KIT_CFG_INT && (e->imin != LLONG_MIN || e->imax != LLONG_MAX))
            fprintf(out, ", range [%lld, %lld]", e->imin, e->imax);
        if ((e->type == KIT_CFG_FLOAT || e->type == KIT_CFG_FLOATS) && (!isinf(e->fmin) || !isinf(e->fmax)))
            fprintf(out, ", range [%g, %g]", e->fmin, e->fmax);
        if (e->choices) fprintf(out, ", one of %s", e->choices);
        if (e->type == KIT_CFG_FLOATS && e->length) fprintf(out, ", %d values", e->length);
        fprintf(out, "\n      %s\n", e->doc);
    }
}
#endif /* KIT_IMPLEMENTATION */
