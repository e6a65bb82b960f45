"""bench/flash_torch.py - PyTorch's SDPA backends on issue 6's ten cases plus case 11 (bf16), side by side with nn_sdpa.

  python3 bench/flash_torch.py [nn_results.txt]      (DTYPE=f32: f32 inputs, against build/flash_bench f32;
  CASES=5,6: only those cases; NOMATH=1: skip the math backend, never the fastest, to save device time)

Times F.scaled_dot_product_attention with each backend forced through torch.nn.attention.sdpa_kernel (flash,
efficient, cuDNN, math; "n/a" where a backend refuses the case), forward and forward+backward (autograd.grad of
q, k, v), median of CUDA-event timings. nn_results.txt holds bench/flash_bench's lines ("case N fwd_ms T
fwdbwd_ms T"); with it the script prints one markdown table with nn.h's row, every backend's TFLOP/s (4*B*H*Lq*Lk*D
for forward, 3.5x that for forward+backward) and nn.h / best PyTorch. Biases are bf16 (the q dtype) on both sides
and get no gradient; the mask of case 7 is a bool key-padding mask [B,1,1,Lk]."""
import os, sys, time
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

CASES = [
    ("1 DINOv2-B/14 1024px", 2, 12, 5329, 5329, 64, None),
    ("2 4x16 4096 d128", 4, 16, 4096, 4096, 128, None),
    ("3 2x16 8192 d64", 2, 16, 8192, 8192, 64, None),
    ("4 part->whole 1024 d64", 4, 12, 1024, 1024, 64, None),
    ("5 seed000 chunks d16", 40, 8, 1024, 1024, 16, None),
    ("6 seed000 global 40000x1024", 1, 8, 40000, 1024, 16, None),
    ("7 seed002 keypad 10x2048", 4, 8, 10, 2048, 64, "keypad"),
    ("8 AQR 900x56400 bias[B,1]", 2, 8, 900, 56400, 32, "bias_b1"),
    ("9 AQR 900x22384 bias[B,1]", 2, 8, 900, 22384, 32, "bias_b1"),
    ("10 4096 d64 bias full", 2, 16, 4096, 4096, 64, "bias_full"),
    ("11 ViT-B/14 1024px batch 4", 4, 12, 5330, 5330, 64, None),
]
BACKENDS = [("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
            ("cudnn", SDPBackend.CUDNN_ATTENTION), ("math", SDPBackend.MATH)]


def bench_ms(fn, budget_s=0.15):
    fn()
    torch.cuda.synchronize()
    st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    st.record(); fn(); en.record(); torch.cuda.synchronize()
    one = max(st.elapsed_time(en), 1e-3)
    n = int(min(max(budget_s * 1e3 / one, 3), 30))
    times = []
    for _ in range(n):
        st.record(); fn(); en.record(); torch.cuda.synchronize()
        times.append(st.elapsed_time(en))
    times.sort()
    return times[len(times) // 2]


def read_ours(path):
    ours = {}
    if not path:
        return ours
    for line in open(path):
        w = line.split()
        if len(w) >= 6 and w[0] == "case":
            ours[int(w[1])] = (float(w[3]), float(w[5]))
    return ours


def main():
    ours = read_ours(sys.argv[1] if len(sys.argv) > 1 else None)
    dev = "cuda"
    dt = torch.float32 if os.environ.get("DTYPE") == "f32" else torch.bfloat16
    print(torch.__version__, torch.cuda.get_device_name(), time.strftime("%Y-%m-%d %H:%M:%S"), flush=True)
    rows = []
    only = {int(c) for c in os.environ.get("CASES", "").split(",") if c}   # CASES=5,6: those cases only
    for ci, (name, B, H, Lq, Lk, D, kind) in enumerate(CASES, 1):
        if only and ci not in only:
            continue
        torch.manual_seed(0)
        q = torch.randn(B, H, Lq, D, device=dev, dtype=dt)
        k = torch.randn(B, H, Lk, D, device=dev, dtype=dt)
        v = torch.randn(B, H, Lk, D, device=dev, dtype=dt)
        do = torch.randn(B, H, Lq, D, device=dev, dtype=dt)
        am = None
        if kind == "keypad":
            am = torch.ones(B, 1, 1, Lk, dtype=torch.bool, device=dev)
            am[..., Lk - Lk // 4:] = False
        elif kind == "bias_b1":
            am = torch.randn(B, 1, Lq, Lk, device=dev, dtype=dt)
        elif kind == "bias_full":
            am = torch.randn(B, H, Lq, Lk, device=dev, dtype=dt)
        flops = 4.0 * B * H * Lq * Lk * D
        res = {"ours": ours.get(ci)}
        for bn, be in BACKENDS:
            if bn == "math" and (B * H * Lq * Lk > 2 ** 31 or os.environ.get("NOMATH") == "1"):
                res[bn] = None
                continue
            try:
                qg, kg, vg = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
                with sdpa_kernel(be):
                    tf = bench_ms(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=am))

                    def fb():
                        o = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=am)
                        torch.autograd.grad(o, (qg, kg, vg), do)
                    tfb = bench_ms(fb)
                res[bn] = (tf, tfb)
            except Exception:
                res[bn] = None
            torch.cuda.empty_cache()
        rows.append((name, flops, res))
        print(name, {k2: (None if r is None else (round(r[0], 4), round(r[1], 4))) for k2, r in res.items()}, flush=True)
    print()
    print("| case | nn.h fwd ms | nn.h fwd+bwd ms | nn.h TFLOP/s fwd / fwd+bwd | flash | efficient | cuDNN | math | "
          "best PyTorch | nn.h / best (fwd, fwd+bwd) |")
    print("|---|---|---|---|---|---|---|---|---|---|")

    def tfs(r, flops):
        return "n/a" if r is None else f"{flops / r[0] / 1e9:.0f} / {3.5 * flops / r[1] / 1e9:.0f}"
    for name, flops, res in rows:
        o = res["ours"]
        bf = min((res[b][0] for b, _ in BACKENDS if res.get(b)), default=float("nan"))
        bfb = min((res[b][1] for b, _ in BACKENDS if res.get(b)), default=float("nan"))
        ratio = "-" if o is None else f"{bf / o[0]:.2f} / {bfb / o[1]:.2f}"
        ot = ("-", "-") if o is None else (f"{o[0]:.3f}", f"{o[1]:.3f}")
        print(f"| {name} | {ot[0]} | {ot[1]} | {tfs(o, flops)} | {tfs(res.get('flash'), flops)} | "
              f"{tfs(res.get('efficient'), flops)} | {tfs(res.get('cudnn'), flops)} | {tfs(res.get('math'), flops)} | "
              f"{flops / bf / 1e9:.0f} / {3.5 * flops / bfb / 1e9:.0f} | {ratio} |")


if __name__ == "__main__":
    main()
