#pragma once
// A LlamaConfig as a JSON object, every field by its C++ name, for files training writes (its
// checkpoints). Floats are stored as JSON numbers, which nlohmann_json prints with the shortest
// digits that read back to the same double; a float widened to double and back is exact, so the
// config round-trips bit for bit.
#include <nlohmann/json.hpp>
#include <string>

#include "model/llama_config.h"

namespace kiln::train {

nlohmann::json llama_config_to_json(const LlamaConfig& config);
// Reads every field; throws kiln::Error naming `where` and the field when one is missing, of the
// wrong type, out of range, or (floats) not exactly a finite float.
LlamaConfig llama_config_from_json(const nlohmann::json& j, const std::string& where);

}  // namespace kiln::train
