/* wip/train.h - training machinery and IO for nn.h: AdamW, LR schedules, gradient clipping, gradient
   accumulation, safetensors, .npy, atomic checkpoints. A fragment for nn.h's implementation section
   (after the core); the block between the API markers goes into nn.h's [api] part. */
#define NN_TRAIN_FRAGMENT 1  /* tests include this file themselves unless nn.h already did */

/* == API == */
/* ============================================================================================ [api:train] */

/* AdamW: torch.optim.AdamW's single-tensor (foreach=False, fused=False) path, element by element in the
   same f32 order (torch/optim/adam.py, _single_tensor_adam, decoupled_weight_decay=True):
       step += 1
       p  = p * (1 - lr*wd)                              (decoupled decay, before the moments)
       m  = lerp(m, g, 1-beta1)                          (torch's CPU kernel: one FMA)
       v  = v*beta2;  v = v + ((1-beta2)*g)*g            (torch's CPU addcmul: one FMA for the add)
       denom = sqrt(v) / sqrt(1-beta2^step) + eps        (eps outside the square root)
       p  = p + (-(lr/(1-beta1^step)) * m) / denom
   with g = -grad under `maximize`, scalars formed in double and rounded to f32 where torch's kernels do.
   Parameter groups: a parameter whose nn_param.no_decay is set gets weight_decay 0 (its own group);
   nn_params_mark_no_decay marks the usual ones (biases, norm weights: every parameter with ndim <= 1).
   A parameter whose grad is NULL is skipped and its step count does not advance (as torch's p.grad None).
   Moments and step counts are f32 / int64 host arrays owned by the optimiser. amsgrad is not offered. */
typedef struct {
    double lr;            /* base learning rate; nn_adamw_step takes the lr to use (schedules scale it) */
    double beta1, beta2;
    double eps;
    double weight_decay;  /* for parameters without no_decay */
    int maximize;
} nn_adamw_cfg;
nn_adamw_cfg nn_adamw_default(void);  /* torch's defaults: lr 1e-3, betas (0.9, 0.999), eps 1e-8, wd 0.01 */

typedef struct {
    nn_params *P;          /* walked by index: the registry must not change after nn_adamw_new */
    nn_adamw_cfg cfg;
    int n;                 /* number of parameters */
    int64_t *numel;        /* per parameter */
    float **exp_avg, **exp_avg_sq;  /* per parameter, numel floats each (torch's state names) */
    int64_t *steps;        /* per parameter, torch's state['step'] */
    int64_t step;          /* calls of nn_adamw_step */
} nn_adamw;
nn_adamw *nn_adamw_new(nn_params *P, nn_adamw_cfg cfg);
void nn_adamw_step(nn_adamw *opt, double lr);  /* lr: this step's learning rate (cfg.lr when constant) */
void nn_adamw_free(nn_adamw *opt);
int nn_params_mark_no_decay(nn_params *P);     /* no_decay = 1 on every parameter of ndim <= 1; count */

/* Learning-rate schedules, closed forms of torch's recursive schedulers (equal to rounding):
     t < warmup:  base_lr * (start_factor + (1 - start_factor) * t / warmup)          LinearLR
     t >= warmup: eta_min + (base_lr - eta_min) * (1 + cos(pi * (t - warmup) / T_max)) / 2
                                                                         CosineAnnealingLR (periodic past T_max)
   i.e. SequentialLR([LinearLR(opt, start_factor, 1.0, total_iters=warmup), CosineAnnealingLR(opt, T_max,
   eta_min)], milestones=[warmup]); warmup = 0 is a plain CosineAnnealingLR, T_max = 0 a constant after the
   warmup. t is torch's last_epoch: the lr for the optimiser step that follows, as torch's loop
       lr = nn_sched_lr(&s); nn_adamw_step(opt, lr); nn_sched_step(&s);
   Stepping once per epoch instead of once per step gives the per-epoch schedule. */
typedef struct {
    double base_lr, eta_min, start_factor;
    int64_t warmup, T_max;
    int64_t last_epoch;    /* scheduler steps taken (checkpointed) */
} nn_sched;
nn_sched nn_sched_cosine(double base_lr, int64_t T_max, double eta_min);
nn_sched nn_sched_warmup_cosine(double base_lr, double start_factor, int64_t warmup, int64_t T_max,
                                double eta_min);
double nn_sched_lr_at(const nn_sched *s, int64_t t);
double nn_sched_lr(const nn_sched *s);  /* nn_sched_lr_at(s, s->last_epoch) */
void nn_sched_step(nn_sched *s);

/* Global L2 gradient clipping, torch.nn.utils.clip_grad_norm_(params, max_norm) (norm_type 2):
   norm_k = ||grad_k|| per parameter (summed in double, rounded to f32 as torch's per-tensor norms),
   total = || (norm_1 .. norm_n) || in f32 (returned), coef = min(max_norm * (1 / (total + 1e-6)), 1) in f32,
   every grad *= coef. As in torch a NaN total gives a NaN coef and NaN grads, an inf total gives coef 0
   (finite grads become 0, infinite ones NaN): the returned norm says so; with error_if_nonfinite the
   function reports through nn_error instead and leaves the grads untouched. Parameters without grad are
   skipped. nn_grad_norm returns the total without clipping. */
float nn_clip_grad_norm(nn_params *P, double max_norm, int error_if_nonfinite);
float nn_grad_norm(const nn_params *P);

/* Gradient accumulation (no function needed): gradients add up in the leaves' ->grad until zeroed, so for
   k micro-batches per optimiser step scale each micro-batch's mean loss by 1/k:
       nn_params_zero_grad(P);
       for (j = 0; j < k; j++) { nn_scope_begin(); loss = ...micro-batch j...;
                                 nn_backward(nn_mul_scalar(loss, 1.0 / k)); nn_scope_end(NULL); }
       nn_clip_grad_norm(P, 1.0, 0); nn_adamw_step(opt, lr);
   which equals one batch of k*b with a mean loss, up to f32 rounding (tests/test_train.c checks it). */

/* ================================================================================================ [api:io] */
/* All readers validate everything and report a malformed file through nn_error with the file name (and
   the tensor or key), never reading out of bounds; they free what they allocated before reporting, so an
   error handler may longjmp. Writers are atomic: they write "<path>.tmp.<pid>.<n>" in the same directory,
   flush and fsync it, rename it over <path> and fsync the directory, so a crash at any moment leaves
   either the old file or the new one (POSIX; elsewhere the rename is not atomic). Byte order: the host
   must be little-endian (checked). */

/* safetensors (https://github.com/huggingface/safetensors): u64 little-endian header size N, N bytes of
   JSON {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}, .., "__metadata__":
   {"key": "value"}}, then the data. Checked on open: N <= 100 MB and within the file; the JSON (strict
   parser: UTF-8, no duplicate keys, no unknown fields); dtype one of F32 F16 BF16 I32 I64 U8 BOOL;
   at most NN_MAX_DIMS dims; numel x dtype size == end - begin; the spans, sorted, start at 0, neither
   overlap nor leave gaps, and end exactly at the end of the file. The file stays open (mmap on POSIX,
   else read on demand), so a tensor's bytes are copied once, straight into the tensor. */
typedef struct {
    char *name;
    nn_dtype dtype;
    int ndim;
    int64_t shape[NN_MAX_DIMS];
    int64_t numel;
    uint64_t begin, end;  /* data_offsets: bytes from the start of the data region */
} nn_st_info;
typedef struct nn_safetensors nn_safetensors;
nn_safetensors *nn_safetensors_open(const char *path);
void nn_safetensors_close(nn_safetensors *f);
int nn_safetensors_count(const nn_safetensors *f);
const nn_st_info *nn_safetensors_info(const nn_safetensors *f, int i);   /* i-th tensor, header order */
int nn_safetensors_find(const nn_safetensors *f, const char *name);      /* index or -1 */
int nn_safetensors_meta_count(const nn_safetensors *f);
const char *nn_safetensors_meta_key(const nn_safetensors *f, int i);
const char *nn_safetensors_meta(const nn_safetensors *f, const char *key); /* value or NULL */
nn_tensor *nn_safetensors_get(nn_safetensors *f, const char *name);      /* new tensor, stored dtype */
/* into an existing tensor of the same shape; another dtype only with convert (f32/f16/bf16/ints) */
void nn_safetensors_read_into(nn_safetensors *f, const char *name, nn_tensor *dst, int convert);

/* writing: entries are written in the given order, stably sorted by dtype size (largest first, so every
   tensor is aligned in the file as Python's writer aligns them); names unique and non-empty. */
typedef struct {
    const char *name;
    nn_dtype dtype;
    int ndim;
    const int64_t *shape;
    const void *data;      /* host bytes, or NULL to take them from t */
    const nn_tensor *t;    /* any device; used when data is NULL (dtype/ndim/shape are then t's) */
} nn_st_entry;
/* meta: n_meta pairs key0, value0, key1, value1, ... (NULL when n_meta is 0) */
void nn_safetensors_write(const char *path, int n, const nn_st_entry *entries, int n_meta,
                          const char *const *meta);
void nn_params_save(const char *path, const nn_params *P, int n_meta, const char *const *meta);

/* loading a registry by name, like load_state_dict: every check runs before anything is copied, so an
   error leaves the registry unchanged. A shape mismatch is always an error; a dtype mismatch too unless
   convert_dtype. Missing keys (in P, not in the file) and unexpected keys (in the file, not in P) are
   errors when strict, else listed in *res (may be NULL; free with nn_load_result_free). */
typedef struct {
    int strict;
    int convert_dtype;
    const char *skip_prefix;  /* file keys starting with this are ignored (NULL: none) */
} nn_load_opts;
typedef struct { int n_missing, n_unexpected; char **missing, **unexpected; } nn_load_result;
void nn_params_load(const char *path, nn_params *P, const nn_load_opts *opts, nn_load_result *res);
void nn_params_load_from(nn_safetensors *f, nn_params *P, const nn_load_opts *opts, nn_load_result *res);
void nn_load_result_free(nn_load_result *res);

/* NumPy .npy, format versions 1.0, 2.0 and 3.0, C order, dtypes <f4 <f2 <i4 <i8 |u1 |b1 (also written
   <u1/<b1/=f4 ... by some writers: accepted). fortran_order, big-endian, other dtypes, a truncated file or
   bytes after the data are errors. nn_npy_save writes version 1.0 (2.0 when the header needs it). */
nn_tensor *nn_npy_load(const char *path);
void nn_npy_save(const char *path, const nn_tensor *t);

/* Checkpoints: ONE safetensors file, written atomically.
     tensors   <name>                        every registry parameter under its own (PyTorch) name
               optim.exp_avg.<name>          AdamW first moment, f32, the parameter's shape
               optim.exp_avg_sq.<name>       second moment
               optim.step.<name>             i64 scalar (shape []), torch's per-parameter state['step']
     metadata  format = "nn.h checkpoint 1", step, epoch, best_metric (%.17g: round-trips), rng_seed,
               rng_offset, sched ("key=value ..." of nn_sched), adamw (its cfg, informative), config.
   In PyTorch: sd = safetensors.torch.load_file(path);
               model.load_state_dict({k: v for k, v in sd.items() if not k.startswith("optim.")})
   (or strict=False, which lists the optim.* keys as unexpected). Registry names may not start with
   "optim.". opt and sched may be NULL (then not saved / not restored). nn_ckpt_save stores nn_rng_get();
   nn_ckpt_load restores the parameters, the optimiser (moments, per-parameter and global step), the
   schedule's state, the RNG (nn_rng_set) and info. Loading checks everything before changing anything. */
typedef struct {
    int64_t epoch;
    double best_metric;
    const char *config;   /* save: text to store, may be NULL; load: a malloc'd copy (nn_ckpt_info_free) */
    nn_rng_state rng;     /* load: the restored RNG state (save ignores it: it stores nn_rng_get()) */
} nn_ckpt_info;
void nn_ckpt_save(const char *path, const nn_params *P, const nn_adamw *opt, const nn_sched *sched,
                  const nn_ckpt_info *info);
void nn_ckpt_load(const char *path, nn_params *P, nn_adamw *opt, nn_sched *sched, nn_ckpt_info *info);
void nn_ckpt_info_free(nn_ckpt_info *info);
/* == END API == */

/* ------------------------------------------------------------------------------------------ [impl:adamw] */

nn_adamw_cfg nn_adamw_default(void) {
    nn_adamw_cfg c;
    c.lr = 1e-3; c.beta1 = 0.9; c.beta2 = 0.999; c.eps = 1e-8; c.weight_decay = 1e-2; c.maximize = 0;
    return c;
}

int nn_params_mark_no_decay(nn_params *P) {
    int k, n = 0;
    if (!P) nn_error("nn_params_mark_no_decay: registry is NULL");
    for (k = 0; k < P->n; k++)
        if (P->items[k].t->ndim <= 1) { P->items[k].no_decay = 1; n++; }
    return n;
}

static void nn__adamw_release(nn_adamw *o) {
    int k;
    if (!o) return;
    for (k = 0; k < o->n; k++) {
        if (o->exp_avg) free(o->exp_avg[k]);
        if (o->exp_avg_sq) free(o->exp_avg_sq[k]);
    }
    free(o->exp_avg); free(o->exp_avg_sq); free(o->numel); free(o->steps); free(o);
}

nn_adamw *nn_adamw_new(nn_params *P, nn_adamw_cfg c) {
    nn_adamw *o;
    int k;
    if (!P) nn_error("nn_adamw_new: registry is NULL");
    /* torch.optim.Adam's argument checks */
    if (!(c.lr >= 0)) nn_error("nn_adamw_new: invalid learning rate %g", c.lr);
    if (!(c.eps >= 0)) nn_error("nn_adamw_new: invalid epsilon value %g", c.eps);
    if (!(c.beta1 >= 0 && c.beta1 < 1)) nn_error("nn_adamw_new: invalid beta parameter at index 0: %g", c.beta1);
    if (!(c.beta2 >= 0 && c.beta2 < 1)) nn_error("nn_adamw_new: invalid beta parameter at index 1: %g", c.beta2);
    if (!(c.weight_decay >= 0)) nn_error("nn_adamw_new: invalid weight_decay value %g", c.weight_decay);
    for (k = 0; k < P->n; k++) {
        const nn_tensor *t = P->items[k].t;
        if (t->dtype != NN_F32 || t->device != NN_CPU)
            nn_error("nn_adamw_new: parameter %s is %s on %s; AdamW keeps f32 master weights on the CPU",
                     P->items[k].name, nn_dtype_name(t->dtype), nn_device_name(t->device));
    }
    o = (nn_adamw *)calloc(1, sizeof *o);
    if (!o) nn_error("nn_adamw_new: out of memory");
    o->P = P; o->cfg = c; o->n = P->n;
    if (P->n > 0) {
        o->numel = (int64_t *)calloc((size_t)P->n, sizeof(int64_t));
        o->steps = (int64_t *)calloc((size_t)P->n, sizeof(int64_t));
        o->exp_avg = (float **)calloc((size_t)P->n, sizeof(float *));
        o->exp_avg_sq = (float **)calloc((size_t)P->n, sizeof(float *));
        if (!o->numel || !o->steps || !o->exp_avg || !o->exp_avg_sq) goto oom;
        for (k = 0; k < P->n; k++) {
            size_t bytes = (size_t)P->items[k].t->numel * sizeof(float);
            o->numel[k] = P->items[k].t->numel;
            /* calloc(0) may return NULL: ask for at least one element */
            o->exp_avg[k] = (float *)calloc(bytes ? bytes : 1, 1);
            o->exp_avg_sq[k] = (float *)calloc(bytes ? bytes : 1, 1);
            if (!o->exp_avg[k] || !o->exp_avg_sq[k]) goto oom;
        }
    }
    return o;
oom:
    nn__adamw_release(o);
    nn_error("nn_adamw_new: out of memory for the moments of %d parameters", P->n);
    return NULL;
}

void nn_adamw_free(nn_adamw *o) { nn__adamw_release(o); }

/* torch's lerp (ATen/native/Lerp.h): self + w*(end-self) for |w| < 0.5, else end - (end-self)*(1-w); its
   vectorised CPU kernel evaluates either as one fused multiply-add, hence fmaf */
static float nn__lerpf(float self, float end, float w) {
    return fabsf(w) < 0.5f ? fmaf(w, end - self, self) : fmaf(w - 1.0f, end - self, end);
}

void nn_adamw_step(nn_adamw *o, double lr) {
    int k;
    nn_params *P;
    if (!o) nn_error("nn_adamw_step: optimiser is NULL");
    P = o->P;
    if (!(lr >= 0)) nn_error("nn_adamw_step: invalid learning rate %g", lr);
    if (P->n != o->n)
        nn_error("nn_adamw_step: the registry has %d parameters, the optimiser was made for %d (make the "
                 "optimiser after the model is complete)", P->n, o->n);
    for (k = 0; k < o->n; k++) {
        const nn_tensor *t = P->items[k].t, *g = t->grad;
        if (t->numel != o->numel[k] || t->dtype != NN_F32 || t->device != NN_CPU)
            nn_error("nn_adamw_step: parameter %s changed since nn_adamw_new", P->items[k].name);
        if (g && (g->numel != t->numel || g->dtype != NN_F32 || g->device != NN_CPU))
            nn_error("nn_adamw_step: gradient of %s is %s on %s with %lld elements, parameter has %lld",
                     P->items[k].name, nn_dtype_name(g->dtype), nn_device_name(g->device),
                     (long long)g->numel, (long long)t->numel);
    }
    o->step++;
    for (k = 0; k < o->n; k++) {
        nn_tensor *t = P->items[k].t;
        float *p = (float *)t->data, *m = o->exp_avg[k], *v = o->exp_avg_sq[k];
        const float *g;
        double wd = P->items[k].no_decay ? 0.0 : o->cfg.weight_decay, b1 = o->cfg.beta1, b2 = o->cfg.beta2;
        double bc1, bc2, step_size, bc2_sqrt;
        float decay, w1, b2f, w2, bc2f, epsf, neg_step;
        int64_t i, n = t->numel, step;
        int maximize = o->cfg.maximize, do_decay = wd != 0;
        if (!t->grad) continue;  /* torch skips parameters whose grad is None */
        g = (const float *)t->grad->data;
        step = ++o->steps[k];
        /* the Python-float scalars of _single_tensor_adam (double), rounded to f32 where a kernel uses them */
        bc1 = 1.0 - pow(b1, (double)step);
        bc2 = 1.0 - pow(b2, (double)step);
        step_size = lr / bc1;
        bc2_sqrt = pow(bc2, 0.5);  /* Python's bc2 ** 0.5 */
        decay = (float)(1.0 - lr * wd);
        w1 = (float)(1.0 - b1);
        b2f = (float)b2;
        w2 = (float)(1.0 - b2);
        bc2f = (float)bc2_sqrt;
        epsf = (float)o->cfg.eps;
        neg_step = (float)(-step_size);
        NN_OMP("omp parallel for if (n > 32768)")
        for (i = 0; i < n; i++) {
            float gi = maximize ? -g[i] : g[i], pi = p[i], vi, denom;
            if (do_decay) pi = pi * decay;
            m[i] = nn__lerpf(m[i], gi, w1);
            vi = v[i] * b2f;
            vi = fmaf(w2 * gi, gi, vi);  /* addcmul: self + (value*t1)*t2, the add fused */
            v[i] = vi;
            denom = sqrtf(vi) / bc2f + epsf;
            p[i] = pi + (neg_step * m[i]) / denom;  /* addcdiv: self + (value*t1)/t2 */
        }
    }
}

/* ------------------------------------------------------------------------------------------ [impl:sched] */

nn_sched nn_sched_warmup_cosine(double base_lr, double start_factor, int64_t warmup, int64_t T_max,
                                double eta_min) {
    nn_sched s;
    /* torch.optim.lr_scheduler.LinearLR: 0 < start_factor <= 1 */
    if (warmup < 0 || T_max < 0) nn_error("nn_sched_warmup_cosine: warmup %lld and T_max %lld must be >= 0",
                                         (long long)warmup, (long long)T_max);
    if (warmup > 0 && !(start_factor > 0 && start_factor <= 1))
        nn_error("nn_sched_warmup_cosine: start_factor %g must be in (0, 1] (torch's LinearLR)", start_factor);
    if (!(base_lr >= 0)) nn_error("nn_sched_warmup_cosine: invalid base lr %g", base_lr);
    s.base_lr = base_lr; s.eta_min = eta_min; s.start_factor = warmup > 0 ? start_factor : 1.0;
    s.warmup = warmup; s.T_max = T_max; s.last_epoch = 0;
    return s;
}

nn_sched nn_sched_cosine(double base_lr, int64_t T_max, double eta_min) {
    if (T_max <= 0) nn_error("nn_sched_cosine: T_max %lld must be > 0", (long long)T_max);
    return nn_sched_warmup_cosine(base_lr, 1.0, 0, T_max, eta_min);
}

double nn_sched_lr_at(const nn_sched *s, int64_t t) {
    if (!s) nn_error("nn_sched_lr_at: schedule is NULL");
    if (t < 0) t = 0;
    if (t < s->warmup)  /* LinearLR's closed form with end_factor 1 */
        return s->base_lr * (s->start_factor + (1.0 - s->start_factor) * (double)t / (double)s->warmup);
    if (s->T_max <= 0) return s->base_lr;
    /* CosineAnnealingLR's closed form (SGDR without restarts, Loshchilov & Hutter 2017, eq. 5) */
    return s->eta_min + (s->base_lr - s->eta_min) *
           (1.0 + cos(NN_PI * (double)(t - s->warmup) / (double)s->T_max)) / 2.0;
}

double nn_sched_lr(const nn_sched *s) {
    if (!s) nn_error("nn_sched_lr: schedule is NULL");
    return nn_sched_lr_at(s, s->last_epoch);
}

void nn_sched_step(nn_sched *s) {
    if (!s) nn_error("nn_sched_step: schedule is NULL");
    s->last_epoch++;
}

/* ------------------------------------------------------------------------------------------- [impl:clip] */

/* sum of squares in double (exact enough that the f32 root is torch's to within an ulp), over a fixed
   number of chunks combined in order: the result does not depend on the thread count or on the order in
   which threads finish (an OpenMP reduction's is unspecified), which bit-exact resume needs */
static double nn__sumsq(const float *x, int64_t n) {
    double part[64], acc = 0;
    int64_t c, nc = n > 32768 ? 64 : 1;
    NN_OMP("omp parallel for if (nc > 1)")
    for (c = 0; c < nc; c++) {
        int64_t i, lo = n * c / nc, hi = n * (c + 1) / nc;
        double a = 0;
        for (i = lo; i < hi; i++) a += (double)x[i] * (double)x[i];
        part[c] = a;
    }
    for (c = 0; c < nc; c++) acc += part[c];
    return acc;
}

static float nn__grad_total_norm(const char *op, const nn_params *P) {
    int k;
    double total = 0;
    if (!P) nn_error("%s: registry is NULL", op);
    for (k = 0; k < P->n; k++) {
        const nn_tensor *g = P->items[k].t->grad;
        float nk;
        if (!g) continue;
        if (g->dtype != NN_F32 || g->device != NN_CPU)
            nn_error("%s: gradient of %s is %s on %s (f32 on the CPU expected)", op, P->items[k].name,
                     nn_dtype_name(g->dtype), nn_device_name(g->device));
        /* torch: vector_norm per gradient (an f32 result), then the norm of the stacked norms */
        nk = (float)sqrt(nn__sumsq((const float *)g->data, g->numel));
        total += (double)nk * (double)nk;
    }
    return (float)sqrt(total);
}

float nn_grad_norm(const nn_params *P) { return nn__grad_total_norm("nn_grad_norm", P); }

float nn_clip_grad_norm(nn_params *P, double max_norm, int error_if_nonfinite) {
    float total = nn__grad_total_norm("nn_clip_grad_norm", P), coef;
    int k;
    if (error_if_nonfinite && !(total - total == 0))  /* NaN or inf */
        nn_error("nn_clip_grad_norm: the total norm of order 2 for gradients from %d parameters is "
                 "non-finite (%g), so it cannot be clipped", P->n, (double)total);
    /* torch: clip_coef = max_norm / (total_norm + 1e-6) on f32 tensors, where python-scalar / tensor is
       tensor.reciprocal() * scalar; then clamp(max=1.0), which keeps NaN */
    coef = (1.0f / (total + 1e-6f)) * (float)max_norm;
    if (coef > 1.0f) coef = 1.0f;
    if (coef == 1.0f) return total;  /* x * 1 == x */
    for (k = 0; k < P->n; k++) {
        nn_tensor *g = P->items[k].t->grad;
        float *d;
        int64_t i, n;
        if (!g) continue;
        d = (float *)g->data;
        n = g->numel;
        NN_OMP("omp parallel for if (n > 32768)")
        for (i = 0; i < n; i++) d[i] *= coef;
    }
    return total;
}

/* --------------------------------------------------------------------------------------------- [impl:io] */
/* files: POSIX open/read/write/fsync/rename/mmap where available (the declarations that strict -std=c99
   still exposes), stdio elsewhere */
#if defined(__unix__) || defined(__unix) || defined(__APPLE__)
#define NN__POSIX_IO 1
#include <unistd.h>
#include <fcntl.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <sys/mman.h>
#endif
#include <errno.h>

static int nn__little_endian(void) {
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

/* a readable file: size known up front, reads at an offset */
typedef struct {
#ifdef NN__POSIX_IO
    int fd;
#else
    FILE *fp;
#endif
    uint64_t size;
} nn__rfile;

static int nn__rfile_open(nn__rfile *f, const char *path, char *err, size_t en) {
#ifdef NN__POSIX_IO
    struct stat st;
    f->fd = open(path, O_RDONLY);
    if (f->fd < 0) { snprintf(err, en, "cannot open: %s", strerror(errno)); return 0; }
    if (fstat(f->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, en, "not a regular file");
        close(f->fd); f->fd = -1;
        return 0;
    }
    f->size = (uint64_t)st.st_size;
#else
    long sz;
    f->fp = fopen(path, "rb");
    if (!f->fp) { snprintf(err, en, "cannot open: %s", strerror(errno)); return 0; }
    if (fseek(f->fp, 0, SEEK_END) != 0 || (sz = ftell(f->fp)) < 0) {
        snprintf(err, en, "cannot determine its size");
        fclose(f->fp); f->fp = NULL;
        return 0;
    }
    f->size = (uint64_t)sz;
#endif
    return 1;
}

static void nn__rfile_close(nn__rfile *f) {
#ifdef NN__POSIX_IO
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
#else
    if (f->fp) fclose(f->fp);
    f->fp = NULL;
#endif
}

/* n bytes at offset off into dst; 0 on a short read (the file changed) or an I/O error */
static int nn__rfile_read(nn__rfile *f, uint64_t off, void *dst, uint64_t n) {
    unsigned char *d = (unsigned char *)dst;
    if (off > f->size || n > f->size - off) return 0;
#ifdef NN__POSIX_IO
    if (lseek(f->fd, (off_t)off, SEEK_SET) == (off_t)-1) return 0;
    while (n > 0) {
        size_t chunk = n > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
        ssize_t r = read(f->fd, d, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return 0;
        d += r; n -= (uint64_t)r;
    }
#else
    if (off > (uint64_t)0x7fffffffL || fseek(f->fp, (long)off, SEEK_SET) != 0) return 0;
    if (n > 0 && fread(d, 1, (size_t)n, f->fp) != (size_t)n) return 0;
#endif
    return 1;
}

/* an atomic writer: "<path>.tmp.<pid>.<k>" in the same directory, renamed over <path> on commit */
typedef struct {
#ifdef NN__POSIX_IO
    int fd;
#else
    FILE *fp;
#endif
    char *tmp;
    const char *path;
} nn__wfile;

static unsigned nn__tmp_counter;

static int nn__wfile_open(nn__wfile *w, const char *path, char *err, size_t en) {
    size_t len = strlen(path) + 64;
    w->path = path;
    w->tmp = (char *)malloc(len);
    if (!w->tmp) { snprintf(err, en, "out of memory"); return 0; }
#ifdef NN__POSIX_IO
    snprintf(w->tmp, len, "%s.tmp.%ld.%u", path, (long)getpid(), nn__tmp_counter++);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_EXCL, 0666);
    if (w->fd < 0) {
        snprintf(err, en, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w->tmp); w->tmp = NULL;
        return 0;
    }
#else
    snprintf(w->tmp, len, "%s.tmp.%u", path, nn__tmp_counter++);
    w->fp = fopen(w->tmp, "wb");
    if (!w->fp) {
        snprintf(err, en, "cannot create %s: %s", w->tmp, strerror(errno));
        free(w->tmp); w->tmp = NULL;
        return 0;
    }
#endif
    return 1;
}

static int nn__wfile_write(nn__wfile *w, const void *src, uint64_t n, char *err, size_t en) {
    const unsigned char *s = (const unsigned char *)src;
#ifdef NN__POSIX_IO
    while (n > 0) {
        size_t chunk = n > ((uint64_t)1 << 30) ? ((size_t)1 << 30) : (size_t)n;
        ssize_t r = write(w->fd, s, chunk);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { snprintf(err, en, "cannot write %s: %s", w->tmp, strerror(errno)); return 0; }
        s += r; n -= (uint64_t)r;
    }
#else
    if (n > 0 && fwrite(s, 1, (size_t)n, w->fp) != (size_t)n) {
        snprintf(err, en, "cannot write %s: %s", w->tmp, strerror(errno));
        return 0;
    }
#endif
    return 1;
}

static void nn__wfile_abort(nn__wfile *w) {
#ifdef NN__POSIX_IO
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
#else
    if (w->fp) fclose(w->fp);
    w->fp = NULL;
#endif
    if (w->tmp) { remove(w->tmp); free(w->tmp); w->tmp = NULL; }
}

/* data on disk before the name changes (fsync), the rename itself on disk after (fsync of the directory):
   the sequence that makes replace-by-rename crash safe on POSIX file systems */
static int nn__wfile_commit(nn__wfile *w, char *err, size_t en) {
#ifdef NN__POSIX_IO
    char *dir;
    const char *slash;
    int dfd;
    if (fsync(w->fd) != 0) { snprintf(err, en, "cannot fsync %s: %s", w->tmp, strerror(errno)); nn__wfile_abort(w); return 0; }
    if (close(w->fd) != 0) {
        w->fd = -1;
        snprintf(err, en, "cannot close %s: %s", w->tmp, strerror(errno)); nn__wfile_abort(w); return 0;
    }
    w->fd = -1;
    if (rename(w->tmp, w->path) != 0) {
        snprintf(err, en, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno)); nn__wfile_abort(w); return 0;
    }
    slash = strrchr(w->path, '/');
    dir = (char *)malloc(slash ? (size_t)(slash - w->path) + 2 : 2);
    if (dir) {
        if (slash == w->path) strcpy(dir, "/");
        else if (slash) { memcpy(dir, w->path, (size_t)(slash - w->path)); dir[slash - w->path] = 0; }
        else strcpy(dir, ".");
        dfd = open(dir, O_RDONLY);
        if (dfd >= 0) { fsync(dfd); close(dfd); }  /* best effort: some file systems refuse it */
        free(dir);
    }
#else
    if (fflush(w->fp) != 0 || fclose(w->fp) != 0) {
        w->fp = NULL;
        snprintf(err, en, "cannot write %s: %s", w->tmp, strerror(errno)); nn__wfile_abort(w); return 0;
    }
    w->fp = NULL;
    remove(w->path);  /* rename does not replace on every platform; not atomic here */
    if (rename(w->tmp, w->path) != 0) {
        snprintf(err, en, "cannot rename %s to %s: %s", w->tmp, w->path, strerror(errno)); nn__wfile_abort(w); return 0;
    }
#endif
    free(w->tmp); w->tmp = NULL;
    return 1;
}

/* a growing text buffer (headers) */
typedef struct { char *p; size_t n, cap; int oom; } nn__buf;

static void nn__buf_put(nn__buf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *p;
        while (cap < b->n + n + 1) cap *= 2;
        p = (char *)realloc(b->p, cap);
        if (!p) { b->oom = 1; return; }
        b->p = p; b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void nn__buf_str(nn__buf *b, const char *s) { nn__buf_put(b, s, strlen(s)); }
static void nn__buf_u64(nn__buf *b, uint64_t v) {
    char t[24];
    snprintf(t, sizeof t, "%llu", (unsigned long long)v);
    nn__buf_str(b, t);
}
/* a JSON string literal; s must be valid UTF-8 */
static void nn__buf_json_str(nn__buf *b, const char *s) {
    nn__buf_put(b, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') { char e[2]; e[0] = '\\'; e[1] = (char)c; nn__buf_put(b, e, 2); }
        else if (c < 0x20) { char e[8]; snprintf(e, sizeof e, "\\u%04x", c); nn__buf_str(b, e); }
        else nn__buf_put(b, (const char *)&c, 1);
    }
    nn__buf_put(b, "\"", 1);
}

/* length of the valid UTF-8 sequence at s (at most n bytes), 0 if invalid (RFC 3629: no overlong forms,
   no surrogates, nothing above U+10FFFF) */
static int nn__utf8_len(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    int len, k;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) len = 3;
    else if (c >= 0xF0 && c <= 0xF4) len = 4;
    else return 0;
    if ((size_t)len > n) return 0;
    for (k = 1; k < len; k++) if ((s[k] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0;
    if (c == 0xED && s[1] > 0x9F) return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0;
    if (c == 0xF4 && s[1] > 0x8F) return 0;
    return len;
}

static int nn__utf8_valid(const char *s) {
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n > 0) {
        int l = nn__utf8_len(p, n);
        if (!l) return 0;
        p += l; n -= (size_t)l;
    }
    return 1;
}

/* element conversion between storage dtypes: floats through f32 (f16/bf16 round to nearest even), ints
   through int64; float -> int truncates toward zero and saturates (NaN -> 0), -> bool is "nonzero" */
static double nn__elem_get(const void *src, nn_dtype dt, int64_t i) {
    switch (dt) {
    case NN_F32: return ((const float *)src)[i];
    case NN_F16: return nn__half_to_f32(((const uint16_t *)src)[i]);
    case NN_BF16: return nn__bf16_to_f32(((const uint16_t *)src)[i]);
    case NN_I32: return ((const int32_t *)src)[i];
    case NN_I64: return (double)((const int64_t *)src)[i];
    case NN_U8: return ((const uint8_t *)src)[i];
    case NN_BOOL: return ((const uint8_t *)src)[i] != 0;
    default: return 0;
    }
}
static int64_t nn__elem_get_i(const void *src, nn_dtype dt, int64_t i) {
    switch (dt) {
    case NN_I32: return ((const int32_t *)src)[i];
    case NN_I64: return ((const int64_t *)src)[i];
    case NN_U8: return ((const uint8_t *)src)[i];
    case NN_BOOL: return ((const uint8_t *)src)[i] != 0;
    default: {
        double v = nn__elem_get(src, dt, i);
        if (!(v == v)) return 0;
        if (v >= 9223372036854775807.0) return INT64_MAX;
        if (v <= -9223372036854775808.0) return INT64_MIN;
        return (int64_t)v;
    }
    }
}
static void nn__convert(const void *src, nn_dtype sdt, void *dst, nn_dtype ddt, int64_t n) {
    int64_t i;
    if (sdt == ddt) { memcpy(dst, src, (size_t)n * nn_dtype_size(sdt)); return; }
    for (i = 0; i < n; i++) {
        switch (ddt) {
        case NN_F32: ((float *)dst)[i] = (float)nn__elem_get(src, sdt, i); break;
        case NN_F16: ((uint16_t *)dst)[i] = nn__f32_to_half((float)nn__elem_get(src, sdt, i)); break;
        case NN_BF16: ((uint16_t *)dst)[i] = nn__f32_to_bf16((float)nn__elem_get(src, sdt, i)); break;
        case NN_I64: ((int64_t *)dst)[i] = nn__elem_get_i(src, sdt, i); break;
        case NN_I32: {
            int64_t v = nn__elem_get_i(src, sdt, i);
            ((int32_t *)dst)[i] = (int32_t)(v > INT32_MAX ? INT32_MAX : v < INT32_MIN ? INT32_MIN : v);
            break;
        }
        case NN_U8: {
            int64_t v = nn__elem_get_i(src, sdt, i);
            ((uint8_t *)dst)[i] = (uint8_t)(v > 255 ? 255 : v < 0 ? 0 : v);
            break;
        }
        case NN_BOOL: ((uint8_t *)dst)[i] = nn__elem_get(src, sdt, i) != 0; break;
        default: break;
        }
    }
}

/* shape product with overflow checks: -1 when it exceeds 2^62 elements */
static int64_t nn__numel_checked(int ndim, const int64_t *shape) {
    int64_t n = 1;
    int d;
    for (d = 0; d < ndim; d++) if (shape[d] == 0) return 0;
    for (d = 0; d < ndim; d++) {
        if (shape[d] < 0 || shape[d] > ((int64_t)1 << 62)) return -1;
        if (n > (((int64_t)1 << 62) / shape[d])) return -1;
        n *= shape[d];
    }
    return n;
}

static void nn__shape_fmt(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t k = 0;
    int d;
    buf[0] = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (d = 0; d < ndim && k < n; d++)
        k += (size_t)snprintf(buf + k, n - k, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* ------------------------------------------------------------------------------------ [impl:io:json] */
/* A strict JSON reader for the safetensors header (RFC 8259 strings and non-negative integers, objects,
   arrays), schema-driven: it parses exactly what a safetensors header may hold and names the first byte
   that is not. */

typedef struct {
    const char *s;
    size_t n, i;
    const char *key;    /* tensor being parsed, for messages */
    char *err;
    size_t en;
} nn__js;

static int nn__js_fail(nn__js *j, const char *what) {
    if (j->key)
        snprintf(j->err, j->en, "header JSON, tensor \"%.200s\": %s (at header byte %lu)", j->key, what,
                 (unsigned long)j->i);
    else
        snprintf(j->err, j->en, "header JSON: %s (at header byte %lu)", what, (unsigned long)j->i);
    return 0;
}

static void nn__js_ws(nn__js *j) {
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' || j->s[j->i] == '\r'))
        j->i++;
}

static int nn__js_eat(nn__js *j, char c) {
    nn__js_ws(j);
    if (j->i < j->n && j->s[j->i] == c) { j->i++; return 1; }
    return 0;
}

static int nn__js_hex4(nn__js *j, size_t at, unsigned *out) {
    unsigned v = 0;
    int k;
    if (at + 4 > j->n) return 0;
    for (k = 0; k < 4; k++) {
        char c = j->s[at + (size_t)k];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return 0;
    }
    *out = v;
    return 1;
}

/* a string into a new malloc'd NUL-terminated UTF-8 buffer */
static int nn__js_str(nn__js *j, char **out) {
    size_t k, len = 0;
    char *b;
    *out = NULL;
    nn__js_ws(j);
    if (j->i >= j->n || j->s[j->i] != '"') return nn__js_fail(j, "expected a string");
    /* find the closing quote first: the decoded string is never longer than the raw one */
    for (k = j->i + 1; k < j->n && j->s[k] != '"'; k++)
        if (j->s[k] == '\\') k++;
    if (k >= j->n) return nn__js_fail(j, "unterminated string");
    b = (char *)malloc(k - j->i);
    if (!b) return nn__js_fail(j, "out of memory");
    j->i++;
    while (j->s[j->i] != '"') {
        unsigned char c = (unsigned char)j->s[j->i];
        if (c < 0x20) { free(b); return nn__js_fail(j, "control character in a string"); }
        if (c == '\\') {
            char e = j->s[j->i + 1];
            unsigned cp;
            j->i += 2;
            switch (e) {
            case '"': b[len++] = '"'; break;
            case '\\': b[len++] = '\\'; break;
            case '/': b[len++] = '/'; break;
            case 'b': b[len++] = '\b'; break;
            case 'f': b[len++] = '\f'; break;
            case 'n': b[len++] = '\n'; break;
            case 'r': b[len++] = '\r'; break;
            case 't': b[len++] = '\t'; break;
            case 'u':
                if (!nn__js_hex4(j, j->i, &cp)) { free(b); return nn__js_fail(j, "bad \\u escape"); }
                j->i += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) { free(b); return nn__js_fail(j, "lone low surrogate"); }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    unsigned lo;
                    if (j->i + 6 > j->n || j->s[j->i] != '\\' || j->s[j->i + 1] != 'u' ||
                        !nn__js_hex4(j, j->i + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
                        free(b); return nn__js_fail(j, "high surrogate without its low half");
                    }
                    j->i += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                if (cp == 0) { free(b); return nn__js_fail(j, "NUL character in a string"); }
                if (cp < 0x80) b[len++] = (char)cp;
                else if (cp < 0x800) { b[len++] = (char)(0xC0 | (cp >> 6)); b[len++] = (char)(0x80 | (cp & 63)); }
                else if (cp < 0x10000) {
                    b[len++] = (char)(0xE0 | (cp >> 12)); b[len++] = (char)(0x80 | ((cp >> 6) & 63));
                    b[len++] = (char)(0x80 | (cp & 63));
                } else {
                    b[len++] = (char)(0xF0 | (cp >> 18)); b[len++] = (char)(0x80 | ((cp >> 12) & 63));
                    b[len++] = (char)(0x80 | ((cp >> 6) & 63)); b[len++] = (char)(0x80 | (cp & 63));
                }
                break;
            default: free(b); j->i--; return nn__js_fail(j, "bad escape in a string");
            }
        } else if (c < 0x80) {
            b[len++] = (char)c; j->i++;
        } else {
            int l = nn__utf8_len((const unsigned char *)j->s + j->i, k - j->i), q;
            if (!l) { free(b); return nn__js_fail(j, "invalid UTF-8 in a string"); }
            for (q = 0; q < l; q++) b[len++] = j->s[j->i++];
        }
    }
    j->i++;
    b[len] = 0;
    *out = b;
    return 1;
}

static int nn__js_uint(nn__js *j, uint64_t *out) {
    uint64_t v = 0;
    size_t start;
    nn__js_ws(j);
    start = j->i;
    if (j->i >= j->n || j->s[j->i] < '0' || j->s[j->i] > '9') return nn__js_fail(j, "expected a non-negative integer");
    while (j->i < j->n && j->s[j->i] >= '0' && j->s[j->i] <= '9') {
        unsigned d = (unsigned)(j->s[j->i] - '0');
        if (v > (((uint64_t)1 << 62) - d) / 10) return nn__js_fail(j, "integer too large");
        v = v * 10 + d;
        j->i++;
    }
    if (j->s[start] == '0' && j->i - start > 1) { j->i = start; return nn__js_fail(j, "integer with a leading zero"); }
    if (j->i < j->n && (j->s[j->i] == '.' || j->s[j->i] == 'e' || j->s[j->i] == 'E'))
        return nn__js_fail(j, "expected an integer, found a fraction or exponent");
    *out = v;
    return 1;
}

/* [u, u, ...] with at most max entries */
static int nn__js_uints(nn__js *j, uint64_t *out, int max, int *count) {
    int c = 0;
    if (!nn__js_eat(j, '[')) return nn__js_fail(j, "expected '['");
    if (!nn__js_eat(j, ']')) {
        for (;;) {
            if (c == max) return nn__js_fail(j, max == 2 ? "more than 2 data_offsets" : "too many dimensions for nn.h (NN_MAX_DIMS)");
            if (!nn__js_uint(j, &out[c])) return 0;
            c++;
            if (nn__js_eat(j, ']')) break;
            if (!nn__js_eat(j, ',')) return nn__js_fail(j, "expected ',' or ']'");
        }
    }
    *count = c;
    return 1;
}

/* ------------------------------------------------------------------------------ [impl:io:safetensors] */

struct nn_safetensors {
    char *path;
    int n, cap;
    nn_st_info *info;        /* header order */
    int *by_name;            /* indices sorted by name */
    int n_meta, meta_cap;
    char **meta;             /* key, value pairs, sorted by key after open */
    uint64_t data_start, data_size;
    nn__rfile rf;
    const unsigned char *map;  /* the whole file when mapped */
    size_t map_len;
};

#define NN__ST_MAX_HEADER 100000000ull  /* the limit of the reference implementation (safetensors/lib.rs) */

static const char *const nn__st_dtype_names[NN_DTYPE_COUNT] = {"F32", "F16", "BF16", "I32", "I64", "U8", "BOOL"};

static void nn__st_release(nn_safetensors *f) {
    int k;
    if (!f) return;
    for (k = 0; k < f->n; k++) free(f->info[k].name);
    for (k = 0; k < 2 * f->n_meta; k++) free(f->meta[k]);
    free(f->info); free(f->by_name); free(f->meta); free(f->path);
#ifdef NN__POSIX_IO
    if (f->map) munmap((void *)f->map, f->map_len);
    if (f->rf.fd >= 0) nn__rfile_close(&f->rf);
#else
    nn__rfile_close(&f->rf);
#endif
    free(f);
}

/* sorting helpers: qsort has no context argument, so the keys travel with the indices */
typedef struct { const char *name; uint64_t begin, end; int idx; } nn__st_key;
static int nn__st_cmp_name(const void *a, const void *b) {
    return strcmp(((const nn__st_key *)a)->name, ((const nn__st_key *)b)->name);
}
static int nn__st_cmp_span(const void *a, const void *b) {
    const nn__st_key *x = (const nn__st_key *)a, *y = (const nn__st_key *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}
static int nn__cmp_str_pair(const void *a, const void *b) {
    return strcmp(((char *const *)a)[0], ((char *const *)b)[0]);
}
/* the tensors' keys, sorted by cmp; NULL when out of memory */
static nn__st_key *nn__st_sorted(const nn_safetensors *f, int (*cmp)(const void *, const void *)) {
    nn__st_key *k = (nn__st_key *)malloc(sizeof(nn__st_key) * (size_t)(f->n + 1));
    int i;
    if (!k) return NULL;
    for (i = 0; i < f->n; i++) {
        k[i].name = f->info[i].name; k[i].begin = f->info[i].begin; k[i].end = f->info[i].end; k[i].idx = i;
    }
    qsort(k, (size_t)f->n, sizeof *k, cmp);
    return k;
}

/* one {"dtype": .., "shape": [..], "data_offsets": [b, e]} */
static int nn__st_parse_info(nn__js *j, nn_st_info *ti) {
    int have_dtype = 0, have_shape = 0, have_off = 0;
    if (!nn__js_eat(j, '{')) return nn__js_fail(j, "expected '{' opening the tensor's description");
    if (nn__js_eat(j, '}')) return nn__js_fail(j, "empty description (needs dtype, shape, data_offsets)");
    for (;;) {
        char *field;
        if (!nn__js_str(j, &field)) return 0;
        if (!nn__js_eat(j, ':')) { free(field); return nn__js_fail(j, "expected ':'"); }
        if (strcmp(field, "dtype") == 0 && !have_dtype) {
            char *dt;
            int k;
            free(field);
            if (!nn__js_str(j, &dt)) return 0;
            for (k = 0; k < NN_DTYPE_COUNT; k++) if (strcmp(dt, nn__st_dtype_names[k]) == 0) break;
            if (k == NN_DTYPE_COUNT) {
                char m[160];
                snprintf(m, sizeof m, "dtype \"%.40s\" is not one nn.h reads (F32 F16 BF16 I32 I64 U8 BOOL)", dt);
                free(dt);
                return nn__js_fail(j, m);
            }
            free(dt);
            ti->dtype = (nn_dtype)k;
            have_dtype = 1;
        } else if (strcmp(field, "shape") == 0 && !have_shape) {
            uint64_t dims[NN_MAX_DIMS];
            int c = 0, d;
            free(field);
            if (!nn__js_uints(j, dims, NN_MAX_DIMS, &c)) return 0;
            ti->ndim = c;
            for (d = 0; d < c; d++) ti->shape[d] = (int64_t)dims[d];
            have_shape = 1;
        } else if (strcmp(field, "data_offsets") == 0 && !have_off) {
            uint64_t o[2];
            int c = 0;
            free(field);
            if (!nn__js_uints(j, o, 2, &c)) return 0;
            if (c != 2) return nn__js_fail(j, "data_offsets needs exactly 2 integers");
            ti->begin = o[0]; ti->end = o[1];
            have_off = 1;
        } else {
            char m[160];
            int dup = strcmp(field, "dtype") == 0 || strcmp(field, "shape") == 0 || strcmp(field, "data_offsets") == 0;
            snprintf(m, sizeof m, "%s field \"%.60s\"", dup ? "duplicate" : "unknown", field);
            free(field);
            return nn__js_fail(j, m);
        }
        if (nn__js_eat(j, '}')) break;
        if (!nn__js_eat(j, ',')) return nn__js_fail(j, "expected ',' or '}'");
    }
    if (!have_dtype || !have_shape || !have_off)
        return nn__js_fail(j, !have_dtype ? "no dtype" : !have_shape ? "no shape" : "no data_offsets");
    return 1;
}

static int nn__st_parse_meta(nn_safetensors *f, nn__js *j) {
    if (!nn__js_eat(j, '{')) return nn__js_fail(j, "__metadata__ must be an object of strings");
    if (nn__js_eat(j, '}')) return 1;
    for (;;) {
        char *k = NULL, *v = NULL;
        if (!nn__js_str(j, &k)) return 0;
        if (!nn__js_eat(j, ':')) { free(k); return nn__js_fail(j, "expected ':'"); }
        if (!nn__js_str(j, &v)) { free(k); return nn__js_fail(j, "__metadata__ values must be strings"); }
        if (f->n_meta == f->meta_cap) {
            int cap = f->meta_cap ? 2 * f->meta_cap : 8;
            char **p = (char **)realloc(f->meta, sizeof(char *) * 2 * (size_t)cap);
            if (!p) { free(k); free(v); return nn__js_fail(j, "out of memory"); }
            f->meta = p; f->meta_cap = cap;
        }
        f->meta[2 * f->n_meta] = k; f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++;
        if (nn__js_eat(j, '}')) return 1;
        if (!nn__js_eat(j, ',')) return nn__js_fail(j, "expected ',' or '}'");
    }
}

static int nn__st_parse_header(nn_safetensors *f, const char *h, size_t hn, char *err, size_t en) {
    nn__js j;
    int have_meta = 0, k;
    j.s = h; j.n = hn; j.i = 0; j.key = NULL; j.err = err; j.en = en;
    if (hn == 0 || h[0] != '{') return nn__js_fail(&j, "the header must start with '{'");
    j.i = 1;
    if (!nn__js_eat(&j, '}')) {
        for (;;) {
            char *name;
            if (!nn__js_str(&j, &name)) return 0;
            if (!nn__js_eat(&j, ':')) { free(name); return nn__js_fail(&j, "expected ':'"); }
            if (strcmp(name, "__metadata__") == 0) {
                free(name);
                if (have_meta) return nn__js_fail(&j, "duplicate __metadata__");
                have_meta = 1;
                if (!nn__st_parse_meta(f, &j)) return 0;
            } else {
                nn_st_info *ti;
                if (f->n == f->cap) {
                    int cap = f->cap ? 2 * f->cap : 16;
                    nn_st_info *p = (nn_st_info *)realloc(f->info, sizeof(nn_st_info) * (size_t)cap);
                    if (!p) { free(name); return nn__js_fail(&j, "out of memory"); }
                    f->info = p; f->cap = cap;
                }
                ti = &f->info[f->n++];
                memset(ti, 0, sizeof *ti);
                ti->name = name;
                if (name[0] == 0) return nn__js_fail(&j, "empty tensor name");
                j.key = name;
                if (!nn__st_parse_info(&j, ti)) return 0;
                j.key = NULL;
            }
            if (nn__js_eat(&j, '}')) break;
            if (!nn__js_eat(&j, ',')) return nn__js_fail(&j, "expected ',' or '}'");
        }
    }
    nn__js_ws(&j);  /* the Python writer pads with spaces */
    if (j.i != j.n) return nn__js_fail(&j, "bytes after the closing '}'");
    /* duplicates: names sorted */
    if (f->n > 0) {
        nn__st_key *keys = nn__st_sorted(f, nn__st_cmp_name);
        f->by_name = (int *)malloc(sizeof(int) * (size_t)f->n);
        if (!keys || !f->by_name) { free(keys); snprintf(err, en, "out of memory"); return 0; }
        for (k = 0; k < f->n; k++) f->by_name[k] = keys[k].idx;
        for (k = 1; k < f->n; k++)
            if (strcmp(keys[k].name, keys[k - 1].name) == 0) {
                snprintf(err, en, "header JSON: duplicate tensor name \"%.200s\"", keys[k].name);
                free(keys);
                return 0;
            }
        free(keys);
    }
    if (f->n_meta > 1) {
        qsort(f->meta, (size_t)f->n_meta, 2 * sizeof(char *), nn__cmp_str_pair);
        for (k = 1; k < f->n_meta; k++)
            if (strcmp(f->meta[2 * k], f->meta[2 * k - 2]) == 0) {
                snprintf(err, en, "header JSON: duplicate __metadata__ key \"%.200s\"", f->meta[2 * k]);
                return 0;
            }
    }
    return 1;
}

static int nn__st_check_spans(nn_safetensors *f, char *err, size_t en) {
    int k;
    nn__st_key *ord;
    uint64_t pos = 0;
    for (k = 0; k < f->n; k++) {
        nn_st_info *ti = &f->info[k];
        int64_t numel = nn__numel_checked(ti->ndim, ti->shape);
        char sh[128];
        nn__shape_fmt(sh, sizeof sh, ti->ndim, ti->shape);
        if (numel < 0) { snprintf(err, en, "tensor \"%.200s\": shape %s is too large", ti->name, sh); return 0; }
        ti->numel = numel;
        if (ti->end < ti->begin) {
            snprintf(err, en, "tensor \"%.200s\": data_offsets [%llu, %llu] end before they begin", ti->name,
                     (unsigned long long)ti->begin, (unsigned long long)ti->end);
            return 0;
        }
        if ((uint64_t)numel * nn_dtype_size(ti->dtype) != ti->end - ti->begin) {
            snprintf(err, en, "tensor \"%.200s\": shape %s of %s needs %llu bytes but data_offsets [%llu, %llu] "
                     "span %llu", ti->name, sh, nn__st_dtype_names[ti->dtype],
                     (unsigned long long)((uint64_t)numel * nn_dtype_size(ti->dtype)),
                     (unsigned long long)ti->begin, (unsigned long long)ti->end,
                     (unsigned long long)(ti->end - ti->begin));
            return 0;
        }
        if (ti->end > f->data_size) {
            snprintf(err, en, "tensor \"%.200s\": data_offsets [%llu, %llu] reach beyond the data (%llu bytes; "
                     "file truncated?)", ti->name, (unsigned long long)ti->begin, (unsigned long long)ti->end,
                     (unsigned long long)f->data_size);
            return 0;
        }
    }
    if (f->n == 0) {
        if (f->data_size != 0) {
            snprintf(err, en, "no tensors but %llu bytes of data", (unsigned long long)f->data_size);
            return 0;
        }
        return 1;
    }
    ord = nn__st_sorted(f, nn__st_cmp_span);
    if (!ord) { snprintf(err, en, "out of memory"); return 0; }
    for (k = 0; k < f->n; k++) {
        const nn_st_info *ti = &f->info[ord[k].idx];
        if (ti->begin != pos) {
            if (k == 0)
                snprintf(err, en, "the data does not start with a tensor (first is \"%.200s\" at byte %llu)",
                         ti->name, (unsigned long long)ti->begin);
            else if (ti->begin < pos)
                snprintf(err, en, "tensors \"%.200s\" and \"%.200s\" overlap", ord[k - 1].name, ti->name);
            else
                snprintf(err, en, "%llu bytes between tensors \"%.200s\" and \"%.200s\" belong to none",
                         (unsigned long long)(ti->begin - pos), ord[k - 1].name, ti->name);
            free(ord);
            return 0;
        }
        pos = ti->end;
    }
    free(ord);
    if (pos != f->data_size) {
        snprintf(err, en, "%llu bytes after the last tensor belong to none", (unsigned long long)(f->data_size - pos));
        return 0;
    }
    return 1;
}

static int nn__st_open(nn_safetensors *f, const char *path, char *err, size_t en) {
    unsigned char len8[8];
    uint64_t hn = 0;
    char *h;
    int k, ok;
    if (!nn__little_endian()) { snprintf(err, en, "nn.h's safetensors IO needs a little-endian host"); return 0; }
    f->path = (char *)malloc(strlen(path) + 1);
    if (!f->path) { snprintf(err, en, "out of memory"); return 0; }
    strcpy(f->path, path);
    if (!nn__rfile_open(&f->rf, path, err, en)) return 0;
    if (f->rf.size < 8) {
        snprintf(err, en, "%llu bytes: too short for a safetensors file", (unsigned long long)f->rf.size);
        return 0;
    }
    if (!nn__rfile_read(&f->rf, 0, len8, 8)) { snprintf(err, en, "cannot read"); return 0; }
    for (k = 7; k >= 0; k--) hn = (hn << 8) | len8[k];
    if (hn > NN__ST_MAX_HEADER) {
        snprintf(err, en, "header size %llu exceeds the limit %llu (not a safetensors file?)", (unsigned long long)hn,
                 NN__ST_MAX_HEADER);
        return 0;
    }
    if (hn > f->rf.size - 8) {
        snprintf(err, en, "header size %llu but only %llu bytes follow (truncated?)", (unsigned long long)hn,
                 (unsigned long long)(f->rf.size - 8));
        return 0;
    }
    h = (char *)malloc((size_t)hn + 1);
    if (!h) { snprintf(err, en, "out of memory for a %llu-byte header", (unsigned long long)hn); return 0; }
    if (!nn__rfile_read(&f->rf, 8, h, hn)) { free(h); snprintf(err, en, "cannot read the header"); return 0; }
    h[hn] = 0;
    f->data_start = 8 + hn;
    f->data_size = f->rf.size - f->data_start;
    ok = nn__st_parse_header(f, h, (size_t)hn, err, en);
    free(h);
    if (!ok || !nn__st_check_spans(f, err, en)) return 0;
#ifdef NN__POSIX_IO
    /* map the file: tensors are then copied once, from the page cache into their destination */
    if (f->rf.size > 0 && f->rf.size <= (uint64_t)(size_t)-1 && f->data_size > 0 && !getenv("NN_NO_MMAP")) {
        void *m = mmap(NULL, (size_t)f->rf.size, PROT_READ, MAP_PRIVATE, f->rf.fd, 0);
        if (m != MAP_FAILED) {
            f->map = (const unsigned char *)m;
            f->map_len = (size_t)f->rf.size;
            nn__rfile_close(&f->rf);  /* the mapping keeps the file */
        }
    }
#endif
    return 1;
}

nn_safetensors *nn_safetensors_open(const char *path) {
    char err[900];
    nn_safetensors *f;
    if (!path) nn_error("nn_safetensors_open: path is NULL");
    f = (nn_safetensors *)calloc(1, sizeof *f);
    if (!f) nn_error("nn_safetensors_open: out of memory");
#ifdef NN__POSIX_IO
    f->rf.fd = -1;
#endif
    if (!nn__st_open(f, path, err, sizeof err)) {
        nn__st_release(f);
        nn_error("nn_safetensors_open: file \"%s\": %s", path, err);
    }
    return f;
}

void nn_safetensors_close(nn_safetensors *f) { nn__st_release(f); }
int nn_safetensors_count(const nn_safetensors *f) { return f ? f->n : 0; }

const nn_st_info *nn_safetensors_info(const nn_safetensors *f, int i) {
    if (!f || i < 0 || i >= f->n) nn_error("nn_safetensors_info: index %d out of range [0, %d)", i, f ? f->n : 0);
    return &f->info[i];
}

int nn_safetensors_find(const nn_safetensors *f, const char *name) {
    int lo = 0, hi;
    if (!f || !name) return -1;
    hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->info[f->by_name[mid]].name, name);
        if (c == 0) return f->by_name[mid];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

int nn_safetensors_meta_count(const nn_safetensors *f) { return f ? f->n_meta : 0; }
const char *nn_safetensors_meta_key(const nn_safetensors *f, int i) {
    if (!f || i < 0 || i >= f->n_meta) nn_error("nn_safetensors_meta_key: index %d out of range", i);
    return f->meta[2 * i];
}
const char *nn_safetensors_meta(const nn_safetensors *f, const char *key) {
    int lo = 0, hi;
    if (!f || !key) return NULL;
    hi = f->n_meta - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2, c = strcmp(f->meta[2 * mid], key);
        if (c == 0) return f->meta[2 * mid + 1];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

/* the stored bytes of tensor ti into dst */
static int nn__st_read(nn_safetensors *f, const nn_st_info *ti, void *dst) {
    uint64_t nb = ti->end - ti->begin;
    if (nb == 0) return 1;
    if (f->map) { memcpy(dst, f->map + f->data_start + ti->begin, (size_t)nb); return 1; }
    return nn__rfile_read(&f->rf, f->data_start + ti->begin, dst, nb);
}

static const nn_st_info *nn__st_need(const char *op, const nn_safetensors *f, const char *name) {
    int i;
    if (!f) nn_error("%s: file is NULL", op);
    if (!name) nn_error("%s: name is NULL", op);
    i = nn_safetensors_find(f, name);
    if (i < 0) nn_error("%s: file \"%s\" has no tensor \"%s\"", op, f->path, name);
    return &f->info[i];
}

nn_tensor *nn_safetensors_get(nn_safetensors *f, const char *name) {
    const nn_st_info *ti = nn__st_need("nn_safetensors_get", f, name);
    nn_tensor *t = nn_empty(ti->dtype, ti->ndim, ti->shape);
    if (!nn__st_read(f, ti, t->data)) {
        nn_tensor_free(t);
        nn_error("nn_safetensors_get: file \"%s\", tensor \"%s\": read failed (file changed?)", f->path, name);
    }
    return t;
}

/* into host memory of dtype dt (numel elements of ti): directly or through a converting buffer */
static int nn__st_read_as(nn_safetensors *f, const nn_st_info *ti, void *dst, nn_dtype dt) {
    void *tmp;
    int ok;
    if (dt == ti->dtype) return nn__st_read(f, ti, dst);
    if (f->map) { nn__convert(f->map + f->data_start + ti->begin, ti->dtype, dst, dt, ti->numel); return 1; }
    tmp = malloc((size_t)(ti->end - ti->begin) + 1);
    if (!tmp) return 0;
    ok = nn__st_read(f, ti, tmp);
    if (ok) nn__convert(tmp, ti->dtype, dst, dt, ti->numel);
    free(tmp);
    return ok;
}

static int nn__io_same_shape(int na, const int64_t *a, int nb, const int64_t *b) {
    int d;
    if (na != nb) return 0;
    for (d = 0; d < na; d++) if (a[d] != b[d]) return 0;
    return 1;
}

/* a CPU tensor's bytes filled from ti (host staging for other devices) */
static int nn__st_fill(nn_safetensors *f, const nn_st_info *ti, nn_tensor *dst) {
    if (dst->device == NN_CPU) return nn__st_read_as(f, ti, dst->data, dst->dtype);
    {
        nn_tensor *h = nn_empty(dst->dtype, dst->ndim, dst->shape);
        int ok = nn__st_read_as(f, ti, h->data, dst->dtype);
        if (ok) nn_copy_(dst, h);
        nn_tensor_free(h);
        return ok;
    }
}

void nn_safetensors_read_into(nn_safetensors *f, const char *name, nn_tensor *dst, int convert) {
    const nn_st_info *ti = nn__st_need("nn_safetensors_read_into", f, name);
    char a[128], b[128];
    if (!dst) nn_error("nn_safetensors_read_into: destination is NULL");
    if (!nn__io_same_shape(ti->ndim, ti->shape, dst->ndim, dst->shape)) {
        nn__shape_fmt(a, sizeof a, ti->ndim, ti->shape);
        nn__shape_fmt(b, sizeof b, dst->ndim, dst->shape);
        nn_error("nn_safetensors_read_into: file \"%s\", tensor \"%s\": shape %s, destination %s", f->path, name, a, b);
    }
    if (ti->dtype != dst->dtype && !convert)
        nn_error("nn_safetensors_read_into: file \"%s\", tensor \"%s\": stored as %s, destination is %s (pass "
                 "convert = 1 to convert)", f->path, name, nn__st_dtype_names[ti->dtype], nn_dtype_name(dst->dtype));
    if (!nn__st_fill(f, ti, dst))
        nn_error("nn_safetensors_read_into: file \"%s\", tensor \"%s\": read failed", f->path, name);
}

/* writing: every check, then the header, then the data straight from the tensors; 0 with err on failure */
static int nn__st_write_impl(const char *path, int n, const nn_st_entry *e, int n_meta, const char *const *meta,
                             char *err, size_t en) {
    nn__buf hb;
    int *ord = NULL, k, q;
    uint64_t off = 0, hn;
    nn__wfile w;
    unsigned char len8[8];
    if (n < 0 || (n > 0 && !e) || n_meta < 0 || (n_meta > 0 && !meta)) { snprintf(err, en, "bad entry or metadata arrays"); return 0; }
    if (!nn__little_endian()) { snprintf(err, en, "nn.h's safetensors IO needs a little-endian host"); return 0; }
    for (k = 0; k < n; k++) {
        const char *nm = e[k].name;
        nn_dtype dt = e[k].data ? e[k].dtype : (e[k].t ? e[k].t->dtype : NN_DTYPE_COUNT);
        int nd = e[k].data ? e[k].ndim : (e[k].t ? e[k].t->ndim : -1), d;
        const int64_t *sh = e[k].data ? e[k].shape : (e[k].t ? e[k].t->shape : NULL);
        if (!nm || !nm[0]) { snprintf(err, en, "entry %d has no name", k); return 0; }
        if (strcmp(nm, "__metadata__") == 0 || !nn__utf8_valid(nm)) { snprintf(err, en, "\"%.200s\" is not a valid tensor name", nm); return 0; }
        if (!e[k].data && !e[k].t) { snprintf(err, en, "tensor \"%.200s\" has no data", nm); return 0; }
        if ((unsigned)dt >= NN_DTYPE_COUNT || nd < 0 || nd > NN_MAX_DIMS || (nd > 0 && !sh)) {
            snprintf(err, en, "tensor \"%.200s\": bad dtype or ndim", nm); return 0;
        }
        for (d = 0; d < nd; d++)
            if (sh[d] < 0) { snprintf(err, en, "tensor \"%.200s\": negative dim", nm); return 0; }
        if (nn__numel_checked(nd, sh) < 0) { snprintf(err, en, "tensor \"%.200s\": too large", nm); return 0; }
    }
    if (n > 0) {
        /* duplicates, through a sorted copy of the names */
        const char **names = (const char **)malloc(sizeof(char *) * (size_t)n);
        if (!names) { snprintf(err, en, "out of memory"); return 0; }
        for (k = 0; k < n; k++) names[k] = e[k].name;
        qsort((void *)names, (size_t)n, sizeof(char *), nn__cmp_str_pair);
        for (k = 1; k < n; k++)
            if (strcmp(names[k], names[k - 1]) == 0) {
                snprintf(err, en, "duplicate tensor name \"%.200s\"", names[k]);
                free((void *)names);
                return 0;
            }
        free((void *)names);
    }
    for (k = 0; k < 2 * n_meta; k++)
        if (!meta[k] || !nn__utf8_valid(meta[k])) {
            snprintf(err, en, "metadata %s %d is NULL or not UTF-8", k % 2 ? "value" : "key", k / 2); return 0;
        }
    for (k = 0; k < n_meta; k++)
        for (q = 0; q < k; q++)
            if (strcmp(meta[2 * k], meta[2 * q]) == 0) { snprintf(err, en, "duplicate metadata key \"%.200s\"", meta[2 * k]); return 0; }
    /* order: stable by dtype size, largest first, so that every tensor is aligned in the file */
    if (n > 0) {
        static const size_t sizes[4] = {8, 4, 2, 1};
        int s;
        ord = (int *)malloc(sizeof(int) * (size_t)n);
        if (!ord) { snprintf(err, en, "out of memory"); return 0; }
        q = 0;
        for (s = 0; s < 4; s++)
            for (k = 0; k < n; k++)
                if (nn_dtype_size(e[k].data ? e[k].dtype : e[k].t->dtype) == sizes[s]) ord[q++] = k;
    }
    memset(&hb, 0, sizeof hb);
    nn__buf_str(&hb, "{");
    if (n_meta > 0) {
        nn__buf_str(&hb, "\"__metadata__\":{");
        for (k = 0; k < n_meta; k++) {
            if (k) nn__buf_str(&hb, ",");
            nn__buf_json_str(&hb, meta[2 * k]);
            nn__buf_str(&hb, ":");
            nn__buf_json_str(&hb, meta[2 * k + 1]);
        }
        nn__buf_str(&hb, "}");
    }
    for (q = 0; q < n; q++) {
        const nn_st_entry *x = &e[ord[q]];
        nn_dtype dt = x->data ? x->dtype : x->t->dtype;
        int nd = x->data ? x->ndim : x->t->ndim, d;
        const int64_t *sh = x->data ? x->shape : x->t->shape;
        uint64_t nb = (uint64_t)nn__numel_checked(nd, sh) * nn_dtype_size(dt);
        if (q || n_meta > 0) nn__buf_str(&hb, ",");
        nn__buf_json_str(&hb, x->name);
        nn__buf_str(&hb, ":{\"dtype\":\"");
        nn__buf_str(&hb, nn__st_dtype_names[dt]);
        nn__buf_str(&hb, "\",\"shape\":[");
        for (d = 0; d < nd; d++) { if (d) nn__buf_str(&hb, ","); nn__buf_u64(&hb, (uint64_t)sh[d]); }
        nn__buf_str(&hb, "],\"data_offsets\":[");
        nn__buf_u64(&hb, off);
        nn__buf_str(&hb, ",");
        nn__buf_u64(&hb, off + nb);
        nn__buf_str(&hb, "]}");
        off += nb;
    }
    nn__buf_str(&hb, "}");
    while (hb.n % 8) nn__buf_str(&hb, " ");  /* the data starts 8-byte aligned, as Python's writer does */
    if (hb.oom) { free(ord); free(hb.p); snprintf(err, en, "out of memory"); return 0; }
    hn = hb.n;
    for (k = 0; k < 8; k++) len8[k] = (unsigned char)(hn >> (8 * k));
    if (!nn__wfile_open(&w, path, err, en)) { free(ord); free(hb.p); return 0; }
    if (!nn__wfile_write(&w, len8, 8, err, en) || !nn__wfile_write(&w, hb.p, hn, err, en)) goto fail;
    for (q = 0; q < n; q++) {
        const nn_st_entry *x = &e[ord[q]];
        if (x->data) {
            uint64_t nb = (uint64_t)nn__numel_checked(x->ndim, x->shape) * nn_dtype_size(x->dtype);
            if (!nn__wfile_write(&w, x->data, nb, err, en)) goto fail;
        } else if (x->t->device == NN_CPU) {
            if (!nn__wfile_write(&w, x->t->data, (uint64_t)x->t->numel * nn_dtype_size(x->t->dtype), err, en)) goto fail;
        } else {
            size_t nb = (size_t)x->t->numel * nn_dtype_size(x->t->dtype);
            void *tmp = malloc(nb ? nb : 1);
            int ok;
            if (!tmp) { snprintf(err, en, "out of memory"); goto fail; }
            nn_to_host(x->t, tmp);
            ok = nn__wfile_write(&w, tmp, nb, err, en);
            free(tmp);
            if (!ok) goto fail;
        }
    }
    free(ord); free(hb.p);
    return nn__wfile_commit(&w, err, en);
fail:
    nn__wfile_abort(&w);
    free(ord); free(hb.p);
    return 0;
}

void nn_safetensors_write(const char *path, int n, const nn_st_entry *e, int n_meta, const char *const *meta) {
    char err[900];
    if (!path) nn_error("nn_safetensors_write: path is NULL");
    if (!nn__st_write_impl(path, n, e, n_meta, meta, err, sizeof err))
        nn_error("nn_safetensors_write: file \"%s\": %s", path, err);
}

void nn_params_save(const char *path, const nn_params *P, int n_meta, const char *const *meta) {
    char err[900];
    nn_st_entry *e;
    int k, ok;
    if (!path || !P) nn_error("nn_params_save: path or registry is NULL");
    e = (nn_st_entry *)calloc((size_t)P->n + 1, sizeof *e);
    if (!e) nn_error("nn_params_save: out of memory");
    for (k = 0; k < P->n; k++) { e[k].name = P->items[k].name; e[k].t = P->items[k].t; }
    ok = nn__st_write_impl(path, P->n, e, n_meta, meta, err, sizeof err);
    free(e);
    if (!ok) nn_error("nn_params_save: file \"%s\": %s", path, err);
}

/* registry loading */
static int nn__prefixed(const char *s, const char *prefix) {
    return prefix && prefix[0] && strncmp(s, prefix, strlen(prefix)) == 0;
}

static void nn__strlist_free(char **l, int n) {
    int k;
    for (k = 0; k < n; k++) free(l[k]);
    free(l);
}

/* appends "name" to a message, up to a length */
static void nn__msg_names(char *msg, size_t cap, const char *title, char **names, int n) {
    size_t len = strlen(msg);
    int k;
    if (n == 0) return;
    len += (size_t)snprintf(msg + len, len < cap ? cap - len : 0, "%s", title);
    for (k = 0; k < n && len + 40 < cap; k++)
        len += (size_t)snprintf(msg + len, cap - len, "%s\"%.120s\"", k ? ", " : "", names[k]);
    if (k < n && len < cap) len += (size_t)snprintf(msg + len, cap - len, " and %d more", n - k);
    if (len < cap) snprintf(msg + len, cap - len, ". ");
}

/* 1 on success; 0 with err filled, nothing changed in P */
static int nn__params_load_impl(nn_safetensors *f, nn_params *P, const nn_load_opts *o, nn_load_result *res,
                                char *err, size_t en) {
    char **missing = NULL, **unexpected = NULL;
    int n_missing = 0, n_unexpected = 0, k, *idx = NULL;
    int strict = o ? o->strict : 1, convert = o ? o->convert_dtype : 0;
    const char *skip = o ? o->skip_prefix : NULL;
    if (res) memset(res, 0, sizeof *res);
    if (P->n > 0) {
        missing = (char **)calloc((size_t)P->n, sizeof(char *));
        idx = (int *)calloc((size_t)P->n, sizeof(int));
    }
    if (f->n > 0) unexpected = (char **)calloc((size_t)f->n, sizeof(char *));
    if ((P->n > 0 && (!missing || !idx)) || (f->n > 0 && !unexpected)) {
        free(missing); free(idx); free(unexpected);
        snprintf(err, en, "out of memory");
        return 0;
    }
    for (k = 0; k < P->n; k++) {
        const nn_tensor *t = P->items[k].t;
        int i = nn_safetensors_find(f, P->items[k].name);
        idx[k] = i;
        if (i < 0 || nn__prefixed(P->items[k].name, skip)) { idx[k] = -1; missing[n_missing++] = P->items[k].name; continue; }
        if (!nn__io_same_shape(f->info[i].ndim, f->info[i].shape, t->ndim, t->shape)) {
            char a[128], b[128];
            nn__shape_fmt(a, sizeof a, f->info[i].ndim, f->info[i].shape);
            nn__shape_fmt(b, sizeof b, t->ndim, t->shape);
            snprintf(err, en, "size mismatch for %.200s: copying a param with shape %s from the file, the shape "
                     "in the current model is %s", P->items[k].name, a, b);
            goto fail;
        }
        if (f->info[i].dtype != t->dtype && !convert) {
            snprintf(err, en, "dtype mismatch for %.200s: the file has %s, the parameter is %s (load with "
                     "convert_dtype to convert)", P->items[k].name, nn__st_dtype_names[f->info[i].dtype],
                     nn_dtype_name(t->dtype));
            goto fail;
        }
    }
    for (k = 0; k < f->n; k++)
        if (!nn__prefixed(f->info[k].name, skip) && !nn_params_find(P, f->info[k].name))
            unexpected[n_unexpected++] = f->info[k].name;
    if (strict && (n_missing || n_unexpected)) {
        err[0] = 0;
        snprintf(err, en, "Error(s) in loading state_dict (strict): ");
        nn__msg_names(err, en, "Missing key(s): ", missing, n_missing);
        nn__msg_names(err, en, "Unexpected key(s): ", unexpected, n_unexpected);
        goto fail;
    }
    for (k = 0; k < P->n; k++)
        if (idx[k] >= 0 && !nn__st_fill(f, &f->info[idx[k]], P->items[k].t)) {
            snprintf(err, en, "tensor \"%.200s\": read failed (file changed?)", P->items[k].name);
            goto fail;
        }
    if (res) {
        /* copies: the names above belong to P and f */
        res->missing = (char **)calloc((size_t)n_missing + 1, sizeof(char *));
        res->unexpected = (char **)calloc((size_t)n_unexpected + 1, sizeof(char *));
        if (res->missing && res->unexpected) {
            for (k = 0; k < n_missing; k++) {
                res->missing[k] = (char *)malloc(strlen(missing[k]) + 1);
                if (res->missing[k]) { strcpy(res->missing[k], missing[k]); res->n_missing++; }
            }
            for (k = 0; k < n_unexpected; k++) {
                res->unexpected[k] = (char *)malloc(strlen(unexpected[k]) + 1);
                if (res->unexpected[k]) { strcpy(res->unexpected[k], unexpected[k]); res->n_unexpected++; }
            }
        }
    }
    free(missing); free(unexpected); free(idx);
    return 1;
fail:
    free(missing); free(unexpected); free(idx);
    return 0;
}

void nn_params_load_from(nn_safetensors *f, nn_params *P, const nn_load_opts *opts, nn_load_result *res) {
    char err[1000];
    if (!f || !P) nn_error("nn_params_load_from: file or registry is NULL");
    if (!nn__params_load_impl(f, P, opts, res, err, sizeof err))
        nn_error("nn_params_load_from: file \"%s\": %s", f->path, err);
}

void nn_params_load(const char *path, nn_params *P, const nn_load_opts *opts, nn_load_result *res) {
    char err[1000];
    nn_safetensors *f;
    if (!path || !P) nn_error("nn_params_load: path or registry is NULL");
    f = nn_safetensors_open(path);
    if (!nn__params_load_impl(f, P, opts, res, err, sizeof err)) {
        nn_safetensors_close(f);
        nn_error("nn_params_load: file \"%s\": %s", path, err);
    }
    nn_safetensors_close(f);
}

void nn_load_result_free(nn_load_result *r) {
    if (!r) return;
    nn__strlist_free(r->missing, r->n_missing);
    nn__strlist_free(r->unexpected, r->n_unexpected);
    memset(r, 0, sizeof *r);
}

/* -------------------------------------------------------------------------------------- [impl:io:npy] */
/* The .npy format (numpy/lib/format.py, NEP 1): "\x93NUMPY", major, minor, header length (u16 LE in 1.0,
   u32 LE in 2.0 and 3.0), then a Python dict literal {'descr': '<f4', 'fortran_order': False,
   'shape': (2, 3), } padded with spaces and a newline so that the data starts 64-byte aligned. */

typedef struct { const char *s; size_t n, i; char *err; size_t en; } nn__py;

static int nn__py_fail(nn__py *p, const char *what) {
    snprintf(p->err, p->en, "header: %s (at header byte %lu)", what, (unsigned long)p->i);
    return 0;
}
static void nn__py_ws(nn__py *p) { while (p->i < p->n && (p->s[p->i] == ' ' || p->s[p->i] == '\t' || p->s[p->i] == '\n' || p->s[p->i] == '\r')) p->i++; }
static int nn__py_eat(nn__py *p, char c) {
    nn__py_ws(p);
    if (p->i < p->n && p->s[p->i] == c) { p->i++; return 1; }
    return 0;
}
/* a short quoted literal ('..' or "..", no escapes: descr and key names never need them) */
static int nn__py_str(nn__py *p, char *out, size_t cap) {
    char q;
    size_t k = 0;
    nn__py_ws(p);
    if (p->i >= p->n || (p->s[p->i] != '\'' && p->s[p->i] != '"')) return nn__py_fail(p, "expected a quoted string");
    q = p->s[p->i++];
    while (p->i < p->n && p->s[p->i] != q) {
        char c = p->s[p->i];
        if (c == '\\' || (unsigned char)c < 0x20 || (unsigned char)c >= 0x7f || k + 1 >= cap)
            return nn__py_fail(p, "unexpected string (escapes, non-ASCII or too long)");
        out[k++] = c;
        p->i++;
    }
    if (p->i >= p->n) return nn__py_fail(p, "unterminated string");
    p->i++;
    out[k] = 0;
    return 1;
}
static int nn__py_word(nn__py *p, const char *w) {
    size_t l = strlen(w);
    nn__py_ws(p);
    if (p->i + l <= p->n && strncmp(p->s + p->i, w, l) == 0) {
        char c = p->i + l < p->n ? p->s[p->i + l] : ' ';
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
            p->i += l;
            return 1;
        }
    }
    return 0;
}

static int nn__npy_parse(nn__py *p, nn_dtype *dt, int *ndim, int64_t *shape) {
    int have_descr = 0, have_fo = 0, have_shape = 0, fortran = 0;
    char descr[32];
    if (!nn__py_eat(p, '{')) return nn__py_fail(p, "expected '{'");
    while (!nn__py_eat(p, '}')) {
        char key[32];
        if (!nn__py_str(p, key, sizeof key)) return 0;
        if (!nn__py_eat(p, ':')) return nn__py_fail(p, "expected ':'");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (!nn__py_str(p, descr, sizeof descr)) return nn__py_fail(p, "descr must be a simple type string such as '<f4'");
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fo) {
            if (nn__py_word(p, "True")) fortran = 1;
            else if (nn__py_word(p, "False")) fortran = 0;
            else return nn__py_fail(p, "fortran_order must be True or False");
            have_fo = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            int c = 0, comma = 0;
            if (!nn__py_eat(p, '(')) return nn__py_fail(p, "shape must be a tuple");
            for (;;) {
                uint64_t v = 0;
                nn__py_ws(p);
                if (p->i < p->n && p->s[p->i] == ')') { p->i++; break; }
                if (c > 0 && !comma) return nn__py_fail(p, "expected ',' or ')' in shape");
                if (p->i >= p->n || p->s[p->i] < '0' || p->s[p->i] > '9') return nn__py_fail(p, "shape entries must be non-negative integers");
                if (c == NN_MAX_DIMS) return nn__py_fail(p, "too many dimensions for nn.h (NN_MAX_DIMS)");
                while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
                    unsigned d = (unsigned)(p->s[p->i] - '0');
                    if (v > (((uint64_t)1 << 62) - d) / 10) return nn__py_fail(p, "shape entry too large");
                    v = v * 10 + d;
                    p->i++;
                }
                shape[c++] = (int64_t)v;
                comma = nn__py_eat(p, ',');
            }
            if (c == 1 && !comma) return nn__py_fail(p, "shape (n) is not a tuple: (n,)");
            *ndim = c;
            have_shape = 1;
        } else {
            char m[96];
            snprintf(m, sizeof m, "unexpected or repeated key '%.40s'", key);
            return nn__py_fail(p, m);
        }
        if (nn__py_eat(p, '}')) break;
        if (!nn__py_eat(p, ',')) return nn__py_fail(p, "expected ',' or '}'");
    }
    nn__py_ws(p);
    if (p->i != p->n) return nn__py_fail(p, "bytes after the closing '}'");
    if (!have_descr || !have_fo || !have_shape)
        return nn__py_fail(p, !have_descr ? "no 'descr'" : !have_fo ? "no 'fortran_order'" : "no 'shape'");
    {
        /* byte order: '<' little, '|' not applicable, '=' native (little here), '>' big */
        static const char *const ty[6] = {"f4", "f2", "i4", "i8", "u1", "b1"};
        static const nn_dtype dts[6] = {NN_F32, NN_F16, NN_I32, NN_I64, NN_U8, NN_BOOL};
        char order = descr[0];
        const char *code = descr + 1;
        int k;
        char m[160];
        for (k = 0; k < 6; k++) if (strcmp(code, ty[k]) == 0) break;
        if ((order != '<' && order != '|' && order != '=' && order != '>') || k == 6) {
            snprintf(m, sizeof m, "dtype '%.20s' is not one nn.h reads (<f4 <f2 <i4 <i8 |u1 |b1)", descr);
            return nn__py_fail(p, m);
        }
        if (order == '>' && k < 4) {
            snprintf(m, sizeof m, "big-endian dtype '%.20s' is not supported (save arr.astype('<%s'))", descr, code);
            return nn__py_fail(p, m);
        }
        if (order == '|' && k < 4) {
            snprintf(m, sizeof m, "dtype '%.20s' needs a byte order", descr);
            return nn__py_fail(p, m);
        }
        *dt = dts[k];
    }
    if (fortran && *ndim > 1)
        return nn__py_fail(p, "fortran_order arrays are not supported (save np.ascontiguousarray(a))");
    return 1;
}

/* header checks; on success the data's offset and size */
static int nn__npy_header(nn__rfile *rf, nn_dtype *dt, int *ndim, int64_t *shape, uint64_t *data_off, char *err,
                          size_t en) {
    unsigned char pre[12];
    uint64_t hl, need;
    unsigned major, minor;
    size_t prelen;
    char *h;
    nn__py p;
    int ok;
    int64_t numel;
    if (rf->size < 10 || !nn__rfile_read(rf, 0, pre, 10)) {
        snprintf(err, en, "%llu bytes: too short for a .npy file", (unsigned long long)rf->size);
        return 0;
    }
    if (memcmp(pre, "\x93NUMPY", 6) != 0) { snprintf(err, en, "not a .npy file (no \\x93NUMPY magic)"); return 0; }
    major = pre[6]; minor = pre[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0) {
        snprintf(err, en, "format version %u.%u is not one nn.h reads (1.0, 2.0, 3.0)", major, minor);
        return 0;
    }
    if (major == 1) { hl = (uint64_t)pre[8] | ((uint64_t)pre[9] << 8); prelen = 10; }
    else {
        if (rf->size < 12 || !nn__rfile_read(rf, 10, pre + 10, 2)) { snprintf(err, en, "truncated header length"); return 0; }
        hl = (uint64_t)pre[8] | ((uint64_t)pre[9] << 8) | ((uint64_t)pre[10] << 16) | ((uint64_t)pre[11] << 24);
        prelen = 12;
    }
    if (hl > ((uint64_t)1 << 20)) { snprintf(err, en, "header length %llu is implausible", (unsigned long long)hl); return 0; }
    if (hl > rf->size - prelen) {
        snprintf(err, en, "header length %llu but only %llu bytes follow (truncated?)", (unsigned long long)hl,
                 (unsigned long long)(rf->size - prelen));
        return 0;
    }
    h = (char *)malloc((size_t)hl + 1);
    if (!h) { snprintf(err, en, "out of memory"); return 0; }
    if (!nn__rfile_read(rf, prelen, h, hl)) { free(h); snprintf(err, en, "cannot read the header"); return 0; }
    h[hl] = 0;
    p.s = h; p.n = (size_t)hl; p.i = 0; p.err = err; p.en = en;
    ok = nn__npy_parse(&p, dt, ndim, shape);
    free(h);
    if (!ok) return 0;
    numel = nn__numel_checked(*ndim, shape);
    if (numel < 0) { snprintf(err, en, "shape too large"); return 0; }
    need = (uint64_t)numel * nn_dtype_size(*dt);
    *data_off = prelen + hl;
    if (rf->size - *data_off != need) {
        char sh[128];
        nn__shape_fmt(sh, sizeof sh, *ndim, shape);
        if (rf->size - *data_off < need)
            snprintf(err, en, "truncated: shape %s of %s needs %llu bytes of data, the file has %llu", sh,
                     nn_dtype_name(*dt), (unsigned long long)need, (unsigned long long)(rf->size - *data_off));
        else
            snprintf(err, en, "%llu bytes after the data of shape %s", (unsigned long long)(rf->size - *data_off - need), sh);
        return 0;
    }
    return 1;
}

nn_tensor *nn_npy_load(const char *path) {
    char err[900];
    nn__rfile rf;
    nn_dtype dt = NN_F32;
    int ndim = 0;
    int64_t shape[NN_MAX_DIMS];
    uint64_t off = 0, size;
    nn_tensor *t;
    if (!path) nn_error("nn_npy_load: path is NULL");
    if (!nn__little_endian()) nn_error("nn_npy_load: nn.h's .npy IO needs a little-endian host");
    if (!nn__rfile_open(&rf, path, err, sizeof err)) nn_error("nn_npy_load: file \"%s\": %s", path, err);
    if (!nn__npy_header(&rf, &dt, &ndim, shape, &off, err, sizeof err)) {
        nn__rfile_close(&rf);
        nn_error("nn_npy_load: file \"%s\": %s", path, err);
    }
    size = rf.size;
    /* the file is closed while the tensor is allocated (the allocator may report an error and longjmp) */
    nn__rfile_close(&rf);
    t = nn_empty(dt, ndim, shape);
    if (!nn__rfile_open(&rf, path, err, sizeof err)) {
        nn_tensor_free(t);
        nn_error("nn_npy_load: file \"%s\": %s", path, err);
    }
    if (rf.size != size || !nn__rfile_read(&rf, off, t->data, size - off)) {
        nn__rfile_close(&rf);
        nn_tensor_free(t);
        nn_error("nn_npy_load: file \"%s\": read failed (file changed?)", path);
    }
    nn__rfile_close(&rf);
    return t;
}

void nn_npy_save(const char *path, const nn_tensor *t) {
    static const char *const descr[NN_DTYPE_COUNT] = {"<f4", "<f2", NULL, "<i4", "<i8", "|u1", "|b1"};
    char err[900], hdr[512];
    size_t hl, k, pre;
    int d;
    unsigned char lead[12];
    nn__wfile w;
    void *tmp = NULL;
    const void *src;
    uint64_t nb;
    if (!path || !t) nn_error("nn_npy_save: path or tensor is NULL");
    if (!nn__little_endian()) nn_error("nn_npy_save: nn.h's .npy IO needs a little-endian host");
    if ((unsigned)t->dtype >= NN_DTYPE_COUNT || !descr[t->dtype])
        nn_error("nn_npy_save: file \"%s\": %s has no .npy dtype (cast to f32 first)", path, nn_dtype_name(t->dtype));
    k = (size_t)snprintf(hdr, sizeof hdr, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr[t->dtype]);
    for (d = 0; d < t->ndim; d++) k += (size_t)snprintf(hdr + k, sizeof hdr - k, d ? ", %lld" : "%lld", (long long)t->shape[d]);
    k += (size_t)snprintf(hdr + k, sizeof hdr - k, t->ndim == 1 ? ",), }" : "), }");
    /* pad with spaces and a final newline so that the data starts at a multiple of 64 (numpy's ARRAY_ALIGN) */
    pre = 10;
    hl = k + 1;
    while ((pre + hl) % 64) hl++;
    if (hl > 65535) { pre = 12; hl = k + 1; while ((pre + hl) % 64) hl++; }
    memset(hdr + k, ' ', hl - 1 - k);
    hdr[hl - 1] = '\n';
    memcpy(lead, "\x93NUMPY", 6);
    lead[6] = pre == 10 ? 1 : 2; lead[7] = 0;
    lead[8] = (unsigned char)(hl & 255); lead[9] = (unsigned char)((hl >> 8) & 255);
    lead[10] = (unsigned char)((hl >> 16) & 255); lead[11] = (unsigned char)((hl >> 24) & 255);
    nb = (uint64_t)t->numel * nn_dtype_size(t->dtype);
    if (t->device == NN_CPU) src = t->data;
    else {
        tmp = malloc((size_t)nb + 1);
        if (!tmp) nn_error("nn_npy_save: file \"%s\": out of memory", path);
        nn_to_host(t, tmp);
        src = tmp;
    }
    if (!nn__wfile_open(&w, path, err, sizeof err)) { free(tmp); nn_error("nn_npy_save: file \"%s\": %s", path, err); }
    if (!nn__wfile_write(&w, lead, pre, err, sizeof err) || !nn__wfile_write(&w, hdr, hl, err, sizeof err) ||
        !nn__wfile_write(&w, src, nb, err, sizeof err)) {
        nn__wfile_abort(&w);
        free(tmp);
        nn_error("nn_npy_save: file \"%s\": %s", path, err);
    }
    free(tmp);
    if (!nn__wfile_commit(&w, err, sizeof err)) nn_error("nn_npy_save: file \"%s\": %s", path, err);
}

/* ------------------------------------------------------------------------------------- [impl:io:ckpt] */

#define NN__CKPT_FORMAT "nn.h checkpoint 1"
#define NN__OPT_PREFIX "optim."

static char *nn__strcat3(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = (char *)malloc(la + lb + 1);
    if (s) { memcpy(s, a, la); memcpy(s + la, b, lb + 1); }
    return s;
}

static int nn__ckpt_save_impl(const char *path, const nn_params *P, const nn_adamw *opt, const nn_sched *sched,
                              const nn_ckpt_info *info, char *err, size_t en) {
    int n_opt = opt ? 3 * P->n : 0, n = P->n + n_opt, k, ok = 0, nm = 0;
    nn_st_entry *e = NULL;
    char **names = NULL;
    char v_step[32], v_epoch[32], v_best[40], v_seed[32], v_off[32], v_sched[400], v_adamw[400];
    const char *meta[2 * 9];
    nn_rng_state rng = nn_rng_get();
    for (k = 0; k < P->n; k++)
        if (strncmp(P->items[k].name, NN__OPT_PREFIX, strlen(NN__OPT_PREFIX)) == 0) {
            snprintf(err, en, "parameter name \"%.200s\" collides with the optimiser's \"" NN__OPT_PREFIX "\" entries", P->items[k].name);
            return 0;
        }
    if (opt) {
        if (opt->n != P->n) { snprintf(err, en, "the optimiser tracks %d parameters, the registry has %d", opt->n, P->n); return 0; }
        for (k = 0; k < P->n; k++)
            if (opt->numel[k] != P->items[k].t->numel) {
                snprintf(err, en, "the optimiser's state for %.200s does not match the parameter", P->items[k].name);
                return 0;
            }
    }
    e = (nn_st_entry *)calloc((size_t)n + 1, sizeof *e);
    names = (char **)calloc((size_t)n_opt + 1, sizeof(char *));
    if (!e || !names) { snprintf(err, en, "out of memory"); goto out; }
    for (k = 0; k < P->n; k++) { e[k].name = P->items[k].name; e[k].t = P->items[k].t; }
    if (opt) {
        for (k = 0; k < P->n; k++) {
            const nn_tensor *t = P->items[k].t;
            nn_st_entry *x = &e[P->n + 3 * k];
            names[3 * k] = nn__strcat3(NN__OPT_PREFIX "exp_avg.", P->items[k].name);
            names[3 * k + 1] = nn__strcat3(NN__OPT_PREFIX "exp_avg_sq.", P->items[k].name);
            names[3 * k + 2] = nn__strcat3(NN__OPT_PREFIX "step.", P->items[k].name);
            if (!names[3 * k] || !names[3 * k + 1] || !names[3 * k + 2]) { snprintf(err, en, "out of memory"); goto out; }
            x[0].name = names[3 * k]; x[0].dtype = NN_F32; x[0].ndim = t->ndim; x[0].shape = t->shape; x[0].data = opt->exp_avg[k];
            x[1].name = names[3 * k + 1]; x[1].dtype = NN_F32; x[1].ndim = t->ndim; x[1].shape = t->shape; x[1].data = opt->exp_avg_sq[k];
            x[2].name = names[3 * k + 2]; x[2].dtype = NN_I64; x[2].ndim = 0; x[2].shape = NULL; x[2].data = &opt->steps[k];
        }
    }
    snprintf(v_step, sizeof v_step, "%lld", (long long)(opt ? opt->step : 0));
    snprintf(v_epoch, sizeof v_epoch, "%lld", (long long)(info ? info->epoch : 0));
    snprintf(v_best, sizeof v_best, "%.17g", info ? info->best_metric : 0.0);
    snprintf(v_seed, sizeof v_seed, "%llu", (unsigned long long)rng.seed);
    snprintf(v_off, sizeof v_off, "%llu", (unsigned long long)rng.offset);
    meta[nm++] = "format"; meta[nm++] = NN__CKPT_FORMAT;
    meta[nm++] = "step"; meta[nm++] = v_step;
    meta[nm++] = "epoch"; meta[nm++] = v_epoch;
    meta[nm++] = "best_metric"; meta[nm++] = v_best;
    meta[nm++] = "rng_seed"; meta[nm++] = v_seed;
    meta[nm++] = "rng_offset"; meta[nm++] = v_off;
    if (sched) {
        snprintf(v_sched, sizeof v_sched, "base_lr=%.17g eta_min=%.17g start_factor=%.17g warmup=%lld T_max=%lld "
                 "last_epoch=%lld", sched->base_lr, sched->eta_min, sched->start_factor, (long long)sched->warmup,
                 (long long)sched->T_max, (long long)sched->last_epoch);
        meta[nm++] = "sched"; meta[nm++] = v_sched;
    }
    if (opt) {
        snprintf(v_adamw, sizeof v_adamw, "lr=%.17g beta1=%.17g beta2=%.17g eps=%.17g weight_decay=%.17g maximize=%d",
                 opt->cfg.lr, opt->cfg.beta1, opt->cfg.beta2, opt->cfg.eps, opt->cfg.weight_decay, opt->cfg.maximize);
        meta[nm++] = "adamw"; meta[nm++] = v_adamw;
    }
    if (info && info->config) { meta[nm++] = "config"; meta[nm++] = info->config; }
    ok = nn__st_write_impl(path, n, e, nm / 2, meta, err, en);
out:
    if (names) nn__strlist_free(names, n_opt);
    free(e);
    return ok;
}

void nn_ckpt_save(const char *path, const nn_params *P, const nn_adamw *opt, const nn_sched *sched,
                  const nn_ckpt_info *info) {
    char err[900];
    if (!path || !P) nn_error("nn_ckpt_save: path or registry is NULL");
    if (!nn__ckpt_save_impl(path, P, opt, sched, info, err, sizeof err))
        nn_error("nn_ckpt_save: file \"%s\": %s", path, err);
}

/* a decimal integer filling the whole string */
static int nn__parse_i64(const char *s, int64_t *out) {
    int neg = 0;
    uint64_t v = 0;
    if (!s || !*s) return 0;
    if (*s == '-') { neg = 1; s++; }
    if (!*s) return 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10) return 0;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (neg) { if (v > (uint64_t)INT64_MAX + 1) return 0; *out = (int64_t)(0 - v); }
    else { if (v > (uint64_t)INT64_MAX) return 0; *out = (int64_t)v; }
    return 1;
}
static int nn__parse_u64(const char *s, uint64_t *out) {
    uint64_t v = 0;
    if (!s || !*s) return 0;
    for (; *s; s++) {
        unsigned d;
        if (*s < '0' || *s > '9') return 0;
        d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10) return 0;
        v = v * 10 + d;
    }
    *out = v;
    return 1;
}
static int nn__parse_f64(const char *s, double *out) {
    char *end;
    if (!s || !*s) return 0;
    *out = strtod(s, &end);
    return *end == 0;
}

static int nn__ckpt_load_impl(nn_safetensors *f, nn_params *P, nn_adamw *opt, nn_sched *sched, nn_ckpt_info *info,
                              char *err, size_t en) {
    const char *fmt = nn_safetensors_meta(f, "format");
    int64_t step = 0, epoch = 0;
    uint64_t seed = 0, off = 0;
    double best = 0;
    nn_sched s;
    int k, *ix = NULL;
    nn_load_opts lo;
    char *cfg = NULL;
    if (!fmt || strcmp(fmt, NN__CKPT_FORMAT) != 0) {
        snprintf(err, en, "not an nn.h checkpoint (metadata format is %s%.60s%s)", fmt ? "\"" : "", fmt ? fmt : "missing", fmt ? "\"" : "");
        return 0;
    }
    if (!nn__parse_i64(nn_safetensors_meta(f, "step"), &step) || !nn__parse_i64(nn_safetensors_meta(f, "epoch"), &epoch) ||
        !nn__parse_f64(nn_safetensors_meta(f, "best_metric"), &best) ||
        !nn__parse_u64(nn_safetensors_meta(f, "rng_seed"), &seed) ||
        !nn__parse_u64(nn_safetensors_meta(f, "rng_offset"), &off)) {
        snprintf(err, en, "metadata step/epoch/best_metric/rng_seed/rng_offset missing or malformed");
        return 0;
    }
    if (sched) {
        const char *v = nn_safetensors_meta(f, "sched");
        long long w = 0, tm = 0, le = 0;
        int used = -1;
        if (!v) { snprintf(err, en, "no schedule state in the file (saved without one)"); return 0; }
        if (sscanf(v, "base_lr=%lf eta_min=%lf start_factor=%lf warmup=%lld T_max=%lld last_epoch=%lld%n", &s.base_lr,
                   &s.eta_min, &s.start_factor, &w, &tm, &le, &used) != 6 || used < 0 || v[used] != 0) {
            snprintf(err, en, "metadata sched \"%.200s\" is malformed", v);
            return 0;
        }
        s.warmup = w; s.T_max = tm; s.last_epoch = le;
    }
    if (opt) {
        if (opt->n != P->n) { snprintf(err, en, "the optimiser tracks %d parameters, the registry has %d", opt->n, P->n); return 0; }
        ix = (int *)malloc(sizeof(int) * 3 * (size_t)(P->n + 1));
        if (!ix) { snprintf(err, en, "out of memory"); return 0; }
        for (k = 0; k < P->n; k++) {
            static const char *const pre[3] = {NN__OPT_PREFIX "exp_avg.", NN__OPT_PREFIX "exp_avg_sq.", NN__OPT_PREFIX "step."};
            int q;
            for (q = 0; q < 3; q++) {
                char *nmq = nn__strcat3(pre[q], P->items[k].name);
                int i = nmq ? nn_safetensors_find(f, nmq) : -1;
                const nn_st_info *ti = i >= 0 ? &f->info[i] : NULL;
                int good = ti && (q < 2 ? ti->dtype == NN_F32 && ti->numel == opt->numel[k] : ti->dtype == NN_I64 && ti->numel == 1);
                if (!good) {
                    snprintf(err, en, "optimiser entry \"%.200s\" is %s", nmq ? nmq : "?", ti ? "of the wrong dtype or size" : "missing");
                    free(nmq); free(ix);
                    return 0;
                }
                free(nmq);
                ix[3 * k + q] = i;
            }
        }
    }
    if (info && nn_safetensors_meta(f, "config")) {
        const char *c = nn_safetensors_meta(f, "config");
        cfg = (char *)malloc(strlen(c) + 1);
        if (!cfg) { free(ix); snprintf(err, en, "out of memory"); return 0; }
        strcpy(cfg, c);
    }
    /* the model: strict, everything but the optimiser's entries; checks all before copying */
    lo.strict = 1; lo.convert_dtype = 0; lo.skip_prefix = NN__OPT_PREFIX;
    if (!nn__params_load_impl(f, P, &lo, NULL, err, en)) { free(ix); free(cfg); return 0; }
    if (opt) {
        for (k = 0; k < P->n; k++) {
            int64_t st = 0;
            if (!nn__st_read(f, &f->info[ix[3 * k]], opt->exp_avg[k]) ||
                !nn__st_read(f, &f->info[ix[3 * k + 1]], opt->exp_avg_sq[k]) ||
                !nn__st_read(f, &f->info[ix[3 * k + 2]], &st)) {
                snprintf(err, en, "read failed (file changed?)");
                free(ix); free(cfg);
                return 0;
            }
            opt->steps[k] = st;
        }
        opt->step = step;
    }
    free(ix);
    if (sched) *sched = s;
    {
        nn_rng_state r;
        r.seed = seed; r.offset = off;
        nn_rng_set(r);
        if (info) {
            info->epoch = epoch; info->best_metric = best; info->rng = r; info->config = cfg;
        }
    }
    return 1;
}

void nn_ckpt_load(const char *path, nn_params *P, nn_adamw *opt, nn_sched *sched, nn_ckpt_info *info) {
    char err[1000];
    nn_safetensors *f;
    if (!path || !P) nn_error("nn_ckpt_load: path or registry is NULL");
    f = nn_safetensors_open(path);
    if (!nn__ckpt_load_impl(f, P, opt, sched, info, err, sizeof err)) {
        nn_safetensors_close(f);
        nn_error("nn_ckpt_load: file \"%s\": %s", path, err);
    }
    nn_safetensors_close(f);
}

void nn_ckpt_info_free(nn_ckpt_info *info) {
    if (!info) return;
    free((void *)info->config);
    info->config = NULL;
}
