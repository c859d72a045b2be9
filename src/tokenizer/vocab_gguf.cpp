// Vocab::from_gguf and add_vocab_metadata: the tokenizer.ggml.* keys of a GGUF file, as llama.cpp
// writes and reads them.
#include "tokenizer/vocab_gguf.h"

#include <limits>

#include "core/error.h"
#include "format/gguf_file.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/vocab.h"

namespace kiln {
namespace {

const GgufArray& require_array(const GgufMetadata& gguf, const std::string& key) {
  const GgufArray* array = gguf.get_array(key);
  KILN_CHECK(array != nullptr, "{}: {} is missing", gguf.path(), key);
  return *array;
}

// A special token id: absent keeps `fallback`; -1 and 0xFFFFFFFF (how some converters write
// "none" into a u32) mean no such token.
std::int32_t read_token_id(const GgufMetadata& gguf, const std::string& key, std::int32_t fallback) {
  const std::optional<std::int64_t> v = gguf.get_int(key);
  if (!v) return fallback;
  if (*v == -1 || *v == 0xFFFFFFFFLL) return -1;
  KILN_CHECK(*v >= 0 && *v <= std::numeric_limits<std::int32_t>::max(), "{}: {} = {} is not a token id", gguf.path(),
             key, *v);
  return static_cast<std::int32_t>(*v);
}

}  // namespace

Vocab Vocab::from_gguf(const GgufMetadata& gguf) {
  Vocab vocab;
  const std::optional<std::string> model = gguf.get_string("tokenizer.ggml.model");
  KILN_CHECK(model.has_value(), "{}: tokenizer.ggml.model is missing", gguf.path());
  vocab.model = *model;

  const GgufArray& tokens = require_array(gguf, "tokenizer.ggml.tokens");
  KILN_CHECK(tokens.elem_type == GgufType::String, "{}: tokenizer.ggml.tokens holds {}, expected string", gguf.path(),
             gguf_type_name(tokens.elem_type));
  vocab.tokens = tokens.strings;

  if (const GgufArray* scores = gguf.get_array("tokenizer.ggml.scores")) {
    KILN_CHECK(scores->elem_type == GgufType::F32 || scores->elem_type == GgufType::F64,
               "{}: tokenizer.ggml.scores holds {}, expected f32", gguf.path(), gguf_type_name(scores->elem_type));
    vocab.scores.reserve(scores->floats.size());
    for (double s : scores->floats) vocab.scores.push_back(static_cast<float>(s));
  } else {
    KILN_CHECK(gguf.find("tokenizer.ggml.scores") == nullptr, "{}: tokenizer.ggml.scores is not an array", gguf.path());
  }

  if (const GgufArray* types = gguf.get_array("tokenizer.ggml.token_type")) {
    KILN_CHECK(is_integer_type(types->elem_type), "{}: tokenizer.ggml.token_type holds {}, expected i32", gguf.path(),
               gguf_type_name(types->elem_type));
    vocab.types.reserve(types->ints.size());
    for (std::size_t i = 0; i < types->ints.size(); ++i) {
      const std::int64_t t = types->ints[i];
      KILN_CHECK(t >= 0 && t <= static_cast<std::int64_t>(TokenType::Byte),
                 "{}: tokenizer.ggml.token_type[{}] = {} is not a token type (0..6)", gguf.path(), i, t);
      vocab.types.push_back(static_cast<TokenType>(t));
    }
  } else {
    KILN_CHECK(gguf.find("tokenizer.ggml.token_type") == nullptr, "{}: tokenizer.ggml.token_type is not an array",
               gguf.path());
  }

  if (const GgufArray* merges = gguf.get_array("tokenizer.ggml.merges")) {
    KILN_CHECK(merges->elem_type == GgufType::String, "{}: tokenizer.ggml.merges holds {}, expected string",
               gguf.path(), gguf_type_name(merges->elem_type));
    vocab.merges.reserve(merges->strings.size());
    for (std::size_t i = 0; i < merges->strings.size(); ++i) {
      const std::string& rule = merges->strings[i];
      // As llama.cpp: the separator is the first space after the first byte.
      const std::size_t space = rule.size() > 1 ? rule.find(' ', 1) : std::string::npos;
      KILN_CHECK(space != std::string::npos && space + 1 < rule.size(),
                 "{}: tokenizer.ggml.merges[{}] = \"{}\" is not of the form \"left right\"", gguf.path(), i, rule);
      vocab.merges.emplace_back(rule.substr(0, space), rule.substr(space + 1));
    }
  } else {
    KILN_CHECK(gguf.find("tokenizer.ggml.merges") == nullptr, "{}: tokenizer.ggml.merges is not an array", gguf.path());
  }
  if (gguf.find("tokenizer.ggml.pre") != nullptr) {
    const std::optional<std::string> pre = gguf.get_string("tokenizer.ggml.pre");
    KILN_CHECK(pre.has_value(), "{}: tokenizer.ggml.pre is not a string", gguf.path());
    vocab.pre = *pre;
  }

  // llama.cpp's defaults for SentencePiece vocabularies: <unk>=0, <s>=1, </s>=2, BOS added,
  // a dummy space prefix. Other models name their specials explicitly.
  const bool spm = vocab.model == "llama";
  const auto n = static_cast<std::int32_t>(vocab.tokens.size());
  auto default_id = [&](std::int32_t id) { return spm && id < n ? id : -1; };
  vocab.unk_id = read_token_id(gguf, "tokenizer.ggml.unknown_token_id", default_id(0));
  vocab.bos_id = read_token_id(gguf, "tokenizer.ggml.bos_token_id", default_id(1));
  vocab.eos_id = read_token_id(gguf, "tokenizer.ggml.eos_token_id", default_id(2));
  vocab.pad_id = read_token_id(gguf, "tokenizer.ggml.padding_token_id", -1);
  vocab.eot_id = read_token_id(gguf, "tokenizer.ggml.eot_token_id", -1);
  vocab.eom_id = read_token_id(gguf, "tokenizer.ggml.eom_token_id", -1);
  // Byte-level families such as Llama 3 add BOS unless the file says otherwise (llama.cpp).
  const std::optional<PretokenizerSpec> family = find_pretokenizer_spec(vocab.pre);
  const bool family_adds_bos = vocab.model == "gpt2" && family && family->add_bos;
  vocab.add_bos = gguf.get_bool("tokenizer.ggml.add_bos_token").value_or(spm || family_adds_bos);
  vocab.add_eos = gguf.get_bool("tokenizer.ggml.add_eos_token").value_or(false);
  vocab.add_space_prefix = gguf.get_bool("tokenizer.ggml.add_space_prefix").value_or(spm);

  vocab.finalize(gguf.path());
  return vocab;
}

void add_vocab_metadata(GgufWriter& w, const Vocab& vocab) {
  using namespace gguf_value;
  KILN_CHECK(vocab.pre_patterns.empty() || !vocab.pre.empty(),
             "{}: the tokenizer's pre-tokenizer is spelled out as patterns without a name, which a GGUF cannot "
             "carry (use the tokenizer's GGUF file, e.g. the tokenizer.gguf of kiln tokenizer train)",
             vocab.source);
  w.add_metadata("tokenizer.ggml.model", string(vocab.model));
  if (!vocab.pre.empty()) w.add_metadata("tokenizer.ggml.pre", string(vocab.pre));
  GgufArray tokens;
  tokens.elem_type = GgufType::String;
  tokens.strings = vocab.tokens;
  w.add_metadata("tokenizer.ggml.tokens", array(std::move(tokens)));
  if (vocab.model == "llama") {
    GgufArray scores;
    scores.elem_type = GgufType::F32;
    scores.floats.assign(vocab.scores.begin(), vocab.scores.end());
    w.add_metadata("tokenizer.ggml.scores", array(std::move(scores)));
  }
  GgufArray types;
  types.elem_type = GgufType::I32;
  for (const TokenType t : vocab.types) types.ints.push_back(static_cast<std::int64_t>(t));
  w.add_metadata("tokenizer.ggml.token_type", array(std::move(types)));
  if (!vocab.merges.empty()) {
    GgufArray merges;
    merges.elem_type = GgufType::String;
    for (const auto& [l, r] : vocab.merges) merges.strings.push_back(l + " " + r);
    w.add_metadata("tokenizer.ggml.merges", array(std::move(merges)));
  }
  auto id = [&](const char* key, std::int32_t value) {
    if (value >= 0) w.add_metadata(key, u32(static_cast<std::uint32_t>(value)));
  };
  id("tokenizer.ggml.bos_token_id", vocab.bos_id);
  id("tokenizer.ggml.eos_token_id", vocab.eos_id);
  id("tokenizer.ggml.unknown_token_id", vocab.unk_id);
  id("tokenizer.ggml.padding_token_id", vocab.pad_id);
  id("tokenizer.ggml.eot_token_id", vocab.eot_id);
  id("tokenizer.ggml.eom_token_id", vocab.eom_id);
  w.add_metadata("tokenizer.ggml.add_bos_token", boolean(vocab.add_bos));
  w.add_metadata("tokenizer.ggml.add_eos_token", boolean(vocab.add_eos));
  w.add_metadata("tokenizer.ggml.add_space_prefix", boolean(vocab.add_space_prefix));
}

}  // namespace kiln
