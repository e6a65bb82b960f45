"""Checks in Python what tests/test_io.c wrote: its safetensors files load in the `safetensors` package
(numpy back end) and in an independent reader of the format written here from its spec (the bf16 tensors, which
numpy cannot hold, go through that one), with the right dtypes, shapes, values and metadata; its .npy files load in
numpy; its model file and its checkpoint carry exactly the state_dict of the equivalent torch.nn.Module (names,
shapes and dtypes as torch.nn.Linear defines them), so `model.load_state_dict(load_file(...))` takes them.

PyTorch-free on purpose: CI has numpy and safetensors, not torch.
Run after the C test: build/test_io && python3 tests/check_io.py build/test_io_out
Prints "N passed, M failed" (exit status 1 on any failure)."""
import json
import os
import struct
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file as np_load_file

from pytally import check, finish

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "test_io_out")


def vals(n, scale, off):
    return np.arange(n, dtype=np.float64) * scale + off


# safetensors, from its spec: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape,
# data_offsets: [begin, end)} , "__metadata__": {str: str}}, then the byte buffer the offsets index.
ST_DTYPES = {"F32": "<f4", "F16": "<f2", "I32": "<i4", "I64": "<i8", "U8": "|u1", "BOOL": "|b1", "BF16": "<u2"}


def read_safetensors(path):
    """-> ({name: (dtype string, shape, float64 or int array)}, metadata); bf16 widened exactly to float64."""
    with open(path, "rb") as fh:
        blob = fh.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data = blob[8 + n:]
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = np.frombuffer(data[b:e], dtype=ST_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":  # bf16 is the top half of an f32
            raw = (raw.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = (info["dtype"], tuple(info["shape"]), raw.reshape(info["shape"]))
    return tensors, meta


WEIRD = 'weird "name" \u2713\n\\'
NOTE = 'line\nbreak "quoted" \u2713 \\ backslash\t'

# ---- c_all.safetensors: every dtype, a scalar, an empty tensor, an awkward name, metadata with escapes
path = os.path.join(out, "c_all.safetensors")
try:
    t, meta = read_safetensors(path)
    check(meta == {"producer": "nn.h", "note": NOTE}, "c_all metadata %r" % (meta,))
    with safe_open(path, "np") as f:
        check(f.metadata() == meta, "c_all metadata via the safetensors package")
        check(set(f.keys()) == set(t.keys()), "c_all keys via the safetensors package")
        for k in f.keys():  # everything but bf16 must read the same through the package's numpy back end
            if t[k][0] != "BF16":
                x = f.get_tensor(k)
                check(x.dtype == t[k][2].dtype and x.shape == t[k][1] and np.array_equal(x, t[k][2]),
                      "c_all %r same via the safetensors package" % k)
    expect = {
        "f32": ("F32", (2, 3), vals(6, 0.25, -1)),
        "f16": ("F16", (4,), vals(4, 0.5, -1)),
        "bf16": ("BF16", (3,), vals(3, 1.5, -2)),
        "i32": ("I32", (5,), vals(5, 7, -10)),
        "i64": ("I64", (2, 2), None),
        "u8": ("U8", (6,), vals(6, 40, 0)),
        "bool": ("BOOL", (3,), np.array([0, 1, 0])),
        "scalar": ("F32", (), np.array(3.5)),
        "empty": ("F32", (0, 4), np.zeros(0)),
        WEIRD: ("F32", (1,), np.array([42.0])),
    }
    check(set(t.keys()) == set(expect.keys()), "c_all keys %r" % sorted(t.keys()))
    for k, (dt, shape, v) in expect.items():
        if k not in t:
            continue
        got_dt, got_shape, x = t[k]
        check(got_dt == dt and got_shape == shape, "c_all %r: %s %s" % (k, got_dt, got_shape))
        if k == "i64":
            want = np.array([-(2 << 40), -(1 << 40), 0, 1 << 40], dtype=np.int64).reshape(2, 2)
            check(np.array_equal(x, want), "c_all i64 values %s" % x)
        else:
            check(np.array_equal(x.astype(np.float64).reshape(-1), v.reshape(-1)), "c_all %r values %s" % (k, x))
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


# ---- the model and the checkpoint against torch's state_dict of
#   class MLP(torch.nn.Module): fc1 = nn.Linear(4, 8); fc2 = nn.Linear(8, 3)
# nn.Linear(in, out) names its parameters "weight" [out, in] and "bias" [out], float32; load_state_dict(strict=True)
# wants exactly these keys and shapes.
TORCH_SD = {"fc1.weight": (8, 4), "fc1.bias": (8,), "fc2.weight": (3, 8), "fc2.bias": (3,)}
try:
    model_sd = np_load_file(os.path.join(out, "c_model.safetensors"))
    check({k: v.shape for k, v in model_sd.items()} == TORCH_SD, "c_model is MLP's state_dict: %r" %
          {k: v.shape for k, v in model_sd.items()})
    check(all(v.dtype == np.float32 and np.isfinite(v).all() for v in model_sd.values()), "c_model float32, finite")

    ck_path = os.path.join(out, "c_ckpt.safetensors")
    ck = np_load_file(ck_path)
    model_part = {k: v for k, v in ck.items() if not k.startswith("optim.")}
    check(set(model_part) == set(TORCH_SD), "checkpoint's model keys %r" % sorted(model_part))
    check(all(k in model_part and np.array_equal(model_part[k], model_sd[k]) for k in model_sd),
          "checkpoint's model part equals c_model")
    opt_keys = sorted(k for k in ck if k.startswith("optim."))
    check(len(opt_keys) == 3 * 4, "3 optimiser entries per parameter: %d" % len(opt_keys))
    for k in model_sd:
        ea, es, st = ck["optim.exp_avg." + k], ck["optim.exp_avg_sq." + k], ck["optim.step." + k]
        check(ea.shape == model_sd[k].shape and ea.dtype == np.float32 and es.shape == model_sd[k].shape, "moments of " + k)
        check(st.dtype == np.int64 and st.shape == () and int(st) == 3, "step of %s: %r" % (k, st))
        check(bool((es >= 0).all()) and bool((ea != 0).any()), "moments of %s look like Adam's" % k)
    with safe_open(ck_path, "np") as f:
        meta = f.metadata()
    check(meta.get("format") == "nn.h checkpoint 1" and meta.get("step") == "3" and meta.get("epoch") == "2",
          "checkpoint metadata %r" % meta)
    check(float(meta.get("best_metric", "nan")) == 0.125 and meta.get("config") == 'lr: 1e-2\nname: "tiny"\n',
          "checkpoint best_metric/config")
    check("last_epoch=3" in meta.get("sched", "") and "rng_offset" in meta, "checkpoint sched/rng")
except Exception as e:  # noqa: BLE001
    check(False, "model/checkpoint: %r" % e)

finish()
