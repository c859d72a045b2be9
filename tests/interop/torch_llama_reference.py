#!/usr/bin/python3
"""PyTorch's answer for kiln's training parity test (torch_training_parity_test.cpp).

Reads DIR/config.json (the model's shape and kiln's parameter table), DIR/params.f32 (kiln's
parameter buffer), DIR/tokens.i32 and DIR/targets.i32; builds the same Llama in float64 from
those weights (RMSNorm, interleaved rope, grouped-query causal attention, SwiGLU, output or
tied embeddings, cross-entropy over the targets that are not -1) and writes
  DIR/logits.f32   (B*T, vocab) logits of the first forward
  DIR/grads.f32    the gradient of the mean loss, in kiln's table layout
  DIR/result.json  {"loss": first loss, "adamw_losses": [loss before each of N AdamW steps]}
torch.optim.AdamW applies weight decay only to the tensors the table marks for it.
Exit 77 when torch is not importable (the test then skips visibly).
"""
import json
import math
import sys

try:
    import numpy as np
    import torch
except ImportError as e:  # pragma: no cover
    print(f"skip: {e}", file=sys.stderr)
    sys.exit(77)


def main(d):
    cfg = json.load(open(f"{d}/config.json"))
    params = np.fromfile(f"{d}/params.f32", dtype=np.float32)
    tokens = torch.from_numpy(np.fromfile(f"{d}/tokens.i32", dtype=np.int32).astype(np.int64))
    targets = torch.from_numpy(np.fromfile(f"{d}/targets.i32", dtype=np.int32).astype(np.int64))
    B, T = cfg["B"], cfg["T"]
    E, H, KVH, hd, F, V = cfg["n_embd"], cfg["n_head"], cfg["n_head_kv"], cfg["head_dim"], cfg["n_ff"], cfg["n_vocab"]
    n_rot, eps, theta = cfg["n_rot"], cfg["rms_eps"], cfg["rope_theta"]
    torch.set_num_threads(2)

    tensors = {}
    for t in cfg["tensors"]:
        n = t["rows"] * t["cols"]
        w = torch.tensor(params[t["offset"]:t["offset"] + n].astype(np.float64)).reshape(t["rows"], t["cols"])
        if t["rows"] == 1:
            w = w.reshape(t["cols"])
        tensors[t["name"]] = w.requires_grad_(True)

    # cos/sin per (position, pair): angle p * theta^(-2i / n_rot)
    inv = theta ** (-torch.arange(0, n_rot // 2, dtype=torch.float64) * 2 / n_rot)
    ang = torch.outer(torch.arange(T, dtype=torch.float64), inv)
    cos, sin = ang.cos(), ang.sin()

    def rope(x):  # x (B, T, heads, hd): pairs (2i, 2i + 1) of the first n_rot dims rotate
        rot = x[..., :n_rot].reshape(*x.shape[:-1], n_rot // 2, 2)
        x0, x1 = rot[..., 0], rot[..., 1]
        c, s = cos[None, :, None, :], sin[None, :, None, :]
        out = torch.stack([x0 * c - x1 * s, x0 * s + x1 * c], dim=-1).reshape(*x.shape[:-1], n_rot)
        return torch.cat([out, x[..., n_rot:]], dim=-1)

    def norm(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)

    def forward():
        x = tensors["token_embd.weight"][tokens.reshape(B, T)]
        for l in range(cfg["n_layer"]):
            p = f"blk.{l}."
            h = norm(x, tensors[p + "attn_norm.weight"])
            q = rope((h @ tensors[p + "attn_q.weight"].t()).reshape(B, T, H, hd)).transpose(1, 2)
            k = rope((h @ tensors[p + "attn_k.weight"].t()).reshape(B, T, KVH, hd)).transpose(1, 2)
            v = (h @ tensors[p + "attn_v.weight"].t()).reshape(B, T, KVH, hd).transpose(1, 2)
            k = k.repeat_interleave(H // KVH, dim=1)
            v = v.repeat_interleave(H // KVH, dim=1)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(hd) + mask
            y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * hd)
            x = x + y @ tensors[p + "attn_output.weight"].t()
            h = norm(x, tensors[p + "ffn_norm.weight"])
            g = h @ tensors[p + "ffn_gate.weight"].t()
            u = h @ tensors[p + "ffn_up.weight"].t()
            x = x + (torch.nn.functional.silu(g) * u) @ tensors[p + "ffn_down.weight"].t()
        x = norm(x, tensors["output_norm.weight"])
        out = tensors["token_embd.weight"] if cfg["tied"] else tensors["output.weight"]
        return (x @ out.t()).reshape(B * T, V)

    logits = forward()
    loss = torch.nn.functional.cross_entropy(logits, targets, ignore_index=-1)
    loss.backward()
    logits.detach().numpy().astype(np.float32).tofile(f"{d}/logits.f32")
    grads = np.zeros_like(params)
    for t in cfg["tensors"]:
        n = t["rows"] * t["cols"]
        grads[t["offset"]:t["offset"] + n] = tensors[t["name"]].grad.reshape(-1).numpy().astype(np.float32)
    grads.tofile(f"{d}/grads.f32")

    a = cfg["adamw"]
    decay = [tensors[t["name"]] for t in cfg["tensors"] if t["decay"]]
    no_decay = [tensors[t["name"]] for t in cfg["tensors"] if not t["decay"]]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a["lr"], betas=(a["beta1"], a["beta2"]), eps=a["eps"])
    losses = []
    for _ in range(a["steps"]):
        opt.zero_grad()
        l = torch.nn.functional.cross_entropy(forward(), targets, ignore_index=-1)
        losses.append(float(l))
        l.backward()
        opt.step()
    json.dump({"loss": float(loss), "adamw_losses": losses}, open(f"{d}/result.json", "w"))


if __name__ == "__main__":
    main(sys.argv[1])
