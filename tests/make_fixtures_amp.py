"""Golden values for tests/test_amp.c -> tests/fixtures/amp.txt (python3 tests/make_fixtures_amp.py).

1. Autocast numerics: a small ViT-like model (conv2d patch embedding + position embedding, one pre-norm block with multi-head SDPA
   attention, LayerScale and a GELU MLP, a mean-pooled matmul head, L1 loss) run in torch's own f32 and
   under torch.autocast('cpu', dtype=bfloat16) and dtype=float16: the outputs, the loss and every gradient
   (the parameters are f32 leaves; torch's autocast casts them to the low-precision type, caching the casts);
   and the same without the attention part ("mlp." names), where every rounding point is one the C side
   emulates (torch's CPU attention kernel rounds inside itself as well).
2. GradScaler: torch.amp.GradScaler('cpu', init_scale=2**16, growth_factor=2, backoff_factor=0.5,
   growth_interval=3) driving torch.optim.AdamW on one parameter for 14 steps with inf and NaN injected into
   the loss at given steps: per step the scale used, whether a non-finite gradient was found, the scale and
   growth tracker after update(), and the parameter after the step.
"""
import math
import os

import torch
import torch.nn.functional as F

from fixtures_lib import FixtureWriter

HERE = os.path.dirname(os.path.abspath(__file__))
B, C, IMG, P, D, H, HID, OUT = 2, 3, 8, 2, 16, 2, 32, 4


def uni(gen, *shape, scale=1.0):
    return ((torch.rand(*shape, generator=gen, dtype=torch.float64) * 2 - 1) * scale).float()


def make_params(gen):
    p = {}
    p["pe.w"] = uni(gen, D, C, P, P, scale=1 / math.sqrt(C * P * P))
    p["pe.b"] = uni(gen, D, scale=0.1)
    p["pos"] = uni(gen, (IMG // P) ** 2, D, scale=0.5)
    p["ln1.w"] = 1 + uni(gen, D, scale=0.2)
    p["ln1.b"] = uni(gen, D, scale=0.1)
    for n in ("q", "k", "v", "o"):
        p[n + ".w"] = uni(gen, D, D, scale=1 / math.sqrt(D))
        p[n + ".b"] = uni(gen, D, scale=0.1)
    p["ls1"] = uni(gen, D, scale=0.5) + 0.5
    p["ln2.w"] = 1 + uni(gen, D, scale=0.2)
    p["ln2.b"] = uni(gen, D, scale=0.1)
    p["fc1.w"] = uni(gen, HID, D, scale=1 / math.sqrt(D))
    p["fc1.b"] = uni(gen, HID, scale=0.1)
    p["fc2.w"] = uni(gen, D, HID, scale=1 / math.sqrt(HID))
    p["fc2.b"] = uni(gen, D, scale=0.1)
    p["ls2"] = uni(gen, D, scale=0.5) + 0.5
    p["head.w"] = uni(gen, D, OUT, scale=1 / math.sqrt(D))
    return p


def model(p, img, target, attn=True):
    """the same sequence of ops as tests/test_amp.c's amp_model(); attn=False: the MLP model (no attention)"""
    x = F.conv2d(img, p["pe.w"], p["pe.b"], stride=P)              # [B, D, 4, 4]
    x = x.flatten(2).transpose(1, 2) + p["pos"]                    # [B, L, D], f32 (the sum promotes)
    Bn, L, _ = x.shape
    if attn:
        h = F.layer_norm(x, (D,), p["ln1.w"], p["ln1.b"], 1e-6)

        def heads(t):
            return t.reshape(Bn, L, H, D // H).permute(0, 2, 1, 3)
        q = heads(F.linear(h, p["q.w"], p["q.b"]))
        k = heads(F.linear(h, p["k.w"], p["k.b"]))
        v = heads(F.linear(h, p["v.w"], p["v.b"]))
        a = F.scaled_dot_product_attention(q, k, v).permute(0, 2, 1, 3).reshape(Bn, L, D)
        x = x + p["ls1"] * F.linear(a, p["o.w"], p["o.b"])
    h = F.layer_norm(x, (D,), p["ln2.w"], p["ln2.b"], 1e-6)
    x = x + p["ls2"] * F.linear(F.gelu(F.linear(h, p["fc1.w"], p["fc1.b"])), p["fc2.w"], p["fc2.b"])
    out = torch.matmul(x.mean(1), p["head.w"])                     # [B, OUT]
    loss = F.l1_loss(out, target)
    return x, out, loss


def autocast_fixtures(fx):
    gen = torch.Generator().manual_seed(7)
    p = make_params(gen)
    img = uni(gen, B, C, IMG, IMG)
    target = uni(gen, B, OUT)
    fx.add("img", img)
    fx.add("target", target)
    for n, t in p.items():
        fx.add("p." + n, t)
    for attn, tag, dt in [(a, m + t, d) for a, m in ((True, ""), (False, "mlp.")) for t, d in
                          (("f32", None), ("bf16", torch.bfloat16), ("f16", torch.float16))]:
        leaves = {n: t.clone().requires_grad_(True) for n, t in p.items()}
        x_img = img.clone().requires_grad_(True)
        if dt is None:
            x, out, loss = model(leaves, x_img, target, attn)
        else:
            with torch.autocast("cpu", dtype=dt):
                x, out, loss = model(leaves, x_img, target, attn)
            assert out.dtype == dt and x.dtype == torch.float32 and loss.dtype == torch.float32
        loss.backward()   # outside the region, as torch recommends
        fx.add(tag + ".x", x.float())
        fx.add(tag + ".out", out.float())
        fx.add(tag + ".loss", loss.float().reshape(1))
        fx.add(tag + ".g.img", x_img.grad)
        for n, t in leaves.items():
            if t.grad is not None:
                fx.add(tag + ".g." + n, t.grad)


INF_AT = {4: ("inf", 1), 5: ("nan", 2), 6: ("inf", 0), 11: ("nan", 3)}
SCALER_STEPS = 14


def scaler_fixtures(fx):
    gen = torch.Generator().manual_seed(11)
    w = uni(gen, 4).requires_grad_(True)
    cs = uni(gen, SCALER_STEPS, 4)
    for t, (kind, i) in INF_AT.items():
        cs[t, i] = float(kind)
    fx.add("scaler.w0", w.detach())
    fx.add("scaler.c", cs)
    opt = torch.optim.AdamW([w], lr=0.1, foreach=False)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                                  growth_interval=3)
    rows = []
    for t in range(SCALER_STEPS):
        opt.zero_grad()
        loss = (w * cs[t]).sum()
        scale_used = scaler.get_scale()
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        found = float(sum(v.item() for v in scaler._per_optimizer_states[id(opt)]["found_inf_per_device"].values()))
        scaler.step(opt)
        scaler.update()
        rows.append([scale_used, found, scaler.get_scale(), float(scaler._growth_tracker.item())])
        fx.add("scaler.w.%d" % t, w.detach())
    fx.add("scaler.seq", torch.tensor(rows, dtype=torch.float64))


def main():
    torch.set_num_threads(1)
    fx = FixtureWriter(os.path.join(HERE, "fixtures", "amp.txt"))
    autocast_fixtures(fx)
    scaler_fixtures(fx)
    fx.save()
    print("wrote", fx.path, "torch", torch.__version__)


if __name__ == "__main__":
    main()
