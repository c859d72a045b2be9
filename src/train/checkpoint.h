#pragma once
// Training checkpoints (docs/formats.md, "Training checkpoints"): everything a run needs to
// continue bit for bit where it stopped: the model's config, its parameters, AdamW's two moments,
// the optimizer's step count, the data order's seed and cursor, and a JSON object of run
// information that belongs to the caller (options, loss history; the checkpoint only stores it).
//
// A file is a 56-byte prefix (magic "KILNCKPT", version, the JSON header's length and SHA-256),
// the JSON header, zero padding to 64 bytes, then params, m and v: ParameterTable::total()
// little-endian f32 each, covered by a SHA-256 in the header. Readers check every size against
// the file size before reading and both digests, so a truncated or damaged file is refused
// instead of resuming from wrong numbers.
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "model/llama_config.h"
#include "train/parameter_table.h"
#include "train/token_windows.h"

namespace kiln::train {

inline constexpr char kCheckpointMagic[8] = {'K', 'I', 'L', 'N', 'C', 'K', 'P', 'T'};
inline constexpr std::uint32_t kCheckpointVersion = 1;

struct CheckpointState {
  LlamaConfig config;
  std::int64_t step = 0;  // optimizer steps done
  std::uint64_t seed = 0;
  WindowCursor cursor;
  nlohmann::json run = nlohmann::json::object();
};

// Writes a temporary file beside `path`, fsyncs it, renames it into place and fsyncs the folder,
// so `path` holds either the previous checkpoint or this one, whole. params, m and v are
// table.total() floats each. Throws kiln::Error when state.config is not table.config() (the
// name aside), state.run is not an object, state.step is negative, or on a write error (the
// temporary file is then removed).
void write_checkpoint(const std::string& path, const CheckpointState& state, const ParameterTable& table,
                      const float* params, const float* m, const float* v);

// Reads and checks the header alone (to build the model before loading tensors): the header's
// digest, its fields, its tensor table against the table of its config, and the file's size
// against that table. Throws kiln::Error naming the file otherwise.
CheckpointState read_checkpoint_state(const std::string& path);

// Loads the tensors into buffers laid out by `table` (table.total() floats each). Throws
// kiln::Error when the file's config (the name aside) or tensor table differs from `table`'s
// ("checkpoint X is for another model: ..."), or the file is truncated or damaged; the buffers'
// contents are then unspecified.
void read_checkpoint_tensors(const std::string& path, const ParameterTable& table, float* params, float* m, float* v);

}  // namespace kiln::train
