#!/usr/bin/env python3
"""Tables from scripts/bench-compression.sh outputs: prefill cost of each policy and decode speed at
a 16K context. usage: compression_table.py RAW_DIR"""
import glob
import json
import os
import sys

raw = sys.argv[1]


def load(pattern):
    out = {}
    for path in sorted(glob.glob(os.path.join(raw, pattern))):
        try:
            j = json.load(open(path))
        except json.JSONDecodeError:
            print(f"(skipping {path}: not complete JSON)", file=sys.stderr)
            continue
        name = j.get("kv_policy", "full")
        out[name if name == "full" else f"{name} @ {j['kv_budget']}"] = j["results"][0]
    return out


def mib(b):
    return f"{b / 2**20:.1f} MiB"


pp = load("pp4096-*.json")
if "full" in pp:
    base = pp["full"]
    print("Prefill of a 4096-token prompt (mean of the repetitions; compression runs inside the timed prefill)\n")
    print("| policy | prefill t/s | prefill s | vs full | selection + page release | share of prefill | hot KV after |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    full_s = 4096 / base["tokens_per_second"]
    for name, r in sorted(pp.items(), key=lambda kv: kv[0] != "full"):
        s = 4096 / r["tokens_per_second"]
        print(f"| {name} | {r['tokens_per_second']:.1f} ± {r['stddev']:.1f} | {s:.2f} | {100 * (s / full_s - 1):+.1f} % | "
              f"{1e3 * r['compress_seconds']:.1f} ms | {100 * r['compress_seconds'] / s:.2f} % | {mib(r['kv_bytes'])} |")

tg = load("tg64-d16384-*.json")
if "full" in tg:
    base = tg["full"]
    print("\nDecode of 64 tokens after a 16384-token prompt (1 repetition; the prompt's prefill, compression "
          "included, is timed separately)\n")
    print("| policy | decode t/s | vs full | hot KV at the end | share of full | 16K prefill s | prefill vs full | "
          "compression (prefill + decode) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in sorted(tg.items(), key=lambda kv: kv[0] != "full"):
        print(f"| {name} | {r['tokens_per_second']:.2f} | {r['tokens_per_second'] / base['tokens_per_second']:.2f}x | "
              f"{mib(r['kv_bytes'])} | {100 * r['kv_bytes'] / base['kv_bytes']:.1f} % | {r['depth_prefill_seconds']:.1f} | "
              f"{100 * (r['depth_prefill_seconds'] / base['depth_prefill_seconds'] - 1):+.1f} % | "
              f"{1e3 * r['compress_seconds']:.0f} ms |")
