#!/usr/bin/python3
"""One model file, both engines: greedy continuations of the same token prompts from kvwise
(`kvwise generate --prompt-tokens ... --top-logprobs K --json`) and llama.cpp (llama-server's
/completion with n_probs K, temperature 0, running on the same file), compared position by position.

usage: compare_models.py --kvwise BIN --model FILE --port PORT --label LABEL --out JSON
                         [--prompts N] [--prompt-len L] [--n N] [--k K] [--vocab V] [--seed S]
Per prompt, positions are compared up to the first token where the engines disagree (after that
their contexts differ). A disagreement where llama.cpp's top-2 gap is below 1e-3 is a near-tie and
is counted apart; the logprob error is max |lp_kvwise(t) - lp_llama(t)| over llama.cpp's top-K tokens
that kvwise also ranks in its top-K (and whose probability llama-server can represent: > e^-80).
With --exact, both engines' first-token logprobs are also compared with tools/ref_forward.py's float64
forward pass of the same file, which says which engine a difference comes from."""
import argparse
import json
import random
import subprocess
import sys
import os
import urllib.request

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_py  # noqa: E402
import ref_forward  # noqa: E402

NEAR_TIE = 1e-3


def llama(port, prompt, n, k):
    body = {"prompt": prompt, "n_predict": n, "n_probs": k, "temperature": 0, "cache_prompt": False,
            "ignore_eos": True, "return_tokens": True}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/completion", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    d = json.load(urllib.request.urlopen(req, timeout=600))
    # llama-server leaves out the entry of a token whose text is an incomplete UTF-8 sequence (byte
    # tokens): align its entries with the generated tokens by id; unmatched positions have no logprobs.
    entries, steps, k = d["completion_probabilities"], [], 0
    for tok in d["tokens"]:
        if k < len(entries) and entries[k]["id"] == tok:
            steps.append({t["id"]: t["logprob"] for t in entries[k]["top_logprobs"]})
            k += 1
        else:
            steps.append(None)
    return d["tokens"], steps


def kvwise(binary, model, prompt, n, k):
    out = subprocess.run([binary, "generate", "-m", model, "--prompt-tokens", ",".join(map(str, prompt)), "-n", str(n),
                          "--temp", "0", "--top-logprobs", str(k), "--ignore-eos", "--json", "-t", "2"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "kvwise failed")
    d = json.loads(out.stdout)
    return d["tokens"], [{t["id"]: t["logprob"] for t in s} for s in d["top_logprobs"]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kvwise", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=48)
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--exact", action="store_true",
                    help="also compare both engines' first-token logprobs with the float64 oracle")
    a = ap.parse_args()
    rng = random.Random(a.seed)
    res = {"label": a.label, "prompts": a.prompts, "prompt_len": a.prompt_len, "n": a.n, "k": a.k,
           "positions": 0, "agree": 0, "diverged": 0, "near_ties": 0, "max_lp_err": 0.0, "sum_lp_err": 0.0,
           "lp_count": 0, "max_gap_at_divergence": 0.0, "exact_err_kvwise": 0.0, "exact_err_llama": 0.0,
           "error": None}
    reader = gguf_py.Reader(a.model) if a.exact else None
    try:
        for _ in range(a.prompts):
            # BOS, then ids from the filler range of make-model's vocabulary (above bytes and ASCII).
            prompt = [1] + [rng.randrange(356, a.vocab) for _ in range(a.prompt_len - 1)]
            lt, ls = llama(a.port, prompt, a.n, a.k)
            kt, ks = kvwise(a.kvwise, a.model, prompt, a.n, a.k)
            if reader is not None:  # the first generated token's distribution, in float64 (tools/ref_forward.py)
                z = ref_forward.forward(reader, prompt)[-1]
                lp = z - (z.max() + np.log(np.exp(z - z.max()).sum()))
                for eng, steps in (("kvwise", ks), ("llama", ls)):
                    for tok, v in (steps[0] or {}).items():
                        if v > -80:
                            key = "exact_err_" + eng
                            res[key] = max(res[key], abs(v - lp[tok]))
            if not (len(lt) == len(ls) and len(kt) == len(ks)):
                res.setdefault("notes", []).append(f"lengths: llama {len(lt)} tokens / {len(ls)} probs, "
                                                   f"kvwise {len(kt)} / {len(ks)}")
            for i in range(min(len(lt), len(kt), len(ls), len(ks))):
                res["positions"] += 1
                for tok, lp in (ls[i] or {}).items():
                    # llama-server reports probabilities that underflow a float as -FLT_MAX: not comparable.
                    if tok in ks[i] and lp > -80:
                        e = abs(ks[i][tok] - lp)
                        res["max_lp_err"] = max(res["max_lp_err"], e)
                        res["sum_lp_err"] += e
                        res["lp_count"] += 1
                if lt[i] == kt[i]:
                    res["agree"] += 1
                    continue
                top = sorted((ls[i] or {}).values(), reverse=True)
                if len(top) > 1 and top[0] - top[1] < NEAR_TIE:
                    res["near_ties"] += 1
                else:
                    res["diverged"] += 1
                    res["max_gap_at_divergence"] = max(res["max_gap_at_divergence"], top[0] - top[1])
                break
    except Exception as e:  # reported in the table, not hidden
        res["error"] = str(e)
    json.dump(res, open(a.out, "w"), indent=1)
    print(f"{a.label}: {res['agree']}/{res['positions']} greedy tokens agree, near-ties {res['near_ties']}, "
          f"max |dlogprob| {res['max_lp_err']:.4f}" + (f", error: {res['error']}" if res["error"] else ""),
          file=sys.stderr)


if __name__ == "__main__":
    main()
