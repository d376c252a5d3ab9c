#!/usr/bin/env python3
"""Markdown tables for docs/results/prefix-cache.md from the JSON that scripts/bench-prefix-cache.sh writes.

Usage: tools/prefix_tables.py [DIR]   (default docs/results/prefix-cache)
Bold = the best online policy at that capacity; "gap" rows = the share of the LRU -> Belady gap closed.
"""
import json
import os
import sys

d = sys.argv[1] if len(sys.argv) > 1 else "docs/results/prefix-cache"
OFFLINE = {"belady", "lru-oracle"}


def load(name):
    with open(os.path.join(d, name)) as f:
        return json.load(f)


def grid(j, key="capacity_blocks"):
    t, caps, order = {}, [], []
    for r in j["runs"]:
        c = r[key]
        if c not in caps:
            caps.append(c)
        if r["policy"] not in order:
            order.append(r["policy"])
        t.setdefault(r["policy"], {})[c] = r
    return t, caps, order


def hit_table(j, gap=True, label=lambda c: f"{c:,}"):
    t, caps, order = grid(j)
    best = {c: max((t[p][c]["block_hit_ratio"] for p in order if p not in OFFLINE)) for c in caps}
    out = ["| policy | " + " | ".join(label(c) for c in caps) + " |", "|---|" + "---:|" * len(caps)]
    for p in order:
        cells = []
        for c in caps:
            v = t[p][c]["block_hit_ratio"]
            s = f"{v:.4f}"
            cells.append(f"**{s}**" if p not in OFFLINE and v == best[c] else s)
        out.append(f"| {p} | " + " | ".join(cells) + " |")
    out.append("| infinite | " + " | ".join(f"{j['infinite_capacity_block_hit_ratio']:.4f}" for _ in caps) + " |")
    if gap:
        for p in order:
            if p in ("lru", "belady"):
                continue
            g = [t[p][c].get("lru_belady_gap_closed") for c in caps]
            out.append(f"| gap closed: {p} | " + " | ".join("-" if x is None else f"{100 * x:.0f} %" for x in g) + " |")
    return "\n".join(out)


def qttft_table(j):
    t, caps, order = grid(j)
    out = ["| policy | " + " | ".join(f"{c:,}" for c in caps) + " |", "|---|" + "---:|" * len(caps)]
    for p in order:
        out.append(f"| {p} | " + " | ".join(f"{t[p][c]['qttft_seconds']['mean']:.2f} / {t[p][c]['qttft_seconds']['p99']:.1f}"
                                           for c in caps) + " |")
    return "\n".join(out)


def bytes_table():
    rows = ["| policy | block dtype | " + " | ".join(f"{n:,} f16 blocks' bytes" for n in (1000, 2000, 5000, 10000, 20000)) + " |",
            "|---|---|" + "---:|" * 5]
    for dt in ("f16", "int8", "int4"):
        j = load(f"mooncake-bytes-{dt}.json")
        t, caps, order = grid(j)
        for p in order:
            cells = [f"{t[p][c]['block_hit_ratio']:.4f} ({c:,})" for c in caps]
            rows.append(f"| {p} | {dt} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def ablations():
    base, _, _ = grid(load("mooncake.json"))
    caps = [1000, 2000, 5000, 10000, 20000]
    rows = ["| hazard variant | " + " | ".join(f"{c:,}" for c in caps) + " |", "|---|" + "---:|" * len(caps)]
    rows.append("| defaults | " + " | ".join(f"{base['hazard'][c]['block_hit_ratio']:.4f}" for c in caps) + " |")
    for name, f in (("no last-block class", "no-last-block"), ("no request categories", "no-categories"),
                    ("fixed horizon 120 s", "fixed-horizon"), ("no use counts (max-uses 0)", "no-uses")):
        t, _, _ = grid(load(f"mooncake-hazard-{f}.json"))
        rows.append(f"| {name} | " + " | ".join(f"{t['hazard'][c]['block_hit_ratio']:.4f}" for c in caps) + " |")
    return "\n".join(rows)


def cost():
    rows = ["| policy | us per block access (2 replays in parallel) | metadata B per resident block | history bytes |",
            "|---|---:|---:|---:|"]
    t, caps, order = grid(load("mooncake.json"))
    for p in order:
        us = max(t[p][c]["us_per_block_access"] for c in caps)
        md = max(t[p][c]["metadata_bytes_per_block"] for c in caps)
        hb = max(t[p][c].get("history_bytes", 0) for c in caps)
        rows.append(f"| {p} | {us:.2f} | {md:.1f} | {hb / 2**20:.1f} MiB |")
    return "\n".join(rows)


def fidelity(name):
    j = load(name)
    rows = [f"`{j['model']}`: {j['segments']} segments, {j['results'][0]['cached_tokens']} cached + "
            f"{j['continuation']} computed tokens, blocks of {j['block_tokens']} tokens", "",
            "| block dtype | block bytes | blocks in the same bytes | mean KL | max KL | top-1 agreement | ΔNLL |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for r in j["results"]:
        rows.append(f"| {r['dtype']} | {r['block_bytes']:,} | {r['blocks_in_the_same_bytes']:.2f}x | {r['mean_kl']:.2e} | "
                    f"{r['max_kl']:.2e} | {r['top1_agreement']:.3f} | {r['nll'] - r['nll_full']:+.4f} |")
    if "passkey" in j:
        rows += ["", f"Passkey retrieval, prompts of {', '.join(map(str, j['passkey_lengths']))} tokens x "
                 f"{len(j['passkey_depths'])} depths, the haystack served from the cache:", "",
                 "| block dtype | correct | without a cache | mean cached tokens |", "|---|---:|---:|---:|"]
        for p in j["passkey"]:
            rows.append(f"| {p['dtype']} | {p['correct']} / {p['cases']} | {p['correct_without_cache']} / {p['cases']} | "
                        f"{p['mean_cached_tokens']:.0f} |")
    return "\n".join(rows)


print("## Mooncake, whole trace\n\n" + hit_table(load("mooncake.json")))
print("\n## Mooncake, whole trace: mean / p99 QTTFT (s)\n\n" + qttft_table(load("mooncake.json")))
print("\n## Mooncake, first half (tuning set)\n\n" + hit_table(load("mooncake-first-half.json")))
print("\n## Mooncake, second half (scored; first half warms the cache)\n\n" + hit_table(load("mooncake-second-half.json")))
print("\n## Synthetic seed 1 (scored)\n\n" + hit_table(load("synthetic.json")))
print("\n## Synthetic seed 1: mean / p99 QTTFT (s)\n\n" + qttft_table(load("synthetic.json")))
print("\n## Synthetic seed 2 (tuning set)\n\n" + hit_table(load("synthetic-seed2.json")))
print("\n## Bounds (Mooncake, whole trace)\n\n" + hit_table(load("mooncake-bounds.json")))
print("\n## Equal bytes (capacity in blocks in parentheses)\n\n" + bytes_table())
print("\n## hazard ablations (Mooncake, whole trace)\n\n" + ablations())
print("\n## Cost\n\n" + cost())
print("\n## Fidelity, bundled model\n\n" + fidelity("fidelity-bundled.json"))
print("\n## Fidelity, stories260K\n\n" + fidelity("fidelity-stories260k.json"))
