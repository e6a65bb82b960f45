#!/usr/bin/env python3
"""PyTorch parity check of samples/mesh_seg (seed 000's MemoryEfficientSOTAModel).

Builds the seed's PyTorch model (its code below, copied from the seed as the reference spec, with the
classes' hyper-parameters taken from the config stored in our checkpoint), loads our safetensors
checkpoint into it by state_dict name (strict: every name must match, the optimiser's "optim.*" entries
aside), runs it in eval mode on a mesh's features.npy and compares with the logits our C program wrote:

    build/mesh_seg/mesh_seg infer --config C --ckpt CK.safetensors MESH_DIR --out OUT --logits
    python3 tests/check_mesh_seg_torch.py --ckpt CK.safetensors --mesh MESH_DIR --logits OUT/<mesh>.logits.npy

Prints the max absolute error of the logits and the fraction of faces whose predicted class agrees;
exits 1 when the error exceeds --tol (default 1e-3)."""
import argparse, sys
import numpy as np
import torch
import torch.nn as nn


# ---------------------------------------------------------------- the seed's model (reference spec)
class CompactGroupedEmbedding(nn.Module):
    def __init__(self, partfield_dim=448, confidence_dim=1, coord_dim=9, embed_dim=128):
        super().__init__()
        self.partfield_proj = nn.Sequential(
            nn.Linear(partfield_dim, 192), nn.GELU(), nn.Dropout(0.1), nn.Linear(192, 96), nn.LayerNorm(96))
        self.confidence_proj = nn.Sequential(nn.Linear(confidence_dim, 16), nn.GELU(), nn.LayerNorm(16))
        self.coord_proj = nn.Sequential(nn.Linear(coord_dim, 16), nn.GELU(), nn.LayerNorm(16))
        assert 96 + 16 + 16 == embed_dim
        self.fusion = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.LayerNorm(embed_dim), nn.GELU())

    def forward(self, partfield, confidence, coordinates):
        pf_embed = self.partfield_proj(partfield)
        conf_embed = self.confidence_proj(confidence)
        coord_embed = self.coord_proj(coordinates)
        combined = torch.cat([pf_embed, conf_embed, coord_embed], dim=-1)
        return self.fusion(combined)


class CompactFourPointGeometricEncoding(nn.Module):
    def __init__(self, embed_dim=128):
        super().__init__()
        self.point_encoder = nn.Sequential(nn.Linear(3, 32), nn.GELU(), nn.LayerNorm(32))
        self.geometric_fusion = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.GELU(), nn.LayerNorm(embed_dim))
        self.shape_encoder = nn.Sequential(nn.Linear(4, 16), nn.GELU(), nn.LayerNorm(16))
        self.final_fusion = nn.Sequential(nn.Linear(embed_dim + 16, embed_dim), nn.GELU(), nn.LayerNorm(embed_dim))

    def forward(self, face_coordinates):
        batch_size = face_coordinates.shape[0]
        vertices = face_coordinates.view(batch_size, 3, 3)
        centroid = vertices.mean(dim=1, keepdim=True)
        four_points = torch.cat([vertices, centroid], dim=1)
        point_encodings = []
        for i in range(4):
            point_encodings.append(self.point_encoder(four_points[:, i, :]))
        combined_points = torch.cat(point_encodings, dim=-1)
        geo_features = self.geometric_fusion(combined_points)
        v1, v2, v3 = vertices[:, 0], vertices[:, 1], vertices[:, 2]
        edge1 = v2 - v1
        edge2 = v3 - v1
        cross_product = torch.cross(edge1, edge2, dim=-1)
        area = torch.norm(cross_product, dim=-1, keepdim=True) * 0.5
        normal = cross_product / (torch.norm(cross_product, dim=-1, keepdim=True) + 1e-8)
        shape_features = torch.cat([area, normal], dim=-1)
        shape_enc = self.shape_encoder(shape_features)
        final_encoding = torch.cat([geo_features, shape_enc], dim=-1)
        return self.final_fusion(final_encoding)


class HierarchicalAttention(nn.Module):
    def __init__(self, embed_dim=128, num_heads=8, chunk_size=1024):
        super().__init__()
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.chunk_size = chunk_size
        self.local_attention = nn.MultiheadAttention(embed_dim, num_heads, dropout=0.1, batch_first=True)
        self.global_attention = nn.MultiheadAttention(embed_dim, num_heads, dropout=0.1, batch_first=True)
        self.confidence_gate = nn.Sequential(nn.Linear(1, embed_dim), nn.Sigmoid())
        self.norm1 = nn.LayerNorm(embed_dim)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.norm3 = nn.LayerNorm(embed_dim)
        self.ffn = nn.Sequential(nn.Linear(embed_dim, embed_dim * 2), nn.GELU(), nn.Dropout(0.1),
                                 nn.Linear(embed_dim * 2, embed_dim))

    def forward(self, x, confidence):
        N = x.shape[0]
        conf_gate = self.confidence_gate(confidence)
        x_gated = x * conf_gate
        x = self.norm1(x + x_gated)
        if N > self.chunk_size:
            chunks = torch.split(x, self.chunk_size, dim=0)
            local_outputs = []
            for chunk in chunks:
                chunk_out, _ = self.local_attention(chunk, chunk, chunk)
                local_outputs.append(chunk_out)
            local_out = torch.cat(local_outputs, dim=0)
        else:
            local_out, _ = self.local_attention(x, x, x)
        x = self.norm2(x + local_out)
        if N > self.chunk_size:
            conf_scores = confidence.squeeze()
            _, top_indices = torch.topk(conf_scores, min(self.chunk_size, N), dim=0)
            global_representatives = x[top_indices]
            global_out, _ = self.global_attention(x, global_representatives, global_representatives)
        else:
            global_out, _ = self.global_attention(x, x, x)
        x = self.norm3(x + global_out)
        ffn_out = self.ffn(x)
        x = x + ffn_out
        return x


class MemoryEfficientSOTAModel(nn.Module):
    def __init__(self, input_dim=458, embed_dim=128, num_layers=4, num_heads=8, chunk_size=1024, dropout=0.1):
        super().__init__()
        self.embedding = CompactGroupedEmbedding(partfield_dim=448, confidence_dim=1, coord_dim=9, embed_dim=embed_dim)
        self.pos_encoding = CompactFourPointGeometricEncoding(embed_dim)
        self.layers = nn.ModuleList([HierarchicalAttention(embed_dim, num_heads, chunk_size) for _ in range(num_layers)])
        self.classifier = nn.Sequential(nn.LayerNorm(embed_dim), nn.Linear(embed_dim, 64), nn.GELU(),
                                        nn.Dropout(dropout), nn.Linear(64, 2))
        self.apply(self._init_weights)

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.constant_(m.bias, 0)
        elif isinstance(m, nn.LayerNorm):
            nn.init.constant_(m.bias, 0)
            nn.init.constant_(m.weight, 1.0)

    def forward(self, features):
        partfield = features[:, :448]
        confidence = features[:, 448:449]
        coordinates = features[:, 449:458]
        x = self.embedding(partfield, confidence, coordinates)
        pos_enc = self.pos_encoding(coordinates)
        x = x + pos_enc
        for layer in self.layers:
            x = layer(x, confidence)
        return self.classifier(x)


# ----------------------------------------------------------------------------------------- the check
def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="our safetensors checkpoint (mesh_seg train)")
    ap.add_argument("--mesh", required=True, help="a mesh folder with features.npy")
    ap.add_argument("--logits", required=True, help="the logits our infer wrote (--logits)")
    ap.add_argument("--tol", type=float, default=1e-3)
    args = ap.parse_args()
    import yaml   # here, not at the top: bench/mesh_seg_step_torch.py imports the model classes without them
    from safetensors.torch import load_file
    from safetensors import safe_open

    with safe_open(args.ckpt, "pt") as f:
        meta = f.metadata() or {}
    cfg = yaml.safe_load(meta.get("config", "")) or {}
    mc = cfg.get("model", {})
    torch.manual_seed(0)
    model = MemoryEfficientSOTAModel(embed_dim=mc.get("embed_dim", 128), num_layers=mc.get("num_layers", 4),
                                     num_heads=mc.get("num_heads", 8), chunk_size=mc.get("chunk_size", 1024),
                                     dropout=mc.get("dropout", 0.1))
    sd = {k: v for k, v in load_file(args.ckpt).items() if not k.startswith("optim.")}
    ours, theirs = list(sd.keys()), list(model.state_dict().keys())
    model.load_state_dict(sd, strict=True)   # raises on any missing / unexpected name or shape mismatch
    print(f"loaded {len(sd)} tensors by name into the seed's model (strict); same order as its state_dict: "
          f"{ours == theirs}")
    model.eval()
    feats = torch.from_numpy(np.load(args.mesh + "/features.npy"))
    with torch.no_grad():
        ref = model(feats).numpy()
    got = np.load(args.logits)
    if got.shape != ref.shape:
        print(f"shape mismatch: ours {got.shape}, PyTorch {ref.shape}")
        return 1
    err = np.abs(got - ref).max()
    agree = ((got[:, 1] > got[:, 0]) == (ref[:, 1] > ref[:, 0])).mean()
    print(f"N={feats.shape[0]} faces, layers={mc.get('num_layers', 4)}, heads={mc.get('num_heads', 8)}, "
          f"chunk={mc.get('chunk_size', 1024)}: max |logits - torch| = {err:.3e} "
          f"(|torch| max {np.abs(ref).max():.3f}), argmax agreement {agree * 100:.3f}%")
    return 0 if err <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
