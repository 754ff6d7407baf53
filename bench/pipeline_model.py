#!/usr/bin/env python3
"""bench/pipeline_model.py: what a pipeline of 2-8 machines would do, from one machine's measured
numbers and the network's bandwidth and latency (docs/SCALING.md, "Pipeline parallelism over MPI").

Usage: bench/pipeline_model.py [--bw GB/s] [--macs MAC/s] [--seqs S] [--bpp BYTES]
                               [--net NAME:GB/s:us ...] [--stages 1,2,4,8]

The model is the pipeline nuri runs (src/model/forward.c): each machine holds 1/N of the weights
(cut by bytes, the head with the last stage), a decode step of S sequences is cut into
M = min(S, N) micro-batches of b = S/M tokens, each goes through the N stages in turn, and the
last stage sends the logits of every token back to stage 0, which samples. One stage's time for
a micro-batch is the longer of reading its weights (bytes read / N / bw: decode is bound by
memory) and computing them (b x active parameters / N / macs: a large batch is bound by
arithmetic); a mixture of experts reads, per layer, the experts its b tokens route to
(E x (1 - (1 - K/E)^b) of E, uniform routing). A step takes
    (M + N - 1) x stage + (N - 1) x hop + back
hop = latency + b x (n_embd x 4 + 16) bytes / bandwidth (the residual rows and their positions),
back = latency + b x n_vocab x 4 bytes / bandwidth (the logits). Defaults: bw and macs measured
on this machine (docs/PERFORMANCE.md: Llama-3.2-1B Q4_K_M, 2 threads, tg128 19.8 GB/s of weights,
pp512 268 tok/s x 1.24 G parameters); 25 GbE at 2.9 GB/s and 25 us (MPI over TCP), 100 GbE at
11.6 GB/s and 10 us. Python standard library only.
"""
import argparse

# name, total params, routed-expert params (0: dense), experts E, used K, n_embd, n_vocab
MODELS = [
    ("1B (Llama-3.2-1B)", 1.236e9, 0.0, 0, 0, 2048, 128256),
    # Qwen3-30B-A3B: 48 layers x 128 experts x 3 x 2048 x 768 routed; 3.3 B active
    ("30B-A3B (Qwen3-30B-A3B)", 30.5e9, 29.0e9, 128, 8, 2048, 151936),
    # DeepSeek-V2 shape: 59 MoE layers x 160 experts x 3 x 5120 x 1536 routed (+2 shared); 21 B
    ("236B MoE (DeepSeek-V2 shape)", 236e9, 222.7e9, 160, 6, 5120, 102400),
]


def params_read(total, routed, E, K, b):
    """Parameters one step of b tokens reads (MoE: the experts they route to, uniform)."""
    if routed == 0:
        return total
    touched = 1 - (1 - K / E) ** b
    return total - routed + routed * touched


def active(total, routed, E, K):
    return total if routed == 0 else total - routed + routed * K / E


def step(model, N, S, net, a, M=None):
    name, total, routed, E, K, n_embd, n_vocab = model
    gbps, lat_us = net
    if M is None:
        M = min(S, N)
    b = S / M
    bytes_stage = params_read(total, routed, E, K, b) * a.bpp / N
    macs_stage = b * active(total, routed, E, K) / N
    stage = max(bytes_stage / (a.bw * 1e9), macs_stage / a.macs)
    lat = lat_us * 1e-6
    hop = lat + b * (n_embd * 4 + 16) / (gbps * 1e9) if N > 1 else 0.0
    back = lat + b * n_vocab * 4 / (gbps * 1e9) if N > 1 else 0.0
    return (M + N - 1) * stage + (N - 1) * hop + back


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bw", type=float, default=19.8, help="GB/s of weights one machine reads")
    p.add_argument("--macs", type=float, default=268 * 1.236e9, help="MAC/s of one machine")
    p.add_argument("--seqs", type=int, default=32, help="sequences in flight")
    p.add_argument("--bpp", type=float, default=0.6, help="bytes per parameter (Q4_K_M ~0.6)")
    p.add_argument("--net", action="append", help="NAME:GB/s:latency_us")
    p.add_argument("--stages", default="1,2,4,8")
    a = p.parse_args()
    nets = {"25 GbE": (2.9, 25.0), "100 GbE": (11.6, 10.0)}
    if a.net:
        nets = {}
        for n in a.net:
            name, g, l = n.split(":")
            nets[name] = (float(g), float(l))
    stages = [int(x) for x in a.stages.split(",")]
    print(f"one machine: {a.bw:g} GB/s of weights, {a.macs / 1e9:.0f} GMAC/s; "
          f"{a.bpp:g} bytes per parameter; {a.seqs} sequences in flight\n")
    print("| model | network | machines | weights per machine (GB) | 1 sequence: ms/token "
          "| tok/s | " + f"{a.seqs} sequences: ms/step | tok/s | best micro-batches: M | tok/s |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for m in MODELS:
        rows = [("-", (1.0, 0.0), 1)] + [(n, v, N) for n, v in nets.items() for N in stages if N > 1]
        for net_name, net, N in rows:
            t1 = step(m, N, 1, net, a)
            tS = step(m, N, a.seqs, net, a)
            best = min(range(1, min(a.seqs, N) + 1), key=lambda M: step(m, N, a.seqs, net, a, M))
            tB = step(m, N, a.seqs, net, a, best)
            w = m[1] * a.bpp / N / 1e9
            print(f"| {m[0]} | {net_name} | {N} | {w:.1f} | {t1 * 1e3:.1f} | {1 / t1:.1f} | "
                  f"{tS * 1e3:.1f} | {a.seqs / tS:.0f} | {best} | {a.seqs / tB:.0f} |")


if __name__ == "__main__":
    main()
