#!/usr/bin/python3
"""The table of scripts/compare-llamacpp-models.sh: one row per architecture x type x producer from
the JSON files of tools/compare_models.py in DIR. usage: models_table.py DIR > table.md"""
import glob
import json
import os
import sys


def main():
    rows = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(sys.argv[1], "cmp-*.json")))]
    print("| shape | weights | quantized by | greedy tokens agree | diverged (not near-tie) | near-ties | "
          "largest llama.cpp top-2 gap where they diverged | max abs dlogprob (top-5) | mean abs dlogprob | "
          "kvwise vs float64 oracle | llama.cpp vs float64 oracle |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        shape, wtype, producer = r["label"].split("|")
        if r["error"]:
            print(f"| {shape} | {wtype} | {producer} | error: {r['error']} | | | | | | | |")
            continue
        mean = r["sum_lp_err"] / r["lp_count"] if r["lp_count"] else 0.0
        print(f"| {shape} | {wtype} | {producer} | {r['agree']}/{r['positions']} | {r['diverged']} | "
              f"{r['near_ties']} | {r.get('max_gap_at_divergence', 0):.4f} | {r['max_lp_err']:.4f} | {mean:.4f} | "
              f"{r.get('exact_err_kvwise', 0):.4f} | {r.get('exact_err_llama', 0):.4f} |")
    mix_table(sys.argv[1])


def mix_table(d):
    rows = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(d, "mix-*.json")))]
    if not rows:
        return
    print()
    print("| shape | preset | tensors with the same type (kvwise quantize vs llama-quantize) | first differences |")
    print("|---|---|---:|---|")
    for r in rows:
        shape, preset = r["label"].split("|")
        print(f"| {shape} | {preset} | {r['same']}/{r['tensors']} | {'; '.join(r['differ'][:3])} |")


if __name__ == "__main__":
    main()
