/* wip/ops_index_loss.h - indexing ops and losses of nn.h ([ops:index] and [ops:loss]), f32 on the CPU.
   A fragment for nn.h's implementation section, after the core: it uses only the [api] declarations.

   [ops:index]  nn_embedding nn_index_select nn_gather nn_scatter_add nn_topk nn_where nn_masked_fill
                nn_cross nn_norm
   [ops:loss]   nn_mse_loss nn_l1_loss nn_smooth_l1_loss nn_cross_entropy nn_bce_with_logits
                nn_sigmoid_focal_loss

   Conventions of this part
   - Index tensors are i32 or i64 on the CPU. Negative indices are errors (like torch's embedding,
     index_select, gather and scatter_add, which reject them); every index is range-checked before
     anything is allocated, so an error handler that longjmps leaks nothing.
   - Parallel scatters (gather/index_select/embedding backward, scatter_add forward) split the work so that
     each thread owns disjoint destination elements and adds in a fixed order: no atomics, no races, and
     the result does not depend on the thread count.
   - Sums of many terms (losses, norms, log-sum-exp) accumulate in double.
   - Broadcasting follows numpy/torch (align trailing dims; 1 stretches). Gradients of broadcast inputs are
     produced at the output shape and reduced by nn__accumulate.
   Where nn.h deliberately differs from PyTorch
   - topk: among equal values the lower index comes first (torch's CPU order among ties is unspecified).
   - mse/l1/smooth_l1: input and target must have the same shape (torch broadcasts them with a warning).
   - bce_with_logits: pos_weight gets a gradient (torch refuses to differentiate it); target does in both.
   - cross: inputs may differ in rank (torch.linalg.cross requires equal rank); dim counts in the output.
   - scatter_add: src may be larger than index (its uncovered part gets gradient 0; torch's backward errors).
   - cross_entropy: the class weight gets no gradient (as torch); target = probabilities is not supported. */

/* == API == */
/* (no new public functions: everything here is declared in nn.h's [api:ops]) */
/* == END API == */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef NN_OMP
#if defined(_OPENMP)
#define NN_OMP(x) _Pragma(x)
#else
#define NN_OMP(x)
#endif
#endif

/* below this many elements a loop stays on one thread (thread start-up costs more than the work) */
#define NN__IL_PAR 32768

/* ------------------------------------------------------------------------------------- helpers */

static const char *nn__il_shape(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t used = 0;
    int d;
    if (n == 0) return buf;
    buf[0] = 0;
    used += (size_t)snprintf(buf, n, "[");
    for (d = 0; d < ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, d ? ",%lld" : "%lld", (long long)shape[d]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

/* "[2,3]" of a tensor into one of several rotating buffers, so one message can name several shapes */
static const char *nn__il_s(const nn_tensor *t) {
    static char bufs[6][96];
    static int k;
    char *b = bufs[k = (k + 1) % 6];
    if (!t) return "(null)";
    return nn__il_shape(t->ndim, t->shape, b, sizeof bufs[0]);
}

static void nn__il_check_not_null(const char *op, const nn_tensor *t, const char *what) {
    if (!t) nn_error("%s: %s is NULL", op, what);
}

static void nn__il_check_cpu(const char *op, const nn_tensor *t, const char *what) {
    if (t->device != NN_CPU)
        nn_error("%s: %s is on %s; this op runs on the CPU only for now", op, what, nn_device_name(t->device));
}

static void nn__il_check_f32(const char *op, const nn_tensor *t, const char *what) {
    nn__il_check_not_null(op, t, what);
    if (t->dtype != NN_F32)
        nn_error("%s: %s must be f32, got %s %s", op, what, nn_dtype_name(t->dtype), nn__il_s(t));
    nn__il_check_cpu(op, t, what);
}

static void nn__il_check_index(const char *op, const nn_tensor *t, const char *what) {
    nn__il_check_not_null(op, t, what);
    if (t->dtype != NN_I32 && t->dtype != NN_I64)
        nn_error("%s: %s must be i32 or i64, got %s %s", op, what, nn_dtype_name(t->dtype), nn__il_s(t));
    nn__il_check_cpu(op, t, what);
}

static void nn__il_check_mask(const char *op, const nn_tensor *t, const char *what) {
    nn__il_check_not_null(op, t, what);
    if (t->dtype != NN_BOOL && t->dtype != NN_U8)
        nn_error("%s: %s must be bool or u8, got %s %s", op, what, nn_dtype_name(t->dtype), nn__il_s(t));
    nn__il_check_cpu(op, t, what);
}

static int64_t nn__il_idx(const nn_tensor *t, int64_t i) {
    return t->dtype == NN_I64 ? ((const int64_t *)t->data)[i] : (int64_t)((const int32_t *)t->data)[i];
}

/* every index in [0, size); otherwise an error naming the op, the bad value, its position and the shapes */
static void nn__il_check_range(const char *op, const nn_tensor *idx, int64_t size, const char *target,
                               const nn_tensor *tt, int dim) {
    int64_t i, bad = -1;
    for (i = 0; i < idx->numel; i++) {
        int64_t v = nn__il_idx(idx, i);
        if (v < 0 || v >= size) { bad = i; break; }
    }
    if (bad >= 0)
        nn_error("%s: index %lld out of range [0,%lld) for dim %d of %s %s (at flat position %lld of index %s)",
                 op, (long long)nn__il_idx(idx, bad), (long long)size, dim, target, nn__il_s(tt), (long long)bad,
                 nn__il_s(idx));
}

/* dim in [-ndim, ndim) -> [0, ndim), for a shape that is not a tensor (broadcast outputs) */
static int nn__il_norm_dim_n(const char *op, int ndim, int dim) {
    int d = dim < 0 ? dim + ndim : dim;
    if (d < 0 || d >= ndim) nn_error("%s: dim %d out of range for %d dims", op, dim, ndim);
    return d;
}

/* broadcast shape of n tensors (numpy rules); an error lists all their shapes */
static int nn__il_bcast(const char *op, int n, nn_tensor *const *ts, int64_t *out) {
    int k, d, ndim = 0;
    for (k = 0; k < n; k++) if (ts[k]->ndim > ndim) ndim = ts[k]->ndim;
    for (d = 0; d < ndim; d++) out[d] = 1;
    for (k = 0; k < n; k++) {
        const nn_tensor *t = ts[k];
        for (d = 0; d < t->ndim; d++) {
            int64_t s = t->shape[d], *o = &out[ndim - t->ndim + d];
            if (s == *o || s == 1) continue;
            if (*o == 1) { *o = s; continue; }
            if (n == 2) nn_error("%s: shapes %s and %s do not broadcast", op, nn__il_s(ts[0]), nn__il_s(ts[1]));
            nn_error("%s: shapes %s, %s and %s do not broadcast", op, nn__il_s(ts[0]), nn__il_s(ts[1]),
                     nn__il_s(ts[2]));
        }
    }
    return ndim;
}

/* element strides of t read at the coordinates of a broadcast output of rank ndim (0 where t broadcasts) */
static void nn__il_bstrides(const nn_tensor *t, int ndim, int64_t *st) {
    int d;
    int64_t s = 1;
    for (d = 0; d < ndim; d++) st[d] = 0;
    for (d = t->ndim - 1; d >= 0; d--) {
        st[ndim - t->ndim + d] = t->shape[d] == 1 ? 0 : s;
        s *= t->shape[d];
    }
}

/* offset of flat output element `lin` in an input with broadcast strides st */
static int64_t nn__il_boff(int64_t lin, int ndim, const int64_t *shape, const int64_t *st) {
    int64_t off = 0;
    int d;
    for (d = ndim - 1; d >= 0; d--) {
        off += (lin % shape[d]) * st[d];
        lin /= shape[d];
    }
    return off;
}

static int nn__il_same_shape(const nn_tensor *t, int ndim, const int64_t *shape) {
    int d;
    if (t->ndim != ndim) return 0;
    for (d = 0; d < ndim; d++) if (t->shape[d] != shape[d]) return 0;
    return 1;
}

/* [outer, n, inner] view of a contiguous shape around dim */
static void nn__il_split(int ndim, const int64_t *shape, int dim, int64_t *outer, int64_t *n, int64_t *inner) {
    int d;
    *outer = 1; *inner = 1;
    for (d = 0; d < dim; d++) *outer *= shape[d];
    for (d = dim + 1; d < ndim; d++) *inner *= shape[d];
    *n = shape[dim];
}

static nn_tensor *nn__il_zeros_f32(int ndim, const int64_t *shape) {
    nn_tensor *t = nn__new(NN_F32, NN_CPU, ndim, shape);
    if (t->numel) memset(t->data, 0, sizeof(float) * (size_t)t->numel);
    return t;
}

static nn_tensor *nn__il_copy_f32(const nn_tensor *src) {
    nn_tensor *t = nn__new(NN_F32, NN_CPU, src->ndim, src->shape);
    if (t->numel) memcpy(t->data, src->data, sizeof(float) * (size_t)t->numel);
    return t;
}

/* dst[o, j, k] = src[o, idx[j], k]: a row gather (index_select, embedding) */
static void nn__il_rows_copy(float *dst, const float *src, int64_t outer, int64_t sn, int64_t inner,
                             const nn_tensor *idx, int64_t n) {
    int64_t r, rows = outer * n;
    NN_OMP("omp parallel for if(rows * inner > 32768)")
    for (r = 0; r < rows; r++) {
        int64_t o = r / n, j = r % n;
        memcpy(dst + r * inner, src + (o * sn + nn__il_idx(idx, j)) * inner, sizeof(float) * (size_t)inner);
    }
}

/* dst[o, idx[j], k] += src[o, j, k]: the adjoint of nn__il_rows_copy. Work is split into tasks of
   (o, a block of k columns, a range of destination rows); a task runs over all j in order and adds only
   the rows in its range, so threads own disjoint dst elements and every element sums in j order: no
   atomics, and the result is bitwise the same for any thread count. Row ranges give parallelism when
   outer and the column blocks alone would not (embedding backward: outer = 1, dim <= a few blocks);
   each range re-reads the index list, which is cheap next to the rows it adds. */
#define NN__IL_TILE 256
static void nn__il_rows_add(float *dst, int64_t dn, const float *src, int64_t outer, int64_t inner,
                            const nn_tensor *idx, int64_t n) {
    int64_t kt = (inner + NN__IL_TILE - 1) / NN__IL_TILE, parts = 1, tasks, t;
    if (kt < 1) kt = 1;
#ifdef _OPENMP
    if (outer * n * inner > 32768 && outer * kt < 4 * (int64_t)omp_get_max_threads()) {
        parts = 4 * (int64_t)omp_get_max_threads() / (outer * kt);
        if (parts > dn) parts = dn;
        if (parts < 1) parts = 1;
    }
#endif
    tasks = outer * kt * parts;
    NN_OMP("omp parallel for schedule(dynamic, 1) if(tasks > 1 && outer * n * inner > 32768)")
    for (t = 0; t < tasks; t++) {
        int64_t p = t % parts, ok = t / parts, o = ok / kt, k0 = (ok % kt) * NN__IL_TILE, k1 = k0 + NN__IL_TILE;
        int64_t r0 = dn * p / parts, r1 = dn * (p + 1) / parts, j, k;
        if (k1 > inner) k1 = inner;
        for (j = 0; j < n; j++) {
            int64_t r = nn__il_idx(idx, j);
            float *d;
            const float *s;
            if (r < r0 || r >= r1) continue;
            d = dst + (o * dn + r) * inner;
            s = src + (o * n + j) * inner;
            for (k = k0; k < k1; k++) d[k] += s[k];
        }
    }
}

/* ------------------------------------------------------------------------------------ [ops:index] */

/* embedding: out[..., :] = weight[idx[...], :] */
static void nn__embedding_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *idx = n->saved[0], *gw;
    int64_t dim = n->in[0].shape[1];
    if (!nn__needs_grad(n, 0)) return;
    gw = nn__il_zeros_f32(2, n->in[0].shape);
    nn__il_rows_add((float *)gw->data, n->in[0].shape[0], (const float *)g->data, 1, dim, idx, idx->numel);
    nn__accumulate(n, 0, gw);
}

nn_tensor *nn_embedding(nn_tensor *weight, nn_tensor *idx) {
    const char *op = "nn_embedding";
    int64_t shape[NN_MAX_DIMS];
    nn_tensor *out;
    nn_node *nd;
    int d;
    nn__il_check_f32(op, weight, "weight");
    nn__il_check_index(op, idx, "idx");
    if (weight->ndim != 2) nn_error("%s: weight must be [num, dim], got %s", op, nn__il_s(weight));
    if (idx->ndim + 1 > NN_MAX_DIMS)
        nn_error("%s: idx %s has %d dims; the output would exceed %d", op, nn__il_s(idx), idx->ndim, NN_MAX_DIMS);
    nn__il_check_range(op, idx, weight->shape[0], "weight", weight, 0);
    for (d = 0; d < idx->ndim; d++) shape[d] = idx->shape[d];
    shape[idx->ndim] = weight->shape[1];
    out = nn__new(NN_F32, NN_CPU, idx->ndim + 1, shape);
    nn__il_rows_copy((float *)out->data, (const float *)weight->data, 1, weight->shape[0], weight->shape[1], idx,
                     idx->numel);
    nd = nn__record("embedding", nn__embedding_backward, 1, &weight, 1, &out);
    if (nd) nn__save(nd, idx);
    return out;
}

/* index_select: out = a with dim replaced by idx's entries; idx 1-D (or 0-D, one entry) */
static void nn__index_select_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *idx = n->saved[0], *ga;
    int dim = (int)n->i[0];
    int64_t outer, an, inner;
    if (!nn__needs_grad(n, 0)) return;
    ga = nn__il_zeros_f32(n->in[0].ndim, n->in[0].shape);
    nn__il_split(n->in[0].ndim, n->in[0].shape, dim, &outer, &an, &inner);
    nn__il_rows_add((float *)ga->data, an, (const float *)g->data, outer, inner, idx, idx->numel);
    nn__accumulate(n, 0, ga);
}

nn_tensor *nn_index_select(nn_tensor *a, int dim, nn_tensor *idx) {
    const char *op = "nn_index_select";
    int64_t shape[NN_MAX_DIMS], outer, an, inner;
    nn_tensor *out;
    nn_node *nd;
    int d, i;
    nn__il_check_f32(op, a, "input");
    nn__il_check_index(op, idx, "index");
    if (a->ndim == 0) nn_error("%s: input is a scalar %s; it needs at least one dim", op, nn__il_s(a));
    if (idx->ndim > 1) nn_error("%s: index must be 1-D, got %s", op, nn__il_s(idx));
    d = nn__norm_dim(op, a, dim);
    nn__il_check_range(op, idx, a->shape[d], "input", a, d);
    for (i = 0; i < a->ndim; i++) shape[i] = a->shape[i];
    shape[d] = idx->numel;
    out = nn__new(NN_F32, NN_CPU, a->ndim, shape);
    nn__il_split(a->ndim, a->shape, d, &outer, &an, &inner);
    nn__il_rows_copy((float *)out->data, (const float *)a->data, outer, an, inner, idx, idx->numel);
    nd = nn__record("index_select", nn__index_select_backward, 1, &a, 1, &out);
    if (nd) { nn__save(nd, idx); nd->i[0] = d; }
    return out;
}

/* gather and scatter_add walk "lines": all elements of idx that share every coordinate but dim. A line's
   elements read (gather) or write (scatter) the same line of the big tensor, and different lines touch
   disjoint lines of it; so threads split by line and run each line in order - no races, fixed sum order. */
typedef struct {
    int ndim, dim;
    int64_t ishape[NN_MAX_DIMS];   /* idx shape */
    int64_t n;                     /* idx->shape[dim] */
    int64_t lines;                 /* idx->numel / n (n > 0) */
    int64_t istr[NN_MAX_DIMS];     /* contiguous strides of idx */
    int64_t astr[NN_MAX_DIMS];     /* contiguous strides of the big tensor (a / out) */
    int64_t sstr[NN_MAX_DIMS];     /* contiguous strides of a third tensor (scatter's src) */
} nn__il_lines;

static void nn__il_strides(int ndim, const int64_t *shape, int64_t *st) {
    int d;
    int64_t s = 1;
    for (d = ndim - 1; d >= 0; d--) { st[d] = s; s *= shape[d]; }
}

static void nn__il_lines_init(nn__il_lines *L, const nn_tensor *idx, const nn_tensor *a, const nn_tensor *src,
                              int dim) {
    int d;
    L->ndim = idx->ndim;
    L->dim = dim;
    for (d = 0; d < idx->ndim; d++) L->ishape[d] = idx->shape[d];
    L->n = idx->ndim ? idx->shape[dim] : 1;
    L->lines = L->n ? idx->numel / L->n : 0;
    nn__il_strides(idx->ndim, idx->shape, L->istr);
    nn__il_strides(a->ndim, a->shape, L->astr);
    if (src) nn__il_strides(src->ndim, src->shape, L->sstr);
    else for (d = 0; d < NN_MAX_DIMS; d++) L->sstr[d] = 0;
}

/* offsets of the first element of line l in idx, the big tensor and src */
static void nn__il_line_at(const nn__il_lines *L, int64_t l, int64_t *io, int64_t *ao, int64_t *so) {
    int d;
    *io = *ao = *so = 0;
    for (d = L->ndim - 1; d >= 0; d--) {
        int64_t c;
        if (d == L->dim) continue;
        c = l % L->ishape[d];
        l /= L->ishape[d];
        *io += c * L->istr[d];
        *ao += c * L->astr[d];
        *so += c * L->sstr[d];
    }
}

/* dst (idx's shape) [.., j, ..] = big[.., idx[.., j, ..], ..] */
static void nn__il_gather_kernel(const nn__il_lines *L, float *dst, const float *big, const nn_tensor *idx) {
    int64_t l;
    NN_OMP("omp parallel for if(L->lines * L->n > 32768)")
    for (l = 0; l < L->lines; l++) {
        int64_t io, ao, so, j;
        int64_t is = L->ndim ? L->istr[L->dim] : 0, as = L->ndim ? L->astr[L->dim] : 0;
        nn__il_line_at(L, l, &io, &ao, &so);
        for (j = 0; j < L->n; j++) dst[io + j * is] = big[ao + nn__il_idx(idx, io + j * is) * as];
    }
}

/* big[.., idx[.., j, ..], ..] += src[.., j, ..] where src is read with L->sstr */
static void nn__il_scatter_kernel(const nn__il_lines *L, float *big, const float *src, const nn_tensor *idx) {
    int64_t l;
    NN_OMP("omp parallel for if(L->lines * L->n > 32768)")
    for (l = 0; l < L->lines; l++) {
        int64_t io, ao, so, j;
        int64_t is = L->ndim ? L->istr[L->dim] : 0, as = L->ndim ? L->astr[L->dim] : 0;
        int64_t ss = L->ndim ? L->sstr[L->dim] : 0;
        nn__il_line_at(L, l, &io, &ao, &so);
        for (j = 0; j < L->n; j++) big[ao + nn__il_idx(idx, io + j * is) * as] += src[so + j * ss];
    }
}

/* torch.gather / scatter_add shape rules: same ndim; idx.shape[d] <= a.shape[d] for d != dim
   (and <= src.shape[d] for every d) */
static void nn__il_check_gather_shapes(const char *op, const nn_tensor *a, const nn_tensor *idx,
                                       const nn_tensor *src, int dim) {
    int d;
    if (idx->ndim != a->ndim)
        nn_error("%s: index %s must have as many dims as input %s", op, nn__il_s(idx), nn__il_s(a));
    if (src && src->ndim != a->ndim)
        nn_error("%s: src %s must have as many dims as input %s", op, nn__il_s(src), nn__il_s(a));
    for (d = 0; d < a->ndim; d++) {
        if (d != dim && idx->shape[d] > a->shape[d])
            nn_error("%s: index %s is larger than input %s in dim %d", op, nn__il_s(idx), nn__il_s(a), d);
        if (src && idx->shape[d] > src->shape[d])
            nn_error("%s: index %s is larger than src %s in dim %d", op, nn__il_s(idx), nn__il_s(src), d);
    }
}

static void nn__gather_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *idx = n->saved[0], *ga;
    nn__il_lines L;
    if (!nn__needs_grad(n, 0)) return;
    ga = nn__il_zeros_f32(n->in[0].ndim, n->in[0].shape);
    nn__il_lines_init(&L, idx, ga, idx, (int)n->i[0]);  /* g has idx's shape */
    nn__il_scatter_kernel(&L, (float *)ga->data, (const float *)g->data, idx);
    nn__accumulate(n, 0, ga);
}

nn_tensor *nn_gather(nn_tensor *a, int dim, nn_tensor *idx) {
    const char *op = "nn_gather";
    nn_tensor *out;
    nn_node *nd;
    nn__il_lines L;
    int d;
    nn__il_check_f32(op, a, "input");
    nn__il_check_index(op, idx, "index");
    d = a->ndim ? nn__norm_dim(op, a, dim) : 0;
    if (a->ndim == 0 && dim != 0 && dim != -1) nn_error("%s: dim %d out of range for a scalar input", op, dim);
    nn__il_check_gather_shapes(op, a, idx, NULL, d);
    nn__il_check_range(op, idx, a->ndim ? a->shape[d] : 1, "input", a, d);
    out = nn__new(NN_F32, NN_CPU, idx->ndim, idx->shape);
    nn__il_lines_init(&L, idx, a, NULL, d);
    nn__il_gather_kernel(&L, (float *)out->data, (const float *)a->data, idx);
    nd = nn__record("gather", nn__gather_backward, 1, &a, 1, &out);
    if (nd) { nn__save(nd, idx); nd->i[0] = d; }
    return out;
}

/* scatter_add: out = a; out[.., idx[.., j, ..], ..] += src[.., j, ..]. d out/d a = identity;
   d out/d src = gather of the output gradient at idx (zero where src lies outside idx's extent) */
static void nn__scatter_add_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *idx = n->saved[0];
    int dim = (int)n->i[0];
    if (nn__needs_grad(n, 0)) nn__accumulate(n, 0, nn__il_copy_f32(g));
    if (nn__needs_grad(n, 1)) {
        nn_tensor *gs = nn__il_zeros_f32(n->in[1].ndim, n->in[1].shape);
        nn__il_lines L;
        int64_t l;
        nn__il_lines_init(&L, idx, g, gs, dim);
        /* like the gather kernel, but the destination is src-shaped */
        NN_OMP("omp parallel for if(L.lines * L.n > 32768)")
        for (l = 0; l < L.lines; l++) {
            int64_t io, ao, so, j;
            int64_t is = L.ndim ? L.istr[dim] : 0, as = L.ndim ? L.astr[dim] : 0, ss = L.ndim ? L.sstr[dim] : 0;
            nn__il_line_at(&L, l, &io, &ao, &so);
            for (j = 0; j < L.n; j++)
                ((float *)gs->data)[so + j * ss] = ((const float *)g->data)[ao + nn__il_idx(idx, io + j * is) * as];
        }
        nn__accumulate(n, 1, gs);
    }
}

nn_tensor *nn_scatter_add(nn_tensor *a, int dim, nn_tensor *idx, nn_tensor *src) {
    const char *op = "nn_scatter_add";
    nn_tensor *out, *ins[2];
    nn_node *nd;
    nn__il_lines L;
    int d;
    nn__il_check_f32(op, a, "input");
    nn__il_check_index(op, idx, "index");
    nn__il_check_f32(op, src, "src");
    d = a->ndim ? nn__norm_dim(op, a, dim) : 0;
    if (a->ndim == 0 && dim != 0 && dim != -1) nn_error("%s: dim %d out of range for a scalar input", op, dim);
    nn__il_check_gather_shapes(op, a, idx, src, d);
    nn__il_check_range(op, idx, a->ndim ? a->shape[d] : 1, "input", a, d);
    out = nn__il_copy_f32(a);
    nn__il_lines_init(&L, idx, out, src, d);
    nn__il_scatter_kernel(&L, (float *)out->data, (const float *)src->data, idx);
    ins[0] = a; ins[1] = src;
    nd = nn__record("scatter_add", nn__scatter_add_backward, 2, ins, 1, &out);
    if (nd) { nn__save(nd, idx); nd->i[0] = d; }
    return out;
}

/* topk. Order (documented choice): largest=1 sorts descending with NaN above every number (torch's CPU
   comparator does the same); largest=0 sorts ascending with NaN last (again as torch). Equal values
   (including -0 and +0) come in increasing index order. torch's CPU kernel uses an unstable partial sort,
   so its order among ties is unspecified; the values agree with torch in every case, the indices
   whenever there are no ties. */
typedef struct { float v; int64_t i; } nn__il_vi;

static int nn__il_cmp_desc(const void *pa, const void *pb) {
    const nn__il_vi *x = (const nn__il_vi *)pa, *y = (const nn__il_vi *)pb;
    int xn = x->v != x->v, yn = y->v != y->v;
    if (xn != yn) return xn ? -1 : 1;
    if (!xn && x->v != y->v) return x->v > y->v ? -1 : 1;
    return x->i < y->i ? -1 : (x->i > y->i);
}

static int nn__il_cmp_asc(const void *pa, const void *pb) {
    const nn__il_vi *x = (const nn__il_vi *)pa, *y = (const nn__il_vi *)pb;
    int xn = x->v != x->v, yn = y->v != y->v;
    if (xn != yn) return xn ? 1 : -1;
    if (!xn && x->v != y->v) return x->v < y->v ? -1 : 1;
    return x->i < y->i ? -1 : (x->i > y->i);
}

/* put the k first elements of buf (in the total order cmp) at its front, sorted: a quickselect
   (Hoare, median-of-three pivot) narrows to the k-th place in expected O(n), then a sort of the k.
   cmp is a total order (value, then index), so the result is unique whatever the pivots. */
static void nn__il_select(nn__il_vi *buf, int64_t n, int64_t k,
                          int (*cmp)(const void *, const void *)) {
    int64_t lo = 0, hi = n - 1;
    if (k <= 0) return;
    if (k < n) {
        while (hi > lo) {
            int64_t i = lo, j = hi, mid = lo + (hi - lo) / 2;
            nn__il_vi piv, tmp;
            /* median of three as the pivot value */
            if (cmp(&buf[mid], &buf[lo]) < 0) { tmp = buf[mid]; buf[mid] = buf[lo]; buf[lo] = tmp; }
            if (cmp(&buf[hi], &buf[lo]) < 0) { tmp = buf[hi]; buf[hi] = buf[lo]; buf[lo] = tmp; }
            if (cmp(&buf[hi], &buf[mid]) < 0) { tmp = buf[hi]; buf[hi] = buf[mid]; buf[mid] = tmp; }
            piv = buf[mid];
            while (i <= j) {
                while (cmp(&buf[i], &piv) < 0) i++;
                while (cmp(&piv, &buf[j]) < 0) j--;
                if (i <= j) { tmp = buf[i]; buf[i] = buf[j]; buf[j] = tmp; i++; j--; }
            }
            /* now [lo, j] <= piv <= [i, hi]; keep the side that holds position k-1 */
            if (k - 1 <= j) hi = j;
            else if (k - 1 >= i) lo = i;
            else break;
        }
    }
    qsort(buf, (size_t)k, sizeof *buf, cmp);
}

static void nn__topk_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *ind = n->saved[0], *ga;
    int dim = (int)n->i[0];
    int64_t outer, an, inner, k = n->i[1], r;
    if (!nn__needs_grad(n, 0)) return;
    ga = nn__il_zeros_f32(n->in[0].ndim, n->in[0].shape);
    nn__il_split(n->in[0].ndim, n->in[0].shape, dim, &outer, &an, &inner);
    /* the k indices of one line are distinct, so every output element owns its destination */
    NN_OMP("omp parallel for if(g->numel > 32768)")
    for (r = 0; r < g->numel; r++) {
        int64_t o = r / (k * inner), c = r % inner;
        ((float *)ga->data)[(o * an + ((const int64_t *)ind->data)[r]) * inner + c] = ((const float *)g->data)[r];
    }
    nn__accumulate(n, 0, ga);
}

void nn_topk(nn_tensor *a, int64_t k, int dim, int largest, nn_tensor **values, nn_tensor **indices) {
    const char *op = "nn_topk";
    int64_t shape[NN_MAX_DIMS], outer, an, inner, lines;
    nn_tensor *val, *ind;
    nn_node *nd = NULL;
    int d, i;
    nn__il_check_f32(op, a, "input");
    if (a->ndim == 0) nn_error("%s: input is a scalar %s; it needs at least one dim", op, nn__il_s(a));
    d = nn__norm_dim(op, a, dim);
    if (k < 0 || k > a->shape[d])
        nn_error("%s: k = %lld out of range [0,%lld] for dim %d of input %s", op, (long long)k,
                 (long long)a->shape[d], d, nn__il_s(a));
    if (values) *values = NULL;
    if (indices) *indices = NULL;
    if (!values && !indices) return;
    for (i = 0; i < a->ndim; i++) shape[i] = a->shape[i];
    shape[d] = k;
    nn__il_split(a->ndim, a->shape, d, &outer, &an, &inner);
    lines = outer * inner;
    val = nn__new(NN_F32, NN_CPU, a->ndim, shape);
    ind = nn__new(NN_I64, NN_CPU, a->ndim, shape);
    if (k > 0) {
        const float *ad = (const float *)a->data;
        float *vd = (float *)val->data;
        int64_t *id = (int64_t *)ind->data;
        int oom = 0;
        NN_OMP("omp parallel if(lines * an > 32768)")
        {
            nn__il_vi *buf = (nn__il_vi *)malloc(sizeof(nn__il_vi) * (size_t)an);
            int64_t l;
            if (!buf) oom = 1;  /* reported after the parallel region: never longjmp out of one */
            NN_OMP("omp for")
            for (l = 0; l < lines; l++) {
                int64_t o = l / inner, c = l % inner, j;
                if (!buf) continue;
                for (j = 0; j < an; j++) { buf[j].v = ad[(o * an + j) * inner + c]; buf[j].i = j; }
                nn__il_select(buf, an, k, largest ? nn__il_cmp_desc : nn__il_cmp_asc);
                for (j = 0; j < k; j++) {
                    vd[(o * k + j) * inner + c] = buf[j].v;
                    id[(o * k + j) * inner + c] = buf[j].i;
                }
            }
            free(buf);
        }
        if (oom) {
            nn_tensor_free(val);
            nn_tensor_free(ind);
            nn_error("%s: out of memory for a line of %lld elements of input %s", op, (long long)an, nn__il_s(a));
        }
    }
    if (values) {
        nd = nn__record("topk", nn__topk_backward, 1, &a, 1, &val);
        if (nd) { nn__save(nd, ind); nd->i[0] = d; nd->i[1] = k; }
        *values = val;
    } else {
        nn_tensor_free(val);
    }
    if (indices) *indices = ind;
    else nn_tensor_free(ind);  /* a node that saved it keeps it alive */
}

/* o = c ? x : y over a broadcast output shape, row by row: along the last dim each input has stride 0 or 1
   (or its own contiguous stride), so offsets are computed once per row, not per element. x (or y) NULL
   reads as the constant xv (yv). Used by where and masked_fill, forward and backward. */
static void nn__il_select_kernel(float *o, int ndim, const int64_t *shape, const uint8_t *c, const int64_t *cs,
                                 const float *x, const int64_t *xs, float xv, const float *y, const int64_t *ys,
                                 float yv) {
    int64_t L = ndim ? shape[ndim - 1] : 1, numel = 1, rows, r;
    int64_t cst = ndim ? cs[ndim - 1] : 0, xst = (x && ndim) ? xs[ndim - 1] : 0, yst = (y && ndim) ? ys[ndim - 1] : 0;
    int d;
    for (d = 0; d < ndim; d++) numel *= shape[d];
    if (numel == 0) return;
    rows = numel / L;
    NN_OMP("omp parallel for if(numel > 32768)")
    for (r = 0; r < rows; r++) {
        int64_t base = r * L, k;
        int64_t co = nn__il_boff(base, ndim, shape, cs);
        int64_t xo = x ? nn__il_boff(base, ndim, shape, xs) : 0, yo = y ? nn__il_boff(base, ndim, shape, ys) : 0;
        for (k = 0; k < L; k++)
            o[base + k] = c[co + k * cst] ? (x ? x[xo + k * xst] : xv) : (y ? y[yo + k * yst] : yv);
    }
}

/* where(cond, a, b): cond ? a : b, all three broadcast; gradients g where cond (a) / where not (b) */
static void nn__where_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *cond = n->saved[0];
    int64_t cs[NN_MAX_DIMS], gs[NN_MAX_DIMS];
    int k;
    nn__il_bstrides(cond, g->ndim, cs);
    nn__il_strides(g->ndim, g->shape, gs);
    for (k = 0; k < 2; k++) {
        nn_tensor *gi;
        const float *gd = (const float *)g->data;
        if (!nn__needs_grad(n, k)) continue;
        gi = nn__new(NN_F32, NN_CPU, g->ndim, g->shape);
        nn__il_select_kernel((float *)gi->data, g->ndim, g->shape, (const uint8_t *)cond->data, cs,
                             k == 0 ? gd : NULL, gs, 0.0f, k == 1 ? gd : NULL, gs, 0.0f);
        nn__accumulate(n, k, gi);
    }
}

nn_tensor *nn_where(nn_tensor *cond, nn_tensor *a, nn_tensor *b) {
    const char *op = "nn_where";
    nn_tensor *ts[3], *out, *ins[2];
    int64_t shape[NN_MAX_DIMS], cs[NN_MAX_DIMS], as[NN_MAX_DIMS], bs[NN_MAX_DIMS];
    int ndim;
    nn_node *nd;
    nn__il_check_mask(op, cond, "cond");
    nn__il_check_f32(op, a, "a");
    nn__il_check_f32(op, b, "b");
    ts[0] = cond; ts[1] = a; ts[2] = b;
    ndim = nn__il_bcast(op, 3, ts, shape);
    out = nn__new(NN_F32, NN_CPU, ndim, shape);
    nn__il_bstrides(cond, ndim, cs);
    nn__il_bstrides(a, ndim, as);
    nn__il_bstrides(b, ndim, bs);
    nn__il_select_kernel((float *)out->data, ndim, shape, (const uint8_t *)cond->data, cs, (const float *)a->data,
                         as, 0.0f, (const float *)b->data, bs, 0.0f);
    ins[0] = a; ins[1] = b;
    nd = nn__record("where", nn__where_backward, 2, ins, 1, &out);
    if (nd) nn__save(nd, cond);
    return out;
}

/* masked_fill(a, mask, value): mask ? value : a, a and mask broadcast; gradient g where not mask */
static void nn__masked_fill_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *mask = n->saved[0], *ga;
    int64_t ms[NN_MAX_DIMS], gs[NN_MAX_DIMS];
    if (!nn__needs_grad(n, 0)) return;
    nn__il_bstrides(mask, g->ndim, ms);
    nn__il_strides(g->ndim, g->shape, gs);
    ga = nn__new(NN_F32, NN_CPU, g->ndim, g->shape);
    nn__il_select_kernel((float *)ga->data, g->ndim, g->shape, (const uint8_t *)mask->data, ms, NULL, gs, 0.0f,
                         (const float *)g->data, gs, 0.0f);
    nn__accumulate(n, 0, ga);
}

nn_tensor *nn_masked_fill(nn_tensor *a, nn_tensor *mask, double value) {
    const char *op = "nn_masked_fill";
    nn_tensor *ts[2], *out;
    int64_t shape[NN_MAX_DIMS], ms[NN_MAX_DIMS], as[NN_MAX_DIMS];
    int ndim;
    nn_node *nd;
    nn__il_check_f32(op, a, "input");
    nn__il_check_mask(op, mask, "mask");
    ts[0] = a; ts[1] = mask;
    ndim = nn__il_bcast(op, 2, ts, shape);
    out = nn__new(NN_F32, NN_CPU, ndim, shape);
    nn__il_bstrides(mask, ndim, ms);
    nn__il_bstrides(a, ndim, as);
    nn__il_select_kernel((float *)out->data, ndim, shape, (const uint8_t *)mask->data, ms, NULL, as, (float)value,
                         (const float *)a->data, as, 0.0f);
    nd = nn__record("masked_fill", nn__masked_fill_backward, 1, &a, 1, &out);
    if (nd) nn__save(nd, mask);
    return out;
}

/* cross product of 3-vectors along dim of the broadcast shape (torch.linalg.cross; dim counts in the
   output's dims). o = x (strides xs) cross y (strides ys). */
static void nn__il_cross_kernel(float *o, int ndim, const int64_t *shape, int dim, const float *x,
                                const int64_t *xs, const float *y, const int64_t *ys) {
    int64_t outer, n3, inner, v, nv;
    nn__il_split(ndim, shape, dim, &outer, &n3, &inner);
    nv = outer * inner;
    NN_OMP("omp parallel for if(nv > 32768 / 3)")
    for (v = 0; v < nv; v++) {
        int64_t base = (v / inner) * 3 * inner + v % inner;  /* flat index of component 0 in the output */
        int64_t xo = nn__il_boff(base, ndim, shape, xs), yo = nn__il_boff(base, ndim, shape, ys);
        int64_t xd = xs[dim], yd = ys[dim];
        float x0 = x[xo], x1 = x[xo + xd], x2 = x[xo + 2 * xd];
        float y0 = y[yo], y1 = y[yo + yd], y2 = y[yo + 2 * yd];
        o[base] = x1 * y2 - x2 * y1;
        o[base + inner] = x2 * y0 - x0 * y2;
        o[base + 2 * inner] = x0 * y1 - x1 * y0;
    }
    (void)n3;
}

/* c = a x b, L = g . c: dL/da = b x g, dL/db = g x a (both at the output shape; accumulate reduces) */
static void nn__cross_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *a = n->saved[0], *b = n->saved[1];
    int dim = (int)n->i[0], ndim = g->ndim;
    int64_t as[NN_MAX_DIMS], bs[NN_MAX_DIMS], gs[NN_MAX_DIMS];
    nn__il_bstrides(a, ndim, as);
    nn__il_bstrides(b, ndim, bs);
    nn__il_strides(ndim, g->shape, gs);
    if (nn__needs_grad(n, 0)) {
        nn_tensor *ga = nn__new(NN_F32, NN_CPU, ndim, g->shape);
        nn__il_cross_kernel((float *)ga->data, ndim, g->shape, dim, (const float *)b->data, bs,
                            (const float *)g->data, gs);
        nn__accumulate(n, 0, ga);
    }
    if (nn__needs_grad(n, 1)) {
        nn_tensor *gb = nn__new(NN_F32, NN_CPU, ndim, g->shape);
        nn__il_cross_kernel((float *)gb->data, ndim, g->shape, dim, (const float *)g->data, gs,
                            (const float *)a->data, as);
        nn__accumulate(n, 1, gb);
    }
}

nn_tensor *nn_cross(nn_tensor *a, nn_tensor *b, int dim) {
    const char *op = "nn_cross";
    nn_tensor *ts[2], *out;
    int64_t shape[NN_MAX_DIMS], as[NN_MAX_DIMS], bs[NN_MAX_DIMS];
    int ndim, d;
    nn_node *nd;
    nn__il_check_f32(op, a, "a");
    nn__il_check_f32(op, b, "b");
    ts[0] = a; ts[1] = b;
    ndim = nn__il_bcast(op, 2, ts, shape);
    if (ndim == 0) nn_error("%s: inputs are scalars (%s, %s); need 3-vectors", op, nn__il_s(a), nn__il_s(b));
    d = nn__il_norm_dim_n(op, ndim, dim);
    /* both inputs must really have 3 entries along dim (torch.linalg.cross does not broadcast that dim) */
    if (d < ndim - a->ndim || a->shape[d - (ndim - a->ndim)] != 3 || d < ndim - b->ndim ||
        b->shape[d - (ndim - b->ndim)] != 3)
        nn_error("%s: dim %d must have length 3 in both inputs, got %s and %s", op, dim, nn__il_s(a), nn__il_s(b));
    out = nn__new(NN_F32, NN_CPU, ndim, shape);
    nn__il_bstrides(a, ndim, as);
    nn__il_bstrides(b, ndim, bs);
    nn__il_cross_kernel((float *)out->data, ndim, shape, d, (const float *)a->data, as, (const float *)b->data, bs);
    ts[0] = a; ts[1] = b;
    nd = nn__record("cross", nn__cross_backward, 2, ts, 1, &out);
    if (nd) {
        nn__save(nd, a);
        nn__save(nd, b);
        nd->i[0] = d;
    }
    return out;
}

/* L2 norm over dim, accumulated in double (no overflow for any f32 input). The gradient is x / |x|,
   and 0 where |x| = 0 (torch's choice: the subgradient 0 at the kink). */
static void nn__norm_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *a = n->saved[0], *y = n->saved[1], *ga;
    int dim = (int)n->i[0];
    int64_t outer, an, inner, r, rows;
    const float *ad = (const float *)a->data, *yd = (const float *)y->data, *gd = (const float *)g->data;
    float *o;
    if (!nn__needs_grad(n, 0)) return;
    nn__il_split(a->ndim, a->shape, dim, &outer, &an, &inner);
    ga = nn__new(NN_F32, NN_CPU, a->ndim, a->shape);
    o = (float *)ga->data;
    rows = outer * inner;
    NN_OMP("omp parallel for if(a->numel > 32768)")
    for (r = 0; r < rows; r++) {
        int64_t ob = r / inner, c = r % inner, j;
        float nv = yd[r], s = nv > 0 ? gd[r] / nv : 0.0f;
        for (j = 0; j < an; j++) {
            int64_t p = (ob * an + j) * inner + c;
            o[p] = ad[p] * s;
        }
    }
    nn__accumulate(n, 0, ga);
}

nn_tensor *nn_norm(nn_tensor *a, int dim, int keepdim) {
    const char *op = "nn_norm";
    int64_t shape[NN_MAX_DIMS], outer, an, inner, r, rows;
    nn_tensor *out;
    nn_node *nd;
    int d, i, k = 0;
    nn__il_check_f32(op, a, "input");
    if (a->ndim == 0) nn_error("%s: input is a scalar %s; it needs at least one dim", op, nn__il_s(a));
    d = nn__norm_dim(op, a, dim);
    for (i = 0; i < a->ndim; i++) {
        if (i == d) { if (keepdim) shape[k++] = 1; }
        else shape[k++] = a->shape[i];
    }
    out = nn__new(NN_F32, NN_CPU, k, shape);
    nn__il_split(a->ndim, a->shape, d, &outer, &an, &inner);
    rows = outer * inner;
    {
        const float *ad = (const float *)a->data;
        float *o = (float *)out->data;
        NN_OMP("omp parallel for if(a->numel > 32768)")
        for (r = 0; r < rows; r++) {
            int64_t ob = r / inner, c = r % inner, j;
            double s = 0;
            for (j = 0; j < an; j++) {
                double x = ad[(ob * an + j) * inner + c];
                s += x * x;
            }
            o[r] = (float)sqrt(s);
        }
    }
    nd = nn__record("norm", nn__norm_backward, 1, &a, 1, &out);
    if (nd) {
        nn__save(nd, a);
        nn__save(nd, out);
        nd->i[0] = d;
    }
    return out;
}

/* ------------------------------------------------------------------------------------- [ops:loss] */

static nn_tensor *nn__il_scalar(double v) {
    int64_t one = 1;
    nn_tensor *t = nn__new(NN_F32, NN_CPU, 0, &one);
    *(float *)t->data = (float)v;
    return t;
}

static void nn__il_check_same_shape(const char *op, const nn_tensor *a, const nn_tensor *b, const char *an,
                                    const char *bn) {
    if (!nn__il_same_shape(b, a->ndim, a->shape))
        nn_error("%s: %s %s and %s %s must have the same shape", op, an, nn__il_s(a), bn, nn__il_s(b));
}

/* mse, l1 and smooth_l1 share one pointwise kernel. kind 0: (p-t)^2; 1: |p-t|;
   2: smooth_l1 with beta > 0: 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta (torch's definition;
   beta = 0 is l1, as torch does). Reduction: mean over all elements. */
enum { NN__IL_MSE, NN__IL_L1, NN__IL_SMOOTH_L1 };

static double nn__il_reg_loss(int kind, double d, double beta) {
    double ad = fabs(d);
    if (kind == NN__IL_MSE) return d * d;
    if (kind == NN__IL_L1) return ad;
    return ad < beta ? 0.5 * d * d / beta : ad - 0.5 * beta;
}

/* derivative in d; sign(0) = 0 as torch */
static double nn__il_reg_dloss(int kind, double d, double beta) {
    double sg = d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0);
    if (kind == NN__IL_MSE) return 2.0 * d;
    if (kind == NN__IL_L1) return sg;
    return fabs(d) < beta ? d / beta : sg;
}

static void nn__reg_loss_backward(nn_node *n) {
    nn_tensor *p = n->saved[0], *t = n->saved[1], *gp = NULL, *gt = NULL;
    int kind = (int)n->i[0];
    double beta = n->a[0], scale = (double)*(const float *)n->gout[0]->data / (double)(p->numel ? p->numel : 1);
    const float *pd = (const float *)p->data, *td = (const float *)t->data;
    float *gpd, *gtd;
    int64_t i;
    if (nn__needs_grad(n, 0)) gp = nn__new(NN_F32, NN_CPU, p->ndim, p->shape);
    if (nn__needs_grad(n, 1)) gt = nn__new(NN_F32, NN_CPU, p->ndim, p->shape);
    gpd = gp ? (float *)gp->data : NULL;
    gtd = gt ? (float *)gt->data : NULL;
    NN_OMP("omp parallel for if(p->numel > 32768)")
    for (i = 0; i < p->numel; i++) {
        double v = scale * nn__il_reg_dloss(kind, (double)pd[i] - (double)td[i], beta);
        if (gpd) gpd[i] = (float)v;
        if (gtd) gtd[i] = (float)-v;
    }
    if (gp) nn__accumulate(n, 0, gp);
    if (gt) nn__accumulate(n, 1, gt);
}

static nn_tensor *nn__il_reg_loss_op(const char *op, int kind, nn_tensor *pred, nn_tensor *target, double beta) {
    nn_tensor *out, *ins[2];
    nn_node *nd;
    double s = 0;
    int64_t i;
    nn__il_check_f32(op, pred, "input");
    nn__il_check_f32(op, target, "target");
    nn__il_check_same_shape(op, pred, target, "input", "target");
    if (kind == NN__IL_SMOOTH_L1 && !(beta >= 0)) nn_error("%s: beta must be >= 0, got %g", op, beta);
    if (kind == NN__IL_SMOOTH_L1 && beta == 0) kind = NN__IL_L1;
    {
        const float *pd = (const float *)pred->data, *td = (const float *)target->data;
        NN_OMP("omp parallel for reduction(+:s) if(pred->numel > 32768)")
        for (i = 0; i < pred->numel; i++) s += nn__il_reg_loss(kind, (double)pd[i] - (double)td[i], beta);
    }
    /* an empty input gives NaN, as torch's mean of nothing */
    out = nn__il_scalar(s / (double)pred->numel);
    ins[0] = pred; ins[1] = target;
    nd = nn__record(op + 3, nn__reg_loss_backward, 2, ins, 1, &out);
    if (nd) {
        nn__save(nd, pred);
        nn__save(nd, target);
        nd->i[0] = kind;
        nd->a[0] = beta;
    }
    return out;
}

nn_tensor *nn_mse_loss(nn_tensor *pred, nn_tensor *target) {
    return nn__il_reg_loss_op("nn_mse_loss", NN__IL_MSE, pred, target, 0);
}
nn_tensor *nn_l1_loss(nn_tensor *pred, nn_tensor *target) {
    return nn__il_reg_loss_op("nn_l1_loss", NN__IL_L1, pred, target, 0);
}
nn_tensor *nn_smooth_l1_loss(nn_tensor *pred, nn_tensor *target, double beta) {
    return nn__il_reg_loss_op("nn_smooth_l1_loss", NN__IL_SMOOTH_L1, pred, target, beta);
}

/* cross_entropy, F.cross_entropy(logits, target, weight, ignore_index=ii, label_smoothing=eps,
   reduction='mean'). With lsm = log_softmax over C, w_c the class weights (1 without), and the sums over
   positions s whose target t_s != ii (aten/src/ATen/native/LossNLL.cpp, cross_entropy_loss_label_smoothing):
       W    = sum_s w_{t_s}
       loss = (1-eps) * sum_s w_{t_s} (-lsm[s,t_s]) / W  +  (eps/C) * sum_s sum_c w_c (-lsm[s,c]) / W
   (all positions ignored: 0/0 = NaN, as torch). Writing a_{s,c} = (1-eps) w_{t_s} [c = t_s] + (eps/C) w_c,
   loss = sum_s sum_c a_{s,c} (lse_s - x[s,c]) / W, so d loss / d x[s,c] = (softmax[s,c] sum_c' a_{s,c'} -
   a_{s,c}) / W. Logits [N,C,d1..] are read as [N, C, inner]; the class weight is not differentiable (torch
   does not differentiate it either). */
static void nn__cross_entropy_backward(nn_node *n) {
    nn_tensor *x = n->saved[0], *tg = n->saved[1], *lse = n->saved[2], *w = n->saved[3], *gx;
    int64_t C = n->i[0], inner = n->i[1], ii = n->i[2], npos = lse->numel, s;
    double eps = n->a[0], W = n->a[1], wsum = n->a[2];
    double coef = (double)*(const float *)n->gout[0]->data / W;
    const float *xd = (const float *)x->data, *ld = (const float *)lse->data;
    const float *wd = w ? (const float *)w->data : NULL;
    float *o;
    if (!nn__needs_grad(n, 0)) return;
    gx = nn__new(NN_F32, NN_CPU, x->ndim, x->shape);
    o = (float *)gx->data;
    NN_OMP("omp parallel for if(x->numel > 32768)")
    for (s = 0; s < npos; s++) {
        int64_t b = s / inner, c0 = s % inner, t = nn__il_idx(tg, s), c;
        int64_t base = b * C * inner + c0;
        if (t == ii) {
            for (c = 0; c < C; c++) o[base + c * inner] = 0.0f;
            continue;
        }
        {
            double wt = wd ? wd[t] : 1.0;
            float suma = (float)(coef * ((1.0 - eps) * wt + eps / (double)C * wsum)), lse_s = ld[s];
            float ec = (float)(coef * eps / (double)C);
            /* coef (p_c sum_c' a_c' - a_c), a_c = (eps/C) w_c + (1-eps) w_t [c = t] */
            for (c = 0; c < C; c++) {
                float pc = expf(xd[base + c * inner] - lse_s);
                o[base + c * inner] = pc * suma - ec * (wd ? wd[c] : 1.0f);
            }
            o[base + t * inner] -= (float)(coef * (1.0 - eps) * wt);
        }
    }
    nn__accumulate(n, 0, gx);
}

nn_tensor *nn_cross_entropy(nn_tensor *logits, nn_tensor *target, nn_tensor *weight, int64_t ignore_index,
                            double label_smoothing) {
    const char *op = "nn_cross_entropy";
    int64_t N, C, inner = 1, npos, s, lshape[1];
    nn_tensor *lse, *out;
    nn_node *nd;
    double nll = 0, smooth = 0, W = 0, wsum = 0, eps = label_smoothing;
    int d;
    nn__il_check_f32(op, logits, "logits");
    nn__il_check_index(op, target, "target");
    if (logits->ndim == 0) nn_error("%s: logits is a scalar; need [C], [N,C] or [N,C,d1,...]", op);
    if (logits->ndim == 1) {
        /* [C] logits with a scalar (or one-element) target: one sample */
        N = 1; C = logits->shape[0];
        if (target->numel != 1 || target->ndim > 1)
            nn_error("%s: logits %s need a scalar target, got %s", op, nn__il_s(logits), nn__il_s(target));
    } else {
        N = logits->shape[0]; C = logits->shape[1];
        for (d = 2; d < logits->ndim; d++) inner *= logits->shape[d];
        /* target must be logits' shape without the class dim */
        if (target->ndim != logits->ndim - 1 || target->shape[0] != N)
            nn_error("%s: target %s does not match logits %s (expected [N,d1,...] for logits [N,C,d1,...])", op,
                     nn__il_s(target), nn__il_s(logits));
        for (d = 2; d < logits->ndim; d++)
            if (target->shape[d - 1] != logits->shape[d])
                nn_error("%s: target %s does not match logits %s (expected [N,d1,...] for logits [N,C,d1,...])",
                         op, nn__il_s(target), nn__il_s(logits));
    }
    if (C <= 0) nn_error("%s: logits %s have no classes", op, nn__il_s(logits));
    if (weight) {
        nn__il_check_f32(op, weight, "weight");
        if (weight->ndim != 1 || weight->shape[0] != C)
            nn_error("%s: weight %s must be [C] = [%lld] for logits %s", op, nn__il_s(weight), (long long)C,
                     nn__il_s(logits));
    }
    if (!(eps >= 0.0 && eps <= 1.0)) nn_error("%s: label_smoothing must be in [0,1], got %g", op, eps);
    npos = N * inner;
    for (s = 0; s < npos; s++) {
        int64_t t = nn__il_idx(target, s);
        if (t != ignore_index && (t < 0 || t >= C))
            nn_error("%s: target %lld out of range [0,%lld) at flat position %lld of target %s (logits %s, "
                     "ignore_index %lld)", op, (long long)t, (long long)C, (long long)s, nn__il_s(target),
                     nn__il_s(logits), (long long)ignore_index);
    }
    if (weight) {
        int64_t c;
        for (c = 0; c < C; c++) wsum += ((const float *)weight->data)[c];
    } else {
        wsum = (double)C;
    }
    lshape[0] = npos;
    lse = nn__new(NN_F32, NN_CPU, 1, lshape);
    {
        const float *xd = (const float *)logits->data, *wd = weight ? (const float *)weight->data : NULL;
        float *ld = (float *)lse->data;
        NN_OMP("omp parallel for reduction(+:nll, smooth, W) if(logits->numel > 32768)")
        for (s = 0; s < npos; s++) {
            int64_t b = s / inner, c0 = s % inner, base = b * C * inner + c0, t = nn__il_idx(target, s), c;
            const float *row = xd + base;
            float mx = -INFINITY;
            double se = 0, sx = 0, l;
            /* max, then sum of exp(x - max) (float exp, double sum) and, for smoothing, sum of w_c x_c */
            for (c = 0; c < C; c++) if (row[c * inner] > mx) mx = row[c * inner];
            if (mx == -INFINITY) mx = 0;  /* every logit -inf: lse = -inf rather than NaN */
            if (inner == 1) for (c = 0; c < C; c++) se += expf(row[c] - mx);
            else for (c = 0; c < C; c++) se += expf(row[c * inner] - mx);
            l = (double)mx + log(se);
            ld[s] = (float)l;
            if (t == ignore_index) continue;
            {
                double wt = wd ? wd[t] : 1.0;
                W += wt;
                nll += wt * (l - (double)row[t * inner]);
                if (eps > 0) {
                    /* sum_c w_c (l - x_c) = l sum_c w_c - sum_c w_c x_c */
                    if (wd) for (c = 0; c < C; c++) sx += (double)wd[c] * row[c * inner];
                    else for (c = 0; c < C; c++) sx += row[c * inner];
                    smooth += l * wsum - sx;
                }
            }
        }
    }
    out = nn__il_scalar(eps > 0 ? ((1.0 - eps) * nll / W + eps / (double)C * smooth / W) : nll / W);
    nd = nn__record("cross_entropy", nn__cross_entropy_backward, 1, &logits, 1, &out);
    if (nd) {
        nn__save(nd, logits);
        nn__save(nd, target);
        nn__save(nd, lse);
        if (weight) nn__save(nd, weight);
        else nd->saved[3] = NULL;
        nd->i[0] = C; nd->i[1] = inner; nd->i[2] = ignore_index;
        nd->a[0] = eps; nd->a[1] = W; nd->a[2] = wsum;
    }
    nn_tensor_free(lse);  /* the node keeps it when it saved it */
    return out;
}

/* softplus(-x) = log(1 + e^-x) = max(-x, 0) + log1p(e^-|x|): no overflow, full precision both ways */
static double nn__il_softplus_neg(double x) { return (x < 0 ? -x : 0.0) + log1p(exp(-fabs(x))); }
/* sigmoid(x) without overflow */
static double nn__il_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    { double e = exp(x); return e / (1.0 + e); }
}

/* bce_with_logits, F.binary_cross_entropy_with_logits(x, y, pos_weight=pw), mean:
   l = (1 - y) x + (1 + (pw - 1) y) softplus(-x)   (aten/src/ATen/native/Loss.cpp)
   dl/dx = (1 - y) - (1 + (pw - 1) y) sigmoid(-x);  dl/dy = -x + (pw - 1) softplus(-x);  dl/dpw = y softplus(-x).
   pos_weight broadcasts against the logits (typically [C] over the last dim), the result keeps x's shape. */
static void nn__bce_backward(nn_node *n) {
    nn_tensor *x = n->saved[0], *y = n->saved[1], *pw = n->saved[2], *g[3] = {NULL, NULL, NULL};
    double scale = (double)*(const float *)n->gout[0]->data / (double)(x->numel ? x->numel : 1);
    const float *xd = (const float *)x->data, *yd = (const float *)y->data;
    const float *pd = pw ? (const float *)pw->data : NULL;
    float *o[3] = {NULL, NULL, NULL};
    int64_t ps[NN_MAX_DIMS], i;
    int k, n_in = pw ? 3 : 2, same = pw ? nn__il_same_shape(pw, x->ndim, x->shape) : 1;
    if (pw) nn__il_bstrides(pw, x->ndim, ps);
    for (k = 0; k < n_in; k++)
        if (nn__needs_grad(n, k)) {
            g[k] = nn__new(NN_F32, NN_CPU, x->ndim, x->shape);
            o[k] = (float *)g[k]->data;
        }
    NN_OMP("omp parallel for if(x->numel > 32768)")
    for (i = 0; i < x->numel; i++) {
        double xv = xd[i], yv = yd[i], p = pd ? pd[same ? i : nn__il_boff(i, x->ndim, x->shape, ps)] : 1.0;
        double sp = nn__il_softplus_neg(xv), lw = 1.0 + (p - 1.0) * yv;
        if (o[0]) o[0][i] = (float)(scale * ((1.0 - yv) - lw * nn__il_sigmoid(-xv)));
        if (o[1]) o[1][i] = (float)(scale * (-xv + (p - 1.0) * sp));
        if (o[2]) o[2][i] = (float)(scale * yv * sp);
    }
    for (k = 0; k < n_in; k++) if (g[k]) nn__accumulate(n, k, g[k]);
}

nn_tensor *nn_bce_with_logits(nn_tensor *logits, nn_tensor *target, nn_tensor *pos_weight) {
    const char *op = "nn_bce_with_logits";
    nn_tensor *out, *ins[3];
    nn_node *nd;
    int64_t ps[NN_MAX_DIMS], i;
    double s = 0;
    int same = 1;
    nn__il_check_f32(op, logits, "logits");
    nn__il_check_f32(op, target, "target");
    nn__il_check_same_shape(op, logits, target, "logits", "target");
    if (pos_weight) {
        int64_t shape[NN_MAX_DIMS];
        int ndim;
        nn__il_check_f32(op, pos_weight, "pos_weight");
        ins[0] = logits; ins[1] = pos_weight;
        ndim = nn__il_bcast(op, 2, ins, shape);
        if (!nn__il_same_shape(logits, ndim, shape))
            nn_error("%s: pos_weight %s must broadcast to logits %s", op, nn__il_s(pos_weight), nn__il_s(logits));
        nn__il_bstrides(pos_weight, logits->ndim, ps);
        same = nn__il_same_shape(pos_weight, logits->ndim, logits->shape);
    }
    {
        const float *xd = (const float *)logits->data, *yd = (const float *)target->data;
        const float *pd = pos_weight ? (const float *)pos_weight->data : NULL;
        NN_OMP("omp parallel for reduction(+:s) if(logits->numel > 32768)")
        for (i = 0; i < logits->numel; i++) {
            double xv = xd[i], yv = yd[i];
            double p = pd ? pd[same ? i : nn__il_boff(i, logits->ndim, logits->shape, ps)] : 1.0;
            s += (1.0 - yv) * xv + (1.0 + (p - 1.0) * yv) * nn__il_softplus_neg(xv);
        }
    }
    out = nn__il_scalar(s / (double)logits->numel);
    ins[0] = logits; ins[1] = target; ins[2] = pos_weight;
    nd = nn__record("bce_with_logits", nn__bce_backward, pos_weight ? 3 : 2, ins, 1, &out);
    if (nd) {
        nn__save(nd, logits);
        nn__save(nd, target);
        if (pos_weight) nn__save(nd, pos_weight);
        else nd->saved[2] = NULL;
    }
    return out;
}

/* sigmoid_focal_loss, torchvision.ops.sigmoid_focal_loss (torchvision/ops/focal_loss.py):
       p = sigmoid(x), ce = bce_with_logits(x, y) = softplus(-x) + (1 - y) x,
       m = 1 - p_t = p (1 - y) + (1 - p) y,   loss = ce * m^gamma * a_t,
       a_t = alpha y + (1 - alpha)(1 - y) when alpha >= 0, else 1.
   m is formed from p and 1 - p = sigmoid(-x) each computed directly, so it keeps full relative precision
   when p is near 0 or 1. Derivatives: dce/dx = p - y, dce/dy = -x; dm/dx = p (1 - p)(1 - 2y),
   dm/dy = 1 - 2p; d m^gamma/dm = gamma m^(gamma-1), taken as 0 when gamma = 0 (as torch's pow backward);
   da_t/dy = 2 alpha - 1. */
static void nn__il_focal_terms(double x, double y, double alpha, double gamma, double *loss, double *dx,
                               double *dy) {
    double p = nn__il_sigmoid(x), q = nn__il_sigmoid(-x);
    double ce = nn__il_softplus_neg(x) + (1.0 - y) * x;
    double m = p * (1.0 - y) + q * y;
    double mod = gamma == 0 ? 1.0 : pow(m, gamma);
    double dmod = gamma == 0 ? 0.0 : gamma * pow(m, gamma - 1.0);
    double at = alpha >= 0 ? alpha * y + (1.0 - alpha) * (1.0 - y) : 1.0;
    double dat = alpha >= 0 ? 2.0 * alpha - 1.0 : 0.0;
    *loss = ce * mod * at;
    if (dx) *dx = at * ((p - y) * mod + ce * dmod * p * q * (1.0 - 2.0 * y));
    if (dy) *dy = at * (-x * mod + ce * dmod * (1.0 - 2.0 * p)) + ce * mod * dat;
}

static void nn__focal_backward(nn_node *n) {
    nn_tensor *x = n->saved[0], *y = n->saved[1], *g = n->gout[0], *gx = NULL, *gy = NULL;
    double alpha = n->a[0], gamma = n->a[1];
    int red = (int)n->i[0];
    double scale = red == NN_REDUCE_NONE ? 1.0 : (double)*(const float *)g->data;
    const float *xd = (const float *)x->data, *yd = (const float *)y->data, *gd = (const float *)g->data;
    float *ox, *oy;
    int64_t i;
    if (red == NN_REDUCE_MEAN) scale /= (double)(x->numel ? x->numel : 1);
    if (nn__needs_grad(n, 0)) gx = nn__new(NN_F32, NN_CPU, x->ndim, x->shape);
    if (nn__needs_grad(n, 1)) gy = nn__new(NN_F32, NN_CPU, x->ndim, x->shape);
    ox = gx ? (float *)gx->data : NULL;
    oy = gy ? (float *)gy->data : NULL;
    NN_OMP("omp parallel for if(x->numel > 32768)")
    for (i = 0; i < x->numel; i++) {
        double l, dx, dy, s = red == NN_REDUCE_NONE ? (double)gd[i] : scale;
        nn__il_focal_terms(xd[i], yd[i], alpha, gamma, &l, &dx, &dy);
        if (ox) ox[i] = (float)(s * dx);
        if (oy) oy[i] = (float)(s * dy);
    }
    if (gx) nn__accumulate(n, 0, gx);
    if (gy) nn__accumulate(n, 1, gy);
}

nn_tensor *nn_sigmoid_focal_loss(nn_tensor *logits, nn_tensor *target, double alpha, double gamma,
                                 nn_reduction reduction) {
    const char *op = "nn_sigmoid_focal_loss";
    nn_tensor *out, *ins[2];
    nn_node *nd;
    int64_t i;
    double s = 0;
    nn__il_check_f32(op, logits, "logits");
    nn__il_check_f32(op, target, "target");
    nn__il_check_same_shape(op, logits, target, "logits", "target");
    if (reduction != NN_REDUCE_MEAN && reduction != NN_REDUCE_SUM && reduction != NN_REDUCE_NONE)
        nn_error("%s: unknown reduction %d", op, (int)reduction);
    if (!(gamma >= 0)) nn_error("%s: gamma must be >= 0, got %g", op, gamma);
    {
        const float *xd = (const float *)logits->data, *yd = (const float *)target->data;
        if (reduction == NN_REDUCE_NONE) {
            float *o;
            out = nn__new(NN_F32, NN_CPU, logits->ndim, logits->shape);
            o = (float *)out->data;
            NN_OMP("omp parallel for if(logits->numel > 32768)")
            for (i = 0; i < logits->numel; i++) {
                double l;
                nn__il_focal_terms(xd[i], yd[i], alpha, gamma, &l, NULL, NULL);
                o[i] = (float)l;
            }
        } else {
            NN_OMP("omp parallel for reduction(+:s) if(logits->numel > 32768)")
            for (i = 0; i < logits->numel; i++) {
                double l;
                nn__il_focal_terms(xd[i], yd[i], alpha, gamma, &l, NULL, NULL);
                s += l;
            }
            out = nn__il_scalar(reduction == NN_REDUCE_MEAN ? s / (double)logits->numel : s);
        }
    }
    ins[0] = logits; ins[1] = target;
    nd = nn__record("sigmoid_focal_loss", nn__focal_backward, 2, ins, 1, &out);
    if (nd) {
        nn__save(nd, logits);
        nn__save(nd, target);
        nd->a[0] = alpha; nd->a[1] = gamma;
        nd->i[0] = (int64_t)reduction;
    }
    return out;
}
