#include "eval/chunk_source.h"

#include <algorithm>
#include <vector>

#include "core/error.h"
#include "model/llama_model.h"
#include "runtime/loaded_model.h"
#include "tokenizer/tokenizer.h"

namespace kiln::eval {

ChunkPlan plan_chunks(const LlamaModel& model, const ChunkSource& src, const std::string& command) {
  if (src.text.empty() == src.tokens.empty()) fail("{}: give exactly one of --text FILE and --tokens FILE", command);
  std::unique_ptr<Tokenizer> tokenizer = load_model_tokenizer(model);
  std::vector<int> ids;
  int bos = -1;
  std::string source;
  if (!src.text.empty()) {
    if (!tokenizer)
      fail("{}: this model has no tokenizer; give the text as token ids with --tokens FILE", model.source().path());
    const std::string text = read_text_file(src.text);
    if (text.find_first_not_of(" \t\r\n") == std::string::npos) fail("{}: the text is empty", src.text);
    const bool add_bos = tokenizer->vocab().add_bos && !src.no_bos;
    const std::vector<std::int32_t> t = tokenizer->encode(text, add_bos, false);
    ids.assign(t.begin(), t.end());
    bos = add_bos ? tokenizer->bos_id() : -1;
    source = src.text;
  } else {
    ids = read_token_file(src.tokens);
    bos = src.no_bos ? -1 : (tokenizer ? (tokenizer->vocab().add_bos ? tokenizer->bos_id() : -1) : 1);
    source = src.tokens;
  }
  check_token_range(ids, model.config().n_vocab, source);
  const int train_ctx = model.config().n_ctx_train;
  int n_ctx = src.ctx;
  if (n_ctx <= 0) n_ctx = train_ctx > 0 ? std::min(512, train_ctx) : 512;
  else if (train_ctx > 0 && n_ctx > train_ctx)
    fail("--ctx {} is longer than the context {} that {} was trained with", n_ctx, train_ctx, model.source().path());
  if (src.chunks < 0) fail("--chunks must be >= 0");
  if (static_cast<std::int64_t>(ids.size()) < n_ctx)
    fail("{}: the text has {} tokens, fewer than one chunk of {} (--ctx): give more text or a smaller --ctx", source,
         ids.size(), n_ctx);
  return make_chunk_plan(ids, n_ctx, src.chunks, bos, source);
}

}  // namespace kiln::eval
