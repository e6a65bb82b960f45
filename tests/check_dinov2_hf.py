"""tests/check_dinov2_hf.py - proof that models/dinov2.h is Hugging Face's Dinov2Model.

Builds transformers' Dinov2Model from a small config with random weights (seeded), saves it with
save_pretrained (safetensors, the hub's key names), runs tests/dinov2_forward.c on the same pixels and
compares last_hidden_state:
  - 224x224 (16x16 patches = the position grid: no interpolation),
  - 238x322 and 300x300 (not multiples of 14, non-square: bicubic interpolation of the position grid),
  - the legacy scale_factor rule against F.interpolate(scale_factor=...) directly (older transformers),
  - --base: ViT-B/14 (hub config, 518 px grid) at 1024x1024 (73x73 patches), slow on a small CPU.
Prints max abs / max relative error per case and "N passed, M failed".
  python3 tests/check_dinov2_hf.py [--bin build/pl/dinov2_forward] [--base] [--keep DIR]
"""
import argparse, os, subprocess, sys, tempfile, time

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Dinov2Config, Dinov2Model

ap = argparse.ArgumentParser()
ap.add_argument("--bin", default="build/pl/dinov2_forward")
ap.add_argument("--base", action="store_true", help="also ViT-B/14 at 1024 px")
ap.add_argument("--keep", default=None)
args = ap.parse_args()
torch.manual_seed(0)
passed = failed = 0


def check(name, ok, msg):
    global passed, failed
    print(("PASS " if ok else "FAIL ") + name + ": " + msg, flush=True)
    if ok:
        passed += 1
    else:
        failed += 1


def run_case(tag, cfg, model, sizes, tol, tmp):
    wdir = os.path.join(tmp, tag)
    model.save_pretrained(wdir, safe_serialization=True)
    wfile = os.path.join(wdir, "model.safetensors")
    for (h, w) in sizes:
        x = torch.randn(2 if h * w <= 400 * 400 else 1, 3, h, w)
        xin = os.path.join(tmp, "x.npy")
        yout = os.path.join(tmp, "y.npy")
        np.save(xin, x.numpy())
        t0 = time.time()
        with torch.no_grad():
            ref = model(pixel_values=x).last_hidden_state.numpy()
        t_ref = time.time() - t0
        cmd = [args.bin, wfile, xin, yout, str(cfg.hidden_size), str(cfg.num_hidden_layers),
               str(cfg.num_attention_heads), str(int(cfg.hidden_size * cfg.mlp_ratio)), str(cfg.patch_size),
               str(cfg.image_size), "size", repr(cfg.layer_norm_eps)]
        t0 = time.time()
        r = subprocess.run(cmd, capture_output=True, text=True)
        t_ours = time.time() - t0
        if r.returncode != 0:
            check(f"{tag} {h}x{w}", False, "driver failed: " + r.stderr[-2000:])
            continue
        y = np.load(yout)
        if y.shape != ref.shape:
            check(f"{tag} {h}x{w}", False, f"shape {y.shape} vs {ref.shape}")
            continue
        err = np.abs(y - ref)
        rel = err.max() / np.abs(ref).max()
        check(f"{tag} {h}x{w}", err.max() < tol,
              f"last_hidden_state {tuple(ref.shape)}: max abs err {err.max():.3e}, mean {err.mean():.3e}, "
              f"max/|ref|max {rel:.3e} (torch {t_ref:.2f}s, ours {t_ours:.2f}s incl. load; {r.stderr.strip()})")


def bicubic_matrix(n_out, n_in, scale):
    # the same construction as dinov2_bicubic_matrix, in f32, to check the scale_factor rule
    A = np.zeros((n_out, n_in), np.float32)
    for i in range(n_out):
        src = np.float32(scale) * (np.float32(i) + np.float32(0.5)) - np.float32(0.5)
        x0 = min(int(np.floor(src)), n_in - 1)
        t = np.float32(min(max(src - np.float32(x0), 0), 1))
        a = -0.75
        def c1(x): return ((a + 2) * x - (a + 3)) * x * x + 1
        def c2(x): return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        ws = [c2(t + 1), c1(t), c1(1 - t), c2(2 - t)]
        for j in range(4):
            A[i, min(max(x0 - 1 + j, 0), n_in - 1)] += ws[j]
    return A


with tempfile.TemporaryDirectory() as tmp:
    tmp = args.keep or tmp
    os.makedirs(tmp, exist_ok=True)
    # a small random DINOv2: 16x16 position grid, 3 layers, LayerScale values randomised so they matter
    cfg = Dinov2Config(hidden_size=96, num_hidden_layers=3, num_attention_heads=4, mlp_ratio=4, patch_size=14,
                       image_size=224, layerscale_value=1.0)
    model = Dinov2Model(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lambda1" in n or "layernorm" in n or "norm" in n:
                p.add_(0.3 * torch.randn_like(p))
            if "position_embeddings" in n or "cls_token" in n:
                p.normal_(0, 0.5)
    run_case("small", cfg, model, [(224, 224), (238, 322), (100, 142)], 2e-4, tmp)

    # the legacy rule: F.interpolate(scale_factor=((h+0.1)/G, (w+0.1)/G)) vs our matrices
    G = 37
    grid = torch.randn(1, 8, G, G)
    worst = [0.0, 0.0]
    for (h, w) in [(73, 73), (16, 24), (37, 50), (10, 9)]:
        sf = (float((h + 0.1) / G), float((w + 0.1) / G))
        ref = F.interpolate(grid, scale_factor=sf, mode="bicubic", align_corners=False)
        assert ref.shape[-2:] == (h, w), ref.shape
        Ah = bicubic_matrix(h, G, np.float32(1.0 / sf[0]))
        Aw = bicubic_matrix(w, G, np.float32(1.0 / sf[1]))
        ours = np.einsum("ij,cjk,lk->cil", Ah, grid[0].numpy(), Aw)
        worst[0] = max(worst[0], float(np.abs(ours - ref[0].numpy()).max() / np.abs(ref.numpy()).max()))
        # and the size rule against F.interpolate(size=...)
        ref2 = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        Ah = bicubic_matrix(h, G, np.float32(G) / np.float32(h))
        Aw = bicubic_matrix(w, G, np.float32(G) / np.float32(w))
        ours2 = np.einsum("ij,cjk,lk->cil", Ah, grid[0].numpy(), Aw)
        worst[1] = max(worst[1], float(np.abs(ours2 - ref2[0].numpy()).max() / np.abs(ref2.numpy()).max()))
    check("bicubic matrices vs F.interpolate(scale_factor=(h+0.1)/G) (legacy rule)", worst[0] < 1e-5,
          f"max abs err / max |ref| {worst[0]:.3e}")
    check("bicubic matrices vs F.interpolate(size=(h, w))", worst[1] < 1e-5, f"max abs err / max |ref| {worst[1]:.3e}")

    if args.base:
        cfg = Dinov2Config.from_dict(dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4,
                                          patch_size=14, image_size=518, layerscale_value=1.0))
        model = Dinov2Model(cfg).eval()
        run_case("vitb14", cfg, model, [(1024, 1024)], 2e-3, tmp)

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
