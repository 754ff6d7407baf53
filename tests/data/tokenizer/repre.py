#!/usr/bin/env python3
"""repre.py: copies a vocab-only GGUF file with tokenizer.ggml.pre replaced (for gen_pre_ids.mjs).

Usage: python3 repre.py SRC.gguf DST.gguf PRE"""
import struct
import sys
def rd(f,fmt):
    s=struct.calcsize(fmt); return struct.unpack('<'+fmt,f.read(s))[0]
SZ={0:1,1:1,2:2,3:2,4:4,5:4,6:4,7:1,10:8,11:8,12:8}
def skip_val(f,t):
    if t==8: n=rd(f,'Q'); f.read(n)
    elif t==9:
        et=rd(f,'I'); n=rd(f,'Q')
        if et==8:
            for _ in range(n): m=rd(f,'Q'); f.read(m)
        else: f.read(SZ[et]*n)
    else: f.read(SZ[t])
src,dst,pre=sys.argv[1:4]
f=open(src,'rb'); magic=f.read(4); ver=rd(f,'I'); nt=rd(f,'Q'); nkv=rd(f,'Q'); assert nt==0
out=[magic,struct.pack('<IQQ',ver,0,nkv)]
for _ in range(nkv):
    kl=rd(f,'Q'); key=f.read(kl); t=rd(f,'I'); start=f.tell(); skip_val(f,t); end=f.tell()
    f.seek(start); raw=f.read(end-start)
    if key==b'tokenizer.ggml.pre':
        b=pre.encode(); raw=struct.pack('<Q',len(b))+b
    out.append(struct.pack('<Q',kl)+key+struct.pack('<I',t)+raw)
data=b''.join(out); data+=b'\0'*((-len(data))%32)
open(dst,'wb').write(data)
