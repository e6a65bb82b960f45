/* tests/kit_config.c - YAML configs: defaults, partial files, YAML edge cases, every kind of bad config
   (each error message checked word for word), --set overrides, argv handling, dump/reload round trip. */
#define KIT_IMPLEMENTATION
#include "kit.h"
#include "test.h"
#include <stdlib.h>
#include <string.h>

static kit_cfg *schema(void) {
    static const double mean[3] = {0.485, 0.456, 0.406};
    kit_cfg *c = kit_cfg_new();
    kit_cfg_add_string(c, "data.data_dir", "data/images", NULL, "folder with one subfolder per model");
    kit_cfg_add_float(c, "data.train_ratio", 0.8, 0, 1, "fraction of models for training");
    kit_cfg_add_floats(c, "data.mean", mean, 3, 3, 0, 1, "per-channel mean");
    kit_cfg_add_floats(c, "data.milestones", NULL, 0, 0, 0, KIT_CFG_NO_MAX, "any length");
    kit_cfg_add_string(c, "model.backbone_name", "vitb14", "vits14|vitb14|vitl14", "DINOv2 size");
    kit_cfg_add_int(c, "model.downsample_size", 32, 1, 73, "pooled grid side");
    kit_cfg_add_int(c, "model.head.hidden_dim", 512, 1, 1 << 16, "nested section");
    kit_cfg_add_int(c, "training.batch_size", 2, 1, 4096, "images per micro-batch");
    kit_cfg_add_int(c, "training.num_epochs", 100, 1, 100000, "epochs");
    kit_cfg_add_float(c, "training.learning_rate", 1e-4, 0, 1, "peak learning rate");
    kit_cfg_add_float(c, "training.grad_clip", 1.0, 0, KIT_CFG_NO_MAX, "max gradient norm");
    kit_cfg_add_bool(c, "training.use_amp", 1, "mixed precision");
    kit_cfg_add_bool(c, "training.use_gradient_checkpointing", 1, "recompute activations");
    kit_cfg_add_int(c, "seed", 0, 0, 1000000, "top-level key");
    return c;
}

/* Loads text into a fresh schema and checks the error text contains `want` (or no error if want NULL). */
static void expect(const char *yaml, const char *want, int line) {
    kit_cfg *c = schema();
    int rc = kit_cfg_load_string(c, yaml, "t.yaml");
    if (!want) {
        CHECK(rc == 0, "line %d: expected success, got: %s", line, kit_cfg_error(c));
    } else {
        CHECK(rc == -1, "line %d: expected an error containing \"%s\"", line, want);
        CHECK(strstr(kit_cfg_error(c), want) != NULL, "line %d: error\n  %s  lacks\n  %s", line, kit_cfg_error(c), want);
    }
    kit_cfg_free(c);
}
#define EXPECT_ERR(yaml, want) expect(yaml, want, __LINE__)
#define EXPECT_OK(yaml) expect(yaml, NULL, __LINE__)

static void test_defaults_and_partial(void) {
    kit_cfg *c = schema();
    int n;
    const double *m;
    CHECK(kit_cfg_load_string(c, "", "empty.yaml") == 0, "empty file is fine");
    CHECK(kit_cfg_int(c, "training.batch_size") == 2, "default int");
    CHECK(!strcmp(kit_cfg_string(c, "data.data_dir"), "data/images"), "default string");
    CHECK(!strcmp(kit_cfg_where(c, "training.batch_size"), "default"), "where default");
    m = kit_cfg_floats(c, "data.mean", &n);
    CHECK(n == 3 && m[1] == 0.456, "default list");
    kit_cfg_floats(c, "data.milestones", &n);
    CHECK(n == 0, "empty default list");
    CHECK(kit_cfg_load_string(c, "# only a comment\n", "c.yaml") == 0, "comment-only file");
    CHECK(kit_cfg_load_string(c, "---\n...\n", "c.yaml") == 0, "explicit empty document");
    CHECK(kit_cfg_load_string(c, "training:\n  batch_size: 8   # comment\n\n", "p.yaml") == 0, "partial: %s", kit_cfg_error(c));
    CHECK(kit_cfg_int(c, "training.batch_size") == 8, "partial sets batch_size");
    CHECK(kit_cfg_int(c, "training.num_epochs") == 100, "others keep defaults");
    CHECK(!strcmp(kit_cfg_where(c, "training.batch_size"), "p.yaml:2"), "where = file:line, got %s", kit_cfg_where(c, "training.batch_size"));
    CHECK(kit_cfg_load_string(c, "training:\n", "s.yaml") == 0, "an empty section is fine");
    kit_cfg_free(c);
}

static void test_yaml_forms(void) {
    kit_cfg *c = schema();
    int n;
    const double *v;
    const char *y =
        "data: {data_dir: '/tmp/x y', train_ratio: 1}\n"          /* flow mapping, int for float */
        "model:\n  head:\n    hidden_dim: 64\n"                   /* nested section */
        "training:\n"
        "  learning_rate: 1e-3\n"                                 /* no dot: still a float here */
        "  grad_clip: .inf\n"
        "  use_amp: no\n"
        "  use_gradient_checkpointing: On\n"
        "  batch_size: &bs 4\n"                                   /* anchor ... */
        "  num_epochs: *bs\n"                                     /* ... and alias */
        "seed: -0\n";
    CHECK(kit_cfg_load_string(c, y, "f.yaml") == 0, "forms: %s", kit_cfg_error(c));
    CHECK(!strcmp(kit_cfg_string(c, "data.data_dir"), "/tmp/x y"), "single-quoted string");
    CHECK(kit_cfg_float(c, "data.train_ratio") == 1.0, "int accepted for float");
    CHECK(kit_cfg_int(c, "model.head.hidden_dim") == 64, "nested");
    CHECK(kit_cfg_float(c, "training.learning_rate") == 1e-3, "1e-3");
    CHECK(isinf(kit_cfg_float(c, "training.grad_clip")), ".inf");
    CHECK(kit_cfg_bool(c, "training.use_amp") == 0, "no");
    CHECK(kit_cfg_bool(c, "training.use_gradient_checkpointing") == 1, "On");
    CHECK(kit_cfg_int(c, "training.num_epochs") == 4, "alias");
    CHECK(kit_cfg_int(c, "seed") == 0, "-0");
    CHECK(kit_cfg_load_string(c, "data:\n  mean:\n    - 0.5\n    - 0.25\n    - 1\n  milestones: []\n", "l.yaml") == 0, "block list: %s",
          kit_cfg_error(c));
    v = kit_cfg_floats(c, "data.mean", &n);
    CHECK(n == 3 && v[0] == 0.5 && v[1] == 0.25 && v[2] == 1.0, "block list values");
    kit_cfg_floats(c, "data.milestones", &n);
    CHECK(n == 0, "empty flow list");
    CHECK(kit_cfg_load_string(c, "data:\n  milestones: [10, 20.5, 3e1]\n  data_dir: 123\n", "l.yaml") == 0, "list: %s", kit_cfg_error(c));
    v = kit_cfg_floats(c, "data.milestones", &n);
    CHECK(n == 3 && v[2] == 30.0, "flow list of any length");
    CHECK(!strcmp(kit_cfg_string(c, "data.data_dir"), "123"), "a plain number is a fine string");
    CHECK(kit_cfg_load_string(c, "model:\n  backbone_name: vitl14\n", "x.yaml") == 0, "choice ok");
    CHECK(!strcmp(kit_cfg_string(c, "model.backbone_name"), "vitl14"), "choice value");
    kit_cfg_free(c);
    EXPECT_OK("training:\n  use_amp: TRUE\n  use_gradient_checkpointing: off\n");
    EXPECT_OK("data:\n  data_dir: \"tab\\there \\u00e9\"\n");
}

static void test_errors(void) {
    /* unknown keys, with suggestions */
    EXPECT_ERR("training:\n  batchsize: 3\n", "t.yaml:2:3: unknown key 'training.batchsize' (did you mean 'training.batch_size'?)");
    EXPECT_ERR("trainig:\n  batch_size: 3\n", "t.yaml:1:1: unknown key 'trainig' (did you mean 'training'?)");
    EXPECT_ERR("model:\n  batch_size: 3\n", "t.yaml:2:3: unknown key 'model.batch_size' (did you mean 'training.batch_size'?)");
    EXPECT_ERR("training:\n  zzz: 3\n",
               "t.yaml:2:3: unknown key 'training.zzz' (valid keys in 'training': batch_size, num_epochs, learning_rate, grad_clip, use_amp, use_gradient_checkpointing)");
    EXPECT_ERR("optimizer:\n  lr: 3\n", "t.yaml:1:1: unknown key 'optimizer' (valid top-level names: data, model, training, seed)");
    /* wrong types */
    EXPECT_ERR("training:\n  batch_size: 1.5\n", "t.yaml:2:15: training.batch_size: expected an integer, got '1.5'");
    EXPECT_ERR("training:\n  batch_size: 1e3\n", "t.yaml:2:15: training.batch_size: expected an integer, got '1e3'");
    EXPECT_ERR("training:\n  batch_size: \"3\"\n", "t.yaml:2:15: training.batch_size: expected an integer, got the quoted string \"3\"");
    EXPECT_ERR("training:\n  batch_size: [1, 2]\n", "t.yaml:2:15: training.batch_size: expected an integer, got a list");
    EXPECT_ERR("training:\n  learning_rate: fast\n", "t.yaml:2:18: training.learning_rate: expected a number, got 'fast'");
    EXPECT_ERR("training:\n  learning_rate: nan\n", "training.learning_rate: expected a number, got 'nan'");
    EXPECT_ERR("training:\n  learning_rate: .nan\n", "t.yaml:2:18: training.learning_rate: NaN is not allowed");
    EXPECT_ERR("training:\n  learning_rate: 0x10\n", "expected a number, got '0x10'");
    EXPECT_ERR("training:\n  use_amp: maybe\n", "t.yaml:2:12: training.use_amp: expected true or false, got 'maybe'");
    EXPECT_ERR("training:\n  use_amp: 1\n", "training.use_amp: expected true or false, got '1'");
    EXPECT_ERR("data:\n  data_dir: {a: 1}\n", "t.yaml:2:13: data.data_dir: expected a string, got a mapping");
    EXPECT_ERR("data:\n  mean: 0.5\n", "t.yaml:2:9: data.mean: expected a list of numbers like [1.0, 2.0], got a scalar");
    EXPECT_ERR("data:\n  mean: [0.5, 0.5]\n", "t.yaml:2:9: data.mean: expected a list of 3 numbers, got 2");
    EXPECT_ERR("data:\n  mean: [0.5, x, 0.5]\n", "t.yaml:2:15: data.mean[1]: expected a number, got 'x'");
    EXPECT_ERR("training: 5\n", "t.yaml:1:11: 'training' is a section and needs indented keys below it, got a scalar");
    EXPECT_ERR("- a\n- b\n", "t.yaml:1:1: the top level must be a mapping of sections (like 'training:'), got a list");
    /* ranges */
    EXPECT_ERR("training:\n  batch_size: 0\n", "t.yaml:2:15: training.batch_size = 0 is out of range [1, 4096]");
    EXPECT_ERR("training:\n  batch_size: 99999999999999999999\n", "training.batch_size = 99999999999999999999 is out of range [1, 4096]");
    EXPECT_ERR("data:\n  train_ratio: 1.5\n", "t.yaml:2:16: data.train_ratio = 1.5 is out of range [0.0, 1.0]");
    EXPECT_ERR("training:\n  learning_rate: -.inf\n", "training.learning_rate = -.inf is out of range [0.0, 1.0]");
    EXPECT_ERR("data:\n  mean: [0.5, 2, 0.5]\n", "t.yaml:2:15: data.mean[1] = 2 is out of range [0.0, 1.0]");
    EXPECT_ERR("model:\n  backbone_name: vitb16\n", "t.yaml:2:18: model.backbone_name = 'vitb16' is not one of vits14|vitb14|vitl14 (did you mean 'vitb14'?)");
    EXPECT_ERR("model:\n  backbone_name: resnet\n", "model.backbone_name = 'resnet' is not one of vits14|vitb14|vitl14\n");
    /* nulls, duplicates, documents, syntax */
    EXPECT_ERR("training:\n  batch_size:\n", "t.yaml:2:14: training.batch_size has no value; give an integer, or remove the line to use the default 2");
    EXPECT_ERR("data:\n  data_dir: ~\n", "data.data_dir has no value; give a string, or remove the line to use the default \"data/images\"");
    EXPECT_ERR("training:\n  batch_size: 3\n  batch_size: 4\n", "t.yaml:3:3: duplicate key 'training.batch_size' (first given at line 2)");
    EXPECT_ERR("seed: 1\n---\nseed: 2\n", "t.yaml:3: a second YAML document ('---'); a config file holds one");
    EXPECT_ERR("training:\n  batch_size: [1, 2\n", "t.yaml:3:1: YAML syntax error: did not find expected ',' or ']' while parsing a flow sequence (line 2)");
    EXPECT_ERR("training:\n\tbatch_size: 3\n", "t.yaml:2:1: YAML syntax error: found character that cannot start any token while scanning for the next token (line 2)");
    EXPECT_ERR("a: &x\n  b: *x\n", "unknown key 'a'"); /* recursive alias: no hang, no crash */
    EXPECT_ERR("? [a, b]\n: 1\n", "t.yaml:1:3: keys must be plain names, got a list");
    {   /* every error is reported, valid values are still applied */
        kit_cfg *c = schema();
        const char *e;
        CHECK(kit_cfg_load_string(c, "training:\n  batch_size: 0\n  num_epochs: 7\n  use_amp: x\n", "m.yaml") == -1, "multi");
        e = kit_cfg_error(c);
        CHECK(strstr(e, "m.yaml:2:15:") && strstr(e, "m.yaml:4:12:"), "both errors listed: %s", e);
        CHECK(kit_cfg_int(c, "training.num_epochs") == 7, "valid value applied");
        CHECK(kit_cfg_int(c, "training.batch_size") == 2, "invalid value not applied");
        kit_cfg_free(c);
    }
    {
        kit_cfg *c = schema();
        CHECK(kit_cfg_load_file(c, "/nonexistent/cfg.yaml") == -1, "missing file");
        CHECK(!strcmp(kit_cfg_error(c), "/nonexistent/cfg.yaml: cannot open config file: No such file or directory\n"), "missing: %s",
              kit_cfg_error(c));
        kit_cfg_free(c);
    }
}

static void test_set_and_args(void) {
    kit_cfg *c = schema();
    const double *v;
    int n, argc;
    char *argv[16];
    char a0[] = "prog", a1[] = "--config", a2[] = "", a3[] = "--set", a4[] = "training.batch_size=16", a5[] = "input.png",
         a6[] = "--set=data.mean=[0.1, 0.2, 0.3]", a7[] = "--set", a8[] = "data.data_dir=/a=b c", a9[] = "-v";
    FILE *f;
    char path[] = "/tmp/kit_config_test.yaml";
    CHECK(kit_cfg_set(c, "training.use_amp=false") == 0, "set bool");
    CHECK(kit_cfg_bool(c, "training.use_amp") == 0, "set bool value");
    CHECK(!strcmp(kit_cfg_where(c, "training.use_amp"), "--set"), "where --set");
    CHECK(kit_cfg_set(c, "data.milestones=[1,2,3,4]") == 0, "set list");
    kit_cfg_floats(c, "data.milestones", &n);
    CHECK(n == 4, "set list len");
    CHECK(kit_cfg_set(c, "training.batch_size=abc") == -1, "set bad int");
    CHECK(!strcmp(kit_cfg_error(c), "--set training.batch_size=abc: training.batch_size: expected an integer, got 'abc'\n"), "msg: %s",
          kit_cfg_error(c));
    CHECK(kit_cfg_set(c, "training.bach_size=3") == -1, "set unknown");
    CHECK(!strcmp(kit_cfg_error(c), "--set training.bach_size=3: unknown key 'training.bach_size' (did you mean 'training.batch_size'?)\n"),
          "msg: %s", kit_cfg_error(c));
    CHECK(kit_cfg_set(c, "trainin.batch_size=3") == -1, "set unknown section");
    CHECK(strstr(kit_cfg_error(c), "unknown key 'trainin.batch_size' (did you mean 'training.batch_size'?)"), "msg: %s", kit_cfg_error(c));
    CHECK(kit_cfg_set(c, "training=3") == -1 && strstr(kit_cfg_error(c), "'training' is a section, not a key"), "set section");
    CHECK(kit_cfg_set(c, "training.batch_size") == -1 && strstr(kit_cfg_error(c), "expected section.key=value"), "no =");
    CHECK(kit_cfg_set(c, "training.batch_size=") == -1 && strstr(kit_cfg_error(c), "has no value; give an integer"), "empty value: %s",
          kit_cfg_error(c));
    CHECK(kit_cfg_set(c, "model.backbone_name=vitS14") == -1 && strstr(kit_cfg_error(c), "(did you mean 'vits14'?)"), "choice via set");
    kit_cfg_free(c);

    f = fopen(path, "w");
    fputs("training:\n  batch_size: 4\n  num_epochs: 3\n", f);
    fclose(f);
    c = schema();
    argv[0] = a0; argv[1] = a1; argv[2] = a2; argv[3] = a3; argv[4] = a4; argv[5] = a5; argv[6] = a6; argv[7] = a7; argv[8] = a8;
    argv[9] = a9; argv[10] = NULL;
    argv[2] = path;
    argc = 10;
    CHECK(kit_cfg_parse_args(c, &argc, argv) == 0, "parse_args: %s", kit_cfg_error(c));
    CHECK(argc == 3 && !strcmp(argv[1], "input.png") && !strcmp(argv[2], "-v") && argv[3] == NULL, "other args kept in order");
    CHECK(kit_cfg_int(c, "training.batch_size") == 16, "--set wins over the file");
    CHECK(kit_cfg_int(c, "training.num_epochs") == 3, "file value");
    CHECK(!strcmp(kit_cfg_where(c, "training.num_epochs"), "/tmp/kit_config_test.yaml:3"), "where file: %s", kit_cfg_where(c, "training.num_epochs"));
    v = kit_cfg_floats(c, "data.mean", &n);
    CHECK(n == 3 && v[2] == 0.3, "--set= list");
    CHECK(!strcmp(kit_cfg_string(c, "data.data_dir"), "/a=b c"), "string override taken literally");
    CHECK(!strcmp(kit_cfg_file(c), path), "config file remembered");
    kit_cfg_free(c);

    f = fopen(path, "w");
    fputs("training:\n  batch_size: x\n", f);
    fclose(f);
    c = schema();
    {
        char b1[] = "--config", b3[] = "--set", b4[] = "training.num_epochs=0";
        char *av[] = {a0, b1, path, b3, b4, NULL};
        int ac = 5;
        CHECK(kit_cfg_parse_args(c, &ac, av) == -1, "errors from file and --set");
        CHECK(!strcmp(kit_cfg_error(c), "/tmp/kit_config_test.yaml:2:15: training.batch_size: expected an integer, got 'x'\n"
                                         "--set training.num_epochs=0: training.num_epochs = 0 is out of range [1, 100000]\n"),
              "both, in order: %s", kit_cfg_error(c));
    }
    kit_cfg_free(c);
    remove(path);
    c = schema();
    {
        char b1[] = "--set";
        char *av[] = {a0, b1, NULL};
        int ac = 2;
        CHECK(kit_cfg_parse_args(c, &ac, av) == -1 && strstr(kit_cfg_error(c), "--set needs an argument"), "dangling --set");
    }
    kit_cfg_free(c);
}

static void test_dump_roundtrip(void) {
    kit_cfg *c = schema(), *d = schema();
    char *s1, *s2;
    const double *v;
    int n;
    CHECK(kit_cfg_set(c, "data.data_dir=we\"ird\\ päth\ttab") == 0, "set odd string");
    CHECK(kit_cfg_set(c, "training.learning_rate=0.1") == 0, "lr");
    CHECK(kit_cfg_set(c, "training.grad_clip=1e-5") == 0, "clip");
    CHECK(kit_cfg_set(c, "data.milestones=[0.3333333333333333, 1e300, 5]") == 0, "milestones");
    s1 = kit_cfg_dump(c, 1);
    CHECK(strstr(s1, "training:\n  batch_size: 2  # images per micro-batch\n") != NULL, "nested, with docs:\n%s", s1);
    CHECK(strstr(s1, "model:\n  backbone_name: \"vitb14\"  # DINOv2 size\n  downsample_size: 32  # pooled grid side\n  head:\n    hidden_dim: 512") != NULL,
          "sub-section:\n%s", s1);
    CHECK(strstr(s1, "grad_clip: 1.0e-05") != NULL, "exponent floats keep a dot (PyYAML reads them as floats)");
    CHECK(strstr(s1, "learning_rate: 0.1  #") != NULL, "shortest round-trip float");
    CHECK(strstr(s1, "\nseed: 0  # top-level key\n") != NULL, "top-level key");
    CHECK(strstr(s1, "data_dir: \"we\\\"ird\\\\ päth\\ttab\"") != NULL, "escaped string: %s", s1);
    CHECK(kit_cfg_load_string(d, s1, "dump") == 0, "dump loads back: %s", kit_cfg_error(d));
    s2 = kit_cfg_dump(d, 1);
    CHECK(!strcmp(s1, s2), "dump -> load -> dump is stable:\n%s\n---\n%s", s1, s2);
    CHECK(!strcmp(kit_cfg_string(d, "data.data_dir"), "we\"ird\\ päth\ttab"), "string survives");
    v = kit_cfg_floats(d, "data.milestones", &n);
    CHECK(n == 3 && v[0] == 1.0 / 3.0 && v[1] == 1e300, "floats survive exactly");
    free(s1);
    free(s2);
    s1 = kit_cfg_dump(c, 0);
    CHECK(strchr(s1, '#') == NULL, "no docs when asked");
    free(s1);
    kit_cfg_free(c);
    kit_cfg_free(d);
}

/* Writes a dump for tests/kit_check_config_yaml.py, which reads it with PyYAML (checkpoints are read
   from Python too): every value must come back with its type. */
static void write_dump_for_python(const char *path) {
    kit_cfg *c = schema();
    char *s;
    FILE *f;
    kit_cfg_set(c, "training.grad_clip=1e-5");
    kit_cfg_set(c, "training.learning_rate=3e-4");
    kit_cfg_set(c, "data.data_dir=yes");
    kit_cfg_set(c, "data.milestones=[1, 2.5, 1e300]");
    s = kit_cfg_dump(c, 1);
    f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (f) { fputs(s, f); fclose(f); }
    free(s);
    kit_cfg_free(c);
}

static void test_edit_distance(void) {
    CHECK(kit_edit_distance("", "") == 0, "empty");
    CHECK(kit_edit_distance("batchsize", "batch_size") == 1, "insert");
    CHECK(kit_edit_distance("kitten", "sitting") == 3, "kitten/sitting");
    CHECK(kit_edit_distance("abc", "") == 3, "delete all");
}

int main(int argc, char **argv) {
    if (argc > 1) write_dump_for_python(argv[1]);
    test_defaults_and_partial();
    test_yaml_forms();
    test_errors();
    test_set_and_args();
    test_dump_roundtrip();
    test_edit_distance();
    return test_summary();
}
