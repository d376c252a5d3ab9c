#!/usr/bin/python3
"""Trains kvwise's bundled long-context retrieval model from scratch on CPU (or a GPU where one is
lent) and exports it to GGUF. One command, fixed seed:

    tools/train/train.py --out models/kvwise-retrieval.gguf

Data: ../shared/data (essays, Shakespeare, TinyStories) mixed with passkey, needle, key-value and
variable-tracking tasks (tasks.py); the tokenizer is stories260K's 512-piece SentencePiece vocabulary.
Curriculum: first a short phase of pure copying at context 64 (random pieces repeated with a random
period), which forms induction heads in about 150 steps; without it the task mix stays at chance for
thousands of steps (models/README.md). Then the task mix at context 128 -> 256 -> 512 -> 1024 at a
constant number of tokens per step; loss weighted on answer tokens. Writes a CSV log and a JSON
summary next to the output (for the model card)."""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))
import gguf_io  # noqa: E402
import gguf_py  # noqa: E402
import model as model_py  # noqa: E402
import spm  # noqa: E402
import tasks  # noqa: E402


def parse_phases(s):
    """'64:1000:copy:1024,256:1200,1024:1000' -> [(64, 1000, 'copy', 1024), (256, 1200, None, None), ...]:
    context, steps, optionally the only task kind of the phase ('' or absent: the whole mix) and the
    phase's tokens per step (absent: --tokens-per-step)."""
    out = []
    for part in s.split(","):
        f = part.split(":")
        out.append((int(f[0]), int(f[1]), (f[2] or None) if len(f) > 2 else None, int(f[3]) if len(f) > 3 else None))
    return out


def batch(tm, T, B, answer_weight, kind=None):
    xs, ws = zip(*(tm.sample(T, answer_weight, kind) for _ in range(B)))
    x = torch.tensor(xs, dtype=torch.long)
    w = torch.tensor(ws, dtype=torch.float32)
    return x[:, :-1], x[:, 1:], w[:, 1:]


def answer_exact(logits, y, w):
    """Per sequence: all answer tokens (weight > 1) predicted by argmax. Teacher-forced exact match
    equals greedy decoding's result, since a greedy run only diverges at a wrong argmax."""
    pred = logits.argmax(-1)
    ans = w > 1.0
    ok = ((pred == y) | ~ans).all(-1)
    return ok.float(), ans.any(-1)


@torch.no_grad()
def evaluate(m, sets):
    m.eval()
    res = {}
    for name, (x, y, w) in sets.items():
        accs = []
        for i in range(0, x.shape[0], 8):
            lo = m(x[i:i + 8])
            ok, has = answer_exact(lo, y[i:i + 8], w[i:i + 8])
            accs.append(ok[has])
        res[name] = float(torch.cat(accs).mean())
    m.train()
    return res


def eval_sets(tok, held_texts, T, n, seed):
    tm = tasks.TaskMaker(tok, held_texts, seed)
    # Weight 4: answer tokens get 4 (repeat spans 2), both counted as answers (weight > 1).
    return {k: batch(tm, T, n, 4.0, kind=k) for k in ("passkey", "needle", "kv", "vars", "repeat", "induct")}


@torch.no_grad()
def perplexity(m, tok, held_texts, T, max_windows=24):
    ids = []
    for _, t in held_texts:
        ids += tok.encode(t)
    nll, cnt = 0.0, 0
    m.eval()
    for a in range(0, min(len(ids) - T - 1, max_windows * T), T):
        x = torch.tensor([[tok.bos] + ids[a:a + T]])
        lo = m(x[:, :-1])
        nll += float(F.cross_entropy(lo[0], x[0, 1:], reduction="sum"))
        cnt += T
    m.train()
    return math.exp(nll / max(cnt, 1))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default=os.environ.get("KVWISE_DATA", os.path.join(HERE, "..", "..", "..", "shared")))
    ap.add_argument("--out", default="models/kvwise-retrieval.gguf")
    ap.add_argument("--name", default="kvwise-retrieval-0.9m-v1")
    ap.add_argument("--phases", default="64:250:copy,128:450,256:400,512:350,1024:400",
                    help="context:steps[:kind[:tokens per step]], ...")
    ap.add_argument("--tokens-per-step", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ffn", type=int, default=384)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--answer-weight", type=float, default=10.0)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("KVWISE_TRAIN_THREADS", "2")))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-steps", type=int, default=0,
                    help="stop after this many steps (the schedule still spans all phases); 0: all")
    ap.add_argument("--export-from", default="",
                    help="no training: evaluate and export this checkpoint (.pt) of a run made with the same "
                         "arguments (step and token counts follow from --phases and --max-steps)")
    ap.add_argument("--init", default="", help="start from this checkpoint (.pt of an earlier run, or a .gguf model) instead of random")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.set_num_threads(a.threads)
    phases = parse_phases(a.phases)
    ctx = max(p[0] for p in phases)

    ref = gguf_py.Reader(os.path.join(a.data_dir, "models", "stories260K", "stories260K.gguf"))
    tok = spm.Spm.from_gguf(ref)
    train_texts, held_texts = tasks.read_corpus(a.data_dir)
    tm = tasks.TaskMaker(tok, train_texts, a.seed)
    cfg = model_py.Config(vocab=len(tok.tokens), dim=a.dim, layers=a.layers, heads=a.heads, kv_heads=a.kv_heads,
                          ffn=a.ffn, ctx=ctx)
    m = model_py.Llama(cfg)
    if a.init.endswith(".gguf"):  # fine-tune a released model (v2 starts from v1)
        m.load_state_dict(gguf_io.load_llama(a.init)[0].state_dict())
        print(f"initialised from {a.init}", flush=True)
    elif a.init:
        m.load_state_dict(torch.load(a.init))
        print(f"initialised from {a.init}", flush=True)
    n_params = sum(p.numel() for p in m.parameters())
    decay = [p for p in m.parameters() if p.dim() == 2]
    no_decay = [p for p in m.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    total = sum(p[1] for p in phases)
    stop = a.max_steps or total
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    stem = os.path.splitext(a.out)[0]
    log = open(os.devnull if a.export_from else stem + ".train.csv", "w")  # exporting keeps the run's log
    log.write("step,context,tokens,seconds,loss,answer_loss,passkey,needle,kv,vars,repeat,induct\n")
    print(f"model: {n_params} parameters, {cfg.layers} layers, dim {cfg.dim}, {cfg.heads}/{cfg.kv_heads} heads; "
          f"{total} steps, phases {phases}", flush=True)
    step, seen, t0 = 0, 0, time.time()
    ema = None
    sets_by_T = {}
    if a.export_from:
        m.load_state_dict(torch.load(a.export_from))
        for T, n_steps, kind, tps in phases:
            n = min(n_steps, stop - step)
            step += n
            seen += n * max(1, (tps or a.tokens_per_step) // T) * T
        phases = []
    for T, n_steps, kind, tps in phases:
        B = max(1, (tps or a.tokens_per_step) // T)
        if T not in sets_by_T:
            sets_by_T[T] = eval_sets(tok, held_texts, T, 32, a.seed + 7)
        for _ in range(n_steps):
            if step >= stop:
                break
            lr = a.lr * min(1.0, (step + 1) / a.warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / total)))
            for g in opt.param_groups:
                g["lr"] = lr
            x, y, w = batch(tm, T, B, a.answer_weight, kind)
            lo = m(x)
            ce = F.cross_entropy(lo.reshape(-1, cfg.vocab), y.reshape(-1), reduction="none").view_as(w)
            loss = (ce * w).sum() / w.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
            opt.step()
            step += 1
            seen += B * T
            ans = w > 1.0
            aloss = float(ce[ans].mean()) if ans.any() else float("nan")
            cur = (float(ce[~ans & (w > 0)].mean()), aloss)
            # An exponential average that skips steps without such tokens (a copy phase has no text loss).
            ema = cur if ema is None else tuple(c if math.isnan(e) else e if math.isnan(c) else 0.98 * e + 0.02 * c
                                                for e, c in zip(ema, cur))
            if step % a.eval_every == 0 or step == stop or step == 1:
                acc = evaluate(m, sets_by_T[T])
                el = time.time() - t0
                log.write(f"{step},{T},{seen},{el:.0f},{ema[0]:.4f},{ema[1]:.4f},{acc['passkey']:.3f},"
                          f"{acc['needle']:.3f},{acc['kv']:.3f},{acc['vars']:.3f},{acc['repeat']:.3f},{acc['induct']:.3f}\n")
                log.flush()
                print(f"step {step}/{total} ctx {T} tokens {seen} {el:.0f}s lr {lr:.2e} text-loss {ema[0]:.3f} "
                      f"answer-loss {ema[1]:.3f} acc {acc}", flush=True)
                torch.save(m.state_dict(), stem + ".pt")
    train_seconds = None if a.export_from else round(time.time() - t0)
    if stop < total:
        print(f"stopped after {step} of {total} steps (the learning rate had not decayed)", flush=True)
    final = evaluate(m, eval_sets(tok, held_texts, ctx, 64, a.seed + 99))
    ppl = perplexity(m, tok, held_texts, ctx)
    summary = {"name": a.name, "parameters": n_params, "config": vars(cfg), "args": vars(a), "steps": step,
               "tokens": seen, "train_seconds": train_seconds, "heldout_exact_match_at_ctx": final,
               "heldout_perplexity_at_ctx": ppl, "torch": torch.__version__, "threads": a.threads}
    print(json.dumps(summary, indent=1), flush=True)
    json.dump(summary, open(stem + ".train.json", "w"), indent=1)
    extra = {"general.description": "kvwise's bundled long-context retrieval model (see models/README.md)",
             "general.license": "MIT", "kvwise.training.seed": a.seed, "kvwise.training.steps": step,
             "kvwise.training.tokens": seen, "kvwise.training.phases": a.phases}
    gguf_io.export_llama(m, a.out, a.name, gguf_io.tokenizer_kv(ref), extra)
    print(f"wrote {a.out}", flush=True)


if __name__ == "__main__":
    main()
