#include "train/llama_config_json.h"

#include <cmath>
#include <limits>

#include "core/error.h"

namespace kiln::train {
namespace {

using json = nlohmann::json;

const json& field(const json& j, const char* key, const std::string& where) {
  const auto it = j.find(key);
  if (it == j.end()) fail("{}: missing field \"{}\"", where, key);
  return *it;
}

int get_int(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  if (!v.is_number_integer()) fail("{}: field \"{}\" must be an integer", where, key);
  // The parser stores non-negative integers unsigned; a value above int64's range is only
  // representable so.
  const bool in_range = v.is_number_unsigned()
                            ? v.get<std::uint64_t>() <= static_cast<std::uint64_t>(std::numeric_limits<int>::max())
                            : v.get<std::int64_t>() >= std::numeric_limits<int>::min() &&
                                  v.get<std::int64_t>() <= std::numeric_limits<int>::max();
  if (!in_range) fail("{}: field \"{}\" is out of range", where, key);
  return static_cast<int>(v.get<std::int64_t>());
}

float get_float(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  if (!v.is_number()) fail("{}: field \"{}\" must be a number", where, key);
  const double d = v.get<double>();
  // Converting a double beyond float's range is undefined, so the range is checked first.
  if (!(std::fabs(d) <= std::numeric_limits<float>::max()) || static_cast<double>(static_cast<float>(d)) != d)
    fail("{}: field \"{}\" is not a finite f32 value", where, key);
  return static_cast<float>(d);
}

bool get_bool(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  if (!v.is_boolean()) fail("{}: field \"{}\" must be true or false", where, key);
  return v.get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& where) {
  const json& v = field(j, key, where);
  if (!v.is_string()) fail("{}: field \"{}\" must be a string", where, key);
  return v.get<std::string>();
}

}  // namespace

json llama_config_to_json(const LlamaConfig& c) {
  return {{"arch", c.arch},
          {"name", c.name},
          {"n_vocab", c.n_vocab},
          {"n_embd", c.n_embd},
          {"n_layer", c.n_layer},
          {"n_head", c.n_head},
          {"n_head_kv", c.n_head_kv},
          {"head_dim", c.head_dim},
          {"n_ff", c.n_ff},
          {"n_ctx_train", c.n_ctx_train},
          {"n_rot", c.n_rot},
          {"rms_eps", static_cast<double>(c.rms_eps)},
          {"rope_theta", static_cast<double>(c.rope_theta)},
          {"rope_scale", static_cast<double>(c.rope_scale)},
          {"rope_layout", c.rope_layout == RopeLayout::Halves ? "halves" : "interleaved"},
          {"qkv_bias", c.qkv_bias},
          {"tied_output", c.tied_output}};
}

LlamaConfig llama_config_from_json(const json& j, const std::string& where) {
  if (!j.is_object()) fail("{}: expected an object", where);
  LlamaConfig c;
  c.arch = get_string(j, "arch", where);
  c.name = get_string(j, "name", where);
  c.n_vocab = get_int(j, "n_vocab", where);
  c.n_embd = get_int(j, "n_embd", where);
  c.n_layer = get_int(j, "n_layer", where);
  c.n_head = get_int(j, "n_head", where);
  c.n_head_kv = get_int(j, "n_head_kv", where);
  c.head_dim = get_int(j, "head_dim", where);
  c.n_ff = get_int(j, "n_ff", where);
  c.n_ctx_train = get_int(j, "n_ctx_train", where);
  c.n_rot = get_int(j, "n_rot", where);
  c.rms_eps = get_float(j, "rms_eps", where);
  c.rope_theta = get_float(j, "rope_theta", where);
  c.rope_scale = get_float(j, "rope_scale", where);
  const std::string layout = get_string(j, "rope_layout", where);
  if (layout == "interleaved")
    c.rope_layout = RopeLayout::Interleaved;
  else if (layout == "halves")
    c.rope_layout = RopeLayout::Halves;
  else
    fail("{}: field \"rope_layout\" must be \"interleaved\" or \"halves\", not \"{}\"", where, layout);
  c.qkv_bias = get_bool(j, "qkv_bias", where);
  c.tied_output = get_bool(j, "tied_output", where);
  return c;
}

}  // namespace kiln::train
