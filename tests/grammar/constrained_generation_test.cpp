// Constrained generation through the engine: outputs sampled at temperature 1 from the default
// model and from a model with random weights, for a generated corpus of JSON Schemas, are all
// valid under their schema as an independent validator (Python's jsonschema) judges them, and
// all end by themselves (every schema bounds its lengths); a constrained greedy run equals the
// unconstrained one wherever the unconstrained text already satisfies the grammar.
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>

#include <gtest/gtest.h>

#include "core/error.h"
#include "grammar/grammar_matcher.h"
#include "grammar/json_schema_grammar.h"
#include "grammar/regex_grammar.h"
#include "model/llama_model.h"
#include "runtime/engine.h"
#include "test_support.h"
#include "tokenizer/load_tokenizer.h"

namespace kiln {
namespace {

using ojson = nlohmann::ordered_json;

struct Result {
  std::vector<std::int32_t> ids;
  std::string text;
  Finish finish;
};

Result run(Engine& engine, GenerationRequest req) {
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  Result r;
  GenerationCallbacks cb{[&](const TokenEvent& e) {
                           std::lock_guard<std::mutex> lk(mu);
                           r.ids.push_back(e.id);
                           r.text += e.text;
                         },
                         [&](const Finish& f) {
                           std::lock_guard<std::mutex> lk(mu);
                           r.text += f.text;
                           r.finish = f;
                           done = true;
                           cv.notify_all();
                         }};
  engine.submit(std::move(req), std::move(cb));
  std::unique_lock<std::mutex> lk(mu);
  cv.wait(lk, [&] { return done; });
  return r;
}

// A random schema of bounded size: nested objects, arrays with bounds, enums, const, anyOf,
// $ref, strings with lengths and formats, integers and numbers with bounds.
ojson random_schema(std::mt19937& rng, int depth, ojson& defs) {
  auto pick = [&](int n) { return std::uniform_int_distribution<int>(0, n - 1)(rng); };
  const int kind = depth >= 2 ? 3 + pick(8) : pick(11);
  switch (kind) {
    case 0: {
      ojson props = ojson::object(), required = ojson::array();
      const int n = 1 + pick(3);
      for (int i = 0; i < n; ++i) {
        const std::string name = std::string(1, static_cast<char>('a' + pick(26))) + "_" + std::to_string(i);
        props[name] = random_schema(rng, depth + 1, defs);
        if (pick(2)) required.push_back(name);
      }
      return {{"type", "object"}, {"properties", props}, {"required", required}, {"additionalProperties", false}};
    }
    case 1: {
      const int min = pick(3);
      return {{"type", "array"}, {"items", random_schema(rng, depth + 1, defs)}, {"minItems", min}, {"maxItems", min + pick(3)}};
    }
    case 2: {
      const std::string name = "d" + std::to_string(defs.size());
      defs[name] = random_schema(rng, depth + 1, defs);
      return {{"$ref", "#/$defs/" + name}};
    }
    case 3: {
      const int min = pick(4);
      return {{"type", "string"}, {"minLength", min}, {"maxLength", min + pick(10)}};
    }
    case 4: {
      const char* formats[] = {"date", "time", "date-time", "uuid", "email"};
      return {{"type", "string"}, {"format", formats[pick(5)]}};
    }
    case 5: {
      const int lo = pick(4000) - 2000;
      return {{"type", "integer"}, {"minimum", lo}, {"maximum", lo + pick(5000)}};
    }
    case 6: {
      const double lo = (pick(400) - 200) / 4.0;
      ojson s = {{"type", "number"}, {"minimum", lo}, {"maximum", lo + pick(100) + 2.5}};
      if (pick(2)) s["exclusiveMinimum"] = lo, s.erase("minimum");
      return s;
    }
    case 7: return {{"enum", ojson::array({"red", "green", 3, nullptr, ojson::array({true})}) }};
    case 8: return {{"const", pick(2) ? ojson("fixed \"value\"") : ojson(42)}};
    case 9: {
      ojson s = {{"anyOf", ojson::array({random_schema(rng, depth + 1, defs), random_schema(rng, depth + 1, defs)})}};
      return s;
    }
    default: return pick(2) ? ojson{{"type", "boolean"}} : ojson{{"type", "null"}};
  }
}

std::vector<ojson> schema_corpus(int n) {
  std::mt19937 rng(2024);
  std::vector<ojson> out;
  for (int i = 0; i < n; ++i) {
    ojson defs = ojson::object();
    ojson s = random_schema(rng, 0, defs);
    if (!defs.empty()) s["$defs"] = defs;
    out.push_back(s);
  }
  return out;
}

// Samples every schema of the corpus `per_schema` times and validates all outputs.
void check_corpus(const std::string& model_path, int n_schemas, int per_schema, int max_tokens) {
  auto model = LlamaModel::load(model_path);
  auto tokenizer = load_tokenizer(*model->source().gguf());
  EngineOptions opts;
  opts.threads = 2;
  Engine engine(*model, *tokenizer, opts);
  grammar::CompiledGrammarCache cache(grammar::TokenVocabulary::from_tokenizer(*tokenizer));
  const std::vector<std::int32_t> prompt = tokenizer->encode("Answer in JSON:", tokenizer->vocab().add_bos, false);

  const std::string out_path = test::temp_dir() + "/constrained_outputs.jsonl";
  std::ofstream out(out_path);
  int n = 0, n_tokens = 0, longest = 0;
  for (const ojson& schema : schema_corpus(n_schemas)) {
    std::string gbnf;
    try {
      gbnf = grammar::json_schema_to_gbnf(schema);
    } catch (const Error& e) {
      FAIL() << e.what() << " for " << schema.dump();
    }
    auto compiled = cache.get(gbnf);
    for (int k = 0; k < per_schema; ++k) {
      GenerationRequest req;
      req.prompt = prompt;
      req.sampling.temperature = 1.0f;
      req.sampling.seed = static_cast<std::uint64_t>(1000 * n + k);
      req.max_tokens = max_tokens;
      req.grammar = compiled;
      const Result r = run(engine, req);
      EXPECT_EQ(r.finish.reason, FinishReason::Stop)
          << finish_reason_name(r.finish.reason) << " " << r.finish.error << " after " << r.ids.size()
          << " tokens: " << r.text << "\nschema: " << schema.dump();
      n_tokens += static_cast<int>(r.ids.size());
      longest = std::max(longest, static_cast<int>(r.ids.size()));
      out << ojson{{"schema", schema}, {"output", r.text}}.dump() << "\n";
    }
    ++n;
  }
  out.close();
  std::printf("%d schemas x %d samples: %d tokens, longest %d\n", n, per_schema, n_tokens, longest);
  std::string log;
  const int rc = test::run_command("/usr/bin/python3 -c 'import jsonschema' 2>/dev/null", &log);
  if (rc != 0) GTEST_SKIP() << "python3-jsonschema is not installed (scripts/install-deps.sh installs it)";
  const std::string validator = std::string(std::getenv("KILN_SOURCE_DIR")) + "/tests/grammar/validate_json_schema.py";
  const int status = test::run_command("/usr/bin/python3 " + test::shell_quote(validator) + " " + test::shell_quote(out_path), &log, true);
  EXPECT_EQ(status, 0) << log;
  std::printf("%s", log.c_str());
}

std::string default_model() { return std::string(std::getenv("KILN_SOURCE_DIR")) + "/models/kiln-default.gguf"; }

TEST(ConstrainedGeneration, SchemaCorpusFromTheDefaultModelValidates) { check_corpus(default_model(), 40, 3, 240); }

TEST(ConstrainedGeneration, SchemaCorpusFromRandomWeightsValidatesAndEnds) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  check_corpus(path, 40, 2, 400);
}

TEST(ConstrainedGeneration, GreedyRunIsUnchangedWhereTheGrammarAgrees) {
  auto model = LlamaModel::load(default_model());
  auto tokenizer = load_tokenizer(*model->source().gguf());
  EngineOptions opts;
  opts.threads = 2;
  Engine engine(*model, *tokenizer, opts);
  auto vocab = grammar::TokenVocabulary::from_tokenizer(*tokenizer);
  for (const char* text : {"The prince said", "Natasha", "It was"}) {
    GenerationRequest req;
    req.prompt = tokenizer->encode(text, tokenizer->vocab().add_bos, false);
    req.sampling.temperature = 0;
    req.max_tokens = 40;
    req.top_logprobs = 2;
    const Result free = run(engine, req);
    ASSERT_NE(free.finish.reason, FinishReason::Error);
    // Grammars the free text satisfies: the text itself, and any text without digits.
    std::string literal = "root ::= ";
    literal += grammar::gbnf_literal(free.text);
    literal += '\n';
    for (const std::string& gbnf : {literal, std::string("root ::= [^0-9]*\n")}) {
      if (gbnf.find("[^0-9]") != std::string::npos && free.text.find_first_of("0123456789") != std::string::npos) continue;
      GenerationRequest c = req;
      c.grammar = std::make_shared<const grammar::CompiledGrammar>(grammar::parse_gbnf(gbnf), vocab);
      const Result constrained = run(engine, c);
      EXPECT_EQ(constrained.ids, free.ids) << gbnf;
      EXPECT_EQ(constrained.text, free.text);
      // The literal grammar is exhausted by its last token: stop, not length.
      if (gbnf.find("[^0-9]") == std::string::npos) EXPECT_EQ(constrained.finish.reason, FinishReason::Stop);
      else EXPECT_EQ(constrained.finish.reason, free.finish.reason);
    }
  }
}

TEST(ConstrainedGeneration, AGrammarThatCannotFinishInTimeEndsWithLength) {
  auto model = LlamaModel::load(default_model());
  auto tokenizer = load_tokenizer(*model->source().gguf());
  EngineOptions opts;
  opts.threads = 2;
  Engine engine(*model, *tokenizer, opts);
  auto vocab = grammar::TokenVocabulary::from_tokenizer(*tokenizer);
  GenerationRequest req;
  req.prompt = tokenizer->encode("x", tokenizer->vocab().add_bos, false);
  req.max_tokens = 8;
  req.top_logprobs = 3;
  req.grammar = std::make_shared<const grammar::CompiledGrammar>(grammar::parse_gbnf("root ::= \"a\"{500}\n"), vocab);
  const Result r = run(engine, req);
  EXPECT_EQ(r.finish.reason, FinishReason::Length);
  EXPECT_EQ(r.text, std::string(r.text.size(), 'a'));
  EXPECT_LE(r.ids.size(), 8u);
}

}  // namespace
}  // namespace kiln
