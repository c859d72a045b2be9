#pragma once
// What `kiln prune` removes from a Llama-family model, and how much. Structured pruning only:
// whole KV groups (a key-value head with the query heads that share it, so grouped-query
// attention stays valid), FFN channels (a row of gate and up with the matching column of down)
// and whole layers. Every layer keeps the same widths (GGUF's head counts and
// feed_forward_length are one number per model), but each layer chooses its own groups and
// channels by importance (optimize/prune_importance.h).
//
// Sizes are resolved from the flags and the model's shape alone, before any calibration runs:
// bad input (a ratio that leaves nothing, one that would split a KV group, a width that the
// stored type's blocks cannot hold, a target at or above the model's size) is an error first.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "model/llama_config.h"
#include "optimize/prune_importance.h"

namespace kiln::optimize {

struct PruneTargets {
  // The whole model's parameter count to reach: a count (> 1) or a fraction of the model (<= 1).
  std::optional<double> target_params;
  std::optional<double> heads_ratio;  // fraction of KV groups kept
  std::optional<double> ffn_ratio;    // fraction of FFN channels kept
  int drop_layers = 0;                // whole layers removed
};

// Width multiples the output's types need: the FFN width is ffn_down's column count and the
// kept query heads are attn_output's columns, so each must fill whole blocks of that tensor's type.
struct PruneConstraints {
  std::int64_t ffn_multiple = 1;
  std::string ffn_type = "f32";  // why ffn_multiple, for messages ("ffn_down is q4_K, blocks of 256")
  std::int64_t q_dim_multiple = 1;
  std::string q_type = "f32";    // why q_dim_multiple
};

// The output's widths, the same in every kept layer.
struct PruneWidths {
  int n_layer = 0;
  int n_group = 0;  // KV groups: n_head_kv of the output; n_head = n_group * (n_head / n_head_kv)
  int n_ff = 0;
};

// Parameters of a Llama model of config `c`'s vocabulary and width with the given layer count,
// KV groups and FFN width (embeddings, output, norms, biases, every layer's matrices).
std::int64_t llama_parameter_count(const LlamaConfig& c, const PruneWidths& w);

// The widths the targets ask for. Throws kiln::Error naming the flag on a ratio outside (0, 1],
// a ratio that leaves nothing or splits a KV group, a width the constraints' blocks cannot hold,
// --drop-layers of every layer, a target at or above the model's size or below the smallest model
// the constraints allow, or --target-params together with both per-axis ratios.
// --target-params alone shrinks heads and FFN by about the same fraction (after --drop-layers).
PruneWidths resolve_prune_widths(const LlamaConfig& c, const PruneTargets& targets,
                                 const PruneConstraints& constraints);

enum class ChannelScore {
  activation,  // Minitron: mean |SwiGLU output| of the channel over calibration tokens
  wanda,       // Wanda: Σ_i |W_down[i, j]| · ‖x_j‖₂, the channel's column of ffn_down by its input norm
};

// Which input layers, groups and channels the output keeps, in the input's order.
struct PrunePlan {
  std::vector<int> layers;                     // kept input layers, ascending
  std::vector<std::vector<int>> kv_groups;     // per kept layer: kept KV heads of the input, ascending
  std::vector<std::vector<int>> ffn_channels;  // per kept layer: kept FFN channels of the input, ascending
};

// Nothing removed: every layer, group and channel of `c`.
PrunePlan identity_prune_plan(const LlamaConfig& c);

// Keeps the widths `w` by importance: the layers of highest Block Influence, in each the KV groups
// of largest summed head-output norm and the channels of highest `score`.
PrunePlan make_prune_plan(const LlamaConfig& c, const PruneImportance& importance, const PruneWidths& w,
                          ChannelScore score);

// Checks a plan against the model (indices in range, ascending, the same widths in every layer, a
// group and a channel left everywhere); throws kiln::Error naming what is wrong.
void check_prune_plan(const LlamaConfig& c, const PrunePlan& plan);

}  // namespace kiln::optimize
