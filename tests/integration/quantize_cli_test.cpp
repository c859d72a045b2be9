// `kiln quantize` end to end: a run prints sizes and bits per weight before and after, writes a
// file kiln runs, and every bad input (unknown type, missing file, quantized input, bad override)
// gets one line on stderr, a non-zero exit and no output file.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "test_support.h"

namespace kiln {
namespace {

using Result = test::KilnRun;

Result kiln(const std::string& args, bool merge_stderr = true) { return test::run_kiln(args, merge_stderr); }

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// One line, starting "kiln: ", containing `needle`; exit 1; nothing at `out`.
void expect_one_line_error(const Result& r, const std::string& needle, const std::string& out) {
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.out.rfind("kiln: ", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "expected exactly one line: " << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.out;
  EXPECT_FALSE(exists(out)) << out << " was written";
}

TEST(QuantizeCli, QuantizesAndReportsSizes) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const std::string out = test::temp_dir() + "/cli-q8.gguf";
  Result r = kiln("quantize " + model + " " + out + " q8_0 -t 2", false);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("as Q8_0 (general.file_type 7)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("before:  0.98 MiB in 12 tensors, 16.001 bits per weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("after:   0.98 MiB, 15.997 bits per weight"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("types:   f16 x8, f32 x3, q8_0 x1"), std::string::npos) << r.out;
  Result run = kiln("run " + out + " -p Hello -n 4 --temp 0 -q -t 2", false);
  EXPECT_EQ(run.code, 0) << run.out;
  Result plan = kiln("quantize " + model + " " + out + ".dry Q4_K_M --dry-run", false);
  EXPECT_EQ(plan.code, 0);
  EXPECT_NE(plan.out.find("blk.0.ffn_down.weight                f16      q8_0"), std::string::npos) << plan.out;
  EXPECT_FALSE(exists(out + ".dry"));
}

TEST(QuantizeCli, BadInputGetsOneLine) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const std::string dir = test::temp_dir();
  const std::string out = dir + "/cli-bad.gguf";
  expect_one_line_error(kiln("quantize " + model + " " + out + " Q4_X"),
                        "unknown quantization type 'Q4_X' (expected one of: Q4_0", out);
  expect_one_line_error(kiln("quantize " + dir + "/missing.gguf " + out + " Q4_0"),
                        "missing.gguf: cannot open: No such file or directory", out);
  expect_one_line_error(kiln("quantize " + model + " " + out + " Q4_0 --tensor-type attn_v=q3"),
                        "--tensor-type 'attn_v=q3': unknown tensor type 'q3'", out);
  expect_one_line_error(kiln("quantize " + model + " " + dir + "/no/such/dir/x.gguf Q8_0"), "cannot create a file in " + dir + "/no/such/dir: No such file or directory",
                        dir + "/no/such/dir/x.gguf");

  // A quantized input is refused without --allow-requantize (the tiny model's ffn_down is q8_0
  // after a Q8_0 pass, and Q4_0 wants it as q4_0).
  const std::string q8 = dir + "/cli-q8-for-requant.gguf";
  ASSERT_EQ(kiln("quantize " + model + " " + q8 + " Q8_0 -t 2").code, 0);
  expect_one_line_error(kiln("quantize " + q8 + " " + out + " Q4_0"),
                        "tensor 'blk.0.ffn_down.weight' is already quantized (q8_0); quantizing it again to q4_0",
                        out);
  Result ok = kiln("quantize " + q8 + " " + out + " Q4_0 --allow-requantize -t 2");
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_TRUE(exists(out));
}

}  // namespace
}  // namespace kiln
