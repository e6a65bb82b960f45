"""Golden values for nn_sdpa (tests/test_sdpa.c): python3 tests/make_fixtures_sdpa.py -> tests/fixtures/sdpa.txt

Every combination of
    mask kind  : none | full bool [B,H,Lq,Lk] (one row all False) | key padding [B,1,1,Lk] from valid [B,Lk]
                 (batch 1 entirely padding: every row fully masked) | 2-D bool [Lq,Lk] (one row all False)
    bias kind  : none | [B,H,Lq,Lk] (one -inf entry) | [1,1,Lq,Lk] | [B,1,Lq,Lk] | 3-D [H,1,Lk]
    causal     : off | on (top-left aligned, PyTorch's is_causal)
and two shapes with Lq != Lk and D != Dv (Lq < Lk and Lq > Lk). The scale alternates between the default
1/sqrt(D) and a custom 0.37, so each mask kind and bias kind meets both.

The reference is PyTorch's F.scaled_dot_product_attention in float64. PyTorch refuses attn_mask together with
is_causal, so the bool mask, the causal triangle and the bias are folded into one float mask
(bias + where(allowed, 0, -inf)); its gradient flows back to the bias through the broadcasting add, which
sums over the bias's broadcast dims exactly as nn_sdpa must. Fully masked rows come out as zeros in PyTorch
(>= 2.5), which is nn_sdpa's documented behaviour; the script asserts it, and that nothing is NaN.

Names: s<shape>.{q,k,v,gout}, s<shape>.mask.<kind> (i64 0/1), s<shape>.valid (i64 [B,Lk]),
s<shape>.bias.<kind>, c<case>.{out,dq,dk,dv,dbias}; case = ((shape*4 + mask)*5 + bias)*2 + causal."""
import os
import torch
import torch.nn.functional as F
from fixtures_lib import FixtureWriter, rand_input

MASKS = ["none", "full", "kpm", "2d"]
BIASES = ["none", "bhqk", "11qk", "b1qk", "h1k"]
SHAPES = [(2, 2, 5, 7, 8, 4), (2, 2, 6, 3, 12, 8)]  # B, H, Lq, Lk, D, Dv
CUSTOM_SCALE = 0.37


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    w = FixtureWriter(os.path.join(here, "fixtures", "sdpa.txt"))
    gen = torch.Generator().manual_seed(20260423)
    for si, (B, H, Lq, Lk, D, Dv) in enumerate(SHAPES):
        q = rand_input(gen, B, H, Lq, D)
        k = rand_input(gen, B, H, Lk, D)
        v = rand_input(gen, B, H, Lk, Dv)
        gout = rand_input(gen, B, H, Lq, Dv).detach()
        for name, t in (("q", q), ("k", k), ("v", v), ("gout", gout)):
            w.add("s%d.%s" % (si, name), t)
        masks = {"none": None}
        full = torch.rand(B, H, Lq, Lk, generator=gen) < 0.7
        full[1, 0, 2, :] = False
        masks["full"] = full
        valid = torch.ones(B, Lk, dtype=torch.int64)
        valid[0, Lk - 2:] = 0
        valid[1, :] = 0
        masks["kpm"] = (valid != 0).reshape(B, 1, 1, Lk)
        m2 = torch.rand(Lq, Lk, generator=gen) < 0.6
        m2[1, :] = False
        masks["2d"] = m2
        w.add("s%d.mask.full" % si, full.long())
        w.add("s%d.mask.2d" % si, m2.long())
        w.add("s%d.valid" % si, valid)
        shapes = {"bhqk": (B, H, Lq, Lk), "11qk": (1, 1, Lq, Lk), "b1qk": (B, 1, Lq, Lk), "h1k": (H, 1, Lk)}
        biases = {"none": None}
        for bn, shp in shapes.items():
            b = rand_input(gen, *shp, lo=-2.0, hi=2.0).detach()
            if bn == "bhqk":
                b[0, 1, 3, 1] = -float("inf")
            w.add("s%d.bias.%s" % (si, bn), b)
            biases[bn] = b
        causal_tri = torch.ones(Lq, Lk, dtype=torch.bool).tril()
        for mi, mn in enumerate(MASKS):
            for bi, bn in enumerate(BIASES):
                for causal in (0, 1):
                    case = ((si * len(MASKS) + mi) * len(BIASES) + bi) * 2 + causal
                    scale = CUSTOM_SCALE if (mi + bi + causal) % 2 == 1 else None
                    qq, kk, vv = (x.detach().clone().requires_grad_(True) for x in (q, k, v))
                    allowed = torch.ones(B, H, Lq, Lk, dtype=torch.bool)
                    if masks[mn] is not None:
                        allowed = allowed & masks[mn]
                    if causal:
                        allowed = allowed & causal_tri
                    fm = torch.zeros(B, H, Lq, Lk, dtype=torch.float64).masked_fill(~allowed, -float("inf"))
                    bias = None
                    if biases[bn] is not None:
                        bias = biases[bn].clone().requires_grad_(True)
                        fm = fm + bias
                    out = F.scaled_dot_product_attention(qq, kk, vv, attn_mask=fm, scale=scale)
                    out.backward(gout)
                    dead = torch.isinf(fm).all(-1)  # fully masked rows
                    assert torch.all(out[dead] == 0), "PyTorch gave non-zero fully masked rows"
                    grads = [qq.grad, kk.grad, vv.grad] + ([bias.grad] if bias is not None else [])
                    for t in [out] + grads:
                        assert not torch.isnan(t).any(), "NaN in case %d" % case
                    w.add("c%d.out" % case, out)
                    w.add("c%d.dq" % case, qq.grad)
                    w.add("c%d.dk" % case, kk.grad)
                    w.add("c%d.dv" % case, vv.grad)
                    if bias is not None:
                        w.add("c%d.dbias" % case, bias.grad)
    w.save()


if __name__ == "__main__":
    main()
