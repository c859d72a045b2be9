#include "optimize/prune_plan.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace kiln::optimize {
namespace {

void check_ratio(const char* flag, double r) {
  if (!(r > 0.0 && r <= 1.0))
    fail("{} {} leaves nothing or is out of range: it is the fraction kept, in (0, 1]", flag, r);
}

// The indices of the `keep` largest scores, ascending (ties keep the earlier index).
std::vector<int> top_indices(const double* scores, int n, int keep) {
  std::vector<int> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  idx.resize(static_cast<std::size_t>(keep));
  std::sort(idx.begin(), idx.end());
  return idx;
}

void check_indices(const std::vector<int>& v, int n, const char* what, int layer) {
  if (v.empty()) fail("prune plan: layer {} keeps no {}", layer, what);
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] < 0 || v[i] >= n) fail("prune plan: layer {}: {} {} is out of range [0, {})", layer, what, v[i], n);
    if (i > 0 && v[i] <= v[i - 1]) fail("prune plan: layer {}: {} indices are not ascending", layer, what);
  }
}

}  // namespace

std::int64_t llama_parameter_count(const LlamaConfig& c, const PruneWidths& w) {
  const std::int64_t E = c.n_embd, V = c.n_vocab;
  const std::int64_t G = c.n_head / c.n_head_kv;
  const std::int64_t kvd = static_cast<std::int64_t>(w.n_group) * c.head_dim, qd = kvd * G;
  std::int64_t layer = 2 * E + E * qd + 2 * E * kvd + qd * E + 3 * E * w.n_ff;
  if (c.qkv_bias) layer += qd + 2 * kvd;
  return V * E * (c.tied_output ? 1 : 2) + E + layer * w.n_layer;
}

PruneWidths resolve_prune_widths(const LlamaConfig& c, const PruneTargets& t, const PruneConstraints& k) {
  const int n_kv = c.n_head_kv;
  const int G = c.n_head / c.n_head_kv;
  const std::int64_t head_cols = static_cast<std::int64_t>(G) * c.head_dim;  // attn_output columns per group
  PruneWidths w{c.n_layer, n_kv, c.n_ff};
  if (t.drop_layers < 0) fail("--drop-layers {} is negative", t.drop_layers);
  if (t.drop_layers >= c.n_layer)
    fail("--drop-layers {} leaves nothing: the model has {} layers", t.drop_layers, c.n_layer);
  w.n_layer = c.n_layer - t.drop_layers;
  if (t.target_params && t.heads_ratio && t.ffn_ratio)
    fail("--target-params with both --heads-ratio and --ffn-ratio leaves nothing to solve for: give at most two");

  // Groups must fill whole blocks of attn_output's columns: a multiple of group_step groups.
  const std::int64_t q_mult = std::max<std::int64_t>(1, k.q_dim_multiple);
  const int group_step = static_cast<int>(q_mult / std::gcd(q_mult, head_cols));
  const auto group_ok = [&](int g) { return g == n_kv || g % group_step == 0; };
  const std::int64_t f_mult = std::max<std::int64_t>(1, k.ffn_multiple);
  const auto ffn_ok = [&](std::int64_t f) { return f == c.n_ff || f % f_mult == 0; };

  if (t.heads_ratio) {
    const double r = *t.heads_ratio;
    check_ratio("--heads-ratio", r);
    const double exact = r * n_kv;
    const auto g = static_cast<int>(std::llround(exact));
    if (std::fabs(exact - g) > 1e-6)
      fail("--heads-ratio {} keeps {:.3g} of {} KV groups: heads are removed as whole KV groups (a key-value head "
           "and its {} query heads, so grouped-query attention stays valid); use a multiple of 1/{}",
           r, exact, n_kv, G, n_kv);
    if (g == 0) fail("--heads-ratio {} leaves no attention head", r);
    if (!group_ok(g))
      fail("--heads-ratio {} keeps {} KV groups = {} columns of attn_output, not a multiple of {} ({}): keep a "
           "multiple of {} groups",
           r, g, g * head_cols, q_mult, k.q_type, group_step);
    w.n_group = g;
  }
  if (t.ffn_ratio) {
    const double r = *t.ffn_ratio;
    check_ratio("--ffn-ratio", r);
    if (r < 1.0) {
      const double exact = r * static_cast<double>(c.n_ff);
      const std::int64_t f = static_cast<std::int64_t>(std::floor(exact / static_cast<double>(f_mult) + 1e-9)) * f_mult;
      if (f == 0)
        fail("--ffn-ratio {} keeps {:.0f} of {} FFN channels, less than one block: the FFN width must be a multiple "
             "of {} ({})",
             r, exact, c.n_ff, f_mult, k.ffn_type);
      w.n_ff = static_cast<int>(f);
    }
  }
  if (!t.target_params) return w;

  const std::int64_t total = llama_parameter_count(c, {c.n_layer, n_kv, c.n_ff});
  const double tp = *t.target_params;
  if (!(tp > 0)) fail("--target-params {} leaves nothing", tp);
  const double target = tp <= 1.0 ? tp * static_cast<double>(total) : tp;
  if (target >= static_cast<double>(total))
    fail("--target-params {} is not smaller than the model ({} parameters)", tp, total);

  std::vector<int> groups;
  if (t.heads_ratio) groups = {w.n_group};
  else
    for (int g = 1; g <= n_kv; ++g)
      if (group_ok(g)) groups.push_back(g);
  std::vector<int> widths;
  if (t.ffn_ratio) widths = {w.n_ff};
  else
    for (std::int64_t f = f_mult; f <= c.n_ff; f += f_mult) widths.push_back(static_cast<int>(f));
  if (!t.ffn_ratio && widths.empty()) widths.push_back(c.n_ff);
  if (!t.ffn_ratio && widths.back() != c.n_ff) widths.push_back(c.n_ff);

  // The largest FFN width that fits beside each group count; of those, the pair whose two
  // fractions kept are closest (heads and channels shrink together); a tie keeps more heads
  // (a KV group costs few parameters for what it carries).
  bool found = false;
  PruneWidths best = w;
  double best_gap = 0;
  for (int g : groups) {
    int f_fit = -1;
    for (int f : widths)
      if (static_cast<double>(llama_parameter_count(c, {w.n_layer, g, f})) <= target) f_fit = f;
    if (f_fit < 0) continue;
    const double gap = std::fabs(static_cast<double>(g) / n_kv - static_cast<double>(f_fit) / c.n_ff);
    if (!found || gap <= best_gap + 1e-9) {  // groups ascend: on a tie the later, larger one wins
      found = true;
      best = {w.n_layer, g, f_fit};
      best_gap = gap;
    }
  }
  if (!found) {
    const std::int64_t smallest = llama_parameter_count(c, {w.n_layer, groups.front(), widths.front()});
    fail("--target-params {} ({:.0f} parameters) is below the smallest model these widths allow: {} parameters with "
         "{} layers, {} KV group(s) and {} FFN channels (FFN widths are multiples of {}: {}; --drop-layers removes "
         "more)",
         tp, target, smallest, w.n_layer, groups.front(), widths.front(), f_mult, k.ffn_type);
  }
  return best;
}

PrunePlan identity_prune_plan(const LlamaConfig& c) {
  PrunePlan p;
  for (int l = 0; l < c.n_layer; ++l) {
    p.layers.push_back(l);
    std::vector<int> g(static_cast<std::size_t>(c.n_head_kv)), f(static_cast<std::size_t>(c.n_ff));
    std::iota(g.begin(), g.end(), 0);
    std::iota(f.begin(), f.end(), 0);
    p.kv_groups.push_back(std::move(g));
    p.ffn_channels.push_back(std::move(f));
  }
  return p;
}

PrunePlan make_prune_plan(const LlamaConfig& c, const PruneImportance& m, const PruneWidths& w, ChannelScore score) {
  KILN_CHECK(m.n_layer == c.n_layer && m.n_head == c.n_head && m.n_head_kv == c.n_head_kv && m.n_ff == c.n_ff,
             "prune: importance was collected for another model shape");
  if (score == ChannelScore::wanda && m.down_column_abs.empty())
    fail("prune: Wanda channel scores need ffn_down's column magnitudes (weigh_down_columns)");
  PrunePlan p;
  p.layers = top_indices(m.block_influence.data(), c.n_layer, w.n_layer);
  const std::vector<double> groups = m.group_scores();
  std::vector<double> channel(static_cast<std::size_t>(c.n_ff));
  for (int l : p.layers) {
    p.kv_groups.push_back(top_indices(groups.data() + static_cast<std::size_t>(l) * c.n_head_kv, c.n_head_kv, w.n_group));
    const std::size_t base = static_cast<std::size_t>(l) * static_cast<std::size_t>(c.n_ff);
    for (std::size_t j = 0; j < channel.size(); ++j)
      channel[j] = score == ChannelScore::activation
                       ? m.channel_abs[base + j]
                       : m.down_column_abs[base + j] * std::sqrt(m.channel_sq[base + j]);
    p.ffn_channels.push_back(top_indices(channel.data(), c.n_ff, w.n_ff));
  }
  return p;
}

void check_prune_plan(const LlamaConfig& c, const PrunePlan& p) {
  if (p.layers.empty()) fail("prune plan keeps no layer");
  if (p.kv_groups.size() != p.layers.size() || p.ffn_channels.size() != p.layers.size())
    fail("prune plan: {} layers but {} group lists and {} channel lists", p.layers.size(), p.kv_groups.size(),
         p.ffn_channels.size());
  check_indices(p.layers, c.n_layer, "layer", -1);
  for (std::size_t i = 0; i < p.layers.size(); ++i) {
    check_indices(p.kv_groups[i], c.n_head_kv, "KV group", p.layers[i]);
    check_indices(p.ffn_channels[i], c.n_ff, "FFN channel", p.layers[i]);
    if (p.kv_groups[i].size() != p.kv_groups[0].size() || p.ffn_channels[i].size() != p.ffn_channels[0].size())
      fail("prune plan: layer {} keeps other widths than layer {} (GGUF has one width per model)", p.layers[i],
           p.layers[0]);
  }
}

}  // namespace kiln::optimize
