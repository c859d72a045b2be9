// Token-mask cost of constrained decoding on real vocabularies: the Llama-2 vocabulary (32,000
// tokens, from the shared GGUF) and the Llama-3 vocabulary (128,256 tokens, tokenizer.json).
// Each benchmark walks a JSON document valid under a schema token by token, as a constrained
// generation would, and computes the mask before every token:
//   BM_MaskCold/<vocab>       a fresh CompiledGrammar per document: every state's mask by the trie walk
//   BM_MaskWarm/<vocab>       one CompiledGrammar for all documents: masks from the state cache
//   BM_MaskReference/<vocab>  each token checked on its own (the reference the trie walk is tested against)
// tokens_per_s is the figure to compare (its inverse is the mask time per generated token). The shared data folder
// is KILN_DATA_DIR, else ../shared/data beside the repository.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "format/gguf_file.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema_grammar.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace {

using namespace kiln;

std::string data_dir() {
  if (const char* dir = std::getenv("KILN_DATA_DIR")) return dir;
  const std::string here = __FILE__;  // <repo>/bench/grammar_mask_bench.cpp
  return here.substr(0, here.rfind('/')) + "/../../shared/data";
}

const char* kSchema = R"({"type":"object","properties":{
  "name":{"type":"string","maxLength":40},
  "age":{"type":"integer","minimum":0,"maximum":150},
  "email":{"type":"string","format":"email"},
  "tags":{"type":"array","items":{"type":"string","maxLength":16},"maxItems":8},
  "address":{"type":"object","properties":{"street":{"type":"string"},"city":{"type":"string"},"zip":{"type":"string","pattern":"[0-9]{5}"}},
             "required":["street","city","zip"]},
  "active":{"type":"boolean"}},
  "required":["name","age","email","tags","address","active"]})";

const char* kDocument =
    "{\"name\": \"Natasha Rostova\", \"age\": 20, \"email\": \"natasha@rostov.ru\", "
    "\"tags\": [\"countess\", \"moscow\", \"dancer\"], \"address\": {\"street\": \"Povarskaya street 12\", "
    "\"city\": \"Moscow\", \"zip\": \"12345\"}, \"active\": true}";

struct Vocab {
  std::unique_ptr<Tokenizer> tokenizer;
  std::shared_ptr<const grammar::TokenVocabulary> vocabulary;
  std::vector<std::int32_t> document;  // kDocument's tokens
};

const Vocab* load(int which) {
  static std::unique_ptr<Vocab> v[2];
  if (!v[which]) {
    auto out = std::make_unique<Vocab>();
    try {
      out->tokenizer = which == 0 ? load_tokenizer(*GgufFile::open(data_dir() + "/llama-2-tiny-random.gguf"))
                                  : load_tokenizer_file(data_dir() + "/llama3.2-tokenizer/encoder.json");
    } catch (const std::exception&) {
      return nullptr;
    }
    out->vocabulary = grammar::TokenVocabulary::from_tokenizer(*out->tokenizer);
    out->document = out->tokenizer->encode(kDocument, false, false);
    v[which] = std::move(out);
  }
  return v[which].get();
}

std::shared_ptr<const grammar::CompiledGrammar> compile(const Vocab& v) {
  return std::make_shared<const grammar::CompiledGrammar>(
      grammar::parse_gbnf(grammar::json_schema_to_gbnf(nlohmann::ordered_json::parse(kSchema))), v.vocabulary);
}

enum class Mode { Cold, Warm, Reference };

void walk(benchmark::State& state, Mode mode) {
  const Vocab* v = load(static_cast<int>(state.range(0)));
  if (!v) {
    state.SkipWithError("shared vocabulary not found (set KILN_DATA_DIR)");
    return;
  }
  auto shared = compile(*v);
  std::vector<std::uint32_t> mask(shared->mask_words());
  std::size_t tokens = 0;
  for (auto _ : state) {
    auto g = mode == Mode::Cold ? compile(*v) : shared;
    grammar::GrammarMatcher m(g);
    const std::size_t n = mode == Mode::Reference ? std::min<std::size_t>(8, v->document.size()) : v->document.size();
    for (std::size_t i = 0; i < n; ++i) {
      if (mode == Mode::Reference) {
        m.fill_mask_reference(mask);
      } else {
        m.fill_mask(mask);
      }
      if (!m.accept(v->document[i])) {
        state.SkipWithError("the document does not match the schema's grammar");
        return;
      }
      benchmark::DoNotOptimize(mask.data());
    }
    tokens += n;
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
  state.counters["tokens"] = static_cast<double>(v->document.size());
  state.SetLabel(state.range(0) == 0 ? "llama2-32k" : "llama3-128k");
}

void BM_MaskCold(benchmark::State& s) { walk(s, Mode::Cold); }
void BM_MaskWarm(benchmark::State& s) { walk(s, Mode::Warm); }
void BM_MaskReference(benchmark::State& s) { walk(s, Mode::Reference); }

BENCHMARK(BM_MaskCold)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskWarm)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MaskReference)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
