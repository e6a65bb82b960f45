/* bench/session_1207/race_ring.cu - race_probe.cu's question over a ring of stages, as the WS attention loaders use
   them: does compute-sanitizer racecheck follow cp.async data handed over through an mbarrier that is reused phase
   after phase, into a buffer rewritten once the readers have released it? (race_probe.cu, one phase: 0 hazards in
   both modes, bench/RESULTS_FLASH.md stop 22.) Warp 0 copies tile t (4 KiB, every element t + 1) into stage t % 2
   once both reader warps have released that stage's previous tile (empty[t % 2], parity (t / 2 - 1) & 1) and
   arrives on full[t % 2]: mode 0 through the copies (cp.async.mbarrier.arrive.noinc, the kernels' form), mode 1
   by cp.async.wait_group then a plain release arrive. Warps 1 and 2 wait for full (parity (t / 2) & 1), sum the
   tile, arrive on empty. If racecheck flags mode 0 here and not mode 1, the kernels' report is this pattern.
   nvcc -O2 -arch=sm_90a bench/session_1207/race_ring.cu -o race_ring
   compute-sanitizer --tool racecheck --racecheck-report hazard ./race_ring 0; ... ./race_ring 1 */
#include <cstdio>
#include <cstdlib>
#include <cstdint>

#define NT 8   /* tiles */
#define NS 2   /* stages */

#include "mbar_probe.cuh"

__global__ void ring(const float4 *src, float *out, int mode) {
    __shared__ __align__(16) float4 buf[NS][256];
    __shared__ __align__(8) uint64_t full[NS], empty[NS];
    if (threadIdx.x == 0)
        for (int s = 0; s < NS; s++) {
            asm volatile("mbarrier.init.shared.b64 [%0], 32;\n" ::"r"(sa(&full[s])) : "memory");
            asm volatile("mbarrier.init.shared.b64 [%0], 64;\n" ::"r"(sa(&empty[s])) : "memory");
        }
    __syncthreads();
    if (threadIdx.x < 32) {   /* warp 0: the loader */
        for (int t = 0; t < NT; t++) {
            const int s = t % NS;
            if (t >= NS) wait_parity(sa(&empty[s]), (t / NS - 1) & 1);
            for (int i = threadIdx.x; i < 256; i += 32)
                asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa(&buf[s][i])), "l"(src + t * 256 + i)
                             : "memory");
            if (mode == 0) {
                asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(sa(&full[s])) : "memory");
            } else {
                asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
                arrive(sa(&full[s]));
            }
        }
        asm volatile("cp.async.wait_all;\n" ::: "memory");
    } else {                  /* warps 1 and 2: the readers */
        float sum = 0.f;
        for (int t = 0; t < NT; t++) {
            const int s = t % NS;
            wait_parity(sa(&full[s]), (t / NS) & 1);
            for (int i = threadIdx.x % 32; i < 256; i += 32) sum += buf[s][i].x + buf[s][i].y + buf[s][i].z + buf[s][i].w;
            arrive(sa(&empty[s]));
        }
        atomicAdd(out, sum);
    }
}

int main(int argc, char **argv) {
    const int mode = argc > 1 ? atoi(argv[1]) : 0;
    static float4 h[NT * 256];
    float want = 0.f;
    for (int t = 0; t < NT; t++) {
        for (int i = 0; i < 256; i++) h[t * 256 + i] = make_float4(t + 1.f, t + 1.f, t + 1.f, t + 1.f);
        want += 2 * 1024.f * (t + 1);   /* two reader warps, 1024 values a tile */
    }
    float4 *src; float *out, r = 0.f;
    cudaMalloc(&src, sizeof h); cudaMalloc(&out, sizeof(float));
    cudaMemcpy(src, h, sizeof h, cudaMemcpyHostToDevice); cudaMemset(out, 0, sizeof(float));
    ring<<<1, 96>>>(src, out, mode);
    cudaMemcpy(&r, out, sizeof r, cudaMemcpyDeviceToHost);
    printf("mode %d: sum %.0f (want %.0f), %s\n", mode, r, want, cudaGetErrorString(cudaGetLastError()));
    return r == want ? 0 : 1;
}
