#!/usr/bin/env python3
"""Table of scripts/bench-vs-llamacpp-quant.sh's runs: per model file and depth, the median over rounds of
kvwise's and llama.cpp's prefill and decode tokens/s, their ratio, decode's effective weight bandwidth
and kvwise's resident memory against the mapped file (and what remains after the file and the KV
cache: scratch, OpenBLAS buffers, the vocabulary, the binary).
usage: quant_table.py DIR  (reads kvwise-NAME-dD-rR.json and llamacpp-NAME-dD-rR.json)"""
import glob
import json
import os
import re
import statistics
import sys

raw = sys.argv[1]
runs = {}  # (name, depth) -> {"kv": {test: [tps]}, "lc": {test: [tps]}, ...}
pat = re.compile(r"(kvwise|llamacpp)-(.+)-d(\d+)-r(\d+)\.json$")
for path in sorted(glob.glob(os.path.join(raw, "*.json"))):
    m = pat.search(os.path.basename(path))
    if not m:
        continue
    engine, name, depth = m.group(1), m.group(2), int(m.group(3))
    try:
        data = json.load(open(path))
    except (json.JSONDecodeError, OSError):
        continue  # a run that failed leaves an empty file; it is missing from the table, not made up
    entry = runs.setdefault((name, depth), {"kv": {}, "lc": {}, "gbps": [], "rss": [], "mapped": 0, "per_token": 0,
                                            "kvb": 0})
    if engine == "kvwise":
        for r in data["results"]:
            entry["kv"].setdefault(r["test"][:2], []).append(r["tokens_per_second"])
            if r["test"].startswith("tg"):
                entry["gbps"].append(r.get("weight_gbps", 0))
        entry["rss"].append(data["resident_bytes_end"])
        entry["kvb"] = max([entry["kvb"]] + [r.get("kv_bytes", 0) for r in data["results"]])
        entry["mapped"] = data["weight_bytes"]
        entry["per_token"] = data.get("weight_bytes_per_token", 0)
    else:
        for r in data:
            test = "pp" if r["n_prompt"] else "tg"
            entry["lc"].setdefault(test, []).append(r["avg_ts"])


def med(xs):
    return statistics.median(xs) if xs else float("nan")


print("| model file | depth | prefill kvwise | prefill llama.cpp | ratio | decode kvwise | decode llama.cpp | ratio "
      "| decode weight GB/s | kvwise RSS / file | RSS - file - KV | rounds |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for (name, depth) in sorted(runs, key=lambda k: (k[0].split("-")[0] + k[0].split("-")[1], k[1], k[0])):
    e = runs[(name, depth)]
    kp, lp, kt, lt = med(e["kv"].get("pp", [])), med(e["lc"].get("pp", [])), med(e["kv"].get("tg", [])), \
        med(e["lc"].get("tg", []))
    rss = med(e["rss"]) / e["mapped"] if e["mapped"] else float("nan")
    rest = (med(e["rss"]) - e["mapped"] - e["kvb"]) / 2**20 if e["mapped"] else float("nan")
    print(f"| {name} | {depth} | {kp:.2f} | {lp:.2f} | {kp / lp:.2f}x | {kt:.2f} | {lt:.2f} | {kt / lt:.2f}x "
          f"| {med(e['gbps']):.1f} | {rss:.2f} | {rest:.0f} MiB | {len(e['kv'].get('tg', []))} |")
