// `kiln export onnx` end to end: a run prints what it wrote and leaves only the .onnx (and the
// .onnx.data with --external-data), shows its progress as the other long jobs do, and bad input
// (a missing or non-model file, an unwritable folder) gets one line on stderr, a non-zero exit
// and no files. What the graph computes: tests/interop/onnx_export_vs_onnxruntime_test.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace kiln {
namespace {

namespace fs = std::filesystem;
using Result = test::KilnRun;

std::vector<std::string> files_in(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void expect_one_line_error(const Result& r, const std::string& needle) {
  EXPECT_EQ(r.code, 1) << r.out;
  EXPECT_EQ(r.out.rfind("kiln: ", 0), 0u) << r.out;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << "expected exactly one line: " << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.out;
}

TEST(ExportCli, ExportsStories260kAndReports) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string dir = test::temp_dir() + "/export";
  fs::create_directories(dir);
  Result r = test::run_kiln("export onnx " + model + " " + dir + "/s.onnx --progress json", false);
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("(llama2.c v0, llama) -> " + dir + "/s.onnx: ONNX opset 17, 420 nodes"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("model:   5 layers, 8 heads (4 key/value) of 8, vocabulary 512, output tied to the embedding"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("weights: 260032 as f32, 0.99 MiB inside the graph"), std::string::npos) << r.out;
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"s.onnx"}));

  // Progress: JSON lines on stderr, a stage "onnx" in weights.
  Result p = test::run_kiln("export onnx " + model + " " + dir + "/p.onnx --progress json 2>&1 >/dev/null", false);
  ASSERT_EQ(p.code, 0) << p.out;
  EXPECT_NE(p.out.find(R"("event":"start","job":"export","stage":"onnx","done":0,"total":260032,"unit":"weights")"),
            std::string::npos)
      << p.out;
  EXPECT_NE(p.out.find(R"("event":"end","job":"export","stage":"onnx","done":260032,"total":260032)"),
            std::string::npos)
      << p.out;

  Result f16 = test::run_kiln("export onnx " + model + " " + dir + "/h.onnx --f16 --external-data -q", false);
  ASSERT_EQ(f16.code, 0) << f16.out;
  EXPECT_NE(f16.out.find("as f16"), std::string::npos) << f16.out;
  EXPECT_NE(f16.out.find(" in " + dir + "/h.onnx.data"), std::string::npos) << f16.out;
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"h.onnx", "h.onnx.data", "p.onnx", "s.onnx"}));
}

TEST(ExportCli, BadInputGetsOneLineAndNoFiles) {
  const std::string dir = test::temp_dir() + "/export-bad";
  fs::create_directories(dir);
  expect_one_line_error(test::run_kiln("export onnx " + dir + "/missing.gguf " + dir + "/m.onnx"),
                        "missing.gguf: cannot open: No such file or directory");
  { std::ofstream(dir + "/junk.gguf") << "not a model at all, but long enough to read a header from"; }
  expect_one_line_error(test::run_kiln("export onnx " + dir + "/junk.gguf " + dir + "/m.onnx"), "junk.gguf");
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"junk.gguf"}));

  KILN_REQUIRE_DATA(model, "stories260K.bin");
  expect_one_line_error(test::run_kiln("export onnx " + model + " " + dir + "/no/such/dir/m.onnx -q"), "cannot create");
  expect_one_line_error(test::run_kiln("export onnx " + model + " " + dir + "/no/such/dir/m.onnx -q --external-data"),
                        "cannot create");
  EXPECT_EQ(files_in(dir), (std::vector<std::string>{"junk.gguf"}));
}

}  // namespace
}  // namespace kiln
