"""Training data for the retrieval model: real text (essays, Shakespeare, TinyStories) mixed with
long-context tasks built from it. Every sample is a (tokens, weights) pair of a fixed length; the
weights put extra loss on answer tokens. The passkey and needle templates are the ones kvwise's
`eval niah` uses (src/eval/niah.cpp), tokenized piecewise exactly as it does."""
import os
import random

PASSKEY_FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
NAMES = ("apple river stone cloud tiger maple silver orange castle garden pencil rocket violet harbor "
         "lantern meadow copper falcon window marble candle forest dragon summer winter button ocean "
         "rabbit thunder garlic pirate jungle bridge mirror saddle planet shadow velvet wizard basket").split()
# The essays kvwise's needle eval reads first (sorted order) are held out of training entirely.
HELD_OUT_ESSAYS = 4


def read_corpus(data_dir):
    """Returns (train_texts, heldout_texts): lists of (name, text)."""
    essays_dir = os.path.join(data_dir, "data", "paul_graham_essays")
    essays = sorted(f for f in os.listdir(essays_dir) if f.endswith(".txt"))
    read = lambda p: open(p, encoding="utf-8", errors="replace").read()
    train, held = [], []
    for i, f in enumerate(essays):
        (held if i < HELD_OUT_ESSAYS else train).append(("essay:" + f, read(os.path.join(essays_dir, f))))
    shakes = read(os.path.join(data_dir, "data", "tinyshakespeare", "input.txt"))
    cut = int(len(shakes) * 0.95)
    cut = shakes.rfind("\n\n", 0, cut) + 2
    train.append(("shakespeare", shakes[:cut]))
    held.append(("shakespeare-tail", shakes[cut:]))
    stories = read(os.path.join(data_dir, "data", "tinystories_valid_sample", "tinystories_valid_first_stories.txt"))
    train.append(("tinystories", stories))
    return train, held


class TaskMaker:
    def __init__(self, tok, texts, seed):
        self.tok = tok
        self.rng = random.Random(seed)
        # One token stream per source, sampled by weight (essays, Shakespeare, stories).
        self.streams = []
        self.texts = texts
        for name, text in texts:
            self.streams.append((name, tok.encode(text)))
        self.essay_stream = [t for n, s in self.streams if n.startswith("essay:") for t in s]
        self.other_streams = [s for n, s in self.streams if not n.startswith("essay:")]
        self.passkey_filler = tok.encode(PASSKEY_FILLER * 400)
        self.enc_cache = {}
        self.grass_eval = True  # forced passkey samples use the eval's synthetic filler

    def enc(self, s):
        ids = self.enc_cache.get(s)
        if ids is None:
            ids = self.tok.encode(s)
            if len(self.enc_cache) < 200000:
                self.enc_cache[s] = ids
        return ids

    def filler(self, n):
        """n tokens of contiguous real text from a random source."""
        r = self.rng.random()
        if r < 0.55:
            s = self.essay_stream
        else:
            s = self.other_streams[0] if r < 0.9 or len(self.other_streams) < 2 else self.other_streams[1]
        if len(s) <= n + 1:
            s = self.essay_stream
        a = self.rng.randrange(0, len(s) - n)
        return s[a:a + n]

    def number(self, digits):
        return str(self.rng.randrange(10 ** (digits - 1), 10 ** digits))

    @staticmethod
    def sentence_cut(tok, ids, at):
        """Moves `at` back to just after a '.' token when one is within 64 tokens (as the eval does)."""
        for back in range(64):
            if at - back <= 0:
                break
            if tok.decode([ids[at - back - 1]]).endswith("."):
                return at - back
        return at

    def assemble(self, T, inserts, tail):
        """Filler with `inserts` (list of token lists) at random increasing depths, then `tail`
        (list of (tokens, weight)). Returns tokens (T+1, with BOS) and per-token weights."""
        fixed = sum(len(x) for x in inserts) + sum(len(t) for t, _ in tail)
        n_fill = T + 1 - 1 - fixed
        if n_fill < 1:
            return None
        fill = self._filler_for(n_fill)
        cuts = sorted(self.sentence_cut(self.tok, fill, int(self.rng.random() * n_fill + 0.5)) for _ in inserts)
        toks, wts = [self.tok.bos], [0.0]
        prev = 0
        for c, ins in zip(cuts, inserts):
            toks += fill[prev:c]
            wts += [1.0] * (c - prev)
            toks += ins
            wts += [1.0] * len(ins)
            prev = c
        toks += fill[prev:]
        wts += [1.0] * (n_fill - prev)
        for t, w in tail:
            toks += t
            wts += [w] * len(t)
        return toks[:T + 1], wts[:T + 1]

    def _filler_for(self, n):
        if self._use_grass:
            a = self.rng.randrange(0, 40)
            return self.passkey_filler[a:a + n]
        return self.filler(n)

    KINDS = ("passkey", "needle", "kv", "vars", "repeat", "text", "copy", "induct")
    # v2 adds the RULER-style tasks of `kvwise eval ruler` that v1 never saw (src/eval/ruler.cpp).
    V2_KINDS = ("mvalue", "cwe", "fwe")

    def words(self):
        """Distinct plain words of the training essays (as ruler.cpp draws them from the haystack)."""
        if not hasattr(self, "_words"):
            seen, out = set(), []
            for name, text in self.texts:
                if not name.startswith("essay:"):
                    continue
                for w in text.split():
                    if 4 <= len(w) <= 9 and w.isascii() and w.isalpha() and w.islower() and w not in seen:
                        seen.add(w)
                        out.append(w)
            self._words = out
        return self._words

    def closed(self, T, body_fn, question, answer_fn, A, k_max):
        """[BOS] + the longest body body_fn(k) (k <= k_max, found by bisection) that fits with the
        question and answer_fn(k), then padding of weight 0 to T + 1 tokens."""
        q = self.enc(question)
        fits = lambda k: 1 + len(self.tok.encode(body_fn(k), False)) + len(q) + len(
            self.tok.encode(answer_fn(k), False)) <= T + 1
        lo, hi = 0, k_max
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid - 1
        if lo == 0:
            return None
        b, a = self.tok.encode(body_fn(lo), False), self.tok.encode(answer_fn(lo), False)
        toks = [self.tok.bos] + b + q + a
        wts = [0.0] + [1.0] * (len(b) + len(q)) + [A] * len(a)
        pad = T + 1 - len(toks)
        return toks + [self.tok.bos] * pad, wts + [0.0] * pad

    def v2_sample(self, T, A, kind):
        rng = self.rng
        self._use_grass = False  # essays and other real text, as ruler.cpp's haystack
        if kind == "mvalue":  # one name, four codes: all of them, in order
            who = rng.choice(NAMES)
            codes = [self.number(5) for _ in range(4)]
            facts = [self.enc(f" The code for {who} is {c}. ") for c in codes]
            tail = [(self.enc(f"\nWhat are all the codes for {who}? The codes for {who} are"), 1.0),
                    (self.tok.encode(" " + ", ".join(codes) + ".", False), A)]
            return self.assemble(T, facts, tail)
        if kind == "cwe":  # 5 words 4 times each in a numbered list of words seen once
            w = rng.sample(self.words(), 5 + T)
            common, rest = w[:5], w[5:]
            base = [x for x in common for _ in range(4)]
            rng.shuffle(base)
            order = list(base)
            for x in rest:
                order.insert(rng.randrange(len(order) + 1), x)
            rank = {x: -1 for x in common}
            rank.update({x: i for i, x in enumerate(rest)})

            def body(k):
                items = [x for x in order if rank[x] < k]
                return "".join(f" {i + 1}. {x}" for i, x in enumerate(items))
            first = " " + ", ".join(sorted(common, key=order.index)) + "."
            return self.closed(T, body, "\nWhat are the 5 most common words in the list above? Answer: The top 5 words "
                               "appearing most often in the list are:", lambda k: first, A, len(rest))
        # fwe: coded 4-letter words with Zipf(2) frequencies; the three most frequent
        vocab = []
        while len(vocab) < 60:
            x = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(4))
            if x not in vocab:
                vocab.append(x)
        stream = rng.choices(vocab, [1.0 / (i + 1) ** 2 for i in range(len(vocab))], k=T)

        def top(k):
            counts = {}
            for x in stream[:k]:
                counts[x] = counts.get(x, 0) + 1
            return " " + ", ".join(sorted(counts, key=lambda x: (-counts[x], x))[:3]) + "."
        q = ("\nWhat are the three most frequently appeared coded words in the above text? Answer: According to the "
             "coded text above, the three most frequently appeared words are:")
        return self.closed(T, lambda k: "".join(" " + x for x in stream[:k]), q, top, A, len(stream))

    def copy_sample(self, T, answer_weight):
        """A span of random vocabulary pieces repeated to fill the sequence: the purest induction-head
        signal (every repeat after the first is predictable only by copying). Used as a short phase
        of its own: the mixed tasks alone formed no copying circuit in 1,400 steps, this one forms it
        in a few hundred."""
        n = self.rng.randint(8, 20)
        lo = 3 + 256  # after <unk>, <s>, </s> and the byte tokens
        span = [self.rng.randrange(lo, len(self.tok.tokens)) for _ in range(n)]
        toks, wts = [self.tok.bos], [0.0]
        first = True
        while len(toks) < T + 1:
            toks += span
            wts += [0.0] * n if first else [0.0] + [answer_weight / 2] * (n - 1)
            first = False
        return toks[:T + 1], wts[:T + 1]

    def induct_sample(self, T, answer_weight):
        """Random vocabulary pieces with a few spans that occur twice at unrelated positions: the
        second occurrence is predictable only by finding the first by content (an induction head).
        Unlike copy_sample there is no period to lock onto."""
        lo = 3 + 256
        toks = [self.rng.randrange(lo, len(self.tok.tokens)) for _ in range(T + 1)]
        wts = [0.0] * (T + 1)
        toks[0] = self.tok.bos
        for _ in range(self.rng.randint(1, max(1, T // 48))):
            n = self.rng.randint(6, 12)
            if T - 2 * n - 16 < 2:
                break
            a = self.rng.randint(1, T - 2 * n - 16)
            b = self.rng.randint(a + n + 16, T + 1 - n)
            toks[b:b + n] = toks[a:a + n]
            for i in range(b + 1, b + n):
                wts[i] = answer_weight / 2
        return toks, wts

    def sample(self, T, answer_weight, kind=None):
        """One training sequence of T+1 tokens (inputs = [:-1], targets = [1:]). `kind` forces a task
        (for evaluation); by default tasks are drawn 22/16/27/10/20/5 % in KINDS order."""
        if kind == "copy":
            return self.copy_sample(T, answer_weight)
        if kind == "induct":
            return self.induct_sample(T, answer_weight)
        if kind in self.V2_KINDS:
            return self.v2_sample(T, answer_weight, kind) or ([self.tok.bos] + self.filler(T), [0.0] + [1.0] * T)
        if kind == "v2":  # v1's mix with 30 % of the v2 tasks
            if self.rng.random() < 0.3:
                k = self.rng.choices(self.V2_KINDS, (0.4, 0.3, 0.3))[0]
                return self.v2_sample(T, answer_weight, k) or ([self.tok.bos] + self.filler(T), [0.0] + [1.0] * T)
            kind = None
        if kind == "mix+induct":  # the task mix with a quarter of induction samples mixed in
            if self.rng.random() < 0.25:
                return self.induct_sample(T, answer_weight)
            kind = None
        r = self.rng.random()
        if kind is not None:
            r = {"passkey": 0.1, "needle": 0.3, "kv": 0.5, "vars": 0.7, "repeat": 0.8, "text": 0.99}[kind]
        self._use_grass = False
        q = lambda s: self.enc(s)
        A = answer_weight
        if r < 0.22:  # passkey (eval template), half the time on the eval's synthetic filler
            self._use_grass = self.rng.random() < 0.5 if kind is None else self.grass_eval
            key = self.number(5)
            needle = q(f" The pass key is {key}. Remember it. {key} is the pass key. ")
            tail = [(q("\n\nWhat is the pass key? The pass key is"), 1.0), (self.tok.encode(f" {key}.", False), A)]
            out = self.assemble(T, [needle], tail)
        elif r < 0.38:  # needle (eval template) in real text
            key = self.number(7)
            needle = q(f" The special magic number is {key}. ")
            tail = [(q("\n\nWhat is the special magic number mentioned in the text above? The special magic number is"), 1.0),
                    (self.tok.encode(f" {key}.", False), A)]
            out = self.assemble(T, [needle], tail)
        elif r < 0.65:  # key-value lookup: many facts, many questions (dense recall signal)
            k = self.rng.randint(2, max(3, min(len(NAMES), T // 48)))
            names = self.rng.sample(NAMES, k)
            keys = [self.number(self.rng.choice((4, 5, 6))) for _ in names]
            facts = [q(f" The code for {n} is {v}. ") for n, v in zip(names, keys)]
            tail = []
            for i in self.rng.sample(range(k), self.rng.randint(max(1, min(k, 12) // 2), min(k, 12))):
                tail.append((q(f"\nWhat is the code for {names[i]}? The code for {names[i]} is"), 1.0))
                tail.append((self.tok.encode(f" {keys[i]}.", False), A))
            out = self.assemble(T, facts, tail)
        elif r < 0.75:  # multi-hop variable tracking: X = number, then chains Y = X, Z = Y
            hops = self.rng.randint(1, 3)
            vars_ = self.rng.sample("ABCDEFGHJKMNPQRSTUVWXYZ", hops + 1)
            val = self.number(5)
            inserts = [q(f" VAR {vars_[0]} = {val}. ")]
            for i in range(1, hops + 1):
                inserts.append(q(f" VAR {vars_[i]} = VAR {vars_[i - 1]}. "))
            tail = [(q(f"\nWhat is the value of VAR {vars_[-1]}? VAR {vars_[-1]} ="), 1.0),
                    (self.tok.encode(f" {val}.", False), A)]
            out = self.assemble(T, inserts, tail)  # inserts land in increasing order
        elif r < 0.95:  # repeat: a span seen earlier comes again (the induction-head signal)
            n = self.rng.randint(8, 32)
            if self.rng.random() < 0.5:
                span = self.filler(n)
            else:
                span = q(" " + " ".join(self.number(self.rng.randint(2, 6)) for _ in range(max(1, n // 5))))
            span = list(span)
            tail = [(q("\n"), 1.0), (span[:1], 1.0), (span[1:], A / 2)]
            out = self.assemble(T, [span], tail)
        else:  # plain language modelling
            out = ([self.tok.bos] + self.filler(T), [0.0] + [1.0] * T)
        if out is None:
            out = ([self.tok.bos] + self.filler(T), [0.0] + [1.0] * T)
        return out
