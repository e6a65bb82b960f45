/* bench/cpu_bench.c - nn.h on the CPU: matmul, layer_norm, conv2d and a small MLP training step (forward + backward),
   printed as "name ms peak_bytes" lines that bench/run_cpu_bench.sh sets beside PyTorch's.
   Build: gcc -O3 -march=native -fopenmp -I. bench/cpu_bench.c -o build/cpu_bench -lm */
#define NN_IMPLEMENTATION
#include "nn.h"
#include <stdio.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

/* median of `reps` timings after 2 warm-ups */
#define TIME(name, reps, body) do { \
    double t_[64]; int r_, i_, j_; \
    for (r_ = 0; r_ < 2; r_++) { body; } \
    nn_mem_reset_peak(NN_CPU); \
    for (r_ = 0; r_ < (reps); r_++) { double t0_ = now_ms(); body; t_[r_] = now_ms() - t0_; } \
    for (i_ = 0; i_ < (reps); i_++) for (j_ = i_ + 1; j_ < (reps); j_++) if (t_[j_] < t_[i_]) { double x_ = t_[i_]; t_[i_] = t_[j_]; t_[j_] = x_; } \
    printf("%-28s %10.3f ms  peak %zu\n", name, t_[(reps) / 2], nn_mem_stats(NN_CPU).peak); \
} while (0)

int main(void) {
    nn_seed(0);
    {
        int64_t s[2] = {1024, 1024};
        nn_tensor *a = nn_randn(2, s), *b = nn_randn(2, s);
        TIME("matmul 1024^3", 9, { nn_scope_begin(); nn_matmul(a, b); nn_scope_end(NULL); });
        nn_tensor_free(a); nn_tensor_free(b);
    }
    {
        int64_t s[2] = {8192, 768}, c = 768;
        nn_tensor *x = nn_randn(2, s), *w = nn_ones(NN_F32, 1, &c), *bb = nn_zeros(NN_F32, 1, &c);
        TIME("layer_norm 8192x768 fwd", 9, { nn_scope_begin(); nn_layer_norm(x, w, bb, 1e-5); nn_scope_end(NULL); });
        nn_requires_grad(x, 1); nn_requires_grad(w, 1); nn_requires_grad(bb, 1);
        TIME("layer_norm 8192x768 fwd+bwd", 9, {
            nn_tensor *y;
            nn_scope_begin();
            y = nn_layer_norm(x, w, bb, 1e-5);
            nn_backward(nn_sum_all(y));
            nn_scope_end(NULL);
            nn_zero_grad(x); nn_zero_grad(w); nn_zero_grad(bb);
        });
        nn_tensor_free(x); nn_tensor_free(w); nn_tensor_free(bb);
    }
    {
        int64_t sx[4] = {4, 64, 64, 64}, sw[4] = {64, 64, 3, 3}, c = 64;
        nn_tensor *x = nn_randn(4, sx), *w = nn_randn(4, sw), *b = nn_zeros(NN_F32, 1, &c);
        TIME("conv2d 4x64x64x64 3x3 fwd", 9, { nn_scope_begin(); nn_conv2d(x, w, b, 1, 1, 1, 1); nn_scope_end(NULL); });
        nn_requires_grad(x, 1); nn_requires_grad(w, 1); nn_requires_grad(b, 1);
        TIME("conv2d 4x64x64x64 fwd+bwd", 9, {
            nn_scope_begin();
            nn_backward(nn_sum_all(nn_conv2d(x, w, b, 1, 1, 1, 1)));
            nn_scope_end(NULL);
            nn_zero_grad(x); nn_zero_grad(w); nn_zero_grad(b);
        });
        nn_tensor_free(x); nn_tensor_free(w); nn_tensor_free(b);
    }
    {
        nn_params P = {0};
        nn_MLP m;
        int64_t s[2] = {512, 256}, st[2] = {512, 256};
        nn_tensor *x = nn_randn(2, s), *t = nn_randn(2, st);
        nn_MLP_init(&m, &P, "mlp", 256, 1024, 256, NN_ACT_GELU, 0.0);
        TIME("MLP 256-1024-256 b512 step", 9, {
            nn_scope_begin();
            nn_params_zero_grad(&P);
            nn_backward(nn_mse_loss(nn_MLP_forward(&m, x), t));
            nn_scope_end(NULL);
        });
        nn_params_free(&P);
        nn_tensor_free(x); nn_tensor_free(t);
    }
    nn_shutdown();
    return 0;
}
