/* bench/session_1207/mbar_probe.cuh - the mbarrier helpers of the racecheck probes (race_ring.cu,
   bench/session_1207b/race_ws.cu): a shared address, a wait for a phase's parity, a plain (release) arrival */
#pragma once
#include <cstdint>

__device__ __forceinline__ uint32_t sa(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
__device__ __forceinline__ void wait_parity(uint32_t b, uint32_t par) {
    asm volatile("{\n.reg .pred done;\nWAIT:\nmbarrier.try_wait.parity.shared.b64 done, [%0], %1;\n@!done bra WAIT;\n}\n"
                 ::"r"(b), "r"(par) : "memory");
}
__device__ __forceinline__ void arrive(uint32_t b) {
    asm volatile("{\n.reg .b64 st;\nmbarrier.arrive.shared.b64 st, [%0];\n}\n" ::"r"(b) : "memory");
}
