# samples/part_location/twin_diag.py - a PyTorch twin of the tiny part_location model (models/part_location.h
# with configs/part_location_tiny.yaml: DINOv2-style encoder hidden 96, 4 layers, 112 px, pooling, one
# cross-attention layer, MLP head, weighted L1), used to find why translation stayed at the predicted mean
# (samples/part_location/README.md). Diagnosis only: no jitter, a random 80/20 model split of its own, images
# held in memory (at most --maxm models). The same experiments were then confirmed with part_location itself.
#   python3 samples/part_location/twin_diag.py --data build/part_location/diag --steps 400 --pos 1.0
# --pos S: position-embedding init std (DINOv2: 0.02; < 0: 2-D sin-cos times -S); --init: encoder linears'
# std; --ds: pooled grid; --tie G: k_proj = q_proj, both x G at init; --tnorm 1: targets standardised;
# --loss l1|mse|huber; --model cnn: a small CNN baseline on the two images instead.
import torch, torch.nn as nn, torch.nn.functional as F, numpy as np, glob, json, os, sys, math, time, argparse
ap=argparse.ArgumentParser()
ap.add_argument('--data'); ap.add_argument('--steps',type=int,default=400); ap.add_argument('--lr',type=float,default=1e-3)
ap.add_argument('--init',type=float,default=0.02); ap.add_argument('--pos',type=float,default=0.02)
ap.add_argument('--model',default='partloc'); ap.add_argument('--loss',default='l1'); ap.add_argument('--tnorm',type=int,default=0)
ap.add_argument('--bs',type=int,default=16); ap.add_argument('--layers',type=int,default=4); ap.add_argument('--D',type=int,default=96)
ap.add_argument('--ds',type=int,default=4); ap.add_argument('--ls',type=float,default=1.0); ap.add_argument('--warm',type=int,default=100); ap.add_argument('--tie',type=float,default=0); ap.add_argument('--maxm',type=int,default=1000); ap.add_argument('--cache',default='/tmp')
a=ap.parse_args()
torch.manual_seed(0); torch.set_num_threads(2)
M=np.array([0.485,0.456,0.406],np.float32); S=np.array([0.229,0.224,0.225],np.float32)
from PIL import Image
def load(p): return ((np.asarray(Image.open(p).convert('RGB'),np.float32)/255-M)/S).transpose(2,0,1)
cache=f'{a.cache}/twin_{os.path.basename(a.data.rstrip("/"))}_{a.maxm}.npz'
if os.path.exists(cache):
    z=np.load(cache); W,P,T,mod=z['W'],z['P'],z['T'],z['mod']
else:
    W=[];P=[];T=[];mod=[]
    for mi,d in enumerate(sorted(glob.glob(a.data+"/*/"))[:a.maxm]):
        m=os.path.basename(d.rstrip('/')); w=load(f'{d}/{m}-whole.png')
        for j in sorted(glob.glob(d+'/*.json')):
            L=json.load(open(j)); W.append(w); P.append(load(j[:-5]+'.png')); T.append(L['translation']+[L['scale'][0]]); mod.append(mi)
    W=np.stack(W);P=np.stack(P);T=np.array(T,np.float32);mod=np.array(mod); np.savez(cache,W=W,P=P,T=T,mod=mod)
nm=mod.max()+1; rng=np.random.RandomState(42); perm=rng.permutation(nm); tr_m=set(perm[:int(nm*.8)])
tr=np.array([m in tr_m for m in mod]); te=~tr
W=torch.tensor(W);P=torch.tensor(P);T=torch.tensor(T)
mu=T[tr].mean(0); sd=T[tr].std(0)
print('N',len(T),'train',tr.sum(),'mean',mu.tolist(),'std',sd.tolist(),'mean-pred err',(T[te,:3]-mu[:3]).norm(dim=1).mean().item())
def tn(x): nn.init.trunc_normal_(x,0,a.init,-2,2)
class Block(nn.Module):
    def __init__(s,D,H):
        super().__init__(); s.H=H; s.n1=nn.LayerNorm(D,eps=1e-6); s.qkv=nn.Linear(D,3*D); s.o=nn.Linear(D,D); s.n2=nn.LayerNorm(D,eps=1e-6)
        s.f1=nn.Linear(D,4*D); s.f2=nn.Linear(4*D,D); s.l1=nn.Parameter(torch.full((D,),a.ls)); s.l2=nn.Parameter(torch.full((D,),a.ls))
        for l in [s.qkv,s.o,s.f1,s.f2]: tn(l.weight); nn.init.zeros_(l.bias)
    def forward(s,x):
        B,L,D=x.shape; q,k,v=s.qkv(s.n1(x)).view(B,L,3,s.H,D//s.H).permute(2,0,3,1,4)
        x=x+s.l1*s.o(F.scaled_dot_product_attention(q,k,v).transpose(1,2).reshape(B,L,D))
        return x+s.l2*s.f2(F.gelu(s.f1(s.n2(x))))
class Enc(nn.Module):
    def __init__(s,D,L,H,g=8):
        super().__init__(); s.proj=nn.Conv2d(3,D,14,14); tn(s.proj.weight); nn.init.zeros_(s.proj.bias)
        s.cls=nn.Parameter(torch.zeros(1,1,D)); nn.init.trunc_normal_(s.cls,0,0.02)
        s.pos=nn.Parameter(torch.zeros(1,1+g*g,D)); nn.init.trunc_normal_(s.pos,0,a.pos,-2*a.pos,2*a.pos) if a.pos>0 else None
        if a.pos<0:
            q=D//4; pe=torch.zeros(1+g*g,D); w=10000.0**(-torch.arange(q)/q)
            for y in range(g):
                for x in range(g):
                    r=pe[1+y*g+x]; r[:q]=torch.sin(y*w); r[q:2*q]=torch.cos(y*w); r[2*q:3*q]=torch.sin(x*w); r[3*q:]=torch.cos(x*w)
            s.pos.data[0]=pe*(-a.pos)
        s.blocks=nn.ModuleList([Block(D,H) for _ in range(L)]); s.n=nn.LayerNorm(D,eps=1e-6)
    def forward(s,x):
        x=s.proj(x).flatten(2).transpose(1,2); x=torch.cat([s.cls.expand(len(x),-1,-1),x],1)+s.pos
        for b in s.blocks: x=b(x)
        return s.n(x)
class XA(nn.Module):
    def __init__(s,D,H):
        super().__init__(); s.H=H; s.nq=nn.LayerNorm(D,eps=1e-6); s.nkv=nn.LayerNorm(D,eps=1e-6); s.q=nn.Linear(D,D); s.k=nn.Linear(D,D); s.v=nn.Linear(D,D); s.o=nn.Linear(D,D)
        if a.tie: s.k.weight.data.copy_(s.q.weight.data*a.tie); s.q.weight.data*=a.tie
        s.nm=nn.LayerNorm(D,eps=1e-6); s.mlp=nn.Sequential(nn.Linear(D,4*D),nn.GELU(),nn.Linear(4*D,D))
    def forward(s,p,w):
        B,Lq,D=p.shape; Lk=w.shape[1]; kv=s.nkv(w)
        q=s.q(s.nq(p)).view(B,Lq,s.H,-1).transpose(1,2); k=s.k(kv).view(B,Lk,s.H,-1).transpose(1,2); v=s.v(kv).view(B,Lk,s.H,-1).transpose(1,2)
        p=p+s.o(F.scaled_dot_product_attention(q,k,v).transpose(1,2).reshape(B,Lq,D)); return p+s.mlp(s.nm(p))
class PL(nn.Module):
    def __init__(s,D=96,L=4,H=4):
        super().__init__(); s.enc=Enc(D,L,H); s.xa=XA(D,H); s.hn=nn.LayerNorm(3*D,eps=1e-6); s.head=nn.Sequential(nn.Linear(3*D,256),nn.GELU(),nn.Linear(256,4))
    def sp(s,t):
        c=t[:,0]; g=t[:,1:].transpose(1,2).reshape(len(t),-1,8,8); g=F.adaptive_avg_pool2d(g,a.ds).flatten(2).transpose(1,2); return c,g
    def forward(s,w,p):
        cw,pw=s.sp(s.enc(w)); cp,pp=s.sp(s.enc(p))
        pw=torch.cat([cw[:,None],pw],1); pp=torch.cat([cp[:,None],pp],1); pp=s.xa(pp,pw)
        return s.head(s.hn(torch.cat([pp[:,0],cw,pp[:,1:].mean(1)],1)))
class CNN(nn.Module):   # dead-simple baseline on both images
    def __init__(s):
        super().__init__()
        def f(): return nn.Sequential(nn.Conv2d(3,32,3,2,1),nn.ReLU(),nn.Conv2d(32,64,3,2,1),nn.ReLU(),nn.Conv2d(64,64,3,2,1),nn.ReLU(),nn.Conv2d(64,64,3,2,1),nn.ReLU(),nn.Flatten())
        s.fw=f(); s.fp=f(); s.h=nn.Sequential(nn.Linear(2*64*49,256),nn.ReLU(),nn.Linear(256,4))
    def forward(s,w,p): return s.h(torch.cat([s.fw(w),s.fp(p)],1))
net=PL(a.D,a.layers) if a.model=='partloc' else CNN()
dec=[p for n,p in net.named_parameters() if p.ndim>=2]; nod=[p for n,p in net.named_parameters() if p.ndim<2]
opt=torch.optim.AdamW([{'params':dec,'weight_decay':0.05},{'params':nod,'weight_decay':0}],lr=a.lr)
sch=lambda s: (s+1)/a.warm if s<a.warm else 1e-2+(1-1e-2)*0.5*(1+math.cos(math.pi*(s-a.warm)/max(1,a.steps-a.warm)))
tri=np.where(tr)[0]; tei=np.where(te)[0]; t0=time.time()
def norm(t): return (t-mu)/sd if a.tnorm else t
def den(y): return y*sd+mu if a.tnorm else y
def ev(idx):
    net.eval(); e=[];r=[]
    with torch.no_grad():
        for i in range(0,len(idx),64):
            j=idx[i:i+64]; y=den(net(W[j],P[j])); e.append((y[:,:3]-T[j,:3]).norm(dim=1)); r.append(((y[:,3]-T[j,3]).abs()/T[j,3]))
    net.train(); return torch.cat(e).mean().item(), torch.cat(r).mean().item()
for st in range(a.steps):
    for g in opt.param_groups: g['lr']=a.lr*sch(st)
    j=tri[np.random.randint(0,len(tri),a.bs)]
    y=net(W[j],P[j]); t=norm(T[j])
    if a.loss=='l1': loss=(y[:,:3]-t[:,:3]).abs().mean()+0.5*(y[:,3]-t[:,3]).abs().mean()
    else: loss=F.smooth_l1_loss(y,t) if a.loss=='huber' else F.mse_loss(y,t)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(net.parameters(),1.0); opt.step()
    if (st+1)%100==0 or st==a.steps-1: print(f'step {st+1} loss {loss.item():.4f} train {ev(tri[:300])} test {ev(tei)} {time.time()-t0:.0f}s',flush=True)
