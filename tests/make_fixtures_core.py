"""Golden values for nn.h's core ops (elementwise, reductions, softmax, layer_norm, matmul, shape ops).

For every case: inputs in0.. (float32 values), the output `out`, an upstream gradient `r`, and the
gradients gin0.. of sum(out * r) with respect to each input, all computed by PyTorch in float64.
Run: python3 tests/make_fixtures_core.py  (writes tests/fixtures/core.txt)"""
import os
import torch
import torch.nn.functional as F
from fixtures_lib import FixtureWriter, rand_input

g = torch.Generator().manual_seed(0)
w = FixtureWriter(os.path.join(os.path.dirname(__file__), "fixtures", "core.txt"))


def case(name, fn, *inputs):
    out = fn(*inputs)
    r = (torch.rand(out.shape, generator=g, dtype=torch.float64) * 2 - 1).float().double()
    grads = torch.autograd.grad((out * r).sum(), [x for x in inputs if x.requires_grad], allow_unused=True)
    for i, x in enumerate(inputs):
        w.add("%s.in%d" % (name, i), x)
    w.add(name + ".out", out)
    w.add(name + ".r", r)
    k = 0
    for i, x in enumerate(inputs):
        if x.requires_grad:
            gi = grads[k] if grads[k] is not None else torch.zeros_like(x)
            w.add("%s.gin%d" % (name, i), gi)
            k += 1


R = lambda *s, lo=-1.0, hi=1.0: rand_input(g, *s, lo=lo, hi=hi)

case("add", torch.add, R(3, 1, 5), R(4, 1))
case("sub", torch.sub, R(2, 3, 4), R(3, 1))
case("mul", torch.mul, R(2, 3, 4), R(4))
case("div", torch.div, R(2, 3), R(2, 1, lo=0.5, hi=2.0))
case("exp", torch.exp, R(3, 4))
case("log", torch.log, R(3, 4, lo=0.1, hi=3))
case("sqrt", torch.sqrt, R(3, 4, lo=0.1, hi=3))
case("rsqrt", torch.rsqrt, R(3, 4, lo=0.1, hi=3))
case("abs", torch.abs, R(3, 4))
case("pow", lambda x: torch.pow(x, 2.5), R(3, 4, lo=0.1, hi=2))
case("clamp", lambda x: torch.clamp(x, -0.5, 0.3), R(3, 4))
case("relu", torch.relu, R(3, 4))
case("gelu", F.gelu, R(3, 4, lo=-3, hi=3))
case("gelu_tanh", lambda x: F.gelu(x, approximate="tanh"), R(3, 4, lo=-3, hi=3))
case("silu", F.silu, R(3, 4, lo=-3, hi=3))
case("sigmoid", torch.sigmoid, R(3, 4, lo=-3, hi=3))
case("tanh", torch.tanh, R(3, 4, lo=-3, hi=3))
case("sum1", lambda x: x.sum(1), R(2, 3, 4))
case("mean2k", lambda x: x.mean(-1, keepdim=True), R(2, 3, 4))
case("max0", lambda x: x.max(0).values, R(3, 4))
case("var1", lambda x: x.var(1, unbiased=True), R(2, 5, 3))
case("var1b", lambda x: x.var(1, unbiased=False, keepdim=True), R(2, 5, 3))
case("softmax", lambda x: torch.softmax(x, -1), R(3, 7, lo=-3, hi=3))
case("softmax1", lambda x: torch.softmax(x, 1), R(2, 5, 3, lo=-3, hi=3))
case("log_softmax", lambda x: torch.log_softmax(x, -1), R(3, 7, lo=-3, hi=3))
case("layer_norm", lambda x, w_, b_: F.layer_norm(x, (6,), w_, b_, 1e-5), R(2, 3, 6), R(6), R(6))
case("layer_norm_noaffine", lambda x: F.layer_norm(x, (8,), None, None, 1e-6), R(4, 8))
case("matmul2d", torch.matmul, R(3, 5), R(5, 4))
case("matmul_batch", torch.matmul, R(2, 1, 3, 5), R(3, 5, 2))
case("matmul_vec", torch.matmul, R(2, 3, 4), R(4))
case("matmul_nd2d", torch.matmul, R(2, 3, 4), R(4, 5))
case("linear", F.linear, R(2, 3, 5), R(4, 5), R(4))
case("permute", lambda x: x.permute(2, 0, 1), R(2, 3, 4))
case("transpose", lambda x: x.transpose(0, 1), R(2, 3, 4))
case("slice", lambda x: x[:, 1:3], R(2, 4, 3))
case("concat", lambda a, b: torch.cat([a, b], 1), R(2, 3, 2), R(2, 1, 2))
case("expand", lambda x: x.expand(3, 2, 4), R(2, 1))
case("addcmul", torch.addcmul, R(2, 3, 6), R(2, 3, 6), R(6))            # LayerScale's residual: w one row
case("addcmul_bc", torch.addcmul, R(3, 1, 4), R(2, 1, 1, 4), R(5, 1))   # every operand broadcast


def layer_norm_low(name, dt, x, w_, b_):
    """layer_norm(x).to(dt) as torch computes it (an f32 layer norm, rounded), and the gradients of
    sum(out.float() * r): autograd hands the f32 layer norm r rounded to dt, so the reference gradients are the
    float64 layer norm's for that rounded r"""
    out = F.layer_norm(x.float(), (x.shape[-1],), w_.float(), b_.float(), 1e-5).to(dt)
    r = (torch.rand(out.shape, generator=g, dtype=torch.float64) * 2 - 1).float().double()
    y = F.layer_norm(x, (x.shape[-1],), w_, b_, 1e-5)
    grads = torch.autograd.grad((y * r.to(dt).double()).sum(), [x, w_, b_])
    for i, t in enumerate((x, w_, b_)):
        w.add("%s.in%d" % (name, i), t)
    w.add(name + ".out", out)
    w.add(name + ".r", r)
    for i, gi in enumerate(grads):
        w.add("%s.gin%d" % (name, i), gi)


layer_norm_low("layer_norm_bf16", torch.bfloat16, R(3, 5, 12, lo=-2, hi=3), R(12, lo=0.5, hi=1.5), R(12))
layer_norm_low("layer_norm_f16", torch.float16, R(3, 5, 12, lo=-2, hi=3), R(12, lo=0.5, hi=1.5), R(12))
w.save()
print("wrote", w.path)
