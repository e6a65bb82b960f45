"""Writes PyTorch golden values in the text format that tests/fixture.h reads.

    tensor <name> <f32|i64> <ndim> <d0> ... ; then the values

Every fixture script builds its inputs in float64, rounds them to float32 (the C side computes in f32 from
exactly these values), runs the op in float64 for the reference, and stores the results as float32."""
import torch


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

    def save(self):
        with open(self.path, "w") as f:
            f.write("\n".join(self.lines) + "\n")


def rand_input(gen, *shape, lo=-1.0, hi=1.0):
    """float32-representable values as float64, requiring grad."""
    x = (torch.rand(*shape, generator=gen, dtype=torch.float64) * (hi - lo) + lo).float().double()
    return x.requires_grad_(True)
