#!/usr/bin/python3
"""The training curve of tools/train/train.py as an SVG: text loss and answer loss (left axis) and
held-out exact match per task (right axis, 0-1) against training tokens. Several CSVs (stages of one
run, in order) are drawn one after the other, tokens accumulating; a vertical line marks each stage.
usage: plot_curve.py OUT.svg STAGE1.csv [STAGE2.csv ...]"""
import csv
import sys

W, H, L, R, T, B = 760, 360, 60, 60, 30, 50


def main():
    rows, bounds, offset = [], [], 0.0
    for path in sys.argv[2:]:
        part = list(csv.DictReader(open(path)))
        for r in part:
            r["tokens"] = float(r["tokens"]) + offset
        rows += part
        offset = rows[-1]["tokens"]
        bounds.append(offset)
    xs = [float(r["tokens"]) for r in rows]
    num = lambda v: None if v in (None, "", "nan") else float(v)
    series_loss = {"text loss": [num(r["loss"]) for r in rows], "answer loss": [num(r["answer_loss"]) for r in rows]}
    acc_keys = [k for k in ("passkey", "needle", "kv", "vars", "repeat", "copy") if any(k in r for r in rows)]
    series_acc = {k: [num(r.get(k)) for r in rows] for k in acc_keys}
    xmax = max(xs) or 1
    ymax = max(max(y for y in v if y is not None) for v in series_loss.values()) * 1.05
    px = lambda x: L + (W - L - R) * x / xmax
    pyl = lambda y: T + (H - T - B) * (1 - y / ymax)
    pya = lambda y: T + (H - T - B) * (1 - y)
    colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<line x1="{L}" y1="{H - B}" x2="{W - R}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{L}" y1="{T}" x2="{L}" y2="{H - B}" stroke="black"/>',
           f'<line x1="{W - R}" y1="{T}" x2="{W - R}" y2="{H - B}" stroke="black"/>']
    for i in range(6):
        x = xmax * i / 5
        out.append(f'<text x="{px(x):.1f}" y="{H - B + 15}" text-anchor="middle">{x / 1e6:.1f}M</text>')
        y = ymax * i / 5
        out.append(f'<text x="{L - 5}" y="{pyl(y) + 4:.1f}" text-anchor="end">{y:.1f}</text>')
        out.append(f'<text x="{W - R + 5}" y="{pya(i / 5) + 4:.1f}">{i / 5:.1f}</text>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">training tokens</text>')
    out.append(f'<text x="14" y="{(T + H - B) / 2}" transform="rotate(-90 14 {(T + H - B) / 2})" '
               f'text-anchor="middle">loss (nats/token)</text>')
    out.append(f'<text x="{W - 12}" y="{(T + H - B) / 2}" transform="rotate(90 {W - 12} {(T + H - B) / 2})" '
               f'text-anchor="middle">held-out exact match</text>')
    k = 0
    for name, ys in list(series_loss.items()) + list(series_acc.items()):
        f = pyl if name in series_loss else pya
        pts = " ".join(f"{px(x):.1f},{f(y):.1f}" for x, y in zip(xs, ys) if y is not None)
        dash = "" if name in series_loss else ' stroke-dasharray="4 3"'
        out.append(f'<polyline fill="none" stroke="{colors[k % len(colors)]}" stroke-width="1.6"{dash} points="{pts}"/>')
        out.append(f'<text x="{L + 10 + 100 * k}" y="{T - 10}" fill="{colors[k % len(colors)]}">{name}</text>')
        k += 1
    for b in bounds[:-1]:
        out.append(f'<line x1="{px(b):.1f}" y1="{T}" x2="{px(b):.1f}" y2="{H - B}" stroke="#999" stroke-dasharray="2 2"/>')
    out.append("</svg>")
    open(sys.argv[1], "w").write("\n".join(out))


if __name__ == "__main__":
    main()
