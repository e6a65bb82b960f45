"""PyTorch golden values for nn.h's vision ops (conv2d, nearest upsample, avg / adaptive-avg pooling,
group_norm): forward output and the gradients of sum(r * y) for a fixed random r.

    python3 tests/make_fixtures_conv.py        # writes tests/fixtures/conv.txt

Per case <name>: inputs (<name>.x, .w, .b ...), integer arguments (<name>.args), the upstream gradient
<name>.r, the output <name>.y and the gradients <name>.dx, .dw, .db. Computed in float64 from
float32-representable inputs (see fixtures_lib.py), except nearest upsampling (float32, see there)."""
import os
import torch
import torch.nn.functional as F
from fixtures_lib import FixtureWriter, rand_input

gen = torch.Generator().manual_seed(3)
fw = FixtureWriter(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "conv.txt"))


def finish(name, y, inputs):
    """store y, a random upstream gradient r and the gradients of sum(r * y) w.r.t. each named input"""
    r = rand_input(gen, *y.shape).detach()
    grads = torch.autograd.grad((y * r).sum(), [t for _, t in inputs])
    fw.add(name + ".r", r)
    fw.add(name + ".y", y)
    for (key, _), g in zip(inputs, grads):
        fw.add(name + ".d" + key, g)


def conv(name, xs, ws, stride, padding, dilation, groups, bias):
    x = rand_input(gen, *xs)
    w = rand_input(gen, *ws, lo=-0.5, hi=0.5)
    ins = [("x", x), ("w", w)]
    fw.add(name + ".x", x)
    fw.add(name + ".w", w)
    b = None
    if bias:
        b = rand_input(gen, ws[0])
        fw.add(name + ".b", b)
        ins.append(("b", b))
    fw.add(name + ".args", torch.tensor([stride[0], stride[1], padding[0], padding[1], dilation[0], dilation[1],
                                         groups, int(bias)]))
    y = F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    finish(name, y, ins)


conv("conv1", (2, 3, 7, 6), (4, 3, 3, 3), (1, 1), (1, 1), (1, 1), 1, True)
conv("conv2", (2, 4, 9, 8), (6, 2, 3, 2), (2, 1), (1, 0), (1, 2), 2, True)     # non-square, groups 2
conv("conv3", (1, 4, 10, 9), (4, 1, 3, 3), (2, 2), (1, 1), (2, 2), 4, False)   # depthwise, stride 2, dilation 2
conv("conv4", (3, 5, 4, 3), (3, 5, 1, 1), (1, 1), (0, 0), (1, 1), 1, True)     # pointwise (no im2col)
conv("conv5", (1, 3, 11, 10), (2, 3, 5, 5), (2, 2), (2, 2), (1, 1), 1, False)  # 5x5 stride 2
conv("conv6", (2, 3, 6, 7), (4, 3, 1, 1), (2, 2), (0, 0), (1, 1), 1, True)     # 1x1 stride 2
conv("conv7", (2, 16, 6, 7), (8, 16, 3, 3), (1, 1), (1, 1), (1, 1), 1, True)  # larger K

# Nearest upsampling in float32: torch's source index depends on the dtype (the f32 kernel floors
# dst * (float)(in/out), the f64 one computes in double), and f32 is what a model sees. up5's width
# 54 -> 38 has dst 19 where the two differ: 19 * 1.4210526f = 26.999998 -> 26, in double 27.
for name, xs, size in [("up1", (2, 3, 4, 5), (8, 10)), ("up2", (1, 2, 4, 5), (7, 9)),
                       ("up3", (1, 2, 5, 7), (3, 4)), ("up4", (1, 1, 3, 3), (10, 3)), ("up5", (1, 2, 3, 54), (5, 38))]:
    x = rand_input(gen, *xs).detach().float().requires_grad_(True)
    fw.add(name + ".x", x)
    fw.add(name + ".args", torch.tensor(size))
    finish(name, F.interpolate(x, size=size, mode="nearest"), [("x", x)])

for name, xs, k, s, p in [("avg1", (2, 3, 7, 8), 3, 2, 1), ("avg2", (1, 2, 6, 5), 2, 2, 0),
                          ("avg3", (1, 2, 5, 6), 3, 1, 1), ("avg4", (1, 1, 9, 9), 4, 3, 2)]:
    x = rand_input(gen, *xs)
    fw.add(name + ".x", x)
    fw.add(name + ".args", torch.tensor([k, s, p]))
    finish(name, F.avg_pool2d(x, k, s, p, ceil_mode=False, count_include_pad=True), [("x", x)])

for name, xs, size in [("ada1", (1, 2, 7, 7), (3, 3)), ("ada2", (1, 1, 73, 73), (32, 32)),
                       ("ada3", (2, 1, 5, 7), (3, 4)), ("ada4", (1, 1, 3, 4), (5, 6))]:
    x = rand_input(gen, *xs)
    fw.add(name + ".x", x)
    fw.add(name + ".args", torch.tensor(size))
    if name == "ada2":   # seed 001's pooling, forward only (its backward is the same code as ada1/ada3)
        fw.add(name + ".y", F.adaptive_avg_pool2d(x, size))
    else:
        finish(name, F.adaptive_avg_pool2d(x, size), [("x", x)])

# group_norm: args = [groups, has_w, has_b]; eps 1e-5 except gn5 (1e-6)
for name, xs, groups, hw, hb, shift in [("gn1", (2, 6, 5, 4), 3, 1, 1, 0.0), ("gn2", (3, 4, 7), 2, 0, 0, 0.0),
                                        ("gn3", (2, 8), 4, 1, 1, 0.0), ("gn4", (2, 4, 3, 3), 4, 1, 0, 0.0),
                                        ("gn5", (2, 64, 4, 4), 32, 1, 1, 100.0), ("gn6", (1, 4, 3, 5), 1, 0, 1, 0.0)]:
    x = (rand_input(gen, *xs).detach() + shift).float().double().requires_grad_(True)
    fw.add(name + ".x", x)
    ins = [("x", x)]
    w = b = None
    if hw:
        w = rand_input(gen, xs[1], lo=0.5, hi=1.5)
        fw.add(name + ".w", w)
        ins.append(("w", w))
    if hb:
        b = rand_input(gen, xs[1])
        fw.add(name + ".b", b)
        ins.append(("b", b))
    eps = 1e-6 if name == "gn5" else 1e-5
    fw.add(name + ".args", torch.tensor([groups, hw, hb]))
    finish(name, F.group_norm(x, groups, w, b, eps), ins)

# patchify convolutions (kernel = stride, no padding: ViT's patch embedding; nn.h takes them as one GEMM over
# the batch). Drawn last so that the cases above keep their values. conv8 leaves a row and two columns that
# no patch covers (their input gradient is 0); conv9 is square, 3 images.
conv("conv8", (3, 3, 9, 11), (5, 3, 2, 3), (2, 3), (0, 0), (1, 1), 1, True)
conv("conv9", (3, 2, 8, 8), (4, 2, 4, 4), (4, 4), (0, 0), (1, 1), 1, False)

fw.save()
print("wrote", fw.path, len(fw.lines), "lines")
