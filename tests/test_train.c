/* Training machinery tests (nn.h [api:train]): learning-rate schedules and AdamW against torch's values
   (tests/make_fixtures_train.py -> tests/fixtures/train.txt, train_lr.txt), a tiny MLP trained 200 steps
   with AdamW + warmup-cosine + clipping next to torch's run, clip_grad_norm_ cases (inf/NaN included),
   gradient accumulation, bit-exact resume across processes and a kill-during-save test.

   Tolerances (|mine - torch| <= atol + rtol*|torch|), each about 10x what this machine shows:
   - schedules: 1e-12 relative (closed form vs torch's recursion; seen 1.3e-15)
   - AdamW on torch's gradients, 200 steps: params 1e-7 + 2e-6 rel (seen 1.4e-7 rel; torch's CPU sqrt is
     MKL's, not always correctly rounded, the only operation that differs), moments 1e-5 rel
   - the MLP, 200 steps with AdamW + warmup-cosine + clipping: params 5e-6 + 5e-5 rel (seen 3.6e-7 abs),
     losses and grad norms 2e-5 rel (seen 3e-7, 1e-6): forward/backward rounding differs from torch's
   - clip_grad_norm_: norm 3e-7 rel (exact for the inf/NaN/exactly-1 cases), clipped grads 1e-7 rel

   Usage: test_train [fixtures-dir]      (default tests/fixtures; the resume test re-runs this binary
          with "resume-*" arguments) */
#define _POSIX_C_SOURCE 200809L
#define NN_IMPLEMENTATION
#include "nn.h"
#include <setjmp.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <dirent.h>
#include "test.h"
#include "expect_error.h"
#include "fixture.h"

static const char *fixdir = "tests/fixtures";
static const char *self_exe;


static fx_file fx;

static nn_tensor *fx_param(nn_params *P, const char *name, const char *fxname) {
    nn_tensor *src = fx_get(&fx, fxname);
    nn_tensor *t = nn_from_f32(src->ndim, src->shape, (const float *)src->data);
    nn_requires_grad(t, 1);
    return nn_params_add(P, name, t);
}

/* ---------------------------------------------------------------------------------------- schedules */
static void test_sched(void) {
    char path[512], name[32];
    FILE *fp;
    long long t;
    double lr, worst = 0;
    int n = 0, bad = 0;
    nn_sched wc = nn_sched_warmup_cosine(3e-3, 0.1, 25, 200, 1e-5);
    nn_sched wc3 = nn_sched_warmup_cosine(1e-3, 1.0 / 3, 10, 50, 0.0);
    nn_sched cs = nn_sched_cosine(1e-2, 100, 1e-5);
    nn_sched lin = nn_sched_warmup_cosine(2e-3, 0.25, 40, 0, 0.0);
    snprintf(path, sizeof path, "%s/train_lr.txt", fixdir);
    fp = fopen(path, "r");
    CHECK(fp != NULL, "open %s", path);
    if (!fp) return;
    while (fscanf(fp, "%31s %lld %lf", name, &t, &lr) == 3) {
        const nn_sched *s = strcmp(name, "wc") == 0 ? &wc : strcmp(name, "wc3") == 0 ? &wc3 :
                            strcmp(name, "cos") == 0 ? &cs : &lin;
        double mine = nn_sched_lr_at(s, t), e = fabs(mine - lr) / (fabs(lr) + 1e-300);
        /* closed form vs torch's recursion: equal to a few ulps of the recursion's accumulated rounding */
        if (fabs(mine - lr) > 1e-12 * fabs(lr) + 1e-20) {
            if (bad++ < 5) printf("  lr %s step %lld: %.17g vs torch %.17g\n", name, t, mine, lr);
        }
        if (e > worst && lr != 0) worst = e;
        n++;
    }
    fclose(fp);
    CHECK(n >= 790, "read %d lr values", n);
    CHECK(bad == 0, "%d of %d learning rates differ from torch's by more than 1e-12 relative", bad, n);
    printf("  schedules: %d lr values, worst relative difference to torch %.3g\n", n, worst);
    /* the stepping interface: lr for the coming step, then step */
    CHECK(nn_sched_lr(&wc) == nn_sched_lr_at(&wc, 0), "lr at 0");
    nn_sched_step(&wc);
    CHECK(wc.last_epoch == 1 && nn_sched_lr(&wc) == nn_sched_lr_at(&wc, 1), "sched step");
    CHECK(nn_sched_lr_at(&wc, 25) == 3e-3, "milestone step is base_lr exactly");
    EXPECT_ERROR(nn_sched_warmup_cosine(1e-3, 0.0, 10, 10, 0), "start_factor");
    EXPECT_ERROR(nn_sched_cosine(1e-3, 0, 0), "T_max");
}

/* ------------------------------------------------------------------------------ AdamW on given grads */
static void set_grad(nn_tensor *p, const float *g) {
    nn_zero_grad(p);
    if (g) p->grad = nn_from_f32(p->ndim, p->shape, g);
}

static void adam_run(const char *run, nn_adamw_cfg cfg, int use_sched, int skip_p2) {
    nn_params P;
    nn_adamw *opt;
    nn_sched s = nn_sched_warmup_cosine(1e-2, 0.1, 20, 180, 1e-4);
    nn_tensor *g[3], *p[3];
    char nm[64], what[96];
    int i, k;
    memset(&P, 0, sizeof P);
    for (i = 0; i < 3; i++) {
        snprintf(nm, sizeof nm, "adam.init%d", i);
        p[i] = fx_param(&P, nm + 5, nm);
        P.items[i].no_decay = i == 1;
        snprintf(nm, sizeof nm, "adam.grads%d", i);
        g[i] = fx_get(&fx, nm);
    }
    opt = nn_adamw_new(&P, cfg);
    for (k = 0; k < 200; k++) {
        for (i = 0; i < 3; i++)
            set_grad(p[i], (skip_p2 && i == 2 && k % 3 == 0) ? NULL : (const float *)g[i]->data + (int64_t)k * p[i]->numel);
        nn_adamw_step(opt, use_sched ? nn_sched_lr(&s) : cfg.lr);
        nn_sched_step(&s);
        if (k == 0)
            for (i = 0; i < 3; i++) {
                snprintf(nm, sizeof nm, "%s.step1.p%d", run, i);
                snprintf(what, sizeof what, "%s after 1 step, p%d", run, i);
                /* one step: only torch's MKL sqrt can differ (by an ulp) */
                CHECK_FX(p[i], fx_get(&fx, nm), 1e-9, 1e-6, what);
            }
    }
    for (i = 0; i < 3; i++) {
        nn_tensor *m = nn_from_f32(p[i]->ndim, p[i]->shape, opt->exp_avg[i]);
        nn_tensor *v = nn_from_f32(p[i]->ndim, p[i]->shape, opt->exp_avg_sq[i]);
        nn_tensor *ts = fx_get(&fx, (snprintf(nm, sizeof nm, "%s.steps%d", run, i), nm));
        snprintf(nm, sizeof nm, "%s.p%d", run, i);
        snprintf(what, sizeof what, "%s after 200 steps, p%d", run, i);
        CHECK_FX(p[i], fx_get(&fx, nm), 1e-7, 2e-6, what);
        { double e = fx_err(p[i], fx_get(&fx, nm), 0, 1); printf("  %s p%d: max relative difference to torch %.3g\n", run, i, e); }
        snprintf(nm, sizeof nm, "%s.m%d", run, i);
        snprintf(what, sizeof what, "%s exp_avg p%d", run, i);
        CHECK_FX(m, fx_get(&fx, nm), 1e-8, 1e-5, what);
        snprintf(nm, sizeof nm, "%s.v%d", run, i);
        snprintf(what, sizeof what, "%s exp_avg_sq p%d", run, i);
        CHECK_FX(v, fx_get(&fx, nm), 1e-10, 1e-5, what);
        CHECK(opt->steps[i] == ((int64_t *)ts->data)[0], "%s steps p%d: %lld vs torch %lld", run, i,
              (long long)opt->steps[i], (long long)((int64_t *)ts->data)[0]);
        nn_tensor_free(m); nn_tensor_free(v);
        nn_zero_grad(p[i]);
    }
    CHECK(opt->step == 200, "global step");
    nn_adamw_free(opt);
    nn_params_free(&P);
}

static void test_adamw(void) {
    nn_adamw_cfg a = nn_adamw_default(), b = nn_adamw_default();
    nn_params P;
    CHECK(a.lr == 1e-3 && a.beta1 == 0.9 && a.beta2 == 0.999 && a.eps == 1e-8 && a.weight_decay == 0.01 && !a.maximize,
          "torch's defaults");
    a.lr = 1e-2; a.weight_decay = 0.05;
    adam_run("adamA", a, 1, 0);
    b.lr = 3e-3; b.beta1 = 0.8; b.beta2 = 0.99; b.eps = 1e-6; b.weight_decay = 0.1; b.maximize = 1;
    adam_run("adamB", b, 0, 1);
    memset(&P, 0, sizeof P);
    a.beta1 = 1.0;
    EXPECT_ERROR(nn_adamw_new(&P, a), "beta parameter at index 0");
    {
        int64_t s2[2] = {2, 2}, s1 = 2;
        nn_params_add(&P, "w", nn_zeros(NN_F32, 2, s2));
        nn_params_add(&P, "b", nn_zeros(NN_F32, 1, &s1));
        P.items[1].no_decay = 0;
        CHECK(nn_params_mark_no_decay(&P) == 1 && P.items[1].no_decay == 1 && P.items[0].no_decay == 0, "mark no_decay");
        nn_params_free(&P);
    }
}

/* --------------------------------------------------------------------------- the MLP, 200 steps */
typedef struct { nn_Linear fc1, fc2; } mlp;

static void mlp_build(mlp *m, nn_params *P) {
    memset(P, 0, sizeof *P);
    nn_Linear_init(&m->fc1, P, "fc1", 4, 8, 1);
    nn_Linear_init(&m->fc2, P, "fc2", 8, 3, 1);
}
static void mlp_load_fx(nn_params *P, const char *prefix) {
    int k;
    char nm[96];
    for (k = 0; k < P->n; k++) {
        snprintf(nm, sizeof nm, "%s%s", prefix, P->items[k].name);
        nn_copy_(P->items[k].t, fx_get(&fx, nm));
    }
}
static nn_tensor *mlp_loss(const mlp *m, nn_tensor *x, nn_tensor *y) {
    return nn_mse_loss(nn_Linear_forward(&m->fc2, nn_tanh(nn_Linear_forward(&m->fc1, x))), y);
}

static void test_mlp_trajectory(void) {
    mlp m;
    nn_params P;
    nn_adamw_cfg c = nn_adamw_default();
    nn_adamw *opt;
    nn_sched s = nn_sched_warmup_cosine(2e-2, 0.1, 20, 180, 1e-4);
    nn_tensor *x = fx_get(&fx, "mlp.x"), *y = fx_get(&fx, "mlp.y");
    const float *tl = (const float *)fx_get(&fx, "mlp.losses")->data, *tn = (const float *)fx_get(&fx, "mlp.norms")->data;
    double wl = 0, wn = 0;
    char nm[96], what[96];
    int k;
    mlp_build(&m, &P);
    mlp_load_fx(&P, "mlp.init.");
    c.lr = 2e-2;
    opt = nn_adamw_new(&P, c);  /* biases: no_decay (nn_params_add's default), as the torch run's groups */
    for (k = 0; k < 200; k++) {
        float norm, loss;
        nn_params_zero_grad(&P);
        nn_scope_begin();
        {
            nn_tensor *l = mlp_loss(&m, x, y);
            loss = (float)nn_item(l);
            nn_backward(l);
        }
        nn_scope_end(NULL);
        norm = nn_clip_grad_norm(&P, 0.5, 0);
        nn_adamw_step(opt, nn_sched_lr(&s));
        nn_sched_step(&s);
        if (fabs(loss - tl[k]) / fabs(tl[k]) > wl) wl = fabs(loss - tl[k]) / fabs(tl[k]);
        if (fabs(norm - tn[k]) / fabs(tn[k]) > wn) wn = fabs(norm - tn[k]) / fabs(tn[k]);
    }
    printf("  mlp: worst relative difference to torch over 200 steps: loss %.3g, grad norm %.3g\n", wl, wn);
    CHECK(wl < 2e-5, "mlp losses follow torch's (worst relative difference %.3g)", wl);
    CHECK(wn < 2e-5, "mlp grad norms follow torch's (worst relative difference %.3g)", wn);
    for (k = 0; k < P.n; k++) {
        nn_tensor *mm = nn_from_f32(P.items[k].t->ndim, P.items[k].t->shape, opt->exp_avg[k]);
        nn_tensor *vv = nn_from_f32(P.items[k].t->ndim, P.items[k].t->shape, opt->exp_avg_sq[k]);
        snprintf(nm, sizeof nm, "mlp.final.%s", P.items[k].name);
        snprintf(what, sizeof what, "mlp %s after 200 steps", P.items[k].name);
        CHECK_FX(P.items[k].t, fx_get(&fx, nm), 5e-6, 5e-5, what);
        printf("  mlp %s: max |difference| to torch %.3g\n", P.items[k].name, fx_err(P.items[k].t, fx_get(&fx, nm), 1, 0));
        snprintf(nm, sizeof nm, "mlp.m.%s", P.items[k].name);
        snprintf(what, sizeof what, "mlp exp_avg %s", P.items[k].name);
        CHECK_FX(mm, fx_get(&fx, nm), 1e-6, 1e-4, what);
        snprintf(nm, sizeof nm, "mlp.v.%s", P.items[k].name);
        snprintf(what, sizeof what, "mlp exp_avg_sq %s", P.items[k].name);
        CHECK_FX(vv, fx_get(&fx, nm), 1e-9, 1e-4, what);
        nn_tensor_free(mm); nn_tensor_free(vv);
    }
    nn_adamw_free(opt);
    nn_params_free(&P);
}

/* ------------------------------------------------------------------------------------- clipping */
static void clip_case(const char *name, int n, int exact) {
    nn_params P;
    char nm[64], what[96];
    int i;
    float norm, tnorm;
    memset(&P, 0, sizeof P);
    for (i = 0; i < n; i++) {
        nn_tensor *g;
        snprintf(nm, sizeof nm, "%s.g%d", name, i);
        g = fx_get(&fx, nm);
        snprintf(nm, sizeof nm, "p%d", i);
        nn_params_add(&P, nm, nn_zeros(NN_F32, g->ndim, g->shape));
        set_grad(P.items[i].t, (const float *)g->data);
    }
    norm = nn_clip_grad_norm(&P, 1.0, 0);
    snprintf(nm, sizeof nm, "%s.norm", name);
    tnorm = ((const float *)fx_get(&fx, nm)->data)[0];
    if (tnorm != tnorm) CHECK(norm != norm, "%s: norm %g, torch NaN", name, (double)norm);
    else if (exact) CHECK(norm == tnorm, "%s: norm %.9g vs torch %.9g", name, (double)norm, (double)tnorm);
    else CHECK_CLOSE(norm, tnorm, 0, 3e-7, name);
    for (i = 0; i < n; i++) {
        nn_tensor *want, *got = P.items[i].t->grad;
        int64_t j;
        int same = 1;
        snprintf(nm, sizeof nm, "%s.out%d", name, i);
        want = fx_get(&fx, nm);
        for (j = 0; j < want->numel; j++) {
            float a = ((float *)got->data)[j], b = ((float *)want->data)[j];
            if (a != a || b != b) { if ((a != a) != (b != b)) same = 0; }
            else if (fabs(a - b) > 1e-7 * fabs(b) + 1e-12) same = 0;
        }
        snprintf(what, sizeof what, "%s: clipped grad %d equals torch's (NaN where torch has NaN)", name, i);
        CHECK(same, "%s", what);
    }
    for (i = 0; i < n; i++) nn_zero_grad(P.items[i].t);
    nn_params_free(&P);
}

static void test_clip(void) {
    nn_params P;
    int64_t s = 3;
    float g[3] = {1, NAN, 2};
    clip_case("clip.big", 3, 0);
    clip_case("clip.small", 2, 0);
    clip_case("clip.near", 1, 1);
    clip_case("clip.inf", 2, 1);
    clip_case("clip.nan", 2, 1);
    /* error_if_nonfinite: reported, grads untouched */
    memset(&P, 0, sizeof P);
    nn_params_add(&P, "p", nn_zeros(NN_F32, 1, &s));
    set_grad(P.items[0].t, g);
    EXPECT_ERROR(nn_clip_grad_norm(&P, 1.0, 1), "non-finite");
    CHECK(((float *)P.items[0].t->grad->data)[0] == 1.0f, "grads untouched after the error");
    CHECK(nn_grad_norm(&P) != nn_grad_norm(&P), "nn_grad_norm NaN");
    nn_zero_grad(P.items[0].t);
    CHECK(nn_clip_grad_norm(&P, 1.0, 1) == 0.0f, "no grads: norm 0");
    nn_params_free(&P);
}

/* ---------------------------------------------------------------------------- gradient accumulation */
static void test_accumulation(void) {
    mlp m;
    nn_params A, B;
    nn_tensor *x = fx_get(&fx, "mlp.x"), *y = fx_get(&fx, "mlp.y");
    nn_adamw *oa, *ob;
    int k, j, K = 4;
    double worst = 0, worstp = 0;
    mlp mb;
    mlp_build(&m, &A);
    mlp_load_fx(&A, "mlp.init.");
    mlp_build(&mb, &B);
    mlp_load_fx(&B, "mlp.init.");
    oa = nn_adamw_new(&A, nn_adamw_default());
    ob = nn_adamw_new(&B, nn_adamw_default());
    for (k = 0; k < 3; k++) {
        /* A: one batch of 16 */
        nn_params_zero_grad(&A);
        nn_scope_begin();
        nn_backward(mlp_loss(&m, x, y));
        nn_scope_end(NULL);
        /* B: 4 micro-batches of 4, each mean loss scaled by 1/4 */
        nn_params_zero_grad(&B);
        for (j = 0; j < K; j++) {
            nn_scope_begin();
            {
                nn_tensor *xs = nn_slice(x, 0, 4 * j, 4 * j + 4), *ys = nn_slice(y, 0, 4 * j, 4 * j + 4);
                nn_backward(nn_mul_scalar(mlp_loss(&mb, xs, ys), 1.0 / K));
            }
            nn_scope_end(NULL);
        }
        for (j = 0; j < A.n; j++) {
            double e = fx_err(B.items[j].t->grad, A.items[j].t->grad, 1e-7, 1e-5);
            if (e > worst) worst = e;
        }
        nn_adamw_step(oa, 1e-2);
        nn_adamw_step(ob, 1e-2);
        for (j = 0; j < A.n; j++) {
            double e = fx_err(B.items[j].t, A.items[j].t, 1e-6, 1e-5);
            if (e > worstp) worstp = e;
        }
    }
    CHECK(worst <= 1, "4 micro-batches of 4 == one batch of 16: gradients (error ratio %.3g)", worst);
    CHECK(worstp <= 1, "4 micro-batches of 4 == one batch of 16: parameters after AdamW (error ratio %.3g)", worstp);
    nn_adamw_free(oa); nn_adamw_free(ob);
    nn_params_free(&A); nn_params_free(&B);
}

/* ------------------------------------------------------------------------------- bit-exact resume */
/* a small MLP with dropout trained on random batches: every source of state (weights, moments, steps,
   schedule, the RNG stream through data and dropout masks) has to survive the checkpoint */
typedef struct { nn_MLP mlp; nn_params P; nn_adamw *opt; nn_sched sched; nn_ckpt_info info; } trainer;

static void trainer_init(trainer *T, uint64_t seed) {
    nn_adamw_cfg c = nn_adamw_default();
    memset(T, 0, sizeof *T);
    nn_seed(seed);
    nn_MLP_init(&T->mlp, &T->P, "mlp", 4, 16, 3, NN_ACT_GELU, 0.2);
    c.lr = 5e-3;
    T->opt = nn_adamw_new(&T->P, c);
    T->sched = nn_sched_warmup_cosine(5e-3, 0.2, 4, 16, 1e-4);
    T->info.best_metric = INFINITY;
    T->info.config = "model: mlp 4-16-3\nlr: 5e-3\n";
}

static void trainer_steps(trainer *T, int n) {
    int k;
    int64_t sx[2] = {8, 4}, sy[2] = {8, 3};
    nn_set_training(1);
    for (k = 0; k < n; k++) {
        double loss;
        nn_params_zero_grad(&T->P);
        nn_scope_begin();
        {
            nn_tensor *x = nn_randn(2, sx), *y = nn_randn(2, sy);
            nn_tensor *l = nn_mse_loss(nn_MLP_forward(&T->mlp, x), y);
            loss = nn_item(l);
            nn_backward(l);
        }
        nn_scope_end(NULL);
        nn_clip_grad_norm(&T->P, 1.0, 0);
        nn_adamw_step(T->opt, nn_sched_lr(&T->sched));
        nn_sched_step(&T->sched);
        if (loss < T->info.best_metric) T->info.best_metric = loss;
        if (T->opt->step % 5 == 0) T->info.epoch++;
    }
}

static int resume_child(int argc, char **argv) {
    trainer T;
    const char *mode = argv[1];
    if (strcmp(mode, "resume-full") == 0 && argc == 3) {
        trainer_init(&T, 7);
        trainer_steps(&T, 20);
        nn_ckpt_save(argv[2], &T.P, T.opt, &T.sched, &T.info);
    } else if (strcmp(mode, "resume-half") == 0 && argc == 3) {
        trainer_init(&T, 7);
        trainer_steps(&T, 10);
        nn_ckpt_save(argv[2], &T.P, T.opt, &T.sched, &T.info);
    } else if (strcmp(mode, "resume-cont") == 0 && argc == 4) {
        nn_ckpt_info li;
        trainer_init(&T, 12345);  /* another seed: everything must come from the checkpoint */
        memset(&li, 0, sizeof li);
        nn_ckpt_load(argv[2], &T.P, T.opt, &T.sched, &li);
        T.info.epoch = li.epoch; T.info.best_metric = li.best_metric;
        if (!li.config || strcmp(li.config, T.info.config) != 0) { fprintf(stderr, "config text lost\n"); return 3; }
        nn_ckpt_info_free(&li);
        trainer_steps(&T, 10);
        nn_ckpt_save(argv[3], &T.P, T.opt, &T.sched, &T.info);
    } else {
        fprintf(stderr, "unknown mode\n");
        return 2;
    }
    nn_adamw_free(T.opt);
    nn_params_free(&T.P);
    nn_shutdown();
    return 0;
}

static int run_self(const char *a1, const char *a2, const char *a3) {
    pid_t pid = fork();
    int st = 0;
    if (pid == 0) {
        char *args[5];
        args[0] = (char *)self_exe; args[1] = (char *)a1; args[2] = (char *)a2; args[3] = (char *)a3; args[4] = NULL;
        execv(self_exe, args);
        _exit(127);
    }
    if (pid < 0 || waitpid(pid, &st, 0) != pid) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

static char tmpdir[256];

static void test_resume(void) {
    char full[300], half[300], cont[300];
    size_t n1 = 0, n2 = 0;
    unsigned char *a, *b;
    snprintf(full, sizeof full, "%s/full.safetensors", tmpdir);
    snprintf(half, sizeof half, "%s/half.safetensors", tmpdir);
    snprintf(cont, sizeof cont, "%s/cont.safetensors", tmpdir);
    CHECK(run_self("resume-full", full, NULL) == 0, "20 steps straight (child process)");
    CHECK(run_self("resume-half", half, NULL) == 0, "10 steps + checkpoint (child process)");
    CHECK(run_self("resume-cont", half, cont) == 0, "load in a new process + 10 steps (child process)");
    a = test_read_file(full, &n1);
    b = test_read_file(cont, &n2);
    CHECK(a && b && n1 == n2 && memcmp(a, b, (size_t)n1) == 0,
          "resume is bit-exact: the checkpoint after 20 straight steps and after 10 + reload + 10 are identical "
          "files (%zu and %zu bytes)", n1, n2);
    if (a && b && n1 == n2 && memcmp(a, b, (size_t)n1) != 0) {
        size_t i;
        for (i = 0; i < n1 && a[i] == b[i]; i++) {}
        printf("  first differing byte %zu\n", i);
    }
    free(a); free(b);
    /* and a checkpoint loads in this process too, with its metadata */
    {
        trainer T;
        nn_ckpt_info li;
        trainer_init(&T, 1);
        memset(&li, 0, sizeof li);
        nn_ckpt_load(cont, &T.P, T.opt, &T.sched, &li);
        CHECK(T.opt->step == 20 && T.sched.last_epoch == 20 && li.epoch == 4, "restored step %lld sched %lld epoch %lld",
              (long long)T.opt->step, (long long)T.sched.last_epoch, (long long)li.epoch);
        CHECK(li.best_metric > 0 && li.best_metric < 10, "best metric %g", li.best_metric);
        nn_ckpt_info_free(&li);
        /* a registry that does not match: strict error, registry untouched */
        {
            nn_params Q;
            nn_Linear l;
            memset(&Q, 0, sizeof Q);
            nn_Linear_init(&l, &Q, "other", 2, 2, 1);
            EXPECT_ERROR(nn_ckpt_load(cont, &Q, NULL, NULL, NULL), "Missing key(s)");
            nn_params_free(&Q);
        }
        nn_adamw_free(T.opt);
        nn_params_free(&T.P);
    }
}

/* ------------------------------------------------------------------------------ kill during save */
#define KILL_BIG (1 << 20)

static void kill_registry(nn_params *P) {
    int64_t big = KILL_BIG, s2[2] = {3, 5};
    memset(P, 0, sizeof *P);
    nn_params_add(P, "big", nn_zeros(NN_F32, 1, &big));
    nn_params_add(P, "small.weight", nn_zeros(NN_F32, 2, s2));
}

static void kill_child(const char *path, int64_t v0, int fd) {
    nn_params P;
    nn_adamw *opt;
    nn_ckpt_info info;
    int64_t v;
    kill_registry(&P);
    opt = nn_adamw_new(&P, nn_adamw_default());
    memset(&info, 0, sizeof info);
    for (v = v0;; v++) {
        int k;
        for (k = 0; k < P.n; k++) nn_fill_(P.items[k].t, (double)v);
        for (k = 0; k < P.n; k++) { int64_t i; for (i = 0; i < opt->numel[k]; i++) opt->exp_avg[k][i] = (float)v; }
        opt->step = v;
        info.epoch = v;
        nn_ckpt_save(path, &P, opt, NULL, &info);
        if (v == v0) { char c = 1; if (write(fd, &c, 1) != 1) _exit(3); }
    }
}

static void test_kill_during_save(void) {
    char path[300];
    int round, rounds = 12;
    volatile int loads_ok = 0, mid_write = 0;
    volatile int64_t last = -1;
    unsigned seed = (unsigned)time(NULL);
    snprintf(path, sizeof path, "%s/kill.safetensors", tmpdir);
    srand(seed);
    for (round = 0; round < rounds; round++) {
        int fds[2];
        pid_t pid;
        char c;
        struct timespec ts;
        if (pipe(fds) != 0) { CHECK(0, "pipe"); return; }
        pid = fork();
        if (pid == 0) {
            /* exec a fresh process: a forked child must not touch the parent's OpenMP thread pool */
            char v0[32], fd[16], *args[6];
            close(fds[0]);
            snprintf(v0, sizeof v0, "%d", (round + 1) * 1000);
            snprintf(fd, sizeof fd, "%d", fds[1]);
            args[0] = (char *)self_exe; args[1] = (char *)"kill-child"; args[2] = path; args[3] = v0; args[4] = fd;
            args[5] = NULL;
            execv(self_exe, args);
            _exit(127);
        }
        close(fds[1]);
        if (read(fds[0], &c, 1) != 1) { CHECK(0, "child saved nothing"); close(fds[0]); return; }
        close(fds[0]);
        ts.tv_sec = 0;
        ts.tv_nsec = (long)(rand() % 150) * 1000000L + (long)(rand() % 1000) * 1000L;
        nanosleep(&ts, NULL);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        /* was a temporary file being written? */
        {
            DIR *d = opendir(tmpdir);
            struct dirent *e;
            while (d && (e = readdir(d)) != NULL)
                if (strstr(e->d_name, "kill.safetensors.tmp.")) {
                    char p2[600];
                    mid_write++;
                    snprintf(p2, sizeof p2, "%s/%s", tmpdir, e->d_name);
                    remove(p2);
                }
            if (d) closedir(d);
        }
        {
            nn_params P;
            nn_adamw *opt;
            nn_ckpt_info info;
            volatile int ok = 1;
            int k;
            kill_registry(&P);
            opt = nn_adamw_new(&P, nn_adamw_default());
            memset(&info, 0, sizeof info);
            err_msg[0] = 0;
            nn_set_error_handler(err_handler, NULL);
            if (!setjmp(err_jmp)) {
                nn_ckpt_load(path, &P, opt, NULL, &info);
                for (k = 0; k < P.n; k++) {
                    int64_t i;
                    const float *d = (const float *)P.items[k].t->data;
                    for (i = 0; i < P.items[k].t->numel; i++)
                        if (d[i] != (float)info.epoch || opt->exp_avg[k][i] != (float)info.epoch) { ok = 0; break; }
                }
                if (opt->step != info.epoch || info.epoch <= last || info.epoch < (int64_t)(round + 1) * 1000) ok = 0;
                last = info.epoch;
            } else {
                ok = 0;
                printf("  round %d: %s\n", round, err_msg);
            }
            nn_set_error_handler(NULL, NULL);
            loads_ok += ok;
            nn_ckpt_info_free(&info);
            nn_adamw_free(opt);
            nn_params_free(&P);
        }
    }
    printf("  kill-during-save: %d rounds (seed %u), %d killed while a temporary file was open, last version %lld\n",
           rounds, seed, mid_write, (long long)last);
    CHECK(loads_ok == rounds, "after SIGKILL at a random moment the checkpoint loads and is one complete version "
          "(%d of %d rounds)", loads_ok, rounds);
    remove(path);
}

int main(int argc, char **argv) {
    char fxpath[200];
    self_exe = argv[0];
    if (argc >= 2 && strncmp(argv[1], "resume-", 7) == 0) return resume_child(argc, argv);
    if (argc == 5 && strcmp(argv[1], "kill-child") == 0) { kill_child(argv[2], atoll(argv[3]), atoi(argv[4])); return 0; }
    if (argc >= 2) fixdir = argv[1];
    snprintf(fxpath, sizeof fxpath, "%s/train.txt", fixdir);
    fx = fx_load(fxpath);
    (void)fx_has;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nn_test_train_XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 2; }
    test_sched();
    test_adamw();
    test_mlp_trajectory();
    test_clip();
    test_accumulation();
    test_resume();
    test_kill_during_save();
    {
        char p[300];
        const char *names[3] = {"full", "half", "cont"};
        int i;
        for (i = 0; i < 3; i++) { snprintf(p, sizeof p, "%s/%s.safetensors", tmpdir, names[i]); remove(p); }
        rmdir(tmpdir);
    }
    fx_free(&fx);
    nn_shutdown();
    return test_summary();
}
