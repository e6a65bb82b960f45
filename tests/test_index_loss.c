/* tests/test_index_loss.c - indexing ops and losses: PyTorch fixtures (forward and backward),
   finite-difference gradient checks, errors, and the parallel paths against serial references.
   Fixtures: tests/fixtures/index_loss.txt, made by tests/make_fixtures_index_loss.py. */
#define NN_IMPLEMENTATION
#include "nn.h"
#include "test.h"
#include "gradcheck.h"
#include "fixture.h"
#include <setjmp.h>
#include <string.h>

#ifndef FIXTURE_DIR
#define FIXTURE_DIR "tests/fixtures"
#endif

static fx_file FX;
#define G(name) fx_get(&FX, name)

/* i64 fixture tensor -> a fresh tensor of dtype dt (i32, i64, u8 or bool) */
static nn_tensor *as_dtype(nn_tensor *t, nn_dtype dt) {
    nn_tensor *r = nn_empty(dt, t->ndim, t->shape);
    int64_t i;
    for (i = 0; i < t->numel; i++) {
        int64_t v = ((const int64_t *)t->data)[i];
        if (dt == NN_I32) ((int32_t *)r->data)[i] = (int32_t)v;
        else if (dt == NN_I64) ((int64_t *)r->data)[i] = v;
        else ((uint8_t *)r->data)[i] = (uint8_t)(v != 0);
    }
    return r;
}

static nn_tensor *leaf(nn_tensor *t) {
    nn_requires_grad(t, 1);
    nn_zero_grad(t);
    return t;
}

/* y against <c>.y, then backward with <c>.gy and each listed input's grad against <c>.d<name> */
static void check_case(const char *c, nn_tensor *y, int n, nn_tensor **ins, const char **names) {
    char key[128], what[160];
    int k;
    snprintf(key, sizeof key, "%s.y", c);
    snprintf(what, sizeof what, "%s forward", c);
    CHECK_FX(y, G(key), 1e-5, 1e-4, what);
    snprintf(key, sizeof key, "%s.gy", c);
    {
        nn_tensor *gy = G(key);
        nn_backward_with(1, &y, &gy);
    }
    for (k = 0; k < n; k++) {
        snprintf(key, sizeof key, "%s.d%s", c, names[k]);
        snprintf(what, sizeof what, "%s grad of %s", c, names[k]);
        CHECK(ins[k]->grad != NULL, "%s: no gradient", what);
        if (ins[k]->grad) CHECK_FX(ins[k]->grad, G(key), 1e-5, 1e-4, what);
        nn_zero_grad(ins[k]);
        nn_requires_grad(ins[k], 0);
    }
}

static int64_t count_mismatch_i64(const nn_tensor *a, const nn_tensor *b) {
    int64_t i, bad = 0;
    if (a->numel != b->numel) return -1;
    for (i = 0; i < a->numel; i++) bad += ((const int64_t *)a->data)[i] != ((const int64_t *)b->data)[i];
    return bad;
}

/* ------------------------------------------------------------------------------- fixtures */
static void test_fixtures(void) {
    nn_tensor *y, *ins[3];
    const char *nm[3];
    int it;
    nn_scope_begin();
    for (it = 0; it < 2; it++) {  /* i64 and i32 indices */
        nn_dtype idt = it ? NN_I32 : NN_I64;
        ins[0] = leaf(G("embedding.w")); nm[0] = "w";
        y = nn_embedding(ins[0], as_dtype(G("embedding.idx"), idt));
        check_case("embedding", y, 1, ins, nm);

        ins[0] = leaf(G("index_select1.a")); nm[0] = "a";
        check_case("index_select1", nn_index_select(ins[0], 1, as_dtype(G("index_select1.idx"), idt)), 1, ins, nm);
        ins[0] = leaf(G("index_select2.a"));
        check_case("index_select2", nn_index_select(ins[0], -1, as_dtype(G("index_select2.idx"), idt)), 1, ins, nm);

        ins[0] = leaf(G("gather.a"));
        check_case("gather", nn_gather(ins[0], 1, as_dtype(G("gather.idx"), idt)), 1, ins, nm);

        ins[0] = leaf(G("scatter_add.a")); ins[1] = leaf(G("scatter_add.src")); nm[1] = "src";
        check_case("scatter_add", nn_scatter_add(ins[0], 1, as_dtype(G("scatter_add.idx"), idt), ins[1]), 2, ins, nm);
        ins[0] = leaf(G("scatter_add0.a")); ins[1] = leaf(G("scatter_add0.src"));
        check_case("scatter_add0", nn_scatter_add(ins[0], 0, as_dtype(G("scatter_add0.idx"), idt), ins[1]), 2, ins,
                   nm);
    }
    {
        nn_tensor *v, *ix;
        ins[0] = leaf(G("topk1.a")); nm[0] = "a";
        nn_topk(ins[0], 3, 1, 1, &v, &ix);
        CHECK(ix->dtype == NN_I64 && count_mismatch_i64(ix, G("topk1.ind")) == 0, "topk1 indices differ from torch");
        check_case("topk1", v, 1, ins, nm);
        ins[0] = leaf(G("topk2.a"));
        nn_topk(ins[0], 2, 0, 0, &v, &ix);
        CHECK(count_mismatch_i64(ix, G("topk2.ind")) == 0, "topk2 indices differ from torch");
        check_case("topk2", v, 1, ins, nm);
    }
    ins[0] = leaf(G("where.a")); ins[1] = leaf(G("where.b")); nm[0] = "a"; nm[1] = "b";
    check_case("where", nn_where(as_dtype(G("where.cond"), NN_BOOL), ins[0], ins[1]), 2, ins, nm);
    ins[0] = leaf(G("where.a")); ins[1] = leaf(G("where.b"));
    check_case("where", nn_where(as_dtype(G("where.cond"), NN_U8), ins[0], ins[1]), 2, ins, nm);

    ins[0] = leaf(G("masked_fill.a"));
    check_case("masked_fill", nn_masked_fill(ins[0], as_dtype(G("masked_fill.mask"), NN_BOOL), -1.5), 1, ins, nm);

    ins[0] = leaf(G("cross1.a")); ins[1] = leaf(G("cross1.b"));
    check_case("cross1", nn_cross(ins[0], ins[1], -1), 2, ins, nm);
    ins[0] = leaf(G("cross2.a")); ins[1] = leaf(G("cross2.b"));
    check_case("cross2", nn_cross(ins[0], ins[1], -1), 2, ins, nm);
    ins[0] = leaf(G("cross3.a")); ins[1] = leaf(G("cross3.b"));
    check_case("cross3", nn_cross(ins[0], ins[1], 0), 2, ins, nm);

    ins[0] = leaf(G("norm1.a"));
    check_case("norm1", nn_norm(ins[0], 1, 0), 1, ins, nm);
    ins[0] = leaf(G("norm2.a"));
    check_case("norm2", nn_norm(ins[0], -1, 1), 1, ins, nm);

    nm[0] = "p"; nm[1] = "t";
    ins[0] = leaf(G("mse.p")); ins[1] = leaf(G("mse.t"));
    check_case("mse", nn_mse_loss(ins[0], ins[1]), 2, ins, nm);
    ins[0] = leaf(G("l1.p")); ins[1] = leaf(G("l1.t"));
    check_case("l1", nn_l1_loss(ins[0], ins[1]), 2, ins, nm);
    ins[0] = leaf(G("smooth_l1.p")); ins[1] = leaf(G("smooth_l1.t"));
    check_case("smooth_l1", nn_smooth_l1_loss(ins[0], ins[1], 0.5), 2, ins, nm);
    ins[0] = leaf(G("smooth_l1_b0.p")); ins[1] = leaf(G("smooth_l1_b0.t"));
    check_case("smooth_l1_b0", nn_smooth_l1_loss(ins[0], ins[1], 0.0), 2, ins, nm);

    nm[0] = "x";
    for (it = 0; it < 2; it++) {
        nn_dtype idt = it ? NN_I32 : NN_I64;
        ins[0] = leaf(G("ce1.x"));
        check_case("ce1", nn_cross_entropy(ins[0], as_dtype(G("ce1.t"), idt), NULL, -100, 0.0), 1, ins, nm);
        ins[0] = leaf(G("ce2.x"));
        check_case("ce2", nn_cross_entropy(ins[0], as_dtype(G("ce2.t"), idt), G("ce2.w"), 2, 0.0), 1, ins, nm);
        ins[0] = leaf(G("ce3.x"));
        check_case("ce3", nn_cross_entropy(ins[0], as_dtype(G("ce3.t"), idt), G("ce3.w"), -100, 0.1), 1, ins, nm);
        ins[0] = leaf(G("ce4.x"));
        check_case("ce4", nn_cross_entropy(ins[0], as_dtype(G("ce4.t"), idt), G("ce4.w"), 1, 0.2), 1, ins, nm);
        ins[0] = leaf(G("ce5.x"));
        check_case("ce5", nn_cross_entropy(ins[0], as_dtype(G("ce5.t"), idt), NULL, -100, 0.3), 1, ins, nm);
        ins[0] = leaf(G("ce6.x"));  /* [C] logits, scalar target */
        check_case("ce6", nn_cross_entropy(ins[0], as_dtype(G("ce6.t"), idt), G("ce6.w"), -100, 0.05), 1, ins, nm);
    }

    nm[0] = "x"; nm[1] = "t"; nm[2] = "pw";
    ins[0] = leaf(G("bce1.x")); ins[1] = leaf(G("bce1.t")); ins[2] = leaf(G("bce1.pw"));
    check_case("bce1", nn_bce_with_logits(ins[0], ins[1], ins[2]), 3, ins, nm);
    ins[0] = leaf(G("bce2.x")); ins[1] = leaf(G("bce2.t"));
    check_case("bce2", nn_bce_with_logits(ins[0], ins[1], NULL), 2, ins, nm);

    ins[0] = leaf(G("focal1.x"));
    check_case("focal1", nn_sigmoid_focal_loss(ins[0], G("focal1.t"), 0.25, 2.0, NN_REDUCE_MEAN), 1, ins, nm);
    ins[0] = leaf(G("focal2.x"));
    check_case("focal2", nn_sigmoid_focal_loss(ins[0], G("focal2.t"), -1.0, 0.0, NN_REDUCE_SUM), 1, ins, nm);
    ins[0] = leaf(G("focal3.x")); ins[1] = leaf(G("focal3.t"));
    check_case("focal3", nn_sigmoid_focal_loss(ins[0], ins[1], 0.6, 1.5, NN_REDUCE_NONE), 2, ins, nm);
    nn_scope_end(NULL);
}

/* ------------------------------------------------------------------------------- gradchecks */
typedef struct {
    nn_tensor *idx, *mask, *w;
    int dim, keepdim, largest;
    int64_t k, ii;
    double a, b;
    nn_reduction red;
} ctx_t;

static nn_tensor *f_embedding(void *c, nn_tensor **in) { return nn_embedding(in[0], ((ctx_t *)c)->idx); }
static nn_tensor *f_index_select(void *c, nn_tensor **in) {
    return nn_index_select(in[0], ((ctx_t *)c)->dim, ((ctx_t *)c)->idx);
}
static nn_tensor *f_gather(void *c, nn_tensor **in) { return nn_gather(in[0], ((ctx_t *)c)->dim, ((ctx_t *)c)->idx); }
/* inputs that start inside a larger buffer (leading-dim slices are views with an offset) */
static nn_tensor *f_gather_view(void *c, nn_tensor **in) {
    return nn_gather(nn_slice(in[0], 0, 1, 3), ((ctx_t *)c)->dim, ((ctx_t *)c)->idx);
}
static nn_tensor *f_cross_view(void *c, nn_tensor **in) {
    return nn_cross(nn_slice(in[0], 0, 2, 4), nn_slice(in[1], 0, 1, 2), ((ctx_t *)c)->dim);
}
static nn_tensor *f_scatter_add(void *c, nn_tensor **in) {
    return nn_scatter_add(in[0], ((ctx_t *)c)->dim, ((ctx_t *)c)->idx, in[1]);
}
static nn_tensor *f_topk(void *c, nn_tensor **in) {
    ctx_t *x = (ctx_t *)c;
    nn_tensor *v;
    nn_topk(in[0], x->k, x->dim, x->largest, &v, NULL);
    return v;
}
static nn_tensor *f_where(void *c, nn_tensor **in) { return nn_where(((ctx_t *)c)->mask, in[0], in[1]); }
static nn_tensor *f_masked_fill(void *c, nn_tensor **in) { return nn_masked_fill(in[0], ((ctx_t *)c)->mask, 2.5); }
static nn_tensor *f_cross(void *c, nn_tensor **in) { return nn_cross(in[0], in[1], ((ctx_t *)c)->dim); }
static nn_tensor *f_norm(void *c, nn_tensor **in) { return nn_norm(in[0], ((ctx_t *)c)->dim, ((ctx_t *)c)->keepdim); }
static nn_tensor *f_mse(void *c, nn_tensor **in) { (void)c; return nn_mse_loss(in[0], in[1]); }
static nn_tensor *f_l1(void *c, nn_tensor **in) { (void)c; return nn_l1_loss(in[0], in[1]); }
static nn_tensor *f_sl1(void *c, nn_tensor **in) { return nn_smooth_l1_loss(in[0], in[1], ((ctx_t *)c)->a); }
static nn_tensor *f_ce(void *c, nn_tensor **in) {
    ctx_t *x = (ctx_t *)c;
    return nn_cross_entropy(in[0], x->idx, x->w, x->ii, x->a);
}
static nn_tensor *f_bce(void *c, nn_tensor **in) { (void)c; return nn_bce_with_logits(in[0], in[1], in[2]); }
static nn_tensor *f_bce2(void *c, nn_tensor **in) { (void)c; return nn_bce_with_logits(in[0], in[1], NULL); }
static nn_tensor *f_focal(void *c, nn_tensor **in) {
    ctx_t *x = (ctx_t *)c;
    return nn_sigmoid_focal_loss(in[0], in[1], x->a, x->b, x->red);
}

/* random integers in [lo, hi) as an index tensor of dtype dt */
static uint64_t rnd_ctr = 1000;
static nn_tensor *rand_idx(nn_dtype dt, int ndim, const int64_t *shape, int64_t lo, int64_t hi) {
    nn_tensor *t = nn_empty(dt, ndim, shape);
    int64_t i;
    for (i = 0; i < t->numel; i++) {
        int64_t v = lo + (int64_t)(nn_rng_uniform_at(99, rnd_ctr++) * (double)(hi - lo));
        if (v >= hi) v = hi - 1;
        if (dt == NN_I32) ((int32_t *)t->data)[i] = (int32_t)v;
        else if (dt == NN_I64) ((int64_t *)t->data)[i] = v;
        else ((uint8_t *)t->data)[i] = (uint8_t)v;
    }
    return t;
}

static void test_gradchecks(void) {
    ctx_t c;
    nn_tensor *in[3];
    memset(&c, 0, sizeof c);
    {
        int64_t ws[2] = {6, 3}, is[3] = {2, 3, 2};
        in[0] = gc_param(2, ws, -1, 1);
        c.idx = rand_idx(NN_I32, 3, is, 0, 6);
        gradcheck("embedding", f_embedding, &c, 1, in);
    }
    {
        int64_t as[3] = {3, 4, 2}, is[1] = {7};
        in[0] = gc_param(3, as, -1, 1);
        c.idx = rand_idx(NN_I64, 1, is, 0, 4); c.dim = 1;
        gradcheck("index_select dim 1", f_index_select, &c, 1, in);
        c.idx = rand_idx(NN_I64, 1, is, 0, 3); c.dim = 0;
        gradcheck("index_select dim 0", f_index_select, &c, 1, in);
    }
    {
        int64_t as[3] = {3, 4, 5}, is[3] = {2, 6, 3}, is2[3] = {3, 2, 7};
        in[0] = gc_param(3, as, -1, 1);
        c.idx = rand_idx(NN_I64, 3, is, 0, 4); c.dim = 1;
        gradcheck("gather dim 1", f_gather, &c, 1, in);
        c.idx = rand_idx(NN_I32, 3, is2, 0, 5); c.dim = -1;
        gradcheck("gather dim -1", f_gather, &c, 1, in);
        c.idx = rand_idx(NN_I64, 3, is, 0, 4); c.dim = 1;
        gradcheck("gather of a slice view", f_gather_view, &c, 1, in);
    }
    {
        int64_t as[3] = {3, 4, 5}, ss[3] = {3, 6, 5}, is[3] = {2, 6, 3};
        in[0] = gc_param(3, as, -1, 1);
        in[1] = gc_param(3, ss, -1, 1);   /* src larger than idx: the uncovered part gets zero gradient */
        c.idx = rand_idx(NN_I64, 3, is, 0, 4); c.dim = 1;
        gradcheck("scatter_add dim 1", f_scatter_add, &c, 2, in);
    }
    {
        /* distinct values 0.1 apart so that the +-h of the check never reorders them */
        int64_t as[3] = {2, 7, 3}, i;
        nn_tensor *a = nn_empty(NN_F32, 3, as);
        for (i = 0; i < a->numel; i++) ((float *)a->data)[i] = (float)(0.1 * (double)((i * 17) % 42) - 2.0);
        nn_requires_grad(a, 1);
        in[0] = a;
        c.k = 3; c.dim = 1; c.largest = 1;
        gradcheck("topk largest", f_topk, &c, 1, in);
        c.k = 4; c.dim = 1; c.largest = 0;
        gradcheck("topk smallest", f_topk, &c, 1, in);
        c.k = 2; c.dim = -1; c.largest = 1;
        gradcheck("topk last dim", f_topk, &c, 1, in);
    }
    {
        int64_t cs[3] = {2, 1, 4}, as[2] = {3, 1}, bs[1] = {4};
        c.mask = rand_idx(NN_BOOL, 3, cs, 0, 2);
        in[0] = gc_param(2, as, -1, 1);
        in[1] = gc_param(1, bs, -1, 1);
        gradcheck("where broadcast", f_where, &c, 2, in);
    }
    {
        int64_t as[2] = {3, 4}, ms[3] = {2, 1, 4};
        c.mask = rand_idx(NN_U8, 3, ms, 0, 2);
        in[0] = gc_param(2, as, -1, 1);
        gradcheck("masked_fill broadcast", f_masked_fill, &c, 1, in);
    }
    {
        int64_t as[3] = {2, 1, 3}, bs[2] = {4, 3}, cs[3] = {3, 2, 4};
        in[0] = gc_param(3, as, -1, 1);
        in[1] = gc_param(2, bs, -1, 1);
        c.dim = -1;
        gradcheck("cross broadcast", f_cross, &c, 2, in);
        in[0] = gc_param(3, cs, -1, 1);
        in[1] = gc_param(3, cs, -1, 1);
        c.dim = 0;
        gradcheck("cross dim 0", f_cross, &c, 2, in);
        {
            int64_t vs[3] = {5, 3, 2}, ws[3] = {3, 3, 2};
            in[0] = gc_param(3, vs, -1, 1);
            in[1] = gc_param(3, ws, -1, 1);
            c.dim = 1;
            gradcheck("cross of slice views", f_cross_view, &c, 2, in);
        }
    }
    {
        int64_t as[3] = {3, 4, 5};
        in[0] = gc_param(3, as, -1, 1);
        c.dim = 1; c.keepdim = 0;
        gradcheck("norm dim 1", f_norm, &c, 1, in);
        c.dim = -1; c.keepdim = 1;
        gradcheck("norm dim -1 keepdim", f_norm, &c, 1, in);
    }
    {
        int64_t ps[2] = {3, 5};
        in[0] = gc_param(2, ps, -1, 1);
        in[1] = gc_param(2, ps, -1, 1);
        gradcheck("mse_loss", f_mse, NULL, 2, in);
        gradcheck("l1_loss", f_l1, NULL, 2, in);
        c.a = 0.3;
        gradcheck("smooth_l1_loss beta 0.3", f_sl1, &c, 2, in);
    }
    {
        int64_t xs[2] = {5, 4}, ts[1] = {5}, ws[1] = {4}, xs4[4] = {2, 3, 2, 2}, ts4[3] = {2, 2, 2};
        in[0] = gc_param(2, xs, -3, 3);
        c.idx = rand_idx(NN_I64, 1, ts, 0, 4);
        ((int64_t *)c.idx->data)[2] = -100;
        c.w = NULL; c.ii = -100; c.a = 0;
        gradcheck("cross_entropy", f_ce, &c, 1, in);
        c.w = nn_uniform(1, ws, 0.2, 2.0);
        c.a = 0.15;
        gradcheck("cross_entropy weight smoothing", f_ce, &c, 1, in);
        in[0] = gc_param(4, xs4, -3, 3);
        c.idx = rand_idx(NN_I32, 3, ts4, 0, 3);
        c.w = nn_uniform(1, xs4 + 1, 0.5, 1.5);   /* [3]: C = 3 */
        c.ii = 1; c.a = 0.25;
        gradcheck("cross_entropy [N,C,d1,d2] weight ignore smoothing", f_ce, &c, 1, in);
    }
    {
        int64_t xs[3] = {2, 3, 4}, ps[1] = {4};
        in[0] = gc_param(3, xs, -3, 3);
        in[1] = gc_param(3, xs, 0, 1);
        in[2] = gc_param(1, ps, 0.5, 2.5);
        gradcheck("bce_with_logits pos_weight", f_bce, NULL, 3, in);
        gradcheck("bce_with_logits", f_bce2, NULL, 2, in);
    }
    {
        int64_t xs[2] = {3, 4};
        in[0] = gc_param(2, xs, -3, 3);
        in[1] = gc_param(2, xs, 0, 1);
        c.a = 0.25; c.b = 2.0; c.red = NN_REDUCE_MEAN;
        gradcheck("focal mean", f_focal, &c, 2, in);
        c.a = -1; c.b = 1.5; c.red = NN_REDUCE_NONE;
        gradcheck("focal none", f_focal, &c, 2, in);
        c.a = 0.7; c.b = 0.0; c.red = NN_REDUCE_SUM;
        gradcheck("focal sum gamma 0", f_focal, &c, 2, in);
    }
}

/* ------------------------------------------------------------------------------- errors */
static jmp_buf err_jb;
static char err_msg[1024];
static void on_error(const char *msg, void *user) {
    (void)user;
    snprintf(err_msg, sizeof err_msg, "%s", msg);
    longjmp(err_jb, 1);
}
/* stmt must report an error whose text contains s1 and s2 */
#define EXPECT_ERROR(stmt, s1, s2) do { \
    err_msg[0] = 0; \
    if (setjmp(err_jb) == 0) { stmt; CHECK(0, "no error from %s", #stmt); } \
    else CHECK(strstr(err_msg, s1) && strstr(err_msg, s2), "error text of %s: \"%s\" lacks \"%s\"/\"%s\"", \
               #stmt, err_msg, s1, s2); \
} while (0)

static void test_errors(void) {
    int64_t s2[2] = {5, 3}, s3[3] = {2, 3, 4}, s1[1] = {4}, s24[2] = {2, 4}, s43[2] = {4, 3}, s34[2] = {3, 4};
    nn_tensor *w = nn_zeros(NN_F32, 2, s2), *a3 = nn_zeros(NN_F32, 3, s3), *f4 = nn_zeros(NN_F32, 1, s1);
    nn_tensor *idx = nn_zeros(NN_I64, 2, s24), *i32 = nn_zeros(NN_I32, 1, s1), *x43 = nn_zeros(NN_F32, 2, s43);
    nn_tensor *x34 = nn_zeros(NN_F32, 2, s34), *m34 = nn_zeros(NN_BOOL, 2, s34), *t4 = nn_zeros(NN_I64, 1, s1);
    nn_tensor *v, *ix;
    nn_set_error_handler(on_error, NULL);

    ((int64_t *)idx->data)[5] = 5;
    EXPECT_ERROR(nn_embedding(w, idx), "nn_embedding: index 5 out of range [0,5)", "[5,3]");
    ((int64_t *)idx->data)[5] = -1;
    EXPECT_ERROR(nn_embedding(w, idx), "nn_embedding: index -1 out of range", "[2,4]");
    ((int64_t *)idx->data)[5] = 0;
    EXPECT_ERROR(nn_embedding(w, f4), "nn_embedding: idx must be i32 or i64, got f32", "[4]");
    EXPECT_ERROR(nn_embedding(a3, idx), "nn_embedding: weight must be [num, dim]", "[2,3,4]");
    EXPECT_ERROR(nn_embedding(idx, idx), "nn_embedding: weight must be f32, got i64", "[2,4]");

    ((int32_t *)i32->data)[2] = 3;
    EXPECT_ERROR(nn_index_select(a3, 1, i32), "nn_index_select: index 3 out of range [0,3)", "[2,3,4]");
    EXPECT_ERROR(nn_index_select(a3, 1, idx), "nn_index_select: index must be 1-D", "[2,4]");
    EXPECT_ERROR(nn_index_select(a3, 3, t4), "nn_index_select", "dim");

    EXPECT_ERROR(nn_gather(a3, 0, idx), "nn_gather: index [2,4] must have as many dims as input [2,3,4]", "");
    {
        int64_t big[3] = {2, 4, 4};
        nn_tensor *ib = nn_zeros(NN_I64, 3, big);
        EXPECT_ERROR(nn_gather(a3, 2, ib), "nn_gather: index [2,4,4] is larger than input [2,3,4] in dim 1", "");
        ((int64_t *)ib->data)[7] = 4;
        EXPECT_ERROR(nn_gather(a3, 1, ib), "nn_gather: index 4 out of range [0,3) for dim 1", "[2,3,4]");
    }
    EXPECT_ERROR(nn_scatter_add(x34, 1, idx, x43), "nn_scatter_add: index [2,4] is larger than src [4,3]", "");
    {
        nn_tensor *ii = nn_zeros(NN_I64, 2, s24);
        ((int64_t *)ii->data)[0] = 9;
        EXPECT_ERROR(nn_scatter_add(x34, 1, ii, x34), "nn_scatter_add: index 9 out of range [0,4)", "[3,4]");
        EXPECT_ERROR(nn_scatter_add(x34, 1, ii, idx), "nn_scatter_add: src must be f32, got i64", "");
    }

    EXPECT_ERROR(nn_topk(x34, 5, 1, 1, &v, &ix), "nn_topk: k = 5 out of range [0,4]", "[3,4]");
    EXPECT_ERROR(nn_topk(x34, 1, 2, 1, &v, &ix), "nn_topk", "dim");

    EXPECT_ERROR(nn_where(x34, x34, x34), "nn_where: cond must be bool or u8, got f32", "[3,4]");
    EXPECT_ERROR(nn_where(m34, x43, x34), "nn_where: shapes [3,4], [4,3] and [3,4] do not broadcast", "");
    EXPECT_ERROR(nn_where(m34, x34, t4), "nn_where: b must be f32, got i64", "");
    EXPECT_ERROR(nn_masked_fill(x43, m34, 0), "nn_masked_fill: shapes [4,3] and [3,4] do not broadcast", "");
    EXPECT_ERROR(nn_masked_fill(x34, i32, 0), "nn_masked_fill: mask must be bool or u8, got i32", "");

    EXPECT_ERROR(nn_cross(x34, x34, 1), "nn_cross: dim 1 must have length 3 in both inputs", "[3,4]");
    EXPECT_ERROR(nn_cross(x43, x34, -1), "nn_cross: shapes [4,3] and [3,4] do not broadcast", "");
    EXPECT_ERROR(nn_norm(x34, 2, 0), "nn_norm", "dim");

    EXPECT_ERROR(nn_mse_loss(x34, x43), "nn_mse_loss: input [3,4] and target [4,3] must have the same shape", "");
    EXPECT_ERROR(nn_l1_loss(x34, m34), "nn_l1_loss: target must be f32, f16 or bf16, got bool", "[3,4]");
    EXPECT_ERROR(nn_smooth_l1_loss(x34, x34, -1), "nn_smooth_l1_loss: beta must be >= 0", "");

    ((int64_t *)t4->data)[1] = 3;
    EXPECT_ERROR(nn_cross_entropy(x43, t4, NULL, -100, 0), "nn_cross_entropy: target 3 out of range [0,3)", "[4,3]");
    ((int64_t *)t4->data)[1] = -100;
    EXPECT_ERROR(nn_cross_entropy(x34, t4, NULL, -100, 0), "nn_cross_entropy: target [4] does not match logits [3,4]",
                 "");
    EXPECT_ERROR(nn_cross_entropy(x43, f4, NULL, -100, 0), "nn_cross_entropy: target must be i32 or i64, got f32", "");
    EXPECT_ERROR(nn_cross_entropy(x43, t4, f4, -100, 0), "nn_cross_entropy: weight [4] must be [C] = [3]", "[4,3]");
    EXPECT_ERROR(nn_cross_entropy(x43, t4, NULL, -100, 1.5), "nn_cross_entropy: label_smoothing must be in [0,1]", "");
    EXPECT_ERROR(nn_bce_with_logits(x34, x43, NULL), "nn_bce_with_logits: logits [3,4] and target [4,3]", "same shape");
    EXPECT_ERROR(nn_bce_with_logits(x43, x43, f4), "nn_bce_with_logits: shapes [4,3] and [4] do not broadcast", "");
    EXPECT_ERROR(nn_bce_with_logits(x43, x43, x34), "nn_bce_with_logits", "[3,4]");
    EXPECT_ERROR(nn_sigmoid_focal_loss(x34, x43, 0.25, 2, NN_REDUCE_MEAN), "nn_sigmoid_focal_loss: logits [3,4]",
                 "same shape");
    nn_set_error_handler(NULL, NULL);
}

/* --------------------------------------------------------- semantics that fixtures do not pin down */
static void test_semantics(void) {
    nn_tensor *v, *ix;
    nn_scope_begin();
    {
        /* topk ties: lower index first; NaN counts as the largest (first when largest, last otherwise) */
        float d[8] = {1, 3, 3, 2, 3, 0, NAN, 3};
        int64_t s[1] = {8};
        int64_t want_l[4] = {6, 1, 2, 4}, want_s[4] = {5, 0, 3, 1};
        nn_tensor *a = nn_from_data(NN_F32, 1, s, d);
        int k, ok = 1;
        nn_topk(a, 4, 0, 1, &v, &ix);
        for (k = 0; k < 4; k++) ok &= ((int64_t *)ix->data)[k] == want_l[k];
        CHECK(ok && isnan(((float *)v->data)[0]) && ((float *)v->data)[3] == 3, "topk ties/NaN order (largest)");
        nn_topk(a, 4, 0, 0, &v, &ix);
        ok = 1;
        for (k = 0; k < 4; k++) ok &= ((int64_t *)ix->data)[k] == want_s[k];
        CHECK(ok, "topk ties order (smallest)");
        nn_topk(a, 8, 0, 0, &v, &ix);
        CHECK(((int64_t *)ix->data)[7] == 6, "topk smallest puts NaN last");
        nn_topk(a, 0, 0, 1, &v, &ix);
        CHECK(v->numel == 0 && ix->numel == 0, "topk k = 0 gives empty outputs");
        nn_topk(a, 2, 0, 1, NULL, &ix);
        CHECK(((int64_t *)ix->data)[1] == 1, "topk with values = NULL");
    }
    {
        /* cross_entropy: every target ignored -> NaN (torch: 0/0); huge logits stay finite */
        int64_t s[2] = {2, 3}, ts[1] = {2};
        float xd[6] = {1000, -1000, 0, 88, 89, 90};
        int64_t td[2] = {0, 2};
        nn_tensor *x = nn_from_data(NN_F32, 2, s, xd), *t = nn_from_data(NN_I64, 1, ts, td), *l;
        l = nn_cross_entropy(x, t, NULL, -100, 0);
        /* sample 0: lse = 1000 + log(1 + e^-1000 + e^-2000) -> 0; sample 1: log(e^-2 + e^-1 + 1) */
        CHECK_CLOSE(nn_item(l), 0.5 * log(exp(-2.0) + exp(-1.0) + 1.0), 1e-6, 1e-5, "cross_entropy large logits");
        l = nn_cross_entropy(x, t, NULL, 0, 0);
        CHECK_CLOSE(nn_item(l), log(exp(-2.0) + exp(-1.0) + 1.0), 1e-6, 1e-5, "cross_entropy ignore_index 0");
        td[1] = 0;
        t = nn_from_data(NN_I64, 1, ts, td);
        l = nn_cross_entropy(x, t, NULL, 0, 0);
        CHECK(isnan(nn_item(l)), "cross_entropy with every target ignored is NaN like torch");
    }
    {
        /* bce: |x| = 100 neither overflows nor loses the linear part */
        int64_t s[1] = {2};
        float xd[2] = {100, -100}, yd[2] = {0, 0};
        nn_tensor *x = nn_from_data(NN_F32, 1, s, xd), *y = nn_from_data(NN_F32, 1, s, yd);
        CHECK_CLOSE(nn_item(nn_bce_with_logits(x, y, NULL)), 50.0, 1e-6, 1e-6, "bce_with_logits at |x| = 100");
        CHECK_CLOSE(nn_item(nn_sigmoid_focal_loss(x, y, -1, 2, NN_REDUCE_SUM)), 100.0, 1e-6, 1e-6,
                    "focal at |x| = 100 (m = p = 1 for x = 100)");
    }
    {
        /* norm: gradient 0 at the zero vector */
        int64_t s[2] = {2, 3};
        float d[6] = {0, 0, 0, 3, 4, 0};
        nn_tensor *a = nn_from_data(NN_F32, 2, s, d), *n;
        nn_requires_grad(a, 1);
        n = nn_norm(a, 1, 0);
        CHECK(((float *)n->data)[0] == 0 && ((float *)n->data)[1] == 5, "norm values");
        nn_backward(nn_sum_all(n));
        CHECK(a->grad && ((float *)a->grad->data)[0] == 0 && ((float *)a->grad->data)[1] == 0 &&
              fabs(((float *)a->grad->data)[3] - 0.6) < 1e-6, "norm gradient at 0 is 0");
        nn_zero_grad(a);
    }
    nn_scope_end(NULL);
}

/* ------------------------------------------- parallel paths against serial references */
static void test_parallel(void) {
    nn_scope_begin();
    {
        /* embedding backward with many repeated indices (tiled scatter) vs. a serial sum */
        int64_t ws[2] = {50, 300}, is[1] = {20000}, i, k, bad = 0;
        nn_tensor *w = nn_uniform(2, ws, -1, 1), *idx = rand_idx(NN_I64, 1, is, 0, 50), *y, *g;
        double *ref = (double *)calloc((size_t)(50 * 300), sizeof(double));
        nn_requires_grad(w, 1);
        y = nn_embedding(w, idx);
        g = nn_uniform(y->ndim, y->shape, -1, 1);
        for (i = 0; i < 20000; i++) {
            int64_t r = ((int64_t *)idx->data)[i];
            for (k = 0; k < 300; k++) ref[r * 300 + k] += ((float *)g->data)[i * 300 + k];
            for (k = 0; k < 300; k++) bad += ((float *)y->data)[i * 300 + k] != ((float *)w->data)[r * 300 + k];
        }
        CHECK(bad == 0, "embedding forward (large) copies rows");
        nn_backward_with(1, &y, &g);
        bad = 0;
        for (i = 0; i < 50 * 300; i++) bad += fabs(((float *)w->grad->data)[i] - ref[i]) > 1e-3;
        CHECK(bad == 0, "embedding backward (large): %lld of %d elements off", (long long)bad, 50 * 300);
        free(ref);
        nn_zero_grad(w);
    }
    {
        /* scatter_add forward (lines in parallel) vs. serial, with heavy collisions */
        int64_t as[2] = {400, 64}, ss[2] = {3000, 64}, i, k, bad = 0;
        nn_tensor *a = nn_uniform(2, as, -1, 1), *src = nn_uniform(2, ss, -1, 1);
        nn_tensor *idx = rand_idx(NN_I32, 2, ss, 0, 400), *o;
        double *ref = (double *)malloc(sizeof(double) * 400 * 64);
        for (i = 0; i < 400 * 64; i++) ref[i] = ((float *)a->data)[i];
        for (i = 0; i < 3000; i++)
            for (k = 0; k < 64; k++) ref[((int32_t *)idx->data)[i * 64 + k] * 64 + k] += ((float *)src->data)[i * 64 + k];
        o = nn_scatter_add(a, 0, idx, src);
        for (i = 0; i < 400 * 64; i++) bad += fabs(((float *)o->data)[i] - ref[i]) > 1e-3;
        CHECK(bad == 0, "scatter_add (large, dim 0): %lld elements off", (long long)bad);
        free(ref);
    }
    {
        /* topk (quickselect + sort) vs. a brute-force rank, with many ties, along a middle dim */
        int64_t as[3] = {7, 3000, 5}, i, bad = 0, o, c, j, kk;
        int largest;
        nn_tensor *a = nn_empty(NN_F32, 3, as), *v, *ix;
        for (i = 0; i < a->numel; i++) ((float *)a->data)[i] = (float)(int)(nn_rng_uniform_at(5, (uint64_t)i) * 50);
        for (largest = 0; largest < 2; largest++)
            for (kk = 1; kk <= 3000; kk += 1499) {  /* 1, 1500, 2999 */
                nn_topk(a, kk, 1, largest, &v, &ix);
                for (o = 0; o < 7; o++)
                    for (c = 0; c < 5; c++) {
                        /* expected: the order (value, then index); element e's rank = #elements before it */
                        const float *col = (const float *)a->data + o * 3000 * 5 + c;
                        for (j = 0; j < kk; j++) {
                            int64_t e = ((int64_t *)ix->data)[(o * kk + j) * 5 + c], rank = 0, m;
                            float ve = col[e * 5];
                            for (m = 0; m < 3000; m++) {
                                float vm = col[m * 5];
                                rank += largest ? (vm > ve || (vm == ve && m < e)) : (vm < ve || (vm == ve && m < e));
                            }
                            bad += rank != j || ((float *)v->data)[(o * kk + j) * 5 + c] != ve;
                        }
                    }
            }
        CHECK(bad == 0, "topk (large, ties) against brute force: %lld entries off", (long long)bad);
    }
    {
        /* where / masked_fill with an attention-mask-like broadcast ([B,1,1,L] over [B,H,Lq,L]) */
        int64_t cs[4] = {2, 1, 1, 300}, as[4] = {2, 4, 50, 300}, bs[3] = {4, 50, 1}, i, bad = 0;
        nn_tensor *cond = rand_idx(NN_BOOL, 4, cs, 0, 2), *a = nn_uniform(4, as, -1, 1), *b = nn_uniform(3, bs, -1, 1);
        nn_tensor *w = nn_where(cond, a, b), *m = nn_masked_fill(a, cond, -7.0);
        for (i = 0; i < a->numel; i++) {
            int64_t l = i % 300, q = (i / 300) % 50, h = (i / 15000) % 4, bb = i / 60000;
            int cv = ((uint8_t *)cond->data)[bb * 300 + l] != 0;
            float av = ((float *)a->data)[i], bv = ((float *)b->data)[h * 50 + q];
            bad += ((float *)w->data)[i] != (cv ? av : bv);
            bad += ((float *)m->data)[i] != (cv ? -7.0f : av);
        }
        CHECK(bad == 0, "where / masked_fill (large, broadcast): %lld elements off", (long long)bad);
    }
    {
        /* cross_entropy on a big batch: finite, matches a serial double evaluation */
        int64_t xs[2] = {4096, 37}, ts[1] = {4096}, i, c;
        nn_tensor *x = nn_uniform(2, xs, -5, 5), *t = rand_idx(NN_I64, 1, ts, 0, 37);
        double ref = 0;
        for (i = 0; i < 4096; i++) {
            double mx = -1e30, s = 0;
            const float *r = (const float *)x->data + i * 37;
            for (c = 0; c < 37; c++) if (r[c] > mx) mx = r[c];
            for (c = 0; c < 37; c++) s += exp(r[c] - mx);
            ref += mx + log(s) - r[((int64_t *)t->data)[i]];
        }
        CHECK_CLOSE(nn_item(nn_cross_entropy(x, t, NULL, -100, 0)), ref / 4096, 1e-5, 1e-5, "cross_entropy (large)");
    }
    nn_scope_end(NULL);
}

int main(void) {
    FX = fx_load(FIXTURE_DIR "/index_loss.txt");
    CHECK(fx_has(&FX, "ce4.dx"), "fixture file complete");
    test_fixtures();
    nn_scope_begin();  /* frees what the checks below create */
    test_gradchecks();
    test_errors();
    nn_scope_end(NULL);
    test_semantics();
    test_parallel();
    fx_free(&FX);
    nn_shutdown();
    return test_summary();
}
