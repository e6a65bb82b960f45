/* ================================================================================================ [ops:conv] */
/* Vision ops, NCHW f32 on the CPU, each with its backward:
     nn_conv2d / nn_conv2d_ex, nn_upsample_nearest2d, nn_avg_pool2d, nn_adaptive_avg_pool2d, nn_group_norm.
   Fragment of nn.h's implementation section (pasted after the core and after nn__sgemm). */

#ifndef NN_OMP
#ifdef _OPENMP
#define NN_OMP(x) _Pragma(x)
#else
#define NN_OMP(x)
#endif
#endif
#ifdef _OPENMP
#include <omp.h>
#endif
#include <string.h>
#include <math.h>

static int nn__conv_threads(void) {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

/* the checks every op of this section starts with: f32, on the CPU, `nd` dims (nd < 0: at least -nd) */
static void nn__vision_check(const char *op, const nn_tensor *t, int nd, const char *what) {
    char buf[96];
    if (!t) { nn_error("%s: %s is NULL", op, what); return; }
    nn__check_f32(op, t, what);
    if (t->device != NN_CPU)
        nn_error("%s: %s is on %s; only the CPU is implemented", op, what, nn_device_name(t->device));
    if ((nd >= 0 && t->ndim != nd) || (nd < 0 && t->ndim < -nd))
        nn_error("%s: %s must have %s%d dims, got %s", op, what, nd < 0 ? "at least " : "", nd < 0 ? -nd : nd,
                 nn_shape_str(t, buf, sizeof buf));
}

/* ------------------------------------------------------------------------------------------------ conv2d */
/* out[n, co, oh, ow] = b[co] + sum_{c, i, j} w[co, c, i, j] * x[n, g*Cg + c, oh*sh - ph + i*dh, ow*sw - pw + j*dw]
   with g = co / (Cout/groups) and zeros outside x (torch.nn.functional.conv2d). Lowered to GEMM per image:
   the columns matrix cols[(c*kh + i)*kw + j][oh*Wo + ow] holds the receptive fields of all Cin channels
   (group g's rows are the contiguous block g), and out_g [Cout/G, Ho*Wo] = W_g [Cout/G, Cg*kh*kw] @ cols_g.
   Backward: dW_g += dout_g @ cols_g^T (columns recomputed, never stored), dcols_g = W_g^T @ dout_g, then
   col2im adds dcols back onto the input positions they came from. Columns are built for one image and a
   band of output rows at a time (nn__conv_workspace), which bounds the workspace at NN_CONV_COLS_BYTES. */

typedef struct {
    int64_t N, C, H, W, Cout, kh, kw, Ho, Wo;
    int64_t sh, sw, ph, pw, dh, dw, groups;
} nn__conv_geom;

/* [lo, hi): the output columns ow whose input column ow*s + off lies in [0, W) */
static void nn__conv_range(int64_t off, int64_t s, int64_t W, int64_t Wo, int64_t *lo, int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = W - 1 - off < 0 ? 0 : (W - 1 - off) / s + 1;
    if (h > Wo) h = Wo;
    if (l > h) l = h;
    *lo = l; *hi = h;
}

/* columns of output rows [oh0, oh1) of one image x [C, H, W] into cols [C*kh*kw, (oh1-oh0)*Wo] */
static void nn__im2col(const float *x, const nn__conv_geom *g, int64_t oh0, int64_t oh1, float *cols) {
    const int64_t kk = g->kh * g->kw, rows = g->C * kk, nc = (oh1 - oh0) * g->Wo;
    int64_t r;
    NN_OMP("omp parallel for schedule(static) if(rows * nc > 32768)")
    for (r = 0; r < rows; r++) {
        const int64_t c = r / kk, i = (r / g->kw) % g->kh, j = r % g->kw;
        const float *xc = x + c * g->H * g->W;
        float *dst = cols + r * nc;
        const int64_t off = j * g->dw - g->pw;
        int64_t lo, hi, oh, ow;
        nn__conv_range(off, g->sw, g->W, g->Wo, &lo, &hi);
        for (oh = oh0; oh < oh1; oh++) {
            const int64_t ih = oh * g->sh - g->ph + i * g->dh;
            float *d = dst + (oh - oh0) * g->Wo;
            if (ih < 0 || ih >= g->H) { memset(d, 0, sizeof(float) * (size_t)g->Wo); continue; }
            for (ow = 0; ow < lo; ow++) d[ow] = 0.0f;
            if (g->sw == 1) {
                if (hi > lo) memcpy(d + lo, xc + ih * g->W + lo + off, sizeof(float) * (size_t)(hi - lo));
            } else {
                const float *src = xc + ih * g->W + off;
                for (ow = lo; ow < hi; ow++) d[ow] = src[ow * g->sw];
            }
            for (ow = hi; ow < g->Wo; ow++) d[ow] = 0.0f;
        }
    }
}

/* the adjoint of nn__im2col: dx [C, H, W] += the columns of rows [oh0, oh1) scattered back (one thread per
   channel: no races) */
static void nn__col2im(const float *cols, const nn__conv_geom *g, int64_t oh0, int64_t oh1, float *dx) {
    const int64_t nc = (oh1 - oh0) * g->Wo, work = g->C * g->kh * g->kw * nc;
    int64_t c;
    (void)work;   /* read by the OpenMP clause only */
    NN_OMP("omp parallel for schedule(static) if(work > 32768)")
    for (c = 0; c < g->C; c++) {
        float *xc = dx + c * g->H * g->W;
        int64_t i, j, oh, ow;
        for (i = 0; i < g->kh; i++)
            for (j = 0; j < g->kw; j++) {
                const float *src = cols + ((c * g->kh + i) * g->kw + j) * nc;
                const int64_t off = j * g->dw - g->pw;
                int64_t lo, hi;
                nn__conv_range(off, g->sw, g->W, g->Wo, &lo, &hi);
                for (oh = oh0; oh < oh1; oh++) {
                    const int64_t ih = oh * g->sh - g->ph + i * g->dh;
                    const float *sp = src + (oh - oh0) * g->Wo;
                    float *d;
                    if (ih < 0 || ih >= g->H) continue;
                    d = xc + ih * g->W + off;
                    if (g->sw == 1) for (ow = lo; ow < hi; ow++) d[ow] += sp[ow];
                    else for (ow = lo; ow < hi; ow++) d[ow * g->sw] += sp[ow];
                }
            }
    }
}

/* a 1x1 kernel with stride 1 and no padding reads the image itself as its columns */
static int nn__conv_is_pointwise(const nn__conv_geom *g) {
    return g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

/* The columns workspace: output rows are taken NN_CONV_COLS_BYTES' worth at a time (at least one row), so
   a large image never materialises all its columns (a 64-channel 3x3 conv on 1024x1024 would need 2.4 GB);
   the GEMMs stay wide (N = rows * Wo >= several thousand at the default). Returns the rows per chunk and
   the buffer (NULL for a pointwise conv, which needs none: one chunk of all rows). */
#ifndef NN_CONV_COLS_BYTES
#define NN_CONV_COLS_BYTES ((int64_t)16 << 20)
#endif
static int64_t nn__conv_workspace(const nn__conv_geom *g, nn_tensor **ws, float **cols) {
    const int64_t per_row = g->C * g->kh * g->kw * g->Wo;
    int64_t rows = NN_CONV_COLS_BYTES / (int64_t)sizeof(float) / per_row, n;
    *ws = NULL; *cols = NULL;
    if (nn__conv_is_pointwise(g)) return g->Ho;
    if (rows < 1) rows = 1;
    if (rows > g->Ho) rows = g->Ho;
    n = rows * per_row;
    *ws = nn__new(NN_F32, NN_CPU, 1, &n);
    *cols = (float *)(*ws)->data;
    return rows;
}

/* per group: C_g[M, N] = op(A_g) @ op(B_g) (+ beta C_g). Groups run side by side when there are at least as
   many as threads (nn__sgemm runs serially inside a parallel region), else one after another, each GEMM
   parallel inside. */
static void nn__conv_gemm_groups(int64_t G, int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                                 int64_t lda, int64_t strideA, const float *B, int64_t ldb, int64_t strideB,
                                 float beta, float *C, int64_t ldc, int64_t strideC) {
    int64_t gi;
    if (G > 1 && G >= nn__conv_threads()) {
        NN_OMP("omp parallel for schedule(static) if(M * N * K * G > 65536)")
        for (gi = 0; gi < G; gi++)
            nn__sgemm(ta, tb, M, N, K, 1.0f, A + gi * strideA, lda, B + gi * strideB, ldb, beta, C + gi * strideC, ldc);
    } else {
        for (gi = 0; gi < G; gi++)
            nn__sgemm(ta, tb, M, N, K, 1.0f, A + gi * strideA, lda, B + gi * strideB, ldb, beta, C + gi * strideC, ldc);
    }
}

static void nn__conv2d_backward(nn_node *n) {
    nn_tensor *gout = n->gout[0], *x = n->saved[0], *w = n->saved[1];
    nn__conv_geom g;
    int64_t Cg, Coutg, K, HoWo, img, rows;
    int need_x = nn__needs_grad(n, 0), need_w = nn__needs_grad(n, 1), need_b = n->n_in > 2 && nn__needs_grad(n, 2);
    nn_tensor *dx = NULL, *dw = NULL, *ws = NULL;
    const float *go, *xd, *wd;
    float *cols;
    if (!gout) return;
    g.N = x->shape[0]; g.C = x->shape[1]; g.H = x->shape[2]; g.W = x->shape[3];
    g.Cout = w->shape[0]; g.kh = w->shape[2]; g.kw = w->shape[3];
    g.Ho = gout->shape[2]; g.Wo = gout->shape[3];
    g.sh = n->i[0]; g.sw = n->i[1]; g.ph = n->i[2]; g.pw = n->i[3]; g.dh = n->i[4]; g.dw = n->i[5]; g.groups = n->i[6];
    Cg = g.C / g.groups; Coutg = g.Cout / g.groups; K = Cg * g.kh * g.kw; HoWo = g.Ho * g.Wo;
    go = (const float *)gout->data; xd = (const float *)x->data; wd = (const float *)w->data;

    if (need_b) {
        int64_t co;
        nn_tensor *db = nn__new(NN_F32, NN_CPU, 1, &g.Cout);
        float *dbd = (float *)db->data;
        NN_OMP("omp parallel for schedule(static) if(g.N * g.Cout * HoWo > 32768)")
        for (co = 0; co < g.Cout; co++) {
            double s = 0;
            int64_t b, p;
            for (b = 0; b < g.N; b++) {
                const float *gp = go + (b * g.Cout + co) * HoWo;
                float part = 0;
                for (p = 0; p < HoWo; p++) part += gp[p];
                s += part;
            }
            dbd[co] = (float)s;
        }
        nn__accumulate(n, 2, db);
    }
    if (!need_x && !need_w) return;
    if (need_x) { dx = nn__new(NN_F32, NN_CPU, x->ndim, x->shape); memset(dx->data, 0, sizeof(float) * (size_t)x->numel); }
    if (need_w) dw = nn__new(NN_F32, NN_CPU, w->ndim, w->shape);
    rows = nn__conv_workspace(&g, &ws, &cols);
    for (img = 0; img < g.N; img++) {
        const float *gimg = go + img * g.Cout * HoWo;
        const float *ximg = xd + img * g.C * g.H * g.W;
        float *dimg = dx ? (float *)dx->data + img * g.C * g.H * g.W : NULL;
        int64_t oh0;
        for (oh0 = 0; oh0 < g.Ho; oh0 += rows) {
            const int64_t oh1 = oh0 + rows < g.Ho ? oh0 + rows : g.Ho, nc = (oh1 - oh0) * g.Wo;
            const float *gch = gimg + oh0 * g.Wo;   /* dout rows [oh0, oh1) of every channel, ld HoWo */
            if (need_w) {
                const float *c = cols ? cols : ximg;
                if (cols) nn__im2col(ximg, &g, oh0, oh1, cols);
                /* dW_g [Coutg, K] (+)= dout_g [Coutg, nc] @ cols_g^T */
                nn__conv_gemm_groups(g.groups, 0, 1, Coutg, K, nc, gch, HoWo, Coutg * HoWo, c, nc, K * nc,
                                     img == 0 && oh0 == 0 ? 0.0f : 1.0f, (float *)dw->data, K, Coutg * K);
            }
            if (need_x) {
                /* dcols_g [K, nc] = W_g^T @ dout_g; a pointwise conv writes straight into dx */
                nn__conv_gemm_groups(g.groups, 1, 0, K, nc, Coutg, wd, K, Coutg * K, gch, HoWo, Coutg * HoWo, 0.0f,
                                     cols ? cols : dimg, nc, K * nc);
                if (cols) nn__col2im(cols, &g, oh0, oh1, dimg);
            }
        }
    }
    if (need_w && g.N == 0) memset(dw->data, 0, sizeof(float) * (size_t)w->numel);
    if (ws) nn_tensor_free(ws);
    if (need_x) nn__accumulate(n, 0, dx);
    if (need_w) nn__accumulate(n, 1, dw);
}

static nn_tensor *nn__conv2d_impl(const char *op, nn_tensor *x, nn_tensor *w, nn_tensor *b, const int stride[2],
                                  const int padding[2], const int dilation[2], int groups) {
    char bx[96], bw[96], bb[96];
    nn__conv_geom g;
    int64_t oshape[4], Cg, Coutg, K, HoWo, img, rows;
    nn_tensor *out, *ws = NULL, *ins[3];
    float *cols, *od;
    const float *xd, *wd;
    nn_node *node;
    if (nn_autocast_dtype() != NN_F32) {   /* autocast (nn.h): low-precision operands and result, f32 accumulation */
        nn_dtype dt = nn__autocast_enter();
        return nn__autocast_leave(nn__conv2d_impl(op, nn__autocast_arg(x, dt), nn__autocast_arg(w, dt), nn__autocast_arg(b, dt),
                                                  stride, padding, dilation, groups), dt);
    }
    nn__vision_check(op, x, 4, "input");
    nn__vision_check(op, w, 4, "weight");
    nn__check_same_device(op, x, w);
    if (b) { nn__vision_check(op, b, 1, "bias"); nn__check_same_device(op, x, b); }
    nn_shape_str(x, bx, sizeof bx); nn_shape_str(w, bw, sizeof bw);
    if (!stride || !padding || !dilation) { nn_error("%s: stride, padding and dilation must not be NULL", op); return NULL; }
    if (stride[0] < 1 || stride[1] < 1 || padding[0] < 0 || padding[1] < 0 || dilation[0] < 1 || dilation[1] < 1) {
        nn_error("%s: need stride >= 1, padding >= 0, dilation >= 1; got stride (%d,%d) padding (%d,%d) dilation "
                 "(%d,%d) for input %s, weight %s", op, stride[0], stride[1], padding[0], padding[1], dilation[0],
                 dilation[1], bx, bw);
        return NULL;
    }
    if (groups < 1) { nn_error("%s: groups must be >= 1, got %d (input %s, weight %s)", op, groups, bx, bw); return NULL; }
    g.N = x->shape[0]; g.C = x->shape[1]; g.H = x->shape[2]; g.W = x->shape[3];
    g.Cout = w->shape[0]; g.kh = w->shape[2]; g.kw = w->shape[3];
    g.sh = stride[0]; g.sw = stride[1]; g.ph = padding[0]; g.pw = padding[1];
    g.dh = dilation[0]; g.dw = dilation[1]; g.groups = groups;
    if (g.C < 1 || g.H < 1 || g.W < 1 || g.Cout < 1 || w->shape[1] < 1 || g.kh < 1 || g.kw < 1) {
        nn_error("%s: empty channel, spatial or kernel dims: input %s, weight %s", op, bx, bw); return NULL;
    }
    if (g.C % groups != 0 || g.Cout % groups != 0) {
        nn_error("%s: input channels %lld and output channels %lld must both divide by groups %d: input %s, weight %s",
                 op, (long long)g.C, (long long)g.Cout, groups, bx, bw);
        return NULL;
    }
    if (w->shape[1] * groups != g.C) {
        nn_error("%s: weight must be [Cout, Cin/groups, kh, kw] = [%lld, %lld, kh, kw]: input %s, weight %s, groups %d",
                 op, (long long)g.Cout, (long long)(g.C / groups), bx, bw, groups);
        return NULL;
    }
    if (b && b->shape[0] != g.Cout) {
        nn_error("%s: bias must be [%lld] (out channels of weight %s), got %s", op, (long long)g.Cout, bw,
                 nn_shape_str(b, bb, sizeof bb));
        return NULL;
    }
    {
        int64_t eh = g.dh * (g.kh - 1) + 1, ew = g.dw * (g.kw - 1) + 1;
        if (g.H + 2 * g.ph < eh || g.W + 2 * g.pw < ew) {
            nn_error("%s: kernel %lldx%lld (dilated %lldx%lld) is larger than the padded input %lldx%lld: input %s, "
                     "weight %s, padding (%d,%d), dilation (%d,%d)", op, (long long)g.kh, (long long)g.kw,
                     (long long)eh, (long long)ew, (long long)(g.H + 2 * g.ph), (long long)(g.W + 2 * g.pw), bx, bw,
                     padding[0], padding[1], dilation[0], dilation[1]);
            return NULL;
        }
        g.Ho = (g.H + 2 * g.ph - eh) / g.sh + 1;
        g.Wo = (g.W + 2 * g.pw - ew) / g.sw + 1;
    }
    Cg = g.C / groups; Coutg = g.Cout / groups; K = Cg * g.kh * g.kw; HoWo = g.Ho * g.Wo;
    oshape[0] = g.N; oshape[1] = g.Cout; oshape[2] = g.Ho; oshape[3] = g.Wo;
    out = nn__new(NN_F32, x->device, 4, oshape);
    od = (float *)out->data; xd = (const float *)x->data; wd = (const float *)w->data;
    rows = nn__conv_workspace(&g, &ws, &cols);
    for (img = 0; img < g.N; img++) {
        const float *ximg = xd + img * g.C * g.H * g.W;
        int64_t oh0;
        for (oh0 = 0; oh0 < g.Ho; oh0 += rows) {
            const int64_t oh1 = oh0 + rows < g.Ho ? oh0 + rows : g.Ho, nc = (oh1 - oh0) * g.Wo;
            if (cols) nn__im2col(ximg, &g, oh0, oh1, cols);
            /* out_g rows [oh0, oh1) (ld HoWo) = W_g @ cols_g */
            nn__conv_gemm_groups(groups, 0, 0, Coutg, nc, K, wd, K, Coutg * K, cols ? cols : ximg, nc, K * nc, 0.0f,
                                 od + img * g.Cout * HoWo + oh0 * g.Wo, HoWo, Coutg * HoWo);
        }
    }
    if (ws) nn_tensor_free(ws);
    if (b) {
        const float *bd = (const float *)b->data;
        int64_t pl;
        NN_OMP("omp parallel for schedule(static) if(g.N * g.Cout * HoWo > 32768)")
        for (pl = 0; pl < g.N * g.Cout; pl++) {
            float *o = od + pl * HoWo, bv = bd[pl % g.Cout];
            int64_t p;
            for (p = 0; p < HoWo; p++) o[p] += bv;
        }
    }
    ins[0] = x; ins[1] = w; ins[2] = b;
    node = nn__record("conv2d", nn__conv2d_backward, b ? 3 : 2, ins, 1, &out);
    if (node) {
        nn__save(node, x);
        nn__save(node, w);
        node->i[0] = g.sh; node->i[1] = g.sw; node->i[2] = g.ph; node->i[3] = g.pw;
        node->i[4] = g.dh; node->i[5] = g.dw; node->i[6] = groups;
    }
    return out;
}

nn_tensor *nn_conv2d_ex(nn_tensor *x, nn_tensor *w, nn_tensor *b, const int stride[2], const int padding[2],
                        const int dilation[2], int groups) {
    return nn__conv2d_impl("nn_conv2d_ex", x, w, b, stride, padding, dilation, groups);
}

nn_tensor *nn_conv2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding, int dilation, int groups) {
    int s[2], p[2], d[2];
    s[0] = s[1] = stride; p[0] = p[1] = padding; d[0] = d[1] = dilation;
    return nn__conv2d_impl("nn_conv2d", x, w, b, s, p, d, groups);
}

/* ---------------------------------------------------------------------------------------- upsample nearest */
/* PyTorch's 'nearest' source index (aten/src/ATen/native/UpSample.h, nearest_idx): the identity when the
   sizes match, dst >> 1 for exact doubling, otherwise min(floor(dst * scale), in - 1) with the scale
   in/out computed in float, as there, so that rounding agrees on every ratio. */
static int64_t nn__nearest_src(int64_t dst, int64_t in, int64_t out) {
    float scale;
    int64_t s;
    if (out == in) return dst;
    if (out == 2 * in) return dst >> 1;
    scale = (float)in / (float)out;
    s = (int64_t)floorf((float)dst * scale);
    return s < in - 1 ? s : in - 1;
}

static nn_tensor *nn__nearest_table(int64_t in, int64_t out) {
    nn_tensor *t = nn__new(NN_I64, NN_CPU, 1, &out);
    int64_t *p = (int64_t *)t->data, i;
    for (i = 0; i < out; i++) p[i] = nn__nearest_src(i, in, out);
    return t;
}

static void nn__upsample_nearest2d_backward(nn_node *n) {
    nn_tensor *gout = n->gout[0], *dx, *th, *tw;
    int64_t H = n->in[0].shape[2], W = n->in[0].shape[3], Ho, Wo, planes, pl;
    const int64_t *ih, *iw;
    if (!gout || !nn__needs_grad(n, 0)) return;
    Ho = gout->shape[2]; Wo = gout->shape[3];
    planes = gout->shape[0] * gout->shape[1];
    dx = nn__new(NN_F32, NN_CPU, 4, n->in[0].shape);
    th = nn__nearest_table(H, Ho); tw = nn__nearest_table(W, Wo);
    ih = (const int64_t *)th->data; iw = (const int64_t *)tw->data;
    NN_OMP("omp parallel for schedule(static) if(planes * (H * W + Ho * Wo) > 32768)")
    for (pl = 0; pl < planes; pl++) {
        const float *g = (const float *)gout->data + pl * Ho * Wo;
        float *d = (float *)dx->data + pl * H * W;
        int64_t oh, ow;
        memset(d, 0, sizeof(float) * (size_t)(H * W));
        for (oh = 0; oh < Ho; oh++) {
            float *drow = d + ih[oh] * W;
            const float *grow = g + oh * Wo;
            for (ow = 0; ow < Wo; ow++) drow[iw[ow]] += grow[ow];
        }
    }
    nn_tensor_free(th); nn_tensor_free(tw);
    nn__accumulate(n, 0, dx);
}

nn_tensor *nn_upsample_nearest2d(nn_tensor *x, int64_t out_h, int64_t out_w) {
    const char *op = "nn_upsample_nearest2d";
    char bx[96];
    int64_t shape[4], H, W, planes, pl;
    nn_tensor *out, *th, *tw;
    const int64_t *ih, *iw;
    nn_node *node;
    nn__vision_check(op, x, 4, "input");
    H = x->shape[2]; W = x->shape[3];
    if (out_h < 1 || out_w < 1 || H < 1 || W < 1) {
        nn_error("%s: input %s to %lldx%lld: sizes must be >= 1", op, nn_shape_str(x, bx, sizeof bx),
                 (long long)out_h, (long long)out_w);
        return NULL;
    }
    shape[0] = x->shape[0]; shape[1] = x->shape[1]; shape[2] = out_h; shape[3] = out_w;
    out = nn__new(NN_F32, x->device, 4, shape);
    planes = shape[0] * shape[1];
    th = nn__nearest_table(H, out_h); tw = nn__nearest_table(W, out_w);
    ih = (const int64_t *)th->data; iw = (const int64_t *)tw->data;
    NN_OMP("omp parallel for schedule(static) if(planes * out_h * out_w > 32768)")
    for (pl = 0; pl < planes; pl++) {
        const float *s = (const float *)x->data + pl * H * W;
        float *d = (float *)out->data + pl * out_h * out_w;
        int64_t oh, ow;
        for (oh = 0; oh < out_h; oh++) {
            const float *srow = s + ih[oh] * W;
            float *drow = d + oh * out_w;
            /* upsampling repeats source rows: copy the previous output row instead of gathering again */
            if (oh > 0 && ih[oh] == ih[oh - 1]) memcpy(drow, drow - out_w, sizeof(float) * (size_t)out_w);
            else for (ow = 0; ow < out_w; ow++) drow[ow] = srow[iw[ow]];
        }
    }
    nn_tensor_free(th); nn_tensor_free(tw);
    node = nn__record("upsample_nearest2d", nn__upsample_nearest2d_backward, 1, &x, 1, &out);
    (void)node;
    return out;
}

/* ------------------------------------------------------------------------------------------- avg pooling */
/* F.avg_pool2d(x, k, stride, padding) with count_include_pad=True, ceil_mode=False: every window divides by
   k*k, padded positions included (with ceil_mode off no window reaches past the padding). */

static void nn__avg_pool2d_backward(nn_node *n) {
    nn_tensor *gout = n->gout[0], *dx;
    int64_t H = n->in[0].shape[2], W = n->in[0].shape[3], Ho, Wo, planes, pl;
    int64_t k = n->i[0], s = n->i[1], p = n->i[2];
    float inv = 1.0f / (float)(k * k);
    if (!gout || !nn__needs_grad(n, 0)) return;
    Ho = gout->shape[2]; Wo = gout->shape[3];
    planes = gout->shape[0] * gout->shape[1];
    dx = nn__new(NN_F32, NN_CPU, 4, n->in[0].shape);
    NN_OMP("omp parallel for schedule(static) if(planes * (H * W + Ho * Wo) * k > 32768)")
    for (pl = 0; pl < planes; pl++) {
        const float *g = (const float *)gout->data + pl * Ho * Wo;
        float *d = (float *)dx->data + pl * H * W;
        int64_t oh, ow, ih, iw;
        memset(d, 0, sizeof(float) * (size_t)(H * W));
        for (oh = 0; oh < Ho; oh++) {
            int64_t h0 = oh * s - p, h1 = h0 + k;
            if (h0 < 0) h0 = 0;
            if (h1 > H) h1 = H;
            for (ow = 0; ow < Wo; ow++) {
                int64_t w0 = ow * s - p, w1 = w0 + k;
                float v = g[oh * Wo + ow] * inv;
                if (w0 < 0) w0 = 0;
                if (w1 > W) w1 = W;
                for (ih = h0; ih < h1; ih++)
                    for (iw = w0; iw < w1; iw++) d[ih * W + iw] += v;
            }
        }
    }
    nn__accumulate(n, 0, dx);
}

nn_tensor *nn_avg_pool2d(nn_tensor *x, int kernel, int stride, int padding) {
    const char *op = "nn_avg_pool2d";
    char bx[96];
    int64_t shape[4], H, W, Ho, Wo, planes, pl;
    float inv;
    nn_tensor *out;
    nn_node *node;
    nn__vision_check(op, x, 4, "input");
    nn_shape_str(x, bx, sizeof bx);
    if (stride == 0) stride = kernel;   /* torch's default stride=None means the kernel size */
    if (kernel < 1 || stride < 1 || padding < 0 || 2 * padding > kernel) {
        nn_error("%s: need kernel >= 1, stride >= 1 (0: = kernel), 0 <= padding <= kernel/2; got kernel %d, "
                 "stride %d, padding %d for input %s", op, kernel, stride, padding, bx);
        return NULL;
    }
    H = x->shape[2]; W = x->shape[3];
    if (H + 2 * padding < kernel || W + 2 * padding < kernel) {
        nn_error("%s: kernel %d is larger than the padded input %lldx%lld (input %s, padding %d)", op, kernel,
                 (long long)(H + 2 * padding), (long long)(W + 2 * padding), bx, padding);
        return NULL;
    }
    Ho = (H + 2 * padding - kernel) / stride + 1;
    Wo = (W + 2 * padding - kernel) / stride + 1;
    shape[0] = x->shape[0]; shape[1] = x->shape[1]; shape[2] = Ho; shape[3] = Wo;
    out = nn__new(NN_F32, x->device, 4, shape);
    planes = shape[0] * shape[1];
    inv = 1.0f / (float)(kernel * kernel);
    NN_OMP("omp parallel for schedule(static) if(planes * Ho * Wo * kernel * kernel > 32768)")
    for (pl = 0; pl < planes; pl++) {
        const float *src = (const float *)x->data + pl * H * W;
        float *d = (float *)out->data + pl * Ho * Wo;
        int64_t oh, ow, ih, iw;
        for (oh = 0; oh < Ho; oh++) {
            int64_t h0 = oh * stride - padding, h1 = h0 + kernel;
            if (h0 < 0) h0 = 0;
            if (h1 > H) h1 = H;
            for (ow = 0; ow < Wo; ow++) {
                int64_t w0 = ow * stride - padding, w1 = w0 + kernel;
                float acc = 0;
                if (w0 < 0) w0 = 0;
                if (w1 > W) w1 = W;
                for (ih = h0; ih < h1; ih++)
                    for (iw = w0; iw < w1; iw++) acc += src[ih * W + iw];
                d[oh * Wo + ow] = acc * inv;
            }
        }
    }
    node = nn__record("avg_pool2d", nn__avg_pool2d_backward, 1, &x, 1, &out);
    if (node) { node->i[0] = kernel; node->i[1] = stride; node->i[2] = padding; }
    return out;
}

/* --------------------------------------------------------------------------------- adaptive avg pooling */
/* F.adaptive_avg_pool2d: output cell i averages input rows [floor(i*in/out), ceil((i+1)*in/out))
   (aten/src/ATen/native/AdaptiveAveragePooling.cpp, start_index / end_index), so neighbouring bins may
   overlap when in is not a multiple of out (73 -> 32: bins of 3 and 4 rows). */
static int64_t nn__adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
static int64_t nn__adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

static void nn__adaptive_avg_pool2d_backward(nn_node *n) {
    nn_tensor *gout = n->gout[0], *dx;
    int64_t H = n->in[0].shape[2], W = n->in[0].shape[3], Ho, Wo, planes, pl;
    if (!gout || !nn__needs_grad(n, 0)) return;
    Ho = gout->shape[2]; Wo = gout->shape[3];
    planes = gout->shape[0] * gout->shape[1];
    dx = nn__new(NN_F32, NN_CPU, 4, n->in[0].shape);
    NN_OMP("omp parallel for schedule(static) if(planes * (H * W + Ho * Wo) > 32768)")
    for (pl = 0; pl < planes; pl++) {
        const float *g = (const float *)gout->data + pl * Ho * Wo;
        float *d = (float *)dx->data + pl * H * W;
        int64_t oh, ow, ih, iw;
        memset(d, 0, sizeof(float) * (size_t)(H * W));
        for (oh = 0; oh < Ho; oh++) {
            int64_t h0 = nn__adaptive_start(oh, H, Ho), h1 = nn__adaptive_end(oh, H, Ho);
            for (ow = 0; ow < Wo; ow++) {
                int64_t w0 = nn__adaptive_start(ow, W, Wo), w1 = nn__adaptive_end(ow, W, Wo);
                float v = g[oh * Wo + ow] / (float)((h1 - h0) * (w1 - w0));
                for (ih = h0; ih < h1; ih++)
                    for (iw = w0; iw < w1; iw++) d[ih * W + iw] += v;
            }
        }
    }
    nn__accumulate(n, 0, dx);
}

nn_tensor *nn_adaptive_avg_pool2d(nn_tensor *x, int64_t out_h, int64_t out_w) {
    const char *op = "nn_adaptive_avg_pool2d";
    char bx[96];
    int64_t shape[4], H, W, planes, pl;
    nn_tensor *out;
    nn_node *node;
    nn__vision_check(op, x, 4, "input");
    H = x->shape[2]; W = x->shape[3];
    if (out_h < 1 || out_w < 1 || H < 1 || W < 1) {
        nn_error("%s: input %s to %lldx%lld: sizes must be >= 1", op, nn_shape_str(x, bx, sizeof bx),
                 (long long)out_h, (long long)out_w);
        return NULL;
    }
    shape[0] = x->shape[0]; shape[1] = x->shape[1]; shape[2] = out_h; shape[3] = out_w;
    out = nn__new(NN_F32, x->device, 4, shape);
    planes = shape[0] * shape[1];
    NN_OMP("omp parallel for schedule(static) if(planes * (H * W + out_h * out_w) > 32768)")
    for (pl = 0; pl < planes; pl++) {
        const float *src = (const float *)x->data + pl * H * W;
        float *d = (float *)out->data + pl * out_h * out_w;
        int64_t oh, ow, ih, iw;
        for (oh = 0; oh < out_h; oh++) {
            int64_t h0 = nn__adaptive_start(oh, H, out_h), h1 = nn__adaptive_end(oh, H, out_h);
            for (ow = 0; ow < out_w; ow++) {
                int64_t w0 = nn__adaptive_start(ow, W, out_w), w1 = nn__adaptive_end(ow, W, out_w);
                float acc = 0;
                for (ih = h0; ih < h1; ih++)
                    for (iw = w0; iw < w1; iw++) acc += src[ih * W + iw];
                d[oh * out_w + ow] = acc / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
    node = nn__record("adaptive_avg_pool2d", nn__adaptive_avg_pool2d_backward, 1, &x, 1, &out);
    (void)node;
    return out;
}

/* ------------------------------------------------------------------------------------------ group norm */
/* F.group_norm: x [N, C, *] split into `groups` groups of C/groups channels; each (n, group) is normalised
   by its own mean and biased variance, then y = xhat * w[c] + b[c]. A group's elements are contiguous
   (Cg * HW floats). Statistics in one pass over data shifted by the group's first element K (shifting keeps
   sum((x-K)^2)/n - mean(x-K)^2 free of cancellation when |mean| >> std), blocks summed in f32 lanes and
   combined in double (nn__gn_sums). Saved for backward: x, mean and rstd per (n, group).
   Backward, with xhat = (x - mean) * rstd, dxhat = dy * w[c] and m = Cg*HW:
     dx = rstd * (dxhat - sum(dxhat)/m - xhat * sum(dxhat * xhat)/m)       (sums over the group)
     dw[c] = sum_{n, hw} dy * xhat,  db[c] = sum_{n, hw} dy
   computed from the per-(n, c) sums S1 = sum dy and S2 = sum dy * xhat, one read pass and one write pass. */

/* Sums for the statistics: f32 over blocks of NN__GN_BLOCK elements, vectorised through `omp simd
   reduction` (which licenses the reassociation; each SIMD lane then adds at most BLOCK/lanes terms, a
   relative error ~2^-24 * 64 at 16 lanes), each block's total then added into double. The data is centred
   first so the squares do not cancel. Without OpenMP the pragma is dropped and the loop is plain f32. */
#define NN__GN_BLOCK 1024

/* sum(p[i] - K) and sum((p[i] - K)^2) */
static void nn__gn_sums(const float *p, int64_t n, float K, double *s1, double *s2) {
    double d1 = 0, d2 = 0;
    int64_t i0, i;
    for (i0 = 0; i0 < n; i0 += NN__GN_BLOCK) {
        const int64_t end = n - i0 < NN__GN_BLOCK ? n : i0 + NN__GN_BLOCK;
        float a = 0, b = 0;
        NN_OMP("omp simd reduction(+:a,b)")
        for (i = i0; i < end; i++) { float v = p[i] - K; a += v; b += v * v; }
        d1 += a; d2 += b;
    }
    *s1 = d1; *s2 = d2;
}

/* sum(g[i]) and sum(g[i] * (x[i] - M)) */
static void nn__gn_dot(const float *g, const float *x, int64_t n, float M, double *s1, double *s2) {
    double d1 = 0, d2 = 0;
    int64_t i0, i;
    for (i0 = 0; i0 < n; i0 += NN__GN_BLOCK) {
        const int64_t end = n - i0 < NN__GN_BLOCK ? n : i0 + NN__GN_BLOCK;
        float a = 0, b = 0;
        NN_OMP("omp simd reduction(+:a,b)")
        for (i = i0; i < end; i++) { a += g[i]; b += g[i] * (x[i] - M); }
        d1 += a; d2 += b;
    }
    *s1 = d1; *s2 = d2;
}

static void nn__group_norm_backward(nn_node *n) {
    nn_tensor *gout = n->gout[0], *x = n->saved[0], *mt = n->saved[1], *rt = n->saved[2];
    nn_tensor *wt = n->n_saved > 3 ? n->saved[3] : NULL;
    const int64_t N = x->shape[0], C = x->shape[1], G = n->i[0], Cg = C / G;
    const int64_t NC = N * C, HW = NC > 0 ? x->numel / NC : 0;
    const int b_at = n->i[1] ? 1 : 2;   /* input index of the bias (1 when there is no weight) */
    int need_x = nn__needs_grad(n, 0), need_w = !n->i[1] && n->n_in > 1 && nn__needs_grad(n, 1);
    int need_b = n->n_in > b_at && nn__needs_grad(n, b_at);
    int64_t ng, c, len;
    nn_tensor *st, *dx = NULL;
    double *S1, *S2;
    const float *xd = (const float *)x->data, *gd, *mean = (const float *)mt->data, *rstd = (const float *)rt->data;
    const float *wd = wt ? (const float *)wt->data : NULL;
    if (!gout) return;
    gd = (const float *)gout->data;
    /* per-(n, c) sums in double: S1 = sum dy, S2 = sum dy * xhat (an f32 tensor of 4*NC floats holds 2*NC
       doubles; pool blocks are aligned for any type) */
    len = 4 * (NC > 0 ? NC : 1);
    st = nn__new(NN_F32, NN_CPU, 1, &len);
    S1 = (double *)st->data; S2 = S1 + (NC > 0 ? NC : 1);
    if (need_x) dx = nn__new(NN_F32, NN_CPU, x->ndim, x->shape);
    NN_OMP("omp parallel for schedule(static) if(x->numel > 32768)")
    for (ng = 0; ng < N * G; ng++) {
        const int64_t bi = ng / G, gi = ng % G, base = (bi * C + gi * Cg) * HW;
        const double mu = mean[ng], rs = rstd[ng], m = (double)(Cg * HW);
        double A = 0, B = 0;   /* sum(dxhat), sum(dxhat * xhat) over the group */
        int64_t cc, i;
        for (cc = 0; cc < Cg; cc++) {
            const int64_t ch = gi * Cg + cc;
            const double wc = wd ? wd[ch] : 1.0;
            double s1, s2;
            nn__gn_dot(gd + base + cc * HW, xd + base + cc * HW, HW, (float)mu, &s1, &s2);
            S1[bi * C + ch] = s1;
            S2[bi * C + ch] = s2 * rs;
            A += wc * s1;
            B += wc * S2[bi * C + ch];
        }
        if (dx) {
            /* dx = rstd*w[c]*dy - rstd*A/m - (x - mean)*rstd^2*B/m  =  a_c*dy + f1*(x - mean) + f0 */
            const float f1 = (float)(-rs * rs * B / m), f0 = (float)(-rs * A / m), muf = mean[ng];
            for (cc = 0; cc < Cg; cc++) {
                const int64_t ch = gi * Cg + cc;
                const float ac = (float)(rs * (wd ? wd[ch] : 1.0));
                const float *gp = gd + base + cc * HW, *xp = xd + base + cc * HW;
                float *dp = (float *)dx->data + base + cc * HW;
                for (i = 0; i < HW; i++) dp[i] = ac * gp[i] + f1 * (xp[i] - muf) + f0;
            }
        }
    }
    if (dx) nn__accumulate(n, 0, dx);
    if (need_w || need_b) {
        nn_tensor *dw = need_w ? nn__new(NN_F32, NN_CPU, 1, &C) : NULL;
        nn_tensor *db = need_b ? nn__new(NN_F32, NN_CPU, 1, &C) : NULL;
        float *dwd = dw ? (float *)dw->data : NULL, *dbd = db ? (float *)db->data : NULL;
        NN_OMP("omp parallel for schedule(static) if(N * C > 4096)")
        for (c = 0; c < C; c++) {
            double sw = 0, sb = 0;
            int64_t bi;
            for (bi = 0; bi < N; bi++) { sb += S1[bi * C + c]; sw += S2[bi * C + c]; }
            if (dwd) dwd[c] = (float)sw;
            if (dbd) dbd[c] = (float)sb;
        }
        if (dw) nn__accumulate(n, 1, dw);
        if (db) nn__accumulate(n, b_at, db);
    }
    nn_tensor_free(st);
}

nn_tensor *nn_group_norm(nn_tensor *x, int groups, nn_tensor *w, nn_tensor *b, double eps) {
    const char *op = "nn_group_norm";
    char bx[96], bw[96];
    int64_t N, C, HW, Cg, ng, ngs;
    nn_tensor *out, *mt, *rt, *ins[3];
    nn_node *node;
    nn__vision_check(op, x, -2, "input");
    nn_shape_str(x, bx, sizeof bx);
    N = x->shape[0]; C = x->shape[1];
    if (groups < 1 || C % groups != 0) {
        nn_error("%s: channels %lld of input %s do not divide into %d groups", op, (long long)C, bx, groups);
        return NULL;
    }
    if (w) {
        nn__vision_check(op, w, 1, "weight");
        if (w->shape[0] != C) {
            nn_error("%s: weight must be [%lld] for input %s, got %s", op, (long long)C, bx, nn_shape_str(w, bw, sizeof bw));
            return NULL;
        }
    }
    if (b) {
        nn__vision_check(op, b, 1, "bias");
        if (b->shape[0] != C) {
            nn_error("%s: bias must be [%lld] for input %s, got %s", op, (long long)C, bx, nn_shape_str(b, bw, sizeof bw));
            return NULL;
        }
    }
    if (!(eps >= 0)) { nn_error("%s: eps must be >= 0, got %g (input %s)", op, eps, bx); return NULL; }
    HW = N * C > 0 ? x->numel / (N * C) : 0;
    Cg = C / groups;
    ngs = N * groups;
    out = nn__new(NN_F32, x->device, x->ndim, x->shape);
    mt = nn__new(NN_F32, NN_CPU, 1, &ngs);
    rt = nn__new(NN_F32, NN_CPU, 1, &ngs);
    {
        const float *xd = (const float *)x->data, *wd = w ? (const float *)w->data : NULL;
        const float *bd = b ? (const float *)b->data : NULL;
        float *od = (float *)out->data, *mean = (float *)mt->data, *rstd = (float *)rt->data;
        NN_OMP("omp parallel for schedule(static) if(x->numel > 32768)")
        for (ng = 0; ng < ngs; ng++) {
            const int64_t bi = ng / groups, gi = ng % groups, base = (bi * C + gi * Cg) * HW, m = Cg * HW;
            const float K = m > 0 ? xd[base] : 0.0f;
            double s1 = 0, s2 = 0, mu, var, rs;
            int64_t cc, i;
            for (cc = 0; cc < Cg; cc++) {
                double a, q;
                nn__gn_sums(xd + base + cc * HW, HW, K, &a, &q);
                s1 += a; s2 += q;
            }
            mu = m > 0 ? s1 / (double)m : 0.0;            /* mean of x - K */
            var = m > 0 ? s2 / (double)m - mu * mu : 0.0;  /* biased, as torch */
            if (var < 0) var = 0;
            rs = 1.0 / sqrt(var + eps);
            mean[ng] = (float)(mu + K); rstd[ng] = (float)rs;
            {
                /* y = ((x - K) - (mean - K)) * rstd * w + b: x - K is exact for nearby values (Sterbenz), so
                   a large common offset cancels before any rounding, unlike x * scale + shift */
                const float dmu = (float)mu;
                for (cc = 0; cc < Cg; cc++) {
                    const int64_t ch = gi * Cg + cc;
                    const float sc = (float)(rs * (wd ? wd[ch] : 1.0)), bc = bd ? bd[ch] : 0.0f;
                    const float *xp = xd + base + cc * HW;
                    float *yp = od + base + cc * HW;
                    for (i = 0; i < HW; i++) yp[i] = ((xp[i] - K) - dmu) * sc + bc;
                }
            }
        }
    }
    /* inputs: x, then w and b where given (b moves to index 1 when there is no weight; i[1] says so) */
    ins[0] = x; ins[1] = w ? w : b; ins[2] = b;
    node = nn__record("group_norm", nn__group_norm_backward, 1 + (w != NULL) + (b != NULL), ins, 1, &out);
    if (node) node->i[1] = (!w && b) ? 1 : 0;
    if (node) {
        node->i[0] = groups;
        nn__save(node, x);
        nn__save(node, mt);
        nn__save(node, rt);
        if (w) nn__save(node, w);
    }
    nn_tensor_free(mt);
    nn_tensor_free(rt);
    return out;
}
