#!/usr/bin/env python3
"""bench/cuda_torch.py NN_RESULTS [OUT.md] - times PyTorch on the cases bench/cuda_bench.c printed and writes
one table: nn.h's time, PyTorch's, the ratio (torch / nn: above 1 means nn.h is faster) and the achieved rate
(GB/s from the bytes each case must move, TFLOP/s for GEMMs). CUDA events, 3 warm-ups, median of 7 batches (20 ms memory-bound rows, 2 ms the others)."""
import sys, time, datetime, subprocess
import torch
import torch.nn.functional as F

dev = "cuda"
torch.manual_seed(0)


# a batch's length, as bench/cuda_bench.c's batch_ms (its comment says why): 20 ms for the memory-bound rows, so
# that the gap before a batch's first launch (Python's call overhead, inside the events) is under 0.1 % of it;
# 2 ms for GEMM, conv and AdamW rows. Set by torch_case from the case's name.
BATCH_MS = 2.0
MEMORY_BOUND = ("copy", "layer_norm", "softmax", "sum_lastdim", "gelu", "group_norm")


def timeit(fn, iters):
    """median per call of 7 batches of about BATCH_MS"""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    cal = (time.perf_counter() - t0) * 1e3
    if cal < BATCH_MS:
        iters = int(iters * BATCH_MS / cal) + 1 if cal > 0.02 else 20000
    ts = []
    for _ in range(7):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(iters):
            fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b) / iters)
    ts.sort()
    return ts[3]


def rnd(*s, dtype=torch.float32):
    return (torch.rand(*s, device=dev) * 2 - 1).to(dtype)


def torch_case(name):
    global BATCH_MS
    BATCH_MS = 20.0 if name.startswith(MEMORY_BOUND) else 2.0
    p = name.split("_")
    if name.startswith("copy"):   # copy_1GiB, copy_32MiB: that many bytes of f32
        size = p[1]
        a = rnd((int(size[:-3]) << (30 if size.endswith("GiB") else 20)) // 4); b = torch.empty_like(a)
        return timeit(lambda: b.copy_(a), 20)
    if name.startswith("gemm"):
        kind = p[1]; M, N, K = map(int, p[2].split("x"))
        torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
        dt = torch.bfloat16 if kind == "bf16" else torch.float32
        a, b = rnd(M, K, dtype=dt), rnd(K, N, dtype=dt)
        r = timeit(lambda: a @ b, 5 if M == 8192 else 10)
        torch.backends.cuda.matmul.allow_tf32 = False
        return r
    if name.startswith("layer_norm") or name.startswith("softmax") or name.startswith("sum_lastdim"):
        R, C = map(int, p[-1].split("x"))
        x, w, b, g = rnd(R, C), rnd(C), rnd(C), rnd(R, C)
        if name.startswith("sum"):
            return timeit(lambda: x.sum(-1), 20)
        ln = name.startswith("layer_norm")
        f = (lambda: F.layer_norm(x, (C,), w, b, 1e-5)) if ln else (lambda: torch.softmax(x, -1))
        if "fwdbwd" not in name:
            with torch.no_grad():
                return timeit(f, 20)
        x.requires_grad_(True)
        if ln:
            w.requires_grad_(True); b.requires_grad_(True)
        return timeit(lambda: f().backward(g), 20)
    if name.startswith("gelu"):
        x, g = rnd(1 << 26), rnd(1 << 26)
        if "fwdbwd" not in name:
            with torch.no_grad():
                return timeit(lambda: F.gelu(x), 20)
        x.requires_grad_(True)
        return timeit(lambda: F.gelu(x).backward(g), 20)
    if name.startswith("conv2d_bf16"):   # autocast bf16, f32 x/w/b, NCHW (channels_first); cuDNN default and benchmark
        N, C, H, W = map(int, p[3].split("x"))
        O, k, s = int(p[4][1:]), int(p[5][1:]), int(p[6][1:])
        pad = k // 2
        Ho, Wo = (H + 2 * pad - k) // s + 1, (W + 2 * pad - k) // s + 1
        x, w, b, g = rnd(N, C, H, W), rnd(O, C, k, k), rnd(O), rnd(N, O, Ho, Wo, dtype=torch.bfloat16)
        res = {}
        for bench_mode in (False, True):
            torch.backends.cudnn.benchmark = bench_mode
            if p[2] == "fwd":
                def fwd():
                    with torch.autocast("cuda", torch.bfloat16):
                        return F.conv2d(x, w, b, stride=s, padding=pad)
                with torch.no_grad():
                    r = timeit(fwd, 10)
            else:   # fwdbwd: every gradient; fwddx / fwddw: x's or w's only (cuda_bench convpass)
                x.requires_grad_(p[2] != "fwddw"); w.requires_grad_(p[2] != "fwddx"); b.requires_grad_(p[2] == "fwdbwd")

                def step():
                    x.grad = w.grad = b.grad = None
                    with torch.autocast("cuda", torch.bfloat16):
                        y = F.conv2d(x, w, b, stride=s, padding=pad)
                    y.backward(g)
                r = timeit(step, 5)
            res["cudnn benchmark" if bench_mode else "cudnn default"] = r
        torch.backends.cudnn.benchmark = False
        return res
    if name.startswith("conv2d"):
        tf = p[1] == "tf32"
        N, C, H, W = map(int, p[3].split("x"))
        torch.backends.cudnn.allow_tf32 = tf
        x, w, b, g = rnd(N, C, H, W), rnd(C, C, 3, 3), rnd(C), rnd(N, C, H, W)
        if p[2] == "fwd":
            with torch.no_grad():
                r = timeit(lambda: F.conv2d(x, w, b, padding=1), 10)
        else:
            x.requires_grad_(True); w.requires_grad_(True); b.requires_grad_(True)

            def step():
                x.grad = w.grad = b.grad = None
                F.conv2d(x, w, b, padding=1).backward(g)
            r = timeit(step, 5)
        torch.backends.cudnn.allow_tf32 = True
        return r
    if name.startswith("group_norm"):
        x, w, b = rnd(8, 256, 64, 64), rnd(256), rnd(256)
        if p[2] == "fwd":
            with torch.no_grad():
                return timeit(lambda: F.group_norm(x, 32, w, b, 1e-5), 20)
        g = rnd(8, 256, 64, 64)
        x.requires_grad_(True); w.requires_grad_(True); b.requires_grad_(True)
        # gradients accumulate across calls on both sides, as in the layer_norm / softmax / GELU rows (cuda_bench's
        # f_gn_fb never zeroes them). At 2026-12-07 16:47 (session_1207f/callB.sh) this step set them to None first,
        # which spared PyTorch the accumulation into x.grad that nn.h paid (a read-read-write pass over 33.5 MB)
        return timeit(lambda: F.group_norm(x, 32, w, b, 1e-5).backward(g), 20)
    if name.startswith("adamw") or name.startswith("grad_norm"):
        ps = []
        for k in range(150):
            sz = 768 if k % 3 == 2 else (768 * 768 * 3 // 2 if k % 3 == 1 else 768 * 768 * 2 + 768 * 768 // 3)
            t = torch.nn.Parameter(rnd(sz)); t.grad = rnd(sz); ps.append(t)
        if name.startswith("grad_norm"):
            return timeit(lambda: torch.nn.utils.clip_grad_norm_(ps, 1e9), 10)
        groups = [{"params": [t for k, t in enumerate(ps) if k % 3 != 2], "weight_decay": 0.05},
                  {"params": [t for k, t in enumerate(ps) if k % 3 == 2], "weight_decay": 0.0}]
        res = {}
        for mode in ("fused", "foreach"):
            opt = torch.optim.AdamW(groups, lr=1e-4, **{mode: True})
            res[mode] = timeit(opt.step, 10)
        return res
    return None


def main():
    rows, extra = [], []
    for line in open(sys.argv[1]):
        f = line.split()
        if f and f[0] == "NN":
            rows.append((f[1], float(f[2]), float(f[3]), float(f[4])))
        elif f and f[0].startswith("NN_"):
            extra.append(line.strip())
    out = []
    gpu = torch.cuda.get_device_name(0)
    out.append(f"GPU: {gpu}, PyTorch {torch.__version__}, {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC")
    out.append("")
    out.append("| case | nn.h ms | PyTorch ms | torch/nn | nn.h rate |")
    out.append("| --- | ---: | ---: | ---: | ---: |")
    for name, ms, by, fl in rows:
        t = torch_case(name)
        rate = f"{fl / ms / 1e9:.0f} TFLOP/s" if fl > 0 else f"{by / ms / 1e6:.0f} GB/s"
        if isinstance(t, dict):
            for mode, tm in t.items():
                out.append(f"| {name} (torch {mode}) | {ms:.4f} | {tm:.4f} | {tm / ms:.2f} | {rate} |")
        elif t is None:
            out.append(f"| {name} | {ms:.4f} | - | - | {rate} |")
        else:
            out.append(f"| {name} | {ms:.4f} | {t:.4f} | {t / ms:.2f} | {rate} |")
        print(out[-1], flush=True)
    out.append("")
    out += ["    " + e for e in extra]
    out.append(f"    torch max_memory_allocated {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    text = "\n".join(out) + "\n"
    print(text)
    if len(sys.argv) > 2:
        open(sys.argv[2], "w").write(text)


if __name__ == "__main__":
    main()
