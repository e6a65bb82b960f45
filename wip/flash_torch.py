"""wip/flash_torch.py - checks wip/flash_attn.cu (through build/libflash.so, ctypes) against
torch.nn.functional.scaled_dot_product_attention in float64, and times it against PyTorch's SDPA backends in
the same process.

  python3 wip/flash_torch.py build/libflash.so [check|bench|all]

check: every feature combination (masks, key padding, broadcast biases with their gradient, causal, custom scale,
dropout, fully masked rows, Lq != Lk, odd lengths, Lk = 1, Lk = 56,400, D != Dv, [B,L,H,D] strided layout) for
f32, f16 and bf16, relative errors ||x - ref|| / ||ref|| of o, dq, dk, dv, dbias. The reference is computed in
float64 from the same (rounded) inputs: F.scaled_dot_product_attention where it applies (no dropout, rows with at
least one key), and an explicit float64 softmax otherwise (fully masked rows -> 0; dropout with the mask Z drawn
by a torch re-implementation of nn.h's Philox4x32-10 stream, so a wrong device mask shows as a large error).
bench: the issue's 10 cases, bf16, forward and forward+backward, ours and each PyTorch backend that accepts the
case, median of CUDA-event timings; TFLOP/s with 4*B*H*Lq*Lk*D for forward and 3.5x that for fwd+bwd."""
import ctypes, math, sys, time, os
import torch
import torch.nn.functional as F

LIB = sys.argv[1] if len(sys.argv) > 1 else "build/libflash.so"
MODE = sys.argv[2] if len(sys.argv) > 2 else "all"
lib = ctypes.CDLL(LIB)
i64x3 = ctypes.c_int64 * 3
i64x4 = ctypes.c_int64 * 4
vp = ctypes.c_void_p


class Args(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("B", ctypes.c_int), ("H", ctypes.c_int), ("Lq", ctypes.c_int),
                ("Lk", ctypes.c_int), ("D", ctypes.c_int), ("Dv", ctypes.c_int),
                ("q", vp), ("k", vp), ("v", vp), ("sq", i64x3), ("sk", i64x3), ("sv", i64x3),
                ("o", vp), ("so", i64x3), ("lse", vp), ("mask", vp), ("ms", i64x4),
                ("bias", vp), ("bias_dtype", ctypes.c_int), ("bs", i64x4),
                ("causal", ctypes.c_int), ("scale", ctypes.c_float), ("dropout_p", ctypes.c_float),
                ("seed", ctypes.c_uint64), ("offset", ctypes.c_uint64),
                ("dout", vp), ("sdo", i64x3), ("dq", vp), ("dk", vp), ("dv", vp),
                ("sdq", i64x3), ("sdk", i64x3), ("sdv", i64x3), ("dbias", vp), ("ws", vp)]


lib.nn__cuda_sdpa_fwd.argtypes = [ctypes.POINTER(Args), vp]
lib.nn__cuda_sdpa_bwd.argtypes = [ctypes.POINTER(Args), vp]
lib.nn__cuda_sdpa_fwd.restype = ctypes.c_int
lib.nn__cuda_sdpa_bwd.restype = ctypes.c_int
lib.nn__cuda_sdpa_last_error.restype = ctypes.c_char_p
lib.nn__cuda_sdpa_ws_bytes.restype = ctypes.c_size_t
lib.nn__cuda_sdpa_ws_bytes.argtypes = [ctypes.POINTER(Args), ctypes.c_int]
DT = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}


def s3(t):
    return i64x3(t.stride(0), t.stride(1), t.stride(2))


def bstrides(t, full):
    return i64x4(*t.expand(*full).stride())


class Ours:
    """forward/backward through the C entry points; q, k, v: [B,H,L,D] views (any batch/head/row strides)."""

    def __init__(self, q, k, v, mask=None, bias=None, causal=False, scale=None, p=0.0, seed=0, offset=0):
        B, H, Lq, D = q.shape
        Lk, Dv = k.shape[2], v.shape[3]
        self.q, self.k, self.v, self.mask, self.bias = q, k, v, mask, bias
        self.o = torch.empty(B, H, Lq, Dv, dtype=q.dtype, device=q.device)
        self.lse = torch.empty(B, H, Lq, dtype=torch.float32, device=q.device)
        a = Args()
        a.dtype = DT[q.dtype]
        a.B, a.H, a.Lq, a.Lk, a.D, a.Dv = B, H, Lq, Lk, D, Dv
        a.q, a.k, a.v = q.data_ptr(), k.data_ptr(), v.data_ptr()
        a.sq, a.sk, a.sv = s3(q), s3(k), s3(v)
        a.o, a.so, a.lse = self.o.data_ptr(), s3(self.o), self.lse.data_ptr()
        full = (B, H, Lq, Lk)
        if mask is not None:
            a.mask, a.ms = mask.data_ptr(), bstrides(mask, full)
        if bias is not None:
            a.bias, a.bs = bias.data_ptr(), bstrides(bias, full)
            a.bias_dtype = 0 if bias.dtype == torch.float32 else 1
        a.causal = int(causal)
        a.scale = scale if scale is not None else 1.0 / math.sqrt(D)
        a.dropout_p, a.seed, a.offset = p, seed, offset
        self.a = a
        wsb = max(lib.nn__cuda_sdpa_ws_bytes(ctypes.byref(a), 0), lib.nn__cuda_sdpa_ws_bytes(ctypes.byref(a), 1))
        self.ws = torch.empty(wsb // 4 + 1, dtype=torch.float32, device=q.device)
        a.ws = self.ws.data_ptr()

    def fwd(self):
        if lib.nn__cuda_sdpa_fwd(ctypes.byref(self.a), vp(torch.cuda.current_stream().cuda_stream)):
            raise RuntimeError(lib.nn__cuda_sdpa_last_error().decode())
        return self.o, self.lse

    def bwd(self, do, want_dbias=False):
        a = self.a
        self.do = do
        if not hasattr(self, "dq"):
            self.dq = torch.empty_like(self.q, memory_format=torch.contiguous_format)
            self.dk = torch.empty_like(self.k, memory_format=torch.contiguous_format)
            self.dv = torch.empty_like(self.v, memory_format=torch.contiguous_format)
            self.db = torch.empty(self.bias.shape, dtype=torch.float32, device=do.device) if want_dbias else None
            for t in (self.dq, self.dk, self.dv, self.db):   # poison: unwritten elements show as NaN
                if t is not None:
                    t.fill_(float("nan"))
        a.dout, a.sdo = do.data_ptr(), s3(do)
        a.dq, a.dk, a.dv = self.dq.data_ptr(), self.dk.data_ptr(), self.dv.data_ptr()
        a.sdq, a.sdk, a.sdv = s3(self.dq), s3(self.dk), s3(self.dv)
        a.dbias = self.db.data_ptr() if self.db is not None else None
        a.ws = self.ws.data_ptr()
        if lib.nn__cuda_sdpa_bwd(ctypes.byref(a), vp(torch.cuda.current_stream().cuda_stream)):
            raise RuntimeError(lib.nn__cuda_sdpa_last_error().decode())
        return self.dq, self.dk, self.dv, self.db


# ----------------------------------------------------------------------------------------- Philox in torch
M32 = 0xFFFFFFFF


def mulhilo(a, b):
    bl, bh = b & 0xFFFF, b >> 16
    p0, p1 = a * bl, a * bh
    t = (p0 >> 16) + p1
    return t >> 16, ((t & 0xFFFF) << 16) | (p0 & 0xFFFF)


def philox_uniform(seed, pos):
    """nn_rng_uniform_at(seed, pos) for an int64 tensor of positions (< 2^62)"""
    ctr = pos >> 2
    c0, c1 = ctr & M32, ctr >> 32
    c2 = torch.zeros_like(c0); c3 = torch.zeros_like(c0)
    k0, k1 = seed & M32, (seed >> 32) & M32
    for _ in range(10):
        hi0, lo0 = mulhilo(0xD2511F53, c0)
        hi1, lo1 = mulhilo(0xCD9E8D57, c2)
        n0 = hi1 ^ c1 ^ k0
        n2 = hi0 ^ c3 ^ k1
        c0, c1, c2, c3 = n0, lo1, n2, lo0
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    lane = pos & 3
    r = torch.where(lane == 0, c0, torch.where(lane == 1, c1, torch.where(lane == 2, c2, c3)))
    return (r >> 8).double() / 16777216.0


# ----------------------------------------------------------------------------------------- reference
def reference(q, k, v, mask, bias, causal, scale, p, seed, offset, do):
    """float64 forward and backward; returns o, dq, dk, dv, dbias and which reference was used"""
    q, k, v, do = (x.detach().double().requires_grad_(x is not do) for x in (q, k, v, do))
    B, H, Lq, D = q.shape
    Lk = k.shape[2]
    b64 = bias.detach().double().requires_grad_(True) if bias is not None else None
    allowed = torch.ones(B, H, Lq, Lk, dtype=torch.bool, device=q.device)
    if mask is not None:
        allowed = allowed & mask.bool()
    if causal:
        allowed = allowed & torch.ones(Lq, Lk, dtype=torch.bool, device=q.device).tril()
    full_rows = ~allowed.any(-1)
    use_sdpa = p == 0.0 and not bool(full_rows.any())
    if use_sdpa:
        am = torch.zeros(B, H, Lq, Lk, dtype=torch.float64, device=q.device).masked_fill(~allowed, float("-inf"))
        if b64 is not None:
            am = am + b64
        with torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH):
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=am, scale=scale)
    else:
        s = (q @ k.transpose(-1, -2)) * scale
        if b64 is not None:
            s = s + b64
        s = s.masked_fill(~allowed, -1e300)
        m = s.amax(-1, keepdim=True).detach()
        e = torch.exp(s - m) * allowed
        den = e.sum(-1, keepdim=True)
        P = e / torch.where(den == 0, torch.ones_like(den), den)
        if p > 0:
            pos = offset + torch.arange(B * H * Lq * Lk, device=q.device, dtype=torch.int64).view(B, H, Lq, Lk)
            Z = (philox_uniform(seed, pos) >= float(torch.tensor(p, dtype=torch.float32))).double() / (1.0 - float(torch.tensor(p, dtype=torch.float32)))
            P = P * Z
        o = P @ v
    o.backward(do)
    return o.detach(), q.grad, k.grad, v.grad, (b64.grad if b64 is not None else None), ("sdpa" if use_sdpa else "explicit")


def rel(a, b, scale_ref=None):
    if a is None or b is None:
        return 0.0
    a, b = a.double(), b.double()
    if not torch.isfinite(a).all():
        return float("inf")
    den = float(b.norm())
    if scale_ref is not None:
        # an exactly-zero gradient (one key: P = 1 and dS = 0; a bias constant along keys): the float64 reference
        # is 1e-17 noise, so measure the error against the scale of a sibling gradient (dv) instead
        sib = float(scale_ref.double().norm())
        if den < 1e-6 * sib:
            den = sib
    return float((a - b).norm()) / (den if den > 0 else 1.0)


def check():
    dev = "cuda"
    g = torch.Generator(device=dev).manual_seed(1234)
    bound = {torch.float32: 2e-5, torch.float16: 6e-3, torch.bfloat16: 3e-2}
    # name, B, H, Lq, Lk, D, Dv, mask kind, bias kind, causal, scale, p, layout
    cases = [
        ("plain 77x93 d64", 2, 3, 77, 93, 64, 64, None, None, False, None, 0.0, "bhld"),
        ("causal 130x130 d32", 2, 2, 130, 130, 32, 32, None, None, True, None, 0.0, "bhld"),
        ("causal 50x200 d128", 1, 2, 50, 200, 128, 128, None, None, True, None, 0.0, "bhld"),
        ("causal 200x50 d96", 1, 2, 200, 50, 96, 96, None, None, True, None, 0.0, "bhld"),
        ("mask[B,H]+fullrows d16", 2, 3, 61, 97, 16, 16, "full", None, False, None, 0.0, "bhld"),
        ("keypad 10x333 d96", 4, 2, 10, 333, 96, 96, "keypad", None, False, None, 0.0, "bhld"),
        ("bias[B,1,Lq,Lk]+mask d32", 2, 4, 45, 181, 32, 32, "full", "b1ql", False, None, 0.0, "bhld"),
        ("bias full+causal d64", 2, 2, 129, 129, 64, 64, None, "bhql", True, None, 0.0, "bhld"),
        ("bias[1,H,1,Lk] d64", 2, 2, 70, 90, 64, 64, None, "1h1l", False, None, 0.0, "bhld"),
        ("bias[B,H,Lq,1] d32", 2, 2, 40, 60, 32, 32, None, "bhq1", False, None, 0.0, "bhld"),
        ("bias qdtype d128", 1, 2, 257, 257, 128, 128, None, "bhql_t", False, None, 0.0, "bhld"),
        ("dropout+mask+bias d64", 2, 2, 67, 131, 64, 64, "full", "b1ql", False, None, 0.2, "bhld"),
        ("dropout causal d16", 1, 2, 100, 100, 16, 16, None, None, True, None, 0.5, "bhld"),
        ("Lk=1 d32", 2, 2, 37, 1, 32, 32, None, None, False, None, 0.0, "bhld"),
        ("Lk=1 causal d32", 1, 2, 37, 1, 32, 32, None, None, True, None, 0.0, "bhld"),
        ("all masked d64", 1, 2, 20, 30, 64, 64, "none_on", "b1ql", False, None, 0.0, "bhld"),
        ("D32 Dv64 scale.3", 2, 2, 33, 65, 32, 64, None, "b1ql", False, 0.3, 0.0, "bhld"),
        ("[B,L,H,D] layout d64", 2, 4, 100, 150, 64, 64, "keypad", None, True, None, 0.0, "blhd"),
        ("Lk=56400 bias[B,1] d32", 1, 2, 33, 56400, 32, 32, None, "b1ql", False, None, 0.0, "bhld"),
        ("split drop+mask+bias d64", 1, 2, 50, 1500, 64, 64, "full", "b1ql", False, None, 0.2, "bhld"),
        ("split causal 300x1200 d32", 1, 2, 300, 1200, 32, 32, None, None, True, None, 0.0, "bhld"),
        ("split f32-bias[1,H,1,Lk] d128", 1, 2, 40, 2000, 128, 128, "keypad", "1h1l", False, None, 0.0, "bhld"),
    ]
    worst = {}
    print(f"{'case (vs torch float64)':28s} {'dtype':5s} {'ref':8s} {'o':>9s} {'dq':>9s} {'dk':>9s} {'dv':>9s} {'dbias':>9s}")
    bad = False
    for (name, B, H, Lq, Lk, D, Dv, mk, bk, causal, scale, p, layout) in cases:
        for dt in (torch.float32, torch.float16, torch.bfloat16):
            def rnd(*shape):
                return torch.randn(*shape, generator=g, device=dev).to(dt)
            if layout == "bhld":
                q, k, v = rnd(B, H, Lq, D), rnd(B, H, Lk, D), rnd(B, H, Lk, Dv)
            else:  # read in place out of [B, L, H, D] projections
                q = rnd(B, Lq, H, D).transpose(1, 2)
                k = rnd(B, Lk, H, D).transpose(1, 2)
                v = rnd(B, Lk, H, Dv).transpose(1, 2)
            do = rnd(B, H, Lq, Dv)
            mask = None
            if mk == "full":
                mask = torch.rand(B, H, Lq, Lk, generator=g, device=dev) > 0.15
                mask[:, :, 3::7, :] = False            # fully masked rows
            elif mk == "keypad":
                mask = torch.ones(B, 1, 1, Lk, dtype=torch.bool, device=dev)
                mask[..., Lk - Lk // 4:] = False
            elif mk == "none_on":
                mask = torch.zeros(1, 1, 1, Lk, dtype=torch.bool, device=dev)
            bias = None
            shp = {"b1ql": (B, 1, Lq, Lk), "bhql": (B, H, Lq, Lk), "1h1l": (1, H, 1, Lk), "bhq1": (B, H, Lq, 1),
                   "bhql_t": (B, H, Lq, Lk)}
            if bk is not None:
                bias = torch.randn(*shp[bk], generator=g, device=dev)
                if bk == "bhql_t" and dt != torch.float32:
                    bias = bias.to(dt)
            seed, offset = 0x1234567890ABCDEF, 4 * 977 + 8
            ours = Ours(q, k, v, mask, bias, causal, scale, p, seed, offset)
            ours.o.fill_(float("nan"))
            o, lse = ours.fwd()
            dq, dk, dv, db = ours.bwd(do, want_dbias=bias is not None)
            torch.cuda.synchronize()
            sc = scale if scale is not None else 1.0 / math.sqrt(D)
            ro, rq, rk, rv, rb, which = reference(q, k, v, mask, bias, causal, sc, p, seed, offset, do)
            e = [rel(o, ro), rel(dq, rq, rv), rel(dk, rk, rv), rel(dv, rv), rel(db, rb, rv)]
            fail = any(not (x <= bound[dt]) for x in e)
            bad |= fail
            w = worst.setdefault(dt, [0.0] * 5)
            for i in range(5):
                w[i] = max(w[i], e[i]) if e[i] == e[i] else float("nan")
            print(f"{name:28s} {str(dt)[6:]:5s} {which:8s} " + " ".join(f"{x:9.2e}" for x in e) + ("  FAIL" if fail else ""))
    for dt, w in worst.items():
        print(f"worst {str(dt)[6:]:9s} o {w[0]:.2e}  dq {w[1]:.2e}  dk {w[2]:.2e}  dv {w[3]:.2e}  dbias {w[4]:.2e}  (bound {bound[dt]:.0e})")
    print("check:", "FAIL" if bad else "all within bounds")
    return not bad


# ----------------------------------------------------------------------------------------- benchmark
def bench_ms(fn, budget_s=0.25):
    fn()
    torch.cuda.synchronize()
    st, en = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    st.record(); fn(); en.record(); torch.cuda.synchronize()
    one = max(st.elapsed_time(en), 1e-3)
    n = int(min(max(budget_s * 1e3 / one, 3), 50))
    times = []
    for _ in range(n):
        st.record(); fn(); en.record(); torch.cuda.synchronize()
        times.append(st.elapsed_time(en))
    times.sort()
    return times[len(times) // 2]


def bench():
    from torch.nn.attention import sdpa_kernel, SDPBackend
    dev, dt = "cuda", torch.bfloat16
    # name, B, H, Lq, Lk, D, kind
    cases = [
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
    ]
    backends = [("flash", SDPBackend.FLASH_ATTENTION), ("efficient", SDPBackend.EFFICIENT_ATTENTION),
                ("cudnn", SDPBackend.CUDNN_ATTENTION), ("math", SDPBackend.MATH)]
    rows = []
    for (name, B, H, Lq, Lk, D, kind) in cases:
        torch.manual_seed(0)
        q = torch.randn(B, H, Lq, D, device=dev, dtype=dt)
        k = torch.randn(B, H, Lk, D, device=dev, dtype=dt)
        v = torch.randn(B, H, Lk, D, device=dev, dtype=dt)
        do = torch.randn(B, H, Lq, D, device=dev, dtype=dt)
        mask = bias = None
        if kind == "keypad":
            mask = torch.ones(B, 1, 1, Lk, dtype=torch.bool, device=dev)
            mask[..., Lk - Lk // 4:] = False
        elif kind == "bias_b1":
            bias = torch.randn(B, 1, Lq, Lk, device=dev, dtype=dt)
        elif kind == "bias_full":
            bias = torch.randn(B, H, Lq, Lk, device=dev, dtype=dt)
        flops = 4.0 * B * H * Lq * Lk * D
        res = {}
        ours = Ours(q, k, v, mask, bias)
        try:
            tf = bench_ms(lambda: ours.fwd())
            def fb():
                ours.fwd(); ours.bwd(do)
            tfb = bench_ms(fb)
            res["ours"] = (tf, tfb)
        except Exception as ex:
            res["ours"] = (float("nan"), float("nan")); print(name, "ours:", ex)
        am = mask if mask is not None else bias
        for bn, be in backends:
            if bn == "math" and B * H * Lq * Lk > 2 ** 31:
                res[bn] = None
                continue
            try:
                qg, kg, vg = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
                with sdpa_kernel(be):
                    fwd = lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=am)
                    tf = bench_ms(fwd)
                    def fb():
                        o = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=am)
                        torch.autograd.grad(o, (qg, kg, vg), do)
                    tfb = bench_ms(fb)
                res[bn] = (tf, tfb)
            except Exception as ex:
                res[bn] = None
            torch.cuda.empty_cache()
        rows.append((name, flops, res))
        line = f"{name:32s}"
        for key in ["ours"] + [b for b, _ in backends]:
            r = res.get(key)
            line += "   " + key + (" -" if r is None else f" {flops / r[0] / 1e9:.0f}/{3.5 * flops / r[1] / 1e9:.0f}")
        print(line, flush=True)
    print()
    print("| case | ours fwd ms | ours fwd+bwd ms | ours TFLOP/s fwd / fwd+bwd | flash | efficient | cuDNN | math | best PyTorch | ours / best (fwd, fwd+bwd) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, flops, res in rows:
        def tfs(r):
            return "n/a" if r is None else f"{flops / r[0] / 1e9:.0f} / {3.5 * flops / r[1] / 1e9:.0f}"
        o = res["ours"]
        bf = min((res[b][0] for b, _ in backends if res.get(b)), default=float("nan"))
        bfb = min((res[b][1] for b, _ in backends if res.get(b)), default=float("nan"))
        print(f"| {name} | {o[0]:.3f} | {o[1]:.3f} | {tfs(o)} | {tfs(res.get('flash'))} | {tfs(res.get('efficient'))} | "
              f"{tfs(res.get('cudnn'))} | {tfs(res.get('math'))} | {flops / bf / 1e9:.0f} / {3.5 * flops / bfb / 1e9:.0f} | "
              f"{bf / o[0]:.2f} / {bfb / o[1]:.2f} |")


if __name__ == "__main__":
    print(torch.__version__, torch.cuda.get_device_name(), time.strftime("%Y-%m-%d %H:%M:%S"))
    ok = True
    if MODE in ("check", "all"):
        ok = check()
    if MODE in ("bench", "all"):
        bench()
    sys.exit(0 if ok else 1)
