#!/usr/bin/env python3
"""Tables from scripts/bench-low-precision.sh outputs: decode attention alone and end-to-end decode at a
16K context (smollm-135m), and fidelity / passkey on stories260K with memory in bits per value.
usage: low_precision_table.py RAW_DIR"""
import glob
import json
import os
import sys

raw = sys.argv[1]


def mib(b):
    return f"{b / 2**20:.1f} MiB"


def specache_cell(sc):
    """SpeCache's prefetch hit rate, guesses right, cold bytes read per step and how the prefetch was
    read ('' for other caches; runs from before the field existed leave the mode out)."""
    if not sc:
        return ""
    mode = f", {sc['prefetch']}" if "prefetch" in sc else ""
    return (f"{100 * sc['prefetch_hit_rate']:.1f} %, {sc['guess_hits']}/{sc['guesses']}, "
            f"{sc['cold_bytes_read'] / max(1, sc['steps']) / 1024:.0f} KiB{mode}")


def load(path):
    try:
        return json.load(open(path))
    except (OSError, json.JSONDecodeError):
        return None


att = load(os.path.join(raw, "attention-16k.json"))
if att:
    rows = [b for b in att["benchmarks"] if b.get("aggregate_name") == "median"]
    base = {1: None, 2: None}
    for b in rows:
        if "f16_pages" in b["run_name"]:
            base[2 if "_T2" in b["run_name"] else 1] = b["real_time"]
    print("### Decode attention alone (30 layers, 16K tokens, median of 3)\n")
    print("| cache | query rows | ms per token | vs F16 pages, same rows | KV bytes |")
    print("|---|---:|---:|---:|---:|")
    for b in rows:
        t = 2 if "_T2" in b["run_name"] else 1
        print(f"| {b['label']} | {t} x 9 | {b['real_time']:.1f} | {base[t] / b['real_time']:.2f}x | {mib(b['kv_bytes'])} |")
    print()

tg = {}
for path in sorted(glob.glob(os.path.join(raw, "tg32-d16384-*.json"))):
    j = load(path)
    if j:
        tg[j.get("kv_policy", "full")] = j
if tg:
    full = tg.get("full")
    print("### End-to-end decode after a 16384-token prompt (tg32, 2 threads)\n")
    print("| KV | tokens/s | vs full F16 | hot KV | hot share of full | SpeCache: prefetch hit rate, guesses right, cold read per step, read by |")
    print("|---|---:|---:|---:|---:|---|")
    for name, j in tg.items():
        r = j["results"][0]
        tps = r["tokens_per_second"]
        fr = full["results"][0] if full else None
        share = f"{100 * r['kv_bytes'] / fr['kv_bytes']:.1f} %" if fr else ""
        ratio = f"{tps / fr['tokens_per_second']:.2f}x ({fr['tokens_per_second'] / tps:.2f}x slower)" if fr else ""
        spec = specache_cell(r.get("specache"))
        print(f"| {name} | {tps:.2f} | {ratio} | {mib(r['kv_bytes'])} | {share} | {spec} |")
    print()

ab = load(os.path.join(raw, "decode-ab-d16384.json"))
if ab:
    print(f"### Interleaved decode after a {ab['depth']}-token prompt ({ab['steps']} steps each, one process, "
          f"{ab['threads']} threads)\n")
    print("| KV | tokens/s | time per step vs full | hot KV | hot share of full | SpeCache: prefetch hit rate, guesses right, cold read per step, read by |")
    print("|---|---:|---:|---:|---:|---|")
    base = ab["results"][0]
    for r in ab["results"]:
        spec = specache_cell(r.get("specache"))
        print(f"| {r['policy']} | {r['tokens_per_second']:.2f} | {r['slowdown_vs_baseline']:.2f}x | {mib(r['kv_bytes'])} | "
              f"{100 * r['kv_bytes'] / base['kv_bytes']:.1f} % | {spec} |")
    print()

fid = load(os.path.join(raw, "fidelity-stories260k.json"))
if fid:
    print(f"### Fidelity on stories260K ({fid['segments']} segments x ({fid['prefix']} prefix + "
          f"{fid['continuation']} teacher-forced tokens))\n")
    print("| policy | budget | mean KL | top-1 agree | ΔNLL | bits/value |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in fid["results"]:
        print(f"| {r['policy']} | {r['budget']} | {r['mean_kl']:.4f} | {r['top1_agreement']:.3f} | "
              f"{r['nll_delta']:+.4f} | {r['bits_per_value']:.1f} |")
    print()

pk = load(os.path.join(raw, "passkey-stories260k.json"))
if pk:
    print("### Passkey on stories260K\n")
    print("| policy @ budget | accuracy | cases | bits/value |")
    print("|---|---:|---:|---:|")
    for name, a in pk["accuracy"].items():
        print(f"| {name} | {a['accuracy']:.2f} | {a['cases']} | {a['bits_per_value']:.1f} |")
    print()
