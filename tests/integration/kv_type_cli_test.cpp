// --kv-type on every command that runs a model (run, chat, bench, serve, eval perplexity and
// kld, with kld's --base-kv-type): the same help line everywhere, the quantized types accepted
// and reported, and a bad name or a model whose heads are not whole blocks refused in one line.
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "test_support.h"

namespace kiln {
namespace {

using test::expect_clean_error;
using test::run_kiln;

std::string default_model() { return std::string(std::getenv("KILN_SOURCE_DIR")) + "/models/kiln-default.gguf"; }

std::string kv_type_help(const std::string& help, const std::string& flag) {
  std::stringstream ss(help);
  for (std::string line; std::getline(ss, line);)
    if (const std::size_t at = line.find(flag + " TYPE"); at != std::string::npos) return line.substr(at + flag.size());
  return "";
}

TEST(KvTypeCli, EveryModelCommandTakesTheSameFlag) {
  const std::string run_help = kv_type_help(run_kiln("run --help").out, "--kv-type");
  EXPECT_NE(run_help.find("q8_0 (34/64 of f16's bytes per position)"), std::string::npos) << run_help;
  for (const char* sub : {"chat", "bench", "serve", "eval perplexity"})
    EXPECT_EQ(kv_type_help(run_kiln(std::string(sub) + " --help").out, "--kv-type"), run_help) << sub;
  const std::string kld = run_kiln("eval kld --help").out;
  EXPECT_NE(kv_type_help(kld, "--kv-type").find("of MODEL"), std::string::npos) << kld;
  EXPECT_NE(kv_type_help(kld, "--base-kv-type").find("of the base"), std::string::npos) << kld;
}

TEST(KvTypeCli, BadTypesAreRefusedByName) {
  if (!std::getenv("KILN_SOURCE_DIR")) GTEST_SKIP() << "KILN_SOURCE_DIR is not set (run through ctest)";
  const std::string m = default_model();
  expect_clean_error(run_kiln("run " + m + " -p hi --kv-type q5_0"), "--kv-type 'q5_0' is not a KV cache type");
  expect_clean_error(run_kiln("bench " + m + " -p 8 -n 2 --kv-type int8"), "--kv-type 'int8'");
  expect_clean_error(run_kiln("bench " + m + " --parallel 1 -p 8 -n 2 --kv-type bf16"), "--kv-type 'bf16'");
  expect_clean_error(run_kiln("chat " + m + " --kv-type f8 </dev/null"), "--kv-type 'f8'");
  expect_clean_error(run_kiln("serve " + m + " --port 0 --kv-type q4_k"), "--kv-type 'q4_k'");
  expect_clean_error(run_kiln("eval perplexity " + m + " --tokens /dev/null --kv-type x"), "--kv-type 'x'");
  expect_clean_error(run_kiln("eval kld " + m + " --base " + m + " --tokens /dev/null --base-kv-type y"),
                     "--base-kv-type 'y'");
}

TEST(KvTypeCli, HeadsThatAreNotWholeBlocksAreRefused) {
  KILN_REQUIRE_DATA(stories, "stories260K.bin");  // head size 8
  expect_clean_error(run_kiln("run " + stories + " --tokens 1,2,3 -n 2 --kv-type q8_0"),
                     "needs a head size that is a multiple of 32; this model's is 8");
  EXPECT_EQ(run_kiln("run " + stories + " --tokens 1,2,3 -n 2 --kv-type f16").code, 0);
}

TEST(KvTypeCli, BenchAndEvalRunWithAQuantizedCache) {
  if (!std::getenv("KILN_SOURCE_DIR")) GTEST_SKIP() << "KILN_SOURCE_DIR is not set (run through ctest)";
  const std::string m = default_model();
  const test::KilnRun f16 = run_kiln("bench " + m + " -p 32 -n 4 -r 1 --no-bandwidth --json -q", false);
  const test::KilnRun q8 = run_kiln("bench " + m + " -p 32 -n 4 -r 1 --no-bandwidth --json -q --kv-type q8_0", false);
  ASSERT_EQ(f16.code, 0) << f16.out;
  ASSERT_EQ(q8.code, 0) << q8.out;
  const auto jf = nlohmann::json::parse(f16.out), jq = nlohmann::json::parse(q8.out);
  EXPECT_EQ(jq["kv_cache_bytes"].get<std::uint64_t>() * 64, jf["kv_cache_bytes"].get<std::uint64_t>() * 34);
  EXPECT_EQ(jf["kv_type"], "f16");
  EXPECT_EQ(jq["kv_type"], "q8_0");

  // The same model against itself: only the cache type differs, so the divergence is the cache's.
  const std::string tokens = test::temp_dir() + "/kv_type_tokens.txt";
  std::string ids;
  for (int i = 0; i < 600; ++i) ids += std::to_string(32 + (i * 37) % 200) + " ";
  test::write_file(tokens, ids);
  const test::KilnRun kld = run_kiln("eval kld " + m + " --base " + m + " --tokens " + tokens +
                                         " -c 128 --kv-type q8_0 --json -q",
                                     false);
  ASSERT_EQ(kld.code, 0) << kld.out;
  const auto j = nlohmann::json::parse(kld.out);
  EXPECT_EQ(j["kv_type"], "q8_0");
  EXPECT_EQ(j["base_kv_type"], "f16");
  EXPECT_GT(j["kld_mean"].get<double>(), 0.0);
  EXPECT_LT(j["kld_mean"].get<double>(), 1e-2);
}

}  // namespace
}  // namespace kiln
