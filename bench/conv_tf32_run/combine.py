"""combine.py BASE NEW NEW_X3 TORCH_MD - one table of the conv2d rows: nn.h base (main), this branch, this branch
with NN_CONV_F32X3=1 (f32 rows on the 3xTF32 kernels), PyTorch (f32 / TF32 rows), torch / nn ratios."""
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


base, new, x3 = nn_rows(sys.argv[1]), nn_rows(sys.argv[2]), nn_rows(sys.argv[3])
torch = {}
for l in open(sys.argv[4]) if len(sys.argv) > 4 else []:
    if l.startswith("| conv"):
        c = [x.strip() for x in l.strip().strip("|").split("|")]
        torch[c[0]] = float(c[2])
print("| case | base ms | new ms | new 3xTF32 ms | PyTorch ms | torch/new | torch/3xTF32 | new TFLOP/s |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
f = lambda v: "-" if v is None else "%.4f" % v
for name, (ms, fl) in new.items():
    b, t = base.get(name, (None,))[0], torch.get(name)
    x = x3.get(name, (None,))[0] if name.startswith("conv2d_f32") else None
    print("| %s | %s | %s | %s | %s | %s | %s | %.0f |" % (name, f(b), f(ms), f(x), f(t), "-" if t is None else "%.2f" % (t / ms),
          "-" if t is None or x is None else "%.2f" % (t / x), fl / ms / 1e9))
