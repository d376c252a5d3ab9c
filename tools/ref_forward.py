#!/usr/bin/python3
"""Independent float64 numpy forward pass of a llama/mistral/qwen2 GGUF model: the test oracle
that kvwise's logits are compared with. Shares no code with the engine.

usage: ref_forward.py MODEL.gguf TOKENS(comma separated) OUT.f32
writes len(TOKENS) x n_vocab little-endian float32 logits."""
import sys

import numpy as np

import gguf_py


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, n_rot, base, factor, neox):
    # x: (T, heads, head_dim)
    half = n_rot // 2
    inv = base ** (-2.0 * np.arange(half) / n_rot)
    ang = (pos[:, None] / factor) * inv[None, :]  # (T, half)
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x = x.copy()
    if neox:
        a, b = x[..., :half].copy(), x[..., half:n_rot].copy()
        x[..., :half] = a * c - b * s
        x[..., half:n_rot] = a * s + b * c
    else:
        a, b = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()
        x[..., 0:n_rot:2] = a * c - b * s
        x[..., 1:n_rot:2] = a * s + b * c
    return x


def forward(r, tokens):
    arch = r.kv["general.architecture"]
    g = lambda k, d=None: r.kv.get(f"{arch}.{k}", d)
    dim, n_layers = g("embedding_length"), g("block_count")
    n_heads = g("attention.head_count")
    n_kv = g("attention.head_count_kv", n_heads)
    hd = g("attention.key_length", dim // n_heads)
    n_rot = g("rope.dimension_count", hd)
    eps = g("attention.layer_norm_rms_epsilon", 1e-5)
    base = g("rope.freq_base", 10000.0)
    factor = g("rope.scaling.factor", 1.0) if g("rope.scaling.type", "none") == "linear" else 1.0
    neox = arch == "qwen2"
    t = lambda name: r.tensor(name)
    has = lambda name: name in r.tensors
    T = len(tokens)
    pos = np.arange(T, dtype=np.float64)
    x = t("token_embd.weight")[tokens]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(n_layers):
        p = f"blk.{l}."
        xn = rmsnorm(x, t(p + "attn_norm.weight"), eps)
        q = xn @ t(p + "attn_q.weight").T
        k = xn @ t(p + "attn_k.weight").T
        v = xn @ t(p + "attn_v.weight").T
        if has(p + "attn_q.bias"):
            q, k, v = q + t(p + "attn_q.bias"), k + t(p + "attn_k.bias"), v + t(p + "attn_v.bias")
        q = rope(q.reshape(T, n_heads, hd), pos, n_rot, base, factor, neox)
        k = rope(k.reshape(T, n_kv, hd), pos, n_rot, base, factor, neox)
        v = v.reshape(T, n_kv, hd)
        out = np.zeros((T, n_heads, hd))
        grp = n_heads // n_kv
        for h in range(n_heads):
            kh = h // grp
            s = q[:, h, :] @ k[:, kh, :].T / np.sqrt(hd) + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            out[:, h, :] = s @ v[:, kh, :]
        x = x + out.reshape(T, n_heads * hd) @ t(p + "attn_output.weight").T
        xn = rmsnorm(x, t(p + "ffn_norm.weight"), eps)
        gate = xn @ t(p + "ffn_gate.weight").T
        up = xn @ t(p + "ffn_up.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ t(p + "ffn_down.weight").T
    xn = rmsnorm(x, t("output_norm.weight"), eps)
    out_w = t("output.weight") if has("output.weight") else t("token_embd.weight")
    return xn @ out_w.T


def main():
    r = gguf_py.Reader(sys.argv[1])
    tokens = [int(s) for s in sys.argv[2].split(",")]
    logits = forward(r, tokens)
    logits.astype("<f4").tofile(sys.argv[3])


if __name__ == "__main__":
    main()
