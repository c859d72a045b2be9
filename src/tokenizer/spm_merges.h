#pragma once
// SentencePiece BPE ranks its pieces by score (the pair whose concatenation has the highest
// score merges first); Hugging Face's BPE ranks merge rules (the lowest rank merges first).
// These turn one into the other, so that a "llama" vocabulary can be written as a
// tokenizer.json and read back to a vocabulary that encodes the same text to the same ids.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tokenizer/vocab.h"

namespace kiln {

// The merge rules Hugging Face's converter (transformers' SentencePieceExtractor) derives from a
// SentencePiece vocabulary: for every piece, each split at a character boundary into two pieces
// that are both in the vocabulary (a piece's splits ordered by left id, then right id), then
// all of them ordered by the merged piece's score, highest first, ties in id order.
std::vector<std::pair<std::string, std::string>> spm_merges_from_scores(const Vocab& vocab);

// Scores for `vocab.tokens` that make SentencePiece merge in the order of `vocab.merges`: a
// normal piece that a merge produces scores -(rank of the first merge producing it); other
// normal pieces score below every merge, -(number of merges + id); control, unknown, byte and
// user-defined pieces score 0, as sentencepiece gives them. Throws kiln::Error naming `source`
// when a merge names a piece that is not in the vocabulary or merges into one that is not.
std::vector<float> spm_scores_from_merges(const Vocab& vocab, std::string_view source);

}  // namespace kiln
