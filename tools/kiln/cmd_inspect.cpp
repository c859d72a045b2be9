// `kiln inspect MODEL`: what a model file holds (format, metadata, tensor table, totals), read
// through the same validating readers that load models, so a file that inspects cleanly loads.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.h"
#include "core/error.h"
#include "core/mapped_file.h"
#include "format/gguf_file.h"
#include "format/llama2c_file.h"
#include "convert/hf_config.h"
#include "convert/hf_folder.h"
#include "format/tensor_source.h"
#include "tokenizer/vocab.h"

namespace kiln::cli {
namespace {

using nlohmann::ordered_json;

struct InspectOptions {
  std::string model;
  bool json = false;
  std::size_t max_items = 8;    // array items shown; 0 shows all
  std::size_t max_string = 80;  // characters of a long string shown in text output; 0 shows all
  bool no_tensors = false;
};

// One row of the tensor table, common to both formats.
struct TensorRow {
  std::string name;
  std::vector<std::int64_t> shape;  // ne, innermost first
  std::string dtype;
  std::uint64_t n_elements = 0;
  std::uint64_t n_bytes = 0;  // 0 when the type's size is unknown
  std::optional<std::uint64_t> offset;
};

// Everything the report prints, filled from either reader.
struct Report {
  std::string path;
  std::string format;  // "gguf" or "llama2c"
  ordered_json header = ordered_json::object();
  ordered_json metadata = ordered_json::array();  // [{key, type, value | array summary}]
  std::vector<TensorRow> tensors;
  std::string tokenizer;  // a one-line summary of the vocabulary, when the file has one
  std::string config;     // a Hugging Face folder's config.json, in one line
};

bool starts_with_gguf_magic(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;  // the reader reports why it cannot open the file
  char magic[4] = {};
  const bool ok = std::fread(magic, 1, 4, f) == 4 && std::string_view(magic, 4) == "GGUF";
  std::fclose(f);
  return ok;
}

// llama2.c checkpoints have no magic of their own: a file that is not one of the formats with a
// magic or a known name is read as one.
bool looks_like_llama2c(const std::string& path) {
  if (path.ends_with(".safetensors") || path.ends_with(".pt") || path.ends_with(".pth")) return false;
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return true;  // the reader reports why it cannot open the file
  char magic[2] = {};
  const bool zip = std::fread(magic, 1, 2, f) == 2 && magic[0] == 'P' && magic[1] == 'K';
  std::fclose(f);
  return !zip;
}

std::string vocab_summary(const Vocab& v) {
  const auto token = [&](std::int32_t id) {
    return id >= 0 && id < v.size() ? fmt::format("{} {}", id, v.tokens[static_cast<std::size_t>(id)]) : std::string("none");
  };
  std::string s = fmt::format("{} tokens, model {}", v.size(), v.model);
  if (!v.pre.empty()) s += ", pre " + v.pre;
  if (!v.merges.empty()) s += fmt::format(", {} merges", v.merges.size());
  s += fmt::format(", bos {}, eos {}", token(v.bos_id), token(v.eos_id));
  if (v.eot_id >= 0) s += ", eot " + token(v.eot_id);
  s += fmt::format(", add_bos {}", v.add_bos);
  return s;
}

ordered_json scalar_json(const GgufValue& v) {
  if (const std::string* s = v.as_string()) return *s;
  if (auto b = std::get_if<bool>(&v.v)) return *b;
  if (auto u = std::get_if<std::uint64_t>(&v.v)) return *u;
  if (auto i = std::get_if<std::int64_t>(&v.v)) return *i;
  if (auto d = std::get_if<double>(&v.v)) return *d;
  return nullptr;
}

ordered_json array_json(const GgufArray& a, std::size_t max_items);

// The first max_items elements of an array (all when max_items is 0), as JSON values.
ordered_json array_items(const GgufArray& a, std::size_t max_items) {
  const std::size_t n = max_items == 0 ? a.size() : std::min(a.size(), max_items);
  ordered_json items = ordered_json::array();
  for (std::size_t i = 0; i < n; ++i) {
    switch (a.elem_type) {
      case GgufType::F32:
      case GgufType::F64:
        items.push_back(a.floats[i]);
        break;
      case GgufType::String:
        items.push_back(a.strings[i]);
        break;
      case GgufType::Array:
        items.push_back(array_json(*a.arrays[i].as_array(), max_items));
        break;
      case GgufType::Bool:
        items.push_back(a.ints[i] != 0);
        break;
      case GgufType::U64:
        items.push_back(static_cast<std::uint64_t>(a.ints[i]));
        break;
      default:
        items.push_back(a.ints[i]);
    }
  }
  return items;
}

ordered_json array_json(const GgufArray& a, std::size_t max_items) {
  ordered_json j;
  j["elem_type"] = gguf_type_name(a.elem_type);
  j["length"] = a.size();
  j["items"] = array_items(a, max_items);
  j["truncated"] = max_items != 0 && a.size() > max_items;
  return j;
}

// [{key, type, value | array summary}] of every key, in order.
ordered_json metadata_json(const GgufMetadata& metadata, const InspectOptions& opt) {
  ordered_json out = ordered_json::array();
  for (const auto& [key, value] : metadata.metadata()) {
    ordered_json m;
    m["key"] = key;
    m["type"] = gguf_type_name(value.type);
    if (const GgufArray* a = value.as_array())
      m["array"] = array_json(*a, opt.max_items);
    else
      m["value"] = scalar_json(value);
    out.push_back(std::move(m));
  }
  return out;
}

Report read_gguf(const std::string& path, const InspectOptions& opt) {
  auto file = GgufFile::open(path);
  Report r;
  r.path = path;
  r.format = "gguf";
  r.header["version"] = file->version();
  r.header["alignment"] = file->alignment();
  r.header["data_offset"] = file->data_offset();
  r.header["file_size"] = file->file_size();
  r.metadata = metadata_json(*file, opt);
  for (const GgufTensorInfo& t : file->tensors()) {
    TensorRow row;
    row.name = t.name;
    row.shape.assign(t.ne.begin(), t.ne.begin() + t.n_dims);
    row.dtype = dtype_name_for_id(t.ggml_type);
    row.n_elements = static_cast<std::uint64_t>(t.ne[0] * t.ne[1] * t.ne[2] * t.ne[3]);
    row.n_bytes = t.n_bytes;
    row.offset = t.offset;
    r.tensors.push_back(std::move(row));
  }
  return r;
}

// Any other format TensorSource reads (safetensors, PyTorch checkpoints, Hugging Face folders):
// its metadata as GGUF-style keys and its tensors as the file stores them.
Report read_source(const TensorSource& src, const InspectOptions& opt) {
  Report r;
  r.path = src.path();
  r.format = src.format_name();
  r.header["file_size"] = src.file_size();
  r.metadata = metadata_json(src.metadata(), opt);
  for (const SourceTensor& t : src.tensors()) {
    TensorRow row;
    row.name = t.name;
    row.shape.assign(t.ne.begin(), t.ne.begin() + std::max(t.n_dims, 1));
    row.dtype = t.type_name;
    row.n_elements = static_cast<std::uint64_t>(t.n_elements());
    row.n_bytes = t.n_bytes;
    r.tensors.push_back(std::move(row));
  }
  return r;
}

Report read_llama2c(const std::string& path) {
  auto file = Llama2cFile::open(path);
  const Llama2cHeader& h = file->header();
  Report r;
  r.path = path;
  r.format = "llama2c";
  r.header["file_size"] = file->mapped_file().size();
  r.header["version"] = h.version;
  auto add = [&](const char* key, auto value, const char* type) {
    r.metadata.push_back(ordered_json{{"key", key}, {"type", type}, {"value", value}});
  };
  add("dim", h.dim, "i32");
  add("hidden_dim", h.hidden_dim, "i32");
  add("n_layers", h.n_layers, "i32");
  add("n_heads", h.n_heads, "i32");
  add("n_kv_heads", h.n_kv_heads, "i32");
  add("vocab_size", h.vocab_size, "i32");
  add("seq_len", h.seq_len, "i32");
  add("shared_classifier", h.shared_classifier, "bool");
  if (h.version == 2) add("group_size", h.group_size, "i32");
  const auto* base = file->mapped_file().data();
  for (const TensorView& t : file->tensors()) {
    TensorRow row;
    row.name = t.name;
    row.shape.assign(t.ne.begin(), t.ne.begin() + t.n_dims);
    row.dtype = std::string(dtype_name(t.dtype));
    row.n_elements = static_cast<std::uint64_t>(t.n_elements());
    row.n_bytes = t.n_bytes();
    // Version 2's matrices are dequantized in memory: no offset in the file to show.
    const auto* p = static_cast<const std::uint8_t*>(t.data);
    if (p >= base && p < base + file->mapped_file().size()) row.offset = static_cast<std::uint64_t>(p - base);
    r.tensors.push_back(std::move(row));
  }
  return r;
}

struct Totals {
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> by_dtype;  // dtype -> (parameters, bytes)
  std::uint64_t parameters = 0;
  std::uint64_t bytes = 0;
  std::uint64_t sized_parameters = 0;  // parameters of tensors whose byte size is known
  double bits_per_weight() const { return sized_parameters ? 8.0 * static_cast<double>(bytes) / sized_parameters : 0; }
};

Totals totals_of(const Report& r) {
  Totals t;
  for (const TensorRow& row : r.tensors) {
    t.parameters += row.n_elements;
    t.bytes += row.n_bytes;
    t.by_dtype[row.dtype].first += row.n_elements;
    t.by_dtype[row.dtype].second += row.n_bytes;
    if (row.n_bytes) t.sized_parameters += row.n_elements;
  }
  return t;
}

// Printable, bounded text for a string value: control bytes escaped, long strings cut.
std::string display_string(const std::string& s, std::size_t max_chars) {
  std::string out = "\"";
  std::size_t shown = 0;
  for (unsigned char c : s) {
    if (max_chars != 0 && shown >= max_chars) {
      out += fmt::format("\"... ({} bytes)", s.size());
      return out;
    }
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\\')
      out += "\\\\";
    else if (c < 0x20 || c == 0x7f)
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
    ++shown;
  }
  return out + "\"";
}

// `as_f32` prints floats at f32 precision (shortest digits that round-trip the stored float).
std::string display_json(const ordered_json& v, std::size_t max_string, bool as_f32) {
  if (v.is_string()) return display_string(v.get<std::string>(), max_string);
  if (v.is_number_float() && as_f32) return fmt::format("{}", static_cast<float>(v.get<double>()));
  if (v.is_object() && v.contains("elem_type")) {  // a (nested) array summary
    std::string out = fmt::format("[{} x {}]", v["elem_type"].get<std::string>(), v["length"].get<std::size_t>());
    if (v["length"].get<std::size_t>() == 0) return out;
    out += " ";
    bool first = true;
    for (const auto& item : v["items"]) {
      out += (first ? "" : ", ") + display_json(item, max_string, v["elem_type"] == "f32");
      first = false;
    }
    if (v["truncated"].get<bool>()) out += ", ...";
    return out;
  }
  return v.dump(-1, ' ', false, ordered_json::error_handler_t::replace);
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

void print_text(const Report& r, const InspectOptions& opt) {
  fmt::print("file:    {}\n", r.path);
  if (r.format == "gguf")
    fmt::print("format:  GGUF v{} (alignment {}, data section at offset {}, file {} bytes)\n",
               r.header["version"].get<std::uint32_t>(), r.header["alignment"].get<std::uint64_t>(),
               r.header["data_offset"].get<std::uint64_t>(), r.header["file_size"].get<std::uint64_t>());
  else if (r.format == "llama2c")
    fmt::print("format:  llama2.c checkpoint version {} ({}, file {} bytes)\n", r.header["version"].get<int>(),
               r.header["version"].get<int>() == 2 ? "int8 groups with float32 scales" : "float32",
               r.header["file_size"].get<std::uint64_t>());
  else
    fmt::print("format:  {} ({} bytes)\n", r.format, r.header["file_size"].get<std::uint64_t>());

  fmt::print("\nmetadata ({} {}):\n", r.metadata.size(), r.format == "llama2c" ? "header fields" : "keys");
  std::size_t key_width = 0;
  for (const auto& m : r.metadata) key_width = std::max(key_width, m["key"].get<std::string>().size());
  for (const auto& m : r.metadata) {
    const bool is_array = m.contains("array");
    fmt::print("  {:<{}}  {:<6}  {}\n", m["key"].get<std::string>(), key_width, m["type"].get<std::string>(),
               display_json(is_array ? m["array"] : m["value"], opt.max_string, m["type"] == "f32"));
  }

  if (!opt.no_tensors) {
    fmt::print("\ntensors ({}; shape is ne, innermost first):\n", r.tensors.size());
    std::size_t name_width = 4, shape_width = 5;
    for (const TensorRow& t : r.tensors) {
      name_width = std::max(name_width, t.name.size());
      shape_width = std::max(shape_width, shape_text(t.shape).size());
    }
    fmt::print("  {:<{}}  {:<{}}  {:<8}  {:>12}\n", "name", name_width, "shape", shape_width, "dtype", "bytes");
    for (const TensorRow& t : r.tensors)
      fmt::print("  {:<{}}  {:<{}}  {:<8}  {:>12}\n", t.name, name_width, shape_text(t.shape), shape_width, t.dtype,
                 t.n_bytes ? std::to_string(t.n_bytes) : std::string("?"));
  }

  const Totals tot = totals_of(r);
  fmt::print("\ntotals:  {} tensors, {} parameters, {} bytes ({:.2f} MiB), {:.3f} bits per weight\n", r.tensors.size(),
             tot.parameters, tot.bytes, static_cast<double>(tot.bytes) / (1024.0 * 1024.0), tot.bits_per_weight());
  for (const auto& [dtype, pb] : tot.by_dtype)
    fmt::print("  {:<8} {} parameters, {} bytes ({:.1f}% of the parameters)\n", dtype, pb.first, pb.second,
               tot.parameters ? 100.0 * static_cast<double>(pb.first) / static_cast<double>(tot.parameters) : 0.0);
  if (!r.config.empty()) fmt::print("\nconfig:    {}\n", r.config);
  if (!r.tokenizer.empty()) fmt::print("{}tokenizer: {}\n", r.config.empty() ? "\n" : "", r.tokenizer);
}

void print_json(const Report& r) {
  ordered_json j;
  j["path"] = r.path;
  j["format"] = r.format;
  for (const auto& [k, v] : r.header.items()) j[k] = v;
  j["metadata"] = r.metadata;
  ordered_json tensors = ordered_json::array();
  for (const TensorRow& t : r.tensors) {
    ordered_json row;
    row["name"] = t.name;
    row["shape"] = t.shape;
    row["dtype"] = t.dtype;
    row["elements"] = t.n_elements;
    row["bytes"] = t.n_bytes;
    if (t.offset) row["offset"] = *t.offset;
    tensors.push_back(std::move(row));
  }
  j["tensors"] = std::move(tensors);
  const Totals tot = totals_of(r);
  ordered_json by_dtype = ordered_json::object();
  for (const auto& [dtype, pb] : tot.by_dtype) by_dtype[dtype] = {{"parameters", pb.first}, {"bytes", pb.second}};
  j["totals"] = {{"tensors", r.tensors.size()},
                 {"parameters", tot.parameters},
                 {"bytes", tot.bytes},
                 {"bits_per_weight", tot.bits_per_weight()},
                 {"by_dtype", std::move(by_dtype)}};
  if (!r.tokenizer.empty()) j["tokenizer"] = r.tokenizer;
  if (!r.config.empty()) j["config"] = r.config;
  // Metadata strings are not guaranteed to be UTF-8; replace bad bytes rather than fail.
  fmt::print("{}\n", j.dump(2, ' ', false, ordered_json::error_handler_t::replace));
}

void run_inspect(const InspectOptions& opt) {
  const bool gguf = starts_with_gguf_magic(opt.model) || opt.model.ends_with(".gguf");
  Report report;
  if (gguf) {
    report = read_gguf(opt.model, opt);
    if (auto file = GgufFile::open(opt.model); file->find("tokenizer.ggml.tokens") != nullptr)
      report.tokenizer = vocab_summary(Vocab::from_gguf(*file));
  } else if (std::filesystem::is_directory(opt.model) || !looks_like_llama2c(opt.model)) {
    std::unique_ptr<TensorSource> src = TensorSource::open(opt.model);
    report = read_source(*src, opt);
    if (std::filesystem::exists(opt.model + "/config.json")) {
      const convert::HfLlamaConfig cfg = convert::read_hf_config(opt.model + "/config.json");
      report.config = fmt::format("{} ({} in GGUF), {} layers, width {}, {} heads ({} key/value), ffn {}, vocabulary {}, "
                                  "context {}{}",
                                  cfg.hf_architecture.empty() ? cfg.model_type : cfg.hf_architecture, cfg.gguf_arch,
                                  cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads,
                                  cfg.intermediate_size, cfg.vocab_size, cfg.max_positions,
                                  cfg.tie_word_embeddings ? ", output tied to the embedding" : "");
      report.tokenizer = convert::has_hf_tokenizer(opt.model)
                             ? vocab_summary(convert::read_hf_tokenizer(opt.model, cfg.vocab_size).vocab)
                             : "none (no tokenizer.model or tokenizer.json)";
    }
  } else {
    // Without the GGUF magic the only other format is llama2.c's, which has no magic of its
    // own; say so, since its header error alone may puzzle someone who passed another file.
    try {
      report = read_llama2c(opt.model);
    } catch (const Error& e) {
      fail("{} (no GGUF magic, so read as a llama2.c checkpoint)", e.what());
    }
  }
  if (opt.json)
    print_json(report);
  else
    print_text(report, opt);
}

}  // namespace

void register_inspect_command(CLI::App& app) {
  auto opt = std::make_shared<InspectOptions>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show a model file's format, metadata, tensors and totals");
  cmd->footer(
      "MODEL is a GGUF file (v2 or v3, recognised by its \"GGUF\" magic), a llama2.c checkpoint (.bin, versions 0-2),\n"
      "a safetensors file, a PyTorch checkpoint (torch.save zip, read without running its pickle), or a Hugging Face\n"
      "folder (its weights, config.json and tokenizer).\n"
      "The file is fully validated on the way (counts, sizes, offsets, alignment, overlaps); a file that fails\n"
      "prints one line naming the field and exits with status 1.\n"
      "Shapes are ggml's ne order, innermost (contiguous) dimension first. Bits per weight count only tensors\n"
      "whose type size kiln knows.\n"
      "Examples:\n"
      "  kiln inspect model.gguf\n"
      "  kiln inspect --json --items 0 model.gguf   # every array item, machine-readable\n"
      "  kiln inspect stories260K.bin\n"
      "  kiln inspect ./Qwen2.5-0.5B-Instruct\n");
  cmd->add_option("MODEL", opt->model, "model file or Hugging Face folder")->required()->check(CLI::ExistingPath);
  cmd->add_flag("--json", opt->json, "print one JSON document instead of text");
  cmd->add_option("--items", opt->max_items, "array items to show per metadata array (0 = all)")->capture_default_str();
  cmd->add_option("--max-string", opt->max_string, "characters of a string value shown in text output (0 = all)")
      ->capture_default_str();
  cmd->add_flag("--no-tensors", opt->no_tensors, "omit the tensor table from text output (totals still shown)");
  cmd->callback([opt] { run_inspect(*opt); });
}

}  // namespace kiln::cli
