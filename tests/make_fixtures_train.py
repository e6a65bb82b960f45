"""Golden values for nn.h's training machinery (wip/train.h) and files for its IO tests.

Writes
  tests/fixtures/train.txt        AdamW runs on given gradients, a tiny MLP trained 200 steps with
                                  AdamW + warmup-cosine + clipping, clip_grad_norm_ cases, expected values
                                  of the IO fixtures
  tests/fixtures/train_lr.txt     learning rates of torch's (recursive) schedulers, %.17g, "name step lr"
  tests/fixtures/io/*.safetensors written by Python's safetensors package
  tests/fixtures/io/*.npy         written by numpy (versions 1.0, 2.0, 3.0; bad ones for the error tests)
Run: python3 tests/make_fixtures_train.py   (needs torch, numpy, safetensors)"""
import math
import os
import warnings

import numpy as np
import torch
from safetensors.numpy import save_file as np_save_file
from safetensors.torch import save_file as torch_save_file

from fixtures_lib import FixtureWriter

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "fixtures")
IO = os.path.join(FIX, "io")
os.makedirs(IO, exist_ok=True)
warnings.filterwarnings("ignore")
torch.set_default_dtype(torch.float32)
g = torch.Generator().manual_seed(3)
w = FixtureWriter(os.path.join(FIX, "train.txt"))
lr_lines = []


def f32(*shape, lo=-1.0, hi=1.0):
    return (torch.rand(*shape, generator=g, dtype=torch.float64) * (hi - lo) + lo).float()


def warmup_cosine(opt, start_factor, warmup, t_max, eta_min):
    lin = torch.optim.lr_scheduler.LinearLR(opt, start_factor=start_factor, end_factor=1.0, total_iters=warmup)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=t_max, eta_min=eta_min)
    return torch.optim.lr_scheduler.SequentialLR(opt, [lin, cos], milestones=[warmup])


# ---- learning-rate schedules: torch's recursive values -------------------------------------------------
def record_lrs(name, make, steps, base_lr):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=base_lr)
    sched = make(opt)
    for t in range(steps):
        lr_lines.append("%s %d %.17g" % (name, t, opt.param_groups[0]["lr"]))
        opt.step()
        sched.step()


record_lrs("wc", lambda o: warmup_cosine(o, 0.1, 25, 200, 1e-5), 260, 3e-3)       # past warmup + T_max
record_lrs("wc3", lambda o: warmup_cosine(o, 1.0 / 3, 10, 50, 0.0), 220, 1e-3)   # several periods
record_lrs("cos", lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=100, eta_min=1e-5), 250, 1e-2)
record_lrs("lin", lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=40), 60, 2e-3)
with open(os.path.join(FIX, "train_lr.txt"), "w") as fh:
    fh.write("\n".join(lr_lines) + "\n")

# ---- AdamW on given gradients (the optimiser alone) ------------------------------------------------------
# params p0 [5,3] (decay), p1 [3] (no decay), p2 [2,2] (decay); run A: defaults, wd 0.05, warmup-cosine;
# run B: maximize, betas (0.8, 0.99), eps 1e-6, wd 0.1, constant lr 3e-3, p2 without grad every 3rd step.
STEPS = 200
shapes = [(5, 3), (3,), (2, 2)]
init = [f32(*s) for s in shapes]
grads = [[f32(*s, lo=-2, hi=2) * (0.1 if k == 1 else 1.0) for s in shapes] for k in range(STEPS)]
for i, t in enumerate(init):
    w.add("adam.init%d" % i, t)
for i in range(3):
    w.add("adam.grads%d" % i, torch.stack([grads[k][i] for k in range(STEPS)]))


def run_adam(name, kw, sched_fn, skip_p2):
    ps = [torch.nn.Parameter(t.clone()) for t in init]
    groups = [{"params": [ps[0], ps[2]], "weight_decay": kw["weight_decay"]}, {"params": [ps[1]], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, foreach=False, fused=False, **kw)
    sched = sched_fn(opt) if sched_fn else None
    for k in range(STEPS):
        for i, p in enumerate(ps):
            p.grad = None if (skip_p2 and i == 2 and k % 3 == 0) else grads[k][i].clone()
        opt.step()
        if sched:
            sched.step()
        if k == 0:
            for i, p in enumerate(ps):
                w.add("%s.step1.p%d" % (name, i), p.detach())
    for i, p in enumerate(ps):
        st = opt.state[p]
        w.add("%s.p%d" % (name, i), p.detach())
        w.add("%s.m%d" % (name, i), st["exp_avg"])
        w.add("%s.v%d" % (name, i), st["exp_avg_sq"])
        w.add("%s.steps%d" % (name, i), torch.tensor([int(st["step"].item())]))


run_adam("adamA", dict(lr=1e-2, weight_decay=0.05), lambda o: warmup_cosine(o, 0.1, 20, 180, 1e-4), False)
run_adam("adamB", dict(lr=3e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, maximize=True), None, True)

# ---- a tiny MLP trained 200 steps: AdamW + warmup-cosine + clip_grad_norm_ --------------------------------
class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


model = MLP()
with torch.no_grad():
    for name, p in model.named_parameters():
        p.copy_(f32(*p.shape))
        w.add("mlp.init." + name, p)
X = f32(16, 4)
Y = f32(16, 3)
w.add("mlp.x", X)
w.add("mlp.y", Y)
decay = [p for n, p in model.named_parameters() if p.ndim > 1]
no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=2e-2, foreach=False, fused=False)
sched = warmup_cosine(opt, 0.1, 20, 180, 1e-4)
losses, norms = [], []
for k in range(STEPS):
    opt.zero_grad()
    loss = torch.nn.functional.mse_loss(model(X), Y)
    loss.backward()
    norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.5).item())
    losses.append(loss.item())
    opt.step()
    sched.step()
w.add("mlp.losses", torch.tensor(losses))
w.add("mlp.norms", torch.tensor(norms))
for name, p in model.named_parameters():
    w.add("mlp.final." + name, p.detach())
    w.add("mlp.m." + name, opt.state[p]["exp_avg"])
    w.add("mlp.v." + name, opt.state[p]["exp_avg_sq"])

# ---- clip_grad_norm_ ---------------------------------------------------------------------------------------
def clip_case(name, gs, max_norm):
    ps = [torch.nn.Parameter(torch.zeros_like(x)) for x in gs]
    for p, x in zip(ps, gs):
        p.grad = x.clone()
    total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
    for i, x in enumerate(gs):
        w.add("%s.g%d" % (name, i), x)
        w.add("%s.out%d" % (name, i), ps[i].grad)
    w.add(name + ".norm", total.reshape(1))


clip_case("clip.big", [f32(7, 5, lo=-3, hi=3), f32(11), f32(2, 3, 4)], 1.0)
clip_case("clip.small", [f32(3, 2, lo=-0.01, hi=0.01), f32(4, lo=-0.01, hi=0.01)], 1.0)
clip_case("clip.near", [torch.full((4,), 0.5)], 1.0)  # norm exactly 1: coef 1/(1+1e-6) < 1
gi = f32(6)
gi[2] = float("inf")
clip_case("clip.inf", [gi, f32(3)], 1.0)
gn = f32(5)
gn[1] = float("nan")
clip_case("clip.nan", [f32(3), gn], 1.0)

# ---- safetensors written by Python --------------------------------------------------------------------------
def vals(n, scale, off):
    return np.arange(n, dtype=np.float64) * scale + off


st = {
    "f32": torch.tensor(vals(6, 0.25, -1.0), dtype=torch.float32).reshape(2, 3),
    "f16": torch.tensor(vals(4, 0.5, -1.0), dtype=torch.float16),
    "bf16": torch.tensor(vals(3, 1.5, -2.0), dtype=torch.bfloat16),
    "i32": torch.tensor(vals(5, 7, -10), dtype=torch.int32),
    "i64": torch.tensor([-(1 << 40), 0, 1 << 40, (1 << 62) + 5], dtype=torch.int64).reshape(2, 2),
    "u8": torch.tensor(vals(6, 40, 0), dtype=torch.uint8),
    "bool": torch.tensor([True, False, True]),
    "scalar": torch.tensor(3.5),
    "empty": torch.zeros(0, 4),
    "nested.name.with.dots": torch.tensor(vals(24, 1.0, 0.0), dtype=torch.float32).reshape(2, 3, 4),
    "unicode \u2713 \"quoted\"": torch.tensor([42.0]),
}
torch_save_file(st, os.path.join(IO, "py_all.safetensors"), metadata={"producer": "torch", "note": "h\u00e9llo \u2713"})
for k, v in st.items():
    key = "py." + k.replace(" ", "_").replace('"', "")
    w.add(key, v.float() if v.dtype in (torch.float16, torch.bfloat16, torch.bool) else v)
# a model the C side loads by name (the MLP's final weights) with numpy's writer
np_save_file({n: p.detach().numpy() for n, p in model.named_parameters()}, os.path.join(IO, "py_mlp.safetensors"))
# empty file (no tensors) and one with only metadata
torch_save_file({}, os.path.join(IO, "py_empty.safetensors"), metadata={"only": "meta"})

# ---- npy written by numpy ----------------------------------------------------------------------------------
from numpy.lib import format as npfmt


def npy(name, arr, version=None):
    with open(os.path.join(IO, name), "wb") as fh:
        if version is None:
            np.save(fh, arr)
        else:
            npfmt.write_array(fh, arr, version=version)


base = np.arange(24, dtype=np.float64).reshape(2, 3, 4) * 0.5 - 3
npy("np_f4.npy", base.astype("<f4"))
npy("np_f2.npy", base.astype("<f2"))
npy("np_i4.npy", (base * 4).astype("<i4"))
npy("np_i8.npy", (base * 4).astype("<i8") * (1 << 33))
npy("np_u1.npy", np.arange(10, dtype=np.uint8) * 25)
npy("np_b1.npy", np.array([True, False, False, True]))
npy("np_scalar.npy", np.array(2.5, dtype="<f4"))
npy("np_v2.npy", base.astype("<f4"), version=(2, 0))
npy("np_v3.npy", base.astype("<f4"), version=(3, 0))
npy("np_empty.npy", np.zeros((0, 5), dtype="<f4"))
w.add("np.base", torch.tensor(base, dtype=torch.float32))
w.add("np.base_i4", torch.tensor((base * 4).astype(np.int64)))
w.add("np.base_i8", torch.tensor((base * 4).astype(np.int64) * (1 << 33)))
# the error cases
npy("bad_fortran.npy", np.asfortranarray(base.astype("<f4")))
npy("bad_bigendian.npy", base.astype(">f4"))
npy("bad_f8.npy", base.astype("<f8"))
npy("bad_i1.npy", base.astype("|i1"))
with open(os.path.join(IO, "np_f4.npy"), "rb") as fh:
    whole = fh.read()
with open(os.path.join(IO, "bad_truncated.npy"), "wb") as fh:
    fh.write(whole[:-5])

w.save()
print("wrote", w.path, "and", len(lr_lines), "lr values and the files in", IO)
