"""PyTorch twin of bench/conv_bench.c: the same cases, same thread count, same output format.

    python3 bench/conv_torch.py [batch] [reps] [threads]      (threads default: OMP_NUM_THREADS or 2)
Output: case <name> <threads> <median ms> <best ms> <GFLOP/s at median> <peak MiB: '-' (not measured)>"""
import os
import sys
import time
import torch
import torch.nn.functional as F

B = int(sys.argv[1]) if len(sys.argv) > 1 else 8
REPS = int(sys.argv[2]) if len(sys.argv) > 2 else 5
T = int(sys.argv[3]) if len(sys.argv) > 3 else int(os.environ.get("OMP_NUM_THREADS", "2"))
torch.set_num_threads(T)
torch.manual_seed(0)

# name, cin, h, w, cout, k, stride, pad (as conv_bench.c)
CASES = [("in", 4, 128, 128, 64, 3, 1, 1), ("l0", 64, 128, 128, 64, 3, 1, 1), ("l1", 128, 64, 64, 128, 3, 1, 1),
         ("l2", 256, 32, 32, 256, 3, 1, 1), ("l3", 512, 16, 16, 512, 3, 1, 1), ("down", 64, 128, 128, 64, 3, 2, 1),
         ("skip1x1", 256, 32, 32, 128, 1, 1, 0)]


def timeit(fn):
    fn()  # warm-up
    ts = []
    for _ in range(REPS):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2], ts[0]


def report(name, med, best, flops):
    print("case %-34s %d %9.2f %9.2f %8.1f %8s" % (name, T, 1e3 * med, 1e3 * best, flops / med / 1e9, "-"),
          flush=True)


print("# conv_torch batch %d reps %d threads %d torch %s" % (B, REPS, T, torch.__version__))
only = sys.argv[4] if len(sys.argv) > 4 else None
for name, c, h, w, cout, k, s, p in CASES:
    if only and only != "conv" and only not in name:
        continue
    x = torch.randn(B, c, h, w)
    wt = torch.randn(cout, c, k, k)
    b = torch.randn(cout)
    ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    flops = 2.0 * B * cout * ho * wo * c * k * k
    tag = "[%d,%d,%d,%d]_k%d_s%d_%d" % (B, c, h, w, k, s, cout)
    with torch.no_grad():
        med, best = timeit(lambda: F.conv2d(x, wt, b, stride=s, padding=p))
    report("conv_fwd_" + tag, med, best, flops)
    xg, wg, bg = x.clone().requires_grad_(), wt.clone().requires_grad_(), b.clone().requires_grad_()
    g = torch.randn(B, cout, ho, wo)

    def step():
        xg.grad = wg.grad = bg.grad = None
        F.conv2d(xg, wg, bg, stride=s, padding=p).backward(g)
    med, best = timeit(step)
    report("conv_fwdbwd_" + tag, med, best, 3 * flops)

if not only or only == "gn":
    for c, h in [(64, 128), (256, 32)]:
        x = torch.randn(B, c, h, h)
        w, b = torch.ones(c), torch.zeros(c)
        tag = "[%d,%d,%d,%d]" % (B, c, h, h)
        with torch.no_grad():
            med, best = timeit(lambda: F.group_norm(x, 32, w, b, 1e-5))
        report("group_norm32_fwd_" + tag, med, best, 0.0)
        xg, wg, bg = x.clone().requires_grad_(), w.clone().requires_grad_(), b.clone().requires_grad_()
        g = torch.randn_like(x)

        def step():
            xg.grad = wg.grad = bg.grad = None
            F.group_norm(xg, 32, wg, bg, 1e-5).backward(g)
        med, best = timeit(step)
        report("group_norm32_fwdbwd_" + tag, med, best, 0.0)

if not only or only == "plane":
    for op, c, h in [(0, 128, 64), (1, 64, 128)]:
        x = torch.randn(B, c, h, h)
        f = (lambda t: F.interpolate(t, size=(2 * h, 2 * h), mode="nearest")) if op == 0 else (lambda t: F.avg_pool2d(t, 2, 2))
        tag = "%s_[%d,%d,%d,%d]" % ("upsample2x" if op == 0 else "avg_pool2", B, c, h, h)
        with torch.no_grad():
            med, best = timeit(lambda: f(x))
        report(tag.replace("_[", "_fwd_[", 1), med, best, 0.0)
        xg = x.clone().requires_grad_()
        g = torch.randn_like(f(x))

        def step():
            xg.grad = None
            f(xg).backward(g)
        med, best = timeit(step)
        report(tag.replace("_[", "_fwdbwd_[", 1), med, best, 0.0)
