/* tests/kit_loader.c - the data loader: every item exactly once per epoch with 0, 1 and several
   workers; batches the same whatever the worker count (order and augmentation); padding collate and
   masks; drop_last; errors from get_item; restarting an epoch and freeing mid-epoch; prefetch depth. */
#define KIT_IMPLEMENTATION
#include "kit.h"
#include "test.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N 103
#define MAXL 9

typedef struct {
    pthread_mutex_t mu;
    long calls;
    long fail_at;     /* item index whose get_item fails, or -1 */
    int too_long_at;  /* item index that reports a length over max_len, or -1 */
    int slow;         /* sleep a little in some items, to scramble completion order */
} ctx_t;

static void nap_us(long us) {
    struct timespec ts;
    ts.tv_sec = 0;
    ts.tv_nsec = us * 1000;
    nanosleep(&ts, NULL);
}

/* fields: 0 id (i32), 1 seq (f32, rows of 2: {index, row}, 1 + index % 9 rows), 2 aug (f32, one draw from rng) */
static int get_item(void *vctx, size_t index, void *const *fields, size_t *lengths, kit_rng *rng, kit_err *err) {
    ctx_t *c = (ctx_t *)vctx;
    int32_t *id = (int32_t *)fields[0];
    float *seq = (float *)fields[1], *aug = (float *)fields[2];
    size_t j, len = 1 + index % MAXL;
    pthread_mutex_lock(&c->mu);
    c->calls++;
    pthread_mutex_unlock(&c->mu);
    if (c->slow && index % 7 == 0) nap_us(300);
    if ((long)index == c->fail_at) return kit_fail(err, KIT_ERR_IO, "cannot read 'item%03lu.png': boom", (unsigned long)index);
    *id = (int32_t)index;
    for (j = 0; j < len; j++) { seq[2 * j] = (float)index; seq[2 * j + 1] = (float)j; }
    lengths[1] = (long)index == c->too_long_at ? MAXL + 1 : len;
    *aug = (float)kit_rng_uniform(rng);
    return 0;
}

static kit_dataset make_ds(ctx_t *c) {
    kit_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.len = N;
    ds.nfields = 3;
    ds.fields[0].name = "id"; ds.fields[0].dtype = KIT_I32; ds.fields[0].inner = 1; ds.fields[0].max_len = 1;
    ds.fields[1].name = "seq"; ds.fields[1].dtype = KIT_F32; ds.fields[1].inner = 2; ds.fields[1].max_len = MAXL; ds.fields[1].variable = 1;
    ds.fields[2].name = "aug"; ds.fields[2].dtype = KIT_F32; ds.fields[2].inner = 1; ds.fields[2].max_len = 1;
    ds.get_item = get_item;
    ds.ctx = c;
    return ds;
}

static void ctx_init(ctx_t *c) {
    pthread_mutex_init(&c->mu, NULL);
    c->calls = 0;
    c->fail_at = -1;
    c->too_long_at = -1;
    c->slow = 1;
}

/* Checks one batch's contents against the dataset's definition. Returns 1 if all is well. */
static int batch_ok(const kit_batch *b) {
    const int32_t *id = (const int32_t *)b->data[0];
    const float *seq = (const float *)b->data[1];
    size_t i, j, L = b->len[1], maxlen = 0;
    for (i = 0; i < b->size; i++) {
        size_t idx = b->items[i], len = 1 + idx % MAXL;
        if ((size_t)id[i] != idx || b->lengths[1][i] != len) return 0;
        if (len > maxlen) maxlen = len;
        for (j = 0; j < L; j++) {
            const float *r = seq + (i * L + j) * 2;
            float m = b->mask[1][i * L + j];
            if (j < len ? (r[0] != (float)idx || r[1] != (float)j || m != 1.0f) : (r[0] != 0 || r[1] != 0 || m != 0.0f)) return 0;
        }
    }
    return L == maxlen && b->len[0] == 1 && b->mask[0] == NULL && b->mask[2] == NULL;
}

/* Runs `epochs` epochs; records the item order and aug values of each. */
static void run(int workers, size_t bs, int drop_last, int shuffle, uint64_t seed, int epochs, size_t *order, float *aug) {
    ctx_t c;
    kit_dataset ds;
    kit_loader_opts o;
    kit_loader *L;
    kit_batch b;
    kit_err err;
    int e, rc;
    ctx_init(&c);
    ds = make_ds(&c);
    memset(&o, 0, sizeof o);
    o.batch_size = bs; o.workers = workers; o.prefetch = 2; o.shuffle = shuffle; o.drop_last = drop_last; o.seed = seed;
    L = kit_loader_new(&ds, &o, &err);
    CHECK(L != NULL, "loader: %s", err.msg);
    if (!L) return;
    for (e = 0; e < epochs; e++) {
        int seen[N] = {0}, ok = 1, sizes_ok = 1;
        size_t count = 0, nb = 0, expect = drop_last ? (N / bs) * bs : N, i;
        kit_loader_start_epoch(L, (uint64_t)e);
        while ((rc = kit_loader_next(L, &b, &err)) == 1) {
            if (!batch_ok(&b)) ok = 0;
            if (b.index != nb) sizes_ok = 0;
            if (b.size != (nb + 1 < kit_loader_num_batches(L) || drop_last || N % bs == 0 ? bs : N % bs)) sizes_ok = 0;
            for (i = 0; i < b.size; i++) {
                seen[b.items[i]]++;
                if (order) order[e * N + count] = b.items[i];
                if (aug) aug[e * N + count] = ((const float *)b.data[2])[i];
                count++;
            }
            nb++;
        }
        CHECK(rc == 0, "epoch ends cleanly");
        CHECK(ok, "w=%d bs=%lu: batch contents, padding and masks", workers, (unsigned long)bs);
        CHECK(sizes_ok && nb == kit_loader_num_batches(L), "w=%d bs=%lu drop=%d: batch sizes and count", workers, (unsigned long)bs, drop_last);
        CHECK(count == expect, "w=%d bs=%lu: %lu items, expected %lu", workers, (unsigned long)bs, (unsigned long)count, (unsigned long)expect);
        for (i = 0; i < N; i++) if (seen[i] > 1 || (!drop_last && seen[i] != 1)) break;
        CHECK(i == N, "w=%d bs=%lu drop=%d epoch %d: every item exactly once (item %lu seen %d times)", workers, (unsigned long)bs,
              drop_last, e, (unsigned long)i, i < N ? seen[i] : 0);
    }
    kit_loader_free(L);
    pthread_mutex_destroy(&c.mu);
}

static void test_exactly_once_and_reproducible(void) {
    static size_t ord0[3 * N], ord1[3 * N], ord4[3 * N];
    static float aug0[3 * N], aug4[3 * N];
    static const size_t sizes[] = {1, 8, 10, N, N + 5};
    size_t s;
    int i, sorted;
    for (s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        run(0, sizes[s], 0, 1, 42, 2, NULL, NULL);
        run(1, sizes[s], 0, 1, 42, 2, NULL, NULL);
        run(4, sizes[s], 0, 1, 42, 2, NULL, NULL);
        run(3, sizes[s], 1, 1, 42, 1, NULL, NULL);
    }
    run(0, 8, 0, 1, 42, 3, ord0, aug0);
    run(1, 8, 0, 1, 42, 3, ord1, NULL);
    run(4, 8, 0, 1, 42, 3, ord4, aug4);
    CHECK(!memcmp(ord0, ord1, sizeof ord0) && !memcmp(ord0, ord4, sizeof ord0), "same seed: same order with 0, 1 and 4 workers");
    CHECK(!memcmp(aug0, aug4, sizeof aug0), "same seed: same per-item random draws with 0 and 4 workers");
    CHECK(memcmp(ord0, ord0 + N, N * sizeof(size_t)) != 0, "epochs are shuffled differently");
    run(4, 8, 0, 1, 43, 1, ord1, NULL);
    CHECK(memcmp(ord0, ord1, N * sizeof(size_t)) != 0, "another seed, another order");
    run(4, 8, 0, 0, 42, 1, ord1, NULL);
    for (i = 0, sorted = 1; i < N; i++) if (ord1[i] != (size_t)i) sorted = 0;
    CHECK(sorted, "shuffle off keeps dataset order");
}

static void test_errors(void) {
    ctx_t c;
    kit_dataset ds;
    kit_loader_opts o;
    kit_loader *L;
    kit_batch b;
    kit_err err;
    int rc, nerr = 0, workers;
    size_t items = 0;
    for (workers = 0; workers <= 3; workers += 3) {
        ctx_init(&c);
        c.fail_at = 50;
        ds = make_ds(&c);
        memset(&o, 0, sizeof o);
        o.batch_size = 4; o.workers = workers; o.shuffle = 0;
        L = kit_loader_new(&ds, &o, &err);
        kit_loader_start_epoch(L, 0);
        nerr = 0;
        items = 0;
        while ((rc = kit_loader_next(L, &b, &err)) != 0) {
            if (rc < 0) {
                nerr++;
                CHECK(!strcmp(err.msg, "dataset item 50 (batch 12): cannot read 'item050.png': boom") && err.code == KIT_ERR_IO, "message: %s",
                      err.msg);
            }
            items += b.size;
        }
        CHECK(nerr == 1 && items == N, "w=%d: one failed batch, then the epoch goes on (%d errors, %lu items)", workers, nerr, (unsigned long)items);
        kit_loader_free(L);

        ctx_init(&c);
        c.too_long_at = 7;
        ds = make_ds(&c);
        L = kit_loader_new(&ds, &o, &err);
        kit_loader_start_epoch(L, 0);
        nerr = 0;
        while ((rc = kit_loader_next(L, &b, &err)) != 0)
            if (rc < 0) {
                nerr++;
                CHECK(!strcmp(err.msg, "dataset item 7 (batch 1): set length 10 for field 'seq', more than its max_len 9"), "message: %s", err.msg);
            }
        CHECK(nerr == 1, "length over max_len is an error");
        kit_loader_free(L);
    }
    memset(&o, 0, sizeof o);
    CHECK(kit_loader_new(&ds, &o, &err) == NULL && strstr(err.msg, "batch_size >= 1"), "batch_size 0 refused: %s", err.msg);
    ds.fields[1].inner = 0;
    o.batch_size = 2;
    CHECK(kit_loader_new(&ds, &o, &err) == NULL && !strcmp(err.msg, "kit_loader_new: field 1 ('seq') has a zero size"), "zero field: %s", err.msg);
}

static void test_restart_free_prefetch(void) {
    ctx_t c;
    kit_dataset ds;
    kit_loader_opts o;
    kit_loader *L;
    kit_batch b;
    kit_err err;
    long calls;
    int i, n, ok;
    ctx_init(&c);
    c.slow = 0;
    ds = make_ds(&c);
    memset(&o, 0, sizeof o);
    o.batch_size = 5; o.workers = 2; o.prefetch = 2; o.shuffle = 1; o.seed = 9;
    L = kit_loader_new(&ds, &o, &err);
    kit_loader_start_epoch(L, 0);
    for (i = 0; i < 200; i++) { /* workers fill the free slots without being asked ... */
        pthread_mutex_lock(&c.mu);
        calls = c.calls;
        pthread_mutex_unlock(&c.mu);
        if (calls >= 15) break;
        nap_us(10000);
    }
    nap_us(20000);
    pthread_mutex_lock(&c.mu);
    calls = c.calls;
    pthread_mutex_unlock(&c.mu);
    CHECK(calls == 15, "prefetch: 3 slots x 5 items loaded ahead, no more (got %ld)", calls);
    kit_loader_next(L, &b, &err); /* ... and refill the freed slot as the consumer moves on */
    kit_loader_next(L, &b, &err);
    for (i = 0; i < 200; i++) {
        pthread_mutex_lock(&c.mu);
        calls = c.calls;
        pthread_mutex_unlock(&c.mu);
        if (calls >= 20) break;
        nap_us(10000);
    }
    CHECK(calls == 20, "one batch consumed and released: one more loaded (got %ld)", calls);
    kit_loader_start_epoch(L, 1); /* restart mid-epoch: a full, correct epoch follows */
    n = 0;
    ok = 1;
    while (kit_loader_next(L, &b, &err) == 1) { n += (int)b.size; if (!batch_ok(&b)) ok = 0; }
    CHECK(n == N && ok, "restarted epoch complete (%d items)", n);
    kit_loader_start_epoch(L, 2);
    kit_loader_next(L, &b, &err);
    kit_loader_free(L); /* mid-epoch, workers busy or waiting: must join cleanly */
    CHECK(1, "freed mid-epoch");
    L = kit_loader_new(&ds, &o, &err);
    CHECK(kit_loader_next(L, &b, &err) == 0, "no epoch started: no batch");
    kit_loader_free(L); /* never started */
    pthread_mutex_destroy(&c.mu);
}

static void test_collate_and_shuffle(void) {
    float buf[3 * 4 * 2], out[3 * 4 * 2], mask[12];
    size_t lens[3] = {2, 4, 1}, L, i, idx[50];
    unsigned char bytes[3 * 4] = {1, 2, 0, 0, 3, 4, 5, 6, 7, 0, 0, 0}, bmask_ok;
    int seen[50] = {0}, perm_ok = 1;
    for (i = 0; i < 24; i++) buf[i] = (float)(i + 1);
    L = kit_collate_pad(buf, 4 * 2 * sizeof(float), lens, 3, 2, sizeof(float), out, mask);
    CHECK(L == 4, "L is the longest");
    CHECK(out[0] == 1 && out[3] == 4 && out[4] == 0 && out[7] == 0, "item 0: two rows, then zeros");
    CHECK(out[8] == 9 && out[15] == 16, "item 1 full");
    CHECK(out[16] == 17 && out[17] == 18 && out[18] == 0 && out[23] == 0, "item 2: one row");
    CHECK(mask[0] == 1 && mask[1] == 1 && mask[2] == 0 && mask[7] == 1 && mask[8] == 1 && mask[9] == 0, "mask 1 valid / 0 pad");
    lens[1] = 2;
    L = kit_collate_pad(buf, 4 * 2 * sizeof(float), lens, 3, 2, sizeof(float), buf, NULL); /* in place, shorter L */
    CHECK(L == 2 && buf[0] == 1 && buf[3] == 4 && buf[4] == 9 && buf[7] == 12 && buf[8] == 17 && buf[9] == 18 && buf[10] == 0 && buf[11] == 0,
          "in-place packing to [3, 2, 2]");
    lens[0] = 2; lens[1] = 4; lens[2] = 1;
    L = kit_collate_pad(bytes, 4, lens, 3, 1, 1, bytes, mask);
    bmask_ok = mask[4 + 3] == 1 && mask[8] == 1 && mask[9] == 0;
    CHECK(L == 4 && bytes[4] == 3 && bytes[7] == 6 && bytes[8] == 7 && bytes[9] == 0 && bmask_ok, "1-byte elements");
    kit_shuffle_indices(idx, 50, 1, 0);
    for (i = 0; i < 50; i++) { if (idx[i] >= 50 || seen[idx[i]]++) perm_ok = 0; }
    CHECK(perm_ok, "shuffle is a permutation");
    kit_shuffle_indices(idx, 0, 1, 0);
    CHECK(1, "empty shuffle");
}

int main(void) {
    test_collate_and_shuffle();
    test_exactly_once_and_reproducible();
    test_errors();
    test_restart_free_prefetch();
    return test_summary();
}
