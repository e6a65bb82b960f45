"""Checks in Python what tests/test_io.c wrote: its safetensors files load in the `safetensors` package
(numpy and torch back ends) with the right dtypes, shapes, values and metadata; its .npy files load in numpy;
its model file and its checkpoint load into the equivalent torch.nn.Module's state_dict.

Run after the C test: build/test_io && python3 tests/check_io.py build/test_io_out
Prints "N passed, M failed" (exit status 1 on any failure)."""
import os
import sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file
from safetensors.torch import load_file as torch_load_file

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "test_io_out")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


def vals(n, scale, off):
    return np.arange(n, dtype=np.float64) * scale + off


WEIRD = 'weird "name" \u2713\n\\'
NOTE = 'line\nbreak "quoted" \u2713 \\ backslash\t'

# ---- c_all.safetensors: every dtype, a scalar, an empty tensor, an awkward name, metadata with escapes
path = os.path.join(out, "c_all.safetensors")
try:
    t = torch_load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    check(meta == {"producer": "nn.h", "note": NOTE}, "c_all metadata %r" % (meta,))
    expect = {
        "f32": (torch.float32, (2, 3), vals(6, 0.25, -1)),
        "f16": (torch.float16, (4,), vals(4, 0.5, -1)),
        "bf16": (torch.bfloat16, (3,), vals(3, 1.5, -2)),
        "i32": (torch.int32, (5,), vals(5, 7, -10)),
        "i64": (torch.int64, (2, 2), None),
        "u8": (torch.uint8, (6,), vals(6, 40, 0)),
        "bool": (torch.bool, (3,), np.array([0, 1, 0])),
        "scalar": (torch.float32, (), np.array(3.5)),
        "empty": (torch.float32, (0, 4), np.zeros(0)),
        WEIRD: (torch.float32, (1,), np.array([42.0])),
    }
    check(set(t.keys()) == set(expect.keys()), "c_all keys %r" % sorted(t.keys()))
    for k, (dt, shape, v) in expect.items():
        if k not in t:
            continue
        x = t[k]
        check(x.dtype == dt and tuple(x.shape) == shape, "c_all %r: %s %s" % (k, x.dtype, tuple(x.shape)))
        if k == "i64":
            want = torch.tensor([-(2 << 40), -(1 << 40), 0, 1 << 40], dtype=torch.int64).reshape(2, 2)
            check(torch.equal(x, want), "c_all i64 values %s" % x)
        else:
            check(np.array_equal(x.double().numpy().reshape(-1), v.reshape(-1)), "c_all %r values %s" % (k, x))
    # the numpy back end reads it too (no bf16 in numpy: skip that one through safe_open)
    with safe_open(path, "np") as f:
        check(f.get_tensor("f16").dtype == np.float16 and f.get_tensor("u8").dtype == np.uint8, "c_all via numpy")
except Exception as e:  # noqa: BLE001 - any failure to load is a test failure
    check(False, "c_all.safetensors: %r" % e)

# ---- .npy files
npys = {
    "c_f4.npy": ("<f4", (2, 3), vals(6, 0.25, -1)),
    "c_f2.npy": ("<f2", (4,), vals(4, 0.5, -1)),
    "c_i4.npy": ("<i4", (5,), vals(5, 7, -10)),
    "c_u1.npy": ("|u1", (6,), vals(6, 40, 0)),
    "c_b1.npy": ("|b1", (3,), np.array([0, 1, 0])),
    "c_scalar.npy": ("<f4", (), np.array(3.5)),
    "c_empty.npy": ("<f4", (0, 4), np.zeros(0)),
    "c_big.npy": ("<f4", (300, 7), vals(2100, 0.5, -100)),
}
for name, (descr, shape, v) in npys.items():
    try:
        a = np.load(os.path.join(out, name))
        check(a.dtype.str == descr and a.shape == shape and a.flags.c_contiguous, "%s: %s %s" % (name, a.dtype.str, a.shape))
        check(np.array_equal(a.astype(np.float64).reshape(-1), v.reshape(-1)), "%s values" % name)
    except Exception as e:  # noqa: BLE001
        check(False, "%s: %r" % (name, e))
try:
    a = np.load(os.path.join(out, "c_i8.npy"))
    check(a.dtype.str == "<i8" and a.tolist() == [[-(2 << 40), -(1 << 40)], [0, 1 << 40]], "c_i8.npy %r" % a)
    with open(os.path.join(out, "c_f4.npy"), "rb") as fh:
        check(fh.read(8) == b"\x93NUMPY\x01\x00", "c_f4.npy is version 1.0")
except Exception as e:  # noqa: BLE001
    check(False, "c_i8.npy: %r" % e)


# ---- the model and the checkpoint into a torch module
class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(4, 8)
        self.fc2 = torch.nn.Linear(8, 3)


try:
    model_sd = torch_load_file(os.path.join(out, "c_model.safetensors"))
    m = MLP()
    m.load_state_dict(model_sd, strict=True)
    check(True, "c_model loads strictly")

    ck_path = os.path.join(out, "c_ckpt.safetensors")
    ck = torch_load_file(ck_path)
    m2 = MLP()
    m2.load_state_dict({k: v for k, v in ck.items() if not k.startswith("optim.")}, strict=True)
    check(all(torch.equal(m2.state_dict()[k], model_sd[k]) for k in model_sd), "checkpoint's model part equals c_model")
    res = MLP().load_state_dict(ck, strict=False)
    opt_keys = sorted(k for k in ck if k.startswith("optim."))
    check(res.missing_keys == [] and sorted(res.unexpected_keys) == opt_keys, "strict=False: only optim.* unexpected")
    check(len(opt_keys) == 3 * 4, "3 optimiser entries per parameter: %d" % len(opt_keys))
    for k in model_sd:
        ea, es, st = ck["optim.exp_avg." + k], ck["optim.exp_avg_sq." + k], ck["optim.step." + k]
        check(ea.shape == model_sd[k].shape and ea.dtype == torch.float32 and es.shape == model_sd[k].shape, "moments of " + k)
        check(st.dtype == torch.int64 and st.shape == () and int(st) == 3, "step of %s: %r" % (k, st))
        check(bool((es >= 0).all()) and bool((ea != 0).any()), "moments of %s look like Adam's" % k)
    with safe_open(ck_path, "pt") as f:
        meta = f.metadata()
    check(meta.get("format") == "nn.h checkpoint 1" and meta.get("step") == "3" and meta.get("epoch") == "2",
          "checkpoint metadata %r" % meta)
    check(float(meta.get("best_metric", "nan")) == 0.125 and meta.get("config") == 'lr: 1e-2\nname: "tiny"\n',
          "checkpoint best_metric/config")
    check("last_epoch=3" in meta.get("sched", "") and "rng_offset" in meta, "checkpoint sched/rng")
except Exception as e:  # noqa: BLE001
    check(False, "model/checkpoint: %r" % e)

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
