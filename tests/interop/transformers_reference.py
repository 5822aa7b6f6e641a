#!/usr/bin/python3
"""An independent reference of the LLaMA-family models as transformers defines them (LlamaForCausalLM,
MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM and PEFT LoRA adapters), written from
transformers' semantics in Debian's python3-torch, float64, with no code of this project.

    /usr/bin/python3 transformers_reference.py make SPEC.json DIR
        Writes a tiny random-weight model in the Hugging Face layout: DIR/config.json (the spec's
        "config", keys exactly as the family's config.json has them) and DIR/model.safetensors
        (spec "dtype": F32 or BF16). With spec "lora": {"r", "lora_alpha", "target_modules"} also
        DIR/adapter/adapter_config.json + adapter_model.safetensors (PEFT layout).
    /usr/bin/python3 transformers_reference.py run DIR IDS [--adapter DIR] [--generate N]
        Prints JSON {"logits": [[...] per position], "generated": [ids]}: the forward pass over the
        comma-separated ids, then N greedy tokens decoded one at a time with a KV cache.

Semantics covered: rope_scaling default / linear / dynamic / llama3 / yarn (modeling_rope_utils),
head_dim override, GQA, q/k/v biases (Qwen2 always; attention_bias elsewhere, with o_proj too),
mlp_bias, Qwen3 per-head q_norm / k_norm before RoPE, tied embeddings, Mistral sliding_window.
"""
import json
import math
import struct
import sys

import torch

torch.set_default_dtype(torch.float64)


# ---- safetensors, by hand (the format is a JSON header and raw little-endian data)

def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        if dtype == "BF16":
            raw = t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
        else:
            raw = t.to(torch.float32).numpy().tobytes()
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        raw = bytearray(data[8 + n + b:8 + n + e])
        if info["dtype"] == "BF16":
            t = torch.frombuffer(raw, dtype=torch.int16).view(torch.bfloat16)
        elif info["dtype"] == "F16":
            t = torch.frombuffer(raw, dtype=torch.float16)
        else:
            t = torch.frombuffer(raw, dtype=torch.float32)
        out[name] = t.to(torch.float64).reshape(info["shape"])
    return out


# ---- configuration, as the transformers config classes read it

class Config:
    def __init__(self, c):
        self.c = c
        self.model_type = c.get("model_type", "llama")
        self.hidden = c["hidden_size"]
        self.layers = c["num_hidden_layers"]
        self.heads = c["num_attention_heads"]
        self.kv = c.get("num_key_value_heads") or self.heads
        self.inter = c["intermediate_size"]
        self.head_dim = c.get("head_dim") or self.hidden // self.heads
        self.vocab = c["vocab_size"]
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        self.max_pos = c.get("max_position_embeddings", 2048)
        self.tied = c.get("tie_word_embeddings", False)
        if self.model_type == "qwen2":
            self.qkv_bias, self.o_bias = True, False
        else:
            self.qkv_bias = self.o_bias = bool(c.get("attention_bias", False))
        self.mlp_bias = bool(c.get("mlp_bias", False)) if self.model_type == "llama" else False
        self.qk_norm = self.model_type == "qwen3"
        self.window = c.get("sliding_window") if self.model_type == "mistral" else None
        self.rope = c.get("rope_scaling") or None

    def shapes(self):
        H, D, q, kv, I = self.hidden, self.head_dim, self.heads * self.head_dim, \
            self.kv * self.head_dim, self.inter
        s = {"model.embed_tokens.weight": (self.vocab, H), "model.norm.weight": (H,)}
        if not self.tied:
            s["lm_head.weight"] = (self.vocab, H)
        for l in range(self.layers):
            p = "model.layers.%d." % l
            s.update({p + "input_layernorm.weight": (H,), p + "post_attention_layernorm.weight": (H,),
                      p + "self_attn.q_proj.weight": (q, H), p + "self_attn.k_proj.weight": (kv, H),
                      p + "self_attn.v_proj.weight": (kv, H), p + "self_attn.o_proj.weight": (H, q),
                      p + "mlp.gate_proj.weight": (I, H), p + "mlp.up_proj.weight": (I, H),
                      p + "mlp.down_proj.weight": (H, I)})
            if self.qkv_bias:
                s.update({p + "self_attn.q_proj.bias": (q,), p + "self_attn.k_proj.bias": (kv,),
                          p + "self_attn.v_proj.bias": (kv,)})
            if self.o_bias:
                s[p + "self_attn.o_proj.bias"] = (H,)
            if self.mlp_bias:
                s.update({p + "mlp.gate_proj.bias": (I,), p + "mlp.up_proj.bias": (I,),
                          p + "mlp.down_proj.bias": (H,)})
            if self.qk_norm:
                s.update({p + "self_attn.q_norm.weight": (D,), p + "self_attn.k_norm.weight": (D,)})
        return s


# ---- RoPE: inverse frequencies and attention factor per rope type (modeling_rope_utils)

def rope_parameters(cfg, seq_len):
    dim, base = cfg.head_dim, cfg.theta
    r = cfg.rope or {}
    kind = r.get("rope_type", r.get("type", "default"))

    def default(b):
        return 1.0 / (b ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))

    if kind == "default":
        return default(base), 1.0
    if kind == "linear":
        return default(base) / r["factor"], 1.0
    if kind == "dynamic":
        factor = r["factor"]
        seq = max(seq_len, cfg.max_pos)
        b = base * ((factor * seq / cfg.max_pos) - (factor - 1)) ** (dim / (dim - 2))
        return default(b), 1.0
    if kind == "llama3":
        inv = default(base)
        factor, low, high = r["factor"], r["low_freq_factor"], r["high_freq_factor"]
        old = r["original_max_position_embeddings"]
        low_wl, high_wl = old / low, old / high
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wl, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wl) & ~(wavelen > low_wl)
        return torch.where(medium, smoothed, scaled), 1.0
    if kind == "yarn":
        original = r.get("original_max_position_embeddings") or cfg.max_pos
        factor = r.get("factor") or cfg.max_pos / original
        attn = r.get("attention_factor")
        mscale, mscale_all = r.get("mscale"), r.get("mscale_all_dim")

        def get_mscale(scale, m=1):
            return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0
        if attn is None:
            attn = get_mscale(factor, mscale) / get_mscale(factor, mscale_all) \
                if mscale and mscale_all else get_mscale(factor)
        beta_fast, beta_slow = r.get("beta_fast") or 32, r.get("beta_slow") or 1

        def corr(rot):
            return dim * math.log(original / (rot * 2 * math.pi)) / (2 * math.log(base))
        lo, hi = corr(beta_fast), corr(beta_slow)
        if r.get("truncate", True):
            lo, hi = math.floor(lo), math.ceil(hi)
        lo, hi = max(lo, 0), min(hi, dim - 1)
        if lo == hi:
            hi += 0.001
        ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float64) - lo) / (hi - lo), 0, 1)
        extra = 1 - ramp
        pos = base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        inv = (1.0 / (factor * pos)) * (1 - extra) + (1.0 / pos) * extra
        return inv, attn
    raise ValueError("rope type %r" % kind)


# ---- the model

class Model:
    def __init__(self, folder, adapter=None):
        self.cfg = Config(json.load(open(folder + "/config.json")))
        self.w = read_safetensors(folder + "/model.safetensors")
        expected = self.cfg.shapes()
        for name, shape in expected.items():
            if name not in self.w:
                raise ValueError("missing tensor " + name)
            if tuple(self.w[name].shape) != shape:
                raise ValueError("size mismatch for %s" % name)
        extra = set(self.w) - set(expected) - ({"lm_head.weight"} if self.cfg.tied else set())
        if extra:
            raise ValueError("unexpected tensors: " + ", ".join(sorted(extra)[:3]))
        self.lora = {}
        if adapter:
            ac = json.load(open(adapter + "/adapter_config.json"))
            scale = ac["lora_alpha"] / ac["r"]
            for name, t in read_safetensors(adapter + "/adapter_model.safetensors").items():
                base = name[len("base_model.model."):]
                module, which = base.rsplit(".lora_", 1)
                self.lora.setdefault(module, {})[which[0]] = t
            self.lora_scale = scale

    def linear(self, x, module, bias=True):
        y = x @ self.w[module + ".weight"].T
        if bias and module + ".bias" in self.w:
            y = y + self.w[module + ".bias"]
        if module in self.lora:
            y = y + self.lora_scale * (x @ self.lora[module]["A"].T) @ self.lora[module]["B"].T
        return y

    def rms(self, x, name):
        return x / torch.sqrt((x * x).mean(-1, keepdim=True) + self.cfg.eps) * self.w[name]

    def forward(self, ids, cache, start):
        """ids: list of new tokens at positions start..; cache: per layer [k, v] lists grown."""
        c = self.cfg
        T, D = len(ids), c.head_dim
        inv, attn_factor = rope_parameters(c, start + T)
        pos = torch.arange(start, start + T, dtype=torch.float64)
        ang = torch.outer(pos, inv)
        emb = torch.cat([ang, ang], -1)
        cos, sin = emb.cos() * attn_factor, emb.sin() * attn_factor

        def rope(x):  # [heads, T, D], rotate_half
            rot = torch.cat([-x[..., D // 2:], x[..., :D // 2]], -1)
            return x * cos + rot * sin

        x = self.w["model.embed_tokens.weight"][torch.tensor(ids)]
        S = start + T
        q_pos = torch.arange(start, S).view(-1, 1)
        k_pos = torch.arange(S).view(1, -1)
        visible = k_pos <= q_pos
        if c.window:
            visible &= k_pos > q_pos - c.window
        mask = torch.where(visible, 0.0, float("-inf"))
        for l in range(c.layers):
            p = "model.layers.%d." % l
            h = self.rms(x, p + "input_layernorm.weight")
            q = self.linear(h, p + "self_attn.q_proj").view(T, c.heads, D)
            k = self.linear(h, p + "self_attn.k_proj").view(T, c.kv, D)
            v = self.linear(h, p + "self_attn.v_proj").view(T, c.kv, D)
            if c.qk_norm:
                q = self.rms(q, p + "self_attn.q_norm.weight")
                k = self.rms(k, p + "self_attn.k_norm.weight")
            q, k, v = rope(q.transpose(0, 1)), rope(k.transpose(0, 1)), v.transpose(0, 1)
            if len(cache) <= l:
                cache.append([k, v])
            else:
                cache[l] = [torch.cat([cache[l][0], k], 1), torch.cat([cache[l][1], v], 1)]
            kk, vv = cache[l]
            rep = c.heads // c.kv
            kk, vv = kk.repeat_interleave(rep, 0), vv.repeat_interleave(rep, 0)
            s = q @ kk.transpose(1, 2) / math.sqrt(D) + mask
            o = (torch.softmax(s, -1) @ vv).transpose(0, 1).reshape(T, c.heads * D)
            x = x + self.linear(o, p + "self_attn.o_proj")
            h = self.rms(x, p + "post_attention_layernorm.weight")
            g = self.linear(h, p + "mlp.gate_proj")
            u = self.linear(h, p + "mlp.up_proj")
            x = x + self.linear(torch.nn.functional.silu(g) * u, p + "mlp.down_proj")
        x = self.rms(x, "model.norm.weight")
        head = self.w["model.embed_tokens.weight"] if c.tied else self.w["lm_head.weight"]
        return x @ head.T


def make(spec_path, folder):
    import os
    spec = json.load(open(spec_path))
    cfg = Config(spec["config"])
    g = torch.Generator().manual_seed(spec.get("seed", 0))
    weights = {}
    for name, shape in cfg.shapes().items():
        if name.endswith("norm.weight"):
            weights[name] = 1.0 + 0.2 * torch.randn(shape, generator=g)
        else:
            weights[name] = 0.08 * torch.randn(shape, generator=g)
    os.makedirs(folder, exist_ok=True)
    json.dump(spec["config"], open(folder + "/config.json", "w"), indent=2)
    write_safetensors(folder + "/model.safetensors", weights, spec.get("dtype", "F32"))
    if "lora" in spec:
        lc = spec["lora"]
        ad = folder + "/adapter"
        os.makedirs(ad, exist_ok=True)
        json.dump({"peft_type": "LORA", "r": lc["r"], "lora_alpha": lc["lora_alpha"],
                   "target_modules": lc["target_modules"], "lora_dropout": 0.0, "bias": "none",
                   "task_type": "CAUSAL_LM"}, open(ad + "/adapter_config.json", "w"))
        t = {}
        for name, shape in cfg.shapes().items():
            module = name[:-len(".weight")]
            if name.endswith(".weight") and module.rsplit(".", 1)[-1] in lc["target_modules"]:
                out_f, in_f = shape
                t["base_model.model." + module + ".lora_A.weight"] = \
                    0.1 * torch.randn((lc["r"], in_f), generator=g)
                t["base_model.model." + module + ".lora_B.weight"] = \
                    0.1 * torch.randn((out_f, lc["r"]), generator=g)
        write_safetensors(ad + "/adapter_model.safetensors", t, "F32")


def run(folder, ids, adapter, n_new):
    m = Model(folder, adapter)
    with torch.no_grad():
        cache = []
        logits = m.forward(ids, cache, 0)
        out = {"logits": logits.tolist(), "generated": []}
        nxt, pos = int(logits[-1].argmax()), len(ids)
        for _ in range(n_new):
            out["generated"].append(nxt)
            step = m.forward([nxt], cache, pos)
            pos += 1
            nxt = int(step[-1].argmax())
    print(json.dumps(out))


def main():
    if sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
        return
    args = sys.argv[2:]
    folder, ids = args[0], [int(t) for t in args[1].split(",")]
    adapter, n_new = None, 0
    if "--adapter" in args:
        adapter = args[args.index("--adapter") + 1]
    if "--generate" in args:
        n_new = int(args[args.index("--generate") + 1])
    run(folder, ids, adapter, n_new)


if __name__ == "__main__":
    try:
        main()
    except (ValueError, KeyError) as e:
        print(json.dumps({"error": str(e)}))
        sys.exit(1)
