"""PyTorch's side of bench/cpu_bench.c: the same ops, shapes and timing rule (median of 9 after 2 warm-ups)."""
import sys, time, torch
import torch.nn.functional as F

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads())
torch.manual_seed(0)


def bench(name, fn, reps=9):
    for _ in range(2):
        fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); fn(); ts.append((time.perf_counter() - t0) * 1e3)
    print("%-28s %10.3f ms" % (name, sorted(ts)[reps // 2]))


a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
bench("matmul 1024^3", lambda: a @ b)
x = torch.randn(8192, 768)
w, bb = torch.ones(768), torch.zeros(768)
with torch.no_grad():
    bench("layer_norm 8192x768 fwd", lambda: F.layer_norm(x, (768,), w, bb, 1e-5))
xg, wg, bg = x.clone().requires_grad_(), w.clone().requires_grad_(), bb.clone().requires_grad_()


def ln_step():
    xg.grad = wg.grad = bg.grad = None
    F.layer_norm(xg, (768,), wg, bg, 1e-5).sum().backward()


bench("layer_norm 8192x768 fwd+bwd", ln_step)
xc, wc, bc = torch.randn(4, 64, 64, 64), torch.randn(64, 64, 3, 3), torch.zeros(64)
with torch.no_grad():
    bench("conv2d 4x64x64x64 3x3 fwd", lambda: F.conv2d(xc, wc, bc, 1, 1))
xcg, wcg, bcg = xc.clone().requires_grad_(), wc.clone().requires_grad_(), bc.clone().requires_grad_()


def conv_step():
    xcg.grad = wcg.grad = bcg.grad = None
    F.conv2d(xcg, wcg, bcg, 1, 1).sum().backward()


bench("conv2d 4x64x64x64 fwd+bwd", conv_step)
mlp = torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256))
xm, tm = torch.randn(512, 256), torch.randn(512, 256)


def mlp_step():
    mlp.zero_grad(set_to_none=True)
    F.mse_loss(mlp(xm), tm).backward()


bench("MLP 256-1024-256 b512 step", mlp_step)
