// Vocabularies written as Hugging Face tokenizer.json + tokenizer_config.json and read back:
// the Llama-2 SentencePiece vocabulary (byte-fallback layout, merges derived from scores, scores
// derived back from merge ranks) and the Llama-3.2 byte-level vocabulary must encode 200 KB of
// War and Peace and hard strings to exactly the ids of the original; the pre-tokenizer name is
// recognized from spelled-out expressions; malformed byte-fallback files are one-line errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "bpe_test_support.h"
#include "core/error.h"
#include "tokenizer/hf_tokenizer_json.h"
#include "tokenizer/hf_tokenizer_writer.h"
#include "tokenizer/load_tokenizer.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/spm_merges.h"
#include "tokenizer/spm_model_file.h"
#include "tokenizer_test_support.h"

namespace kiln {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using Ids = std::vector<std::int32_t>;

const std::vector<std::string> kHardStrings = {
    "Hello world",
    " leading space",
    "trailing space ",
    "   several   spaces\t\ttabs\n\nnewlines\r\n",
    "1234567890 3.14159 1,000,000 0x1F 2024-06-01",
    "caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m \xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82 "
    "\xE4\xB8\xAD\xE6\x96\x87 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xED\x95\x9C\xEA\xB5\xAD\xEC\x96\xB4",
    "emoji \xF0\x9F\xA6\x99\xF0\x9F\x94\xA5\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD \xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91"
    "\xA9\xE2\x80\x8D\xF0\x9F\x91\xA7",
    "\xE1\x9A\xA0\xE1\x9B\x87\xE1\x9A\xBB \xF0\x90\x8D\x88 \xE2\x80\x83"
    "em\xE2\x80\x83"
    "space \xC2\xA0"
    "nbsp",
    "<s>not special</s> <unk> <|begin_of_text|>x<|eot_id|>",
    "I'm sure it's they've we'll you'd DON'T",
    "\xE2\x96\x81"
    "already\xE2\x96\x81"
    "has\xE2\x96\x81"
    "the symbol",
    "",
    " ",
    "a",
};

// The first ~200 KB of War and Peace (cut at a line end), or "" when the file is absent.
std::string war_and_peace_head() {
  const std::string path = test::data_file("war-and-peace.txt");
  if (path.empty()) return "";
  std::ifstream in(path, std::ios::binary);
  std::string text(200 * 1024, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  text.resize(text.rfind('\n') + 1);
  return text;
}

// Writes both files of `vocab` into `dir` under the test's temp folder and loads the folder.
Vocab written_and_read(const Vocab& vocab, const std::string& dir, const HfTokenizerConfig& config = {}) {
  const std::string path = test::temp_dir() + "/" + dir;
  std::filesystem::create_directories(path);
  write_hf_tokenizer_files(vocab, config, path);
  return load_vocab_file(path);
}

void expect_same_vocabulary(const Vocab& a, const Vocab& b) {
  EXPECT_EQ(b.model, a.model);
  EXPECT_EQ(b.tokens, a.tokens);
  EXPECT_EQ(b.types, a.types);
  EXPECT_EQ(b.bos_id, a.bos_id);
  EXPECT_EQ(b.eos_id, a.eos_id);
  EXPECT_EQ(b.unk_id, a.unk_id);
  EXPECT_EQ(b.pad_id, a.pad_id);
  EXPECT_EQ(b.add_bos, a.add_bos);
  EXPECT_EQ(b.add_eos, a.add_eos);
  EXPECT_EQ(b.add_space_prefix, a.add_space_prefix);
}

// Every hard string and the book encode to the same ids in all four BOS / special modes.
void expect_same_encodings(const Tokenizer& original, const Tokenizer& reread) {
  std::vector<std::string> texts = kHardStrings;
  const std::string book = war_and_peace_head();
  if (!book.empty()) {
    texts.push_back(book);
    std::istringstream lines(book.substr(0, 20000));
    for (std::string line; std::getline(lines, line);) texts.push_back(line);
  }
  std::size_t compared = 0;
  for (const std::string& text : texts) {
    for (bool bos : {false, true}) {
      for (bool special : {false, true}) {
        const Ids want = original.encode(text, bos, special);
        const Ids got = reread.encode(text, bos, special);
        ASSERT_EQ(got, want) << "text (" << text.size() << " bytes): " << text.substr(0, 80) << " bos " << bos
                             << " special " << special;
        ++compared;
      }
    }
  }
  EXPECT_GT(compared, 4 * kHardStrings.size());
  if (book.empty())
    GTEST_SKIP() << "shared data file war-and-peace.txt not found: hard strings only (set KILN_DATA_DIR)";
}

TEST(HfTokenizerFiles, Llama2SentencePieceRoundTripEncodesIdentically) {
  KILN_REQUIRE_DATA(model_path, "llama2-tokenizer.model");
  const Vocab original = load_spm_model_file(model_path);
  const Vocab reread = written_and_read(original, "llama2");
  expect_same_vocabulary(original, reread);
  EXPECT_EQ(reread.pre, "");
  EXPECT_TRUE(reread.merges.empty());
  // Merge-produced pieces keep the original order of scores.
  const auto original_tok = make_tokenizer(original);
  const auto reread_tok = make_tokenizer(reread);
  expect_same_encodings(*original_tok, *reread_tok);
}

TEST(HfTokenizerFiles, Llama2LayoutIsWhatLlamaTokenizerFastWrites) {
  KILN_REQUIRE_DATA(model_path, "llama2-tokenizer.model");
  const Vocab vocab = load_spm_model_file(model_path);
  const HfTokenizerFiles files =
      hf_tokenizer_files(vocab, {.chat_template = "{{ messages }}", .model_max_length = 4096});
  const json root = json::parse(files.tokenizer_json);
  const json& model = root["model"];
  EXPECT_EQ(model["type"], "BPE");
  EXPECT_EQ(model["byte_fallback"], true);
  EXPECT_EQ(model["fuse_unk"], true);
  EXPECT_EQ(model["unk_token"], "<unk>");
  EXPECT_EQ(model["vocab"].size(), 32000u);
  EXPECT_EQ(model["vocab"]["<0x0A>"], 13);
  // Llama-2's first merges as transformers derives them: the highest-scoring pieces first.
  ASSERT_GE(model["merges"].size(), 3u);
  EXPECT_EQ(model["merges"][0], "\xE2\x96\x81 t");
  EXPECT_EQ(model["merges"][1], "e r");
  EXPECT_EQ(model["merges"][2], "i n");
  EXPECT_EQ(root["normalizer"]["normalizers"][0]["type"], "Prepend");
  EXPECT_EQ(root["normalizer"]["normalizers"][1]["content"], "\xE2\x96\x81");
  EXPECT_TRUE(root["pre_tokenizer"].is_null());
  EXPECT_EQ(root["decoder"]["decoders"].size(), 4u);
  EXPECT_EQ(root["post_processor"]["single"][0]["SpecialToken"]["id"], "<s>");
  ASSERT_EQ(root["added_tokens"].size(), 3u);
  EXPECT_EQ(root["added_tokens"][1]["content"], "<s>");
  EXPECT_EQ(root["added_tokens"][1]["special"], true);

  const json config = json::parse(files.tokenizer_config_json);
  EXPECT_EQ(config["tokenizer_class"], "LlamaTokenizerFast");
  EXPECT_EQ(config["bos_token"], "<s>");
  EXPECT_EQ(config["eos_token"], "</s>");
  EXPECT_EQ(config["unk_token"], "<unk>");
  EXPECT_TRUE(config["pad_token"].is_null());
  EXPECT_EQ(config["add_bos_token"], true);
  EXPECT_EQ(config["add_eos_token"], false);
  EXPECT_EQ(config["chat_template"], "{{ messages }}");
  EXPECT_EQ(config["model_max_length"], 4096);
  EXPECT_EQ(config["added_tokens_decoder"]["2"]["content"], "</s>");
}

TEST(HfTokenizerFiles, SentencePieceWithoutDummyPrefixAndWithEos) {
  KILN_REQUIRE_DATA(model_path, "llama2-tokenizer.model");
  Vocab vocab = load_spm_model_file(model_path);
  vocab.add_space_prefix = false;
  vocab.add_eos = true;
  vocab.pad_id = 0;
  const Vocab reread = written_and_read(vocab, "llama2_no_prefix");
  expect_same_vocabulary(vocab, reread);
  const auto a = make_tokenizer(vocab);
  const auto b = make_tokenizer(reread);
  for (const std::string& text : kHardStrings) EXPECT_EQ(b->encode(text, true, true), a->encode(text, true, true));
}

TEST(HfTokenizerFiles, Llama32ByteLevelRoundTripEncodesIdentically) {
  KILN_REQUIRE_LLAMA32_TOKENIZER(original);
  const Vocab reread =
      written_and_read(original->vocab(), "llama32", {.chat_template = "", .model_max_length = 131072});
  expect_same_vocabulary(original->vocab(), reread);
  EXPECT_EQ(reread.merges, original->vocab().merges);
  EXPECT_TRUE(reread.ignore_merges);
  EXPECT_EQ(pretokenizer_name_for(reread.pre_patterns, reread.ignore_merges), "llama-bpe");
  const auto reread_tok = make_tokenizer(reread);
  expect_same_encodings(*original, *reread_tok);
}

TEST(HfTokenizerFiles, MergesWithSpacesAreWrittenAsPairs) {
  Vocab v;
  v.model = "gpt2";
  v.pre = "gpt-2";
  for (int b = 0; b < 256; ++b) v.tokens.push_back(fmt::format("<{}>", b));
  v.tokens.push_back("a b");
  v.tokens.push_back("a bc");
  v.merges = {{"a b", "c"}};
  v.tokens.push_back("c");
  v.finalize("test");
  const json root = json::parse(hf_tokenizer_files(v).tokenizer_json);
  EXPECT_EQ(root["model"]["merges"][0], json::array({"a b", "c"}));
  EXPECT_EQ(read_hf_tokenizer_json(hf_tokenizer_files(v).tokenizer_json, "", "t").merges, v.merges);
}

TEST(HfTokenizerFiles, OtherModelsAreRefused) {
  Vocab v;
  v.model = "bert";
  v.tokens = {"a"};
  v.finalize("bert vocab");
  try {
    hf_tokenizer_files(v);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("bert vocab: tokenizer.ggml.model = \"bert\" cannot be written"));
  }
}

TEST(PretokenizerName, KnownExpressionsGetLlamaCppsName) {
  const auto spec = [](const char* name) { return *find_pretokenizer_spec(name); };
  EXPECT_EQ(pretokenizer_name_for(spec("llama-bpe").patterns, true), "llama-bpe");
  EXPECT_EQ(pretokenizer_name_for(spec("llama-bpe").patterns, false), "dbrx");
  EXPECT_EQ(pretokenizer_name_for(spec("qwen2").patterns, false), "qwen2");
  EXPECT_EQ(pretokenizer_name_for(spec("tekken").patterns, true), "tekken");
  EXPECT_EQ(pretokenizer_name_for(spec("deepseek-llm").patterns, false), "deepseek-llm");
  // Hugging Face's ByteLevel(use_regex) is GPT-2's expression in full; llama.cpp's is shorter.
  EXPECT_EQ(pretokenizer_name_for({kGpt2Pattern}, false), "gpt-2");
  EXPECT_EQ(pretokenizer_name_for(spec("smollm").patterns, false), "smollm");
  EXPECT_EQ(pretokenizer_name_for({R"(\p{N})", kGpt2Pattern}, false), "smollm");
  EXPECT_EQ(pretokenizer_name_for({"[0-9]", kGpt2Pattern}, false), "");  // ASCII digits only: not \p{N}
  EXPECT_EQ(pretokenizer_name_for({R"(\s+)"}, false), "");
  EXPECT_EQ(pretokenizer_name_for({}, false), "");
  EXPECT_EQ(pretokenizer_name_for(spec("qwen2").patterns, true), "");
}

TEST(SpmMerges, ScoresFromMergesFollowTheRanks) {
  Vocab v = test::make_vocab({{"a", -5, TokenType::Normal},
                              {"b", -6, TokenType::Normal},
                              {"ab", -1, TokenType::Normal},
                              {"ba", -2, TokenType::Normal},
                              {"aba", -3, TokenType::Normal}});
  const auto merges = spm_merges_from_scores(v);
  // "ab" (score -1), "ba" (-2), then "aba" split both ways, ordered by the left piece's id.
  ASSERT_EQ(merges.size(), 4u);
  EXPECT_EQ(merges[0], (std::pair<std::string, std::string>{"a", "b"}));
  EXPECT_EQ(merges[1], (std::pair<std::string, std::string>{"b", "a"}));
  EXPECT_EQ(merges[2], (std::pair<std::string, std::string>{"a", "ba"}));
  EXPECT_EQ(merges[3], (std::pair<std::string, std::string>{"ab", "a"}));
  v.merges = merges;
  const std::vector<float> scores = spm_scores_from_merges(v, "test");
  EXPECT_EQ(scores[5], 0.0f);   // "ab": rank 0
  EXPECT_EQ(scores[6], -1.0f);  // "ba": rank 1
  EXPECT_EQ(scores[7], -2.0f);  // "aba": its first merge, rank 2
  EXPECT_EQ(scores[3], -7.0f);  // "a": no merge makes it: -(4 merges + id 3)
  EXPECT_EQ(scores[1], 0.0f);   // control
  v.merges.emplace_back("b", "b");
  try {
    spm_scores_from_merges(v, "test");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr("test: model.merges[4] = \"b b\" merges into \"bb\", which is not a token"));
  }
}

std::string json_error(const std::string& text, const std::string& config = "") {
  try {
    make_tokenizer(read_hf_tokenizer_json(text, config, "tok.json"));
  } catch (const Error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
    return message;
  }
  ADD_FAILURE() << "no error for " << text;
  return "";
}

TEST(HfTokenizerFiles, ByteFallbackTokenizerJsonReadsAsSentencePiece) {
  // A hand-written Llama-style file, Metaspace spelling: a, b, ab, ▁ab; merges a b, ▁ ab.
  const std::string sp = "\xE2\x96\x81";
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}, {"<0x41>", 3}, {"a", 4},
                {"b", 5},     {"ab", 6},  {sp, 7},     {sp + "ab", 8}};
  json root = {
      {"added_tokens", json::array({{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                    {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                    {{"id", 2}, {"content", "</s>"}, {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", sp}, {"prepend_scheme", "first"}, {"split", false}}},
      {"model",
       {{"type", "BPE"},
        {"byte_fallback", true},
        {"unk_token", "<unk>"},
        {"vocab", vocab},
        {"merges", json::array({"a b", sp + " ab"})}}}};
  const Vocab v = read_hf_tokenizer_json(root.dump(), R"({"add_bos_token": true, "bos_token": "<s>"})", "tok.json");
  EXPECT_EQ(v.model, "llama");
  EXPECT_EQ(v.unk_id, 0);
  EXPECT_EQ(v.bos_id, 1);
  EXPECT_EQ(v.eos_id, 2);
  EXPECT_TRUE(v.add_bos);
  EXPECT_TRUE(v.add_space_prefix);
  EXPECT_EQ(v.type(0), TokenType::Unknown);
  EXPECT_EQ(v.type(1), TokenType::Control);
  EXPECT_EQ(v.type(3), TokenType::Byte);
  EXPECT_EQ(v.type(4), TokenType::Normal);
  EXPECT_GT(v.scores[6], v.scores[8]);  // "ab" (rank 0) merges before "▁ab" (rank 1)
  const auto tok = make_tokenizer(v);
  EXPECT_EQ(tok->encode("ab ab", true, false), (Ids{1, 8, 8}));
  EXPECT_EQ(tok->encode("A", false, false), (Ids{7, 3}));

  root["pre_tokenizer"]["split"] = true;
  EXPECT_THAT(json_error(root.dump()), HasSubstr("tok.json: pre_tokenizer Metaspace with split = true"));
  root["pre_tokenizer"] = nullptr;
  EXPECT_THAT(json_error(root.dump()), HasSubstr("needs spaces as"));
  root["normalizer"] = {{"type", "NFKC"}};
  EXPECT_THAT(json_error(root.dump()), HasSubstr("tok.json: normalizer.type = \"NFKC\" is not supported"));
  root["normalizer"] = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", "_"}}})}};
  EXPECT_THAT(json_error(root.dump()), HasSubstr("normalizer.normalizers[0].prepend is not"));
  root["normalizer"] = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", sp}};
  EXPECT_FALSE(read_hf_tokenizer_json(root.dump(), "", "tok.json").add_space_prefix);
  root["model"]["unk_token"] = "<nope>";
  EXPECT_THAT(json_error(root.dump()), HasSubstr("tok.json: model.unk_token = \"<nope>\" is not a token"));
  root["model"]["unk_token"] = "<unk>";
  root["model"]["merges"] = json::array({"a c"});
  EXPECT_THAT(json_error(root.dump()), HasSubstr("model.merges[0] = \"a c\" names \"c\", which is not a token"));
  root["model"]["merges"] = json::array({"b a"});
  EXPECT_THAT(json_error(root.dump()), HasSubstr("merges into \"ba\", which is not a token"));
  root["model"]["merges"] = json::array();
  root["model"]["vocab"]["x"] = -3;
  EXPECT_THAT(json_error(root.dump()), HasSubstr("model.vocab[\"x\"] = -3 is not a valid token id"));
  root["model"]["vocab"].erase("x");
  root["added_tokens"].push_back({{"id", 1 << 29}, {"content", "<big>"}});
  EXPECT_THAT(json_error(root.dump()), HasSubstr("added_tokens[3].id = 536870912 is not a valid token id"));
  root["added_tokens"].erase(3);
  EXPECT_THAT(json_error(root.dump(), R"({"eos_token": "<nope>"})"),
              HasSubstr("tokenizer_config.json eos_token = \"<nope>\" is not a token"));
  EXPECT_THAT(json_error(root.dump(), "{"), HasSubstr("tok.json: tokenizer_config.json is not valid JSON"));
  root["model"].erase("vocab");
  EXPECT_THAT(json_error(root.dump()), HasSubstr("tok.json: model.vocab is missing or not an object"));
  EXPECT_THAT(json_error(R"({"model": {"type": "BPE", "byte_fallback": true, "vocab": {"a": 0}, "merges": []}})"),
              HasSubstr("needs spaces as"));
}

}  // namespace
}  // namespace kiln
