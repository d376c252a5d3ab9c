"""SentencePiece-style BPE encoder in pure Python, the same algorithm as kvwise's tokenizer_spm.cpp
(and llama.cpp's llm_tokenizer_spm): spaces become U+2581, each encode() call gets a space prefix,
adjacent pieces merge greedily by highest score (ties: leftmost), unknown characters fall back to
<0xXX> byte tokens. Used by the training tool so training data is tokenized exactly as the engine does."""
import heapq

SPACE = "\u2581"


class Spm:
    def __init__(self, tokens, scores, types):
        self.tokens = list(tokens)
        self.scores = list(scores)
        self.types = list(types)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        self.byte_ids = [self.ids.get(f"<0x{b:02X}>", -1) for b in range(256)]
        self.bos, self.eos, self.unk = 1, 2, 0
        # The chunk cache below is only exact when no piece holds U+2581 after its first character.
        self.chunk_safe = not any(SPACE in t[1:] for t in self.tokens)
        self._cache = {}

    @classmethod
    def from_gguf(cls, reader):
        kv = reader.kv
        return cls(kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"], kv["tokenizer.ggml.token_type"])

    def _encode_symbols(self, text):
        sym = list(text)  # code points (Python strings are already decoded)
        n = len(sym)
        if n == 0:
            return []
        prev = list(range(-1, n - 1))
        nxt = list(range(1, n + 1))
        nxt[-1] = -1
        alive = [True] * n
        heap = []

        def try_add(l, r):
            if l < 0 or r < 0:
                return
            piece = sym[l] + sym[r]
            i = self.ids.get(piece)
            if i is not None:
                heapq.heappush(heap, (-self.scores[i], l, r, piece))

        for i in range(1, n):
            try_add(i - 1, i)
        while heap:
            _, l, r, piece = heapq.heappop(heap)
            if not alive[l] or not alive[r] or sym[l] + sym[r] != piece or nxt[l] != r:
                continue
            sym[l] = piece
            alive[r] = False
            nxt[l] = nxt[r]
            if nxt[r] >= 0:
                prev[nxt[r]] = l
            try_add(prev[l], l)
            try_add(l, nxt[l])
        out = []
        i = 0
        while i >= 0:
            s = sym[i]
            t = self.ids.get(s)
            if t is not None:
                out.append(t)
            else:
                for b in s.encode("utf-8"):
                    out.append(self.byte_ids[b] if self.byte_ids[b] >= 0 else self.unk)
            i = nxt[i]
        return out

    def encode(self, text, prefix=True):
        """Token ids of `text` (no BOS), as kvwise's Tokenizer::encode(text, false)."""
        t = (SPACE if prefix else "") + text.replace(" ", SPACE)
        if not self.chunk_safe:
            return self._encode_symbols(t)
        out = []
        start = 0
        for i in range(1, len(t) + 1):
            if i == len(t) or t[i] == SPACE:
                chunk = t[start:i]
                ids = self._cache.get(chunk)
                if ids is None:
                    ids = self._encode_symbols(chunk)
                    if len(self._cache) < 500000:
                        self._cache[chunk] = ids
                out.extend(ids)
                start = i
        return out

    def decode(self, ids):
        bs = bytearray()
        for i in ids:
            t = self.tokens[i]
            if self.types[i] == 6 and len(t) == 6 and t.startswith("<0x"):
                bs.append(int(t[3:5], 16))
            elif self.types[i] in (2, 3):
                continue
            else:
                bs.extend(t.replace(SPACE, " ").encode("utf-8"))
        return bs.decode("utf-8", errors="replace")
