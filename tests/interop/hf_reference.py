#!/usr/bin/python3
"""An independent float64 reading of a Hugging Face LLaMA folder, the way transformers'
LlamaForCausalLM reads it: one size for every layer from config.json's scalar keys (transformers
ignores other keys), every tensor of model.safetensors checked against the shape that size gives
(transformers refuses a checkpoint whose shapes differ), then the forward pass in NumPy.

    /usr/bin/python3 hf_reference.py MODEL_DIR TOKEN_IDS_COMMA_SEPARATED

Prints JSON: {"logits": [[...] per position]} or {"error": "..."} (exit code 1) when the folder
is not loadable as a plain LLaMA. Uses only Debian's python3-numpy; no code of the project.
"""
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    dtypes = {"F32": np.float32, "F16": np.float16}
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = data[8 + n + begin:8 + n + end]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=dtypes[info["dtype"]])
        out[name] = arr.astype(np.float64).reshape(info["shape"])
    return out


def main():
    folder, ids = sys.argv[1], [int(t) for t in sys.argv[2].split(",")]
    cfg = json.load(open(folder + "/config.json"))
    if cfg.get("model_type") != "llama":
        raise ValueError("model_type %r is not llama" % cfg.get("model_type"))
    hidden = cfg["hidden_size"]
    n_layers = cfg["num_hidden_layers"]
    n_heads = cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_heads)
    inter = cfg["intermediate_size"]
    hd = cfg.get("head_dim") or hidden // n_heads
    vocab = cfg["vocab_size"]
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    w = read_safetensors(folder + "/model.safetensors")

    expected = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not cfg.get("tie_word_embeddings", False):
        expected["lm_head.weight"] = (vocab, hidden)
    for l in range(n_layers):
        p = "model.layers.%d." % l
        expected.update({
            p + "input_layernorm.weight": (hidden,),
            p + "post_attention_layernorm.weight": (hidden,),
            p + "self_attn.q_proj.weight": (n_heads * hd, hidden),
            p + "self_attn.k_proj.weight": (n_kv * hd, hidden),
            p + "self_attn.v_proj.weight": (n_kv * hd, hidden),
            p + "self_attn.o_proj.weight": (hidden, n_heads * hd),
            p + "mlp.gate_proj.weight": (inter, hidden),
            p + "mlp.up_proj.weight": (inter, hidden),
            p + "mlp.down_proj.weight": (hidden, inter),
        })
    for name, shape in expected.items():
        if name not in w:
            raise ValueError("missing tensor %s" % name)
        if tuple(w[name].shape) != shape:
            raise ValueError("size mismatch for %s: the checkpoint has %s, the config gives %s"
                             % (name, list(w[name].shape), list(shape)))
    extra = sorted(set(w) - set(expected))
    if extra:
        raise ValueError("unexpected tensors: %s" % ", ".join(extra[:3]))

    def rms(x, g):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * g

    T = len(ids)
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.outer(np.arange(T, dtype=np.float64), inv)
    cos = np.concatenate([np.cos(ang)] * 2, axis=-1)
    sin = np.concatenate([np.sin(ang)] * 2, axis=-1)

    def rope(x):  # [heads, T, hd], rotate-half as transformers' LLaMA
        half = np.concatenate([-x[..., hd // 2:], x[..., :hd // 2]], axis=-1)
        return x * cos + half * sin

    x = w["model.embed_tokens.weight"][ids]
    mask = np.triu(np.full((T, T), -np.inf), 1)
    for l in range(n_layers):
        p = "model.layers.%d." % l
        h = rms(x, w[p + "input_layernorm.weight"])
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, n_heads, hd).transpose(1, 0, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, n_kv, hd).transpose(1, 0, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, n_kv, hd).transpose(1, 0, 2)
        q, k = rope(q), rope(k)
        rep = n_heads // n_kv
        k, v = np.repeat(k, rep, axis=0), np.repeat(v, rep, axis=0)
        s = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        o = (s @ v).transpose(1, 0, 2).reshape(T, n_heads * hd)
        x = x + o @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        g = h @ w[p + "mlp.gate_proj.weight"].T
        u = h @ w[p + "mlp.up_proj.weight"].T
        x = x + (g / (1 + np.exp(-g)) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, w["model.norm.weight"])
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    print(json.dumps({"logits": (x @ head.T).tolist()}))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, KeyError) as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)
