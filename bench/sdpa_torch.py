"""PyTorch twin of bench/sdpa_bench.c: F.scaled_dot_product_attention on the CPU, same cases, same output line.

usage: python3 bench/sdpa_torch.py <case> [reps]      (threads: torch.set_num_threads($SDPA_THREADS or 2))
prints: case fwd_ms fwdbwd_ms - - fwd_rss_MiB fwdbwd_rss_MiB   (or "case OOM"/"case skipped <why>")
Peak memory: VmHWM reset through /proc/self/clear_refs before each call, minus VmRSS before it: the memory
the call itself added (PyTorch's CPU allocator returns big blocks to the system, so this is the op's peak).
The cross900 bias requires grad in fwd+bwd (it is learned in seed 004; the forward-only run passes it detached): PyTorch's fused CPU kernel has no
gradient for attn_mask, so it dispatches to the math path there, as it would in training."""
import os
import sys
import time
import torch
import torch.nn.functional as F


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return float(line.split()[1])
    return 0.0


def reset_hwm():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


CPU = [0.0, 0.0, 0, 0]  # CPU ms of all threads (steadier than wall time on a shared machine), calls


def run_once(q, k, v, bias, gout, backward):
    reset_hwm()
    rss0 = status_kb("VmRSS:")
    t0, c0 = time.perf_counter(), time.process_time()
    if backward:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out.backward(gout)
    else:
        with torch.no_grad():  # inference: a bias that needs no gradient, so the fused kernel takes it
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias.detach())
    del out
    t1, c1 = time.perf_counter(), time.process_time()
    CPU[backward] += (c1 - c0) * 1e3
    CPU[2 + backward] += 1
    rss = (status_kb("VmHWM:") - rss0) / 1024.0
    for t in (q, k, v, bias):
        if t is not None:
            t.grad = None
    return (t1 - t0) * 1e3, rss


def main():
    case = sys.argv[1] if len(sys.argv) > 1 else "mha1024"
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    torch.set_num_threads(int(os.environ.get("SDPA_THREADS", "2")))
    torch.manual_seed(0)
    B, H, Lq, Lk, D = 1, 4, 1024, 1024, 64
    warm = True
    if case == "cross900":
        H, Lq, Lk, D = 8, 900, 22384, 32
    elif case == "long40k":
        H = int(os.environ.get("SDPA_LONG_HEADS", "1"))
        Lq = Lk = int(os.environ.get("SDPA_LONG_N", "40000"))
        D, warm = 16, False
    elif case == "seed000":
        B, H, Lq, Lk, D = 40, 8, 1024, 1024, 16
    q = torch.randn(B, H, Lq, D, requires_grad=True)
    k = torch.randn(B, H, Lk, D, requires_grad=True)
    v = torch.randn(B, H, Lk, D, requires_grad=True)
    gout = torch.randn(B, H, Lq, D)
    bias = torch.randn(1, 1, Lq, Lk, requires_grad=True) if case == "cross900" else None
    res = []
    fwd_only = os.environ.get("SDPA_FWD_ONLY") == "1"  # long40k x 8 heads: PyTorch's backward takes hours here
    for backward in ((False,) if fwd_only else (False, True)):
        try:
            if warm:
                run_once(q, k, v, bias, gout, backward)
            ts, rs = [], []
            for _ in range(reps):
                t, r = run_once(q, k, v, bias, gout, backward)
                ts.append(t)
                rs.append(r)
            ts.sort()
            res.append((ts[len(ts) // 2], max(rs)))
        except RuntimeError as e:  # allocation failures
            print("%s OOM %s" % (case, str(e).splitlines()[0][:80]))
            return
    if fwd_only:
        sys.stderr.write("cpu ms per call: fwd %.1f fwd+bwd -\n" % (CPU[0] / CPU[2]))
        print("%s %.1f - - - %.1f -" % (case, res[0][0], res[0][1]))
        return
    sys.stderr.write("cpu ms per call: fwd %.1f fwd+bwd %.1f\n" % (CPU[0] / CPU[2], CPU[1] / CPU[3]))
    print("%s %.1f %.1f - - %.1f %.1f" % (case, res[0][0], res[1][0], res[0][1], res[1][1]))


if __name__ == "__main__":
    main()
