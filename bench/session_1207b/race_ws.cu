/* bench/session_1207b/race_ws.cu - race_ring.cu's question in the shape of the attention kernels' WS form, to find
   what in the staged-bias forward makes compute-sanitizer racecheck report "invalid memcpy_async synchronization"
   (bench/RESULTS_FLASH.md, stop 23) when the backward's lse/delta reads, the same hand-over, stay clean.
   384 threads: warpgroup 0 loads (a resident tile, then NT tiles through NS stages: 16-byte cp.async.cg, each
   thread's arrival on the stage's mbarrier riding on its copies, noinc), warpgroups 1-2 wait for the stage, read
   it with ordinary loads (as load_bias) and release it. Mode bits: 1 the copies carry a src-size operand (the
   kernels' form); 2 fence.proxy.async after the wait (the forward's tile_landed); 4 a named barrier over the 256
   readers after the wait (the backward's landed_sync); 8 the resident tile's own barrier first (ws_loader's once);
   16 setmaxnreg (the loader down to 72 registers, the readers up to 216, as the staged-bias forward).
   nvcc -O2 -gencode arch=compute_90a,code=sm_90a bench/session_1207b/race_ws.cu -o race_ws
   for m in 0 1 2 3 4 6 7 9 11 15 16 31; do compute-sanitizer --tool racecheck --racecheck-report hazard ./race_ws $m; done
   Ran 2026-12-07 08:21 (H100; call0821_logs.tgz): modes 0-4, 6, 7, 9, 11, 15 0 hazards; 16 and 31 not run. */
#include <cstdio>
#include <cstdlib>
#include <cstdint>

#define NT 6
#define NS 3
#define TB 4096   /* bytes a tile: 128 loader threads x 2 copies of 16 bytes */

#include "../session_1207/mbar_probe.cuh"
__device__ __forceinline__ void copy16(void *d, const void *s, int mode) {
    if (mode & 1) asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(sa(d)), "l"(s), "r"(16) : "memory");
    else asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(sa(d)), "l"(s) : "memory");
}

__global__ void __launch_bounds__(384, 1) ws(const unsigned char *src, float *out, int mode) {
    __shared__ __align__(1024) unsigned char res[TB], buf[NS][TB];
    __shared__ __align__(8) uint64_t once, full[NS], empty[NS];
    if (threadIdx.x == 0) {
        asm volatile("mbarrier.init.shared.b64 [%0], 128;\n" ::"r"(sa(&once)) : "memory");
        for (int s = 0; s < NS; s++) {
            asm volatile("mbarrier.init.shared.b64 [%0], 128;\n" ::"r"(sa(&full[s])) : "memory");
            asm volatile("mbarrier.init.shared.b64 [%0], 256;\n" ::"r"(sa(&empty[s])) : "memory");
        }
    }
    __syncthreads();
    const int x = threadIdx.x;
    if (x < 128) {   /* the loader */
        if (mode & 16) asm volatile("setmaxnreg.dec.sync.aligned.u32 72;\n" ::: "memory");
        for (int k = 0; k < 2; k++) copy16(res + (x + 128 * k) * 16, src + (x + 128 * k) * 16, mode);
        asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(sa(&once)) : "memory");
        for (int t = 0; t < NT; t++) {
            const int s = t % NS;
            if (t >= NS) wait_parity(sa(&empty[s]), (t / NS - 1) & 1);
            for (int k = 0; k < 2; k++)
                copy16(buf[s] + (x + 128 * k) * 16, src + (size_t)(t + 1) * TB + (x + 128 * k) * 16, mode);
            asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(sa(&full[s])) : "memory");
        }
        asm volatile("cp.async.wait_all;\n" ::: "memory");
        return;
    }
    if (mode & 16) asm volatile("setmaxnreg.inc.sync.aligned.u32 216;\n" ::: "memory");
    const int r = x - 128;   /* reader r reads the 4 bytes at 16 r of each tile (rows of 16 bytes, as a bias chunk) */
    float sum = 0.f;
    if (mode & 8) { wait_parity(sa(&once), 0); sum += (float)res[16 * r]; }
    for (int t = 0; t < NT; t++) {
        const int s = t % NS;
        wait_parity(sa(&full[s]), (t / NS) & 1);
        if (mode & 2) asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        if (mode & 4) asm volatile("bar.sync 3, 256;\n" ::: "memory");
        sum += (float)*reinterpret_cast<const uint32_t *>(buf[s] + 16 * r);
        arrive(sa(&empty[s]));
    }
    atomicAdd(out, sum);
}

int main(int argc, char **argv) {
    const int mode = argc > 1 ? atoi(argv[1]) : 0;
    const size_t n = (size_t)(NT + 1) * TB;
    unsigned char *h = (unsigned char *)calloc(n, 1), *src;
    double want = 0;
    for (int t = 0; t < NT; t++)
        for (int r = 0; r < 256; r++) { h[(size_t)(t + 1) * TB + 16 * r] = (unsigned char)(t + 1); want += t + 1; }
    for (int r = 0; r < 256; r++) { h[16 * r] = 1; if (mode & 8) want += 1; }
    float *out, got = 0.f;
    cudaMalloc(&src, n); cudaMalloc(&out, sizeof(float));
    cudaMemcpy(src, h, n, cudaMemcpyHostToDevice); cudaMemset(out, 0, sizeof(float));
    ws<<<1, 384>>>(src, out, mode);
    cudaMemcpy(&got, out, sizeof got, cudaMemcpyDeviceToHost);
    printf("mode %d: sum %.0f (want %.0f), %s\n", mode, got, want, cudaGetErrorString(cudaGetLastError()));
    free(h);
    return got == (float)want ? 0 : 1;
}
