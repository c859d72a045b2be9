// `kiln synth ARCH -o OUT.gguf`: a model of any family kiln runs, with random weights, at a
// preset's real shape or the shape the flags give: for timing kiln and llama.cpp on a shape whose
// weights cannot be had, and for checking a family's forward against llama.cpp's on one file.
// See src/model/synthetic_model.h for what is written.
#include <fmt/format.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "commands.h"
#include "common_options.h"
#include "core/error.h"
#include "format/tensor_source.h"
#include "model/architecture.h"
#include "model/synthetic_model.h"
#include "monitor/progress.h"
#include "temp_output_guard.h"

namespace kiln::cli {
namespace {

struct SynthCliOptions {
  std::string arch;
  std::string out;
  std::string vocab;
  std::string preset;
  std::string type = "f32";
  int layers = 0, embd = 0, heads = 0, kv_heads = 0, head_dim = 0, ff = 0, ctx = 0, vocab_size = 0;
  int experts = 0, experts_used = 0, expert_ff = 0;  // mixtures of experts (llama as mixtral, qwen3moe)
  bool tied = false;
  std::uint64_t seed = 1;
  float logit_std = 4.0f;
  std::vector<std::string> set;
  monitor::ProgressMode progress = monitor::ProgressMode::automatic;
};

// "KEY=VALUE" as a typed GGUF value: true/false → bool, an integer → u32 (i32 when negative),
// a number → f32, [a,b,...] → an array of those, anything else → string.
GgufValue parse_scalar(const std::string& text, const std::string& key) {
  using namespace gguf_value;
  if (text == "true" || text == "false") return boolean(text == "true");
  std::size_t used = 0;
  try {
    const long long i = std::stoll(text, &used);
    if (used == text.size()) {
      if (i < 0) return i32(static_cast<std::int32_t>(i));
      if (i > 0xffffffffLL) fail("--set {}: {} does not fit in 32 bits", key, text);
      return u32(static_cast<std::uint32_t>(i));
    }
    const double d = std::stod(text, &used);
    if (used == text.size()) return f32(static_cast<float>(d));
  } catch (const std::logic_error&) {
  }
  return string(text);
}

std::pair<std::string, GgufValue> parse_set(const std::string& arg) {
  const std::size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0) fail("--set {}: expected KEY=VALUE", arg);
  const std::string key = arg.substr(0, eq), text = arg.substr(eq + 1);
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') {
    GgufArray a;
    std::vector<GgufValue> items;
    std::string inner = text.substr(1, text.size() - 2);
    std::size_t start = 0;
    while (start <= inner.size() && !inner.empty()) {
      const std::size_t comma = inner.find(',', start);
      const std::string item = inner.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      items.push_back(parse_scalar(item, key));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    if (items.empty()) fail("--set {}: an empty array has no type", key);
    a.elem_type = items.front().type;
    for (const GgufValue& v : items) {
      if (v.type != a.elem_type) fail("--set {}: the array's items are not all of one type", key);
      if (auto i = v.as_int(); i && v.type != GgufType::Bool) a.ints.push_back(*i);
      else if (v.type == GgufType::Bool) a.ints.push_back(*v.as_bool() ? 1 : 0);
      else if (auto f = v.as_float()) a.floats.push_back(*f);
      else a.strings.push_back(*v.as_string());
    }
    return {key, gguf_value::array(std::move(a))};
  }
  return {key, parse_scalar(text, key)};
}

std::string preset_list() {
  std::string s;
  for (const Architecture* a : architectures())
    for (const ShapePreset& p : a->presets) s += fmt::format("  {:<18} {:<9} {}\n", p.name, a->name, p.description);
  return s;
}

void run_synth(const SynthCliOptions& o) {
  const Architecture* family = find_architecture(o.arch);
  if (family == nullptr) fail("kiln synth: architecture '{}' is not supported (expected {})", o.arch, supported_architectures());
  SyntheticModelSpec spec;
  LlamaConfig& c = spec.config;
  c.arch = family->name;
  // The default shape: small, but with grouped-query attention, several layers and widths that
  // every block type divides.
  c.n_embd = 256, c.n_layer = 4, c.n_head = 8, c.n_head_kv = 2, c.head_dim = 32, c.n_ff = 512, c.n_ctx_train = 4096;
  c.rms_eps = 1e-6f;
  if (!o.preset.empty()) {
    const ShapePreset* found = nullptr;
    for (const ShapePreset& p : family->presets)
      if (o.preset == p.name) found = &p;
    if (found == nullptr) fail("kiln synth: {} has no preset '{}'; presets:\n{}", o.arch, o.preset, preset_list());
    found->apply(c);
    c.name = std::string("synthetic ") + found->name;
  } else {
    c.name = "synthetic " + o.arch;
  }
  if (o.layers > 0) c.n_layer = o.layers;
  if (o.embd > 0) c.n_embd = o.embd;
  if (o.heads > 0) c.n_head = o.heads;
  if (o.kv_heads > 0) c.n_head_kv = o.kv_heads;
  if (o.head_dim > 0) c.head_dim = o.head_dim;
  if (o.ff > 0) c.n_ff = o.ff;
  if (o.ctx > 0) c.n_ctx_train = o.ctx;
  if (o.experts > 0) c.n_expert = o.experts, c.n_expert_used = c.n_expert_used > 0 ? c.n_expert_used : 2;
  if (o.experts_used > 0) c.n_expert_used = o.experts_used;
  if (o.expert_ff > 0) c.n_ff_exp = o.expert_ff;
  if (c.n_expert > 0 && c.n_ff_exp == 0) c.n_ff_exp = c.n_ff;
  c.n_rot = c.head_dim;
  c.n_vocab = o.vocab_size;
  spec.tied_output = o.tied;
  spec.seed = o.seed;
  spec.logit_std = o.logit_std;
  const std::optional<DType> type = parse_dtype(o.type);
  if (!type) fail("kiln synth: unknown --type {}", o.type);
  spec.type = *type;
  for (const std::string& s : o.set) spec.overrides.push_back(parse_set(s));

  std::unique_ptr<TensorSource> donor;
  if (!o.vocab.empty()) {
    donor = TensorSource::open(o.vocab);
    spec.tokenizer = &donor->metadata();
  } else if (o.vocab_size <= 0) {
    fail("kiln synth: give --vocab MODEL (its tokenizer is copied) or --vocab-size N (no tokenizer: kiln only)");
  }

  LlamaConfig written;
  {
    TempOutputGuard guard(o.out);
    monitor::Progress progress("synth", o.progress);
    bool started = false;
    written = write_synthetic_model(spec, o.out, [&](std::size_t done, std::size_t total) {
      if (!started) progress.stage("tensors", static_cast<std::int64_t>(total), "tensors"), started = true;
      progress.set(static_cast<std::int64_t>(done));
    });
    progress.finish();
  }
  std::printf("wrote %s: %s, %d layers, width %d, %d heads (%d KV) of %d, FFN %d, vocabulary %d, %s\n", o.out.c_str(),
              written.arch.c_str(), written.n_layer, written.n_embd, written.n_head, written.n_head_kv,
              written.head_dim, written.n_ff, written.n_vocab, std::string(dtype_name(spec.type)).c_str());
  if (written.n_expert > 0)
    std::printf("  %d experts of FFN %d per layer, %d used per token\n", written.n_expert, written.n_ff_exp,
                written.n_expert_used);
}

}  // namespace

void register_synth_command(CLI::App& app) {
  auto opt = std::make_shared<SynthCliOptions>();
  CLI::App* cmd = app.add_subcommand("synth", "Write a model of any supported family with random weights (for timing and checks)");
  cmd->footer(
      "ARCH is one of: " + supported_architectures() + "\n"
      "The shape is the preset's (--preset), else 4 layers of width 256 with 8 heads (2 KV) of 32 and FFN 512;\n"
      "the shape flags change it. --set KEY=VALUE sets any metadata key after the family's own (an integer,\n"
      "a number, true/false, a string, or [a,b,...]), and the file is then read back and checked as a\n"
      "downloaded one is. Logits come out peaked (standard deviation --logit-std) rather than flat.\n"
      "Presets:\n" + preset_list() +
      "Examples:\n"
      "  kiln synth llama --preset tinyllama-1.1b --type q4_0 --vocab ../shared/data/llama-2-tiny-random.gguf -o synth.gguf\n"
      "  kiln synth qwen2 --layers 2 --vocab models/kiln-default.gguf -o tiny-qwen2.gguf\n"
      "  kiln synth qwen3 --vocab models/kiln-default.gguf --set qwen3.rope.scaling.type=yarn \\\n"
      "      --set qwen3.rope.scaling.factor=4.0 --set qwen3.rope.scaling.original_context_length=1024 -o yarn.gguf\n"
      "  kiln synth phi3 --preset phi-3-mini-128k --type q4_0 --vocab ../shared/data/llama-2-tiny-random.gguf \\\n"
      "      --set general.name=phi -o phi.gguf\n"
      "  kiln synth llama --experts 8 --experts-used 2 --vocab models/kiln-default.gguf -o tiny-mixtral.gguf\n"
      "(llama.cpp refuses a model whose general.name mentions phi3 or phi-3 when the vocabulary lacks\n"
      "<|endoftext|>, as Llama 2's does: --set general.name=... then.)\n");
  cmd->add_option("ARCH", opt->arch, "architecture (general.architecture)")->required();
  cmd->add_option("-o,--output", opt->out, "output GGUF")->required();
  cmd->add_option("--vocab", opt->vocab, "a model whose tokenizer is copied (its vocabulary size is used)");
  cmd->add_option("--vocab-size", opt->vocab_size, "vocabulary size when no --vocab is given (no tokenizer is written)");
  cmd->add_option("--preset", opt->preset, "a real model's shape (see below)");
  cmd->add_option("--type", opt->type, "type of every matrix: f32, f16, bf16, q8_0, q4_0, q4_K, ... (vectors stay f32)")
      ->capture_default_str();
  cmd->add_option("--layers", opt->layers, "block count");
  cmd->add_option("--embd", opt->embd, "model width");
  cmd->add_option("--heads", opt->heads, "query heads");
  cmd->add_option("--kv-heads", opt->kv_heads, "key/value heads");
  cmd->add_option("--head-dim", opt->head_dim, "head size");
  cmd->add_option("--ff", opt->ff, "feed-forward width");
  cmd->add_option("--ctx", opt->ctx, "training context length written to the metadata");
  cmd->add_option("--experts", opt->experts, "experts per layer: a mixture of experts (llama as mixtral; qwen3moe's default is 8)");
  cmd->add_option("--experts-used", opt->experts_used, "experts each token is routed to (default 2)");
  cmd->add_option("--expert-ff", opt->expert_ff, "one expert's FFN width (qwen3moe; mixtral's is --ff)");
  cmd->add_flag("--tied", opt->tied, "no output.weight: logits use token_embd");
  cmd->add_option("--seed", opt->seed, "weights' seed")->capture_default_str();
  cmd->add_option("--logit-std", opt->logit_std, "standard deviation of the logits of a normed hidden state")
      ->capture_default_str();
  cmd->add_option("--set", opt->set, "KEY=VALUE metadata set after the family's keys (repeatable)");
  add_progress_options(cmd, opt->progress);
  cmd->callback([opt] { run_synth(*opt); });
}

}  // namespace kiln::cli
