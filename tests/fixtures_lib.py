"""Writes PyTorch golden values in the text format that tests/fixture.h reads.

    tensor <name> <f32|i64> <ndim> <d0> ... ; then the values
    tensor <name> rand <ndim> <d0> ... ; then <seed> <center> <halfwidth> <sum>   (add_rand: values made by
                                          fixture_rand below, for tensors too big to store as text)

Every fixture script builds its inputs in float64, rounds them to float32 (the C side computes in f32 from
exactly these values), runs the op in float64 for the reference, and stores the results as float32."""
import math
import struct

import torch

M64 = (1 << 64) - 1


class FixtureWriter:
    def __init__(self, path):
        self.path = path
        self.lines = []

    def add(self, name, t):
        t = t.detach().cpu()
        if t.dtype in (torch.int32, torch.int64, torch.uint8, torch.bool):
            kind, vals = "i64", [str(int(v)) for v in t.reshape(-1).tolist()]
        else:
            kind, vals = "f32", ["%.9g" % v for v in t.to(torch.float32).reshape(-1).tolist()]
        self.lines.append("tensor %s %s %d %s" % (name, kind, t.dim(), " ".join(str(s) for s in t.shape)))
        for i in range(0, len(vals), 8):
            self.lines.append(" ".join(vals[i:i + 8]))

    def add_rand(self, name, shape, seed, center, halfwidth):
        """A tensor of uniform float32 values that tests/fixture.h regenerates from (seed, center, halfwidth)
        instead of reading them: a whole model's state_dict as text would be megabytes. Returns the values
        (float64, requires no grad). The stored sum lets the reader tell a generator mismatch from a model
        mismatch."""
        vals = fixture_rand(int(torch.Size(shape).numel()), seed, center, halfwidth)
        total = 0.0
        for v in vals:   # in order, plain double additions as the C reader does (sum() compensates since 3.12)
            total += v
        self.lines.append("tensor %s rand %d %s" % (name, len(shape), " ".join(str(s) for s in shape)))
        self.lines.append("%d %r %r %.17g" % (seed, float(center), float(halfwidth), total))
        return torch.tensor(vals, dtype=torch.float64).reshape(shape)

    def save(self):
        with open(self.path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def rand_input(gen, *shape, lo=-1.0, hi=1.0):
    """float32-representable values as float64, requiring grad."""
    x = (torch.rand(*shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).float().double()
    return x.requires_grad_(True)


def fixture_rand(n, seed, center, halfwidth):
    """n float32 values (as Python floats) uniform on [center - halfwidth, center + halfwidth): splitmix64 from
    seed, the top 24 bits u of each output, center + halfwidth * (u - 2^23) / 2^23 rounded to float32 (nearest,
    ties to even). halfwidth a power of two and center a small dyadic keep every double step exact, so C and
    Python compute the same values whatever their floating-point evaluation (tests/fixture.h: fx_rand)."""
    m, _ = math.frexp(halfwidth)
    assert halfwidth > 0 and m == 0.5, "halfwidth must be a power of two"
    assert center * 1024 == int(center * 1024), "center must be a multiple of 1/1024"
    out, state = [], seed & M64
    for _ in range(n):
        state = (state + 0x9E3779B97F4A7C15) & M64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        z ^= z >> 31
        u = z >> 40
        v = center + halfwidth * ((u - 8388608.0) * (1.0 / 8388608.0))
        out.append(struct.unpack("<f", struct.pack("<f", v))[0])
    return out
