// Progress of kiln's long jobs through the real binary, with stderr a file (not a terminal):
// quantize, eval, imatrix and bench write JSON lines that parse, one stage start and end each,
// with the job's totals; --progress none and -q write nothing; --progress bar draws and clears
// a line even off a terminal; a bad mode is a usage error.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.h"

namespace kiln {
namespace {

struct KilnRun {
  int code;
  std::string out;  // stdout
  std::string err;  // stderr
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

KilnRun kiln(const std::string& args) {
  static int n = 0;
  const std::string err = test::temp_dir() + "/stderr-" + std::to_string(n++) + ".txt";
  KilnRun r;
  r.code = test::run_command("timeout 120 " + test::kiln_binary() + " " + args + " 2>" + err, &r.out);
  r.err = slurp(err);
  return r;
}

// stderr without quantize's notices (lines for the user: "kiln quantize: tensor x: ...").
std::string without_notices(const std::string& err) {
  std::string kept;
  std::istringstream in(err);
  for (std::string line; std::getline(in, line);)
    if (line.rfind("kiln quantize: ", 0) != 0) kept += line + (in.eof() ? "" : "\n");
  return kept;
}

// Every line of stderr but notices as JSON (a line that does not parse fails the test).
std::vector<nlohmann::json> json_lines(const std::string& err) {
  std::vector<nlohmann::json> lines;
  std::istringstream in(without_notices(err));
  for (std::string line; std::getline(in, line);) {
    try {
      lines.push_back(nlohmann::json::parse(line));
    } catch (const std::exception&) {
      ADD_FAILURE() << "not a JSON line: '" << line << "' in:\n" << err;
    }
  }
  return lines;
}

void expect_progress_fields(const nlohmann::json& j) {
  for (const char* key : {"event", "job", "stage", "done", "total", "unit", "rate", "elapsed_s", "eta_s", "percent"})
    EXPECT_TRUE(j.contains(key)) << key << " missing from " << j.dump();
  EXPECT_TRUE(j["done"].is_number_integer()) << j.dump();
  EXPECT_TRUE(j["elapsed_s"].is_number()) << j.dump();
}

// The lines of one stage: a start at 0, then progress lines, then an end at the total.
void expect_one_stage(const std::vector<nlohmann::json>& lines, const std::string& job, const std::string& stage,
                      const std::string& unit, std::int64_t total) {
  ASSERT_GE(lines.size(), 2u);
  for (const nlohmann::json& j : lines) {
    expect_progress_fields(j);
    EXPECT_EQ(j["job"], job) << j.dump();
    EXPECT_EQ(j["stage"], stage) << j.dump();
    EXPECT_EQ(j["unit"], unit) << j.dump();
    EXPECT_EQ(j["total"], total) << j.dump();
  }
  EXPECT_EQ(lines.front()["event"], "start");
  EXPECT_EQ(lines.front()["done"], 0);
  EXPECT_EQ(lines.back()["event"], "end");
  EXPECT_EQ(lines.back()["done"], total);
  EXPECT_DOUBLE_EQ(lines.back()["percent"].get<double>(), 100);
  EXPECT_DOUBLE_EQ(lines.back()["eta_s"].get<double>(), 0);
  for (std::size_t i = 1; i + 1 < lines.size(); ++i) EXPECT_EQ(lines[i]["event"], "progress");
}

// 512 token ids of stories260K's vocabulary (4 chunks of 128), BOS first.
std::string stories_ids() {
  const std::string path = test::temp_dir() + "/progress-ids.txt";
  std::ofstream out(path);
  out << 1;
  for (int i = 1; i < 512; ++i) out << ' ' << (i * 37 % 500 + 2);
  return path;
}

TEST(ProgressCli, QuantizeWritesJsonLinesOffATerminal) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const std::string out = test::temp_dir() + "/progress-q8.gguf";
  const KilnRun r = kiln("quantize " + model + " " + out + " q8_0 -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("as Q8_0"), std::string::npos) << r.out;
  const std::vector<nlohmann::json> lines = json_lines(r.err);
  ASSERT_NO_FATAL_FAILURE(expect_one_stage(lines, "quantize", "Q8_0", "weights", 513048));
  EXPECT_NE(lines.back()["detail"].get<std::string>().find("12/12 "), std::string::npos) << lines.back().dump();
}

TEST(ProgressCli, QuantizeNoticesAreLinesBeforeTheJson) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const KilnRun r = kiln("quantize " + model + " " + test::temp_dir() + "/progress-q4km.gguf Q4_K_M -t 2");
  ASSERT_EQ(r.code, 0) << r.err;
  // Every 2-D tensor of the tiny model falls back (8 columns fit no block): nine plain lines,
  // all before the stage starts.
  std::istringstream in(r.err);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_GT(lines.size(), 9u) << r.err;
  for (std::size_t i = 0; i < lines.size(); ++i)
    EXPECT_EQ(lines[i].rfind("kiln quantize: tensor ", 0) == 0, i < 9) << i << ": " << lines[i];
  expect_one_stage(json_lines(r.err), "quantize", "Q4_K_M", "weights", 513048);
}

TEST(ProgressCli, NoneAndQuietWriteNothingBarDrawsAndClears) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const std::string out = test::temp_dir() + "/progress-modes.gguf";
  for (const char* flag : {"--progress none", "-q", "--quiet"}) {
    const KilnRun r = kiln("quantize " + model + " " + out + " Q8_0 -t 2 " + flag);
    EXPECT_EQ(r.code, 0) << flag << ": " << r.err;
    EXPECT_EQ(without_notices(r.err), "") << flag << ": only the notices are left";
    EXPECT_NE(r.err, "") << flag << ": the notices are still written";
  }
  const KilnRun bar = kiln("quantize " + model + " " + out + " Q8_0 -t 2 --progress bar");
  EXPECT_EQ(bar.code, 0) << bar.err;
  const std::string drawn = without_notices(bar.err);
  EXPECT_EQ(drawn.rfind("\rquantize Q8_0 [", 0), 0u) << drawn;
  EXPECT_NE(drawn.find("100%"), std::string::npos) << drawn;
  EXPECT_EQ(drawn.find('\n'), std::string::npos) << drawn;
  ASSERT_GE(drawn.size(), 4u);
  EXPECT_EQ(drawn.substr(drawn.size() - 4), "\r\033[K") << "the line is left empty";

  const KilnRun bad = kiln("quantize " + model + " " + out + " Q8_0 --progress fancy");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.err.find("--progress"), std::string::npos) << bad.err;
  const KilnRun both = kiln("quantize " + model + " " + out + " Q8_0 -q --progress json");
  EXPECT_NE(both.code, 0);
  EXPECT_NE(both.err.find("excludes"), std::string::npos) << both.err;
}

TEST(ProgressCli, EvalImatrixAndBenchWriteJsonLines) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string ids = stories_ids();

  const KilnRun ppl = kiln("eval perplexity " + model + " --tokens " + ids + " --ctx 128 -t 2 --json");
  ASSERT_EQ(ppl.code, 0) << ppl.err;
  EXPECT_EQ(nlohmann::json::parse(ppl.out)["n_chunks"], 4) << "stdout keeps the result alone";
  expect_one_stage(json_lines(ppl.err), "eval", "perplexity", "tokens", 512);

  // kld, saving the base: two stages of one job.
  const KilnRun kld = kiln("eval kld --base " + model + " " + model + " --tokens " + ids + " --ctx 128 -t 2 --json");
  ASSERT_EQ(kld.code, 0) << kld.err;
  expect_one_stage(json_lines(kld.err), "eval", "kld", "tokens", 512);

  const KilnRun imatrix =
      kiln("imatrix " + model + " --tokens " + ids + " --ctx 128 -t 2 -o " + test::temp_dir() + "/progress.imatrix");
  ASSERT_EQ(imatrix.code, 0) << imatrix.err;
  expect_one_stage(json_lines(imatrix.err), "imatrix", "collect", "tokens", 512);

  const KilnRun bench = kiln("bench " + model + " -p 8 -n 4 -r 2 -t 2 --json --no-bandwidth");
  ASSERT_EQ(bench.code, 0) << bench.err;
  EXPECT_TRUE(nlohmann::json::accept(bench.out)) << bench.out;
  expect_one_stage(json_lines(bench.err), "bench", "speed", "repetitions", 3);
}

TEST(ProgressCli, ServingBenchCountsGeneratedTokens) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  const KilnRun r = kiln("bench " + model + " --parallel 1,2 -p 8 -n 4 -t 2 --json");
  ASSERT_EQ(r.code, 0) << r.err;
  expect_one_stage(json_lines(r.err), "bench", "serving", "tokens", 1 * 4 + 2 * 4);
}

TEST(ProgressCli, EvalSavingTheBaseIsItsOwnStage) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string ids = stories_ids();
  const std::string saved = test::temp_dir() + "/progress-base.kll";
  const KilnRun save =
      kiln("eval kld --base " + model + " --save-base-logits " + saved + " --tokens " + ids + " --ctx 128 -t 2 --json");
  ASSERT_EQ(save.code, 0) << save.err;
  expect_one_stage(json_lines(save.err), "eval", "base", "tokens", 512);
  const KilnRun compare =
      kiln("eval compare " + model + " " + model + " --tokens " + ids + " --ctx 128 -t 2 --json --no-speed");
  ASSERT_EQ(compare.code, 0) << compare.err;
  // compare: one stage per model, named after its file.
  const std::vector<nlohmann::json> lines = json_lines(compare.err);
  int starts = 0, ends = 0;
  for (const nlohmann::json& j : lines) {
    expect_progress_fields(j);
    EXPECT_EQ(j["stage"], "stories260K.bin") << j.dump();
    starts += j["event"] == "start";
    ends += j["event"] == "end";
  }
  EXPECT_EQ(starts, 2) << compare.err;
  EXPECT_EQ(ends, 2) << compare.err;
}

}  // namespace
}  // namespace kiln
