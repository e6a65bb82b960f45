"""bench/session_1207d/tf32_torch.py - PyTorch's side of tf32_probe.c: F.conv2d on [8, 512, 16, 16] f32 with TF32 on
(cudnn.allow_tf32, the default), forward + backward of x, w, b, three steps after two warm-ups, for ncu."""
import sys
import torch
import torch.nn.functional as F
x = torch.randn(8, 512, 16, 16, device="cuda", requires_grad=True)
w = torch.randn(512, 512, 3, 3, device="cuda", requires_grad=True)
b = torch.randn(512, device="cuda", requires_grad=True)
g = torch.randn(8, 512, 16, 16, device="cuda")
for i in range(5):
    if i == 2:
        torch.cuda.synchronize()
        torch.cuda.nvtx.range_push("steps")
    x.grad = w.grad = b.grad = None
    F.conv2d(x, w, b, padding=1).backward(g)
torch.cuda.synchronize()
torch.cuda.nvtx.range_pop()
print("done")
