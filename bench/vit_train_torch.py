"""PyTorch twin of bench/vit_train_bench.c: one training step of a DINOv2-B/14 encoder (transformers'
Dinov2Model: 12 layers, 768 wide, 12 heads, patch 14, LayerScale; SDPA attention; gradient checkpointing per
layer) with one of two heads, AdamW (lr 1e-4), clip_grad_norm_(1.0), torch.autocast (bf16 by default; f16 adds
torch.amp.GradScaler):
  --model encoder: CLS token -> Linear(768, 16) -> L1 loss against a fixed target;
  --model partloc: seed 001's Part Location network as models/part_location.h builds it: the encoder on both
    images of a pair, patch grids adaptive-average-pooled to 32 x 32 with the CLS token in front, 2 pre-norm
    cross-attention layers (part tokens query whole tokens; F.scaled_dot_product_attention; MLP 4x, GELU),
    head LayerNorm(3D) + MLP(3D -> 512 -> 4) over [part CLS, whole CLS, mean of part patches], weighted L1.

Prints the time of every step, the median, the peak memory of the step (cuda: torch.cuda.max_memory_allocated
after reset_peak_memory_stats; cpu: torch keeps no allocator statistics there, so only the process's peak RSS
is given) and the process's peak RSS.

    python3 bench/vit_train_torch.py [--device cpu|cuda] [--size 224] [--batch 1] [--steps 3] [--warmup 1]
                                     [--dtype bf16|f16|f32] [--no-ckpt] [--layers 12] [--threads N]
                                     [--model encoder|partloc] [--hidden 768 --heads 12] [--part-size SIZE]
                                     [--head-hidden 512] [--ds 32]
The extra options are bench/vit_train_bench.c's (the demo's tiny config is given there).
"""
import argparse
import resource
import statistics
import time

import torch
import torch.nn.functional as F
from transformers import Dinov2Config, Dinov2Model


class CrossAttn(torch.nn.Module):
    """one cross-attention layer of models/part_location.h (names as there)"""

    def __init__(self, d, heads):
        super().__init__()
        self.h = heads
        self.norm_q = torch.nn.LayerNorm(d, eps=1e-6)
        self.norm_kv = torch.nn.LayerNorm(d, eps=1e-6)
        self.q_proj, self.k_proj = torch.nn.Linear(d, d), torch.nn.Linear(d, d)
        self.v_proj, self.out_proj = torch.nn.Linear(d, d), torch.nn.Linear(d, d)
        self.norm_mlp = torch.nn.LayerNorm(d, eps=1e-6)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(), torch.nn.Linear(4 * d, d))

    def split(self, x):
        b, n, d = x.shape
        return x.view(b, n, self.h, d // self.h).transpose(1, 2)

    def forward(self, p, w):
        kv = self.norm_kv(w)
        o = F.scaled_dot_product_attention(self.split(self.q_proj(self.norm_q(p))), self.split(self.k_proj(kv)),
                                           self.split(self.v_proj(kv)))
        p = p + self.out_proj(o.transpose(1, 2).flatten(2))
        return p + self.mlp(self.norm_mlp(p))


class PartLoc(torch.nn.Module):
    def __init__(self, encoder, d, heads, layers=2, hidden=512, ds=32):
        super().__init__()
        self.encoder, self.ds = encoder, ds
        self.cross_attn = torch.nn.ModuleList([CrossAttn(d, heads) for _ in range(layers)])
        self.head_norm = torch.nn.LayerNorm(3 * d, eps=1e-6)
        self.head = torch.nn.Sequential(torch.nn.Linear(3 * d, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 4))

    def tokens(self, x):
        t = self.encoder(pixel_values=x).last_hidden_state
        b, n, d = t.shape
        g = int(round((n - 1) ** 0.5))
        grid = t[:, 1:].reshape(b, g, g, d).permute(0, 3, 1, 2)
        if g > self.ds:   # as models/part_location.h: a grid no wider than ds is kept
            grid = F.adaptive_avg_pool2d(grid, self.ds)
        return torch.cat([t[:, :1], grid.flatten(2).transpose(1, 2)], 1)

    def forward(self, whole, part):
        w, p = self.tokens(whole), self.tokens(part)
        for layer in self.cross_attn:
            p = layer(p, w)
        return self.head(self.head_norm(torch.cat([p[:, 0], w[:, 0], p[:, 1:].mean(1)], 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"])
    ap.add_argument("--no-ckpt", action="store_true")
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="encoder", choices=["encoder", "partloc"])
    ap.add_argument("--hidden", type=int, default=768)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--part-size", type=int, default=0)
    ap.add_argument("--head-hidden", type=int, default=512)
    ap.add_argument("--ds", type=int, default=32)
    ap.add_argument("--profile", default="", help="after the timed steps, profile one more step into this file")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    part_size = a.part_size or a.size
    cfg = Dinov2Config(hidden_size=a.hidden, num_hidden_layers=a.layers, num_attention_heads=a.heads, mlp_ratio=4,
                       patch_size=14, image_size=a.size, layerscale_value=1.0, layer_norm_eps=1e-6,
                       hidden_act="gelu", drop_path_rate=0.0, attention_probs_dropout_prob=0.0,
                       hidden_dropout_prob=0.0)
    cfg._attn_implementation = "sdpa"
    model = Dinov2Model(cfg).to(dev)
    if not a.no_ckpt:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    pl = PartLoc(model, a.hidden, a.heads, hidden=a.head_hidden, ds=a.ds).to(dev) if a.model == "partloc" else None
    model.train()
    head = torch.nn.Linear(a.hidden, 16).to(dev)
    params = list(pl.parameters()) if pl else list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-4)
    amp_dtype = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": None}[a.dtype]
    scaler = torch.amp.GradScaler(dev.type, enabled=a.dtype == "f16")
    pixels = torch.randn(a.batch, 3, a.size, a.size, device=dev)
    pixels2 = torch.randn(a.batch, 3, part_size, part_size, device=dev)
    target = torch.rand(a.batch, 4 if pl else 16, device=dev) * 2 - 1
    nparams = sum(p.numel() for p in params)
    print("torch %s ViT/14 training step (%s): device %s, %dx%d (part %d), hidden %d, batch %d, %d layers, %s, "
          "checkpointing %s, %d parameters, %d threads" % (torch.__version__, a.model, a.device, a.size, a.size, part_size,
                                                            a.hidden, a.batch, a.layers, a.dtype,
                                                            "off" if a.no_ckpt else "per layer", nparams,
                                                            torch.get_num_threads()))

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    times, peak = [], 0
    prof = None
    for step in range(a.warmup + a.steps + (1 if a.profile else 0)):
        if step == a.warmup + a.steps:   # the extra, profiled step (not timed)
            prof = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
            prof.__enter__()
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sync()
        t0 = time.perf_counter()
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            if pl:
                pred = pl(pixels, pixels2)
                loss = F.l1_loss(pred[:, :3], target[:, :3]) + 0.5 * F.l1_loss(pred[:, 3:], target[:, 3:])
            else:
                cls = model(pixel_values=pixels).last_hidden_state[:, 0]
                loss = F.l1_loss(head(cls), target)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        scaler.step(opt)
        scaler.update()
        sync()
        t1 = time.perf_counter()
        pk = torch.cuda.max_memory_allocated() if dev.type == "cuda" else 0
        peak = max(peak, pk)
        print("step %d%s  %.3f s  loss %.5f%s" % (step, " (warmup)" if step < a.warmup else "", t1 - t0, loss.item(),
                                                 "  peak %.1f MiB" % (pk / 2**20) if pk else ""))
        if prof is not None:
            prof.__exit__(None, None, None)
            with open(a.profile, "w") as f:
                f.write(prof.key_averages().table(sort_by="cuda_time_total", row_limit=80, max_name_column_width=90))
        elif step >= a.warmup:
            times.append(t1 - t0)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print("RESULT impl=torch model=%s device=%s size=%d batch=%d dtype=%s ckpt=%d step_median_s=%.4f step_mean_s=%.4f "
          "peak_alloc_MiB=%s max_rss_MiB=%.1f" % (a.model, a.device, a.size, a.batch, a.dtype, 0 if a.no_ckpt else 1,
                                                 statistics.median(times), statistics.mean(times),
                                                 "%.1f" % (peak / 2**20) if peak else "n/a", rss))


if __name__ == "__main__":
    main()
