"""Minimal independent GGUF reader and dequantizers in numpy (test oracle only; the engine never uses it)."""
import struct
import numpy as np

# ggml type id -> (name, block elements, block bytes)
TYPES = {0: ("F32", 1, 4), 1: ("F16", 1, 2), 2: ("Q4_0", 32, 18), 3: ("Q4_1", 32, 20), 6: ("Q5_0", 32, 22),
         7: ("Q5_1", 32, 24), 8: ("Q8_0", 32, 34), 10: ("Q2_K", 256, 84), 11: ("Q3_K", 256, 110),
         12: ("Q4_K", 256, 144), 13: ("Q5_K", 256, 176), 14: ("Q6_K", 256, 210), 20: ("IQ4_NL", 32, 18),
         23: ("IQ4_XS", 256, 136), 30: ("BF16", 1, 2)}
IQ4 = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.float64)


def k_scale_min(sc, j):
    """The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (sc: the 12 scale bytes as int64)."""
    if j < 4:
        return sc[:, j] & 63, sc[:, j + 4] & 63
    return (sc[:, j + 4] & 0xF) | ((sc[:, j - 4] >> 6) << 4), (sc[:, j + 4] >> 4) | ((sc[:, j] >> 6) << 4)


def bits_le(b, nbits):
    """Bit i of each row of bytes b (little-endian bit order) for i < nbits, as int64."""
    return (np.unpackbits(b, axis=1, bitorder="little")[:, :nbits]).astype(np.int64)


class Reader:
    def __init__(self, path):
        self.buf = open(path, "rb").read()
        self.off = 0
        magic = self.buf[:4]
        assert magic == b"GGUF", magic
        self.off = 4
        self.version = self._u32()
        n_tensors = self._u64()
        n_kv = self._u64()
        self.kv = {}
        for _ in range(n_kv):
            key = self._str()
            t = self._u32()
            self.kv[key] = self._val(t)
        self.tensors = {}
        for _ in range(n_tensors):
            name = self._str()
            nd = self._u32()
            dims = [self._u64() for _ in range(nd)]
            t = self._u32()
            off = self._u64()
            self.tensors[name] = (dims, t, off)
        align = self.kv.get("general.alignment", 32)
        self.data_start = (self.off + align - 1) // align * align

    def _u32(self):
        v = struct.unpack_from("<I", self.buf, self.off)[0]; self.off += 4; return v

    def _u64(self):
        v = struct.unpack_from("<Q", self.buf, self.off)[0]; self.off += 8; return v

    def _str(self):
        n = self._u64(); s = self.buf[self.off:self.off + n]; self.off += n
        return s.decode("utf-8", errors="surrogateescape")

    def _val(self, t):
        fmts = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
        if t in fmts:
            v = struct.unpack_from(fmts[t], self.buf, self.off)[0]
            self.off += struct.calcsize(fmts[t]); return v
        if t == 8:
            return self._str()
        if t == 9:
            et = self._u32(); n = self._u64()
            return [self._val(et) for _ in range(n)]
        raise ValueError(f"bad gguf value type {t}")

    def tensor(self, name):
        """Returns the tensor dequantized to float64 with numpy shape reversed from ggml dims."""
        dims, t, off = self.tensors[name]
        n = int(np.prod(dims))
        tname, be, bb = TYPES[t]
        raw = np.frombuffer(self.buf, dtype=np.uint8, count=n // be * bb, offset=self.data_start + off)
        flat = dequant(tname, raw, n)
        return flat.reshape(list(reversed(dims)))


def f16(a):
    return a.view(np.float16).astype(np.float64)


def dequant(tname, raw, n):
    if tname == "F32":
        return raw.view(np.float32).astype(np.float64)
    if tname == "F16":
        return f16(raw)
    if tname == "BF16":
        u = raw.view(np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).astype(np.float64)
    if tname == "Q8_0":
        b = raw.reshape(-1, 34)
        d = f16(b[:, :2].copy())
        q = b[:, 2:].view(np.int8).astype(np.float64)
        return (q * d).reshape(-1)
    if tname == "Q4_0":
        b = raw.reshape(-1, 18)
        d = f16(b[:, :2].copy())
        qs = b[:, 2:]
        lo = (qs & 0x0F).astype(np.float64) - 8
        hi = (qs >> 4).astype(np.float64) - 8
        return (np.concatenate([lo, hi], axis=1) * d).reshape(-1)
    if tname == "Q4_K":
        b = raw.reshape(-1, 144)
        d = f16(b[:, 0:2].copy()).reshape(-1); dmin = f16(b[:, 2:4].copy()).reshape(-1)
        sc = b[:, 4:16].astype(np.int64); qs = b[:, 16:]
        out = np.zeros((b.shape[0], 256))
        for j in range(8):
            if j < 4:
                s = sc[:, j] & 63; m = sc[:, j + 4] & 63
            else:
                s = (sc[:, j + 4] & 0xF) | ((sc[:, j - 4] >> 6) << 4)
                m = (sc[:, j + 4] >> 4) | ((sc[:, j] >> 6) << 4)
            chunk = qs[:, (j // 2) * 32:(j // 2) * 32 + 32]
            q = (chunk & 0xF) if j % 2 == 0 else (chunk >> 4)
            out[:, j * 32:(j + 1) * 32] = (d * s)[:, None] * q - (dmin * m)[:, None]
        return out.reshape(-1)
    if tname == "Q6_K":
        b = raw.reshape(-1, 210)
        ql = b[:, 0:128].astype(np.int64); qh = b[:, 128:192].astype(np.int64)
        sc = b[:, 192:208].view(np.int8).astype(np.float64); d = f16(b[:, 208:210].copy()).reshape(-1)
        out = np.zeros((b.shape[0], 256))
        for half in range(2):
            L = ql[:, half * 64:(half + 1) * 64]; H = qh[:, half * 32:(half + 1) * 32]
            for l in range(32):
                q1 = ((L[:, l] & 0xF) | (((H[:, l] >> 0) & 3) << 4)) - 32
                q2 = ((L[:, l + 32] & 0xF) | (((H[:, l] >> 2) & 3) << 4)) - 32
                q3 = ((L[:, l] >> 4) | (((H[:, l] >> 4) & 3) << 4)) - 32
                q4 = ((L[:, l + 32] >> 4) | (((H[:, l] >> 6) & 3) << 4)) - 32
                base = half * 128; is_ = half * 8 + l // 16
                out[:, base + l] = d * sc[:, is_ + 0] * q1
                out[:, base + l + 32] = d * sc[:, is_ + 2] * q2
                out[:, base + l + 64] = d * sc[:, is_ + 4] * q3
                out[:, base + l + 96] = d * sc[:, is_ + 6] * q4
        return out.reshape(-1)
    if tname in ("Q4_1", "Q5_0", "Q5_1"):
        bb = {"Q4_1": 20, "Q5_0": 22, "Q5_1": 24}[tname]
        b = raw.reshape(-1, bb)
        d = f16(b[:, :2].copy())
        m = f16(b[:, 2:4].copy()) if tname != "Q5_0" else 0.0
        qs = b[:, bb - 16:].astype(np.int64)
        q = np.concatenate([qs & 0xF, qs >> 4], axis=1)
        if tname != "Q4_1":
            h0 = 2 if tname == "Q5_0" else 4
            q = q | (bits_le(b[:, h0:h0 + 4].copy(), 32) << 4)
        if tname == "Q5_0":
            return ((q - 16) * d).reshape(-1)
        return (q * d + m).reshape(-1)
    if tname == "Q5_K":
        b = raw.reshape(-1, 176)
        d = f16(b[:, 0:2].copy()).reshape(-1); dmin = f16(b[:, 2:4].copy()).reshape(-1)
        sc = b[:, 4:16].astype(np.int64); qh = b[:, 16:48].astype(np.int64); qs = b[:, 48:].astype(np.int64)
        out = np.zeros((b.shape[0], 256))
        for j in range(8):
            s_, m_ = k_scale_min(sc, j)
            chunk = qs[:, (j // 2) * 32:(j // 2) * 32 + 32]
            q = ((chunk & 0xF) if j % 2 == 0 else (chunk >> 4)) + (((qh >> j) & 1) << 4)
            out[:, j * 32:(j + 1) * 32] = (d * s_)[:, None] * q - (dmin * m_)[:, None]
        return out.reshape(-1)
    if tname == "Q2_K":
        b = raw.reshape(-1, 84)
        sc = b[:, :16].astype(np.int64); qs = b[:, 16:80].astype(np.int64)
        d = f16(b[:, 80:82].copy()).reshape(-1); dmin = f16(b[:, 82:84].copy()).reshape(-1)
        out = np.zeros((b.shape[0], 256))
        # element e: 128-group n, shift s, sub-block 16 l: code (qs[32n + (e % 32)] >> 2s) & 3, scale index e // 16
        for e16 in range(16):
            n, r = divmod(e16, 8)
            shift, half = divmod(r, 2)
            q = (qs[:, 32 * n + 16 * half:32 * n + 16 * half + 16] >> (2 * shift)) & 3
            out[:, e16 * 16:(e16 + 1) * 16] = (d * (sc[:, e16] & 0xF))[:, None] * q - (dmin * (sc[:, e16] >> 4))[:, None]
        return out.reshape(-1)
    if tname == "Q3_K":
        b = raw.reshape(-1, 110)
        hm = b[:, :32].astype(np.int64); qs = b[:, 32:96].astype(np.int64); raw_sc = b[:, 96:108].astype(np.int64)
        d = f16(b[:, 108:110].copy()).reshape(-1)
        scales = np.zeros((b.shape[0], 16), dtype=np.int64)
        for j in range(16):  # low 4 bits from bytes 0..7, high 2 bits from bytes 8..11
            lo = (raw_sc[:, j % 8] >> (4 * (j // 8))) & 0xF
            hi = (raw_sc[:, 8 + j % 4] >> (2 * (j // 4))) & 3
            scales[:, j] = (lo | (hi << 4)) - 32
        out = np.zeros((b.shape[0], 256))
        for e16 in range(16):
            n, r = divmod(e16, 8)
            shift, half = divmod(r, 2)
            idx = slice(16 * half, 16 * half + 16)
            low = (qs[:, 32 * n + 16 * half:32 * n + 16 * half + 16] >> (2 * shift)) & 3
            high = (hm[:, idx] >> (4 * n + shift)) & 1
            out[:, e16 * 16:(e16 + 1) * 16] = (d * scales[:, e16])[:, None] * (low - 4 * (1 - high))
        return out.reshape(-1)
    if tname == "IQ4_NL":
        b = raw.reshape(-1, 18)
        d = f16(b[:, :2].copy())
        qs = b[:, 2:].astype(np.int64)
        return (IQ4[np.concatenate([qs & 0xF, qs >> 4], axis=1)] * d).reshape(-1)
    if tname == "IQ4_XS":
        b = raw.reshape(-1, 136)
        d = f16(b[:, :2].copy()).reshape(-1)
        sh = b[:, 2].astype(np.int64) | (b[:, 3].astype(np.int64) << 8)
        sl = b[:, 4:8].astype(np.int64); qs = b[:, 8:].astype(np.int64)
        out = np.zeros((b.shape[0], 256))
        for ib in range(8):
            ls = ((sl[:, ib // 2] >> (4 * (ib % 2))) & 0xF) | (((sh >> (2 * ib)) & 3) << 4)
            q = qs[:, 16 * ib:16 * ib + 16]
            out[:, 32 * ib:32 * ib + 32] = (d * (ls - 32))[:, None] * IQ4[np.concatenate([q & 0xF, q >> 4], axis=1)]
        return out.reshape(-1)
    raise ValueError(tname)


if __name__ == "__main__":
    import sys
    r = Reader(sys.argv[1])
    print("version", r.version)
    for k, v in r.kv.items():
        if isinstance(v, list):
            print(k, f"[{len(v)}]", v[:12])
        else:
            print(k, repr(v)[:200])
    for k, (dims, t, off) in r.tensors.items():
        print(k, dims, TYPES.get(t, (t,))[0], off)
