// `kiln inspect` end to end: text and JSON reports of both formats, and one-line errors.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "test_support.h"

namespace kiln {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string inspect(const std::string& args, int* exit_code, bool merge_stderr = false) {
  std::string out;
  *exit_code = test::run_command(test::kiln_binary() + " inspect " + args, &out, merge_stderr);
  return out;
}

TEST(InspectCli, PrintsTheTinyLlamaGguf) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  int rc = -1;
  const std::string out = inspect(path, &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_THAT(out, HasSubstr("GGUF v3 (alignment 32"));
  EXPECT_THAT(out, HasSubstr("metadata (18 keys)"));
  EXPECT_THAT(out, HasSubstr("\"llama\""));
  EXPECT_THAT(out, HasSubstr("[string x 32000] \"<unk>\", \"<s>\", \"</s>\""));
  EXPECT_THAT(out, HasSubstr("1e-05"));
  EXPECT_THAT(out, HasSubstr("tensors (12"));
  EXPECT_THAT(out, testing::ContainsRegex("token_embd.weight +\\[8, 32000\\] +f16 +512000"));
  EXPECT_THAT(out, HasSubstr("totals:  12 tensors, 513048 parameters, 1026144 bytes"));
  EXPECT_THAT(out, HasSubstr("16.001 bits per weight"));
}

TEST(InspectCli, JsonForTheTinyLlamaGguf) {
  KILN_REQUIRE_DATA(path, "llama-2-tiny-random.gguf");
  int rc = -1;
  const std::string out = inspect("--json --items 3 " + path, &rc);
  ASSERT_EQ(rc, 0) << out;
  const auto j = nlohmann::json::parse(out);
  EXPECT_EQ(j["format"], "gguf");
  EXPECT_EQ(j["version"], 3);
  EXPECT_EQ(j["alignment"], 32);
  EXPECT_EQ(j["metadata"].size(), 18u);
  EXPECT_EQ(j["metadata"][0]["key"], "general.architecture");
  EXPECT_EQ(j["metadata"][0]["value"], "llama");
  bool saw_tokens = false;
  for (const auto& m : j["metadata"]) {
    if (m["key"] != "tokenizer.ggml.tokens") continue;
    saw_tokens = true;
    EXPECT_EQ(m["type"], "array");
    EXPECT_EQ(m["array"]["elem_type"], "string");
    EXPECT_EQ(m["array"]["length"], 32000);
    EXPECT_EQ(m["array"]["items"], (nlohmann::json{"<unk>", "<s>", "</s>"}));
    EXPECT_EQ(m["array"]["truncated"], true);
  }
  EXPECT_TRUE(saw_tokens);
  ASSERT_EQ(j["tensors"].size(), 12u);
  EXPECT_EQ(j["tensors"][0]["name"], "token_embd.weight");
  EXPECT_EQ(j["tensors"][0]["shape"], (nlohmann::json{8, 32000}));
  EXPECT_EQ(j["tensors"][0]["dtype"], "f16");
  EXPECT_EQ(j["tensors"][0]["bytes"], 512000);
  EXPECT_EQ(j["totals"]["tensors"], 12);
  EXPECT_EQ(j["totals"]["parameters"], 513048);
  EXPECT_EQ(j["totals"]["bytes"], 1026144);
  EXPECT_NEAR(j["totals"]["bits_per_weight"].get<double>(), 16.0011, 1e-3);
}

TEST(InspectCli, ReportsStories260K) {
  KILN_REQUIRE_DATA(path, "stories260K.bin");
  int rc = -1;
  const std::string text = inspect(path, &rc);
  ASSERT_EQ(rc, 0) << text;
  EXPECT_THAT(text, HasSubstr("llama2.c checkpoint version 0"));
  EXPECT_THAT(text, testing::ContainsRegex("n_kv_heads +i32 +4"));
  EXPECT_THAT(text, testing::ContainsRegex("blk.4.ffn_down.weight +\\[172, 64\\] +f32 +44032"));
  EXPECT_THAT(text, HasSubstr("totals:  47 tensors, 260032 parameters, 1040128 bytes"));
  EXPECT_THAT(text, HasSubstr("32.000 bits per weight"));

  const auto j = nlohmann::json::parse(inspect("--json " + path, &rc));
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(j["format"], "llama2c");
  EXPECT_EQ(j["tensors"].size(), 47u);
  EXPECT_EQ(j["tensors"][0]["offset"], 28);
  EXPECT_EQ(j["totals"]["parameters"], 260032);
}

TEST(InspectCli, FailsWithOneLineOnABadFile) {
  const std::string bad = test::temp_dir() + "/truncated.gguf";
  {
    std::ofstream out(bad, std::ios::binary);
    out.write("GGUF\x03\x00\x00\x00\x01", 9);
  }
  int rc = -1;
  const std::string out = inspect(bad + " 2>&1 >/dev/null", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out, StartsWith("kiln: " + bad + ": n_tensors is truncated"));
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 1) << out;

  const std::string text = test::temp_dir() + "/notes.txt";
  {
    std::ofstream out2(text);
    out2 << "just some text, long enough to hold a header\n";
  }
  const std::string out2 = inspect(text + " 2>&1 >/dev/null", &rc);
  EXPECT_EQ(rc, 1);
  EXPECT_THAT(out2, HasSubstr("read as a llama2.c checkpoint"));
  EXPECT_EQ(std::count(out2.begin(), out2.end(), '\n'), 1) << out2;
}

TEST(InspectCli, HelpDescribesTheOptions) {
  int rc = -1;
  const std::string out = inspect("--help", &rc);
  EXPECT_EQ(rc, 0);
  for (const char* option : {"MODEL", "--json", "--items", "--max-string", "--no-tensors", "llama2.c"})
    EXPECT_THAT(out, HasSubstr(option));
}

}  // namespace
}  // namespace kiln
