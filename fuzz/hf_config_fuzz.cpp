// Feeds arbitrary bytes to parse_hf_config as a Hugging Face config.json. Rejection must be a
// kiln::Error; an accepted config must give GGUF metadata and, with llama3 rope scaling, finite
// positive per-frequency factors, one per rotary pair.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>

#include "convert/hf_config.h"
#include "core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const kiln::convert::HfLlamaConfig c =
        kiln::convert::parse_hf_config(std::string(reinterpret_cast<const char*>(data), size), "config.json");
    if (c.hidden_size <= 0 || c.num_heads <= 0 || c.num_kv_heads <= 0 || c.num_heads % c.num_kv_heads != 0 ||
        c.head_dim <= 0 || c.head_dim % 2 != 0)
      __builtin_trap();
    if (kiln::convert::hf_config_gguf_metadata(c, "fuzz").empty()) __builtin_trap();
    if (c.rope_scaling_type == "llama3") {
      const std::vector<float> f = kiln::convert::llama3_rope_factors(c);
      if (f.size() != static_cast<std::size_t>(c.head_dim / 2)) __builtin_trap();
      for (float v : f)
        if (!std::isfinite(v) || !(v > 0)) __builtin_trap();
    }
  } catch (const kiln::Error&) {
  }
  return 0;
}
