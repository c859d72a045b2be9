// `kiln eval` end to end: perplexity, kld (on the fly, saved, read back) and compare on the shared
// models, their --json fields, the SVG plot, and bad input (one line on stderr, small non-zero
// exit code, never a crash).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "eval/log_softmax.h"
#include "model/llama_model.h"
#include "test_support.h"

namespace kiln {
namespace {

using Result = test::KilnRun;

Result kiln(const std::string& args, bool merge_stderr = false) { return test::run_kiln(args, merge_stderr, 300); }

nlohmann::json json_of(const Result& r) {
  EXPECT_EQ(r.code, 0) << r.out;
  try {
    return nlohmann::json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not JSON: " << r.out;
    return nlohmann::json::object();
  }
}

void expect_one_line_error(const Result& r, const std::string& needle) {
  EXPECT_GT(r.code, 0) << r.out;
  EXPECT_LT(r.code, 128) << "crashed: " << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.out;
  // One line: "kiln: <message>\n".
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;
}

std::string write_file(const std::string& name, const std::string& bytes) {
  const std::string path = test::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Four stories of 128 tokens that stories260K samples itself at temperature 1 (seed 3), as a
// whitespace-separated id file.
std::string stories_token_file(const std::string& model_path) {
  static std::string path;
  if (!path.empty()) return path;
  std::unique_ptr<LlamaModel> model = LlamaModel::load(model_path);
  ThreadPool pool(1);
  std::mt19937_64 rng(3);
  const int n_vocab = model->config().n_vocab;
  std::vector<float> logits(static_cast<std::size_t>(n_vocab));
  std::vector<double> p(logits.size());
  std::string text;
  for (int s = 0; s < 4; ++s) {
    KvCache cache = model->make_kv_cache(128);
    const int seq = cache.add_sequence();
    int token = 1;
    for (int pos = 0; pos < 128; ++pos) {
      text += std::to_string(token) + (pos % 32 == 31 ? "\n" : " ");
      Batch b;
      b.add(token, pos, seq, true);
      model->forward(b, cache, pool, logits.data());
      const double lse = eval::log_sum_exp(logits.data(), n_vocab);
      for (int v = 0; v < n_vocab; ++v) p[static_cast<std::size_t>(v)] = std::exp(logits[static_cast<std::size_t>(v)] - lse);
      token = std::discrete_distribution<int>(p.begin(), p.end())(rng);
    }
  }
  path = write_file("stories_ids.txt", text);
  return path;
}

// stories260K with every weight rounded to a 4-bit grid per block of 32 (still f32).
std::string stories_variant(const std::string& model_path) {
  std::string bytes = slurp(model_path);
  const std::size_t n = (bytes.size() - 28) / 4;
  std::vector<float> w(n);
  std::memcpy(w.data(), bytes.data() + 28, n * 4);
  for (std::size_t b = 0; b < n; b += 32) {
    float amax = 0;
    for (std::size_t i = b; i < std::min(n, b + 32); ++i) amax = std::max(amax, std::fabs(w[i]));
    if (amax > 0)
      for (std::size_t i = b; i < std::min(n, b + 32); ++i)
        w[i] = std::clamp(std::nearbyint(w[i] / (amax / 7)), -8.0f, 7.0f) * (amax / 7);
  }
  std::memcpy(bytes.data() + 28, w.data(), n * 4);
  return write_file("stories_q4grid.bin", bytes);
}

TEST(EvalCli, HelpListsTheThreeSubcommands) {
  Result r = kiln("eval --help");
  EXPECT_EQ(r.code, 0);
  for (const char* sub : {"perplexity", "kld", "compare"}) EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
  for (const char* sub : {"perplexity", "kld", "compare"}) {
    Result h = kiln(std::string("eval ") + sub + " --help");
    EXPECT_EQ(h.code, 0) << sub;
    EXPECT_NE(h.out.find("--tokens"), std::string::npos) << h.out;
  }
}

TEST(EvalCli, PerplexityOfStories260kByIds) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string ids = stories_token_file(model);
  const nlohmann::json j = json_of(kiln("eval perplexity " + model + " --tokens " + ids + " --ctx 128 -t 2 --json -q"));
  EXPECT_EQ(j["n_ctx"], 128);
  EXPECT_EQ(j["n_chunks"], 4);
  EXPECT_EQ(j["bos_id"], 1);
  EXPECT_EQ(j["n_scored"], 4 * 63);
  EXPECT_EQ(j["n_evaluated"], 4 * 128);
  EXPECT_EQ(j["running_ppl"].size(), 4u);
  EXPECT_GT(j["ppl"].get<double>(), 3);
  EXPECT_LT(j["ppl"].get<double>(), 60);
  EXPECT_GT(j["ppl_std_err"].get<double>(), 0);
  EXPECT_GT(j["tokens_per_second"].get<double>(), 0);
  EXPECT_NEAR(std::exp(j["mean_nll"].get<double>()), j["ppl"].get<double>(), 1e-9 * j["ppl"].get<double>());
  // The report: llama.cpp's running values and final line; --chunks limits the run.
  Result text = kiln("eval perplexity " + model + " --tokens " + ids + " --ctx 128 --chunks 2 -t 1 -q");
  EXPECT_EQ(text.code, 0) << text.out;
  EXPECT_NE(text.out.find("[1]"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("[2]"), std::string::npos) << text.out;
  EXPECT_EQ(text.out.find("[3]"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("Final estimate: PPL = "), std::string::npos) << text.out;
}

TEST(EvalCli, PerplexityOfRandomTinyLlamaOnTextIsNearItsVocabulary) {
  KILN_REQUIRE_DATA(model, "llama-2-tiny-random.gguf");
  KILN_REQUIRE_DATA(text, "war-and-peace.txt");
  const std::string excerpt = write_file("wp.txt", slurp(text).substr(0, 20000));
  const nlohmann::json j = json_of(kiln("eval perplexity " + model + " --text " + excerpt + " --ctx 256 --chunks 3 --json -q"));
  EXPECT_EQ(j["n_chunks"], 3);
  EXPECT_GT(j["ppl"].get<double>(), 0.95 * 32000);
  EXPECT_LT(j["ppl"].get<double>(), 1.05 * 32000);
}

TEST(EvalCli, KldOnTheFlySavedAndReadBack) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string ids = stories_token_file(model);
  const std::string variant = stories_variant(model);
  const std::string saved = test::temp_dir() + "/base.kll";
  const nlohmann::json fly = json_of(kiln("eval kld --base " + model + " " + variant + " --tokens " + ids +
                                          " --ctx 128 --save-base-logits " + saved + " --json -q"));
  for (const char* field : {"kld_mean", "kld_std_err", "kld_median", "kld_p90", "kld_p99", "kld_max", "same_top",
                            "dp_percentiles", "rms_dp", "ppl_model", "ppl_base", "ppl_ratio", "ln_ppl_ratio"})
    EXPECT_TRUE(fly.contains(field)) << field;
  EXPECT_GT(fly["kld_mean"].get<double>(), 0.05);
  EXPECT_LT(fly["same_top"].get<double>(), 1.0);
  EXPECT_EQ(fly["dp_percentiles"].size(), 9u);
  EXPECT_EQ(fly["n_tokens"], 4 * 63);
  const nlohmann::json file = json_of(kiln("eval kld " + variant + " --base-logits " + saved + " --json -q"));
  EXPECT_NEAR(file["kld_mean"].get<double>(), fly["kld_mean"].get<double>(), 1e-4 * fly["kld_mean"].get<double>());
  EXPECT_EQ(file["same_top"], fly["same_top"]);
  EXPECT_EQ(file["ppl_base"], fly["ppl_base"]);
  // Same tokens given again: accepted; other tokens: refused.
  EXPECT_EQ(kiln("eval kld " + variant + " --base-logits " + saved + " --tokens " + ids + " -q").code, 0);
  std::string many;
  for (int i = 0; i < 600; ++i) many += std::to_string(3 + i % 200) + " ";
  expect_one_line_error(kiln("eval kld " + variant + " --base-logits " + saved + " --tokens " + write_file("many.txt", many) + " -q", true),
                     "was run on other tokens");
  // A model against itself.
  const nlohmann::json self = json_of(kiln("eval kld --base " + model + " " + model + " --tokens " + ids + " --ctx 128 --json -q"));
  EXPECT_EQ(self["kld_mean"].get<double>(), 0.0);
  EXPECT_EQ(self["same_top"].get<double>(), 1.0);
  // Only saving.
  const std::string saved2 = test::temp_dir() + "/base2.kll";
  const nlohmann::json only = json_of(kiln("eval kld --base " + model + " --save-base-logits " + saved2 + " --tokens " + ids + " --ctx 128 --json -q"));
  EXPECT_EQ(only["ppl_base"], fly["ppl_base"]);
  EXPECT_EQ(slurp(saved2), slurp(saved));
}

TEST(EvalCli, CompareWritesTableJsonAndPlot) {
  KILN_REQUIRE_DATA(model, "stories260K.bin");
  const std::string ids = stories_token_file(model);
  const std::string variant = stories_variant(model);
  const std::string plot = test::temp_dir() + "/quality.svg";
  const nlohmann::json j = json_of(kiln("eval compare " + model + " " + variant + " --tokens " + ids +
                                        " --ctx 128 --speed-tokens 8 --plot " + plot + " --plot-ppl --json -q"));
  ASSERT_EQ(j["models"].size(), 2u);
  const nlohmann::json& base = j["models"][0];
  const nlohmann::json& var = j["models"][1];
  EXPECT_TRUE(base["is_base"].get<bool>());
  EXPECT_EQ(base["bits_per_weight"].get<double>(), 32.0);
  EXPECT_EQ(base["kld_mean"].get<double>(), 0.0);
  EXPECT_GT(var["kld_mean"].get<double>(), 0.05);
  EXPECT_GT(var["ppl"].get<double>(), base["ppl"].get<double>());
  EXPECT_GT(var["decode_tok_s"].get<double>(), 0);
  EXPECT_EQ(var["file_bytes"].get<std::uint64_t>(), slurp(model).size());
  const std::string svg = slurp(plot);
  EXPECT_NE(svg.find("stories_q4grid.bin"), std::string::npos);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // Well-formed XML, when Debian's python is there to say so.
  if (test::run_command("test -x /usr/bin/python3", nullptr) == 0) {
    std::string out;
    EXPECT_EQ(test::run_command("/usr/bin/python3 -c \"import sys, xml.etree.ElementTree as E; E.parse(sys.argv[1])\" " + plot, &out, true), 0) << out;
  }
  // The text table, the base's row first; --no-speed leaves the speed out.
  Result table = kiln("eval compare " + model + " " + variant + " --tokens " + ids + " --ctx 128 --no-speed -q");
  EXPECT_EQ(table.code, 0) << table.out;
  EXPECT_NE(table.out.find("| stories260K.bin"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("(base)"), std::string::npos) << table.out;
  const nlohmann::json nospeed = json_of(kiln("eval compare " + model + " " + variant + " --tokens " + ids + " --ctx 128 --no-speed --json -q"));
  EXPECT_TRUE(nospeed["models"][1]["decode_tok_s"].is_null());
}

TEST(EvalCli, BadInputIsOneLineAndANonZeroExit) {
  KILN_REQUIRE_DATA(stories, "stories260K.bin");
  KILN_REQUIRE_DATA(tiny, "llama-2-tiny-random.gguf");
  const std::string ids = stories_token_file(stories);
  const std::string empty = write_file("empty.txt", "\n \n");
  const std::string short_text = write_file("short.txt", "Hello there, a text far shorter than one chunk.");
  expect_one_line_error(kiln("eval perplexity " + tiny + " --text " + empty, true), "the text is empty");
  expect_one_line_error(kiln("eval perplexity " + tiny + " --text " + short_text, true), "fewer than one chunk of 512");
  expect_one_line_error(kiln("eval perplexity " + stories + " --text " + short_text, true), "has no tokenizer");
  expect_one_line_error(kiln("eval perplexity " + stories + " --tokens " + empty, true), "no token ids");
  expect_one_line_error(kiln("eval perplexity " + stories + " --tokens " + short_text, true), "is not a token id");
  expect_one_line_error(kiln("eval perplexity " + stories + " --tokens " + ids + " --text " + short_text, true),
                     "exactly one of --text FILE and --tokens FILE");
  expect_one_line_error(kiln("eval perplexity " + stories + " --tokens " + ids + " --ctx 1024", true),
                     "longer than the context 512");
  expect_one_line_error(kiln("eval perplexity " + stories + " --tokens " + write_file("big.txt", "1 2 3 99999"), true),
                     "outside the model's vocabulary of 512");
  expect_one_line_error(kiln("eval kld " + stories + " --tokens " + ids, true), "give the base model");
  expect_one_line_error(kiln("eval kld --base " + tiny + " " + stories + " --tokens " + ids + " --ctx 128", true),
                     "KL divergence needs the same vocabulary");
  expect_one_line_error(kiln("eval kld " + stories + " --base-logits " + write_file("bad.kll", "KILNLOGP but not really a file at all"), true),
                     "bad.kll");
  expect_one_line_error(kiln("eval kld " + stories + " --base-logits " + ids, true), "not a kiln logits file");
  expect_one_line_error(kiln("eval compare " + stories + " --tokens " + ids, true), "at least one variant");
}

}  // namespace
}  // namespace kiln
