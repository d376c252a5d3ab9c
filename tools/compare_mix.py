#!/usr/bin/python3
"""Compares the per-tensor type mix of `kvwise quantize` (its per-tensor lines on stderr) with
llama-quantize's log for the same source file and preset.
usage: compare_mix.py KVWISE_LOG LLAMA_LOG LABEL OUT.json"""
import json
import re
import sys


def llama_types(path):
    out = {}
    for line in open(path, errors="replace"):
        m = re.match(r"\[\s*\d+/\s*\d+\]\s+(\S+)\s+-\s+\[.*\], type =\s+(\S+?),(.*)", line)
        if m:
            conv = re.search(r"converting to (\S+?) ", m.group(3))
            out[m.group(1)] = (conv.group(1) if conv else m.group(2)).upper()
    return out


def kvwise_types(path):
    out = {}
    for line in open(path, errors="replace"):
        m = re.match(r"\s+(\S+)\s+(\S+)\s+->\s+(\S+)", line)
        if m:
            out[m.group(1)] = m.group(3).upper()
    return out


def main():
    k, l = kvwise_types(sys.argv[1]), llama_types(sys.argv[2])
    names = sorted(set(k) | set(l))
    differ = [f"{n}: kvwise {k.get(n, '-')} / llama.cpp {l.get(n, '-')}" for n in names if k.get(n) != l.get(n)]
    res = {"label": sys.argv[3], "tensors": len(names), "same": len(names) - len(differ), "differ": differ}
    json.dump(res, open(sys.argv[4], "w"), indent=1)
    print(f"{sys.argv[3]}: {res['same']}/{res['tensors']} tensors get the same type" +
          (f"; differ: {differ[:3]}" if differ else ""), file=sys.stderr)


if __name__ == "__main__":
    main()
