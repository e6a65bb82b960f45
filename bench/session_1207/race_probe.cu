/* bench/session_1207/race_probe.cu - does compute-sanitizer racecheck follow cp.async completion through an
   mbarrier (cp.async.mbarrier.arrive.noinc by the copying threads, mbarrier.try_wait.parity by the readers)?
   The WS attention kernels hand tiles over that way, and racecheck reported "invalid memcpy_async
   synchronization" on them (bench/RESULTS_FLASH.md, stop 21). Warp 0 copies 4 KiB into shared memory and arrives
   through the copies; warp 1 waits on the barrier and reads. Mode 1 hands over the same data with
   cp.async.wait_group + a plain (release) arrive instead. If racecheck flags mode 0 and not mode 1, the report on
   the kernels is the tool's blind spot, and mode 1 is the form it follows.
   nvcc -O2 -arch=sm_90a bench/session_1207/race_probe.cu -o race_probe
   compute-sanitizer --tool racecheck --racecheck-report hazard ./race_probe 0; ... ./race_probe 1 */
#include <cstdio>
#include <cstdlib>
#include <cstdint>

__global__ void probe(const float4 *src, float *out, int mode) {
    __shared__ __align__(16) float4 buf[256];
    __shared__ __align__(8) uint64_t bar;
    const uint32_t b = (uint32_t)__cvta_generic_to_shared(&bar);
    if (threadIdx.x == 0) asm volatile("mbarrier.init.shared.b64 [%0], 32;\n" ::"r"(b) : "memory");
    __syncthreads();
    if (threadIdx.x < 32) {   /* warp 0: the copies */
        for (int i = threadIdx.x; i < 256; i += 32) {
            const uint32_t d = (uint32_t)__cvta_generic_to_shared(&buf[i]);
            asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(d), "l"(src + i) : "memory");
        }
        if (mode == 0) {
            asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(b) : "memory");
        } else {
            asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
            asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared.b64 st, [%0];\n}\n" ::"r"(b) : "memory");
        }
    } else {                  /* warp 1: wait for phase 0, read */
        asm volatile("{\n.reg .pred done;\nWAIT:\nmbarrier.try_wait.parity.shared.b64 done, [%0], 0;\n@!done bra WAIT;\n}\n"
                     ::"r"(b) : "memory");
        float s = 0.f;
        for (int i = threadIdx.x - 32; i < 256; i += 32) s += buf[i].x + buf[i].y + buf[i].z + buf[i].w;
        atomicAdd(out, s);
    }
}

int main(int argc, char **argv) {
    const int mode = argc > 1 ? atoi(argv[1]) : 0;
    float4 h[256];
    for (int i = 0; i < 256; i++) h[i] = make_float4(1.f, 1.f, 1.f, 1.f);
    float4 *src; float *out, r = 0.f;
    cudaMalloc(&src, sizeof h); cudaMalloc(&out, sizeof(float));
    cudaMemcpy(src, h, sizeof h, cudaMemcpyHostToDevice); cudaMemset(out, 0, sizeof(float));
    probe<<<1, 64>>>(src, out, mode);
    cudaMemcpy(&r, out, sizeof r, cudaMemcpyDeviceToHost);
    printf("mode %d: sum %.0f (want 1024), %s\n", mode, r, cudaGetErrorString(cudaGetLastError()));
    return r == 1024.f ? 0 : 1;
}
