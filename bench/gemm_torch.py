"""bench/gemm_torch.py - PyTorch twin of bench/gemm_bench.c: torch.matmul on the same shapes, transposes
and thread count, printing the same "case ..." lines (median and best GFLOP/s).

Usage: python3 bench/gemm_torch.py THREADS [CASE_NAME]
The transposed operands are views (x.t()) of contiguous tensors, exactly the memory layouts nn__sgemm
gets with ta/tb = 1, so PyTorch's BLAS sees the same problem (it folds the transpose into its call)."""
import sys
import time

import torch

CASES = [
    ("square_512", 512, 512, 512, 0, 0),
    ("square_1024", 1024, 1024, 1024, 0, 0),
    ("square_1024_AtB", 1024, 1024, 1024, 1, 0),
    ("square_1024_ABt", 1024, 1024, 1024, 0, 1),
    ("square_2048", 2048, 2048, 2048, 0, 0),
    ("linear_fwd_8192x768x768", 8192, 768, 768, 0, 1),
    ("linear_bwd_data_8192x768x768", 8192, 768, 768, 0, 0),
    ("linear_bwd_weight_768x768x8192", 768, 768, 8192, 1, 0),
    ("linear_fwd_40960x128x128", 40960, 128, 128, 0, 1),
    ("linear_bwd_weight_128x128x40960", 128, 128, 40960, 1, 0),
]


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    name_filter = sys.argv[2] if len(sys.argv) > 2 else None
    torch.set_num_threads(threads)
    print(f"torch {torch.__version__} threads {torch.get_num_threads()} "
          f"mkl {torch.backends.mkl.is_available()} mkldnn {torch.backends.mkldnn.is_available()}")
    g = torch.Generator().manual_seed(0)
    for name, m, n, k, ta, tb in CASES:
        if name_filter and name_filter != name:
            continue
        a = torch.rand(k, m, generator=g).t() if ta else torch.rand(m, k, generator=g)
        b = torch.rand(n, k, generator=g).t() if tb else torch.rand(k, n, generator=g)
        out = torch.empty(m, n)
        torch.matmul(a, b, out=out)  # warm-up
        times, total = [], 0.0
        while len(times) < 200 and (len(times) < 5 or total < 1.0):
            t0 = time.perf_counter()
            torch.matmul(a, b, out=out)
            dt = time.perf_counter() - t0
            times.append(dt)
            total += dt
        times.sort()
        flops = 2.0 * m * n * k
        print(f"case {name} {m} {n} {k} {ta} {tb} {threads} "
              f"{flops / times[len(times) // 2] / 1e9:.1f} {flops / times[0] / 1e9:.1f}", flush=True)


if __name__ == "__main__":
    main()
