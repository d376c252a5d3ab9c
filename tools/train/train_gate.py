#!/usr/bin/python3
"""Trains an Attention-Gate (kv-algorithms §12, the distilled variant of §12.1 option 1) for a frozen
GGUF llama model and writes it as a side file kvwise's `gate` policy reads:

    tools/train/train_gate.py --model models/kvwise-retrieval.gguf     # -> models/kvwise-retrieval.gate.gguf

Teacher labels: the frozen model runs with full attention over calibration sequences. A token's
usefulness in (layer, KV head) is, by default (--label far-mean), the mean over queries more than
--skip tokens later of the attention it gets times the query's position + 1 (attention relative to
uniform), maximised over the KV head's query heads; --label max takes the largest attention any later
query pays it. Per (layer, head) the top (1 - target_evict) share is labelled keep. Student, per
layer (--kind): `mlp`, sigmoid(Wo silu(W1 xn + b1) + b) of the token's RMS-normalised residual
stream, or `attention`, the paper's causal gate attention (h_g heads of width d_g, no RoPE) then
sigmoid(Og Wo + b). Trained with class-weighted BCE + lambda * (mean(s) - keep_rate)^2, backbone
frozen. The file also stores score percentiles per (layer, head), so kvwise can turn any target
eviction rate into thresholds, and a few reference scores that kvwise's tests recompute."""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import gguf_io  # noqa: E402
import spm  # noqa: E402
import tasks  # noqa: E402


class MlpGate(nn.Module):
    """The cache-free variant (kv-algorithms §12.1: 'an even smaller MLP'): each token's score from its
    own RMS-normalised residual stream, s = sigmoid(Wo silu(W1 xn + b1) + bo). Mirrors gate.cpp."""

    def __init__(self, dim, n_kv, hidden):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=True)
        self.wo = nn.Linear(hidden, n_kv, bias=True)
        nn.init.zeros_(self.wo.bias)

    def forward(self, x):
        xn = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        return torch.sigmoid(self.wo(F.silu(self.w1(xn))))


class Gate(nn.Module):
    """One gate per layer; mirrors src/compress/gate.cpp exactly."""

    def __init__(self, dim, n_kv, heads, head_dim):
        super().__init__()
        w = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.wq = nn.Linear(dim, w, bias=False)
        self.wk = nn.Linear(dim, w, bias=False)
        self.wv = nn.Linear(dim, w, bias=False)
        self.wo = nn.Linear(w, n_kv, bias=True)
        nn.init.zeros_(self.wo.bias)

    def forward(self, x):  # x: (B, T, D) residual stream -> scores (B, T, KV)
        B, T, _ = x.shape
        xn = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)
        H, d = self.heads, self.head_dim
        q = self.wq(xn).view(B, T, H, d).transpose(1, 2)
        k = self.wk(xn).view(B, T, H, d).transpose(1, 2)
        v = self.wv(xn).view(B, T, H, d).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d)
        att = att + torch.full((T, T), float("-inf")).triu(1)
        o = (torch.softmax(att, -1) @ v).transpose(1, 2).reshape(B, T, H * d)
        return torch.sigmoid(self.wo(o))


@torch.no_grad()
def teacher(m, x, horizon, skip, label, chunk=4):
    """Residual streams entering each layer (L, N, T, D) and usefulness (L, N, T, KV).
    far-mean: mean over queries j > i + skip of A[j][i] * (j + 1) (attention relative to uniform, so
    early and late tokens compare), max over the query heads of the KV head; queries within `skip`
    tokens do not count because kvwise keeps that recent window anyway. max: the largest A[j][i]."""
    L = m.cfg.layers
    for b in m.blocks:
        b.record = True
    xs, us = [[] for _ in range(L)], [[] for _ in range(L)]
    for i in range(0, x.shape[0], chunk):
        def hook(l, h):
            xs[l].append(h.detach().clone())
            return None
        m(x[i:i + chunk], hidden_hook=hook)
        for l, b in enumerate(m.blocks):
            a = b.last_att  # (B, KV, g, T, T): row = query j, column = key i
            T = a.shape[-1]
            a = a.amax(dim=2)  # over the query heads sharing the KV head
            later = torch.ones(T, T).tril(-1 - (skip if label == "far-mean" else 0))  # query j > i (+ skip)
            if horizon > 0:
                later = later * torch.ones(T, T).triu(-horizon)
            if label == "far-mean":
                rel = a * (torch.arange(T, dtype=a.dtype) + 1)[:, None]
                u = (rel * later).sum(dim=-2) / later.sum(dim=0).clamp_min(1)
            else:
                u = (a * later).amax(dim=-2)  # (B, KV, T)
            us[l].append(u.transpose(1, 2))
    for b in m.blocks:
        b.record = False
        b.last_att = None
    return torch.stack([torch.cat(v) for v in xs]), torch.stack([torch.cat(v) for v in us])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/kvwise-retrieval.gguf")
    ap.add_argument("--out", default="", help="default: MODEL with .gate.gguf")
    ap.add_argument("--data-dir", default=os.environ.get("KVWISE_DATA", os.path.join(HERE, "..", "..", "..", "shared")))
    ap.add_argument("--mix", default="tasks", choices=["tasks", "text"], help="calibration: task mix or plain text")
    ap.add_argument("--target-evict", type=float, default=0.5)
    ap.add_argument("--kind", default="mlp", choices=["mlp", "attention"],
                    help="mlp: per-token, no cache; attention: the paper's causal gate attention (own K/V cache)")
    ap.add_argument("--heads", type=int, default=1, help="gate attention heads (attention)")
    ap.add_argument("--head-dim", type=int, default=8, help="gate head width (attention) or hidden width (mlp)")
    ap.add_argument("--label", default="far-mean", choices=["far-mean", "max"])
    ap.add_argument("--skip", type=int, default=16, help="far-mean: queries this close do not count (the window)")
    ap.add_argument("--ctx", type=int, default=0, help="calibration length (default: the model's context)")
    ap.add_argument("--seqs", type=int, default=48, help="calibration sequences (a quarter more are held out)")
    ap.add_argument("--horizon", type=int, default=0, help="look-ahead of the usefulness label (0: all later queries)")
    ap.add_argument("--protect", type=int, default=4, help="first tokens labelled keep and left out of the loss")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--rate-weight", type=float, default=1.0, help="lambda of the eviction-rate penalty")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("KVWISE_TRAIN_THREADS", "2")))
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    torch.set_num_threads(a.threads)
    t0 = time.time()
    m, reader = gguf_io.load_llama(a.model)
    for p in m.parameters():
        p.requires_grad_(False)
    cfg = m.cfg
    T = a.ctx or cfg.ctx
    tok = spm.Spm.from_gguf(reader)
    train_texts, held_texts = tasks.read_corpus(a.data_dir)
    tm = tasks.TaskMaker(tok, train_texts, a.seed)
    n_all = a.seqs + max(4, a.seqs // 4)
    seqs = [tm.sample(T, 1.0, None if a.mix == "tasks" else "text")[0][:T] for _ in range(n_all)]
    x = torch.tensor(seqs, dtype=torch.long)
    hs, us = teacher(m, x, a.horizon, a.skip, a.label)  # (L, N, T, D), (L, N, T, KV)
    keep_rate = 1.0 - a.target_evict
    L, KV = cfg.layers, cfg.kv_heads
    valid = torch.zeros(T, dtype=torch.bool)
    valid[a.protect:T - (a.skip + 1 if a.label == "far-mean" else 1)] = True  # tokens with later queries
    labels = torch.zeros_like(us)
    for l in range(L):
        for h in range(KV):
            v = us[l, :a.seqs, :, h][:, valid]
            thr = torch.quantile(v.flatten().double(), a.target_evict).float()
            labels[l, :, :, h] = (us[l, :, :, h] >= thr).float()
    labels[:, :, :a.protect, :] = 1.0
    if a.kind == "mlp":
        gates = nn.ModuleList(MlpGate(cfg.dim, KV, a.head_dim) for _ in range(L))
    else:
        gates = nn.ModuleList(Gate(cfg.dim, KV, a.heads, a.head_dim) for _ in range(L))
    opt = torch.optim.Adam(gates.parameters(), lr=a.lr)
    pos_w = a.target_evict / max(keep_rate, 1e-6)  # class balance: keep labels are the minority when evicting much
    tr = torch.arange(a.seqs)
    print(f"gate: {sum(p.numel() for p in gates.parameters())} parameters for {L} layers x {KV} KV heads; "
          f"calibration {a.seqs}+{n_all - a.seqs} x {T} tokens; teacher {time.time() - t0:.0f}s", flush=True)
    for step in range(a.steps):
        idx = tr[torch.randint(0, a.seqs, (8,))]
        loss = 0.0
        for l in range(L):
            s = gates[l](hs[l, idx])[:, valid]
            y = labels[l, idx][:, valid]
            w = torch.where(y > 0.5, torch.full_like(y, pos_w), torch.ones_like(y))
            loss = loss + F.binary_cross_entropy(s, y, weight=w) + a.rate_weight * (s.mean() - keep_rate) ** 2
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == a.steps - 1:
            print(f"step {step} loss {float(loss) / L:.4f}", flush=True)

    # Held-out agreement with the teacher and score percentiles (from the calibration set).
    res = {}
    quant = []
    with torch.no_grad():
        ho = torch.arange(a.seqs, n_all)
        for l in range(L):
            s_tr = gates[l](hs[l, :a.seqs])[:, valid]
            s_ho = gates[l](hs[l, ho])[:, valid]
            y_ho = labels[l, ho][:, valid]
            for h in range(KV):
                q = torch.quantile(s_tr[..., h].flatten().double(), torch.linspace(0, 1, 101, dtype=torch.float64))
                quant.append(q.float().numpy())
                thr = float(torch.quantile(s_tr[..., h].flatten().double(), a.target_evict))
                pred = s_ho[..., h] >= thr
                yy = y_ho[..., h] > 0.5
                res[f"L{l}H{h}"] = {"agreement": float((pred == yy).float().mean()),
                                    "keep_recall": float((pred & yy).sum() / yy.sum().clamp_min(1)),
                                    "mean_score": float(s_ho[..., h].mean())}
        check_tokens = seqs[-1][:32]
        check = []
        for l in range(L):
            hook_x = hs[l, n_all - 1:n_all, :32]
            check.append(gates[l](hook_x)[0].numpy())  # (32, KV): causal, so the 32-token prefix is exact
    out = a.out or (os.path.splitext(a.model)[0] + ".gate.gguf")
    kv = {"general.architecture": "kvwise-gate", "general.name": os.path.basename(out),
          "kvwise.gate.layers": L, "kvwise.gate.dim": cfg.dim, "kvwise.gate.kv_heads": KV,
          "kvwise.gate.kind": a.kind, "kvwise.gate.heads": a.heads if a.kind == "attention" else 0,
          "kvwise.gate.head_dim": a.head_dim,
          "kvwise.gate.target_evict": float(a.target_evict), "kvwise.gate.model": os.path.basename(a.model),
          "kvwise.gate.recipe": json.dumps({k: v for k, v in vars(a).items() if k not in ("data_dir",)}),
          "kvwise.gate.check_tokens": ("i32", [int(t) for t in check_tokens])}
    ts = []
    for l, g in enumerate(gates):
        f = lambda t: t.detach().numpy().astype(np.float32)
        if a.kind == "mlp":
            ts += [(f"gate.{l}.w1", f(g.w1.weight)), (f"gate.{l}.b1", f(g.w1.bias))]
        else:
            ts += [(f"gate.{l}.wq", f(g.wq.weight)), (f"gate.{l}.wk", f(g.wk.weight)), (f"gate.{l}.wv", f(g.wv.weight))]
        ts += [(f"gate.{l}.wo", f(g.wo.weight)), (f"gate.{l}.bo", f(g.wo.bias))]
    ts.append(("gate.quantiles", np.stack(quant).astype(np.float32)))
    ts.append(("gate.check_scores", np.stack(check).astype(np.float32)))  # (L, 32, KV)
    gguf_io.write_gguf(out, kv, ts)
    summary = {"out": out, "seconds": round(time.time() - t0), "heldout": res,
               "mean_agreement": float(np.mean([r["agreement"] for r in res.values()])),
               "mean_keep_recall": float(np.mean([r["keep_recall"] for r in res.values()]))}
    json.dump(summary, open(os.path.splitext(out)[0] + ".json", "w"), indent=1)
    print(json.dumps({k: summary[k] for k in ("out", "seconds", "mean_agreement", "mean_keep_recall")}), flush=True)


if __name__ == "__main__":
    main()
