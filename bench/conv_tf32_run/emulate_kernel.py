"""bench/conv_tf32_run/emulate_kernel.py - a CPU check (numpy, no GPU) of the index math of nn_cuda.cu's
conv_cu::k_conv_igemm for f32 operands (DT NN_F32 / F32X3): the loaders (cp.async targets, swizzles, zero fill,
tap / pixel stepping), ldmatrix's lane-to-row mapping on 32-bit data, the f32 WGRAD 32-bit fragment offsets
(xo), the m16n8k8 TF32 fragment layouts of A, B and C and the partials' epilogue, transcribed line by line and
run in float64 (no rounding) against direct convolutions for FPROP, DGRAD and WGRAD (K split in two ranges);
then the shared-memory bank pattern of the fragment loads. Written while the device was unavailable
(2026-12-06): all cases agree to ~1e-14 and no load has a bank conflict. Run: python3 emulate_kernel.py"""
import numpy as np
BM=BN=128; CH=4; BK=16; THREADS=256; TILE=BM*BK
def swz_kc(row, chunk): return row*4*CH + (chunk ^ ((row>>1)&3))*CH
def swz_m32(krow, m): return krow*BM + (((m>>2) ^ ((krow&3)<<1))<<2) + (m&3)

def ldsm_x4(smem, addr_of_lane):
    # addr_of_lane(l): element offset of the row lane l supplies; returns r[t][j]
    r=np.zeros((32,4),np.float64)
    for t in range(32):
        for j in range(4):
            r[t,j]=smem[addr_of_lane(8*j+(t>>2)) + (t&3)]
    return r

def mma(acc, a, b0, b1):
    # acc[32][4], a[32][4], b0[32], b1[32]: m16n8k8 tf32 layouts
    A=np.zeros((16,8)); B=np.zeros((8,8))
    for t in range(32):
        g,t4=t>>2,t&3
        A[g,t4]=a[t,0]; A[g+8,t4]=a[t,1]; A[g,t4+4]=a[t,2]; A[g+8,t4+4]=a[t,3]
        B[t4,g]=b0[t]; B[t4+4,g]=b1[t]
    C=A@B
    for t in range(32):
        g,t4=t>>2,t&3
        acc[t,0]+=C[g,2*t4]; acc[t,1]+=C[g,2*t4+1]; acc[t,2]+=C[g+8,2*t4]; acc[t,3]+=C[g+8,2*t4+1]

def run_block(MODE, p, pa, pb, m0, n0, kbeg, kend):
    ntiles=(kend-kbeg+BK-1)//BK
    acc=np.zeros((8,4,4,32,4))
    # loader state
    st=[dict() for _ in range(THREADS)]
    for tid in range(THREADS):
        s=st[tid]
        if MODE!='W':
            s['a_row']=[];s['a_ok']=[];s['b_ok']=[];s['b_img']=[];s['b_y']=[];s['b_x']=[]
            for r in range(2):
                row=(tid>>2)+r*64; m=m0+row; n=n0+row
                ok=m<p['M']; s['a_ok'].append(ok); s['a_row'].append((m if ok else 0)*p['K']+(tid&3)*CH)
                bok=n<p['N']; s['b_ok'].append(bok); nn=n if bok else 0
                img=nn//p['plane']; q=nn-img*p['plane']; y=q//p['ow']; x=q-y*p['ow']
                s['b_img'].append(img*p['SH']*p['SW'])
                if MODE=='F': s['b_y'].append(y*p['sh']-p['ph']); s['b_x'].append(x*p['sw']-p['pw'])
                else: s['b_y'].append(y+p['ph']); s['b_x'].append(x+p['pw'])
            tap=kbeg//p['CS']; s['ld_c']=kbeg-tap*p['CS']; s['ld_i']=tap//p['kw']; s['ld_j']=tap-s['ld_i']*p['kw']
        else:
            MCH=BM//CH; KR=THREADS//MCH
            n=n0+(tid%MCH)*CH; tap=n//p['CS']; s['w_nok']=n<p['N']
            s['w_c']=n-tap*p['CS']; s['w_i']=tap//p['kw']; s['w_j']=tap-s['w_i']*p['kw']
            plane=p['Ho']*p['Wo']; s['b_img']=[];s['b_y']=[];s['b_x']=[]
            for r in range(2):
                k=kbeg+tid//MCH+r*KR; img=k//plane; q=k-img*plane
                s['b_img'].append(img); s['b_y'].append(q//p['Wo']); s['b_x'].append(q-(q//p['Wo'])*p['Wo'])
        s['ld_k']=kbeg
    for kt in range(ntiles):
        sA=np.full(TILE,np.nan); sB=np.full(TILE,np.nan)
        for tid in range(THREADS):
            s=st[tid]
            if MODE!='W':
                cc=s['ld_c']+(tid&3)*CH
                for r in range(2):
                    row=(tid>>2)+r*64; o=swz_kc(row,tid&3)
                    sA[o:o+4]=pa[s['a_row'][r]+s['ld_k']:s['a_row'][r]+s['ld_k']+4] if s['a_ok'][r] else 0
                    ok=s['b_ok'][r]
                    if MODE=='F': sy=s['b_y'][r]+s['ld_i']*p['dh']; sx=s['b_x'][r]+s['ld_j']*p['dw']
                    else:
                        sy=s['b_y'][r]-s['ld_i']*p['dh']; sx=s['b_x'][r]-s['ld_j']*p['dw']
                        if p['sh']!=1 or p['sw']!=1:
                            ok=ok and sy>=0 and sx>=0 and sy%p['sh']==0 and sx%p['sw']==0
                            sy//=p['sh']; sx//=p['sw']  # C division truncates; only used when ok (>=0)
                    ok=ok and 0<=sy<p['SH'] and 0<=sx<p['SW']
                    if ok:
                        base=(s['b_img'][r]+sy*p['SW']+sx)*p['CS']+cc; sB[o:o+4]=pb[base:base+4]
                    else: sB[o:o+4]=0
                s['ld_k']+=BK; s['ld_c']+=BK
                if s['ld_c']>=p['CS']:
                    s['ld_c']=0; s['ld_j']+=1
                    if s['ld_j']==p['kw']: s['ld_j']=0; s['ld_i']+=1
            else:
                MCH=BM//CH; KR=THREADS//MCH
                for r in range(2):
                    krow=tid//MCH+r*KR; k=s['ld_k']+krow; ch=tid%MCH
                    so=swz_m32(krow,ch*CH); kok=k<kend; mm=m0+ch*CH; aok=kok and mm<p['M']
                    sA[so:so+4]=pa[k*p['M']+mm:k*p['M']+mm+4] if aok else 0
                    sy=s['b_y'][r]*p['sh']-p['ph']+s['w_i']*p['dh']; sx=s['b_x'][r]*p['sw']-p['pw']+s['w_j']*p['dw']
                    ok=kok and s['w_nok'] and 0<=sy<p['SH'] and 0<=sx<p['SW']
                    if ok:
                        base=((s['b_img'][r]*p['SH']+sy)*p['SW']+sx)*p['CS']+s['w_c']; sB[so:so+4]=pb[base:base+4]
                    else: sB[so:so+4]=0
                    s['b_x'][r]+=BK
                    while s['b_x'][r]>=p['Wo']:
                        s['b_x'][r]-=p['Wo']; s['b_y'][r]+=1
                        if s['b_y'][r]==p['Ho']: s['b_y'][r]=0; s['b_img'][r]+=1
                s['ld_k']+=BK
        assert not np.isnan(sA).any() and not np.isnan(sB).any(), "unwritten smem"
        for warp in range(8):
            wm,wn=warp>>2,warp&3
            for ks in range(2):
                bf=np.zeros((4,32,2))
                if MODE!='W':
                    for nj in range(2):
                        r=ldsm_x4(sB, lambda l: swz_kc(wn*32+nj*16+(l&7)+((l>>4)<<3), ks*2+((l>>3)&1)))
                        bf[2*nj,:,0]=r[:,0]; bf[2*nj,:,1]=r[:,1]; bf[2*nj+1,:,0]=r[:,2]; bf[2*nj+1,:,1]=r[:,3]
                else:
                    for t in range(32):
                        g,t4=t>>2,t&3; xo=[swz_m32(t4,8*q+g) for q in range(4)]
                        base=ks*8*BM+wn*32
                        for ni in range(4): bf[ni,t,0]=sB[base+xo[ni]]; bf[ni,t,1]=sB[base+xo[ni]+4*BM]
                for mi in range(4):
                    if MODE!='W':
                        a=ldsm_x4(sA, lambda l: swz_kc(wm*64+mi*16+(l&15), ks*2+(l>>4)))
                    else:
                        a=np.zeros((32,4))
                        for t in range(32):
                            g,t4=t>>2,t&3; xo=[swz_m32(t4,8*q+g) for q in range(4)]
                            base=ks*8*BM+wm*64+(mi>>1)*32
                            a[t,0]=sA[base+xo[2*(mi&1)]]; a[t,1]=sA[base+xo[2*(mi&1)+1]]
                            a[t,2]=sA[base+xo[2*(mi&1)]+4*BM]; a[t,3]=sA[base+xo[2*(mi&1)+1]+4*BM]
                    for ni in range(4): mma(acc[warp,mi,ni], a, bf[ni,:,0], bf[ni,:,1])
    out=np.full((p['M'],p['N']),np.nan)
    for warp in range(8):
        wm,wn=warp>>2,warp&3
        for t in range(32):
            g,t4=t>>2,t&3
            for mi in range(4):
                for ni in range(4):
                    n=n0+wn*32+ni*8+2*t4
                    for h in range(2):
                        m=m0+wm*64+mi*16+g+h*8
                        if m<p['M'] and n<p['N']:
                            out[m,n]=acc[warp,mi,ni,t,2*h]
                            if n+1<p['N']: out[m,n+1]=acc[warp,mi,ni,t,2*h+1]
    return out

def conv_ref(x, w, st, pd, dl):
    N,C,H,W=x.shape; O,_,kh,kw=w.shape
    Ho=(H+2*pd[0]-dl[0]*(kh-1)-1)//st[0]+1; Wo=(W+2*pd[1]-dl[1]*(kw-1)-1)//st[1]+1
    y=np.zeros((N,O,Ho,Wo))
    for i in range(kh):
        for j in range(kw):
            for oy in range(Ho):
                for ox in range(Wo):
                    iy=oy*st[0]-pd[0]+i*dl[0]; ix=ox*st[1]-pd[1]+j*dl[1]
                    if 0<=iy<H and 0<=ix<W: y[:,:,oy,ox]+=x[:,:,iy,ix]@w[:,:,i,j].T
    return y

rng=np.random.default_rng(1)
def test(N,C,H,W,O,kh,kw,st,pd,dl):
    x=rng.uniform(-1,1,(N,C,H,W)); w=rng.uniform(-1,1,(O,C,kh,kw))
    y=conv_ref(x,w,st,pd,dl); Ho,Wo=y.shape[2:]
    xn=x.transpose(0,2,3,1).reshape(-1); kk=kh*kw
    # FPROP: A = w as [O][kh][kw][C]
    wa=w.transpose(0,2,3,1).reshape(-1)
    p=dict(M=O,N=N*Ho*Wo,K=kk*C,plane=Ho*Wo,ow=Wo,SH=H,SW=W,CS=C,kw=kw,sh=st[0],sw=st[1],ph=pd[0],pw=pd[1],dh=dl[0],dw=dl[1],Ho=Ho,Wo=Wo)
    out=np.full((p['M'],p['N']),np.nan)
    for m0 in range(0,p['M'],BM):
        for n0 in range(0,p['N'],BN):
            o=run_block('F',p,wa,xn,m0,n0,0,p['K']); msk=~np.isnan(o); out[msk]=o[msk]
    yr=y.transpose(1,0,2,3).reshape(O,-1)
    print("FPROP", (N,C,H,W,O,kh,kw,st,pd,dl), "max err", np.abs(out-yr).max())
    # WGRAD: dy random, A = dy_nhwc [P][O], B = x_nhwc; out [O][kk*C]
    dy=rng.uniform(-1,1,(N,O,Ho,Wo)); dyn=dy.transpose(0,2,3,1).reshape(-1)
    gw=np.zeros((O,C,kh,kw))
    for i in range(kh):
        for j in range(kw):
            for oy in range(Ho):
                for ox in range(Wo):
                    iy=oy*st[0]-pd[0]+i*dl[0]; ix=ox*st[1]-pd[1]+j*dl[1]
                    if 0<=iy<H and 0<=ix<W: gw[:,:,i,j]+=dy[:,:,oy,ox].T@x[:,:,iy,ix]
    P=N*Ho*Wo
    p2=dict(p); p2.update(M=O,N=kk*C,K=P)
    tot=np.zeros((O,kk*C))
    split=32  # two splits of K to exercise kbeg
    for kb in range(0,P,split):
        out=np.full((O,kk*C),np.nan)
        for m0 in range(0,O,BM):
            for n0 in range(0,kk*C,BN):
                o=run_block('W',p2,dyn,xn,m0,n0,kb,min(P,kb+split)); msk=~np.isnan(o); out[msk]=o[msk]
        tot+=out
    gwr=gw.transpose(0,2,3,1).reshape(O,-1)
    print("WGRAD max err", np.abs(tot-gwr).max())
    # DGRAD: A = w as [C][kh][kw][O], B = dy_nhwc; out [C][N*H*W]
    wd=w.transpose(1,2,3,0).reshape(-1)
    p3=dict(M=C,N=N*H*W,K=kk*O,plane=H*W,ow=W,SH=Ho,SW=Wo,CS=O,kw=kw,sh=st[0],sw=st[1],ph=pd[0],pw=pd[1],dh=dl[0],dw=dl[1],Ho=Ho,Wo=Wo)
    out=np.full((C,N*H*W),np.nan)
    for m0 in range(0,C,BM):
        for n0 in range(0,N*H*W,BN):
            o=run_block('D',p3,wd,dyn,m0,n0,0,p3['K']); msk=~np.isnan(o); out[msk]=o[msk]
    gx=np.zeros((N,C,H,W))
    for i in range(kh):
        for j in range(kw):
            for oy in range(Ho):
                for ox in range(Wo):
                    iy=oy*st[0]-pd[0]+i*dl[0]; ix=ox*st[1]-pd[1]+j*dl[1]
                    if 0<=iy<H and 0<=ix<W: gx[:,:,iy,ix]+=dy[:,:,oy,ox]@w[:,:,i,j]
    print("DGRAD max err", np.abs(out-gx.transpose(1,0,2,3).reshape(C,-1)).max())

test(2,16,5,6,16,3,3,(1,1),(1,1),(1,1))
test(1,32,6,5,16,3,2,(2,1),(1,0),(1,2))
test(2,16,7,9,32,2,3,(2,2),(1,1),(1,1))
test(1,144,4,5,144,1,1,(1,1),(0,0),(1,1))
test(3,16,11,9,16,3,3,(1,1),(2,2),(2,2))

# bank pattern: every 32-bit fragment load of f32 WGRAD hits 32 distinct banks; each 8-lane phase of ldmatrix
# (K-contiguous tiles) reads 8 distinct 16-byte bank groups
bad = 0
for ks in range(2):
    for wm in range(2):
        for mi in range(4):
            for e in range(4):
                q = 2 * (mi & 1) + (e & 1)
                banks = {(ks * 8 * BM + wm * 64 + (mi >> 1) * 32 + swz_m32(t & 3, 8 * q + (t >> 2)) + (4 * BM if e >= 2 else 0)) % 32
                         for t in range(32)}
                bad += len(banks) != 32
    for wn in range(4):
        for ni in range(4):
            for e in range(2):
                bad += len({(ks * 8 * BM + wn * 32 + swz_m32(t & 3, 8 * ni + (t >> 2)) + 4 * BM * e) % 32 for t in range(32)}) != 32
    for base in range(0, 128, 16):
        for grp in range(4):
            bad += len({(swz_kc(base + (l & 15), ks * 2 + (l >> 4)) // 4) % 8 for l in range(8 * grp, 8 * grp + 8)}) != 8
print("fragment loads with bank conflicts:", bad)
