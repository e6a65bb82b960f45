/* bench/session_1207d/tf32_probe.c - the conv2d_tf32_fwdbwd_8x512x16x16_k3 row of cuda_bench (f32 x, w, b, TF32 on),
   three steps, for a kernel-by-kernel profile under ncu (`ncu --metrics gpu__time_duration.sum`). With an argument
   "dx" or "dw" only that gradient (and the bias's) is asked for. Built as cuda_bench is (build_carry.sh's gcc line). */
#define NN_IMPLEMENTATION
#include "nn.h"
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    static const int one[2] = {1, 1};
    int64_t xs[4] = {8, 512, 16, 16}, ws[4] = {512, 512, 3, 3}, C = 512;
    int only_dx = argc > 1 && !strcmp(argv[1], "dx"), only_dw = argc > 1 && !strcmp(argv[1], "dw"), i;
    nn_tensor *x, *w, *b, *y;
    if (!nn_cuda_available()) { fprintf(stderr, "no CUDA device\n"); return 1; }
    nn_set_grad_enabled(0);
    nn_seed(1);
    nn_cuda_set_conv_tf32(1);
    x = nn_to(nn_randn(4, xs), NN_CUDA); w = nn_to(nn_randn(4, ws), NN_CUDA); b = nn_to(nn_randn(1, &C), NN_CUDA);
    y = nn__new(NN_F32, NN_CUDA, 4, xs);
    for (i = 0; i < 3; i++) {
        nn_scope_begin();
        nn__cuda_conv2d_fwd(x, w, b, one, one, one, 1, y, NULL);   /* no x_keep, as cuda_bench */
        nn__cuda_conv2d_bwd(y, x, NULL, x->shape, w, one, one, one, 1, only_dw ? NULL : nn__new(NN_F32, NN_CUDA, 4, xs),
                            only_dx ? NULL : nn__new(NN_F32, NN_CUDA, 4, ws), nn__new(NN_F32, NN_CUDA, 1, &C));
        nn_scope_end(NULL);
    }
    nn_cuda_synchronize();
    printf("done\n");
    return 0;
}
