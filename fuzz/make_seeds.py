#!/usr/bin/env python3
"""Writes the small seed files in fuzz/corpus/ (run from anywhere; the seeds are committed).

GGUF seeds cover every metadata value type, nested arrays, both versions, a custom alignment,
known, block-quantized and unknown tensor types, and a file without tensors. llama2.c seeds are
tiny checkpoints with a shared and a separate classifier. safetensors seeds cover every dtype,
metadata, a scalar, an empty and a 5-dimensional tensor, and a file without tensors. Training
checkpoint seeds are tiny models with a tied and a separate output. PyTorch seeds are
torch.save-style zips (stored, aligned entries with data descriptors as torch writes them; one
ZIP64) around hand-written protocol 2 and 4 pickles of state dicts; the pickle seeds are those
pickles alone, plus hostile ones the unpickler must refuse. Teacher cache seeds are one-shard
caches of kiln distill (k of 2 and 3 over a vocabulary of 5, two windows of 3 positions).
"""
import hashlib
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def gguf_string(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


# (type id, struct format) of the fixed-size GGUF value types.
U8, I8, U16, I16, U32, I32, F32, BOOL, STRING, ARRAY, U64, I64, F64 = range(13)
FMT = {U8: "B", I8: "b", U16: "H", I16: "h", U32: "I", I32: "i", F32: "f", BOOL: "B", U64: "Q", I64: "q", F64: "d"}


def value(t, v):
    if t == STRING:
        return gguf_string(v)
    if t == ARRAY:
        elem_type, items = v
        return struct.pack("<IQ", elem_type, len(items)) + b"".join(value(elem_type, i) for i in items)
    return struct.pack("<" + FMT[t], v)


def kv(key, t, v):
    return gguf_string(key) + struct.pack("<I", t) + value(t, v)


# ggml type id -> (block size, block bytes)
BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 8: (32, 34), 12: (256, 144), 16: (256, 66), 30: (1, 2)}


def gguf(kvs, tensors, version=3, alignment=32):
    """tensors: list of (name, ne list, ggml type). Offsets are packed and aligned."""
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kvs)) + b"".join(kvs)
    offset, data_end = 0, 0
    for name, ne, t in tensors:
        out += gguf_string(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", d) for d in ne)
        out += struct.pack("<IQ", t, offset)
        n = 1
        for d in ne:
            n *= d
        block, size = BLOCKS[t]
        data_end = offset + n // block * size
        offset = (data_end + alignment - 1) // alignment * alignment
    out += b"\0" * (-len(out) % alignment)
    return out + bytes(i % 251 for i in range(data_end))


def llama2c(dim, hidden, layers, heads, kv_heads, vocab, seq_len):
    head = dim // heads
    kv_dim = head * kv_heads
    v = abs(vocab)
    n = v * dim + layers * (2 * dim + 2 * dim * dim + 2 * kv_dim * dim + 3 * hidden * dim) + dim + seq_len * head
    if vocab < 0:
        n += v * dim
    return struct.pack("<7i", dim, hidden, layers, heads, kv_heads, vocab, seq_len) + struct.pack(
        "<%df" % n, *[(i % 17) / 16.0 - 0.5 for i in range(n)])


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


every_type = [
    kv("general.architecture", STRING, "llama"),
    kv("u8", U8, 7), kv("i8", I8, -7), kv("u16", U16, 700), kv("i16", I16, -700),
    kv("u32", U32, 70000), kv("i32", I32, -70000), kv("f32", F32, 0.5), kv("bool", BOOL, 1),
    kv("u64", U64, 2**64 - 1), kv("i64", I64, -(2**40)), kv("f64", F64, 1e-300),
    kv("tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "a"])),
    kv("scores", ARRAY, (F32, [0.0, -1.0, -2.5, 3.0])),
    kv("types", ARRAY, (I32, [2, 3, 3, 1])),
    kv("nested", ARRAY, (ARRAY, [(U8, [1, 2]), (STRING, ["x"]), (ARRAY, [(BOOL, [0, 1])])])),
]
write("gguf_fuzz", "every_type.gguf", gguf(every_type, [("token_embd.weight", [8, 4], 1), ("norm", [8], 0),
                                                       ("q", [32, 2], 8), ("k4", [256], 12)]))
write("gguf_fuzz", "v2_align64.gguf",
      gguf([kv("general.alignment", U32, 64), kv("name", STRING, "v2")],
           [("a", [4, 2, 2], 0), ("b", [64], 2), ("c", [2, 2, 2, 2], 30)], version=2, alignment=64))
write("gguf_fuzz", "unknown_type.gguf", gguf([kv("general.name", STRING, "iq")], [("iq", [256, 2], 16), ("f", [3], 0)]))
write("gguf_fuzz", "no_tensors.gguf", gguf([kv("general.name", STRING, "empty"), kv("flag", BOOL, 0)], []))
llama_keys = [
    kv("general.architecture", STRING, "llama"), kv("llama.embedding_length", U32, 8),
    kv("llama.block_count", U32, 1), kv("llama.feed_forward_length", U32, 16),
    kv("llama.attention.head_count", U32, 2), kv("llama.attention.head_count_kv", U32, 1),
    kv("llama.attention.layer_norm_rms_epsilon", F32, 1e-5), kv("tokenizer.ggml.model", STRING, "llama"),
    kv("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "<0x0A>", "\u2581the", "a", "b", "c"])),
]
llama_tensors = [("token_embd.weight", [8, 8], 1), ("blk.0.attn_norm.weight", [8], 0), ("blk.0.attn_q.weight", [8, 8], 1),
                 ("blk.0.attn_k.weight", [8, 4], 1), ("blk.0.attn_v.weight", [8, 4], 1),
                 ("blk.0.attn_output.weight", [8, 8], 1), ("blk.0.ffn_norm.weight", [8], 0),
                 ("blk.0.ffn_gate.weight", [8, 16], 1), ("blk.0.ffn_down.weight", [16, 8], 1),
                 ("blk.0.ffn_up.weight", [8, 16], 1), ("output_norm.weight", [8], 0)]
write("gguf_fuzz", "tiny_llama.gguf", gguf(llama_keys, llama_tensors))

# The families' own keys and tensors: qwen3's per-head q/k norms with YaRN rope scaling, phi3's
# fused attn_qkv and gate-up with LongRoPE factors and attention factor.
def family_keys(arch, extra):
    return [kv("general.architecture", STRING, arch)] + [
        kv(arch + k[len("llama"):], t, v) if k.startswith("llama.") else kv(k, t, v)
        for (k, t, v) in [("llama.embedding_length", U32, 8), ("llama.block_count", U32, 1),
                          ("llama.feed_forward_length", U32, 16), ("llama.attention.head_count", U32, 2),
                          ("llama.attention.head_count_kv", U32, 1), ("llama.attention.layer_norm_rms_epsilon", F32, 1e-6),
                          ("tokenizer.ggml.model", STRING, "llama"),
                          ("tokenizer.ggml.tokens", ARRAY, (STRING, ["<unk>", "<s>", "</s>", "<0x0A>", "\u2581the", "a", "b", "c"]))]
    ] + extra


qwen3_seed_keys = [("qwen3.attention.key_length", U32, 4), ("qwen3.attention.value_length", U32, 4),
                   ("qwen3.rope.scaling.type", STRING, "yarn"), ("qwen3.rope.scaling.factor", F32, 4.0),
                   ("qwen3.rope.scaling.original_context_length", U32, 64), ("qwen3.rope.scaling.yarn_beta_fast", F32, 32.0),
                   ("qwen3.rope.scaling.yarn_beta_slow", F32, 1.0), ("qwen3.rope.scaling.attn_factor", F32, 1.0)]
qwen3_tensors = [("token_embd.weight", [8, 8], 1), ("blk.0.attn_norm.weight", [8], 0), ("blk.0.attn_q.weight", [8, 8], 1),
                 ("blk.0.attn_k.weight", [8, 4], 1), ("blk.0.attn_v.weight", [8, 4], 1),
                 ("blk.0.attn_q_norm.weight", [4], 0), ("blk.0.attn_k_norm.weight", [4], 0),
                 ("blk.0.attn_output.weight", [8, 8], 1), ("blk.0.ffn_norm.weight", [8], 0),
                 ("blk.0.ffn_gate.weight", [8, 16], 1), ("blk.0.ffn_down.weight", [16, 8], 1),
                 ("blk.0.ffn_up.weight", [8, 16], 1), ("output_norm.weight", [8], 0)]
write("gguf_fuzz", "tiny_qwen3_yarn.gguf", gguf(family_keys("qwen3", [kv(*k) for k in qwen3_seed_keys]), qwen3_tensors))
phi3_seed_keys = [("phi3.context_length", U32, 256), ("phi3.rope.dimension_count", U32, 4),
                  ("phi3.rope.scaling.original_context_length", U32, 64), ("phi3.rope.scaling.attn_factor", F32, 1.19),
                  ("phi3.attention.sliding_window", U32, 0)]
phi3_tensors = [("token_embd.weight", [8, 8], 1), ("blk.0.attn_norm.weight", [8], 0), ("blk.0.attn_qkv.weight", [8, 16], 1),
                ("blk.0.attn_output.weight", [8, 8], 1), ("blk.0.ffn_norm.weight", [8], 0),
                ("blk.0.ffn_up.weight", [8, 32], 1), ("blk.0.ffn_down.weight", [16, 8], 1),
                ("rope_factors_long.weight", [2], 0), ("rope_factors_short.weight", [2], 0),
                ("output_norm.weight", [8], 0), ("output.weight", [8, 8], 1)]
write("gguf_fuzz", "tiny_phi3_longrope.gguf", gguf(family_keys("phi3", [kv(*k) for k in phi3_seed_keys]), phi3_tensors))

# gemma2 and gemma3: the tiny llama renamed, with the families' own keys (window, soft-caps) and
# tensors (post-norms; gemma3's per-head q/k norms of head size 4).
gemma_tensors = llama_tensors + [("blk.0.post_attention_norm.weight", [8], 0), ("blk.0.post_ffw_norm.weight", [8], 0)]
write("gguf_fuzz", "tiny_gemma2.gguf", gguf(family_keys("gemma2", [
    kv("gemma2.attention.sliding_window", U32, 4), kv("gemma2.attn_logit_softcapping", F32, 50.0),
    kv("gemma2.final_logit_softcapping", F32, 30.0)]), gemma_tensors))
write("gguf_fuzz", "tiny_gemma3.gguf", gguf(family_keys("gemma3", [
    kv("gemma3.attention.sliding_window", U32, 3), kv("gemma3.rope.freq_base", F32, 1e6),
    kv("gemma3.rope.scaling.type", STRING, "linear"), kv("gemma3.rope.scaling.factor", F32, 8.0)]),
    gemma_tensors + [("blk.0.attn_q_norm.weight", [4], 0), ("blk.0.attn_k_norm.weight", [4], 0)]))

# Mixtures of experts: mixtral (llama with expert counts) and qwen3moe (its own expert width), with
# the router and the stacked 3-D expert tensors (ne {in, out, n_expert}).
def expert_tensors(n_ff_exp, n_expert):
    return [("blk.0.ffn_gate_inp.weight", [8, n_expert], 0), ("blk.0.ffn_gate_exps.weight", [8, n_ff_exp, n_expert], 1),
            ("blk.0.ffn_up_exps.weight", [8, n_ff_exp, n_expert], 1),
            ("blk.0.ffn_down_exps.weight", [n_ff_exp, 8, n_expert], 1)]
dense_ffn = ("blk.0.ffn_gate.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight")
attention_tensors = [t for t in llama_tensors if t[0] not in dense_ffn]
write("gguf_fuzz", "tiny_mixtral.gguf",
      gguf(llama_keys + [kv("llama.expert_count", U32, 4), kv("llama.expert_used_count", U32, 2)],
           attention_tensors + expert_tensors(16, 4)))
qwen3moe_keys = [kv("general.architecture", STRING, "qwen3moe")] + [
    kv(k.replace("llama.", "qwen3moe."), t, v) for k, t, v in [
        ("llama.embedding_length", U32, 8), ("llama.block_count", U32, 1), ("llama.feed_forward_length", U32, 16),
        ("llama.attention.head_count", U32, 2), ("llama.attention.head_count_kv", U32, 1),
        ("llama.attention.key_length", U32, 4), ("llama.attention.value_length", U32, 4),
        ("llama.expert_count", U32, 8), ("llama.expert_used_count", U32, 3),
        ("llama.expert_feed_forward_length", U32, 32), ("llama.attention.layer_norm_rms_epsilon", F32, 1e-6)]
] + llama_keys[7:]  # the tokenizer
write("gguf_fuzz", "tiny_qwen3moe.gguf",
      gguf(qwen3moe_keys, attention_tensors + [("blk.0.attn_q_norm.weight", [4], 0), ("blk.0.attn_k_norm.weight", [4], 0)]
           + expert_tensors(32, 8)))

write("llama2c_fuzz", "shared_classifier.bin", llama2c(8, 12, 1, 2, 1, 6, 2))
write("llama2c_fuzz", "separate_classifier.bin", llama2c(8, 12, 2, 4, 2, -5, 3))
write("llama2c_fuzz", "three_heads.bin", llama2c(12, 8, 1, 3, 1, 3, 1))


# safetensors dtype name -> bytes per element
SAFETENSORS_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "F8_E4M3": 1, "F8_E5M2": 1, "I64": 8, "I32": 4,
                     "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape outermost-first); data packed in list order, header
    padded with spaces to a multiple of 8 as the reference writer does."""
    header, offset = {}, 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        n = SAFETENSORS_SIZES[dtype]
        for d in shape:
            n *= d
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(i % 251 for i in range(offset))


write("safetensors_fuzz", "every_dtype.safetensors",
      safetensors([(f"t.{d.lower()}", d, [2, 3]) for d in SAFETENSORS_SIZES], {"format": "pt", "note": "\u00fc"}))
write("safetensors_fuzz", "tiny_llama.safetensors", safetensors([
    ("model.embed_tokens.weight", "BF16", [8, 8]), ("model.layers.0.input_layernorm.weight", "F32", [8]),
    ("model.layers.0.self_attn.q_proj.weight", "F16", [8, 8]), ("model.layers.0.self_attn.k_proj.weight", "F16", [4, 8]),
    ("model.norm.weight", "F32", [8]), ("lm_head.weight", "BF16", [8, 8])], {"format": "pt"}))
write("safetensors_fuzz", "scalar_empty_5d.safetensors", safetensors([
    ("scalar", "F32", []), ("empty", "F16", [0, 4]), ("five", "F32", [1, 2, 1, 2, 1]), ("flag", "BOOL", [3])]))
write("safetensors_fuzz", "no_tensors.safetensors", safetensors([], {"a": "b"}))


def token_shard(docs, vocab_size):
    """A kiln token shard (docs/formats.md, "Token shards") holding `docs`, lists of ids."""
    width = 2 if vocab_size <= 65536 else 4
    tokens = [t for d in docs for t in d]
    body = struct.pack("<%d%s" % (len(tokens), "H" if width == 2 else "I"), *tokens)
    body += b"\0" * (-len(body) % 8)
    offsets = [0]
    for d in docs:
        offsets.append(offsets[-1] + len(d))
    header = b"KILNTOK\0" + struct.pack("<IIQQII", 1, width, len(tokens), len(docs), vocab_size, 0) + bytes(range(32))
    return header + body + struct.pack("<%dQ" % len(offsets), *offsets)


write("data_shard_fuzz", "two_byte.tokens", token_shard([[1, 5, 6, 7], [], [1, 31999]], 32000))
write("data_shard_fuzz", "four_byte.tokens", token_shard([[70000, 0, 65536]], 128256))
write("data_shard_fuzz", "empty.tokens", token_shard([], 10))


def parameter_table(n_vocab, n_embd, n_layer, q_dim, kv_dim, n_ff, tied):
    """train::ParameterTable's layout: GGUF order, each tensor at a multiple of 16 floats."""
    tensors, total = [], 0

    def add(name, rows, cols):
        nonlocal total
        tensors.append({"name": name, "rows": rows, "cols": cols, "offset": total})
        total += (rows * cols + 15) // 16 * 16

    add("token_embd.weight", n_vocab, n_embd)
    for layer in range(n_layer):
        p = "blk.%d." % layer
        add(p + "attn_norm.weight", 1, n_embd)
        add(p + "attn_q.weight", q_dim, n_embd)
        add(p + "attn_k.weight", kv_dim, n_embd)
        add(p + "attn_v.weight", kv_dim, n_embd)
        add(p + "attn_output.weight", n_embd, q_dim)
        add(p + "ffn_norm.weight", 1, n_embd)
        add(p + "ffn_gate.weight", n_ff, n_embd)
        add(p + "ffn_up.weight", n_ff, n_embd)
        add(p + "ffn_down.weight", n_embd, n_ff)
    add("output_norm.weight", 1, n_embd)
    if not tied:
        add("output.weight", n_vocab, n_embd)
    return tensors, total


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def training_checkpoint(n_vocab, n_embd, n_layer, n_head, n_head_kv, n_ff, tied, step, cursor):
    """A kiln training checkpoint (docs/formats.md, "Training checkpoints")."""
    head_dim = n_embd // n_head
    config = {"arch": "llama", "name": "seed", "n_vocab": n_vocab, "n_embd": n_embd, "n_layer": n_layer,
              "n_head": n_head, "n_head_kv": n_head_kv, "head_dim": head_dim, "n_ff": n_ff, "n_ctx_train": 16,
              "n_rot": head_dim, "rms_eps": f32(1e-5), "rope_theta": 10000.0, "rope_scale": 1.0,
              "rope_layout": "interleaved", "qkv_bias": False, "tied_output": tied}
    tensors, total = parameter_table(n_vocab, n_embd, n_layer, n_head * head_dim, n_head_kv * head_dim, n_ff, tied)
    data = b"".join(struct.pack("<%df" % total, *[((i * k) % 13) / 8.0 - 0.75 for i in range(total)]) for k in (1, 3, 5))
    header = json.dumps({"config": config, "step": step, "seed": 1234, "cursor": {"epoch": cursor[0], "position": cursor[1]},
                         "run": {"loss": [4.5, 3.25], "options": {"lr": 0.001}}, "tensors": tensors,
                         "total_floats": total, "sha256": hashlib.sha256(data).hexdigest()},
                        sort_keys=True, separators=(",", ":")).encode()
    out = b"KILNCKPT" + struct.pack("<IIQ", 1, 0, len(header)) + hashlib.sha256(header).digest() + header
    return out + b"\0" * (-len(out) % 64) + data


write("checkpoint_fuzz", "tied.ckpt", training_checkpoint(8, 4, 1, 2, 1, 8, True, 10, (0, 3)))
write("checkpoint_fuzz", "separate_output.ckpt", training_checkpoint(6, 4, 2, 2, 2, 4, False, 0, (2, 0)))


def teacher_cache_shard(k, context, windows, split):
    """One shard of a kiln distill teacher cache (docs/formats.md, "Teacher top-k cache") holding
    every window of its split."""
    header = json.dumps({"format": "kiln-teacher-topk", "teacher_sha256": "ab" * 32, "teacher_name": "seed",
                         "tokenizer_hash": "cd" * 32, "n_vocab": 5, "context": context, "k": k, "temperature": 2.0,
                         "split": split, "data_sha256": "ef" * 32, "windows": windows, "window_begin": 0,
                         "window_count": windows, "shard": 0, "shards": 1}, separators=(",", ":")).encode()
    out = b"KILNTOPK" + struct.pack("<IIQ", 1, 0, len(header)) + header
    out += b"\0" * (-len(out) % 8)
    for w in range(windows):
        for t in range(context):
            ids = [(w + t + i) % 5 for i in range(k)]
            lps = [-1.0 - 0.5 * i for i in range(k)]
            out += struct.pack("<%dI" % k, *ids) + struct.pack("<%df" % k, *lps)
    return out


write("teacher_cache_fuzz", "train_k2.topk", teacher_cache_shard(2, 3, 2, "train"))
write("teacher_cache_fuzz", "val_k3.topk", teacher_cache_shard(3, 3, 2, "val"))


def pickle_int(v):
    return b"J" + struct.pack("<i", v)


def pickle_str(s, short=False):
    b = s.encode()
    return (b"\x8c" + struct.pack("<B", len(b)) if short else b"X" + struct.pack("<I", len(b))) + b


def torch_state_dict_pickle(tensors, metadata=False):
    """A protocol 2 pickle of an OrderedDict of name -> tensor, as torch.save writes it.
    tensors: (name, storage type, key, numel, offset, size, stride)."""
    out = b"\x80\x02ccollections\nOrderedDict\nq\x00)Rq\x01("
    for name, storage_type, key, numel, offset, size, stride in tensors:
        out += pickle_str(name) + b"ctorch._utils\n_rebuild_tensor_v2\n((" + pickle_str("storage")
        out += b"ctorch\n" + storage_type.encode() + b"\n" + pickle_str(key) + pickle_str("cpu") + pickle_int(numel)
        out += b"tQ" + pickle_int(offset) + b"(" + b"".join(map(pickle_int, size)) + b"t("
        out += b"".join(map(pickle_int, stride)) + b"t\x89h\x00)Rtr" + struct.pack("<I", 1000) + b"R"
    out += b"u"
    if metadata:  # nn.Module.state_dict()'s _metadata, set through BUILD
        out += b"}" + pickle_str("_metadata") + b"h\x00)R" + pickle_str("") + b"}" + pickle_str("version")
        out += b"K\x01sssb"
    return out + b"."


def protocol4_pickle():
    """A protocol 4 state dict: FRAME, SHORT_BINUNICODE, STACK_GLOBAL, MEMOIZE, LONG1."""
    body = pickle_str("collections", True) + pickle_str("OrderedDict", True) + b"\x93\x94)R\x94"
    body += pickle_str("w", True) + pickle_str("torch._utils", True) + pickle_str("_rebuild_tensor_v2", True)
    body += b"\x93((" + pickle_str("storage", True) + pickle_str("torch", True) + pickle_str("HalfStorage", True)
    body += b"\x93" + pickle_str("0", True) + pickle_str("cpu", True) + b"\x8a\x01\x04tQK\x00K\x02K\x02\x86K\x02K\x01"
    body += b"\x86\x88h\x00)RtR\x94s."
    return b"\x80\x04\x95" + struct.pack("<Q", len(body)) + body


def torch_zip(archive, entries, zip64=False):
    """A stored zip as torch.save writes it: data descriptors, each entry's data aligned to 64 bytes
    by a padding extra field; with zip64, every size and offset in ZIP64 records."""
    body, central = b"", b""
    for name, data in entries:
        n = (archive + "/" + name).encode()
        crc = zlib.crc32(data) & 0xFFFFFFFF
        offset = len(body)
        pad = -(offset + 30 + len(n) + 4) % 64
        extra = struct.pack("<HH", 0x4B46, pad) + b"Z" * pad
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 8, 0, 0, 0, 0, 0, 0, len(n), len(extra)) + n + extra + data
        body += struct.pack("<IIII", 0x08074B50, crc, len(data), len(data))
        if zip64:
            cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
            sizes = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        else:
            cextra, sizes = b"", (len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 8, 0, 0, 0, crc, sizes[0], sizes[1], len(n),
                               len(cextra), 0, 0, 0, 0, sizes[2]) + n + cextra
    count, cd_offset = len(entries), len(body)
    if not zip64:
        return body + central + struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(central), cd_offset, 0)
    z_offset = cd_offset + len(central)
    end64 = struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count, len(central), cd_offset)
    locator = struct.pack("<IIQI", 0x07064B50, 0, z_offset, 1)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return body + central + end64 + locator + end


def floats(n, fmt="<%df"):
    return struct.pack(fmt % n, *[(i % 11) / 4.0 - 1.0 for i in range(n)])


# An embedding and its tied head on one storage, a view at an offset, f16 and bf16 storages.
hf_tensors = [("model.embed_tokens.weight", "FloatStorage", "0", 24, 0, [6, 4], [4, 1]),
              ("lm_head.weight", "FloatStorage", "0", 24, 0, [6, 4], [4, 1]),
              ("model.layers.0.mlp.up_proj.weight", "HalfStorage", "1", 12, 4, [2, 4], [4, 1]),
              ("model.norm.weight", "BFloat16Storage", "2", 4, 0, [4], [1]),
              ("model.scale", "FloatStorage", "3", 1, 0, [], []),
              ("transposed", "FloatStorage", "4", 6, 0, [3, 2], [1, 3]),
              ("ids", "LongStorage", "5", 3, 0, [3], [1])]
hf_storages = [("data/0", floats(24)), ("data/1", floats(12, "<%de")), ("data/2", b"\x80\x3f" * 4),
               ("data/3", floats(1)), ("data/4", floats(6)), ("data/5", struct.pack("<3q", 1, 2, 3))]
hf_pickle = torch_state_dict_pickle(hf_tensors)
module_pickle = torch_state_dict_pickle([("0.weight", "FloatStorage", "0", 24, 0, [6, 4], [4, 1]),
                                         ("0.bias", "HalfStorage", "1", 12, 0, [6], [1])], metadata=True)
p4_pickle = protocol4_pickle()
write("pytorch_checkpoint_fuzz", "hf.bin",
      torch_zip("hf", [("data.pkl", hf_pickle)] + hf_storages + [("version", b"3\n"), ("byteorder", b"little")]))
write("pytorch_checkpoint_fuzz", "module_zip64.bin",
      torch_zip("module", [("data.pkl", module_pickle)] + hf_storages[:2] + [("version", b"3\n")], zip64=True))
write("pytorch_checkpoint_fuzz", "protocol4.bin", torch_zip("archive", [("data.pkl", p4_pickle), ("data/0", floats(4, "<%de")), ("version", b"3\n")]))
write("pickle_fuzz", "hf.pkl", hf_pickle)
write("pickle_fuzz", "module.pkl", module_pickle)
write("pickle_fuzz", "protocol4.pkl", p4_pickle)
write("pickle_fuzz", "values.pkl", b"\x80\x02}q\x00(X\x01\x00\x00\x00a]q\x01(K\x01J\xfe\xff\xff\xffM\x2c\x01"
      b"\x8a\x06\x00\x00\x00\x00\x00\x01G\x3f\xf8\x00\x00\x00\x00\x00\x00\x88N)eX\x01\x00\x00\x00b\x8c\x01x\x85u.")
write("pickle_fuzz", "os_system.pkl", b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.")
write("pickle_fuzz", "inst.pkl", b"\x80\x02(X\x02\x00\x00\x00lsios\nsystem\n.")


# tokenizer_fuzz: the first byte picks the reader (see tokenizer_fuzz.cpp). A Llama-style
# byte-fallback tokenizer.json in both spellings (Prepend/Replace normalizer, Metaspace), a
# byte-level one with added tokens and a BOS template, and llama2.c tokenizer.bin files.
SP = "\u2581"
spm_json = {
    "added_tokens": [{"id": 0, "content": "<unk>", "special": True}, {"id": 1, "content": "<s>", "special": True},
                     {"id": 2, "content": "</s>", "special": True}, {"id": 9, "content": "<x>", "special": False}],
    "normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SP},
                                                       {"type": "Replace", "pattern": {"String": " "}, "content": SP}]},
    "pre_tokenizer": None,
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                                                {"Sequence": {"id": "A", "type_id": 0}}]},
    "model": {"type": "BPE", "byte_fallback": True, "fuse_unk": True, "unk_token": "<unk>",
              "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0x0A>": 3, "<0x41>": 4, "a": 5, "b": 6, SP: 7,
                        SP + "a": 8, "<x>": 9, "ab": 10, SP + "ab": 11},
              "merges": ["a b", SP + " a", SP + " ab", SP + "a b"]},
}
metaspace_json = dict(spm_json, normalizer=None,
                      pre_tokenizer={"type": "Metaspace", "replacement": SP, "prepend_scheme": "first", "split": False})
def byte_to_unicode():
    """GPT-2's mapping of the 256 bytes to printable characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return out


BYTE_CHARS = byte_to_unicode()
byte_level_vocab = {BYTE_CHARS[b]: b for b in range(256)}
for text in ["ab", "\u0120ab", "12", "\u0120\u0120"]:
    byte_level_vocab[text] = len(byte_level_vocab)
byte_level_json = {
    "added_tokens": [{"id": 300, "content": "<|bos|>", "special": True}, {"id": 301, "content": "<u>", "special": False}],
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": r"\p{N}{1,3}| ?\p{L}+|\s+"}, "behavior": "Isolated"},
        {"type": "ByteLevel", "add_prefix_space": False, "use_regex": False}]},
    "post_processor": {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<|bos|>", "type_id": 0}},
                                                                {"Sequence": {"id": "A", "type_id": 0}}]},
    "model": {"type": "BPE", "ignore_merges": True, "vocab": byte_level_vocab,
              "merges": [["a", "b"], ["\u0120", "ab"], ["1", "2"], ["\u0120", "\u0120"]]},
}


def llama2c_tokenizer(tokens):
    """A tokenizer.bin as llama2.c's tokenizer.py writes one: (text, score) per token."""
    data = [t.encode() for t, _ in tokens]
    out = struct.pack("<I", max(len(d) for d in data))
    for d, (_, score) in zip(data, tokens):
        out += struct.pack("<fI", score, len(d)) + d
    return out


def tokenizer_seed(selector, body):
    return bytes([selector]) + (body if isinstance(body, bytes) else json.dumps(body).encode())


write("tokenizer_fuzz", "hf_spm_json", tokenizer_seed(1, spm_json))
write("tokenizer_fuzz", "hf_metaspace_json", tokenizer_seed(1, metaspace_json))
write("tokenizer_fuzz", "llama2c_tokenizer_bin", tokenizer_seed(5, llama2c_tokenizer(
    [("<unk>", 0.0), ("\n<s>\n", 0.0), ("\n</s>\n", 0.0), ("<0x0A>", 0.0), ("a", -3.0), ("b", -4.0), (" a", -2.0),
     ("ab", -1.0), (" ab", -0.5)])))
write("tokenizer_fuzz", "roundtrip_spm_json", tokenizer_seed(6, spm_json))
write("tokenizer_fuzz", "roundtrip_metaspace_json", tokenizer_seed(6, metaspace_json))
write("tokenizer_fuzz", "roundtrip_byte_level_json", tokenizer_seed(6, byte_level_json))

# hf_config_fuzz: Hugging Face config.json files of the three architectures kiln converts, with
# GQA, an explicit head_dim, both rope scalings and tied embeddings.
hf_llama = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "intermediate_size": 160, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "vocab_size": 32000,
            "tie_word_embeddings": False, "torch_dtype": "float32"}
write("hf_config_fuzz", "llama.json", json.dumps(hf_llama).encode())
write("hf_config_fuzz", "llama3_rope.json", json.dumps(dict(hf_llama, head_dim=16, rope_scaling={
    "rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192})).encode())
write("hf_config_fuzz", "mistral_linear.json", json.dumps(dict(hf_llama, architectures=["MistralForCausalLM"],
    model_type="mistral", rope_scaling={"type": "linear", "factor": 2.0})).encode())
write("hf_config_fuzz", "qwen2_tied.json", json.dumps(dict(hf_llama, architectures=["Qwen2ForCausalLM"],
    model_type="qwen2", tie_word_embeddings=True, num_key_value_heads=1)).encode())

# grammar_fuzz: the first byte picks the reader (0 GBNF, 1 JSON Schema, 2 regular expression).
write("grammar_fuzz", "gbnf_json.gbnf", b"\x00" + b'''root ::= object
object ::= "{" ws ( pair ( "," ws pair )* )? "}"
pair ::= string ":" ws value
value ::= object | string | number | "true" | "false" | "null" | "[" ws ( value ( "," ws value )* )? "]"
string ::= "\\"" ( [^"\\\\] | "\\\\" ["\\\\/bfnrt] )* "\\""
number ::= "-"? [0-9]+ ( "." [0-9]+ )? ( [eE] [-+]? [0-9]+ )?
ws ::= [ \\t\\n]{0,4}
# a comment
''')
write("grammar_fuzz", "gbnf_classes.gbnf", b"\x00" + "root ::= [a-zé-ü]{2,5} [^\\x00-\\x1F]? (\"x\" | \"yz\")+ \"\\u00e9\"\n".encode())
write("grammar_fuzz", "schema_nested.json", b"\x01" + json.dumps({
    "type": "object",
    "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 3},
        "age": {"type": "integer", "minimum": -5, "maximum": 120},
        "tags": {"type": "array", "items": {"enum": ["a", "b", 1, None]}, "maxItems": 2},
        "when": {"type": "string", "format": "date-time"},
        "id": {"type": "string", "format": "uuid"},
        "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "kind": {"const": "k"},
        "child": {"$ref": "#/$defs/node"},
        "either": {"anyOf": [{"type": "boolean"}, {"type": "string", "pattern": "^[a-c]{1,2}$"}]},
    },
    "required": ["name", "kind"],
    "additionalProperties": False,
    "$defs": {"node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/node"}}}},
}).encode())
write("grammar_fuzz", "schema_any.json", b"\x01" + json.dumps({"type": ["object", "null"], "prefixItems": [],
    "additionalProperties": {"type": "number"}}).encode())
write("grammar_fuzz", "regex.txt", b"\x02" + rb"^(?:[A-Z][a-z]{1,3}|\d{2,4}-\w+)(\s[^x-z]*)?$")
