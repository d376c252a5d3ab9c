#!/usr/bin/env python3
"""The thread table of scripts/bench-threads.sh: tokens/s per model, test and -t, and each setting
relative to the best one of its row."""
import glob
import json
import os
import re
import sys

out = sys.argv[1]
rows = {}  # (model, test) -> {threads: (t/s, stddev)}
for path in sorted(glob.glob(os.path.join(out, "kvwise-*-t*.json"))):
    m = re.match(r"kvwise-(.+)-t(\d+)\.json", os.path.basename(path))
    model, t = m.group(1), int(m.group(2))
    for r in json.load(open(path))["results"]:
        rows.setdefault((model, r["test"]), {})[t] = (r["tokens_per_second"], r["stddev"])
threads = sorted({t for v in rows.values() for t in v})
print("| model | test | " + " | ".join(f"-t {t}" for t in threads) + " | worst / best |")
print("|---|---|" + "---:|" * len(threads) + "---:|")
for (model, test), v in sorted(rows.items()):
    best = max(x[0] for x in v.values())
    cells = [f"{v[t][0]:.1f} ± {v[t][1]:.1f} ({v[t][0] / best:.2f})" if t in v else "" for t in threads]
    worst = min(x[0] for x in v.values())
    print(f"| {model} | {test} | " + " | ".join(cells) + f" | {worst / best:.2f} |")
