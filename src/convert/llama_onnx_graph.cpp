#include "convert/llama_onnx_graph.h"

#include <cmath>
#include <limits>
#include <vector>

namespace kiln::convert {
namespace {

using Ints = std::vector<std::int64_t>;

constexpr auto kFloat = onnx::TensorProto::FLOAT;
constexpr auto kInt64 = onnx::TensorProto::INT64;

// The graph's values shared by every layer.
struct DecoderInputs {
  std::string cos, sin;  // (B, 1, S, n_rot/2): the rotary angles of each new position
  std::string allowed;   // bool (B, 1, 1, S, T): which keys each query attends to
};

struct DecoderGraph {
  const LlamaConfig& c;
  OnnxGraphBuilder& g;
  LlamaOnnxWeights& w;

  // y = x / sqrt(mean(x²) + eps) · weight, over the last axis.
  std::string rms_norm(const std::string& x, const std::string& weight, const std::string& scope) {
    const std::string sq = g.node("Pow", {x, g.constant_f32(2.0f, scope + "/two")}, scope + "/sq");
    const std::string mean =
        g.node("ReduceMean", {sq}, scope + "/mean", {{"axes", Ints{-1}}, {"keepdims", std::int64_t{1}}});
    const std::string var = g.node("Add", {mean, g.constant_f32(c.rms_eps, scope + "/eps")}, scope + "/var");
    const std::string rms = g.node("Sqrt", {var}, scope + "/rms");
    const std::string normed = g.node("Div", {x, rms}, scope + "/normed");
    return g.node("Mul", {normed, weight}, scope + "/out");
  }

  // (B, S, n_heads·head_dim) -> (B, n_heads, S, head_dim)
  std::string split_heads(const std::string& x, int n_heads, const std::string& scope) {
    const std::string r =
        g.node("Reshape", {x, g.constant_i64s({0, 0, n_heads, c.head_dim}, scope + "/shape")}, scope + "/heads");
    return g.node("Transpose", {r}, scope + "/bhsd", {{"perm", Ints{0, 2, 1, 3}}});
  }

  // Rotates pairs (x[i], x[i + n_rot/2]) of each head's first n_rot dims: x is (B, H, S, head_dim).
  std::string rope(const std::string& x, const DecoderInputs& in, const std::string& scope) {
    const int half = c.n_rot / 2;
    std::string rot = x, pass;
    if (c.n_rot < c.head_dim) {
      const std::vector<std::string> parts =
          g.node_outputs("Split", {x, g.constant_i64s({c.n_rot, c.head_dim - c.n_rot}, scope + "/split")},
                         scope + "/part", 2, {{"axis", std::int64_t{-1}}});
      rot = parts[0], pass = parts[1];
    }
    const std::vector<std::string> ab = g.node_outputs("Split", {rot, g.constant_i64s({half, half}, scope + "/halves")},
                                                       scope + "/half", 2, {{"axis", std::int64_t{-1}}});
    const std::string& a = ab[0];
    const std::string& b = ab[1];
    // (a cos - b sin, a sin + b cos), as model/rope.cpp computes it.
    const std::string first =
        g.node("Sub", {g.node("Mul", {a, in.cos}, scope + "/a_cos"), g.node("Mul", {b, in.sin}, scope + "/b_sin")},
               scope + "/first");
    const std::string second =
        g.node("Add", {g.node("Mul", {a, in.sin}, scope + "/a_sin"), g.node("Mul", {b, in.cos}, scope + "/b_cos")},
               scope + "/second");
    std::vector<std::string> pieces = {first, second};
    if (!pass.empty()) pieces.push_back(pass);
    return g.node("Concat", pieces, scope + "/rotated", {{"axis", std::int64_t{-1}}});
  }

  // x + f(x) of one layer; writes present.N.key / .value. x is (B, S, E).
  std::string layer(int il, const std::string& x, const DecoderInputs& in) {
    const std::string p = "blk." + std::to_string(il) + ".";
    const std::string s = "/layers." + std::to_string(il);
    const std::int64_t E = c.n_embd, F = c.n_ff, QD = c.q_dim(), KVD = c.kv_dim();
    const int group = c.n_head / c.n_head_kv;

    // --- attention ---
    const std::string xn = rms_norm(x, w.vector(p + "attn_norm.weight", E), s + "/attn_norm");
    std::string q = g.node("MatMul", {xn, w.matrix(p + "attn_q.weight", E, QD, c.n_head)}, s + "/q");
    std::string k = g.node("MatMul", {xn, w.matrix(p + "attn_k.weight", E, KVD, c.n_head_kv)}, s + "/k");
    std::string v = g.node("MatMul", {xn, w.matrix(p + "attn_v.weight", E, KVD)}, s + "/v");
    if (c.qkv_bias) {
      q = g.node("Add", {q, w.vector(p + "attn_q.bias", QD, c.n_head)}, s + "/q_bias");
      k = g.node("Add", {k, w.vector(p + "attn_k.bias", KVD, c.n_head_kv)}, s + "/k_bias");
      v = g.node("Add", {v, w.vector(p + "attn_v.bias", KVD)}, s + "/v_bias");
    }
    q = rope(split_heads(q, c.n_head, s + "/q"), in, s + "/q_rope");     // (B, n_head, S, hd)
    k = rope(split_heads(k, c.n_head_kv, s + "/k"), in, s + "/k_rope");  // (B, n_kv, S, hd)
    v = split_heads(v, c.n_head_kv, s + "/v");                           // (B, n_kv, S, hd)
    const std::string n = std::to_string(il);
    const std::string present_k = "present." + n + ".key", present_v = "present." + n + ".value";
    g.node_named("Concat", {"past_key_values." + n + ".key", k}, {present_k}, {{"axis", std::int64_t{2}}});
    g.node_named("Concat", {"past_key_values." + n + ".value", v}, {present_v}, {{"axis", std::int64_t{2}}});

    // Grouped-query attention without copying keys: the query heads of one kv head form a group
    // axis, and MatMul broadcasts the kv head over it. (B, n_kv, group, S, hd) · (B, n_kv, 1, hd, T).
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
    const std::string qg = g.node(
        "Reshape", {q, g.constant_i64s({0, c.n_head_kv, group, -1, c.head_dim}, s + "/qg_shape")}, s + "/q_groups");
    const std::string kt =
        g.node("Transpose", {g.node("Unsqueeze", {present_k, g.constant_i64s({2}, s + "/axis2")}, s + "/k5")},
               s + "/k_t", {{"perm", Ints{0, 1, 2, 4, 3}}});
    const std::string v5 = g.node("Unsqueeze", {present_v, g.constant_i64s({2}, s + "/axis2")}, s + "/v5");
    const std::string scores =
        g.node("Mul", {g.node("MatMul", {qg, kt}, s + "/qk"), g.constant_f32(scale, s + "/scale")},
               s + "/scores");  // (B, n_kv, group, S, T)
    const std::string masked =
        g.node("Where", {in.allowed, scores, g.constant_f32(std::numeric_limits<float>::lowest(), s + "/lowest")},
               s + "/masked");
    const std::string probs = g.node("Softmax", {masked}, s + "/probs", {{"axis", std::int64_t{-1}}});
    const std::string ctx = g.node("MatMul", {probs, v5}, s + "/ctx");  // (B, n_kv, group, S, hd)
    const std::string heads =
        g.node("Reshape", {ctx, g.constant_i64s({0, c.n_head, -1, c.head_dim}, s + "/ctx_shape")}, s + "/ctx_heads");
    const std::string bshd = g.node("Transpose", {heads}, s + "/ctx_bshd", {{"perm", Ints{0, 2, 1, 3}}});
    const std::string attn = g.node("Reshape", {bshd, g.constant_i64s({0, 0, QD}, s + "/attn_shape")}, s + "/attn");
    const std::string out = g.node("MatMul", {attn, w.matrix(p + "attn_output.weight", QD, E)}, s + "/wo");
    const std::string x_mid = g.node("Add", {x, out}, s + "/x_mid");

    // --- feed-forward: silu(gate) ⊙ up, then down ---
    const std::string xn2 = rms_norm(x_mid, w.vector(p + "ffn_norm.weight", E), s + "/ffn_norm");
    const std::string gate = g.node("MatMul", {xn2, w.matrix(p + "ffn_gate.weight", E, F)}, s + "/gate");
    const std::string up = g.node("MatMul", {xn2, w.matrix(p + "ffn_up.weight", E, F)}, s + "/up");
    const std::string silu = g.node("Mul", {gate, g.node("Sigmoid", {gate}, s + "/sigmoid")}, s + "/silu");
    const std::string h = g.node("Mul", {silu, up}, s + "/h");
    const std::string down = g.node("MatMul", {h, w.matrix(p + "ffn_down.weight", F, E)}, s + "/down");
    return g.node("Add", {x_mid, down}, s + "/x_out");
  }
};

// The rotary angles and the attention mask, from position_ids, attention_mask and the cache length.
DecoderInputs decoder_inputs(const LlamaConfig& c, const float* freq_factors, OnnxGraphBuilder& g) {
  DecoderInputs in;
  // inv_freq[i] = theta^(-2i / n_rot) / freq_factor[i] / scale, in double as model/rope.cpp does.
  std::vector<float> inv_freq(static_cast<std::size_t>(c.n_rot / 2));
  for (int i = 0; i < c.n_rot / 2; ++i) {
    double f = std::pow(static_cast<double>(c.rope_theta), -2.0 * i / c.n_rot);
    if (freq_factors != nullptr) f /= freq_factors[i];
    inv_freq[static_cast<std::size_t>(i)] = static_cast<float>(f / c.rope_scale);
  }
  const std::string pos = g.node("Cast", {"position_ids"}, "/rope/pos", {{"to", std::int64_t{kFloat}}});
  const std::string pos3 = g.node("Unsqueeze", {pos, g.constant_i64s({-1}, "/rope/axis")}, "/rope/pos3");  // (B, S, 1)
  const std::string angle = g.node("Mul", {pos3, g.constant_f32s(inv_freq, "/rope/inv_freq")}, "/rope/angle");
  const std::string heads_axis = g.constant_i64s({1}, "/rope/heads_axis");
  in.cos = g.node("Unsqueeze", {g.node("Cos", {angle}, "/rope/cos3"), heads_axis}, "/rope/cos");
  in.sin = g.node("Unsqueeze", {g.node("Sin", {angle}, "/rope/sin3"), heads_axis}, "/rope/sin");

  // Query i (0..S-1) sits at cache position P + i and sees keys j <= P + i whose mask is 1.
  const std::string zero = g.constant_i64(0, "/mask/zero");
  const std::string one = g.constant_i64(1, "/mask/one");
  const std::string past_len = g.node(
      "Gather", {g.node("Shape", {"past_key_values.0.key"}, "/mask/past_shape"), g.constant_i64(2, "/mask/seq_axis")},
      "/mask/past_len", {{"axis", std::int64_t{0}}});
  const std::string new_len = g.node("Gather", {g.node("Shape", {"input_ids"}, "/mask/ids_shape"), one},
                                     "/mask/new_len", {{"axis", std::int64_t{0}}});
  const std::string total_len = g.node("Add", {past_len, new_len}, "/mask/total_len");
  const std::string q_pos = g.node("Range", {past_len, total_len, one}, "/mask/q_pos");  // (S)
  const std::string k_pos = g.node("Range", {zero, total_len, one}, "/mask/k_pos");      // (T)
  const std::string causal = g.node("LessOrEqual",
                                    {g.node("Unsqueeze", {k_pos, g.constant_i64s({0}, "/mask/axis0")}, "/mask/k_row"),
                                     g.node("Unsqueeze", {q_pos, g.constant_i64s({1}, "/mask/axis1")}, "/mask/q_col")},
                                    "/mask/causal");  // (S, T)
  const std::string keep =
      g.node("Cast", {"attention_mask"}, "/mask/keep", {{"to", std::int64_t{onnx::TensorProto::BOOL}}});
  const std::string keep5 =
      g.node("Unsqueeze", {keep, g.constant_i64s({1, 2, 3}, "/mask/axes")}, "/mask/keep5");  // (B, 1, 1, 1, T)
  in.allowed = g.node("And", {causal, keep5}, "/mask/allowed");                              // (B, 1, 1, S, T)
  return in;
}

}  // namespace

void build_llama_onnx_graph(const LlamaConfig& c, const float* rope_freq_factors, OnnxGraphBuilder& g,
                            LlamaOnnxWeights& w) {
  const std::string batch = "batch_size", seq = "sequence_length", past = "past_sequence_length",
                    total = "past_sequence_length + sequence_length";
  g.input("input_ids", kInt64, {batch, seq});
  g.input("attention_mask", kInt64, {batch, total});
  g.input("position_ids", kInt64, {batch, seq});
  for (int il = 0; il < c.n_layer; ++il)
    for (const char* kv : {"key", "value"})
      g.input("past_key_values." + std::to_string(il) + "." + kv, kFloat,
              {batch, std::int64_t{c.n_head_kv}, past, std::int64_t{c.head_dim}});
  g.output("logits", kFloat, {batch, seq, std::int64_t{c.n_vocab}});
  for (int il = 0; il < c.n_layer; ++il)
    for (const char* kv : {"key", "value"})
      g.output("present." + std::to_string(il) + "." + kv, kFloat,
               {batch, std::int64_t{c.n_head_kv}, total, std::int64_t{c.head_dim}});

  const DecoderInputs in = decoder_inputs(c, rope_freq_factors, g);
  DecoderGraph d{c, g, w};
  std::string x = g.node("Gather", {w.embedding(), "input_ids"}, "/embed", {{"axis", std::int64_t{0}}});  // (B, S, E)
  for (int il = 0; il < c.n_layer; ++il) x = d.layer(il, x, in);
  const std::string xn = d.rms_norm(x, w.vector("output_norm.weight", c.n_embd), "/output_norm");
  g.node_named("MatMul", {xn, w.output()}, {"logits"});
}

}  // namespace kiln::convert
