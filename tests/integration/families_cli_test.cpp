// The commands on qwen3 and phi3 models that kiln synth writes: kiln run, quantize (then run
// the quantized file) and bench work; export onnx and convert --to hf refuse the families with
// a one-line error and no output left behind.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <string>

#include "test_support.h"

namespace kiln {
namespace {

bool exists(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0;
}

class FamilyCli : public ::testing::TestWithParam<std::string> {};

TEST_P(FamilyCli, RunsQuantizesAndRefusesWhatItCannotWrite) {
  const std::string arch = GetParam();
  KILN_REQUIRE_DATA(vocab, "llama-2-tiny-random.gguf");
  const std::string dir = test::temp_dir(), f32 = dir + "/" + arch + "-f32.gguf", q4 = dir + "/" + arch + "-q4_0.gguf";
  test::KilnRun r = test::run_kiln("synth " + arch + " --layers 2 --vocab " + test::shell_quote(vocab) + " -o " + f32 +
                                   " --progress none");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("wrote " + f32 + ": " + arch + ", 2 layers"), std::string::npos) << r.out;

  r = test::run_kiln("run " + f32 + " -p 'Hello world' -n 8 --temp 0 -q -t 2");
  EXPECT_EQ(r.code, 0) << r.out;
  r = test::run_kiln("quantize " + f32 + " " + q4 + " q4_0 --progress none");
  ASSERT_EQ(r.code, 0) << r.out;
  r = test::run_kiln("run " + q4 + " -p 'Hello world' -n 8 --temp 0 -q -t 2");
  EXPECT_EQ(r.code, 0) << r.out;
  r = test::run_kiln("bench " + q4 + " -p 16 -n 4 -r 1 -t 2 --progress none");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(GGUF v3, " + arch + ", "), std::string::npos) << r.out;

  test::expect_clean_error(test::run_kiln("export onnx " + f32 + " " + dir + "/" + arch + ".onnx"),
                           "architecture '" + arch + "' cannot be exported to ONNX");
  EXPECT_FALSE(exists(dir + "/" + arch + ".onnx"));
  test::expect_clean_error(test::run_kiln("convert " + f32 + " " + dir + "/" + arch + "-hf --to hf"),
                           "architecture '" + arch + "' cannot be converted to a Hugging Face folder");
  EXPECT_FALSE(exists(dir + "/" + arch + "-hf/config.json"));
}

INSTANTIATE_TEST_SUITE_P(Families, FamilyCli, ::testing::Values("qwen3", "phi3"));

}  // namespace
}  // namespace kiln
