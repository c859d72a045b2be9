// kiln and llama.cpp (the npm package node-llama-cpp@3.21.1, prebuilt CPU binaries) must agree
// on the tokenization of a prompt and on the greedy continuation, for the same GGUF file: the
// Llama-2 test model, and kiln's default model (trained and written by kiln, with the byte-level
// BPE vocabulary kiln trained), that model pruned by kiln prune, and Hugging Face-layout checkpoints that kiln convert wrote as GGUFs.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <sys/stat.h>

#include "test_support.h"

namespace kiln {
namespace {

std::vector<int> parse_ids(const std::string& line) {
  std::vector<int> ids;
  std::stringstream ss(line);
  int v;
  while (ss >> v) ids.push_back(v);
  return ids;
}

void expect_same_greedy_tokens(const std::string& model, const std::string& prompt) {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  struct stat st {};
  if (::stat((std::string(src) + "/node_modules/node-llama-cpp").c_str(), &st) != 0)
    GTEST_SKIP() << "node-llama-cpp is not installed (run scripts/install-deps.sh)";
  const int n = 24;

  std::string out;
  const std::string node_cmd = "cd " + test::shell_quote(src) + " && node tests/interop/llamacpp_greedy.mjs " +
                               test::shell_quote(model) + " --prompt " + test::shell_quote(prompt) + " -n " + std::to_string(n);
  ASSERT_EQ(test::run_command(node_cmd, &out), 0) << node_cmd << "\n" << out;
  const nlohmann::json ref = nlohmann::json::parse(out);
  const std::vector<int> ref_prompt = ref["prompt_tokens"].get<std::vector<int>>();
  const std::vector<int> ref_tokens = ref["tokens"].get<std::vector<int>>();

  const std::string kiln_cmd = test::kiln_binary() + " run " + test::shell_quote(model) + " -p " + test::shell_quote(prompt) +
                               " -n " + std::to_string(n) + " --temp 0 --ignore-eos --echo --print-ids -q -t 2";
  ASSERT_EQ(test::run_command(kiln_cmd, &out), 0) << kiln_cmd << "\n" << out;
  const std::vector<int> ids = parse_ids(out);
  ASSERT_EQ(ids.size(), ref_prompt.size() + ref_tokens.size()) << out;
  const std::vector<int> kiln_prompt(ids.begin(), ids.begin() + static_cast<long>(ref_prompt.size()));
  const std::vector<int> kiln_tokens(ids.begin() + static_cast<long>(ref_prompt.size()), ids.end());
  EXPECT_EQ(kiln_prompt, ref_prompt) << "prompt tokenization differs";
  EXPECT_EQ(kiln_tokens, ref_tokens) << "greedy continuation differs";
}

class GreedyVsLlamaCpp : public ::testing::TestWithParam<std::string> {};

TEST_P(GreedyVsLlamaCpp, SameTokensAsLlamaCpp) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  expect_same_greedy_tokens(model, GetParam());
}

class DefaultModelVsLlamaCpp : public ::testing::TestWithParam<std::string> {};

TEST_P(DefaultModelVsLlamaCpp, SameTokensAsLlamaCpp) {
  const char* src = std::getenv("KILN_SOURCE_DIR");
  ASSERT_NE(src, nullptr);
  expect_same_greedy_tokens(std::string(src) + "/models/kiln-default.gguf", GetParam());
}

// Hugging Face-layout checkpoints written by PyTorch (tests/interop/hf_llama_checkpoint.py) and
// converted by kiln convert: llama.cpp loads the GGUF and continues as kiln does.
class ConvertedVsLlamaCpp : public ::testing::TestWithParam<std::pair<std::string, std::string>> {};

TEST_P(ConvertedVsLlamaCpp, SameTokensAsLlamaCpp) {
  KILN_REQUIRE_DATA(tok, "llama2-tokenizer.model");
  const auto& [arch, weights] = GetParam();
  const std::string dir = test::temp_dir() + "/hf_" + arch + "_" + weights;
  std::string out;
  ASSERT_EQ(test::run_command("rm -rf " + dir + " && mkdir -p " + dir, &out), 0);
  const int code = test::run_command("/usr/bin/python3 " + std::string(std::getenv("KILN_SOURCE_DIR")) +
                                         "/tests/interop/hf_llama_checkpoint.py " + dir + " " + arch + " " + weights +
                                         " " + tok,
                                     &out, true);
  if (code == 77 * 256) GTEST_SKIP() << "PyTorch (python3-torch) is not importable";
  ASSERT_EQ(code, 0) << out;
  const test::KilnRun r = test::run_kiln("convert " + dir + " " + dir + "/model.gguf --type F32 --progress none");
  ASSERT_EQ(r.code, 0) << r.out;
  expect_same_greedy_tokens(dir + "/model.gguf", "Once upon a time, in a land far away,");
}

// kiln prune's output (kiln's default model with half its KV groups and FFN channels and two of
// its six layers removed, chosen on calibration text): llama.cpp loads it and continues as kiln does.
TEST(PrunedVsLlamaCpp, SameTokensAsLlamaCpp) {
  KILN_REQUIRE_DATA(text, "war-and-peace.txt");
  const std::string src = std::getenv("KILN_SOURCE_DIR");
  const std::string out = test::temp_dir() + "/pruned-default.gguf";
  const test::KilnRun r = test::run_kiln("prune " + test::shell_quote(src + "/models/kiln-default.gguf") + " -o " +
                                         test::shell_quote(out) + " --calib " + test::shell_quote(text) +
                                         " --chunks 4 -c 256 --heads-ratio 0.5 --ffn-ratio 0.5 --drop-layers 2 -q -t 2");
  ASSERT_EQ(r.code, 0) << r.out;
  expect_same_greedy_tokens(out, "The prince said");
  expect_same_greedy_tokens(out, "Natasha looked at him");
}

INSTANTIATE_TEST_SUITE_P(Checkpoints, ConvertedVsLlamaCpp,
                         ::testing::Values(std::make_pair("llama", "safetensors"), std::make_pair("qwen2", "torch")));

INSTANTIATE_TEST_SUITE_P(Prompts, DefaultModelVsLlamaCpp,
                         ::testing::Values("The prince said", "ROMEO:", "It was in July, 1805, and",
                                           "Natasha looked at him", "  leading spaces and\ttabs\nand newlines"));

INSTANTIATE_TEST_SUITE_P(Prompts, GreedyVsLlamaCpp,
                         ::testing::Values("Hello world", "The quick brown fox jumps over the lazy dog.",
                                           "Once upon a time, in a land far away,", "1 2 3 4 5 6 7 8 9 10",
                                           "  leading spaces and\ttabs\nand newlines"));

}  // namespace
}  // namespace kiln
