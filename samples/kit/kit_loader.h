/* kit_loader.h - datasets, seeded shuffling, batching with padding masks, prefetching worker threads.

   A dataset is a length and a get_item callback that writes one item into buffers the loader owns.
   An item is a set of fields (a whole image, a part image, a target vector, a token sequence...). Each
   field has an element type and a shape [max_len, inner]; a "variable" field lets each item fill only
   its first `length` rows, and batches then pad it to the batch's longest item and carry a mask.

       static int get(void *ctx, size_t i, void *const *fields, size_t *lengths, kit_rng *rng, kit_err *err) {
           float *img = (float *)fields[0], *target = (float *)fields[1];
           ... decode item i into img (3*H*W floats) and target (4 floats), jitter with rng ...
           return 0;                             // or kit_fail(err, KIT_ERR_IO, "...") to stop the epoch
       }
       kit_dataset ds = {n_items, 2, {{"image", KIT_F32, 3 * H * W, 1, 0}, {"target", KIT_F32, 4, 1, 0}}, get, ctx};
       kit_loader_opts o = {.batch_size = 4, .workers = 4, .prefetch = 2, .shuffle = 1, .seed = 42};
       kit_loader *L = kit_loader_new(&ds, &o, &err);
       for (epoch...) {
           kit_loader_start_epoch(L, epoch);
           while ((rc = kit_loader_next(L, &b, &err)) == 1) { ... b.data[0] is [b.size, 1, 3*H*W] ... }
           if (rc < 0) { fprintf(stderr, "%s\n", err.msg); ... }
       }
       kit_loader_free(L);

   Guarantees:
   - Every item appears exactly once per epoch (the last batch is smaller unless drop_last, which drops
     the remainder). The order is a Fisher-Yates shuffle seeded by (seed, epoch): the same seed gives the
     same batches, whatever the number of workers.
   - get_item receives an rng derived from (seed, epoch, item index), so augmentation is reproducible too.
   - With workers > 0, get_item runs on that many threads at once (for different items): it must be safe
     to call concurrently. Workers fill up to `prefetch` batches ahead of the one being used, item by item,
     so one slow image does not hold a whole batch of decoding.
   - A batch returned by kit_loader_next stays valid until the next call to kit_loader_next,
     kit_loader_start_epoch or kit_loader_free. kit_loader_free stops and joins the threads at any point. */
#ifndef KIT_LOADER_H
#define KIT_LOADER_H
#include "kit_base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KIT_MAX_FIELDS 8

typedef enum { KIT_F32, KIT_I32, KIT_U8 } kit_dtype;

typedef struct {
    const char *name;
    kit_dtype dtype;
    size_t inner;   /* elements per row */
    size_t max_len; /* rows per item (1 for a plain fixed-size field) */
    int variable;   /* 1: each item sets its own row count <= max_len; batches pad it and give a mask */
} kit_field;

/* Writes item `index` into fields[f] (room for max_len * inner elements each, zeroed beforehand) and, for
   variable fields, sets lengths[f] (preset to max_len). Returns 0, or nonzero with a message in err. */
typedef int (*kit_get_item_fn)(void *ctx, size_t index, void *const *fields, size_t *lengths, kit_rng *rng,
                               kit_err *err);

typedef struct {
    size_t len;
    int nfields;
    kit_field fields[KIT_MAX_FIELDS];
    kit_get_item_fn get_item;
    void *ctx;
} kit_dataset;

typedef struct {
    size_t batch_size; /* >= 1 */
    int workers;       /* threads; 0 loads each batch in the calling thread, inside kit_loader_next */
    int prefetch;      /* batches prepared ahead (default 2 when 0) */
    int shuffle;       /* 0 keeps dataset order (validation) */
    int drop_last;     /* 1 drops a last, smaller batch */
    uint64_t seed;
} kit_loader_opts;

typedef struct {
    size_t size;                            /* items in this batch */
    size_t index;                           /* batch number within the epoch */
    const size_t *items;                    /* their dataset indices */
    void *data[KIT_MAX_FIELDS];             /* field f: [size, len[f], inner] elements, contiguous */
    size_t len[KIT_MAX_FIELDS];             /* rows per item: the longest item (variable) or max_len */
    const float *mask[KIT_MAX_FIELDS];      /* variable fields: [size, len[f]], 1 = valid, 0 = padding */
    const size_t *lengths[KIT_MAX_FIELDS];  /* variable fields: each item's own length */
} kit_batch;

typedef struct kit_loader kit_loader;

kit_loader *kit_loader_new(const kit_dataset *ds, const kit_loader_opts *opts, kit_err *err);
size_t kit_loader_num_batches(const kit_loader *l);
/* Begins (or restarts) an epoch; abandons whatever the previous one had prepared. */
void kit_loader_start_epoch(kit_loader *l, uint64_t epoch);
/* 1: *b holds the next batch; 0: the epoch is over; -1: get_item failed (message in err, naming the
   item); later calls go on with the next batch. */
int kit_loader_next(kit_loader *l, kit_batch *b, kit_err *err);
void kit_loader_free(kit_loader *l);

/* idx = a permutation of 0..n-1 from (seed, epoch), the loader's order. */
void kit_shuffle_indices(size_t *idx, size_t n, uint64_t seed, uint64_t epoch);

/* The padding collate. Item i is lens[i] rows of `inner` elements of elem_size bytes at byte offset
   i * src_stride of src. Writes dst as [n, L, inner] with L = max(lens), the rows past an item's length
   zero-filled, and mask as [n, L] floats (1 valid, 0 padding; may be NULL). dst may be src itself (it is
   packed in place) as long as src_stride >= L * inner * elem_size. Returns L. */
size_t kit_collate_pad(const void *src, size_t src_stride, const size_t *lens, size_t n, size_t inner,
                       size_t elem_size, void *dst, float *mask);

#ifdef __cplusplus
}
#endif
#endif /* KIT_LOADER_H */

#if defined(KIT_IMPLEMENTATION) && !defined(KIT_LOADER_IMPLEMENTED)
#define KIT_LOADER_IMPLEMENTED
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

size_t kit_collate_pad(const void *src, size_t src_stride, const size_t *lens, size_t n, size_t inner,
                       size_t elem_size, void *dst, float *mask) {
    size_t L = 0, i, j, row = inner * elem_size;
    for (i = 0; i < n; i++) if (lens[i] > L) L = lens[i];
    /* Ascending order keeps the in-place case safe: item i's destination ends at (i+1)*L*row, at or
       before item i+1's source starts, and memmove handles item i's own overlap. */
    for (i = 0; i < n; i++) {
        unsigned char *d = (unsigned char *)dst + i * L * row;
        const unsigned char *s = (const unsigned char *)src + i * src_stride;
        if (d != s) memmove(d, s, lens[i] * row);
        memset(d + lens[i] * row, 0, (L - lens[i]) * row);
        if (mask) for (j = 0; j < L; j++) mask[i * L + j] = j < lens[i] ? 1.0f : 0.0f;
    }
    return L;
}

void kit_shuffle_indices(size_t *idx, size_t n, uint64_t seed, uint64_t epoch) {
    kit_rng r = kit_rng_derive(seed ^ 0x5348554646u, epoch, UINT64_MAX); /* a stream apart from items' */
    size_t i;
    for (i = 0; i < n; i++) idx[i] = i;
    for (i = n; i > 1; i--) { /* Fisher-Yates (Knuth, TAOCP vol. 2, algorithm 3.4.2 P) */
        size_t k = (size_t)kit_rng_below(&r, i), t = idx[i - 1];
        idx[i - 1] = idx[k];
        idx[k] = t;
    }
}

typedef struct {
    size_t batch, size, done;
    int ready, failed;
    kit_err err;
    size_t *items;
    void *data[KIT_MAX_FIELDS];
    float *mask[KIT_MAX_FIELDS];
    size_t *lens[KIT_MAX_FIELDS]; /* [batch_size] per field */
    size_t len[KIT_MAX_FIELDS];
} kit__slot;

struct kit_loader {
    kit_dataset ds;
    kit_loader_opts o;
    size_t nbatches, ntasks, *perm;
    size_t esize[KIT_MAX_FIELDS];
    uint64_t epoch;
    int nslots;
    kit__slot *slots;
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t work_cv, done_cv;
    size_t next_task;      /* next item to hand out: batch next_task / B, row next_task % B */
    size_t consumer_batch; /* the batch kit_loader_next returns next */
    int holding;           /* the consumer still uses the previous batch's slot */
    int active, stop, inflight;
};

static size_t kit__dtype_size(kit_dtype t) { return t == KIT_U8 ? 1 : 4; }

static size_t kit__row_bytes(const kit_loader *l, int f) {
    return l->ds.fields[f].max_len * l->ds.fields[f].inner * l->esize[f];
}

/* Loads row `row` of slot s (batch s->batch). Called without the lock. */
static void kit__load_item(kit_loader *l, kit__slot *s, size_t row) {
    void *fields[KIT_MAX_FIELDS];
    size_t lengths[KIT_MAX_FIELDS], index = s->items[row];
    kit_rng rng = kit_rng_derive(l->o.seed, l->epoch, index);
    kit_err err;
    int f, rc;
    for (f = 0; f < l->ds.nfields; f++) {
        fields[f] = (unsigned char *)s->data[f] + row * kit__row_bytes(l, f);
        memset(fields[f], 0, kit__row_bytes(l, f));
        lengths[f] = l->ds.fields[f].max_len;
    }
    err.code = KIT_OK;
    err.msg[0] = 0;
    rc = l->ds.get_item(l->ds.ctx, index, fields, lengths, &rng, &err);
    for (f = 0; !rc && f < l->ds.nfields; f++) {
        const kit_field *fd = &l->ds.fields[f];
        if (fd->variable && lengths[f] > fd->max_len)
            rc = kit_fail(&err, KIT_ERR_CALLBACK, "set length %lu for field '%s', more than its max_len %lu",
                          (unsigned long)lengths[f], fd->name ? fd->name : "?", (unsigned long)fd->max_len);
    }
    for (f = 0; f < l->ds.nfields; f++) /* a failed item counts as empty in variable fields */
        s->lens[f][row] = !l->ds.fields[f].variable ? l->ds.fields[f].max_len : (rc ? 0 : lengths[f]);
    if (rc) {
        pthread_mutex_lock(&l->mu);
        if (!s->failed) {
            s->failed = 1;
            kit_fail(&s->err, err.code ? err.code : KIT_ERR_CALLBACK, "dataset item %lu (batch %lu): %s", (unsigned long)index,
                     (unsigned long)s->batch, err.msg[0] ? err.msg : "get_item failed");
        }
        pthread_mutex_unlock(&l->mu);
    }
}

/* Packs the variable fields of a fully loaded slot. */
static void kit__finish_slot(kit_loader *l, kit__slot *s) {
    int f;
    for (f = 0; f < l->ds.nfields; f++) {
        if (l->ds.fields[f].variable)
            s->len[f] = kit_collate_pad(s->data[f], kit__row_bytes(l, f), s->lens[f], s->size, l->ds.fields[f].inner,
                                        l->esize[f], s->data[f], s->mask[f]);
        else
            s->len[f] = l->ds.fields[f].max_len;
    }
}

/* Under the lock: claims the next item if its batch's slot is free. Returns the slot or NULL. */
static kit__slot *kit__claim(kit_loader *l, size_t *row) {
    size_t B = l->o.batch_size, t, b, released;
    kit__slot *s;
    if (!l->active || l->next_task >= l->ntasks) return NULL;
    t = l->next_task;
    b = t / B;
    released = l->consumer_batch - (size_t)l->holding;
    if (b >= released + (size_t)l->nslots) return NULL; /* every slot is full or in use */
    s = &l->slots[b % (size_t)l->nslots];
    if (t % B == 0) { /* first item of a batch: (re)initialise its slot */
        size_t left = l->ntasks - b * B, i;
        s->batch = b;
        s->size = left < B ? left : B;
        s->done = 0;
        s->ready = 0;
        s->failed = 0;
        for (i = 0; i < s->size; i++) s->items[i] = l->perm[b * B + i];
    }
    l->next_task++;
    *row = t % B;
    return s;
}

static void *kit__worker(void *arg) {
    kit_loader *l = (kit_loader *)arg;
    pthread_mutex_lock(&l->mu);
    while (!l->stop) {
        size_t row;
        kit__slot *s = kit__claim(l, &row);
        if (!s) {
            pthread_cond_wait(&l->work_cv, &l->mu);
            continue;
        }
        l->inflight++;
        pthread_mutex_unlock(&l->mu);
        kit__load_item(l, s, row);
        pthread_mutex_lock(&l->mu);
        if (++s->done == s->size) { /* the last item of the batch packs it; no one else touches it now */
            pthread_mutex_unlock(&l->mu);
            kit__finish_slot(l, s);
            pthread_mutex_lock(&l->mu);
            s->ready = 1;
        }
        l->inflight--;
        pthread_cond_broadcast(&l->done_cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void kit__free_slots(kit_loader *l) {
    int i, f;
    if (!l->slots) return;
    for (i = 0; i < l->nslots; i++) {
        free(l->slots[i].items);
        for (f = 0; f < KIT_MAX_FIELDS; f++) { free(l->slots[i].data[f]); free(l->slots[i].mask[f]); free(l->slots[i].lens[f]); }
    }
    free(l->slots);
}

kit_loader *kit_loader_new(const kit_dataset *ds, const kit_loader_opts *opts, kit_err *err) {
    kit_loader *l;
    int i, f;
    if (!ds || !opts || !ds->get_item || ds->nfields < 0 || ds->nfields > KIT_MAX_FIELDS || opts->batch_size == 0 ||
        opts->workers < 0 || opts->prefetch < 0) {
        kit_fail(err, KIT_ERR_ARG, "kit_loader_new: bad dataset or options (need get_item, 0..%d fields, batch_size >= 1)",
                 KIT_MAX_FIELDS);
        return NULL;
    }
    for (f = 0; f < ds->nfields; f++)
        if (ds->fields[f].inner == 0 || ds->fields[f].max_len == 0) {
            kit_fail(err, KIT_ERR_ARG, "kit_loader_new: field %d ('%s') has a zero size", f, ds->fields[f].name ? ds->fields[f].name : "?");
            return NULL;
        }
    l = (kit_loader *)calloc(1, sizeof *l);
    if (!l) { kit_fail(err, KIT_ERR_NOMEM, "out of memory"); return NULL; }
    l->ds = *ds;
    l->o = *opts;
    if (l->o.prefetch == 0) l->o.prefetch = 2;
    l->nbatches = l->o.drop_last ? ds->len / opts->batch_size : (ds->len + opts->batch_size - 1) / opts->batch_size;
    l->ntasks = l->o.drop_last ? l->nbatches * opts->batch_size : ds->len;
    l->nslots = l->o.workers ? l->o.prefetch + 1 : 1; /* +1: the batch the consumer is still using */
    l->perm = (size_t *)malloc(sizeof(size_t) * (ds->len ? ds->len : 1));
    l->slots = (kit__slot *)calloc((size_t)l->nslots, sizeof(kit__slot));
    if (!l->perm || !l->slots) goto oom;
    for (f = 0; f < ds->nfields; f++) l->esize[f] = kit__dtype_size(ds->fields[f].dtype);
    for (i = 0; i < l->nslots; i++) {
        kit__slot *s = &l->slots[i];
        if (!(s->items = (size_t *)malloc(sizeof(size_t) * opts->batch_size))) goto oom;
        for (f = 0; f < ds->nfields; f++) {
            if (!(s->data[f] = malloc(opts->batch_size * kit__row_bytes(l, f)))) goto oom;
            if (!(s->lens[f] = (size_t *)malloc(sizeof(size_t) * opts->batch_size))) goto oom;
            if (ds->fields[f].variable && !(s->mask[f] = (float *)malloc(sizeof(float) * opts->batch_size * ds->fields[f].max_len)))
                goto oom;
        }
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->done_cv, NULL);
    if (l->o.workers) {
        l->threads = (pthread_t *)malloc(sizeof(pthread_t) * (size_t)l->o.workers);
        if (!l->threads) { kit_loader_free(l); kit_fail(err, KIT_ERR_NOMEM, "out of memory"); return NULL; }
        for (i = 0; i < l->o.workers; i++) {
            if (pthread_create(&l->threads[i], NULL, kit__worker, l) != 0) {
                kit_loader_free(l);
                kit_fail(err, KIT_ERR_NOMEM, "kit_loader_new: cannot start worker thread %d", i);
                return NULL;
            }
            l->nthreads++;
        }
    }
    return l;
oom:
    kit__free_slots(l);
    free(l->perm);
    free(l);
    kit_fail(err, KIT_ERR_NOMEM, "kit_loader_new: out of memory for %d batch buffers", opts->prefetch + 1);
    return NULL;
}

size_t kit_loader_num_batches(const kit_loader *l) { return l->nbatches; }

void kit_loader_start_epoch(kit_loader *l, uint64_t epoch) {
    size_t i;
    int s;
    pthread_mutex_lock(&l->mu);
    l->active = 0; /* no new items; wait for the ones being loaded */
    while (l->inflight > 0) pthread_cond_wait(&l->done_cv, &l->mu);
    l->epoch = epoch;
    if (l->o.shuffle) kit_shuffle_indices(l->perm, l->ds.len, l->o.seed, epoch);
    else for (i = 0; i < l->ds.len; i++) l->perm[i] = i;
    for (s = 0; s < l->nslots; s++) l->slots[s].ready = 0;
    l->next_task = 0;
    l->consumer_batch = 0;
    l->holding = 0;
    l->active = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
}

int kit_loader_next(kit_loader *l, kit_batch *b, kit_err *err) {
    kit__slot *s;
    int f, rc = 1;
    pthread_mutex_lock(&l->mu);
    if (l->holding) { /* the previous batch is given back: its slot may be refilled */
        l->holding = 0;
        pthread_cond_broadcast(&l->work_cv);
    }
    if (!l->active || l->consumer_batch >= l->nbatches) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    if (l->o.workers == 0) {
        size_t row;
        s = kit__claim(l, &row);
        pthread_mutex_unlock(&l->mu);
        kit__load_item(l, s, row);
        while (row + 1 < s->size) {
            pthread_mutex_lock(&l->mu);
            kit__claim(l, &row);
            pthread_mutex_unlock(&l->mu);
            kit__load_item(l, s, row);
        }
        kit__finish_slot(l, s);
        pthread_mutex_lock(&l->mu);
    } else {
        s = &l->slots[l->consumer_batch % (size_t)l->nslots];
        while (!(s->ready && s->batch == l->consumer_batch)) pthread_cond_wait(&l->done_cv, &l->mu);
    }
    l->consumer_batch++;
    l->holding = 1;
    if (s->failed) {
        if (err) *err = s->err;
        rc = -1;
    }
    pthread_mutex_unlock(&l->mu);
    memset(b, 0, sizeof *b);
    b->size = s->size;
    b->index = s->batch;
    b->items = s->items;
    for (f = 0; f < l->ds.nfields; f++) {
        b->data[f] = s->data[f];
        b->len[f] = s->len[f];
        if (l->ds.fields[f].variable) {
            b->mask[f] = s->mask[f];
            b->lengths[f] = s->lens[f];
        }
    }
    return rc;
}

void kit_loader_free(kit_loader *l) {
    int i;
    if (!l) return;
    pthread_mutex_lock(&l->mu);
    l->stop = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    for (i = 0; i < l->nthreads; i++) pthread_join(l->threads[i], NULL);
    free(l->threads);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->done_cv);
    kit__free_slots(l);
    free(l->perm);
    free(l);
}
#endif /* KIT_IMPLEMENTATION */
