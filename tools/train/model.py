"""A llama-architecture transformer in PyTorch whose tensors map one-to-one onto kvwise's GGUF
llama layout: RMSNorm, RoPE on adjacent pairs (llama.cpp's 'norm' rope), grouped-query attention
(query head h reads KV head h // (H/KV)), SwiGLU, tied input/output embeddings."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, vocab=512, dim=128, layers=4, heads=4, kv_heads=2, ffn=384, ctx=1024, rope_base=10000.0,
                 eps=1e-5):
        self.vocab, self.dim, self.layers, self.heads, self.kv_heads = vocab, dim, layers, heads, kv_heads
        self.ffn, self.ctx, self.rope_base, self.eps = ffn, ctx, rope_base, eps
        self.head_dim = dim // heads


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg, T):
    hd = cfg.head_dim
    inv = cfg.rope_base ** (-torch.arange(0, hd, 2, dtype=torch.float32) / hd)
    ang = torch.arange(T, dtype=torch.float32)[:, None] * inv[None, :]
    return torch.cos(ang), torch.sin(ang)  # (T, hd/2)


def apply_rope(x, cos, sin):
    # x: (B, T, heads, hd); rotate adjacent pairs (x[2i], x[2i+1]).
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, hd = cfg.dim, cfg.head_dim
        self.cfg = cfg
        self.attn_norm = RMSNorm(D, cfg.eps)
        self.wq = nn.Linear(D, cfg.heads * hd, bias=False)
        self.wk = nn.Linear(D, cfg.kv_heads * hd, bias=False)
        self.wv = nn.Linear(D, cfg.kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.heads * hd, D, bias=False)
        self.ffn_norm = RMSNorm(D, cfg.eps)
        self.w_gate = nn.Linear(D, cfg.ffn, bias=False)
        self.w_up = nn.Linear(D, cfg.ffn, bias=False)
        self.w_down = nn.Linear(cfg.ffn, D, bias=False)

    def attention(self, x, cos, sin, mask, keep=None):
        """keep: optional (B, KV, T) multiplier per key (Attention-Gate's straight-through flags)."""
        cfg = self.cfg
        B, T, _ = x.shape
        hd, H, KV = cfg.head_dim, cfg.heads, cfg.kv_heads
        q = apply_rope(self.wq(x).view(B, T, H, hd), cos, sin).transpose(1, 2)
        k = apply_rope(self.wk(x).view(B, T, KV, hd), cos, sin).transpose(1, 2)
        v = self.wv(x).view(B, T, KV, hd).transpose(1, 2)
        g = H // KV
        q = q.reshape(B, KV, g * T, hd)  # all query heads of a KV head share its keys
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))  # (B, KV, g*T, T)
        att = att.view(B, KV, g, T, T) + mask
        att = torch.softmax(att, dim=-1)
        if getattr(self, "record", False):
            self.last_att = att.detach()  # (B, KV, g, T, T): the gate trainer's teacher labels
        if keep is not None:
            # A key j evicted (keep 0) is invisible to later queries; its own query still sees it.
            eye = torch.eye(T, dtype=att.dtype)
            m = keep[:, :, None, None, :] * (1 - eye) + eye
            att = att * m
            att = att / att.sum(-1, keepdim=True).clamp_min(1e-9)
        out = (att.view(B, KV, g * T, T) @ v).view(B, H, T, hd)
        return self.wo(out.transpose(1, 2).reshape(B, T, H * hd))

    def forward(self, x, cos, sin, mask, keep=None):
        x = x + self.attention(self.attn_norm(x), cos, sin, mask, keep)
        h = self.ffn_norm(x)
        return x + self.w_down(F.silu(self.w_gate(h)) * self.w_up(h))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = RMSNorm(cfg.dim, cfg.eps)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            if n.endswith("wo.weight") or n.endswith("w_down.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.layers))

    def forward(self, idx, keeps=None, hidden_hook=None):
        B, T = idx.shape
        cos, sin = rope_tables(self.cfg, T)
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.embed(idx)
        for l, b in enumerate(self.blocks):
            keep = None
            if hidden_hook is not None:
                keep = hidden_hook(l, x)
            elif keeps is not None:
                keep = keeps[l]
            x = b(x, cos, sin, mask, keep)
        return self.norm(x) @ self.embed.weight.t()
