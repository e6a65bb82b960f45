"""Golden forwards of the five seed blocks (models/*.h) for tests/test_seed_blocks.c.

Each block is built here as the PyTorch module its seed uses, with the same state_dict names:
  vit   HuggingFace transformers' Dinov2Layer itself (seed 001 loads facebook/dinov2 weights)
  mesh  seed 000's HierarchicalAttention (section 2.2.3 of the seed)
  dit   seed 002's DiTBlock in adaLN-Zero mode (EfficientAttention, AdaLNZeroStack, FeedForward), with the
        scene mask excluding the padded keys (the seed's intent)
  unet  guided-diffusion's ResBlock with use_scale_shift_norm (seed 003)
  cmt   mmcv/PETR's decoder layer, post-norm, bool DN mask + AQR float bias (seed 004)
Parameters get random float32 values, the reference runs in float64, and the fixture stores every
state_dict tensor as "<block>.sd.<key>" plus the inputs and the output.

    python3 tests/make_fixtures_seed_blocks.py      (needs torch; vit needs transformers)"""
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

from fixtures_lib import FixtureWriter
from check_mesh_seg_torch import HierarchicalAttention  # seed 000's block, as the seed writes it

torch.manual_seed(0)
GEN = torch.Generator().manual_seed(1234)


def rnd(*shape, lo=-1.0, hi=1.0):
    return (torch.rand(*shape, generator=GEN, dtype=torch.float64) * (hi - lo) + lo).float().double()


def randomize(module):
    """every parameter random (zero inits included), float32-representable"""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() == 1:
                scale_like = "lambda1" in name or (name.endswith(".weight") and (
                    "norm" in name or "in_layers.0" in name or "out_layers.0" in name))
                p.copy_(rnd(*p.shape, lo=0.5, hi=1.5) if scale_like else rnd(*p.shape, lo=-0.3, hi=0.3))
            else:
                b = 1.5 / math.sqrt(p[0].numel())
                p.copy_(rnd(*p.shape, lo=-b, hi=b))
    return module.double().eval()


# transformers >= 5 renames DINOv2's attention weights when it loads a checkpoint (its conversion_mapping.py);
# the checkpoint files on the Hub, transformers 4.x and models/vit.h use the original names
DINOV2_CHECKPOINT_NAMES = [("attention.q_proj", "attention.attention.query"), ("attention.k_proj", "attention.attention.key"),
                           ("attention.v_proj", "attention.attention.value"), ("attention.o_proj", "attention.output.dense")]


def dump_params(fx, block, module, renames=()):
    for k, v in module.state_dict().items():
        for new, old in renames:
            if k.startswith(new + "."):
                k = old + k[len(new):]
        fx.add("%s.sd.%s" % (block, k), v)


# ------------------------------------------------------------------------------------------ 000 mesh
def spaced_confidence(N):
    # the same values as the C test's spaced_confidence()
    return torch.tensor([[0.05 + 0.9 * ((i * 5 + 3) % N) / N] for i in range(N)], dtype=torch.float32).double()


# ------------------------------------------------------------------------------------------- 002 dit
class EfficientAttention(nn.Module):
    def __init__(self, d_model, num_heads, d_head, dropout=0.1):
        super().__init__()
        self.h, self.dh = num_heads, d_head
        inner = num_heads * d_head
        self.to_q = nn.Linear(d_model, inner, bias=False)
        self.to_k = nn.Linear(d_model, inner, bias=False)
        self.to_v = nn.Linear(d_model, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, d_model), nn.Dropout(dropout))

    def forward(self, query, key=None, value=None, mask=None):
        key = query if key is None else key
        value = key if value is None else value
        B, Lq, _ = query.shape
        q = self.to_q(query).view(B, Lq, self.h, self.dh).transpose(1, 2)
        k = self.to_k(key).view(B, key.shape[1], self.h, self.dh).transpose(1, 2)
        v = self.to_v(value).view(B, key.shape[1], self.h, self.dh).transpose(1, 2)
        s = q @ k.transpose(-1, -2) / math.sqrt(self.dh)
        if mask is not None:  # 1 = valid, 0 = padding: padding gets no attention
            s = s.masked_fill(mask[:, None, None, :] == 0, float("-inf"))
        o = (s.softmax(-1) @ v).transpose(1, 2).reshape(B, Lq, self.h * self.dh)
        return self.to_out(o)


class AdaLNZeroStack(nn.Module):
    def __init__(self, d_model, cond_dim, num_layers):
        super().__init__()
        self.d, self.n = d_model, num_layers
        self.layer_norms = nn.ModuleList(nn.LayerNorm(d_model, elementwise_affine=False) for _ in range(num_layers))
        self.modulation = nn.Linear(cond_dim, d_model * 3 * num_layers)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def apply_(self, params, i, x):
        scale, shift, gate = (params[:, i, j].unsqueeze(1) for j in range(3))
        return (1 + scale) * self.layer_norms[i](x) + shift, gate


class DiTBlock(nn.Module):
    def __init__(self, d_model, num_heads, d_head, dropout, cond_dim):
        super().__init__()
        self.self_attention = EfficientAttention(d_model, num_heads, d_head, dropout)
        self.scene_cross_attention = EfficientAttention(d_model, num_heads, d_head, dropout)
        self.text_cross_attention = EfficientAttention(d_model, num_heads, d_head, dropout)
        self.feed_forward = nn.Module()
        self.feed_forward.net = nn.Sequential(nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Dropout(dropout),
                                              nn.Linear(4 * d_model, d_model), nn.Dropout(dropout))
        self.adaln_zero_stack = AdaLNZeroStack(d_model, cond_dim, num_layers=4)

    def forward(self, x, cond, scene, scene_mask, text):
        st = self.adaln_zero_stack
        params = st.modulation(cond).view(cond.shape[0], st.n, 3, st.d)
        xm, g = st.apply_(params, 0, x)
        x = x + g * self.self_attention(xm)
        xm, g = st.apply_(params, 1, x)
        x = x + g * self.scene_cross_attention(xm, scene, scene, mask=scene_mask)
        xm, g = st.apply_(params, 2, x)
        x = x + g * self.text_cross_attention(xm, text, text)
        xm, g = st.apply_(params, 3, x)
        return x + g * self.feed_forward.net(xm)


# ------------------------------------------------------------------------------------------ 003 unet
class ResBlock(nn.Module):
    def __init__(self, channels, emb_channels, dropout, out_channels, groups):
        super().__init__()
        self.in_layers = nn.Sequential(nn.GroupNorm(groups, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_layers = nn.Sequential(nn.GroupNorm(groups, out_channels), nn.SiLU(), nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = nn.Conv2d(channels, out_channels, 1) if out_channels != channels else nn.Identity()

    def forward(self, x, emb):
        h = self.in_layers(x)
        e = self.emb_layers(emb)[..., None, None]
        scale, shift = torch.chunk(e, 2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        h = self.out_layers[1:](h)
        return self.skip_connection(x) + h


# ------------------------------------------------------------------------------------------- 004 cmt
class MMCVAttention(nn.Module):
    def __init__(self, e, h, dropout):
        super().__init__()
        self.attn = nn.MultiheadAttention(e, h, dropout=dropout)


class FFN(nn.Module):
    def __init__(self, e, f, drop):
        super().__init__()
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(e, f), nn.ReLU(), nn.Dropout(drop)), nn.Linear(f, e),
                                    nn.Dropout(drop))


class PETRDecoderLayer(nn.Module):
    def __init__(self, e, h, f, dropout):
        super().__init__()
        self.h = h
        self.attentions = nn.ModuleList([MMCVAttention(e, h, dropout), MMCVAttention(e, h, dropout)])
        self.ffns = nn.ModuleList([FFN(e, f, dropout)])
        self.norms = nn.ModuleList([nn.LayerNorm(e) for _ in range(3)])

    def forward(self, q, k, v, qp, kp, dn_mask, bias, kpm):
        # mmcv is sequence-first
        t = lambda a: a.transpose(0, 1)
        q, k, v, qp, kp = t(q), t(k), t(v), t(qp), t(kp)
        a = self.attentions[0].attn(q + qp, q + qp, q, attn_mask=dn_mask)[0]
        q = self.norms[0](q + a)
        B, Nq, Nk = bias.shape
        b = bias.unsqueeze(1).expand(-1, self.h, -1, -1).reshape(B * self.h, Nq, Nk)
        a = self.attentions[1].attn(q + qp, k + kp, v, attn_mask=b, key_padding_mask=kpm)[0]
        q = self.norms[1](q + a)
        q = self.norms[2](q + self.ffns[0].layers(q))
        return t(q)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    fx = FixtureWriter(os.path.join(here, "fixtures", "seed_blocks.txt"))
    with torch.no_grad():
        # 001
        from transformers.models.dinov2.modeling_dinov2 import Dinov2Config, Dinov2Layer
        cfg = Dinov2Config(hidden_size=16, num_attention_heads=2, mlp_ratio=2, layerscale_value=1.0,
                           layer_norm_eps=1e-6, hidden_act="gelu", attention_probs_dropout_prob=0.0,
                           hidden_dropout_prob=0.0, drop_path_rate=0.0, qkv_bias=True)
        cfg._attn_implementation = "eager"
        vit = randomize(Dinov2Layer(cfg))
        x = rnd(2, 7, 16)
        y = vit(x)
        y = y[0] if isinstance(y, (tuple, list)) else y
        dump_params(fx, "vit", vit, DINOV2_CHECKPOINT_NAMES)
        fx.add("vit.x", x); fx.add("vit.y", y)
        # 000
        mesh = randomize(HierarchicalAttention(16, 2, 4))
        dump_params(fx, "mesh", mesh)
        for n in (9, 3, 8):
            x, c = rnd(n, 16), spaced_confidence(n)
            fx.add("mesh%d.x" % n, x); fx.add("mesh%d.conf" % n, c); fx.add("mesh%d.y" % n, mesh(x, c))
        # 002
        dit = randomize(DiTBlock(16, 2, 8, 0.1, 6))
        dump_params(fx, "dit", dit)
        x, cond, scene, text = rnd(2, 5, 16), rnd(2, 6), rnd(2, 7, 16), rnd(2, 3, 16)
        mask = torch.ones(2, 7, dtype=torch.float64)
        mask[1, 4:] = 0
        fx.add("dit.x", x); fx.add("dit.cond", cond); fx.add("dit.scene", scene); fx.add("dit.scene_mask", mask)
        fx.add("dit.text", text); fx.add("dit.y", dit(x, cond, scene, mask, text))
        # 003
        unet = randomize(ResBlock(8, 6, 0.1, 12, 4))
        dump_params(fx, "unet", unet)
        x, emb = rnd(2, 8, 5, 5), rnd(2, 6)
        fx.add("unet.x", x); fx.add("unet.emb", emb); fx.add("unet.y", unet(x, emb))
        # 004
        cmt = randomize(PETRDecoderLayer(16, 2, 32, 0.1))
        dump_params(fx, "cmt", cmt)
        q, k, v = rnd(2, 6, 16), rnd(2, 9, 16), rnd(2, 9, 16)
        qp, kp, bias = rnd(2, 6, 16, lo=-0.5, hi=0.5), rnd(2, 9, 16, lo=-0.5, hi=0.5), rnd(2, 6, 9)
        dn = torch.tensor([[(i < 3) != (j < 3) for j in range(6)] for i in range(6)])
        kpm = torch.zeros(2, 9, dtype=torch.bool)
        kpm[1, 7:] = True
        for n, t in (("q", q), ("k", k), ("v", v), ("qp", qp), ("kp", kp), ("bias", bias)):
            fx.add("cmt." + n, t)
        fx.add("cmt.y", cmt(q, k, v, qp, kp, dn, bias, kpm))
    fx.save()


if __name__ == "__main__":
    main()
