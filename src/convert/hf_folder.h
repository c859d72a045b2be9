#pragma once
// What a Hugging Face model folder says besides its weights: the tokenizer (tokenizer.model, a
// SentencePiece model, when present; else tokenizer.json), special tokens and flags from
// tokenizer_config.json, the chat template(s) (tokenizer_config.json's chat_template, a string or
// a list of named templates, or chat_template.jinja), and the end-of-generation ids of
// generation_config.json (one id or a list: the first is EOS, an end-of-turn or end-of-message
// token among the others becomes EOT / EOM, as GGUF has no list).
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace kiln::convert {

struct HfTokenizer {
  Vocab vocab;
  std::string vocab_file;  // the file the vocabulary came from
  // (name, template): "" names the default one (tokenizer.chat_template), others are written as
  // tokenizer.chat_template.<name>.
  std::vector<std::pair<std::string, std::string>> chat_templates;
};

// Whether `dir` holds a tokenizer file read_hf_tokenizer reads (tokenizer.model, tokenizer.json).
bool has_hf_tokenizer(const std::string& dir);

// Reads the tokenizer of `dir`, padded to `n_vocab` tokens with "[PAD<id>]" unused tokens when
// the model's embedding has more rows than the tokenizer has tokens (as llama.cpp does). Throws
// kiln::Error naming the file and field when there is no tokenizer, when it has more tokens than
// `n_vocab`, or when a file is malformed. `tokenizer_path`, when not empty, is used instead of
// the folder's own tokenizer files (any file load_vocab_file reads).
HfTokenizer read_hf_tokenizer(const std::string& dir, int n_vocab, const std::string& tokenizer_path = {});

// A byte-level vocabulary read from a tokenizer.json spells its pre-tokenizer out as expressions;
// a GGUF names it (tokenizer.ggml.pre, which llama.cpp's loader needs). Sets vocab.pre to the name
// llama.cpp uses for those expressions; throws kiln::Error naming `source` when none cuts text the
// same way (the GGUF would tokenize differently in llama.cpp).
void name_pretokenizer(Vocab& vocab, const std::string& source);

// Pads `vocab` with unused "[PAD<id>]" tokens up to `n_vocab`, and refuses a vocabulary larger
// than that (naming `source` and `model_field`).
void pad_vocab(Vocab& vocab, int n_vocab, const std::string& source, const std::string& model_field);

}  // namespace kiln::convert
