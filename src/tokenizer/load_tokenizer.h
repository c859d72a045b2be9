#pragma once
// Where tokenizers come from: the factory that picks the implementation a vocabulary asks for,
// and one entry point for every file a tokenizer can come from, so that a command can take
// MODEL|TOKENIZER: the kind is told by the path and the file's first bytes, not by its name alone.
//   a GGUF model (magic "GGUF")           its tokenizer.ggml.* metadata
//   tokenizer.json (a JSON object)        Hugging Face BPE, byte-level or byte-fallback
//                                         (SentencePiece-style) (hf_tokenizer_json.h)
//   encoder.json (JSON, vocab.bpe beside) GPT-2 / tiktoken-style files (bpe_vocab_files.h)
//   *.bin (neither GGUF nor JSON)         llama2.c's tokenizer.bin (llama2c_tokenizer.h)
//   anything else                         a SentencePiece tokenizer.model (spm_model_file.h)
//   a directory                           its tokenizer.json, else encoder.json + vocab.bpe,
//                                         else tokenizer.model, else tokenizer.bin
#include <memory>
#include <string>

#include "tokenizer/tokenizer.h"

namespace kiln {

class GgufFile;

// The tokenizer a vocabulary asks for (tokenizer.ggml.model): SentencePiece for "llama",
// byte-level BPE for "gpt2". Throws kiln::Error naming the model when kiln has no tokenizer of
// that kind.
std::unique_ptr<Tokenizer> make_tokenizer(Vocab vocab);
// make_tokenizer(Vocab::from_gguf(gguf)).
std::unique_ptr<Tokenizer> load_tokenizer(const GgufFile& gguf);

// The vocabulary in the file or directory at `path`. Throws kiln::Error naming the path when it
// holds no tokenizer kiln reads.
Vocab load_vocab_file(const std::string& path);

// make_tokenizer(load_vocab_file(path)).
std::unique_ptr<Tokenizer> load_tokenizer_file(const std::string& path);

}  // namespace kiln
