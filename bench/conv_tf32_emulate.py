#!/usr/bin/env python3
"""bench/conv_tf32_emulate.py - on the CPU (numpy), the error of one GEMM of conv-like sizes (K = 9 x channels,
operands uniform in [-1, 1], as tests/test_cuda.c's conv cases) relative to its norm, for the arithmetic of each
f32 conv path: f32 (as cuBLAS / the CPU), TF32 operands rounded to nearest (cvt.rna, the conv kernels with TF32
on) or truncated (the hardware's own use of f32 bits), and 3xTF32 (big = tf32(x), small = tf32(x - big); three
products, f32 accumulation emulated in order). The reference is the float64 product.
Result (2026-12-06): f32 1e-7..4e-7, TF32 rna 2.6e-4, TF32 truncated 6.9e-4, 3xTF32 2e-7..1.2e-6 (the f32
accumulation in order; ~7e-8 with exact sums): tests/test_cuda.c's TOL_F32 (1e-5) passes 3xTF32 and fails
plain TF32 by ~25x, and TOL_TF32 (2e-3) is ~3x the truncated TF32 error."""
import numpy as np

rng = np.random.default_rng(0)


def tf32(x, rna=True):
    b = x.astype(np.float32).view(np.uint32).astype(np.uint64)
    b = ((b + (0x1000 if rna else 0)) & 0xffffe000).astype(np.uint32)
    return b.view(np.float32)


for K in (48, 9 * 16, 9 * 64, 9 * 160):
    A = rng.uniform(-1, 1, (64, K)).astype(np.float32)
    B = rng.uniform(-1, 1, (K, 256)).astype(np.float32)
    ref = A.astype(np.float64) @ B.astype(np.float64)
    rel = lambda y: np.linalg.norm(y - ref) / np.linalg.norm(ref)
    ab, as_, bb, bs = tf32(A), tf32(A - tf32(A)), tf32(B), tf32(B - tf32(B))
    acc = np.zeros((64, 256), np.float32)
    for k in range(K):   # f32 accumulation, small products first as the kernel
        acc += np.outer(as_[:, k], bb[k]).astype(np.float32)
        acc += np.outer(ab[:, k], bs[k]).astype(np.float32)
        acc += np.outer(ab[:, k], bb[k]).astype(np.float32)
    print("K %5d  f32 %.2e  tf32-rna %.2e  tf32-trunc %.2e  3xtf32 %.2e" % (
        K, rel(A @ B), rel(tf32(A).astype(np.float64) @ tf32(B)),
        rel(tf32(A, False).astype(np.float64) @ tf32(B, False)), rel(acc)))
