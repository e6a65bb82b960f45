/* tests/dinov2_forward.c - run models/dinov2.h on an input and write last_hidden_state, for
   tests/check_dinov2_hf.py (which compares it with transformers' Dinov2Model).

   dinov2_forward WEIGHTS.safetensors PIXELS.npy OUT.npy hidden layers heads mlp_hidden patch image_size
                  [size|scale] [eps]
   PIXELS: f32 [B, 3, H, W]. The weights load strictly by Hugging Face's names (every key, no extras). */
#define NN_IMPLEMENTATION
#include "nn.h"
#include "models/dinov2.h"
#include <time.h>

int main(int argc, char **argv) {
    dinov2_config c;
    dinov2 m;
    nn_params P = {0};
    nn_load_opts lo = {1, 0, NULL, NULL};
    nn_tensor *x, *y;
    struct timespec t0, t1;
    if (argc < 10) {
        fprintf(stderr, "usage: %s WEIGHTS PIXELS.npy OUT.npy hidden layers heads mlp_hidden patch image_size [size|scale] [eps]\n", argv[0]);
        return 2;
    }
    memset(&c, 0, sizeof c);
    c.hidden = atoi(argv[4]); c.layers = atoi(argv[5]); c.heads = atoi(argv[6]); c.mlp_hidden = atoi(argv[7]);
    c.patch = atoi(argv[8]); c.image_size = atoi(argv[9]); c.layerscale = 1.0;
    c.interp = argc > 10 && !strcmp(argv[10], "scale") ? DINOV2_INTERP_SCALE : DINOV2_INTERP_SIZE;
    c.eps = argc > 11 ? atof(argv[11]) : 1e-6;
    dinov2_init(&m, &P, "", &c);
    nn_params_load(argv[1], &P, &lo, NULL);
    x = nn_npy_load(argv[2]);
    nn_set_grad_enabled(0);
    nn_set_training(0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    y = dinov2_forward(&m, x);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    nn_npy_save(argv[3], y);
    fprintf(stderr, "dinov2_forward: %lldx%lld -> %lld tokens in %.3f s, peak %.1f MiB\n", (long long)x->shape[2],
            (long long)x->shape[3], (long long)y->shape[1],
            (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec),
            (double)nn_mem_stats(NN_CPU).peak / 1048576.0);
    nn_tensor_free(x);
    nn_tensor_free(y);
    dinov2_free(&m);
    nn_params_free(&P);
    nn_shutdown();
    return 0;
}
