#!/usr/bin/env python3
"""Policies x budgets matrices from `kvwise eval fidelity --plot DIR` (DIR/fidelity.json).
usage: fidelity_matrix.py DIR/fidelity.json"""
import json
import re
import sys

j = json.load(open(sys.argv[1]))
rows, budgets, cell = [], [], {}
for r in j["results"]:
    name = re.sub(r"profile=[^,)]*/", "profile=", r["policy"])
    if name not in rows:
        rows.append(name)
    if r["policy"] != "full" and r["budget"] not in budgets:
        budgets.append(r["budget"])
    cell[(name, r["budget"])] = r
print(f"{j['model']}: {j['segments']} segments x ({j['prefix']} prefix + {j['continuation']} teacher-forced tokens)\n")
for title, key, fmt in (("mean KL(full || policy), nats per token", "mean_kl", "{:.4f}"),
                        ("top-1 agreement with the full cache", "top1_agreement", "{:.3f}"),
                        ("hot KV after prefill, share of the full cache", None, "{:.0%}")):
    print(f"{title}\n")
    print("| policy | " + " | ".join(budgets) + " |")
    print("|---|" + "---:|" * len(budgets))
    for name in rows:
        if name == "full":
            continue
        vals = []
        for b in budgets:
            r = cell.get((name, b))
            if r is None:
                vals.append("-")
            elif key is None:
                vals.append(fmt.format(r["hot_bytes"] / r["full_bytes"]))
            else:
                vals.append(fmt.format(r[key]))
        print(f"| {name} | " + " | ".join(vals) + " |")
    print()
