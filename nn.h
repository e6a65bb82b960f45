/* nn.h - a neural-network library in one C header: tensors, tape autograd, ops, modules, optimisers,
   attention and IO. stb-style: in exactly one C or C++ file write

       #define NN_IMPLEMENTATION
       #include "nn.h"

   and include it plainly everywhere else. Needs only libc and libm; OpenMP when compiled with -fopenmp.
   The CUDA backend lives in nn_cuda.cu and is linked in when NN_CUDA is defined.

   CONTENTS (search for the section tag, e.g. "[ops:norm]")
     [api]          public declarations
       [api:types]      dtypes, devices, the tensor struct
       [api:errors]     error handler
       [api:memory]     pools, statistics, scopes
       [api:tensors]    creation, copies, views, random numbers
       [api:autograd]   backward, grad mode, checkpointing
       [api:ops]        the op set
       [api:modules]    parameter registry and layers
       [api:internal]   what an op implementation needs (nn__ names)
     [impl]         implementation (under NN_IMPLEMENTATION)
       [impl:errors] [impl:half] [impl:memory] [impl:tensors] [impl:rng] [impl:autograd]
       [ops:elementwise] [ops:reduce] [ops:matmul] [ops:shape] [ops:index] [ops:norm] [ops:conv]
       [ops:loss] [ops:attention] [modules]

   Conventions
   - Public names are nn_<noun>_<verb> or nn_<op>; internal ones nn__ and static.
   - Every op checks its arguments and reports through nn_error() with the op name and the shapes.
   - Ops return new tensors. A tensor created inside a scope belongs to that scope (see [api:memory]);
     outside any scope it belongs to the caller, who frees it with nn_tensor_free().
   - The CPU computes in f32; f16/bf16 are storage types (nn_cast converts, round-to-nearest-even). */
#ifndef NN_H
#define NN_H

/* Build with -DNN_CUDA to enable the GPU: the macro is turned into one that names the enum value NN_CUDA
   itself, so `#ifdef NN_CUDA` selects the CUDA code and `t->device == NN_CUDA` still compares devices. */
#ifdef NN_CUDA
#undef NN_CUDA
#define NN_CUDA NN_CUDA
#endif

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================================================ [api:types] */

#define NN_MAX_DIMS 6

typedef enum { NN_F32, NN_F16, NN_BF16, NN_I32, NN_I64, NN_U8, NN_BOOL, NN_DTYPE_COUNT } nn_dtype;
typedef enum { NN_CPU = 0, NN_CUDA = 1, NN_DEVICE_COUNT } nn_device;

typedef struct nn_storage nn_storage; /* a reference-counted buffer from the device's pool */
typedef struct nn_node nn_node;       /* a tape entry: how to send gradients back through one op */

typedef struct nn_tensor {
    nn_dtype dtype;
    nn_device device;
    int ndim;
    int64_t shape[NN_MAX_DIMS];
    int64_t numel;
    void *data;               /* first element: storage base + view offset; always contiguous */
    nn_storage *storage;
    struct nn_tensor *grad;   /* leaves with requires_grad: the accumulated gradient (or NULL) */
    int requires_grad;        /* leaves: set by the user; op outputs: set when a tape node was recorded */
    char name[48];            /* for messages and checkpoints; may be empty */
    /* internal bookkeeping */
    int refs;                 /* owners: the caller or a scope, plus tape nodes that saved it */
    int scope_slot;           /* index in the scope stack, or -1 when the caller owns it */
    nn_node *node;            /* creator on the tape, valid only while node->id == node_id */
    uint64_t node_id;
    int node_out;             /* which output of the node this tensor is */
} nn_tensor;

size_t nn_dtype_size(nn_dtype dt);
const char *nn_dtype_name(nn_dtype dt);
const char *nn_device_name(nn_device dev);
int nn_dtype_is_float(nn_dtype dt);
/* "[2,3,4]" into buf (returns buf) */
char *nn_shape_str(const nn_tensor *t, char *buf, size_t n);

/* =========================================================================================== [api:errors] */

/* The handler receives the full message. The default prints it to stderr and aborts. A handler may
   longjmp out (ops check everything before they allocate, so nothing leaks); if it returns, nn aborts. */
typedef void (*nn_error_fn)(const char *msg, void *user);
void nn_set_error_handler(nn_error_fn fn, void *user);
const char *nn_last_error(void);
#if defined(__GNUC__) || defined(__clang__)
void nn_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#else
void nn_error(const char *fmt, ...);
#endif

/* =========================================================================================== [api:memory] */

/* Every tensor's bytes come from a per-device caching pool (size classes; a freed block waits in its
   class for the next request of that size). These numbers are a product feature: benchmarks print them. */
typedef struct {
    size_t current;   /* bytes in live tensors (rounded to the pool's block sizes) */
    size_t peak;      /* highest `current` since start or nn_mem_reset_peak */
    size_t cached;    /* bytes held by the pool in free blocks */
    size_t limit;     /* cap on current + cached, 0 = none (env NN_MEM_LIMIT / NN_CUDA_MEM_LIMIT, e.g. "16G") */
    uint64_t allocs;  /* requests served */
    uint64_t misses;  /* requests that went to the system allocator */
} nn_mem_info;

nn_mem_info nn_mem_stats(nn_device dev);
void nn_mem_reset_peak(nn_device dev);
void nn_mem_set_limit(nn_device dev, size_t bytes);
void nn_mem_trim(nn_device dev);       /* return the pool's free blocks to the system */
void nn_shutdown(void);                /* free everything the library holds (end of program, leak checks) */

/* Scopes: nn_scope_begin() opens one; every tensor created until the matching end belongs to it.
   nn_scope_end(keep) releases them all except `keep` (may be NULL), which moves to the enclosing
   scope (or to the caller at top level). Tensors saved by the tape stay alive until backward has
   used them. Closing the outermost scope also drops a tape that backward never consumed. */
void nn_scope_begin(void);
nn_tensor *nn_scope_end(nn_tensor *keep);
void nn_scope_end_n(int n_keep, nn_tensor **keep);
int nn_scope_depth(void);

/* ========================================================================================== [api:tensors] */

nn_tensor *nn_empty(nn_dtype dt, int ndim, const int64_t *shape);  /* uninitialised */
nn_tensor *nn_zeros(nn_dtype dt, int ndim, const int64_t *shape);
nn_tensor *nn_ones(nn_dtype dt, int ndim, const int64_t *shape);
nn_tensor *nn_full(nn_dtype dt, int ndim, const int64_t *shape, double value);
nn_tensor *nn_arange(nn_dtype dt, double start, double end, double step);  /* [start, end) like torch */
nn_tensor *nn_from_data(nn_dtype dt, int ndim, const int64_t *shape, const void *src); /* copies */
nn_tensor *nn_from_f32(int ndim, const int64_t *shape, const float *src);
void nn_to_host(const nn_tensor *t, void *dst);          /* copies numel elements of t's dtype out */
double nn_item(const nn_tensor *t);                      /* the value of a one-element tensor */
float *nn_f32_data(nn_tensor *t);                        /* data of an f32 CPU tensor (checked) */
nn_tensor *nn_like(const nn_tensor *t);                  /* uninitialised, same dtype/device/shape */
nn_tensor *nn_zeros_like(const nn_tensor *t);

nn_tensor *nn_retain(nn_tensor *t);    /* one more owner */
void nn_tensor_free(nn_tensor *t);     /* drop the caller's (or its scope's) ownership */
void nn_tensor_set_name(nn_tensor *t, const char *name);
void nn_requires_grad(nn_tensor *t, int on);  /* on a leaf */
void nn_zero_grad(nn_tensor *t);               /* drops t->grad */

nn_tensor *nn_to(nn_tensor *t, nn_device dev);   /* copy to a device (differentiable) */
nn_tensor *nn_cast(nn_tensor *t, nn_dtype dt);   /* convert (differentiable between float types) */
nn_tensor *nn_clone(nn_tensor *t);               /* copy (differentiable) */
nn_tensor *nn_detach(nn_tensor *t);              /* shares data, cut from the tape */
void nn_copy_(nn_tensor *dst, const nn_tensor *src); /* in place, same shape, converting dtype; no grad */
void nn_fill_(nn_tensor *t, double value);           /* in place; no grad */

/* The GPU (nn_cuda.cu, linked when built with NN_CUDA): tensors move with nn_to(t, NN_CUDA). Work is queued on
   one stream; values read on the host (nn_to_host, nn_item) wait for it. Without NN_CUDA these are stubs. */
int nn_cuda_available(void);      /* 1 when built with NN_CUDA and a device is present */
void nn_cuda_synchronize(void);   /* wait for all queued GPU work (timing) */
void nn_cuda_set_tf32(int on);    /* f32 GEMMs may use TF32 tensor cores; off by default, as torch's matmul */

/* Random numbers: one counter-based generator, Philox4x32-10 (Salmon et al., SC'11), keyed by a 64-bit
   seed and indexed by a 64-bit offset, so element i of a draw at offset o is a pure function of
   (seed, o + i): the GPU reproduces the CPU's stream and backward regenerates dropout masks. */
typedef struct { uint64_t seed, offset; } nn_rng_state;
void nn_seed(uint64_t seed);
nn_rng_state nn_rng_get(void);
void nn_rng_set(nn_rng_state s);
uint64_t nn_rng_reserve(uint64_t n);  /* take n values from the stream; returns their first offset */
void nn_philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]);
float nn_rng_uniform_at(uint64_t seed, uint64_t index);  /* [0,1), 24 random bits */
nn_tensor *nn_rand(int ndim, const int64_t *shape);      /* U[0,1) f32 */
nn_tensor *nn_randn(int ndim, const int64_t *shape);     /* N(0,1) f32, Box-Muller on pairs */
nn_tensor *nn_uniform(int ndim, const int64_t *shape, double lo, double hi);
/* N(mean, std) truncated to [a, b] (torch.nn.init.trunc_normal_'s distribution) */
nn_tensor *nn_trunc_normal(int ndim, const int64_t *shape, double mean, double std, double a, double b);

/* ========================================================================================= [api:autograd] */

void nn_backward(nn_tensor *loss);           /* loss: one element; gradients add into leaves' ->grad */
void nn_backward_with(int n, nn_tensor **outputs, nn_tensor **grads); /* several roots, given gradients */
int nn_grad_enabled(void);
int nn_set_grad_enabled(int on);             /* returns the previous setting (no-grad mode: on = 0) */
int nn_training(void);                       /* module-level train/eval switch (dropout) */
int nn_set_training(int on);

/* Gradient checkpointing: fn computes out[0..n_out) from in[0..n_in) (and parameters it reaches through
   ctx). It runs now without recording the tape; backward runs it again, with the same random stream,
   and sends gradients through the recomputed graph. fn must create its outputs with nn ops. */
typedef void (*nn_checkpoint_fn)(void *ctx, nn_tensor **in, nn_tensor **out);
void nn_checkpoint(nn_checkpoint_fn fn, void *ctx, int n_in, nn_tensor **in, int n_out, nn_tensor **out);

/* Mixed precision: autocast with torch.autocast's op policy. Between nn_autocast_begin(dt) and the matching
   nn_autocast_end(), dt = NN_BF16 or NN_F16, the ops nn_matmul / nn_matmul_t, nn_linear, nn_conv2d /
   nn_conv2d_ex and nn_sdpa compute in dt with f32 accumulation; everything else (norms, softmax,
   reductions, elementwise ops, losses, the optimiser) stays f32, and master weights are f32. Regions nest;
   nn_autocast_begin(NN_F32) turns autocast off inside a region.
   On the CPU every tensor stays f32 and low precision is emulated, value for value:
   - each floating input of a listed op (activation, weight, bias, sdpa's float bias) is rounded to dt
     (round-to-nearest-even; beyond f16's range it becomes inf, as a real cast);
   - the op computes in f32 on those values: products of dt values are exact in f32, sums accumulate in f32;
   - its output is rounded to dt, because torch's autocast returns a dt tensor there (the CPU's too: it
     returns bf16), so the next op sees dt values;
   - backward: the gradient arriving at such an output and the gradients the op sends to its inputs are
     rounded to dt as well (torch's gradient of a dt tensor is a dt tensor), and flow on as f32 tensors, so
     parameters receive f32 gradients accumulated in f32 (f16's overflow to inf is what the loss scaler sees).
   Not emulated: an op outside the list that receives a dt tensor in torch (GELU after a bf16 linear, a
   reshape) returns dt there and f32 here; where its result feeds a listed op it is rounded there anyway.
   Weight casts are cached, as torch's autocast cache: a parameter (an f32 leaf with requires_grad) is
   rounded once per region and dtype, not per use; the cache is cleared when the outermost region ends and
   after each nn_backward (the optimiser may change the weights next). The region should hold the forward
   pass and the loss (as torch recommends); backward may run outside it: nn_checkpoint records the autocast
   dtype at forward time and recomputes under it. */
void nn_autocast_begin(nn_dtype dt);
void nn_autocast_end(void);
nn_dtype nn_autocast_dtype(void);            /* the dtype in force: NN_F32 when autocast is off */

/* ============================================================================================== [api:ops] */

/* elementwise, broadcasting like numpy/torch */
nn_tensor *nn_add(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_sub(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_mul(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_div(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_add_scalar(nn_tensor *a, double s);
nn_tensor *nn_mul_scalar(nn_tensor *a, double s);
nn_tensor *nn_rsub_scalar(nn_tensor *a, double s);  /* s - a */
nn_tensor *nn_neg(nn_tensor *a);
nn_tensor *nn_exp(nn_tensor *a);
nn_tensor *nn_log(nn_tensor *a);
nn_tensor *nn_sqrt(nn_tensor *a);
nn_tensor *nn_rsqrt(nn_tensor *a);
nn_tensor *nn_abs(nn_tensor *a);
nn_tensor *nn_pow(nn_tensor *a, double p);
nn_tensor *nn_clamp(nn_tensor *a, double lo, double hi); /* -INFINITY / INFINITY for one side */
nn_tensor *nn_relu(nn_tensor *a);
nn_tensor *nn_gelu(nn_tensor *a);        /* exact: x * Phi(x) with erf */
nn_tensor *nn_gelu_tanh(nn_tensor *a);   /* approximate='tanh' */
nn_tensor *nn_silu(nn_tensor *a);
nn_tensor *nn_sigmoid(nn_tensor *a);
nn_tensor *nn_tanh(nn_tensor *a);
/* cond: bool/u8 (nonzero = take a); broadcasting */
nn_tensor *nn_where(nn_tensor *cond, nn_tensor *a, nn_tensor *b);
nn_tensor *nn_masked_fill(nn_tensor *a, nn_tensor *mask, double value);

/* reductions over one dim (negative counts from the end) or over all */
nn_tensor *nn_sum(nn_tensor *a, int dim, int keepdim);
nn_tensor *nn_mean(nn_tensor *a, int dim, int keepdim);
nn_tensor *nn_max(nn_tensor *a, int dim, int keepdim);   /* values; gradient to the first maximum */
nn_tensor *nn_var(nn_tensor *a, int dim, int unbiased, int keepdim);
nn_tensor *nn_sum_all(nn_tensor *a);
nn_tensor *nn_mean_all(nn_tensor *a);
nn_tensor *nn_norm(nn_tensor *a, int dim, int keepdim);  /* L2 vector norm */
nn_tensor *nn_softmax(nn_tensor *a, int dim);
nn_tensor *nn_log_softmax(nn_tensor *a, int dim);

/* linear algebra */
nn_tensor *nn_matmul(nn_tensor *a, nn_tensor *b);        /* torch.matmul for ndim >= 1, batch broadcast */
nn_tensor *nn_matmul_t(nn_tensor *a, nn_tensor *b, int ta, int tb); /* transposes of the last two dims */
nn_tensor *nn_linear(nn_tensor *x, nn_tensor *w, nn_tensor *b);     /* x @ w^T + b; b may be NULL */
nn_tensor *nn_cross(nn_tensor *a, nn_tensor *b, int dim);           /* 3-vectors along dim */

/* shape */
nn_tensor *nn_reshape(nn_tensor *a, int ndim, const int64_t *shape); /* a view; one -1 allowed */
nn_tensor *nn_flatten(nn_tensor *a, int start_dim, int end_dim);
nn_tensor *nn_unsqueeze(nn_tensor *a, int dim);
nn_tensor *nn_squeeze(nn_tensor *a, int dim);
nn_tensor *nn_permute(nn_tensor *a, const int *perm);   /* copies */
nn_tensor *nn_transpose(nn_tensor *a, int d0, int d1);  /* copies */
nn_tensor *nn_slice(nn_tensor *a, int dim, int64_t start, int64_t end); /* [start,end); view when it can */
nn_tensor *nn_concat(int n, nn_tensor **ts, int dim);
void nn_split(nn_tensor *a, int n, const int64_t *sizes, int dim, nn_tensor **out);
void nn_chunk(nn_tensor *a, int n, int dim, nn_tensor **out);   /* torch.chunk: ceil-sized pieces */
nn_tensor *nn_expand(nn_tensor *a, int ndim, const int64_t *shape); /* broadcast copy (differentiable) */

/* indexing (indices: i32 or i64) */
nn_tensor *nn_embedding(nn_tensor *weight, nn_tensor *idx);
nn_tensor *nn_index_select(nn_tensor *a, int dim, nn_tensor *idx);
nn_tensor *nn_gather(nn_tensor *a, int dim, nn_tensor *idx);
nn_tensor *nn_scatter_add(nn_tensor *a, int dim, nn_tensor *idx, nn_tensor *src); /* out-of-place */
/* k largest (or smallest) along dim, sorted; *indices gets i64 (not differentiable); either out may be NULL */
void nn_topk(nn_tensor *a, int64_t k, int dim, int largest, nn_tensor **values, nn_tensor **indices);

/* normalisation and regularisation */
nn_tensor *nn_layer_norm(nn_tensor *x, nn_tensor *w, nn_tensor *b, double eps); /* over the last dim */
nn_tensor *nn_group_norm(nn_tensor *x, int groups, nn_tensor *w, nn_tensor *b, double eps); /* [N,C,*] */
nn_tensor *nn_dropout(nn_tensor *x, double p, int training);

/* convolution and pooling, NCHW */
nn_tensor *nn_conv2d(nn_tensor *x, nn_tensor *w, nn_tensor *b, int stride, int padding, int dilation, int groups);
nn_tensor *nn_conv2d_ex(nn_tensor *x, nn_tensor *w, nn_tensor *b, const int stride[2], const int padding[2],
                        const int dilation[2], int groups);
nn_tensor *nn_upsample_nearest2d(nn_tensor *x, int64_t out_h, int64_t out_w);
nn_tensor *nn_avg_pool2d(nn_tensor *x, int kernel, int stride, int padding); /* count_include_pad=True; stride 0 = kernel */
nn_tensor *nn_adaptive_avg_pool2d(nn_tensor *x, int64_t out_h, int64_t out_w);

/* losses (reduction 'mean' unless said) */
typedef enum { NN_REDUCE_MEAN, NN_REDUCE_SUM, NN_REDUCE_NONE } nn_reduction;
nn_tensor *nn_mse_loss(nn_tensor *pred, nn_tensor *target);
nn_tensor *nn_l1_loss(nn_tensor *pred, nn_tensor *target);
nn_tensor *nn_smooth_l1_loss(nn_tensor *pred, nn_tensor *target, double beta);
/* logits [N,C] or [N,C,d1..]; target i32/i64 class ids; weight [C] or NULL; like F.cross_entropy */
nn_tensor *nn_cross_entropy(nn_tensor *logits, nn_tensor *target, nn_tensor *weight, int64_t ignore_index,
                            double label_smoothing);
nn_tensor *nn_bce_with_logits(nn_tensor *logits, nn_tensor *target, nn_tensor *pos_weight);
/* torchvision.ops.sigmoid_focal_loss */
nn_tensor *nn_sigmoid_focal_loss(nn_tensor *logits, nn_tensor *target, double alpha, double gamma,
                                 nn_reduction reduction);

/* scaled dot-product attention, F.scaled_dot_product_attention's semantics:
   q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] -> [B,H,Lq,Dv]. */
typedef struct {
    nn_tensor *mask;    /* bool/u8 broadcastable to [B,H,Lq,Lk]; true = attend (PyTorch's convention) */
    nn_tensor *bias;    /* f32 additive scores, broadcastable [B|1,H|1,Lq|1,Lk]; differentiable */
    int causal;         /* query i attends keys j <= i (top-left aligned, as PyTorch) */
    double scale;       /* 0: 1/sqrt(D) */
    double dropout_p;   /* on the probabilities, applied as given (modules pass training ? p : 0) */
} nn_sdpa_opts;
/* Never materialises the Lq x Lk matrix (FlashAttention-2 tiles: online softmax forward, backward from the
   saved row log-sum-exp). mask, bias and causal combine: a key is attended iff the mask allows it, it is not
   above the causal diagonal and its bias is not -inf. A query row with no attended key gives 0 and zero
   gradients. A bias broadcast over Lk shifts a whole row, which softmax ignores: its gradient is 0. */
nn_tensor *nn_sdpa(nn_tensor *q, nn_tensor *k, nn_tensor *v, const nn_sdpa_opts *opts);
/* key-padding mask [B,Lk] with 1 = valid, 0 = padding (seed 002's scene_mask) -> bool [B,1,1,Lk] */
nn_tensor *nn_key_padding_mask(nn_tensor *valid);

/* ========================================================================================== [api:modules] */

/* A parameter registry: name -> tensor, in registration order. Modules fill it with PyTorch's
   state_dict names; optimisers and checkpoints walk it. It owns the tensors. */
typedef struct { char *name; nn_tensor *t; int no_decay; } nn_param;
typedef struct { nn_param *items; int n, cap; } nn_params;
nn_tensor *nn_params_add(nn_params *p, const char *name, nn_tensor *t);
nn_tensor *nn_params_find(const nn_params *p, const char *name);
int64_t nn_params_count(const nn_params *p);  /* number of scalars */
void nn_params_zero_grad(nn_params *p);
void nn_params_free(nn_params *p);
/* "prefix.name" into buf (prefix may be empty) */
const char *nn_name_join(char *buf, size_t n, const char *prefix, const char *name);

typedef struct { nn_tensor *weight, *bias; int in, out; } nn_Linear;
void nn_Linear_init(nn_Linear *m, nn_params *P, const char *name, int in, int out, int bias);
nn_tensor *nn_Linear_forward(const nn_Linear *m, nn_tensor *x);

typedef struct { nn_tensor *weight, *bias; int dim; double eps; } nn_LayerNorm;
void nn_LayerNorm_init(nn_LayerNorm *m, nn_params *P, const char *name, int dim, double eps, int affine);
nn_tensor *nn_LayerNorm_forward(const nn_LayerNorm *m, nn_tensor *x);

typedef struct { nn_tensor *weight, *bias; int groups, channels; double eps; } nn_GroupNorm;
void nn_GroupNorm_init(nn_GroupNorm *m, nn_params *P, const char *name, int groups, int channels, double eps);
nn_tensor *nn_GroupNorm_forward(const nn_GroupNorm *m, nn_tensor *x);

typedef struct { nn_tensor *weight, *bias; int in, out, k, stride, padding, dilation, groups; } nn_Conv2d;
void nn_Conv2d_init(nn_Conv2d *m, nn_params *P, const char *name, int in, int out, int k, int stride,
                    int padding, int dilation, int groups, int bias);
nn_tensor *nn_Conv2d_forward(const nn_Conv2d *m, nn_tensor *x);

typedef struct { nn_tensor *weight; int num, dim; } nn_Embedding;
void nn_Embedding_init(nn_Embedding *m, nn_params *P, const char *name, int num, int dim);
nn_tensor *nn_Embedding_forward(const nn_Embedding *m, nn_tensor *idx);

/* Linear -> activation -> dropout -> Linear, the transformer FFN; names fc1, fc2 */
typedef enum { NN_ACT_GELU, NN_ACT_GELU_TANH, NN_ACT_RELU, NN_ACT_SILU } nn_activation;
typedef struct { nn_Linear fc1, fc2; nn_activation act; double dropout; } nn_MLP;
void nn_MLP_init(nn_MLP *m, nn_params *P, const char *name, int in, int hidden, int out, nn_activation act,
                 double dropout);
nn_tensor *nn_MLP_forward(const nn_MLP *m, nn_tensor *x);
nn_tensor *nn_activate(nn_tensor *x, nn_activation act);

/* nn.MultiheadAttention(embed_dim, num_heads, dropout, bias=True, kdim, vdim, batch_first=True):
   parameters in_proj_weight [3E,E] + in_proj_bias [3E] when kdim == vdim == E, else q_proj_weight,
   k_proj_weight, v_proj_weight + in_proj_bias; out_proj.weight, out_proj.bias. */
typedef struct {
    int embed_dim, num_heads, kdim, vdim;
    double dropout;
    nn_tensor *in_proj_weight, *q_proj_weight, *k_proj_weight, *v_proj_weight, *in_proj_bias;
    nn_Linear out_proj;
} nn_MultiheadAttention;
void nn_MultiheadAttention_init(nn_MultiheadAttention *m, nn_params *P, const char *name, int embed_dim,
                                int num_heads, double dropout, int kdim, int vdim);
/* query [B,Lq,E], key [B,Lk,kdim], value [B,Lk,vdim] -> [B,Lq,E].
   key_padding_mask [B,Lk] bool/u8 with nn.MultiheadAttention's convention: true = ignore that key.
   attn_mask: bool (true = NOT allowed, as nn.MultiheadAttention) or float (added), [Lq,Lk] or [B*H,Lq,Lk]
   or anything broadcastable to [B,H,Lq,Lk]. Either may be NULL. */
nn_tensor *nn_MultiheadAttention_forward(const nn_MultiheadAttention *m, nn_tensor *query, nn_tensor *key,
                                         nn_tensor *value, nn_tensor *key_padding_mask, nn_tensor *attn_mask);

/* initialisers (in place, no grad), as torch.nn.init */
void nn_init_uniform_(nn_tensor *t, double lo, double hi);
void nn_init_normal_(nn_tensor *t, double mean, double std);
void nn_init_trunc_normal_(nn_tensor *t, double mean, double std, double a, double b);
void nn_init_xavier_uniform_(nn_tensor *t);
void nn_init_kaiming_uniform_(nn_tensor *t, double a);  /* leaky_relu gain, fan_in mode */

/* ========================================================================================= [api:internal] */
/* What an op implementation uses. An op: checks its inputs, allocates outputs with nn__new, computes,
   then calls nn__record; when that returns a node the op saves what its backward needs. */

#define NN_MAX_NODE_IN 8
#define NN_MAX_NODE_OUT 8
#define NN_MAX_SAVED 8
typedef void (*nn__backward_fn)(nn_node *n);

typedef struct {
    nn_tensor *leaf;          /* a leaf with requires_grad, or */
    nn_node *node;            /* the creator of a non-leaf input, with */
    int out;                  /*   its output index */
    int needs_grad;
    nn_dtype dtype;
    int ndim;
    int64_t shape[NN_MAX_DIMS];
} nn__edge;

struct nn_node {
    uint64_t id;              /* 0 while free */
    const char *op;
    nn__backward_fn backward;
    int n_in, n_out, n_saved;
    nn__edge in[NN_MAX_NODE_IN];
    nn_tensor *gout[NN_MAX_NODE_OUT];  /* gradient arriving at each output (owned) */
    nn_tensor *saved[NN_MAX_SAVED];    /* retained */
    double a[8];              /* scalar arguments */
    int64_t i[8];
    void *ptr;                /* op-specific (checkpoint: fn/ctx) */
    nn_rng_state rng;         /* random stream position at forward (dropout, checkpoint) */
    struct nn_node *next_free;
};

nn_tensor *nn__new(nn_dtype dt, nn_device dev, int ndim, const int64_t *shape);
nn_node *nn__record(const char *op, nn__backward_fn bw, int n_in, nn_tensor **in, int n_out, nn_tensor **out);
void nn__save(nn_node *n, nn_tensor *t);
int nn__needs_grad(const nn_node *n, int i);
/* adds g (shape of input i, or reducible to it by summing broadcast dims) into input i's gradient */
void nn__accumulate(nn_node *n, int i, nn_tensor *g);
int nn__tracks(const nn_tensor *t);           /* is t a leaf with requires_grad or live on the tape */
void nn__check_same_device(const char *op, const nn_tensor *a, const nn_tensor *b);
void nn__check_dtype(const char *op, const nn_tensor *t, nn_dtype dt, const char *what);
void nn__check_f32(const char *op, const nn_tensor *t, const char *what);
int nn__norm_dim(const char *op, const nn_tensor *t, int dim);
/* reduce g to `shape` by summing over broadcast dims (returns g itself when shapes already match) */
nn_tensor *nn__sum_to(nn_tensor *g, int ndim, const int64_t *shape);
/* output shape of broadcasting a and b; reports op on mismatch */
int nn__broadcast_shape(const char *op, const nn_tensor *a, const nn_tensor *b, int64_t *out);
/* autocast (see nn_autocast_begin): an op on the low-precision list starts with
       if (nn_autocast_dtype() != NN_F32) { nn_dtype dt = nn__autocast_enter();
           return nn__autocast_leave(nn_op(nn__autocast_arg(x, dt), nn__autocast_arg(w, dt), ...), dt); }
   enter switches autocast off for the inner call, arg gives the input in dt (cached for parameters),
   leave switches it back and gives the output in dt. On the CPU both are nn__autocast_round. */
nn_dtype nn__autocast_enter(void);
nn_tensor *nn__autocast_arg(nn_tensor *x, nn_dtype dt);
nn_tensor *nn__autocast_leave(nn_tensor *y, nn_dtype dt);
/* f32 -> f32 with every value rounded to dt (differentiable: the gradient is rounded to dt too) */
nn_tensor *nn__autocast_round(nn_tensor *x, nn_dtype dt);
float nn__half_to_f32(uint16_t h);
uint16_t nn__f32_to_half(float f);
float nn__bf16_to_f32(uint16_t h);
uint16_t nn__f32_to_bf16(float f);
#ifdef NN_CUDA
/* multi-tensor optimiser kernels in nn_cuda.cu, for the training code (one launch over all parameters):
   AdamW with wip/train.h's arithmetic (steps[k] already incremented, wd[k] per parameter), and global-norm
   clipping that never returns to the host per tensor (max_norm < 0: the norm only) */
void nn__cuda_adamw_multi(int n, float *const *p, const float *const *g, float *const *m, float *const *v,
                          const int64_t *numel, const int64_t *steps, const double *wd, double lr, double beta1,
                          double beta2, double eps, int maximize);
float nn__cuda_clip_grad_norm(int n, float *const *g, const int64_t *numel, double max_norm);
#endif

#ifdef __cplusplus
}
#endif
#endif /* NN_H */

/* ################################################################################################ [impl] */
#ifdef NN_IMPLEMENTATION
#ifndef NN_IMPLEMENTATION_DONE
#define NN_IMPLEMENTATION_DONE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* overridable allocator, as in stb: the pools are the only callers */
#ifndef NN_MALLOC
#define NN_MALLOC(n) malloc(n)
#define NN_FREE(p) free(p)
#define NN_REALLOC(p, n) realloc(p, n)
#endif

/* OpenMP through _Pragma so that builds without -fopenmp see no unknown pragmas */
#ifndef NN_OMP
#ifdef _OPENMP
#define NN_OMP(x) _Pragma(x)
#else
#define NN_OMP(x)
#endif
#endif

#ifndef NN_PI
#define NN_PI 3.14159265358979323846
#endif

/* ------------------------------------------------------------------------------------------- [impl:errors] */

static struct {
    nn_error_fn fn;
    void *user;
    char msg[1024];
} nn__err;

void nn_set_error_handler(nn_error_fn fn, void *user) { nn__err.fn = fn; nn__err.user = user; }
const char *nn_last_error(void) { return nn__err.msg; }

void nn_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nn__err.msg, sizeof nn__err.msg, fmt, ap);
    va_end(ap);
    if (nn__err.fn) nn__err.fn(nn__err.msg, nn__err.user);
    fprintf(stderr, "nn error: %s\n", nn__err.msg);
    abort();
}

size_t nn_dtype_size(nn_dtype dt) {
    static const size_t sz[NN_DTYPE_COUNT] = {4, 2, 2, 4, 8, 1, 1};
    return (unsigned)dt < NN_DTYPE_COUNT ? sz[dt] : 0;
}
const char *nn_dtype_name(nn_dtype dt) {
    static const char *nm[NN_DTYPE_COUNT] = {"f32", "f16", "bf16", "i32", "i64", "u8", "bool"};
    return (unsigned)dt < NN_DTYPE_COUNT ? nm[dt] : "?";
}
const char *nn_device_name(nn_device dev) { return dev == NN_CPU ? "cpu" : dev == NN_CUDA ? "cuda" : "?"; }
int nn_dtype_is_float(nn_dtype dt) { return dt == NN_F32 || dt == NN_F16 || dt == NN_BF16; }

char *nn_shape_str(const nn_tensor *t, char *buf, size_t n) {
    size_t used = 0;
    int d;
    if (!t) { snprintf(buf, n, "(null)"); return buf; }
    used += (size_t)snprintf(buf, n, "[");
    for (d = 0; d < t->ndim && used < n; d++)
        used += (size_t)snprintf(buf + used, n - used, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    if (used < n) snprintf(buf + used, n - used, "]");
    return buf;
}

/* shape strings for messages: a few rotating buffers so one message can show several shapes */
static const char *nn__s(const nn_tensor *t) {
    static char bufs[8][96];
    static int k;
    char *b = bufs[k++ & 7];
    return nn_shape_str(t, b, sizeof bufs[0]);
}

void nn__check_same_device(const char *op, const nn_tensor *a, const nn_tensor *b) {
    if (a->device != b->device)
        nn_error("%s: tensors on different devices: %s %s on %s and %s %s on %s", op, nn_dtype_name(a->dtype),
                 nn__s(a), nn_device_name(a->device), nn_dtype_name(b->dtype), nn__s(b), nn_device_name(b->device));
}
void nn__check_dtype(const char *op, const nn_tensor *t, nn_dtype dt, const char *what) {
    if (!t) nn_error("%s: %s is NULL", op, what);
    if (t->dtype != dt) nn_error("%s: %s must be %s, got %s %s", op, what, nn_dtype_name(dt), nn_dtype_name(t->dtype), nn__s(t));
}
void nn__check_f32(const char *op, const nn_tensor *t, const char *what) {
    if (!t) nn_error("%s: %s is NULL", op, what);
    if (t->dtype != NN_F32)
        nn_error("%s: %s must be f32 (the CPU computes in f32; nn_cast first), got %s %s", op, what,
                 nn_dtype_name(t->dtype), nn__s(t));
}
int nn__norm_dim(const char *op, const nn_tensor *t, int dim) {
    int d = dim < 0 ? dim + t->ndim : dim;
    if (d < 0 || d >= t->ndim) nn_error("%s: dim %d out of range for %s (ndim %d)", op, dim, nn__s(t), t->ndim);
    return d;
}

/* --------------------------------------------------------------------------------------------- [impl:half] */
/* IEEE binary16 and bfloat16 conversions with round-to-nearest-even, by bit manipulation (no hardware
   dependence, so results match the GPU's __float2half_rn / __float2bfloat16_rn). */

static uint32_t nn__f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float nn__u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float nn__bf16_to_f32(uint16_t h) { return nn__u2f((uint32_t)h << 16); }
uint16_t nn__f32_to_bf16(float f) {
    uint32_t u = nn__f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);  /* round half to even on the 16 dropped bits */
    return (uint16_t)(u >> 16);
}

float nn__half_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0x1f) return nn__u2f(sign | 0x7f800000u | (man << 13));          /* inf / NaN */
    if (exp == 0) {                                                             /* zero / subnormal */
        float v = (float)man * 5.9604644775390625e-8f;                          /* man * 2^-24 */
        return sign ? -v : v;
    }
    return nn__u2f(sign | ((exp + 112) << 23) | (man << 13));                   /* rebias 15 -> 127 */
}

uint16_t nn__f32_to_half(float f) {
    uint32_t u = nn__f2u(f), sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);                     /* NaN */
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u);                    /* >= 65520 rounds to inf */
    if (a < 0x38800000u) {                                                      /* below 2^-14: subnormal */
        /* value * 2^24 rounded to nearest even gives the subnormal mantissa */
        float v = nn__u2f(a) * 16777216.0f;
        float r = (float)(int32_t)v, d = v - r;
        uint32_t m = (uint32_t)r;
        if (d > 0.5f || (d == 0.5f && (m & 1u))) m++;
        return (uint16_t)(sign | m);
    }
    a += 0xfffu + ((a >> 13) & 1u);                                             /* round on 13 dropped bits */
    return (uint16_t)(sign | ((a - 0x38000000u) >> 13));                        /* rebias 127 -> 15 */
}

/* ------------------------------------------------------------------------------------------- [impl:memory] */
/* A caching pool per device. A request is rounded up to a size class (4 classes per power of two, so at
   most 25% slack; 512 bytes at least, like PyTorch's caching allocator) and served from that class's free
   list when it can: a training loop that repeats the same shapes stops calling malloc after step one.
   Storage descriptors live on the host for every device, so the same code manages GPU memory through two
   hooks (nn__cuda_malloc / nn__cuda_free, in nn_cuda.cu). */

struct nn_storage {
    void *ptr;          /* 64-byte aligned data */
    void *raw;          /* what the system allocator returned */
    size_t bytes;       /* the class size */
    int cls;
    nn_device device;
    int refs;
    nn_storage *next;   /* free list */
};

#define NN__NCLASS 256
typedef struct {
    nn_storage *free_list[NN__NCLASS];
    nn_mem_info info;
    int limit_read;
} nn__pool;

static nn__pool nn__pools[NN_DEVICE_COUNT];
static nn_storage *nn__spare_storage;  /* descriptors without memory, for reuse */

#ifdef NN_CUDA
void *nn__cuda_malloc(size_t bytes);   /* NULL when the device is out of memory */
void nn__cuda_free(void *p);
#endif

static int nn__size_class(size_t n, size_t *rounded) {
    int k = 9;
    size_t q;
    if (n <= 512) { *rounded = 512; return 0; }
    while (k < 60 && ((size_t)1 << (k + 1)) < n) k++;                   /* 2^k < n <= 2^(k+1) */
    q = (n - ((size_t)1 << k) + ((size_t)1 << (k - 2)) - 1) >> (k - 2);  /* quarters of 2^k above 2^k: 1..4 */
    *rounded = ((size_t)1 << k) + (q << (k - 2));
    return 1 + (k - 9) * 4 + (int)(q - 1);
}

static size_t nn__parse_bytes(const char *s) {
    char *end;
    double v;
    if (!s || !*s) return 0;
    v = strtod(s, &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; break;
    case 'm': case 'M': v *= 1048576.0; break;
    case 'g': case 'G': v *= 1073741824.0; break;
    case 't': case 'T': v *= 1099511627776.0; break;
    default: break;
    }
    return v > 0 ? (size_t)v : 0;
}

static nn__pool *nn__pool_of(nn_device dev) {
    nn__pool *p = &nn__pools[dev];
    if (!p->limit_read) {
        p->limit_read = 1;
        if (!p->info.limit) p->info.limit = nn__parse_bytes(getenv(dev == NN_CPU ? "NN_MEM_LIMIT" : "NN_CUDA_MEM_LIMIT"));
    }
    return p;
}

static void nn__pool_release_block(nn_device dev, nn_storage *s) {
    if (dev == NN_CPU) NN_FREE(s->raw);
#ifdef NN_CUDA
    else nn__cuda_free(s->raw);
#endif
    s->raw = s->ptr = NULL;
    s->next = nn__spare_storage;
    nn__spare_storage = s;
}

void nn_mem_trim(nn_device dev) {
    nn__pool *p = nn__pool_of(dev);
    int c;
    for (c = 0; c < NN__NCLASS; c++) {
        while (p->free_list[c]) {
            nn_storage *s = p->free_list[c];
            p->free_list[c] = s->next;
            p->info.cached -= s->bytes;
            nn__pool_release_block(dev, s);
        }
    }
}

static nn_storage *nn__storage_alloc(nn_device dev, size_t n, const char *why) {
    nn__pool *p = nn__pool_of(dev);
    size_t bytes;
    int cls = nn__size_class(n, &bytes);
    nn_storage *s;
    if (cls < 0 || cls >= NN__NCLASS) nn_error("%s: cannot allocate %zu bytes", why, n);
    p->info.allocs++;
    if ((s = p->free_list[cls]) != NULL) {
        p->free_list[cls] = s->next;
        p->info.cached -= bytes;
    } else {
        void *raw = NULL;
        if (p->info.limit && p->info.current + p->info.cached + bytes > p->info.limit) nn_mem_trim(dev);
        if (p->info.limit && p->info.current + bytes > p->info.limit)
            nn_error("%s: out of memory on %s: asked for %zu bytes with %zu in use, %zu cached, limit %zu "
                     "(peak %zu)", why, nn_device_name(dev), bytes, p->info.current, p->info.cached,
                     p->info.limit, p->info.peak);
        if (dev == NN_CPU) raw = NN_MALLOC(bytes + 64);
#ifdef NN_CUDA
        else raw = nn__cuda_malloc(bytes);
        if (!raw && dev != NN_CPU) { nn_mem_trim(dev); raw = nn__cuda_malloc(bytes); }
#endif
        if (!raw && dev == NN_CPU) { nn_mem_trim(dev); raw = NN_MALLOC(bytes + 64); }
        if (!raw)
            nn_error("%s: out of memory on %s: the system refused %zu bytes (%zu in use by tensors, peak %zu)",
                     why, nn_device_name(dev), bytes, p->info.current, p->info.peak);
        p->info.misses++;
        if (nn__spare_storage) { s = nn__spare_storage; nn__spare_storage = s->next; }
        else if (!(s = (nn_storage *)NN_MALLOC(sizeof *s))) nn_error("%s: out of host memory", why);
        s->raw = raw;
        s->ptr = dev == NN_CPU ? (void *)(((uintptr_t)raw + 63) & ~(uintptr_t)63) : raw;
        s->bytes = bytes;
        s->cls = cls;
        s->device = dev;
    }
    s->refs = 1;
    s->next = NULL;
    p->info.current += bytes;
    if (p->info.current > p->info.peak) p->info.peak = p->info.current;
    return s;
}

static void nn__storage_release(nn_storage *s) {
    nn__pool *p;
    if (!s || --s->refs > 0) return;
    p = nn__pool_of(s->device);
    p->info.current -= s->bytes;
    p->info.cached += s->bytes;
    s->next = p->free_list[s->cls];
    p->free_list[s->cls] = s;
}

nn_mem_info nn_mem_stats(nn_device dev) { return nn__pool_of(dev)->info; }
void nn_mem_reset_peak(nn_device dev) { nn__pool *p = nn__pool_of(dev); p->info.peak = p->info.current; }
void nn_mem_set_limit(nn_device dev, size_t bytes) { nn__pool_of(dev)->info.limit = bytes; }

/* ------------------------------------------------------------------------------------------ [impl:tensors] */

static struct {
    nn_tensor *spare;                 /* recycled tensor headers (linked through ->grad) */
    nn_tensor **scope;                /* tensors owned by open scopes, innermost last */
    int scope_n, scope_cap;
    int *marks;                       /* where each open scope starts in `scope` */
    int depth, marks_cap;
    int no_grad;                      /* grad mode off */
    int eval;                         /* training off */
    nn_rng_state rng;
    nn_node **tape;
    int tape_n, tape_cap;
    nn_node *spare_nodes;
    uint64_t next_node_id;
    int in_backward;
} nn__g;

static void *nn__grow(void *p, int *cap, int need, size_t elem) {
    if (need > *cap) {
        int c = *cap ? *cap : 64;
        while (c < need) c *= 2;
        p = NN_REALLOC(p, (size_t)c * elem);
        if (!p) nn_error("nn: out of host memory growing an internal table");
        *cap = c;
    }
    return p;
}

static nn_tensor *nn__header(void) {
    nn_tensor *t = nn__g.spare;
    if (t) nn__g.spare = t->grad;
    else if (!(t = (nn_tensor *)NN_MALLOC(sizeof *t))) nn_error("nn: out of host memory for a tensor header");
    memset(t, 0, sizeof *t);
    t->refs = 1;
    t->scope_slot = -1;
    return t;
}

static void nn__own(nn_tensor *t) {   /* hand a fresh tensor to the innermost scope, if any */
    if (nn__g.depth > 0) {
        nn__g.scope = (nn_tensor **)nn__grow(nn__g.scope, &nn__g.scope_cap, nn__g.scope_n + 1, sizeof(nn_tensor *));
        t->scope_slot = nn__g.scope_n;
        nn__g.scope[nn__g.scope_n++] = t;
    }
}

static void nn__check_shape(const char *op, int ndim, const int64_t *shape, int64_t *numel) {
    int d;
    int64_t n = 1;
    if (ndim < 0 || ndim > NN_MAX_DIMS) nn_error("%s: %d dims; nn supports 0..%d", op, ndim, NN_MAX_DIMS);
    if (ndim > 0 && !shape) nn_error("%s: shape is NULL", op);
    for (d = 0; d < ndim; d++) {
        if (shape[d] < 0) nn_error("%s: negative size %lld in dim %d", op, (long long)shape[d], d);
        if (shape[d] && n > INT64_MAX / 16 / shape[d]) nn_error("%s: shape too large (dim %d)", op, d);
        n *= shape[d];
    }
    *numel = n;
}

static nn_tensor *nn__alloc(nn_dtype dt, nn_device dev, int ndim, const int64_t *shape, int scoped) {
    int64_t numel;
    nn_tensor *t;
    nn__check_shape("nn_empty", ndim, shape, &numel);
    if ((unsigned)dt >= NN_DTYPE_COUNT) nn_error("nn_empty: unknown dtype %d", (int)dt);
    if ((unsigned)dev >= NN_DEVICE_COUNT) nn_error("nn_empty: unknown device %d", (int)dev);
#ifndef NN_CUDA
    if (dev != NN_CPU) nn_error("nn_empty: this program was built without CUDA (define NN_CUDA and link nn_cuda.cu)");
#endif
    t = nn__header();
    t->dtype = dt;
    t->device = dev;
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, sizeof(int64_t) * (size_t)ndim);
    t->numel = numel;
    t->storage = nn__storage_alloc(dev, (size_t)numel * nn_dtype_size(dt), "nn_empty");
    t->data = t->storage->ptr;
    if (scoped) nn__own(t);
    return t;
}

nn_tensor *nn__new(nn_dtype dt, nn_device dev, int ndim, const int64_t *shape) {
    return nn__alloc(dt, dev, ndim, shape, 1);
}

/* a new header over t's storage (a view): same data, given shape */
static nn_tensor *nn__view(nn_tensor *t, int ndim, const int64_t *shape, int64_t elem_offset) {
    nn_tensor *v = nn__header();
    int64_t numel;
    nn__check_shape("nn_view", ndim, shape, &numel);
    v->dtype = t->dtype;
    v->device = t->device;
    v->ndim = ndim;
    if (ndim) memcpy(v->shape, shape, sizeof(int64_t) * (size_t)ndim);
    v->numel = numel;
    v->storage = t->storage;
    v->storage->refs++;
    v->data = (char *)t->data + elem_offset * (int64_t)nn_dtype_size(t->dtype);
    nn__own(v);
    return v;
}

static void nn__release(nn_tensor *t) {
    if (!t) return;
    if (--t->refs > 0) return;
    nn__storage_release(t->storage);
    if (t->grad) { t->grad->scope_slot = -1; nn__release(t->grad); }
    t->grad = nn__g.spare;
    t->storage = NULL;
    t->data = NULL;
    nn__g.spare = t;
}

nn_tensor *nn_retain(nn_tensor *t) { if (t) t->refs++; return t; }

void nn_tensor_free(nn_tensor *t) {
    if (!t) return;
    if (t->refs <= 0) nn_error("nn_tensor_free: tensor '%s' %s was already freed", t->name, nn__s(t));
    if (t->scope_slot >= 0) {
        if (t->scope_slot < nn__g.scope_n && nn__g.scope[t->scope_slot] == t) nn__g.scope[t->scope_slot] = NULL;
        t->scope_slot = -1;
    }
    nn__release(t);
}

void nn_scope_begin(void) {
    nn__g.marks = (int *)nn__grow(nn__g.marks, &nn__g.marks_cap, nn__g.depth + 1, sizeof(int));
    nn__g.marks[nn__g.depth++] = nn__g.scope_n;
}

static void nn__tape_clear(int base);

void nn_scope_end_n(int n_keep, nn_tensor **keep) {
    int start, i, k, w;
    if (nn__g.depth <= 0) nn_error("nn_scope_end: no scope is open");
    start = nn__g.marks[--nn__g.depth];
    w = start;
    for (i = start; i < nn__g.scope_n; i++) {
        nn_tensor *t = nn__g.scope[i];
        int kept = 0;
        if (!t) continue;
        for (k = 0; k < n_keep; k++) if (keep[k] == t) kept = 1;
        if (kept && nn__g.depth > 0) { t->scope_slot = w; nn__g.scope[w++] = t; }  /* to the parent scope */
        else { t->scope_slot = -1; if (!kept) nn__release(t); }               /* kept at top: the caller's */
    }
    nn__g.scope_n = w;
    if (nn__g.depth == 0 && !nn__g.in_backward) nn__tape_clear(0);
}

nn_tensor *nn_scope_end(nn_tensor *keep) { nn_scope_end_n(keep ? 1 : 0, &keep); return keep; }
int nn_scope_depth(void) { return nn__g.depth; }

static void nn__fill_f32(float *p, int64_t n, float v) {
    int64_t i;
    NN_OMP("omp parallel for if (n > 65536)")
    for (i = 0; i < n; i++) p[i] = v;
}

/* store double v as element i of a buffer of dtype dt */
static void nn__store(void *p, nn_dtype dt, int64_t i, double v) {
    switch (dt) {
    case NN_F32: ((float *)p)[i] = (float)v; break;
    case NN_F16: ((uint16_t *)p)[i] = nn__f32_to_half((float)v); break;
    case NN_BF16: ((uint16_t *)p)[i] = nn__f32_to_bf16((float)v); break;
    case NN_I32: ((int32_t *)p)[i] = (int32_t)v; break;
    case NN_I64: ((int64_t *)p)[i] = (int64_t)v; break;
    case NN_U8: ((uint8_t *)p)[i] = (uint8_t)v; break;
    case NN_BOOL: ((uint8_t *)p)[i] = v != 0; break;
    default: break;
    }
}
static double nn__load(const void *p, nn_dtype dt, int64_t i) {
    switch (dt) {
    case NN_F32: return ((const float *)p)[i];
    case NN_F16: return nn__half_to_f32(((const uint16_t *)p)[i]);
    case NN_BF16: return nn__bf16_to_f32(((const uint16_t *)p)[i]);
    case NN_I32: return ((const int32_t *)p)[i];
    case NN_I64: return (double)((const int64_t *)p)[i];
    case NN_U8: case NN_BOOL: return ((const uint8_t *)p)[i];
    default: return 0;
    }
}

#ifdef NN_CUDA
void nn__cuda_memcpy(void *dst, const void *src, size_t bytes, int kind); /* 0 h2d, 1 d2h, 2 d2d */
void nn__cuda_fill(nn_tensor *t, double v);
void nn__cuda_cast(const nn_tensor *x, nn_tensor *y);
#endif

#ifdef NN_CUDA
int nn__cuda_available(void);
void nn__cuda_synchronize(void);
void nn__cuda_set_tf32(int on);
int nn_cuda_available(void) { return nn__cuda_available(); }
void nn_cuda_synchronize(void) { nn__cuda_synchronize(); }
void nn_cuda_set_tf32(int on) { nn__cuda_set_tf32(on); }
#else
int nn_cuda_available(void) { return 0; }
void nn_cuda_synchronize(void) {}
void nn_cuda_set_tf32(int on) { (void)on; }
#endif

void nn_fill_(nn_tensor *t, double v) {
    int64_t i;
    if (!t) nn_error("nn_fill_: tensor is NULL");
#ifdef NN_CUDA
    if (t->device == NN_CUDA) { nn__cuda_fill(t, v); return; }
#endif
    if (t->dtype == NN_F32) { nn__fill_f32((float *)t->data, t->numel, (float)v); return; }
    for (i = 0; i < t->numel; i++) nn__store(t->data, t->dtype, i, v);
}

nn_tensor *nn_empty(nn_dtype dt, int ndim, const int64_t *shape) { return nn__new(dt, NN_CPU, ndim, shape); }
nn_tensor *nn_full(nn_dtype dt, int ndim, const int64_t *shape, double v) {
    nn_tensor *t = nn_empty(dt, ndim, shape);
    nn_fill_(t, v);
    return t;
}
nn_tensor *nn_zeros(nn_dtype dt, int ndim, const int64_t *shape) { return nn_full(dt, ndim, shape, 0.0); }
nn_tensor *nn_ones(nn_dtype dt, int ndim, const int64_t *shape) { return nn_full(dt, ndim, shape, 1.0); }
nn_tensor *nn_like(const nn_tensor *t) { return nn__new(t->dtype, t->device, t->ndim, t->shape); }
nn_tensor *nn_zeros_like(const nn_tensor *t) { nn_tensor *z = nn_like(t); nn_fill_(z, 0); return z; }

nn_tensor *nn_arange(nn_dtype dt, double start, double end, double step) {
    int64_t n, i;
    nn_tensor *t;
    if (step == 0 || (end - start) / step < 0 || !isfinite(start) || !isfinite(end))
        nn_error("nn_arange: cannot go from %g to %g in steps of %g", start, end, step);
    n = (int64_t)ceil((end - start) / step);
    t = nn_empty(dt, 1, &n);
    for (i = 0; i < n; i++) nn__store(t->data, dt, i, start + (double)i * step);
    return t;
}

nn_tensor *nn_from_data(nn_dtype dt, int ndim, const int64_t *shape, const void *src) {
    nn_tensor *t = nn_empty(dt, ndim, shape);
    if (t->numel && !src) nn_error("nn_from_data: source is NULL for %s", nn__s(t));
    if (t->numel) memcpy(t->data, src, (size_t)t->numel * nn_dtype_size(dt));
    return t;
}
nn_tensor *nn_from_f32(int ndim, const int64_t *shape, const float *src) { return nn_from_data(NN_F32, ndim, shape, src); }

void nn_to_host(const nn_tensor *t, void *dst) {
    size_t bytes;
    if (!t || !dst) nn_error("nn_to_host: NULL argument");
    bytes = (size_t)t->numel * nn_dtype_size(t->dtype);
#ifdef NN_CUDA
    if (t->device == NN_CUDA) { nn__cuda_memcpy(dst, t->data, bytes, 1); return; }
#endif
    if (bytes) memcpy(dst, t->data, bytes);
}

double nn_item(const nn_tensor *t) {
    unsigned char buf[8];
    if (!t) nn_error("nn_item: tensor is NULL");
    if (t->numel != 1) nn_error("nn_item: tensor %s has %lld elements, not one", nn__s(t), (long long)t->numel);
    nn_to_host(t, buf);
    return nn__load(buf, t->dtype, 0);
}

float *nn_f32_data(nn_tensor *t) {
    nn__check_f32("nn_f32_data", t, "tensor");
    if (t->device != NN_CPU) nn_error("nn_f32_data: tensor %s is on %s; nn_to(t, NN_CPU) first", nn__s(t), nn_device_name(t->device));
    return (float *)t->data;
}

void nn_tensor_set_name(nn_tensor *t, const char *name) {
    if (!t) nn_error("nn_tensor_set_name: tensor is NULL");
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}

void nn_requires_grad(nn_tensor *t, int on) {
    if (!t) nn_error("nn_requires_grad: tensor is NULL");
    if (t->node) nn_error("nn_requires_grad: %s is the output of an op, not a leaf", nn__s(t));
    if (on && !nn_dtype_is_float(t->dtype)) nn_error("nn_requires_grad: %s tensor %s cannot have a gradient", nn_dtype_name(t->dtype), nn__s(t));
    t->requires_grad = on != 0;
}

void nn_zero_grad(nn_tensor *t) {
    if (t && t->grad) { nn_tensor *g = t->grad; t->grad = NULL; g->scope_slot = -1; nn__release(g); }
}

void nn_copy_(nn_tensor *dst, const nn_tensor *src) {
    int64_t i;
    if (!dst || !src) nn_error("nn_copy_: NULL argument");
    if (dst->numel != src->numel)
        nn_error("nn_copy_: sizes differ: %s (%lld) <- %s (%lld)", nn__s(dst), (long long)dst->numel, nn__s(src), (long long)src->numel);
#ifdef NN_CUDA
    if (dst->device == NN_CUDA || src->device == NN_CUDA) {
        if (dst->dtype == src->dtype) {
            nn__cuda_memcpy(dst->data, src->data, (size_t)src->numel * nn_dtype_size(src->dtype),
                            src->device == NN_CPU ? 0 : dst->device == NN_CPU ? 1 : 2);
            return;
        }
        if (dst->device == src->device) { nn__cuda_cast(src, dst); return; }
        nn_error("nn_copy_: cannot convert %s to %s across devices", nn_dtype_name(src->dtype), nn_dtype_name(dst->dtype));
    }
#endif
    if (dst->dtype == src->dtype) { memcpy(dst->data, src->data, (size_t)src->numel * nn_dtype_size(src->dtype)); return; }
    NN_OMP("omp parallel for if (src->numel > 65536)")
    for (i = 0; i < src->numel; i++) nn__store(dst->data, dst->dtype, i, nn__load(src->data, src->dtype, i));
}

/* ---------------------------------------------------------------------------------------------- [impl:rng] */
/* Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC'11), with
   the paper's multipliers and Weyl key increments (the same constants as Random123 and cuRAND).
   Element i of a draw that starts at offset o uses block (o + i) / 4 and lane (o + i) % 4. */

void nn_philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    int r;
    for (r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1; c3 = (uint32_t)p0; c0 = n0; c2 = n2;
        k0 += 0x9E3779B9u; k1 += 0xBB67AE85u;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

static uint32_t nn__rng_u32(uint64_t seed, uint64_t index) {
    uint32_t r[4];
    nn_philox4x32(seed, index >> 2, r);
    return r[index & 3];
}
float nn_rng_uniform_at(uint64_t seed, uint64_t index) {
    return (float)(nn__rng_u32(seed, index) >> 8) * (1.0f / 16777216.0f);
}

void nn_seed(uint64_t seed) { nn__g.rng.seed = seed; nn__g.rng.offset = 0; }
nn_rng_state nn_rng_get(void) { return nn__g.rng; }
void nn_rng_set(nn_rng_state s) { nn__g.rng = s; }
uint64_t nn_rng_reserve(uint64_t n) {
    uint64_t o = nn__g.rng.offset;
    nn__g.rng.offset += (n + 3) & ~(uint64_t)3;   /* whole Philox blocks, so draws never share one */
    return o;
}

void nn_init_uniform_(nn_tensor *t, double lo, double hi) {
    uint64_t o, seed = nn__g.rng.seed;
    int64_t i;
    float *p;
    nn__check_f32("nn_init_uniform_", t, "tensor");
    o = nn_rng_reserve((uint64_t)t->numel);
    p = (float *)t->data;
    NN_OMP("omp parallel for if (t->numel > 65536)")
    for (i = 0; i < t->numel; i++) p[i] = (float)(lo + (hi - lo) * nn_rng_uniform_at(seed, o + (uint64_t)i));
}

/* Box-Muller on pairs: normals 2j and 2j+1 come from the uniforms at 2j and 2j+1 */
static void nn__normal_fill(float *p, int64_t n, double mean, double std) {
    uint64_t seed = nn__g.rng.seed, o = nn_rng_reserve((uint64_t)(n + (n & 1)));
    int64_t j;
    NN_OMP("omp parallel for if (n > 65536)")
    for (j = 0; j < (n + 1) / 2; j++) {
        double u1 = ((double)(nn__rng_u32(seed, o + 2 * (uint64_t)j) >> 8) + 0.5) / 16777216.0;  /* (0,1) */
        double u2 = (double)(nn__rng_u32(seed, o + 2 * (uint64_t)j + 1) >> 8) / 16777216.0;
        double r = sqrt(-2.0 * log(u1));
        p[2 * j] = (float)(mean + std * r * cos(2.0 * NN_PI * u2));
        if (2 * j + 1 < n) p[2 * j + 1] = (float)(mean + std * r * sin(2.0 * NN_PI * u2));
    }
}

void nn_init_normal_(nn_tensor *t, double mean, double std) {
    nn__check_f32("nn_init_normal_", t, "tensor");
    nn__normal_fill((float *)t->data, t->numel, mean, std);
}

/* inverse of the standard normal CDF via erfinv by Newton steps on erf (exact to f32 after a few) */
static double nn__erfinv(double y) {
    double x, w = -log((1.0 - y) * (1.0 + y));
    int it;
    /* the ends, as torch.erfinv: trunc_normal_ draws u = 0 about once in 2^24 values and clamps the -inf */
    if (!(y > -1.0)) return y == -1.0 ? -INFINITY : NAN;
    if (!(y < 1.0)) return y == 1.0 ? INFINITY : NAN;
    /* Giles' single-precision approximation as the starting point (M. Giles, "Approximating the erfinv
       function", GPU Computing Gems, 2011), refined by Newton's method on erf(x) - y */
    if (w < 5.0) {
        double p = 2.81022636e-08;
        w -= 2.5;
        p = 3.43273939e-07 + p * w; p = -3.5233877e-06 + p * w; p = -4.39150654e-06 + p * w;
        p = 0.00021858087 + p * w; p = -0.00125372503 + p * w; p = -0.00417768164 + p * w;
        p = 0.246640727 + p * w; p = 1.50140941 + p * w;
        x = p * y;
    } else {
        double p = -0.000200214257;
        w = sqrt(w) - 3.0;
        p = 0.000100950558 + p * w; p = 0.00134934322 + p * w; p = -0.00367342844 + p * w;
        p = 0.00573950773 + p * w; p = -0.0076224613 + p * w; p = 0.00943887047 + p * w;
        p = 1.00167406 + p * w; p = 2.83297682 + p * w;
        x = p * y;
    }
    for (it = 0; it < 2; it++) x -= (erf(x) - y) / (2.0 / sqrt(NN_PI) * exp(-x * x));
    return x;
}

/* torch.nn.init.trunc_normal_'s method: uniform between the CDF values of the bounds, then the inverse CDF */
void nn_init_trunc_normal_(nn_tensor *t, double mean, double std, double a, double b) {
    double lo = 0.5 * (1.0 + erf((a - mean) / std / sqrt(2.0))), hi = 0.5 * (1.0 + erf((b - mean) / std / sqrt(2.0)));
    uint64_t o, seed = nn__g.rng.seed;
    int64_t i;
    float *p;
    nn__check_f32("nn_init_trunc_normal_", t, "tensor");
    if (!(std > 0) || !(a < b)) nn_error("nn_init_trunc_normal_: need std > 0 and a < b, got std %g, [%g, %g]", std, a, b);
    o = nn_rng_reserve((uint64_t)t->numel);
    p = (float *)t->data;
    NN_OMP("omp parallel for if (t->numel > 65536)")
    for (i = 0; i < t->numel; i++) {
        double u = lo + (hi - lo) * nn_rng_uniform_at(seed, o + (uint64_t)i);
        double v = mean + std * sqrt(2.0) * nn__erfinv(2.0 * u - 1.0);
        p[i] = (float)(v < a ? a : v > b ? b : v);
    }
}

static void nn__fans(const nn_tensor *t, double *fan_in, double *fan_out) {
    double rf = 1;
    int d;
    if (t->ndim < 2) nn_error("nn_init: fan in/out need at least 2 dims, got %s", nn__s(t));
    for (d = 2; d < t->ndim; d++) rf *= (double)t->shape[d];
    *fan_in = (double)t->shape[1] * rf;
    *fan_out = (double)t->shape[0] * rf;
}

void nn_init_xavier_uniform_(nn_tensor *t) {
    double fi, fo, a;
    nn__fans(t, &fi, &fo);
    a = sqrt(6.0 / (fi + fo));
    nn_init_uniform_(t, -a, a);
}

void nn_init_kaiming_uniform_(nn_tensor *t, double a) {
    double fi, fo, gain, bound;
    nn__fans(t, &fi, &fo);
    gain = sqrt(2.0 / (1.0 + a * a));          /* leaky_relu gain */
    bound = gain * sqrt(3.0 / fi);
    nn_init_uniform_(t, -bound, bound);
}

nn_tensor *nn_rand(int ndim, const int64_t *shape) { return nn_uniform(ndim, shape, 0.0, 1.0); }
nn_tensor *nn_uniform(int ndim, const int64_t *shape, double lo, double hi) {
    nn_tensor *t = nn_empty(NN_F32, ndim, shape);
    nn_init_uniform_(t, lo, hi);
    return t;
}
nn_tensor *nn_randn(int ndim, const int64_t *shape) {
    nn_tensor *t = nn_empty(NN_F32, ndim, shape);
    nn_init_normal_(t, 0, 1);
    return t;
}
nn_tensor *nn_trunc_normal(int ndim, const int64_t *shape, double mean, double std, double a, double b) {
    nn_tensor *t = nn_empty(NN_F32, ndim, shape);
    nn_init_trunc_normal_(t, mean, std, a, b);
    return t;
}

/* ------------------------------------------------------------------------------------------ [impl:autograd] */
/* The tape is an array of nodes in creation order, which is a topological order: backward walks it from
   the end. A node points at its inputs' creator nodes (or at leaf tensors), not at input tensors, so an
   input's memory is freed as soon as nothing else needs it; what backward needs is saved explicitly. */

int nn_grad_enabled(void) { return !nn__g.no_grad; }
int nn_set_grad_enabled(int on) { int prev = !nn__g.no_grad; nn__g.no_grad = !on; return prev; }
int nn_training(void) { return !nn__g.eval; }
int nn_set_training(int on) { int prev = !nn__g.eval; nn__g.eval = !on; return prev; }

static int nn__node_live(const nn_tensor *t) { return t->node && t->node->id == t->node_id; }
int nn__tracks(const nn_tensor *t) { return t && (t->node ? nn__node_live(t) : t->requires_grad); }

nn_node *nn__record(const char *op, nn__backward_fn bw, int n_in, nn_tensor **in, int n_out, nn_tensor **out) {
    nn_node *n;
    int i, any = 0;
    if (nn__g.no_grad) return NULL;
    for (i = 0; i < n_in; i++) if (in[i] && nn__tracks(in[i])) any = 1;
    if (!any) return NULL;
    if (n_in > NN_MAX_NODE_IN || n_out > NN_MAX_NODE_OUT) nn_error("%s: too many inputs/outputs for a tape node", op);
    if ((n = nn__g.spare_nodes) != NULL) nn__g.spare_nodes = n->next_free;
    else if (!(n = (nn_node *)NN_MALLOC(sizeof *n))) nn_error("%s: out of host memory for a tape node", op);
    memset(n, 0, sizeof *n);
    n->id = ++nn__g.next_node_id;
    n->op = op;
    n->backward = bw;
    n->n_in = n_in;
    n->n_out = n_out;
    n->rng = nn__g.rng;
    for (i = 0; i < n_in; i++) {
        nn__edge *e = &n->in[i];
        nn_tensor *t = in[i];
        if (!t) continue;
        e->dtype = t->dtype;
        e->ndim = t->ndim;
        memcpy(e->shape, t->shape, sizeof e->shape);
        if (t->node) {
            if (nn__node_live(t)) { e->node = t->node; e->out = t->node_out; e->needs_grad = 1; }
        } else if (t->requires_grad) {
            e->leaf = nn_retain(t);
            e->needs_grad = 1;
        }
    }
    for (i = 0; i < n_out; i++) {
        out[i]->node = n;
        out[i]->node_id = n->id;
        out[i]->node_out = i;
        out[i]->requires_grad = 1;
    }
    nn__g.tape = (nn_node **)nn__grow(nn__g.tape, &nn__g.tape_cap, nn__g.tape_n + 1, sizeof(nn_node *));
    nn__g.tape[nn__g.tape_n++] = n;
    return n;
}

void nn__save(nn_node *n, nn_tensor *t) {
    if (n->n_saved >= NN_MAX_SAVED) nn_error("%s: too many saved tensors", n->op);
    n->saved[n->n_saved++] = nn_retain(t);
}

int nn__needs_grad(const nn_node *n, int i) { return i < n->n_in && n->in[i].needs_grad; }

static void nn__node_release(nn_node *n) {
    int i;
    if (!n->id) return;
    for (i = 0; i < n->n_in; i++) if (n->in[i].leaf) { nn__release(n->in[i].leaf); n->in[i].leaf = NULL; }
    for (i = 0; i < n->n_out; i++) if (n->gout[i]) { nn__release(n->gout[i]); n->gout[i] = NULL; }
    for (i = 0; i < n->n_saved; i++) nn__release(n->saved[i]);
    n->n_saved = 0;
    n->id = 0;
    n->next_free = nn__g.spare_nodes;
    nn__g.spare_nodes = n;
}

static void nn__tape_clear(int base) {
    while (nn__g.tape_n > base) nn__node_release(nn__g.tape[--nn__g.tape_n]);
}

/* an unscoped (owned by its holder) tensor of the given shape: gradients of leaves and of tape nodes */
static nn_tensor *nn__owned(nn_dtype dt, nn_device dev, int ndim, const int64_t *shape) {
    return nn__alloc(dt, dev, ndim, shape, 0);
}

static int nn__same_shape(int nd, const int64_t *s, const nn_tensor *t) {
    return nd == t->ndim && (nd == 0 || memcmp(s, t->shape, sizeof(int64_t) * (size_t)nd) == 0);
}

static void nn__add_into(nn_tensor *dst, const nn_tensor *src);   /* dst += src, same numel, f32 */

/* add g into the gradient slot *slot (which holds a tensor of `shape` or NULL) */
static void nn__accumulate_slot(nn_tensor **slot, nn_tensor *g, int ndim, const int64_t *shape, int leaf, int may_take) {
    nn_tensor *r;
    if (g->dtype != NN_F32) g = nn_cast(g, NN_F32);
    r = nn__sum_to(g, ndim, shape);
    if (!*slot) {
        if (may_take && r->refs == 1 && r->scope_slot >= 0 && r->storage->refs == 1 && r->scope_slot < nn__g.scope_n &&
            nn__g.scope[r->scope_slot] == r) {
            /* nobody else holds it: take it from its scope instead of copying */
            nn__g.scope[r->scope_slot] = NULL;
            r->scope_slot = -1;
            *slot = r;
        } else if (leaf) {                                   /* a private copy: the leaf owns its gradient */
            nn_tensor *c = nn__owned(NN_F32, r->device, ndim, shape);
            nn_copy_(c, r);
            *slot = c;
        } else {
            *slot = nn_retain(r);                            /* shared read-only until a second gradient comes */
        }
    } else if ((*slot)->refs == 1 && (*slot)->storage->refs == 1) {
        nn__add_into(*slot, r);
    } else {                                                 /* shared: replace, never write through */
        nn_tensor *c = nn__owned(NN_F32, r->device, ndim, shape);
        nn_copy_(c, *slot);
        nn__add_into(c, r);
        nn__release(*slot);
        *slot = c;
    }
}

void nn__accumulate(nn_node *n, int i, nn_tensor *g) {
    nn__edge *e;
    if (!nn__needs_grad(n, i) || !g) return;
    e = &n->in[i];
    if (e->leaf) nn__accumulate_slot(&e->leaf->grad, g, e->ndim, e->shape, 1, 1);
    else if (e->node && e->node->id) nn__accumulate_slot(&e->node->gout[e->out], g, e->ndim, e->shape, 0, 1);
}

/* start backward at t with gradient g */
static void nn__seed(const char *op, nn_tensor *t, nn_tensor *g) {
    if (g->numel != t->numel)
        nn_error("%s: gradient %s does not match output %s", op, nn__s(g), nn__s(t));
    if (t->node) {
        if (!nn__node_live(t))
            nn_error("%s: the tape that produced %s was already consumed by an earlier nn_backward, or its "
                     "outermost scope closed", op, nn__s(t));
        nn__accumulate_slot(&t->node->gout[t->node_out], g, t->ndim, t->shape, 0, 0);   /* the caller's: never taken */
    } else if (t->requires_grad) {
        nn__accumulate_slot(&t->grad, g, t->ndim, t->shape, 1, 0);
    } else {
        nn_error("%s: %s does not require grad (no parameter reached it with grad mode on)", op, nn__s(t));
    }
}

/* run the tape from its end down to base, releasing each node as soon as its backward has run */
static void nn__run_tape(int base) {
    int idx, prev_grad = nn_set_grad_enabled(0), prev_in = nn__g.in_backward;
    nn__g.in_backward = 1;
    for (idx = nn__g.tape_n - 1; idx >= base; idx--) {
        nn_node *n = nn__g.tape[idx];
        int k, has = 0;
        for (k = 0; k < n->n_out; k++) if (n->gout[k]) has = 1;
        if (has && n->backward) {
            nn_scope_begin();
            n->backward(n);
            nn_scope_end(NULL);
        }
        nn__node_release(n);
    }
    nn__g.tape_n = base;
    nn__g.in_backward = prev_in;
    nn_set_grad_enabled(prev_grad);
}

static void nn__autocast_cache_clear(void);

void nn_backward_with(int n, nn_tensor **outputs, nn_tensor **grads) {
    int i;
    for (i = 0; i < n; i++) {
        if (!outputs[i] || !grads[i]) nn_error("nn_backward: output or gradient %d is NULL", i);
        nn__seed("nn_backward", outputs[i], grads[i]);
    }
    nn__run_tape(0);
    nn__autocast_cache_clear();   /* the optimiser may change the weights next */
}

void nn_backward(nn_tensor *loss) {
    nn_tensor *one;
    if (!loss) nn_error("nn_backward: loss is NULL");
    if (loss->numel != 1) nn_error("nn_backward: the loss must have one element, got %s (reduce it first)", nn__s(loss));
    nn_scope_begin();
    one = nn__new(NN_F32, loss->device, loss->ndim, loss->shape);
    nn_fill_(one, 1.0);
    nn__seed("nn_backward", loss, one);
    nn_scope_end(NULL);
    nn__run_tape(0);
    nn__autocast_cache_clear();
}

/* Autocast (see nn_autocast_begin in [api:autograd]). State: the dtype in force, the stack of enclosing
   regions' dtypes, and the weight-cast cache: (parameter, dtype) -> its rounded copy, both retained. */
#define NN__AUTOCAST_DEPTH 32
typedef struct { nn_tensor *key, *val; nn_dtype dt; } nn__ac_entry;
static struct {
    nn_dtype cur;                          /* NN_F32 (= 0): off */
    nn_dtype stack[NN__AUTOCAST_DEPTH];
    int depth;
    nn__ac_entry *cache;
    int n, cap;
} nn__ac;

static void nn__autocast_cache_clear(void) {
    int i;
    for (i = 0; i < nn__ac.n; i++) { nn__release(nn__ac.cache[i].val); nn__release(nn__ac.cache[i].key); }  /* our references */
    nn__ac.n = 0;
}

nn_dtype nn_autocast_dtype(void) { return nn__ac.cur; }

void nn_autocast_begin(nn_dtype dt) {
    if (dt != NN_F32 && dt != NN_BF16 && dt != NN_F16)
        nn_error("nn_autocast_begin: dtype must be bf16, f16 or f32 (off), got %s", nn_dtype_name(dt));
    if (nn__ac.depth >= NN__AUTOCAST_DEPTH) nn_error("nn_autocast_begin: more than %d nested regions", NN__AUTOCAST_DEPTH);
    nn__ac.stack[nn__ac.depth++] = nn__ac.cur;
    nn__ac.cur = dt;
}

void nn_autocast_end(void) {
    if (nn__ac.depth <= 0) nn_error("nn_autocast_end: no autocast region is open");
    nn__ac.cur = nn__ac.stack[--nn__ac.depth];
    if (nn__ac.depth == 0) nn__autocast_cache_clear();   /* torch clears its cast cache at the outermost exit */
}

/* dst (f32) = src (f32) with every value rounded to dt, round-to-nearest-even as nn_cast */
static void nn__round_into(nn_tensor *dst, const nn_tensor *src, nn_dtype dt) {
    const float *s = (const float *)src->data;
    float *d = (float *)dst->data;
    int64_t i, n = src->numel;
    if (src->device != NN_CPU) {   /* other devices: through a real dt tensor (two casts) */
        nn_tensor *tmp = nn__new(dt, src->device, src->ndim, src->shape);
        nn_copy_(tmp, src);
        nn_copy_(dst, tmp);
        nn_tensor_free(tmp);
        return;
    }
    if (dt == NN_BF16) {
        NN_OMP("omp parallel for if (n > 32768)")
        for (i = 0; i < n; i++) d[i] = nn__bf16_to_f32(nn__f32_to_bf16(s[i]));
    } else {
        NN_OMP("omp parallel for if (n > 32768)")
        for (i = 0; i < n; i++) d[i] = nn__half_to_f32(nn__f32_to_half(s[i]));
    }
}

static void nn__autocast_round_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *gx;
    if (!nn__needs_grad(n, 0)) return;
    gx = nn__new(NN_F32, g->device, g->ndim, g->shape);
    nn__round_into(gx, g, (nn_dtype)n->i[0]);
    nn__accumulate(n, 0, gx);
}

nn_tensor *nn__autocast_round(nn_tensor *x, nn_dtype dt) {
    nn_tensor *y;
    nn_node *n;
    nn__check_f32("nn__autocast_round", x, "input");
    if (dt == NN_F32) return x;
    if (dt != NN_BF16 && dt != NN_F16) nn_error("nn__autocast_round: dtype must be bf16 or f16, got %s", nn_dtype_name(dt));
    y = nn__new(NN_F32, x->device, x->ndim, x->shape);
    nn__round_into(y, x, dt);
    if ((n = nn__record("nn_autocast_round", nn__autocast_round_backward, 1, &x, 1, &y)) != NULL) n->i[0] = dt;
    return y;
}

/* Entry of a listed op: autocast off for the inner call (so a listed op built on another, nn_sdpa on
   nn_matmul, rounds only at its own boundary), and a scope that owns the rounded inputs. */
nn_dtype nn__autocast_enter(void) {
    nn_dtype dt = nn__ac.cur;
    nn__ac.cur = NN_F32;
    nn_scope_begin();
    return dt;
}

nn_tensor *nn__autocast_arg(nn_tensor *x, nn_dtype dt) {
    int i, cacheable;
    nn_tensor *r;
    if (!x || x->dtype != NN_F32 || dt == NN_F32) return x;   /* the op itself reports wrong dtypes */
    /* This is the seam for real low-precision kernels: where an op's kernel takes dt operands on a device,
       return nn_cast(x, dt) here (and let nn__autocast_leave keep the op's dt output). */
    cacheable = nn__ac.depth > 0 && !x->node && x->requires_grad;
    if (cacheable)
        for (i = 0; i < nn__ac.n; i++) {
            nn__ac_entry *e = &nn__ac.cache[i];
            if (e->key != x || e->dt != dt) continue;
            /* with grad on the copy must still be on the tape (after a backward, or when it was made with
               grad off inside a checkpointed forward, it is recast and replaced) */
            if (!nn_grad_enabled() || nn__tracks(e->val)) return e->val;
            r = nn__autocast_round(x, dt);
            nn__release(e->val);
            e->val = nn_retain(r);
            return r;
        }
    r = nn__autocast_round(x, dt);
    if (cacheable) {
        nn__ac.cache = (nn__ac_entry *)nn__grow(nn__ac.cache, &nn__ac.cap, nn__ac.n + 1, sizeof(nn__ac_entry));
        nn__ac.cache[nn__ac.n].key = nn_retain(x);
        nn__ac.cache[nn__ac.n].val = nn_retain(r);
        nn__ac.cache[nn__ac.n].dt = dt;
        nn__ac.n++;
    }
    return r;
}

nn_tensor *nn__autocast_leave(nn_tensor *y, nn_dtype dt) {
    nn_tensor *o = y;
    nn_node *n;
    if (y && y->dtype == NN_F32 && dt != NN_F32) {
        if (!nn__tracks(y)) {
            nn__round_into(y, y, dt);                             /* in place: nothing else holds it */
        } else {
            /* a new header over the same storage, rounded in place (a tensor the op saved, e.g. an attention
               output, sees the rounded values, as torch's dt output) */
            o = nn__view(y, y->ndim, y->shape, 0);
            nn__round_into(o, o, dt);
            if ((n = nn__record("nn_autocast_round", nn__autocast_round_backward, 1, &y, 1, &o)) != NULL) n->i[0] = dt;
        }
    }
    nn_scope_end(o);
    nn__ac.cur = dt;
    return o;
}

/* Gradient checkpointing. The node saves the inputs and the random-stream position; backward recomputes
   the segment on a sub-tape above the current top and runs just that part. */
typedef struct { nn_checkpoint_fn fn; void *ctx; } nn__ckpt_fn;

static void nn__checkpoint_backward(nn_node *n) {
    const nn__ckpt_fn *cf = (const nn__ckpt_fn *)n->ptr;
    nn_tensor *in[NN_MAX_NODE_IN], *out[NN_MAX_NODE_OUT];
    nn_rng_state rng = nn__g.rng;
    int i, base, prev_train = nn_set_training((int)n->i[0]), prev_grad = nn_set_grad_enabled(1);
    nn_dtype prev_ac = nn__ac.cur;
    for (i = 0; i < n->n_in; i++) {
        in[i] = nn_detach(n->saved[i]);
        in[i]->requires_grad = n->in[i].needs_grad;
    }
    base = nn__g.tape_n;
    nn__g.rng = n->rng;
    nn__ac.cur = (nn_dtype)n->i[1];   /* recompute under the forward's autocast dtype */
    for (i = 0; i < n->n_out; i++) out[i] = NULL;
    cf->fn(cf->ctx, in, out);
    nn__ac.cur = prev_ac;
    nn__g.rng = rng;
    nn_set_training(prev_train);
    for (i = 0; i < n->n_out; i++) {
        if (!out[i]) nn_error("nn_checkpoint: the function left output %d NULL when recomputed", i);
        if (n->gout[i] && nn__tracks(out[i])) nn__seed("nn_checkpoint", out[i], n->gout[i]);
    }
    nn__run_tape(base);
    nn_set_grad_enabled(0);
    for (i = 0; i < n->n_in; i++) if (in[i]->grad) nn__accumulate(n, i, in[i]->grad);
    nn_set_grad_enabled(prev_grad);
}

void nn_checkpoint(nn_checkpoint_fn fn, void *ctx, int n_in, nn_tensor **in, int n_out, nn_tensor **out) {
    nn_rng_state rng = nn__g.rng;
    int i, prev;
    nn_node *n;
    nn__ckpt_fn *cf;
    if (!fn || n_in < 0 || n_out < 1 || n_in > NN_MAX_SAVED - 1 || n_out > NN_MAX_NODE_OUT)
        nn_error("nn_checkpoint: need a function, 0..%d inputs and 1..%d outputs (got %d, %d)", NN_MAX_SAVED - 1,
                 NN_MAX_NODE_OUT, n_in, n_out);
    for (i = 0; i < n_in; i++) if (!in[i]) nn_error("nn_checkpoint: input %d is NULL", i);
    for (i = 0; i < n_out; i++) out[i] = NULL;
    prev = nn_set_grad_enabled(0);
    nn_scope_begin();
    fn(ctx, in, out);
    for (i = 0; i < n_out; i++) if (!out[i]) nn_error("nn_checkpoint: the function left output %d NULL", i);
    nn_scope_end_n(n_out, out);
    nn_set_grad_enabled(prev);
    /* an output that is one of the inputs would alias: give the node its own header */
    for (i = 0; i < n_out; i++) {
        int j;
        for (j = 0; j < n_in; j++) if (out[i] == in[j]) out[i] = nn__view(in[j], in[j]->ndim, in[j]->shape, 0);
    }
    n = nn__record("checkpoint", nn__checkpoint_backward, n_in, in, n_out, out);
    if (n) {
        /* fn and ctx ride in a small tensor so they are freed with the node */
        int64_t bytes = (int64_t)sizeof(nn__ckpt_fn);
        nn_tensor *box = nn__new(NN_U8, NN_CPU, 1, &bytes);
        cf = (nn__ckpt_fn *)box->data;
        cf->fn = fn;
        cf->ctx = ctx;
        for (i = 0; i < n_in; i++) nn__save(n, in[i]);
        nn__save(n, box);
        n->ptr = cf;
        n->rng = rng;
        n->i[0] = nn_training();
        n->i[1] = nn__ac.cur;
    }
}

nn_tensor *nn_detach(nn_tensor *t) {
    nn_tensor *v;
    if (!t) nn_error("nn_detach: tensor is NULL");
    v = nn__view(t, t->ndim, t->shape, 0);
    return v;
}

/* ------------------------------------------------------------------------------------- [ops:elementwise] */

#ifdef NN_CUDA
/* the CUDA twins of the ops below, in nn_cuda.cu under the same names */
void nn__cuda_binary_fwd(int op, const nn_tensor *a, const nn_tensor *b, nn_tensor *out);
void nn__cuda_unary_fwd(int op, const nn_tensor *x, nn_tensor *y, double p0, double p1);
void nn__cuda_unary_bwd(int op, const nn_tensor *g, const nn_tensor *saved, nn_tensor *gx, double p0, double p1);
void nn__cuda_sum_to(const nn_tensor *g, nn_tensor *out);
void nn__cuda_add_into(nn_tensor *dst, const nn_tensor *src);
void nn__cuda_reduce_fwd(int kind, const nn_tensor *x, int64_t outer, int64_t len, int64_t inner, int unbiased,
                         nn_tensor *y, nn_tensor *arg, nn_tensor *mean);
void nn__cuda_reduce_bwd(int kind, const nn_tensor *g, int64_t outer, int64_t len, int64_t inner, const nn_tensor *arg,
                         const nn_tensor *x, const nn_tensor *mean, double denom, nn_tensor *gx);
void nn__cuda_softmax_fwd(const nn_tensor *x, int64_t outer, int64_t len, int64_t inner, int log_form, nn_tensor *y);
void nn__cuda_softmax_bwd(const nn_tensor *g, const nn_tensor *y, int64_t outer, int64_t len, int64_t inner, int log_form,
                          nn_tensor *gx);
void nn__cuda_dropout(const nn_tensor *x, nn_tensor *y, double p, uint64_t seed, uint64_t off);
void nn__cuda_bgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const nn_tensor *A, const int64_t *abat,
                    const nn_tensor *B, const int64_t *bbat, float beta, nn_tensor *C, int64_t nb);
void nn__cuda_linear_fwd(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, nn_tensor *y);
void nn__cuda_linear_bwd(const nn_tensor *g, const nn_tensor *x, const nn_tensor *w, nn_tensor *gx, nn_tensor *gw);
void nn__cuda_permute(const nn_tensor *a, const int *perm, nn_tensor *o);
void nn__cuda_expand(const nn_tensor *a, nn_tensor *o);
/* height rows of width elements of es bytes, pitches in elements (slice, concat) */
void nn__cuda_copy2d(void *dst, int64_t dpitch, const void *src, int64_t spitch, int64_t width, int64_t height, size_t es);
#endif

static void nn__check_cpu(const char *op, const nn_tensor *t) {
#ifndef NN_CUDA
    (void)op; (void)t;
#else
    if (t && t->device != NN_CPU) nn_error("%s: has no %s kernel yet (tensor %s)", op, nn_device_name(t->device), nn__s(t));
#endif
}

int nn__broadcast_shape(const char *op, const nn_tensor *a, const nn_tensor *b, int64_t *out) {
    int nd = a->ndim > b->ndim ? a->ndim : b->ndim, d;
    for (d = 0; d < nd; d++) {
        int ia = a->ndim - nd + d, ib = b->ndim - nd + d;
        int64_t sa = ia >= 0 ? a->shape[ia] : 1, sb = ib >= 0 ? b->shape[ib] : 1;
        if (sa != sb && sa != 1 && sb != 1)
            nn_error("%s: shapes %s and %s do not broadcast (dim %d: %lld vs %lld)", op, nn__s(a), nn__s(b), d,
                     (long long)sa, (long long)sb);
        out[d] = sa == 1 ? sb : sa;
    }
    return nd;
}

/* strides of t (contiguous) seen from an output of nd dims: 0 along broadcast dims */
static void nn__bcast_strides(int tnd, const int64_t *tshape, int nd, const int64_t *oshape, int64_t *st) {
    int64_t s = 1;
    int d;
    for (d = nd - 1; d >= 0; d--) {
        int it = tnd - nd + d;
        int64_t sz = it >= 0 ? tshape[it] : 1;
        st[d] = (sz == 1 && oshape[d] != 1) || it < 0 ? 0 : s;
        if (it >= 0) s *= sz;
    }
}

/* offset of row r (all dims but the last) for strides st */
static int64_t nn__row_offset(int64_t r, int nd, const int64_t *shape, const int64_t *st) {
    int64_t off = 0;
    int d;
    for (d = nd - 2; d >= 0; d--) { off += (r % shape[d]) * st[d]; r /= shape[d]; }
    return off;
}

enum { NN__ADD, NN__SUB, NN__MUL, NN__DIV };

static void nn__binary_cpu(int op, const nn_tensor *a, const nn_tensor *b, nn_tensor *o) {
    const float *pa = (const float *)a->data, *pb = (const float *)b->data;
    float *po = (float *)o->data;
    int nd = o->ndim;
    int64_t sa[NN_MAX_DIMS], sb[NN_MAX_DIMS], inner, rows, r;
    if (nd == 0 || (a->numel == o->numel && b->numel == o->numel)) {          /* same shape: one flat loop */
        int64_t n = o->numel, i;
#define NN__FLAT(EXPR) NN_OMP("omp parallel for if (n > 32768)") for (i = 0; i < n; i++) po[i] = EXPR; break;
        switch (op) {
        case NN__ADD: NN__FLAT(pa[i] + pb[i])
        case NN__SUB: NN__FLAT(pa[i] - pb[i])
        case NN__MUL: NN__FLAT(pa[i] * pb[i])
        default: NN__FLAT(pa[i] / pb[i])
        }
#undef NN__FLAT
        return;
    }
    nn__bcast_strides(a->ndim, a->shape, nd, o->shape, sa);
    nn__bcast_strides(b->ndim, b->shape, nd, o->shape, sb);
    inner = o->shape[nd - 1];
    rows = inner ? o->numel / inner : 0;
#define NN__ROWS(EXPR) \
    NN_OMP("omp parallel for if (o->numel > 32768)") \
    for (r = 0; r < rows; r++) { \
        const float *xa = pa + nn__row_offset(r, nd, o->shape, sa), *xb = pb + nn__row_offset(r, nd, o->shape, sb); \
        float *y = po + r * inner; \
        int64_t j, la = sa[nd - 1], lb = sb[nd - 1]; \
        for (j = 0; j < inner; j++) { float x1 = xa[j * la], x2 = xb[j * lb]; y[j] = EXPR; } \
    } break;
    switch (op) {
    case NN__ADD: NN__ROWS(x1 + x2)
    case NN__SUB: NN__ROWS(x1 - x2)
    case NN__MUL: NN__ROWS(x1 * x2)
    default: NN__ROWS(x1 / x2)
    }
#undef NN__ROWS
}

static float nn__sum_f32(const float *x, int64_t n);

nn_tensor *nn__sum_to(nn_tensor *g, int ndim, const int64_t *shape) {
    nn_tensor *o;
    int64_t st[NN_MAX_DIMS], inner, rows, r;
    int nd = g->ndim, d;
    if (nn__same_shape(ndim, shape, g)) return g;
    if (ndim > nd) nn_error("nn__sum_to: cannot reduce %s to %d dims", nn__s(g), ndim);
    for (d = 0; d < ndim; d++) {
        int64_t gs = g->shape[nd - ndim + d];
        if (shape[d] != gs && shape[d] != 1) nn_error("nn__sum_to: %s does not reduce to the given shape (dim %d)", nn__s(g), d);
    }
    o = nn__new(NN_F32, g->device, ndim, shape);
#ifdef NN_CUDA
    if (g->device == NN_CUDA) { nn__cuda_sum_to(g, o); return o; }
#endif
    nn__fill_f32((float *)o->data, o->numel, 0);
    if (nd == 0 || o->numel == 0) return o;
    nn__bcast_strides(ndim, shape, nd, g->shape, st);
    inner = g->shape[nd - 1];
    rows = inner ? g->numel / inner : 0;
    {
        const float *pg = (const float *)g->data;
        float *po = (float *)o->data;
        int64_t ls = st[nd - 1];
        if (o->numel == 1) {   /* a full reduction: fixed chunks summed in order, so the bits never
                                  depend on the thread count (bit-exact resume needs that) */
            int64_t c, n = g->numel, nc = (n + 65535) / 65536;
            double acc = 0;
            nn_tensor *part = nn__new(NN_F32, NN_CPU, 1, &nc);
            float *pp = (float *)part->data;
            NN_OMP("omp parallel for if (nc > 1)")
            for (c = 0; c < nc; c++) pp[c] = nn__sum_f32(pg + c * 65536, (c + 1) * 65536 <= n ? 65536 : n - c * 65536);
            for (c = 0; c < nc; c++) acc += pp[c];
            po[0] = (float)acc;
            nn_tensor_free(part);
            return o;
        }
        if (ls != 0) {
            /* each thread owns a band of columns across all rows: no two threads touch one output */
            int64_t jb, nb = (inner + 255) / 256;
            NN_OMP("omp parallel for if (g->numel > 65536)")
            for (jb = 0; jb < nb; jb++) {
                int64_t j0 = jb * 256, j1 = j0 + 256 < inner ? j0 + 256 : inner, j, rr;
                for (rr = 0; rr < rows; rr++) {
                    const float *x = pg + rr * inner;
                    float *y = po + nn__row_offset(rr, nd, g->shape, st);
                    for (j = j0; j < j1; j++) y[j] += x[j];
                }
            }
        } else {
            /* the last dim collapses: row sums in parallel, then added in row order (deterministic) */
            nn_tensor *sums = nn__new(NN_F32, NN_CPU, 1, &rows);
            float *ps = (float *)sums->data;
            NN_OMP("omp parallel for if (g->numel > 65536)")
            for (r = 0; r < rows; r++) ps[r] = nn__sum_f32(pg + r * inner, inner);
            for (r = 0; r < rows; r++) po[nn__row_offset(r, nd, g->shape, st)] += ps[r];
            nn_tensor_free(sums);
        }
    }
    return o;
}

static void nn__add_into(nn_tensor *dst, const nn_tensor *src) {
    float *d = (float *)dst->data;
    const float *s = (const float *)src->data;
    int64_t i, n = dst->numel;
#ifdef NN_CUDA
    if (dst->device == NN_CUDA) { nn__cuda_add_into(dst, src); return; }
#endif
    NN_OMP("omp parallel for if (n > 32768)")
    for (i = 0; i < n; i++) d[i] += s[i];
}

static const char *nn__binary_name[] = {"nn_add", "nn_sub", "nn_mul", "nn_div"};

static nn_tensor *nn__binary(int op, nn_tensor *a, nn_tensor *b);

static void nn__binary_backward(nn_node *n) {
    nn_tensor *g = n->gout[0];
    int op = (int)n->i[0];
    if (op == NN__ADD || op == NN__SUB) {
        nn__accumulate(n, 0, g);
        if (nn__needs_grad(n, 1)) nn__accumulate(n, 1, op == NN__ADD ? g : nn_neg(g));
    } else if (op == NN__MUL) {
        if (nn__needs_grad(n, 0)) nn__accumulate(n, 0, nn_mul(g, n->saved[1]));
        if (nn__needs_grad(n, 1)) nn__accumulate(n, 1, nn_mul(g, n->saved[0]));
    } else {
        nn_tensor *gb = nn_div(g, n->saved[1]);          /* g / b */
        if (nn__needs_grad(n, 0)) nn__accumulate(n, 0, gb);
        if (nn__needs_grad(n, 1)) nn__accumulate(n, 1, nn_neg(nn_div(nn_mul(gb, n->saved[0]), n->saved[1])));
    }
}

static nn_tensor *nn__binary(int op, nn_tensor *a, nn_tensor *b) {
    const char *name = nn__binary_name[op];
    int64_t shape[NN_MAX_DIMS];
    int nd;
    nn_tensor *o, *in[2];
    nn_node *n;
    nn__check_f32(name, a, "a");
    nn__check_f32(name, b, "b");
    nn__check_same_device(name, a, b);
    nd = nn__broadcast_shape(name, a, b, shape);
    o = nn__new(NN_F32, a->device, nd, shape);
#ifdef NN_CUDA
    if (a->device == NN_CUDA) nn__cuda_binary_fwd(op, a, b, o); else
#endif
    nn__binary_cpu(op, a, b, o);
    in[0] = a; in[1] = b;
    if ((n = nn__record(name, nn__binary_backward, 2, in, 1, &o)) != NULL) {
        n->i[0] = op;
        if (op == NN__MUL || op == NN__DIV) { nn__save(n, a); nn__save(n, b); }
    }
    return o;
}

nn_tensor *nn_add(nn_tensor *a, nn_tensor *b) { return nn__binary(NN__ADD, a, b); }
nn_tensor *nn_sub(nn_tensor *a, nn_tensor *b) { return nn__binary(NN__SUB, a, b); }
nn_tensor *nn_mul(nn_tensor *a, nn_tensor *b) { return nn__binary(NN__MUL, a, b); }
nn_tensor *nn_div(nn_tensor *a, nn_tensor *b) { return nn__binary(NN__DIV, a, b); }

/* Unary ops share one node type; each saves either its input (x) or its output (y), whichever its
   derivative is cheaper from. p0, p1: the op's scalars. */
enum {
    NN__U_ADDS, NN__U_MULS, NN__U_RSUBS, NN__U_EXP, NN__U_LOG, NN__U_SQRT, NN__U_RSQRT, NN__U_ABS, NN__U_POW,
    NN__U_CLAMP, NN__U_RELU, NN__U_GELU, NN__U_GELU_TANH, NN__U_SILU, NN__U_SIGMOID, NN__U_TANH, NN__U_COUNT
};
static const char *nn__unary_name[NN__U_COUNT] = {
    "nn_add_scalar", "nn_mul_scalar", "nn_rsub_scalar", "nn_exp", "nn_log", "nn_sqrt", "nn_rsqrt", "nn_abs",
    "nn_pow", "nn_clamp", "nn_relu", "nn_gelu", "nn_gelu_tanh", "nn_silu", "nn_sigmoid", "nn_tanh"};
/* 0: needs nothing, 1: saves x, 2: saves y */
static const int nn__unary_saves[NN__U_COUNT] = {0, 0, 0, 2, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 2, 2};

#define NN__SQRT_2_OVER_PI 0.7978845608028654    /* sqrt(2/pi), GELU's tanh form (Hendrycks & Gimpel 2016) */
#define NN__GELU_C 0.044715f
#define NN__INV_SQRT2 0.70710678118654752

static void nn__unary_cpu(int op, const float *x, float *y, int64_t n, float p0, float p1) {
    int64_t i;
#define NN__MAP(EXPR) NN_OMP("omp parallel for if (n > 32768)") for (i = 0; i < n; i++) { float v = x[i]; y[i] = EXPR; } break;
    switch (op) {
    case NN__U_ADDS: NN__MAP(v + p0)
    case NN__U_MULS: NN__MAP(v * p0)
    case NN__U_RSUBS: NN__MAP(p0 - v)
    case NN__U_EXP: NN__MAP(expf(v))
    case NN__U_LOG: NN__MAP(logf(v))
    case NN__U_SQRT: NN__MAP(sqrtf(v))
    case NN__U_RSQRT: NN__MAP(1.0f / sqrtf(v))
    case NN__U_ABS: NN__MAP(fabsf(v))
    case NN__U_POW: NN__MAP(powf(v, p0))
    case NN__U_CLAMP: NN__MAP(v < p0 ? p0 : v > p1 ? p1 : v)
    case NN__U_RELU: NN__MAP(v > 0 ? v : 0.0f)
    case NN__U_GELU: NN__MAP(0.5f * v * (1.0f + erff(v * (float)NN__INV_SQRT2)))
    case NN__U_GELU_TANH: NN__MAP(0.5f * v * (1.0f + tanhf((float)NN__SQRT_2_OVER_PI * (v + NN__GELU_C * v * v * v))))
    case NN__U_SILU: NN__MAP(v / (1.0f + expf(-v)))
    case NN__U_SIGMOID: NN__MAP(1.0f / (1.0f + expf(-v)))
    default: NN__MAP(tanhf(v))
    }
#undef NN__MAP
}

/* gx = g * f'(.) where s is the saved x or y */
static void nn__unary_grad_cpu(int op, const float *g, const float *s, float *gx, int64_t n, float p0, float p1) {
    int64_t i;
#define NN__MAP(EXPR) NN_OMP("omp parallel for if (n > 32768)") for (i = 0; i < n; i++) { float v = s ? s[i] : 0.0f; (void)v; gx[i] = g[i] * (EXPR); } break;
    switch (op) {
    case NN__U_ADDS: NN__MAP(1.0f)
    case NN__U_MULS: NN__MAP(p0)
    case NN__U_RSUBS: NN__MAP(-1.0f)
    case NN__U_EXP: NN__MAP(v)
    case NN__U_LOG: NN__MAP(1.0f / v)
    case NN__U_SQRT: NN__MAP(0.5f / v)
    case NN__U_RSQRT: NN__MAP(-0.5f * v * v * v)
    case NN__U_ABS: NN__MAP(v > 0 ? 1.0f : v < 0 ? -1.0f : 0.0f)
    case NN__U_POW: NN__MAP(p0 == 0 ? 0.0f : p0 * powf(v, p0 - 1.0f))
    case NN__U_CLAMP: NN__MAP(v >= p0 && v <= p1 ? 1.0f : 0.0f)
    case NN__U_RELU: NN__MAP(v > 0 ? 1.0f : 0.0f)
    case NN__U_GELU: NN__MAP(0.5f * (1.0f + erff(v * (float)NN__INV_SQRT2)) + v * 0.3989422804f * expf(-0.5f * v * v))
    case NN__U_GELU_TANH: NN__MAP((float)(0.5 * (1.0 + tanh(NN__SQRT_2_OVER_PI * (v + NN__GELU_C * v * v * v))) +
                              0.5 * v * (1.0 - tanh(NN__SQRT_2_OVER_PI * (v + NN__GELU_C * v * v * v)) *
                                               tanh(NN__SQRT_2_OVER_PI * (v + NN__GELU_C * v * v * v))) *
                              NN__SQRT_2_OVER_PI * (1.0 + 3.0 * NN__GELU_C * v * v)))
    case NN__U_SILU: NN__MAP(1.0f / (1.0f + expf(-v)) * (1.0f + v * (1.0f - 1.0f / (1.0f + expf(-v)))))
    case NN__U_SIGMOID: NN__MAP(v * (1.0f - v))
    default: NN__MAP(1.0f - v * v)
    }
#undef NN__MAP
}

static void nn__unary_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *s = n->n_saved ? n->saved[0] : NULL, *gx;
    int op = (int)n->i[0];
    if (!nn__needs_grad(n, 0)) return;
    gx = nn__new(NN_F32, g->device, g->ndim, g->shape);
#ifdef NN_CUDA
    if (g->device == NN_CUDA) nn__cuda_unary_bwd(op, g, s, gx, n->a[0], n->a[1]); else
#endif
    nn__unary_grad_cpu(op, (const float *)g->data, s ? (const float *)s->data : NULL, (float *)gx->data, g->numel,
                       (float)n->a[0], (float)n->a[1]);
    nn__accumulate(n, 0, gx);
}

static nn_tensor *nn__unary(int op, nn_tensor *x, double p0, double p1) {
    const char *name = nn__unary_name[op];
    nn_tensor *y;
    nn_node *n;
    nn__check_f32(name, x, "input");
    y = nn__new(NN_F32, x->device, x->ndim, x->shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_unary_fwd(op, x, y, p0, p1); else
#endif
    nn__unary_cpu(op, (const float *)x->data, (float *)y->data, x->numel, (float)p0, (float)p1);
    if ((n = nn__record(name, nn__unary_backward, 1, &x, 1, &y)) != NULL) {
        n->i[0] = op;
        n->a[0] = p0;
        n->a[1] = p1;
        if (nn__unary_saves[op] == 1) nn__save(n, x);
        if (nn__unary_saves[op] == 2) nn__save(n, y);
    }
    return y;
}

nn_tensor *nn_add_scalar(nn_tensor *a, double s) { return nn__unary(NN__U_ADDS, a, s, 0); }
nn_tensor *nn_mul_scalar(nn_tensor *a, double s) { return nn__unary(NN__U_MULS, a, s, 0); }
nn_tensor *nn_rsub_scalar(nn_tensor *a, double s) { return nn__unary(NN__U_RSUBS, a, s, 0); }
nn_tensor *nn_neg(nn_tensor *a) { return nn__unary(NN__U_MULS, a, -1.0, 0); }
nn_tensor *nn_exp(nn_tensor *a) { return nn__unary(NN__U_EXP, a, 0, 0); }
nn_tensor *nn_log(nn_tensor *a) { return nn__unary(NN__U_LOG, a, 0, 0); }
nn_tensor *nn_sqrt(nn_tensor *a) { return nn__unary(NN__U_SQRT, a, 0, 0); }
nn_tensor *nn_rsqrt(nn_tensor *a) { return nn__unary(NN__U_RSQRT, a, 0, 0); }
nn_tensor *nn_abs(nn_tensor *a) { return nn__unary(NN__U_ABS, a, 0, 0); }
nn_tensor *nn_pow(nn_tensor *a, double p) { return nn__unary(NN__U_POW, a, p, 0); }
nn_tensor *nn_clamp(nn_tensor *a, double lo, double hi) {
    if (lo > hi) nn_error("nn_clamp: min %g > max %g", lo, hi);
    return nn__unary(NN__U_CLAMP, a, lo, hi);
}
nn_tensor *nn_relu(nn_tensor *a) { return nn__unary(NN__U_RELU, a, 0, 0); }
nn_tensor *nn_gelu(nn_tensor *a) { return nn__unary(NN__U_GELU, a, 0, 0); }
nn_tensor *nn_gelu_tanh(nn_tensor *a) { return nn__unary(NN__U_GELU_TANH, a, 0, 0); }
nn_tensor *nn_silu(nn_tensor *a) { return nn__unary(NN__U_SILU, a, 0, 0); }
nn_tensor *nn_sigmoid(nn_tensor *a) { return nn__unary(NN__U_SIGMOID, a, 0, 0); }
nn_tensor *nn_tanh(nn_tensor *a) { return nn__unary(NN__U_TANH, a, 0, 0); }

/* cast: between any dtypes; differentiable float -> float (the gradient is cast back to f32) */
static void nn__cast_backward(nn_node *n) {
    nn__accumulate(n, 0, n->gout[0]->dtype == NN_F32 ? n->gout[0] : nn_cast(n->gout[0], NN_F32));
}

nn_tensor *nn_cast(nn_tensor *t, nn_dtype dt) {
    nn_tensor *o;
    if (!t) nn_error("nn_cast: tensor is NULL");
    if ((unsigned)dt >= NN_DTYPE_COUNT) nn_error("nn_cast: unknown dtype %d", (int)dt);
    o = nn__new(dt, t->device, t->ndim, t->shape);
    nn_copy_(o, t);
    if (nn_dtype_is_float(dt) && nn_dtype_is_float(t->dtype)) nn__record("nn_cast", nn__cast_backward, 1, &t, 1, &o);
    return o;
}

static void nn__to_backward(nn_node *n) {
    nn__accumulate(n, 0, nn_to(n->gout[0], (nn_device)n->i[0]));
}

nn_tensor *nn_to(nn_tensor *t, nn_device dev) {
    nn_tensor *o;
    nn_node *n;
    if (!t) nn_error("nn_to: tensor is NULL");
    o = nn__new(t->dtype, dev, t->ndim, t->shape);
    nn_copy_(o, t);
    if ((n = nn__record("nn_to", nn__to_backward, 1, &t, 1, &o)) != NULL) n->i[0] = t->device;
    return o;
}

static void nn__clone_backward(nn_node *n) { nn__accumulate(n, 0, n->gout[0]); }

nn_tensor *nn_clone(nn_tensor *t) {
    nn_tensor *o;
    if (!t) nn_error("nn_clone: tensor is NULL");
    o = nn_like(t);
    nn_copy_(o, t);
    nn__record("nn_clone", nn__clone_backward, 1, &t, 1, &o);
    return o;
}

/* ------------------------------------------------------------------------------------------ [ops:reduce] */
/* A reduction over dim d sees the tensor as [outer, n, inner] and writes [outer, inner]. */

static void nn__dims3(const nn_tensor *t, int d, int64_t *outer, int64_t *n, int64_t *inner) {
    int k;
    *outer = 1; *inner = 1; *n = t->shape[d];
    for (k = 0; k < d; k++) *outer *= t->shape[k];
    for (k = d + 1; k < t->ndim; k++) *inner *= t->shape[k];
}

static nn_tensor *nn__reduced(const nn_tensor *x, int d, int keepdim) {
    int64_t shape[NN_MAX_DIMS];
    int k, nd = 0;
    for (k = 0; k < x->ndim; k++) {
        if (k != d) shape[nd++] = x->shape[k];
        else if (keepdim) shape[nd++] = 1;
    }
    return nn__new(NN_F32, x->device, nd, shape);
}

enum { NN__R_SUM, NN__R_MEAN, NN__R_MAX, NN__R_VAR };

/* gradient of a [outer, inner] result broadcast back over n: gx[o,i,j] = scale * g[o,j] (+ per-op factor) */
static void nn__reduce_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *gx;
    int kind = (int)n->i[0];
    int64_t outer = n->i[1], len = n->i[2], inner = n->i[3], o;
    const float *pg = (const float *)g->data;
    float *px;
    if (!nn__needs_grad(n, 0)) return;
    gx = nn__new(NN_F32, g->device, n->in[0].ndim, n->in[0].shape);
    px = (float *)gx->data;
#ifdef NN_CUDA
    if (g->device == NN_CUDA) {
        nn__cuda_reduce_bwd(kind, g, outer, len, inner, kind == NN__R_MAX ? n->saved[0] : NULL,
                            kind == NN__R_VAR ? n->saved[0] : NULL, kind == NN__R_VAR ? n->saved[1] : NULL, n->a[0], gx);
        nn__accumulate(n, 0, gx);
        return;
    }
#endif
    NN_OMP("omp parallel for if (outer * len * inner > 32768)")
    for (o = 0; o < outer; o++) {
        int64_t i, j;
        for (i = 0; i < len; i++) {
            float *row = px + (o * len + i) * inner;
            const float *gr = pg + o * inner;
            if (kind == NN__R_SUM) for (j = 0; j < inner; j++) row[j] = gr[j];
            else if (kind == NN__R_MEAN) for (j = 0; j < inner; j++) row[j] = gr[j] / (float)len;
            else if (kind == NN__R_MAX) {
                const int64_t *arg = (const int64_t *)n->saved[0]->data + o * inner;
                for (j = 0; j < inner; j++) row[j] = arg[j] == i ? gr[j] : 0.0f;
            } else {   /* var: d/dx_i = 2 (x_i - mean) / (n - correction) */
                const float *x = (const float *)n->saved[0]->data + (o * len + i) * inner;
                const float *mean = (const float *)n->saved[1]->data + o * inner;
                for (j = 0; j < inner; j++) row[j] = gr[j] * 2.0f * (x[j] - mean[j]) / (float)n->a[0];
            }
        }
    }
    nn__accumulate(n, 0, gx);
}

static nn_tensor *nn__reduce(int kind, const char *name, nn_tensor *x, int dim, int keepdim, int unbiased) {
    int d;
    int64_t outer, len, inner, o;
    nn_tensor *y, *arg = NULL, *mean = NULL;
    nn_node *n;
    const float *px;
    float *py;
    nn__check_f32(name, x, "input");
    d = nn__norm_dim(name, x, dim);
    nn__dims3(x, d, &outer, &len, &inner);
    if (len == 0 && kind == NN__R_MAX) nn_error("%s: max over an empty dim of %s", name, nn__s(x));
    y = nn__reduced(x, d, keepdim);
    if (kind == NN__R_MAX) { int64_t s[2]; s[0] = outer; s[1] = inner; arg = nn__new(NN_I64, x->device, 2, s); }
    if (kind == NN__R_VAR) { int64_t s[2]; s[0] = outer; s[1] = inner; mean = nn__new(NN_F32, x->device, 2, s); }
    px = (const float *)x->data;
    py = (float *)y->data;
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_reduce_fwd(kind, x, outer, len, inner, unbiased, y, arg, mean); else
#endif
    NN_OMP("omp parallel for if (outer * len * inner > 32768)")
    for (o = 0; o < outer; o++) {
        int64_t i, j;
        for (j = 0; j < inner; j++) {
            const float *p = px + o * len * inner + j;
            if (kind == NN__R_MAX) {
                float m = p[0];
                int64_t a = 0;
                for (i = 1; i < len; i++) if (p[i * inner] > m || (p[i * inner] != p[i * inner] && m == m)) { m = p[i * inner]; a = i; }
                py[o * inner + j] = m;
                ((int64_t *)arg->data)[o * inner + j] = a;
            } else {
                double s = 0;
                for (i = 0; i < len; i++) s += p[i * inner];
                if (kind == NN__R_SUM) py[o * inner + j] = (float)s;
                else if (kind == NN__R_MEAN) py[o * inner + j] = (float)(s / (double)len);
                else {   /* two passes in double: the mean, then squared deviations */
                    double m = s / (double)len, v = 0;
                    for (i = 0; i < len; i++) v += ((double)p[i * inner] - m) * ((double)p[i * inner] - m);
                    py[o * inner + j] = (float)(v / (double)(len - unbiased));
                    ((float *)mean->data)[o * inner + j] = (float)m;
                }
            }
        }
    }
    if ((n = nn__record(name, nn__reduce_backward, 1, &x, 1, &y)) != NULL) {
        n->i[0] = kind; n->i[1] = outer; n->i[2] = len; n->i[3] = inner;
        if (arg) nn__save(n, arg);
        if (mean) { nn__save(n, x); nn__save(n, mean); n->a[0] = (double)(len - unbiased); }
    }
    return y;
}

nn_tensor *nn_sum(nn_tensor *a, int dim, int keepdim) { return nn__reduce(NN__R_SUM, "nn_sum", a, dim, keepdim, 0); }
nn_tensor *nn_mean(nn_tensor *a, int dim, int keepdim) { return nn__reduce(NN__R_MEAN, "nn_mean", a, dim, keepdim, 0); }
nn_tensor *nn_max(nn_tensor *a, int dim, int keepdim) { return nn__reduce(NN__R_MAX, "nn_max", a, dim, keepdim, 0); }
nn_tensor *nn_var(nn_tensor *a, int dim, int unbiased, int keepdim) {
    return nn__reduce(NN__R_VAR, "nn_var", a, dim, keepdim, unbiased ? 1 : 0);
}
nn_tensor *nn_sum_all(nn_tensor *a) {
    int64_t n;
    nn__check_f32("nn_sum_all", a, "input");
    n = a->numel;
    return nn_sum(nn_reshape(a, 1, &n), 0, 0);
}
nn_tensor *nn_mean_all(nn_tensor *a) {
    int64_t n;
    nn__check_f32("nn_mean_all", a, "input");
    n = a->numel;
    return nn_mean(nn_reshape(a, 1, &n), 0, 0);
}

/* softmax and log_softmax over dim, numerically stable (max subtracted); backward from the saved output:
   softmax: gx = y * (g - sum(g*y)); log_softmax: gx = g - exp(y) * sum(g) */
static void nn__softmax_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *y = n->saved[0], *gx;
    int log_form = (int)n->i[0];
    int64_t outer = n->i[1], len = n->i[2], inner = n->i[3], o;
    if (!nn__needs_grad(n, 0)) return;
    gx = nn__new(NN_F32, g->device, g->ndim, g->shape);
#ifdef NN_CUDA
    if (g->device == NN_CUDA) { nn__cuda_softmax_bwd(g, y, outer, len, inner, log_form, gx); nn__accumulate(n, 0, gx); return; }
#endif
    NN_OMP("omp parallel for if (outer * len * inner > 32768)")
    for (o = 0; o < outer; o++) {
        int64_t i, j;
        for (j = 0; j < inner; j++) {
            const float *pg = (const float *)g->data + o * len * inner + j, *py = (const float *)y->data + o * len * inner + j;
            float *px = (float *)gx->data + o * len * inner + j;
            double s = 0;
            if (log_form) {
                for (i = 0; i < len; i++) s += pg[i * inner];
                for (i = 0; i < len; i++) px[i * inner] = pg[i * inner] - expf(py[i * inner]) * (float)s;
            } else {
                for (i = 0; i < len; i++) s += (double)pg[i * inner] * py[i * inner];
                for (i = 0; i < len; i++) px[i * inner] = py[i * inner] * (pg[i * inner] - (float)s);
            }
        }
    }
    nn__accumulate(n, 0, gx);
}

static nn_tensor *nn__softmax(nn_tensor *x, int dim, int log_form) {
    const char *name = log_form ? "nn_log_softmax" : "nn_softmax";
    int d;
    int64_t outer, len, inner, o;
    nn_tensor *y;
    nn_node *n;
    nn__check_f32(name, x, "input");
    d = nn__norm_dim(name, x, dim);
    nn__dims3(x, d, &outer, &len, &inner);
    y = nn__new(NN_F32, x->device, x->ndim, x->shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_softmax_fwd(x, outer, len, inner, log_form, y); else
#endif
    NN_OMP("omp parallel for if (outer * len * inner > 32768)")
    for (o = 0; o < outer; o++) {
        int64_t i, j;
        for (j = 0; j < inner; j++) {
            const float *p = (const float *)x->data + o * len * inner + j;
            float *q = (float *)y->data + o * len * inner + j;
            float m = -INFINITY;
            double s = 0;
            for (i = 0; i < len; i++) if (p[i * inner] > m) m = p[i * inner];
            if (m == -INFINITY) m = 0;    /* an all -inf row: keep the arithmetic finite (gives NaN like torch) */
            for (i = 0; i < len; i++) { float e = expf(p[i * inner] - m); s += e; if (!log_form) q[i * inner] = e; }
            if (log_form) { float ls = m + (float)log(s); for (i = 0; i < len; i++) q[i * inner] = p[i * inner] - ls; }
            else { float inv = (float)(1.0 / s); for (i = 0; i < len; i++) q[i * inner] *= inv; }
        }
    }
    if ((n = nn__record(name, nn__softmax_backward, 1, &x, 1, &y)) != NULL) {
        n->i[0] = log_form; n->i[1] = outer; n->i[2] = len; n->i[3] = inner;
        nn__save(n, y);
    }
    return y;
}
nn_tensor *nn_softmax(nn_tensor *a, int dim) { return nn__softmax(a, dim, 0); }
nn_tensor *nn_log_softmax(nn_tensor *a, int dim) { return nn__softmax(a, dim, 1); }

/* Row sums with 16 independent partial sums: the adds pipeline and vectorise (a single running sum is
   latency-bound, and strict IEEE order forbids the compiler from splitting it), and the rounding error
   grows like n/16 instead of n. */
static float nn__sum_f32(const float *x, int64_t n) {
    float acc[16] = {0}, s = 0;
    int64_t i = 0;
    int k;
    for (; i + 16 <= n; i += 16) for (k = 0; k < 16; k++) acc[k] += x[i + k];
    for (; i < n; i++) s += x[i];
    for (k = 0; k < 8; k++) acc[k] += acc[k + 8];
    for (k = 0; k < 4; k++) acc[k] += acc[k + 4];
    return s + (acc[0] + acc[2]) + (acc[1] + acc[3]);
}
/* sum of (x - m)^2 and of x*y, the same way */
static float nn__sqdev_f32(const float *x, int64_t n, float m) {
    float acc[16] = {0}, s = 0;
    int64_t i = 0;
    int k;
    for (; i + 16 <= n; i += 16) for (k = 0; k < 16; k++) { float d = x[i + k] - m; acc[k] += d * d; }
    for (; i < n; i++) s += (x[i] - m) * (x[i] - m);
    for (k = 0; k < 8; k++) acc[k] += acc[k + 8];
    for (k = 0; k < 4; k++) acc[k] += acc[k + 4];
    return s + (acc[0] + acc[2]) + (acc[1] + acc[3]);
}
static float nn__dot_f32(const float *x, const float *y, int64_t n) {
    float acc[16] = {0}, s = 0;
    int64_t i = 0;
    int k;
    for (; i + 16 <= n; i += 16) for (k = 0; k < 16; k++) acc[k] += x[i + k] * y[i + k];
    for (; i < n; i++) s += x[i] * y[i];
    for (k = 0; k < 8; k++) acc[k] += acc[k + 8];
    for (k = 0; k < 4; k++) acc[k] += acc[k + 4];
    return s + (acc[0] + acc[2]) + (acc[1] + acc[3]);
}

/* -------------------------------------------------------------------------------------------- [ops:norm] */
/* layer_norm over the last dim: y = (x - mean) * rstd * w + b, biased variance (as torch). Saves x, mean
   and rstd ([rows] each); backward in one pass per row:
   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w. */

#ifdef NN_CUDA
void nn__cuda_layer_norm_fwd(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, double eps, nn_tensor *y,
                             nn_tensor *mean, nn_tensor *rstd);
void nn__cuda_layer_norm_bwd(const nn_tensor *g, const nn_tensor *x, const nn_tensor *w, const nn_tensor *mean,
                             const nn_tensor *rstd, nn_tensor *gx, nn_tensor *gw, nn_tensor *gb);
#endif

static void nn__layer_norm_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *x = n->saved[0], *mean = n->saved[1], *rstd = n->saved[2];
    nn_tensor *w = n->n_saved > 3 ? n->saved[3] : NULL, *gx = NULL, *gw = NULL;
    int64_t C = x->shape[x->ndim - 1], rows = C ? x->numel / C : 0, r;
    int want_w = nn__needs_grad(n, 1), want_b = nn__needs_grad(n, 2);
    if (nn__needs_grad(n, 0)) gx = nn__new(NN_F32, x->device, x->ndim, x->shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) {
        nn_tensor *gb = NULL;
        if (want_w) gw = nn__new(NN_F32, x->device, 1, &C);
        if (want_b) gb = nn__new(NN_F32, x->device, 1, &C);
        nn__cuda_layer_norm_bwd(g, x, w, mean, rstd, gx, gw, gb);
        if (gx) nn__accumulate(n, 0, gx);
        if (gw) nn__accumulate(n, 1, gw);
        if (gb) nn__accumulate(n, 2, gb);
        return;
    }
#endif
    if (want_w || want_b) {
        /* per-thread partial sums of dw and db, reduced at the end: no atomics, deterministic */
        int nt = 1;
        int64_t s2[2];
#ifdef _OPENMP
        nt = omp_get_max_threads();
#endif
        s2[0] = nt; s2[1] = 2 * C;
        gw = nn__new(NN_F32, x->device, 2, s2);
        nn__fill_f32((float *)gw->data, gw->numel, 0);
    }
    NN_OMP("omp parallel")
    {
        int tid = 0;
        float *part = NULL;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        if (gw) part = (float *)gw->data + (int64_t)tid * 2 * C;
        NN_OMP("omp for")
        for (r = 0; r < rows; r++) {
            const float *xr = (const float *)x->data + r * C, *gr = (const float *)g->data + r * C;
            const float *pw = w ? (const float *)w->data : NULL;
            float m = ((const float *)mean->data)[r], rs = ((const float *)rstd->data)[r];
            int64_t j;
            if (gx) {
                /* o = dxhat, then the two row means, then the formula in place */
                float *o = (float *)gx->data + r * C, a1, a2;
                if (pw) for (j = 0; j < C; j++) o[j] = gr[j] * pw[j];
                else memcpy(o, gr, sizeof(float) * (size_t)C);
                a1 = nn__sum_f32(o, C) / (float)C;
                {   /* mean(dxhat * xhat) = (sum(dxhat * x) - m * sum(dxhat)) * rstd / C */
                    float dx_x = nn__dot_f32(o, xr, C);
                    a2 = (dx_x - m * a1 * (float)C) * rs / (float)C;
                }
                for (j = 0; j < C; j++) o[j] = rs * (o[j] - a1 - (xr[j] - m) * rs * a2);
            }
            if (part) for (j = 0; j < C; j++) { part[j] += gr[j] * (xr[j] - m) * rs; part[C + j] += gr[j]; }
        }
    }
    if (gx) nn__accumulate(n, 0, gx);
    if (gw) {
        int64_t s1 = C, t, j, nt = gw->shape[0];
        nn_tensor *dw = nn__new(NN_F32, x->device, 1, &s1), *db = nn__new(NN_F32, x->device, 1, &s1);
        for (j = 0; j < C; j++) {
            double a = 0, b = 0;
            for (t = 0; t < nt; t++) { a += ((float *)gw->data)[t * 2 * C + j]; b += ((float *)gw->data)[t * 2 * C + C + j]; }
            ((float *)dw->data)[j] = (float)a;
            ((float *)db->data)[j] = (float)b;
        }
        if (want_w) nn__accumulate(n, 1, dw);
        if (want_b) nn__accumulate(n, 2, db);
    }
}

nn_tensor *nn_layer_norm(nn_tensor *x, nn_tensor *w, nn_tensor *b, double eps) {
    int64_t C, rows, r, s1;
    nn_tensor *y, *mean, *rstd, *in[3];
    nn_node *n;
    nn__check_f32("nn_layer_norm", x, "input");
    if (x->ndim < 1) nn_error("nn_layer_norm: input must have at least one dim, got %s", nn__s(x));
    C = x->shape[x->ndim - 1];
    if (w) { nn__check_f32("nn_layer_norm", w, "weight"); if (w->numel != C || w->ndim != 1) nn_error("nn_layer_norm: weight %s does not match the last dim of %s", nn__s(w), nn__s(x)); }
    if (b) { nn__check_f32("nn_layer_norm", b, "bias"); if (b->numel != C || b->ndim != 1) nn_error("nn_layer_norm: bias %s does not match the last dim of %s", nn__s(b), nn__s(x)); }
    if (w) nn__check_same_device("nn_layer_norm", x, w);
    if (b) nn__check_same_device("nn_layer_norm", x, b);
    rows = C ? x->numel / C : 0;
    s1 = rows;
    y = nn__new(NN_F32, x->device, x->ndim, x->shape);
    mean = nn__new(NN_F32, x->device, 1, &s1);
    rstd = nn__new(NN_F32, x->device, 1, &s1);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_layer_norm_fwd(x, w, b, eps, y, mean, rstd); else
#endif
    {
        NN_OMP("omp parallel for if (x->numel > 16384)")
        for (r = 0; r < rows; r++) {
            const float *xr = (const float *)x->data + r * C;
            float *yr = (float *)y->data + r * C;
            const float *pw = w ? (const float *)w->data : NULL, *pb = b ? (const float *)b->data : NULL;
            float m = nn__sum_f32(xr, C) / (float)C;   /* two passes: mean, then squared deviations */
            float rs = (float)(1.0 / sqrt((double)nn__sqdev_f32(xr, C, m) / (double)C + eps));
            int64_t j;
            if (pw && pb) for (j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * pw[j] + pb[j];
            else if (pw) for (j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs * pw[j];
            else for (j = 0; j < C; j++) yr[j] = (xr[j] - m) * rs + (pb ? pb[j] : 0.0f);
            ((float *)mean->data)[r] = m;
            ((float *)rstd->data)[r] = rs;
        }
    }
    in[0] = x; in[1] = w; in[2] = b;
    if ((n = nn__record("nn_layer_norm", nn__layer_norm_backward, 3, in, 1, &y)) != NULL) {
        nn__save(n, x); nn__save(n, mean); nn__save(n, rstd);
        if (w) nn__save(n, w);
    }
    return y;
}

/* dropout: keep with probability 1-p, scale kept values by 1/(1-p) (inverted dropout, as torch). The mask
   is a pure function of (seed, offset + i), so backward regenerates it instead of storing it. */
static void nn__dropout_apply(const float *x, float *y, int64_t n, double p, uint64_t seed, uint64_t off) {
    int64_t i;
    float scale = (float)(1.0 / (1.0 - p)), fp = (float)p;
    NN_OMP("omp parallel for if (n > 32768)")
    for (i = 0; i < n; i++) y[i] = nn_rng_uniform_at(seed, off + (uint64_t)i) >= fp ? x[i] * scale : 0.0f;
}

static void nn__dropout_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *gx;
    if (!nn__needs_grad(n, 0)) return;
    gx = nn__new(NN_F32, g->device, g->ndim, g->shape);
#ifdef NN_CUDA
    if (g->device == NN_CUDA) nn__cuda_dropout(g, gx, n->a[0], (uint64_t)n->i[0], (uint64_t)n->i[1]); else
#endif
    nn__dropout_apply((const float *)g->data, (float *)gx->data, g->numel, n->a[0], (uint64_t)n->i[0], (uint64_t)n->i[1]);
    nn__accumulate(n, 0, gx);
}

nn_tensor *nn_dropout(nn_tensor *x, double p, int training) {
    nn_tensor *y;
    nn_node *n;
    uint64_t off;
    nn__check_f32("nn_dropout", x, "input");
    if (!(p >= 0 && p <= 1)) nn_error("nn_dropout: p must be in [0, 1], got %g", p);
    if (!training || p == 0) return nn_clone(x);
    y = nn__new(NN_F32, x->device, x->ndim, x->shape);
    if (p == 1) { nn_fill_(y, 0); off = 0; }
    else {
        off = nn_rng_reserve((uint64_t)x->numel);
#ifdef NN_CUDA
        if (x->device == NN_CUDA) nn__cuda_dropout(x, y, p, nn__g.rng.seed, off); else
#endif
        nn__dropout_apply((const float *)x->data, (float *)y->data, x->numel, p, nn__g.rng.seed, off);
    }
    if ((n = nn__record("nn_dropout", nn__dropout_backward, 1, &x, 1, &y)) != NULL) {
        n->a[0] = p == 1 ? 1.0 - 1e-300 : p;
        n->i[0] = (int64_t)nn__g.rng.seed;
        n->i[1] = (int64_t)off;
    }
    return y;
}

/* ------------------------------------------------------------------------------------------ [ops:matmul] */

/* C = alpha op(A) op(B) + beta C, row-major (see the GEMM section for the blocked kernel) */
static void nn__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

#ifdef NN_CUDA
void nn__cuda_gemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const nn_tensor *A, int64_t a_off,
                   int64_t lda, int64_t stride_a, const nn_tensor *B, int64_t b_off, int64_t ldb, int64_t stride_b,
                   float beta, nn_tensor *C, int64_t c_off, int64_t ldc, int64_t stride_c, int64_t batch);
#endif

/* batched GEMM over broadcast batch dims: C[bi] = op(A[ba(bi)]) op(B[bb(bi)]) (+ beta C) */
static void nn__bgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, const nn_tensor *A, const int64_t *abat,
                      const nn_tensor *B, const int64_t *bbat, float beta, nn_tensor *C, int64_t nb) {
    int64_t i, lda = ta ? M : K, ldb = tb ? K : N;
    const float *pa = (const float *)A->data, *pb = (const float *)B->data;
    float *pc = (float *)C->data;
#ifdef NN_CUDA
    if (C->device == NN_CUDA) { nn__cuda_bgemm(ta, tb, M, N, K, A, abat, B, bbat, beta, C, nb); return; }
#endif
    if (nb == 1) { nn__sgemm(ta, tb, M, N, K, 1.0f, pa + abat[0] * M * K, lda, pb + bbat[0] * K * N, ldb, beta, pc, N); return; }
    /* many small products: one per thread; big ones: the GEMM parallelises inside */
    if (M * N * K < (int64_t)1 << 18) {
        NN_OMP("omp parallel for")
        for (i = 0; i < nb; i++) nn__sgemm(ta, tb, M, N, K, 1.0f, pa + abat[i] * M * K, lda, pb + bbat[i] * K * N, ldb, beta, pc + i * M * N, N);
    } else {
        for (i = 0; i < nb; i++) nn__sgemm(ta, tb, M, N, K, 1.0f, pa + abat[i] * M * K, lda, pb + bbat[i] * K * N, ldb, beta, pc + i * M * N, N);
    }
}

/* the batch index of each operand for every output batch element (0-strides where broadcast) */
static void nn__batch_map(int nbd, const int64_t *oshape, int tnd, const int64_t *tshape, int64_t nb, int64_t *map) {
    int64_t st[NN_MAX_DIMS], i;
    int d;
    nn__bcast_strides(tnd, tshape, nbd, oshape, st);
    for (i = 0; i < nb; i++) {
        int64_t r = i, off = 0;
        for (d = nbd - 1; d >= 0; d--) { off += (r % oshape[d]) * st[d]; r /= oshape[d]; }
        map[i] = off;
    }
}

static void nn__matmul_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *a = n->saved[0], *b = n->saved[1];
    int ta = (int)n->i[0], tb = (int)n->i[1], nbd = g->ndim - 2, d;
    int64_t M = g->shape[g->ndim - 2], N = g->shape[g->ndim - 1], K = n->i[2], nb = 1, i, *amap, *bmap, *gmap;
    int64_t bshape[NN_MAX_DIMS] = {0};
    nn_tensor *maps;
    for (d = 0; d < nbd; d++) { bshape[d] = g->shape[d]; nb *= g->shape[d]; }
    {
        int64_t ms = 3 * nb;
        maps = nn__new(NN_I64, NN_CPU, 1, &ms);
    }
    amap = (int64_t *)maps->data; bmap = amap + nb; gmap = bmap + nb;
    nn__batch_map(nbd, bshape, a->ndim - 2, a->shape, nb, amap);
    nn__batch_map(nbd, bshape, b->ndim - 2, b->shape, nb, bmap);
    for (i = 0; i < nb; i++) gmap[i] = i;
    if (nn__needs_grad(n, 0)) {
        /* dA (as stored): ta=0: g op(B)^T [M,K]; ta=1: op(B) g^T [K,M]; computed per output batch, then
           summed over broadcast batch dims */
        int64_t s[NN_MAX_DIMS];
        nn_tensor *ga;
        for (d = 0; d < nbd; d++) s[d] = bshape[d];
        s[nbd] = ta ? K : M; s[nbd + 1] = ta ? M : K;
        ga = nn__new(NN_F32, g->device, nbd + 2, s);
        if (!ta) nn__bgemm(0, !tb, M, K, N, g, gmap, b, bmap, 0.0f, ga, nb);
        else nn__bgemm(tb, 1, K, M, N, b, bmap, g, gmap, 0.0f, ga, nb);
        nn__accumulate(n, 0, ga);
    }
    if (nn__needs_grad(n, 1)) {
        /* dB (as stored): tb=0: op(A)^T g [K,N]; tb=1: g^T op(A) [N,K] */
        int64_t s[NN_MAX_DIMS];
        nn_tensor *gb;
        for (d = 0; d < nbd; d++) s[d] = bshape[d];
        s[nbd] = tb ? N : K; s[nbd + 1] = tb ? K : N;
        gb = nn__new(NN_F32, g->device, nbd + 2, s);
        if (!tb) nn__bgemm(!ta, 0, K, N, M, a, amap, g, gmap, 0.0f, gb, nb);
        else nn__bgemm(1, ta, N, K, M, g, gmap, a, amap, 0.0f, gb, nb);
        nn__accumulate(n, 1, gb);
    }
}

/* a and b with >= 2 dims; batch dims broadcast */
static nn_tensor *nn__matmul_nd(const char *op, nn_tensor *a, nn_tensor *b, int ta, int tb) {
    int64_t M = a->shape[a->ndim - (ta ? 1 : 2)], K = a->shape[a->ndim - (ta ? 2 : 1)];
    int64_t K2 = b->shape[b->ndim - (tb ? 1 : 2)], N = b->shape[b->ndim - (tb ? 2 : 1)];
    int64_t oshape[NN_MAX_DIMS], nb = 1, i, *amap, *bmap;
    int nbd, d;
    nn_tensor *o, *in[2], *maps;
    nn_node *n;
    if (K != K2)
        nn_error("%s: inner dims differ: %s%s @ %s%s (%lld vs %lld)", op, nn__s(a), ta ? "^T" : "", nn__s(b),
                 tb ? "^T" : "", (long long)K, (long long)K2);
    {
        /* broadcast the batch dims */
        nn_tensor ah = *a, bh = *b;
        ah.ndim = a->ndim - 2; bh.ndim = b->ndim - 2;
        nbd = nn__broadcast_shape(op, &ah, &bh, oshape);
    }
    for (d = 0; d < nbd; d++) nb *= oshape[d];
    oshape[nbd] = M; oshape[nbd + 1] = N;
    o = nn__new(NN_F32, a->device, nbd + 2, oshape);
    {
        int64_t ms = 2 * nb;
        maps = nn__new(NN_I64, NN_CPU, 1, &ms);
    }
    amap = (int64_t *)maps->data; bmap = amap + nb;
    nn__batch_map(nbd, oshape, a->ndim - 2, a->shape, nb, amap);
    nn__batch_map(nbd, oshape, b->ndim - 2, b->shape, nb, bmap);
    (void)i;
    nn__bgemm(ta, tb, M, N, K, a, amap, b, bmap, 0.0f, o, nb);
    nn_tensor_free(maps);
    in[0] = a; in[1] = b;
    if ((n = nn__record(op, nn__matmul_backward, 2, in, 1, &o)) != NULL) {
        n->i[0] = ta; n->i[1] = tb; n->i[2] = K;
        nn__save(n, a); nn__save(n, b);
    }
    return o;
}

/* GEMM operands: f32; on cuda also f16/bf16 (f32 accumulation and result) */
static void nn__check_mm(const char *op, const nn_tensor *t, const char *what) {
#ifdef NN_CUDA
    if (t && t->device == NN_CUDA && (t->dtype == NN_F16 || t->dtype == NN_BF16)) return;
#endif
    nn__check_f32(op, t, what);
}

nn_tensor *nn_matmul_t(nn_tensor *a, nn_tensor *b, int ta, int tb) {
    if (nn__ac.cur != NN_F32) {   /* autocast: low-precision operands and result, f32 accumulation */
        nn_dtype dt = nn__autocast_enter();
        return nn__autocast_leave(nn_matmul_t(nn__autocast_arg(a, dt), nn__autocast_arg(b, dt), ta, tb), dt);
    }
    nn__check_mm("nn_matmul", a, "a");
    nn__check_mm("nn_matmul", b, "b");
    nn__check_same_device("nn_matmul", a, b);
    if (a->ndim < 2 || b->ndim < 2) nn_error("nn_matmul_t: both operands need >= 2 dims, got %s and %s", nn__s(a), nn__s(b));
    /* [.., M, K] @ [K, N]: fold the leading dims of a into M for one large GEMM */
    if (b->ndim == 2 && a->ndim > 2 && !ta) {
        int64_t s2[2], so[NN_MAX_DIMS];
        int d;
        nn_tensor *y;
        s2[0] = a->numel / a->shape[a->ndim - 1]; s2[1] = a->shape[a->ndim - 1];
        if (s2[1] != b->shape[tb ? 1 : 0])
            nn_error("nn_matmul: inner dims differ: %s @ %s%s", nn__s(a), nn__s(b), tb ? "^T" : "");
        y = nn__matmul_nd("nn_matmul", nn_reshape(a, 2, s2), b, 0, tb);
        for (d = 0; d < a->ndim - 1; d++) so[d] = a->shape[d];
        so[a->ndim - 1] = y->shape[1];
        return nn_reshape(y, a->ndim, so);
    }
    return nn__matmul_nd("nn_matmul", a, b, ta, tb);
}

nn_tensor *nn_matmul(nn_tensor *a, nn_tensor *b) {
    nn__check_mm("nn_matmul", a, "a");
    nn__check_mm("nn_matmul", b, "b");
    if (a->ndim < 1 || b->ndim < 1) nn_error("nn_matmul: operands need >= 1 dim, got %s and %s", nn__s(a), nn__s(b));
    if (a->ndim == 1 || b->ndim == 1) {   /* torch.matmul: a vector gains a dim that is removed afterwards */
        nn_tensor *a2 = a, *b2 = b, *y;
        int64_t s[NN_MAX_DIMS];
        int d, nd;
        if (a->ndim == 1) a2 = nn_unsqueeze(a, 0);
        if (b->ndim == 1) b2 = nn_unsqueeze(b, 1);
        y = nn_matmul_t(a2, b2, 0, 0);
        nd = 0;
        for (d = 0; d < y->ndim; d++) {
            if (a->ndim == 1 && d == y->ndim - 2) continue;
            if (b->ndim == 1 && d == y->ndim - 1) continue;
            s[nd++] = y->shape[d];
        }
        return nn_reshape(y, nd, s);
    }
    return nn_matmul_t(a, b, 0, 0);
}

/* linear: y = x w^T + b over the last dim of x, as one GEMM on [rows, in] */
static void nn__linear_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *x = n->saved[0], *w = n->saved[1];
    int64_t out = w->shape[0], in = w->shape[1], rows = in ? x->numel / in : 0;
    const float *pg = (const float *)g->data;
#ifdef NN_CUDA
    if (g->device == NN_CUDA && (nn__needs_grad(n, 0) || nn__needs_grad(n, 1))) {
        nn_tensor *gx = nn__needs_grad(n, 0) ? nn__new(NN_F32, g->device, x->ndim, x->shape) : NULL;
        nn_tensor *gw = nn__needs_grad(n, 1) ? nn__new(NN_F32, g->device, 2, w->shape) : NULL;
        nn__cuda_linear_bwd(g, x, w, gx, gw);
        if (gx) nn__accumulate(n, 0, gx);
        if (gw) nn__accumulate(n, 1, gw);
    } else
#endif
    if (nn__needs_grad(n, 0)) {
        nn_tensor *gx = nn__new(NN_F32, g->device, x->ndim, x->shape);
        nn__sgemm(0, 0, rows, in, out, 1.0f, pg, out, (const float *)w->data, in, 0.0f, (float *)gx->data, in);
        nn__accumulate(n, 0, gx);
    }
    if (nn__needs_grad(n, 1) && g->device == NN_CPU) {
        nn_tensor *gw = nn__new(NN_F32, g->device, 2, w->shape);
        nn__sgemm(1, 0, out, in, rows, 1.0f, pg, out, (const float *)x->data, in, 0.0f, (float *)gw->data, in);
        nn__accumulate(n, 1, gw);
    }
    if (nn__needs_grad(n, 2)) {
        int64_t s[2];
        s[0] = rows; s[1] = out;
        nn__accumulate(n, 2, nn__sum_to(nn_reshape(g, 2, s), 1, &out));
    }
}

nn_tensor *nn_linear(nn_tensor *x, nn_tensor *w, nn_tensor *b) {
    int64_t in, out, rows, shape[NN_MAX_DIMS], r;
    nn_tensor *y, *ins[3];
    nn_node *n;
    int d;
    if (nn__ac.cur != NN_F32) {   /* autocast: low-precision operands and result, f32 accumulation */
        nn_dtype dt = nn__autocast_enter();
        return nn__autocast_leave(nn_linear(nn__autocast_arg(x, dt), nn__autocast_arg(w, dt), nn__autocast_arg(b, dt)), dt);
    }
    nn__check_mm("nn_linear", x, "input");
    nn__check_mm("nn_linear", w, "weight");
    nn__check_same_device("nn_linear", x, w);
    if (w->ndim != 2) nn_error("nn_linear: weight must be [out, in], got %s", nn__s(w));
    if (x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1])
        nn_error("nn_linear: input %s does not end in in_features %lld of weight %s", nn__s(x), (long long)w->shape[1], nn__s(w));
    out = w->shape[0]; in = w->shape[1];
    if (b) {
        nn__check_f32("nn_linear", b, "bias");
        nn__check_same_device("nn_linear", x, b);
        if (b->ndim != 1 || b->shape[0] != out) nn_error("nn_linear: bias %s does not match weight %s", nn__s(b), nn__s(w));
    }
    rows = in ? x->numel / in : 0;
    for (d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = out;
    if (in == 0) for (r = 0, rows = 1; r < x->ndim - 1; r++) rows *= x->shape[r];
    y = nn__new(NN_F32, x->device, x->ndim, shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_linear_fwd(x, w, b, y); else
#endif
    {
    if (b) {   /* start from the bias, then accumulate the product (beta = 1) */
        const float *pb = (const float *)b->data;
        float *py = (float *)y->data;
        NN_OMP("omp parallel for if (rows * out > 32768)")
        for (r = 0; r < rows; r++) memcpy(py + r * out, pb, sizeof(float) * (size_t)out);
    }
    nn__sgemm(0, 1, rows, out, in, 1.0f, (const float *)x->data, in, (const float *)w->data, in, b ? 1.0f : 0.0f,
              (float *)y->data, out);
    }
    ins[0] = x; ins[1] = w; ins[2] = b;
    if ((n = nn__record("nn_linear", nn__linear_backward, 3, ins, 1, &y)) != NULL) { nn__save(n, x); nn__save(n, w); }
    return y;
}

/* the blocked GEMM: packed panels, register-blocked micro-kernel, OpenMP over blocks of C */
#include "wip/gemm.h"

/* ------------------------------------------------------------------------------------------- [ops:shape] */

static void nn__reshape_backward(nn_node *n) {
    nn__accumulate(n, 0, nn_reshape(n->gout[0], n->in[0].ndim, n->in[0].shape));
}

nn_tensor *nn_reshape(nn_tensor *a, int ndim, const int64_t *shape) {
    int64_t s[NN_MAX_DIMS], known = 1;
    int d, infer = -1;
    nn_tensor *v;
    if (!a) nn_error("nn_reshape: tensor is NULL");
    if (ndim < 0 || ndim > NN_MAX_DIMS || (ndim && !shape)) nn_error("nn_reshape: bad target rank %d for %s", ndim, nn__s(a));
    for (d = 0; d < ndim; d++) {
        s[d] = shape[d];
        if (s[d] == -1) { if (infer >= 0) nn_error("nn_reshape: more than one -1 in the target shape of %s", nn__s(a)); infer = d; }
        else if (s[d] < 0) nn_error("nn_reshape: negative size %lld in the target shape of %s", (long long)s[d], nn__s(a));
        else known *= s[d];
    }
    if (infer >= 0) {
        if (known == 0 || a->numel % known) nn_error("nn_reshape: cannot infer -1 reshaping %s (%lld elements)", nn__s(a), (long long)a->numel);
        s[infer] = a->numel / known;
        known *= s[infer];
    }
    if (known != a->numel) {
        char buf[96];
        nn_tensor tmp;
        tmp.ndim = ndim;
        memcpy(tmp.shape, s, sizeof(int64_t) * (size_t)ndim);
        nn_error("nn_reshape: %s has %lld elements, target %s has %lld", nn__s(a), (long long)a->numel,
                 nn_shape_str(&tmp, buf, sizeof buf), (long long)known);
    }
    v = nn__view(a, ndim, s, 0);
    nn__record("nn_reshape", nn__reshape_backward, 1, &a, 1, &v);
    return v;
}

nn_tensor *nn_flatten(nn_tensor *a, int start_dim, int end_dim) {
    int64_t s[NN_MAX_DIMS];
    int d, nd = 0, s0, e0;
    if (!a) nn_error("nn_flatten: tensor is NULL");
    if (a->ndim == 0) return nn_reshape(a, 0, a->shape);
    s0 = nn__norm_dim("nn_flatten", a, start_dim);
    e0 = nn__norm_dim("nn_flatten", a, end_dim);
    if (s0 > e0) nn_error("nn_flatten: start_dim %d after end_dim %d for %s", start_dim, end_dim, nn__s(a));
    for (d = 0; d < s0; d++) s[nd++] = a->shape[d];
    s[nd] = 1;
    for (d = s0; d <= e0; d++) s[nd] *= a->shape[d];
    nd++;
    for (d = e0 + 1; d < a->ndim; d++) s[nd++] = a->shape[d];
    return nn_reshape(a, nd, s);
}

nn_tensor *nn_unsqueeze(nn_tensor *a, int dim) {
    int64_t s[NN_MAX_DIMS];
    int d, k = 0, at;
    if (!a) nn_error("nn_unsqueeze: tensor is NULL");
    at = dim < 0 ? dim + a->ndim + 1 : dim;
    if (at < 0 || at > a->ndim || a->ndim >= NN_MAX_DIMS) nn_error("nn_unsqueeze: dim %d out of range for %s", dim, nn__s(a));
    for (d = 0; d <= a->ndim; d++) s[d] = d == at ? 1 : a->shape[k++];
    return nn_reshape(a, a->ndim + 1, s);
}

nn_tensor *nn_squeeze(nn_tensor *a, int dim) {
    int64_t s[NN_MAX_DIMS];
    int d, k = 0, at = nn__norm_dim("nn_squeeze", a, dim);
    if (a->shape[at] != 1) return nn_reshape(a, a->ndim, a->shape);
    for (d = 0; d < a->ndim; d++) if (d != at) s[k++] = a->shape[d];
    return nn_reshape(a, k, s);
}

/* permute copies: out[i_0..i_n] = a[i_perm...]; done as a strided gather row by row */
static void nn__permute_cpu(const nn_tensor *a, const int *perm, nn_tensor *o) {
    int64_t ist[NN_MAX_DIMS], st[NN_MAX_DIMS], s = 1, inner, rows, r;
    int d, nd = a->ndim;
    size_t es = nn_dtype_size(a->dtype);
    for (d = nd - 1; d >= 0; d--) { ist[d] = s; s *= a->shape[d]; }
    for (d = 0; d < nd; d++) st[d] = ist[perm[d]];   /* input stride along each output dim */
    if (nd == 0 || o->numel == 0) { if (o->numel) memcpy(o->data, a->data, es); return; }
    inner = o->shape[nd - 1];
    rows = o->numel / inner;
    NN_OMP("omp parallel for if (o->numel > 32768)")
    for (r = 0; r < rows; r++) {
        int64_t off = nn__row_offset(r, nd, o->shape, st), j, ls = st[nd - 1];
        if (es == 4) {
            const float *src = (const float *)a->data + off;
            float *dst = (float *)o->data + r * inner;
            for (j = 0; j < inner; j++) dst[j] = src[j * ls];
        } else {
            const char *src = (const char *)a->data + off * (int64_t)es;
            char *dst = (char *)o->data + r * inner * (int64_t)es;
            for (j = 0; j < inner; j++) memcpy(dst + j * (int64_t)es, src + j * ls * (int64_t)es, es);
        }
    }
}

static void nn__permute_backward(nn_node *n) {
    int inv[NN_MAX_DIMS], d;
    for (d = 0; d < n->in[0].ndim; d++) inv[n->i[d]] = d;
    nn__accumulate(n, 0, nn_permute(n->gout[0], inv));
}

nn_tensor *nn_permute(nn_tensor *a, const int *perm) {
    int64_t s[NN_MAX_DIMS];
    int d, seen[NN_MAX_DIMS] = {0};
    nn_tensor *o;
    nn_node *n;
    if (!a || !perm) nn_error("nn_permute: NULL argument");
    for (d = 0; d < a->ndim; d++) {
        if (perm[d] < 0 || perm[d] >= a->ndim || seen[perm[d]]) nn_error("nn_permute: not a permutation of %d dims for %s", a->ndim, nn__s(a));
        seen[perm[d]] = 1;
        s[d] = a->shape[perm[d]];
    }
    o = nn__new(a->dtype, a->device, a->ndim, s);
#ifdef NN_CUDA
    if (a->device == NN_CUDA) nn__cuda_permute(a, perm, o); else
#endif
    nn__permute_cpu(a, perm, o);
    if (nn_dtype_is_float(a->dtype) && (n = nn__record("nn_permute", nn__permute_backward, 1, &a, 1, &o)) != NULL)
        for (d = 0; d < a->ndim; d++) n->i[d] = perm[d];
    return o;
}

nn_tensor *nn_transpose(nn_tensor *a, int d0, int d1) {
    int perm[NN_MAX_DIMS], d, x, y;
    if (!a) nn_error("nn_transpose: tensor is NULL");
    x = nn__norm_dim("nn_transpose", a, d0);
    y = nn__norm_dim("nn_transpose", a, d1);
    for (d = 0; d < a->ndim; d++) perm[d] = d;
    perm[x] = y; perm[y] = x;
    return nn_permute(a, perm);
}

/* slice [start, end) along dim. A view when every dim before `dim` has size 1 (then the slice is one
   contiguous block), a copy otherwise. Backward scatters the gradient into zeros. */
static void nn__slice_copy(const nn_tensor *a, int d, int64_t start, nn_tensor *o, int to_input) {
    int64_t outer, len, inner, o_i, olen = o->shape[d];
    size_t es = nn_dtype_size(a->dtype);
    nn__dims3(a, d, &outer, &len, &inner);
#ifdef NN_CUDA
    if (a->device == NN_CUDA) {
        char *src = (char *)a->data + start * inner * (int64_t)es;
        if (to_input) nn__cuda_copy2d(src, len * inner, o->data, olen * inner, olen * inner, outer, es);
        else nn__cuda_copy2d(o->data, olen * inner, src, len * inner, olen * inner, outer, es);
        return;
    }
#endif
    NN_OMP("omp parallel for if (o->numel > 32768)")
    for (o_i = 0; o_i < outer; o_i++) {
        char *src = (char *)a->data + ((o_i * len + start) * inner) * (int64_t)es;
        char *dst = (char *)o->data + (o_i * olen * inner) * (int64_t)es;
        if (to_input) memcpy(src, dst, (size_t)(olen * inner) * es);
        else memcpy(dst, src, (size_t)(olen * inner) * es);
    }
}

static void nn__slice_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *gx = nn__new(NN_F32, g->device, n->in[0].ndim, n->in[0].shape);
    nn_fill_(gx, 0);
    nn__slice_copy(gx, (int)n->i[0], n->i[1], g, 1);
    nn__accumulate(n, 0, gx);
}

nn_tensor *nn_slice(nn_tensor *a, int dim, int64_t start, int64_t end) {
    int d, k, contiguous = 1;
    int64_t s[NN_MAX_DIMS], inner = 1;
    nn_tensor *o;
    nn_node *n;
    if (!a) nn_error("nn_slice: tensor is NULL");
    d = nn__norm_dim("nn_slice", a, dim);
    if (start < 0) start += a->shape[d];
    if (end < 0) end += a->shape[d];
    if (end > a->shape[d]) end = a->shape[d];    /* like Python slicing */
    if (start < 0 || start > end)
        nn_error("nn_slice: range [%lld, %lld) out of bounds for dim %d of %s", (long long)start, (long long)end, dim, nn__s(a));
    memcpy(s, a->shape, sizeof s);
    s[d] = end - start;
    for (k = 0; k < d; k++) if (a->shape[k] != 1) contiguous = 0;
    for (k = d + 1; k < a->ndim; k++) inner *= a->shape[k];
    if (contiguous) o = nn__view(a, a->ndim, s, start * inner);
    else {
        o = nn__new(a->dtype, a->device, a->ndim, s);
        nn__slice_copy(a, d, start, o, 0);
    }
    if (nn_dtype_is_float(a->dtype) && (n = nn__record("nn_slice", nn__slice_backward, 1, &a, 1, &o)) != NULL) {
        n->i[0] = d; n->i[1] = start;
    }
    return o;
}

static void nn__concat_backward(nn_node *n) {
    int d = (int)n->i[0], k;
    int64_t start = 0;
    for (k = 0; k < n->n_in; k++) {
        int64_t len = n->in[k].shape[d];
        if (nn__needs_grad(n, k)) nn__accumulate(n, k, nn_slice(n->gout[0], d, start, start + len));
        start += len;
    }
}

nn_tensor *nn_concat(int n_t, nn_tensor **ts, int dim) {
    int d, k, j;
    int64_t s[NN_MAX_DIMS], outer, inner, off = 0, o_i;
    nn_tensor *o, *in[NN_MAX_NODE_IN];
    nn_node *n;
    size_t es;
    if (n_t < 1 || !ts || !ts[0]) nn_error("nn_concat: need at least one tensor");
    d = nn__norm_dim("nn_concat", ts[0], dim);
    memcpy(s, ts[0]->shape, sizeof s);
    s[d] = 0;
    for (k = 0; k < n_t; k++) {
        if (!ts[k]) nn_error("nn_concat: tensor %d is NULL", k);
        if (ts[k]->ndim != ts[0]->ndim || ts[k]->dtype != ts[0]->dtype || ts[k]->device != ts[0]->device)
            nn_error("nn_concat: tensor %d %s %s differs in rank/dtype/device from tensor 0 %s %s", k,
                     nn_dtype_name(ts[k]->dtype), nn__s(ts[k]), nn_dtype_name(ts[0]->dtype), nn__s(ts[0]));
        for (j = 0; j < ts[0]->ndim; j++)
            if (j != d && ts[k]->shape[j] != ts[0]->shape[j])
                nn_error("nn_concat: tensor %d %s does not match tensor 0 %s outside dim %d", k, nn__s(ts[k]), nn__s(ts[0]), dim);
        s[d] += ts[k]->shape[d];
    }
    o = nn__new(ts[0]->dtype, ts[0]->device, ts[0]->ndim, s);
    es = nn_dtype_size(o->dtype);
    {
        int64_t len;
        nn__dims3(o, d, &outer, &len, &inner);
    }
    for (k = 0; k < n_t; k++) {
        int64_t len = ts[k]->shape[d];
#ifdef NN_CUDA
        if (o->device == NN_CUDA) {
            nn__cuda_copy2d((char *)o->data + off * inner * (int64_t)es, s[d] * inner, ts[k]->data, len * inner, len * inner,
                            outer, es);
            off += len;
            continue;
        }
#endif
        NN_OMP("omp parallel for if (outer * len * inner > 32768)")
        for (o_i = 0; o_i < outer; o_i++)
            memcpy((char *)o->data + ((o_i * s[d] + off) * inner) * (int64_t)es,
                   (const char *)ts[k]->data + (o_i * len * inner) * (int64_t)es, (size_t)(len * inner) * es);
        off += len;
    }
    if (n_t <= NN_MAX_NODE_IN && nn_dtype_is_float(o->dtype)) {
        for (k = 0; k < n_t; k++) in[k] = ts[k];
        if ((n = nn__record("nn_concat", nn__concat_backward, n_t, in, 1, &o)) != NULL) n->i[0] = d;
    } else if (nn_dtype_is_float(o->dtype)) {
        for (k = 0; k < n_t; k++)
            if (nn__tracks(ts[k]) && nn_grad_enabled())
                nn_error("nn_concat: at most %d differentiable inputs (got %d); concatenate in stages", NN_MAX_NODE_IN, n_t);
    }
    return o;
}

void nn_split(nn_tensor *a, int n, const int64_t *sizes, int dim, nn_tensor **out) {
    int d, k;
    int64_t start = 0;
    if (!a || !sizes || !out || n < 1) nn_error("nn_split: bad arguments");
    d = nn__norm_dim("nn_split", a, dim);
    for (k = 0; k < n; k++) {
        if (sizes[k] < 0) nn_error("nn_split: negative size %lld", (long long)sizes[k]);
        start += sizes[k];
    }
    if (start != a->shape[d]) nn_error("nn_split: sizes add up to %lld, dim %d of %s is %lld", (long long)start, dim, nn__s(a), (long long)a->shape[d]);
    start = 0;
    for (k = 0; k < n; k++) { out[k] = nn_slice(a, d, start, start + sizes[k]); start += sizes[k]; }
}

void nn_chunk(nn_tensor *a, int n, int dim, nn_tensor **out) {
    int d, k;
    int64_t size, start = 0;
    if (!a || !out || n < 1) nn_error("nn_chunk: bad arguments");
    d = nn__norm_dim("nn_chunk", a, dim);
    size = (a->shape[d] + n - 1) / n;
    for (k = 0; k < n; k++) {
        int64_t end = start + size > a->shape[d] ? a->shape[d] : start + size;
        out[k] = nn_slice(a, d, start, end);
        start = end;
    }
}

static void nn__expand_backward(nn_node *n) { nn__accumulate(n, 0, n->gout[0]); }  /* accumulate sums to shape */

nn_tensor *nn_expand(nn_tensor *a, int ndim, const int64_t *shape) {
    nn_tensor tmp, *o;
    int64_t s[NN_MAX_DIMS];
    int d;
    if (!a || ndim < a->ndim || ndim > NN_MAX_DIMS) nn_error("nn_expand: bad target rank %d for %s", ndim, a ? nn__s(a) : "(null)");
    nn__check_f32("nn_expand", a, "input");
    tmp.ndim = ndim;
    for (d = 0; d < ndim; d++) {
        int ia = a->ndim - ndim + d;
        tmp.shape[d] = shape[d] == -1 && ia >= 0 ? a->shape[ia] : shape[d];
        if (ia >= 0 && a->shape[ia] != 1 && a->shape[ia] != tmp.shape[d])
            nn_error("nn_expand: cannot expand %s to the target (dim %d)", nn__s(a), d);
    }
    nn__broadcast_shape("nn_expand", a, &tmp, s);
    o = nn__new(NN_F32, a->device, ndim, tmp.shape);
#ifdef NN_CUDA
    if (a->device == NN_CUDA) nn__cuda_expand(a, o); else
#endif
    {
        /* out = a + 0 with broadcasting, without a tape entry for the zero */
        int64_t st[NN_MAX_DIMS], inner = ndim ? o->shape[ndim - 1] : 1, rows = inner ? o->numel / inner : 0, r;
        nn__bcast_strides(a->ndim, a->shape, ndim, o->shape, st);
        NN_OMP("omp parallel for if (o->numel > 32768)")
        for (r = 0; r < rows; r++) {
            const float *src = (const float *)a->data + (ndim ? nn__row_offset(r, ndim, o->shape, st) : 0);
            float *dst = (float *)o->data + r * inner;
            int64_t j, ls = ndim ? st[ndim - 1] : 0;
            for (j = 0; j < inner; j++) dst[j] = src[j * ls];
        }
    }
    nn__record("nn_expand", nn__expand_backward, 1, &a, 1, &o);
    return o;
}

/* ----------------------------------------------------------------------------------------- [ops:attention] */
#include "wip/sdpa.h"

/* ---------------------------------------------------------------------------- [ops:conv] [ops:index] [ops:loss] */
/* (being folded in: these sections live in wip/ until their review ends) */
#include "wip/ops_conv.h"
#include "wip/ops_index_loss.h"
#include "wip/train.h"
#include "wip/amp.h"

/* --------------------------------------------------------------------------------------------- [modules] */

const char *nn_name_join(char *buf, size_t n, const char *prefix, const char *name) {
    if (prefix && *prefix) snprintf(buf, n, "%s.%s", prefix, name);
    else snprintf(buf, n, "%s", name);
    return buf;
}

nn_tensor *nn_params_add(nn_params *p, const char *name, nn_tensor *t) {
    size_t len;
    if (!p || !name || !t) nn_error("nn_params_add: NULL argument");
    if (nn_params_find(p, name)) nn_error("nn_params_add: duplicate parameter name '%s'", name);
    if (t->scope_slot >= 0) nn_error("nn_params_add: '%s' was created inside a scope; create parameters outside scopes", name);
    p->items = (nn_param *)nn__grow(p->items, &p->cap, p->n + 1, sizeof(nn_param));
    len = strlen(name) + 1;
    p->items[p->n].name = (char *)NN_MALLOC(len);
    if (!p->items[p->n].name) nn_error("nn_params_add: out of host memory");
    memcpy(p->items[p->n].name, name, len);
    p->items[p->n].t = t;
    p->items[p->n].no_decay = t->ndim <= 1;   /* biases and norm scales: the usual no-decay group */
    p->n++;
    nn_tensor_set_name(t, name);
    return t;
}

nn_tensor *nn_params_find(const nn_params *p, const char *name) {
    int i;
    for (i = 0; p && i < p->n; i++) if (strcmp(p->items[i].name, name) == 0) return p->items[i].t;
    return NULL;
}

int64_t nn_params_count(const nn_params *p) {
    int64_t n = 0;
    int i;
    for (i = 0; p && i < p->n; i++) n += p->items[i].t->numel;
    return n;
}

void nn_params_zero_grad(nn_params *p) {
    int i;
    for (i = 0; p && i < p->n; i++) nn_zero_grad(p->items[i].t);
}

void nn_params_free(nn_params *p) {
    int i;
    if (!p) return;
    for (i = 0; i < p->n; i++) { nn_tensor_free(p->items[i].t); NN_FREE(p->items[i].name); }
    NN_FREE(p->items);
    p->items = NULL;
    p->n = p->cap = 0;
}

/* a parameter created outside any scope and registered */
static nn_tensor *nn__param(nn_params *P, const char *prefix, const char *name, int ndim, const int64_t *shape) {
    char buf[256];
    nn_tensor *t;
    int depth = nn__g.depth;
    if (!P) nn_error("module init: the parameter registry is NULL (for %s.%s)", prefix ? prefix : "", name);
    nn__g.depth = 0;                       /* parameters belong to the registry, never to a scope */
    t = nn_zeros(NN_F32, ndim, shape);
    nn__g.depth = depth;
    t->requires_grad = 1;
    return nn_params_add(P, nn_name_join(buf, sizeof buf, prefix, name), t);
}

void nn_Linear_init(nn_Linear *m, nn_params *P, const char *name, int in, int out, int bias) {
    int64_t s[2];
    double bound = in > 0 ? 1.0 / sqrt((double)in) : 0;
    s[0] = out; s[1] = in;
    if (in < 0 || out < 0) nn_error("nn_Linear_init(%s): bad sizes %d -> %d", name, in, out);
    m->in = in; m->out = out;
    m->weight = nn__param(P, name, "weight", 2, s);
    nn_init_kaiming_uniform_(m->weight, sqrt(5.0));   /* torch.nn.Linear.reset_parameters: bound 1/sqrt(in) */
    m->bias = NULL;
    if (bias) { m->bias = nn__param(P, name, "bias", 1, &s[0]); nn_init_uniform_(m->bias, -bound, bound); }
}
nn_tensor *nn_Linear_forward(const nn_Linear *m, nn_tensor *x) { return nn_linear(x, m->weight, m->bias); }

void nn_LayerNorm_init(nn_LayerNorm *m, nn_params *P, const char *name, int dim, double eps, int affine) {
    int64_t s = dim;
    m->dim = dim; m->eps = eps;
    m->weight = m->bias = NULL;
    if (affine) {
        m->weight = nn__param(P, name, "weight", 1, &s); nn_fill_(m->weight, 1.0);
        m->bias = nn__param(P, name, "bias", 1, &s);
    }
}
nn_tensor *nn_LayerNorm_forward(const nn_LayerNorm *m, nn_tensor *x) { return nn_layer_norm(x, m->weight, m->bias, m->eps); }

void nn_GroupNorm_init(nn_GroupNorm *m, nn_params *P, const char *name, int groups, int channels, double eps) {
    int64_t s = channels;
    if (groups <= 0 || channels % groups) nn_error("nn_GroupNorm_init(%s): %d channels do not split into %d groups", name, channels, groups);
    m->groups = groups; m->channels = channels; m->eps = eps;
    m->weight = nn__param(P, name, "weight", 1, &s); nn_fill_(m->weight, 1.0);
    m->bias = nn__param(P, name, "bias", 1, &s);
}
nn_tensor *nn_GroupNorm_forward(const nn_GroupNorm *m, nn_tensor *x) { return nn_group_norm(x, m->groups, m->weight, m->bias, m->eps); }

void nn_Conv2d_init(nn_Conv2d *m, nn_params *P, const char *name, int in, int out, int k, int stride, int padding,
                    int dilation, int groups, int bias) {
    int64_t s[4];
    double fan_in;
    if (groups <= 0 || in % groups || out % groups) nn_error("nn_Conv2d_init(%s): channels %d -> %d do not split into %d groups", name, in, out, groups);
    m->in = in; m->out = out; m->k = k; m->stride = stride; m->padding = padding; m->dilation = dilation; m->groups = groups;
    s[0] = out; s[1] = in / groups; s[2] = k; s[3] = k;
    fan_in = (double)(in / groups) * k * k;
    m->weight = nn__param(P, name, "weight", 4, s);
    nn_init_kaiming_uniform_(m->weight, sqrt(5.0));   /* torch.nn.Conv2d.reset_parameters */
    m->bias = NULL;
    if (bias) {
        m->bias = nn__param(P, name, "bias", 1, s);
        nn_init_uniform_(m->bias, -1.0 / sqrt(fan_in), 1.0 / sqrt(fan_in));
    }
}
nn_tensor *nn_Conv2d_forward(const nn_Conv2d *m, nn_tensor *x) {
    return nn_conv2d(x, m->weight, m->bias, m->stride, m->padding, m->dilation, m->groups);
}

void nn_Embedding_init(nn_Embedding *m, nn_params *P, const char *name, int num, int dim) {
    int64_t s[2];
    s[0] = num; s[1] = dim;
    m->num = num; m->dim = dim;
    m->weight = nn__param(P, name, "weight", 2, s);
    nn_init_normal_(m->weight, 0, 1);                  /* torch.nn.Embedding: N(0, 1) */
}
nn_tensor *nn_Embedding_forward(const nn_Embedding *m, nn_tensor *idx) { return nn_embedding(m->weight, idx); }

nn_tensor *nn_activate(nn_tensor *x, nn_activation act) {
    switch (act) {
    case NN_ACT_GELU: return nn_gelu(x);
    case NN_ACT_GELU_TANH: return nn_gelu_tanh(x);
    case NN_ACT_RELU: return nn_relu(x);
    case NN_ACT_SILU: return nn_silu(x);
    default: nn_error("nn_activate: unknown activation %d", (int)act);
    }
    return NULL;
}

void nn_MLP_init(nn_MLP *m, nn_params *P, const char *name, int in, int hidden, int out, nn_activation act, double dropout) {
    char buf[256];
    nn_Linear_init(&m->fc1, P, nn_name_join(buf, sizeof buf, name, "fc1"), in, hidden, 1);
    nn_Linear_init(&m->fc2, P, nn_name_join(buf, sizeof buf, name, "fc2"), hidden, out, 1);
    m->act = act;
    m->dropout = dropout;
}
nn_tensor *nn_MLP_forward(const nn_MLP *m, nn_tensor *x) {
    nn_tensor *h;
    nn_scope_begin();
    h = nn_activate(nn_Linear_forward(&m->fc1, x), m->act);
    if (m->dropout > 0) h = nn_dropout(h, m->dropout, nn_training());
    return nn_scope_end(nn_Linear_forward(&m->fc2, h));
}

void nn_MultiheadAttention_init(nn_MultiheadAttention *m, nn_params *P, const char *name, int embed_dim, int num_heads,
                                double dropout, int kdim, int vdim) {
    char buf[256];
    int64_t s[2];
    if (num_heads <= 0 || embed_dim % num_heads)
        nn_error("nn_MultiheadAttention_init(%s): embed_dim %d is not divisible by num_heads %d", name, embed_dim, num_heads);
    m->embed_dim = embed_dim; m->num_heads = num_heads; m->dropout = dropout;
    m->kdim = kdim > 0 ? kdim : embed_dim;
    m->vdim = vdim > 0 ? vdim : embed_dim;
    m->in_proj_weight = m->q_proj_weight = m->k_proj_weight = m->v_proj_weight = NULL;
    /* torch.nn.MultiheadAttention._reset_parameters: xavier_uniform on the projections, zero biases;
       out_proj keeps Linear's default weight init and gets a zero bias */
    if (m->kdim == embed_dim && m->vdim == embed_dim) {
        s[0] = 3 * embed_dim; s[1] = embed_dim;
        m->in_proj_weight = nn__param(P, name, "in_proj_weight", 2, s);
        nn_init_xavier_uniform_(m->in_proj_weight);
    } else {
        s[0] = embed_dim; s[1] = embed_dim;
        m->q_proj_weight = nn__param(P, name, "q_proj_weight", 2, s); nn_init_xavier_uniform_(m->q_proj_weight);
        s[1] = m->kdim;
        m->k_proj_weight = nn__param(P, name, "k_proj_weight", 2, s); nn_init_xavier_uniform_(m->k_proj_weight);
        s[1] = m->vdim;
        m->v_proj_weight = nn__param(P, name, "v_proj_weight", 2, s); nn_init_xavier_uniform_(m->v_proj_weight);
    }
    s[0] = 3 * embed_dim;
    m->in_proj_bias = nn__param(P, name, "in_proj_bias", 1, s);
    nn_Linear_init(&m->out_proj, P, nn_name_join(buf, sizeof buf, name, "out_proj"), embed_dim, embed_dim, 1);
    nn_fill_(m->out_proj.bias, 0);
}

/* [B, L, E] -> [B, H, L, E/H] */
static nn_tensor *nn__split_heads(nn_tensor *x, int H) {
    int64_t s[4];
    int perm[4] = {0, 2, 1, 3};
    s[0] = x->shape[0]; s[1] = x->shape[1]; s[2] = H; s[3] = x->shape[2] / H;
    return nn_permute(nn_reshape(x, 4, s), perm);
}

nn_tensor *nn_MultiheadAttention_forward(const nn_MultiheadAttention *m, nn_tensor *query, nn_tensor *key,
                                         nn_tensor *value, nn_tensor *key_padding_mask, nn_tensor *attn_mask) {
    int64_t E = m->embed_dim, B, Lq, Lk, s[4];
    int H = m->num_heads;
    nn_tensor *q, *k, *v, *o, *mask = NULL, *bias = NULL, *wq, *wk, *wv, *bq, *bk, *bv;
    nn_sdpa_opts opts;
    int perm[4] = {0, 2, 1, 3};
    if (!query || !key || !value) nn_error("nn_MultiheadAttention_forward: query, key and value are required");
    if (query->ndim != 3 || key->ndim != 3 || value->ndim != 3 || query->shape[2] != E || key->shape[2] != m->kdim ||
        value->shape[2] != m->vdim || key->shape[0] != query->shape[0] || value->shape[0] != query->shape[0] ||
        key->shape[1] != value->shape[1])
        nn_error("nn_MultiheadAttention_forward: expected query [B,Lq,%lld], key [B,Lk,%d], value [B,Lk,%d] "
                 "(batch_first); got %s %s %s", (long long)E, m->kdim, m->vdim, nn__s(query), nn__s(key), nn__s(value));
    B = query->shape[0]; Lq = query->shape[1]; Lk = key->shape[1];
    nn_scope_begin();
    if (m->in_proj_weight) {
        wq = nn_slice(m->in_proj_weight, 0, 0, E);
        wk = nn_slice(m->in_proj_weight, 0, E, 2 * E);
        wv = nn_slice(m->in_proj_weight, 0, 2 * E, 3 * E);
    } else { wq = m->q_proj_weight; wk = m->k_proj_weight; wv = m->v_proj_weight; }
    bq = nn_slice(m->in_proj_bias, 0, 0, E);
    bk = nn_slice(m->in_proj_bias, 0, E, 2 * E);
    bv = nn_slice(m->in_proj_bias, 0, 2 * E, 3 * E);
    q = nn__split_heads(nn_linear(query, wq, bq), H);
    k = nn__split_heads(nn_linear(key, wk, bk), H);
    v = nn__split_heads(nn_linear(value, wv, bv), H);
    if (key_padding_mask) {   /* true = ignore -> SDPA's true = attend */
        int64_t i;
        nn__check_cpu("nn_MultiheadAttention_forward: key_padding_mask", key_padding_mask);
        if (key_padding_mask->ndim != 2 || key_padding_mask->shape[0] != B || key_padding_mask->shape[1] != Lk)
            nn_error("nn_MultiheadAttention_forward: key_padding_mask must be [%lld, %lld], got %s", (long long)B, (long long)Lk, nn__s(key_padding_mask));
        s[0] = B; s[1] = 1; s[2] = 1; s[3] = Lk;
        mask = nn__new(NN_BOOL, NN_CPU, 4, s);
        for (i = 0; i < mask->numel; i++) ((uint8_t *)mask->data)[i] = nn__load(key_padding_mask->data, key_padding_mask->dtype, i) == 0;
    }
    if (attn_mask) {
        nn_tensor *am = attn_mask;
        nn__check_cpu("nn_MultiheadAttention_forward: attn_mask", attn_mask);
        if (am->ndim == 3) {   /* [B*H, Lq, Lk] -> [B, H, Lq, Lk] */
            s[0] = B; s[1] = H; s[2] = am->shape[1]; s[3] = am->shape[2];
            am = nn_reshape(am, 4, s);
        }
        if (am->dtype == NN_BOOL || am->dtype == NN_U8) {
            int64_t i;
            nn_tensor *allow = nn__new(NN_BOOL, NN_CPU, am->ndim, am->shape);
            for (i = 0; i < am->numel; i++) ((uint8_t *)allow->data)[i] = ((const uint8_t *)am->data)[i] == 0;
            if (mask) {   /* both: attend only where both allow */
                int64_t bs[NN_MAX_DIMS], j;
                int nd = nn__broadcast_shape("nn_MultiheadAttention_forward", mask, allow, bs);
                nn_tensor *both = nn__new(NN_BOOL, NN_CPU, nd, bs);
                nn_tensor *fm = nn_expand(nn_cast(mask, NN_F32), nd, bs), *fa = nn_expand(nn_cast(allow, NN_F32), nd, bs);
                for (j = 0; j < both->numel; j++) ((uint8_t *)both->data)[j] = ((float *)fm->data)[j] != 0 && ((float *)fa->data)[j] != 0;
                mask = both;
            } else mask = allow;
        } else bias = am;
    }
    memset(&opts, 0, sizeof opts);
    opts.mask = mask;
    opts.bias = bias;
    opts.dropout_p = nn_training() ? m->dropout : 0.0;
    o = nn_sdpa(q, k, v, &opts);                                  /* [B, H, Lq, E/H] */
    s[0] = B; s[1] = Lq; s[2] = E;
    o = nn_reshape(nn_permute(o, perm), 3, s);
    return nn_scope_end(nn_Linear_forward(&m->out_proj, o));
}

void nn_shutdown(void) {
    int d;
    while (nn__g.depth > 0) nn_scope_end(NULL);
    nn__tape_clear(0);
    nn__autocast_cache_clear();
    NN_FREE(nn__ac.cache);
    memset(&nn__ac, 0, sizeof nn__ac);
    nn__sgemm_free_cache();
    while (nn__g.spare_nodes) { nn_node *n = nn__g.spare_nodes; nn__g.spare_nodes = n->next_free; NN_FREE(n); }
    while (nn__g.spare) { nn_tensor *t = nn__g.spare; nn__g.spare = t->grad; NN_FREE(t); }
    for (d = 0; d < NN_DEVICE_COUNT; d++) if (nn__pools[d].limit_read || d == NN_CPU) nn_mem_trim((nn_device)d);
    while (nn__spare_storage) { nn_storage *s = nn__spare_storage; nn__spare_storage = s->next; NN_FREE(s); }
    NN_FREE(nn__g.scope); NN_FREE(nn__g.marks); NN_FREE(nn__g.tape);
    nn__g.scope = NULL; nn__g.marks = NULL; nn__g.tape = NULL;
    nn__g.scope_cap = nn__g.marks_cap = nn__g.tape_cap = 0;
}

#endif /* NN_IMPLEMENTATION_DONE */
#endif /* NN_IMPLEMENTATION */
