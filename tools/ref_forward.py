#!/usr/bin/python3
"""Independent float64 numpy forward pass of a GGUF model of any family kvwise runs (llama, mistral,
qwen2, qwen3, gemma2, gemma3, phi3): the test oracle that kvwise's logits are compared with. Shares
no code with the engine; each family's rules are written out here from llama.cpp's and the papers'
definitions (norm placement, GeGLU, soft-capping, sliding windows, per-layer RoPE bases, Llama 3
RoPE factors, YaRN, fused Phi-3 projections).

usage: ref_forward.py MODEL.gguf TOKENS(comma separated) OUT.f32 [CTX]
writes len(TOKENS) x n_vocab little-endian float32 logits. CTX (default: the model's context) picks
Phi-3's long or short RoPE factors, as the engine's context does."""
import math
import sys

import numpy as np

import gguf_py


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rotate(x, ang, n_rot, neox, mscale):
    # x: (T, heads, head_dim); ang: (T, n_rot / 2)
    half = n_rot // 2
    c, s = np.cos(ang)[:, None, :] * mscale, np.sin(ang)[:, None, :] * mscale
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


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


class Hyper:
    """The family's hyper-parameters and per-layer attention settings."""

    def __init__(self, r, ctx):
        arch = r.kv["general.architecture"]
        g = lambda k, d=None: r.kv.get(f"{arch}.{k}", d)
        self.arch = arch
        self.dim, self.n_layers = g("embedding_length"), g("block_count")
        self.n_heads = g("attention.head_count")
        self.n_kv = g("attention.head_count_kv", self.n_heads)
        self.hd = g("attention.key_length", self.dim // self.n_heads)
        self.n_rot = g("rope.dimension_count", self.hd)
        self.eps = g("attention.layer_norm_rms_epsilon", 1e-5)
        base = g("rope.freq_base", 10000.0)
        n_ctx_train = g("context_length", 2048)
        scaling = g("rope.scaling.type", "linear" if g("rope.scaling.factor") is not None else "none")
        factor = g("rope.scaling.factor", 1.0)
        orig_ctx = g("rope.scaling.original_context_length", n_ctx_train)
        gemma = arch in ("gemma2", "gemma3")
        self.neox = arch in ("qwen2", "qwen3", "gemma2", "gemma3", "phi3")
        self.embed_scale = math.sqrt(self.dim) if gemma else 1.0
        self.gelu = gemma
        self.attn_softcap = g("attn_logit_softcapping", 50.0) if arch == "gemma2" else 0.0
        self.final_softcap = (g("final_logit_softcapping", 30.0) if arch == "gemma2"
                              else g("final_logit_softcapping", 0.0) if arch == "gemma3" else 0.0)
        big = gemma and self.n_layers == (62 if arch == "gemma3" else 46)
        self.scale = 1 / math.sqrt(self.dim // self.n_heads) if big else 1 / math.sqrt(self.hd)
        # Per layer: (window, base, freq_scale)
        linear = 1.0 / factor if scaling == "linear" else 1.0
        self.layers = [(0, base, linear)] * self.n_layers
        window = g("attention.sliding_window", 0)
        if arch == "gemma2":
            w = window or 4096
            self.layers = [(w if l % 2 == 0 else 0, base, linear) for l in range(self.n_layers)]
        if arch == "gemma3" and window:
            self.layers = [((window, 10000.0, 1.0) if l % 6 < 5 else (0, base, linear)) for l in range(self.n_layers)]
        # Per-dimension factors and YaRN.
        half = self.n_rot // 2
        ff = np.ones(half)
        if "rope_freqs.weight" in r.tensors:
            ff = r.tensor("rope_freqs.weight").astype(np.float64)
        elif "rope_factors_long.weight" in r.tensors or "rope_factors_short.weight" in r.tensors:
            name = "rope_factors_long.weight" if ctx > orig_ctx else "rope_factors_short.weight"
            if name not in r.tensors:
                name = "rope_factors_long.weight"
            ff = r.tensor(name).astype(np.float64)
        self.mscale = g("rope.scaling.attn_factor", 1.0)
        self.yarn = scaling == "yarn"
        self.inv = []
        for (_, b, fs) in self.layers:
            inv = b ** (-2.0 * np.arange(half) / self.n_rot) / ff
            if self.yarn:
                fs = 1.0 / factor
                corr = lambda rot: self.n_rot * math.log(orig_ctx / (rot * 2 * math.pi)) / (2 * math.log(b))
                lo = max(0.0, math.floor(corr(g("rope.scaling.yarn_beta_fast", 32.0))))
                hi = min(self.n_rot - 1.0, math.ceil(corr(g("rope.scaling.yarn_beta_slow", 1.0))))
                y = (np.arange(half) - lo) / max(0.001, hi - lo)
                ramp = 1 - np.clip(y, 0, 1)
                inv = inv * (fs * (1 - ramp) + ramp)
            else:
                inv = inv * fs
            self.inv.append(inv)
        if self.yarn:
            self.mscale *= 1 + 0.1 * math.log(factor)


def forward(r, tokens, ctx=None):
    arch = r.kv["general.architecture"]
    n_ctx = r.kv.get(f"{arch}.context_length", 2048)
    hp = Hyper(r, ctx or n_ctx)
    t = lambda name: r.tensor(name)
    has = lambda name: name in r.tensors
    T, H, KV, hd = len(tokens), hp.n_heads, hp.n_kv, hp.hd
    pos = np.arange(T, dtype=np.float64)
    x = t("token_embd.weight")[tokens] * hp.embed_scale
    for l in range(hp.n_layers):
        p = f"blk.{l}."
        window, _, _ = hp.layers[l]
        xn = rmsnorm(x, t(p + "attn_norm.weight"), hp.eps)
        if has(p + "attn_qkv.weight"):
            qkv = xn @ t(p + "attn_qkv.weight").T
            q, k, v = qkv[:, :H * hd], qkv[:, H * hd:(H + KV) * hd], qkv[:, (H + KV) * hd:]
        else:
            q = xn @ t(p + "attn_q.weight").T
            k = xn @ t(p + "attn_k.weight").T
            v = xn @ t(p + "attn_v.weight").T
        if has(p + "attn_q.bias"):
            q, k, v = q + t(p + "attn_q.bias"), k + t(p + "attn_k.bias"), v + t(p + "attn_v.bias")
        q, k, v = q.reshape(T, H, hd), k.reshape(T, KV, hd), v.reshape(T, KV, hd)
        if has(p + "attn_q_norm.weight"):
            q = rmsnorm(q, t(p + "attn_q_norm.weight"), hp.eps)
            k = rmsnorm(k, t(p + "attn_k_norm.weight"), hp.eps)
        ang = pos[:, None] * hp.inv[l][None, :]
        q = rotate(q, ang, hp.n_rot, hp.neox, hp.mscale)
        k = rotate(k, ang, hp.n_rot, hp.neox, hp.mscale)
        mask = np.triu(np.full((T, T), -np.inf), 1)
        if window:
            mask = mask + np.tril(np.full((T, T), -np.inf), -window)  # key at p - window or earlier
        out = np.zeros((T, H, hd))
        grp = H // KV
        for h in range(H):
            kh = h // grp
            s = q[:, h, :] @ k[:, kh, :].T * hp.scale
            if hp.attn_softcap:
                s = hp.attn_softcap * np.tanh(s / hp.attn_softcap)
            s = s + mask
            s = np.exp(s - s.max(axis=1, keepdims=True))
            s /= s.sum(axis=1, keepdims=True)
            out[:, h, :] = s @ v[:, kh, :]
        a = out.reshape(T, H * hd) @ t(p + "attn_output.weight").T
        if has(p + "post_attention_norm.weight"):
            a = rmsnorm(a, t(p + "post_attention_norm.weight"), hp.eps)
        x = x + a
        xn = rmsnorm(x, t(p + "ffn_norm.weight"), hp.eps)
        if has(p + "ffn_gate.weight"):
            gate = xn @ t(p + "ffn_gate.weight").T
            up = xn @ t(p + "ffn_up.weight").T
        else:  # fused gate/up (phi3): gate first
            gu = xn @ t(p + "ffn_up.weight").T
            gate, up = gu[:, :gu.shape[1] // 2], gu[:, gu.shape[1] // 2:]
        act = gelu_tanh(gate) if hp.gelu else gate / (1 + np.exp(-gate))
        f = (act * up) @ t(p + "ffn_down.weight").T
        if has(p + "post_ffw_norm.weight"):
            f = rmsnorm(f, t(p + "post_ffw_norm.weight"), hp.eps)
        x = x + f
    xn = rmsnorm(x, t("output_norm.weight"), hp.eps)
    out_w = t("output.weight") if has("output.weight") else t("token_embd.weight")
    logits = xn @ out_w.T
    if hp.final_softcap:
        logits = hp.final_softcap * np.tanh(logits / hp.final_softcap)
    return logits


def main():
    r = gguf_py.Reader(sys.argv[1])
    tokens = [int(s) for s in sys.argv[2].split(",")]
    ctx = int(sys.argv[4]) if len(sys.argv) > 4 else None
    logits = forward(r, tokens, ctx)
    logits.astype("<f4").tofile(sys.argv[3])


if __name__ == "__main__":
    main()
