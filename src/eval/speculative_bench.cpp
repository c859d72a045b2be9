#include "eval/speculative_bench.h"

#include "core/error.h"
#include "runtime/generator.h"
#include "sample/sampler.h"

namespace kiln::eval {

SpeculativeBenchResult run_speculative_bench(LlamaModel& target, LlamaModel& draft, ThreadPool& pool,
                                             const SpeculativeBenchOptions& o,
                                             const std::function<void(int)>& on_repetition) {
  if (o.prompt.empty()) fail("bench --draft: the prompt is empty");
  if (o.n_gen < 2 || o.repetitions < 1) fail("bench --draft: needs -n >= 2 and -r >= 1");
  o.speculative.validate();
  const int positions = static_cast<int>(o.prompt.size()) + o.n_gen + o.speculative.draft_max + 1;
  KvCache cache = target.make_kv_cache(positions, o.kv_type);
  KvCache draft_cache = draft.make_kv_cache(positions, o.kv_type);
  SamplerParams greedy;
  greedy.temperature = 0;
  GenerateOptions g;
  g.n_predict = o.n_gen;
  g.batch = o.batch;
  g.ignore_eos = true;
  const SpeculativeDraft spec{&draft, &draft_cache, o.speculative};
  const auto never = [](int) { return false; };
  const auto keep_going = [](int) { return true; };
  const auto tok_s = [](const GenerateResult& r) {
    const int decoded = static_cast<int>(r.tokens.size()) - 1;  // the first token comes from the prefill
    return r.decode_seconds > 0 ? decoded / r.decode_seconds : 0.0;
  };

  SpeculativeBenchResult result;
  std::vector<double> plain, fast;
  for (int rep = 0; rep <= o.repetitions; ++rep) {
    Sampler a(greedy), b(greedy);
    const GenerateResult p = generate(target, cache, pool, a, o.prompt, g, never, keep_going);
    const GenerateResult s = generate(target, cache, pool, b, o.prompt, g, never, keep_going, &spec);
    result.identical = result.identical && p.tokens == s.tokens;
    if (rep > 0) {
      plain.push_back(tok_s(p));
      fast.push_back(tok_s(s));
      result.drafted += s.drafted;
      result.accepted += s.accepted;
      result.steps += s.rounds;
    }
    if (on_repetition) on_repetition(rep);
  }
  result.plain = mean_stdev(plain);
  result.speculative = mean_stdev(fast);
  return result;
}

}  // namespace kiln::eval
