
/* ====================================================================================== [ops:attention] */
/* Scaled dot-product attention, FlashAttention-2 style (Dao, "FlashAttention-2: Faster Attention with Better
   Parallelism and Work Partitioning", 2023, Algorithms 1 and 2), on the CPU.

   Forward, per (b, h, query tile of nn__sdpa_tile_q rows), over key tiles of nn__sdpa_tile_k columns:
       S = scale * Q_i K_j^T + bias, masked entries -inf            (nn__sgemm, then one pass over the tile)
       m' = max(m, rowmax S);  P = exp(S - m');  l = l e^(m - m') + rowsum P;  acc = acc e^(m - m') + drop(P) V_j
   and at the end O_i = acc / l, LSE_i = m + log l. Only O and LSE (f32 [B,H,Lq]) are kept for backward.
   A row whose every key is masked never gets a finite m: l stays 0, O_i = 0 and LSE_i = -inf.

   Backward recomputes P_ij = exp(S_ij - LSE_i) tile by tile (LSE_i = -inf is read as +inf, so a fully
   masked row recomputes P = 0 and sends no gradient anywhere). With Z_ij the dropout factor (0 or 1/(1-p)):
       dV_j = sum_i (P Z)^T dO_i,   dP~ = dO_i V_j^T,   Delta_i = rowsum(dO_i * O_i),
       dS = P * (Z dP~ - Delta_i),  dQ_i = scale sum_j dS K_j,  dK_j = scale sum_i dS^T Q_i,  dbias = dS.
   (Delta_i = sum_j P_ij Z_ij dP~_ij = dO_i . O_i holds with dropout too, since O_i = sum_j P_ij Z_ij V_j.)

   Parallel schedule of backward. Each output block has exactly one writer, so no atomics, no locks, and the
   result does not depend on the thread count:
     - many independent units (>= 2 per thread): one pass per unit (a head, or a group of heads sharing one
       bias slice) over its key tiles, accumulating dQ of its own head directly: 5 tile GEMMs per tile pair.
     - otherwise (one or two heads, e.g. 40,000-token self-attention or a 900-query cross-attention):
       pass 1 over (head group, key tile) -> dK, dV, dbias; pass 2 over (head, query tile) -> dQ. Two more
       GEMMs per tile pair (S and dP~ are computed twice) but every unit is independent, and the extra memory
       stays one tile set per thread instead of a private [Lq, D] dQ accumulator per thread plus a reduction.
   Bias gradient ownership: a unit owns dbias[gb, gh, :, key tile] and loops over the heads (b, h) that
   broadcast into that slice, so a bias shared by heads or batches is summed without races.

   Memory beyond inputs and outputs: LSE and Delta ([B,H,Lq] each) and per thread two score tiles plus one
   accumulator tile: 4 * (2 tq tk + tq Dv + 2 tq + tk) bytes. All of it comes from the pool (counted). */

#ifdef _OPENMP
#include <omp.h>
#endif
#include <math.h>
#include <string.h>
#include <stdlib.h>

#if defined(__GNUC__) || defined(__clang__)
#define NN__SDPA_UNUSED __attribute__((unused))
#else
#define NN__SDPA_UNUSED
#endif

/* Tile sizes (rows of queries x columns of keys), measured on Zen 4 with D = 16 (where the per-call GEMM
   packing matters most; larger D is less sensitive). Forward: one 96 x 512 score tile (192 KiB) per thread
   is 9% faster than 96 x 128 (fewer GEMM calls, each packed Q block reused over more keys); 96 rows are 8 of
   the AVX-512 micro-kernel's 12-row strips and keep enough query tiles for the threads when B*H is small.
   Backward: two tiles (S and dS) live at once, so it keeps them smaller. Tests shrink all four. */
static int64_t nn__sdpa_tile_q = 96;
static int64_t nn__sdpa_tile_k = 512;
static int64_t nn__sdpa_bwd_tile_q = 96;
static int64_t nn__sdpa_bwd_tile_k = 128;

typedef struct {
    const float *q, *k, *v;         /* [B,H,Lq,D], [B,H,Lk,D], [B,H,Lk,Dv] */
    const float *o, *go;            /* forward output and its gradient [B,H,Lq,Dv] (backward) */
    float *out, *lse, *delta;       /* [B,H,Lq,Dv], [B,H,Lq], [B,H,Lq] */
    float *dq, *dk, *dv, *dbias;    /* NULL when not wanted */
    const uint8_t *mask;            /* bool/u8, read through broadcast strides ms (0 on broadcast dims) */
    const float *bias;              /* f32, broadcast strides bs */
    int64_t ms[4], bs[4];
    int64_t B, H, Lq, Lk, D, Dv, tq, tk;
    int64_t gB, gH;                 /* bias-gradient groups: B or 1, H or 1 */
    int causal, dropout;
    float scale, p, keep_scale;
    uint64_t seed, offset;
    float *ws;                      /* per-thread workspace, ws_stride floats each */
    int64_t ws_stride;
} nn__sdpa_ctx;

static int nn__sdpa_thread(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int nn__sdpa_max_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* strides that read t as if expanded to full[4] (right-aligned like numpy); 0 on broadcast dims */
static int nn__sdpa_bcast_strides(const nn_tensor *t, const int64_t full[4], int64_t st[4]) {
    int64_t s = 1;
    int d;
    if (t->ndim > 4) return 0;
    for (d = 3; d >= 0; d--) {
        int td = t->ndim - 4 + d;
        if (td < 0) { st[d] = 0; continue; }
        if (t->shape[td] == full[d] && full[d] != 1) st[d] = s;
        else if (t->shape[td] == 1) st[d] = 0;
        else return 0;
        s *= t->shape[td];
    }
    return 1;
}

/* z[cc] = dropout factor (0 or 1/(1-p)) of element (b, h, i, j0 + cc) for cc < nc: uniform number
   ((b*H+h)*Lq+i)*Lk+j of the draw reserved at forward, kept iff >= p. Equal to
   nn_rng_uniform_at(seed, offset + index) >= p (the reference path calls that), but one Philox block per
   four consecutive positions, using nn.h's stream layout (position o: block o/4, lane o%4, top 24 bits). */
static void nn__sdpa_keep_row(const nn__sdpa_ctx *c, int64_t b, int64_t h, int64_t i, int64_t j0, int64_t nc,
                              float *z) {
    uint64_t pos = c->offset + (uint64_t)((((b * c->H + h) * c->Lq + i) * c->Lk) + j0);
    uint32_t r[4] = {0, 0, 0, 0};
    int64_t cc;
    int have = 0;
    for (cc = 0; cc < nc; cc++, pos++) {
        float u;
        if (!have || (pos & 3) == 0) { nn_philox4x32(c->seed, pos >> 2, r); have = 1; }
        u = (float)(r[pos & 3] >> 8) * (1.0f / 16777216.0f);
        z[cc] = u >= c->p ? c->keep_scale : 0.0f;
    }
}

/* S[nr x nc] = scale * Q[i0:i0+nr] K[j0:j0+nc]^T + bias, -inf where the mask or the causal triangle forbids */
static void nn__sdpa_scores(const nn__sdpa_ctx *c, int64_t b, int64_t h, int64_t i0, int64_t nr, int64_t j0,
                            int64_t nc, float *S) {
    const float *Q = c->q + ((b * c->H + h) * c->Lq + i0) * c->D;
    const float *K = c->k + ((b * c->H + h) * c->Lk + j0) * c->D;
    int64_t r, cc;
    nn__sgemm(0, 1, nr, nc, c->D, c->scale, Q, c->D, K, c->D, 0.0f, S, nc);
    if (c->bias) {
        const int64_t *bs = c->bs;
        for (r = 0; r < nr; r++) {
            const float *br = c->bias + b * bs[0] + h * bs[1] + (i0 + r) * bs[2] + j0 * bs[3];
            float *s = S + r * nc;
            if (bs[3] == 1) for (cc = 0; cc < nc; cc++) s[cc] += br[cc];
            else for (cc = 0; cc < nc; cc++) s[cc] += br[0];
        }
    }
    if (c->mask) {
        const int64_t *ms = c->ms;
        for (r = 0; r < nr; r++) {
            const uint8_t *mr = c->mask + b * ms[0] + h * ms[1] + (i0 + r) * ms[2] + j0 * ms[3];
            float *s = S + r * nc;
            for (cc = 0; cc < nc; cc++) if (!mr[cc * ms[3]]) s[cc] = -INFINITY;
        }
    }
    if (c->causal && j0 + nc - 1 > i0) {
        for (r = 0; r < nr; r++) {
            int64_t first = i0 + r + 1 - j0; /* first forbidden column of row i0+r: key j > i */
            float *s = S + r * nc;
            for (cc = first < 0 ? 0 : first; cc < nc; cc++) s[cc] = -INFINITY;
        }
    }
}

/* exp(x) for x <= 0 (a score minus its row maximum or LSE), written so that loops of it vectorise:
   e^x = 2^n e^r with n = round(x log2(e)) (the 1.5 * 2^23 rounding trick) and r = x - n ln2, ln2 split in
   two (Cody and Waite) so r is exact to f32 rounding; e^r by its degree-6 Taylor polynomial on
   |r| <= ln2/2, truncation |r|^7/7! < 1.5e-7 relative (about one f32 ulp); 2^n built in the exponent bits.
   Below -87 (e^x < FLT_MIN) the result is 0, so exp(-inf) = 0 exactly and masked scores drop out. */
static float nn__sdpa_exp(float x) {
    union { int32_t i; float f; } two_n;
    float xc = x < -87.0f ? -87.0f : x;
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187045e-6f;
    float p = 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    two_n.i = ((int32_t)n + 127) * 8388608; /* << 23 */
    return x < -87.0f ? 0.0f : p * two_n.f;
}

/* x[i] = exp(x[i] - sub) for i < n (every x[i] - sub <= 0), returns the sum */
static float nn__sdpa_exp_sum(float *x, int64_t n, float sub) {
    float sum = 0.0f;
    int64_t i;
    NN_OMP("omp simd reduction(+:sum)")
    for (i = 0; i < n; i++) {
        float e = nn__sdpa_exp(x[i] - sub);
        x[i] = e;
        sum += e;
    }
    return sum;
}

/* max of x[0..n): 16 running maxima (one vector register's worth, which both GCC and clang vectorise
   without any pragma; clang refuses "omp simd reduction(max)" over a compare-select) */
static float nn__sdpa_row_max(const float *x, int64_t n) {
    float m16[16], mx;
    int64_t i = 0;
    int l;
    for (l = 0; l < 16; l++) m16[l] = -INFINITY;
    for (; i + 16 <= n; i += 16)
        for (l = 0; l < 16; l++) m16[l] = x[i + l] > m16[l] ? x[i + l] : m16[l];
    for (l = 0; i < n; i++, l++) m16[l] = x[i] > m16[l] ? x[i] : m16[l];
    mx = m16[0];
    for (l = 1; l < 16; l++) mx = m16[l] > mx ? m16[l] : mx;
    return mx;
}

/* ---------------------------------------------------------------------------------------------- forward */

static void nn__sdpa_fwd_tile(const nn__sdpa_ctx *c, int64_t b, int64_t h, int64_t qt) {
    float *S = c->ws + (int64_t)nn__sdpa_thread() * c->ws_stride;
    float *acc = S + c->tq * c->tk, *m = acc + c->tq * c->Dv, *l = m + c->tq, *z = l + c->tq;
    int64_t i0 = qt * c->tq, nr = c->Lq - i0 < c->tq ? c->Lq - i0 : c->tq;
    int64_t jend = c->Lk, j0, r, cc, d, Dv = c->Dv;
    const float *V = c->v + (b * c->H + h) * c->Lk * Dv;
    float *O = c->out + ((b * c->H + h) * c->Lq + i0) * Dv;
    float *lse = c->lse + (b * c->H + h) * c->Lq + i0;
    if (c->causal && i0 + nr < jend) jend = i0 + nr; /* keys past the tile's last query are all masked */
    for (r = 0; r < nr; r++) { m[r] = -INFINITY; l[r] = 0.0f; }
    memset(acc, 0, sizeof(float) * (size_t)(nr * Dv));
    for (j0 = 0; j0 < jend; j0 += c->tk) {
        int64_t nc = jend - j0 < c->tk ? jend - j0 : c->tk;
        int any = 0;
        nn__sdpa_scores(c, b, h, i0, nr, j0, nc, S);
        for (r = 0; r < nr; r++) {
            float *s = S + r * nc, mx = nn__sdpa_row_max(s, nc), mnew, alpha;
            mnew = mx > m[r] ? mx : m[r];
            if (mnew == -INFINITY) { /* nothing attended in this row yet: P = 0, keep m = -inf */
                memset(s, 0, sizeof(float) * (size_t)nc);
                continue;
            }
            any = 1;
            alpha = nn__sdpa_exp(m[r] - mnew); /* m = -inf: 0, and acc, l are still 0 */
            l[r] = l[r] * alpha + nn__sdpa_exp_sum(s, nc, mnew);
            if (alpha != 1.0f) for (d = 0; d < Dv; d++) acc[r * Dv + d] *= alpha;
            m[r] = mnew;
            if (c->dropout) {
                nn__sdpa_keep_row(c, b, h, i0 + r, j0, nc, z);
                for (cc = 0; cc < nc; cc++) s[cc] *= z[cc];
            }
        }
        if (any) nn__sgemm(0, 0, nr, Dv, nc, 1.0f, S, nc, V + j0 * Dv, Dv, 1.0f, acc, Dv);
    }
    for (r = 0; r < nr; r++) {
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        for (d = 0; d < Dv; d++) O[r * Dv + d] = acc[r * Dv + d] * inv;
        lse[r] = l[r] > 0.0f ? m[r] + logf(l[r]) : -INFINITY;
    }
}

/* ---------------------------------------------------------------------------------------------- backward */

/* After nn__sdpa_scores: turn S into P Z (what multiplied V) and dPt = dO V^T into dS, in place. */
static void nn__sdpa_bwd_probs(const nn__sdpa_ctx *c, int64_t b, int64_t h, int64_t i0, int64_t nr, int64_t j0,
                               int64_t nc, float *S, float *dP) {
    const float *lse = c->lse + (b * c->H + h) * c->Lq + i0;
    const float *delta = c->delta + (b * c->H + h) * c->Lq + i0;
    float *z = dP + c->tq * c->tk;
    int64_t r, cc;
    for (r = 0; r < nr; r++) {
        float L = lse[r] == -INFINITY ? INFINITY : lse[r], Di = delta[r];
        float *s = S + r * nc, *dp = dP + r * nc;
        nn__sdpa_exp_sum(s, nc, L);
        if (c->dropout) {
            nn__sdpa_keep_row(c, b, h, i0 + r, j0, nc, z);
            for (cc = 0; cc < nc; cc++) {
                float p = s[cc];
                dp[cc] = p * (z[cc] * dp[cc] - Di);
                s[cc] = p * z[cc];
            }
        } else {
            for (cc = 0; cc < nc; cc++) dp[cc] = s[cc] * (dp[cc] - Di);
        }
    }
}

/* One key tile of head (b,h) against all query tiles: dK, dV rows of the tile (overwritten), dbias columns of
   the tile (added), and, when with_dq, dQ of every query (added). */
static void nn__sdpa_bwd_ktile(const nn__sdpa_ctx *c, int64_t b, int64_t h, int64_t kt, int with_dq) {
    float *S = c->ws + (int64_t)nn__sdpa_thread() * c->ws_stride, *dP = S + c->tq * c->tk;
    int64_t D = c->D, Dv = c->Dv, bh = b * c->H + h;
    int64_t j0 = kt * c->tk, nc = c->Lk - j0 < c->tk ? c->Lk - j0 : c->tk, i0, r, cc;
    const float *Kj = c->k + (bh * c->Lk + j0) * D, *Vj = c->v + (bh * c->Lk + j0) * Dv;
    float *dKj = c->dk ? c->dk + (bh * c->Lk + j0) * D : NULL;
    float *dVj = c->dv ? c->dv + (bh * c->Lk + j0) * Dv : NULL;
    if (dKj) memset(dKj, 0, sizeof(float) * (size_t)(nc * D));
    if (dVj) memset(dVj, 0, sizeof(float) * (size_t)(nc * Dv));
    /* causal: query rows i < j0 see none of these keys; start at the tile holding row j0 */
    for (i0 = c->causal ? (j0 / c->tq) * c->tq : 0; i0 < c->Lq; i0 += c->tq) {
        int64_t nr = c->Lq - i0 < c->tq ? c->Lq - i0 : c->tq;
        const float *Qi = c->q + (bh * c->Lq + i0) * D, *dOi = c->go + (bh * c->Lq + i0) * Dv;
        nn__sdpa_scores(c, b, h, i0, nr, j0, nc, S);
        nn__sgemm(0, 1, nr, nc, Dv, 1.0f, dOi, Dv, Vj, Dv, 0.0f, dP, nc);
        nn__sdpa_bwd_probs(c, b, h, i0, nr, j0, nc, S, dP);
        if (dVj) nn__sgemm(1, 0, nc, Dv, nr, 1.0f, S, nc, dOi, Dv, 1.0f, dVj, Dv);
        if (dKj) nn__sgemm(1, 0, nc, D, nr, c->scale, dP, nc, Qi, D, 1.0f, dKj, D);
        if (with_dq) nn__sgemm(0, 0, nr, D, nc, c->scale, dP, nc, Kj, D, 1.0f, c->dq + (bh * c->Lq + i0) * D, D);
        if (c->dbias) {
            const int64_t *bs = c->bs;
            for (r = 0; r < nr; r++) {
                float *db = c->dbias + b * bs[0] + h * bs[1] + (i0 + r) * bs[2] + j0 * bs[3];
                const float *ds = dP + r * nc;
                for (cc = 0; cc < nc; cc++) db[cc] += ds[cc]; /* bs[3] == 1 here (see nn__sdpa_backward) */
            }
        }
    }
}

/* dQ of one query tile of head (b,h) (overwritten) */
static void nn__sdpa_bwd_qtile(const nn__sdpa_ctx *c, int64_t b, int64_t h, int64_t qt) {
    float *S = c->ws + (int64_t)nn__sdpa_thread() * c->ws_stride, *dP = S + c->tq * c->tk;
    int64_t D = c->D, Dv = c->Dv, bh = b * c->H + h;
    int64_t i0 = qt * c->tq, nr = c->Lq - i0 < c->tq ? c->Lq - i0 : c->tq, jend = c->Lk, j0;
    const float *dOi = c->go + (bh * c->Lq + i0) * Dv;
    float *dQi = c->dq + (bh * c->Lq + i0) * D;
    memset(dQi, 0, sizeof(float) * (size_t)(nr * D));
    if (c->causal && i0 + nr < jend) jend = i0 + nr;
    for (j0 = 0; j0 < jend; j0 += c->tk) {
        int64_t nc = jend - j0 < c->tk ? jend - j0 : c->tk;
        nn__sdpa_scores(c, b, h, i0, nr, j0, nc, S);
        nn__sgemm(0, 1, nr, nc, Dv, 1.0f, dOi, Dv, c->v + (bh * c->Lk + j0) * Dv, Dv, 0.0f, dP, nc);
        nn__sdpa_bwd_probs(c, b, h, i0, nr, j0, nc, S, dP);
        nn__sgemm(0, 0, nr, D, nc, c->scale, dP, nc, c->k + (bh * c->Lk + j0) * D, D, 1.0f, dQi, D);
    }
}

static void nn__sdpa_backward(nn_node *n) {
    nn__sdpa_ctx c;
    nn_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *out = n->saved[3], *lse = n->saved[4];
    nn_tensor *mask = n->i[1] >= 0 ? n->saved[n->i[1]] : NULL, *bias = n->i[2] >= 0 ? n->saved[n->i[2]] : NULL;
    nn_tensor *go = n->gout[0], *dq = NULL, *dk = NULL, *dv = NULL, *dbias = NULL, *delta, *ws;
    int want_q = nn__needs_grad(n, 0), want_k = nn__needs_grad(n, 1), want_v = nn__needs_grad(n, 2);
    int want_b = bias && n->n_in > 3 && nn__needs_grad(n, 3), threads = nn__sdpa_max_threads();
    int64_t full[4], nq, nk, units_one_pass, u, ws_shape[1];
    if (!go) return;
    memset(&c, 0, sizeof c);
    c.B = q->shape[0]; c.H = q->shape[1]; c.Lq = q->shape[2]; c.D = q->shape[3];
    c.Lk = k->shape[2]; c.Dv = v->shape[3];
    c.tq = nn__sdpa_bwd_tile_q; c.tk = nn__sdpa_bwd_tile_k;
    c.q = (const float *)q->data; c.k = (const float *)k->data; c.v = (const float *)v->data;
    c.o = (const float *)out->data; c.go = (const float *)go->data; c.lse = (float *)lse->data;
    c.scale = (float)n->a[0]; c.p = (float)n->a[1]; c.causal = (int)n->i[0];
    c.dropout = c.p > 0.0f; c.keep_scale = c.p < 1.0f ? 1.0f / (1.0f - c.p) : 0.0f;
    c.seed = n->rng.seed; c.offset = n->rng.offset;
    full[0] = c.B; full[1] = c.H; full[2] = c.Lq; full[3] = c.Lk;
    if (mask) { c.mask = (const uint8_t *)mask->data; nn__sdpa_bcast_strides(mask, full, c.ms); }
    if (bias) { c.bias = (const float *)bias->data; nn__sdpa_bcast_strides(bias, full, c.bs); }
    c.gB = 1; c.gH = 1;
    if (want_b) {
        dbias = nn_zeros(NN_F32, n->in[3].ndim, n->in[3].shape);
        /* a bias broadcast over keys adds the same constant to a whole row: softmax ignores it and
           sum_j dS_ij = Delta_i - Delta_i sum_j P_ij = 0, so its gradient is exactly zero */
        if (c.bs[3] != 0) {
            c.dbias = (float *)dbias->data;
            c.gB = c.bs[0] ? c.B : 1;
            c.gH = c.bs[1] ? c.H : 1;
        }
    }
    if (want_q) { dq = nn__new(NN_F32, NN_CPU, 4, q->shape); c.dq = (float *)dq->data; }
    if (want_k) { dk = nn__new(NN_F32, NN_CPU, 4, k->shape); c.dk = (float *)dk->data; }
    if (want_v) { dv = nn__new(NN_F32, NN_CPU, 4, v->shape); c.dv = (float *)dv->data; }
    delta = nn__new(NN_F32, NN_CPU, 3, lse->shape);
    c.delta = (float *)delta->data;
    {   /* Delta_i = dO_i . O_i */
        int64_t rows = c.B * c.H * c.Lq, i;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
        for (i = 0; i < rows; i++) {
            const float *a = c.go + i * c.Dv, *o = c.o + i * c.Dv;
            float s = 0.0f;
            int64_t d;
            for (d = 0; d < c.Dv; d++) s += a[d] * o[d];
            c.delta[i] = s;
        }
    }
    c.ws_stride = 2 * c.tq * c.tk + c.tk;
    ws_shape[0] = c.ws_stride * threads;
    ws = nn__new(NN_F32, NN_CPU, 1, ws_shape);
    c.ws = (float *)ws->data;
    nq = (c.Lq + c.tq - 1) / c.tq;
    nk = (c.Lk + c.tk - 1) / c.tk;
    /* units of the one-pass schedule: heads, or bias groups when a shared bias gradient ties heads together */
    units_one_pass = c.dbias ? c.gB * c.gH : c.B * c.H;
    if (want_q && (want_k || want_v || c.dbias) && (threads == 1 || units_one_pass >= 2 * threads)) {
        int64_t per_b = c.dbias && !c.bs[0] ? c.B : 1, per_h = c.dbias && !c.bs[1] ? c.H : 1;
        memset(c.dq, 0, sizeof(float) * (size_t)dq->numel);
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
        for (u = 0; u < units_one_pass; u++) {
            /* unit u = head (b, h), or bias group (gb, gh) whose member heads it runs one after another */
            int64_t gb = c.dbias ? u / c.gH : u / c.H, gh = c.dbias ? u % c.gH : u % c.H, xb, xh, kt;
            for (xb = 0; xb < per_b; xb++)
                for (xh = 0; xh < per_h; xh++)
                    for (kt = 0; kt < nk; kt++)
                        nn__sdpa_bwd_ktile(&c, per_b > 1 ? xb : gb, per_h > 1 ? xh : gh, kt, 1);
        }
    } else {
        if (want_k || want_v || c.dbias) {
            int64_t groups = c.dbias ? c.gB * c.gH : c.B * c.H, units = groups * nk;
            int64_t per_b = c.dbias && !c.bs[0] ? c.B : 1, per_h = c.dbias && !c.bs[1] ? c.H : 1;
            int64_t gHn = c.dbias ? c.gH : c.H;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
            for (u = 0; u < units; u++) {
                int64_t g = u / nk, kt = u % nk, gb = g / gHn, gh = g % gHn, xb, xh;
                for (xb = 0; xb < per_b; xb++)
                    for (xh = 0; xh < per_h; xh++)
                        nn__sdpa_bwd_ktile(&c, per_b > 1 ? xb : gb, per_h > 1 ? xh : gh, kt, 0);
            }
        }
        if (want_q) {
            int64_t units = c.B * c.H * nq;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
            for (u = 0; u < units; u++) nn__sdpa_bwd_qtile(&c, u / nq / c.H, (u / nq) % c.H, u % nq);
        }
    }
    nn_tensor_free(ws);
    nn_tensor_free(delta);
    if (dq) nn__accumulate(n, 0, dq);
    if (dk) nn__accumulate(n, 1, dk);
    if (dv) nn__accumulate(n, 2, dv);
    if (dbias) nn__accumulate(n, 3, dbias);
}

/* ----------------------------------------------------------------------------------------- checks, entry */

typedef struct {
    int64_t B, H, Lq, Lk, D, Dv, full[4], ms[4], bs[4];
    float scale, p;
} nn__sdpa_shape;

static void nn__sdpa_check(const char *op, nn_tensor *q, nn_tensor *k, nn_tensor *v, const nn_sdpa_opts *o,
                           nn__sdpa_shape *s) {
    char a[96], b[96], cs[96];
    if (!q || !k || !v) nn_error("%s: q, k and v must not be NULL", op);
    nn__check_f32(op, q, "q");
    nn__check_f32(op, k, "k");
    nn__check_f32(op, v, "v");
    if (q->device != NN_CPU || k->device != NN_CPU || v->device != NN_CPU)
        nn_error("%s: only the CPU is supported for now (q on %s, k on %s, v on %s)", op,
                 nn_device_name(q->device), nn_device_name(k->device), nn_device_name(v->device));
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
        nn_error("%s: want q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv]; got q %s, k %s, v %s", op,
                 nn_shape_str(q, a, sizeof a), nn_shape_str(k, b, sizeof b), nn_shape_str(v, cs, sizeof cs));
    if (k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] || k->shape[1] != q->shape[1] ||
        v->shape[1] != q->shape[1] || k->shape[3] != q->shape[3] || v->shape[2] != k->shape[2])
        nn_error("%s: shapes disagree: q %s, k %s, v %s (want q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv])", op,
                 nn_shape_str(q, a, sizeof a), nn_shape_str(k, b, sizeof b), nn_shape_str(v, cs, sizeof cs));
    s->B = q->shape[0]; s->H = q->shape[1]; s->Lq = q->shape[2]; s->D = q->shape[3];
    s->Lk = k->shape[2]; s->Dv = v->shape[3];
    s->full[0] = s->B; s->full[1] = s->H; s->full[2] = s->Lq; s->full[3] = s->Lk;
    s->scale = 0.0f; s->p = 0.0f;
    if (o && o->mask) {
        if (o->mask->dtype != NN_BOOL && o->mask->dtype != NN_U8)
            nn_error("%s: mask must be bool or u8 (true = attend), got %s", op, nn_dtype_name(o->mask->dtype));
        if (o->mask->device != NN_CPU) nn_error("%s: mask is on %s, q on cpu", op, nn_device_name(o->mask->device));
        if (!nn__sdpa_bcast_strides(o->mask, s->full, s->ms))
            nn_error("%s: mask %s does not broadcast to [B,H,Lq,Lk] = [%lld,%lld,%lld,%lld]", op,
                     nn_shape_str(o->mask, a, sizeof a), (long long)s->B, (long long)s->H, (long long)s->Lq,
                     (long long)s->Lk);
    }
    if (o && o->bias) {
        nn__check_f32(op, o->bias, "bias");
        if (o->bias->device != NN_CPU) nn_error("%s: bias is on %s, q on cpu", op, nn_device_name(o->bias->device));
        if (!nn__sdpa_bcast_strides(o->bias, s->full, s->bs))
            nn_error("%s: bias %s does not broadcast to [B,H,Lq,Lk] = [%lld,%lld,%lld,%lld]", op,
                     nn_shape_str(o->bias, a, sizeof a), (long long)s->B, (long long)s->H, (long long)s->Lq,
                     (long long)s->Lk);
    }
    if (o && o->scale != 0.0) {
        if (!(fabs(o->scale) < 1e30)) nn_error("%s: scale must be finite, got %g", op, o->scale);
        s->scale = (float)o->scale;
    } else {
        s->scale = s->D > 0 ? (float)(1.0 / sqrt((double)s->D)) : 1.0f;
    }
    if (o && !(o->dropout_p >= 0.0 && o->dropout_p <= 1.0))
        nn_error("%s: dropout_p must be in [0, 1], got %g", op, o ? o->dropout_p : 0.0);
    if (o) s->p = (float)o->dropout_p;
}

nn_tensor *nn_sdpa(nn_tensor *q, nn_tensor *k, nn_tensor *v, const nn_sdpa_opts *opts) {
    nn__sdpa_shape s;
    nn__sdpa_ctx c;
    nn_tensor *out, *lse, *ws, *ins[4];
    int64_t oshape[4], lshape[3], ws_shape[1], nq, units, u;
    int threads = nn__sdpa_max_threads();
    nn_node *n;
    nn_sdpa_opts none;
    memset(&none, 0, sizeof none);
    if (!opts) opts = &none;
    if (nn_autocast_dtype() != NN_F32) {   /* autocast (nn.h): q, k, v, a float bias and the output in low precision */
        nn_sdpa_opts o = *opts;
        nn_dtype dt = nn__autocast_enter();
        o.bias = nn__autocast_arg(o.bias, dt);
        return nn__autocast_leave(nn_sdpa(nn__autocast_arg(q, dt), nn__autocast_arg(k, dt), nn__autocast_arg(v, dt), &o), dt);
    }
    nn__sdpa_check("nn_sdpa", q, k, v, opts, &s);
    memset(&c, 0, sizeof c);
    c.B = s.B; c.H = s.H; c.Lq = s.Lq; c.Lk = s.Lk; c.D = s.D; c.Dv = s.Dv;
    c.tq = nn__sdpa_tile_q; c.tk = nn__sdpa_tile_k;
    c.q = (const float *)q->data; c.k = (const float *)k->data; c.v = (const float *)v->data;
    if (opts->mask) { c.mask = (const uint8_t *)opts->mask->data; memcpy(c.ms, s.ms, sizeof c.ms); }
    if (opts->bias) { c.bias = (const float *)opts->bias->data; memcpy(c.bs, s.bs, sizeof c.bs); }
    c.causal = opts->causal != 0;
    c.scale = s.scale;
    c.p = s.p; c.dropout = s.p > 0.0f; c.keep_scale = s.p < 1.0f ? 1.0f / (1.0f - s.p) : 0.0f;
    if (c.dropout) {
        /* one value per (b,h,i,j), index ((b*H+h)*Lq+i)*Lk+j, regenerated in backward */
        c.offset = nn_rng_reserve((uint64_t)(s.B * s.H * s.Lq * s.Lk));
        c.seed = nn_rng_get().seed;
    }
    oshape[0] = s.B; oshape[1] = s.H; oshape[2] = s.Lq; oshape[3] = s.Dv;
    lshape[0] = s.B; lshape[1] = s.H; lshape[2] = s.Lq;
    out = nn__new(NN_F32, NN_CPU, 4, oshape);
    lse = nn__new(NN_F32, NN_CPU, 3, lshape);
    c.out = (float *)out->data; c.lse = (float *)lse->data;
    c.ws_stride = c.tq * c.tk + c.tq * s.Dv + 2 * c.tq + c.tk;
    ws_shape[0] = c.ws_stride * threads;
    ws = nn__new(NN_F32, NN_CPU, 1, ws_shape);
    c.ws = (float *)ws->data;
    nq = (s.Lq + c.tq - 1) / c.tq;
    units = s.B * s.H * nq;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic, 1)
#endif
    for (u = 0; u < units; u++) nn__sdpa_fwd_tile(&c, u / nq / s.H, (u / nq) % s.H, u % nq);
    nn_tensor_free(ws);
    ins[0] = q; ins[1] = k; ins[2] = v; ins[3] = opts->bias;
    n = nn__record("sdpa", nn__sdpa_backward, opts->bias ? 4 : 3, ins, 1, &out);
    if (n) {
        nn__save(n, q); nn__save(n, k); nn__save(n, v); nn__save(n, out); nn__save(n, lse);
        n->i[0] = c.causal;
        n->i[1] = -1; n->i[2] = -1;
        if (opts->mask) { n->i[1] = n->n_saved; nn__save(n, opts->mask); }
        if (opts->bias) { n->i[2] = n->n_saved; nn__save(n, opts->bias); }
        n->a[0] = c.scale;
        n->a[1] = c.p;
        n->rng.seed = c.seed;
        n->rng.offset = c.offset;
    }
    nn_tensor_free(lse);
    return out;
}

nn_tensor *nn_key_padding_mask(nn_tensor *valid) {
    nn_tensor *m;
    int64_t shape[4], i;
    uint8_t *dst;
    char a[96];
    if (!valid) nn_error("nn_key_padding_mask: valid is NULL");
    if (valid->ndim != 2)
        nn_error("nn_key_padding_mask: want valid [B,Lk] (1 = valid, 0 = padding), got %s",
                 nn_shape_str(valid, a, sizeof a));
    if (valid->device != NN_CPU) nn_error("nn_key_padding_mask: only the CPU is supported for now");
    shape[0] = valid->shape[0]; shape[1] = 1; shape[2] = 1; shape[3] = valid->shape[1];
    m = nn__new(NN_BOOL, NN_CPU, 4, shape);
    dst = (uint8_t *)m->data;
    for (i = 0; i < valid->numel; i++) {
        int on;
        switch (valid->dtype) {
        case NN_F32: on = ((const float *)valid->data)[i] != 0.0f; break;
        case NN_F16: on = nn__half_to_f32(((const uint16_t *)valid->data)[i]) != 0.0f; break;
        case NN_BF16: on = nn__bf16_to_f32(((const uint16_t *)valid->data)[i]) != 0.0f; break;
        case NN_I32: on = ((const int32_t *)valid->data)[i] != 0; break;
        case NN_I64: on = ((const int64_t *)valid->data)[i] != 0; break;
        default: on = ((const uint8_t *)valid->data)[i] != 0; break;
        }
        dst[i] = (uint8_t)on;
    }
    return m;
}

/* ------------------------------------------------------------------------------------ reference (tests) */
/* nn__sdpa_reference: the same op computed the plain way, materialising the [B,H,Lq,Lk] probabilities, in
   double inside each row; its own backward. Same semantics and the same dropout stream as nn_sdpa (it
   reserves the same B*H*Lq*Lk values), so with the generator set to the same state both draw the same mask.
   For tests only. Saved: q, k, v, P (undropped probabilities, f32), mask, bias. */

static double nn__sdpa_ref_keep(uint64_t seed, uint64_t offset, double p, uint64_t idx) {
    if (p <= 0.0) return 1.0;
    if (p >= 1.0) return 0.0;
    return nn_rng_uniform_at(seed, offset + idx) >= (float)p ? 1.0 / (1.0 - (float)p) : 0.0;
}

static void nn__sdpa_ref_backward(nn_node *n) {
    nn_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *P = n->saved[3];
    nn_tensor *mask = n->i[1] >= 0 ? n->saved[n->i[1]] : NULL, *bias = n->i[2] >= 0 ? n->saved[n->i[2]] : NULL;
    nn_tensor *go = n->gout[0];
    int64_t B = q->shape[0], H = q->shape[1], Lq = q->shape[2], D = q->shape[3], Lk = k->shape[2], Dv = v->shape[3];
    int64_t full[4], bs[4], b, h, i, j, d;
    double scale = n->a[0], p = n->a[1];
    double *dq = (double *)calloc((size_t)(q->numel + 1), sizeof(double));
    double *dk = (double *)calloc((size_t)(k->numel + 1), sizeof(double));
    double *dv = (double *)calloc((size_t)(v->numel + 1), sizeof(double));
    double *db = NULL, *dpt = (double *)calloc((size_t)(Lk + 1), sizeof(double));
    int want_b = bias && n->n_in > 3 && nn__needs_grad(n, 3);
    (void)mask;
    full[0] = B; full[1] = H; full[2] = Lq; full[3] = Lk;
    if (bias) nn__sdpa_bcast_strides(bias, full, bs);
    if (want_b) db = (double *)calloc((size_t)(bias->numel + 1), sizeof(double));
    if (!go) goto done;
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++)
            for (i = 0; i < Lq; i++) {
                int64_t bh = b * H + h;
                const float *gi = (const float *)go->data + (bh * Lq + i) * Dv;
                const float *pr = (const float *)P->data + (bh * Lq + i) * Lk;
                double delta = 0.0;
                for (j = 0; j < Lk; j++) {
                    const float *vj = (const float *)v->data + (bh * Lk + j) * Dv;
                    double z = nn__sdpa_ref_keep(n->rng.seed, n->rng.offset, p, (uint64_t)((bh * Lq + i) * Lk + j));
                    double s = 0.0;
                    for (d = 0; d < Dv; d++) s += (double)gi[d] * vj[d];
                    dpt[j] = s * z;                      /* dL/dP_ij through the dropped probability */
                    delta += pr[j] * dpt[j];
                    for (d = 0; d < Dv; d++) dv[(bh * Lk + j) * Dv + d] += pr[j] * z * gi[d];
                }
                for (j = 0; j < Lk; j++) {
                    double ds = pr[j] * (dpt[j] - delta);
                    const float *qi = (const float *)q->data + (bh * Lq + i) * D;
                    const float *kj = (const float *)k->data + (bh * Lk + j) * D;
                    if (ds == 0.0) continue;
                    for (d = 0; d < D; d++) {
                        dq[(bh * Lq + i) * D + d] += scale * ds * kj[d];
                        dk[(bh * Lk + j) * D + d] += scale * ds * qi[d];
                    }
                    if (db) db[b * bs[0] + h * bs[1] + i * bs[2] + j * bs[3]] += ds;
                }
            }
done:
    {
        nn_tensor *g;
        int64_t x;
        if (nn__needs_grad(n, 0)) {
            g = nn__new(NN_F32, NN_CPU, 4, q->shape);
            for (x = 0; x < q->numel; x++) ((float *)g->data)[x] = (float)dq[x];
            nn__accumulate(n, 0, g);
        }
        if (nn__needs_grad(n, 1)) {
            g = nn__new(NN_F32, NN_CPU, 4, k->shape);
            for (x = 0; x < k->numel; x++) ((float *)g->data)[x] = (float)dk[x];
            nn__accumulate(n, 1, g);
        }
        if (nn__needs_grad(n, 2)) {
            g = nn__new(NN_F32, NN_CPU, 4, v->shape);
            for (x = 0; x < v->numel; x++) ((float *)g->data)[x] = (float)dv[x];
            nn__accumulate(n, 2, g);
        }
        if (db) {
            g = nn__new(NN_F32, NN_CPU, bias->ndim, bias->shape);
            for (x = 0; x < bias->numel; x++) ((float *)g->data)[x] = (float)db[x];
            nn__accumulate(n, 3, g);
        }
    }
    free(dq); free(dk); free(dv); free(db); free(dpt);
}

static NN__SDPA_UNUSED nn_tensor *nn__sdpa_reference(nn_tensor *q, nn_tensor *k, nn_tensor *v,
                                                     const nn_sdpa_opts *opts) {
    nn__sdpa_shape s;
    nn_tensor *out, *P, *ins[4];
    int64_t oshape[4], pshape[4], b, h, i, j, d;
    uint64_t seed = 0, offset = 0;
    double *row, *acc;
    nn_node *n;
    nn_sdpa_opts none;
    memset(&none, 0, sizeof none);
    if (!opts) opts = &none;
    nn__sdpa_check("nn__sdpa_reference", q, k, v, opts, &s);
    if (s.p > 0.0f) { offset = nn_rng_reserve((uint64_t)(s.B * s.H * s.Lq * s.Lk)); seed = nn_rng_get().seed; }
    oshape[0] = s.B; oshape[1] = s.H; oshape[2] = s.Lq; oshape[3] = s.Dv;
    pshape[0] = s.B; pshape[1] = s.H; pshape[2] = s.Lq; pshape[3] = s.Lk;
    out = nn__new(NN_F32, NN_CPU, 4, oshape);
    P = nn__new(NN_F32, NN_CPU, 4, pshape);
    row = (double *)malloc(sizeof(double) * (size_t)(s.Lk + 1));
    acc = (double *)malloc(sizeof(double) * (size_t)(s.Dv + 1));
    for (b = 0; b < s.B; b++)
        for (h = 0; h < s.H; h++)
            for (i = 0; i < s.Lq; i++) {
                int64_t bh = b * s.H + h;
                const float *qi = (const float *)q->data + (bh * s.Lq + i) * s.D;
                float *pr = (float *)P->data + (bh * s.Lq + i) * s.Lk;
                float *oi = (float *)out->data + (bh * s.Lq + i) * s.Dv;
                double mx = -INFINITY, sum = 0.0;
                for (j = 0; j < s.Lk; j++) {
                    const float *kj = (const float *)k->data + (bh * s.Lk + j) * s.D;
                    double x = 0.0;
                    for (d = 0; d < s.D; d++) x += (double)qi[d] * kj[d];
                    x *= s.scale;
                    if (opts->bias)
                        x += ((const float *)opts->bias->data)[b * s.bs[0] + h * s.bs[1] + i * s.bs[2] + j * s.bs[3]];
                    if (opts->mask &&
                        !((const uint8_t *)opts->mask->data)[b * s.ms[0] + h * s.ms[1] + i * s.ms[2] + j * s.ms[3]])
                        x = -INFINITY;
                    if (opts->causal && j > i) x = -INFINITY;
                    row[j] = x;
                    if (x > mx) mx = x;
                }
                for (j = 0; j < s.Lk; j++) { row[j] = mx == -INFINITY ? 0.0 : exp(row[j] - mx); sum += row[j]; }
                for (d = 0; d < s.Dv; d++) acc[d] = 0.0;
                for (j = 0; j < s.Lk; j++) {
                    double pj = sum > 0.0 ? row[j] / sum : 0.0;
                    double z = nn__sdpa_ref_keep(seed, offset, s.p, (uint64_t)((bh * s.Lq + i) * s.Lk + j));
                    pr[j] = (float)pj;
                    for (d = 0; d < s.Dv; d++) acc[d] += pj * z * ((const float *)v->data)[(bh * s.Lk + j) * s.Dv + d];
                }
                for (d = 0; d < s.Dv; d++) oi[d] = (float)acc[d];
            }
    free(row); free(acc);
    ins[0] = q; ins[1] = k; ins[2] = v; ins[3] = opts->bias;
    n = nn__record("sdpa_reference", nn__sdpa_ref_backward, opts->bias ? 4 : 3, ins, 1, &out);
    if (n) {
        nn__save(n, q); nn__save(n, k); nn__save(n, v); nn__save(n, P);
        n->i[1] = -1; n->i[2] = -1;
        if (opts->mask) { n->i[1] = n->n_saved; nn__save(n, opts->mask); }
        if (opts->bias) { n->i[2] = n->n_saved; nn__save(n, opts->bias); }
        n->a[0] = s.scale;
        n->a[1] = s.p;
        n->rng.seed = seed;
        n->rng.offset = offset;
    }
    nn_tensor_free(P);
    return out;
}
