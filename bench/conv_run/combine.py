import sys
before = {}
try:
    for l in open(sys.argv[1]):
        f = l.split()
        if f and f[0] == "NN": before[f[1]] = float(f[2])
except OSError:
    pass
print("| case | nn.h before ms | nn.h after ms | PyTorch ms | torch/nn after | nn.h rate |")
print("| --- | ---: | ---: | ---: | ---: | ---: |")
for l in open(sys.argv[2]):
    if not l.startswith("| conv"): continue
    c = [x.strip() for x in l.strip().strip("|").split("|")]
    name = c[0].split(" (")[0]
    b = before.get(name)
    print(f"| {c[0]} | {b:.4f} | {c[1]} | {c[2]} | {c[3]} | {c[4]} |" if b is not None else f"| {c[0]} | - | {c[1]} | {c[2]} | {c[3]} | {c[4]} |")
