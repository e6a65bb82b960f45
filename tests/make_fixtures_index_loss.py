"""PyTorch golden values for nn.h's indexing ops and losses -> tests/fixtures/index_loss.txt.

    python3 tests/make_fixtures_index_loss.py

For every case: the inputs (float32-representable values, see fixtures_lib.rand_input), the forward
output, an output gradient <case>.gy (a random projection; a scalar for reduced losses) and the gradients
of sum(gy * y) for every differentiable input, <case>.d<input>. Computed in float64, stored as float32.
Scalar arguments (dim, k, ...) are written into tests/test_index_loss.c next to the case name.
Index tensors and masks are stored as i64 (the C test converts them to i32/bool where it wants)."""
import os
import torch
import torch.nn.functional as F
from fixtures_lib import FixtureWriter, rand_input

torch.set_default_dtype(torch.float64)
gen = torch.Generator().manual_seed(20261123)
W = FixtureWriter(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "index_loss.txt"))


def ints(lo, hi, *shape):
    return torch.randint(lo, hi, shape, generator=gen, dtype=torch.int64)


def record(case, inputs, out, diff):
    """inputs: dict name -> tensor (all written); diff: names of inputs to differentiate."""
    for k, v in inputs.items():
        W.add("%s.%s" % (case, k), v)
    W.add("%s.y" % case, out)
    gy = rand_input(gen, *out.shape).detach() if out.dim() else torch.tensor(0.75)
    W.add("%s.gy" % case, gy)
    grads = torch.autograd.grad(out, [inputs[k] for k in diff], gy, allow_unused=True)
    for k, g in zip(diff, grads):
        W.add("%s.d%s" % (case, k), g if g is not None else torch.zeros_like(inputs[k]))


# ---------------------------------------------------------------- indexing
w = rand_input(gen, 5, 3)
idx = torch.tensor([[0, 4, 2, 4], [1, 1, 3, 0]])
record("embedding", {"w": w, "idx": idx}, F.embedding(idx, w), ["w"])

a = rand_input(gen, 3, 4, 2)
idx = torch.tensor([3, 0, 3, 1, 3])
record("index_select1", {"a": a, "idx": idx}, torch.index_select(a, 1, idx), ["a"])  # dim 1
a = rand_input(gen, 2, 6)
idx = torch.tensor([5, 5, 0])
record("index_select2", {"a": a, "idx": idx}, torch.index_select(a, -1, idx), ["a"])  # dim -1

a = rand_input(gen, 3, 4, 5)
idx = ints(0, 4, 2, 6, 3)
record("gather", {"a": a, "idx": idx}, torch.gather(a, 1, idx), ["a"])  # dim 1, idx smaller in dims 0, 2

a = rand_input(gen, 3, 5)
src = rand_input(gen, 3, 4)
idx = ints(0, 5, 3, 4)
record("scatter_add", {"a": a, "idx": idx, "src": src}, a.scatter_add(1, idx, src), ["a", "src"])  # dim 1
a = rand_input(gen, 4, 2, 3)
src = rand_input(gen, 5, 2, 3)
idx = ints(0, 4, 5, 2, 3)
record("scatter_add0", {"a": a, "idx": idx, "src": src}, a.scatter_add(0, idx, src), ["a", "src"])  # dim 0

a = rand_input(gen, 3, 7)
v, i = torch.topk(a, 3, dim=1, largest=True)
record("topk1", {"a": a}, v, ["a"])
W.add("topk1.ind", i)
a = rand_input(gen, 6, 4)
v, i = torch.topk(a, 2, dim=0, largest=False)
record("topk2", {"a": a}, v, ["a"])
W.add("topk2.ind", i)

cond = ints(0, 2, 3, 1)
a = rand_input(gen, 1, 4)
b = rand_input(gen, 3, 4)
record("where", {"cond": cond, "a": a, "b": b}, torch.where(cond.bool(), a, b), ["a", "b"])

a = rand_input(gen, 2, 3, 4)
mask = ints(0, 2, 3, 1)
record("masked_fill", {"a": a, "mask": mask}, a.masked_fill(mask.bool(), -1.5), ["a"])

a = rand_input(gen, 4, 3)
b = rand_input(gen, 4, 3)
record("cross1", {"a": a, "b": b}, torch.linalg.cross(a, b, dim=-1), ["a", "b"])
a = rand_input(gen, 2, 1, 3)
b = rand_input(gen, 1, 5, 3)
record("cross2", {"a": a, "b": b}, torch.linalg.cross(a, b, dim=-1), ["a", "b"])  # broadcast
a = rand_input(gen, 3, 4)
b = rand_input(gen, 3, 4)
record("cross3", {"a": a, "b": b}, torch.linalg.cross(a, b, dim=0), ["a", "b"])

a = rand_input(gen, 3, 4, 5)
record("norm1", {"a": a}, torch.linalg.vector_norm(a, dim=1), ["a"])  # dim 1, keepdim 0
a = rand_input(gen, 3, 4).detach()
a[1] = 0
a.requires_grad_(True)
record("norm2", {"a": a}, torch.linalg.vector_norm(a, dim=-1, keepdim=True), ["a"])  # zero row

# ---------------------------------------------------------------- losses
p = rand_input(gen, 3, 5)
t = rand_input(gen, 3, 5)
record("mse", {"p": p, "t": t}, F.mse_loss(p, t), ["p", "t"])
record("l1", {"p": p, "t": t}, F.l1_loss(p, t), ["p", "t"])
record("smooth_l1", {"p": p, "t": t}, F.smooth_l1_loss(p, t, beta=0.5), ["p", "t"])
record("smooth_l1_b0", {"p": p, "t": t}, F.smooth_l1_loss(p, t, beta=0.0), ["p", "t"])

x = rand_input(gen, 6, 5, lo=-3, hi=3)
t = ints(0, 5, 6)
record("ce1", {"x": x, "t": t}, F.cross_entropy(x, t), ["x"])
x = rand_input(gen, 7, 4, lo=-3, hi=3)
t = torch.tensor([2, 0, 2, 3, 1, 2, 3])
wt = rand_input(gen, 4, lo=0.2, hi=2.0).detach()
record("ce2", {"x": x, "t": t, "w": wt}, F.cross_entropy(x, t, weight=wt, ignore_index=2), ["x"])
x = rand_input(gen, 5, 4, lo=-3, hi=3)
t = torch.tensor([1, -100, 3, 0, 3])
wt = rand_input(gen, 4, lo=0.2, hi=2.0).detach()
record("ce3", {"x": x, "t": t, "w": wt}, F.cross_entropy(x, t, weight=wt, label_smoothing=0.1), ["x"])
x = rand_input(gen, 2, 4, 3, 2, lo=-3, hi=3)
t = ints(0, 4, 2, 3, 2)
t[0, 1, 1] = 1
t[1, 2, 0] = 1
wt = rand_input(gen, 4, lo=0.2, hi=2.0).detach()
record("ce4", {"x": x, "t": t, "w": wt}, F.cross_entropy(x, t, weight=wt, ignore_index=1, label_smoothing=0.2),
       ["x"])
x = rand_input(gen, 3, 6, 2, lo=-3, hi=3)
t = ints(0, 6, 3, 2)
record("ce5", {"x": x, "t": t}, F.cross_entropy(x, t, label_smoothing=0.3), ["x"])
x = rand_input(gen, 5, lo=-3, hi=3)
t = torch.tensor(3)
wt = rand_input(gen, 5, lo=0.2, hi=2.0).detach()
record("ce6", {"x": x, "t": t, "w": wt}, F.cross_entropy(x, t, weight=wt, label_smoothing=0.05), ["x"])  # [C]

x = rand_input(gen, 4, 3, lo=-4, hi=4)
y = rand_input(gen, 4, 3, lo=0, hi=1)
pw = rand_input(gen, 3, lo=0.5, hi=3)
ref = F.binary_cross_entropy_with_logits(x, y, pos_weight=pw.detach())
# torch does not differentiate pos_weight; nn.h does: the same formula (aten Loss.cpp), written out
mine = ((1 - y) * x + (1 + (pw - 1) * y) * F.softplus(-x)).mean()
assert abs(float((ref - mine).detach())) < 1e-12
record("bce1", {"x": x, "t": y, "pw": pw}, mine, ["x", "t", "pw"])
x = rand_input(gen, 2, 5, lo=-4, hi=4)
y = ints(0, 2, 2, 5).double().requires_grad_(True)
record("bce2", {"x": x, "t": y}, F.binary_cross_entropy_with_logits(x, y), ["x", "t"])


def focal(x, y, alpha, gamma, reduction):
    # torchvision.ops.sigmoid_focal_loss, written out (torchvision is not a dependency of the tests)
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, y, reduction="none")
    p_t = p * y + (1 - p) * (1 - y)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * y + (1 - alpha) * (1 - y)) * loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


x = rand_input(gen, 4, 5, lo=-4, hi=4)
y = ints(0, 2, 4, 5).double()
record("focal1", {"x": x, "t": y}, focal(x, y, 0.25, 2.0, "mean"), ["x"])
x = rand_input(gen, 3, 4, lo=-4, hi=4)
y = ints(0, 2, 3, 4).double()
record("focal2", {"x": x, "t": y}, focal(x, y, -1.0, 0.0, "sum"), ["x"])
x = rand_input(gen, 3, 4, lo=-4, hi=4)
y = rand_input(gen, 3, 4, lo=0, hi=1)
record("focal3", {"x": x, "t": y}, focal(x, y, 0.6, 1.5, "none"), ["x", "t"])

W.save()
print("wrote", W.path, len(W.lines), "lines")
