#!/usr/bin/env python3
"""bench/mesh_seg_step_torch.py - the PyTorch twin of bench/mesh_seg_step_bench.c: one training step of seed 000's
MemoryEfficientSOTAModel, the seed's own model code (imported from tests/check_mesh_seg_torch.py, not copied),
on one synthetic mesh of N faces: forward, F.cross_entropy over the faces, backward, clip_grad_norm_(1.0),
torch.optim.AdamW(model.parameters(), lr=1e-4) (weight decay 0.01, PyTorch's default implementation). Modes:
f32; bf16 (torch.autocast); bf16ckpt (autocast + torch.utils.checkpoint per layer, use_reentrant=False: the
seed's forward_with_checkpointing). Prints every step's time, the median, and torch.cuda.max_memory_allocated()
over the timed steps (after reset_peak_memory_stats).
--variant sdpa: the same code with need_weights=False passed to its nn.MultiheadAttention calls. The seed calls them
with the default need_weights=True, which makes PyTorch take its explicit path (the [H, Lq, Lk] weights in
memory, for every chunk and for the global attention); need_weights=False lets it use fused SDPA kernels. Reported
as impl=torch_sdpa, a stronger baseline than the seed's code as written.

    python3 bench/mesh_seg_step_torch.py [--device cuda] [--configs 40000:f32,40000:bf16,...] [--steps 5] [--warmup 2]
    python3 bench/mesh_seg_step_torch.py --check DIR     (after mesh_seg_step_bench --check DIR: same weights,
                                                          mesh and labels; dropout off; prints the same CHECK lines)
"""
import argparse, os, sys, time
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
from check_mesh_seg_torch import MemoryEfficientSOTAModel  # noqa: E402  (the seed's model)

CHECK_NAMES = [
    "embedding.partfield_proj.0.weight", "embedding.confidence_proj.0.weight", "embedding.coord_proj.0.weight",
    "embedding.fusion.0.weight", "pos_encoding.point_encoder.0.weight", "pos_encoding.shape_encoder.0.weight",
    "pos_encoding.final_fusion.0.weight", "layers.0.confidence_gate.0.weight", "layers.0.local_attention.in_proj_weight",
    "layers.0.global_attention.in_proj_weight", "layers.0.norm2.weight", "layers.0.ffn.0.weight",
    "layers.3.local_attention.in_proj_weight", "layers.3.global_attention.out_proj.weight", "layers.3.ffn.3.bias",
    "classifier.1.weight", "classifier.4.bias"]


def forward(model, features, ckpt):
    """MemoryEfficientSOTAModel.forward, with the seed's section-4 checkpointing of each layer when ckpt"""
    if not ckpt:
        return model(features)
    partfield = features[:, :448]
    confidence = features[:, 448:449]
    coordinates = features[:, 449:458]
    x = model.embedding(partfield, confidence, coordinates)
    x = x + model.pos_encoding(coordinates)
    for layer in model.layers:
        x = checkpoint(layer, x, confidence, use_reentrant=False)
    return model.classifier(x)


def step(model, opt, x, y, mode, phases=False):
    opt.zero_grad(set_to_none=True)
    with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=mode != "f32"):
        loss = F.cross_entropy(forward(model, x, mode == "bf16ckpt"), y)
    if phases:   # peak of the forward, then of the backward alone (MiB), live bytes after the forward
        torch.cuda.synchronize()
        print(f"    peak MiB forward {torch.cuda.max_memory_allocated() / 2**20:.0f}, live after forward "
              f"{torch.cuda.memory_allocated() / 2**20:.0f}", end="")
        torch.cuda.reset_peak_memory_stats()
    loss.backward()
    if phases:
        torch.cuda.synchronize()
        print(f", backward {torch.cuda.max_memory_allocated() / 2**20:.0f}")
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return loss, gn


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def without_weights(model):
    """need_weights=False on every nn.MultiheadAttention call of the model (the seed's code otherwise unchanged)"""
    for mod in model.modules():
        if isinstance(mod, torch.nn.MultiheadAttention):
            f = mod.forward
            mod.forward = lambda q, k, v, _f=f, **kw: _f(q, k, v, need_weights=False, **kw)


def bench(dev, faces, mode, steps, warmup, seed, variant, phases=False):
    torch.manual_seed(seed)
    model = MemoryEfficientSOTAModel().to(dev)
    if variant == "sdpa":
        without_weights(model)
    impl = "torch" if variant == "seed" else "torch_sdpa"
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    g = torch.Generator(device="cpu").manual_seed(0x5eed + seed)
    x = torch.rand(faces, 458, generator=g) * 2 - 1
    x[:, 448] = torch.rand(faces, generator=g)
    y = torch.randint(0, 2, (faces,), generator=g)
    x, y = x.to(dev), y.to(dev)
    times = []
    print(f"{impl} step: {faces} faces, {dev}, mode {mode}, torch {torch.__version__}", flush=True)
    for s in range(warmup + steps):
        if s == warmup and dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync(dev)
        t0 = time.perf_counter()
        step(model, opt, x, y, mode, phases and dev.type == "cuda")
        sync(dev)
        t = time.perf_counter() - t0
        print(f"  step {s}{' (warm-up)' if s < warmup else ''}: {t * 1e3:.2f} ms", flush=True)
        if s >= warmup:
            times.append(t)
    peak = torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else float("nan")
    times.sort()
    print(f"RESULT impl={impl} device={dev.type} faces={faces} mode={mode} median_ms={times[len(times) // 2] * 1e3:.2f} "
          f"mean_ms={sum(times) / len(times) * 1e3:.2f} peak_mib={peak:.1f}", flush=True)
    del model, opt, x, y
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def check(dev, d):
    from safetensors import safe_open
    from safetensors.torch import load_file
    path = os.path.join(d, "init.safetensors")
    sd = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    layers = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("layers."))
    heads, chunk = int(meta["num_heads"]), int(meta["chunk_size"])
    model = MemoryEfficientSOTAModel(num_layers=layers, num_heads=heads, chunk_size=chunk).to(dev)
    model.load_state_dict(sd, strict=True)
    model.eval()   # dropout off, as the C side's nn_set_training(0); gradients stay on
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.from_numpy(np.load(os.path.join(d, "features.npy"))).to(dev)
    y = torch.from_numpy(np.load(os.path.join(d, "labels.npy")).astype(np.int64)).to(dev)
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    print(f"CHECK loss {loss.item():.8g}")
    params = dict(model.named_parameters())
    for n in CHECK_NAMES:
        if n in params:
            print(f"CHECK grad {n} {params[n].grad.double().norm().item():.8g}")
    gn = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    print(f"CHECK grad_norm {gn.item():.8g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--configs", default="40000:f32,40000:bf16,40000:bf16ckpt,200000:bf16ckpt",
                    help="comma-separated FACES:MODE, MODE one of f32, bf16, bf16ckpt")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variant", choices=["seed", "sdpa"], default="seed",
                    help="seed: the seed's code as written; sdpa: with need_weights=False")
    ap.add_argument("--phases", action="store_true", help="memory of the forward and the backward (not for timing)")
    ap.add_argument("--check", metavar="DIR")
    a = ap.parse_args()
    dev = torch.device(a.device)
    if a.check:
        check(dev, a.check)
        return 0
    for c in a.configs.split(","):
        faces, mode = c.split(":")
        if mode not in ("f32", "bf16", "bf16ckpt"):
            sys.exit(f"mesh_seg_step_torch: unknown mode {mode} in {c}")
        bench(dev, int(faces), mode, a.steps, a.warmup, a.seed, a.variant, a.phases)
    return 0


if __name__ == "__main__":
    sys.exit(main())
