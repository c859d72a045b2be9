#include "tokenizer/spm_merges.h"

#include <algorithm>

#include "core/error.h"

namespace kiln {

std::vector<std::pair<std::string, std::string>> spm_merges_from_scores(const Vocab& vocab) {
  struct Rule {
    std::int32_t merged, left, right;
  };
  std::vector<Rule> rules;
  for (std::int32_t id = 0; id < vocab.size(); ++id) {
    const std::string_view piece = vocab.tokens[static_cast<std::size_t>(id)];
    const std::size_t first = rules.size();
    for (std::size_t at = 1; at < piece.size(); ++at) {
      // Split only between characters (a continuation byte is 10xxxxxx), as Python slices strings.
      if ((static_cast<unsigned char>(piece[at]) & 0xC0) == 0x80) continue;
      const std::int32_t left = vocab.find(piece.substr(0, at));
      const std::int32_t right = vocab.find(piece.substr(at));
      if (left >= 0 && right >= 0) rules.push_back({id, left, right});
    }
    std::sort(rules.begin() + static_cast<std::ptrdiff_t>(first), rules.end(),
              [](const Rule& a, const Rule& b) { return a.left != b.left ? a.left < b.left : a.right < b.right; });
  }
  const auto score = [&](const Rule& r) { return vocab.scores[static_cast<std::size_t>(r.merged)]; };
  std::stable_sort(rules.begin(), rules.end(), [&](const Rule& a, const Rule& b) { return score(a) > score(b); });

  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(rules.size());
  for (const Rule& r : rules) {
    merges.emplace_back(vocab.tokens[static_cast<std::size_t>(r.left)],
                        vocab.tokens[static_cast<std::size_t>(r.right)]);
  }
  return merges;
}

std::vector<float> spm_scores_from_merges(const Vocab& vocab, std::string_view source) {
  const auto n_merges = static_cast<std::int64_t>(vocab.merges.size());
  std::vector<float> scores(vocab.tokens.size(), 0.0f);
  std::vector<std::uint8_t> produced(vocab.tokens.size(), 0);
  for (std::int64_t rank = 0; rank < n_merges; ++rank) {
    const auto& [left, right] = vocab.merges[static_cast<std::size_t>(rank)];
    for (const std::string* side : {&left, &right}) {
      KILN_CHECK(vocab.find(*side) >= 0, "{}: model.merges[{}] = \"{} {}\" names \"{}\", which is not a token", source,
                 rank, left, right, *side);
    }
    const std::int32_t merged = vocab.find(left + right);
    KILN_CHECK(merged >= 0, "{}: model.merges[{}] = \"{} {}\" merges into \"{}{}\", which is not a token", source, rank,
               left, right, left, right);
    const auto i = static_cast<std::size_t>(merged);
    if (produced[i] == 0) {
      produced[i] = 1;
      scores[i] = -static_cast<float>(rank);
    }
  }
  for (std::int32_t id = 0; id < vocab.size(); ++id) {
    const auto i = static_cast<std::size_t>(id);
    const TokenType type = vocab.type(id);
    if (type != TokenType::Normal && type != TokenType::Unused) {
      scores[i] = 0.0f;  // sentencepiece's score for pieces that merges never produce
    } else if (produced[i] == 0) {
      scores[i] = -static_cast<float>(n_merges + id);
    }
  }
  return scores;
}

}  // namespace kiln
