#!/usr/bin/python3
"""An independent reference scorer for zero-shot multiple-choice evaluation of a llama2.c checkpoint
(stories260K), written from lm-evaluation-harness's "loglikelihood" protocol in Debian's
python3-torch (float64, CPU), python3-numpy and python3-sentencepiece, with no code of this project.
The C++ evaluation test compares its own scores against this one.

    /usr/bin/python3 zero_shot_reference.py --model BIN --tokenizer MODEL --task NAME --file F [--limit N]
        Scores the first N items of F (all when absent) and prints one JSON object:
        {"task", "format": "multiple_choice"|"partial"|"lambada"|"hellaswag_text", "items",
         "correct", "correct_norm", "acc", "acc_stderr", "acc_norm", "acc_norm_stderr",
         "truncated", "ppl", "predictions", "lls"}
        or {"error": "..."} with exit code 1 when the input cannot be read. --timing adds "seconds".
    /usr/bin/python3 zero_shot_reference.py --selftest --model BIN --tokenizer MODEL
        Greedy decoding from BOS must begin "Once upon a time, there was a little girl named Lily.
        She loved to play outside in the park." Prints JSON {"selftest": true|false, "text": ...};
        exit code 0 on success, 1 otherwise.
    /usr/bin/python3 zero_shot_reference.py --make-fixtures DIR --text STORIES.txt [--n 300]
        Writes DIR/lambada.jsonl ({"context", "continuation"}) and DIR/hellaswag.txt (llama.cpp's
        6-line HellaSwag format) made deterministically from the stories of STORIES.txt.

Input formats, detected per file:
  1. {"query", "choices", "gold"} JSONL: c = the task's template applied to the query,
     continuations " " + choice; acc and acc_norm (ll / len(choice)).
  2. {"context_options", "continuation", "gold"} JSONL (WinoGrande partial scoring): one request per
     option with c = that option, x = " " + continuation; acc only (acc_norm null).
  3. {"context", "continuation"} JSONL (LAMBADA): acc = the continuation is the greedy one;
     ppl = exp(-mean ll). acc_norm null.
  4. llama.cpp's HellaSwag text: 6 lines per item (context, gold index, 4 endings); as format 1.
Templates: arc_easy, arc_challenge, boolq, piqa: query + "\\nAnswer:" (query + "Answer:" when the
query already ends with "\\n"); every other task: the text as it is.

Requests: trailing whitespace of c moves to the front of x; whole = enc(c + x), ctx = enc(c),
cont = whole[len(ctx):]; the model reads [BOS] + ctx + cont, cut from the left to its last
seq_len + 1 tokens; ll = sum of log-softmax of the cont targets; greedy = each is the argmax.
Ties go to the first index (numpy argmax); stderr = sqrt(p (1 - p) / (n - 1)).
"""
import argparse
import json
import math
import os
import re
import struct
import sys
import time

import numpy as np
import torch

torch.set_default_dtype(torch.float64)

ARC_STYLE = {"arc_easy", "arc_challenge", "boolq", "piqa"}
SELFTEST_TEXT = ("Once upon a time, there was a little girl named Lily. "
                 "She loved to play outside in the park.")


class InputError(Exception):
    pass


# ---- the model: llama2.c legacy (version 0) checkpoint, read by hand

class Llama2c:
    def __init__(self, path):
        with open(path, "rb") as f:
            data = f.read()
        if len(data) < 28:
            raise InputError("model file too short: %s" % path)
        (dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len) = struct.unpack("<7i", data[:28])
        shared = vocab > 0
        vocab = abs(vocab)
        if min(dim, hidden, n_layers, n_heads, n_kv_heads, vocab, seq_len) <= 0 or dim % n_heads \
                or n_heads % n_kv_heads:
            raise InputError("bad llama2.c header: %r" % ((dim, hidden, n_layers, n_heads,
                                                           n_kv_heads, vocab, seq_len),))
        self.dim, self.hidden, self.n_layers = dim, hidden, n_layers
        self.n_heads, self.n_kv_heads, self.vocab, self.seq_len = n_heads, n_kv_heads, vocab, seq_len
        self.head_size = dim // n_heads
        kv_dim = self.head_size * n_kv_heads
        floats = np.frombuffer(data, dtype="<f4", offset=28)
        pos = [0]

        def take(*shape):
            n = int(np.prod(shape))
            if pos[0] + n > floats.size:
                raise InputError("model file truncated: %s" % path)
            a = floats[pos[0]:pos[0] + n].reshape(shape)
            pos[0] += n
            return torch.from_numpy(a.astype(np.float64))

        L = n_layers
        self.emb = take(vocab, dim)
        self.rms_att = take(L, dim)
        self.wq = take(L, dim, dim)
        self.wk = take(L, kv_dim, dim)
        self.wv = take(L, kv_dim, dim)
        self.wo = take(L, dim, dim)
        self.rms_ffn = take(L, dim)
        self.w1 = take(L, hidden, dim)
        self.w2 = take(L, dim, hidden)
        self.w3 = take(L, hidden, dim)
        self.rms_final = take(dim)
        take(seq_len, self.head_size // 2)  # legacy freq_cis_real (unused)
        take(seq_len, self.head_size // 2)  # legacy freq_cis_imag (unused)
        self.wcls = self.emb if shared else take(vocab, dim)
        self.eps = 1e-5
        # interleaved-pair RoPE: pair (2i, 2i+1) of each head turns by pos * 10000^(-2i/head_size)
        i = torch.arange(0, self.head_size // 2, dtype=torch.float64)
        self.inv_freq = 1.0 / (10000.0 ** (2.0 * i / self.head_size))

    def rmsnorm(self, x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * w

    def rope(self, x, cos, sin):
        # x: [B, T, H, hs]; cos/sin: [T, hs/2]
        B, T, H, hs = x.shape
        p = x.reshape(B, T, H, hs // 2, 2)
        a, b = p[..., 0], p[..., 1]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        return torch.stack((a * c - b * s, a * s + b * c), dim=-1).reshape(B, T, H, hs)

    @staticmethod
    def attention(q, k, v, mask, scale, block=64):
        """Causal softmax(q k^T * scale) v, in blocks of query rows: rows i0..i1 read keys 0..i1
        only (what the mask leaves them), which keeps the score matrix in cache and skips the
        masked half; the same numbers as the whole matrix at once."""
        T = q.shape[1]
        outs = []
        for i0 in range(0, T, block):
            i1 = min(T, i0 + block)
            s = torch.baddbmm(mask[i0:i1, :i1], q[:, i0:i1], k[:, :i1].transpose(1, 2), alpha=scale)
            outs.append(torch.bmm(torch.softmax(s, dim=-1), v[:, :i1]))
        return torch.cat(outs, dim=1)

    @torch.no_grad()
    def forward(self, tokens):
        """tokens: LongTensor [B, T] (T <= seq_len) -> logits [B, T, vocab] (float64)."""
        B, T = tokens.shape
        if T > self.seq_len:
            raise ValueError("sequence longer than the context length")
        H, KV, hs = self.n_heads, self.n_kv_heads, self.head_size
        rep = H // KV
        angles = torch.arange(T, dtype=torch.float64)[:, None] * self.inv_freq[None, :]
        cos, sin = torch.cos(angles), torch.sin(angles)
        mask = torch.full((T, T), float("-inf")).triu(1)
        scale = 1.0 / math.sqrt(hs)
        x = self.emb[tokens]
        for l in range(self.n_layers):
            h = self.rmsnorm(x, self.rms_att[l])
            q = (h @ self.wq[l].T).reshape(B, T, H, hs)
            k = (h @ self.wk[l].T).reshape(B, T, KV, hs)
            v = (h @ self.wv[l].T).reshape(B, T, KV, hs)
            q, k = self.rope(q, cos, sin), self.rope(k, cos, sin)
            # query head h reads kv head h // rep
            k = k.repeat_interleave(rep, dim=2)
            v = v.repeat_interleave(rep, dim=2)
            # [B*H, T, hs]
            q, k, v = (t.transpose(1, 2).reshape(B * H, T, hs) for t in (q, k, v))
            o = self.attention(q, k, v, mask, scale).reshape(B, H, T, hs)
            o = o.transpose(1, 2).reshape(B, T, self.dim)
            x = x + o @ self.wo[l].T
            h = self.rmsnorm(x, self.rms_ffn[l])
            x = x + (torch.nn.functional.silu(h @ self.w1[l].T) * (h @ self.w3[l].T)) @ self.w2[l].T
        x = self.rmsnorm(x, self.rms_final)
        return x @ self.wcls.T


def load_tokenizer(path):
    import sentencepiece
    if not os.path.isfile(path):
        raise InputError("tokenizer not found: %s" % path)
    try:
        return sentencepiece.SentencePieceProcessor(model_file=path)
    except Exception as e:  # noqa: BLE001 - any load failure is unreadable input
        raise InputError("cannot load tokenizer %s: %s" % (path, e))


# ---- requests and scoring

def make_request(sp, context, continuation):
    """The loglikelihood request for context c and continuation x -> (ctx, cont) token lists."""
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = sp.encode(context + continuation)
    ctx = sp.encode(context)
    return ctx, whole[len(ctx):]


class Scorer:
    def __init__(self, model, sp):
        self.model, self.sp = model, sp
        self.bos = sp.bos_id()
        self.truncated = 0

    def score(self, pairs):
        """pairs: [(context, continuation)] scored in one batch -> [(ll, greedy)]."""
        max_len = self.model.seq_len + 1
        seqs, n_conts = [], []
        for c, x in pairs:
            ctx, cont = make_request(self.sp, c, x)
            seq = [self.bos] + ctx + cont
            if len(seq) > max_len:
                seq = seq[-max_len:]
                self.truncated += 1
            seqs.append(seq)
            n_conts.append(min(len(cont), len(seq) - 1))
        T = max(len(s) for s in seqs) - 1
        if T <= 0:
            return [(0.0, True) for _ in pairs]
        inp = torch.zeros((len(seqs), T), dtype=torch.long)  # right padding (causal: harmless)
        for b, s in enumerate(seqs):
            inp[b, :len(s) - 1] = torch.tensor(s[:-1], dtype=torch.long)
        logits = self.model.forward(inp)
        logp = torch.log_softmax(logits, dim=-1).numpy()
        lg = logits.numpy()
        out = []
        for b, (s, n) in enumerate(zip(seqs, n_conts)):
            last = len(s) - 1  # number of input positions of this row
            ll, greedy = 0.0, True
            for t in range(last - n, last):
                tgt = s[t + 1]
                ll += float(logp[b, t, tgt])
                if int(np.argmax(lg[b, t])) != tgt:
                    greedy = False
            out.append((ll, greedy))
        return out


def apply_template(task, query):
    if task in ARC_STYLE:
        return query + ("Answer:" if query.endswith("\n") else "\nAnswer:")
    return query


def read_items(path, limit):
    """-> (format, items). Items: dict with keys per format."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("cannot read %s: %s" % (path, e))
    lines = text.split("\n")
    first = next((l for l in lines if l.strip()), None)
    if first is None:
        raise InputError("empty file: %s" % path)
    try:
        probe = json.loads(first)
    except ValueError:
        probe = None
    if not isinstance(probe, dict):
        return "hellaswag_text", read_hellaswag_text(lines, limit)
    if "context_options" in probe:
        fmt, need = "partial", ("context_options", "continuation", "gold")
    elif "choices" in probe:
        fmt, need = "multiple_choice", ("query", "choices", "gold")
    elif "context" in probe:
        fmt, need = "lambada", ("context", "continuation")
    else:
        raise InputError("unknown JSONL record keys: %s" % sorted(probe))
    items = []
    for no, line in enumerate(lines, 1):
        if limit is not None and len(items) >= limit:
            break
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except ValueError as e:
            raise InputError("line %d: bad JSON: %s" % (no, e))
        if not isinstance(d, dict) or any(k not in d for k in need):
            raise InputError("line %d: expected keys %s" % (no, list(need)))
        if fmt == "multiple_choice":
            ok = isinstance(d["query"], str) and isinstance(d["choices"], list) and d["choices"] \
                and all(isinstance(c, str) for c in d["choices"])
            opts = d.get("choices")
        elif fmt == "partial":
            ok = isinstance(d["continuation"], str) and isinstance(d["context_options"], list) \
                and d["context_options"] and all(isinstance(c, str) for c in d["context_options"])
            opts = d.get("context_options")
        else:
            ok = isinstance(d["context"], str) and isinstance(d["continuation"], str)
            opts = None
        if not ok:
            raise InputError("line %d: wrong field types" % no)
        if opts is not None:
            g = d["gold"]
            if isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < len(opts):
                raise InputError("line %d: gold %r is not an index of %d options" % (no, g, len(opts)))
        items.append(d)
    return fmt, items


def read_hellaswag_text(lines, limit):
    lines = [l.rstrip("\r") for l in lines]
    while lines and lines[-1] == "":
        lines.pop()
    if len(lines) % 6:
        raise InputError("HellaSwag text: %d lines is not a multiple of 6" % len(lines))
    items = []
    for i in range(0, len(lines), 6):
        if limit is not None and len(items) >= limit:
            break
        try:
            gold = int(lines[i + 1].strip())
        except ValueError:
            raise InputError("HellaSwag text line %d: gold index %r" % (i + 2, lines[i + 1]))
        if not 0 <= gold < 4:
            raise InputError("HellaSwag text line %d: gold index %d out of 0-3" % (i + 2, gold))
        items.append({"query": lines[i], "gold": gold, "choices": lines[i + 2:i + 6]})
    return items


def stderr(k, n):
    if n < 2:
        return None
    p = k / n
    return math.sqrt(p * (1.0 - p) / (n - 1))


def evaluate(model, sp, task, path, limit):
    fmt, items = read_items(path, limit)
    scorer = Scorer(model, sp)
    preds, lls_all = [], []
    correct, correct_norm, ll_sum = 0, 0, 0.0
    for d in items:
        if fmt in ("multiple_choice", "hellaswag_text"):
            c = apply_template(task, d["query"])
            res = scorer.score([(c, " " + ch) for ch in d["choices"]])
            lls = np.array([r[0] for r in res])
            pred = int(np.argmax(lls))
            lens = np.array([float(len(ch)) for ch in d["choices"]])
            with np.errstate(divide="ignore", invalid="ignore"):
                pred_norm = int(np.argmax(lls / lens))
            correct += pred == d["gold"]
            correct_norm += pred_norm == d["gold"]
        elif fmt == "partial":
            x = " " + d["continuation"]
            res = scorer.score([(apply_template(task, c), x) for c in d["context_options"]])
            lls = np.array([r[0] for r in res])
            pred = int(np.argmax(lls))
            correct += pred == d["gold"]
        else:
            res = scorer.score([(apply_template(task, d["context"]), " " + d["continuation"])])
            lls = np.array([res[0][0]])
            pred = 1 if res[0][1] else 0
            correct += pred
            ll_sum += res[0][0]
        preds.append(pred)
        lls_all.append([float(v) for v in lls])
    n = len(items)
    has_norm = fmt in ("multiple_choice", "hellaswag_text")
    return {
        "task": task,
        "format": fmt,
        "items": n,
        "correct": int(correct),
        "correct_norm": int(correct_norm) if has_norm else None,
        "acc": correct / n if n else None,
        "acc_stderr": stderr(correct, n),
        "acc_norm": (correct_norm / n if n else None) if has_norm else None,
        "acc_norm_stderr": stderr(correct_norm, n) if has_norm else None,
        "truncated": scorer.truncated,
        "ppl": (math.exp(-ll_sum / n) if n else None) if fmt == "lambada" else None,
        "predictions": preds,
        "lls": lls_all,
    }


def selftest(model, sp, n_tokens=40):
    ids = [sp.bos_id()]
    for _ in range(n_tokens):
        logits = model.forward(torch.tensor([ids], dtype=torch.long))
        ids.append(int(np.argmax(logits[0, -1].numpy())))
    text = sp.decode(ids[1:])
    return text.startswith(SELFTEST_TEXT), text


# ---- fixtures for the formats the shared data lacks

def read_stories(path):
    with open(path, "r", encoding="utf-8") as f:
        text = f.read()
    stories = []
    for block in re.split(r"\n[ \t\r]*\n", text):
        s = " ".join(block.split())
        if s:
            stories.append(s)
    return stories


def strip_punct(word):
    i, j = 0, len(word)
    while i < j and not word[i].isalnum():
        i += 1
    while j > i and not word[j - 1].isalnum():
        j -= 1
    return word[i:j]


def make_fixtures(out_dir, text_path, n):
    stories = read_stories(text_path)
    os.makedirs(out_dir, exist_ok=True)
    lam = []
    for s in stories:
        if len(lam) >= n:
            break
        words = s.split(" ")
        if len(words) < 20:
            continue
        words = words[:min(len(words), 60)]
        cont = strip_punct(words[-1])
        if not cont:
            continue
        lam.append({"context": " ".join(words[:-1]), "continuation": cont})
    with open(os.path.join(out_dir, "lambada.jsonl"), "w", encoding="utf-8") as f:
        for d in lam:
            f.write(json.dumps(d) + "\n")

    pairs = []  # (first sentence with its period, second sentence)
    for s in stories:
        parts = s.split(". ")
        if len(parts) < 2:
            continue
        first = parts[0] + "."
        second = parts[1] + ("." if len(parts) > 2 else "")
        if parts[0].strip() and parts[1].strip():
            pairs.append((first, second))
    hs = []
    for i in range(len(pairs) - 3):
        if len(hs) >= n:
            break
        gold = i % 4
        others = [pairs[i + 1][1], pairs[i + 2][1], pairs[i + 3][1]]
        endings = others[:gold] + [pairs[i][1]] + others[gold:]
        hs.append((pairs[i][0], gold, endings))
    with open(os.path.join(out_dir, "hellaswag.txt"), "w", encoding="utf-8") as f:
        for ctx, gold, endings in hs:
            f.write(ctx + "\n" + str(gold) + "\n" + "\n".join(endings) + "\n")
    return {"lambada": len(lam), "hellaswag": len(hs), "dir": out_dir}


def fail(msg):
    print(json.dumps({"error": msg}))
    sys.exit(1)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--tokenizer")
    ap.add_argument("--task")
    ap.add_argument("--file")
    ap.add_argument("--limit", type=int)
    ap.add_argument("--selftest", action="store_true")
    ap.add_argument("--make-fixtures", metavar="DIR")
    ap.add_argument("--text")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--timing", action="store_true", help="add the scoring seconds to the JSON")
    a = ap.parse_args()

    if a.make_fixtures:
        if not a.text:
            fail("--make-fixtures needs --text")
        try:
            print(json.dumps(make_fixtures(a.make_fixtures, a.text, a.n)))
        except (OSError, UnicodeDecodeError) as e:
            fail("cannot make fixtures: %s" % e)
        return

    if not a.model or not a.tokenizer:
        fail("--model and --tokenizer are required")
    try:
        if not os.path.isfile(a.model):
            raise InputError("model not found: %s" % a.model)
        model = Llama2c(a.model)
        sp = load_tokenizer(a.tokenizer)
        if a.selftest:
            ok, text = selftest(model, sp)
            print(json.dumps({"selftest": ok, "text": text}))
            sys.exit(0 if ok else 1)
        if not a.task or not a.file:
            raise InputError("--task and --file are required")
        if a.limit is not None and a.limit < 0:
            raise InputError("--limit must be >= 0")
        t0 = time.time()
        result = evaluate(model, sp, a.task, a.file, a.limit)
        if a.timing:
            result["seconds"] = round(time.time() - t0, 3)
        print(json.dumps(result))
    except InputError as e:
        fail(str(e))


if __name__ == "__main__":
    main()
