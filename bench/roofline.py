#!/usr/bin/env python3
"""bench/roofline.py: the decode roofline picture for docs/PERFORMANCE.md, as a standalone SVG.

Usage: bench/roofline.py RESULTS.jsonl [MORE.jsonl ...] OUT.svg   (from `bench/compare --out`)

x: bytes of weights read per generated token (MB, log scale); y: tokens/s (log scale). The line is
the memory roof measured in the same runs (tokens/s = read bandwidth / bytes per token, the mean
over all tg results given); each tg result is a point for nuri and one for its peer, one marker per
peer (results of several bench/compare runs, e.g. two builds of llama.cpp, can share a picture).
Python standard library only.
"""
import json
import math
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: bench/roofline.py RESULTS.jsonl [MORE.jsonl ...] OUT.svg")
    rows = [json.loads(l) for path in sys.argv[1:-1] for l in open(path) if l.strip()]
    tg = [r for r in rows if r["test"].startswith("tg")]
    if not tg:
        sys.exit("roofline: no tg results")
    bw = sum(r["membw_gb_per_s"] for r in tg) / len(tg)  # GB/s
    W, H, L, R, T, B = 720, 460, 70, 200, 30, 60
    xmin, xmax = 300e6, 3000e6  # bytes per token
    ys = [r["nuri_tokens_per_s"] for r in tg] + [r["peer_tokens_per_s"] for r in tg]
    ymin = 10 ** math.floor(math.log10(max(min(ys) / 2, 0.1)))
    ymax = 10 ** math.ceil(math.log10(max(max(ys), bw * 1e9 / xmin) * 1.2))

    def px(x):
        return L + (math.log10(x) - math.log10(xmin)) / (math.log10(xmax) - math.log10(xmin)) * (W - L - R)

    def py(y):
        return H - B - (math.log10(y) - math.log10(ymin)) / (math.log10(ymax) - math.log10(ymin)) * (H - T - B)

    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{L}" y="18" font-size="14">Decode roofline, {tg[0]["n_threads"]} threads '
         f'(read bandwidth {bw:.1f} GB/s measured in the same runs)</text>']
    # grid and axes
    d = ymin
    while d <= ymax * 1.001:
        for m in (1, 2, 5):
            y = d * m
            if ymin <= y <= ymax:
                o.append(f'<line x1="{L}" x2="{W - R}" y1="{py(y):.1f}" y2="{py(y):.1f}" '
                         f'stroke="#ddd"/><text x="{L - 6}" y="{py(y) + 4:.1f}" '
                         f'text-anchor="end">{y:g}</text>')
        d *= 10
    for x in (300e6, 500e6, 700e6, 1000e6, 1500e6, 2000e6, 3000e6):
        o.append(f'<line x1="{px(x):.1f}" x2="{px(x):.1f}" y1="{T}" y2="{H - B}" stroke="#ddd"/>'
                 f'<text x="{px(x):.1f}" y="{H - B + 16}" text-anchor="middle">{x / 1e6:g}</text>')
    o.append(f'<text x="{(L + W - R) / 2}" y="{H - 18}" text-anchor="middle">MB of weights read '
             f'per token</text>')
    o.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" '
             f'text-anchor="middle">tokens/s</text>')
    # the roof: tok/s = bw / bytes
    pts = " ".join(f"{px(x):.1f},{py(bw * 1e9 / x):.1f}"
                   for x in (xmin * (xmax / xmin) ** (i / 50) for i in range(51)))
    o.append(f'<polyline points="{pts}" fill="none" stroke="#c00" stroke-width="2"/>')
    o.append(f'<text x="{W - R + 6}" y="{py(bw * 1e9 / xmax) + 4:.1f}" fill="#c00">memory roof '
             f'{bw:.1f} GB/s</text>')
    ly = T + 20
    peers = list(dict.fromkeys(r["peer"] for r in tg))
    styles = [("#888", "rect"), ("#e80", "diamond"), ("#5a5", "triangle")]

    def marker(X, Y, color, shape):
        if shape == "circle":
            return f'<circle cx="{X:.1f}" cy="{Y:.1f}" r="5" fill="{color}"/>'
        if shape == "rect":
            return f'<rect x="{X - 4:.1f}" y="{Y - 4:.1f}" width="8" height="8" fill="{color}"/>'
        if shape == "diamond":
            return (f'<polygon points="{X:.1f},{Y - 6:.1f} {X + 6:.1f},{Y:.1f} {X:.1f},{Y + 6:.1f} '
                    f'{X - 6:.1f},{Y:.1f}" fill="{color}"/>')
        return (f'<polygon points="{X:.1f},{Y - 6:.1f} {X + 6:.1f},{Y + 5:.1f} {X - 6:.1f},{Y + 5:.1f}" '
                f'fill="{color}"/>')

    labelled = set()
    for r in tg:
        x = r["bytes_per_token"]
        name = r["model"].replace(".gguf", "")
        o.append(marker(px(x), py(r["nuri_tokens_per_s"]), "#06c", "circle"))
        color, shape = styles[peers.index(r["peer"]) % len(styles)]
        o.append(marker(px(x), py(r["peer_tokens_per_s"]), color, shape))
        if name in labelled:
            continue
        labelled.add(name)
        o.append(f'<text x="{px(x) + 8:.1f}" y="{py(r["nuri_tokens_per_s"]) - 6:.1f}">{name}: '
                 f'{r["bandwidth_fraction"] * 100:.0f}% of roof</text>')
    o.append(marker(W - R + 12, ly + 40, "#06c", "circle") +
             f'<text x="{W - R + 22}" y="{ly + 44}">nuri</text>')
    for i, peer in enumerate(peers):
        color, shape = styles[i % len(styles)]
        if "/" in peer:  # a llama-bench given by path: built from source
            peer = "llama.cpp (llama-bench, built here)"
        y = ly + 60 + 16 * i
        o.append(marker(W - R + 12, y, color, shape) +
                 f'<text x="{W - R + 22}" y="{y + 4}" font-size="10">{peer}</text>')
    o.append("</svg>")
    with open(sys.argv[-1], "w") as f:
        f.write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
