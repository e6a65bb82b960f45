/* wip/amp.h - dynamic loss scaling for f16 training (autocast itself lives in nn.h's core: nn_autocast_begin).
   A fragment for nn.h's implementation section, after wip/train.h (it steps nn_adamw); the block between
   the API markers goes into nn.h's [api] part. */
#define NN_AMP_FRAGMENT 1

/* == API == */
/* ============================================================================================== [api:amp] */

/* Dynamic loss scaling with torch.amp.GradScaler's semantics (torch/amp/grad_scaler.py; the CPU kernels
   _amp_foreach_non_finite_check_and_unscale_ and _amp_update_scale_), for f16 autocast, whose gradients
   underflow to 0 unscaled and overflow to inf scaled too much (bf16 has f32's range and needs no scaler).
   One optimiser per scaler. A step:
       nn_autocast_begin(NN_F16); loss = ...; nn_autocast_end();
       nn_backward(nn_scaler_scale(&s, loss));         loss * scale (differentiable, f32)
       nn_scaler_unscale(&s, &P);                      optional, to clip real gradients:
       nn_clip_grad_norm(&P, 1.0, 0);
       nn_scaler_step(&s, opt, lr);                    unscales if not done; AdamW step unless non-finite
       nn_scaler_update(&s);                           backoff or growth
   - scale: `scale` is an f32 number (torch's _scale tensor); the loss is multiplied by it in f32.
   - unscale (at most once per step, else an error, as torch): inv = (float)(1 / (double)scale); every
     gradient g becomes g * inv in f32 (unchanged when inv == 1); found_inf = any g not finite. Gradients are
     unscaled even when found_inf. Parameters without a gradient are skipped.
   - step: unscales first when unscale was not called; then nn_adamw_step(opt, lr) only when found_inf is 0,
     otherwise the step is skipped: weights, moments and AdamW's step counts stay as they were (counted in
     `skipped`). Calling step twice before update is an error.
   - update (after every step): found_inf -> scale *= backoff_factor, growth_tracker = 0; else
     growth_tracker += 1 and, when it reaches growth_interval, scale *= growth_factor (computed in double,
     rounded to f32, kept only if finite) and growth_tracker = 0.
   - enabled = 0: scale returns the loss itself, unscale does nothing (returns 0), step always steps,
     update does nothing, nn_scaler_get_scale gives 1 (torch's disabled scaler).
   The whole state is the struct (plain data): nn_scaler_state / nn_scaler_load_state write and read it as
   "key=value ..." text for a checkpoint's metadata (torch's state_dict keys plus the step counters). */
typedef struct {
    int enabled;
    double growth_factor, backoff_factor;
    int64_t growth_interval;
    float scale;              /* the current loss scale (torch's _scale, f32) */
    int64_t growth_tracker;   /* clean steps since the scale last changed (torch's _growth_tracker) */
    int found_inf;            /* this step: unscale saw a non-finite gradient */
    int stage;                /* this step: 0 ready, 1 unscaled, 2 stepped (torch's OptState) */
    int64_t steps, skipped;   /* optimiser steps taken / skipped because of inf or NaN */
} nn_grad_scaler;
/* torch's defaults: init_scale 65536 (2^16), growth_factor 2, backoff_factor 0.5, growth_interval 2000 */
nn_grad_scaler nn_grad_scaler_default(void);
nn_grad_scaler nn_grad_scaler_new(double init_scale, double growth_factor, double backoff_factor,
                                  int64_t growth_interval, int enabled);
nn_tensor *nn_scaler_scale(nn_grad_scaler *s, nn_tensor *loss);
int nn_scaler_unscale(nn_grad_scaler *s, nn_params *P);       /* returns found_inf */
int nn_scaler_step(nn_grad_scaler *s, nn_adamw *opt, double lr); /* returns 1 when AdamW stepped, 0 skipped */
void nn_scaler_update(nn_grad_scaler *s);
double nn_scaler_get_scale(const nn_grad_scaler *s);
/* "enabled=1 scale=65536 growth_factor=2 backoff_factor=0.5 growth_interval=2000 growth_tracker=0 steps=0
   skipped=0" into buf; returns the length snprintf wanted. Load checks every key and value (nn_error
   naming the key) and changes nothing on error. */
int nn_scaler_state(const nn_grad_scaler *s, char *buf, size_t n);
void nn_scaler_load_state(nn_grad_scaler *s, const char *text);
/* == END API == */

/* ------------------------------------------------------------------------------------------- [impl:amp] */

nn_grad_scaler nn_grad_scaler_new(double init_scale, double growth_factor, double backoff_factor,
                                  int64_t growth_interval, int enabled) {
    nn_grad_scaler s;
    /* torch's asserts: growth_factor > 1, backoff_factor < 1; a positive finite scale and interval */
    if (!(init_scale > 0 && init_scale < 3.4e38) || !(growth_factor > 1.0) || !(backoff_factor > 0 && backoff_factor < 1.0) ||
        growth_interval < 1)
        nn_error("nn_grad_scaler_new: need init_scale > 0 (finite in f32), growth_factor > 1, 0 < backoff_factor < 1, "
                 "growth_interval >= 1; got %g, %g, %g, %lld", init_scale, growth_factor, backoff_factor,
                 (long long)growth_interval);
    memset(&s, 0, sizeof s);
    s.enabled = enabled != 0;
    s.scale = (float)init_scale;
    s.growth_factor = growth_factor;
    s.backoff_factor = backoff_factor;
    s.growth_interval = growth_interval;
    return s;
}

nn_grad_scaler nn_grad_scaler_default(void) { return nn_grad_scaler_new(65536.0, 2.0, 0.5, 2000, 1); }

double nn_scaler_get_scale(const nn_grad_scaler *s) {
    if (!s) nn_error("nn_scaler_get_scale: scaler is NULL");
    return s->enabled ? (double)s->scale : 1.0;
}

nn_tensor *nn_scaler_scale(nn_grad_scaler *s, nn_tensor *loss) {
    if (!s || !loss) nn_error("nn_scaler_scale: scaler or loss is NULL");
    if (!s->enabled) return loss;
    return nn_mul_scalar(loss, (double)s->scale);   /* exactly f32 loss * f32 scale */
}

int nn_scaler_unscale(nn_grad_scaler *s, nn_params *P) {
    float inv;
    int k, found = 0;
    if (!s || !P) nn_error("nn_scaler_unscale: scaler or registry is NULL");
    if (!s->enabled) return 0;
    if (s->stage == 1) nn_error("nn_scaler_unscale: already called since the last nn_scaler_update");
    if (s->stage == 2) nn_error("nn_scaler_unscale: called after nn_scaler_step (call nn_scaler_update first)");
    inv = (float)(1.0 / (double)s->scale);          /* torch: _scale.double().reciprocal().float() */
    for (k = 0; k < P->n; k++) {
        nn_tensor *g = P->items[k].t->grad, *h = NULL;
        float *d;
        int64_t i, n;
        int bad = 0;
        if (!g) continue;
        if (g->dtype != NN_F32) nn_error("nn_scaler_unscale: gradient of '%s' is %s, not f32", P->items[k].name, nn_dtype_name(g->dtype));
        if (g->device != NN_CPU) { h = nn_to(g, NN_CPU); g = h; }   /* until a device kernel does it in place */
        d = (float *)g->data;
        n = g->numel;
        NN_OMP("omp parallel for reduction(|:bad) if (n > 32768)")
        for (i = 0; i < n; i++) {
            float v = d[i];
            if (!isfinite(v)) bad = 1;
            if (inv != 1.0f) d[i] = v * inv;
        }
        if (h) { nn_copy_(P->items[k].t->grad, h); nn_tensor_free(h); }
        found |= bad;
    }
    s->found_inf = found;
    s->stage = 1;
    return found;
}

int nn_scaler_step(nn_grad_scaler *s, nn_adamw *opt, double lr) {
    if (!s || !opt) nn_error("nn_scaler_step: scaler or optimiser is NULL");
    if (!s->enabled) { nn_adamw_step(opt, lr); s->steps++; return 1; }
    if (s->stage == 2) nn_error("nn_scaler_step: already called since the last nn_scaler_update");
    if (s->stage == 0) nn_scaler_unscale(s, opt->P);
    s->stage = 2;
    if (s->found_inf) { s->skipped++; return 0; }
    nn_adamw_step(opt, lr);
    s->steps++;
    return 1;
}

void nn_scaler_update(nn_grad_scaler *s) {
    if (!s) nn_error("nn_scaler_update: scaler is NULL");
    if (!s->enabled) return;
    if (s->stage == 0) nn_error("nn_scaler_update: no inf checks were recorded (call nn_scaler_step or nn_scaler_unscale first)");
    if (s->found_inf) {
        s->scale = (float)((double)s->scale * s->backoff_factor);
        s->growth_tracker = 0;
    } else if (s->growth_tracker + 1 == s->growth_interval) {
        float grown = (float)((double)s->scale * s->growth_factor);
        if (isfinite(grown)) s->scale = grown;
        s->growth_tracker = 0;
    } else {
        s->growth_tracker++;
    }
    s->found_inf = 0;
    s->stage = 0;
}

int nn_scaler_state(const nn_grad_scaler *s, char *buf, size_t n) {
    if (!s || (!buf && n)) nn_error("nn_scaler_state: scaler or buffer is NULL");
    return snprintf(buf, n, "enabled=%d scale=%.9g growth_factor=%.17g backoff_factor=%.17g growth_interval=%lld "
                    "growth_tracker=%lld steps=%lld skipped=%lld", s->enabled, (double)s->scale, s->growth_factor,
                    s->backoff_factor, (long long)s->growth_interval, (long long)s->growth_tracker,
                    (long long)s->steps, (long long)s->skipped);
}

void nn_scaler_load_state(nn_grad_scaler *s, const char *text) {
    static const char *keys[8] = {"enabled", "scale", "growth_factor", "backoff_factor", "growth_interval",
                                  "growth_tracker", "steps", "skipped"};
    double v[8];
    int seen[8] = {0}, k;
    const char *p = text;
    nn_grad_scaler t;
    if (!s || !text) nn_error("nn_scaler_load_state: scaler or text is NULL");
    while (*p) {
        char key[32], *end;
        size_t len = 0;
        while (*p == ' ') p++;
        if (!*p) break;
        while (p[len] && p[len] != '=' && p[len] != ' ' && len < sizeof key - 1) { key[len] = p[len]; len++; }
        key[len] = 0;
        if (p[len] != '=') nn_error("nn_scaler_load_state: expected key=value near \"%.40s\"", p);
        for (k = 0; k < 8; k++) if (!strcmp(key, keys[k])) break;
        if (k == 8) nn_error("nn_scaler_load_state: unknown key \"%s\"", key);
        if (seen[k]) nn_error("nn_scaler_load_state: key \"%s\" given twice", key);
        p += len + 1;
        v[k] = strtod(p, &end);
        if (end == p || (*end && *end != ' ') || !isfinite(v[k])) nn_error("nn_scaler_load_state: bad value for \"%s\"", key);
        seen[k] = 1;
        p = end;
    }
    for (k = 0; k < 8; k++) if (!seen[k]) nn_error("nn_scaler_load_state: key \"%s\" missing", keys[k]);
    if (v[0] != 0 && v[0] != 1) nn_error("nn_scaler_load_state: enabled must be 0 or 1");
    for (k = 4; k < 8; k++)
        if (v[k] < 0 || v[k] != floor(v[k]) || v[k] > 9e15) nn_error("nn_scaler_load_state: %s must be a count", keys[k]);
    t = nn_grad_scaler_new(v[1], v[2], v[3], (int64_t)v[4], (int)v[0]);
    t.growth_tracker = (int64_t)v[5];
    t.steps = (int64_t)v[6];
    t.skipped = (int64_t)v[7];
    *s = t;
}
