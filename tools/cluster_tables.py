#!/usr/bin/env python3
"""Tables for docs/results/cluster.md from the output directory of scripts/bench-cluster.sh."""
import json
import os
import re
import sys

raw = sys.argv[1] if len(sys.argv) > 1 else "docs/results/cluster-raw"
ROUTINGS = ["round-robin", "least-load", "prefix", "cost"]


def load(name):
    path = os.path.join(raw, name)
    return json.load(open(path)) if os.path.exists(path) else None


def metrics(name):
    """{metric name with labels: value} of a Prometheus text file."""
    out = {}
    path = os.path.join(raw, name)
    if not os.path.exists(path):
        return out
    for line in open(path):
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def pct(x):
    return "-" if x is None else f"{100 * x:.2f} %"


def ms(x):
    return "-" if x is None else f"{1000 * x:.0f}"


def live_cluster(name):
    lookup = hits = shared = 0.0
    for i in range(3):
        m = metrics(f"server{i}-{name}.metrics")
        lookup += m.get("kvwise_prefix_lookup_blocks_total", 0)
        hits += m.get('kvwise_prefix_hits_total{tier="memory"}', 0)
        shared += m.get("kvwise_prefix_shared_hits_total", 0)
    r = metrics(f"router-{name}.metrics")
    per = [v for k, v in r.items() if k.startswith("kvwise_router_requests_total{")]
    failures = sum(v for k, v in r.items() if k.startswith("kvwise_router_failures_total{"))
    imbalance = max(per) / (sum(per) / len(per)) if per and sum(per) > 0 else None
    return {"local": hits / lookup if lookup else None, "shared": shared / lookup if lookup else None,
            "imbalance": imbalance, "failures": failures}


def live_vs_sim():
    sim = load("sim.json")
    if not sim:
        return
    by = {(r["routing"], r["shared_tier_blocks"] > 0): r for r in sim["runs"]}
    print("### Live cluster vs `kvwise sim` (3 servers, scaled Mooncake conversation trace)\n")
    print("| routing | shared tier | live block hit (local + shared) | sim | error | live cached tokens | sim token hit |"
          " live TTFT p50 / p90 (ms) | sim QTTFT p50 / p90 (ms) | live req/s | requests per server max/mean"
          " (live / sim) | router failures |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    errors = []
    for shared in (False, True):
        for routing in ROUTINGS:
            name = f"{routing}-{'on' if shared else 'off'}"
            live = load(f"live-{name}.json")
            s = by.get((routing, shared))
            if not live or not s:
                continue
            c = live_cluster(name)
            lb = (c["local"] or 0) + (c["shared"] or 0)
            err = abs(lb - s["hit_ratio"])
            errors.append(err)
            per = s["requests_per_instance"]
            sim_imb = max(per) / (sum(per) / len(per)) if sum(per) else None
            print(f"| {routing} | {'on' if shared else 'off'} | {pct(lb)} ({pct(c['local'])} + {pct(c['shared'])}) | "
                  f"{pct(s['hit_ratio'])} ({pct(s['local_hit_ratio'])} + {pct(s['shared_hit_ratio'])}) | "
                  f"{100 * err:.2f} pp | {pct(live['cached_token_ratio'])} | {pct(s['token_hit_ratio'])} | "
                  f"{ms(live['ttft']['p50'])} / {ms(live['ttft']['p90'])} | {ms(s['qttft']['p50'])} / "
                  f"{ms(s['qttft']['p90'])} | {live['requests_per_second']:.2f} | "
                  f"{c['imbalance']:.2f} / {sim_imb:.2f} | {c['failures']:.0f} |")
    if errors:
        print(f"\nBlock hit ratio error, live vs sim: mean {100 * sum(errors) / len(errors):.2f} pp, "
              f"max {100 * max(errors):.2f} pp over {len(errors)} configurations.\n")


def sim_grid(name, title):
    j = load(name)
    if not j:
        return
    print(f"### {title}\n")
    runs = j["runs"]
    sizes = sorted({r["instances"] for r in runs})
    for shared in sorted({r["shared_tier_blocks"] for r in runs}):
        label = f"shared tier of {shared} blocks" if shared else "no shared tier"
        cap = runs[0]["capacity_blocks"]
        print(f"{label}, {cap} blocks per instance: block hit ratio (local + shared) / QTTFT p90\n")
        print("| routing | " + " | ".join(f"{n} instance{'s' if n > 1 else ''}" for n in sizes) + " |")
        print("|---|" + "---:|" * len(sizes))
        for routing in ROUTINGS:
            cells = []
            for n in sizes:
                r = next((x for x in runs if x["routing"] == routing and x["instances"] == n
                          and x["shared_tier_blocks"] == shared), None)
                cells.append("-" if r is None else
                             f"{pct(r['hit_ratio'])} ({pct(r['local_hit_ratio'])} + {pct(r['shared_hit_ratio'])})"
                             f" / {r['qttft']['p90']:.2f} s")
            print(f"| {routing} | " + " | ".join(cells) + " |")
        print()


live_vs_sim()
sim_grid("mooncake.json", "Simulator: Mooncake conversation trace (512-token blocks, llama3-8b KV, 10k prefill tokens/s)")
sim_grid("synthetic.json", "Simulator: synthetic workload (seed 1)")
