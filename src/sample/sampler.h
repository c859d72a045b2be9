#pragma once
// The sampler chain: turns one row of logits into the next token id.
//
// The chain runs in llama.cpp's default order, each stage on the survivors of the one before:
//
//   0. logit bias  add each listed token's bias to its logit (OpenAI's logit_bias; -inf bans the
//                  token), before everything else, greedy included, as llama.cpp's chain does
//   1. penalties   repeat penalty over the last repeat_last_n history tokens (llama.cpp: a
//                  positive logit is divided by the penalty, a negative one multiplied), then
//                  presence/frequency penalties over the whole history (OpenAI: subtract
//                  presence * [count > 0] + frequency * count)
//   2. top-k       keep the k highest logits
//   3. typical-p   locally typical sampling (Meister et al. 2022, llama.cpp's typical sampler):
//                  with H the entropy of the survivors' distribution, order the tokens by how far
//                  their surprise -log p is from H, closest first (ties to the lower id), and
//                  keep that order's shortest prefix whose mass exceeds p
//   4. top-p       keep the smallest prefix, by descending probability, whose mass reaches p
//   5. min-p       keep tokens whose probability is at least min_p times the highest one
//   6. temperature divide the logits by the temperature
//   7. dist        softmax over the survivors and one draw from the sampler's own RNG
//
// As in llama.cpp, typical-p, top-p and min-p judge probabilities at temperature 1 (the
// temperature is applied after them), so a temperature change reshapes the draw but not the
// candidate set.
// Temperature 0 means greedy: after the penalties, the highest logit wins, ties going to the
// lowest token id; top-k/typical-p/top-p/min-p cannot change that winner and are skipped.
//
// Ties between equal logits are always broken towards the lower token id, so the candidate sets
// depend only on (params, logits, history), never on the standard library's selection order.
// The draw uses the kernels' softmax (a SIMD path chosen at run time), so a seed reproduces the
// same tokens on one machine; another SIMD level rounds differently in the last bits and can,
// rarely, turn a draw that falls within that rounding of a boundary.
//
// Cost per call on an n-token vocabulary: O(n) for the copy, penalties and min-p, O(n) expected
// for top-k and top-p (selection, never a full sort), and one vectorized softmax for the draw.
// Typical-p, when on, sorts its candidates (O(n log n), as llama.cpp does) and computes their
// probabilities in double precision, so its cut does not depend on the SIMD level; on a large
// vocabulary, a top-k before it bounds that cost.
#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace kiln {

// One entry of a logit bias: added to the logit of token `id` before any other stage.
struct LogitBias {
  int id;      // [0, n_vocab) of the rows sampled (sample() checks it)
  float bias;  // [-100, 100], or -inf: the token is never drawn
};

struct SamplerParams {
  float temperature = 1.0f;        // [0, inf); 0 = greedy
  int top_k = 0;                   // [0, inf); 0 = off
  float top_p = 1.0f;              // [0, 1]; 1 = off
  float typical_p = 1.0f;          // [0, 1]; 1 = off
  float min_p = 0.0f;              // [0, 1]; 0 = off
  float repeat_penalty = 1.0f;     // (0, inf); 1 = off
  int repeat_last_n = 64;          // [-1, inf); 0 = off, -1 = the whole history
  float presence_penalty = 0.0f;   // [-2, 2]; 0 = off
  float frequency_penalty = 0.0f;  // [-2, 2]; 0 = off
  std::uint64_t seed = 0;          // any value; equal seeds give equal draws
  std::vector<LogitBias> logit_bias;  // applied in order; an id listed twice gets both biases

  // Throws kiln::Error naming the first parameter outside its allowed range.
  void validate() const;
};

// One survivor of the chain and its probability after temperature and softmax.
struct TokenProb {
  int id;
  float prob;
};

class Sampler {
 public:
  // Validates params (throws kiln::Error) and seeds the RNG with params.seed.
  explicit Sampler(const SamplerParams& params);

  // Picks the next token. logits is (n_vocab) floats; history holds the token ids seen so far
  // (oldest first), each in [0, n_vocab): the caller decides whether the prompt counts. The
  // penalties read history; nothing else does. Throws kiln::Error on an empty vocabulary, a
  // history id or logit_bias id outside it, or logits that are all -inf (before or after the
  // logit bias).
  int sample(std::span<const float> logits, std::span<const int> history);

  // The distribution sample() would draw from for the same (logits, history), without drawing:
  // the final candidate set with its probabilities (summing to 1; one entry with probability 1
  // when the chain is greedy), in no particular order, valid until the next call. The RNG is not
  // touched. Speculative decoding compares the draft's and the target's distributions through it.
  std::span<const TokenProb> distribution(std::span<const float> logits, std::span<const int> history);

  // The next uniform double in [0, 1) of the sampler's RNG stream (the one sample() draws with).
  double uniform();

  // The final candidate set of the last sample() call with the probabilities the draw used
  // (they sum to 1; one entry with probability 1 after a greedy pick), in no particular order.
  // Valid until the next sample() call.
  std::span<const TokenProb> candidates() const { return probs_; }

  // Restarts the RNG stream as if the sampler had just been built with this seed.
  void reseed(std::uint64_t seed);

  const SamplerParams& params() const { return params_; }

 private:
  struct Candidate {
    int id;
    float logit;
    float prob;  // scratch: the temperature-1 probability while top-p runs
  };

  void apply_logit_bias();
  void apply_penalties(std::span<const int> history);
  int pick_greedy() const;
  float max_logit() const;
  using CandidateIt = std::vector<Candidate>::iterator;
  void select_best(CandidateIt begin, CandidateIt end, std::size_t k);
  void keep_top_k(int k);
  void keep_typical_p(float p);
  void keep_top_p(float p);
  void keep_min_p(float min_p);
  // Runs the chain up to the final candidate set; returns a token when the chain is greedy
  // (probs_ then holds it alone), -1 when the candidates still need temperature and a draw.
  int run_chain(std::span<const float> logits, std::span<const int> history);
  // probs_ = softmax(candidates / temperature); returns 1 / the float sum it normalized by.
  double fill_probs(float temperature);
  int draw(float temperature);

  SamplerParams params_;
  std::mt19937_64 rng_;
  // Reused between calls so that a 128k vocabulary costs no allocation per token.
  std::vector<Candidate> candidates_;  // (n_vocab) at the start of a call, shrinks per stage
  std::vector<Candidate> heap_;        // (k) selection scratch for small k
  std::vector<float> weights_;         // (n_survivors) softmax scratch
  std::vector<TokenProb> probs_;       // (n_survivors) probabilities of the final set
  std::vector<int> window_count_;      // (n_vocab) occurrences in the repeat window, kept zeroed
  std::vector<int> history_count_;     // (n_vocab) occurrences in the whole history, kept zeroed
  std::vector<int> touched_;           // ids whose counts are non-zero during a call
  // (n_survivors) typical-p scratch: each candidate's distance from the entropy, its probability
  // and its index in candidates_.
  struct TypicalRank {
    double distance;
    double prob;
    std::uint32_t index;
  };
  std::vector<TypicalRank> typical_;
};

}  // namespace kiln
