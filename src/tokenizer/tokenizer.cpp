#include "tokenizer/tokenizer.h"

#include "core/error.h"
#include "format/gguf_file.h"
#include "tokenizer/bpe_tokenizer.h"
#include "tokenizer/spm_tokenizer.h"

namespace kiln {

std::string Tokenizer::decode(std::span<const std::int32_t> ids) const {
  DecodeState state;
  std::string text;
  for (std::int32_t id : ids) decode_token(id, state, text);
  decode_finish(state, text);
  return text;
}

void Tokenizer::check_id(std::int32_t id) const {
  KILN_CHECK(vocab_.contains(id), "token id {} is out of range (vocabulary has {} tokens)", id, vocab_.size());
}

std::unique_ptr<Tokenizer> make_tokenizer(Vocab vocab) {
  if (vocab.model == "llama") return std::make_unique<SpmTokenizer>(std::move(vocab));
  if (vocab.model == "gpt2") return std::make_unique<BpeTokenizer>(std::move(vocab));
  fail("{}: tokenizer.ggml.model = \"{}\" is not supported (kiln knows \"llama\" and \"gpt2\")", vocab.source,
       vocab.model);
}

std::unique_ptr<Tokenizer> load_tokenizer(const GgufFile& gguf) { return make_tokenizer(Vocab::from_gguf(gguf)); }

}  // namespace kiln
