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
       [api:train]      AdamW, learning-rate schedules, gradient clipping, accumulation
       [api:io]         safetensors, .npy, checkpoints
       [api:amp]        dynamic loss scaling for f16 (autocast itself: [api:autograd])
       [api:internal]   what an op implementation needs (nn__ names)
     [shared]       pointwise loss formulas compiled for the CPU and, by nvcc, for the GPU
     [impl]         implementation (under NN_IMPLEMENTATION)
       [impl:errors] [impl:half] [impl:memory] [impl:tensors] [impl:rng] [impl:autograd]
       [ops:elementwise] [ops:reduce] [ops:norm] [ops:matmul] [ops:gemm] [ops:shape]
       [ops:attention] [ops:conv] [ops:index] [ops:loss]
       [impl:adamw] [impl:sched] [impl:clip] [impl:io] [impl:io:json] [impl:io:safetensors] [impl:io:npy]
       [impl:io:ckpt] [impl:amp] [modules]

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

/* Who holds the memory at the peak. After nn_mem_trace(dev, 1) every new peak of dev records the bytes in use
   by holder: tensors saved by tape nodes (per op), gradients waiting at nodes (per op), tensors owned by open
   scopes, the autocast weight-cast cache, the block whose allocation set the peak, the pool's size-class
   rounding, and "other" (parameters, their gradients, optimiser state, tensors the caller owns); and where the
   program was: "forward" or "backward of <op>". Holders are requested bytes and add up to the peak. A
   debugging aid: it walks the tape at every new peak, so leave it off in timed runs. */
#define NN_MEM_HOLDERS 24
typedef struct { char what[64]; size_t bytes; int64_t blocks; } nn_mem_holder;
typedef struct { size_t peak; char where[64]; int n; nn_mem_holder holder[NN_MEM_HOLDERS]; } nn_mem_breakdown;
void nn_mem_trace(nn_device dev, int on);
nn_mem_breakdown nn_mem_peak_breakdown(nn_device dev);   /* the breakdown at the last new peak */
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
/* copies host data into a new tensor on dev: on the GPU one host-to-device copy and no CPU tensor between
   (a data loader's batch: nn_to(nn_from_data(...)) would copy it twice) */
nn_tensor *nn_from_data_on(nn_device dev, nn_dtype dt, int ndim, const int64_t *shape, const void *src);
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
void nn_cuda_set_conv_tf32(int on);   /* f32 conv2d may use TF32 tensor cores; ON by default, as PyTorch's
                                         torch.backends.cudnn.allow_tf32. Off: f32-level accuracy (3xTF32) */

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

/* Where a step's time goes, op by op. Between nn_profile_begin(sync) and nn_profile_end() every op is timed:
   in forward, the time from one op's recording to the next goes to the later op (ops record in no-grad mode
   too); in backward, each node's backward function counts to its op, a checkpointed block's recomputation
   included. What runs between nn_backward and the next op (the optimiser, data loading, your code) goes to
   "(between steps)". sync = 1 waits for the GPU before each reading: true device times, but no overlap of
   launches with work; 0 times launches only. The clock is omp_get_wtime() under OpenMP, else clock() (CPU
   time: the wall time of a single-threaded build); define NN_CLOCK() (seconds, a double) to use your own.
   nn_profile_end() stops and returns the ops sorted by forward + backward time, the first NN_PROFILE_OPS
   distinct names kept (later ones go to "(other ops)"). bench/vit_train_bench --profile prints one. */
#define NN_PROFILE_OPS 64
typedef struct { const char *op; int64_t calls, bwd_calls; double fwd_s, bwd_s; } nn_profile_op;
typedef struct { double total_s; int n; nn_profile_op op[NN_PROFILE_OPS]; } nn_profile;
void nn_profile_begin(int sync);
nn_profile nn_profile_end(void);
/* prints p to stdout as a table per step (p covers `steps` steps): op, calls, forward ms, backward ms, share of
   the total; your title line goes before it */
void nn_profile_print(const nn_profile *p, int steps);

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
   dtype at forward time and recomputes under it.
   On the GPU the tensors are real: a listed op's inputs are cast to dt tensors (weights once per region, as
   above), its kernels take dt operands with f32 accumulation and return a dt tensor.
   Elementwise ops take f16/bf16 tensors and return torch's promoted dtype (bf16 op bf16 -> bf16, with an
   f32 operand -> f32), so a GELU between two linears stays bf16 as in torch; ops that compute in f32 (norms,
   softmax, reductions, losses) take f32. Gradients are f32 tensors throughout (more precise than torch's
   dt gradients; the GEMMs of backward read them converted to dt). */
void nn_autocast_begin(nn_dtype dt);
void nn_autocast_end(void);
nn_dtype nn_autocast_dtype(void);            /* the dtype in force: NN_F32 when autocast is off */
/* Under autocast on a device, one low-precision copy of an f32 activation that several listed ops will read (the
   q, k and v projections of self-attention): each would otherwise cast it again and keep its own copy for
   backward. Elsewhere (no autocast, or the CPU, whose autocast rounds in f32) x itself. Same values either way. */
nn_tensor *nn_autocast_shared(nn_tensor *x);
/* The dtype nn_autocast_shared gives an f32 tensor on dev: autocast's dtype on a device, f32 on the CPU or with
   autocast off. An op that can write its output in that dtype itself (nn_layer_norm_to) saves the f32 output and
   the cast's pass: nn_layer_norm_to(x, w, b, eps, nn_autocast_shared_dtype(x->device)) before the q, k, v or fc1
   projections equals nn_autocast_shared(nn_layer_norm(x, w, b, eps)). */
nn_dtype nn_autocast_shared_dtype(nn_device dev);

/* ============================================================================================== [api:ops] */

/* elementwise, broadcasting like numpy/torch */
nn_tensor *nn_add(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_sub(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_mul(nn_tensor *a, nn_tensor *b);
nn_tensor *nn_div(nn_tensor *a, nn_tensor *b);
/* x + h * w (torch.addcmul(x, h, w)), the three broadcast together, in one pass: the residual add of a LayerScale
   branch (x + h * lambda) without the product's tensor. Computed in f32, the product rounded to f32 before the
   sum (no fused multiply-add: equal to nn_add(x, nn_mul(h, w)) where nn_mul returns f32), the result rounded
   once to torch's promoted dtype of the three (all one dtype keeps it, mixed gives f32). Backward: x receives
   the gradient itself, h the gradient times w (in h's dtype), w the sum of gradient times h; with h of the
   output's shape and w one row along the last dim (lambda [C]) the GPU reads the gradient and h once for both. */
nn_tensor *nn_addcmul(nn_tensor *x, nn_tensor *h, nn_tensor *w);
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
/* the same with the output in dt (f32, f16 or bf16), bit for bit nn_cast(nn_layer_norm(x, w, b, eps), dt) without
   the f32 output and the cast's pass; its backward reads the dt gradient as it comes (no cast pass either) */
nn_tensor *nn_layer_norm_to(nn_tensor *x, nn_tensor *w, nn_tensor *b, double eps, nn_dtype dt);
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
/* The same attention with the heads packed in the last dim, as linear layers leave them: q [B,Lq,heads*D],
   k [B,Lk,heads*D], v [B,Lk,heads*Dv] -> [B,Lq,heads*Dv]. Equal to splitting each into [B,heads,L,D] (reshape,
   permute(0,2,1,3)), nn_sdpa, and merging back; mask and bias still broadcast to [B,heads,Lq,Lk]. On the GPU the
   kernels read and write this layout in place (as PyTorch's SDPA takes transposed views), so neither forward nor
   backward copies heads around: multi-head attention's four permute copies and their four gradients are gone. */
nn_tensor *nn_sdpa_heads(nn_tensor *q, nn_tensor *k, nn_tensor *v, int heads, const nn_sdpa_opts *opts);
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
/* Move every parameter (and its gradient) to dev in place: the tensor headers stay, so modules that hold
   them see the new device; create the optimiser after the move (its state lives where the parameters do) */
void nn_params_to(nn_params *p, nn_device dev);
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
    nn_tensor **moments;   /* device parameters: the pool tensors behind exp_avg[k] (2k) and exp_avg_sq[k]
                              (2k+1), on the parameter's device; NULL for CPU parameters */
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
    const char *prefix;       /* registry name = prefix + file key, e.g. "encoder." to load a backbone's hub
                                 file into a bigger model; registry names without it are left alone (NULL: "") */
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
    const char *scaler;   /* save: the loss scaler's nn_scaler_state text, may be NULL (metadata "scaler");
                             load: a malloc'd copy or NULL when the file has none: nn_scaler_load_state it */
    nn_rng_state rng;     /* load: the restored RNG state (save ignores it: it stores nn_rng_get()) */
} nn_ckpt_info;
void nn_ckpt_save(const char *path, const nn_params *P, const nn_adamw *opt, const nn_sched *sched,
                  const nn_ckpt_info *info);
void nn_ckpt_load(const char *path, nn_params *P, nn_adamw *opt, nn_sched *sched, nn_ckpt_info *info);
void nn_ckpt_info_free(nn_ckpt_info *info);

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
void nn__check_float(const char *op, const nn_tensor *t, const char *what);
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
   AdamW with [impl:adamw]'s arithmetic (steps[k] already incremented, wd[k] per parameter), and global-norm
   clipping that never returns to the host per tensor (max_norm < 0: the norm only) */
void nn__cuda_adamw_multi(int n, float *const *p, const float *const *g, float *const *m, float *const *v,
                          const int64_t *numel, const int64_t *steps, const double *wd, double lr, double beta1,
                          double beta2, double eps, int maximize);
float nn__cuda_clip_grad_norm(int n, float *const *g, const int64_t *numel, double max_norm);
int nn__cuda_unscale_multi(int n, float *const *g, const int64_t *numel, float inv);   /* returns found_inf */
#endif
/* nn_sdpa on the GPU (nn_cuda.cu, section sdpa). q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv] -> o [B,H,Lq,Dv], lse
   [B,H,Lq] f32; every tensor addressed through element strides (batch, head, row; last dim contiguous), mask and
   bias through broadcast strides of [B,H,Lq,Lk] (0 on broadcast dims). f16/bf16 need D, Dv multiples of 8 (at
   most 128) and 16-byte aligned rows; f32 (the checking path) takes D, Dv <= 256. dbias (f32, the bias's
   strides) receives the gradient summed over every broadcast dimension. */
typedef struct {
    int dtype;                       /* 0 f32, 1 f16, 2 bf16: q, k, v, o, dout, dq, dk, dv */
    int B, H, Lq, Lk, D, Dv;
    const void *q, *k, *v;
    int64_t sq[3], sk[3], sv[3];
    void *o;                         /* forward: written; backward: read */
    int64_t so[3];
    float *lse;                      /* forward writes, backward reads */
    const uint8_t *mask;             /* optional, nonzero = attend */
    int64_t ms[4];
    const void *bias;                /* optional additive scores */
    int bias_dtype;                  /* 0 f32, else the q dtype */
    int64_t bs[4];
    int causal;
    float scale;                     /* resolved (0 is not 1/sqrt(D) here) */
    float dropout_p;
    uint64_t seed, offset;           /* Philox key and the offset reserved for the B*H*Lq*Lk draws */
    const void *dout;                /* backward: dL/do (q dtype, or f32 with dout_f32), strides sdo */
    int64_t sdo[3];
    void *dq, *dk, *dv;              /* optional outputs (q dtype, or f32 with grad_f32) */
    int64_t sdq[3], sdk[3], sdv[3];
    float *dbias;                    /* optional */
    int dout_f32, grad_f32;          /* f16/bf16: dout is f32 / dq, dk, dv are f32 (no cast passes around the op) */
} nn__cuda_sdpa_args;
#if defined(NN_CUDA) || defined(__CUDACC__)
void nn__cuda_sdpa_fwd(const nn__cuda_sdpa_args *a);
void nn__cuda_sdpa_bwd(const nn__cuda_sdpa_args *a);
#endif

#ifdef __cplusplus
}
#endif
#endif /* NN_H */

/* ################################################################################################ [shared] */
/* The pointwise loss formulas, written once: the CPU ops in [ops:loss] and their kernels in nn_cuda.cu both
   call these (nvcc compiles them for host and device through NN__HD). Internal (nn__), not API; seen only by
   the implementation and by nvcc. */
#if (defined(NN_IMPLEMENTATION) || defined(__CUDACC__)) && !defined(NN__SHARED_DONE)
#define NN__SHARED_DONE
#include <math.h>
#ifdef __CUDACC__
#define NN__HD static inline __host__ __device__
#else
#define NN__HD static inline
#endif

/* mse, l1 and smooth_l1 share one pointwise kernel. kind 0: (p-t)^2; 1: |p-t|;
   2: smooth_l1 with beta > 0: 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta (torch's definition;
   beta = 0 is l1, as torch does). Reduction: mean over all elements. */
enum { NN__IL_MSE, NN__IL_L1, NN__IL_SMOOTH_L1 };

NN__HD double nn__il_reg_loss(int kind, double d, double beta) {
    double ad = fabs(d);
    if (kind == NN__IL_MSE) return d * d;
    if (kind == NN__IL_L1) return ad;
    return ad < beta ? 0.5 * d * d / beta : ad - 0.5 * beta;
}

/* derivative in d; sign(0) = 0 as torch */
NN__HD double nn__il_reg_dloss(int kind, double d, double beta) {
    double sg = d > 0 ? 1.0 : (d < 0 ? -1.0 : 0.0);
    if (kind == NN__IL_MSE) return 2.0 * d;
    if (kind == NN__IL_L1) return sg;
    return fabs(d) < beta ? d / beta : sg;
}

/* softplus(-x) = log(1 + e^-x) = max(-x, 0) + log1p(e^-|x|): no overflow, full precision both ways */
NN__HD double nn__il_softplus_neg(double x) { return (x < 0 ? -x : 0.0) + log1p(exp(-fabs(x))); }
/* sigmoid(x) without overflow */
NN__HD double nn__il_sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    { double e = exp(x); return e / (1.0 + e); }
}

/* sigmoid_focal_loss, torchvision.ops.sigmoid_focal_loss (torchvision/ops/focal_loss.py):
       p = sigmoid(x), ce = bce_with_logits(x, y) = softplus(-x) + (1 - y) x,
       m = 1 - p_t = p (1 - y) + (1 - p) y,   loss = ce * m^gamma * a_t,
       a_t = alpha y + (1 - alpha)(1 - y) when alpha >= 0, else 1.
   m is formed from p and 1 - p = sigmoid(-x) each computed directly, so it keeps full relative precision
   when p is near 0 or 1. Derivatives: dce/dx = p - y, dce/dy = -x; dm/dx = p (1 - p)(1 - 2y),
   dm/dy = 1 - 2p; d m^gamma/dm = gamma m^(gamma-1), taken as 0 when gamma = 0 (as torch's pow backward);
   da_t/dy = 2 alpha - 1. */
NN__HD void nn__il_focal_terms(double x, double y, double alpha, double gamma, double *loss, double *dx,
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
#endif /* NN__SHARED_DONE */

/* ################################################################################################ [impl] */
#ifdef NN_IMPLEMENTATION
#ifndef NN_IMPLEMENTATION_DONE
#define NN_IMPLEMENTATION_DONE

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <time.h>
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

/* Below this many elements a loop stays on one thread: an OpenMP fork/join costs a few microseconds, about
   what this many simple element operations take. Every elementwise, reduction and per-parameter loop uses it
   (the GEMM has its own threshold in multiply-adds, NN_GEMM_PARALLEL_MIN). OpenMP clauses macro-expand it. */
#define NN__PAR_MIN 32768

/* Hot inner kernels must come out the same at -O2 as at -O3: GCC 12 at -O2 neither inlines a mid-sized
   static function into a loop (so "omp simd" over nn__exp_nonpos stayed scalar calls) nor fully unrolls the
   micro-kernel's row loop (so its 24 vector accumulators lived in memory). Measured on the part_location
   tiny training step, 2 cores: -O2 12.3 it/s, -O3 18.7 it/s before these two hints (2026-12-06). */
#if defined(__GNUC__)
#define NN__ALWAYS_INLINE __attribute__((always_inline)) inline
#define NN__PRAGMA(x) _Pragma(#x)
#define NN__UNROLL(n) NN__PRAGMA(GCC unroll n)
#else
#define NN__ALWAYS_INLINE
#define NN__UNROLL(n)
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
/* elementwise ops take f32, f16 and bf16 (autocast hands them low-precision tensors) */
void nn__check_float(const char *op, const nn_tensor *t, const char *what) {
    if (!t) nn_error("%s: %s is NULL", op, what);
    if (t->dtype != NN_F32 && t->dtype != NN_F16 && t->dtype != NN_BF16)
        nn_error("%s: %s must be f32, f16 or bf16, got %s %s", op, what, nn_dtype_name(t->dtype), nn__s(t));
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
/* A caching pool per device. A request is rounded up to a size class (16 classes per power of two, so at
   most 6.25% slack; 512 bytes at least, like PyTorch's caching allocator) and served from that class's free
   list when it can: a training loop that repeats the same shapes stops calling malloc after step one.
   Storage descriptors live on the host for every device, so the same code manages GPU memory through two
   hooks (nn__cuda_malloc / nn__cuda_free, in nn_cuda.cu). */

struct nn_storage {
    void *ptr;          /* 64-byte aligned data */
    void *raw;          /* what the system allocator returned */
    size_t bytes;       /* the class size */
    size_t want;        /* the bytes asked for */
    uint64_t mark;      /* nn_mem_trace's visit stamp */
    int cls;
    nn_device device;
    int refs;
    nn_storage *next;   /* free list */
};

#define NN__NCLASS 1024
typedef struct {
    nn_storage *free_list[NN__NCLASS];
    nn_mem_info info;
    int limit_read;
    size_t want_current;        /* bytes asked for by the live blocks (info.current less the rounding) */
    int trace;                  /* nn_mem_trace */
    nn_mem_breakdown at_peak;
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
    q = (n - ((size_t)1 << k) + ((size_t)1 << (k - 4)) - 1) >> (k - 4);  /* sixteenths of 2^k above 2^k: 1..16 */
    *rounded = ((size_t)1 << k) + (q << (k - 4));
    return 1 + (k - 9) * 16 + (int)(q - 1);
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

static void nn__mem_snapshot(nn_device dev, const nn_storage *fresh);   /* [impl:autograd]: it walks the tape */

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
    s->want = n;
    p->info.current += bytes;
    p->want_current += n;
    if (p->info.current > p->info.peak) {
        p->info.peak = p->info.current;
        if (p->trace) nn__mem_snapshot(dev, s);
    }
    return s;
}

static void nn__storage_release(nn_storage *s) {
    nn__pool *p;
    if (!s || --s->refs > 0) return;
    p = nn__pool_of(s->device);
    p->info.current -= s->bytes;
    p->want_current -= s->want;
    p->info.cached += s->bytes;
    s->next = p->free_list[s->cls];
    p->free_list[s->cls] = s;
}

nn_mem_info nn_mem_stats(nn_device dev) { return nn__pool_of(dev)->info; }
void nn_mem_reset_peak(nn_device dev) { nn__pool *p = nn__pool_of(dev); p->info.peak = p->info.current; }
void nn_mem_set_limit(nn_device dev, size_t bytes) { nn__pool_of(dev)->info.limit = bytes; }
void nn_mem_trace(nn_device dev, int on) { nn__pool_of(dev)->trace = on; }
nn_mem_breakdown nn_mem_peak_breakdown(nn_device dev) { return nn__pool_of(dev)->at_peak; }

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
    const char *backward_op;          /* the node whose backward runs (nn_mem_trace's "where") */
    struct { int on, sync, after_backward; double start, last; nn_profile table; } prof;   /* nn_profile_begin */
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
void nn__cuda_set_conv_tf32(int on);
int nn_cuda_available(void) { return nn__cuda_available(); }
void nn_cuda_synchronize(void) { nn__cuda_synchronize(); }
void nn_cuda_set_tf32(int on) { nn__cuda_set_tf32(on); }
void nn_cuda_set_conv_tf32(int on) { nn__cuda_set_conv_tf32(on); }
#else
int nn_cuda_available(void) { return 0; }
void nn_cuda_synchronize(void) {}
void nn_cuda_set_tf32(int on) { (void)on; }
void nn_cuda_set_conv_tf32(int on) { (void)on; }
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

nn_tensor *nn_from_data_on(nn_device dev, nn_dtype dt, int ndim, const int64_t *shape, const void *src) {
    nn_tensor *t;
    if (dev == NN_CPU) return nn_from_data(dt, ndim, shape, src);
    t = nn__new(dt, dev, ndim, shape);
    if (t->numel && !src) nn_error("nn_from_data_on: source is NULL for %s", nn__s(t));
#ifdef NN_CUDA
    if (t->numel) nn__cuda_memcpy(t->data, src, (size_t)t->numel * nn_dtype_size(dt), 0);
#endif
    return t;
}

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

/* ---- the op profiler (nn_profile_begin) ---- */
static double nn__profile_now(void) {
#ifdef NN_CUDA
    if (nn__g.prof.sync) nn__cuda_synchronize();
#endif
#if defined(NN_CLOCK)
    return NN_CLOCK();
#elif defined(_OPENMP)
    return omp_get_wtime();
#else
    return (double)clock() / CLOCKS_PER_SEC;
#endif
}

static nn_profile_op *nn__profile_entry(const char *op) {
    nn_profile *t = &nn__g.prof.table;
    int i;
    for (i = 0; i < t->n; i++) if (!strcmp(t->op[i].op, op)) return &t->op[i];
    if (t->n == NN_PROFILE_OPS - 1 && strcmp(op, "(other ops)")) return nn__profile_entry("(other ops)");
    memset(&t->op[t->n], 0, sizeof t->op[0]);
    t->op[t->n].op = op;
    return &t->op[t->n++];
}

/* forward: the time since the last reading goes to op */
static void nn__profile_fwd(const char *op) {
    double now = nn__profile_now();
    nn_profile_op *e = nn__profile_entry(nn__g.prof.after_backward ? "(between steps)" : op);
    e->fwd_s += now - nn__g.prof.last;
    e->calls++;
    if (nn__g.prof.after_backward) { e = nn__profile_entry(op); e->calls++; }   /* the op itself: no time measured */
    nn__g.prof.after_backward = 0;
    nn__g.prof.last = now;
}

void nn_profile_begin(int sync) {
    memset(&nn__g.prof, 0, sizeof nn__g.prof);
    nn__g.prof.sync = sync;
    nn__g.prof.on = 1;
    nn__g.prof.after_backward = 1;   /* until the first op: "between steps" */
    nn__g.prof.start = nn__g.prof.last = nn__profile_now();
}

static int nn__profile_cmp(const void *a, const void *b) {
    const nn_profile_op *x = (const nn_profile_op *)a, *y = (const nn_profile_op *)b;
    double tx = x->fwd_s + x->bwd_s, ty = y->fwd_s + y->bwd_s;
    return tx > ty ? -1 : tx < ty;
}

nn_profile nn_profile_end(void) {
    nn_profile t;
    if (!nn__g.prof.on) nn_error("nn_profile_end: no nn_profile_begin before it");
    t = nn__g.prof.table;
    t.total_s = nn__profile_now() - nn__g.prof.start;
    nn__g.prof.on = 0;
    qsort(t.op, (size_t)t.n, sizeof t.op[0], nn__profile_cmp);
    return t;
}

void nn_profile_print(const nn_profile *p, int steps) {
    double sum = 0, n = steps > 0 ? steps : 1, total = p->total_s > 0 ? p->total_s : 1;
    int i;
    printf("  %-28s %8s %10s %10s %6s\n", "op", "calls", "fwd ms", "bwd ms", "share");
    for (i = 0; i < p->n; i++) {
        const nn_profile_op *o = &p->op[i];
        sum += o->fwd_s + o->bwd_s;
        printf("  %-28s %8.1f %10.3f %10.3f %5.1f%%\n", o->op, (double)o->calls / n, 1e3 * o->fwd_s / n,
               1e3 * o->bwd_s / n, 100 * (o->fwd_s + o->bwd_s) / total);
    }
    printf("  (calls and times per step over %d; the rows add up to %.1f%% of the total)\n", steps, 100 * sum / total);
}

nn_node *nn__record(const char *op, nn__backward_fn bw, int n_in, nn_tensor **in, int n_out, nn_tensor **out) {
    nn_node *n;
    int i, any = 0;
    if (nn__g.prof.on && !nn__g.in_backward) nn__profile_fwd(op);
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

static void nn__add_into(nn_tensor *dst, const nn_tensor *src);   /* dst += src, same numel */

/* add g into the gradient slot *slot (which holds a tensor of `shape` or NULL). A gradient has its tensor's
   dtype, dt, as in torch: f32 for parameters and f32 activations, f16/bf16 for autocast's low-precision
   activations (half the bytes of the backward's largest buffers); sums of two are taken in f32. */
static void nn__accumulate_slot(nn_tensor **slot, nn_tensor *g, int ndim, const int64_t *shape, nn_dtype dt, int leaf,
                                int may_take) {
    nn_tensor *r;
    if (!nn_dtype_is_float(dt)) dt = NN_F32;
    r = nn__sum_to(g, ndim, shape);
    if (r->dtype != dt) r = nn_cast(r, dt);
    if (!*slot) {
        if (may_take && r->refs == 1 && r->scope_slot >= 0 && r->storage->refs == 1 && r->scope_slot < nn__g.scope_n &&
            nn__g.scope[r->scope_slot] == r) {
            /* nobody else holds it: take it from its scope instead of copying */
            nn__g.scope[r->scope_slot] = NULL;
            r->scope_slot = -1;
            *slot = r;
        } else if (leaf) {                                   /* a private copy: the leaf owns its gradient */
            nn_tensor *c = nn__owned(dt, r->device, ndim, shape);
            nn_copy_(c, r);
            *slot = c;
        } else {
            *slot = nn_retain(r);                            /* shared read-only until a second gradient comes */
        }
    } else if ((*slot)->refs == 1 && (*slot)->storage->refs == 1) {
        nn__add_into(*slot, r);
    } else {                                                 /* shared: replace, never write through */
        nn_tensor *c = nn__owned(dt, r->device, ndim, shape);
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
    if (e->leaf) nn__accumulate_slot(&e->leaf->grad, g, e->ndim, e->shape, e->dtype, 1, 1);
    else if (e->node && e->node->id) nn__accumulate_slot(&e->node->gout[e->out], g, e->ndim, e->shape, e->dtype, 0, 1);
}

/* start backward at t with gradient g */
static void nn__seed(const char *op, nn_tensor *t, nn_tensor *g) {
    if (g->numel != t->numel)
        nn_error("%s: gradient %s does not match output %s", op, nn__s(g), nn__s(t));
    if (t->node) {
        if (!nn__node_live(t))
            nn_error("%s: the tape that produced %s was already consumed by an earlier nn_backward, or its "
                     "outermost scope closed", op, nn__s(t));
        nn__accumulate_slot(&t->node->gout[t->node_out], g, t->ndim, t->shape, t->dtype, 0, 0);   /* the caller's: never taken */
    } else if (t->requires_grad) {
        nn__accumulate_slot(&t->grad, g, t->ndim, t->shape, t->dtype, 1, 0);
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
            const char *prev_op = nn__g.backward_op;
            /* the outermost tape only: a checkpoint's inner tape is part of its node's backward */
            int timed = nn__g.prof.on && !prev_in;
            double t0 = timed ? nn__profile_now() : 0;
            nn__g.backward_op = n->op;
            nn_scope_begin();
            n->backward(n);
            nn_scope_end(NULL);
            nn__g.backward_op = prev_op;
            if (timed) {
                nn_profile_op *e = nn__profile_entry(n->op);
                nn__g.prof.last = nn__profile_now();
                e->bwd_s += nn__g.prof.last - t0;
                e->bwd_calls++;
            }
        }
        nn__node_release(n);
    }
    nn__g.tape_n = base;
    if (nn__g.prof.on && !prev_in) nn__g.prof.after_backward = 1;   /* what follows is the step's tail */
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

nn_dtype nn_autocast_shared_dtype(nn_device dev) { return dev != NN_CPU ? nn__ac.cur : NN_F32; }

nn_tensor *nn_autocast_shared(nn_tensor *x) {
    if (x && x->dtype == NN_F32 && nn_autocast_shared_dtype(x->device) != NN_F32) return nn_cast(x, nn__ac.cur);
    return x;
}

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
        NN_OMP("omp parallel for if (n > NN__PAR_MIN)")
        for (i = 0; i < n; i++) d[i] = nn__bf16_to_f32(nn__f32_to_bf16(s[i]));
    } else {
        NN_OMP("omp parallel for if (n > NN__PAR_MIN)")
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

/* the operand in dt: on the CPU an f32 tensor holding dt's values (the kernels are f32), on a device a real
   dt tensor (its kernels take f16/bf16 operands and accumulate in f32) */
static nn_tensor *nn__autocast_make(nn_tensor *x, nn_dtype dt) {
    return x->device == NN_CPU ? nn__autocast_round(x, dt) : nn_cast(x, dt);
}

nn_tensor *nn__autocast_arg(nn_tensor *x, nn_dtype dt) {
    int i, cacheable;
    nn_tensor *r;
    if (!x || x->dtype != NN_F32 || dt == NN_F32) return x;   /* the op itself reports wrong dtypes */
    cacheable = nn__ac.depth > 0 && !x->node && x->requires_grad;
    if (cacheable)
        for (i = 0; i < nn__ac.n; i++) {
            nn__ac_entry *e = &nn__ac.cache[i];
            if (e->key != x || e->dt != dt) continue;
            /* with grad on the copy must still be on the tape (after a backward, or when it was made with
               grad off inside a checkpointed forward, it is recast and replaced) */
            if (!nn_grad_enabled() || nn__tracks(e->val)) return e->val;
            r = nn__autocast_make(x, dt);
            nn__release(e->val);
            e->val = nn_retain(r);
            return r;
        }
    r = nn__autocast_make(x, dt);
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
    /* on a device the op already returns dt (its kernels write dt: GEMMs, conv2d, sdpa) */
    if (y && y->dtype == NN_F32 && dt != NN_F32 && y->device == NN_CPU) {
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

/* nn_mem_trace's snapshot at a new peak of dev: every block in use is counted once, by the first holder found
   in this order: the fresh block, tape nodes (saved tensors, then waiting gradients), the autocast cache, open
   scopes; what no holder reaches is "other". Holders are keyed by (kind, op name); the largest are kept. */
typedef struct { int kind; const char *op; size_t bytes; int64_t blocks; } nn__mem_key;
static const char *const nn__mem_kind_name[] = {"new block", "saved by ", "gradient at ", "autocast weight casts",
                                                "scope tensors"};
static uint64_t nn__mem_epoch;

static void nn__mem_count(nn__mem_key *keys, int *nk, int cap, nn_device dev, int kind, const char *op,
                          const nn_tensor *t, size_t *counted) {
    nn_storage *st = t ? t->storage : NULL;
    int i;
    if (!st || st->device != dev || st->mark == nn__mem_epoch) return;
    st->mark = nn__mem_epoch;
    *counted += st->want;
    for (i = 0; i < *nk; i++) if (keys[i].kind == kind && keys[i].op == op) break;
    if (i == *nk) {
        if (*nk == cap) { *counted -= st->want; return; }   /* table full: left to "other" */
        keys[i].kind = kind; keys[i].op = op; keys[i].bytes = 0; keys[i].blocks = 0; (*nk)++;
    }
    keys[i].bytes += st->want;
    keys[i].blocks++;
}

static int nn__mem_key_cmp(const void *a, const void *b) {
    size_t x = ((const nn__mem_key *)a)->bytes, y = ((const nn__mem_key *)b)->bytes;
    return x < y ? 1 : x > y ? -1 : 0;
}

static void nn__mem_snapshot(nn_device dev, const nn_storage *fresh) {
    nn__pool *p = &nn__pools[dev];
    nn_mem_breakdown *b = &p->at_peak;
    nn__mem_key keys[256];
    nn_tensor fake;
    size_t counted = 0;
    int nk = 0, i, k;
    nn__mem_epoch++;
    memset(&fake, 0, sizeof fake);
    fake.storage = (nn_storage *)fresh;
    nn__mem_count(keys, &nk, 256, dev, 0, NULL, &fake, &counted);
    for (i = 0; i < nn__g.tape_n; i++) {
        nn_node *n = nn__g.tape[i];
        for (k = 0; k < n->n_saved; k++) nn__mem_count(keys, &nk, 256, dev, 1, n->op, n->saved[k], &counted);
    }
    for (i = 0; i < nn__g.tape_n; i++) {
        nn_node *n = nn__g.tape[i];
        for (k = 0; k < n->n_out; k++) nn__mem_count(keys, &nk, 256, dev, 2, n->op, n->gout[k], &counted);
    }
    for (i = 0; i < nn__ac.n; i++) nn__mem_count(keys, &nk, 256, dev, 3, NULL, nn__ac.cache[i].val, &counted);
    for (i = 0; i < nn__g.scope_n; i++) nn__mem_count(keys, &nk, 256, dev, 4, NULL, nn__g.scope[i], &counted);
    qsort(keys, (size_t)nk, sizeof keys[0], nn__mem_key_cmp);
    b->peak = p->info.current;
    snprintf(b->where, sizeof b->where, "%s%s", nn__g.backward_op ? "backward of " : "forward",
             nn__g.backward_op ? nn__g.backward_op : "");
    b->n = 0;
    for (i = 0; i < nk && b->n < NN_MEM_HOLDERS - 2; i++, b->n++) {
        snprintf(b->holder[b->n].what, sizeof b->holder[0].what, "%s%s", nn__mem_kind_name[keys[i].kind],
                 keys[i].op ? keys[i].op : "");
        b->holder[b->n].bytes = keys[i].bytes;
        b->holder[b->n].blocks = keys[i].blocks;
    }
    for (; i < nk; i++) counted -= keys[i].bytes;   /* holders past the table's end join "other" */
    snprintf(b->holder[b->n].what, sizeof b->holder[0].what, "other (parameters, gradients, optimiser, caller's)");
    b->holder[b->n].bytes = p->want_current - counted;
    b->holder[b->n++].blocks = -1;
    snprintf(b->holder[b->n].what, sizeof b->holder[0].what, "pool size-class rounding");
    b->holder[b->n].bytes = p->info.current - p->want_current;
    b->holder[b->n++].blocks = -1;
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
void nn__cuda_sum_to(const nn_tensor *g, nn_tensor *out);   /* g f32, f16 or bf16; out f32 */
void nn__cuda_add_into(nn_tensor *dst, const nn_tensor *src);
void nn__cuda_addcmul_fwd(const nn_tensor *x, const nn_tensor *h, const nn_tensor *w, nn_tensor *o);
/* h has g's shape, w holds C values (C = g's last dim); dh (h's dtype, or NULL) = g * w, dw (C f32, or NULL) = the
   column sums of g * h */
void nn__cuda_addcmul_bwd(const nn_tensor *g, const nn_tensor *h, const nn_tensor *w, nn_tensor *dh, nn_tensor *dw);
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
/* [ops:conv] */
/* conv2d: f32, or f16/bf16 weights with y, b in their dtype and x in it or f32. x_keep (may be NULL) receives an
   NHWC copy of x that the backward reads instead of x (NULL when it needs x itself) */
void nn__cuda_conv2d_fwd(const nn_tensor *x, const nn_tensor *w, const nn_tensor *b, const int stride[2],
                         const int padding[2], const int dilation[2], int groups, nn_tensor *y, nn_tensor **x_keep);
void nn__cuda_conv2d_bwd(const nn_tensor *gy, const nn_tensor *x, const nn_tensor *x_keep, const int64_t x_shape[4],
                         const nn_tensor *w, const int stride[2], const int padding[2], const int dilation[2], int groups,
                         nn_tensor *gx, nn_tensor *gw, nn_tensor *gb);
void nn__cuda_group_norm_fwd(const nn_tensor *x, int64_t G, const nn_tensor *w, const nn_tensor *b, double eps,
                             nn_tensor *y, nn_tensor *mean, nn_tensor *rstd);
void nn__cuda_group_norm_bwd(const nn_tensor *g, const nn_tensor *x, int64_t G, const nn_tensor *w, const nn_tensor *mean,
                             const nn_tensor *rstd, nn_tensor *gx, nn_tensor *gw, nn_tensor *gb);
void nn__cuda_upsample_nearest2d_fwd(const nn_tensor *x, nn_tensor *y);
void nn__cuda_upsample_nearest2d_bwd(const nn_tensor *g, nn_tensor *gx);
void nn__cuda_avg_pool2d_fwd(const nn_tensor *x, int kernel, int stride, int padding, nn_tensor *y);
void nn__cuda_avg_pool2d_bwd(const nn_tensor *g, int kernel, int stride, int padding, nn_tensor *gx);
void nn__cuda_adaptive_avg_pool2d_fwd(const nn_tensor *x, nn_tensor *y);
void nn__cuda_adaptive_avg_pool2d_bwd(const nn_tensor *g, nn_tensor *gx);
#endif

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
#define NN__FLAT(EXPR) NN_OMP("omp parallel for if (n > NN__PAR_MIN)") for (i = 0; i < n; i++) po[i] = EXPR; break;
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
    NN_OMP("omp parallel for if (o->numel > NN__PAR_MIN)") \
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
    /* a f16/bf16 gradient is reduced in f32 (the GPU's reduction reads it as it is) */
    if (g->dtype != NN_F32 && g->device == NN_CPU) g = nn_cast(g, NN_F32);
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
    if (dst->dtype != NN_F32 || src->dtype != NN_F32) {   /* f16/bf16 gradients: added in f32, rounded once */
        for (i = 0; i < n; i++)
            nn__store(dst->data, dst->dtype, i, (double)((float)nn__load(dst->data, dst->dtype, i) + (float)nn__load(src->data, src->dtype, i)));
        return;
    }
    NN_OMP("omp parallel for if (n > NN__PAR_MIN)")
    for (i = 0; i < n; i++) d[i] += s[i];
}

static const char *nn__binary_name[] = {"nn_add", "nn_sub", "nn_mul", "nn_div"};

static nn_tensor *nn__binary(int op, nn_tensor *a, nn_tensor *b);

/* g * other, the gradient of mul's input i. On the GPU, when input i has g's shape (nothing to sum) and a
   low-precision dtype, the product is written in that dtype directly: the value nn__accumulate's cast would
   give (one rounding of the f32 product), without the cast's pass over memory. */
static nn_tensor *nn__mul_grad(nn_node *n, int i, nn_tensor *g, nn_tensor *other) {
#ifdef NN_CUDA
    const nn__edge *e = &n->in[i];
    int d, same = g->device == NN_CUDA && other->device == NN_CUDA && (e->dtype == NN_F16 || e->dtype == NN_BF16) &&
                  e->ndim == g->ndim;
    for (d = 0; same && d < g->ndim; d++) same = e->shape[d] == g->shape[d];
    if (same) {
        nn_tensor *o = nn__new(e->dtype, NN_CUDA, g->ndim, g->shape);
        nn__cuda_binary_fwd(NN__MUL, g, other, o);
        return o;
    }
#endif
    (void)n; (void)i;
    return nn_mul(g, other);
}

static void nn__binary_backward(nn_node *n) {
    nn_tensor *g = n->gout[0];
    int op = (int)n->i[0];
    if (op == NN__ADD || op == NN__SUB) {
        nn__accumulate(n, 0, g);
        if (nn__needs_grad(n, 1)) nn__accumulate(n, 1, op == NN__ADD ? g : nn_neg(g));
    } else if (op == NN__MUL) {
        if (nn__needs_grad(n, 0)) nn__accumulate(n, 0, nn__mul_grad(n, 0, g, n->saved[1]));
        if (nn__needs_grad(n, 1)) nn__accumulate(n, 1, nn__mul_grad(n, 1, g, n->saved[0]));
    } else {
        nn_tensor *gb = nn_div(g, n->saved[1]);          /* g / b */
        if (nn__needs_grad(n, 0)) nn__accumulate(n, 0, gb);
        if (nn__needs_grad(n, 1)) nn__accumulate(n, 1, nn_neg(nn_div(nn_mul(gb, n->saved[0]), n->saved[1])));
    }
}

/* f16/bf16 operands (autocast's outputs): the result has torch's promoted dtype (equal dtypes keep theirs, f32
   with either gives f32, f16 with bf16 gives f32); values are computed in f32. The CUDA kernels read and write
   the low-precision types directly; the CPU goes through f32 copies (nn_cast, so gradients flow as usual). */
static nn_dtype nn__promote(nn_dtype a, nn_dtype b) { return a == b ? a : NN_F32; }
static nn_tensor *nn__as_f32(nn_tensor *t) { return t->dtype == NN_F32 ? t : nn_cast(t, NN_F32); }
/* ops that compute in f32 (reductions, softmax, norms, losses: torch autocast's f32 list) take an f16/bf16
   input by casting it first */
static nn_tensor *nn__f32_input(const char *op, nn_tensor *x, const char *what) {
    nn__check_float(op, x, what);
    return nn__as_f32(x);
}

static nn_tensor *nn__binary(int op, nn_tensor *a, nn_tensor *b) {
    const char *name = nn__binary_name[op];
    int64_t shape[NN_MAX_DIMS];
    int nd;
    nn_tensor *o, *in[2];
    nn_node *n;
    nn_dtype od;
    nn__check_float(name, a, "a");
    nn__check_float(name, b, "b");
    nn__check_same_device(name, a, b);
    nd = nn__broadcast_shape(name, a, b, shape);
    od = nn__promote(a->dtype, b->dtype);
    if (a->device == NN_CPU && (a->dtype != NN_F32 || b->dtype != NN_F32)) {
        o = nn__binary(op, nn__as_f32(a), nn__as_f32(b));
        return od == NN_F32 ? o : nn_cast(o, od);
    }
    o = nn__new(od, a->device, nd, shape);
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

/* addcmul: out = x + h * w. The product is stored to a float before the sum: as ISO C (-std=c99) the compiler
   does not contract the two into a fused multiply-add, so the values are nn_add(x, nn_mul(h, w))'s. */
static void nn__addcmul_cpu(const nn_tensor *x, const nn_tensor *h, const nn_tensor *w, nn_tensor *o) {
    const float *px = (const float *)x->data, *ph = (const float *)h->data, *pw = (const float *)w->data;
    float *po = (float *)o->data;
    int nd = o->ndim;
    int64_t sx[NN_MAX_DIMS], sh[NN_MAX_DIMS], sw[NN_MAX_DIMS], inner, rows, r;
    if (nd == 0 || (x->numel == o->numel && h->numel == o->numel && w->numel == o->numel)) {
        int64_t n = o->numel, i;
        NN_OMP("omp parallel for if (n > NN__PAR_MIN)")
        for (i = 0; i < n; i++) { float p = ph[i] * pw[i]; po[i] = px[i] + p; }
        return;
    }
    nn__bcast_strides(x->ndim, x->shape, nd, o->shape, sx);
    nn__bcast_strides(h->ndim, h->shape, nd, o->shape, sh);
    nn__bcast_strides(w->ndim, w->shape, nd, o->shape, sw);
    inner = o->shape[nd - 1];
    rows = inner ? o->numel / inner : 0;
    NN_OMP("omp parallel for if (o->numel > NN__PAR_MIN)")
    for (r = 0; r < rows; r++) {
        const float *a = px + nn__row_offset(r, nd, o->shape, sx), *b = ph + nn__row_offset(r, nd, o->shape, sh);
        const float *c = pw + nn__row_offset(r, nd, o->shape, sw);
        float *y = po + r * inner;
        int64_t j, la = sx[nd - 1], lb = sh[nd - 1], lc = sw[nd - 1];
        for (j = 0; j < inner; j++) { float p = b[j * lb] * c[j * lc]; y[j] = a[j * la] + p; }
    }
}

/* the backward's one pass when h has g's shape and w is one row of C = g's last dim values (f32 CPU tensors):
   dh = g * w, dw = the column sums of g * h. Each thread owns a band of 256 columns across all rows, which it
   sums in row order: nn__sum_to's order, so dw is bit for bit nn__sum_to(nn_mul(g, h)). */
static void nn__addcmul_row_bwd_cpu(const nn_tensor *g, const nn_tensor *h, const nn_tensor *w, nn_tensor *dh,
                                    nn_tensor *dw) {
    const float *pg = (const float *)g->data, *ph = h ? (const float *)h->data : NULL;
    const float *pw = w ? (const float *)w->data : NULL;
    float *pdh = dh ? (float *)dh->data : NULL, *pdw = dw ? (float *)dw->data : NULL;
    int64_t C = g->shape[g->ndim - 1], rows = g->numel / C, jb, nb = (C + 255) / 256;
    if (pdw) nn__fill_f32(pdw, C, 0);
    NN_OMP("omp parallel for if (g->numel > 65536)")
    for (jb = 0; jb < nb; jb++) {
        int64_t j0 = jb * 256, j1 = j0 + 256 < C ? j0 + 256 : C, j, r;
        for (r = 0; r < rows; r++) {
            const float *gr = pg + r * C;
            if (pdh) for (j = j0; j < j1; j++) pdh[r * C + j] = gr[j] * pw[j];
            if (pdw) for (j = j0; j < j1; j++) { float p = gr[j] * ph[r * C + j]; pdw[j] += p; }
        }
    }
}

/* saved: h when w needs its gradient, w when h does (n->i[0], n->i[1] say which) */
static void nn__addcmul_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *h = NULL, *w = NULL;
    const nn__edge *eh = &n->in[1], *ew = &n->in[2];
    int want_h = nn__needs_grad(n, 1), want_w = nn__needs_grad(n, 2), k = 0, d, fused;
    int64_t C = g->ndim ? g->shape[g->ndim - 1] : 1;
    if (n->i[0]) h = n->saved[k++];
    if (n->i[1]) w = n->saved[k++];
    nn__accumulate(n, 0, g);
    if (!want_h && !want_w) return;
    /* the fused pass: h of g's shape, w [.., 1, C] with C > 1 (C == 1 is a full sum, which nn__sum_to takes in
       fixed chunks instead) */
    fused = g->ndim >= 1 && C > 1 && eh->ndim == g->ndim && ew->ndim >= 1 && ew->ndim <= g->ndim &&
            ew->shape[ew->ndim - 1] == C;
    for (d = 0; fused && d < g->ndim; d++) fused = eh->shape[d] == g->shape[d];
    for (d = 0; fused && d < ew->ndim - 1; d++) fused = ew->shape[d] == 1;
    if (fused && (g->device != NN_CPU || g->dtype == NN_F32)) {
        nn_tensor *dh = want_h ? nn__new(g->device == NN_CPU ? NN_F32 : eh->dtype, g->device, g->ndim, g->shape) : NULL;
        nn_tensor *dw = want_w ? nn__new(NN_F32, g->device, ew->ndim, ew->shape) : NULL;
#ifdef NN_CUDA
        if (g->device == NN_CUDA) nn__cuda_addcmul_bwd(g, h, w, dh, dw); else
#endif
        nn__addcmul_row_bwd_cpu(g, h, w, dh, dw);
        if (dh) nn__accumulate(n, 1, dh);
        if (dw) nn__accumulate(n, 2, dw);
        return;
    }
    if (want_h) nn__accumulate(n, 1, nn__mul_grad(n, 1, g, w));
    if (want_w) nn__accumulate(n, 2, nn__mul_grad(n, 2, g, h));
}

nn_tensor *nn_addcmul(nn_tensor *x, nn_tensor *h, nn_tensor *w) {
    const nn_tensor *t[3];
    int64_t shape[NN_MAX_DIMS];
    int nd = 0, d, k;
    nn_tensor *o, *in[3];
    nn_node *n;
    nn_dtype od;
    char s0[64], s1[64], s2[64];
    nn__check_float("nn_addcmul", x, "x");
    nn__check_float("nn_addcmul", h, "h");
    nn__check_float("nn_addcmul", w, "w");
    nn__check_same_device("nn_addcmul", x, h);
    nn__check_same_device("nn_addcmul", x, w);
    t[0] = x; t[1] = h; t[2] = w;
    for (k = 0; k < 3; k++) if (t[k]->ndim > nd) nd = t[k]->ndim;
    for (d = 0; d < nd; d++) {   /* numpy broadcasting of the three, right-aligned */
        shape[d] = 1;
        for (k = 0; k < 3; k++) {
            int it = t[k]->ndim - nd + d;
            int64_t sz = it >= 0 ? t[k]->shape[it] : 1;
            if (sz != 1 && shape[d] != 1 && sz != shape[d])
                nn_error("nn_addcmul: shapes %s, %s and %s do not broadcast (dim %d)", nn_shape_str(x, s0, sizeof s0),
                         nn_shape_str(h, s1, sizeof s1), nn_shape_str(w, s2, sizeof s2), d);
            if (sz != 1) shape[d] = sz;
        }
    }
    od = x->dtype == h->dtype && h->dtype == w->dtype ? x->dtype : NN_F32;
    if (x->device == NN_CPU && (x->dtype != NN_F32 || h->dtype != NN_F32 || w->dtype != NN_F32)) {
        o = nn_addcmul(nn__as_f32(x), nn__as_f32(h), nn__as_f32(w));   /* the CPU computes in f32 */
        return od == NN_F32 ? o : nn_cast(o, od);
    }
    o = nn__new(od, x->device, nd, shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_addcmul_fwd(x, h, w, o); else
#endif
    nn__addcmul_cpu(x, h, w, o);
    in[0] = x; in[1] = h; in[2] = w;
    if ((n = nn__record("nn_addcmul", nn__addcmul_backward, 3, in, 1, &o)) != NULL) {
        n->i[0] = nn__needs_grad(n, 2);
        n->i[1] = nn__needs_grad(n, 1);
        if (n->i[0]) nn__save(n, h);
        if (n->i[1]) nn__save(n, w);
    }
    return o;
}

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

/* exp(x) for x <= 0 (a score minus its row maximum or LSE; -x^2 in erf), written so that loops of it vectorise:
   e^x = 2^n e^r with n = round(x log2(e)) (the 1.5 * 2^23 rounding trick) and r = x - n ln2, ln2 split in
   two (Cody and Waite) so r is exact to f32 rounding; e^r by its degree-6 Taylor polynomial on
   |r| <= ln2/2, truncation |r|^7/7! < 1.5e-7 relative; 2^n built in the exponent bits. With the evaluation's
   roundings: within 3 f32 ulps of expf on [-87, 0) (tests/test_core.c sweeps it).
   Below -87 (e^x < FLT_MIN) the result is 0, so exp(-inf) = 0 exactly and masked scores drop out. */
static NN__ALWAYS_INLINE float nn__exp_nonpos(float x) {
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
    two_n.i = (int32_t)((uint32_t)((int32_t)n + 127) << 23); /* n + 127 in 1..127; a shift, not a 10-cycle vpmulld */
    return x < -87.0f ? 0.0f : p * two_n.f;
}

/* erf(x) in f32 written to vectorise (glibc's erff is a call per element, 7 % of the tiny part_location
   step in GELU and its gradient): both pieces are computed and one is selected.
   |x| < 0.875: erf(x) = x P(x^2), P of degree 5 fitted (least squares, reweighted towards minimax) to erf(x)/x,
   relative error 9e-9 before f32 rounding. 0.875 <= |x| < 4: erf(x) = 1 - exp(-x^2) Q(t), t = 1/(1 + |x|/2),
   Q of degree 6 fitted to erfc(x) exp(x^2), relative 5e-8 (the variable t as in Abramowitz and Stegun
   7.1.26). Beyond 4, erfc(x) < 1.6e-8 and erf rounds to +-1. NaN stays NaN. Against glibc's erff, every
   float in [-6, 6]: at most 2 f32 ulps apart, 1.2e-7 absolute (tests/test_core.c checks a sweep). */
static NN__ALWAYS_INLINE float nn__erff(float x) {
    float a = fabsf(x), s = a * a, t = 1.0f / (1.0f + 0.5f * a), p, q, r;
    p = -6.222547112319721e-4f;
    p = p * s + 5.035898430159494e-3f;
    p = p * s - 2.679397500351144e-2f;
    p = p * s + 1.1282524855244985e-1f;
    p = p * s - 3.761255724394203e-1f;
    p = p * s + 0.1283791585743952f;    /* 1.1283791585743952 - 1: the leading a is added exactly below */
    q = -4.787721604698809e-2f;
    q = q * t - 7.338217223222382e-2f;
    q = q * t + 4.2253180919812583e-1f;
    q = q * t + 8.980140934803735e-2f;
    q = q * t + 3.3474657975953553e-1f;
    q = q * t + 2.729175189101185e-1f;
    q = q * t + 6.581324533279375e-4f;
    r = a < 0.875f ? a + a * p : 1.0f - q * nn__exp_nonpos(-s);
    r = a >= 4.0f ? 1.0f : r;
    return copysignf(r, x);
}

#define NN__SQRT_2_OVER_PI 0.7978845608028654    /* sqrt(2/pi), GELU's tanh form (Hendrycks & Gimpel 2016) */
#define NN__GELU_C 0.044715f
#define NN__INV_SQRT2 0.70710678118654752

static void nn__unary_cpu(int op, const float *x, float *y, int64_t n, float p0, float p1) {
    int64_t i;
#define NN__MAP(EXPR) NN_OMP("omp parallel for if (n > NN__PAR_MIN)") for (i = 0; i < n; i++) { float v = x[i]; y[i] = EXPR; } break;
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
    case NN__U_GELU: NN__MAP(0.5f * v * (1.0f + nn__erff(v * (float)NN__INV_SQRT2)))
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
#define NN__MAP(EXPR) NN_OMP("omp parallel for if (n > NN__PAR_MIN)") for (i = 0; i < n; i++) { float v = s ? s[i] : 0.0f; (void)v; gx[i] = g[i] * (EXPR); } break;
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
    case NN__U_GELU: NN__MAP(0.5f * (1.0f + nn__erff(v * (float)NN__INV_SQRT2)) + v * 0.3989422804f * nn__exp_nonpos(-0.5f * v * v))
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
    gx = nn__new(n->in[0].dtype, g->device, g->ndim, g->shape);   /* the input's dtype (f16/bf16 on a device) */
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
    nn__check_float(name, x, "input");
    if (x->device == NN_CPU && x->dtype != NN_F32) return nn_cast(nn__unary(op, nn_cast(x, NN_F32), p0, p1), x->dtype);
    y = nn__new(x->dtype, x->device, x->ndim, x->shape);   /* f16/bf16 in, the same out (f32 arithmetic) */
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
/* this thread's contiguous share [*b, *e) of [0, n) inside a parallel region (all of it outside one) */
static void nn__omp_range(int64_t n, int64_t *b, int64_t *e) {
    int64_t t = 0, nt = 1, q, r;
#ifdef _OPENMP
    t = omp_get_thread_num(); nt = omp_get_num_threads();
#endif
    q = n / nt; r = n % nt;
    *b = t * q + (t < r ? t : r);
    *e = *b + q + (t < r ? 1 : 0);
}

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
    {
        /* one row of `inner` gradient values per (o, i), rows in parallel */
        int64_t rows = outer * len;   /* read by the OpenMP clause */
        (void)rows;
        const int64_t *arg = kind == NN__R_MAX ? (const int64_t *)n->saved[0]->data : NULL;
        const float *xs = kind == NN__R_VAR ? (const float *)n->saved[0]->data : NULL;
        const float *mean = kind == NN__R_VAR ? (const float *)n->saved[1]->data : NULL;
        float inv_len = 1.0f / (float)len, two_over = kind == NN__R_VAR ? (float)(2.0 / n->a[0]) : 0.0f;
        /* one row of `inner` values per (o, i). Long reductions (len >= 4096): threads split i within each o;
           short ones: threads take whole o. No division per element either way. */
        int long_rows = len >= 4096 || outer == 1;
        NN_OMP("omp parallel if (rows * inner > NN__PAR_MIN)")
        {
            int64_t o0, o1, i0, i1, oo;
            for (oo = 0; oo < (long_rows ? outer : 1); oo++) {
                int64_t i, j;
                if (long_rows) {
                    o0 = oo; o1 = oo + 1;
                    nn__omp_range(len, &i0, &i1);
                } else {
                    nn__omp_range(outer, &o0, &o1);
                    i0 = 0; i1 = len;
                }
                for (o = o0; o < o1; o++) {
                    const float *gr = pg + o * inner;
                    if (inner == 1 && (kind == NN__R_SUM || kind == NN__R_MEAN)) {   /* a fill */
                        float v = kind == NN__R_SUM ? gr[0] : gr[0] * inv_len;
                        for (i = i0; i < i1; i++) px[o * len + i] = v;
                        continue;
                    }
                    for (i = i0; i < i1; i++) {
                        float *row = px + (o * len + i) * inner;
                        if (kind == NN__R_SUM) for (j = 0; j < inner; j++) row[j] = gr[j];
                        else if (kind == NN__R_MEAN) for (j = 0; j < inner; j++) row[j] = gr[j] * inv_len;
                        else if (kind == NN__R_MAX) for (j = 0; j < inner; j++) row[j] = arg[o * inner + j] == i ? gr[j] : 0.0f;
                        else {   /* var: d/dx_i = 2 (x_i - mean) / (n - correction) */
                            const float *x = xs + (o * len + i) * inner, *m = mean + o * inner;
                            for (j = 0; j < inner; j++) row[j] = gr[j] * two_over * (x[j] - m[j]);
                        }
                    }
                }
            }
        }
    }
    nn__accumulate(n, 0, gx);
}

/* The CPU reductions. Rows (inner == 1) are cut into chunks of NN__RCHUNK summed with 16 f32 lanes, and
   the chunk sums are added in double in chunk order: vectorised, parallel even for one long row, and the
   bits never depend on the thread count. Columns (inner > 1) accumulate bands of 256 columns in double,
   walking the rows in order. var uses two passes (mean, then squared deviations); max keeps the first
   maximum, NaN counting as the largest value (as torch). */
#define NN__RCHUNK 4096
static float nn__sqdev_f32(const float *x, int64_t n, float m);
static void nn__reduce_cpu(int kind, const float *px, float *py, int64_t *arg, float *mean, int64_t outer,
                           int64_t len, int64_t inner, int unbiased) {
    if (inner == 1) {
        int64_t nch = (len + NN__RCHUNK - 1) / NN__RCHUNK, t, o, tasks = outer * nch;
        int64_t s2 = tasks * 2 + 1;
        nn_tensor *ws = nn__new(NN_F32, NN_CPU, 1, &s2);      /* per chunk: a double, or a max + its index */
        double *part = (double *)ws->data;
        NN_OMP("omp parallel for if (outer * len > NN__PAR_MIN)")
        for (t = 0; t < tasks; t++) {
            int64_t oo = t / nch, c = t - oo * nch, b = c * NN__RCHUNK, e = b + NN__RCHUNK < len ? b + NN__RCHUNK : len, i;
            const float *p = px + oo * len;
            if (kind == NN__R_MAX) {
                float m = p[b];
                int64_t a = b;
                for (i = b + 1; i < e; i++) if (p[i] > m || (p[i] != p[i] && m == m)) { m = p[i]; a = i; }
                ((float *)part)[2 * t] = m;
                ((int32_t *)part)[2 * t + 1] = (int32_t)(a - b);
            } else part[t] = nn__sum_f32(p + b, e - b);
        }
        NN_OMP("omp parallel for if (outer * len > NN__PAR_MIN)")
        for (o = 0; o < outer; o++) {
            int64_t c;
            if (kind == NN__R_MAX) {
                float m = ((float *)part)[2 * o * nch];
                int64_t a = ((int32_t *)part)[2 * o * nch + 1];
                for (c = 1; c < nch; c++) {
                    float v = ((float *)part)[2 * (o * nch + c)];
                    if (v > m || (v != v && m == m)) { m = v; a = c * NN__RCHUNK + ((int32_t *)part)[2 * (o * nch + c) + 1]; }
                }
                py[o] = m;
                arg[o] = a;
            } else {
                double s = 0;
                for (c = 0; c < nch; c++) s += part[o * nch + c];
                if (kind == NN__R_SUM) py[o] = (float)s;
                else if (kind == NN__R_MEAN) py[o] = (float)(s / (double)len);
                else mean[o] = (float)(s / (double)len);
            }
        }
        if (kind == NN__R_VAR) {
            NN_OMP("omp parallel for if (outer * len > NN__PAR_MIN)")
            for (t = 0; t < tasks; t++) {
                int64_t oo = t / nch, c = t - oo * nch, b = c * NN__RCHUNK, e = b + NN__RCHUNK < len ? b + NN__RCHUNK : len;
                part[t] = nn__sqdev_f32(px + oo * len + b, e - b, mean[oo]);
            }
            for (o = 0; o < outer; o++) {
                double v = 0;
                int64_t c;
                for (c = 0; c < nch; c++) v += part[o * nch + c];
                py[o] = (float)(v / (double)(len - unbiased));
            }
        }
        nn_tensor_free(ws);
    } else {
        int64_t nb = (inner + 255) / 256, t, tasks = outer * nb;
        NN_OMP("omp parallel for if (outer * len * inner > NN__PAR_MIN)")
        for (t = 0; t < tasks; t++) {
            int64_t oo = t / nb, j0 = (t - oo * nb) * 256, j1 = j0 + 256 < inner ? j0 + 256 : inner, w = j1 - j0, i, j;
            const float *p = px + oo * len * inner + j0;
            float *y = py + oo * inner + j0;
            double acc[256];
            if (kind == NN__R_MAX) {
                int64_t *a = arg + oo * inner + j0;
                for (j = 0; j < w; j++) { y[j] = p[j]; a[j] = 0; }
                for (i = 1; i < len; i++)
                    for (j = 0; j < w; j++) {
                        float v = p[i * inner + j];
                        if (v > y[j] || (v != v && y[j] == y[j])) { y[j] = v; a[j] = i; }
                    }
                continue;
            }
            for (j = 0; j < w; j++) acc[j] = 0;
            for (i = 0; i < len; i++) for (j = 0; j < w; j++) acc[j] += p[i * inner + j];
            if (kind == NN__R_SUM) for (j = 0; j < w; j++) y[j] = (float)acc[j];
            else if (kind == NN__R_MEAN) for (j = 0; j < w; j++) y[j] = (float)(acc[j] / (double)len);
            else {
                float *m = mean + oo * inner + j0;
                for (j = 0; j < w; j++) { m[j] = (float)(acc[j] / (double)len); acc[j] = 0; }
                for (i = 0; i < len; i++) for (j = 0; j < w; j++) { double d = (double)p[i * inner + j] - m[j]; acc[j] += d * d; }
                for (j = 0; j < w; j++) y[j] = (float)(acc[j] / (double)(len - unbiased));
            }
        }
    }
}

static nn_tensor *nn__reduce(int kind, const char *name, nn_tensor *x, int dim, int keepdim, int unbiased) {
    int d;
    int64_t outer, len, inner, o;
    nn_tensor *y, *arg = NULL, *mean = NULL;
    nn_node *n;
    const float *px;
    float *py;
    x = nn__f32_input(name, x, "input");
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
    nn__reduce_cpu(kind, px, py, arg ? (int64_t *)arg->data : NULL, mean ? (float *)mean->data : NULL, outer, len,
                   inner, unbiased);
    (void)o;
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
    a = nn__f32_input("nn_sum_all", a, "input");
    n = a->numel;
    return nn_sum(nn_reshape(a, 1, &n), 0, 0);
}
nn_tensor *nn_mean_all(nn_tensor *a) {
    int64_t n;
    a = nn__f32_input("nn_mean_all", a, "input");
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
    NN_OMP("omp parallel for if (outer * len * inner > NN__PAR_MIN)")
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
    x = nn__f32_input(name, x, "input");
    d = nn__norm_dim(name, x, dim);
    nn__dims3(x, d, &outer, &len, &inner);
    y = nn__new(NN_F32, x->device, x->ndim, x->shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_softmax_fwd(x, outer, len, inner, log_form, y); else
#endif
    NN_OMP("omp parallel for if (outer * len * inner > NN__PAR_MIN)")
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

/* g: f32, or the f16/bf16 gradient of nn_layer_norm_to's output (the GPU kernels read it as it is) */
static void nn__layer_norm_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *x = n->saved[0], *mean = n->saved[1], *rstd = n->saved[2];
    nn_tensor *w = n->n_saved > 3 ? n->saved[3] : NULL, *gx = NULL, *gw = NULL;
    int64_t C = x->shape[x->ndim - 1], rows = C ? x->numel / C : 0, r;
    int want_w = nn__needs_grad(n, 1), want_b = nn__needs_grad(n, 2);
    if (nn__needs_grad(n, 0)) gx = nn__new(NN_F32, x->device, x->ndim, x->shape);
    if (g->dtype != NN_F32 && x->device == NN_CPU) g = nn_cast(g, NN_F32);
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

/* op: the public name (messages, the tape); dt: the output's dtype. On the GPU the kernels write dt directly (y
   may be f16/bf16 there); the CPU computes the f32 output and converts it as nn_cast does. */
static nn_tensor *nn__layer_norm(const char *op, nn_tensor *x, nn_tensor *w, nn_tensor *b, double eps, nn_dtype dt) {
    int64_t C, rows, r, s1;
    nn_tensor *y, *y32, *mean, *rstd, *in[3];
    nn_node *n;
    x = nn__f32_input(op, x, "input");
    if (x->ndim < 1) nn_error("%s: input must have at least one dim, got %s", op, nn__s(x));
    C = x->shape[x->ndim - 1];
    if (w) { nn__check_f32(op, w, "weight"); if (w->numel != C || w->ndim != 1) nn_error("%s: weight %s does not match the last dim of %s", op, nn__s(w), nn__s(x)); }
    if (b) { nn__check_f32(op, b, "bias"); if (b->numel != C || b->ndim != 1) nn_error("%s: bias %s does not match the last dim of %s", op, nn__s(b), nn__s(x)); }
    if (w) nn__check_same_device(op, x, w);
    if (b) nn__check_same_device(op, x, b);
    rows = C ? x->numel / C : 0;
    s1 = rows;
    y = nn__new(dt, x->device, x->ndim, x->shape);
    y32 = dt == NN_F32 || x->device != NN_CPU ? y : nn__new(NN_F32, NN_CPU, x->ndim, x->shape);
    mean = nn__new(NN_F32, x->device, 1, &s1);
    rstd = nn__new(NN_F32, x->device, 1, &s1);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_layer_norm_fwd(x, w, b, eps, y, mean, rstd); else
#endif
    {
        NN_OMP("omp parallel for if (x->numel > 16384)")
        for (r = 0; r < rows; r++) {
            const float *xr = (const float *)x->data + r * C;
            float *yr = (float *)y32->data + r * C;
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
        if (y32 != y) { nn_copy_(y, y32); nn_tensor_free(y32); }
    }
    in[0] = x; in[1] = w; in[2] = b;
    if ((n = nn__record(op, nn__layer_norm_backward, 3, in, 1, &y)) != NULL) {
        nn__save(n, x); nn__save(n, mean); nn__save(n, rstd);
        if (w) nn__save(n, w);
    }
    return y;
}

nn_tensor *nn_layer_norm(nn_tensor *x, nn_tensor *w, nn_tensor *b, double eps) {
    return nn__layer_norm("nn_layer_norm", x, w, b, eps, NN_F32);
}

nn_tensor *nn_layer_norm_to(nn_tensor *x, nn_tensor *w, nn_tensor *b, double eps, nn_dtype dt) {
    if (dt != NN_F32 && dt != NN_F16 && dt != NN_BF16)
        nn_error("nn_layer_norm_to: dtype must be f32, f16 or bf16, got %s", nn_dtype_name(dt));
    return nn__layer_norm("nn_layer_norm_to", x, w, b, eps, dt);
}

/* dropout: keep with probability 1-p, scale kept values by 1/(1-p) (inverted dropout, as torch). The mask
   is a pure function of (seed, offset + i), so backward regenerates it instead of storing it. */
static void nn__dropout_apply(const float *x, float *y, int64_t n, double p, uint64_t seed, uint64_t off) {
    /* one Philox block gives the uniforms of 4 consecutive stream positions: element i uses lane
       (off + i) % 4 of block (off + i) / 4, exactly as nn_rng_uniform_at(seed, off + i) */
    int64_t b, b0 = (int64_t)(off >> 2), nb = n > 0 ? (int64_t)((off + (uint64_t)n + 3) >> 2) - b0 : 0;
    float scale = (float)(1.0 / (1.0 - p)), fp = (float)p;
    NN_OMP("omp parallel for if (n > NN__PAR_MIN)")
    for (b = 0; b < nb; b++) {
        uint32_t r[4];
        int lane;
        nn_philox4x32(seed, (uint64_t)(b0 + b), r);
        for (lane = 0; lane < 4; lane++) {
            int64_t i = (b0 + b) * 4 + lane - (int64_t)off;
            if (i < 0 || i >= n) continue;
            y[i] = (float)(r[lane] >> 8) * (1.0f / 16777216.0f) >= fp ? x[i] * scale : 0.0f;
        }
    }
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
    x = nn__f32_input("nn_dropout", x, "input");
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

/* C = alpha op(A) op(B) + beta C, row-major (the blocked kernel is in [ops:gemm] below) */
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
        ga = nn__new(a->dtype, g->device, nbd + 2, s);   /* the operand's dtype: f16/bf16 products write it directly */
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
        gb = nn__new(b->dtype, g->device, nbd + 2, s);
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
    o = nn__new(nn__promote(a->dtype, b->dtype), a->device, nbd + 2, oshape);   /* bf16 @ bf16 -> bf16 (cuda) */
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

/* GEMM operands: f32; on cuda also f16/bf16 (f32 accumulation; the result is f16/bf16 when both operands are,
   else f32) */
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
        nn_tensor *gx = nn__needs_grad(n, 0) ? nn__new(x->dtype, g->device, x->ndim, x->shape) : NULL;
        nn_tensor *gw = nn__needs_grad(n, 1) ? nn__new(w->dtype, g->device, 2, w->shape) : NULL;
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
        nn__check_mm("nn_linear", b, "bias");
        nn__check_same_device("nn_linear", x, b);
        if (b->ndim != 1 || b->shape[0] != out) nn_error("nn_linear: bias %s does not match weight %s", nn__s(b), nn__s(w));
    }
    rows = in ? x->numel / in : 0;
    for (d = 0; d < x->ndim - 1; d++) shape[d] = x->shape[d];
    shape[x->ndim - 1] = out;
    if (in == 0) for (r = 0, rows = 1; r < x->ndim - 1; r++) rows *= x->shape[r];
    y = nn__new(nn__promote(x->dtype, w->dtype), x->device, x->ndim, shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_linear_fwd(x, w, b, y); else
#endif
    {
    if (b) {   /* start from the bias, then accumulate the product (beta = 1) */
        const float *pb = (const float *)b->data;
        float *py = (float *)y->data;
        NN_OMP("omp parallel for if (rows * out > NN__PAR_MIN)")
        for (r = 0; r < rows; r++) memcpy(py + r * out, pb, sizeof(float) * (size_t)out);
    }
    nn__sgemm(0, 1, rows, out, in, 1.0f, (const float *)x->data, in, (const float *)w->data, in, b ? 1.0f : 0.0f,
              (float *)y->data, out);
    }
    ins[0] = x; ins[1] = w; ins[2] = b;
    if ((n = nn__record("nn_linear", nn__linear_backward, 3, ins, 1, &y)) != NULL) { nn__save(n, x); nn__save(n, w); }
    return y;
}

/* -------------------------------------------------------------------------------------------- [ops:gemm] */
/* nn__sgemm: CPU single-precision GEMM, the kernel under matmul, linear, conv2d and attention.

     C[M,N] = alpha * op(A)[M,K] @ op(B)[K,N] + beta * C          (row-major, leading dimensions lda/ldb/ldc)

   Algorithm (the Goto/BLIS layering):
     for jc in N step NC:                 B panel  KC x NC  packed once per (jc,pc), lives in L2/L3
       for pc in K step KC:
         pack op(B)[pc:pc+kc, jc:jc+nc] into NR-wide column strips (zero padded)
         for ic in M step MC:             A block  MC x KC  packed, lives in L2
           pack op(A)[ic:ic+mc, pc:pc+kc] into MR-tall row strips (zero padded)
           for jr in nc step NR:          B strip  KC x NR  lives in L1 while ...
             for ir in mc step MR:        ... every A strip of the block streams past it
               micro-kernel: MR x NR accumulators in registers, kc rank-1 updates
   Packing makes the micro-kernel see unit-stride, aligned, zero-padded operands whatever ta/tb/lda/ldb are,
   so one kernel serves all four transpose combinations and every edge size.

   The micro-kernel is a fixed MR x NR accumulator block, no intrinsics: on x86 AVX/AVX-512 written with GNU
   vector types (see the note above nn__gemm_micro for why), elsewhere a plain float acc[MR][NR] loop updated
   with fmaf(), which GCC/clang keep in registers. Checked in the assembly with GCC 12 and clang 14 for
   -march=znver3+avx512 (native here), sapphirerapids, x86-64-v4, haswell: 24 zmm (12 ymm on AVX2)
   accumulators, 2 B loads + MR broadcasts per k step, no spills in the k loop. fmaf() is used only where the
   target has a fast hardware FMA (FP_FAST_FMAF); -std=c99 turns GCC's -ffp-contract off, so a*b+c would
   otherwise never become an FMA.

   Threads: outside a parallel region the M x N output is split into one rectangle per OpenMP thread and
   each thread runs the serial algorithm on its rectangle with its own packing buffers (no barriers, no
   shared packed panels: B is re-packed once per thread, which costs K*N copies against 2*M*N*K/threads
   flops). Inside a parallel region (omp_in_parallel()) it runs serially on the calling thread, so attention
   or conv code may call it from many threads at once.

   Packing buffers come from a small pool of cached heap buffers (NN_GEMM_POOL_SLOTS slots, grown on demand,
   never shrunk; nn__sgemm_free_cache() releases them). A slot is claimed and returned under an OpenMP
   critical section, so concurrent calls from OpenMP threads never share a buffer. Without OpenMP the pool
   is not locked: do not call nn__sgemm from several non-OpenMP threads at once (e.g. raw pthreads) in a
   build without -fopenmp. If the pool is exhausted a call mallocs/frees its own buffer; if malloc fails it
   falls back to an unpacked (slow, correct) loop.
   --------------------------------------------------------------------------------------------------------- */
#ifndef NN_RESTRICT
#if defined(__cplusplus)
#define NN_RESTRICT __restrict
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L
#define NN_RESTRICT restrict
#else
#define NN_RESTRICT
#endif
#endif

/* Fused multiply-add only where it is a single fast instruction; a libm fmaf() on a CPU without FMA is a
   slow exact emulation. */
#ifdef FP_FAST_FMAF
#define NN__GEMM_FMA(a, b, c) fmaf((a), (b), (c))
#else
#define NN__GEMM_FMA(a, b, c) ((a) * (b) + (c))
#endif

/* Register block MR x NR: MR*NR/lanes accumulator registers + NR/lanes registers of B + 1 broadcast of A
   must fit the vector register file, and the FMA count per k step (MR*NR/lanes) must cover FMA latency x
   FMA pipes (4 x 2 = 8 on Zen 4/5 and Skylake-X), while loads per k step (NR/lanes + MR) stay below 2 per
   FMA pair.
     AVX-512 (32 zmm, 16 lanes): 12 x 32 -> 24 accumulators + 2 B + 1 A = 27 registers, 24 FMAs per 14 loads.
     AVX/AVX2 (16 ymm, 8 lanes):  6 x 16 -> 12 accumulators + 2 B + 1 A = 15 registers.
     NEON/SVE-128 (32 q regs, 4): 8 x 12 -> 24 accumulators + 3 B + 1 A.
     otherwise (16 xmm, SSE2):    4 x 8  ->  8 accumulators + 2 B + 1 A. */
#ifndef NN_GEMM_MR
#if defined(__AVX512F__)
#define NN_GEMM_MR 12
#define NN_GEMM_NR 32
#elif defined(__AVX__)
#define NN_GEMM_MR 6
#define NN_GEMM_NR 16
#elif defined(__aarch64__) || defined(__ARM_NEON)
#define NN_GEMM_MR 8
#define NN_GEMM_NR 12
#else
#define NN_GEMM_MR 4
#define NN_GEMM_NR 8
#endif
#endif

/* Cache blocking (floats).
   KC: the B strip KC x NR must stay in L1 while all A strips of a block stream past it: 256 x 32 x 4 B =
       32 KiB of Zen 5's 48 KiB L1d (Skylake-X 32 KiB: still mostly resident; A strips stream from L2 anyway).
       256 also makes each micro-kernel call long enough (256 k steps) to hide its C load/store.
   MC: the packed A block MC x KC must stay in L2: 384 x 256 x 4 B = 384 KiB, well inside a 1-2 MiB L2
       alongside the B strips passing through.
   NC: the packed B panel KC x NC is reused by every A block; 4096 x 256 x 4 B = 4 MiB per thread, which
       sits in L3 (32 MiB shared on this machine). Smaller N use a smaller buffer.
   MC must be a multiple of MR and NC of NR. */
#ifndef NN_GEMM_KC
#define NN_GEMM_KC 256
#endif
#ifndef NN_GEMM_MC
#define NN_GEMM_MC (32 * NN_GEMM_MR)
#endif
#ifndef NN_GEMM_NC
#define NN_GEMM_NC (128 * NN_GEMM_NR)
#endif
#ifndef NN_GEMM_POOL_SLOTS
#define NN_GEMM_POOL_SLOTS 64
#endif
/* A row-major op(A) (no transpose) whose rows are at most this many floats apart is read in place by the
   micro-kernel instead of being packed: with K <= KC its MR rows (12 x 1 KiB at lda 256) sit in L1 like a
   packed strip does, and the pack, a strided gather, cost as much as a third of the micro-kernel's time
   on the transformer products with K = 64 (the part_location tiny step: pack_a 6.9 % vs the kernel's
   24 %). Wider rows are packed: 12 rows 4 KiB apart or more alias in L1 and the TLB. */
#ifndef NN_GEMM_DIRECT_A_MAX_LD
#define NN_GEMM_DIRECT_A_MAX_LD 512
#endif
/* Below this many multiply-adds (M*N*K) a call stays on one thread: an OpenMP fork/join costs a few
   microseconds, about what 2^18 FMAs take on one core. */
#ifndef NN_GEMM_PARALLEL_MIN
#define NN_GEMM_PARALLEL_MIN ((int64_t)1 << 18)
#endif

/* ---- packing buffer pool -------------------------------------------------------------------------------- */
typedef struct { void *raw; float *buf; size_t cap; int busy; } nn__gemm_slot;
static nn__gemm_slot nn__gemm_pool[NN_GEMM_POOL_SLOTS];

/* Returns a 64-byte aligned buffer of at least nfloats floats, or NULL. *slot is the pool slot, -1 when the
   buffer was malloc'd for this call only (pool full), and *raw the pointer to free in that case. */
static float *nn__gemm_buf_get(size_t nfloats, int *slot, void **raw) {
    int s, got = -1;
    NN_OMP("omp critical(nn__gemm_pool)")
    {
        for (s = 0; s < NN_GEMM_POOL_SLOTS; s++)
            if (!nn__gemm_pool[s].busy) { nn__gemm_pool[s].busy = 1; got = s; break; }
    }
    *slot = got;
    if (got >= 0 && nn__gemm_pool[got].cap >= nfloats) { *raw = NULL; return nn__gemm_pool[got].buf; }
    {
        void *p = NN_MALLOC(nfloats * sizeof(float) + 64);
        float *aligned = p ? (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63) : NULL;
        if (got >= 0) {
            if (p) {   /* grow the slot: the old buffer was too small */
                NN_FREE(nn__gemm_pool[got].raw);
                nn__gemm_pool[got].raw = p; nn__gemm_pool[got].buf = aligned; nn__gemm_pool[got].cap = nfloats;
                *raw = NULL;
                return aligned;
            }
            NN_OMP("omp critical(nn__gemm_pool)")
            { nn__gemm_pool[got].busy = 0; }
            *slot = -1;
        }
        *raw = p;
        return aligned;
    }
}

static void nn__gemm_buf_put(int slot, void *raw) {
    if (slot >= 0) {
        NN_OMP("omp critical(nn__gemm_pool)")
        { nn__gemm_pool[slot].busy = 0; }
    } else if (raw) {
        NN_FREE(raw);
    }
}

/* Releases the cached packing buffers (for leak checkers and shutdown); must not race with nn__sgemm. */
static void nn__sgemm_free_cache(void) {
    int s;
    for (s = 0; s < NN_GEMM_POOL_SLOTS; s++) {
        if (nn__gemm_pool[s].raw) NN_FREE(nn__gemm_pool[s].raw);
        nn__gemm_pool[s].raw = NULL; nn__gemm_pool[s].buf = NULL; nn__gemm_pool[s].cap = 0;
        nn__gemm_pool[s].busy = 0;
    }
}

/* ---- packing -------------------------------------------------------------------------------------------- */
/* op(A)[0:mc, 0:kc] -> MR-row strips; strip s holds dst[s*MR*kc + p*MR + i] = op(A)(s*MR + i, p),
   rows past mc are zero. A points at op(A)(0,0). */
static void nn__gemm_pack_a(int ta, int64_t mc, int64_t kc, const float *A, int64_t lda, float *NN_RESTRICT dst) {
    int64_t i0, i, p;
    for (i0 = 0; i0 < mc; i0 += NN_GEMM_MR) {
        int64_t mr = mc - i0 < NN_GEMM_MR ? mc - i0 : NN_GEMM_MR;
        if (ta) {   /* op(A)(i,p) = A[p*lda + i]: rows of the strip are contiguous in memory */
            const float *src = A + i0;
            if (mr == NN_GEMM_MR) {
                for (p = 0; p < kc; p++) {
                    for (i = 0; i < NN_GEMM_MR; i++) dst[p * NN_GEMM_MR + i] = src[p * lda + i];
                }
            } else {
                for (p = 0; p < kc; p++) {
                    for (i = 0; i < mr; i++) dst[p * NN_GEMM_MR + i] = src[p * lda + i];
                    for (; i < NN_GEMM_MR; i++) dst[p * NN_GEMM_MR + i] = 0.0f;
                }
            }
        } else {    /* op(A)(i,p) = A[i*lda + p]: read each row contiguously, scatter with stride MR */
            const float *src = A + i0 * lda;
            if (mr == NN_GEMM_MR) {   /* sequential writes, MR read streams: ~1.6x faster than row by row */
                for (p = 0; p < kc; p++)
                    for (i = 0; i < NN_GEMM_MR; i++) dst[p * NN_GEMM_MR + i] = src[i * lda + p];
                dst += NN_GEMM_MR * kc;
                continue;
            }
            for (i = 0; i < mr; i++) {
                const float *row = src + i * lda;
                for (p = 0; p < kc; p++) dst[p * NN_GEMM_MR + i] = row[p];
            }
            for (; i < NN_GEMM_MR; i++)
                for (p = 0; p < kc; p++) dst[p * NN_GEMM_MR + i] = 0.0f;
        }
        dst += NN_GEMM_MR * kc;
    }
}

/* op(B)[0:kc, 0:nc] -> NR-column strips; strip s holds dst[s*NR*kc + p*NR + j] = op(B)(p, s*NR + j),
   columns past nc are zero. B points at op(B)(0,0). */
static void nn__gemm_pack_b(int tb, int64_t kc, int64_t nc, const float *B, int64_t ldb, float *NN_RESTRICT dst) {
    int64_t j0, j, p;
    for (j0 = 0; j0 < nc; j0 += NN_GEMM_NR) {
        int64_t nr = nc - j0 < NN_GEMM_NR ? nc - j0 : NN_GEMM_NR;
        if (!tb) {  /* op(B)(p,j) = B[p*ldb + j]: each k row of the strip is a contiguous copy */
            const float *src = B + j0;
            if (nr == NN_GEMM_NR) {
                for (p = 0; p < kc; p++) {
                    for (j = 0; j < NN_GEMM_NR; j++) dst[p * NN_GEMM_NR + j] = src[p * ldb + j];
                }
            } else {
                for (p = 0; p < kc; p++) {
                    for (j = 0; j < nr; j++) dst[p * NN_GEMM_NR + j] = src[p * ldb + j];
                    for (; j < NN_GEMM_NR; j++) dst[p * NN_GEMM_NR + j] = 0.0f;
                }
            }
        } else {    /* op(B)(p,j) = B[j*ldb + p]: read each column of op(B) contiguously */
            const float *src = B + j0 * ldb;
            for (j = 0; j < nr; j++) {
                const float *col = src + j * ldb;
                for (p = 0; p < kc; p++) dst[p * NN_GEMM_NR + j] = col[p];
            }
            for (; j < NN_GEMM_NR; j++)
                for (p = 0; p < kc; p++) dst[p * NN_GEMM_NR + j] = 0.0f;
        }
        dst += NN_GEMM_NR * kc;
    }
}

/* ---- micro-kernel --------------------------------------------------------------------------------------- */
/* On x86 with AVX/AVX-512 the kernel is written with GNU vector types (vector_size, no intrinsics), because
   the plain loop is at the mercy of the compiler's tuning: with -march=native on Intel AVX-512 parts
   (Skylake-X .. Sapphire Rapids) GCC and clang prefer 256-bit vectors, so the 12 x 32 block needs 48 ymm
   accumulators and spills (measured 26 instead of ~150 GFLOP/s on one Sapphire Rapids core), and GCC 12
   at -march=haswell vectorises the 6 x 16 block with 128-bit xmm and spills too. Explicit VL-wide vector
   types are kept whole; min_vector_width stops clang splitting 512-bit ones under the 256-bit preference,
   and optimize("fp-contract=fast") lets GCC fuse acc + b*a into an FMA under -std=c99 (clang fuses within
   an expression by default). Other targets (and NN_GEMM_PLAIN_KERNEL) use the plain loop. */
#if defined(__GNUC__) && NN_GEMM_NR == 32 && defined(__AVX512F__) && !defined(NN_GEMM_PLAIN_KERNEL)
#define NN__GEMM_VL 16
#elif defined(__GNUC__) && NN_GEMM_NR == 16 && defined(__AVX__) && !defined(__AVX512F__) && !defined(NN_GEMM_PLAIN_KERNEL)
#define NN__GEMM_VL 8
#endif
#ifdef NN__GEMM_VL
typedef float nn__gemm_vec __attribute__((vector_size(NN__GEMM_VL * 4)));
#if defined(__clang__)
#define NN__GEMM_KERNEL_ATTR __attribute__((min_vector_width(NN__GEMM_VL * 32)))
#else
#define NN__GEMM_KERNEL_ATTR __attribute__((optimize("fp-contract=fast")))
#endif
#else
#define NN__GEMM_KERNEL_ATTR
#endif

/* C[0:mr, 0:nr] = alpha * (A strip @ pb strip) + beta * C; beta == 0 never reads C. The A strip is packed
   (lda == 0: element (i, p) at pa[p*MR + i]) or read in place from a row-major op(A) (lda > 0: at
   pa[i*lda + p], every one of the MR rows present). */
NN__GEMM_KERNEL_ATTR
static void nn__gemm_micro(int64_t kc, const float *NN_RESTRICT pa, int64_t lda, const float *NN_RESTRICT pb,
                           float *NN_RESTRICT C, int64_t ldc, int64_t mr, int64_t nr, float alpha, float beta) {
    float acc[NN_GEMM_MR][NN_GEMM_NR];
    int i, j;
    int64_t p;
#ifdef NN__GEMM_VL
    nn__gemm_vec vacc[NN_GEMM_MR][2];
    memset(vacc, 0, sizeof vacc);
#else
    for (i = 0; i < NN_GEMM_MR; i++)
        for (j = 0; j < NN_GEMM_NR; j++) acc[i][j] = 0.0f;
#endif
#if defined(__GNUC__) && !defined(NN_GEMM_NO_PREFETCH)
    /* C is touched only after kc rank-1 updates, too late for out-of-order execution to overlap its cache
       misses with the arithmetic; ask for the tile now (first and last byte of each row). */
    for (i = 0; i < mr; i++) {
        __builtin_prefetch(C + i * ldc, 1, 3);
        __builtin_prefetch(C + i * ldc + nr - 1, 1, 3);
    }
#endif
#ifdef NN__GEMM_VL
#define NN__GEMM_RANK1(A_I) do { \
        nn__gemm_vec b0, b1; \
        memcpy(&b0, pb + p * NN_GEMM_NR, sizeof b0); \
        memcpy(&b1, pb + p * NN_GEMM_NR + NN__GEMM_VL, sizeof b1); \
        NN__UNROLL(16) \
        for (i = 0; i < NN_GEMM_MR; i++) { \
            const float ai = (A_I); \
            vacc[i][0] = vacc[i][0] + b0 * ai; \
            vacc[i][1] = vacc[i][1] + b1 * ai; \
        } } while (0)
    if (lda) for (p = 0; p < kc; p++) NN__GEMM_RANK1(pa[i * lda + p]);
    else for (p = 0; p < kc; p++) NN__GEMM_RANK1(pa[p * NN_GEMM_MR + i]);
#undef NN__GEMM_RANK1
    if (mr == NN_GEMM_MR && nr == NN_GEMM_NR && beta == 0.0f) {
        /* full tile, C overwritten (every score tile of attention): store straight from the registers; the
           round trip through acc[][] below costs a 1.5 KiB memcpy call per micro-tile, which at kc = 16 is
           a tenth of the kernel's time. Same arithmetic (alpha * acc), so the same results. */
        for (i = 0; i < NN_GEMM_MR; i++) {
            nn__gemm_vec c0 = vacc[i][0] * alpha, c1 = vacc[i][1] * alpha;
            memcpy(C + i * ldc, &c0, sizeof c0);
            memcpy(C + i * ldc + NN__GEMM_VL, &c1, sizeof c1);
        }
        return;
    }
    memcpy(acc, vacc, sizeof acc);
#else
    for (p = 0; p < kc; p++) {
        const float *b = pb + p * NN_GEMM_NR;
        for (i = 0; i < NN_GEMM_MR; i++) {
            const float ai = lda ? pa[i * lda + p] : pa[p * NN_GEMM_MR + i];
            for (j = 0; j < NN_GEMM_NR; j++) acc[i][j] = NN__GEMM_FMA(ai, b[j], acc[i][j]);
        }
    }
#endif
    if (mr == NN_GEMM_MR && nr == NN_GEMM_NR) {   /* full tile: fixed trip counts vectorise */
        if (beta == 0.0f) {
            for (i = 0; i < NN_GEMM_MR; i++)
                for (j = 0; j < NN_GEMM_NR; j++) C[i * ldc + j] = alpha * acc[i][j];
        } else if (beta == 1.0f) {
            for (i = 0; i < NN_GEMM_MR; i++)
                for (j = 0; j < NN_GEMM_NR; j++) C[i * ldc + j] += alpha * acc[i][j];
        } else {
            for (i = 0; i < NN_GEMM_MR; i++)
                for (j = 0; j < NN_GEMM_NR; j++) C[i * ldc + j] = alpha * acc[i][j] + beta * C[i * ldc + j];
        }
    } else {
        for (i = 0; i < mr; i++)
            for (j = 0; j < nr; j++)
                C[i * ldc + j] = beta == 0.0f ? alpha * acc[i][j] : alpha * acc[i][j] + beta * C[i * ldc + j];
    }
}

/* ---- serial drivers ------------------------------------------------------------------------------------- */
/* Pointers already offset to op(A)(0,0), op(B)(0,0), C(0,0); M, N, K > 0. Used when no buffer is available. */
static void nn__sgemm_unpacked(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                               const float *A, int64_t lda, const float *B, int64_t ldb,
                               float beta, float *C, int64_t ldc) {
    int64_t i, j, p;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            float s = 0.0f;
            for (p = 0; p < K; p++)
                s += (ta ? A[p * lda + i] : A[i * lda + p]) * (tb ? B[j * ldb + p] : B[p * ldb + j]);
            C[i * ldc + j] = beta == 0.0f ? alpha * s : alpha * s + beta * C[i * ldc + j];
        }
}

static void nn__sgemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                             const float *A, int64_t lda, const float *B, int64_t ldb,
                             float beta, float *C, int64_t ldc) {
    int64_t kc_max = K < NN_GEMM_KC ? K : NN_GEMM_KC;
    int64_t mc_max = M < NN_GEMM_MC ? (M + NN_GEMM_MR - 1) / NN_GEMM_MR * NN_GEMM_MR : NN_GEMM_MC;
    int64_t nc_max = N < NN_GEMM_NC ? (N + NN_GEMM_NR - 1) / NN_GEMM_NR * NN_GEMM_NR : NN_GEMM_NC;
    size_t a_len = (size_t)(mc_max * kc_max), b_len = (size_t)(nc_max * kc_max);
    int slot;
    void *raw;
    float *buf = nn__gemm_buf_get(a_len + b_len, &slot, &raw), *pack_a, *pack_b;
    int64_t jc, pc, ic, jr, ir;
    int direct_a = !ta && lda <= NN_GEMM_DIRECT_A_MAX_LD;   /* full MR strips read in place; a short last one is packed */
    if (!buf) { nn__sgemm_unpacked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); return; }
    pack_b = buf;
    pack_a = buf + b_len;   /* b_len is a multiple of NR floats: 64-byte aligned when NR is a multiple of 16 */
    for (jc = 0; jc < N; jc += NN_GEMM_NC) {
        int64_t nc = N - jc < NN_GEMM_NC ? N - jc : NN_GEMM_NC;
        for (pc = 0; pc < K; pc += NN_GEMM_KC) {
            int64_t kc = K - pc < NN_GEMM_KC ? K - pc : NN_GEMM_KC;
            float beta_pc = pc == 0 ? beta : 1.0f;   /* later k blocks accumulate onto the first */
            nn__gemm_pack_b(tb, kc, nc, tb ? B + jc * ldb + pc : B + pc * ldb + jc, ldb, pack_b);
            for (ic = 0; ic < M; ic += NN_GEMM_MC) {
                int64_t mc = M - ic < NN_GEMM_MC ? M - ic : NN_GEMM_MC, full = mc / NN_GEMM_MR * NN_GEMM_MR;
                if (!direct_a) nn__gemm_pack_a(ta, mc, kc, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, pack_a);
                else if (full < mc) nn__gemm_pack_a(0, mc - full, kc, A + (ic + full) * lda + pc, lda, pack_a + full * kc);
                for (jr = 0; jr < nc; jr += NN_GEMM_NR) {
                    int64_t nr = nc - jr < NN_GEMM_NR ? nc - jr : NN_GEMM_NR;
                    const float *pb = pack_b + jr * kc;
                    for (ir = 0; ir < mc; ir += NN_GEMM_MR) {
                        int64_t mr = mc - ir < NN_GEMM_MR ? mc - ir : NN_GEMM_MR;
                        if (direct_a && mr == NN_GEMM_MR)
                            nn__gemm_micro(kc, A + (ic + ir) * lda + pc, lda, pb, C + (ic + ir) * ldc + jc + jr, ldc,
                                           mr, nr, alpha, beta_pc);
                        else
                            nn__gemm_micro(kc, pack_a + ir * kc, 0, pb, C + (ic + ir) * ldc + jc + jr, ldc,
                                           mr, nr, alpha, beta_pc);
                    }
                }
            }
        }
    }
    nn__gemm_buf_put(slot, raw);
}

/* ---- entry point ---------------------------------------------------------------------------------------- */
static void nn__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb,
                      float beta, float *C, int64_t ldc) {
    int nthreads = 1;
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {   /* C = beta * C; beta == 0 writes zeros over whatever C held */
        int64_t i, j;
        for (i = 0; i < M; i++)
            for (j = 0; j < N; j++) C[i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[i * ldc + j];
        return;
    }
#ifdef _OPENMP
    if (!omp_in_parallel() && M * N * K >= NN_GEMM_PARALLEL_MIN) nthreads = omp_get_max_threads();
#endif
    if (nthreads <= 1) {
        nn__sgemm_serial(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#ifdef _OPENMP
    if (K >= 8 * (M + N) && K >= 2 * (int64_t)NN_GEMM_KC * nthreads) {
        /* Deep, narrow products (weight gradients dW = dY^T X over many rows, 128 x 128 x 40960): cutting
           M x N would make every thread stream all of one operand from memory; cutting K streams each operand
           once. Thread 0 computes alpha*A0*B0 + beta*C into C, thread t > 0 computes alpha*At*Bt into its own
           M x N partial (one pool buffer for all of them), then the partials are added to C, rows split
           across the threads. */
        size_t part = (size_t)M * (size_t)N;
        int slot;
        void *raw;
        float *partials = nn__gemm_buf_get(part * (size_t)(nthreads - 1), &slot, &raw);
        if (partials) {
            NN_OMP("omp parallel num_threads(nthreads)")
            {
                int tid = omp_get_thread_num(), team = omp_get_num_threads(), u;
                int64_t kstep = ((K + team - 1) / team + NN_GEMM_KC - 1) / NN_GEMM_KC * NN_GEMM_KC;
                int64_t k0 = tid * kstep, kk = K - k0 < kstep ? K - k0 : kstep, i, j, r0, r1;
                float *dst = tid == 0 ? C : partials + (size_t)(tid - 1) * part;
                int64_t ldd = tid == 0 ? ldc : N;
                if (kk > 0)
                    nn__sgemm_serial(ta, tb, M, N, kk, alpha, ta ? A + k0 * lda : A + k0, lda,
                                     tb ? B + k0 : B + k0 * ldb, ldb, tid == 0 ? beta : 0.0f, dst, ldd);
                else   /* more threads than K blocks: nothing to add */
                    for (i = 0; i < M * N; i++) dst[i] = 0.0f;
                NN_OMP("omp barrier")
                r0 = M * tid / team;
                r1 = M * (tid + 1) / team;
                for (u = 1; u < team; u++) {
                    const float *src = partials + (size_t)(u - 1) * part;
                    for (i = r0; i < r1; i++)
                        for (j = 0; j < N; j++) C[i * ldc + j] += src[i * N + j];
                }
            }
            nn__gemm_buf_put(slot, raw);
            return;
        }
        nn__gemm_buf_put(slot, raw);
    }
#endif
    {
        /* Split C into tm x tn rectangles, tm * tn == nthreads, choosing the grid that minimises the
           rectangle's half-perimeter (rows + cols) = the operand data each thread must pack. Edges are cut at
           multiples of MR / NR so that only the last rectangle has partial register tiles. */
        int tm = 1, tn = nthreads, t, team = nthreads;
        int64_t best = -1;
        for (t = 1; t <= nthreads; t++) {
            if (nthreads % t == 0) {
                int64_t rows = (M + t - 1) / t, cols = (N + nthreads / t - 1) / (nthreads / t);
                if (rows < NN_GEMM_MR && t > 1) continue;
                if (cols < NN_GEMM_NR && nthreads / t > 1) continue;
                if (best < 0 || rows + cols < best) { best = rows + cols; tm = t; tn = nthreads / t; }
            }
        }
        if (best < 0) {   /* too small to cut nthreads ways: cut along the longer side only */
            if (M / NN_GEMM_MR >= N / NN_GEMM_NR) { tm = (int)((M + NN_GEMM_MR - 1) / NN_GEMM_MR); tn = 1; }
            else { tn = (int)((N + NN_GEMM_NR - 1) / NN_GEMM_NR); tm = 1; }
            if (tm > nthreads) tm = nthreads;
            if (tn > nthreads) tn = nthreads;
            team = tm * tn;
        }
        NN_OMP("omp parallel for num_threads(team) schedule(static)")
        for (t = 0; t < team; t++) {
            int64_t bi = t / tn, bj = t % tn;
            int64_t mstep = ((M + tm - 1) / tm + NN_GEMM_MR - 1) / NN_GEMM_MR * NN_GEMM_MR;
            int64_t nstep = ((N + tn - 1) / tn + NN_GEMM_NR - 1) / NN_GEMM_NR * NN_GEMM_NR;
            int64_t i0 = bi * mstep, j0 = bj * nstep;
            int64_t rows = M - i0 < mstep ? M - i0 : mstep, cols = N - j0 < nstep ? N - j0 : nstep;
            if (rows > 0 && cols > 0)
                nn__sgemm_serial(ta, tb, rows, cols, K, alpha, ta ? A + i0 : A + i0 * lda, lda,
                                 tb ? B + j0 * ldb : B + j0, ldb, beta, C + i0 * ldc + j0, ldc);
        }
    }
}

/* ------------------------------------------------------------------------------------------- [ops:shape] */

static void nn__reshape_backward(nn_node *n) {
    nn__accumulate(n, 0, nn_reshape(n->gout[0], n->in[0].ndim, n->in[0].shape));
}

nn_tensor *nn_reshape(nn_tensor *a, int ndim, const int64_t *shape) {
    int64_t s[NN_MAX_DIMS] = {0}, known = 1;   /* zeroed: GCC 12 -O3 sees a rank-0 path as uninitialised */
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
    int64_t ist[NN_MAX_DIMS], st[NN_MAX_DIMS], s = 1, inner, rows;
    int d, nd = a->ndim;
    size_t es = nn_dtype_size(a->dtype);
    for (d = nd - 1; d >= 0; d--) { ist[d] = s; s *= a->shape[d]; }
    for (d = 0; d < nd; d++) st[d] = ist[perm[d]];   /* input stride along each output dim */
    if (nd == 0 || o->numel == 0) { if (o->numel) memcpy(o->data, a->data, es); return; }
    inner = o->shape[nd - 1];
    rows = o->numel / inner;
    /* Each thread takes a block of output rows and walks their input offsets with a counter (a division per
       dim per row cost more than the copy of a 16-float row); a row whose input is contiguous too (a swap of
       leading dims, as [B,L,H,D] <-> [B,H,L,D]) is one memcpy. */
    NN_OMP("omp parallel if (o->numel > NN__PAR_MIN)")
    {
#ifdef _OPENMP
        int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
#else
        int64_t t = 0, nt = 1;
#endif
        int64_t r0 = rows * t / nt, r1 = rows * (t + 1) / nt, idx[NN_MAX_DIMS], off = 0, rem = r0, j, r, ls = st[nd - 1];
        int k;
        for (k = nd - 2; k >= 0; k--) { idx[k] = rem % o->shape[k]; rem /= o->shape[k]; off += idx[k] * st[k]; }
        for (r = r0; r < r1; r++) {
            if (ls == 1) memcpy((char *)o->data + r * inner * (int64_t)es, (const char *)a->data + off * (int64_t)es,
                                (size_t)inner * es);
            else if (es == 4) {
                const float *src = (const float *)a->data + off;
                float *dst = (float *)o->data + r * inner;
                for (j = 0; j < inner; j++) dst[j] = src[j * ls];
            } else {
                const char *src = (const char *)a->data + off * (int64_t)es;
                char *dst = (char *)o->data + r * inner * (int64_t)es;
                for (j = 0; j < inner; j++) memcpy(dst + j * (int64_t)es, src + j * ls * (int64_t)es, es);
            }
            for (k = nd - 2; k >= 0; k--) {   /* next row: the odometer over the output's leading dims */
                off += st[k];
                if (++idx[k] < o->shape[k]) break;
                off -= st[k] * o->shape[k];
                idx[k] = 0;
            }
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
    NN_OMP("omp parallel for if (o->numel > NN__PAR_MIN)")
    for (o_i = 0; o_i < outer; o_i++) {
        char *src = (char *)a->data + ((o_i * len + start) * inner) * (int64_t)es;
        char *dst = (char *)o->data + (o_i * olen * inner) * (int64_t)es;
        if (to_input) memcpy(src, dst, (size_t)(olen * inner) * es);
        else memcpy(dst, src, (size_t)(olen * inner) * es);
    }
}

static void nn__slice_backward(nn_node *n) {
    nn_tensor *g = n->gout[0], *gx = nn__new(g->dtype, g->device, n->in[0].ndim, n->in[0].shape);
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
    {   /* floating dtypes that differ are promoted first, as torch.cat (an autocast bf16 output with f32 -> f32) */
        int mixed = 0, all_float = nn_dtype_is_float(ts[0]->dtype);
        for (k = 1; k < n_t; k++) {
            if (!ts[k]) nn_error("nn_concat: tensor %d is NULL", k);
            if (ts[k]->dtype != ts[0]->dtype) mixed = 1;
            if (!nn_dtype_is_float(ts[k]->dtype)) all_float = 0;
        }
        if (mixed && all_float) {
            nn_tensor **c = (nn_tensor **)NN_MALLOC(sizeof(nn_tensor *) * (size_t)n_t), *r;
            if (!c) nn_error("nn_concat: out of host memory");
            for (k = 0; k < n_t; k++) c[k] = nn__as_f32(ts[k]);
            r = nn_concat(n_t, c, dim);
            NN_FREE(c);
            return r;
        }
    }
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
        NN_OMP("omp parallel for if (outer * len * inner > NN__PAR_MIN)")
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
    nn__check_float("nn_expand", a, "input");
    if (a->device == NN_CPU && a->dtype != NN_F32) return nn_cast(nn_expand(nn_cast(a, NN_F32), ndim, shape), a->dtype);
    tmp.ndim = ndim;
    for (d = 0; d < ndim; d++) {
        int ia = a->ndim - ndim + d;
        tmp.shape[d] = shape[d] == -1 && ia >= 0 ? a->shape[ia] : shape[d];
        if (ia >= 0 && a->shape[ia] != 1 && a->shape[ia] != tmp.shape[d])
            nn_error("nn_expand: cannot expand %s to the target (dim %d)", nn__s(a), d);
    }
    nn__broadcast_shape("nn_expand", a, &tmp, s);
    o = nn__new(a->dtype, a->device, ndim, tmp.shape);   /* f16/bf16 on a device: its kernel copies any width */
#ifdef NN_CUDA
    if (a->device == NN_CUDA) nn__cuda_expand(a, o); else
#endif
    {
        /* out = a + 0 with broadcasting, without a tape entry for the zero */
        int64_t st[NN_MAX_DIMS], inner = ndim ? o->shape[ndim - 1] : 1, rows = inner ? o->numel / inner : 0, r;
        nn__bcast_strides(a->ndim, a->shape, ndim, o->shape, st);
        NN_OMP("omp parallel for if (o->numel > NN__PAR_MIN)")
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
    const float *q, *k, *v;         /* [B,H,Lq,D], [B,H,Lk,D], [B,H,Lk,Dv], or [B,L,H*D] (nn_sdpa_heads) */
    const float *o, *go;            /* forward output and its gradient, laid out as q (backward) */
    float *out, *lse, *delta;       /* output as q; [B,H,Lq], [B,H,Lq] */
    float *dq, *dk, *dv, *dbias;    /* NULL when not wanted; dq, dk, dv laid out as q, k, v */
    /* element strides (batch, head, row) of q and dq, k and dk, v and dv, the output and its gradient
       (nn__sdpa_layout); a row's D (or Dv) values are contiguous */
    int64_t qs[3], ks[3], vs[3], os[3];
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

/* packed = 0: [B,H,L,D]; 1: the heads packed in the last dim, [B,L,H*D] (nn_sdpa_heads reads them in place) */
static void nn__sdpa_layout(nn__sdpa_ctx *c, int packed) {
    const int64_t L[4] = {c->Lq, c->Lk, c->Lk, c->Lq}, W[4] = {c->D, c->D, c->Dv, c->Dv};
    int64_t *st[4];
    int t;
    st[0] = c->qs; st[1] = c->ks; st[2] = c->vs; st[3] = c->os;
    for (t = 0; t < 4; t++) {
        st[t][0] = c->H * L[t] * W[t];
        st[t][1] = packed ? W[t] : L[t] * W[t];
        st[t][2] = packed ? c->H * W[t] : W[t];
    }
}
#define NN__SDPA_AT(base, st, b, h, i) ((base) + (b) * (st)[0] + (h) * (st)[1] + (i) * (st)[2])

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
    const float *Q = NN__SDPA_AT(c->q, c->qs, b, h, i0), *K = NN__SDPA_AT(c->k, c->ks, b, h, j0);
    int64_t r, cc;
    nn__sgemm(0, 1, nr, nc, c->D, c->scale, Q, c->qs[2], K, c->ks[2], 0.0f, S, nc);
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

/* x[i] = exp(x[i] - sub) for i < n (every x[i] - sub <= 0), returns the sum */
static float nn__sdpa_exp_sum(float *x, int64_t n, float sub) {
    float sum = 0.0f;
    int64_t i;
    NN_OMP("omp simd reduction(+:sum)")
    for (i = 0; i < n; i++) {
        float e = nn__exp_nonpos(x[i] - sub);
        x[i] = e;
        sum += e;
    }
    return sum;
}

/* max of x[0..n). With the GEMM's vector type: running maxima per lane, updated by a compare and a bitwise
   select (a vcmpps + blend or one vmaxps; GNU C has no vector ?: in C). Otherwise 16 scalar running maxima, which clang
   vectorises but GCC 12 keeps in 16 scalar registers (at D = 16 that scalar pass cost about a tenth of the
   forward). clang refuses "omp simd reduction(max)" over a compare-select, so no pragma. */
#ifdef NN__GEMM_VL
typedef int32_t nn__sdpa_ivec __attribute__((vector_size(NN__GEMM_VL * 4)));
/* m = x > m ? x : m lane-wise: a compare and a bitwise select */
#define NN__SDPA_VMAX(m, xv) do { nn__sdpa_ivec gt_ = (xv) > (m); \
        (m) = (nn__gemm_vec)(((nn__sdpa_ivec)(xv) & gt_) | ((nn__sdpa_ivec)(m) & ~gt_)); } while (0)
NN__GEMM_KERNEL_ATTR
static float nn__sdpa_row_max(const float *x, int64_t n) {
    nn__gemm_vec m0, m1, x0, x1;   /* two independent chains: the compare's latency, not its rate, limits one */
    float mx = -INFINITY;
    int64_t i = 0;
    int l;
    for (l = 0; l < NN__GEMM_VL; l++) m0[l] = -INFINITY;   /* lanes by subscript: memcpy through an array made GCC keep them in memory */
    m1 = m0;
    for (; i + 2 * NN__GEMM_VL <= n; i += 2 * NN__GEMM_VL) {
        memcpy(&x0, x + i, sizeof x0);
        memcpy(&x1, x + i + NN__GEMM_VL, sizeof x1);
        NN__SDPA_VMAX(m0, x0);
        NN__SDPA_VMAX(m1, x1);
    }
    if (i + NN__GEMM_VL <= n) {
        memcpy(&x0, x + i, sizeof x0);
        NN__SDPA_VMAX(m0, x0);
        i += NN__GEMM_VL;
    }
    NN__SDPA_VMAX(m0, m1);
    for (l = 0; l < NN__GEMM_VL; l++) mx = m0[l] > mx ? m0[l] : mx;
    for (; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    return mx;
}
#else
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
#endif

/* ---------------------------------------------------------------------------------------------- forward */

/* acc[nr x Dv] += P[nr x nc] V[nc x Dv] (row-major, ld nc and Dv) for a small value head dim, Dv = VL or
   2 VL (16 or 32 floats on AVX-512, 8 or 16 on AVX2). nn__sgemm would copy the whole tq x tk tile P into
   MR-row strips and V into zero-padded NR-wide strips on every call; with N = Dv = 16 that copy of P costs
   about as much as the product itself, and half of every 12 x 32 micro-tile is padding. Here an MR-row
   register block reads both operands where they lie: one V row is one or two vectors, and each P element is
   broadcast from its row (contiguous in j). Sums run over j in order, so results differ from the packed path
   only by f32 rounding (at D = 16 the forward takes about a third less time). */
#ifdef NN__GEMM_VL
#define NN__SDPA_PV_DIRECT(Dv) ((Dv) == NN__GEMM_VL || (Dv) == 2 * NN__GEMM_VL)
NN__GEMM_KERNEL_ATTR
static void nn__sdpa_pv_direct(int64_t nr, int64_t nc, const float *NN_RESTRICT P, const float *NN_RESTRICT V,
                               int64_t ldv, int64_t Dv, float *NN_RESTRICT acc) {
    const int two = Dv == 2 * NN__GEMM_VL;   /* one or two vectors per row */
    int64_t i0 = 0, j;
    int i;
    for (; i0 + NN_GEMM_MR <= nr; i0 += NN_GEMM_MR) {   /* full MR-row blocks: accumulators in registers */
        nn__gemm_vec a[NN_GEMM_MR][2], v0, v1;
        const float *p = P + i0 * nc;
        float *o = acc + i0 * Dv;
        for (i = 0; i < NN_GEMM_MR; i++) {
            memcpy(&a[i][0], o + i * Dv, sizeof v0);
            if (two) memcpy(&a[i][1], o + i * Dv + NN__GEMM_VL, sizeof v0);
        }
        if (two) {
            for (j = 0; j < nc; j++) {
                memcpy(&v0, V + j * ldv, sizeof v0);
                memcpy(&v1, V + j * ldv + NN__GEMM_VL, sizeof v1);
                for (i = 0; i < NN_GEMM_MR; i++) {
                    const float pij = p[i * nc + j];
                    a[i][0] = a[i][0] + v0 * pij;
                    a[i][1] = a[i][1] + v1 * pij;
                }
            }
        } else {
            for (j = 0; j < nc; j++) {
                memcpy(&v0, V + j * ldv, sizeof v0);
                for (i = 0; i < NN_GEMM_MR; i++) a[i][0] = a[i][0] + v0 * p[i * nc + j];
            }
        }
        for (i = 0; i < NN_GEMM_MR; i++) {
            memcpy(o + i * Dv, &a[i][0], sizeof v0);
            if (two) memcpy(o + i * Dv + NN__GEMM_VL, &a[i][1], sizeof v0);
        }
    }
    for (; i0 < nr; i0++) {   /* the last few rows of the last query tile, one at a time */
        nn__gemm_vec a0, a1, v0, v1;
        const float *p = P + i0 * nc;
        float *o = acc + i0 * Dv;
        memcpy(&a0, o, sizeof a0);
        memcpy(&a1, two ? o + NN__GEMM_VL : o, sizeof a1);
        for (j = 0; j < nc; j++) {
            memcpy(&v0, V + j * ldv, sizeof v0);
            a0 = a0 + v0 * p[j];
            if (two) {
                memcpy(&v1, V + j * ldv + NN__GEMM_VL, sizeof v1);
                a1 = a1 + v1 * p[j];
            }
        }
        memcpy(o, &a0, sizeof a0);
        if (two) memcpy(o + NN__GEMM_VL, &a1, sizeof a1);
    }
}
#endif

static void nn__sdpa_fwd_tile(const nn__sdpa_ctx *c, int64_t b, int64_t h, int64_t qt) {
    float *S = c->ws + (int64_t)nn__sdpa_thread() * c->ws_stride;
    float *acc = S + c->tq * c->tk, *m = acc + c->tq * c->Dv, *l = m + c->tq, *z = l + c->tq;
    int64_t i0 = qt * c->tq, nr = c->Lq - i0 < c->tq ? c->Lq - i0 : c->tq;
    int64_t jend = c->Lk, j0, r, cc, d, Dv = c->Dv;
    const float *V = NN__SDPA_AT(c->v, c->vs, b, h, 0);
    float *O = NN__SDPA_AT(c->out, c->os, b, h, i0);
    const int64_t ldv = c->vs[2], ldo = c->os[2];
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
            alpha = nn__exp_nonpos(m[r] - mnew); /* m = -inf: 0, and acc, l are still 0 */
            l[r] = l[r] * alpha + nn__sdpa_exp_sum(s, nc, mnew);
            if (alpha != 1.0f) for (d = 0; d < Dv; d++) acc[r * Dv + d] *= alpha;
            m[r] = mnew;
            if (c->dropout) {
                nn__sdpa_keep_row(c, b, h, i0 + r, j0, nc, z);
                for (cc = 0; cc < nc; cc++) s[cc] *= z[cc];
            }
        }
        if (!any) continue;
#ifdef NN__GEMM_VL
        if (NN__SDPA_PV_DIRECT(Dv)) { nn__sdpa_pv_direct(nr, nc, S, V + j0 * ldv, ldv, Dv, acc); continue; }
#endif
        nn__sgemm(0, 0, nr, Dv, nc, 1.0f, S, nc, V + j0 * ldv, ldv, 1.0f, acc, Dv);
    }
    for (r = 0; r < nr; r++) {
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        for (d = 0; d < Dv; d++) O[r * ldo + d] = acc[r * Dv + d] * inv;
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
    int64_t D = c->D, Dv = c->Dv, ldq = c->qs[2], ldk = c->ks[2], ldv = c->vs[2], ldo = c->os[2];
    int64_t j0 = kt * c->tk, nc = c->Lk - j0 < c->tk ? c->Lk - j0 : c->tk, i0, r, cc;
    const float *Kj = NN__SDPA_AT(c->k, c->ks, b, h, j0), *Vj = NN__SDPA_AT(c->v, c->vs, b, h, j0);
    float *dKj = c->dk ? NN__SDPA_AT(c->dk, c->ks, b, h, j0) : NULL;
    float *dVj = c->dv ? NN__SDPA_AT(c->dv, c->vs, b, h, j0) : NULL;
    for (r = 0; r < nc; r++) {
        if (dKj) memset(dKj + r * ldk, 0, sizeof(float) * (size_t)D);
        if (dVj) memset(dVj + r * ldv, 0, sizeof(float) * (size_t)Dv);
    }
    /* causal: query rows i < j0 see none of these keys; start at the tile holding row j0 */
    for (i0 = c->causal ? (j0 / c->tq) * c->tq : 0; i0 < c->Lq; i0 += c->tq) {
        int64_t nr = c->Lq - i0 < c->tq ? c->Lq - i0 : c->tq;
        const float *Qi = NN__SDPA_AT(c->q, c->qs, b, h, i0), *dOi = NN__SDPA_AT(c->go, c->os, b, h, i0);
        nn__sdpa_scores(c, b, h, i0, nr, j0, nc, S);
        nn__sgemm(0, 1, nr, nc, Dv, 1.0f, dOi, ldo, Vj, ldv, 0.0f, dP, nc);
        nn__sdpa_bwd_probs(c, b, h, i0, nr, j0, nc, S, dP);
        if (dVj) nn__sgemm(1, 0, nc, Dv, nr, 1.0f, S, nc, dOi, ldo, 1.0f, dVj, ldv);
        if (dKj) nn__sgemm(1, 0, nc, D, nr, c->scale, dP, nc, Qi, ldq, 1.0f, dKj, ldk);
        if (with_dq)
            nn__sgemm(0, 0, nr, D, nc, c->scale, dP, nc, Kj, ldk, 1.0f, NN__SDPA_AT(c->dq, c->qs, b, h, i0), ldq);
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
    int64_t D = c->D, Dv = c->Dv, ldq = c->qs[2], ldk = c->ks[2], ldv = c->vs[2], ldo = c->os[2];
    int64_t i0 = qt * c->tq, nr = c->Lq - i0 < c->tq ? c->Lq - i0 : c->tq, jend = c->Lk, j0, r;
    const float *dOi = NN__SDPA_AT(c->go, c->os, b, h, i0);
    float *dQi = NN__SDPA_AT(c->dq, c->qs, b, h, i0);
    for (r = 0; r < nr; r++) memset(dQi + r * ldq, 0, sizeof(float) * (size_t)D);
    if (c->causal && i0 + nr < jend) jend = i0 + nr;
    for (j0 = 0; j0 < jend; j0 += c->tk) {
        int64_t nc = jend - j0 < c->tk ? jend - j0 : c->tk;
        nn__sdpa_scores(c, b, h, i0, nr, j0, nc, S);
        nn__sgemm(0, 1, nr, nc, Dv, 1.0f, dOi, ldo, NN__SDPA_AT(c->v, c->vs, b, h, j0), ldv, 0.0f, dP, nc);
        nn__sdpa_bwd_probs(c, b, h, i0, nr, j0, nc, S, dP);
        nn__sgemm(0, 0, nr, D, nc, c->scale, dP, nc, NN__SDPA_AT(c->k, c->ks, b, h, j0), ldk, 1.0f, dQi, ldq);
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
    if (n->i[3]) {   /* nn_sdpa_heads: [B,L,H*D] */
        c.B = q->shape[0]; c.H = n->i[3]; c.Lq = q->shape[1]; c.D = q->shape[2] / c.H;
        c.Lk = k->shape[1]; c.Dv = v->shape[2] / c.H;
    } else {
        c.B = q->shape[0]; c.H = q->shape[1]; c.Lq = q->shape[2]; c.D = q->shape[3];
        c.Lk = k->shape[2]; c.Dv = v->shape[3];
    }
    nn__sdpa_layout(&c, n->i[3] != 0);
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
    if (want_q) { dq = nn__new(NN_F32, NN_CPU, q->ndim, q->shape); c.dq = (float *)dq->data; }
    if (want_k) { dk = nn__new(NN_F32, NN_CPU, k->ndim, k->shape); c.dk = (float *)dk->data; }
    if (want_v) { dv = nn__new(NN_F32, NN_CPU, v->ndim, v->shape); c.dv = (float *)dv->data; }
    delta = nn__new(NN_F32, NN_CPU, 3, lse->shape);
    c.delta = (float *)delta->data;
    {   /* Delta_i = dO_i . O_i */
        int64_t rows = c.B * c.H * c.Lq, i;
#ifdef _OPENMP
#pragma omp parallel for schedule(static)
#endif
        for (i = 0; i < rows; i++) {   /* row i = ((b*H + h)*Lq + l) */
            const int64_t l = i % c.Lq, h = (i / c.Lq) % c.H, b = i / (c.Lq * c.H);
            const float *a = NN__SDPA_AT(c.go, c.os, b, h, l), *o = NN__SDPA_AT(c.o, c.os, b, h, l);
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

/* q, k, v: present, one device, float dtypes the device takes */
static void nn__sdpa_check_qkv(const char *op, nn_tensor *q, nn_tensor *k, nn_tensor *v) {
    if (!q || !k || !v) nn_error("%s: q, k and v must not be NULL", op);
#ifdef NN_CUDA
    if (q->device == NN_CUDA && (q->dtype == NN_F16 || q->dtype == NN_BF16)) {   /* low precision: on the GPU */
        if (k->dtype != q->dtype || v->dtype != q->dtype)
            nn_error("%s: q, k and v must share one dtype, got %s, %s, %s", op, nn_dtype_name(q->dtype),
                     nn_dtype_name(k->dtype), nn_dtype_name(v->dtype));
    } else
#endif
    {
        nn__check_f32(op, q, "q");
        nn__check_f32(op, k, "k");
        nn__check_f32(op, v, "v");
    }
    if (k->device != q->device || v->device != q->device)
        nn_error("%s: q, k and v must be on one device (q on %s, k on %s, v on %s)", op,
                 nn_device_name(q->device), nn_device_name(k->device), nn_device_name(v->device));
}

static void nn__sdpa_check_opts(const char *op, nn_tensor *q, nn_tensor *v, const nn_sdpa_opts *o, nn__sdpa_shape *s);

static void nn__sdpa_check(const char *op, nn_tensor *q, nn_tensor *k, nn_tensor *v, const nn_sdpa_opts *o,
                           nn__sdpa_shape *s) {
    char a[96], b[96], cs[96];
    nn__sdpa_check_qkv(op, q, k, v);
    if (q->ndim != 4 || k->ndim != 4 || v->ndim != 4)
        nn_error("%s: want q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv]; got q %s, k %s, v %s", op,
                 nn_shape_str(q, a, sizeof a), nn_shape_str(k, b, sizeof b), nn_shape_str(v, cs, sizeof cs));
    if (k->shape[0] != q->shape[0] || v->shape[0] != q->shape[0] || k->shape[1] != q->shape[1] ||
        v->shape[1] != q->shape[1] || k->shape[3] != q->shape[3] || v->shape[2] != k->shape[2])
        nn_error("%s: shapes disagree: q %s, k %s, v %s (want q [B,H,Lq,D], k [B,H,Lk,D], v [B,H,Lk,Dv])", op,
                 nn_shape_str(q, a, sizeof a), nn_shape_str(k, b, sizeof b), nn_shape_str(v, cs, sizeof cs));
    s->B = q->shape[0]; s->H = q->shape[1]; s->Lq = q->shape[2]; s->D = q->shape[3];
    s->Lk = k->shape[2]; s->Dv = v->shape[3];
    nn__sdpa_check_opts(op, q, v, o, s);
}

/* mask, bias, scale, dropout and the GPU's limits, given s's sizes */
static void nn__sdpa_check_opts(const char *op, nn_tensor *q, nn_tensor *v, const nn_sdpa_opts *o, nn__sdpa_shape *s) {
    char a[96], cs[96];
    (void)v; (void)cs;   /* only the GPU's limits name v */
    s->full[0] = s->B; s->full[1] = s->H; s->full[2] = s->Lq; s->full[3] = s->Lk;
    s->scale = 0.0f; s->p = 0.0f;
    if (o && o->mask) {
        if (o->mask->dtype != NN_BOOL && o->mask->dtype != NN_U8)
            nn_error("%s: mask must be bool or u8 (true = attend), got %s", op, nn_dtype_name(o->mask->dtype));
        if (o->mask->device != q->device)
            nn_error("%s: mask is on %s, q on %s", op, nn_device_name(o->mask->device), nn_device_name(q->device));
        if (!nn__sdpa_bcast_strides(o->mask, s->full, s->ms))
            nn_error("%s: mask %s does not broadcast to [B,H,Lq,Lk] = [%lld,%lld,%lld,%lld]", op,
                     nn_shape_str(o->mask, a, sizeof a), (long long)s->B, (long long)s->H, (long long)s->Lq,
                     (long long)s->Lk);
    }
    if (o && o->bias) {
        if (o->bias->dtype != q->dtype) nn__check_f32(op, o->bias, "bias");   /* f32, or the q dtype */
        if (o->bias->device != q->device)
            nn_error("%s: bias is on %s, q on %s", op, nn_device_name(o->bias->device), nn_device_name(q->device));
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
#ifdef NN_CUDA
    if (q->device == NN_CUDA) {
        int lowp = q->dtype != NN_F32;
        if (lowp && (s->D % 8 || s->Dv % 8 || s->D > 128 || s->Dv > 128))
            nn_error("%s: f16/bf16 on cuda need head dims that are multiples of 8, at most 128; got q %s, v %s",
                     op, nn_shape_str(q, a, sizeof a), nn_shape_str(v, cs, sizeof cs));
        if (!lowp && (s->D > 256 || s->Dv > 256))
            nn_error("%s: f32 on cuda takes head dims up to 256; got q %s, v %s", op, nn_shape_str(q, a, sizeof a),
                     nn_shape_str(v, cs, sizeof cs));
        if (s->B > 2147483647 || s->H > 2147483647 || s->Lq > 2147483647 || s->Lk > 2147483647)
            nn_error("%s: sizes beyond 2^31 on cuda: q %s, v %s", op, nn_shape_str(q, a, sizeof a),
                     nn_shape_str(v, cs, sizeof cs));
    }
#endif
    if (o && !(o->dropout_p >= 0.0 && o->dropout_p <= 1.0))
        nn_error("%s: dropout_p must be in [0, 1], got %g", op, o ? o->dropout_p : 0.0);
    if (o) s->p = (float)o->dropout_p;
}

#ifdef NN_CUDA
/* The GPU path (nn_cuda.cu, section sdpa): same semantics, same dropout stream, same saved tensors (O, LSE).
   q, k, v in f32 or f16/bf16; O has q's dtype, LSE is f32; mask (bool/u8) and bias (f32 or q's dtype) stay on
   the device and are read through broadcast strides. */
static int nn__sdpa_cuda_dtype(nn_dtype dt) { return dt == NN_F16 ? 1 : dt == NN_BF16 ? 2 : 0; }

/* element strides (batch, head, row) of a contiguous [B,H,L,D] tensor (heads = 0), or of [B,L,heads*D] (the
   heads packed in the last dim, nn_sdpa_heads) */
static void nn__sdpa_cuda_st(const nn_tensor *t, int64_t heads, int64_t st[3]) {
    if (heads) { st[2] = t->shape[2]; st[1] = t->shape[2] / heads; st[0] = t->shape[1] * st[2]; return; }
    st[2] = t->shape[3]; st[1] = t->shape[2] * st[2]; st[0] = t->shape[1] * st[1];
}

static void nn__sdpa_cuda_args_of(nn__cuda_sdpa_args *a, const nn_tensor *q, const nn_tensor *k, const nn_tensor *v,
                                  int64_t heads, const nn_tensor *mask, const nn_tensor *bias, double scale, double p,
                                  int causal) {
    int64_t full[4];
    memset(a, 0, sizeof *a);
    a->dtype = nn__sdpa_cuda_dtype(q->dtype);
    if (heads) {
        a->B = (int)q->shape[0]; a->H = (int)heads; a->Lq = (int)q->shape[1]; a->D = (int)(q->shape[2] / heads);
        a->Lk = (int)k->shape[1]; a->Dv = (int)(v->shape[2] / heads);
    } else {
        a->B = (int)q->shape[0]; a->H = (int)q->shape[1]; a->Lq = (int)q->shape[2]; a->D = (int)q->shape[3];
        a->Lk = (int)k->shape[2]; a->Dv = (int)v->shape[3];
    }
    a->q = q->data; a->k = k->data; a->v = v->data;
    nn__sdpa_cuda_st(q, heads, a->sq); nn__sdpa_cuda_st(k, heads, a->sk); nn__sdpa_cuda_st(v, heads, a->sv);
    full[0] = a->B; full[1] = a->H; full[2] = a->Lq; full[3] = a->Lk;
    if (mask) { a->mask = (const uint8_t *)mask->data; nn__sdpa_bcast_strides(mask, full, a->ms); }
    if (bias) {
        a->bias = bias->data;
        a->bias_dtype = nn__sdpa_cuda_dtype(bias->dtype);
        nn__sdpa_bcast_strides(bias, full, a->bs);
    }
    a->causal = causal != 0;
    a->scale = (float)scale;
    a->dropout_p = (float)p;
}

static void nn__sdpa_cuda_backward(nn_node *n) {
    nn_tensor *q = n->saved[0], *k = n->saved[1], *v = n->saved[2], *out = n->saved[3], *lse = n->saved[4];
    nn_tensor *mask = n->i[1] >= 0 ? n->saved[n->i[1]] : NULL, *bias = n->i[2] >= 0 ? n->saved[n->i[2]] : NULL;
    nn_tensor *go = n->gout[0], *dq = NULL, *dk = NULL, *dv = NULL, *dbias = NULL;
    nn__cuda_sdpa_args a;
    nn_dtype gdt;
    int64_t heads = n->i[3];
    if (!go) return;
    nn__sdpa_cuda_args_of(&a, q, k, v, heads, mask, bias, n->a[0], n->a[1], (int)n->i[0]);
    /* f16/bf16: an upstream gradient in f32 is rounded to q's dtype as the kernels read it (the backward's first
       pass); dq, dk, dv are written in the dtype their gradients accumulate in (the inputs' edges: q's dtype, as
       torch; f32 only where an edge is f32), so no cast pass follows either */
    if (go->dtype != q->dtype) {
        if (go->dtype == NN_F32) a.dout_f32 = 1;
        else go = nn_cast(go, q->dtype);
    }
    a.grad_f32 = q->dtype != NN_F32 && n->in[0].dtype == NN_F32;
    a.seed = n->rng.seed; a.offset = n->rng.offset;
    a.o = out->data; nn__sdpa_cuda_st(out, heads, a.so);
    a.lse = (float *)lse->data;
    a.dout = go->data; nn__sdpa_cuda_st(go, heads, a.sdo);
    gdt = a.grad_f32 ? NN_F32 : q->dtype;
    if (nn__needs_grad(n, 0)) { dq = nn__new(gdt, NN_CUDA, q->ndim, q->shape); a.dq = dq->data; nn__sdpa_cuda_st(dq, heads, a.sdq); }
    if (nn__needs_grad(n, 1)) { dk = nn__new(gdt, NN_CUDA, k->ndim, k->shape); a.dk = dk->data; nn__sdpa_cuda_st(dk, heads, a.sdk); }
    if (nn__needs_grad(n, 2)) { dv = nn__new(gdt, NN_CUDA, v->ndim, v->shape); a.dv = dv->data; nn__sdpa_cuda_st(dv, heads, a.sdv); }
    if (bias && n->n_in > 3 && nn__needs_grad(n, 3)) {
        /* f32, the bias's own (broadcast) shape: the kernel sums over the broadcast dims */
        dbias = nn__new(NN_F32, NN_CUDA, bias->ndim, bias->shape);
        if ((int64_t)a.B * a.H * a.Lq * a.Lk == 0) nn_fill_(dbias, 0.0);
        else a.dbias = (float *)dbias->data;
    }
    if (q->numel && (dq || dk || dv || a.dbias)) nn__cuda_sdpa_bwd(&a);
    else {   /* nothing to attend: zero gradients */
        if (dq) nn_fill_(dq, 0.0);
        if (dk) nn_fill_(dk, 0.0);
        if (dv) nn_fill_(dv, 0.0);
    }
    if (dq) nn__accumulate(n, 0, dq);
    if (dk) nn__accumulate(n, 1, dk);
    if (dv) nn__accumulate(n, 2, dv);
    if (dbias) nn__accumulate(n, 3, dbias);
}

/* heads: 0 for q [B,H,Lq,D] (nn_sdpa), else the heads packed in q [B,Lq,heads*D] (nn_sdpa_heads) */
static nn_tensor *nn__sdpa_cuda(nn_tensor *q, nn_tensor *k, nn_tensor *v, const nn_sdpa_opts *opts,
                                const nn__sdpa_shape *s, int64_t heads) {
    nn__cuda_sdpa_args a;
    nn_tensor *out, *lse, *ins[4];
    int64_t oshape[4], lshape[3];
    nn_node *n;
    nn__sdpa_cuda_args_of(&a, q, k, v, heads, opts->mask, opts->bias, s->scale, s->p, opts->causal);
    if (s->p > 0.0f) {
        /* exactly as the CPU path: one value per (b,h,i,j), index ((b*H+h)*Lq+i)*Lk+j, regenerated in backward */
        a.offset = nn_rng_reserve((uint64_t)(s->B * s->H * s->Lq * s->Lk));
        a.seed = nn_rng_get().seed;
    }
    if (heads) { oshape[0] = s->B; oshape[1] = s->Lq; oshape[2] = s->H * s->Dv; }
    else { oshape[0] = s->B; oshape[1] = s->H; oshape[2] = s->Lq; oshape[3] = s->Dv; }
    lshape[0] = s->B; lshape[1] = s->H; lshape[2] = s->Lq;
    out = nn__new(q->dtype, NN_CUDA, heads ? 3 : 4, oshape);
    lse = nn__new(NN_F32, NN_CUDA, 3, lshape);
    a.o = out->data; nn__sdpa_cuda_st(out, heads, a.so);
    a.lse = (float *)lse->data;
    if (s->Lk == 0) {   /* no keys: every row is fully masked */
        nn_fill_(out, 0.0);
        nn_fill_(lse, -INFINITY);
    } else {
        nn__cuda_sdpa_fwd(&a);
    }
    ins[0] = q; ins[1] = k; ins[2] = v; ins[3] = opts->bias;
    n = nn__record("sdpa", nn__sdpa_cuda_backward, opts->bias ? 4 : 3, ins, 1, &out);
    if (n) {
        nn__save(n, q); nn__save(n, k); nn__save(n, v); nn__save(n, out); nn__save(n, lse);
        n->i[0] = opts->causal != 0;
        n->i[1] = -1; n->i[2] = -1;
        n->i[3] = heads;
        if (opts->mask) { n->i[1] = n->n_saved; nn__save(n, opts->mask); }
        if (opts->bias) { n->i[2] = n->n_saved; nn__save(n, opts->bias); }
        n->a[0] = s->scale;
        n->a[1] = s->p;
        n->rng.seed = a.seed;
        n->rng.offset = a.offset;
    }
    nn_tensor_free(lse);
    return out;
}
#endif

/* The CPU op after the checks: heads = 0 for [B,H,L,D] tensors (nn_sdpa), else the heads packed in the last
   dim, read and written in place (nn_sdpa_heads) */
static nn_tensor *nn__sdpa_cpu(nn_tensor *q, nn_tensor *k, nn_tensor *v, const nn_sdpa_opts *opts,
                               const nn__sdpa_shape *sp, int64_t heads) {
    nn__sdpa_shape s = *sp;
    nn__sdpa_ctx c;
    nn_tensor *out, *lse, *ws, *ins[4];
    int64_t oshape[4], lshape[3], ws_shape[1], nq, units, u;
    int threads = nn__sdpa_max_threads();
    nn_node *n;
    memset(&c, 0, sizeof c);
    c.B = s.B; c.H = s.H; c.Lq = s.Lq; c.Lk = s.Lk; c.D = s.D; c.Dv = s.Dv;
    nn__sdpa_layout(&c, heads != 0);
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
    if (heads) { oshape[1] = s.Lq; oshape[2] = s.H * s.Dv; }
    lshape[0] = s.B; lshape[1] = s.H; lshape[2] = s.Lq;
    out = nn__new(NN_F32, NN_CPU, heads ? 3 : 4, oshape);
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
        n->i[3] = heads;
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

nn_tensor *nn_sdpa(nn_tensor *q, nn_tensor *k, nn_tensor *v, const nn_sdpa_opts *opts) {
    nn__sdpa_shape s;
    nn_sdpa_opts none;
    memset(&none, 0, sizeof none);
    if (!opts) opts = &none;
    if (nn_autocast_dtype() != NN_F32) {   /* autocast: q, k, v, a float bias and the output in low precision */
        nn_sdpa_opts o = *opts;
        nn_dtype dt = nn__autocast_enter();
        o.bias = nn__autocast_arg(o.bias, dt);
        return nn__autocast_leave(nn_sdpa(nn__autocast_arg(q, dt), nn__autocast_arg(k, dt), nn__autocast_arg(v, dt), &o), dt);
    }
    nn__sdpa_check("nn_sdpa", q, k, v, opts, &s);
#ifdef NN_CUDA
    if (q->device == NN_CUDA) return nn__sdpa_cuda(q, k, v, opts, &s, 0);
#endif
    return nn__sdpa_cpu(q, k, v, opts, &s, 0);
}

nn_tensor *nn_sdpa_heads(nn_tensor *q, nn_tensor *k, nn_tensor *v, int heads, const nn_sdpa_opts *opts) {
    static const char *op = "nn_sdpa_heads";
    nn__sdpa_shape s;
    int64_t H = heads;
    char a[96], b[96], cs[96];
    nn_sdpa_opts none;
    memset(&none, 0, sizeof none);
    if (!opts) opts = &none;
    if (nn_autocast_dtype() != NN_F32) {   /* as nn_sdpa */
        nn_sdpa_opts ao = *opts;
        nn_dtype dt = nn__autocast_enter();
        ao.bias = nn__autocast_arg(ao.bias, dt);
        return nn__autocast_leave(nn_sdpa_heads(nn__autocast_arg(q, dt), nn__autocast_arg(k, dt),
                                                nn__autocast_arg(v, dt), heads, &ao), dt);
    }
    nn__sdpa_check_qkv(op, q, k, v);
    if (q->ndim != 3 || k->ndim != 3 || v->ndim != 3 || heads <= 0 || k->shape[0] != q->shape[0] ||
        v->shape[0] != q->shape[0] || v->shape[1] != k->shape[1] || k->shape[2] != q->shape[2] ||
        q->shape[2] % H || v->shape[2] % H)
        nn_error("%s: want q [B,Lq,heads*D], k [B,Lk,heads*D], v [B,Lk,heads*Dv] with heads = %d dividing the last "
                 "dims; got q %s, k %s, v %s", op, heads, nn_shape_str(q, a, sizeof a), nn_shape_str(k, b, sizeof b),
                 nn_shape_str(v, cs, sizeof cs));
    s.B = q->shape[0]; s.H = H; s.Lq = q->shape[1]; s.Lk = k->shape[1]; s.D = q->shape[2] / H; s.Dv = v->shape[2] / H;
    nn__sdpa_check_opts(op, q, v, opts, &s);
#ifdef NN_CUDA
    if (q->device == NN_CUDA) return nn__sdpa_cuda(q, k, v, opts, &s, H);
#endif
    return nn__sdpa_cpu(q, k, v, opts, &s, H);   /* the CPU kernels read the packed heads in place too */
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
#ifdef NN_CUDA
    if (valid->device == NN_CUDA) {   /* a small [B,Lk] table: built on the host, moved over */
        nn_tensor *vh = nn_to(valid, NN_CPU), *mh = nn_key_padding_mask(vh);
        m = nn_to(mh, NN_CUDA);
        nn_tensor_free(mh);
        nn_tensor_free(vh);
        return m;
    }
#endif
    if (valid->device != NN_CPU) nn_error("nn_key_padding_mask: valid is on %s", nn_device_name(valid->device));
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

/* ================================================================================================ [ops:conv] */
/* Vision ops, NCHW f32 on the CPU, each with its backward:
     nn_conv2d / nn_conv2d_ex, nn_upsample_nearest2d, nn_avg_pool2d, nn_adaptive_avg_pool2d, nn_group_norm.
   (NN_OMP and the includes: the top of [impl].) */

static int nn__conv_threads(void) {
#ifdef _OPENMP
    return omp_in_parallel() ? 1 : omp_get_max_threads();
#else
    return 1;
#endif
}

/* the checks every op of this section starts with: f32 (any float type when any_float: conv2d's low-precision
   GPU path), on the CPU, `nd` dims (nd < 0: at least -nd) */
static void nn__vision_check_dt(const char *op, const nn_tensor *t, int nd, const char *what, int any_float) {
    char buf[96];
    if (!t) { nn_error("%s: %s is NULL", op, what); return; }
    if (any_float) nn__check_float(op, t, what);
    else nn__check_f32(op, t, what);
#ifndef NN_CUDA
    if (t->device != NN_CPU)
        nn_error("%s: %s is on %s; this build has no CUDA", op, what, nn_device_name(t->device));
#endif
    if ((nd >= 0 && t->ndim != nd) || (nd < 0 && t->ndim < -nd))
        nn_error("%s: %s must have %s%d dims, got %s", op, what, nd < 0 ? "at least " : "", nd < 0 ? -nd : nd,
                 nn_shape_str(t, buf, sizeof buf));
}
static void nn__vision_check(const char *op, const nn_tensor *t, int nd, const char *what) {
    nn__vision_check_dt(op, t, nd, what, 0);
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
    NN_OMP("omp parallel for schedule(static) if(rows * nc > NN__PAR_MIN)")
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
    NN_OMP("omp parallel for schedule(static) if(work > NN__PAR_MIN)")
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

/* Patchify convolutions (kernel = stride, no padding or dilation, one group: ViT's patch embedding). The
   patches do not overlap, so the whole batch is one GEMM per chunk of images, [patches, K] @ W^T, instead of
   one small GEMM per image (at 8 x 8 patches an image, a 64-column product: two thirds of the ViT step's conv
   time went to packing and fork/join). P holds the patches of images [n0, n1): row (n, ho, wo), column
   (c, i, j), the order of W's [Cout, C, kh, kw]. Chunks keep P within NN_CONV_COLS_BYTES. */
static int nn__conv_is_patchify(const nn__conv_geom *g) {
    return g->groups == 1 && g->ph == 0 && g->pw == 0 && g->dh == 1 && g->dw == 1 && g->sh == g->kh &&
           g->sw == g->kw && g->kh * g->kw > 1;
}

/* the chunk's workspaces, patches P [per*HoWo, K] and output rows [per*HoWo, Cout]; returns per, the images
   a chunk takes */
static int64_t nn__patch_workspace(const nn__conv_geom *g, nn_tensor **P, nn_tensor **rows) {
    const int64_t K = g->C * g->kh * g->kw, HoWo = g->Ho * g->Wo;
    int64_t per = NN_CONV_COLS_BYTES / (int64_t)sizeof(float) / (HoWo * K), pn, on;
    per = per < 1 ? 1 : per > g->N ? g->N : per;
    pn = per * HoWo * K;
    on = per * HoWo * g->Cout;
    *P = nn__new(NN_F32, NN_CPU, 1, &pn);
    *rows = nn__new(NN_F32, NN_CPU, 1, &on);
    return per;
}

/* to_patches: P <- x's patches of images [n0, n1); else x's patch region <- P (the patches of dx; the rows
   and columns past Ho*kh, Wo*kw that no patch covers are left as they are) */
static void nn__patches(float *x, const nn__conv_geom *g, int64_t n0, int64_t n1, float *P, int to_patches) {
    const int64_t K = g->C * g->kh * g->kw, rows = (n1 - n0) * g->Ho;
    int64_t r;
    NN_OMP("omp parallel for schedule(static) if(rows * g->Wo * K > NN__PAR_MIN)")
    for (r = 0; r < rows; r++) {   /* one (image, patch row) */
        const int64_t n = n0 + r / g->Ho, ho = r % g->Ho;
        int64_t wo, c, i;
        for (wo = 0; wo < g->Wo; wo++) {
            float *prow = P + (r * g->Wo + wo) * K;
            for (c = 0; c < g->C; c++)
                for (i = 0; i < g->kh; i++) {
                    float *xs = x + ((n * g->C + c) * g->H + ho * g->kh + i) * g->W + wo * g->kw;
                    float *ps = prow + (c * g->kh + i) * g->kw;
                    if (to_patches) memcpy(ps, xs, sizeof(float) * (size_t)g->kw);
                    else memcpy(xs, ps, sizeof(float) * (size_t)g->kw);
                }
        }
    }
}

/* dst[n, co, p] <- src[(n - n0) * HoWo + p, co] for n in [n0, n1) (to_nchw), or the other way */
static void nn__patch_transpose(float *nchw, float *rows, const nn__conv_geom *g, int64_t n0, int64_t n1, int to_nchw) {
    const int64_t HoWo = g->Ho * g->Wo, planes = (n1 - n0) * g->Cout;
    int64_t pl;
    NN_OMP("omp parallel for schedule(static) if(planes * HoWo > NN__PAR_MIN)")
    for (pl = 0; pl < planes; pl++) {
        const int64_t n = pl / g->Cout, co = pl % g->Cout;
        float *plane = nchw + ((n0 + n) * g->Cout + co) * HoWo;
        const int64_t base = n * HoWo * g->Cout + co;
        int64_t p;
        if (to_nchw) for (p = 0; p < HoWo; p++) plane[p] = rows[base + p * g->Cout];
        else for (p = 0; p < HoWo; p++) rows[base + p * g->Cout] = plane[p];
    }
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

#ifdef NN_CUDA
    if (gout->device == NN_CUDA) {
        const int st[2] = {(int)g.sh, (int)g.sw}, pd[2] = {(int)g.ph, (int)g.pw}, dl[2] = {(int)g.dh, (int)g.dw};
        /* i[7] != 0: saved[0] is the forward's NHWC copy of x ([N, H, W, C]), x's dtype i[7] - 1 */
        const int keep = n->i[7] != 0;
        const nn_dtype xdt = keep ? (nn_dtype)(n->i[7] - 1) : x->dtype;
        int64_t xs[4];
        nn_tensor *cb;
        if (keep) { xs[0] = x->shape[0]; xs[1] = x->shape[3]; xs[2] = x->shape[1]; xs[3] = x->shape[2]; }
        else memcpy(xs, x->shape, sizeof xs);
        /* gradients in their tensors' dtypes (w and b share one: f32, or the low-precision weight's; x's is that
           or f32) */
        cb = need_b ? nn__new(w->dtype, NN_CUDA, 1, &g.Cout) : NULL;
        if (need_x) dx = nn__new(xdt, NN_CUDA, 4, xs);
        if (need_w) dw = nn__new(w->dtype, NN_CUDA, w->ndim, w->shape);
        if (cb || dx || dw)
            nn__cuda_conv2d_bwd(gout, keep ? NULL : x, keep ? x : NULL, xs, w, st, pd, dl, (int)g.groups, dx, dw, cb);
        if (dx) nn__accumulate(n, 0, dx);
        if (dw) nn__accumulate(n, 1, dw);
        if (cb) nn__accumulate(n, 2, cb);
        return;
    }
#endif
    if (need_b) {
        int64_t co;
        nn_tensor *db = nn__new(NN_F32, NN_CPU, 1, &g.Cout);
        float *dbd = (float *)db->data;
        NN_OMP("omp parallel for schedule(static) if(g.N * g.Cout * HoWo > NN__PAR_MIN)")
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
    if (nn__conv_is_patchify(&g)) {
        /* per chunk: dOut as rows [patches, Cout]; dW (+)= dOut^T @ patches; dpatches = dOut @ W into dx */
        nn_tensor *pw, *ow;
        const int64_t per = nn__patch_workspace(&g, &pw, &ow);
        float *P = (float *)pw->data, *dO = (float *)ow->data;
        int64_t n0;
        for (n0 = 0; n0 < g.N; n0 += per) {
            const int64_t n1 = n0 + per < g.N ? n0 + per : g.N, m = (n1 - n0) * HoWo;
            nn__patch_transpose((float *)go, dO, &g, n0, n1, 0);
            if (need_w) {
                nn__patches((float *)xd, &g, n0, n1, P, 1);
                nn__sgemm(1, 0, g.Cout, K, m, 1.0f, dO, g.Cout, P, K, n0 == 0 ? 0.0f : 1.0f, (float *)dw->data, K);
            }
            if (need_x) {
                nn__sgemm(0, 0, m, K, g.Cout, 1.0f, dO, g.Cout, wd, K, 0.0f, P, K);
                nn__patches((float *)dx->data, &g, n0, n1, P, 0);
            }
        }
        nn_tensor_free(pw); nn_tensor_free(ow);
        rows = 0;
    } else rows = nn__conv_workspace(&g, &ws, &cols);
    for (img = 0; rows && img < g.N; img++) {
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
    nn_tensor *out, *ws = NULL, *ins[3], *keep = NULL;
    float *cols, *od;
    const float *xd, *wd;
    nn_node *node;
    int lowp = 0;
    if (nn_autocast_dtype() != NN_F32 && x) {   /* autocast: low-precision operands and result */
        nn_dtype dt = nn__autocast_enter();
        /* (on the GPU an f32 input is converted inside the conv's own layout pass: no separate cast) */
        return nn__autocast_leave(nn__conv2d_impl(op, x->device == NN_CPU ? nn__autocast_arg(x, dt) : x,
                                                  nn__autocast_arg(w, dt), nn__autocast_arg(b, dt),
                                                  stride, padding, dilation, groups), dt);
    }
    /* On the GPU, f16/bf16 weights (autocast's, or a caller's) make a low-precision conv (nn_cuda.cu: tensor
       cores, f32 accumulation): the input is read in the weight's dtype (an f32 input converted by the kernels,
       another one cast here), the bias cast to it, as autocast casts them, and the output is in that dtype.
       With f32 weights an f16/bf16 input is cast up. */
    if (x && w && x->device != NN_CPU) {
        if (w->dtype == NN_F16 || w->dtype == NN_BF16) {
            lowp = 1;
            nn__check_float(op, x, "input");
            if (x->dtype != w->dtype && x->dtype != NN_F32) x = nn_cast(x, w->dtype);
            if (b) { nn__check_float(op, b, "bias"); if (b->dtype != w->dtype) b = nn_cast(b, w->dtype); }
        } else if (x->dtype != NN_F32) x = nn__f32_input(op, x, "input");
    }
    nn__vision_check_dt(op, x, 4, "input", lowp);
    nn__vision_check_dt(op, w, 4, "weight", lowp);
    nn__check_same_device(op, x, w);
    if (b) { nn__vision_check_dt(op, b, 1, "bias", lowp); nn__check_same_device(op, x, b); }
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
    out = nn__new(lowp ? w->dtype : NN_F32, x->device, 4, oshape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_conv2d_fwd(x, w, b, stride, padding, dilation, groups, out, &keep);
    else
#endif
    {
        od = (float *)out->data; xd = (const float *)x->data; wd = (const float *)w->data;
        if (nn__conv_is_patchify(&g)) {   /* out = patches @ W^T, a chunk of images per GEMM */
            nn_tensor *pw, *ow;
            const int64_t per = nn__patch_workspace(&g, &pw, &ow);
            int64_t n0;
            for (n0 = 0; n0 < g.N; n0 += per) {
                const int64_t n1 = n0 + per < g.N ? n0 + per : g.N;
                nn__patches((float *)xd, &g, n0, n1, (float *)pw->data, 1);
                nn__sgemm(0, 1, (n1 - n0) * HoWo, g.Cout, K, 1.0f, (const float *)pw->data, K, wd, K, 0.0f,
                          (float *)ow->data, g.Cout);
                nn__patch_transpose(od, (float *)ow->data, &g, n0, n1, 1);
            }
            nn_tensor_free(pw); nn_tensor_free(ow);
            rows = 0;   /* the per-image loop below has nothing to do */
        } else rows = nn__conv_workspace(&g, &ws, &cols);
        for (img = 0; rows && img < g.N; img++) {
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
            NN_OMP("omp parallel for schedule(static) if(g.N * g.Cout * HoWo > NN__PAR_MIN)")
            for (pl = 0; pl < g.N * g.Cout; pl++) {
                float *o = od + pl * HoWo, bv = bd[pl % g.Cout];
                int64_t p;
                for (p = 0; p < HoWo; p++) o[p] += bv;
            }
        }
    }
    ins[0] = x; ins[1] = w; ins[2] = b;
    node = nn__record("conv2d", nn__conv2d_backward, b ? 3 : 2, ins, 1, &out);
    if (node) {
        nn__save(node, keep ? keep : x);   /* the GPU's NHWC copy of x (low precision) serves the backward */
        nn__save(node, w);
        node->i[0] = g.sh; node->i[1] = g.sw; node->i[2] = g.ph; node->i[3] = g.pw;
        node->i[4] = g.dh; node->i[5] = g.dw; node->i[6] = groups; node->i[7] = keep ? 1 + (int)x->dtype : 0;
    }
    if (keep) nn_tensor_free(keep);
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
    dx = nn__new(NN_F32, gout->device, 4, n->in[0].shape);
#ifdef NN_CUDA
    if (gout->device == NN_CUDA) nn__cuda_upsample_nearest2d_bwd(gout, dx);
    else
#endif
    {
        th = nn__nearest_table(H, Ho); tw = nn__nearest_table(W, Wo);
        ih = (const int64_t *)th->data; iw = (const int64_t *)tw->data;
        NN_OMP("omp parallel for schedule(static) if(planes * (H * W + Ho * Wo) > NN__PAR_MIN)")
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
    }
    nn__accumulate(n, 0, dx);
}

/* the checks and the [N, C, out_h, out_w] output shared by nearest upsampling and adaptive pooling */
static nn_tensor *nn__resize_out(const char *op, nn_tensor *x, int64_t out_h, int64_t out_w) {
    char bx[96];
    int64_t shape[4];
    nn__vision_check(op, x, 4, "input");
    if (out_h < 1 || out_w < 1 || x->shape[2] < 1 || x->shape[3] < 1)
        nn_error("%s: input %s to %lldx%lld: sizes must be >= 1", op, nn_shape_str(x, bx, sizeof bx),
                 (long long)out_h, (long long)out_w);
    shape[0] = x->shape[0]; shape[1] = x->shape[1]; shape[2] = out_h; shape[3] = out_w;
    return nn__new(NN_F32, x->device, 4, shape);
}

nn_tensor *nn_upsample_nearest2d(nn_tensor *x, int64_t out_h, int64_t out_w) {
    const char *op = "nn_upsample_nearest2d";
    int64_t shape[4], H, W, planes, pl;
    nn_tensor *out, *th, *tw;
    const int64_t *ih, *iw;
    nn_node *node;
    out = nn__resize_out(op, x, out_h, out_w);
    H = x->shape[2]; W = x->shape[3];
    memcpy(shape, out->shape, sizeof shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_upsample_nearest2d_fwd(x, out);
    else
#endif
    {
        planes = shape[0] * shape[1];
        th = nn__nearest_table(H, out_h); tw = nn__nearest_table(W, out_w);
        ih = (const int64_t *)th->data; iw = (const int64_t *)tw->data;
        NN_OMP("omp parallel for schedule(static) if(planes * out_h * out_w > NN__PAR_MIN)")
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
    }
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
    dx = nn__new(NN_F32, gout->device, 4, n->in[0].shape);
#ifdef NN_CUDA
    if (gout->device == NN_CUDA) nn__cuda_avg_pool2d_bwd(gout, (int)k, (int)s, (int)p, dx);
    else
#endif
    {
        NN_OMP("omp parallel for schedule(static) if(planes * (H * W + Ho * Wo) * k > NN__PAR_MIN)")
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
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_avg_pool2d_fwd(x, kernel, stride, padding, out);
    else
#endif
    {
        planes = shape[0] * shape[1];
        inv = 1.0f / (float)(kernel * kernel);
        NN_OMP("omp parallel for schedule(static) if(planes * Ho * Wo * kernel * kernel > NN__PAR_MIN)")
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
    dx = nn__new(NN_F32, gout->device, 4, n->in[0].shape);
#ifdef NN_CUDA
    if (gout->device == NN_CUDA) nn__cuda_adaptive_avg_pool2d_bwd(gout, dx);
    else
#endif
    {
        NN_OMP("omp parallel for schedule(static) if(planes * (H * W + Ho * Wo) > NN__PAR_MIN)")
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
    }
    nn__accumulate(n, 0, dx);
}

nn_tensor *nn_adaptive_avg_pool2d(nn_tensor *x, int64_t out_h, int64_t out_w) {
    const char *op = "nn_adaptive_avg_pool2d";
    int64_t shape[4], H, W, planes, pl;
    nn_tensor *out;
    nn_node *node;
    out = nn__resize_out(op, x, out_h, out_w);
    H = x->shape[2]; W = x->shape[3];
    memcpy(shape, out->shape, sizeof shape);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_adaptive_avg_pool2d_fwd(x, out);
    else
#endif
    {
        planes = shape[0] * shape[1];
        NN_OMP("omp parallel for schedule(static) if(planes * (H * W + out_h * out_w) > NN__PAR_MIN)")
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
#ifdef NN_CUDA
    if (gout->device == NN_CUDA) {
        nn_tensor *dw = need_w ? nn__new(NN_F32, NN_CUDA, 1, &C) : NULL, *db = need_b ? nn__new(NN_F32, NN_CUDA, 1, &C) : NULL;
        if (need_x) dx = nn__new(NN_F32, NN_CUDA, x->ndim, x->shape);
        if (dx || dw || db) nn__cuda_group_norm_bwd(gout, x, G, wt, mt, rt, dx, dw, db);
        if (dx) nn__accumulate(n, 0, dx);
        if (dw) nn__accumulate(n, 1, dw);
        if (db) nn__accumulate(n, b_at, db);
        return;
    }
#endif
    gd = (const float *)gout->data;
    /* per-(n, c) sums in double: S1 = sum dy, S2 = sum dy * xhat (an f32 tensor of 4*NC floats holds 2*NC
       doubles; pool blocks are aligned for any type) */
    len = 4 * (NC > 0 ? NC : 1);
    st = nn__new(NN_F32, NN_CPU, 1, &len);
    S1 = (double *)st->data; S2 = S1 + (NC > 0 ? NC : 1);
    if (need_x) dx = nn__new(NN_F32, NN_CPU, x->ndim, x->shape);
    NN_OMP("omp parallel for schedule(static) if(x->numel > NN__PAR_MIN)")
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
    mt = nn__new(NN_F32, x->device, 1, &ngs);   /* mean and rstd live on the input's device */
    rt = nn__new(NN_F32, x->device, 1, &ngs);
#ifdef NN_CUDA
    if (x->device == NN_CUDA) nn__cuda_group_norm_fwd(x, groups, w, b, eps, out, mt, rt);
    else
#endif
    {
        const float *xd = (const float *)x->data, *wd = w ? (const float *)w->data : NULL;
        const float *bd = b ? (const float *)b->data : NULL;
        float *od = (float *)out->data, *mean = (float *)mt->data, *rstd = (float *)rt->data;
        NN_OMP("omp parallel for schedule(static) if(x->numel > NN__PAR_MIN)")
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

/* Indexing ops and losses ([ops:index] and [ops:loss]), f32, on the CPU and (built with NN_CUDA) on the GPU: the
   CUDA twins are in nn_cuda.cu's section "index and loss", under the same names as the CPU kernels here.

   [ops:index]  nn_embedding nn_index_select nn_gather nn_scatter_add nn_topk nn_where nn_masked_fill
                nn_cross nn_norm
   [ops:loss]   nn_mse_loss nn_l1_loss nn_smooth_l1_loss nn_cross_entropy nn_bce_with_logits
                nn_sigmoid_focal_loss

   Conventions of this part
   - Index tensors are i32 or i64. Negative indices are errors (like torch's embedding,
     index_select, gather and scatter_add, which reject them); every index is range-checked before
     anything is allocated, so an error handler that longjmps leaks nothing. On the GPU the check runs on
     the device and reads back one value (the first bad position): one sync per indexing op, the price of
     an exact error message before the op runs.
   - All tensor arguments of an op are on one device (an error names the op and both tensors otherwise);
     outputs and gradients are made on that device; a loss is a 0-dim tensor there, and its backward reads
     the upstream gradient there.
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

/* t (optional) must be on ref's device */
static void nn__il_check_dev(const char *op, const nn_tensor *ref, const char *refname, const nn_tensor *t,
                             const char *what) {
    if (t && ref && t->device != ref->device)
        nn_error("%s: %s %s is on %s but %s %s is on %s; all tensors of this op must be on one device", op, what,
                 nn__il_s(t), nn_device_name(t->device), refname, nn__il_s(ref), nn_device_name(ref->device));
}

#ifdef NN_CUDA
/* the CUDA twins (nn_cuda.cu, section "index and loss") */
int64_t nn__cuda_il_first_bad(const nn_tensor *idx, int64_t size, int64_t ignore, int use_ignore, int64_t *value);
void nn__cuda_il_rows_copy(float *dst, const float *src, int64_t outer, int64_t sn, int64_t inner, const nn_tensor *idx,
                           int64_t n);
void nn__cuda_il_rows_add(float *dst, int64_t dn, const float *src, int64_t outer, int64_t inner, const nn_tensor *idx,
                          int64_t n);
void nn__cuda_il_gather(const nn_tensor *idx, int dim, const int64_t *astr, const int64_t *sstr, const float *big,
                        float *dst);
void nn__cuda_il_scatter_add(const nn_tensor *idx, int dim, const int64_t *astr, const int64_t *sstr, float *big,
                             int64_t big_numel, const float *src);
void nn__cuda_topk_fwd(const nn_tensor *a, int64_t outer, int64_t an, int64_t inner, int64_t k, int largest,
                       nn_tensor *val, nn_tensor *ind);
void nn__cuda_topk_bwd(const nn_tensor *g, const nn_tensor *ind, int64_t an, int64_t inner, int64_t k, nn_tensor *ga);
void nn__cuda_il_select(float *o, int ndim, const int64_t *shape, const uint8_t *c, const int64_t *cs, const float *x,
                        const int64_t *xs, float xv, const float *y, const int64_t *ys, float yv);
void nn__cuda_il_cross(float *o, int ndim, const int64_t *shape, int dim, const float *x, const int64_t *xs,
                       const float *y, const int64_t *ys);
void nn__cuda_norm_fwd(const float *a, int64_t outer, int64_t an, int64_t inner, float *o);
void nn__cuda_norm_bwd(const float *a, const float *y, const float *g, int64_t outer, int64_t an, int64_t inner,
                       float *ga);
void nn__cuda_reg_loss_fwd(int kind, const float *p, const float *t, int64_t n, double beta, float *out);
void nn__cuda_reg_loss_bwd(int kind, const float *p, const float *t, int64_t n, double beta, const float *gout,
                           float *gp, float *gt);
void nn__cuda_bce_fwd(const float *x, const float *y, const float *pw, int ndim, const int64_t *shape,
                      const int64_t *ps, int same, int64_t n, float *out);
void nn__cuda_bce_bwd(const float *x, const float *y, const float *pw, int ndim, const int64_t *shape,
                      const int64_t *ps, int same, int64_t n, const float *gout, float *gx, float *gy, float *gp);
void nn__cuda_focal_fwd(const float *x, const float *y, int64_t n, double alpha, double gamma, int red, float *out);
void nn__cuda_focal_bwd(const float *x, const float *y, int64_t n, double alpha, double gamma, int red, const float *g,
                        float *gx, float *gy);
void nn__cuda_cross_entropy_fwd(const float *x, const nn_tensor *target, const float *w, int64_t npos, int64_t C,
                                int64_t inner, int64_t ii, double eps, float *lse, double *stats, float *out);
void nn__cuda_cross_entropy_bwd(const float *x, const nn_tensor *target, const float *lse, const float *w, int64_t n,
                                int64_t C, int64_t inner, int64_t ii, double eps, const double *stats,
                                const float *gout, float *gx);
#endif

static void nn__il_check_f32(const char *op, const nn_tensor *t, const char *what) {
    nn__il_check_not_null(op, t, what);
    if (t->dtype != NN_F32)
        nn_error("%s: %s must be f32, got %s %s", op, what, nn_dtype_name(t->dtype), nn__il_s(t));
}

static void nn__il_check_index(const char *op, const nn_tensor *t, const char *what) {
    nn__il_check_not_null(op, t, what);
    if (t->dtype != NN_I32 && t->dtype != NN_I64)
        nn_error("%s: %s must be i32 or i64, got %s %s", op, what, nn_dtype_name(t->dtype), nn__il_s(t));
}

static void nn__il_check_mask(const char *op, const nn_tensor *t, const char *what) {
    nn__il_check_not_null(op, t, what);
    if (t->dtype != NN_BOOL && t->dtype != NN_U8)
        nn_error("%s: %s must be bool or u8, got %s %s", op, what, nn_dtype_name(t->dtype), nn__il_s(t));
}

static int64_t nn__il_idx(const nn_tensor *t, int64_t i) {
    return t->dtype == NN_I64 ? ((const int64_t *)t->data)[i] : (int64_t)((const int32_t *)t->data)[i];
}

/* every index in [0, size); otherwise an error naming the op, the bad value, its position and the shapes */
static void nn__il_check_range(const char *op, const nn_tensor *idx, int64_t size, const char *target,
                               const nn_tensor *tt, int dim) {
    int64_t i, bad = -1, v = 0;
#ifdef NN_CUDA
    if (idx->device == NN_CUDA) bad = nn__cuda_il_first_bad(idx, size, 0, 0, &v); else
#endif
    for (i = 0; i < idx->numel; i++) {
        v = nn__il_idx(idx, i);
        if (v < 0 || v >= size) { bad = i; break; }
    }
    if (bad >= 0)
        nn_error("%s: index %lld out of range [0,%lld) for dim %d of %s %s (at flat position %lld of index %s)",
                 op, (long long)v, (long long)size, dim, target, nn__il_s(tt), (long long)bad, nn__il_s(idx));
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

static nn_tensor *nn__il_zeros_f32(nn_device dev, int ndim, const int64_t *shape) {
    nn_tensor *t = nn__new(NN_F32, dev, ndim, shape);
    if (t->numel && dev == NN_CPU) memset(t->data, 0, sizeof(float) * (size_t)t->numel);
    else if (t->numel) nn_fill_(t, 0.0);
    return t;
}

static nn_tensor *nn__il_copy_f32(const nn_tensor *src) {
    nn_tensor *t = nn__new(NN_F32, src->device, src->ndim, src->shape);
    if (t->numel && src->device == NN_CPU) memcpy(t->data, src->data, sizeof(float) * (size_t)t->numel);
    else if (t->numel) nn_copy_(t, src);
    return t;
}

/* dst[o, j, k] = src[o, idx[j], k]: a row gather (index_select, embedding) */
static void nn__il_rows_copy(float *dst, const float *src, int64_t outer, int64_t sn, int64_t inner,
                             const nn_tensor *idx, int64_t n) {
    int64_t r, rows = outer * n;
#ifdef NN_CUDA
    if (idx->device == NN_CUDA) { nn__cuda_il_rows_copy(dst, src, outer, sn, inner, idx, n); return; }
#endif
    NN_OMP("omp parallel for if(rows * inner > NN__PAR_MIN)")
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
#ifdef NN_CUDA
    if (idx->device == NN_CUDA) { nn__cuda_il_rows_add(dst, dn, src, outer, inner, idx, n); return; }
#endif
    if (kt < 1) kt = 1;
#ifdef _OPENMP
    if (outer * n * inner > NN__PAR_MIN && outer * kt < 4 * (int64_t)omp_get_max_threads()) {
        parts = 4 * (int64_t)omp_get_max_threads() / (outer * kt);
        if (parts > dn) parts = dn;
        if (parts < 1) parts = 1;
    }
#endif
    tasks = outer * kt * parts;
    NN_OMP("omp parallel for schedule(dynamic, 1) if(tasks > 1 && outer * n * inner > NN__PAR_MIN)")
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
    gw = nn__il_zeros_f32(g->device, 2, n->in[0].shape);
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
    nn__il_check_dev(op, weight, "weight", idx, "idx");
    if (weight->ndim != 2) nn_error("%s: weight must be [num, dim], got %s", op, nn__il_s(weight));
    if (idx->ndim + 1 > NN_MAX_DIMS)
        nn_error("%s: idx %s has %d dims; the output would exceed %d", op, nn__il_s(idx), idx->ndim, NN_MAX_DIMS);
    nn__il_check_range(op, idx, weight->shape[0], "weight", weight, 0);
    for (d = 0; d < idx->ndim; d++) shape[d] = idx->shape[d];
    shape[idx->ndim] = weight->shape[1];
    out = nn__new(NN_F32, weight->device, idx->ndim + 1, shape);
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
    ga = nn__il_zeros_f32(g->device, n->in[0].ndim, n->in[0].shape);
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
    nn__il_check_dev(op, a, "input", idx, "index");
    if (a->ndim == 0) nn_error("%s: input is a scalar %s; it needs at least one dim", op, nn__il_s(a));
    if (idx->ndim > 1) nn_error("%s: index must be 1-D, got %s", op, nn__il_s(idx));
    d = nn__norm_dim(op, a, dim);
    nn__il_check_range(op, idx, a->shape[d], "input", a, d);
    for (i = 0; i < a->ndim; i++) shape[i] = a->shape[i];
    shape[d] = idx->numel;
    out = nn__new(NN_F32, a->device, a->ndim, shape);
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
#ifdef NN_CUDA
    if (idx->device == NN_CUDA) { nn__cuda_il_gather(idx, L->dim, L->astr, L->istr, big, dst); return; }
#endif
    NN_OMP("omp parallel for if(L->lines * L->n > NN__PAR_MIN)")
    for (l = 0; l < L->lines; l++) {
        int64_t io, ao, so, j;
        int64_t is = L->ndim ? L->istr[L->dim] : 0, as = L->ndim ? L->astr[L->dim] : 0;
        nn__il_line_at(L, l, &io, &ao, &so);
        for (j = 0; j < L->n; j++) dst[io + j * is] = big[ao + nn__il_idx(idx, io + j * is) * as];
    }
}

/* big[.., idx[.., j, ..], ..] += src[.., j, ..] where src is read with L->sstr */
static void nn__il_scatter_kernel(const nn__il_lines *L, float *big, int64_t big_numel, const float *src,
                                  const nn_tensor *idx) {
    int64_t l;
#ifdef NN_CUDA
    if (idx->device == NN_CUDA) { nn__cuda_il_scatter_add(idx, L->dim, L->astr, L->sstr, big, big_numel, src); return; }
#else
    (void)big_numel;
#endif
    NN_OMP("omp parallel for if(L->lines * L->n > NN__PAR_MIN)")
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
    ga = nn__il_zeros_f32(g->device, n->in[0].ndim, n->in[0].shape);
    nn__il_lines_init(&L, idx, ga, idx, (int)n->i[0]);  /* g has idx's shape */
    nn__il_scatter_kernel(&L, (float *)ga->data, ga->numel, (const float *)g->data, idx);
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
    nn__il_check_dev(op, a, "input", idx, "index");
    d = a->ndim ? nn__norm_dim(op, a, dim) : 0;
    if (a->ndim == 0 && dim != 0 && dim != -1) nn_error("%s: dim %d out of range for a scalar input", op, dim);
    nn__il_check_gather_shapes(op, a, idx, NULL, d);
    nn__il_check_range(op, idx, a->ndim ? a->shape[d] : 1, "input", a, d);
    out = nn__new(NN_F32, a->device, idx->ndim, idx->shape);
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
        nn_tensor *gs = nn__il_zeros_f32(g->device, n->in[1].ndim, n->in[1].shape);
        nn__il_lines L;
        int64_t l;
        nn__il_lines_init(&L, idx, g, gs, dim);
#ifdef NN_CUDA
        if (g->device == NN_CUDA) {
            nn__cuda_il_gather(idx, dim, L.astr, L.sstr, (const float *)g->data, (float *)gs->data);
            nn__accumulate(n, 1, gs);
            return;
        }
#endif
        /* like the gather kernel, but the destination is src-shaped */
        NN_OMP("omp parallel for if(L.lines * L.n > NN__PAR_MIN)")
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
    nn__il_check_dev(op, a, "input", idx, "index");
    nn__il_check_dev(op, a, "input", src, "src");
    d = a->ndim ? nn__norm_dim(op, a, dim) : 0;
    if (a->ndim == 0 && dim != 0 && dim != -1) nn_error("%s: dim %d out of range for a scalar input", op, dim);
    nn__il_check_gather_shapes(op, a, idx, src, d);
    nn__il_check_range(op, idx, a->ndim ? a->shape[d] : 1, "input", a, d);
    out = nn__il_copy_f32(a);
    nn__il_lines_init(&L, idx, out, src, d);
    nn__il_scatter_kernel(&L, (float *)out->data, out->numel, (const float *)src->data, idx);
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
    ga = nn__il_zeros_f32(g->device, n->in[0].ndim, n->in[0].shape);
    nn__il_split(n->in[0].ndim, n->in[0].shape, dim, &outer, &an, &inner);
#ifdef NN_CUDA
    if (g->device == NN_CUDA) { nn__cuda_topk_bwd(g, ind, an, inner, k, ga); nn__accumulate(n, 0, ga); return; }
#endif
    /* the k indices of one line are distinct, so every output element owns its destination */
    NN_OMP("omp parallel for if(g->numel > NN__PAR_MIN)")
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
    val = nn__new(NN_F32, a->device, a->ndim, shape);
    ind = nn__new(NN_I64, a->device, a->ndim, shape);
#ifdef NN_CUDA
    if (a->device == NN_CUDA) nn__cuda_topk_fwd(a, outer, an, inner, k, largest, val, ind); else
#endif
    if (k > 0) {
        const float *ad = (const float *)a->data;
        float *vd = (float *)val->data;
        int64_t *id = (int64_t *)ind->data;
        int oom = 0;
        NN_OMP("omp parallel if(lines * an > NN__PAR_MIN)")
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
static void nn__il_select_kernel(nn_device dev, float *o, int ndim, const int64_t *shape, const uint8_t *c,
                                 const int64_t *cs, const float *x, const int64_t *xs, float xv, const float *y,
                                 const int64_t *ys, float yv) {
    int64_t L = ndim ? shape[ndim - 1] : 1, numel = 1, rows, r;
    int64_t cst = ndim ? cs[ndim - 1] : 0, xst = (x && ndim) ? xs[ndim - 1] : 0, yst = (y && ndim) ? ys[ndim - 1] : 0;
    int d;
#ifdef NN_CUDA
    if (dev == NN_CUDA) { nn__cuda_il_select(o, ndim, shape, c, cs, x, xs, xv, y, ys, yv); return; }
#else
    (void)dev;
#endif
    for (d = 0; d < ndim; d++) numel *= shape[d];
    if (numel == 0) return;
    rows = numel / L;
    NN_OMP("omp parallel for if(numel > NN__PAR_MIN)")
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
        gi = nn__new(NN_F32, g->device, g->ndim, g->shape);
        nn__il_select_kernel(g->device, (float *)gi->data, g->ndim, g->shape, (const uint8_t *)cond->data, cs,
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
    nn__il_check_dev(op, a, "a", cond, "cond");
    nn__il_check_dev(op, a, "a", b, "b");
    ts[0] = cond; ts[1] = a; ts[2] = b;
    ndim = nn__il_bcast(op, 3, ts, shape);
    out = nn__new(NN_F32, a->device, ndim, shape);
    nn__il_bstrides(cond, ndim, cs);
    nn__il_bstrides(a, ndim, as);
    nn__il_bstrides(b, ndim, bs);
    nn__il_select_kernel(a->device, (float *)out->data, ndim, shape, (const uint8_t *)cond->data, cs, (const float *)a->data,
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
    ga = nn__new(NN_F32, g->device, g->ndim, g->shape);
    nn__il_select_kernel(g->device, (float *)ga->data, g->ndim, g->shape, (const uint8_t *)mask->data, ms, NULL, gs, 0.0f,
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
    nn__il_check_dev(op, a, "input", mask, "mask");
    ts[0] = a; ts[1] = mask;
    ndim = nn__il_bcast(op, 2, ts, shape);
    out = nn__new(NN_F32, a->device, ndim, shape);
    nn__il_bstrides(mask, ndim, ms);
    nn__il_bstrides(a, ndim, as);
    nn__il_select_kernel(a->device, (float *)out->data, ndim, shape, (const uint8_t *)mask->data, ms, NULL, as, (float)value,
                         (const float *)a->data, as, 0.0f);
    nd = nn__record("masked_fill", nn__masked_fill_backward, 1, &a, 1, &out);
    if (nd) nn__save(nd, mask);
    return out;
}

/* cross product of 3-vectors along dim of the broadcast shape (torch.linalg.cross; dim counts in the
   output's dims). o = x (strides xs) cross y (strides ys). */
static void nn__il_cross_kernel(nn_device dev, float *o, int ndim, const int64_t *shape, int dim, const float *x,
                                const int64_t *xs, const float *y, const int64_t *ys) {
    int64_t outer, n3, inner, v, nv;
#ifdef NN_CUDA
    if (dev == NN_CUDA) { nn__cuda_il_cross(o, ndim, shape, dim, x, xs, y, ys); return; }
#else
    (void)dev;
#endif
    nn__il_split(ndim, shape, dim, &outer, &n3, &inner);
    nv = outer * inner;
    NN_OMP("omp parallel for if(nv > NN__PAR_MIN / 3)")
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
        nn_tensor *ga = nn__new(NN_F32, g->device, ndim, g->shape);
        nn__il_cross_kernel(g->device, (float *)ga->data, ndim, g->shape, dim, (const float *)b->data, bs,
                            (const float *)g->data, gs);
        nn__accumulate(n, 0, ga);
    }
    if (nn__needs_grad(n, 1)) {
        nn_tensor *gb = nn__new(NN_F32, g->device, ndim, g->shape);
        nn__il_cross_kernel(g->device, (float *)gb->data, ndim, g->shape, dim, (const float *)g->data, gs,
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
    nn__il_check_dev(op, a, "a", b, "b");
    ts[0] = a; ts[1] = b;
    ndim = nn__il_bcast(op, 2, ts, shape);
    if (ndim == 0) nn_error("%s: inputs are scalars (%s, %s); need 3-vectors", op, nn__il_s(a), nn__il_s(b));
    d = nn__il_norm_dim_n(op, ndim, dim);
    /* both inputs must really have 3 entries along dim (torch.linalg.cross does not broadcast that dim) */
    if (d < ndim - a->ndim || a->shape[d - (ndim - a->ndim)] != 3 || d < ndim - b->ndim ||
        b->shape[d - (ndim - b->ndim)] != 3)
        nn_error("%s: dim %d must have length 3 in both inputs, got %s and %s", op, dim, nn__il_s(a), nn__il_s(b));
    out = nn__new(NN_F32, a->device, ndim, shape);
    nn__il_bstrides(a, ndim, as);
    nn__il_bstrides(b, ndim, bs);
    nn__il_cross_kernel(a->device, (float *)out->data, ndim, shape, d, (const float *)a->data, as, (const float *)b->data, bs);
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
    ga = nn__new(NN_F32, a->device, a->ndim, a->shape);
    o = (float *)ga->data;
    rows = outer * inner;
#ifdef NN_CUDA
    if (a->device == NN_CUDA) {
        nn__cuda_norm_bwd(ad, yd, gd, outer, an, inner, o);
        nn__accumulate(n, 0, ga);
        return;
    }
#endif
    NN_OMP("omp parallel for if(a->numel > NN__PAR_MIN)")
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
    out = nn__new(NN_F32, a->device, k, shape);
    nn__il_split(a->ndim, a->shape, d, &outer, &an, &inner);
    rows = outer * inner;
#ifdef NN_CUDA
    if (a->device == NN_CUDA) nn__cuda_norm_fwd((const float *)a->data, outer, an, inner, (float *)out->data); else
#endif
    {
        const float *ad = (const float *)a->data;
        float *o = (float *)out->data;
        NN_OMP("omp parallel for if(a->numel > NN__PAR_MIN)")
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

#ifdef NN_CUDA
/* a 0-dim f32 on the GPU, for a CUDA kernel to write */
static nn_tensor *nn__il_scalar_gpu(void) {
    int64_t one = 1;
    return nn__new(NN_F32, NN_CUDA, 0, &one);
}
#endif

static void nn__il_check_same_shape(const char *op, const nn_tensor *a, const nn_tensor *b, const char *an,
                                    const char *bn) {
    if (!nn__il_same_shape(b, a->ndim, a->shape))
        nn_error("%s: %s %s and %s %s must have the same shape", op, an, nn__il_s(a), bn, nn__il_s(b));
}

/* mse, l1, smooth_l1: the formulas nn__il_reg_loss / nn__il_reg_dloss are in [shared] */

static void nn__reg_loss_backward(nn_node *n) {
    nn_tensor *p = n->saved[0], *t = n->saved[1], *gp = NULL, *gt = NULL;
    int kind = (int)n->i[0];
    double beta = n->a[0], scale;
    const float *pd = (const float *)p->data, *td = (const float *)t->data;
    float *gpd, *gtd;
    int64_t i;
    if (nn__needs_grad(n, 0)) gp = nn__new(NN_F32, p->device, p->ndim, p->shape);
    if (nn__needs_grad(n, 1)) gt = nn__new(NN_F32, p->device, p->ndim, p->shape);
    gpd = gp ? (float *)gp->data : NULL;
    gtd = gt ? (float *)gt->data : NULL;
#ifdef NN_CUDA
    if (p->device == NN_CUDA) {   /* the upstream gradient is read on the device */
        nn__cuda_reg_loss_bwd(kind, pd, td, p->numel, beta, (const float *)n->gout[0]->data, gpd, gtd);
        if (gp) nn__accumulate(n, 0, gp);
        if (gt) nn__accumulate(n, 1, gt);
        return;
    }
#endif
    scale = (double)*(const float *)n->gout[0]->data / (double)(p->numel ? p->numel : 1);
    NN_OMP("omp parallel for if(p->numel > NN__PAR_MIN)")
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
    if (pred) pred = nn__f32_input(op, pred, "input");   /* f16/bf16 (autocast's outputs) computed in f32 */
    if (target) target = nn__f32_input(op, target, "target");
    nn__il_check_f32(op, pred, "input");
    nn__il_check_f32(op, target, "target");
    nn__il_check_dev(op, pred, "input", target, "target");
    nn__il_check_same_shape(op, pred, target, "input", "target");
    if (kind == NN__IL_SMOOTH_L1 && !(beta >= 0)) nn_error("%s: beta must be >= 0, got %g", op, beta);
    if (kind == NN__IL_SMOOTH_L1 && beta == 0) kind = NN__IL_L1;
#ifdef NN_CUDA
    if (pred->device == NN_CUDA) {
        out = nn__il_scalar_gpu();
        nn__cuda_reg_loss_fwd(kind, (const float *)pred->data, (const float *)target->data, pred->numel, beta,
                              (float *)out->data);
    } else
#endif
    {
        const float *pd = (const float *)pred->data, *td = (const float *)target->data;
        NN_OMP("omp parallel for reduction(+:s) if(pred->numel > NN__PAR_MIN)")
        for (i = 0; i < pred->numel; i++) s += nn__il_reg_loss(kind, (double)pd[i] - (double)td[i], beta);
        /* an empty input gives NaN, as torch's mean of nothing */
        out = nn__il_scalar(s / (double)pred->numel);
    }
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
    double eps = n->a[0], W = n->a[1], wsum = n->a[2], coef;
    const float *xd = (const float *)x->data, *ld = (const float *)lse->data;
    const float *wd = w ? (const float *)w->data : NULL;
    float *o;
    if (!nn__needs_grad(n, 0)) return;
    gx = nn__new(NN_F32, x->device, x->ndim, x->shape);
    o = (float *)gx->data;
#ifdef NN_CUDA
    if (x->device == NN_CUDA) {   /* W, sum w and the upstream gradient live on the device (saved[4]: stats) */
        nn__cuda_cross_entropy_bwd(xd, tg, ld, wd, x->numel, C, inner, ii, eps, (const double *)n->saved[4]->data,
                                   (const float *)n->gout[0]->data, o);
        nn__accumulate(n, 0, gx);
        return;
    }
#endif
    coef = (double)*(const float *)n->gout[0]->data / W;
    NN_OMP("omp parallel for if(x->numel > NN__PAR_MIN)")
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
    nn_tensor *lse, *out, *stats = NULL;
    nn_node *nd;
    double nll = 0, smooth = 0, W = 0, wsum = 0, eps = label_smoothing;
    int d;
    if (logits) logits = nn__f32_input(op, logits, "logits");
    nn__il_check_f32(op, logits, "logits");
    nn__il_check_index(op, target, "target");
    nn__il_check_dev(op, logits, "logits", target, "target");
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
        nn__il_check_dev(op, logits, "logits", weight, "weight");
        if (weight->ndim != 1 || weight->shape[0] != C)
            nn_error("%s: weight %s must be [C] = [%lld] for logits %s", op, nn__il_s(weight), (long long)C,
                     nn__il_s(logits));
    }
    if (!(eps >= 0.0 && eps <= 1.0)) nn_error("%s: label_smoothing must be in [0,1], got %g", op, eps);
    npos = N * inner;
#ifdef NN_CUDA
    if (target->device == NN_CUDA) {
        int64_t t = 0;
        s = nn__cuda_il_first_bad(target, C, ignore_index, 1, &t);
        if (s >= 0)
            nn_error("%s: target %lld out of range [0,%lld) at flat position %lld of target %s (logits %s, "
                     "ignore_index %lld)", op, (long long)t, (long long)C, (long long)s, nn__il_s(target),
                     nn__il_s(logits), (long long)ignore_index);
    } else
#endif
    for (s = 0; s < npos; s++) {
        int64_t t = nn__il_idx(target, s);
        if (t != ignore_index && (t < 0 || t >= C))
            nn_error("%s: target %lld out of range [0,%lld) at flat position %lld of target %s (logits %s, "
                     "ignore_index %lld)", op, (long long)t, (long long)C, (long long)s, nn__il_s(target),
                     nn__il_s(logits), (long long)ignore_index);
    }
    lshape[0] = npos;
#ifdef NN_CUDA
    if (logits->device == NN_CUDA) {
        /* stats: 4 doubles on the device (sum w_t nll, smoothing sum, W, sum w), in an 8-byte-element tensor */
        int64_t four = 4;
        lse = nn__new(NN_F32, NN_CUDA, 1, lshape);
        stats = nn__new(NN_I64, NN_CUDA, 1, &four);
        out = nn__il_scalar_gpu();
        nn__cuda_cross_entropy_fwd((const float *)logits->data, target, weight ? (const float *)weight->data : NULL,
                                   npos, C, inner, ignore_index, eps, (float *)lse->data, (double *)stats->data,
                                   (float *)out->data);
    } else
#endif
    {
        if (weight) {
            int64_t c;
            for (c = 0; c < C; c++) wsum += ((const float *)weight->data)[c];
        } else {
            wsum = (double)C;
        }
        lse = nn__new(NN_F32, NN_CPU, 1, lshape);
        {
            const float *xd = (const float *)logits->data, *wd = weight ? (const float *)weight->data : NULL;
            float *ld = (float *)lse->data;
            NN_OMP("omp parallel for reduction(+:nll, smooth, W) if(logits->numel > NN__PAR_MIN)")
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
    }
    nd = nn__record("cross_entropy", nn__cross_entropy_backward, 1, &logits, 1, &out);
    if (nd) {
        nn__save(nd, logits);
        nn__save(nd, target);
        nn__save(nd, lse);
        if (weight) nn__save(nd, weight);
        else { nd->saved[3] = NULL; nd->n_saved = 4; }
        if (stats) nn__save(nd, stats);   /* saved[4], the GPU's W and sum w */
        nd->i[0] = C; nd->i[1] = inner; nd->i[2] = ignore_index;
        nd->a[0] = eps; nd->a[1] = W; nd->a[2] = wsum;
    }
    nn_tensor_free(lse);  /* the node keeps it when it saved it */
    nn_tensor_free(stats);
    return out;
}

/* softplus(-x) and sigmoid(x): nn__il_softplus_neg, nn__il_sigmoid in [shared].
   bce_with_logits, F.binary_cross_entropy_with_logits(x, y, pos_weight=pw), mean:
   l = (1 - y) x + (1 + (pw - 1) y) softplus(-x)   (aten/src/ATen/native/Loss.cpp)
   dl/dx = (1 - y) - (1 + (pw - 1) y) sigmoid(-x);  dl/dy = -x + (pw - 1) softplus(-x);  dl/dpw = y softplus(-x).
   pos_weight broadcasts against the logits (typically [C] over the last dim), the result keeps x's shape. */
static void nn__bce_backward(nn_node *n) {
    nn_tensor *x = n->saved[0], *y = n->saved[1], *pw = n->saved[2], *g[3] = {NULL, NULL, NULL};
    double scale;
    const float *xd = (const float *)x->data, *yd = (const float *)y->data;
    const float *pd = pw ? (const float *)pw->data : NULL;
    float *o[3] = {NULL, NULL, NULL};
    int64_t ps[NN_MAX_DIMS], i;
    int k, n_in = pw ? 3 : 2, same = pw ? nn__il_same_shape(pw, x->ndim, x->shape) : 1;
    if (pw) nn__il_bstrides(pw, x->ndim, ps);
    for (k = 0; k < n_in; k++)
        if (nn__needs_grad(n, k)) {
            g[k] = nn__new(NN_F32, x->device, x->ndim, x->shape);
            o[k] = (float *)g[k]->data;
        }
#ifdef NN_CUDA
    if (x->device == NN_CUDA) {
        nn__cuda_bce_bwd(xd, yd, pd, x->ndim, x->shape, ps, same, x->numel, (const float *)n->gout[0]->data, o[0], o[1],
                         o[2]);
        for (k = 0; k < n_in; k++) if (g[k]) nn__accumulate(n, k, g[k]);
        return;
    }
#endif
    scale = (double)*(const float *)n->gout[0]->data / (double)(x->numel ? x->numel : 1);
    NN_OMP("omp parallel for if(x->numel > NN__PAR_MIN)")
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
    if (logits) logits = nn__f32_input(op, logits, "logits");
    if (target) target = nn__f32_input(op, target, "target");
    nn__il_check_f32(op, logits, "logits");
    nn__il_check_f32(op, target, "target");
    nn__il_check_dev(op, logits, "logits", target, "target");
    nn__il_check_same_shape(op, logits, target, "logits", "target");
    if (pos_weight) {
        int64_t shape[NN_MAX_DIMS];
        int ndim;
        nn__il_check_f32(op, pos_weight, "pos_weight");
        nn__il_check_dev(op, logits, "logits", pos_weight, "pos_weight");
        ins[0] = logits; ins[1] = pos_weight;
        ndim = nn__il_bcast(op, 2, ins, shape);
        if (!nn__il_same_shape(logits, ndim, shape))
            nn_error("%s: pos_weight %s must broadcast to logits %s", op, nn__il_s(pos_weight), nn__il_s(logits));
        nn__il_bstrides(pos_weight, logits->ndim, ps);
        same = nn__il_same_shape(pos_weight, logits->ndim, logits->shape);
    }
#ifdef NN_CUDA
    if (logits->device == NN_CUDA) {
        out = nn__il_scalar_gpu();
        nn__cuda_bce_fwd((const float *)logits->data, (const float *)target->data,
                         pos_weight ? (const float *)pos_weight->data : NULL, logits->ndim, logits->shape, ps, same,
                         logits->numel, (float *)out->data);
    } else
#endif
    {
        const float *xd = (const float *)logits->data, *yd = (const float *)target->data;
        const float *pd = pos_weight ? (const float *)pos_weight->data : NULL;
        NN_OMP("omp parallel for reduction(+:s) if(logits->numel > NN__PAR_MIN)")
        for (i = 0; i < logits->numel; i++) {
            double xv = xd[i], yv = yd[i];
            double p = pd ? pd[same ? i : nn__il_boff(i, logits->ndim, logits->shape, ps)] : 1.0;
            s += (1.0 - yv) * xv + (1.0 + (p - 1.0) * yv) * nn__il_softplus_neg(xv);
        }
        out = nn__il_scalar(s / (double)logits->numel);
    }
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

/* sigmoid_focal_loss (torchvision.ops.sigmoid_focal_loss): the loss term and its derivatives are
   nn__il_focal_terms in [shared] */
static void nn__focal_backward(nn_node *n) {
    nn_tensor *x = n->saved[0], *y = n->saved[1], *g = n->gout[0], *gx = NULL, *gy = NULL;
    double alpha = n->a[0], gamma = n->a[1];
    int red = (int)n->i[0];
    double scale;
    const float *xd = (const float *)x->data, *yd = (const float *)y->data, *gd = (const float *)g->data;
    float *ox, *oy;
    int64_t i;
    if (nn__needs_grad(n, 0)) gx = nn__new(NN_F32, x->device, x->ndim, x->shape);
    if (nn__needs_grad(n, 1)) gy = nn__new(NN_F32, x->device, x->ndim, x->shape);
    ox = gx ? (float *)gx->data : NULL;
    oy = gy ? (float *)gy->data : NULL;
#ifdef NN_CUDA
    if (x->device == NN_CUDA) {   /* g (scalar or per element) is read on the device */
        nn__cuda_focal_bwd(xd, yd, x->numel, alpha, gamma, red, gd, ox, oy);
        if (gx) nn__accumulate(n, 0, gx);
        if (gy) nn__accumulate(n, 1, gy);
        return;
    }
#endif
    scale = red == NN_REDUCE_NONE ? 1.0 : (double)*(const float *)g->data;
    if (red == NN_REDUCE_MEAN) scale /= (double)(x->numel ? x->numel : 1);
    NN_OMP("omp parallel for if(x->numel > NN__PAR_MIN)")
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
    if (logits) logits = nn__f32_input(op, logits, "logits");
    if (target) target = nn__f32_input(op, target, "target");
    nn__il_check_f32(op, logits, "logits");
    nn__il_check_f32(op, target, "target");
    nn__il_check_dev(op, logits, "logits", target, "target");
    nn__il_check_same_shape(op, logits, target, "logits", "target");
    if (reduction != NN_REDUCE_MEAN && reduction != NN_REDUCE_SUM && reduction != NN_REDUCE_NONE)
        nn_error("%s: unknown reduction %d", op, (int)reduction);
    if (!(gamma >= 0)) nn_error("%s: gamma must be >= 0, got %g", op, gamma);
#ifdef NN_CUDA
    if (logits->device == NN_CUDA) {
        out = reduction == NN_REDUCE_NONE ? nn__new(NN_F32, NN_CUDA, logits->ndim, logits->shape) : nn__il_scalar_gpu();
        nn__cuda_focal_fwd((const float *)logits->data, (const float *)target->data, logits->numel, alpha, gamma,
                           (int)reduction, (float *)out->data);
    } else
#endif
    {
        const float *xd = (const float *)logits->data, *yd = (const float *)target->data;
        if (reduction == NN_REDUCE_NONE) {
            float *o;
            out = nn__new(NN_F32, NN_CPU, logits->ndim, logits->shape);
            o = (float *)out->data;
            NN_OMP("omp parallel for if(logits->numel > NN__PAR_MIN)")
            for (i = 0; i < logits->numel; i++) {
                double l;
                nn__il_focal_terms(xd[i], yd[i], alpha, gamma, &l, NULL, NULL);
                o[i] = (float)l;
            }
        } else {
            NN_OMP("omp parallel for reduction(+:s) if(logits->numel > NN__PAR_MIN)")
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

/* Training machinery and IO: AdamW, LR schedules, gradient clipping, gradient accumulation, safetensors,
   .npy, atomic checkpoints (declared in [api:train] and [api:io]). */
#define NN_TRAIN_FRAGMENT 1  /* older samples test this to see that nn.h has the training API */

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
        if (o->moments && o->moments[2 * k]) {   /* device moments: pool tensors */
            nn_tensor_free(o->moments[2 * k]);
            nn_tensor_free(o->moments[2 * k + 1]);
            continue;
        }
        if (o->exp_avg) free(o->exp_avg[k]);
        if (o->exp_avg_sq) free(o->exp_avg_sq[k]);
    }
    free(o->moments); free(o->exp_avg); free(o->exp_avg_sq); free(o->numel); free(o->steps); free(o);
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
        if (t->dtype != NN_F32)
            nn_error("nn_adamw_new: parameter %s is %s on %s; AdamW keeps f32 master weights",
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
            const nn_tensor *t = P->items[k].t;
            size_t bytes = (size_t)t->numel * sizeof(float);
            o->numel[k] = t->numel;
            if (t->device != NN_CPU) {   /* moments on the parameter's device, from its pool, zeroed */
                if (!o->moments && !(o->moments = (nn_tensor **)calloc((size_t)P->n * 2, sizeof(nn_tensor *)))) goto oom;
                o->moments[2 * k] = nn__owned(NN_F32, t->device, t->ndim, t->shape);
                o->moments[2 * k + 1] = nn__owned(NN_F32, t->device, t->ndim, t->shape);
                nn_fill_(o->moments[2 * k], 0.0);
                nn_fill_(o->moments[2 * k + 1], 0.0);
                o->exp_avg[k] = (float *)o->moments[2 * k]->data;
                o->exp_avg_sq[k] = (float *)o->moments[2 * k + 1]->data;
                continue;
            }
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

/* AdamW on one CPU parameter k (torch's _single_tensor_adam, step by step below) */
static void nn__adamw_cpu_param(nn_adamw *o, int k, double lr) {
    nn_params *P = o->P;
    nn_tensor *t = P->items[k].t;
    float *p = (float *)t->data, *m = o->exp_avg[k], *v = o->exp_avg_sq[k];
    const float *g;
    double wd = P->items[k].no_decay ? 0.0 : o->cfg.weight_decay, b1 = o->cfg.beta1, b2 = o->cfg.beta2;
    double bc1, bc2, step_size, bc2_sqrt;
    float decay, w1, b2f, w2, bc2f, epsf, neg_step;
    int64_t i, n = t->numel, step;
    int maximize = o->cfg.maximize, do_decay = wd != 0;
    if (!t->grad || t->device != NN_CPU) return;  /* torch skips parameters whose grad is None */
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
    NN_OMP("omp parallel for if (n > NN__PAR_MIN)")
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
        nn_device dev = o->moments && o->moments[2 * k] ? o->moments[2 * k]->device : NN_CPU;
        if (t->numel != o->numel[k] || t->dtype != NN_F32 || t->device != dev)
            nn_error("nn_adamw_step: parameter %s changed since nn_adamw_new", P->items[k].name);
        if (g && (g->numel != t->numel || g->dtype != NN_F32 || g->device != dev))
            nn_error("nn_adamw_step: gradient of %s is %s on %s with %lld elements, parameter has %lld",
                     P->items[k].name, nn_dtype_name(g->dtype), nn_device_name(g->device),
                     (long long)g->numel, (long long)t->numel);
    }
    o->step++;
#ifdef NN_CUDA
    if (o->moments) {   /* device parameters: one multi-tensor launch per 48 parameters, same arithmetic */
        int nd = 0;
        float **pp = (float **)malloc(sizeof(float *) * (size_t)o->n * 4);
        int64_t *ne = (int64_t *)malloc(sizeof(int64_t) * (size_t)o->n * 2);
        double *wd = (double *)malloc(sizeof(double) * (size_t)o->n);
        if (!pp || !ne || !wd) nn_error("nn_adamw_step: out of host memory");
        for (k = 0; k < o->n; k++) {
            nn_tensor *t = P->items[k].t;
            if (!o->moments[2 * k] || t->device != NN_CUDA || !t->grad) continue;
            pp[nd] = (float *)t->data;
            pp[o->n + nd] = (float *)t->grad->data;
            pp[2 * o->n + nd] = o->exp_avg[k];
            pp[3 * o->n + nd] = o->exp_avg_sq[k];
            ne[nd] = t->numel;
            ne[o->n + nd] = ++o->steps[k];
            wd[nd] = P->items[k].no_decay ? 0.0 : o->cfg.weight_decay;
            nd++;
        }
        if (nd) nn__cuda_adamw_multi(nd, pp, (const float *const *)(pp + o->n), pp + 2 * o->n, pp + 3 * o->n, ne, ne + o->n,
                                     wd, lr, o->cfg.beta1, o->cfg.beta2, o->cfg.eps, o->cfg.maximize);
        free(pp); free(ne); free(wd);
    }
#endif
    /* CPU parameters: a large one is split over the threads; the small ones (most of a small model, each
       below the fork/join's worth) go to the threads whole, a parameter at a time. Same arithmetic. */
    NN_OMP("omp parallel for schedule(dynamic, 1)")
    for (k = 0; k < o->n; k++) if (P->items[k].t->numel <= NN__PAR_MIN) nn__adamw_cpu_param(o, k, lr);
    for (k = 0; k < o->n; k++) if (P->items[k].t->numel > NN__PAR_MIN) nn__adamw_cpu_param(o, k, lr);
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
    int64_t c, nc = n > NN__PAR_MIN ? 64 : 1;
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

#ifdef NN_CUDA
/* the f32 gradients of P's parameters on the GPU as lists for the multi-tensor kernels (clipping, the loss
   scaler's unscale): pointers into *g, sizes into *ne (the caller frees both); returns how many */
static int nn__cuda_grad_lists(const char *op, const nn_params *P, float ***g, int64_t **ne) {
    int k, nd = 0;
    *g = (float **)NN_MALLOC(sizeof(float *) * (size_t)(P->n + 1));
    *ne = (int64_t *)NN_MALLOC(sizeof(int64_t) * (size_t)(P->n + 1));
    if (!*g || !*ne) nn_error("%s: out of host memory", op);
    for (k = 0; k < P->n; k++) {
        nn_tensor *t = P->items[k].t->grad;
        if (!t || t->device != NN_CUDA) continue;
        if (t->dtype != NN_F32) nn_error("%s: gradient of %s is %s (f32 expected)", op, P->items[k].name, nn_dtype_name(t->dtype));
        (*g)[nd] = (float *)t->data; (*ne)[nd] = t->numel; nd++;
    }
    return nd;
}

/* gradients on the GPU: the norm (and the scaling, max_norm >= 0) in nn__cuda_clip_grad_norm, one host read.
   Returns 0 when the gradients are on the CPU (the loop below handles them); mixing devices is an error. */
static int nn__grad_norm_cuda(const char *op, nn_params *P, double max_norm, float *total) {
    int k, nd = 0, nh = 0;
    float **g;
    int64_t *ne;
    for (k = 0; k < P->n; k++) {
        const nn_tensor *t = P->items[k].t->grad;
        if (t) { if (t->device == NN_CUDA) nd++; else nh++; }
    }
    if (!nd) return 0;
    if (nh) nn_error("%s: gradients on both the CPU (%d) and cuda (%d); keep the parameters on one device", op, nh, nd);
    nd = nn__cuda_grad_lists(op, P, &g, &ne);
    *total = nn__cuda_clip_grad_norm(nd, g, ne, max_norm);
    NN_FREE(g); NN_FREE(ne);
    return 1;
}
#endif
static float nn__grad_total_norm(const char *op, const nn_params *P) {
    int k;
    double total = 0;
    if (!P) nn_error("%s: registry is NULL", op);
#ifdef NN_CUDA
    {
        float t;
        if (nn__grad_norm_cuda(op, (nn_params *)P, -1.0, &t)) return t;
    }
#endif
    float *norm;
    for (k = 0; k < P->n; k++) {
        const nn_tensor *g = P->items[k].t->grad;
        if (g && (g->dtype != NN_F32 || g->device != NN_CPU))
            nn_error("%s: gradient of %s is %s on %s (f32 on the CPU expected)", op, P->items[k].name,
                     nn_dtype_name(g->dtype), nn_device_name(g->device));
    }
    if (!(norm = (float *)NN_MALLOC(sizeof(float) * (size_t)(P->n + 1)))) nn_error("%s: out of host memory", op);
    /* torch: vector_norm per gradient (an f32 result), then the norm of the stacked norms. The small
       gradients' norms go to the threads whole, the large ones are split (nn__sumsq): each norm is the same
       sum either way, and they are added in registry order. */
    NN_OMP("omp parallel for schedule(dynamic, 1)")
    for (k = 0; k < P->n; k++) {
        const nn_tensor *g = P->items[k].t->grad;
        if (g && g->numel <= NN__PAR_MIN) norm[k] = (float)sqrt(nn__sumsq((const float *)g->data, g->numel));
    }
    for (k = 0; k < P->n; k++) {
        const nn_tensor *g = P->items[k].t->grad;
        if (!g) continue;
        if (g->numel > NN__PAR_MIN) norm[k] = (float)sqrt(nn__sumsq((const float *)g->data, g->numel));
        total += (double)norm[k] * (double)norm[k];
    }
    NN_FREE(norm);
    return (float)sqrt(total);
}

float nn_grad_norm(const nn_params *P) { return nn__grad_total_norm("nn_grad_norm", P); }

float nn_clip_grad_norm(nn_params *P, double max_norm, int error_if_nonfinite) {
    float total, coef;
    int k;
#ifdef NN_CUDA
    /* on the GPU the norm and the scaling are one call; a non-finite check needs the norm first */
    if (P && !error_if_nonfinite && max_norm >= 0 && nn__grad_norm_cuda("nn_clip_grad_norm", P, max_norm, &total))
        return total;
#endif
    total = nn__grad_total_norm("nn_clip_grad_norm", P);
    if (error_if_nonfinite && !(total - total == 0))  /* NaN or inf */
        nn_error("nn_clip_grad_norm: the total norm of order 2 for gradients from %d parameters is "
                 "non-finite (%g), so it cannot be clipped", P->n, (double)total);
    /* torch: clip_coef = max_norm / (total_norm + 1e-6) on f32 tensors, where python-scalar / tensor is
       tensor.reciprocal() * scalar; then clamp(max=1.0), which keeps NaN */
    coef = (1.0f / (total + 1e-6f)) * (float)max_norm;
    if (coef > 1.0f) coef = 1.0f;
    if (coef == 1.0f) return total;  /* x * 1 == x */
#ifdef NN_CUDA
    {
        float again;
        if (nn__grad_norm_cuda("nn_clip_grad_norm", P, max_norm, &again)) return total;
    }
#endif
    NN_OMP("omp parallel for schedule(dynamic, 1)")   /* small gradients whole to the threads, as the norms */
    for (k = 0; k < P->n; k++) {
        nn_tensor *g = P->items[k].t->grad;
        int64_t i;
        if (g && g->numel <= NN__PAR_MIN) for (i = 0; i < g->numel; i++) ((float *)g->data)[i] *= coef;
    }
    for (k = 0; k < P->n; k++) {
        nn_tensor *g = P->items[k].t->grad;
        float *d;
        int64_t i, n;
        if (!g || g->numel <= NN__PAR_MIN) continue;
        d = (float *)g->data;
        n = g->numel;
        NN_OMP("omp parallel for")
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

/* closes the descriptor (POSIX) or stream of a reader or writer, once */
#ifdef NN__POSIX_IO
static void nn__io_close(int *fd) { if (*fd >= 0) close(*fd); *fd = -1; }
#define NN__IO_CLOSE(f) nn__io_close(&(f)->fd)
#else
static void nn__io_close(FILE **fp) { if (*fp) fclose(*fp); *fp = NULL; }
#define NN__IO_CLOSE(f) nn__io_close(&(f)->fp)
#endif

static void nn__rfile_close(nn__rfile *f) { NN__IO_CLOSE(f); }

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
    NN__IO_CLOSE(w);
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
    const char *skip = o ? o->skip_prefix : NULL, *pre = o && o->prefix ? o->prefix : "";
    size_t pl = strlen(pre);
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
        int i;
        if (strncmp(P->items[k].name, pre, pl) != 0) { idx[k] = -1; continue; }   /* outside the prefix */
        i = nn_safetensors_find(f, P->items[k].name + pl);
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
    for (k = 0; k < f->n; k++) {
        char full[600];
        snprintf(full, sizeof full, "%s%s", pre, f->info[k].name);
        if (!nn__prefixed(f->info[k].name, skip) && !nn_params_find(P, full))
            unexpected[n_unexpected++] = f->info[k].name;
    }
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
            if (opt->moments && opt->moments[2 * k]) {   /* device moments: the writer copies them to the host */
                x[0].data = NULL; x[0].t = opt->moments[2 * k];
                x[1].data = NULL; x[1].t = opt->moments[2 * k + 1];
            }
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
    if (info && info->scaler) { meta[nm++] = "scaler"; meta[nm++] = info->scaler; }
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
    char *cfg = NULL, *scl = NULL;
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
    if (info && nn_safetensors_meta(f, "scaler")) {
        const char *c = nn_safetensors_meta(f, "scaler");
        scl = (char *)malloc(strlen(c) + 1);
        if (!scl) { free(ix); free(cfg); snprintf(err, en, "out of memory"); return 0; }
        strcpy(scl, c);
    }
    /* the model: strict, everything but the optimiser's entries; checks all before copying */
    memset(&lo, 0, sizeof lo);
    lo.strict = 1; lo.convert_dtype = 0; lo.skip_prefix = NN__OPT_PREFIX;
    if (!nn__params_load_impl(f, P, &lo, NULL, err, en)) { free(ix); free(cfg); free(scl); return 0; }
    if (opt) {
        for (k = 0; k < P->n; k++) {
            int64_t st = 0;
            if (opt->moments && opt->moments[2 * k]) {   /* device moments: through a host buffer */
                int ok = 1, q;
                void *tmp = malloc((size_t)opt->numel[k] * sizeof(float) + 1);
                if (!tmp) { snprintf(err, en, "out of memory"); free(ix); free(cfg); free(scl); return 0; }
                for (q = 0; q < 2 && ok; q++) {
                    ok = nn__st_read(f, &f->info[ix[3 * k + q]], tmp);
                    if (ok) {
                        nn_tensor *mt = opt->moments[2 * k + q], *hc = nn_from_data(NN_F32, mt->ndim, mt->shape, tmp);
                        nn_copy_(mt, hc);
                        nn_tensor_free(hc);
                    }
                }
                free(tmp);
                if (!ok || !nn__st_read(f, &f->info[ix[3 * k + 2]], &st)) {
                    snprintf(err, en, "read failed (file changed?)");
                    free(ix); free(cfg); free(scl);
                    return 0;
                }
                opt->steps[k] = st;
                continue;
            }
            if (!nn__st_read(f, &f->info[ix[3 * k]], opt->exp_avg[k]) ||
                !nn__st_read(f, &f->info[ix[3 * k + 1]], opt->exp_avg_sq[k]) ||
                !nn__st_read(f, &f->info[ix[3 * k + 2]], &st)) {
                snprintf(err, en, "read failed (file changed?)");
                free(ix); free(cfg); free(scl);
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
            info->epoch = epoch; info->best_metric = best; info->rng = r; info->config = cfg; info->scaler = scl;
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
    free((void *)info->scaler);
    info->config = info->scaler = NULL;
}

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
#ifdef NN_CUDA
    {   /* device gradients: one multi-tensor launch per 48 tensors and one host read of the flag */
        float **gd;
        int64_t *ne;
        int nd = nn__cuda_grad_lists("nn_scaler_unscale", P, &gd, &ne);
        if (nd) found = nn__cuda_unscale_multi(nd, gd, ne, inv);
        NN_FREE(gd); NN_FREE(ne);
    }
#endif
    for (k = 0; k < P->n; k++) {
        nn_tensor *g = P->items[k].t->grad;
        float *d;
        int64_t i, n;
        int bad = 0;
        if (!g || g->device != NN_CPU) continue;
        if (g->dtype != NN_F32) nn_error("nn_scaler_unscale: gradient of '%s' is %s, not f32", P->items[k].name, nn_dtype_name(g->dtype));
        d = (float *)g->data;
        n = g->numel;
        NN_OMP("omp parallel for reduction(|:bad) if (n > NN__PAR_MIN)")
        for (i = 0; i < n; i++) {
            float v = d[i];
            if (!isfinite(v)) bad = 1;
            if (inv != 1.0f) d[i] = v * inv;
        }
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

/* --------------------------------------------------------------------------------------------- [modules] */

/* "prefix.name" (or "name" alone) into buf; a name that does not fit is an error, not a silent truncation that
   could make two parameters' names collide. */
const char *nn_name_join(char *buf, size_t n, const char *prefix, const char *name) {
    size_t lp = (prefix && *prefix) ? strlen(prefix) : 0, ln = strlen(name), at = 0;
    if (lp + (lp ? 1 : 0) + ln + 1 > n)
        nn_error("nn_name_join: '%s%s%s' is longer than the %zu bytes given", lp ? prefix : "", lp ? "." : "", name, n - 1);
    if (lp) { memcpy(buf, prefix, lp); buf[lp] = '.'; at = lp + 1; }
    memcpy(buf + at, name, ln + 1);
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

/* t's storage becomes a copy on dev; the old storage goes with the temporary header */
static void nn__move_to(nn_tensor *t, nn_device dev) {
    nn_tensor *c;
    nn_storage *st;
    void *data;
    if (t->device == dev) return;
    c = nn_to(t, dev);
    st = t->storage; data = t->data;
    t->storage = c->storage; t->data = c->data; t->device = dev;
    c->storage = st; c->data = data; c->device = st->device;
    nn_tensor_free(c);
}

void nn_params_to(nn_params *p, nn_device dev) {
    int i, prev = nn_set_grad_enabled(0);   /* a move is not part of the model */
    for (i = 0; p && i < p->n; i++) {
        nn_tensor *t = p->items[i].t;
        if (t->node) nn_error("nn_params_to: '%s' is not a leaf", p->items[i].name);
        nn__move_to(t, dev);
        if (t->grad) nn__move_to(t->grad, dev);
    }
    nn_set_grad_enabled(prev);
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
    nn_tensor *a, *h;
    nn_scope_begin();
    /* the hidden layer is the widest tensor: each one is released as soon as the next exists (a node that
       saved it for backward keeps it alive), so a forward without grad holds two of them at most, as torch */
    a = nn_Linear_forward(&m->fc1, x);
    h = nn_activate(a, m->act);
    if (h != a) nn_tensor_free(a);
    if (m->dropout > 0) {
        a = h;
        h = nn_dropout(a, m->dropout, nn_training());
        if (h != a) nn_tensor_free(a);
    }
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

nn_tensor *nn_MultiheadAttention_forward(const nn_MultiheadAttention *m, nn_tensor *query, nn_tensor *key,
                                         nn_tensor *value, nn_tensor *key_padding_mask, nn_tensor *attn_mask) {
    int64_t E = m->embed_dim, B, Lk, s[4];
    int H = m->num_heads;
    nn_tensor *q, *k, *v, *o, *mask = NULL, *bias = NULL, *wq, *wk, *wv, *bq, *bk, *bv;
    nn_sdpa_opts opts;
    if (!query || !key || !value) nn_error("nn_MultiheadAttention_forward: query, key and value are required");
    if (query->ndim != 3 || key->ndim != 3 || value->ndim != 3 || query->shape[2] != E || key->shape[2] != m->kdim ||
        value->shape[2] != m->vdim || key->shape[0] != query->shape[0] || value->shape[0] != query->shape[0] ||
        key->shape[1] != value->shape[1])
        nn_error("nn_MultiheadAttention_forward: expected query [B,Lq,%lld], key [B,Lk,%d], value [B,Lk,%d] "
                 "(batch_first); got %s %s %s", (long long)E, m->kdim, m->vdim, nn__s(query), nn__s(key), nn__s(value));
    B = query->shape[0]; Lk = key->shape[1];
    nn_scope_begin();
    if (m->in_proj_weight) {
        wq = nn_slice(m->in_proj_weight, 0, 0, E);
        wk = nn_slice(m->in_proj_weight, 0, E, 2 * E);
        wv = nn_slice(m->in_proj_weight, 0, 2 * E, 3 * E);
    } else { wq = m->q_proj_weight; wk = m->k_proj_weight; wv = m->v_proj_weight; }
    bq = nn_slice(m->in_proj_bias, 0, 0, E);
    bk = nn_slice(m->in_proj_bias, 0, E, 2 * E);
    bv = nn_slice(m->in_proj_bias, 0, 2 * E, 3 * E);
    if (query == key || key == value) {   /* a shared input: one low-precision copy for its projections */
        nn_tensor *c = nn_autocast_shared(key);
        if (query == key) query = c;
        if (value == key) value = c;
        key = c;
    }
    q = nn_linear(query, wq, bq);   /* [B, Lq, E]: nn_sdpa_heads splits the heads in place */
    k = nn_linear(key, wk, bk);
    v = nn_linear(value, wv, bv);
    /* Boolean masks are combined on the host (they are small: one copy from a GPU mask), and the result moves to
       the attention's device; a float attn_mask (an additive bias) moves there too, differentiably. */
    if (key_padding_mask) {   /* true = ignore -> SDPA's true = attend */
        int64_t i;
        if (key_padding_mask->device != NN_CPU) key_padding_mask = nn_to(key_padding_mask, NN_CPU);
        if (key_padding_mask->ndim != 2 || key_padding_mask->shape[0] != B || key_padding_mask->shape[1] != Lk)
            nn_error("nn_MultiheadAttention_forward: key_padding_mask must be [%lld, %lld], got %s", (long long)B, (long long)Lk, nn__s(key_padding_mask));
        s[0] = B; s[1] = 1; s[2] = 1; s[3] = Lk;
        mask = nn__new(NN_BOOL, NN_CPU, 4, s);
        for (i = 0; i < mask->numel; i++) ((uint8_t *)mask->data)[i] = nn__load(key_padding_mask->data, key_padding_mask->dtype, i) == 0;
    }
    if (attn_mask) {
        nn_tensor *am = attn_mask;
        if ((am->dtype == NN_BOOL || am->dtype == NN_U8) && am->device != NN_CPU) am = nn_to(am, NN_CPU);
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
        } else bias = am->device == q->device ? am : nn_to(am, q->device);
    }
    if (mask && mask->device != q->device) mask = nn_to(mask, q->device);
    memset(&opts, 0, sizeof opts);
    opts.mask = mask;
    opts.bias = bias;
    opts.dropout_p = nn_training() ? m->dropout : 0.0;
    o = nn_sdpa_heads(q, k, v, H, &opts);                         /* [B, Lq, E] */
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
