#!/usr/bin/python3
"""A Hugging Face-layout Llama-family checkpoint written by PyTorch, and its reference logits.

usage: hf_llama_checkpoint.py DIR ARCH WEIGHTS TOKENIZER_MODEL
  ARCH      llama (GQA, untied lm_head, rotate-half rope on Hugging Face's q/k layout, as
            transformers' LlamaForCausalLM computes) or qwen2 (q/k/v biases, tied embeddings)
  WEIGHTS   safetensors (model.safetensors written by the small writer below, an independent
            implementation of the format), sharded (two safetensors shards and
            model.safetensors.index.json), or torch (pytorch_model.bin by torch.save)
Writes DIR/config.json, the weights, DIR/tokenizer.model (a copy of TOKENIZER_MODEL),
DIR/tokenizer_config.json, DIR/generation_config.json, DIR/tokens.i32 (the prompt) and
DIR/logits.f32 ((T, vocab) float32 logits of a float64 forward over the prompt).
Exit 77 when torch is not importable (the test then skips visibly).
"""
import json
import math
import shutil
import struct
import sys
from collections import OrderedDict

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)

VOCAB = 32000
E, LAYERS, H, KVH, F, CTX = 64, 2, 4, 2, 160, 128
HD = E // H


def make_weights(arch, g):
    def w(*shape, scale):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * scale

    sd = OrderedDict()
    # Embedding rows with a spread of norms give peaked logits, so greedy tokens mean something.
    sd["model.embed_tokens.weight"] = w(VOCAB, E, scale=1.0) * (0.5 + torch.rand(VOCAB, 1, generator=g, dtype=torch.float64))
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        sd[p + "input_layernorm.weight"] = 1 + w(E, scale=0.1)
        sd[p + "self_attn.q_proj.weight"] = w(H * HD, E, scale=0.3)
        sd[p + "self_attn.k_proj.weight"] = w(KVH * HD, E, scale=0.3)
        sd[p + "self_attn.v_proj.weight"] = w(KVH * HD, E, scale=0.2)
        if arch == "qwen2":
            sd[p + "self_attn.q_proj.bias"] = w(H * HD, scale=0.2)
            sd[p + "self_attn.k_proj.bias"] = w(KVH * HD, scale=0.2)
            sd[p + "self_attn.v_proj.bias"] = w(KVH * HD, scale=0.2)
        sd[p + "self_attn.o_proj.weight"] = w(E, H * HD, scale=0.2)
        sd[p + "post_attention_layernorm.weight"] = 1 + w(E, scale=0.1)
        sd[p + "mlp.gate_proj.weight"] = w(F, E, scale=0.2)
        sd[p + "mlp.up_proj.weight"] = w(F, E, scale=0.2)
        sd[p + "mlp.down_proj.weight"] = w(E, F, scale=0.2)
    sd["model.norm.weight"] = 1 + w(E, scale=0.1)
    if arch != "qwen2":
        sd["lm_head.weight"] = w(VOCAB, E, scale=0.5)
    # Stored as float32 (what the checkpoint holds); the reference computes from the same values.
    return OrderedDict((k, v.float()) for k, v in sd.items())


def forward(sd, arch, tokens, theta, eps):
    t = {k: v.double() for k, v in sd.items()}
    T = len(tokens)
    x = t["model.embed_tokens.weight"][torch.tensor(tokens)]
    inv = theta ** (-torch.arange(0, HD, 2, dtype=torch.float64) / HD)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos = torch.cat([ang.cos(), ang.cos()], dim=-1)  # (T, HD): transformers' layout
    sin = torch.cat([ang.sin(), ang.sin()], dim=-1)

    def rotate_half(v):
        return torch.cat([-v[..., HD // 2:], v[..., :HD // 2]], dim=-1)

    def rms(v, w):
        return v / torch.sqrt((v * v).mean(-1, keepdim=True) + eps) * w

    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    for l in range(LAYERS):
        p = f"model.layers.{l}."
        h = rms(x, t[p + "input_layernorm.weight"])
        q = h @ t[p + "self_attn.q_proj.weight"].T
        k = h @ t[p + "self_attn.k_proj.weight"].T
        v = h @ t[p + "self_attn.v_proj.weight"].T
        if arch == "qwen2":
            q = q + t[p + "self_attn.q_proj.bias"]
            k = k + t[p + "self_attn.k_proj.bias"]
            v = v + t[p + "self_attn.v_proj.bias"]
        q = q.view(T, H, HD).transpose(0, 1)
        k = k.view(T, KVH, HD).transpose(0, 1)
        v = v.view(T, KVH, HD).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(H // KVH, dim=0)
        v = v.repeat_interleave(H // KVH, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(HD) + mask, dim=-1)
        o = (att @ v).transpose(0, 1).reshape(T, H * HD)
        x = x + o @ t[p + "self_attn.o_proj.weight"].T
        h = rms(x, t[p + "post_attention_layernorm.weight"])
        gate = h @ t[p + "mlp.gate_proj.weight"].T
        up = h @ t[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(gate) * up) @ t[p + "mlp.down_proj.weight"].T
    x = rms(x, t["model.norm.weight"])
    out = t["lm_head.weight"] if "lm_head.weight" in t else t["model.embed_tokens.weight"]
    return x @ out.T


def write_safetensors(path, tensors):
    """The safetensors layout written out by hand: u64 header length, JSON header, raw data."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, v in tensors.items():
        data = v.contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def main(d, arch, weights, tokenizer_model):
    g = torch.Generator().manual_seed(1234 if arch == "llama" else 4321)
    sd = make_weights(arch, g)
    theta, eps = 10000.0 if arch == "llama" else 1000000.0, 1e-6
    config = {
        "architectures": ["LlamaForCausalLM" if arch == "llama" else "Qwen2ForCausalLM"],
        "model_type": arch,
        "hidden_size": E, "intermediate_size": F, "num_hidden_layers": LAYERS,
        "num_attention_heads": H, "num_key_value_heads": KVH, "max_position_embeddings": CTX,
        "rms_norm_eps": eps, "rope_theta": theta, "vocab_size": VOCAB,
        "tie_word_embeddings": arch == "qwen2", "torch_dtype": "float32",
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    }
    json.dump(config, open(f"{d}/config.json", "w"), indent=2)
    if weights == "torch":
        torch.save(sd, f"{d}/pytorch_model.bin")
    elif weights == "sharded":
        names = list(sd.keys())
        half = len(names) // 2
        shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
        weight_map = {}
        for file, part in shards.items():
            write_safetensors(f"{d}/{file}", OrderedDict((n, sd[n]) for n in part))
            weight_map.update({n: file for n in part})
        total = sum(v.numel() * 4 for v in sd.values())
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, open(f"{d}/model.safetensors.index.json", "w"))
    else:
        write_safetensors(f"{d}/model.safetensors", sd)
    shutil.copy(tokenizer_model, f"{d}/tokenizer.model")
    json.dump({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": True, "add_eos_token": False,
               "chat_template": "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"},
              open(f"{d}/tokenizer_config.json", "w"))
    json.dump({"bos_token_id": 1, "eos_token_id": [2]}, open(f"{d}/generation_config.json", "w"))
    tokens = [1, 450, 4996, 17354, 1701, 29916, 432, 17204, 975, 278, 17366, 11203, 29889, 29871, 13, 3118]
    np.array(tokens, dtype=np.int32).tofile(f"{d}/tokens.i32")
    forward(sd, arch, tokens, theta, eps).float().numpy().astype("<f4").tofile(f"{d}/logits.f32")


if __name__ == "__main__":
    main(*sys.argv[1:5])
