#!/usr/bin/env python3
"""Side-by-side table of `kvwise bench --json` and `llama-bench -o json` outputs.
usage: engine_table.py RAW_DIR SHAPE  (reads kvwise-SHAPE[-deep].json and llamacpp-SHAPE[-deep].json)"""
import os
import json
import sys

raw, shape = sys.argv[1], sys.argv[2]
kv, lc = {}, {}
def files(prefix):
    # SHAPE.json and SHAPE-deep.json only: SHAPE-q8_0.json is another model.
    return [p for p in (f"{raw}/{prefix}-{shape}.json", f"{raw}/{prefix}-{shape}-deep.json") if os.path.exists(p)]


for path in files("kvwise"):
    for r in json.load(open(path))["results"]:
        kv[(r["test"], r["depth"])] = (r["tokens_per_second"], r["stddev"], len(r["seconds"]))
for path in files("llamacpp"):
    for r in json.load(open(path)):
        test = f"pp{r['n_prompt']}" if r["n_prompt"] else f"tg{r['n_gen']}"
        lc[(test, r["n_depth"])] = (r["avg_ts"], r["stddev_ts"], len(r["samples_ts"]))
print("| test | depth | kvwise t/s | llama.cpp t/s | kvwise / llama.cpp | reps |")
print("|---|---:|---:|---:|---:|---:|")
for key in sorted(kv, key=lambda k: (k[1], k[0][:2] != "pp")):
    if key not in lc:
        continue
    (a, sa, n), (b, sb, _) = kv[key], lc[key]
    print(f"| {key[0]} | {key[1]} | {a:.2f} ± {sa:.2f} | {b:.2f} ± {sb:.2f} | {a / b:.2f}x | {n} |")
