#include "runtime/embedding_input.h"

#include "format/gguf_metadata.h"
#include "tokenizer/tokenizer.h"

namespace kiln {

std::vector<std::int32_t> embedding_tokens(const Tokenizer& tokenizer, std::string_view text) {
  std::vector<std::int32_t> ids = tokenizer.encode(text, tokenizer.vocab().add_bos, false);
  const std::int32_t eos = tokenizer.eos_id();
  if (tokenizer.vocab().add_eos && eos >= 0 && (ids.empty() || ids.back() != eos)) ids.push_back(eos);
  return ids;
}

Pooling default_embedding_pooling(const GgufMetadata& metadata, const std::string& arch) {
  const std::optional<Pooling> own = model_pooling(metadata, arch);
  return own && *own != Pooling::None ? *own : Pooling::Mean;
}

}  // namespace kiln
