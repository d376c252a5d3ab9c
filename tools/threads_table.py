#!/usr/bin/env python3
"""The thread table of scripts/bench-threads.sh: median tokens/s over the rounds per model, test and
-t, each relative to the best setting of its row, and the worst setting above the usable cores."""
import glob
import json
import os
import re
import statistics
import sys

out = sys.argv[1]
cores = None  # usable cores of the machine that ran (machine.txt: "usable cores: N")
for line in open(os.path.join(out, "machine.txt")):
    if line.startswith("usable cores:"):
        cores = int(line.split(":")[1])
samples = {}  # (model, test) -> {threads: [t/s, ...]}
for path in sorted(glob.glob(os.path.join(out, "kvwise-*-t*-r*.json"))):
    m = re.match(r"kvwise-(.+)-t(\d+)-r\d+\.json", os.path.basename(path))
    model, t = m.group(1), int(m.group(2))
    for r in json.load(open(path))["results"]:
        samples.setdefault((model, r["test"]), {}).setdefault(t, []).append(r["tokens_per_second"])
threads = sorted({t for v in samples.values() for t in v})
rounds = max(len(x) for v in samples.values() for x in v.values())
print(f"Usable cores: {cores}. Median of {rounds} interleaved rounds, tokens/s (relative to the best -t of its row).\n")
print("| model | test | " + " | ".join(f"-t {t}" for t in threads) + " | worst above the cores / best |")
print("|---|---|" + "---:|" * len(threads) + "---:|")
for (model, test), v in sorted(samples.items()):
    med = {t: statistics.median(x) for t, x in v.items()}
    best = max(med.values())
    cells = [f"{med[t]:.1f} ({med[t] / best:.2f})" if t in med else "" for t in threads]
    over = [x for t, x in med.items() if cores is not None and t > cores]
    worst = f"{min(over) / best:.2f}" if over else ""
    print(f"| {model} | {test} | " + " | ".join(cells) + f" | {worst} |")
