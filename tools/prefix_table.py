#!/usr/bin/env python3
"""Markdown tables from `kvwise sim --json` outputs.
usage: prefix_table.py hit SIM.json        block hit ratio, policies x capacities (best online in bold)
       prefix_table.py qttft SIM.json      mean / p99 QTTFT, policies x capacities
       prefix_table.py wa A.json B.json..  WA vs LRU per file (category rules, ablations)"""
import json
import sys

ONLINE = {"lru", "fifo", "lfu", "s3fifo", "gdsf", "arc", "wa"}


def load(path):
    j = json.load(open(path))
    caps = sorted({r["capacity_blocks"] for r in j["runs"]})
    pols = []
    for r in j["runs"]:
        if r["policy"] not in pols:
            pols.append(r["policy"])
    cell = {(r["policy"], r["capacity_blocks"]): r for r in j["runs"]}
    return j, caps, pols, cell


def hit(path):
    j, caps, pols, cell = load(path)
    print("| policy | " + " | ".join(f"{c:,}" for c in caps) + " |")
    print("|---|" + "---:|" * len(caps))
    best = {c: max(cell[(p, c)]["block_hit_ratio"] for p in pols if p in ONLINE) for c in caps}
    for p in pols:
        vals = []
        for c in caps:
            v = cell[(p, c)]["block_hit_ratio"]
            vals.append(f"**{v:.4f}**" if p in ONLINE and v == best[c] else f"{v:.4f}")
        print(f"| {p} | " + " | ".join(vals) + " |")
    print("| infinite | " + " | ".join(f"{j['infinite_capacity_block_hit_ratio']:.4f}" for _ in caps) + " |")


def qttft(path):
    j, caps, pols, cell = load(path)
    print("| policy | " + " | ".join(f"{c:,}" for c in caps) + " |")
    print("|---|" + "---:|" * len(caps))
    for p in pols:
        vals = [f"{cell[(p, c)]['qttft_seconds']['mean']:.2f} / {cell[(p, c)]['qttft_seconds']['p99']:.1f}" for c in caps]
        print(f"| {p} | " + " | ".join(vals) + " |")


def wa(paths):
    for path in paths:
        j, caps, pols, cell = load(path)
        row = []
        for c in caps:
            w, l = cell[("wa", c)]["block_hit_ratio"], cell[("lru", c)]["block_hit_ratio"]
            row.append(f"{c:,}: {w:.4f} ({(w / l - 1) * 100:+.1f} % vs LRU)")
        print(f"| {path.split('/')[-1]} | {len(j['trace']['categories'])} | " + " | ".join(row) + " |")


if __name__ == "__main__":
    {"hit": lambda: hit(sys.argv[2]), "qttft": lambda: qttft(sys.argv[2]), "wa": lambda: wa(sys.argv[2:])}[sys.argv[1]]()
