#!/usr/bin/env python3
"""forward_f64.py: an independent float64 reference forward pass, for checking nuri where no
llama.cpp implementation exists (hyperclovax: Granite's scales with Peri-LN norms).

Written from the architectures' descriptions, not from nuri's C code: plain numpy, no rounding
anywhere (no F16 KV cache, no 8-bit activations), one token at a time over a growing cache.
Reads F32 / F16 / BF16 GGUF files only.

Usage: forward_f64.py MODEL.gguf 1,2,3 [TOP]
Prints, like `nuri eval`, one JSON line per position: {"pos": i, "top": [[id, logprob], ...]}.
"""
import json
import struct
import sys

import numpy as np


def read_gguf(path):
    buf = open(path, "rb").read()
    off = 0

    def take(fmt):
        nonlocal off
        v = struct.unpack_from("<" + fmt, buf, off)
        off += struct.calcsize(fmt)
        return v[0]

    def string():
        nonlocal off
        n = take("Q")
        s = buf[off:off + n].decode("utf-8", "replace")
        off += n
        return s

    scalar = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}

    def value(t):
        if t == 8:
            return string()
        if t == 9:
            et, n = take("I"), take("Q")
            return [value(et) for _ in range(n)]
        return take(scalar[t])

    if buf[:4] != b"GGUF":
        raise SystemExit("not a GGUF file")
    off = 4
    take("I")
    n_tensors, n_kv = take("Q"), take("Q")
    meta = {}
    for _ in range(n_kv):
        k = string()
        meta[k] = value(take("I"))
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = [take("Q") for _ in range(take("I"))]
        infos.append((name, dims, take("I"), take("Q")))
    align = meta.get("general.alignment", 32)
    base = (off + align - 1) // align * align
    tensors = {}
    for name, dims, t, o in infos:
        count = int(np.prod(dims))
        p = base + o
        if t == 0:
            a = np.frombuffer(buf, np.float32, count, p)
        elif t == 1:
            a = np.frombuffer(buf, np.float16, count, p).astype(np.float32)
        elif t == 30:
            a = (np.frombuffer(buf, np.uint16, count, p).astype(np.uint32) << 16).view(np.float32)
        else:
            raise SystemExit(f"tensor {name}: type {t} is not F32/F16/BF16")
        tensors[name] = a.reshape(dims[::-1]).astype(np.float64)  # rows = outputs
    return meta, tensors


def rms_norm(x, w, eps):
    return x / np.sqrt(np.mean(x * x) + eps) * w


def rope(v, pos, base, neox, factors):
    d = v.shape[-1]
    half = d // 2
    inv = base ** (-np.arange(half) * 2.0 / d)
    if factors is not None:
        inv = inv / factors
    ang = pos * inv
    c, s = np.cos(ang), np.sin(ang)
    out = v.copy()
    if neox:
        a, b = v[..., :half], v[..., half:]
        out[..., :half], out[..., half:] = a * c - b * s, a * s + b * c
    else:
        a, b = v[..., 0::2], v[..., 1::2]
        out[..., 0::2], out[..., 1::2] = a * c - b * s, a * s + b * c
    return out


def main():
    path, toks = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    meta, T = read_gguf(path)
    arch = meta["general.architecture"]
    g = lambda k, d=None: meta.get(f"{arch}.{k}", d)
    n_layer, n_head = g("block_count"), g("attention.head_count")
    n_kv = g("attention.head_count_kv", n_head)
    hd = g("attention.key_length", g("embedding_length") // n_head)
    eps = g("attention.layer_norm_rms_epsilon", 1e-5)
    base = g("rope.freq_base", 10000.0)
    neox = arch in ("qwen2", "qwen3", "exaone", "exaone4")
    pre_norm = arch != "exaone4"
    post_norm = arch in ("exaone4", "hyperclovax")
    scaled = arch in ("granite", "hyperclovax")
    emb_s = g("embedding_scale", 1.0) if scaled else 1.0
    res_s = g("residual_scale", 1.0) if scaled else 1.0
    att_s = (g("attention.scale", 0.0) if scaled else 0.0) or 1.0 / np.sqrt(hd)
    logit_s = g("logit_scale", 1.0) if scaled else 1.0
    n_swa = g("attention.sliding_window", 0) if arch == "exaone4" else 0
    pattern = g("attention.sliding_window_pattern") if n_swa else None
    swa = [bool(pattern[i]) for i in range(n_layer)] if pattern else [False] * n_layer
    factors = T.get("rope_freqs.weight")
    emb = T["token_embd.weight"]
    out_w = T.get("output.weight", emb)
    L = lambda i, n: T.get(f"blk.{i}.{n}")
    kcache = [[] for _ in range(n_layer)]
    vcache = [[] for _ in range(n_layer)]
    for pos, tok in enumerate(toks):
        x = emb[tok] * emb_s
        for i in range(n_layer):
            h = rms_norm(x, L(i, "attn_norm.weight"), eps) if pre_norm else x
            q = L(i, "attn_q.weight") @ h
            k = L(i, "attn_k.weight") @ h
            v = L(i, "attn_v.weight") @ h
            if L(i, "attn_q.bias") is not None:
                q, k, v = q + L(i, "attn_q.bias"), k + L(i, "attn_k.bias"), v + L(i, "attn_v.bias")
            q, k, v = q.reshape(n_head, hd), k.reshape(n_kv, hd), v.reshape(n_kv, hd)
            if L(i, "attn_q_norm.weight") is not None:
                q = np.stack([rms_norm(r, L(i, "attn_q_norm.weight"), eps) for r in q])
                k = np.stack([rms_norm(r, L(i, "attn_k_norm.weight"), eps) for r in k])
            if not (arch == "exaone4" and any(swa) and not swa[i]):  # exaone4 global layers: NoPE
                q, k = rope(q, pos, base, neox, factors), rope(k, pos, base, neox, factors)
            kcache[i].append(k)
            vcache[i].append(v)
            K, V = np.stack(kcache[i]), np.stack(vcache[i])  # (n_pos, n_kv, hd)
            first = max(0, pos - n_swa + 1) if swa[i] else 0
            att = np.zeros((n_head, hd))
            for hh in range(n_head):
                kh = hh // (n_head // n_kv)
                sc = K[first:, kh] @ q[hh] * att_s
                p = np.exp(sc - sc.max())
                att[hh] = (p / p.sum()) @ V[first:, kh]
            a = L(i, "attn_output.weight") @ att.reshape(-1)
            if L(i, "attn_output.bias") is not None:
                a = a + L(i, "attn_output.bias")
            if post_norm:
                a = rms_norm(a, L(i, "post_attention_norm.weight"), eps)
            x = x + a * res_s
            h = rms_norm(x, L(i, "ffn_norm.weight"), eps) if pre_norm else x
            gate, up = L(i, "ffn_gate.weight") @ h, L(i, "ffn_up.weight") @ h
            f = L(i, "ffn_down.weight") @ (gate / (1 + np.exp(-gate)) * up)
            if post_norm:
                f = rms_norm(f, L(i, "post_ffw_norm.weight"), eps)
            x = x + f * res_s
        logits = out_w @ rms_norm(x, T["output_norm.weight"], eps) / logit_s
        lse = logits.max() + np.log(np.exp(logits - logits.max()).sum())
        order = sorted(range(len(logits)), key=lambda t: (-logits[t], t))[:top]
        print(json.dumps({"pos": pos, "top": [[t, float(logits[t] - lse)] for t in order]}))


main()
