"""Golden logits of seed 000's whole MemoryEfficientSOTAModel for tests/test_mesh_seg_parity.c.

The model is the seed's own PyTorch code, imported from tests/check_mesh_seg_torch.py (the reference spec),
at the smallest size the seed's classes and models/mesh_seg.h both take: embed_dim must stay 128 (the seed
asserts 96 + 16 + 16 == embed_dim) and the PartField input 448, so the size left to choose is 2 layers (the
top-k plan is shared across layers), 8 heads and chunks of 64 faces. Two meshes:
  meshseg.big    150 faces: local attention over chunks 64 + 64 + 22 (the short last one), global attention
                 to the top-64-confidence faces
  meshseg.small   64 faces = chunk_size: the unchunked path (N > chunk_size is strict), global self-attention
Even so the state_dict holds 565k numbers (about 8 MB as text), so it and the PartField features are stored as
generator lines (FixtureWriter.add_rand: seed, centre, half-width; tests/fixture.h makes the same float32
values); confidences, vertices, the configuration and the logits are stored as values. Parameters are random
and away from their init: LayerNorm weights in [0.5, 1.5), other vectors in [-0.25, 0.25), matrices
U(+-h) with h the power of two at or below 1.5 / sqrt(fan_in). Face 3 of each mesh is degenerate (its three
vertices equal: zero area, the normal 0 / (0 + 1e-8)). The reference runs in float64, eval mode.

    python3 tests/make_fixtures_mesh_seg.py      (needs torch)"""
import math
import os

import torch
import torch.nn as nn

from fixtures_lib import FixtureWriter
from check_mesh_seg_torch import MemoryEfficientSOTAModel

EMBED, LAYERS, HEADS, CHUNK = 128, 2, 8, 64
GEN = torch.Generator().manual_seed(2024)


def f32(t):
    return t.float().double()


def param_range(name, p, layernorms):
    """(centre, half-width) of a parameter's generated values"""
    owner, leafname = name.rsplit(".", 1)
    if p.dim() == 1:
        return (1.0, 0.5) if owner in layernorms and leafname == "weight" else (0.0, 0.25)
    fan_in = p[0].numel()
    return 0.0, 2.0 ** math.floor(math.log2(1.5 / math.sqrt(fan_in)))


def mesh_inputs(fx, tag, n, seed):
    pf = fx.add_rand("meshseg.%s.partfield" % tag, (n, 448), seed, 0.0, 1.0)
    # distinct confidences in [0, 1]: the top-k set is the same whatever the sort
    conf = f32(torch.rand(n, 1, generator=GEN, dtype=torch.float64))
    assert conf.unique().numel() == n
    coords = f32(torch.rand(n, 9, generator=GEN, dtype=torch.float64) * 2 - 1)
    coords[3, 3:6] = coords[3, 0:3]
    coords[3, 6:9] = coords[3, 0:3]
    fx.add("meshseg.%s.confidence" % tag, conf)
    fx.add("meshseg.%s.coords" % tag, coords)
    return torch.cat([pf, conf, coords], dim=1)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    fx = FixtureWriter(os.path.join(here, "fixtures", "mesh_seg.txt"))
    torch.manual_seed(0)
    model = MemoryEfficientSOTAModel(embed_dim=EMBED, num_layers=LAYERS, num_heads=HEADS, chunk_size=CHUNK)
    layernorms = {n for n, m in model.named_modules() if isinstance(m, nn.LayerNorm)}
    fx.add("meshseg.config", torch.tensor([EMBED, LAYERS, HEADS, CHUNK]))
    sd = {}
    for i, (name, p) in enumerate(model.state_dict().items()):
        centre, half = param_range(name, p, layernorms)
        sd[name] = fx.add_rand("meshseg.sd." + name, tuple(p.shape), 1000 + i, centre, half)
    model = model.double()
    model.load_state_dict(sd, strict=True)
    model.eval()
    with torch.no_grad():
        for tag, n, seed in (("big", 150, 11), ("small", CHUNK, 12)):
            logits = model(mesh_inputs(fx, tag, n, seed))
            fx.add("meshseg.%s.logits" % tag, logits)
    fx.save()


if __name__ == "__main__":
    main()
