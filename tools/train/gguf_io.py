"""GGUF (v3) writing and loading for the training tools: a trained `model.Llama` becomes a llama GGUF
that kvwise and llama.cpp load (F16 matrices, F32 norms, SentencePiece vocabulary), and an existing
GGUF loads back into `model.Llama` (for gate training on a frozen backbone)."""
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import gguf_py  # noqa: E402
import model as model_py  # noqa: E402

T_U8, T_I8, T_U16, T_I16, T_U32, T_I32, T_F32, T_BOOL, T_STR, T_ARR, T_U64, T_I64, T_F64 = range(13)
GGML_F32, GGML_F16 = 0, 1


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _value(v):
    """(type, bytes) for a Python value; lists must be homogeneous."""
    if isinstance(v, bool):
        return T_BOOL, struct.pack("<?", v)
    if isinstance(v, int):
        return (T_U32, struct.pack("<I", v)) if 0 <= v < 2 ** 32 else (T_I64, struct.pack("<q", v))
    if isinstance(v, float):
        return T_F32, struct.pack("<f", v)
    if isinstance(v, str):
        return T_STR, _str(v)
    if isinstance(v, tuple) and len(v) == 2 and v[0] in ("i32", "f32"):  # typed arrays
        kind, xs = v
        t = T_I32 if kind == "i32" else T_F32
        fmt = "<i" if kind == "i32" else "<f"
        return T_ARR, struct.pack("<IQ", t, len(xs)) + b"".join(struct.pack(fmt, x) for x in xs)
    if isinstance(v, list):
        if all(isinstance(x, str) for x in v):
            return T_ARR, struct.pack("<IQ", T_STR, len(v)) + b"".join(_str(x) for x in v)
    raise TypeError(f"unsupported GGUF value {type(v)}")


def write_gguf(path, kv, tensors, alignment=32):
    """kv: dict key -> value; tensors: list of (name, np.ndarray float32/float16) in numpy (row-major)
    shape; GGUF dims are the reversed shape."""
    head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for k, v in kv.items():
        t, b = _value(v)
        head += _str(k) + struct.pack("<I", t) + b
    datas, off = [], 0
    for name, arr in tensors:
        arr = np.ascontiguousarray(arr)
        gtype = GGML_F16 if arr.dtype == np.float16 else GGML_F32
        if gtype == GGML_F32:
            arr = arr.astype(np.float32)
        dims = list(reversed(arr.shape))
        head += _str(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        head += struct.pack("<IQ", gtype, off)
        raw = arr.tobytes()
        datas.append(raw)
        off += (len(raw) + alignment - 1) // alignment * alignment
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(head)
        f.write(b"\0" * ((-len(head)) % alignment))
        for raw in datas:
            f.write(raw)
            f.write(b"\0" * ((-len(raw)) % alignment))
    os.replace(tmp, path)


def tokenizer_kv(reader):
    """The SentencePiece vocabulary keys of an existing GGUF, to copy into a new one."""
    kv = reader.kv
    out = {"tokenizer.ggml.model": kv["tokenizer.ggml.model"],
           "tokenizer.ggml.tokens": list(kv["tokenizer.ggml.tokens"]),
           "tokenizer.ggml.scores": ("f32", list(kv["tokenizer.ggml.scores"])),
           "tokenizer.ggml.token_type": ("i32", list(kv["tokenizer.ggml.token_type"]))}
    for k in ("bos_token_id", "eos_token_id", "unknown_token_id", "add_bos_token", "add_eos_token"):
        if "tokenizer.ggml." + k in kv:
            out["tokenizer.ggml." + k] = kv["tokenizer.ggml." + k]
    return out


def export_llama(m, path, name, tokenizer, extra_kv=None):
    cfg = m.cfg
    kv = {"general.architecture": "llama", "general.name": name,
          "llama.context_length": cfg.ctx, "llama.embedding_length": cfg.dim, "llama.block_count": cfg.layers,
          "llama.feed_forward_length": cfg.ffn, "llama.rope.dimension_count": cfg.head_dim,
          "llama.rope.freq_base": float(cfg.rope_base),
          "llama.attention.head_count": cfg.heads, "llama.attention.head_count_kv": cfg.kv_heads,
          "llama.attention.layer_norm_rms_epsilon": float(cfg.eps), "general.file_type": 1}
    kv.update(tokenizer)
    kv.update(extra_kv or {})
    h16 = lambda t: t.detach().float().numpy().astype(np.float16)
    f32 = lambda t: t.detach().float().numpy().astype(np.float32)
    ts = [("token_embd.weight", h16(m.embed.weight))]
    for l, b in enumerate(m.blocks):
        p = f"blk.{l}."
        ts += [(p + "attn_norm.weight", f32(b.attn_norm.weight)), (p + "attn_q.weight", h16(b.wq.weight)),
               (p + "attn_k.weight", h16(b.wk.weight)), (p + "attn_v.weight", h16(b.wv.weight)),
               (p + "attn_output.weight", h16(b.wo.weight)), (p + "ffn_norm.weight", f32(b.ffn_norm.weight)),
               (p + "ffn_gate.weight", h16(b.w_gate.weight)), (p + "ffn_up.weight", h16(b.w_up.weight)),
               (p + "ffn_down.weight", h16(b.w_down.weight))]
    ts.append(("output_norm.weight", f32(m.norm.weight)))
    write_gguf(path, kv, ts)


def load_llama(path):
    """A GGUF llama model (tied or untied classifier is not supported: tied only) as model.Llama, and
    the reader (for its tokenizer)."""
    r = gguf_py.Reader(path)
    g = lambda k, d=None: r.kv.get("llama." + k, d)
    dim, heads = g("embedding_length"), g("attention.head_count")
    cfg = model_py.Config(vocab=len(r.kv["tokenizer.ggml.tokens"]), dim=dim, layers=g("block_count"), heads=heads,
                          kv_heads=g("attention.head_count_kv", heads), ffn=g("feed_forward_length"),
                          ctx=g("context_length"), rope_base=g("rope.freq_base", 10000.0),
                          eps=g("attention.layer_norm_rms_epsilon", 1e-5))
    if g("rope.dimension_count", cfg.head_dim) != cfg.head_dim:
        raise ValueError(f"{path}: partial RoPE is not supported by the training tools")
    if "output.weight" in r.tensors:
        raise ValueError(f"{path}: untied output weights are not supported by the training tools")
    m = model_py.Llama(cfg)
    t = lambda n: torch.tensor(r.tensor(n), dtype=torch.float32)
    with torch.no_grad():
        m.embed.weight.copy_(t("token_embd.weight"))
        for l, b in enumerate(m.blocks):
            p = f"blk.{l}."
            for mod, n in ((b.attn_norm, "attn_norm"), (b.wq, "attn_q"), (b.wk, "attn_k"), (b.wv, "attn_v"),
                           (b.wo, "attn_output"), (b.ffn_norm, "ffn_norm"), (b.w_gate, "ffn_gate"),
                           (b.w_up, "ffn_up"), (b.w_down, "ffn_down")):
                mod.weight.copy_(t(p + n + ".weight"))
        m.norm.weight.copy_(t("output_norm.weight"))
    return m, r
