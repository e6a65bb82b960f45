"""combine.py BASE NEW TORCH_MD - one table of the conv2d rows: nn.h base (main), this branch, PyTorch (f32 /
TF32 rows), torch / nn ratios (above 1: nn.h faster)."""
import sys


def nn_rows(path):
    r = {}
    try:
        for l in open(path):
            f = l.split()
            if f and f[0] == "NN" and f[1].startswith("conv2d"):
                r[f[1]] = (float(f[2]), float(f[4]))
    except OSError:
        pass
    return r


base, new = nn_rows(sys.argv[1]), nn_rows(sys.argv[2])
torch = {}
for l in open(sys.argv[3]) if len(sys.argv) > 3 else []:
    if l.startswith("| conv"):
        c = [x.strip() for x in l.strip().strip("|").split("|")]
        torch[c[0]] = float(c[2])
print("| case | base ms | new ms | PyTorch ms | torch/base | torch/new | new TFLOP/s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
f = lambda v: "-" if v is None else "%.4f" % v
for name, (ms, fl) in new.items():
    b, t = base.get(name, (None,))[0], torch.get(name)
    print("| %s | %s | %s | %s | %s | %s | %.0f |" % (name, f(b), f(ms), f(t), "-" if t is None or b is None else "%.2f" % (t / b),
          "-" if t is None else "%.2f" % (t / ms), fl / ms / 1e9))
