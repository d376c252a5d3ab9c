#!/usr/bin/env python3
"""Tables and SVG plots from scripts/bench-serving.sh outputs: simulator vs live server per eviction
policy (part A) and kvwise vs llama-server under the same load (part B).
usage: serving_table.py RAW_DIR   (writes RAW_DIR/sim-vs-live.svg and RAW_DIR/latency.svg)"""
import glob
import json
import os
import sys

raw = sys.argv[1]


def load(path):
    try:
        return json.load(open(path))
    except (OSError, json.JSONDecodeError):
        return None


def sim_runs(path):
    j = load(path)
    return {r["policy"]: r for r in j["runs"]} if j else {}


def ms(x):
    return f"{1e3 * x:.0f}"


def bars_svg(path, title, groups, series, unit):
    """groups: [label]; series: [(name, colour, [value per group])]."""
    w, h, left, bottom, top = 760, 320, 60, 70, 40
    vmax = max([v for _, _, vals in series for v in vals if v is not None] + [1e-9]) * 1.15
    gw = (w - left - 20) / max(1, len(groups))
    bw = gw * 0.8 / max(1, len(series))
    y = lambda v: top + (h - top - bottom) * (1 - v / vmax)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{left}" y1="{y(0)}" x2="{w - 20}" y2="{y(0)}" stroke="black"/>']
    for k in range(5):
        v = vmax / 1.15 * k / 4
        out.append(f'<text x="{left - 6}" y="{y(v) + 4}" text-anchor="end">{v:.3g}</text>')
        out.append(f'<line x1="{left}" y1="{y(v)}" x2="{w - 20}" y2="{y(v)}" stroke="#ddd"/>')
    out.append(f'<text x="14" y="{(top + h - bottom) / 2}" transform="rotate(-90 14 {(top + h - bottom) / 2})" '
               f'text-anchor="middle">{unit}</text>')
    for gi, g in enumerate(groups):
        x0 = left + gi * gw + gw * 0.1
        for si, (_, colour, vals) in enumerate(series):
            v = vals[gi]
            if v is None:
                continue
            out.append(f'<rect x="{x0 + si * bw:.1f}" y="{y(v):.1f}" width="{bw - 2:.1f}" height="{y(0) - y(v):.1f}" '
                       f'fill="{colour}"/>')
        out.append(f'<text x="{x0 + gw * 0.4:.1f}" y="{h - bottom + 16}" text-anchor="middle">{g}</text>')
    for si, (name, colour, _) in enumerate(series):
        out.append(f'<rect x="{left + si * 170}" y="{h - 28}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{left + si * 170 + 16}" y="{h - 18}">{name}</text>')
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")


# Part A: simulator vs live server.
sim = sim_runs(os.path.join(raw, "sim-stories.json"))
hold = sim_runs(os.path.join(raw, "sim-stories-hold.json"))
live = {}
for path in sorted(glob.glob(os.path.join(raw, "live-stories-*.json"))):
    j = load(path)
    if j:
        live[j["label"]] = j


def pct(x):
    return "-" if x is None else f"{x:.4f}"


def err(a, b):
    return "-" if b is None else f"{100 * (a - b):+.2f} pp"


if live:
    print("### Simulator vs live server (stories260K, 500-block cache)\n")
    print("| policy | live block hit | sim | error | sim --hold | error | live cached tokens | sim token hit |"
          " TTFT p50 / p99 (ms) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    errs, errs_hold = [], []
    for p, j in live.items():
        lb = j["server"]["block_hit_ratio"]
        sb = sim.get(p, {}).get("block_hit_ratio")
        hb = hold.get(p, {}).get("block_hit_ratio")
        if sb is not None:
            errs.append(abs(lb - sb))
        if hb is not None:
            errs_hold.append(abs(lb - hb))
        print(f"| {p} | {lb:.4f} | {pct(sb)} | {err(lb, sb)} | {pct(hb)} | {err(lb, hb)} | "
              f"{j['cached_token_ratio']:.4f} | {pct(sim.get(p, {}).get('token_hit_ratio'))} | "
              f"{ms(j['ttft']['p50'])} / {ms(j['ttft']['p99'])} |")
    if "belady" in sim:
        print(f"| belady (offline, sim only) | - | {sim['belady']['block_hit_ratio']:.4f} | - | "
              f"{pct(hold.get('belady', {}).get('block_hit_ratio'))} | - | - | - | - |")
    for name, e in (("sim", errs), ("sim --hold", errs_hold)):
        if e:
            print(f"\n{name}: mean absolute block-hit error {100 * sum(e) / len(e):.2f} percentage points, "
                  f"largest {100 * max(e):.2f}.")
    pol = list(live)
    bars_svg(os.path.join(raw, "sim-vs-live.svg"), "Block hit ratio: live server vs kvwise sim (same scaled trace)", pol,
             [("live server", "#1f77b4", [live[p]["server"]["block_hit_ratio"] for p in pol]),
              ("kvwise sim", "#ff7f0e", [sim.get(p, {}).get("block_hit_ratio") for p in pol]),
              ("kvwise sim --hold", "#9467bd", [hold.get(p, {}).get("block_hit_ratio") for p in pol])],
             "block hit ratio")

# Part B: kvwise vs llama-server under one load.
order = ["none", "lru", "wa", "llama-server"]
runs = [(k, load(os.path.join(raw, f"live-smollm-{k}.json"))) for k in order]
runs = [(k, j) for k, j in runs if j]
if runs:
    simb = sim_runs(os.path.join(raw, "sim-smollm.json"))
    holdb = sim_runs(os.path.join(raw, "sim-smollm-hold.json"))
    print("\n### Same model and load: kvwise vs llama-server (SmolLM-135M shape, F16, 2 threads)\n")
    print("| server | requests (failed) | output tok/s | req/s | TTFT p50 / p90 / p99 (ms) | ITL p50 / p99 (ms) |"
          " cached prompt tokens | block hits: live / sim / sim --hold |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for k, j in runs:
        srv = j.get("server")
        bh = f"{srv['block_hit_ratio']:.4f}" if srv and srv["lookup_blocks"] else "-"
        if k in simb:
            bh += f" / {simb[k]['block_hit_ratio']:.4f} / {pct(holdb.get(k, {}).get('block_hit_ratio'))}"
        print(f"| {j['label']} | {j['requests']} ({j['failed']}) | {j['output_tokens_per_second']:.1f} | "
              f"{j['requests_per_second']:.2f} | {ms(j['ttft']['p50'])} / {ms(j['ttft']['p90'])} / {ms(j['ttft']['p99'])} | "
              f"{ms(j['itl']['p50'])} / {ms(j['itl']['p99'])} | {100 * j['cached_token_ratio']:.1f}% | {bh} |")
    labels = [j["label"].replace("kvwise, ", "") for _, j in runs]
    bars_svg(os.path.join(raw, "latency.svg"), "Time to first token under the scaled Mooncake load", labels,
             [("TTFT p50", "#2ca02c", [j["ttft"]["p50"] for _, j in runs]),
              ("TTFT p90", "#d62728", [j["ttft"]["p90"] for _, j in runs])], "seconds")
